r"""Exact Euclidean projection onto the SSIM ball ∩ pixel box, batched (TensorFlow, float64), certified.

Problem, per row (one image, or one colour channel of one image; see :mod:`solvers.ssim_ball`):

.. math::

    \min_y\ \tfrac12\|y - z\|^2 \quad\text{s.t.}\quad b_0 \le y \le b_1,\quad
    \mathrm{mean}(y) \in [lo, hi],\quad \|Py - c\| \le r,

with :math:`P = I - \mathbf 1\mathbf 1^\top/N` (the zero-mean part), :math:`c = \eta\tilde x` the centre and
:math:`r` the radius of the S2 ball of the anchor :math:`x`, and :math:`[lo, hi]` the interval S1 allows for
the mean (a point when :math:`\varepsilon_1 = 0`).  This is the projection step of SSIM-APGD
(:class:`tfperceptual.attacks.SSIMAPGD`), the SSIM-ball analogue of the ℓ2-ball projection of Croce &
Hein's APGD.

**Structure.**  Let :math:`C` be the box ∩ mean slab.  For a ball multiplier :math:`\lambda \ge 0` the
Lagrangian :math:`L_\lambda(y) = \tfrac12\|y-z\|^2 + \tfrac\lambda2(\|Py-c\|^2 - r^2)` is minimised over
:math:`C` by (stationarity; :math:`\nabla\tfrac12\|Py-c\|^2 = Py - c` since :math:`Pc = c`)

.. math::

    y_\lambda = \mathrm{clip}(w_\lambda + \sigma, b_0, b_1),\qquad w_\lambda = \frac{z + \lambda c}{1+\lambda},

with one scalar :math:`\sigma` per row: without an active mean constraint :math:`(1+\lambda)\sigma =
\lambda\,\mathrm{mean}(y_\lambda)` (an increasing piecewise-linear equation, slope ≥ 1); if the mean that
gives lies outside :math:`[lo, hi]`, :math:`\sigma` is instead the root of :math:`\mathrm{mean}(y_\lambda) =`
the nearer end (non-decreasing, piecewise linear).  Both roots are found by safeguarded Newton, each step
the exact root on the current active set (so it ends exactly), bisection where a step leaves the bracket.
:math:`\psi(\lambda) = \|Py_\lambda - c\|` is non-increasing in :math:`\lambda`; if :math:`\psi(0) \le r`
the answer is :math:`y_0` (the projection onto :math:`C` already lies in the ball), else the outer search
finds :math:`\psi(\lambda) = r` on :math:`h(\lambda) = 1/\psi(\lambda) - 1/r`, which is *linear* in
:math:`\lambda` when the box is inactive (then :math:`Py_\lambda - c = (Pz - c)/(1+\lambda)`): the first
step (:math:`\lambda = \psi(0)/r - 1`) is then exact, and with the box active
the secant of h through the last two iterates (bisection where it leaves the bracket) refines it.

**Certificate.**  :math:`d(\lambda) = L_\lambda(y_\lambda)` is a lower bound on the optimum for every
:math:`\lambda \ge 0` (weak duality); the returned point :math:`\hat y` is made exactly feasible by moving it
toward the anchor :math:`x` (feasible) until it meets the ball (:func:`solvers.closed_form.backtrack_into_ball`,
a no-op when it is inside), so :math:`\tfrac12\|\hat y - z\|^2` is an upper bound.  The objective is
1-strongly convex, so :math:`\|\hat y - y^\star\| \le \sqrt{2\,\mathrm{gap}}`: ``distance_bound`` certifies
how far the returned point can be from the true projection, and a row is ``ok`` when that bound is
≤ ``tol`` · max(1, ‖z − ŷ‖) and the point is feasible to :func:`feasibility_tol`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from .checks import check_positive_int, check_real
from .closed_form import backtrack_into_ball
from .rows import from_rows, to_rows
from .ssim_ball import ball_parameters, check_eps, ssim_ball

__all__ = ["ProjectionResult", "project_ssim_ball", "project_ssim_ball_rows", "cvxpy_project_ssim_ball",
           "PROJECTION_TOL"]

#: default certified relative distance to the exact projection (‖ŷ − y*‖ ≤ tol · max(1, ‖z − ŷ‖))
PROJECTION_TOL = 1e-6


@dataclass
class ProjectionResult:
    """Output of :func:`project_ssim_ball`, one entry per image of the batch (channels combined).

    Attributes:
        y: (B, N) tensor, the projection (pixels within ``bounds`` exactly, inside the SSIM ball).
        distance: (B,) ‖z − y‖ (over all channels).
        distance_bound: (B,) certified bound on ‖y − y*‖ (y* the exact projection), √(2·gap), over channels.
        multiplier: (B,) the ball multiplier λ (largest over channels; 0: the ball is inactive).
        violation: (B,) largest constraint violation of ``y`` (ball relative to max(1, r), mean absolute).
        iterations: (B,) outer iterations (largest over channels).
        ok: (B,) bool — every channel row certified (distance bound ≤ tol · max(1, ‖z − y‖), feasible).
    """

    y: tf.Tensor
    distance: tf.Tensor
    distance_bound: tf.Tensor
    multiplier: tf.Tensor
    violation: tf.Tensor
    iterations: tf.Tensor
    ok: tf.Tensor


def feasibility_tol(dtype):
    """Constraint tolerance of the projection: 1e-9 (float64) or 1e-4 (float32)."""
    return 1e-9 if tf.as_dtype(dtype) == tf.float64 else 1e-4


def _clip_stats(w, sigma, b0, b1):
    """At ``clip(w + σ)``: the mean, the count of free entries, and the constant part of the mean on that
    active set (``mean = (S_free + n_free·σ + n_up·b1 + n_low·b0) / N``)."""
    dt = w.dtype
    n = tf.cast(tf.shape(w)[1], dt)
    v = w + sigma[:, None]
    free = (v > b0) & (v < b1)
    up = v >= b1
    n_free = tf.reduce_sum(tf.cast(free, dt), 1)
    n_up = tf.reduce_sum(tf.cast(up, dt), 1)
    const = (tf.reduce_sum(tf.where(free, w, 0.0), 1) + n_up * b1 + (n - n_free - n_up) * b0) / n
    mean = tf.reduce_mean(tf.clip_by_value(v, b0, b1), 1)
    return mean, n_free / n, const


def _monotone_root(w, a, b, c, lo, hi, active, b0, b1, max_iter, start=None):
    """σ per row with φ(σ) = a·σ + b·mean(clip(w + σ, b0, b1)) − c = 0, φ non-decreasing, in [lo, hi]
    (φ(lo) ≤ 0 ≤ φ(hi)).  Safeguarded Newton: the candidate is the exact root of φ on the active set at σ,
    taken when it lies inside the bracket, else the bracket's midpoint; a row stops when the candidate no
    longer moves (σ's active set is the root's) or its bracket has shrunk to rounding.  Rows with
    ``active`` False return ``lo``.  a, b, c, lo, hi: (B,); ``start``: optional (B,) first guess (a warm
    start: the root of a nearby problem), else 0 clipped to the bracket."""
    dt = w.dtype
    tiny = tf.constant(4 * np.finfo(dt.as_numpy_dtype).eps, dt)

    def candidate(sig):
        mean, frac_free, const = _clip_stats(w, sig, b0, b1)
        phi = a * sig + b * mean - c
        slope = a + b * frac_free
        root = tf.math.divide_no_nan(c - b * const, slope)
        return phi, slope, root

    def body(i, sig, lo_s, hi_s, done):
        phi, slope, root = candidate(sig)
        lo_s = tf.where(done | (phi > 0), lo_s, sig)
        hi_s = tf.where(done | (phi < 0), hi_s, sig)
        inside = (slope > 0) & (root >= lo_s) & (root <= hi_s)
        nxt = tf.where(inside, root, 0.5 * (lo_s + hi_s))
        scale = 1.0 + tf.abs(sig)
        fixed = (phi == 0) | (inside & (tf.abs(root - sig) <= tiny * scale))
        done = done | fixed | (hi_s - lo_s <= tiny * scale)
        return i + 1, tf.where(done, tf.where(fixed & inside, root, sig), nxt), lo_s, hi_s, done

    sig0 = tf.clip_by_value(tf.zeros_like(lo) if start is None else start, lo, hi)
    _, sig, lo_s, hi_s, _ = tf.while_loop(
        lambda i, s, lo_, hi_, d: (i < max_iter) & tf.logical_not(tf.reduce_all(d)), body,
        (tf.constant(0), sig0, lo, hi, tf.logical_not(active)))
    # the exact root on the final active set, kept when it stays inside the bracket
    _, slope, root = candidate(sig)
    ok = (slope > 0) & (root >= lo_s) & (root <= hi_s)
    sig = tf.where(ok, root, sig)
    return tf.where(active, sig, lo)


def _minimise_lagrangian(z, c, lam, lo_mean, hi_mean, b0, b1, max_inner, start=None):
    """y_λ = argmin over box ∩ mean slab of ½‖y − z‖² + λ/2 ‖Py − c‖² (rows), ψ(λ) = ‖Py_λ − c‖ and the shift
    σ (``start``: a warm start for σ, e.g. the previous λ's)."""
    w = (z + lam[:, None] * c) / (1.0 + lam[:, None])
    # free mean: (1 + λ)σ − λ·mean(clip(w + σ)) = 0, σ ∈ [λ b0, λ b1] / (1 + λ); not needed when the mean is
    # fixed (ε1 = 0: lo = hi) or λ = 0 (σ = 0)
    free = (lam > 0) & (lo_mean < hi_mean)
    sig_free = _monotone_root(w, 1.0 + lam, -lam, tf.zeros_like(lam), lam * b0 / (1.0 + lam),
                              lam * b1 / (1.0 + lam), free, b0, b1, max_inner, start)
    sig_free = tf.where(free, sig_free, tf.zeros_like(lam))
    mean_free = tf.reduce_mean(tf.clip_by_value(w + sig_free[:, None], b0, b1), 1)
    target = tf.clip_by_value(mean_free, lo_mean, hi_mean)
    move = tf.not_equal(target, mean_free)
    # mean at the nearer end of the interval: mean(clip(w + σ)) = target, σ ∈ [b0 − max w, b1 − min w]
    sig_end = _monotone_root(w, tf.zeros_like(lam), tf.ones_like(lam), target, b0 - tf.reduce_max(w, 1),
                             b1 - tf.reduce_min(w, 1), move, b0, b1, max_inner, start)
    sig = tf.where(move, sig_end, sig_free)
    y = tf.clip_by_value(w + sig[:, None], b0, b1)
    psi = tf.norm(y - tf.reduce_mean(y, 1, keepdims=True) - c, axis=1)
    return y, psi, sig


def _project_rows(z, x, eps2, eps1, b0, b1, max_outer, max_inner, rtol):
    """The projection of rows ``z`` (R, N) for anchors ``x`` (R, N): (y, λ, distance², gap, violation,
    iterations); see the module docstring."""
    dt = z.dtype
    _, c, r, lo_mean, hi_mean = ball_parameters(x, eps2, eps1)
    lo_mean = tf.maximum(lo_mean, b0)
    hi_mean = tf.minimum(hi_mean, b1)
    zero = tf.zeros_like(r)
    y0, psi0, sig0 = _minimise_lagrangian(z, c, zero, lo_mean, hi_mean, b0, b1, max_inner)
    need = psi0 > r
    inf = tf.constant(np.inf, dt)

    def body(i, lam, lam_lo, lam_hi, lam_prev, h_prev, done, lam_best, y_best, psi_best, sig_prev):
        y, psi, sig = _minimise_lagrangian(z, c, lam, lo_mean, hi_mean, b0, b1, max_inner, sig_prev)
        h = 1.0 / tf.maximum(psi, tf.constant(1e-300, dt)) - 1.0 / r
        feasible = psi <= r
        conv = tf.abs(psi - r) <= rtol * r
        upd = tf.logical_not(done)
        # the point kept: the latest feasible one (the bracket's upper end only moves down, towards the root),
        # or the latest one while none is feasible, or a converged one
        better = upd & (feasible | conv | tf.math.is_inf(lam_hi))
        lam_best = tf.where(better, lam, lam_best)
        y_best = tf.where(better[:, None], y, y_best)
        psi_best = tf.where(better, psi, psi_best)
        lam_lo = tf.where(upd & tf.logical_not(feasible), lam, lam_lo)
        lam_hi = tf.where(upd & feasible, lam, lam_hi)
        done = done | conv
        # next λ: the secant of h through the last two points (h is linear without the box: then exact),
        # kept when it falls strictly inside the bracket [λ_lo, λ_hi]; else bisection (doubling while no
        # feasible λ is known)
        secant = lam - h * (lam - lam_prev) / (h - h_prev)
        bracketed = tf.logical_not(tf.math.is_inf(lam_hi))
        ok_next = (secant > lam_lo) & (secant < lam_hi) & tf.math.is_finite(secant)
        mid = tf.where(bracketed, 0.5 * (lam_lo + lam_hi), 2.0 * lam_lo + 1.0)
        nxt = tf.where(ok_next, secant, mid)
        stuck = bracketed & (lam_hi - lam_lo <= 4 * np.finfo(dt.as_numpy_dtype).eps * (1.0 + lam_hi))
        done = done | stuck
        return (i + 1, tf.where(done, lam, nxt), lam_lo, lam_hi, lam, h, done, lam_best, y_best, psi_best, sig)

    # the first step: the root of the linear model of h through (0, h(0)) with slope 1/ψ(0), exact without the box
    lam1 = tf.where(need, psi0 / r - 1.0, zero)
    init = (tf.constant(0), lam1, zero, tf.fill(tf.shape(r), inf), zero, 1.0 / tf.maximum(psi0, 1e-300) - 1.0 / r,
            tf.logical_not(need), zero, y0, psi0, sig0 * (1.0 + lam1))
    iters, lam, lam_lo, lam_hi, _, _, done, lam_best, y_lam, psi_lam, _ = tf.while_loop(
        lambda i, *s: (i < max_outer) & tf.logical_not(tf.reduce_all(s[5])), body, init)
    # a feasible point: back along the segment to the anchor (x is in the box, the slab and the ball)
    y_hat = backtrack_into_ball(x, y_lam, c, r)
    y_hat = tf.clip_by_value(y_hat, b0, b1)
    # gap = ½‖ŷ − z‖² − L_λ(y_λ) without forming the two large squares: ½(ŷ − y_λ)·(ŷ + y_λ − 2z) − λ/2(ψ² − r²)
    gap = 0.5 * tf.reduce_sum((y_hat - y_lam) * (y_hat + y_lam - 2.0 * z), 1) - 0.5 * lam_best * (psi_lam**2 - r**2)
    gap = tf.where(need, gap, zero)
    dist2 = tf.reduce_sum((y_hat - z) ** 2, 1)
    my = tf.reduce_mean(y_hat, 1)
    ball = tf.maximum(tf.norm(y_hat - my[:, None] - c, axis=1) - r, 0.0) / tf.maximum(r, 1.0)
    mean_v = tf.maximum(tf.maximum(lo_mean - my, my - hi_mean), 0.0)
    violation = tf.maximum(ball, mean_v)
    return y_hat, lam_best, dist2, tf.maximum(gap, 0.0), violation, tf.fill(tf.shape(r), iters)


@tf.function(reduce_retracing=True)
def _project_images(z, x, eps2, eps1, b0, b1, tol, channels, max_outer=100, max_inner=100):
    """Images (B, N) channels-last, one ball per channel: the graph behind :func:`project_ssim_ball`."""
    dt = z.dtype
    rtol = tf.constant(1e-13 if dt == tf.float64 else 1e-6, dt)
    y, lam, dist2, gap, viol, iters = _project_rows(to_rows(z, channels), to_rows(x, channels), eps2, eps1, b0, b1,
                                                    tf.constant(max_outer), tf.constant(max_inner), rtol)
    bound = tf.sqrt(2.0 * gap)
    ok_rows = (bound <= tol * tf.maximum(tf.sqrt(dist2), 1.0)) & (viol <= feasibility_tol(dt))

    def per_image(a, op=tf.reduce_sum):
        return op(tf.reshape(a, (-1, channels)), 1)

    return {"y": from_rows(y, channels), "distance": tf.sqrt(per_image(dist2)),
            "distance_bound": tf.sqrt(per_image(2.0 * gap)), "multiplier": per_image(lam, tf.reduce_max),
            "violation": per_image(viol, tf.reduce_max), "iterations": per_image(iters, tf.reduce_max),
            "ok": per_image(ok_rows, tf.reduce_all)}


def project_ssim_ball_rows(z, x, eps2, eps1, bounds, channels, tol=PROJECTION_TOL):
    """Graph entry point (no Python checks): tensors ``z``, ``x`` (B, N) float64, ``eps2``/``eps1`` tensors or
    variables, ``channels`` a Python int. Returns the dict of :class:`ProjectionResult`'s fields."""
    dt = z.dtype
    return _project_images(z, tf.cast(x, dt), tf.cast(eps2, dt), tf.cast(eps1, dt), tf.constant(bounds[0], dt),
                           tf.constant(bounds[1], dt), tf.constant(tol, dt), channels)


def project_ssim_ball(z, x, eps2, eps1=0.0, bounds=(0.0, 1.0), channels=1, dtype=tf.float64, tol=PROJECTION_TOL):
    """Exact Euclidean projection of ``z`` onto the SSIM ball of ``x`` ∩ the pixel box, batched, certified.

    Args:
        z: (B, N) float array or tensor, the points to project (any real values; channels-last flattening).
        x: (B, N) float array or tensor, the anchor images, pixels in ``bounds``.
        eps2: S2 radius ε in (0, 1) (S2(x, y) ≥ 1 − ε²; Pochimireddy et al., Eq. 5).
        eps1: S1 radius in [0, 1); 0 fixes the mean (Eq. 9).
        bounds: pixel box (b0, b1), default (0, 1).
        channels: C ≥ 1; C > 1 projects each colour channel onto its own SSIM ball (the problem separates).
        dtype: ``tf.float64`` (default) or ``tf.float32``.
        tol: certified relative distance (> 0): a row is ``ok`` when ‖ŷ − y*‖ ≤ tol · max(1, ‖z − ŷ‖).

    Returns:
        :class:`ProjectionResult` (tensors of ``dtype``).

    Raises:
        ValueError / TypeError: shapes, radii, ``channels``, ``tol`` or ``dtype`` out of range; NaN/Inf in
            ``z`` or ``x``.
    """
    eps2, eps1 = check_eps(eps2, eps1)
    tol = check_real(tol, "tol", 0.0, None)
    channels = check_positive_int(channels, "channels")
    dtype = tf.as_dtype(dtype)
    if dtype not in (tf.float32, tf.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype.name}")
    z = tf.cast(tf.convert_to_tensor(z), dtype)
    x = tf.cast(tf.convert_to_tensor(x), dtype)
    if z.shape.rank != 2 or x.shape.rank != 2 or z.shape != x.shape:
        raise ValueError(f"z and x must have the same shape (B, N), got {z.shape} and {x.shape}")
    if int(x.shape[1]) % channels:
        raise ValueError(f"N={int(x.shape[1])} is not divisible by channels={channels}")
    for name, a in (("z", z), ("x", x)):
        if not bool(tf.reduce_all(tf.math.is_finite(a))):
            raise ValueError(f"{name} contains NaN or Inf")
    if bool(tf.reduce_any((x < bounds[0]) | (x > bounds[1]))):
        raise ValueError(f"x has pixels outside {list(bounds)}")
    r = project_ssim_ball_rows(z, x, tf.constant(eps2, dtype), tf.constant(eps1, dtype), bounds, channels, tol)
    return ProjectionResult(**r)


def cvxpy_project_ssim_ball(z, x, eps2, eps1=0.0, bounds=(0.0, 1.0), solver="CLARABEL"):
    """The same projection by CVXPY (the reference; one problem per row, no channels): (B, N) NumPy → (B, N).

    Clarabel runs at tolerances 1e-11; a row where it reports ``optimal_inaccurate`` (a feasible set that is a
    single point, e.g. a black image with a fixed mean) is returned as it is: compare such rows loosely.

    Raises:
        RuntimeError: the solver reports no optimum for a row.
    """
    import cvxpy as cp

    z = np.asarray(z, np.float64)
    x = np.asarray(x, np.float64)
    ball = ssim_ball(x, eps2, eps1)
    out = np.empty_like(z)
    for i in range(len(z)):
        y = cp.Variable(z.shape[1])
        m = cp.sum(y) / z.shape[1]
        cons = [y >= bounds[0], y <= bounds[1], cp.norm(y - m - ball.centre[i]) <= ball.radius[i],
                m >= ball.mean_low[i], m <= ball.mean_high[i]]
        prob = cp.Problem(cp.Minimize(cp.norm(y - z[i])), cons)  # same minimiser, a better-conditioned cone
        opts = {"tol_gap_abs": 1e-11, "tol_gap_rel": 1e-11, "tol_feas": 1e-11} if solver == "CLARABEL" else {}
        with warnings.catch_warnings():  # "Solution may be inaccurate": the status says it, see above
            warnings.simplefilter("ignore", UserWarning)
            prob.solve(solver=solver, **opts)
        if prob.status not in ("optimal", "optimal_inaccurate") or y.value is None:
            raise RuntimeError(f"CVXPY ({solver}) returned {prob.status} on row {i}")
        out[i] = y.value
    return out
