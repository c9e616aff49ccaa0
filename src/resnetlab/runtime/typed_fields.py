"""A section of untrusted values checked into its dataclass against the fields' annotations
(:func:`coerce_section`): an unknown key or a value of the wrong type is a one-line
:class:`~resnetlab.errors.ConfigError` that names it, not a ``TypeError`` deep inside training.

:mod:`~resnetlab.runtime.config` builds each section of a recipe through it.
"""

from __future__ import annotations

import types
import typing
from dataclasses import fields
from typing import Any, Literal

from resnetlab.errors import ConfigError

_SCALARS: dict[Any, tuple[tuple[type, ...], str]] = {
    bool: ((bool,), "true or false"),
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
    str: ((str,), "a string (quote a value such as '001')"),
}


def typed_value(name: str, hint: Any, value: Any) -> Any:
    """``value`` checked against a config field's annotation (a one-line ``ConfigError``
    instead of a ``TypeError`` deep inside training). YAML reads ``5e-4`` as a string (it
    wants ``5.0e-4``), so a number field also takes a string that parses as a float."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):  # X | None
        if value is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        return typed_value(name, rest[0], value) if len(rest) == 1 else value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if hint is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if hint in _SCALARS:
        kinds, words = _SCALARS[hint]
        if not isinstance(value, kinds) or (hint is not bool and isinstance(value, bool)):
            raise ConfigError(f"{name} must be {words}, got {value!r}")
    if origin is tuple:  # tuple[int, ...]: milestones
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"{name} must be a list of integers, got {value!r}")
        return tuple(value)
    if origin is dict and not isinstance(value, dict):
        raise ConfigError(f"{name} must be a mapping, got {value!r}")
    return value


def coerce_section(cls: type[Any], section: str, values: dict[str, Any]) -> Any:
    """The dataclass ``cls`` built from ``values``, the recipe section ``section``."""
    if not isinstance(values, dict):
        raise ConfigError(f"section {section!r} must be a mapping")
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown key {section}.{unknown[0]}; valid keys: {', '.join(sorted(names))}"
        )
    hints = typing.get_type_hints(cls)
    kw = {key: typed_value(f"{section}.{key}", hints[key], value) for key, value in values.items()}
    try:
        return cls(**kw)
    except TypeError as err:
        raise ConfigError(f"section {section!r}: {err}") from err
