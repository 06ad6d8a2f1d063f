"""Input checks shared by attacks, explainers, metrics, protocols and callbacks.

Every check raises a ``TypeError`` or ``ValueError`` whose message names the
offending argument.  Scalar options use the one rule of :mod:`solvers.checks`.
"""

from __future__ import annotations

import numpy as np

from solvers.checks import check_choice, check_positive_int, check_real

__all__ = ["check_images", "check_labels", "check_epsilon", "check_real", "check_positive_int", "check_choice",
           "check_maps"]


def check_images(images, name="images", bounds=(0.0, 1.0), expected_shape=None):
    """Validate a batch of images and return it as a float32 NumPy array.

    Args:
        images: array-like (B, H, W, C), floating dtype, pixels within ``bounds``.
        expected_shape: optional (H, W, C) the model expects (``None`` entries are free).

    Raises:
        TypeError: non-floating dtype.
        ValueError: wrong rank or channel count, NaN/Inf, pixels outside bounds, empty batch.
    """
    arr = np.asarray(images)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be a floating array with pixels in {list(bounds)}, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name} must be a floating array with pixels in {list(bounds)}, got dtype "
                        f"{arr.dtype} (divide uint8 images by 255)")
    if arr.ndim != 4:
        raise ValueError(f"{name} must have shape (B, H, W, C), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch")
    if expected_shape is not None:
        for got, want, what in zip(arr.shape[1:], expected_shape, ("height", "width", "channels")):
            if want is not None and got != want:
                raise ValueError(f"{name} has {what} {got} but the model expects {want} "
                                 f"(input shape {tuple(expected_shape)}, got {arr.shape[1:]})")
    if not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.isfinite(arr.reshape(arr.shape[0], -1)).all(1))
        raise ValueError(f"{name} contains NaN or Inf (images {bad[:10].tolist()})")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < bounds[0] or hi > bounds[1]:
        raise ValueError(f"{name} has pixels outside {list(bounds)}: range [{lo:.4g}, {hi:.4g}]")
    return arr.astype(np.float32, copy=False)


def check_labels(labels, batch_size, num_classes, name="labels"):
    """Validate integer class labels of shape (B,) in [0, num_classes).

    Raises:
        TypeError: non-integer labels (one-hot arrays are rejected with a hint).
        ValueError: wrong length or values out of range.
    """
    arr = np.asarray(labels)
    if arr.ndim == 2 and arr.shape[1] == num_classes:
        raise TypeError(f"{name} must be integer class indices of shape (B,), got one-hot "
                        f"shape {arr.shape}; use labels.argmax(-1)")
    if arr.ndim != 1:
        raise ValueError(f"{name} must have shape (B,), got {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise TypeError(f"{name} must be integer class indices, got non-integer floats")
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integer class indices, got dtype {arr.dtype}")
    if arr.shape[0] != batch_size:
        raise ValueError(f"{name} has length {arr.shape[0]} but there are {batch_size} images")
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}), got range [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64)


def check_epsilon(eps, name="eps", low=0.0, high=1.0, high_inclusive=False):
    """Validate a scalar radius in (low, high) (or (low, high]; ``high=None``: unbounded). Returns a float.

    Raises:
        TypeError: not a real number. ValueError: NaN/Inf or out of range.
    """
    return check_real(eps, name, low, high, high_inclusive=high_inclusive)


def check_maps(maps, name="saliency"):
    """Validate per-pixel maps of shape (B, H, W): real-valued and finite. Returns them as float64.

    Raises:
        TypeError: complex or non-numeric dtype. ValueError: wrong rank, NaN/Inf.
    """
    a = np.asarray(maps)
    if a.ndim != 3:
        raise ValueError(f"{name} must have shape (B, H, W), got {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise TypeError(f"{name} must be a real-valued array, got dtype {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or Inf")
    return a.astype(np.float64, copy=False)
