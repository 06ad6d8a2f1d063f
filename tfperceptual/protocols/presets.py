"""Presets of the protocols: ε grids per dataset, the papers' tables, the zoo model and defaults per dataset.

Numbers from the papers are kept here, beside the operating points they were measured at, so that a report
can print them next to ours — only for the zoo model of the same dataset (with a user's ``--model`` they
are not comparable, and the reports leave them out).
"""

from __future__ import annotations

from ..attacks import ATTACKS
from ..models import zoo

__all__ = ["DATASETS", "PAPER_ATTACKS", "ZOO_MODELS", "DEFAULT_EPS_GRIDS", "EPS_GRIDS_BY_DATA", "EPS_UNITS", "PAPER_TABLES",
           "PAPER_TABLE_I", "PAPER_TABLE_1", "PAPER_TABLE_2", "PB_DEFAULTS", "BENCHMARKS", "BOX_BENCHMARKS",
           "default_benchmarks", "eps_grid", "eps_unit", "zoo_model", "LOCALIZE_TABLE_THRESHOLD",
           "COUNTERFACTUAL_MODELS", "COUNTERFACTUAL_EPS", "COUNTERFACTUAL_POOL", "PROBE_CLASSES", "counterfactual_model"]

#: datasets the commands know by name (``--data``); anything else must be an ``.npz`` file
DATASETS = ("mnist", "mnist-test", "cifar10", "imagenet")

#: the zoo model of each dataset family
ZOO_MODELS = {"mnist": zoo.mnist_cnn, "cifar10": zoo.cifar10_cnn, "imagenet": zoo.imagenet_mobilenet}

#: what ε means for each attack registered at import (:func:`eps_unit` reads the registry live)
EPS_UNITS = {name: cls.eps_unit for name, cls in ATTACKS.items()}


def eps_unit(name):
    """What ε means for the registered attack ``name`` ("" for an unknown name)."""
    return ATTACKS[name].eps_unit if name in ATTACKS else ""

#: the attacks of the paper's comparison (the default of ``compare`` and ``localize``); the project's
#: graph-pure norm-ball attacks (``linf_pgd``, ``l2_pgd``, ``fgsm_rs``) can be chosen with ``--attacks``
PAPER_ATTACKS = ("fpgap", "pgap", "fgsm", "fgm", "pgd", "pgd_l2")

#: the project's norm-ball attacks sweep the grid of the Foolbox attack of the same norm
_SAME_GRID = {"linf_pgd": "pgd", "l2_pgd": "pgd_l2", "fgsm_rs": "fgsm", "l2_fw": "pgd_l2", "l1q_fw": "sparse_l1",
              "ead": "sparse_l1"}


def _with_own(grids):
    return {**grids, **{own: grids[fb] for own, fb in _SAME_GRID.items()}}


#: default ε sweeps for 28×28 greyscale images (MNIST); ℓ2 grids scale with √N
DEFAULT_EPS_GRIDS = {
    "fpgap": [0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7],
    "pgap": [0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7],
    "fgsm": [0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4],
    "pgd": [0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4],
    "fgm": [0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0],
    "pgd_l2": [0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0],
    "sparse_l1": [1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 80.0],  # ℓ1: Σ|δ| over 784 pixels
}
DEFAULT_EPS_GRIDS = _with_own(DEFAULT_EPS_GRIDS)

# CIFAR-10 / ImageNet: the paper compares at SSIM 0.998 and PSNR 57 / 65 dB, i.e. perturbations
# below one 8-bit grey level on average, so the grids are small; ℓ2 grids scale with √N.
_SMALL_SSIM = [0.005, 0.01, 0.02, 0.03, 0.045, 0.06, 0.1, 0.15, 0.2]
_SMALL_LINF = [0.0002, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.03]
_L2_CIFAR = [0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6]
_L1_CIFAR = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0]

#: ε grids per dataset of ``tfperceptual compare --data``
EPS_GRIDS_BY_DATA = {
    "mnist": DEFAULT_EPS_GRIDS,
    "cifar10": _with_own({"fpgap": _SMALL_SSIM, "pgap": _SMALL_SSIM, "fgsm": _SMALL_LINF, "pgd": _SMALL_LINF,
                          "fgm": _L2_CIFAR, "pgd_l2": _L2_CIFAR, "sparse_l1": _L1_CIFAR}),
    "imagenet": _with_own({"fpgap": _SMALL_SSIM, "pgap": _SMALL_SSIM, "fgsm": _SMALL_LINF, "pgd": _SMALL_LINF,
                           "fgm": [round(e * 7.1, 4) for e in _L2_CIFAR],
                           "pgd_l2": [round(e * 7.1, 4) for e in _L2_CIFAR],
                           "sparse_l1": [round(e * 7.1 ** 2, 3) for e in _L1_CIFAR]}),
}

