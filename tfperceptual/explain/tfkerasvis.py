"""Baseline saliency maps from tf-keras-vis (not reimplemented): Saliency, SmoothGrad, Grad-CAM,
Grad-CAM++ and Score-CAM, behind one call ``f(images, labels) -> (B, H, W)``.

* ``"saliency"``: vanilla gradient (Simonyan et al., 2014), ``tf_keras_vis.saliency.Saliency``, |∂score/∂x|
  maximised over channels (tf-keras-vis's ``keepdims=False``).
* ``"smoothgrad"``: the same averaged over ``smooth_samples`` noisy copies, noise σ = ``smooth_noise`` ×
  (max − min) of the image (Smilkov et al., 2017).
* ``"gradcam"``, ``"gradcam++"``, ``"scorecam"``: class activation maps of a feature layer (default
  :func:`tfperceptual.maps.penultimate_conv_layer`) upsampled bilinearly to the image size
  (Selvaraju et al., 2017; Chattopadhay et al., 2018; Wang et al., 2020). ``max_N`` > 0 turns
  Score-CAM into Faster-ScoreCAM (only the ``max_N`` channels of largest variance).

Every map is normalised to [0, 1] per image by tf-keras-vis (min–max; a constant map is 0). Scores are
the class logit: a model ending in softmax is handed over with ``ReplaceToLinear``; ``Sequential``
models are rebuilt as functional ones (tf-keras-vis 0.8.7 under Keras 3 needs ``output_names``).
Integrated Gradients and RISE (Xplique) are not offered: Xplique 2.0.2 pins tensorflow ≤ 2.20,
scikit-image ≤ 0.25.2 and scipy ≤ 1.15.3, which conflict with this project's stack (README).
"""

from __future__ import annotations

import numpy as np

from .validation import check_images, check_labels

__all__ = ["METHODS", "saliency_fn", "saliency_maps"]

METHODS = ("saliency", "smoothgrad", "gradcam", "gradcam++", "scorecam")


def saliency_fn(model, method, layer=None, smooth_samples=20, smooth_noise=0.20, max_N=None, batch_size=32):
    """Build a tf-keras-vis visualiser once; return ``f(images, labels) -> (B, H, W)`` float32 in [0, 1].

    Args:
        model: Keras classifier taking (B, H, W, C) pixels in [0, 1] (Sequential or functional,
            logits or softmax output).
        method: one of :data:`METHODS`.
        layer: feature layer of the CAM methods (name); default the last 4-D activation.
        smooth_samples, smooth_noise: SmoothGrad's samples and relative noise (tf-keras-vis defaults
            for the noise; 20 samples).
        max_N: Score-CAM channels (``None``: all, i.e. Score-CAM; k > 0: Faster-ScoreCAM).
        batch_size: Score-CAM's forward batch.

    Raises:
        ValueError: unknown method, model without a feature map (CAM methods).
    """
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    from .maps import penultimate_conv_layer
    from .model_adapter import to_functional

    if method not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}; choose from {METHODS}")
    model = to_functional(model)
    n_classes = int(model.outputs[0].shape[-1])
    last_act = getattr(getattr(model.layers[-1], "activation", None), "__name__", "")
    modifier = ReplaceToLinear() if last_act == "softmax" else None
    clone = modifier is not None
    if method in ("saliency", "smoothgrad"):
        from tf_keras_vis.saliency import Saliency

        vis = Saliency(model, model_modifier=modifier, clone=clone)
        samples = 0 if method == "saliency" else int(smooth_samples)
        call = lambda score, x: vis(score, x, smooth_samples=samples, smooth_noise=smooth_noise)  # noqa: E731
    else:
        layer = layer or penultimate_conv_layer(model)
        if method == "gradcam":
            from tf_keras_vis.gradcam import Gradcam as cls
            extra = {}
        elif method == "gradcam++":
            from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus as cls
            extra = {}
        else:
            from tf_keras_vis.scorecam import Scorecam as cls
            extra = {"max_N": max_N, "batch_size": int(batch_size)}
        vis = cls(model, model_modifier=modifier, clone=clone)
        call = lambda score, x: vis(score, x, penultimate_layer=layer,  # noqa: E731
                                    seek_penultimate_conv_layer=False, **extra)

    def explain(images, labels):
        x = check_images(images, "images")
        y = check_labels(labels, len(x), n_classes, "labels")
        if method == "scorecam" and max_N is not None and max_N > 0 and len(x) > 1:
            # tf-keras-vis's Faster-ScoreCAM keeps the union of the batch's top-max_N channels, so an
            # image's map would depend on its batch companions (and a batch of 32 ImageNet images costs
            # hundreds of channels each); one image per call keeps the per-image selection
            m = np.concatenate([np.asarray(call(CategoricalScore([int(t)]), x[i:i + 1]), np.float32).reshape(
                1, x.shape[1], x.shape[2]) for i, t in enumerate(y)])
        else:
            m = call(CategoricalScore(list(y)), x)
        return np.clip(np.asarray(m, np.float32).reshape(len(x), x.shape[1], x.shape[2]), 0.0, 1.0)

    explain.num_classes = n_classes
    explain.method = method
    explain.layer = layer
    return explain


def saliency_maps(model, images, labels, method, batch_size=32, **kwargs):
    """Maps of ``method`` for ``labels`` at ``images`` ((B, H, W, C) in [0, 1]) → (B, H, W) in [0, 1]."""
    fn = saliency_fn(model, method, **kwargs)
    x = check_images(images, "images")
    return np.concatenate([fn(x[i:i + batch_size], labels[i:i + batch_size]) for i in range(0, len(x), batch_size)])
