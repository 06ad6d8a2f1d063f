"""Run the saliency benchmarks (:mod:`tfperceptual.evaluation.saliency_metrics`) for several explainers on
one dataset, streamed in batches, with every batch's per-image results cached (atomic ``.npz``) so that an
interrupted run resumes; writes ``results.json``, ``report.md`` and figures.

Methods are written ``NAME[@SIGMA]`` with NAME a registered explainer
(:data:`tfperceptual.explain.EXPLAINERS`): ``perceptual_ball`` (Elliott et al., unguided),
``perceptual_ball_guided``, ``noper`` (λ′ = 0, Eq. 4), or a tf-keras-vis baseline (``saliency``,
``smoothgrad``, ``gradcam``, ``gradcam++``, ``scorecam``); ``@σ`` blurs the map by a Gaussian of σ pixels
after normalising it to [0, 1] (``perceptual_ball@0`` and ``perceptual_ball@5`` are the two rows of the
paper's Table 2).  The perturbation of a perceptual-ball method is computed once per image and shared by
its σ variants and by the guided variant.  Every method explains the ground-truth class (the class of the
boxes).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..evaluation import saliency_metrics as sm
from ..explain import EXPLAINERS, GuidedPerceptualBall, NoPer, PerceptualBall, build_explainer, guided_saliency
from ..image_ops import blur_saliency
from ..io_utils import atomic_write_json, atomic_write_text, digest, read_json, weights_digest
from ..validation import check_positive_int
from .presets import BENCHMARKS, BOX_BENCHMARKS
from .report import benchmark_report, plot_benchmark
from .replicas import num_replicas, replica_map
from .runner import ResultCache, as_float, batch_slices, supports_seed, takes_option

__all__ = ["run_benchmarks", "parse_methods", "paired_differences", "PB_METHODS", "BENCHMARKS", "METHOD_NAMES"]

PB_METHODS = ("perceptual_ball", "perceptual_ball_guided", "noper")
#: the methods a benchmark can run (registered explainers)
METHOD_NAMES = tuple(EXPLAINERS)


def parse_methods(text):
    """'perceptual_ball@0,perceptual_ball@5,gradcam' → [("perceptual_ball", 0.0), …] (σ default 0).

    Raises:
        ValueError: an unknown method or a bad σ.
    """
    out = []
    for item in [t.strip() for t in text.split(",") if t.strip()]:
        name, _, sigma = item.partition("@")
        if name not in EXPLAINERS:
            raise ValueError(f"unknown method {name!r}; choose from {METHOD_NAMES}")
        try:
            s = float(sigma) if sigma else 0.0
        except ValueError:
            s = float("nan")
        if not np.isfinite(s) or s < 0:
            raise ValueError(f"bad σ in {item!r}: expected NAME@σ with σ ≥ 0 pixels")
        out.append((name, s))
    if not out:
        raise ValueError("no method given")
    return out


def _spec(name, sigma):
    return f"{name}@{sigma:g}"


def _base(name):
    """The method whose raw maps a method uses: the guided ball shares the unguided ball's perturbation."""
    cls = EXPLAINERS[name]
    return "perceptual_ball" if isinstance(cls, type) and issubclass(cls, GuidedPerceptualBall) else name


def _jsonable(pb_kwargs):
    """The perceptual ball's arguments with ranges/tuples as lists (for JSON settings and cache keys)."""
    return {k: (list(v) if isinstance(v, (range, tuple)) else v) for k, v in pb_kwargs.items()}