#: Pochimireddy et al., Table II (fooling rate at the matched average SSIM) and the operating points of
#: Tables II/III (average SSIM, average PSNR in dB); models: the paper's, not ours (see docs/results.md)
PAPER_TABLES = {
    "mnist": {"ssim_target": 0.85, "psnr_target": 25.0, "model": "the paper's MNIST CNN",
              "ssim": {"fgsm": 0.056, "fgm": 0.300, "pgd": 0.066, "pgd_l2": 0.189, "fpgap": 0.995}},
    "cifar10": {"ssim_target": 0.998, "psnr_target": 57.0, "model": "the paper's CIFAR-10 CNN",
                "ssim": {"fgsm": 0.589, "fgm": 0.568, "pgd": 0.761, "pgd_l2": 0.847, "fpgap": 1.0}},
    "imagenet": {"ssim_target": 0.998, "psnr_target": 65.0, "model": "MobileNetV2",
                 "ssim": {"fgsm": 0.827, "fgm": 0.790, "pgd": 0.923, "pgd_l2": 0.976, "fpgap": 1.0}},
}

#: the noise threshold of Table I
LOCALIZE_TABLE_THRESHOLD = 0.11
#: Pochimireddy et al., Table I (ImageNet, MobileNetV2, threshold 0.11)
PAPER_TABLE_I = {
    "precision": {"fgsm": 0.161, "fgm": 0.198, "pgd": 0.133, "pgd_l2": 0.167, "fpgap": 0.358},
    "pixels_perturbed": {"fgsm": 0.982, "fgm": 0.668, "pgd": 0.322, "pgd_l2": 0.302, "fpgap": 0.045},
    "iou_outside": {"fgsm": 0.826, "fgm": 0.559, "pgd": 0.313, "pgd_l2": 0.288, "fpgap": 0.037},
}

#: the saliency benchmarks of ``tfperceptual benchmark``; those needing ground-truth boxes
BENCHMARKS = ("deletion_insertion", "weak_localisation", "pointing_game", "sanity")
BOX_BENCHMARKS = ("weak_localisation", "pointing_game")
#: Elliott et al. Table 1 (weak-localisation error, best strategy, ImageNet val, VGG19-BN)
PAPER_TABLE_1 = {"gradcam": 0.48, "smoothgrad": 0.47, "integrated_gradients": 0.44, "rise": 0.48, "noper": 0.46,
                 "perceptual_ball": 0.43, "perceptual_ball_guided": 0.41}
#: Elliott et al. Table 2 (deletion / insertion AUC)
PAPER_TABLE_2 = {"gradcam": (0.11, 0.64), "rise": (0.12, 0.65), "perceptual_ball@0": (0.07, 0.54),
                 "perceptual_ball@5": (0.12, 0.63)}

#: perceptual-ball defaults per zoo model: ReLU indices (activation_layers) and λ′
PB_DEFAULTS = {"imagenet": {"layers": range(4, 10), "lambda_perceptual": 1e3},
               "cifar10": {"layers": range(2, 6), "lambda_perceptual": 10.0},
               "mnist": {"layers": range(0, 2), "lambda_perceptual": 100.0}}


def default_benchmarks(family):
    """The benchmarks a dataset supports: all of :data:`BENCHMARKS` with boxes (ImageNet), else
    deletion/insertion and the sanity check."""
    return BENCHMARKS if family == "imagenet" else tuple(b for b in BENCHMARKS if b not in BOX_BENCHMARKS)


def eps_grid(attack, family="mnist"):
    """The ε grid of ``attack`` for a dataset family (MNIST's for unknown families)."""
    return list(EPS_GRIDS_BY_DATA.get(family, DEFAULT_EPS_GRIDS)[attack])


def zoo_model(family):
    """``(model, name)`` of the zoo model of a dataset family (``mnist``, ``cifar10``, ``imagenet``)."""
    build = ZOO_MODELS[family]
    return build(), f"tfperceptual zoo.{build.__name__}"


#: the default model of ``counterfactual`` / ``probe``: the method is about robust classifiers (the paper), so the
#: adversarially trained zoo models where they exist; ImageNet has only the standard MobileNet offline
COUNTERFACTUAL_MODELS = {"mnist": zoo.mnist_cnn_robust, "cifar10": zoo.cifar10_cnn_robust,
                         "imagenet": zoo.imagenet_mobilenet}

#: default ℓ2 budget ε₂ of ``counterfactual`` / ``probe`` (the ℓ1-q budget is ε₂ √d): where the ℓ2-robust
#: models reach most targets (docs/results.md, "Sparse counterfactuals")
COUNTERFACTUAL_EPS = {"mnist": 3.0, "cifar10": 2.0, "imagenet": 3.0}

#: images scanned for the model's errors by ``counterfactual`` (the first N; CIFAR-10 class-balanced)
COUNTERFACTUAL_POOL = {"mnist": 1000, "cifar10": 1000, "imagenet": 300}

#: default classes of ``probe``: every class of the small datasets; a few distinct ImageNet ones (goldfish,
#: ostrich, bullfrog, castle, lemon, pizza, volcano, daisy)
PROBE_CLASSES = {"mnist": tuple(range(10)), "cifar10": tuple(range(10)),
                 "imagenet": (1, 9, 30, 483, 951, 963, 980, 985)}


def counterfactual_model(family):
    """``(model, name)``: the default model of ``counterfactual`` / ``probe`` for a dataset family."""
    build = COUNTERFACTUAL_MODELS[family]
    return build(), f"tfperceptual zoo.{build.__name__}"
