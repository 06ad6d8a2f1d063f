"""Keras callbacks that watch attacks (:class:`AdversarialEvaluation`) and perceptions
(:class:`PerceptionSnapshot`) during training."""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from .evaluation.quality import fooling_rate
from .io_utils import atomic_savefig
from .models.adapter import as_logits_model
from .validation import check_images, check_labels, check_positive_int

__all__ = ["AdversarialEvaluation", "PerceptionSnapshot"]


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


class PerceptionSnapshot(keras.callbacks.Callback):
    """A grid of x | P(x) for fixed images after every ``every`` epochs, for a model with ``perceive(x)`` (a
    :class:`~tfperceptual.training.PerceptualRegularization`): to TensorBoard (``tf.summary.image`` under
    ``log_dir``, one image ``perception`` per logged epoch) and/or PNG files ``perception_epoch{N:03d}.png`` under
    ``out_dir``.  It adds nothing to ``logs`` (``EarlyStopping`` and ``History`` see the model's metrics only).

    Args:
        x_val: (B, H, W, C) float in [0, 1], the images shown (a few: each is a column).
        every: keyword-only; epochs where ``(epoch + 1) % every == 0`` (≥ 1).
        log_dir, out_dir: keyword-only; where to write (at least one).

    Attributes:
        written: the PNG paths written in this training (reset in ``on_train_begin``).

    Raises:
        TypeError / ValueError: bad images, every < 1, neither log_dir nor out_dir; at ``on_train_begin``, a model
            without ``perceive``.
    """

    def __init__(self, x_val, *, every=1, log_dir=None, out_dir=None):
        super().__init__()
        self.x_val = check_images(x_val, "x_val")
        self.every = check_positive_int(every, "every")
        if log_dir is None and out_dir is None:
            raise ValueError("PerceptionSnapshot needs log_dir (TensorBoard) or out_dir (PNG files), or both")
        self.log_dir, self.out_dir = log_dir, out_dir
        self.written = []
        self._writer = None

    def _perceiver(self):
        """The model being trained, or the one an AdversarialTraining wrapper trains, if it has ``perceive``."""
        for model in (self.model, getattr(self.model, "classifier", None)):
            if callable(getattr(model, "perceive", None)):
                return model
        return None

    def on_train_begin(self, logs=None):
        if self._perceiver() is None:
            raise TypeError(f"PerceptionSnapshot needs a model with perceive(x) (a PerceptualRegularization, or an "
                            f"AdversarialTraining of one), got {type(self.model).__name__}")
        self.written = []
        if self.log_dir is not None:
            self._writer = tf.summary.create_file_writer(os.fspath(self.log_dir))
        if self.out_dir is not None:
            os.makedirs(self.out_dir, exist_ok=True)

    def grid(self):
        """(2 H, B W, C) float32 NumPy: the images on top, their perceptions below."""
        p = np.asarray(self._perceiver().perceive(tf.constant(self.x_val)), np.float32)
        return np.concatenate([np.concatenate(list(self.x_val), 1), np.concatenate(list(p), 1)], 0)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        g = self.grid()
        if self._writer is not None:
            with self._writer.as_default():
                tf.summary.image("perception", g[None], step=epoch)
            self._writer.flush()
        if self.out_dir is not None:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(1.0 * len(self.x_val), 2.2))
            ax.imshow(g.squeeze(-1) if g.shape[-1] == 1 else g, cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"epoch {epoch + 1}: x (top) and the model's perception P(x) (bottom)", fontsize=8)
            ax.axis("off")
            path = os.path.join(self.out_dir, f"perception_epoch{epoch + 1:03d}.png")
            atomic_savefig(fig, path, dpi=100)
            plt.close(fig)
            self.written.append(path)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
