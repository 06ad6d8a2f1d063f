"""Foolbox 3 baselines behind the project's :class:`~tfperceptual.attacks.base.Attack` interface.

``FoolboxAttack(model, "fgsm" | "fgm" | "pgd" | "pgd_l2" | "sparse_l1" | "ead", eps=…)`` (or the registered
classes :class:`FGSM`, :class:`FGM`, :class:`PGD`, :class:`PGD_L2`, :class:`SparseL1Descent`, :class:`EAD`)
wraps Foolbox's ``LinfFastGradientAttack`` (FGSM), ``L2FastGradientAttack`` (FGM), ``LinfPGD`` and ``L2PGD``
(50 steps, as in the paper; Foolbox's default relative step sizes and random start), and the ℓ1 baselines of
the Frank–Wolfe attacks: ``SparseL1DescentAttack`` (Tramèr & Boneh 2019: projected gradient with the top
1 − quantile of |g|, Foolbox's defaults: quantile 0.99, no random start) and ``EADAttack`` (Chen et al. 2018,
elastic-net minimisation; success counted where its ℓ1 norm is within ε).  With fewer steps than Foolbox's
default (40 for ``LinfPGD``, 50 for ``L2PGD``) the relative step size is scaled up by default/steps so the
iterates can still cross the ε ball (Foolbox's 0.0333 × 10 steps would reach a third of it);
an explicit ``rel_stepsize`` is used as given.  The attacks themselves are Foolbox's, not
reimplemented; the model is wrapped with ``foolbox.TensorFlowModel`` over its logits model
(bounds (0, 1)) in inference mode.

These attacks are **not graph-pure**: Foolbox runs eagerly through EagerPy with Python control flow, so
they offer ``attack(images, labels)`` only, and ``perturb`` raises ``NotImplementedError`` (the
project's own graph-pure attacks are :class:`~tfperceptual.attacks.PGAP` and
:class:`~tfperceptual.attacks.FPGAP`).

**Seeds.**  Foolbox's PGD draws its random start with ``tf.random.uniform`` and takes no seed.  With
``seed=s`` every internal batch first calls ``tf.random.set_seed`` with a seed derived from ``s``, the
attack, ε and the batch's own pixels and labels: the same batch gets the same random start whatever ran
before it (so a run, its resumption and a calibration on the same images agree).  This sets TensorFlow's
global seed as a side effect; ``seed=None`` (default) leaves it alone and Foolbox unseeded.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..io_utils import digest
from ..validation import check_choice, check_positive_int, check_real
from .base import Attack
from .registry import register_attack

__all__ = ["FoolboxAttack", "FOOLBOX_ATTACKS", "FOOLBOX_PGD_DEFAULTS", "FGSM", "FGM", "PGD", "PGD_L2",
           "SparseL1Descent", "EAD"]

#: Foolbox 3.3 defaults of the PGD attacks: (steps, rel_stepsize)
FOOLBOX_PGD_DEFAULTS = {"LinfPGD": (40, 0.01 / 0.3), "L2PGD": (50, 0.025), "SparseL1DescentAttack": (10, 0.2)}
#: Foolbox's default random start of each iterative attack
_RANDOM_START = {"LinfPGD": True, "L2PGD": True, "SparseL1DescentAttack": False}

#: name → (Foolbox class name, norm, iterative)
FOOLBOX_ATTACKS = {
    "fgsm": ("LinfFastGradientAttack", "linf", False),
    "fgm": ("L2FastGradientAttack", "l2", False),
    "pgd": ("LinfPGD", "linf", True),
    "pgd_l2": ("L2PGD", "l2", True),
    "sparse_l1": ("SparseL1DescentAttack", "l1", True),
    "ead": ("EADAttack", "l1", False),
}
#: minimisation attacks: ``steps`` are their optimiser's steps (no relative step size, no random start)
_MINIMIZATION = ("ead",)


class FoolboxAttack(Attack):
    """A Foolbox attack with the project's call signature (not graph-pure: see the module docstring).

    Args:
        model: Keras 3 classifier (any head; see :class:`tfperceptual.models.LogitsModel`).
        attack: one of ``"fgsm"``, ``"fgm"``, ``"pgd"``, ``"pgd_l2"``, ``"sparse_l1"``, ``"ead"``.
        eps: perturbation budget in the attack's norm (ℓ∞, ℓ2 or ℓ1, pixels in [0, 1]); > 0.
        steps: iterations of the PGD attacks, ≥ 1 (FGSM/FGM take one step whatever it is); below Foolbox's
            default step count the relative step size is scaled up (see the module docstring).
        batch_size: images per Foolbox call, ≥ 1.
        seed: ``None`` or an int: seeds each batch's random start (see the module docstring).
        **kwargs: passed to the Foolbox attack's constructor (e.g. ``rel_stepsize``).

    Raises:
        ValueError / TypeError: unknown attack, eps ≤ 0, steps or batch_size < 1, a non-integer seed.
    """

    graph_pure = False

    def __init__(self, model, attack="fgsm", eps=0.1, steps=50, batch_size=256, seed=None, **kwargs):
        import foolbox as fb

        check_choice(attack, "attack", tuple(FOOLBOX_ATTACKS))
        super().__init__(model, batch_size)
        self.name = attack
        cls_name, self.norm, iterative = FOOLBOX_ATTACKS[attack]
        self.eps_unit = f"{dict(linf='ℓ∞', l2='ℓ2', l1='ℓ1')[self.norm]} budget"
        steps = check_positive_int(steps, "steps")
        minimization = attack in _MINIMIZATION
        self.steps = steps if iterative or minimization else 1
        self.seed = None if seed is None else check_positive_int(seed, "seed", minimum=0)
        self._random_start = iterative and kwargs.get("random_start", _RANDOM_START.get(cls_name, False))
        cls = getattr(fb.attacks, cls_name)
        if iterative and "rel_stepsize" not in kwargs and "abs_stepsize" not in kwargs:
            default_steps, default_rel = FOOLBOX_PGD_DEFAULTS[cls_name]
            kwargs["rel_stepsize"] = default_rel * max(1.0, default_steps / self.steps)
        self.rel_stepsize = kwargs.get("rel_stepsize")
        self.attack = cls(steps=self.steps, **kwargs) if iterative or minimization else cls(**kwargs)
        # Foolbox calls the model without a training flag; a Keras model with batch normalisation can
        # then run on batch statistics (the zoo MobileNet did): always attack the inference-mode model
        logits_model = self.model
        self.fmodel = fb.TensorFlowModel(lambda t: logits_model(t, training=False), bounds=(0.0, 1.0))
        self.eps = eps

    @property
    def eps(self) -> float:
        """The budget in the attack's norm (> 0)."""
        return self._eps

    @eps.setter
    def eps(self, value):
        self._eps = check_real(value, f"eps ({self.norm} budget)", 0.0, None)

    def _batch_seed(self, x, labels, target):
        return int(digest(self.seed, self.name, self._eps, x, labels, target, length=8), 16) % (2**31 - 1)

    def _attack_batch(self, x, labels, target, return_iterates):
        import foolbox as fb

        if self.seed is not None and self._random_start:  # FGSM/FGM draw nothing
            tf.random.set_seed(self._batch_seed(x, labels, target))
        xb, lb = tf.constant(x), tf.constant(labels)
        crit = lb if target is None else fb.criteria.TargetedMisclassification(tf.constant(target))
        _, clipped, _ = self.attack(self.fmodel, xb, crit, epsilons=self._eps)
        adv = np.clip(np.asarray(clipped, np.float32), 0.0, 1.0)
        pred = self.model.predicted_class(adv).numpy()
        n = len(x)
        return {"adversarial": adv, "success": (pred == target) if target is not None else (pred != labels),
                "steps": np.full(n, self.steps, np.int32), "adv_labels": pred, "failed": np.zeros(n, bool),
                "messages": [""] * n, "iterates": adv[None] if return_iterates else None}


