r"""FPGAP's closed-form step (TensorFlow, batched, GPU-ready).

Without the pixel box, maximising :math:`g\cdot y` over the SSIM ball has a
closed form (the paper's Eq. 10).  Since :math:`g\cdot y = N\mu_y\bar g +
\tilde g\cdot\tilde y` for zero-mean :math:`\tilde y`, the maximiser is

.. math::

    y^\star = \mu^\star\mathbf 1 + \eta\tilde x + r\,\tilde g/\|\tilde g\|,

with :math:`\tilde g = g - \bar g\mathbf 1` the gradient projected onto
zero-mean vectors, and :math:`\mu^\star = \mu_x` when :math:`\varepsilon_1 = 0`
(otherwise the end of the S1 interval that :math:`\bar g` points to).  The
paper writes the step with the raw gradient :math:`g`; that point leaves the
mean constraint unless :math:`\bar g = 0`, and is kept as
``project_gradient=False`` for reproduction.

With the box active, :math:`y^\star` may leave :math:`[0,1]^N`.  With
``box="restore"`` (default) the step is made feasible, exactly, in two moves:

1. Euclidean projection of :math:`y^\star` onto the box intersected with the
   allowed mean interval: :math:`w = \mathrm{clip}(y^\star - \tau, lo, hi)`
   with the scalar :math:`\tau` found by safeguarded Newton (bisection where a
   Newton step leaves the bracket) and then solved exactly on the identified active set (the projection onto a box and a hyperplane is
   this one-dimensional monotone problem);
2. the largest :math:`t \in [0,1]` with :math:`x + t(w - x)` inside the S2
   ball (a quadratic in :math:`t`).  Both :math:`x` and :math:`w` satisfy the
   box and mean constraints, so the whole segment does.

The result is always feasible, and equals the exact maximiser whenever the
box is inactive (then :math:`w = y^\star`, :math:`t = 1`).  ``box="clip"`` is
the plain clipping of the paper's implementation (may leave the ball),
``box="ignore"`` returns :math:`y^\star` untouched.
"""

from __future__ import annotations

import tensorflow as tf

from .ssim_ball import C1, C2, ball_parameters

__all__ = ["closed_form_step", "project_box_mean", "backtrack_into_ball"]


def project_box_mean(z, mean_low, mean_high, bounds=(0.0, 1.0), iters=None):
    """Euclidean projection of rows of ``z`` (B, N) onto {b0 ≤ y ≤ b1, mean(y) ∈ [low, high]}.

    The projection is ``clip(z - τ, b0, b1)`` with ``τ`` the root of the monotone piecewise-linear
    m(τ) = mean(clip(z − τ)) − target.  Safeguarded Newton finds it: the Newton step from τ is the exact
    root on τ's active set (slope −n_free / N), taken when it stays inside the bracket that every evaluation
    narrows, else the bracket's midpoint (bisection).  A row stops when its Newton step no longer moves
    (its active set is the root's) or its bracket has shrunk to rounding; the loop ends when every row has
    stopped, after at most ``iters`` evaluations (default 64 in float64, 32 in float32: bisection's worst
    case).  A final exact solve on the active set removes any remaining bracket error, as before.
    """
    z = tf.convert_to_tensor(z)
    dt = z.dtype
    b0, b1 = tf.constant(bounds[0], dt), tf.constant(bounds[1], dt)
    if iters is None:
        iters = 64 if dt == tf.float64 else 32
    tiny = tf.constant(1e-14 if dt == tf.float64 else 1e-6, dt)
    n = tf.cast(tf.shape(z)[1], dt)
    m0 = tf.reduce_mean(tf.clip_by_value(z, b0, b1), 1)
    target = tf.clip_by_value(m0, mean_low, mean_high)
    # bracket: at τ = min(z) - (b1 - b0) all pixels are at b1, at τ = max(z) - b0 all at b0
    lo_tau = tf.reduce_min(z, 1) - (b1 - b0)
    hi_tau = tf.reduce_max(z, 1) - b0
    needs = tf.abs(m0 - target) > 0  # rows already inside the mean interval: τ = 0

    def body(i, lo_t, hi_t, tau, done):
        shifted = z - tau[:, None]
        m = tf.reduce_mean(tf.clip_by_value(shifted, b0, b1), 1)
        n_free = tf.reduce_sum(tf.cast((shifted > b0) & (shifted < b1), dt), 1)
        # mean is non-increasing in τ: too high a mean → the root is above τ
        go_up = m > target
        lo_t = tf.where(done, lo_t, tf.where(go_up, tau, lo_t))
        hi_t = tf.where(done, hi_t, tf.where(go_up, hi_t, tau))
        newton = tau + (m - target) * n / tf.maximum(n_free, 1.0)
        inside = (n_free > 0) & (newton > lo_t) & (newton < hi_t)
        nxt = tf.where(inside, newton, 0.5 * (lo_t + hi_t))
        scale = 1.0 + tf.abs(tau)
        fixed = (n_free > 0) & (tf.abs(newton - tau) <= tiny * scale)  # τ's active set is the root's
        done = done | fixed | (hi_t - lo_t <= tiny * scale)
        return i + 1, lo_t, hi_t, tf.where(done, tau, nxt), done

    tau0 = tf.clip_by_value(tf.zeros_like(lo_tau), lo_tau, hi_tau)  # start at z itself: most pixels free
    _, lo_tau, hi_tau, tau, _ = tf.while_loop(
        lambda i, a, b, t, d: (i < iters) & tf.logical_not(tf.reduce_all(d)), body,
        (tf.constant(0), lo_tau, hi_tau, tau0, tf.logical_not(needs)))
    # exact τ on the active set at τ (confirmed when it stays inside the bracket)
    shifted = z - tau[:, None]
    free = (shifted > b0) & (shifted < b1)
    upper = shifted >= b1
    n_free = tf.reduce_sum(tf.cast(free, dt), 1)
    sum_free = tf.reduce_sum(tf.where(free, z, 0.0), 1)
    n_upper = tf.reduce_sum(tf.cast(upper, dt), 1)
    n_lower = n - n_free - n_upper
    exact_tau = (sum_free + n_upper * b1 + n_lower * b0 - n * target) / tf.maximum(n_free, 1.0)
    ok = (n_free > 0) & (exact_tau >= lo_tau - 1e-12) & (exact_tau <= hi_tau + 1e-12)
    tau = tf.where(ok, exact_tau, tau)
    tau = tf.where(needs, tau, tf.zeros_like(tau))
    return tf.clip_by_value(z - tau[:, None], b0, b1)


