"""Perceptual-ball explainer (Elliott et al., CVPR 2021): objective, layer selection, saliency, errors."""

import keras
import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from tfperceptual.explain import PerceptualBall, perturbation_saliency
from tfperceptual.image_ops import blur_saliency
from tfperceptual.models import activation_layers, feature_model


def test_activation_layers_list_relu_outputs_in_order(mnist_model):
    assert activation_layers(mnist_model) == ["conv1", "conv2", "fc1"]  # Conv2D/Dense with relu
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, name="c1")(inp)
    h = keras.layers.ReLU(max_value=6.0, name="r6")(h)          # ReLU6
    h = keras.layers.Conv2D(4, 3, name="c2")(h)
    h = keras.layers.Activation("relu", name="act")(h)
    h = keras.layers.Conv2D(4, 3, activation="tanh", name="c3")(h)  # not a ReLU
    out = keras.layers.Dense(3)(keras.layers.Flatten()(h))
    assert activation_layers(keras.Model(inp, out)) == ["r6", "act"]


def test_layers_by_name_and_by_activation_index_pick_the_same_tensors(mnist_model, mnist_batch):
    x, _ = mnist_batch
    by_name, names = feature_model(mnist_model, ["conv1", "fc1"])
    by_index, names_i = feature_model(mnist_model, [0, -1])
    assert names == names_i == ["conv1", "fc1"]
    for a, b in zip(by_name(x[:4]), by_index(x[:4])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # and they are the activations of those layers
    direct = keras.Model(mnist_model.inputs[0], mnist_model.get_layer("conv1").output)(x[:4])
    np.testing.assert_allclose(np.asarray(by_name(x[:4])[1]), np.asarray(direct), rtol=1e-6)


def test_sequential_and_functional_models_give_the_same_explanation(mnist_batch):
    x, y = mnist_batch
    layers = [keras.layers.Conv2D(4, 3, activation="relu", name="c"), keras.layers.Flatten(),
              keras.layers.Dense(10, activation="softmax", name="out")]
    seq = keras.Sequential([keras.Input((28, 28, 1))] + layers)
    inp = keras.Input((28, 28, 1))
    h = inp
    for layer in layers:
        h = layer(h)
    func = keras.Model(inp, h)
    kw = dict(layers=[0], lambda_perceptual=10.0, steps=5)
    a = PerceptualBall(seq, **kw)(x[:3], y[:3])
    b = PerceptualBall(func, **kw)(x[:3], y[:3])
    np.testing.assert_allclose(a.perturbed, b.perturbed, atol=1e-5)


def test_the_loss_decreases_and_the_margin_reaches_the_target(mnist_model, mnist_batch):
    x, y = mnist_batch
    pb = PerceptualBall(mnist_model, layers=["conv1", "conv2"], lambda_perceptual=100.0, steps=100)
    e = pb(x[:8], y[:8])
    assert np.all(e.initial_margin > 0)  # correctly classified, confidently
    assert np.all(e.loss < (e.initial_margin - pb.target) ** 2)  # Eq. 5 is (M(x) − T)² at x′ = x
    np.testing.assert_allclose(e.margin, pb.target, atol=0.1)
    # reported margin = Eq. 1 recomputed from the logits at x′
    logits = mnist_model(e.perturbed).numpy()
    own = logits[np.arange(8), y[:8]]
    logits[np.arange(8), y[:8]] = -np.inf
    np.testing.assert_allclose(e.margin, own - logits.max(1), atol=1e-4)


def test_evaluation_budget_stops_lbfgs_and_continues_it_exactly(mnist_model, mnist_batch):
    """``max_evaluations`` runs L-BFGS one iteration per call from the previous state: with a budget that
    never binds it is the single 30-iteration run (same curvature pairs, same iterates); a binding budget
    stops it near the budget, after the margin has moved but before the full run's evaluations."""
    x, y = mnist_batch
    kw = dict(layers=["conv1"], lambda_perceptual=100.0, steps=30, batch_size=4)
    full = PerceptualBall(mnist_model, **kw)(x[:4], y[:4])
    loose = PerceptualBall(mnist_model, max_evaluations=10_000, **kw)(x[:4], y[:4])
    assert loose.evaluations == full.evaluations
    np.testing.assert_allclose(loose.perturbed, full.perturbed, atol=1e-5)
    tight = PerceptualBall(mnist_model, max_evaluations=12, **kw)(x[:4], y[:4])
    assert 12 <= tight.evaluations < full.evaluations
    assert tight.evaluations <= 12 + 30  # at most one line search past the budget
    assert np.all(tight.loss < (tight.initial_margin - kw.get("target", -2.0)) ** 2)


def test_loss_reported_is_eq5(mnist_model, mnist_batch):
    x, y = mnist_batch
    pb = PerceptualBall(mnist_model, layers=["conv2"], lambda_perceptual=50.0, lambda_pixel=3.0, steps=10)
    e = pb(x[:4], y[:4])
    fm = keras.Model(mnist_model.inputs[0], mnist_model.get_layer("conv2").output)
    perc = np.mean((fm(e.perturbed).numpy() - fm(x[:4]).numpy()) ** 2, axis=(1, 2, 3))
    pix = np.mean((e.perturbed - x[:4]) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(e.loss, (e.margin + 2.0) ** 2 + 50.0 * perc + 3.0 * pix, rtol=1e-4)


def test_multilabel_drives_the_logit_itself(mnist_model, mnist_batch):
    x, y = mnist_batch
    e = PerceptualBall(mnist_model, lambda_perceptual=0.0, multilabel=True, target=-1.0, steps=50)(x[:4], y[:4])
    logits = mnist_model(e.perturbed).numpy()[np.arange(4), y[:4]]
    np.testing.assert_allclose(e.margin, logits, atol=1e-4)
    np.testing.assert_allclose(e.margin, -1.0, atol=0.1)


def test_adam_option_also_decreases_the_loss(mnist_model, mnist_batch):
    x, y = mnist_batch
    e = PerceptualBall(mnist_model, layers=[0, 1], lambda_perceptual=100.0, optimizer="adam",
                       learning_rate=0.01, steps=100)(x[:4], y[:4])
    assert np.all(e.loss < (e.initial_margin + 2.0) ** 2)
    assert not e.converged.any()


def test_fixed_step_lbfgs_reaches_the_margin_target_with_one_evaluation_per_iteration(mnist_model, mnist_batch):
    """optimizer="lbfgs_fixed" (the authors' torch L-BFGS without line search, with the halving safeguard): every
    image reaches the margin target T = −2 within 0.1 in 100 iterations and PyTorch's budget of 125 evaluations
    (on this batch unit steps alone leave one image at a margin of 1,310), and the reported margin is the one the
    model gives its perturbed image."""
    x, y = mnist_batch
    e = PerceptualBall(mnist_model, layers=[0, 1], lambda_perceptual=100.0, optimizer="lbfgs_fixed",
                       steps=100, batch_size=4)(x[:8], y[:8])
    np.testing.assert_allclose(e.margin, -2.0, atol=0.1)
    assert 2 * 100 <= e.evaluations <= 2 * 125  # two batches of 4: ≥ 1 evaluation per iteration, ≤ the budget
    logits = mnist_model(e.perturbed).numpy()
    own = logits[np.arange(8), y[:8]]
    other = np.max(np.where(np.eye(10, dtype=bool)[y[:8]], -np.inf, logits), 1)
    np.testing.assert_allclose(e.margin, own - other, atol=1e-3)


def test_large_pixel_weight_gives_a_small_perturbation(mnist_model, mnist_batch):
    x, y = mnist_batch
    small = PerceptualBall(mnist_model, lambda_perceptual=0.0, lambda_pixel=100.0, steps=50)(x[:4], y[:4])
    big = PerceptualBall(mnist_model, lambda_perceptual=0.0, lambda_pixel=0.01, steps=50)(x[:4], y[:4])
    rms = lambda e: np.sqrt(np.mean((e.perturbed - x[:4]) ** 2))  # noqa: E731
    assert rms(small) < rms(big)


def test_saliency_is_rms_over_channels_then_gaussian_blur(rng):
    x = rng.random((2, 20, 24, 3)).astype(np.float32)
    xp = x + rng.normal(0, 0.1, x.shape).astype(np.float32)
    raw = np.sqrt(np.mean((xp - x) ** 2, -1))
    np.testing.assert_allclose(perturbation_saliency(x, xp, 0.0).numpy(), raw, rtol=1e-5)
    for sigma in (1.0, 2.0, 3.5):
        want = np.stack([scipy.ndimage.gaussian_filter(r.astype(np.float64), sigma, mode="reflect") for r in raw])
        np.testing.assert_allclose(blur_saliency(raw, sigma).numpy(), want, atol=1e-5)
    with pytest.raises(ValueError, match="too wide"):
        blur_saliency(raw, 6.0)


def test_guided_saliency_multiplies_by_the_normalised_gradient(mnist_model, mnist_batch):
    x, y = mnist_batch
    pb = PerceptualBall(mnist_model, layers=[0], lambda_perceptual=10.0, steps=5)
    plain = pb(x[:2], y[:2])
    guided = pb(x[:2], y[:2], guided=True)
    with tf.GradientTape() as tape:
        xt = tf.constant(x[:2])
        tape.watch(xt)
        score = tf.reduce_sum(tf.gather(mnist_model(xt), y[:2], batch_dims=1))
    g = np.sqrt(np.mean(tape.gradient(score, xt).numpy() ** 2, -1))
    g /= g.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(pb.input_gradient_map(x[:2], y[:2]), g, rtol=1e-4, atol=1e-7)
    # Sec. 4.2: the perturbation map normalised to [0, 1] (then blurred, σ = 0 here) times the guide
    s = plain.saliency.astype(np.float64)
    lo, hi = s.min((1, 2), keepdims=True), s.max((1, 2), keepdims=True)
    np.testing.assert_allclose(guided.saliency, (s - lo) / (hi - lo) * g, rtol=1e-4, atol=1e-6)
    # the benchmark runner's guided map is the same function of the same maps
    from tfperceptual.protocols.saliency_benchmark import _final_map

    raw = {"perceptual_ball": {"map": plain.saliency, "grad": pb.input_gradient_map(x[:2], y[:2])}}
    for sigma in (0.0, 2.0):
        np.testing.assert_allclose(_final_map(raw, "perceptual_ball_guided", sigma),
                                   pb(x[:2], y[:2], guided=True, sigma=sigma).saliency, rtol=1e-5, atol=1e-6)


def test_default_labels_are_the_predictions(mnist_model, mnist_batch):
    x, y = mnist_batch
    e = PerceptualBall(mnist_model, lambda_perceptual=0.0, steps=2)(x[:4])
    np.testing.assert_array_equal(e.labels, y[:4])


@pytest.mark.parametrize("kwargs,match", [
    (dict(lambda_perceptual=-1.0, layers=[0]), "lambda_perceptual"),
    (dict(lambda_pixel=float("nan")), "lambda_pixel"),
    (dict(lambda_perceptual=1.0), "needs layers"),
    (dict(layers=[7]), "out of range"),
    (dict(layers=["nope"]), "not on the path"),
    (dict(steps=0, lambda_perceptual=0.0), "steps"),
    (dict(optimizer="sgd", lambda_perceptual=0.0), "optimizer"),
    (dict(target=float("inf"), lambda_perceptual=0.0), "target"),
    (dict(max_evaluations=0, lambda_perceptual=0.0), "max_evaluations"),
])
def test_bad_arguments_raise(mnist_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        PerceptualBall(mnist_model, **kwargs)


def test_bad_images_and_labels_raise(mnist_model, mnist_batch):
    x, y = mnist_batch
    pb = PerceptualBall(mnist_model, lambda_perceptual=0.0, steps=1)
    with pytest.raises(ValueError):
        pb(x[:2] * 3, y[:2])  # outside [0, 1]
    with pytest.raises(ValueError):
        pb(x[:2], [0, 10])  # label out of range
    bad = x[:2].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError):
        pb(bad, y[:2])


def _energy_stats(e, x, inside):
    energy = (e.perturbed - x) ** 2
    energy = energy.sum(-1).reshape(len(x), -1)
    in_box = (energy * inside.reshape(len(x), -1)).sum(1) / energy.sum(1)
    s = np.sort(energy, 1)[:, ::-1]
    share90 = (np.argmax(np.cumsum(s, 1) >= 0.9 * s.sum(1, keepdims=True), 1) + 1) / s.shape[1]
    return in_box, share90


@pytest.mark.slow
def test_the_perceptual_term_concentrates_the_perturbation_on_the_object():
    """ImageNet MobileNet, first 8 validation images with their boxes: NoPer (λ′ = 0, λ = 100: small,
    dense) against the perceptual ball (ReLU 4–9, λ′ = 1e3). Statistics: the share of the perturbation's
    energy inside the ground-truth boxes (larger with the perceptual term), and the fraction of pixels
    holding 90 % of it (not smaller: measured, see below)."""
    from tfperceptual.datasets import load_imagenet_val
    from tfperceptual.models import imagenet_mobilenet

    model = imagenet_mobilenet()
    x, y, boxes, _ = load_imagenet_val(limit=8)
    inside = np.zeros(x.shape[:3], bool)
    for i, b in enumerate(boxes):
        for x0, y0, x1, y1 in b:
            inside[i, int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))] = True
    noper = PerceptualBall(model, lambda_perceptual=0.0, lambda_pixel=100.0, steps=50, batch_size=8)(x, y)
    pb = PerceptualBall(model, layers=range(4, 10), lambda_perceptual=1e3, steps=50, batch_size=8)(x, y)
    in_noper, dense_noper = _energy_stats(noper, x, inside)
    in_pb, dense_pb = _energy_stats(pb, x, inside)
    assert np.mean(in_pb) > np.mean(in_noper) + 0.03
    # It does not make the perturbation sparser on these images: the fraction of pixels holding 90 % of the
    # energy is 0.445 (ball) vs 0.440 (NoPer), the same at 39983af (this assertion of "sparser" failed there too)
    assert abs(np.mean(dense_pb) - np.mean(dense_noper)) < 0.05
