"""Zoo models: the TensorFlow.js MobileNet reaches its measured accuracy; the TF.js reader is exact."""

import json

import keras
import numpy as np
import pytest

from tfperceptual.models import zoo
from tfperceptual.datasets import load_imagenet_val
from tfperceptual.models.tfjs_weights import assign_tfjs_weights, read_tfjs_weights

#: top-1 of imagenet_mobilenet() on all 1,300 images of imagenet-val1300, measured (docs/results.md)
FULL_SET_TOP1 = 0.7669  # inference mode (moving BN statistics), all 1,300 images (997 right)
FIRST_100_TOP1 = 0.71  # the first 100 images are harder than average


@pytest.fixture(scope="module")
def mobilenet():
    return zoo.imagenet_mobilenet()


def _top1(model, x, y, batch=50):
    pred = np.concatenate([np.argmax(model(x[i:i + batch], training=False).numpy(), -1)
                           for i in range(0, len(x), batch)])
    return float(np.mean(pred == y))


def test_mobilenet_top1_on_fixed_subset_matches_full_set(mobilenet):
    x, y = load_imagenet_val(with_boxes=False, limit=100)
    assert mobilenet.input_shape == (None, None, None, 3) and mobilenet.output_shape == (None, 1000)
    assert abs(_top1(mobilenet, x, y) - FIRST_100_TOP1) <= 0.015


@pytest.mark.slow
def test_mobilenet_top1_on_all_1300_images(mobilenet):
    x, y = load_imagenet_val(with_boxes=False)
    assert abs(_top1(mobilenet, x, y) - FULL_SET_TOP1) <= 0.002


def test_class_names():
    assert zoo.class_names("mnist") == [str(i) for i in range(10)]
    assert zoo.class_names("cifar10")[:3] == ["airplane", "automobile", "bird"]
    names = zoo.class_names("imagenet")
    assert len(names) == 1000 and names[0].startswith("tench")
    with pytest.raises(ValueError, match="dataset"):
        zoo.class_names("svhn")


def _write_tfjs(tmp_path, arrays, truncate=0):
    specs = [{"name": k, "shape": list(v.shape), "dtype": "float32"} for k, v in arrays.items()]
    blob = b"".join(np.asarray(v, "<f4").tobytes() for v in arrays.values())
    (tmp_path / "group1-shard1of1").write_bytes(blob[:len(blob) - truncate])
    manifest = {"modelTopology": {}, "weightsManifest": [{"paths": ["group1-shard1of1"], "weights": specs}]}
    (tmp_path / "model.json").write_text(json.dumps(manifest))


def test_tfjs_reader_round_trip_and_assignment(tmp_path):
    inp = keras.Input((4, 4, 2))
    out = keras.layers.Dense(3, name="dense")(keras.layers.DepthwiseConv2D(3, name="dw")(inp))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    arrays = {"dw/depthwise_kernel": rng.normal(size=(3, 3, 2, 1)), "dw/bias": rng.normal(size=(2,)),
              "dense/kernel": rng.normal(size=(2, 3)), "dense/bias": rng.normal(size=(3,))}
    _write_tfjs(tmp_path, arrays)
    w = read_tfjs_weights(tmp_path)
    for k, v in arrays.items():
        np.testing.assert_array_equal(w[k], v.astype(np.float32))
    assign_tfjs_weights(model, w, {("DepthwiseConv2D", "kernel"): "depthwise_kernel"})
    np.testing.assert_array_equal(model.get_layer("dense").kernel.numpy(), arrays["dense/kernel"].astype(np.float32))
    with pytest.raises(ValueError, match="no TensorFlow.js weight"):
        assign_tfjs_weights(model, w)  # without the depthwise rename


def test_tfjs_reader_rejects_truncated_shards_and_missing_files(tmp_path):
    _write_tfjs(tmp_path, {"a/kernel": np.ones((4, 4))}, truncate=8)
    with pytest.raises(ValueError, match="truncated"):
        read_tfjs_weights(tmp_path)
    with pytest.raises(FileNotFoundError, match="model.json"):
        read_tfjs_weights(tmp_path / "nowhere")


def test_cifar10_model_accuracy_on_test_set(tmp_path, monkeypatch):
    from tfperceptual.datasets import load_cifar10

    monkeypatch.setenv("TFPERCEPTUAL_CACHE", str(tmp_path))
    model = zoo.cifar10_cnn()
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
    x, y = load_cifar10("test")
    assert _top1(model, x, y, batch=500) >= 0.85
