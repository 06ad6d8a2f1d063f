r"""Linear oracles: maximise :math:`g\cdot y` over a convex set anchored at :math:`x`, row by row.

A *linear oracle* is the step of every conditional-gradient method in this project: PGAP (the SSIM ball
∩ pixel box, solved exactly), FPGAP (its closed form) and, later, Frank–Wolfe attacks over ℓ1 or ℓ2
balls.  The attack loop (``tfperceptual.attacks``) is written once against :class:`LinearOracle`;
an oracle holds the set's parameters and answers

    y = argmax_{y ∈ C(x)} g·y,    g, x: (B, N) tensors,

with a per-row verdict ``ok`` (certified or verified; a caller never uses a row that is not) and a
message where it is not.  Rows are images flattened channels-last; with ``channels = C`` each colour
channel is its own set (the SSIM ball is per channel), see :mod:`solvers.rows`.

Oracles here:

* :class:`ExactSSIMOracle` — the project's batched exact solver (:mod:`solvers.exact`), certified by a
  duality gap; graph-pure (runs inside ``tf.function``).
* :class:`ClosedFormSSIMOracle` — FPGAP's closed form (:mod:`solvers.closed_form`); graph-pure.
* :class:`CvxpySSIMOracle` — the same QCQP by CVXPY (ECOS, then Clarabel), the reference; it runs
  through ``tf.numpy_function`` (not graph-pure: Python runs at every call).

:func:`maximize_linear_over_ssim_ball` is the NumPy entry point over the three.
"""

from __future__ import annotations

import abc
import inspect
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from .checks import FixedOptions, check_choice, check_positive_int, check_real
from .closed_form import closed_form_step
from .exact import GAP_TOL, ExactResult, _solve_images
from .qcqp_cvxpy import SolverError, solve_qcqp_batch
from .rows import from_rows, to_rows
from .ssim_ball import check_eps

__all__ = ["OracleResult", "LinearOracle", "SSIMBallOracle", "ExactSSIMOracle", "ClosedFormSSIMOracle",
           "CvxpySSIMOracle", "ssim_ball_oracle", "cvxpy_solver_names", "maximize_linear_over_ssim_ball", "METHODS"]

#: the methods of :func:`maximize_linear_over_ssim_ball` and :func:`ssim_ball_oracle`
METHODS = ("exact", "cvxpy", "closed_form")


class OracleResult(NamedTuple):
    """What a :class:`LinearOracle` returns for a batch of B rows.

    Attributes:
        y: (B, N) tensor of the oracle's dtype, the maximiser (rows with ``ok = False`` must not be used).
        ok: (B,) bool tensor, the row is certified (exact) or verified (CVXPY); always true for a
            closed form.
        message: (B,) string tensor, why a row is not ``ok`` (empty where it is); ``None`` when the caller
            asked for no report (``report=False``: a graph without string ops, which XLA can compile).
    """

    y: tf.Tensor
    ok: tf.Tensor
    message: tf.Tensor


class LinearOracle(FixedOptions, abc.ABC):
    """Maximise g·y over a convex set C(x) anchored at each row x (abstract).

    Subclasses implement :meth:`maximize` on tensors of :attr:`dtype`.  ``graph_pure`` says whether it
    runs inside ``tf.function`` without Python side effects; ``respects_box`` whether every answer lies in
    :attr:`bounds` (a caller may then clip float rounding away).  Options that shape the graph are fixed at
    construction; values a traced caller may change between calls (the radii) live in ``tf.Variable`` s.

    Args:
        bounds: the pixel box (low, high), low < high.
        channels: C ≥ 1; rows are images flattened channels-last and each channel is its own set.
        dtype: ``"float64"`` (default) or ``"float32"``, the precision the oracle works in.
    """

    graph_pure = True
    respects_box = True
    _FIXED = ("bounds", "channels", "dtype", "gap_tol", "box", "project_gradient", "solvers", "respects_box",
              "graph_pure")

    def __init__(self, bounds=(0.0, 1.0), channels=1, dtype="float64"):
        b0 = check_real(bounds[0], "bounds[0]")
        b1 = check_real(bounds[1], "bounds[1]")
        if not b0 < b1:
            raise ValueError(f"bounds must satisfy low < high, got {tuple(bounds)}")
        self.bounds = (b0, b1)
        self.channels = check_positive_int(channels, "channels")
        self.dtype = tf.as_dtype(dtype)
        if self.dtype not in (tf.float32, tf.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype.name}")

    @abc.abstractmethod
    def maximize(self, g, x, report=True) -> OracleResult:
        """Maximiser of ``g·y`` over C(x) for rows ``g``, ``x`` of shape (B, N) and :attr:`dtype`.

        ``report=False`` asks for no messages (``message`` may then be ``None``: a graph without string ops,
        which XLA can compile); an oracle may leave the argument out of its signature and always report."""

    def __call__(self, g, x, report=True) -> OracleResult:
        """:meth:`maximize` after casting ``g`` and ``x`` to :attr:`dtype`."""
        g, x = tf.cast(g, self.dtype), tf.cast(x, self.dtype)
        if report or "report" not in inspect.signature(self.maximize).parameters:
            return self.maximize(g, x)
        return self.maximize(g, x, report=False)



