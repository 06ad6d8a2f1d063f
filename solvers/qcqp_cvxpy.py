"""PGAP's exact step as a convex QCQP solved by CVXPY (ECOS, Clarabel as fallback).

For one image (vector of length N) the problem is

    maximise    g·y
    subject to  ‖(y − mean(y)·1) − η x̃‖₂ ≤ r          (S2 ≥ 1 − ε2², a second-order cone)
                mean(y) = μx          (ε1 = 0, Eq. 9)   or   lo ≤ mean(y) ≤ hi   (S1 ≥ 1 − ε1²)
                b0 ≤ y ≤ b1                              (pixel box)

with η, r, lo, hi from :func:`solvers.ssim_ball.ssim_ball`.  The problem is
built once per (N, fixed-mean) with ``cp.Parameter`` objects (DPP), so each
further solve only updates parameter values and skips canonicalisation.

Every answer is verified: the solver status must be ``optimal`` and the point
must satisfy all constraints to the stated tolerances; otherwise the next
solver in the list is tried, and if none succeeds the image is reported as
failed (never returned unverified).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .ssim_ball import ssim_ball

__all__ = ["SolverError", "BatchSolveResult", "solve_qcqp_batch", "DEFAULT_SOLVERS",
           "FEASIBILITY_TOL"]

DEFAULT_SOLVERS = ("ECOS", "CLARABEL")
#: absolute tolerance on box and mean violations, relative (to max(1, r)) on the ball
FEASIBILITY_TOL = 1e-6


class SolverError(RuntimeError):
    """A solver failed or returned a point that does not verify.

    Attributes:
        failed: indices of the failing rows of the batch.
        messages: one message per failing row.
        partial: the (B, N) result with NaN rows where solving failed.
    """

    def __init__(self, message, failed=(), messages=(), partial=None):
        super().__init__(message)
        self.failed = list(failed)
        self.messages = list(messages)
        self.partial = partial


@dataclass
class BatchSolveResult:
    """Result of a batched solve: ``y`` (B, N) with NaN rows where ``ok`` is False."""

    y: np.ndarray
    ok: np.ndarray
    messages: list = field(default_factory=list)
    solver_used: list = field(default_factory=list)


_CACHE: dict = {}


def _problem(n: int, fixed_mean: bool):
    import cvxpy as cp

    key = (n, fixed_mean)
    if key in _CACHE:
        return _CACHE[key]
    y = cp.Variable(n)
    g = cp.Parameter(n)
    centre = cp.Parameter(n)  # η x̃ (zero-mean part of the ball centre)
    radius = cp.Parameter(nonneg=True)
    b0 = cp.Parameter()
    b1 = cp.Parameter()
    mean_y = cp.sum(y) / n
    params = {"g": g, "centre": centre, "radius": radius, "b0": b0, "b1": b1}
    if fixed_mean:
        mu = cp.Parameter()
        params["mu"] = mu
        cons = [cp.sum(y) == n * mu, cp.norm(y - mu - centre, 2) <= radius]
    else:
        lo = cp.Parameter()
        hi = cp.Parameter()
        params.update(lo=lo, hi=hi)
        cons = [mean_y >= lo, mean_y <= hi, cp.norm(y - mean_y - centre, 2) <= radius]
    cons += [y >= b0, y <= b1]
    prob = cp.Problem(cp.Maximize(g @ y), cons)
    _CACHE[key] = (prob, y, params)
    return _CACHE[key]


def _verify(y, ball, i, bounds, tol):
    """Return None if row ``i``'s solution verifies, else a message."""
    if y is None or not np.all(np.isfinite(y)):
        return "no finite solution"
    box = max(bounds[0] - y.min(), y.max() - bounds[1], 0.0)
    if box > tol:
        return f"box violated by {box:.3g}"
    my = y.mean()
    mean_v = max(ball.mean_low[i] - my, my - ball.mean_high[i], 0.0)
    if mean_v > tol:
        return f"mean constraint violated by {mean_v:.3g}"
    dist = np.linalg.norm((y - my) - ball.centre[i])
    ball_v = max(dist - ball.radius[i], 0.0)
    if ball_v > tol * max(1.0, ball.radius[i]):
        return f"SSIM-ball (S2) constraint violated by {ball_v:.3g}"
    return None


def solve_qcqp_batch(g, x, eps2, eps1=0.0, bounds=(0.0, 1.0), solver=None,
                     tol=FEASIBILITY_TOL) -> BatchSolveResult:
    """Solve the QCQP for each row of ``g``, ``x`` (B, N) float64.

    Args:
        solver: a CVXPY solver name or a sequence tried in order
            (default ``("ECOS", "CLARABEL")``).
        tol: feasibility tolerance of the verification.

    Returns:
        :class:`BatchSolveResult`; rows that no solver solved verifiably are
        NaN with ``ok[i] = False`` and a message naming the solvers tried.
    """
    import cvxpy as cp

    g = np.asarray(g, np.float64)
    x = np.asarray(x, np.float64)
    solvers = DEFAULT_SOLVERS if solver is None else ((solver,) if isinstance(solver, str) else tuple(solver))
    ball = ssim_ball(x, eps2, eps1)
    b, n = x.shape
    fixed = ball.eps1 == 0.0
    prob, yvar, p = _problem(n, fixed)
    out = np.full((b, n), np.nan)
    ok = np.zeros(b, bool)
    messages, used = [""] * b, [""] * b
    p["b0"].value, p["b1"].value = float(bounds[0]), float(bounds[1])
    for i in range(b):
        p["g"].value = g[i]
        p["centre"].value = ball.centre[i]
        p["radius"].value = float(ball.radius[i])
        if fixed:
            p["mu"].value = float(ball.mean[i])
        else:
            p["lo"].value = float(ball.mean_low[i])
            p["hi"].value = float(ball.mean_high[i])
        errs = []
        for s in solvers:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    prob.solve(solver=s)
            except (cp.error.SolverError, ValueError, ArithmeticError) as e:
                errs.append(f"{s}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
                continue
            if prob.status != cp.OPTIMAL:
                errs.append(f"{s}: status {prob.status}")
                continue
            msg = _verify(yvar.value, ball, i, bounds, tol)
            if msg is not None:
                errs.append(f"{s}: {msg}")
                continue
            out[i] = yvar.value
            ok[i] = True
            used[i] = s
            break
        if not ok[i]:
            messages[i] = "; ".join(errs)
    return BatchSolveResult(y=out, ok=ok, messages=messages, solver_used=used)
