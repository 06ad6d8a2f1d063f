"""Attack losses to be *maximised*, per image, from logits (B, K).

* ``cw``: Carlini–Wagner margin with confidence κ (the paper's supplement uses
  κ = 50).  Untargeted: min(max_{j≠y} Z_j − Z_y, κ); targeted towards t:
  min(Z_t − max_{j≠t} Z_j, κ).
* ``ce``: cross-entropy; untargeted: CE(y, Z); targeted: −CE(t, Z).
"""

from __future__ import annotations

import tensorflow as tf

from ..models.logits import class_margin

__all__ = ["LOSSES", "attack_loss", "margin"]

LOSSES = ("cw", "ce")

#: Z_label − max_{j≠label} Z_j per image (positive: ``label`` is predicted), (B,); see
#: :func:`tfperceptual.models.logits.class_margin`
margin = class_margin


def attack_loss(logits, labels, targets=None, loss="cw", confidence=50.0):
    """Loss per image (B,) for logits (B, K) and int labels/targets (B,); ``targets=None``: untargeted.

    Raises:
        ValueError: an unknown ``loss``.
    """
    if loss == "cw":
        m = class_margin(logits, targets) if targets is not None else -class_margin(logits, labels)
        return tf.minimum(m, tf.cast(confidence, logits.dtype))
    if loss == "ce":
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits
        if targets is not None:
            return -ce(labels=targets, logits=logits)
        return ce(labels=labels, logits=logits)
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
