"""Registries: a dict of name → class (or factory) that a decorator fills, in registration order.

:data:`tfperceptual.attacks.ATTACKS` and :data:`tfperceptual.explain.EXPLAINERS` are two of them; the
protocols and the command line read them when they run, so a newly registered attack or explainer can be
named there (an attack also needs an ε grid, in ``eps_grids`` / ``--eps``), and the contract tests refuse
a registered method they have no options for.
"""

from __future__ import annotations

__all__ = ["Registry"]


class Registry(dict):
    """name → class or factory ``f(model, **options)``, filled by :meth:`register`.

    Args:
        kind: what is registered ("attack", "explainer"), for messages.
    """

    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def register(self, name):
        """Decorator registering a class (its ``name`` attribute is set) or a factory under ``name``.

        Raises:
            ValueError: another object is already registered under ``name``.
        """
        def deco(obj):
            if name in self and self[name] is not obj:
                raise ValueError(f"an {self.kind} is already registered as {name!r}: {self[name]!r}")
            if isinstance(obj, type):
                obj.name = name
            self[name] = obj
            return obj
        return deco

    def names(self):
        """The registered names, in registration order."""
        return tuple(self)

    def build(self, name, *args, **kwargs):
        """``self[name](*args, **kwargs)``.

        Raises:
            ValueError: an unknown name (the message lists the registered ones).
        """
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; choose from {self.names()}")
        return self[name](*args, **kwargs)
