"""Perceptually guided attacks: PGAP (Algorithm 1) and FPGAP (Algorithm 2) on one conditional-gradient loop.

Pochimireddy, Siripuram & Channappayya, "Can Perceptual Guidance Lead to
Semantically Explainable Adversarial Perturbations?".  At step k both attacks
take the gradient g_k of the loss at the current iterate x_k and move to

    x_{k+1} = argmax_{y ∈ B(x_0) ∩ [0,1]^N}  g_k · y,

the maximiser of the linearised loss over the SSIM ball anchored at the
*original* image x_0, so every iterate satisfies S2(x_0, x_k) ≥ 1 − ε² (and
S1 ≥ 1 − ε1², or μ fixed when ε1 = 0).  A sample stops at the first step where
its label changes (or reaches the target).

The two attacks are one loop (:class:`SSIMBallAttack`) that differs only in its
:class:`solvers.LinearOracle`:

* :class:`PGAP` — the exact maximiser, by the project's batched solver
  (``solver="exact"``, certified by a duality gap) or by CVXPY (``"cvxpy"``,
  ``"ECOS"``, ``"CLARABEL"``: the reference, through ``tf.numpy_function``);
* :class:`FPGAP` — the closed form of Eq. 10 (:mod:`solvers.closed_form`).

The whole loop is one ``tf.function``: only the images still running are
gathered, stepped and scattered back.  Colour images: with ``per_channel=True``
(default) each colour channel has its own SSIM ball; with ``False`` the whole
image is one vector.
"""

from __future__ import annotations

import tensorflow as tf

from solvers.checks import FixedOptions
from solvers.exact import GAP_TOL
from solvers.oracles import ClosedFormSSIMOracle, CvxpySSIMOracle, cvxpy_solver_names, ssim_ball_oracle

from ..models.adapter import as_logits_model
from ..validation import check_choice, check_positive_int, check_real
from .base import Attack
from .objectives import LOSSES, attack_logits_and_gradient
from .registry import register_attack

__all__ = ["SSIMBallAttack", "PGAP", "FPGAP", "PGAP_SOLVERS", "pgap_solvers"]

def pgap_solvers():
    """PGAP's step solvers here: ``"exact"``, ``"cvxpy"`` and the installed CVXPY solvers of second-order cone
    problems (a name selects CVXPY with that solver only)."""
    return ("exact", "cvxpy", *cvxpy_solver_names())


#: PGAP's step solvers with this project's dependencies (:func:`pgap_solvers` says what is installed)
PGAP_SOLVERS = ("exact", "cvxpy", "ECOS", "CLARABEL")


def _eps(value):
    return check_real(value, "eps (S2 radius ε)", 0.0, 1.0)


def _eps_luminance(value):
    return check_real(value, "eps_luminance (S1 radius)", 0.0, 1.0, low_inclusive=True)


