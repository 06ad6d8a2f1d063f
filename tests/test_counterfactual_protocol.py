"""`tfperceptual counterfactual` and `tfperceptual probe`: reports, figures, the judge column, resume from the cache,
and the sparsity metrics they print."""

import json

import numpy as np
import pytest

from tfperceptual.evaluation import changed_fraction, hoyer_sparsity, wilson_interval
from tfperceptual.models import zoo


def test_counterfactual_command_on_mnist_errors_with_a_judge_and_resume(tmp_path, run_cli):
    judge = tmp_path / "judge.keras"
    zoo.mnist_cnn().save(judge)  # any independent classifier; here the standard model reads the robust one's
    out = tmp_path / "cf"
    argv = ["counterfactual", "--data", "mnist", "--n", "5", "--steps", "8", "--judge", judge, "--out", out,
            "--no-progress", "--batch-size", "3"]
    code, stdout, err = run_cli(argv)
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    assert res["settings"]["mode"] == "prediction" and res["settings"]["errors_only"]
    assert (out / "counterfactuals.png").stat().st_size > 10_000 and "| ℓ1-q |" in stdout
    labels, pred = np.array(res["labels"]), np.array(res["predicted"])
    assert len(labels) == 5 and np.all(labels != pred)  # the model's errors
    robust = zoo.mnist_cnn_robust()
    from tfperceptual.datasets import load_sample

    x, y = load_sample("mnist")
    np.testing.assert_array_equal(y[res["images"]], labels)
    np.testing.assert_array_equal(np.argmax(robust.predict(x[res["images"]], verbose=0), -1), pred)
    for norm in ("l1q", "l2"):
        r = res["norms"][norm]
        np.testing.assert_array_equal(r["target"], pred)  # prediction-targeted
        assert np.all(np.array(r["target_after"]) > np.array(r["target_before"]))
        j = r["summary"]["judge"]
        assert j["n"] == 5 and 0 <= j["ci95"][0] <= j["fraction_target"] <= j["ci95"][1] <= 1
        assert res["settings"]["eps"]["l1q"] == pytest.approx(3.0 * 28)  # the matched budget ε₂ √d
    cache = sorted(p.name for p in (out / "cache").iterdir())
    assert len(cache) == 4  # two batches per norm
    before = {p: (out / "cache" / p).stat().st_mtime_ns for p in cache}
    code, _, err = run_cli(argv)  # resumes: nothing recomputed, the same results
    assert code == 0, err
    assert {p: (out / "cache" / p).stat().st_mtime_ns for p in cache} == before
    assert json.loads((out / "results.json").read_text()) == res


def test_label_mode_on_all_images_and_probe_command(tmp_path, run_cli):
    code, _, err = run_cli(["counterfactual", "--data", "mnist", "--mode", "label", "--all-images", "--n", "3",
                            "--norms", "l2", "--steps", "5", "--out", tmp_path / "cf", "--no-progress"])
    assert code == 0, err
    res = json.loads((tmp_path / "cf" / "results.json").read_text())
    assert res["images"] == [0, 500, 999] and list(res["norms"]) == ["l2"]  # spread over the pool of 1,000
    np.testing.assert_array_equal(res["norms"]["l2"]["target"], res["labels"])
    code, out, err = run_cli(["probe", "--data", "mnist", "--classes", "1,7", "--n-per-class", "2", "--steps", "10",
                              "--out", tmp_path / "probe", "--no-progress"])
    assert code == 0, err
    res = json.loads((tmp_path / "probe" / "results.json").read_text())
    assert res["settings"]["classes"] == [1, 7] and set(res["norms"]) == {"l1q", "l2"}
    assert res["norms"]["l1q"]["model_success"] == 1.0
    for r in res["norms"].values():  # per image RMS = ‖change‖₂ / √d, so their means agree too
        assert r["rms_per_pixel"] == pytest.approx(r["mean_l2"] / 28, rel=1e-5)
    assert (tmp_path / "probe" / "probe.png").exists() and "| ℓ2 |" in out


def test_sparsity_metrics_and_wilson_interval_known_values():
    d = np.zeros((2, 4, 4, 1))
    d[0, 0, 0] = 1.0  # one non-zero entry: Hoyer 1
    d[1] = 0.5  # all equal: Hoyer 0
    np.testing.assert_allclose(hoyer_sparsity(d), [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(changed_fraction(d), [1 / 16, 1.0])
    assert np.isnan(hoyer_sparsity(np.zeros((1, 2, 2, 1))))[0]
    lo, hi = wilson_interval(0, 10)  # Wilson (1927): 0 of 10 → [0, 0.2775]
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(50, 100)
    assert (lo, hi) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
