"""How a perceptually regularised model sees clean and adversarial images ("Visualizing Representations by
Perceptual Regularization", ICLR 2020 submission; issue 17).

* :func:`perception_quality` — test accuracy and the perception's fidelity (per-pixel MSE and SSIM of P(x)
  against x), the columns of the λ sweep.
* :func:`run_perception` — for each attack: the panels x | P(x) | x_adv | P(x_adv) (the paper's Fig. 14), the
  latent interpolation D(F(x) + αZ), α ∈ [0, 2] (Fig. 6) and, with an independent *judge* classifier (another
  architecture and seed, never used to craft the attacks), the measured reading of the perceptions: how often
  judge(P(x_adv)) is the model's adversarial label, beside judge(x_adv) (the true class?) and judge(P(x)) (the
  clean baseline), with Wilson 95 % intervals; and targeted attacks from noise (Fig. 7), read the same way.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from ..attacks import ATTACKS, build_attack
from ..evaluation.quality import ssim
from ..evaluation.sparsity import wilson_interval
from ..io_utils import atomic_savefig, atomic_write_json, atomic_write_text
from ..models.perceptual import PerceptualRegularization
from ..training.perceptual import interpolate, latent_direction
from .report import _pyplot, fmt
from .runner import ResultCache, batch_slices, check_dataset, fingerprint, predict_labels, supports_seed

__all__ = ["perception_quality", "perceive_batched", "run_perception", "PERCEPTION_ATTACKS", "ALPHAS"]

#: the latent interpolation's α (Fig. 6 of the paper goes from 0 to 2)
ALPHAS = tuple(np.round(np.arange(0.0, 2.01, 0.25), 2).tolist())


def perceive_batched(model, x, batch_size=256):
    """P(x) for images (N, H, W, C) in [0, 1], in batches: (N, H, W, C) float32 NumPy in [0, 1]."""
    out = [model.perceive(tf.constant(x[s:e], tf.float32)).numpy() for s, e in batch_slices(len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros_like(x, np.float32)


def perception_quality(model, x, y, batch_size=256):
    """Accuracy of ``model`` on (x, y) and the fidelity of its perceptions.

    Args:
        model: a :class:`~tfperceptual.training.PerceptualRegularization`.
        x: (N, H, W, C) float32 in [0, 1]; y: (N,) int labels.

    Returns:
        {"accuracy", "mse" (per-pixel mean squared error of P(x) against x), "ssim" (mean SSIM of P(x) against
        x; for images of at least 11 × 11), "n"}.
    """
    if not isinstance(model, PerceptualRegularization):
        raise TypeError(f"model must be a PerceptualRegularization, got {type(model).__name__}")
    pred = predict_labels(model, x, batch_size)
    p = perceive_batched(model, x, batch_size)
    return {"accuracy": float(np.mean(pred == np.asarray(y))), "mse": float(np.mean((p - x) ** 2)),
            "ssim": float(np.mean(ssim(x, p))), "n": int(len(x))}


#: the CLI's attack names → (registry name, options per data family); ε follows the paper (PGD ℓ∞ 0.2 with 100
#: steps on MNIST, its Fig. 14) or gives a high fooling rate on the shipped perceptual models
PERCEPTION_ATTACKS = {
    "pgd": ("linf_pgd", {"mnist": {"eps": 0.2, "steps": 100}, "cifar10": {"eps": 8 / 255, "steps": 20}}),
    "fpgap": ("fpgap", {"mnist": {"eps": 0.3, "steps": 50}, "cifar10": {"eps": 0.1, "steps": 50}}),
    "pgap": ("pgap", {"mnist": {"eps": 0.3, "steps": 50}, "cifar10": {"eps": 0.1, "steps": 50}}),
    "l1q": ("l1q_fw", {"mnist": {"eps": 30.0, "steps": 30}, "cifar10": {"eps": 10.0, "steps": 30}}),
}


def _fraction(mask):
    mask = np.asarray(mask, bool)
    k, n = int(mask.sum()), int(mask.size)
    lo, hi = wilson_interval(k, n) if n else (float("nan"), float("nan"))
    return {"fraction": k / n if n else float("nan"), "ci95": [lo, hi], "k": k, "n": n}


def _build(name, model, family, eps, steps, seed):
    registry, presets = PERCEPTION_ATTACKS[name]
    if family not in presets and (eps is None or steps is None):
        raise ValueError(f"no {name} presets for data {family!r} (only {', '.join(presets)}): pass eps and steps "
                         f"for {name}")
    opts = dict(presets.get(family, {}))
    if eps is not None:
        opts["eps"] = float(eps)
    if steps is not None:
        opts["steps"] = int(steps)
    extra = {"seed": seed} if supports_seed(ATTACKS[registry]) else {}
    return build_attack(registry, model, opts.pop("eps"), steps=opts.pop("steps"), **extra), registry


def _attack_cached(cache, key, attack, x, labels, target, batch_size, progress, desc):
    """x_adv (N, H, W, C) of ``attack``, batch by batch, each batch cached (resume after an interruption)."""
    out = []
    for s, e in tqdm(batch_slices(len(x), batch_size), desc=desc, disable=not progress, leave=False):
        name = f"{key}_{s}_{e}.npz"
        got = cache.read_npz(name, ("x_adv",))
        if got is None:
            t = None if target is None else target[s:e]
            adv = attack.perturb(tf.constant(x[s:e]), tf.constant(labels[s:e]),
                                 None if t is None else tf.constant(t)).numpy()
            cache.write_npz(name, x_adv=adv)
            got = {"x_adv": adv}
        out.append(got["x_adv"])
    return np.concatenate(out)


def _spread(n, k):
    """``k`` indices spread evenly over ``range(n)`` (all of them if n ≤ k): panels show varied classes."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int)) if n else np.zeros(0, int)


