"""Adapt any Keras 3 classifier to what attacks and explainers need.

:func:`as_logits_model` returns a *functional* ``keras.Model`` with the same
input that outputs **logits**, sharing weights with the user's model (so it
follows training):

* ``Sequential`` models are rebuilt as functional graphs over the same layer
  objects (Foolbox and tf-keras-vis need a functional graph).
* Output kinds are detected in this order:

  1. the last layer has ``activation=softmax`` (e.g. ``Dense(10,
     activation="softmax")``): the layer is called with its activation
     switched off, giving the exact pre-softmax logits;
  2. the last layer is a ``Softmax`` layer or ``Activation("softmax")``: its
     input tensor is used;
  3. otherwise a probe batch is run; if every output row is non-negative and
     sums to 1 (probabilities from a custom layer), ``log(p)`` is used as
     logits — margins and cross-entropy are unchanged by that (softmax is
     invariant to a per-row constant), up to float underflow of p below ~1e-38;
  4. anything else is taken as logits.

The kind found is stored in ``model_kind`` ("logits", "softmax_activation",
"softmax_layer", "probabilities").
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import tensorflow as tf

__all__ = ["as_logits_model", "to_functional", "input_shape_of", "NotDifferentiableError"]


class NotDifferentiableError(TypeError):
    """The model's output has no gradient with respect to its input."""


def input_shape_of(model):
    """(H, W, C) the model expects (``None`` for free dimensions)."""
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        raise ValueError("the model has no defined input shape: build it first, e.g. "
                         "with keras.Input(shape) as its first layer or model.build((None, H, W, C))") from None
    if isinstance(shape, list):
        if len(shape) != 1:
            raise ValueError(f"the model must have exactly one input, got {len(shape)}")
        shape = shape[0]
    if len(shape) != 4:
        raise ValueError(f"the model must take images of shape (B, H, W, C), its input shape is {shape}")
    return tuple(shape[1:])


def to_functional(model):
    """Return a functional model over the same layers (identity for functional models)."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    if isinstance(model, keras.Sequential):
        shape = input_shape_of(model)
        inp = keras.Input(shape=shape, name="pixels")
        out = inp
        for layer in model.layers:
            out = layer(out)
        return keras.Model(inp, out, name=f"{model.name}_functional")
    if not hasattr(model, "inputs") or model.inputs is None:
        raise ValueError("subclassed models without a functional graph are not supported: "
                         "wrap them as keras.Model(inputs, model(inputs))")
    return model


class _WithoutActivation(keras.layers.Layer):
    """Calls a layer with its ``activation`` attribute switched to linear (weights shared)."""

    def __init__(self, layer, **kwargs):
        super().__init__(name=f"{layer.name}_logits", **kwargs)
        self.inner = layer

    def call(self, x):
        act = self.inner.activation
        self.inner.activation = keras.activations.linear
        try:
            return self.inner(x)
        finally:
            self.inner.activation = act


def _is_softmax(fn):
    return fn is keras.activations.softmax or getattr(fn, "__name__", "") == "softmax"


def _output_node(func):
    """The layer producing the model's output and its input tensor *in this graph*."""
    out = func.outputs[0]
    history = getattr(out, "_keras_history", None)
    if history is None:
        return func.layers[-1], None
    op, node_index = history[0], history[1]
    node = op._inbound_nodes[node_index]
    inputs = node.input_tensors
    return op, (inputs[0] if len(inputs) == 1 else None)


def as_logits_model(model, probe=True):
    """Functional logits model sharing weights with ``model``; see the module docstring.

    Raises:
        TypeError: not a Keras model.
        ValueError: no input shape, several inputs/outputs, or a non-(B, K) output.
        NotDifferentiableError: the output has no gradient with respect to the input.
    """
    func = to_functional(model)
    if len(func.outputs) != 1:
        raise ValueError(f"the model must have one output, got {len(func.outputs)}")
    last, last_input = _output_node(func)
    kind = "logits"
    logits_out = func.outputs[0]
    if last_input is None:
        pass
    elif _is_softmax(getattr(last, "activation", None)) and not isinstance(last, keras.layers.Activation):
        logits_out = _WithoutActivation(last)(last_input)
        kind = "softmax_activation"
    elif isinstance(last, keras.layers.Softmax) or (
            isinstance(last, keras.layers.Activation) and _is_softmax(last.activation)):
        logits_out = last_input
        kind = "softmax_layer"
    logits_model = keras.Model(func.inputs, logits_out, name=f"{model.name}_logits")
    shape = input_shape_of(func)
    if len(logits_model.outputs[0].shape) != 2:
        raise ValueError(f"the model must output (B, num_classes), got shape {logits_model.outputs[0].shape}")
    if probe:
        h, w, c = [s if s is not None else 32 for s in shape]
        x = tf.Variable(tf.fill((2, h, w, c), 0.5))
        with tf.GradientTape() as tape:
            out = logits_model(x, training=False)
            total = tf.reduce_sum(out)
        grad = tape.gradient(total, x)
        if grad is None:
            raise NotDifferentiableError("the model's output is not differentiable with respect to its input "
                                         "(no gradient path): gradient-based attacks cannot run")
        if kind == "logits":
            o = np.asarray(out)
            if np.all(o >= 0) and np.allclose(o.sum(1), 1.0, atol=1e-4):
                warnings.warn("model output looks like probabilities; using log(p) as logits", stacklevel=2)
                inner = logits_model
                inp = keras.Input(shape=shape)
                logp = keras.layers.Lambda(lambda p: tf.math.log(tf.maximum(p, 1e-38)), name="log_prob")(inner(inp))
                logits_model = keras.Model(inp, logp, name=f"{model.name}_logits")
                kind = "probabilities"
    logits_model.model_kind = kind
    logits_model.num_classes = int(logits_model.outputs[0].shape[-1])
    return logits_model
