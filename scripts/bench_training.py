"""Training throughput of plain ``fit`` against ``AdversarialTraining`` (docs/performance.md).

    python scripts/bench_training.py --data mnist --images 3840 --repeats 3
    python scripts/bench_training.py --data cifar10 --images 1920 --repeats 3

One run measures, on the shipped model of ``--data`` (batch 128, Adam, the same real training images):
plain ``model.fit`` and ``AdversarialTraining`` with RandomStartFGSM (k = 1), LinfPGD-k and FPGAP-k
(CE loss, no early stop); each the median over ``--repeats`` epochs after one warm-up epoch (the trace).
An adversarial step with k attack steps does k gradient passes with respect to the input (inference mode)
plus the training pass, so the ideal cost is (k + 1)× a plain step; the table reports the measured slowdown
beside it.  Writes ``docs/bench_training_<data>.json``.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("mnist", "cifar10"), default="mnist")
    p.add_argument("--images", type=int, default=3840)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--out", default=None)
    args = p.parse_args()

    import keras

    from tfperceptual.attacks import FPGAP, L2PGD, LinfPGD, RandomStartFGSM
    from tfperceptual.datasets import load_cifar10, load_mnist
    from tfperceptual.models import zoo
    from tfperceptual.training import AdversarialTraining

    x, y = (load_mnist if args.data == "mnist" else load_cifar10)("train")
    x, y = x[:args.images].astype(np.float32), y[:args.images]
    fresh = zoo.mnist_cnn if args.data == "mnist" else zoo.cifar10_cnn
    linf, l2, ssim = (0.1, 1.0, 0.1) if args.data == "mnist" else (8 / 255, 0.5, 0.015)
    configs = [("plain fit", 0, None),
               ("FGSM-RS", 1, lambda m: RandomStartFGSM(m, linf, seed=0)),
               ("LinfPGD-3", 3, lambda m: LinfPGD(m, linf, steps=3, seed=0)),
               ("LinfPGD-7", 7, lambda m: LinfPGD(m, linf, steps=7, seed=0)),
               ("L2PGD-10", 10, lambda m: L2PGD(m, l2, steps=10, seed=0)),
               ("FPGAP-3", 3, lambda m: FPGAP(m, ssim, steps=3, loss="ce", early_stop=False))]
    rows = []
    for name, k, make in configs:
        model = fresh()
        trainer = model if make is None else AdversarialTraining(model, make(model))
        trainer.compile(optimizer=keras.optimizers.Adam(1e-4),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        trainer.fit(x[:2 * args.batch_size], y[:2 * args.batch_size], batch_size=args.batch_size, epochs=1,
                    verbose=0)  # trace
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            trainer.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0)
            times.append(time.perf_counter() - t0)
        rows.append({"method": name, "k": k, "seconds": float(np.median(times)), "times": times,
                     "images_per_second": len(x) / float(np.median(times))})
        print(f"{name:12s} {rows[-1]['images_per_second']:8.1f} images/s", flush=True)
    base = rows[0]["images_per_second"]
    for r in rows:
        r["slowdown"] = base / r["images_per_second"]
        r["ideal_slowdown"] = r["k"] + 1
    out = Path(args.out or ROOT / "docs" / f"bench_training_{args.data}.json")
    out.write_text(json.dumps({"data": args.data, "images": len(x), "batch_size": args.batch_size,
                               "repeats": args.repeats, "rows": rows}, indent=1))
    print("| method | images/s | slowdown vs plain fit | ideal (k + 1) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['images_per_second']:.0f} | {r['slowdown']:.2f}× | {r['ideal_slowdown']}× |")


if __name__ == "__main__":
    main()
