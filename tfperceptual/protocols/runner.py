"""What every protocol shares: images in batches, clean predictions, fingerprints, and the result cache.

* Images may be float in [0, 1] or uint8 (ImageNet is held as uint8 to save memory); :func:`as_float`
  converts one batch at a time.
* :func:`batch_slices` cuts N images into batches that never cross given boundaries, so that the first
  ``n_calibration`` images form exactly the same batches in a calibration and in the final run (an attack
  seeded per batch then gives them the same result in both).
* :class:`ResultCache` is a folder of atomically written JSON / ``.npz`` entries; an entry that cannot be
  read (corrupt, truncated, missing keys) is reported by path and recomputed, never fatal.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from pathlib import Path

import numpy as np

from ..attacks.base import ZeroGradientWarning
from ..io_utils import atomic_savez, atomic_write_json, digest, read_json, read_npz, weights_digest
from ..models.adapter import as_logits_model, input_shape_of
from ..validation import check_images, check_labels, check_positive_int

__all__ = ["as_float", "batch_slices", "predict_labels", "check_dataset", "fingerprint", "ResultCache",
           "supports_seed", "takes_option", "ZeroGradientLog"]


def as_float(batch):
    """uint8 (0..255) or float batch → float32 in [0, 1] (NumPy)."""
    batch = np.asarray(batch)
    return batch.astype(np.float32) / 255.0 if batch.dtype == np.uint8 else batch.astype(np.float32, copy=False)


def batch_slices(n, batch_size, boundaries=()):
    """[(start, stop), …] covering ``range(n)`` in batches of at most ``batch_size`` that never cross a
    boundary: with ``boundaries=(k,)`` the images before k are batched exactly as ``batch_slices(k, …)``."""
    batch_size = check_positive_int(batch_size, "batch_size")
    cuts = sorted({0, n, *[b for b in boundaries if 0 < b < n]})
    return [(s, min(s + batch_size, b)) for a, b in zip(cuts[:-1], cuts[1:]) for s in range(a, b, batch_size)]


def predict_labels(model, images, batch_size=256):
    """Top-1 labels (N,) int64 of ``model`` on ``images`` (N, H, W, C) float in [0, 1] or uint8, in batches."""
    lm = as_logits_model(model)
    out = [lm.predicted_class(as_float(images[s:e])).numpy() for s, e in batch_slices(len(images), batch_size)]
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def check_dataset(model, images, labels, name="images", chunk=4096):
    """Validate a dataset against ``model`` without converting it all at once; returns the labels (N,) int64.

    Raises:
        ValueError / TypeError: images that are not (N, H, W, C) float in [0, 1] (or uint8), whose size or
            channels the model cannot take; labels of another length or outside the model's classes.
    """
    lm = as_logits_model(model)
    if len(images) == 0:
        raise ValueError(f"{name} is empty")
    shape = input_shape_of(lm)
    for i in range(0, len(images), chunk):
        check_images(as_float(images[i:i + chunk]), name, (0.0, 1.0), shape)
    return check_labels(labels, len(images), lm.num_classes, "labels")


def fingerprint(model, images, settings):
    """A 16-hex-digit key of the model's weights, the images and the settings (a JSON-able dict)."""
    return digest(weights_digest(model), np.asarray(images), settings)


def takes_option(cls, option):
    """Whether an attack or explainer class (or factory) takes the keyword ``option``."""
    return option in inspect.signature(cls.__init__ if isinstance(cls, type) else cls).parameters


def supports_seed(cls):
    """Whether an attack or explainer class takes ``seed=`` (it draws random numbers)."""
    return takes_option(cls, "seed")


class ResultCache:
    """A folder of cache entries, written atomically and read back tolerantly.

    Args:
        folder: the cache folder (created).
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, name):
        """The entry's file path."""
        return self.folder / name

    def read_json(self, name, required=()):
        """The JSON entry, or ``None`` (missing, or unusable: a :class:`~tfperceptual.io_utils.CacheWarning`)."""
        return read_json(self.path(name), required)

    def write_json(self, name, obj):
        """Write a JSON entry atomically."""
        return atomic_write_json(self.path(name), obj)

    def read_npz(self, name, required=()):
        """The arrays of an ``.npz`` entry, or ``None`` (missing or unusable)."""
        return read_npz(self.path(name), required)

    def write_npz(self, name, **arrays):
        """Write an ``.npz`` entry atomically."""
        return atomic_savez(self.path(name), **arrays)

    def remove(self, name):
        """Delete an entry if present."""
        self.path(name).unlink(missing_ok=True)


class ZeroGradientLog:
    """Collects the images an attack could not move (zero input gradient) over the batches of one run and
    warns once, with dataset indices, instead of once per batch with batch indices::

        log = ZeroGradientLog()
        with log.quiet():
            res = attack(x[s:e], y[s:e])
        log.add(s, res)
        ...
        log.report("pgd at ε = 0.1")
    """

    def __init__(self):
        self.images = []

    @staticmethod
    @contextlib.contextmanager
    def quiet():
        """Silence the attack's per-batch :class:`~tfperceptual.attacks.ZeroGradientWarning`."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ZeroGradientWarning)
            yield

    def add(self, start, result):
        """Record the images of a batch starting at dataset index ``start`` that did not move."""
        zero = getattr(result, "zero_gradient", None)
        if zero is not None:
            self.images.extend((start + np.flatnonzero(zero)).tolist())

    def report(self, what):
        """One warning naming every recorded image (nothing if none)."""
        if self.images:
            more = f" and {len(self.images) - 10} more" if len(self.images) > 10 else ""
            warnings.warn(f"{what}: the loss has a zero gradient with respect to the input at images "
                          f"{self.images[:10]}{more} of the dataset: the attack could not move them",
                          ZeroGradientWarning, stacklevel=3)
