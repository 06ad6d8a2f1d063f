"""PerceptualRegularization (issue 17): training on real MNIST, λ, the .keras round trip, the latent direction and
interpolation, construction errors, the CIFAR-10 parts, from_classifier, adversarial training with the
reconstruction term, the perception protocol and the shipped models."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfperceptual.training.perceptual import (PerceptualRegularization, cifar10_perceptual_parts, from_classifier,
                                              interpolate, latent_direction, mnist_perceptual_parts)


@pytest.fixture(scope="module")
def mnist_small():
    from tfperceptual.datasets import load_mnist

    x, y = load_mnist("train")
    xt, yt = load_mnist("test")
    return x[:4000], y[:4000], xt[:500], yt[:500]


def _fit(lam, data, epochs=2, seed=0):
    x, y, xt, yt = data
    model = PerceptualRegularization(*mnist_perceptual_parts(seed=seed), lam=lam)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    hist = model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, shuffle=False)
    return model, hist.history, model.evaluate(xt, yt, verbose=0, return_dict=True)


def test_training_lowers_reconstruction_and_raises_accuracy_and_lambda_trades_them(mnist_small, tmp_path):
    model, hist, ev = _fit(3.0, mnist_small)
    assert hist["reconstruction_loss"][-1] < 0.7 * hist["reconstruction_loss"][0]
    assert hist["accuracy"][-1] > hist["accuracy"][0] and ev["accuracy"] > 0.8
    assert set(hist) == {"loss", "classification_loss", "reconstruction_loss", "accuracy"}
    np.testing.assert_allclose(hist["loss"][-1],
                               hist["classification_loss"][-1] + 3.0 * hist["reconstruction_loss"][-1], rtol=1e-4)
    _, _, tiny = _fit(1e-4, mnist_small)
    _, _, large = _fit(100.0, mnist_small)
    assert large["reconstruction_loss"] < tiny["reconstruction_loss"]  # equal budget, larger λ
    # .keras round trip: identical logits and perceptions
    xt = mnist_small[2][:16]
    model.save(tmp_path / "pr.keras")
    back = keras.models.load_model(tmp_path / "pr.keras")
    assert isinstance(back, PerceptualRegularization) and back.lam == 3.0
    np.testing.assert_array_equal(back(xt).numpy(), model(xt).numpy())
    np.testing.assert_array_equal(back.perceive(xt).numpy(), model.perceive(xt).numpy())
    p = model.perceive(xt).numpy()
    assert p.shape == xt.shape and p.min() >= 0 and p.max() <= 1


def test_interpolation_ends_at_the_perceptions_of_x_and_x_adv(mnist_small):
    model = PerceptualRegularization(*mnist_perceptual_parts(seed=1), lam=1.0)
    x = mnist_small[2][:4]
    x_adv = np.clip(x + np.random.default_rng(0).normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    z = latent_direction(model, x, x_adv)
    images, logits = interpolate(model, x, z, [0.0, 0.5, 1.0])
    assert images.shape == (3, 4, 28, 28, 1) and logits.shape == (3, 4, 10)
    np.testing.assert_allclose(images[0], model.perceive(x).numpy(), atol=1e-6)
    np.testing.assert_allclose(images[2], model.perceive(x_adv).numpy(), atol=1e-5)  # F(x) + Z = F(x_adv)
    np.testing.assert_allclose(logits[2], model(x_adv).numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="alphas"):
        interpolate(model, x, z, [])


def test_attacks_take_the_model_as_a_classifier(mnist_small):
    from tfperceptual.attacks import FPGAP, LinfPGD

    model = PerceptualRegularization(*mnist_perceptual_parts(seed=2), lam=1.0)
    x, y = mnist_small[2][:8], mnist_small[3][:8]
    for attack in (LinfPGD(model, 0.2, steps=3, seed=0), FPGAP(model, 0.3, steps=3)):
        r = attack(x, y)
        np.testing.assert_array_equal(r.adv_labels, np.argmax(model(r.adversarial).numpy(), -1))


def test_parts_that_do_not_fit_are_refused_naming_them():
    enc, cls, dec = mnist_perceptual_parts(seed=0)
    with pytest.raises(ValueError, match="lam"):
        PerceptualRegularization(enc, cls, dec, lam=-1.0)
    wrong_dec = keras.Sequential([keras.Input((32,)), keras.layers.Dense(32 * 32), keras.layers.Reshape((32, 32, 1))])
    with pytest.raises(ValueError, match="decoder outputs"):
        PerceptualRegularization(enc, cls, wrong_dec)
    wrong_cls = keras.Sequential([keras.Input((16,)), keras.layers.Dense(10)])
    with pytest.raises(ValueError, match="classifier takes"):
        PerceptualRegularization(enc, wrong_cls, dec)
    wrong_in = keras.Sequential([keras.Input((64,)), keras.layers.Dense(784), keras.layers.Reshape((28, 28, 1))])
    with pytest.raises(ValueError, match="decoder takes"):
        PerceptualRegularization(enc, cls, wrong_in)


_MIRRORED = """
    from tfperceptual.training import PerceptualRegularization, mnist_perceptual_parts

    def run(strategy, ds):
        with strategy.scope():
            model = PerceptualRegularization(*mnist_perceptual_parts(seed=0), lam=2.0)
            model.compile(optimizer=keras.optimizers.SGD(0.1))
        hist = model.fit(ds, epochs=1, verbose=0)
        return {"loss": hist.history["loss"][0], "kernel": float(np.sum(model.encoder.get_weights()[0])),
                "decoder": float(np.sum(model.decoder.get_weights()[-2]))}
