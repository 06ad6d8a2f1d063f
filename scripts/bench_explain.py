"""Seconds per image of the perceptual-ball explainer: 100 L-BFGS steps on ImageNet (MobileNet v1,
227 × 227) at batch sizes 1, 8 and 32 on this machine's CPU (issue 6, "Performance").

Each batch size runs on distinct real images after one warm-up call (tracing excluded); the median
over repeats is reported with the L-BFGS function evaluations per iteration (Hager–Zhang line search).

With ``--optimizer lbfgs_fixed`` (the authors' torch L-BFGS without line search, one evaluation per iteration)
the same rows are measured for that optimiser. Each row also times one bare loss-and-gradient evaluation per
image at that batch size (median of 5): the physical limit of an iteration, and the ceiling of the batched
speed-up.

Usage: python scripts/bench_explain.py [--steps 100] [--batch-sizes 1,8,32] [--repeats 3] [--optimizer lbfgs]
       [--max-evaluations N] [--out docs/bench_explain.json]
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path



def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--repeats", type=int, default=3, help="batches timed at batch size 1 (1 batch above 8)")
    ap.add_argument("--layers", default="4:10")
    ap.add_argument("--lambda-perceptual", type=float, default=1e3)
    ap.add_argument("--optimizer", default="lbfgs", choices=("lbfgs", "lbfgs_fixed"))
    ap.add_argument("--max-evaluations", type=int, default=None)
    ap.add_argument("--out", default="docs/bench_explain.json")
    args = ap.parse_args(argv)

    import tensorflow as tf

    from tfperceptual.datasets import load_imagenet_val
    from tfperceptual.explain import PerceptualBall
    from tfperceptual.io_utils import atomic_write_json
    from tfperceptual.models import imagenet_mobilenet

    sizes = [int(b) for b in args.batch_sizes.split(",")]
    a, b = (int(v) for v in args.layers.split(":"))
    need = 1 + sum(bs * (args.repeats if bs < 8 else 1) for bs in sizes)
    x, y = load_imagenet_val(with_boxes=False, limit=need)
    model = imagenet_mobilenet()
    rows = []
    used = 1
    for bs in sizes:
        pb = PerceptualBall(model, layers=range(a, b), lambda_perceptual=args.lambda_perceptual, steps=args.steps,
                            batch_size=bs, optimizer=args.optimizer, max_evaluations=args.max_evaluations)
        pb(x[:bs], y[:bs])  # warm-up: traces the tf.function for this batch size
        xg, yg = tf.constant(x[:bs]), tf.constant(y[:bs], tf.int32)
        pb._grad(xg, yg)
        bare = []
        for _ in range(5):
            t0 = time.perf_counter()
            pb._grad(xg, yg).numpy()
            bare.append((time.perf_counter() - t0) / bs)
        times, evals = [], []
        for _ in range(args.repeats if bs < 8 else 1):
            xb, yb = x[used:used + bs], y[used:used + bs]
            used += bs
            t0 = time.perf_counter()
            e = pb(xb, yb)
            times.append((time.perf_counter() - t0) / bs)
            evals.append(e.evaluations)
        rows.append({"batch_size": bs, "seconds_per_image": statistics.median(times), "runs": len(times),
                     "evaluations_per_iteration": statistics.median(evals) / args.steps,
                     "bare_evaluation_seconds_per_image": statistics.median(bare)})
        print(json.dumps(rows[-1]), flush=True)
    res = {"optimizer": args.optimizer, "max_evaluations": args.max_evaluations,
           "steps": args.steps, "layers": f"ReLU {a}..{b - 1}", "lambda_perceptual": args.lambda_perceptual,
           "machine": f"{platform.processor() or platform.machine()}, {tf.config.threading.get_inter_op_parallelism_threads() or 'default'} inter-op threads",
           "gpu": bool(tf.config.list_physical_devices("GPU")), "rows": rows}
    atomic_write_json(Path(args.out), res)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