def _interpolation(model, judge, x, x_adv, adv_label, alphas, batch_size, shown=4):
    """Per α: the model's class C(F(x) + αZ) and the judge's class of D(F(x) + αZ), (A, N) int each, and the
    decoded strips (A, ``shown``, H, W, C) of images spread over the N."""
    model_cls, judge_cls, strips = [], [], []
    pick = _spread(len(x), shown)
    for s, e in batch_slices(len(x), batch_size):
        z = latent_direction(model, x[s:e], x_adv[s:e])
        images, logits = interpolate(model, x[s:e], z, alphas)
        model_cls.append(np.argmax(logits, -1))
        if judge is not None:
            judge_cls.append(np.stack([predict_labels(judge, im, batch_size) for im in images]))
        strips.append(images[:, pick[(pick >= s) & (pick < e)] - s])
    model_cls = np.concatenate(model_cls, 1) if model_cls else np.zeros((len(alphas), 0), np.int64)
    judge_cls = np.concatenate(judge_cls, 1) if judge_cls else None
    return model_cls, judge_cls, np.concatenate(strips, 1) if strips else None


def _switch_summary(classes, adv_label, alphas):
    """Fraction of paths whose class switches to the adversarial label: not it at α = 0, it at some α > 0; the
    median first such α, and per α the fraction of paths at the adversarial label."""
    hit = classes == adv_label[None]
    reached = ~hit[0] & hit[1:].any(0) if len(hit) > 1 else np.zeros(hit.shape[1:], bool)
    first = np.array([alphas[1 + int(np.argmax(h[1:]))] for h in hit.T[reached]], np.float64)
    return {**_fraction(reached), "median_first_alpha": float(np.median(first)) if first.size else None,
            "per_alpha": [float(v) for v in hit.mean(1)] if hit.size else []}


