"""Auto-PGD (Croce & Hein 2020) over the SSIM ball, ℓ∞ and ℓ2: feasibility of every output, strength against
FPGAP, the DLR loss, the checkpoint schedule, options, determinism and errors; the machinery against ART's APGD."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from solvers.ssim_ball import ssim_ball
from tfperceptual.attacks import FPGAP, L2APGD, SSIMAPGD, LinfAPGD, SSIMSquare, apgd_checkpoints, build_attack
from tfperceptual.attacks.objectives import dlr_loss


def _rows(a, c):
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    return a.reshape(len(a), -1, c).transpose(0, 2, 1).reshape(len(a) * c, -1)


def _in_ssim_ball(x, adv, eps, eps1=0.0, channels=1, tol=1e-6):
    ball = ssim_ball(_rows(x, channels), eps, eps1)
    v = ball.violation(_rows(adv, channels))
    return (v["ball"] <= tol * np.maximum(1, ball.radius)).all() and (v["mean"] <= 1e-6).all()


def test_checkpoint_schedule_is_the_authors():
    assert apgd_checkpoints(100) == (22, 3, 6)
    assert apgd_checkpoints(10) == (2, 1, 1)
    assert apgd_checkpoints(1) == (1, 1, 1)


def test_dlr_loss_matches_its_formula():
    z = tf.constant([[3.0, 1.0, 2.0, 0.5], [0.0, 4.0, 1.0, 2.0]])
    y = tf.constant([0, 0])
    t = tf.constant([2, 3])
    # untargeted: −(Z_y − max_{j≠y} Z_j) / (Z_π1 − Z_π3)
    np.testing.assert_allclose(dlr_loss(z, y).numpy(), [-(3 - 2) / (3 - 1), -(0 - 4) / (4 - 1)], rtol=1e-6)
    # targeted: −(Z_y − Z_t) / (Z_π1 − (Z_π3 + Z_π4) / 2)
    np.testing.assert_allclose(dlr_loss(z, y, t).numpy(), [-(3 - 2) / (3 - 0.75), -(0 - 2) / (4 - 0.5)], rtol=1e-6)


def test_ssim_apgd_stays_in_the_ball_and_box_every_output(mnist_model, mnist_batch):
    x, y = mnist_batch
    for eps, eps1 in ((0.1, 0.0), (0.2, 0.05)):
        attack = SSIMAPGD(mnist_model, eps, eps_luminance=eps1, steps=10, seed=0)
        res = attack(x, y)
        assert res.adversarial.min() >= 0 and res.adversarial.max() <= 1
        assert _in_ssim_ball(x, res.adversarial, eps, eps1)
        adv = attack.perturb(tf.constant(x), tf.constant(y)).numpy()
        assert _in_ssim_ball(x, adv, eps, eps1) and adv.min() >= 0 and adv.max() <= 1
        assert all(m == "" for m in res.messages)  # every projection certified


def test_ssim_apgd_tracks_every_iterate_inside(mnist_model, mnist_batch):
    """Each iterate of the loop is projected: the first-fooling and best-loss points of every run are feasible,
    also with restarts and APGD-T."""
    x, y = mnist_batch
    attack = SSIMAPGD(mnist_model, 0.15, steps=6, loss="dlr", target=2, restarts=2, seed=1)
    res = attack(x[:16], y[:16])
    assert _in_ssim_ball(x[:16], res.adversarial, 0.15)
    assert (res.steps[res.success] >= 6).all()


def test_ssim_apgd_fools_at_least_as_many_as_fpgap(mnist_model, mnist_batch):
    """On a standard model, at equal ε and steps (the issue's check; measured: 0.23 vs 0.09 at ε = 0.1 on 64)."""
    x, y = mnist_batch
    for eps in (0.1, 0.15):
        apgd = SSIMAPGD(mnist_model, eps, steps=20, seed=0)(x, y, metrics=False)
        fpgap = FPGAP(mnist_model, eps, steps=20)(x, y, metrics=False)
        assert apgd.success.sum() >= fpgap.success.sum()
    assert apgd.success.sum() > 0


def test_lp_apgd_respect_their_balls(mnist_model, mnist_batch):
    x, y = mnist_batch
    adv = LinfAPGD(mnist_model, 0.1, steps=10)(x, y).adversarial
    assert np.abs(adv - x).max() <= 0.1 + 1e-6
    adv = L2APGD(mnist_model, 1.5, steps=10)(x, y).adversarial
    assert np.linalg.norm((adv - x).reshape(len(x), -1), axis=1).max() <= 1.5 + 1e-5
    assert adv.min() >= 0 and adv.max() <= 1


def test_apgd_is_deterministic_and_seeded(mnist_model, mnist_batch):
    x, y = mnist_batch
    a = SSIMAPGD(mnist_model, 0.1, steps=5, seed=3)(x, y).adversarial
    np.testing.assert_array_equal(a, SSIMAPGD(mnist_model, 0.1, steps=5, seed=3)(x, y).adversarial)
    assert np.abs(a - SSIMAPGD(mnist_model, 0.1, steps=5, seed=4)(x, y).adversarial).max() > 0


def test_explicit_target_is_reached_or_reported(mnist_model, mnist_batch):
    x, y = mnist_batch
    target = (y + 1) % 10
    res = SSIMAPGD(mnist_model, 0.3, steps=20, seed=0)(x[:8], y[:8], target[:8])
    np.testing.assert_array_equal(res.success, res.adv_labels == target[:8])
    assert res.success.any()


def test_registered_and_built_by_name(mnist_model):
    a = build_attack("ssim_apgd", mnist_model, 0.1, steps=4)
    assert isinstance(a, SSIMAPGD) and a.steps == 4
    s = build_attack("ssim_square", mnist_model, 0.1, steps=7)
    assert isinstance(s, SSIMSquare) and s.queries == 7


def test_ssim_square_stays_inside_and_only_moves_to_lower_margins(mnist_model, mnist_batch):
    x, y = mnist_batch
    res = SSIMSquare(mnist_model, 0.2, queries=30, seed=0)(x[:16], y[:16])
    assert _in_ssim_ball(x[:16], res.adversarial, 0.2)
    logits = mnist_model(res.adversarial).numpy()
    clean = mnist_model(x[:16]).numpy()

    def margin(z):
        own = z[np.arange(16), y[:16]]
        z = z.copy()
        z[np.arange(16), y[:16]] = -np.inf
        return own - z.max(1)

    assert (margin(logits) <= margin(clean) + 1e-3).all()


def test_bad_options(mnist_model):
    with pytest.raises(ValueError):
        SSIMAPGD(mnist_model, 1.2)
    with pytest.raises(ValueError):
        SSIMAPGD(mnist_model, 0.1, eps_luminance=-0.1)
    with pytest.raises(ValueError, match="loss"):
        SSIMAPGD(mnist_model, 0.1, loss="cw")
    with pytest.raises(ValueError, match="target"):
        SSIMAPGD(mnist_model, 0.1, target=10)
    with pytest.raises(ValueError):
        LinfAPGD(mnist_model, 0.1, rho=1.5)
    three = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="dlr"):
        SSIMAPGD(three, 0.1, loss="dlr", target=1)  # targeted DLR needs 4 classes
    SSIMAPGD(three, 0.1, loss="dlr")  # untargeted needs 3


