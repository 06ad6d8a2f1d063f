"""The project's graph-pure norm-ball attacks: :class:`LinfPGD`, :class:`L2PGD` (Madry et al. 2018) and
:class:`RandomStartFGSM` (Wong, Rice & Kolter 2020, "Fast is better than free").

Projected gradient ascent of a loss over {x : ‖x − x₀‖_p ≤ ε} ∩ [0, 1]^N:

    x₁ = clip(x₀ + δ₀)                   δ₀ uniform in the ε ball (``random_start``), else 0
    x_{k+1} = clip(Π_ε(x_k + α · d(g_k)))  d = sign (ℓ∞) or g/‖g‖₂ (ℓ2), Π_ε the projection onto the ball

with the same update, projection and clipping as Foolbox's ``LinfPGD`` / ``L2PGD`` (Foolbox 3,
``gradient_descent_base.py``; the ℓ2 random start here is Voelker et al.'s exact uniform sample of the
ball).  Every step runs: the last iterate is returned (as Foolbox and Madry et al.), there is no early
stop.  RandomStartFGSM is one step of size α = 1.25 ε from the uniform random start (Wong et al., Alg. 3).

Unlike the Foolbox wrappers of :mod:`tfperceptual.attacks.foolbox` (registered as ``"pgd"`` and
``"pgd_l2"``: Foolbox's own attacks, for evaluation), these run inside ``tf.function`` and a Keras
``train_step`` (also under XLA and ``tf.distribute``); they are registered as ``"linf_pgd"``,
``"l2_pgd"`` and ``"fgsm_rs"``.

**Random start, stateless.**  The noise comes from ``tf.random.stateless_uniform`` /
``stateless_normal`` with a seed folded from ``seed``, a hash of the batch's pixels and labels and, when
given, ``perturb``'s ``step`` (``AdversarialTraining`` passes the optimizer's step count, so that a
batch seen again in a later epoch gets fresh noise): no RNG state, so it is the same inside
``tf.function``, XLA and every replica of a distribution strategy, and a run and its resumption draw
alike.  ``seed=None`` draws the base seed once, when the attack is built.

The default step size α = 2.5 ε / steps (MadryLab's rule) differs from Foolbox's defaults (ℓ∞: 0.01/0.3 ε,
ℓ2: 0.025 ε); pass ``step_size`` to match a Foolbox run.
"""

from __future__ import annotations

import random

import numpy as np
import tensorflow as tf

from solvers.checks import FixedOptions

from ..validation import check_choice, check_positive_int, check_real
from .base import Attack
from .objectives import PGD_LOSSES, attack_loss_gradient
from .registry import register_attack

__all__ = ["NormBallPGD", "LinfPGD", "L2PGD", "RandomStartFGSM", "DEFAULT_STEP_FACTOR"]

#: default step size α = DEFAULT_STEP_FACTOR · ε / steps (the rule of thumb of MadryLab's ``robustness``
#: library: "set step_size to 2.5 * eps / steps")
DEFAULT_STEP_FACTOR = 2.5

_HASH_MULT = np.int64(0x9E3779B1)  # a golden-ratio multiplier
_HASH_MOD = np.int64(2**31 - 1)  # a prime: i ↦ i·M mod p scatters the weights of neighbouring positions


def batch_hash(x, labels):
    """An int64 scalar from the bits of ``x`` (B, ...) float32 and ``labels`` (B,): a weighted sum with
    position weights (i · M) mod p, so that batches that differ in any pixel, label or order give different
    values (integer arithmetic wraps; no RNG state)."""
    def weighted(values):
        i = tf.range(1, tf.size(values, out_type=tf.int64) + 1, dtype=tf.int64)
        return tf.reduce_sum(values * (tf.math.floormod(i * _HASH_MULT, _HASH_MOD) + 1))

    bits = tf.cast(tf.reshape(tf.bitcast(tf.cast(x, tf.float32), tf.int32), [-1]), tf.int64)
    return weighted(bits) + weighted(tf.cast(tf.reshape(labels, [-1]), tf.int64) + 1) * 7919


