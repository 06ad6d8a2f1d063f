"""The project's graph-pure norm-ball attacks: LinfPGD, L2PGD, RandomStartFGSM."""

import numpy as np
import pytest
import tensorflow as tf

from tfperceptual.attacks import L2PGD, PGD, PGD_L2, LinfPGD, RandomStartFGSM, build_attack


def _norms(adv, x):
    d = (adv - x).reshape(len(x), -1)
    return np.abs(d).max(1), np.sqrt((d**2).sum(1))


@pytest.mark.parametrize("cls,eps", [(LinfPGD, 0.1), (L2PGD, 1.5), (RandomStartFGSM, 0.1)])
def test_the_output_stays_in_its_ball_and_the_box_inside_tf_function(mnist_model, mnist_batch, cls, eps):
    x, y = mnist_batch
    attack = cls(mnist_model, eps, seed=0) if cls is RandomStartFGSM else cls(mnist_model, eps, steps=4, seed=0)
    adv = tf.function(attack.perturb)(tf.constant(x), tf.constant(y)).numpy()
    linf, l2 = _norms(adv, x)
    norm = l2 if cls is L2PGD else linf
    assert norm.max() <= eps * (1 + 1e-5)
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert norm.max() > 0.5 * eps  # it moved
    # a one-step attack's output (the first iterate of the same loop) is also in the ball
    one = cls(mnist_model, eps, seed=0) if cls is RandomStartFGSM else cls(mnist_model, eps, steps=1, seed=0)
    first = one.perturb(tf.constant(x), tf.constant(y)).numpy()
    assert _norms(first, x)[1 if cls is L2PGD else 0].max() <= eps * (1 + 1e-5)


def test_traces_once_per_input_shape_and_follows_an_assigned_eps(mnist_model, mnist_batch):
    x, y = mnist_batch
    attack = LinfPGD(mnist_model, 0.05, steps=2, seed=0)
    for _ in range(3):
        attack.perturb(tf.constant(x), tf.constant(y))
    attack.eps = 0.2
    adv = attack.perturb(tf.constant(x), tf.constant(y)).numpy()
    assert attack._run.experimental_get_tracing_count() == 1
    assert _norms(adv, x)[0].max() > 0.1  # the traced graph reads the new ε
    attack.step_size = 0.01
    adv = attack.perturb(tf.constant(x), tf.constant(y)).numpy()
    assert attack._run.experimental_get_tracing_count() == 1
    assert _norms(adv, x)[0].max() <= 0.2 * (1 + 1e-5)


def test_random_start_is_seeded_stateless_and_depends_on_the_batch(mnist_model, mnist_batch):
    x, y = mnist_batch
    a = L2PGD(mnist_model, 1.0, steps=1, seed=3)
    b = L2PGD(mnist_model, 1.0, steps=1, seed=3)
    c = L2PGD(mnist_model, 1.0, steps=1, seed=4)
    xa, ya = tf.constant(x), tf.constant(y)
    first = a.perturb(xa, ya).numpy()
    np.testing.assert_array_equal(first, a.perturb(xa, ya).numpy())  # no RNG state: same batch, same start
    np.testing.assert_array_equal(first, b.perturb(xa, ya).numpy())
    assert not np.allclose(first, c.perturb(xa, ya).numpy())
    # another batch gets other noise (its first image differs from the same image in the first batch)
    other = a.perturb(tf.constant(x[:16]), tf.constant(y[:16])).numpy()
    assert not np.allclose(other[0], first[0])


def test_without_random_start_matches_a_hand_written_fgsm(mnist_model, mnist_batch):
    x, y = mnist_batch
    adv = LinfPGD(mnist_model, 0.1, steps=1, step_size=0.1, random_start=False).perturb(tf.constant(x), tf.constant(y))
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, mnist_model(xt, training=False)))
    want = np.clip(x + 0.1 * np.sign(tape.gradient(loss, xt).numpy()), 0, 1)
    np.testing.assert_allclose(adv.numpy(), want, atol=1e-6)


@pytest.mark.parametrize("ours,theirs,eps", [(LinfPGD, PGD, 0.1), (L2PGD, PGD_L2, 1.5)])
def test_without_random_start_equals_foolbox_image_by_image(mnist_model, mnist_batch, ours, theirs, eps):
    """No random start, the same absolute step: Foolbox's iterates, to float32 rounding."""
    x, y = mnist_batch
    alpha = eps / 4
    mine = ours(mnist_model, eps, steps=5, step_size=alpha, random_start=False)(x, y, metrics=False).adversarial
    fb = theirs(mnist_model, eps, steps=5, abs_stepsize=alpha, random_start=False)(x, y, metrics=False).adversarial
    np.testing.assert_allclose(mine, fb, atol=2e-5)


