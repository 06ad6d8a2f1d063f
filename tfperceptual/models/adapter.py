"""One way to turn any Keras 3 image classifier into logits: :class:`LogitsModel` / :func:`as_logits_model`.

Attacks, explainers (the perceptual ball and every tf-keras-vis method) and metrics all call the
classifier through this adapter, so they agree on what "the logits" are.  :class:`LogitsModel` is a
``keras.Model`` that wraps the user's classifier (weights shared, so it follows training) and outputs
logits.  Its :attr:`~LogitsModel.network` is a *functional* model over the classifier's own graph (no
layer is rebuilt or re-called on another input, so ``layer.output`` of every classifier layer lies in it;
tf-keras-vis and feature extractors need that).

The classifier's head is detected in this order (:attr:`LogitsModel.head`):

1. ``"softmax_activation"`` / ``"sigmoid_activation"``: the last layer has ``activation="softmax"`` (or
   ``"sigmoid"``), e.g. ``Dense(10, activation="softmax")``.  A :class:`PreActivation` layer computes that
   layer's output with a *linear view* of it (a second Python object sharing every weight, whose
   ``activation`` is the identity): the exact pre-activation logits, without ever changing the user's
   layer (thread-safe, nothing swapped during ``call``).
2. ``"softmax_layer"``: the last layer is ``Softmax``, ``Activation("softmax")``, or any one-input layer
   (a ``Lambda``, a custom layer) whose output equals the softmax of its input on a probe batch: its input
   tensor is the logits, exactly (``"sigmoid_layer"``: the same for ``Activation("sigmoid")``).
3. ``"probabilities"``: the outputs on the probe batch are non-negative rows summing to 1 (a probability
   head we cannot see through): ``log p`` (a :class:`LogProbability` layer) serves as logits — margins
   and cross-entropy are unchanged (softmax is invariant to a per-row constant) except where p underflows
   below ~1e-38.  A warning says so.
4. ``"logits"``: anything else.

The probe batch is 4 seeded uniform images; the same probe checks that the logits have a gradient with
respect to the input (:class:`NotDifferentiableError` otherwise).  ``LogitsModel`` saves and loads as
``.keras`` (``get_config`` holds the wrapped classifier).
"""

from __future__ import annotations

import collections
import warnings
import weakref

import keras
import numpy as np
import tensorflow as tf

from .graph import graph_endpoints, has_graph, producer

__all__ = ["LogitsModel", "as_logits_model", "to_functional", "input_shape_of", "NotDifferentiableError",
           "PreActivation", "LogProbability", "HEADS"]

#: head kinds :class:`LogitsModel` detects (see the module docstring)
HEADS = ("logits", "softmax_activation", "sigmoid_activation", "softmax_layer", "sigmoid_layer", "probabilities")
_PROBE_SEED = 20240607


class NotDifferentiableError(TypeError):
    """The model's output has no gradient with respect to its input."""


