r"""The conditional-gradient (Frank–Wolfe) loop shared by the ℓ1-q / ℓ2 Frank–Wolfe attacks and the
counterfactual explainers (TensorFlow, graph-pure; no Keras).

For a differentiable objective f of images (maximised) and a :class:`~solvers.oracles.LinearOracle` over a
convex set D of perturbations anchored at x₀:

.. math::

    \delta_0 = 0,\qquad s_k = \arg\max_{s \in D} \nabla f(x_0 + \delta_k)\cdot s,\qquad
    \delta_{k+1} = (1 - \gamma_k)\,\delta_k + \gamma_k s_k,\qquad \gamma_k = \frac{c}{c + k},

the update of Roberts & Tsiligkaridis' code (and of MIT-LL's ``rai-toolbox``).  :math:`\gamma_0 = 1`, so
:math:`\delta_1 = s_0`; every iterate is a convex combination of oracle answers and lies in D (up to the
rounding of the oracle's dtype and of float32 images: about 1e-7 relative).  (The paper's
printed Algorithm 2 — :math:`\delta \leftarrow \delta + (1 - \gamma)\bar\delta` with :math:`\bar\delta` of
unit ℓ1 norm, ε unused — is not a Frank–Wolfe step: it leaves the ball; we follow the code.)

``box``: ``"exact"`` — the oracle answers inside the pixel box (its ``respects_box``) and the iterate is only
clipped against float rounding; ``"clip"`` — the oracle ignores the box and each iterate is clipped to it
(which only shrinks |δ_i|, so the ball still holds); ``"none"`` — no box at all.
"""

from __future__ import annotations

import tensorflow as tf

from .checks import check_choice, check_positive_int, check_real

__all__ = ["frank_wolfe", "FW_BOXES", "check_fw_options", "step_sizes"]

#: how a Frank–Wolfe loop treats the pixel box
FW_BOXES = ("exact", "clip", "none")


def check_fw_options(steps, c, box):
    """Validated (steps ≥ 1, c > 0, box in :data:`FW_BOXES`).

    Raises:
        ValueError / TypeError: naming the argument.
    """
    return (check_positive_int(steps, "steps"), check_real(c, "c (FW step size γ_k = c / (c + k))", 0.0, None),
            check_choice(box, "box", FW_BOXES))


def step_sizes(steps, c):
    """γ_k = c / (c + k) for k = 0 … steps − 1 (a NumPy-free list of floats, for docs and tests)."""
    return [c / (c + k) for k in range(steps)]


def frank_wolfe(gradient, x0, oracle, steps, c=2.0, box="exact", bounds=(0.0, 1.0), counts=None, record=False):
    """Run ``steps`` Frank–Wolfe steps from δ = 0 (see the module docstring).

    Args:
        gradient: callable ``(x, k) -> g``: the gradient of the maximised objective at images ``x`` (B, …)
            float32 (same shape), at step ``k`` (int32 scalar tensor).
        x0: (B, …) float32 anchor images (pixels in ``bounds``).
        oracle: a :class:`~solvers.oracles.LinearOracle` (its rows are the images flattened); with
            ``counts`` it must offer ``maximize_k`` (:class:`~solvers.norm_balls.L1QOracle`).
        steps: int ≥ 1 (static).
        c: γ_k = c / (c + k), c > 0.
        box: ``"exact"``, ``"clip"`` or ``"none"``.
        counts: optional ``(k) -> ((B,) int32, k_max)``: per-row entry counts for ``oracle.maximize_k`` at step k
            (the ℓ1-q attacks' ``q_jitter``).
        record: also return every iterate.

    Returns:
        dict of tensors: ``x`` (B, …) the last iterate x₀ + δ_T; ``failed`` (B,) bool (the oracle could not
        certify a step at that image — its answer is not used, the image keeps its previous iterate from there
        on, and the caller reports it); ``iterates`` (T, B, …) when ``record`` (else an empty tensor).
    """
    b0, b1 = bounds
    shape = tf.shape(x0)
    n_img = shape[0]
    x0_rows = tf.reshape(x0, (n_img, -1))
    c = tf.constant(float(c), tf.float32)

    def body(k, delta, failed, history):
        x = _place(x0, delta, box, b0, b1)
        g = tf.reshape(gradient(x, k), (n_img, -1))
        if counts is None:
            r = oracle(g, x0_rows, report=False)
        else:
            kk, k_max = counts(k)
            r = oracle.maximize_k(tf.cast(g, oracle.dtype), tf.cast(x0_rows, oracle.dtype), kk, k_max, report=False)
        s = tf.reshape(tf.cast(r.y, tf.float32), shape) - x0
        gamma = c / (c + tf.cast(k, tf.float32))
        new = (1.0 - gamma) * delta + gamma * s
        ok = r.ok & tf.logical_not(failed)
        delta = tf.ensure_shape(tf.where(tf.reshape(ok, [-1] + [1] * (len(x0.shape) - 1)), new, delta), x0.shape)
        failed = tf.ensure_shape(failed | tf.logical_not(r.ok), x0.shape[:1])
        if record:
            history = history.write(k, _place(x0, delta, box, b0, b1))
        return k + 1, delta, failed, history

    history = tf.TensorArray(tf.float32, size=steps if record else 0, element_shape=x0.shape if record else None)
    _, delta, failed, history = tf.while_loop(
        lambda k, *_: k < steps, body,
        (tf.constant(0), tf.zeros_like(x0), tf.zeros((n_img,), tf.bool), history))
    return {"x": _place(x0, delta, box, b0, b1), "failed": failed,
            "iterates": history.stack() if record else tf.zeros((0,), tf.float32)}


def _place(x0, delta, box, b0, b1):
    x = x0 + delta
    return x if box == "none" else tf.clip_by_value(x, b0, b1)
