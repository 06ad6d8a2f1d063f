"""Benchmarks of saliency maps: insertion/deletion, weak localisation, pointing game, sanity checks.

* **Deletion / insertion** (Petsiuk et al., "RISE", BMVC 2018): pixels are taken in decreasing order of
  saliency; deletion replaces them by mid-grey (0.5) step by step, insertion reveals them on a blurred
  copy (by default a Gaussian of σ = 5 px, radius 20, reflected borders; ``insertion_blur="rise"`` is the
  RISE code's own substrate, ``gkern(11, 5)``: the σ = 5 Gaussian cut to an 11 × 11 window — nearly a box
  blur — with zero padding of the ImageNet-normalised image). The score is the area under the curve of the class
  probability (softmax of the logits) against the fraction of pixels changed, by the trapezoid rule.
  Lower deletion AUC and higher insertion AUC are better.
* **Weak localisation** (Fong and Vedaldi, ICCV 2017; Elliott et al., CVPR 2021, Sec. 4.2): the map,
  normalised to [0, 1], is thresholded by one of three strategies — value (s ≥ α, α ∈ (0, 1] step
  0.05), top-α of the pixels (α ∈ (0, 1] step 0.05) or mean (s ≥ α·mean(s), α ∈ (0, 10.5] step 0.05);
  the bounding box of the largest connected component (4-connectivity) succeeds when its IoU with a
  ground-truth box is ≥ 0.5. The error is 1 − success rate; α is grid-searched per strategy on the
  images evaluated (as in the papers, so it is an optimistic, tuned number). The benchmark runner
  normalises a map to [0, 1] *before* its blur (Sec. 4.2); :func:`weak_localisation_success` min–max
  normalises whatever map it is given, so a blurred map is stretched back to [0, 1] before it is
  thresholded (without it, the blur lowers a peaked map's maximum and the value strategy's high α give
  empty masks; the top-α strategy does not depend on it).
* **Pointing game** (Zhang et al., ECCV 2016): a hit when the maximum of the map lies within 15 px of a
  ground-truth box of the class.
* **Sanity checks** (Adebayo et al., NeurIPS 2018): cascading randomisation of the weights from the top
  layer down; Spearman rank correlation (with and without absolute values) and SSIM between the maps of
  the trained and of the randomised model.

Maps are (B, H, W) arrays; boxes are per image (K, 4) arrays ``[xmin, ymin, xmax, ymax]`` in pixels of
the map (continuous coordinates: pixel (r, c) covers [c, c + 1] × [r, r + 1]).
"""

from __future__ import annotations

from contextlib import closing

import keras
import numpy as np
import tensorflow as tf
from scipy import ndimage
from scipy.stats import spearmanr
from tqdm.auto import tqdm

from .. import image_ops
from ..image_ops import gaussian_blur
from ..models.adapter import as_logits_model
from ..validation import check_images, check_labels, check_maps, check_positive_int

__all__ = ["deletion_insertion", "auc", "normalise_maps", "threshold_grids", "largest_component_box",
           "box_iou", "weak_localisation", "weak_localisation_success", "pointing_game", "cascading_randomization",
           "cascade_input_dependence", "kernel_layers", "MID_GREY", "INSERTION_BLURS"]

MID_GREY = 0.5
#: insertion's blurred substrates (see :func:`deletion_insertion`)
INSERTION_BLURS = ("gaussian", "rise")


def auc(curve):
    """Area under ``curve`` (..., T + 1) sampled at fractions 0, 1/T, …, 1 (trapezoid rule)."""
    c = np.asarray(curve, np.float64)
    return (c[..., 1:] + c[..., :-1]).sum(-1) / (2.0 * (c.shape[-1] - 1))


def _blur_images(x, sigma):
    """Each channel blurred by the full Gaussian of σ pixels (radius int(4σ + 0.5), reflected borders)."""
    return gaussian_blur(tf.convert_to_tensor(x, tf.float32), sigma)


IMAGENET_MEAN = (0.485, 0.456, 0.406)


