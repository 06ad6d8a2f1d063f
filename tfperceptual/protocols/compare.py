"""The comparison protocol of the paper's Sec. V-C (Tables II and III, Fig. 6).

For every attack, ε is swept over a grid; each point records the average
SSIM, the average PSNR and the fooling rate over the images.  The fooling
rate of each attack at a *matched* average SSIM (and at a matched average
PSNR) is then read off by linear interpolation between neighbouring sweep
points; a target outside an attack's swept range is reported as "not
reached" rather than extrapolated.

Fooling rate follows the paper: the attacks are run with the model's clean
predictions as labels, and the rate is the fraction of images whose
post-attack label differs from the pre-attack label.  The rate over the
images that were classified correctly before the attack is also reported, and
the *robust accuracy*: the fraction of all images whose adversarial is still
classified as the true label (the robustness figure of adversarial training;
an image misclassified before the attack counts as not robust).

Every sweep point is cached as JSON in ``<out>/cache/`` (atomically written,
keyed by attack, ε, seed and a fingerprint of model, data and settings), so an
interrupted run resumes where it stopped; an unreadable cache file is reported
and recomputed.  Attacks that draw random numbers (Foolbox's PGD) are seeded
per batch from ``seed``, so two runs with the same seed write the same
``results.json`` (wall times go to ``timings.json``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..attacks import ATTACKS, build_attack
from ..evaluation.quality import fooling_rate, global_ssim, perturbation_norms
from ..io_utils import atomic_write_json, atomic_write_text
from .presets import DEFAULT_EPS_GRIDS, PAPER_ATTACKS
from .report import compare_report, plot_fooling
from .replicas import replica_map
from .runner import (ResultCache, ZeroGradientLog, as_float, batch_slices, check_dataset, fingerprint,
                     predict_labels, supports_seed)

__all__ = ["run_sweep", "interpolate_at", "matched_table", "compare", "POINT_KEYS", "TIMING_KEYS"]

#: what a sweep point records (the cache must hold all of them)
POINT_KEYS = ("attack", "eps", "n", "mean_ssim", "mean_global_ssim", "mean_psnr", "fooling_rate",
              "fooling_rate_correct", "n_correct", "robust_accuracy", "mean_l2", "mean_linf", "mean_steps", "n_failed")
#: wall-time fields of a point: in the cache and ``timings.json``, never in ``results.json``
TIMING_KEYS = ("seconds", "images_per_second")


def _attack_point(attack, images, clean_pred, batch_size):
    """Run ``attack`` over ``images`` batch by batch (R batches at a time on the replicas of the strategy in
    scope, :func:`~.replicas.replica_map`); keep per-image statistics only (bounded memory)."""
    stats = {k: [] for k in ("ssim", "global_ssim", "psnr", "adv_labels", "l2", "linf", "steps", "failed")}
    zero = ZeroGradientLog()

    def one(sl):
        s, e = sl
        x = as_float(images[s:e])
        res = attack(x, clean_pred[s:e])
        return s, res, global_ssim(x, res.adversarial), perturbation_norms(x, res.adversarial)

    with zero.quiet():
        for s, res, gssim, norms in replica_map(one, batch_slices(len(images), batch_size),
                                                         getattr(attack, "graph_pure", False)):
            zero.add(s, res)
            for k, v in (("ssim", res.ssim), ("global_ssim", gssim), ("psnr", res.psnr),
                         ("adv_labels", res.adv_labels), ("l2", norms["l2"]), ("linf", norms["linf"]),
                         ("steps", res.steps), ("failed", res.failed)):
                stats[k].append(np.asarray(v))
    zero.report(f"{attack.name} at ε = {attack.eps:g}")
    return {k: np.concatenate(v) for k, v in stats.items()}


def _point(name, eps, st, clean_pred, labels, seconds, extra):
    fr = fooling_rate(clean_pred, st["adv_labels"], labels)
    return {"attack": name, "eps": float(eps), "n": int(len(clean_pred)),
            "mean_ssim": float(np.mean(st["ssim"])), "mean_global_ssim": float(np.mean(st["global_ssim"])),
            "mean_psnr": float(np.mean(st["psnr"])), "fooling_rate": fr["fooling_rate"],
            "fooling_rate_correct": fr["fooling_rate_correct"], "n_correct": fr["n_correct"],
            # misclassified clean = not robust, whatever the attack (run away from the clean prediction) reached
            "robust_accuracy": float(np.mean((st["adv_labels"] == np.asarray(labels))
                                             & (np.asarray(clean_pred) == np.asarray(labels)))),
            "mean_l2": float(st["l2"].mean()), "mean_linf": float(st["linf"].mean()),
            "mean_steps": float(np.mean(st["steps"])), "n_failed": int(np.sum(st["failed"])),
            "seconds": seconds, "images_per_second": len(clean_pred) / max(seconds, 1e-9), **extra}


def run_sweep(model, images, labels, attacks=None, eps_grids=None, out_dir="runs/compare",
              steps=50, batch_size=256, progress=True, pgap_solver="exact", seed=0, clean_pred=None):
    """Run each attack over its ε grid; return the list of sweep points (dicts, see :data:`POINT_KEYS`).

    Args:
        model: Keras classifier, pixels in [0, 1].
        images: (N, H, W, C) float32 in [0, 1], or uint8 in 0..255 (converted
            batch by batch, which keeps memory low for ImageNet-size data).
        labels: (N,) ground truth.
        attacks: registered attack names (default: the paper's six, :data:`~.presets.PAPER_ATTACKS`).
        eps_grids: {name: [ε, ...]}; defaults to :data:`~tfperceptual.protocols.presets.DEFAULT_EPS_GRIDS`
            (an attack without a default grid needs one here).
        out_dir: folder of the cache.
        steps: attack steps (≥ 1).
        batch_size: images per attack call; only per-image statistics are kept.
        pgap_solver: PGAP's step solver, ``"exact"`` (default) or a CVXPY
            choice (``"cvxpy"``, ``"ECOS"``, ``"CLARABEL"``); part of the cache key.
        seed: seed of the attacks that draw random numbers (``None``: unseeded, not reproducible).
        clean_pred: the model's predictions on ``images`` if already computed.

    Raises:
        ValueError / TypeError: bad images or labels, an unknown attack, an empty ε grid.
    """
    labels = check_dataset(model, images, labels)
    attacks = list(PAPER_ATTACKS if attacks is None else attacks)
    for a in attacks:
        if a not in ATTACKS:
            raise ValueError(f"unknown attack {a!r}; choose from {ATTACKS.names()}")
    grids = {a: list((eps_grids or {}).get(a) or DEFAULT_EPS_GRIDS.get(a) or []) for a in attacks}
    empty = [a for a, g in grids.items() if not g]
    if empty:
        raise ValueError(f"no ε grid for {empty}: pass eps_grids={{name: [ε, ...]}}")
    if clean_pred is None:
        clean_pred = predict_labels(model, images, batch_size)
    # the batch size is in the key: seeded attacks draw per batch, so other batches are other draws
    fp = fingerprint(model, images, {"steps": steps, "batch_size": int(batch_size)})
    cache = ResultCache(Path(out_dir) / "cache")
    points = []
    bar = tqdm(total=sum(len(g) for g in grids.values()), desc="sweep", disable=not progress, unit="pt")
    for name in attacks:
        seeded = supports_seed(ATTACKS[name]) and seed is not None
        options = {"solver": pgap_solver} if name == "pgap" else {}
        options.update({"seed": seed} if seeded else {})
        tag = f"{name}-{pgap_solver.lower()}" if name == "pgap" else name
        tag += f"-seed{seed}" if seeded else ""
        attack = None
        for eps in grids[name]:
            entry = f"{tag}_eps{eps:.6g}_{fp}.json"
            point = cache.read_json(entry, required=POINT_KEYS)
            if point is None:
                bar.set_postfix_str(f"{name} ε={eps:g}")
                if attack is None:
                    attack = build_attack(name, model, eps, steps=steps, batch_size=batch_size, **options)
                else:
                    attack.eps = eps
                t0 = time.perf_counter()
                st = _attack_point(attack, images, clean_pred, batch_size)
                extra = {"solver": pgap_solver} if name == "pgap" else {}
                point = _point(name, eps, st, clean_pred, labels, time.perf_counter() - t0, extra)
                cache.write_json(entry, point)
            points.append(point)
            bar.update(1)
    bar.close()
    return points


def interpolate_at(points, attack, key, target):
    """Fooling rate of ``attack`` at ``key`` (``"mean_ssim"`` / ``"mean_psnr"``) = ``target``.

    Linear interpolation between the two sweep points that bracket the
    target; NaN if the target lies outside the swept range.
    """
    pts = sorted((p[key], p["fooling_rate"]) for p in points if p["attack"] == attack)
    if not pts:
        return float("nan")
    xs = np.array([p[0] for p in pts])
    ys = np.array([p[1] for p in pts])
    if target < xs.min() or target > xs.max():
        return float("nan")
    return float(np.interp(target, xs, ys))


def matched_table(points, attacks, key, target):
    """{attack: fooling rate at the matched quality} (NaN where not reached)."""
    return {a: interpolate_at(points, a, key, target) for a in attacks}


def compare(model, images, labels, attacks=None, eps_grids=None, out_dir="runs/compare",
            ssim_target=0.85, psnr_target=25.0, steps=50, batch_size=256, data_name="custom",
            model_name="custom", progress=True, pgap_solver="exact", seed=0, paper=None):
    """Run the protocol and write ``results.json``, ``timings.json``, ``report.md`` and two PNG plots.

    Args:
        model, images, labels, attacks, eps_grids, steps, batch_size, pgap_solver, seed: see :func:`run_sweep`.
        out_dir: output folder.
        ssim_target, psnr_target: the matched operating points (average SSIM; average PSNR in dB).
        data_name, model_name: recorded in the settings.
        paper: the paper's table to print beside ours (an entry of
            :data:`~tfperceptual.protocols.presets.PAPER_TABLES`), only when it is comparable (the zoo model
            of the same dataset); ``None`` leaves it out.

    Returns:
        dict with ``settings``, ``points``, ``matched_ssim``, ``matched_psnr``, ``matched_global_ssim``, ``paper``
        (what ``results.json`` holds: no wall times, so the same seed gives the same file).
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    attacks = list(PAPER_ATTACKS if attacks is None else attacks)
    clean_pred = predict_labels(model, images, batch_size)
    points = run_sweep(model, images, labels, attacks, eps_grids, out, steps, batch_size, progress, pgap_solver,
                       seed, clean_pred)
    settings = {
        "data": data_name, "model": model_name, "n": int(len(images)),
        "clean_accuracy": float(np.mean(clean_pred == np.asarray(labels))),
        "attacks": attacks, "steps": steps, "ssim_target": ssim_target, "psnr_target": psnr_target,
        "pgap_solver": pgap_solver if "pgap" in attacks else None, "seed": seed,
        "eps_grids": {a: sorted(p["eps"] for p in points if p["attack"] == a) for a in attacks},
    }
    rows = {"ssim": matched_table(points, attacks, "mean_ssim", ssim_target),
            "psnr": matched_table(points, attacks, "mean_psnr", psnr_target),
            "global_ssim": matched_table(points, attacks, "mean_global_ssim", ssim_target)}
    result = {"settings": settings, "points": [{k: v for k, v in p.items() if k not in TIMING_KEYS} for p in points],
              "matched_ssim": rows["ssim"], "matched_psnr": rows["psnr"], "matched_global_ssim": rows["global_ssim"],
              "paper": paper}
    timings = {"seconds": round(time.perf_counter() - t0, 1),
               "points": [{"attack": p["attack"], "eps": p["eps"], **{k: p.get(k) for k in TIMING_KEYS}}
                          for p in points]}
    atomic_write_json(out / "results.json", result)
    atomic_write_json(out / "timings.json", timings)
    atomic_write_text(out / "report.md", compare_report(settings, points, rows, paper, timings["seconds"]))
    plot_fooling(points, attacks, "mean_ssim", ssim_target, "average SSIM", out / "fooling_vs_ssim.png", settings)
    plot_fooling(points, attacks, "mean_psnr", psnr_target, "average PSNR (dB)", out / "fooling_vs_psnr.png",
                 settings)
    return result