"""


def test_first_step_under_mirrored_strategy_matches_one_device(single_and_mirrored):
    """Two logical CPU devices, tf.data input: the same first-step loss and update of F and D as one device."""
    res = single_and_mirrored(_MIRRORED)
    assert res["mirrored"]["replicas"] == 2
    for key in ("loss", "kernel", "decoder"):
        assert res["mirrored"][key] == pytest.approx(res["single"][key], rel=1e-5), key


_MIRRORED_ADVERSARIAL = """
    from tfperceptual.attacks import LinfPGD
    from tfperceptual.training import AdversarialTraining, PerceptualRegularization, mnist_perceptual_parts

    def run(strategy, ds):
        with strategy.scope():
            model = PerceptualRegularization(*mnist_perceptual_parts(seed=0), lam=2.0)
            wrapper = AdversarialTraining(model, LinfPGD(model, 0.1, steps=2, random_start=False))
            wrapper.compile(optimizer=keras.optimizers.SGD(0.1))
        hist = wrapper.fit(ds, epochs=1, verbose=0)
        return {"loss": hist.history["loss"][0], "reconstruction": hist.history["reconstruction_loss"][0],
                "kernel": float(np.sum(model.encoder.get_weights()[0])),
                "decoder": float(np.sum(model.decoder.get_weights()[-2]))}
