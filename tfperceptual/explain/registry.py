"""The registry of explainers: a dict filled by :func:`register_explainer`, and a builder by name."""

from __future__ import annotations

__all__ = ["EXPLAINERS", "register_explainer", "build_explainer", "explainer_names"]

#: name → Explainer class (or factory ``f(model, **kwargs) -> Explainer``), in registration order
EXPLAINERS: dict = {}


def register_explainer(name):
    """Decorator: register an :class:`~tfperceptual.explain.base.Explainer` class (or a factory function
    returning one) under ``name``."""
    def deco(obj):
        if name in EXPLAINERS and EXPLAINERS[name] is not obj:
            raise ValueError(f"an explainer is already registered as {name!r}")
        if isinstance(obj, type):
            obj.name = name
        EXPLAINERS[name] = obj
        return obj
    return deco


def explainer_names():
    """Registered explainer names, in registration order."""
    return tuple(EXPLAINERS)


def build_explainer(name, model, **kwargs):
    """The registered explainer ``name`` on ``model`` with its options.

    Raises:
        ValueError: an unknown name (the message lists the registered ones); the explainer's own errors.
    """
    if name not in EXPLAINERS:
        raise ValueError(f"unknown explainer {name!r}; choose from {explainer_names()}")
    return EXPLAINERS[name](model, **kwargs)
