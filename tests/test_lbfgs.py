"""solvers.lbfgs_fixed_step: PyTorch's L-BFGS without line search, batched row by row (issue 18)."""

import numpy as np
import pytest
import tensorflow as tf

from solvers.lbfgs import lbfgs_fixed_step


def _torch_lbfgs_numpy(f_and_g, x, max_iter, max_eval, history=10, lr=1.0, tol_grad=1e-7, tol_change=1e-9):
    """One row, line by line after torch/optim/lbfgs.py (``step`` with ``line_search_fn=None``), in float64."""
    loss, g = f_and_g(x)
    evals = 1
    if np.abs(g).max() <= tol_grad:
        return x, evals
    old_dirs, old_stps, ro = [], [], []
    d = t = prev_g = None
    h_diag = 1.0
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        if n_iter == 1:
            d = -g
            old_dirs, old_stps, ro, h_diag = [], [], [], 1.0
        else:
            y = g - prev_g
            s = d * t
            ys = y @ s
            if ys > 1e-10:
                if len(old_dirs) == history:
                    old_dirs.pop(0), old_stps.pop(0), ro.pop(0)
                old_dirs.append(y), old_stps.append(s), ro.append(1.0 / ys)
                h_diag = ys / (y @ y)
            q = -g
            al = [0.0] * len(old_dirs)
            for i in range(len(old_dirs) - 1, -1, -1):
                al[i] = (old_stps[i] @ q) * ro[i]
                q = q - al[i] * old_dirs[i]
            d = r = q * h_diag
            for i in range(len(old_dirs)):
                be_i = (old_dirs[i] @ r) * ro[i]
                r = r + old_stps[i] * (al[i] - be_i)
            d = r
        prev_g, prev_loss = g.copy(), loss
        t = min(1.0, 1.0 / np.abs(g).sum()) * lr if n_iter == 1 else lr
        if g @ d > -tol_change:
            break
        x = x + t * d
        if n_iter != max_iter:
            loss, g = f_and_g(x)
            evals += 1
        if n_iter == max_iter or evals >= max_eval:
            break
        if np.abs(g).max() <= tol_grad or np.abs(d * t).max() <= tol_change or abs(loss - prev_loss) < tol_change:
            break
    return x, evals


def _problem(seed=0, b=5, n=12):
    """Rows of f_b(x) = ½ xᵀA_b x − c_bᵀx + ¼ w Σ x⁴ (strictly convex, non-quadratic): NumPy and TF versions."""
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(b, n, n))
    a = np.einsum("bij,bkj->bik", m, m) / n + 0.5 * np.eye(n)
    c = rng.normal(size=(b, n))
    w = 0.3

    def np_row(i):
        def f_and_g(x):
            return 0.5 * x @ a[i] @ x - c[i] @ x + 0.25 * w * np.sum(x ** 4), a[i] @ x - c[i] + w * x ** 3
        return f_and_g

    at, ct = tf.constant(a, tf.float64), tf.constant(c, tf.float64)

    def tf_batch(rows):
        def vg(x):
            ax = tf.einsum("bij,bj->bi", tf.gather(at, rows), x)
            cc = tf.gather(ct, rows)
            return (0.5 * tf.reduce_sum(x * ax, -1) - tf.reduce_sum(cc * x, -1) + 0.25 * w * tf.reduce_sum(x ** 4, -1),
                    ax - cc + w * x ** 3)
        return vg

    return np_row, tf_batch, a, c


@pytest.mark.parametrize("max_iter", [1, 2, 7, 40])
def test_matches_a_line_by_line_port_of_pytorch(max_iter):
    np_row, tf_batch, _, _ = _problem()
    x0 = np.random.default_rng(1).normal(size=(5, 12))
    out = lbfgs_fixed_step(tf_batch(tf.range(5)), x0, max_iterations=max_iter, history=4)
    for i in range(5):
        ref, evals = _torch_lbfgs_numpy(np_row(i), x0[i], max_iter, int(max_iter * 1.25), history=4)
        np.testing.assert_allclose(out["position"][i].numpy(), ref, rtol=1e-9, atol=1e-10)
        assert int(out["evaluations"][i]) == evals