def input_shape_of(model):
    """(H, W, C) the model expects (``None`` for free dimensions).

    Raises:
        ValueError: no defined input shape, several inputs, or not an image input (B, H, W, C).
    """
    if isinstance(model, LogitsModel):
        return model.image_shape
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
    """A functional ``keras.Model`` over ``model``'s own graph (the model itself if functional).

    A ``Sequential`` model is not rebuilt on a new input (that would give its layers a second graph in
    which ``layer.output`` is not found); its internal graph's input and output are used.

    Raises:
        TypeError: not a Keras model. ValueError: no graph (subclassed or unbuilt), several inputs/outputs.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    if isinstance(model, LogitsModel):
        return model.network
    if not has_graph(model) and callable(getattr(model, "logits_graph", None)):
        return as_logits_model(model).network  # a subclassed model over its own layers (PerceptualRegularization)
    if not has_graph(model):
        raise ValueError(f"model {model.name!r} has no functional graph (a subclassed model, or a Sequential "
                         "model without an input shape): build it with keras.Input(shape) or wrap it as "
                         "keras.Model(inputs, model(inputs))")
    if not isinstance(model, keras.Sequential):
        return model
    inp, out = graph_endpoints(model)
    return keras.Model(inp, out, name=f"{model.name}_functional")


def _linear_view(layer):
    """A second object sharing every attribute (weights included) of ``layer``, with a linear activation."""
    view = object.__new__(type(layer))
    view.__dict__.update(layer.__dict__)
    object.__setattr__(view, "activation", keras.activations.linear)
    return view


@keras.saving.register_keras_serializable(package="tfperceptual")
class PreActivation(keras.layers.Layer):
    """The output of ``layer`` before its activation, with ``layer``'s own weights (shared, not copied).

    Each call runs ``layer.call`` on a linear view of the layer (see :func:`_linear_view`): the wrapped
    layer itself is never modified.  Input and output shapes are those of ``layer``.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        self.layer = layer

    def call(self, inputs):
        return _linear_view(self.layer).call(inputs)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "layer": keras.saving.serialize_keras_object(self.layer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layer = keras.saving.deserialize_keras_object(config.pop("layer"))
        return cls(layer, **config)


@keras.saving.register_keras_serializable(package="tfperceptual")
class LogProbability(keras.layers.Layer):
    """log(max(p, 1e-38)): logits of a probability output (equal to the true logits up to a per-row constant)."""

    def call(self, inputs):
        return keras.ops.log(keras.ops.maximum(inputs, 1e-38))


def _is(fn, name):
    return fn is getattr(keras.activations, name) or getattr(fn, "__name__", "") == name


def _probe_images(shape, n=4):
    h, w, c = (s if s is not None else 32 for s in shape)
    rng = np.random.default_rng(_PROBE_SEED)
    return tf.constant(rng.uniform(0.0, 1.0, (n, h, w, c)).astype(np.float32))


@keras.saving.register_keras_serializable(package="tfperceptual")
class LogitsModel(keras.Model):
    """A Keras classifier seen through its logits (see the module docstring).

    Args:
        classifier: a ``keras.Model`` taking images (B, H, W, C) (functional, ``Sequential`` with an input
            shape, or subclassed with ``input_shape``), one output (B, K): logits, a softmax/sigmoid head
            or probabilities.
        head: ``"auto"`` (detect, default), ``"logits"`` (take the output as it is) or
            ``"probabilities"`` (use log p).
        input_shape: (H, W, C) for a subclassed classifier without a graph (ignored otherwise).

    Attributes:
        classifier: the wrapped model (weights shared).
        network: functional model, input → logits, over the classifier's own graph.
        head: the detected head kind, one of :data:`HEADS`.
        num_classes: K.
        image_shape: (H, W, C) with ``None`` for free dimensions.

    Raises:
        TypeError: not a Keras model. ValueError: no input shape, several inputs/outputs, an output that
            is not (B, K), an unknown ``head``.
        NotDifferentiableError: the logits have no gradient with respect to the input.
    """

    def __init__(self, classifier, head="auto", input_shape=None, **kwargs):
        if not isinstance(classifier, keras.Model):
            raise TypeError(f"model must be a keras.Model, got {type(classifier).__name__}")
        if head not in ("auto", "logits", "probabilities"):
            raise ValueError(f"head must be 'auto', 'logits' or 'probabilities', got {head!r}")
        kwargs.setdefault("name", f"{classifier.name}_logits")
        super().__init__(**kwargs)
        self.classifier = classifier
        self._head_option = head
        self._input_shape_option = None if input_shape is None else tuple(input_shape)
        network, kind = self._build_network(classifier, head, self._input_shape_option)
        object.__setattr__(self, "_network", network)  # not tracked: its weights are the classifier's
        self.head = kind
        self.image_shape = input_shape_of(network)
        self.num_classes = int(network.outputs[0].shape[-1])
        self._check_differentiable()
        self.built = True  # its weights are the classifier's, which exist already

    # -- construction ----------------------------------------------------------------------------
    @staticmethod
    def _build_network(classifier, head, input_shape):
        if has_graph(classifier):
            inp, out = graph_endpoints(classifier)
        elif callable(getattr(classifier, "logits_graph", None)):
            # a subclassed model that exposes a functional graph of its own layers (PerceptualRegularization)
            inp, out = classifier.logits_graph()
        elif input_shape is not None or getattr(classifier, "image_shape", None) is not None:
            # a subclassed model that states its image shape (the project's convention: ``image_shape`` (H, W, C),
            # e.g. PerceptualRegularization) is called on a symbolic input, as with input_shape
            inp = keras.Input(input_shape if input_shape is not None else tuple(classifier.image_shape), name="pixels")
            out = classifier(inp)
        else:
            raise ValueError(f"model {classifier.name!r} has no functional graph (a subclassed model, or a "
                             "Sequential model without an input shape): build it with keras.Input(shape), wrap it "
                             "as keras.Model(inputs, model(inputs)), or pass input_shape=(H, W, C)")
        shape = tuple(inp.shape)
        if len(shape) != 4:
            raise ValueError(f"the model must take images of shape (B, H, W, C), its input shape is {shape}")
        if len(out.shape) != 2:
            raise ValueError(f"the model must output (B, num_classes), got shape {tuple(out.shape)}")
        name = f"{classifier.name}_logits"
        if head == "logits":
            return keras.Model(inp, out, name=name), "logits"
        if head == "probabilities":
            return keras.Model(inp, LogProbability(name="log_prob")(out), name=name), "probabilities"
        last, last_inputs = producer(out)
        single = last is not None and len(last_inputs) == 1
        act = getattr(last, "activation", None)
        if single and not isinstance(last, keras.layers.Activation):
            for fn, kind in (("softmax", "softmax_activation"), ("sigmoid", "sigmoid_activation")):
                if _is(act, fn):
                    logits = PreActivation(last, name=f"{last.name}_logits")(last_inputs[0])
                    return keras.Model(inp, logits, name=name), kind
        if single and (isinstance(last, keras.layers.Softmax)
                       or (isinstance(last, keras.layers.Activation) and _is(act, "softmax"))):
            return keras.Model(inp, last_inputs[0], name=name), "softmax_layer"
        if single and isinstance(last, keras.layers.Activation) and _is(act, "sigmoid"):
            return keras.Model(inp, last_inputs[0], name=name), "sigmoid_layer"
        probe = _probe_images(shape[1:])
        if single and tuple(last_inputs[0].shape) == tuple(out.shape):
            z, p = keras.Model(inp, [last_inputs[0], out])(probe, training=False)
            if np.allclose(tf.nn.softmax(z).numpy(), np.asarray(p), rtol=1e-4, atol=1e-6):
                return keras.Model(inp, last_inputs[0], name=name), "softmax_layer"
        p = np.asarray(keras.Model(inp, out)(probe, training=False))
        if np.all(p >= 0) and np.allclose(p.sum(1), 1.0, atol=1e-4):
            warnings.warn(f"the output of {classifier.name!r} looks like probabilities from a head whose logits "
                          "cannot be read: using log(p) as logits (exact up to a per-row constant unless p "
                          "underflows)", stacklevel=4)
            return keras.Model(inp, LogProbability(name="log_prob")(out), name=name), "probabilities"
        return keras.Model(inp, out, name=name), "logits"

    def _check_differentiable(self):
        x = _probe_images(self.image_shape, n=2)  # a watched constant, not a variable: under a distribution
        with tf.GradientTape() as tape:            # strategy's scope a variable would be a mirrored one
            tape.watch(x)
            total = tf.reduce_sum(self._network(x, training=False))
        if tape.gradient(total, x) is None:
            raise NotDifferentiableError(f"the output of model {self.classifier.name!r} is not differentiable with "
                                         "respect to its input (no gradient path): gradient-based attacks and "
                                         "explanations cannot run")

    # -- keras.Model -----------------------------------------------------------------------------
    @property
    def network(self):
        """Functional ``keras.Model``: input (B, H, W, C) → logits (B, K), over the classifier's own graph."""
        return self._network

    @property
    def model_kind(self):
        """Alias of :attr:`head`."""
        return self.head

    def call(self, inputs, training=False):
        return self._network(inputs, training=training)

    def _traced(self, name, fn):
        """A tf.function of this adapter, built once and kept with it (not tracked by Keras)."""
        cache = self.__dict__.setdefault("_traced_fns", {})
        if name not in cache:
            cache[name] = tf.function(fn, reduce_retracing=True)
        return cache[name]

    @staticmethod
    def _pixels(images):
        x = tf.convert_to_tensor(images)
        if not x.dtype.is_floating:
            raise TypeError(f"images must be float pixels in [0, 1], got dtype {x.dtype.name} (divide uint8 by 255)")
        return tf.cast(x, tf.float32)

    def predicted_class(self, images):
        """Top-1 classes (B,) int64 tensor of ``images`` (B, H, W, C) float in [0, 1] (inference mode, traced
        once per adapter).

        Raises:
            TypeError: images that are not floating point.
        """
        return self._traced("top1", lambda x: tf.argmax(self._network(x, training=False), -1))(self._pixels(images))

    def class_probability(self, images, classes):
        """Softmax probability (B,) float32 tensor of ``classes`` (B,) int at ``images`` (traced once).

        Raises:
            TypeError: images that are not floating point.
        """
        fn = self._traced("probability", lambda x, c: tf.gather(tf.nn.softmax(self._network(x, training=False)),
                                                                c, batch_dims=1))
        return fn(self._pixels(images), tf.cast(classes, tf.int32))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {"classifier": keras.saving.serialize_keras_object(self.classifier), "head": self._head_option,
                "input_shape": self._input_shape_option, "name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        classifier = keras.saving.deserialize_keras_object(config.pop("classifier"))
        return cls(classifier, **config)


#: (id(classifier), head, input_shape) → its LogitsModel, held weakly: an adapter lives as long as something
#: uses it, and it holds its classifier, so the id cannot be reused while the entry exists
_CACHE = weakref.WeakValueDictionary()


def as_logits_model(model, head="auto", input_shape=None) -> LogitsModel:
    """The :class:`LogitsModel` of ``model`` (``model`` itself if it is one).

    Attacks, explainers and metrics built on the same classifier share one adapter while any of them
    lives, so the detection probe runs once.

    Raises:
        see :class:`LogitsModel`.
    """
    if isinstance(model, LogitsModel):
        return model
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    key = (id(model), head, None if input_shape is None else tuple(input_shape))
    cached = _CACHE.get(key)
    if cached is None or cached.classifier is not model:
        cached = LogitsModel(model, head=head, input_shape=input_shape)
        _CACHE[key] = cached
    _RECENT.append(cached)  # the last few stay alive (and traced) between calls that hold no reference
    return cached


#: strong references to the most recently used adapters: a protocol that calls as_logits_model per batch
#: does not re-probe and retrace whenever the garbage collector happens to run in between
_RECENT = collections.deque(maxlen=4)
