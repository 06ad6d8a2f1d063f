"""Sweeps across devices (issue 18): ``--strategy mirrored`` on two logical CPU devices gives the same
``results.json`` as one device for compare, localize, benchmark and counterfactual, and ``replica_map`` runs
its items on distinct replicas, in order."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

_SCRIPT = textwrap.dedent("""
    import contextlib, io, json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfperceptual.cli import main
    from tfperceptual.protocols.replicas import make_strategy, replica_map

    report = {}
    strategy = make_strategy("mirrored")
    with strategy.scope():
        seen = list(replica_map(lambda i: (i, tf.constant(0.0).device), range(5)))
        serial = list(replica_map(lambda i: (i, tf.constant(0.0).device), range(3), parallel=False))
    report["replicas"] = strategy.num_replicas_in_sync
    report["map"] = seen
    report["serial"] = serial
    commands = {
        "compare": "compare --data mnist --n 48 --batch-size 16 --attacks fpgap,linf_pgd,fgsm "
                   "--eps fpgap=0.2;linf_pgd=0.1;fgsm=0.1 --steps 3",
        "localize": "localize --data mnist --n 48 --n-calibration 16 --batch-size 16 --attacks fpgap "
                    "--eps fpgap=0.2 --steps 3",
        "benchmark": "benchmark --data mnist --n 16 --batch-size 8 --methods perceptual_ball,smoothgrad --steps 4 "
                     "--n-steps 4 --benchmarks deletion_insertion",
        "counterfactual": "counterfactual --data mnist --n 16 --pool 400 --batch-size 8 --steps 4",
    }
    for name, command in commands.items():
        for strat in ("default", "mirrored"):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                rc = main(command.split() + ["--out", f"{sys.argv[1]}/{name}_{strat}", "--no-progress",
                                             "--strategy", strat])
            report[f"{name}_{strat}"] = {"rc": rc, "stderr": err.getvalue()[-2000:]}
    print("RESULT " + json.dumps(report))
""")


def _without_timings(obj):
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if "seconds" not in k}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def mirrored_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("replicas")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(out)], capture_output=True, text=True, env=env,
                          timeout=900)
    line = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")]
    assert line, proc.stderr[-3000:]
    return out, json.loads(line[0][len("RESULT "):])


def test_replica_map_runs_items_in_order_on_distinct_replicas(mirrored_runs):
    _, report = mirrored_runs
    assert report["replicas"] == 2
    assert [i for i, _ in report["map"]] == list(range(5))
    devices = [d for _, d in report["map"]]
    assert devices[0].endswith("CPU:0") and devices[1].endswith("CPU:1") and devices[2].endswith("CPU:0")
    # parallel=False: the items run one after the other in the caller's thread (default device)
    assert [i for i, _ in report["serial"]] == [0, 1, 2]


@pytest.mark.parametrize("command", ["compare", "localize", "benchmark", "counterfactual"])
def test_mirrored_results_equal_single_device(mirrored_runs, command):
    out, report = mirrored_runs
    single, mirrored = report[f"{command}_default"], report[f"{command}_mirrored"]
    assert single["rc"] == 0 and mirrored["rc"] == 0, (single["stderr"], mirrored["stderr"])
    assert "MirroredStrategy over 2 replica(s)" in mirrored["stderr"]
    a = json.loads((out / f"{command}_default" / "results.json").read_text())
    b = json.loads((out / f"{command}_mirrored" / "results.json").read_text())
    assert _without_timings(a) == _without_timings(b)
    assert _without_timings(a) != {}  # something was compared