class SSIMBallOracle(LinearOracle):
    r"""An oracle over the SSIM ball {S1(x, y) ≥ 1 − ε1², S2(x, y) ≥ 1 − ε2²} ∩ the pixel box (abstract).

    The radii live in ``tf.Variable`` s, so assigning :attr:`eps2` / :attr:`eps1` between calls takes effect
    in graphs traced before (an ε sweep traces once; the exact solver chooses between the fixed mean and
    the S1 interval in the graph).  ``eps1 = 0`` fixes the mean (the paper's Eq. 9).

    Raises:
        ValueError / TypeError: radii out of range ((0, 1) and [0, 1)), bad bounds or channels.
    """

    def __init__(self, eps2, eps1=0.0, bounds=(0.0, 1.0), channels=1, dtype="float64"):
        super().__init__(bounds, channels, dtype)
        eps2, eps1 = check_eps(eps2, eps1)
        self._eps2 = tf.Variable(eps2, dtype=tf.float64, trainable=False, name="eps2")
        self._eps1 = tf.Variable(eps1, dtype=tf.float64, trainable=False, name="eps1")
        self._eps_values = (eps2, eps1)

    @property
    def eps2(self) -> float:
        """S2 radius ε in (0, 1)."""
        return self._eps_values[0]

    @eps2.setter
    def eps2(self, value):
        value, _ = check_eps(value, self._eps_values[1])
        self._eps2.assign(value)
        self._eps_values = (value, self._eps_values[1])

    @property
    def eps1(self) -> float:
        """S1 radius in [0, 1); 0 keeps the mean."""
        return self._eps_values[1]

    @eps1.setter
    def eps1(self, value):
        _, value = check_eps(self._eps_values[0], value)
        self._eps1.assign(value)
        self._eps_values = (self._eps_values[0], value)

    def _radii(self):
        # read_value(): tensors, never the variables themselves (a traced solver must not capture an oracle's
        # variables: the function outlives the oracle)
        return tf.cast(self._eps2.read_value(), self.dtype), tf.cast(self._eps1.read_value(), self.dtype)


class ExactSSIMOracle(SSIMBallOracle):
    """PGAP's step solved exactly by the project's batched solver (:mod:`solvers.exact`); graph-pure.

    A row is ``ok`` when its Lagrangian certificate proves it optimal to a relative gap ≤ ``gap_tol`` and it
    violates no constraint by more than :func:`solvers.exact.feasibility_tol`.

    Args:
        eps2, eps1, bounds, channels, dtype: see :class:`SSIMBallOracle`.
        gap_tol: relative duality gap each row must certify, > 0 (default 1e-6).
    """

    def __init__(self, eps2, eps1=0.0, bounds=(0.0, 1.0), channels=1, dtype="float64", gap_tol=GAP_TOL):
        super().__init__(eps2, eps1, bounds, channels, dtype)
        self.gap_tol = check_real(gap_tol, "gap_tol", 0.0, None)

    def certify(self, g, x) -> dict:
        """The exact step with its certificate: dict of tensors ``y`` (B, N) and, per row (image),
        ``primal``, ``gap``, ``gain``, ``rel_gap``, ``violation``, ``iterations``, ``ok``."""
        g, x = tf.cast(g, self.dtype), tf.cast(x, self.dtype)
        eps2, eps1 = self._radii()
        dt = self.dtype
        return _solve_images(g, x, eps2, eps1, tf.constant(self.bounds[0], dt), tf.constant(self.bounds[1], dt),
                             tf.constant(self.gap_tol, dt), self.channels)

    def maximize(self, g, x, report=True) -> OracleResult:
        r = self.certify(g, x)
        if not report:
            return OracleResult(r["y"], r["ok"], None)
        why = tf.strings.join(["exact solver could not certify the step: relative duality gap ",
                               tf.strings.as_string(r["rel_gap"], precision=3, scientific=True),
                               f" (tolerance {self.gap_tol:g}), constraint violation ",
                               tf.strings.as_string(r["violation"], precision=3, scientific=True)])
        return OracleResult(r["y"], r["ok"], tf.where(r["ok"], tf.constant(""), why))


