"""Saliency benchmarks on cases with known answers."""

import numpy as np
import pytest
from test_localization import _patch_model

from tfperceptual.evaluation import saliency_metrics as bm


def test_auc_trapezoid():
    assert bm.auc(np.full(11, 0.3)) == pytest.approx(0.3)
    assert bm.auc(np.linspace(0, 1, 51)) == pytest.approx(0.5)
    np.testing.assert_allclose(bm.auc([[1, 0], [0, 0]]), [0.5, 0.0])


def test_box_iou_and_largest_component():
    np.testing.assert_allclose(bm.box_iou(np.array([0, 0, 10, 10.]), [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]),
                               [1.0, 50 / 150, 0.0])
    mask = np.zeros((20, 20), bool)
    mask[2:4, 2:4] = True            # 4 pixels
    mask[10:15, 5:12] = True         # 35 pixels: the largest
    mask[0, 19] = True
    np.testing.assert_array_equal(bm.largest_component_box(mask), [5, 10, 12, 15])
    assert bm.largest_component_box(np.zeros((5, 5), bool)) is None
    diag = np.eye(4, dtype=bool)     # 4-connectivity: diagonal pixels are separate components
    np.testing.assert_array_equal(bm.largest_component_box(diag), [0, 0, 1, 1])


def test_a_map_that_is_exactly_the_box_localises_and_points():
    maps = np.zeros((3, 40, 50))
    boxes = [np.array([[10, 5, 30, 25.]]), np.array([[0, 0, 50, 20.]]), np.array([[30, 20, 45, 38.]])]
    for m, (b,) in zip(maps, boxes):
        x0, y0, x1, y1 = b.astype(int)
        m[y0:y1, x0:x1] = 1.0
    res = bm.weak_localisation(maps, boxes)
    for strat in ("value", "mean"):
        assert res[strat]["best_error"] == 0.0
        assert np.all(res[strat]["error"] == 0.0) or strat == "mean"
    assert res["best"]["error"] == 0.0
    assert bm.pointing_game(maps, boxes).all()
    # the same maps against boxes elsewhere: IoU 0, no hit
    far = [np.array([[40, 30, 50, 40.]]), np.array([[60, 60, 70, 70.]]), np.array([[0, 0, 5, 5.]])]
    res = bm.weak_localisation(maps, far)
    assert res["best"]["error"] == 1.0
    assert not bm.pointing_game(maps, far).any()


def test_weak_localisation_strategies_on_a_graded_map():
    # a bump whose core (s ≥ 0.5) is the box and whose tail (s < 0.5) spreads wider
    yy, xx = np.mgrid[0:64, 0:64]
    s = np.exp(-(((xx - 32) / 10.0) ** 2 + ((yy - 32) / 10.0) ** 2))
    core = s >= 0.5
    ys, xs = np.nonzero(core)
    box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1.]])
    ok = bm.weak_localisation_success(s[None], [box])
    alphas = bm.threshold_grids()["value"]
    assert ok["value"][0, np.argmin(np.abs(alphas - 0.5))]   # α = 0.5 gives the box exactly
    assert not ok["value"][0, np.argmin(np.abs(alphas - 0.05))]  # α = 0.05: far too wide
    frac = core.mean()
    j = np.argmin(np.abs(bm.threshold_grids()["percentile"] - frac))
    assert ok["percentile"][0, j]  # keeping the box's share of pixels gives the box


