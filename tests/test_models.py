"""Output-kind detection gives the same margins as the logits model."""

import keras
import numpy as np
import pytest

from tfperceptual.losses import margin
from tfperceptual.model_adapter import as_logits_model


def _variants(model):
    body = model.layers[1:-1]
    last = model.layers[-1]
    inp = keras.Input((28, 28, 1))
    h = inp
    for l in body:
        h = l(h)
    dense_softmax = keras.layers.Dense(10, activation="softmax")
    m1 = keras.Model(inp, dense_softmax(h))
    dense_softmax.set_weights(last.get_weights())
    m2 = keras.Model(inp, keras.layers.Softmax()(last(h)))
    m3 = keras.Model(inp, keras.layers.Lambda(lambda z: keras.ops.softmax(z))(last(h)))
    m4 = keras.Sequential([keras.Input((28, 28, 1))] + body + [last])
    return {"softmax_activation": m1, "softmax_layer": m2, "probabilities": m3, "logits": m4}


def test_detected_kinds_and_equal_margins(mnist_model, mnist_batch):
    x, y = mnist_batch
    ref = margin(mnist_model(x), y).numpy()
    for kind, m in _variants(mnist_model).items():
        with pytest.warns(UserWarning) if kind == "probabilities" else _nullcontext():
            lm = as_logits_model(m)
        assert lm.model_kind == kind
        np.testing.assert_allclose(margin(lm(x), y).numpy(), ref, rtol=1e-4, atol=1e-3)


def test_softmax_model_shares_weights_and_rejects_non_image_models():
    inp = keras.Input((4, 4, 1))
    flat = keras.layers.Flatten()(inp)
    dense = keras.layers.Dense(3, activation="softmax")
    m = keras.Model(inp, dense(flat))
    lm = as_logits_model(m)
    x = np.random.default_rng(0).uniform(size=(2, 4, 4, 1)).astype(np.float32)
    w = [np.full_like(v, 0.3) for v in dense.get_weights()]
    dense.set_weights(w)  # e.g. a training step on the user's model
    np.testing.assert_allclose(lm(x).numpy(), x.reshape(2, -1) @ w[0] + w[1], rtol=1e-5)
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        flat_in = keras.Input((4,))
        as_logits_model(keras.Model(flat_in, keras.layers.Dense(3)(flat_in)))


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
