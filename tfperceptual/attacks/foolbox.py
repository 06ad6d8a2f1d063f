"""Foolbox 3 baselines behind the same interface as the project's attacks.

``FoolboxAttack(model, "fgsm" | "fgm" | "pgd" | "pgd_l2", eps=…)`` wraps
Foolbox's ``LinfFastGradientAttack`` (FGSM), ``L2FastGradientAttack`` (FGM),
``LinfPGD`` and ``L2PGD`` (50 steps, as in the paper; Foolbox's default
relative step sizes and random start).  With fewer steps than Foolbox's default (40 for
``LinfPGD``, 50 for ``L2PGD``) the relative step size is scaled up by default/steps so the
iterates can still cross the ε ball (Foolbox's 0.0333 × 10 steps would reach a third of it);
an explicit ``rel_stepsize`` is used as given.  Calling it as ``attack(images,
labels)`` returns an :class:`tfperceptual.attacks.AttackResult`.  The attacks
themselves are Foolbox's, not reimplemented; the model is wrapped with
``foolbox.TensorFlowModel`` over its logits model (bounds (0, 1)).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .attacks import AttackResult
from .metrics import psnr, ssim
from .model_adapter import as_logits_model, input_shape_of
from .validation import check_images, check_labels

__all__ = ["FoolboxAttack", "FOOLBOX_ATTACKS", "FGSM", "FGM", "PGD", "PGD_L2"]

#: Foolbox 3.3 defaults of the PGD attacks: (steps, rel_stepsize)
FOOLBOX_PGD_DEFAULTS = {"LinfPGD": (40, 0.01 / 0.3), "L2PGD": (50, 0.025)}

#: name → (Foolbox class name, norm, iterative)
FOOLBOX_ATTACKS = {
    "fgsm": ("LinfFastGradientAttack", "linf", False),
    "fgm": ("L2FastGradientAttack", "l2", False),
    "pgd": ("LinfPGD", "linf", True),
    "pgd_l2": ("L2PGD", "l2", True),
}


class FoolboxAttack:
    """A Foolbox attack with the project's call signature.

    Args:
        model: Keras 3 classifier (any output kind; see :mod:`tfperceptual.model_adapter`).
        attack: one of ``"fgsm"``, ``"fgm"``, ``"pgd"``, ``"pgd_l2"``.
        eps: perturbation budget in the attack's norm (ℓ∞ or ℓ2, pixels in [0, 1]); > 0.
        steps: iterations of the PGD attacks (ignored by FGSM/FGM); below Foolbox's default step
            count the relative step size is scaled up (see the module docstring).
        batch_size: images per Foolbox call.
        **kwargs: passed to the Foolbox attack's constructor (e.g. ``rel_stepsize``).
    """

    def __init__(self, model, attack="fgsm", eps=0.1, steps=50, batch_size=256, **kwargs):
        import foolbox as fb

        if attack not in FOOLBOX_ATTACKS:
            raise ValueError(f"attack must be one of {sorted(FOOLBOX_ATTACKS)}, got {attack!r}")
        self.name = attack
        cls_name, self.norm, iterative = FOOLBOX_ATTACKS[attack]
        self.model = as_logits_model(model)
        self.input_shape = input_shape_of(self.model)
        self.num_classes = self.model.num_classes
        self.steps = int(steps) if iterative else 1
        cls = getattr(fb.attacks, cls_name)
        if iterative and "rel_stepsize" not in kwargs and "abs_stepsize" not in kwargs:
            default_steps, default_rel = FOOLBOX_PGD_DEFAULTS[cls_name]
            kwargs["rel_stepsize"] = default_rel * max(1.0, default_steps / self.steps)
        self.rel_stepsize = kwargs.get("rel_stepsize")
        self.attack = cls(steps=self.steps, **kwargs) if iterative else cls(**kwargs)
        # Foolbox calls the model without a training flag; a Keras model with batch normalisation can
        # then run on batch statistics (the zoo MobileNet did): always attack the inference-mode model
        logits_model = self.model
        self.fmodel = fb.TensorFlowModel(lambda t: logits_model(t, training=False), bounds=(0.0, 1.0))
        self.eps = eps
        self.batch_size = int(batch_size)

    @property
    def eps(self) -> float:
        return self._eps

    @eps.setter
    def eps(self, value):
        value = float(value)
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"eps must be a positive {self.norm} budget, got {value}")
        self._eps = value

    def __call__(self, images, labels, target=None, return_iterates=False) -> AttackResult:
        """Attack ``images`` (B, H, W, C) float32 in [0, 1] with integer ``labels`` (B,)."""
        import foolbox as fb

        x = check_images(images, "images", (0.0, 1.0), self.input_shape)
        y = check_labels(labels, len(x), self.num_classes, "labels")
        t = None if target is None else check_labels(target, len(x), self.num_classes, "target")
        advs, preds = [], []
        for i in range(0, len(x), self.batch_size):
            xb = tf.constant(x[i:i + self.batch_size])
            lb = tf.constant(y[i:i + self.batch_size])
            crit = lb if t is None else fb.criteria.TargetedMisclassification(tf.constant(t[i:i + self.batch_size]))
            _, clipped, _ = self.attack(self.fmodel, xb, crit, epsilons=self._eps)
            adv = np.clip(np.asarray(clipped, np.float32), 0.0, 1.0)
            advs.append(adv)
            preds.append(np.argmax(self.model(tf.constant(adv), training=False).numpy(), -1))
        adv = np.concatenate(advs)
        pred = np.concatenate(preds)
        success = (pred == t) if t is not None else (pred != y)
        n = len(x)
        return AttackResult(adversarial=adv, success=success, steps=np.full(n, self.steps, np.int32),
                            ssim=ssim(x, adv), psnr=psnr(x, adv), adv_labels=pred,
                            failed=np.zeros(n, bool), messages=[""] * n,
                            iterates=adv[None] if return_iterates else None, epsilon=self._eps)


def FGSM(model, eps, **kw):
    """Foolbox ℓ∞ fast gradient sign method."""
    return FoolboxAttack(model, "fgsm", eps, **kw)


def FGM(model, eps, **kw):
    """Foolbox ℓ2 fast gradient method."""
    return FoolboxAttack(model, "fgm", eps, **kw)


def PGD(model, eps, steps=50, **kw):
    """Foolbox ℓ∞ projected gradient descent."""
    return FoolboxAttack(model, "pgd", eps, steps=steps, **kw)


def PGD_L2(model, eps, steps=50, **kw):
    """Foolbox ℓ2 projected gradient descent."""
    return FoolboxAttack(model, "pgd_l2", eps, steps=steps, **kw)