def test_weak_localisation_shared_masks_match_one_labelling_per_alpha():
    # The implementation labels each distinct mask once (masks {s ≥ t} with equal pixel counts are equal);
    # the reference labels every α of every strategy with scipy's find_objects box. Maps with plateaus
    # (quantised values, so many α share a mask), ties between components, and several boxes per image.
    from scipy import ndimage

    def reference_box(mask):
        lab, n = ndimage.label(mask)
        if n == 0:
            return None
        k = int(np.argmax(np.bincount(lab.ravel())[1:])) + 1
        sl = ndimage.find_objects(lab)[k - 1]
        return np.array([sl[1].start, sl[0].start, sl[1].stop, sl[0].stop], np.float64)

    rng = np.random.default_rng(3)
    raw = ndimage.gaussian_filter(rng.random((6, 48, 40)), (0, 3, 3))
    maps = np.concatenate([raw, np.round(raw * 8) / 8])   # smooth and quantised maps
    maps[-1] = 0.0
    maps[-1, 5:10, 5:10] = maps[-1, 20:25, 20:25] = 1.0  # two equal components: the first in raster order
    boxes = []
    for _ in maps:
        xy = rng.uniform(0, 30, (2, 2))
        boxes.append(np.concatenate([xy, xy + rng.uniform(5, 25, (2, 2))], 1))
    boxes[-1] = np.array([[5, 5, 10, 10.]])
    got = bm.weak_localisation_success(maps, boxes)
    norm = bm.normalise_maps(maps)
    for strat, alphas in bm.threshold_grids().items():
        want = np.zeros((len(maps), len(alphas)), bool)
        for i, (s, bx) in enumerate(zip(norm, boxes)):
            for j, mask in enumerate(bm._masks(s, strat, alphas)):
                box = reference_box(mask)
                np.testing.assert_array_equal(bm.largest_component_box(mask) if box is not None else None, box)
                want[i, j] = box is not None and bool(np.any(bm.box_iou(box, bx) >= 0.5))
        np.testing.assert_array_equal(got[strat], want)
        assert want.any() and not want.all()  # the comparison sees both outcomes
    assert got["value"][-1].all()  # the tie goes to the first component, which is the box


def test_pointing_game_tolerance():
    boxes = [np.array([[20, 20, 30, 30.]])] * 3
    maps = np.zeros((3, 60, 60))
    maps[0, 25, 25] = 1   # inside
    maps[1, 25, 42] = 1   # 12.5 px right of the box: within 15
    maps[2, 25, 50] = 1   # 20.5 px: a miss
    np.testing.assert_array_equal(bm.pointing_game(maps, boxes), [True, True, False])
    np.testing.assert_array_equal(bm.pointing_game(maps, boxes, tolerance=0), [True, False, False])


def _patch_images(rng, n=4):
    x = rng.uniform(0, 0.2, (n, 32, 32, 1)).astype(np.float32)
    corners = [(4, 6), (20, 10), (12, 22), (22, 22)][:n]
    for i, (r, c) in enumerate(corners):
        x[i, r:r + 6, c:c + 6] = 1.0
    return x, corners


def test_deleting_the_decisive_patch_first_gives_a_lower_deletion_auc(rng):
    model = _patch_model(False)
    x, corners = _patch_images(rng)
    y = np.zeros(len(x), int)
    good = np.zeros(x.shape[:3])
    for i, (r, c) in enumerate(corners):
        good[i, r:r + 6, c:c + 6] = 1.0 + rng.random((6, 6))
    rand = rng.random(x.shape[:3])
    # this toy detector fires on any bright 3×3 sum > 4, mid-grey included: delete to black instead
    g = bm.deletion_insertion(model, x, y, good, n_steps=32, substrate=0.0)
    r = bm.deletion_insertion(model, x, y, rand, n_steps=32, substrate=0.0)
    assert np.all(g["deletion"] < r["deletion"])
    assert np.all(g["insertion"] > r["insertion"])
    # curve ends: deletion starts at p(x) and ends at p(grey); insertion starts at p(blurred), ends at p(x)
    p = lambda im: model(im).numpy()[:, 0]  # noqa: E731  (the model ends in a softmax)
    np.testing.assert_allclose(g["deletion_curve"][:, 0], p(x), atol=1e-5)
    np.testing.assert_allclose(g["deletion_curve"][:, -1], p(np.zeros_like(x)), atol=1e-5)
    np.testing.assert_allclose(g["insertion_curve"][:, -1], p(x), atol=1e-5)


