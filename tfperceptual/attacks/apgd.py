r"""Auto-PGD (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020, Algorithm 1) over the ℓ∞ ball, the ℓ2 ball and the SSIM ball.

One loop, graph-pure, three feasible sets:

* :class:`SSIMAPGD` — the SSIM ball ∩ the pixel box, each step projected *exactly* onto it
  (:func:`solvers.ssim_projection.project_ssim_ball`, certified); the project's SSIM-ball attack for
  robustness evaluation (:func:`tfperceptual.evaluation.ssim_auto_attack`) and adversarial training;
* :class:`LinfAPGD`, :class:`L2APGD` — the ℓp balls, with the authors' projections; they check the
  machinery against ART's ``AutoProjectedGradientDescent`` on the same model and images (the ℓp robustness
  evaluation itself goes through ART: :func:`tfperceptual.evaluation.auto_attack`).

The loop follows the authors' ``autopgd_base.py`` line by line:

* random start inside the set (ℓ∞: ε·t/‖t‖∞, t uniform; ℓ2 and SSIM: a Gaussian direction scaled to the
  radius, then projected), the step size η = 2 (in units of the radius: 2ε for ℓp, 2r per SSIM ball);
* z = P(x_k + η·d(g_k)) with d = ε·sign (ℓ∞), ε·g/‖g‖₂ (ℓ2) or r·g̃/‖g̃‖₂ per SSIM ball (g̃ the gradient
  made zero-mean per ball when ε1 = 0: the mean cannot move), then the momentum step
  x_{k+1} = P(x_k + α(z − x_k) + (1 − α)(x_k − x_{k−1})) with α = 0.75 (1 at the first step);
* checkpoints every k steps, k = ⌊0.22 n⌋ at first, then decreasing by ⌊0.03 n⌋ down to ⌊0.06 n⌋; at a
  checkpoint the step size of an image is halved and its iterate restarted from its best point when the loss
  rose in at most ρ = 75 % of the last k steps, or when it was not halved at the previous checkpoint and the
  best loss has not improved since;
* per image, the best-loss point and the first iterate that fools the model are kept (the authors' x_best and
  x_best_adv), so nothing found along the way is lost.

``loss="ce"`` (cross-entropy) or ``"dlr"`` (the DLR loss, Eq. 6; targeted Eq. 7). ``target=n`` builds
APGD-T: n runs with the targeted DLR loss towards the n classes with the highest clean logits after the
predicted one (AutoAttack's top-9), each counting as a success when the image is *misclassified* (the
untargeted goal).  ``restarts`` repeats each run from a new random start.  Called on NumPy batches
(``attack(images, labels)``), every run after the first attacks only the images still robust, as AutoAttack
does; ``perturb`` (graph-pure: ``tf.function``, ``train_step``) runs every image through every run, and
returns the first fooling iterate, else the highest-loss one.

Random starts are stateless and **per image**: each image's noise is drawn from a key mixed from ``seed``, the
run, a hash of that image's pixels and label, and ``perturb``'s ``step`` (:func:`image_keys`).  So an image
gets the same start whatever batch it is in and whichever images are left: attacking the images still robust
(as AutoAttack does) gives each of them what attacking it alone would, and an ensemble's robust images are
robust to each of its members run alone.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from solvers.checks import FixedOptions
from solvers.rows import from_rows, to_rows
from solvers.ssim_ball import ball_parameters
from solvers.ssim_projection import PROJECTION_TOL, feasibility_tol, project_ssim_ball_rows

from ..validation import check_choice, check_positive_int, check_real
from .base import Attack
from .objectives import APGD_LOSSES, attack_logits_and_gradient, attack_loss
from .registry import register_attack

__all__ = ["APGD", "LinfAPGD", "L2APGD", "SSIMAPGD", "apgd_checkpoints", "image_keys", "mix_keys"]

#: momentum α of the APGD update
MOMENTUM = 0.75


_MASK = np.int64(2**62 - 1)


def mix_keys(k):
    """A 62-bit integer mix of int64 keys (xor-shift-multiply rounds after SplitMix64, masked so that every
    product stays within int64): distinct inputs give well-spread outputs, elementwise, graph-safe."""
    k = tf.bitwise.bitwise_and(tf.cast(k, tf.int64), _MASK)
    for mult, shift in ((np.int64(0x3F58476D1CE4E5B9), 30), (np.int64(0x14D049BB133111EB), 27)):
        k = tf.bitwise.bitwise_and(k ^ tf.bitwise.right_shift(k, shift), _MASK)
        k = tf.bitwise.bitwise_and(k * mult, _MASK)
    return tf.bitwise.bitwise_and(k ^ tf.bitwise.right_shift(k, 31), _MASK)


def image_keys(x, labels, *salt):
    """(B,) int64 keys, one per image: a hash of the image's float32 bits and its label, mixed with the scalar
    ``salt`` values (seed, run, step); an image's key does not depend on the rest of its batch."""
    b = tf.shape(x)[0]
    bits = tf.cast(tf.reshape(tf.bitcast(tf.cast(x, tf.float32), tf.int32), (b, -1)), tf.int64)
    pos = tf.range(1, tf.shape(bits)[1] + 1, dtype=tf.int64)
    weights = tf.math.floormod(pos * np.int64(0x9E3779B1), np.int64(2**31 - 1)) + 1
    k = mix_keys(tf.reduce_sum(bits * weights[None], 1) + tf.cast(labels, tf.int64) * np.int64(7919))
    for s_ in salt:
        k = mix_keys(k + mix_keys(tf.cast(s_, tf.int64) + np.int64(0x2545F491)))
    return k


