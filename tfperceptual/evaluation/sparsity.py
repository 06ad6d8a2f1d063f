"""Sparsity of perturbations, and binomial confidence intervals for the fractions reported beside them.

* :func:`changed_fraction` — the fraction of pixels (per image, any channel) changed by more than a threshold
  (1/255: a change that survives 8-bit quantisation), the paper's visual notion of sparsity.
* :func:`hoyer_sparsity` — Hoyer (2004): (√d − ‖δ‖₁/‖δ‖₂) / (√d − 1) ∈ [0, 1]; 1 for one non-zero entry, 0 for
  equal magnitudes everywhere (scale-invariant).
* :func:`wilson_interval` — the Wilson score interval of a binomial proportion (Wilson 1927), for the judge
  fractions of ``docs/results.md``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["changed_fraction", "hoyer_sparsity", "wilson_interval"]


def _deltas(perturbation):
    d = np.asarray(perturbation, np.float64)
    if d.ndim != 4:
        raise ValueError(f"perturbation must have shape (B, H, W, C), got {d.shape}")
    return d


def changed_fraction(perturbation, threshold=1.0 / 255.0):
    """Per image (B,) float64: the fraction of pixels with max_c |δ| > ``threshold`` for δ (B, H, W, C)."""
    d = _deltas(perturbation)
    return (np.abs(d).max(-1) > threshold).reshape(len(d), -1).mean(1)


def hoyer_sparsity(perturbation):
    """Per image (B,) float64 Hoyer sparsity of δ (B, H, W, C) over all entries; NaN for δ = 0."""
    d = _deltas(perturbation).reshape(len(perturbation), -1)
    n = d.shape[1]
    l1, l2 = np.abs(d).sum(1), np.linalg.norm(d, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(l2 > 0, (math.sqrt(n) - l1 / np.where(l2 > 0, l2, 1.0)) / (math.sqrt(n) - 1), np.nan)


def wilson_interval(successes, n, z=1.959963984540054):
    """The Wilson score interval (low, high) of a proportion ``successes / n`` (95 % for the default z).

    Raises:
        ValueError: n < 1 or successes outside [0, n].
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 ≤ successes ≤ n and n ≥ 1, got {successes} of {n}")
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)
