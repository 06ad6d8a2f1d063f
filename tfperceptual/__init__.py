"""tfperceptual: perceptually constrained adversarial perturbations for Keras models."""

__version__ = "0.1.0"
