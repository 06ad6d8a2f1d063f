"""The batched exact SSIM-ball solver (solvers.exact) against CVXPY, known answers and its certificate."""

import numpy as np
import pytest
import tensorflow as tf

from solvers import SolverError, maximize_linear_over_ssim_ball, solve_qcqp_batch, ssim_ball
from solvers.exact import solve_exact

FEAS = 1e-8  # constraints, float64 (issue 4)
REL = 1e-6  # objective agreement, relative to the step's gain g·(y − x)


def _violation(y, x, eps2, eps1=0.0):
    v = ssim_ball(x, eps2, eps1).violation(y)
    r = ssim_ball(x, eps2, eps1).radius
    box = np.maximum(np.maximum(-y, y - 1.0).max(1), 0.0)
    return np.maximum(np.maximum(v["ball"] / np.maximum(r, 1.0), v["mean"]), box)


def _instance(rng, n):
    """A random problem of one of several kinds (images and gradients like real ones, and hard cases)."""
    kind = rng.integers(6)
    if kind == 0:
        x = rng.uniform(0, 1, n)
    elif kind == 1:  # MNIST-like: mostly 0, some 1, few grey
        x = (rng.uniform(size=n) > 0.8).astype(float)
        grey = rng.uniform(size=n) > 0.95
        x[grey] = rng.uniform(0, 1, grey.sum())
    elif kind == 2:  # saturated photo
        x = np.clip(rng.normal(0.5, 0.45, n), 0, 1)
    elif kind == 3:  # smooth ramp
        x = np.linspace(0.05, 0.95, n) ** rng.uniform(0.5, 2)
    elif kind == 4:  # nearly constant
        x = np.full(n, rng.uniform(0.1, 0.9)) + rng.normal(0, 1e-3, n)
        x = np.clip(x, 0, 1)
    else:  # dark image, a few bright pixels
        x = np.clip(rng.exponential(0.05, n), 0, 1)
    gkind = rng.integers(4)
    if gkind == 0:
        g = rng.normal(size=n)
    elif gkind == 1:  # sparse
        g = rng.normal(size=n) * (rng.uniform(size=n) > 0.9)
    elif gkind == 2:  # heavy tailed, with a mean
        g = rng.standard_t(2, size=n) + rng.normal()
    else:  # few distinct values: ties among breakpoints
        g = rng.integers(-2, 3, size=n).astype(float)
    g *= 10.0 ** rng.uniform(-4, 2)
    return x, g


def _agree(x, g, eps2, eps1, solver, channels=1):
    res = maximize_linear_over_ssim_ball(g, x, eps2, eps1, method="exact", channels=channels,
                                         return_certificate=True)[1]
    y = res.y.numpy()
    if channels == 1:
        ref = solve_qcqp_batch(g, x, eps2, eps1, (0.0, 1.0), solver=(solver,))
        y_ref, ok = ref.y, ref.ok
    else:
        y_ref = maximize_linear_over_ssim_ball(g, x, eps2, eps1, method="cvxpy", solver=(solver,),
                                               channels=channels)
        ok = np.ones(len(x), bool)
    f, f_ref = (g * y).sum(1), (g * y_ref).sum(1)
    gain = np.maximum((g * (y_ref - x)).sum(1), 1e-300)
    return res, y, f, f_ref, gain, ok


