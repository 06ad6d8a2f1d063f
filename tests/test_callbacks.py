"""AdversarialEvaluation adds its keys to the epoch logs."""

import keras
import pytest

from tfperceptual.attacks import FPGAP
from tfperceptual.callbacks import AdversarialEvaluation


def test_callback_adds_keys_to_history(mnist_sample, tmp_path):
    x, y = mnist_sample
    keras.utils.set_random_seed(0)
    inp = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    out = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(h))
    model = keras.Model(inp, out)
    model.compile("adam", "sparse_categorical_crossentropy")
    attack = FPGAP(model, eps=0.3, steps=5)
    cb = AdversarialEvaluation(attack, x[:16], y[:16], every=1)
    csv = tmp_path / "log.csv"
    hist = model.fit(x[:256], y[:256], epochs=2, batch_size=64, verbose=0,
                     callbacks=[cb, keras.callbacks.CSVLogger(str(csv))])
    for key in ("adv_fooling_rate", "adv_mean_ssim", "adv_mean_psnr", "adv_accuracy"):
        assert len(hist.history[key]) == 2
    assert all(0 <= v <= 1 for v in hist.history["adv_fooling_rate"])
    assert all(0 < v < 1 for v in hist.history["adv_mean_ssim"])
    assert "adv_fooling_rate" in csv.read_text().splitlines()[0]


def test_callback_every_and_validation(mnist_model, mnist_sample):
    x, y = mnist_sample
    attack = FPGAP(mnist_model, eps=0.3, steps=3)
    cb = AdversarialEvaluation(attack, x[:4], y[:4], every=2)
    logs = {}
    cb.on_epoch_end(0, logs)
    assert logs == {}
    cb.on_epoch_end(1, logs)
    assert set(logs) == {"adv_fooling_rate", "adv_mean_ssim", "adv_mean_psnr", "adv_accuracy"}
    with pytest.raises(ValueError, match="y_val"):
        AdversarialEvaluation(attack, x[:4], y[:3])
    with pytest.raises(ValueError, match="every"):
        AdversarialEvaluation(attack, x[:4], y[:4], every=0)
