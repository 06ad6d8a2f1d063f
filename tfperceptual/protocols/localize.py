"""The localisation protocol (paper's Sec. V-A/B, Table I, Fig. 3 and 5): where do perturbations land?

For each attack: choose ε by a sweep so that the attack fools (almost) every image (the paper's
"Hyper-parameter tuning": attacks compared at a common fooling rate ≈ 1), attack the images at that
ε, and compare the per-pixel noise maps (1 − local SSIM, channels combined by their maximum) with
the Grad-CAM++ region of the clean image's predicted class (CAM > 0.75). Images stream in batches and
only per-image confusion counts are kept; every attack's result is cached (atomic JSON) and a running
attack is checkpointed after each batch, so an interrupted run resumes.

The calibration images (the first ``n_calibration``) are attacked in the same batches during the
calibration and in the final run, and seeded attacks draw each batch's random numbers from the seed and
the batch itself: the final run's fooling rate on those images is the calibration's at the chosen ε.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..attacks import ATTACKS, build_attack
from ..evaluation.localization import DEFAULT_NOISE_THRESHOLDS, aggregate, noise_map, per_image_counts
from ..evaluation.quality import ssim_map
from ..explain.tfkerasvis import GradCAMPlusPlus
from ..io_utils import atomic_write_json, atomic_write_text, digest
from .presets import EPS_GRIDS_BY_DATA, LOCALIZE_TABLE_THRESHOLD, eps_unit
from .report import LOCALIZE_METRICS, localize_report, plot_localize_curves, plot_localize_panels
from .replicas import replica_map
from .runner import (ResultCache, ZeroGradientLog, as_float, batch_slices, check_dataset, fingerprint,
                     predict_labels, supports_seed)

__all__ = ["calibrate_eps", "run_localize", "default_grid", "TABLE_THRESHOLD", "METRICS"]

#: the noise threshold of Table I
TABLE_THRESHOLD = LOCALIZE_TABLE_THRESHOLD
METRICS = LOCALIZE_METRICS
_RESULT_KEYS = ("attack", "eps", "calibration", "fooling_rate", "mean_ssim", "thresholds", *METRICS, "n_empty")
_PARTIAL_KEYS = ("eps", "tried", "done", "counts", "fooled", "ssim")


def default_grid(name, data="mnist"):
    """Calibration grid: the ``compare`` grid of ``data`` extended by ×2, ×4, ×8 of its largest ε
    (fooling rate ≈ 1 needs larger budgets than the matched-quality tables); SSIM radii stay < 1."""
    base = list(EPS_GRIDS_BY_DATA.get(data, EPS_GRIDS_BY_DATA["mnist"])[name])
    grid = base + [base[-1] * f for f in (2, 4, 8)]
    if name in ("fpgap", "pgap"):
        grid = [e for e in grid if e < 0.95]
    return sorted(set(round(e, 6) for e in grid))


def calibrate_eps(attack, images, labels, grid, target=0.99, batch_size=64, refine=0):
    """Smallest ε at which ``attack`` fools ≥ ``target`` of ``images``: a sweep of ``grid``, then
    ``refine`` geometric bisections between the last ε that fell short and the first that reached it.

    If the smallest grid value already reaches the target, ε is halved (at most ``refine`` times)
    until it falls short, and the bracket is refined from there.  Images are attacked in the batches of
    :func:`~tfperceptual.protocols.runner.batch_slices` (``len(images)``, ``batch_size``).

    Args:
        attack: an attack object with a settable ``eps`` (PGAP, FPGAP, FoolboxAttack).
        images: (N, H, W, C) float in [0, 1] (or uint8); labels: (N,) the clean predictions.
        grid: candidate ε values (any order; swept ascending).
        target: fooling rate to reach, in (0, 1].
        refine: bisection steps (each halves the bracket's log-width; 3 → within 2^(1/8) ≈ 9 %
            of the smallest passing ε when the grid spacing is ×2).

    Returns:
        (ε, fooling rate at ε, list of (ε, fooling rate) tried, in order). If no ε of the grid reaches
        the target the largest is returned with its rate (the report says so). Fooling rates need
        not be monotone in ε (FGSM's are not); the bisection assumes they are and the rate reported
        is the one measured at the returned ε.
    """
    tried = []
    slices = batch_slices(len(images), batch_size)

    def rate_at(eps):
        attack.eps = eps

        def fooled_in(sl):
            s, e = sl
            return attack(as_float(images[s:e]), labels[s:e]).adv_labels != labels[s:e]

        with ZeroGradientLog.quiet():  # the final run reports the images the attack cannot move, once
            fooled = list(replica_map(fooled_in, slices, getattr(attack, "graph_pure", False)))
        r = float(np.mean(np.concatenate(fooled)))
        tried.append((float(eps), r))
        return r

    grid = sorted(float(e) for e in grid)
    lo, hi = None, None
    for k, eps in enumerate(grid):
        r = rate_at(eps)
        if r >= target:
            hi = (eps, r)
            lo = grid[k - 1] if k > 0 else None
            break
    if hi is None:
        return tried[-1][0], tried[-1][1], tried
    for _ in range(refine if lo is None else 0):  # the first grid point passed: look below it
        eps = hi[0] / 2
        r = rate_at(eps)
        if r < target:
            lo = eps
            break
        hi = (eps, r)
    if lo is not None:
        for _ in range(refine):
            eps = float(np.sqrt(lo * hi[0]))
            r = rate_at(eps)
            if r >= target:
                hi = (eps, r)
            else:
                lo = eps
    return hi[0], hi[1], tried


@dataclass
class _Run:
    """What one localisation run shares across its attacks."""

    model: object
    images: object
    clean: np.ndarray
    cams: np.ndarray
    cache: ResultCache
    fp: str
    data_name: str
    thresholds: list
    cam_threshold: float
    target_fooling: float
    n_calibration: int
    refine: int
    steps: int
    batch_size: int
    seed: int | None
    n_panels: int
    progress: bool


def _build(run, name, eps0):
    options = {"seed": run.seed} if run.seed is not None and supports_seed(ATTACKS[name]) else {}
    return build_attack(name, run.model, eps0, steps=run.steps, batch_size=run.batch_size, **options)


def _localize_attack(run, name, fixed, grid):
    """Calibrate (or take ``fixed``) ε for one attack, attack every image and count; resumes from its
    checkpoint. Returns (result dict, panel tuple or None)."""
    # the entry records how ε was chosen: a fixed ε, or the calibration grid (a run with another choice is
    # another result)
    key = digest(run.fp, None if fixed is None else float(fixed), None if fixed is not None else list(grid))
    entry, partial = f"{name}_{key}.json", f"{name}_{key}.partial.npz"
    cached = run.cache.read_json(entry, required=_RESULT_KEYS)
    if cached is not None:
        return cached, None
    attack = _build(run, name, fixed if fixed is not None else grid[0])
    state = run.cache.read_npz(partial, required=_PARTIAL_KEYS) or {}
    if state:
        eps_a, tried = float(state["eps"]), json.loads(str(state["tried"]))
    elif fixed is not None:
        eps_a, tried = float(fixed), []
    else:
        n_cal = min(run.n_calibration, len(run.images))
        eps_a, _, tried = calibrate_eps(attack, run.images[:n_cal], run.clean[:n_cal], grid, run.target_fooling,
                                        run.batch_size, run.refine)
    attack.eps = eps_a
    counts = [state["counts"]] if state else []
    fooled = [state["fooled"]] if state else []
    ssim_mean = [state["ssim"]] if state else []
    panel = (state["panel_x"], state["panel_adv"], state["panel_s"], state["panel_pred"]) \
        if state and "panel_pred" in state else None
    start = int(state["done"]) if state else 0
    slices = [(s, e) for s, e in batch_slices(len(run.images), run.batch_size, (run.n_calibration,)) if s >= start]
    zero = ZeroGradientLog()

    def one(sl):
        s, e = sl
        x = as_float(run.images[s:e])
        res = attack(x, run.clean[s:e])
        smap = ssim_map(x, res.adversarial)
        return s, e, x, res, smap, per_image_counts(noise_map(smap), run.cams[s:e], run.thresholds, run.cam_threshold)

    bar = tqdm(total=len(slices), desc=name, leave=False, disable=not run.progress)
    with zero.quiet():
        for s, e, x, res, smap, batch_counts in replica_map(one, slices, getattr(attack, "graph_pure", False)):
            zero.add(s, res)
            counts.append(batch_counts)
            fooled.append(res.adv_labels != run.clean[s:e])
            ssim_mean.append(res.ssim)
            if s == 0:
                k = run.n_panels
                panel = (x[:k], res.adversarial[:k], smap[:k], res.adv_labels[:k])
            extra = ({"panel_x": panel[0], "panel_adv": panel[1], "panel_s": panel[2], "panel_pred": panel[3]}
                     if panel is not None else {})
            run.cache.write_npz(partial, eps=eps_a, tried=json.dumps(tried), done=e, counts=np.concatenate(counts),
                                fooled=np.concatenate(fooled), ssim=np.concatenate(ssim_mean), **extra)
            bar.update(1)
    bar.close()
    zero.report(f"{name} at ε = {eps_a:g}")
    fooled = np.concatenate(fooled)
    metrics = aggregate(np.concatenate(counts), run.thresholds)
    n_cal = min(run.n_calibration, len(run.images))
    at_eps = [r for e, r in tried if e == eps_a]
    result = {"attack": name, "eps": eps_a, "eps_unit": eps_unit(name), "calibration": tried,
              "calibration_rate": at_eps[-1] if at_eps else None,
              "fooling_rate_calibration_images": float(np.mean(fooled[:n_cal])),
              "fooling_rate": float(np.mean(fooled)), "mean_ssim": float(np.mean(np.concatenate(ssim_mean))),
              **{k: np.asarray(v).tolist() for k, v in metrics.items()}}
    run.cache.write_json(entry, result)
    run.cache.remove(partial)
    return result, panel


def run_localize(model, images, labels=None, attacks=("fpgap", "pgap", "fgsm", "fgm", "pgd", "pgd_l2"),
                 eps=None, eps_grids=None, target_fooling=0.99, n_calibration=100, steps=50, refine=3,
                 thresholds=DEFAULT_NOISE_THRESHOLDS, cam_threshold=0.75, batch_size=32, out_dir="runs/localize",
                 n_panels=4, data_name="custom", model_name="custom", progress=True, seed=0, paper=False,
                 class_names=None):
    """Run the protocol and write ``results.json``, ``report.md``, ``metrics_vs_threshold.png`` and panels.

    Args:
        model: Keras classifier taking pixels in [0, 1].
        images: (N, H, W, C) float in [0, 1] or uint8; labels: (N,) ground truth (optional, reported).
        attacks: registered attack names.
        eps: {attack: ε} fixed budgets (skips the calibration for those attacks).
        eps_grids: {attack: [ε, ...]} calibration grids (ascending sweep until ``target_fooling``).
        n_calibration: images used to calibrate ε (the first ones), ≥ 1.
        refine: bisection steps of the calibration after the grid sweep (:func:`calibrate_eps`).
        thresholds: noise thresholds of the curves; Table I is read at 0.11.
        cam_threshold: CAM region threshold (0.75).
        seed: seed of the attacks that draw random numbers (``None``: unseeded).
        paper: print the paper's Table I beside ours (only for the zoo ImageNet model).
        class_names: names of the classes, for the panels.

    Returns:
        dict with ``settings`` and, per attack, ``eps``, ``fooling_rate`` and the metric arrays.

    Raises:
        ValueError / TypeError: bad images or labels, an unknown attack, bad options.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    for a in attacks:
        if a not in ATTACKS:
            raise ValueError(f"unknown attack {a!r}; choose from {ATTACKS.names()}")
    if not 0.0 < float(target_fooling) <= 1.0:
        raise ValueError(f"target_fooling must lie in (0, 1], got {target_fooling}")
    if int(n_calibration) < 1:
        raise ValueError(f"n_calibration must be ≥ 1, got {n_calibration}")
    if labels is not None:
        check_dataset(model, images, labels)
    thresholds = sorted({float(t) for t in thresholds} | {TABLE_THRESHOLD})
    clean = predict_labels(model, images, batch_size)
    cam = GradCAMPlusPlus(model)  # one tf-keras-vis visualiser for the whole run
    cams = np.concatenate([cam.maps(as_float(images[s:e]), clean[s:e])
                           for s, e in batch_slices(len(images), batch_size)])
    settings_key = {"steps": steps, "thresholds": thresholds, "cam": cam_threshold, "target": target_fooling,
                    "n_cal": n_calibration, "refine": refine, "seed": seed, "batch_size": batch_size}
    run = _Run(model, images, clean, cams, ResultCache(out / "cache"), fingerprint(model, images, settings_key),
               data_name, thresholds, float(cam_threshold), float(target_fooling), int(n_calibration), int(refine),
               steps, batch_size, seed, n_panels, progress)
    results, panels = {}, {}
    for name in tqdm(list(attacks), desc="localize", disable=not progress):
        grid = (eps_grids or {}).get(name) or default_grid(name, data_name)
        results[name], panel = _localize_attack(run, name, (eps or {}).get(name), grid)
        if panel is not None:
            panels[name] = panel
    settings = {"data": data_name, "model": model_name, "n": int(len(images)), "attacks": list(attacks),
                "steps": steps, "target_fooling": target_fooling, "n_calibration": n_calibration, "refine": refine,
                "seed": seed, "batch_size": batch_size, "cam_threshold": cam_threshold,
                "table_threshold": TABLE_THRESHOLD,
                "noise_map": "1 − local SSIM (Gaussian σ = 1.5), maximum over colour channels",
                "seconds": round(time.perf_counter() - t0, 1)}
    if labels is not None:
        settings["clean_accuracy"] = float(np.mean(clean == np.asarray(labels)))
    summary = {"settings": settings, "attacks": results}
    atomic_write_json(out / "results.json", summary)
    atomic_write_text(out / "report.md", localize_report(settings, results, thresholds, paper=paper))
    plot_localize_curves(results, out / "metrics_vs_threshold.png")
    for name, (x, adv, s, pred) in panels.items():
        plot_localize_panels(x, adv, s, cams[:len(x)], name, out / f"panels_{name}.png", clean[:len(x)], pred,
                             class_names)
    return summary
