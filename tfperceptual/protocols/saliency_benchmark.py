"""Run the saliency benchmarks (:mod:`tfperceptual.benchmarks`) for several explanation methods on one
dataset, streamed in batches, with every batch's per-image results cached (atomic ``.npz``) so that an
interrupted run resumes; writes ``results.json``, ``report.md`` and figures.

Methods are written ``NAME[@SIGMA]``: ``perceptual_ball`` (Elliott et al., unguided),
``perceptual_ball_guided``, ``noper`` (λ′ = 0, Eq. 4), or a tf-keras-vis baseline of
:data:`tfperceptual.saliency.METHODS`; ``@σ`` blurs the map by a Gaussian of σ pixels after normalising
it to [0, 1] (``perceptual_ball@0`` and ``perceptual_ball@5`` are the two rows of the paper's Table 2).
The perturbation of a perceptual-ball method is computed once per image and shared by its σ variants.
Every method explains the ground-truth class (the class of the boxes).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import benchmarks as bm
from .io_utils import atomic_savefig, atomic_savez, atomic_write_json, atomic_write_text

__all__ = ["run_benchmarks", "parse_methods", "paired_differences", "PB_METHODS", "BENCHMARKS", "PAPER_TABLE_1",
           "PAPER_TABLE_2"]

PB_METHODS = ("perceptual_ball", "perceptual_ball_guided", "noper")
BENCHMARKS = ("deletion_insertion", "weak_localisation", "pointing_game", "sanity")
#: Elliott et al. Table 1 (weak-localisation error, best strategy, ImageNet val, VGG19-BN)
PAPER_TABLE_1 = {"gradcam": 0.48, "smoothgrad": 0.47, "integrated_gradients": 0.44, "rise": 0.48, "noper": 0.46,
                 "perceptual_ball": 0.43, "perceptual_ball_guided": 0.41}
#: Elliott et al. Table 2 (deletion / insertion AUC)
PAPER_TABLE_2 = {"gradcam": (0.11, 0.64), "rise": (0.12, 0.65), "perceptual_ball@0": (0.07, 0.54),
                 "perceptual_ball@5": (0.12, 0.63)}


def parse_methods(text):
    """'perceptual_ball@0,perceptual_ball@5,gradcam' → [("perceptual_ball", 0.0), …] (σ default 0)."""
    from .saliency import METHODS

    out = []
    for item in [t.strip() for t in text.split(",") if t.strip()]:
        name, _, sigma = item.partition("@")
        if name not in PB_METHODS + METHODS:
            raise ValueError(f"unknown method {name!r}; choose from {PB_METHODS + METHODS}")
        s = float(sigma) if sigma else 0.0
        if not np.isfinite(s) or s < 0:
            raise ValueError(f"bad σ in {item!r}")
        out.append((name, s))
    return out


def _spec(name, sigma):
    return f"{name}@{sigma:g}"


class _RawMaps:
    """Raw (unblurred) maps of the base methods for one batch, computed once."""

    def __init__(self, model, pb_kwargs, scorecam_max_n):
        self.model, self.pb_kwargs, self.scorecam_max_n = model, pb_kwargs, scorecam_max_n
        self._fns = {}

    def _fn(self, base):
        if base not in self._fns:
            if base in ("perceptual_ball", "noper"):
                from .explain import PerceptualBall

                kw = dict(self.pb_kwargs)
                if base == "noper":
                    kw.update(lambda_perceptual=0.0, layers=())
                self._fns[base] = PerceptualBall(self.model, **kw)
            else:
                from .saliency import saliency_fn

                self._fns[base] = saliency_fn(self.model, base, max_N=self.scorecam_max_n)
        return self._fns[base]

    def compute(self, base, x, y):
        """{"map": (B, H, W)} and, for the perceptual ball, "grad" (normalised input-gradient size)."""
        if base in ("perceptual_ball", "noper"):
            pb = self._fn(base)
            e = pb(x, y, sigma=0.0)
            out = {"map": e.saliency, "margin": e.margin, "initial_margin": e.initial_margin}
            if base == "perceptual_ball":  # the guided variant's input-gradient map (one backward pass)
                import tensorflow as tf

                g = pb._grad(tf.constant(x), tf.constant(y, tf.int32)).numpy()
                gm = np.sqrt(np.mean(g ** 2, -1))
                out["grad"] = gm / np.maximum(gm.max((1, 2), keepdims=True), 1e-12)
            return out
        return {"map": self._fn(base)(x, y)}


def _model_digest(model):
    """Hash of a model's weights (a cache-key component)."""
    import hashlib

    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def _batch_digest(x, y):
    """Hash of one batch: its float32 pixels and its labels."""
    import hashlib

    h = hashlib.sha256(np.ascontiguousarray(x, np.float32).tobytes())
    h.update(np.ascontiguousarray(y, np.int64).tobytes())
    return h.hexdigest()


