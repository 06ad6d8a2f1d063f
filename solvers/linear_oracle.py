"""Public entry point: maximise a linear function over the SSIM ball ∩ pixel box."""

from __future__ import annotations

import numpy as np

from .qcqp_cvxpy import SolverError, solve_qcqp_batch
from .ssim_ball import check_eps

__all__ = ["maximize_linear_over_ssim_ball", "split_channels", "merge_channels"]

METHODS = ("exact", "cvxpy", "closed_form")


def split_channels(a, channels):
    """(B, N) with ``channels`` interleaved (channels-last flattening) → (B·C, N/C)."""
    b, n = a.shape
    if n % channels:
        raise ValueError(f"N={n} is not divisible by channels={channels}")
    return a.reshape(b, n // channels, channels).transpose(0, 2, 1).reshape(b * channels, n // channels)


def merge_channels(a, channels):
    """Inverse of :func:`split_channels`."""
    bc, m = a.shape
    return a.reshape(bc // channels, channels, m).transpose(0, 2, 1).reshape(bc // channels, m * channels)


def _check_inputs(g, x, bounds):
    g = np.asarray(g)
    x = np.asarray(x)
    for name, a in (("g", g), ("x", x)):
        if a.ndim != 2:
            raise ValueError(f"{name} must have shape (B, N), got {a.shape}")
        if not np.issubdtype(a.dtype, np.floating):
            raise TypeError(f"{name} must be a float array, got dtype {a.dtype}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or Inf")
    if g.shape != x.shape:
        raise ValueError(f"g and x must have the same shape, got {g.shape} and {x.shape}")
    b0, b1 = float(bounds[0]), float(bounds[1])
    if not b0 < b1:
        raise ValueError(f"bounds must satisfy low < high, got {bounds}")
    if x.min() < b0 or x.max() > b1:
        raise ValueError(f"x has pixels outside bounds {bounds}: range [{x.min()}, {x.max()}]")
    return g.astype(np.float64), x.astype(np.float64), (b0, b1)


def maximize_linear_over_ssim_ball(g, x, eps2, eps1=0.0, bounds=(0.0, 1.0), method="exact",
                                   solver=None, channels=1, project_gradient=True,
                                   box="restore", dtype="float64", gap_tol=None,
                                   return_certificate=False):
    """Maximise ``g·y`` over {S1(x, y) ≥ 1 − eps1², S2(x, y) ≥ 1 − eps2², y ∈ box}, per row.

    This is the linear step of PGAP (paper's Eq. 8-9) and, in closed form,
    of FPGAP (Eq. 10).

    Args:
        g: (B, N) float64 NumPy array, the linear objective (a loss gradient).
        x: (B, N) float64 NumPy array, anchor images with pixels in ``bounds``.
        eps2: S2 (structure/contrast) radius ε in (0, 1).
        eps1: S1 (luminance) radius in [0, 1); 0 keeps the mean of x (Eq. 9).
        bounds: the pixel box, default (0, 1).
        method: ``"exact"`` (default): the project's batched exact solver
            in TensorFlow with a duality-gap certificate (see
            :mod:`solvers.exact`); ``"cvxpy"``: the same QCQP by CVXPY (see
            :mod:`solvers.qcqp_cvxpy`); ``"closed_form"``: Eq. 10 with the
            gradient projected onto zero-mean vectors, made feasible for the box
            (exact when the box is inactive; see :mod:`solvers.closed_form`).
        solver: CVXPY solver name or sequence (default ECOS, then Clarabel).
        channels: C > 1 treats N as H·W·C channels-last pixels with one SSIM
            ball per colour channel (the problem separates by channel).
        project_gradient, box: options of the closed form (paper's literal
            form: ``project_gradient=False, box="clip"``).
        dtype: ``"float64"`` (default) or ``"float32"``, the precision of the
            exact solver.
        gap_tol: relative duality gap the exact solver must certify
            (default :data:`solvers.exact.GAP_TOL` = 1e-6).
        return_certificate: with ``method="exact"``, also return the
            :class:`solvers.exact.ExactResult` (primal, dual bound, gap,
            violation per row).

    Returns:
        y: (B, N) float64 array (or ``(y, certificate)``, see above).

    Raises:
        ValueError / TypeError: bad shapes, dtypes, NaN/Inf, pixels outside
            bounds, ε outside its range, unknown method.
        SolverError: the exact solver could not certify some rows (gap or
            feasibility above tolerance), or the CVXPY solvers failed or returned
            an unverified point for some rows (``err.failed`` lists them, ``err.partial`` holds the
            other rows' solutions).
    """
    eps2, eps1 = check_eps(eps2, eps1)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    g, x, bounds = _check_inputs(g, x, bounds)
    if method == "exact":
        from .exact import GAP_TOL, solve_exact

        res = solve_exact(g, x, eps2, eps1, bounds, channels=channels, dtype=dtype,
                          gap_tol=GAP_TOL if gap_tol is None else gap_tol)
        y = res.y.numpy().astype(np.float64)
        ok = res.ok.numpy()
        if not ok.all():
            bad = np.flatnonzero(~ok).tolist()
            msgs = [f"row {i}: relative gap {res.rel_gap.numpy()[i]:.3g}, violation {res.violation.numpy()[i]:.3g}"
                    for i in bad]
            raise SolverError("exact SSIM-ball solver could not certify rows " + str(bad) + ": " + "; ".join(msgs[:3]),
                              failed=bad, messages=msgs, partial=np.where(ok[:, None], y, np.nan))
        return (y, res) if return_certificate else y
    if channels > 1:
        g, x = split_channels(g, channels), split_channels(x, channels)
    if method == "closed_form":
        from .closed_form import closed_form_step

        y = closed_form_step(g, x, eps2, eps1, bounds, project_gradient=project_gradient, box=box).numpy()
    else:
        res = solve_qcqp_batch(g, x, eps2, eps1, bounds, solver=solver)
        y = res.y
        if not res.ok.all():
            bad = np.flatnonzero(~res.ok)
            rows = sorted(set((bad // channels).tolist()))
            partial = merge_channels(y, channels) if channels > 1 else y
            raise SolverError(
                f"SSIM-ball QCQP failed for rows {rows}: " + " | ".join(res.messages[i] for i in bad[:3]),
                failed=rows, messages=[res.messages[i] for i in bad], partial=partial)
    return merge_channels(y, channels) if channels > 1 else y
