"""Perceptual regularisation: a decoder head that shows what a Keras classifier perceives.

"Visualizing Representations by Perceptual Regularization" (ICLR 2020 submission): a classifier H = C ∘ F with a
decoder D on its feature map F, trained jointly on CE(H(x), y) + λ · reconstruction(x, D(F(x))).  The
*perception* P = D ∘ F shows what the representation kept; P(x_adv) shows how an adversarial example looks to
the model; Z = F(x_adv) − F(x) is a latent direction, decoded along D(F(x) + αZ).

The model, :class:`PerceptualRegularization`, is defined in :mod:`tfperceptual.models.perceptual` (the zoo loads
the shipped ones) and exported here.

Builders: :func:`mnist_perceptual_parts` (the paper's Appendix B.2), :func:`cifar10_perceptual_parts` (its SVHN
networks of Appendix B.3 applied to 32 × 32 × 3 CIFAR-10 images) and :func:`from_classifier` (cut a user's
classifier at a named layer and add a decoder there).  With :class:`~tfperceptual.training.AdversarialTraining`
the model is trained adversarially and its decoder still learns to reconstruct (module ``adversarial``).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ..models.adapter import as_logits_model
from ..models.perceptual import PerceptualRegularization

__all__ = ["PerceptualRegularization", "mnist_perceptual_parts", "cifar10_perceptual_parts", "from_classifier",
           "default_decoder", "latent_direction", "interpolate"]


def _paper_parts(image_shape, encoder_widths, latent, hidden, first_deconv, deconv_widths, out_stride, seed):
    """The paper's three parts (Appendix B): F = 4 × 4 stride-2 convolutions of ``encoder_widths`` and a valid
    4 × 4 convolution to z ∈ R^latent; C = z → ``hidden`` → 10; D = a transposed convolution ``first_deconv``
    (width, kernel) from 1 × 1, 4 × 4 stride-2 ones of ``deconv_widths``, and a sigmoid one to the image's
    channels (stride ``out_stride``)."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    layers = keras.layers
    x = keras.Input(image_shape, name="pixels")
    h = x
    for i, width in enumerate(encoder_widths, 1):
        h = layers.Conv2D(width, 4, strides=2, padding="same", activation="relu", name=f"f_conv{i}")(h)
    h = layers.Conv2D(latent, 4, padding="valid", activation="relu", name=f"f_conv{len(encoder_widths) + 1}")(h)
    encoder = keras.Model(x, layers.Flatten(name="z")(h), name="encoder")
    z = keras.Input((latent,), name="z")
    c = layers.Dense(hidden, activation="relu", name="c_fc1")(z)
    classifier = keras.Model(z, layers.Dense(10, name="logits")(c), name="classifier")
    zd = keras.Input((latent,), name="z")
    d = layers.Reshape((1, 1, latent), name="d_reshape")(zd)
    d = layers.Conv2DTranspose(first_deconv[0], first_deconv[1], padding="valid", activation="relu",
                               name="d_deconv1")(d)
    for i, width in enumerate(deconv_widths, 2):
        d = layers.Conv2DTranspose(width, 4, strides=2, padding="same", activation="relu", name=f"d_deconv{i}")(d)
    d = layers.Conv2DTranspose(image_shape[-1], 4, strides=out_stride, padding="same", activation="sigmoid",
                               name="d_out")(d)
    return encoder, classifier, keras.Model(zd, d, name="decoder")


def mnist_perceptual_parts(latent=32, seed=None):
    """(encoder, classifier, decoder) of the paper's Appendix B.2 for 28 × 28 × 1 images.

    F: four 4 × 4 convolutions 16-16-32-32 (strides 2, 2, 2 and a valid 4 × 4) to z ∈ R^32; C: 32 → 64 → 10;
    D: transposed convolutions 32 (7 × 7) → 16 → 16 (4 × 4, strides 2) → 1 (4 × 4) with a sigmoid, back to 28 × 28.
    (Strides and paddings are ours where the appendix leaves them open.)
    """
    return _paper_parts((28, 28, 1), (16, 16, 32), latent, 64, (32, 7), (16, 16), 1, seed)


def cifar10_perceptual_parts(latent=64, seed=None):
    """(encoder, classifier, decoder) of the paper's SVHN networks (Appendix B.3, z ∈ R^64) for 32 × 32 × 3
    images (applied to CIFAR-10: SVHN and CelebA cannot be had offline).

    F: 4 × 4 convolutions 32-64-128 with stride 2 (32 → 16 → 8 → 4) and a valid 4 × 4 convolution to z ∈ R^64;
    C: 64 → 128 → 10; D: transposed convolutions 128 (4 × 4 from 1 × 1) → 64 → 32 → 3 (4 × 4, stride 2) with a
    sigmoid, back to 32 × 32 × 3.  (Widths, strides and paddings are ours where the appendix leaves them open.)
    """
    return _paper_parts((32, 32, 3), (32, 64, 128), latent, 128, (128, 4), (64, 32), 2, seed)