@pytest.mark.parametrize("n", [784, 3072])
@pytest.mark.parametrize("solver", ["ECOS", "CLARABEL"])
def test_agrees_with_cvxpy_on_100_random_instances(n, solver):
    rng = np.random.default_rng(n)
    count = 50 if n == 3072 else 100
    pairs = [_instance(rng, n) for _ in range(count)]
    x = np.stack([p[0] for p in pairs])
    g = np.stack([p[1] for p in pairs])
    eps = float(np.exp(rng.uniform(np.log(0.005), np.log(0.9))))
    checked = 0
    for eps2 in (eps, 0.05, 0.3):
        res, y, f, f_ref, gain, ok = _agree(x, g, eps2, 0.0, solver)
        assert res.ok.numpy().all()
        assert (res.rel_gap.numpy() <= REL).all()
        assert (_violation(y, x, eps2) <= FEAS).all()
        assert (res.violation.numpy() <= FEAS).all()
        # never below the reference by more than the tolerance, and equal to it where it is optimal
        assert np.all(f[ok] >= f_ref[ok] - REL * gain[ok])
        np.testing.assert_array_less(np.abs(f - f_ref)[ok] / gain[ok], REL)
        # the dual bound really bounds the reference's optimum
        assert np.all(res.dual.numpy()[ok] >= f_ref[ok] - REL * gain[ok])
        checked += ok.sum()
    # the reference must have answered most rows (ECOS fails on 10-30 % of them: status not optimal)
    assert checked >= (0.9 if solver == "CLARABEL" else 0.6) * 3 * count


def test_agrees_with_cvxpy_with_luminance_interval(rng):
    pairs = [_instance(rng, 784) for _ in range(16)]
    x = np.stack([p[0] for p in pairs])
    g = np.stack([p[1] for p in pairs])
    g[:6] += 5.0 * np.abs(g[:6]).mean(1, keepdims=True)  # mean component: the mean moves
    for eps1 in (0.02, 0.2):
        res, y, f, f_ref, gain, ok = _agree(x, g, 0.1, eps1, "CLARABEL")
        assert res.ok.numpy().all()
        assert (_violation(y, x, 0.1, eps1) <= FEAS).all()
        assert np.all(np.abs(f - f_ref)[ok] / gain[ok] <= REL)
        assert ok.sum() >= 14
        # the mean did move where the gradient's mean asks for it
        assert np.any(np.abs(y[:6].mean(1) - x[:6].mean(1)) > 1e-4)


@pytest.mark.parametrize("data", ["mnist", "cifar10"])
def test_agrees_with_cvxpy_on_real_model_gradients(data):
    from tfperceptual.datasets import load_cifar10, load_sample
    from tfperceptual.models import cifar10_cnn, mnist_cnn

    if data == "mnist":
        images, labels = load_sample("mnist")
        model = mnist_cnn()
    else:
        images, labels = load_cifar10("test")
        model = cifar10_cnn()
    images, labels = images[:8], labels[:8]
    xt = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.keras.losses.sparse_categorical_crossentropy(labels, model(xt), from_logits=True)
    g = tape.gradient(loss, xt).numpy().reshape(len(images), -1).astype(np.float64)
    # the problem is invariant to scaling g; unit norm keeps CVXPY's absolute tolerances meaningful
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    x = images.reshape(len(images), -1).astype(np.float64)
    channels = images.shape[-1]
    for eps2 in (0.01, 0.1, 0.4):
        for solver in ("ECOS", "CLARABEL"):
            res, y, f, f_ref, gain, ok = _agree(x, g, eps2, 0.0, solver, channels=channels)
            assert res.ok.numpy().all()
            assert np.all(np.abs(f - f_ref) / gain <= REL), (eps2, solver)
            for c in range(channels):  # every channel's ball holds
                assert (_violation(y[:, c::channels], x[:, c::channels], eps2) <= FEAS).all()


# ----------------------------------------------------------------------------- known answers
def _lp_answer(g, x):
    """max g·y s.t. mean(y) = mean(x), 0 ≤ y ≤ 1 (fractional knapsack; unique point for distinct g)."""
    n = len(x)
    mass = x.sum()
    order = np.argsort(-g)
    y = np.zeros(n)
    full = int(np.floor(mass))
    y[order[:full]] = 1.0
    if full < n:
        y[order[full]] = mass - full
    return y


def _lp_inside_ball(lp, x, eps):
    ball = ssim_ball(x[None], eps)
    return np.linalg.norm(lp - lp.mean() - ball.centre[0]) < ball.radius[0]


