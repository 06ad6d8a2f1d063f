"""AdversarialTraining: a keras.Model whose train_step trains on attack.perturb's images."""


import keras
import numpy as np
import pytest
import tensorflow as tf

from tfperceptual.attacks import FPGAP, L2PGD, PGAP, PGD, SSIMAPGD, LinfPGD, RandomStartFGSM
from tfperceptual.callbacks import AdversarialEvaluation
from tfperceptual.training import AdversarialTraining


def _small_cnn(seed=0, head=None, dropout=False):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
              keras.layers.Conv2D(16, 3, strides=2, activation="relu"), keras.layers.Flatten()]
    if dropout:
        layers.append(keras.layers.Dropout(0.2))
    layers.append(keras.layers.Dense(10, activation=head))
    return keras.Sequential(layers)


@pytest.fixture(scope="module")
def mnist_train():
    from tfperceptual.datasets import load_mnist

    x, y = load_mnist("train")
    return x[:3000], y[:3000]


@pytest.fixture(scope="module")
def mnist_test():
    from tfperceptual.datasets import load_mnist

    x, y = load_mnist("test")
    return x[:300], y[:300]


def _sgd_step(model, x, y):
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    return model.get_weights()


@pytest.mark.parametrize("make", [lambda m: LinfPGD(m, 0.2, steps=3, seed=0),
                                  lambda m: SSIMAPGD(m, 0.2, steps=3, seed=0)], ids=["linf_pgd", "ssim_apgd"])
def test_train_step_trains_on_the_attacks_images(mnist_train, make):
    """One SGD step of the wrapper = one plain SGD step on attack.perturb(x) at the same weights (madry); also
    SSIM-ball training with SSIM-APGD."""
    x, y = mnist_train[0][:64], mnist_train[1][:64]
    model = _small_cnn()
    attack = make(model)
    x_adv = attack.perturb(tf.constant(x), tf.constant(y, tf.int64)).numpy()
    twin = _small_cnn()
    want = _sgd_step(twin, x_adv, y)
    wrapper = AdversarialTraining(model, attack)
    wrapper.compile(optimizer=keras.optimizers.SGD(0.1))
    wrapper.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), want):
        np.testing.assert_allclose(a, b, atol=1e-5)
    clean = _sgd_step(_small_cnn(), x, y)
    assert not all(np.allclose(a, b, atol=1e-4) for a, b in zip(model.get_weights(), clean))


def test_trades_with_beta_zero_is_clean_training(mnist_train):
    x, y = mnist_train[0][:64], mnist_train[1][:64]
    want = _sgd_step(_small_cnn(), x, y)
    model = _small_cnn()
    wrapper = AdversarialTraining(model, L2PGD(model, 1.0, steps=2, loss="kl", seed=0), method="trades", beta=0.0)
    wrapper.compile(optimizer=keras.optimizers.SGD(0.1))
    wrapper.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), want):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_adversarial_training_buys_robustness_under_foolbox_pgd(mnist_train, mnist_test):
    """Same architecture, seed, data and epochs: PGD training raises robust accuracy under Foolbox's PGD."""
    x, y = mnist_train
    xt, yt = mnist_test

    def robust_accuracy(model):
        res = PGD(model, 0.15, steps=10, seed=0)(xt, yt, metrics=False)
        return float(np.mean(res.adv_labels == yt))

    plain = _small_cnn(seed=1)
    plain.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    plain.fit(x, y, batch_size=64, epochs=2, verbose=0)
    robust = _small_cnn(seed=1)
    wrapper = AdversarialTraining(robust, LinfPGD(robust, 0.15, steps=5, seed=0))
    wrapper.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    hist = wrapper.fit(x, y, batch_size=64, epochs=2, verbose=0)
    assert set(hist.history) == {"loss", "accuracy"}
    clean = wrapper.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"]
    assert clean > 0.7
    plain_ra, robust_ra = robust_accuracy(plain), robust_accuracy(robust)
    assert robust_ra > plain_ra + 0.15, (plain_ra, robust_ra)


