"""YAML text as the package reads it: one parser for recipe files and run folders'
``config.yaml`` (:func:`load_yaml`: a key given twice refused, an alias bomb capped at
:data:`MAX_VALUES`), the grammar of one ``--set`` value (:func:`parse_value`,
:func:`parse_override`), and the one-line reason a YAML error gives (:func:`yaml_reason`).

:mod:`~resnetlab.runtime.config` turns what these read into its dataclasses.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from resnetlab.errors import ConfigError

# A recipe is a few dozen values; YAML aliases can make a short file expand to billions
# (an "alias bomb", which ran out of memory after 25 s). Counted as expanded, with the count
# stopping at the cap, so checking a bomb costs no more than checking this many values.
MAX_VALUES = 10_000


def check_expanded_size(data: Any, where: str) -> None:
    """Refuse ``data`` (``where`` names it) if it expands to more than :data:`MAX_VALUES`."""
    stack, seen = [data], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise ConfigError(
                f"{where} expands to more than {MAX_VALUES:,} values (YAML aliases?); a "
                "recipe holds a few dozen"
            )
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


class UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]  # (PyYAML is untyped)
    """YAML's safe loader, refusing a key given twice in one mapping: plain YAML keeps the
    last silently, so ``lr: 0.1`` above a forgotten ``lr: 0.5`` trained at 0.5."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *base`` may repeat keys
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class says so
                continue
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (YAML would keep the last)",
                    key_node.start_mark,
                )
        out: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return out


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with duplicate keys refused (:class:`UniqueKeyLoader`)."""
    return yaml.load(text, Loader=UniqueKeyLoader)


def yaml_reason(err: BaseException) -> str:
    """One line for a failure to read a YAML file: the problem and where it is."""
    reason = (str(err).splitlines() or [type(err).__name__])[0]
    if isinstance(err, UnicodeDecodeError):
        reason = f"not UTF-8 text (byte {err.start})"
    mark = getattr(err, "problem_mark", None)
    if isinstance(err, yaml.MarkedYAMLError) and err.problem and mark is not None:
        reason = f"{err.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return reason


class _ValueLoader(UniqueKeyLoader):
    """YAML for one command-line value, with YAML 1.2's booleans and floats: ``no``, ``off``
    and ``yes`` stay words (YAML 1.1 reads ``residual=no`` as false, and the spec check
    that refuses the word could not see it) and ``1e999`` is a number (YAML 1.1 wants a dot
    and a signed exponent)."""


_BOOL, _FLOAT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:float"
_ValueLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _FLOAT)]
    for first, resolvers in UniqueKeyLoader.yaml_implicit_resolvers.items()
}
_ValueLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_ValueLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def parse_value(raw: str, where: str) -> Any:
    """One ``--set`` value, the grammar of every command: YAML (numbers, ``true``/``false``,
    ``[lists]``; a word is a string; ``null`` or nothing is None), capped as recipes are
    (:data:`MAX_VALUES`). ``where`` names the value in the error."""
    try:
        value = yaml.load(raw, Loader=_ValueLoader) if raw.strip() else None
    except yaml.constructor.ConstructorError as err:  # a duplicate key in a {…} value
        raise ConfigError(f"{where.removeprefix('override ')}: {err.problem}") from err
    except yaml.YAMLError:
        value = raw
    check_expanded_size(value, where)
    return value


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=0.05"`` → ``("optim.lr", 0.05)``; the value as :func:`parse_value`."""
    key, sep, raw = text.partition("=")
    if not sep or "." not in key:
        raise ConfigError(f"override must look like section.key=value, got {text!r}")
    return key.strip(), parse_value(raw, f"override {key.strip()}")
