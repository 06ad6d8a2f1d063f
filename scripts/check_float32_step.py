"""Whether PGAP's exact SSIM-ball step could run in float32 on ImageNet (issue 18): the same step solved in
float64 and float32 on the per-channel rows of real 227 × 227 images, each solution's S2 re-computed in float64
against the ball's bound 1 − ε², with the time per call (median of 3) and the objective ratio.

    python scripts/check_float32_step.py [--n 8] [--eps 0.001,0.005,0.02] [--out docs/float32_step.json]

A float32 solution that is "certified" in float32 arithmetic can still lie outside the ball in exact
arithmetic; that is what this measures.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--eps", default="0.001,0.005,0.02")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/float32_step.json")
    args = ap.parse_args(argv)

    import tensorflow as tf

    from solvers.exact import solve_exact
    from solvers.ssim_ball import structure_similarity
    from tfperceptual.datasets import load_imagenet_val
    from tfperceptual.io_utils import atomic_write_json

    x, _ = load_imagenet_val(with_boxes=False, limit=args.n)
    x = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    rows = x.reshape(len(x), -1, 3).transpose(0, 2, 1).reshape(len(x) * 3, -1)  # one SSIM ball per channel
    g = np.random.default_rng(args.seed).normal(size=rows.shape)
    results = []
    for eps in (float(e) for e in args.eps.split(",")):
        row = {"eps": eps, "bound_s2": 1 - eps ** 2}
        gains = {}
        for dt in (tf.float64, tf.float32):
            solve = tf.function(lambda g_, x_, dt=dt: solve_exact(g_, x_, eps, dtype=dt).y)
            gt, xt = tf.constant(g, dt), tf.constant(rows, dt)
            solve(gt, xt)
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                y = solve(gt, xt).numpy()
                times.append(time.perf_counter() - t0)
            y = y.astype(np.float64)
            s2 = np.asarray(structure_similarity(rows, y))
            gains[dt.name] = float(np.sum(g * (y - rows)))
            row[dt.name] = {"ms_per_image": 1e3 * statistics.median(times) / len(x), "min_s2": float(s2.min()),
                            "rows_outside_ball": int(np.sum(s2 < 1 - eps ** 2 - 1e-12)),  # beyond float64 rounding
                            "worst_violation_in_eps2": float(max(0.0, (1 - eps ** 2 - s2.min()) / eps ** 2)),
                            "in_box": bool(y.min() >= 0 and y.max() <= 1)}
        row["objective_float32_over_float64"] = gains["float32"] / gains["float64"]
        results.append(row)
        print(json.dumps(row), flush=True)
    atomic_write_json(Path(args.out), {"images": args.n, "rows": len(rows), "results": results})


if __name__ == "__main__":
    main()