class _RawMaps:
    """Raw (unblurred, unnormalised) maps of the base methods for one batch, by explainers built once from
    the registry; options are given by what each explainer class is and takes, not by its name."""

    def __init__(self, model, pb_kwargs, scorecam_max_n, seed):
        self.model, self.pb_kwargs, self.scorecam_max_n, self.seed = model, pb_kwargs, scorecam_max_n, seed
        self._explainers = {}

    def options(self, base):
        """The explainer's options (also what its cached maps depend on)."""
        cls = EXPLAINERS[base]
        opts = {}
        if isinstance(cls, type) and issubclass(cls, PerceptualBall):
            # the raw map is the unblurred, unguided perturbation size: σ and guiding are the runner's
            opts = {k: v for k, v in self.pb_kwargs.items() if k not in ("sigma", "guided")}
            if issubclass(cls, NoPer):  # λ′ = 0 and no layers whatever is passed: not part of its key
                opts = {k: v for k, v in opts.items() if k not in ("layers", "lambda_perceptual")}
        if takes_option(cls, "max_N"):
            opts["max_N"] = self.scorecam_max_n
        if supports_seed(cls):
            opts["seed"] = self.seed
        if takes_option(cls, "mode"):  # counterfactuals: explain the benchmark's label (its default budget)
            opts["mode"] = "label"
        return opts

    def graph_pure(self, base):
        """Whether the base method's explainer may run on several replicas at once (built here, in the caller's
        thread)."""
        return getattr(self.explainer(base), "graph_pure", False)

    def explainer(self, base):
        if base not in self._explainers:
            self._explainers[base] = build_explainer(base, self.model, **self.options(base))
        return self._explainers[base]

    def compute(self, base, x, y):
        """{"map": (B, H, W)}; for perturbation methods their margins, and for the perceptual ball "grad" (the
        guided variant's guide, :meth:`~tfperceptual.explain.PerceptualBall.input_gradient_map`)."""
        e = self.explainer(base)
        ex = e.explain(x, y, sigma=0.0, guided=False) if isinstance(e, PerceptualBall) else e.explain(x, y)
        out = {"map": ex.saliency}
        if ex.margin is not None:
            out.update(margin=ex.margin, initial_margin=ex.initial_margin)
        if type(e) is PerceptualBall:
            out["grad"] = e.input_gradient_map(x, y)
        return out


def _final_map(raw, name, sigma):
    """Normalise to [0, 1] and blur by σ; the guided variant: :func:`~tfperceptual.explain.guided_saliency`."""
    base = _base(name)
    if base != name:
        return guided_saliency(raw[base]["map"], raw[base]["grad"], sigma)
    m = sm.normalise_maps(raw[name]["map"])
    return (np.asarray(blur_saliency(m, sigma)) if sigma > 0 else m).astype(np.float32)


def _localisation(maps, boxes, loc_benchmarks):
    """Weak-localisation successes (``wl_<strategy>``, (B, A) bool) and pointing hits (``pointing``, (B,))."""
    res = {}
    if "weak_localisation" in loc_benchmarks:
        for strat, ok in sm.weak_localisation_success(maps, boxes).items():
            res[f"wl_{strat}"] = ok
    if "pointing_game" in loc_benchmarks:
        res["pointing"] = sm.pointing_game(maps, boxes)
    return res