class NormBallPGD(Attack, FixedOptions):
    """Projected gradient ascent over an ℓ_p ball ∩ the pixel box (abstract over the norm; see the module).

    Args:
        model: any Keras 3 image classifier (see :class:`~tfperceptual.attacks.base.Attack`).
        eps: ε, the ball's radius in the attack's norm (pixels in [0, 1]); assignable later (a variable: a
            traced graph follows it).
        steps: gradient steps, ≥ 1.
        step_size: α, the absolute step size (> 0); ``None``: 2.5 · ε / steps (follows ε).
        random_start: start from a uniform sample of the ε ball (clipped to the box).
        seed: int ≥ 0 or ``None`` (see the module docstring).
        loss: keyword-only; ``"ce"`` (cross-entropy, Madry et al.), ``"cw"`` (Carlini–Wagner margin, capped at
            ``confidence``) or ``"kl"`` (KL from the clean prediction: TRADES' inner maximisation).
        confidence: keyword-only; κ, the cap of the CW margin (50, as the SSIM-ball attacks).
        batch_size: keyword-only; images per graph call of ``__call__``.

    Raises:
        ValueError / TypeError: ε out of range, steps < 1, step_size ≤ 0, an unknown loss, a negative seed.
    """

    norm = ""
    _FIXED = ("steps", "random_start", "loss", "confidence", "seed", "model", "bounds", "norm")

    #: perturb takes ``step``, folded into the random start's seed
    takes_step_seed = True

    def __init__(self, model, eps, steps=10, step_size=None, random_start=True, seed=None, *, loss="ce",
                 confidence=50.0, batch_size=256):
        super().__init__(model, batch_size)
        self.steps = check_positive_int(steps, "steps")
        self.random_start = bool(random_start)
        self.loss = check_choice(loss, "loss", PGD_LOSSES)
        if self.loss == "kl" and not self.random_start:
            raise ValueError("loss='kl' has a zero gradient at the clean image: it needs random_start=True")
        self.confidence = check_real(confidence, "confidence")
        self.seed = random.randrange(2**31 - 1) if seed is None else check_positive_int(seed, "seed", minimum=0)
        self._eps_var = tf.Variable(self._check_eps(eps), dtype=tf.float32, trainable=False, name="eps")
        self._step_var = tf.Variable(1.0, dtype=tf.float32, trainable=False, name="step_size")
        self._relative_var = tf.Variable(True, trainable=False, name="relative_step_size")
        self.step_size = step_size
        self._run = tf.function(self._perturb_impl, reduce_retracing=True)

    # ------------------------------------------------------------------ options
    def _check_eps(self, value):
        return check_real(value, f"eps ({self.eps_unit})", *self.eps_range)

    @property
    def eps(self) -> float:
        """ε, the radius of the ball in the attack's norm."""
        return float(self._eps_var.numpy())

    @eps.setter
    def eps(self, value):
        self._eps_var.assign(self._check_eps(value))

    @property
    def step_size(self):
        """α, the absolute step size, or ``None`` for 2.5 · ε / steps."""
        return None if bool(self._relative_var.numpy()) else float(self._step_var.numpy())

    @step_size.setter
    def step_size(self, value):
        self._step_var.assign(self._default_step_factor() if value is None
                              else check_real(value, "step_size", 0.0, None))
        self._relative_var.assign(value is None)

    def _default_step_factor(self):
        return DEFAULT_STEP_FACTOR / self.steps

    def _alpha(self):
        # variables, so that a traced graph follows an assignment: α/ε when relative (ε may be assigned
        # later), α otherwise
        return tf.where(self._relative_var, self._step_var * self._eps_var, self._step_var)

    # ------------------------------------------------------------------ the norm
    def _direction(self, g):
        raise NotImplementedError

    def _project(self, delta, eps):
        raise NotImplementedError

    def _random_delta(self, shape, seed, eps):
        raise NotImplementedError

    # ------------------------------------------------------------------ the loop
    def _loss_gradient(self, x, labels, targets, targeted, reference):
        return attack_loss_gradient(self.model, x, labels, targets if targeted else None, self.loss, self.confidence,
                                    reference)

    def _perturb_impl(self, x0, labels, targets, step, targeted):
        b0, b1 = self.bounds
        eps = self._eps_var.read_value()
        alpha = self._alpha()
        reference = self.model(x0, training=False) if self.loss == "kl" else None
        x = x0
        if self.random_start:
            seed = tf.random.experimental.stateless_fold_in(tf.constant([self.seed, 0], tf.int64),
                                                            batch_hash(x0, labels))
            seed = tf.random.experimental.stateless_fold_in(seed, step)
            x = tf.clip_by_value(x0 + self._random_delta(tf.shape(x0), seed, eps), b0, b1)
        for _ in tf.range(self.steps):
            g = self._loss_gradient(x, labels, targets, targeted, reference)
            x = x + alpha * self._direction(g)
            x = tf.clip_by_value(x0 + self._project(x - x0, eps), b0, b1)
        return x

    def perturb(self, x, labels, target=None, *, step=None):
        """Adversarial images, as a tensor: see :meth:`tfperceptual.attacks.base.Attack.perturb`. The last
        iterate of ``steps`` steps, in the ε ball of ``x`` and in [0, 1].

        ``step``: optional int scalar (tensor) folded into the random start's seed (e.g. the training step).
        """
        x = tf.cast(x, tf.float32)
        labels = tf.cast(labels, tf.int64)
        targets = labels if target is None else tf.cast(target, tf.int64)
        step = tf.zeros((), tf.int64) if step is None else tf.cast(step, tf.int64)
        return self._run(x, labels, targets, step, target is not None)

    def _attack_batch(self, x, labels, target, return_iterates):
        adv = self.perturb(tf.constant(x), tf.constant(labels, tf.int64),
                           None if target is None else tf.constant(target, tf.int64))
        pred = self.model.predicted_class(adv).numpy()
        adv = adv.numpy()
        n = len(x)
        return {"adversarial": adv, "success": (pred == target) if target is not None else (pred != labels),
                "steps": np.full(n, self.steps, np.int32), "adv_labels": pred, "failed": np.zeros(n, bool),
                "messages": [""] * n, "iterates": adv[None] if return_iterates else None}