def test_step_is_folded_into_the_random_start(mnist_model, mnist_batch):
    x, y = tf.constant(mnist_batch[0]), tf.constant(mnist_batch[1])
    attack = LinfPGD(mnist_model, 0.1, steps=1, seed=0)
    a, b = attack.perturb(x, y, step=0).numpy(), attack.perturb(x, y, step=1).numpy()
    np.testing.assert_array_equal(a, attack.perturb(x, y).numpy())  # no step = step 0
    assert not np.allclose(a, b)


@pytest.mark.parametrize("ours,theirs,eps,steps", [(LinfPGD, PGD, 0.1, 10), (L2PGD, PGD_L2, 1.5, 10)])
def test_agrees_with_foolbox_on_real_images(mnist_model, mnist_sample, ours, theirs, eps, steps):
    """Same ε, steps and absolute step size: fooling rates within 0.05 on 200 images (the slow test checks
    0.02 on 500)."""
    x, y = mnist_sample
    x, y = x[:200], y[:200]
    alpha = 2.5 * eps / steps
    mine = ours(mnist_model, eps, steps=steps, step_size=alpha, seed=0)(x, y, metrics=False).success_rate
    fb = theirs(mnist_model, eps, steps=steps, seed=0, abs_stepsize=alpha)(x, y, metrics=False).success_rate
    assert abs(mine - fb) <= 0.05
    assert mine > 0.1


@pytest.mark.slow
@pytest.mark.parametrize("ours,theirs,eps", [(LinfPGD, PGD, 0.1), (L2PGD, PGD_L2, 1.5)])
def test_agrees_with_foolbox_on_500_test_images(mnist_model, ours, theirs, eps):
    from tfperceptual.datasets import load_mnist

    x, y = load_mnist("test")
    x, y = x[:500], y[:500]
    steps = 20
    alpha = 2.5 * eps / steps
    mine = ours(mnist_model, eps, steps=steps, step_size=alpha, seed=0)(x, y, metrics=False).success_rate
    fb = theirs(mnist_model, eps, steps=steps, seed=0, abs_stepsize=alpha)(x, y, metrics=False).success_rate
    assert abs(mine - fb) <= 0.02


def test_targeted_pgd_reaches_targets(mnist_model, mnist_batch):
    x, y = mnist_batch
    target = (y + 1) % 10
    res = L2PGD(mnist_model, 4.0, steps=20, seed=0)(x, y, target)
    assert np.mean(res.adv_labels == target) > 0.8
    np.testing.assert_array_equal(res.success, res.adv_labels == target)


def test_kl_loss_moves_away_from_the_clean_prediction(mnist_model, mnist_batch):
    x, y = mnist_batch
    res = L2PGD(mnist_model, 3.0, steps=10, loss="kl", seed=0)(x, y)
    assert res.success_rate > 0.3


def test_registry_names_and_bad_arguments(mnist_model):
    assert type(build_attack("linf_pgd", mnist_model, 0.1, steps=3)) is LinfPGD
    assert type(build_attack("l2_pgd", mnist_model, 1.0, steps=3)) is L2PGD
    assert build_attack("fgsm_rs", mnist_model, 0.1).steps == 1
    with pytest.raises(ValueError, match="eps"):
        LinfPGD(mnist_model, 1.5)
    with pytest.raises(ValueError, match="eps"):
        L2PGD(mnist_model, 0.0)
    with pytest.raises(ValueError, match="steps"):
        L2PGD(mnist_model, 1.0, steps=0)
    with pytest.raises(ValueError, match="step_size"):
        L2PGD(mnist_model, 1.0, step_size=-1.0)
    with pytest.raises(ValueError, match="loss"):
        L2PGD(mnist_model, 1.0, loss="hinge")
    with pytest.raises(ValueError, match="random_start"):
        L2PGD(mnist_model, 1.0, loss="kl", random_start=False)
    with pytest.raises(ValueError, match="seed"):
        LinfPGD(mnist_model, 0.1, seed=-1)
    with pytest.raises(AttributeError, match="fixed"):
        LinfPGD(mnist_model, 0.1).steps = 3


def test_fgsm_rs_default_step_is_1_25_eps(mnist_model, mnist_batch):
    x, y = mnist_batch
    attack = RandomStartFGSM(mnist_model, 0.1, seed=0)
    assert attack.step_size is None and float(attack._alpha()) == pytest.approx(0.125)
    adv = attack.perturb(tf.constant(x), tf.constant(y)).numpy()
    # δ₀ ∈ [−ε, ε] plus a step of 1.25 ε, projected: most moved pixels sit on the edge of the ball
    moved = np.abs(adv - x)[(x > 0.2) & (x < 0.8)]
    assert np.mean(np.isclose(moved, 0.1, atol=1e-5)) > 0.5
