"""SVI checkpoints: param store, optimizer state, RNG state, step, loss history and run settings in one file.

A run resumed from a checkpoint written at step ``k`` continues exactly as the uninterrupted run would: the
checkpoint's parameter values are copied into the tensors the model and guide set up (a module's own
``nn.Parameter`` is the tensor its forward pass reads, so replacing the store's tensors left it at its initial
values), and the RNG state is restored after the guide has been set up, so both runs draw the same numbers from step
``k`` on. The
settings that decide the trajectory are stored under ``extra["settings"]``; :func:`changed_settings` lists those a
resume would change (the caller refuses it). The data are stored as a fingerprint (:func:`data_fingerprint`), and the
parameters' names and shapes are compared with those the model and guide set up (:func:`changed_params`), so that a
resume on other data or with another guide is refused too.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyro
import pyro.util
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.rundir import existing_ancestor, host_id, probe_create, stale_temporaries
from pyrozoo.validation import expand_home


def check_checkpoint_path(value: Any, *, resume: bool = False, overwrite: bool = False) -> Path:
    """``value`` as the checkpoint file to write (and, with ``resume``, to read first), checked before any work: a
    non-empty path (a string or ``os.PathLike``; a number, ``''`` or ``None`` is refused), with a leading ``~``
    expanded, that is not a directory (a symbolic link stands for its target, which is returned: the checkpoint is
    written through it, as :func:`save_checkpoint`'s rename would replace the link), and whose directory exists and
    can be written to, or can be created (its nearest existing ancestor is a directory this process can create
    entries in: probed by creating and removing one, as ``os.access`` says yes to root on read-only file systems).
    With ``resume`` it must exist; without it, it must not, unless ``overwrite`` (a new run that forgot
    ``resume=True`` replaced a long run's checkpoint with its own, as ``--out`` refuses an existing folder without
    ``--overwrite``). Each failure is a :class:`PyrozooError` naming ``checkpoint``; nothing is left on disk."""
    what = "a file path for the checkpoint (e.g. 'svi.ckpt')"
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else value
    path = expand_home("checkpoint", value, what=what)
    if path.is_symlink():  # written through the link, to its target (the rename replaced the link by a file)
        path = Path(os.path.realpath(path))
        if path.is_symlink():  # realpath stops where the links go round
            raise PyrozooError(f"checkpoint: {text!r} is a loop of symbolic links ({path} leads back to itself); "
                               f"expected {what}")
    if str(text).endswith(("/", os.sep)) or path.is_dir():
        raise PyrozooError(f"checkpoint: expected {what}, got the directory {text!r}")
    if resume and not path.exists():
        raise PyrozooError(f"checkpoint: {path} does not exist, nothing to resume")
    if not resume and not overwrite and (path.exists() or path.is_symlink()):
        raise PyrozooError(f"checkpoint: {path} already exists; pass resume=True to continue the run it holds, "
                           f"overwrite_checkpoint=True to start a new run over it, or choose another path")
    directory = Path(os.path.abspath(path)).parent
    ancestor = existing_ancestor(directory)
    if not ancestor.is_dir():
        raise PyrozooError(f"checkpoint: cannot write {path}: {ancestor} is not a directory")
    try:
        probe_create(ancestor)
    except OSError as exc:
        where = "in" if ancestor == directory else f"(nor create {directory}) under"
        raise PyrozooError(f"checkpoint: cannot write {path}: no file can be created {where} {ancestor} "
                           f"({exc.strerror or exc})") from None
    return path


def save_checkpoint(path: str | os.PathLike, *, step: int, optimizer: pyro.optim.PyroOptim, losses: list[float],
                    extra: dict[str, Any] | None = None) -> None:
    """Write the checkpoint atomically (temporary file, then rename): param store (unconstrained values), optimizer
    state, RNG states (CPU, Python, NumPy, and CUDA's when in use), step, losses and ``extra``. The file gets the
    permissions the umask gives (as the run's other outputs). The temporary ``.NAME.PID-HOST.XXXXXXXX.tmp`` names
    its writer; one that a killed writer of the same checkpoint left behind is removed first
    (:func:`remove_stale_temporaries`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "param_store": pyro.get_param_store().get_state(),
        "optimizer": optimizer.get_state(),
        "rng": pyro.util.get_rng_state(),
        "losses": list(losses),
        "extra": extra or {},
    }
    # pyro's RNG state is the CPU generator's (with Python's and NumPy's): a fit on CUDA draws from the CUDA
    # generators, whose states are saved too (CUDA not initialized: nothing drew from them)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    remove_stale_temporaries(path)
    # named for its writer (.NAME.PID-HOST.XXXXXXXX.tmp), so that one a killed writer left is told from a live one's
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-{host_id()}.", suffix=".tmp")
    os.close(fd)
    try:
        umask = os.umask(0)  # reading the umask means setting it; restored at once
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would create it (mkstemp makes it 0600, which the rename kept)
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries of checkpoint ``path`` that a writer killed mid-write left beside it (``kill -9``, an
    out-of-memory kill: no ``finally`` ran), and return them: those named by :func:`save_checkpoint` for a process
    of this host that is gone (:func:`~pyrozoo.inference.rundir.stale_temporaries`, the rule of run directories).
    Another host's (a shared file system), a live process's, and one named as before temporaries recorded their
    writer (``.NAME.XXXXXXXX.tmp``) may be a live writer's and are left alone."""
    removed = []
    for tmp in stale_temporaries(path, files=True)[0]:
        try:
            tmp.unlink()
        except FileNotFoundError:  # removed by another writer meanwhile
            continue
        removed.append(tmp)
    return removed


def changed_settings(stored: Mapping[str, Any], current: Mapping[str, Any], *,
                     skip: tuple[str, ...] = ()) -> list[str]:
    """``name old -> new`` for every setting in ``stored`` or ``current`` (but not in ``skip``) whose values differ;
    a setting missing on one side counts as ``None``."""
    names = [n for n in {**stored, **current} if n not in skip]
    return [f"{n} {stored.get(n)!r} -> {current.get(n)!r}" for n in names if stored.get(n) != current.get(n)]


def data_fingerprint(kwargs: Mapping[str, Any]) -> dict[str, str]:
    """``name -> "dtype shape sha1"`` for each array in ``kwargs`` (torch tensor, NumPy array, pandas Series or
    DataFrame, list or tuple of numbers or of tensors), and ``name -> repr`` for each plain value (number, string,
    boolean, ``None``): what a resume compares (:func:`changed_data`) to tell that the data are those of the
    checkpoint.

    The rule: what the model computes the same way matches. Numbers are compared by value, as Python's ``==`` does:
    Python and NumPy scalars, 0-d NumPy arrays, and 0-d tensors of the dtype torch gives a Python number (bool,
    int64, the default float dtype) read as the number they hold, so 1, 1.0, True, np.float64(1.0) and
    torch.tensor(1.0) match. Arrays are compared by dtype, shape and bytes: float32 data and the same values in
    float64 change the model's arithmetic and do not match; a 0-d tensor of another dtype (float64 under the float32
    default, int32) is such an array, as it carries its dtype into what the model computes from it.

    The hash reads the array's bytes once (on the CPU, tensors detached; pandas objects with their index and column
    labels). Values that are not data this can compare are left out, whatever holds them: objects (modules,
    callables, datasets), and lists, object arrays or pandas objects of ragged or unhashable items (lists)."""
    out: dict[str, str] = {}
    for name, value in kwargs.items():
        if isinstance(value, (pd.Series, pd.DataFrame)):
            try:
                hashed = pd.util.hash_pandas_object(value, index=True)
            except TypeError:  # unhashable items (lists): not data this can compare
                continue
            labels = [str(c) for c in value.columns] if isinstance(value, pd.DataFrame) else [str(value.name)]
            digest = hashlib.sha1(hashed.to_numpy().tobytes())
            digest.update(repr(labels).encode())
            out[name] = f"pandas {tuple(value.shape)} {digest.hexdigest()[:16]}"
            continue
        if (isinstance(value, torch.Tensor) and value.dim() == 0
                and value.dtype in (torch.bool, torch.int64, torch.get_default_dtype())):
            value = value.item()  # of the dtype torch gives a Python number: the number
        if isinstance(value, (list, tuple)):
            try:
                value = np.asarray(_without_tensors(value))
            except (TypeError, ValueError):  # ragged or of objects: not data this can compare
                continue
            if value.dtype == object:
                continue
        elif isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "biuf":
            value = value.item()  # a 0-d array of a number: the number, as a NumPy scalar
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, np.ndarray):  # numbers, text, dates: their bytes (objects: not data this can compare)
            if value.dtype.kind in "biufcUSMm":
                digest = hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest()[:16]
                out[name] = f"{value.dtype.name} {tuple(value.shape)} {digest}"
            continue
        if isinstance(value, torch.Tensor):
            flat = value.detach().reshape(-1).cpu().contiguous()
            digest = hashlib.sha1(flat.view(torch.uint8).numpy().tobytes()).hexdigest()[:16]
            out[name] = f"{str(value.dtype).removeprefix('torch.')} {tuple(value.shape)} {digest}"
        elif value is None or isinstance(value, str):
            out[name] = repr(value)
        elif isinstance(value, (bool, int, float)):  # the type's own repr; changed_data compares them by value
            out[name] = repr(bool(value) if isinstance(value, bool) else int(value) if isinstance(value, int)
                             else float(value))
    return out


def _without_tensors(value: Any) -> Any:
    """``value`` (nested lists and tuples) with each tensor detached and on the CPU, as a NumPy array."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)):
        return [_without_tensors(v) for v in value]
    return value


def _number(text: str) -> bool | int | float | None:
    """The number a fingerprint's plain-value repr holds (``True``, ``3``, ``2.0``, ``nan``), else ``None``."""
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return None


def _same(old: str | None, new: str | None) -> bool:
    if old == new:
        return True
    a, b = (None if v is None else _number(v) for v in (old, new))
    if a is None or b is None:
        return False
    return a == b or (a != a and b != b)  # nan is the same value as nan


def changed_data(stored: Mapping[str, str], current: Mapping[str, str], *, what: str = "model_kwargs",
                 stored_absent: Mapping[str, tuple[str, str]] | None = None,
                 current_absent: Mapping[str, tuple[str, str]] | None = None) -> list[str]:
    """``what['name']: old -> new`` for every data fingerprint that differs; numbers differ only as values (a stored
    ``1`` and a current ``1.0`` or ``True`` are the same). A name absent on one side reads as its entry in that
    side's ``*_absent`` (``name -> (fingerprint, where it comes from)``, e.g. the model's default: an argument
    passed at its default is the argument left out), else as ``absent``."""

    def side(given: Mapping[str, str], absent: Mapping[str, tuple[str, str]] | None, name: str) -> tuple[Any, str]:
        if name in given:
            return given[name], given[name]
        if absent and name in absent:
            fingerprint, source = absent[name]
            return fingerprint, f"{fingerprint} ({source})"
        return None, "absent"

    changes = []
    for n in {**stored, **current}:
        (old, old_text), (new, new_text) = side(stored, stored_absent, n), side(current, current_absent, n)
        if not _same(old, new):
            changes.append(f"{what}[{n!r}]: {old_text} -> {new_text}")
    return changes


def changed_params(state: Mapping[str, Any], current: Mapping[str, torch.Tensor]) -> list[str]:
    """``name: old shape -> new shape`` for every parameter of the checkpoint's param store that the model and guide
    now set up with another shape or not at all, and for every one they set up that the checkpoint lacks;
    ``name: old dtype -> new dtype`` for one of the same shape and another dtype (its values are copied into the
    tensor set up now, :func:`restore_checkpoint`, which would cast them). ``current`` holds unconstrained values,
    as the checkpoint does (``pyro.get_param_store().get_state()["params"]``: a ``corr_cholesky`` parameter's
    unconstrained shape is not its own)."""
    stored_params = state["param_store"]["params"]
    stored = {n: tuple(v.shape) for n, v in stored_params.items()}
    now = {n: tuple(v.shape) for n, v in current.items()}
    changes = [f"{n}: {stored.get(n, 'absent')} -> {now.get(n, 'absent')}"
               for n in {**stored, **now} if stored.get(n) != now.get(n)]
    return changes + [f"{n}: {_dtype(stored_params[n])} -> {_dtype(v)}" for n, v in current.items()
                      if stored.get(n) == now[n] and stored_params[n].dtype != v.dtype]


def _dtype(value: torch.Tensor) -> str:
    return str(value.dtype).removeprefix("torch.")


def uses_scheduler(state: Mapping[str, Any]) -> bool | None:
    """Whether the checkpoint's optimizer state is that of a learning-rate scheduler (Pyro stores it as
    ``{"scheduler": ..., "optimizer": ...}`` per parameter); ``None`` when it holds no parameter's state."""
    per_param = list(state["optimizer"].values())
    if not per_param:
        return None
    return "scheduler" in per_param[0]


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors land on the CPU). A file that cannot be read,
    or read as one (truncated, empty, not a pickle, another object), is a :class:`PyrozooError` naming
    ``checkpoint``, the path and what is wrong, not torch's or pickle's own error."""
    if Path(path).is_dir():
        raise PyrozooError(f"checkpoint: {path} is a directory, not a pyrozoo checkpoint file")
    try:
        with open(path, "rb") as fh:  # a file this process cannot read: said as such
            fh.read(1)
    except OSError as exc:
        raise PyrozooError(f"checkpoint: cannot read {path} ({exc.strerror or exc})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated, empty or garbage: OSError, EOFError, UnpicklingError, RuntimeError, ...
        reason = str(exc).splitlines()[0][:200] if str(exc) else "no message"
        raise PyrozooError(f"checkpoint: {path} is not a pyrozoo checkpoint: it cannot be read as one "
                           f"({type(exc).__name__}: {reason})") from None
    problem = _malformed(state)
    if problem:
        raise PyrozooError(f"checkpoint: {path} is not a pyrozoo checkpoint: {problem}")
    return state


def _malformed(state: Any) -> str | None:
    """What keeps ``state`` from being a checkpoint :func:`save_checkpoint` wrote, or ``None``."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not the dict save_checkpoint writes"
    missing = [k for k in ("step", "param_store", "optimizer", "rng", "losses") if k not in state]
    if missing:
        return f"it lacks {', '.join(map(repr, missing))} (its keys: {sorted(map(str, state))})"
    store = state["param_store"]
    if not (isinstance(store, dict) and isinstance(store.get("params"), dict)
            and isinstance(store.get("constraints"), dict)
            and all(isinstance(v, torch.Tensor) for v in store["params"].values())):
        return "its 'param_store' is not a param store's state (params and constraints)"
    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"its 'step' is {step!r}, not a step count"
    if not isinstance(state["losses"], list) or not isinstance(state["optimizer"], dict):
        return "its 'losses' or 'optimizer' entry is not what save_checkpoint writes"
    if not isinstance(state["rng"], dict) or "torch" not in state["rng"]:
        return "its 'rng' entry is not an RNG state"
    if not isinstance(state.get("extra", {}), dict):
        return "its 'extra' entry is not a dict"
    return None


def restore_checkpoint(state: dict[str, Any], optimizer: pyro.optim.PyroOptim, device: torch.device) -> None:
    """Put the param store, optimizer and RNG back as they were when ``state`` was saved.

    Each stored value is copied in place into the tensor that the model and guide set up under its name (they must
    hold the same names and shapes: :func:`changed_params`). Replacing the store's tensors instead
    (``ParamStore.set_state``) left every module's own ``nn.Parameter`` (an AutoDiagonalNormal's ``loc``, the
    weights of a ``pyro.module`` or ``PyroModule`` network) at its initial value: its forward pass reads that
    attribute, while the optimizer stepped the store's new tensors, which got no gradient. The optimizer state is
    keyed by name and bound to those same live tensors at their first step. The CUDA generators' states are put
    back too where the checkpoint holds them and CUDA is available."""
    live = dict(pyro.get_param_store().named_parameters())  # unconstrained, as stored
    with torch.no_grad():
        for name, value in state["param_store"]["params"].items():
            live[name].copy_(value)
    optimizer.set_state(_to_device(state["optimizer"], device))
    pyro.util.set_rng_state(state["rng"])
    cuda = state.get("cuda_rng")
    if cuda is not None and torch.cuda.is_available():
        for index, generator in enumerate(cuda[:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(generator, index)


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        # Adam's step counter must stay on the CPU; moments follow the parameters.
        return obj if obj.dim() == 0 else obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    return obj
