"""The robustness protocol: robust accuracy per threat under AutoAttack (ℓ∞, ℓ2, through ART) and the SSIM-ball
ensemble, batch by batch (cached, resumable), with Carlini et al.'s sanity checks.

:func:`run_robustness` attacks the images in batches of ``batch_size``; each (threat, batch) result — per
image: correct clean, robust, which member found the adversarial — is an atomic JSON entry under
``<out>/cache`` keyed by the model's weights, the batch's images and labels, the threat and every option, so
an interrupted run resumes where it stopped and gives the same ``results.json``.

Sanity checks (Carlini et al., "On Evaluating Adversarial Robustness", 2019, §5 and App. checklist), on the
first ``sanity_n`` images with the ensemble's first member (APGD-CE; SSIM-APGD-CE for the SSIM ball):

* **ε monotone**: robust accuracy at 0.5 ε, ε, 2 ε and a very large ε must not rise;
* **large ε**: it must reach ≈ 0 (≤ 2 %) at the very large ε (ℓ∞: 0.5; ℓ2: 0.5 √N, the ℓ2 size of an ℓ∞
  change of 0.5 on every pixel; SSIM: ε = 0.9, S2 ≥ 0.19) — else the attack cannot even fool images it
  may change almost freely (gradient masking, or a bug);
* **gradient-free**: the gradient-free member (Square; SSIM-Square) runs last, on the images every gradient
  member failed on: every image it fools is counted as a flag (it must find none);
* **more steps**: the first member with 4 × ``steps`` must not be much stronger (more than one image of the
  subset and 1 point) than with ``steps`` — else the attack has not converged and the figure is loose.

A flag does not change the numbers; the report prints it beside them.
"""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..evaluation.autoattack import NORMS, VERSIONS, _check_threat, auto_attack, ssim_auto_attack
from ..evaluation.sparsity import wilson_interval
from ..io_utils import atomic_write_json, atomic_write_text
from ..models.adapter import as_logits_model
from ..validation import check_choice, check_positive_int
from .report import fmt
from .runner import ResultCache, as_float, batch_slices, check_dataset, fingerprint

def _package_version():
    """The installed tfperceptual's version (part of every cache key: a release recomputes)."""
    try:
        return version("tfperceptual")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "source"


__version__ = _package_version()

__all__ = ["parse_threats", "run_robustness", "threat_name", "large_eps"]


def parse_threats(text):
    """``'linf:0.3,l2:2.0,ssim:0.015'`` (SSIM: ``ssim:ε`` or ``ssim:ε:ε1``) → a list of threat dicts
    ``{"norm", "eps", "eps_luminance"}``.

    Raises:
        ValueError: an empty list, an unknown norm, a malformed entry, ε out of its norm's range, a threat
            given twice.
    """
    threats, seen = [], set()
    parts = [p.strip() for p in str(text or "").split(",") if p.strip()]
    if not parts:
        raise ValueError("no threat given; expected e.g. 'linf:0.3,l2:2.0,ssim:0.015'")
    for part in parts:
        fields = part.split(":")
        if fields[0] not in NORMS:
            raise ValueError(f"bad threat {part!r}: unknown norm {fields[0]!r}; choose from {', '.join(NORMS)}")
        if len(fields) not in ((2, 3) if fields[0] == "ssim" else (2,)):
            raise ValueError(f"bad threat {part!r}: expected NORM:EPS" + (" or ssim:EPS:EPS1" if fields[0] == "ssim"
                                                                          else ""))
        try:
            values = [float(v) for v in fields[1:]]
        except ValueError:
            raise ValueError(f"bad threat {part!r}: ε must be a number") from None
        try:
            norm, eps, eps1 = _check_threat(fields[0], values[0], values[1] if len(values) > 1 else 0.0)
        except (ValueError, TypeError) as e:
            raise ValueError(f"bad threat {part!r}: {e}") from None
        key = (norm, eps, eps1)
        if key in seen:
            raise ValueError(f"threat {part!r} given twice")
        seen.add(key)
        threats.append({"norm": norm, "eps": eps, "eps_luminance": eps1})
    return threats


