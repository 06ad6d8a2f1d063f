"""Sparse counterfactual explanations and concept probes by Frank–Wolfe perturbations (Roberts &
Tsiligkaridis, "Controllably Sparse Perturbations of Robust Classifiers for Explaining Predictions and
Probing Learned Concepts", MLVis 2021).

A *counterfactual* of image x is x′ = x + δ, δ in an ℓ1 (ℓ1-q step) or ℓ2 ball, that raises the model's
log-probability of a class t (the Frank–Wolfe loop of :func:`solvers.frank_wolfe.frank_wolfe` maximising
log softmax_t, i.e. minimising the targeted cross-entropy, from δ = 0):

* ``mode="prediction"`` (prediction-targeted, "why did the model make this mistake?"): t = the model's
  prediction, for images it misclassifies (``labels`` are the true classes and must differ from it);
* ``mode="label"`` (label-targeted, "what would have corrected it?"): t = the label.

On adversarially robust models such perturbations change semantic features (the paper's claim; measured in
``docs/results.md`` with an independent judge classifier).  :func:`probe_concepts` asks the model to draw a
class on noise: label-targeted perturbations from standard-normal noise min–max scaled to [0, 1] (Sec. 3.2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from solvers.checks import FixedOptions
from solvers.frank_wolfe import check_fw_options, frank_wolfe
from solvers.norm_balls import L1QOracle, L2BoxOracle, L2Oracle, check_q

from ..models.adapter import as_logits_model
from ..validation import check_choice, check_positive_int, check_real
from .base import Explainer, Explanation
from .registry import register_explainer

__all__ = ["Counterfactual", "ProbeResult", "probe_concepts", "matched_l1_eps", "default_eps", "DEFAULT_L2_BUDGET",
           "COUNTERFACTUAL_NORMS", "COUNTERFACTUAL_MODES"]

COUNTERFACTUAL_NORMS = ("l1q", "l2")
COUNTERFACTUAL_MODES = ("prediction", "label")


def matched_l1_eps(eps_l2, d):
    """ε₁ = ε₂ · √d, the paper's matching of the ℓ1 to the ℓ2 budget for d = H·W·C entries (ImageNet:
    ε₂ · 224 · √3).  This ℓ1 ball *contains* the ℓ2 ball (‖δ‖₁ ≤ √d ‖δ‖₂) and touches it on the diagonals
    (|δ_i| all equal), not at its corners as the paper's text says."""
    return float(check_real(eps_l2, "eps (ℓ2 budget)", 0.0, None)) * math.sqrt(int(d))


def _oracle(norm, eps, q, box):
    if norm == "l1q":
        return L1QOracle(eps, q, "exact" if box == "exact" else "none", dtype="float32")
    return L2BoxOracle(eps, dtype="float32") if box == "exact" else L2Oracle(eps, dtype="float32")


#: the ℓ2 budget ε₂ behind ``eps=None``: ℓ2 uses it, ℓ1-q the paper's matched ε₂ √d of the images explained
DEFAULT_L2_BUDGET = 2.0


def default_eps(norm, d):
    """The budget of ``eps=None`` for images of d = H·W·C entries: ℓ2 ε₂ = 2; ℓ1-q ε₁ = 2 √d (the paper's
    matching; CIFAR-10: 110.9)."""
    return DEFAULT_L2_BUDGET if norm == "l2" else matched_l1_eps(DEFAULT_L2_BUDGET, d)


def _check_eps(eps):
    return None if eps is None else check_real(eps, "eps", 0.0, None)


