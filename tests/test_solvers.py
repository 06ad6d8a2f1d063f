"""maximize_linear_over_ssim_ball: closed form vs CVXPY, optimality with the box active, failures."""

import numpy as np
import pytest

from solvers import SolverError, maximize_linear_over_ssim_ball, solve_qcqp_batch, ssim_ball
from solvers.qcqp_cvxpy import FEASIBILITY_TOL


def _feasible(y, x, eps2, eps1=0.0, tol=FEASIBILITY_TOL):
    ball = ssim_ball(x, eps2, eps1)
    return ball.contains(y, tol) & (y.min(1) >= -tol) & (y.max(1) <= 1 + tol)


@pytest.mark.parametrize("solver", ["ECOS", "CLARABEL"])
@pytest.mark.parametrize("eps1", [0.0, 0.05])
def test_closed_form_equals_cvxpy_when_box_inactive(rng, solver, eps1):
    n = 784
    x = rng.uniform(0.3, 0.7, (12, n))
    g = rng.normal(size=(12, n))
    g[0] += 3.0  # a gradient with a large mean component
    y_cf = maximize_linear_over_ssim_ball(g, x, 0.1, eps1, method="closed_form", box="ignore")
    assert y_cf.min() > 0.0 and y_cf.max() < 1.0, "precondition: box inactive"
    y_cvx = maximize_linear_over_ssim_ball(g, x, 0.1, eps1, method="cvxpy", solver=solver)
    f_cf, f_cvx = (g * y_cf).sum(1), (g * y_cvx).sum(1)
    np.testing.assert_allclose(f_cvx, f_cf, rtol=1e-6)
    # and the feasibility-restored closed form is the same point
    y_r = maximize_linear_over_ssim_ball(g, x, 0.1, eps1, method="closed_form")
    np.testing.assert_allclose(y_r, y_cf, atol=1e-12)


