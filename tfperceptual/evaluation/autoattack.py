"""Robust accuracy as the field measures it: AutoAttack for ℓp through ART, and the project's adaptive ensemble
for the SSIM ball, each a per-image worst case over its members with every adversarial verified.

* :func:`auto_attack` — Croce & Hein's AutoAttack (ICML 2020) for ℓ∞ / ℓ2, run by the Adversarial Robustness
  Toolbox (ART): ``version="standard"`` = APGD-CE, APGD-T (targeted DLR towards the 9 highest other classes),
  Square (5,000 queries); ``"fast"`` = APGD-CE + APGD-T.  ART has no FAB, so ``standard`` lacks AutoAttack's
  FAB-T (a minimum-norm attack, in Croce & Hein's tables never lowering robust accuracy after APGD-T, kept in
  AutoAttack as a check on gradient masking, as Square is).  ART's APGD is corrected where it departs from
  the authors' code: its losses are summed over the batch (ART's default batch mean shrinks each image's
  gradient by 1/B before a normalisation with a 1e-7 tolerance), and since ART returns its *last* iterate,
  each member and restart is run separately and the worst case kept per image here.
* :func:`ssim_auto_attack` — the SSIM ball (S2 ≥ 1 − ε², S1 ≥ 1 − ε1²) ∩ the pixel box: SSIM-APGD-CE,
  SSIM-APGD-T (targeted DLR, top-9), FPGAP and PGAP (CW loss, the paper's attacks) and a gradient-free
  random search (:class:`~tfperceptual.attacks.SSIMSquare`), so that gradient masking shows.

Every member attacks only the images still robust; an adversarial counts only after it is *verified* here
(:func:`verify_adversarial`: inside the ball and the box to 1e-6, misclassified by the model), so a
reported robust accuracy is the fraction of images for which no verified adversarial was found: an upper
bound on the true robust accuracy, as every attack-based figure is.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from solvers.ssim_ball import luminance_similarity, structure_similarity

from ..attacks import FPGAP, PGAP, SSIMAPGD, SSIMSquare
from ..attacks.objectives import dlr_loss
from ..models.adapter import as_logits_model
from ..validation import check_choice, check_images, check_labels, check_positive_int, check_real
from .sparsity import wilson_interval

__all__ = ["RobustnessResult", "auto_attack", "ssim_auto_attack", "verify_adversarial", "NORMS", "VERSIONS",
           "ARTUnavailableError"]

NORMS = ("linf", "l2", "ssim")
VERSIONS = ("standard", "fast")
#: verification tolerance: ball (ℓp: absolute in ε's unit; SSIM: on S2 and S1) and box
VERIFY_TOL = 1e-6


class ARTUnavailableError(ImportError):
    """The Adversarial Robustness Toolbox (or its ``multiprocess`` dependency) cannot be imported."""


@dataclass
class RobustnessResult:
    """Robust accuracy under the per-image worst case of an attack ensemble (NumPy arrays).

    Attributes:
        robust_accuracy: fraction of images classified correctly with no verified adversarial found.
        clean_accuracy: fraction classified correctly without attack.
        robust: (B,) bool per image.
        clean: (B,) bool — correct without attack.
        adversarial: (B, H, W, C) float32 in [0, 1]: for every image that is not robust and was correct
            clean, an adversarial verified inside the ball and the box and misclassified; the clean image
            elsewhere.
        found_by: (B,) str — the member that found the adversarial ("clean" for clean errors, "" robust).
        per_attack: member name → robust accuracy after it (cumulative, in order).
        interval: the Wilson 95 % interval (low, high) of ``robust_accuracy``.
        threat: ``{"norm": ..., "eps": ..., "eps_luminance": ...}``.
        settings: the ensemble's options (version, steps, restarts, queries, seed, members).
        seconds: member name → wall-clock seconds.
    """

    robust_accuracy: float
    clean_accuracy: float
    robust: np.ndarray
    clean: np.ndarray
    adversarial: np.ndarray
    found_by: np.ndarray
    per_attack: dict
    interval: tuple
    threat: dict
    settings: dict
    seconds: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of images."""
        return int(len(self.robust))

    def to_dict(self):
        """A JSON-friendly summary (masks as lists; no images)."""
        return {"robust_accuracy": self.robust_accuracy, "clean_accuracy": self.clean_accuracy, "n": self.n,
                "interval": list(self.interval), "per_attack": dict(self.per_attack), "threat": dict(self.threat),
                "settings": dict(self.settings), "seconds": dict(self.seconds),
                "robust": self.robust.astype(int).tolist(), "clean": self.clean.astype(int).tolist(),
                "found_by": [str(s) for s in self.found_by]}


