"""Image operations in TensorFlow, one copy each: Gaussian window and blur, the local SSIM map, SSIM,
global SSIM and PSNR.

All take and return tensors, work on whole batches (B, H, W, C) inside or outside ``tf.function`` and run
on GPU unchanged; they do not validate their inputs (callers do: :mod:`tfperceptual.evaluation.quality`
is the checked NumPy-facing layer over them).

* :func:`ssim_map` — Wang et al. (IEEE TIP 2004, Eq. 13): Gaussian window σ = 1.5 (11 × 11), K1 = 0.01,
  K2 = 0.03, population statistics, SciPy-style reflected borders; equal to
  ``skimage.metrics.structural_similarity(..., full=True, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, channel_axis=-1)[1]``.
* :func:`ssim` — the map's mean over the interior (the window's radius cropped from each border) and over
  channels: scikit-image's (and ``tf.image.ssim``'s) SSIM.
* :func:`global_ssim` — the one-window SSIM S1·S2 of Brunet et al. that the SSIM ball constrains (paper
  Eqs. 3-7), per channel, averaged over channels.
* :func:`psnr` — 10·log10(1 / MSE) in dB for pixels in [0, 1], capped at ``max_db`` (identical images).
* :func:`gaussian_blur` / :func:`blur_saliency` — separable Gaussian of width σ with symmetric
  ('reflect' in SciPy) borders: ``scipy.ndimage.gaussian_filter(a, σ, mode="reflect", truncate=4)``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from solvers.rows import to_rows
from solvers.ssim_ball import global_ssim as _rows_global_ssim

__all__ = ["gaussian_window", "gaussian_blur", "blur_saliency", "normalise_maps", "ssim_map", "ssim", "global_ssim",
           "psnr", "SSIM_SIGMA", "K1", "K2"]

#: SSIM constants of Wang et al. (2004)
K1, K2 = 0.01, 0.03
#: width of SSIM's Gaussian window in pixels (11 taps with SciPy's truncation at 3.5 σ)
SSIM_SIGMA = 1.5


def gaussian_window(sigma=SSIM_SIGMA, truncate=3.5):
    """The normalised 1-D Gaussian of ``scipy.ndimage.gaussian_filter`` (radius int(truncate·σ + 0.5)), NumPy.

    With σ = 1.5 and truncate = 3.5 this is the 11-tap window of Wang et al. (2004) that scikit-image uses.
    """
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def gaussian_blur(images, sigma, truncate=4.0):
    """Separable Gaussian blur of (B, H, W, C) images with symmetric borders; σ in pixels, ≤ 0: unchanged.

    Returns a tensor of the images' float dtype.

    Raises:
        ValueError: the kernel radius int(truncate·σ + 0.5) is not smaller than the height or width.
    """
    x = tf.convert_to_tensor(images)
    if sigma is None or sigma <= 0:
        return x
    w = gaussian_window(float(sigma), truncate)
    r = (len(w) - 1) // 2
    for axis in (1, 2):
        size = x.shape[axis]
        if size is not None and r >= size:
            raise ValueError(f"sigma = {sigma} is too wide for images of size {size} "
                             f"(kernel radius {r} must be < {size})")
    c = tf.shape(x)[-1]
    k = tf.constant(w, x.dtype)
    kx = tf.tile(tf.reshape(k, (1, -1, 1, 1)), (1, 1, c, 1))
    ky = tf.tile(tf.reshape(k, (-1, 1, 1, 1)), (1, 1, c, 1))
    x = tf.pad(x, [[0, 0], [r, r], [r, r], [0, 0]], mode="SYMMETRIC")
    x = tf.nn.depthwise_conv2d(x, kx, strides=[1, 1, 1, 1], padding="VALID")
    return tf.nn.depthwise_conv2d(x, ky, strides=[1, 1, 1, 1], padding="VALID")


def blur_saliency(maps, sigma):
    """Gaussian blur of (B, H, W) maps, width ``sigma`` in pixels (0: unchanged), as float32 tensors.

    Equal to ``scipy.ndimage.gaussian_filter(m, sigma, mode="reflect")`` per map (radius int(4σ + 0.5)).

    Raises:
        ValueError: the kernel radius is not smaller than the map's height or width.
    """
    m = tf.cast(tf.convert_to_tensor(maps), tf.float32)
    if sigma is None or sigma <= 0:
        return m
    return gaussian_blur(m[..., None], sigma)[..., 0]


def normalise_maps(maps):
    """Min–max normalise each (H, W) map of (B, H, W) to [0, 1], in the maps' float dtype (a constant map
    becomes 0)."""
    m = tf.convert_to_tensor(maps)
    lo = tf.reduce_min(m, [1, 2], keepdims=True)
    span = tf.reduce_max(m, [1, 2], keepdims=True) - lo
    return tf.where(span > 0, (m - lo) / tf.where(span > 0, span, tf.ones_like(span)), tf.zeros_like(m))


def ssim_map(x, y, sigma=SSIM_SIGMA, data_range=1.0):
    """Local SSIM between ``x`` and ``y`` (B, H, W, C) at every pixel and channel, same dtype, in [−1, 1].

    See the module docstring; the images must be at least 11 × 11 for σ = 1.5 (checked by the callers).
    """
    x = tf.convert_to_tensor(x)
    y = tf.cast(y, x.dtype)
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2

    def blur(a):
        return gaussian_blur(a, sigma, truncate=3.5)

    ux, uy = blur(x), blur(y)
    vx = blur(x * x) - ux * ux
    vy = blur(y * y) - uy * uy
    vxy = blur(x * y) - ux * uy
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def ssim(x, y, sigma=SSIM_SIGMA, data_range=1.0):
    """SSIM per image (B,): :func:`ssim_map` averaged over the interior (borders of the window's radius
    cropped, as scikit-image and ``tf.image.ssim`` do) and over channels."""
    r = (len(gaussian_window(sigma)) - 1) // 2
    m = ssim_map(x, y, sigma, data_range)
    return tf.reduce_mean(m[:, r:-r, r:-r, :], axis=[1, 2, 3])


def global_ssim(x, y):
    """Global SSIM S1·S2 per image (B,): one window over each whole channel, averaged over channels (float64)."""
    x = tf.cast(x, tf.float64)
    y = tf.cast(y, tf.float64)
    b = tf.shape(x)[0]
    c = x.shape[-1] if x.shape[-1] is not None else tf.shape(x)[-1]
    rows = _rows_global_ssim(to_rows(tf.reshape(x, (b, -1)), c), to_rows(tf.reshape(y, (b, -1)), c))
    return tf.reduce_mean(tf.reshape(rows, (b, c)), 1)


def psnr(x, y, max_db=100.0):
    """PSNR per image (B,) in dB for pixels in [0, 1]: 10·log10(1 / MSE), at most ``max_db`` (MSE = 0)."""
    x = tf.cast(x, tf.float64)
    y = tf.cast(y, tf.float64)
    b = tf.shape(x)[0]
    mse = tf.reduce_mean(tf.square(tf.reshape(x - y, (b, -1))), 1)
    db = -10.0 * tf.math.log(mse) / tf.math.log(tf.constant(10.0, tf.float64))
    return tf.minimum(db, tf.constant(max_db, tf.float64))
