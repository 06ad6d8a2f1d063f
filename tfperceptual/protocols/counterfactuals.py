"""The counterfactual and concept-probing protocols (Roberts & Tsiligkaridis 2021, Fig. 2 and Fig. 3).

* :func:`run_counterfactuals` — error counterfactuals: take the model's errors (the paper's setting; or any
  images), and for each norm (ℓ1-q, ℓ2) perturb them toward the prediction (``mode="prediction"``: "why this
  mistake?") or the label (``"label"``: "what would have corrected it?"); report the confidences before and
  after, how often the top-1 becomes the target, the perturbations' size and sparsity and seconds per image,
  and draw a Fig. 2-style grid (original, perturbation ×5 around grey, perturbed image, labels and
  confidences).  Optionally an independent *judge* classifier reads the perturbed images (fraction it assigns
  to the target, with a Wilson 95 % interval).
* :func:`run_probe` — concept probes: each class drawn on noise with ℓ1-q and ℓ2 (Fig. 3 grid), with the
  model's and (optionally) the judge's reading.

Budgets: ``eps`` is the ℓ2 budget; the ℓ1 budget is the paper's matched ε₁ = ε₂ √d unless ``eps_l1`` is given.
Every norm's perturbations are cached batch by batch (atomic ``.npz`` under ``<out>/cache``, keyed by the
model's weights, the images and the settings), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..evaluation.sparsity import changed_fraction, hoyer_sparsity, wilson_interval
from ..explain.counterfactual import Counterfactual, matched_l1_eps, probe_concepts
from ..io_utils import atomic_savefig, atomic_write_json, atomic_write_text
from ..models.adapter import as_logits_model
from .report import _pyplot, fmt
from .replicas import replica_map
from .runner import ResultCache, as_float, batch_slices, check_dataset, fingerprint, predict_labels

__all__ = ["run_counterfactuals", "run_probe", "NORM_TITLES", "budgets"]

NORM_TITLES = {"l1q": "ℓ1-q", "l2": "ℓ2"}


def budgets(eps_l2, shape, eps_l1=None):
    """{"l1q": ε₁, "l2": ε₂} for images of ``shape`` (H, W, C): ε₁ = ε₂ √(H W C) unless given."""
    d = int(np.prod(shape))
    return {"l1q": float(eps_l1) if eps_l1 is not None else matched_l1_eps(eps_l2, d), "l2": float(eps_l2)}


def _judge_reading(judge, images, targets, batch_size=256):
    if judge is None:
        return None
    pred = predict_labels(judge, images, batch_size)
    k = int(np.sum(pred == targets))
    lo, hi = wilson_interval(k, len(targets))
    return {"fraction_target": k / len(targets), "ci95": [lo, hi], "n": len(targets), "predicted": pred.tolist()}


def _label(k, names):
    k = int(k)
    return names[k].split(",")[0][:16] if names is not None and k < len(names) else str(k)


def _dpi(images):
    """100 dpi for small images; 60 for ImageNet-sized ones (their noise-like panels compress badly)."""
    return 100 if images.shape[1] <= 64 else 60


def _show(ax, img, title):
    ax.imshow(np.clip(img.squeeze(-1) if img.shape[-1] == 1 else img, 0, 1), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def plot_counterfactual_grid(x, labels, pred, per_norm, path, names=None, magnify=5.0):
    """Fig. 2: per image the original (label, prediction and its confidence) and, per norm, the perturbation
    (0.5 + ``magnify`` · δ) and the perturbed image (its prediction and the target's confidence)."""
    plt = _pyplot()
    norms = list(per_norm)
    cols = 1 + 2 * len(norms)
    fig, axes = plt.subplots(len(x), cols, figsize=(1.9 * cols, 2.0 * len(x)), squeeze=False)
    for i in range(len(x)):
        r0 = per_norm[norms[0]]
        _show(axes[i, 0], x[i], f"label {_label(labels[i], names)}\npred {_label(pred[i], names)} "
                                f"({r0['predicted_before'][i]:.2f})")
        for j, norm in enumerate(norms):
            r = per_norm[norm]
            d = r["perturbed"][i] - x[i]
            _show(axes[i, 1 + 2 * j], 0.5 + magnify * d, f"{NORM_TITLES[norm]} δ ×{magnify:g}")
            _show(axes[i, 2 + 2 * j], r["perturbed"][i],
                  f"→ {_label(r['perturbed_predicted'][i], names)}\n"
                  f"p({_label(r['target'][i], names)}) {r['target_before'][i]:.2f}→{r['target_after'][i]:.2f}")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=_dpi(x))
    plt.close(fig)


