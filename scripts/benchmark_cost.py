"""Cost of a `tfperceptual benchmark` run from its cache: per stage, the median over batches of the
compute seconds recorded when each batch was computed, per image; and the whole benchmark's images/s.

    python scripts/benchmark_cost.py runs/benchmark_imagenet [--batch-size 32]
"""

import argparse
import re
from collections import defaultdict
from pathlib import Path

import numpy as np


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="the benchmark's --out folder")
    p.add_argument("--batch-size", type=int, default=32, help="the run's --batch-size (images per cached batch)")
    p.add_argument("--images", type=int, default=1300, help="images to project the run time for")
    a = p.parse_args()
    stages = defaultdict(list)
    for f in sorted((Path(a.out) / "cache").glob("*.npz")):
        m = re.match(r"(.+)_([0-9a-f]{16})\.npz$", f.name)
        if not m:
            continue
        with np.load(f) as z:
            if "seconds" not in z.files:
                continue
            n = len(z[next(k for k in z.files if z[k].ndim > 0)])  # every cached array is per image
            if n != a.batch_size:  # a last, smaller batch would bias the per-image median
                continue
            stages[m.group(1)].append(float(z["seconds"]) / n)
    rows = [(k, float(np.median(v)), len(v)) for k, v in sorted(stages.items())]
    metrics = sum(s for k, s, _ in rows if k.startswith("metrics_"))
    maps = [(k, s, c) for k, s, c in rows if not k.startswith("metrics_")]
    total = metrics + sum(s for _, s, _ in maps)
    print("| stage | s / image (median over batches) | batches |")
    print("|---|---|---|")
    for k, s, c in maps:
        print(f"| {k} | {s:.2f} | {c} |")
    nm = [c for k, _, c in rows if k.startswith("metrics_")]
    print(f"| metrics ({len(nm)} methods: deletion/insertion, weak localisation, pointing) | {metrics:.2f} | "
          f"{min(nm) if nm else 0} |")
    print(f"| **whole benchmark** | **{total:.2f}** ({1 / total:.3f} images/s; {total * a.images / 3600:.1f} h "
          f"for {a.images} images) | |")


if __name__ == "__main__":
    main()
