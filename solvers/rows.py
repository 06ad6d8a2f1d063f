"""Channel ↔ row reshapes: one SSIM ball per colour channel means one problem row per channel.

An image batch flattened channels-last, (B, N) with N = H·W·C, becomes (B·C, N/C): row ``b·C + c`` holds
channel ``c`` of image ``b``.  :func:`to_rows` and :func:`from_rows` work on tensors inside or outside
``tf.function`` (dynamic batch size); :func:`split_channels` / :func:`merge_channels` are their NumPy views.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .checks import check_positive_int

__all__ = ["to_rows", "from_rows", "split_channels", "merge_channels"]


def to_rows(a, channels):
    """(B, N) channels-last → (B·C, N/C), one row per image and channel. ``channels`` = C ≥ 1: a Python int
    or a scalar int tensor (e.g. ``tf.shape(images)[-1]`` when the channel count is not static)."""
    if isinstance(channels, int) and channels == 1:
        return a
    b = tf.shape(a)[0]
    return tf.reshape(tf.transpose(tf.reshape(a, (b, -1, channels)), (0, 2, 1)), (b * channels, -1))


def from_rows(rows, channels):
    """Inverse of :func:`to_rows`: (B·C, M) → (B, M·C) channels-last."""
    if isinstance(channels, int) and channels == 1:
        return rows
    bc = tf.shape(rows)[0]
    return tf.reshape(tf.transpose(tf.reshape(rows, (bc // channels, channels, -1)), (0, 2, 1)),
                      (bc // channels, -1))


def _check(a, channels, axis_name):
    channels = check_positive_int(channels, "channels")
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"expected a (B, N) array, got shape {a.shape}")
    if a.shape[1] % channels if axis_name == "N" else a.shape[0] % channels:
        raise ValueError(f"{axis_name}={a.shape[1] if axis_name == 'N' else a.shape[0]} is not divisible by "
                         f"channels={channels}")
    return a, channels


def split_channels(a, channels):
    """NumPy view of :func:`to_rows`: (B, N) with ``channels`` interleaved → (B·C, N/C).

    Raises:
        ValueError: N not divisible by ``channels``; TypeError/ValueError: ``channels`` not an int ≥ 1.
    """
    a, channels = _check(a, channels, "N")
    return to_rows(tf.constant(a), channels).numpy() if channels > 1 else a


def merge_channels(a, channels):
    """NumPy view of :func:`from_rows` (inverse of :func:`split_channels`)."""
    a, channels = _check(a, channels, "B·C")
    return from_rows(tf.constant(a), channels).numpy() if channels > 1 else a
