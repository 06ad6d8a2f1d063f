"""The Foolbox baselines, for evaluation: Foolbox's own attacks behind the project's
:class:`~tfperceptual.attacks.Attack` interface (:mod:`tfperceptual.attacks.foolbox`, re-exported here).

``FGSM``, ``FGM``, ``PGD`` and ``PGD_L2`` (registry names ``fgsm``, ``fgm``, ``pgd``, ``pgd_l2``) run
Foolbox's ``LinfFastGradientAttack``, ``L2FastGradientAttack``, ``LinfPGD`` and ``L2PGD``; they are not
graph-pure (Foolbox runs eagerly), so they evaluate models but cannot run inside a ``train_step``.  The
project's own graph-pure attacks of the same kind, for adversarial training, are
:class:`~tfperceptual.attacks.LinfPGD`, :class:`~tfperceptual.attacks.L2PGD` and
:class:`~tfperceptual.attacks.RandomStartFGSM` (``linf_pgd``, ``l2_pgd``, ``fgsm_rs``).
"""

from .attacks.foolbox import EAD, FGM, FGSM, FOOLBOX_ATTACKS, PGD, PGD_L2, FoolboxAttack, SparseL1Descent

__all__ = ["FoolboxAttack", "FGSM", "FGM", "PGD", "PGD_L2", "SparseL1Descent", "EAD", "FOOLBOX_ATTACKS"]