def test_deletion_insertion_match_a_plain_loop(rng):
    """An independent pixel-by-pixel NumPy implementation of the curves (scipy blur)."""
    import scipy.ndimage

    model = _patch_model(True)
    x, _ = _patch_images(rng, 2)
    s = rng.random(x.shape[:3])
    s[0, :2, :2] = s[0, 0, 0]  # ties: raster order
    res = bm.deletion_insertion(model, x, [0, 1], s, n_steps=8)
    hw = 32 * 32
    blurred = np.stack([scipy.ndimage.gaussian_filter(im[..., 0].astype(np.float64), 5.0, mode="reflect")
                        for im in x])[..., None]
    for i, cls in enumerate([0, 1]):
        order = sorted(range(hw), key=lambda k: (-s[i].ravel()[k], k))
        for j, count in enumerate(np.linspace(0, hw, 9).astype(int)):
            d, ins = x[i].copy().reshape(-1), blurred[i].copy().reshape(-1)
            idx = order[:count]
            d[idx] = 0.5
            ins[idx] = x[i].reshape(-1)[idx]
            pd = model(d.reshape(1, 32, 32, 1).astype(np.float32)).numpy()[0, cls]  # softmax output
            pi = model(ins.reshape(1, 32, 32, 1).astype(np.float32)).numpy()[0, cls]
            assert res["deletion_curve"][i, j] == pytest.approx(pd, abs=1e-5)
            assert res["insertion_curve"][i, j] == pytest.approx(pi, abs=1e-4)


def test_bad_benchmark_inputs(rng):
    model = _patch_model(False)
    x, _ = _patch_images(rng, 2)
    with pytest.raises(ValueError, match="shape"):
        bm.deletion_insertion(model, x, [0, 0], np.zeros((2, 16, 16)))
    with pytest.raises(ValueError, match="NaN"):
        bm.pointing_game(np.full((1, 4, 4), np.nan), [np.zeros((1, 4))])
    with pytest.raises(ValueError, match="one box array per map"):
        bm.weak_localisation(np.zeros((2, 4, 4)), [np.zeros((1, 4))])
    with pytest.raises(ValueError, match="insertion_blur"):
        bm.deletion_insertion(model, x, [0, 0], np.zeros((2, 32, 32)), insertion_blur="box")


def test_rise_insertion_substrate_is_the_rise_code_kernel(rng):
    """RISE's evaluation.py: kern = gaussian_filter(11 × 11 delta, 5); conv2d(normalised image, kern,
    padding=5) — recomputed here with scipy's 2-D filter and convolution, zero padding after subtracting
    the ImageNet mean (what zero padding of the normalised tensor is in pixel space)."""
    from scipy import ndimage

    x = rng.random((2, 30, 26, 3)).astype(np.float32)
    delta = np.zeros((11, 11))
    delta[5, 5] = 1.0
    kern = ndimage.gaussian_filter(delta, 5)
    mean = np.array(bm.IMAGENET_MEAN)
    want = np.stack([np.stack([ndimage.convolve(im[..., c] - mean[c], kern, mode="constant", cval=0.0) + mean[c]
                               for c in range(3)], -1) for im in x])
    got = bm._rise_blur_images(x, 5.0).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert kern.sum() == pytest.approx(1.0) and kern.max() / kern.min() < 2.5  # an 11 × 11, nearly flat window
    # milder than the full σ = 5 Gaussian: on an image with structure at the scale of a few pixels, the
    # RISE substrate stays closer to it (away from the padded border)
    smooth = ndimage.gaussian_filter(rng.random((1, 60, 60, 3)), (0, 4, 4, 0)).astype(np.float32)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    err = lambda b: np.abs(b[:, 10:-10, 10:-10] - smooth[:, 10:-10, 10:-10]).mean()  # noqa: E731
    assert err(bm._rise_blur_images(smooth, 5.0).numpy()) < 0.8 * err(bm._blur_images(smooth, 5.0).numpy())


