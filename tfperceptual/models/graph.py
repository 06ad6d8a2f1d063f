"""The one place that reads Keras's graph internals (``KerasTensor._keras_history``, ``Layer._inbound_nodes``).

Keras 3 has no public API to ask "which layer produced this tensor, from which inputs" in a functional or
``Sequential`` model; attacks, explainers and feature extractors need exactly that (the input of a softmax
head, the output of a named layer *in this model's graph*).  Everything that depends on those private
attributes is here, so a Keras upgrade that moves them breaks one module, with tests
(``tests/test_models.py``) that say so.
"""

from __future__ import annotations

import keras

__all__ = ["graph_endpoints", "producer", "layer_tensors", "has_graph"]


def has_graph(model) -> bool:
    """Whether ``model`` is a functional or (built) ``Sequential`` model: a graph of layers we can walk."""
    if isinstance(model, keras.Sequential):
        try:
            return bool(model.inputs)
        except (AttributeError, ValueError):
            return False
    # a functional model (keras.Model(inputs, outputs) or a subclass built that way) keeps its graph's nodes
    return isinstance(model, keras.Model) and hasattr(model, "_nodes") and bool(getattr(model, "inputs", None))


def graph_endpoints(model):
    """``(input, output)`` KerasTensors of a one-input, one-output functional or built Sequential model.

    For a ``Sequential`` model these are the tensors of its own internal graph, so ``layer.output`` of each
    of its layers belongs to the same graph (needed by tf-keras-vis and feature extractors).

    Raises:
        ValueError: several inputs or outputs, or no graph (subclassed or unbuilt model).
    """
    if not has_graph(model):
        raise ValueError(f"model {model.name!r} has no functional graph (a subclassed or unbuilt model)")
    inputs, outputs = list(model.inputs), list(model.outputs)
    if len(inputs) != 1:
        raise ValueError(f"the model must have exactly one input, got {len(inputs)}")
    if len(outputs) != 1:
        raise ValueError(f"the model must have one output, got {len(outputs)}")
    return inputs[0], outputs[0]


def producer(tensor):
    """``(layer, input tensors)`` of the node that produced KerasTensor ``tensor`` (``(None, [])`` for an
    input tensor)."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None, []
    layer, node_index = history[0], history[1]
    node = layer._inbound_nodes[node_index]
    if not node.input_tensors and isinstance(layer, keras.layers.InputLayer):
        return None, []
    return layer, list(node.input_tensors)


def layer_tensors(output):
    """{layer name: its output KerasTensor} for every layer on a path to ``output`` (walking back through
    the graph that ``output`` belongs to, so a layer shared by several graphs yields this graph's tensor)."""
    found, stack, seen = {}, [output], set()
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        layer, inputs = producer(t)
        if layer is None:
            continue
        found.setdefault(layer.name, t)
        stack.extend(inputs)
    return found
