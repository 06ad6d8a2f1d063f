"""Adversarially train the robust models that ship with tfperceptual (CPU; resumable).

The exact commands of the shipped models (docs/results.md, "Robust models"):

    python scripts/train_robust.py --data mnist --attack l2_pgd --eps 2.0 --steps 10 --epochs 6 \\
        --name mnist_cnn_robust
    python scripts/train_robust.py --data cifar10 --attack l2_pgd --eps 0.5 --steps 2 --epochs 4 \\
        --name cifar10_cnn_robust
    python scripts/train_robust.py --data cifar10 --attack fpgap --eps 0.015 --steps 2 --epochs 4 \\
        --name cifar10_cnn_ssim_robust

Each run starts from the shipped standard model of its dataset (``--init shipped``; adversarial
fine-tuning, which reaches a robust model in a few epochs on 2 CPU cores) or from scratch
(``--init scratch``), wraps it in :class:`tfperceptual.training.AdversarialTraining` with the chosen
graph-pure attack (``l2_pgd``, ``linf_pgd``, ``fgsm_rs``, ``fpgap``; FPGAP with the CE loss and no early
stop, so every training image goes to the edge of its SSIM ball), and trains with Adam and a cosine
decay.  After every epoch it writes the classifier, the optimizer's variables and the history to
``--work`` (atomically), then the epoch count last; a restarted run resumes from there (refusing other
settings than the run it resumes), with the shuffle order of each epoch seeded by ``--seed`` and the epoch
number, so a resumed run sees the images in the order an uninterrupted one would (CIFAR-10's random flips
and crops are drawn afresh).  The shipped models were trained before this per-epoch seeding (one shuffle
reshuffled every epoch), with the same commands.  At the end it writes
``tfperceptual/assets/<name>.keras`` (the classifier only) and ``<work>/summary.json`` (clean test
accuracy, the settings, the history and the wall time).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ASSETS = HERE.parent / "tfperceptual" / "assets"
#: settings a resumed run must share with the run it resumes
RESUME_KEYS = ("data", "attack", "eps", "steps", "epochs", "method", "batch_size", "lr", "init", "limit", "seed")


def _atomic_save_model(model, path):
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def inner_attack(name, model, eps, steps, method, seed):
    """The training attack: the registry's, with TRADES' KL loss or FPGAP's PGD-like settings."""
    from tfperceptual.attacks import build_attack

    if name == "fpgap":
        if method == "trades":
            raise SystemExit("--method trades needs a random start (its KL loss has zero gradient at x): "
                             "use l2_pgd, linf_pgd or fgsm_rs")
        return build_attack(name, model, eps, steps=steps, loss="ce", early_stop=False)
    return build_attack(name, model, eps, steps=steps, seed=seed, loss="kl" if method == "trades" else "ce")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("mnist", "cifar10"), required=True)
    p.add_argument("--attack", choices=("l2_pgd", "linf_pgd", "fgsm_rs", "fpgap"), required=True)
    p.add_argument("--eps", type=float, required=True)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--method", choices=("madry", "trades"), default="madry")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--init", choices=("shipped", "scratch"), default="shipped")
    p.add_argument("--name", required=True, help="the asset's name: tfperceptual/assets/<name>.keras")
    p.add_argument("--work", default=None, help="checkpoint folder (default runs/train_<name>)")
    p.add_argument("--out", default=str(ASSETS), help="folder of the trained classifier (default: assets)")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only (smoke runs)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import keras
    import tensorflow as tf

    from tfperceptual.datasets import load_cifar10, load_mnist
    from tfperceptual.io_utils import atomic_write_json, atomic_write_text
    from tfperceptual.models import zoo
    from tfperceptual.training import AdversarialTraining

    sys.path.insert(0, str(HERE))
    keras.utils.set_random_seed(args.seed)
    load = load_mnist if args.data == "mnist" else load_cifar10
    x_train, y_train = load("train")
    x_test, y_test = load("test")
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    steps_per_epoch = len(x_train) // args.batch_size
    settings = {k: getattr(args, k) for k in RESUME_KEYS}

    work = Path(args.work or f"runs/train_{args.name}")
    work.mkdir(parents=True, exist_ok=True)
    ckpt, opt_file, epoch_file, hist_file = (work / "last.keras", work / "optimizer.npz", work / "epoch.txt",
                                             work / "history.json")
    resume = ckpt.exists() and opt_file.exists() and epoch_file.exists()
    if resume:
        saved = json.loads((work / "settings.json").read_text())
        changed = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
        if changed:
            raise SystemExit(f"{work} holds a run with other settings {changed} (saved, given): pass another "
                             "--work or the same settings")
        model = keras.models.load_model(ckpt, compile=False)
        initial_epoch = int(epoch_file.read_text())
        history = json.loads(hist_file.read_text()) if hist_file.exists() else {}
        # an epoch whose files were written but whose count was not (a crash in between) is run again
        history = {k: (v[:initial_epoch] if isinstance(v, list) else v) for k, v in history.items()}
        print(f"resuming {work} from epoch {initial_epoch}")
    else:
        if args.init == "shipped":
            model = zoo.mnist_cnn() if args.data == "mnist" else zoo.cifar10_cnn()
        else:
            from train_cifar10 import build_model as build_cifar
            from train_mnist import build_model as build_mnist

            model = build_mnist() if args.data == "mnist" else build_cifar()
        initial_epoch, history = 0, {}
        atomic_write_json(work / "settings.json", settings)

    # one shuffle per epoch, seeded by the epoch: a resumed run draws the batches of an uninterrupted one
    # (Keras keeps one iterator across epochs when steps_per_epoch is given)
    base = tf.data.Dataset.from_tensor_slices((x_train, y_train))

    ds = None
    for epoch in range(initial_epoch, args.epochs):
        batches = base.shuffle(len(x_train), seed=args.seed * 100003 + epoch).batch(args.batch_size,
                                                                                   drop_remainder=True)
        ds = batches if ds is None else ds.concatenate(batches)
    ds = ds if ds is not None else base.batch(args.batch_size)  # nothing left to train
    if args.data == "cifar10":
        from train_cifar10 import _augment

        ds = ds.map(lambda x, y: (_augment(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)

    attack = inner_attack(args.attack, model, args.eps, args.steps, args.method, args.seed)
    extra = {"beta": 6.0} if args.method == "trades" else {}
    wrapper = AdversarialTraining(model, attack, method=args.method, **extra)
    schedule = keras.optimizers.schedules.CosineDecay(args.lr, args.epochs * steps_per_epoch, alpha=0.05)
    optimizer = keras.optimizers.Adam(schedule)
    wrapper.compile(optimizer=optimizer, metrics=["accuracy"])
    if resume:
        optimizer.build(wrapper.trainable_variables)
        saved = np.load(opt_file)
        for i, v in enumerate(optimizer.variables):
            v.assign(saved[f"v{i}"])

    started = time.time()
    spent = float(history.get("_seconds", 0.0))

    class Checkpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            for k, v in (logs or {}).items():
                history.setdefault(k, []).append(float(v))
            history["_seconds"] = spent + time.time() - started
            _atomic_save_model(model, ckpt)
            tmp = work / "optimizer.tmp.npz"
            np.savez(tmp, **{f"v{i}": v.numpy() for i, v in enumerate(optimizer.variables)})
            os.replace(tmp, opt_file)
            atomic_write_json(hist_file, history)
            atomic_write_text(epoch_file, str(epoch + 1))  # last: the epoch is complete

    if initial_epoch < args.epochs:
        wrapper.fit(ds, epochs=args.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                    validation_data=(x_test[::5], y_test[::5]), verbose=2, callbacks=[Checkpoint()])
    acc = float(wrapper.evaluate(x_test, y_test, batch_size=500, verbose=0, return_dict=True)["accuracy"])
    print(f"{args.name}: clean test accuracy {acc:.4f} on {len(x_test)} images")

    shipped = keras.models.clone_model(model)  # the architecture without optimizer state: a small file
    shipped.set_weights(model.get_weights())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_save_model(shipped, out / f"{args.name}.keras")
    summary = {"name": args.name, "settings": vars(args), "clean_test_accuracy": acc,
               "train_seconds": history.get("_seconds"), "history": history}
    atomic_write_json(work / "summary.json", summary)
    print(f"wrote {out / (args.name + '.keras')} and {work / 'summary.json'}")


if __name__ == "__main__":
    main()
