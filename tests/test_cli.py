"""The command line: one-line errors that name the argument (exit 2), --debug tracebacks, quiet start-up,
help texts, and data-dependent defaults."""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from tfperceptual.models import mnist_cnn

MNIST_MODEL = os.path.join(os.path.dirname(__file__), "..", "tfperceptual", "assets", "mnist_cnn.keras")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_files")
    np.savez(d / "short_labels.npz", images=np.zeros((20, 28, 28, 1), np.float32), labels=np.zeros(5, np.int64))
    np.savez(d / "rgb.npz", images=np.zeros((6, 28, 28, 3), np.float32), labels=np.zeros(6, np.int64))
    np.savez(d / "no_labels.npz", images=np.zeros((6, 28, 28, 1), np.float32))
    np.savez(d / "labels_11.npz", images=np.zeros((6, 28, 28, 1), np.float32), labels=np.full(6, 11))
    (d / "not_npz.txt").write_text("hello")
    np.savez(d / "bytes_as_float.npz", images=np.full((3, 28, 28, 1), 200.0, np.float32), labels=np.zeros(3, np.int64))
    nan = np.zeros((3, 28, 28, 1), np.float32)
    nan[1, 3, 3] = np.nan
    np.savez(d / "nan.npz", images=nan, labels=np.zeros(3, np.int64))
    import keras

    inp = keras.Input((28, 28, 1))
    keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(inp))).save(d / "dense_only.keras")
    sample = np.load(os.path.join(os.path.dirname(MNIST_MODEL), "mnist_test_sample.npz"))
    x, y = sample["images"][:8, ..., None], sample["labels"][:8]
    keep = np.argmax(mnist_cnn()(x.astype(np.float32) / 255.0).numpy(), -1) == y  # the model's correct images
    np.savez(d / "no_errors.npz", images=x[keep], labels=y[keep])
    (d / "corrupt.npz").write_bytes(b"PK\x03\x04 truncated")
    (d / "corrupt.keras").write_bytes(b"not a zip at all")
    with zipfile.ZipFile(d / "bad_config.keras", "w") as z:
        z.writestr("config.json", "{broken")
    return d


