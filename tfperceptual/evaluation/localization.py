"""Where do perturbations land? Binary noise maps against class-activation regions (paper's Table I, Fig. 5).

For image i and noise threshold t the paper compares N_i = {(1 − SSIM map) > t} (perturbed pixels)
with G_i = {CAM > 0.75} (the region the classifier uses), and averages over images:

- precision TP / (TP + FP): the share of perturbed pixels that lie in the CAM region;
- pixels perturbed (TP + FP) / (H·W);
- recall TP / (TP + FN): the share of the CAM region that was perturbed;
- IOU TP / (TP + FP + FN);
- IOU-outside FP / (TP + FP + TN): perturbed pixels outside the region, relative to the pixels
  perturbed or outside it.

An image with no perturbed pixel at a threshold has no precision there: it is left out of that
threshold's precision average and counted in ``n_empty`` (the report says how many). Likewise an image
whose CAM region is empty is left out of recall and counted in ``n_empty_cam``. IOU and IOU-outside
are 0 for an image whose denominator is empty.
"""

from __future__ import annotations

import numpy as np

from ..validation import check_maps

__all__ = ["evaluate", "per_image_counts", "aggregate", "DEFAULT_NOISE_THRESHOLDS", "confusion_counts", "noise_map"]

#: noise thresholds of the Fig. 5 curves; Table I is read at 0.11
DEFAULT_NOISE_THRESHOLDS = tuple(np.round(np.arange(0.01, 0.51, 0.01), 2))


def noise_map(ssim_maps, combine="max"):
    """Per-pixel dissimilarity 1 − SSIM, channels combined: (B, H, W, C) → (B, H, W).

    Args:
        ssim_maps: output of :func:`tfperceptual.evaluation.quality.ssim_map`.
        combine: ``"max"`` (default: a pixel counts as perturbed when any colour channel changed —
            the paper shows the channels separately) or ``"mean"`` over the channels.

    Returns:
        (B, H, W) float32 array, values in [0, 2].

    Raises:
        ValueError: not (B, H, W, C), or an unknown ``combine``.
    """
    d = 1.0 - np.asarray(ssim_maps, np.float32)
    if d.ndim != 4:
        raise ValueError(f"ssim_maps must have shape (B, H, W, C), got {d.shape}")
    if combine == "max":
        return d.max(-1)
    if combine == "mean":
        return d.mean(-1)
    raise ValueError(f"combine must be 'max' or 'mean', got {combine!r}")


def confusion_counts(noise_binary, cam_binary):
    """TP, FP, FN, TN per image for boolean maps (B, H, W); each a (B,) int64 array."""
    n, g = np.asarray(noise_binary, bool), np.asarray(cam_binary, bool)
    axes = (1, 2)
    tp = np.sum(n & g, axes)
    fp = np.sum(n & ~g, axes)
    fn = np.sum(~n & g, axes)
    tn = np.sum(~n & ~g, axes)
    return tp, fp, fn, tn


def per_image_counts(noise_maps, cam_maps, noise_thresholds=DEFAULT_NOISE_THRESHOLDS, cam_threshold=0.75):
    """Confusion counts of every image at every threshold: (B, T, 4) int64 array of TP, FP, FN, TN.

    Streaming runs keep these counts batch by batch instead of the maps; :func:`aggregate` turns
    them into the metrics. Arguments as in :func:`evaluate`.
    """
    noise = check_maps(noise_maps, "noise_maps").astype(np.float32)
    cam = check_maps(cam_maps, "cam_maps").astype(np.float32)
    if noise.shape != cam.shape:
        raise ValueError(f"noise_maps and cam_maps must have the same shape, got {noise.shape} and {cam.shape}")
    ts = np.asarray(noise_thresholds, np.float64).ravel()
    if ts.size == 0:
        raise ValueError("noise_thresholds is empty")
    g = cam > cam_threshold
    return np.stack([np.stack(confusion_counts(noise > t, g), -1) for t in ts], 1).astype(np.int64)


def aggregate(counts, noise_thresholds=DEFAULT_NOISE_THRESHOLDS):
    """Metrics of :func:`evaluate` from per-image counts (B, T, 4) (see :func:`per_image_counts`)."""
    counts = np.asarray(counts, np.int64)
    tp, fp, fn, tn = (counts[..., k].astype(np.float64) for k in range(4))
    hw = (tp + fp + fn + tn)[:, :1]
    perturbed = tp + fp
    has = perturbed > 0
    cam_size = tp + fn
    cam_ok = cam_size[:, 0] > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(has, tp / np.maximum(perturbed, 1), np.nan)
        union = tp + fp + fn
        outside = tp + fp + tn
        out = {
            "precision": np.array([np.nanmean(prec[:, j]) if has[:, j].any() else np.nan
                                   for j in range(prec.shape[1])]),
            "pixels_perturbed": np.mean(perturbed / hw, 0),
            "recall": (np.mean(tp[cam_ok] / cam_size[cam_ok], 0) if cam_ok.any()
                       else np.full(tp.shape[1], np.nan)),
            "iou": np.mean(np.where(union > 0, tp / np.maximum(union, 1), 0.0), 0),
            "iou_outside": np.mean(np.where(outside > 0, fp / np.maximum(outside, 1), 0.0), 0),
            "n_empty": np.sum(~has, 0).astype(np.float64),
        }
    out["thresholds"] = np.asarray(noise_thresholds, np.float64).ravel()
    out["n_empty_cam"] = int(np.sum(~cam_ok))
    return out


def evaluate(noise_maps, cam_maps, noise_thresholds=DEFAULT_NOISE_THRESHOLDS, cam_threshold=0.75):
    """The paper's localisation metrics over noise thresholds.

    Args:
        noise_maps: (B, H, W) per-pixel dissimilarity, e.g. 1 − SSIM map with channels combined
            (:func:`noise_map`); a pixel is perturbed where it exceeds the threshold.
        cam_maps: (B, H, W) class activation maps normalised to [0, 1] per image (GradCAM++).
        noise_thresholds: sequence of thresholds t (Table I uses 0.11).
        cam_threshold: the CAM region is CAM > ``cam_threshold`` (0.75 in the paper).

    Returns:
        dict of float arrays over the thresholds: ``precision``, ``pixels_perturbed``, ``recall``,
        ``iou``, ``iou_outside`` (means over images), ``n_empty`` (images with no perturbed pixel,
        left out of ``precision``), plus ``thresholds`` and the scalar ``n_empty_cam``.

    Raises:
        ValueError / TypeError: shapes differ or are not (B, H, W), NaN/Inf, empty threshold list.
    """
    return aggregate(per_image_counts(noise_maps, cam_maps, noise_thresholds, cam_threshold), noise_thresholds)
