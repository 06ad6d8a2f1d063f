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
images that were classified correctly before the attack is also reported.

Every sweep point is cached as JSON in ``<out>/cache/`` (atomically written,
keyed by attack, ε and a fingerprint of model, data and settings), so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from .io_utils import atomic_savefig, atomic_write_json, atomic_write_text
from .metrics import fooling_rate, global_ssim, perturbation_norms
from .registry import ATTACK_NAMES, DEFAULT_EPS_GRIDS, EPS_UNITS, build_attack

__all__ = ["run_sweep", "interpolate_at", "matched_table", "compare", "PAPER_TABLES"]

#: the paper's rows of Table II (fooling rate at the matched average SSIM) and the operating
#: points of Tables II/III (average SSIM, average PSNR in dB)
PAPER_TABLES = {
    "mnist": {"ssim_target": 0.85, "psnr_target": 25.0,
              "ssim": {"fgsm": 0.056, "fgm": 0.300, "pgd": 0.066, "pgd_l2": 0.189, "fpgap": 0.995}},
    "cifar10": {"ssim_target": 0.998, "psnr_target": 57.0,
                "ssim": {"fgsm": 0.589, "fgm": 0.568, "pgd": 0.761, "pgd_l2": 0.847, "fpgap": 1.0}},
    "imagenet": {"ssim_target": 0.998, "psnr_target": 65.0,
                 "ssim": {"fgsm": 0.827, "fgm": 0.790, "pgd": 0.923, "pgd_l2": 0.976, "fpgap": 1.0}},
}


def _fingerprint(model, images, settings):
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _as_float(batch):
    """uint8 (0..255) or float batch → float32 in [0, 1]."""
    batch = np.asarray(batch)
    return batch.astype(np.float32) / 255.0 if batch.dtype == np.uint8 else batch.astype(np.float32, copy=False)


def _predict(model, images, batch_size):
    import tensorflow as tf

    out = [np.argmax(model(tf.constant(_as_float(images[i:i + batch_size])), training=False).numpy(), -1)
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out)


def _attack_point(attack, images, clean_pred, labels, batch_size):
    """Run ``attack`` over ``images`` batch by batch; keep per-image statistics only (bounded memory)."""
    stats = {k: [] for k in ("ssim", "global_ssim", "psnr", "adv_labels", "l2", "linf", "steps", "failed")}
    for i in range(0, len(images), batch_size):
        x = _as_float(images[i:i + batch_size])
        res = attack(x, clean_pred[i:i + batch_size])
        norms = perturbation_norms(x, res.adversarial)
        for k, v in (("ssim", res.ssim), ("global_ssim", global_ssim(x, res.adversarial)), ("psnr", res.psnr),
                     ("adv_labels", res.adv_labels), ("l2", norms["l2"]), ("linf", norms["linf"]),
                     ("steps", res.steps), ("failed", res.failed)):
            stats[k].append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in stats.items()}


