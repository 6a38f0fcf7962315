"""Sweeps: a TOML grid of runs executed on a local process pool or on Ray, resumable, and reports across runs.

``load_spec`` (spec.py) validates the grid, ``run_sweep`` (runner.py) executes the missing cells on a backend
(local.py, ray_backend.py), ``build_report`` (report.py) tabulates and plots the run directories.
"""

from pyrozoo.sweep.runner import CellOutcome, SweepSummary, cell_status, execute_cell, run_sweep
from pyrozoo.sweep.spec import Cell, SweepSpec, load_spec, parse_spec

__all__ = ["Cell", "CellOutcome", "SweepSpec", "SweepSummary", "cell_status", "execute_cell", "load_spec",
           "parse_spec", "run_sweep"]
