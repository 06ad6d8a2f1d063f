"""tfperceptual: perceptually constrained adversarial perturbations, and explanations, for Keras models.

Every public name is importable from here (``from tfperceptual import PGAP, PerceptualBall, compare``).
The names are resolved on first use (PEP 562), so ``import tfperceptual`` stays cheap and does not
import TensorFlow; the subpackages show the data flow:

``solvers`` (pure math) → :mod:`~tfperceptual.image_ops`, :mod:`~tfperceptual.models` →
:mod:`~tfperceptual.attacks`, :mod:`~tfperceptual.explain` → :mod:`~tfperceptual.evaluation` →
:mod:`~tfperceptual.protocols` → :mod:`~tfperceptual.cli`.
"""

from __future__ import annotations

import importlib

__version__ = "0.4.0"

#: public name → the module that defines it
_EXPORTS = {
    # attacks
    **dict.fromkeys(("Attack", "AttackResult", "ZeroGradientWarning", "PGAP", "FPGAP", "SSIMBallAttack",
                     "PGAP_SOLVERS", "pgap_solvers", "NormBallPGD", "LinfPGD", "L2PGD", "RandomStartFGSM", "FrankWolfeAttack",
                     "L1QFrankWolfe", "L2FrankWolfe", "APGD", "SSIMAPGD", "LinfAPGD", "L2APGD", "SSIMSquare",
                     "FoolboxAttack",
                     "FOOLBOX_ATTACKS", "FGSM", "FGM", "PGD", "PGD_L2", "SparseL1Descent", "EAD", "ATTACKS", "ATTACK_NAMES", "build_attack",
                     "register_attack", "LOSSES", "PGD_LOSSES", "attack_loss", "margin"), "tfperceptual.attacks"),
    # training
    **dict.fromkeys(("AdversarialTraining", "PerceptualRegularization", "mnist_perceptual_parts", "latent_direction",
                     "interpolate", "cifar10_perceptual_parts", "from_classifier", "default_decoder"),
                    "tfperceptual.training"),
    # explainers
    **dict.fromkeys(("Explainer", "Explanation", "EXPLAINERS", "build_explainer", "register_explainer",
                     "PerceptualBall", "NoPer", "GuidedPerceptualBall", "perturbation_saliency", "Saliency",
                     "SmoothGrad", "GradCAM", "GradCAMPlusPlus", "ScoreCAM", "METHODS", "saliency_fn", "saliency_maps",
                     "gradcam_plus_plus", "gradcam_plus_plus_fn", "Counterfactual", "ProbeResult", "probe_concepts",
                     "matched_l1_eps", "default_eps"), "tfperceptual.explain"),
    # models
    **dict.fromkeys(("LogitsModel", "as_logits_model", "to_functional", "input_shape_of", "NotDifferentiableError",
                     "activation_layers", "feature_model", "penultimate_conv_layer", "class_margin", "class_score",
                     "read_tfjs_weights", "assign_tfjs_weights", "mnist_cnn", "cifar10_cnn", "mnist_cnn_robust",
                     "cifar10_cnn_robust", "cifar10_cnn_ssim_robust", "imagenet_mobilenet",
                     "class_names", "mnist_perceptual", "cifar10_perceptual"), "tfperceptual.models"),
    **dict.fromkeys(("ASSETS", "MODELS_ENV"), "tfperceptual.models.zoo"),
    # image operations
    **dict.fromkeys(("gaussian_window", "gaussian_blur", "blur_saliency"), "tfperceptual.image_ops"),
    # evaluation
    **dict.fromkeys(("ssim", "ssim_map", "global_ssim", "psnr", "fooling_rate", "robust_accuracy", "perturbation_norms",
                     "noise_map",
                     "evaluate", "per_image_counts", "aggregate", "confusion_counts", "DEFAULT_NOISE_THRESHOLDS",
                     "deletion_insertion", "auc", "normalise_maps", "threshold_grids", "largest_component_box",
                     "box_iou", "weak_localisation", "weak_localisation_success", "pointing_game",
                     "cascading_randomization", "cascade_input_dependence", "MID_GREY", "changed_fraction",
                     "hoyer_sparsity", "wilson_interval", "auto_attack", "ssim_auto_attack", "RobustnessResult",
                     "verify_adversarial", "ARTUnavailableError"), "tfperceptual.evaluation"),
    # protocols
    "compare": "tfperceptual.protocols.compare",
    **dict.fromkeys(("run_sweep", "interpolate_at", "matched_table", "run_localize", "calibrate_eps",
                     "default_grid", "run_benchmarks", "parse_methods", "paired_differences", "BENCHMARKS",
                     "DEFAULT_EPS_GRIDS", "EPS_GRIDS_BY_DATA", "EPS_UNITS", "PAPER_TABLES", "PAPER_TABLE_I",
                     "PAPER_TABLE_1", "PAPER_TABLE_2", "PB_DEFAULTS"), "tfperceptual.protocols"),
    **dict.fromkeys(("TABLE_THRESHOLD", "METRICS"), "tfperceptual.protocols.localize"),
    **dict.fromkeys(("PB_METHODS",), "tfperceptual.protocols.saliency_benchmark"),
    **dict.fromkeys(("run_robustness", "parse_threats"), "tfperceptual.protocols.robustness"),
    # data, callbacks, files, checks
    **dict.fromkeys(("data_root", "cache_dir", "load_mnist", "load_cifar10", "load_imagenet_val", "read_idx",
                     "read_image_rgb", "load_sample", "DataNotFoundError", "CIFAR10_CLASSES"), "tfperceptual.datasets"),
    **dict.fromkeys(("AdversarialEvaluation", "PerceptionSnapshot"), "tfperceptual.callbacks"),
    **dict.fromkeys(("atomic_write_text", "atomic_write_json", "atomic_savefig", "atomic_savez", "read_json",
                     "read_npz", "CacheWarning"), "tfperceptual.io_utils"),
    **dict.fromkeys(("check_images", "check_labels", "check_epsilon"), "tfperceptual.validation"),
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tfperceptual' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
