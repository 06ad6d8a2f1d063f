"""Adversarial training inside ``Model.fit``: :class:`AdversarialTraining` (Madry et al. 2018; TRADES,
Zhang et al. 2019).

The wrapper is a ``keras.Model`` written as keras.io's "Customizing what happens in ``fit()``" shows: its
``train_step`` perturbs each batch with the attack's graph-pure :meth:`~tfperceptual.attacks.Attack.perturb`
at the current weights (inference mode, no gradient to the weights through the attack), computes the loss
with ``compute_loss`` and applies the gradients with the optimizer.  Everything else is Keras': ``compile``,
``fit`` (NumPy arrays or ``tf.data``), ``evaluate`` (clean metrics: ``test_step`` is Keras' own),
callbacks, ``tf.distribute`` strategies (build the classifier, the attack and the wrapper inside
``strategy.scope()``), XLA.

* ``method="madry"``: loss = (1 − f) · CE(f(x), y) + f · CE(f(x_adv), y) with f = ``adversarial_fraction``
  (f = 1, the default, is Madry et al.'s objective and costs no clean pass);
* ``method="trades"``: loss = CE(f(x), y) + β · KL(softmax f(x) ‖ softmax f(x_adv)) (Zhang et al., Eq. 5),
  the attack built with ``loss="kl"`` so that it maximises the KL term.

The compiled metrics (e.g. ``"accuracy"``) are computed on the adversarial batch during training (the
robust training accuracy) and on clean images by ``evaluate`` and ``validation_data``.

A :class:`~tfperceptual.training.PerceptualRegularization` model is trained adversarially with its
reconstruction term: loss = (the loss above) + λ · MSE(x_adv, P(x_adv)), the decoder reconstructing the very
images the classifier trains on (so that P keeps showing what the model perceives of any input; reconstructing x
from x_adv instead would teach P to undo attacks).  Its ``reconstruction_loss`` is reported beside the loss; the
``evaluate`` / validation loss is CE + λ · MSE(x, P(x)) on the clean images.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ..attacks.base import Attack
from ..attacks.objectives import attack_loss
from ..models.adapter import LogitsModel
from ..validation import check_choice, check_real
from .perceptual import PerceptualRegularization

__all__ = ["AdversarialTraining", "METHODS"]

METHODS = ("madry", "trades")


def _classifier_of(model):
    return model.classifier if isinstance(model, LogitsModel) else model


def _check_from_logits(loss):
    """A cross-entropy built for probabilities would be applied to the wrapper's logits: refuse it."""
    if isinstance(loss, str) and loss in ("sparse_categorical_crossentropy", "categorical_crossentropy"):
        raise ValueError(f"compile(loss={loss!r}) expects probabilities, but AdversarialTraining outputs "
                         "logits (its classifier's pre-softmax scores): pass "
                         "keras.losses.SparseCategoricalCrossentropy(from_logits=True), or no loss (the default)")
    if isinstance(loss, (keras.losses.SparseCategoricalCrossentropy, keras.losses.CategoricalCrossentropy)):
        if not loss.get_config().get("from_logits", False):
            raise ValueError(f"compile(loss={type(loss).__name__}(from_logits=False)) expects probabilities, but "
                             "AdversarialTraining outputs logits: build the loss with from_logits=True")


