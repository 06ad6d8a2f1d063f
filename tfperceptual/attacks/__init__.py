"""Attacks: the :class:`Attack` contract, PGAP and FPGAP (the project's graph-pure SSIM-ball attacks),
LinfPGD, L2PGD and RandomStartFGSM (its graph-pure norm-ball attacks, for adversarial training),
L1QFrankWolfe and L2FrankWolfe (sparse ℓ1-q / ℓ2 Frank–Wolfe perturbations), SSIMAPGD, LinfAPGD and L2APGD
(Croce & Hein's Auto-PGD, the SSIM ball's with its exact projection), the
Foolbox baselines, attack objectives and the registry (:data:`ATTACKS`, :func:`build_attack`)."""

from .base import Attack, AttackResult, ZeroGradientWarning
from .objectives import LOSSES, PGD_LOSSES, attack_loss, attack_loss_gradient, margin
from .registry import ATTACKS, attack_names, build_attack, register_attack
from .ssim_ball import FPGAP, PGAP, PGAP_SOLVERS, SSIMBallAttack, pgap_solvers
from .pgd import L2PGD, LinfPGD, NormBallPGD, RandomStartFGSM  # noqa: E402,I001
from .frank_wolfe import FrankWolfeAttack, L1QFrankWolfe, L2FrankWolfe  # noqa: E402,I001
from .apgd import APGD, L2APGD, LinfAPGD, SSIMAPGD, apgd_checkpoints  # noqa: E402,I001
from .random_search import SSIMSquare  # noqa: E402,I001
from .foolbox import EAD, FGM, FGSM, FOOLBOX_ATTACKS, PGD, PGD_L2, FoolboxAttack, SparseL1Descent  # noqa: E402,I001 (registration order)

#: the built-in attack names, in the order of the comparison tables (a snapshot at import; attack_names()
#: and ATTACKS are live and include attacks registered later)
ATTACK_NAMES = attack_names()

__all__ = ["Attack", "AttackResult", "ZeroGradientWarning", "SSIMBallAttack", "PGAP", "FPGAP", "PGAP_SOLVERS",
           "pgap_solvers", "NormBallPGD", "LinfPGD", "L2PGD", "RandomStartFGSM", "FrankWolfeAttack", "L1QFrankWolfe",
           "L2FrankWolfe", "APGD", "LinfAPGD", "L2APGD", "SSIMAPGD", "SSIMSquare", "apgd_checkpoints", "FoolboxAttack", "FGSM", "FGM", "PGD", "PGD_L2", "SparseL1Descent", "EAD", "FOOLBOX_ATTACKS",
           "ATTACKS", "ATTACK_NAMES", "attack_names", "build_attack", "register_attack", "LOSSES", "PGD_LOSSES",
           "attack_loss", "attack_loss_gradient", "margin"]