@pytest.mark.slow
def test_apgd_machinery_agrees_with_art():
    """LinfAPGD / L2APGD against ART's AutoProjectedGradientDescent (summed loss, the authors' setting) on the
    same model and images: robust accuracy within 2 points (the issue's check; 500 MNIST images, 100 steps)."""
    from tfperceptual.datasets import load_mnist
    from tfperceptual.evaluation import auto_attack
    from tfperceptual.models import zoo

    x, y = load_mnist("test")
    x, y = x[:500], y[:500]
    model = zoo.mnist_cnn_robust()
    for norm, eps, cls in (("linf", 0.15, LinfAPGD), ("l2", 1.5, L2APGD)):
        ours = cls(model, eps, steps=100, seed=0)(x, y, metrics=False)
        ours_acc = float(np.mean(~ours.success))
        art = auto_attack(model, x, y, norm=norm, eps=eps, version="fast", members=("apgd-ce",))
        assert abs(ours_acc - art.robust_accuracy) <= 0.02, (norm, ours_acc, art.robust_accuracy)


def test_apgd_machinery_agrees_with_art_light():
    """Light twin of the ART agreement check: 64 images, 20 steps, within 5 points."""
    from tfperceptual.datasets import load_sample
    from tfperceptual.evaluation import auto_attack
    from tfperceptual.models import zoo

    x, y = load_sample("mnist")
    x, y = x[:64], y[:64]
    model = zoo.mnist_cnn_robust()
    ours = L2APGD(model, 1.5, steps=20, seed=0)(x, y, metrics=False)
    art = auto_attack(model, x, y, norm="l2", eps=1.5, version="fast", steps=20, members=("apgd-ce",))
    assert abs(float(np.mean(~ours.success)) - art.robust_accuracy) <= 0.05


def test_an_images_attack_does_not_depend_on_its_batch(mnist_model, mnist_batch):
    """Per-image random keys: the same image gets the same start and result in any batch (so attacking only the
    images still robust equals attacking each alone)."""
    x, y = mnist_batch
    for attack in (SSIMAPGD(mnist_model, 0.15, steps=4, seed=2), L2APGD(mnist_model, 1.0, steps=4, seed=2),
                   SSIMSquare(mnist_model, 0.15, queries=10, seed=2)):
        whole = attack(x[:16], y[:16], metrics=False).adversarial
        part = attack(x[4:10], y[4:10], metrics=False).adversarial
        np.testing.assert_allclose(part, whole[4:10], atol=1e-5, err_msg=type(attack).__name__)
