"""The ``local`` backend: cells in a pool of worker processes on this machine (``--jobs N``).

``jobs=1`` runs the cells one after another in this process (no start-up cost). With ``jobs > 1`` the workers are
*spawned*, not forked: forking a process that has already used torch's OpenMP thread pool can deadlock the child.
Each worker gets ``cpu_count // jobs`` torch threads so that N workers do not oversubscribe the cores. Workers write
their run directories themselves (same machine, same file system; writes are atomic per run).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from pyrozoo.errors import PyrozooError
from pyrozoo.sweep.runner import CellOutcome, execute_cell
from pyrozoo.sweep.spec import Cell

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def threads_per_worker(jobs: int) -> int:
    """Cores shared evenly between ``jobs`` workers (at least one thread each)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // jobs)


def _init_worker(threads: int) -> None:
    import warnings

    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(threads)


def run_local(cells: Sequence[Cell], root: Path, on_done: Callable[[CellOutcome], None], *, jobs: int = 1) -> None:
    """Run ``cells`` with ``jobs`` processes, calling ``on_done`` in this process as each one finishes.

    On ``KeyboardInterrupt`` the cells not started are cancelled and the workers stopped; finished runs stay."""
    if jobs == 1:
        for cell in cells:
            on_done(execute_cell(cell, root))
        return
    ctx = multiprocessing.get_context("spawn")
    threads = threads_per_worker(jobs)
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(cells)), mp_context=ctx, initializer=_init_worker,
                               initargs=(threads,))
    # OpenMP/BLAS read their thread counts when loaded, before the initializer runs: pass them by environment
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: str(threads) for k, v in saved.items() if v is None})
    try:
        futures = {pool.submit(execute_cell, cell, root): cell for cell in cells}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
    try:
        remaining = set(futures)
        while remaining:
            finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for fut in finished:
                try:
                    on_done(fut.result())
                except BrokenProcessPool:
                    raise PyrozooError(
                        f"a worker process died (out of memory or a crash) while running {futures[fut].key} or a "
                        f"cell beside it; the completed runs are kept, run the sweep again to resume (when "
                        f"run_sweep is called from a script with jobs > 1, the script needs an "
                        f"`if __name__ == \"__main__\":` guard: the workers are spawned and import it)") from None
    except BaseException:
        for fut in futures:
            fut.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