def _boxes_digest(boxes):
    """Hash of one batch's ground-truth boxes (a list of (K_i, 4) arrays)."""
    import hashlib

    h = hashlib.sha256()
    for b in boxes:
        a = np.ascontiguousarray(np.asarray(b, np.float64).reshape(-1, 4))
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _localisation(maps, boxes, loc_benchmarks):
    """Weak-localisation successes (``wl_<strategy>``, (B, A) bool) and pointing hits (``pointing``, (B,))."""
    res = {}
    if "weak_localisation" in loc_benchmarks:
        for strat, ok in bm.weak_localisation_success(maps, boxes).items():
            res[f"wl_{strat}"] = ok
    if "pointing_game" in loc_benchmarks:
        res["pointing"] = bm.pointing_game(maps, boxes)
    return res


def _key(model_digest, settings, batch_digest):
    """Cache key: model weights, the settings the cached result depends on (and nothing else), the batch."""
    import hashlib

    h = hashlib.sha256(model_digest.encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(batch_digest.encode())
    return h.hexdigest()[:16]


def _base(name):
    """The method whose raw maps a method uses: the guided ball shares the unguided ball's perturbation."""
    return "perceptual_ball" if name == "perceptual_ball_guided" else name


def _jsonable(pb_kwargs):
    """The perceptual ball's arguments with ranges/tuples as lists (for JSON settings and cache keys)."""
    return {k: (list(v) if isinstance(v, (range, tuple)) else v) for k, v in pb_kwargs.items()}


def _base_settings(base, pb_kwargs, scorecam_max_n):
    """What a base method's raw maps depend on: a change of the perceptual ball's settings does not
    invalidate the cached tf-keras-vis maps, and the reverse."""
    if base in ("perceptual_ball", "noper"):
        kw = _jsonable(pb_kwargs)
        if base == "noper":
            kw.update(lambda_perceptual=0.0, layers=[])
        return {"method": base, "pb": kw}
    if base == "scorecam":
        return {"method": base, "max_N": scorecam_max_n}
    return {"method": base}


def _final_map(raw, name, sigma):
    """Normalise to [0, 1], blur by σ (and for the guided variant multiply by the gradient size)."""
    from .explain import blur_saliency

    base = _base(name)
    m = bm.normalise_maps(raw[base]["map"])
    m = np.asarray(blur_saliency(m, sigma)) if sigma > 0 else m
    if name == "perceptual_ball_guided":
        m = m * raw["perceptual_ball"]["grad"]
    return m.astype(np.float32)


def run_benchmarks(model, images, labels, boxes=None, methods=(("perceptual_ball", 0.0),), benchmarks=BENCHMARKS,
                   pb_kwargs=None, n_steps=50, insertion_blur="gaussian", batch_size=16, sanity_n=4,
                   sanity_checkpoints=None,
                   scorecam_max_n=None, out_dir="runs/benchmark", data_name="custom", model_name="custom",
                   progress=True):
    """Run ``benchmarks`` for ``methods`` on ``images`` and write the report.

    Args:
        model: Keras classifier taking pixels in [0, 1].
        images: (N, H, W, C) float in [0, 1] or uint8; labels: (N,) classes explained.
        boxes: list of (K_i, 4) boxes (needed by weak localisation and the pointing game).
        methods: list of (name, σ), see :func:`parse_methods`.
        benchmarks: subset of :data:`BENCHMARKS`.
        pb_kwargs: :class:`tfperceptual.explain.PerceptualBall` arguments (layers, λ′, steps, …).
        n_steps: deletion/insertion curve steps.
        insertion_blur: insertion's substrate, ``"gaussian"`` (σ = 5) or ``"rise"`` (RISE's 11 × 11 kernel),
            see :func:`tfperceptual.benchmarks.deletion_insertion`.
        sanity_n: images of the cascading-randomisation check (the first ones); sanity_checkpoints:
            layer names recorded (default: every layer with weights).
        scorecam_max_n: Score-CAM channels (``None``: all).

    Returns:
        the summary dict written to ``results.json``.
    """
    from tqdm.auto import tqdm

    from .compare import _as_float
    from .model_adapter import as_logits_model

    out = Path(out_dir)
    (out / "cache").mkdir(parents=True, exist_ok=True)
    for b in benchmarks:
        if b not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {b!r}; choose from {BENCHMARKS}")
    if ("weak_localisation" in benchmarks or "pointing_game" in benchmarks) and boxes is None:
        raise ValueError("weak localisation and the pointing game need ground-truth boxes")
    if insertion_blur not in ("gaussian", "rise"):
        raise ValueError(f"insertion_blur must be 'gaussian' or 'rise', got {insertion_blur!r}")
    pb_kwargs = dict(pb_kwargs or {})
    labels = np.asarray(labels)
    t0 = time.perf_counter()
    lm = as_logits_model(model)
    # cache keys: model weights, the settings a result depends on, then each batch's own pixels and
    # labels, so that a run over more images (larger n, same batch size) reuses every batch already done,
    # a long run can be stopped and summarised over its first batches by rerunning with a smaller n, and
    # changing one method's settings recomputes only that method
    mdig = _model_digest(lm)
    batch_benchmarks = [b for b in benchmarks if b != "sanity"]
    loc_benchmarks = [b for b in batch_benchmarks if b in ("weak_localisation", "pointing_game")]
    bases = sorted({_base(n) for n, _ in methods})
    base_settings = {b: _base_settings(b, pb_kwargs, scorecam_max_n) for b in bases}

    def metric_settings(name, sigma):
        st = {"raw": base_settings[_base(name)], "map": _spec(name, sigma), "benchmarks": sorted(batch_benchmarks)}
        if "deletion_insertion" in batch_benchmarks:
            st["n_steps"] = int(n_steps)
            if insertion_blur != "gaussian":  # only when not the default: earlier caches keep their keys
                st["insertion_blur"] = insertion_blur
        return st

    specs = [_spec(n, s) for n, s in methods]
    raw_maps = _RawMaps(model, pb_kwargs, scorecam_max_n)
    per_image = {s: {} for s in specs}
    seconds = {b: 0.0 for b in bases}
    metric_seconds = 0.0
    examples = {}
    starts = range(0, len(images), batch_size) if batch_benchmarks else range(0)  # sanity only: no batch loop
    for i in tqdm(starts, desc="benchmark", disable=not progress):
        x = _as_float(images[i:i + batch_size])
        y = labels[i:i + batch_size]
        bx = None if boxes is None else boxes[i:i + batch_size]
        bdig = _batch_digest(x, y)
        raw = {}
        for base in bases:
            path = out / "cache" / f"{base}_{_key(mdig, base_settings[base], bdig)}.npz"
            if path.exists():
                with np.load(path) as z:
                    raw[base] = {k: z[k] for k in z.files if k != "seconds"}
                    seconds[base] += float(z["seconds"])
                continue
            ts = time.perf_counter()
            raw[base] = raw_maps.compute(base, x, y)
            dt = time.perf_counter() - ts
            seconds[base] += dt
            atomic_savez(path, seconds=dt, **{k: np.asarray(v) for k, v in raw[base].items()})
        # localisation results depend on the boxes, which the key leaves out (so that a box fix does not
        # redo deletion/insertion, the costly part): the cached file records the boxes' digest, and
        # localisation is redone when it differs (or is missing, as in caches written before it was kept)
        bxd = _boxes_digest(bx) if bx is not None and loc_benchmarks else None
        for (name, sigma), spec in zip(methods, specs):
            path = out / "cache" / f"metrics_{spec}_{_key(mdig, metric_settings(name, sigma), bdig)}.npz"
            m = None
            if path.exists():
                with np.load(path) as z:
                    res = {k: z[k] for k in z.files if k not in ("seconds", "boxes_digest")}
                    dt = float(z["seconds"]) if "seconds" in z.files else 0.0
                    stale = bxd is not None and ("boxes_digest" not in z.files or str(z["boxes_digest"]) != bxd)
                if stale:
                    m = _final_map(raw, name, sigma)
                    res.update(_localisation(m, bx, loc_benchmarks))
                    atomic_savez(path, seconds=dt, boxes_digest=bxd, **res)
                metric_seconds += dt
            else:
                ts = time.perf_counter()
                m = _final_map(raw, name, sigma)
                res = {}
                if "deletion_insertion" in batch_benchmarks:
                    r = bm.deletion_insertion(model, x, y, m, n_steps=n_steps, insertion_blur=insertion_blur)
                    res.update({k: r[k] for k in ("deletion", "insertion", "deletion_curve", "insertion_curve")})
                res.update(_localisation(m, bx, loc_benchmarks))
                dt = time.perf_counter() - ts
                metric_seconds += dt
                atomic_savez(path, seconds=dt, **({"boxes_digest": bxd} if bxd is not None else {}), **res)
            for k, v in res.items():
                per_image[spec].setdefault(k, []).append(v)
            if i == 0:
                examples[spec] = (_final_map(raw, name, sigma) if m is None else m)[:4]
        if i == 0:
            examples["_images"] = x[:4]
    results = {}
    for spec, parts in per_image.items():
        if not parts:
            continue
        cat = {k: np.concatenate(v) for k, v in parts.items()}
        r = {}
        if "deletion" in cat:
            r.update(deletion_auc=float(cat["deletion"].mean()), insertion_auc=float(cat["insertion"].mean()),
                     deletion_curve=cat["deletion_curve"].mean(0), insertion_curve=cat["insertion_curve"].mean(0))
        per = {}
        wl = {k[3:]: v for k, v in cat.items() if k.startswith("wl_")}
        if wl:
            r["weak_localisation"] = bm.weak_localisation(success=wl)
            best = r["weak_localisation"]["best"]
            j = int(np.argmin(np.abs(bm.threshold_grids()[best["strategy"]] - best["alpha"])))
            per["weak_localisation_success"] = wl[best["strategy"]][:, j].astype(int).tolist()
        if "pointing" in cat:
            r["pointing_accuracy"] = float(cat["pointing"].mean())
            per["pointing"] = cat["pointing"].astype(int).tolist()
        if "deletion" in cat:
            per.update(deletion=np.round(cat["deletion"], 6).tolist(), insertion=np.round(cat["insertion"], 6).tolist())
        r["per_image"] = per
        results[spec] = r
    paired = paired_differences(results)
    sanity = dependence = None
    if "sanity" in benchmarks:
        sanity = _run_sanity(model, images[:sanity_n], labels[:sanity_n], methods, pb_kwargs, sanity_checkpoints,
                             scorecam_max_n, out, mdig, _batch_digest(_as_float(images[:sanity_n]), labels[:sanity_n]),
                             progress)
        if min(sanity_n, len(images)) >= 2:  # the randomised models' own dependence on the input (cheap)
            d = bm.cascade_input_dependence(model, _as_float(images[:sanity_n]), sanity_checkpoints)
            dependence = {"layers": d["layers"], "relative_spread": d["relative_spread"].tolist()}
    n = len(images)
    settings = {"data": data_name, "model": model_name, "n": int(n), "methods": specs, "benchmarks": list(benchmarks),
                "perceptual_ball": _jsonable(pb_kwargs),
                "n_steps": n_steps, "insertion_blur": insertion_blur, "sanity_n": sanity_n,
                "scorecam_max_n": scorecam_max_n,
                "seconds": round(time.perf_counter() - t0, 1),
                "seconds_per_image": {**{b: seconds[b] / max(n, 1) for b in bases},
                                      "metrics": metric_seconds / max(n, 1)}}
    summary = {"settings": settings, "methods": results, "paired": paired, "sanity": sanity,
               "sanity_input_dependence": dependence}
    atomic_write_json(out / "results.json", summary)
    atomic_write_text(out / "report.md", _report(settings, results, sanity, paper=data_name == "imagenet",
                                                 paired=paired, dependence=dependence))
    _plot(results, sanity, examples, out, dependence)
    return summary


def paired_differences(results, reference=None, n_boot=2000, seed=0):
    """Per-image paired differences of every method from ``reference`` with 95 % bootstrap intervals.

    For weak localisation each method's per-image success at its own best (strategy, α) is used, so the
    comparison inherits the grid search's optimism. Differences are *other − reference* of: error
    (1 − success), pointing accuracy, deletion AUC and insertion AUC; an interval that excludes 0 is a
    difference larger than the resampling noise of these images.

    Args:
        results: the runner's per-method results (with ``per_image``).
        reference: a method spec (default: ``perceptual_ball@5`` if present, else the first perceptual-ball
            method, else the first method).

    Returns:
        {"reference": spec, "n": images, "methods": {spec: {metric: [mean, low, high]}}} or ``None``
        with fewer than two methods.
    """
    specs = [s for s in results if results[s].get("per_image")]
    if len(specs) < 2:
        return None
    if reference is None:
        pbs = [s for s in specs if s.startswith("perceptual_ball")]
        reference = "perceptual_ball@5" if "perceptual_ball@5" in specs else (pbs[0] if pbs else specs[0])
    ref = results[reference]["per_image"]
    n = len(next(iter(ref.values())))
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    out = {}
    for s in specs:
        if s == reference:
            continue
        other, d = results[s]["per_image"], {}
        for key, name, sign in (("weak_localisation_success", "weak_localisation_error", -1.0),
                                ("pointing", "pointing_accuracy", 1.0), ("deletion", "deletion_auc", 1.0),
                                ("insertion", "insertion_auc", 1.0)):
            if key in other and key in ref:
                diff = sign * (np.asarray(other[key], float) - np.asarray(ref[key], float))
                boot = diff[idx].mean(1)
                d[name] = [float(diff.mean()), float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))]
        out[s] = d
    return {"reference": reference, "n": int(n), "methods": out}


