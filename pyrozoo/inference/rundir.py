"""Run directories: ``config.toml``, ``idata.nc``, ``metrics.json``, ``params.pt``, written whole or not at all.

Everything is written into a hidden temporary sibling directory which is renamed onto ``out`` only when every file
is complete, so an interrupted or failed run never leaves a half-written run directory behind. The temporary's name
records the writing process (``.NAME.PID-HOST.XXXX.tmp``), so that one left by a killed writer can be told from a
live one (:func:`stale_temporaries`).
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import shutil
import signal
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pyro
import tomli_w
import torch

import pyrozoo
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.result import Result, environment_versions
from pyrozoo.validation import check_path, expand_home

RUN_FILES = ("config.toml", "idata.nc", "metrics.json", "params.pt")


def missing_run_files(path: str | os.PathLike) -> list[str]:
    """The files of :data:`RUN_FILES` that ``path`` lacks (all of them when it is not a directory); ``[]``: a
    complete run directory."""
    path = Path(path)
    return [f for f in RUN_FILES if not (path / f).is_file()]


def is_run_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory holding a run (its ``config.toml`` and ``idata.nc``)."""
    path = Path(path)
    return path.is_dir() and (path / "config.toml").is_file() and (path / "idata.nc").is_file()


def check_out_dir(out: str | os.PathLike, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Raise if ``out`` exists or its parent cannot be created; nothing is written.

    ``overwrite``: an existing ``out`` may be replaced if it is an empty directory or a run directory
    (:func:`is_run_dir`), never another directory, whose files would be deleted. ``resume``: an existing directory is
    accepted as it is (a sweep's root, whose finished cells are kept). A leading ``~`` is the home directory (as a
    sweep's ``out`` and ``--data`` paths: ``out = "~/runs"`` in a config made a directory named ``~``)."""
    check_path("out", out, what="a directory path")
    # absolute and normalized: "." or "x/.." has no name of its own, so the temporary sibling of an --overwrite run
    # was made inside the run it replaces, which was emptied and then not replaced
    out = Path(os.path.abspath(expand_home("out", out, what="a directory path")))
    dead = next((p for p in (out, *out.parents) if dead_link(p)), None)
    if dead is not None:  # exists() is False for it, so it would pass every check below and fail after the work
        raise PyrozooError(f"out: {dead} is a symbolic link that leads nowhere (to a missing target, or round a "
                           f"loop), so {out} cannot be created; choose another --out or mend the link")
    if out.is_symlink() and overwrite and not resume:
        # replaced_atomically renames a new directory onto out: through a link it cannot (rmtree refuses links), and
        # that failed after the whole fit, losing it
        raise PyrozooError(f"out: {out} is a symbolic link (to {os.readlink(out)!r}); --overwrite replaces a run "
                           f"directory itself, not through a link: pass the directory it leads to, "
                           f"--out {out.resolve()}")
    if out.exists() and not out.is_dir():  # before the --overwrite hint, which would not help
        raise PyrozooError(f"out: {out} exists and is not a directory")
    if out.exists() and not (overwrite or resume):
        raise PyrozooError(f"out: {out} already exists; choose another --out or pass --overwrite")
    if out.exists() and overwrite and not resume and any(out.iterdir()) and not is_run_dir(out):
        raise PyrozooError(f"out: {out} is not a run directory (no config.toml and idata.nc) and is not empty; "
                           f"--overwrite only replaces run directories, so its files are left alone. Choose another "
                           f"--out or delete it yourself")
    parent = existing_ancestor(out.absolute().parent)
    if not parent.is_dir():
        raise PyrozooError(f"out: {parent} is not a directory, so {out} cannot be created")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PyrozooError(f"out: no permission to create {out} under {parent}")
    try:
        probe_create(parent)
    except OSError as exc:
        raise PyrozooError(f"out: cannot create {out} under {parent} ({exc.strerror or exc})") from None
    return out


def host_id() -> str:
    """This machine in eight hex digits (a hash of its node name), for names that record a process: a pid says
    whether its process is alive only on its own host (a shared file system is written from several)."""
    return f"{zlib.crc32(os.uname().nodename.encode()):08x}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def existing_ancestor(path: Path) -> Path:
    """``path`` itself if it exists, else its nearest ancestor that does (where missing folders would be made). A
    symbolic link counts as existing even where it leads nowhere (broken, or a loop: ``exists()`` is False for
    both), so that it is the path checked, not its parent, and creating under it fails before any work."""
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def dead_link(path: Path) -> bool:
    """Whether ``path`` is a symbolic link that leads nowhere: to a missing target, or round a loop."""
    return path.is_symlink() and not path.exists()


def probe_create(directory: Path) -> None:
    """Create and remove one empty directory in ``directory``; raises ``OSError`` where that fails. ``os.access``
    says yes to root everywhere, also on read-only or pseudo file systems (/sys, /proc, a read-only mount), so a
    path there would fail only when the work is done and written."""
    os.rmdir(tempfile.mkdtemp(prefix=".pyrozoo-probe.", dir=directory))


def temp_sibling(out: Path) -> Path:
    """A hidden temporary directory ``.NAME.PID-HOST.XXXX.tmp`` next to ``out`` (PID and HOST: this process and
    :func:`host_id`) with the permissions ``mkdir`` would give it under the umask (``tempfile.mkdtemp`` makes it
    0700, and renaming it onto ``out`` would keep that)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}-{host_id()}.", suffix=".tmp", dir=out.parent))
    umask = os.umask(0)  # reading the umask means setting it; restored at once
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    return tmp


# What stops a process from outside: Ctrl-C, kill, a closed terminal (the sweep's driver handles all three).
DEFERRED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def signals_deferred(on_fatal: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold back SIGINT, SIGTERM and SIGHUP (:data:`DEFERRED_SIGNALS`) while the block runs, then deliver them.

    For third-party writers that lose an interrupt: h5py/h5netcdf run weakref callbacks, and a ``KeyboardInterrupt``
    (or a sweep's ``Terminated``) raised by a signal handler inside one is printed as "Exception ignored" and
    dropped, so the write returned normally and the interrupted run was saved. In the block a signal is only
    recorded; when it ends (normally or not) the previous handlers are restored and each recorded signal is sent
    again (``signal.raise_signal``) through them: Python's SIGINT handler raises ``KeyboardInterrupt``, a sweep's
    raises ``Terminated``, and a signal at its default action (SIGTERM, SIGHUP in a plain process) ends the process,
    after ``on_fatal()`` (remove what the block wrote). A signal that is ignored or whose handler was not set from
    Python is left alone. Outside the main thread, where Python cannot set handlers, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in DEFERRED_SIGNALS}
    previous = {signum: old for signum, old in previous.items() if old is not None and old != signal.SIG_IGN}
    received: list[int] = []

    def record(signum: int, frame: object) -> None:
        if signum not in received:
            received.append(signum)

    try:
        for signum in previous:
            signal.signal(signum, record)
        yield
    finally:
        # blocked while they are restored: a signal between two of them would raise before the rest were restored,
        # leaving `record` to swallow that signal for good; it waits at the OS and comes at the unblock instead
        mask = getattr(signal, "pthread_sigmask", None)
        blocked = mask(signal.SIG_BLOCK, previous) if mask is not None else None
        try:
            for signum, old in previous.items():
                signal.signal(signum, old)
        finally:
            if mask is not None:
                mask(signal.SIG_SETMASK, blocked)
        for signum in received:
            if previous[signum] == signal.SIG_DFL and on_fatal is not None:
                on_fatal()
            signal.raise_signal(signum)  # runs a Python handler at once; its exception ends the loop


@contextmanager
def replaced_atomically(dest: Path, *, what: str = "out") -> Iterator[Path]:
    """Yield an empty :func:`temp_sibling` of ``dest`` to write into. When the block ends normally, the sibling
    replaces ``dest`` (an older ``dest`` is removed first); when it raises, the sibling is removed and ``dest`` is
    left as it was. A sibling that cannot be created is a :class:`PyrozooError` naming the argument ``what``. A
    signal that comes while ``dest`` is replaced is delivered once the sibling is in place
    (:func:`signals_deferred`), so an interrupt leaves the old or the new directory, never neither."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(dest)
    except OSError as exc:  # e.g. under /sys or /proc, which os.access lets root through
        raise PyrozooError(f"{what}: cannot create {dest}: {exc.strerror or exc}") from None
    try:
        yield tmp
        with signals_deferred():
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def stale_temp_siblings(out: Path, *, files: bool = False) -> list[Path]:
    """The directories :func:`temp_sibling` made for ``out`` that are still there (a writer killed mid-write, or
    one writing now: only a caller that holds ``out``, as a sweep under its lock, may take them all as stale);
    with ``files``, the temporary files named the same way (a checkpoint's, written by one ``torch.save``)."""
    if not out.parent.is_dir():
        return []
    kind = Path.is_file if files else Path.is_dir
    return [p for p in out.parent.glob(f".{glob.escape(out.name)}.*.tmp") if kind(p)]


def stale_temporaries(out: Path, *, files: bool = False) -> tuple[list[Path], list[Path]]:
    """The temporaries that writers of ``out`` left behind, as ``(stale, unknown)``: ``stale`` those whose name
    (:func:`temp_sibling`) records a process of this host that is gone (killed while it wrote), ``unknown`` those
    that may still be written: another host's, or named as before temporaries recorded their writer
    (``.NAME.XXXXXXXX.tmp``). A live process's (this one's included) are in neither, and so is the temporary of
    another name that the glob of :func:`stale_temp_siblings` also matches (``.NAME.x.*.tmp`` of ``NAME.x``).
    ``files``: temporary files instead of directories (:func:`stale_temp_siblings`)."""
    prefix = re.escape(f".{out.name}.")
    named = re.compile(prefix + r"(?P<pid>[0-9]+)-(?P<host>[0-9a-f]{8})\.[a-z0-9_]+\.tmp")
    older = re.compile(prefix + r"[a-z0-9_]{8}\.tmp")  # tempfile's eight random characters
    stale, unknown = [], []
    for path in stale_temp_siblings(out, files=files):
        m = named.fullmatch(path.name)
        if m is None:
            if older.fullmatch(path.name):
                unknown.append(path)
        elif m["host"] != host_id():
            unknown.append(path)
        elif int(m["pid"]) != os.getpid() and not pid_alive(int(m["pid"])):
            stale.append(path)
    return sorted(stale), sorted(unknown)


def remove_stale_temporaries(out: Path) -> tuple[list[Path], list[Path]]:
    """Remove the temporaries of ``out`` that a killed writer left (:func:`stale_temporaries`' ``stale``); return
    ``(removed, unknown)``, ``unknown`` those left alone since they may be a live writer's."""
    stale, unknown = stale_temporaries(out)
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale, unknown


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic, torch.Tensor)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _same_value(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are the same value as metrics.json would write them (a float and a 0-d tensor of it
    are; anything that does not compare as one value is not)."""
    try:
        return bool(_jsonable(a) == _jsonable(b))
    except (ValueError, RuntimeError, TypeError):
        return False


def _tomlable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _tomlable(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_tomlable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_run(
    result: Result,
    out: str | os.PathLike,
    *,
    config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    posterior_predictive: bool = False,
    overwrite: bool = False,
    artifacts: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``result`` as a run directory at ``out`` atomically; return its path.

    ``metrics.json`` and ``idata.nc``'s attributes record ``inference``, the engine label of what ran
    (``result.inference``: ``svi-meanfield``, ``collapsed-vfe``, ``em-emvs``), and, where the config names one,
    ``inference_requested``, the inference asked for as ``config.toml`` records it (``svi``, ``collapsed``,
    ``em``). ``artifacts(tmp_dir)`` may add files (plots ...) before the directory is renamed into place.
    ``metrics`` go into ``metrics.json`` beside these bookkeeping keys (``wall_time``, ``inference``,
    ``inference_requested``, ``seed``, ``pyrozoo_version``, and the ``pyro_version``, ``torch_version``,
    ``numpy_version`` and ``python_version`` the run was made with), which they cannot replace: a metric of one of
    those names with another value than the one recorded is a :class:`PyrozooError`, before anything is written (one
    restating it, as spike-slab's ``wall_time``, is kept)."""
    cfg = dict(config if config is not None else result.config)
    # config.toml's name for the inference beside the engine label (older run directories lack it); the
    # InferenceData has result.config's, which run_model makes the same: the file follows config.toml
    requested = {"inference_requested": cfg["inference"]} if isinstance(cfg.get("inference"), str) else {}
    own = {"wall_time": result.wall_time, "inference": result.inference, **requested, "seed": result.seed,
           "pyrozoo_version": pyrozoo.__version__, "pyro_version": pyro.__version__, **environment_versions()}
    clashes = [k for k in own if k in (metrics or {}) and not _same_value(metrics[k], own[k])]
    if clashes:
        raise PyrozooError(f"metrics: {', '.join(f'{k!r} ({metrics[k]!r}, recorded {own[k]!r})' for k in clashes)} "
                           f"would replace what metrics.json records of the run itself; expected metric names "
                           f"other than {sorted(own)} (or the recorded value): rename them")
    out = check_out_dir(out, overwrite=overwrite)
    with replaced_atomically(out) as tmp:

        def deferred() -> AbstractContextManager[None]:
            # a signal during a library's write is delivered after it, before the rename (h5py drops the
            # KeyboardInterrupt of a Ctrl-C that lands in one of its weakref callbacks); a kill at its default
            # action removes the temporary first
            return signals_deferred(on_fatal=lambda: shutil.rmtree(tmp, ignore_errors=True))

        with (tmp / "config.toml").open("wb") as fh:
            tomli_w.dump(_tomlable(cfg), fh)
        idata = result.to_inference_data(posterior_predictive=posterior_predictive)
        idata.attrs.pop("inference_requested", None)
        idata.attrs.update(requested)
        with deferred():
            idata.to_netcdf(str(tmp / "idata.nc"), engine="h5netcdf")
        payload = {**dict(metrics or {}), **own}  # the bookkeeping last: no metric replaces it
        (tmp / "metrics.json").write_text(json.dumps(_jsonable(payload), indent=2, sort_keys=True))
        with deferred():
            torch.save({k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in result.params.items()},
                       tmp / "params.pt")
        if artifacts is not None:
            with deferred():  # plots (matplotlib) and whatever else a model writes
                artifacts(tmp)
    return out


def load_run(path: str | os.PathLike) -> dict[str, Any]:
    """Read a run directory: ``{"idata", "metrics", "config", "params"}``."""
    from pyrozoo.config import parse_toml_bytes

    path = expand_home("run", path, what="a run directory")
    if not path.exists():
        raise PyrozooError(f"run: {path} does not exist")
    if path.is_file():
        raise PyrozooError(f"run: {path} is a file; expected the run directory that holds it "
                           f"({', '.join(RUN_FILES)}): pass {path.parent}")
    missing = missing_run_files(path)
    if missing:
        raise PyrozooError(f"run: {path} is not a complete run directory (missing {', '.join(missing)})")
    readers = {
        "config.toml": lambda f: parse_toml_bytes(f.read_bytes()),  # UTF-8, a leading byte-order mark skipped
        "idata.nc": lambda f: az.from_netcdf(str(f), engine="h5netcdf"),
        "metrics.json": lambda f: json.loads(f.read_text()),
        "params.pt": lambda f: torch.load(f, map_location="cpu", weights_only=False),
    }
    out = {}
    for name, read in readers.items():
        try:
            out[name.split(".")[0]] = read(path / name)
        except Exception as exc:  # a damaged file (truncated copy, edited by hand): name it, no library traceback
            detail = str(exc).splitlines()[0] if str(exc) else "no detail"
            raise PyrozooError(f"run: {path / name} cannot be read ({type(exc).__name__}: {detail}); rerun or "
                               f"restore it") from None
    return out