def run_perception(model, x, y, *, attacks=("pgd", "fpgap", "l1q"), eps=None, steps=None, judge=None,
                   data_name="mnist", model_name="model", class_names=None, alphas=ALPHAS, noise_per_class=10,
                   out_dir="runs/perceive", seed=0, batch_size=256, n_panels=8, progress=True):
    """Attack a :class:`~tfperceptual.training.PerceptualRegularization` model and measure what it perceives.

    Args:
        model: the perceptually regularised classifier.
        x: (N, H, W, C) float32 images in [0, 1]; y: (N,) int labels.
        attacks: names of :data:`PERCEPTION_ATTACKS` (``pgd`` ℓ∞ PGD, ``fpgap`` / ``pgap`` SSIM ball, ``l1q``
            ℓ1-q Frank–Wolfe), untargeted.
        eps / steps: optional {name: value} overrides of the data's presets.
        judge: an independent Keras classifier (never used to craft anything) that reads the images, or None.
        alphas: the latent interpolation's α values (default 0, 0.25, …, 2).
        noise_per_class: uniform-noise images attacked toward each class with the ``pgd`` settings (Fig. 7);
            0 skips.
        out_dir: the report (``results.json``, ``report.md``), the panels (``panels_<attack>.png``,
            ``interpolation_<attack>.png``, ``noise.png``) and the cache.

    Returns:
        the results dict written to ``results.json``: per attack the fooling rate, and over the images the model
        classified correctly and the attack fooled, the judge's readings (fraction, Wilson 95 % interval):
        ``judge_perceived_adv_is_adv_label`` (judge(P(x_adv)) = the model's adversarial label),
        ``judge_adv_is_label`` (judge(x_adv) = the true class), ``judge_adv_is_adv_label``,
        ``judge_perceived_clean_is_label`` (judge(P(x)) = the true class, the clean baseline), the
        interpolation's switches, and the noise study.

    Raises:
        TypeError: not a PerceptualRegularization. ValueError: unknown attack names; bad images or labels; a
        ``data_name`` without presets (other than mnist / cifar10) and no ``eps`` / ``steps`` for an attack.
    """
    if not isinstance(model, PerceptualRegularization):
        raise TypeError(f"model must be a PerceptualRegularization (a classifier with a decoder head), got "
                        f"{type(model).__name__}")
    unknown = [a for a in attacks if a not in PERCEPTION_ATTACKS]
    if unknown or not attacks:
        raise ValueError(f"unknown attacks {unknown or attacks}; choose from {', '.join(PERCEPTION_ATTACKS)}")
    eps, steps = dict(eps or {}), dict(steps or {})
    check_dataset(model, x, y)  # pixels in [0, 1], finite, the model's shape, integer labels in [0, K)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = ResultCache(out / "cache")
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int64)
    alphas = [float(a) for a in alphas]
    clean_pred = predict_labels(model, x, batch_size)
    correct = clean_pred == y
    p_clean = perceive_batched(model, x, batch_size)
    j_pclean = predict_labels(judge, p_clean, batch_size) if judge is not None else None
    results = {"data": data_name, "model": model_name, "n": int(len(x)), "lam": model.lam,
               "clean_accuracy": float(correct.mean()), "alphas": alphas, "seed": seed,
               "perception": {"mse": float(np.mean((p_clean - x) ** 2)), "ssim": float(np.mean(ssim(x, p_clean)))
                              if min(x.shape[1:3]) >= 11 else None},
               "judge": None if judge is None else {
                   "clean_accuracy": float(np.mean(predict_labels(judge, x, batch_size) == y)),
                   "perceived_clean_accuracy": float(np.mean(j_pclean == y))},
               "attacks": {}}
    plt = _pyplot()
    for name in attacks:
        attack, registry = _build(name, model, data_name, eps.get(name), steps.get(name), seed)
        settings = {"attack": registry, "eps": float(attack.eps), "steps": int(getattr(attack, "steps", 0)),
                    "seed": seed}
        key = f"{name}_{fingerprint(model, x, settings)}"
        start = time.time()
        x_adv = _attack_cached(cache, key, attack, x, y, None, batch_size, progress, name)
        seconds = time.time() - start
        adv_pred = predict_labels(model, x_adv, batch_size)
        fooled = correct & (adv_pred != y)
        p_adv = perceive_batched(model, x_adv, batch_size)
        row = {"registry": registry, "eps": settings["eps"], "steps": settings["steps"], "seconds": seconds,
               "fooling_rate": float(fooled.sum() / max(1, correct.sum())), "n_fooled": int(fooled.sum()),
               "ssim_adv": float(np.mean(ssim(x[fooled], x_adv[fooled]))) if fooled.any() and
               min(x.shape[1:3]) >= 11 else None,
               "perceived_change_mse": float(np.mean((p_adv[fooled] - p_clean[fooled]) ** 2)) if fooled.any()
               else None}
        idx = np.flatnonzero(fooled)
        model_cls, judge_cls, strip = _interpolation(model, judge, x[idx], x_adv[idx], adv_pred[idx], alphas,
                                                     batch_size)
        row["interpolation_model"] = _switch_summary(model_cls, adv_pred[idx], alphas)
        if judge is not None:
            j_padv = predict_labels(judge, p_adv[idx], batch_size)
            j_adv = predict_labels(judge, x_adv[idx], batch_size)
            row["judge"] = {"perceived_adv_is_adv_label": _fraction(j_padv == adv_pred[idx]),
                            "perceived_adv_is_label": _fraction(j_padv == y[idx]),
                            "adv_is_label": _fraction(j_adv == y[idx]),
                            "adv_is_adv_label": _fraction(j_adv == adv_pred[idx]),
                            "perceived_clean_is_label": _fraction(j_pclean[idx] == y[idx])}
            row["interpolation_judge"] = _switch_summary(judge_cls, adv_pred[idx], alphas)
        results["attacks"][name] = row
        _plot_panels(plt, x[idx], p_clean[idx], x_adv[idx], p_adv[idx], y[idx], adv_pred[idx],
                     None if judge is None else j_padv, n_panels, class_names,
                     f"{data_name}, {name} (ε = {settings['eps']:g}): x, P(x), x_adv, P(x_adv)",
                     out / f"panels_{name}.png")
        if strip is not None and strip.shape[1]:
            shown = _spread(len(idx), 4)
            _plot_strip(plt, strip, model_cls[:, shown], None if judge_cls is None else judge_cls[:, shown], alphas,
                        class_names,
                        f"{data_name}, {name}: D(F(x) + αZ), Z = F(x_adv) − F(x); model / judge class",
                        out / f"interpolation_{name}.png")
    if noise_per_class:
        results["noise"] = _noise_study(model, judge, x.shape[1:], data_name, eps.get("pgd"), steps.get("pgd"),
                                        noise_per_class, seed, cache, batch_size, progress, plt, out, class_names)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "report.md", perception_report(results))
    return results