def default_decoder(feature_shape, image_shape, width=64, name="decoder"):
    """A decoder from features of ``feature_shape`` ((d,) or (h, w, c)) to images of ``image_shape`` (H, W, C) in
    [0, 1]: a dense layer to a small map (for a vector), transposed 4 × 4 convolutions of stride 2 (width halving
    from ``width``) until the map covers H × W, a bilinear resize where the sizes do not divide, and a 3 × 3
    convolution with a sigmoid to C channels.

    Raises:
        ValueError: an image shape that is not (H, W, C) with known sizes, or features of another rank.
    """
    image_shape = tuple(image_shape)
    if len(image_shape) != 3 or any(s is None for s in image_shape):
        raise ValueError(f"the decoder needs a known image shape (H, W, C), got {image_shape}")
    feature_shape = tuple(feature_shape)
    if len(feature_shape) not in (1, 3) or any(s is None for s in feature_shape):
        raise ValueError(f"the decoder takes features of shape (d,) or (h, w, c) with known sizes, got "
                         f"{feature_shape}: pass decoder= built for them")
    H, W, C = image_shape
    layers = keras.layers
    z = keras.Input(feature_shape, name="features")
    if len(feature_shape) == 1:
        h0, w0 = max(1, -(-H // 8)), max(1, -(-W // 8))
        d = layers.Dense(h0 * w0 * width, activation="relu", name="d_dense")(z)
        d = layers.Reshape((h0, w0, width), name="d_reshape")(d)
    else:
        h0, w0 = feature_shape[:2]
        d = z
    size, i, filters = (h0, w0), 0, width
    while size[0] < H or size[1] < W:
        i += 1
        d = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", activation="relu", name=f"d_deconv{i}")(d)
        size, filters = (size[0] * 2, size[1] * 2), max(16, filters // 2)
    if size != (H, W):
        d = layers.Resizing(H, W, interpolation="bilinear", name="d_resize")(d)
    d = layers.Conv2D(C, 3, padding="same", activation="sigmoid", name="d_out")(d)
    return keras.Model(z, d, name=name)


def from_classifier(model, split_layer, decoder=None, lam=1e-2):
    """A :class:`PerceptualRegularization` of a user's classifier cut at the layer named ``split_layer``.

    F = the model from its input to that layer's output, C = the rest of the model (its logits: a softmax head
    is read through its pre-activation, as :class:`~tfperceptual.models.LogitsModel` does), D = ``decoder`` or
    :func:`default_decoder` for that layer's output shape.  F and C share the user's layers and weights: training
    the returned model trains the user's classifier.

    Args:
        model: a Keras image classifier (functional or ``Sequential`` with an input shape) taking (B, H, W, C)
            in [0, 1]; logits or softmax head.
        split_layer: the name of a layer on every path from the input to the output (its output is z).
        decoder: a Keras model from z to images (B, H, W, C) in [0, 1], or ``None``.
        lam: λ ≥ 0 (see :class:`PerceptualRegularization`).

    Raises:
        ValueError: ``split_layer`` not in the model (the names are listed), the input or output layer itself,
            a layer that does not cut the graph (a skip connection passes it), or a decoder that does not fit.
    """
    network = as_logits_model(model).network
    names = [layer.name for layer in network.layers]
    if not isinstance(split_layer, str) or split_layer not in names:
        raise ValueError(f"split_layer {split_layer!r} is not a layer of model {model.name!r}; its layers are "
                         f"{names}")
    layer = network.get_layer(split_layer)
    if isinstance(layer, keras.layers.InputLayer) or layer is network.layers[-1]:
        raise ValueError(f"split_layer {split_layer!r} is the model's input or output layer: split at a layer "
                         "in between")
    features = layer.output
    encoder = keras.Model(network.inputs[0], features, name=f"{model.name}_encoder")
    try:
        classifier = keras.Model(features, network.outputs[0], name=f"{model.name}_head")
    except ValueError as e:
        raise ValueError(f"split_layer {split_layer!r} does not cut model {model.name!r} in two (a path from the "
                         f"input to the logits passes beside it, e.g. a skip connection): {e}") from None
    if decoder is None:
        decoder = default_decoder(tuple(features.shape[1:]), tuple(network.inputs[0].shape[1:]))
    return PerceptualRegularization(encoder, classifier, decoder, lam=lam, name=f"{model.name}_perceptual")


def latent_direction(model, x, x_adv):
    """Z = F(x_adv) − F(x) (B, …) float32 NumPy for images (B, H, W, C) in [0, 1] of a
    :class:`PerceptualRegularization` model.

    Raises:
        ValueError: x and x_adv of different shapes, or not of the model's image shape.
    """
    x, x_adv = np.asarray(x, np.float32), np.asarray(x_adv, np.float32)
    if x.shape != x_adv.shape or x.shape[1:] != tuple(model.image_shape):
        raise ValueError(f"x and x_adv must both have shape (B, {', '.join(map(str, model.image_shape))}), got "
                         f"{x.shape} and {x_adv.shape}")
    return (model.encoder(tf.constant(x_adv)) - model.encoder(tf.constant(x))).numpy()


def interpolate(model, x, z, alphas):
    """Decode along F(x) + α z: returns (images (A, B, H, W, C) = D(F(x) + α z), logits (A, B, K) = C(F(x) + α z)).

    The paper writes C(F(X) + αZ) for the synthesised images; the images come from the decoder D, the classifier
    C gives the model's reading of the same latent point.  α = 0 gives P(x); α = 1 with z = Z gives P(x_adv).
    """
    alphas = np.asarray(alphas, np.float32).reshape(-1)
    if alphas.size == 0 or not np.all(np.isfinite(alphas)):
        raise ValueError(f"alphas must be a non-empty sequence of finite numbers, got {alphas.tolist()}")
    base = model.encoder(tf.constant(x, tf.float32))
    if tuple(np.shape(z)) != tuple(base.shape):
        raise ValueError(f"z must have the shape of F(x), {tuple(base.shape)}, got {tuple(np.shape(z))}")
    z = tf.constant(z, base.dtype)
    images, logits = [], []
    for a in alphas:
        point = base + float(a) * z
        images.append(tf.clip_by_value(model.decoder(point), 0.0, 1.0).numpy())
        logits.append(model.classifier(point).numpy())
    return np.stack(images), np.stack(logits)

