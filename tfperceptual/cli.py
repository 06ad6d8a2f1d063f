"""Command-line interface: ``tfperceptual compare ...``."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from .registry import ATTACK_NAMES


def _parse_eps(text):
    """'fpgap=0.1,0.2;fgsm=0.05' → {'fpgap': [0.1, 0.2], 'fgsm': [0.05]}."""
    grids = {}
    if not text:
        return grids
    for part in text.split(";"):
        if not part.strip():
            continue
        name, _, values = part.partition("=")
        name = name.strip()
        if name not in ATTACK_NAMES or not values:
            raise argparse.ArgumentTypeError(f"bad --eps entry {part!r}: expected NAME=e1,e2 with NAME in {ATTACK_NAMES}")
        grids[name] = [float(v) for v in values.split(",")]
    return grids


def _load_data(spec, n):
    from .datasets import load_cifar10, load_imagenet_val, load_mnist, load_sample

    if spec == "cifar10":
        x, y = load_cifar10("test")
    elif spec == "imagenet":
        x, y = load_imagenet_val(with_boxes=False, as_uint8=True, limit=n)  # converted batch by batch
    elif spec == "mnist":
        x, y = load_sample("mnist")
        if n > len(x):
            x, y = load_mnist("test")
    elif spec == "mnist-test":
        x, y = load_mnist("test")
    elif os.path.isfile(spec) and spec.endswith(".npz"):
        with np.load(spec) as z:
            if "images" not in z or "labels" not in z:
                raise SystemExit(f"{spec}: expected arrays 'images' (N, H, W, C) and 'labels' (N,)")
            x, y = z["images"], z["labels"]
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / 255.0
        if x.ndim == 3:
            x = x[..., None]
    else:
        raise SystemExit(f"--data must be 'mnist', 'mnist-test' or a .npz file, got {spec!r}")
    if n > len(x):
        raise SystemExit(f"--n {n} exceeds the {len(x)} images available in {spec!r}")
    if spec == "cifar10":
        # the test split is stored class by class (folders in sorted order): take evenly spaced
        # images, so that n = 1,000 holds 100 of each class rather than 1,000 airplanes
        idx = (np.arange(n) * len(x)) // n
        return x[idx].astype(np.float32), y[idx]
    return (x[:n] if x.dtype == np.uint8 else x[:n].astype(np.float32)), y[:n]


def _names(p, text, allowed, what):
    """'a,b' → ['a', 'b'], every name checked against ``allowed`` (argparse error otherwise)."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in names if t not in allowed]
    if bad:
        p.error(f"unknown {what} {bad}; choose from {tuple(allowed)}")
    return names


def _zoo_model(family):
    """(model, name) of the zoo model for ``family`` (mnist, cifar10, imagenet)."""
    from . import zoo

    builders = {"mnist": zoo.mnist_cnn, "cifar10": zoo.cifar10_cnn, "imagenet": zoo.imagenet_mobilenet}
    return builders[family](), f"tfperceptual zoo.{builders[family].__name__}"


#: perceptual-ball defaults per zoo model: ReLU indices (activation_layers) and λ′
PB_DEFAULTS = {"imagenet": {"layers": range(4, 10), "lambda_perceptual": 1e3},
               "cifar10": {"layers": range(2, 6), "lambda_perceptual": 10.0},
               "mnist": {"layers": range(0, 2), "lambda_perceptual": 100.0}}


