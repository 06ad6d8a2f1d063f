import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest


@pytest.fixture(scope="session")
def mnist_model():
    from tfperceptual.models import mnist_cnn

    return mnist_cnn()


@pytest.fixture(scope="session")
def mnist_sample():
    from tfperceptual.datasets import load_sample

    return load_sample("mnist")


@pytest.fixture(scope="session")
def mnist_batch(mnist_sample, mnist_model):
    """32 real MNIST test images with the model's clean predictions as labels."""
    x, _ = mnist_sample
    x = x[:32]
    pred = np.argmax(mnist_model(x, training=False).numpy(), -1)
    return x, pred


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def run_cli(capsys):
    """``run_cli(argv) -> (exit status, stdout, stderr)`` of ``tfperceptual argv`` (argparse's exits included)."""
    from tfperceptual import cli

    def run(argv):
        capsys.readouterr()
        try:
            code = cli.main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
