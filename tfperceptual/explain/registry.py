"""The registry of explainers (:data:`EXPLAINERS`, filled by :func:`register_explainer`) and a builder by name."""

from __future__ import annotations

from ..registry import Registry

__all__ = ["EXPLAINERS", "register_explainer", "build_explainer", "explainer_names"]

#: name → Explainer class (or factory ``f(model, **options) -> Explainer``), in registration order
EXPLAINERS = Registry("explainer")
#: decorator: register an :class:`~tfperceptual.explain.base.Explainer` class (or factory) under a name
register_explainer = EXPLAINERS.register
explainer_names = EXPLAINERS.names


def build_explainer(name, model, **kwargs):
    """The registered explainer ``name`` on ``model`` with its options.

    Raises:
        ValueError: an unknown name (the message lists the registered ones); the explainer's own errors.
    """
    return EXPLAINERS.build(name, model, **kwargs)
