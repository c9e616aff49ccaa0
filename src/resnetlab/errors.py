"""The errors resnetlab raises for input a user got wrong, and how they read.

A :class:`ResnetlabError` is the user's to fix (a misspelt model, a recipe that is not
YAML, an unwritable output): its message is one line, and the ``resnetlab`` command prints
it and exits with status 2. Anything else that escapes a command is a bug of resnetlab and
is reported as one (exit status 1, the traceback kept in a file).

The subclasses that were ``ValueError`` before this base existed still are, so library code
that catches ``ValueError`` keeps working; :class:`MissingExtraError` is still an
``ImportError`` for the same reason.
"""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=BaseException)


class ResnetlabError(Exception):
    """Input a user can fix; the message is one line that says what and how."""


class InvalidValueError(ResnetlabError, ValueError):
    """A value (a model option, a size, a flag) outside what it may be."""


class ConfigError(InvalidValueError):
    """A recipe or override that does not make sense (one-line message)."""


class DataError(InvalidValueError):
    """Data a user named cannot be used: missing, unreadable or inconsistent."""


class CheckpointError(InvalidValueError):
    """A checkpoint or published weights file that cannot be used (one-line message)."""


class OutputError(InvalidValueError):
    """An output file or folder that cannot be written (it is checked before the work)."""


class MissingExtraError(ResnetlabError, ImportError):
    """An optional dependency (a ``pip install 'resnetlab[…]'`` extra) is not installed."""


class NoEngineError(ResnetlabError, RuntimeError):
    """None of the inference engines asked for can run here (each one's reason is listed)."""


def find_cause(err: BaseException, kind: type[E]) -> E | None:
    """The first ``kind`` in ``err``'s chain (``err`` itself, then its causes and contexts):
    how a wrapped error is recognised (torch's zip writer reports a failed ``write()`` as a
    ``RuntimeError`` whose context is the ``OSError``; torch.export wraps a Ctrl-C)."""
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, kind):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def first_line(err: BaseException | str) -> str:
    """The first non-empty line of ``err``'s message (an exception's, or a reason given as
    text), else the exception type's name: the one line a report, a log or the command
    prints for an exception. Terminal escape codes (torch's exporter colours its errors)
    are taken out: the line is plain text."""
    import re

    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[@-_]", "", str(err))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines:
        return lines[0]
    return type(err).__name__ if isinstance(err, BaseException) else ""


def env_int(name: str, default: int | None) -> int:
    """The whole number in environment variable ``name`` (``WORLD_SIZE``, ``RANK``: set by
    torchrun, or by hand), else ``default``; a value that is not one, or a missing variable
    without a default, is a one-line :class:`ConfigError` (``WORLD_SIZE=abc`` was a raw
    traceback)."""
    import os

    text = os.environ.get(name)
    if text is None or (not text.strip() and default is not None):
        if default is None:
            raise ConfigError(f"{name} is not set (torchrun sets it beside WORLD_SIZE)")
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            f"{name}={text!r} is not a whole number (a torchrun variable: unset it or fix it)"
        ) from None
