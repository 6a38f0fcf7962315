"""Shared helpers for the sweep tests: sweep files with tiny settings on the normal-gamma entry."""

import os
import textwrap
import types

import pytest


def _sweep_text(seeds: str = "[0, 1]", extra: str = "") -> str:
    """Two model blocks (normal-gamma by Gibbs and by NUTS) x the seeds, tiny settings, CPU."""
    return textwrap.dedent(f"""
        [sweep]
        name = "test"
        seeds = {seeds}
        tiny = true

        [defaults]
        device = "cpu"

        [[models]]
        name = "normal-gamma"
        label = "ng-gibbs"
        inference = "gibbs"

        [[models]]
        name = "normal-gamma"
        label = "ng-nuts"
        inference = "nuts"
        num_samples = 20
        warmup_steps = 10
        num_chains = 1
        """) + textwrap.dedent(extra)


@pytest.fixture
def sweep_text():
    """``sweep_text(seeds="[0, 1]", extra="")``: the text of a 2-model x seeds sweep file with tiny settings."""
    return _sweep_text


@pytest.fixture
def write_spec(tmp_path):
    def write(text: str, name: str = "sweep.toml"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def _descendants(pid: int) -> set[int]:
    """Pids of the live (not zombie) processes below ``pid``, read from /proc (psutil is not a dependency)."""
    parents = {}
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                with open(f"/proc/{stat}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            if fields[0] != "Z":
                parents[int(stat)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def proc_tree():
    """``descendants(pid)`` and ``alive(pid)`` from /proc, for the tests that signal a sweep's driver."""
    return types.SimpleNamespace(descendants=_descendants, alive=_alive)
