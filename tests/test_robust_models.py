"""The shipped robust models load and reach their stated robust accuracy (docs/results.md, "Robust models").

Robust accuracy: the adversarial (Foolbox L2PGD, 50 steps, seed 0, against the true label) is still
classified as the true label.  The default run checks a fixed subset against the standard model (the
subset's figures, measured, are in the comments); the slow tests check the full figures of the table.
"""

import numpy as np
import pytest

from tfperceptual.attacks import PGD_L2
from tfperceptual.evaluation import robust_accuracy
from tfperceptual.models import zoo


def _robust_accuracy(model, x, y, eps, restarts=1):
    return robust_accuracy([PGD_L2(model, eps, steps=50, seed=r, batch_size=500) for r in range(restarts)], x, y)


def _cifar_subset(n):
    from tfperceptual.datasets import load_cifar10

    x, y = load_cifar10("test")
    idx = (np.arange(n) * len(x)) // n  # stored class by class: evenly spaced = class-balanced
    return x[idx].astype(np.float32), y[idx]


def test_mnist_robust_model_on_the_shipped_sample():
    from tfperceptual.datasets import load_sample

    x, y = load_sample("mnist")
    x, y = x[:200], y[:200]
    robust, standard = zoo.mnist_cnn_robust(), zoo.mnist_cnn()
    assert robust.input_shape == (None, 28, 28, 1) and robust.output_shape == (None, 10)
    assert np.mean(np.argmax(robust.predict(x, verbose=0), -1) == y) >= 0.98  # measured 0.995
    ra, ra_standard = _robust_accuracy(robust, x, y, 2.0), _robust_accuracy(standard, x, y, 2.0)
    assert ra >= 0.75  # measured 0.815 (standard model: 0.28)
    assert ra > ra_standard + 0.4


#: measured on these 200 images: clean / robust (ε = 0.5) — standard 0.865 / 0.12, ℓ2-robust 0.785 / 0.565,
#: SSIM-robust 0.825 / 0.415
@pytest.mark.parametrize("name,clean,robust", [("cifar10_cnn_robust", 0.75, 0.50),
                                               # the same check on the second shipped robust model: -m slow
                                               pytest.param("cifar10_cnn_ssim_robust", 0.80, 0.35,
                                                            marks=pytest.mark.slow)])
def test_cifar10_robust_models_on_a_balanced_subset(name, clean, robust):
    x, y = _cifar_subset(200)
    model = getattr(zoo, name)()
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
    assert np.mean(np.argmax(model.predict(x, verbose=0), -1) == y) >= clean
    ra = _robust_accuracy(model, x, y, 0.5)
    assert ra >= robust
    assert ra > 0.12 + 0.2  # the standard model: 0.12


@pytest.mark.slow
def test_mnist_robust_model_full_figure():
    """Issue 15's target: ≥ 98.5 % clean and ≥ 60 % robust under Foolbox L2PGD (ε = 2.0, 50 steps, 5
    restarts) on the 10,000 test images; measured 98.53 % and 83.14 % (docs/results.md)."""
    from tfperceptual.datasets import load_mnist

    x, y = load_mnist("test")
    model = zoo.mnist_cnn_robust()
    assert np.mean(np.argmax(model.predict(x, batch_size=500, verbose=0), -1) == y) >= 0.985
    assert _robust_accuracy(model, x, y, 2.0, restarts=5) >= 0.60


@pytest.mark.slow
def test_cifar10_robust_model_full_figure():
    """Issue 15's target: ≥ 70 % clean, ≥ 45 % robust under Foolbox L2PGD ε = 0.5, 50 steps, on 1,000
    class-balanced test images; measured 76.2 % (76.69 % on all 10,000) and 53.9 % (docs/results.md)."""
    x, y = _cifar_subset(1000)
    model = zoo.cifar10_cnn_robust()
    assert np.mean(np.argmax(model.predict(x, batch_size=500, verbose=0), -1) == y) >= 0.70
    assert _robust_accuracy(model, x, y, 0.5) >= 0.45
