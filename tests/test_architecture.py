"""The package's shape: imports flow one way, no cycles, deferred imports only for heavy optional libraries,
and every public name is importable from ``tfperceptual`` without importing TensorFlow first."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: the data flow: a module may import its own component and lower levels (level 1 modules may import
#: each other); nothing imports upwards, and components of one level do not import each other
LEVELS = [
    ("solvers", 0),
    ("tfperceptual.validation", 1), ("tfperceptual.io_utils", 1), ("tfperceptual.image_ops", 1),
    ("tfperceptual.datasets", 1), ("tfperceptual.registry", 1),
    ("tfperceptual.models", 2),
    ("tfperceptual.attacks", 3), ("tfperceptual.explain", 3),
    ("tfperceptual.evaluation", 4), ("tfperceptual.training", 4), ("tfperceptual.baselines", 4),
    ("tfperceptual.protocols", 5), ("tfperceptual.callbacks", 5),
    ("tfperceptual.cli", 6),
]
#: libraries a function may import (to defer a heavy, optional part); the CLI may also defer anything, so
#: that it can quiet TensorFlow before TensorFlow is imported
DEFERRABLE = {"matplotlib", "cvxpy", "foolbox", "eagerpy", "tf_keras_vis", "tensorflow_probability", "skimage", "art",
              "multiprocess"}


def _modules():
    out = {}
    for pkg in ("solvers", "tfperceptual"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            out[".".join(parts)] = (path, is_pkg)
    return out


MODULES = _modules()


def _component(name):
    best = max((c for c, _ in LEVELS if name == c or name.startswith(c + ".")), key=len, default=None)
    return best


def _level(component):
    return dict(LEVELS)[component]


def _imports(name):
    """(imported module, line, inside a function) for every import statement of module ``name``."""
    path, is_pkg = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if is_pkg else name.rpartition(".")[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - (child.level - 1)]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module
                # "from pkg import sub" may import a submodule
                for a in child.names:
                    sub = f"{mod}.{a.name}"
                    found.append((sub if sub in MODULES else mod, child.lineno, in_function))
            visit(child, inside)

    visit(tree, False)
    return found


def test_every_module_belongs_to_a_layer():
    unplaced = [m for m in MODULES if m != "tfperceptual" and _component(m) is None]
    assert not unplaced, f"modules outside the declared layers: {unplaced}"


def test_imports_flow_one_way():
    """The module dependency check: no upward import, no import between components of one level."""
    bad = []
    for name in MODULES:
        if name == "tfperceptual":  # the lazy facade of the public API
            continue
        mine = _component(name)
        for target, line, _ in _imports(name):
            if not (target == "tfperceptual" or target.startswith(("tfperceptual.", "solvers"))):
                continue
            theirs = _component(target)
            if target == "tfperceptual":
                bad.append(f"{name}:{line} imports the package facade 'tfperceptual'")
            elif theirs is None or theirs == mine:
                continue
            elif _level(theirs) > _level(mine):
                bad.append(f"{name}:{line} imports {target} (level {_level(theirs)} > {_level(mine)}: upwards)")
            elif _level(theirs) == _level(mine) and _level(mine) != 1:
                bad.append(f"{name}:{line} imports {target} (another component of level {_level(mine)})")
    assert not bad, "\n".join(bad)


def test_solvers_never_import_keras_or_tfperceptual():
    bad = [(m, t) for m in MODULES if m.startswith("solvers") for t, _, _ in _imports(m)
           if t.split(".")[0] in ("keras", "tfperceptual", "tf_keras")]
    assert not bad


def test_no_import_cycles():
    graph = {m: {t for t, _, _ in _imports(m) if t in MODULES and t != m} for m in MODULES if m != "tfperceptual"}
    state = {}

    def visit(m, stack):
        state[m] = 1
        for t in graph.get(m, ()):
            if t == "tfperceptual":
                continue
            if state.get(t) == 1:
                raise AssertionError(f"import cycle: {' → '.join(stack + [m, t])}")
            if t not in state:
                visit(t, stack + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_function_level_imports_only_defer_heavy_optional_libraries():
    bad = []
    for name in MODULES:
        if name == "tfperceptual.cli":
            continue
        for target, line, in_function in _imports(name):
            if in_function and target.split(".")[0] not in DEFERRABLE:
                bad.append(f"{name}:{line} imports {target} inside a function")
    assert not bad, "\n".join(bad)


def test_the_checker_catches_an_upward_import(tmp_path, monkeypatch):
    """The dependency check fails on a planted upward import (a test that cannot fail is no test)."""
    fake = tmp_path / "attacks_bad.py"
    fake.write_text("from ..protocols import compare\n")
    monkeypatch.setitem(MODULES, "tfperceptual.attacks.bad", (fake, False))
    with pytest.raises(AssertionError, match="upwards"):
        test_imports_flow_one_way()


#: every public name of issues 2–6 (the flat modules' __all__ before the reorganisation)
ISSUES_2_TO_6 = """AttackResult PGAP FPGAP FoolboxAttack FOOLBOX_ATTACKS FGSM FGM PGD PGD_L2 run_benchmarks parse_methods
paired_differences PB_METHODS BENCHMARKS PAPER_TABLE_1 PAPER_TABLE_2 deletion_insertion auc normalise_maps
threshold_grids largest_component_box box_iou weak_localisation pointing_game cascading_randomization
cascade_input_dependence MID_GREY AdversarialEvaluation run_sweep interpolate_at matched_table compare PAPER_TABLES
data_root cache_dir load_mnist load_cifar10 load_imagenet_val read_idx read_image_rgb load_sample DataNotFoundError
CIFAR10_CLASSES PerceptualBall Explanation activation_layers feature_model blur_saliency perturbation_saliency
atomic_write_text atomic_write_json atomic_savefig atomic_savez evaluate per_image_counts aggregate
DEFAULT_NOISE_THRESHOLDS confusion_counts calibrate_eps run_localize default_grid TABLE_THRESHOLD PAPER_TABLE_I
METRICS LOSSES attack_loss margin ssim_map noise_map gaussian_window gradcam_plus_plus gradcam_plus_plus_fn
penultimate_conv_layer ssim global_ssim psnr fooling_rate perturbation_norms as_logits_model to_functional
input_shape_of NotDifferentiableError ATTACK_NAMES build_attack DEFAULT_EPS_GRIDS EPS_GRIDS_BY_DATA EPS_UNITS
METHODS saliency_fn saliency_maps read_tfjs_weights assign_tfjs_weights check_images check_labels check_epsilon
mnist_cnn cifar10_cnn imagenet_mobilenet class_names ASSETS MODELS_ENV""".split()
NEW_CONTRACTS = "Attack Explainer LogitsModel ATTACKS EXPLAINERS build_explainer register_attack register_explainer".split()


def test_every_public_name_imports_from_the_package():
    code = ("import sys, tfperceptual\n"
            "assert 'tensorflow' not in sys.modules, 'import tfperceptual imported TensorFlow'\n"
            f"names = {ISSUES_2_TO_6 + NEW_CONTRACTS!r}\n"
            "missing = [n for n in names if n not in tfperceptual.__all__]\n"
            "assert not missing, missing\n"
            "broken = []\n"
            "for n in tfperceptual.__all__:\n"
            "    try:\n"
            "        getattr(tfperceptual, n)\n"
            "    except Exception as e:\n"
            "        broken.append((n, repr(e)))\n"
            "assert not broken, broken\n"
            "from tfperceptual import PGAP, PerceptualBall, compare\n"
            "assert callable(compare) and PGAP.name == 'pgap'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stderr[-3000:]