class _Benchmark:
    """One benchmark run: settings, cache keys and the per-batch work (see :func:`run_benchmarks`)."""

    def __init__(self, model, methods, benchmarks, pb_kwargs, n_steps, insertion_blur, scorecam_max_n, seed, out):
        self.model, self.methods, self.out = model, list(methods), Path(out)
        self.cache = ResultCache(self.out / "cache")
        self.batch_benchmarks = [b for b in benchmarks if b != "sanity"]
        self.loc_benchmarks = [b for b in self.batch_benchmarks if b in BOX_BENCHMARKS]
        self.n_steps, self.insertion_blur = n_steps, insertion_blur
        self.raw_maps = _RawMaps(model, pb_kwargs, scorecam_max_n, seed)
        self.bases = sorted({_base(n) for n, _ in methods})
        # cache keys: model weights, what a result depends on (and nothing else), then each batch's own
        # pixels and labels — a run over more images reuses every batch already done, and changing one
        # method's settings recomputes only that method
        self.mdig = weights_digest(model, length=64)
        self.base_settings = {b: {"method": b, **_jsonable(self.raw_maps.options(b))} for b in self.bases}
        self.seconds = {b: 0.0 for b in self.bases}
        self.metric_seconds = 0.0

    def metric_settings(self, name, sigma):
        st = {"raw": self.base_settings[_base(name)], "map": _spec(name, sigma),
              "benchmarks": sorted(self.batch_benchmarks)}
        if "deletion_insertion" in self.batch_benchmarks:
            st["n_steps"] = int(self.n_steps)
            if self.insertion_blur != "gaussian":  # only when not the default: earlier caches keep their keys
                st["insertion_blur"] = self.insertion_blur
        return st

    def key(self, settings, bdig):
        return digest(self.mdig, settings, bdig)

    def raw(self, x, y, bdig, bases):
        """The raw maps of ``bases`` for one batch (from the cache, or computed and cached) and their seconds."""
        raw, seconds = {}, {}
        for base in bases:
            entry = f"{base}_{self.key(self.base_settings[base], bdig)}.npz"
            cached = self.cache.read_npz(entry, required=("map", "seconds"))
            if cached is not None:
                seconds[base] = float(cached.pop("seconds"))
                raw[base] = cached
                continue
            ts = time.perf_counter()
            raw[base] = self.raw_maps.compute(base, x, y)
            seconds[base] = time.perf_counter() - ts
            self.cache.write_npz(entry, seconds=seconds[base], **{k: np.asarray(v) for k, v in raw[base].items()})
        return raw, seconds

    def boxes_digest(self, boxes):
        """The digest a batch's localisation results record (``None`` without boxes or localisation)."""
        if boxes is None or not self.loc_benchmarks:
            return None
        return digest(*[np.asarray(b, np.float64).reshape(-1, 4) for b in boxes])

    def metrics(self, x, y, boxes, bxd, raw, name, sigma, bdig):
        """One method's per-image metrics of one batch, and its final map if it was computed."""
        # localisation depends on the boxes, which the key leaves out (a box fix must not redo
        # deletion/insertion, the costly part): the file records the boxes' digest ``bxd``, and localisation
        # is redone when it differs or is missing
        entry = f"metrics_{_spec(name, sigma)}_{self.key(self.metric_settings(name, sigma), bdig)}.npz"
        cached = self.cache.read_npz(entry, required=("seconds",))
        m = None
        if cached is not None:
            dt = float(cached.pop("seconds"))
            old = cached.pop("boxes_digest", None)
            res = cached
            if bxd is not None and (old is None or str(old) != bxd):
                m = _final_map(raw, name, sigma)
                res.update(_localisation(m, boxes, self.loc_benchmarks))
                self.cache.write_npz(entry, seconds=dt, boxes_digest=bxd, **res)
        else:
            ts = time.perf_counter()
            m = _final_map(raw, name, sigma)
            res = {}
            if "deletion_insertion" in self.batch_benchmarks:
                r = sm.deletion_insertion(self.model, x, y, m, n_steps=self.n_steps, insertion_blur=self.insertion_blur)
                res.update({k: r[k] for k in ("deletion", "insertion", "deletion_curve", "insertion_curve")})
            res.update(_localisation(m, boxes, self.loc_benchmarks))
            dt = time.perf_counter() - ts
            self.cache.write_npz(entry, seconds=dt, **({"boxes_digest": bxd} if bxd is not None else {}), **res)
        return res, m, dt


def _summarise(per_image):
    """Per-method summaries (means, curves, grid-searched weak localisation) and per-image records."""
    results = {}
    for spec, parts in per_image.items():
        if not parts:
            continue
        cat = {k: np.concatenate(v) for k, v in parts.items()}
        r, per = {}, {}
        if "deletion" in cat:
            r.update(deletion_auc=float(cat["deletion"].mean()), insertion_auc=float(cat["insertion"].mean()),
                     deletion_curve=cat["deletion_curve"].mean(0), insertion_curve=cat["insertion_curve"].mean(0))
        wl = {k[3:]: v for k, v in cat.items() if k.startswith("wl_")}
        if wl:
            r["weak_localisation"] = sm.weak_localisation(success=wl)
            best = r["weak_localisation"]["best"]
            j = int(np.argmin(np.abs(sm.threshold_grids()[best["strategy"]] - best["alpha"])))
            per["weak_localisation_success"] = wl[best["strategy"]][:, j].astype(int).tolist()
        if "pointing" in cat:
            r["pointing_accuracy"] = float(cat["pointing"].mean())
            per["pointing"] = cat["pointing"].astype(int).tolist()
        if "deletion" in cat:
            per.update(deletion=np.round(cat["deletion"], 6).tolist(), insertion=np.round(cat["insertion"], 6).tolist())
        r["per_image"] = per
        results[spec] = r
    return results


