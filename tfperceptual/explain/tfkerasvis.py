"""Baseline saliency maps from tf-keras-vis (not reimplemented), as :class:`~tfperceptual.explain.base.Explainer` s.

* :class:`Saliency`: vanilla gradient (Simonyan et al., 2014), ``tf_keras_vis.saliency.Saliency``,
  |∂score/∂x| maximised over channels (tf-keras-vis's ``keepdims=False``).
* :class:`SmoothGrad`: the same averaged over ``samples`` noisy copies, noise σ = ``noise`` × (max − min) of
  the image (Smilkov et al., 2017).
* :class:`GradCAM`, :class:`GradCAMPlusPlus`, :class:`ScoreCAM`: class activation maps of a feature layer
  (default :func:`tfperceptual.models.penultimate_conv_layer`) upsampled bilinearly to the image size
  (Selvaraju et al., 2017; Chattopadhay et al., 2018; Wang et al., 2020). ``max_N`` > 0 turns Score-CAM into
  Faster-ScoreCAM (only the ``max_N`` channels of largest variance, chosen per image).

Every map is normalised to [0, 1] per image by tf-keras-vis (min–max; a constant map is 0).  The score is
the class **logit**: tf-keras-vis receives the functional logits network of
:class:`tfperceptual.models.LogitsModel` (whatever the model's head, and Sequential models included), so
no ``ReplaceToLinear`` and no cloning are needed.  Integrated Gradients and RISE (Xplique) are not offered:
Xplique 2.0.2 pins tensorflow ≤ 2.20, scikit-image ≤ 0.25.2 and scipy ≤ 1.15.3, which conflict with this
project's stack (README).

``saliency_fn``, ``saliency_maps``, ``gradcam_plus_plus`` and ``gradcam_plus_plus_fn`` are the function
interface of issues 2–6 over these classes.
"""

from __future__ import annotations

import keras
import numpy as np

from ..io_utils import digest
from ..models.features import penultimate_conv_layer
from ..models.graph import layer_tensors
from ..validation import check_positive_int, check_real
from .base import Explainer, Explanation
from .registry import EXPLAINERS, register_explainer

__all__ = ["TfKerasVisExplainer", "Saliency", "SmoothGrad", "GradCAM", "GradCAMPlusPlus", "ScoreCAM", "METHODS",
           "saliency_fn", "saliency_maps", "gradcam_plus_plus", "gradcam_plus_plus_fn"]


class TfKerasVisExplainer(Explainer):
    """A tf-keras-vis visualiser behind :class:`~tfperceptual.explain.base.Explainer` (abstract).

    Subclasses build the visualiser in :meth:`_visualiser` and call it in :meth:`_call`.
    """

    def __init__(self, model, batch_size=32):
        super().__init__(model, batch_size)
        net = self.model.network
        # inputs and outputs as lists, the structure tf-keras-vis calls the model with
        self._vis_model = keras.Model([net.inputs[0]], [net.outputs[0]], name=f"{net.name}_vis")
        self._vis = self._visualiser(self._vis_model)

    def _visualiser(self, model):
        raise NotImplementedError

    def _call(self, score, x):
        raise NotImplementedError

    def _maps(self, x, y):
        from tf_keras_vis.utils.scores import CategoricalScore

        return np.asarray(self._call(CategoricalScore(list(y)), x), np.float32)

    def explain(self, images, labels=None) -> Explanation:
        """Maps of ``labels`` (default: the predictions) at ``images`` (B, H, W, C) in [0, 1]; see
        :meth:`tfperceptual.explain.base.Explainer.explain`."""
        x, y = self._inputs(images, labels)
        maps = [self._maps(x[i:i + self.batch_size], y[i:i + self.batch_size]).reshape(-1, x.shape[1], x.shape[2])
                for i in range(0, len(x), self.batch_size)]
        return Explanation(saliency=np.clip(np.concatenate(maps), 0.0, 1.0).astype(np.float32), labels=y)


@register_explainer("saliency")
class Saliency(TfKerasVisExplainer):
    """Vanilla gradient saliency (Simonyan et al., 2014) by tf-keras-vis: |∂logit/∂x|, max over channels."""

    def _visualiser(self, model):
        from tf_keras_vis.saliency import Saliency as Vis

        return Vis(model, clone=False)

    def _call(self, score, x):
        return self._vis(score, x, smooth_samples=0)


