import json
import os
import subprocess
import sys
import textwrap

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


_TWO_CPUS = """
import json
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras

rng = np.random.default_rng(0)
x = rng.uniform(0, 1, (64, 28, 28, 1)).astype("float32")
y = rng.integers(0, 10, 64)
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
{body}
out = {{}}
for name, strategy in (("single", tf.distribute.get_strategy()),
                       ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
    out[name] = {{**run(strategy, ds), "replicas": strategy.num_replicas_in_sync}}
print("RESULT " + json.dumps(out))
"""


@pytest.fixture
def single_and_mirrored():
    """``single_and_mirrored(body) -> {"single": {...}, "mirrored": {...}}``: runs ``body`` (Python source that
    defines ``run(strategy, ds) -> dict`` of JSON-able numbers, with ``np``, ``tf``, ``keras`` and a 64-image
    MNIST-shaped batch ``ds`` in scope) in a fresh process with two logical CPU devices, once without a strategy
    and once under ``MirroredStrategy`` over both (each result also holds ``"replicas"``)."""

    def run(body):
        code = _TWO_CPUS.format(body=textwrap.dedent(body))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        line = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")]
        assert line, proc.stderr[-3000:]
        return json.loads(line[0][7:])

    return run
