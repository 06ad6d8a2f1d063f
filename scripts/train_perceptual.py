"""Train perceptually regularised models (issue 17): one λ, or the λ sweep, on MNIST or CIFAR-10 (CPU; resumable).

The paper's architectures (``mnist_perceptual_parts``: Appendix B.2; ``cifar10_perceptual_parts``: its SVHN
networks of Appendix B.3 on CIFAR-10) trained with Adam (10⁻³, cosine decay) on CE + λ · per-pixel MSE.  λ is
given in the paper's units (``--lam-paper``, the weight of the squared norm summed over the D = H·W·C entries) and
converted to the model's per-pixel λ = λ_paper · D.  Keras' ``BackupAndRestore`` resumes an interrupted run at
the last finished epoch; each run writes ``<work>/lam_<λ_paper>/{model.keras, summary.json, history.json}``
atomically, and a run whose summary exists is skipped.  ``--report`` writes the sweep's table and grid into
``docs/perceptual/`` (``lambda_<data>.{md,json,png}``); ``--ship λ_paper`` copies that run's model to
``tfperceptual/assets/<data>_perceptual.keras``.  ``--adversarial linf_pgd:0.2:7`` trains the model adversarially
(:class:`~tfperceptual.training.AdversarialTraining`, the reconstruction term kept) into ``lam_<λ>_linf_pgd0.2``
(``_k<steps>`` appended for other than 7 steps),
fine-tuning the standard model of the same λ when it exists (PGD training of these narrow networks from scratch
collapsed: every ReLU of z died and accuracy stayed at chance).

    python scripts/train_perceptual.py --data mnist --epochs 8 --report --ship 0.1
    python scripts/train_perceptual.py --data cifar10 --epochs 8 --lam-paper 1e-4,1e-3,1e-2,0.1,1,100 \
        --report --ship 0.01
    python scripts/train_perceptual.py --data mnist --lam-paper 0.1 --epochs 3 --adversarial linf_pgd:0.2:7
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SWEEP = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def _tag(lam):
    return f"{lam:g}"


def train_one(data, lam_paper, epochs, batch_size, seed, work, limit=None, adversarial=None):
    import keras
    import tensorflow as tf

    from tfperceptual.datasets import load_cifar10, load_mnist
    from tfperceptual.io_utils import atomic_write_json
    from tfperceptual.protocols.perception import perception_quality
    from tfperceptual.training import PerceptualRegularization, cifar10_perceptual_parts, mnist_perceptual_parts

    run = Path(work) / (f"lam_{_tag(lam_paper)}" + (f"_{adversarial[0]}{_tag(adversarial[1])}"
                                                    + (f"_k{adversarial[2]}" if adversarial[2] != 7 else "")
                                                    if adversarial else ""))
    if (run / "summary.json").exists():
        print(f"{run}: done")
        return json.loads((run / "summary.json").read_text())
    run.mkdir(parents=True, exist_ok=True)
    load = load_mnist if data == "mnist" else load_cifar10
    x, y = load("train")
    xt, yt = load("test")
    if limit:
        x, y = x[:limit], y[:limit]
    d = int(np.prod(x.shape[1:]))
    standard = Path(work) / f"lam_{_tag(lam_paper)}" / "model.keras"
    if adversarial and standard.exists():
        # adversarial fine-tuning of the standard model of the same λ: PGD training of this narrow network from
        # scratch collapsed (every ReLU of z dead, accuracy at chance, for ε = 0.1 and 0.2 alike)
        model = keras.models.load_model(standard, compile=False)
        print(f"fine-tuning {standard} adversarially")
    else:
        parts = (mnist_perceptual_parts if data == "mnist" else cifar10_perceptual_parts)(seed=seed)
        model = PerceptualRegularization(*parts, lam=lam_paper * d)
    steps = len(x) // batch_size
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, epochs * steps, alpha=0.05))
    trainer = model
    if adversarial:  # Madry et al.'s PGD training of the perceptual model, its reconstruction term kept
        from tfperceptual.attacks import build_attack
        from tfperceptual.training import AdversarialTraining

        name, eps, attack_steps = adversarial
        trainer = AdversarialTraining(model, build_attack(name, model, eps, steps=attack_steps, seed=seed))
        trainer.compile(optimizer=optimizer, metrics=["accuracy"])
    else:
        model.compile(optimizer=optimizer)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed).batch(batch_size, drop_remainder=True)
    if data == "cifar10":
        sys.path.insert(0, str(HERE))
        from train_cifar10 import _augment

        ds = ds.map(lambda a, b: (_augment(a), b), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    start = time.time()
    hist = trainer.fit(ds, epochs=epochs, verbose=2,
                     callbacks=[keras.callbacks.BackupAndRestore(str(run / "backup"))]).history
    wall = time.time() - start
    tmp = run / "model.tmp.keras"
    model.save(tmp)
    os.replace(tmp, run / "model.keras")
    quality = perception_quality(model, xt, yt)
    summary = {"data": data, "lam_paper": lam_paper, "lam": lam_paper * d, "entries": d, "epochs": epochs,
               "batch_size": batch_size, "seed": seed, "limit": limit, "train_seconds": wall, "test": quality,
               "adversarial": None if not adversarial else dict(zip(("attack", "eps", "steps"), adversarial)),
               "init": str(standard) if adversarial and standard.exists() else "scratch"}
    atomic_write_json(run / "history.json", hist)
    atomic_write_json(run / "summary.json", summary)
    shutil.rmtree(run / "backup", ignore_errors=True)
    print(f"{run}: {quality}")
    return summary


def report(data, work, lams, out):
    import keras

    from tfperceptual.datasets import load_cifar10, load_mnist
    from tfperceptual.io_utils import atomic_savefig, atomic_write_json, atomic_write_text
    from tfperceptual.protocols.perception import perceive_batched
    from tfperceptual.protocols.report import _pyplot

    rows = []
    xt, yt = (load_mnist if data == "mnist" else load_cifar10)("test")
    pick = np.concatenate([np.flatnonzero(yt == k)[:1] for k in range(10)])
    x = xt[pick]
    perceptions = {}
    for lam in sorted(lams):
        run = Path(work) / f"lam_{_tag(lam)}"
        if not (run / "summary.json").exists():
            continue
        s = json.loads((run / "summary.json").read_text())
        rows.append(s)
        perceptions[lam] = perceive_batched(keras.models.load_model(run / "model.keras"), x)
    lines = ["| λ_paper | λ (per-pixel) | test accuracy | MSE of P(x) | SSIM of P(x) | train s |",
             "|---|---|---|---|---|---|"]
    for s in rows:
        q = s["test"]
        lines.append(f"| {s['lam_paper']:g} | {s['lam']:g} | {q['accuracy']:.4f} | {q['mse']:.5f} | "
                     f"{q['ssim']:.3f} | {s['train_seconds']:.0f} |")
    n = rows[0]["test"]["n"] if rows else 0
    head = (f"λ sweep on {data} ({n} test images; {rows[0]['epochs'] if rows else '?'} epochs, batch "
            f"{rows[0]['batch_size'] if rows else '?'}, seed {rows[0]['seed'] if rows else '?'}).\n\n")
    out = Path(out)
    atomic_write_text(out / f"lambda_{data}.md", head + "\n".join(lines) + "\n")
    atomic_write_json(out / f"lambda_{data}.json", rows)
    plt = _pyplot()
    fig, axes = plt.subplots(1 + len(perceptions), 10, figsize=(10 * 0.9, 0.95 * (1 + len(perceptions))),
                             squeeze=False)
    grid = [("x", x)] + [(f"λp={lam:g}", p) for lam, p in perceptions.items()]
    for r, (title, imgs) in enumerate(grid):
        for c in range(10):
            ax = axes[r, c]
            ax.imshow(imgs[c].squeeze(-1) if imgs.shape[-1] == 1 else imgs[c], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, fontsize=7)
    fig.suptitle(f"{data}: x (top) and P(x) per λ (paper's units)", fontsize=8)
    atomic_savefig(fig, out / f"lambda_{data}.png", dpi=100)
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("mnist", "cifar10"), required=True)
    p.add_argument("--lam-paper", default=",".join(_tag(v) for v in SWEEP),
                   help="comma-separated λ in the paper's units (default: the sweep 1e-4 … 1e2)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="train on the first N images (smoke runs)")
    p.add_argument("--work", default=None, help="default runs/perceptual_<data>")
    p.add_argument("--adversarial", default=None, metavar="ATTACK:EPS:STEPS",
                   help="train adversarially with AdversarialTraining, e.g. linf_pgd:0.2:7 (run folder "
                        "lam_<λ>_<attack><ε>)")
    p.add_argument("--report", action="store_true", help="write docs/perceptual/lambda_<data>.{md,json,png}")
    p.add_argument("--out", default=str(ROOT / "docs" / "perceptual"))
    p.add_argument("--ship", type=float, default=None, help="copy this λ_paper's model into the package assets")
    args = p.parse_args()
    lams = [float(v) for v in args.lam_paper.split(",") if v.strip()]
    work = Path(args.work or f"runs/perceptual_{args.data}")
    adversarial = None
    if args.adversarial:
        name, eps, steps = args.adversarial.split(":")
        adversarial = (name, float(eps), int(steps))
    for lam in lams:
        train_one(args.data, lam, args.epochs, args.batch_size, args.seed, work, args.limit, adversarial)
    if args.report:
        report(args.data, work, lams, args.out)
    if args.ship is not None:
        import keras

        src = work / f"lam_{_tag(args.ship)}" / "model.keras"
        dst = ROOT / "tfperceptual" / "assets" / f"{args.data}_perceptual.keras"
        tmp = dst.with_name(dst.stem + ".tmp.keras")
        keras.models.load_model(src, compile=False).save(tmp)  # weights only, no optimizer state
        os.replace(tmp, dst)
        print(f"shipped {src} -> {dst}")


if __name__ == "__main__":
    main()