class SSIMBallAttack(Attack, FixedOptions):
    """The conditional-gradient loop of PGAP and FPGAP over an SSIM-ball :class:`solvers.LinearOracle`.

    Args:
        model: Keras classifier (see :class:`~tfperceptual.attacks.base.Attack`).
        oracle: a :class:`solvers.SSIMBallOracle` whose ``channels`` match ``per_channel``.
        steps: maximum number of steps (≥ 1; 50 in the paper).
        loss: ``"cw"`` (Carlini–Wagner margin, κ = ``confidence``) or ``"ce"``.
        confidence: κ of the CW loss (the paper's supplement: 50).
        batch_size: images per graph call of ``__call__``.
        early_stop: stop each sample at its first label change (paper); ``False`` runs every step.

    Raises:
        ValueError / TypeError: steps < 1, unknown loss, non-finite confidence, batch_size < 1.
    """

    eps_unit = "SSIM-ball radius ε (S2 ≥ 1 − ε²)"
    eps_range = (0.0, 1.0)

    def __init__(self, model, oracle, steps=50, loss="cw", confidence=50.0, batch_size=256, early_stop=True):
        super().__init__(model, batch_size)
        self.oracle = oracle
        self.steps = check_positive_int(steps, "steps")
        self.loss = check_choice(loss, "loss", LOSSES)
        self.confidence = check_real(confidence, "confidence")
        self.early_stop = bool(early_stop)
        self.graph_pure = oracle.graph_pure
        self._run = tf.function(self._run_impl, reduce_retracing=True)

    #: options read when the loop is traced: fixed once the attack is built (ε and ε1 are variables instead
    #: and can be assigned)
    _FIXED = ("steps", "loss", "confidence", "early_stop", "per_channel", "project_gradient", "box", "solver",
              "gap_tol", "oracle", "model", "bounds", "graph_pure")

    @staticmethod
    def _channels(model_shape, per_channel):
        c = model_shape[-1]
        if not per_channel:
            return 1
        if c is None:
            raise ValueError("per_channel=True needs a model with a known number of channels")
        return int(c)

    # ε and ε1 live in the oracle's tf.Variables: a sweep reuses one traced graph, and a graph traced before
    # an assignment (a user's tf.function, a train_step) follows it
    @property
    def eps(self) -> float:
        """S2 radius ε in (0, 1): every iterate has S2(x0, x) ≥ 1 − ε²."""
        return self.oracle.eps2

    @eps.setter
    def eps(self, value):
        self.oracle.eps2 = _eps(value)

    @property
    def eps_luminance(self) -> float:
        """S1 radius in [0, 1); 0 keeps the mean (Eq. 9)."""
        return self.oracle.eps1

    @eps_luminance.setter
    def eps_luminance(self, value):
        self.oracle.eps1 = _eps_luminance(value)

    def _logits_and_gradient(self, x, labels, targets, targeted):
        return attack_logits_and_gradient(self.model, x, labels, targets if targeted else None, self.loss,
                                          self.confidence)

    def _success(self, logits, labels, targets, targeted):
        pred = tf.argmax(logits, -1, output_type=labels.dtype)
        return (tf.equal(pred, targets) if targeted else tf.not_equal(pred, labels)), pred

    def _run_impl(self, x0, labels, targets, targeted, record, report, compact):
        """The loop on one batch. Python values that shape the graph: ``targeted``; ``record`` (keep the
        iterates); ``report`` (keep the per-image messages); ``compact`` (step only the images still running,
        gathered: finished images cost nothing). ``perturb`` runs with none of them: fixed shapes, no string
        op, no growing array, so an XLA-compiled ``train_step`` can contain it; it steps every image and keeps
        the update only where the image still runs, which gives the same iterates.

        Pass k takes the logits and the gradient of the iterates x_k in one forward + backward pass: the logits
        say which images already succeeded (early stop: they are not stepped), the gradient steps the others to
        x_{k+1}.  One forward pass after the loop reads the last iterates.  So a step costs one forward and one
        backward pass, the physical limit, not one more forward pass for the success test."""
        oracle = self.oracle
        n_img = tf.shape(x0)[0]
        x0_rows = tf.reshape(tf.cast(x0, oracle.dtype), (n_img, -1))
        done = tf.zeros_like(labels, dtype=tf.bool)
        pred = labels
        failed = tf.zeros_like(done)
        zero = tf.zeros_like(done)
        messages = tf.fill([n_img], "") if report else tf.zeros((0,), tf.bool)
        adv = x0
        steps = tf.zeros_like(labels, dtype=tf.int32)
        history = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
        b0, b1 = self.bounds
        for k in tf.range(self.steps):
            running = tf.logical_not(done | failed) if self.early_stop else tf.logical_not(failed)
            if not tf.reduce_any(running):
                break
            idx = tf.where(running)[:, 0] if compact else tf.range(tf.cast(n_img, tf.int64))
            at = idx[:, None]
            live = tf.gather(running, idx)  # all true when compact
            adv_a = tf.gather(adv, idx)
            lab_a, tgt_a, done_a = tf.gather(labels, idx), tf.gather(targets, idx), tf.gather(done, idx)
            logits, g = self._logits_and_gradient(adv_a, lab_a, tgt_a, targeted)
            succ, p = self._success(logits, lab_a, tgt_a, targeted)  # the reading of x_k
            pred = tf.tensor_scatter_nd_update(pred, at, tf.where(live, p, tf.gather(pred, idx)))
            done_now = (done_a | succ) if self.early_stop else succ
            done = tf.tensor_scatter_nd_update(done, at, tf.where(live, done_now, done_a))
            stepping = (live & tf.logical_not(done_now)) if self.early_stop else live
            flat_g = tf.reshape(g, (tf.shape(idx)[0], -1))
            # images that do not step get no direction: the oracle returns them at once
            flat_g = tf.where(stepping[:, None], flat_g, tf.zeros_like(flat_g))
            step = oracle(flat_g, tf.gather(x0_rows, idx), report)
            new = tf.reshape(tf.cast(step.y, tf.float32), tf.shape(adv_a))
            if oracle.respects_box:  # float64 → float32 rounding may step a hair outside the box
                new = tf.clip_by_value(new, b0, b1)
            ok = step.ok
            take = ok & stepping
            new = tf.where(take[:, None, None, None], new, adv_a)  # an uncertified step keeps the last iterate
            is_zero = tf.equal(k, 0) & tf.reduce_all(tf.equal(flat_g, 0.0), 1) & stepping
            adv = tf.tensor_scatter_nd_update(adv, at, new)
            failed = tf.tensor_scatter_nd_update(failed, at, tf.where(stepping, tf.logical_not(ok),
                                                                      tf.gather(failed, idx)))
            if report and step.message is not None:
                messages = tf.tensor_scatter_nd_update(messages, at, tf.where(take | ~stepping,
                                                                              tf.gather(messages, idx), step.message))
            zero = tf.tensor_scatter_nd_update(zero, at, tf.gather(zero, idx) | is_zero)
            steps = tf.tensor_scatter_nd_add(steps, at, tf.cast(take, tf.int32))
            if record:
                history = history.write(k, adv)
        # the last iterates' reading: one forward pass over the images stepped in the last pass
        last = tf.cast(steps, tf.bool) & tf.logical_not(done | failed) if self.early_stop else \
            tf.logical_not(failed)

        def read_last(pred=pred, done=done):
            idx = tf.where(last)[:, 0] if compact else tf.range(tf.cast(n_img, tf.int64))
            at = idx[:, None]
            live = tf.gather(last, idx)
            lab_a, tgt_a, done_a = tf.gather(labels, idx), tf.gather(targets, idx), tf.gather(done, idx)
            succ, p = self._success(self.model(tf.gather(adv, idx), training=False), lab_a, tgt_a, targeted)
            return (tf.tensor_scatter_nd_update(pred, at, tf.where(live, p, tf.gather(pred, idx))),
                    tf.tensor_scatter_nd_update(done, at, tf.where(live, (done_a | succ) if self.early_stop else succ,
                                                                   done_a)))

        # (no model call on an empty batch: oneDNN's convolutions reject it)
        pred, done = tf.cond(tf.reduce_any(last), read_last, lambda: (pred, done))
        iterates = history.stack() if record else tf.zeros((0,), tf.float32)
        return {"adversarial": adv, "success": done & tf.logical_not(failed), "steps": steps, "adv_labels": pred,
                "failed": failed, "messages": messages, "zero_gradient": zero, "iterates": iterates}

    def perturb(self, x, labels, target=None):
        """Adversarial images, as a tensor: see :meth:`tfperceptual.attacks.base.Attack.perturb`."""
        x = tf.cast(x, tf.float32)
        labels = tf.cast(labels, tf.int64)
        targets = labels if target is None else tf.cast(target, tf.int64)
        # fixed shapes for XLA; an oracle that runs Python (CVXPY) cannot be compiled anyway and keeps the compact loop
        compact = not self.oracle.graph_pure
        return self._run(x, labels, targets, target is not None, False, False, compact)["adversarial"]

    def _attack_batch(self, x, labels, target, return_iterates):
        targeted = target is not None
        y = tf.constant(labels, tf.int64)
        out = self._run(tf.constant(x), y, tf.constant(target, tf.int64) if targeted else y, targeted,
                        bool(return_iterates), True, True)
        res = {k: v.numpy() for k, v in out.items()}
        res["messages"] = [m.decode() for m in res["messages"]]
        if return_iterates and res["iterates"].shape[0] == 0:
            res["iterates"] = x[None].copy()
        elif not return_iterates:
            res["iterates"] = None
        return res


