"""The semantic claim of Roberts & Tsiligkaridis (2021), measured: do a robust model's counterfactuals carry the
target class's features?  An independent *judge* (scripts/train_judge.py: another architecture and seed, never
used to craft anything) reads label-targeted counterfactuals crafted on the standard and on the ℓ2-robust zoo
model at equal ε, and concept probes drawn from noise.

* Counterfactuals: the first N test images (CIFAR-10: class-balanced), each toward a fixed random other class
  (seeded), ℓ1-q (q = 0.05) and ℓ2 Frank–Wolfe, 30 steps, box="exact", at the command's default budgets (and
  half and twice them).  Reported: the source model's own top-1 = target, the judge's fraction = target (Wilson 95 %
  interval) and = the true class.
* Probes: every class, ``--probes`` per class, from standard-normal noise min–max scaled to [0, 1].
* Baselines: the judge's accuracy on the clean images, and its reading of the noise.

Results are cached per configuration under ``--work`` (resume) and written to
``docs/counterfactual/judge_<data>.{json,md,png}``.

Usage: python scripts/judge_counterfactuals.py --data mnist|cifar10 [--n 500] [--probes 20] [--seed 0]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("mnist", "cifar10"), required=True)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--probes", type=int, default=20, help="probes per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--judge", default=None, help="default runs/judge_<data>/judge.keras")
    p.add_argument("--work", default=None, help="cache folder, default runs/judge_cf_<data>")
    p.add_argument("--out", default=str(ROOT / "docs" / "counterfactual"))
    args = p.parse_args()

    import keras
    from tqdm.auto import tqdm

    from tfperceptual.datasets import load_cifar10, load_mnist
    from tfperceptual.evaluation import changed_fraction, wilson_interval
    from tfperceptual.explain import Counterfactual, probe_concepts
    from tfperceptual.io_utils import atomic_savez, atomic_write_json, atomic_write_text, read_npz
    from tfperceptual.models import zoo
    from tfperceptual.protocols.counterfactuals import budgets
    from tfperceptual.protocols.presets import COUNTERFACTUAL_EPS
    from tfperceptual.protocols.report import _pyplot
    from tfperceptual.protocols.runner import predict_labels

    judge_path = Path(args.judge or f"runs/judge_{args.data}/judge.keras")
    judge = keras.models.load_model(judge_path, compile=False)
    info_file = judge_path.parent / "judge.json"
    judge_info = json.loads(info_file.read_text()) if info_file.exists() else {}
    work = Path(args.work or f"runs/judge_cf_{args.data}")
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    if args.data == "mnist":
        x, y = load_mnist("test")
        idx = np.arange(args.n)
        sources = {"standard": zoo.mnist_cnn(), "robust": zoo.mnist_cnn_robust()}
    else:
        x, y = load_cifar10("test")
        idx = (np.arange(args.n) * len(x)) // args.n
        sources = {"standard": zoo.cifar10_cnn(), "robust": zoo.cifar10_cnn_robust()}
    x, y = x[idx].astype(np.float32), y[idx].astype(np.int64)
    rng = np.random.default_rng(args.seed)
    target = (y + 1 + rng.integers(0, 9, len(y))) % 10  # a fixed random other class per image
    shape = x.shape[1:]
    eps2 = COUNTERFACTUAL_EPS[args.data]
    judge_clean = predict_labels(judge, x)

    def frac(hits):
        k, n = int(np.sum(hits)), len(hits)
        lo, hi = wilson_interval(k, n)
        return {"fraction": k / n, "ci95": [lo, hi], "k": k, "n": n}

    rows, probe_rows, examples = [], [], {}
    configs = [(src, norm, scale) for scale in (0.5, 1.0, 2.0) for src in sources for norm in ("l1q", "l2")]
    for src, norm, scale in tqdm(configs, desc="counterfactuals"):
        eps = budgets(eps2 * scale, shape)[norm]
        name = work / f"cf_{src}_{norm}_{scale:g}_{args.n}_{args.seed}.npz"
        cached = read_npz(name, ("perturbed", "seconds"))
        if cached is None:
            t0 = time.perf_counter()
            e = Counterfactual(sources[src], norm=norm, eps=eps, q=0.05, steps=30, mode="label",
                               batch_size=100).explain(x, target)
            cached = {"perturbed": e.perturbed, "seconds": np.float64(time.perf_counter() - t0)}
            atomic_savez(name, **cached)
        xp = cached["perturbed"]
        src_pred = predict_labels(sources[src], xp)
        judge_pred = predict_labels(judge, xp)
        rows.append({"source": src, "norm": norm, "eps": eps, "eps_l2_scale": scale,
                     "source_top1_target": frac(src_pred == target), "judge_target": frac(judge_pred == target),
                     "judge_true_class": frac(judge_pred == y),
                     # among the images whose source model reached the target: does the change look like it?
                     "judge_target_given_source": frac((judge_pred == target)[src_pred == target])
                     if np.any(src_pred == target) else None,
                     "changed_fraction": float(np.mean(changed_fraction(xp - x))),
                     "seconds_per_image": float(cached["seconds"]) / len(x)})
        if scale == 1.0:
            examples[(src, norm)] = xp[:6]

    for src in tqdm(sources, desc="probes"):
        for norm in ("l1q", "l2"):
            eps = budgets(eps2, shape)[norm]
            name = work / f"probe_{src}_{norm}_{args.probes}_{args.seed}.npz"
            cached = read_npz(name, ("images", "classes", "noise"))
            if cached is None:
                r = probe_concepts(sources[src], list(range(10)), args.probes, shape, norm, eps, 30, args.seed)
                cached = {"images": r.images, "classes": r.classes, "noise": r.noise}
                atomic_savez(name, **cached)
            src_pred = predict_labels(sources[src], cached["images"])
            judge_pred = predict_labels(judge, cached["images"])
            probe_rows.append({"source": src, "norm": norm, "eps": eps,
                               "source_top1_class": frac(src_pred == cached["classes"]),
                               "judge_class": frac(judge_pred == cached["classes"])})
            noise = cached["noise"]
            noise_reading = frac(predict_labels(judge, noise) == cached["classes"])

    results = {"data": args.data, "n": int(len(x)), "seed": args.seed, "q": 0.05, "steps": 30, "box": "exact",
               "eps_l2": eps2, "judge": {"path": str(judge_path), **judge_info},
               "judge_clean_accuracy": frac(judge_clean == y), "judge_clean_says_target": frac(judge_clean == target),
               "judge_noise_says_class": noise_reading, "counterfactuals": rows, "probes": probe_rows}
    atomic_write_json(out / f"judge_{args.data}.json", results)
    atomic_write_text(out / f"judge_{args.data}.md", report(results))

    plt = _pyplot()
    cols = [("original", x[:6])] + [(f"{src} {('ℓ1-q' if n == 'l1q' else 'ℓ2')}", examples[(src, n)])
                                    for n in ("l1q", "l2") for src in sources]
    fig, axes = plt.subplots(6, len(cols), figsize=(1.7 * len(cols), 1.9 * 6), squeeze=False)
    for i in range(6):
        for j, (title, imgs) in enumerate(cols):
            img = imgs[i]
            axes[i, j].imshow(np.clip(img.squeeze(-1) if img.shape[-1] == 1 else img, 0, 1), cmap="gray")
            jp = predict_labels(judge, img[None])[0]
            t = f"{title}\n" if i == 0 else ""
            what = f"label {y[i]} → {target[i]}" if j == 0 else f"judge: {jp}"
            axes[i, j].set_title(f"{t}{what}", fontsize=7)
            axes[i, j].axis("off")
    fig.tight_layout()
    from tfperceptual.io_utils import atomic_savefig

    atomic_savefig(fig, out / f"judge_{args.data}.png", dpi=100)
    print(report(results))


def _f(r):
    return f"{r['fraction']:.3f} ({r['ci95'][0]:.3f}–{r['ci95'][1]:.3f})"


def report(res):
    lines = [f"# Judge reading of counterfactuals and probes: {res['data']}", "",
             f"Judge: {res['judge'].get('architecture', res['judge']['path'])} (seed {res['judge'].get('seed', '?')}, "
             f"test accuracy {res['judge'].get('test_accuracy', float('nan')):.4f}), never used to craft anything. "
             f"Judge on the {res['n']} clean images: accuracy {_f(res['judge_clean_accuracy'])}, says the target "
             f"{_f(res['judge_clean_says_target'])}; on the probes' noise it says the requested class "
             f"{_f(res['judge_noise_says_class'])}.", "",
             f"Label-targeted counterfactuals toward a fixed random other class, {res['steps']} FW steps, "
             f"q = {res['q']}, box = {res['box']}; ε₂ = {res['eps_l2']:g} (×0.5, ×1 and ×2), ℓ1-q budget ε₂ √d.", "",
             "| source model | norm | ε | source top-1 = target | judge = target (95 % CI) | judge = target where "
             "the source reached it | judge = true class | pixels changed | s / image |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in res["counterfactuals"]:
        lines.append(f"| {r['source']} | {'ℓ1-q' if r['norm'] == 'l1q' else 'ℓ2'} | {r['eps']:.4g} | "
                     f"{r['source_top1_target']['fraction']:.3f} | {_f(r['judge_target'])} | "
                     f"{_f(r['judge_target_given_source']) if r['judge_target_given_source'] else '—'} | "
                     f"{_f(r['judge_true_class'])} | {r['changed_fraction']:.3f} | {r['seconds_per_image']:.4f} |")
    lines += ["", "Concept probes from noise (10 classes):", "",
              "| source model | norm | ε | source top-1 = class | judge = class (95 % CI) |", "|---|---|---|---|---|"]
    for r in res["probes"]:
        lines.append(f"| {r['source']} | {'ℓ1-q' if r['norm'] == 'l1q' else 'ℓ2'} | {r['eps']:.4g} | "
                     f"{r['source_top1_class']['fraction']:.3f} | {_f(r['judge_class'])} |")
    lines += ["", f"![examples](judge_{res['data']}.png)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
