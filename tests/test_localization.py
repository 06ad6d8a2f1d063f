"""SSIM maps against scikit-image, and the localisation metrics on hand-made maps with known counts."""

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from tfperceptual.evaluation import confusion_counts, evaluate
from tfperceptual.evaluation import noise_map, ssim_map


def _skimage_map(a, b):
    mssim, full = structural_similarity(a.astype(np.float64), b.astype(np.float64), full=True,
                                        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        data_range=1.0, channel_axis=-1)
    return mssim, full


@pytest.mark.parametrize("data", ["mnist", "cifar10"])
def test_ssim_map_equals_scikit_image(data, rng):
    from tfperceptual.datasets import load_cifar10, load_sample

    x = load_sample("mnist")[0][:4] if data == "mnist" else load_cifar10("test")[0][:4]
    noise = rng.normal(0, 0.05, x.shape) * (rng.uniform(size=x.shape) > 0.5)
    adv = np.clip(x + noise, 0, 1).astype(np.float32)
    maps = ssim_map(x, adv)
    assert maps.shape == x.shape and maps.dtype == np.float32
    for i in range(len(x)):
        mssim, full = _skimage_map(x[i], adv[i])
        np.testing.assert_allclose(maps[i], full, atol=2e-6)
        # skimage's SSIM is the map's mean with the 5-pixel borders cropped
        np.testing.assert_allclose(maps[i][5:-5, 5:-5].mean(), mssim, atol=1e-6)


def test_ssim_map_is_one_where_nothing_changed(rng):
    x = rng.uniform(0, 1, (2, 20, 20, 3)).astype(np.float32)
    adv = x.copy()
    adv[:, 15:, 15:, :] = 1.0 - adv[:, 15:, 15:, :]
    maps = ssim_map(x, adv)
    np.testing.assert_allclose(maps[:, :8, :8], 1.0, atol=1e-6)  # far from the change (window radius 5)
    assert maps[:, 16:, 16:].max() < 0.9


def test_noise_map_combines_channels():
    s = np.ones((1, 2, 2, 3), np.float32)
    s[0, 0, 0] = [0.9, 0.5, 1.0]
    np.testing.assert_allclose(noise_map(s, "max")[0, 0, 0], 0.5)
    np.testing.assert_allclose(noise_map(s, "mean")[0, 0, 0], 0.2, atol=1e-7)
    assert noise_map(s).shape == (1, 2, 2)
    with pytest.raises(ValueError, match="combine"):
        noise_map(s, "sum")


def test_ssim_map_bad_inputs():
    x = np.zeros((1, 16, 16, 1), np.float32)
    with pytest.raises(ValueError, match="same shape"):
        ssim_map(x, np.zeros((1, 16, 16, 3), np.float32))
    with pytest.raises(ValueError, match="outside"):
        ssim_map(x, x + 2)
    with pytest.raises(ValueError, match="at least 11"):
        ssim_map(np.zeros((1, 8, 8, 1), np.float32), np.zeros((1, 8, 8, 1), np.float32))


def test_localization_metrics_on_hand_made_maps():
    # 4×4 images; the CAM region is the left half (8 pixels)
    cam = np.zeros((2, 4, 4), np.float32)
    cam[:, :, :2] = 1.0
    noise = np.zeros((2, 4, 4), np.float32)
    # image 0: 3 perturbed pixels in the region, 1 outside → TP 3, FP 1, FN 5, TN 7
    noise[0, 0, 0] = noise[0, 1, 0] = noise[0, 2, 1] = 0.5
    noise[0, 3, 3] = 0.5
    # image 1: 2 perturbed pixels outside only, one of them weakly → TP 0, FP 2 at t = 0.1, FP 1 at t = 0.3
    noise[1, 0, 3] = 0.5
    noise[1, 1, 3] = 0.2
    tp, fp, fn, tn = confusion_counts(noise > 0.1, cam > 0.75)
    assert tp.tolist() == [3, 0] and fp.tolist() == [1, 2] and fn.tolist() == [5, 8] and tn.tolist() == [7, 6]
    r = evaluate(noise, cam, noise_thresholds=[0.1, 0.3, 0.6])
    np.testing.assert_allclose(r["precision"][:2], [np.mean([3 / 4, 0 / 2]), np.mean([3 / 4, 0 / 1])])
    np.testing.assert_allclose(r["pixels_perturbed"][:2], [np.mean([4 / 16, 2 / 16]), np.mean([4 / 16, 1 / 16])])
    np.testing.assert_allclose(r["recall"][0], np.mean([3 / 8, 0 / 8]))
    np.testing.assert_allclose(r["iou"][0], np.mean([3 / 9, 0 / 10]))
    np.testing.assert_allclose(r["iou_outside"][0], np.mean([1 / 11, 2 / 8]))
    # at t = 0.6 nothing is perturbed: precision undefined, both images counted as empty
    assert np.isnan(r["precision"][2]) and r["n_empty"][2] == 2 and r["pixels_perturbed"][2] == 0
    assert r["n_empty"][0] == 0 and r["n_empty_cam"] == 0


