"""Discrete-regime structural causal model: a known DAG, unknown single-target soft interventions.

Data x in R^N come shuffled from K = N + 1 regimes: z = 0 is observational, z = k (k = 1..N) intervenes on
mechanism k only. Each mechanism has an observational and an intervened version,

    p(x | z) = prod_i Normal(x_i; mu_i^{[z == i]}(pa_i), sigma_i^{[z == i]}),    p(z) = Categorical(pi),

with mu_i^{0}, mu_i^{1} linear maps of the parents (``mechanism="linear"``) or an MLP of (parents, flag) as in the
seed report (``mechanism="mlp"``: 3 hidden layers of ``hidden`` ReLU units). Regime z is summed out exactly:

    log p(x) = logsumexp_k [ log pi_k + sum_i log N(x_i; mu_i^0, s_i^0) + 1[k>0] (log N(x_k; mu_k^1, s_k^1)
                                                                                 - log N(x_k; mu_k^0, s_k^0)) ]

which costs O(n N) per evaluation. Mechanisms and pi are point estimates (``pyro.param``): an ML fit by EM
(closed-form weighted least squares for linear mechanisms) started from a robust trimmed regression and chosen
among restarts by log-likelihood, then refined with ``TraceEnum_ELBO`` (exact enumeration: the ELBO *is* the
marginal log-likelihood). Because the regimes are structured (z = k changes only mechanism k), the fitted labels
name the observational regime and each regime's target directly: no permutation matching is needed.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.distributions import constraints
from sklearn.metrics import adjusted_rand_score

from pyrozoo.config import RunConfig
from pyrozoo.data.dataset import Dataset
from pyrozoo.data.precision import coarse_columns
from pyrozoo.data.regression_file import check_columns_exist, refuse_constant
from pyrozoo.data.shipped import numeric_column, read_table
from pyrozoo.errors import PyrozooError
from pyrozoo.guides.regime_scm import (
    ENC_LAYERS,
    cyclical_kl_weight,
    distill_encoder,
    encoder_logits,
    exact_enumeration_guide,
    make_amortized_guide,
    make_gumbel_guide,
)
from pyrozoo.inference.assemble import assemble_result, without_log_likelihood
from pyrozoo.inference.device import keeps_caller_state, resolve_device, set_seed
from pyrozoo.inference.em import run_em
from pyrozoo.inference.result import Result
from pyrozoo.inference.svi import run_svi
from pyrozoo.registry import ZooModel, get, register
from pyrozoo.validation import (
    AMOUNTS_HINT,
    as_tensor,
    check_bool,
    check_choice,
    check_dataset,
    check_float_dtype,
    check_int,
    check_no_datetimes,
    check_numeric_columns,
    check_positive,
    check_probability,
    check_real,
    check_seed,
    parse_names,
    plate_size,
    plate_subsample,
)

MECHANISMS = ("linear", "mlp")
# the model options a dataset is built with (make_regime_dataset's); the fit reads them from the dataset
MODEL_DEFAULTS = {"mechanism": "linear", "hidden": 32, "learn_weights": True}
LINEAR_PARAMS = ("loc_obs", "W_obs", "loc_int", "W_int")
MLP_LAYERS = ("W1", "b1", "W2", "b2", "W3", "b3", "w_out", "b_out")
# site names the model and guides already use: a column (= sample site) with one of these names would clash in
# the trace ("Multiple sample sites named ..." / "... is already in the trace as a param") only once fitting starts
# what make_regime_dataset puts in a dataset's inputs and the fit and do()-sampling read
DATASET_INPUTS = ("parents", "order", "names", "n", "mechanism", "hidden", "learn_weights")
RESERVED = {"z", "obs_id", "scale_obs", "scale_int", "regime_weights", *LINEAR_PARAMS, *MLP_LAYERS, *ENC_LAYERS}


# --------------------------------------------------------------------------------------------------------------
# Input checks and the dataset
# --------------------------------------------------------------------------------------------------------------


def _names(values: Any) -> str:
    # repr: column 0 (an int) and node "0" (text) are different names that print alike
    return ", ".join(map(repr, sorted(values, key=str)))


def _check_graph_names(what: str, names: Sequence[Any], columns: Sequence[Any]) -> None:
    """Raise unless the graph's node names (``what``: "nodes" or "labels") are exactly the data columns."""
    nodes, cols = set(names), set(columns)
    if nodes != cols:
        missing, extra = cols - nodes, nodes - cols
        raise PyrozooError(
            f"graph: {what} do not match the data columns"
            + (f"; columns missing from the graph: {_names(missing)}" if missing else "")
            + (f"; graph {what} not in the data: {_names(extra)}" if extra else "")
        )


def _align_labelled_adjacency(graph: pd.DataFrame, columns: Sequence[Any]) -> pd.DataFrame:
    """A DataFrame adjacency (``nx.to_pandas_adjacency``) reordered so that its rows and columns follow the data's
    columns by label: read by position, one listed in another order silently reversed edges. Its index and columns
    must be the same set of names, each once, and that set must be the data's columns."""
    index, cols = list(graph.index), list(graph.columns)
    for axis, labels in (("index", index), ("columns", cols)):
        if len(set(labels)) != len(labels):
            repeated = {c for c in labels if labels.count(c) > 1}
            raise PyrozooError(f"graph: expected each variable once in the adjacency DataFrame's {axis}, got "
                               f"{_names(repeated)} more than once")
    if set(index) != set(cols):
        only_index, only_cols = set(index) - set(cols), set(cols) - set(index)
        raise PyrozooError(
            "graph: expected an adjacency DataFrame whose index and columns name the same variables (a[j, i] = 1 "
            "for j -> i)"
            + (f"; in the index only: {_names(only_index)}" if only_index else "")
            + (f"; in the columns only: {_names(only_cols)}" if only_cols else "")
            + "; pass .to_numpy() to read it by position instead"
        )
    _check_graph_names("labels", index, columns)
    return graph.reindex(index=list(columns), columns=list(columns))


def _graph_to_parents(graph: Any, columns: Sequence[Any]) -> torch.Tensor:
    """Validate ``graph`` (``networkx.DiGraph`` over the columns, or an N x N 0/1 adjacency with a[j, i] = 1 for
    j -> i: a ``pandas.DataFrame`` one is read by its labels, an array by position) and return the bool parent mask
    ``parents[j, i]``. Raises on node mismatch, a self-loop or a cycle."""
    n_vars = len(columns)
    if isinstance(graph, nx.Graph):
        if not graph.is_directed():
            raise PyrozooError("graph: expected a directed graph (networkx.DiGraph), got an undirected Graph")
        _check_graph_names("nodes", list(graph.nodes), columns)
        adj = nx.to_numpy_array(graph, nodelist=list(columns), weight=None) != 0
        g = graph
    else:
        if graph is None:  # np.asarray(None, dtype=float) is a 0-d NaN: it was "got shape ()"
            raise PyrozooError(f"graph: expected a networkx.DiGraph or a {n_vars} x {n_vars} adjacency matrix (one "
                               "row per data column), got None")
        if isinstance(graph, pd.DataFrame):
            graph = _align_labelled_adjacency(graph, columns)
        try:
            adj = np.asarray(graph.detach().cpu() if isinstance(graph, torch.Tensor) else graph, dtype=float)
        except (TypeError, ValueError):
            raise PyrozooError(
                f"graph: expected a networkx.DiGraph or an adjacency matrix, got {type(graph).__name__}"
            ) from None
        if adj.shape != (n_vars, n_vars):
            got = f"the scalar {graph!r}" if adj.ndim == 0 else f"shape {adj.shape}"
            raise PyrozooError(f"graph: expected a {n_vars} x {n_vars} adjacency matrix (one row per data column), "
                               f"got {got}")
        bad = np.argwhere(~np.isin(adj, (0.0, 1.0)))
        if bad.size:
            j, i = (int(k) for k in bad[0])
            more = f" ({len(bad)} such entries)" if len(bad) > 1 else ""
            raise PyrozooError(f"graph: expected a 0/1 adjacency matrix (a[j, i] = 1 for the edge j -> i), got "
                               f"{adj[j, i]:g} at row {columns[j]!r}, column {columns[i]!r} (the edge "
                               f"{columns[j]} -> {columns[i]}){more}")
        adj = adj != 0
        g = nx.relabel_nodes(nx.from_numpy_array(adj.astype(int), create_using=nx.DiGraph), dict(enumerate(columns)))
    if np.diag(adj).any():
        loops = sorted((columns[i] for i in np.flatnonzero(np.diag(adj))), key=str)
        raise PyrozooError(f"graph: expected a DAG, found a self-loop at {_names(loops)} "
                           f"({', '.join(f'{c} -> {c}' for c in loops)})")
    if not nx.is_directed_acyclic_graph(g):
        cycle = nx.find_cycle(g)
        path = " -> ".join(str(u) for u, _ in cycle) + f" -> {cycle[0][0]}"
        raise PyrozooError(f"graph: expected a DAG, found the cycle {path}")
    return torch.as_tensor(adj, dtype=torch.bool)


def _check_rows(x: np.ndarray) -> None:
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise PyrozooError(
            f"x: expected finite values, {rows.size} row(s) hold NaN or inf (first: row {int(rows[0])}); "
            "drop or impute them before fitting"
        )


def _check_model_options(mechanism: Any, hidden: Any, learn_weights: Any) -> int:
    """Raise unless the model options of :data:`MODEL_DEFAULTS` are valid; return ``hidden`` as an int."""
    check_choice("mechanism", mechanism, MECHANISMS)
    hidden = check_int("hidden", hidden, minimum=1)
    check_bool("learn_weights", learn_weights)
    return hidden


