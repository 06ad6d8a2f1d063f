"""The attack contract: :class:`Attack` (``perturb`` in graphs, ``__call__`` on NumPy batches) and
:class:`AttackResult`.

* ``attack.perturb(x, labels, target=None) -> x_adv`` takes and returns ``tf.Tensor`` s and is
  *graph-pure*: callable inside ``tf.function`` and inside a Keras ``train_step`` (also one that Keras
  compiles with XLA, its default on accelerators: ``perturb`` runs on fixed shapes without string ops, and
  XLA compiles it with the step), no NumPy, no Python side effects, no retrace per call at a fixed shape
  (ε lives in a ``tf.Variable``).  Attacks that cannot
  offer it say so (``graph_pure = False``): Foolbox's raise ``NotImplementedError`` from ``perturb``.
* ``attack(images, labels, target=None, *, metrics=True, return_iterates=False) -> AttackResult``
  validates the inputs, runs the attack batch by batch and fills the result; the image-quality metrics
  (SSIM, PSNR) are computed only with ``metrics=True``.
"""

from __future__ import annotations

import abc
import warnings
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from .. import image_ops
from ..models.adapter import as_logits_model
from ..validation import check_images, check_labels, check_positive_int

__all__ = ["Attack", "AttackResult", "ZeroGradientWarning"]


_ssim = tf.function(image_ops.ssim, reduce_retracing=True)  # float32, as tf.image.ssim
_psnr = tf.function(image_ops.psnr, reduce_retracing=True)  # float64 inside


class ZeroGradientWarning(RuntimeWarning):
    """The loss has a zero gradient with respect to the input at some images: the attack cannot move them."""


@dataclass
class AttackResult:
    """Outcome of an attack on a batch (NumPy arrays).

    Attributes:
        adversarial: (B, H, W, C) float32, pixels in [0, 1] (unless an SSIM-ball attack runs with
            ``box="ignore"`` or a Frank–Wolfe attack with ``box="none"``).
        success: (B,) bool — label changed (untargeted) or target reached.
        steps: (B,) int — steps taken (0 when the clean image already succeeds).
        ssim: (B,) float64 SSIM(original, adversarial) (:func:`tfperceptual.image_ops.ssim`, computed in
            float32 like ``tf.image.ssim``), or ``None`` with ``metrics=False``; NaN for images smaller than 11 × 11.
        psnr: (B,) float64 PSNR in dB, or ``None`` with ``metrics=False``.
        adv_labels: (B,) int64 labels the model predicts on ``adversarial``.
        failed: (B,) bool — the step solver failed on this image; it keeps its last
            verified iterate and ``messages[i]`` says why.
        messages: per-image messages ("" when none).
        iterates: optional (T, B, H, W, C) — the iterates when ``return_iterates=True``
            (T = steps run; images that stopped repeat their last iterate).
        epsilon: the attack's ε.
        zero_gradient: (B,) bool — the loss had zero gradient with respect to the input at the first
            step (the attack could not move the image).
    """

    adversarial: np.ndarray
    success: np.ndarray
    steps: np.ndarray
    ssim: np.ndarray | None
    psnr: np.ndarray | None
    adv_labels: np.ndarray
    failed: np.ndarray
    messages: list = field(default_factory=list)
    iterates: np.ndarray | None = None
    epsilon: float | None = None
    zero_gradient: np.ndarray | None = None

    @property
    def success_rate(self) -> float:
        """Fraction of images with ``success``."""
        return float(np.mean(self.success))

    @staticmethod
    def concatenate(parts):
        """Join results computed on consecutive batches."""
        it = [p.iterates for p in parts]
        if any(i is None for i in it):
            iterates = None
        else:
            t = max(i.shape[0] for i in it)
            iterates = np.concatenate([np.concatenate([i, np.repeat(i[-1:], t - i.shape[0], 0)]) for i in it], 1)

        def cat(name):
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else np.concatenate(values)

        return AttackResult(adversarial=cat("adversarial"), success=cat("success"), steps=cat("steps"),
                            ssim=cat("ssim"), psnr=cat("psnr"), adv_labels=cat("adv_labels"), failed=cat("failed"),
                            messages=sum((p.messages for p in parts), []), iterates=iterates,
                            epsilon=parts[0].epsilon, zero_gradient=cat("zero_gradient"))


