"""AutoAttack through ART and the SSIM-ball ensemble (tfperceptual.evaluation.autoattack): verified
adversarials, the per-image worst case, member subsets, the result object and bad input."""

import numpy as np
import pytest

from tfperceptual.evaluation import RobustnessResult, auto_attack, ssim_auto_attack, verify_adversarial


@pytest.fixture(scope="module")
def robust_model():
    from tfperceptual.models import zoo

    return zoo.mnist_cnn_robust()


@pytest.fixture(scope="module")
def sample():
    from tfperceptual.datasets import load_sample

    x, y = load_sample("mnist")
    return x[:48], y[:48]


def _check_result(res, x, y, model, norm, eps, **kw):
    assert isinstance(res, RobustnessResult) and res.n == len(x)
    assert res.robust_accuracy == pytest.approx(res.robust.mean())
    assert res.clean_accuracy == pytest.approx(res.clean.mean())
    assert not (res.robust & ~res.clean).any()  # a clean error is never robust
    lo, hi = res.interval
    assert lo <= res.robust_accuracy <= hi
    found = ~res.robust & res.clean
    # every reported adversarial is verified here again: in the ball, in the box, misclassified
    if found.any():
        assert verify_adversarial(model, x[found], res.adversarial[found], y[found], norm=norm, eps=eps, **kw).all()
    np.testing.assert_array_equal(res.adversarial[res.robust], x[res.robust])
    accs = list(res.per_attack.values())
    assert all(a >= b for a, b in zip(accs[:-1], accs[1:])) and accs[-1] == pytest.approx(res.robust_accuracy)


@pytest.mark.parametrize("norm,eps", [("linf", 0.2), ("l2", 1.5)])
def test_auto_attack_adversarials_are_verified(norm, eps, robust_model, sample):
    x, y = sample
    res = auto_attack(robust_model, x, y, norm=norm, eps=eps, version="fast", steps=10, n_target_classes=2)
    _check_result(res, x, y, robust_model, norm, eps)
    assert set(res.per_attack) == {"apgd-ce", "apgd-t"}
    assert 0 < res.robust_accuracy < res.clean_accuracy


def test_auto_attack_standard_runs_square_last(robust_model, sample):
    x, y = sample
    res = auto_attack(robust_model, x[:16], y[:16], norm="linf", eps=0.2, steps=5, n_target_classes=1,
                      square_queries=20)
    assert list(res.per_attack) == ["apgd-ce", "apgd-t", "square"]
    _check_result(res, x[:16], y[:16], robust_model, "linf", 0.2)


def _ensemble_at_most_members(model, x, y, **kw):
    full = ssim_auto_attack(model, x, y, **kw)
    _check_result(full, x, y, model, "ssim", kw["eps"])
    for member in full.per_attack:
        alone = ssim_auto_attack(model, x, y, members=(member,), **kw)
        assert full.robust_accuracy <= alone.robust_accuracy + 1e-12, member
        # the ensemble's robust images are robust to each member alone
        assert not (full.robust & ~alone.robust).any(), member
    return full


@pytest.mark.slow
def test_ssim_ensemble_is_at_most_every_member(robust_model, sample):
    x, y = sample
    full = _ensemble_at_most_members(robust_model, x, y, eps=0.2, steps=8, n_target_classes=2, queries=20, seed=0)
    assert list(full.per_attack) == ["ssim-apgd-ce", "ssim-apgd-t", "fpgap", "pgap", "ssim-square"]


def test_ssim_ensemble_is_at_most_every_member_light(robust_model, sample):
    """Light twin: the fast version's two members on 24 images."""
    x, y = sample
    full = _ensemble_at_most_members(robust_model, x[:24], y[:24], eps=0.2, steps=5, n_target_classes=2, seed=0,
                                     version="fast")
    assert list(full.per_attack) == ["ssim-apgd-ce", "ssim-apgd-t"]


def test_verify_rejects_what_it_must(robust_model, sample):
    x, y = sample
    x, y = x[:8], y[:8]
    wrong = (y + 1) % 10
    # the clean images are not adversarial (classified correctly where the model is right)
    ok = verify_adversarial(robust_model, x, x, y, norm="linf", eps=0.1)
    pred = np.argmax(robust_model(x).numpy(), -1)
    np.testing.assert_array_equal(ok, pred != y)
    # relabelled images count as misclassified, but only inside the ball and the box
    assert verify_adversarial(robust_model, x, x, wrong, norm="l2", eps=0.5)[pred == y].all()
    far = np.clip(x + 0.3, 0, 1)
    assert not verify_adversarial(robust_model, x, far, wrong, norm="linf", eps=0.1).any()
    assert not verify_adversarial(robust_model, x, x + 2e-6, wrong, norm="linf", eps=0.1)[x.max((1, 2, 3)) == 1].any()
    shifted = np.clip(x + 0.01, 0, 1)  # moves each image's mean: outside an ε1 = 0 SSIM ball
    assert not verify_adversarial(robust_model, x, shifted, wrong, norm="ssim", eps=0.5).any()
    nan = np.where(x > 0.5, np.nan, x).astype(np.float32)
    assert not verify_adversarial(robust_model, x, nan, wrong, norm="linf", eps=0.5).any()


def test_bad_input(robust_model, sample):
    x, y = sample
    with pytest.raises(ValueError, match="norm"):
        auto_attack(robust_model, x, y, norm="l1", eps=1.0)
    with pytest.raises(ValueError, match="ssim_auto_attack"):
        auto_attack(robust_model, x, y, norm="ssim", eps=0.1)
    with pytest.raises(ValueError, match="version"):
        auto_attack(robust_model, x, y, norm="linf", eps=0.1, version="plus")
    with pytest.raises(ValueError, match="eps"):
        auto_attack(robust_model, x, y, norm="linf", eps=1.5)
    with pytest.raises(ValueError, match="members"):
        auto_attack(robust_model, x, y, norm="linf", eps=0.1, members=("fab-t",))
    with pytest.raises(ValueError):
        ssim_auto_attack(robust_model, x, y, eps=0.0)
    with pytest.raises(ValueError, match="outside"):
        ssim_auto_attack(robust_model, x * 2, y, eps=0.1)
    with pytest.raises(ValueError, match="NaN"):
        ssim_auto_attack(robust_model, np.where(x > 0.5, np.nan, x), y, eps=0.1)
    with pytest.raises(ValueError):
        ssim_auto_attack(robust_model, x, y + 10, eps=0.1)
    with pytest.raises(ValueError, match="eps_luminance"):
        verify_adversarial(robust_model, x, x, y, norm="l2", eps=1.0, eps_luminance=0.1)