def test_ball_inactive_gives_the_box_lp_solution(rng):
    # for ε → 1 the S2 ball tends to the half-space ỹ·x̃ ≥ −N c2 / 2, so an LP vertex that
    # correlates with x lies inside it: then the ball is inactive and the answer is the LP's
    n = 300
    x = rng.uniform(0.2, 0.8, (4, n))
    g = x - x.mean(1, keepdims=True) + 0.2 * rng.normal(size=(4, n))  # distinct values: unique vertex
    res = solve_exact(g, x, 0.9)
    y = res.y.numpy()
    for i in range(4):
        lp = _lp_answer(g[i], x[i])
        assert _lp_inside_ball(lp, x[i], 0.9), "precondition"
        np.testing.assert_allclose(y[i], lp, atol=1e-9)
    assert np.all(np.abs(res.gap.numpy()) <= 1e-9 * np.abs(res.primal.numpy()))


def test_ball_inactive_with_tied_gradients(rng):
    n = 200
    x = rng.uniform(0.2, 0.8, (3, n))
    g = np.round(4 * x) / 4  # five tied groups, correlated with x
    res = solve_exact(g, x, 0.9)
    y = res.y.numpy()
    for i in range(3):
        assert _lp_inside_ball(_lp_answer(g[i], x[i]), x[i], 0.9), "precondition"
    lp_value = np.array([(g[i] * _lp_answer(g[i], x[i])).sum() for i in range(3)])  # value unique under ties
    np.testing.assert_allclose((g * y).sum(1), lp_value, rtol=1e-10)
    assert res.ok.numpy().all()
    assert (_violation(y, x, 0.9) <= FEAS).all()


@pytest.mark.parametrize("g_kind", ["zero", "constant"])
def test_zero_or_constant_gradient_keeps_the_image(rng, g_kind):
    x = rng.uniform(0, 1, (3, 100))
    g = np.zeros_like(x) if g_kind == "zero" else np.full_like(x, 2.5)
    res = solve_exact(g, x, 0.2)
    np.testing.assert_array_equal(res.y.numpy(), x)
    assert np.all(res.gap.numpy() == 0) and res.ok.numpy().all()


