"""Shared helpers of the benchmark scripts: their optional peers, the packages of pyproject.toml's ``bench`` extra
(numpyro, jax, gpytorch, doubleml, econml), and the check of comma-separated name lists given on their command lines.

One rule in every script: a peer whose packages are not installed is left out of the run, with a note naming the
missing packages and the extra, printed before any work starts and again under the results; a run that would then
measure nothing is refused before any work. The scripts import this module as ``_peers`` (a script's own folder is
on ``sys.path`` when it runs as ``python benchmarks/NAME.py``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping

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