def make_regime_dataset(
    x: Any,
    graph: Any,
    *,
    columns: Sequence[Any] | None = None,
    mechanism: str = "linear",
    hidden: int = 32,
    learn_weights: bool = True,
    name: str = "regime-scm",
    truth: Mapping[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Dataset:
    """Validate data and graph and pack them for :func:`regime_scm_model`.

    ``x``: a ``pandas.DataFrame`` (its columns name the variables) or an (n, N) array (``columns`` names them,
    default 0..N-1). ``graph``: ``networkx.DiGraph`` whose nodes are exactly the columns, or an N x N adjacency.
    Raises :class:`PyrozooError` for fewer than 2 variables or 2 rows, NaN/inf rows, text, categorical, date or
    duration columns, data whose squares overflow ``dtype`` (1e19 in float32: pass ``dtype=torch.float64`` or
    rescale), a graph that is not a DAG or whose nodes differ from the columns, a ``dtype`` other than torch.float32
    or torch.float64.
    """
    hidden = _check_model_options(mechanism, hidden, learn_weights)
    check_float_dtype("dtype", dtype)  # torch.int64 truncated the data to integers; float16 fitted in float16
    # dates and durations converted to float are counts of their unit (since 1970): a date column gave intercepts
    # of 1.6e15 as if an amount (a DataFrame's columns and a datetime64 array alike)
    check_no_datetimes("x", x)
    if isinstance(x, pd.DataFrame):
        if columns is not None and list(columns) != list(x.columns):
            raise PyrozooError("columns: given together with a DataFrame whose columns differ")
        columns = list(x.columns)
        check_numeric_columns("x", x, categorical_hint=AMOUNTS_HINT)
        try:
            arr = x.to_numpy(dtype=float)
        except (TypeError, ValueError):
            raise PyrozooError("x: expected numeric columns") from None
    else:
        arr = as_tensor("x", x, dtype=torch.float64, detach=True).cpu().numpy()
    if arr.ndim != 2:
        raise PyrozooError(f"x: expected a 2-D array (samples x variables), got shape {arr.shape}")
    if arr.shape[1] < 2:
        raise PyrozooError(f"x: expected at least 2 variables (columns), got {arr.shape[1]}")
    if arr.shape[0] < 2:
        raise PyrozooError(f"x: expected at least 2 samples (rows), got {arr.shape[0]}")
    columns = list(range(arr.shape[1])) if columns is None else list(columns)
    if len(columns) != arr.shape[1]:
        raise PyrozooError(f"columns: expected {arr.shape[1]} names (one per column of x), got {len(columns)}")
    if len(set(columns)) != len(columns) or len({str(c) for c in columns}) != len(columns):
        # the site names are str(column): 0 and "0" would be two columns but one site
        raise PyrozooError(f"columns: expected unique names (as strings, they name the model's sites), "
                           f"got {[str(c) for c in columns]}")
    clash = RESERVED & {str(c) for c in columns}
    if clash:
        raise PyrozooError(f"columns: {', '.join(sorted(clash))} clashes with a site name of the model (the regime "
                           "latent, its plate or a parameter); rename the column")
    _check_rows(arr)
    parents = _graph_to_parents(graph, columns)
    g = nx.DiGraph(parents.numpy().astype(int))
    order = list(nx.lexicographical_topological_sort(g))
    # an offset large against a column's spread (1e8 + 3 N(0, 1)) leaves float32 a few distinct values, silently
    coarse = coarse_columns(np.asarray(arr, dtype=np.float64), dtype, columns)
    if coarse:
        also = "" if dtype == torch.float64 else f", or pass dtype=torch.float64 to make_regime_dataset (x as {dtype})"
        raise PyrozooError(f"x: {coarse}. Subtract a constant (e.g. the mean) from such a column: the fitted weights "
                           f"and scales do not change, only the intercepts{also}")
    xt = torch.as_tensor(np.array(arr, dtype=np.float64), dtype=dtype)
    # a constant variable has zero residual variance: EM clamped its scale to 1e-3, that variable's density then
    # dominated the likelihood and the regime weights came out arbitrary (checked in the dataset's dtype, in which
    # the fit sees the values)
    refuse_constant("x", {c: xt[:, j].numpy() for j, c in enumerate(columns)},
                    why="zero variance: the mechanism's scale would collapse to 0 and the likelihood grow without "
                        "bound",
                    fix="drop them from the data and the graph")
    # data as large as 1e19 are finite in float32 but their squares are not: the fit's likelihoods were NaN
    overflow = _overflow(xt, columns)
    if overflow:
        also = "" if dtype == torch.float64 else f", or pass dtype=torch.float64 to make_regime_dataset (x as {dtype})"
        raise PyrozooError(f"x: {overflow}; rescale the data ({_rescale_hint(xt, columns)}) and scale the results "
                           f"back{also}")
    inputs = {
        "parents": parents,
        "order": order,
        "names": [str(c) for c in columns],
        "n": int(arr.shape[0]),
        "mechanism": mechanism,
        "hidden": hidden,
        "learn_weights": learn_weights,
    }
    meta = {"columns": columns, "graph": nx.relabel_nodes(g, dict(enumerate(columns))),
            "from_dataframe": isinstance(x, pd.DataFrame)}
    return Dataset(name, inputs=inputs, observed={"x": xt}, truth=dict(truth or {}), meta=meta)


def _overflowing(x: torch.Tensor) -> list[int]:
    """The columns of ``x`` whose sum of squares overflows its dtype; when only the total over all columns does (as
    :func:`~pyrozoo.validation.check_squares_finite` sums it), the one of largest sum; empty when it fits."""
    with torch.no_grad():
        sums = torch.square(x).sum(0)
        bad = torch.nonzero(~torch.isfinite(sums)).flatten().tolist()
        if not bad and not bool(torch.isfinite(sums.sum())):
            bad = [int(torch.square(x.to(torch.float64)).sum(0).argmax())]
    return bad


def _overflow(x: torch.Tensor, columns: Sequence[Any]) -> str:
    """What overflows in ``x`` (columns ``columns``), for a message that adds the fix of the caller's path; empty
    when the sum of squares fits its dtype."""
    bad = _overflowing(x)
    if not bad:
        return ""
    big = float(x[:, bad].abs().max())
    names = ("column " if len(bad) == 1 else "columns ") + ", ".join(repr(columns[j]) for j in bad)
    return (f"the sum of squares overflows {str(x.dtype).removeprefix('torch.')} in {names} (largest |value| "
            f"{big:.3g}), so the fit's statistics would be inf")


def _rescale_hint(x: torch.Tensor, columns: Sequence[Any]) -> str:
    """``divide 'a' by 1e+20`` for each overflowing column: the power of ten below its largest |value|."""
    parts = []
    for j in _overflowing(x):
        unit = 10.0 ** math.floor(math.log10(float(x[:, j].abs().max())))
        parts.append(f"divide {columns[j]!r} by {unit:.0e}")
    return ", ".join(parts)


SIMULATOR_DEFAULTS = {"n_vars": 10, "n_samples": 10000, "edge_prob": 0.3, "shift": 5.0, "obs_frac": 0.2,
                      "nonlinear": False}
# a data file's options (text): the DAG over its columns, and which columns are the variables ("": all numeric)
FILE_OPTIONS = {"graph": "", "columns": ""}


# --------------------------------------------------------------------------------------------------------------
# A user's data file (--data): the DAG as an option
# --------------------------------------------------------------------------------------------------------------

GRAPH_EXAMPLE = "-o graph='a->b, b->c' (a bare name for a variable without edges)"


def _graph_item(where: str, item: Any) -> list[str]:
    """One item of a ``graph`` option as its node names: ``"a->b->c"`` (a path), ``"a"`` (a node) or a pair
    ``["a", "b"]`` (an edge)."""
    if isinstance(item, str):
        names = [n.strip() for n in item.split("->")]
    elif isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(n, str) for n in item):
        names = [n.strip() for n in item]
    else:
        raise PyrozooError(f"{where}: expected an edge as text ('a->b') or a pair of names ['a', 'b'], got {item!r}")
    if not all(names):
        raise PyrozooError(f"{where}: expected a column name on each side of '->', got {item!r}")
    return names


def parse_graph(value: Any, *, required: bool = False) -> tuple[list[str], list[tuple[str, str]]]:
    """The ``graph`` option as (nodes in order of first mention, edges). Text: items separated by commas, semicolons
    or new lines, each ``a->b``, a path ``a->b->c`` or a bare name ``a`` (a variable without edges); a TOML list:
    items of the same text or pairs ``["a", "b"]``. ``required``: an empty graph (the default) is an error (a data
    file needs its DAG). Cycles and names that are not columns are :func:`make_regime_dataset`'s to refuse."""
    if isinstance(value, str):
        items: list[Any] = [t for t in value.replace(";", ",").replace("\n", ",").split(",") if t.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise PyrozooError(f"graph: expected the DAG as text, e.g. {GRAPH_EXAMPLE}, or a list of edges "
                           f"[['a', 'b'], ['b', 'c']], got {value!r}")
    if not items and required:
        raise PyrozooError(f"graph: a data file (--data) needs the DAG over its columns, e.g. {GRAPH_EXAMPLE}; got "
                           f"none")
    nodes: dict[str, None] = {}
    edges: list[tuple[str, str]] = []
    for i, item in enumerate(items):
        names = _graph_item(f"graph: item {i + 1}", item)  # "graph: ": a --config file is named before it
        nodes.update(dict.fromkeys(names))
        edges.extend(zip(names[:-1], names[1:], strict=True))
    return list(nodes), edges


def parse_columns(value: Any) -> list[str]:
    """The ``columns`` option as a list of names: comma-separated text or a TOML list of names; empty: none chosen."""
    return parse_names("columns", value)


def read_regime_file(path: str, seed: int, *, graph: Any = "", columns: Any = "", mechanism: str = "linear",
                     hidden: int = 32, learn_weights: bool = True, **_: Any) -> Dataset:
    """A user's CSV file (header row) and DAG (option ``graph``) as a :func:`make_regime_dataset` dataset, whose
    checks apply (a cycle named, graph nodes that are not columns, columns missing from the graph). The variables
    are ``columns`` (comma-separated names) or, by default, every numeric column and every column the graph names
    (a text column named in the graph is refused, not skipped). Each is read with ``numeric_column``, which names
    the column and data row of a missing or non-numeric value. No truth: the metrics are the log-likelihood and
    the wall time."""
    nodes, edges = parse_graph(graph, required=True)
    chosen = parse_columns(columns)
    df = read_table(path)
    source = f"data {path}"
    # the hint echoes the names given (a fixed "-o columns=a,b" read as if the user had typed it)
    check_columns_exist(source, [str(c) for c in df.columns], {"columns": chosen},
                        hints={"columns": f"-o columns={','.join(chosen)}"})
    if not chosen:
        chosen = [str(c) for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) or str(c) in nodes]
    else:
        left_out = {str(n) for n in nodes} & {str(c) for c in df.columns} - set(chosen)
        if left_out:
            raise PyrozooError(f"graph: names {_names(left_out)}, column(s) of {path} that -o columns leaves out; "
                               "add them to -o columns=... or remove them from graph")
    frame = pd.DataFrame({c: numeric_column(df, c, source=source) for c in chosen})
    # a copy: pandas's copy-on-write makes to_numpy a read-only view, and torch.as_tensor of it warned that
    # non-writable arrays are unsupported on every --data run
    values = frame.to_numpy(dtype=float, copy=True)
    if np.isfinite(values).all():  # (NaN/inf rows are make_regime_dataset's to refuse, by row)
        x32 = torch.as_tensor(values, dtype=torch.float32)  # the dataset's dtype; a file has no dtype option
        overflow = _overflow(x32, chosen)
        if overflow:
            raise PyrozooError(f"{source}: {overflow}; rescale the data in the file ({_rescale_hint(x32, chosen)}) "
                               f"and scale the results back")
        coarse = coarse_columns(values, torch.float32, chosen)
        if coarse:
            raise PyrozooError(f"{source}: {coarse}. The file is read in float32: subtract a constant (e.g. the "
                               f"mean) from such a column in the file (the fitted weights and scales do not change, "
                               f"only the intercepts), or read it with pandas and pass it to "
                               f"make_regime_dataset(..., dtype=torch.float64)")
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    try:
        ds = make_regime_dataset(frame, g, mechanism=mechanism, hidden=hidden, learn_weights=learn_weights,
                                 name=Path(path).stem)
    except PyrozooError as exc:
        if "columns missing from the graph" not in str(exc):
            raise
        how = "leave them out of -o columns=..." if columns else "choose the variables with -o columns=..."
        raise PyrozooError(f"{exc}. Name each variable in graph (a bare name for one without edges), or {how} "
                           f"(the variables read from {path}: {', '.join(map(repr, chosen))})") from None
    # the file options it was read with, which fit_regime_scm checks a config's against (see _check_data_options)
    ds.meta["file"] = {"path": str(path), "graph": graph, "columns": columns}
    return ds


# --------------------------------------------------------------------------------------------------------------
# Simulator (the seed report's design, plus a nonlinear option)
# --------------------------------------------------------------------------------------------------------------


def _uniform_weights(rng: np.random.Generator, size: Any) -> np.ndarray:
    """Uniform on [-1, -0.1] U [0.1, 1]."""
    return rng.uniform(0.1, 1.0, size) * rng.choice([-1.0, 1.0], size)


def true_means(truth: Mapping[str, Any], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Conditional means of every variable under the true observational and intervened mechanisms, each (n, N)."""
    W = np.asarray(truth["W"])
    shift = np.asarray(truth["shift"])
    if truth["kind"] == "linear":
        mu = x @ W
    else:
        A, c, v = (np.asarray(truth[k]) for k in ("A", "c", "v"))  # (N, N, H), (N, H), (N, H)
        h = np.tanh(np.einsum("nj,jih->nih", x, A * (W != 0)[:, :, None]) + c)
        mu = (h * v).sum(-1) * (W != 0).any(0)
    return mu, mu + shift


def true_component_log_lik(truth: Mapping[str, Any], x: np.ndarray) -> np.ndarray:
    """log p(x_n, z_n = k) under the true parameters and regime weights, shape (n, K): the oracle's input. A regime
    of weight 0 (no observational rows with ``obs_frac=0``) has log p = -inf."""
    mu0, mu1 = true_means(truth, x)
    lp0 = -0.5 * (x - mu0) ** 2 - 0.5 * math.log(2 * math.pi)
    lp1 = -0.5 * (x - mu1) ** 2 - 0.5 * math.log(2 * math.pi)
    comp = np.concatenate([np.zeros((x.shape[0], 1)), lp1 - lp0], axis=1) + lp0.sum(1, keepdims=True)
    weights = np.asarray(truth["weights"], dtype=float)
    with np.errstate(divide="ignore"):  # log 0 = -inf is meant: that regime has no rows
        return comp + np.log(weights)


def _check_simulated_fits(x: np.ndarray, values: Any, shift: float, columns: Sequence[str], design: str) -> None:
    """Raise, naming the option to change, when the simulated data ``x`` overflow float32 (the dataset's dtype) in
    their sum of squares: ``shift``, with the largest power of ten of |shift| whose data fit this design
    (``values(s)``: the same draws with shift s), or ``n_vars``/``edge_prob`` when even shift 0 overflows (the
    mechanisms compound along the graph's paths)."""
    def over(s: float) -> list[int]:
        return _overflowing(torch.as_tensor(values(s), dtype=torch.float32))

    x32 = torch.as_tensor(x, dtype=torch.float32)
    if not _overflowing(x32):
        return
    what = _overflow(x32, columns)
    if over(0.0):
        raise PyrozooError(f"n_vars, edge_prob: the simulated data ({design}) overflow even with shift 0: "
                           f"{_overflow(torch.as_tensor(values(0.0), dtype=torch.float32), columns)}; the mechanisms "
                           f"compound along the graph's paths, so use fewer variables (n_vars) or a sparser graph "
                           f"(edge_prob)")
    fits = 10.0 ** math.floor(math.log10(abs(shift)))
    while fits > 1e-3 and over(math.copysign(fits, shift)):
        fits /= 10
    raise PyrozooError(f"shift: expected |shift| at most {fits:.0e} (the largest power of ten whose simulated data "
                       f"fit float32 for this design: {design}), got {shift!r}: in the simulated data {what}")


def simulate_regime_data(
    seed: int,
    *,
    n_vars: int = 10,
    n_samples: int = 10000,
    edge_prob: float = 0.3,
    shift: float = 5.0,
    obs_frac: float = 0.2,
    nonlinear: bool = False,
    mechanism: str = "linear",
    hidden: int = 32,
    learn_weights: bool = True,
    **_: Any,
) -> Dataset:
    """The report's generator: an Erdos-Renyi DAG (``edge_prob``) oriented along a random order, linear mechanisms
    x_i = sum_j w_ij x_j + eps_i with w uniform on [-1,-0.1] U [0.1,1] and eps ~ N(0, 1); regime k >= 1 adds
    ``shift`` to mechanism k. A share ``obs_frac`` of samples is observational, the rest uniform over the N
    interventional regimes. ``nonlinear=True`` uses random tanh MLPs f_i(pa) = sum_h v_ih tanh(a_ih . pa + c_ih)
    (4 hidden units) instead. ``mechanism``/``hidden``/``learn_weights`` configure the model fitted to it. Data
    whose sum of squares overflows float32 (the dataset's dtype) are refused naming ``shift`` and the largest power
    of ten of |shift| that fits the design, or ``n_vars``/``edge_prob`` when they overflow even without a shift.
    ``seed`` is an integer in [0, 2**32 - 1] and ``shift`` a finite real number (a NumPy scalar too; not a bool or
    text), both checked before any work.

    ``truth`` holds ``regime`` (n,), ``W`` (N, N, w[j, i] for j -> i), ``shift`` (N,), ``weights`` (K,), the
    mechanism kind and, for nonlinear data, ``A``, ``c``, ``v``; ``meta["graph"]`` the DAG and
    ``meta["simulator"]`` the simulator options above (which :func:`fit_regime_scm` checks a config's against).
    """
    seed = check_seed("seed", seed)  # as every simulator: not truncated (2.9), not a text or a bool
    n_vars = check_int("n_vars", n_vars, minimum=2)
    n_samples = check_int("n_samples", n_samples, minimum=2)
    check_probability("edge_prob", edge_prob)
    check_probability("obs_frac", obs_frac)
    shift = check_real("shift", shift)  # any real scalar (NumPy's, a 0-d tensor), not a bool, text, NaN or inf
    check_bool("nonlinear", nonlinear)
    rng = np.random.default_rng(seed)
    und = nx.gnp_random_graph(n_vars, edge_prob, seed=int(rng.integers(2**31)))
    perm = rng.permutation(n_vars)  # position of each node in a random causal order
    adj = np.zeros((n_vars, n_vars), dtype=bool)
    for u, v in und.edges:
        a, b = (u, v) if perm[u] < perm[v] else (v, u)
        adj[a, b] = True
    W = _uniform_weights(rng, (n_vars, n_vars)) * adj
    truth: dict[str, Any] = {"kind": "nonlinear" if nonlinear else "linear", "W": W,
                             "shift": np.full(n_vars, float(shift))}
    if nonlinear:
        H = 4
        truth["A"] = rng.normal(0.0, 1.0, (n_vars, n_vars, H))
        truth["c"] = rng.normal(0.0, 0.5, (n_vars, H))
        truth["v"] = _uniform_weights(rng, (n_vars, H)) * 1.5
    K = n_vars + 1
    weights = np.full(K, (1.0 - obs_frac) / n_vars)
    weights[0] = obs_frac
    truth["weights"] = weights
    regime = np.where(rng.random(n_samples) < obs_frac, 0, rng.integers(1, K, n_samples))
    eps = rng.normal(size=(n_samples, n_vars))
    order = np.argsort(perm)

    def values(s: float) -> np.ndarray:  # the data with shift s (the draws above fixed)
        x = np.zeros((n_samples, n_vars))
        for i in order:
            mu0, _ = true_means(truth, x)
            x[:, i] = mu0[:, i] + eps[:, i] + s * (regime == i + 1)
        return x

    x = values(shift)
    truth["regime"] = regime
    columns = [f"x{i + 1}" for i in range(n_vars)]
    _check_simulated_fits(x, values, shift, columns, f"n_vars={n_vars}, n_samples={n_samples}, seed {seed}")
    graph = nx.relabel_nodes(nx.DiGraph(adj.astype(int)), dict(enumerate(columns)))
    graph.add_nodes_from(columns)
    ds = make_regime_dataset(pd.DataFrame(x, columns=columns), graph, mechanism=mechanism, hidden=hidden,
                             learn_weights=learn_weights, name="regime-scm-sim", truth=truth)
    # the simulator options it was made with, which fit_regime_scm checks a config's against (_check_data_options)
    ds.meta["simulator"] = {"n_vars": n_vars, "n_samples": n_samples, "edge_prob": float(edge_prob),
                            "shift": float(shift), "obs_frac": float(obs_frac), "nonlinear": bool(nonlinear)}
    return ds


# --------------------------------------------------------------------------------------------------------------
# Mechanisms (pure functions of a parameter dict, so EM, SVI and do()-sampling share one implementation)
# --------------------------------------------------------------------------------------------------------------


# the MLP mechanism's parameters (init_params): one MLP per variable (its first axis); W1's input is every
# variable's value (masked to the parents) and the intervention flag; the hidden units have no labels (0..hidden-1)
MLP_FLAG_INPUT = "intervention flag"
MLP_DIMS: dict[str, list[str]] = {
    "W1": ["variable", "mlp_input", "hidden"], "b1": ["variable", "hidden"],
    "W2": ["variable", "hidden_in", "hidden"], "b2": ["variable", "hidden"],
    "W3": ["variable", "hidden_in", "hidden"], "b3": ["variable", "hidden"],
    "w_out": ["variable", "hidden"],
}


def init_params(parents: torch.Tensor, mechanism: str, hidden: int, *, dtype: torch.dtype = torch.float32,
                device: Any = None, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Starting values: zero linear maps / a small random MLP, unit scales, uniform regime weights."""
    check_float_dtype("dtype", dtype)
    N = parents.shape[0]
    opts = {"dtype": dtype, "device": device}
    p: dict[str, torch.Tensor] = {
        "scale_obs": torch.ones(N, **opts),
        "scale_int": torch.ones(N, **opts),
        "regime_weights": torch.full((N + 1,), 1.0 / (N + 1), **opts),
    }
    if mechanism == "linear":
        for k in LINEAR_PARAMS:
            p[k] = torch.zeros((N, N) if k.startswith("W") else (N,), **opts)
    else:
        def rnd(*shape: int, fan_in: int) -> torch.Tensor:
            return (torch.randn(*shape, generator=generator, dtype=dtype) / math.sqrt(fan_in)).to(device)

        p.update(W1=rnd(N, N + 1, hidden, fan_in=N + 1), b1=torch.zeros(N, hidden, **opts),
                 W2=rnd(N, hidden, hidden, fan_in=hidden), b2=torch.zeros(N, hidden, **opts),
                 W3=rnd(N, hidden, hidden, fan_in=hidden), b3=torch.zeros(N, hidden, **opts),
                 w_out=rnd(N, hidden, fan_in=hidden), b_out=torch.zeros(N, **opts))
    return p


def node_mean(p: Mapping[str, torch.Tensor], i: int, xin: torch.Tensor, flag: torch.Tensor | float,
              parents: torch.Tensor) -> torch.Tensor:
    """Conditional mean of variable ``i`` given the (..., n, N) matrix ``xin`` (only parent columns are read) and
    the intervention flag (0: observational version, 1: intervened; fractional values, used by the relaxed
    Gumbel-softmax model, interpolate the linear maps or enter the MLP as its extra input)."""
    mask = parents[:, i].to(xin.dtype)
    if "W_obs" in p:
        mu0 = p["loc_obs"][i] + xin @ (p["W_obs"][:, i] * mask)
        if isinstance(flag, float) and flag == 0.0:
            return mu0
        mu1 = p["loc_int"][i] + xin @ (p["W_int"][:, i] * mask)
        return mu1 if isinstance(flag, float) and flag == 1.0 else mu0 + flag * (mu1 - mu0)
    flag_t = torch.as_tensor(flag, dtype=xin.dtype, device=xin.device).unsqueeze(-1)
    flag_t, xin = torch.broadcast_tensors(flag_t, xin)
    h = torch.cat([xin * mask, flag_t[..., :1]], dim=-1)
    h = torch.relu(h @ p["W1"][i] + p["b1"][i])
    h = torch.relu(h @ p["W2"][i] + p["b2"][i])
    h = torch.relu(h @ p["W3"][i] + p["b3"][i])
    return h @ p["w_out"][i] + p["b_out"][i]


def all_means(p: Mapping[str, torch.Tensor], x: torch.Tensor, parents: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Observational and intervened conditional means of every variable given observed ``x``, each (n, N)."""
    if "W_obs" in p:
        mask = parents.to(x.dtype)
        return p["loc_obs"] + x @ (p["W_obs"] * mask), p["loc_int"] + x @ (p["W_int"] * mask)
    # All nodes and both versions in one batched matmul per layer: (2, N, n, N + 1) -> (2, N, n).
    N = x.shape[-1]
    mask = parents.to(x.dtype).T  # (N, N): row i = parents of i
    xin = (x.unsqueeze(0) * mask.unsqueeze(1)).unsqueeze(0).expand(2, N, -1, -1)
    flag = torch.tensor([0.0, 1.0], dtype=x.dtype, device=x.device).view(2, 1, 1, 1).expand(2, N, x.shape[0], 1)
    h = torch.relu(torch.cat([xin, flag], -1) @ p["W1"] + p["b1"].unsqueeze(1))
    h = torch.relu(h @ p["W2"] + p["b2"].unsqueeze(1))
    h = torch.relu(h @ p["W3"] + p["b3"].unsqueeze(1))
    out = (h @ p["w_out"].unsqueeze(-1)).squeeze(-1) + p["b_out"].unsqueeze(-1)
    return out[0].T, out[1].T


def component_log_lik(p: Mapping[str, torch.Tensor], x: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
    """log p(x_n | z_n = k) for every sample and regime, shape (n, K), in O(n N)."""
    mu0, mu1 = all_means(p, x, parents)
    lp0 = dist.Normal(mu0, p["scale_obs"]).log_prob(x)
    lp1 = dist.Normal(mu1, p["scale_int"]).log_prob(x)
    return torch.cat([torch.zeros_like(lp0[:, :1]), lp1 - lp0], dim=-1) + lp0.sum(-1, keepdim=True)


def marginal_log_lik(p: Mapping[str, torch.Tensor], x: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
    """Pointwise log p(x_n) = logsumexp_k [log pi_k + log p(x_n | z_n = k)], shape (n,)."""
    return torch.logsumexp(component_log_lik(p, x, parents) + p["regime_weights"].log(), dim=-1)


def regime_posterior(p: Mapping[str, torch.Tensor], x: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
    """Exact p(z_n = k | x_n) under the point-estimated mechanisms, shape (n, K)."""
    return torch.softmax(component_log_lik(p, x, parents) + p["regime_weights"].log(), dim=-1)


# --------------------------------------------------------------------------------------------------------------
# The Pyro model
# --------------------------------------------------------------------------------------------------------------


def _model_params(parents: torch.Tensor, mechanism: str, hidden: int, learn_weights: bool,
                  init: Mapping[str, torch.Tensor] | None, dtype: torch.dtype, device: Any) -> dict:
    start = init_params(parents, mechanism, hidden, dtype=dtype, device=device)
    if init:
        # cloned: pyro.param turns its initial value into a leaf that requires grad (the caller's tensor stays as is)
        start.update({k: torch.as_tensor(v, dtype=dtype, device=device).detach().clone()
                      for k, v in init.items() if k in start})
    p = {}
    for k, v in start.items():
        if k == "regime_weights":
            p[k] = pyro.param(k, v, constraint=constraints.simplex) if learn_weights else v
        elif k.startswith("scale"):
            p[k] = pyro.param(k, v, constraint=constraints.positive)
        else:
            p[k] = pyro.param(k, v)
    return p


def _is_data(value: torch.Tensor | None, obs: torch.Tensor) -> bool:
    """Whether a site returned the observed column (and not a draw: uncondition, do())."""
    return value is not None and value.shape == obs.shape and (value.data_ptr() == obs.data_ptr()
                                                               or torch.equal(value, obs))


def regime_scm_model(
    x: torch.Tensor | None = None,
    *,
    parents: torch.Tensor,
    order: Sequence[int],
    names: Sequence[str],
    n: int | None = None,
    mechanism: str = "linear",
    hidden: int = 32,
    learn_weights: bool = True,
    params: Mapping[str, torch.Tensor] | None = None,
    init: Mapping[str, torch.Tensor] | None = None,
    subsample_size: int | None = None,
) -> torch.Tensor:
    """z_n ~ Categorical(pi) (enumerated), then x_{n,i} ~ Normal(mu_i^{[z_n == i+1]}(pa), s_i^{[z_n == i+1]}) in
    topological order; one sample site per variable (named by its column) so ``poutine.do`` can intervene on it.

    ``params`` fixes the mechanisms (e.g. a fitted result's) instead of ``pyro.param``; ``init`` sets the starting
    values of the ``pyro.param``s. ``x=None`` with ``n`` (required then; with ``x`` it may only repeat len(x))
    samples the SCM ancestrally. ``subsample_size`` draws a random minibatch of rows per call (the likelihood is
    scaled by n / batch; 0, or a size >= n, is every row: :func:`~pyrozoo.validation.plate_subsample`, as in the
    amortized guide). Returns the (n, N) sample.
    """
    n = plate_size("n", n, x, "x")
    subsample_size = plate_subsample("subsample_size", subsample_size, n)
    ref = x if x is not None else (next(iter(params.values())) if params else parents.float())
    dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
    device = ref.device
    parents = parents.to(device)
    N = parents.shape[0]
    if params is None:
        p = _model_params(parents, mechanism, hidden, learn_weights, init, dtype, device)
    else:
        p = {k: torch.as_tensor(v, dtype=dtype, device=device) for k, v in params.items()}
    cols: list[torch.Tensor | None] = [None] * N
    means: tuple[torch.Tensor, torch.Tensor] | None = None
    with pyro.plate("obs_id", n, subsample_size=subsample_size) as idx:
        if x is not None and subsample_size is not None:
            x = x[idx]
        observed_cols = [x[:, i] for i in range(N)] if x is not None else [None] * N
        z = pyro.sample("z", dist.Categorical(p["regime_weights"]), infer={"enumerate": "parallel"})
        for i in order:
            hit = z == i + 1
            pa = torch.nonzero(parents[:, i]).flatten().tolist()
            if x is not None and all(_is_data(cols[j], observed_cols[j]) for j in pa):
                # parents are the data (inference): every mechanism at once, both versions, then select; under
                # enumeration z is (K, 1) and each version is evaluated once, not K times
                means = all_means(p, x, parents) if means is None else means
                mu0, mu1 = means[0][:, i], means[1][:, i]
            else:  # ancestral sampling, do(), posterior predictive: parents are draws
                filled = [c if c is not None else torch.zeros((), dtype=dtype, device=device) for c in cols]
                xin = torch.stack(torch.broadcast_tensors(*filled), dim=-1)
                mu0, mu1 = node_mean(p, i, xin, 0.0, parents), node_mean(p, i, xin, 1.0, parents)
            loc = torch.where(hit, mu1, mu0)
            scale = torch.where(hit, p["scale_int"][i], p["scale_obs"][i])
            cols[i] = pyro.sample(names[i], dist.Normal(loc, scale), obs=observed_cols[i])
    return torch.stack(torch.broadcast_tensors(*cols), dim=-1)


# --------------------------------------------------------------------------------------------------------------
# EM warm start with restarts (linear mechanisms; closed-form weighted least squares)
# --------------------------------------------------------------------------------------------------------------


def _wls(X: torch.Tensor, y: torch.Tensor, w: torch.Tensor, ridge: float = 1e-6) -> tuple[torch.Tensor, ...]:
    """Weighted least squares of y on [1, X]: (intercept, coefficients, residual sd). The columns are centred at
    their weighted means (xbar, ybar) first, b = (Xc' W Xc + ridge I)^-1 Xc' W yc with the ridge on the slopes
    only, and b0 = ybar - xbar' b: adding a constant to any column moves the intercept alone (a ridge on the
    intercept, and the uncentred normal equations, biased the slopes at offsets of 1e4 and zeroed them at 1e7)."""
    wsum = w.sum().clamp(min=1e-12)
    xbar, ybar = (w @ X) / wsum, (w @ y) / wsum
    Xc, yc = X - xbar, y - ybar
    Xw = Xc * w[:, None]
    G = Xc.T @ Xw + ridge * torch.eye(X.shape[1], dtype=X.dtype, device=X.device)
    b = torch.linalg.solve(G, Xw.T @ yc)
    res = yc - Xc @ b
    sd = ((w * res**2).sum() / wsum).sqrt().clamp(min=1e-3)
    return ybar - xbar @ b, b, sd


def robust_init(x: torch.Tensor, parents: torch.Tensor, *, trim: float = 2.5, iters: int = 4) -> dict:
    """Observational mechanisms by iteratively trimmed least squares (a single-target intervention moves only a
    minority of each variable's residuals), intervened versions shifted by the mean outlying residual."""
    N = x.shape[1]
    p = init_params(parents, "linear", 1, dtype=x.dtype, device=x.device)
    for i in range(N):
        pa = torch.nonzero(parents[:, i]).flatten()
        X, y = x[:, pa], x[:, i]
        w = torch.ones_like(y)
        for _ in range(iters):
            b0, b, sd = _wls(X, y, w)
            res = y - b0 - X @ b
            mad = 1.4826 * (res - res.median()).abs().median().clamp(min=1e-6)
            w = ((res - res.median()).abs() <= trim * mad).to(x.dtype)
        out = (res - res.median()).abs() > 3 * mad
        delta = res[out].mean() if int(out.sum()) >= 5 else 3 * mad
        p["loc_obs"][i], p["W_obs"][pa, i], p["scale_obs"][i] = b0, b, mad
        p["loc_int"][i], p["W_int"][pa, i], p["scale_int"][i] = b0 + delta, b, mad
    return p


def random_init(x: torch.Tensor, parents: torch.Tensor, gen: torch.Generator) -> dict:
    """Plain least squares on all data, intervened intercepts shifted by random N(0, (3 sd)^2) amounts."""
    p = robust_init(x, parents, trim=1e6, iters=1)
    shift = torch.randn(x.shape[1], generator=gen, dtype=torch.float64).to(x) * 3 * p["scale_obs"]
    p["loc_int"] = p["loc_obs"] + shift
    return p


def em_e_step(p: Mapping[str, torch.Tensor], data: Mapping[str, Any]) -> dict:
    """Responsibilities r_nk = p(z_n = k | x_n) and the marginal log-likelihood at ``p``."""
    comp = component_log_lik(p, data["x"], data["parents"]) + p["regime_weights"].log()
    ll = torch.logsumexp(comp, -1)
    return {"r": torch.exp(comp - ll[:, None]), "loglik": ll.sum(), "params": p}


def em_m_step(e: Mapping[str, Any], data: Mapping[str, Any]) -> dict:
    """pi_k = mean_n r_nk (if learned); mechanism i observational: WLS with weights 1 - r_{n,i+1}; intervened:
    WLS with weights r_{n,i+1}; scales are the weighted residual sds."""
    x, parents, r = data["x"], data["parents"], e["r"]
    N = x.shape[1]
    p = {k: v.clone() for k, v in e["params"].items()}
    if data["learn_weights"]:
        p["regime_weights"] = r.mean(0).clamp(min=1e-8)
        p["regime_weights"] = p["regime_weights"] / p["regime_weights"].sum()
    for i in range(N):
        pa = torch.nonzero(parents[:, i]).flatten()
        X, y = x[:, pa], x[:, i]
        for suffix, w in (("obs", 1.0 - r[:, i + 1]), ("int", r[:, i + 1] + 1e-6)):
            b0, b, sd = _wls(X, y, w)
            p[f"loc_{suffix}"][i], p[f"W_{suffix}"][pa, i], p[f"scale_{suffix}"][i] = b0, b, sd
    return p


# With the spare regimes supported by the data, two labellings whose log-likelihoods differ by at most this many nats
# are told apart only weakly: the convention decides and the run says so (2 * 3 = 6 on the deviance scale: less than
# "strong" evidence, Kass and Raftery 1995)
LABEL_SWAP_TOL = 3.0

# The most that spare regimes fitting noise alone move the two labellings' log-likelihoods apart (nats): the largest
# |L_kept - L_swap| measured where no other regime exists, 13.7 (docs/regime-scm.md, Identifiability). Beyond it the
# data decide whatever the spare regimes' BIC support; within it the convention may
LABEL_NULL_BOUND = 14.0


def _data_decide(delta: float, excess: float) -> bool:
    """Whether the log-likelihoods decide between the two labellings (``delta``: the other one's minus the kept
    one's; ``excess``: the spare regimes' BIC support, NaN when not tested): beyond :data:`LABEL_NULL_BOUND` nats
    always, beyond :data:`LABEL_SWAP_TOL` when the spare regimes are supported. Otherwise the convention does."""
    return abs(delta) > LABEL_NULL_BOUND or (excess > 0 and abs(delta) > LABEL_SWAP_TOL)


def swap_labels(p: Mapping[str, torch.Tensor], j: int) -> dict[str, torch.Tensor]:
    """The linear parameters with the observational regime and do(j) exchanged: node ``j``'s two mechanisms and
    the weights pi_0 and pi_{j+1} swap places. With only these two regimes weighted this is an exact symmetry of
    the likelihood; every other do(k) regime uses node j's observational mechanism, so it sees the change."""
    q = {k: v.clone() for k, v in p.items()}
    for obs, intv in (("loc_obs", "loc_int"), ("scale_obs", "scale_int")):
        q[obs][j], q[intv][j] = p[intv][j], p[obs][j]
    q["W_obs"][:, j], q["W_int"][:, j] = p["W_int"][:, j], p["W_obs"][:, j]
    q["regime_weights"][0], q["regime_weights"][j + 1] = p["regime_weights"][j + 1], p["regime_weights"][0]
    return q


def spare_params(parents: torch.Tensor, j: int, *, learn_weights: bool = True) -> int:
    """The free parameters of the spare regimes for node ``j``: for each do(k), k != j, its weight (when learned)
    and node k's intervened mechanism (intercept, one weight per parent, scale). The restricted model of
    :func:`fit_restricted` has none of them."""
    n_pa = parents.sum(0).to(torch.long)
    return sum(int(n_pa[k]) + 2 + int(learn_weights) for k in range(parents.shape[0]) if k != j)


def _only_two_regimes(p: Mapping[str, torch.Tensor], j: int, learn_weights: bool,
                      also: Sequence[int] = ()) -> dict[str, torch.Tensor]:
    """``p`` with every regime but the observational one, do(j) (and do(k) for k in ``also``) at weight 0; those
    kept keep their weights' proportion (learned weights) or share equally (fixed ones, whose swap is then an exact
    symmetry too when only the two are kept)."""
    q = dict(p)
    w = torch.zeros_like(p["regime_weights"])
    keep = [0, j + 1, *(k + 1 for k in also)]
    part = p["regime_weights"][keep]
    w[keep] = part / part.sum() if learn_weights else 1.0 / len(keep)
    q["regime_weights"] = w
    return q


def _em_loglik(p: Mapping[str, torch.Tensor], e: Any, d: Mapping[str, Any]) -> float:
    """The objective :func:`~pyrozoo.inference.em.run_em` tracks for the linear EM: the marginal log-likelihood at
    ``p`` (its E-step's ``loglik``)."""
    return float(em_e_step(p, d)["loglik"])


def fit_restricted(start: Mapping[str, torch.Tensor], data: Mapping[str, Any], j: int, *, max_iter: int = 200,
                   tol: float = 1e-7, also: Sequence[int] = ()) -> Any:
    """EM of the restricted model in which only the observational regime and do(j) (and do(k), k in ``also``)
    carry weight (the others' fixed at 0), from ``start``. With only the two, the two labellings are an exact
    symmetry of the likelihood: observational and do(j) differ in node j's mechanism alone, both free. Returns the
    :class:`~pyrozoo.inference.em.EMFit`."""
    def m_step(e: Mapping[str, Any], d: Mapping[str, Any]) -> dict:
        return _only_two_regimes(em_m_step(e, d), j, d["learn_weights"], also)

    return run_em(em_e_step, m_step, _only_two_regimes(start, j, data["learn_weights"], also), data,
                  max_iter=max_iter, tol=tol, objective=_em_loglik)


def one_spare_params(parents: torch.Tensor, k: int) -> int:
    """The free parameters that the spare regime do(k) alone adds (learned weights): its weight and node k's
    intervened intercept, parent weights and scale."""
    return int(parents[:, k].sum()) + 3


def _mostly(r_new: torch.Tensor, r_old: torch.Tensor) -> bool:
    """Whether most of the rows of a regime with responsibilities ``r_new`` (at least one row's worth) are those
    of the regime with ``r_old``."""
    return 2 * float(r_new @ r_old) > float(r_new.sum()) >= 1.0


def _run_or_abandon(start: Mapping[str, torch.Tensor], data: Mapping[str, Any], best: float, *, max_iter: int,
                    tol: float, chunk: int) -> Any:
    """EM from ``start`` in chunks of ``chunk`` iterations (the iterates of one run; a chunk's first iteration is
    judged converged by the parameters' change alone), abandoned (``None``) once even its largest gain per iteration
    in the last chunk, kept up for every iteration left, would leave it below ``best``:
    L_t + (max_iter - t) max_s (L_s - L_{s-1}) < best. EM's gains usually shrink as it converges, so that is an
    optimistic forecast (a heuristic, not a bound: a start that speeds up again can be lost, which costs accuracy,
    never the robust start's fit). Returns the :class:`~pyrozoo.inference.em.EMFit` otherwise."""
    params, trace, t0 = dict(start), [], time.perf_counter()
    while True:
        fit = run_em(em_e_step, em_m_step, params, data, max_iter=min(chunk, max_iter - len(trace)), tol=tol,
                     objective=_em_loglik)
        gains = np.diff([trace[-1], *fit.objective] if trace else fit.objective)
        trace, params = trace + fit.objective, fit.params
        if fit.converged or len(trace) >= max_iter:
            return dataclasses.replace(fit, objective=trace, iterations=len(trace),
                                       wall_time=time.perf_counter() - t0)
        if len(gains) and trace[-1] + (max_iter - len(trace)) * max(float(gains.max()), 0.0) < best:
            return None


def fit_em(x: torch.Tensor, parents: torch.Tensor, *, learn_weights: bool = True, restarts: int = 4,
           warm_iters: int = 5, max_iter: int = 200, tol: float = 1e-7, seed: int = 0) -> tuple[dict, dict]:
    """EM for linear-Gaussian mechanisms in float64. Candidates: the robust start and ``restarts - 1`` random
    ones. The robust start is iterated to convergence and its labelling checked (below); each random one runs in
    chunks of ``warm_iters`` iterations, abandoned once it cannot catch up with the best final log-likelihood so
    far (:func:`_run_or_abandon`), else converged and checked in turn. The candidate with the highest final
    log-likelihood (after its labelling check) is returned, the robust start on ties. The robust start is always
    a candidate and converged, so more restarts never lower the final log-likelihood (choosing the start by its
    log-likelihood after ``warm_iters`` iterations did: one ahead after 5 iterations converged to a worse optimum).

    Labelling: "observational" and do(j) differ only in node j's mechanism, so the data tell them apart only
    through the spare regimes do(k), k != j, whose rows see node j's observational mechanism. For each node j
    whose do(j) regime holds at least half as many rows as the observational one, the EM is rerun to convergence
    from :func:`swap_labels` (log-likelihoods L_kept, L_swap). A refit that drifts back to the kept labelling (or
    elsewhere: neither are most of its observational rows the kept fit's do(j) rows nor most of its do(j) rows the
    kept fit's observational ones) is not the other labelling, and no swap is counted as tried. With learned
    weights the restricted model of :func:`fit_restricted` (spare regimes at weight 0, where the two labellings fit
    exactly alike) is fitted from both (L_0, the better), and so is, for each spare regime do(k), the model with it
    alone beside the two (L_k). The spare regimes are supported when, by BIC, all of them together or any one of
    them on its own improve on the restricted model:

        2 (max(L_kept, L_swap) - L_0) - d_j log n > 0   or   2 (L_k - L_0) - d_k log n > 0 for some k,

    d_j = :func:`spare_params` (j), d_k = :func:`one_spare_params` (k). The data decide (the better labelling is
    kept) when the two labellings are more than :data:`LABEL_NULL_BOUND` nats apart (beyond what spare regimes
    fitting noise alone produce), or more than :data:`LABEL_SWAP_TOL` nats apart with the spare regimes supported.
    Otherwise the convention decides: interventions are the minority, so the fit whose observational regime holds
    more rows (sum of responsibilities) is kept, even when the other's log-likelihood is higher (by less than the
    bound, a gap that noise reaches, so not evidence for it; the warning says which way it goes). With fixed weights
    (``learn_weights=False``) no two-regime model is nested in the full one (1/K each), so there is no BIC step and
    only the bound applies.

    Comparing the candidates after the labelling check keeps the estimate one that the rule accepts: a candidate
    whose labelling the convention decided is compared at the labelling it keeps.

    Returns (params, info with ``loglik`` trace, ``restart_logliks`` (each candidate's final log-likelihood, after
    its labelling check; NaN where abandoned), ``chosen``, ``swap_loglik`` (per node, the
    log-likelihood of the labelling not kept at that step minus that of the one kept; NaN where no swap was
    tried or the refit drifted back), ``spare_support`` (per node, 2 (max(L_kept, L_swap) - L_0) - d_j log n),
    ``one_spare_support`` (per node, the largest 2 (L_k - L_0) - d_k log n; either > 0: supported; both NaN where
    not tried or with fixed weights; this one NaN also where ``spare_support`` > 0, the single-regime fits then
    skipped), ``restricted_loglik`` (per node, L_0) and ``relabelled`` (nodes whose swap
    was taken))."""
    x64, par = x.to(torch.float64), parents.to(x.device)
    data = {"x": x64, "parents": par, "learn_weights": learn_weights}
    gen = torch.Generator().manual_seed(int(seed))
    starts = [robust_init(x64, par)] + [random_init(x64, par, gen) for _ in range(max(restarts, 1) - 1)]
    fit = run_em(em_e_step, em_m_step, starts[0], data, max_iter=max_iter, tol=tol, objective=_em_loglik)
    finals = [_check_labels(fit, data, max_iter=max_iter, tol=tol)]
    for s in starts[1:]:
        best = max(f[0].objective[-1] for f in finals if f is not None)
        fit = _run_or_abandon(s, data, best, max_iter=max_iter, tol=tol, chunk=warm_iters)
        finals.append(None if fit is None else _check_labels(fit, data, max_iter=max_iter, tol=tol))
    scores = [float("nan") if f is None else f[0].objective[-1] for f in finals]
    chosen = int(np.nanargmax(scores))  # the first of equals: the robust start wins ties
    fit, labels = finals[chosen]
    info = {"loglik": fit.objective, "restart_logliks": scores, "chosen": chosen, "converged": fit.converged,
            "iterations": fit.iterations, **labels}
    return fit.params, info


def _check_labels(fit: Any, data: Mapping[str, Any], *, max_iter: int, tol: float) -> tuple[Any, dict]:
    """The labelling check of :func:`fit_em` on one converged EM fit: returns the fit kept (``fit`` or a swapped
    refit) and the per-node records (``swap_loglik``, ``spare_support``, ``one_spare_support``,
    ``restricted_loglik``, ``relabelled``)."""
    x, par, learn_weights = data["x"], data["parents"], data["learn_weights"]
    n = x.shape[0]
    swap_ll, support, one_support, restricted, relabelled = [], [], [], [], []

    def not_tried() -> None:  # no swap tried for this node: NaN in every per-node record
        for record in (swap_ll, support, one_support, restricted):
            record.append(float("nan"))

    for j in range(x.shape[1]):
        mass = fit.expectations["r"].mean(0)
        # the swap starts the observational regime at do(j)'s share of the rows: a do(j) regime under half the
        # observational one's share is taken to be the minority it looks like
        if float(mass[j + 1]) < float(mass[0]) / 2:
            not_tried()
            continue
        alt = run_em(em_e_step, em_m_step, swap_labels(fit.params, j), data, max_iter=max_iter, tol=tol,
                     objective=_em_loglik)
        # the refit may drift back to the current labelling (or to another optimum): it is the other labelling only
        # if the two regimes exchanged roles, most of its observational rows being the current do(j) rows or most
        # of its do(j) rows the current observational ones; otherwise no swap was tried
        r_obs = alt.expectations["r"][:, 0]
        if not (_mostly(r_obs, fit.expectations["r"][:, j + 1])
                or _mostly(alt.expectations["r"][:, j + 1], fit.expectations["r"][:, 0])):
            not_tried()
            continue
        l_fit, l_alt = fit.objective[-1], alt.objective[-1]
        delta = l_alt - l_fit
        if learn_weights:
            l_0 = max(fit_restricted(f.params, data, j, max_iter=max_iter, tol=tol).objective[-1]
                      for f in (fit, alt))
            excess = 2 * (max(l_fit, l_alt) - l_0) - spare_params(par, j) * math.log(n)
            one = -math.inf if excess <= 0 else float("nan")
            # each spare regime on its own (needed only when the joint test fails): one real intervention beside
            # do(j) identifies the labels, and charging it for the empty ones' parameters too can hide it
            for k in range(x.shape[1]) if excess <= 0 else ():
                if k != j:
                    l_k = max(fit_restricted(f.params, data, j, max_iter=max_iter, tol=tol, also=(k,)).objective[-1]
                              for f in (fit, alt))
                    one = max(one, 2 * (l_k - l_0) - one_spare_params(par, k) * math.log(n))
        else:  # fixed weights 1/K: no two-regime model is nested in the full one, so no BIC step
            l_0 = excess = one = float("nan")
        if _data_decide(delta, excess if excess > 0 else one):
            take = delta > 0
        else:  # the data cannot tell: interventions are the minority, so the regime holding more rows is observational
            take = float(r_obs.sum()) > float(fit.expectations["r"][:, 0].sum())
        if take:
            fit, delta = alt, -delta
            relabelled.append(j)
        swap_ll.append(delta)
        support.append(excess)
        one_support.append(one)
        restricted.append(l_0)
    return fit, {"swap_loglik": swap_ll, "spare_support": support, "one_spare_support": one_support,
                 "restricted_loglik": restricted, "relabelled": relabelled}


# --------------------------------------------------------------------------------------------------------------
# MLP mechanisms: generalized M-step on fixed responsibilities (warm start before joint SVI)
# --------------------------------------------------------------------------------------------------------------


def pretrain_mlp(x: torch.Tensor, parents: torch.Tensor, r: torch.Tensor, hidden: int, *, steps: int = 300,
                 lr: float = 0.01, batch_size: int = 1024, seed: int = 0) -> dict:
    """Maximize sum_nk r_nk log p(x_n | z_n = k) over MLP mechanisms and scales with Adam on random minibatches
    of ``batch_size`` rows (the generalized M-step of EM with the responsibilities held fixed)."""
    gen = torch.Generator().manual_seed(int(seed))
    p = init_params(parents, "mlp", hidden, dtype=x.dtype, device=x.device, generator=gen)
    p["regime_weights"] = r.mean(0).to(x.dtype)
    raw = {k: v.clone().requires_grad_(True) for k, v in p.items() if k != "regime_weights"}
    for k in ("scale_obs", "scale_int"):
        raw[k] = torch.zeros_like(raw[k], requires_grad=True)
    opt = torch.optim.Adam(list(raw.values()), lr=lr)
    r = r.to(x.dtype)
    n = x.shape[0]
    for _ in range(steps):
        idx = torch.randint(n, (min(batch_size, n),), generator=gen).to(x.device)
        cur = {**raw, "scale_obs": raw["scale_obs"].exp(), "scale_int": raw["scale_int"].exp()}
        loss = -(r[idx] * component_log_lik(cur, x[idx], parents)).sum() / idx.numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = {k: v.detach() for k, v in raw.items()}
    out["scale_obs"], out["scale_int"] = out["scale_obs"].exp(), out["scale_int"].exp()
    out["regime_weights"] = p["regime_weights"]
    return out


# --------------------------------------------------------------------------------------------------------------
# The seed report's method: Gumbel-softmax VAE with cyclical KL annealing (the baseline)
# --------------------------------------------------------------------------------------------------------------


def regime_scm_relaxed_model(
    x: torch.Tensor,
    *,
    parents: torch.Tensor,
    order: Sequence[int],
    names: Sequence[str],
    mechanism: str = "mlp",
    hidden: int = 32,
    temperature: float = 0.5,
    kl_scale: float = 1.0,
    unit_scale: bool = True,
    init: Mapping[str, torch.Tensor] | None = None,
    **_: Any,
) -> None:
    """The report's decoder: z ~ RelaxedOneHotCategorical(T, uniform) (its site scaled by ``kl_scale``), and
    x_i ~ Normal(mu_i(pa_i, z_{i+1}), s_i) with the observed parents fed in (autoregressive, teacher-forced);
    s_i = 1 as in the report (``unit_scale``), else learned."""
    N = parents.shape[0]
    p = _model_params(parents.to(x.device), mechanism, hidden, False, init, x.dtype, x.device)
    uniform = torch.full((N + 1,), 1.0 / (N + 1), dtype=x.dtype, device=x.device)
    # the temperature in x's dtype, as in the guide (torch.tensor(T) first rounded T = 0.7 to float32)
    temp = torch.tensor(temperature, dtype=x.dtype, device=x.device)
    with pyro.plate("obs_id", x.shape[0]):
        with poutine.scale(scale=kl_scale):
            z = pyro.sample("z", dist.RelaxedOneHotCategorical(temp, probs=uniform))
        for i in order:
            flag = z[..., i + 1]
            loc = node_mean(p, i, x, flag, parents.to(x.device))
            scale = p["scale_obs"][i] + flag * (p["scale_int"][i] - p["scale_obs"][i])
            scale = torch.ones_like(scale) if unit_scale else scale
            pyro.sample(names[i], dist.Normal(loc, scale), obs=x[:, i])


def fit_gumbel_softmax(dataset: Dataset, *, steps: int, lr: float = 1e-3, temperature: float = 0.5,
                       cycles: int = 5, ratio: float = 0.5, batch_size: int = 64, seed: int = 0,
                       mechanism: str | None = None) -> tuple[dict, dict, list[float]]:
    """Train the report's VAE with ``Trace_ELBO`` on minibatches of ``batch_size`` (Adam, ``lr``) for ``steps``
    steps, the KL weight following :func:`cyclical_kl_weight`. Runs in float64: the relaxed densities at T = 0.5
    underflow in float32. Returns (mechanism params incl. uniform regime weights, encoder params, losses).

    The VAE is trained on the standardized columns x' = (x - m) / s (column means m, sds s): fed as given, a column
    with a large offset or spread (1000 + N(0, 1), 300 N(0, 1)) sent the encoder's logits to NaN and Pyro's
    Categorical stopped with a ValueError. The fitted parameters are mapped back exactly to the data's units by
    :func:`_unstandardized` (so the decoder's unit variance is in standardized units: s_i on the data's scale), and
    ``losses`` are those of the standardized data (per row, sum_i log s_i above the data's)."""
    inp = dataset.inputs
    x_raw = dataset.observed["x"].to(torch.float64)
    centre, spread = x_raw.mean(0), x_raw.std(0)
    spread = torch.where(spread > 0, spread, torch.ones_like(spread))  # constant columns are refused earlier
    x = (x_raw - centre) / spread
    mechanism = mechanism or inp["mechanism"]
    kw = {"parents": inp["parents"], "order": inp["order"], "names": inp["names"], "mechanism": mechanism,
          "hidden": inp["hidden"], "temperature": temperature}
    guide = make_gumbel_guide(inp["hidden"], temperature)
    svi = pyro.infer.SVI(regime_scm_relaxed_model, guide, pyro.optim.Adam({"lr": lr}), pyro.infer.Trace_ELBO())
    gen = torch.Generator().manual_seed(int(seed))
    n = x.shape[0]
    perm = torch.randperm(n, generator=gen)
    losses = []
    pos = 0
    for step in range(steps):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos : pos + batch_size].to(x.device)
        pos += batch_size
        beta = max(cyclical_kl_weight(step, steps, cycles, ratio), 1e-4)
        losses.append(svi.step(x[idx], kl_scale=beta, **kw) / len(idx))
    names = [k for k in pyro.get_param_store() if not k.startswith("enc_")]
    params = _param_store_values(names)
    params["regime_weights"] = torch.full((len(inp["names"]) + 1,), 1.0 / (len(inp["names"]) + 1),
                                          dtype=torch.float64)
    encoder = _param_store_values(list(ENC_LAYERS))
    params, encoder = _unstandardized(params, encoder, centre, spread, inp["parents"].to(x.device))
    return params, encoder, losses


def _unstandardized(params: Mapping[str, torch.Tensor], encoder: Mapping[str, torch.Tensor], m: torch.Tensor,
                    s: torch.Tensor, parents: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Mechanisms and encoder fitted on x' = (x - m) / s mapped to the same model on x (float64). A mean mu'_i(x')
    on x' is mu_i(x) = m_i + s_i mu'_i((x - m) / s), and scales become s_i sigma'_i. Linear: W_ji = s_i W'_ji / s_j
    and b_i = m_i + s_i b'_i - sum_j W_ji m_j (parents j). MLP: the first layer's parent rows W1_i[j] / s_j, its
    bias b1_i - sum_j (m_j / s_j) W1_i[j] (parents j; the flag row unchanged), the output layer s_i w_out_i and
    m_i + s_i b_out_i. Encoder: first layer W1 / s (rows) and bias b1 - (m / s)' W1. Exact up to rounding: the
    log-likelihood on x is the one on x' minus sum_i log s_i per row, and the regime posteriors are the same."""
    q = {k: v.to(torch.float64) for k, v in params.items()}
    m, s = m.to(torch.float64), s.to(torch.float64)
    mask = parents.to(m.device, torch.float64)
    for k in ("scale_obs", "scale_int"):
        q[k] = s * q[k]
    if "W_obs" in q:
        for v in ("obs", "int"):
            W = q[f"W_{v}"] * mask * s[None, :] / s[:, None]
            q[f"W_{v}"], q[f"loc_{v}"] = W, m + s * q[f"loc_{v}"] - m @ W
    else:
        W1 = q["W1"].clone()  # (N, N + 1, hidden): node i's inputs are the N variables (parents read) and the flag
        rows = W1[:, :-1, :] * mask.T[:, :, None]  # node i, input j: parent rows only
        q["b1"] = q["b1"] - torch.einsum("j,ijh->ih", m / s, rows)
        W1[:, :-1, :] = W1[:, :-1, :] / s[None, :, None]
        q["W1"] = W1
        q["w_out"], q["b_out"] = s[:, None] * q["w_out"], m + s * q["b_out"]
    enc = {k: v.to(torch.float64) for k, v in encoder.items()}
    enc["enc_b1"] = enc["enc_b1"] - (m / s) @ enc["enc_W1"]
    enc["enc_W1"] = enc["enc_W1"] / s[:, None]
    return q, enc


# --------------------------------------------------------------------------------------------------------------
# Fitting: em | enum | amortized | gumbel, all ending in one Result
# --------------------------------------------------------------------------------------------------------------

FIT_DEFAULTS = {"restarts": 4, "em_iters": 200, "pretrain_steps": 400, "subsample_size": 0, "temperature": 0.5,
                "kl_cycles": 5, "kl_ratio": 0.5, "batch_size": 64}


def _param_store_values(names: Sequence[str]) -> dict[str, torch.Tensor]:
    store = pyro.get_param_store()
    return {k: pyro.param(k).detach().clone() for k in names if k in store}


def _warm_start(dataset: Dataset, *, restarts: int, em_iters: int, pretrain_steps: int, seed: int) -> tuple:
    inp = dataset.inputs
    x = dataset.observed["x"]
    params, info = fit_em(x, inp["parents"], learn_weights=inp["learn_weights"], restarts=restarts,
                          max_iter=em_iters, seed=seed)
    r = em_e_step(params, {"x": x.to(torch.float64), "parents": inp["parents"].to(x.device)})["r"]
    if inp["mechanism"] == "mlp":
        params = pretrain_mlp(x, inp["parents"].to(x.device), r, inp["hidden"], steps=pretrain_steps, seed=seed)
    if not inp["learn_weights"]:
        params["regime_weights"] = torch.full_like(params["regime_weights"], 1.0 / params["regime_weights"].numel())
    return {k: v.to(x.dtype) for k, v in params.items()}, r.to(x.dtype), info


def _check_fit_options(o: dict[str, Any]) -> dict[str, Any]:
    """The fitting options of :data:`FIT_DEFAULTS`, checked before any work (a zero batch or restart count would
    otherwise fail deep inside Pyro or be silently replaced)."""
    o = dict(o)
    for k, lo in (("restarts", 1), ("em_iters", 1), ("pretrain_steps", 0), ("subsample_size", 0),
                  ("kl_cycles", 1), ("batch_size", 1)):
        o[k] = check_int(k, o[k], minimum=lo)
    check_positive("temperature", o["temperature"])
    check_probability("kl_ratio", o["kl_ratio"])
    return o


# the fitting and model options that only some inferences read (the others, mechanism among them, are read by all):
# registered as the entry's ``inference_options``, so giving one to another inference is an error, not a no-op
REGIME_INFERENCE_OPTIONS = {
    "restarts": ("enum", "amortized", "em"),  # the EM warm start (gumbel starts from random weights)
    "em_iters": ("enum", "amortized", "em"),
    "learn_weights": ("enum", "amortized", "em"),  # gumbel's prior over z is uniform, as in the report
    "subsample_size": ("enum", "amortized"),  # the joint SVI's minibatch (gumbel's is batch_size)
    # enum reads these two only with mechanism="mlp" (check_regime_options); amortized and gumbel for the encoder
    "pretrain_steps": ("enum", "amortized"),  # MLPs' generalized M-step; amortized: the encoder's distillation
    "hidden": ("enum", "amortized", "gumbel"),  # MLP mechanisms' width; amortized/gumbel: the encoder's width
    **{k: ("gumbel",) for k in ("temperature", "kl_cycles", "kl_ratio", "batch_size")},
}
# what an option read by enum only with MLP mechanisms does otherwise, for the message that refuses it
MLP_ONLY_IN_ENUM = {"hidden": "the encoder of amortized or gumbel", "pretrain_steps": "the encoder of amortized"}


def check_regime_options(opts: Mapping[str, Any], inference: str, *, steps: int | None = None,
                         fixed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``opts`` (the options given) merged with the defaults of :data:`FIT_DEFAULTS` and :data:`MODEL_DEFAULTS` and
    checked before any work: the fitting options, the model options (``mechanism``, ``hidden``, ``learn_weights``;
    ``fixed``: those a dataset already holds, which fill in the ones not given), em's linear-only M-steps, and the
    options and ``steps`` that would have no effect: ``hidden`` or ``pretrain_steps`` given to enum with linear
    mechanisms, ``subsample_size`` given to enum with ``steps`` 0 (the EM warm start alone), and ``steps`` 0 for
    amortized (EM alone, its encoder never fitted) or gumbel (an untrained VAE). Which inference reads an option at
    all is :data:`REGIME_INFERENCE_OPTIONS` (the entry's ``inference_options``, checked by ``check_config``).

    The entry's ``check_options`` runs it on a config's options (``pyrozoo run`` and every sweep cell, before the
    data are simulated or read); :func:`fit_regime_scm` on its options with the dataset's model options."""
    model = {k: opts.get(k, (fixed or {}).get(k, v)) for k, v in MODEL_DEFAULTS.items()}
    model["hidden"] = _check_model_options(**model)
    if inference == "em" and model["mechanism"] != "linear":
        raise PyrozooError(f"inference: em has closed-form M-steps only for mechanism='linear', got "
                           f"mechanism={model['mechanism']!r}; use enum, amortized or gumbel for "
                           f"{model['mechanism']}")
    fit = _check_fit_options({**FIT_DEFAULTS, **{k: v for k, v in opts.items() if k in FIT_DEFAULTS}})
    if steps is not None and steps == 0 and inference in ("amortized", "gumbel"):
        why = ("its encoder q(z | x) is fitted by the joint SVI, and with 0 steps the run would be the EM warm start "
               "alone: for that use inference em, or enum with steps 0" if inference == "amortized"
               else "it trains the report's VAE from random weights, with no warm start")
        raise PyrozooError(f"steps: {inference} needs steps >= 1, got 0 ({why})")
    linear_enum = inference == "enum" and model["mechanism"] == "linear"
    unused = [k for k in MLP_ONLY_IN_ENUM if k in opts] if linear_enum else []
    if unused:
        parts = [f"{k} applies only to mechanism='mlp' or to {MLP_ONLY_IN_ENUM[k]}" for k in unused]
        it, them = ("it", "it") if len(unused) == 1 else ("they", "them")
        raise PyrozooError(f"options: {'; '.join(parts)}; with enum and mechanism='linear' {it} would have no "
                           f"effect (remove {them})")
    if inference == "enum" and steps == 0 and "subsample_size" in opts:
        raise PyrozooError("options: subsample_size applies only to enum's SVI steps; with steps 0 (the EM warm "
                           "start alone) it would have no effect (remove it)")
    return {**fit, **model}


def _check_run_options(config: RunConfig) -> None:
    """The entry's ``check_options``: :func:`check_regime_options` on the config's options, inference and steps,
    and a DAG for a data file (``graph``), parsed before the file is read."""
    check_regime_options(config.options, config.inference, steps=config.steps)
    if config.data is not None:
        parse_graph(config.options.get("graph", ""), required=True)
        parse_columns(config.options.get("columns", ""))


def _min_rows(parents: torch.Tensor) -> int:
    """The fewest rows :func:`fit_regime_scm` accepts for the parent mask ``parents``: (N + 1) (p_max + 3), p_max
    the largest number of parents of one variable.

    The model has K = N + 1 regimes, and each linear mechanism version has |pa_i| + 2 parameters (intercept,
    weights, scale). The intervened version of mechanism i is fitted (weighted least squares) on regime i's rows
    alone, about n / K of them when the regimes are balanced; each needs more rows than parameters, p_max + 3 at
    least, or its residual scale is 0 (clamped) and the regime probabilities are one-hot by construction. The old
    minimum, N + 1 rows, let 4 rows of 3 variables through to exactly that degenerate fit."""
    return (parents.shape[0] + 1) * (int(parents.sum(0).max()) + 3)


def _check_enough_rows(dataset: Dataset) -> None:
    parents, n = dataset.inputs["parents"], dataset.observed["x"].shape[0]
    need = _min_rows(parents)
    if n < need:
        n_vars, largest = parents.shape[0], int(parents.sum(0).max())
        raise PyrozooError(f"x: expected at least {need} rows to fit {n_vars} variables whose largest parent set has "
                           f"{largest} variable(s) ({n_vars + 1} regimes x {largest + 3} rows, more than the "
                           f"{largest + 2} parameters of the largest mechanism in each regime), got {n}")


def _data_source(dataset: Any) -> str:
    """Where ``dataset`` came from, by its provenance (``meta``): ``"simulator"`` (:func:`simulate_regime_data`),
    ``"file"`` (:func:`read_regime_file`) or ``"python"`` (:func:`make_regime_dataset` called directly)."""
    meta = getattr(dataset, "meta", None)
    meta = meta if isinstance(meta, Mapping) else {}
    return "simulator" if "simulator" in meta else "file" if "file" in meta else "python"


def _check_data_options(opts: Mapping[str, Any], dataset: Dataset) -> None:
    """Raise unless the options that make the data (the simulator's; a file's ``graph`` and ``columns``), where
    given, are those ``dataset`` was made with: the fit cannot change them. Which options its source reads at all
    is ``check_config``'s (with the source from :func:`_data_source`)."""
    meta = dataset.meta
    if "simulator" in meta:
        made, how, again = meta["simulator"], "simulated", "simulate_regime_data(seed, ...)"
        differ = [k for k in SIMULATOR_DEFAULTS if k in opts and opts[k] != made[k]]
    elif "file" in meta:
        made, how, again = meta["file"], f"read from {meta['file']['path']}", "read_regime_file(path, seed, ...)"
        parse = {"graph": lambda v: tuple(map(set, parse_graph(v))), "columns": parse_columns}
        differ = [k for k in FILE_OPTIONS if k in opts and parse[k](opts[k]) != parse[k](made[k])]
    else:
        return
    if differ:
        it = "it" if len(differ) == 1 else "them"
        raise PyrozooError(f"{', '.join(differ)}: the dataset was {how} with "
                           f"{', '.join(f'{k}={made[k]!r}' for k in differ)} and the fit cannot change {it}; got "
                           f"{', '.join(f'{k}={opts[k]!r}' for k in differ)} in the options. Make the dataset with "
                           f"{it} instead ({again}), or leave {it} out")


@keeps_caller_state
def fit_regime_scm(dataset: Dataset, config: RunConfig, **opts: Any) -> Result:
    """Fit with ``config.inference``:

    * ``enum`` (default): EM warm start (restarts), then ``TraceEnum_ELBO`` with z enumerated in the model and
      point-estimated mechanisms; the ELBO equals the marginal log-likelihood. ``steps`` 0 stops after the warm
      start;
    * ``amortized``: EM warm start, encoder q(z | x) distilled from the EM responsibilities, then joint
      ``TraceEnum_ELBO`` with z enumerated in the guide (the expectation over z is exact); ``steps`` >= 1. With
      linear mechanisms both keep the EM start or the SVI's end, whichever has the higher exact marginal
      log-likelihood (:func:`_better_of`; ``fit_stats`` ``kept_warm_start``);
    * ``gumbel``: the seed report's Gumbel-softmax VAE (no warm start; the baseline); ``steps`` >= 1;
    * ``em``: EM alone (linear mechanisms).

    The result's posterior holds the point estimates as one chain of one draw (plus the per-sample regime
    posterior ``regime_probs``); its log-likelihood is the exact marginal over z. An EM (em, or the warm start) that
    stops at ``em_iters`` before converging warns; ``fit_stats`` records ``em_converged`` and ``em_iterations``.

    It runs on ``config.device`` (``"auto"``: CUDA when present; ``"cuda"`` without CUDA is refused before any work)
    and the result's config records the device used. A fit needs at least (N + 1) (p_max + 3) rows, p_max the
    largest parent set (see :func:`_min_rows`).

    ``config.model`` must be ``"regime-scm"``. The options that make the data are checked against the dataset's
    provenance, not ``config.data``: simulator options (``n_vars`` ...) apply only to a simulated dataset and must
    be the values it was simulated with, ``graph`` and ``columns`` only to one read by :func:`read_regime_file`
    and must be those it was read with; neither applies to a dataset built by :func:`make_regime_dataset`.
    """
    entry = get("regime-scm")
    model = getattr(config, "model", None)
    if model != "regime-scm":
        raise PyrozooError(f"config.model: fit_regime_scm fits 'regime-scm', got {model!r}; use "
                           f"RunConfig(model='regime-scm', ...) (or registry.get({model!r}).fit for that model)")
    # a direct call gets run_model's checks (known options of the right types, each read by the inference, and by
    # the dataset's source: config.data is None here even for a dataset read from a file); the family's
    # (check_regime_options) come below, once the dataset's model options are known
    source = _data_source(dataset)
    config = entry.check_config(config, family=False, source=source)
    if opts:  # keyword arguments override the config's options, and get the same checks (a misspelt one is refused)
        config = entry.check_config(dataclasses.replace(config, options={**config.options, **opts}), family=False,
                                    source=source)
    opts = config.options
    inference = config.inference
    check_dataset("dataset", dataset, "regime-scm", inputs=DATASET_INPUTS,
                  observed=("x",), made_by="make_regime_dataset")
    _check_data_options(opts, dataset)
    inp = dataset.inputs
    # the function that built the dataset, whose argument sets these options (a file's: read_regime_file)
    builder = {"simulator": "simulate_regime_data(seed", "file": "read_regime_file(path, seed",
               "python": "make_regime_dataset(x, graph"}[source]
    for key in MODEL_DEFAULTS:  # fixed when the dataset is built, not by the fit
        if key in opts and key in inp and opts[key] != inp[key]:
            raise PyrozooError(f"{key}: the dataset was built with {key}={inp[key]!r} and the fit cannot change it; "
                               f"got {opts[key]!r} in the options. Build the dataset with it instead "
                               f"({builder}, ..., {key}={opts[key]!r}))")
    o = check_regime_options(opts, inference, steps=config.steps, fixed={k: inp[k] for k in MODEL_DEFAULTS})
    _check_enough_rows(dataset)
    # before any work: "cuda" on a machine without it is refused here (it used to run on the CPU and record "cuda")
    device = resolve_device(config.device)
    dataset = dataset.to(device)
    inp = dataset.inputs
    config = dataclasses.replace(config, device=str(device))  # the result records where it ran
    x = dataset.observed["x"]
    t0 = time.perf_counter()
    set_seed(config.seed)
    fit_stats: dict[str, Any] = {}
    labels_note = early_note = em_note = ""
    model_kwargs = dataset.model_kwargs()
    encoder = None
    if inference == "gumbel":
        params, encoder, losses = fit_gumbel_softmax(
            dataset, steps=config.steps, lr=config.lr or 1e-3, temperature=o["temperature"],
            cycles=o["kl_cycles"], ratio=o["kl_ratio"], batch_size=o["batch_size"], seed=config.seed)
        params = {k: v.to(x.dtype) for k, v in params.items()}
        encoder = {k: v.to(x.dtype) for k, v in encoder.items()}
        fit_stats["loss"] = losses
    else:
        params, r, info = _warm_start(dataset, restarts=o["restarts"], em_iters=o["em_iters"],
                                      pretrain_steps=o["pretrain_steps"], seed=config.seed)
        fit_stats["em_loglik"] = info["loglik"]
        # whether the kept EM fit met its convergence test within em_iters, and its iterations (1-element traces)
        fit_stats["em_converged"] = [bool(info["converged"])]
        fit_stats["em_iterations"] = [int(info["iterations"])]
        fit_stats["restart_loglik"] = info["restart_logliks"]
        fit_stats["label_swap_loglik"] = info["swap_loglik"]
        fit_stats["label_spare_support"] = info["spare_support"]
        fit_stats["label_one_spare_support"] = info["one_spare_support"]
        labels_note = _exchangeable_note(info, inp["names"])
        em_note = em_not_converged_note(info, o["em_iters"], inference, config.steps)
        if inference in ("enum", "amortized") and config.steps > 0:
            # Adam's steps are not invariant to adding a constant to a column (a step of 0.005 on a parent's weight
            # moved its child's mean by 50 at an offset of 1e4, and the fit ended 170 nats below the EM's): linear
            # mechanisms and the encoder are fitted on the data centred at the column means, then mapped back
            centre = x.to(torch.float64).mean(0) if inp["mechanism"] == "linear" else None
            xs = x if centre is None else (x.to(torch.float64) - centre).to(x.dtype)
            guide = exact_enumeration_guide
            start = dict(params)
            init = dict(params) if centre is None else _centred(params, centre, inp["parents"])
            if inference == "amortized":
                init.update(distill_encoder(xs, r, hidden=inp["hidden"], steps=o["pretrain_steps"], seed=config.seed))
                guide = make_amortized_guide(inp["hidden"])  # shares the model's subsample through the plate
            # subsample_size 0: full batch for linear mechanisms (EM already sits at the optimum, minibatch noise
            # would only move away from it), minibatches of 1024 for MLPs (a full-batch MLP step costs ~0.5 s)
            sub = o["subsample_size"] or (1024 if inp["mechanism"] == "mlp" else 0)
            sub = sub if 0 < sub < x.shape[0] else None
            # only the fitted params and the loss are kept (the result is built below), so run_svi's own result
            # carries no log-likelihood: its size check would count every observed value (n x variables, not the n
            # rows of regime-scm's joint one) and could refuse a run that run_model's check let through
            with without_log_likelihood():
                svi = run_svi(regime_scm_model, guide,
                              {**model_kwargs, "x": xs, "init": init, "subsample_size": sub},
                              num_steps=config.steps, elbo="enum", lr=config.lr or 0.005, num_samples=1,
                              seed=config.seed, progress=config.progress,
                              early_stop_window=None if sub else EARLY_STOP_WINDOW,
                              early_stop_rel_tol=EARLY_STOP_REL_TOL, log_likelihood_fn=lambda post, kw: {})
            fit_stats["loss"] = svi.fit_stats["loss"]
            if len(fit_stats["loss"]) < config.steps:  # full batch: stopped on a plateau (fit_stats.loss's length)
                early_note = early_stop_note(len(fit_stats["loss"]), config.steps)
            params = _param_store_values(list(params))
            if not inp["learn_weights"]:
                params["regime_weights"] = init["regime_weights"]
            if inference == "amortized":
                encoder = _param_store_values([k for k in pyro.get_param_store() if k.startswith("enc_")])
            if centre is not None:
                params, encoder = _uncentred(params, encoder, centre, inp["parents"])
                # linear mechanisms: the warm start is the same model's EM fit, and the joint SVI's objective is the
                # exact marginal log-likelihood (enum; amortized's model parameters are judged by it too), so the
                # better of the two by that log-likelihood is kept (Adam can end a little below EM's maximum)
                start_encoder = None
                if inference == "amortized":
                    start_encoder = _uncentred(start, {k: v for k, v in init.items() if k.startswith("enc_")},
                                               centre, inp["parents"])[1]
                params, encoder, kept = _better_of(start, start_encoder, params, encoder, x, inp["parents"])
                fit_stats.update({k: [v] for k, v in kept.items()})
                if em_note:
                    em_note += (" The joint SVI ended below it, so the EM point was kept." if kept["kept_warm_start"]
                                else " The joint SVI improved on it, and its end was kept.")
    result = _to_result(inference, dataset, params, encoder, fit_stats, config, time.perf_counter() - t0)
    if early_note:
        result.attrs["svi_early_stop"] = early_note
    if "em_converged" in fit_stats:  # as spike-slab's EM results: one value per draw (one chain of one draw here)
        result.sample_stats["em_converged"] = np.full((1, 1), fit_stats["em_converged"][0])
    if em_note:
        result.attrs["em_not_converged"] = em_note
        warnings.warn(f"regime-scm: {em_note}", UserWarning, stacklevel=3)  # past keeps_caller_state
    if labels_note:
        result.attrs["regime_labels"] = labels_note
        warnings.warn(f"regime labels: {labels_note}", UserWarning, stacklevel=3)  # past keeps_caller_state
    return result


# the joint SVI of enum and amortized on every row (no subsample) stops once the mean loss of the last
# EARLY_STOP_WINDOW steps improves on the window before by less than EARLY_STOP_REL_TOL (relative)
EARLY_STOP_WINDOW = 20
EARLY_STOP_REL_TOL = 1e-5


def early_stop_note(taken: int, steps: int) -> str:
    """The result's ``attrs["svi_early_stop"]``: the joint SVI ran ``taken`` of its ``steps`` (``--steps``)."""
    return (f"the joint SVI stopped early, after {taken} of {steps} steps (--steps): the mean loss of the last "
            f"{EARLY_STOP_WINDOW} steps improved on the {EARLY_STOP_WINDOW} before by less than "
            f"{EARLY_STOP_REL_TOL:g} (relative); fit_stats.loss holds the steps taken")


def _better_of(start: Mapping[str, torch.Tensor], start_encoder: Mapping[str, torch.Tensor] | None,
               end: Mapping[str, torch.Tensor], end_encoder: Mapping[str, torch.Tensor] | None, x: torch.Tensor,
               parents: torch.Tensor) -> tuple[dict, dict | None, dict[str, Any]]:
    """The EM warm start (``start``, with the encoder distilled from its responsibilities) or the joint SVI's end,
    whichever has the higher exact marginal log-likelihood sum_n log p(x_n) (float64; the SVI's end on ties), and the
    record for ``fit_stats``: ``warm_start_loglik``, ``svi_end_loglik`` and ``kept_warm_start``."""
    x64, par = x.to(torch.float64), parents.to(x.device)
    with torch.no_grad():
        l_start, l_end = (float(marginal_log_lik({k: v.to(x.device, torch.float64) for k, v in p.items()}, x64,
                                                 par).sum()) for p in (start, end))
    keep_start = l_start > l_end
    record = {"warm_start_loglik": l_start, "svi_end_loglik": l_end, "kept_warm_start": keep_start}
    if keep_start:
        return dict(start), (dict(start_encoder) if start_encoder is not None else None), record
    return dict(end), end_encoder, record


def em_not_converged_note(info: Mapping[str, Any], em_iters: int, inference: str, steps: int) -> str:
    """The warning (and ``attrs["em_not_converged"]``) when the kept EM fit of :func:`fit_em` (``info``) stopped at
    ``em_iters`` without meeting its convergence test; empty when it converged. It says how far the log-likelihood
    still moved in the last iteration, and that a larger ``em_iters`` lets the kept restart converge but promises no
    higher log-likelihood: the restarts' abandonment horizon (:func:`_run_or_abandon`) depends on ``em_iters``, so
    another restart may be kept (``n_vars=4 n_samples=1000 shift=1``, seed 0: -5963.80 at 200 unconverged,
    -5966.46 at 400 converged)."""
    if info["converged"]:
        return ""
    trace = info["loglik"]
    gain = f"; its last iteration still raised the log-likelihood by {trace[-1] - trace[-2]:.3g} nats" \
        if len(trace) > 1 else ""
    then = (f" The joint SVI ({inference}) started from this point." if inference in ("enum", "amortized") and steps
            else "")
    return (f"the EM stopped at em_iters={em_iters} iterations before converging{gain} (final log-likelihood "
            f"{trace[-1]:.6g}), so the fit may fall short of its local optimum.{then} A larger em_iters (e.g. -o "
            f"em_iters={max(2 * em_iters, FIT_DEFAULTS['em_iters'])}) lets the kept restart converge, but the "
            f"restarts may then end elsewhere, even at a lower log-likelihood: compare the final log-likelihoods "
            f"(fit_stats['em_converged'] and fit_stats['em_iterations'] record this one's).")


def _centred(params: Mapping[str, torch.Tensor], m: torch.Tensor, parents: torch.Tensor) -> dict[str, torch.Tensor]:
    """Linear mechanisms for the data x - m: mu_i(x) - m_i = (b_i + sum_j W_ji m_j - m_i) + sum_j W_ji (x_j - m_j),
    so each intercept becomes b_i + (m' W)_i - m_i (parents only); weights and scales are unchanged."""
    q = dict(params)
    mask = parents.to(m.device, torch.float64)
    for v in ("obs", "int"):
        loc, W = params[f"loc_{v}"], params[f"W_{v}"]
        q[f"loc_{v}"] = (loc.to(torch.float64) + m @ (W.to(torch.float64) * mask) - m).to(loc.dtype)
    return q


def _uncentred(params: Mapping[str, torch.Tensor], encoder: Mapping[str, torch.Tensor] | None, m: torch.Tensor,
               parents: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """The inverse of :func:`_centred`, which is :func:`_centred` by -m (intercepts b_i - (m' W)_i + m_i), and an
    encoder fitted on x - m as one on x: its first layer's bias b1 - m' W1."""
    q = _centred(params, -m, parents)
    if encoder is not None:
        encoder = dict(encoder)
        b1, W1 = encoder["enc_b1"], encoder["enc_W1"]
        encoder["enc_b1"] = (b1.to(torch.float64) - m @ W1.to(torch.float64)).to(b1.dtype)
    return q, encoder


def _exchangeable_note(info: Mapping[str, Any], names: Sequence[str]) -> str:
    """The note for the nodes j whose labelling the convention decided (:func:`_data_decide` false): the two
    labellings within :data:`LABEL_NULL_BOUND` nats with the spare regimes not supported by BIC (or not tested, with
    fixed weights), or within :data:`LABEL_SWAP_TOL` nats although supported (told apart only weakly). Empty when
    none; NaN (no swap tried, or the refit drifted back) is neither."""
    support = [max(s, o) for s, o in zip(info["spare_support"], info["one_spare_support"], strict=True)]
    swap = info["swap_loglik"]
    same = [(names[j], d, s) for j, (s, d) in enumerate(zip(support, swap, strict=True))
            if not math.isnan(d) and not _data_decide(d, s) and not s > 0]
    weak = [(names[j], d) for j, (s, d) in enumerate(zip(support, swap, strict=True))
            if not math.isnan(d) and not _data_decide(d, s) and s > 0]

    def kept(n: str, d: float) -> str:  # d: the other labelling's log-likelihood minus the kept one's
        return f"do({n}) (the labelling kept {abs(d):.2f} nats {'below' if d > 0 else 'above'} the other)"

    parts = []
    if same:
        said = " and ".join(kept(n, d) for n, d, _ in same)
        bic = ("spare regimes with fixed weights are not tested by BIC" if all(math.isnan(s) for *_, s in same) else
               "they do not improve on the model without them by BIC")
        parts.append(
            f"the observational regime and {said} are exchangeable: the other regimes are the only ones that tell the "
            f"two labels apart, {bic}, and the two labellings' log-likelihoods are within {LABEL_NULL_BOUND:g} nats, "
            f"a gap that spare regimes fitting noise alone reach, so the likelihood does not tell which is "
            f"observational. By convention (interventions are the minority) the one holding more rows is labelled "
            f"observational, even where the other labelling fits better; if interventions can be the majority, these "
            f"two labels may be the other way round")
    if weak:
        said = " and ".join(kept(n, d) for n, d in weak)
        parts.append(f"the observational regime and {said} are told apart only weakly: the two labellings' "
                     f"log-likelihoods are within {LABEL_SWAP_TOL:g} nats, so by convention (interventions are the "
                     f"minority) the one holding more rows is labelled observational, even where the other labelling "
                     f"fits better")
    if not parts:
        return ""
    return "; ".join(parts) + " (fit_stats['label_swap_loglik'], fit_stats['label_spare_support'])"


def regime_log_likelihood_size(dataset: Dataset) -> int:
    """The pointwise log-likelihood's values per draw: one per row of x (n), the marginal over the regime joint
    over the row's variables, not one per observed value (n x variables) as the model's per-variable sites would
    give: what the run's size check counts (the entry's ``log_likelihood_size``) and :func:`_to_result` builds."""
    return int(dataset.observed["x"].shape[0])


class StackedPredictive:
    """The Result's ``predictive_fn``: the per-variable sites ``x1..xN`` of ``per_site`` (the model's
    :class:`~pyrozoo.inference.assemble.PosteriorPredictive`) stacked into one ``x`` of shape
    ``(chain, draw, obs_id, variable)``, as the observed data. A module-level class, so that the Result pickles."""

    def __init__(self, per_site: Callable[[Result], Mapping[str, Any]], names: list[str]) -> None:
        self.per_site, self.names = per_site, list(names)

    def __call__(self, result: Result) -> dict[str, np.ndarray]:
        out = dict(self.per_site(result))
        out["x"] = np.stack([np.asarray(out.pop(n)) for n in self.names], -1)
        return out


def _to_result(inference: str, dataset: Dataset, params: dict, encoder: dict | None, fit_stats: dict,
               config: RunConfig, wall: float) -> Result:
    inp = dataset.inputs
    x = dataset.observed["x"]
    params = {k: v.to(x.device, x.dtype) for k, v in params.items()}
    parents = inp["parents"].to(x.device)
    with torch.no_grad():
        probs = regime_posterior(params, x, parents)
        loglik = marginal_log_lik(params, x, parents)
        enc_probs = torch.softmax(encoder_logits(encoder, x), -1) if encoder else None
    # The regime posterior reported is the exact one under the fitted mechanisms; the amortized/Gumbel encoder's
    # q(z | x) is kept alongside (``encoder_probs``) so the two can be compared.
    posterior = {k: v[None, None] for k, v in params.items()}
    posterior["regime_probs"] = probs[None, None]
    if enc_probs is not None:
        posterior["encoder_probs"] = enc_probs[None, None]
    fixed = dict(params)

    def ll_fn(_: Mapping[str, torch.Tensor], __: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {"x": loglik.detach().cpu().numpy()[None, None]}

    model = partial(regime_scm_model, params=fixed)
    result = assemble_result(inference, model, dataset.model_kwargs(), posterior, log_likelihood_fn=ll_fn,
                             log_likelihood_size=regime_log_likelihood_size(dataset),
                             fit_stats=fit_stats, params={**{k: v.cpu() for k, v in params.items()},
                                                          "regime_probs": probs.cpu()},
                             seed=config.seed, wall_time=wall, config=config.to_dict(), model_name="regime-scm")
    names = inp["names"]
    # One observed variable x (obs_id, variable) for ArviZ instead of the model's per-variable sites x1..xN: the
    # log-likelihood is joint over the variables (marginal over the regime), and the posterior predictive gets the
    # same stacked x, so az.loo and az.plot_ppc both find it and the data are stored once (one variable's panel:
    # az.plot_ppc(idata, coords={"variable": ["x1"]})). The data are not constant data.
    for n in names:
        result.observed_data.pop(n, None)
    result.observed_data["x"] = x.detach().cpu().numpy()
    result.constant_data.pop("x", None)
    result.predictive_fn = StackedPredictive(result.predictive_fn, list(names))
    result.coords = {"regime": ["observational"] + [f"do({c})" for c in names], "variable": list(names),
                     "parent": list(names)}
    if "W1" in posterior:
        result.coords["mlp_input"] = [*names, MLP_FLAG_INPUT]
    dims = {"regime_probs": ["obs_id", "regime"], "encoder_probs": ["obs_id", "regime"], "x": ["obs_id", "variable"],
            "regime_weights": ["regime"], "scale_obs": ["variable"], "scale_int": ["variable"],
            "loc_obs": ["variable"], "loc_int": ["variable"], "W_obs": ["parent", "variable"],
            "W_int": ["parent", "variable"], "b_out": ["variable"], "parents": ["parent", "variable"], **MLP_DIMS}
    result.dims.update({k: v for k, v in dims.items() if k in posterior or k in ("x", "parents")})
    result.dims.setdefault("x", ["obs_id", "variable"])
    return result


# --------------------------------------------------------------------------------------------------------------
# Outputs: regimes, mechanisms, do()-sampling, metrics
# --------------------------------------------------------------------------------------------------------------


def fitted_params(result: Result) -> dict[str, torch.Tensor]:
    """The point-estimated mechanisms and regime weights of a fitted result, as tensors."""
    return {k: torch.as_tensor(v) for k, v in result.params.items() if k not in ("regime_probs",)}


def map_regime(result: Result) -> np.ndarray:
    """MAP regime per sample (0 = observational, k = intervention on the k-th variable)."""
    return np.asarray(result.params["regime_probs"]).argmax(-1)


def regime_table(result: Result, dataset: Dataset) -> pd.DataFrame:
    """One row per latent regime: label (observational / do(target)), target variable, fitted weight, samples
    assigned (MAP), and the intervened-minus-observational mean shift of its target on the samples assigned.
    ``dataset`` must hold the rows, variables, graph and mechanism ``result`` was fitted on."""
    _check_fitted_on(result, dataset, rows=True)
    names = dataset.inputs["names"]
    p = fitted_params(result)
    x = dataset.observed["x"].cpu().to(torch.float64)
    with torch.no_grad():
        mu0, mu1 = all_means({k: v.to(torch.float64) for k, v in p.items()}, x, dataset.inputs["parents"].cpu())
    zmap = map_regime(result)
    rows = []
    for k in range(len(names) + 1):
        sel = zmap == k
        shift = float((mu1 - mu0)[sel, k - 1].mean()) if k and sel.any() else float("nan")
        rows.append({"regime": k, "label": "observational" if k == 0 else f"do({names[k - 1]})",
                     "target": None if k == 0 else names[k - 1], "weight": float(p["regime_weights"][k]),
                     "n_assigned": int(sel.sum()), "mean_shift": shift})
    return pd.DataFrame(rows)


def mechanisms_table(result: Result, dataset: Dataset) -> pd.DataFrame:
    """Linear mechanisms as one row per (variable, version): intercept, scale and parent weights. ``dataset`` must
    hold the variables, graph and mechanism ``result`` was fitted on (its rows are not read)."""
    _check_fitted_on(result, dataset)
    p = fitted_params(result)
    if "W_obs" not in p:
        raise PyrozooError("mechanisms_table: only linear mechanisms have weights; MLP ones are in result.params")
    names, parents = dataset.inputs["names"], dataset.inputs["parents"].cpu()
    rows = []
    for i, name in enumerate(names):
        for v in ("obs", "int"):
            row = {"variable": name, "version": v, "intercept": float(p[f"loc_{v}"][i]),
                   "scale": float(p[f"scale_{v}"][i])}
            row.update({f"w[{names[j]}]": float(p[f"W_{v}"][j, i]) for j in torch.nonzero(parents[:, i]).flatten()})
            rows.append(row)
    return pd.DataFrame(rows)


def _check_fitted_on(result: Result, dataset: Dataset, *, rows: bool = False) -> None:
    """Raise unless ``result`` is a regime-scm fit and ``dataset`` has the variables, graph and mechanism it was
    fitted on (another dataset's parents and names used to fail deep inside the model with a RuntimeError); with
    ``rows`` (callers that pair the result's per-row regime probabilities with the dataset's rows), also as many
    rows as the result was fitted on."""
    params = getattr(result, "params", None)
    if not isinstance(result, Result) or not isinstance(params, Mapping) or "regime_weights" not in params or (
            rows and "regime_probs" not in params):
        raise PyrozooError(f"result: expected a fitted regime-scm result (from fit_regime_scm), got "
                           f"{type(result).__name__}")
    check_dataset("dataset", dataset, "regime-scm", inputs=DATASET_INPUTS, observed=("x",) if rows else (),
                  made_by="make_regime_dataset")
    inp = dataset.inputs
    fitted = [str(v) for v in result.coords.get("variable", [])]
    if list(inp["names"]) != fitted:
        raise PyrozooError(f"dataset: expected the variables the result was fitted on ({', '.join(fitted)}), got "
                           f"{', '.join(map(str, inp['names']))}")
    fitted_parents = result.constant_data.get("parents")
    if fitted_parents is not None and not np.array_equal(np.asarray(fitted_parents, dtype=bool),
                                                         inp["parents"].cpu().numpy().astype(bool)):
        raise PyrozooError("dataset: expected the graph the result was fitted on, got a different graph over the "
                           "same variables")
    fit = {"mechanism": "linear"} if "W_obs" in params else {"mechanism": "mlp", "hidden": np.shape(params["W1"])[-1]}
    given = {k: inp[k] for k in fit}
    if given != fit:
        raise PyrozooError(f"dataset: expected the result's {', '.join(f'{k}={v!r}' for k, v in fit.items())}, got "
                           f"{', '.join(f'{k}={v!r}' for k, v in given.items())}")
    if rows:
        n_fit, n_given = np.shape(params["regime_probs"])[0], dataset.observed["x"].shape[0]
        if n_given != n_fit:
            raise PyrozooError(f"dataset: expected the {n_fit} rows the result was fitted on (its regime "
                               f"probabilities are per row), got {n_given} rows")


@keeps_caller_state
def sample_do(result: Result, dataset: Dataset, interventions: Mapping[str, float], *, num_samples: int = 1000,
              regime: int = 0, seed: int = 0) -> pd.DataFrame:
    """Samples of the fitted SCM in regime ``regime`` (default observational) under ``do(var = value)`` for each
    item of ``interventions``, via ``pyro.poutine.do``; only descendants of the intervened variables change.

    A variable is named by its column (``1`` for column 1 of an array-built dataset) or by its site name (the
    column as text, ``"1"``); each value must be one finite number. ``dataset`` must hold the variables, graph and
    mechanism ``result`` was fitted on.

    The returned DataFrame has one column per variable, labelled as the data were: a DataFrame-built dataset gives
    its variables' names as text, an array-built one its column labels (0..N-1 unless ``columns`` named them)."""
    seed = check_seed("seed", seed)  # pyro.set_rng_seed below: NumPy takes [0, 2**32 - 1]
    _check_fitted_on(result, dataset)
    names = list(dataset.inputs["names"])
    columns = list(dataset.meta.get("columns", names))
    if not isinstance(interventions, Mapping):
        raise PyrozooError(f"interventions: expected a mapping {{variable: value}}, got {type(interventions).__name__}")
    data_values: dict[str, float] = {}
    unknown = []
    for key, value in interventions.items():
        if isinstance(key, (bool, np.bool_)):  # True == 1 would name column 1
            unknown.append(repr(key))
            continue
        if isinstance(key, str) and key in names:
            site = key
        elif key in columns:  # the column label itself (an int for an array-built dataset)
            site = names[columns.index(key)]
        else:
            unknown.append(repr(key))
            continue
        if site in data_values:
            raise PyrozooError(f"interventions: variable {site!r} is named twice (as a column label and as its site "
                               f"name); give one value for it")
        data_values[site] = check_real(f"interventions[{key!r}]", value)
    if unknown:  # repr: an int key used to break this message itself (join of non-strings)
        raise PyrozooError(f"interventions: unknown variable(s) {', '.join(unknown)}; variables are {', '.join(names)}")
    num_samples = check_int("num_samples", num_samples, minimum=1)
    K = len(names) + 1
    regime = check_int("regime", regime)
    if regime >= K:
        raise PyrozooError(f"regime: expected an integer in 0..{K - 1}, got {regime}")
    p = fitted_params(result)
    dtype = p["regime_weights"].dtype
    kw = {k: v for k, v in dataset.inputs.items() if k != "n"}
    model = partial(regime_scm_model, params=p, n=num_samples, **kw)
    data = {v: torch.full((num_samples,), val, dtype=dtype) for v, val in data_values.items()}
    pyro.set_rng_seed(seed)
    with torch.no_grad():
        conditioned = poutine.condition(model, {"z": torch.full((num_samples,), regime, dtype=torch.long)})
        xs = poutine.do(conditioned, data=data)()
    labels = names if dataset.meta.get("from_dataframe", True) else columns
    return pd.DataFrame(xs.cpu().numpy(), columns=labels)


def oracle_regimes(dataset: Dataset) -> np.ndarray:
    """MAP regimes under the true parameters (the classifier that knows the SCM)."""
    x = dataset.observed["x"].cpu().numpy().astype(np.float64)
    return true_component_log_lik(dataset.truth, x).argmax(-1)


def regime_metrics(result: Result, dataset: Dataset) -> dict[str, float]:
    """Marginal log-likelihood (NaN when the result has none), the SVI steps run (``svi_steps``, after an SVI
    fit: fewer than ``--steps`` when it stopped early, :func:`early_stop_note`); with simulated truth also ARI, exact
    regime-and-target accuracy, whether the observational regime is identified (the true observational samples'
    majority label is 0; NaN when the data have no observational rows), the oracle's ARI,
    and per-variable MSE of x against its conditional mean (MAP regime, fitted) over the oracle's (true regime,
    true mechanisms). ``dataset`` must hold the rows, variables, graph and mechanism ``result`` was fitted on."""
    _check_fitted_on(result, dataset, rows=True)
    # NaN (null in metrics.json) for a run without the log-likelihood group (run_model's log_likelihood=False)
    loglik = float(np.sum(result.log_likelihood["x"])) if "x" in result.log_likelihood else float("nan")
    out = {"loglik": loglik, "wall_time": float(result.wall_time)}
    if "loss" in result.fit_stats:  # the SVI steps run: fewer than --steps when the joint SVI stopped early
        out["svi_steps"] = float(len(result.fit_stats["loss"]))
    if "regime" not in dataset.truth:
        return out
    z = np.asarray(dataset.truth["regime"])
    zhat = map_regime(result)
    out["ari"] = float(adjusted_rand_score(z, zhat))
    out["exact_accuracy"] = float((z == zhat).mean())
    obs = zhat[z == 0]
    # no true observational rows (obs_frac=0): nothing to identify, so NaN (null in metrics.json), not a failure
    out["observational_identified"] = float(np.bincount(obs).argmax() == 0) if obs.size else float("nan")
    out["oracle_ari"] = float(adjusted_rand_score(z, oracle_regimes(dataset)))
    x64 = dataset.observed["x"].cpu().to(torch.float64)
    p = {k: v.to(torch.float64) for k, v in fitted_params(result).items()}
    with torch.no_grad():
        mu0, mu1 = (m.numpy() for m in all_means(p, x64, dataset.inputs["parents"].cpu()))
    xn = x64.numpy()
    N = xn.shape[1]
    hit = np.arange(1, N + 1)[None, :] == zhat[:, None]
    mse = ((xn - np.where(hit, mu1, mu0)) ** 2).mean(0)
    t0, t1 = true_means(dataset.truth, xn)
    ohit = np.arange(1, N + 1)[None, :] == z[:, None]
    mse_oracle = ((xn - np.where(ohit, t1, t0)) ** 2).mean(0)
    out["mse_mean"] = float(mse.mean())
    out["mse_oracle_mean"] = float(mse_oracle.mean())
    out["mse_ratio_mean"] = float((mse / mse_oracle).mean())
    out["mse_ratio_max"] = float((mse / mse_oracle).max())
    return out


@register("regime-scm")
def regime_scm_entry() -> ZooModel:
    def simulate(seed: int, **opts: Any) -> Dataset:
        return simulate_regime_data(seed, **{k: v for k, v in opts.items() if k not in FIT_DEFAULTS
                                             and k not in FILE_OPTIONS})

    def fit(dataset: Dataset, config: RunConfig) -> Result:
        return fit_regime_scm(dataset, config)

    return ZooModel(
        name="regime-scm",
        model=regime_scm_model,
        simulate=simulate,
        fit=fit,
        inferences=("enum", "amortized", "gumbel", "em"),
        settings={"enum": ("steps", "lr"), "amortized": ("steps", "lr"), "gumbel": ("steps", "lr"), "em": ()},
        metrics=regime_metrics,
        check_options=_check_run_options,
        options={**SIMULATOR_DEFAULTS, **FILE_OPTIONS, **MODEL_DEFAULTS, **FIT_DEFAULTS},
        from_file=read_regime_file,
        text_options=tuple(FILE_OPTIONS),
        data_options={**{k: ("simulator",) for k in SIMULATOR_DEFAULTS}, **{k: ("file",) for k in FILE_OPTIONS}},
        inference_options=REGIME_INFERENCE_OPTIONS,
        option_notes={k: "enum reads it only with mechanism='mlp'" for k in MLP_ONLY_IN_ENUM},
        log_likelihood_size=regime_log_likelihood_size,
        # sizes only: every inference must accept the tiny options, and the fitting ones are each read by some
        # inferences only (the defaults run in about a second at this size)
        tiny={"steps": 20, "num_samples": 1, "num_chains": 1, "options": {"n_vars": 3, "n_samples": 300}},
        description="SCM with enumerated single-target intervention regimes on a known DAG (EM + TraceEnum_ELBO)",
    )


__all__ = [
    "check_regime_options",
    "component_log_lik",
    "fit_em",
    "fit_regime_scm",
    "make_regime_dataset",
    "map_regime",
    "marginal_log_lik",
    "mechanisms_table",
    "parse_graph",
    "read_regime_file",
    "regime_log_likelihood_size",
    "regime_metrics",
    "regime_posterior",
    "regime_scm_model",
    "regime_table",
    "sample_do",
    "simulate_regime_data",
]