def run_benchmarks(model, images, labels, boxes=None, methods=(("perceptual_ball", 0.0),), benchmarks=BENCHMARKS,
                   pb_kwargs=None, n_steps=50, insertion_blur="gaussian", batch_size=16, sanity_n=4,
                   sanity_checkpoints=None, scorecam_max_n=None, out_dir="runs/benchmark", data_name="custom",
                   model_name="custom", progress=True, seed=0, paper=False):
    """Run ``benchmarks`` for ``methods`` on ``images`` and write the report.

    Args:
        model: Keras classifier taking pixels in [0, 1].
        images: (N, H, W, C) float in [0, 1] or uint8; labels: (N,) classes explained.
        boxes: list of (K_i, 4) boxes (needed by weak localisation and the pointing game).
        methods: list of (name, σ), see :func:`parse_methods`.
        benchmarks: subset of :data:`~tfperceptual.protocols.presets.BENCHMARKS`.
        pb_kwargs: :class:`tfperceptual.explain.PerceptualBall` arguments (layers, λ′, steps, …).
        n_steps: deletion/insertion curve steps.
        insertion_blur: insertion's substrate, ``"gaussian"`` (σ = 5) or ``"rise"`` (RISE's 11 × 11 kernel),
            see :func:`tfperceptual.evaluation.deletion_insertion`.
        batch_size: images per streamed (cached) batch.
        sanity_n: images of the cascading-randomisation check (the first ones); sanity_checkpoints:
            layer names recorded (default: every layer with weights).
        scorecam_max_n: Score-CAM channels (``None``: all).
        seed: seed of SmoothGrad's noise and of the sanity check's re-initialisation.
        paper: print the paper's numbers beside ours (only for the zoo ImageNet model).

    Returns:
        the summary dict written to ``results.json``.

    Raises:
        ValueError: an unknown benchmark or insertion blur, localisation without boxes, bad sizes.
    """
    for b in benchmarks:
        if b not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {b!r}; choose from {BENCHMARKS}")
    if any(b in BOX_BENCHMARKS for b in benchmarks) and boxes is None:
        raise ValueError("weak localisation and the pointing game need ground-truth boxes")
    if insertion_blur not in sm.INSERTION_BLURS:
        raise ValueError(f"insertion_blur must be one of {sm.INSERTION_BLURS}, got {insertion_blur!r}")
    batch_size = check_positive_int(batch_size, "batch_size")
    labels = np.asarray(labels)
    t0 = time.perf_counter()
    pb_kwargs = dict(pb_kwargs or {})
    bench = _Benchmark(model, methods, benchmarks, pb_kwargs, n_steps, insertion_blur, scorecam_max_n, seed, out_dir)
    specs = [_spec(n, s) for n, s in methods]
    per_image = {s: {} for s in specs}
    examples = {}
    slices = batch_slices(len(images), batch_size) if bench.batch_benchmarks else []  # sanity only: no batch loop
    # R batches at a time on the replicas of the strategy in scope: the graph-pure explainers (perceptual ball,
    # counterfactuals) and the metrics concurrently, the tf-keras-vis explainers one batch after the other
    parallel = [b for b in bench.bases if bench.raw_maps.graph_pure(b)]
    serial = [b for b in bench.bases if b not in parallel]
    r = num_replicas()
    bar = tqdm(total=len(slices), desc="benchmark", disable=not progress)
    for g in range(0, len(slices), r):
        group = []
        for s, e in slices[g:g + r]:
            x, y = as_float(images[s:e]), labels[s:e]
            bx = None if boxes is None else boxes[s:e]
            group.append((s, x, y, bx, bench.boxes_digest(bx),
                          digest(np.ascontiguousarray(x, np.float32), np.asarray(y, np.int64), length=64)))
        raws = list(replica_map(lambda b: bench.raw(b[1], b[2], b[5], parallel), group))
        for (raw, secs), b in zip(raws, group):
            more, more_secs = bench.raw(b[1], b[2], b[5], serial)
            raw.update(more)
            secs.update(more_secs)
            for base, dt in secs.items():
                bench.seconds[base] += dt

        def batch_metrics(k):
            (_, x, y, bx, bxd, bdig), raw = group[k], raws[k][0]
            return [bench.metrics(x, y, bx, bxd, raw, name, sigma, bdig) for name, sigma in methods]

        for k, per_method in enumerate(replica_map(batch_metrics, range(len(group)))):
            s, x, raw = group[k][0], group[k][1], raws[k][0]
            for (name, sigma), spec, (res, m, dt) in zip(methods, specs, per_method):
                bench.metric_seconds += dt
                for key, v in res.items():
                    per_image[spec].setdefault(key, []).append(v)
                if s == 0:
                    examples[spec] = (_final_map(raw, name, sigma) if m is None else m)[:4]
            if s == 0:
                examples["_images"] = x[:4]
            bar.update(1)
    bar.close()
    results = _summarise(per_image)
    paired = paired_differences(results)
    sanity = dependence = None
    if "sanity" in benchmarks:
        xs, ys = as_float(images[:sanity_n]), labels[:sanity_n]
        sanity = _run_sanity(bench, xs, ys, sanity_checkpoints, seed, progress)
        if len(xs) >= 2:  # the randomised models' own dependence on the input (cheap)
            d = sm.cascade_input_dependence(model, xs, sanity_checkpoints, seed=seed)
            dependence = {"layers": d["layers"], "relative_spread": d["relative_spread"].tolist()}
    n = len(images)
    settings = {"data": data_name, "model": model_name, "n": int(n), "methods": specs, "benchmarks": list(benchmarks),
                "perceptual_ball": _jsonable(pb_kwargs), "n_steps": n_steps, "insertion_blur": insertion_blur,
                "sanity_n": sanity_n, "scorecam_max_n": scorecam_max_n, "seed": seed, "batch_size": batch_size,
                "seconds": round(time.perf_counter() - t0, 1),
                "seconds_per_image": {**{b: bench.seconds[b] / max(n, 1) for b in bench.bases},
                                      "metrics": bench.metric_seconds / max(n, 1)}}
    summary = {"settings": settings, "methods": results, "paired": paired, "sanity": sanity,
               "sanity_input_dependence": dependence}
    out = Path(out_dir)
    atomic_write_json(out / "results.json", summary)
    atomic_write_text(out / "report.md", benchmark_report(settings, results, sanity, paper=paper, paired=paired,
                                                          dependence=dependence))
    plot_benchmark(results, sanity, examples, out, dependence)
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


