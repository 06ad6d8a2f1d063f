"""Rendering of the protocols' results: markdown reports and matplotlib figures (written atomically).

The protocols (:mod:`.compare`, :mod:`.localize`, :mod:`.saliency_benchmark`) compute; this module only
formats what they computed.  matplotlib is imported when a figure is drawn (Agg backend, no screen).
"""

from __future__ import annotations

import numpy as np

from ..io_utils import atomic_savefig
from .presets import LOCALIZE_TABLE_THRESHOLD, PAPER_TABLE_1, PAPER_TABLE_2, PAPER_TABLE_I, eps_unit

__all__ = ["fmt", "compare_report", "plot_fooling", "localize_report", "plot_localize_curves",
           "plot_localize_panels", "benchmark_report", "plot_benchmark", "LOCALIZE_METRICS"]

#: the metrics of Table I, in its order
LOCALIZE_METRICS = ("precision", "pixels_perturbed", "recall", "iou", "iou_outside")


def fmt(v, digits=3, missing="—"):
    """``v`` with ``digits`` decimals, or ``missing`` for None/NaN/Inf."""
    return missing if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ----------------------------------------------------------------------------- compare
def compare_report(settings, points, rows, paper, seconds=None):
    """Markdown of ``tfperceptual compare`` (Tables II and III, the global-SSIM table, wall times, points)."""
    attacks = settings["attacks"]
    nr = "not reached"
    lines = ["# tfperceptual compare", "", "## Settings", ""]
    for k in ("data", "model", "n", "clean_accuracy", "steps", "ssim_target", "psnr_target", "pgap_solver", "seed"):
        if settings.get(k) is not None:
            lines.append(f"- {k}: {settings[k]}")
    if seconds is not None:
        lines.append(f"- wall time: {seconds} s")
    lines += ["- fooling rate: fraction of images whose post-attack label differs from the pre-attack "
              "(clean-prediction) label (paper, Sec. V); matched values are linear interpolations "
              "between sweep points, 'not reached' when the target lies outside the swept range.", ""]
    head = "| | " + " | ".join(attacks) + " |"
    sep = "|---|" + "---|" * len(attacks)

    def row(label, values, digits=3):
        return f"| {label} | " + " | ".join(fmt(values.get(a), digits, nr) for a in attacks) + " |"

    lines += [f"## Fooling rate at average SSIM = {settings['ssim_target']} (Table II)", "", head, sep,
              row("ours", rows["ssim"])]
    if paper and "ssim" in paper:
        lines.append(f"| paper ({paper.get('model', 'their model')}) | "
                     + " | ".join(fmt(paper["ssim"][a]) if a in paper["ssim"] else "—" for a in attacks) + " |")
    elif settings.get("data") in ("mnist", "cifar10", "imagenet"):
        lines += ["", "The paper's row is left out: this model is not the zoo model the project compares with it."]
    lines += ["", f"## Fooling rate at average PSNR = {settings['psnr_target']} dB (Table III)", "", head, sep,
              row("ours", rows["psnr"]), "",
              f"## Fooling rate at average *global* SSIM S1·S2 = {settings['ssim_target']}", "",
              "The one-window SSIM of Brunet et al. that the SSIM ball constrains (Eqs. 3-7), "
              "instead of the Gaussian-windowed SSIM above.", "", head, sep, row("ours", rows["global_ssim"]), "",
              "## Wall time per attack", "",
              "Sum over the sweep points of this run (cached points keep the time they were measured with; "
              "`timings.json`).", "", "| attack | sweep points | wall time (s) | median images/s |",
              "|---|---|---|---|"]
    for a in attacks:
        pa = [p for p in points if p["attack"] == a]
        if pa:
            lines.append(f"| {a} | {len(pa)} | {sum(p['seconds'] for p in pa):.0f} "
                         f"| {np.median([p['images_per_second'] for p in pa]):.1f} |")
    lines += ["", "## Sweep points", "",
              "Robust accuracy: the fraction of all images whose adversarial is classified as the true label "
              "(the attacks move away from the clean prediction, as the paper's fooling rate).", "",
              "| attack | ε | ε unit | mean SSIM | mean global SSIM | mean PSNR (dB) | fooling rate | "
              "fooling rate (correct) | robust accuracy | mean ℓ2 | mean ℓ∞ | mean steps | failed | images/s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p['attack']} | {p['eps']:g} | {eps_unit(p['attack'])} | {p['mean_ssim']:.4f} "
                     f"| {p['mean_global_ssim']:.4f} | {p['mean_psnr']:.2f} | {p['fooling_rate']:.3f} "
                     f"| {fmt(p['fooling_rate_correct'])} | {p['robust_accuracy']:.3f} | {p['mean_l2']:.3f} | {p['mean_linf']:.3f} "
                     f"| {p['mean_steps']:.2f} | {p['n_failed']} | {p['images_per_second']:.1f} |")
    lines += ["", "Plots: `fooling_vs_ssim.png`, `fooling_vs_psnr.png`.", ""]
    return "\n".join(lines)


