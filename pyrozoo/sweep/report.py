"""Reports across run directories: one pandas table of config + metrics, grouped means with standard errors, and
the standard plots per model family.

Every complete run directory below the root counts (a sweep's or a set of ``pyrozoo run`` outputs), plus the
sweep's failure records and, from ``sweep.json``, the cells not run yet. Only ``config.toml`` and ``metrics.json``
are read, so a report over thousands of runs is quick; a Markov chain's convergence figures are in
``metrics.json`` too (``convergence``, written by :func:`~pyrozoo.runner.run_model`) and flag its runs.

Grouping: runs that share every recorded setting except the seed form a group (the setting columns that vary
across the runs, plus ``model`` and, for a sweep's runs, its ``label``; never the names of the directories, so the
directory level given does not change the groups); for each numeric metric the group's mean and standard error
``sd / sqrt(n)`` (sample sd, ``ddof=1``; NaN for a group of one) are reported with the group size ``n``; where
some runs of a group did not record a metric, its mean and SE are over those that did, counted in ``METRIC_n``.
A bool metric (which estimator ran) is grouped by, not averaged (:func:`group_columns`).

Plots, per model: each metric against the seed (one series per group: the seed-to-seed spread), and each metric
against every other varying setting (``alpha``, ``inference``, ``n`` ...): group means with +-1 SE error bars over
the individual runs; numeric settings on a numeric axis (log scale when positive and spanning >= 100x), the rest
as categories. A run that leaves the axis's setting at its default is drawn at the entry's default (said on the
axis: ``n (default 100 where unset)``); one the setting does not apply to is left off. A legend names a blank
setting by what it stands for (``dataset=simulator``, ``lr=default``) and leaves out one that does not apply to the
series (``n`` beside a shipped dataset).

Blank cells (a setting a run lacks, a metric it did not record) are empty in both CSV files and ``-`` in the
Markdown tables; settings recorded as integers stay integers (nullable ``Int64``) where some runs lack them.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pyrozoo.config import parse_toml_bytes
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.rundir import dead_link, missing_run_files
from pyrozoo.registry import SETTINGS
from pyrozoo.sweep.runner import FAILED_SUFFIX
from pyrozoo.sweep.spec import MANIFEST, REPORT_DIR, canonical_config
from pyrozoo.validation import expand_home

ID_COLUMNS = ("run", "status", "label", "model", "inference", "dataset", "seed")
# settings that never define a group (they do not change what is estimated) or are bookkeeping
NOT_SETTINGS = {"run", "status", "label", "seed", "progress", "error", "convergence"}
METRIC_BOOKKEEPING = {"seed", "inference"}  # repeated from the config in metrics.json
MAX_METRICS_PER_FIGURE = 12


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list):
        out[prefix] = json.dumps(value)  # arrays stay one cell (a grouping key must be hashable)
    else:
        out[prefix] = value


def _config_row(config: dict[str, Any]) -> dict[str, Any]:
    # one spelling, so that runs recorded before and after a change of spelling (unread settings left out, 1 vs
    # 1.0, a relative data path) fall in one group
    row: dict[str, Any] = {}
    _flatten("", canonical_config(config), row)
    return row


def _read_toml(path: Path) -> dict[str, Any]:
    # as `run --config` reads it: a leading byte-order mark skipped (raw tomllib called such a run unreadable)
    return parse_toml_bytes(path.read_bytes())


def _damage(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]


def read_manifest(sweep_root: Path) -> list[dict[str, Any]]:
    """The cells listed in ``SWEEP_ROOT/sweep.json`` (each with a ``key`` and a ``config``); a damaged file is a
    :class:`PyrozooError` naming it."""
    path = sweep_root / MANIFEST
    try:
        data = json.loads(path.read_text())
        cells = data["cells"] if isinstance(data, dict) else None
        if not isinstance(cells, list) or not all(
                isinstance(c, dict) and isinstance(c.get("key"), str) and isinstance(c.get("config", {}), dict)
                for c in cells):
            raise ValueError("expected {\"cells\": [{\"key\": ..., \"config\": {...}}, ...]}")
    except (OSError, ValueError, KeyError) as exc:
        raise PyrozooError(f"runs_dir: {path} is damaged ({_damage(exc)}); running the sweep again rewrites it, or "
                           f"delete it to report the runs without the sweep's cell list") from None
    return cells


def _sweep_roots(root: Path) -> list[Path]:
    """The sweeps whose runs may lie below ``root``: directories with a ``sweep.json`` below it, and the nearest at
    or above it (a report of one label folder of a sweep); deepest first."""
    found = [m.parent for m in root.rglob(MANIFEST)
             if m.is_file() and not any(p.startswith(".") for p in m.relative_to(root).parts)]
    for parent in (root, *root.absolute().parents):
        if (parent / MANIFEST).is_file():
            found.append(root if parent == root else parent)
            break
    unique = {p.absolute(): p for p in found}
    return sorted(unique.values(), key=lambda p: len(p.absolute().parts), reverse=True)


def _owner(path: Path, sweeps: list[Path]) -> tuple[Path | None, str | None]:
    """The sweep that ``path`` (a run directory or failure record) belongs to and its key in that sweep."""
    absolute = path.absolute()
    for sweep in sweeps:
        try:
            key = absolute.relative_to(sweep.absolute())
        except ValueError:
            continue
        if key.parts:
            return sweep, key.as_posix()
    return None, None


def _label(key: str | None) -> Any:
    """A sweep's ``[[models]]`` label is the first component of its cell keys; runs outside a sweep have none."""
    return key.split("/")[0] if key and "/" in key else np.nan


