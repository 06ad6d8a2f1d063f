"""A protocol's batches on the replicas of a ``tf.distribute`` strategy: :func:`replica_map`, :func:`make_strategy`.

A sweep is many independent batches.  Under a strategy with R replicas (``MirroredStrategy`` over a
machine's GPUs, or over logical CPU devices in the tests) :func:`replica_map` hands R consecutive batches
to ``strategy.run`` at once, one per replica: each replica runs the same per-batch work (attack, explainer,
metrics) on its own device, concurrently.  The global batch is R × ``--batch-size``, as with Keras'
``fit`` under a strategy (the batch size is per replica).

Every batch is computed exactly as without a strategy (same images, same shapes, same seeds), so a run under
a strategy writes the same cache entries and the same ``results.json`` as a single-device run, and either
can resume the other.  Work that is not graph-pure — Foolbox's eager attacks, PGAP with a CVXPY solver,
tf-keras-vis explainers (NumPy's global generator, Python state) — is called with ``parallel=False`` and
runs batch after batch on the default device, as without a strategy.

Several machines: ``tf.distribute.MultiWorkerMirroredStrategy`` runs one process per machine, each seeing only
its own replicas; a protocol's batches would then have to be split between the processes and their results
gathered by the chief. The commands do not do that (``--strategy`` takes ``default`` and ``mirrored``);
see the README's "Across devices".
"""

from __future__ import annotations

import contextlib

import tensorflow as tf

from ..validation import check_choice

__all__ = ["STRATEGIES", "make_strategy", "strategy_scope", "replica_map", "num_replicas"]

#: the ``--strategy`` choices of the commands
STRATEGIES = ("default", "mirrored")


def make_strategy(name="default", devices=None):
    """The ``tf.distribute`` strategy called ``name``.

    Args:
        name: ``"default"`` (no distribution: the default strategy) or ``"mirrored"``
            (``tf.distribute.MirroredStrategy`` over ``devices``; default: every logical GPU, or where there is
            none every logical CPU device — one, unless ``tf.config.set_logical_device_configuration`` split it).
        devices: device names for ``"mirrored"`` (e.g. ``["/cpu:0", "/cpu:1"]``).

    Raises:
        ValueError: an unknown name.
    """
    name = check_choice(name, "strategy", STRATEGIES)
    if name == "default":
        return tf.distribute.get_strategy()
    if devices is None:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
                  [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


@contextlib.contextmanager
def strategy_scope(name="default", devices=None):
    """``with strategy_scope("mirrored") as strategy:`` — build the model and run the protocol inside it."""
    strategy = make_strategy(name, devices)
    with strategy.scope():
        yield strategy


def num_replicas():
    """Replicas of the strategy in scope (1 without one)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def replica_map(fn, items, parallel=True):
    """``fn(item)`` for every item, in order, computed R at a time on the R replicas of the strategy in scope.

    A generator: the results of a group of R items are yielded as soon as the group is done (so a protocol
    caches them before the next group starts).  ``fn`` runs in the replica's thread, under its device scope
    (``strategy.run`` of a Python function, see ``tf.distribute.MirroredStrategy.run``); it may call
    ``tf.function`` s and NumPy and must not touch shared Python state.

    Args:
        fn: item → any Python object.
        items: a sequence.
        parallel: ``False`` (or one replica) computes the items one after the other on the default device.

    Raises:
        whatever ``fn`` raises (re-raised in the caller's thread by the strategy).
    """
    items = list(items)
    strategy = tf.distribute.get_strategy()
    r = strategy.num_replicas_in_sync
    if r == 1 or not parallel or tf.distribute.in_cross_replica_context() is False:
        for item in items:
            yield fn(item)
        return
    for start in range(0, len(items), r):
        group = items[start:start + r]
        out = [None] * len(group)

        def replica_fn(group=group, out=out):
            k = tf.distribute.get_replica_context().replica_id_in_sync_group
            if k < len(group):
                out[k] = fn(group[k])

        strategy.run(replica_fn)
        yield from out
