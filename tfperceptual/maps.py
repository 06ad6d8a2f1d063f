"""Per-pixel maps of where an image changed: the local SSIM map (and, later, class activation maps).

The SSIM map is the quantity behind the paper's localisation study (Pochimireddy et al., Sec. V-A/B,
Fig. 3-5): a pixel whose local SSIM between the clean and the adversarial image drops is a pixel
the attack changed perceptibly.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .validation import check_images

__all__ = ["ssim_map", "noise_map", "gaussian_window", "gradcam_plus_plus", "gradcam_plus_plus_fn",
           "penultimate_conv_layer"]

K1, K2 = 0.01, 0.03


def gaussian_window(sigma=1.5, truncate=3.5):
    """The normalised 1-D Gaussian of scipy.ndimage.gaussian_filter (radius int(truncate·σ + 0.5)).

    With σ = 1.5 this is the 11-tap window of Wang et al. (2004) that scikit-image uses.
    """
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _blur(img, w):
    """Separable Gaussian blur of (B, H, W, C) with symmetric ('reflect' in SciPy) borders."""
    r = (len(w) - 1) // 2
    c = tf.shape(img)[-1]
    kx = tf.reshape(tf.constant(w, img.dtype), (1, -1, 1, 1))
    ky = tf.reshape(tf.constant(w, img.dtype), (-1, 1, 1, 1))
    img = tf.pad(img, [[0, 0], [r, r], [r, r], [0, 0]], mode="SYMMETRIC")
    img = tf.nn.depthwise_conv2d(img, tf.tile(kx, (1, 1, c, 1)), strides=[1, 1, 1, 1], padding="VALID")
    return tf.nn.depthwise_conv2d(img, tf.tile(ky, (1, 1, c, 1)), strides=[1, 1, 1, 1], padding="VALID")


def ssim_map(x, x_adv, sigma=1.5, data_range=1.0):
    """Local SSIM between ``x`` and ``x_adv`` at every pixel and channel.

    Gaussian window σ = 1.5 (11 × 11), K1 = 0.01, K2 = 0.03, population (not sample) statistics and
    SciPy's 'reflect' borders: equal to ``skimage.metrics.structural_similarity(x, y, full=True,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)[1]``
    per image (Wang et al., IEEE TIP 2004, Eq. 13), and its mean over the interior (borders of
    5 pixels cropped) is the SSIM of :func:`tfperceptual.metrics.ssim`.

    Args:
        x, x_adv: (B, H, W, C) float arrays, pixels in [0, 1].
        sigma: width of the Gaussian window in pixels.
        data_range: L of the SSIM constants (1 for pixels in [0, 1]).

    Returns:
        (B, H, W, C) float32 NumPy array, values in [−1, 1] (1 where nothing changed).

    Raises:
        ValueError / TypeError: shapes differ, NaN/Inf, pixels outside [0, 1] (see
            :func:`tfperceptual.validation.check_images`).
    """
    x = check_images(x, "x")
    x_adv = check_images(x_adv, "x_adv")
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv must have the same shape, got {x.shape} and {x_adv.shape}")
    w = gaussian_window(sigma)
    if min(x.shape[1:3]) < len(w):
        raise ValueError(f"images must be at least {len(w)}×{len(w)} pixels for a σ = {sigma} window")
    return _ssim_map(tf.constant(x, tf.float64), tf.constant(x_adv, tf.float64), w, float(data_range)).numpy()


def _ssim_map(x, y, w, data_range):
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    ux, uy = _blur(x, w), _blur(y, w)
    vx = _blur(x * x, w) - ux * ux
    vy = _blur(y * y, w) - uy * uy
    vxy = _blur(x * y, w) - ux * uy
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return tf.cast(s, tf.float32)


def noise_map(ssim_maps, combine="max"):
    """Per-pixel dissimilarity 1 − SSIM, channels combined: (B, H, W, C) → (B, H, W).

    Args:
        ssim_maps: output of :func:`ssim_map`.
        combine: ``"max"`` (default: a pixel counts as perturbed when any colour channel changed —
            the paper shows the channels separately) or ``"mean"`` over the channels.

    Returns:
        (B, H, W) float32 array, values in [0, 2].
    """
    d = 1.0 - np.asarray(ssim_maps, np.float32)
    if d.ndim != 4:
        raise ValueError(f"ssim_maps must have shape (B, H, W, C), got {d.shape}")
    if combine == "max":
        return d.max(-1)
    if combine == "mean":
        return d.mean(-1)
    raise ValueError(f"combine must be 'max' or 'mean', got {combine!r}")


_ACTIVATION_LAYERS = ("ReLU", "Activation", "LeakyReLU", "ELU", "PReLU")
_CONV_LAYERS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")


def penultimate_conv_layer(model):
    """Name of the layer whose feature maps GradCAM++ weighs: the last 4-D activation before the head.

    The last layer with a (B, h, w, k) output, h, w > 1, that is a convolution with a non-linear
    activation or an activation layer (ReLU, ...) — for a conv → batch-norm → ReLU block that is the
    ReLU, whose maps are non-negative as Grad-CAM assumes (the raw convolution output before batch
    norm can be negative everywhere, which makes the CAM vanish). Falls back to the last convolution.

    Raises:
        ValueError: the model has no convolutional feature map.
    """
    best, last_conv = None, None
    for layer in model.layers:
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is None or len(shape) != 4 or (shape[1] is not None and shape[1] <= 1):
            continue
        kind = type(layer).__name__
        act = getattr(getattr(layer, "activation", None), "__name__", "linear")
        if kind in _CONV_LAYERS:
            last_conv = layer.name
            if act != "linear":
                best = layer.name
        elif kind in _ACTIVATION_LAYERS:
            best = layer.name
    if best is None and last_conv is None:
        raise ValueError("the model has no convolutional feature map for GradCAM++; pass layer= explicitly")
    return best or last_conv


def gradcam_plus_plus(model, images, labels, layer=None, batch_size=32):
    """GradCAM++ maps of ``model`` for ``labels``, computed by tf-keras-vis (Chattopadhay et al., WACV 2018).

    Uses ``tf_keras_vis.gradcam_plus_plus.GradcamPlusPlus`` with ``CategoricalScore(labels)``; a
    model that ends in a softmax is handed over with ``ReplaceToLinear`` (the score is the logit), and
    a ``Sequential`` model is first rebuilt as a functional one sharing its weights (tf-keras-vis 0.8.7
    under Keras 3 fails on ``Sequential``: no ``output_names``).

    Args:
        model: Keras classifier taking pixels in [0, 1].
        images: (B, H, W, C) float, pixels in [0, 1].
        labels: (B,) classes to explain (e.g. the clean predictions).
        layer: name of the feature layer; default :func:`penultimate_conv_layer`.
        batch_size: images per tf-keras-vis call.

    Returns:
        (B, H, W) float32 maps upsampled to the image size and normalised to [0, 1] per image
        (tf-keras-vis's bilinear ``expand_cam`` and min-max ``normalize_cam``; a constant map is 0).

    Raises:
        ValueError / TypeError: bad images or labels (see :mod:`tfperceptual.validation`), no
            convolutional layer.
    """
    from .validation import check_labels

    fn = gradcam_plus_plus_fn(model, layer)
    x = check_images(images, "images")
    y = check_labels(labels, len(x), fn.num_classes, "labels")
    return np.concatenate([fn(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def gradcam_plus_plus_fn(model, layer=None):
    """Build the tf-keras-vis GradCAM++ visualiser once; return ``f(images, labels) -> (B, H, W)`` maps.

    Same maps as :func:`gradcam_plus_plus` (which calls this); for callers that explain many batches
    (the model is rebuilt/cloned once, not per batch).
    """
    from .saliency import saliency_fn

    return saliency_fn(model, "gradcam++", layer)