class ClosedFormSSIMOracle(SSIMBallOracle):
    """FPGAP's closed-form step (the paper's Eq. 10, :mod:`solvers.closed_form`); graph-pure, always ``ok``.

    Args:
        eps2, eps1, bounds, channels, dtype: see :class:`SSIMBallOracle`.
        project_gradient: use g − mean(g) (the exact maximiser without the box); ``False`` is the
            paper's literal Eq. 10.
        box: ``"restore"`` (exactly feasible), ``"clip"`` (the paper's clipping; may leave the ball) or
            ``"ignore"`` (no box: answers may leave [0, 1]).
    """

    def __init__(self, eps2, eps1=0.0, bounds=(0.0, 1.0), channels=1, dtype="float64", project_gradient=True,
                 box="restore"):
        super().__init__(eps2, eps1, bounds, channels, dtype)
        self.box = check_choice(box, "box", ("restore", "clip", "ignore"))
        self.project_gradient = bool(project_gradient)
        self.respects_box = box != "ignore"

    def maximize(self, g, x, report=True) -> OracleResult:
        eps2, eps1 = self._radii()
        c = self.channels
        y = from_rows(closed_form_step(to_rows(g, c), to_rows(x, c), eps2, eps1, self.bounds,
                                       project_gradient=self.project_gradient, box=self.box), c)
        n = tf.shape(g)[:1]
        return OracleResult(y, tf.ones(n, tf.bool), tf.fill(n, "") if report else None)


class CvxpySSIMOracle(SSIMBallOracle):
    """The SSIM-ball QCQP solved by CVXPY, one image at a time (:mod:`solvers.qcqp_cvxpy`): the reference.

    Every answer must have status ``optimal`` and pass a feasibility check, else the next solver is tried;
    a row no solver solves verifiably is not ``ok`` (its message lists what each solver said).  Inside a
    graph it runs through ``tf.numpy_function`` (``graph_pure = False``).

    Args:
        eps2, eps1, bounds, channels: see :class:`SSIMBallOracle` (float64 only).
        solver: a CVXPY solver name or sequence tried in order (default ``("ECOS", "CLARABEL")``).
    """

    graph_pure = False

    def __init__(self, eps2, eps1=0.0, bounds=(0.0, 1.0), channels=1, solver=None):
        super().__init__(eps2, eps1, bounds, channels, "float64")
        if solver is None or solver == "cvxpy":
            self.solvers = None
        else:
            names = [solver] if isinstance(solver, str) else solver
            if isinstance(names, (bytes, dict)) or not hasattr(names, "__iter__") or \
                    not all(isinstance(s, str) for s in names) or not list(names):
                raise TypeError(f"solver must be a CVXPY solver name or a sequence of names, got {solver!r}")
            known = cvxpy_solver_names()
            bad = [s for s in names if s.upper() not in known]
            if bad:
                raise ValueError(f"solver must name installed CVXPY solvers of second-order cone problems "
                                 f"({', '.join(known)}), got {bad}")
            self.solvers = tuple(s.upper() for s in names)

    def _solve_rows(self, g, x, eps2, eps1):
        """NumPy callback: one QCQP per row (one channel of one image) → ``(y, ok, message)``; a row that
        failed keeps ``x`` in ``y``. The radii are the variables' values when the graph runs."""
        res = solve_qcqp_batch(g, x, float(eps2), float(eps1), self.bounds, solver=self.solvers)
        y = np.where(res.ok[:, None], res.y, x)
        return y, res.ok, np.asarray(res.messages, dtype=object).astype(bytes)

    def maximize(self, g, x, report=True) -> OracleResult:
        c = self.channels
        g_rows, x_rows = to_rows(g, c), to_rows(x, c)  # channels split in TF; the callback sees rows only
        y, ok, message = tf.numpy_function(self._solve_rows, [g_rows, x_rows, *self._radii()],
                                           [tf.float64, tf.bool, tf.string], stateful=True)
        y = from_rows(tf.reshape(y, tf.shape(g_rows)), c)
        y.set_shape(g.shape)
        ok_rows = tf.reshape(ok, (-1, c))
        ok = tf.ensure_shape(tf.reduce_all(ok_rows, 1), g.shape[:1])
        if not report:
            return OracleResult(y, ok, None)
        joined = tf.strings.reduce_join(tf.where(ok_rows, "", tf.reshape(message, (-1, c))), axis=1, separator=" ")
        return OracleResult(y, ok, tf.where(ok, "", tf.strings.join(["solver failed: ", tf.strings.strip(joined)])))


