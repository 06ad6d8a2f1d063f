"""Robust accuracy of the shipped models under AutoAttack (ℓ∞, ℓ2, through ART) and the SSIM-ball ensemble
(docs/results.md, "Robust models"; README's robustness table).

    python scripts/eval_autoattack.py --data mnist --models mnist_cnn_robust,mnist_cnn --n 1000
    python scripts/eval_autoattack.py --data cifar10 --n 1000
    python scripts/eval_autoattack.py --summary          # docs/robust/autoattack/summary.md from every run

Each (model, threat, batch) result is a small JSON entry under
``docs/robust/autoattack/<data>_<model>/cache`` (committed), so an interrupted or later run — on this
machine or another — resumes and never recomputes a finished batch; MNIST's first 1,000 test images form
the same batches as the first 1,000 of a 10,000-image run.  Threats: MNIST ℓ∞ 0.3, ℓ2 2.0, SSIM ε = 0.3
(the radii of the robust model's training and of the docs' FPGAP/PGAP table); CIFAR-10 ℓ∞ 8/255, ℓ2 0.5,
SSIM ε = 0.015 (the SSIM-robust model's training radius).  CIFAR-10's test images are taken class by class
in turn (the j-th image of class 0, of class 1, …, then the (j + 1)-th), so every prefix is class-balanced and
a later, larger ``--n`` extends a run instead of changing its images (not the every-10th-image subset of
``tfperceptual compare --data cifar10``).
"""

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "robust" / "autoattack"

MODELS = {"mnist": ["mnist_cnn_robust", "mnist_cnn"],
          "cifar10": ["cifar10_cnn_robust", "cifar10_cnn_ssim_robust", "cifar10_cnn"]}
THREATS = {"mnist": "linf:0.3,l2:2.0,ssim:0.3", "cifar10": "linf:0.03137254901960784,l2:0.5,ssim:0.015"}
BATCH = {"mnist": 250, "cifar10": 125}


def load(data, n):
    """The first ``n`` test images: MNIST in order, CIFAR-10 class by class in turn (see the module docstring)."""
    import numpy as np

    from tfperceptual.datasets import load_cifar10, load_mnist

    if data == "mnist":
        x, y = load_mnist("test")
        return x[:n], y[:n]
    x, y = load_cifar10("test")
    per_class = [np.flatnonzero(y == c) for c in range(10)]
    order = np.stack(per_class, 1).reshape(-1)  # 1,000 per class: j-th image of each class in turn
    return x[order[:n]].astype(np.float32), y[order[:n]]


def summary():
    """One markdown table over every results.json under docs/robust/autoattack."""
    from tfperceptual.io_utils import atomic_write_text

    rows = ["| data | model | n | threat | clean | robust accuracy (AutoAttack-grade) | 95 % interval | "
            "after each member | sanity flags |", "|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(OUT.glob("*/results.json")):
        doc = json.loads(path.read_text())
        for t in doc["threats"]:
            per = ", ".join(f"{m} {100 * v:.1f}" for m, v in t["per_attack"].items())
            flags = "; ".join(t.get("sanity", {}).get("flags", [])) or "none"
            rows.append(f"| {doc['data']} | {doc['model'].split('.')[-1]} | {t['n']} | {t['name']} | "
                        f"{100 * t['clean_accuracy']:.1f} % | **{100 * t['robust_accuracy']:.1f} %** | "
                        f"[{100 * t['interval'][0]:.1f}, {100 * t['interval'][1]:.1f}] | {per} | {flags} |")
    atomic_write_text(OUT / "summary.md", "\n".join(rows) + "\n")
    print("\n".join(rows))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=tuple(MODELS))
    p.add_argument("--models", default=None, help="comma-separated zoo names (default: all of --data)")
    p.add_argument("--threat", default=None, help="override the data's threats, e.g. 'l2:0.5'")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--version", default="standard", choices=("standard", "fast"))
    p.add_argument("--sanity-n", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--summary", action="store_true", help="only write summary.md from the finished runs")
    args = p.parse_args()
    if args.summary:
        return summary()
    if args.data is None:
        p.error("--data is required (or --summary)")

    from tfperceptual.models import zoo
    from tfperceptual.protocols.robustness import run_robustness

    x, y = load(args.data, args.n)
    for name in (args.models.split(",") if args.models else MODELS[args.data]):
        model = getattr(zoo, name)()
        doc = run_robustness(model, x, y, threats=args.threat or THREATS[args.data], version=args.version,
                             out_dir=OUT / f"{args.data}_{name}", batch_size=BATCH[args.data], seed=args.seed,
                             sanity_n=args.sanity_n, data_name=args.data, model_name=f"zoo.{name}")
        for t in doc["threats"]:
            print(f"{name:26s} {t['name']:16s} clean {t['clean_accuracy']:.4f} robust {t['robust_accuracy']:.4f} "
                  f"{t['per_attack']} flags {t.get('sanity', {}).get('flags')}", flush=True)
    summary()


if __name__ == "__main__":
    main()