def plot_fooling(points, attacks, key, target, xlabel, path, settings=None):
    """Fig. 6: fooling rate against average SSIM or PSNR for each attack, with the matched target marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    # SSIM targets close to 1 (CIFAR-10, ImageNet: 0.998) are read on a log axis of 1 − SSIM
    dissimilarity = key != "mean_psnr" and target > 0.99
    tx = (lambda v: max(1.0 - v, 1e-7)) if dissimilarity else (lambda v: v)
    for a in attacks:
        pts = sorted((tx(p[key]), p["fooling_rate"]) for p in points if p["attack"] == a)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=a)
    ax.axvline(tx(target), color="grey", ls="--", lw=1, label=f"matched {xlabel} = {target:g}")
    if dissimilarity:
        ax.set_xscale("log")
        ax.invert_xaxis()
        xlabel = f"1 − {xlabel} (log scale; quality increases to the right)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fooling rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    s = settings or {}
    ax.set_title(f"Fooling rate vs {xlabel.split(' (')[0]}: {s.get('data', '')}, {s.get('n', '')} images, "
                 f"{s.get('model', '')}", fontsize=9)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- localize
def localize_report(settings, results, thresholds, paper=False):
    """Markdown of ``tfperceptual localize`` (Table I at the table threshold, calibration, reproducibility)."""
    j = list(thresholds).index(LOCALIZE_TABLE_THRESHOLD)
    attacks = list(results)
    lines = ["# tfperceptual localize", "", "## Settings", ""]
    lines += [f"- {k}: {v}" for k, v in settings.items()]
    lines += ["", f"## Table I: noise threshold {LOCALIZE_TABLE_THRESHOLD}, CAM > {settings['cam_threshold']}", "",
              "| | " + " | ".join(attacks) + " |", "|---|" + "---|" * len(attacks)]
    lines.append("| ε | " + " | ".join(f"{results[a]['eps']:g}" for a in attacks) + " |")
    lines.append("| fooling rate | " + " | ".join(f"{results[a]['fooling_rate']:.3f}" for a in attacks) + " |")
    lines.append("| mean SSIM | " + " | ".join(f"{results[a]['mean_ssim']:.4f}" for a in attacks) + " |")
    for m in LOCALIZE_METRICS:
        lines.append(f"| {m} | " + " | ".join(fmt(results[a][m][j]) for a in attacks) + " |")
        if paper and m in PAPER_TABLE_I:
            lines.append(f"| {m} (paper, MobileNetV2) | " + " | ".join(
                f"{PAPER_TABLE_I[m][a]:.3f}" if a in PAPER_TABLE_I[m] else "—" for a in attacks) + " |")
    lines.append("| images with no perturbed pixel (left out of precision) | "
                 + " | ".join(str(int(results[a]["n_empty"][j])) for a in attacks) + " |")
    lines += ["", f"ε: the smallest ε reaching the target fooling rate on the first {settings['n_calibration']} "
              f"images, found by a sweep of the attack's grid and {settings.get('refine', 0)} geometric bisection "
              "steps (`calibration` in results.json lists every ε tried and its rate). PGD attacks: Foolbox "
              "with the relative step size scaled to the step count (`tfperceptual.attacks.foolbox`).", "",
              "Calibration and final run use the same randomness: the calibration images are attacked in the same "
              "batches in both, and a seeded attack draws each batch's random numbers from the seed and the batch "
              "itself, so the final fooling rate on the calibration images equals the calibration's at the chosen ε "
              "(`fooling_rate_calibration_images`):", "",
              "| | " + " | ".join(attacks) + " |", "|---|" + "---|" * len(attacks),
              "| calibration at ε | " + " | ".join(fmt(results[a].get("calibration_rate")) for a in attacks) + " |",
              "| final run, same images | " + " | ".join(fmt(results[a].get("fooling_rate_calibration_images"))
                                                        for a in attacks) + " |", "",
              "Curves over thresholds: `metrics_vs_threshold.png`; panels (original, adversarial with the predicted "
              "classes, SSIM map per channel, Grad-CAM++): `panels_<attack>.png`.", ""]
    return "\n".join(lines)


def plot_localize_curves(results, path):
    """Fig. 5: the Table I metrics of every attack over the noise thresholds."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(LOCALIZE_METRICS), figsize=(4 * len(LOCALIZE_METRICS), 3.6))
    for ax, m in zip(axes, LOCALIZE_METRICS):
        for a, r in results.items():
            ax.plot(r["thresholds"], [np.nan if v is None else v for v in r[m]], label=a)
        ax.axvline(LOCALIZE_TABLE_THRESHOLD, color="grey", ls="--", lw=1, label=f"Table I (t = {LOCALIZE_TABLE_THRESHOLD})")
        ax.set_title(m.replace("_", " "))
        ax.set_xlabel("noise threshold t on 1 − SSIM")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Noise maps (1 − SSIM > t) against the Grad-CAM++ region (CAM > 0.75)", fontsize=10)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)


