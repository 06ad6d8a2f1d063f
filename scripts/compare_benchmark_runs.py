"""Two `tfperceptual benchmark` runs over the same first images, side by side: per method, the mean of a
per-image metric in each run and the paired difference (B − A) with a 95 % bootstrap interval.

    python scripts/compare_benchmark_runs.py runs/benchmark_imagenet runs/benchmark_imagenet_riseblur \
        --metric insertion [--n 32]

Used for the insertion substrate (Gaussian σ = 5 against the RISE code's 11 × 11 kernel) in docs/results.md.
"""

import argparse
import json
from pathlib import Path

import numpy as np


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="first run's --out folder (results.json)")
    p.add_argument("b", help="second run's --out folder")
    p.add_argument("--metric", default="insertion", help="a per-image key: deletion, insertion, pointing, …")
    p.add_argument("--n", type=int, default=None, help="first n images (default: all the two runs share)")
    p.add_argument("--n-boot", type=int, default=2000)
    a = p.parse_args()
    ra, rb = (json.loads((Path(d) / "results.json").read_text()) for d in (a.a, a.b))
    print(f"A = {a.a} ({ra['settings'].get('insertion_blur', 'gaussian')} insertion blur), "
          f"B = {a.b} ({rb['settings'].get('insertion_blur', 'gaussian')})")
    print(f"| method | {a.metric} A | {a.metric} B | B − A [95 % paired bootstrap] | n |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for spec, res in ra["methods"].items():
        if spec not in rb["methods"]:
            continue
        xa = np.asarray(res["per_image"][a.metric], float)
        xb = np.asarray(rb["methods"][spec]["per_image"][a.metric], float)
        n = min(len(xa), len(xb)) if a.n is None else a.n
        if n > min(len(xa), len(xb)):
            raise SystemExit(f"--n {n}: the runs have only {min(len(xa), len(xb))} images in common")
        d = xb[:n] - xa[:n]
        boot = d[rng.integers(0, n, size=(a.n_boot, n))].mean(1)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        print(f"| {spec} | {xa[:n].mean():.3f} | {xb[:n].mean():.3f} | {d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}] | {n} |")


if __name__ == "__main__":
    main()
