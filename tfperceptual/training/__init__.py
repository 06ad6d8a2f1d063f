"""Training inside ``Model.fit``: adversarial training (:class:`AdversarialTraining`: Madry et al.'s PGD
training, TRADES, FGSM with random start, and SSIM-ball training with FPGAP / PGAP)."""

from .adversarial import METHODS, AdversarialTraining

__all__ = ["AdversarialTraining", "METHODS"]
