"""Image-quality and attack metrics.

* :func:`ssim`: the standard SSIM of Wang et al. (2004) with an 11×11
  Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03 and data range 1, averaged
  over the valid window positions and over channels — the value of
  ``skimage.metrics.structural_similarity(x, y, gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)``
  (checked in the tests).  Implemented with ``tf.image.ssim`` so it runs
  batched and on GPU.
* :func:`global_ssim`: the one-window SSIM S1·S2 of Brunet et al. (the
  quantity the SSIM ball constrains; paper Eqs. 3-7), per channel, averaged
  over channels.
* :func:`psnr`: 10·log10(1 / MSE) in dB; identical images (MSE = 0) give
  ``max_db`` (default 100 dB) instead of +inf so that averages stay finite.
* :func:`fooling_rate`: the paper's definition (Sec. V): the fraction of
  images whose post-attack label differs from the pre-attack (clean
  prediction) label; optionally also over the images the model classified
  correctly before the attack.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["ssim", "global_ssim", "psnr", "fooling_rate", "perturbation_norms"]


def ssim(x, y, batch_size=512):
    """SSIM per image. ``x, y``: (B, H, W, C) in [0, 1]. Returns (B,) float64.

    Images smaller than 11×11 raise ``ValueError``.
    """
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.float32)
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"x and y must both have shape (B, H, W, C), got {x.shape} and {y.shape}")
    if min(x.shape[1:3]) < 11:
        raise ValueError(f"SSIM needs images of at least 11×11 pixels, got {x.shape[1:3]}")
    out = [_ssim_tf(x[i:i + batch_size], y[i:i + batch_size]).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float64)


@tf.function(reduce_retracing=True)
def _ssim_tf(x, y):
    return tf.image.ssim(x, y, max_val=1.0, filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03)


def global_ssim(x, y):
    """Global SSIM S1·S2 per image (one window over the whole channel), averaged over channels.

    ``x, y``: (B, H, W, C) in [0, 1]. Returns (B,) float64.
    """
    from solvers.ssim_ball import global_ssim as _g

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"x and y must both have shape (B, H, W, C), got {x.shape} and {y.shape}")
    b, c = x.shape[0], x.shape[-1]
    xr = np.moveaxis(x, -1, 1).reshape(b * c, -1)
    yr = np.moveaxis(y, -1, 1).reshape(b * c, -1)
    return _g(xr, yr).reshape(b, c).mean(1)


def psnr(x, y, max_db=100.0):
    """PSNR per image in dB for pixels in [0, 1]. ``x, y``: (B, ...). Returns (B,) float64."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    mse = np.mean((x - y) ** 2, axis=1)
    with np.errstate(divide="ignore"):
        val = -10.0 * np.log10(mse)
    return np.minimum(val, max_db)


def fooling_rate(clean_pred, adv_pred, true_labels=None):
    """Fooling rate: mean of (pre-attack label ≠ post-attack label).

    Args:
        clean_pred: (B,) labels predicted on the clean images.
        adv_pred: (B,) labels predicted on the adversarial images.
        true_labels: optional (B,) ground truth; adds ``fooling_rate_correct``,
            the rate over images that were classified correctly before the attack.

    Returns:
        dict with ``fooling_rate`` (and ``fooling_rate_correct``, ``n_correct``).
    """
    clean_pred = np.asarray(clean_pred)
    adv_pred = np.asarray(adv_pred)
    fooled = clean_pred != adv_pred
    out = {"fooling_rate": float(fooled.mean())}
    if true_labels is not None:
        correct = clean_pred == np.asarray(true_labels)
        out["n_correct"] = int(correct.sum())
        out["fooling_rate_correct"] = float(fooled[correct].mean()) if correct.any() else float("nan")
    return out


def perturbation_norms(x, y):
    """ℓ2 and ℓ∞ norms of the perturbation per image: dict of (B,) arrays."""
    d = (np.asarray(y, np.float64) - np.asarray(x, np.float64)).reshape(len(x), -1)
    return {"l2": np.linalg.norm(d, axis=1), "linf": np.abs(d).max(axis=1)}