def test_tf_data_input_keras_round_trip_and_callbacks(mnist_train, mnist_test, tmp_path):
    x, y = mnist_train[0][:256], mnist_train[1][:256]
    model = _small_cnn(dropout=True)
    wrapper = AdversarialTraining(model, RandomStartFGSM(model, 0.1, seed=0))
    wrapper.compile(optimizer="adam", metrics=["accuracy"])
    xv, yv = mnist_test[0][:32], mnist_test[1][:32]
    watch = AdversarialEvaluation(PGD(model, 0.1, steps=3, seed=0), xv, yv, every=1)  # a Foolbox evaluation attack
    ds = tf.data.Dataset.from_tensor_slices((x, y[:, None])).batch(64)  # (B, 1) labels are accepted
    hist = wrapper.fit(ds, epochs=2, validation_data=(xv, yv), callbacks=[watch], verbose=0)
    assert {"loss", "accuracy", "val_accuracy", "adv_fooling_rate", "adv_accuracy"} <= set(hist.history)
    assert watch.last_result is not None and watch.last_result.adversarial.shape == xv.shape
    path = tmp_path / "robust.keras"
    wrapper.classifier.save(path)
    back = keras.models.load_model(path)
    np.testing.assert_allclose(back.predict(xv, verbose=0), model.predict(xv, verbose=0), atol=1e-6)
    with pytest.raises(NotImplementedError, match="classifier.save"):
        wrapper.save(tmp_path / "wrapper.keras")


def test_softmax_head_is_trained_through_its_logits(mnist_train):
    x, y = mnist_train[0][:64], mnist_train[1][:64]
    soft, logit = _small_cnn(head="softmax"), _small_cnn()
    outs = []
    for model in (soft, logit):
        attack = LinfPGD(model, 0.1, steps=2, seed=0)
        wrapper = AdversarialTraining(model, attack)
        wrapper.compile(optimizer=keras.optimizers.SGD(0.1))
        np.testing.assert_allclose(wrapper(x[:4]).numpy(), logit(x[:4]).numpy() if model is soft else
                                   model(x[:4]).numpy(), atol=1e-5)
        wrapper.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
        outs.append(model.get_weights())
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("kind", ["fpgap", "l2_pgd"])
def test_training_runs_under_xla(mnist_train, kind):
    """SSIM-ball training, and a random start (stateless RNG, bit casts, wrapping integer hash) in XLA."""
    x, y = mnist_train[0][:64], mnist_train[1][:64]
    model = _small_cnn()
    before = [w.copy() for w in model.get_weights()]
    attack = (FPGAP(model, 0.2, steps=2, loss="ce", early_stop=False) if kind == "fpgap"
              else L2PGD(model, 1.0, steps=2, seed=0))
    wrapper = AdversarialTraining(model, attack)
    wrapper.compile(optimizer="adam", metrics=["accuracy"], jit_compile=True)
    hist = wrapper.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    assert not np.allclose(before[0], model.get_weights()[0])


def test_bad_input_is_a_clear_error(mnist_train):
    x, y = mnist_train[0][:64], mnist_train[1][:64]
    model = _small_cnn()
    other = _small_cnn()
    with pytest.raises(ValueError, match="another model"):
        AdversarialTraining(model, LinfPGD(other, 0.1))
    with pytest.raises(TypeError, match="graph-pure"):
        AdversarialTraining(model, PGD(model, 0.1, steps=2))
    with pytest.raises(TypeError, match="graph-pure"):
        AdversarialTraining(model, PGAP(model, 0.1, steps=2, solver="cvxpy"))
    with pytest.raises(TypeError, match="Attack"):
        AdversarialTraining(model, lambda x, y: x)
    attack = LinfPGD(model, 0.1, steps=1)
    with pytest.raises(ValueError, match="method"):
        AdversarialTraining(model, attack, method="free")
    with pytest.raises(ValueError, match="loss='kl'"):
        AdversarialTraining(model, attack, method="trades")
    with pytest.raises(ValueError, match="beta"):
        AdversarialTraining(model, L2PGD(model, 1.0, loss="kl"), method="trades", beta=-1.0)
    with pytest.raises(ValueError, match="adversarial_fraction"):
        AdversarialTraining(model, attack, adversarial_fraction=0.0)
    wrapper = AdversarialTraining(model, attack)
    with pytest.raises(ValueError, match="from_logits"):
        wrapper.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="from_logits"):
        wrapper.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy())
    wrapper.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        wrapper.fit(x, keras.utils.to_categorical(y, 10), epochs=1, verbose=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 10\)"):
        wrapper.fit(x, y + 10, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="eps"):
        LinfPGD(model, 0.0)


