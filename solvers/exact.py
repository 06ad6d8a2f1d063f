r"""Exact batched solver of PGAP's QCQP (TensorFlow, float64 by default, GPU-ready).

Problem, per row of a batch (B, N) (see :mod:`solvers.ssim_ball` for the ball):

.. math::

    \max_y\ g\cdot y \quad\text{s.t.}\quad \mathrm{mean}(y) = m,\quad
    \|y - z\|_2 \le r,\quad b_0 \le y \le b_1,
    \qquad z = m\mathbf 1 + \eta\tilde x ,

with :math:`m = \mu_x` when :math:`\varepsilon_1 = 0` (paper's Eq. 9), or
:math:`m` free in the S1 interval otherwise (then the problem is solved over
:math:`m` too, below).  On the hyperplane :math:`g\cdot y = \tilde g\cdot y +
N m\bar g`, so only the zero-mean gradient :math:`\tilde g` matters.

**Structure used.**  Let :math:`P = \{b_0 \le y \le b_1,\ \mathrm{mean}(y) = m\}`.
For a ball multiplier :math:`\lambda = 1/\tau > 0` the KKT point is the
projection :math:`y(\tau) = \Pi_P(z + \tau\tilde g) = \mathrm{clip}(z + \tau\tilde g
- \theta, b_0, b_1)`, a clipped affine function of :math:`\tilde g`, with the
scalar :math:`\theta` fixed by the mean (a continuous quadratic knapsack:
:math:`\sum_i \mathrm{clip}(v_i - \theta) = Nm` is monotone and piecewise
linear in :math:`\theta`; we solve it by a bracketed Newton method whose step is
the exact root on the current active set, so it ends exactly, with bisection
as a safeguard).  :math:`\phi(\tau) = \|y(\tau) - z\|^2` is non-decreasing
(compare the optimality of :math:`y(\tau_1)` and :math:`y(\tau_2)` for the
penalised problems), and within one active set it is the quadratic
:math:`\tau^2 S + n_F\alpha^2 + K`; the outer search solves that quadratic for
:math:`\phi = r^2` (exact on the right piece) inside a bracket that bisection
shrinks when a step leaves it.  If :math:`\phi` stays below :math:`r^2` as
:math:`\tau \to \infty` the ball is inactive and the answer is the box–mean
LP's optimum (detected when the free pixels share one gradient value and the
clipped ones would stay clipped: then :math:`\lambda = 0`).

**Certificate.**  For any :math:`\lambda \ge 0,\nu` the Lagrangian dual

.. math::

    D(\lambda,\nu) = \sum_i \max_{b_0\le y_i\le b_1}\big[(\tilde g_i-\nu)y_i
    - \tfrac{\lambda}{2}(y_i-z_i)^2\big] + \nu N m + \tfrac{\lambda}{2} r^2

bounds the optimum from above; it is evaluated at the final multipliers
(:math:`\lambda = 1/\tau, \nu = \theta/\tau`, and the LP multipliers
:math:`\lambda = 0, \nu = ` the free pixels' gradient) and the smaller bound
is reported.  ``gap = dual − primal`` ≥ 0 (to rounding);
``rel_gap = gap / max(gain, floor)`` with ``gain = g·(y − x)`` the linear gain
of the step (the part of the objective the step controls) and ``floor`` the
rounding scale of the dot products.

**S1 interval** (:math:`\varepsilon_1 > 0`).  The value :math:`V(m)` of the
fixed-mean problem is concave in :math:`m` with derivative :math:`N\nu_g`
(envelope theorem; :math:`\nu_g = \nu + \bar g` is the mean multiplier), so
:math:`m^\star` is found by bisection on the sign of :math:`\nu_g` between
:math:`\mu_x` (always feasible) and the end of the interval it points to
(means for which the fixed-mean problem is infeasible count as "too far").
The certificate is the joint Lagrangian bound, made valid over the whole
interval by its linear majorant at :math:`m^\star` (the bound is concave in
:math:`m`).

Every returned point satisfies the box exactly and the mean and ball up to the
stated tolerances; rows whose certificate or feasibility check fails are marked
``ok = False`` (callers raise or fall back; they never use them silently).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from .closed_form import backtrack_into_ball
from .checks import check_positive_int, check_real
from .rows import from_rows, to_rows
from .ssim_ball import ball_parameters, check_eps

__all__ = ["ExactResult", "solve_exact", "GAP_TOL", "feasibility_tol"]

#: default relative-gap tolerance of the certificate
GAP_TOL = 1e-6


def feasibility_tol(dtype):
    """Constraint tolerance of the exact solver: 1e-9 (float64) or 1e-4 (float32).

    Ball violations are relative to max(1, r); mean and box violations absolute.
    """
    return 1e-9 if tf.as_dtype(dtype) == tf.float64 else 1e-4


@dataclass
class ExactResult:
    """Output of :func:`solve_exact`, one entry per image (row) of the batch.

    Attributes:
        y: (B, N) tensor, the maximiser (pixels within ``bounds``).
        primal: (B,) objective g·y.
        dual: (B,) Lagrangian upper bound on the optimum.
        gap: (B,) ``dual − primal`` (≥ 0 up to rounding), summed over channels.
        rel_gap: (B,) each channel row's gap relative to its gain g·(y − x);
            the largest over the image's channels.
        violation: (B,) largest constraint violation (ball relative to
            max(1, r), mean and box absolute), largest over channels.
        iterations: (B,) outer iterations used (largest over channels).
        ok: (B,) bool: every channel row has relative gap ≤ ``gap_tol`` and
            violation ≤ :func:`feasibility_tol` (so ``rel_gap ≤ gap_tol`` too).
    """

    y: tf.Tensor
    primal: tf.Tensor
    dual: tf.Tensor
    gap: tf.Tensor
    rel_gap: tf.Tensor
    violation: tf.Tensor
    iterations: tf.Tensor
    ok: tf.Tensor

    @classmethod
    def from_solution(cls, r):
        """From the dict of :func:`_solve_images` (the dual bound is primal + gap)."""
        return cls(y=r["y"], primal=r["primal"], dual=r["primal"] + r["gap"], gap=r["gap"], rel_gap=r["rel_gap"],
                   violation=r["violation"], iterations=r["iterations"], ok=r["ok"])


# ----------------------------------------------------------------------------- knapsack
def _theta(v, msum, b0, b1, theta0, max_iter):
    """Exact θ with Σ clip(v − θ, b0, b1) = msum per row (bracketed Newton)."""
    dt = v.dtype
    n = tf.cast(tf.shape(v)[1], dt)
    eps = tf.constant(np.finfo(dt.as_numpy_dtype).eps, dt)
    scale = tf.maximum(tf.abs(b0), tf.abs(b1))
    tol = 16.0 * eps * n * scale
    lo = tf.reduce_min(v, 1) - b1  # h(lo) = N b1 - msum ≥ 0
    hi = tf.reduce_max(v, 1) - b0  # h(hi) = N b0 - msum ≤ 0
    th = tf.clip_by_value(theta0, lo, hi)
    done = tf.zeros_like(th, dtype=tf.bool)

    def body(i, th, lo, hi, done):
        s = v - th[:, None]
        free = (s > b0) & (s < b1)
        up = s >= b1
        nf = tf.reduce_sum(tf.cast(free, dt), 1)
        nu = tf.reduce_sum(tf.cast(up, dt), 1)
        sf = tf.reduce_sum(tf.where(free, v, tf.zeros_like(v)), 1)
        # Σ clip(v − θ) from the same sums: free pixels give v − θ, clipped ones b1 or b0
        h = sf - th * nf + nu * b1 + (n - nf - nu) * b0 - msum
        lo2 = tf.where(h > 0, th, lo)
        hi2 = tf.where(h < 0, th, hi)
        newly = (tf.abs(h) <= tol) | (hi2 - lo2 <= 4.0 * eps * tf.maximum(tf.abs(th), 1.0))
        th_n = (sf + nu * b1 + (n - nf - nu) * b0 - msum) / tf.maximum(nf, 1.0)
        newton_ok = (nf > 0) & (th_n > lo2) & (th_n < hi2)
        nxt = tf.where(newton_ok, th_n, 0.5 * (lo2 + hi2))
        stop = done | newly
        return (i + 1, tf.where(stop, th, nxt), tf.where(stop, lo, lo2),
                tf.where(stop, hi, hi2), stop)

    _, th, _, _, _ = tf.while_loop(
        lambda i, th, lo, hi, done: (i < max_iter) & tf.logical_not(tf.reduce_all(done)),
        body, (tf.constant(0), th, lo, hi, done))
    return th


# ----------------------------------------------------------------------------- fixed mean
def _fixed_mean(gt, z, m, r, b0, b1, max_outer, max_inner, rtol, anchor=None):
    """Maximise gt·y on {mean(y) = m, ‖y − z‖ ≤ r, box} per row.

    ``anchor``: a point known to be feasible (the image x when m = μx); without
    it Π_P(z) is computed, which also decides feasibility (φ(0) ≤ r²).

    Returns a dict with y (primal, feasible), the multipliers and the dual
    bound pieces (all (B,) or (B, N)), and ``feasible``.
    """
    dt = gt.dtype
    n = tf.cast(tf.shape(gt)[1], dt)
    msum = n * m
    r2 = r * r
    eps = tf.constant(np.finfo(dt.as_numpy_dtype).eps, dt)
    gnorm2 = tf.reduce_sum(gt * gt, 1)
    tiny_s = (64.0 * eps) ** 2 * gnorm2
    inf = tf.constant(np.inf, dt)

    if anchor is None:
        th0 = _theta(z, msum, b0, b1, tf.zeros_like(m), max_inner)
        y0 = tf.clip_by_value(z - th0[:, None], b0, b1)
        phi0 = tf.reduce_sum((y0 - z) ** 2, 1)
        feasible = phi0 <= r2 * (1.0 + rtol)
    else:  # x itself: in the box, mean m, and ‖x − z‖ = (η − 1)‖x̃‖ < r
        th0 = tf.zeros_like(m)
        y0 = anchor
        phi0 = tf.reduce_sum((y0 - z) ** 2, 1)
        feasible = tf.ones_like(m, dtype=tf.bool)
    zero_g = gnorm2 <= 0.0

    tau = tf.where(zero_g, tf.zeros_like(r), r / tf.sqrt(tf.where(zero_g, tf.ones_like(gnorm2), gnorm2)))
    # rows already finished: zero gradient (y0 is optimal), infeasible (reported)
    done0 = zero_g | tf.logical_not(feasible)
    lp0 = tf.zeros_like(done0)

    def evaluate(tau, th_warm):
        v = z + tau[:, None] * gt
        th = _theta(v, msum, b0, b1, th_warm, max_inner)
        s = v - th[:, None]
        y = tf.clip_by_value(s, b0, b1)
        d = y - z
        phi = tf.reduce_sum(d * d, 1)
        free = (s > b0) & (s < b1)
        nf = tf.reduce_sum(tf.cast(free, dt), 1)
        beta = tf.reduce_sum(tf.where(free, gt, tf.zeros_like(gt)), 1) / tf.maximum(nf, 1.0)
        dev = tf.where(free, gt - beta[:, None], tf.zeros_like(gt))
        sgg = tf.reduce_sum(dev * dev, 1)
        k = tf.reduce_sum(tf.where(free, tf.zeros_like(d), d * d), 1)
        alpha = th - beta * tau

        def clipped_stay_clipped():
            # LP-limit test: would every clipped pixel stay clipped as τ grows? (only needed when S ≈ 0)
            slack = 64.0 * eps * tf.sqrt(gnorm2)[:, None]
            dv = gt - beta[:, None]
            return tf.reduce_all(((s < b1) | (dv >= -slack)) & ((s > b0) | (dv <= slack)), 1)

        stays = tf.cond(tf.reduce_any(sgg <= tiny_s), clipped_stay_clipped,
                        lambda: tf.zeros(tf.shape(sgg), tf.bool))
        return th, y, phi, nf, beta, sgg, k, alpha, stays

    def body(i, tau, th, tlo, thi, done, lp, iters, e_tau, e_th, e_y, e_phi, e_nf, e_beta):
        th_new, y_new, phi, nf, beta, sgg, k, alpha, stays = evaluate(tau, th)
        below = phi <= r2
        tlo2 = tf.where(below, tf.maximum(tlo, tau), tlo)
        thi2 = tf.where(below, thi, tf.minimum(thi, tau))
        conv = tf.abs(phi - r2) <= rtol * r2
        lp_now = below & (sgg <= tiny_s) & stays & (nf > 0)
        t_n = tf.sqrt(tf.maximum(r2 - nf * alpha**2 - k, 0.0) / tf.where(sgg > tiny_s, sgg, tf.ones_like(sgg)))
        t_n = tf.where(sgg > tiny_s, t_n, inf)
        inside = (t_n > tlo2) & (t_n < thi2)
        grow = 4.0 * tf.maximum(tau, tlo2)
        mid = tf.where(tlo2 > 0, tf.sqrt(tlo2 * thi2), 0.5 * thi2)
        fallback = tf.where(tf.math.is_inf(thi2), grow, mid)
        nxt = tf.where(inside, t_n, fallback)
        stop_now = conv | lp_now
        keep = done  # finished rows keep everything
        tau_out = tf.where(keep | stop_now, tau, nxt)
        # warm start of the knapsack at the next τ: θ = α + βτ is exact if the active set stays
        th_out = tf.where(keep, th, tf.where(stop_now, th_new, alpha + beta * nxt))
        # the last evaluated (τ, θ, y) of each row: its certificate is computed from these
        return (i + 1, tau_out, th_out, tf.where(keep, tlo, tlo2), tf.where(keep, thi, thi2),
                keep | stop_now, tf.where(keep, lp, lp_now), tf.where(keep, iters, iters + 1),
                tf.where(keep, e_tau, tau), tf.where(keep, e_th, th_new), tf.where(keep[:, None], e_y, y_new),
                tf.where(keep, e_phi, phi), tf.where(keep, e_nf, nf), tf.where(keep, e_beta, beta))

    zeros = tf.zeros_like(r)
    init = (tf.constant(0), tau, th0, zeros, tf.fill(tf.shape(r), inf), done0, lp0,
            tf.zeros_like(r, dtype=tf.int32), tau, th0, y0, phi0, zeros, zeros)
    _, _, _, _, _, done, lp, iters, tau, th, yd, phi, nf, beta = tf.while_loop(
        lambda i, *s: (i < max_outer) & tf.logical_not(tf.reduce_all(s[4])), body, init)

    yd = tf.where(zero_g[:, None], y0, yd)
    phi = tf.where(zero_g, phi0, phi)
    # primal point: y(τ) if inside the ball, else pulled back towards y0 = Π_P(z)
    # (both have mean m, so the centred ball of backtrack_into_ball is ‖y − z‖ ≤ r here)
    yp = tf.where((phi <= r2)[:, None], yd, backtrack_into_ball(y0, yd, z - m[:, None], r))
    lam = tf.where(zero_g | lp, tf.zeros_like(tau), 1.0 / tf.where(tau > 0, tau, tf.ones_like(tau)))
    nu_lam = th * lam
    # dual bounds: (λ = 1/τ, ν = θ/τ) at y_d and the LP bound (λ = 0, ν = β); take the smaller
    h_d = tf.reduce_sum(yd, 1) - msum
    gap_lam = (tf.reduce_sum(gt * (yd - yp), 1) - nu_lam * h_d + 0.5 * lam * (r2 - phi))
    gap_lam = tf.where(lam > 0, gap_lam, inf)

    def lp_bound():
        gs = gt - beta[:, None]
        box_best = tf.maximum(gs * b0, gs * b1)
        gap_lp = tf.reduce_sum(box_best - gs * yp, 1) - beta * (tf.reduce_sum(yp, 1) - msum)
        return tf.where(nf > 0, gap_lp, inf)

    # the LP bound matters only where the ball is inactive (λ → 0); elsewhere the λ-bound is tight. It is
    # used for exactly those rows, so that a row's certificate never depends on the other rows of the batch
    needs_lp = lp | ~(gap_lam < inf)
    gap_lp = tf.cond(tf.reduce_any(needs_lp), lp_bound, lambda: tf.fill(tf.shape(r), inf))
    gap_lp = tf.where(needs_lp, gap_lp, inf)
    use_lp = gap_lp < gap_lam
    gap = tf.where(zero_g, tf.zeros_like(r), tf.minimum(gap_lam, gap_lp))
    lam_out = tf.where(use_lp, tf.zeros_like(lam), lam)
    nu_out = tf.where(use_lp, beta, nu_lam)
    return {"y": yp, "y_dual": yd, "gap": gap, "lam": lam_out, "nu": nu_out, "feasible": feasible,
            "iterations": iters, "h_dual": tf.where(use_lp, tf.reduce_sum(yp, 1) - msum, h_d)}


# ----------------------------------------------------------------------------- driver
@tf.function(reduce_retracing=True)
def _solve_rows(g, x, eps2, eps1, b0, b1, max_outer, max_inner, max_mean, rtol):
    """Rows of (B, N). The S1 interval (ε1 > 0) or the fixed mean (ε1 = 0) is chosen in the graph
    (``tf.cond`` on the value of ``eps1``), so a traced caller follows a change of ε1."""
    dt = g.dtype
    n = tf.cast(tf.shape(g)[1], dt)
    inf = tf.constant(np.inf, dt)
    mean_x, c, r, s1_low, s1_high = ball_parameters(x, eps2, eps1)
    gbar = tf.reduce_mean(g, 1)
    gt = g - gbar[:, None]

    def solve_at(m, anchor=None):
        return _fixed_mean(gt, m[:, None] + c, m, r, b0, b1, max_outer, max_inner, rtol, anchor)

    res0 = solve_at(mean_x, anchor=x)

    def fixed_mean():
        return res0["y"], res0["gap"], tf.ones_like(mean_x, dtype=tf.bool), mean_x, mean_x, res0["iterations"]

    def mean_interval():
        m_lo = tf.minimum(tf.maximum(s1_low, b0), mean_x)
        m_hi = tf.maximum(tf.minimum(s1_high, b1), mean_x)
        direction = tf.sign(res0["nu"] + gbar)
        end = tf.where(direction > 0, m_hi, m_lo)
        res_end = solve_at(end)
        end_ok = res_end["feasible"] & (direction * (res_end["nu"] + gbar) >= 0)

        def mbody(i, a, b):
            mid = 0.5 * (a + b)
            rm = solve_at(mid)
            good = rm["feasible"] & (direction * (rm["nu"] + gbar) > 0)
            return i + 1, tf.where(good, mid, a), tf.where(good, b, mid)

        _, a, _ = tf.while_loop(lambda i, a, b: i < max_mean, mbody, (tf.constant(0), mean_x, end))
        m_star = tf.where(direction == 0, mean_x, tf.where(end_ok, end, a))
        res = solve_at(m_star)
        # the joint Lagrangian bound is concave in m; its tangent at m* majorises it on [m_lo, m_hi]
        slope = n * (res["nu"] + gbar) + res["lam"] * res["h_dual"]
        gap = res["gap"] + tf.maximum(slope * (m_lo - m_star), slope * (m_hi - m_star))
        gap = tf.where(res["feasible"], tf.maximum(gap, 0.0), inf)
        return res["y"], gap, tf.equal(m_star, mean_x), m_lo, m_hi, res["iterations"]

    y_res, gap, keep_x, m_lo, m_hi, iterations = tf.cond(eps1 > 0, mean_interval, fixed_mean)
    # zero projected gradient: every feasible point is optimal; keep the anchor itself
    y = tf.where((tf.reduce_all(tf.equal(gt, 0.0), 1) & keep_x)[:, None], x, y_res)
    gain = tf.reduce_sum(g * (y - x), 1)
    eps = tf.constant(np.finfo(dt.as_numpy_dtype).eps, dt)
    floor = 64.0 * eps * tf.norm(gt, axis=1) * (tf.norm(y, axis=1) + r) + tf.constant(1e-300, dt)

    # feasibility check, independent of the solver's internals
    my = tf.reduce_mean(y, 1)
    dist = tf.norm(y - my[:, None] - c, axis=1)
    v_ball = tf.maximum(dist - r, 0.0) / tf.maximum(r, 1.0)
    v_mean = tf.maximum(tf.maximum(m_lo - my, my - m_hi), 0.0)  # = |μy − μx| for a fixed mean, bit for bit
    v_box = tf.maximum(tf.reduce_max(tf.maximum(b0 - y, y - b1), 1), 0.0)
    violation = tf.maximum(tf.maximum(v_ball, v_mean), v_box)
    return y, tf.reduce_sum(g * y, 1), gap, gain, floor, violation, iterations


@tf.function(reduce_retracing=True)
def _solve_images(g, x, eps2, eps1, b0, b1, gap_tol, channels, max_outer=100, max_inner=100, max_mean=60):
    """Images (B, N) channels-last, one ball per channel: the graph step behind :func:`solve_exact` and
    :class:`solvers.oracles.ExactSSIMOracle`.

    ``channels`` and the iteration caps are Python values (they shape the graph); the rest are tensors of the
    dtype of ``g`` (ε1 > 0 or = 0 is decided in the graph).  A row (one channel of one image) is certified when its relative gap is ≤ ``gap_tol`` and its
    violation ≤ :func:`feasibility_tol`; an image is certified (``ok``) when all its rows are.  Returns a dict
    of tensors: ``y`` (B, N); per image ``primal``, ``gap`` and ``gain`` (sums over channels), ``rel_gap``
    and ``violation`` (largest over channels), ``iterations`` (largest), ``ok``.
    """
    dt = g.dtype
    rtol = tf.constant(1e-13 if dt == tf.float64 else 1e-6, dt)
    y, primal, gap, gain, floor, viol, iters = _solve_rows(
        to_rows(g, channels), to_rows(x, channels), eps2, eps1, b0, b1, tf.constant(max_outer),
        tf.constant(max_inner), tf.constant(max_mean), rtol)
    rel = tf.maximum(gap, 0.0) / tf.maximum(gain, floor)
    ok_rows = (rel <= gap_tol) & (viol <= feasibility_tol(dt))

    def per_image(a, op=tf.reduce_sum):
        return op(tf.reshape(a, (-1, channels)), 1)

    return {"y": from_rows(y, channels), "primal": per_image(primal), "gap": per_image(gap),
            "gain": per_image(gain), "rel_gap": per_image(rel, tf.reduce_max),
            "violation": per_image(viol, tf.reduce_max), "iterations": per_image(iters, tf.reduce_max),
            "ok": per_image(ok_rows, tf.reduce_all)}


def solve_exact(g, x, eps2, eps1=0.0, bounds=(0.0, 1.0), channels=1, dtype=tf.float64,
                gap_tol=GAP_TOL, max_outer=100, max_inner=100, max_mean=60):
    """Exact maximiser of ``g·y`` over the SSIM ball ∩ pixel box, batched, with a certificate.

    Args:
        g: (B, N) float array or tensor, the linear objective (loss gradient).
        x: (B, N) float array or tensor, anchor images, pixels in ``bounds``
            (channels-last flattening when ``channels > 1``).
        eps2: S2 radius ε in (0, 1) (S2 ≥ 1 − ε², paper's Eq. 5).
        eps1: S1 radius in [0, 1); 0 fixes the mean (Eq. 9).
        bounds: pixel box (b0, b1), default (0, 1).
        channels: C ≥ 1; C > 1 solves one SSIM ball per colour channel (the problem
            separates); gaps and gains are summed over the channels.
        dtype: ``tf.float64`` (default) or ``tf.float32``.
        gap_tol: relative gap (> 0) below which a row is certified; an image is
            ``ok`` when each of its channel rows is.
        max_outer, max_inner, max_mean: iteration caps of the ball-multiplier,
            knapsack and mean searches (rows that hit them are still
            certified or flagged by the gap, never trusted blindly).

    Returns:
        :class:`ExactResult` (tensors of ``dtype``).

    Raises:
        ValueError / TypeError: shapes, radii, ``channels``, ``gap_tol`` or dtype out of range (NaN/Inf and
            bounds are checked by :func:`solvers.maximize_linear_over_ssim_ball`).
    """
    eps2, eps1 = check_eps(eps2, eps1)
    gap_tol = check_real(gap_tol, "gap_tol", 0.0, None)
    channels = check_positive_int(channels, "channels")
    dtype = tf.as_dtype(dtype)
    if dtype not in (tf.float32, tf.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype.name}")
    g = tf.cast(tf.convert_to_tensor(g), dtype)
    x = tf.cast(tf.convert_to_tensor(x), dtype)
    if g.shape.rank != 2 or x.shape.rank != 2 or g.shape != x.shape:
        raise ValueError(f"g and x must have the same shape (B, N), got {g.shape} and {x.shape}")
    if int(x.shape[1]) % channels:
        raise ValueError(f"N={int(x.shape[1])} is not divisible by channels={channels}")
    r = _solve_images(g, x, tf.constant(eps2, dtype), tf.constant(eps1, dtype), tf.constant(bounds[0], dtype),
                      tf.constant(bounds[1], dtype), tf.constant(gap_tol, dtype), channels, max_outer, max_inner,
                      max_mean)
    return ExactResult.from_solution(r)
