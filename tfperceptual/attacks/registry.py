"""The registry of attacks: a dict filled by the :func:`register_attack` decorator, and a builder by name."""

from __future__ import annotations

__all__ = ["ATTACKS", "register_attack", "build_attack", "attack_names"]

#: name → Attack class, in registration order (the order of the comparison tables)
ATTACKS: dict = {}


def register_attack(name):
    """Class decorator: register an :class:`~tfperceptual.attacks.base.Attack` subclass under ``name``
    (also set as its ``name`` attribute)."""
    def deco(cls):
        if name in ATTACKS and ATTACKS[name] is not cls:
            raise ValueError(f"an attack is already registered as {name!r}: {ATTACKS[name].__name__}")
        cls.name = name
        ATTACKS[name] = cls
        return cls
    return deco


def attack_names():
    """Registered attack names, in registration order."""
    return tuple(ATTACKS)


def build_attack(name, model, eps, steps=50, batch_size=None, **kwargs):
    """The registered attack ``name`` on ``model`` with budget ``eps`` (and ``steps``, ``batch_size``, options).

    Raises:
        ValueError: an unknown name (the message lists the registered ones); the attack's own errors.
    """
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose from {attack_names()}")
    extra = {} if batch_size is None else {"batch_size": batch_size}
    return ATTACKS[name](model, eps=eps, steps=steps, **extra, **kwargs)
