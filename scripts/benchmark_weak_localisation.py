"""Weak localisation's cost: one connected-component labelling per α of every strategy (250 per map, the
direct reading of Sec. 4.2, as the project did before) against `tfperceptual.evaluation.saliency_metrics`' one labelling per
distinct mask. Same answers (checked here, and in tests/test_saliency_metrics.py); median seconds per map.

    python scripts/benchmark_weak_localisation.py runs/benchmark_imagenet [--maps 64] [--repeats 3]

Reads saliency maps from a benchmark cache (every method found, blurred σ = 5 and not) with random boxes.
"""

import argparse
import glob
import os
import time

import numpy as np
from scipy import ndimage

from tfperceptual.evaluation import saliency_metrics as bm


def per_alpha_success(maps, boxes):
    """The baseline: label every α's mask; box from scipy's find_objects."""
    out = {}
    norm = bm.normalise_maps(maps)
    for strat, alphas in bm.threshold_grids().items():
        ok = np.zeros((len(norm), len(alphas)), bool)
        for i, (s, bx) in enumerate(zip(norm, boxes)):
            for j, mask in enumerate(bm._masks(s, strat, alphas)):
                lab, n = ndimage.label(mask)
                if n == 0:
                    continue
                k = int(np.argmax(np.bincount(lab.ravel())[1:])) + 1
                sl = ndimage.find_objects(lab, max_label=k)[k - 1]
                box = np.array([sl[1].start, sl[0].start, sl[1].stop, sl[0].stop], np.float64)
                ok[i, j] = bool(np.any(bm.box_iou(box, bx) >= 0.5))
        out[strat] = ok
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="a `tfperceptual benchmark` --out folder with a cache/")
    p.add_argument("--maps", type=int, default=64, help="maps to time (half raw, half blurred)")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    files = sorted(glob.glob(os.path.join(a.out, "cache", "*.npz")))
    raw = []
    for f in files:
        if not os.path.basename(f).startswith("metrics_"):
            with np.load(f) as z:
                if "map" in z.files:
                    raw.append(z["map"])
    if not raw:
        raise SystemExit(f"no cached maps under {a.out}/cache")
    per = max(1, a.maps // (2 * len(raw)))
    m = np.concatenate([r[:per] for r in raw])[: a.maps // 2].astype(np.float64)
    m = np.concatenate([m, ndimage.gaussian_filter(m, (0, 5, 5), truncate=4.0)])
    rng = np.random.default_rng(0)
    h, w = m.shape[1:]
    boxes = []
    for _ in m:
        xy = rng.uniform(0, 0.6, (2, 2)) * (w, h)
        boxes.append(np.concatenate([xy, np.minimum(xy + rng.uniform(0.15, 0.6, (2, 2)) * (w, h), (w, h))], 1))
    times = {"per α (baseline)": [], "per distinct mask": []}
    for _ in range(a.repeats):
        t = time.perf_counter()
        ref = per_alpha_success(m, boxes)
        times["per α (baseline)"].append((time.perf_counter() - t) / len(m))
        t = time.perf_counter()
        got = bm.weak_localisation_success(m, boxes)
        times["per distinct mask"].append((time.perf_counter() - t) / len(m))
        assert all(np.array_equal(ref[k], got[k]) for k in ref), "the two disagree"
    base = np.median(times["per α (baseline)"])
    print(f"{len(m)} maps of {h} × {w}, {a.repeats} repeats, identical successes")
    print("| weak localisation | s / map (median) | speed-up |")
    print("|---|---|---|")
    for k, v in times.items():
        print(f"| {k} | {np.median(v):.4f} | {base / np.median(v):.2f}× |")


if __name__ == "__main__":
    main()
