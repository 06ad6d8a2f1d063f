"""The localisation protocol end to end (CLI), ε calibration, and resuming from the cache."""

import json

import keras
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


# ----------------------------------------------------------------------------- defects found by probing (issue 14)
def test_calibration_and_final_run_agree_on_the_calibration_images(tmp_path, mnist_model, mnist_sample):
    """Seeded PGD, calibration on 10 images in batches of 4: the final run attacks those 10 images in the same
    batches with the same per-batch seeds, so its fooling rate on them is the calibration's at the chosen ε
    (before: 1.0 in calibration, 0.95 in the table)."""
    x, _ = mnist_sample
    res = loc.run_localize(mnist_model, x[:14], attacks=("pgd",), n_calibration=10, batch_size=4, steps=3,
                           refine=2, target_fooling=0.7, out_dir=tmp_path, progress=False, seed=0)["attacks"]["pgd"]
    assert res["calibration"] and res["calibration_rate"] is not None
    assert res["fooling_rate_calibration_images"] == res["calibration_rate"]
    assert "final run, same images" in (tmp_path / "report.md").read_text()


def test_a_corrupt_checkpoint_is_reported_and_the_attack_redone(tmp_path, mnist_model, mnist_sample):
    from tfperceptual.io_utils import CacheWarning

    x, _ = mnist_sample
    kw = dict(attacks=("fgsm",), eps={"fgsm": 0.3}, batch_size=4, data_name="mnist", progress=False, n_calibration=4)
    ref = loc.run_localize(mnist_model, x[:8], out_dir=tmp_path / "ref", **kw)["attacks"]["fgsm"]
    (entry,) = (tmp_path / "ref" / "cache").glob("fgsm_*.json")
    (entry.parent / entry.name.replace(".json", ".partial.npz")).write_bytes(b"PK\x03\x04 truncated")
    entry.write_text("{not json")
    with pytest.warns(CacheWarning, match="fgsm_"):
        again = loc.run_localize(mnist_model, x[:8], out_dir=tmp_path / "ref", **kw)["attacks"]["fgsm"]
    assert again["iou"] == ref["iou"] and again["fooling_rate"] == ref["fooling_rate"]


def test_panels_name_the_classes_and_have_colour_bars(monkeypatch):
    import tfperceptual.protocols.report as report

    figs = []
    monkeypatch.setattr(report, "atomic_savefig", lambda fig, path, **kw: figs.append(fig))
    rng = np.random.default_rng(0)
    x, adv = rng.random((2, 12, 12, 3)), rng.random((2, 12, 12, 3))
    report.plot_localize_panels(x, adv, rng.random((2, 12, 12, 3)), rng.random((2, 12, 12)), "fpgap", "p.png",
                                clean_labels=[0, 1], adv_labels=[1, 2], class_names=["cat", "dog", "emu"])
    titles = [ax.get_title() for ax in figs[0].axes]
    assert any("0: cat" in t for t in titles) and any("1: dog" in t for t in titles) and any("2: emu" in t for t in titles)
    n_panels = 2 * (3 + 3)
    assert len(figs[0].axes) == n_panels + 2 * 4  # a colour bar beside each SSIM map and each Grad-CAM++ map


def test_localize_with_a_sequential_logits_model_file(tmp_path, run_cli, mnist_model):
    """Grad-CAM++ used to crash on every Sequential model without a softmax ('Output with path 1 is not
    connected to inputs'), so `localize --model seq_logits.keras` failed."""
    seq = keras.Sequential([keras.Input((28, 28, 1))])
    for layer in mnist_model.layers[1:]:
        clone = layer.__class__.from_config(layer.get_config())
        seq.add(clone)
        clone.set_weights(layer.get_weights())
    seq.save(tmp_path / "seq_logits.keras")
    code, out, err = run_cli(["localize", "--model", tmp_path / "seq_logits.keras", "--n", "4", "--n-calibration", "4",
                              "--attacks", "fgsm", "--eps", "fgsm=0.3", "--steps", "2", "--batch-size", "4",
                              "--out", tmp_path / "run", "--no-progress"])
    assert code == 0, err
    assert "Table I" in out and "| paper" not in out  # a user model: no paper rows
