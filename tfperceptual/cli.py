"""Command-line interface: ``tfperceptual compare | localize | benchmark | counterfactual | probe | perceive |
robustness``.

* Bad arguments — and data or models that do not fit them — print **one line** naming the argument and
  what is expected, and exit with status 2 (``--debug`` shows the traceback instead).
* Start-up noise of the libraries underneath (TensorFlow's C++ start-up lines, Foolbox's deprecation
  notice, Keras's input-structure warnings, TFP's and tf-keras-vis's deprecation warnings) is quieted
  (``--verbose`` shows it).  Only this command-line tool does that; the library leaves logging alone.
* Every command takes ``--seed`` (default 0): the same seed gives the same ``results.json``.

TensorFlow is imported only once the command line is known (so that the quieting applies to it); the
argument parser itself is built after that, from the registries of attacks and explainers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
import zipfile

__all__ = ["main", "UsageError"]


class UsageError(Exception):
    """A command-line argument (or the file it names) is unusable: reported as one line, exit status 2."""

    def __init__(self, argument, message):
        super().__init__(f"argument {argument}: {message}")
        self.argument = argument


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block), exit status 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


# ----------------------------------------------------------------------------- quiet start-up
@contextlib.contextmanager
def _stderr_silenced():
    """Silence file descriptor 2 (C++ logging writes there directly, below Python's sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _quiet_imports(verbose):
    """Import the library (and so TensorFlow, Keras, Foolbox, TFP, tf-keras-vis), quietly unless ``verbose``."""
    if verbose:
        import tfperceptual.protocols  # noqa: F401
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=r"The structure of `inputs` doesn't match")
    with _stderr_silenced():
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
        tf.config.list_physical_devices()  # device discovery logs (e.g. a failed cuInit on CPU machines) here
        import foolbox  # noqa: F401
        import tensorflow_probability  # noqa: F401
        import tf_keras_vis.gradcam  # noqa: F401

        import tfperceptual.protocols  # noqa: F401


# ----------------------------------------------------------------------------- argument types
def _int(minimum):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be ≥ {minimum}, got {v}")
        return v
    return parse


def _float(low=None, high=None, low_open=False, high_open=False):
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        bad = (v != v or v in (float("inf"), float("-inf")) or (low is not None and (v < low or (low_open and v == low)))
               or (high is not None and (v > high or (high_open and v == high))))
        if bad:
            where = f"{'(' if low_open else '['}{low if low is not None else '-inf'}, " \
                    f"{high if high is not None else 'inf'}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"must be a number in {where}, got {text!r}")
        return v
    return parse


def _names(text, allowed, argument):
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in names if t not in allowed]
    if bad or not names:
        raise UsageError(argument, f"unknown {bad or 'empty list'}; choose from {', '.join(allowed)}")
    return names


def _parse_eps(text, allowed, argument="--eps", single=False):
    """'fpgap=0.1,0.2;fgsm=0.05' → {'fpgap': [0.1, 0.2], 'fgsm': [0.05]} (names, values and each attack's ε
    range checked; ``single``: one ε per attack)."""
    from .attacks import ATTACKS

    grids = {}
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        name, _, values = part.partition("=")
        name = name.strip()
        if name not in allowed or not values.strip():
            raise UsageError(argument, f"bad entry {part!r}: expected NAME=e1,e2 with NAME in {', '.join(allowed)}")
        try:
            eps = [float(v) for v in values.split(",")]
        except ValueError:
            raise UsageError(argument, f"bad entry {part!r}: ε values must be numbers") from None
        low, high = ATTACKS[name].eps_range
        if any(not (e > low and e != float("inf") and (high is None or e < high)) for e in eps):
            where = f"({low:g}, {'inf' if high is None else f'{high:g}'})"
            raise UsageError(argument, f"bad entry {part!r}: {name}'s ε ({ATTACKS[name].eps_unit}) must lie in {where}")
        if single and len(eps) != 1:
            raise UsageError(argument, f"bad entry {part!r}: one fixed ε per attack (the others are calibrated)")
        grids[name] = eps
    return grids


# ----------------------------------------------------------------------------- data and models
def _family(spec):
    from .protocols.presets import DATASETS

    return "mnist" if spec in ("mnist", "mnist-test") else spec if spec in DATASETS else "custom"


