"""Batched L-BFGS without line search, row by row: PyTorch's ``torch.optim.LBFGS(line_search_fn=None)``.

Every row of a (B, N) batch is its own minimisation problem with its own curvature pairs, step, evaluation
count and stopping tests; the rows are evaluated together (one call of ``value_and_grad`` on the batch per
iteration) and a row that stops keeps its position while the others go on.  So a row's result does not depend
on the rows batched with it, and every iteration costs exactly one evaluation (no line search).

Per row, iteration k (as ``torch/optim/lbfgs.py``, with ``lr`` the step):

* direction d = −H g from the two-loop recursion over the last ``history`` pairs (s, y), kept only when
  yᵀs > 1e-10, with H₀ = yᵀs / yᵀy; d = −g at k = 1;
* step t = min(1, 1 / ‖g‖₁) · lr at k = 1, else lr; stop without moving when gᵀd > −``tolerance_change``;
* x ← x + t d, then one evaluation (none after the last iteration, as PyTorch);
* stop when ``max_iterations`` are done, ``max_evaluations`` are spent (PyTorch's default 1.25 ×
  ``max_iterations``), max|g| ≤ ``tolerance_grad``, max|t d| ≤ ``tolerance_change`` or
  |f − f_prev| < ``tolerance_change``.

With ``max_backtracks > 0`` a step that raises a row's value is halved (a safeguard PyTorch does not have: its
unit steps can diverge on a non-convex objective, e.g. a perceptual-ball margin at 1,310 instead of −2 on one
MNIST image).  This is the optimiser of the perceptual-ball authors' code (``torch.optim.LBFGS(max_iter=…)``, Elliott et al.
2021); pure TensorFlow, graph-pure (``tf.while_loop``), in the dtype of ``x0``.
"""

from __future__ import annotations

import tensorflow as tf

from .checks import check_positive_int, check_real

__all__ = ["lbfgs_fixed_step"]


def _two_loop(g, s_hist, y_hist, rho, count, head, h_diag):
    """−H g over the valid pairs: ring buffers (B, m, N) whose logical position i (0 = oldest) is physical slot
    (head + i) mod m, valid when i ≥ m − count."""
    m = s_hist.shape[1]
    q = -g
    alphas, slots = [None] * m, [tf.math.floormod(head + i, m) for i in range(m)]
    for i in reversed(range(m)):  # newest to oldest
        valid = tf.cast(i >= m - count, g.dtype)
        si = tf.gather(s_hist, slots[i], axis=1, batch_dims=1)
        alphas[i] = tf.gather(rho, slots[i], axis=1, batch_dims=1) * tf.reduce_sum(si * q, -1) * valid
        q = q - alphas[i][:, None] * tf.gather(y_hist, slots[i], axis=1, batch_dims=1)
    r = q * h_diag[:, None]
    for i in range(m):  # oldest to newest
        valid = tf.cast(i >= m - count, g.dtype)
        beta = tf.gather(rho, slots[i], axis=1, batch_dims=1) * tf.reduce_sum(
            tf.gather(y_hist, slots[i], axis=1, batch_dims=1) * r, -1)
        r = r + (valid * (alphas[i] - beta))[:, None] * tf.gather(s_hist, slots[i], axis=1, batch_dims=1)
    return r


def _ring_write(buf, head, add, value):
    """Row b's slot head_b of ``buf`` (B, m, ...) ← value_b where ``add``_b (a scatter of B rows, not a copy of
    the buffer's m rows per image)."""
    idx = tf.stack([tf.range(tf.shape(head)[0]), head], 1)
    old = tf.gather_nd(buf, idx)
    keep = tf.reshape(add, [-1] + [1] * (len(value.shape) - 1))
    return tf.tensor_scatter_nd_update(buf, idx, tf.where(keep, value, old))