# ----------------------------------------------------------------------------- checks
def _check_threat(norm, eps, eps_luminance=0.0):
    norm = check_choice(norm, "norm", NORMS)
    if norm == "linf":
        eps = check_real(eps, "eps (ℓ∞ budget)", 0.0, 1.0)
    elif norm == "l2":
        eps = check_real(eps, "eps (ℓ2 budget)", 0.0, None)
    else:
        eps = check_real(eps, "eps (S2 radius ε)", 0.0, 1.0)
    eps_luminance = check_real(eps_luminance, "eps_luminance (S1 radius)", 0.0, 1.0, low_inclusive=True)
    if norm != "ssim" and eps_luminance:
        raise ValueError(f"eps_luminance is an option of the SSIM ball, not of norm={norm!r}")
    return norm, eps, eps_luminance


def _rows(a, channels):
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    if channels == 1:
        return a
    return a.reshape(len(a), -1, channels).transpose(0, 2, 1).reshape(len(a) * channels, -1)


def verify_adversarial(model, images, adversarial, labels, *, norm, eps, eps_luminance=0.0, per_channel=True,
                       tol=VERIFY_TOL):
    """Which adversarials are valid: inside the threat's ball around ``images`` and inside [0, 1] (to ``tol``),
    and misclassified by ``model``.

    Args:
        model: the Keras classifier (or its :class:`~tfperceptual.models.LogitsModel`).
        images, adversarial: (B, H, W, C) float, pixels in [0, 1]; labels: (B,) int true classes.
        norm: ``"linf"`` (max |δ| ≤ ε), ``"l2"`` (‖δ‖₂ ≤ ε over all pixels and channels) or ``"ssim"``
            (S2 ≥ 1 − ε² and S1 ≥ 1 − ε1² per colour channel with ``per_channel``, the mean kept when ε1 = 0;
            global SSIM terms of :mod:`solvers.ssim_ball`).
        tol: slack of every constraint (1e-6).

    Returns:
        (B,) bool NumPy array.

    Raises:
        TypeError / ValueError: bad images, labels, norm or ε.
    """
    norm, eps, eps_luminance = _check_threat(norm, eps, eps_luminance)
    lm = as_logits_model(model)
    x = check_images(images, "images", (0.0, 1.0), lm.image_shape)
    a = np.asarray(adversarial, np.float32)
    if a.shape != x.shape:
        raise ValueError(f"adversarial must have the shape of images {x.shape}, got {a.shape}")
    y = check_labels(labels, len(x), lm.num_classes, "labels")
    finite = np.isfinite(a.reshape(len(a), -1)).all(1)
    a_safe = np.where(finite[:, None, None, None], a, x)
    d = (a_safe.astype(np.float64) - x.astype(np.float64)).reshape(len(x), -1)
    inbox = (a_safe.reshape(len(a), -1).min(1) >= -tol) & (a_safe.reshape(len(a), -1).max(1) <= 1.0 + tol)
    if norm == "linf":
        inball = np.abs(d).max(1) <= eps + tol
    elif norm == "l2":
        inball = np.linalg.norm(d, axis=1) <= eps + tol
    else:
        c = int(x.shape[-1]) if per_channel else 1
        xr, ar = _rows(x, c), _rows(a_safe, c)
        s2 = structure_similarity(xr, ar).reshape(len(x), c)
        s1 = luminance_similarity(xr, ar).reshape(len(x), c)
        ok2 = (s2 >= 1.0 - eps**2 - tol).all(1)
        if eps_luminance > 0:
            ok1 = (s1 >= 1.0 - eps_luminance**2 - tol).all(1)
        else:
            ok1 = (np.abs(xr.mean(1) - ar.mean(1)).reshape(len(x), c) <= tol).all(1)
        inball = ok2 & ok1
    pred = np.concatenate([lm.predicted_class(tf.constant(a_safe[i:i + 256])).numpy()
                           for i in range(0, len(a_safe), 256)])
    return finite & inbox & inball & (pred != y)