def _load_sanity(path):
    """A cached sanity result; the JSON writer stores NaN (a constant map's Spearman) as null: back to NaN."""
    r = json.loads(Path(path).read_text())
    for k in ("spearman", "spearman_abs", "ssim"):
        r[k] = [[float("nan") if v is None else v for v in row] for row in r[k]]
    return r


def _run_sanity(model, images, labels, methods, pb_kwargs, checkpoints, scorecam_max_n, out, mdig, bdig, progress):
    from .compare import _as_float

    x = _as_float(images)
    res = {}
    once = {}
    for name, sigma in methods:  # one σ per method (the first listed): the check costs a full cascade each
        once.setdefault(name, sigma)
    for name, sigma in once.items():
        spec = _spec(name, sigma)
        base = _base(name)
        st = {"raw": _base_settings(base, pb_kwargs, scorecam_max_n), "map": spec, "checkpoints": checkpoints}
        path = out / "cache" / f"sanity_{spec}_{_key(mdig, st, bdig)}.json"
        if path.exists():
            res[spec] = _load_sanity(path)
            continue

        def make(m, name=name, sigma=sigma, base=base):
            rm = _RawMaps(m, pb_kwargs, scorecam_max_n)
            return lambda im, lab: _final_map({base: rm.compute(base, im, lab)}, name, sigma)

        r = bm.cascading_randomization(model, make, x, labels, checkpoints=checkpoints, progress=progress)
        res[spec] = {"layers": r["layers"], **{k: np.asarray(r[k]).tolist() for k in ("spearman", "spearman_abs", "ssim")}}
        atomic_write_json(path, res[spec])
    return res


