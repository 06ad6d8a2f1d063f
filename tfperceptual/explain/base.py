"""The explainer contract: :class:`Explainer` (``explain(images, labels) -> Explanation``) and
:class:`Explanation`."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from ..models.adapter import as_logits_model
from ..validation import check_images, check_labels, check_positive_int

__all__ = ["Explainer", "Explanation"]


@dataclass
class Explanation:
    """What an :class:`Explainer` returns (NumPy arrays).

    Attributes:
        saliency: (B, H, W) float32, the map (larger = more important; tf-keras-vis maps are normalised
            to [0, 1] per image, perceptual-ball maps are perturbation sizes ≥ 0).
        labels: (B,) int64, the explained classes.
        perturbed: (B, H, W, C) float32, the optimised image x′ (perturbation methods; else ``None``).
        margin: (B,) float32, M_i(x′) at the end (perceptual ball: Eq. 1, or the logit with
            ``multilabel``); ``None`` for other methods.
        loss: (B,) float32, the objective at the end (perceptual ball: Eq. 5).
        initial_margin: (B,) float32, M_i(x).
        converged: (B,) bool, the optimiser's own convergence flag.
        evaluations: number of batch evaluations of the loss and gradient.
        layers: the intermediate layers used (perceptual ball).
        perturbation: (B, H, W, C) float32, x′ − x (counterfactuals).
        target: (B,) int64, the class the perturbation makes more likely (counterfactuals).
        predicted, perturbed_predicted: (B,) int64, the model's top-1 at x and at x′ (counterfactuals).
        confidence: dict of (B,) float32 softmax probabilities before / after (counterfactuals: see
            :class:`~tfperceptual.explain.Counterfactual`).
    """

    saliency: np.ndarray
    labels: np.ndarray
    perturbed: np.ndarray | None = None
    margin: np.ndarray | None = None
    loss: np.ndarray | None = None
    initial_margin: np.ndarray | None = None
    converged: np.ndarray | None = None
    evaluations: int = 0
    layers: list = field(default_factory=list)
    perturbation: np.ndarray | None = None
    target: np.ndarray | None = None
    predicted: np.ndarray | None = None
    perturbed_predicted: np.ndarray | None = None
    confidence: dict | None = None


class Explainer(abc.ABC):
    """A saliency method for a Keras classifier (abstract).

    ``explain(images, labels=None) -> Explanation`` (``labels=None``: the model's top-1 predictions);
    ``explainer(...)`` is the same call and :meth:`maps` returns only the saliency (B, H, W).

    Args:
        model: Keras image classifier (any head; seen through its logits,
            :func:`tfperceptual.models.as_logits_model`).
        batch_size: images per internal batch, ≥ 1.

    Attributes:
        name: the registry name (``tfperceptual.explain.EXPLAINERS``).
        model: the :class:`~tfperceptual.models.LogitsModel`.
        num_classes, input_shape: K and (H, W, C).
        graph_pure: whether :meth:`explain` computes through ``tf.function`` s only, with no global state (NumPy's
            global generator, Python caches), so that several calls may run at once on the replicas of a
            ``tf.distribute`` strategy (:func:`tfperceptual.protocols.replicas.replica_map`); the tf-keras-vis
            explainers are not.
    """

    name = ""
    graph_pure = False

    def __init__(self, model, batch_size=32):
        self.model = as_logits_model(model)
        self.input_shape = self.model.image_shape
        self.num_classes = self.model.num_classes
        self.batch_size = check_positive_int(batch_size, "batch_size")

    def _inputs(self, images, labels):
        """Validated images (float32) and labels (int64; the predictions when ``None``)."""
        x = check_images(images, "images", (0.0, 1.0), self.input_shape)
        if labels is None:
            labels = np.concatenate([self.model.predicted_class(x[i:i + self.batch_size]).numpy()
                                     for i in range(0, len(x), self.batch_size)])
        return x, check_labels(labels, len(x), self.num_classes, "labels")

    @abc.abstractmethod
    def explain(self, images, labels=None) -> Explanation:
        """Explain ``labels`` (B,) at ``images`` (B, H, W, C) float in [0, 1].

        Raises:
            TypeError / ValueError: bad images (shape, dtype, NaN/Inf, range) or labels.
        """

    def __call__(self, images, labels=None, **kwargs) -> Explanation:
        return self.explain(images, labels, **kwargs)

    def maps(self, images, labels=None) -> np.ndarray:
        """The saliency maps (B, H, W) float32 of :meth:`explain`."""
        return self.explain(images, labels).saliency