def _run_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).as_posix()
    return rel if rel != "." else path.absolute().name  # RUNS_DIR itself is a run directory


def collect_runs(root: str | Path) -> pd.DataFrame:
    """One row per run below ``root``: ``run`` (path relative to root), ``status`` (ok, failed, pending;
    ``unreadable`` for a damaged config.toml or metrics.json; ``stale`` for a run directory that the sweep's
    ``sweep.json`` no longer lists), the ``label`` (a sweep's ``[[models]]`` label, taken from the sweep's layout
    ``OUT/LABEL/...``; empty for runs that no sweep wrote), the config (options as ``options.KEY``), ``convergence``
    (:func:`_convergence`: a Markov chain's verdict, no metric) and the metrics.

    What a run is grouped by comes from what it recorded (config.toml) and from the sweep it belongs to, never from
    the names of the directories above it, so a report of ``runs``, of ``runs/MODEL`` or of one sweep's folder
    gives the same rows the same labels."""
    root = expand_home("runs_dir", root, what="a directory of runs")
    if not root.is_dir():
        raise PyrozooError(f"runs_dir: {root} is not a directory")
    sweeps = _sweep_roots(root)
    manifests = {sweep: read_manifest(sweep) for sweep in sweeps}  # damaged ones stop the report before any work
    rows: list[dict[str, Any]] = []
    owners: list[tuple[Path | None, str | None]] = []
    metric_names: list[str] = []
    seen: set[str] = set()  # (absolute) run paths
    for marker in sorted(root.rglob("metrics.json")):
        run = marker.parent
        rel = run.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or missing_run_files(run):
            continue  # temporaries of runs in progress, incomplete directories
        owner = _owner(run, sweeps)
        base = {"run": _run_name(root, run), "label": _label(owner[1])}
        reading = "config.toml"  # the damaged file is named: "config.toml: UnicodeDecodeError: ..."
        try:
            config = _read_toml(run / reading)
            reading = marker.name
            metrics = json.loads(marker.read_text())
            if not isinstance(metrics, dict):
                raise ValueError(f"expected a JSON object of metrics, got {type(metrics).__name__}")
        except (OSError, ValueError) as exc:  # listed as damaged, the rest reported
            rows.append({**base, "status": "unreadable", "error": f"{reading}: {_damage(exc)}"})
        else:
            row = {**base, "status": "ok"}
            row.update(_config_row(config))
            verdict = _convergence(metrics, row)
            if verdict is not None:
                row["convergence"] = verdict
            for k, v in metrics.items():
                if k in METRIC_BOOKKEEPING and k in row:
                    continue
                if k == "convergence":  # the figures (read above); a number there is an entry's own metric, written
                    k = "convergence_metric"  # before run_model reserved the name: kept, in a column of its own
                if isinstance(v, (int, float)) or v is None:  # bools too (which estimator ran): _bool_metrics
                    row[k] = np.nan if v is None else v
                    if k not in metric_names:
                        metric_names.append(k)
            rows.append(row)
        owners.append(owner)
        seen.add(str(run.absolute()))
    configs = {(sweep, cell["key"]): cell.get("config", {}) for sweep, cells in manifests.items() for cell in cells}
    for marker in sorted(root.rglob(f"*{FAILED_SUFFIX}")):
        if not marker.is_dir() or not (marker / "error.txt").is_file():
            continue
        run = marker.with_name(marker.name.removesuffix(FAILED_SUFFIX))
        if str(run.absolute()) in seen or any(p.startswith(".") for p in marker.relative_to(root).parts):
            continue
        owner = _owner(run, sweeps)
        try:
            error = ((marker / "error.txt").read_text(errors="replace").strip().splitlines() or ["(no message)"])[0]
        except OSError as exc:
            error = f"(error.txt unreadable: {_damage(exc)})"
        try:
            config = _read_toml(marker / "config.toml") if (marker / "config.toml").is_file() else {}
        except (OSError, ValueError) as exc:  # the sweep's own record of the cell stands in for a damaged copy
            config = configs.get(owner, {})
            error += f" (its config.toml is unreadable: {_damage(exc)})"
        row = {"run": _run_name(root, run), "status": "failed", "label": _label(owner[1]), "error": error[:300]}
        row.update(_config_row(config))
        rows.append(row)
        owners.append(owner)
        seen.add(str(run.absolute()))
    for sweep, cells in manifests.items():
        current = {cell["key"] for cell in cells}
        for row, (owned_by, key) in zip(rows, owners, strict=True):  # runs of an earlier version of the sweep (an
            if owned_by == sweep and key not in current:  # axis or seed since removed): shown, not counted, since
                row["status"] = "stale"  # they may repeat a current cell's config and seed
        for cell in cells:
            path = sweep / cell["key"]
            if str(path.absolute()) in seen:
                continue
            try:
                rel = path.absolute().relative_to(root.absolute())
            except ValueError:
                continue  # a cell of the sweep above root that lies outside it
            row = {"run": rel.as_posix(), "status": "pending", "label": _label(cell["key"])}
            row.update(_config_row(cell.get("config", {})))
            rows.append(row)
            owners.append((sweep, cell["key"]))  # the next sweep's stale check walks rows and owners together
            seen.add(str(path.absolute()))
    if not rows:
        raise PyrozooError(f"runs_dir: no run directories (config.toml + metrics.json + idata.nc + params.pt) "
                           f"below {root}")
    flags = _bool_metrics(rows, metric_names)
    metric_names = [m for m in metric_names if m not in flags]
    for row in rows:  # a number that some runs recorded as a bool: true is 1.0
        row.update({m: float(row[m]) for m in metric_names if isinstance(row.get(m), bool)})
    table = _integer_columns(pd.DataFrame(rows), rows, metric_names + flags)
    for m in flags:  # True / False, blank (<NA>) for a run that did not record it
        table[m] = table[m].astype("boolean")
    first = [c for c in ID_COLUMNS if c in table.columns]
    settings = sorted(c for c in table.columns if c not in first and c not in metric_names and c not in flags
                      and c not in ("error", "convergence"))
    rest = [c for c in ("error", "convergence") if c in table.columns]
    table = table[first + settings + rest + flags + [m for m in metric_names if m in table.columns]]
    table.attrs["metrics"] = [m for m in metric_names if m in table.columns]
    table.attrs["bool_metrics"] = flags
    return table.sort_values("run", kind="stable").reset_index(drop=True)


