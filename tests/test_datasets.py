"""MNIST loader against the data README; the shipped sample; missing-root errors."""

import gzip
import hashlib

import numpy as np
import pytest

from tfperceptual import datasets


def test_load_mnist_shapes_ranges_counts():
    x, y = datasets.load_mnist("test")
    assert x.shape == (10000, 28, 28, 1) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert y.shape == (10000,) and set(np.unique(y)) == set(range(10))
    assert np.bincount(y).min() > 800


def test_train_files_have_canonical_md5():
    root = datasets.data_root() / "mnist"
    md5 = {"train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
           "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624"}
    for name, want in md5.items():
        with gzip.open(root / name, "rb") as f:
            assert hashlib.md5(f.read()).hexdigest() == want
    x, y = datasets.load_mnist("train")
    assert x.shape == (60000, 28, 28, 1) and y.shape == (60000,)


def test_shipped_sample_is_the_first_1000_test_images():
    xs, ys = datasets.load_sample("mnist")
    x, y = datasets.load_mnist("test")
    np.testing.assert_array_equal(ys, y[:1000])
    np.testing.assert_allclose(xs, x[:1000], atol=1e-7)


def test_shipped_model_accuracy_on_sample(mnist_model, mnist_sample):
    x, y = mnist_sample
    acc = np.mean(np.argmax(mnist_model(x).numpy(), -1) == y)
    assert acc >= 0.99


def test_missing_root_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("TFPERCEPTUAL_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(datasets.DataNotFoundError, match="TFPERCEPTUAL_DATA"):
        datasets.load_mnist("test")
    monkeypatch.setenv("TFPERCEPTUAL_DATA", str(tmp_path))
    with pytest.raises(datasets.DataNotFoundError, match="IDX file not found"):
        datasets.load_mnist("test")
    with pytest.raises(ValueError, match="split"):
        datasets.load_mnist("validation")


def test_read_idx_rejects_truncated_file(tmp_path):
    p = tmp_path / "bad-idx3-ubyte"
    p.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(ValueError, match="expected 5"):
        datasets.read_idx(p)
