"""Build any attack of the project by name: the six attacks of the comparison."""

from __future__ import annotations

__all__ = ["ATTACK_NAMES", "build_attack", "DEFAULT_EPS_GRIDS", "EPS_GRIDS_BY_DATA", "EPS_UNITS"]

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
    "pgap": [0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7],
    "fgsm": [0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4],
    "pgd": [0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4],
    "fgm": [0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0],
    "pgd_l2": [0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0],
}


# CIFAR-10 / ImageNet: the paper compares at SSIM 0.998 and PSNR 57 / 65 dB, i.e. perturbations
# below one 8-bit grey level on average, so the grids are small; ℓ2 grids scale with √N.
_SMALL_SSIM = [0.005, 0.01, 0.02, 0.03, 0.045, 0.06, 0.1, 0.15, 0.2]
_SMALL_LINF = [0.0002, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.03]
_L2_CIFAR = [0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6]

#: ε grids per dataset of ``tfperceptual compare --data``
EPS_GRIDS_BY_DATA = {
    "mnist": DEFAULT_EPS_GRIDS,
    "cifar10": {"fpgap": _SMALL_SSIM, "pgap": _SMALL_SSIM, "fgsm": _SMALL_LINF, "pgd": _SMALL_LINF,
                "fgm": _L2_CIFAR, "pgd_l2": _L2_CIFAR},
    "imagenet": {"fpgap": _SMALL_SSIM, "pgap": _SMALL_SSIM, "fgsm": _SMALL_LINF, "pgd": _SMALL_LINF,
                 "fgm": [round(e * 7.1, 4) for e in _L2_CIFAR], "pgd_l2": [round(e * 7.1, 4) for e in _L2_CIFAR]},
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