def test_cvxpy_beats_every_constructed_feasible_point_when_box_active(rng):
    n = 784
    x = rng.uniform(0, 1, (6, n))
    x[:, : n // 2] = 0.0  # MNIST-like: half the pixels on the lower bound
    x[:, n // 2 : n // 2 + 100] = 1.0
    g = rng.normal(size=(6, n))
    eps = 0.3
    y = maximize_linear_over_ssim_ball(g, x, eps, method="cvxpy")
    assert _feasible(y, x, eps).all()
    best = (g * y).sum(1)
    tol = 1e-6 * np.abs(best)
    candidates = [x, maximize_linear_over_ssim_ball(g, x, eps, method="closed_form")]
    for _ in range(20):  # closed-form steps for random directions, made feasible
        d = g + rng.normal(scale=rng.uniform(0.1, 3.0), size=g.shape)
        candidates.append(maximize_linear_over_ssim_ball(d, x, eps, method="closed_form"))
    # clipped closed form, pulled back towards x until it is in the ball and keeps the mean
    for c in candidates:
        assert _feasible(c, x, eps).all()
        assert np.all((g * c).sum(1) <= best + tol)
    # with the box active the exact solution is strictly better than the restored closed form
    assert np.all(best > (g * candidates[1]).sum(1) + 1e-3)


def test_per_channel_equals_solving_each_channel(rng):
    h, w, c = 8, 8, 3
    x = rng.uniform(0, 1, (2, h * w * c))
    g = rng.normal(size=x.shape)
    y = maximize_linear_over_ssim_ball(g, x, 0.2, method="cvxpy", channels=3)
    for ch in range(c):
        y_ch = maximize_linear_over_ssim_ball(g[:, ch::3], x[:, ch::3], 0.2, method="cvxpy")
        np.testing.assert_allclose(y[:, ch::3], y_ch, atol=1e-6)
        assert _feasible(y[:, ch::3], x[:, ch::3], 0.2).all()


def test_degenerate_inputs_constant_image_and_zero_gradient(rng):
    x = np.full((2, 64), 0.5)
    g = rng.normal(size=(2, 64))
    g[1] = 0.0
    for method in ("cvxpy", "closed_form"):
        y = maximize_linear_over_ssim_ball(g, x, 0.2, method=method)
        assert _feasible(y, x, 0.2).all()
    y = maximize_linear_over_ssim_ball(g, x, 0.2, method="closed_form")
    np.testing.assert_allclose(y[1], x[1])  # zero gradient: the centre, which is x for constant x


def test_unknown_solver_is_refused_and_failures_keep_nothing_unverified(rng, monkeypatch):
    import solvers.oracles as oracles

    x = rng.uniform(0, 1, (3, 50))
    g = rng.normal(size=(3, 50))
    for bad in ("NOT_A_SOLVER", "GLPK"):  # unknown, or not a solver of second-order cone problems
        with pytest.raises(ValueError, match="solver"):
            maximize_linear_over_ssim_ball(g, x, 0.2, method="cvxpy", solver=bad)
    real = oracles.solve_qcqp_batch
    monkeypatch.setattr(oracles, "solve_qcqp_batch", lambda *a, **k: real(*a, **{**k, "tol": -1.0}))  # none verifies
    with pytest.raises(SolverError) as err:
        maximize_linear_over_ssim_ball(g, x, 0.2, method="cvxpy")
    assert err.value.failed == [0, 1, 2]
    assert np.isnan(err.value.partial).all() and "violated" in err.value.messages[0]


def test_verification_rejects_points_outside_tolerance(rng):
    x = rng.uniform(0, 1, (2, 50))
    g = rng.normal(size=(2, 50))
    res = solve_qcqp_batch(g, x, 0.2, tol=-1.0)  # nothing can verify
    assert not res.ok.any() and np.isnan(res.y).all()
    assert all("violated" in m for m in res.messages)


def test_falls_back_to_second_solver(rng):
    x = rng.uniform(0, 1, (2, 40))
    g = rng.normal(size=(2, 40))
    res = solve_qcqp_batch(g, x, 0.2, solver=("NOT_A_SOLVER", "CLARABEL"))
    assert res.ok.all() and res.solver_used == ["CLARABEL", "CLARABEL"]


@pytest.mark.parametrize("bad,exc,match", [
    (dict(x=np.full((2, 4), 1.5)), ValueError, "outside bounds"),
    (dict(x=np.full((4,), 0.5)), ValueError, r"\(B, N\)"),
    (dict(g=np.full((2, 4), np.nan)), ValueError, "NaN"),
    (dict(g=np.ones((2, 4), int)), TypeError, "float"),
    (dict(eps2=1.2), ValueError, "eps2"),
    (dict(method="bogus"), ValueError, "method"),
])
def test_bad_inputs_raise(bad, exc, match):
    kw = dict(g=np.ones((2, 4)), x=np.full((2, 4), 0.5), eps2=0.2, method="closed_form")
    kw.update(bad)
    with pytest.raises(exc, match=match):
        maximize_linear_over_ssim_ball(**kw)


def test_constant_problem_above_dpp_limit_gives_the_same_optimum(rng, monkeypatch):
    import solvers.qcqp_cvxpy as q

    x = rng.uniform(0, 1, (3, 60))
    g = rng.normal(size=(3, 60))
    ref = solve_qcqp_batch(g, x, 0.2)
    monkeypatch.setattr(q, "DPP_MAX_N", 10)  # force the per-image constant problem
    res = solve_qcqp_batch(g, x, 0.2, eps1=0.0)
    assert res.ok.all()
    np.testing.assert_allclose((g * res.y).sum(1), (g * ref.y).sum(1), rtol=1e-7)
    res1 = solve_qcqp_batch(g, x, 0.2, eps1=0.05)
    assert res1.ok.all() and _feasible(res1.y, x, 0.2, 0.05).all()


# ----------------------------------------------------------------------------- defects found by probing (issue 14, 8)
def test_empty_batches_and_missing_radii_get_named_errors():
    with pytest.raises(ValueError, match="at least one row"):
        maximize_linear_over_ssim_ball(np.zeros((0, 4)), np.zeros((0, 4)), 0.2)
    with pytest.raises(TypeError, match="eps2"):
        maximize_linear_over_ssim_ball(np.ones((1, 4)), np.full((1, 4), 0.5), None)
    with pytest.raises(TypeError, match="eps1"):
        maximize_linear_over_ssim_ball(np.ones((1, 4)), np.full((1, 4), 0.5), 0.2, eps1="a")


@pytest.mark.parametrize("method", ["cvxpy", "closed_form"])
def test_a_certificate_is_only_offered_by_the_exact_solver(rng, method):
    x = rng.uniform(0, 1, (2, 16))
    with pytest.raises(ValueError, match="return_certificate"):
        maximize_linear_over_ssim_ball(rng.normal(size=(2, 16)), x, 0.2, method=method, return_certificate=True)


def test_options_of_another_method_and_channels_that_do_not_divide_n_are_refused(rng):
    x, g = rng.uniform(0, 1, (2, 10)), rng.normal(size=(2, 10))
    with pytest.raises(ValueError, match="not divisible"):
        maximize_linear_over_ssim_ball(g, x, 0.2, channels=3)
    for method, kw in (("cvxpy", dict(gap_tol=1e-3)), ("exact", dict(solver="ECOS")),
                       ("exact", dict(box="clip")), ("cvxpy", dict(project_gradient=False))):
        with pytest.raises(ValueError, match=f"{next(iter(kw))} is an option of"):
            maximize_linear_over_ssim_ball(g, x, 0.2, method=method, **kw)


@pytest.mark.parametrize("channels", [0, -1, 1.5, "3"])
def test_channels_must_be_a_positive_integer(rng, channels):
    x = rng.uniform(0, 1, (2, 12))
    with pytest.raises((ValueError, TypeError), match="channels"):
        maximize_linear_over_ssim_ball(rng.normal(size=(2, 12)), x, 0.2, channels=channels)


@pytest.mark.parametrize("eps1", [0.0, 0.05])
def test_closed_form_keeps_x_for_a_zero_gradient_like_the_exact_solver(rng, eps1):
    x = rng.uniform(0.2, 0.8, (3, 64))
    g = np.zeros_like(x)
    for method in ("closed_form", "exact"):
        np.testing.assert_array_equal(maximize_linear_over_ssim_ball(g, x, 0.3, eps1, method=method), x)
    # a constant gradient has no direction in the zero-mean plane; with a luminance interval it moves the mean
    g = np.full_like(x, 2.0)
    y = maximize_linear_over_ssim_ball(g, x, 0.3, eps1, method="closed_form", box="ignore")
    np.testing.assert_allclose(y - y.mean(1, keepdims=True), x - x.mean(1, keepdims=True), atol=1e-12)
    if eps1 == 0:
        np.testing.assert_array_equal(y, x)
    else:
        assert np.all(y.mean(1) > x.mean(1)) and _feasible(y, x, 0.3, eps1).all()


def test_every_oracle_satisfies_the_linear_oracle_contract(rng):
    """Each oracle is a LinearOracle: (B, N) tensors in, OracleResult out, never a worse objective than x."""
    import tensorflow as tf

    from solvers import ClosedFormSSIMOracle, CvxpySSIMOracle, ExactSSIMOracle, LinearOracle, OracleResult

    x = rng.uniform(0, 1, (3, 48))
    g = rng.normal(size=(3, 48))
    for oracle in (ExactSSIMOracle(0.2, channels=3), ClosedFormSSIMOracle(0.2, channels=3),
                   CvxpySSIMOracle(0.2, channels=3)):
        assert isinstance(oracle, LinearOracle)
        r = oracle(tf.constant(g), tf.constant(x))
        assert isinstance(r, OracleResult) and r.y.shape == (3, 48) and r.ok.numpy().all()
        assert [m.decode() for m in r.message.numpy()] == ["", "", ""]
        y = r.y.numpy()
        assert np.all((g * y).sum(1) >= (g * x).sum(1) - 1e-9)
        for c in range(3):
            assert _feasible(y[:, c::3], x[:, c::3], 0.2).all()
        oracle.eps2 = 0.3  # radii are variables: no new object, no new graph
        assert oracle.eps2 == 0.3
    with pytest.raises(ValueError, match="eps2"):
        ExactSSIMOracle(1.5)
    with pytest.raises(ValueError, match="gap_tol"):
        ExactSSIMOracle(0.2, gap_tol=-1.0)
    with pytest.raises(ValueError, match="box"):
        ClosedFormSSIMOracle(0.2, box="wrap")


def _projection_by_bisection(z, low, high, iters=200):
    """The box ∩ mean-interval projection of one row by 200 halvings of τ in NumPy (an independent reference)."""
    m0 = np.clip(z, 0, 1).mean()
    target = min(max(m0, low), high)
    if target == m0:
        return np.clip(z, 0, 1)
    a, b = z.min() - 1.0, z.max()
    for _ in range(iters):
        c = 0.5 * (a + b)
        a, b = (c, b) if np.clip(z - c, 0, 1).mean() > target else (a, c)
    return np.clip(z - 0.5 * (a + b), 0, 1)


def test_box_mean_projection_is_exact(rng):
    """FPGAP's feasibility restoration is the Euclidean projection onto box ∩ mean interval: equal to a 200-step
    NumPy bisection to 1e-12 (float64; 2e-5 in float32) on rows of every length, mean shifted down, up or not at
    all, ties and saturated rows; and to CVXPY's projection within its own accuracy (Clarabel's ~1e-6)."""
    import cvxpy as cp
    import tensorflow as tf

    from solvers.closed_form import project_box_mean

    rows, lows, highs = [], [], []
    for i in range(60):
        n = int(rng.integers(2, 400))
        z = rng.normal(0.5, 0.6, n)
        if i % 10 == 0:
            z = np.round(z, 1)  # ties
        lo, hi = sorted(rng.uniform(0, 1, 2))
        rows.append(z), lows.append(lo), highs.append(hi)
    rows += [np.full(50, 0.3), np.r_[np.full(25, -1.0), np.full(25, 2.0)]]
    lows += [0.6, 0.1]
    highs += [0.7, 0.2]
    for z, lo, hi in zip(rows, lows, highs):
        ref = _projection_by_bisection(z, lo, hi)
        for dtype, tol in ((tf.float64, 1e-12), (tf.float32, 2e-5)):
            y = project_box_mean(tf.constant(z[None], dtype), tf.constant([lo], dtype), tf.constant([hi], dtype))
            np.testing.assert_allclose(y.numpy()[0], ref, atol=tol, err_msg=f"n={len(z)} {dtype.name}")
    z, lo, hi = rows[1][:40], lows[1], highs[1]
    v = cp.Variable(len(z))
    cp.Problem(cp.Minimize(cp.sum_squares(v - z)), [v >= 0, v <= 1, cp.sum(v) / len(z) >= lo,
                                                    cp.sum(v) / len(z) <= hi]).solve(solver=cp.CLARABEL)
    y = project_box_mean(tf.constant(z[None]), tf.constant([lo]), tf.constant([hi])).numpy()[0]
    np.testing.assert_allclose(y, v.value, atol=1e-5)