def lbfgs_fixed_step(value_and_grad, x0, max_iterations=100, max_evaluations=None, history=10, lr=1.0,
                     tolerance_grad=1e-7, tolerance_change=1e-9, max_backtracks=0):
    """Minimise each row of ``x0`` with L-BFGS without line search (see the module docstring).

    Args:
        value_and_grad: (B, N) → ((B,) values, (B, N) gradients); row b's value depends on row b only.
        x0: (B, N) starting points, float32 (PyTorch's default) or float64: the dtype of every computation.
        max_iterations: iterations per row, ≥ 1.
        max_evaluations: evaluations per row (including the first), ≥ 1; ``None``: 1.25 × ``max_iterations``
            rounded down, PyTorch's default.
        history: curvature pairs kept, ≥ 1.
        lr: the step (PyTorch's ``lr``), > 0.
        tolerance_grad, tolerance_change: PyTorch's tolerances, ≥ 0.
        max_backtracks: 0 is PyTorch exactly; k > 0 adds a safeguard PyTorch does not have: a step that raises
            the row's value (or makes it NaN) is halved up to k times (one evaluation each, counted in the budget),
            the last step is evaluated too, and a row that finds no decrease keeps its point and stops
            (``converged`` False).

    Returns:
        dict with ``position`` (B, N), ``value`` (B,) at the last evaluated point of each row, ``converged`` (B,)
        bool (stopped by a tolerance, not by a budget), ``iterations`` and ``evaluations`` (B,) int32.

    Raises:
        ValueError: a budget < 1, lr ≤ 0, a negative tolerance.
    """
    max_iterations = check_positive_int(max_iterations, "max_iterations")
    max_evaluations = (int(max_iterations * 5 / 4) if max_evaluations is None
                       else check_positive_int(max_evaluations, "max_evaluations"))
    history = check_positive_int(history, "history")
    lr = check_real(lr, "lr", 0.0, None)
    tol_g = check_real(tolerance_grad, "tolerance_grad", 0.0, None, low_inclusive=True)
    tol_c = check_real(tolerance_change, "tolerance_change", 0.0, None, low_inclusive=True)
    max_backtracks = check_positive_int(max_backtracks, "max_backtracks", minimum=0)

    x0 = tf.convert_to_tensor(x0)
    dtype = x0.dtype if x0.dtype in (tf.float32, tf.float64) else tf.float32
    x0 = tf.cast(x0, dtype)
    b, n = tf.shape(x0)[0], tf.shape(x0)[1]
    value, g = value_and_grad(x0)
    value = tf.cast(value, dtype)
    g = tf.cast(g, dtype)
    converged = tf.reduce_max(tf.abs(g), -1) <= tol_g
    state = dict(
        k=tf.constant(0), x=x0, value=value, g=g, d=tf.zeros_like(x0), t=tf.zeros([b], dtype),
        s_hist=tf.zeros([b, history, n], dtype), y_hist=tf.zeros([b, history, n], dtype),
        rho=tf.zeros([b, history], dtype), count=tf.zeros([b], tf.int32), head=tf.zeros([b], tf.int32),
        h_diag=tf.ones([b], dtype),
        active=tf.logical_not(converged), converged=converged,
        iterations=tf.zeros([b], tf.int32), evaluations=tf.ones([b], tf.int32))

    def cond(st):
        return (st["k"] < max_iterations) & tf.reduce_any(st["active"])

    def body(st):
        k = st["k"] + 1
        active, g = st["active"], st["g"]
        first = tf.equal(k, 1)
        # curvature pair of the last step (rows that moved): y = g − g_prev, s = t d
        y = g - st["g_prev"]
        s = st["d"] * st["t"][:, None]
        ys = tf.reduce_sum(y * s, -1)
        add = active & tf.logical_not(first) & (ys > 1e-10)
        head = st["head"]
        s_hist = _ring_write(st["s_hist"], head, add, s)
        y_hist = _ring_write(st["y_hist"], head, add, y)
        rho = _ring_write(st["rho"], head, add, 1 / tf.where(add, ys, tf.ones_like(ys)))
        head = tf.where(add, tf.math.floormod(head + 1, history), head)
        count = tf.where(add, tf.minimum(st["count"] + 1, history), st["count"])
        h_diag = tf.where(add, ys / tf.maximum(tf.reduce_sum(y * y, -1), 1e-30), st["h_diag"])
        d = tf.cond(first, lambda: -g, lambda: _two_loop(g, s_hist, y_hist, rho, count, head, h_diag))
        t = tf.where(first, tf.minimum(tf.constant(1.0, dtype), 1 / tf.reduce_sum(tf.abs(g), -1)) * lr,
                     lr * tf.ones([b], dtype))
        gtd = tf.reduce_sum(g * d, -1)
        no_descent = active & (gtd > -tol_c)
        move = active & tf.logical_not(no_descent)
        x = tf.where(move[:, None], st["x"] + t[:, None] * d, st["x"])
        prev_value = st["value"]

        def evaluate(at):
            v, gg = value_and_grad(at)
            return tf.cast(v, dtype), tf.cast(gg, dtype)

        last = tf.equal(k, max_iterations)
        # PyTorch does not evaluate after its last step; with backtracking the last step is checked too
        skip = last & (max_backtracks == 0)
        new_value, new_g = tf.cond(skip, lambda: (prev_value, g), lambda: evaluate(x))
        evaluated = move & tf.logical_not(skip)
        evaluations = st["evaluations"] + tf.cast(evaluated, tf.int32)
        # safeguard (not in PyTorch): a step that raises the value (or makes it NaN) is halved, from the same
        # point along the same direction, up to max_backtracks times; a row that still cannot descend stops
        worse = evaluated & tf.logical_not(new_value <= prev_value) if max_backtracks else tf.zeros_like(evaluated)

        def bt_cond(j, t, x, nv, ng, worse, evaluations):
            return (j < max_backtracks) & tf.reduce_any(worse & (evaluations < max_evaluations))

        def bt_body(j, t, x, nv, ng, worse, evaluations):
            retry = worse & (evaluations < max_evaluations)  # a worse row out of budget stays worse: `stuck`
            t = tf.where(retry, 0.5 * t, t)
            x = tf.where(retry[:, None], st["x"] + t[:, None] * d, x)
            v2, g2 = evaluate(x)
            nv = tf.where(retry, v2, nv)
            ng = tf.where(retry[:, None], g2, ng)
            evaluations = evaluations + tf.cast(retry, tf.int32)
            return j + 1, t, x, nv, ng, tf.where(retry, tf.logical_not(v2 <= prev_value), worse), evaluations

        def bt_body_fixed_shapes(*v):
            return [tf.ensure_shape(a, b.shape) for a, b in zip(bt_body(*v), v)]

        _, t, x, new_value, new_g, stuck, evaluations = tf.while_loop(
            bt_cond, bt_body_fixed_shapes, (tf.constant(0), t, x, new_value, new_g, worse, evaluations))
        x = tf.where(stuck[:, None], st["x"], x)  # no descent found: keep the last point
        move = move & tf.logical_not(stuck)
        evaluated = evaluated & tf.logical_not(stuck)
        value = tf.where(evaluated, new_value, prev_value)
        g_new = tf.where(evaluated[:, None], new_g, g)
        opt = evaluated & (tf.reduce_max(tf.abs(g_new), -1) <= tol_g)
        small_step = move & (tf.reduce_max(tf.abs(t[:, None] * d), -1) <= tol_c)
        small_change = evaluated & (tf.abs(value - prev_value) < tol_c)
        tolerance = opt | small_step | small_change | no_descent
        budget = move & (last | (evaluations >= max_evaluations))
        return [dict(k=k, x=x, value=value, g=g_new, d=tf.where(move[:, None], d, st["d"]),
                     t=tf.where(move, t, st["t"]), s_hist=s_hist, y_hist=y_hist, rho=rho, count=count, head=head,
                     h_diag=h_diag,
                     active=active & tf.logical_not(tolerance | budget | stuck),
                     converged=st["converged"] | tolerance,
                     iterations=st["iterations"] + tf.cast(move, tf.int32), evaluations=evaluations, g_prev=g)]

    state["g_prev"] = g
    def body_fixed_shapes(st):  # every loop variable keeps its static shape (e.g. B = 1 under XLA/shape inference)
        return [{k: tf.ensure_shape(v, st[k].shape) for k, v in body(st)[0].items()}]

    out = tf.while_loop(cond, body_fixed_shapes, [state])[0]
    return {"position": out["x"], "value": out["value"], "converged": out["converged"],
            "iterations": out["iterations"], "evaluations": out["evaluations"]}
