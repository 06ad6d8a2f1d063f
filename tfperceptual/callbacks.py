"""Keras callbacks that watch attacks during training."""

from __future__ import annotations

import keras
import numpy as np

from .evaluation.quality import fooling_rate
from .models.adapter import as_logits_model
from .validation import check_images, check_labels, check_positive_int

__all__ = ["AdversarialEvaluation"]


class AdversarialEvaluation(keras.callbacks.Callback):
    """Run an attack on a fixed validation batch at the end of every ``every`` epochs.

    Adds to the epoch's ``logs`` (so ``History``, ``CSVLogger`` and
    ``TensorBoard`` record them):

    * ``adv_fooling_rate``: fraction of images whose label changes under the
      attack (pre-attack = the model's current prediction, paper Sec. V);
    * ``adv_mean_ssim``, ``adv_mean_psnr``: image quality of the adversarials;
    * ``adv_accuracy``: accuracy on the adversarials against ``y_val``.

    The attack must have been built on the model being trained (its layers
    are shared, so it sees the current weights).  :attr:`last_result` holds the
    latest :class:`~tfperceptual.attacks.AttackResult` (reset when training begins).

    Args:
        attack: an :class:`~tfperceptual.attacks.Attack` (PGAP, FPGAP, a Foolbox baseline...) or any
            callable ``attack(images, labels) -> AttackResult``.
        x_val: (B, H, W, C) float32 in [0, 1]; y_val: (B,) integer labels.
        every: keyword-only; run on epochs where ``(epoch + 1) % every == 0`` (≥ 1).

    Raises:
        TypeError / ValueError: a non-callable attack, bad validation data, every < 1.
    """

    def __init__(self, attack, x_val, y_val, *, every=1):
        super().__init__()
        if not callable(attack):
            raise TypeError("attack must be callable as attack(images, labels)")
        self.attack = attack
        self.x_val = check_images(x_val, "x_val")
        num_classes = getattr(attack, "num_classes", int(np.max(y_val)) + 1)
        self.y_val = check_labels(y_val, len(self.x_val), num_classes, "y_val")
        self.every = check_positive_int(every, "every")
        self.last_result = None

    def on_train_begin(self, logs=None):
        self.last_result = None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or (epoch + 1) % self.every:
            return
        model = as_logits_model(getattr(self.attack, "model", None) or self.model)
        clean = model.predicted_class(self.x_val).numpy()
        res = self.attack(self.x_val, clean)
        self.last_result = res
        logs["adv_fooling_rate"] = fooling_rate(clean, res.adv_labels)["fooling_rate"]
        logs["adv_mean_ssim"] = float(np.mean(res.ssim))
        logs["adv_mean_psnr"] = float(np.mean(res.psnr))
        logs["adv_accuracy"] = float(np.mean(res.adv_labels == self.y_val))