def apgd_checkpoints(steps):
    """(first interval k, its decrement, its floor) of APGD's checkpoints for ``steps`` iterations: the
    authors' ``n_iter_2 = max(⌊0.22 n⌋, 1)``, ``size_decr = max(⌊0.03 n⌋, 1)``, ``n_iter_min = max(⌊0.06 n⌋, 1)``."""
    return max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)


class APGD(Attack, FixedOptions):
    """Auto-PGD over a convex feasible set (abstract over the set; see the module docstring).

    Args:
        model: any Keras 3 image classifier (see :class:`~tfperceptual.attacks.base.Attack`).
        eps: the set's radius (its unit: ``eps_unit``); assignable later (a variable).
        steps: iterations per run, ≥ 1 (100 in AutoAttack).
        loss: ``"ce"`` or ``"dlr"``.
        target: ``None`` (untargeted) or n ≥ 1: APGD-T over the n highest-scoring other classes (needs
            ``loss="dlr"`` or ``"ce"``; DLR needs K ≥ 4 classes with a target, K ≥ 3 without).
        restarts: random restarts per run, ≥ 1.
        seed: int ≥ 0, the base of the stateless random starts.
        rho: ρ of the step-size rule, in (0, 1] (0.75).
        batch_size: images per graph call of ``__call__``.

    Raises:
        ValueError / TypeError: ε out of range, steps/restarts/target < 1, an unknown loss, DLR with too few
            classes, target ≥ K, rho outside (0, 1].
    """

    _FIXED = ("steps", "loss", "n_targets", "restarts", "seed", "rho", "model", "bounds")
    #: perturb takes ``step``, folded into the random start's seed (AdversarialTraining passes it)
    takes_step_seed = True

    def __init__(self, model, eps, steps=100, loss="ce", target=None, restarts=1, seed=0, *, rho=0.75,
                 batch_size=128):
        super().__init__(model, batch_size)
        self.steps = check_positive_int(steps, "steps")
        self.loss = check_choice(loss, "loss", APGD_LOSSES)
        k = self.num_classes
        if target is not None:
            target = check_positive_int(target, "target (number of target classes of APGD-T)")
            if target > k - 1:
                raise ValueError(f"target={target} target classes, but the model has only {k - 1} other classes")
        if self.loss == "dlr" and k < (4 if target is not None else 3):
            raise ValueError(f"loss='dlr' needs at least {4 if target is not None else 3} classes "
                             f"({'targeted' if target is not None else 'untargeted'}: it divides by Z_π1 − Z_π"
                             f"{'3' if target is None else '3,4'}), the model has {k}: use loss='ce'")
        self.n_targets = target
        self.restarts = check_positive_int(restarts, "restarts")
        self.seed = check_positive_int(seed, "seed", minimum=0)
        self.rho = check_real(rho, "rho", 0.0, 1.0, high_inclusive=True)
        self._set_eps(eps)
        self._run_once = tf.function(self._single_run, reduce_retracing=True)
        self._run = tf.function(self._perturb_impl, reduce_retracing=True)  # perturb's graph

    # ------------------------------------------------------------------ the set (subclasses)
    def _set_eps(self, eps):
        raise NotImplementedError

    def _geometry(self, x0):
        """Per-batch constants of the set around ``x0`` (e.g. the SSIM balls' radii)."""
        return None

    def _scaled_direction(self, g, x0, geo):
        """The step direction of η = 1 for gradient ``g`` (B, H, W, C), float32."""
        raise NotImplementedError

    def _project(self, z, x0, geo):
        """(the projection of ``z`` onto the set around ``x0`` ∩ box, float32; (B,) bool: certified)."""
        raise NotImplementedError

    def _start(self, x0, keys, geo):
        raise NotImplementedError

    def _noise(self, x0, keys, kind):
        """Per-image noise (B, H, W, C) float32, ``"normal"`` or ``"uniform"`` in [−1, 1), image i drawn from the
        stateless seed (keys[i], seed)."""
        shape = tf.shape(x0)[1:]

        def one(k):
            s = tf.stack([k, tf.constant(self.seed, tf.int64)])
            return (tf.random.stateless_normal(shape, s) if kind == "normal"
                    else tf.random.stateless_uniform(shape, s, -1.0, 1.0))

        return tf.map_fn(one, keys, fn_output_signature=tf.float32)

    # ------------------------------------------------------------------ one run
    def _loss_and_gradient(self, x, labels, targets, targeted):
        logits, g = attack_logits_and_gradient(self.model, x, labels, targets if targeted else None, self.loss)
        return logits, attack_loss(logits, labels, targets if targeted else None, self.loss), g

    def _single_run(self, x0, labels, loss_targets, goal_targets, keys, targeted_loss, targeted_goal):
        """One APGD run (Algorithm 1) on a batch: ``(x_best, success, loss_best, x_best_adv, uncertified,
        zero_gradient)``. ``loss_targets``: the classes the loss moves towards (with ``targeted_loss``);
        ``goal_targets``: the classes a success must reach (with ``targeted_goal``; else a success is a label
        change)."""
        n = self.steps
        k0, decr, kmin = apgd_checkpoints(n)
        geo = self._geometry(x0)

        def success_of(logits):
            pred = tf.argmax(logits, -1, output_type=labels.dtype)
            return tf.equal(pred, goal_targets) if targeted_goal else tf.not_equal(pred, labels)

        x_adv, cert = self._start(x0, keys, geo)
        uncert = tf.cast(tf.logical_not(cert), tf.int32)
        logits, loss, grad = self._loss_and_gradient(x_adv, labels, loss_targets, targeted_loss)
        zero = tf.reduce_all(tf.equal(tf.reshape(grad, (tf.shape(grad)[0], -1)), 0.0), 1)
        success = success_of(logits)
        x_best_adv = x_adv
        x_best, grad_best, loss_best = x_adv, grad, loss
        step = tf.fill(tf.shape(loss), tf.constant(2.0, tf.float32))
        x_old = x_adv
        loss_steps = tf.zeros((n, tf.shape(loss)[0]), loss.dtype)
        loss_best_last = loss_best
        reduced_last = tf.ones_like(success)
        counter = tf.constant(0)
        k = tf.constant(k0)
        for i in tf.range(n):
            a = tf.where(i > 0, MOMENTUM, 1.0)
            grad2 = x_adv - x_old
            x_old = x_adv
            s = step[:, None, None, None]
            z, c1 = self._project(x_adv + s * self._scaled_direction(grad, x0, geo), x0, geo)
            z, c2 = self._project(x_adv + (z - x_adv) * a + grad2 * (1.0 - a), x0, geo)
            uncert += tf.cast(tf.logical_not(c1), tf.int32) + tf.cast(tf.logical_not(c2), tf.int32)
            x_adv = z
            logits, loss, grad = self._loss_and_gradient(x_adv, labels, loss_targets, targeted_loss)
            fooled = success_of(logits)
            x_best_adv = tf.where((fooled & tf.logical_not(success))[:, None, None, None], x_adv, x_best_adv)
            success = success | fooled
            better = loss > loss_best
            bw = better[:, None, None, None]
            x_best = tf.where(bw, x_adv, x_best)
            grad_best = tf.where(bw, grad, grad_best)
            loss_best = tf.where(better, loss, loss_best)
            loss_steps = tf.tensor_scatter_nd_update(loss_steps, [[i]], loss[None])
            counter += 1
            if tf.equal(counter, k):
                # the authors' check_oscillation: in how many of the last k steps did the loss rise?
                # (indices below 0 wrap to the end of the history, zeros until filled, as in their code)
                # (a fixed-size window of the largest k, masked to the current one: XLA needs static sizes)
                lags = tf.range(k0)
                js = i - lags
                now = tf.gather(loss_steps, tf.math.floormod(js, n))
                before = tf.gather(loss_steps, tf.math.floormod(js - 1, n))
                rose = tf.cast(now > before, tf.float32) * tf.cast(lags < k, tf.float32)[:, None]
                rises = tf.reduce_sum(rose, 0)
                oscillating = rises <= tf.cast(k, tf.float32) * self.rho
                stalled = tf.logical_not(reduced_last) & (loss_best_last >= loss_best)
                reduce = oscillating | stalled
                reduced_last = reduce
                loss_best_last = loss_best
                step = tf.where(reduce, 0.5 * step, step)
                rw = reduce[:, None, None, None]
                x_adv = tf.where(rw, x_best, x_adv)
                grad = tf.where(rw, grad_best, grad)
                k = tf.maximum(k - decr, kmin)
                counter = tf.constant(0)
        return x_best, success, loss_best, x_best_adv, uncert, zero

    # ------------------------------------------------------------------ runs
    def _keys(self, x0, labels, run, step):
        return image_keys(x0, labels, self.seed, run, step)

    def _runs(self):
        """(run index, target rank) of every run in order: target rank j ≥ 1 is APGD-T's j-th other class,
        0 the untargeted loss."""
        ranks = [0] if self.n_targets is None else range(1, self.n_targets + 1)
        return list(enumerate(j for j in ranks for _ in range(self.restarts)))

    def _ranked_targets(self, logits, rank):
        return tf.cast(tf.argsort(logits, -1, direction="DESCENDING")[:, rank], tf.int64)

    def _perturb_impl(self, x0, labels, target, step, explicit_target):
        logits0 = self.model(x0, training=False)
        fooled = tf.zeros_like(labels, dtype=tf.bool)
        adv = x0
        best = x0
        best_loss = tf.fill(tf.shape(labels), tf.constant(-np.inf, tf.float32))
        runs = [(i, 0) for i in range(self.restarts)] if explicit_target else self._runs()
        for run, rank in runs:
            tl = target if explicit_target else (self._ranked_targets(logits0, rank) if rank else labels)
            xb, succ, lb, xba, _, _ = self._single_run(x0, labels, tl, target, self._keys(x0, labels, run, step),
                                                       explicit_target or rank > 0, explicit_target)
            adv = tf.where((succ & tf.logical_not(fooled))[:, None, None, None], xba, adv)
            fooled = fooled | succ
            better = tf.cast(lb, tf.float32) > best_loss
            best = tf.where(better[:, None, None, None], xb, best)
            best_loss = tf.where(better, tf.cast(lb, tf.float32), best_loss)
        return tf.where(fooled[:, None, None, None], adv, best)

    def perturb(self, x, labels, target=None, *, step=None):
        """Adversarial images, as a tensor: see :meth:`tfperceptual.attacks.base.Attack.perturb`. Every image
        runs through every run; per image the first fooling iterate, else the highest-loss one (in the set).

        ``target`` (B,) int: a targeted attack towards these classes (a success must reach them);
        ``step``: optional int scalar folded into the random starts' seed (e.g. the training step).
        """
        x = tf.cast(x, tf.float32)
        labels = tf.cast(labels, tf.int64)
        tgt = labels if target is None else tf.cast(target, tf.int64)
        step = tf.zeros((), tf.int64) if step is None else tf.cast(step, tf.int64)
        return self._run(x, labels, tgt, step, target is not None)

    def _attack_batch(self, x, labels, target, return_iterates):
        n = len(x)
        explicit = target is not None
        tgt = labels if target is None else target
        logits0 = self.model(tf.constant(x), training=False)
        robust = np.ones(n, bool)
        adv = x.copy()
        best = x.copy()
        best_loss = np.full(n, -np.inf)
        steps = np.zeros(n, np.int32)
        uncert = np.zeros(n, np.int64)
        zero = np.zeros(n, bool)
        runs = [(i, 0) for i in range(self.restarts)] if explicit else self._runs()
        for run, rank in runs:
            idx = np.flatnonzero(robust)
            if len(idx) == 0:
                break
            x0 = tf.constant(x[idx])
            lab = tf.constant(labels[idx], tf.int64)
            goal = tf.constant(tgt[idx], tf.int64)
            if explicit:
                tl = goal
            elif rank:
                tl = tf.gather(self._ranked_targets(logits0, rank), idx)
            else:
                tl = lab
            # per-image keys: a run's start for an image does not depend on which images are left
            keys = self._keys(x0, lab, run, 0)
            xb, succ, lb, xba, unc, zg = self._run_once(x0, lab, tl, goal, keys, explicit or rank > 0, explicit)
            succ = succ.numpy()
            lb = lb.numpy().astype(np.float64)
            fooled = idx[succ]
            adv[fooled] = xba.numpy()[succ]
            robust[fooled] = False
            better = lb > best_loss[idx]
            best[idx[better]] = xb.numpy()[better]
            best_loss[idx[better]] = lb[better]
            steps[idx] += self.steps
            uncert[idx] += unc.numpy()
            if run == 0:
                zero[idx] = zg.numpy()
        out = np.where(robust[:, None, None, None], best, adv)
        pred = self.model.predicted_class(tf.constant(out)).numpy()
        success = (pred == tgt) if explicit else (pred != labels)
        messages = [f"{u} projection(s) not certified exact (feasible; see solvers.ssim_projection)" if u else ""
                    for u in uncert]
        return {"adversarial": out, "success": success, "steps": steps, "adv_labels": pred,
                "failed": np.zeros(n, bool), "messages": messages, "zero_gradient": zero,
                "iterates": out[None] if return_iterates else None}


