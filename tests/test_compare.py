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
    for p in res["points"]:
        assert 0 <= p["fooling_rate"] <= 1 and 0 < p["mean_ssim"] <= 1 and p["n"] == 12
    report = (out / "report.md").read_text()
    assert "Table II" in report and "Table III" in report and "| paper (" in report
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
