"""Models that ship with (or are built by) tfperceptual.

Each returns a ``keras.Model`` that takes pixels in [0, 1] and outputs logits;
preprocessing is inside the model as layers.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from ..datasets import CIFAR10_CLASSES, data_root
from .perceptual import PerceptualRegularization
from .tfjs_weights import assign_tfjs_weights, read_tfjs_weights

__all__ = ["mnist_cnn", "cifar10_cnn", "mnist_cnn_robust", "cifar10_cnn_robust", "cifar10_cnn_ssim_robust",
           "mnist_perceptual", "cifar10_perceptual", "imagenet_mobilenet", "class_names", "ASSETS", "MODELS_ENV"]

ASSETS = Path(__file__).resolve().parents[1] / "assets"
MODELS_ENV = "TFPERCEPTUAL_MODELS"
_MOBILENET = "mobilenet_v1_0.75_224_tfjs"


def mnist_cnn():
    """The shipped MNIST CNN (``scripts/train_mnist.py``; 99.36 % test accuracy).

    Input (B, 28, 28, 1) float32 in [0, 1]; output (B, 10) logits.
    """
    return keras.models.load_model(ASSETS / "mnist_cnn.keras", compile=False)


def cifar10_cnn():
    """The shipped CIFAR-10 CNN (``scripts/train_cifar10.py``).

    Input (B, 32, 32, 3) float32 in [0, 1] (standardisation inside); output (B, 10) logits.

    Raises:
        FileNotFoundError: the weights have not been trained yet.
    """
    path = ASSETS / "cifar10_cnn.keras"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run scripts/train_cifar10.py")
    return keras.models.load_model(path, compile=False)


def _asset(name, how):
    path = ASSETS / f"{name}.keras"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run {how}")
    return keras.models.load_model(path, compile=False)


def mnist_cnn_robust():
    """The shipped ℓ2-robust MNIST CNN: :func:`mnist_cnn`'s architecture, adversarially fine-tuned with the
    project's L2PGD (ε = 2.0, 10 steps; ``scripts/train_robust.py``; accuracies in docs/results.md,
    "Robust models").

    Input (B, 28, 28, 1) float32 in [0, 1]; output (B, 10) logits.

    Raises:
        FileNotFoundError: the weights have not been trained yet.
    """
    return _asset("mnist_cnn_robust", "scripts/train_robust.py --data mnist --attack l2_pgd --eps 2.0 ...")


def cifar10_cnn_robust():
    """The shipped ℓ2-robust CIFAR-10 CNN: :func:`cifar10_cnn`'s architecture, adversarially fine-tuned
    with the project's L2PGD (ε = 0.5, 2 steps; ``scripts/train_robust.py``; docs/results.md).

    Input (B, 32, 32, 3) float32 in [0, 1]; output (B, 10) logits.

    Raises:
        FileNotFoundError: the weights have not been trained yet.
    """
    return _asset("cifar10_cnn_robust", "scripts/train_robust.py --data cifar10 --attack l2_pgd --eps 0.5 ...")


def cifar10_cnn_ssim_robust():
    """The shipped SSIM-robust CIFAR-10 CNN: :func:`cifar10_cnn`'s architecture, adversarially fine-tuned
    on FPGAP's SSIM-ball adversarials (ε = 0.015, 2 steps, CE loss; ``scripts/train_robust.py``;
    docs/results.md).

    Input (B, 32, 32, 3) float32 in [0, 1]; output (B, 10) logits.

    Raises:
        FileNotFoundError: the weights have not been trained yet.
    """
    return _asset("cifar10_cnn_ssim_robust", "scripts/train_robust.py --data cifar10 --attack fpgap ...")


def _perceptual(name, how):
    model = _asset(name, how)
    if not isinstance(model, PerceptualRegularization):  # pragma: no cover - a corrupted asset
        raise TypeError(f"{name}.keras holds a {type(model).__name__}, not a PerceptualRegularization")
    return model


def mnist_perceptual():
    """The shipped perceptually regularised MNIST model (:class:`~tfperceptual.training.PerceptualRegularization`
    with the paper's Appendix B.2 parts; ``scripts/train_perceptual.py``; λ, accuracy and perception quality in
    docs/results.md, "Perceptual regularisation").

    ``model(x)``: (B, 28, 28, 1) float32 in [0, 1] → (B, 10) logits; ``model.perceive(x)`` → P(x), same shape.

    Raises:
        FileNotFoundError: the weights have not been trained yet.
    """
    return _perceptual("mnist_perceptual", "scripts/train_perceptual.py --data mnist ... --ship LAMBDA")


def cifar10_perceptual():
    """The shipped perceptually regularised CIFAR-10 model (the paper's SVHN parts of Appendix B.3 at 32 × 32 × 3;
    ``scripts/train_perceptual.py``; docs/results.md, "Perceptual regularisation").

    ``model(x)``: (B, 32, 32, 3) float32 in [0, 1] → (B, 10) logits; ``model.perceive(x)`` → P(x), same shape.

    Raises:
        FileNotFoundError: the weights have not been trained yet.
    """
    return _perceptual("cifar10_perceptual", "scripts/train_perceptual.py --data cifar10 ... --ship LAMBDA")


def _models_root():
    if os.environ.get(MODELS_ENV):
        return Path(os.environ[MODELS_ENV])
    return data_root().parent / "models"


def imagenet_mobilenet(weights_dir=None, input_size=None):
    """Pretrained ImageNet MobileNet v1 (α = 0.75) from TensorFlow.js files, no network access.

    Builds ``keras.applications.MobileNet(alpha=0.75, weights=None)`` and assigns
    the weights of ``<weights_dir>/model.json`` and its float32 shards by layer
    name (a depthwise layer's ``kernel`` is the manifest's ``depthwise_kernel``).
    ``weights_dir`` defaults to ``$TFPERCEPTUAL_MODELS/mobilenet_v1_0.75_224_tfjs``,
    else ``../shared/models/mobilenet_v1_0.75_224_tfjs`` beside the data root.

    The returned model takes (B, H, W, 3) pixels in [0, 1] of any size (``input_size=None``, default; or
    a fixed H = W = ``input_size``), resizes them bilinearly to 224 × 224 inside the graph (the identity
    for 224 × 224 input; the 227 × 227 images of ``imagenet-val1300`` go through the same resize as
    before) and maps them to [-1, 1] (``x / 127.5 - 1`` on 0..255); it outputs (B, 1000) logits.
    Top-1 on the 1,300 images: see docs/results.md.

    Raises:
        FileNotFoundError / ValueError: missing or inconsistent TensorFlow.js files.
    """
    wdir = Path(weights_dir) if weights_dir is not None else _models_root() / _MOBILENET
    weights = read_tfjs_weights(wdir)
    size = None if input_size is None else int(input_size)
    inp = keras.Input((size, size, 3), name="pixels")
    h = inp
    if size != 224:
        h = keras.layers.Resizing(224, 224, interpolation="bilinear", name="resize_224")(h)
    h = keras.layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(h)
    # built on the preprocessed tensor, so the network is one flat functional graph (its layers, e.g.
    # for Grad-CAM++ or perceptual losses, are reachable by name from the returned model)
    net = keras.applications.MobileNet(input_shape=(224, 224, 3), alpha=0.75, weights=None, input_tensor=h,
                                       classifier_activation=None)
    assign_tfjs_weights(net, weights, {("DepthwiseConv2D", "kernel"): "depthwise_kernel"})
    # a pretrained inference model: frozen batch norm, so that model(x) without training=False (as
    # Foolbox and Xplique call it) uses the moving statistics, not the batch's
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return keras.Model(inp, net.output, name="imagenet_mobilenet_v1_075")


def class_names(dataset: str):
    """Label names of ``"mnist"``, ``"cifar10"`` or ``"imagenet"`` (from ``synset_words.txt``)."""
    if dataset == "mnist":
        return [str(i) for i in range(10)]
    if dataset == "cifar10":
        return list(CIFAR10_CLASSES)
    if dataset == "imagenet":
        lines = (data_root() / "imagenet-val1300" / "synset_words.txt").read_text().splitlines()
        return [line.split(" ", 1)[1].strip() for line in lines if line.strip()]
    raise ValueError(f"unknown dataset {dataset!r}; choose 'mnist', 'cifar10' or 'imagenet'")
