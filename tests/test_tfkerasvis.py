"""Baseline saliency maps (tf-keras-vis) behind one interface."""

import numpy as np
import pytest
from test_localization import _patch_model

from tfperceptual.explain import METHODS, saliency_fn, saliency_maps


@pytest.mark.parametrize("sequential", [True, False])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_locates_the_decisive_patch(method, sequential, rng):
    model = _patch_model(sequential)
    x = rng.uniform(0, 0.2, (3, 32, 32, 1)).astype(np.float32)
    corners = [(4, 6), (20, 10), (12, 22)]
    for i, (r, c) in enumerate(corners):
        x[i, r:r + 6, c:c + 6] = 1.0
    m = saliency_maps(model, x, [0, 0, 0], method)
    assert m.shape == (3, 32, 32) and m.dtype == np.float32
    assert m.min() >= 0 and m.max() <= 1 and np.allclose(m.max((1, 2)), 1.0, atol=1e-3)
    for i, (r, c) in enumerate(corners):
        # the saliency mass lies on and around the patch (8×8 around it: 6 % of the image)
        inside = m[i, max(r - 1, 0):r + 7, max(c - 1, 0):c + 7].sum() / m[i].sum()
        assert inside > 0.5, (method, i, inside)


def test_unknown_method_and_bad_labels(rng):
    model = _patch_model(False)
    with pytest.raises(ValueError, match="unknown saliency method"):
        saliency_fn(model, "lime")
    f = saliency_fn(model, "saliency")
    with pytest.raises(ValueError):
        f(rng.random((2, 32, 32, 1)).astype(np.float32), [0, 2])


def test_faster_scorecam_map_does_not_depend_on_the_batch(rng):
    """Faster-ScoreCAM (max_N) selects each image's own top channels: an image explained alone and in a
    batch gets the same map (tf-keras-vis alone would take the union of the batch's channels)."""
    import keras

    inp = keras.Input((32, 32, 1))
    h = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="feat")(inp)
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inp, out)
    # channel 0 answers bright patches, channel 1 dark ones
    model.get_layer("feat").set_weights([np.stack([np.ones((3, 3, 1)), -np.ones((3, 3, 1))], -1).astype(np.float32),
                                         np.array([-4.0, 5.0], np.float32)])
    x = np.full((2, 32, 32, 1), 0.1, np.float32)
    x[0, 4:10, 6:12] = 1.0                   # bright patch on a dark image: channel 0 varies most
    x[1] = 0.9
    x[1, 20:26, 10:16] = 0.0                 # dark patch on a bright image: channel 1 varies most
    fn = saliency_fn(model, "scorecam", max_N=1, layer="feat")
    batch = fn(x, [0, 1])
    alone = np.concatenate([fn(x[i:i + 1], [i]) for i in range(2)])
    assert np.allclose(batch, alone, atol=1e-6)
