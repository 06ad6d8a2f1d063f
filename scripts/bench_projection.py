"""FPGAP's box ∩ mean projection: safeguarded Newton (solvers.closed_form.project_box_mean) against the 64-pass
bisection it replaced (kept here as the reference), on FPGAP-like rows of the three datasets' sizes (issue 18).

    python scripts/bench_projection.py [--repeats 7] [--out docs/bench_projection.json]

Rows: x uniform in [0, 1], plus N(0, 0.05) noise, a third of the entries shifted by +0.3 (the mean leaves its
interval of ± 1e-3 and the box binds); float64. Reports medians and the largest difference of the outputs.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def bisection_projection(z, mean_low, mean_high, bounds=(0.0, 1.0), iters=64):
    """The previous implementation: 64 bisection passes for τ, then the exact solve on the active set."""
    import tensorflow as tf

    dt = z.dtype
    b0, b1 = tf.constant(bounds[0], dt), tf.constant(bounds[1], dt)
    n = tf.cast(tf.shape(z)[1], dt)
    m0 = tf.reduce_mean(tf.clip_by_value(z, b0, b1), 1)
    target = tf.clip_by_value(m0, mean_low, mean_high)
    lo_tau, hi_tau = tf.reduce_min(z, 1) - (b1 - b0), tf.reduce_max(z, 1) - b0

    def body(i, lo_t, hi_t):
        mid = 0.5 * (lo_t + hi_t)
        go_up = tf.reduce_mean(tf.clip_by_value(z - mid[:, None], b0, b1), 1) > target
        return i + 1, tf.where(go_up, mid, lo_t), tf.where(go_up, hi_t, mid)

    _, lo_tau, hi_tau = tf.while_loop(lambda i, a, b: i < iters, body, (tf.constant(0), lo_tau, hi_tau))
    tau = 0.5 * (lo_tau + hi_tau)
    shifted = z - tau[:, None]
    free, upper = (shifted > b0) & (shifted < b1), shifted >= b1
    n_free = tf.reduce_sum(tf.cast(free, dt), 1)
    n_upper = tf.reduce_sum(tf.cast(upper, dt), 1)
    exact = (tf.reduce_sum(tf.where(free, z, 0.0), 1) + n_upper * b1 + (n - n_free - n_upper) * b0
             - n * target) / tf.maximum(n_free, 1.0)
    ok = (n_free > 0) & (exact >= lo_tau - 1e-12) & (exact <= hi_tau + 1e-12)
    tau = tf.where(tf.abs(m0 - target) > 0, tf.where(ok, exact, tau), tf.zeros_like(tau))
    return tf.clip_by_value(z - tau[:, None], b0, b1)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default="docs/bench_projection.json")
    args = ap.parse_args(argv)

    import tensorflow as tf

    from solvers.closed_form import project_box_mean
    from tfperceptual.io_utils import atomic_write_json

    rng = np.random.default_rng(0)
    old, new = tf.function(bisection_projection), tf.function(project_box_mean)
    rows = []
    sizes = (("MNIST", 256, 784), ("CIFAR-10 (per channel)", 768, 1024), ("ImageNet (16 x 3 channels)", 48, 50176))
    for name, b, n in sizes:
        x = rng.uniform(0, 1, (b, n))
        z = x + rng.normal(0, 0.05, (b, n))
        z[:, : n // 3] += 0.3
        m = x.mean(1)
        args_ = (tf.constant(z), tf.constant(m - 1e-3), tf.constant(m + 1e-3))
        y_old, y_new = old(*args_).numpy(), new(*args_).numpy()
        t_old, t_new = [], []
        for _ in range(args.repeats):  # alternate, so a drift of the machine touches both alike
            t0 = time.perf_counter()
            old(*args_).numpy()
            t_old.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            new(*args_).numpy()
            t_new.append(time.perf_counter() - t0)
        row = {"rows": name, "shape": [b, n], "bisection_ms": 1e3 * statistics.median(t_old),
               "newton_ms": 1e3 * statistics.median(t_new), "max_abs_difference": float(np.abs(y_old - y_new).max())}
        row["speedup"] = row["bisection_ms"] / row["newton_ms"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    atomic_write_json(Path(args.out), {"repeats": args.repeats, "rows": rows})


if __name__ == "__main__":
    main()
