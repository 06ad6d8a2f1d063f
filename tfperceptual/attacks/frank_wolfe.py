"""Frank–Wolfe attacks over ℓ1-q and ℓ2 balls: :class:`L1QFrankWolfe` and :class:`L2FrankWolfe` (graph-pure).

Roberts & Tsiligkaridis, "Controllably Sparse Perturbations of Robust Classifiers for Explaining Predictions
and Probing Learned Concepts" (MLVis 2021).  Both run the conditional-gradient loop of
:func:`solvers.frank_wolfe.frank_wolfe` — δ₀ = 0, δ_{k+1} = (1 − γ_k) δ_k + γ_k s_k, γ_k = c / (c + k) —
with the linear oracle of their ball (:mod:`solvers.norm_balls`):

* ℓ1-q: the q-fraction of entries with the largest |g| get sign(g) · ε / k (the paper's Algorithm 1), so the
  perturbation is sparse, with sparsity set by q; ``box="exact"`` solves that step over the box too (a
  fractional knapsack), ``"clip"`` clips each iterate (the authors' code), ``"none"`` leaves the box alone.
* ℓ2: s = ε g / ‖g‖ (``box="clip"`` / ``"none"``) or the exact ℓ2 ball ∩ box (``"exact"``).

Unlike PGD there is no step size to tune and no projection: every iterate is a convex combination of
oracle answers.  The attacks run all ``steps`` (no early stop: a counterfactual wants the model's confidence,
not only a label change).  ``q`` is the fraction of entries *modified*; the authors' q is the quantile of
|g| zeroed (ours = 1 − theirs: their q = 0.95 is our 0.05).  ``q_jitter`` j draws each image's q per step
from U(q − j, q + j) (``rai-toolbox``'s ``dq``), clipped to [1/N, 1], from a stateless seed (``seed``, the
batch, ``step``), like the random start of :mod:`tfperceptual.attacks.pgd`.
"""

from __future__ import annotations

import random

import numpy as np
import tensorflow as tf

from solvers.checks import FixedOptions
from solvers.frank_wolfe import check_fw_options, frank_wolfe
from solvers.norm_balls import L1QOracle, L2BoxOracle, L2Oracle, check_q

from ..validation import check_choice, check_positive_int, check_real
from .base import Attack
from .objectives import LOSSES, attack_loss_gradient
from .pgd import batch_hash
from .registry import register_attack

__all__ = ["FrankWolfeAttack", "L1QFrankWolfe", "L2FrankWolfe"]


class FrankWolfeAttack(Attack, FixedOptions):
    """The Frank–Wolfe loop as an :class:`~tfperceptual.attacks.base.Attack` over a norm-ball oracle (abstract).

    Subclasses build :attr:`oracle` (a :class:`solvers.norm_balls.NormBallOracle`, float32) before calling
    this constructor.

    Args:
        model: any Keras 3 image classifier (see :class:`~tfperceptual.attacks.base.Attack`).
        steps: FW steps, ≥ 1 (30 in the paper).
        c: γ_k = c / (c + k), > 0 (2 in the authors' code).
        box: ``"exact"``, ``"clip"`` or ``"none"`` (see the module docstring).
        loss: ``"ce"`` (cross-entropy: untargeted CE(y), targeted −CE(t), the paper's) or ``"cw"``.
        confidence: κ of the CW margin.
        seed: int ≥ 0 or ``None`` (a random one), the seed of ``q_jitter``.
        batch_size: images per graph call of ``__call__``.
    """

    eps_range = (0.0, None)
    takes_step_seed = True
    _FIXED = ("steps", "c", "box", "loss", "confidence", "seed", "model", "bounds", "q", "q_jitter", "oracle", "norm")

    def __init__(self, model, steps=30, c=2.0, box="exact", loss="ce", confidence=50.0, seed=None, batch_size=256):
        super().__init__(model, batch_size)
        self.steps, self.c, self.box = check_fw_options(steps, c, box)
        self.loss = check_choice(loss, "loss", LOSSES)
        self.confidence = check_real(confidence, "confidence")
        self.seed = random.randrange(2**31 - 1) if seed is None else check_positive_int(seed, "seed", minimum=0)
        self._run = tf.function(self._run_impl, reduce_retracing=True)

    @property
    def eps(self) -> float:
        """ε, the ball's radius in its norm over all pixels and channels (pixels in [0, 1])."""
        return self.oracle.eps

    @eps.setter
    def eps(self, value):
        self.oracle.eps = check_real(value, f"eps ({self.eps_unit})", 0.0, None)

    def _counts(self, x0, labels, step):
        return None

    def _run_impl(self, x0, labels, targets, step, targeted, record):
        targets_or_none = targets if targeted else None

        def gradient(x, k):
            return attack_loss_gradient(self.model, x, labels, targets_or_none, self.loss, self.confidence)

        return frank_wolfe(gradient, x0, self.oracle, self.steps, self.c, self.box, self.bounds,
                           counts=self._counts(x0, labels, step), record=record)

    def perturb(self, x, labels, target=None, *, step=None):
        """Adversarial images, as a tensor: see :meth:`tfperceptual.attacks.base.Attack.perturb`.  The last FW
        iterate, in the ball of ``x`` (and in [0, 1] unless ``box="none"``).

        ``step``: optional int scalar (tensor) folded into the seed of ``q_jitter`` (e.g. the training step).
        """
        x = tf.cast(x, tf.float32)
        labels = tf.cast(labels, tf.int64)
        targets = labels if target is None else tf.cast(target, tf.int64)
        step = tf.zeros((), tf.int64) if step is None else tf.cast(step, tf.int64)
        return self._run(x, labels, targets, step, target is not None, False)["x"]

    def _attack_batch(self, x, labels, target, return_iterates):
        targeted = target is not None
        y = tf.constant(labels, tf.int64)
        out = self._run(tf.constant(x), y, tf.constant(target, tf.int64) if targeted else y,
                        tf.zeros((), tf.int64), targeted, bool(return_iterates))
        adv = out["x"]
        pred = self.model.predicted_class(adv).numpy()
        adv = adv.numpy()
        failed = out["failed"].numpy()
        n = len(x)
        return {"adversarial": adv, "success": ((pred == target) if targeted else (pred != labels)) & ~failed,
                "steps": np.full(n, self.steps, np.int32), "adv_labels": pred, "failed": failed,
                "messages": ["the oracle could not certify a step; the image kept its last certified iterate"
                             if f else "" for f in failed],
                "iterates": out["iterates"].numpy() if return_iterates else None}


