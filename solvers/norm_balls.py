r"""Linear oracles over ℓ1 and ℓ2 balls (∩ the pixel box): the steps of the Frank–Wolfe attacks.

Each oracle maximises :math:`g\cdot s` over a set of perturbations :math:`s` anchored at rows :math:`x`
(B, N) and returns the point :math:`y = x + s` (the :class:`~solvers.oracles.LinearOracle` convention).
Rows are whole images flattened (every channel in one row: the norms are over all pixels and channels).

* :class:`L1QOracle` — the ℓ1-q step of Roberts & Tsiligkaridis (2021, Algorithm 1): the
  :math:`k = \max(1, \mathrm{round}(qN))` entries of largest :math:`|g|` (ties: the lower index first, as
  ``tf.math.top_k``) get :math:`\mathrm{sign}(g)\,\varepsilon/k` (sign +1 where :math:`g_i = 0`), so
  :math:`\|s\|_1 = \varepsilon` with exactly *k* non-zeros.  It is the exact maximiser over the polytope
  :math:`\{\|s\|_1 \le \varepsilon,\ \|s\|_\infty \le \varepsilon/k\}`; with ``box="exact"`` it maximises over
  that polytope ∩ the box :math:`\{b_0 \le x + s \le b_1\}` instead (a fractional knapsack, below), so every
  Frank–Wolfe iterate is exactly feasible where the authors' code leaves the box alone.
  ``q`` here is the fraction of entries *modified*; the authors' (and ``rai-toolbox``'s) ``q`` is the
  quantile of :math:`|g|` below which entries are *zeroed*: ours = 1 − theirs.
* :class:`L1BoxOracle` — the exact ℓ1 ball ∩ box: a fractional knapsack.  Entry *i* can move by its room
  :math:`r_i` in the box in the direction of :math:`\mathrm{sign}(g_i)` (:math:`b_1 - x_i` or
  :math:`x_i - b_0`; 0 where :math:`g_i = 0`), capped at ``cap`` (ε/k for ℓ1-q, none for the plain ball); the
  entries are filled in order of :math:`|g_i|` (stable sort) until ε is spent.  Greedy is optimal for a
  fractional knapsack (value per unit of budget :math:`|g_i|` is constant per entry).
* :class:`L2Oracle` — :math:`s = \varepsilon\,g/\|g\|_2` (0 for a zero gradient).
* :class:`L2BoxOracle` — the exact ℓ2 ball ∩ box.  The KKT point is :math:`s(t) = \mathrm{clip}(t g,
  b_0 - x, b_1 - x)` — the structure of the project's exact SSIM-ball solver (:mod:`solvers.exact`) without
  the mean constraint, so no inner search is needed: :math:`\|s(t)\|^2 = t^2 A_j + B_j` between consecutive
  sorted breakpoints :math:`t_i = r_i/|g_i|` (:math:`A_j` the squared gradient of the entries not yet
  clipped, :math:`B_j` the squared rooms of those clipped), one sort finds the piece where it crosses ε² and
  :math:`t` is its root.  If the box corner lies inside the ball the corner is the answer.  A Lagrangian
  certificate (the dual at :math:`\lambda = 1/t`) checks each row: ``ok`` where the relative gap ≤ ``gap_tol``.

All are graph-pure (``tf.function``, XLA: fixed shapes, no string ops with ``report=False``) and work in
float32 or float64.  :func:`cvxpy_norm_ball` solves the same problems with CVXPY, the reference of the tests.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .checks import check_choice, check_real
from .oracles import LinearOracle, OracleResult

__all__ = ["NormBallOracle", "L1QOracle", "L1BoxOracle", "L2Oracle", "L2BoxOracle", "l1q_count", "knapsack_step",
           "l1q_step", "l2_step", "l2_box_step", "cvxpy_norm_ball", "L1Q_BOXES"]

#: box handling of :class:`L1QOracle`: ``"exact"`` (knapsack over the box) or ``"none"`` (the paper's step)
L1Q_BOXES = ("exact", "none")


def l1q_count(q, n):
    """k = max(1, round(q · n)) as int32 (q may be a tensor of per-row fractions), the entries ℓ1-q modifies."""
    q = tf.constant(q, tf.float64) if isinstance(q, (int, float)) else tf.cast(q, tf.float64)  # not via float32
    k = tf.math.round(q * tf.cast(n, tf.float64))  # half to even, as Python's round
    return tf.clip_by_value(tf.cast(k, tf.int32), 1, tf.cast(n, tf.int32))


def _rows_nonzero(g):
    return tf.reduce_any(tf.not_equal(g, 0), axis=1, keepdims=True)


def l1q_step(g, eps, k, k_max=None):
    """The ℓ1-q direction s (B, N) without the box: top-k of |g| per row get sign(g) · ε / k.

    Args:
        g: (B, N) float tensor.
        eps: scalar ε > 0 (the ℓ1 radius), same dtype as g.
        k: int32 scalar or (B,) per-row counts in [1, N].
        k_max: static int ≥ max(k) when k is per row (``tf.math.top_k`` needs one k); ``None``: k is a scalar.

    Rows with an all-zero gradient get s = 0 (they keep x, like every oracle of the project).
    """
    n = tf.shape(g)[1]
    k = tf.convert_to_tensor(k, tf.int32)
    kk = k if k_max is None else tf.minimum(tf.constant(k_max, tf.int32), n)
    _, idx = tf.math.top_k(tf.abs(g), k=kk, sorted=True)  # stable: among ties the lower index comes first
    picked = tf.gather(g, idx, batch_dims=1)
    sign = tf.where(picked >= 0, tf.ones_like(picked), -tf.ones_like(picked))
    kf = tf.cast(tf.reshape(k, (-1, 1)), g.dtype)
    value = sign * eps / kf
    if k_max is not None:  # per-row k: only the first k_i of the k_max picks
        value = tf.where(tf.range(kk)[None, :] < tf.reshape(k, (-1, 1)), value, tf.zeros_like(value))
    b = tf.shape(g)[0]
    rows = tf.broadcast_to(tf.range(b)[:, None], tf.shape(idx))
    s = tf.scatter_nd(tf.stack([rows, idx], -1), value, tf.shape(g))
    return tf.where(_rows_nonzero(g), s, tf.zeros_like(s))


def knapsack_step(g, x, eps, bounds, cap=None):
    """The exact maximiser s (B, N) of g·s over {‖s‖₁ ≤ ε, |s_i| ≤ cap, b0 ≤ x + s ≤ b1}: a fractional knapsack.

    Args:
        g, x: (B, N) float tensors (x in the box).
        eps: scalar ε > 0.
        bounds: (b0, b1).
        cap: ``None`` (no per-entry cap: the ℓ1 ball ∩ box) or a scalar / (B, 1) per-entry cap (ε/k: ℓ1-q).

    Entries are filled in order of |g| (stable: the lower index first among ties) up to min(room, cap) until
    ε is spent; entries with g_i = 0 or no room stay 0.
    """
    b0, b1 = bounds
    room = tf.where(g > 0, b1 - x, tf.where(g < 0, x - b0, tf.zeros_like(x)))
    room = tf.maximum(room, 0.0)
    if cap is not None:
        room = tf.minimum(room, cap)
    order = tf.argsort(-tf.abs(g), axis=1, stable=True)
    room_sorted = tf.gather(room, order, batch_dims=1)
    spent_before = tf.cumsum(room_sorted, axis=1, exclusive=True)
    fill_sorted = tf.clip_by_value(eps - spent_before, 0.0, room_sorted)
    rows = tf.broadcast_to(tf.range(tf.shape(g)[0])[:, None], tf.shape(order))
    fill = tf.scatter_nd(tf.stack([rows, order], -1), fill_sorted, tf.shape(g))
    return tf.sign(g) * fill


def l2_step(g, eps):
    """s = ε g / ‖g‖₂ per row of (B, N); 0 for a zero gradient."""
    norm = tf.norm(g, axis=1, keepdims=True)
    return tf.where(norm > 0, eps * g / tf.where(norm > 0, norm, tf.ones_like(norm)), tf.zeros_like(g))


def l2_box_step(g, x, eps, bounds):
    """The exact maximiser of g·s over {‖s‖₂ ≤ ε, b0 ≤ x + s ≤ b1} per row, with its Lagrangian certificate.

    Returns:
        (s, rel_gap): s (B, N); rel_gap (B,) = (dual − primal) / max(primal, tiny) at λ = 1/t (0 where the box
        corner is inside the ball: then the corner is optimal with λ = 0).
    """
    b0, b1 = bounds
    dt = g.dtype
    lo, hi = b0 - x, b1 - x
    bound = tf.where(g > 0, hi, tf.where(g < 0, lo, tf.zeros_like(x)))  # where entry i clips
    ag = tf.abs(g)
    safe = tf.where(ag > 0, ag, tf.ones_like(ag))
    brk = tf.where(ag > 0, tf.abs(bound) / safe, tf.zeros_like(ag))  # t at which entry i reaches its bound
    order = tf.argsort(brk, axis=1, stable=True)
    t_sorted = tf.gather(brk, order, batch_dims=1)
    g2_sorted = tf.gather(tf.square(g), order, batch_dims=1)
    b2_sorted = tf.gather(tf.square(bound), order, batch_dims=1)
    clipped_sq = tf.cumsum(b2_sorted, axis=1, exclusive=True)  # B_j: entries before j are clipped at t_(j)
    free_g2 = tf.cumsum(g2_sorted, axis=1, reverse=True)  # A_j, summed from the end: no cancellation in float32
    phi = tf.square(t_sorted) * free_g2 + clipped_sq  # ‖s(t_(j))‖², non-decreasing in j
    eps2 = tf.square(tf.cast(eps, dt))
    crossed = phi >= eps2
    any_cross = tf.reduce_any(crossed, 1)
    # the root lies in [t_(j−1), t_(j)] for the first crossing j; there the entries before j are clipped and
    # the others free: ‖s(t)‖² = t² A_j + B_j
    j = tf.argmax(tf.cast(crossed, tf.int32), axis=1, output_type=tf.int32)[:, None]
    a_piece = tf.gather(free_g2, j, batch_dims=1)[:, 0]
    b_piece = tf.gather(clipped_sq, j, batch_dims=1)[:, 0]
    a_safe = tf.where(a_piece > 0, a_piece, tf.ones_like(a_piece))
    t = tf.sqrt(tf.maximum(eps2 - b_piece, 0.0) / a_safe)
    corner = tf.logical_not(any_cross)
    s = tf.where(corner[:, None], bound, tf.clip_by_value(t[:, None] * g, lo, hi))
    # rounding may leave ‖s‖ a hair above ε: scaling toward 0 keeps the box (lo ≤ 0 ≤ hi)
    norm = tf.norm(s, axis=1, keepdims=True)
    s = s * tf.minimum(tf.ones_like(norm), tf.sqrt(eps2) / tf.where(norm > 0, norm, tf.ones_like(norm)))
    zero = tf.logical_not(_rows_nonzero(g))[:, 0]
    s = tf.where(zero[:, None], tf.zeros_like(s), s)
    # certificate: D(λ) = Σ_i max_{lo≤s_i≤hi} [g_i s_i − λ s_i²/2] + λ ε²/2 ≥ max, at λ = 1/t
    lam = tf.where(corner | zero, tf.zeros_like(t), 1.0 / tf.where(t > 0, t, tf.ones_like(t)))
    lam_safe = tf.where(lam > 0, lam, tf.ones_like(lam))[:, None]
    s_dual = tf.where(lam[:, None] > 0, tf.clip_by_value(g / lam_safe, lo, hi), bound)
    dual = tf.reduce_sum(g * s_dual - 0.5 * lam[:, None] * tf.square(s_dual), 1) + 0.5 * lam * eps2
    primal = tf.reduce_sum(g * s, 1)
    scale = tf.reduce_sum(tf.abs(g) * tf.abs(bound), 1)  # rounding scale of the dot products
    tiny = tf.cast(np.finfo(dt.as_numpy_dtype).eps, dt) * 64.0 * (scale + 1.0)
    rel_gap = tf.maximum(dual - primal, 0.0) / tf.maximum(tf.abs(primal), tiny)
    return s, tf.where(zero, tf.zeros_like(rel_gap), rel_gap)


class NormBallOracle(LinearOracle):
    """An oracle over a norm ball of radius ε (in a ``tf.Variable``: assignable, followed by traced graphs).

    Args:
        eps: the radius, > 0, in the ball's norm over the whole row (all pixels and channels).
        bounds, dtype: see :class:`~solvers.oracles.LinearOracle` (``channels`` is 1: one row per image).
    """

    norm = ""
    _FIXED = LinearOracle._FIXED + ("norm", "q", "k_max", "cap_to_q")

    def __init__(self, eps, bounds=(0.0, 1.0), dtype="float64"):
        super().__init__(bounds, 1, dtype)
        self._eps = tf.Variable(self._check_eps(eps), dtype=tf.float64, trainable=False, name="eps")

    @staticmethod
    def _check_eps(value):
        return check_real(value, "eps", 0.0, None)

    @property
    def eps(self) -> float:
        """The radius ε > 0."""
        return float(self._eps.numpy())

    @eps.setter
    def eps(self, value):
        self._eps.assign(self._check_eps(value))

    def _radius(self):
        return tf.cast(self._eps.read_value(), self.dtype)

    def _result(self, x, s, ok=None, report=True):
        n = tf.shape(x)[:1]
        ok = tf.ones(n, tf.bool) if ok is None else ok
        return OracleResult(x + s, ok, tf.fill(n, "") if report else None)


class L1QOracle(NormBallOracle):
    """The ℓ1-q step (Roberts & Tsiligkaridis 2021, Algorithm 1; see the module docstring).

    Args:
        eps: the ℓ1 radius ε > 0.
        q: fraction of entries modified, in (0, 1] (the authors' q is 1 − this).
        box: ``"none"`` (the paper's step; x + s may leave the box) or ``"exact"`` (the knapsack over the
            ℓ1-q polytope ∩ the box: exactly feasible; then fewer or more than k entries may move when the
            selected ones lack room).
        bounds, dtype: see :class:`NormBallOracle`.

    :meth:`maximize_k` takes per-row counts (the attacks' ``q_jitter``).
    """

    norm = "l1"

    def __init__(self, eps, q=0.05, box="exact", bounds=(0.0, 1.0), dtype="float64"):
        super().__init__(eps, bounds, dtype)
        self.q = check_q(q)
        self.box = check_choice(box, "box", L1Q_BOXES)
        self.respects_box = self.box == "exact"

    def maximize_k(self, g, x, k, k_max=None, report=True) -> OracleResult:
        """:meth:`maximize` with ``k`` (B,) int32 entries per row (``k_max`` a static bound on them)."""
        g, x = tf.cast(g, self.dtype), tf.cast(x, self.dtype)
        eps = self._radius()
        if self.box == "exact":
            cap = eps / tf.cast(tf.reshape(tf.convert_to_tensor(k, tf.int32), (-1, 1)), self.dtype)
            s = knapsack_step(g, x, eps, self.bounds, cap)
        else:
            s = l1q_step(g, eps, k, k_max)
        return self._result(x, s, report=report)

    def maximize(self, g, x, report=True) -> OracleResult:
        k = l1q_count(self.q, tf.shape(g)[1])
        g, x = tf.cast(g, self.dtype), tf.cast(x, self.dtype)
        eps = self._radius()
        if self.box == "exact":
            s = knapsack_step(g, x, eps, self.bounds, eps / tf.cast(k, self.dtype))
        else:
            s = l1q_step(g, eps, k)
        return self._result(x, s, report=report)


class L1BoxOracle(NormBallOracle):
    """The exact maximiser over the ℓ1 ball ∩ the pixel box (a fractional knapsack; module docstring)."""

    norm = "l1"

    def maximize(self, g, x, report=True) -> OracleResult:
        return self._result(x, knapsack_step(g, x, self._radius(), self.bounds), report=report)


class L2Oracle(NormBallOracle):
    """s = ε g / ‖g‖₂: the ℓ2 ball without the box (x + s may leave it; ``respects_box = False``)."""

    norm = "l2"
    respects_box = False

    def maximize(self, g, x, report=True) -> OracleResult:
        return self._result(x, l2_step(g, self._radius()), report=report)


class L2BoxOracle(NormBallOracle):
    """The exact maximiser over the ℓ2 ball ∩ the pixel box, certified by its Lagrangian dual per row.

    Args:
        eps, bounds, dtype: see :class:`NormBallOracle`.
        gap_tol: the relative duality gap a row must certify to be ``ok`` (default 1e-6 in float64, 1e-4 in
            float32).
    """

    norm = "l2"

    def __init__(self, eps, bounds=(0.0, 1.0), dtype="float64", gap_tol=None):
        super().__init__(eps, bounds, dtype)
        default = 1e-6 if self.dtype == tf.float64 else 1e-4
        self.gap_tol = check_real(default if gap_tol is None else gap_tol, "gap_tol", 0.0, None)

    def maximize(self, g, x, report=True) -> OracleResult:
        s, rel_gap = l2_box_step(g, x, self._radius(), self.bounds)
        ok = rel_gap <= self.gap_tol
        r = self._result(x, s, ok, report=False)
        if not report:
            return r
        why = tf.strings.join(["ℓ2-ball ∩ box step not certified: relative duality gap ",
                               tf.strings.as_string(rel_gap, precision=3, scientific=True)])
        return OracleResult(r.y, ok, tf.where(ok, "", why))


def check_q(q):
    """q in (0, 1], the fraction of entries ℓ1-q modifies."""
    return check_real(q, "q (fraction of entries modified)", 0.0, 1.0, high_inclusive=True)


def cvxpy_norm_ball(g, x, eps, norm, bounds=(0.0, 1.0), cap=None, box=True, solver="CLARABEL"):
    """Reference: maximise g·s over {‖s‖_norm ≤ ε (, |s_i| ≤ cap) (, b0 ≤ x + s ≤ b1)} for one row by CVXPY.

    Args:
        g, x: (N,) float arrays; eps > 0; norm ``"l1"`` or ``"l2"``; cap: per-entry bound (ℓ1-q) or ``None``;
        box: include the pixel box.

    Returns:
        s (N,) float64 (the solver's answer, not verified here: the tests compare it with the exact oracles).

    Raises:
        RuntimeError: the solver did not report an optimum.
    """
    import cvxpy as cp

    g, x = np.asarray(g, np.float64), np.asarray(x, np.float64)
    s = cp.Variable(len(g))
    cons = [cp.norm1(s) <= eps] if norm == "l1" else [cp.norm2(s) <= eps]
    if cap is not None:
        cons.append(cp.abs(s) <= cap)
    if box:
        cons += [x + s >= bounds[0], x + s <= bounds[1]]
    prob = cp.Problem(cp.Maximize(g @ s), cons)
    prob.solve(solver=solver)
    if prob.status != "optimal":
        raise RuntimeError(f"CVXPY ({solver}) returned status {prob.status}")
    return np.asarray(s.value, np.float64)
