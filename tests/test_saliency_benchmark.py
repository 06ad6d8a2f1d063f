"""The benchmark runner end to end on MNIST (small), its cache and resume, and the CLI."""

import json

import numpy as np
import pytest

from tfperceptual.protocols import saliency_benchmark as br
from tfperceptual import cli


def test_parse_methods():
    assert br.parse_methods("perceptual_ball@5, gradcam,noper@0") == [("perceptual_ball", 5.0), ("gradcam", 0.0),
                                                                       ("noper", 0.0)]
    with pytest.raises(ValueError, match="unknown method"):
        br.parse_methods("lime")
    with pytest.raises(ValueError, match="bad σ"):
        br.parse_methods("gradcam@-1")


def _digit_boxes(x):
    """Bounding boxes of the ink (pixels > 0.3): a stand-in for ground-truth boxes."""
    out = []
    for im in x[..., 0]:
        ys, xs = np.nonzero(im > 0.3)
        out.append(np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1.]]))
    return out


def test_runner_all_benchmarks_and_resume(tmp_path, mnist_model, mnist_batch, monkeypatch):
    x, y = mnist_batch
    x, y = x[:6], y[:6]
    boxes = _digit_boxes(x)
    kw = dict(methods=[("perceptual_ball", 0.0), ("perceptual_ball", 1.0), ("perceptual_ball_guided", 1.0),
                       ("saliency", 0.0)],
              pb_kwargs={"layers": [0, 1], "lambda_perceptual": 100.0, "steps": 5}, n_steps=8, batch_size=4,
              sanity_n=2, sanity_checkpoints=["logits", "conv1"], out_dir=tmp_path / "b", data_name="mnist",
              progress=False)
    res = br.run_benchmarks(mnist_model, x, y, boxes, **kw)
    specs = ["perceptual_ball@0", "perceptual_ball@1", "perceptual_ball_guided@1", "saliency@0"]
    assert list(res["methods"]) == specs
    for s in specs:
        r = res["methods"][s]
        assert 0 <= r["deletion_auc"] <= 1 and 0 <= r["insertion_auc"] <= 1
        assert len(r["deletion_curve"]) == 9
        assert 0 <= r["pointing_accuracy"] <= 1
        wl = r["weak_localisation"]
        assert set(wl) == {"value", "percentile", "mean", "best"}
        assert wl["best"]["error"] == min(wl[k]["best_error"] for k in ("value", "percentile", "mean"))
    # σ variants share one perturbation: same unblurred maps give the same deletion curve at σ = 0 only
    assert res["methods"]["perceptual_ball@0"]["deletion_auc"] != res["methods"]["perceptual_ball@1"]["deletion_auc"]
    assert set(res["sanity"]) == {"perceptual_ball@0", "perceptual_ball_guided@1", "saliency@0"}
    assert res["sanity"]["saliency@0"]["layers"] == ["logits", "conv1"]
    saved = json.loads((tmp_path / "b" / "results.json").read_text())
    assert saved["methods"]["saliency@0"]["pointing_accuracy"] == res["methods"]["saliency@0"]["pointing_accuracy"]
    report = (tmp_path / "b" / "report.md").read_text()
    assert "Weak localisation" in report and "Pointing game" in report and "Deletion / insertion" in report
    assert "Paired differences from perceptual_ball@0" in report  # no σ = 5 variant: the first ball method
    assert "whole benchmark" in report  # the cost table, from the compute seconds stored in the cache
    assert len(res["methods"]["saliency@0"]["per_image"]["deletion"]) == 6
    for f in ("curves.png", "weak_localisation.png", "sanity.png", "examples.png"):
        assert (tmp_path / "b" / f).stat().st_size > 1000
    # a second run is served from the cache: nothing is explained again
    monkeypatch.setattr(br._RawMaps, "compute", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    monkeypatch.setattr(br.sm, "cascading_randomization", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-ran")))
    again = br.run_benchmarks(mnist_model, x, y, boxes, **kw)
    for s in specs:
        assert again["methods"][s]["deletion_auc"] == res["methods"][s]["deletion_auc"]


def test_runner_extends_a_run_from_its_batch_cache(tmp_path, mnist_model, mnist_batch, monkeypatch):
    """Batches are cached by content: a run over more images recomputes only the new batches, and a
    shorter run after a longer one is served entirely from the cache."""
    x, y = mnist_batch
    kw = dict(methods=[("perceptual_ball", 0.0), ("saliency", 0.0)], benchmarks=("deletion_insertion",),
              pb_kwargs={"layers": [0], "lambda_perceptual": 10.0, "steps": 3}, n_steps=4, batch_size=2,
              out_dir=tmp_path / "b", progress=False)
    first = br.run_benchmarks(mnist_model, x[:4], y[:4], **kw)
    calls = []
    real = br._RawMaps.compute
    monkeypatch.setattr(br._RawMaps, "compute", lambda self, base, xb, yb: calls.append(len(xb)) or real(self, base, xb, yb))
    longer = br.run_benchmarks(mnist_model, x[:6], y[:6], **kw)
    assert calls == [2, 2]  # one new batch, two base methods
    calls.clear()
    again = br.run_benchmarks(mnist_model, x[:4], y[:4], **kw)
    assert calls == []
    assert again["methods"]["saliency@0"]["deletion_auc"] == first["methods"]["saliency@0"]["deletion_auc"]
    assert longer["settings"]["n"] == 6
    # other labels for the same pixels are another batch
    br.run_benchmarks(mnist_model, x[:2], (y[:2] + 1) % 10, **kw)
    assert calls == [2, 2]
    # keys hold only what a method depends on: new perceptual-ball settings recompute the ball alone
    bases = []
    monkeypatch.setattr(br._RawMaps, "compute", lambda self, base, xb, yb: bases.append(base) or real(self, base, xb, yb))
    changed = br.run_benchmarks(mnist_model, x[:4], y[:4], **{**kw, "pb_kwargs": {**kw["pb_kwargs"], "steps": 2}})
    assert bases == ["perceptual_ball", "perceptual_ball"]
    assert changed["methods"]["saliency@0"]["deletion_auc"] == first["methods"]["saliency@0"]["deletion_auc"]
    assert changed["settings"]["seconds_per_image"]["metrics"] > 0  # metric time recorded in the cache


def test_cached_sanity_results_restore_nan(tmp_path):
    """A constant map has no Spearman correlation (NaN); the cache's JSON holds it as null and the report's
    nan-mean must see NaN again, not None."""
    from tfperceptual.io_utils import atomic_write_json

    atomic_write_json(tmp_path / "s.json", {"layers": ["a"], "spearman": [[0.5, float("nan")]],
                                            "spearman_abs": [[0.5, float("nan")]], "ssim": [[0.2, 0.4]]})
    r = br._load_sanity(tmp_path / "s.json")
    assert r["spearman"][0][0] == 0.5 and np.isnan(r["spearman"][0][1])
    assert float(np.nanmean(r["spearman"][-1])) == 0.5


def test_paired_differences_known_values():
    ref = {"per_image": {"weak_localisation_success": [1, 1, 1, 1], "pointing": [1, 0, 1, 0],
                         "deletion": [0.1, 0.2, 0.3, 0.4], "insertion": [0.5, 0.5, 0.5, 0.5]}}
    worse = {"per_image": {"weak_localisation_success": [0, 0, 0, 0], "pointing": [1, 0, 1, 0],
                           "deletion": [0.2, 0.3, 0.4, 0.5], "insertion": [0.4, 0.6, 0.4, 0.6]}}
    p = br.paired_differences({"gradcam@0": worse, "perceptual_ball@5": ref})
    assert p["reference"] == "perceptual_ball@5" and p["n"] == 4
    d = p["methods"]["gradcam@0"]
    assert d["weak_localisation_error"] == [1.0, 1.0, 1.0]  # every image lost: error +1, no spread
    assert d["pointing_accuracy"] == [0.0, 0.0, 0.0]
    assert np.allclose(d["deletion_auc"], 0.1)  # a constant paired difference has a zero-width interval
    lo, hi = d["insertion_auc"][1:]
    assert d["insertion_auc"][0] == pytest.approx(0.0) and lo < 0 < hi
    assert br.paired_differences({"perceptual_ball@5": ref}) is None


def test_runner_needs_boxes_for_localisation(tmp_path, mnist_model, mnist_batch):
    x, y = mnist_batch
    with pytest.raises(ValueError, match="boxes"):
        br.run_benchmarks(mnist_model, x[:2], y[:2], None, benchmarks=("weak_localisation",), out_dir=tmp_path)


def test_benchmark_cli_on_mnist(tmp_path, capsys, run_cli):
    out = tmp_path / "cli"
    assert cli.main(["benchmark", "--data", "mnist", "--n", "4", "--methods", "gradcam,perceptual_ball@1",
                     "--benchmarks", "deletion_insertion", "--steps", "3", "--n-steps", "4", "--batch-size", "4",
                     "--pb-batch-size", "2", "--out", str(out), "--no-progress"]) == 0
    assert "Deletion / insertion" in capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    assert res["settings"]["perceptual_ball"]["layers"] == [0, 1]
    assert res["settings"]["perceptual_ball"]["batch_size"] == 2  # L-BFGS problems of 2 inside batches of 4
    code, _, err = run_cli(["benchmark", "--data", "mnist", "--benchmarks", "pointing_game", "--out", out])
    assert code == 2 and "argument --benchmarks" in err
    code, _, err = run_cli(["benchmark", "--data", "mnist", "--methods", "lime", "--out", out])
    assert code == 2 and "argument --methods" in err


def test_sanity_only_run_explains_only_the_sanity_images(tmp_path, mnist_model, mnist_batch, monkeypatch):
    x, y = mnist_batch
    seen = []
    real = br._RawMaps.compute

    def spy(self, base, xb, yb):
        seen.append(len(xb))
        return real(self, base, xb, yb)

    monkeypatch.setattr(br._RawMaps, "compute", spy)
    res = br.run_benchmarks(mnist_model, x[:12], y[:12], None, methods=[("saliency", 0.0)], benchmarks=("sanity",),
                            sanity_n=3, sanity_checkpoints=["logits"], out_dir=tmp_path, progress=False)
    assert res["methods"] == {} and res["sanity"]["saliency@0"]["layers"] == ["logits"]
    assert seen == [3, 3]  # the trained model's maps, then after randomising the top layer
    dep = res["sanity_input_dependence"]
    assert dep["layers"] == ["logits"] and dep["relative_spread"][0] > 0
    assert "still depends on its input" in (tmp_path / "report.md").read_text()


def test_new_boxes_redo_localisation_but_not_deletion_insertion(tmp_path, mnist_model, mnist_batch, monkeypatch):
    """The metrics key leaves the boxes out (a box fix must not redo deletion/insertion); the cached file
    records the boxes' digest and localisation is redone when the boxes differ or the digest is missing."""
    x, y = mnist_batch
    x, y = x[:4], y[:4]
    boxes = _digit_boxes(x)
    kw = dict(methods=[("saliency", 0.0)], benchmarks=("deletion_insertion", "weak_localisation", "pointing_game"),
              n_steps=4, batch_size=4, out_dir=tmp_path / "b", progress=False)
    first = br.run_benchmarks(mnist_model, x, y, boxes, **kw)["methods"]["saliency@0"]
    monkeypatch.setattr(br.sm, "deletion_insertion", lambda *a, **k: (_ for _ in ()).throw(AssertionError("redone")))
    far = [np.array([[100, 100, 102, 102.]])] * 4  # off the 28 × 28 image: IoU 0, farther than 15 px
    moved = br.run_benchmarks(mnist_model, x, y, far, **kw)["methods"]["saliency@0"]
    assert moved["deletion_auc"] == first["deletion_auc"]
    assert first["pointing_accuracy"] > 0 and moved["pointing_accuracy"] == 0
    assert first["weak_localisation"]["best"]["error"] < 1 and moved["weak_localisation"]["best"]["error"] == 1
    # a file written before the digest was kept: its localisation is not trusted
    (path,) = (tmp_path / "b" / "cache").glob("metrics_saliency@0_*.npz")
    with np.load(path) as z:
        old = {k: z[k] for k in z.files if k != "boxes_digest"}
    old["pointing"] = np.zeros(4, bool)  # what stale boxes would have left
    np.savez(path, **old)
    back = br.run_benchmarks(mnist_model, x, y, boxes, **kw)["methods"]["saliency@0"]
    assert back["pointing_accuracy"] == first["pointing_accuracy"]
    assert back["weak_localisation"]["best"]["error"] == first["weak_localisation"]["best"]["error"]


def test_rise_insertion_substrate_is_its_own_cached_setting(tmp_path, mnist_model, mnist_batch, monkeypatch):
    x, y = mnist_batch
    x, y = x[:4], y[:4]
    kw = dict(methods=[("saliency", 0.0)], benchmarks=("deletion_insertion",), n_steps=4, batch_size=4,
              out_dir=tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="insertion_blur"):
        br.run_benchmarks(mnist_model, x, y, insertion_blur="box", **kw)
    gauss = br.run_benchmarks(mnist_model, x, y, **kw)
    monkeypatch.setattr(br._RawMaps, "compute", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    rise = br.run_benchmarks(mnist_model, x, y, insertion_blur="rise", **kw)
    g, r = gauss["methods"]["saliency@0"], rise["methods"]["saliency@0"]
    assert r["deletion_auc"] == pytest.approx(g["deletion_auc"], abs=1e-6)  # deletion does not use the blur
    assert r["insertion_curve"][-1] == pytest.approx(g["insertion_curve"][-1], abs=1e-6)  # all revealed: the image
    assert r["insertion_curve"][0] != pytest.approx(g["insertion_curve"][0], abs=1e-4)  # another start
    assert rise["settings"]["insertion_blur"] == "rise"
    assert "RISE code's 11 × 11 kernel" in (tmp_path / "b" / "report.md").read_text()


def test_corrupt_cache_files_are_reported_and_recomputed(tmp_path, mnist_model, mnist_batch):
    from tfperceptual.io_utils import CacheWarning

    x, y = mnist_batch
    kw = dict(methods=[("saliency", 0.0)], benchmarks=("deletion_insertion",), n_steps=4, batch_size=4,
              out_dir=tmp_path / "b", progress=False)
    first = br.run_benchmarks(mnist_model, x[:4], y[:4], **kw)["methods"]["saliency@0"]
    for path in (tmp_path / "b" / "cache").glob("*.npz"):
        path.write_bytes(path.read_bytes()[:40])  # truncated by a crash
    with pytest.warns(CacheWarning, match="recomputing"):
        again = br.run_benchmarks(mnist_model, x[:4], y[:4], **kw)["methods"]["saliency@0"]
    assert again["deletion_auc"] == pytest.approx(first["deletion_auc"], abs=1e-7)


def test_the_runner_dispatches_on_registered_explainer_objects(tmp_path, mnist_model, mnist_batch):
    """Every registered explainer can be benchmarked by name; the runner builds them from the registry."""
    from tfperceptual.explain import EXPLAINERS, Explainer

    raw = br._RawMaps(mnist_model, {"layers": [0], "lambda_perceptual": 10.0, "steps": 2}, 2, 0)
    x, y = mnist_batch
    for name in EXPLAINERS:
        if name == "perceptual_ball_guided":  # shares the unguided ball's perturbation
            continue
        assert isinstance(raw.explainer(name), Explainer)
        assert raw.compute(name, x[:2], y[:2])["map"].shape == (2, 28, 28)