#: (argv, the argument the one-line error must name, a word it must contain)
BAD = [
    (["compare", "--data", "/missing/folder"], "--data", "not found"),
    (["compare", "--data", "mnsit"], "--data", "unknown dataset"),
    (["compare", "--data", "{d}/nope.npz"], "--data", "not found"),
    (["compare", "--data", "{d}/not_npz.txt", "--model", MNIST_MODEL], "--data", "not an .npz"),
    (["compare", "--data", "{d}/corrupt.npz", "--model", MNIST_MODEL], "--data", "cannot read"),
    (["compare", "--data", "{d}/no_labels.npz", "--model", MNIST_MODEL], "--data", "labels"),
    (["compare", "--data", "{d}/short_labels.npz", "--n", "5", "--model", MNIST_MODEL], "--data", "20 images"),
    (["compare", "--data", "{d}/rgb.npz", "--n", "2", "--model", MNIST_MODEL], "--data", "do not fit"),
    (["compare", "--data", "{d}/labels_11.npz", "--n", "2", "--model", MNIST_MODEL], "--data", "10 classes"),
    (["compare", "--data", "{d}/rgb.npz", "--n", "2"], "--model", "required"),
    (["compare", "--model", "{d}/missing.keras"], "--model", "not found"),
    (["compare", "--model", "{d}/corrupt.keras"], "--model", "not a .keras"),
    (["compare", "--model", "{d}/bad_config.keras"], "--model", "cannot load"),
    (["compare", "--eps", "fpgap=abc"], "--eps", "numbers"),
    (["compare", "--eps", "fpgap=1.5"], "--eps", "(0, 1)"),
    (["compare", "--data", "{d}/bytes_as_float.npz", "--n", "2", "--model", MNIST_MODEL], "--data", "outside"),
    (["compare", "--data", "{d}/nan.npz", "--n", "2", "--model", MNIST_MODEL], "--data", "NaN"),
    (["localize", "--eps", "fgsm=0.1,0.2"], "--eps", "one fixed ε"),
    (["benchmark", "--data", "mnist", "--model", "{d}/dense_only.keras", "--methods", "gradcam"], "--methods",
     "no convolutional feature map"),
    (["benchmark", "--data", "mnist", "--methods", "perceptual_ball", "--layers", "nope"], "--layers", "nope"),
    (["benchmark", "--data", "mnist", "--methods", "saliency", "--sanity-checkpoints", "nope"],
     "--sanity-checkpoints", "nope"),
    (["compare", "--eps", "fpgap=-1"], "--eps", "(0, 1)"),
    (["compare", "--eps", "fgsm=0"], "--eps", "(0, inf)"),
    (["compare", "--eps", "bogus=0.1"], "--eps", "NAME"),
    (["compare", "--batch-size", "0"], "--batch-size", "≥ 1"),
    (["localize", "--strategy", "tpu"], "--strategy", "invalid choice"),
    (["compare", "--n", "0"], "--n", "≥ 1"),
    (["compare", "--n", "20000"], "--n", "exceeds"),
    (["compare", "--steps", "x"], "--steps", "integer"),
    (["compare", "--pgap-solver", "nope"], "--pgap-solver", "invalid choice"),
    (["compare", "--ssim-target", "1.5"], "--ssim-target", "(0, 1]"),
    (["compare", "--seed", "-1"], "--seed", "≥ 0"),
    (["compare", "--attacks", "fpgap,bogus"], "--attacks", "bogus"),
    (["localize", "--n", "0"], "--n", "≥ 1"),
    (["localize", "--target-fooling", "0"], "--target-fooling", "(0, 1]"),
    (["localize", "--data", "nowhere"], "--data", "unknown dataset"),
    (["benchmark", "--data", "mnist", "--benchmarks", "pointing_game"], "--benchmarks", "no ground-truth boxes"),
    (["benchmark", "--data", "mnist", "--benchmarks", "nope"], "--benchmarks", "nope"),
    (["benchmark", "--data", "mnist", "--methods", "lime"], "--methods", "unknown method"),
    (["benchmark", "--data", "mnist", "--methods", "gradcam@x"], "--methods", "bad σ"),
    (["benchmark", "--data", "svhn"], "--data", "invalid choice"),
    (["benchmark", "--data", "mnist", "--layers", "a:b"], "--layers", "a:b"),
    (["counterfactual", "--norms", "l1q,l3"], "--norms", "l3"),
    (["counterfactual", "--q", "0"], "--q", "(0, 1]"),
    (["counterfactual", "--q", "1.5"], "--q", "(0, 1]"),
    (["counterfactual", "--eps", "0"], "--eps", "(0, inf]"),
    (["counterfactual", "--steps", "0"], "--steps", "≥ 1"),
    (["counterfactual", "--c", "-2"], "--c", "(0, inf]"),
    (["counterfactual", "--mode", "both"], "--mode", "invalid choice"),
    (["counterfactual", "--box", "restore"], "--box", "invalid choice"),
    (["counterfactual", "--model", "{d}/corrupt.keras"], "--model", "not a .keras"),
    (["counterfactual", "--judge", "{d}/missing.keras"], "--judge", "not found"),
    (["counterfactual", "--data", "{d}/rgb.npz", "--model", MNIST_MODEL], "--data", "do not fit"),
    (["counterfactual", "--data", "{d}/labels_11.npz", "--model", MNIST_MODEL], "--data", "10 classes"),
    (["counterfactual", "--data", "{d}/no_errors.npz", "--model", MNIST_MODEL, "--eps", "1"], "--pool", "no error"),
    (["counterfactual", "--data", "{d}/no_errors.npz", "--model", MNIST_MODEL], "--eps", "required"),
    (["probe", "--classes", "1,12"], "--classes", "[0, 10)"),
    (["probe", "--classes", "a"], "--classes", "indices"),
    (["probe", "--data", "svhn"], "--data", "invalid choice"),
    (["probe", "--n-per-class", "0"], "--n-per-class", "≥ 1"),
    (["probe", "--image-size", "32"], "--image-size", "does not fit"),
    (["probe", "--data", "cifar10", "--judge", MNIST_MODEL], "--judge", "do not fit"),
    (["perceive", "--model", MNIST_MODEL], "--model", "not a PerceptualRegularization"),
    (["perceive", "--model", "{d}/corrupt.keras"], "--model", "not a .keras"),
    (["perceive", "--eps", "pgd=2"], "--eps", "(0, 1)"),
    (["perceive", "--eps", "l1q=abc"], "--eps", "number"),
    (["perceive", "--eps", "fgsm=0.1"], "--eps", "NAME"),
    (["perceive", "--attacks", "pgd,foo"], "--attacks", "foo"),
    (["perceive", "--data", "svhn"], "--data", "invalid choice"),
    (["perceive", "--noise-per-class", "-1"], "--noise-per-class", "≥ 0"),
    (["perceive", "--judge", "{d}/missing.keras"], "--judge", "not found"),
]


@pytest.mark.parametrize("argv,argument,word", BAD, ids=[" ".join(b[0][:3]) for b in BAD])
def test_bad_arguments_print_one_line_naming_the_argument(argv, argument, word, files, tmp_path, run_cli):
    code, out, err = run_cli([a.format(d=files) for a in argv] + ["--out", tmp_path, "--no-progress"])
    assert code == 2, (code, err)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert f"argument {argument}" in lines[0] and word in lines[0], lines[0]
    assert "Traceback" not in err


def test_debug_shows_the_traceback(files, tmp_path):
    from tfperceptual import cli

    with pytest.raises(cli.UsageError, match="--model"):
        cli.main(["compare", "--model", str(files / "bad_config.keras"), "--out", str(tmp_path), "--debug"])