def _noise_study(model, judge, shape, family, eps, steps, per_class, seed, cache, batch_size, progress, plt, out,
                 names):
    num_classes = model.num_classes
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0.0, 1.0, (per_class * num_classes, *shape)).astype(np.float32)
    target = np.repeat(np.arange(num_classes), per_class).astype(np.int64)
    attack, registry = _build("pgd", model, family, eps, steps, seed)
    labels = predict_labels(model, noise, batch_size)
    settings = {"attack": registry, "eps": float(attack.eps), "steps": int(attack.steps), "seed": seed,
                "targeted_noise": per_class}
    key = f"noise_{fingerprint(model, noise, settings)}"
    adv = _attack_cached(cache, key, attack, noise, labels, target, batch_size, progress, "noise")
    pred = predict_labels(model, adv, batch_size)
    p_adv = perceive_batched(model, adv, batch_size)
    row = {"attack": registry, "eps": settings["eps"], "steps": settings["steps"], "n": int(len(noise)),
           "model_reaches_target": _fraction(pred == target)}
    if judge is not None:
        row["judge_perceived_is_target"] = _fraction(predict_labels(judge, p_adv, batch_size) == target)
        row["judge_adv_is_target"] = _fraction(predict_labels(judge, adv, batch_size) == target)
        row["judge_perceived_noise_is_target"] = _fraction(
            predict_labels(judge, perceive_batched(model, noise, batch_size), batch_size) == target)
    first = np.arange(num_classes) * per_class
    fig, axes = plt.subplots(2, num_classes, figsize=(0.95 * num_classes, 2.2), squeeze=False)
    for c, i in enumerate(first):
        for r, (img, title) in enumerate(((adv[i], "noise→"), (p_adv[i], "P: "))):
            _imshow(axes[r, c], img, f"{title}{_name(target[i], names)}")
    fig.suptitle(f"{family}: uniform noise attacked toward each class (top) and its perception (bottom)", fontsize=7)
    atomic_savefig(fig, out / "noise.png", dpi=100)
    plt.close(fig)
    return row


def _name(k, names):
    return names[int(k)].split(",")[0][:10] if names is not None else str(int(k))


def _imshow(ax, img, title):
    ax.imshow(np.clip(img.squeeze(-1) if img.shape[-1] == 1 else img, 0, 1), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=6)
    ax.axis("off")