def run_sweep(model, images, labels, attacks=ATTACK_NAMES, eps_grids=None, out_dir="runs/compare",
              steps=50, batch_size=256, progress=True, pgap_solver="exact"):
    """Run each attack over its ε grid; return the list of sweep points (dicts).

    Args:
        model: Keras classifier, pixels in [0, 1].
        images: (N, H, W, C) float32 in [0, 1], or uint8 in 0..255 (converted
            batch by batch, which keeps memory low for ImageNet-size data).
        labels: (N,) ground truth.
        attacks: names from :data:`tfperceptual.registry.ATTACK_NAMES`.
        eps_grids: {name: [ε, ...]}; defaults to :data:`DEFAULT_EPS_GRIDS`.
        out_dir: folder of the cache.
        batch_size: images per attack call; only per-image statistics are kept.
        pgap_solver: PGAP's step solver, ``"exact"`` (default) or a CVXPY
            choice (``"cvxpy"``, ``"ECOS"``, ``"CLARABEL"``); part of the cache key.
    """
    from tqdm.auto import tqdm

    from .model_adapter import as_logits_model
    from .validation import check_images, check_labels

    logits_model = as_logits_model(model)
    for i in range(0, len(images), 4096):  # validate without converting everything at once
        check_images(_as_float(images[i:i + 4096]), "images")
    labels = check_labels(labels, len(images), logits_model.num_classes)
    for a in attacks:
        if a not in ATTACK_NAMES:
            raise ValueError(f"unknown attack {a!r}; choose from {ATTACK_NAMES}")
    grids = {a: list((eps_grids or {}).get(a, DEFAULT_EPS_GRIDS[a])) for a in attacks}
    clean_pred = _predict(logits_model, images, batch_size)
    fp = _fingerprint(logits_model, images, {"steps": steps})
    cache = Path(out_dir) / "cache"
    points = []
    total = sum(len(g) for g in grids.values())
    bar = tqdm(total=total, desc="sweep", disable=not progress, unit="pt")
    for name in attacks:
        attack = None
        for eps in grids[name]:
            tag = f"{name}-{pgap_solver.lower()}" if name == "pgap" else name
            path = cache / f"{tag}_eps{eps:.6g}_{fp}.json"
            if path.exists():
                points.append(json.loads(path.read_text()))
                bar.update(1)
                continue
            bar.set_postfix_str(f"{name} ε={eps:g}")
            if attack is None:
                extra = {"solver": pgap_solver} if name == "pgap" else {}
                attack = build_attack(name, model, eps, steps=steps, batch_size=batch_size, **extra)
            else:
                attack.eps = eps
            t0 = time.perf_counter()
            st = _attack_point(attack, images, clean_pred, labels, batch_size)
            seconds = time.perf_counter() - t0
            fr = fooling_rate(clean_pred, st["adv_labels"], labels)
            point = {
                "attack": name, "eps": float(eps), "n": int(len(images)),
                "mean_ssim": float(np.mean(st["ssim"])), "mean_global_ssim": float(np.mean(st["global_ssim"])),
                "mean_psnr": float(np.mean(st["psnr"])),
                "fooling_rate": fr["fooling_rate"], "fooling_rate_correct": fr["fooling_rate_correct"],
                "n_correct": fr["n_correct"],
                "mean_l2": float(st["l2"].mean()), "mean_linf": float(st["linf"].mean()),
                "mean_steps": float(np.mean(st["steps"])), "n_failed": int(np.sum(st["failed"])),
                "seconds": seconds, "images_per_second": len(images) / seconds,
            }
            if name == "pgap":
                point["solver"] = pgap_solver
            atomic_write_json(path, point)
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


def _fmt(v, digits=3):
    return "not reached" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def _report(settings, points, ssim_row, psnr_row, paper, global_row):
    attacks = settings["attacks"]
    lines = ["# tfperceptual compare", "", "## Settings", ""]
    for k in ("data", "model", "n", "clean_accuracy", "steps", "ssim_target", "psnr_target", "pgap_solver",
              "seconds"):
        if settings.get(k) is not None:
            lines.append(f"- {k}: {settings[k]}")
    lines += ["- fooling rate: fraction of images whose post-attack label differs from the pre-attack "
              "(clean-prediction) label (paper, Sec. V); matched values are linear interpolations "
              "between sweep points, 'not reached' when the target lies outside the swept range.", ""]
    head = "| | " + " | ".join(attacks) + " |"
    sep = "|---|" + "---|" * len(attacks)
    lines += [f"## Fooling rate at average SSIM = {settings['ssim_target']} (Table II)", "", head, sep,
              "| ours | " + " | ".join(_fmt(ssim_row[a]) for a in attacks) + " |"]
    if paper and "ssim" in paper:
        lines.append("| paper | " + " | ".join(_fmt(paper["ssim"].get(a)) if a in paper["ssim"] else "—"
                                              for a in attacks) + " |")
    lines += ["", f"## Fooling rate at average PSNR = {settings['psnr_target']} dB (Table III)", "", head, sep,
              "| ours | " + " | ".join(_fmt(psnr_row[a]) for a in attacks) + " |", "",
              f"## Fooling rate at average *global* SSIM S1·S2 = {settings['ssim_target']}", "",
              "The one-window SSIM of Brunet et al. that the SSIM ball constrains (Eqs. 3-7), "
              "instead of the Gaussian-windowed SSIM above.", "", head, sep,
              "| ours | " + " | ".join(_fmt(global_row[a]) for a in attacks) + " |", "",
              "## Wall time per attack", "",
              "Sum over the sweep points of this run (cached points keep the time they were measured with).", "",
              "| attack | sweep points | wall time (s) | median images/s |", "|---|---|---|---|"]
    for a in attacks:
        pa = [p for p in points if p["attack"] == a]
        if pa:
            lines.append(f"| {a} | {len(pa)} | {sum(p['seconds'] for p in pa):.0f} "
                         f"| {np.median([p['images_per_second'] for p in pa]):.1f} |")
    lines += ["", "## Sweep points", "",
              "| attack | ε | ε unit | mean SSIM | mean global SSIM | mean PSNR (dB) | fooling rate | fooling rate (correct) "
              "| mean ℓ2 | mean ℓ∞ | mean steps | failed | images/s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p['attack']} | {p['eps']:g} | {EPS_UNITS[p['attack']]} | {p['mean_ssim']:.4f} "
                     f"| {p['mean_global_ssim']:.4f} | {p['mean_psnr']:.2f} | {p['fooling_rate']:.3f} | {p['fooling_rate_correct']:.3f} "
                     f"| {p['mean_l2']:.3f} | {p['mean_linf']:.3f} | {p['mean_steps']:.2f} | {p['n_failed']} "
                     f"| {p['images_per_second']:.1f} |")
    lines += ["", "Plots: `fooling_vs_ssim.png`, `fooling_vs_psnr.png`.", ""]
    return "\n".join(lines)


