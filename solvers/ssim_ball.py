r"""Geometry of the SSIM ball: one TensorFlow implementation (graph-safe, any float dtype) and its NumPy view.

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
import tensorflow as tf

from .checks import check_real

C1 = 0.01**2
C2 = 0.03**2

__all__ = [
    "C1",
    "C2",
    "SSIMBall",
    "ssim_ball",
    "ball_parameters",
    "luminance_similarity",
    "structure_similarity",
    "global_ssim",
    "check_eps",
]


def check_eps(eps2, eps1=0.0):
    """Validate the ball radii: ``eps2`` in (0, 1), ``eps1`` in [0, 1). Returns them as floats.

    Raises:
        TypeError: a radius is not a real number (e.g. ``None``).
        ValueError: a radius is outside its range or not finite.
    """
    eps2 = check_real(eps2, "eps2 (structure/contrast radius ε)", 0.0, 1.0)
    eps1 = check_real(eps1, "eps1 (luminance radius)", 0.0, 1.0, low_inclusive=True)
    return eps2, eps1


def _as_dtype(v, dt):
    """A radius as a tensor of ``dt`` (a Python float directly: ``tf.cast`` would round it to float32 first)."""
    return tf.cast(v, dt) if tf.is_tensor(v) or isinstance(v, tf.Variable) else tf.constant(v, dt)


def ball_parameters(x, eps2, eps1=0.0, c1=C1, c2=C2):
    """The SSIM ball around each row of ``x`` (B, N), in TensorFlow (graph-safe; the one implementation).

    Args:
        x: (B, N) float tensor or array, anchor images (pixels in [0, 1]).
        eps2: S2 radius in (0, 1) (S2 ≥ 1 − eps2²); eps1: S1 radius in [0, 1) (0 fixes the mean,
            Eq. 9). Python floats, tensors or ``tf.Variable`` s (not checked here: see :func:`check_eps`).

    Returns:
        ``(mean (B,), centre (B, N), radius (B,), mean_low (B,), mean_high (B,))`` in the dtype of ``x``:
        μx, the zero-mean centre η·x̃, the radius r of the S2 ball and the interval S1 allows for μy.
    """
    x = tf.convert_to_tensor(x)
    dt = x.dtype
    n = tf.cast(tf.shape(x)[1], dt)
    eps2, eps1 = _as_dtype(eps2, dt), _as_dtype(eps1, dt)
    mean = tf.reduce_mean(x, axis=1)
    xt = x - mean[:, None]
    eta = 1.0 / (1.0 - eps2**2)
    radius = tf.sqrt((eta**2 - 1.0) * tf.reduce_sum(xt**2, 1) + eta * eps2**2 * n * c2)
    t = 1.0 - eps1**2
    half = tf.sqrt(tf.maximum(mean**2 * (1.0 / t**2 - 1.0) + c1 * (1.0 / t - 1.0), 0.0))
    lo = tf.where(eps1 > 0, mean / t - half, mean)
    hi = tf.where(eps1 > 0, mean / t + half, mean)
    return mean, eta * xt, radius, lo, hi


def _rows_pair(x, y):
    """Both as (B, N) float64 tensors; ``eager`` says whether to hand NumPy back."""
    eager = not (tf.is_tensor(x) or tf.is_tensor(y))
    x = tf.cast(tf.convert_to_tensor(x), tf.float64)
    y = tf.cast(tf.convert_to_tensor(y), tf.float64)
    for name, a in (("x", x), ("y", y)):
        if a.shape.rank != 2:
            raise ValueError(f"{name} must have shape (B, N), got {tuple(a.shape)}")
    return x, y, eager


def _out(t, eager):
    return t.numpy() if eager else t


def luminance_similarity(x, y, c1=C1):
    """S1(x, y) per row, Eq. 4 of the paper. ``x, y``: (B, N) arrays (→ NumPy) or tensors (→ tensor), float64."""
    x, y, eager = _rows_pair(x, y)
    mx, my = tf.reduce_mean(x, 1), tf.reduce_mean(y, 1)
    return _out((2 * mx * my + c1) / (mx**2 + my**2 + c1), eager)


def structure_similarity(x, y, c2=C2):
    """S2(x, y) per row (contrast·structure term), Eq. 5. ``x, y``: (B, N). Returns (B,) float64."""
    x, y, eager = _rows_pair(x, y)
    xt = x - tf.reduce_mean(x, 1, keepdims=True)
    yt = y - tf.reduce_mean(y, 1, keepdims=True)
    n = tf.cast(tf.shape(x)[1], tf.float64)
    num = tf.reduce_sum((xt - yt) ** 2, 1)
    den = tf.reduce_sum(xt**2, 1) + tf.reduce_sum(yt**2, 1) + n * c2
    return _out(1.0 - num / den, eager)


def global_ssim(x, y, c1=C1, c2=C2):
    """Global (one-window) SSIM = S1·S2 of Brunet et al., per row. (B, N) → (B,) float64."""
    x, y, eager = _rows_pair(x, y)
    return _out(luminance_similarity(x, y, c1) * structure_similarity(x, y, c2), eager)


def _as_2d(a, name):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (B, N), got {a.shape}")
    return a


@dataclass(frozen=True)
class SSIMBall:
    """The SSIM ball around each row of ``x`` (NumPy view of :func:`ball_parameters`).

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
    """Centre, radius and mean interval of the SSIM ball around each row of ``x`` (NumPy, float64).

    Args:
        x: (B, N) array-like, anchor images (pixels in [0, 1]).
        eps2: S2 radius, in (0, 1); the constraint is S2 ≥ 1 − eps2².
        eps1: S1 radius, in [0, 1); the constraint is S1 ≥ 1 − eps1²
            (0 fixes the mean, Eq. 9).

    Raises:
        ValueError / TypeError: bad shape or radii.
    """
    eps2, eps1 = check_eps(eps2, eps1)
    x = _as_2d(x, "x")
    mean, centre, radius, lo, hi = (t.numpy() for t in ball_parameters(tf.constant(x), eps2, eps1, c1, c2))
    return SSIMBall(x=x, eps2=eps2, eps1=eps1, mean=mean, centre=centre, radius=radius, mean_low=lo, mean_high=hi)
