"""PGAP and FPGAP on real MNIST images with the shipped model."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from solvers import ssim_ball
from tfperceptual.attacks import FPGAP, PGAP, AttackResult

TOL = 1e-6


def _assert_iterates_feasible(result, x, eps):
    b = len(x)
    xr = x.reshape(b, -1).astype(np.float64)
    ball = ssim_ball(xr, eps)
    assert result.iterates is not None and result.iterates.shape[1:] == x.shape
    for it in result.iterates:
        it = it.reshape(b, -1).astype(np.float64)
        v = ball.violation(it)
        assert np.all(v["ball"] <= TOL * np.maximum(1.0, ball.radius)), v["ball"].max()
        assert np.all(v["mean"] <= TOL), v["mean"].max()
        assert it.min() >= 0.0 and it.max() <= 1.0


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_every_fpgap_iterate_is_in_the_ssim_ball_and_box(mnist_model, mnist_batch, eps):
    x, y = mnist_batch
    res = FPGAP(mnist_model, eps=eps, steps=20)(x, y, return_iterates=True)
    _assert_iterates_feasible(res, x, eps)
    assert res.iterates.shape[0] >= 1


def test_every_pgap_iterate_is_in_the_ssim_ball_and_box(mnist_model, mnist_batch):
    x, y = mnist_batch
    x, y = x[:6], y[:6]
    res = PGAP(mnist_model, eps=0.15, steps=5)(x, y, return_iterates=True)
    _assert_iterates_feasible(res, x, 0.15)
    assert not res.failed.any()


def test_result_fields_are_consistent(mnist_model, mnist_batch):
    x, y = mnist_batch
    res = FPGAP(mnist_model, eps=0.4, steps=30)(x, y)
    assert isinstance(res, AttackResult)
    assert res.adversarial.shape == x.shape and res.adversarial.dtype == np.float32
    pred = np.argmax(mnist_model(res.adversarial, training=False).numpy(), -1)
    np.testing.assert_array_equal(pred, res.adv_labels)
    np.testing.assert_array_equal(res.success, pred != y)
    assert res.success.mean() > 0.9  # ε = 0.4 (S2 ≥ 0.84) fools nearly every image
    assert np.all(res.steps[res.success] >= 1) and np.all(res.steps <= 30)
    assert np.all(res.ssim < 1) and np.all(res.psnr < 100)


def test_stops_at_first_label_change(mnist_model, mnist_batch):
    x, y = mnist_batch
    res = FPGAP(mnist_model, eps=0.3, steps=50)(x, y, return_iterates=True)
    for i in np.flatnonzero(res.success):
        k = res.steps[i]
        before = res.iterates[k - 2, i] if k >= 2 else x[i]
        p_before = np.argmax(mnist_model(before[None], training=False).numpy())
        assert p_before == y[i], "label had already changed one step earlier"


def test_larger_eps_fools_more(mnist_model, mnist_batch):
    x, y = mnist_batch
    atk = FPGAP(mnist_model, eps=0.05, steps=20)
    low = atk(x, y)
    atk.eps = 0.4
    high = atk(x, y)
    assert high.success.mean() > low.success.mean()
    assert high.ssim.mean() < low.ssim.mean()


def test_pgap_objective_step_beats_fpgap_step(mnist_model, mnist_batch):
    """One exact step moves at least as far along the gradient as the closed-form step."""

    from solvers import maximize_linear_over_ssim_ball

    from tfperceptual.attacks import attack_loss

    x, y = mnist_batch
    x = x[:4]
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(attack_loss(mnist_model(xt), tf.constant(y[:4]), None, "cw", 50.0))
    g = tape.gradient(loss, xt).numpy().reshape(4, -1).astype(np.float64)
    xr = x.reshape(4, -1).astype(np.float64)
    y_exact = maximize_linear_over_ssim_ball(g, xr, 0.3, method="cvxpy")
    y_cf = maximize_linear_over_ssim_ball(g, xr, 0.3, method="closed_form")
    assert np.all((g * y_exact).sum(1) >= (g * y_cf).sum(1) - 1e-6)


def test_targeted_attack_reaches_target(mnist_model, mnist_batch):
    x, y = mnist_batch
    target = (y + 1) % 10
    res = FPGAP(mnist_model, eps=0.6, steps=50)(x, y, target=target)
    np.testing.assert_array_equal(res.success, res.adv_labels == target)
    assert res.success.mean() > 0.7


def test_sequential_and_softmax_models_work(mnist_model, mnist_batch):
    x, y = mnist_batch
    x, y = x[:8], y[:8]
    seq = keras.Sequential([keras.Input((28, 28, 1))] + [l for l in mnist_model.layers[1:-1]] +
                           [keras.layers.Dense(10, activation="softmax")])
    seq.layers[-1].set_weights(mnist_model.layers[-1].get_weights())
    ref = FPGAP(mnist_model, eps=0.3, steps=10)(x, y)
    res = FPGAP(seq, eps=0.3, steps=10)(x, y)
    np.testing.assert_allclose(res.adversarial, ref.adversarial, atol=1e-5)
    res_p = PGAP(seq, eps=0.3, steps=2)(x[:2], y[:2])
    assert res_p.adversarial.shape == (2, 28, 28, 1)


def test_solver_failure_on_one_image_keeps_the_rest(mnist_model, mnist_batch, monkeypatch):
    import solvers.oracles as oracles_mod

    real = oracles_mod.solve_qcqp_batch
    calls = []

    def flaky(g, x, *a, **k):
        res = real(g, x, *a, **k)
        calls.append(1)
        if len(calls) > 1:
            return res
        res.ok[0] = False
        res.y[0] = np.nan
        res.messages[0] = "ECOS: status infeasible_inaccurate"
        return res

    monkeypatch.setattr(oracles_mod, "solve_qcqp_batch", flaky)  # looked up when the step runs
    x, y = mnist_batch
    res = PGAP(mnist_model, eps=0.4, steps=3, solver="cvxpy")(x[:3], y[:3])
    assert res.failed[0] and not res.success[0] and "infeasible_inaccurate" in res.messages[0]
    np.testing.assert_array_equal(res.adversarial[0], x[0])  # last verified iterate: the original
    assert not res.failed[1:].any() and res.success[1:].all()


@pytest.mark.parametrize("images,labels,exc,match", [
    (lambda x: x[0], None, ValueError, r"\(B, H, W, C\)"),
    (lambda x: (x * 255).astype(np.uint8), None, TypeError, "floating"),
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x), None, ValueError, "NaN"),
    (lambda x: x * 2, None, ValueError, "outside"),
    (lambda x: np.repeat(x, 3, -1), None, ValueError, "channels"),
    (None, lambda y: y[:-1], ValueError, "length"),
    (None, lambda y: y + 10, ValueError, r"\[0, 10\)"),
    (None, lambda y: y.astype(np.float32) + 0.5, TypeError, "integer"),
])
def test_bad_inputs_raise(mnist_model, mnist_batch, images, labels, exc, match):
    x, y = mnist_batch
    x, y = x[:4], y[:4]
    atk = FPGAP(mnist_model, eps=0.2, steps=2)
    with pytest.raises(exc, match=match):
        atk(images(x) if images else x, labels(y) if labels else y)


@pytest.mark.parametrize("eps", [0.0, 1.0, -0.2, float("nan")])
def test_eps_out_of_range_raises(mnist_model, eps):
    with pytest.raises(ValueError, match="eps"):
        FPGAP(mnist_model, eps=eps)
    with pytest.raises(ValueError, match="eps"):
        PGAP(mnist_model, eps=eps)


def test_non_differentiable_model_raises():
    from tfperceptual.models import NotDifferentiableError

    inp = keras.Input((28, 28, 1))
    h = keras.layers.Lambda(lambda t: keras.ops.stop_gradient(t))(inp)
    out = keras.layers.Dense(10)(keras.layers.Flatten()(h))
    with pytest.raises(NotDifferentiableError, match="differentiable"):
        FPGAP(keras.Model(inp, out), eps=0.2)


def test_without_early_stop_all_steps_run(mnist_model, mnist_batch):
    x, y = mnist_batch
    res = FPGAP(mnist_model, eps=0.3, steps=7, early_stop=False)(x[:8], y[:8], return_iterates=True)
    assert np.all(res.steps == 7) and res.iterates.shape[0] == 7
    _assert_iterates_feasible(res, x[:8], 0.3)


def test_colour_images_one_ball_per_channel(tmp_path, monkeypatch):
    """On real CIFAR-10 images every channel of every iterate stays in its own SSIM ball."""
    from tfperceptual.datasets import load_cifar10

    monkeypatch.setenv("TFPERCEPTUAL_CACHE", str(tmp_path))
    x, _ = load_cifar10("test")
    x = x[::1000][:6]
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(8, 3, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(h)))
    y = np.argmax(model(x).numpy(), -1)
    for attack in (FPGAP(model, eps=0.1, steps=4, early_stop=False), PGAP(model, eps=0.1, steps=2, early_stop=False)):
        res = attack(x, y, return_iterates=True)
        for c in range(3):
            ball = ssim_ball(x[..., c].reshape(6, -1).astype(np.float64), 0.1)
            for it in res.iterates:
                v = ball.violation(it[..., c].reshape(6, -1).astype(np.float64))
                assert np.all(v["ball"] <= TOL * np.maximum(1.0, ball.radius)) and np.all(v["mean"] <= TOL)
        assert np.all(res.ssim < 1.0)


def test_pgap_exact_step_equals_the_cvxpy_step(mnist_model, mnist_batch):
    x, y = mnist_batch
    x, y = x[:6], y[:6]
    kw = dict(eps=0.2, steps=1, early_stop=False)
    exact = PGAP(mnist_model, solver="exact", **kw)(x, y)
    ref = PGAP(mnist_model, solver="CLARABEL", **kw)(x, y)
    assert not exact.failed.any() and not ref.failed.any()
    np.testing.assert_allclose(exact.adversarial, ref.adversarial, atol=2e-5)


def test_pgap_exact_uncertified_step_fails_the_image_and_keeps_the_last_iterate(mnist_model, mnist_batch,
                                                                                 monkeypatch):
    from solvers.oracles import ExactSSIMOracle

    real = ExactSSIMOracle.certify

    def refused(self, g, x):  # the solver's answer with every certificate refused
        r = real(self, g, x)
        return {**r, "ok": tf.zeros_like(r["ok"])}

    monkeypatch.setattr(ExactSSIMOracle, "certify", refused)
    x, y = mnist_batch
    res = PGAP(mnist_model, eps=0.3, steps=3)(x[:3], y[:3])
    assert res.failed.all() and not res.success.any()
    assert "certify" in res.messages[0]
    np.testing.assert_array_equal(res.adversarial, x[:3])
    np.testing.assert_array_equal(res.steps, 0)


# ----------------------------------------------------------------------------- defects found by probing (issue 14)
@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(solver="foo"), ValueError, "solver"),
    (dict(solver=("exact", "ECOS")), ValueError, "solver"),
    (dict(gap_tol=-1.0), ValueError, "gap_tol"),
    (dict(gap_tol=0.0), ValueError, "gap_tol"),
    (dict(steps=0), ValueError, "steps"),
    (dict(loss="hinge"), ValueError, "loss"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(eps_luminance=1.0), ValueError, "eps_luminance"),
    (dict(solver=123), TypeError, "solver"),
    (dict(solver="closed_form"), ValueError, "FPGAP"),
    (dict(solver="GLPK"), ValueError, "solver"),
])
def test_impossible_pgap_settings_raise_at_construction(mnist_model, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        PGAP(mnist_model, eps=0.2, **kwargs)


def test_foolbox_attack_with_zero_steps_raises(mnist_model):
    from tfperceptual.attacks import FoolboxAttack

    with pytest.raises(ValueError, match="steps"):
        FoolboxAttack(mnist_model, "pgd", eps=0.1, steps=0)


def test_a_model_with_zero_input_gradient_warns_once_naming_the_images(mnist_batch):
    """A model built on sign() has a gradient path but a zero gradient: the attack says so instead of running
    every step silently."""
    x, _ = mnist_batch
    inp = keras.Input((28, 28, 1))
    h = keras.layers.Lambda(lambda t: keras.ops.sign(t - 0.5))(inp)
    model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(h)))
    y = np.argmax(model(x[:3]).numpy(), -1)
    with pytest.warns(RuntimeWarning, match=r"zero gradient .* images \[0, 1, 2\]") as record:
        res = FPGAP(model, eps=0.2, steps=3)(x[:3], y)
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    assert res.zero_gradient.all() and not res.success.any()


def test_options_read_at_trace_time_are_fixed_after_construction(mnist_model):
    """Assigning steps/loss/… after the loop was traced used to be ignored silently; now it raises, for the
    attacks, their oracles and the perceptual ball (ε and ε1 stay assignable: they are variables)."""
    from tfperceptual.explain import PerceptualBall

    fp = FPGAP(mnist_model, eps=0.2, steps=3, box="clip")
    for name, value in (("steps", 5), ("loss", "ce"), ("box", "restore"), ("bounds", (0, 2))):
        with pytest.raises(AttributeError, match="fixed"):
            setattr(fp, name, value)
    with pytest.raises(AttributeError, match="fixed"):
        fp.oracle.box = "restore"
    fp.eps, fp.eps_luminance = 0.3, 0.1
    assert (fp.eps, fp.eps_luminance) == (0.3, 0.1)
    pb = PerceptualBall(mnist_model, layers=[0], lambda_perceptual=1.0, steps=2)
    with pytest.raises(AttributeError, match="fixed"):
        pb.lambda_perceptual = 5.0
    pb.sigma = 2.0  # applied after the optimisation: free
    with pytest.raises(ValueError, match="gap_tol"):
        PGAP(mnist_model, eps=0.2, solver="cvxpy", gap_tol=1e-3)


def test_an_ssim_ball_step_costs_one_forward_and_one_backward_pass():
    """Issue 18: the success test reads the logits of the gradient pass, so ``steps`` steps run ``steps`` forward
    passes (each with its backward pass) and one more forward pass for the last iterates — not two per step."""
    import keras
    import tensorflow as tf

    from tfperceptual.attacks import FPGAP, PGAP

    calls = tf.Variable(0, dtype=tf.int64, trainable=False)

    class Count(keras.layers.Layer):
        def call(self, x):
            calls.assign_add(1)
            return x

    inp = keras.Input((28, 28, 1))
    h = keras.layers.Flatten()(Count()(inp))
    model = keras.Model(inp, keras.layers.Dense(10, kernel_initializer=keras.initializers.RandomNormal(seed=0))(h))
    x = np.random.default_rng(0).uniform(0, 1, (6, 28, 28, 1)).astype(np.float32)
    y = np.argmax(model(x).numpy(), -1)
    for attack in (FPGAP(model, 0.05, steps=7, early_stop=False), PGAP(model, 0.05, steps=7, early_stop=False)):
        for run in (lambda: attack(x, y), lambda: attack.perturb(tf.constant(x), tf.constant(y))):
            run()  # trace
            calls.assign(0)
            run()
            assert int(calls.numpy()) == 7 + 1, type(attack).__name__