def _benchmark(p, args):
    import keras

    from .benchmark_runner import BENCHMARKS, parse_methods, run_benchmarks

    try:
        methods = parse_methods(args.methods)
    except ValueError as e:
        p.error(str(e))
    benches = _names(p, args.benchmarks, BENCHMARKS, "benchmarks")
    if args.n < 1:
        p.error("--n must be ≥ 1")
    family = args.data
    if family not in PB_DEFAULTS:
        p.error("--data must be imagenet, cifar10 or mnist")
    boxes = None
    if family == "imagenet":
        from .datasets import load_imagenet_val

        x, y, boxes, _ = load_imagenet_val(as_uint8=True, limit=args.n)
    else:
        if "weak_localisation" in benches or "pointing_game" in benches:
            p.error(f"{family} has no boxes: use --benchmarks deletion_insertion,sanity")
        x, y = _load_data(family, args.n)
    if args.model:
        model, model_name = keras.models.load_model(args.model, compile=False), args.model
    else:
        model, model_name = _zoo_model(family)
    d = PB_DEFAULTS[family]
    if args.layers is None:
        layers = list(d["layers"])
    elif ":" in args.layers:
        a, b = args.layers.split(":")
        layers = list(range(int(a), int(b)))
    else:
        layers = [t.strip() for t in args.layers.split(",") if t.strip()]
    pb_kwargs = {"layers": layers, "lambda_perceptual": args.lambda_perceptual if args.lambda_perceptual is not None
                 else d["lambda_perceptual"], "lambda_pixel": args.lambda_pixel, "target": args.target,
                 "steps": args.steps, "batch_size": args.pb_batch_size, "max_evaluations": args.max_evaluations}
    checkpoints = args.sanity_checkpoints.split(",") if args.sanity_checkpoints else None
    run_benchmarks(model, x, y, boxes, methods=methods, benchmarks=benches, pb_kwargs=pb_kwargs,
                   n_steps=args.n_steps, insertion_blur=args.insertion_blur, batch_size=args.batch_size,
                   sanity_n=args.sanity_n,
                   sanity_checkpoints=checkpoints, scorecam_max_n=args.scorecam_max_n, out_dir=args.out,
                   data_name=family, model_name=model_name, progress=not args.no_progress)
    print(open(os.path.join(args.out, "report.md"), encoding="utf-8").read())
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="tfperceptual", description="Perceptually constrained adversarial perturbations.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="ε sweeps of all attacks; fooling rate at matched SSIM and PSNR",
                       description="Paper's Sec. V-C protocol: sweep each attack's ε, report the fooling rate "
                                   "at a matched average SSIM and PSNR (Tables II/III), plot Fig. 6.")
    c.add_argument("--model", default=None, help="a .keras model taking pixels in [0, 1] (default: shipped MNIST CNN)")
    c.add_argument("--data", default="mnist",
                   help="'mnist' (shipped sample of the first 1,000 MNIST test images; the full test set from "
                        "$TFPERCEPTUAL_DATA when --n > 1000), 'mnist-test', 'cifar10' (test set), 'imagenet' "
                        "(the 1,300 validation images), or an .npz with images/labels; the matching zoo model "
                        "is used unless --model is given")
    c.add_argument("--n", type=int, default=1000, help="number of images (the first N)")
    c.add_argument("--attacks", default=",".join(ATTACK_NAMES), help="comma-separated subset of " + ",".join(ATTACK_NAMES))
    c.add_argument("--eps", default="", help="ε grids, e.g. 'fpgap=0.1,0.2;fgsm=0.05,0.1' (others: defaults)")
    c.add_argument("--ssim-target", type=float, default=None, help="default: the paper's (0.85 / 0.998 / 0.998)")
    c.add_argument("--psnr-target", type=float, default=None, help="default: the paper's (25 / 57 / 65 dB)")
    c.add_argument("--steps", type=int, default=50)
    c.add_argument("--pgap-solver", default="exact",
                   help="PGAP's step solver: exact (default, batched, certified) or cvxpy / ECOS / CLARABEL")
    c.add_argument("--batch-size", type=int, default=256)
    c.add_argument("--out", default="runs/compare", help="output folder (cache, results.json, report.md, plots)")
    c.add_argument("--no-progress", action="store_true")
    lo = sub.add_parser("localize", help="where perturbations land: SSIM maps against GradCAM++ (Table I, Fig. 5)",
                        description="Paper's Sec. V-A/B: each attack calibrated to a fooling rate ≈ 1, then "
                                    "precision / pixels perturbed / recall / IOU / IOU-outside of the noise maps "
                                    "(1 − SSIM > t) against the GradCAM++ region (CAM > 0.75).")
    lo.add_argument("--data", default="mnist", help="mnist | cifar10 | imagenet | PATH.npz (with --model)")
    lo.add_argument("--model", default=None)
    lo.add_argument("--attacks", default=",".join(ATTACK_NAMES))
    lo.add_argument("--eps", default="", help="fixed ε per attack, e.g. 'fpgap=0.3;fgsm=0.1' (others: calibrated)")
    lo.add_argument("--n", type=int, default=100)
    lo.add_argument("--n-calibration", type=int, default=100)
    lo.add_argument("--target-fooling", type=float, default=0.99)
    lo.add_argument("--refine", type=int, default=3, help="bisection steps of the ε calibration after the grid")
    lo.add_argument("--steps", type=int, default=50)
    lo.add_argument("--batch-size", type=int, default=32)
    lo.add_argument("--out", default="runs/localize")
    lo.add_argument("--no-progress", action="store_true")
    be = sub.add_parser("benchmark", help="saliency benchmarks: perceptual ball vs tf-keras-vis baselines",
                        description="Elliott et al. (CVPR 2021) Sec. 4: weak localisation, pointing game, "
                                    "deletion/insertion AUC and cascading-randomisation sanity checks for the "
                                    "perceptual-ball explainer and tf-keras-vis baselines.")
    be.add_argument("--data", default="imagenet", help="imagenet (with boxes) | cifar10 | mnist")
    be.add_argument("--model", default=None, help="a .keras model (default: the zoo model of --data)")
    be.add_argument("--methods", default="perceptual_ball@0,perceptual_ball@5,perceptual_ball_guided@5,noper@5,"
                                         "gradcam,gradcam++,saliency,smoothgrad",
                    help="NAME[@σ],…: perceptual_ball, perceptual_ball_guided, noper, saliency, smoothgrad, "
                         "gradcam, gradcam++, scorecam")
    be.add_argument("--benchmarks", default="deletion_insertion,weak_localisation,pointing_game,sanity")
    be.add_argument("--n", type=int, default=100)
    be.add_argument("--layers", default=None, help="perceptual-ball layers: 'a:b' (ReLU indices a..b-1) or names")
    be.add_argument("--lambda-perceptual", type=float, default=None)
    be.add_argument("--lambda-pixel", type=float, default=1.0)
    be.add_argument("--target", type=float, default=-2.0)
    be.add_argument("--steps", type=int, default=100, help="L-BFGS iterations")
    be.add_argument("--max-evaluations", type=int, default=None,
                    help="also stop L-BFGS after this many loss-and-gradient evaluations per problem (the "
                         "authors' torch L-BFGS: 1.25 × steps, i.e. 125; default: no budget)")
    be.add_argument("--n-steps", type=int, default=50, help="deletion/insertion curve steps")
    be.add_argument("--insertion-blur", choices=("gaussian", "rise"), default="gaussian",
                    help="insertion's blurred substrate: full Gaussian σ = 5 px, or the RISE code's 11 × 11 kernel")
    be.add_argument("--sanity-n", type=int, default=4)
    be.add_argument("--sanity-checkpoints", default=None, help="layer names recorded in the sanity check")
    be.add_argument("--scorecam-max-n", type=int, default=None)
    be.add_argument("--batch-size", type=int, default=32, help="images per streamed (cached) batch")
    be.add_argument("--pb-batch-size", type=int, default=4,
                    help="images per L-BFGS problem: TFP's batched line search runs until its slowest row is "
                         "done, so large batches cost more evaluations per image (NoPer on ImageNet: 25.5 s "
                         "per image at 32, 14.7 at 8, 9.4 at 4)")
    be.add_argument("--out", default="runs/benchmark")
    be.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    if args.command == "benchmark":
        return _benchmark(p, args)

    if args.command == "compare":
        attacks = _names(p, args.attacks, ATTACK_NAMES, "attacks")
        if args.n < 1:
            p.error("--n must be ≥ 1")
        try:
            grids = _parse_eps(args.eps)
        except argparse.ArgumentTypeError as e:
            p.error(str(e))
        import keras

        from .compare import PAPER_TABLES, compare
        from .registry import EPS_GRIDS_BY_DATA

        family = "mnist" if args.data in ("mnist", "mnist-test") else args.data
        if family not in PAPER_TABLES:
            family = "custom"
        if args.model is not None:
            model, model_name = keras.models.load_model(args.model, compile=False), args.model
        elif family == "custom":
            p.error("--model is required with a custom --data file")
        else:
            model, model_name = _zoo_model(family)
        x, y = _load_data(args.data, args.n)
        defaults = PAPER_TABLES.get(family, PAPER_TABLES["mnist"])
        grids = {**EPS_GRIDS_BY_DATA.get(family, EPS_GRIDS_BY_DATA["mnist"]), **grids}
        compare(model, x, y, attacks=attacks, eps_grids=grids, out_dir=args.out,
                      ssim_target=args.ssim_target if args.ssim_target is not None else defaults["ssim_target"],
                      psnr_target=args.psnr_target if args.psnr_target is not None else defaults["psnr_target"],
                      steps=args.steps, batch_size=args.batch_size, data_name=family,
                      model_name=model_name, progress=not args.no_progress, pgap_solver=args.pgap_solver)
        print((open(os.path.join(args.out, "report.md"), encoding="utf-8").read()).split("## Sweep points")[0])
        print(f"wrote {args.out}/results.json, report.md, fooling_vs_ssim.png, fooling_vs_psnr.png")
        return 0
    if args.command == "localize":
        import keras

        from .localize import run_localize

        attacks = _names(p, args.attacks, ATTACK_NAMES, "attacks")
        try:
            fixed = {k: v[0] for k, v in _parse_eps(args.eps).items()}
        except argparse.ArgumentTypeError as e:
            p.error(str(e))
        family = "mnist" if args.data in ("mnist", "mnist-test") else args.data
        if args.model is not None:
            model, model_name = keras.models.load_model(args.model, compile=False), args.model
        elif family not in ("mnist", "cifar10", "imagenet"):
            p.error("--model is required with a custom --data file")
        else:
            model, model_name = _zoo_model(family)
        x, y = _load_data(args.data, args.n)
        run_localize(model, x, y, attacks=attacks, eps=fixed, target_fooling=args.target_fooling, refine=args.refine,
                     n_calibration=args.n_calibration, steps=args.steps, batch_size=args.batch_size,
                     out_dir=args.out, data_name=family, model_name=model_name, progress=not args.no_progress)
        print(open(os.path.join(args.out, "report.md"), encoding="utf-8").read())
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