def _f(v, d=3):
    return "—" if v is None or not np.isfinite(v) else f"{v:.{d}f}"


def _report(settings, results, sanity, paper=False, paired=None, dependence=None):
    lines = ["# tfperceptual benchmark", "", "## Settings", ""]
    lines += [f"- {k}: {v}" for k, v in settings.items()]
    specs = list(results)
    if any("weak_localisation" in r for r in results.values()):
        lines += ["", "## Weak localisation error (IoU ≥ 0.5, α grid-searched per strategy; lower is better)", "",
                  "| method | value | percentile | mean | best | paper (best) |", "|---|---|---|---|---|---|"]
        for s in specs:
            wl = results[s].get("weak_localisation")
            if not wl:
                continue
            cells = [f"{_f(wl[k]['best_error'])} (α={wl[k]['best_alpha']:g})" if k in wl else "—"
                     for k in ("value", "percentile", "mean")]
            ref = PAPER_TABLE_1.get(s.split("@")[0]) if paper else None
            lines.append(f"| {s} | " + " | ".join(cells) + f" | {_f(wl['best']['error'])} | {_f(ref, 2)} |")
    if any("pointing_accuracy" in r for r in results.values()):
        lines += ["", "## Pointing game (hit within 15 px of a box of the class; higher is better)", "",
                  "| method | accuracy |", "|---|---|"]
        lines += [f"| {s} | {_f(results[s]['pointing_accuracy'])} |" for s in specs if "pointing_accuracy" in results[s]]
    if any("deletion_auc" in r for r in results.values()):
        blur = {"gaussian": "Gaussian σ = 5 px", "rise": "the RISE code's 11 × 11 kernel (gkern(11, 5))"}[
            settings.get("insertion_blur", "gaussian")]
        lines += ["", "## Deletion / insertion AUC (class probability; deletion lower, insertion higher is better)", "",
                  f"{settings['n_steps']} steps; deletion fills mid-grey, insertion starts from a blur by {blur}.", "",
                  "| method | deletion | insertion | paper deletion | paper insertion |", "|---|---|---|---|---|"]
        for s in specs:
            if "deletion_auc" not in results[s]:
                continue
            pd, pi = (PAPER_TABLE_2.get(s, PAPER_TABLE_2.get(s.split("@")[0], (None, None))) if paper
                      else (None, None))
            lines.append(f"| {s} | {_f(results[s]['deletion_auc'])} | {_f(results[s]['insertion_auc'])} | "
                         f"{_f(pd, 2)} | {_f(pi, 2)} |")
    if paired:
        lines += ["", f"## Paired differences from {paired['reference']} (other − reference, mean and 95 % bootstrap "
                      f"interval over the {paired['n']} images)", "",
                  "| method | weak-loc. error | pointing | deletion AUC | insertion AUC |", "|---|---|---|---|---|"]
        for s, d in paired["methods"].items():
            cell = lambda k: (f"{d[k][0]:+.3f} [{d[k][1]:+.3f}, {d[k][2]:+.3f}]" if k in d else "—")  # noqa: E731
            lines.append(f"| {s} | {cell('weak_localisation_error')} | {cell('pointing_accuracy')} | "
                         f"{cell('deletion_auc')} | {cell('insertion_auc')} |")
    if sanity:
        lines += ["", "## Sanity check (cascading randomisation, mean over images after the last layer randomised)",
                  "", "| method | Spearman | Spearman (abs) | SSIM |", "|---|---|---|---|"]
        for s, r in sanity.items():
            last = lambda k: float(np.nanmean(r[k][-1])) if r[k] else float("nan")  # noqa: E731
            lines.append(f"| {s} | {_f(last('spearman'))} | {_f(last('spearman_abs'))} | {_f(last('ssim'))} |")
        if dependence:
            lines += ["", "How much the randomised model still depends on its input (spread of the logits across the "
                      "images, relative to the trained model's), per checkpoint:", "",
                      "| " + " | ".join(dependence["layers"]) + " |", "|" + "---|" * len(dependence["layers"]),
                      "| " + " | ".join(f"{v:.2g}" for v in dependence["relative_spread"]) + " |"]
    spi = settings.get("seconds_per_image") or {}
    total = sum(spi.values())
    if total > 0:  # a sanity-only run has no batch stages
        lines += ["", "## Cost (compute seconds per image, as recorded when each batch was computed)", "",
                  "| stage | s / image |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in spi.items()]
        lines += [f"| **whole benchmark** | **{total:.2f}** ({1.0 / total:.3f} images/s; "
                  f"{total * 1300 / 3600:.1f} h per 1,300 images) |"]
    lines += ["", "Figures: `curves.png` (deletion/insertion), `weak_localisation.png` (error vs α), "
              "`sanity.png`, `examples.png`.", ""]
    return "\n".join(lines)


def _plot(results, sanity, examples, out, dependence=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if any("deletion_curve" in r for r in results.values()):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for s, r in results.items():
            if "deletion_curve" not in r:
                continue
            t = np.linspace(0, 1, len(r["deletion_curve"]))
            axes[0].plot(t, r["deletion_curve"], label=f"{s} ({r['deletion_auc']:.3f})")
            axes[1].plot(t, r["insertion_curve"], label=f"{s} ({r['insertion_auc']:.3f})")
        for ax, title in zip(axes, ("deletion (lower is better)", "insertion (higher is better)")):
            ax.set_xlabel("fraction of pixels"); ax.set_ylabel("class probability"); ax.set_title(title)  # noqa: E702
            ax.legend(fontsize=7)
        atomic_savefig(fig, out / "curves.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
    if any("weak_localisation" in r for r in results.values()):
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        for s, r in results.items():
            wl = r.get("weak_localisation")
            if not wl:
                continue
            for ax, k in zip(axes, ("value", "percentile", "mean")):
                if k in wl:
                    ax.plot(wl[k]["alphas"], wl[k]["error"], label=s)
                    ax.set_title(f"{k} threshold"); ax.set_xlabel("α"); ax.set_ylabel("error")  # noqa: E702
        axes[0].legend(fontsize=7)
        atomic_savefig(fig, out / "weak_localisation.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
    if sanity:
        fig, axes = plt.subplots(1, 3 if dependence else 2, figsize=(18 if dependence else 12, 4))
        for s, r in sanity.items():
            if not r["layers"]:
                continue
            k = np.arange(len(r["layers"]))
            axes[0].plot(k, np.nanmean(r["spearman"], 1), marker="o", label=s)
            axes[1].plot(k, np.nanmean(r["ssim"], 1), marker="o", label=s)
            labels = r["layers"]
        for ax, title in zip(axes, ("Spearman rank correlation", "SSIM")):
            ax.set_xticks(np.arange(len(labels)))
            ax.set_xticklabels(labels, rotation=70, fontsize=6)
            ax.set_title(f"{title} with the trained model's maps"); ax.set_ylim(-0.2, 1.05)  # noqa: E702
            ax.set_xlabel("randomised down to layer (cascading, top → bottom)")
        axes[0].legend(fontsize=7)
        if dependence:
            ax = axes[2]
            ax.semilogy(np.arange(len(dependence["layers"])), dependence["relative_spread"], marker="o", color="k")
            ax.set_xticks(np.arange(len(dependence["layers"])))
            ax.set_xticklabels(dependence["layers"], rotation=70, fontsize=6)
            ax.set_title("the randomised model: spread of its logits across images\n(relative to the trained model)")
            ax.set_xlabel("randomised down to layer (cascading, top → bottom)")
        atomic_savefig(fig, out / "sanity.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
    if examples:
        imgs = examples.pop("_images")
        specs = list(examples)
        fig, axes = plt.subplots(len(imgs), len(specs) + 1, figsize=(2 * (len(specs) + 1), 2 * len(imgs)),
                                 squeeze=False)
        for r, im in enumerate(imgs):
            axes[r, 0].imshow(np.squeeze(im), cmap="gray" if im.shape[-1] == 1 else None)
            for c, s in enumerate(specs):
                axes[r, c + 1].imshow(examples[s][r], cmap="jet")
                if r == 0:
                    axes[r, c + 1].set_title(s, fontsize=7)
        for ax in axes.ravel():
            ax.axis("off")
        atomic_savefig(fig, out / "examples.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