@register_attack("linf_pgd")
class LinfPGD(NormBallPGD):
    """ℓ∞ projected gradient descent (Madry et al. 2018), graph-pure: see :class:`NormBallPGD`.

    ``eps`` in (0, 1): every pixel moves by at most ε; the step is α · sign(g)."""

    norm = "linf"
    eps_unit = "ℓ∞ budget"
    eps_range = (0.0, 1.0)

    def _direction(self, g):
        return tf.sign(g)

    def _project(self, delta, eps):
        return tf.clip_by_value(delta, -eps, eps)

    def _random_delta(self, shape, seed, eps):
        return tf.random.stateless_uniform(shape, seed, -1.0, 1.0) * eps


def _l2_norms(t):
    """‖t_i‖₂ per image of (B, ...) as (B, 1, 1, 1)-broadcastable, floored at 1e-12 (Foolbox's floor)."""
    n = tf.sqrt(tf.reduce_sum(tf.square(t), axis=tf.range(1, tf.rank(t)), keepdims=True))
    return tf.maximum(n, 1e-12)


@register_attack("l2_pgd")
class L2PGD(NormBallPGD):
    """ℓ2 projected gradient descent (Madry et al. 2018), graph-pure: see :class:`NormBallPGD`.

    ``eps`` > 0: ‖x − x₀‖₂ ≤ ε over all pixels and channels; the step is α · g / ‖g‖₂."""

    norm = "l2"
    eps_unit = "ℓ2 budget"
    eps_range = (0.0, None)

    def _direction(self, g):
        return g / _l2_norms(g)

    def _project(self, delta, eps):
        return delta * tf.minimum(1.0, eps / _l2_norms(delta))

    def _random_delta(self, shape, seed, eps):
        # Voelker et al. (2017): the first n coordinates of a uniform point on the sphere in n + 2
        # dimensions are uniform in the n-ball
        b = shape[0]
        n = tf.reduce_prod(shape[1:])
        z = tf.random.stateless_normal(tf.stack([b, n + 2]), seed)
        z = z / tf.norm(z, axis=1, keepdims=True)
        return tf.reshape(z[:, :n], shape) * eps


@register_attack("fgsm_rs")
class RandomStartFGSM(LinfPGD):
    """FGSM with a uniform random start (Wong, Rice & Kolter 2020, Algorithm 3), graph-pure.

    δ ~ U(−ε, ε); x' = clip(x + Π_ε(δ + α · sign(∇ₓ loss(x + δ)))), α = ``step_size``; ``None`` (default)
    means the paper's 1.25 ε and follows an assigned ε.  One step whatever ``steps`` is (accepted, as by the FGSM wrapper, for
    the registry's common signature ``build_attack(name, model, eps, steps)``).

    Raises:
        ValueError / TypeError: the errors of :class:`LinfPGD`.
    """

    def __init__(self, model, eps, step_size=None, seed=None, *, loss="ce", confidence=50.0, batch_size=256, steps=1):
        check_positive_int(steps, "steps")
        super().__init__(model, eps, steps=1, step_size=step_size, random_start=True, loss=loss,
                         confidence=confidence, seed=seed, batch_size=batch_size)

    def _default_step_factor(self):
        return 1.25
