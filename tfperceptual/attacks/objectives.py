"""Attack losses to be *maximised*, per image, from logits (B, K).

* ``cw``: Carlini–Wagner margin with confidence κ (the paper's supplement uses
  κ = 50).  Untargeted: min(max_{j≠y} Z_j − Z_y, κ); targeted towards t:
  min(Z_t − max_{j≠t} Z_j, κ).
* ``ce``: cross-entropy; untargeted: CE(y, Z); targeted: −CE(t, Z).
* ``kl``: KL(softmax(Z₀) ‖ softmax(Z)) from the logits Z₀ of the clean image (the inner maximisation of
  TRADES, Zhang et al. 2019, Eq. 5); labels and targets are not used.  Its gradient is zero at Z = Z₀, so
  it needs a random start.
* ``dlr``: Croce & Hein's difference of logits ratio (ICML 2020, Eq. 6), shift- and scale-invariant in the
  logits; untargeted: −(Z_y − max_{j≠y} Z_j) / (Z_π1 − Z_π3 + 1e-12) (π sorts the logits decreasingly,
  K ≥ 3); targeted towards t (Eq. 7): −(Z_y − Z_t) / (Z_π1 − (Z_π3 + Z_π4)/2 + 1e-12) (K ≥ 4).  The same
  formulas as the authors' ``autopgd_base.py``.
"""

from __future__ import annotations

import tensorflow as tf

from ..models.logits import class_margin, class_score

__all__ = ["LOSSES", "PGD_LOSSES", "APGD_LOSSES", "dlr_loss", "attack_loss", "attack_loss_gradient", "attack_logits_and_gradient", "margin"]

#: losses of APGD (Croce & Hein 2020) and SSIM-APGD
APGD_LOSSES = ("ce", "dlr")
#: losses of the SSIM-ball attacks (which start at the clean image)
LOSSES = ("cw", "ce")
#: losses of the norm-ball attacks (random start): also ``kl``
PGD_LOSSES = ("ce", "cw", "kl")

#: Z_label − max_{j≠label} Z_j per image (positive: ``label`` is predicted), (B,); see
#: :func:`tfperceptual.models.logits.class_margin`
margin = class_margin


def attack_loss(logits, labels, targets=None, loss="cw", confidence=50.0, reference_logits=None):
    """Loss per image (B,) for logits (B, K) and int labels/targets (B,); ``targets=None``: untargeted.

    ``reference_logits`` (B, K): the clean image's logits, needed by ``loss="kl"`` only.

    Raises:
        ValueError: an unknown ``loss``; ``"kl"`` without ``reference_logits``.
    """
    if loss == "kl":
        if reference_logits is None:
            raise ValueError("loss='kl' needs the clean logits (reference_logits)")
        p = tf.nn.softmax(reference_logits)
        return tf.reduce_sum(p * (tf.nn.log_softmax(reference_logits) - tf.nn.log_softmax(logits)), -1)
    if loss == "dlr":
        return dlr_loss(logits, labels, targets)
    if loss == "cw":
        m = class_margin(logits, targets) if targets is not None else -class_margin(logits, labels)
        return tf.minimum(m, tf.cast(confidence, logits.dtype))
    if loss == "ce":
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits
        if targets is not None:
            return -ce(labels=targets, logits=logits)
        return ce(labels=labels, logits=logits)
    raise ValueError(f"loss must be one of {PGD_LOSSES + ('dlr',)}, got {loss!r}")


def dlr_loss(logits, labels, targets=None):
    """Croce & Hein's DLR loss per image (B,) (to be maximised; see the module docstring): untargeted with
    ``targets=None`` (needs K ≥ 3), else targeted towards ``targets`` (K ≥ 4). ``logits`` (B, K) float,
    ``labels``/``targets`` (B,) int."""
    srt = tf.sort(logits, axis=-1, direction="DESCENDING")
    z_y = class_score(logits, labels)
    if targets is None:
        return -class_margin(logits, labels) / (srt[:, 0] - srt[:, 2] + 1e-12)
    z_t = class_score(logits, targets)
    return -(z_y - z_t) / (srt[:, 0] - 0.5 * (srt[:, 2] + srt[:, 3]) + 1e-12)


def attack_logits_and_gradient(model, x, labels, targets=None, loss="cw", confidence=50.0, reference_logits=None):
    """(logits (B, K), ∇ₓ (B, H, W, C)) of the summed :func:`attack_loss` of ``model`` at images ``x``: one
    forward and one backward pass, whose logits also tell a loop which images already succeeded (inference
    mode)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=False)
        total = tf.reduce_sum(attack_loss(logits, labels, targets, loss, confidence, reference_logits))
    return logits, tape.gradient(total, x)


def attack_loss_gradient(model, x, labels, targets=None, loss="cw", confidence=50.0, reference_logits=None):
    """∇ₓ of the summed :func:`attack_loss` of ``model``'s logits at images ``x`` (B, H, W, C), same shape:
    the one gradient every attack step of the project takes (inference mode)."""
    return attack_logits_and_gradient(model, x, labels, targets, loss, confidence, reference_logits)[1]
