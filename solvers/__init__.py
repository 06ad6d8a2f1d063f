"""Math of the SSIM ball and its solvers (NumPy, CVXPY, TensorFlow; no Keras).

Public entry point: :func:`maximize_linear_over_ssim_ball`.
"""

from .linear_oracle import maximize_linear_over_ssim_ball, merge_channels, split_channels
from .qcqp_cvxpy import SolverError, solve_qcqp_batch
from .ssim_ball import (C1, C2, SSIMBall, check_eps, global_ssim, luminance_similarity,
                        ssim_ball, structure_similarity)

__all__ = [
    "maximize_linear_over_ssim_ball", "split_channels", "merge_channels", "SolverError",
    "solve_qcqp_batch", "SSIMBall", "ssim_ball", "check_eps", "luminance_similarity",
    "structure_similarity", "global_ssim", "C1", "C2",
]
