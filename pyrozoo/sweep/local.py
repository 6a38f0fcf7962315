"""The ``local`` backend: cells in a pool of worker processes on this machine (``--jobs N``).

``jobs=1`` runs the cells one after another in this process (no start-up cost). With ``jobs > 1`` the workers are
*spawned*, not forked: forking a process that has already used torch's OpenMP thread pool can deadlock the child.
Each worker gets ``cpu_count // jobs`` torch threads so that N workers do not oversubscribe the cores, or
``OMP_NUM_THREADS`` where that is set (of a list such as ``2,1``, the first entry): results are bitwise the same
only for the same thread count, and a run in this process (``jobs=1``, ``pyrozoo run``) uses torch's default, which
is ``OMP_NUM_THREADS`` when set. Workers write their run directories themselves (same machine, same file system;
writes are atomic per run). A cell goes to the pool only when a worker is free; on Ctrl-C (or SIGTERM to the
driver, which ``run_sweep`` turns into the same interrupt) no further cell starts and the workers are terminated
(and waited for) before the sweep counts the finished runs and releases its lock.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from pyrozoo.errors import PyrozooError
from pyrozoo.sweep.runner import CellOutcome, execute_cell
from pyrozoo.sweep.spec import Cell

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def explicit_threads() -> int | None:
    """The thread count ``OMP_NUM_THREADS`` sets in this process's environment, or ``None`` where it is unset or
    empty: a positive integer, or OpenMP's comma-separated list of them (threads per nesting level, ``"2,1"``),
    whose first entry is the count (torch reads it so); anything else is a :class:`PyrozooError`."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    if not text:
        return None
    entries = [entry.strip() for entry in text.split(",")]
    if not all(entry.isascii() and entry.isdigit() and int(entry) > 0 for entry in entries):
        raise PyrozooError(f"OMP_NUM_THREADS: expected a positive integer or a comma-separated list of them (OpenMP's "
                           f"threads per nesting level; the first is the torch threads of each sweep worker), got "
                           f"{text!r}")
    return int(entries[0])


def threads_per_worker(jobs: int) -> int:
    """A worker's torch threads: ``OMP_NUM_THREADS`` where it is set (as a single run in a process started with it
    uses: results depend on the thread count), otherwise the cores shared evenly between ``jobs`` workers (at least
    one thread each)."""
    explicit = explicit_threads()
    if explicit is not None:
        return explicit
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // jobs)


def _exit_with_parent(sentinel: int) -> None:
    from multiprocessing.connection import wait as wait_for

    wait_for([sentinel])  # ready when the parent process has exited
    os._exit(1)


def _init_worker(threads: int) -> None:
    import signal
    import threading
    import warnings

    import torch
    from tqdm import tqdm

    # Ctrl-C in a terminal reaches the whole process group: the driver handles it and stops the workers itself
    # (a worker's own KeyboardInterrupt would be sent back as a result and the worker would take the next cell)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the driver stops a worker with SIGTERM (Process.terminate): whatever the driver's own SIGTERM disposition was,
    # a worker dies of it (an ignored SIGTERM is inherited across exec and would leave it running until the kill)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # a driver killed outright (SIGKILL, out of memory) cannot stop its workers, and they would wait on the pool's
    # queue forever, or finish a cell into OUT after its lock is gone: a worker ends as soon as its driver does
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent.sentinel,), daemon=True).start()
    # tqdm's default lock is a named multiprocessing semaphore that a terminated worker cannot unlink (Python's
    # resource tracker then warns of leaked semaphores); the cells run without progress bars, a thread lock does
    tqdm.set_lock(threading.RLock())
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(threads)


def _stop_workers(pool: ProcessPoolExecutor, timeout: float = 10.0) -> None:
    """Terminate the pool's worker processes and wait until they are gone (a run they were writing is left as a
    hidden temporary, never as a run directory), then shut the pool down."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join()
    pool.shutdown(wait=True, cancel_futures=True)


def run_local(cells: Sequence[Cell], root: Path, on_done: Callable[[CellOutcome], None], *, jobs: int = 1) -> None:
    """Run ``cells`` with ``jobs`` processes, calling ``on_done`` in this process as each one finishes.

    A cell is handed to the pool only when a worker is free, so on ``KeyboardInterrupt`` (or any error in the
    driver) no further cell starts; the workers are then terminated and waited for before this returns: when it
    raises, nothing writes below ``root`` any more. Finished runs stay."""
    if jobs == 1:
        for cell in cells:
            on_done(execute_cell(cell, root))
        return
    ctx = multiprocessing.get_context("spawn")
    threads = threads_per_worker(jobs)
    workers = min(jobs, len(cells))
    # OpenMP/BLAS read their thread counts when loaded, before the initializer runs: pass them by environment
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: str(threads) for k, v in saved.items() if v is None})
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,))
    queue = iter(cells)
    running: dict[Future, Cell] = {}

    def submit_next() -> None:
        cell = next(queue, None)
        if cell is not None:
            running[pool.submit(execute_cell, cell, root)] = cell

    try:
        for _ in range(workers):
            submit_next()
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                cell = running.pop(fut)
                try:
                    outcome = fut.result()
                except BrokenProcessPool:
                    raise PyrozooError(
                        f"a worker process died (out of memory or a crash) while running {cell.key} or a "
                        f"cell beside it; the completed runs are kept, run the sweep again to resume (when "
                        f"run_sweep is called from a script with jobs > 1, the script needs an "
                        f"`if __name__ == \"__main__\":` guard: the workers are spawned and import it)") from None
                on_done(outcome)
                submit_next()
    except BaseException:
        _stop_workers(pool)
        raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
    pool.shutdown(wait=True)
