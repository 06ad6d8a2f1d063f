"""CIFAR-10 and ImageNet loaders: shapes and counts against the data README, RGB conversion,
corrupt files, boxes scaled to the 227 × 227 frame."""


import numpy as np
import pytest
from PIL import Image

from tfperceptual import datasets


def test_load_cifar10_test_shapes_and_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("TFPERCEPTUAL_CACHE", str(tmp_path))
    x, y = datasets.load_cifar10("test")
    assert x.shape == (10000, 32, 32, 3) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)
    # second load comes from the .npz cache and is identical
    assert list(tmp_path.glob("cifar10_test_*.npz"))
    x2, y2 = datasets.load_cifar10("test")
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)


@pytest.mark.slow
def test_load_cifar10_train_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("TFPERCEPTUAL_CACHE", str(tmp_path))
    x, y = datasets.load_cifar10("train")
    assert x.shape == (50000, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(y), [5000] * 10)


def test_greyscale_cmyk_and_alpha_images_become_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8)
    Image.fromarray(rgb[..., 0], "L").save(tmp_path / "grey.jpg", quality=100)
    Image.fromarray(rgb, "RGB").convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    Image.fromarray(np.dstack([rgb, np.full((16, 16), 128, np.uint8)]), "RGBA").save(tmp_path / "alpha.png")
    grey = datasets.read_image_rgb(tmp_path / "grey.jpg")
    assert grey.shape == (16, 16, 3) and np.all(grey[..., 0] == grey[..., 1])
    assert np.abs(grey[..., 0].astype(int) - rgb[..., 0]).mean() < 3
    cmyk = datasets.read_image_rgb(tmp_path / "cmyk.jpg")
    assert cmyk.shape == (16, 16, 3) and np.abs(cmyk.astype(int) - rgb).mean() < 8
    alpha = datasets.read_image_rgb(tmp_path / "alpha.png")
    np.testing.assert_array_equal(alpha, rgb)


def test_corrupt_file_is_reported_by_name_and_skipped(tmp_path, monkeypatch):
    root = tmp_path / "data"
    for c, k in (("cat", 0), ("dog", 1)):
        d = root / "cifar10" / "test" / c
        d.mkdir(parents=True)
        Image.fromarray(np.full((32, 32, 3), 50 * (k + 1), np.uint8)).save(d / "0000.jpg")
    (root / "cifar10" / "test" / "dog" / "0001.jpg").write_bytes(b"not a jpeg")
    monkeypatch.setenv("TFPERCEPTUAL_CACHE", str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match="0001.jpg"):
        x, y = datasets.load_cifar10("test", root=root)
    assert x.shape == (2, 32, 32, 3) and y.tolist() == [0, 1]
    assert x[1].mean() > 0.3  # the dog image is the real one, not a zero-filled stand-in


def test_missing_cifar_root_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("TFPERCEPTUAL_DATA", str(tmp_path))
    with pytest.raises(datasets.DataNotFoundError, match="TFPERCEPTUAL_DATA"):
        datasets.load_cifar10("test")
    with pytest.raises(datasets.DataNotFoundError, match="TFPERCEPTUAL_DATA"):
        datasets.load_imagenet_val()


@pytest.fixture(scope="module")
def imagenet():
    return datasets.load_imagenet_val()


def test_imagenet_shapes_labels_and_known_boxes(imagenet):
    x, y, boxes, names = imagenet
    assert x.shape == (1300, 227, 227, 3) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 1 and y.min() >= 0 and y.max() < 1000
    i = names.index("ILSVRC2012_val_00000347.JPEG")
    assert y[i] == 472  # dataset.txt
    # localization.txt: 20,175,111,292 on a 500 × 375 original, 0-based inclusive pixel indices
    # edges [20, 112) × [175, 293)
    np.testing.assert_allclose(boxes[i][0], [20 * 227 / 500, 175 * 227 / 375, 112 * 227 / 500, 293 * 227 / 375])
    assert len(boxes[i]) == 8
    assert all(len(b) >= 1 and np.all(b[:, 2] > b[:, 0]) for b in boxes)
    assert all(b.min() >= 0 and b.max() <= 227 + 1e-9 for b in boxes)
    # boxes whose last pixel is the image's last column / row end at the frame's edge, 227
    assert sum(bool(np.isclose(b[:, 2], 227).any()) for b in boxes) > 50
    assert sum(bool(np.isclose(b[:, 3], 227).any()) for b in boxes) > 50