_SANITY_KEYS = ("layers", "spearman", "spearman_abs", "ssim")


def _load_sanity(path):
    """A cached sanity result (``None`` if unusable); the JSON writer stores NaN (a constant map's Spearman) as
    null: back to NaN."""
    r = read_json(path, required=_SANITY_KEYS)
    if r is None:
        return None
    for k in ("spearman", "spearman_abs", "ssim"):
        r[k] = [[float("nan") if v is None else v for v in row] for row in r[k]]
    return r


def _run_sanity(bench, x, labels, checkpoints, seed, progress):
    res = {}
    once = {}
    for name, sigma in bench.methods:  # one σ per method (the first listed): the check costs a full cascade each
        once.setdefault(name, sigma)
    bdig = digest(np.ascontiguousarray(x, np.float32), np.asarray(labels, np.int64), length=64)
    for name, sigma in once.items():
        spec = _spec(name, sigma)
        base = _base(name)
        st = {"raw": bench.base_settings[base], "map": spec, "checkpoints": checkpoints, "seed": seed}
        entry = f"sanity_{spec}_{bench.key(st, bdig)}.json"
        cached = _load_sanity(bench.cache.path(entry))
        if cached is not None:
            res[spec] = cached
            continue

        def make(m, name=name, sigma=sigma, base=base):
            rm = _RawMaps(m, bench.raw_maps.pb_kwargs, bench.raw_maps.scorecam_max_n, bench.raw_maps.seed)
            return lambda im, lab: _final_map({base: rm.compute(base, im, lab)}, name, sigma)

        r = sm.cascading_randomization(bench.model, make, x, labels, checkpoints=checkpoints, seed=seed,
                                       progress=progress)
        res[spec] = {"layers": r["layers"], **{k: np.asarray(r[k]).tolist() for k in ("spearman", "spearman_abs", "ssim")}}
        bench.cache.write_json(entry, res[spec])
    return res
