"""Perceptual-ball explanations (Elliott, Law and Russell, "Explaining Classifiers using Adversarial
Perturbations on the Perceptual Ball", CVPR 2021).

An explanation of class i at image x is an adversarial perturbation x′ that drives the class margin
to a target T while the activations of chosen intermediate layers stay close to those of x (the
"perceptual ball"); the per-pixel size of x′ − x, blurred, is the saliency map. Eq. 5:

    L(x′) = (M_i(x′) − T)² + λ′ Σ_{l ∈ L} ‖C_l(x′) − C_l(x)‖² + λ ‖x′ − x‖²

with M_i the margin of Eq. 1 (logit i minus the largest other logit) or, for multi-label models,
Eq. 2 (M_i = C_i, the logit itself). As in the authors' code the squared norms are means over
elements (``torch.nn.MSELoss``), the objective has no pixel box and x′ starts at x. λ′ = 0 is the
paper's unregularised baseline ("NoPer", Eq. 4).

The optimiser is L-BFGS from TensorFlow Probability (``tfp.optimizer.lbfgs_minimize``), batched:
every image is its own problem (row of the batch: its own curvature pairs and line search) and one
``tf.function`` evaluates the whole batch. The stopping rule is shared: the batch iterates until every
row has converged or the iteration (and evaluation) budget is spent, and TFP counts one evaluation per
batched call, so with a binding budget an image's result depends on the images batched with it (fixed
by ``batch_size`` and the order of the images; the benchmark's cache keys record both). Adam is
available as an option.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from .maps import gaussian_window
from .model_adapter import as_logits_model, input_shape_of
from .validation import check_images, check_labels

__all__ = ["PerceptualBall", "Explanation", "activation_layers", "feature_model", "blur_saliency",
           "perturbation_saliency"]

_RELU_NAMES = ("relu", "relu6")


def _is_relu_layer(layer):
    kind = type(layer).__name__
    if kind == "ReLU":
        return True
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", "")
    return name in _RELU_NAMES


def _graph_tensors(func):
    """{layer name: its output KerasTensor in ``func``'s own graph} (walks back from the outputs, so a
    layer shared by several graphs, e.g. a Sequential rebuilt as functional, yields this graph's node)."""
    found, stack, seen = {}, list(func.outputs), set()
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        history = getattr(t, "_keras_history", None)
        if history is None:
            continue
        op, node_index = history[0], history[1]
        found.setdefault(op.name, t)
        node = op._inbound_nodes[node_index]
        stack.extend(node.input_tensors)
    return found


def activation_layers(model):
    """Names of the ReLU/ReLU6 outputs of ``model``, in the order of ``model.layers``.

    Counts ``keras.layers.ReLU`` (any ``max_value``, so ReLU6), ``Activation("relu"|"relu6")`` and
    layers with ``activation="relu"|"relu6"`` (e.g. ``Conv2D(..., activation="relu")``), so index k of
    this list is "ReLU k" of the paper (0-based): ``layers=range(4, 10)`` is ReLU 4 to 9.

    Raises:
        TypeError: not a Keras model. ValueError: the model has no ReLU output.
    """
    from .model_adapter import to_functional

    func = to_functional(model)
    names = [layer.name for layer in func.layers if _is_relu_layer(layer)]
    if not names:
        raise ValueError(f"model {model.name!r} has no ReLU/ReLU6 layer; pass layer names explicitly")
    return names


def _resolve_layers(model, layers):
    relus = None
    names = []
    for item in layers:
        if isinstance(item, (int, np.integer)):
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
        model: Keras classifier (Sequential or functional; softmax heads give their logits, see
            :func:`tfperceptual.model_adapter.as_logits_model`).
        layers: iterable of layer names or indices into :func:`activation_layers`.

    Returns:
        (keras.Model, list of the layer names).

    Raises:
        ValueError: an unknown layer name, an index out of range.
    """
    logits_model = as_logits_model(model)
    names = _resolve_layers(model, list(layers))
    tensors = _graph_tensors(logits_model)
    missing = [n for n in names if n not in tensors]
    if missing:
        raise ValueError(f"layers {missing} are not on the path from the input to the logits of "
                         f"{model.name!r}; activation layers: {activation_layers(model)[:8]}…")
    fm = keras.Model(logits_model.inputs, [logits_model.outputs[0]] + [tensors[n] for n in names],
                     name=f"{model.name}_features")
    fm.num_classes = logits_model.num_classes
    return fm, names


def blur_saliency(maps, sigma):
    """Gaussian blur of (B, H, W) maps, width ``sigma`` in pixels (0: unchanged).

    Equal to ``scipy.ndimage.gaussian_filter(m, sigma, mode="reflect")`` per image (separable kernel
    of radius int(4σ + 0.5), symmetric padding), computed in TensorFlow for whole batches.

    Raises:
        ValueError: the kernel radius is not smaller than the map's height or width.
    """
    m = tf.convert_to_tensor(maps, tf.float32)
    if sigma is None or sigma <= 0:
        return m
    k = gaussian_window(float(sigma), truncate=4.0).astype(np.float32)  # scipy's default truncate
    r = (len(k) - 1) // 2
    x = m[..., None]
    for axis in (1, 2):
        pads = [[0, 0], [0, 0], [0, 0], [0, 0]]
        pads[axis] = [r, r]
        size = int(x.shape[axis])
        if r >= size:
            raise ValueError(f"sigma = {sigma} is too wide for maps of size {size} (4σ must be < {size})")
        x = tf.pad(x, pads, mode="SYMMETRIC")
        shape = [len(k), 1, 1, 1] if axis == 1 else [1, len(k), 1, 1]
        x = tf.nn.conv2d(x, tf.reshape(k, shape), strides=1, padding="VALID")
    return x[..., 0]


def perturbation_saliency(images, perturbed, sigma=0.0):
    """Saliency of a perturbation: per pixel √(mean over channels of (x′ − x)²), then a Gaussian blur
    of width ``sigma`` pixels (the authors' ``example.py``). Shapes (B, H, W, C) → (B, H, W)."""
    d = tf.convert_to_tensor(perturbed, tf.float32) - tf.convert_to_tensor(images, tf.float32)
    return blur_saliency(tf.sqrt(tf.reduce_mean(tf.square(d), -1)), sigma)


@dataclass
class Explanation:
    """What :class:`PerceptualBall` returns (NumPy arrays).

    Attributes:
        perturbed: (B, H, W, C) float32, the optimised x′ (no pixel box in Eq. 5: it may leave [0, 1]
            slightly).
        saliency: (B, H, W) float32 ≥ 0, per-pixel perturbation size, blurred (σ = ``sigma``),
            times the normalised input gradient if ``guided``.
        margin: (B,) float32, M_i(x′) at the end (Eq. 1, or the logit with ``multilabel``).
        loss: (B,) float32, Eq. 5 at the end.
        labels: (B,) int, the explained classes.
        initial_margin: (B,) float32, M_i(x).
        converged: (B,) bool, L-BFGS's own convergence flag (``False`` after the step budget; Adam:
            all ``False``).
        evaluations: number of batch evaluations of the loss and gradient.
    """

    perturbed: np.ndarray
    saliency: np.ndarray
    margin: np.ndarray
    loss: np.ndarray
    labels: np.ndarray
    initial_margin: np.ndarray
    converged: np.ndarray
    evaluations: int = 0
    layers: list = field(default_factory=list)


class PerceptualBall:
    """Perceptual-ball explainer (Elliott et al., CVPR 2021, Eq. 5) for a Keras classifier.

    Args:
        model: Keras classifier taking (B, H, W, C) pixels in [0, 1]; Sequential or functional;
            logits or softmax output (its logits are used).
        layers: layers whose activations are held close (the perceptual ball): names, or indices into
            :func:`activation_layers` ("ReLU 4 to 9" is ``range(4, 10)``). Empty with
            ``lambda_perceptual=0`` for the unregularised baseline.
        lambda_perceptual: λ′ ≥ 0 (paper: 1e4; 0 is "NoPer", Eq. 4).
        lambda_pixel: λ ≥ 0 on the pixel distance (paper: 1).
        target: margin target T (paper: −2).
        steps: L-BFGS iterations (paper: 100), or Adam steps.
        multilabel: use Eq. 2 (the class logit) instead of the margin of Eq. 1.
        optimizer: ``"lbfgs"`` (TensorFlow Probability, Hager–Zhang line search) or ``"adam"``.
        learning_rate: Adam's step (ignored by L-BFGS).
        num_correction_pairs: L-BFGS memory.
        batch_size: images per optimisation batch.
        max_evaluations: L-BFGS also stops once this many (batched: one per call on the whole batch,
            however many rows still move) loss-and-gradient evaluations are spent, checked after every
            iteration, so the last line search may overshoot it. ``None``:
            ``steps`` iterations only. The authors' ``torch.optim.LBFGS(max_iter=100)`` has no line search
            and stops at ``max_eval = 1.25 × max_iter`` = 125 evaluations; TFP's Hager–Zhang line search
            spends ≈ 3 per iteration, so ``steps=100, max_evaluations=125`` is the authors' budget.

    Raises:
        ValueError: negative λ, non-finite target, steps < 1, unknown optimiser, λ′ > 0 without layers,
            unknown layer names or activation indices out of range.
    """

    def __init__(self, model, layers=(), lambda_perceptual=1e4, lambda_pixel=1.0, target=-2.0, steps=100,
                 multilabel=False, optimizer="lbfgs", learning_rate=1e-3, num_correction_pairs=10,
                 batch_size=32, max_evaluations=None):
        for name, v in (("lambda_perceptual", lambda_perceptual), ("lambda_pixel", lambda_pixel)):
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be finite and ≥ 0, got {v}")
        if not np.isfinite(target):
            raise ValueError(f"target must be finite, got {target}")
        if int(steps) < 1:
            raise ValueError(f"steps must be ≥ 1, got {steps}")
        if max_evaluations is not None and int(max_evaluations) < 1:
            raise ValueError(f"max_evaluations must be ≥ 1 or None, got {max_evaluations}")
        if optimizer not in ("lbfgs", "adam"):
            raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
        layers = list(layers)
        if lambda_perceptual > 0 and not layers:
            raise ValueError("lambda_perceptual > 0 needs layers (names or activation indices)")
        self.fm, self.layers = feature_model(model, layers)
        self.input_shape = input_shape_of(self.fm)
        self.num_classes = self.fm.num_classes
        self.lambda_perceptual = float(lambda_perceptual)
        self.lambda_pixel = float(lambda_pixel)
        self.target = float(target)
        self.steps = int(steps)
        self.multilabel = bool(multilabel)
        self.optimizer = optimizer
        self.learning_rate = float(learning_rate)
        self.num_correction_pairs = int(num_correction_pairs)
        self.batch_size = int(batch_size)
        self.max_evaluations = None if max_evaluations is None else int(max_evaluations)
        self._solve = tf.function(self._solve_impl, reduce_retracing=True)
        self._grad = tf.function(self._input_gradient, reduce_retracing=True)

    # -- the objective ---------------------------------------------------------------------------
    def _forward(self, x):
        out = self.fm(x, training=False)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def _margin(self, logits, labels):
        onehot = tf.one_hot(labels, self.num_classes, dtype=logits.dtype)
        own = tf.reduce_sum(logits * onehot, -1)
        if self.multilabel:
            return own
        others = tf.reduce_max(logits - onehot * 1e30, -1)
        return own - others

    def _terms(self, xp, x, feats0, labels):
        out = self._forward(xp)
        logits, feats = out[0], out[1:]
        margin = self._margin(logits, labels)
        loss = tf.square(margin - self.target)
        if self.lambda_perceptual > 0:
            perc = tf.add_n([tf.reduce_mean(tf.square(tf.reshape(f - f0, [tf.shape(f)[0], -1])), -1)
                             for f, f0 in zip(feats, feats0)])
            loss = loss + self.lambda_perceptual * perc
        if self.lambda_pixel > 0:
            loss = loss + self.lambda_pixel * tf.reduce_mean(tf.square(tf.reshape(xp - x, [tf.shape(x)[0], -1])), -1)
        return loss, margin

    def _solve_impl(self, x, labels):
        import tensorflow_probability as tfp

        shape = tf.shape(x)
        out0 = self._forward(x)
        feats0 = [tf.stop_gradient(f) for f in out0[1:]]
        margin0 = self._margin(out0[0], labels)

        def value_and_grad(flat):
            xp = tf.reshape(flat, shape)
            with tf.GradientTape() as tape:
                tape.watch(xp)
                loss, _ = self._terms(xp, x, feats0, labels)
                total = tf.reduce_sum(loss)
            g = tape.gradient(total, xp)  # rows are independent: ∂(Σ loss)/∂x′_b = ∂loss_b/∂x′_b
            return loss, tf.reshape(g, tf.shape(flat))

        flat0 = tf.reshape(x, [shape[0], -1])
        if self.optimizer == "lbfgs":
            opts = dict(num_correction_pairs=self.num_correction_pairs, tolerance=1e-10, x_tolerance=0.0,
                        f_relative_tolerance=0.0)
            if self.max_evaluations is None:
                res = tfp.optimizer.lbfgs_minimize(value_and_grad, initial_position=flat0,
                                                   max_iterations=self.steps, **opts)
            else:
                # one iteration per call, continued from the previous state (TFP keeps the curvature pairs
                # and counts iterations and evaluations cumulatively), until either budget is spent
                res = tfp.optimizer.lbfgs_minimize(value_and_grad, initial_position=flat0, max_iterations=1,
                                                   **opts)

                def more(r):
                    done = tf.reduce_all(r.converged | r.failed)
                    return (r.num_iterations < self.steps) & (r.num_objective_evaluations < self.max_evaluations) \
                        & tf.logical_not(done)

                def step(r):
                    return [tfp.optimizer.lbfgs_minimize(value_and_grad, None, previous_optimizer_results=r,
                                                         max_iterations=r.num_iterations + 1, **opts)]

                res = tf.while_loop(more, step, [res])[0]
            # a row whose line search failed keeps its last accepted position (tfp marks it "failed")
            flat, converged, evals = res.position, res.converged, res.num_objective_evaluations
        else:
            opt_m = tf.zeros_like(flat0)
            opt_v = tf.zeros_like(flat0)
            b1, b2, lr = 0.9, 0.999, self.learning_rate

            def body(t, flat, m, v):
                _, g = value_and_grad(flat)
                m = b1 * m + (1 - b1) * g
                v = b2 * v + (1 - b2) * tf.square(g)
                tf_t = tf.cast(t + 1, flat.dtype)
                mhat = m / (1 - b1 ** tf_t)
                vhat = v / (1 - b2 ** tf_t)
                return t + 1, flat - lr * mhat / (tf.sqrt(vhat) + 1e-8), m, v

            _, flat, _, _ = tf.while_loop(lambda t, *_: t < self.steps, body, (tf.constant(0), flat0, opt_m, opt_v))
            converged = tf.zeros([shape[0]], tf.bool)
            evals = tf.constant(self.steps)
        xp = tf.reshape(flat, shape)
        loss, margin = self._terms(xp, x, feats0, labels)
        return xp, loss, margin, margin0, converged, evals

    def _input_gradient(self, x, labels):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = self._forward(x)[0]
            own = tf.reduce_sum(logits * tf.one_hot(labels, self.num_classes, dtype=logits.dtype))
        return tape.gradient(own, x)

    # -- public ----------------------------------------------------------------------------------
    def explain(self, images, labels=None, sigma=0.0, guided=False, progress=False):
        """Explain ``labels`` (default: the model's predictions) at ``images``.

        Args:
            images: (B, H, W, C) float, pixels in [0, 1] (uint8 0..255 accepted and scaled).
            labels: (B,) int classes in [0, num_classes), or ``None`` for the top-1 predictions.
            sigma: Gaussian blur of the saliency in pixels (paper: 0 or 5; authors' example: 2).
            guided: multiply the saliency by the normalised input gradient of C_i at x (Sec. 4.2):
                per pixel √(channel mean of ∂C_i/∂x²), divided by its maximum per image.
            progress: a tqdm bar over batches.

        Returns:
            :class:`Explanation`.

        Raises:
            ValueError / TypeError: images of the wrong shape, NaN/Inf or outside [0, 1]; labels out of range.
        """
        from tqdm.auto import tqdm

        x = check_images(images, "images", (0.0, 1.0), self.input_shape)
        if labels is None:
            labels = np.concatenate([np.argmax(self._forward(tf.constant(x[i:i + self.batch_size]))[0]
                                               .numpy(), -1) for i in range(0, len(x), self.batch_size)])
        y = check_labels(labels, len(x), self.num_classes, "labels")
        parts = {k: [] for k in ("xp", "loss", "margin", "margin0", "converged", "sal")}
        evaluations = 0
        for i in tqdm(range(0, len(x), self.batch_size), desc="perceptual ball", disable=not progress):
            xb, yb = tf.constant(x[i:i + self.batch_size]), tf.constant(y[i:i + self.batch_size], tf.int32)
            xp, loss, margin, margin0, conv, evals = self._solve(xb, yb)
            sal = perturbation_saliency(xb, xp, sigma)
            if guided:
                g = self._grad(xb, yb)
                gm = tf.sqrt(tf.reduce_mean(tf.square(g), -1))
                gm = gm / tf.maximum(tf.reduce_max(gm, [1, 2], keepdims=True), 1e-12)
                sal = sal * gm
            for k, v in zip(parts, (xp, loss, margin, margin0, conv, sal)):
                parts[k].append(v.numpy())
            evaluations += int(evals)
        cat = {k: np.concatenate(v) for k, v in parts.items()}
        return Explanation(perturbed=cat["xp"].astype(np.float32), saliency=cat["sal"].astype(np.float32),
                           margin=cat["margin"], loss=cat["loss"], labels=y, initial_margin=cat["margin0"],
                           converged=cat["converged"], evaluations=evaluations, layers=list(self.layers))

    __call__ = explain
