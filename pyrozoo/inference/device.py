"""Device selection and seeding, in one place for every engine."""

from __future__ import annotations

import functools
import os
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import pyro
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.validation import check_seed

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Map ``"auto" | "cpu" | "cuda" | "cuda:N"`` (or a ``torch.device``) to a ``torch.device``.

    ``auto`` picks CUDA when it is present and the CPU otherwise; asking for CUDA on a machine without it is an error,
    and so is a ``cuda:N`` with N beyond the devices present. A ``torch.device`` is checked as its string form is:
    one of another type (``mps``, ``meta``, ``xla``) is refused here, not deep inside a fit ("PyTorch is not linked
    with support for mps devices", "Tensor.item() cannot be called on meta tensors").
    """
    if isinstance(device, torch.device):
        if device.type not in ("cpu", "cuda"):
            raise PyrozooError(f"device: expected one of auto, cpu, cuda, cuda:N; got {device!r}")
        dev = device
    else:
        name = "auto" if device is None else str(device)
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if name != "cpu" and not name.startswith("cuda"):
            raise PyrozooError(f"device: expected one of auto, cpu, cuda, cuda:N; got {device!r}")
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise PyrozooError(f"device: expected one of auto, cpu, cuda, cuda:N; got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PyrozooError(f"device: {device!r} was asked for but CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None:  # torch says only later, "invalid device ordinal"
        count = torch.cuda.device_count()
        if dev.index >= count:
            present = {0: "none", 1: "cuda:0"}.get(count, f"cuda:0 to cuda:{count - 1}")
            raise PyrozooError(f"device: {str(dev)!r} asked for, but {count} CUDA device(s) present ({present})")
    return dev


def _same_device(a: torch.device, b: torch.device) -> bool:
    index = torch.cuda.current_device() if a.type == "cuda" and (a.index is None or b.index is None) else None
    return a.type == b.type and (a.type != "cuda" or (a.index if a.index is not None else index)
                                 == (b.index if b.index is not None else index))


def checked_device(device: str | torch.device, data: Mapping[str, Any], *, engine: str = "the engine",
                   what: str = "model_kwargs") -> torch.device:
    """``device`` resolved (:func:`resolve_device`), and the same as that of the tensors in ``data`` (the engine's
    ``what``): the engines do not move data, they run where the data are. ``"auto"`` is the data's device (where
    ``data`` hold a tensor); a device other than theirs, or tensors on several devices, is a :class:`PyrozooError`
    naming ``engine``."""
    where = {k: v.device for k, v in data.items() if isinstance(v, torch.Tensor)}
    if len({(d.type, d.index) for d in where.values()}) > 1:  # one engine runs on one device
        split = ", ".join(f"{k} on {d}" for k, d in where.items())
        raise PyrozooError(f"device: the tensors in {what} are on more than one device ({split}); {engine} fits "
                           f"where its data are: put them on one device")
    here = next(iter(where.values()), None)
    if device == "auto" and here is not None:  # auto: where the data are (the engines do not move them)
        return here
    resolved = resolve_device(device)
    if here is not None and not _same_device(resolved, here):
        raise PyrozooError(f"device: {device!r} ({resolved}) asked for, but the tensors in {what} are on {here}; "
                           f"{engine} fits where its data are: move them there (e.g. Dataset.to) or leave "
                           f"device=None")
    return resolved


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) through Pyro, and clear the param store. ``seed`` is an integer
    in [0, 2**32 - 1] (:func:`~pyrozoo.validation.check_seed`: NumPy's global RNG takes no larger one)."""
    seed = check_seed("seed", seed)
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()


class RngStream:
    """A torch random stream of its own on the CPU and ``device``, seeded from ``(seed, key)``: inside
    ``with stream:`` torch's global generators (the CPU's and, for a CUDA ``device``, that device's) continue this
    stream, and on exit they are put back where the code outside left them. So what draws inside (even through
    Pyro or ``nn.Module.reset_parameters``, which read the global generators) never shifts the draws outside, and
    the other way round; the same ``(seed, key)`` gives the same stream. Re-entrant: a nested ``with`` of the same
    stream does nothing."""

    def __init__(self, seed: int, device: str | torch.device = "cpu", *, key: int = 1):
        seed = check_seed("seed", seed)
        # a 64-bit seed mixed from (seed, key): a stream unrelated to the one pyro.set_rng_seed(seed) starts
        mixed = int(np.random.SeedSequence((seed, int(key))).generate_state(1, np.uint64)[0])
        self.device = torch.device(device)
        self._cpu = torch.Generator().manual_seed(mixed).get_state()
        self._cuda = (torch.Generator(device=self.device).manual_seed(mixed).get_state()
                      if self.device.type == "cuda" else None)
        self._saved: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._depth = 0

    def __enter__(self) -> RngStream:
        self._depth += 1
        if self._depth == 1:
            cuda = self._cuda is not None
            self._saved = (torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if cuda else None)
            torch.set_rng_state(self._cpu)
            if cuda:
                torch.cuda.set_rng_state(self._cuda, self.device)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._depth -= 1
        if self._depth:
            return
        assert self._saved is not None
        cpu, cuda = self._saved
        self._saved = None
        self._cpu = torch.get_rng_state()
        torch.set_rng_state(cpu)
        if cuda is not None:
            self._cuda = torch.cuda.get_rng_state(self.device)
            torch.cuda.set_rng_state(cuda, self.device)


F = TypeVar("F", bound=Callable[..., Any])
_nesting = threading.local()


