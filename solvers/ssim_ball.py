r"""Geometry of the SSIM ball (NumPy, float64).

Notation (Pochimireddy, Siripuram & Channappayya, Eqs. 3-7, after Brunet,
Vrscay & Wang, "On the mathematical properties of the structural similarity
index", IEEE TIP 2012).  An image is a vector :math:`x \in [0,1]^N`;
:math:`\mu_x` is its mean and :math:`\tilde x = x - \mu_x \mathbf 1` its
zero-mean part.  With :math:`c_1 = (0.01 L)^2`, :math:`c_2 = (0.03 L)^2`,
:math:`L = 1`:

.. math::

    S_1(x, y) = \frac{2\mu_x\mu_y + c_1}{\mu_x^2 + \mu_y^2 + c_1},\qquad
    S_2(x, y) = 1 - \frac{\|\tilde x - \tilde y\|^2}{\|\tilde x\|^2 + \|\tilde y\|^2 + N c_2}.

The SSIM ball of radius :math:`(\varepsilon_1, \varepsilon_2)` around
:math:`x` is :math:`\{y : S_1 \ge 1-\varepsilon_1^2,\ S_2 \ge 1-\varepsilon_2^2\}`.

**S2 constraint.**  Write :math:`a = \tilde x`, :math:`b = \tilde y`,
:math:`\eta = 1/(1-\varepsilon_2^2)`.  Then :math:`S_2 \ge 1-\varepsilon_2^2`
iff :math:`\|a-b\|^2 \le \varepsilon_2^2(\|a\|^2 + \|b\|^2 + N c_2)`, i.e.
:math:`(1-\varepsilon_2^2)\|b\|^2 - 2a\cdot b + (1-\varepsilon_2^2)\|a\|^2 - \varepsilon_2^2 N c_2 \le 0`.
Dividing by :math:`1-\varepsilon_2^2` and completing the square:

.. math::

    \|\tilde y - \eta\tilde x\|^2 \le r^2 := (\eta^2-1)\|\tilde x\|^2 + \eta\,\varepsilon_2^2 N c_2 .

So :math:`\tilde y` lies in a Euclidean ball with centre :math:`\eta\tilde x`
(inside the zero-mean hyperplane) and radius :math:`r`.  The paper's appendix
writes the constant as :math:`k_{21} = \eta^2\|\tilde x\|^2 + c_2\eta\varepsilon^2`;
that is the right-hand side *before* moving :math:`\|\tilde x\|^2` across and
with the :math:`N` of :math:`N c_2` dropped, so we use the completed-square
radius above, which the tests check against :math:`S_2` directly (a point on
the sphere has :math:`S_2 = 1-\varepsilon_2^2` to 1e-9).

**S1 constraint.**  With :math:`t = 1-\varepsilon_1^2`, :math:`S_1 \ge t` iff
:math:`(\mu_y - \mu_x/t)^2 \le \mu_x^2(1/t^2 - 1) + c_1(1/t - 1)`: an interval
for :math:`\mu_y` centred at :math:`\mu_x/t`.  For :math:`\varepsilon_1 = 0`
it collapses to :math:`\mu_y = \mu_x` (the paper's Eq. 9).

Both constraints are convex, so the ball is convex; its intersection with
the pixel box is the feasible set of PGAP's QCQP.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

C1 = 0.01**2
C2 = 0.03**2

__all__ = [
    "C1",
    "C2",
    "SSIMBall",
    "ssim_ball",
    "luminance_similarity",
    "structure_similarity",
    "global_ssim",
    "check_eps",
]


def check_eps(eps2, eps1=0.0):
    """Validate the ball radii: ``eps2`` in (0, 1), ``eps1`` in [0, 1).

    Raises:
        ValueError: when a radius is outside its range or not finite.
    """
    eps2 = float(eps2)
    eps1 = float(eps1)
    if not np.isfinite(eps2) or not 0.0 < eps2 < 1.0:
        raise ValueError(f"eps2 (structure/contrast radius ε) must lie in (0, 1), got {eps2}")
    if not np.isfinite(eps1) or not 0.0 <= eps1 < 1.0:
        raise ValueError(f"eps1 (luminance radius) must lie in [0, 1), got {eps1}")
    return eps2, eps1


def _as_2d(a, name):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (B, N), got {a.shape}")
    return a


def luminance_similarity(x, y, c1=C1):
    """S1(x, y) per row, Eq. 4 of the paper. ``x, y``: (B, N). Returns (B,)."""
    x, y = _as_2d(x, "x"), _as_2d(y, "y")
    mx, my = x.mean(1), y.mean(1)
    return (2 * mx * my + c1) / (mx**2 + my**2 + c1)


def structure_similarity(x, y, c2=C2):
    """S2(x, y) per row (contrast·structure term), Eq. 5. ``x, y``: (B, N). Returns (B,)."""
    x, y = _as_2d(x, "x"), _as_2d(y, "y")
    xt = x - x.mean(1, keepdims=True)
    yt = y - y.mean(1, keepdims=True)
    n = x.shape[1]
    num = np.sum((xt - yt) ** 2, 1)
    den = np.sum(xt**2, 1) + np.sum(yt**2, 1) + n * c2
    return 1.0 - num / den


def global_ssim(x, y, c1=C1, c2=C2):
    """Global (one-window) SSIM ≈ S1·S2 of Brunet et al., per row. Returns (B,)."""
    return luminance_similarity(x, y, c1) * structure_similarity(x, y, c2)


@dataclass(frozen=True)
class SSIMBall:
    """The SSIM ball around each row of ``x``.

    Attributes:
        x: (B, N) float64, the anchor images.
        eps2, eps1: radii of the S2 and S1 constraints.
        mean: (B,) anchor means μx.
        centre: (B, N) zero-mean centre η·x̃ of the S2 ball.
        radius: (B,) radius r of the S2 ball (see module docstring).
        mean_low, mean_high: (B,) interval allowed for μy by S1.
    """

    x: np.ndarray
    eps2: float
    eps1: float
    mean: np.ndarray
    centre: np.ndarray
    radius: np.ndarray
    mean_low: np.ndarray
    mean_high: np.ndarray

    @property
    def eta(self) -> float:
        return 1.0 / (1.0 - self.eps2**2)

    def violation(self, y):
        """Constraint violations of ``y`` (B, N): a dict of (B,) arrays.

        ``ball``: max(‖ỹ − ηx̃‖ − r, 0); ``mean``: distance of μy to the
        allowed interval.
        """
        y = _as_2d(y, "y")
        my = y.mean(1)
        yt = y - my[:, None]
        dist = np.linalg.norm(yt - self.centre, axis=1)
        return {
            "ball": np.maximum(dist - self.radius, 0.0),
            "mean": np.maximum(np.maximum(self.mean_low - my, my - self.mean_high), 0.0),
        }

    def contains(self, y, tol=1e-9):
        """Boolean (B,): whether each row of ``y`` lies in the ball (to ``tol``)."""
        v = self.violation(y)
        return (v["ball"] <= tol * np.maximum(1.0, self.radius)) & (v["mean"] <= tol)


def ssim_ball(x, eps2, eps1=0.0, c1=C1, c2=C2) -> SSIMBall:
    """Centre, radius and mean interval of the SSIM ball around each row of ``x``.

    Args:
        x: (B, N) array-like, anchor images (pixels in [0, 1]).
        eps2: S2 radius, in (0, 1); the constraint is S2 ≥ 1 − eps2².
        eps1: S1 radius, in [0, 1); the constraint is S1 ≥ 1 − eps1²
            (0 fixes the mean, Eq. 9).

    Raises:
        ValueError: bad shape or radii.
    """
    eps2, eps1 = check_eps(eps2, eps1)
    x = _as_2d(x, "x")
    n = x.shape[1]
    mean = x.mean(1)
    xt = x - mean[:, None]
    eta = 1.0 / (1.0 - eps2**2)
    radius = np.sqrt((eta**2 - 1.0) * np.sum(xt**2, 1) + eta * eps2**2 * n * c2)
    if eps1 == 0.0:
        lo = hi = mean
    else:
        t = 1.0 - eps1**2
        half = np.sqrt(mean**2 * (1.0 / t**2 - 1.0) + c1 * (1.0 / t - 1.0))
        lo, hi = mean / t - half, mean / t + half
    return SSIMBall(x=x, eps2=eps2, eps1=eps1, mean=mean, centre=eta * xt, radius=radius,
                    mean_low=np.asarray(lo), mean_high=np.asarray(hi))