class _FWTargeted(FixedOptions):
    """The label-targeted Frank–Wolfe loop on a model (shared by :class:`Counterfactual` and
    :func:`probe_concepts`): maximise log softmax_t(model(x′)) over the ball."""

    _FIXED = ("norm", "q", "steps", "c", "box", "oracle")

    def __init__(self, model, norm, eps, q, steps, c, box):
        self.logits_model = as_logits_model(model)
        self.norm = check_choice(norm, "norm", COUNTERFACTUAL_NORMS)
        self.q = check_q(q)
        self.steps, self.c, self.box = check_fw_options(steps, c, box)
        eps = _check_eps(eps)
        self.auto_eps = eps is None  # resolved from the size of the images at each call (default_eps)
        self.oracle = _oracle(self.norm, 1.0 if eps is None else eps, self.q, self.box)
        self._run = tf.function(self._run_impl, reduce_retracing=True)

    @property
    def eps(self):
        """The budget (a variable of the oracle: assigning it needs no retrace); ``None``: :func:`default_eps` of
        the images at each call."""
        return None if self.auto_eps else self.oracle.eps

    @eps.setter
    def eps(self, value):
        value = _check_eps(value)
        self.auto_eps = value is None
        if value is not None:
            self.oracle.eps = value

    def budget(self, image_shape):
        """The budget used for images of ``image_shape`` (H, W, C)."""
        return default_eps(self.norm, int(np.prod(image_shape))) if self.auto_eps else self.oracle.eps

    def _run_impl(self, x0, targets):
        def gradient(x, k):
            with tf.GradientTape() as tape:
                tape.watch(x)
                logp = tf.nn.log_softmax(self.logits_model(x, training=False))
                total = tf.reduce_sum(tf.gather(logp, targets, batch_dims=1))
            return tape.gradient(total, x)

        out = frank_wolfe(gradient, x0, self.oracle, self.steps, self.c, self.box)
        return out["x"], out["failed"]

    def perturb(self, x, targets, batch_size):
        """(perturbed, failed) NumPy arrays for images x (B, H, W, C) and classes ``targets`` (B,)."""
        if self.auto_eps:
            self.oracle.eps = self.budget(x.shape[1:])
        outs, fails = [], []
        for i in range(0, len(x), batch_size):
            xp, f = self._run(tf.constant(x[i:i + batch_size]), tf.constant(targets[i:i + batch_size], tf.int64))
            outs.append(xp.numpy())
            fails.append(f.numpy())
        return np.concatenate(outs), np.concatenate(fails)

    def probabilities(self, x, batch_size):
        return np.concatenate([tf.nn.softmax(self.logits_model(tf.constant(x[i:i + batch_size]))).numpy()
                               for i in range(0, len(x), batch_size)])


