"""Math of the SSIM ball, the ℓ1 / ℓ2 balls and their linear oracles (TensorFlow, NumPy, CVXPY; never Keras or
tfperceptual).

Modules: :mod:`~solvers.ssim_ball` (geometry), :mod:`~solvers.rows` (channel ↔ row reshapes),
:mod:`~solvers.oracles` (the :class:`LinearOracle` interface, the three SSIM-ball oracles and the NumPy
entry point :func:`maximize_linear_over_ssim_ball`), :mod:`~solvers.exact`, :mod:`~solvers.closed_form`,
:mod:`~solvers.qcqp_cvxpy` (the solvers behind them),
:mod:`~solvers.norm_balls` (ℓ1-q, ℓ1 ∩ box, ℓ2, ℓ2 ∩ box oracles), :mod:`~solvers.frank_wolfe` (the shared
conditional-gradient loop), :mod:`~solvers.lbfgs` (batched L-BFGS without line search, per row),
:mod:`~solvers.ssim_projection` (the exact Euclidean projection onto the SSIM ball ∩ box),
:mod:`~solvers.checks` (option checks).
"""

from .checks import check_choice, check_positive_int, check_real
from .exact import GAP_TOL, ExactResult, solve_exact
from .frank_wolfe import FW_BOXES, frank_wolfe
from .lbfgs import lbfgs_fixed_step
from .norm_balls import L1BoxOracle, L1QOracle, L2BoxOracle, L2Oracle, NormBallOracle, cvxpy_norm_ball
from .oracles import (ClosedFormSSIMOracle, CvxpySSIMOracle, ExactSSIMOracle, LinearOracle, OracleResult,
                      SSIMBallOracle, maximize_linear_over_ssim_ball, ssim_ball_oracle)
from .qcqp_cvxpy import SolverError, solve_qcqp_batch
from .rows import from_rows, merge_channels, split_channels, to_rows
from .ssim_projection import PROJECTION_TOL, ProjectionResult, cvxpy_project_ssim_ball, project_ssim_ball
from .ssim_ball import (C1, C2, SSIMBall, ball_parameters, check_eps, global_ssim, luminance_similarity, ssim_ball,
                        structure_similarity)

__all__ = [
    "maximize_linear_over_ssim_ball", "LinearOracle", "OracleResult", "SSIMBallOracle", "ExactSSIMOracle",
    "ClosedFormSSIMOracle", "CvxpySSIMOracle", "ssim_ball_oracle", "solve_exact", "ExactResult", "GAP_TOL",
    "split_channels", "merge_channels", "to_rows", "from_rows", "SolverError", "solve_qcqp_batch", "SSIMBall",
    "ssim_ball", "ball_parameters", "check_eps", "luminance_similarity", "structure_similarity", "global_ssim",
    "frank_wolfe", "FW_BOXES", "lbfgs_fixed_step", "NormBallOracle", "L1QOracle", "L1BoxOracle", "L2Oracle", "L2BoxOracle",
    "cvxpy_norm_ball", "project_ssim_ball", "cvxpy_project_ssim_ball", "ProjectionResult", "PROJECTION_TOL", "C1", "C2", "check_real", "check_positive_int", "check_choice",
]