def _read_npz(spec):
    import numpy as np

    from .protocols.presets import DATASETS

    if os.path.isdir(spec):
        raise UsageError("--data", f"{spec!r} is a folder; expected one of {', '.join(DATASETS)} or an .npz file")
    if not os.path.exists(spec):
        looks_like_file = os.sep in spec or spec.endswith(".npz")
        raise UsageError("--data", f"file not found: {spec!r}" if looks_like_file else
                         f"unknown dataset {spec!r}; expected one of {', '.join(DATASETS)} or an .npz file")
    if not spec.endswith(".npz"):
        raise UsageError("--data", f"{spec!r} is not an .npz file (expected arrays 'images' (N, H, W, C) and "
                                   "'labels' (N,))")
    try:
        with np.load(spec, allow_pickle=False) as z:
            if "images" not in z.files or "labels" not in z.files:
                raise UsageError("--data", f"{spec}: expected arrays 'images' (N, H, W, C) and 'labels' (N,), found "
                                           f"{z.files}")
            x, y = z["images"], z["labels"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise UsageError("--data", f"cannot read {spec!r} as an .npz file: {e}") from None
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise UsageError("--data", f"{spec}: images must have shape (N, H, W, C) or (N, H, W), got {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise UsageError("--data", f"{spec}: holds {len(x)} images but labels of shape {y.shape} "
                                   f"(expected ({len(x)},))")
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise UsageError("--data", f"{spec}: images must be uint8 (0..255) or float in [0, 1], got {x.dtype}")
    return x, y


def _load_data(spec, n, boxes=False):
    """``(images, labels[, boxes])`` of ``--data`` limited to the first ``n`` (CIFAR-10: class-balanced)."""
    import numpy as np

    from .datasets import DataNotFoundError, load_cifar10, load_imagenet_val, load_mnist, load_sample

    box = None
    try:
        if spec == "cifar10":
            x, y = load_cifar10("test")
        elif spec == "imagenet":
            if boxes:
                x, y, box, _ = load_imagenet_val(as_uint8=True, limit=n)
            else:
                x, y = load_imagenet_val(with_boxes=False, as_uint8=True, limit=n)  # converted batch by batch
        elif spec == "mnist":
            x, y = load_sample("mnist")
            if n > len(x):
                x, y = load_mnist("test")
        elif spec == "mnist-test":
            x, y = load_mnist("test")
        else:
            x, y = _read_npz(spec)
    except DataNotFoundError as e:
        raise UsageError("--data", str(e)) from None
    if n > len(x):
        raise UsageError("--n", f"{n} exceeds the {len(x)} images available in --data {spec!r}")
    if spec == "cifar10":
        # the test split is stored class by class (folders in sorted order): take evenly spaced
        # images, so that n = 1,000 holds 100 of each class rather than 1,000 airplanes
        idx = (np.arange(n) * len(x)) // n
        x, y = x[idx].astype(np.float32), y[idx]
    else:
        x, y = (x[:n] if x.dtype == np.uint8 else x[:n].astype(np.float32)), y[:n]
    return (x, y, box) if boxes else (x, y)


def _load_model(path, family, argument="--model"):
    """``(model, name, is_zoo)``: the ``--model`` file (``argument`` names it in errors), or the zoo model of the
    data family."""
    import keras

    from .protocols.presets import zoo_model

    if path is None:
        if family == "custom":
            raise UsageError("--model", "required with an .npz --data file (a .keras model taking pixels in [0, 1])")
        model, name = zoo_model(family)
        return model, name, True
    if not os.path.exists(path):
        raise UsageError(argument, f"file not found: {path!r}")
    if os.path.isdir(path) or not zipfile.is_zipfile(path):
        raise UsageError(argument, f"{path!r} is not a .keras model file (a zip archive written by model.save)")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - Keras raises many kinds; all mean "not loadable"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(argument, f"cannot load {path!r} as a Keras model: {first}") from None
    return model, path, False


def _check_fit(model, x, y, model_arg, data_arg):
    """The model must take these images and know these labels (else a usage error naming ``--data``)."""
    from .models import as_logits_model
    from .protocols.runner import check_dataset

    try:
        lm = as_logits_model(model)
    except (ValueError, TypeError) as e:
        raise UsageError("--model", f"{model_arg}: {e}") from None
    want = lm.image_shape
    got = tuple(x.shape[1:])
    if any(w is not None and w != g for w, g in zip(want, got)):
        raise UsageError("--data", f"images of shape {got} do not fit the model's input {tuple(want)} "
                                   f"({model_arg}); pass matching --data and --model")
    if len(y) and (int(min(y)) < 0 or int(max(y)) >= lm.num_classes):
        raise UsageError("--data", f"labels range over [{int(min(y))}, {int(max(y))}] but the model "
                                   f"({model_arg}) has {lm.num_classes} classes")
    try:
        check_dataset(lm, x, y)  # pixels in [0, 1] (or uint8), finite, integer labels
    except (ValueError, TypeError) as e:
        raise UsageError("--data", f"{data_arg}: {e}") from None


# ----------------------------------------------------------------------------- commands
def _compare(args):
    from .attacks import attack_names
    from .protocols.compare import compare
    from .protocols.presets import EPS_GRIDS_BY_DATA, PAPER_TABLES

    attacks = _names(args.attacks, attack_names(), "--attacks")
    grids = _parse_eps(args.eps, attack_names())
    family = _family(args.data)
    x, y = _load_data(args.data, args.n)
    model, model_name, is_zoo = _load_model(args.model, family)
    _check_fit(model, x, y, model_name, args.data)
    defaults = PAPER_TABLES.get(family, PAPER_TABLES["mnist"])
    grids = {**EPS_GRIDS_BY_DATA.get(family, EPS_GRIDS_BY_DATA["mnist"]), **grids}
    compare(model, x, y, attacks=attacks, eps_grids=grids, out_dir=args.out,
            ssim_target=args.ssim_target if args.ssim_target is not None else defaults["ssim_target"],
            psnr_target=args.psnr_target if args.psnr_target is not None else defaults["psnr_target"],
            steps=args.steps, batch_size=args.batch_size, data_name=family, model_name=model_name,
            progress=not args.no_progress, pgap_solver=args.pgap_solver, seed=args.seed,
            paper=PAPER_TABLES.get(family) if is_zoo else None)
    report = open(os.path.join(args.out, "report.md"), encoding="utf-8").read()
    print(report.split("## Sweep points")[0])
    print(f"wrote {args.out}/results.json, timings.json, report.md, fooling_vs_ssim.png, fooling_vs_psnr.png")
    return 0


def _localize(args):
    from .attacks import attack_names
    from .models import class_names
    from .protocols.localize import run_localize

    attacks = _names(args.attacks, attack_names(), "--attacks")
    fixed = {k: v[0] for k, v in _parse_eps(args.eps, attack_names(), single=True).items()}
    family = _family(args.data)
    x, y = _load_data(args.data, args.n)
    model, model_name, is_zoo = _load_model(args.model, family)
    _check_fit(model, x, y, model_name, args.data)
    names = class_names(family) if family != "custom" else None
    run_localize(model, x, y, attacks=attacks, eps=fixed, target_fooling=args.target_fooling, refine=args.refine,
                 n_calibration=args.n_calibration, steps=args.steps, batch_size=args.batch_size, out_dir=args.out,
                 data_name=family, model_name=model_name, progress=not args.no_progress, seed=args.seed,
                 paper=is_zoo and family == "imagenet", class_names=names)
    print(open(os.path.join(args.out, "report.md"), encoding="utf-8").read())
    return 0


def _layers(text, default):
    if text is None:
        return list(default)
    if ":" in text:
        a, _, b = text.partition(":")
        try:
            return list(range(int(a), int(b)))
        except ValueError:
            raise UsageError("--layers", f"expected 'a:b' (ReLU indices a..b-1) or layer names, got {text!r}") from None
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UsageError("--layers", "empty layer list")
    return [int(t) if t.lstrip("-").isdigit() else t for t in names]


def _check_benchmark_layers(model, methods, layers, lambda_perceptual, checkpoints):
    """The layers the methods need exist in the model (before any time is spent): --layers for the perceptual
    ball, a convolutional feature map for the CAMs, --sanity-checkpoints among the layers with weights."""
    from .evaluation.saliency_metrics import kernel_layers
    from .explain import EXPLAINERS, NoPer, PerceptualBall
    from .models import feature_model, penultimate_conv_layer

    names = {n for n, _ in methods}
    classes = [EXPLAINERS[n] for n in names if isinstance(EXPLAINERS[n], type)]
    if any(issubclass(c, PerceptualBall) and not issubclass(c, NoPer) for c in classes):
        if not layers and lambda_perceptual > 0:
            raise UsageError("--layers", "no layer selected: the perceptual term needs at least one (or pass "
                                         "--lambda-perceptual 0)")
        try:
            feature_model(model, layers)
        except (ValueError, TypeError) as e:
            raise UsageError("--layers", str(e)) from None
    cams = [n for n in names if getattr(EXPLAINERS[n], "needs_feature_layer", False)]
    if cams:
        try:
            penultimate_conv_layer(model)
        except ValueError as e:
            raise UsageError("--methods", f"{', '.join(sorted(cams))}: {e}") from None
    if checkpoints is not None:
        known = [layer.name for layer in kernel_layers(model)]
        bad = [c for c in checkpoints if c not in known]
        if bad:
            raise UsageError("--sanity-checkpoints", f"{bad} are not layers with weights; top-down: "
                                                     f"{', '.join(known[::-1][:8])}, …")


def _benchmark(args):
    from .protocols.presets import BENCHMARKS, BOX_BENCHMARKS, PB_DEFAULTS, default_benchmarks
    from .protocols.saliency_benchmark import parse_methods, run_benchmarks

    try:
        methods = parse_methods(args.methods)
    except ValueError as e:
        raise UsageError("--methods", str(e)) from None
    family = args.data
    benches = (_names(args.benchmarks, BENCHMARKS, "--benchmarks") if args.benchmarks
               else list(default_benchmarks(family)))
    if family != "imagenet" and any(b in BOX_BENCHMARKS for b in benches):
        raise UsageError("--benchmarks", f"{family} has no ground-truth boxes: choose from "
                                         f"{', '.join(default_benchmarks(family))}")
    x, y, boxes = _load_data(family, args.n, boxes=True)
    model, model_name, is_zoo = _load_model(args.model, family)
    _check_fit(model, x, y, model_name, args.data)
    d = PB_DEFAULTS[family]
    pb_kwargs = {"layers": _layers(args.layers, d["layers"]),
                 "lambda_perceptual": d["lambda_perceptual"] if args.lambda_perceptual is None else args.lambda_perceptual,
                 "lambda_pixel": args.lambda_pixel, "target": args.target, "steps": args.steps,
                 "batch_size": args.pb_batch_size, "max_evaluations": args.max_evaluations}
    if args.pb_optimizer != "lbfgs":  # only when not the default: earlier caches keep their keys
        pb_kwargs["optimizer"] = args.pb_optimizer
    checkpoints = args.sanity_checkpoints.split(",") if args.sanity_checkpoints else None
    _check_benchmark_layers(model, methods, pb_kwargs["layers"], pb_kwargs["lambda_perceptual"],
                            checkpoints if "sanity" in benches else None)
    run_benchmarks(model, x, y, boxes, methods=methods, benchmarks=benches, pb_kwargs=pb_kwargs,
                   n_steps=args.n_steps, insertion_blur=args.insertion_blur, batch_size=args.batch_size,
                   sanity_n=args.sanity_n, sanity_checkpoints=checkpoints, scorecam_max_n=args.scorecam_max_n,
                   out_dir=args.out, data_name=family, model_name=model_name, progress=not args.no_progress,
                   seed=args.seed, paper=is_zoo and family == "imagenet")
    print(open(os.path.join(args.out, "report.md"), encoding="utf-8").read())
    return 0


def _cf_model(args, family):
    """The model of ``counterfactual`` / ``probe`` (default: the robust zoo model) and the optional judge."""
    from .protocols.presets import counterfactual_model

    if args.model is None:
        if family == "custom":
            raise UsageError("--model", "required with an .npz --data file (a .keras model taking pixels in [0, 1])")
        model, name = counterfactual_model(family)
    else:
        model, name, _ = _load_model(args.model, family)
    judge = None
    if args.judge is not None:
        judge, _, _ = _load_model(args.judge, "custom", "--judge")
    return model, name, judge


def _cf_eps(args, family):
    from .protocols.presets import COUNTERFACTUAL_EPS

    if args.eps is not None:
        return args.eps
    if family not in COUNTERFACTUAL_EPS:
        raise UsageError("--eps", "required with an .npz --data file (the ℓ2 budget; ℓ1-q gets ε √d)")
    return COUNTERFACTUAL_EPS[family]


def _counterfactual(args):
    from .models import class_names
    from .protocols.counterfactuals import run_counterfactuals
    from .protocols.presets import COUNTERFACTUAL_POOL

    norms = _names(args.norms, ("l1q", "l2"), "--norms")
    family = _family(args.data)
    pool = args.pool if args.pool is not None else COUNTERFACTUAL_POOL.get(family, 1000)
    if family == "custom":
        x, y = _read_npz(args.data)
        x, y = x[:pool], y[:pool]
    else:
        x, y = _load_data(args.data, pool)
    model, model_name, judge = _cf_model(args, family)
    _check_fit(model, x, y, model_name, args.data)
    if judge is not None:
        try:
            _check_fit(judge, x, y, args.judge, args.data)
        except UsageError as e:
            raise UsageError("--judge", str(e).split(": ", 1)[1]) from None
    try:
        run_counterfactuals(model, x, y, norms=norms, mode=args.mode, eps=_cf_eps(args, family), eps_l1=args.eps_l1,
                            q=args.q, steps=args.steps, n=args.n, errors_only=not args.all_images, out_dir=args.out,
                            data_name=family, model_name=model_name,
                            class_names=class_names(family) if family != "custom" else None, judge=judge,
                            progress=not args.no_progress, seed=args.seed, batch_size=args.batch_size, c=args.c,
                            box=args.box)
    except ValueError as e:
        if "no error" in str(e):
            raise UsageError("--pool", f"{e}; scan more images with --pool, or pass other --data") from None
        raise
    print(open(os.path.join(args.out, "report.md"), encoding="utf-8").read())
    return 0


def _probe(args):
    from .models import as_logits_model, class_names
    from .protocols.counterfactuals import run_probe
    from .protocols.presets import PROBE_CLASSES

    family = args.data
    model, model_name, judge = _cf_model(args, family)
    try:
        num_classes = as_logits_model(model).num_classes
    except (ValueError, TypeError) as e:
        raise UsageError("--model", str(e)) from None
    if args.classes is None:
        classes = [k for k in PROBE_CLASSES[family] if k < num_classes]
        if not classes:
            raise UsageError("--classes", f"the model has {num_classes} classes, none of the default probe classes "
                                          f"{list(PROBE_CLASSES[family])}: pass --classes")
    else:
        try:
            classes = [int(t) for t in args.classes.split(",") if t.strip()]
        except ValueError:
            raise UsageError("--classes", f"expected comma-separated class indices, got {args.classes!r}") from None
        bad = [k for k in classes if not 0 <= k < num_classes]
        if bad or not classes:
            raise UsageError("--classes", f"{bad or 'empty list'}: classes must lie in [0, {num_classes})")
    shape = as_logits_model(model).image_shape
    if args.image_size is not None or any(d is None for d in shape[:2]):
        size = args.image_size or {"imagenet": 227, "cifar10": 32, "mnist": 28}[family]
        if any(d is not None and d != size for d in shape[:2]):
            raise UsageError("--image-size", f"{size} does not fit the model's input {tuple(shape)}")
        shape = (size, size, shape[2] if shape[2] is not None else 3)
    if judge is not None:  # the judge must read images of this shape and know the classes
        import numpy as np

        probe_x = np.zeros((1, *shape), np.float32)
        try:
            _check_fit(judge, probe_x, np.array([max(classes)]), args.judge, f"probes of shape {shape}")
        except UsageError as e:
            raise UsageError("--judge", str(e).split(": ", 1)[1]) from None
    run_probe(model, classes, n_per_class=args.n_per_class, image_shape=shape, eps=_cf_eps(args, family), eps_l1=args.eps_l1, q=args.q,
              steps=args.steps, out_dir=args.out, data_name=family, model_name=model_name,
              class_names=class_names(family), judge=judge, progress=not args.no_progress, seed=args.seed,
              c=args.c, box=args.box)
    print(open(os.path.join(args.out, "report.md"), encoding="utf-8").read())
    return 0


def _perceive_eps(text):
    """'pgd=0.2;l1q=30' → {'pgd': 0.2, 'l1q': 30.0}, each ε checked against its attack's range."""
    from .attacks import ATTACKS
    from .protocols.perception import PERCEPTION_ATTACKS

    out = {}
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        name, _, value = (t.strip() for t in part.partition("="))
        if name not in PERCEPTION_ATTACKS or not value:
            raise UsageError("--eps", f"bad entry {part!r}: expected NAME=ε with NAME in "
                                      f"{', '.join(PERCEPTION_ATTACKS)}")
        try:
            eps = float(value)
        except ValueError:
            raise UsageError("--eps", f"bad entry {part!r}: ε must be a number") from None
        cls = ATTACKS[PERCEPTION_ATTACKS[name][0]]
        low, high = cls.eps_range
        if not (eps > low and eps != float("inf") and (high is None or eps < high)):
            where = f"({low:g}, {'inf' if high is None else f'{high:g}'})"
            raise UsageError("--eps", f"bad entry {part!r}: {name}'s ε ({cls.eps_unit}) must lie in {where}")
        out[name] = eps
    return out


def _perceive(args):
    from .models import PerceptualRegularization, class_names
    from .models import zoo as model_zoo
    from .protocols.perception import PERCEPTION_ATTACKS, run_perception

    attacks = _names(args.attacks, tuple(PERCEPTION_ATTACKS), "--attacks")
    eps = _perceive_eps(args.eps)
    if args.model is None:
        try:
            model = model_zoo.mnist_perceptual() if args.data == "mnist" else model_zoo.cifar10_perceptual()
        except FileNotFoundError as e:
            raise UsageError("--model", str(e)) from None
        name = f"{args.data}_perceptual (shipped)"
    else:
        model, name, _ = _load_model(args.model, args.data)
        if not isinstance(model, PerceptualRegularization):
            raise UsageError("--model", f"{args.model!r} holds a {type(model).__name__}, not a "
                                        "PerceptualRegularization (a classifier with a decoder head)")
    x, y = _load_data("mnist-test" if args.data == "mnist" else args.data, args.n)
    x = x.astype("float32") / 255.0 if x.dtype.kind == "u" else x
    _check_fit(model, x, y, name, args.data)
    judge = None
    if args.judge is not None:
        judge, _, _ = _load_model(args.judge, "custom", "--judge")
        try:
            _check_fit(judge, x, y, args.judge, args.data)
        except UsageError as e:
            raise UsageError("--judge", str(e).split(": ", 1)[1]) from None
    steps = {a: args.steps for a in attacks} if args.steps is not None else None
    run_perception(model, x, y, attacks=attacks, eps=eps, steps=steps, judge=judge, data_name=args.data,
                   model_name=name, class_names=class_names(args.data), noise_per_class=args.noise_per_class,
                   out_dir=args.out, seed=args.seed, batch_size=args.batch_size, progress=not args.no_progress)
    print(open(os.path.join(args.out, "report.md"), encoding="utf-8").read())
    return 0


#: zoo models ``robustness --model`` takes by name
_ZOO_NAMES = ("mnist_cnn", "mnist_cnn_robust", "cifar10_cnn", "cifar10_cnn_robust", "cifar10_cnn_ssim_robust",
              "imagenet_mobilenet")
#: default threats of ``robustness`` per dataset family (ℓ∞, ℓ2 and the SSIM ball at the robust models' radii)
_DEFAULT_THREATS = {"mnist": "linf:0.3,l2:2.0,ssim:0.3", "cifar10": "linf:0.03137,l2:0.5,ssim:0.015",
                    "imagenet": "linf:0.01569,ssim:0.015", "custom": None}


def _robustness(args):
    from .models import zoo
    from .protocols.robustness import parse_threats, run_robustness

    family = _family(args.data)
    text = args.threat if args.threat is not None else _DEFAULT_THREATS[family]
    if text is None:
        raise UsageError("--threat", "required with an .npz --data file, e.g. 'linf:0.03,l2:0.5,ssim:0.015'")
    try:
        threats = parse_threats(text)
    except ValueError as e:
        raise UsageError("--threat", str(e)) from None
    x, y = _load_data(args.data, args.n)
    if args.model in _ZOO_NAMES:
        model, model_name = getattr(zoo, args.model)(), f"tfperceptual zoo.{args.model}"
    else:
        model, model_name, _ = _load_model(args.model, family)
    _check_fit(model, x, y, model_name, args.data)
    run_robustness(model, x, y, threats=threats, version=args.version, out_dir=args.out, batch_size=args.batch_size,
                   seed=args.seed, steps=args.steps, square_queries=args.square_queries,
                   ssim_queries=args.ssim_queries, sanity_n=args.sanity_n, data_name=family, model_name=model_name,
                   progress=not args.no_progress)
    print(open(os.path.join(args.out, "report.md"), encoding="utf-8").read())
    return 0


# ----------------------------------------------------------------------------- parser
class _FMT(argparse.HelpFormatter):
    """Help with each option's default, unless the help already says it or there is none to show."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, "", argparse.SUPPRESS, False) or "default" in text or "%(default)" in text:
            return text
        return text + " (default: %(default)s)"


def _common(p, out):
    p.add_argument("--seed", type=_int(0), default=0,
                   help="seed of every random draw (Foolbox's random starts, SmoothGrad's noise, re-initialisation); "
                        "the same seed gives the same results.json")
    p.add_argument("--out", default=out, help="output folder (cache, results.json, report.md, figures)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--verbose", action="store_true", help="show the start-up messages and warnings of TensorFlow, "
                                                          "Keras, Foolbox and tf-keras-vis")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")


def _strategy(p):
    from .protocols.replicas import STRATEGIES

    p.add_argument("--strategy", choices=STRATEGIES, default="default",
                   help="'mirrored': tf.distribute.MirroredStrategy over every GPU (else every logical CPU device); "
                        "--batch-size batches go to the replicas R at a time, and results.json is the same as "
                        "without it")


def _compare_parser(sub, attacks, registered, solvers):
    c = sub.add_parser("compare", formatter_class=_FMT,
                       help="ε sweeps of all attacks; fooling rate at matched SSIM and PSNR",
                       description="Paper's Sec. V-C protocol: sweep each attack's ε, report the fooling rate "
                                   "at a matched average SSIM and PSNR (Tables II/III), plot Fig. 6.")
    c.add_argument("--model", default=None,
                   help="a .keras model taking pixels in [0, 1] (default: the zoo model of --data)")
    c.add_argument("--data", default="mnist",
                   help="'mnist' (shipped sample of the first 1,000 MNIST test images; the full test set from "
                        "$TFPERCEPTUAL_DATA when --n > 1000), 'mnist-test', 'cifar10' (test set), 'imagenet' "
                        "(the 1,300 validation images), or an .npz with arrays images (N, H, W, C) and labels (N,)")
    c.add_argument("--n", type=_int(1), default=1000, help="number of images (the first N)")
    c.add_argument("--attacks", default=attacks, help=f"comma-separated attacks of {registered} (default: the "
                                                      f"paper's {attacks})")
    c.add_argument("--eps", default="", help="ε grids, e.g. 'fpgap=0.1,0.2;fgsm=0.05,0.1' (others: the data's grid)")
    c.add_argument("--ssim-target", type=_float(0, 1, low_open=True), default=None,
                   help="matched average SSIM (default: the paper's, 0.85 / 0.998 / 0.998)")
    c.add_argument("--psnr-target", type=_float(0, None, low_open=True), default=None,
                   help="matched average PSNR in dB (default: the paper's, 25 / 57 / 65)")
    c.add_argument("--steps", type=_int(1), default=50, help="attack steps")
    c.add_argument("--pgap-solver", choices=solvers, default="exact",
                   help="PGAP's step solver: exact (batched, certified) or CVXPY")
    c.add_argument("--batch-size", type=_int(1), default=256, help="images per attack call")
    _strategy(c)
    _common(c, "runs/compare")


def _localize_parser(sub, attacks, registered):
    lo = sub.add_parser("localize", formatter_class=_FMT,
                        help="where perturbations land: SSIM maps against Grad-CAM++ (Table I, Fig. 5)",
                        description="Paper's Sec. V-A/B: each attack calibrated to a fooling rate ≈ 1, then "
                                    "precision / pixels perturbed / recall / IOU / IOU-outside of the noise maps "
                                    "(1 − SSIM > t) against the Grad-CAM++ region (CAM > 0.75).")
    lo.add_argument("--data", default="mnist", help="mnist | mnist-test | cifar10 | imagenet | PATH.npz (with --model)")
    lo.add_argument("--model", default=None, help="a .keras model taking pixels in [0, 1] (default: the zoo model)")
    lo.add_argument("--attacks", default=attacks, help=f"comma-separated attacks of {registered} (default: the "
                                                       f"paper's {attacks})")
    lo.add_argument("--eps", default="", help="fixed ε per attack, e.g. 'fpgap=0.3;fgsm=0.1' (others: calibrated)")
    lo.add_argument("--n", type=_int(1), default=100, help="number of images (the first N)")
    lo.add_argument("--n-calibration", type=_int(1), default=100, help="images (the first ones) used to calibrate ε")
    lo.add_argument("--target-fooling", type=_float(0, 1, low_open=True), default=0.99,
                    help="fooling rate the calibrated ε must reach on the calibration images")
    lo.add_argument("--refine", type=_int(0), default=3, help="bisection steps of the ε calibration after the grid")
    lo.add_argument("--steps", type=_int(1), default=50, help="attack steps")
    lo.add_argument("--batch-size", type=_int(1), default=32, help="images per attack call")
    _strategy(lo)
    _common(lo, "runs/localize")


def _benchmark_parser(sub, methods, benchmarks, blurs):
    be = sub.add_parser("benchmark", formatter_class=_FMT,
                        help="saliency benchmarks: perceptual ball vs tf-keras-vis baselines",
                        description="Elliott et al. (CVPR 2021) Sec. 4: weak localisation, pointing game, "
                                    "deletion/insertion AUC and cascading-randomisation sanity checks for the "
                                    "perceptual-ball explainer and tf-keras-vis baselines.")
    be.add_argument("--data", default="imagenet", choices=("imagenet", "cifar10", "mnist"),
                    help="dataset (only imagenet has the boxes of weak localisation and the pointing game)")
    be.add_argument("--model", default=None, help="a .keras model (default: the zoo model of --data)")
    be.add_argument("--methods", default="perceptual_ball@0,perceptual_ball@5,perceptual_ball_guided@5,noper@5,"
                                         "gradcam,gradcam++,saliency,smoothgrad",
                    help=f"NAME[@σ],… with NAME in {', '.join(methods)}; σ: blur in pixels")
    be.add_argument("--benchmarks", default=None,
                    help=f"comma-separated subset of {', '.join(benchmarks)} (default: all four for imagenet; "
                         "deletion_insertion,sanity for data without boxes)")
    be.add_argument("--n", type=_int(1), default=100, help="number of images (the first N)")
    be.add_argument("--layers", default=None,
                    help="perceptual-ball layers: 'a:b' (ReLU indices a..b-1) or names (default: the data's preset)")
    be.add_argument("--lambda-perceptual", type=_float(0), default=None, help="λ′ (default: the data's preset)")
    be.add_argument("--lambda-pixel", type=_float(0), default=1.0, help="λ")
    be.add_argument("--target", type=_float(), default=-2.0, help="margin target T")
    be.add_argument("--steps", type=_int(1), default=100, help="L-BFGS iterations")
    be.add_argument("--max-evaluations", type=_int(1), default=None,
                    help="also stop L-BFGS after this many loss-and-gradient evaluations per problem (the "
                         "authors' torch L-BFGS: 1.25 × steps, i.e. 125; default: no budget)")
    be.add_argument("--pb-optimizer", choices=("lbfgs", "lbfgs_fixed"), default="lbfgs",
                    help="the perceptual ball's (and NoPer's) L-BFGS: TFP's with a Hager-Zhang line search, or the "
                         "authors' torch.optim.LBFGS without line search (one evaluation per iteration, every "
                         "image stopped on its own, so --pb-batch-size does not change its results)")
    be.add_argument("--n-steps", type=_int(1), default=50, help="deletion/insertion curve steps")
    be.add_argument("--insertion-blur", choices=blurs, default="gaussian",
                    help="insertion's blurred substrate: full Gaussian σ = 5 px, or the RISE code's 11 × 11 kernel")
    be.add_argument("--sanity-n", type=_int(1), default=4, help="images of the sanity check")
    be.add_argument("--sanity-checkpoints", default=None,
                    help="layer names recorded in the sanity check (default: every layer with weights)")
    be.add_argument("--scorecam-max-n", type=_int(1), default=None, help="Faster-ScoreCAM channels (default: all)")
    be.add_argument("--batch-size", type=_int(1), default=32, help="images per streamed (cached) batch")
    be.add_argument("--pb-batch-size", type=_int(1), default=4,
                    help="images per L-BFGS problem: TFP's batched line search runs until its slowest row is "
                         "done, so large batches cost more evaluations per image (NoPer on ImageNet: 25.5 s "
                         "per image at 32, 14.7 at 8, 9.4 at 4)")
    _strategy(be)
    _common(be, "runs/benchmark")


def _fw_options(p):
    p.add_argument("--eps", type=_float(0, None, low_open=True), default=None,
                   help="ℓ2 budget ε₂ (pixels in [0, 1]; default: 3 MNIST, 2 CIFAR-10, 3 ImageNet)")
    p.add_argument("--eps-l1", type=_float(0, None, low_open=True), default=None,
                   help="ℓ1-q budget (default: the paper's matched ε₂ √d)")
    p.add_argument("--q", type=_float(0, 1, low_open=True), default=0.05,
                   help="fraction of entries an ℓ1-q step modifies (the authors' q is 1 − this)")
    p.add_argument("--steps", type=_int(1), default=30, help="Frank–Wolfe steps")
    p.add_argument("--c", type=_float(0, None, low_open=True), default=2.0, help="FW step size γ_k = c / (c + k)")
    p.add_argument("--box", choices=("exact", "clip", "none"), default="exact",
                   help="pixel box: each step solved over it (exact), iterates clipped (the authors' code), or none")
    p.add_argument("--judge", default=None,
                   help="an independent .keras classifier that reads the perturbed images (fraction it assigns to "
                        "the target, with a 95 %% Wilson interval)")
    p.add_argument("--model", default=None,
                   help="a .keras model taking pixels in [0, 1] (default: the robust zoo model of --data; ImageNet: "
                        "the standard MobileNet, the only one offline)")


def _counterfactual_parser(sub):
    cf = sub.add_parser("counterfactual", formatter_class=_FMT,
                        help="sparse ℓ1-q / ℓ2 Frank–Wolfe counterfactuals of the model's errors (Fig. 2)",
                        description="Roberts & Tsiligkaridis (2021): perturb misclassified images toward the "
                                    "prediction (why this mistake?) or the label (what would correct it?).")
    cf.add_argument("--data", default="mnist", help="mnist | cifar10 | imagenet | PATH.npz (with --model and --eps)")
    cf.add_argument("--mode", choices=("prediction", "label"), default="prediction",
                    help="target: the model's prediction or the true label")
    cf.add_argument("--norms", default="l1q,l2", help="comma-separated subset of l1q,l2")
    cf.add_argument("--n", type=_int(1), default=16,
                    help="images to explain: N of the errors in the pool, evenly spaced (all if fewer)")
    cf.add_argument("--pool", type=_int(1), default=None,
                    help="images scanned for errors (default: 1000; ImageNet 300)")
    cf.add_argument("--all-images", action="store_true",
                    help="with --mode label: explain the first N images, not only errors")
    cf.add_argument("--batch-size", type=_int(1), default=32, help="images per graph call and cache entry")
    _fw_options(cf)
    _strategy(cf)
    _common(cf, "runs/counterfactual")


def _probe_parser(sub):
    pr = sub.add_parser("probe", formatter_class=_FMT,
                        help="concept probes: the model draws each class on noise, ℓ1-q and ℓ2 (Fig. 3)",
                        description="Roberts & Tsiligkaridis (2021) Sec. 3.2: label-targeted Frank–Wolfe "
                                    "perturbations of noise toward each class.")
    pr.add_argument("--data", default="mnist", choices=("mnist", "cifar10", "imagenet"), help="dataset family")
    pr.add_argument("--classes", default=None,
                    help="comma-separated class indices (default: all ten; ImageNet: 1,9,30,483,951,963,980,985)")
    pr.add_argument("--n-per-class", type=_int(1), default=1, help="probes per class")
    pr.add_argument("--image-size", type=_int(1), default=None,
                    help="side of the noise images (default: the model's input; 227 for a model of any size, as "
                         "the zoo MobileNet)")
    _fw_options(pr)
    _common(pr, "runs/probe")


def _perceive_parser(sub):
    pe = sub.add_parser("perceive", formatter_class=_FMT,
                        help="how clean and adversarial images look to a perceptually regularised model",
                        description="Perceptual regularisation (ICLR 2020 submission): panels x, P(x), x_adv, "
                                    "P(x_adv), the latent interpolation D(F(x) + αZ) and noise attacked toward each "
                                    "class, read by an optional independent judge classifier.")
    pe.add_argument("--data", default="mnist", choices=("mnist", "cifar10"), help="dataset (test images)")
    pe.add_argument("--model", default=None,
                    help="a PerceptualRegularization .keras file (default: the shipped model of --data)")
    pe.add_argument("--attacks", default="pgd,fpgap,l1q",
                    help="comma-separated subset of pgd (ℓ∞ PGD), fpgap, pgap (SSIM ball), l1q (ℓ1-q Frank–Wolfe)")
    pe.add_argument("--eps", default="", help="ε per attack, e.g. 'pgd=0.2;l1q=30' (default: MNIST pgd 0.2, fpgap "
                                              "/ pgap 0.3, l1q 30; CIFAR-10 pgd 8/255, fpgap / pgap 0.1, l1q 10)")
    pe.add_argument("--steps", type=_int(1), default=None,
                    help="attack steps (default: pgd 100 on MNIST, 20 on CIFAR-10; fpgap / pgap 50; l1q 30)")
    pe.add_argument("--n", type=_int(1), default=500, help="number of test images (the first N)")
    pe.add_argument("--judge", default=None,
                    help="an independent .keras classifier that reads x_adv, P(x) and P(x_adv) (fractions with 95 %% "
                         "Wilson intervals)")
    pe.add_argument("--noise-per-class", type=_int(0), default=10,
                    help="uniform-noise images attacked toward each class (0: none)")
    pe.add_argument("--batch-size", type=_int(1), default=256, help="images per attack call and cache entry")
    _common(pe, "runs/perceive")


def _robustness_parser(sub):
    ro = sub.add_parser("robustness", formatter_class=_FMT,
                        help="robust accuracy under AutoAttack (ℓ∞, ℓ2 through ART) and the SSIM-ball ensemble",
                        description="Croce & Hein's AutoAttack for ℓp balls (ART) and the project's adaptive "
                                    "ensemble for the SSIM ball (SSIM-APGD-CE, SSIM-APGD-T, FPGAP, PGAP, SSIM-Square), "
                                    "per-image worst case, every adversarial verified; Carlini et al.'s sanity checks.")
    ro.add_argument("--data", default="mnist", help="mnist | mnist-test | cifar10 | imagenet | PATH.npz (with --model)")
    ro.add_argument("--model", default=None,
                    help=f"a .keras model taking pixels in [0, 1], or a zoo name ({', '.join(_ZOO_NAMES)}) "
                         "(default: the zoo model of --data)")
    ro.add_argument("--threat", default=None,
                    help="comma-separated NORM:EPS with NORM in linf, l2, ssim (ssim:EPS or ssim:EPS:EPS1, the S2 and S1 "
                         "radii) (default: mnist 'linf:0.3,l2:2.0,ssim:0.3', cifar10 'linf:0.03137,l2:0.5,ssim:0.015', "
                         "imagenet 'linf:0.01569,ssim:0.015')")
    ro.add_argument("--version", choices=("standard", "fast"), default="standard",
                    help="standard: APGD-CE, APGD-T, Square (SSIM: + FPGAP, PGAP, SSIM-Square); fast: the two APGDs")
    ro.add_argument("--n", type=_int(1), default=100, help="number of images (the first N; CIFAR-10 class-balanced)")
    ro.add_argument("--steps", type=_int(1), default=100, help="APGD iterations (and FPGAP / PGAP steps)")
    ro.add_argument("--square-queries", type=_int(1), default=5000, help="Square's query budget (ℓp)")
    ro.add_argument("--ssim-queries", type=_int(1), default=1000, help="SSIM-Square's query budget")
    ro.add_argument("--sanity-n", type=_int(0), default=100,
                    help="images of Carlini et al.'s sanity checks (the first ones; 0: none)")
    ro.add_argument("--batch-size", type=_int(1), default=128, help="images per attack batch and cache entry")
    _strategy(ro)
    _common(ro, "runs/robustness")


def build_parser():
    """The argument parser (imports the registries, so TensorFlow: call after the quiet start-up)."""
    from .attacks import attack_names, pgap_solvers
    from .evaluation.saliency_metrics import INSERTION_BLURS
    from .protocols.presets import BENCHMARKS
    from .protocols.saliency_benchmark import METHOD_NAMES

    p = _Parser(prog="tfperceptual", description="Perceptually constrained adversarial perturbations and "
                                                 "explanations for Keras models.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    from .protocols.presets import PAPER_ATTACKS

    _compare_parser(sub, ",".join(PAPER_ATTACKS), ",".join(attack_names()), pgap_solvers())
    _localize_parser(sub, ",".join(PAPER_ATTACKS), ",".join(attack_names()))
    _benchmark_parser(sub, METHOD_NAMES, BENCHMARKS, INSERTION_BLURS)
    _counterfactual_parser(sub)
    _probe_parser(sub)
    _perceive_parser(sub)
    _robustness_parser(sub)
    return p


_COMMANDS = {"compare": _compare, "localize": _localize, "benchmark": _benchmark,
             "counterfactual": _counterfactual, "probe": _probe, "perceive": _perceive,
             "robustness": _robustness}


def main(argv=None):
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug, verbose = "--debug" in argv, "--verbose" in argv
    _quiet_imports(verbose)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from .protocols.replicas import strategy_scope

        with strategy_scope(getattr(args, "strategy", "default")) as strategy:  # the model is built inside it
            if getattr(args, "strategy", "default") != "default":
                devices = ", ".join(strategy.extended.worker_devices)
                sys.stderr.write(f"tfperceptual {args.command}: {type(strategy).__name__} over "
                                 f"{strategy.num_replicas_in_sync} replica(s): {devices}\n")
            return _COMMANDS[args.command](args)
    except UsageError as e:
        if debug:
            raise
        sys.stderr.write(f"tfperceptual {args.command}: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"tfperceptual {args.command}: interrupted; rerun the same command to resume from its "
                         "cache\n")
        return 130
    except Exception as e:  # noqa: BLE001 - one line for anything else, the traceback with --debug
        if debug:
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        sys.stderr.write(f"tfperceptual {args.command}: error: {type(e).__name__}: {first} "
                         "(rerun with --debug for the traceback)\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
