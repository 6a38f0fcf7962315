"""The ``pyrozoo`` command. Subcommands live in :mod:`pyrozoo.commands`, one module each, discovered on start.

Bad input of any kind ends in one line on stderr (``pyrozoo: error: ...``) and exit status 2, with no traceback
and no run directory left behind. Output piped into a reader that stops early (``| head -1``) does not stop a
command: once the pipe is closed the rest of its output is dropped and it exits with its own status.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import io
import os
import pkgutil
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from pyrozoo.errors import PyrozooError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (and exit 2) instead of the usage block, and takes no
    abbreviated flags (a misspelt ``--num-chain`` must be an error, not a silent match)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise PyrozooError(f"{self.prog.removeprefix('pyrozoo ')}: {message}" if " " in self.prog else message)


def build_parser() -> argparse.ArgumentParser:
    import pyrozoo.commands as commands

    parser = _Parser(prog="pyrozoo", description="A model zoo for Pyro: run, diagnose and sweep zoo models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        importlib.import_module(f"{commands.__name__}.{info.name}").add_command(sub)
    return parser


_PACKAGE_DIR = str(Path(__file__).resolve().parent)


def _reader_gone(err: OSError) -> bool:
    """Whether a write failed because nothing reads the stream: a closed pipe (EPIPE), or a descriptor the shell
    closed before the start (``2>&-``: EBADF, which ended the command with status 1 and no message)."""
    return err.errno in (errno.EPIPE, errno.EBADF)


class _ReaderGone:
    """A wrapper of ``sys.stdout``/``sys.stderr`` for the command's life that outlives its reader: once a write or
    flush meets a closed pipe (``pyrozoo sweep ... | head -1``) the rest of the output goes to ``os.devnull``
    (Python's documented pattern: the file descriptor is pointed at it, so the interpreter's last flush succeeds
    too) and the command carries on to its own end and exit status. A closed pipe used to raise BrokenPipeError
    out of the first ``print`` after it, which stopped a sweep after one cell, or ``diagnose`` before its plots, and
    was then reported as success."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def _drop(self) -> None:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):  # no file descriptor (in memory)
            self._stream = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process's output)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as err:
            if not _reader_gone(err):
                raise
            self._drop()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as err:
            if not _reader_gone(err):
                raise
            self._drop()
            try:  # the buffer still holds what the pipe refused: it goes to os.devnull now
                self._stream.flush()
            except (OSError, ValueError):
                pass

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        """Our own warnings (UserWarnings pyrozoo raises: a model whose log-likelihood is one number, ...) as one
        ``pyrozoo: warning:`` line, like the errors; anything else (a NumPy RuntimeWarning in our code, another
        library's warning) in Python's usual form, which says what and where."""
        if issubclass(category, UserWarning) and str(Path(filename).resolve()).startswith(_PACKAGE_DIR + os.sep):
            print(f"pyrozoo: warning: {message}", file=file or sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    streams = sys.stdout, sys.stderr
    # output piped into `head` and the like: the command still runs to its end and exits with its own status
    sys.stdout, sys.stderr = (None if s is None else _ReaderGone(s) for s in streams)  # None: pythonw
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args) or 0)
    except PyrozooError as exc:
        print(f"pyrozoo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C; a sweep also turns SIGTERM and SIGHUP into one (with the signal number)
        signum = getattr(exc, "signum", signal.SIGINT)
        how = "interrupted" if signum == signal.SIGINT else f"terminated ({signal.Signals(signum).name})"
        print(f"pyrozoo: {how}", file=sys.stderr)
        return 128 + int(signum)
    finally:
        warnings.showwarning = previous
        for stream in (sys.stdout, sys.stderr):  # None where the stream was closed at start (`>&-`) or pythonw
            if stream is not None:
                stream.flush()  # a closed pipe found here, not by the interpreter's last flush (exit status 120)
        sys.stdout, sys.stderr = streams


if __name__ == "__main__":
    sys.exit(main())
