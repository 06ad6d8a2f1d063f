"""Evaluation: image quality and attack metrics (fooling rate, robust accuracy; AutoAttack through ART and the
SSIM-ball ensemble), where perturbations land (Table I of Pochimireddy et al.),
sparsity of perturbations (changed fraction, Hoyer) with Wilson intervals,
and the saliency benchmarks (deletion/insertion, weak localisation, pointing game, sanity checks)."""

from .autoattack import (ARTUnavailableError, RobustnessResult, auto_attack, ssim_auto_attack,
                         verify_adversarial)
from .localization import DEFAULT_NOISE_THRESHOLDS, aggregate, confusion_counts, evaluate, noise_map, per_image_counts
from .quality import fooling_rate, global_ssim, perturbation_norms, psnr, ssim, ssim_map
from .robustness import robust_accuracy
from .saliency_metrics import (INSERTION_BLURS, MID_GREY, auc, box_iou, cascade_input_dependence,
                               cascading_randomization, deletion_insertion, largest_component_box, normalise_maps,
                               pointing_game, threshold_grids, weak_localisation, weak_localisation_success)
from .sparsity import changed_fraction, hoyer_sparsity, wilson_interval

__all__ = ["auto_attack", "ssim_auto_attack", "RobustnessResult", "verify_adversarial", "ARTUnavailableError", "ssim", "ssim_map", "global_ssim", "psnr", "fooling_rate", "robust_accuracy", "perturbation_norms", "noise_map", "evaluate",
           "per_image_counts", "aggregate", "confusion_counts", "DEFAULT_NOISE_THRESHOLDS", "deletion_insertion", "auc",
           "normalise_maps", "threshold_grids", "largest_component_box", "box_iou", "weak_localisation",
           "weak_localisation_success", "pointing_game", "cascading_randomization", "cascade_input_dependence",
           "MID_GREY", "INSERTION_BLURS", "changed_fraction", "hoyer_sparsity", "wilson_interval"]
