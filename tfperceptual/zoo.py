"""Models that ship with (or are built by) tfperceptual.

Each returns a ``keras.Model`` that takes pixels in [0, 1] and outputs logits.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["mnist_cnn", "class_names", "ASSETS"]

ASSETS = Path(__file__).resolve().parent / "assets"

_CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
}


def mnist_cnn():
    """The shipped MNIST CNN (trained by ``scripts/train_mnist.py``; 99.36 % test accuracy).

    Input (B, 28, 28, 1) float32 in [0, 1]; output (B, 10) logits.
    """
    import keras

    return keras.models.load_model(ASSETS / "mnist_cnn.keras", compile=False)


def class_names(dataset: str):
    """Label names of ``dataset`` (``"mnist"``)."""
    if dataset not in _CLASS_NAMES:
        raise ValueError(f"unknown dataset {dataset!r}; available: {sorted(_CLASS_NAMES)}")
    return list(_CLASS_NAMES[dataset])