"""


def test_adversarial_perceptual_step_under_mirrored_strategy_matches_one_device(single_and_mirrored):
    """The reconstruction term is scaled per replica like the CE: the same first step on two devices."""
    res = single_and_mirrored(_MIRRORED_ADVERSARIAL)
    assert res["mirrored"]["replicas"] == 2
    for key in ("loss", "reconstruction", "kernel", "decoder"):
        assert res["mirrored"][key] == pytest.approx(res["single"][key], rel=1e-5), key


def test_perception_snapshot_writes_tensorboard_and_png_and_leaves_logs_alone(mnist_small, tmp_path):
    from tfperceptual.callbacks import PerceptionSnapshot

    x, y, xt, _ = mnist_small
    model = PerceptualRegularization(*mnist_perceptual_parts(seed=3), lam=1.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    snap = PerceptionSnapshot(xt[:6], every=2, log_dir=tmp_path / "tb", out_dir=tmp_path / "png")
    stop = keras.callbacks.EarlyStopping(monitor="reconstruction_loss", mode="min", patience=10)
    seen = []
    keys = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(set(logs)))
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hist = model.fit(x[:512], y[:512], batch_size=128, epochs=4, verbose=0, callbacks=[snap, stop, keys])
    assert not [w for w in caught if "conditioned on metric" in str(w.message)]  # EarlyStopping found its metric
    metrics = {"loss", "classification_loss", "reconstruction_loss", "accuracy"}
    assert set(hist.history) == metrics and all(k == metrics for k in seen)  # the snapshot added nothing to logs
    assert [os.path.basename(p) for p in snap.written] == ["perception_epoch002.png", "perception_epoch004.png"]
    assert all(os.path.getsize(p) > 1000 for p in snap.written)
    events = [f for f in os.listdir(tmp_path / "tb") if f.startswith("events.out.tfevents")]
    assert events and os.path.getsize(tmp_path / "tb" / events[0]) > 1000
    assert snap.grid().shape == (56, 6 * 28, 1)
    model.fit(x[:128], y[:128], batch_size=128, epochs=2, verbose=0, callbacks=[snap])
    assert len(snap.written) == 1  # state reset in on_train_begin
    with pytest.raises(ValueError, match="log_dir"):
        PerceptionSnapshot(xt[:2])
    with pytest.raises(ValueError, match="every"):
        PerceptionSnapshot(xt[:2], every=0, out_dir=tmp_path)
    plain = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    plain.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(TypeError, match="perceive"):
        plain.fit(x[:8], y[:8], epochs=1, verbose=0, callbacks=[PerceptionSnapshot(xt[:2], out_dir=tmp_path)])


def test_cifar10_parts_are_the_svhn_networks_at_32x32x3():
    enc, cls, dec = cifar10_perceptual_parts(seed=0)
    assert enc.output_shape == (None, 64) and cls.output_shape == (None, 10) and dec.output_shape == (None, 32, 32, 3)
    model = PerceptualRegularization(enc, cls, dec, lam=3.0)
    x = np.random.default_rng(0).uniform(0, 1, (4, 32, 32, 3)).astype(np.float32)
    p = model.perceive(x).numpy()
    assert p.shape == x.shape and 0 <= p.min() and p.max() <= 1


def test_from_classifier_cuts_the_users_model_and_shares_its_weights(mnist_small):
    from tfperceptual.models import mnist_cnn

    user = mnist_cnn()
    x, y = mnist_small[0][:256], mnist_small[1][:256]
    model = from_classifier(user, "pool2", lam=1.0)
    assert model.encoder.output_shape == (None, 5, 5, 64) and model.decoder.output_shape == (None, 28, 28, 1)
    np.testing.assert_allclose(model(x[:16]).numpy(), user(x[:16]).numpy(), atol=1e-5)  # H = C ∘ F is the model
    vector = from_classifier(user, "fc1")  # a vector feature: dense start, transposed convolutions, a resize
    assert vector.perceive(x[:2]).shape == (2, 28, 28, 1)
    before = user.get_layer("conv1").get_weights()[0].copy()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    hist = model.fit(x, y, batch_size=64, epochs=2, verbose=0)
    assert hist.history["reconstruction_loss"][-1] < hist.history["reconstruction_loss"][0]
    assert not np.allclose(user.get_layer("conv1").get_weights()[0], before)  # the user's classifier trained
    with pytest.raises(ValueError, match="not a layer.*conv2"):
        from_classifier(user, "conv9")
    with pytest.raises(ValueError, match="input or output"):
        from_classifier(user, "logits")
    inp = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inp)
    b = keras.layers.Conv2D(4, 3, padding="same", name="b")(a)
    out = keras.layers.Dense(3, name="out")(keras.layers.Flatten()(keras.layers.Add()([a, b])))
    with pytest.raises(ValueError, match="does not cut"):
        from_classifier(keras.Model(inp, out), "b")
    with pytest.raises(ValueError, match="decoder outputs"):
        from_classifier(user, "fc1", decoder=keras.Sequential([keras.Input((128,)), keras.layers.Dense(64),
                                                               keras.layers.Reshape((8, 8, 1))]))


def test_a_softmax_head_is_cut_through_its_logits(tmp_path):
    inp = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(8, 3, activation="relu", name="c1")(inp)
    out = keras.layers.Dense(10, activation="softmax", name="probs")(keras.layers.Flatten(name="flat")(h))
    soft = keras.Model(inp, out)
    model = from_classifier(soft, "c1")
    x = np.random.default_rng(1).uniform(0, 1, (4, 28, 28, 1)).astype(np.float32)
    logits = model(x).numpy()
    np.testing.assert_allclose(keras.ops.softmax(logits).numpy(), soft(x).numpy(), atol=1e-5)
    assert not np.allclose(logits.sum(-1), 1.0)
    model.save(tmp_path / "cut.keras")  # the cut model (a pre-activation view inside) round-trips
    back = keras.models.load_model(tmp_path / "cut.keras")
    np.testing.assert_array_equal(back(x).numpy(), logits)
    np.testing.assert_array_equal(back.perceive(x).numpy(), model.perceive(x).numpy())


def test_adversarial_training_of_a_perceptual_model_keeps_its_reconstruction_term(mnist_small):
    from tfperceptual.attacks import LinfPGD
    from tfperceptual.training import AdversarialTraining

    x, y, xt, yt = mnist_small
    model = PerceptualRegularization(*mnist_perceptual_parts(seed=4), lam=5.0)
    decoder_before = [w.copy() for w in model.decoder.get_weights()]
    wrapper = AdversarialTraining(model, LinfPGD(model, 0.1, steps=2, seed=0))
    wrapper.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    hist = wrapper.fit(x[:2048], y[:2048], batch_size=128, epochs=2, verbose=0).history
    assert {"loss", "accuracy", "reconstruction_loss"} <= set(hist)
    assert hist["reconstruction_loss"][-1] < 0.8 * hist["reconstruction_loss"][0]
    assert all(not np.allclose(a, b) for a, b in zip(model.decoder.get_weights(), decoder_before))
    ev = wrapper.evaluate(xt[:256], yt[:256], verbose=0, return_dict=True)
    np.testing.assert_allclose(ev["reconstruction_loss"], float(model.reconstruction_error(xt[:256])), rtol=1e-4)
    # evaluate: CE of the clean images + λ · their reconstruction error
    logits = model(xt[:256]).numpy()
    ce = np.mean(-np.take_along_axis(logits - np.log(np.exp(logits).sum(-1, keepdims=True)), yt[:256, None], 1))
    np.testing.assert_allclose(ev["loss"], ce + 5.0 * float(model.reconstruction_error(xt[:256])), rtol=1e-4)
    # a training step: the adversarial CE + λ · the reconstruction error of the adversarial images (SGD at rate 0
    # keeps the weights; the loss is computed before the update anyway)
    attack = LinfPGD(model, 0.1, steps=2, random_start=False)
    still = AdversarialTraining(model, attack)
    still.compile(optimizer=keras.optimizers.SGD(0.0))
    xb, yb = x[:64], y[:64]
    step = still.train_on_batch(xb, yb, return_dict=True)
    x_adv = attack.perturb(tf.constant(xb), tf.constant(yb, tf.int64))
    la = model(x_adv).numpy()
    ce_adv = np.mean(-np.take_along_axis(la - np.log(np.exp(la).sum(-1, keepdims=True)), yb[:, None], 1))
    np.testing.assert_allclose(step["loss"], ce_adv + 5.0 * float(model.reconstruction_error(x_adv)), rtol=1e-4)
    np.testing.assert_allclose(step["reconstruction_loss"], float(model.reconstruction_error(x_adv)), rtol=1e-4)


@pytest.fixture(scope="module")
def trained(mnist_small):
    model, _, _ = _fit(10.0, mnist_small, epochs=2, seed=5)
    return model


def test_perception_protocol_measures_what_it_reports(trained, mnist_small, tmp_path):
    from tfperceptual.models import mnist_cnn
    from tfperceptual.protocols.perception import perception_quality, perceive_batched, run_perception

    xt, yt = mnist_small[2][:48], mnist_small[3][:48]
    q = perception_quality(trained, xt, yt)
    np.testing.assert_allclose(q["mse"], np.mean((trained.perceive(xt).numpy() - xt) ** 2), rtol=1e-5)
    assert q["accuracy"] == np.mean(np.argmax(trained(xt).numpy(), -1) == yt)
    judge = mnist_cnn()  # a stand-in judge of another architecture
    res = run_perception(trained, xt, yt, attacks=("pgd", "l1q"), steps={"pgd": 10, "l1q": 10}, judge=judge,
                         noise_per_class=1, out_dir=tmp_path, progress=False)
    pgd = res["attacks"]["pgd"]
    assert pgd["n_fooled"] > 0
    # C(F(x) + 1·Z) = H(x_adv): at α = 1 every path is at the adversarial label, at α = 0 none is
    per_alpha = pgd["interpolation_model"]["per_alpha"]
    assert per_alpha[res["alphas"].index(1.0)] == 1.0 and per_alpha[0] == 0.0
    assert pgd["interpolation_model"]["fraction"] == 1.0
    # the judge's readings on the fooled images, recomputed from the cached adversarials
    import glob

    parts = sorted(glob.glob(str(tmp_path / "cache" / "pgd_*.npz")), key=lambda f: int(f.split("_")[-2]))
    x_adv = np.concatenate([np.load(f)["x_adv"] for f in parts])
    adv = np.argmax(trained(x_adv).numpy(), -1)
    fooled = (np.argmax(trained(xt).numpy(), -1) == yt) & (adv != yt)
    assert fooled.sum() == pgd["n_fooled"]
    p = perceive_batched(trained, xt)
    j_p = np.argmax(judge(p[fooled]).numpy(), -1)
    assert pgd["judge"]["perceived_clean_is_label"]["k"] == int(np.sum(j_p == yt[fooled]))
    j_padv = np.argmax(judge(perceive_batched(trained, x_adv[fooled])).numpy(), -1)
    assert pgd["judge"]["perceived_adv_is_adv_label"]["k"] == int(np.sum(j_padv == adv[fooled]))
    j = pgd["judge"]["perceived_adv_is_adv_label"]
    assert j["ci95"][0] <= j["fraction"] <= j["ci95"][1]
    assert res["judge"]["perceived_clean_accuracy"] == np.mean(np.argmax(judge(p).numpy(), -1) == yt)
    for name in ("panels_pgd.png", "interpolation_pgd.png", "panels_l1q.png", "noise.png", "report.md"):
        assert (tmp_path / name).stat().st_size > 500, name
    assert res["noise"]["n"] == 10 and "judge_perceived_is_target" in res["noise"]
    again = run_perception(trained, xt, yt, attacks=("pgd",), steps={"pgd": 10}, noise_per_class=0,
                           out_dir=tmp_path, progress=False)  # from the cache
    assert again["attacks"]["pgd"]["n_fooled"] == pgd["n_fooled"]
    with pytest.raises(TypeError, match="PerceptualRegularization"):
        run_perception(judge, xt, yt, out_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown attacks"):
        run_perception(trained, xt, yt, attacks=("cw",), out_dir=tmp_path)
    with pytest.raises(ValueError):
        run_perception(trained, xt * 2.0, yt, out_dir=tmp_path)  # pixels outside [0, 1]
    with pytest.raises(ValueError, match="presets"):
        run_perception(trained, xt, yt, attacks=("pgd",), data_name="svhn", out_dir=tmp_path)


def test_perceive_cli_writes_its_panels(trained, tmp_path, run_cli):
    path = tmp_path / "pr.keras"
    trained.save(path)
    code, out, err = run_cli(["perceive", "--model", path, "--n", "24", "--attacks", "pgd,fpgap", "--steps", "5",
                              "--noise-per-class", "0", "--out", tmp_path / "r", "--no-progress"])
    assert code == 0, err
    assert "| pgd | 0.2 | 5 |" in out and "| fpgap | 0.3 | 5 |" in out
    assert (tmp_path / "r" / "panels_fpgap.png").exists() and (tmp_path / "r" / "interpolation_pgd.png").exists()


def test_the_shipped_mnist_model_classifies_and_perceives():
    from tfperceptual.datasets import load_sample
    from tfperceptual.models import zoo
    from tfperceptual.protocols.perception import perception_quality

    model = zoo.mnist_perceptual()
    assert isinstance(model, PerceptualRegularization) and model.lam == pytest.approx(0.1 * 784)
    x, y = load_sample("mnist")
    q = perception_quality(model, x, y)
    # docs/results.md: 97.61 % accuracy, SSIM of P(x) 0.903 on the 10,000 test images
    assert q["accuracy"] > 0.96 and q["ssim"] > 0.85 and q["mse"] < 0.012


def test_sample_weight_weighs_both_terms_and_a_softmax_classifier_is_refused(mnist_small):
    x, y = mnist_small[0][:64], mnist_small[1][:64]

    def one_step(lr, xs, ys, weights=None):
        model = PerceptualRegularization(*mnist_perceptual_parts(seed=6), lam=4.0)
        model.compile(optimizer=keras.optimizers.SGD(lr))
        model.fit(xs, ys, sample_weight=weights, batch_size=len(xs), epochs=1, verbose=0, shuffle=False)
        return model.get_weights()

    # weights 1 on the first half, 0 on the second: the batch mean halves the first half's gradient
    weighted = one_step(0.1, x, y, np.r_[np.ones(32), np.zeros(32)].astype(np.float32))
    half = one_step(0.05, x[:32], y[:32])
    for a, b in zip(weighted, half):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    enc, _, dec = mnist_perceptual_parts(seed=0)
    soft = keras.Sequential([keras.Input((32,)), keras.layers.Dense(10, activation="softmax")])
    with pytest.raises(ValueError, match="softmax"):
        PerceptualRegularization(enc, soft, dec)


def test_latent_tools_and_the_snapshot_check_their_inputs(trained, mnist_small, tmp_path):
    from tfperceptual.attacks import LinfPGD
    from tfperceptual.callbacks import PerceptionSnapshot
    from tfperceptual.training import AdversarialTraining

    x = mnist_small[2][:4]
    with pytest.raises(ValueError, match="shape"):
        latent_direction(trained, x, x[:3])
    with pytest.raises(ValueError, match="shape of F"):
        interpolate(trained, x, np.zeros((4, 7), np.float32), [0.0, 1.0])
    # the snapshot watches the perceptual model inside an AdversarialTraining wrapper
    model = PerceptualRegularization(*mnist_perceptual_parts(seed=7), lam=1.0)
    wrapper = AdversarialTraining(model, LinfPGD(model, 0.1, steps=1, seed=0))
    wrapper.compile(optimizer=keras.optimizers.Adam(1e-3))
    snap = PerceptionSnapshot(x, out_dir=tmp_path)
    wrapper.fit(mnist_small[0][:128], mnist_small[1][:128], batch_size=64, epochs=1, verbose=0, callbacks=[snap])
    assert len(snap.written) == 1 and snap.grid().shape == (56, 4 * 28, 1)
