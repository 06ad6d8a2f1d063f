"""Training inside ``Model.fit``: adversarial training (:class:`AdversarialTraining`: Madry et al.'s PGD
training, TRADES, FGSM with random start, and SSIM-ball training with FPGAP / PGAP), and perceptual
regularisation (:class:`PerceptualRegularization`: a decoder head that shows what the classifier perceives)."""

from .adversarial import METHODS, AdversarialTraining
from .perceptual import (PerceptualRegularization, cifar10_perceptual_parts, default_decoder, from_classifier,
                         interpolate, latent_direction, mnist_perceptual_parts)

__all__ = ["AdversarialTraining", "METHODS", "PerceptualRegularization", "mnist_perceptual_parts",
           "cifar10_perceptual_parts", "from_classifier", "default_decoder", "latent_direction", "interpolate"]
