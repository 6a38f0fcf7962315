"""Shared helpers of the benchmark scripts: their optional peers, the packages of pyproject.toml's ``bench`` extra
(numpyro, jax, gpytorch, doubleml, econml), and the checks of their command-line values (comma-separated name lists,
counts, output paths, existing files a run would replace, input files, devices), made before any work so that a bad
value never costs a run and a rerun never silently wipes a recorded result.

One rule in every script: a peer whose packages are not installed is left out of the run, with a note naming the
missing packages and the extra, printed before any work starts and again under the results; a run that would then
measure nothing is refused before any work. The scripts import this module as ``_peers`` (a script's own folder is
on ``sys.path`` when it runs as ``python benchmarks/NAME.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

BENCH_EXTRA = 'pip install -e ".[bench]"'


def installed(package: str) -> bool:
    """Whether the top-level ``package`` can be imported (found on the path; not imported here)."""
    return importlib.util.find_spec(package) is not None


def missing_packages(packages: Iterable[str]) -> list[str]:
    """The packages of ``packages`` that are not installed, in order."""
    return [p for p in packages if not installed(p)]


def skip_note(peer: str, missing: Iterable[str]) -> str:
    """The note printed when ``peer`` is left out because ``missing`` packages are not installed."""
    return (f"note: {peer} skipped: package(s) {', '.join(missing)} not installed "
            f"(in the bench extra: {BENCH_EXTRA})")


def split_available(wanted: Iterable[str], needs: Mapping[str, tuple[str, ...]]) -> tuple[list[str], list[str]]:
    """``wanted`` peers (or methods) split into those that can run and the skip notes of the others; ``needs`` maps a
    name to the packages it imports (names not in ``needs`` need nothing beyond pyrozoo's own dependencies)."""
    keep, notes = [], []
    for name in wanted:
        miss = missing_packages(needs.get(name, ()))
        if miss:
            notes.append(skip_note(name, miss))
        else:
            keep.append(name)
    return keep, notes


def parse_names(flag: str, text: str, known: Iterable[str], error: type[Exception] = SystemExit) -> list[str]:
    """The comma-separated names of ``text``, each one of ``known`` and each once; otherwise ``error`` naming
    ``flag`` and the known names (raised before any work)."""
    known = list(known)
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise error(f"{flag}: expected comma-separated names from: {', '.join(known)}; got "
                    f"{', '.join(map(repr, unknown)) if unknown else 'none'}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise error(f"{flag}: expected each name once, got {', '.join(map(repr, dup))} more than once")
    return names


def int_at_least(least: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``least`` (argparse's error names the flag, the bound and the value)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {least}, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"expected an integer >= {least}, got {value}")
        return value
    return parse


def check_out_file(flag: str, path: str | os.PathLike, error: Callable[[str], BaseException] = SystemExit) -> Path:
    """``path``, a file a script will write, as an absolute path; otherwise ``error`` naming ``flag``, unless its
    folder exists and is writable and the path is not a folder (checked before any work, so that a run never fails
    when it writes its first result)."""
    out = Path(path).expanduser().resolve()
    if out.is_dir():
        raise error(f"{flag}: expected a file path, got the folder {path}")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise error(f"{flag}: expected a path in an existing, writable folder; {out.parent} is not")
    return out


def check_new_files(flag: str, paths: Iterable[str | os.PathLike], overwrite: bool,
                    error: Callable[[str], BaseException] = SystemExit) -> None:
    """Refuse to replace files a run would write: ``error`` naming ``flag`` and the ``paths`` that already exist,
    unless ``overwrite`` (the script's ``--overwrite``); checked before any work, so that re-running a recorded
    command never silently wipes a committed result file."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        raise error(f"{flag}: expected a new file, but {', '.join(existing)} already exist(s); choose another path "
                    "or give --overwrite to replace it")


def check_files(flag: str, paths: Iterable[str | os.PathLike],
                error: Callable[[str], BaseException] = SystemExit) -> list[Path]:
    """``paths``, files a script will read, as paths; otherwise ``error`` naming ``flag`` and the missing ones."""
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise error(f"{flag}: expected existing files; no such file: {', '.join(missing)}")
    return paths


def check_device(flag: str, device: str, error: Callable[[str], BaseException] = SystemExit):
    """``device`` (auto, cpu, cuda, cuda:N) as a ``torch.device``, present on this machine; otherwise ``error``
    naming ``flag`` (pyrozoo's own check, :func:`pyrozoo.inference.device.resolve_device`)."""
    from pyrozoo.errors import PyrozooError
    from pyrozoo.inference.device import resolve_device

    try:
        return resolve_device(device)
    except PyrozooError as exc:
        raise error(f"{flag}: {str(exc).removeprefix('device: ')}") from None