def threat_name(t):
    """``"ℓ∞ ε = 0.3"``, ``"ℓ2 ε = 2"``, ``"SSIM ε = 0.015"`` (``, ε1 = …`` when set)."""
    head = {"linf": "ℓ∞", "l2": "ℓ2", "ssim": "SSIM"}[t["norm"]]
    extra = f", ε1 = {t['eps_luminance']:g}" if t.get("eps_luminance") else ""
    return f"{head} ε = {t['eps']:g}{extra}"


def large_eps(threat, shape):
    """The "very large" ε of the sanity check (see the module docstring)."""
    if threat["norm"] == "linf":
        return 0.5
    if threat["norm"] == "l2":
        return 0.5 * float(np.sqrt(np.prod(shape)))
    return 0.9


def _run(model, x, y, threat, version, opts, seed, members=None):
    if threat["norm"] == "ssim":
        return ssim_auto_attack(model, x, y, eps=threat["eps"], eps_luminance=threat["eps_luminance"], version=version,
                                steps=opts["steps"], queries=opts["ssim_queries"], batch_size=opts["batch_size"],
                                seed=seed, members=members)
    return auto_attack(model, x, y, norm=threat["norm"], eps=threat["eps"], version=version, steps=opts["steps"],
                       square_queries=opts["square_queries"], batch_size=opts["batch_size"], seed=seed,
                       members=members)


def _first_member(model, x, y, threat, eps, steps, opts, seed):
    """Robust accuracy under the ensemble's first member alone (APGD-CE / SSIM-APGD-CE) at ``eps``."""
    t = {**threat, "eps": float(eps)}
    first = "ssim-apgd-ce" if t["norm"] == "ssim" else "apgd-ce"
    return _run(model, x, y, t, "fast", {**opts, "steps": steps}, seed, members=(first,)).robust_accuracy


def _sanity_runs(model, x, y, threat, opts, seed):
    """The first member's robust accuracy on the first images at 0.5 ε, ε, 2 ε and a very large ε, and at ε with
    4 × the steps (the cached part of the checks)."""
    eps = threat["eps"]
    big = large_eps(threat, x.shape[1:])
    mults = {"0.5ε": 0.5 * eps, "ε": eps, "2ε": 2 * eps, "large": big}
    if threat["norm"] in ("linf", "ssim"):  # ε < 1 for these
        mults = {k: min(v, 0.99) for k, v in mults.items()}
    accs = {k: _first_member(model, x, y, threat, v, opts["steps"], opts, seed) for k, v in mults.items()}
    more = _first_member(model, x, y, threat, eps, 4 * opts["steps"], opts, seed)
    return {"n": len(x), "eps": {k: float(v) for k, v in mults.items()}, "robust_accuracy": accs,
            "robust_accuracy_4x_steps": more}


def sanity_flags(check, gradient_free):
    """The flags of the sanity checks (see the module docstring) from :func:`_sanity_runs`' numbers and the
    count of images only the gradient-free member fooled."""
    accs, n = check["robust_accuracy"], check["n"]
    order = ["0.5ε", "ε", "2ε", "large"]
    rises = [f"{a} → {b}" for a, b in zip(order[:-1], order[1:]) if accs[b] > accs[a] + 1e-12]
    flags = []
    if rises:
        flags.append(f"robust accuracy rises with ε ({', '.join(rises)})")
    if accs["large"] > 0.02:
        flags.append(f"robust accuracy {100 * accs['large']:.1f} % at the very large ε = {check['eps']['large']:g} "
                     "(expected ≈ 0)")
    if gradient_free:
        flags.append(f"the gradient-free member fooled {gradient_free} image(s) that every gradient member missed "
                     "(gradient masking?)")
    more = check["robust_accuracy_4x_steps"]
    if accs["ε"] - more > max(1.0 / n, 0.01) + 1e-12:
        flags.append(f"4 × steps lowers the first member's robust accuracy from {100 * accs['ε']:.1f} % to "
                     f"{100 * more:.1f} % (not converged: the figure is loose)")
    return flags


