"""Attack throughput against the physical limit (issue 18): one attack step cannot cost less than one forward +
backward pass of the model, so each attack's images/s is reported beside that of the same number of bare
forward + backward passes (a compiled loop of ``attack_logits_and_gradient`` on the same batch), measured in one
run, round-robin, medians of ``--repeats``.

    python scripts/bench_attack_speed.py --data mnist --batch 256 --steps 50        # docs/bench_attack_speed_mnist.*
    python scripts/bench_attack_speed.py --data cifar10 --batch 256 --steps 20
    python scripts/bench_attack_speed.py --data imagenet --batch 16 --steps 10

Attacks run without early stop (every image takes every step), as the limit assumes: FPGAP, PGAP (exact solver),
ℓ1-q and ℓ2 Frank–Wolfe (box="exact" and "clip"), the project's L2PGD, and Foolbox's L2PGD.
"""

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("mnist", "cifar10", "imagenet"), default="mnist")
    p.add_argument("--synthetic", action="store_true",
                   help="uniform random images instead of the data (a machine without ../shared: timing only); "
                        "ImageNet then uses a randomly initialised MobileNet v1 α = 0.75 if the weights are missing")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--methods", default="bare_cw,bare_ce,fpgap,pgap,l1q_fw,l1q_fw_clip,l2_fw,l2_pgd,foolbox_l2pgd")
    p.add_argument("--out", default=None, help="default docs/bench_attack_speed_<data>.{json,md}")
    args = p.parse_args()

    import tensorflow as tf

    from tfperceptual.attacks import FPGAP, PGAP, L1QFrankWolfe, L2FrankWolfe, L2PGD, build_attack
    from tfperceptual.attacks.objectives import attack_logits_and_gradient
    from tfperceptual.datasets import load_cifar10, load_sample
    from tfperceptual.models import as_logits_model, zoo
    from tfperceptual.io_utils import atomic_write_json, atomic_write_text

    shape = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3), "imagenet": (224, 224, 3)}[args.data]
    eps_ssim, eps_l2, eps_l1 = {"mnist": (0.2, 2.0, 20.0), "cifar10": (0.05, 0.5, 5.0),
                                "imagenet": (0.05, 3.0, 300.0)}[args.data]
    if args.data == "mnist":
        model = zoo.mnist_cnn()
    elif args.data == "cifar10":
        model = zoo.cifar10_cnn()
    else:
        try:
            model = zoo.imagenet_mobilenet(input_size=224)
        except (FileNotFoundError, ValueError):
            if not args.synthetic:
                raise
            import keras

            model = keras.applications.MobileNet(input_shape=shape, alpha=0.75, weights=None,
                                                 classifier_activation=None)
    if args.synthetic:
        x = np.random.default_rng(0).uniform(0, 1, (args.batch, *shape)).astype(np.float32)
        y = np.zeros(args.batch, np.int64)
    elif args.data == "mnist":
        x, y = load_sample("mnist")
    elif args.data == "cifar10":
        x, y = load_cifar10("test")
        x, y = x[::10], y[::10]
    else:
        from tfperceptual.datasets import load_imagenet_val

        x, y = load_imagenet_val(size=224, with_boxes=False, limit=args.batch)
    x, y = np.asarray(x[:args.batch], np.float32), np.asarray(y[:args.batch], np.int64)
    lm = as_logits_model(model)
    xt, yt = tf.constant(x), tf.constant(y)
    s = args.steps

    def bare_loop(loss):
        @tf.function
        def bare(x0, labels):
            z = x0
            for _ in tf.range(s):  # the gradient feeds the next input, so no pass can be skipped
                _, g = attack_logits_and_gradient(lm, z, labels, loss=loss)
                z = tf.clip_by_value(z + 0.01 * tf.sign(g), 0.0, 1.0)
            return z

        return lambda: bare(xt, yt).numpy()

    # on this CPU a pass's time depends on the loss and on where the images go (oneDNN, flushed denormals): each
    # attack is compared with the bare loop of its own loss, moving the images by signed gradient steps
    runs = {"bare_cw": bare_loop("cw"), "bare_ce": bare_loop("ce")}
    limit_of = {"fpgap": "bare_cw", "pgap": "bare_cw", "l1q_fw": "bare_ce", "l1q_fw_clip": "bare_ce",
                "l2_fw": "bare_ce", "l2_fw_clip": "bare_ce", "l2_pgd": "bare_ce", "foolbox_l2pgd": "bare_ce",
                "bare_cw": "bare_cw", "bare_ce": "bare_ce"}
    attacks = {
        "fpgap": FPGAP(model, eps_ssim, steps=s, early_stop=False, batch_size=args.batch),
        "pgap": PGAP(model, eps_ssim, steps=s, early_stop=False, batch_size=args.batch),
        "l1q_fw": L1QFrankWolfe(model, eps_l1, steps=s, box="exact", batch_size=args.batch),
        "l1q_fw_clip": L1QFrankWolfe(model, eps_l1, steps=s, box="clip", batch_size=args.batch),
        "l2_fw": L2FrankWolfe(model, eps_l2, steps=s, batch_size=args.batch),
        "l2_fw_clip": L2FrankWolfe(model, eps_l2, steps=s, box="clip", batch_size=args.batch),
        "l2_pgd": L2PGD(model, eps_l2, steps=s, seed=0, batch_size=args.batch),
    }
    for name, atk in attacks.items():
        runs[name] = (lambda a: lambda: a.perturb(xt, yt).numpy())(atk)
    fb = build_attack("pgd_l2", model, eps_l2, steps=s, batch_size=args.batch)
    runs["foolbox_l2pgd"] = lambda: fb(x, y)
    methods = [m for m in args.methods.split(",") if m in runs]
    for m in methods:  # trace / warm up
        runs[m]()
    times = {m: [] for m in methods}
    for _ in range(args.repeats):
        for m in methods:  # round-robin: every method sees the same machine state
            t0 = time.perf_counter()
            runs[m]()
            times[m].append(time.perf_counter() - t0)
    med = {m: statistics.median(v) for m, v in times.items()}
    rows = [{"method": m, "median_s": med[m], "images_per_s": args.batch / med[m], "limit": limit_of[m],
             "fraction_of_limit": (med[limit_of[m]] / med[m]) if limit_of[m] in med else None, "times": times[m]}
            for m in methods]
    out = {"data": args.data, "batch": args.batch, "steps": s, "repeats": args.repeats, "rows": rows,
           "machine": {"platform": platform.platform(), "tensorflow": tf.__version__,
                       "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}}
    stem = Path(args.out) if args.out else ROOT / "docs" / f"bench_attack_speed_{args.data}"
    atomic_write_json(stem.with_suffix(".json"), out)
    lines = [f"{args.data}: batch {args.batch}, {s} steps, no early stop, median of {args.repeats} round-robin "
             "repeats", "", "| method | median s | images / s | limit | × the limit's throughput |", "|---|---|---|---|---|"]
    for r in rows:
        frac = "—" if r["fraction_of_limit"] is None else f"{r['fraction_of_limit']:.2f}"
        lines.append(f"| {r['method']} | {r['median_s']:.3f} | {r['images_per_s']:.1f} | {r['limit']} | {frac} |")
    atomic_write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
