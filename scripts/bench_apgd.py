"""Cost of an APGD step against the physical limit (one forward + backward pass), CIFAR-10, in one run.

    python scripts/bench_apgd.py --n 128 --steps 20 --repeats 3

Per step, median and minimum over interleaved repeats (each method's compiled function warmed up first):
SSIM-APGD (two exact SSIM-ball projections per step), L2-APGD (the ℓ2 projection, for scale), a compiled loop
of bare forward + backward passes of the same model, and the projection alone.  Writes
``docs/bench_apgd.json``.  This CPU's timings vary by up to 40 % between runs: compare ratios within one run.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "docs" / "bench_apgd.json"))
    args = p.parse_args()

    import tensorflow as tf

    from solvers.ssim_projection import project_ssim_ball_rows
    from tfperceptual.attacks import L2APGD, SSIMAPGD
    from tfperceptual.datasets import load_cifar10
    from tfperceptual.io_utils import atomic_write_json
    from tfperceptual.models import as_logits_model, zoo

    x, y = load_cifar10("test")
    idx = (np.arange(args.n) * len(x)) // args.n
    xt, yt = tf.constant(x[idx].astype(np.float32)), tf.constant(y[idx], tf.int64)
    model = zoo.cifar10_cnn_robust()
    lm = as_logits_model(model)
    ssim = SSIMAPGD(model, 0.015, steps=args.steps, seed=0)
    l2 = L2APGD(model, 0.5, steps=args.steps, seed=0)

    @tf.function
    def bare(images):
        for _ in tf.range(args.steps):
            with tf.GradientTape() as tape:
                tape.watch(images)
                loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(yt, lm(images, training=False)))
            images = images + 1e-4 * tape.gradient(loss, images)
        return images

    rows = tf.reshape(tf.cast(xt, tf.float64), (args.n, -1))
    z = rows + 0.02 * tf.random.stateless_normal(rows.shape, (0, 1), dtype=tf.float64)
    e2, e1 = tf.constant(0.015, tf.float64), tf.constant(0.0, tf.float64)
    methods = {"ssim_apgd": lambda: ssim.perturb(xt, yt), "l2_apgd": lambda: l2.perturb(xt, yt),
               "bare_forward_backward": lambda: bare(xt),
               "ssim_projection_x_steps": lambda: [project_ssim_ball_rows(z, rows, e2, e1, (0.0, 1.0), 3)
                                                   for _ in range(args.steps)][-1]["y"]}
    for f in methods.values():
        f()  # compile
    times = {k: [] for k in methods}
    for _ in range(args.repeats):
        for k, f in methods.items():
            t0 = time.perf_counter()
            np.asarray(f())
            times[k].append((time.perf_counter() - t0) / args.steps * 1000)
    out = {k: {"median_ms_per_step": float(np.median(v)), "min_ms_per_step": float(np.min(v)), "all": v}
           for k, v in times.items()}
    bare_ms = out["bare_forward_backward"]["median_ms_per_step"]
    for k in out:
        out[k]["ratio_to_bare"] = out[k]["median_ms_per_step"] / bare_ms
    atomic_write_json(args.out, {"n": args.n, "steps": args.steps, "repeats": args.repeats, "methods": out})
    for k, v in out.items():
        print(f"{k:26s} {v['median_ms_per_step']:8.1f} ms/step (min {v['min_ms_per_step']:.1f}), "
              f"{v['ratio_to_bare']:.2f} × bare")


if __name__ == "__main__":
    main()
