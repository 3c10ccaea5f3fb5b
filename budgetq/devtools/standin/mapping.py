"""The stand-in's settings as JSON: ``JSONDict`` and building a settings dataclass from a mapping.

``FaultPlan`` and ``RateLimits`` arrive as JSON (admin endpoints, ``--faults``/``--limits``); each
value is coerced to the type of its field's default so a typo fails loudly instead of misbehaving.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

JSONDict = dict[str, Any]


def _coerce(value: object, like: object) -> object:
    """Convert a JSON value to the type of a field's default (``like``)."""
    if isinstance(like, bool):
        if not isinstance(value, bool):
            raise ValueError(f"expected a boolean, got {value!r}")
        return value
    if isinstance(like, tuple):
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise ValueError(f"expected a pair, got {value!r}")
        return (int(value[0]), int(value[1]))
    if isinstance(like, int) and not isinstance(value, bool) and isinstance(value, int | float):
        return int(value)
    if isinstance(like, float) and not isinstance(value, bool) and isinstance(value, int | float):
        return float(value)
    if like is None and (value is None or isinstance(value, int | float)):
        return value if value is None else int(value)
    raise ValueError(f"unexpected value {value!r}")


def from_mapping(cls: Any, data: Mapping[str, object]) -> Any:
    """An instance of dataclass ``cls`` from JSON ``data``; unknown fields or wrong types raise ValueError."""
    defaults = cls()
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    kwargs = {name: _coerce(value, getattr(defaults, name)) for name, value in data.items()}
    return cls(**kwargs)
