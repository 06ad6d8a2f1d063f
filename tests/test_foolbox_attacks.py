"""Foolbox baselines through the project's interface."""

import numpy as np
import pytest

from tfperceptual.attacks import AttackResult
from tfperceptual.attacks import FoolboxAttack


@pytest.mark.parametrize("name,eps,norm", [("fgsm", 0.1, "linf"), ("fgm", 1.5, "l2"),
                                           ("pgd", 0.1, "linf"), ("pgd_l2", 1.5, "l2")])
def test_foolbox_attacks_respect_their_budget(mnist_model, mnist_batch, name, eps, norm):
    x, y = mnist_batch
    x, y = x[:16], y[:16]
    res = FoolboxAttack(mnist_model, name, eps=eps, steps=10)(x, y)
    assert isinstance(res, AttackResult) and res.adversarial.shape == x.shape
    d = (res.adversarial - x).reshape(len(x), -1)
    size = np.abs(d).max(1) if norm == "linf" else np.linalg.norm(d, axis=1)
    assert np.all(size <= eps * (1 + 1e-4) + 1e-6)
    assert res.adversarial.min() >= 0 and res.adversarial.max() <= 1
    pred = np.argmax(mnist_model(res.adversarial).numpy(), -1)
    np.testing.assert_array_equal(res.success, pred != y)


def test_pgd_is_at_least_as_strong_as_fgsm(mnist_model, mnist_batch):
    x, y = mnist_batch
    fgsm = FoolboxAttack(mnist_model, "fgsm", eps=0.15)(x, y)
    # Foolbox's default step is 0.033·ε: 50 steps (the paper's) can travel the whole ε-ball, 20 cannot
    pgd = FoolboxAttack(mnist_model, "pgd", eps=0.15, steps=50)(x, y)
    assert pgd.success.mean() >= fgsm.success.mean()


def test_targeted_foolbox(mnist_model, mnist_batch):
    x, y = mnist_batch
    t = (y + 1) % 10
    res = FoolboxAttack(mnist_model, "pgd_l2", eps=4.0, steps=20)(x[:8], y[:8], target=t[:8])
    np.testing.assert_array_equal(res.success, res.adv_labels == t[:8])


def test_bad_arguments(mnist_model):
    with pytest.raises(ValueError, match="attack"):
        FoolboxAttack(mnist_model, "deepfool")
    with pytest.raises(ValueError, match="eps"):
        FoolboxAttack(mnist_model, "fgsm", eps=-1)


@pytest.mark.parametrize("name,default_steps,default_rel", [("pgd", 40, 0.01 / 0.3), ("pgd_l2", 50, 0.025)])
def test_pgd_step_size_scales_up_for_short_runs(mnist_model, name, default_steps, default_rel):
    assert FoolboxAttack(mnist_model, name, 0.1, steps=default_steps).rel_stepsize == pytest.approx(default_rel)
    assert FoolboxAttack(mnist_model, name, 0.1, steps=100).rel_stepsize == pytest.approx(default_rel)
    short = FoolboxAttack(mnist_model, name, 0.1, steps=10)
    assert short.rel_stepsize == pytest.approx(default_rel * default_steps / 10)
    assert short.attack.rel_stepsize == pytest.approx(short.rel_stepsize)  # handed to Foolbox
    assert FoolboxAttack(mnist_model, name, 0.1, steps=10, rel_stepsize=0.05).attack.rel_stepsize == 0.05


def test_short_linf_pgd_reaches_the_edge_of_its_ball(mnist_model, mnist_batch):
    # 10 steps of Foolbox's default 0.033·ε move at most 0.33·ε from the random start; the scaled
    # step lets the sign iterates saturate at ±ε on most pixels
    x, y = mnist_batch
    eps = 0.02  # too small to fool: the iterates keep pushing
    r = FoolboxAttack(mnist_model, "pgd", eps, steps=10)(x, y)
    d = np.abs(r.adversarial - x)
    inside = (x > eps) & (x < 1 - eps)  # pixels the box does not clip
    assert np.max(d) <= eps + 1e-6
    assert np.mean(d[inside]) > 0.75 * eps  # measured 0.84 ε (Foolbox's unscaled step: 0.53 ε)
    assert np.mean(d[inside] > 0.99 * eps) > 0.4  # at the edge: 61 % (unscaled: 17 %)


def test_foolbox_sees_the_inference_mode_model(rng):
    """Foolbox calls model(x) with no training flag; a batch-norm model must still run on its moving
    statistics (a batch-statistics forward pass gives other logits and other gradients)."""
    import keras

    inp = keras.Input((8, 8, 1))
    h = keras.layers.BatchNormalization(name="bn")(keras.layers.Conv2D(4, 3, name="c")(inp))
    out = keras.layers.Dense(3)(keras.layers.Flatten()(keras.layers.ReLU()(h)))
    model = keras.Model(inp, out)
    bn = model.get_layer("bn")
    bn.moving_mean.assign(np.full(4, 0.7, np.float32))
    bn.moving_variance.assign(np.full(4, 3.0, np.float32))
    x = rng.random((4, 8, 8, 1)).astype(np.float32)
    atk = FoolboxAttack(model, "fgsm", 0.1)
    import eagerpy as ep
    import tensorflow as tf

    got = atk.fmodel(ep.astensor(tf.constant(x))).raw.numpy()
    np.testing.assert_allclose(got, model(x, training=False).numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(model(x, training=True).numpy(), model(x, training=False).numpy(), atol=1e-3)


def test_zoo_mobilenet_runs_in_inference_mode_without_a_training_flag():
    from tfperceptual.models import imagenet_mobilenet

    m = imagenet_mobilenet()
    x = np.random.default_rng(0).random((2, 227, 227, 3)).astype(np.float32)
    np.testing.assert_allclose(m(x).numpy(), m(x, training=False).numpy(), rtol=1e-4, atol=1e-4)
