"""Optional peers of the benchmark scripts: the packages of pyproject.toml's ``bench`` extra (numpyro, jax, gpytorch,
doubleml, econml).

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
