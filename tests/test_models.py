"""The logits adapter (one for every algorithm), the graph walker and the feature extractors."""

import threading

import keras
import numpy as np
import pytest

from tfperceptual.attacks import margin
from tfperceptual.models import (LogitsModel, as_logits_model, feature_model, imagenet_mobilenet,
                                 penultimate_conv_layer)
from tfperceptual.models.graph import layer_tensors, producer


def _variants(model):
    """The shipped MNIST CNN's weights behind every kind of head (each model with its own layers)."""
    def body(inp):
        h = inp
        for layer in model.layers[1:-1]:
            clone = layer.__class__.from_config(layer.get_config())
            h = clone(h)
            clone.set_weights(layer.get_weights())
        return h

    def dense(activation=None):
        d = keras.layers.Dense(10, activation=activation)
        return d

    out = {}
    inp = keras.Input((28, 28, 1))
    d = dense("softmax")
    out["softmax_activation"] = keras.Model(inp, d(body(inp)))
    d.set_weights(model.layers[-1].get_weights())
    for name, head in (("softmax_layer", keras.layers.Softmax()),
                       ("lambda_softmax", keras.layers.Lambda(lambda z: keras.ops.softmax(z))),
                       ("activation_softmax", keras.layers.Activation("softmax"))):
        inp = keras.Input((28, 28, 1))
        d = dense()
        out[name] = keras.Model(inp, head(d(body(inp))))
        d.set_weights(model.layers[-1].get_weights())
    seq = keras.Sequential([keras.Input((28, 28, 1))])
    inp = keras.Input((28, 28, 1))
    _ = body(inp)  # build clones once to copy weights layer by layer
    for layer in model.layers[1:]:
        clone = layer.__class__.from_config(layer.get_config())
        seq.add(clone)
        clone.set_weights(layer.get_weights())
    out["logits"] = seq
    return out


EXPECTED_HEAD = {"softmax_activation": "softmax_activation", "softmax_layer": "softmax_layer",
                 "lambda_softmax": "softmax_layer", "activation_softmax": "softmax_layer", "logits": "logits"}


def test_every_head_gives_the_exact_logits(mnist_model, mnist_batch):
    """Dense(softmax), Softmax(), Lambda-softmax, Activation("softmax") and a logits Sequential: the adapter
    finds the pre-softmax logits exactly (a Lambda softmax no longer falls back to log p)."""
    x, y = mnist_batch
    ref = mnist_model(x).numpy()
    for name, m in _variants(mnist_model).items():
        lm = as_logits_model(m)
        assert lm.head == EXPECTED_HEAD[name], name
        np.testing.assert_allclose(lm(x).numpy(), ref, rtol=1e-4, atol=1e-4, err_msg=name)


def test_sigmoid_heads_give_their_pre_sigmoid_logits(mnist_model, mnist_batch):
    x, _ = mnist_batch
    ref = mnist_model(x).numpy()
    for head in ("activation", "layer"):
        inp = keras.Input((28, 28, 1))
        z = mnist_model(inp)
        if head == "layer":
            out = keras.layers.Activation("sigmoid")(z)
        else:
            dense = keras.layers.Dense(10, activation="sigmoid")
            out = dense(z)
        m = keras.Model(inp, out)
        lm = as_logits_model(m)
        assert lm.head == ("sigmoid_layer" if head == "layer" else "sigmoid_activation")
        if head == "layer":
            np.testing.assert_allclose(lm(x).numpy(), ref, rtol=1e-5, atol=1e-5)
        else:
            want = keras.ops.matmul(ref, dense.kernel) + dense.bias
            np.testing.assert_allclose(lm(x).numpy(), np.asarray(want), rtol=1e-4, atol=1e-4)


def test_an_opaque_probability_head_uses_log_p(mnist_model, mnist_batch):
    x, y = mnist_batch
    inp = keras.Input((28, 28, 1))
    p = keras.layers.Lambda(lambda z: keras.ops.softmax(2.0 * z))(mnist_model(inp))  # not softmax of its input
    with pytest.warns(UserWarning, match="probabilities"):
        lm = as_logits_model(keras.Model(inp, p))
    assert lm.head == "probabilities"
    # log p = 2 z − c: the margins of the logits that softmax actually saw
    np.testing.assert_allclose(margin(lm(x), y).numpy(), 2 * margin(mnist_model(x), y).numpy(), rtol=1e-4, atol=1e-3)


def test_the_user_layer_is_never_modified_during_a_call(mnist_batch):
    """The pre-activation is read from a linear *view* of the layer: its activation stays softmax while the
    adapter runs, even with another thread calling the user's model at the same time."""
    x, _ = mnist_batch
    inp = keras.Input((28, 28, 1))
    head = keras.layers.Dense(10, activation="softmax", name="head")
    model = keras.Model(inp, head(keras.layers.Flatten()(inp)))
    lm = as_logits_model(model)
    seen, stop = [], threading.Event()

    def user_calls():
        while not stop.is_set():
            p = model(x[:2]).numpy()
            seen.append(np.allclose(p.sum(1), 1.0, atol=1e-5))

    t = threading.Thread(target=user_calls)
    t.start()
    for _ in range(20):
        z = lm(x[:2]).numpy()
        assert head.activation is keras.activations.softmax
    stop.set()
    t.join()
    assert all(seen) and seen
    np.testing.assert_allclose(keras.ops.softmax(z).numpy(), model(x[:2]).numpy(), atol=1e-6)


