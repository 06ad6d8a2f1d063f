"""Checks of scalar options shared by the solvers and by :mod:`tfperceptual` (one rule for every radius).

Every check raises ``TypeError`` (not a real number / not an integer) or ``ValueError`` (out of range),
with a message that names the argument.
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np

__all__ = ["check_real", "check_positive_int", "check_choice", "FixedOptions"]


def check_real(value, name, low=None, high=None, low_inclusive=False, high_inclusive=False):
    """``value`` as a finite float in the interval given by ``low``/``high`` (``None``: unbounded).

    Raises:
        TypeError: ``value`` is not a real number (e.g. ``None``, a string, a bool).
        ValueError: NaN, ±Inf or outside the interval.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        try:  # NumPy / TensorFlow scalars
            arr = np.asarray(value)
            if arr.shape != () or arr.dtype.kind not in "fiu":
                raise TypeError
            value = arr.item()
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a real number, got {value!r}") from None
    value = float(value)
    left = "[" if low_inclusive else "("
    right = "]" if high_inclusive else ")"
    where = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number in {where}, got {value}")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        raise ValueError(f"{name} must lie in {where}, got {value}")
    if high is not None and (value > high or (value == high and not high_inclusive)):
        raise ValueError(f"{name} must lie in {where}, got {value}")
    return value


def check_positive_int(value, name, minimum=1):
    """``value`` as an int ≥ ``minimum`` (floats with an integer value are accepted).

    Raises:
        TypeError: not an integer. ValueError: below ``minimum``.
    """
    if isinstance(value, (bool, str, bytes)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if not math.isfinite(as_float) or as_float != int(as_float):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if int(as_float) < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {int(as_float)}")
    return int(as_float)


def check_choice(value, name, choices):
    """``value`` if it is one of ``choices``, else ``ValueError`` listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


class FixedOptions:
    """Mixin for objects whose options are read once, when a graph is traced: the names in ``_FIXED`` can be
    assigned while the object is constructed (in any ``__init__`` of its class hierarchy) and raise
    ``AttributeError`` afterwards, instead of being silently ignored by graphs traced before."""

    _FIXED = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None:
            cls.__init__ = _fixing_after(init)

    def __setattr__(self, name, value):
        if name in self._FIXED and self.__dict__.get("_options_fixed", False):
            raise AttributeError(f"{name} is fixed when a {type(self).__name__} is built (a traced graph reads it "
                                 "once); build a new one to change it")
        super().__setattr__(name, value)


def _fixing_after(init):
    """Wrap an ``__init__`` so that the options are fixed when the outermost constructor returns."""
    @functools.wraps(init)
    def wrapped(self, *args, **kwargs):
        depth = self.__dict__.get("_init_depth", 0)
        object.__setattr__(self, "_init_depth", depth + 1)
        try:
            init(self, *args, **kwargs)
        finally:
            object.__setattr__(self, "_init_depth", depth)
        if depth == 0:
            object.__setattr__(self, "_options_fixed", True)
    return wrapped
