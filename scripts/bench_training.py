"""Training throughput of plain ``fit`` against ``AdversarialTraining`` (docs/performance.md).

    python scripts/bench_training.py --data mnist --images 3840 --repeats 3
    python scripts/bench_training.py --data cifar10 --images 1920 --repeats 3

One run measures, on the shipped model of ``--data`` (batch 128, Adam, the same real training images):
plain ``model.fit`` and ``AdversarialTraining`` with RandomStartFGSM (k = 1), LinfPGD-k, L2PGD-k and
FPGAP-k (CE loss, no early stop), and one bare gradient pass with respect to the input in inference mode
(what each attack step must cost at least).  Every method is traced first (one warm-up epoch); then the
repeats go round-robin over the methods (repeat 1 of every method, then repeat 2, …), so that a drift of
the machine's speed during the run touches every method alike; medians over ``--repeats`` epochs, and the
fastest epoch of each (this CPU's timings are bimodal: the same epoch has run in 5.7 s and 10.3 s back to
back, so the fastest epoch estimates the cost of the computation itself).

An adversarial step with k attack steps does k input-gradient passes plus the training step, so two ideal
slowdowns are printed beside the measured one: (k + 1)×, which counts an attack pass as a training step,
and 1 + k·g, with g the measured cost of an inference-mode input-gradient pass relative to a training
step (smaller than 1: no batch statistics, no dropout, no weight gradients or update).  Writes
``docs/bench_training_<data>.json``.
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
               ("L2PGD-7", 7, lambda m: L2PGD(m, l2, steps=7, seed=0)),
               ("FPGAP-3", 3, lambda m: FPGAP(m, ssim, steps=3, loss="ce", early_stop=False))]
    import tensorflow as tf

    runs = {}
    for name, k, make in configs:
        model = fresh()
        trainer = model if make is None else AdversarialTraining(model, make(model))
        trainer.compile(optimizer=keras.optimizers.Adam(1e-4),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        trainer.fit(x[:2 * args.batch_size], y[:2 * args.batch_size], batch_size=args.batch_size, epochs=1,
                    verbose=0)  # trace
        runs[name] = (lambda t=trainer: t.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0), k)
    model = fresh()

    @tf.function(reduce_retracing=True)
    def input_gradient(xb, yb):
        with tf.GradientTape() as tape:
            tape.watch(xb)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, model(xb, training=False)))
        return tape.gradient(loss, xb)

    batches = [(tf.constant(x[i:i + args.batch_size]), tf.constant(y[i:i + args.batch_size], tf.int64))
               for i in range(0, len(x), args.batch_size)]
    input_gradient(*batches[0])

    def gradient_epoch():
        for xb, yb in batches:
            input_gradient(xb, yb).numpy()

    runs["input-gradient pass"] = (gradient_epoch, None)
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, (run, _k) in runs.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    rows = [{"method": name, "k": k, "seconds": float(np.median(times[name])), "fastest": float(np.min(times[name])),
             "times": times[name], "images_per_second": len(x) / float(np.median(times[name]))}
            for name, (_run, k) in runs.items()]
    base, base_fast = rows[0]["seconds"], rows[0]["fastest"]
    g = rows[-1]["seconds"] / base  # an input-gradient pass, in training steps
    for r in rows:
        r["slowdown"] = r["seconds"] / base
        r["slowdown_fastest"] = r["fastest"] / base_fast
        r["ideal_slowdown"] = None if r["k"] is None else r["k"] + 1
        r["ideal_slowdown_measured_pass"] = None if r["k"] is None else 1 + r["k"] * g
        print(f"{r['method']:20s} {r['images_per_second']:8.1f} images/s", flush=True)
    out = Path(args.out or ROOT / "docs" / f"bench_training_{args.data}.json")
    out.write_text(json.dumps({"data": args.data, "images": len(x), "batch_size": args.batch_size,
                               "repeats": args.repeats, "rows": rows}, indent=1))
    print("| method | images/s | slowdown vs plain fit (medians) | (fastest epochs) | ideal (k + 1) | ideal 1 + k·g |\n"
          "|---|---|---|---|---|---|")
    for r in rows:
        ideal = "–" if r["k"] is None else f"{r['ideal_slowdown']}×"
        ideal_g = "–" if r["k"] is None else f"{r['ideal_slowdown_measured_pass']:.2f}×"
        print(f"| {r['method']} | {r['images_per_second']:.0f} | {r['slowdown']:.2f}× | {r['slowdown_fastest']:.2f}× "
              f"| {ideal} | {ideal_g} |")
    print(f"g = {g:.3f} (one inference-mode input-gradient pass, in plain training steps)")


if __name__ == "__main__":
    main()