class AdversarialTraining(keras.Model):
    """A Keras classifier trained on adversarial examples (see the module docstring).

    Args:
        model: the classifier to train (any Keras 3 image classifier: functional, ``Sequential``, logits or
            softmax head; its weights are trained in place).  A softmax head is trained through its logits
            (the pre-activation, as :class:`~tfperceptual.models.LogitsModel` reads it), so the loss never
            differentiates a softmax twice.
        attack: a graph-pure :class:`~tfperceptual.attacks.Attack` built on ``model`` (e.g.
            :class:`~tfperceptual.attacks.LinfPGD`, :class:`~tfperceptual.attacks.L2PGD`,
            :class:`~tfperceptual.attacks.RandomStartFGSM`, :class:`~tfperceptual.attacks.FPGAP`, or
            :class:`~tfperceptual.attacks.PGAP` with the exact solver).
        method: ``"madry"`` or ``"trades"``.
        beta: TRADES' β ≥ 0 (6.0 in Zhang et al.); only with ``"trades"``.
        adversarial_fraction: f in (0, 1], the weight of the adversarial loss (``"madry"``): a loss weight
            over the whole batch (with f < 1 every image is seen both clean and attacked), not a fraction of
            the batch that is attacked.

    Attributes:
        classifier: the user's model (save it: ``wrapper.classifier.save("robust.keras")``).

    ``call(x)`` returns the classifier's logits (B, K) for pixels (B, H, W, C) in [0, 1].  Labels: integer
    classes, shape (B,) or (B, 1), in [0, K).

    Raises:
        TypeError: ``attack`` is not an :class:`Attack`, or is not graph-pure (a Foolbox wrapper, PGAP with
            CVXPY).
        ValueError: the attack was built on another model; an unknown method; β < 0; f outside (0, 1];
            ``"trades"`` with an attack that does not maximise the KL term (``loss="kl"``) or with f < 1;
            ``beta`` given with ``"madry"``; labels of the wrong shape (at the first batch).
        tf.errors.InvalidArgumentError: labels that are not integers or lie outside [0, K), at the first
            such batch — except in a step that Keras compiles with XLA (``jit_compile=True``, its default on a
            GPU without a strategy), where the assertion is compiled away and such labels give a NaN or
            meaningless loss: check labels before training there.

    TRADES' KL term is an unweighted batch mean (``sample_weight`` / ``class_weight`` weigh the CE term only).
    """

    def __init__(self, model, attack, method="madry", beta=6.0, adversarial_fraction=1.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(attack, Attack):
            raise TypeError(f"attack must be a tfperceptual Attack (LinfPGD, L2PGD, RandomStartFGSM, FPGAP, PGAP), "
                            f"got {type(attack).__name__}")
        if not attack.graph_pure:
            raise TypeError(f"attack {type(attack).__name__} is not graph-pure, so it cannot run inside train_step "
                            "(Foolbox's attacks run eagerly; PGAP with CVXPY calls Python): use LinfPGD, L2PGD, "
                            "RandomStartFGSM, FPGAP or PGAP(solver='exact')")
        if _classifier_of(attack.model) is not _classifier_of(model):
            raise ValueError("the attack was built on another model than the one AdversarialTraining wraps: build "
                             "it on the same model object, e.g. LinfPGD(model, eps), so that it sees the weights "
                             "being trained")
        self.method = check_choice(method, "method", METHODS)
        self.beta = check_real(beta, "beta", 0.0, None, low_inclusive=True)
        self.adversarial_fraction = check_real(adversarial_fraction, "adversarial_fraction", 0.0, 1.0,
                                               high_inclusive=True)
        if self.method == "trades":
            if getattr(attack, "loss", None) != "kl":
                raise ValueError("method='trades' maximises KL(f(x) ‖ f(x_adv)) in its inner attack: build the "
                                 "attack with loss='kl' (LinfPGD / L2PGD / RandomStartFGSM)")
            if self.adversarial_fraction != 1.0:
                raise ValueError("adversarial_fraction is an option of method='madry' (TRADES weighs its terms "
                                 "with beta)")
        elif beta != 6.0:
            raise ValueError("beta is an option of method='trades'")
        self.classifier = _classifier_of(model)
        self.attack = attack
        object.__setattr__(self, "_logits", attack.model)  # a view of the classifier: no weights of its own
        self.num_classes = attack.num_classes
        self.image_shape = attack.input_shape
        self._step_seed = bool(getattr(attack, "takes_step_seed", False))
        self._perceptual = isinstance(self.classifier, PerceptualRegularization)
        if self._perceptual:
            self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.built = True  # its weights are the classifier's, which exist already

    # ------------------------------------------------------------------ Keras
    def call(self, inputs, training=False):
        return self._logits(inputs, training=training)

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        """Keras' ``compile``; ``loss`` defaults to ``SparseCategoricalCrossentropy(from_logits=True)``
        (the wrapper outputs logits; a cross-entropy for probabilities raises ``ValueError``)."""
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        _check_from_logits(loss)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)
        # the optimizer's variables exist before any trace: a train_step traced again (e.g. after a batch
        # with bad labels raised) must not create variables
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)

    def _labels(self, y):
        if y is None:
            raise ValueError("AdversarialTraining needs labels: fit(x, y) or a dataset of (images, labels)")
        shape = y.shape
        if shape.rank == 2 and shape[-1] == 1:
            y = tf.reshape(y, [-1])
        elif shape.rank != 1:
            raise ValueError(f"labels must be integer classes of shape (B,) or (B, 1), got shape {tuple(shape)} "
                             "(one-hot labels: take their argmax)")
        labels = tf.cast(y, tf.int64)
        checks = [tf.debugging.assert_equal(tf.cast(labels, y.dtype), y, message="labels must be integer classes"),
                  tf.debugging.assert_non_negative(labels, message="labels must lie in [0, K)"),
                  tf.debugging.assert_less(labels, tf.constant(self.num_classes, tf.int64),
                                           message=f"labels must lie in [0, {self.num_classes})")]
        with tf.control_dependencies(checks):
            return tf.identity(labels)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        labels = self._labels(y)
        x = tf.cast(x, tf.float32)
        # a norm-ball attack folds the step count into its random start: fresh noise for a batch seen again
        extra = {"step": self.optimizer.iterations} if self._step_seed else {}
        x_adv = tf.stop_gradient(self.attack.perturb(x, labels, **extra))
        f = self.adversarial_fraction
        with tf.GradientTape() as tape:
            logits_adv = self(x_adv, training=True)
            if self.method == "trades":
                logits = self(x, training=True)
                loss = self.compute_loss(x=x, y=labels, y_pred=logits, sample_weight=sample_weight)
                kl = attack_loss(logits_adv, labels, loss="kl", reference_logits=logits)  # KL(f(x) ‖ f(x_adv))
                loss += self.beta * _per_replica(tf.reduce_mean(kl))
            else:
                loss = self.compute_loss(x=x_adv, y=labels, y_pred=logits_adv, sample_weight=sample_weight)
                if f < 1.0:
                    clean = self.compute_loss(x=x, y=labels, y_pred=self(x, training=True),
                                              sample_weight=sample_weight)
                    loss = f * loss + (1.0 - f) * clean
            if self._perceptual:  # the decoder reconstructs the images the classifier trains on
                reconstruction = self.classifier.reconstruction_error(x_adv, training=True)
                loss += self.classifier.lam * _per_replica(reconstruction)
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        for metric in self.metrics:
            if metric.name == "loss":  # the loss over the whole batch, not the replica's share
                metric.update_state(loss * _replicas(), sample_weight=tf.shape(x)[0])
        if self._perceptual:
            self.reconstruction_tracker.update_state(reconstruction)
        return self.compute_metrics(x_adv, labels, logits_adv, sample_weight=sample_weight)

    def test_step(self, data):
        if not self._perceptual:
            return super().test_step(data)
        # evaluate is clean: CE + λ · the reconstruction error of the clean images, so that val_loss and loss
        # weigh the same two terms
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        labels = self._labels(y)
        x = tf.cast(x, tf.float32)
        logits = self(x, training=False)
        reconstruction = self.classifier.reconstruction_error(x)
        loss = self.compute_loss(x=x, y=labels, y_pred=logits, sample_weight=sample_weight)
        loss += self.classifier.lam * _per_replica(reconstruction)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss * _replicas(), sample_weight=tf.shape(x)[0])
        self.reconstruction_tracker.update_state(reconstruction)
        return self.compute_metrics(x, labels, logits, sample_weight=sample_weight)

    def get_config(self):
        raise NotImplementedError("AdversarialTraining is a training wrapper and is not saved itself: save the "
                                  "trained classifier, wrapper.classifier.save('robust.keras')")

    def save(self, *args, **kwargs):
        """Not supported (see :meth:`get_config`): raises ``NotImplementedError``."""
        self.get_config()


def _replicas():
    return tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, tf.float32)


def _per_replica(value):
    """A batch mean's share of the global loss under ``tf.distribute`` (as Keras scales ``compute_loss``)."""
    return value / _replicas()
