"""The localisation protocol end to end (CLI), ε calibration, and resuming from the cache."""

import json

import numpy as np
import pytest

from tfperceptual import cli
from tfperceptual.protocols import localize as loc


class _FakeAttack:
    """Fools the first round(10·ε) of ten images: fooling rate = min(1, ε)."""

    def __init__(self):
        self.eps = 0.0

    def __call__(self, x, labels):
        class R:
            pass

        r = R()
        k = int(round(10 * self.eps))
        r.adv_labels = np.where(np.arange(len(x)) < k, labels + 1, labels)
        return r


def test_calibration_picks_the_smallest_eps_reaching_the_target():
    x = np.zeros((10, 4, 4, 1), np.float32)
    y = np.zeros(10, np.int64)
    eps, rate, tried = loc.calibrate_eps(_FakeAttack(), x, y, [0.9, 0.3, 1.0, 0.5, 2.0], target=0.99)
    assert eps == 1.0 and rate == 1.0
    assert [t[0] for t in tried] == [0.3, 0.5, 0.9, 1.0]  # ascending, stops at the first success
    eps, rate, _ = loc.calibrate_eps(_FakeAttack(), x, y, [0.1, 0.2], target=0.99)
    assert eps == 0.2 and rate == pytest.approx(0.2)  # not reached: the largest, with its rate


class _ThresholdAttack:
    """Fools every image once ε ≥ ε* (and none below)."""

    def __init__(self, eps_star):
        self.eps, self.eps_star = 0.0, eps_star

    def __call__(self, x, labels):
        class R:
            pass

        r = R()
        r.adv_labels = labels + (self.eps >= self.eps_star)
        return r


@pytest.mark.parametrize("eps_star", [0.37, 0.26, 0.9, 0.013])
def test_calibration_bisects_between_the_grid_points(eps_star):
    x = np.zeros((4, 4, 4, 1), np.float32)
    y = np.zeros(4, np.int64)
    grid = [0.1, 0.2, 0.4, 0.8, 1.6]
    eps, rate, tried = loc.calibrate_eps(_ThresholdAttack(eps_star), x, y, grid, target=0.99, refine=4)
    assert rate == 1.0 and eps >= eps_star  # always a passing ε
    # within 2^(1/16) of ε* after 4 bisections of a ×2 bracket (the first grid point passes for
    # 0.013: halvings 0.05, 0.025, 0.0125 find a failing ε first)
    assert eps <= eps_star * 2 ** (1 / 16) + 1e-12
    assert all(r == (1.0 if e >= eps_star else 0.0) for e, r in tried)
    # refine=0: the plain sweep
    eps0, _, _ = loc.calibrate_eps(_ThresholdAttack(eps_star), x, y, grid, target=0.99)
    assert eps0 == min(e for e in grid if e >= eps_star)


def test_default_grid_extends_the_compare_grid_and_keeps_ssim_radii_below_one():
    g = loc.default_grid("fpgap", "mnist")
    assert max(g) < 1 and g == sorted(g)
    assert max(loc.default_grid("fgsm", "cifar10")) == pytest.approx(0.24)


def test_localize_cli_end_to_end_and_resume(tmp_path, monkeypatch, capsys):
    out = tmp_path / "loc"
    argv = ["localize", "--data", "mnist", "--n", "8", "--n-calibration", "8", "--attacks", "fpgap,fgsm",
            "--eps", "fgsm=0.3", "--steps", "5", "--batch-size", "8", "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["attacks"]) == {"fpgap", "fgsm"}
    fg = res["attacks"]["fgsm"]
    assert fg["eps"] == 0.3 and fg["calibration"] == []  # fixed ε: no sweep
    fp = res["attacks"]["fpgap"]
    tried = fp["calibration"]
    assert [fp["eps"], fp["fooling_rate"]] in tried or fp["calibration"] == []
    assert max(r for e, r in tried if e == fp["eps"]) >= 0.99
    assert all(rate < 0.99 for e, rate in tried if e < fp["eps"])  # every smaller ε tried fell short
    j = fp["thresholds"].index(0.11)
    for m in loc.METRICS:
        assert len(fp[m]) == len(fp["thresholds"])
    assert 0 <= fp["pixels_perturbed"][j] <= 1 and 0 <= fp["iou_outside"][j] <= 1
    # larger thresholds never mark more pixels as perturbed
    assert np.all(np.diff(fp["pixels_perturbed"]) <= 1e-12)
    report = (out / "report.md").read_text()
    assert "Table I" in report and "| ε | " in report
    for f in ("metrics_vs_threshold.png", "panels_fpgap.png", "panels_fgsm.png"):
        assert (out / f).stat().st_size > 1000
    # a second run is served from the cache: no attack is built
    monkeypatch.setattr(loc, "build_attack", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    assert cli.main(argv) == 0
    assert json.loads((out / "results.json").read_text())["attacks"]["fpgap"]["eps"] == fp["eps"]


def test_localize_cli_rejects_unknown_attacks(tmp_path, run_cli):
    code, _, err = run_cli(["localize", "--attacks", "fpgap,bogus", "--out", tmp_path])
    assert code == 2 and "argument --attacks" in err


def test_an_interrupted_attack_resumes_from_its_last_batch(tmp_path, monkeypatch):
    from tfperceptual import datasets
    from tfperceptual.models import zoo

    model = zoo.mnist_cnn()
    x = datasets.load_mnist("test")[0][:12]
    kw = dict(attacks=("fgsm",), eps={"fgsm": 0.3}, batch_size=4, data_name="mnist", progress=False)
    ref = loc.run_localize(model, x, out_dir=tmp_path / "ref", **kw)["attacks"]["fgsm"]

    real = loc.build_attack
    calls = []

    def flaky(*a, **k):
        attack = real(*a, **k)

        class Wrapped:
            def __init__(self):
                self.eps = attack.eps

            def __call__(self, xb, yb):
                calls.append(len(xb))
                if len(calls) == 2:
                    raise KeyboardInterrupt  # killed during the second batch
                attack.eps = self.eps
                return attack(xb, yb)
        return Wrapped()

    monkeypatch.setattr(loc, "build_attack", flaky)
    with pytest.raises(KeyboardInterrupt):
        loc.run_localize(model, x, out_dir=tmp_path / "run", **kw)
    assert list((tmp_path / "run" / "cache").glob("*.partial.npz"))
    got = loc.run_localize(model, x, out_dir=tmp_path / "run", **kw)["attacks"]["fgsm"]
    assert calls == [4, 4, 4, 4]  # batch 1, the interrupted batch 2, then only batches 2 and 3 again
    for m in loc.METRICS:
        np.testing.assert_allclose(got[m], ref[m], equal_nan=True)
    assert got["fooling_rate"] == ref["fooling_rate"]
    assert not list((tmp_path / "run" / "cache").glob("*.partial.npz"))  # finished: checkpoint removed