def test_logits_model_round_trips_through_a_keras_file(tmp_path, mnist_batch):
    x, _ = mnist_batch
    inp = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(3, 3, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(h)))
    lm = LogitsModel(model)
    lm.save(tmp_path / "lm.keras")
    back = keras.models.load_model(tmp_path / "lm.keras")
    assert isinstance(back, LogitsModel) and back.head == "softmax_activation" and back.num_classes == 10
    np.testing.assert_allclose(back(x[:4]).numpy(), lm(x[:4]).numpy(), rtol=1e-6, atol=1e-6)
    # the functional network on its own (with its PreActivation layer) round-trips too
    lm.network.save(tmp_path / "net.keras")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "net.keras")(x[:4]).numpy(), lm(x[:4]).numpy(),
                               rtol=1e-6, atol=1e-6)


def test_weights_are_shared_and_non_image_models_rejected():
    inp = keras.Input((4, 4, 1))
    flat = keras.layers.Flatten()(inp)
    dense = keras.layers.Dense(3, activation="softmax")
    m = keras.Model(inp, dense(flat))
    lm = as_logits_model(m)
    x = np.random.default_rng(0).uniform(size=(2, 4, 4, 1)).astype(np.float32)
    w = [np.full_like(v, 0.3) for v in dense.get_weights()]
    dense.set_weights(w)  # e.g. a training step on the user's model
    np.testing.assert_allclose(lm(x).numpy(), x.reshape(2, -1) @ w[0] + w[1], rtol=1e-5)
    flat_in = keras.Input((4,))
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        as_logits_model(keras.Model(flat_in, keras.layers.Dense(3)(flat_in)))
    with pytest.raises(TypeError, match="keras.Model"):
        as_logits_model(lambda t: t)


def test_subclassed_models_need_an_input_shape():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.flat, self.dense = keras.layers.Flatten(), keras.layers.Dense(3)

        def call(self, x):
            return self.dense(self.flat(x))

    net = Net()
    with pytest.raises(ValueError, match="input_shape"):
        as_logits_model(net)
    lm = as_logits_model(net, input_shape=(4, 4, 1))
    assert lm.head == "logits" and lm.num_classes == 3 and lm.image_shape == (4, 4, 1)


def test_a_sequential_of_shared_layers_keeps_its_own_graph(mnist_model, mnist_batch):
    """A Sequential assembled from another model's layers: every feature is read from its own graph."""
    x, _ = mnist_batch
    seq = keras.Sequential([keras.Input((28, 28, 1))] + mnist_model.layers[1:])
    fm, names = feature_model(seq, ["conv2"])
    logits, conv2 = fm(x[:3])
    np.testing.assert_allclose(logits.numpy(), mnist_model(x[:3]).numpy(), rtol=1e-5, atol=1e-5)
    direct = keras.Model(mnist_model.inputs[0], mnist_model.get_layer("conv2").output)(x[:3])
    np.testing.assert_allclose(conv2.numpy(), direct.numpy(), rtol=1e-5, atol=1e-6)
    assert penultimate_conv_layer(seq) == "conv2"


def test_graph_walker_finds_producers_and_layer_tensors(mnist_model):
    out = mnist_model.outputs[0]
    layer, inputs = producer(out)
    assert layer is mnist_model.layers[-1] and len(inputs) == 1
    tensors = layer_tensors(out)
    assert {"conv1", "conv2", "fc1", "logits"} <= set(tensors)
    assert tensors["logits"] is out
    assert producer(mnist_model.inputs[0]) == (None, [])


def test_models_without_a_gradient_path_are_rejected():
    from tfperceptual.models import NotDifferentiableError

    inp = keras.Input((28, 28, 1))
    h = keras.layers.Lambda(lambda t: keras.ops.stop_gradient(t))(inp)
    out = keras.layers.Dense(10)(keras.layers.Flatten()(h))
    with pytest.raises(NotDifferentiableError, match="differentiable"):
        as_logits_model(keras.Model(inp, out))


def test_zoo_mobilenet_takes_any_image_size_and_keeps_the_227_results():
    """224 × 224 ImageNet images (the standard size) work; 227 × 227 ones give the logits of the fixed-size
    model the earlier results were measured with."""
    from tfperceptual.datasets import load_imagenet_val

    x, y = load_imagenet_val(with_boxes=False, limit=4)
    free = imagenet_mobilenet()
    fixed = imagenet_mobilenet(input_size=227)
    assert free.input_shape == (None, None, None, 3) and fixed.input_shape == (None, 227, 227, 3)
    np.testing.assert_allclose(free(x).numpy(), fixed(x).numpy(), rtol=1e-5, atol=1e-5)
    import tensorflow as tf

    x224 = tf.image.resize(x, (224, 224)).numpy()
    assert free(x224).shape == (4, 1000)
    assert np.mean(np.argmax(free(x224).numpy(), -1) == y) >= 0.5
