"""The SSIM-ball algebra: centres, radii and the mean interval against S1 and S2 directly."""

import numpy as np
import pytest

from solvers import luminance_similarity, ssim_ball, structure_similarity


def _unit_zero_mean(rng, b, n):
    d = rng.normal(size=(b, n))
    d -= d.mean(1, keepdims=True)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


@pytest.mark.parametrize("eps", [0.01, 0.1, 0.3, 0.7, 0.95])
@pytest.mark.parametrize("n", [16, 784, 3072])
def test_boundary_of_s2_ball_has_s2_equal_one_minus_eps2(rng, eps, n):
    x = rng.uniform(0, 1, (8, n))
    x[0] = 0.5  # constant image: ‖x̃‖ = 0
    ball = ssim_ball(x, eps)
    y = ball.mean[:, None] + ball.centre + ball.radius[:, None] * _unit_zero_mean(rng, 8, n)
    np.testing.assert_allclose(structure_similarity(x, y), 1 - eps**2, atol=1e-9, rtol=0)
    np.testing.assert_allclose(luminance_similarity(x, y), 1.0, atol=1e-12)


@pytest.mark.parametrize("eps1", [0.02, 0.1, 0.5])
def test_ends_of_mean_interval_have_s1_equal_one_minus_eps1(rng, eps1):
    x = rng.uniform(0, 1, (6, 100))
    ball = ssim_ball(x, 0.2, eps1)
    for end in (ball.mean_low, ball.mean_high):
        y = x - x.mean(1, keepdims=True) + end[:, None]
        np.testing.assert_allclose(luminance_similarity(x, y), 1 - eps1**2, atol=1e-9, rtol=0)
    assert np.all(ball.mean_low <= ball.mean) and np.all(ball.mean <= ball.mean_high)


def test_points_inside_pass_contains_and_outside_fail(rng):
    n = 500
    x = rng.uniform(0, 1, (10, n))
    ball = ssim_ball(x, 0.3, 0.1)
    d = _unit_zero_mean(rng, 10, n)
    s = rng.uniform(0, 0.999, (10, 1))
    mu = rng.uniform(ball.mean_low, ball.mean_high)
    inside = mu[:, None] + ball.centre + s * ball.radius[:, None] * d
    assert ball.contains(inside).all()
    assert np.all(structure_similarity(x, inside) >= 1 - 0.3**2 - 1e-12)
    assert np.all(luminance_similarity(x, inside) >= 1 - 0.1**2 - 1e-12)
    outside = mu[:, None] + ball.centre + 1.01 * ball.radius[:, None] * d
    assert not ball.contains(outside).any()
    assert np.all(structure_similarity(x, outside) < 1 - 0.3**2)
    # the anchor itself always lies in its ball
    assert ball.contains(x).all()


def test_radius_differs_from_papers_literal_constant(rng):
    """Completing the square gives (η²−1)‖x̃‖² + η ε² N c2, not the appendix's η²‖x̃‖² + c2 η ε²."""
    x = rng.uniform(0, 1, (1, 784))
    eps = 0.3
    eta = 1 / (1 - eps**2)
    xt = x - x.mean()
    paper = eta**2 * np.sum(xt**2) + 0.03**2 * eta * eps**2
    ball = ssim_ball(x, eps)
    d = _unit_zero_mean(rng, 1, 784)
    y_paper = x.mean() + ball.centre + np.sqrt(paper) * d
    assert abs(structure_similarity(x, y_paper)[0] - (1 - eps**2)) > 0.1
    assert ball.radius[0] ** 2 == pytest.approx((eta**2 - 1) * np.sum(xt**2) + eta * eps**2 * 784 * 0.03**2)


@pytest.mark.parametrize("eps2,eps1", [(0.0, 0.0), (1.0, 0.0), (-0.1, 0.0), (np.nan, 0.0), (0.5, 1.0), (0.5, -0.1)])
def test_eps_out_of_range_raises(eps2, eps1):
    with pytest.raises(ValueError, match="eps"):
        ssim_ball(np.full((1, 4), 0.5), eps2, eps1)