def _ball_check(value, unit, high):
    return check_real(value, f"eps ({unit})", 0.0, high)


@register_attack("linf_apgd")
class LinfAPGD(APGD):
    """APGD over the ℓ∞ ball ∩ box (Croce & Hein 2020), graph-pure; ``eps`` in (0, 1). See :class:`APGD`."""

    eps_unit = "ℓ∞ budget"
    eps_range = (0.0, 1.0)
    norm = "linf"

    def _set_eps(self, eps):
        self._eps_var = tf.Variable(_ball_check(eps, self.eps_unit, 1.0), dtype=tf.float32, trainable=False,
                                    name="eps")

    @property
    def eps(self) -> float:
        """ε, the radius of the ball."""
        return float(self._eps_var.numpy())

    @eps.setter
    def eps(self, value):
        self._eps_var.assign(_ball_check(value, self.eps_unit, self.eps_range[1]))

    def _scaled_direction(self, g, x0, geo):
        return self._eps_var * tf.sign(g)

    def _project(self, z, x0, geo):
        e = self._eps_var
        y = tf.clip_by_value(tf.clip_by_value(z, x0 - e, x0 + e), *self.bounds)
        return y, tf.ones(tf.shape(z)[:1], tf.bool)

    def _start(self, x0, keys, geo):
        t = self._noise(x0, keys, "uniform")
        t = t / (tf.reduce_max(tf.abs(t), axis=[1, 2, 3], keepdims=True) + 1e-12)
        return tf.clip_by_value(x0 + self._eps_var * t, *self.bounds), tf.ones(tf.shape(x0)[:1], tf.bool)


