"""Metrics against scikit-image and known values."""

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from tfperceptual.evaluation import fooling_rate, global_ssim, perturbation_norms, psnr, ssim


@pytest.mark.parametrize("shape", [(4, 28, 28, 1), (3, 32, 32, 3), (2, 40, 23, 3)])
def test_ssim_matches_scikit_image(rng, shape):
    x = rng.uniform(size=shape).astype(np.float32)
    y = np.clip(x + rng.normal(0, 0.1, shape), 0, 1).astype(np.float32)
    ours = ssim(x, y)
    ref = [structural_similarity(x[i], y[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=1.0, channel_axis=-1) for i in range(shape[0])]
    np.testing.assert_allclose(ours, ref, atol=2e-6)


def test_ssim_on_real_mnist_pairs(mnist_sample):
    x, _ = mnist_sample
    a, b = x[:8], x[8:16]
    ref = [structural_similarity(a[i, ..., 0], b[i, ..., 0], gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=1.0) for i in range(8)]
    np.testing.assert_allclose(ssim(a, b), ref, atol=2e-6)
    np.testing.assert_allclose(ssim(a, a), 1.0, atol=1e-6)


def test_psnr_known_values():
    x = np.zeros((2, 4, 4, 1))
    y = x.copy()
    y[0] += 0.1  # MSE 0.01 → 20 dB
    np.testing.assert_allclose(psnr(x, y), [20.0, 100.0])


def test_global_ssim_is_s1_times_s2(rng):
    from solvers import luminance_similarity, structure_similarity

    x = rng.uniform(size=(3, 8, 8, 1))
    y = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1)
    xr, yr = x.reshape(3, -1), y.reshape(3, -1)
    np.testing.assert_allclose(global_ssim(x, y), luminance_similarity(xr, yr) * structure_similarity(xr, yr))


def test_fooling_rate_and_norms():
    out = fooling_rate([1, 2, 3, 4], [1, 0, 3, 0], true_labels=[1, 2, 0, 0])
    assert out["fooling_rate"] == 0.5
    assert out["n_correct"] == 2 and out["fooling_rate_correct"] == 0.5
    n = perturbation_norms(np.zeros((1, 2, 2, 1)), np.array([0.3, 0.4, 0, 0]).reshape(1, 2, 2, 1))
    assert n["l2"][0] == pytest.approx(0.5) and n["linf"][0] == pytest.approx(0.4)


def test_ssim_rejects_small_or_mismatched_images():
    with pytest.raises(ValueError, match="11"):
        ssim(np.zeros((1, 8, 8, 1)), np.zeros((1, 8, 8, 1)))
    with pytest.raises(ValueError, match="shape"):
        ssim(np.zeros((1, 28, 28, 1)), np.zeros((2, 28, 28, 1)))
