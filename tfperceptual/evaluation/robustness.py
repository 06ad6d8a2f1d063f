"""Robust accuracy: the fraction of images still classified as their true label under attack.

``robust_accuracy(attacks, images, labels)`` runs each attack against the *true* labels, the next one only
on the images still robust, so an image counts as robust only if every attack fails (random restarts are
several attacks with different seeds: an image is robust only if no restart fools it).  An image the model
misclassifies clean is not robust (an attack that already succeeds at its start returns it unchanged,
misclassified).  Used by ``scripts/eval_robust.py`` and the robust-model tests.
"""

from __future__ import annotations

import numpy as np

from ..validation import check_images, check_labels

__all__ = ["robust_accuracy"]


def robust_accuracy(attacks, images, labels, return_mask=False):
    """Robust accuracy under the worst case of ``attacks``.

    Args:
        attacks: one :class:`~tfperceptual.attacks.Attack` or a sequence of them (e.g. restarts with
            different seeds), each callable as ``attack(images, labels) -> AttackResult``.
        images: (B, H, W, C) float pixels in [0, 1]; labels: (B,) true integer classes.
        return_mask: also return the (B,) bool mask of robust images.

    Returns:
        float in [0, 1] (and the mask with ``return_mask=True``).

    Raises:
        TypeError / ValueError: bad images or labels (:mod:`tfperceptual.validation`), no attack.
    """
    attacks = [attacks] if callable(attacks) else list(attacks)
    if not attacks:
        raise ValueError("attacks must hold at least one attack")
    x = check_images(images, "images")
    num_classes = getattr(attacks[0], "num_classes", int(np.max(labels)) + 1)
    y = check_labels(labels, len(x), num_classes, "labels")
    robust = np.ones(len(x), bool)
    for attack in attacks:
        idx = np.flatnonzero(robust)
        if len(idx) == 0:
            break
        res = attack(x[idx], y[idx], metrics=False)
        robust[idx] = np.asarray(res.adv_labels) == y[idx]
    acc = float(robust.mean())
    return (acc, robust) if return_mask else acc