def _l2(t):
    return tf.sqrt(tf.reduce_sum(tf.square(t), axis=[1, 2, 3], keepdims=True))


@register_attack("l2_apgd")
class L2APGD(LinfAPGD):
    """APGD over the ℓ2 ball (Croce & Hein 2020), graph-pure; ``eps`` > 0 over all pixels and channels.
    The projection is the authors' (scale into the ball, then clip to the box). See :class:`APGD`."""

    eps_unit = "ℓ2 budget"
    eps_range = (0.0, None)
    norm = "l2"

    def _set_eps(self, eps):
        self._eps_var = tf.Variable(_ball_check(eps, self.eps_unit, None), dtype=tf.float32, trainable=False,
                                    name="eps")

    def _scaled_direction(self, g, x0, geo):
        return self._eps_var * g / (_l2(g) + 1e-12)

    def _project(self, z, x0, geo):
        d = z - x0
        y = x0 + d / (_l2(d) + 1e-12) * tf.minimum(self._eps_var, _l2(d))
        return tf.clip_by_value(y, *self.bounds), tf.ones(tf.shape(z)[:1], tf.bool)

    def _start(self, x0, keys, geo):
        t = self._noise(x0, keys, "normal")
        return (tf.clip_by_value(x0 + self._eps_var * t / (_l2(t) + 1e-12), *self.bounds),
                tf.ones(tf.shape(x0)[:1], tf.bool))


