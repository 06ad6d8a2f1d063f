"""The robustness protocol and ``tfperceptual robustness``: threats parsed strictly, cached batches that resume
to the same results.json, the sanity checks' report, and one-line errors naming the argument."""

import json

import numpy as np
import pytest

from tfperceptual.protocols import robustness as rb


@pytest.fixture(scope="module")
def small():
    from tfperceptual.datasets import load_sample
    from tfperceptual.models import zoo

    x, y = load_sample("mnist")
    return zoo.mnist_cnn_robust(), x[:12], y[:12]


OPTS = dict(version="fast", batch_size=4, steps=3, sanity_n=4, progress=False)


def test_parse_threats():
    t = rb.parse_threats("linf:0.3, l2:2.0,ssim:0.015,ssim:0.1:0.05")
    assert t == [{"norm": "linf", "eps": 0.3, "eps_luminance": 0.0}, {"norm": "l2", "eps": 2.0, "eps_luminance": 0.0},
                 {"norm": "ssim", "eps": 0.015, "eps_luminance": 0.0}, {"norm": "ssim", "eps": 0.1, "eps_luminance": 0.05}]
    for bad, match in (("l1:0.3", "unknown norm"), ("linf:1.5", "must lie in"), ("linf", "NORM:EPS"), ("linf:a", "number"),
                       ("linf:0.3,linf:0.3", "twice"), ("", "no threat"), ("l2:0.5:0.1", "NORM:EPS")):
        with pytest.raises(ValueError, match=match):
            rb.parse_threats(bad)


def test_resume_after_interrupt_gives_the_same_results(small, tmp_path, monkeypatch):
    model, x, y = small
    threats = "linf:0.2,ssim:0.2"
    opts = {**OPTS, "sanity_n": 0}
    clean = rb.run_robustness(model, x, y, threats=threats, out_dir=tmp_path / "a", **opts)
    calls = {"n": 0}
    real = rb._run

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(rb, "_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rb.run_robustness(model, x, y, threats=threats, out_dir=tmp_path / "b", **opts)
    assert len(list((tmp_path / "b" / "cache").glob("*.json"))) == 2  # the finished batches are kept
    monkeypatch.setattr(rb, "_run", real)
    resumed = rb.run_robustness(model, x, y, threats=threats, out_dir=tmp_path / "b", **opts)
    assert resumed == clean
    assert (tmp_path / "a" / "results.json").read_text() == (tmp_path / "b" / "results.json").read_text()
    # a corrupt cache entry is recomputed, not trusted
    entry = sorted((tmp_path / "b" / "cache").glob("linf_*.json"))[0]
    entry.write_text("{not json")
    with pytest.warns(Warning):
        again = rb.run_robustness(model, x, y, threats=threats, out_dir=tmp_path / "b", **opts)
    assert again == clean


def test_results_and_report(small, tmp_path):
    model, x, y = small
    doc = rb.run_robustness(model, x, y, threats="l2:1.5", out_dir=tmp_path, **OPTS)
    row = doc["threats"][0]
    assert row["n"] == 12 and len(row["robust"]) == 12 and row["members"] == ["apgd-ce", "apgd-t"]
    assert row["robust_accuracy"] == pytest.approx(np.mean(row["robust"]))
    s = row["sanity"]
    assert set(s["robust_accuracy"]) == {"0.5ε", "ε", "2ε", "large"} and s["n"] == 4
    assert s["robust_accuracy"]["large"] <= s["robust_accuracy"]["0.5ε"]
    report = (tmp_path / "report.md").read_text()
    assert "ℓ2 ε = 1.5" in report and "Sanity checks" in report
    assert json.loads((tmp_path / "timings.json").read_text())


def test_cli_bad_arguments_name_the_argument(run_cli, tmp_path):
    for argv, arg in ((["--threat", "l1:0.3"], "--threat"), (["--threat", "linf:0.3,linf:0.3"], "--threat"),
                      (["--threat", "ssim:1.2"], "--threat"), (["--model", tmp_path / "none.keras"], "--model"),
                      (["--n", "20000"], "--n")):
        code, out, err = run_cli(["robustness", *argv, "--out", tmp_path / "o"])
        assert code == 2, (argv, err)
        assert arg in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run_cli(["robustness", "--version", "plus"])
    assert code == 2 and "--version" in err
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 28, 28, 1), np.float32), labels=np.zeros(2, int))
    code, _, err = run_cli(["robustness", "--data", tmp_path / "d.npz", "--model", "mnist_cnn"])
    assert code == 2 and "--threat" in err


def test_cli_runs_and_writes(run_cli, tmp_path):
    code, out, err = run_cli(["robustness", "--model", "mnist_cnn_robust", "--n", "8", "--threat", "linf:0.2",
                              "--version", "fast", "--steps", "3", "--sanity-n", "0", "--batch-size", "8",
                              "--out", tmp_path, "--no-progress"])
    assert code == 0, err
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["threats"][0]["name"] == "ℓ∞ ε = 0.2" and "sanity" not in doc["threats"][0]
    assert "robust accuracy" in out
