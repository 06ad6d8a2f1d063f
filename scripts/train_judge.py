"""Train an independent *judge* classifier: another architecture and seed than every model that crafts
perturbations, never used to craft any.  It reads perturbed images (counterfactuals, concept probes) and says
which class they look like, so that a qualitative claim ("the perturbation carries the target class's
features") becomes a measured fraction with a confidence interval.

* MNIST: a LeNet-style network (5 × 5 convolutions, average pooling, tanh-free ReLU MLP head, 20-50-500),
  seed 1 — the crafting models are 3 × 3 max-pooling CNNs.
* CIFAR-10: an all-convolutional network (Springenberg et al. 2015 style: strided 3 × 3 convolutions instead of
  pooling, widths 48-96-192, no batch norm but dropout), seed 1 — the crafting models are VGG-style with
  batch norm and max pooling.

Checkpoints every epoch to ``--work`` (optimizer state included) and resumes from there; the settings must
match on resume.  Writes ``<work>/judge.keras`` atomically at the end with its test accuracy in
``<work>/judge.json``.  Judges are not shipped (they are a measuring instrument, rebuilt by this script).

Usage: python scripts/train_judge.py --data mnist|cifar10 [--epochs N] [--seed 1] [--work runs/judge_<data>]
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_cifar10 import CIFAR_MEAN, CIFAR_STD, _augment  # noqa: E402 (the shipped model's augmentation)

DEFAULT_EPOCHS = {"mnist": 8, "cifar10": 18}


def build_judge(data):
    """The judge's architecture for ``data`` (logits output, pixels in [0, 1])."""
    import keras
    from keras import layers

    if data == "mnist":
        inputs = keras.Input((28, 28, 1), name="pixels")
        h = layers.Conv2D(20, 5, activation="relu", name="conv1")(inputs)
        h = layers.AveragePooling2D(2, name="pool1")(h)
        h = layers.Conv2D(50, 5, activation="relu", name="conv2")(h)
        h = layers.AveragePooling2D(2, name="pool2")(h)
        h = layers.Flatten(name="flatten")(h)
        h = layers.Dense(500, activation="relu", name="fc1")(h)
        h = layers.Dropout(0.5, name="drop_fc1")(h)
        outputs = layers.Dense(10, name="logits")(h)
        return keras.Model(inputs, outputs, name="mnist_judge_lenet")
    inputs = keras.Input((32, 32, 3), name="pixels")
    h = layers.Normalization(mean=CIFAR_MEAN, variance=[s**2 for s in CIFAR_STD], name="standardise")(inputs)
    for i, width in enumerate((48, 96, 192)):
        h = layers.Conv2D(width, 3, padding="same", activation="elu", name=f"conv{i + 1}_1")(h)
        h = layers.Conv2D(width, 3, padding="same", activation="elu", name=f"conv{i + 1}_2")(h)
        h = layers.Conv2D(width, 3, strides=2, padding="same", activation="elu", name=f"down{i + 1}")(h)
        h = layers.Dropout(0.2, name=f"drop{i + 1}")(h)
    h = layers.Conv2D(192, 1, activation="elu", name="conv_1x1")(h)
    h = layers.Conv2D(10, 1, name="conv_logits")(h)
    outputs = layers.GlobalAveragePooling2D(name="logits")(h)
    return keras.Model(inputs, outputs, name="cifar10_judge_allconv")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("mnist", "cifar10"), required=True)
    p.add_argument("--epochs", type=int, default=None, help="default: 8 (MNIST), 18 (CIFAR-10)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=1, help="1: not the seed of the shipped models (0)")
    p.add_argument("--work", default=None, help="checkpoint folder (resume); default runs/judge_<data>")
    args = p.parse_args()
    epochs = args.epochs or DEFAULT_EPOCHS[args.data]
    work = Path(args.work or f"runs/judge_{args.data}")
    work.mkdir(parents=True, exist_ok=True)

    import keras
    import tensorflow as tf

    from tfperceptual.datasets import load_cifar10, load_mnist
    from tfperceptual.io_utils import atomic_write_json

    settings = {"data": args.data, "epochs": epochs, "batch_size": args.batch_size, "lr": args.lr,
                "seed": args.seed}
    sfile = work / "settings.json"
    if sfile.exists() and json.loads(sfile.read_text()) != settings:
        raise SystemExit(f"error: {work} holds a run with other settings ({sfile.read_text()}); use another --work")
    atomic_write_json(sfile, settings)

    keras.utils.set_random_seed(args.seed)
    load = load_mnist if args.data == "mnist" else load_cifar10
    x_train, y_train = load("train")
    x_test, y_test = load("test")
    steps_per_epoch = int(np.ceil(len(x_train) / args.batch_size))

    ckpt, epoch_file = work / "last.keras", work / "epoch.txt"
    initial_epoch = 0
    if ckpt.exists() and epoch_file.exists():
        model = keras.models.load_model(ckpt)
        initial_epoch = int(epoch_file.read_text())
        print(f"resuming from epoch {initial_epoch}")
    else:
        model = build_judge(args.data)
        schedule = keras.optimizers.schedules.CosineDecay(args.lr * 0.1, epochs * steps_per_epoch,
                                                          warmup_target=args.lr, warmup_steps=steps_per_epoch)
        model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=5e-4),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

    def epoch_data(epoch):  # a seeded shuffle per epoch, so that a resumed run sees the same order
        ds = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(len(x_train), seed=args.seed * 1000 + epoch)
        ds = ds.batch(args.batch_size)
        if args.data == "cifar10":
            ds = ds.map(lambda x, y: (_augment(x), y), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    for epoch in range(initial_epoch, epochs):
        tf.random.set_seed(args.seed * 1000 + epoch)
        model.fit(epoch_data(epoch), epochs=epoch + 1, initial_epoch=epoch, verbose=2)
        tmp = work / "last.tmp.keras"
        model.save(tmp)
        os.replace(tmp, ckpt)
        epoch_file.write_text(str(epoch + 1))
    loss, acc = model.evaluate(x_test, y_test, verbose=0, batch_size=500)
    print(f"{args.data} judge test accuracy: {acc:.4f} (loss {loss:.4f})")
    judge = build_judge(args.data)
    judge.set_weights(model.get_weights())
    tmp = work / "judge.tmp.keras"
    judge.save(tmp)
    os.replace(tmp, work / "judge.keras")
    atomic_write_json(work / "judge.json", {**settings, "architecture": judge.name, "test_accuracy": float(acc),
                                            "test_loss": float(loss)})
    print(f"wrote {work / 'judge.keras'}")


if __name__ == "__main__":
    main()