def ssim_ball_oracle(method, eps2, eps1=0.0, bounds=(0.0, 1.0), channels=1, solver=None, gap_tol=None,
                     dtype="float64", project_gradient=True, box="restore", argument="method") -> SSIMBallOracle:
    """The SSIM-ball oracle of ``method``: ``"exact"``, ``"closed_form"``, ``"cvxpy"`` (with ``solver``), or an
    installed CVXPY solver of second-order cone problems (``"ECOS"``, ``"CLARABEL"``, …: CVXPY with that solver
    only).  ``argument`` names ``method`` in error messages (PGAP calls it ``solver``).

    Raises:
        TypeError / ValueError: an unknown method; the options of the oracle (see each class).
    """
    if not isinstance(method, str):
        raise TypeError(f"{argument} must be a string, got {method!r}")
    if method == "exact":
        return ExactSSIMOracle(eps2, eps1, bounds, channels, dtype, GAP_TOL if gap_tol is None else gap_tol)
    if method == "closed_form":
        return ClosedFormSSIMOracle(eps2, eps1, bounds, channels, dtype, project_gradient, box)
    if method == "cvxpy" or method.upper() in cvxpy_solver_names():
        return CvxpySSIMOracle(eps2, eps1, bounds, channels, solver if method == "cvxpy" else method)
    raise ValueError(f"{argument} must be one of {METHODS} or an installed CVXPY solver of second-order cone "
                     f"problems ({', '.join(cvxpy_solver_names())}), got {method!r}")


#: CVXPY solvers that handle second-order cone constraints (the S2 ball)
SOC_SOLVERS = ("CLARABEL", "ECOS", "SCS", "MOSEK", "GUROBI", "CPLEX", "XPRESS", "COPT")


def cvxpy_solver_names():
    """The installed CVXPY solvers that can solve the SSIM-ball QCQP (a second-order cone problem)."""
    try:
        import cvxpy as cp
    except ImportError:  # pragma: no cover - cvxpy is a dependency
        return ()
    installed = {str(s).upper() for s in cp.installed_solvers()}
    return tuple(s for s in SOC_SOLVERS if s in installed)