def run_robustness(model, images, labels, *, threats, version="standard", out_dir, batch_size=128, seed=0, steps=100,
                   square_queries=5000, ssim_queries=1000, sanity_n=100, data_name="custom", model_name="model",
                   progress=True):
    """Robust accuracy of ``model`` on ``images`` for each threat; writes ``results.json``, ``timings.json`` and
    ``report.md`` to ``out_dir`` (cache in ``out_dir/cache``).

    Args:
        model: any Keras 3 image classifier taking pixels in [0, 1].
        images: (N, H, W, C) float in [0, 1] or uint8; labels: (N,) int.
        threats: a list of threat dicts (:func:`parse_threats`) or the string form.
        version: ``"standard"`` or ``"fast"`` (see :func:`~tfperceptual.evaluation.auto_attack` and
            :func:`~tfperceptual.evaluation.ssim_auto_attack`).
        batch_size: images per batch and cache entry; seed: int ≥ 0; steps: APGD iterations (and FPGAP/PGAP
            steps); square_queries: Square's budget (ℓp); ssim_queries: SSIM-Square's budget.
        sanity_n: images of the sanity checks (the first ones; 0: none).

    Returns:
        The ``results.json`` dict.

    Raises:
        TypeError / ValueError: bad images, labels, threats or options.
    """
    if isinstance(threats, str):
        threats = parse_threats(threats)
    version = check_choice(version, "version", VERSIONS)
    batch_size = check_positive_int(batch_size, "batch_size")
    seed = check_positive_int(seed, "seed", minimum=0)
    steps = check_positive_int(steps, "steps")
    sanity_n = check_positive_int(sanity_n, "sanity_n", minimum=0)
    lm = as_logits_model(model)
    y = check_dataset(lm, images, labels)
    out = Path(out_dir)
    cache = ResultCache(out / "cache")
    opts = {"batch_size": batch_size, "steps": steps, "square_queries": int(square_queries),
            "ssim_queries": int(ssim_queries)}
    slices = batch_slices(len(images), batch_size)
    results, timings = [], {}
    bar = tqdm(total=len(threats) * len(slices), desc="robustness", unit="batch", disable=not progress)
    for threat in threats:
        name = threat_name(threat)
        per_image = {"clean": [], "robust": [], "found_by": []}
        members, secs = None, {}
        for s, e in slices:
            xb = as_float(images[s:e])
            settings = {"threat": threat, "version": version, "seed": seed, **opts, "tfperceptual": __version__,
                        "labels": y[s:e].tolist()}
            key = f"{threat['norm']}_{fingerprint(lm, xb, settings)}.json"
            entry = cache.read_json(key, required=("clean", "robust", "found_by", "members", "seconds"))
            if entry is None:
                res = _run(lm, xb, y[s:e], threat, version, opts, seed)
                entry = {"clean": res.clean.astype(int).tolist(), "robust": res.robust.astype(int).tolist(),
                         "found_by": [str(f) for f in res.found_by], "members": res.settings["members"],
                         "seconds": res.seconds}
                cache.write_json(key, entry)
            members = entry["members"]
            for k in per_image:
                per_image[k].extend(entry[k])
            for m, t in entry["seconds"].items():
                secs[m] = round(secs.get(m, 0.0) + float(t), 2)
            bar.update(1)
        clean = np.asarray(per_image["clean"], bool)
        robust = np.asarray(per_image["robust"], bool)
        found = np.asarray(per_image["found_by"], object)
        cumulative, fooled = {}, ~clean
        for m in members:
            fooled = fooled | (found == m)
            cumulative[m] = float(1.0 - fooled.mean())
        k = int(robust.sum())
        gradient_free = int(np.sum(np.isin(found, ["square", "ssim-square"])))
        row = {**threat, "name": name, "n": int(len(robust)), "clean_accuracy": float(clean.mean()),
               "robust_accuracy": float(robust.mean()), "interval": list(wilson_interval(k, len(robust))),
               "per_attack": cumulative, "members": members, "gradient_free_only": gradient_free,
               "robust": robust.astype(int).tolist(), "found_by": [str(f) for f in found]}
        if sanity_n:
            m = min(sanity_n, len(images))
            key = f"sanity_{threat['norm']}_{fingerprint(lm, as_float(images[:m]), {**threat, **opts, 'seed': seed, 'labels': y[:m].tolist(), 'tfperceptual': __version__})}.json"
            check = cache.read_json(key, required=("n", "eps", "robust_accuracy", "robust_accuracy_4x_steps"))
            if check is None:
                t0 = time.perf_counter()
                check = _sanity_runs(lm, as_float(images[:m]), y[:m], threat, opts, seed)
                check["seconds"] = round(time.perf_counter() - t0, 2)
                cache.write_json(key, check)
            secs["sanity checks"] = check.get("seconds")
            row["sanity"] = {k: check[k] for k in ("n", "eps", "robust_accuracy", "robust_accuracy_4x_steps")}
            row["sanity"].update(ensemble_robust_accuracy=float(np.mean(robust[:m])), gradient_free_only=gradient_free,
                                 flags=sanity_flags(check, gradient_free))
        results.append(row)
        timings[name] = secs
    bar.close()
    doc = {"data": data_name, "model": model_name, "n": int(len(images)), "version": version, "seed": seed, **opts,
           "sanity_n": sanity_n, "tfperceptual": __version__, "threats": results}
    atomic_write_json(out / "results.json", doc)
    atomic_write_json(out / "timings.json", timings)
    atomic_write_text(out / "report.md", _report(doc, timings))
    return doc