@register_explainer("counterfactual")
class Counterfactual(Explainer, FixedOptions):
    """Sparse (ℓ1-q) or ℓ2 Frank–Wolfe counterfactuals (Roberts & Tsiligkaridis 2021; module docstring).

    Args:
        model: any Keras 3 image classifier (seen through its logits); robust models give semantic changes.
        norm: ``"l1q"`` (the ℓ1-q step: sparse, sparsity set by ``q``) or ``"l2"``.
        eps: ε > 0 — ℓ1: Σ|δ| over all pixels and channels; ℓ2: ‖δ‖₂ (pixels in [0, 1]);
            :func:`matched_l1_eps` converts an ℓ2 budget to the paper's matched ℓ1 one.  ``None`` (default):
            :func:`default_eps` of the images explained — ℓ2 2.0, ℓ1-q 2 √(H W C) (CIFAR-10: 110.9).
        q: fraction of entries an ℓ1-q step modifies, in (0, 1] (ignored by ``"l2"``).
        steps: FW steps, ≥ 1 (30).
        mode: ``"prediction"`` (explain an error: raise the predicted class; ``labels`` are the true classes and
            must differ from the predictions) or ``"label"`` (raise the label's class).
        c: keyword-only; γ_k = c / (c + k), > 0.
        box: keyword-only; ``"exact"`` (each step solved over the pixel box), ``"clip"`` or ``"none"``.
        batch_size: keyword-only; images per graph call.

    ``explain(images, labels=None)`` returns an :class:`~tfperceptual.explain.Explanation` with
    ``saliency`` (B, H, W) = Σ_c |δ| per pixel, ``perturbed`` (B, H, W, C) in [0, 1] (unless ``box="none"``),
    ``perturbation`` δ, ``labels`` (the labels given; the predictions when ``None``), ``target`` (the class
    made more likely), ``predicted`` / ``perturbed_predicted`` (top-1 before / after) and ``confidence``: a
    dict of (B,) softmax probabilities ``predicted_before``, ``predicted_after`` (of the clean prediction),
    ``label_before``, ``label_after`` (of ``labels``), ``target_before``, ``target_after``.

    Raises:
        TypeError / ValueError: eps missing or ≤ 0, q outside (0, 1], steps < 1, c ≤ 0, an unknown norm, mode
            or box; at ``explain``: bad images or labels, and in ``mode="prediction"`` missing labels or an image
            the model already classifies as its label (its counterfactual would be label-targeted).
    """

    graph_pure = True

    #: options read when the loop is traced (``eps`` is a variable instead, and can be assigned)
    _FIXED = ("norm", "q", "steps", "c", "box", "mode")

    def __init__(self, model, norm="l1q", eps=None, q=0.05, steps=30, mode="prediction", *, c=2.0, box="exact",
                 batch_size=32):
        super().__init__(model, batch_size)
        self.mode = check_choice(mode, "mode", COUNTERFACTUAL_MODES)
        self._fw = _FWTargeted(self.model, norm, eps, q, steps, c, box)
        self.norm, self.q, self.steps, self.c, self.box = (self._fw.norm, self._fw.q, self._fw.steps, self._fw.c,
                                                           self._fw.box)

    @property
    def eps(self) -> float:
        """The budget ε > 0 (assignable: the traced loop follows it)."""
        return self._fw.eps

    @eps.setter
    def eps(self, value):
        self._fw.eps = value

    def explain(self, images, labels=None) -> Explanation:
        if self.mode == "prediction" and labels is None:
            raise ValueError("labels are required with mode='prediction': the true classes of images the model "
                             "misclassifies (the counterfactual raises the prediction)")
        x, y = self._inputs(images, labels)
        p0 = self._fw.probabilities(x, self.batch_size)
        pred = p0.argmax(-1)
        if self.mode == "prediction":
            same = np.flatnonzero(pred == y)
            if len(same):
                raise ValueError(f"labels: mode='prediction' explains errors, but the model classifies images "
                                 f"{same[:10].tolist()} as their label (the target would equal the label); pass "
                                 "misclassified images or use mode='label'")
            target = pred.astype(np.int64)
        else:
            target = y
        perturbed, failed = self._fw.perturb(x, target, self.batch_size)
        p1 = self._fw.probabilities(perturbed, self.batch_size)
        rows = np.arange(len(x))
        delta = perturbed - x
        conf = {"predicted_before": p0[rows, pred], "predicted_after": p1[rows, pred], "label_before": p0[rows, y],
                "label_after": p1[rows, y], "target_before": p0[rows, target], "target_after": p1[rows, target]}
        return Explanation(saliency=np.abs(delta).sum(-1).astype(np.float32), labels=y, perturbed=perturbed,
                           perturbation=delta.astype(np.float32), target=target, predicted=pred.astype(np.int64),
                           perturbed_predicted=p1.argmax(-1).astype(np.int64),
                           confidence={k: v.astype(np.float32) for k, v in conf.items()},
                           converged=~failed, evaluations=self.steps * math.ceil(len(x) / self.batch_size))


@dataclass
class ProbeResult:
    """What :func:`probe_concepts` returns (NumPy arrays).

    Attributes:
        noise: (N, H, W, C) float32, the starting images (standard normal, min–max scaled to [0, 1]).
        images: (N, H, W, C) float32, the probes (the model's drawing of each class).
        classes: (N,) int64, the requested class of each probe (``n_per_class`` in a row per class).
        predicted: (N,) int64, the model's top-1 on the probes.
        confidence: (N,) float32, the model's probability of the requested class on the probe.
        confidence_before: (N,) float32, the same on the noise.
        norm, eps: the budget used.
    """

    noise: np.ndarray
    images: np.ndarray
    classes: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray
    confidence_before: np.ndarray
    norm: str
    eps: float

    @property
    def success_rate(self) -> float:
        """Fraction of probes the model classifies as the requested class."""
        return float(np.mean(self.predicted == self.classes))