@register_attack("ssim_apgd")
class SSIMAPGD(APGD):
    """APGD over the SSIM ball ∩ the pixel box, every step projected exactly (see the module docstring).

    Args:
        model: any Keras 3 image classifier (see :class:`~tfperceptual.attacks.base.Attack`).
        eps: ε of the S2 constraint S2(x0, y) ≥ 1 − ε², in (0, 1) (the radius FPGAP and PGAP take).
        eps_luminance: ε1 of the S1 constraint, in [0, 1); 0 keeps each ball's mean.
        steps, loss, target, restarts, seed, rho, batch_size: see :class:`APGD` (``steps=100``, ``loss="ce"``).
        per_channel: keyword-only; one SSIM ball per colour channel (default, as FPGAP/PGAP), else one per image.

    Every iterate lies in the SSIM ball ∩ [0, 1]^N: the projection returns a feasible point always (certified
    exact to 1e-6 relative distance; an uncertified one is counted in the result's ``messages``).  Images
    (B, H, W, C) float32 in [0, 1].

    Raises:
        ValueError / TypeError: those of :class:`APGD`; ε or ε1 out of range; ``per_channel`` with an unknown
            channel count.
    """

    eps_unit = "SSIM-ball radius ε (S2 ≥ 1 − ε²)"
    eps_range = (0.0, 1.0)
    norm = "ssim"
    _FIXED = APGD._FIXED + ("per_channel", "channels")

    def __init__(self, model, eps, eps_luminance=0.0, steps=100, loss="ce", target=None, restarts=1, seed=0, *,
                 per_channel=True, rho=0.75, batch_size=128):
        self._eps1_var = tf.Variable(self._check_eps1(eps_luminance), dtype=tf.float64, trainable=False,
                                     name="eps_luminance")
        self.per_channel = bool(per_channel)
        super().__init__(model, eps, steps, loss, target, restarts, seed, rho=rho, batch_size=batch_size)
        c = self.input_shape[-1]
        if self.per_channel and c is None:
            raise ValueError("per_channel=True needs a model with a known number of channels")
        self.channels = int(c) if self.per_channel else 1

    @staticmethod
    def _check_eps1(value):
        return check_real(value, "eps_luminance (S1 radius)", 0.0, 1.0, low_inclusive=True)

    def _set_eps(self, eps):
        self._eps_var = tf.Variable(check_real(eps, "eps (S2 radius ε)", 0.0, 1.0), dtype=tf.float64,
                                    trainable=False, name="eps")

    @property
    def eps(self) -> float:
        """S2 radius ε in (0, 1): every iterate has S2(x0, x) ≥ 1 − ε²."""
        return float(self._eps_var.numpy())

    @eps.setter
    def eps(self, value):
        self._eps_var.assign(check_real(value, "eps (S2 radius ε)", 0.0, 1.0))

    @property
    def eps_luminance(self) -> float:
        """S1 radius in [0, 1); 0 keeps the mean."""
        return float(self._eps1_var.numpy())

    @eps_luminance.setter
    def eps_luminance(self, value):
        self._eps1_var.assign(self._check_eps1(value))

    def _rows(self, t):
        return to_rows(tf.reshape(tf.cast(t, tf.float64), (tf.shape(t)[0], -1)), self.channels)

    def _geometry(self, x0):
        rows = self._rows(x0)
        radius = ball_parameters(rows, self._eps_var, self._eps1_var)[2]
        return {"x_rows": tf.reshape(tf.cast(x0, tf.float64), (tf.shape(x0)[0], -1)), "radius": radius}

    def _scaled_direction(self, g, x0, geo):
        d = self._rows(g)
        d = tf.where(self._eps1_var > 0, d, d - tf.reduce_mean(d, 1, keepdims=True))
        d = d / (tf.norm(d, axis=1, keepdims=True) + 1e-12) * geo["radius"][:, None]
        return tf.cast(tf.reshape(from_rows(d, self.channels), tf.shape(g)), tf.float32)

    def _project(self, z, x0, geo):
        zr = tf.reshape(tf.cast(z, tf.float64), (tf.shape(z)[0], -1))
        out = project_ssim_ball_rows(zr, geo["x_rows"], self._eps_var, self._eps1_var, self.bounds, self.channels,
                                     PROJECTION_TOL)
        y = tf.clip_by_value(tf.cast(tf.reshape(out["y"], tf.shape(z)), tf.float32), *self.bounds)
        feasible = out["violation"] <= feasibility_tol(tf.float64)
        # an infeasible answer (never seen; the projection backtracks into the ball) falls back to the anchor
        y = tf.where(feasible[:, None, None, None], y, x0)
        return y, out["ok"]

    def _start(self, x0, keys, geo):
        t = self._noise(x0, keys, "normal")
        return self._project(x0 + self._scaled_direction(t, x0, geo), x0, geo)
