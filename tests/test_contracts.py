"""Contract tests over every registered attack and explainer (after Foolbox's tests/test_attacks.py and
Xplique's tests/attributions/test_common.py): each runs on every kind of Keras model — functional and
Sequential, logits, a Softmax() layer, Dense(activation="softmax"), a Lambda softmax, a Rescaling layer
inside, and the same network as a PerceptualRegularization (a subclassed model with a decoder head) — gives the
*same* answer for the same network whatever its head, handles a batch of 1, and rejects bad input with a clear
error."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfperceptual.attacks import ATTACKS, Attack, AttackResult
from tfperceptual.explain import EXPLAINERS, Explainer, Explanation

SHAPE = (16, 16, 3)
K = 5

#: options that keep each method quick; a newly registered method must be added here (the test fails otherwise)
ATTACK_OPTIONS = {"fpgap": dict(eps=0.2, steps=3), "pgap": dict(eps=0.2, steps=3), "fgsm": dict(eps=0.05),
                  "fgm": dict(eps=0.5), "pgd": dict(eps=0.05, steps=3, seed=0), "pgd_l2": dict(eps=0.5, steps=3, seed=0),
                  "linf_pgd": dict(eps=0.05, steps=3, seed=0), "l2_pgd": dict(eps=0.5, steps=3, seed=0),
                  "fgsm_rs": dict(eps=0.05, seed=0), "l1q_fw": dict(eps=2.0, q=0.1, steps=3, seed=0),
                  "l2_fw": dict(eps=0.5, steps=3), "sparse_l1": dict(eps=2.0, steps=3),
                  "ead": dict(eps=5.0, steps=5, binary_search_steps=2),
                  "ssim_apgd": dict(eps=0.2, steps=3, seed=0), "linf_apgd": dict(eps=0.05, steps=3, seed=0),
                  "l2_apgd": dict(eps=0.5, steps=3, seed=0), "ssim_square": dict(eps=0.2, queries=5, seed=0)}
EXPLAINER_OPTIONS = {"perceptual_ball": dict(layers=[0], lambda_perceptual=1.0, steps=3),
                     "perceptual_ball_guided": dict(layers=[0], lambda_perceptual=1.0, steps=3),
                     "noper": dict(steps=3), "saliency": {}, "smoothgrad": dict(samples=2, seed=0), "gradcam": {},
                     "gradcam++": {}, "scorecam": dict(max_N=2),
                     "counterfactual": dict(norm="l1q", eps=2.0, q=0.1, steps=3, mode="label")}


def _layers(head):
    """Rescaling → two ReLU convolutions → global average pooling → a dense head (+ the head variant)."""
    out = [keras.layers.Rescaling(2.0, offset=-1.0, name="rescale"),
           keras.layers.Conv2D(4, 3, activation="relu", name="c1"),
           keras.layers.Conv2D(6, 3, activation="relu", name="c2"), keras.layers.GlobalAveragePooling2D(name="gap")]
    if head == "dense_softmax":
        return out + [keras.layers.Dense(K, activation="softmax", name="head")]
    out.append(keras.layers.Dense(K, name="head"))
    if head == "softmax_layer":
        out.append(keras.layers.Softmax(name="probs"))
    elif head == "lambda_softmax":
        out.append(keras.layers.Lambda(lambda z: keras.ops.softmax(z), name="probs"))
    return out


def _model(kind, head):
    layers = _layers(head)
    if kind == "sequential":
        return keras.Sequential([keras.Input(SHAPE)] + layers, name=f"seq_{head}")
    inp = keras.Input(SHAPE)
    h = inp
    for layer in layers:
        h = layer(h)
    return keras.Model(inp, h, name=f"func_{head}")


VARIANTS = [("functional", "logits"), ("sequential", "logits"), ("sequential", "softmax_layer"),
            ("sequential", "dense_softmax"), ("functional", "lambda_softmax"), ("functional", "softmax_layer")]


def _perceptual(ref):
    """The reference network as H = C ∘ F split after c2, with a decoder on F: the same logits."""
    from tfperceptual.training import PerceptualRegularization

    layers = _layers("logits")
    inp = keras.Input(SHAPE)
    h = inp
    for layer in layers[:3]:
        h = layer(h)
    encoder = keras.Model(inp, h, name="encoder")
    z = keras.Input(tuple(h.shape[1:]))
    classifier = keras.Model(z, layers[4](layers[3](z)), name="classifier")
    zd = keras.Input(tuple(h.shape[1:]))
    d = keras.layers.Conv2DTranspose(SHAPE[-1], 5, activation="sigmoid")(zd)
    model = PerceptualRegularization(encoder, classifier, keras.Model(zd, d, name="decoder"), lam=1.0)
    for layer in layers:
        layer.set_weights(ref.get_layer(layer.name).get_weights())
    return model


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(7)
    ref = _model(*VARIANTS[0])
    out = {}
    for kind, head in VARIANTS:
        m = _model(kind, head)
        m.set_weights(ref.get_weights())  # the same network behind every head
        out[f"{kind}_{head}"] = m
    out["perceptual_logits"] = _perceptual(ref)
    return out


@pytest.fixture(scope="module")
def data(models):
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (4, *SHAPE)).astype(np.float32)
    y = np.argmax(models["functional_logits"](x).numpy(), -1)
    return x, y


def _bad_images(x):
    """(images, the error they must raise): a single image, uint8, out of [0, 1], NaN, Inf, wrong channels."""
    return ((x[0], ValueError), ((x * 255).astype(np.uint8), TypeError), (x * 2, ValueError),
            (np.where(x > 0.5, np.nan, x), ValueError), (np.where(x > 0.5, np.inf, x), ValueError),
            (x[..., :1], ValueError))


def test_every_registered_method_has_contract_options():
    assert set(ATTACKS) <= set(ATTACK_OPTIONS), set(ATTACKS) - set(ATTACK_OPTIONS)
    assert set(EXPLAINERS) <= set(EXPLAINER_OPTIONS), set(EXPLAINERS) - set(EXPLAINER_OPTIONS)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_contract_on_every_model_kind(name, models, data):
    x, y = data
    results = {}
    for variant, model in models.items():
        attack = ATTACKS[name](model, **ATTACK_OPTIONS[name])
        assert isinstance(attack, Attack) and attack.name == name and attack.num_classes == K
        res = attack(x, y)
        assert isinstance(res, AttackResult)
        assert res.adversarial.shape == x.shape and res.adversarial.dtype == np.float32
        assert res.adversarial.min() >= 0 and res.adversarial.max() <= 1
        pred = np.argmax(np.asarray(model(res.adversarial)), -1)  # the user's own model (any head) agrees
        np.testing.assert_array_equal(pred, res.adv_labels, err_msg=variant)
        np.testing.assert_array_equal(res.success, pred != y)
        assert res.ssim.shape == (4,) and res.psnr.shape == (4,)
        results[variant] = res.adversarial
    ref = results["functional_logits"]
    for variant, adv in results.items():  # the same network: the same adversarials, whatever the head
        np.testing.assert_allclose(adv, ref, atol=1e-5, err_msg=f"{name} on {variant}")


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_batch_of_one_metrics_off_and_bad_input(name, models, data):
    x, y = data
    attack = ATTACKS[name](models["sequential_dense_softmax"], **ATTACK_OPTIONS[name])
    one = attack(x[:1], y[:1], metrics=False)
    assert one.adversarial.shape == (1, *SHAPE) and one.ssim is None and one.psnr is None
    for bad, exc in _bad_images(x):
        with pytest.raises(exc):
            attack(bad, y)
    for labels in (y[:-1], y + K, y.astype(np.float32) + 0.5):
        with pytest.raises((TypeError, ValueError)):
            attack(x, labels)


@pytest.mark.parametrize("name", [n for n, cls in ATTACKS.items() if cls.graph_pure])
def test_graph_pure_attacks_follow_eps_inside_a_traced_function(name, models, data):
    """perturb inside a user's tf.function: a new ε (and ε1) takes effect in the graph traced before, with no
    new trace of the user's function or of the attack's own loop."""
    x, y = data
    attack = ATTACKS[name](models["sequential_softmax_layer"], **ATTACK_OPTIONS[name])
    assert attack.graph_pure
    step = tf.function(lambda images, labels: attack.perturb(images, labels))
    before = step(tf.constant(x), tf.constant(y)).numpy()
    np.testing.assert_allclose(before, attack(x, y).adversarial, atol=1e-6)
    traces, inner = step.experimental_get_tracing_count(), attack._run.experimental_get_tracing_count()
    attack.eps = 0.6
    after = step(tf.constant(x), tf.constant(y)).numpy()
    np.testing.assert_allclose(after, attack(x, y).adversarial, atol=1e-6)
    assert np.abs(after - before).max() > 1e-3  # the traced graph saw the new ε
    if hasattr(attack, "eps_luminance"):  # ε1 = 0 keeps each channel's mean; ε1 > 0 lets it move
        attack.eps_luminance = 0.3
        moved = step(tf.constant(x), tf.constant(y)).numpy()
        np.testing.assert_allclose(moved, attack(x, y).adversarial, atol=1e-6)
        np.testing.assert_allclose(after.mean((1, 2)), x.mean((1, 2)), atol=1e-5)
        assert np.abs(moved.mean((1, 2)) - x.mean((1, 2))).max() > 1e-4
    assert step.experimental_get_tracing_count() == traces
    assert attack._run.experimental_get_tracing_count() == inner
    with pytest.raises(AttributeError, match="fixed"):
        attack.steps = 7  # read when the loop is traced: refused, not silently ignored


@pytest.mark.parametrize("name", [n for n, cls in ATTACKS.items() if not cls.graph_pure])
def test_attacks_that_are_not_graph_pure_say_so(name, models, data):
    attack = ATTACKS[name](models["functional_logits"], **ATTACK_OPTIONS[name])
    assert not attack.graph_pure
    with pytest.raises(NotImplementedError, match="not graph-pure"):
        attack.perturb(tf.constant(data[0]), tf.constant(data[1]))


@pytest.mark.parametrize("name", ["fpgap", "pgap", "l1q_fw", "l2_fw", "ssim_apgd"])
def test_perturb_runs_inside_a_keras_train_step(name, models, data):
    """Adversarial training in Model.fit: train_step calls attack.perturb at the current weights."""
    x, y = data
    net = _model("sequential", "dense_softmax")
    net.set_weights(models["functional_logits"].get_weights())
    attack = ATTACKS[name](net, **ATTACK_OPTIONS[name])

    class Adversarial(keras.Model):
        def __init__(self, classifier, atk):
            super().__init__()
            self.classifier, self.atk = classifier, atk

        def call(self, inputs, training=False):
            return self.classifier(inputs, training=training)

        def train_step(self, batch):
            images, labels = batch
            adv = self.atk.perturb(images, labels)
            with tf.GradientTape() as tape:
                loss = self.compute_loss(x=adv, y=labels, y_pred=self(adv, training=True))
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply(grads, self.trainable_variables)
            return {"loss": loss}

    model = Adversarial(net, attack)
    # jit_compile=True is what Keras picks on accelerators: the whole train step, attack included, is compiled
    # by XLA (which runs on this CPU too)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", jit_compile=True)
    before = [w.copy() for w in net.get_weights()]
    hist = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(2), epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(hist.history["loss"][0])
    assert any(not np.allclose(a, b) for a, b in zip(before, net.get_weights()))


# the guided ball is the perceptual ball times its input-gradient guide (both covered: the perceptual_ball case
# here and test_explain's guided test); its own case doubles the slowest contract test, so it runs with -m slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "perceptual_ball_guided" else n
                                  for n in EXPLAINERS])
def test_explainer_contract_on_every_model_kind(name, models, data):
    x, y = data
    maps = {}
    for variant, model in models.items():
        explainer = EXPLAINERS[name](model, **EXPLAINER_OPTIONS[name])
        assert isinstance(explainer, Explainer) and explainer.name == name
        e = explainer.explain(x, y)
        assert isinstance(e, Explanation)
        assert e.saliency.shape == x.shape[:3] and e.saliency.dtype == np.float32
        assert np.all(np.isfinite(e.saliency)) and e.saliency.min() >= 0
        np.testing.assert_array_equal(e.labels, y)
        np.testing.assert_array_equal(explainer(x, y).saliency, e.saliency)  # __call__ is explain
        maps[variant] = e.saliency
    ref = maps["functional_logits"]
    for variant, m in maps.items():  # every head explains the logit: the same maps
        np.testing.assert_allclose(m, ref, atol=1e-4, rtol=1e-3, err_msg=f"{name} on {variant}")


@pytest.mark.parametrize("name", list(EXPLAINERS))
def test_explainer_batch_of_one_default_labels_and_bad_input(name, models, data):
    x, y = data
    explainer = EXPLAINERS[name](models["sequential_logits"], **EXPLAINER_OPTIONS[name])
    one = explainer.explain(x[:1])  # labels default to the prediction
    assert one.saliency.shape == (1, *SHAPE[:2]) and one.labels.tolist() == y[:1].tolist()
    for bad, exc in _bad_images(x):
        with pytest.raises(exc):
            explainer.explain(bad, y)
    with pytest.raises(ValueError):
        explainer.explain(x, y + K)