def backtrack_into_ball(x, w, centre, radius):
    """Largest ``t`` in [0, 1] with ``x + t (w - x)`` in the S2 ball; returns that point.

    ``x`` must lie in the ball (it is its anchor).  Shapes: x, w, centre (B, N); radius (B,).
    """
    xt = x - tf.reduce_mean(x, 1, keepdims=True)
    wt = w - tf.reduce_mean(w, 1, keepdims=True)
    a = xt - centre
    d = wt - xt
    dd = tf.reduce_sum(d * d, 1)
    ad = tf.reduce_sum(a * d, 1)
    aa = tf.reduce_sum(a * a, 1)
    disc = tf.maximum(ad**2 - dd * (aa - radius**2), 0.0)
    safe_dd = tf.where(dd > 0, dd, tf.ones_like(dd))
    t = tf.where(dd > 0, (-ad + tf.sqrt(disc)) / safe_dd, tf.ones_like(dd))
    t = tf.clip_by_value(t, 0.0, 1.0)
    return x + t[:, None] * (w - x)


def closed_form_step(g, x, eps2, eps1=0.0, bounds=(0.0, 1.0), project_gradient=True,
                     box="restore", c1=C1, c2=C2):
    """FPGAP step: maximiser of ``g·y`` over the SSIM ball around ``x`` (Eq. 10).

    Args:
        g: (B, N) float tensor, gradient of the loss at the current iterate.
        x: (B, N) float tensor, anchor images (pixels within ``bounds``).
        eps2: S2 radius in (0, 1); eps1: S1 radius in [0, 1).
        project_gradient: use g − mean(g) (exact, feasible) instead of the
            paper's literal g.
        box: ``"restore"`` (exactly feasible, see module doc), ``"clip"`` or ``"ignore"``.

    Returns:
        (B, N) tensor of the same dtype.  A row whose (projected) gradient is zero
        has no preferred direction: it returns ``x`` itself, shifted to the end of
        the S1 interval that a non-zero mean gradient points to (``x`` exactly when
        ε1 = 0), as the exact solver does.

    Raises:
        ValueError: unknown ``box``.
    """
    if box not in ("restore", "clip", "ignore"):
        raise ValueError(f"box must be 'restore', 'clip' or 'ignore', got {box!r}")
    g = tf.convert_to_tensor(g)
    x = tf.convert_to_tensor(x, dtype=g.dtype)
    mean, centre, radius, lo, hi = ball_parameters(x, eps2, eps1, c1, c2)
    gbar = tf.reduce_mean(g, 1)
    d = g - gbar[:, None] if project_gradient else g
    norm = tf.norm(d, axis=1)
    unit = tf.math.divide_no_nan(d, norm[:, None])
    mu = tf.where(gbar > 0, hi, tf.where(gbar < 0, lo, mean))
    # zero direction: keep x's own zero-mean part (x̃, inside the ball) instead of the centre ηx̃
    base = tf.where((norm > 0)[:, None], centre, x - mean[:, None])
    y = mu[:, None] + base + radius[:, None] * unit
    b0, b1 = tf.constant(bounds[0], y.dtype), tf.constant(bounds[1], y.dtype)
    if box == "clip":
        y = tf.clip_by_value(y, b0, b1)
    elif box == "restore":
        y = backtrack_into_ball(x, project_box_mean(y, lo, hi, bounds), centre, radius)
    # no direction and no mean shift: x itself, bit for bit (μ + (x − μ) can round)
    return tf.where(((norm == 0) & tf.equal(mu, mean))[:, None], x, y)