@register_explainer("smoothgrad")
class SmoothGrad(TfKerasVisExplainer):
    """SmoothGrad (Smilkov et al., 2017) by tf-keras-vis.

    Args:
        model, batch_size: see :class:`~tfperceptual.explain.base.Explainer`.
        samples: noisy copies per image, ≥ 1 (default 20).
        noise: noise σ relative to the image's (max − min), > 0 (tf-keras-vis default 0.2).
        seed: ``None`` or an int: each batch's noise is drawn with NumPy's global generator (tf-keras-vis uses
            ``np.random.normal``) seeded from ``seed`` and the batch's pixels and labels, so a batch always gets
            the same noise; the generator's previous state is restored afterwards.
    """

    def __init__(self, model, samples=20, noise=0.2, seed=None, batch_size=32):
        self.samples = check_positive_int(samples, "samples")
        self.noise = check_real(noise, "noise", 0.0, None)
        self.seed = None if seed is None else check_positive_int(seed, "seed", minimum=0)
        super().__init__(model, batch_size)

    def _visualiser(self, model):
        from tf_keras_vis.saliency import Saliency as Vis

        return Vis(model, clone=False)

    def _maps(self, x, y):
        if self.seed is None:
            return super()._maps(x, y)
        state = np.random.get_state()
        np.random.seed(int(digest(self.seed, "smoothgrad", x, y, length=8), 16) % (2**31 - 1))
        try:
            return super()._maps(x, y)
        finally:
            np.random.set_state(state)

    def _call(self, score, x):
        return self._vis(score, x, smooth_samples=self.samples, smooth_noise=self.noise)


class _FeatureTensor(keras.layers.Layer):
    """Hands tf-keras-vis the feature layer's output *in the logits network's graph*.

    tf-keras-vis reads ``layer.output``, which is the tensor of the layer's first graph; for a layer shared
    by several models (e.g. a ``Sequential`` assembled from another model's layers) that graph is not the
    one being explained and Keras fails with "Output … is not connected to inputs".  This stand-in's
    ``output`` is the right tensor; it is never called.
    """

    def __init__(self, tensor, name):
        super().__init__(name=name)
        self._tensor = tensor

    @property
    def output(self):
        return self._tensor


class _CAM(TfKerasVisExplainer):
    """A class activation map of ``layer`` (default :func:`tfperceptual.models.penultimate_conv_layer`)."""

    #: the method weighs the feature maps of a convolutional layer (a model without one cannot be explained)
    needs_feature_layer = True

    def __init__(self, model, layer=None, batch_size=32):
        self.layer = layer
        super().__init__(model, batch_size)
        if self.layer is None:
            self.layer = penultimate_conv_layer(self.model)
        tensors = layer_tensors(self._vis_model.outputs[0])
        if self.layer not in tensors:
            raise ValueError(f"layer {self.layer!r} is not on the path from the input to the logits of the model")
        self._feature = _FeatureTensor(tensors[self.layer], self.layer)

    def _call(self, score, x):
        return self._vis(score, x, penultimate_layer=self._feature, seek_penultimate_conv_layer=False)


@register_explainer("gradcam")
class GradCAM(_CAM):
    """Grad-CAM (Selvaraju et al., 2017) by tf-keras-vis, of the logit; ``layer``: the feature layer."""

    def _visualiser(self, model):
        from tf_keras_vis.gradcam import Gradcam

        return Gradcam(model, clone=False)


@register_explainer("gradcam++")
class GradCAMPlusPlus(_CAM):
    """Grad-CAM++ (Chattopadhay et al., WACV 2018) by tf-keras-vis, of the logit; ``layer``: the feature layer."""

    def _visualiser(self, model):
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus

        return GradcamPlusPlus(model, clone=False)