def _bool_metrics(rows: list[dict[str, Any]], metric_names: list[str]) -> list[str]:
    """The metrics that every run recording them recorded as true/false (plce's
    ``treatment_model_heteroskedastic``: which estimator ran). They say what a run was, not how well it did: the
    summary groups by them (:func:`group_columns`), so that runs of two estimators are never averaged together.
    A rate meant to be averaged is a number (regime-scm's ``observational_identified`` is 0.0 or 1.0); a metric
    recorded as a bool by some runs and as a number by others is a number (true is 1)."""
    flags = []
    for m in metric_names:
        values = [row[m] for row in rows if m in row and not (isinstance(row[m], float) and math.isnan(row[m]))]
        if values and all(isinstance(v, bool) for v in values):
            flags.append(m)
    return flags


NOT_CONVERGED = "not converged"  # how a run's convergence cell starts when run/diagnose warned about its chains
UNKNOWN = "unknown"
NOT_JUDGED = "not judged"  # convergence_note's word for nothing to judge: too few draws, or nothing moves
FLAG_COLUMNS = ("not_converged", "convergence_unknown")  # the summary's counts of flagged runs, beside n


def _convergence(metrics: dict[str, Any], row: dict[str, Any]) -> str | None:
    """A run's ``convergence`` cell: its Markov chain's figures in ``metrics.json`` in words
    (:func:`~pyrozoo.evaluation.diagnostics.convergence_note`: ``ok``, ``not converged: ...``, ``not judged ...``),
    :data:`UNKNOWN` for a Markov-chain run that recorded none (written before they were recorded), ``None`` (blank)
    for independent draws (SVI, EM, exact ...), where r_hat and ESS measure nothing."""
    from pyrozoo.evaluation.diagnostics import CONVERGENCE_KEY, convergence_note, is_markov_engine

    figures = metrics.get(CONVERGENCE_KEY)
    if isinstance(figures, dict):
        return convergence_note(figures)
    engine = metrics.get("inference", row.get("inference"))
    return UNKNOWN if isinstance(engine, str) and is_markov_engine(engine) else None


