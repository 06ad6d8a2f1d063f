"""Explainers: the :class:`Explainer` contract, the perceptual ball (Elliott et al., CVPR 2021) and the
tf-keras-vis baselines, ℓ1-q / ℓ2 Frank–Wolfe counterfactuals and concept probes
(Roberts & Tsiligkaridis, MLVis 2021), and the registry (:data:`EXPLAINERS`, :func:`build_explainer`)."""

from .base import Explainer, Explanation
from .registry import EXPLAINERS, build_explainer, explainer_names, register_explainer
from .perceptual_ball import (PERCEPTUAL_BALL_OPTIMIZERS, GuidedPerceptualBall, NoPer, PerceptualBall,  # noqa: I001
                              guided_saliency, perturbation_saliency)
from .counterfactual import (COUNTERFACTUAL_MODES, COUNTERFACTUAL_NORMS, Counterfactual, ProbeResult,  # noqa: I001
                             default_eps, matched_l1_eps, probe_concepts)
from .tfkerasvis import (METHODS, GradCAM, GradCAMPlusPlus, Saliency, ScoreCAM, SmoothGrad, TfKerasVisExplainer,
                         gradcam_plus_plus, gradcam_plus_plus_fn, saliency_fn, saliency_maps)

__all__ = ["Explainer", "Explanation", "EXPLAINERS", "build_explainer", "explainer_names", "register_explainer",
           "PerceptualBall", "NoPer", "GuidedPerceptualBall", "perturbation_saliency", "guided_saliency",
           "PERCEPTUAL_BALL_OPTIMIZERS",
           "TfKerasVisExplainer", "Saliency", "SmoothGrad", "GradCAM", "GradCAMPlusPlus", "ScoreCAM", "METHODS",
           "Counterfactual", "ProbeResult", "probe_concepts", "matched_l1_eps", "default_eps", "COUNTERFACTUAL_NORMS",
           "COUNTERFACTUAL_MODES", "saliency_fn", "saliency_maps", "gradcam_plus_plus", "gradcam_plus_plus_fn"]
