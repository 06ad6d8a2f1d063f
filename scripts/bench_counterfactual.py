"""Measurements of issue 16 beside the judge study: sparsity against q, the Foolbox ℓ1 baselines at matched ℓ1
budget, and the speed of 30 Frank–Wolfe steps against 30 bare forward + backward passes.

* ``sparsity``: label-targeted ℓ1-q counterfactuals (toward a fixed random other class) at a fixed ℓ1 budget,
  for q on a grid: the fraction of pixels changed by more than 1/255, Hoyer sparsity, the model's p(target) and
  top-1 = target.  CIFAR-10 (ℓ2-robust zoo model, class-balanced test images) and ImageNet (zoo MobileNet, the
  first validation images).
* ``foolbox``: untargeted, CIFAR-10, standard and ℓ2-robust zoo models, at ℓ1 budgets ε₁: our L1QFrankWolfe
  (q = 0.01 and 0.05, 30 steps, box="exact") against Foolbox's SparseL1DescentAttack (its defaults: quantile
  0.99, relative step 0.2, 10 steps; and 30 steps) and EADAttack (100 steps × 5 binary-search steps): fooling
  rate (label changed within ε₁), pixels changed, Hoyer sparsity, seconds per image.
* ``speed``: seconds per image of ``L1QFrankWolfe(steps=30).perturb`` and ``L2FrankWolfe`` against a compiled
  loop of 30 input-gradient passes of the same model and batch (the physical limit of an attack step), medians
  of round-robin repeats.

Writes ``docs/counterfactual/bench_<part>.json`` and ``.md``.  Usage:
python scripts/bench_counterfactual.py [--parts sparsity,foolbox,speed] [--repeats 5]
"""

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "counterfactual"
Q_GRID = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def _data(name, n):
    from tfperceptual.datasets import load_cifar10, load_imagenet_val

    if name == "cifar10":
        x, y = load_cifar10("test")
        idx = (np.arange(n) * len(x)) // n
        return x[idx].astype(np.float32), y[idx].astype(np.int64)
    x, y = load_imagenet_val(with_boxes=False, size=224, limit=n)
    return np.asarray(x, np.float32), np.asarray(y, np.int64)


def _models(name):
    from tfperceptual.models import zoo

    if name == "cifar10":
        return {"standard": zoo.cifar10_cnn(), "robust": zoo.cifar10_cnn_robust()}
    return {"standard": zoo.imagenet_mobilenet()}


def sparsity(args):
    from tfperceptual.evaluation import changed_fraction, hoyer_sparsity
    from tfperceptual.explain import Counterfactual

    rows = []
    for data, n, eps, model_name, bs in (("cifar10", args.n_cifar, 20.0, "robust", 100),
                                         ("imagenet", args.n_imagenet, 500.0, "standard", 8)):
        x, y = _data(data, n)
        model = _models(data)[model_name]
        k = 1000 if data == "imagenet" else 10
        target = (y + 1 + np.random.default_rng(0).integers(0, k - 1, len(y))) % k
        for q in Q_GRID:
            t0 = time.perf_counter()
            e = Counterfactual(model, norm="l1q", eps=eps, q=q, steps=30, mode="label",
                               batch_size=bs).explain(x, target)
            rows.append({"data": data, "model": model_name, "n": n, "eps_l1": eps, "q": q,
                         "changed_fraction": float(np.mean(changed_fraction(e.perturbation))),
                         "hoyer": float(np.nanmean(hoyer_sparsity(e.perturbation))),
                         "p_target_after": float(np.mean(e.confidence["target_after"])),
                         "top1_target": float(np.mean(e.perturbed_predicted == target)),
                         "seconds_per_image": (time.perf_counter() - t0) / n})
            print(rows[-1], flush=True)
    md = ["| data (model) | ε₁ | q | pixels changed > 1/255 | Hoyer sparsity | p(target) after | "
          "top-1 = target |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {r['data']} ({r['model']}, n = {r['n']}) | {r['eps_l1']:g} | {r['q']:g} | {r['changed_fraction']:.3f} | "
           f"{r['hoyer']:.3f} | {r['p_target_after']:.3f} | {r['top1_target']:.3f} |" for r in rows]
    return rows, md


def _opt(v):
    return "—" if v is None else f"{v:.3f}"


