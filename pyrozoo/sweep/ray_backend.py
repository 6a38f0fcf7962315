"""The ``ray`` backend: one Ray task per cell, on a local Ray instance or an existing cluster (``--address``).

* ``address=None`` starts a local instance (``ray.init()``), or reuses one this process already started;
  ``address="auto"`` joins the cluster this machine belongs to; ``HOST:PORT`` / ``ray://HOST:PORT`` name one.
  The address is probed with a plain TCP connect (5 s) first, so a wrong address is a clear error at once, not a
  long hang inside ``ray.init``.
* Each task asks for ``cpus_per_task`` CPUs (torch uses as many threads) and, when the cell's device is CUDA, for
  ``gpus_per_task`` GPUs (default 1; fractions share a GPU). ``device = "auto"`` asks for a GPU only if the cluster
  has any. A cell that asks for CUDA on a cluster without GPUs is an error before anything runs (Ray would wait
  for the resource forever).
* Tasks return the run directory's files (:func:`~pyrozoo.sweep.runner.execute_cell_portable`) and the driver
  writes them, so worker nodes need pyrozoo installed but no shared file system. Each finished task is stored as
  it arrives: interrupting the driver loses only the tasks in flight.
* On an interrupt the tasks in flight are cancelled (their workers killed) and waited for (at most
  ``CANCEL_WAIT_S``). A killed worker cannot remove the temporary folder it ran its cell in; the folders are named
  after the session (:func:`~pyrozoo.sweep.runner.cell_temp_prefix`), so :meth:`RaySession.close` removes the
  session's folders on the driver's machine (all of them with a local instance), and each task first removes the
  folders of dead workers on its node (:func:`~pyrozoo.sweep.runner.remove_orphaned_temporaries`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pyrozoo.errors import PyrozooError
from pyrozoo.sweep.runner import CellOutcome, remove_session_temporaries, store_payload, write_failure
from pyrozoo.sweep.spec import Cell

CANCEL_WAIT_S = 10.0  # how long an interrupted driver waits for its cancelled tasks' workers to be gone


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise PyrozooError("backend: ray is not installed; install the extra with pip install 'pyrozoo[ray]' "
                           "(or pip install 'ray[default]')") from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """``HOST:PORT`` from ``[ray://]HOST:PORT``; ``None`` for ``auto``/``local``."""
    if address in ("auto", "local"):
        return None
    text = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise PyrozooError(f"address: expected auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def probe_address(address: str, timeout: float = 5.0) -> None:
    """Raise a clear error unless something accepts TCP connections at the address."""
    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout):
            pass
    except OSError as exc:
        raise PyrozooError(f"address: cannot reach a Ray cluster at {address!r} ({exc.strerror or exc}); "
                           f"start one with `ray start --head` or check the host and port") from None


def _needs_gpu(device: str, cluster_gpus: float) -> bool:
    return device.startswith("cuda") or (device == "auto" and cluster_gpus > 0)


def _ray_cell(cell: Cell, tag: str = "cell") -> dict[str, Any]:
    """The body of a Ray task: match torch's threads to the CPUs Ray assigned, remove the temporary folders of
    killed workers on this node, then run the cell (in a temporary folder named after the session ``tag``)."""
    import warnings

    import ray
    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    from pyrozoo.sweep.runner import execute_cell_portable, remove_orphaned_temporaries

    remove_orphaned_temporaries()
    return execute_cell_portable(cell, tag)


class RaySession:
    """A connected Ray runtime and the per-task resources; :meth:`run` executes cells, :meth:`close` disconnects
    (a local instance that this session started is shut down) and removes what killed tasks left behind. ``tag``
    names the session's temporary folders (random by default)."""

    def __init__(self, ray: Any, *, owned: bool, cpus_per_task: float, gpus_per_task: float,
                 cluster_gpus: float, tag: str | None = None) -> None:
        self.ray = ray
        self.owned = owned
        self.cpus_per_task = cpus_per_task
        self.gpus_per_task = gpus_per_task
        self.cluster_gpus = cluster_gpus
        self.tag = tag or uuid.uuid4().hex[:12]

    def task_options(self, cell: Cell) -> dict[str, float]:
        gpus = self.gpus_per_task if _needs_gpu(str(cell.config.get("device", "auto")), self.cluster_gpus) else 0
        return {"num_cpus": self.cpus_per_task, "num_gpus": gpus}

    def run(self, cells: Sequence[Cell], root: Path, on_done: Callable[[CellOutcome], None]) -> None:
        ray = self.ray
        remote = ray.remote(max_retries=0)(_ray_cell)
        refs = {remote.options(**self.task_options(cell)).remote(cell, self.tag): cell for cell in cells}
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    cell = refs[ref]
                    try:
                        payload = ray.get(ref)
                    except Exception as exc:  # the task itself died (worker crash, out of memory, unpicklable ...)
                        error = f"{type(exc).__name__}: {exc}".strip()
                        write_failure(root, cell, error.splitlines()[0], error, 0.0)
                        on_done(CellOutcome(cell.key, "failed", 0.0, error=error.splitlines()[0]))
                        continue
                    on_done(store_payload(root, cell, payload))
        except BaseException:
            self._cancel(pending)
            raise

    def _cancel(self, refs: Sequence[Any]) -> None:
        """Cancel the tasks (killing the workers that run them) and wait, at most ``CANCEL_WAIT_S``, until they are
        gone, so that nothing writes into their temporary folders when :meth:`close` removes them. Best effort: a
        failure here must not hide the interrupt that got us here."""
        with contextlib.suppress(Exception):
            for ref in refs:
                self.ray.cancel(ref, force=True)
            if refs:
                self.ray.wait(list(refs), num_returns=len(refs), timeout=CANCEL_WAIT_S)

    def close(self) -> None:
        try:
            if self.owned and self.ray.is_initialized():
                self.ray.shutdown()
        finally:  # the folders of cells whose workers were killed (cancelled, crashed), on this machine
            remove_session_temporaries(self.tag)


def connect(address: str | None = None, *, cells: Sequence[Cell] = (), gpus_per_task: float | None = None,
            cpus_per_task: float = 1, num_cpus: int | None = None) -> RaySession:
    """Start or join Ray and check that the cluster can run ``cells`` (GPUs for CUDA cells)."""
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise PyrozooError(f"address: expected auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    if address is not None:
        probe_address(address)
    ray = import_ray()
    owned = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {}
        if address is None:  # a new local instance
            kwargs = {"num_cpus": num_cpus, "include_dashboard": False, "log_to_driver": False,
                      "logging_level": logging.WARNING}
        elif not address.startswith("ray://"):  # Ray Client (ray://) accepts none of these
            kwargs = {"log_to_driver": False, "logging_level": logging.WARNING}
        t0 = time.perf_counter()
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            hint = ("; if the cluster uses token authentication, export its token as RAY_AUTH_TOKEN "
                    "or RAY_AUTH_TOKEN_PATH, or run on a cluster node with --address auto") if address else ""
            raise PyrozooError(f"address: could not connect to Ray at {address or 'a new local instance'!r} "
                               f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}){hint}") from None
        owned = True
        logging.getLogger(__name__).info("ray.init took %.1f s", time.perf_counter() - t0)
    resources = ray.cluster_resources()
    cluster_gpus = float(resources.get("GPU", 0))
    gpus = 1.0 if gpus_per_task is None else float(gpus_per_task)
    cuda_cells = [c.key for c in cells if str(c.config.get("device", "auto")).startswith("cuda")]
    if cuda_cells and (cluster_gpus <= 0 or gpus <= 0):
        if owned:
            ray.shutdown()
        why = "the Ray cluster has no GPUs" if cluster_gpus <= 0 else "gpus_per_task is 0"
        raise PyrozooError(f"device: {len(cuda_cells)} cell(s) ask for CUDA (e.g. {cuda_cells[0]}) but {why}")
    if cpus_per_task > resources.get("CPU", 0):
        if owned:
            ray.shutdown()
        raise PyrozooError(f"cpus_per_task: {cpus_per_task} asked for, the cluster has {resources.get('CPU', 0)}")
    return RaySession(ray, owned=owned, cpus_per_task=cpus_per_task, gpus_per_task=gpus, cluster_gpus=cluster_gpus)
