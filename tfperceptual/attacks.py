"""Perceptually guided attacks: PGAP (Algorithm 1) and FPGAP (Algorithm 2).

Pochimireddy, Siripuram & Channappayya, "Can Perceptual Guidance Lead to
Semantically Explainable Adversarial Perturbations?".  At step k both attacks
take the gradient g_k of the loss at the current iterate x_k and move to

    x_{k+1} = argmax_{y ∈ B(x_0) ∩ [0,1]^N}  g_k · y,

the maximiser of the linearised loss over the SSIM ball anchored at the
*original* image x_0, so every iterate satisfies S2(x_0, x_k) ≥ 1 − ε² (and
S1 ≥ 1 − ε1², or μ fixed when ε1 = 0).  A sample stops at the first step where
its label changes (or reaches the target).

* :class:`PGAP` solves each step exactly as a QCQP with CVXPY (ECOS, then
  Clarabel), per image on the CPU.
* :class:`FPGAP` uses the closed form of Eq. 10, batched in TensorFlow inside
  one ``tf.function`` (GPU-ready, no NumPy per step); see
  :mod:`solvers.closed_form` for how the pixel box is enforced exactly.

Colour images: with ``per_channel=True`` (default) each colour channel has its
own SSIM ball (the SSIM metric is also computed per channel); with ``False``
the whole image is one vector.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from solvers.closed_form import closed_form_step
from solvers.linear_oracle import merge_channels, split_channels
from solvers.qcqp_cvxpy import solve_qcqp_batch

from .losses import LOSSES, attack_loss
from .metrics import psnr, ssim
from .model_adapter import as_logits_model, input_shape_of
from .validation import check_epsilon, check_images, check_labels

__all__ = ["AttackResult", "PGAP", "FPGAP"]


@dataclass
class AttackResult:
    """Outcome of an attack on a batch.

    Attributes:
        adversarial: (B, H, W, C) float32 in [0, 1].
        success: (B,) bool — label changed (untargeted) or target reached.
        steps: (B,) int — steps taken (0 when the clean image already succeeds).
        ssim: (B,) SSIM(original, adversarial), see :func:`tfperceptual.metrics.ssim`.
        psnr: (B,) PSNR in dB.
        adv_labels: (B,) labels the model predicts on ``adversarial``.
        failed: (B,) bool — the solver failed on this image; it keeps its last
            verified iterate and ``messages[i]`` says why.
        messages: per-image messages ("" when none).
        iterates: optional (T, B, H, W, C) — the iterates when ``return_iterates=True``
            (T = steps run; images that stopped repeat their last iterate).
        epsilon: the attack's ε.
    """

    adversarial: np.ndarray
    success: np.ndarray
    steps: np.ndarray
    ssim: np.ndarray
    psnr: np.ndarray
    adv_labels: np.ndarray
    failed: np.ndarray
    messages: list = field(default_factory=list)
    iterates: np.ndarray | None = None
    epsilon: float | None = None

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.success))

    @staticmethod
    def concatenate(parts):
        """Join results computed on consecutive batches."""
        it = [p.iterates for p in parts]
        if any(i is None for i in it):
            iterates = None
        else:
            t = max(i.shape[0] for i in it)
            iterates = np.concatenate([np.concatenate([i, np.repeat(i[-1:], t - i.shape[0], 0)]) for i in it], 1)
        return AttackResult(
            adversarial=np.concatenate([p.adversarial for p in parts]),
            success=np.concatenate([p.success for p in parts]),
            steps=np.concatenate([p.steps for p in parts]),
            ssim=np.concatenate([p.ssim for p in parts]),
            psnr=np.concatenate([p.psnr for p in parts]),
            adv_labels=np.concatenate([p.adv_labels for p in parts]),
            failed=np.concatenate([p.failed for p in parts]),
            messages=sum((p.messages for p in parts), []),
            iterates=iterates,
            epsilon=parts[0].epsilon,
        )


def _to_rows(x, per_channel):
    """(B, H, W, C) → (B·C, H·W) per channel, or (B, H·W·C)."""
    shape = tf.shape(x)
    b, c = shape[0], shape[3]
    if per_channel:
        x = tf.transpose(tf.reshape(x, (b, -1, c)), (0, 2, 1))
        return tf.reshape(x, (b * c, -1))
    return tf.reshape(x, (b, -1))


def _from_rows(rows, like, per_channel):
    shape = tf.shape(like)
    b, c = shape[0], shape[3]
    if per_channel:
        rows = tf.transpose(tf.reshape(rows, (b, c, -1)), (0, 2, 1))
    return tf.reshape(rows, shape)


class _SSIMBallAttack:
    """Shared set-up of PGAP and FPGAP."""

    bounds = (0.0, 1.0)

    def __init__(self, model, eps, eps_luminance=0.0, steps=50, loss="cw", confidence=50.0,
                 per_channel=True, batch_size=128, early_stop=True):
        self.early_stop = bool(early_stop)
        self.model = as_logits_model(model)
        self.input_shape = input_shape_of(self.model)
        self.num_classes = self.model.num_classes
        self.eps = eps
        self.eps_luminance = eps_luminance
        if int(steps) != steps or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps}")
        self.steps = int(steps)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.loss = loss
        self.confidence = float(confidence)
        self.per_channel = bool(per_channel)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        self.batch_size = int(batch_size)

    # ε is stored in a tf.Variable so that a sweep reuses one traced graph
    @property
    def eps(self) -> float:
        return float(self._eps.numpy())

    @eps.setter
    def eps(self, value):
        value = check_epsilon(value, "eps")
        if not hasattr(self, "_eps"):
            self._eps = tf.Variable(value, dtype=tf.float64, trainable=False)
        else:
            self._eps.assign(value)

    @property
    def eps_luminance(self) -> float:
        return float(self._eps1.numpy())

    @eps_luminance.setter
    def eps_luminance(self, value):
        value = float(value)
        if not np.isfinite(value) or not 0.0 <= value < 1.0:
            raise ValueError(f"eps_luminance must lie in [0, 1), got {value}")
        if not hasattr(self, "_eps1"):
            self._eps1 = tf.Variable(value, dtype=tf.float64, trainable=False)
        else:
            self._eps1.assign(value)

    def _loss_grad(self, x, labels, targets, targeted):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = self.model(x, training=False)
            loss = attack_loss(logits, labels, targets if targeted else None, self.loss, self.confidence)
            total = tf.reduce_sum(loss)
        return tape.gradient(total, x), logits

    def __call__(self, images, labels, target=None, return_iterates=False) -> AttackResult:
        """Attack ``images`` (B, H, W, C) float32 in [0, 1] with integer ``labels`` (B,).

        Args:
            target: optional (B,) target classes for a targeted attack.
            return_iterates: keep every iterate (memory: steps × images).

        Raises:
            TypeError / ValueError: see :mod:`tfperceptual.validation`.
        """
        x = check_images(images, "images", self.bounds, self.input_shape)
        y = check_labels(labels, len(x), self.num_classes, "labels")
        t = None if target is None else check_labels(target, len(x), self.num_classes, "target")
        parts = []
        for i in range(0, len(x), self.batch_size):
            sl = slice(i, i + self.batch_size)
            parts.append(self._attack_batch(x[sl], y[sl], None if t is None else t[sl], return_iterates))
        return AttackResult.concatenate(parts)

    def _success(self, logits, labels, targets, targeted):
        pred = tf.argmax(logits, -1, output_type=labels.dtype)
        return tf.equal(pred, targets) if targeted else tf.not_equal(pred, labels), pred

    def _step_rows(self, g_rows, x0_rows, interval: bool):
        """One linear step on rows (B·C, N): returns (new rows, per-row ok flags)."""
        raise NotImplementedError

    def _run_impl(self, x0, labels, targets, targeted: bool, record: bool, interval: bool):
        n_img = tf.shape(x0)[0]
        # anchors as rows, grouped per image: (B, C, N) per channel or (B, 1, N)
        rows0 = _to_rows(tf.cast(x0, tf.float64), self.per_channel)
        x0_rows = tf.reshape(rows0, (n_img, -1, tf.shape(rows0)[1]))
        logits = self.model(x0, training=False)
        done, pred = self._success(logits, labels, targets, targeted)
        failed = tf.zeros_like(done)
        adv = x0
        steps = tf.zeros_like(labels, dtype=tf.int32)
        history = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
        for k in tf.range(self.steps):
            running = tf.logical_not(done | failed) if self.early_stop else tf.logical_not(failed)
            if not tf.reduce_any(running):
                break
            # only the images still running are attacked: gather them, step, scatter back
            idx = tf.where(running)[:, 0]
            adv_a = tf.gather(adv, idx)
            lab_a, tgt_a = tf.gather(labels, idx), tf.gather(targets, idx)
            g, _ = self._loss_grad(adv_a, lab_a, tgt_a, targeted)
            n_a = tf.shape(idx)[0]
            anchors = tf.reshape(tf.gather(x0_rows, idx), (-1, tf.shape(x0_rows)[2]))
            rows, ok_rows = self._step_rows(_to_rows(tf.cast(g, tf.float64), self.per_channel), anchors, interval)
            ok = tf.reduce_all(tf.reshape(ok_rows, (n_a, -1)), 1)
            new = tf.cast(_from_rows(rows, adv_a, self.per_channel), tf.float32)
            if getattr(self, "box", "restore") != "ignore":
                new = tf.clip_by_value(new, 0.0, 1.0)
            new = tf.where(ok[:, None, None, None], new, adv_a)  # uncertified step: keep the last iterate
            succ, p = self._success(self.model(new, training=False), lab_a, tgt_a, targeted)
            at = idx[:, None]
            adv = tf.tensor_scatter_nd_update(adv, at, new)
            failed = tf.tensor_scatter_nd_update(failed, at, tf.logical_not(ok))
            steps = tf.tensor_scatter_nd_add(steps, at, tf.cast(ok, tf.int32))
            pred = tf.tensor_scatter_nd_update(pred, at, tf.where(ok, p, tf.gather(pred, idx)))
            done_a = tf.logical_or(tf.gather(done, idx), succ) if self.early_stop else tf.where(ok, succ, tf.gather(done, idx))
            done = tf.tensor_scatter_nd_update(done, at, done_a)
            if record:
                history = history.write(k, adv)
        its = history.stack() if record else tf.zeros((0,), tf.float32)
        return adv, done & tf.logical_not(failed), steps, pred, its, failed

    def _run_tf(self, x, y, t, record):
        """Attack one batch with the graph loop of :meth:`_run_impl`."""
        targeted = t is not None
        labels = tf.constant(y, tf.int64)
        targets = tf.constant(t if targeted else y, tf.int64)
        adv, done, steps, pred, its, failed = self._run(tf.constant(x), labels, targets, targeted, record,
                                                        self.eps_luminance > 0)
        iterates = its.numpy() if record else None
        if record and iterates.shape[0] == 0:
            iterates = x[None].copy()
        failed = failed.numpy()
        messages = ["exact solver could not certify a step (duality gap or feasibility above tolerance)"
                    if f else "" for f in failed]
        return self._finish(x, adv.numpy(), done.numpy(), steps.numpy(), pred.numpy(), failed, messages,
                            iterates)

    def _finish(self, x0, adv, success, steps, adv_labels, failed, messages, iterates):
        return AttackResult(adversarial=adv, success=success, steps=steps, ssim=ssim(x0, adv),
                            psnr=psnr(x0, adv), adv_labels=adv_labels, failed=failed,
                            messages=messages, iterates=iterates, epsilon=self.eps)


class FPGAP(_SSIMBallAttack):
    """Fast perceptually guided adversarial perturbation (Algorithm 2, closed-form step Eq. 10).

    Args:
        model: any Keras 3 image classifier (functional or Sequential, logits
            or softmax output; see :mod:`tfperceptual.model_adapter`).
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
    """

    def __init__(self, model, eps, eps_luminance=0.0, steps=50, loss="cw", confidence=50.0,
                 per_channel=True, project_gradient=True, box="restore", batch_size=256, early_stop=True):
        super().__init__(model, eps, eps_luminance, steps, loss, confidence, per_channel, batch_size, early_stop)
        if box not in ("restore", "clip", "ignore"):
            raise ValueError(f"box must be 'restore', 'clip' or 'ignore', got {box!r}")
        self.project_gradient = bool(project_gradient)
        self.box = box
        self._run = tf.function(self._run_impl, reduce_retracing=True)

    def _step_rows(self, g_rows, x0_rows, interval: bool):
        rows = closed_form_step(g_rows, x0_rows, self._eps, self._eps1, self.bounds,
                                project_gradient=self.project_gradient, box=self.box)
        return rows, tf.ones(tf.shape(rows)[:1], tf.bool)

    def _attack_batch(self, x, y, t, record):
        return self._run_tf(x, y, t, record)


class PGAP(_SSIMBallAttack):
    """Perceptually guided adversarial perturbation (Algorithm 1): each step solves the QCQP exactly.

    Args are those of :class:`FPGAP` plus:
        solver: ``"exact"`` (default): the project's batched exact solver
            (:mod:`solvers.exact`, TensorFlow, float64), the whole attack one
            ``tf.function`` and every step certified by its duality gap;
            ``"cvxpy"`` (ECOS, Clarabel as fallback, the reference), or a CVXPY
            solver name / sequence of names (``"ECOS"``, ``"CLARABEL"``, ...).
        gap_tol: relative duality gap each exact step must certify (1e-6).

    A step that cannot be certified (exact: gap or feasibility above
    tolerance; CVXPY: no solver returns a verified optimum) marks that image
    ``failed`` with a message and keeps its last verified iterate; the rest of
    the batch goes on.
    """

    def __init__(self, model, eps, eps_luminance=0.0, steps=50, loss="cw", confidence=50.0,
                 solver="exact", per_channel=True, batch_size=128, early_stop=True, gap_tol=None):
        super().__init__(model, eps, eps_luminance, steps, loss, confidence, per_channel, batch_size, early_stop)
        from solvers.exact import GAP_TOL

        self.gap_tol = GAP_TOL if gap_tol is None else float(gap_tol)
        if solver in ("exact", "cvxpy"):
            self.cvxpy_solvers = None
        elif isinstance(solver, str):
            self.cvxpy_solvers = (solver.upper(),)
        else:
            self.cvxpy_solvers = tuple(s.upper() for s in solver)
        self.solver = solver
        if solver == "exact":
            self._run = tf.function(self._run_impl, reduce_retracing=True)
        sig = [tf.TensorSpec((None,) + tuple(self.input_shape), tf.float32),
               tf.TensorSpec((None,), tf.int64), tf.TensorSpec((None,), tf.int64)]
        self._grad_fns = {flag: tf.function(lambda x, l, t, flag=flag: self._loss_grad(x, l, t, flag)[0],
                                            input_signature=sig) for flag in (False, True)}

    def _step_rows(self, g_rows, x0_rows, interval: bool):
        from solvers.exact import exact_step_rows

        return exact_step_rows(g_rows, x0_rows, self._eps, self._eps1, self.bounds, interval, self.gap_tol)

    def _grad(self, x, labels, targets, targeted: bool):
        return self._grad_fns[bool(targeted)](x, labels, targets)

    def _predict(self, x):
        return np.argmax(self.model(tf.constant(x), training=False).numpy(), -1)

    def _attack_batch(self, x, y, t, record):
        if self.solver == "exact":
            return self._run_tf(x, y, t, record)
        targeted = t is not None
        n = len(x)
        tt = t if targeted else y
        pred = self._predict(x)
        done = (pred == tt) if targeted else (pred != y)
        adv = x.copy()
        steps = np.zeros(n, np.int32)
        failed = np.zeros(n, bool)
        messages = [""] * n
        history = []
        c = x.shape[-1] if self.per_channel else 1
        # (B, H, W, C) → (B·C, H·W) rows in NumPy, once per batch for the anchors
        x_all = split_channels(x.reshape(n, -1).astype(np.float64), c)
        for _ in range(self.steps):
            idx = np.flatnonzero(~done & ~failed) if self.early_stop else np.flatnonzero(~failed)
            if idx.size == 0:
                break
            g = self._grad(tf.constant(adv[idx]), tf.constant(y[idx]), tf.constant(tt[idx]), targeted).numpy()
            g_rows = split_channels(g.reshape(idx.size, -1).astype(np.float64), c)
            x_rows = x_all.reshape(n, c, -1)[idx].reshape(idx.size * c, -1)
            res = solve_qcqp_batch(g_rows, x_rows, self.eps, self.eps_luminance, self.bounds,
                                   solver=self.cvxpy_solvers)
            ok = res.ok.reshape(idx.size, c).all(1)
            for j in np.flatnonzero(~ok):
                failed[idx[j]] = True
                rows = range(j * c, (j + 1) * c)
                messages[idx[j]] = "solver failed: " + "; ".join(res.messages[r] for r in rows if res.messages[r])
            good = idx[ok]
            if good.size:
                new = merge_channels(np.nan_to_num(res.y), c).reshape(x[idx].shape)  # failed rows dropped below
                adv[good] = np.clip(new[ok], 0.0, 1.0).astype(np.float32)
                steps[good] += 1
                p = self._predict(adv[good])
                pred[good] = p
                done[good] = (p == tt[good]) if targeted else (p != y[good])
            if record:
                history.append(adv.copy())
        iterates = (np.stack(history) if history else x[None].copy()) if record else None
        return self._finish(x, adv, done & ~failed, steps, pred, failed, messages, iterates)