# ----------------------------------------------------------------------------- the worst case
def _predict(lm, x, batch_size):
    return np.concatenate([lm.predicted_class(tf.constant(x[i:i + batch_size])).numpy()
                           for i in range(0, len(x), batch_size)])


def _worst_case(lm, x, y, members, threat, settings, batch_size, progress):
    """Run ``members`` [(name, fn(x_sub, y_sub) -> adversarials)] on the images still robust, keep each
    verified adversarial."""
    clean = _predict(lm, x, batch_size) == y
    robust = clean.copy()
    adversarial = x.copy()
    found_by = np.where(clean, "", "clean").astype(object)
    per_attack, seconds = {}, {}
    bar = _bar(progress, len(members), threat)
    for name, fn in members:
        idx = np.flatnonzero(robust)
        t0 = time.perf_counter()
        if len(idx):
            adv = np.asarray(fn(x[idx], y[idx]), np.float32)
            valid = verify_adversarial(lm, x[idx], adv, y[idx], norm=threat["norm"], eps=threat["eps"],
                                       eps_luminance=threat.get("eps_luminance", 0.0),
                                       per_channel=threat.get("per_channel", True))
            hit = idx[valid]
            adversarial[hit] = adv[valid]
            robust[hit] = False
            found_by[hit] = name
        seconds[name] = round(time.perf_counter() - t0, 2)
        per_attack[name] = float(robust.mean())
        if bar is not None:
            bar.set_postfix_str(f"{name}: robust {robust.mean():.3f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    k = int(robust.sum())
    return RobustnessResult(robust_accuracy=float(robust.mean()), clean_accuracy=float(clean.mean()), robust=robust,
                            clean=clean, adversarial=adversarial, found_by=found_by.astype(str),
                            per_attack=per_attack, interval=wilson_interval(k, len(robust)), threat=dict(threat),
                            settings=settings, seconds=seconds)


def _bar(progress, total, threat):
    if not progress:
        return None
    return tqdm(total=total, desc=f"{threat['norm']} ε={threat['eps']:g}", unit="attack", leave=False)


def _select(members, wanted):
    """The members named in ``wanted`` (all with ``None``), in order; an unknown name is a ValueError."""
    if wanted is None:
        return members
    names = [m for m, _ in members]
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    bad = [w for w in wanted if w not in names]
    if bad or not wanted:
        raise ValueError(f"members must be a non-empty subset of {names}, got {wanted}")
    return [(m, f) for m, f in members if m in wanted]


def _prepare(model, images, labels):
    lm = as_logits_model(model)
    x = check_images(images, "images", (0.0, 1.0), lm.image_shape)
    y = check_labels(labels, len(x), lm.num_classes, "labels")
    return lm, x, y


# ----------------------------------------------------------------------------- ℓp through ART
def _art():
    try:
        import multiprocess  # noqa: F401  (ART's AutoAttack imports it; pip does not install it with ART)
        with warnings.catch_warnings():  # "PyTorch not found. Not importing DeepZ ..." (ART's certification part)
            warnings.filterwarnings("ignore", message="PyTorch not found")
            from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack
            from art.estimators.classification import TensorFlowV2Classifier
    except ImportError as e:  # pragma: no cover - the dependency is in setup.cfg
        raise ARTUnavailableError(f"auto_attack needs the Adversarial Robustness Toolbox and multiprocess "
                                  f"(pip install adversarial-robustness-toolbox multiprocess): {e}") from e
    return AutoProjectedGradientDescent, SquareAttack, TensorFlowV2Classifier


def _art_classifier(lm):
    _, _, TensorFlowV2Classifier = _art()
    fn = tf.function(lambda t, training=False: lm(t, training=False), reduce_retracing=True)
    shape = tuple(int(s) for s in lm.image_shape)
    return TensorFlowV2Classifier(model=fn, nb_classes=lm.num_classes, input_shape=shape,
                                  loss_object=keras.losses.CategoricalCrossentropy(from_logits=True),
                                  clip_values=(0.0, 1.0))


class _DLRLoss:
    """ART's ``DifferenceLogitsRatioTensorFlowV2`` (art/attacks/evasion/auto_projected_gradient_descent.py),
    vectorised and traced: −(Z_y − max_{j≠y} Z_j) / (Z_π1 − Z_π3 + 1e-12) for one-hot ``y_true`` (with APGD's
    ``targeted=True`` ART passes the target and descends it).  ART's loops over the batch in Python, eagerly
    (≈ 20× slower here), and has no 1e-12 (a NaN gradient where Z_π1 = Z_π3).  ``reduction``: ``"none"``,
    ``"mean"`` or ``"sum"``, set by ART."""

    def __init__(self):
        self.reduction = "mean"
        self._dlr = tf.function(self._per_image, reduce_retracing=True)

    @staticmethod
    def _per_image(y_true, y_pred):
        labels = tf.argmax(tf.cast(y_true, tf.float32), axis=1)
        return dlr_loss(y_pred, labels)

    def __call__(self, y_true, y_pred, *args, **kwargs):
        v = self._dlr(tf.convert_to_tensor(y_true), tf.convert_to_tensor(y_pred))
        red = str(getattr(self.reduction, "value", self.reduction)).lower()
        if red == "none":
            return v
        if red == "sum":
            return tf.reduce_sum(v)
        return tf.reduce_mean(v)


def _run_art(name, attack, x, y_onehot):
    try:
        with np.errstate(all="ignore"):
            return attack.generate(x, y=y_onehot)
    except Exception as e:  # ART's own failure: say which member, keep nothing unverified
        raise RuntimeError(f"ART's {name} failed: {type(e).__name__}: {e}") from e


def auto_attack(model, images, labels, *, norm="linf", eps, version="standard", batch_size=128, seed=0, steps=100,
                restarts=1, n_target_classes=9, square_queries=5000, members=None, progress=False) -> RobustnessResult:
    """AutoAttack (Croce & Hein, ICML 2020) for ℓ∞ or ℓ2 through ART: the robust accuracy that the field reads.

    Args:
        model: any Keras 3 image classifier (logits or softmax head; seen through
            :func:`tfperceptual.models.as_logits_model`).
        images: (B, H, W, C) float, pixels in [0, 1]; labels: (B,) int true classes.
        norm: ``"linf"`` (ε in (0, 1)) or ``"l2"`` (ε > 0, over all pixels and channels).
        eps: the budget ε.
        version: ``"standard"`` (APGD-CE, APGD-T, Square) or ``"fast"`` (APGD-CE, APGD-T). See the module
            docstring for FAB-T.
        batch_size: images per ART batch, ≥ 1.
        seed: int ≥ 0; seeds NumPy's generator that ART draws its random starts from, for this call
            (restored after).
        steps: APGD iterations (100); restarts: APGD-CE restarts (1, AutoAttack's standard);
        n_target_classes: APGD-T's targets (9, at most K − 1); square_queries: Square's budget (5,000).
        members: optional subset of the version's member names to run (in the version's order), e.g.
            ``("apgd-ce",)``.
        progress: show a progress bar over the members.

    Returns:
        :class:`RobustnessResult` (``per_attack`` keys: ``apgd-ce``, ``apgd-t``, ``square``).

    Raises:
        TypeError / ValueError: bad images, labels, norm (``"ssim"``: use :func:`ssim_auto_attack`), ε, version
            or counts. ARTUnavailableError: ART or ``multiprocess`` missing. RuntimeError: an ART member
            failed (its name in the message).
    """
    members_wanted = members
    lm, x, y = _prepare(model, images, labels)
    if norm == "ssim":
        raise ValueError("norm='ssim' is the SSIM ball: use ssim_auto_attack")
    norm, eps, _ = _check_threat(norm, eps)
    version = check_choice(version, "version", VERSIONS)
    batch_size = check_positive_int(batch_size, "batch_size")
    seed = check_positive_int(seed, "seed", minimum=0)
    steps = check_positive_int(steps, "steps")
    restarts = check_positive_int(restarts, "restarts")
    k = lm.num_classes
    n_target_classes = min(check_positive_int(n_target_classes, "n_target_classes"), k - 1)
    square_queries = check_positive_int(square_queries, "square_queries")
    APGD, Square, _ = _art()
    clf = _art_classifier(lm)
    p = np.inf if norm == "linf" else 2
    onehot = np.eye(k, dtype=np.float32)

    def apgd(targeted):
        a = APGD(clf, norm=p, eps=eps, eps_step=2.0 * eps, max_iter=steps, targeted=targeted, nb_random_init=1,
                 batch_size=batch_size, loss_type="difference_logits_ratio" if targeted else "cross_entropy",
                 verbose=False)
        if targeted:  # ART's DLR loops over the batch in Python, eagerly: the same formula, vectorised
            a.estimator._loss_object = _DLRLoss()
        a.estimator._loss_object.reduction = "sum"  # the authors' summed loss, not ART's batch mean
        return a

    def apgd_ce(xs, ys):
        worst = xs.copy()
        left = np.ones(len(xs), bool)
        for _ in range(restarts):
            idx = np.flatnonzero(left)
            if not len(idx):
                break
            adv = _run_art("APGD-CE", apgd(False), xs[idx], onehot[ys[idx]])
            fooled = _predict(lm, adv, batch_size) != ys[idx]
            worst[idx[fooled]] = adv[fooled]
            left[idx[fooled]] = False
        return worst

    def apgd_t(xs, ys):
        logits = np.concatenate([lm(tf.constant(xs[i:i + batch_size]), training=False).numpy()
                                 for i in range(0, len(xs), batch_size)])
        order = np.argsort(-logits, 1, kind="stable")
        worst = xs.copy()
        left = np.ones(len(xs), bool)
        attack = apgd(True)
        for j in range(1, n_target_classes + 1):
            idx = np.flatnonzero(left)
            if not len(idx):
                break
            adv = _run_art("APGD-T", attack, xs[idx], onehot[order[idx, j]])
            fooled = _predict(lm, adv, batch_size) != ys[idx]
            worst[idx[fooled]] = adv[fooled]
            left[idx[fooled]] = False
        return worst

    def square(xs, ys):
        a = Square(clf, norm=p, eps=eps, max_iter=square_queries, p_init=0.8, nb_restarts=1, batch_size=batch_size,
                   verbose=False)
        return _run_art("Square", a, xs, onehot[ys])

    members = [("apgd-ce", apgd_ce), ("apgd-t", apgd_t)] + ([("square", square)] if version == "standard" else [])
    members = _select(members, members_wanted)
    settings = {"version": version, "steps": steps, "restarts": restarts, "n_target_classes": n_target_classes,
                "square_queries": square_queries if version == "standard" else 0, "seed": seed,
                "members": [m for m, _ in members], "library": "ART (adversarial-robustness-toolbox)"}
    state = np.random.get_state()
    np.random.seed(seed)  # ART draws its random starts and Square's squares from NumPy's global generator
    try:
        return _worst_case(lm, x, y, members, {"norm": norm, "eps": eps}, settings, batch_size, progress)
    finally:
        np.random.set_state(state)


# ----------------------------------------------------------------------------- the SSIM ball
def ssim_auto_attack(model, images, labels, *, eps, eps_luminance=0.0, version="standard", steps=100, restarts=1,
                     n_target_classes=9, queries=1000, per_channel=True, batch_size=128, seed=0, members=None,
                     progress=False) -> RobustnessResult:
    """An adaptive attack ensemble for the SSIM ball ∩ box, the SSIM analogue of AutoAttack.

    Members, in order (each on the images still robust):

    1. ``ssim-apgd-ce``: :class:`~tfperceptual.attacks.SSIMAPGD` with cross-entropy, ``steps``, ``restarts``;
    2. ``ssim-apgd-t``: SSIM-APGD with the targeted DLR loss towards the ``n_target_classes`` highest other
       classes (AutoAttack's APGD-T; the DLR loss needs K ≥ 4, else targeted cross-entropy);
    3. ``fpgap``, 4. ``pgap``: the paper's attacks with the CW loss (κ = 50), ``steps`` steps;
    5. ``ssim-square`` (``standard`` only): :class:`~tfperceptual.attacks.SSIMSquare`, gradient-free random
       search inside the ball, ``queries`` queries: if it finds what the gradient attacks missed, the
       gradients are masked and the other figures are not to be trusted.

    ``version="fast"``: members 1 and 2.

    Args:
        model: any Keras 3 image classifier. images: (B, H, W, C) float in [0, 1]; labels: (B,) int.
        eps: S2 radius ε in (0, 1) (S2 ≥ 1 − ε², the radius of FPGAP/PGAP); eps_luminance: S1 radius in [0, 1).
        per_channel: one SSIM ball per colour channel (as the attacks); verification uses the same balls.
        seed: int ≥ 0, the stateless seeds of the random starts and of the random search.
        members: optional subset of the version's member names to run, e.g. ``("ssim-apgd-ce",)``.
        progress: a progress bar over the members.

    Returns:
        :class:`RobustnessResult`.

    Raises:
        TypeError / ValueError: bad images, labels, radii, version or counts.
    """
    lm, x, y = _prepare(model, images, labels)
    _, eps, eps_luminance = _check_threat("ssim", eps, eps_luminance)
    version = check_choice(version, "version", VERSIONS)
    steps = check_positive_int(steps, "steps")
    restarts = check_positive_int(restarts, "restarts")
    batch_size = check_positive_int(batch_size, "batch_size")
    seed = check_positive_int(seed, "seed", minimum=0)
    queries = check_positive_int(queries, "queries")
    k = lm.num_classes
    n_target_classes = min(check_positive_int(n_target_classes, "n_target_classes"), k - 1)
    common = dict(eps_luminance=eps_luminance, per_channel=per_channel, batch_size=batch_size)
    apgd = SSIMAPGD(lm, eps, steps=steps, loss="ce", restarts=restarts, seed=seed, **common)
    members_wanted = members
    members = [("ssim-apgd-ce", lambda: apgd), ("ssim-apgd-t", lambda: SSIMAPGD(
        lm, eps, steps=steps, loss="dlr" if k >= 4 else "ce", target=n_target_classes, restarts=1, seed=seed + 1,
        **common))]
    if version == "standard":
        members += [("fpgap", lambda: FPGAP(lm, eps, steps=steps, loss="cw", **common)),
                    ("pgap", lambda: PGAP(lm, eps, steps=steps, loss="cw", **common)),
                    ("ssim-square", lambda: SSIMSquare(lm, eps, queries=queries, seed=seed, **common))]
    members = [(name, build()) for name, build in _select(members, members_wanted)]
    settings = {"version": version, "steps": steps, "restarts": restarts, "n_target_classes": n_target_classes,
                "queries": queries if version == "standard" else 0, "seed": seed, "per_channel": bool(per_channel),
                "members": [m for m, _ in members]}
    runs = [(name, lambda xs, ys, a=a: a(xs, ys, metrics=False).adversarial) for name, a in members]
    threat = {"norm": "ssim", "eps": eps, "eps_luminance": eps_luminance, "per_channel": bool(per_channel)}
    return _worst_case(lm, x, y, runs, threat, settings, batch_size, progress)