@register_attack("fpgap")
class FPGAP(SSIMBallAttack):
    """Fast perceptually guided adversarial perturbation (Algorithm 2, closed-form step Eq. 10).

    Args:
        model: any Keras 3 image classifier (see :class:`~tfperceptual.attacks.base.Attack`).
        eps: ε of the S2 constraint S2(x0, y) ≥ 1 − ε², in (0, 1).
        eps_luminance: ε1 of the S1 constraint, in [0, 1); 0 keeps the mean.
        steps: maximum number of steps (50 in the paper).
        loss: ``"cw"`` (Carlini–Wagner margin, κ = ``confidence``) or ``"ce"``.
        per_channel: one SSIM ball per colour channel.
        project_gradient: project g onto zero-mean vectors (exact); ``False``
            is the paper's literal Eq. 10.
        box: ``"restore"`` (exactly feasible), ``"clip"`` (paper's clipping) or ``"ignore"``.
        batch_size: images per ``tf.function`` call.
        early_stop: stop each sample at its first label change (paper); with
            ``False`` every sample runs all ``steps`` and the last iterate is returned.

    Raises:
        ValueError / TypeError: ε out of range, unknown box or loss, steps or batch_size < 1.
    """

    def __init__(self, model, eps, eps_luminance=0.0, steps=50, loss="cw", confidence=50.0,
                 per_channel=True, project_gradient=True, box="restore", batch_size=256, early_stop=True):
        model = as_logits_model(model)
        self.per_channel = bool(per_channel)
        oracle = ClosedFormSSIMOracle(_eps(eps), _eps_luminance(eps_luminance), self.bounds,
                                      self._channels(model.image_shape, per_channel),
                                      project_gradient=project_gradient, box=box)
        self.project_gradient = oracle.project_gradient
        self.box = oracle.box
        super().__init__(model, oracle, steps, loss, confidence, batch_size, early_stop)