def plot_localize_panels(x, adv, s, cam, name, path, clean_labels=None, adv_labels=None, class_names=None):
    """Fig. 3: per image the original (clean class), the adversarial (its class), the SSIM map of each
    channel and the Grad-CAM++ map, with colour bars."""
    plt = _pyplot()

    def label(k):
        if k is None:
            return ""
        k = int(k)
        return f"{k}: {class_names[k][:18]}" if class_names is not None and k < len(class_names) else str(k)

    c = x.shape[-1]
    cols = 3 + c
    fig, axes = plt.subplots(len(x), cols, figsize=(2.4 * cols, 2.3 * len(x)), squeeze=False)
    for i in range(len(x)):
        clean = label(None if clean_labels is None else clean_labels[i])
        fooled = label(None if adv_labels is None else adv_labels[i])
        row = [(x[i].squeeze(-1) if c == 1 else x[i], f"original\n{clean}", "gray", (0, 1), False),
               (adv[i].squeeze(-1) if c == 1 else adv[i], f"{name}\n{fooled}", "gray", (0, 1), False)]
        row += [(s[i][..., k], f"SSIM map, channel {k}", "viridis", (None, 1), True) for k in range(c)]
        row += [(cam[i], "Grad-CAM++ (clean class)", "jet", (0, 1), True)]
        for ax, (img, title, cmap, (lo, hi), bar) in zip(axes[i], row):
            im = ax.imshow(np.clip(img, 0, 1) if img.ndim == 3 else img, cmap=cmap, vmin=lo, vmax=hi)
            ax.set_title(title, fontsize=7)
            ax.axis("off")
            if bar:
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- saliency benchmark
def benchmark_report(settings, results, sanity, paper=False, paired=None, dependence=None):
    """Markdown of ``tfperceptual benchmark`` (Tables 1–2 of Elliott et al., paired differences, sanity, cost)."""
    lines = ["# tfperceptual benchmark", "", "## Settings", ""]
    lines += [f"- {k}: {v}" for k, v in settings.items()]
    specs = list(results)
    if any("weak_localisation" in r for r in results.values()):
        lines += ["", "## Weak localisation error (IoU ≥ 0.5, α grid-searched per strategy; lower is better)", "",
                  "| method | value | percentile | mean | best |" + (" paper (best, VGG19-BN) |" if paper else ""),
                  "|---|---|---|---|---|" + ("---|" if paper else "")]
        for s in specs:
            wl = results[s].get("weak_localisation")
            if not wl:
                continue
            cells = [f"{fmt(wl[k]['best_error'])} (α={wl[k]['best_alpha']:g})" if k in wl else "—"
                     for k in ("value", "percentile", "mean")]
            ref = f" {fmt(PAPER_TABLE_1.get(s.split('@')[0]), 2)} |" if paper else ""
            lines.append(f"| {s} | " + " | ".join(cells) + f" | {fmt(wl['best']['error'])} |{ref}")
    if any("pointing_accuracy" in r for r in results.values()):
        lines += ["", "## Pointing game (hit within 15 px of a box of the class; higher is better)", "",
                  "| method | accuracy |", "|---|---|"]
        lines += [f"| {s} | {fmt(results[s]['pointing_accuracy'])} |" for s in specs if "pointing_accuracy" in results[s]]
    if any("deletion_auc" in r for r in results.values()):
        blur = {"gaussian": "Gaussian σ = 5 px", "rise": "the RISE code's 11 × 11 kernel (gkern(11, 5))"}[
            settings.get("insertion_blur", "gaussian")]
        lines += ["", "## Deletion / insertion AUC (class probability; deletion lower, insertion higher is better)", "",
                  f"{settings['n_steps']} steps; deletion fills mid-grey, insertion starts from a blur by {blur}.", "",
                  "| method | deletion | insertion |" + (" paper deletion | paper insertion |" if paper else ""),
                  "|---|---|---|" + ("---|---|" if paper else "")]
        for s in specs:
            if "deletion_auc" not in results[s]:
                continue
            ref = ""
            if paper:
                pd, pi = PAPER_TABLE_2.get(s, PAPER_TABLE_2.get(s.split("@")[0], (None, None)))
                ref = f" {fmt(pd, 2)} | {fmt(pi, 2)} |"
            lines.append(f"| {s} | {fmt(results[s]['deletion_auc'])} | {fmt(results[s]['insertion_auc'])} |{ref}")
    if paired:
        lines += ["", f"## Paired differences from {paired['reference']} (other − reference, mean and 95 % bootstrap "
                      f"interval over the {paired['n']} images)", "",
                  "| method | weak-loc. error | pointing | deletion AUC | insertion AUC |", "|---|---|---|---|---|"]
        for s, d in paired["methods"].items():
            def cell(k):
                return f"{d[k][0]:+.3f} [{d[k][1]:+.3f}, {d[k][2]:+.3f}]" if k in d else "—"
            lines.append(f"| {s} | {cell('weak_localisation_error')} | {cell('pointing_accuracy')} | "
                         f"{cell('deletion_auc')} | {cell('insertion_auc')} |")
    if sanity:
        lines += ["", "## Sanity check (cascading randomisation, mean over images after the last layer randomised)",
                  "", "| method | Spearman | Spearman (abs) | SSIM |", "|---|---|---|---|"]
        for s, r in sanity.items():
            def last(k):
                return float(np.nanmean(r[k][-1])) if r[k] else float("nan")
            lines.append(f"| {s} | {fmt(last('spearman'))} | {fmt(last('spearman_abs'))} | {fmt(last('ssim'))} |")
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


