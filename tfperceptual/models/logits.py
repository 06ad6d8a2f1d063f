"""Functions of a classifier's logits (B, K) used by attacks and explainers alike: the class margin and the
class score."""

from __future__ import annotations

import tensorflow as tf

__all__ = ["class_margin", "class_score"]


def class_score(logits, labels):
    """Z_label per image: (B, K) logits and (B,) int labels → (B,) (the logit of Eq. 2 of Elliott et al.)."""
    return tf.gather(logits, tf.cast(labels, tf.int32), axis=1, batch_dims=1)


def class_margin(logits, labels):
    """Z_label − max_{j≠label} Z_j per image, (B,): positive when ``label`` is predicted.

    The margin of Carlini–Wagner's loss and of Elliott et al.'s Eq. 1. ``logits`` (B, K) float,
    ``labels`` (B,) int in [0, K).
    """
    k = tf.shape(logits)[-1]
    onehot = tf.one_hot(labels, k, dtype=logits.dtype)
    own = tf.reduce_sum(logits * onehot, -1)
    other = tf.reduce_max(tf.where(onehot > 0, tf.constant(-float("inf"), logits.dtype), logits), -1)
    return own - other