@register_attack("l1q_fw")
class L1QFrankWolfe(FrankWolfeAttack):
    """Frank–Wolfe over the ℓ1 ball with the ℓ1-q step (Roberts & Tsiligkaridis 2021, Algorithm 1), graph-pure.

    Args:
        model: any Keras 3 image classifier (see :class:`~tfperceptual.attacks.base.Attack`).
        eps: ε > 0, the ℓ1 budget Σ|δ| over all pixels and channels (pixels in [0, 1]).
        q: fraction of entries an FW step modifies, in (0, 1] (the authors' q = 1 − this).
        steps, c: FW steps (≥ 1) and γ_k = c / (c + k) (c > 0).
        q_jitter: j in [0, 1): each image's q per step is drawn from U(q − j, q + j), clipped to [1/N, 1].
        box: ``"exact"`` (the step solved over the box: every iterate in [0, 1] and the ball), ``"clip"``
            (each iterate clipped, as the authors' code) or ``"none"``.
        loss: ``"ce"`` (default) or ``"cw"``.
        seed: int ≥ 0 or ``None``; the seed of ``q_jitter``.
        confidence, batch_size: keyword-only, see :class:`FrankWolfeAttack`.

    Raises:
        ValueError / TypeError: ε ≤ 0, q outside (0, 1], steps < 1, c ≤ 0, q_jitter outside [0, 1), an unknown
            box or loss, a negative seed.
    """

    norm = "l1"
    eps_unit = "ℓ1 budget"

    def __init__(self, model, eps, q=0.05, steps=30, c=2.0, q_jitter=0.0, box="exact", loss="ce", seed=None, *,
                 confidence=50.0, batch_size=256):
        self.q = check_q(q)
        self.q_jitter = check_real(q_jitter, "q_jitter", 0.0, 1.0, low_inclusive=True)
        box_ = check_choice(box, "box", ("exact", "clip", "none"))
        self.oracle = L1QOracle(check_real(eps, f"eps ({self.eps_unit})", 0.0, None), self.q,
                                "exact" if box_ == "exact" else "none", dtype="float32")
        super().__init__(model, steps, c, box, loss, confidence, seed, batch_size)

    def _counts(self, x0, labels, step):
        if self.q_jitter == 0:
            return None
        # N from the traced batch (static: a model of any image size has one per trace)
        n = int(np.prod(x0.shape[1:]))
        q, j = self.q, self.q_jitter
        k_max = min(n, int(np.ceil(min(q + j, 1.0) * n)) + 1)
        base = tf.random.experimental.stateless_fold_in(tf.constant([self.seed, 1], tf.int64), batch_hash(x0, labels))
        base = tf.random.experimental.stateless_fold_in(base, step)

        def counts(k):
            seed = tf.random.experimental.stateless_fold_in(base, tf.cast(k, tf.int64))
            draw = tf.random.stateless_uniform(tf.shape(x0)[:1], seed, q - j, q + j, dtype=tf.float64)
            draw = tf.clip_by_value(draw, 1.0 / n, 1.0)  # draws outside [1/N, 1] are clipped, not redrawn
            kk = tf.clip_by_value(tf.cast(tf.math.round(draw * n), tf.int32), 1, k_max)
            return kk, k_max

        return counts


@register_attack("l2_fw")
class L2FrankWolfe(FrankWolfeAttack):
    """Frank–Wolfe over the ℓ2 ball (the ℓ2 row of the paper's Fig. 3), graph-pure.

    Args:
        model: any Keras 3 image classifier.
        eps: ε > 0, the ℓ2 budget ‖δ‖₂ over all pixels and channels.
        steps, c, box, loss, seed: see :class:`L1QFrankWolfe` (``box="exact"``: the exact ℓ2 ball ∩ box step,
            certified per image).
        confidence, batch_size: keyword-only.

    Raises:
        ValueError / TypeError: ε ≤ 0, steps < 1, c ≤ 0, an unknown box or loss.
    """

    norm = "l2"
    eps_unit = "ℓ2 budget"

    def __init__(self, model, eps, steps=30, c=2.0, box="exact", loss="ce", seed=None, *, confidence=50.0,
                 batch_size=256):
        box_ = check_choice(box, "box", ("exact", "clip", "none"))
        eps = check_real(eps, f"eps ({self.eps_unit})", 0.0, None)
        self.oracle = L2BoxOracle(eps, dtype="float32") if box_ == "exact" else L2Oracle(eps, dtype="float32")
        super().__init__(model, steps, c, box, loss, confidence, seed, batch_size)
