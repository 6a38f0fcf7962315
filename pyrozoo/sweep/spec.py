"""The sweep file: a grid of runs (models x datasets/scenarios x seeds x inference options) declared in TOML.

```toml
[sweep]
name = "normal-gamma-demo"    # optional; also the default output directory runs/sweeps/NAME
out = "runs/sweeps/demo"      # optional; the command line's --out wins; "~/..." is under the home directory;
                              # a relative out is relative to the current directory (data: to this file's)
seeds = [0, 1, 2]             # a list of seeds, or an integer N meaning 0, 1, ..., N-1
tiny = false                  # start every cell from its model's `tiny` settings (smoke sweeps)

[defaults]                    # RunConfig settings for every cell (not model or seed)
device = "cpu"
num_samples = 500

[grid]                        # axes shared by every model: RunConfig fields, each a non-empty list
num_chains = [2, 4]

[[models]]                    # one block per model (a model may appear twice, then give each a `label`)
name = "normal-gamma"
inference = "gibbs"           # single RunConfig values override [defaults]
options = { n = 200 }         # fixed model options
[models.grid]                 # this model's axes (override [grid] on the same key)
inference = ["gibbs", "svi"]
[models.grid.options]         # model options as axes
sigma_true = [0.5, 2.0]
```

Every cell is one :class:`~pyrozoo.config.RunConfig`; all of them are built and checked against their registry
entry (unknown keys, bad values, unknown model/inference/dataset/option) before anything runs. Each cell's run
directory is ``OUT/LABEL/INFERENCE[_AXIS=VALUE...]_seedS``: readable and the same on every re-run, which is what
makes a sweep resumable. Values are normalised to the declared kind first (``n = 30.0`` -> 30 for an integer
option, ``mu_true = 1`` -> 1.0 for a float one), so either spelling names the same directory. A relative ``data``
path is relative to the sweep file's directory.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import numbers
import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pyrozoo import registry
from pyrozoo.config import RunConfig, read_toml, relative_to_file
from pyrozoo.errors import PyrozooError
from pyrozoo.validation import SEED_MAX, check_keys, check_seed, expand_home

SWEEP_KEYS = ("name", "out", "seeds", "tiny")
# RunConfig fields a sweep may set; model and seed come from [[models]] and [sweep].seeds, options have own tables.
CONFIG_FIELDS = tuple(f.name for f in fields(RunConfig) if f.name not in ("model", "seed", "options"))
MODEL_KEYS = ("name", "label", "options", "grid", *CONFIG_FIELDS)
# the most cells a sweep may have: each is built and checked up front (about 1 ms and 1 kB apiece) and listed in
# sweep.json, so a grid far beyond this (``seeds = 100000000``) would take hours before its first run
MAX_CELLS = 100_000
_SCALAR = (str, int, float, bool)

# what a sweep's output root holds besides its labels' folders (LABEL/...): the list of its cells, its lock (hidden,
# as a label's folder never is: _slug drops leading dots) and the folder `pyrozoo report` writes into by default
MANIFEST = "sweep.json"
LOCK = ".sweep.lock"
REPORT_DIR = "report"
ROOT_NAMES = {MANIFEST: "its list of cells", LOCK: "its lock",
              REPORT_DIR: "the folder `pyrozoo report` writes the sweep's report into by default"}

# settings that do not change a run's result (``progress`` draws a progress bar): a completed run is reused even if
# they differ, a report does not group by them, and a sweep refuses them as grid axes
NOT_RUN_SETTINGS = ("progress",)


@dataclass(frozen=True)
class Cell:
    """One run of the sweep: a run directory ``key`` (relative to the sweep's output root) and its config."""

    key: str
    config: dict[str, Any]
    axes: dict[str, Any] = field(default_factory=dict)
    # earlier names of this cell's run directory (before float options were normalised: ``mu_true=1``), so that
    # the runs of an older sweep are found again (see :func:`pyrozoo.sweep.runner.adopt_earlier_keys`)
    earlier_keys: tuple[str, ...] = ()

    def run_config(self) -> RunConfig:
        return RunConfig.from_dict(dict(self.config), source=f"cell {self.key}")


@dataclass
class SweepSpec:
    """A validated sweep: its name, output root, and the cells in a fixed order."""

    name: str
    out: Path
    cells: list[Cell]
    source: str = "sweep"

    def __len__(self) -> int:
        return len(self.cells)


def _check_type(where: str, key: str, value: Any) -> None:
    """The kinds RunConfig's own checks take for granted (ranges and choices are checked by RunConfig/entry)."""
    if key in ("inference", "device", "dataset") and not isinstance(value, str):
        raise PyrozooError(f"{where}: expected a string, got {value!r}")
    if key == "lr" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise PyrozooError(f"{where}: expected a number > 0, got {value!r}")


def _check_axis(where: str, values: Any) -> list[Any]:
    if not isinstance(values, list) or not values:
        raise PyrozooError(f"{where}: expected a non-empty list of values, got {values!r}")
    for v in values:
        if not isinstance(v, _SCALAR):
            raise PyrozooError(f"{where}: expected numbers, strings or booleans, got {v!r}")
    # by value, as the runs would see them: 1 and 1.0 are one setting (bools stay apart from 0 and 1); Python
    # compares an int and a float exactly (2**53 + 1 is neither 2**53 nor 2.0**53), so large integers stay apart
    same = {(type(v) is bool, v) for v in values}
    if len(same) != len(values):
        raise PyrozooError(f"{where}: values repeat in {values!r}")
    key = where.rsplit(".", 1)[-1]
    if ".options." not in where:
        for v in values:
            _check_type(where, key, v)
    return list(values)


def _refuse_not_run_axes(where: str, grid: Mapping[str, Any]) -> None:
    """A grid table may not sweep a setting that does not change a run (:data:`NOT_RUN_SETTINGS`): its cells would
    repeat one run under several names (which a report, blind to the setting, counts as several seeds), or, with one
    value, name run directories after it."""
    for key in NOT_RUN_SETTINGS:
        if key in grid:
            raise PyrozooError(f"{where}.{key}: {key} does not change a run (it only shows a progress bar), so it "
                               f"cannot be a grid axis: its cells would repeat one run under several names; set "
                               f"{key} as a single value ([defaults] or the [[models]] block) instead")


def _check_settings(where: str, table: Mapping[str, Any]) -> dict[str, Any]:
    """Single RunConfig values (no lists: those belong under a grid table)."""
    out = {}
    for key, value in table.items():
        if isinstance(value, list):
            raise PyrozooError(f"{where}.{key}: expected a single value, got a list; put the values to sweep "
                               f"under a grid table ([grid] or [models.grid])")
        _check_type(f"{where}.{key}", key, value)
        out[key] = value
    return out


def _table(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PyrozooError(f"{where}: expected a table, got {value!r}")
    return value


def _seeds(value: Any) -> Sequence[int]:
    """``[sweep].seeds``: a list of seeds, each an integer in [0, 2**32 - 1] (:func:`~pyrozoo.validation.check_seed`;
    an integral float such as 1.0 counts, 1.5 does not), or a count N in [1, 2**32] (3.0 counts too) meaning seeds
    0..N-1 (a ``range``: nothing is built per seed before the cell count is
    checked against :data:`MAX_CELLS`)."""
    if isinstance(value, list):
        if not value:
            raise PyrozooError("sweep.seeds: expected a non-empty list of integer seeds in [0, 2**32 - 1], got []")
        seeds = [check_seed("sweep.seeds", s) for s in value]
        if len(set(seeds)) != len(seeds):
            raise PyrozooError(f"sweep.seeds: seeds repeat in {value!r}")
        return seeds
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral or not 1 <= value <= SEED_MAX + 1:
        raise PyrozooError(f"sweep.seeds: expected a list of integer seeds in [0, 2**32 - 1] or a count in "
                           f"[1, 2**32] (seeds 0..count-1), got {value!r}")
    return range(int(value))


_UNSAFE = re.compile(r"[^A-Za-z0-9._+\-]+")


def _slug(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    text = _UNSAFE.sub("-", str(value)).lstrip(".")  # keep a sign ("-1.0"); no hidden names
    return text or "x"


# RunConfig settings declared as floats (the model options' kinds come from their registry defaults)
FLOAT_SETTINGS = ("lr",)


def _as_float(value: Any) -> Any:
    """An integer (not a bool) as a float, a list of them element-wise; anything else unchanged."""
    if isinstance(value, list):
        return [_as_float(v) for v in value]
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return float(value)
    return value


def normalise_floats(config: Mapping[str, Any], float_options: Collection[str]) -> dict[str, Any]:
    """``config`` with the integers given for float settings and ``float_options`` (an entry's
    :meth:`~pyrozoo.registry.ZooModel.float_option_names`) made floats (``mu_true = 1`` -> ``1.0``), as integral
    floats for integer settings are made integers by the checks: one value, one spelling, one run directory."""
    out = dict(config)
    for key in FLOAT_SETTINGS:
        if key in out:
            out[key] = _as_float(out[key])
    out["options"] = {k: _as_float(v) if k in float_options else v for k, v in config.get("options", {}).items()}
    return out


# run settings added after run directories were first recorded, with the value every earlier run had: a config.toml
# without the key reads as that value (else a sweep of 2026-11-27 could not resume in its own directory, "differs in
# log_likelihood", and a report split identical runs into two groups)
SETTINGS_ADDED_LATER = {"log_likelihood": True}


def canonical_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A planned or recorded run config in one spelling, for telling runs apart (resume checks, report groups):
    without the settings its inference does not read (run directories before 2026-11-26 recorded them), with float
    settings and options as floats, a relative ``data`` path made absolute from the working directory (sweep files
    before 2026-11-26 stored it as written, now it is stored absolute), ``None`` values dropped and settings added
    since (:data:`SETTINGS_ADDED_LATER`) at the value earlier runs had. A config naming
    no known model is returned as it is."""
    try:
        entry = registry.get(config["model"])
    except (KeyError, TypeError, PyrozooError):
        return dict(config)
    kept = entry.without_unread_settings({k: v for k, v in config.items() if v is not None},
                                         config.get("inference") or entry.inferences[0])
    for key, value in SETTINGS_ADDED_LATER.items():  # a run recorded before the setting existed had its default
        kept.setdefault(key, value)
    out = normalise_floats(kept, entry.float_option_names())
    data = out.get("data")
    if isinstance(data, str) and data.strip():
        out["data"] = os.path.normpath(os.path.abspath(os.path.expanduser(data)))
    return out


def _run_identity(entry: registry.ZooModel, config: Mapping[str, Any], real_paths: dict[str, str]) -> dict[str, Any]:
    """What a checked cell's run computes, in one spelling, for telling the cells of one block apart: ``config``
    (already normalised: 30.0 is 30, a relative data path absolute) without :data:`NOT_RUN_SETTINGS` and ``None``
    values, its options in the entry's ``canonical_options`` spelling (plce's ``interactions = true`` is
    ``"linear"``) and its data file by its real path (``~`` expanded, ``..`` and symbolic links resolved; looked up
    once per path in ``real_paths``)."""
    same = {k: v for k, v in config.items() if k not in NOT_RUN_SETTINGS and v is not None}
    same["options"] = entry.canonical(config.get("options", {}))
    if isinstance(same.get("data"), str) and same["data"].strip():
        path = same["data"]
        if path not in real_paths:
            real_paths[path] = os.path.realpath(os.path.expanduser(path))
        same["data"] = real_paths[path]
    return same


def _refuse_repeats(entry: registry.ZooModel, cells: Sequence[Cell], written: Sequence[Mapping[str, Any]],
                    axis_keys: Mapping[str, str]) -> None:
    """Raise if two cells of one ``[[models]]`` block are one run (:func:`_run_identity`): axis values that are
    two spellings of one value, which the axis check cannot see (``"d.csv"`` and ``"./d.csv"``, ``"sub/../d.csv"``
    or a symbolic link to it; plce's ``interactions = true`` and ``"linear"``), would repeat one run under several
    names, and a report would average it as several seeds. ``written``: each cell's axis values as the sweep file
    writes them; ``axis_keys``: each axis's key there (``models[0].grid.data``)."""
    seen: dict[str, int] = {}
    real_paths: dict[str, str] = {}
    for i, cell in enumerate(cells):
        same = _run_identity(entry, cell.config, real_paths)
        j = seen.setdefault(json.dumps(same, sort_keys=True, default=str), i)
        if j == i:
            continue
        a, b = written[j], written[i]
        differ = [k for k in b if repr(a[k]) != repr(b[k])] or list(b)
        k = differ[0]
        name = k.removeprefix("options.")
        value = same["data"] if k == "data" else (same.get("options", {}) if k != name else same).get(name)
        what = (f"both name the file {value}" if k == "data" else f"both are {name} = {value!r} to {entry.name}")
        also = "".join(f", with {m} = {a[m]!r} and {b[m]!r}" for m in differ[1:])
        raise PyrozooError(f"{axis_keys[k]}: the values {a[k]!r} and {b[k]!r} are one run "
                           f"({what}{also}), so the grid would repeat one run under two names and a report would "
                           f"count it twice; keep one of them")


def _axis_values(config: Mapping[str, Any], axes: Mapping[str, Any], written_data: Any) -> dict[str, Any]:
    """Each axis's value as ``config`` holds it; a data file as written in the sweep file (the config holds its
    resolved path), so that the run directory's name does not depend on where the sweep file lies."""
    return {k: config["options"][k.removeprefix("options.")] if k.startswith("options.")
            else written_data if k == "data" else config[k] for k in axes}


def _earlier_keys(label: str, config: Mapping[str, Any], axes: Mapping[str, Any],
                  float_options: Collection[str],
                  clashing: Mapping[str, Collection[str]] | None = None) -> tuple[str, ...]:
    """The names this cell's run directory had before float settings were normalised: a float axis value that is
    a whole number was named as the sweep file wrote it (``mu_true=1`` for 1, ``mu_true=1.0`` for 1.0), so each
    such axis may read either way (every combination for up to 4 such axes, else all of them as integers)."""
    whole = [k for k, v in axes.items() if isinstance(v, float) and v.is_integer()
             and (k in FLOAT_SETTINGS or (k.startswith("options.") and k.removeprefix("options.") in float_options))]
    if not whole:
        return ()
    subsets = ([c for r in range(1, len(whole) + 1) for c in itertools.combinations(whole, r)] if len(whole) <= 4
               else [tuple(whole)])
    key = cell_key(label, config, axes, clashing)
    out = []
    for subset in subsets:
        earlier = cell_key(label, config, {k: int(v) if k in subset else v for k, v in axes.items()}, clashing)
        if earlier != key and earlier not in out:
            out.append(earlier)
    return tuple(out)


def key_axis_names(axes: Collection[str]) -> list[str]:
    """The names the axes have in a cell's key (:func:`cell_key`), in their order there: the declared order, less
    ``inference`` (the key's first part), ``options.`` dropped."""
    return [_slug(k.removeprefix("options.")) for k in axes if k != "inference"]


def _value_text(value: Any) -> str:
    """An axis value as one text, to tell two values apart and to hash one (:func:`_clashing_values`)."""
    return json.dumps(value, sort_keys=True, default=str)


def _clashing_values(cells: Sequence[Cell]) -> dict[str, set[str]]:
    """For each axis of one ``[[models]]`` block, the values (:func:`_value_text`) that share their folder-name text
    with another value of that axis (``"a/d.csv"`` and ``"a-d.csv"`` are both ``a-d.csv``)."""
    texts: dict[str, dict[str, set[str]]] = {}
    for cell in cells:
        for k, v in cell.axes.items():
            if k != "inference":
                texts.setdefault(k, {}).setdefault(_slug(v), set()).add(_value_text(v))
    out: dict[str, set[str]] = {}
    for k, by_slug in texts.items():
        for same in by_slug.values():
            if len(same) > 1:
                out.setdefault(k, set()).update(same)
    return out


def _key_value(axis: str, value: Any, clashing: Mapping[str, Collection[str]] | None) -> str:
    """``value``'s text in a run directory's name: :func:`_slug`, and, only for a value whose slug another value of
    the same axis shares, ``+`` and the first 8 hex digits of the SHA-1 of its :func:`_value_text` (stable, so a
    resumed sweep finds it again)."""
    text = _value_text(value)
    if clashing and text in clashing.get(axis, ()):
        return f"{_slug(value)}+{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    return _slug(value)


def cell_key(label: str, config: Mapping[str, Any], axes: Mapping[str, Any],
             clashing: Mapping[str, Collection[str]] | None = None) -> str:
    """``LABEL/INFERENCE[_AXIS=VALUE...]_seedS`` (axes other than inference in declared order; a run directory named
    with the same ``AXIS=VALUE`` parts in another order, by the same sweep with its axes declared in another order,
    is found again: :func:`pyrozoo.sweep.runner.adopt_earlier_keys`). ``clashing`` (:func:`_clashing_values`):
    the values given a hash suffix, as two distinct values of one axis would otherwise share a name."""
    parts = [_slug(config["inference"])]
    parts += [f"{name}={_key_value(k, v, clashing)}" for name, (k, v) in
              zip(key_axis_names(axes), [(k, v) for k, v in axes.items() if k != "inference"], strict=True)]
    parts.append(f"seed{config['seed']}")
    return f"{_slug(label)}/{'_'.join(parts)}"


def _family_checked(entry: registry.ZooModel, cfg: dict[str, Any], run_cfg: RunConfig, tiny_only: Sequence[str],
                    where: str) -> RunConfig:
    """``run_cfg`` once the entry's family check (``check_options``) accepts it. The tiny sizes are defaults the
    user did not choose, so one that the user's options make a no-op (bnn's tiny ``hidden`` with ``depth = 0``)
    yields: the first tiny-only option (``tiny_only``) whose removal the check accepts is dropped from ``cfg``.
    Otherwise the check's error is raised."""
    try:
        entry.check_options(run_cfg)
        return run_cfg
    except PyrozooError as exc:
        for k in tiny_only:
            trial = {**cfg, "options": {o: v for o, v in cfg["options"].items() if o != k}}
            candidate = entry.check_config(RunConfig.from_dict(trial, source=where), family=False)
            try:
                entry.check_options(candidate)
            except PyrozooError:
                continue
            del cfg["options"][k]
            return candidate
        raise exc from None


def _refuse_combinations(where: str, model: str, refused: Sequence[tuple[str, PyrozooError]], total: int,
                         verdicts: Sequence[tuple[dict[str, Any], bool]]) -> None:
    """Raise for the cells of one ``[[models]]`` block that the entry's family check (``check_options``) refused.
    All of them: the block's own values conflict, said as for any other check. Some of them: name the grid values
    refused in every cell that has them (``verdicts``: each cell's axis values and whether it was refused), which
    the grid should drop, and otherwise say to split the grid, for values the model accepts apart but not
    together, which no single block can express."""
    what, exc = refused[0]
    if len(refused) == total:
        raise PyrozooError(f"{where} ({model}, {what}): {exc}")
    verb = "is" if len(refused) == 1 else "are"
    pairs = list(dict.fromkeys((k, repr(v)) for chosen, _ in verdicts for k, v in chosen.items()))
    always = [f"{k}={v}" for k, v in pairs
              if all(bad for chosen, bad in verdicts if repr(chosen.get(k, object())) == v)]
    split = (f"a grid axis cannot leave a value out of some combinations, so split the grid into separate "
             f"[[models]] blocks (each with its own label) that hold only combinations {model} accepts")
    if always:
        # the refused cells the dropped values do not explain still need the split
        rest = any(bad and not any(f"{k}={v!r}" in always for k, v in chosen.items()) for chosen, bad in verdicts)
        them = "it" if len(always) == 1 else "each"
        fix = (f"{', '.join(always)} {'is' if len(always) == 1 else 'are'} refused in every cell of this block that "
               f"has {'it' if len(always) == 1 else 'them'}: remove {them} from the grid, or give {them} a [[models]] "
               f"block of its own (with its own label) without the values it conflicts with"
               + (f"; for the other refused cells, {split}" if rest else ""))
    else:
        fix = split
    raise PyrozooError(f"{where} ({model}): {len(refused)} of {total} cells {verb} refused, and a sweep runs only "
                       f"when every cell is accepted (first: {what}: {exc}); {fix}")


def parse_spec(data: Mapping[str, Any], *, source: str = "sweep", out: str | Path | None = None,
               base_dir: str | Path | None = None) -> SweepSpec:
    """Validate a parsed sweep file and expand it into cells; every problem is a :class:`PyrozooError` naming the
    key. ``out`` overrides ``[sweep].out``; a leading ``~`` in either is the home directory (as in a ``data``
    path). A relative ``data`` path is taken relative to ``base_dir`` (the sweep
    file's directory, from :func:`load_spec`) and stored as an absolute path; without ``base_dir``, relative to the
    current directory as given."""
    check_keys(source, data, ("sweep", "defaults", "grid", "models"))
    sweep = _table("sweep", data.get("sweep", {}))
    check_keys("sweep", sweep, SWEEP_KEYS)
    name = sweep.get("name", Path(source).stem if source != "sweep" else "sweep")
    if not isinstance(name, str) or not name.strip():
        raise PyrozooError(f"sweep.name: expected a non-empty string, got {name!r}")
    out_dir = out if out is not None else sweep.get("out", Path("runs") / "sweeps" / _slug(name))
    if not isinstance(out_dir, (str, Path)) or not str(out_dir).strip():
        what = "out: expected a directory path (--out)" if out is not None else "sweep.out: expected a directory path"
        raise PyrozooError(f"{what}, got {out_dir!r}")
    seeds = _seeds(sweep.get("seeds", [0]))
    tiny = sweep.get("tiny", False)
    if not isinstance(tiny, bool):
        raise PyrozooError(f"sweep.tiny: expected true or false, got {tiny!r}")

    defaults = dict(_table("defaults", data.get("defaults", {})))
    check_keys("defaults", defaults, (*CONFIG_FIELDS, "options"))
    default_options = dict(_table("defaults.options", defaults.pop("options", {})))
    defaults = _check_settings("defaults", defaults)
    grid = _table("grid", data.get("grid", {}))
    check_keys("grid", grid, CONFIG_FIELDS)
    _refuse_not_run_axes("grid", grid)
    global_axes = {k: _check_axis(f"grid.{k}", v) for k, v in grid.items()}

    models = data.get("models")
    if models is None:
        raise PyrozooError(f"{source}: no [[models]] block; name at least one model to sweep")
    if not isinstance(models, list) or not models:
        raise PyrozooError(f"models: expected one or more [[models]] tables, got {models!r}")

    cells: list[Cell] = []
    block_of: list[str] = []  # each cell's [[models]] block (models[i])
    labels: set[str] = set()
    planned = 0  # cells of the blocks so far, counted before each block is built
    for i, block in enumerate(models):
        where = f"models[{i}]"
        block = dict(_table(where, block))
        check_keys(where, block, MODEL_KEYS)
        if "name" not in block:
            raise PyrozooError(f"{where}: missing key 'name' (a model from `pyrozoo list`)")
        model = block.pop("name")
        if not isinstance(model, str):
            raise PyrozooError(f"{where}.name: expected a model name, got {model!r}")
        try:
            entry = registry.get(model)
        except PyrozooError as exc:
            raise PyrozooError(f"{where}.name: {str(exc).removeprefix('model: ')}") from None
        label = block.pop("label", model)
        if not isinstance(label, str) or not label.strip():
            raise PyrozooError(f"{where}.label: expected a non-empty string, got {label!r}")
        if label in labels:
            raise PyrozooError(f"{where}: label {label!r} is used twice; give each [[models]] block its own label")
        # case-blind, as a folder name is on macOS's and Windows' file systems
        taken = next((n for n in ROOT_NAMES if n.casefold() == _slug(label).casefold()), None)
        if taken is not None:
            raise PyrozooError(f"{where}.label: expected a label other than {taken!r}, got {label!r}: its run "
                               f"directories would go into OUT/{_slug(label)}, where the sweep's output root keeps "
                               f"{ROOT_NAMES[taken]} ({taken}); choose another label")
        labels.add(label)
        options = {**default_options, **_table(f"{where}.options", block.pop("options", {}))}
        model_grid = dict(_table(f"{where}.grid", block.pop("grid", {})))
        option_grid = _table(f"{where}.grid.options", model_grid.pop("options", {}))
        check_keys(f"{where}.grid", model_grid, CONFIG_FIELDS)
        _refuse_not_run_axes(f"{where}.grid", model_grid)
        check_keys(f"{where}.grid.options", option_grid, entry.options)
        axes = {**global_axes, **{k: _check_axis(f"{where}.grid.{k}", v) for k, v in model_grid.items()}}
        axes.update({f"options.{k}": _check_axis(f"{where}.grid.options.{k}", v) for k, v in option_grid.items()})
        axis_keys = {**{k: f"grid.{k}" for k in global_axes}, **{k: f"{where}.grid.{k}" for k in model_grid},
                     **{f"options.{k}": f"{where}.grid.options.{k}" for k in option_grid}}
        settings = _check_settings(where, block)
        points = math.prod(len(v) for v in axes.values())
        planned += points * len(seeds)
        if planned > MAX_CELLS:
            raise PyrozooError(f"{source}: the grid has more than the {MAX_CELLS:,} cells a sweep may hold "
                               f"({planned:,} up to {where}, {model}: {points:,} grid point{'s' * (points != 1)} x "
                               f"{len(seeds):,} seed{'s' * (len(seeds) != 1)}); use fewer "
                               f"seeds or axis values, or split it into several sweep files, each with its own name "
                               f"and output directory")

        base: dict[str, Any] = {}
        tiny_options: dict[str, Any] = {}
        if tiny:
            base = dict(entry.tiny)
            tiny_options = dict(base.pop("options", {}))
        base.update(defaults)
        base.update(settings)
        names = list(axes)
        refused: list[tuple[str, PyrozooError]] = []  # (the cell, in words; the entry's family check's error)
        verdicts: list[tuple[dict[str, Any], bool]] = []  # (each checked cell's axis values, refused?)
        block_cells = 0
        first = len(cells)  # this block's cells are cells[first:], their axis values as written block_written
        block_written: list[dict[str, Any]] = []
        for combo in itertools.product(*(axes[k] for k in names)):
            chosen = dict(zip(names, combo, strict=True))
            for seed in seeds:
                cfg = {**base, "model": model, "seed": seed,
                       "options": {**tiny_options, **options}}
                for k, v in chosen.items():
                    if k.startswith("options."):
                        cfg["options"][k.removeprefix("options.")] = v
                    else:
                        cfg[k] = v
                cfg.setdefault("progress", False)
                written_data = cfg.get("data")
                if base_dir is not None and isinstance(written_data, str) and written_data.strip() \
                        and not os.path.isabs(os.path.expanduser(written_data)):  # ~nosuchuser: relative
                    cfg["data"] = relative_to_file(written_data, base_dir)
                # the zoo's tiny sizes are simulator options: a tiny sweep over shipped data drops them; and a
                # tiny size that only some inferences read (spike-slab's NUTS tree depth) is dropped for the others
                data_source = registry.data_source(cfg.get("data"), cfg.get("dataset"))
                inference = cfg.get("inference") or entry.inferences[0]
                unread = entry.unread_options(tiny_options, inference) if isinstance(inference, str) else []
                for k in dict.fromkeys([*entry.unused_options(tiny_options, data_source), *unread]):
                    if k not in options and f"options.{k}" not in chosen:
                        del cfg["options"][k]
                block_cells += 1
                what = f"seed {seed}" + "".join(f", {k}={v!r}" for k, v in chosen.items())
                try:
                    run_cfg = entry.check_config(RunConfig.from_dict(cfg, source=where), family=False)
                except PyrozooError as exc:
                    raise PyrozooError(f"{where} ({model}, {what}): {exc}") from None
                except (TypeError, ValueError) as exc:  # a value of a kind the checks could not even compare
                    raise PyrozooError(f"{where} ({model}, seed {seed}): a setting has a value of the wrong type "
                                       f"({exc})") from None
                if entry.check_options is not None:  # options judged together: counted over the whole block
                    tiny_only = [k for k in tiny_options
                                 if k in cfg["options"] and k not in options and f"options.{k}" not in chosen]
                    try:
                        run_cfg = _family_checked(entry, cfg, run_cfg, tiny_only, where)
                    except PyrozooError as exc:
                        refused.append((what, exc))
                        verdicts.append((chosen, True))
                        continue
                    verdicts.append((chosen, False))
                # an axis of one value too: its name would go into a run directory whose run ignores it
                unread = [k for k in chosen if k in entry.unread_settings(run_cfg.inference)]
                if unread:
                    k = unread[0]
                    inf = run_cfg.inference
                    harm = (f"would repeat one run under {len(axes[k])} names; give {inf} a [[models]] block of "
                            f"its own without that axis" if len(axes[k]) > 1 else
                            f"would name {inf}'s run directories after a setting its runs ignore; set {k} as a "
                            f"single value ([defaults] or the block: an inference that does not read it leaves it "
                            f"out) instead of a grid axis")
                    raise PyrozooError(f"{where}: {model}'s {inf} does not read {k}, so the grid axis "
                                       f"{k} = {axes[k]!r} {harm}")
                full = normalise_floats(run_cfg.to_dict(), entry.float_option_names())
                # name the cell after the values the run will use (n = 30.0 is checked into 30, mu_true = 1 into
                # 1.0), so that a later sweep file that writes 30 or 1.0 finds the same run directory
                used = _axis_values(full, chosen, written_data)
                key = cell_key(label, full, used)
                earlier = _earlier_keys(label, full, used, entry.float_option_names())
                cells.append(Cell(key, full, used, earlier_keys=earlier))
                block_of.append(where)
                block_written.append(chosen)
        if refused:
            _refuse_combinations(where, model, refused, block_cells, verdicts)
        _refuse_repeats(entry, cells[first:], block_written, axis_keys)
        clashing = _clashing_values(cells[first:])
        if clashing:  # only then: the run directories of a sweep without such values keep their names
            cells[first:] = [replace(c, key=cell_key(label, c.config, c.axes, clashing),
                                     earlier_keys=_earlier_keys(label, c.config, c.axes, entry.float_option_names(),
                                                                clashing))
                             for c in cells[first:]]

    seen: dict[str, int] = {}
    for i, cell in enumerate(cells):
        if cell.key in seen:
            j = seen[cell.key]
            both = f"{block_of[j]} with {cells[j].axes!r} and {block_of[i]} with {cell.axes!r}"
            advice = ("their labels differ only in characters a folder name cannot hold (letters, digits and . _ + - "
                      "are kept, any other run of characters becomes -); give the [[models]] blocks labels whose "
                      "folder names differ" if block_of[i] != block_of[j] else
                      "write one of the values differently")
            raise PyrozooError(f"{source}: two cells map to the run directory {cell.key!r} ({both}); {advice}")
        seen[cell.key] = i
    out_path = expand_home("out" if out is not None else "sweep.out", out_dir, what="a directory path")
    return SweepSpec(name=name, out=out_path, cells=cells, source=source)


def load_spec(path: str | Path, *, out: str | Path | None = None) -> SweepSpec:
    """Read and validate a sweep file (see the module docstring for the format). An error about the file's
    contents names it before the key (``sweep.toml: models[0].grid.options.n: ...``); one about ``out`` (the
    command line's ``--out``) does not."""
    path = Path(path)
    data = read_toml(path, what="sweep")
    try:
        return parse_spec(data, source=str(path), out=out, base_dir=path.parent)
    except PyrozooError as exc:  # named here, where the file is known, not in each check; changed in place
        text = str(exc)
        if not text.startswith(f"{path}: ") and not (out is not None and text.startswith("out: ")):
            exc.args = (f"{path}: {text}",)
        raise


def describe(cells: Sequence[Cell]) -> str:
    """One line per cell (for ``--dry-run``)."""
    return "\n".join(cell.key for cell in cells)