def _check_inputs(g, x, bounds, channels=1):
    g = np.asarray(g)
    x = np.asarray(x)
    for name, a in (("g", g), ("x", x)):
        if a.ndim != 2:
            raise ValueError(f"{name} must have shape (B, N), got {a.shape}")
        if not np.issubdtype(a.dtype, np.floating):
            raise TypeError(f"{name} must be a float array, got dtype {a.dtype}")
    if g.shape != x.shape:
        raise ValueError(f"g and x must have the same shape, got {g.shape} and {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"g and x must hold at least one row of at least one pixel, got shape {x.shape}")
    channels = check_positive_int(channels, "channels")
    if x.shape[1] % channels:
        raise ValueError(f"N = {x.shape[1]} pixels per row is not divisible by channels = {channels}")
    for name, a in (("g", g), ("x", x)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or Inf")
    b0, b1 = check_real(bounds[0], "bounds[0]"), check_real(bounds[1], "bounds[1]")
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
    of FPGAP (Eq. 10): the NumPy entry point over the oracles of this module.

    Args:
        g: (B, N) float NumPy array, the linear objective (a loss gradient); B, N ≥ 1.
        x: (B, N) float NumPy array, anchor images with pixels in ``bounds``.
        eps2: S2 (structure/contrast) radius ε in (0, 1).
        eps1: S1 (luminance) radius in [0, 1); 0 keeps the mean of x (Eq. 9).
        bounds: the pixel box, default (0, 1).
        method: ``"exact"`` (default): the project's batched exact solver
            in TensorFlow with a duality-gap certificate (:class:`ExactSSIMOracle`);
            ``"cvxpy"``: the same QCQP by CVXPY (:class:`CvxpySSIMOracle`);
            ``"closed_form"``: Eq. 10 with the gradient projected onto zero-mean vectors,
            made feasible for the box (:class:`ClosedFormSSIMOracle`).
        solver: CVXPY solver name or sequence (default ECOS, then Clarabel).
        channels: C ≥ 1; C > 1 treats N as H·W·C channels-last pixels with one SSIM
            ball per colour channel (the problem separates by channel).
        project_gradient, box: options of the closed form (paper's literal
            form: ``project_gradient=False, box="clip"``).
        dtype: ``"float64"`` (default) or ``"float32"``, the precision of the
            exact solver.
        gap_tol: relative duality gap (> 0) the exact solver must certify
            (default :data:`solvers.exact.GAP_TOL` = 1e-6).
        return_certificate: also return the exact solver's
            :class:`solvers.exact.ExactResult` (primal, dual bound, gap, violation per row);
            only with ``method="exact"`` (CVXPY's answers are verified for feasibility, not certified
            by a dual bound; the closed form is not an optimum when the box binds).

    Returns:
        y: (B, N) float64 array (or ``(y, certificate)``, see above).

    Raises:
        ValueError / TypeError: bad shapes, dtypes, empty batches, NaN/Inf, pixels outside
            bounds, ε outside its range (or not a number), unknown method, ``channels`` < 1 or not dividing
            N, an option of another method (``gap_tol`` is the exact solver's, ``solver`` CVXPY's, ``box``
            and ``project_gradient`` the closed form's), ``return_certificate`` with another method than
            ``"exact"``.
        SolverError: the exact solver could not certify some rows (gap or
            feasibility above tolerance), or the CVXPY solvers failed or returned
            an unverified point for some rows (``err.failed`` lists them, ``err.partial`` holds the
            other rows' solutions, NaN for the failed ones).
    """
    eps2, eps1 = check_eps(eps2, eps1)
    check_choice(method, "method", METHODS)
    if return_certificate and method != "exact":
        raise ValueError(f"return_certificate=True needs method='exact' (got {method!r}): only the exact "
                         "solver certifies its answers with a dual bound")
    for option, applies, given in (("gap_tol", "exact", gap_tol is not None), ("solver", "cvxpy", solver is not None),
                                   ("box", "closed_form", box != "restore"),
                                   ("project_gradient", "closed_form", project_gradient is not True)):
        if given and method != applies:
            raise ValueError(f"{option} is an option of method={applies!r}, not of method={method!r}")
    g, x, bounds = _check_inputs(g, x, bounds, channels)
    oracle = ssim_ball_oracle(method, eps2, eps1, bounds, channels, solver=solver, gap_tol=gap_tol, dtype=dtype,
                              project_gradient=project_gradient, box=box)
    if method == "exact":
        res = ExactResult.from_solution(oracle.certify(tf.constant(g), tf.constant(x)))
        y = res.y.numpy().astype(np.float64)
        ok = res.ok.numpy()
        if not ok.all():
            bad = np.flatnonzero(~ok).tolist()
            msgs = [f"row {i}: relative gap {res.rel_gap.numpy()[i]:.3g}, violation {res.violation.numpy()[i]:.3g}"
                    for i in bad]
            raise SolverError("exact SSIM-ball solver could not certify rows " + str(bad) + ": " + "; ".join(msgs[:3]),
                              failed=bad, messages=msgs, partial=np.where(ok[:, None], y, np.nan))
        return (y, res) if return_certificate else y
    if method == "closed_form":
        return oracle(tf.constant(g), tf.constant(x)).y.numpy()
    r = oracle(tf.constant(g), tf.constant(x))
    y, ok, messages = r.y.numpy(), r.ok.numpy(), [m.decode() for m in r.message.numpy()]
    if not ok.all():
        bad = np.flatnonzero(~ok).tolist()
        raise SolverError(f"SSIM-ball QCQP failed for rows {bad}: " + " | ".join(messages[i] for i in bad[:3]),
                          failed=bad, messages=[messages[i] for i in bad],
                          partial=np.where(ok[:, None], y, np.nan))
    return y
