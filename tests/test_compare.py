"""`tfperceptual compare` end to end on a small n, resume from the cache, interpolation."""

import json
import math

import numpy as np
import pytest

from tfperceptual import cli
from tfperceptual.protocols.compare import interpolate_at


def test_compare_cli_end_to_end_and_resume(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = ["compare", "--n", "12", "--out", str(out), "--steps", "5", "--no-progress",
            "--eps", "fpgap=0.1,0.3,0.6;pgap=0.2,0.5;fgsm=0.02,0.3;fgm=0.3,5;pgd=0.02,0.3;pgd_l2=0.3,5"]
    assert cli.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert {p["attack"] for p in res["points"]} == {"fpgap", "pgap", "fgsm", "fgm", "pgd", "pgd_l2"}
    assert len(res["points"]) == 13
    acc = res["settings"]["clean_accuracy"]
    for p in res["points"]:
        assert 0 <= p["fooling_rate"] <= 1 and 0 < p["mean_ssim"] <= 1 and p["n"] == 12
        # an image still classified as its true label after the attack was either not fooled or was wrong before
        assert p["robust_accuracy"] <= min(acc, 1 - p["fooling_rate"] + (1 - acc)) + 1e-9
    strong = [p for p in res["points"] if p["fooling_rate"] == 1.0]
    assert all(p["robust_accuracy"] == 0.0 for p in strong)
    report = (out / "report.md").read_text()
    assert "Table II" in report and "Table III" in report and "| paper (" in report and "robust accuracy" in report
    assert (out / "fooling_vs_ssim.png").stat().st_size > 1000
    assert (out / "fooling_vs_psnr.png").stat().st_size > 1000
    # second run: every point comes from the cache, no attack is built
    import tfperceptual.protocols.compare as compare_mod

    def boom(*a, **k):
        raise AssertionError("attack rebuilt although cached")

    monkeypatch.setattr(compare_mod, "build_attack", boom)
    assert cli.main(argv) == 0
    assert json.loads((out / "results.json").read_text())["points"] == res["points"]


def test_interpolation_and_not_reached():
    pts = [{"attack": "a", "mean_ssim": s, "fooling_rate": f} for s, f in [(0.9, 0.1), (0.8, 0.5), (0.6, 0.9)]]
    assert interpolate_at(pts, "a", "mean_ssim", 0.85) == pytest.approx(0.3)
    assert interpolate_at(pts, "a", "mean_ssim", 0.7) == pytest.approx(0.7)
    assert math.isnan(interpolate_at(pts, "a", "mean_ssim", 0.95))


def test_cli_rejects_bad_arguments(run_cli):
    for argv, argument in ((["compare", "--attacks", "fpgap,bogus"], "--attacks"), (["compare", "--eps", "bogus=0.1"], "--eps")):
        code, _, err = run_cli(argv)
        assert code == 2 and f"argument {argument}" in err and len(err.strip().splitlines()) == 1


def test_compare_on_imagenet_with_the_zoo_mobilenet(tmp_path):
    out = tmp_path / "imagenet"
    argv = ["compare", "--data", "imagenet", "--n", "4", "--attacks", "fpgap,fgsm", "--steps", "2",
            "--eps", "fpgap=0.02,0.2;fgsm=0.001,0.03", "--batch-size", "2", "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["settings"]["ssim_target"] == 0.998 and res["settings"]["psnr_target"] == 65.0
    assert res["settings"]["model"] == "tfperceptual zoo.imagenet_mobilenet"
    assert res["paper"]["ssim"]["fgsm"] == 0.827
    big = [p for p in res["points"] if p["attack"] == "fgsm" and p["eps"] == 0.03][0]
    small = [p for p in res["points"] if p["attack"] == "fgsm" and p["eps"] == 0.001][0]
    assert big["mean_psnr"] < small["mean_psnr"] and big["n"] == 4


def test_cifar10_subset_of_the_cli_is_class_balanced():
    # the test split is stored class by class; the first 1,000 images would all be airplanes
    from tfperceptual.cli import _load_data

    x, y = _load_data("cifar10", 1000)
    assert x.shape == (1000, 32, 32, 3) and x.dtype == np.float32
    assert np.bincount(y, minlength=10).tolist() == [100] * 10


# ----------------------------------------------------------------------------- defects found by probing (issue 14)
def test_the_same_seed_gives_the_same_results_json(tmp_path, run_cli):
    """Foolbox's PGD draws random starts: seeded per batch, two runs write byte-identical results.json (and
    another seed draws other starts)."""
    common = ["compare", "--n", "16", "--steps", "3", "--attacks", "pgd,pgd_l2,fpgap", "--batch-size", "8",
              "--eps", "pgd=0.02,0.1;pgd_l2=0.3,1.5;fpgap=0.1", "--no-progress"]
    for run in ("a", "b"):
        assert run_cli(common + ["--seed", "3", "--out", tmp_path / run])[0] == 0
    assert (tmp_path / "a" / "results.json").read_bytes() == (tmp_path / "b" / "results.json").read_bytes()
    assert run_cli(common + ["--seed", "4", "--out", tmp_path / "c"])[0] == 0
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    c = json.loads((tmp_path / "c" / "results.json").read_text())
    assert a["settings"]["seed"] == 3 and c["settings"]["seed"] == 4
    assert [p["mean_l2"] for p in a["points"] if p["attack"] == "pgd_l2"] != \
        [p["mean_l2"] for p in c["points"] if p["attack"] == "pgd_l2"]
    assert "seconds" not in json.dumps(a["points"])  # wall times live in timings.json
    assert json.loads((tmp_path / "a" / "timings.json").read_text())["points"][0]["seconds"] > 0


def test_a_corrupt_or_incomplete_cache_entry_is_reported_and_recomputed(tmp_path, run_cli):
    argv = ["compare", "--n", "6", "--steps", "2", "--attacks", "fgsm", "--eps", "fgsm=0.05,0.1", "--no-progress",
            "--out", tmp_path]
    assert run_cli(argv)[0] == 0
    ref = json.loads((tmp_path / "results.json").read_text())
    broken, partial = sorted((tmp_path / "cache").glob("fgsm*.json"))
    broken.write_text('{"attack": "fgsm", "eps": 0.0')  # cut off mid-write by a crash
    partial.write_text(json.dumps({"attack": "fgsm"}))    # an entry written by an older version
    from tfperceptual.io_utils import CacheWarning
    from tfperceptual.protocols.compare import run_sweep
    from tfperceptual.models import mnist_cnn
    from tfperceptual.datasets import load_sample

    x, y = load_sample("mnist")
    with pytest.warns(CacheWarning) as record:
        run_sweep(mnist_cnn(), x[:6], y[:6], attacks=["fgsm"], eps_grids={"fgsm": [0.05, 0.1]}, out_dir=tmp_path,
                  steps=2, progress=False)
    named = " ".join(str(w.message) for w in record)
    assert broken.name in named and partial.name in named and "recomputing" in named
    assert run_cli(argv)[0] == 0  # and the command runs again, from the repaired cache
    assert json.loads((tmp_path / "results.json").read_text())["points"] == ref["points"]


def test_paper_rows_only_beside_the_zoo_model(tmp_path, run_cli):
    from tfperceptual.models import mnist_cnn

    path = tmp_path / "user.keras"
    mnist_cnn().save(path)
    argv = ["compare", "--n", "4", "--steps", "1", "--attacks", "fgsm", "--eps", "fgsm=0.1,0.3", "--no-progress"]
    assert run_cli(argv + ["--out", tmp_path / "zoo"])[0] == 0
    assert run_cli(argv + ["--model", path, "--out", tmp_path / "user"])[0] == 0
    assert "| paper (" in (tmp_path / "zoo" / "report.md").read_text()
    user = (tmp_path / "user" / "report.md").read_text()
    assert "| paper" not in user and "left out" in user
    assert json.loads((tmp_path / "user" / "results.json").read_text())["paper"] is None


def test_compare_plots_have_a_title_and_a_labelled_target(monkeypatch):
    import tfperceptual.protocols.report as report

    figs = []
    monkeypatch.setattr(report, "atomic_savefig", lambda fig, path, **kw: figs.append(fig))
    pts = [{"attack": "a", "mean_ssim": s, "fooling_rate": f} for s, f in [(0.9, 0.1), (0.8, 0.5)]]
    report.plot_fooling(pts, ["a"], "mean_ssim", 0.85, "average SSIM", "x.png", {"data": "mnist", "n": 2})
    ax = figs[0].axes[0]
    assert "Fooling rate" in ax.get_title() and "mnist" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "a" in labels and any("0.85" in t for t in labels)


def test_a_zero_gradient_is_reported_once_per_sweep_point_with_dataset_indices(tmp_path, mnist_sample):
    import keras

    from tfperceptual.attacks import ZeroGradientWarning
    from tfperceptual.protocols.compare import run_sweep

    x, _ = mnist_sample
    inp = keras.Input((28, 28, 1))
    h = keras.layers.Lambda(lambda t: keras.ops.sign(t - 0.5))(inp)
    model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(h)))
    y = np.argmax(model(x[:6]).numpy(), -1)
    with pytest.warns(ZeroGradientWarning) as record:
        run_sweep(model, x[:6], y, attacks=["fpgap"], eps_grids={"fpgap": [0.2]}, out_dir=tmp_path, steps=2,
                  batch_size=4, progress=False)
    messages = [str(w.message) for w in record if issubclass(w.category, ZeroGradientWarning)]
    assert len(messages) == 1 and "[0, 1, 2, 3, 4, 5]" in messages[0] and "of the dataset" in messages[0]


def test_robust_accuracy_counts_a_misclassified_image_as_not_robust():
    from tfperceptual.protocols.compare import _point

    clean = np.array([0, 1, 2, 3])
    labels = np.array([0, 1, 2, 0])  # image 3 is misclassified clean
    adv = np.array([0, 5, 2, 0])  # ... and the attack moved it onto its true label
    st = {"ssim": np.ones(4), "global_ssim": np.ones(4), "psnr": np.full(4, 40.0), "adv_labels": adv,
          "l2": np.zeros(4), "linf": np.zeros(4), "steps": np.ones(4), "failed": np.zeros(4, bool)}
    p = _point("fpgap", 0.1, st, clean, labels, 1.0, {})
    assert p["robust_accuracy"] == 0.5 and p["fooling_rate"] == 0.5
