"""PerceptualRegularization (issue 17, first part): training on real MNIST, λ, the .keras round trip, the latent
direction and interpolation, and construction errors."""

import os

import keras
import numpy as np
import pytest

from tfperceptual.training.perceptual import (PerceptualRegularization, interpolate, latent_direction,
                                              mnist_perceptual_parts)


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
    model, hist, ev = _fit(1.0, mnist_small)
    assert hist["reconstruction_loss"][-1] < 0.7 * hist["reconstruction_loss"][0]
    assert hist["accuracy"][-1] > hist["accuracy"][0] and ev["accuracy"] > 0.8
    assert set(hist) == {"loss", "classification_loss", "reconstruction_loss", "accuracy"}
    np.testing.assert_allclose(hist["loss"][-1], hist["classification_loss"][-1] + hist["reconstruction_loss"][-1],
                               rtol=1e-4)
    _, _, tiny = _fit(1e-4, mnist_small)
    _, _, large = _fit(100.0, mnist_small)
    assert large["reconstruction_loss"] < tiny["reconstruction_loss"]  # equal budget, larger λ
    # .keras round trip: identical logits and perceptions
    xt = mnist_small[2][:16]
    model.save(tmp_path / "pr.keras")
    back = keras.models.load_model(tmp_path / "pr.keras")
    assert isinstance(back, PerceptualRegularization) and back.lam == 1.0
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


def test_perception_snapshot_writes_tensorboard_and_png_and_leaves_logs_alone(mnist_small, tmp_path):
    from tfperceptual.callbacks import PerceptionSnapshot

    x, y, xt, _ = mnist_small
    model = PerceptualRegularization(*mnist_perceptual_parts(seed=3), lam=1.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    snap = PerceptionSnapshot(xt[:6], every=2, log_dir=tmp_path / "tb", out_dir=tmp_path / "png")
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=5)
    hist = model.fit(x[:512], y[:512], batch_size=128, epochs=4, verbose=0, callbacks=[snap, stop])
    assert set(hist.history) == {"loss", "classification_loss", "reconstruction_loss", "accuracy"}
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
