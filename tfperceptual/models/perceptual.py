"""The perceptually regularised classifier: H = C ∘ F with a decoder D on its features (the model of
"Visualizing Representations by Perceptual Regularization", ICLR 2020 submission).

:class:`PerceptualRegularization` is a ``keras.Model`` in the pattern of keras.io's VAE example (sub-models as
attributes, a custom ``train_step``, one ``Mean`` tracker per loss).  **The reconstruction term is the per-pixel
mean squared error** (the mean over pixels and channels, then over the batch); the paper's λ multiplies the
squared norm ‖x − P(x)‖² summed over the D = H·W·C entries, so the paper's λ_paper corresponds to
λ = λ_paper · D here (MNIST: D = 784; CIFAR-10: D = 3,072): with that λ the two objectives are identical,
CE + λ_paper · Σ(x − P(x))² = CE + λ · mean(x − P(x))².

It lives with the models (the zoo loads the shipped ones); its builders, :func:`~tfperceptual.training.from_classifier`
and the latent tools are in :mod:`tfperceptual.training.perceptual`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ..validation import check_real
from .graph import graph_endpoints, has_graph

__all__ = ["PerceptualRegularization"]


def _shape(model, which, attr):
    try:
        return tuple(getattr(model, attr))
    except (AttributeError, ValueError) as e:
        raise ValueError(f"the {which} must be a built Keras model with a known {attr} ({e})") from None


def _fits(want, got):
    return len(want) == len(got) and all(w is None or g is None or w == g for w, g in zip(want[1:], got[1:]))


def _probability_head(model):
    """Whether the last layer of ``model`` is a softmax (a ``Softmax`` layer, or an activation of softmax)."""
    last = model.layers[-1] if getattr(model, "layers", None) else None
    if isinstance(last, keras.layers.Softmax):
        return True
    act = getattr(last, "activation", None)
    return getattr(act, "__name__", "") == "softmax"


@keras.saving.register_keras_serializable(package="tfperceptual")
class PerceptualRegularization(keras.Model):
    """H = C ∘ F trained with a decoder D on F: loss = CE(C(F(x)), y) + λ · MSE(x, D(F(x))) (module docstring).

    Args:
        encoder: F, a Keras model from images (B, H, W, C) in [0, 1] to features z.
        classifier: C, a Keras model from z to logits (B, K).
        decoder: D, a Keras model from z to images of the encoder's input shape, in [0, 1] (a sigmoid output).
        lam: λ ≥ 0, the weight of the per-pixel mean squared reconstruction error.

    ``call(x)`` returns the logits of H (so attacks and explainers take the model as a classifier);
    :meth:`perceive` returns P(x) = D(F(x)) clipped to [0, 1].  Metrics: ``loss``, ``classification_loss``,
    ``reconstruction_loss`` and ``accuracy`` (training and ``evaluate``).  ``sample_weight`` / ``class_weight``
    weigh both terms per image (the batch mean of the weighted per-image losses, as Keras' losses do); accuracy is
    unweighted.

    Raises:
        ValueError: λ < 0 or not finite; a part whose input or output shape does not fit (named, with the shapes);
            a classifier that ends in a softmax (it must output logits).
    """

    def __init__(self, encoder, classifier, decoder, lam=1e-2, **kwargs):
        super().__init__(**kwargs)
        self.lam = check_real(lam, "lam (λ)", 0.0, None, low_inclusive=True)
        x_shape = _shape(encoder, "encoder", "input_shape")
        z_shape = _shape(encoder, "encoder", "output_shape")
        if not _fits(_shape(classifier, "classifier", "input_shape"), z_shape):
            raise ValueError(f"the classifier takes {_shape(classifier, 'classifier', 'input_shape')} but the encoder "
                             f"outputs {z_shape}")
        if not _fits(_shape(decoder, "decoder", "input_shape"), z_shape):
            raise ValueError(f"the decoder takes {_shape(decoder, 'decoder', 'input_shape')} but the encoder outputs "
                             f"{z_shape}")
        if not _fits(_shape(decoder, "decoder", "output_shape"), x_shape):
            raise ValueError(f"the decoder outputs {_shape(decoder, 'decoder', 'output_shape')} but the images have "
                             f"shape {x_shape} (the encoder's input): a perception must have the image's shape")
        out = _shape(classifier, "classifier", "output_shape")
        if len(out) != 2 or out[-1] is None:
            raise ValueError(f"the classifier must output logits (B, K), got {out}")
        if _probability_head(classifier):
            raise ValueError(f"the classifier {classifier.name!r} ends in a softmax: it must output logits (the loss "
                             "is the cross-entropy of logits); drop the activation, or cut a softmax model with "
                             "from_classifier, which reads its pre-activation")
        self.encoder, self.classifier, self.decoder = encoder, classifier, decoder
        self.image_shape, self.num_classes = x_shape[1:], int(out[-1])
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.classification_tracker = keras.metrics.Mean(name="classification_loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.built = True  # its weights are the parts', which exist already

    @property
    def metrics(self):
        return [self.loss_tracker, self.classification_tracker, self.reconstruction_tracker, self.accuracy_tracker]

    def call(self, inputs, training=False):
        return self.classifier(self.encoder(inputs, training=training), training=training)

    def logits_graph(self):
        """(input, logits) KerasTensors of one functional graph over F's own layers, with C called on F's output:
        the adapter (:class:`~tfperceptual.models.LogitsModel`) builds its network from it, so that explainers find
        F's convolutional and ReLU layers by name (Grad-CAM, the perceptual ball)."""
        if not has_graph(self.encoder):  # a subclassed encoder: the model called on a symbolic input
            inp = keras.Input(tuple(self.image_shape), name="pixels")
            return inp, self(inp)
        inp, z = graph_endpoints(self.encoder)
        return inp, self.classifier(z)

    def perceive(self, x, training=False):
        """P(x) = D(F(x)) for images (B, H, W, C) in [0, 1], clipped to [0, 1] (float32 tensor, same shape)."""
        return tf.clip_by_value(self.decoder(self.encoder(x, training=training), training=training), 0.0, 1.0)

    def reconstruction_error(self, x, training=False):
        """The per-pixel mean squared error of P(x) = D(F(x)) against x, a float32 scalar (the batch mean) for
        images (B, H, W, C) in [0, 1] (unclipped decoder output, as trained)."""
        recon = self.decoder(self.encoder(x, training=training), training=training)
        return tf.reduce_mean(tf.square(tf.cast(x, recon.dtype) - recon))

    def _objective(self, x, y, training, sample_weight=None):
        z = self.encoder(x, training=training)
        logits = self.classifier(z, training=training)
        recon = self.decoder(z, training=training)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(tf.reshape(y, [-1]), tf.int64), logits)
        mse = tf.reduce_mean(tf.square(tf.cast(x, recon.dtype) - recon), axis=[1, 2, 3])
        if sample_weight is not None:  # Keras' convention: the batch mean of the weighted per-sample losses
            w = tf.cast(tf.reshape(sample_weight, [-1]), ce.dtype)
            ce, mse = ce * w, mse * w
        ce, mse = tf.reduce_mean(ce), tf.reduce_mean(mse)
        return logits, ce, mse, ce + self.lam * mse

    def _update(self, y, logits, ce, mse, total):
        self.loss_tracker.update_state(total)
        self.classification_tracker.update_state(ce)
        self.reconstruction_tracker.update_state(mse)
        self.accuracy_tracker.update_state(tf.reshape(y, [-1]), logits)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = tf.cast(x, tf.float32)
        with tf.GradientTape() as tape:
            logits, ce, mse, total = self._objective(x, y, True, sample_weight)
            # under tf.distribute the replicas' gradients are summed: each contributes its share of the mean
            replicas = tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, total.dtype)
            scaled = self.optimizer.scale_loss(total / replicas)
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return self._update(y, logits, ce, mse, total)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        return self._update(y, *self._objective(tf.cast(x, tf.float32), y, False, sample_weight))

    def get_config(self):
        config = super().get_config()
        config.update({"encoder": keras.saving.serialize_keras_object(self.encoder),
                       "classifier": keras.saving.serialize_keras_object(self.classifier),
                       "decoder": keras.saving.serialize_keras_object(self.decoder), "lam": self.lam})
        return config

    @classmethod
    def from_config(cls, config):
        parts = {k: keras.saving.deserialize_keras_object(config.pop(k)) for k in ("encoder", "classifier", "decoder")}
        return cls(**parts, **config)