def _summary(x, r, seconds, judge_reading):
    d = r["perturbed"] - x
    flat = d.reshape(len(d), -1)
    out = {"n": int(len(x)), "eps": r["eps"],
           "target_confidence_before": float(np.mean(r["target_before"])),
           "target_confidence_after": float(np.mean(r["target_after"])),
           "reaches_target": float(np.mean(r["perturbed_predicted"] == r["target"])),
           "mean_l1": float(np.abs(flat).sum(1).mean()), "mean_l2": float(np.linalg.norm(flat, axis=1).mean()),
           "changed_fraction": float(np.mean(changed_fraction(d))),
           "hoyer_sparsity": float(np.nanmean(hoyer_sparsity(d))), "seconds_per_image": seconds / max(1, len(x)),
           # images where the oracle could not certify a step: they kept their last certified iterate
           "uncertified_steps": int(np.sum(r["failed"]))}
    if judge_reading is not None:
        out["judge"] = {k: v for k, v in judge_reading.items() if k != "predicted"}
    return out


def run_counterfactuals(model, images, labels, norms=("l1q", "l2"), mode="prediction", eps=2.0, eps_l1=None, q=0.05,
                        steps=30, n=16, errors_only=True, out_dir="runs/counterfactual", data_name="custom",
                        model_name="custom", class_names=None, judge=None, progress=True, seed=0, batch_size=32,
                        c=2.0, box="exact", n_panels=8):
    """Error counterfactuals of ``model`` on ``images`` (N, H, W, C) in [0, 1] (or uint8) with ``labels`` (N,).

    Args:
        norms: subset of ("l1q", "l2"); mode: "prediction" or "label"; eps: the ℓ2 budget; eps_l1: the ℓ1 budget
            (default ε₂ √d); q, steps, c, box: see :class:`~tfperceptual.explain.Counterfactual`.
        n: images to explain: ``n`` of the errors (with ``errors_only``; else of all images), evenly spaced over
            them in dataset order (all of them if there are fewer).
        judge: an optional independent classifier reading the perturbed images.
        seed: recorded (the method is deterministic); batch_size: images per graph call and per cache entry.

    Returns:
        The results dict written to ``<out_dir>/results.json`` (also ``report.md`` and ``counterfactuals.png``).

    Raises:
        ValueError: no errors to explain (with ``errors_only``), bad images or labels, the explainer's errors.
    """
    lm = as_logits_model(model)
    labels = check_dataset(lm, images, labels)
    pred_all = predict_labels(lm, images, 256)
    pool = np.flatnonzero(pred_all != labels) if (errors_only or mode == "prediction") else np.arange(len(labels))
    if len(pool) == 0:
        raise ValueError("the model makes no error on these images: nothing for error counterfactuals to explain "
                         "(use mode='label' without errors_only, or more images)")
    # n of them spread evenly over the pool (a class-ordered pool, like CIFAR-10's, then gives every class)
    idx = pool[np.unique(np.linspace(0, len(pool) - 1, min(n, len(pool))).round().astype(int))]
    x = as_float(images[idx])
    y, pred = labels[idx], pred_all[idx]
    eps_by_norm = budgets(eps, x.shape[1:], eps_l1)
    out = Path(out_dir)
    cache = ResultCache(out / "cache")
    results = {"settings": {"data": data_name, "model": model_name, "mode": mode, "norms": list(norms),
                            "eps": eps_by_norm, "q": q, "steps": steps, "c": c, "box": box, "n": int(len(idx)),
                            "errors_only": bool(errors_only or mode == "prediction"), "seed": seed,
                            "batch_size": batch_size, "judge": judge is not None},
               "images": idx.tolist(), "labels": y.tolist(), "predicted": pred.tolist(), "norms": {}}
    per_norm = {}
    for norm in tqdm(list(norms), desc="counterfactual", disable=not progress):
        explainer = Counterfactual(lm, norm=norm, eps=eps_by_norm[norm], q=q, steps=steps, mode=mode, c=c, box=box,
                                   batch_size=batch_size)
        key = fingerprint(lm, x, {"labels": y.tolist(), "norm": norm, "eps": eps_by_norm[norm], "q": q,
                                  "steps": steps, "c": c, "box": box, "mode": mode, "batch_size": batch_size})
        fields = ("perturbed", "target", "perturbed_predicted", "predicted_before", "target_before", "target_after",
                  "label_before", "label_after", "failed", "seconds")
        slices = batch_slices(len(x), batch_size)
        parts = {s: cache.read_npz(f"{norm}_{key}_{s}.npz", fields) for s, _ in slices}

        def one(sl, explainer=explainer):
            s, e = sl
            t0 = time.perf_counter()
            ex = explainer.explain(x[s:e], y[s:e])
            conf = ex.confidence
            return s, {"perturbed": ex.perturbed, "target": ex.target, "perturbed_predicted": ex.perturbed_predicted,
                       "predicted_before": conf["predicted_before"], "target_before": conf["target_before"],
                       "target_after": conf["target_after"], "label_before": conf["label_before"],
                       "label_after": conf["label_after"], "failed": ~ex.converged,
                       "seconds": np.float64(time.perf_counter() - t0)}

        todo = [sl for sl in slices if parts[sl[0]] is None]
        bar = tqdm(total=len(slices), initial=len(slices) - len(todo), desc=norm, leave=False, disable=not progress)
        for s, part in replica_map(one, todo):  # R batches at a time on the replicas of the strategy in scope
            cache.write_npz(f"{norm}_{key}_{s}.npz", **part)
            parts[s] = part
            bar.update(1)
        bar.close()
        parts = [parts[s] for s, _ in slices]
        seconds = sum(float(p["seconds"]) for p in parts)
        r = {k: np.concatenate([np.atleast_1d(p[k]) for p in parts]) for k in fields if k != "seconds"}
        r["eps"] = eps_by_norm[norm]
        per_norm[norm] = r
        reading = _judge_reading(judge, r["perturbed"], r["target"])
        if reading is not None:  # the baseline: how often the judge says the target on the clean images already
            clean = _judge_reading(judge, x, r["target"])
            reading["clean_fraction_target"] = clean["fraction_target"]
            reading["clean_ci95"] = clean["ci95"]
        results["norms"][norm] = {"summary": _summary(x, r, seconds, reading),
                                  "target": r["target"].tolist(),
                                  "perturbed_predicted": r["perturbed_predicted"].tolist(),
                                  "target_before": r["target_before"].tolist(),
                                  "target_after": r["target_after"].tolist(),
                                  "label_before": r["label_before"].tolist(), "label_after": r["label_after"].tolist(),
                                  "failed": np.flatnonzero(r["failed"]).tolist(),
                                  "judge_predicted": None if reading is None else reading["predicted"]}
    panels = np.unique(np.linspace(0, len(x) - 1, min(n_panels, len(x))).round().astype(int))  # spread out
    plot_counterfactual_grid(x[panels], y[panels], pred[panels],
                             {m: {f: v[panels] if hasattr(v, "__len__") else v for f, v in r.items()}
                              for m, r in per_norm.items()}, out / "counterfactuals.png", class_names)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "report.md", counterfactual_report(results))
    return results