def _plot(points, attacks, key, target, xlabel, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    # SSIM targets close to 1 (CIFAR-10, ImageNet: 0.998) are read on a log axis of 1 − SSIM
    dissimilarity = key != "mean_psnr" and target > 0.99
    tx = (lambda v: max(1.0 - v, 1e-7)) if dissimilarity else (lambda v: v)
    for a in attacks:
        pts = sorted((tx(p[key]), p["fooling_rate"]) for p in points if p["attack"] == a)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=a)
    ax.axvline(tx(target), color="grey", ls="--", lw=1)
    if dissimilarity:
        ax.set_xscale("log")
        ax.invert_xaxis()
        xlabel = f"1 − {xlabel} (log scale; quality increases to the right)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fooling rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)


def compare(model, images, labels, attacks=ATTACK_NAMES, eps_grids=None, out_dir="runs/compare",
            ssim_target=0.85, psnr_target=25.0, steps=50, batch_size=256, data_name="custom",
            model_name="custom", progress=True, pgap_solver="exact"):
    """Run the protocol and write ``results.json``, ``report.md`` and two PNG plots to ``out_dir``.

    Returns:
        dict with ``settings``, ``points``, ``matched_ssim``, ``matched_psnr``.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    attacks = list(attacks)
    points = run_sweep(model, images, labels, attacks, eps_grids, out, steps, batch_size, progress, pgap_solver)
    from .model_adapter import as_logits_model

    clean_pred = _predict(as_logits_model(model), images, batch_size)
    settings = {
        "data": data_name, "model": model_name, "n": int(len(images)),
        "clean_accuracy": float(np.mean(clean_pred == np.asarray(labels))),
        "attacks": attacks, "steps": steps, "ssim_target": ssim_target, "psnr_target": psnr_target,
        "pgap_solver": pgap_solver if "pgap" in attacks else None,
        "eps_grids": {a: sorted(p["eps"] for p in points if p["attack"] == a) for a in attacks},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    ssim_row = matched_table(points, attacks, "mean_ssim", ssim_target)
    psnr_row = matched_table(points, attacks, "mean_psnr", psnr_target)
    global_row = matched_table(points, attacks, "mean_global_ssim", ssim_target)
    paper = PAPER_TABLES.get(data_name)
    result = {"settings": settings, "points": points, "matched_ssim": ssim_row, "matched_psnr": psnr_row,
              "matched_global_ssim": global_row, "paper": paper}
    atomic_write_json(out / "results.json", result)
    atomic_write_text(out / "report.md", _report(settings, points, ssim_row, psnr_row, paper, global_row))
    _plot(points, attacks, "mean_ssim", ssim_target, "average SSIM", out / "fooling_vs_ssim.png")
    _plot(points, attacks, "mean_psnr", psnr_target, "average PSNR (dB)", out / "fooling_vs_psnr.png")
    return result