def _plot_panels(plt, x, px, xa, pxa, y, adv, judged, n, names, title, path):
    pick = _spread(len(x), n)
    if not pick.size:
        return
    x, px, xa, pxa, y, adv = x[pick], px[pick], xa[pick], pxa[pick], y[pick], adv[pick]
    judged = None if judged is None else judged[pick]
    n = len(pick)
    fig, axes = plt.subplots(4, n, figsize=(1.0 * n, 4.4), squeeze=False)
    for c in range(n):
        _imshow(axes[0, c], x[c], f"x: {_name(y[c], names)}")
        _imshow(axes[1, c], px[c], "P(x)")
        _imshow(axes[2, c], xa[c], f"x_adv→{_name(adv[c], names)}")
        _imshow(axes[3, c], pxa[c], "P(x_adv)" + ("" if judged is None else f" j:{_name(judged[c], names)}"))
    fig.suptitle(title, fontsize=7)
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)


def _plot_strip(plt, images, model_cls, judge_cls, alphas, names, title, path):
    a, n = images.shape[:2]
    fig, axes = plt.subplots(n, a, figsize=(1.0 * a, 1.25 * n), squeeze=False)
    for r in range(n):
        for c in range(a):
            j = "" if judge_cls is None else f"/{_name(judge_cls[c, r], names)}"
            _imshow(axes[r, c], images[c, r], f"α={alphas[c]:g}\n{_name(model_cls[c, r], names)}{j}")
    fig.suptitle(title, fontsize=7)
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)


def _ci(f):
    return f"{fmt(f['fraction'])} ({fmt(f['ci95'][0])}–{fmt(f['ci95'][1])}), n = {f['n']}"


def perception_report(results):
    """The Markdown report of :func:`run_perception`'s results."""
    lines = [f"# How attacks look to the model: {results['data']}, {results['model']} (λ = {results['lam']:g})", "",
             f"{results['n']} images; clean accuracy {fmt(results['clean_accuracy'])}; perception P(x): MSE "
             f"{fmt(results['perception']['mse'], 4)}, SSIM {fmt(results['perception']['ssim'])}."]
    if results["judge"]:
        lines.append(f"Judge: clean accuracy {fmt(results['judge']['clean_accuracy'])}, on P(x) "
                     f"{fmt(results['judge']['perceived_clean_accuracy'])}.")
    lines += ["", "| attack | ε | steps | fooling rate | fooled | judge(P(x_adv)) = adv. label | judge(x_adv) = label |"
              " judge(x_adv) = adv. label | judge(P(x)) = label | judge switches along D(F(x)+αZ) (median first α) |"
              " model switches |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results["attacks"].items():
        j = r.get("judge")
        cells = ([_ci(j["perceived_adv_is_adv_label"]), _ci(j["adv_is_label"]), _ci(j["adv_is_adv_label"]),
                  _ci(j["perceived_clean_is_label"]),
                  f"{_ci(r['interpolation_judge'])} ({fmt(r['interpolation_judge']['median_first_alpha'], 2)})"]
                 if j else ["—"] * 5)
        im = r["interpolation_model"]
        lines.append(f"| {name} | {r['eps']:g} | {r['steps']} | {fmt(r['fooling_rate'])} | {r['n_fooled']} | "
                     + " | ".join(cells) + f" | {fmt(im['fraction'])} ({fmt(im['median_first_alpha'], 2)}) |")
    nz = results.get("noise")
    if nz:
        text = (f"Noise perceived as a class ({nz['n']} uniform-noise images, targeted {nz['attack']} ε = "
                f"{nz['eps']:g}, {nz['steps']} steps): the model reaches the target {_ci(nz['model_reaches_target'])}")
        if "judge_perceived_is_target" in nz:
            text += (f"; judge(P(x_adv)) = target {_ci(nz['judge_perceived_is_target'])}; judge(x_adv) = target "
                     f"{_ci(nz['judge_adv_is_target'])}; judge(P(noise)) = target (baseline) "
                     f"{_ci(nz['judge_perceived_noise_is_target'])}")
        lines += ["", text + "."]
    return "\n".join(lines) + "\n"
