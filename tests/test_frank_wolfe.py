"""Frank–Wolfe attacks (L1QFrankWolfe, L2FrankWolfe), counterfactual explanations and concept probes
(Roberts & Tsiligkaridis 2021) on real MNIST / CIFAR-10 images and the shipped models."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from solvers.frank_wolfe import frank_wolfe, step_sizes
from solvers.norm_balls import L1QOracle
from tfperceptual.attacks import L1QFrankWolfe, L2FrankWolfe, build_attack
from tfperceptual.explain import Counterfactual, build_explainer, matched_l1_eps, probe_concepts
from tfperceptual.models import zoo
from tfperceptual.training import AdversarialTraining


def _norms(adv, x):
    d = (adv - x).reshape(len(x), -1)
    return np.abs(d).sum(1), np.linalg.norm(d, axis=1)


def test_the_update_is_the_authors_convex_combination_with_gamma_c_over_c_plus_k():
    """A NumPy re-run of δ_{k+1} = (1 − γ_k) δ_k + γ_k s_k, γ_k = c/(c + k), with the gradient of a quadratic."""
    rng = np.random.default_rng(0)
    x0 = rng.uniform(0.2, 0.8, (3, 4, 4, 1)).astype(np.float32)
    target = rng.uniform(0, 1, (3, 4, 4, 1)).astype(np.float32)
    oracle = L1QOracle(2.0, 0.25, box="none", dtype="float32")
    c, steps = 3.0, 6
    out = frank_wolfe(lambda x, k: target - x, tf.constant(x0), oracle, steps, c, box="none", record=True)
    delta = np.zeros_like(x0)
    for k, gamma in enumerate(step_sizes(steps, c)):
        g = (target - (x0 + delta)).reshape(3, -1)
        s = oracle(tf.constant(g), tf.constant(x0.reshape(3, -1))).y.numpy() - x0.reshape(3, -1)
        delta = (1 - gamma) * delta + gamma * s.reshape(x0.shape)
        np.testing.assert_allclose(out["iterates"].numpy()[k], x0 + delta, atol=1e-6)
    np.testing.assert_allclose(out["x"].numpy(), x0 + delta, atol=1e-6)
    assert step_sizes(3, 2.0) == [1.0, 2 / 3, 0.5]


@pytest.mark.parametrize("attack,eps,norm", [(L1QFrankWolfe, 12.0, "l1"), (L2FrankWolfe, 1.5, "l2")])
@pytest.mark.parametrize("box", ["exact", "clip"])
def test_every_iterate_lies_in_the_ball_and_the_box(mnist_batch, mnist_model, attack, eps, norm, box):
    x, y = mnist_batch
    a = attack(mnist_model, eps, steps=8, box=box, seed=0)
    r = a(x, y, return_iterates=True)
    assert r.iterates.shape == (8, *x.shape)
    for it in r.iterates:
        l1, l2 = _norms(it, x)
        assert (l1 if norm == "l1" else l2).max() <= eps * (1 + 1e-5)
        assert it.min() >= 0 and it.max() <= 1
    assert not r.failed.any()
    np.testing.assert_array_equal(r.adversarial, r.iterates[-1])


def test_exact_box_steps_keep_every_unclipped_iterate_in_the_box(mnist_batch, mnist_model):
    """The loop with box="none" does not clip: with the exact-box oracles the raw x₀ + δ_k stay in [0, 1]."""
    from solvers.norm_balls import L2BoxOracle
    from tfperceptual.models import as_logits_model

    x, y = mnist_batch
    lm = as_logits_model(mnist_model)

    def gradient(images, k):
        with tf.GradientTape() as tape:
            tape.watch(images)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, lm(images)))
        return tape.gradient(loss, images)

    for oracle in (L1QOracle(12.0, 0.05, box="exact", dtype="float32"), L2BoxOracle(1.5, dtype="float32")):
        out = frank_wolfe(gradient, tf.constant(x), oracle, 6, box="none", record=True)
        it = out["iterates"].numpy()
        assert it.min() >= -1e-6 and it.max() <= 1 + 1e-6
        assert not out["failed"].numpy().any()


def test_without_the_box_iterates_leave_it_and_the_exact_box_spends_the_budget(mnist_batch, mnist_model):
    x, y = mnist_batch
    free = L1QFrankWolfe(mnist_model, 12.0, steps=5, box="none", seed=0)(x, y)
    assert free.adversarial.min() < -1e-3 or free.adversarial.max() > 1 + 1e-3  # MNIST's black/white pixels
    exact = L1QFrankWolfe(mnist_model, 12.0, steps=5, box="exact", seed=0)(x, y)
    l1, _ = _norms(exact.adversarial, x)
    assert np.median(l1) > 0.9 * 12.0  # the knapsack finds room elsewhere instead of losing the budget


def test_smaller_q_gives_sparser_perturbations_at_equal_eps(mnist_batch, mnist_model):
    x, y = mnist_batch
    changed = []
    for q in (0.01, 0.05, 0.2):
        r = L1QFrankWolfe(mnist_model, 10.0, q=q, steps=10, seed=0)(x, y)
        changed.append(np.mean(np.abs(r.adversarial - x) > 1 / 255))
    assert changed[0] < changed[1] < changed[2], changed


def test_q_jitter_varies_the_count_per_image_and_is_seeded(mnist_batch, mnist_model):
    x, y = mnist_batch
    one = L1QFrankWolfe(mnist_model, 10.0, q=0.05, steps=1, q_jitter=0.04, seed=3)(x, y).adversarial
    again = L1QFrankWolfe(mnist_model, 10.0, q=0.05, steps=1, q_jitter=0.04, seed=3)(x, y).adversarial
    np.testing.assert_array_equal(one, again)
    counts = (np.abs(one - x) > 0).reshape(len(x), -1).sum(1)
    assert len(set(counts.tolist())) > 3  # one step from δ = 0: each image's own k (the box may trim a few)
    assert counts.min() >= 1 and counts.max() <= round(0.09 * 784)


def test_fw_attacks_fool_the_standard_model_and_train_inside_adversarial_training(mnist_batch):
    x, y = mnist_batch
    model = zoo.mnist_cnn()
    for name, eps in (("l1q_fw", 15.0), ("l2_fw", 2.0)):
        r = build_attack(name, model, eps, steps=20)(x, y)
        assert r.success_rate > 0.5, (name, r.success_rate)
    net = keras.models.clone_model(model)
    net.set_weights(model.get_weights())
    wrapper = AdversarialTraining(net, L1QFrankWolfe(net, 10.0, q=0.05, steps=3, q_jitter=0.02, seed=0))
    wrapper.compile(optimizer=keras.optimizers.SGD(0.01), metrics=["accuracy"])
    before = [w.copy() for w in net.get_weights()]
    hist = wrapper.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    assert any(not np.allclose(a, b) for a, b in zip(before, net.get_weights()))


@pytest.mark.parametrize("kwargs,match", [
    (dict(eps=0.0), "eps"), (dict(eps=-1.0), "eps"), (dict(eps=5.0, q=0.0), "q"), (dict(eps=5.0, q=1.01), "q"),
    (dict(eps=5.0, steps=0), "steps"), (dict(eps=5.0, c=0.0), "c "), (dict(eps=5.0, box="restore"), "box"),
    (dict(eps=5.0, q_jitter=1.0), "q_jitter"), (dict(eps=5.0, loss="kl"), "loss"), (dict(eps=5.0, seed=-1), "seed")])
def test_bad_options_are_refused_naming_the_argument(mnist_model, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        L1QFrankWolfe(mnist_model, **kwargs)


@pytest.mark.parametrize("attack", [
    lambda m: L1QFrankWolfe(m, 10.0, q=0.05, steps=3, box="clip", seed=0),
    lambda m: L1QFrankWolfe(m, 10.0, q=0.05, steps=3, box="none", q_jitter=0.02, seed=0),
    lambda m: L2FrankWolfe(m, 1.5, steps=3, box="none"), lambda m: L2FrankWolfe(m, 1.5, steps=3, box="clip")])
def test_every_box_mode_compiles_with_xla_and_matches_eager(mnist_batch, mnist_model, attack):
    x, y = mnist_batch
    a = attack(mnist_model)
    xla = tf.function(lambda images, labels: a.perturb(images, labels), jit_compile=True)
    compiled = xla(tf.constant(x[:8]), tf.constant(y[:8])).numpy()
    eager = a.perturb(tf.constant(x[:8]), tf.constant(y[:8])).numpy()
    # XLA's CPU convolutions give gradients ~1e-3 relative off oneDNN's (measured), which can swap near-tied
    # entries at the top-k cut, and its stateless RNG (q_jitter) need not match the kernels': the same attack up
    # to that — the same constraint, nearly the same perturbation
    dc, de = (compiled - x[:8]).reshape(8, -1), (eager - x[:8]).reshape(8, -1)
    norm = (lambda d: np.abs(d).sum(1)) if a.norm == "l1" else (lambda d: np.linalg.norm(d, axis=1))
    assert norm(dc).max() <= a.eps * (1 + 1e-5)
    if a.box == "clip":
        assert compiled.min() >= 0 and compiled.max() <= 1
    cosine = (dc * de).sum(1) / (np.linalg.norm(dc, axis=1) * np.linalg.norm(de, axis=1))
    assert cosine.min() > (0.6 if getattr(a, "q_jitter", 0) else 0.9), cosine  # jitter: XLA draws other k


def test_a_model_of_any_image_size_takes_the_l1q_attack_with_q_jitter():
    """N comes from the traced batch (the zoo MobileNet takes any size)."""
    inp = keras.Input((None, None, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(h)))
    x = np.random.default_rng(0).uniform(0, 1, (2, 20, 20, 3)).astype(np.float32)
    for size in (20, 12):
        r = L1QFrankWolfe(model, 3.0, q=0.05, steps=2, q_jitter=0.02, seed=0)(x[:, :size, :size], [0, 1])
        assert r.adversarial.shape == (2, size, size, 3)


def test_eps_is_a_variable_and_options_read_at_trace_time_are_fixed(mnist_batch, mnist_model):
    x, y = mnist_batch
    a = L2FrankWolfe(mnist_model, 1.0, steps=3)
    a.eps = 2.0
    assert a.eps == 2.0
    _, l2 = _norms(a(x[:4], y[:4]).adversarial, x[:4])
    assert l2.max() > 1.2
    with pytest.raises(AttributeError, match="fixed"):
        a.c = 3.0
    with pytest.raises(ValueError, match="eps"):
        a.eps = 0.0
    cf = Counterfactual(mnist_model, eps=5.0, mode="label", steps=3)
    before = cf.explain(x[:4], y[:4]).perturbation
    cf.eps = 10.0  # the traced loop follows the variable
    after = cf.explain(x[:4], y[:4]).perturbation
    assert np.abs(after).sum() > 1.5 * np.abs(before).sum()
    assert cf._fw._run.experimental_get_tracing_count() == 1
    with pytest.raises(AttributeError, match="fixed"):
        cf.q = 0.1


# --------------------------------------------------------------------------- counterfactuals
@pytest.fixture(scope="module")
def robust_mnist():
    from tfperceptual.datasets import load_sample

    x, y = load_sample("mnist")
    return zoo.mnist_cnn_robust(), x[:48], y[:48]


@pytest.mark.parametrize("norm,eps", [("l1q", 15.0), ("l2", 2.5)])
def test_label_targeted_counterfactuals_raise_the_label_probability(robust_mnist, norm, eps):
    model, x, y = robust_mnist
    target = (y + 3) % 10  # a wrong "label": what would make the model say 3 more?
    e = Counterfactual(model, norm=norm, eps=eps, steps=20, mode="label").explain(x, target)
    conf = e.confidence
    assert np.all(conf["label_after"] > conf["label_before"])
    np.testing.assert_array_equal(e.target, target)
    np.testing.assert_array_equal(e.labels, target)
    assert np.all(e.converged)
    assert e.perturbed.min() >= 0 and e.perturbed.max() <= 1
    l1, l2 = _norms(e.perturbed, x)
    assert (l1 if norm == "l1q" else l2).max() <= eps * (1 + 1e-5)


def test_error_counterfactuals_raise_the_predicted_or_the_true_class():
    """The paper's error counterfactuals on the shipped CIFAR-10 model's real errors."""
    from tfperceptual.datasets import load_cifar10

    model = zoo.cifar10_cnn_robust()
    x, y = load_cifar10("test")
    x, y = x[:300], y[:300]
    pred = np.argmax(model.predict(x, verbose=0), -1)
    wrong = np.flatnonzero(pred != y)[:16]
    assert len(wrong) >= 8
    e = Counterfactual(model, norm="l1q", eps=8.0, q=0.05, steps=15, mode="prediction").explain(x[wrong], y[wrong])
    np.testing.assert_array_equal(e.target, pred[wrong])
    assert np.all(e.confidence["predicted_after"] > e.confidence["predicted_before"])
    assert np.all(e.confidence["label_after"] <= e.confidence["label_before"] + 1e-6)
    # label-targeted on the same errors: "what would have corrected it?" raises the true class
    fix = Counterfactual(model, norm="l2", eps=1.0, steps=15, mode="label").explain(x[wrong], y[wrong])
    np.testing.assert_array_equal(fix.target, y[wrong])
    assert np.all(fix.confidence["label_after"] > fix.confidence["label_before"])
    with pytest.raises(ValueError, match="labels: mode='prediction'"):
        Counterfactual(model, eps=8.0, mode="prediction").explain(x[:4], pred[:4])  # correct: nothing to explain
    with pytest.raises(ValueError, match="labels are required"):
        Counterfactual(model, eps=8.0, mode="prediction").explain(x[wrong])


def test_counterfactual_options_are_checked(robust_mnist):
    model = robust_mnist[0]
    auto = Counterfactual(model, mode="label", steps=2)  # eps=None: ε₂ = 2 or its matched ℓ1 budget 2 √d
    assert auto.eps is None and auto._fw.budget((28, 28, 1)) == pytest.approx(2.0 * 28)
    e = auto.explain(robust_mnist[1][:2], robust_mnist[2][:2])
    assert np.abs(e.perturbation).reshape(2, -1).sum(1).max() <= 56.0 * (1 + 1e-5)
    for kwargs, match in ((dict(eps=-1.0), "eps"), (dict(eps=1.0, q=0.0), "q"), (dict(eps=1.0, steps=0), "steps"),
                          (dict(eps=1.0, c=-2.0), "c "), (dict(eps=1.0, norm="l1"), "norm"),
                          (dict(eps=1.0, mode="both"), "mode")):
        with pytest.raises((TypeError, ValueError), match=match):
            Counterfactual(model, **kwargs)
    assert isinstance(build_explainer("counterfactual", model, eps=2.0, mode="label"), Counterfactual)


def test_concept_probes_from_noise_reach_the_requested_classes(robust_mnist):
    model = robust_mnist[0]
    r = probe_concepts(model, [0, 3, 7], n_per_class=2, norm="l2", eps=4.0, steps=20, seed=5)
    assert r.images.shape == (6, 28, 28, 1) and r.classes.tolist() == [0, 0, 3, 3, 7, 7]
    np.testing.assert_allclose(r.noise.reshape(6, -1).min(1), 0.0)
    np.testing.assert_allclose(r.noise.reshape(6, -1).max(1), 1.0)
    assert np.all(r.confidence > r.confidence_before)
    assert r.success_rate >= 5 / 6
    again = probe_concepts(model, [0, 3, 7], n_per_class=2, norm="l2", eps=4.0, steps=20, seed=5)
    np.testing.assert_array_equal(again.images, r.images)
    l1 = probe_concepts(model, 4, norm="l1q", eps=matched_l1_eps(4.0, 784), steps=5)
    assert np.abs(l1.images - l1.noise).sum() <= matched_l1_eps(4.0, 784) * (1 + 1e-5)
    for kwargs, match in ((dict(classes=[10]), "classes"), (dict(classes=[-1]), "classes"),
                          (dict(classes=[]), "classes"), (dict(classes=[1], n_per_class=0), "n_per_class"),
                          (dict(classes=[1], image_shape=(32, 32, 1)), "image_shape")):
        with pytest.raises(ValueError, match=match):
            probe_concepts(model, norm="l2", eps=1.0, **kwargs)


def test_matched_l1_eps_and_the_ball_inclusion():
    assert matched_l1_eps(1.0, 224 * 224 * 3) == pytest.approx(224 * np.sqrt(3))
    d = 50
    v = np.random.default_rng(0).normal(size=d)
    v /= np.linalg.norm(v)  # on the ℓ2 sphere of radius 1 ⇒ inside the ℓ1 ball of radius √d
    assert np.abs(v).sum() <= matched_l1_eps(1.0, d)
    diag = np.full(d, 1 / np.sqrt(d))  # the balls touch on the diagonal
    assert np.abs(diag).sum() == pytest.approx(matched_l1_eps(1.0, d))
