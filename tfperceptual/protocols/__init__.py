"""Protocols: the papers' experiments end to end (streamed, cached, resumable), their presets and reports.

* :mod:`.compare` — fooling rate at matched SSIM/PSNR (Pochimireddy et al., Tables II/III, Fig. 6);
* :mod:`.localize` — where perturbations land against Grad-CAM++ (Table I, Figs. 3/5);
* :mod:`.saliency_benchmark` — the perceptual ball against tf-keras-vis baselines (Elliott et al., Sec. 4);
* :mod:`.runner` (batches, seeds, fingerprints, cache), :mod:`.replicas` (batches on the replicas of a
  ``tf.distribute`` strategy), :mod:`.presets` (grids, papers' tables),
  :mod:`.report` (markdown and figures).
"""

from .compare import interpolate_at, matched_table, run_sweep  # (the function `compare` would hide the module)
from .localize import calibrate_eps, default_grid, run_localize
from .presets import (BENCHMARKS, DEFAULT_EPS_GRIDS, EPS_GRIDS_BY_DATA, EPS_UNITS, PAPER_TABLE_1, PAPER_TABLE_2,
                      PAPER_TABLE_I, PAPER_TABLES, PB_DEFAULTS)
from .runner import ResultCache, batch_slices, predict_labels
from .saliency_benchmark import paired_differences, parse_methods, run_benchmarks

__all__ = ["run_sweep", "interpolate_at", "matched_table", "run_localize", "calibrate_eps", "default_grid",
           "run_benchmarks", "parse_methods", "paired_differences", "BENCHMARKS", "DEFAULT_EPS_GRIDS",
           "EPS_GRIDS_BY_DATA", "EPS_UNITS", "PAPER_TABLES", "PAPER_TABLE_I", "PAPER_TABLE_1", "PAPER_TABLE_2",
           "PB_DEFAULTS", "ResultCache", "batch_slices", "predict_labels"]
