"""Executing sweep cells: one cell is one :func:`pyrozoo.runner.run_model` call writing one run directory.

Resume and failure records, independent of the backend:

* a cell whose run directory ``OUT/KEY`` is complete (``config.toml``, ``idata.nc``, ``metrics.json``,
  ``params.pt``) is done and skipped on re-run; run directories appear atomically (``save_run`` renames a finished
  temporary directory), so killing a sweep at any moment loses no completed run and leaves no half-written one;
* a cell that raises writes ``OUT/KEY.failed/`` (``error.txt``, ``traceback.txt``, ``config.toml``,
  ``failure.json``), a marker, not a run directory: the next run of the sweep retries it and removes the marker
  when it succeeds; the other cells carry on;
* a completed run whose stored config differs from the cell's config (the sweep file changed under it) is an
  error before anything runs, never silently reused; so is a run directory that is incomplete or whose
  ``config.toml`` or ``metrics.json`` is damaged (delete it to have the cell run again);
* an output root holds one sweep: one whose ``sweep.json`` records another sweep (another name, or the same name
  and no cell in common while some of its cells have run) is an error before anything runs
  (:func:`check_same_sweep`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli_w

import pyrozoo
from pyrozoo import registry
from pyrozoo.config import parse_toml_bytes, tomllib
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.rundir import host_id as _host_id
from pyrozoo.inference.rundir import missing_run_files, replaced_atomically, stale_temp_siblings
from pyrozoo.inference.rundir import pid_alive as _pid_alive
from pyrozoo.sweep.spec import LOCK, MANIFEST, NOT_RUN_SETTINGS, Cell, SweepSpec, canonical_config, key_axis_names

FAILED_SUFFIX = ".failed"
# settings that do not change a run's result: a completed run is reused even if they differ
IGNORED_ON_RESUME = NOT_RUN_SETTINGS


@dataclass
class CellOutcome:
    """What became of one cell: ``status`` is ``ok``, ``failed`` or ``skipped`` (already complete)."""

    key: str
    status: str
    wall_time: float = 0.0
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class SweepSummary:
    """Counts and outcomes of one invocation of a sweep."""

    out: Path
    total: int
    skipped: int
    outcomes: list[CellOutcome]
    wall_time: float
    interrupted: bool = False
    skipped_failures: list[str] = field(default_factory=list)  # keys of earlier failures not retried
    pending: int = 0  # cells left for a later invocation (limit)

    @property
    def failed_before(self) -> int:
        """Cells that had failed before and were not retried (``retry_failed=False``)."""
        return len(self.skipped_failures)

    @property
    def ok(self) -> int:
        return sum(o.status == "ok" for o in self.outcomes)

    @property
    def failed(self) -> int:
        return sum(o.status == "failed" for o in self.outcomes)


def run_path(root: Path, cell: Cell) -> Path:
    return Path(root) / cell.key


def failed_path(root: Path, cell: Cell) -> Path:
    return Path(root) / (cell.key + FAILED_SUFFIX)


def is_complete(path: Path) -> bool:
    """A finished run directory: every file of :data:`pyrozoo.inference.rundir.RUN_FILES` is there."""
    return not missing_run_files(path)


def cell_status(root: Path, cell: Cell) -> str:
    """``done`` (complete run directory), ``failed`` (failure marker) or ``pending``."""
    if is_complete(run_path(root, cell)):
        return "done"
    if failed_path(root, cell).is_dir():
        return "failed"
    return "pending"


def _split_key(key: str, names: Sequence[str]) -> tuple[str, list[str], str] | None:
    """A cell key's file name ``INFERENCE_N1=V1_..._Nk=Vk_seedS`` as ``(INFERENCE, ["N1=V1", ...], "seedS")``,
    given its axis names in order (:func:`~pyrozoo.sweep.spec.key_axis_names`); ``None`` if it is not of that form.
    Exact: a value is a slug, which holds no ``=``, so the k ``=`` signs split the name into its parts."""
    pieces = key.rpartition("/")[2].split("=")
    if not names or len(pieces) != len(names) + 1 or not pieces[0].endswith("_" + names[0]):
        return None
    inference, parts = pieces[0][:-len(names[0]) - 1], []
    for i, name in enumerate(names):
        if i + 1 < len(names):
            if not pieces[i + 1].endswith("_" + names[i + 1]):
                return None
            value = pieces[i + 1][:-len(names[i + 1]) - 1]
        else:
            value, sep, seed = pieces[i + 1].rpartition("_")
            if not sep:
                return None
        parts.append(f"{name}={value}")
    return inference, parts, seed


def _is_reordering(name: str, inference: str, parts: Sequence[str], seed: str) -> bool:
    """Whether the file name ``name`` is ``INFERENCE_P1_..._Pk_seedS`` for some order of ``parts``."""

    def rest_matches(text: str, left: Sequence[str]) -> bool:
        if len(left) == 1:
            return text == left[0]
        return any(text.startswith(p + "_") and rest_matches(text[len(p) + 1:], [*left[:i], *left[i + 1:]])
                   for i, p in enumerate(left))

    head, tail = inference + "_", "_" + seed
    return (len(name) > len(head) + len(tail) and name.startswith(head) and name.endswith(tail)
            and rest_matches(name[len(head):-len(tail)], parts))


def adopt_earlier_keys(root: Path, cells: Sequence[Cell]) -> list[Cell]:
    """``cells`` with each cell whose run directory (or failure record) is not under ``root`` renamed to an earlier
    name of it that is there, so that the older sweep's runs are resumed, not redone:

    * ``Cell.earlier_keys``: written by a version that did not normalise float options (``mu_true=1`` for
      ``mu_true=1.0``);
    * the same ``AXIS=VALUE`` parts in another order (of this name or an earlier one): the sweep file declared the
      axes in another order (``n = [...]`` before ``mu_true = [...]``). The key keeps the declared order, so the run
      directories of a sweep never change their names; a reordered file finds its runs by their parts. A complete
      run is preferred to a failure record where both exist.

    Whether an adopted run holds the cell's config is :func:`check_resumable`'s to check, as for any other."""
    root = Path(root)
    listings: dict[str, dict[str, list[str]]] = {}  # label folder -> sorted letters of a name -> names there

    def names_like(folder: str, name: str) -> list[str]:
        """The run and failure names in ``folder`` that are anagrams of ``name`` (a reordering is one)."""
        if folder not in listings:
            index: dict[str, list[str]] = {}
            path = root / folder
            for entry in sorted(os.listdir(path)) if path.is_dir() else ():
                if entry.startswith("."):
                    continue
                entry = entry.removesuffix(FAILED_SUFFIX)
                same = index.setdefault("".join(sorted(entry)), [])
                if entry not in same:
                    same.append(entry)
            listings[folder] = index
        return listings[folder].get("".join(sorted(name)), [])

    out = []
    for cell in cells:
        if run_path(root, cell).exists() or failed_path(root, cell).exists():
            out.append(cell)
            continue
        found = next((key for key in cell.earlier_keys
                      if (root / key).exists() or (root / (key + FAILED_SUFFIX)).exists()), None)
        names = key_axis_names(cell.axes)
        if found is None and len(names) > 1:
            candidates = []
            for key in (cell.key, *cell.earlier_keys):
                split = _split_key(key, names)
                folder, _, leaf = key.rpartition("/")
                if split is not None:
                    candidates += [f"{folder}/{name}" for name in names_like(folder, leaf)
                                   if name != leaf and _is_reordering(name, *split)]
            found = next((key for key in candidates if is_complete(root / key)), candidates[0] if candidates else None)
        if found is not None:
            cell = replace(cell, key=found, earlier_keys=())
        out.append(cell)
    return out


def _comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    # one spelling (canonical_config), then through JSON: TOML and JSON round trips agree on numbers, strings,
    # bools, tables and arrays
    data = {k: v for k, v in canonical_config(config).items() if k not in IGNORED_ON_RESUME}
    try:  # a model option left out is the option at its default (written out in one file, left out in the other)
        entry = registry.get(data["model"])
    except (KeyError, TypeError, PyrozooError):
        entry = None
    if entry is not None and entry.options:
        given = data.get("options") if isinstance(data.get("options"), Mapping) else {}
        data["options"] = entry.canonical({**{k: v for k, v in entry.options.items() if v is not None}, **given})
    return json.loads(json.dumps(data, sort_keys=True, default=str))


_UNSET = object()


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """What differs between two comparable configs, one ``KEY (OLD -> NEW)`` per value, sorted by key; a table
    (the model's ``options``) is compared key by key (``options.n (40 -> 41)``; an option left out is at the
    model's default, so one written out at its default is no difference), and a key only one side has reads
    ``not set`` on the other."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, _UNSET), new.get(key, _UNSET)
        if a == b:
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _differences(a, b, f"{prefix}{key}.")
        else:
            shown = ["not set" if v is _UNSET else repr(v) for v in (a, b)]
            out.append(f"{prefix}{key} ({shown[0]} -> {shown[1]})")
    return out


def _broken(path: Path) -> str | None:
    """Why the run directory ``path`` (which exists) cannot be resumed (not a directory, a run file missing, a
    damaged config.toml or metrics.json), in words; ``None`` if it can."""
    if not path.is_dir():
        return "not a directory"
    missing = missing_run_files(path)
    if missing:
        return f"incomplete: no {' or '.join(missing)}"
    try:
        metrics = json.loads((path / "metrics.json").read_text())
        if not isinstance(metrics, dict):
            raise ValueError(f"expected a JSON object of metrics, got {type(metrics).__name__}")
    except (OSError, ValueError) as exc:  # counted as done, yet a report lists it as unreadable and never sums it
        return f"its metrics.json is unreadable: {(str(exc).splitlines() or [''])[0][:80]}"
    return None


def _newer(version: str, than: str) -> bool:
    """Whether ``version`` (a NUMBER_CHANGES key, "X.Y.Z") came after ``than`` (a run's recorded version, or
    "before 0.2.0"); a version this code cannot read counts as older than every listed one."""
    def key(v: str) -> tuple[int, ...] | None:
        try:
            return tuple(int(p) for p in v.split("."))
        except ValueError:
            return None
    new, old = key(version), key(than)
    return old is None or (new is not None and new > old)


def check_resumable(root: Path, cells: Sequence[Cell]) -> None:
    """Raise if a run directory of a cell cannot be resumed: it holds a different config than its cell now asks
    for, or it is damaged or incomplete (then it would be neither run again nor reported). Warn (and keep them) for
    runs that another pyrozoo version wrote (``metrics.json``'s ``pyrozoo_version``; none before 0.2.0): their
    numbers may differ from this version's (``pyrozoo.NUMBER_CHANGES`` says how)."""
    changed: dict[str, list[str]] = {}  # what differs -> the cells whose runs differ so
    broken, other_version = [], []
    other_versions: set[str] = set()  # the versions that wrote them (their changes since are named)
    for cell in cells:
        path = run_path(root, cell)
        if not path.exists():
            continue
        why = _broken(path)
        if why is not None:
            broken.append(f"{cell.key} ({why})")
            continue
        try:
            stored = parse_toml_bytes((path / "config.toml").read_bytes())  # as `run --config`: a BOM skipped
            old = _comparable(stored)
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:  # a damaged file
            broken.append(f"{cell.key} (its config.toml is unreadable: {str(exc).splitlines()[0][:80]})")
            continue
        except (KeyError, TypeError, AttributeError, ValueError) as exc:  # TOML, but not a run's config
            why = f"{type(exc).__name__} {str(exc)[:80]}"
            broken.append(f"{cell.key} (its config.toml is not a run's config: {why})")
            continue
        new = _comparable(cell.config)
        if old != new:
            changed.setdefault(", ".join(_differences(old, new)), []).append(cell.key)
            continue
        version = json.loads((path / "metrics.json").read_text()).get("pyrozoo_version", "before 0.2.0")
        if version != pyrozoo.__version__:
            other_version.append(f"{cell.key} ({version})")
            other_versions.add(str(version))

    def shown(items: list[str]) -> str:
        return "; ".join(items[:5]) + (f"; and {len(items) - 5} more" if len(items) > 5 else "")

    def alike(keys: list[str], diff: str) -> str:  # the cells whose runs differ the same way, said once
        if len(keys) == 1:
            return f"{keys[0]} (differs in {diff})"
        more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
        return f"{', '.join(keys[:3])}{more} ({len(keys)} runs; differ in {diff})"

    parts = []
    if changed:
        groups = list(changed.items())
        rest = sum(len(keys) for _, keys in groups[5:])
        listed = "; ".join(alike(keys, diff) for diff, keys in groups[:5]) + (
            f"; and {rest} more run{'s' if rest > 1 else ''} that differ{'s' if rest == 1 else ''} otherwise"
            if rest else "")
        parts.append(f"holds runs made with other settings: {listed}. Use another --out or delete those run "
                     f"directories")
    if broken:
        one = len(broken) == 1
        parts.append(f"holds {'a run directory' if one else 'run directories'} that cannot be resumed: "
                     f"{shown(broken)}. Delete {'it to have its cell' if one else 'them to have their cells'} run "
                     f"again")
    if parts:
        raise PyrozooError(f"out: {root} " + ". It also ".join(parts))
    if other_version:
        changes = "; ".join(f"{v}: {what}" for v, what in pyrozoo.NUMBER_CHANGES.items()
                            if any(_newer(v, old) for old in other_versions)) or "see pyrozoo.NUMBER_CHANGES"
        warnings.warn(f"out: {root} holds runs written by another pyrozoo version than this one "
                      f"({pyrozoo.__version__}): {shown(other_version)}; they are kept, not rerun, and their numbers "
                      f"may differ from this version's ({changes}); delete them to have their cells run again",
                      UserWarning, stacklevel=2)


def _write_dir_atomically(dest: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` (relative path -> bytes) into a temporary sibling and rename it onto ``dest``."""
    with replaced_atomically(dest, what="sweep out") as tmp:
        for rel, data in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def write_failure(root: Path, cell: Cell, error: str, tb: str, wall_time: float) -> Path:
    """Record a failed cell in ``OUT/KEY.failed/`` (replacing an older record)."""
    info = {"key": cell.key, "error": error, "wall_time": wall_time,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": os.uname().nodename}
    files = {
        "error.txt": (error + "\n").encode(),
        "traceback.txt": tb.encode(),
        "config.toml": tomli_w.dumps(cell.config).encode(),
        "failure.json": json.dumps(info, indent=2).encode(),
    }
    dest = failed_path(root, cell)
    _write_dir_atomically(dest, files)
    return dest


def _clear_failure(root: Path, cell: Cell) -> None:
    shutil.rmtree(failed_path(root, cell), ignore_errors=True)


def _fit(cell: Cell, out: Path) -> dict[str, Any]:
    """Run the cell's config into ``out``; return its metrics as stored in ``metrics.json``."""
    from pyrozoo.inference.device import set_seed
    from pyrozoo.runner import run_model

    config = cell.run_config()
    set_seed(config.seed)  # engines seed themselves; this also covers simulators that draw from the global RNG
    # a [defaults] setting the cell's inference does not read is left out of its run by design (docs/sweeps.md), and
    # an axis over one is refused: nothing to warn about per cell
    run_model(config, out=out, save=True, given=())
    return json.loads((out / "metrics.json").read_text())


def execute_cell(cell: Cell, root: str | Path) -> CellOutcome:
    """Run one cell in this process, writing ``OUT/KEY`` (or its failure record). Only ``KeyboardInterrupt`` and
    other non-``Exception`` exits escape; any error of the run becomes a failure record."""
    root = Path(root)
    t0 = time.perf_counter()
    try:
        metrics = _fit(cell, run_path(root, cell))
    except Exception as exc:
        wall = time.perf_counter() - t0
        error = f"{type(exc).__name__}: {exc}"
        write_failure(root, cell, error, traceback.format_exc(), wall)
        return CellOutcome(cell.key, "failed", wall, error=error)
    _clear_failure(root, cell)
    return CellOutcome(cell.key, "ok", time.perf_counter() - t0, metrics=metrics)


# Temporary folders of portable cells: ``pyrozoo-cell-TAG-HOST-PID-RANDOM`` in the worker's temp directory. TAG
# names the sweep session that ran the cell, HOST (a hash of the node name) and PID the worker process: a worker killed
# mid-cell (a cancelled Ray task) cannot remove its folder, so the driver removes its session's folders on its own
# machine, and later cells remove those of dead workers on theirs.
CELL_TEMP = "pyrozoo-cell-"
_CELL_TEMP_NAME = re.compile(re.escape(CELL_TEMP) + r"(?P<tag>[0-9a-z]+)-(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)-[^-]+")


def cell_temp_prefix(tag: str) -> str:
    """The name prefix of the temporary folder in which this process runs a portable cell of session ``tag``."""
    if not re.fullmatch(r"[0-9a-z]+", tag):
        raise PyrozooError(f"tag: expected lowercase letters and digits, got {tag!r}")
    return f"{CELL_TEMP}{tag}-{_host_id()}-{os.getpid()}-"


def remove_session_temporaries(tag: str) -> int:
    """Remove the temporary folders that cells of session ``tag`` left in this machine's temp directory (their
    workers were killed); call it only when none of the session's cells runs any more. Returns how many."""
    n = 0
    for path in Path(tempfile.gettempdir()).glob(f"{CELL_TEMP}{tag}-*"):
        if _CELL_TEMP_NAME.fullmatch(path.name) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            n += 1
    return n


def remove_orphaned_temporaries() -> int:
    """Remove the temporary folders of portable cells whose worker process, on this host, is gone (killed mid-cell,
    e.g. a Ray task cancelled when its sweep was interrupted), of any session. Returns how many."""
    n, host = 0, _host_id()
    try:
        entries = list(Path(tempfile.gettempdir()).glob(f"{CELL_TEMP}*"))
    except OSError:
        return 0
    for path in entries:
        m = _CELL_TEMP_NAME.fullmatch(path.name)
        if m and m["host"] == host and int(m["pid"]) != os.getpid() and not _pid_alive(int(m["pid"])):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                n += 1
    return n


def execute_cell_portable(cell: Cell, tag: str = "cell") -> dict[str, Any]:
    """Run one cell into a private temporary directory and return its files as bytes (or the error).

    For backends whose workers may sit on other machines (Ray): the driver, the only writer of the output tree,
    stores the payload with :func:`store_payload`, so no shared file system is needed. ``tag`` names the sweep
    session in the temporary folder's name (:func:`cell_temp_prefix`), so that its driver can remove the folders of
    cells it cancelled (:func:`remove_session_temporaries`)."""
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=cell_temp_prefix(tag)))
    try:
        out = tmp / "run"
        try:
            metrics = _fit(cell, out)
        except Exception as exc:
            return {"key": cell.key, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc(), "wall_time": time.perf_counter() - t0}
        files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
        return {"key": cell.key, "status": "ok", "files": files, "metrics": metrics,
                "wall_time": time.perf_counter() - t0}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def store_payload(root: str | Path, cell: Cell, payload: Mapping[str, Any]) -> CellOutcome:
    """Write a payload from :func:`execute_cell_portable` as ``OUT/KEY`` or as its failure record."""
    root = Path(root)
    if payload["status"] == "ok":
        _write_dir_atomically(run_path(root, cell), payload["files"])
        _clear_failure(root, cell)
        return CellOutcome(cell.key, "ok", payload["wall_time"], metrics=payload["metrics"])
    write_failure(root, cell, payload["error"], payload["traceback"], payload["wall_time"])
    return CellOutcome(cell.key, "failed", payload["wall_time"], error=payload["error"])


# ---- the sweep as a whole --------------------------------------------------------------------------------------


class SweepLock:
    """A held ``OUT/.sweep.lock``: an open file under this process's exclusive ``flock``; ``release()`` removes it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        """Remove the lock file (while still holding it, so that a sweep that opened it meanwhile sees it gone and
        takes a fresh one) and let it go. Releasing twice does nothing."""
        if self._fd is None:
            return
        try:
            if _same_file(self._fd, self.path):
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _recorded_pid(fd: int) -> int:
    """The pid a lock file records (``PID HOST``), -1 if none (empty: its creator has not written it yet, or died)."""
    try:
        return int(os.pread(fd, 256, 0).split()[0])
    except (OSError, ValueError, IndexError):
        return -1


def acquire_lock(root: Path) -> SweepLock:
    """One sweep process per output directory: ``OUT/.sweep.lock``, an exclusive ``flock`` held for the sweep's
    life on a file that records the owner's pid. The kernel arbitrates: of sweeps that start at the same moment
    exactly one gets it, and the lock of a killed sweep is free at once (the kernel drops a dead process's locks),
    so it is taken over without ever being removed by anyone but its holder. A lock file that no one holds but that
    names a live process (a sweep of an earlier pyrozoo, which wrote its pid without locking) is refused too.
    POSIX only (``fcntl``), as the rest of the sweep runner (``os.uname``)."""
    import fcntl

    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. under /sys or /proc, which os.access lets root through
        raise PyrozooError(f"out: cannot create {root}: {exc.strerror or exc}") from None
    lock = root / LOCK
    for _ in range(100):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)  # rw for whom the umask allows
        except OSError as exc:
            raise PyrozooError(f"out: cannot create the lock {lock}: {exc.strerror or exc}") from None
        taken = False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _recorded_pid(fd)
                raise PyrozooError(f"out: another sweep{f' (pid {pid})' if pid > 0 else ''} is writing to {root}; "
                                   f"wait for it to finish") from None
            if not _same_file(fd, lock):  # its holder removed it as it finished, after we opened it: a fresh one
                continue
            pid = _recorded_pid(fd)
            if pid > 0 and pid != os.getpid() and _pid_alive(pid):
                raise PyrozooError(f"out: another sweep (pid {pid}) is writing to {root}; wait for it or remove "
                                   f"{lock} if that process is not a sweep")
            os.ftruncate(fd, 0)  # a stale lock (its process is gone, e.g. after a kill): ours now
            os.pwrite(fd, f"{os.getpid()} {os.uname().nodename}\n".encode(), 0)
            taken = True
            return SweepLock(lock, fd)
        finally:
            if not taken:
                os.close(fd)
    raise PyrozooError(f"out: could not take the lock {lock}")


def clean_stale_temporaries(root: Path, cells: Sequence[Cell]) -> int:
    """Remove the hidden ``.NAME.*.tmp`` directories that runs of these cells left when killed mid-write (safe
    under the lock): only next to a cell's run or failure directory and named after it, never other folders. Also
    the empty ``.pyrozoo-probe.*`` directories that ``check_out_dir`` makes and removes at once, left by a run killed
    in between (a local worker terminated as it began a cell), next to a cell's run directory or in ``root``."""
    n = 0
    probed = {Path(root)}
    for cell in cells:
        for dest in (run_path(root, cell), failed_path(root, cell)):
            for tmp in stale_temp_siblings(dest):
                shutil.rmtree(tmp, ignore_errors=True)
                n += 1
        probed.add(run_path(root, cell).parent)
    for folder in probed:
        for probe in folder.glob(".pyrozoo-probe.*") if folder.is_dir() else ():
            with contextlib.suppress(OSError):  # only an empty one (a probe holds nothing)
                probe.rmdir()
                n += 1
    return n


def check_sweep_root(root: Path, spec: SweepSpec | None = None) -> None:
    """Raise if ``root`` is an existing directory with files that no sweep wrote (no ``sweep.json`` or lock): a
    sweep writes and cleans inside its root, so it must not adopt someone else's folder. With ``spec``, also if the
    root is another sweep's (:func:`check_same_sweep`)."""
    if root.is_dir() and any(root.iterdir()) and not ((root / MANIFEST).is_file() or (root / LOCK).exists()):
        raise PyrozooError(f"out: {root} is not a sweep's output directory (no {MANIFEST}) and is not empty; "
                           f"choose another --out (a new or empty directory, or an earlier sweep's)")
    if spec is not None:
        check_same_sweep(root, spec)


def check_same_sweep(root: Path, spec: SweepSpec) -> None:
    """Raise if ``root``'s ``sweep.json`` records a sweep of another name than ``spec``'s: running there would
    replace its sweep.json, and a report would list all its runs as stale. Warn (and go on) for one of the same name
    none of whose cells is a cell of ``spec`` while some of them have a run directory or failure record: the same
    sweep with every seed replaced, or another sweep file that shares the name (two files called sweep.toml). The
    same sweep grown or cut down (more seeds, an axis value added or removed) shares cells with it and resumes as
    before. A missing or damaged sweep.json says nothing (the sweep rewrites it)."""
    try:
        recorded = json.loads((root / MANIFEST).read_text())
        name, keys = recorded["name"], [cell["key"] for cell in recorded["cells"]]
        source = recorded.get("source", "?")
    except (OSError, ValueError, KeyError, TypeError):
        return
    present = [key for key in keys if (root / key).is_dir() or (root / (key + FAILED_SUFFIX)).is_dir()]
    planned = {key for cell in spec.cells for key in (cell.key, *cell.earlier_keys)}
    stale = sum(key not in planned for key in present)
    what = (f"{root} holds sweep {name!r} (from {source}; {len(keys)} cell{'s' * (len(keys) != 1)}, {len(present)} "
            f"of them run or failed)")
    harm = f"running this sweep there would replace its {MANIFEST}" + (
        f" and leave {stale} of its runs stale in reports" if stale else "")
    if name != spec.name:
        raise PyrozooError(f"out: {what}, and this is sweep {spec.name!r}; {harm}. Use another --out (or "
                           f"[sweep].out), or name this sweep {name!r} if it is that sweep renamed")
    if present and not planned & set(keys):
        # the same name with every seed or axis value replaced: an edited sweep (its earlier runs then stale, as when
        # cut down) or another file of that name; only the user knows, so say so and go on
        warnings.warn(f"out: {what}, and none of its cells is a cell of {spec.source}; {harm}. If it is another "
                      f"sweep that shares the name (two files called sweep.toml share the default name), stop and "
                      f"use another --out (or [sweep].out)", UserWarning, stacklevel=2)


def write_manifest(spec: SweepSpec, root: Path) -> None:
    """``OUT/sweep.json``: the sweep's name, source and every cell's key, axes and config (for reports)."""
    data = {"name": spec.name, "source": spec.source,
            "cells": [{"key": c.key, "axes": c.axes, "config": c.config} for c in spec.cells]}
    tmp = root / f".{MANIFEST}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, root / MANIFEST)


def check_run_options(*, backend: str = "local", jobs: int = 1, address: str | None = None,
                      gpus_per_task: float | None = None, limit: int | None = None) -> tuple[int, int | None]:
    """The checks of :func:`run_sweep`'s own arguments, before anything is read or written (``--dry-run`` makes them
    too): returns ``jobs`` and ``limit`` as ints."""
    from pyrozoo.validation import check_choice, check_int

    check_choice("backend", backend, ("local", "ray"))
    jobs = check_int("jobs", jobs, minimum=1)
    if backend == "ray" and jobs != 1:
        raise PyrozooError(f"jobs: the ray backend schedules by the cluster's resources (a CPU per task, as many "
                           f"tasks at once as the cluster has CPUs), so expected 1 with it, got {jobs}; drop --jobs "
                           f"or use --backend local")
    if limit is not None:
        limit = check_int("limit", limit, minimum=1)
    if gpus_per_task is not None and not (isinstance(gpus_per_task, (int, float)) and gpus_per_task >= 0):
        raise PyrozooError(f"gpus_per_task: expected a number >= 0, got {gpus_per_task!r}")
    if backend == "local" and jobs > 1:
        from pyrozoo.sweep.local import explicit_threads

        explicit_threads()  # a worker's thread count: an OMP_NUM_THREADS that is not a count is refused here
    if backend == "local" and address is not None:
        raise PyrozooError("address: only the ray backend connects to a cluster; drop --address or use --backend ray")
    if backend == "local" and gpus_per_task is not None:
        raise PyrozooError("gpus_per_task: only the ray backend shares GPUs between tasks (local cells use the device "
                           "of their config); drop --gpus-per-task or use --backend ray")
    return jobs, limit


def check_devices(cells: Sequence[Cell], *, backend: str = "local") -> None:
    """Raise if a cell of the ``local`` backend asks for a device this machine lacks (CUDA on a machine without
    it): once for the sweep, before anything runs (``--dry-run`` too), not once per cell. With ``ray`` the cluster's
    resources decide, when the backend connects."""
    if backend != "local":
        return
    from pyrozoo.inference.device import resolve_device

    for device in sorted({c.config.get("device", "auto") for c in cells}):
        resolve_device(device)


# Signals a sweep's driver treats like Ctrl-C: SIGTERM (kill, a batch system's time limit) and, where the platform
# has it, SIGHUP (the terminal or ssh session that started the sweep went away).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP received by a sweep's driver: an interrupt like Ctrl-C (so the same cleanup runs), carrying
    the signal number for the exit status (128 + 15, 128 + 1)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


class StopSignals:
    """What :func:`terminate_as_interrupt` gives its block: ``received``, the stop signal that came (``None`` while
    none did), and :meth:`reinstall`, which installs the handlers again."""

    def __init__(self, install: Callable[[], None] = lambda: None) -> None:
        self.received: int | None = None
        self._install = install

    def reinstall(self) -> None:
        """Install the handlers again (``ray.init`` replaces the SIGTERM handler with its own, which aborts)."""
        self._install()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[StopSignals]:
    """While the block runs, SIGTERM or SIGHUP (:data:`STOP_SIGNALS`) raises :class:`Terminated` (a
    ``KeyboardInterrupt``) in this process, so a terminated sweep stops its workers, removes their temporaries and
    releases its lock as after Ctrl-C, instead of dying at once and leaving the workers orphaned. A second signal
    during that cleanup is ignored (the workers are waited for at most a few seconds each). The handlers that were
    there on entry are restored afterwards. Outside the main thread, where Python cannot install signal handlers,
    nothing changes. The local backend's workers are spawned (a fresh interpreter, no Python handler inherited) and
    reset SIGTERM to its default, so terminating them still ends them.

    The block gets a :class:`StopSignals`: the Ray backend calls its ``reinstall`` once connected (``ray.init``
    installs SIGTERM handlers of its own; what is restored at the end is still the handler from before the block),
    and reads ``received`` because Ray turns an exception raised by a signal handler while it waits into a plain
    ``KeyboardInterrupt``."""
    if threading.current_thread() is not threading.main_thread():
        yield StopSignals()
        return

    def handler(signum: int, frame: object) -> None:
        if stop.received is None:
            stop.received = signum
            raise Terminated(signum)

    def install() -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, handler)

    stop = StopSignals(install)
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    install()
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, signal.SIG_DFL if old is None else old)


def run_sweep(
    spec: SweepSpec,
    *,
    backend: str = "local",
    jobs: int = 1,
    address: str | None = None,
    gpus_per_task: float | None = None,
    retry_failed: bool = True,
    limit: int | None = None,
    on_done: Callable[[CellOutcome, int, int], None] | None = None,
) -> SweepSummary:
    """Run every cell of ``spec`` that is not complete yet on ``backend`` (``local`` or ``ray``).

    Everything that can be checked is checked first (backend, jobs, address, resumability); then the output
    directory is locked, the cells' statuses are read again (a sweep that held the lock until now may have run some
    of them: they are not run twice), stale temporaries are removed, the manifest is written and the pending cells
    run. ``limit`` runs at most that many pending cells (chunked sweeps under a time limit). ``on_done(outcome,
    done, total)`` is called in the driver as each cell finishes."""
    jobs, limit = check_run_options(backend=backend, jobs=jobs, address=address, gpus_per_task=gpus_per_task,
                                    limit=limit)
    from pyrozoo.inference.rundir import check_out_dir

    root = check_out_dir(spec.out, resume=True)  # a directory, or creatable (an existing one is resumed)
    spec.cells = adopt_earlier_keys(root, spec.cells)  # first: the sweep.json of its runs names them so
    check_sweep_root(root, spec)
    check_resumable(root, spec.cells)
    check_devices(spec.cells, backend=backend)
    t0 = time.perf_counter()

    def to_run(cells: Sequence[Cell]) -> tuple[dict[str, str], list[Cell]]:
        """Every cell's status on disk now, and those of ``cells`` that are to run (pending, or failed and
        retried)."""
        now = {c.key: cell_status(root, c) for c in spec.cells}
        return now, [c for c in cells if now[c.key] == "pending" or (retry_failed and now[c.key] == "failed")]

    statuses, pending = to_run(spec.cells)  # a first plan: what the Ray backend is asked (and checked) for
    if limit is not None:
        pending = pending[:limit]
    outcomes: list[CellOutcome] = []

    def done(outcome: CellOutcome) -> None:
        outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome, len(outcomes), len(pending))

    with terminate_as_interrupt() as stop:  # SIGTERM / SIGHUP stop the sweep as Ctrl-C does
        ray_session = None
        if backend == "ray" and pending:
            from pyrozoo.sweep.ray_backend import connect

            try:
                ray_session = connect(address, cells=pending, gpus_per_task=gpus_per_task)  # checks before the lock
            finally:  # ray.init installs SIGTERM handlers of its own (one aborts the driver): ours again
                stop.reinstall()
        try:
            lock = acquire_lock(root)
        except BaseException:  # another sweep owns the directory: do not leave a Ray instance behind
            if ray_session is not None:
                ray_session.close()
            raise
        interrupted: KeyboardInterrupt | None = None
        try:
            # the plan again, now that no other sweep writes here: one that held the lock until now may have run
            # some of these cells (they are dropped, never run twice), or failed them (not retried with
            # retry_failed=False), also under the names of a sweep file with its axes in another order
            adopted = adopt_earlier_keys(root, spec.cells)
            renamed = {old.key: new for old, new in zip(spec.cells, adopted, strict=True) if old.key != new.key}
            if renamed:
                spec.cells = adopted
                check_sweep_root(root, spec)
                check_resumable(root, spec.cells)
                pending = [renamed.get(c.key, c) for c in pending]
            statuses, runnable = to_run(spec.cells)
            still = {c.key for c in runnable}
            pending = [c for c in pending if c.key in still]
            waiting = len(runnable)
            clean_stale_temporaries(root, spec.cells)
            write_manifest(spec, root)
            if pending:
                if backend == "local":
                    from pyrozoo.sweep.local import run_local

                    run_local(pending, root, done, jobs=jobs)
                elif ray_session is not None:
                    ray_session.run(pending, root, done)
        except KeyboardInterrupt as exc:
            interrupted = exc
            if stop.received is not None and not isinstance(exc, Terminated):
                # our handler's Terminated, raised inside ray.wait, comes out as a plain KeyboardInterrupt
                interrupted = Terminated(stop.received)
                raise interrupted from exc
            raise
        finally:
            # the backends return only once their workers are stopped, so nothing writes below root any more: count,
            # tidy and only then release the lock
            kept = 0
            try:
                if ray_session is not None:
                    ray_session.close()
                if interrupted is not None:  # counted on disk: workers may have finished runs never reported to us
                    kept = sum(cell_status(root, c) == "done" for c in pending)
                    clean_stale_temporaries(root, pending)  # what the stopped workers were writing
            finally:
                lock.release()
            if interrupted is not None:
                how = "terminated" if isinstance(interrupted, Terminated) else "interrupted"
                print(f"sweep {how}: {kept} of {len(pending)} pending runs finished and are kept; "
                      f"run the sweep again to do the rest", flush=True)
    skipped = sum(s == "done" for s in statuses.values())
    skipped_failures = [] if retry_failed else [k for k, s in statuses.items() if s == "failed"]
    return SweepSummary(root, len(spec.cells), skipped, outcomes, time.perf_counter() - t0,
                        skipped_failures=skipped_failures, pending=waiting - len(pending))


def summary_dict(summary: SweepSummary) -> dict[str, Any]:
    """Plain-data form (for logs and tests)."""
    return {"out": str(summary.out), "total": summary.total, "skipped": summary.skipped, "ok": summary.ok,
            "failed": summary.failed, "wall_time": summary.wall_time,
            "outcomes": [asdict(o) for o in summary.outcomes]}
