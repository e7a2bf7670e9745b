"""One lookup by name for depthlab's tables of named things (activations, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def lookup(table: Mapping[str, T], kind: str, name: str) -> T:
    """``table[name]``, or a ValueError naming ``kind``, ``name`` and the valid names.

    Examples
    --------
    >>> lookup({"relu": 1, "tanh": 2}, "activation", "tanh")
    2
    >>> lookup({"relu": 1, "tanh": 2}, "activation", "selu")
    Traceback (most recent call last):
    ...
    ValueError: unknown activation 'selu'; valid: relu, tanh
    """
    try:
        return table[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown {kind} {name!r}; valid: {', '.join(table)}"
        ) from None