def counterfactual_report(results):
    """Markdown: settings, one row per norm, the figure."""
    st = results["settings"]
    what = "the prediction" if st["mode"] == "prediction" else "the label"
    lines = [f"# Counterfactuals: {st['data']}, {st['model']}", "",
             f"{st['n']} {'misclassified ' if st['errors_only'] else ''}images, perturbed toward {what} "
             f"(mode={st['mode']}), {st['steps']} Frank–Wolfe steps (γ_k = {st['c']:g}/({st['c']:g}+k)), "
             f"box={st['box']}, q={st['q']:g} (ℓ1-q: fraction of entries an FW step modifies).", "",
             "| norm | ε | p(target) before → after | top-1 = target | mean ℓ1 | mean ℓ2 | pixels changed > 1/255 "
             "| Hoyer sparsity | s / image | judge: target on x′ (95 % CI) | judge: target on x |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for norm, r in results["norms"].items():
        s = r["summary"]
        j = s.get("judge")
        judge = "— | —" if j is None else (f"{j['fraction_target']:.3f} ({j['ci95'][0]:.3f}–{j['ci95'][1]:.3f}) | "
                                            f"{j['clean_fraction_target']:.3f}")
        lines.append(f"| {NORM_TITLES[norm]} | {s['eps']:.4g} | {fmt(s['target_confidence_before'])} → "
                     f"{fmt(s['target_confidence_after'])} | {fmt(s['reaches_target'])} | {fmt(s['mean_l1'], 2)} | "
                     f"{fmt(s['mean_l2'], 3)} | {fmt(s['changed_fraction'])} | {fmt(s['hoyer_sparsity'])} | "
                     f"{fmt(s['seconds_per_image'], 3)} | {judge} |")
    bad = {n: r["summary"].get("uncertified_steps", 0) for n, r in results["norms"].items()}
    if any(bad.values()):
        lines += ["", "**Uncertified oracle steps** (those images kept their last certified iterate): " +
                  ", ".join(f"{NORM_TITLES[n]}: {k} image(s)" for n, k in bad.items() if k)]
    lines += ["", "Budgets: ε is the ℓ2 budget; the ℓ1-q budget is the paper's matched ε₁ = ε₂ √d unless given "
              "(this ℓ1 ball contains the ℓ2 ball and touches it on the diagonals).", "",
              "The judge (``--judge``) is an independent classifier; its reading of the clean images x is the "
              "baseline its reading of the counterfactuals x′ must beat.", "",
              "![counterfactuals](counterfactuals.png)", ""]
    return "\n".join(lines)


def run_probe(model, classes, n_per_class=1, eps=2.0, eps_l1=None, q=0.05, steps=30, out_dir="runs/probe",
              data_name="custom", model_name="custom", class_names=None, judge=None, progress=True, seed=0,
              image_shape=None, c=2.0, box="exact", batch_size=64):
    """Concept probes of ``classes`` with ℓ1-q and ℓ2 (Fig. 3): ``probe.png``, ``results.json``, ``report.md``.

    Returns:
        The results dict.
    """
    lm = as_logits_model(model)
    shape = lm.image_shape if image_shape is None else tuple(image_shape)
    if len(shape) != 3 or any(s is None for s in shape):
        raise ValueError(f"image_shape must be (H, W, C) with known sizes: the model takes {lm.image_shape}, "
                         "pass image_shape")
    eps_by_norm = budgets(eps, shape, eps_l1)
    out = Path(out_dir)
    cache = ResultCache(out / "cache")
    results = {"settings": {"data": data_name, "model": model_name, "classes": [int(k) for k in classes],
                            "n_per_class": n_per_class, "image_shape": list(shape), "eps": eps_by_norm, "q": q,
                            "steps": steps, "c": c, "box": box, "seed": seed, "judge": judge is not None},
               "norms": {}}
    probes = {}
    for norm in tqdm(("l1q", "l2"), desc="probe", disable=not progress):
        st = results["settings"]
        key = fingerprint(lm, np.zeros(1), {"norm": norm, "eps": eps_by_norm[norm], "shape": list(shape),
                                            **{k: st[k] for k in ("classes", "n_per_class", "q", "steps", "c", "box",
                                                                  "seed")}})
        name = f"{norm}_{key}.npz"
        fields = ("noise", "images", "classes", "predicted", "confidence", "confidence_before")
        r = cache.read_npz(name, fields)
        if r is None:
            p = probe_concepts(lm, classes, n_per_class, shape, norm, eps_by_norm[norm], steps, seed, q=q, c=c,
                               box=box, batch_size=batch_size)
            r = {f: getattr(p, f) for f in fields}
            cache.write_npz(name, **r)
        probes[norm] = r
        reading = _judge_reading(judge, r["images"], r["classes"])
        if reading is not None:  # the baseline: the judge's reading of the starting noise
            reading["noise_fraction_target"] = _judge_reading(judge, r["noise"], r["classes"])["fraction_target"]
        change = (r["images"] - r["noise"]).reshape(len(r["images"]), -1)
        results["norms"][norm] = {"eps": eps_by_norm[norm],
                                  "model_success": float(np.mean(r["predicted"] == r["classes"])),
                                  "mean_l2": float(np.linalg.norm(change, axis=1).mean()),
                                  "rms_per_pixel": float(np.sqrt(np.mean(change ** 2, axis=1)).mean()),
                                  "mean_confidence": float(np.mean(r["confidence"])),
                                  "mean_confidence_before": float(np.mean(r["confidence_before"])),
                                  "judge": None if reading is None else {k: v for k, v in reading.items()
                                                                         if k != "predicted"},
                                  "predicted": r["predicted"].tolist(),
                                  "judge_predicted": None if reading is None else reading["predicted"]}
    plot_probe_grid(probes, out / "probe.png", class_names)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "report.md", probe_report(results))
    return results


