"""PGAP's exact step as a convex QCQP solved by CVXPY (ECOS, Clarabel as fallback).

For one image (vector of length N) the problem is

    maximise    g·y
    subject to  ‖(y − mean(y)·1) − η x̃‖₂ ≤ r          (S2 ≥ 1 − ε2², a second-order cone)
                mean(y) = μx          (ε1 = 0, Eq. 9)   or   lo ≤ mean(y) ≤ hi   (S1 ≥ 1 − ε1²)
                b0 ≤ y ≤ b1                              (pixel box)

with η, r, lo, hi from :func:`solvers.ssim_ball.ssim_ball`.  The problem is
built once per (N, fixed-mean) with ``cp.Parameter`` objects (DPP), so each
further solve only updates parameter values and skips canonicalisation.
Above ``DPP_MAX_N`` = 4,096 pixels the problem is rebuilt with constants for
each image instead: CVXPY's DPP parameter tensor has about 2·N² entries (at
N = 51,529, one ImageNet channel, its compilation asks for 39.6 GiB and
fails), whereas the constant problem's canonicalisation is linear in N.

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
#: largest N for which the problem is compiled once with parameters (DPP)
DPP_MAX_N = 4096
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
    key = (n, fixed_mean)
    if key in _CACHE:
        return _CACHE[key]
    prob, y, params = _build(n, fixed_mean)
    _CACHE[key] = (prob, y, params)
    return _CACHE[key]


def _build(n, fixed_mean, values=None):
    """The QCQP with parameters, or with the constants ``values`` (dict) when given."""
    import cvxpy as cp

    y = cp.Variable(n)
    def p(name, shape=(), **kw):
        return cp.Constant(values[name]) if values is not None else cp.Parameter(shape, name=name, **kw)

    g = p("g", (n,))
    centre = p("centre", (n,))  # η x̃ (zero-mean part of the ball centre)
    radius = p("radius", nonneg=True)
    b0 = p("b0")
    b1 = p("b1")
    params = {"g": g, "centre": centre, "radius": radius, "b0": b0, "b1": b1}
    if fixed_mean:
        mu = p("mu")
        params["mu"] = mu
        cons = [cp.sum(y) == n * mu, cp.norm(y - mu - centre, 2) <= radius]
    else:
        lo = p("lo")
        hi = p("hi")
        params.update(lo=lo, hi=hi)
        # the mean as its own variable keeps the problem sparse (y − sum(y)/n would be a dense N×N map)
        m = cp.Variable()
        cons = [cp.sum(y) == n * m, m >= lo, m <= hi, cp.norm(y - m - centre, 2) <= radius]
    cons += [y >= b0, y <= b1]
    return cp.Problem(cp.Maximize(g @ y), cons), y, params


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
    dpp = n <= DPP_MAX_N
    if dpp:
        prob, yvar, p = _problem(n, fixed)
        p["b0"].value, p["b1"].value = float(bounds[0]), float(bounds[1])
    out = np.full((b, n), np.nan)
    ok = np.zeros(b, bool)
    messages, used = [""] * b, [""] * b
    for i in range(b):
        vals = {"g": g[i], "centre": ball.centre[i], "radius": float(ball.radius[i]),
                "b0": float(bounds[0]), "b1": float(bounds[1])}
        if fixed:
            vals["mu"] = float(ball.mean[i])
        else:
            vals["lo"], vals["hi"] = float(ball.mean_low[i]), float(ball.mean_high[i])
        if dpp:
            for k, v in vals.items():
                p[k].value = v
        else:
            prob, yvar, _ = _build(n, fixed, vals)
        errs = []
        for s in solvers:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    prob.solve(solver=s)
            except (cp.error.SolverError, ValueError, ArithmeticError, MemoryError) as e:
                msg = str(e).splitlines()[0][:120] if str(e) else ""
                errs.append(f"{s}: {type(e).__name__}: {msg}")
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