def test_rows_do_not_depend_on_the_batch():
    """A row's iterates are the same alone, in a batch, and in another order: per-row curvature pairs, steps and
    stopping (what lets the perceptual ball split a batch across devices and cache rows independently)."""
    _, tf_batch, _, _ = _problem(seed=2, b=6)
    x0 = np.random.default_rng(3).normal(size=(6, 12))
    whole = lbfgs_fixed_step(tf_batch(tf.range(6)), x0, max_iterations=30)
    perm = np.array([4, 0, 5, 2, 1, 3])
    shuffled = lbfgs_fixed_step(tf_batch(tf.constant(perm)), x0[perm], max_iterations=30)
    np.testing.assert_allclose(shuffled["position"].numpy(), whole["position"].numpy()[perm], rtol=1e-9, atol=1e-10)
    for i in (0, 3):
        alone = lbfgs_fixed_step(tf_batch(tf.constant([i])), x0[i:i + 1], max_iterations=30)
        np.testing.assert_allclose(alone["position"].numpy()[0], whole["position"].numpy()[i], rtol=1e-9, atol=1e-10)
        assert int(alone["evaluations"][0]) == int(whole["evaluations"][i])


def test_reaches_the_minimum_and_stops_rows_independently():
    np_row, tf_batch, a, c = _problem(seed=4, b=3)
    x0 = np.zeros((3, 12))
    x0[1] = 50.0  # far away: this row needs more iterations than the others
    out = lbfgs_fixed_step(tf_batch(tf.range(3)), x0, max_iterations=500, max_evaluations=500)
    for i in range(3):
        g = np_row(i)(out["position"][i].numpy().astype(np.float64))[1]
        assert np.abs(g).max() < 1e-3
    assert out["converged"].numpy().all()
    iters = out["iterations"].numpy()
    assert iters[1] > iters[0] and iters[1] > iters[2]  # the others stopped earlier and were frozen


def test_stationary_start_and_budgets():
    _, tf_batch, a, c = _problem(seed=5, b=2)
    xs = np.linalg.solve(a[0] + 0.0, c[0])  # not the minimiser (quartic term), so the row must move
    out = lbfgs_fixed_step(tf_batch(tf.range(2)), np.stack([xs, xs]), max_iterations=10,
                           max_evaluations=4)
    assert out["evaluations"].numpy().tolist() == [4, 4]
    with pytest.raises(ValueError, match="max_iterations"):
        lbfgs_fixed_step(tf_batch(tf.range(2)), np.zeros((2, 12)), max_iterations=0)
    with pytest.raises(ValueError, match="lr"):
        lbfgs_fixed_step(tf_batch(tf.range(2)), np.zeros((2, 12)), lr=0.0)


def test_runs_inside_tf_function():
    _, tf_batch, _, _ = _problem(seed=6, b=4)
    x0 = np.random.default_rng(7).normal(size=(4, 12))
    eager = lbfgs_fixed_step(tf_batch(tf.range(4)), x0, max_iterations=15)
    graph = tf.function(lambda x: lbfgs_fixed_step(tf_batch(tf.range(4)), x, max_iterations=15))(tf.constant(x0))
    np.testing.assert_allclose(graph["position"].numpy(), eager["position"].numpy(), rtol=1e-9, atol=1e-10)


def test_backtracking_safeguard_rescues_rows_where_unit_steps_fail():
    """f(x) = Σ √(1 + x²): PyTorch's unit steps overshoot and stop far from the minimum (value 4.49 and 19.1
    against the minimum 2); with max_backtracks every row descends monotonically to it, and a row that needs no
    backtracking follows PyTorch's iterates exactly."""
    def vg(x):
        return tf.reduce_sum(tf.sqrt(1 + x ** 2), -1), x / tf.sqrt(1 + x ** 2)

    x0 = np.array([[3.0, -2.0], [0.5, 0.2], [10.0, 10.0]])
    plain = lbfgs_fixed_step(vg, x0, max_iterations=30)
    safe = lbfgs_fixed_step(vg, x0, max_iterations=30, max_backtracks=10)
    assert plain["value"].numpy()[0] > 4.0 and plain["value"].numpy()[2] > 19.0
    np.testing.assert_allclose(safe["value"].numpy(), 2.0, atol=1e-8)
    assert safe["converged"].numpy().all()
    np.testing.assert_allclose(safe["position"].numpy()[1], plain["position"].numpy()[1], atol=1e-12)
    with pytest.raises(ValueError, match="max_backtracks"):
        lbfgs_fixed_step(vg, x0, max_backtracks=-1)


def test_a_single_row_runs_inside_tf_function():
    """B = 1 under tf.function: every loop variable keeps its static shape (a (1,) → (None,) change once broke the
    perceptual ball at batch size 1)."""
    def vg(x):
        return tf.reduce_sum(tf.sqrt(1 + x ** 2), -1), x / tf.sqrt(1 + x ** 2)

    run = tf.function(lambda x: lbfgs_fixed_step(vg, x, max_iterations=20, max_backtracks=10))
    np.testing.assert_allclose(run(tf.constant([[3.0, -2.0]]))["value"].numpy(), [2.0], atol=1e-6)