def test_mixing_clean_and_adversarial_loss(mnist_train):
    """adversarial_fraction = f: the loss is (1 − f) CE(clean) + f CE(adv) — checked through the gradient of
    one SGD step, which is linear in f."""
    x, y = mnist_train[0][:64], mnist_train[1][:64]
    steps = {}
    for f in (0.25, 1.0):
        model = _small_cnn()
        start = model.get_weights()
        wrapper = AdversarialTraining(model, LinfPGD(model, 0.2, steps=2, seed=0), adversarial_fraction=f)
        wrapper.compile(optimizer=keras.optimizers.SGD(0.1))
        wrapper.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
        steps[f] = [a - b for a, b in zip(model.get_weights(), start)]
    model = _small_cnn()
    start = model.get_weights()
    clean = [a - b for a, b in zip(_sgd_step(model, x, y), start)]
    for s25, s1, c in zip(steps[0.25], steps[1.0], clean):
        np.testing.assert_allclose(s25, 0.75 * c + 0.25 * s1, atol=1e-5)


_MIRRORED = """
    from tfperceptual.attacks import LinfPGD
    from tfperceptual.training import AdversarialTraining

    def build():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
                                 keras.layers.Flatten(), keras.layers.Dense(10)])

    def run(strategy, ds):
        with strategy.scope():
            model = build()
            wrapper = AdversarialTraining(model, LinfPGD(model, 0.1, steps=3, random_start=False))
            wrapper.compile(optimizer=keras.optimizers.SGD(0.1))
        hist = wrapper.fit(ds, epochs=1, verbose=0)
        out = {"loss": hist.history["loss"][0], "kernel": float(np.sum(model.get_weights()[0]))}
        with strategy.scope():  # TRADES with a random start: its own per-replica scaling of the KL term
            model = build()
            wrapper = AdversarialTraining(model, LinfPGD(model, 0.1, steps=2, loss="kl", seed=0), method="trades")
            wrapper.compile(optimizer=keras.optimizers.SGD(0.1))
        out["trades_loss"] = wrapper.fit(ds, epochs=1, verbose=0).history["loss"][0]
        return out
"""


def test_first_step_under_mirrored_strategy_matches_one_device(single_and_mirrored):
    """Two logical CPU devices, tf.data input: the same first-step loss and update as without a strategy."""
    res = single_and_mirrored(_MIRRORED)
    assert res["mirrored"]["replicas"] == 2
    assert res["mirrored"]["loss"] == pytest.approx(res["single"]["loss"], rel=1e-5)
    assert res["mirrored"]["kernel"] == pytest.approx(res["single"]["kernel"], rel=1e-5)
    # the random starts differ (each replica hashes its own half-batch), the clean CE term does not
    assert np.isfinite(res["mirrored"]["trades_loss"])
    assert res["mirrored"]["trades_loss"] == pytest.approx(res["single"]["trades_loss"], rel=0.2)


def test_trades_step_follows_its_objective(mnist_train):
    """One SGD step of TRADES = the step along −∇[CE(f(x), y) + β KL(f(x) ‖ f(x_adv))] computed by hand."""
    x, y = mnist_train[0][:64], mnist_train[1][:64]
    model = _small_cnn()
    attack = L2PGD(model, 1.5, steps=2, loss="kl", seed=0)
    x_adv = attack.perturb(tf.constant(x), tf.constant(y, tf.int64))
    twin = _small_cnn()
    with tf.GradientTape() as tape:
        logits, logits_adv = twin(x, training=True), twin(x_adv, training=True)
        ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        p = tf.nn.softmax(logits)
        kl = tf.reduce_mean(tf.reduce_sum(p * (tf.nn.log_softmax(logits) - tf.nn.log_softmax(logits_adv)), -1))
        total = ce + 6.0 * kl
    grads = tape.gradient(total, twin.trainable_variables)
    want = [v.numpy() - 0.1 * g.numpy() for v, g in zip(twin.trainable_variables, grads)]
    wrapper = AdversarialTraining(model, attack, method="trades", beta=6.0)
    wrapper.compile(optimizer=keras.optimizers.SGD(0.1))
    hist = wrapper.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    assert hist.history["loss"][0] == pytest.approx(float(total), rel=1e-4)
    for v, w in zip(model.trainable_variables, want):
        np.testing.assert_allclose(v.numpy(), w, atol=1e-5)


def test_robust_accuracy_is_the_worst_case_over_attacks(mnist_model, mnist_sample):
    from tfperceptual.evaluation import robust_accuracy

    x, y = mnist_sample
    x, y = x[:100], y[:100].copy()
    y[0] = (y[0] + 1) % 10  # a wrong label: not robust whatever the attack does
    one, mask = robust_accuracy(L2PGD(mnist_model, 1.0, steps=5, seed=0), x, y, return_mask=True)
    both = robust_accuracy([L2PGD(mnist_model, 1.0, steps=5, seed=s) for s in (0, 1)], x, y)
    assert not mask[0] and both <= one
    with pytest.raises(ValueError, match="at least one"):
        robust_accuracy([], x, y)
