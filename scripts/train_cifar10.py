"""Train the CIFAR-10 CNN that ships with tfperceptual (CPU, ~1 h on 2 cores).

Reads the 50,000 training JPEGs from ``$TFPERCEPTUAL_DATA/cifar10/train``
(default ``../shared/data``), trains a VGG-style CNN with batch norm and
augmentation (random flips and 4-pixel translations), evaluates on the 10,000
test JPEGs and writes ``tfperceptual/assets/cifar10_cnn.keras`` (input: pixels
in [0, 1], shape (32, 32, 3), per-channel standardisation inside the model;
output: 10 logits).  Checkpoints every epoch to ``--work`` and resumes from
there when restarted.

Usage: python scripts/train_cifar10.py [--epochs 30] [--out tfperceptual/assets]
"""

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

CIFAR_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR_STD = [0.2470, 0.2435, 0.2616]


def build_model():
    import keras
    from keras import layers

    inputs = keras.Input((32, 32, 3), name="pixels")
    h = layers.Normalization(mean=CIFAR_MEAN, variance=[s**2 for s in CIFAR_STD], name="standardise")(inputs)
    for i, width in enumerate((32, 64, 128)):
        for j in range(2):
            h = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{i + 1}_{j + 1}")(h)
            h = layers.BatchNormalization(name=f"bn{i + 1}_{j + 1}")(h)
            h = layers.ReLU(name=f"relu{i + 1}_{j + 1}")(h)
        h = layers.MaxPooling2D(name=f"pool{i + 1}")(h)
        h = layers.Dropout(0.1 + 0.1 * i, name=f"drop{i + 1}")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    h = layers.Dense(128, use_bias=False, name="fc1")(h)
    h = layers.BatchNormalization(name="bn_fc1")(h)
    h = layers.ReLU(name="relu_fc1")(h)
    h = layers.Dropout(0.3, name="drop_fc1")(h)
    outputs = layers.Dense(10, name="logits")(h)
    return keras.Model(inputs, outputs, name="cifar10_cnn")


def _augment(x):
    import tensorflow as tf

    b = tf.shape(x)[0]
    x = tf.where(tf.random.uniform((b, 1, 1, 1)) < 0.5, tf.image.flip_left_right(x), x)
    padded = tf.pad(x, [[0, 0], [4, 4], [4, 4], [0, 0]], mode="REFLECT")
    return tf.map_fn(lambda im: tf.image.random_crop(im, (32, 32, 3)), padded)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tfperceptual" / "assets"))
    p.add_argument("--work", default="runs/train_cifar10", help="checkpoint folder (resume)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import keras
    import tensorflow as tf

    from tfperceptual.datasets import load_cifar10

    keras.utils.set_random_seed(args.seed)
    x_train, y_train = load_cifar10("train")
    x_test, y_test = load_cifar10("test")
    steps_per_epoch = int(np.ceil(len(x_train) / args.batch_size))
    ds = (tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(50000, seed=args.seed)
          .batch(args.batch_size).map(lambda x, y: (_augment(x), y), num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "last.keras"
    initial_epoch = 0
    if ckpt.exists() and (work / "epoch.txt").exists():
        model = keras.models.load_model(ckpt)
        initial_epoch = int((work / "epoch.txt").read_text())
        print(f"resuming from epoch {initial_epoch}")
    else:
        model = build_model()
        schedule = keras.optimizers.schedules.CosineDecay(args.lr * 0.1, args.epochs * steps_per_epoch,
                                                          warmup_target=args.lr, warmup_steps=2 * steps_per_epoch)
        model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=5e-4),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

    class Checkpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            tmp = work / "last.tmp.keras"
            self.model.save(tmp)
            os.replace(tmp, ckpt)
            (work / "epoch.txt").write_text(str(epoch + 1))

    model.fit(ds, epochs=args.epochs, initial_epoch=initial_epoch, validation_data=(x_test, y_test),
              verbose=2, callbacks=[Checkpoint()])
    loss, acc = model.evaluate(x_test, y_test, verbose=0, batch_size=500)
    print(f"CIFAR-10 test accuracy: {acc:.4f} (loss {loss:.4f})")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shipped = build_model()  # same architecture without optimizer state
    shipped.set_weights(model.get_weights())
    with tempfile.NamedTemporaryFile(dir=out, suffix=".keras", delete=False) as tmp:
        tmp_path = tmp.name
    shipped.save(tmp_path)
    os.replace(tmp_path, out / "cifar10_cnn.keras")
    print(f"wrote {out / 'cifar10_cnn.keras'} (test accuracy {acc:.4f})")


if __name__ == "__main__":
    main()
