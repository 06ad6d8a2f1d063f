"""The judge study of perceptual regularisation (issue 17): for each λ of the sweep (``train_perceptual.py``),
attack the model (``pgd``, ``fpgap``, ``l1q``), and let the independent judge (``train_judge.py``: another
architecture and seed, never used to craft anything) read x_adv, P(x) and P(x_adv); the noise study too.  Each
model's run goes to ``runs/perceive_<data>/lam_<λ_paper>/`` (cached: rerun to resume); the table of all λ to
``docs/perceptual/judge_<data>.{md,json}``.

    python scripts/judge_perception.py --data mnist
    python scripts/judge_perception.py --data cifar10
"""

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("mnist", "cifar10"), required=True)
    p.add_argument("--lam-paper", default="1e-04,0.001,0.01,0.1,1,10,100")
    p.add_argument("--attacks", default="pgd,fpgap,l1q")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--noise-per-class", type=int, default=20)
    p.add_argument("--judge", default=None, help="default runs/judge_<data>/judge.keras")
    p.add_argument("--sweep", default=None, help="default runs/perceptual_<data>")
    p.add_argument("--work", default=None, help="default runs/perceive_<data>")
    p.add_argument("--out", default=str(ROOT / "docs" / "perceptual"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import keras
    import numpy as np

    from tfperceptual.datasets import load_cifar10, load_mnist
    from tfperceptual.io_utils import atomic_write_json, atomic_write_text
    from tfperceptual.models import class_names
    from tfperceptual.protocols.perception import run_perception
    from tfperceptual.protocols.report import fmt

    judge = keras.models.load_model(args.judge or f"runs/judge_{args.data}/judge.keras", compile=False)
    x, y = (load_mnist if args.data == "mnist" else load_cifar10)("test")
    idx = (np.arange(args.n) * len(x)) // args.n  # evenly spaced: CIFAR-10's test set is stored class by class
    x, y = x[idx].astype(np.float32), y[idx]
    sweep = Path(args.sweep or f"runs/perceptual_{args.data}")
    work = Path(args.work or f"runs/perceive_{args.data}")
    rows = []
    for tag in [t.strip() for t in args.lam_paper.split(",") if t.strip()]:
        lam = float(tag)
        path = sweep / f"lam_{lam:g}" / "model.keras"
        if not path.exists():
            print(f"skipping λ_paper = {lam:g}: {path} not trained")
            continue
        model = keras.models.load_model(path)
        r = run_perception(model, x, y, attacks=tuple(args.attacks.split(",")), judge=judge, data_name=args.data,
                           model_name=str(path), class_names=class_names(args.data),
                           noise_per_class=args.noise_per_class, out_dir=work / f"lam_{lam:g}", seed=args.seed)
        rows.append({"lam_paper": lam, **r})
        print(f"λ_paper = {lam:g} done")

    def ci(f):
        return f"{fmt(f['fraction'])} ({fmt(f['ci95'][0])}–{fmt(f['ci95'][1])})"

    judge_name = args.judge or f"runs/judge_{args.data}"
    lines = [f"Judge study on {args.data}: {args.n} test images (evenly spaced), judge = {judge_name}; fractions over "
             "the images the model classified correctly and the attack fooled (n), with Wilson 95 % intervals.", "",
             "| λ_paper | clean acc. | attack | fooling rate | n | judge(P(x_adv)) = adv. label | judge(x_adv) = label "
             "| judge(x_adv) = adv. label | judge(P(x)) = label | judge switches along D(F(x)+αZ) | median α |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for name, a in r["attacks"].items():
            j, s = a["judge"], a["interpolation_judge"]
            lines.append(f"| {r['lam_paper']:g} | {fmt(r['clean_accuracy'])} | {name} | {fmt(a['fooling_rate'])} | "
                         f"{a['n_fooled']} | {ci(j['perceived_adv_is_adv_label'])} | {ci(j['adv_is_label'])} | "
                         f"{ci(j['adv_is_adv_label'])} | {ci(j['perceived_clean_is_label'])} | {ci(s)} | "
                         f"{fmt(s['median_first_alpha'], 2)} |")
    lines += ["", "Noise perceived as a class (uniform noise, targeted ℓ∞ PGD toward each class):", "",
              "| λ_paper | n | model reaches target | judge(P(x_adv)) = target | judge(x_adv) = target | "
              "judge(P(noise)) = target |", "|---|---|---|---|---|---|"]
    for r in rows:
        nz = r.get("noise")
        if nz:
            lines.append(f"| {r['lam_paper']:g} | {nz['n']} | {ci(nz['model_reaches_target'])} | "
                         f"{ci(nz['judge_perceived_is_target'])} | {ci(nz['judge_adv_is_target'])} | "
                         f"{ci(nz['judge_perceived_noise_is_target'])} |")
    out = Path(args.out)
    atomic_write_text(out / f"judge_{args.data}.md", "\n".join(lines) + "\n")
    atomic_write_json(out / f"judge_{args.data}.json", rows)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