@register_attack("fgsm")
class FGSM(FoolboxAttack):
    """Foolbox ℓ∞ fast gradient sign method (``LinfFastGradientAttack``); ``eps`` is the ℓ∞ budget."""

    eps_unit = "ℓ∞ budget"

    def __init__(self, model, eps, steps=1, batch_size=256, seed=None, **kwargs):
        super().__init__(model, "fgsm", eps, steps, batch_size, seed, **kwargs)


@register_attack("fgm")
class FGM(FoolboxAttack):
    """Foolbox ℓ2 fast gradient method (``L2FastGradientAttack``); ``eps`` is the ℓ2 budget."""

    eps_unit = "ℓ2 budget"

    def __init__(self, model, eps, steps=1, batch_size=256, seed=None, **kwargs):
        super().__init__(model, "fgm", eps, steps, batch_size, seed, **kwargs)


@register_attack("pgd")
class PGD(FoolboxAttack):
    """Foolbox ℓ∞ projected gradient descent (``LinfPGD``, random start); ``eps`` is the ℓ∞ budget."""

    eps_unit = "ℓ∞ budget"

    def __init__(self, model, eps, steps=50, batch_size=256, seed=None, **kwargs):
        super().__init__(model, "pgd", eps, steps, batch_size, seed, **kwargs)


@register_attack("pgd_l2")
class PGD_L2(FoolboxAttack):  # noqa: N801 - the attack's name in the paper's tables
    """Foolbox ℓ2 projected gradient descent (``L2PGD``, random start); ``eps`` is the ℓ2 budget."""

    eps_unit = "ℓ2 budget"

    def __init__(self, model, eps, steps=50, batch_size=256, seed=None, **kwargs):
        super().__init__(model, "pgd_l2", eps, steps, batch_size, seed, **kwargs)


@register_attack("sparse_l1")
class SparseL1Descent(FoolboxAttack):
    """Foolbox's ``SparseL1DescentAttack`` (Tramèr & Boneh 2019); ``eps`` is the ℓ1 budget.  Foolbox's defaults:
    quantile 0.99 of |g| kept per step (1 %% of the entries, our ``q = 0.01``), relative step 0.2, no random
    start; ``steps`` default 10 (Foolbox's)."""

    eps_unit = "ℓ1 budget"

    def __init__(self, model, eps, steps=10, batch_size=256, seed=None, **kwargs):
        super().__init__(model, "sparse_l1", eps, steps, batch_size, seed, **kwargs)


@register_attack("ead")
class EAD(FoolboxAttack):
    """Foolbox's ``EADAttack`` (Chen et al. 2018, elastic-net regularised minimisation); ``eps`` is the ℓ1 budget
    within which a success counts (Foolbox clips the found perturbation to it).  ``steps`` are its optimiser's
    steps per binary-search step (Foolbox's default 10,000 is far beyond a CPU budget; here 100), with
    ``binary_search_steps`` (default 9) and the other options passed to Foolbox."""

    eps_unit = "ℓ1 budget"

    def __init__(self, model, eps, steps=100, batch_size=256, seed=None, **kwargs):
        super().__init__(model, "ead", eps, steps, batch_size, seed, **kwargs)