#: the last traced Frank–Wolfe loop of :func:`probe_concepts` (one slot: it keeps at most one model alive), so
#: that a loop over classes or budgets with the same model and options traces once
_LAST_PROBER = {}


def _prober(model, norm, eps, q, steps, c, box):
    key = (id(model), norm, q, steps, c, box)
    fw = _LAST_PROBER.get(key)
    if fw is None or fw.user_model is not model:
        fw = _FWTargeted(model, norm, eps, q, steps, c, box)
        fw.user_model = model
        _LAST_PROBER.clear()
        _LAST_PROBER[key] = fw
    else:
        fw.eps = eps
    return fw


def probe_concepts(model, classes, n_per_class=1, image_shape=None, norm="l2", eps=None, steps=30, seed=0, *,
                   q=0.05, c=2.0, box="exact", batch_size=64) -> ProbeResult:
    """Ask ``model`` to draw each class in ``classes`` on noise (the paper's concept probing, Sec. 3.2 / Fig. 3).

    Args:
        model: a Keras image classifier (robust models draw recognisable concepts).
        classes: int or sequence of ints in [0, K), the classes to probe.
        n_per_class: probes per class, ≥ 1 (each from its own noise image).
        image_shape: (H, W, C) of the noise; ``None``: the model's input shape (which must then be known).
        norm: ``"l2"`` or ``"l1q"``; eps: its budget (:func:`matched_l1_eps` for the paper's match; ``None``:
            :func:`default_eps` of ``image_shape``).
        steps: FW steps ≥ 1; seed: int ≥ 0, the seed of the noise.
        q, c, box, batch_size: keyword-only, see :class:`Counterfactual`.

    Returns:
        :class:`ProbeResult`.

    Raises:
        ValueError / TypeError: classes empty or outside the model's range, n_per_class < 1, an image shape the
            model does not take or that is unknown, and the errors of :class:`Counterfactual`.
    """
    fw = _prober(model, norm, eps, q, steps, c, box)
    k = fw.logits_model.num_classes
    cls = np.atleast_1d(np.asarray(classes))
    if cls.size == 0 or cls.ndim != 1 or not np.issubdtype(cls.dtype, np.integer):
        raise ValueError(f"classes must be an int or a non-empty sequence of ints, got {classes!r}")
    if cls.min() < 0 or cls.max() >= k:
        raise ValueError(f"classes must lie in [0, {k}) (the model's classes), got {sorted(set(cls.tolist()))}")
    n_per_class = check_positive_int(n_per_class, "n_per_class")
    seed = check_positive_int(seed, "seed", minimum=0)
    batch_size = check_positive_int(batch_size, "batch_size")
    shape = fw.logits_model.image_shape if image_shape is None else tuple(image_shape)
    if any(s is None for s in shape) or len(shape) != 3:
        raise ValueError(f"image_shape must be (H, W, C) with known sizes, got {shape} (pass image_shape)")
    model_shape = fw.logits_model.image_shape
    if any(m is not None and m != s for m, s in zip(model_shape, shape)):
        raise ValueError(f"image_shape {shape} does not fit the model's input shape {model_shape}")
    targets = np.repeat(cls.astype(np.int64), n_per_class)
    noise = np.random.default_rng(seed).standard_normal((len(targets), *shape)).astype(np.float32)
    lo = noise.min(axis=(1, 2, 3), keepdims=True)
    hi = noise.max(axis=(1, 2, 3), keepdims=True)
    noise = ((noise - lo) / (hi - lo)).astype(np.float32)
    p0 = fw.probabilities(noise, batch_size)
    images, _ = fw.perturb(noise, targets, batch_size)
    p1 = fw.probabilities(images, batch_size)
    rows = np.arange(len(targets))
    return ProbeResult(noise=noise, images=images.astype(np.float32), classes=targets,
                       predicted=p1.argmax(-1).astype(np.int64), confidence=p1[rows, targets].astype(np.float32),
                       confidence_before=p0[rows, targets].astype(np.float32), norm=fw.norm,
                       eps=fw.budget(shape))
