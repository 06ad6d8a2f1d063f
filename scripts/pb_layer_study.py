"""Which MobileNet layers should the perceptual ball regularise? (the paper's Fig. 5 study, for our model)

Elliott et al. chose ReLU layers of VGG19-BN by a sensitivity study; we do not have VGG19-BN, so the same
kind of study is run for the zoo's MobileNet v1 (α = 0.75, 27 ReLU6 outputs): windows of consecutive
ReLU layers (indices into ``activation_layers``) and λ′ values, scored on the first N ImageNet validation
images by weak-localisation error (best strategy and α over the grid), pointing-game accuracy, the
share of the perturbation's energy inside the ground-truth boxes and how many images reach the margin
target (M ≤ T + 0.5). The unregularised NoPer (λ′ = 0) is the reference row.

Usage: python scripts/pb_layer_study.py [--n 16] [--steps 100] [--out docs/explain_layers]
Resumes: each setting's result is cached in OUT/cache.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--windows", default="0:6,4:10,8:14,12:18,16:22,21:27")
    ap.add_argument("--lambdas", default="1000,10000")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", default="docs/explain_layers")
    args = ap.parse_args(argv)

    from tfperceptual.evaluation import saliency_metrics as bm
    from tfperceptual.datasets import load_imagenet_val
    from tfperceptual.explain import PerceptualBall
    from tfperceptual.models import activation_layers
    from tfperceptual.io_utils import atomic_savefig, atomic_write_json, atomic_write_text
    from tfperceptual.models import imagenet_mobilenet

    out = Path(args.out)
    (out / "cache").mkdir(parents=True, exist_ok=True)
    model = imagenet_mobilenet()
    relus = activation_layers(model)
    x, y, boxes, _ = load_imagenet_val(limit=args.n)
    inside = np.zeros(x.shape[:3], bool)
    for i, b in enumerate(boxes):
        for x0, y0, x1, y1 in b:
            inside[i, int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))] = True
    settings = [("noper", 0.0, [])]
    for w in args.windows.split(","):
        a, b = (int(v) for v in w.split(":"))
        for lam in (float(v) for v in args.lambdas.split(",")):
            settings.append((f"relu{a}-{b - 1}", lam, list(range(a, b))))
    rows = []
    for name, lam, layers in settings:
        key = f"{name}_{lam:g}_n{args.n}_s{args.steps}"
        path = out / "cache" / f"{key}.json"
        if path.exists():
            rows.append(json.loads(path.read_text()))
            continue
        t0 = time.perf_counter()
        pb = PerceptualBall(model, layers=layers, lambda_perceptual=lam, steps=args.steps, batch_size=args.batch_size)
        e = pb(x, y)
        dt = time.perf_counter() - t0
        energy = e.saliency.reshape(len(x), -1) ** 2
        wl = bm.weak_localisation(e.saliency, boxes)
        row = {"setting": name, "lambda_perceptual": lam, "layers": [relus[k] for k in layers],
               "weak_localisation_error": wl["best"]["error"], "best_strategy": wl["best"]["strategy"],
               "pointing": float(bm.pointing_game(bm.normalise_maps(e.saliency), boxes).mean()),
               "energy_in_box": float(np.mean((energy * inside.reshape(len(x), -1)).sum(1) / energy.sum(1))),
               "box_area": float(inside.mean()),
               "reached_target": float(np.mean(e.margin <= pb.target + 0.5)),
               "median_margin": float(np.median(e.margin)),
               "rms_perturbation": float(np.sqrt(np.mean((e.perturbed - x) ** 2))),
               "seconds_per_image": dt / len(x)}
        atomic_write_json(path, row)
        rows.append(row)
        print(json.dumps(row), flush=True)
    atomic_write_json(out / "study.json", {"n": args.n, "steps": args.steps, "rows": rows})
    lines = [f"# Perceptual-ball layer study on MobileNet v1 (first {args.n} ImageNet val images, "
             f"{args.steps} L-BFGS steps, σ = 0)", "",
             "| setting | λ′ | weak-loc. error | pointing | energy in box | reached T | median margin | "
             "RMS Δx | s / image |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['lambda_perceptual']:g} | {r['weak_localisation_error']:.3f} | "
                     f"{r['pointing']:.3f} | {r['energy_in_box']:.3f} | {r['reached_target']:.2f} | "
                     f"{r['median_margin']:.2f} | {r['rms_perturbation']:.4f} | {r['seconds_per_image']:.1f} |")
    lines += ["", f"Boxes cover {rows[0]['box_area']:.3f} of the pixels on average."]
    atomic_write_text(out / "study.md", "\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for lam in sorted({r["lambda_perceptual"] for r in rows if r["lambda_perceptual"] > 0}):
        rr = [r for r in rows if r["lambda_perceptual"] == lam]
        axes[0].plot([r["setting"] for r in rr], [r["weak_localisation_error"] for r in rr], marker="o", label=f"λ′={lam:g}")
        axes[1].plot([r["setting"] for r in rr], [r["energy_in_box"] for r in rr], marker="o", label=f"λ′={lam:g}")
    for ax, k, t in ((axes[0], "weak_localisation_error", "weak-localisation error"),
                     (axes[1], "energy_in_box", "share of |Δx|² inside the boxes")):
        ax.axhline(rows[0][k], color="k", ls="--", label="NoPer (λ′ = 0)")
        ax.set_title(t); ax.tick_params(axis="x", rotation=45); ax.legend(fontsize=8)  # noqa: E702
    atomic_savefig(fig, out / "study.png", dpi=120, bbox_inches="tight")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
