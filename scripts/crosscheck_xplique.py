"""Cross-check of tfperceptual.evaluation.deletion_insertion against Xplique's Deletion / Insertion.

Xplique is not a dependency of this project (Xplique 2.0.2 pins tensorflow ≤ 2.20, scikit-image ≤ 0.25.2
and scipy ≤ 1.15.3); it does import and run with our TensorFlow 2.21 / Keras 3 stack when installed
without its pins in a side folder:

    pip install --no-deps --target /tmp/xpl xplique==2.0.2 einops opencv-python-headless scikit-learn \\
        joblib threadpoolctl narwhals
    PYTHONPATH=/tmp/xpl python scripts/crosscheck_xplique.py [--n 4] [--steps 50]

Same images, labels and maps (vanilla gradient, Grad-CAM, random; a 1e-9 jitter removes ties, whose
order the two libraries break differently), deletion to mid-grey and insertion from the same σ = 5
blurred copy, class probability by softmax. Prints both AUCs per image and map and the largest
difference; writes docs/crosscheck_xplique.json.
"""

import argparse
import json
from pathlib import Path

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--out", default="docs/crosscheck_xplique.json")
    args = ap.parse_args(argv)

    import xplique
    from xplique.metrics import Deletion, Insertion

    from tfperceptual.evaluation import saliency_metrics as bm
    from tfperceptual.image_ops import gaussian_blur
    from tfperceptual.datasets import load_imagenet_val
    from tfperceptual.io_utils import atomic_write_json
    from tfperceptual.models import as_logits_model
    from tfperceptual.explain import saliency_maps
    from tfperceptual.models import imagenet_mobilenet

    model = imagenet_mobilenet()
    x, y = load_imagenet_val(with_boxes=False, limit=args.n)
    rng = np.random.default_rng(0)
    maps = {"saliency": saliency_maps(model, x, y, "saliency"), "gradcam": saliency_maps(model, x, y, "gradcam"),
            "random": rng.random(x.shape[:3]).astype(np.float32)}
    blurred = np.asarray(gaussian_blur(x, 5.0))
    lm = as_logits_model(model)
    onehot = np.eye(lm.num_classes, dtype=np.float32)[y]
    rows, worst = [], 0.0
    for name, m in maps.items():
        m = m.astype(np.float64) + 1e-9 * rng.random(m.shape)
        ours = bm.deletion_insertion(model, x, y, m, n_steps=args.steps)
        for i in range(len(x)):
            d = Deletion(lm, x[i:i + 1], onehot[i:i + 1], baseline_mode=0.5, steps=args.steps,
                         activation="softmax").evaluate(m[i:i + 1])
            ins = Insertion(lm, x[i:i + 1], onehot[i:i + 1], baseline_mode=lambda _, i=i: blurred[i:i + 1],
                            steps=args.steps, activation="softmax").evaluate(m[i:i + 1])
            row = {"map": name, "image": i, "deletion_ours": float(ours["deletion"][i]), "deletion_xplique": float(d),
                   "insertion_ours": float(ours["insertion"][i]), "insertion_xplique": float(ins)}
            worst = max(worst, abs(row["deletion_ours"] - d), abs(row["insertion_ours"] - ins))
            rows.append(row)
            print(json.dumps(row), flush=True)
    res = {"xplique": xplique.__version__, "n": args.n, "steps": args.steps, "max_abs_difference": worst, "rows": rows}
    atomic_write_json(Path(args.out), res)
    print(f"largest |ours − Xplique| over {len(rows)} AUCs: {worst:.2e}")


if __name__ == "__main__":
    main()