class Attack(abc.ABC):
    """An adversarial attack on a Keras classifier (abstract; see the module docstring).

    Subclasses set ``eps`` (validated by their setter), implement :meth:`_attack_batch` (one NumPy batch
    → a dict of NumPy arrays) and, if ``graph_pure``, :meth:`perturb`.

    Args:
        model: any Keras 3 image classifier (functional, ``Sequential`` or subclassed with an input
            shape; logits, softmax or probability output), seen through
            :func:`tfperceptual.models.as_logits_model`.
        batch_size: images per internal batch of ``__call__``, ≥ 1.

    Attributes:
        name: the registry name (``tfperceptual.attacks.ATTACKS``).
        eps_unit: what ε measures; eps_range: the open interval it must lie in.
        graph_pure: whether :meth:`perturb` runs inside ``tf.function`` / ``train_step`` without Python (a
            ``False`` attack either raises ``NotImplementedError`` from ``perturb`` — Foolbox's — or runs
            Python at every step through ``tf.numpy_function`` — PGAP with CVXPY: inside ``tf.function`` on
            this host, not on other devices or under XLA).
        model: the :class:`~tfperceptual.models.LogitsModel`.
        num_classes, input_shape: K and (H, W, C) of the model.
    """

    name = ""
    eps_unit = ""
    #: the open interval ε must lie in (``None``: unbounded)
    eps_range = (0.0, None)
    graph_pure = True
    bounds = (0.0, 1.0)

    def __init__(self, model, batch_size=256):
        self.model = as_logits_model(model)
        self.input_shape = self.model.image_shape
        self.num_classes = self.model.num_classes
        self.batch_size = check_positive_int(batch_size, "batch_size")

    def perturb(self, x, labels, target=None):
        """Adversarial images for ``x`` (B, H, W, C) float32 in [0, 1], as a tensor of the same shape.

        ``labels`` (B,) int: the classes to move away from (untargeted) — with ``target`` (B,) int, the
        classes to reach.  Graph-pure: call it inside ``tf.function`` or a Keras ``train_step``.  Inputs
        are not validated here (``__call__`` does): pass pixels in [0, 1].
        """
        raise NotImplementedError(f"{type(self).__name__} is not graph-pure: call it on NumPy batches with "
                                  "attack(images, labels)")

    @abc.abstractmethod
    def _attack_batch(self, x, labels, target, return_iterates) -> dict:
        """Attack one validated NumPy batch. Returns a dict with ``adversarial``, ``success``, ``steps``,
        ``adv_labels``, ``failed``, ``messages`` and optionally ``iterates``, ``zero_gradient``."""

    def __call__(self, images, labels, target=None, *, metrics=True, return_iterates=False) -> AttackResult:
        """Attack ``images`` (B, H, W, C) float in [0, 1] with integer ``labels`` (B,).

        Args:
            target: optional (B,) target classes for a targeted attack.
            metrics: compute SSIM and PSNR of each adversarial (``False``: ``None``).
            return_iterates: keep every iterate (memory: steps × images).

        Raises:
            TypeError / ValueError: see :mod:`tfperceptual.validation` (shape, dtype, NaN/Inf, range,
                labels of the wrong length or outside the model's classes).
        """
        x = check_images(images, "images", self.bounds, self.input_shape)
        y = check_labels(labels, len(x), self.num_classes, "labels")
        t = None if target is None else check_labels(target, len(x), self.num_classes, "target")
        parts = []
        for i in range(0, len(x), self.batch_size):
            sl = slice(i, i + self.batch_size)
            out = self._attack_batch(x[sl], y[sl], None if t is None else t[sl], return_iterates)
            parts.append(self._result(x[sl], out, metrics))
        res = AttackResult.concatenate(parts)
        if res.zero_gradient is not None and res.zero_gradient.any():
            bad = np.flatnonzero(res.zero_gradient)
            more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
            warnings.warn(f"{type(self).__name__}: the loss has a zero gradient with respect to the input at images "
                          f"{bad[:10].tolist()}{more} (e.g. a model built on sign or rounding, or a saturated "
                          "loss): the attack cannot move them", ZeroGradientWarning, stacklevel=2)
        return res

    def _result(self, x, out, metrics):
        adv = np.asarray(out["adversarial"], np.float32)
        quality = {"ssim": None, "psnr": None}
        if metrics:
            xt, at = tf.constant(x), tf.constant(adv)
            small = min(x.shape[1:3]) < len(image_ops.gaussian_window())
            quality = {"ssim": np.full(len(x), np.nan) if small else _ssim(xt, at).numpy().astype(np.float64),
                       "psnr": _psnr(xt, at).numpy()}
        n = len(x)
        zero = out.get("zero_gradient")
        return AttackResult(adversarial=adv, success=np.asarray(out["success"], bool),
                            steps=np.asarray(out["steps"], np.int32), adv_labels=np.asarray(out["adv_labels"], np.int64),
                            failed=np.asarray(out.get("failed", np.zeros(n, bool)), bool),
                            messages=list(out.get("messages", [""] * n)), iterates=out.get("iterates"),
                            epsilon=self.eps, zero_gradient=np.zeros(n, bool) if zero is None else np.asarray(zero, bool),
                            **quality)