def _plot_curves(plt, results, out):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for s, r in results.items():
        if "deletion_curve" not in r:
            continue
        t = np.linspace(0, 1, len(r["deletion_curve"]))
        axes[0].plot(t, r["deletion_curve"], label=f"{s} ({r['deletion_auc']:.3f})")
        axes[1].plot(t, r["insertion_curve"], label=f"{s} ({r['insertion_auc']:.3f})")
    for ax, title in zip(axes, ("deletion (lower is better)", "insertion (higher is better)")):
        ax.set_xlabel("fraction of pixels")
        ax.set_ylabel("class probability")
        ax.set_title(title)
        ax.legend(fontsize=7)
    atomic_savefig(fig, out / "curves.png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def _plot_weak_localisation(plt, results, out):
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for s, r in results.items():
        wl = r.get("weak_localisation")
        if not wl:
            continue
        for ax, k in zip(axes, ("value", "percentile", "mean")):
            if k in wl:
                ax.plot(wl[k]["alphas"], wl[k]["error"], label=s)
                ax.set_title(f"{k} threshold")
                ax.set_xlabel("α")
                ax.set_ylabel("weak-localisation error")
    axes[0].legend(fontsize=7)
    atomic_savefig(fig, out / "weak_localisation.png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def _plot_sanity(plt, sanity, dependence, out):
    fig, axes = plt.subplots(1, 3 if dependence else 2, figsize=(18 if dependence else 12, 4))
    labels = []
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
        ax.set_title(f"{title} with the trained model's maps")
        ax.set_ylim(-0.2, 1.05)
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


def _plot_examples(plt, examples, out):
    imgs = examples["_images"]
    specs = [s for s in examples if s != "_images"]
    fig, axes = plt.subplots(len(imgs), len(specs) + 1, figsize=(2 * (len(specs) + 1), 2 * len(imgs)), squeeze=False)
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


def plot_benchmark(results, sanity, examples, out, dependence=None):
    """The benchmark's figures: ``curves.png``, ``weak_localisation.png``, ``sanity.png``, ``examples.png``."""
    plt = _pyplot()
    if any("deletion_curve" in r for r in results.values()):
        _plot_curves(plt, results, out)
    if any("weak_localisation" in r for r in results.values()):
        _plot_weak_localisation(plt, results, out)
    if sanity:
        _plot_sanity(plt, sanity, dependence, out)
    if examples:
        _plot_examples(plt, examples, out)