@register_explainer("scorecam")
class ScoreCAM(_CAM):
    """Score-CAM (Wang et al., 2020) by tf-keras-vis; ``max_N`` > 0: Faster-ScoreCAM.

    tf-keras-vis's Faster-ScoreCAM keeps the union of the batch's top-``max_N`` channels, so an image's map
    would depend on its batch companions; with ``max_N`` each image is explained on its own.

    Args:
        model, layer, batch_size: see :class:`GradCAM`; ``batch_size`` is also Score-CAM's forward batch.
        max_N: ``None`` (all channels: Score-CAM) or k ≥ 1 channels (Faster-ScoreCAM).
    """

    def __init__(self, model, layer=None, max_N=None, batch_size=32):  # noqa: N803 - tf-keras-vis's name
        self.max_N = None if max_N is None else check_positive_int(max_N, "max_N")
        super().__init__(model, layer, batch_size)

    def _visualiser(self, model):
        from tf_keras_vis.scorecam import Scorecam

        return Scorecam(model, clone=False)

    def _call(self, score, x):
        # tf-keras-vis scores the masked inputs with model.predict, which would draw a Keras progress bar per
        # call: interactive logging is switched off for the call and restored after it
        interactive = keras.utils.is_interactive_logging_enabled()
        keras.utils.disable_interactive_logging()
        try:
            return self._vis(score, x, penultimate_layer=self._feature, seek_penultimate_conv_layer=False,
                             max_N=self.max_N, batch_size=self.batch_size)
        finally:
            if interactive:
                keras.utils.enable_interactive_logging()

    def _maps(self, x, y):
        if self.max_N is None or len(x) == 1:
            return super()._maps(x, y)
        return np.concatenate([super(ScoreCAM, self)._maps(x[i:i + 1], y[i:i + 1]) for i in range(len(x))])


#: the tf-keras-vis methods (registry names)
METHODS = ("saliency", "smoothgrad", "gradcam", "gradcam++", "scorecam")


def saliency_fn(model, method, layer=None, smooth_samples=20, smooth_noise=0.20, max_N=None,  # noqa: N803
                batch_size=32):
    """Build the tf-keras-vis explainer ``method`` once; return ``f(images, labels) -> (B, H, W)`` float32 maps.

    Args:
        model: Keras classifier taking (B, H, W, C) pixels in [0, 1] (any head).
        method: one of :data:`METHODS`.
        layer: feature layer of the CAM methods (name); default the last 4-D activation.
        smooth_samples, smooth_noise: SmoothGrad's samples and relative noise.
        max_N: Score-CAM channels (``None``: all; k > 0: Faster-ScoreCAM).
        batch_size: images per tf-keras-vis call.

    Raises:
        ValueError: unknown method, model without a feature map (CAM methods).
    """
    if method not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}; choose from {METHODS}")
    kwargs = {"batch_size": batch_size}
    if method == "smoothgrad":
        kwargs.update(samples=smooth_samples, noise=smooth_noise)
    elif method in ("gradcam", "gradcam++", "scorecam"):
        kwargs["layer"] = layer
        if method == "scorecam":
            kwargs["max_N"] = max_N
    return EXPLAINERS[method](model, **kwargs).maps


def saliency_maps(model, images, labels, method, batch_size=32, **kwargs):
    """Maps of ``method`` for ``labels`` at ``images`` ((B, H, W, C) in [0, 1]) → (B, H, W) float32 in [0, 1]."""
    return saliency_fn(model, method, batch_size=batch_size, **kwargs)(images, labels)


def gradcam_plus_plus_fn(model, layer=None):
    """The Grad-CAM++ explainer's map function ``f(images, labels) -> (B, H, W)``, built once."""
    return GradCAMPlusPlus(model, layer).maps


def gradcam_plus_plus(model, images, labels, layer=None, batch_size=32):
    """Grad-CAM++ maps of ``model`` for ``labels``, by tf-keras-vis (Chattopadhay et al., WACV 2018).

    Args:
        model: Keras classifier taking pixels in [0, 1] (any head; the score is the logit).
        images: (B, H, W, C) float, pixels in [0, 1]; labels: (B,) classes to explain.
        layer: name of the feature layer; default :func:`tfperceptual.models.penultimate_conv_layer`.

    Returns:
        (B, H, W) float32 maps upsampled to the image size and normalised to [0, 1] per image.

    Raises:
        ValueError / TypeError: bad images or labels, no convolutional layer.
    """
    return GradCAMPlusPlus(model, layer, batch_size).maps(images, labels)
