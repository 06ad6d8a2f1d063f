"""Baseline saliency maps (tf-keras-vis) behind one interface."""

import numpy as np
import pytest
from test_maps_localization import _patch_model

from tfperceptual.saliency import METHODS, saliency_fn, saliency_maps


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