def plot_probe_grid(probes, path, names=None):
    """Fig. 3: one column per class; per probe of that class three rows: the noise, the ℓ1-q probe, the ℓ2 probe."""
    plt = _pyplot()
    first = probes["l1q"]
    classes = list(dict.fromkeys(first["classes"].tolist()))
    per = max(int(np.sum(first["classes"] == c)) for c in classes)
    fig, axes = plt.subplots(3 * per, len(classes), figsize=(1.6 * len(classes), 1.75 * 3 * per), squeeze=False)
    for j, c in enumerate(classes):
        for s, i in enumerate(np.flatnonzero(first["classes"] == c)):
            _show(axes[3 * s, j], first["noise"][i], f"noise → {_label(c, names)}")
            for r_, norm in enumerate(("l1q", "l2")):
                r = probes[norm]
                _show(axes[3 * s + 1 + r_, j], r["images"][i],
                      f"{NORM_TITLES[norm]}: {_label(r['predicted'][i], names)} ({r['confidence'][i]:.2f})")
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=_dpi(first["images"]))
    plt.close(fig)


def probe_report(results):
    st = results["settings"]
    lines = [f"# Concept probes: {st['data']}, {st['model']}", "",
             f"Classes {st['classes']}, {st['n_per_class']} probe(s) each from standard-normal noise min–max scaled "
             f"to [0, 1] (seed {st['seed']}), label-targeted, {st['steps']} Frank–Wolfe steps, box={st['box']}.", "",
             "| norm | ε | model: p(class) before → after | model top-1 = class | per-pixel RMS of the change | "
             "judge: class (95 % CI) | judge: class on the noise |", "|---|---|---|---|---|---|---|"]
    for norm, r in results["norms"].items():
        j = r["judge"]
        judge = "— | —" if j is None else (f"{j['fraction_target']:.3f} ({j['ci95'][0]:.3f}–{j['ci95'][1]:.3f}) | "
                                            f"{j['noise_fraction_target']:.3f}")
        lines.append(f"| {NORM_TITLES[norm]} | {r['eps']:.4g} | {fmt(r['mean_confidence_before'])} → "
                     f"{fmt(r['mean_confidence'])} | {fmt(r['model_success'])} | {fmt(r['rms_per_pixel'], 4)} | "
                     f"{judge} |")
    lines += ["", "![probes](probe.png)", ""]
    return "\n".join(lines)
