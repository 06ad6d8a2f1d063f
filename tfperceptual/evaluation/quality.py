"""Image-quality and attack metrics (NumPy in, NumPy out; checked inputs; TensorFlow inside, batched).

* :func:`ssim`: the standard SSIM of Wang et al. (2004) with an 11×11
  Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03 and data range 1, averaged
  over the valid window positions and over channels — the value of
  ``skimage.metrics.structural_similarity(x, y, gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)``
  (checked in the tests), computed in float32 (the map of :func:`ssim_map` in float64).
* :func:`ssim_map`: the local SSIM at every pixel and channel (the map behind :func:`ssim`).
* :func:`global_ssim`: the one-window SSIM S1·S2 of Brunet et al. (the
  quantity the SSIM ball constrains; paper Eqs. 3-7), per channel, averaged
  over channels.
* :func:`psnr`: 10·log10(1 / MSE) in dB; identical images (MSE = 0) give
  ``max_db`` (default 100 dB) instead of +inf so that averages stay finite.
* :func:`fooling_rate`: the paper's definition (Sec. V): the fraction of
  images whose post-attack label differs from the pre-attack (clean
  prediction) label; optionally also over the images the model classified
  correctly before the attack.
* :func:`perturbation_norms`: ℓ2 and ℓ∞ norms of x′ − x.

All one-copy implementations live in :mod:`tfperceptual.image_ops`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .. import image_ops
from ..validation import check_images

__all__ = ["ssim", "ssim_map", "global_ssim", "psnr", "fooling_rate", "perturbation_norms"]


def _pair(x, y, bounds=(0.0, 1.0)):
    x = check_images(x, "x", bounds)
    y = check_images(y, "y", bounds)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}")
    return x, y


def _check_window(shape, sigma=image_ops.SSIM_SIGMA):
    k = len(image_ops.gaussian_window(sigma))
    if min(shape[1:3]) < k:
        raise ValueError(f"SSIM needs images of at least {k}×{k} pixels for a σ = {sigma} window, got {shape[1:3]}")


_ssim_tf = tf.function(image_ops.ssim, reduce_retracing=True)
_ssim_map_tf = tf.function(image_ops.ssim_map, reduce_retracing=True)
_global_ssim_tf = tf.function(image_ops.global_ssim, reduce_retracing=True)
_psnr_tf = tf.function(image_ops.psnr, reduce_retracing=True)


def _batched(fn, x, y, batch_size, dtype=np.float64, compute=tf.float64):
    return np.concatenate([np.asarray(fn(tf.constant(x[i:i + batch_size], compute),
                                         tf.constant(y[i:i + batch_size], compute)), dtype)
                           for i in range(0, len(x), batch_size)])


def ssim(x, y, batch_size=256):
    """SSIM per image. ``x, y``: (B, H, W, C) float in [0, 1], at least 11 × 11. Returns (B,) float64.

    Raises:
        ValueError / TypeError: shapes differ, images smaller than 11 × 11, NaN/Inf, pixels outside [0, 1].
    """
    x, y = _pair(x, y)
    _check_window(x.shape)
    # float32, like tf.image.ssim (agrees with scikit-image to 2e-6, tested)
    return _batched(_ssim_tf, x, y, batch_size, compute=tf.float32)


def ssim_map(x, x_adv, batch_size=256):
    """Local SSIM between ``x`` and ``x_adv`` (B, H, W, C) at every pixel and channel.

    Gaussian window σ = 1.5 (11 × 11), K1 = 0.01, K2 = 0.03, population (not sample) statistics and
    SciPy's 'reflect' borders: equal to ``skimage.metrics.structural_similarity(x, y, full=True,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)[1]``
    per image (Wang et al., IEEE TIP 2004, Eq. 13); its mean over the interior (borders of 5 pixels
    cropped) is :func:`ssim`.

    Returns:
        (B, H, W, C) float32 array, values in [−1, 1] (1 where nothing changed).

    Raises:
        ValueError / TypeError: shapes differ, images smaller than 11 × 11, NaN/Inf, pixels outside [0, 1].
    """
    x, x_adv = check_images(x, "x"), check_images(x_adv, "x_adv")
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv must have the same shape, got {x.shape} and {x_adv.shape}")
    _check_window(x.shape)
    return _batched(_ssim_map_tf, x, x_adv, batch_size, np.float32)


def global_ssim(x, y, batch_size=256):
    """Global SSIM S1·S2 per image (one window over the whole channel), averaged over channels.

    ``x, y``: (B, H, W, C) in [0, 1]. Returns (B,) float64.
    """
    x, y = _pair(x, y)
    return _batched(_global_ssim_tf, x, y, batch_size)


def psnr(x, y, max_db=100.0):
    """PSNR per image in dB for pixels in [0, 1]. ``x, y``: (B, ...) arrays. Returns (B,) float64.

    Raises:
        ValueError: shapes differ.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim < 2:
        raise ValueError(f"x and y must have the same shape (B, ...), got {x.shape} and {y.shape}")
    return image_ops.psnr(tf.constant(x), tf.constant(y), max_db).numpy()


def fooling_rate(clean_pred, adv_pred, true_labels=None):
    """Fooling rate: mean of (pre-attack label ≠ post-attack label).

    Args:
        clean_pred: (B,) labels predicted on the clean images.
        adv_pred: (B,) labels predicted on the adversarial images.
        true_labels: optional (B,) ground truth; adds ``fooling_rate_correct``,
            the rate over images that were classified correctly before the attack.

    Returns:
        dict with ``fooling_rate`` (and ``fooling_rate_correct``, ``n_correct``).

    Raises:
        ValueError: arrays of different lengths or empty.
    """
    clean_pred = np.asarray(clean_pred)
    adv_pred = np.asarray(adv_pred)
    if clean_pred.shape != adv_pred.shape or clean_pred.ndim != 1 or clean_pred.size == 0:
        raise ValueError(f"clean_pred and adv_pred must be non-empty (B,) arrays of one length, got shapes "
                         f"{clean_pred.shape} and {adv_pred.shape}")
    fooled = clean_pred != adv_pred
    out = {"fooling_rate": float(fooled.mean())}
    if true_labels is not None:
        true_labels = np.asarray(true_labels)
        if true_labels.shape != clean_pred.shape:
            raise ValueError(f"true_labels must have shape {clean_pred.shape}, got {true_labels.shape}")
        correct = clean_pred == true_labels
        out["n_correct"] = int(correct.sum())
        out["fooling_rate_correct"] = float(fooled[correct].mean()) if correct.any() else float("nan")
    return out


def perturbation_norms(x, y):
    """ℓ2 and ℓ∞ norms of the perturbation per image: dict of (B,) float64 arrays.

    Raises:
        ValueError: shapes differ.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}")
    d = (y - x).reshape(len(x), -1)
    return {"l2": np.linalg.norm(d, axis=1), "linf": np.abs(d).max(axis=1)}