def test_empty_images_are_left_out_of_precision():
    cam = np.zeros((2, 3, 3), np.float32)
    cam[:, 0, 0] = 1.0
    noise = np.zeros((2, 3, 3), np.float32)
    noise[0, 0, 0] = 1.0  # image 0: one perturbed pixel, in the region; image 1: none
    r = evaluate(noise, cam, noise_thresholds=[0.5])
    assert r["precision"][0] == 1.0 and r["n_empty"][0] == 1  # not (1 + 0) / 2


def test_localization_bad_inputs():
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        evaluate(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="same shape"):
        evaluate(np.zeros((2, 3, 3)), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        evaluate(np.full((1, 2, 2), np.nan), np.zeros((1, 2, 2)))


def _patch_model(sequential):
    """Class 0 is decided by a bright 6×6 patch: conv (ones kernel, ReLU) → GAP → dense (+1, −1)."""
    import keras

    layers = [keras.layers.Conv2D(1, 3, padding="same", activation="relu", use_bias=True, name="feat"),
              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax", name="head")]
    if sequential:
        model = keras.Sequential([keras.Input((32, 32, 1))] + layers)
    else:
        inp = keras.Input((32, 32, 1))
        h = inp
        for layer in layers:
            h = layer(h)
        model = keras.Model(inp, h)
    model.get_layer("feat").set_weights([np.ones((3, 3, 1, 1), np.float32), np.array([-4.0], np.float32)])
    model.get_layer("head").set_weights([np.array([[1.0, -1.0]], np.float32), np.zeros(2, np.float32)])
    return model


@pytest.mark.parametrize("sequential", [True, False])
def test_gradcam_plus_plus_peaks_in_the_decisive_patch(sequential, rng):
    from tfperceptual.explain import gradcam_plus_plus
    from tfperceptual.models import penultimate_conv_layer

    model = _patch_model(sequential)
    x = rng.uniform(0, 0.2, (3, 32, 32, 1)).astype(np.float32)
    corners = [(4, 6), (20, 10), (12, 22)]
    for i, (r, c) in enumerate(corners):
        x[i, r:r + 6, c:c + 6] = 1.0
    assert np.all(np.argmax(model(x).numpy(), -1) == 0)
    assert penultimate_conv_layer(model) == "feat"
    cam = gradcam_plus_plus(model, x, [0, 0, 0])
    assert cam.shape == (3, 32, 32) and cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() <= 1.0 and np.allclose(cam.max((1, 2)), 1.0, atol=1e-3)
    for i, (r, c) in enumerate(corners):
        pr, pc = np.unravel_index(np.argmax(cam[i]), cam[i].shape)
        assert r - 1 <= pr <= r + 6 and c - 1 <= pc <= c + 6, (i, pr, pc)
        # the region CAM > 0.75 lies around the patch
        ys, xs = np.nonzero(cam[i] > 0.75)
        assert ys.min() >= r - 2 and ys.max() <= r + 7 and xs.min() >= c - 2 and xs.max() <= c + 7


def test_gradcam_plus_plus_on_the_shipped_cifar_model():
    from tfperceptual.datasets import load_cifar10
    from tfperceptual.explain import gradcam_plus_plus
    from tfperceptual.models import penultimate_conv_layer
    from tfperceptual.models import cifar10_cnn

    model = cifar10_cnn()
    x = load_cifar10("test")[0][:4]
    # conv → batch norm → ReLU: the ReLU's maps, not the raw convolution (whose CAM vanishes)
    assert penultimate_conv_layer(model) == "relu3_2"
    cam = gradcam_plus_plus(model, x, np.argmax(model(x).numpy(), -1))
    assert cam.shape == (4, 32, 32) and np.all(cam.max((1, 2)) > 0.99) and cam.min() >= 0
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        gradcam_plus_plus(model, x, [0, 1, 2, 11])
