"""The exact Euclidean projection onto the SSIM ball ∩ box (solvers.ssim_projection): agreement with CVXPY, its
certificate, feasibility, the projection's defining properties, edge cases and errors."""

import numpy as np
import pytest
import tensorflow as tf

from solvers.ssim_ball import ssim_ball
from solvers.ssim_projection import cvxpy_project_ssim_ball, project_ssim_ball


def _instances(rng, b, n, scale):
    x = rng.uniform(0, 1, (b, n))
    x[0] = 0.0  # black: with ε1 = 0 the feasible set is the single point x
    x[1] = np.clip(3 * x[1] - 1, 0, 1)  # saturated pixels on both sides
    x[2] = 0.4  # constant: x̃ = 0, the ball is centred at the mean
    z = x + scale * rng.normal(size=(b, n))
    return x, z


@pytest.mark.parametrize("eps2,eps1,scale", [(0.1, 0.0, 0.3), (0.3, 0.05, 1.0), (0.05, 0.0, 3.0), (0.5, 0.2, 0.05),
                                             (0.02, 0.0, 0.5)])
def test_projection_equals_cvxpy(eps2, eps1, scale, rng):
    x, z = _instances(rng, 5, 40, scale)
    res = project_ssim_ball(z, x, eps2, eps1)
    ref = cvxpy_project_ssim_ball(z, x, eps2, eps1)
    y = res.y.numpy()
    assert res.ok.numpy().all()
    np.testing.assert_allclose(y, ref, atol=1e-6)
    # the certificate bounds the distance to the exact projection; CVXPY's point is no closer to z
    assert (res.distance_bound.numpy() <= 1e-6 * np.maximum(1, res.distance.numpy())).all()
    assert (np.linalg.norm(y - z, axis=1) <= np.linalg.norm(ref - z, axis=1) + 1e-7).all()


def test_projection_is_feasible_idempotent_and_fixes_points_inside(rng):
    x, z = _instances(rng, 6, 64, 0.5)
    ball = ssim_ball(x, 0.2, 0.1)
    y = project_ssim_ball(z, x, 0.2, 0.1).y.numpy()
    v = ball.violation(y)
    assert v["ball"].max() <= 1e-9 and v["mean"].max() <= 1e-12
    assert y.min() >= 0 and y.max() <= 1
    np.testing.assert_allclose(project_ssim_ball(y, x, 0.2, 0.1).y.numpy(), y, atol=1e-9)  # P(P(z)) = P(z)
    # the anchor and points strictly inside are their own projection
    np.testing.assert_allclose(project_ssim_ball(x, x, 0.2, 0.1).y.numpy(), x, atol=1e-12)
    inside = x + 0.3 * (y - x)
    np.testing.assert_allclose(project_ssim_ball(inside, x, 0.2, 0.1).y.numpy(), inside, atol=1e-12)


def test_projection_obeys_the_variational_inequality(rng):
    """(z − P z)·(w − P z) ≤ 0 for every feasible w: the defining property of a Euclidean projection."""
    x, z = _instances(rng, 4, 50, 0.8)
    y = project_ssim_ball(z, x, 0.15).y.numpy()
    ball = ssim_ball(x, 0.15)
    for _ in range(20):
        w = project_ssim_ball(x + rng.normal(scale=0.5, size=x.shape), x, 0.15).y.numpy()
        assert (ball.violation(w)["ball"] <= 1e-9).all()
        assert (np.sum((z - y) * (w - y), axis=1) <= 1e-8).all()


def test_per_channel_rows_are_independent_balls(rng):
    x = rng.uniform(0, 1, (3, 8 * 8 * 3))
    z = x + 0.4 * rng.normal(size=x.shape)
    joint = project_ssim_ball(z, x, 0.1, channels=3).y.numpy()
    for c in range(3):
        alone = project_ssim_ball(z[:, c::3], x[:, c::3], 0.1).y.numpy()
        np.testing.assert_allclose(joint[:, c::3], alone, atol=1e-12)


def test_float32_and_tf_function(rng):
    x, z = _instances(rng, 3, 30, 0.5)
    y64 = project_ssim_ball(z, x, 0.2).y.numpy()
    res32 = project_ssim_ball(z, x, 0.2, dtype=tf.float32)
    assert res32.y.dtype == tf.float32
    np.testing.assert_allclose(res32.y.numpy(), y64, atol=1e-4)


def test_bad_input():
    x = np.full((2, 10), 0.5)
    with pytest.raises(ValueError, match="same shape"):
        project_ssim_ball(x[:, :5], x, 0.1)
    with pytest.raises(ValueError, match="NaN"):
        project_ssim_ball(np.where(x > 0, np.nan, x), x, 0.1)
    with pytest.raises(ValueError, match="outside"):
        project_ssim_ball(x, x + 1, 0.1)
    with pytest.raises(ValueError):
        project_ssim_ball(x, x, 1.5)
    with pytest.raises(ValueError, match="divisible"):
        project_ssim_ball(x, x, 0.1, channels=3)
    with pytest.raises(ValueError):
        project_ssim_ball(x, x, 0.1, dtype=tf.int32)
