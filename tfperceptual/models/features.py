"""Intermediate layers of a classifier: ReLU outputs (perceptual-ball layers), the feature layer of
Grad-CAM, and a model that returns the logits with chosen activations."""

from __future__ import annotations

import keras
import numpy as np

from .adapter import as_logits_model, to_functional
from .graph import layer_tensors

__all__ = ["activation_layers", "penultimate_conv_layer", "feature_model", "resolve_layers"]

_RELU_NAMES = ("relu", "relu6")
_ACTIVATION_LAYERS = ("ReLU", "Activation", "LeakyReLU", "ELU", "PReLU")
_CONV_LAYERS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")


def _name(model):
    """The user's model's name (not the adapter's) for messages."""
    return getattr(model, "classifier", model).name


def _is_relu_layer(layer):
    if type(layer).__name__ == "ReLU":
        return True
    return getattr(getattr(layer, "activation", None), "__name__", "") in _RELU_NAMES


def activation_layers(model):
    """Names of the ReLU/ReLU6 outputs of ``model``, in the order of ``model.layers``.

    Counts ``keras.layers.ReLU`` (any ``max_value``, so ReLU6), ``Activation("relu"|"relu6")`` and
    layers with ``activation="relu"|"relu6"`` (e.g. ``Conv2D(..., activation="relu")``), so index k of
    this list is "ReLU k" of the paper (0-based): ``layers=range(4, 10)`` is ReLU 4 to 9.

    Raises:
        TypeError: not a Keras model. ValueError: no graph, or the model has no ReLU output.
    """
    func = to_functional(model)
    names = [layer.name for layer in func.layers if _is_relu_layer(layer)]
    if not names:
        raise ValueError(f"model {_name(model)!r} has no ReLU/ReLU6 layer; pass layer names explicitly")
    return names


def penultimate_conv_layer(model):
    """Name of the layer whose feature maps Grad-CAM weighs: the last 4-D activation before the head.

    The last layer with a (B, h, w, k) output, h, w > 1, that is a convolution with a non-linear
    activation or an activation layer (ReLU, ...) — for a conv → batch-norm → ReLU block that is the
    ReLU, whose maps are non-negative as Grad-CAM assumes (the raw convolution output before batch
    norm can be negative everywhere, which makes the CAM vanish). Falls back to the last convolution.

    Raises:
        ValueError: the model has no convolutional feature map.
    """
    best, last_conv = None, None
    for layer in to_functional(model).layers:
        shape = getattr(getattr(layer, "output", None), "shape", None)
        if shape is None or len(shape) != 4 or (shape[1] is not None and shape[1] <= 1):
            continue
        kind = type(layer).__name__
        act = getattr(getattr(layer, "activation", None), "__name__", "linear")
        if kind in _CONV_LAYERS:
            last_conv = layer.name
            if act != "linear":
                best = layer.name
        elif kind in _ACTIVATION_LAYERS:
            best = layer.name
    if best is None and last_conv is None:
        raise ValueError(f"model {_name(model)!r} has no convolutional feature map for Grad-CAM; pass layer= "
                         "explicitly")
    return best or last_conv


def resolve_layers(model, layers):
    """Layer names from names or indices into :func:`activation_layers` (negative indices allowed).

    Raises:
        TypeError: an item that is neither a name nor an int. ValueError: an index out of range.
    """
    relus = None
    names = []
    for item in layers:
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            relus = relus if relus is not None else activation_layers(model)
            if not -len(relus) <= int(item) < len(relus):
                raise ValueError(f"activation index {item} out of range: the model has {len(relus)} "
                                 f"ReLU layers (see activation_layers(model))")
            names.append(relus[int(item)])
        elif isinstance(item, str):
            names.append(item)
        else:
            raise TypeError(f"layers must be names (str) or activation indices (int), got {item!r}")
    return names


def feature_model(model, layers):
    """A functional model ``x -> [logits, C_l1(x), C_l2(x), ...]`` sharing weights with ``model``.

    Args:
        model: Keras classifier (any head: its logits are those of
            :func:`tfperceptual.models.adapter.as_logits_model`).
        layers: iterable of layer names or indices into :func:`activation_layers`.

    Returns:
        (keras.Model, list of the layer names).

    Raises:
        ValueError: a layer that is not on the path from the input to the logits, an index out of range.
    """
    logits_model = as_logits_model(model)
    net = logits_model.network
    names = resolve_layers(model, list(layers))
    tensors = layer_tensors(net.outputs[0])
    missing = [n for n in names if n not in tensors]
    if missing:
        try:
            hint = f"; activation layers: {activation_layers(model)[:8]}"
        except ValueError:
            hint = ""
        raise ValueError(f"layers {missing} are not on the path from the input to the logits of "
                         f"{_name(model)!r}{hint}")
    fm = keras.Model(net.inputs[0], [net.outputs[0]] + [tensors[n] for n in names], name=f"{model.name}_features")
    return fm, names