def _pct(v):
    return f"{100 * v:.1f} %"


def _report(doc, timings):
    lines = [f"# Robust accuracy — {doc['model']} on {doc['data']} ({doc['n']} images)", "",
             f"AutoAttack-grade ensembles, version `{doc['version']}`, {doc['steps']} APGD steps, seed {doc['seed']}; "
             "every adversarial verified inside its ball and the box (1e-6) and misclassified. Robust accuracy is "
             "an upper bound (no attack can prove robustness); 95 % Wilson intervals.", "",
             "| threat | clean accuracy | robust accuracy | 95 % interval | after each member (cumulative) |",
             "|---|---|---|---|---|"]
    for r in doc["threats"]:
        steps = ", ".join(f"{m} {_pct(v)}" for m, v in r["per_attack"].items())
        lines.append(f"| {r['name']} | {_pct(r['clean_accuracy'])} | **{_pct(r['robust_accuracy'])}** | "
                     f"[{_pct(r['interval'][0])}, {_pct(r['interval'][1])}] | {steps} |")
    if any("sanity" in r for r in doc["threats"]):
        lines += ["", "## Sanity checks (Carlini et al. 2019)", "",
                  "First member alone (APGD-CE / SSIM-APGD-CE) on the first images: robust accuracy at 0.5 ε, ε, "
                  "2 ε, a very large ε, and at ε with 4 × the steps; images only the gradient-free member fooled.", "",
                  "| threat | n | 0.5 ε | ε | 2 ε | large ε | ε, 4 × steps | gradient-free only | flags |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in doc["threats"]:
            s = r.get("sanity")
            if not s:
                continue
            a = s["robust_accuracy"]
            flags = "; ".join(s["flags"]) if s["flags"] else "none"
            lines.append(f"| {r['name']} | {s['n']} | {_pct(a['0.5ε'])} | {_pct(a['ε'])} | {_pct(a['2ε'])} | "
                         f"{_pct(a['large'])} (ε = {fmt(s['eps']['large'])}) | {_pct(s['robust_accuracy_4x_steps'])} | "
                         f"{s['gradient_free_only']} | {flags} |")
    lines += ["", "## Seconds per member", ""]
    for name, secs in timings.items():
        lines.append(f"- {name}: " + ", ".join(f"{m} {v}" for m, v in secs.items()))
    return "\n".join(lines) + "\n"