def _rise_blur_images(x, sigma, klen=11):
    """RISE's insertion substrate (``evaluation.py``: ``gkern(klen=11, nsig=5)``, ``conv2d(padding=5)``).

    gkern is ``scipy.ndimage.gaussian_filter`` of a klen × klen delta (reflect mode: separable, sums to
    1); RISE convolves the ImageNet-normalised tensor with zero padding, i.e. the pixels outside the image
    take the ImageNet mean colour (for 3 channels; mid-grey otherwise). (B, H, W, C) in [0, 1] → same.
    """
    delta = np.zeros(klen)
    delta[klen // 2] = 1.0
    k1 = ndimage.gaussian_filter1d(delta, float(sigma), mode="reflect")
    c = x.shape[-1]
    pad = np.asarray(IMAGENET_MEAN if c == 3 else (MID_GREY,) * c, np.float32)
    r = klen // 2
    xt = tf.convert_to_tensor(x, tf.float32) - pad
    xt = tf.pad(xt, [[0, 0], [r, r], [r, r], [0, 0]])  # zeros = the pad colour after the shift
    kern = tf.constant(np.outer(k1, k1)[:, :, None, None] * np.ones((1, 1, c, 1)), tf.float32)
    return tf.nn.depthwise_conv2d(xt, kern, strides=[1, 1, 1, 1], padding="VALID") + pad


def deletion_insertion(model, images, labels, saliency, n_steps=100, substrate=MID_GREY, blur_sigma=5.0,
                       batch_size=128, insertion_blur="gaussian"):
    """Deletion and insertion curves and AUCs (Petsiuk et al., 2018).

    Args:
        model: Keras classifier taking (B, H, W, C) pixels in [0, 1].
        images: (B, H, W, C) float in [0, 1]; labels: (B,) the explained classes.
        saliency: (B, H, W) maps (any scale; only the order of pixels matters; ties keep raster order).
        n_steps: the curves have ``n_steps + 1`` points, at fractions 0, 1/n, …, 1 of the pixels
            (RISE's code uses 224 pixels per step, i.e. ≈ 230 steps at 227 × 227).
        substrate: deletion's fill value (mid-grey 0.5).
        blur_sigma: insertion's starting image is the input blurred by this Gaussian (pixels).
        insertion_blur: ``"gaussian"`` (the full Gaussian, radius int(4σ + 0.5), reflected borders) or
            ``"rise"`` (the RISE code's 11 × 11 cut of it with ImageNet-mean padding, see
            :func:`_rise_blur_images`; milder, so insertion starts higher).
        batch_size: model batch.

    Returns:
        dict of ``deletion`` and ``insertion`` (B,) AUCs and ``deletion_curve`` / ``insertion_curve``
        (B, n_steps + 1) class probabilities.

    Raises:
        ValueError: shapes that do not match, NaN/Inf, labels out of range, n_steps < 1, an unknown
            insertion_blur.
    """
    lm = as_logits_model(model)
    x = check_images(images, "images", (0.0, 1.0))
    y = check_labels(labels, len(x), lm.num_classes, "labels")
    s = check_maps(saliency)
    if s.shape != x.shape[:3]:
        raise ValueError(f"saliency must have shape {x.shape[:3]}, got {s.shape}")
    n_steps = check_positive_int(n_steps, "n_steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    b, h, w, _ = x.shape
    hw = h * w
    order = np.argsort(-s.reshape(b, hw), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(hw)[None].repeat(b, 0), axis=1)
    rank = tf.constant(rank.reshape(b, h, w, 1), tf.int32)
    counts = np.linspace(0, hw, int(n_steps) + 1).astype(np.int32)  # floor, as Xplique's CausalFidelity
    xt = tf.constant(x)
    if insertion_blur == "gaussian":
        blurred = _blur_images(x, blur_sigma)
    elif insertion_blur == "rise":
        blurred = _rise_blur_images(x, blur_sigma)
    else:
        raise ValueError(f"insertion_blur must be 'gaussian' or 'rise', got {insertion_blur!r}")
    grey = tf.fill(tf.shape(xt), tf.constant(substrate, tf.float32))


    curves = {"deletion": np.zeros((b, len(counts))), "insertion": np.zeros((b, len(counts)))}
    per = max(1, int(batch_size) // max(b, 1))  # steps per model call
    for j0 in range(0, len(counts), per):
        ks = counts[j0:j0 + per]
        for name in curves:
            imgs = []
            for k in ks:
                changed = rank < int(k)
                imgs.append(tf.where(changed, grey, xt) if name == "deletion" else tf.where(changed, xt, blurred))
            batch = tf.concat(imgs, 0)
            cls = tf.constant(np.tile(y, len(ks)), tf.int32)
            p = np.concatenate([lm.class_probability(batch[i:i + batch_size], cls[i:i + batch_size]).numpy()
                                for i in range(0, int(batch.shape[0]), batch_size)])
            curves[name][:, j0:j0 + len(ks)] = p.reshape(len(ks), b).T
    return {"deletion": auc(curves["deletion"]), "insertion": auc(curves["insertion"]),
            "deletion_curve": curves["deletion"], "insertion_curve": curves["insertion"]}


def normalise_maps(maps):
    """Min–max normalise each (H, W) map of (B, H, W) to [0, 1] (a constant map becomes 0); float64 NumPy.

    Raises:
        ValueError / TypeError: not (B, H, W), NaN/Inf, not real-valued.
    """
    return image_ops.normalise_maps(tf.constant(check_maps(maps))).numpy()


def threshold_grids():
    """The three strategies' α grids of Sec. 4.2: {"value": (0,1] step .05, "percentile": (0,1] step .05
    (fraction of pixels kept), "mean": (0,10.5] step .05}."""
    return {"value": np.round(np.arange(1, 21) * 0.05, 4),
            "percentile": np.round(np.arange(1, 21) * 0.05, 4),
            "mean": np.round(np.arange(1, 211) * 0.05, 4)}


def largest_component_box(mask):
    """Bounding box [xmin, ymin, xmax, ymax] (continuous pixel edges) of the largest 4-connected
    component of a (H, W) boolean mask, or ``None`` if the mask is empty (ties: lowest label)."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return None
    lab, n = ndimage.label(mask)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    sizes[0] = -1  # the background is not a component
    comp = lab == int(np.argmax(sizes))
    rows = np.flatnonzero(comp.any(1))
    cols = np.flatnonzero(comp.any(0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float64)


def box_iou(a, boxes):
    """IoU of box ``a`` (4,) with each of ``boxes`` (K, 4), boxes as [xmin, ymin, xmax, ymax]."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[2], boxes[:, 2]) - np.maximum(a[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[3], boxes[:, 3]) - np.maximum(a[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    union = area(np.asarray(a, np.float64)) + area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _masks(s, strategy, alphas):
    """(A, H, W) masks of one normalised map for the α grid of ``strategy``."""
    if strategy == "value":
        return s[None] >= alphas[:, None, None]
    if strategy == "mean":
        return s[None] >= (alphas * s.mean())[:, None, None]
    if strategy == "percentile":
        flat = np.sort(s.ravel())[::-1]
        k = np.clip(np.ceil(alphas * flat.size).astype(int), 1, flat.size)
        return s[None] >= flat[k - 1][:, None, None]
    raise ValueError(f"unknown strategy {strategy!r}; choose 'value', 'percentile' or 'mean'")


def weak_localisation_success(saliency, boxes, strategies=("value", "percentile", "mean"), iou_threshold=0.5):
    """Per-image success of every α of every strategy: {strategy: (B, A) bool}, maps normalised first."""
    m = normalise_maps(saliency)
    if len(boxes) != len(m):
        raise ValueError(f"need one box array per map: {len(m)} maps, {len(boxes)} box arrays")
    grids = threshold_grids()
    out = {}
    for strat in strategies:
        alphas = grids[strat] if strat in grids else None
        if alphas is None:
            raise ValueError(f"unknown strategy {strat!r}; choose from {tuple(grids)}")
        out[strat] = np.zeros((len(m), len(alphas)), bool)
    for i, (s, bx) in enumerate(zip(m, boxes)):
        bx = np.asarray(bx, np.float64).reshape(-1, 4)
        if len(bx) == 0:
            continue
        # Every mask is {s ≥ t}: nested, so two masks with the same pixel count are the same mask, whatever
        # the strategy. One connected-component labelling per distinct mask (the α grids repeat masks, and
        # thresholds above the maximum give the empty mask): same answers, fewer `ndimage.label` calls.
        hit = {}
        for strat in strategies:
            for j, mask in enumerate(_masks(s, strat, grids[strat])):
                count = int(np.count_nonzero(mask))
                if count not in hit:
                    box = largest_component_box(mask) if count else None
                    hit[count] = box is not None and bool(np.any(box_iou(box, bx) >= iou_threshold))
                out[strat][i, j] = hit[count]
    return out


def weak_localisation(saliency=None, boxes=None, strategies=("value", "percentile", "mean"), iou_threshold=0.5,
                      success=None):
    """Weak-localisation error per strategy with α grid-searched (Sec. 4.2 of Elliott et al.).

    Args:
        saliency: (B, H, W) maps (normalised to [0, 1] per image here); boxes: list of (K_i, 4).
        success: precomputed :func:`weak_localisation_success` (e.g. accumulated over batches); then
            ``saliency`` and ``boxes`` are not needed.

    Returns:
        {strategy: {"alphas", "error" (per α), "best_alpha", "best_error"}, "best": {"strategy",
        "alpha", "error"}}.
    """
    if success is None:
        success = weak_localisation_success(saliency, boxes, strategies, iou_threshold)
    grids = threshold_grids()
    out = {}
    for strat, ok in success.items():
        err = 1.0 - ok.mean(0)
        j = int(np.argmin(err))
        out[strat] = {"alphas": grids[strat], "error": err, "best_alpha": float(grids[strat][j]),
                      "best_error": float(err[j])}
    best = min(success, key=lambda k: out[k]["best_error"])
    out["best"] = {"strategy": best, "alpha": out[best]["best_alpha"], "error": out[best]["best_error"]}
    return out


def pointing_game(saliency, boxes, tolerance=15.0):
    """(B,) hits: the map's maximum (first in raster order on ties) lies within ``tolerance`` pixels
    (Euclidean distance to the box, pixel centres) of one of the image's boxes (Zhang et al., 2016)."""
    m = check_maps(saliency)
    if len(boxes) != len(m):
        raise ValueError(f"need one box array per map: {len(m)} maps, {len(boxes)} box arrays")
    hits = np.zeros(len(m), bool)
    for i, (s, bx) in enumerate(zip(m, boxes)):
        r, c = np.unravel_index(int(np.argmax(s)), s.shape)
        px, py = c + 0.5, r + 0.5
        bx = np.asarray(bx, np.float64).reshape(-1, 4)
        dx = np.maximum.reduce([bx[:, 0] - px, np.zeros(len(bx)), px - bx[:, 2]])
        dy = np.maximum.reduce([bx[:, 1] - py, np.zeros(len(bx)), py - bx[:, 3]])
        hits[i] = bool(np.any(np.hypot(dx, dy) <= tolerance))
    return hits


def kernel_layers(model):
    """The layers of ``model`` with a kernel (dense, convolution, depthwise), in ``model.layers`` order."""
    return [layer for layer in model.layers
            if any(v.name.split("/")[-1] in ("kernel", "depthwise_kernel") for v in layer.weights)]


def _initializer_of(layer, weight_name):
    """The layer's own initializer of the weight called ``weight_name``, or ``None``. Keras names a
    DepthwiseConv2D's weight "kernel" but keeps its initializer as ``depthwise_initializer``;
    SeparableConv2D's "depthwise_kernel"/"pointwise_kernel" use ``depthwise_``/``pointwise_initializer``."""
    if weight_name == "kernel" and isinstance(layer, keras.layers.DepthwiseConv2D):
        return getattr(layer, "depthwise_initializer", None)
    return getattr(layer, weight_name.replace("_kernel", "") + "_initializer", None)


def _reinitialise(layer, rng_seed):
    """Re-draw every weight of ``layer`` from its own initializer (seeded by ``rng_seed``).

    Raises:
        ValueError: a weight whose initializer the layer does not expose (never skipped silently: a
            weight left trained would make the sanity check pass or fail for the wrong reason).
    """
    for j, v in enumerate(layer.weights):
        pname = v.name.split("/")[-1]
        init = _initializer_of(layer, pname)
        if init is None:
            raise ValueError(f"cannot re-initialise weight {pname!r} of layer {layer.name!r} "
                             f"({type(layer).__name__}): no initializer for it")
        init = keras.initializers.get(init)
        cfg = init.get_config()
        if "seed" in cfg:
            cfg["seed"] = int(rng_seed) * 16 + j  # a different draw for each weight of the layer
            init = init.__class__.from_config(cfg)
        v.assign(init(tuple(v.shape), dtype=v.dtype))


def _maps_of(explainer, images, labels):
    out = explainer(images, labels)
    return np.asarray(getattr(out, "saliency", out), np.float64)


def cascading_randomization(model, make_explainer, images, labels, checkpoints=None, seed=0, progress=False):
    """Cascading randomisation of Adebayo et al. (2018): re-initialise the layers with weights from the
    top down, one at a time (keeping those above randomised), and compare the maps with the original.

    Args:
        model: Keras classifier (its weights are restored on return, also after an exception).
        make_explainer: ``make_explainer(model)`` returns an :class:`~tfperceptual.explain.Explainer` (or any
            ``f(images, labels)`` returning (B, H, W) maps or an object with ``saliency``); called again after
            every randomisation (tf-keras-vis clones models, so a visualiser must be rebuilt).
        images: (B, H, W, C) in [0, 1]; labels: (B,) classes explained (kept fixed).
        checkpoints: names of the layers after whose randomisation maps are recorded (default: every
            layer with a kernel). Layers are randomised with their own initializers (kernel, depthwise
            kernel, bias); batch-norm parameters and statistics are kept (so deep in a batch-norm network
            the randomised model can stop depending on its input: see :func:`cascade_input_dependence`).
        seed: initializer seed base.

    Returns:
        dict ``layers`` (recorded, top-down), ``spearman`` and ``spearman_abs`` (L, B), ``ssim`` (L, B)
        between the normalised maps, ``original`` (B, H, W) and ``maps`` (L, B, H, W).
    """
    from skimage.metrics import structural_similarity  # deferred: scikit-image's import is slow

    rows = {"spearman": [], "spearman_abs": [], "ssim": []}
    maps, recorded = [], []
    original = None
    with closing(_cascade(model, checkpoints, seed, progress)) as cascade:  # weights back even on an error
        for name in cascade:
            if name is None:  # the trained model
                original = _maps_of(make_explainer(model), images, labels)
                o_norm = normalise_maps(original)
                continue
            m = _maps_of(make_explainer(model), images, labels)
            mn = normalise_maps(m)
            rows["spearman"].append([spearmanr(a.ravel(), b.ravel())[0] for a, b in zip(original, m)])
            rows["spearman_abs"].append([spearmanr(np.abs(a).ravel(), np.abs(b).ravel())[0]
                                         for a, b in zip(original, m)])
            rows["ssim"].append([structural_similarity(a, b, data_range=1.0) for a, b in zip(o_norm, mn)])
            maps.append(m)
            recorded.append(name)
    # a constant map (e.g. a CAM that vanished) has no rank correlation: NaN, reported as such
    return {"layers": recorded, **{k: np.asarray(v, np.float64) for k, v in rows.items()},
            "original": original, "maps": np.asarray(maps)}


def _cascade(model, checkpoints, seed, progress=False):
    """Yield ``None`` with the trained weights, then each checkpoint's name once the layers from the top
    down to it are re-initialised (layer k top-down with seed ``seed + k``); weights restored at the end,
    also after an exception or an early exit of the caller."""
    layers = kernel_layers(model)[::-1]
    names = [layer.name for layer in layers]
    wanted = names if checkpoints is None else list(checkpoints)
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise ValueError(f"checkpoints {unknown} are not layers with weights; top-down: {names[:6]}…")
    saved = [[np.array(v.numpy()) for v in layer.weights] for layer in layers]
    done = 0
    try:
        yield None
        for k, layer in enumerate(tqdm(layers, desc="randomising", disable=not progress)):
            _reinitialise(layer, seed + k)
            if layer.name not in wanted:
                continue
            yield layer.name
            done += 1
            if done == len(wanted):
                break
    finally:
        for layer, ws in zip(layers, saved):
            for v, w in zip(layer.weights, ws):
                v.assign(w)


def cascade_input_dependence(model, images, checkpoints=None, seed=0):
    """How much the cascade's randomised models still depend on their input.

    For the trained model and after each checkpoint of the same cascade as
    :func:`cascading_randomization` (same seeds): the spread of the logits across the images (standard
    deviation over the B images, mean over classes), relative to the trained model's. A value near 0
    means the randomised model answers (nearly) the same whatever the image — its explanations can only
    be empty or numerical residue. (B ≥ 2 images (B, H, W, C) in [0, 1].)

    Returns:
        dict ``layers`` (checkpoints, top-down) and ``relative_spread`` (L,).
    """
    x = check_images(images, "images")
    if len(x) < 2:
        raise ValueError("need at least 2 images to measure how the logits vary with the input")
    lm = as_logits_model(model)
    spread = lambda: float(np.asarray(lm(x, training=False), np.float64).std(0).mean())  # noqa: E731
    layers, rel, trained = [], [], None
    with closing(_cascade(model, checkpoints, seed)) as cascade:
        for name in cascade:
            if name is None:
                trained = spread()
                continue
            layers.append(name)
            rel.append(spread() / trained if trained > 0 else float("nan"))
    return {"layers": layers, "relative_spread": np.asarray(rel)}
