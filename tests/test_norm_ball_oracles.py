"""The ℓ1-q, ℓ1 ∩ box, ℓ2 and ℓ2 ∩ box linear oracles (solvers/norm_balls.py): exact against CVXPY, the
ℓ1-q step's count and norm, graph purity."""

import numpy as np
import pytest
import tensorflow as tf

from solvers.norm_balls import L1BoxOracle, L1QOracle, L2BoxOracle, L2Oracle, cvxpy_norm_ball, l1q_count, l1q_step


def _instances(n_inst, seed=0):
    """Random rows with pixels on the box faces, zero gradients and ties, and radii from tiny to box-binding."""
    rng = np.random.default_rng(seed)
    for i in range(n_inst):
        n = int(rng.integers(4, 80))
        x = rng.uniform(0, 1, n)
        x[rng.random(n) < 0.2] = 0.0
        x[rng.random(n) < 0.2] = 1.0
        g = rng.normal(size=n)
        g[rng.random(n) < 0.1] = 0.0
        if i % 4 == 0:
            g[: n // 2] = g[0]  # ties
        eps = float(np.exp(rng.uniform(np.log(0.01), np.log(2.0 * np.sqrt(n)))))  # up to beyond the box corner
        yield g, x, eps


def _check_against_cvxpy(oracle_of, norm, cap_of=None, n_inst=110):
    worst_gain, worst_viol = 0.0, 0.0
    for g, x, eps in _instances(n_inst):
        oracle = oracle_of(eps)
        r = oracle(tf.constant(g[None]), tf.constant(x[None]))
        assert bool(r.ok.numpy()[0])
        s = r.y.numpy()[0] - x
        cap = None if cap_of is None else cap_of(eps, len(g))
        ref = cvxpy_norm_ball(g, x, eps, norm, cap=cap)
        ours, theirs = g @ s, g @ ref
        scale = max(1.0, abs(theirs))
        assert ours >= theirs - 1e-6 * scale, (ours, theirs)  # never below the reference
        assert abs(ours - theirs) <= 1e-6 * scale
        norm_value = np.abs(s).sum() if norm == "l1" else np.linalg.norm(s)
        viol = max(norm_value - eps, (-(x + s)).max(), (x + s - 1).max(),
                   0.0 if cap is None else (np.abs(s) - cap).max())
        assert viol <= 1e-8, viol
        worst_gain, worst_viol = max(worst_gain, abs(ours - theirs) / scale), max(worst_viol, viol)
    return worst_gain, worst_viol


def test_l1_box_knapsack_agrees_with_cvxpy_on_110_instances():
    _check_against_cvxpy(lambda eps: L1BoxOracle(eps), "l1")


def test_l2_box_oracle_agrees_with_cvxpy_on_110_instances():
    _check_against_cvxpy(lambda eps: L2BoxOracle(eps), "l2")


def test_l1q_box_oracle_is_the_knapsack_over_the_capped_ball_and_agrees_with_cvxpy():
    q = 0.3
    _check_against_cvxpy(lambda eps: L1QOracle(eps, q, box="exact"), "l1",
                         cap_of=lambda eps, n: eps / max(1, round(q * n)))


def test_l2_box_oracle_in_float32_near_the_box_corner():
    """Late breakpoints (most entries clipped) in float32: the suffix sums of g² must not cancel (the attacks
    run their oracles in float32); heavy-tailed gradients, 70 % of the pixels on a face, ε up to 0.99 × the
    corner's norm — every row certified and within 1e-5 of the float64 answer's objective."""
    rng = np.random.default_rng(7)
    for n in (784, 3072):
        x = rng.uniform(0, 1, (20, n))
        x[rng.random((20, n)) < 0.7] = 0.0
        g = rng.standard_t(1.5, (20, n))
        corner = np.linalg.norm(np.where(g > 0, 1 - x, np.where(g < 0, -x, 0.0)), axis=1)
        for frac in (0.5, 0.9, 0.99):
            for i in range(20):
                eps = float(frac * corner[i])
                r32 = L2BoxOracle(eps, dtype="float32")(tf.constant(g[i:i + 1], tf.float32),
                                                        tf.constant(x[i:i + 1], tf.float32))
                assert bool(r32.ok.numpy()[0])
                s32 = r32.y.numpy()[0].astype(np.float64) - x[i]
                s64 = L2BoxOracle(eps)(tf.constant(g[i:i + 1]), tf.constant(x[i:i + 1])).y.numpy()[0] - x[i]
                assert g[i] @ s32 >= (g[i] @ s64) * (1 - 1e-5)
                assert np.linalg.norm(s32) <= eps * (1 + 1e-6)


def test_l2_oracle_without_box_is_the_normalised_gradient():
    g = np.random.default_rng(0).normal(size=(3, 50))
    x = np.full((3, 50), 0.5)
    s = L2Oracle(2.0)(tf.constant(g), tf.constant(x)).y.numpy() - x
    np.testing.assert_allclose(s, 2.0 * g / np.linalg.norm(g, axis=1, keepdims=True), rtol=1e-12)


@pytest.mark.parametrize("q", [0.01, 0.05, 0.3, 0.5, 1.0])
def test_l1q_step_has_exactly_k_nonzeros_and_l1_norm_eps_ties_included(q):
    rng = np.random.default_rng(1)
    n = 301
    g = rng.normal(size=(4, n))
    g[0] = 1.0  # all tied
    g[1, :200] = 0.7  # a tie across the cut
    g[2, ::3] = 0.0  # zero entries
    eps = 3.0
    y = L1QOracle(eps, q, box="none")(tf.constant(g), tf.constant(np.full((4, n), 0.5))).y.numpy()
    s = y - 0.5
    k = max(1, round(q * n))
    assert l1q_count(q, n).numpy() == k
    np.testing.assert_array_equal((s != 0).sum(1), k)
    np.testing.assert_allclose(np.abs(s).sum(1), eps, rtol=1e-12)
    np.testing.assert_allclose(np.abs(s[s != 0]), eps / k, rtol=1e-12)
    nz = s != 0
    assert np.all(np.sign(s[nz]) == np.where(g[nz] >= 0, 1, -1))
    for row in range(4):  # the k largest |g| (ties: the lower index first)
        order = np.argsort(-np.abs(g[row]), kind="stable")[:k]
        assert set(np.flatnonzero(nz[row])) == set(order)


def test_l1q_per_row_counts_and_the_authors_quantile():
    """maximize_k takes per-row k; our q = 1 − the authors' quantile: q = 0.05 modifies the entries above their
    95th percentile of |g| (without ties)."""
    rng = np.random.default_rng(2)
    g = rng.normal(size=(3, 1000))
    s = l1q_step(tf.constant(g), tf.constant(1.0, tf.float64), tf.constant([1, 50, 500]), k_max=600).numpy()
    np.testing.assert_array_equal((s != 0).sum(1), [1, 50, 500])
    keep_theirs = np.abs(g[1]) >= np.quantile(np.abs(g[1]), 0.95, method="higher")
    ours = L1QOracle(1.0, 0.05, box="none")(tf.constant(g[1:2]), tf.constant(np.zeros((1, 1000)))).y.numpy()[0] != 0
    np.testing.assert_array_equal(ours, keep_theirs)


def test_zero_gradient_rows_keep_x_and_radii_are_variables_followed_by_traced_graphs():
    x = np.full((2, 20), 0.5)
    g = np.zeros((2, 20))
    g[1, 3] = 1.0
    for oracle in (L1QOracle(1.0, 0.2), L1QOracle(1.0, 0.2, box="none"), L1BoxOracle(1.0), L2Oracle(1.0),
                   L2BoxOracle(1.0)):
        y = oracle(tf.constant(g), tf.constant(x)).y.numpy()
        np.testing.assert_array_equal(y[0], x[0])
        step = tf.function(lambda a, b, o=oracle: o(a, b, report=False).y)
        before = step(tf.constant(g), tf.constant(x)).numpy()
        oracle.eps = 0.25
        after = step(tf.constant(g), tf.constant(x)).numpy()
        assert np.abs(after - x).sum() < np.abs(before - x).sum()
        assert step.experimental_get_tracing_count() == 1
        with pytest.raises(ValueError, match="eps"):
            oracle.eps = 0.0


def test_the_oracles_compile_with_xla_and_match_eager():
    rng = np.random.default_rng(4)
    g = tf.constant(rng.normal(size=(5, 64)), tf.float32)
    x = tf.constant(rng.uniform(0, 1, (5, 64)), tf.float32)
    for oracle in (L1QOracle(2.0, 0.1, dtype="float32"), L1BoxOracle(2.0, dtype="float32"),
                   L2BoxOracle(1.0, dtype="float32")):
        xla = tf.function(lambda a, b, o=oracle: o(a, b, report=False).y, jit_compile=True)
        np.testing.assert_allclose(xla(g, x).numpy(), oracle(g, x).y.numpy(), atol=1e-5)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="q"):
        L1QOracle(1.0, q=0.0)
    with pytest.raises(ValueError, match="q"):
        L1QOracle(1.0, q=1.5)
    with pytest.raises(ValueError, match="box"):
        L1QOracle(1.0, box="clip")
    with pytest.raises(ValueError, match="eps"):
        L2BoxOracle(-1.0)
    with pytest.raises(ValueError, match="gap_tol"):
        L2BoxOracle(1.0, gap_tol=0.0)