def test_constant_image_follows_the_closed_form(rng):
    # x̃ = 0: centre = x, r² = η ε² N c2; with the box inactive y = μ + r g̃/‖g̃‖
    n = 256
    x = np.full((2, n), 0.5)
    g = rng.normal(size=(2, n))
    eps = 0.05
    ball = ssim_ball(x, eps)
    gt = g - g.mean(1, keepdims=True)
    expected = 0.5 + ball.radius[:, None] * gt / np.linalg.norm(gt, axis=1, keepdims=True)
    assert expected.min() > 0 and expected.max() < 1
    np.testing.assert_allclose(solve_exact(g, x, eps).y.numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("eps", [1e-6, 1e-3, 0.999])
def test_eps_at_its_limits(rng, eps):
    x = rng.uniform(0.1, 0.9, (3, 400))
    g = rng.normal(size=(3, 400))
    res = solve_exact(g, x, eps)
    y = res.y.numpy()
    assert res.ok.numpy().all()
    assert (_violation(y, x, eps) <= FEAS).all()
    ball = ssim_ball(x, eps)
    gt = g - g.mean(1, keepdims=True)
    if eps < 0.01:  # box inactive: the closed form (Eq. 10 with g̃) is the answer
        cf = x.mean(1, keepdims=True) + ball.centre + ball.radius[:, None] * gt / np.linalg.norm(gt, axis=1, keepdims=True)
        np.testing.assert_allclose(y, cf, atol=1e-12)
    else:  # the ball is nearly a half-space: agree with Clarabel
        ref = solve_qcqp_batch(g, x, eps, 0.0, (0.0, 1.0), solver=("CLARABEL",))
        gain = (g * (ref.y - x)).sum(1)
        assert ref.ok.all()
        assert np.all(np.abs(res.primal.numpy() - (g * ref.y).sum(1)) <= REL * gain)


def test_binary_image_many_tied_breakpoints(rng):
    x = (rng.uniform(size=(4, 784)) > 0.8).astype(float)  # z has two values only
    g = rng.integers(-1, 2, size=(4, 784)).astype(float)  # three gradient values
    for eps in (0.05, 0.3, 0.8):
        res = solve_exact(g, x, eps)
        ref = solve_qcqp_batch(g, x, eps, 0.0, (0.0, 1.0), solver=("CLARABEL",))
        f, f_ref = res.primal.numpy(), (g * ref.y).sum(1)
        gain = (g * (ref.y - x)).sum(1)
        assert res.ok.numpy().all()
        assert np.all(np.abs(f - f_ref)[ref.ok] <= REL * gain[ref.ok])


# ----------------------------------------------------------------------------- scale, certificate, options
@pytest.mark.parametrize("n,channels", [(12288, 1), (150528, 3)])
def test_certificate_at_sizes_where_ecos_fails(rng, n, channels):
    x = np.clip(rng.normal(0.45, 0.3, (2, n)), 0, 1)
    g = rng.normal(size=(2, n)) * rng.uniform(0, 1, (2, n)) ** 4
    for eps in (0.005, 0.05):
        res = solve_exact(g, x, eps, channels=channels)
        assert res.ok.numpy().all()
        assert res.rel_gap.numpy().max() <= 1e-6
        assert (res.dual.numpy() >= res.primal.numpy() * (1 - 1e-12)).all()
        y = res.y.numpy()
        for c in range(channels):
            assert (_violation(y[:, c::channels], x[:, c::channels], eps) <= FEAS).all()


def test_per_channel_equals_solving_each_channel(rng):
    x = rng.uniform(0, 1, (2, 16 * 16 * 3))
    g = rng.normal(size=x.shape)
    y = solve_exact(g, x, 0.2, channels=3).y.numpy()
    for c in range(3):
        yc = solve_exact(g[:, c::3], x[:, c::3], 0.2).y.numpy()
        np.testing.assert_allclose(y[:, c::3], yc, atol=1e-12)


def test_float32_is_feasible_and_close(rng):
    x = rng.uniform(0, 1, (4, 3072)).astype(np.float32)
    g = rng.normal(size=(4, 3072)).astype(np.float32)
    r64 = solve_exact(g, x, 0.1)
    r32 = solve_exact(g, x, 0.1, dtype=tf.float32)
    assert r32.y.dtype == tf.float32 and r32.ok.numpy().all()
    np.testing.assert_allclose(r32.primal.numpy(), r64.primal.numpy(), rtol=1e-4)


def test_uncertified_rows_raise_with_partial_result(rng, monkeypatch):
    import solvers.oracles

    real = solvers.oracles._solve_images

    def uncertified(*a, **k):  # the solver's answer with every certificate refused
        r = real(*a, **k)
        return {**r, "ok": tf.zeros_like(r["ok"])}

    monkeypatch.setattr(solvers.oracles, "_solve_images", uncertified)
    x = rng.uniform(0, 1, (3, 500))
    g = rng.normal(size=(3, 500))
    with pytest.raises(SolverError, match="could not certify") as err:
        maximize_linear_over_ssim_ball(g, x, 0.1, method="exact")
    assert err.value.failed == [0, 1, 2]
    assert np.isnan(err.value.partial).all()


def test_bad_dtype_and_shapes():
    with pytest.raises(ValueError, match="float32 or float64"):
        solve_exact(np.zeros((1, 4)), np.zeros((1, 4)), 0.1, dtype=tf.float16)
    with pytest.raises(ValueError, match="same shape"):
        solve_exact(np.zeros((1, 4)), np.zeros((1, 5)), 0.1)
    with pytest.raises(ValueError, match="eps2"):
        solve_exact(np.zeros((1, 4)), np.zeros((1, 4)), 1.0)
