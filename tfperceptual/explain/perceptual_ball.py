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

The default optimiser is L-BFGS from TensorFlow Probability (``tfp.optimizer.lbfgs_minimize``), batched:
every image is its own problem (row of the batch: its own curvature pairs and line search) and one
``tf.function`` evaluates the whole batch. The stopping rule is shared: the batch iterates until every
row has converged or the iteration (and evaluation) budget is spent, and TFP counts one evaluation per
batched call, so with a binding budget an image's result depends on the images batched with it (fixed
by ``batch_size`` and the order of the images; the benchmark's cache keys record both).
``optimizer="lbfgs_fixed"`` is the authors' own optimiser instead (``torch.optim.LBFGS`` without line search,
:func:`solvers.lbfgs.lbfgs_fixed_step`, with a halving safeguard when a step raises the loss): about one
evaluation per iteration, and each image stops on its own (in exact arithmetic its result does not depend on
the batch; in float32 the batch's rounding can still steer its unit steps). Adam is available as an option.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from solvers.checks import FixedOptions
from solvers.lbfgs import lbfgs_fixed_step

from ..image_ops import blur_saliency, normalise_maps
from ..models.features import feature_model
from ..models.logits import class_margin, class_score
from ..validation import check_choice, check_positive_int, check_real
from .base import Explainer, Explanation
from .registry import register_explainer

__all__ = ["PerceptualBall", "NoPer", "GuidedPerceptualBall", "perturbation_saliency", "guided_saliency",
           "PERCEPTUAL_BALL_OPTIMIZERS"]

PERCEPTUAL_BALL_OPTIMIZERS = ("lbfgs", "lbfgs_fixed", "adam")


def perturbation_saliency(images, perturbed, sigma=0.0):
    """Saliency of a perturbation: per pixel √(mean over channels of (x′ − x)²), then a Gaussian blur
    of width ``sigma`` pixels (the authors' ``example.py``). Shapes (B, H, W, C) → (B, H, W) float32 tensor."""
    d = tf.convert_to_tensor(perturbed, tf.float32) - tf.convert_to_tensor(images, tf.float32)
    return blur_saliency(tf.sqrt(tf.reduce_mean(tf.square(d), -1)), sigma)


def guided_saliency(saliency, guide, sigma=0.0):
    """The guided variant's map (Elliott et al., Sec. 4.2): the unblurred perturbation map normalised to
    [0, 1] per image, blurred by ``sigma`` pixels, times the guide (:meth:`PerceptualBall.input_gradient_map`).
    (B, H, W) and (B, H, W) → (B, H, W) float32 NumPy. The one definition: the explainer and the benchmark
    runner both use it."""
    m = normalise_maps(tf.constant(np.asarray(saliency, np.float64))).numpy()
    m = np.asarray(blur_saliency(m, sigma)) if sigma > 0 else m
    return (m * np.asarray(guide, np.float32)).astype(np.float32)


@register_explainer("perceptual_ball")
class PerceptualBall(Explainer, FixedOptions):
    """Perceptual-ball explainer (Elliott et al., CVPR 2021, Eq. 5) for a Keras classifier.

    Args:
        model: Keras classifier taking (B, H, W, C) pixels in [0, 1]; Sequential or functional;
            logits or softmax output (its logits are used).
        layers: layers whose activations are held close (the perceptual ball): names, or indices into
            :func:`tfperceptual.models.activation_layers` ("ReLU 4 to 9" is ``range(4, 10)``). Empty with
            ``lambda_perceptual=0`` for the unregularised baseline.
        lambda_perceptual: λ′ ≥ 0 (paper: 1e4; 0 is "NoPer", Eq. 4).
        lambda_pixel: λ ≥ 0 on the pixel distance (paper: 1).
        target: margin target T (paper: −2).
        steps: L-BFGS iterations (paper: 100), or Adam steps.
        multilabel: use Eq. 2 (the class logit) instead of the margin of Eq. 1.
        optimizer: ``"lbfgs"`` (TensorFlow Probability, Hager–Zhang line search), ``"lbfgs_fixed"`` (the
            authors' ``torch.optim.LBFGS`` without line search, :func:`solvers.lbfgs.lbfgs_fixed_step`: unit
            steps, one evaluation per iteration, every image with its own stopping and budget; plus a safeguard
            the authors' optimiser lacks: a step that raises an image's loss is halved, up to 10 times) or
            ``"adam"``.
        learning_rate: Adam's step (ignored by L-BFGS).
        num_correction_pairs: L-BFGS memory.
        batch_size: images per optimisation batch.
        max_evaluations: L-BFGS also stops once this many (batched: one per call on the whole batch,
            however many rows still move) loss-and-gradient evaluations are spent, checked after every
            iteration, so the last line search may overshoot it. ``None``:
            ``steps`` iterations only. The authors' ``torch.optim.LBFGS(max_iter=100)`` has no line search
            and stops at ``max_eval = 1.25 × max_iter`` = 125 evaluations; TFP's Hager–Zhang line search
            spends ≈ 3 per iteration, so ``steps=100, max_evaluations=125`` is the authors' budget.
            With ``"lbfgs_fixed"`` the budget is per image and ``None`` means PyTorch's 1.25 × ``steps``.
        sigma: default Gaussian blur of the saliency in pixels (paper: 0 or 5; authors' example: 2).
        guided: default for :meth:`explain`'s ``guided`` (Sec. 4.2).

    Raises:
        ValueError: negative λ, non-finite target, steps < 1, unknown optimiser, λ′ > 0 without layers,
            unknown layer names or activation indices out of range.
    """

    graph_pure = True

    def __init__(self, model, layers=(), lambda_perceptual=1e4, lambda_pixel=1.0, target=-2.0, steps=100,
                 multilabel=False, optimizer="lbfgs", learning_rate=1e-3, num_correction_pairs=10,
                 batch_size=32, max_evaluations=None, sigma=0.0, guided=False):
        self.lambda_perceptual = check_real(lambda_perceptual, "lambda_perceptual", 0.0, None, low_inclusive=True)
        self.lambda_pixel = check_real(lambda_pixel, "lambda_pixel", 0.0, None, low_inclusive=True)
        self.target = check_real(target, "target")
        self.steps = check_positive_int(steps, "steps")
        self.max_evaluations = None if max_evaluations is None else check_positive_int(max_evaluations,
                                                                                        "max_evaluations")
        self.optimizer = check_choice(optimizer, "optimizer", PERCEPTUAL_BALL_OPTIMIZERS)
        self.sigma = check_real(sigma, "sigma", 0.0, None, low_inclusive=True)
        layers = list(layers)
        if self.lambda_perceptual > 0 and not layers:
            raise ValueError("lambda_perceptual > 0 needs layers (names or activation indices)")
        super().__init__(model, batch_size)
        self.fm, self.layers = feature_model(model, layers)
        self.multilabel = bool(multilabel)
        self.guided = bool(guided)
        self.learning_rate = check_real(learning_rate, "learning_rate", 0.0, None)
        self.num_correction_pairs = check_positive_int(num_correction_pairs, "num_correction_pairs")
        self._solve = tf.function(self._solve_impl, reduce_retracing=True)
        self._grad = tf.function(self._input_gradient, reduce_retracing=True)

    #: read when the optimisation is traced: fixed once the explainer is built (``sigma`` and ``guided`` are
    #: applied after it and can be changed)
    _FIXED = ("layers", "fm", "lambda_perceptual", "lambda_pixel", "target", "steps", "multilabel", "optimizer",
              "learning_rate", "num_correction_pairs", "max_evaluations", "model")

    # -- the objective ---------------------------------------------------------------------------
    def _forward(self, x):
        out = self.fm(x, training=False)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def _margin(self, logits, labels):
        return class_score(logits, labels) if self.multilabel else class_margin(logits, labels)

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
        import tensorflow_probability as tfp  # heavy (≈ 2 s to import): deferred to the first explanation

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
        elif self.optimizer == "lbfgs_fixed":
            res = lbfgs_fixed_step(value_and_grad, flat0, max_iterations=self.steps,
                                   max_evaluations=self.max_evaluations, history=self.num_correction_pairs,
                                   max_backtracks=10)
            flat, converged = res["position"], res["converged"]
            evals = tf.reduce_max(res["evaluations"])  # batched calls of the loss (every row is evaluated in each)
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
            own = tf.reduce_sum(class_score(self._forward(x)[0], labels))
        return tape.gradient(own, x)

    # -- public ----------------------------------------------------------------------------------
    def input_gradient_map(self, images, labels):
        """The guide of the guided variant (Sec. 4.2): per pixel √(channel mean of (∂C_i/∂x)²), divided by
        its maximum per image. ``images`` (B, H, W, C) in [0, 1], ``labels`` (B,) → (B, H, W) float32 in [0, 1].

        Raises:
            TypeError / ValueError: bad images or labels.
        """
        x, y = self._inputs(images, labels)
        g = np.concatenate([self._grad(tf.constant(x[i:i + self.batch_size]),
                                       tf.constant(y[i:i + self.batch_size], tf.int32)).numpy()
                            for i in range(0, len(x), self.batch_size)])
        gm = np.sqrt(np.mean(np.square(g), -1))
        return (gm / np.maximum(gm.max((1, 2), keepdims=True), 1e-12)).astype(np.float32)

    def explain(self, images, labels=None, sigma=None, guided=None, progress=False):
        """Explain ``labels`` (default: the model's predictions) at ``images``.

        Args:
            images: (B, H, W, C) float, pixels in [0, 1].
            labels: (B,) int classes in [0, num_classes), or ``None`` for the top-1 predictions.
            sigma: Gaussian blur of the saliency in pixels (default: the constructor's ``sigma``).
            guided: the guided variant, :func:`guided_saliency` (the map normalised to [0, 1], blurred, times
                :meth:`input_gradient_map`; default: the constructor's ``guided``).
            progress: a tqdm bar over batches.

        Returns:
            :class:`~tfperceptual.explain.base.Explanation` with ``perturbed``, ``margin``, ``loss``,
            ``initial_margin``, ``converged``, ``evaluations`` and ``layers``.

        Raises:
            ValueError / TypeError: images of the wrong shape, NaN/Inf or outside [0, 1]; labels out of range.
        """
        sigma = self.sigma if sigma is None else check_real(sigma, "sigma", 0.0, None, low_inclusive=True)
        guided = self.guided if guided is None else bool(guided)
        x, y = self._inputs(images, labels)
        parts = {k: [] for k in ("xp", "loss", "margin", "margin0", "converged", "sal")}
        evaluations = 0
        for i in tqdm(range(0, len(x), self.batch_size), desc="perceptual ball", disable=not progress):
            xb, yb = tf.constant(x[i:i + self.batch_size]), tf.constant(y[i:i + self.batch_size], tf.int32)
            xp, loss, margin, margin0, conv, evals = self._solve(xb, yb)
            sal = perturbation_saliency(xb, xp, 0.0 if guided else sigma)
            for k, v in zip(parts, (xp, loss, margin, margin0, conv, sal)):
                parts[k].append(v.numpy())
            evaluations += int(evals)
        cat = {k: np.concatenate(v) for k, v in parts.items()}
        saliency = guided_saliency(cat["sal"], self.input_gradient_map(x, y), sigma) if guided else cat["sal"]
        return Explanation(saliency=saliency.astype(np.float32), labels=y, perturbed=cat["xp"].astype(np.float32),
                           margin=cat["margin"], loss=cat["loss"], initial_margin=cat["margin0"],
                           converged=cat["converged"], evaluations=evaluations, layers=list(self.layers))


@register_explainer("noper")
class NoPer(PerceptualBall):
    """The unregularised baseline of Elliott et al. ("NoPer", Eq. 4): the perceptual ball with λ′ = 0 and no
    layers; every other option as :class:`PerceptualBall`."""

    def __init__(self, model, **kwargs):
        kwargs.update(layers=(), lambda_perceptual=0.0)
        super().__init__(model, **kwargs)


@register_explainer("perceptual_ball_guided")
class GuidedPerceptualBall(PerceptualBall):
    """The guided perceptual ball (Sec. 4.2): :class:`PerceptualBall` with ``guided=True``."""

    def __init__(self, model, **kwargs):
        kwargs["guided"] = True
        super().__init__(model, **kwargs)