def _run(argv, **env):
    return subprocess.run([sys.executable, "-m", "tfperceptual.cli", *argv], capture_output=True, text=True,
                          timeout=600, env={**{k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
                                            **env})


def test_commands_start_quietly_and_verbose_shows_the_noise(tmp_path):
    argv = ["compare", "--n", "2", "--attacks", "pgd,fpgap", "--eps", "pgd=0.1;fpgap=0.2", "--steps", "1",
            "--no-progress", "--out", str(tmp_path / "q")]
    quiet = _run(argv)
    assert quiet.returncode == 0, quiet.stderr
    noise = ("oneDNN", "cuInit", "cuda", "is_gpu_available", "absl", "structure of `inputs`", "Warning")
    assert not [n for n in noise if n in quiet.stderr], quiet.stderr
    assert quiet.stdout.startswith("# tfperceptual compare")
    loud = _run(argv[:-1] + [str(tmp_path / "v"), "--verbose"])
    assert loud.returncode == 0 and ("oneDNN" in loud.stderr or "is_gpu_available" in loud.stderr), loud.stderr


def test_the_library_leaves_logging_and_warning_filters_alone():
    code = ("import logging, warnings\n"
            "import tensorflow as tf, keras, foolbox, tensorflow_probability, tf_keras_vis.gradcam, scipy.stats\n"
            "import skimage.metrics, matplotlib\n"  # third-party imports may add filters of their own
            "tf.random.uniform(())\n"
            "before = (tf.get_logger().level, list(warnings.filters), logging.getLogger().level)\n"
            "import numpy as np, tfperceptual as tp\n"
            "m = tp.mnist_cnn(); x, y = tp.load_sample('mnist'); x, y = x[:4], y[:4]\n"
            "tp.FPGAP(m, eps=0.2, steps=2)(x, y); tp.PGD(m, 0.1, steps=2, seed=0)(x, y)\n"
            "tp.SmoothGrad(m, samples=2).maps(x, y); tp.ScoreCAM(m, max_N=2).maps(x, y)\n"
            "after = (tf.get_logger().level, list(warnings.filters), logging.getLogger().level)\n"
            "assert before == after, (before, after)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "━━" not in r.stdout  # no Keras progress bar from Score-CAM's internal predict


def test_help_describes_every_option_with_its_default(run_cli):
    for command in ("compare", "localize", "benchmark", "counterfactual", "probe", "perceive"):
        code, out, _ = run_cli([command, "--help"])
        assert code == 0
        options = [line.strip() for line in out.split("options:")[1].splitlines() if line.strip().startswith("--")]
        assert options
        blocks = out.split("options:")[1].split("\n  -")
        for block in blocks[1:]:
            words = block.split()
            assert len(words) > 2, f"{command}: option without help: {block!r}"
    _, out, _ = run_cli(["localize", "--help"])
    assert "(default: 0.99)" in out and "(default: 100)" in out
    _, out, _ = run_cli(["benchmark", "--help"])
    for name in ("deletion_insertion", "weak_localisation", "pointing_game", "sanity"):
        assert name in out
    for name in ("perceptual_ball", "noper", "gradcam++", "scorecam", "smoothgrad"):
        assert name in out


def test_benchmark_on_mnist_runs_with_its_own_defaults(tmp_path, run_cli):
    """`benchmark --data mnist` used to fail: its default benchmarks needed boxes MNIST does not have."""
    code, out, err = run_cli(["benchmark", "--data", "mnist", "--n", "2", "--methods", "saliency,gradcam",
                              "--n-steps", "2", "--sanity-n", "2", "--sanity-checkpoints", "logits",
                              "--out", tmp_path, "--no-progress"])
    assert code == 0, err
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["settings"]["benchmarks"] == ["deletion_insertion", "sanity"]
    assert "| paper" not in out  # the paper's numbers were measured on ImageNet


def test_unexpected_errors_are_one_line_with_a_hint(tmp_path, run_cli, monkeypatch):
    import tfperceptual.protocols.compare as compare_mod

    monkeypatch.setattr(compare_mod, "run_sweep", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full")))
    code, _, err = run_cli(["compare", "--n", "2", "--out", tmp_path, "--no-progress"])
    assert code == 1 and err.strip() == "tfperceptual compare: error: RuntimeError: disk full (rerun with --debug " \
                                        "for the traceback)"


def test_user_model_from_a_keras_file_runs(tmp_path, run_cli):
    path = tmp_path / "m.keras"
    mnist_cnn().save(path)
    code, out, err = run_cli(["compare", "--model", path, "--n", "3", "--attacks", "fgsm", "--eps", "fgsm=0.1,0.2",
                              "--out", tmp_path / "r", "--no-progress"])
    assert code == 0, err
    assert "model: " + str(path) in out
