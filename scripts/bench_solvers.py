"""Benchmark: the exact SSIM-ball solver against CVXPY (ECOS, Clarabel), and its share of a PGAP step.

    python scripts/bench_solvers.py [--repeats 5] [--out docs/bench_solvers.json]

Problem: maximise g·y s.t. mean(y) = mean(x), ‖ỹ − ηx̃‖ ≤ r, 0 ≤ y ≤ 1 (PGAP's step), on
instances with photo-like x (clipped normal, so the box binds) and Gaussian g, ε = 0.05.
Per-image times are medians over ``--repeats`` runs: the exact solver solves a batch at once
(throughput per image), CVXPY solves image by image (its problem compiled once per size, as
PGAP uses it). Ratios are taken within this run. The PGAP-step part times one gradient
(forward + backward of the model) per image against one exact step on the same batch, and the
throughput of FPGAP and PGAP at 10 steps without early stop (64 MNIST / CIFAR-10 images, 8 ImageNet
images with the zoo MobileNet).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from solvers.exact import solve_exact  # noqa: E402
from solvers.qcqp_cvxpy import solve_qcqp_batch  # noqa: E402
from tfperceptual.io_utils import atomic_write_json  # noqa: E402

EPS = 0.05


def instances(n, b, seed=0):
    rng = np.random.default_rng(seed)
    x = np.clip(rng.normal(0.45, 0.3, (b, n)), 0.0, 1.0)
    g = rng.normal(size=(b, n))
    return g, x


def median_time(fn, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def bench_exact(n, batch, repeats, channels=1):
    g, x = instances(n, batch, seed=n)
    res = solve_exact(g, x, EPS, channels=channels)  # trace once
    assert bool(res.ok.numpy().all()), "exact solver did not certify the benchmark instances"
    t = median_time(lambda: solve_exact(g, x, EPS, channels=channels).y.numpy(), repeats)
    return {"ms_per_image": 1000 * t / batch, "batch": batch, "max_rel_gap": float(res.rel_gap.numpy().max()),
            "max_violation": float(res.violation.numpy().max()), "max_iterations": int(res.iterations.numpy().max())}


def bench_cvxpy(n, solver, count, repeats):
    g, x = instances(n, count, seed=n)
    solve_qcqp_batch(g[:1], x[:1], EPS, 0.0, (0.0, 1.0), solver=(solver,))  # compile once
    per, fails, msgs = [], 0, set()
    for i in range(count):
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            r = solve_qcqp_batch(g[i:i + 1], x[i:i + 1], EPS, 0.0, (0.0, 1.0), solver=(solver,))
            ts.append(time.perf_counter() - t0)
        if not r.ok[0]:
            fails += 1
            msgs.add(r.messages[0][:100])
        per.append(np.median(ts))
    return {"ms_per_image": 1000 * float(np.median(per)), "instances": count, "failed": fails,
            "messages": sorted(msgs)}


def pgap_share(model, images, repeats):
    """Median seconds per image of one loss gradient and of one exact step (per channel, float64)."""
    x = tf.constant(images)
    labels = tf.argmax(model(x, training=False), -1)

    @tf.function
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.keras.losses.sparse_categorical_crossentropy(labels, model(x, training=False),
                                                                   from_logits=True)
        return tape.gradient(loss, x)

    g = grad(x).numpy()
    b = len(images)
    c = images.shape[-1]
    flat_g = g.reshape(b, -1).astype(np.float64)
    flat_x = images.reshape(b, -1).astype(np.float64)
    solve_exact(flat_g, flat_x, EPS, channels=c)
    t_grad = median_time(lambda: grad(x).numpy(), repeats)
    t_solve = median_time(lambda: solve_exact(flat_g, flat_x, EPS, channels=c).y.numpy(), repeats)
    return {"gradient_ms_per_image": 1000 * t_grad / b, "exact_step_ms_per_image": 1000 * t_solve / b,
            "solver_share_of_step": t_solve / (t_solve + t_grad), "batch": b, "channels": c}


def attack_throughput(model, images, repeats, steps=10):
    """Images per second of FPGAP and PGAP (exact) at a fixed number of steps (no early stop)."""
    from tfperceptual.attacks import FPGAP, PGAP

    labels = np.argmax(model(images, training=False).numpy(), -1)
    out = {}
    for cls in (FPGAP, PGAP):
        atk = cls(model, eps=EPS, steps=steps, early_stop=False, batch_size=len(images))
        atk(images[:2], labels[:2])  # trace
        t = median_time(lambda: atk(images, labels), max(1, repeats // 2))
        out[cls.__name__.lower() + "_images_per_second"] = len(images) / t
    out["steps"] = steps
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="docs/bench_solvers.json")
    p.add_argument("--skip-models", action="store_true", help="only the solver table")
    args = p.parse_args(argv)

    gpus = tf.config.list_physical_devices("GPU")
    rows = []
    for n, batch, count in ((784, 64, 20), (3072, 64, 10), (12288, 16, 3)):
        row = {"n": n, "exact": bench_exact(n, batch, args.repeats)}
        for s in ("ECOS", "CLARABEL"):
            row[s.lower()] = bench_cvxpy(n, s, count, max(1, args.repeats // 2) if n > 5000 else args.repeats)
            row[f"speedup_vs_{s.lower()}"] = row[s.lower()]["ms_per_image"] / row["exact"]["ms_per_image"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    rows.append({"n": 150528, "exact": bench_exact(150528, 8, args.repeats)})
    rows.append({"n": 150528, "channels": 3, "exact": bench_exact(150528, 8, args.repeats, channels=3)})
    print(json.dumps(rows[-2:]), flush=True)

    shares = {}
    if not args.skip_models:
        from tfperceptual.datasets import load_cifar10, load_imagenet_val, load_sample
        from tfperceptual.models import cifar10_cnn, imagenet_mobilenet, mnist_cnn

        for name, model, imgs in (("mnist", mnist_cnn(), load_sample("mnist")[0][:64]),
                                  ("cifar10", cifar10_cnn(), load_cifar10("test")[0][:64]),
                                  ("imagenet", imagenet_mobilenet(),
                                   load_imagenet_val(with_boxes=False, limit=8)[0])):
            shares[name] = {**pgap_share(model, imgs, args.repeats), **attack_throughput(model, imgs, args.repeats)}
        print(json.dumps(shares), flush=True)

    out = {"command": "python scripts/bench_solvers.py " + " ".join(argv or sys.argv[1:]),
           "device": "GPU: " + gpus[0].name if gpus else f"CPU ({os.cpu_count()} cores)",
           "platform": platform.platform(), "tensorflow": tf.__version__, "eps": EPS,
           "solvers": rows, "pgap_step": shares}
    atomic_write_json(args.out, out)
    print_table(out)


def print_table(out):
    print("\n| N | exact (ms/image) | ECOS (ms/image) | Clarabel (ms/image) | × vs ECOS | × vs Clarabel |")
    print("|---|---|---|---|---|---|")
    for r in out["solvers"]:
        n = f"{r['n']:,}" + (f" ({r['channels']} balls)" if r.get("channels") else "")
        e = r["exact"]["ms_per_image"]
        if "ecos" in r:
            ec, cl = r["ecos"], r["clarabel"]
            ecs = f"{ec['ms_per_image']:.1f}" + (f" ({ec['failed']}/{ec['instances']} failed)" if ec["failed"] else "")
            cls = f"{cl['ms_per_image']:.1f}" + (f" ({cl['failed']}/{cl['instances']} failed)" if cl["failed"] else "")
            print(f"| {n} | {e:.3f} | {ecs} | {cls} | {r['speedup_vs_ecos']:.0f} | {r['speedup_vs_clarabel']:.0f} |")
        else:
            print(f"| {n} | {e:.3f} | — | — | — | — |")
    if out["pgap_step"]:
        print("\n| data | gradient (ms/image) | exact step (ms/image) | solver share of a PGAP step "
              "| FPGAP images/s | PGAP images/s |")
        print("|---|---|---|---|---|---|")
        for k, v in out["pgap_step"].items():
            print(f"| {k} | {v['gradient_ms_per_image']:.2f} | {v['exact_step_ms_per_image']:.2f} "
                  f"| {100 * v['solver_share_of_step']:.0f} % | {v['fpgap_images_per_second']:.1f} "
                  f"| {v['pgap_images_per_second']:.1f} |")


if __name__ == "__main__":
    main()