def foolbox(args):
    from tfperceptual.attacks import EAD, L1QFrankWolfe, SparseL1Descent
    from tfperceptual.evaluation import changed_fraction, hoyer_sparsity

    x, y = _data("cifar10", args.n_foolbox)
    rows = []
    for model_name, model in _models("cifar10").items():
        pred = np.argmax(model.predict(x, verbose=0), -1)
        keep = pred == y  # fooling rate over the correctly classified images
        xc, yc = x[keep], y[keep]
        for eps in (2.0, 5.0):
            attacks = {"L1QFrankWolfe q=0.01 (30 steps)": L1QFrankWolfe(model, eps, q=0.01, steps=30, seed=0),
                       "L1QFrankWolfe q=0.05 (30 steps)": L1QFrankWolfe(model, eps, q=0.05, steps=30, seed=0),
                       "Foolbox SparseL1Descent (10 steps, defaults)": SparseL1Descent(model, eps),
                       "Foolbox SparseL1Descent (30 steps)": SparseL1Descent(model, eps, steps=30),
                       "Foolbox EAD (100 steps × 5 searches)": EAD(model, eps, steps=100, binary_search_steps=5)}
            for name, attack in attacks.items():
                attack(xc[:8], yc[:8], metrics=False)  # trace / warm up
                t0 = time.perf_counter()
                r = attack(xc, yc, metrics=False)
                sec = (time.perf_counter() - t0) / len(xc)
                d = r.adversarial - xc
                l1 = np.abs(d).reshape(len(d), -1).sum(1)
                ok = r.success & (l1 <= eps * (1 + 1e-4))
                rows.append({"model": model_name, "eps_l1": eps, "attack": name, "n": int(len(xc)),
                             "fooling_rate": float(np.mean(ok)), "mean_l1": float(l1.mean()),
                             "changed_fraction": float(np.mean(changed_fraction(d[ok]))) if ok.any() else None,
                             "hoyer": float(np.nanmean(hoyer_sparsity(d[ok]))) if ok.any() else None,
                             "seconds_per_image": sec})
                print(rows[-1], flush=True)
    md = ["| model | ε₁ | attack | fooling rate | mean ℓ1 | pixels changed > 1/255 (fooled) | Hoyer (fooled) | "
          "s / image |",
          "|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['model']} (n = {r['n']}) | {r['eps_l1']:g} | {r['attack']} | {r['fooling_rate']:.3f} | "
           f"{r['mean_l1']:.2f} | {_opt(r['changed_fraction'])} | {_opt(r['hoyer'])} | {r['seconds_per_image']:.4f} |"
           for r in rows]
    return rows, md


def speed(args):
    import tensorflow as tf

    from tfperceptual.attacks import L1QFrankWolfe, L2FrankWolfe
    from tfperceptual.models import as_logits_model

    rows = []
    for data, n, eps1, eps2 in (("cifar10", 100, 20.0, 1.0), ("imagenet", 16, 500.0, 5.0)):
        x, y = _data(data, n)
        model = as_logits_model(_models(data)["standard"])
        xt, yt = tf.constant(x), tf.constant(y)

        @tf.function
        def bare(images, labels):  # 30 input-gradient passes, the limit of 30 attack steps
            g = tf.zeros_like(images)
            for _ in tf.range(30):
                with tf.GradientTape() as tape:
                    tape.watch(images)
                    loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
                        labels, model(images + 0.0 * g, training=False)))
                g = tape.gradient(loss, images)
            return g

        runs = {"30 forward + backward passes": lambda: bare(xt, yt),
                "L1QFrankWolfe q=0.05 box=exact": L1QFrankWolfe(model, eps1, q=0.05, steps=30, seed=0).perturb,
                "L1QFrankWolfe q=0.05 box=clip": L1QFrankWolfe(model, eps1, q=0.05, steps=30, box="clip",
                                                               seed=0).perturb,
                "L2FrankWolfe box=exact": L2FrankWolfe(model, eps2, steps=30).perturb}
        times = {k: [] for k in runs}
        for k, f in runs.items():  # trace
            (f() if k.startswith("30") else f(xt, yt)).numpy()
        for _ in range(args.repeats):  # round-robin
            for k, f in runs.items():
                t0 = time.perf_counter()
                (f() if k.startswith("30") else f(xt, yt)).numpy()
                times[k].append(time.perf_counter() - t0)
        base = np.median(times["30 forward + backward passes"])
        for k, ts in times.items():
            rows.append({"data": data, "batch": n, "run": k, "median_s_per_image": float(np.median(ts)) / n,
                         "fastest_s_per_image": float(np.min(ts)) / n, "ratio_to_bare": float(np.median(ts) / base)})
            print(rows[-1], flush=True)
    md = ["| data (batch) | run | median s / image | fastest s / image | × the 30 bare passes |",
          "|---|---|---|---|---|"]
    md += [f"| {r['data']} ({r['batch']}) | {r['run']} | {r['median_s_per_image']:.4f} | "
           f"{r['fastest_s_per_image']:.4f} | {r['ratio_to_bare']:.2f} |" for r in rows]
    return rows, md


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="sparsity,foolbox,speed")
    p.add_argument("--n-cifar", type=int, default=200)
    p.add_argument("--n-imagenet", type=int, default=16)
    p.add_argument("--n-foolbox", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    from tfperceptual.io_utils import atomic_write_json, atomic_write_text

    OUT.mkdir(parents=True, exist_ok=True)
    for part in args.parts.split(","):
        rows, md = {"sparsity": sparsity, "foolbox": foolbox, "speed": speed}[part](args)
        atomic_write_json(OUT / f"bench_{part}.json", {"part": part, "rows": rows, "args": vars(args)})
        atomic_write_text(OUT / f"bench_{part}.md", "\n".join(md) + "\n")
        print("\n".join(md))


if __name__ == "__main__":
    main()