def test_randomising_all_layers_changes_the_maps_and_weights_come_back(mnist_model, mnist_batch):
    from tfperceptual.explain import saliency_fn

    x, y = mnist_batch
    before = [w.copy() for w in mnist_model.get_weights()]
    res = bm.cascading_randomization(mnist_model, lambda m: saliency_fn(m, "saliency"), x[:6], y[:6])
    assert res["layers"] == ["logits", "fc1", "conv2", "conv1"]  # top-down
    assert res["spearman"].shape == (4, 6) and res["ssim"].shape == (4, 6)
    # fully randomised: the maps no longer follow the trained model's (measured: Spearman 0.81 after the
    # top layer → 0.63 after all; SSIM 0.47 → 0.24; gradients of MNIST nets keep some input structure)
    assert np.nanmean(res["spearman"][-1]) < 0.75 and np.mean(res["ssim"][-1]) < 0.4
    assert np.nanmean(res["spearman"][-1]) < np.nanmean(res["spearman"][0])
    for a, b in zip(before, mnist_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # control: an explainer blind to the weights gives Spearman 1 and SSIM 1 at every step
    fixed = np.random.default_rng(0).random((6, 28, 28))
    blind = bm.cascading_randomization(mnist_model, lambda m: (lambda im, lab: fixed), x[:6], y[:6],
                                       checkpoints=["fc1", "conv1"])
    assert blind["layers"] == ["fc1", "conv1"]
    np.testing.assert_allclose(blind["spearman"], 1.0)
    np.testing.assert_allclose(blind["ssim"], 1.0)


def test_reinitialise_redraws_every_weight_of_conv_depthwise_separable_and_dense_layers():
    # Keras keeps a DepthwiseConv2D's "kernel" initializer as `depthwise_initializer`: a lookup by the
    # weight's name alone would leave the depthwise kernels of MobileNet trained through the whole cascade
    import keras

    inp = keras.Input((12, 12, 3))
    h = keras.layers.Conv2D(4, 3, name="conv")(inp)
    h = keras.layers.DepthwiseConv2D(3, name="dw")(h)
    h = keras.layers.SeparableConv2D(5, 3, name="sep")(h)
    out = keras.layers.Dense(3, name="logits")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inp, out)
    for layer in model.layers:
        for v in layer.weights:  # non-zero start, so that a zero bias initializer also shows a change
            v.assign(np.full(v.shape, 0.123, np.float32))
    assert [layer.name for layer in bm.kernel_layers(model)] == ["conv", "dw", "sep", "logits"]
    for k, layer in enumerate(bm.kernel_layers(model)):
        bm._reinitialise(layer, k)
        for v in layer.weights:
            assert not np.allclose(v.numpy(), 0.123), f"{layer.name}/{v.name} kept its weights"
    # the cascade sees every layer's weights change, and puts them back
    for v in model.weights:
        v.assign(np.full(v.shape, 0.123, np.float32))
    seen = []
    fixed = np.zeros((2, 12, 12))

    def make_explainer(m):
        seen.append({v.path: v.numpy().copy() for v in m.weights})
        return lambda im, lab: fixed + np.random.default_rng(len(seen)).random(fixed.shape)

    bm.cascading_randomization(model, make_explainer, np.zeros((2, 12, 12, 3), np.float32), np.array([0, 1]))
    first, last = seen[0], seen[-1]
    assert all(not np.allclose(first[p], last[p]) for p in first)
    assert all(np.allclose(v.numpy(), first[v.path]) for v in model.weights)


def test_reinitialise_refuses_a_weight_without_initializer():
    import keras

    class Odd(keras.layers.Layer):
        def build(self, shape):
            self.kernel = self.add_weight(name="kernel", shape=(2, 2), initializer="ones")

        def call(self, x):
            return x

    layer = Odd()
    layer.build((None, 2))
    with pytest.raises(ValueError, match="cannot re-initialise weight 'kernel'"):
        bm._reinitialise(layer, 0)


def test_cascade_restores_weights_after_an_error_and_measures_input_dependence(mnist_model, mnist_batch):
    x, y = mnist_batch
    before = [w.copy() for w in mnist_model.get_weights()]
    calls = []

    def failing(m):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("explainer failed")
        return lambda im, lab: np.random.default_rng(len(calls)).random(im.shape[:3])

    with pytest.raises(RuntimeError, match="explainer failed"):
        bm.cascading_randomization(mnist_model, failing, x[:4], y[:4])
    for a, b in zip(before, mnist_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    dep = bm.cascade_input_dependence(mnist_model, x[:8])
    assert dep["layers"] == ["logits", "fc1", "conv2", "conv1"]
    assert np.all(np.isfinite(dep["relative_spread"])) and np.all(dep["relative_spread"] > 0)
    assert not np.allclose(dep["relative_spread"], 1.0)  # randomising changes how the logits vary
    for a, b in zip(before, mnist_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # one image has no spread across images
    with pytest.raises(ValueError, match="at least 2 images"):
        bm.cascade_input_dependence(mnist_model, x[:1])
