"""Where the library's log lines go when a command runs: set once, at the entry point.

The library logs with :mod:`logging` (``logging.getLogger(__name__)`` in each module) and
prints nothing itself. The commands that train (``train``, ``reproduce``) show those lines
as they always printed them: the message alone, one line each on stdout, flushed, from
rank 0 alone under ``torchrun`` (its ``RANK``). Other commands attach nothing, so what the
library says while ``eval`` or ``predict`` read data stays unsaid.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["console_log"]


class _PlainStdout(logging.Handler):
    """A record's message on the current ``sys.stdout`` (looked up at each record, so a
    redirected stdout is followed), flushed: what ``print(message, flush=True)`` wrote. A
    failed write raises, as that ``print`` did (a closed pipe ends the command)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stdout.write(f"{record.getMessage()}\n")
        sys.stdout.flush()


def main_rank(_record: logging.LogRecord) -> bool:
    """Rank 0 speaks (or a process outside ``torchrun``); the other ranks' lines would
    repeat its own."""
    return os.environ.get("RANK", "0").strip() in ("", "0")


@contextmanager
def console_log() -> Iterator[None]:
    """While inside: ``resnetlab``'s INFO lines and above printed by :class:`_PlainStdout`
    on rank 0; the logger's level and handlers as they were afterwards."""
    logger = logging.getLogger("resnetlab")
    handler = _PlainStdout()
    handler.addFilter(main_rank)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
