"""Shared helpers for the sweep tests: sweep files with tiny settings on the normal-gamma entry."""

import textwrap

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
