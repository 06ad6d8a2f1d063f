"""Train the small MNIST CNN that ships with tfperceptual.

Reads the 60,000 training images from ``$TFPERCEPTUAL_DATA/mnist`` (default
``../shared/data``), trains on CPU, evaluates on the 10,000 test images and
writes ``tfperceptual/assets/mnist_cnn.keras`` (input: pixels in [0, 1],
shape (28, 28, 1); output: 10 logits) and the shipped sample
``tfperceptual/assets/mnist_test_sample.npz`` (first 1,000 test images).

Usage: python scripts/train_mnist.py [--epochs 12] [--out tfperceptual/assets]
"""

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np


def build_model():
    import keras
    from keras import layers

    inputs = keras.Input((28, 28, 1), name="pixels")
    h = layers.Conv2D(32, 3, activation="relu", name="conv1")(inputs)
    h = layers.MaxPooling2D(name="pool1")(h)
    h = layers.Conv2D(64, 3, activation="relu", name="conv2")(h)
    h = layers.MaxPooling2D(name="pool2")(h)
    h = layers.Flatten(name="flatten")(h)
    h = layers.Dropout(0.4, name="dropout")(h)
    h = layers.Dense(128, activation="relu", name="fc1")(h)
    outputs = layers.Dense(10, name="logits")(h)
    return keras.Model(inputs, outputs, name="mnist_cnn")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tfperceptual" / "assets"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import keras
    from tfperceptual.datasets import load_mnist

    keras.utils.set_random_seed(args.seed)
    x_train, y_train = load_mnist("train")
    x_test, y_test = load_mnist("test")
    model = build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
              validation_split=0.05, verbose=2,
              callbacks=[keras.callbacks.ReduceLROnPlateau(patience=2, factor=0.3)])
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"MNIST test accuracy: {acc:.4f} (loss {loss:.4f})")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out, suffix=".keras", delete=False) as tmp:
        tmp_path = tmp.name
    shipped = build_model()  # same architecture without optimizer state: a smaller file
    shipped.set_weights(model.get_weights())
    shipped.save(tmp_path)
    os.replace(tmp_path, out / "mnist_cnn.keras")
    sample = np.round(x_test[:1000, ..., 0] * 255).astype(np.uint8)
    tmp_npz = out / "mnist_test_sample.tmp.npz"
    np.savez_compressed(tmp_npz, images=sample, labels=y_test[:1000].astype(np.uint8))
    os.replace(tmp_npz, out / "mnist_test_sample.npz")
    print(f"wrote {out / 'mnist_cnn.keras'} and {out / 'mnist_test_sample.npz'}")


if __name__ == "__main__":
    main()