@contextmanager
def same_rng_states() -> Iterator[None]:
    """Put Python's, NumPy's and torch's RNG states (CPU, and CUDA's if it was in use) back as they were on entry,
    also on an error: what runs inside draws numbers the code after it does not see."""
    python_state, numpy_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def keeps_caller_state(fn: F) -> F:
    """For public functions that take a ``seed`` (and so call :func:`set_seed`): when ``fn`` returns or raises, the
    caller's Python, NumPy and torch (CPU, and CUDA if it was in use) RNG states are put back, and the param-store
    entries the caller had are there again (the fit's own entries win a name clash).

    Without this a loop ``X = np.random.randn(...); est.fit(X, y)`` drew the same X after the first fit, as
    scikit-learn's ``random_state`` never does, and a fit emptied the user's ``pyro.param`` store. Nested calls
    restore only at the outermost one, so what runs inside (and every seeded result) is unchanged."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if getattr(_nesting, "depth", 0):
            return fn(*args, **kwargs)
        store = pyro.get_param_store().get_state()
        _nesting.depth = 1
        try:
            with same_rng_states():
                return fn(*args, **kwargs)
        finally:
            _nesting.depth = 0
            now = pyro.get_param_store()
            gone = [name for name in store["params"] if name not in now]
            if gone:
                now.set_state({"params": {n: store["params"][n] for n in gone},
                               "constraints": {n: store["constraints"][n] for n in gone}})

    return wrapper  # type: ignore[return-value]


# below this matrix size one intra-op thread is as fast as several on an idle machine, and far faster on a busy one
SMALL_MATRIX = 256


@contextmanager
def one_thread_if_small(size: int, threshold: int = SMALL_MATRIX) -> Iterator[None]:
    """Run the block with one torch intra-op thread when its largest matrix dimension ``size`` is below
    ``threshold``, then restore the caller's thread count.

    For loops of thousands of small factorizations (EM over a ladder of spike variances, its conformal refits)
    the per-call cost is the OpenMP hand-off, not arithmetic: on the 2-core box under load, an EMVS step took
    12 ms per ``torch.diag`` of a 30-vector with 2 threads, and the effect-curve fit of cps1985 took 73 s against
    4.3 s with one thread (benchmarks/RESULTS.md)."""
    before = torch.get_num_threads()
    if size >= threshold or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _meminfo_available() -> int | None:
    """Linux's MemAvailable (free memory plus the page cache the kernel can give back), else free pages from
    ``os.sysconf`` (which leave out that cache), else None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _cgroup_memory_left(proc: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> int | None:
    """What this process's cgroup memory limit leaves, or None without one (or where it cannot be read). In a
    container /proc/meminfo shows the host's memory, while the cgroup's limit is what gets the process killed.

    v2 (a ``0::PATH`` line): memory.max - memory.current; v1 (the ``memory`` controller's line): memory.limit_in_bytes
    - memory.usage_in_bytes; each plus the inactive file cache of memory.stat, which the kernel reclaims before it
    kills. The process's own cgroup directory is read, else the hierarchy's root (a container's namespaced view); a
    limit of ``max`` or >= 2^60 (v1's "unlimited") counts as none."""
    try:
        with open(proc) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    dirs = []  # (directory, limit file, usage file, inactive-cache key in memory.stat)
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, path = parts[1], parts[2].lstrip("/")
        if controllers == "":
            for base in (root, os.path.join(root, "unified")):
                dirs += [(os.path.join(base, path), "memory.max", "memory.current", "inactive_file"),
                         (base, "memory.max", "memory.current", "inactive_file")]
        elif "memory" in controllers.split(","):
            base = os.path.join(root, "memory")
            dirs += [(os.path.join(base, path), "memory.limit_in_bytes", "memory.usage_in_bytes",
                      "total_inactive_file"), (base, "memory.limit_in_bytes", "memory.usage_in_bytes",
                                               "total_inactive_file")]
    left = []
    for directory, limit_file, usage_file, inactive_key in dirs:
        try:
            with open(os.path.join(directory, limit_file)) as fh:
                limit = fh.read().strip()
            if limit == "max" or int(limit) >= 1 << 60:
                continue
            with open(os.path.join(directory, usage_file)) as fh:
                usage = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        inactive = 0
        try:
            with open(os.path.join(directory, "memory.stat")) as fh:
                for stat in fh:
                    key, _, value = stat.partition(" ")
                    if key == inactive_key:
                        inactive = int(value)
        except (OSError, ValueError):
            pass
        left.append(max(int(limit) - usage + inactive, 0))
    return min(left) if left else None


def _address_space_left() -> int | None:
    """What this process's address-space limit (``ulimit -v``, RLIMIT_AS) leaves above its current size, or None
    without a limit (or where it cannot be read)."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/statm") as fh:
            used = int(fh.read().split()[0]) * int(os.sysconf("SC_PAGE_SIZE"))
        return max(int(soft) - used, 0)
    except (ImportError, OSError, ValueError, IndexError, AttributeError):
        return None


def available_memory(device: str | torch.device) -> int | None:
    """Bytes new tensors on ``device`` can take now, or None when unknown (then callers skip their size checks).

    CUDA: the driver's free memory (``torch.cuda.mem_get_info``) plus what PyTorch's caching allocator holds
    unused. CPU: MemAvailable from /proc/meminfo (``os.sysconf`` free pages where there is none), capped by what
    a cgroup memory limit (a container's; :func:`_cgroup_memory_left`) and an address-space limit (``ulimit -v``)
    leave this process."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
            return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
        except (RuntimeError, AssertionError):
            return None
    if device.type != "cpu":
        return None
    known = [b for b in (_meminfo_available(), _cgroup_memory_left(), _address_space_left()) if b is not None]
    return min(known) if known else None