@register_attack("pgap")
class PGAP(SSIMBallAttack):
    """Perceptually guided adversarial perturbation (Algorithm 1): each step solves the QCQP exactly.

    Args are those of :class:`FPGAP` (without ``project_gradient`` and ``box``) plus:
        solver: ``"exact"`` (default): the project's batched exact solver
            (:mod:`solvers.exact`, TensorFlow, float64), the whole attack one
            ``tf.function`` and every step certified by its duality gap;
            ``"cvxpy"`` (ECOS, Clarabel as fallback, the reference), or a CVXPY
            solver name (``"ECOS"``, ``"CLARABEL"``, ...) or a sequence of names.
        gap_tol: relative duality gap (> 0) each exact step must certify (1e-6).

    A step that cannot be certified (exact: gap or feasibility above
    tolerance; CVXPY: no solver returns a verified optimum) marks that image
    ``failed`` with a message and keeps its last verified iterate; the rest of
    the batch goes on.

    Raises:
        ValueError / TypeError: ε out of range, an unknown solver, gap_tol ≤ 0, steps or batch_size < 1.
    """

    def __init__(self, model, eps, eps_luminance=0.0, steps=50, loss="cw", confidence=50.0,
                 solver="exact", per_channel=True, batch_size=128, early_stop=True, gap_tol=None):
        model = as_logits_model(model)
        channels = self._channels(model.image_shape, per_channel)
        self.per_channel = bool(per_channel)
        if gap_tol is not None and solver != "exact":
            raise ValueError(f"gap_tol is an option of solver='exact' (the certificate), not of solver={solver!r}")
        self.gap_tol = check_real(GAP_TOL if gap_tol is None else gap_tol, "gap_tol", 0.0, None)
        if solver == "closed_form":
            raise ValueError("solver='closed_form' is FPGAP's step: use FPGAP")
        if isinstance(solver, str):
            oracle = ssim_ball_oracle(solver, _eps(eps), _eps_luminance(eps_luminance), self.bounds, channels,
                                      gap_tol=self.gap_tol, argument="solver")
        else:  # a sequence of CVXPY solver names, tried in order (checked by the oracle)
            oracle = CvxpySSIMOracle(_eps(eps), _eps_luminance(eps_luminance), self.bounds, channels, solver=solver)
        self.solver = solver
        super().__init__(model, oracle, steps, loss, confidence, batch_size, early_stop)
