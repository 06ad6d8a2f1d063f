"""The registry of attacks (:data:`ATTACKS`, filled by :func:`register_attack`) and a builder by name."""

from __future__ import annotations

from ..registry import Registry

__all__ = ["ATTACKS", "register_attack", "build_attack", "attack_names"]

#: name → Attack class, in registration order (the order of the comparison tables)
ATTACKS = Registry("attack")
#: class decorator: register an :class:`~tfperceptual.attacks.base.Attack` subclass under a name
register_attack = ATTACKS.register
attack_names = ATTACKS.names


def build_attack(name, model, eps, steps=50, batch_size=None, **kwargs):
    """The registered attack ``name`` on ``model`` with budget ``eps`` (and ``steps``, ``batch_size``, options).

    Raises:
        ValueError: an unknown name (the message lists the registered ones); the attack's own errors.
    """
    extra = {} if batch_size is None else {"batch_size": batch_size}
    return ATTACKS.build(name, model, eps=eps, steps=steps, **extra, **kwargs)
