"""Build any attack of the project by name: the six attacks of the comparison."""

from __future__ import annotations

__all__ = ["ATTACK_NAMES", "build_attack", "DEFAULT_EPS_GRIDS", "EPS_UNITS"]

ATTACK_NAMES = ("fpgap", "pgap", "fgsm", "fgm", "pgd", "pgd_l2")

#: what ε means for each attack
EPS_UNITS = {
    "fpgap": "SSIM-ball radius ε (S2 ≥ 1 − ε²)",
    "pgap": "SSIM-ball radius ε (S2 ≥ 1 − ε²)",
    "fgsm": "ℓ∞ budget",
    "fgm": "ℓ2 budget",
    "pgd": "ℓ∞ budget",
    "pgd_l2": "ℓ2 budget",
}

#: default ε sweeps for 28×28 greyscale images (MNIST); ℓ2 grids scale with √N
DEFAULT_EPS_GRIDS = {
    "fpgap": [0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7],
    "pgap": [0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5],  # exact steps cost ~20 ms/image; smaller ε lie outside all targets
    "fgsm": [0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4],
    "pgd": [0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4],
    "fgm": [0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0],
    "pgd_l2": [0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0],
}


def build_attack(name, model, eps, steps=50, batch_size=None, **kwargs):
    """Return the attack ``name`` (see :data:`ATTACK_NAMES`) on ``model`` with budget ``eps``."""
    from .attacks import FPGAP, PGAP
    from .baselines import FoolboxAttack

    extra = {} if batch_size is None else {"batch_size": batch_size}
    if name == "fpgap":
        return FPGAP(model, eps=eps, steps=steps, **extra, **kwargs)
    if name == "pgap":
        return PGAP(model, eps=eps, steps=steps, **extra, **kwargs)
    if name in ("fgsm", "fgm", "pgd", "pgd_l2"):
        return FoolboxAttack(model, name, eps=eps, steps=steps, **extra, **kwargs)
    raise ValueError(f"unknown attack {name!r}; choose from {ATTACK_NAMES}")