def convergence_flags(table: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per row of :func:`collect_runs`' table, whether its ``convergence`` cell says not converged, and whether it
    says not judged (:data:`UNKNOWN`: a Markov-chain run without figures; or a chain too short); both false for a
    blank cell (independent draws, failed or pending runs) or a table without the column."""
    if "convergence" not in table.columns:
        none = pd.Series(False, index=table.index)
        return none, none
    verdict = table["convergence"].astype("string")
    not_converged = verdict.str.startswith(NOT_CONVERGED, na=False).astype(bool)
    unjudged = (verdict.eq(UNKNOWN) | verdict.str.startswith(NOT_JUDGED)).fillna(False).astype(bool)
    return not_converged, unjudged


def _integer_columns(table: pd.DataFrame, rows: list[dict[str, Any]], metrics: list[str]) -> pd.DataFrame:
    """Settings recorded as integers (``num_chains``, ``options.n``) stay integers where some runs lack them (pandas
    would make them floats, 2.0, to hold NaN): nullable ``Int64`` columns, blank (``<NA>``) where a run has none."""
    for col in table.columns:
        if col in metrics or not table[col].isna().any():
            continue
        values = [row[col] for row in rows if col in row and not (isinstance(row[col], float) and math.isnan(row[col]))]
        if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in values):
            table[col] = table[col].astype("Int64")
    return table


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The numeric metrics of :func:`collect_runs`' table (what the summary averages)."""
    return list(table.attrs.get("metrics", []))


def bool_metric_columns(table: pd.DataFrame) -> list[str]:
    """The metrics of :func:`collect_runs`' table recorded as true/false (:func:`_bool_metrics`): what the summary
    groups by unless ``--by`` leaves them out or ``--metric`` names them (then the share of runs with true)."""
    return list(table.attrs.get("bool_metrics", []))


def _unread_settings(table: pd.DataFrame) -> list[tuple[str, ...]]:
    """Per run (row), the settings left out because its inference does not read them (a blank lr of an inference
    that reads lr is the entry's default, a value of its own); looked up once per model and inference."""
    from pyrozoo import registry

    known: dict[tuple[Any, Any], tuple[str, ...]] = {}
    out = []
    for model, inference in zip(table.get("model", [None] * len(table)),
                                table.get("inference", [None] * len(table)), strict=True):
        if (model, inference) not in known:
            try:
                entry = registry.get(model)
                known[model, inference] = entry.unread_settings(
                    inference if isinstance(inference, str) else entry.inferences[0])
            except (KeyError, TypeError, PyrozooError):
                known[model, inference] = ()
        out.append(known[model, inference])
    return out


def varying_settings(table: pd.DataFrame) -> list[str]:
    """Setting columns whose value differs between runs (the seed and bookkeeping excluded; a run setting left out
    because the run's inference does not read it is no value of its own)."""
    metrics = set(metric_columns(table)) | set(bool_metric_columns(table))
    unread = _unread_settings(table)
    out = []
    for col in table.columns:
        if col in metrics or col in NOT_SETTINGS:
            continue
        values = table[col]
        if col in SETTINGS:  # blank where the run's inference does not read it: not a value of its own
            values = values[[col not in u for u in unread]]
        if values.astype(str).nunique(dropna=False) > 1:
            out.append(col)
    return out


def _unique(name: str, values: Sequence[str] | None) -> list[str]:
    """``values`` once each, in order (``--metric m --metric m`` is one metric), checked to be names."""
    values = [] if values is None else [values] if isinstance(values, str) else list(values)
    for v in values:
        if not isinstance(v, str) or not v:
            raise PyrozooError(f"{name}: expected column names, got {v!r}")
    return list(dict.fromkeys(values))


def group_columns(table: pd.DataFrame, by: Sequence[str] | None = None) -> list[str]:
    """``by`` if given (checked; a column named twice counts once), else model and label plus every varying
    setting (the label only where some run has one: runs that no sweep wrote have none), then the bool metrics
    that some run recorded (:func:`bool_metric_columns`: which estimator ran; shown even where all runs agree, and a
    run that did not record one, of an older pyrozoo, is a group of its own)."""
    by = _unique("by", by)
    if by:
        unknown = [c for c in by if c not in table.columns]
        if unknown:
            raise PyrozooError(f"by: unknown column(s) {', '.join(unknown)}; columns: {', '.join(table.columns)}")
        if "n" in by:
            raise PyrozooError("by: 'n' is the summary's group-size column; group by other columns")
        return by
    cols = ["model", "label"] + [c for c in varying_settings(table) if c not in ("model", "label")]
    flags = [c for c in bool_metric_columns(table) if c in table.columns and table[c].notna().any()]
    return [c for c in cols if c in table.columns and (c != "label" or table[c].notna().any())] + flags


def grouped_summary(table: pd.DataFrame, by: Sequence[str] | None = None,
                    metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean, standard error (``sd / sqrt(count)``, ``ddof=1``) and size ``n`` per group over the completed runs; a
    metric that some runs of a group did not record also gets ``METRIC_n``, the count its mean and SE are over.
    Beside ``n``, where some run is a Markov chain: ``not_converged``, how many of the group's runs did not converge
    (kept in the means), and ``convergence_unknown`` (only if any), how many were not judged
    (:func:`convergence_flags`); blank for a group of independent draws. A bool metric is grouped by
    (:func:`group_columns`); one that ``by`` leaves out, or that ``metrics`` names, is summarized as the share of
    the group's runs that recorded true (true is 1, false 0)."""
    ok = table[table["status"] == "ok"]
    if ok.empty:
        raise PyrozooError("report: no completed runs to summarize")
    metrics = _unique("metric", metrics)
    keys = group_columns(ok, by)  # settings that vary among the completed runs, and the bool metrics
    if not _unique("by", by):  # a bool metric named by --metric is summarized, not grouped by
        keys = [k for k in keys if k not in metrics or k not in bool_metric_columns(table)]
    both = [m for m in metrics if m in keys]
    if both:
        raise PyrozooError(f"metric: {', '.join(both)} is also a --by column; a column is either summarized or "
                           f"grouped by")
    flags = bool_metric_columns(table)
    metrics = metrics or [m for m in metric_columns(table) + flags if m not in keys]
    # a blank key (a setting some runs lack) is a group of its own (dropna=False), left blank in the table
    frame = ok[keys + metrics]
    summarized_flags = [m for m in metrics if m in flags]
    if summarized_flags:  # a share of true: the flags as 1.0 / 0.0 (NaN where a run did not record one)
        frame = frame.assign(**{m: frame[m].astype("Float64").astype(float) for m in summarized_flags})
    flags = {}
    if "convergence" in ok.columns:  # runs whose chains run/diagnose warned about (kept in the means), and runs of a
        not_converged, unjudged = convergence_flags(ok)  # Markov engine not judged (older runs, too few draws)
        flags["not_converged"] = not_converged
        if unjudged.any():
            flags["convergence_unknown"] = unjudged
        frame = frame.assign(**{f"_flag.{name}": flag.to_numpy(dtype=int) for name, flag in flags.items()},
                             **{"_flag.markov": ok["convergence"].notna().to_numpy(dtype=int)})
    grouped = frame.groupby(keys, sort=True, dropna=False)
    size = grouped.size()
    columns = {"n": size}
    if flags:  # counts beside n, how many of the group's runs are flagged; blank for a group with no Markov chain
        judged = grouped["_flag.markov"].sum() > 0
        for name in flags:
            columns[name] = grouped[f"_flag.{name}"].sum().astype("Int64").where(judged, pd.NA)
    for m in metrics:
        values = grouped[m]
        count = values.count()
        columns[f"{m}_mean"] = values.mean()
        columns[f"{m}_se"] = values.std(ddof=1) / np.sqrt(count)
        if ((count > 0) & (count < size)).any():  # some runs of a group lack it: n is not what mean and SE are over
            columns[f"{m}_n"] = count
    # built at once: adding ~100 metric columns one by one made pandas warn about a fragmented frame
    return pd.concat(columns, axis=1).reset_index()


MISSING = "-"  # a blank cell (a setting a run does not have, a metric a run did not record) in the printed tables


def to_markdown(table: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table (written here: pandas' ``to_markdown`` needs ``tabulate``, which is not
    a dependency); blank cells (NaN, ``<NA>``, None) read :data:`MISSING`."""

    def fmt(v: Any) -> str:
        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
            return MISSING
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(str(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


# ---- plots --------------------------------------------------------------------------------------------------------


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _value_text(v: Any) -> str:
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else f"{v:g}"
    return str(v)


def _sources(runs: pd.DataFrame) -> pd.Series:
    """Where each run's data came from, as :func:`pyrozoo.registry.data_source` names it: ``file`` (a ``--data``
    file), its ``dataset``, else ``simulator`` (the model's simulator)."""
    from_file = runs["data"].notna() if "data" in runs.columns else pd.Series(False, index=runs.index)
    source = pd.Series(np.where(from_file, "file", "simulator"), index=runs.index, dtype=object)
    if "dataset" not in runs.columns:
        return source
    return source.where(runs["dataset"].isna() | from_file, runs["dataset"].astype(object))


def _source_words(runs: pd.DataFrame) -> pd.Series:
    """Each run's data source in the words of the dataset axis (``simulator``, ``data file``, a dataset's name)."""
    return _sources(runs).replace({"file": "data file"})


def _applies(column: str, model: Any, inference: Any, source: str) -> bool:
    """Whether setting ``column`` means anything for a run of ``model`` by ``inference`` on data ``source``
    (``simulator``, ``file`` or a dataset's name): a simulator option does not for a shipped dataset, an engine
    setting does not for an inference that does not read it, ``data`` only for a data file. Unknown models: yes."""
    from pyrozoo import registry

    if column == "data":
        return source == "file"
    try:
        entry = registry.get(model)
    except (KeyError, TypeError, PyrozooError):
        return True
    inference = inference if isinstance(inference, str) else entry.inferences[0]
    if column in SETTINGS:
        return column not in entry.unread_settings(inference)
    if column.startswith("options."):
        key = column.removeprefix("options.")
        return (source in entry.data_options.get(key, (source,))
                and inference in entry.inference_options.get(key, (inference,)))
    return True


def _blank_text(column: str, runs: pd.DataFrame) -> str | None:
    """What a blank ``column`` stands for in a plot series of ``runs``: on ``dataset`` where the data came from
    (``simulator``, as on the dataset axis, or ``data file``); ``None`` (nothing to say) for a setting that applies
    to none of the runs (``n``, a simulator option, beside a shipped dataset; ``lr`` for gibbs); else ``default``
    (the entry's default of a setting left out)."""
    if column == "dataset":
        return "/".join(sorted(_source_words(runs).unique()))
    sources = _sources(runs)
    models = runs["model"] if "model" in runs.columns else pd.Series(None, index=runs.index, dtype=object)
    inferences = runs["inference"] if "inference" in runs.columns else pd.Series(None, index=runs.index, dtype=object)
    kinds = set(zip(models, inferences, sources, strict=True))  # each looked up once (an entry is built per lookup)
    if not any(_applies(column, m, i, s) for m, i, s in kinds):
        return None
    return "default"


def _series_label(keys: Sequence[str], values: Sequence[Any], runs: pd.DataFrame) -> str:
    """The legend entry of the series of ``runs`` that share ``values`` of the settings ``keys``:
    ``inference=gibbs, n=50``. A blank value says what it stands for (see :func:`_blank_text`): ``dataset=simulator``,
    ``lr=default``; a setting that does not apply to these runs is left out (Boston runs have no ``n``)."""
    parts, absent = [], []
    for k, v in zip(keys, values, strict=True):
        name = k.removeprefix("options.")
        text = _blank_text(k, runs) if pd.isna(v) else _value_text(v)
        if text is None:
            absent.append(f"{name}=n/a")
        else:
            parts.append(f"{name}={text}")
    return ", ".join(parts or absent) or "all"


def _series(runs: pd.DataFrame, keys: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """The series of a plot of ``runs``: one per combination of the ``keys`` settings, with its legend label."""
    if not keys:
        return [("all", runs)]
    return [(_series_label(keys, key if isinstance(key, tuple) else (key,), g), g)
            for key, g in runs.groupby(list(keys), sort=True, dropna=False)]


def _figure(n: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return plt, fig, list(axes.flat[:n])


def _plot_vs_seed(runs: pd.DataFrame, metrics: list[str], settings: list[str], title: str, path: Path) -> Path:
    plt, fig, axes = _figure(len(metrics))
    groups = _series(runs, settings)
    for ax, m in zip(axes, metrics, strict=True):
        for label, g in groups:
            g = g.sort_values("seed")
            ax.plot(g["seed"].to_numpy(dtype=float), g[m].to_numpy(dtype=float), marker="o", ms=3, lw=1,
                    label=label)
        ax.set_xlabel("seed")
        ax.set_ylabel(m)
    if 1 < len(groups) <= 12:
        axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


DEFAULTED = "_default"  # the column _on_axis adds: whether the run's axis value is its entry's default, filled in


def _default_value(column: str, model: Any) -> Any:
    """The value a run of ``model`` has for ``column`` when its config leaves it out: the entry's option default
    (``options.KEY``) or :class:`~pyrozoo.config.RunConfig`'s default of an engine setting, in the spelling of
    the report's table (a list as JSON); ``None`` where the registry knows none (``lr``: each fit has its own)."""
    from dataclasses import fields

    from pyrozoo import registry
    from pyrozoo.config import RunConfig

    try:
        entry = registry.get(model)
    except (KeyError, TypeError, PyrozooError):
        return None
    if column.startswith("options."):
        value = entry.options.get(column.removeprefix("options."))
    elif column in SETTINGS:
        value = {f.name: f.default for f in fields(RunConfig)}.get(column)
    else:
        return None
    return json.dumps(value) if isinstance(value, list) else value


def _on_axis(runs: pd.DataFrame, axis: str) -> pd.DataFrame:
    """The runs that have a value on ``axis``, with a column :data:`DEFAULTED` that is true for those whose value
    is filled in. A run whose config leaves the setting out although it applies (an option or setting left at its
    default) is at the entry's default (:func:`_default_value`); one the setting does not apply to (another data
    source, a setting its inference does not read), or whose default the registry does not know (``lr``), is not
    on the axis. On the ``dataset`` axis a blank is the model's simulator (or a ``--data`` file), labelled as such."""
    if axis == "dataset":
        return runs.assign(dataset=_source_words(runs), **{DEFAULTED: False})
    blank = runs[axis].isna()
    filled = runs[axis].astype(object).where(~blank, None)
    unknown = 0
    if blank.any():
        models = runs["model"] if "model" in runs.columns else pd.Series(None, index=runs.index, dtype=object)
        inferences = (runs["inference"] if "inference" in runs.columns
                      else pd.Series(None, index=runs.index, dtype=object))
        sources = _sources(runs)
        known: dict[tuple[Any, Any, Any], tuple[bool, Any]] = {}  # each (model, inference, source) looked up once
        for i in runs.index[blank]:
            kind = (models[i], inferences[i], sources[i])
            if kind not in known:
                applies = _applies(axis, *kind)
                known[kind] = applies, _default_value(axis, kind[0]) if applies else None
            applies, filled[i] = known[kind]
            unknown += applies and filled[i] is None
    on = filled.notna()
    values = filled[on]
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
           for v in values):
        values = pd.to_numeric(values)  # numbers stay on a numeric axis
    out = runs[on].assign(**{axis: values, DEFAULTED: blank[on]})
    out.attrs["unknown_default"] = unknown  # runs at a default the registry does not know (left off the axis)
    return out


def _axis_label(on_axis: pd.DataFrame, axis: str) -> str:
    """The x label of the plot of ``on_axis`` (what :func:`_on_axis` gave): the setting's name, the default that
    the runs leaving it unset are shown at (``n (default 100 where unset)``) and how many runs at a default the
    registry does not know were left off (``lr (4 runs at their model's default lr not shown)``)."""
    name = axis.removeprefix("options.")
    notes = []
    defaults = on_axis.loc[on_axis[DEFAULTED], axis].unique() if DEFAULTED in on_axis.columns else []
    if len(defaults):
        notes.append(f"default {'/'.join(sorted(_value_text(v) for v in defaults))} where unset")
    unknown = on_axis.attrs.get("unknown_default", 0)
    if unknown:
        notes.append(f"{unknown} run{'s' if unknown > 1 else ''} at their model's default {name} not shown")
    return f"{name} ({'; '.join(notes)})" if notes else name


def _plot_vs_setting(runs: pd.DataFrame, metrics: list[str], axis: str, others: list[str], title: str,
                     path: Path) -> Path:
    runs = _on_axis(runs, axis)
    xlabel = _axis_label(runs, axis)
    at_default = {str(v) for v in runs.loc[runs[DEFAULTED], axis].unique()}
    plt, fig, axes = _figure(len(metrics))
    x_all = runs[axis]
    numeric = _is_numeric(x_all)
    if numeric:
        x_of = {v: float(v) for v in x_all.unique()}
    else:
        cats = sorted(x_all.astype(str).unique())
        x_of = {v: float(cats.index(str(v))) for v in x_all.unique()}
    groups = _series(runs, others)
    width = 0.25 if not numeric and len(groups) > 1 else 0.0
    for ax, m in zip(axes, metrics, strict=True):
        for j, (label, g) in enumerate(groups):
            shift = (j - (len(groups) - 1) / 2) * width / max(1, len(groups) - 1) if width else 0.0
            xs = g[axis].map(x_of).to_numpy(dtype=float) + shift
            ax.scatter(xs, g[m], s=8, alpha=0.35, color=f"C{j % 10}")
            stats = g.groupby(axis, sort=True)[m].agg(["mean", "std", "count"])
            xm = np.array([x_of[v] for v in stats.index], dtype=float) + shift
            se = (stats["std"] / np.sqrt(stats["count"])).fillna(0.0)
            order = np.argsort(xm)
            ax.errorbar(xm[order], stats["mean"].to_numpy()[order], yerr=se.to_numpy()[order], marker="o", ms=4,
                        capsize=3, lw=1, color=f"C{j % 10}", label=label)
        if numeric:
            vals = np.array(sorted(x_of.values()))
            if vals.min() > 0 and vals.max() / vals.min() >= 100:
                ax.set_xscale("log")
        else:
            ticks = [f"{c} (default)" if c in at_default else c for c in cats]
            ax.set_xticks(range(len(cats)), ticks, rotation=30 if max(map(len, ticks)) > 6 else 0, fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(m)
    if 1 < len(groups) <= 12:
        axes[0].legend(fontsize=7)
    fig.suptitle(title + "  (mean +- 1 SE over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)


def plot_report(table: pd.DataFrame, out: Path, metrics: Sequence[str] | None = None) -> list[Path]:
    """Per model: ``plots/MODEL/metrics_vs_seed.png`` and ``plots/MODEL/metrics_vs_SETTING.png`` for every setting
    that varies within the model. Metrics constant within a model are left out; at most
    :data:`MAX_METRICS_PER_FIGURE` per figure unless ``metrics`` names them."""
    ok = table[table["status"] == "ok"]
    paths: list[Path] = []
    for model, runs in ok.groupby("model", sort=True):
        runs = runs.dropna(axis=1, how="all")
        chosen = [m for m in (metrics or metric_columns(table)) if m in runs.columns]
        chosen = [m for m in chosen if runs[m].nunique() > 1]
        if not metrics:
            chosen = chosen[:MAX_METRICS_PER_FIGURE]
        if not chosen:
            continue
        sub = runs.copy()
        sub.attrs["metrics"] = metric_columns(table)  # every metric, chosen or not, is no setting
        sub.attrs["bool_metrics"] = bool_metric_columns(table)  # nor a bool one (no axis of its own: the tables')
        settings = [c for c in varying_settings(sub) if c != "model"]
        folder = out / "plots" / _safe(str(model))
        folder.mkdir(parents=True, exist_ok=True)
        if sub["seed"].nunique() > 1:
            paths.append(_plot_vs_seed(sub, chosen, settings, f"{model}: metrics vs seed",
                                       folder / "metrics_vs_seed.png"))
        for axis in settings:
            others = [c for c in settings if c != axis]
            name = _safe(axis.removeprefix("options."))
            paths.append(_plot_vs_setting(sub, chosen, axis, others, f"{model}: metrics vs {axis}",
                                          folder / f"metrics_vs_{name}.png"))
    return paths


@dataclass
class Report:
    """The tables and the files written."""

    runs: pd.DataFrame
    summary: pd.DataFrame
    files: list[Path] = field(default_factory=list)


# what a report writes into its directory, and nothing else: the files of an earlier report that the new one does
# not write again (summary.* once no run is complete, a plot whose axis is gone) are removed, other files never
REPORT_INDEX = ".pyrozoo-report.json"  # the files the last report wrote there
_TABLES = ("runs.csv", "runs.md", "summary.csv", "summary.md")


def _is_report_file(rel: str) -> bool:
    parts = rel.split("/")
    if len(parts) == 1:
        return parts[0] in _TABLES
    return (len(parts) == 3 and parts[0] == "plots" and parts[1] not in ("", ".", "..")
            and parts[2].startswith("metrics_vs_") and parts[2].endswith(".png"))


def _earlier_report_files(out: Path) -> set[str]:
    """The files an earlier report wrote into ``out``: from its index, or (a report written before there was an
    index) the report's own file names, if ``runs.csv`` and ``runs.md`` say a report was written there."""
    try:
        listed = json.loads((out / REPORT_INDEX).read_text())
        names = listed.get("files", []) if isinstance(listed, dict) else []
        return {n for n in names if isinstance(n, str) and _is_report_file(n)}
    except (OSError, ValueError):
        pass
    if not ((out / "runs.csv").is_file() and (out / "runs.md").is_file()):
        return set()
    found = {name for name in _TABLES if (out / name).is_file()}
    found |= {p.relative_to(out).as_posix() for p in out.glob("plots/*/metrics_vs_*.png") if p.is_file()}
    return found


def _replace_report(out: Path, tmp: Path, written: list[str]) -> None:
    """Move the new report's files from ``tmp`` into ``out`` and remove what only the earlier report had."""
    earlier = _earlier_report_files(out)
    for rel in written:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / rel, out / rel)
    for rel in sorted(earlier - set(written)):
        (out / rel).unlink(missing_ok=True)
        if "/" in rel:  # plots/MODEL/NAME.png: its folders go too once empty (a folder holding anything else stays)
            for folder in ((out / rel).parent, out / "plots"):
                try:
                    folder.rmdir()
                except OSError:
                    break
    index = out / f".{REPORT_INDEX}.tmp-{os.getpid()}"
    index.write_text(json.dumps({"files": written}, indent=1))
    os.replace(index, out / REPORT_INDEX)


def _run_dir_holding(path: Path) -> Path | None:
    """The complete run directory that ``path`` is or lies inside (the nearest, by the path as written and then
    with symbolic links followed), else ``None``. Parts of ``path`` that do not exist yet are skipped."""
    for start in dict.fromkeys((Path(os.path.abspath(path)), path.resolve())):
        for folder in (start, *start.parents):
            if folder.is_dir() and not missing_run_files(folder):
                return folder
    return None


def build_report(root: str | Path, *, out: str | Path | None = None, by: Sequence[str] | None = None,
                 metrics: Sequence[str] | None = None, plots: bool = True) -> Report:
    """Collect the runs below ``root`` and write ``runs.csv``/``runs.md``, ``summary.csv``/``summary.md`` and the
    plots into ``out`` (default ``ROOT/report``), which must not be or lie inside a run directory.

    Everything is checked and computed first and the files are written into a hidden temporary folder inside
    ``out``, then moved into place: a failing report changes nothing, and a new report replaces the files of the
    previous one as a whole (files that it did not write itself are left alone). A leading ``~`` in ``root`` or
    ``out`` is the home directory (``out`` was made as a directory named ``~`` while pandas wrote under home)."""
    root = expand_home("runs_dir", root, what="a directory of runs")
    table = collect_runs(root)
    metrics = _unique("metric", metrics)
    by = _unique("by", by)
    if metrics:
        known = metric_columns(table) + bool_metric_columns(table)
        unknown = [m for m in metrics if m not in known]
        if unknown:
            raise PyrozooError(f"metric: unknown metric(s) {', '.join(unknown)}; known: "
                               f"{', '.join(known) or '(none)'}")
    if out is None:
        if not missing_run_files(root):
            holder = Path(root).absolute().parent
            raise PyrozooError(f"out: {root} is itself a run directory and the report would be written inside it; "
                               f"pass --out DIR, or report the directory that holds it ({holder})")
        out = Path(root) / REPORT_DIR
    out = expand_home("out", out, what="a directory path")
    try:
        out.resolve()
    except (OSError, RuntimeError):  # a loop of symbolic links (RuntimeError up to Python 3.12, OSError ELOOP after)
        raise PyrozooError(f"out: cannot create {out} ({os.strerror(errno.ELOOP)})") from None
    full = Path(os.path.abspath(out))
    dead = next((p for p in (full, *full.parents) if dead_link(p)), None)
    if dead is not None:  # mkdir said only "File exists"
        raise PyrozooError(f"out: {dead} is a symbolic link that leads nowhere (to a missing target), so {out} "
                           f"cannot be created; choose another --out or mend the link")
    run = _run_dir_holding(out)  # a given --out, or ROOT/report where ROOT lies inside a run directory
    if run is not None:
        inside = run not in (Path(os.path.abspath(out)), out.resolve())
        where = f"lies inside the run directory {run}" if inside else "is a run directory"
        raise PyrozooError(f"out: {out} {where} and the report would be written inside it; pass another --out")
    if out.exists() and not out.is_dir():
        raise PyrozooError(f"out: {out} is a file; the report needs a directory (choose another --out)")
    summary = grouped_summary(table, by=by, metrics=metrics) if (table["status"] == "ok").any() else pd.DataFrame()
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".report-", suffix=".tmp", dir=out))
    except OSError as exc:
        raise PyrozooError(f"out: cannot create {out} ({exc.strerror or exc})") from None
    try:
        written = ["runs.csv", "runs.md"]
        table.to_csv(tmp / "runs.csv", index=False)
        (tmp / "runs.md").write_text(to_markdown(table))
        if not summary.empty:
            summary.to_csv(tmp / "summary.csv", index=False)
            (tmp / "summary.md").write_text(to_markdown(summary))
            written += ["summary.csv", "summary.md"]
            if plots:
                written += [p.relative_to(tmp).as_posix() for p in plot_report(table, tmp, metrics=metrics)]
        _replace_report(out, tmp, written)
    except OSError as exc:
        raise PyrozooError(f"out: cannot write the report into {out} ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Report(table, summary, [out / rel for rel in written])
