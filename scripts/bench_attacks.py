"""Benchmarks of issue 2 (medians; ratios measured in the same run).

1. Per-image time of one exact PGAP step (the SSIM-ball QCQP) with CVXPY+ECOS
   and CVXPY+Clarabel, at 28×28 (MNIST, real images and real gradients of the
   shipped model) and 32×32×3 (real CIFAR-10 test images from
   ``$TFPERCEPTUAL_DATA/cifar10``, random gradients since no CIFAR model ships
   yet) — both as one vector of 3,072 and per channel (3 × 1,024).
2. Images per second of FPGAP against Foolbox's L2PGD at equal steps (50, no
   early stopping) on the shipped MNIST model.

Usage: python scripts/bench_attacks.py [--images 40] [--repeats 5] [--out docs/bench_attacks.json]
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np


def _median_step_time(g, x, solver, per_channel_c=1):
    from solvers import maximize_linear_over_ssim_ball

    maximize_linear_over_ssim_ball(g[:1], x[:1], 0.2, method="cvxpy", solver=solver, channels=per_channel_c)  # compile once
    times = []
    for i in range(len(x)):
        t0 = time.perf_counter()
        maximize_linear_over_ssim_ball(g[i:i + 1], x[i:i + 1], 0.2, method="cvxpy", solver=solver, channels=per_channel_c)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _cifar_images(n):
    from PIL import Image

    from tfperceptual.datasets import data_root

    files = sorted((data_root() / "cifar10" / "test").glob("*/*.jpg"))[:: max(1, 10000 // n)][:n]
    return np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32) / 255.0 for f in files])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=40)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--out", default="docs/bench_attacks.json")
    args = p.parse_args()

    import tensorflow as tf

    from tfperceptual.attacks import FPGAP, FoolboxAttack, attack_loss
    from tfperceptual.datasets import load_sample
    from tfperceptual.models import mnist_cnn

    model = mnist_cnn()
    x, _ = load_sample("mnist")
    pred = np.argmax(model(x[: args.batch]).numpy(), -1)
    results = {"machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
               "tensorflow": tf.__version__}

    # 1. exact step
    xs = tf.constant(x[: args.images])
    with tf.GradientTape() as tape:  # the CW loss gradient of the attacks' first step
        tape.watch(xs)
        loss = tf.reduce_sum(attack_loss(model(xs, training=False), tf.constant(pred[: args.images])))
    g_m = tape.gradient(loss, xs).numpy().reshape(len(xs), -1).astype(np.float64)
    xs = xs.numpy()
    x_m = xs.reshape(len(xs), -1).astype(np.float64)
    xc = _cifar_images(args.images).reshape(args.images, -1).astype(np.float64)
    g_c = np.random.default_rng(0).normal(size=xc.shape)
    step = {}
    for solver in ("ECOS", "CLARABEL"):
        step[f"mnist_784_{solver}"] = _median_step_time(g_m, x_m, solver)
        step[f"cifar_3072_{solver}"] = _median_step_time(g_c, xc, solver)
        step[f"cifar_3x1024_per_channel_{solver}"] = _median_step_time(g_c, xc, solver, per_channel_c=3)
    results["exact_step_seconds_per_image"] = step

    # 2. FPGAP vs Foolbox L2PGD, 50 steps each, no early stopping, one batch
    xb = x[: args.batch]
    fp = FPGAP(model, eps=0.3, steps=50, early_stop=False, batch_size=args.batch)
    pgd = FoolboxAttack(model, "pgd_l2", eps=2.0, steps=50, batch_size=args.batch)
    fp(xb[:8], pred[:8])
    pgd(xb[:8], pred[:8])  # warm-up (tracing)
    t_fp, t_pgd = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        fp(xb, pred)
        t_fp.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pgd(xb, pred)
        t_pgd.append(time.perf_counter() - t0)
    fp_ips = len(xb) / statistics.median(t_fp)
    pgd_ips = len(xb) / statistics.median(t_pgd)
    results["images_per_second_50_steps"] = {"fpgap": fp_ips, "foolbox_l2pgd": pgd_ips,
                                             "ratio_fpgap_over_l2pgd": fp_ips / pgd_ips,
                                             "batch": len(xb), "repeats": args.repeats}
    print(json.dumps(results, indent=2))
    from tfperceptual.io_utils import atomic_write_json

    atomic_write_json(Path(args.out), results)


if __name__ == "__main__":
    main()
