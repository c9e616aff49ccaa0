"""The ``resnetlab`` command: subcommands → options → library calls, nothing more.

One module per command group: :mod:`~resnetlab.cli.inspection` (models, summary, compare,
params, plot, weights, tour), :mod:`~resnetlab.cli.train`, :mod:`~resnetlab.cli.infer`
(eval, predict, export, quantize, bench) and :mod:`~resnetlab.cli.reproduce`.

Every error a user can cause (unknown model, malformed size, unwritable output: a
:class:`~resnetlab.errors.ResnetlabError`, or the system refusing a file) prints one line and
exits with status 2. Any other exception is a bug of resnetlab: one line that says so and
where its traceback was written, exit status 1.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from resnetlab import __version__
from resnetlab.cli import infer, inspection, reproduce, train
from resnetlab.cli.common import EXIT_USAGE, Parser, UsageError
from resnetlab.errors import OutputError, ResnetlabError, find_cause, first_line
from resnetlab.fileio import cache_root

EXIT_BUG = 1

# An OSError with one of these, or naming a file, is the system refusing what the user asked
# (a missing or unreadable file, a full disk, a read-only folder), not a bug of ours.
ENVIRONMENT_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.EACCES,
        errno.EPERM,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.ENAMETOOLONG,
        errno.ELOOP,
    }
)

# Commands that run a model over many batches: they keep freed memory in the process
# (glibc would otherwise map and unmap every activation over 32 MiB on each call).
RUNS_MODELS = frozenset({"train", "eval", "predict", "bench", "reproduce", "quantize"})


def build_parser() -> Parser:
    parser = Parser(
        prog="resnetlab",
        description="Deep residual networks (He et al., 2015), exact: build, inspect, compare.",
    )
    parser.add_argument("--version", action="version", version=f"resnetlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    inspection.add_parsers(sub)
    train.add_parser(sub)
    infer.add_parsers(sub)
    reproduce.add_parser(sub, build_parser)
    return parser


def is_environment_error(err: OSError) -> bool:
    """Whether ``err`` is about a file or the machine (exit 2), not a bug (exit 1)."""
    return err.filename is not None or err.errno in ENVIRONMENT_ERRNOS


def environment_cause(err: BaseException) -> OSError | None:
    """The environment's ``OSError`` behind another exception (a full disk under torch's
    compiler, which reports it as an ``InductorError``), or None."""
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, OSError) and cur.errno in ENVIRONMENT_ERRNOS:
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _where(cause: OSError, err: BaseException) -> str:
    """One line for the machine refusing a write inside a library: its file if it names
    one, else torch's compiler cache when the compiler raised it (it names no file)."""
    if cause.filename is not None:
        return f"cannot write {cause.filename}: {(cause.strerror or str(cause)).lower()}"
    text = f"{(cause.strerror or str(cause)).lower()} [errno {cause.errno}]"
    if type(err).__module__.startswith(("torch._inductor", "torch._dynamo")):
        from torch._inductor.runtime.cache_dir_utils import cache_dir

        return f"cannot write torch's compiler cache in {cache_dir()}: {text}"
    return text


def write_traceback(err: BaseException, command: str) -> Path:
    """Write ``err``'s traceback to ``errors/`` in the cache (else the temporary folder) and
    return the file, for a bug report."""
    text = f"{command}\nresnetlab {__version__}\n\n" + "".join(traceback.format_exception(err))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        folders = [cache_root() / "errors"]
    except ResnetlabError:  # HOME empty or relative: the handler must not crash itself
        folders = []
    for folder in (*folders, Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f"resnetlab-{stamp}-", suffix=".txt", dir=folder)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            return Path(name)
        except OSError:
            continue
    raise err  # nowhere to write: Python prints the traceback instead


def _user_error(command: str, err: BaseException | str) -> int:
    print(f"resnetlab {command}: error: {first_line(err)}", file=sys.stderr)
    return EXIT_USAGE


def _internal_error(command: str, words: list[str], err: BaseException) -> int:
    """A bug of resnetlab: one line saying so, and the traceback kept in a file to report."""
    where = write_traceback(err, f"resnetlab {' '.join(words)}")
    print(
        f"resnetlab {command}: internal error (a bug of resnetlab, not of your input): "
        f"{type(err).__name__}: {first_line(err)}; the traceback is in {where}",
        file=sys.stderr,
    )
    return EXIT_BUG


class _ClosedStream:
    """Standing in for a closed standard output (``resnetlab models >&-``): Python sets
    ``sys.stdout`` to None, and the first print was an internal error."""

    def write(self, text: str) -> int:
        raise OutputError("standard output is closed (>&-): nothing can be printed")

    def flush(self) -> None:
        pass


def _usable_streams() -> None:
    """A closed stdout refuses in one line; an encoding that cannot write ×, ← or é
    (``PYTHONIOENCODING=ascii``, a C locale) writes them as escapes instead of failing."""
    if sys.stdout is None:
        sys.stdout = _ClosedStream()
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "utf-8").lower().replace("-", "")
        if encoding != "utf8" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    _usable_streams()
    parser = build_parser()
    words = list(argv) if argv is not None else sys.argv[1:]
    args = parser.parse_args(words)
    args.command_line = "resnetlab " + " ".join(words)  # recorded in training reports
    try:
        size = getattr(args, "input_size", None)
        if size is not None and len(size) != 4:
            raise UsageError(f"--input-size takes four numbers, N C H W; got {len(size)}")
        if args.command in RUNS_MODELS:
            from resnetlab.infer.memory import keep_freed_memory

            keep_freed_memory()  # the process is ours: reuse large activations, see the module
        code = args.func(args)
    except ResnetlabError as err:
        return _user_error(args.command, err)
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (which saves and exits)
        print(f"resnetlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `resnetlab models | head`
        sys.stderr.close()
        return 0
    except OSError as err:
        if is_environment_error(err):
            return _user_error(args.command, err)
        return _internal_error(args.command, words, err)
    except Exception as err:  # anything else is ours to fix, unless the machine refused
        if find_cause(err, KeyboardInterrupt):  # torch.export wraps a Ctrl-C
            print(f"resnetlab {args.command}: interrupted", file=sys.stderr)
            return 130
        cause = environment_cause(err)
        if cause is not None:
            return _user_error(args.command, _where(cause, err))
        return _internal_error(args.command, words, err)
    return code if isinstance(code, int) else 0


__all__ = ["build_parser", "main"]
