"""Posterior diagnostics with ArviZ: summary table, convergence warnings, trace and posterior plots."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from pyrozoo.inference import arviz_compat  # noqa: F401  (ArviZ's numba path breaks with numpy >= 2.4)

RHAT_MAX = 1.01
ESS_MIN = 400
MIN_DRAWS = 4  # ArviZ: fewer draws per chain than this and r_hat, ESS and MCSE are NaN
ESS_PER_CHAIN = 100  # Vehtari et al. (2021): bulk and tail ESS above 100 per chain (400 for the usual 4 chains)
ACCEPT_MIN = 0.05
BFMI_MIN = 0.3  # Betancourt (2016) / Stan: E-BFMI below 0.3 means momentum resampling explores the energy poorly
TREEDEPTH_SHARE_MAX = 0.05  # PyMC's threshold: NUTS transitions cut short at the maximum tree depth


def ess_threshold(num_chains: int) -> int:
    """The ESS below which a parameter is flagged: :data:`ESS_PER_CHAIN` per chain. A flat 400 flags about half of
    the components of 400 independent draws (exact or SVI posteriors), whose ESS scatters around 400."""
    return ESS_PER_CHAIN * max(int(num_chains), 1)


# a spread of draws (sd, or max - min) of at most this many steps of the draws' dtype grid at their magnitude
# (spread <= 100 eps magnitude: 2.2e-14 in float64, 1.2e-5 in float32) is rounding, as a constant column is for
# pyrozoo.models.spike_slab_prior.CONSTANT_STEPS. Relative to the dtype's precision, not a fixed fraction: 1e-9 of the
# magnitude called a Unix-time changepoint 1.7e9 + sd 1 (float64 holds it to 2e-7) "the same in every draw" and
# dropped its r_hat 1.77 from the warnings
ROUNDING_STEPS = 100
# the same for the draws' own range (max - min), where the draws are at hand (check_lines, the plots): draws all
# equal have range 0 exactly, while az.summary's sd of 1000 identical float64 draws is up to ~90 steps (the mean's
# summation error), which is why the sd rule needs 100. Rounding wobble spans a few steps (an inclusion probability
# at 1 with a range of 2e-15: 9), and 100 float32 steps hid a posterior that moves (sd 0.0073 around 1000, r_hat 2.2)
RANGE_STEPS = 16


def _rounding(dtype: Any, steps: float = ROUNDING_STEPS) -> float:
    """The largest spread per unit of magnitude that :func:`_negligible` calls rounding, ``steps`` x the machine
    epsilon of ``dtype``: float32's for float32 draws, float64's for float64 draws and for integer or true/false
    draws (exact, and summarized in float64)."""
    dtype = np.dtype(dtype)
    return steps * float(np.finfo(dtype if np.issubdtype(dtype, np.floating) else np.float64).eps)


def _negligible(spread: Any, magnitude: Any, dtype: Any = np.float64, steps: float = ROUNDING_STEPS) -> Any:
    """Whether a spread of draws (sd, or max - min) is rounding: at most :data:`ROUNDING_STEPS` eps of the draws'
    magnitude (their largest |draw|, or their root mean square sqrt(mean^2 + sd^2) <= max|draw| where only the
    summary is known), eps the machine epsilon of the stored draws' ``dtype`` (:func:`_rounding`; a sequence: one
    dtype per spread). Scale-free: EM's sigma^2 with sd 1e-16 around 0.7 and an inclusion probability at 1 with a
    range of 2e-15 are rounding, and so are draws that are all equal (0 <= 0, zeros included); a quantity in tiny
    units (sd 3e-13 around 1e-12), centred at 0 (sd 1e-13, max|draw| ~ 3e-13) or at a large offset (sd 1 around
    1.7e9, a Unix-time changepoint) varies. One rule for the summary notes, the warnings and the plots; ``steps``:
    :data:`ROUNDING_STEPS` for a summary's sd, :data:`RANGE_STEPS` for the draws' own range."""
    spread = np.asarray(spread, dtype=float)
    if isinstance(dtype, (list, tuple)):
        rtol: Any = np.array([_rounding(d, steps) for d in dtype]).reshape(spread.shape)
    else:
        rtol = _rounding(dtype, steps)
    # an inf draw gives an inf (or NaN) spread: never "rounding", whatever the magnitude (inf <= rtol * inf)
    return np.isfinite(spread) & (spread <= rtol * np.asarray(magnitude, dtype=float))


def _rms(mean: Any, sd: Any) -> Any:
    """The root mean square of draws from their mean and sd, sqrt(mean^2 + sd^2) (a non-finite mean counts 0): the
    magnitude :func:`_negligible` judges a summary row's sd against, at most the largest |draw|."""
    mean = np.asarray(mean, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.hypot(np.where(np.isfinite(mean), mean, 0.0), np.asarray(sd, dtype=float))


def posterior_dtypes(idata: az.InferenceData) -> dict[str, np.dtype]:
    """The dtype of each posterior variable's stored draws, by name: what :func:`constant_components` and
    :func:`convergence_warnings` need to tell rounding from movement in a summary table (whose columns are floats)."""
    return {str(v): idata.posterior[v].dtype for v in idata.posterior.data_vars}


def _variable(label: Any) -> str:
    """The variable a summary row belongs to: ``gamma`` of ``gamma[x1]``."""
    return str(label).split("[")[0]


def _row_dtypes(index: Any, dtypes: dict[str, Any] | None) -> list[Any]:
    """The stored dtype of each summary row's variable (float64 where ``dtypes`` does not name it)."""
    dtypes = dtypes or {}
    return [dtypes.get(_variable(n), np.float64) for n in index]


def component_spreads(idata: az.InferenceData) -> dict[str, tuple[float, float]]:
    """Each posterior component's range of draws and largest |draw|, ``(max - min, max |draw|)``, by az.summary's
    row name (:func:`component_labels`): what :func:`constant_components` and :func:`convergence_warnings` judge
    rounding by when the draws are at hand (:data:`RANGE_STEPS`), rather than by the summary's sd."""
    out: dict[str, tuple[float, float]] = {}
    for name in idata.posterior.data_vars:
        v = idata.posterior[name]
        a = np.asarray(v.values, dtype=float).reshape(v.shape[0] * v.shape[1], -1)
        if a.shape[0] == 0:
            continue
        with np.errstate(invalid="ignore"):
            spread, size = a.max(0) - a.min(0), np.abs(a).max(0)
        out.update(zip(component_labels(v), zip(spread.tolist(), size.tolist(), strict=True), strict=True))
    return out


def _never_moves(row: pd.Series, dtype: Any = np.float64, spread: tuple[float, float] | None = None) -> bool:
    """A summary row whose draws (stored as ``dtype``) are all equal up to rounding: :func:`_negligible` of their
    ``spread`` (range, max |draw|; :func:`component_spreads`) where given, else of its sd and :func:`_rms`."""
    if spread is not None:
        return bool(_negligible(spread[0], spread[1], dtype, RANGE_STEPS))
    sd, mean = row.get("sd", np.nan), row.get("mean", 0.0)
    return bool(np.isfinite(sd) and _negligible(sd, _rms(mean, sd), dtype))


def _moving_rows(table: pd.DataFrame, dtypes: dict[str, Any] | None = None,
                 spreads: Mapping[str, tuple[float, float]] | None = None) -> np.ndarray:
    """Per row of a summary table, whether its draws move (not :func:`_never_moves`), judged for all rows at once:
    by the range of draws where ``spreads`` has the row, else by its sd (all rows move without an ``sd`` column)."""
    if "sd" not in table.columns:
        return np.ones(len(table), dtype=bool)
    mean = table["mean"].to_numpy(dtype=float) if "mean" in table.columns else np.zeros(len(table))
    sd = table["sd"].to_numpy(dtype=float)
    row_dtypes = _row_dtypes(table.index, dtypes)
    moves = ~_negligible(sd, _rms(mean, sd), row_dtypes)
    if spreads:  # the rows whose draws are at hand are judged by their range instead (as _never_moves does)
        have = np.array([str(n) in spreads for n in table.index], dtype=bool)
        span, size = (np.array([spreads.get(str(n), (np.nan, np.nan))[k] for n in table.index], dtype=float)
                      for k in (0, 1))
        moves = np.where(have, ~_negligible(span, size, row_dtypes, RANGE_STEPS), moves)
    return np.asarray(moves, dtype=bool)


def constant_components(table: pd.DataFrame, dtypes: dict[str, Any] | None = None,
                        spreads: Mapping[str, tuple[float, float]] | None = None) -> list[str]:
    """Components whose draws are all equal up to rounding (:func:`_never_moves`): quantities an engine fixed at a
    point estimate (EM's sigma^2 and theta, say), for which ESS and r_hat mean nothing. ``dtypes``: the stored dtype
    of each variable (:func:`posterior_dtypes`; float64 where not named), whose precision sets what is rounding;
    ``spreads``: the components' range of draws (:func:`component_spreads`), judged instead of the sd where given.
    A variable is named whole when every component is, else its components are (``gamma[1]``)."""
    if "sd" not in table.columns:
        return []
    moves = _moving_rows(table, dtypes, spreads)
    fixed = {str(n) for n, m in zip(table.index, moves, strict=True) if not m}  # _never_moves, row by row
    out: list[str] = []
    for var in dict.fromkeys(_variable(n) for n in table.index):
        rows = [str(n) for n in table.index if _variable(n) == var]
        hit = [r for r in rows if r in fixed]
        out += [var] if hit and len(hit) == len(rows) else hit
    return out


def selected_variables(idata: az.InferenceData, var_names: str | list[str] | None = None) -> list[str]:
    """The posterior variables that ``var_names`` picks, as ArviZ reads it: ``None`` (or an empty list) all of them,
    a name (a str) or a list of names those, a list of ``~name`` every variable but those. Unknown names, a mix of
    names and ``~names``, or a selection that leaves nothing raise :class:`PyrozooError` naming ``var``."""
    from pyrozoo.errors import PyrozooError

    have = [str(v) for v in idata.posterior.data_vars]
    if var_names is None or (not isinstance(var_names, str) and len(var_names) == 0):
        return have
    names = [var_names] if isinstance(var_names, str) else list(var_names)
    if not all(isinstance(n, str) for n in names):
        raise PyrozooError(f"var: expected variable names (str), got {names!r}")
    unknown = [v for v in names if v not in have and v.removeprefix("~") not in have]
    if unknown:
        raise PyrozooError(f"var: no posterior variable(s) {', '.join(unknown)}; the posterior has "
                           f"{', '.join(have)}")
    excluding = [v for v in names if v not in have]  # the ~names, repeats counted (["~a", "~a"] is no mix)
    excluded = {v.removeprefix("~") for v in excluding}
    if excluding and len(excluding) < len(names):  # ArviZ would drop the plain names without a word
        raise PyrozooError(f"var: expected either names to include or ~names to exclude, got both: "
                           f"{', '.join(names)}")
    picked = [v for v in have if v not in excluded] if excluded else list(dict.fromkeys(names))
    if not picked:
        raise PyrozooError(f"var: {', '.join(names)} excludes every posterior variable ({', '.join(have)})")
    return picked


def _has_nonfinite(values: Any) -> bool:
    """Whether an array of real numbers holds a NaN or inf (False for other dtypes: bool, int, text)."""
    values = np.asarray(values)
    return bool(np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all())


@contextmanager
def _quiet_arviz(idata: az.InferenceData, names: list[str]) -> Iterator[None]:
    """ArviZ's log quieted where the CLI says the same in words: r_hat's shape warning with one chain or fewer than
    :data:`MIN_DRAWS` draws (left NaN), "Array contains NaN-value" (:func:`nonfinite_warnings`), and numpy's
    "invalid value" from the ESS of a component that never moves (:func:`constant_components`)."""
    import logging

    # ArviZ logs through its own Logger object (az._log), which is not the one logging.getLogger("arviz") returns
    logger = getattr(az, "_log", None) or logging.getLogger("arviz")
    level = logger.level
    sizes = idata.posterior.sizes
    if sizes.get("chain", 1) < 2 or sizes.get("draw", 1) < MIN_DRAWS:
        logger.setLevel(logging.ERROR)
    if any(_has_nonfinite(idata.posterior[v].values) for v in names):
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        logger.setLevel(level)


def _leading_components(post: xr.Dataset, names: list[str], rows: int) -> list[xr.Dataset]:
    """The variables ``names`` of ``post`` cut to their first ``rows`` scalar components in az.summary's row order
    (variables in order, each flattened in C order): whole variables while they fit, then the last one cut on its
    first axis (to whole slices; the caller keeps the first ``rows`` rows). One Dataset per part, as a cut axis
    cannot share a Dataset with a variable that keeps the whole axis."""
    whole: list[str] = []
    parts: list[xr.Dataset] = []
    left = rows
    for name in names:
        if left <= 0:
            break
        v = post[name]
        size = int(np.prod(v.shape[2:]))
        if size <= left:
            whole.append(name)
            left -= size
            continue
        axis = v.dims[2]
        per_slice = size // v.sizes[axis]
        parts.append(xr.Dataset({name: v.isel({axis: slice(0, -(-left // per_slice))})}))
        left = 0
    return ([post[whole]] if whole else []) + parts


def summary(idata: az.InferenceData, var_names: str | list[str] | None = None, *,
            max_rows: int | None = None) -> pd.DataFrame:
    """ArviZ summary: mean, sd, HDI, MCSE of mean and sd, bulk and tail ESS, r_hat (rank-normalized split-R-hat), of
    the variables :func:`selected_variables` picks. ``max_rows``: only the first ``max_rows`` rows, and only their
    components are computed (az.summary costs ~3 ms a component: 24 s for the 9,000 of a p = 3,000 spike-slab run
    whose first 20 rows are printed); :func:`check_table` has what the checks need of every row."""
    names = selected_variables(idata, var_names)
    with _quiet_arviz(idata, names):
        if max_rows is None:
            return az.summary(idata, var_names=names, kind="all", round_to="none")
        parts = _leading_components(idata.posterior, names, max_rows)
        if not parts:
            return az.summary(idata, var_names=names[:1], kind="all", round_to="none").head(0)
        return pd.concat([az.summary(part, kind="all", round_to="none") for part in parts]).head(max_rows)


def component_labels(v: xr.DataArray) -> list[str]:
    """az.summary's row names of the variable ``v`` (dims chain, draw, ...): its name alone for a scalar, else
    ``name[c1, c2]`` with the coordinate values of each component, in C order."""
    axes = [d for d in v.dims if d not in ("chain", "draw")]
    if not axes:
        return [str(v.name)]
    values = [v[d].values if d in v.coords else np.arange(v.sizes[d]) for d in axes]
    return [f"{v.name}[{', '.join(str(values[k][i]) for k, i in enumerate(idx))}]"
            for idx in np.ndindex(*(v.sizes[d] for d in axes))]


def check_table(idata: az.InferenceData, var_names: str | list[str] | None = None, *,
                convergence: bool = True) -> pd.DataFrame:
    """The columns of :func:`summary` that :func:`check_lines` reads, for every component of the variables
    :func:`selected_variables` picks, rows named as az.summary names them: mean and sd (ddof 1, NaN and inf kept,
    as az.summary computes them; one vectorized pass), and with ``convergence`` ess_bulk, ess_tail and r_hat
    (az.ess, az.rhat). Without the HDI and MCSE, and without ESS and r_hat where they are not judged (independent
    draws), a large posterior is checked in a fraction of az.summary's time."""
    names = selected_variables(idata, var_names)
    post = idata.posterior[names]
    with warnings.catch_warnings():  # inf among the draws (inf - inf), one draw (ddof 1): NaN, as in az.summary
        warnings.simplefilter("ignore", RuntimeWarning)
        cols: dict[str, Any] = {"mean": post.mean(("chain", "draw"), skipna=False),
                                "sd": post.std(("chain", "draw"), ddof=1, skipna=False)}
    if convergence:
        with _quiet_arviz(idata, names):
            cols["ess_bulk"] = az.ess(post, method="bulk")
            cols["ess_tail"] = az.ess(post, method="tail")
            cols["r_hat"] = az.rhat(post)
    with warnings.catch_warnings():  # ddof 1 of a single draw: NaN, as in az.summary
        warnings.simplefilter("ignore", RuntimeWarning)
        data = {c: np.concatenate([np.asarray(ds[v].values, dtype=float).reshape(-1) for v in names])
                for c, ds in cols.items()}
    index = [label for v in names for label in component_labels(post[v])]
    return pd.DataFrame(data, index=index)


def _nonfinite(row: pd.Series) -> bool:
    """A summary row with NaN or inf among its draws: the mean of finite draws is finite, so its mean is not."""
    return "mean" in row.index and not np.isfinite(row["mean"])


def nonfinite_warnings(table: pd.DataFrame) -> list[str]:
    """One line per component with NaN or inf draws (a non-finite mean in the summary): its sd, r_hat and ESS are
    NaN or meaningless, so the convergence checks cannot speak for it."""
    return [f"{name}: NaN or inf among the draws (mean {row['mean']}): sd, r_hat and ESS are undefined; the engine "
            f"produced non-finite values (check the model's scales and the data)"
            for name, row in table[_nonfinite_rows(table)].iterrows()]


def _nonfinite_rows(table: pd.DataFrame) -> np.ndarray:
    """:func:`_nonfinite` of every row at once (iterating 9,000 rows took 1.4 s)."""
    if "mean" not in table.columns:
        return np.zeros(len(table), dtype=bool)
    return ~np.isfinite(table["mean"].to_numpy(dtype=float))


def convergence_warnings(table: pd.DataFrame, *, rhat_max: float = RHAT_MAX, ess_min: float = ESS_MIN,
                         dtypes: dict[str, Any] | None = None,
                         spreads: Mapping[str, tuple[float, float]] | None = None) -> list[str]:
    """One line per parameter whose r_hat exceeds ``rhat_max`` or whose bulk/tail ESS is below ``ess_min``, and
    one per parameter with NaN or inf draws (:func:`nonfinite_warnings`, which no r_hat or ESS can clear);
    components that never move (see :func:`constant_components`, with the same ``dtypes`` and ``spreads``) are
    left out."""
    out = nonfinite_warnings(table)
    spreads = spreads or {}
    for (name, row), dtype in zip(table.iterrows(), _row_dtypes(table.index, dtypes), strict=True):
        if _never_moves(row, dtype, spreads.get(str(name))) or _nonfinite(row):
            continue
        # inf is the worst r_hat (chains stuck at different values: between-chain variance, none within), not none
        if not np.isnan(row.get("r_hat", np.nan)) and row["r_hat"] > rhat_max:
            out.append(f"{name}: r_hat {_above(row['r_hat'], rhat_max)} > {rhat_max}")
        for col in ("ess_bulk", "ess_tail"):
            if np.isfinite(row.get(col, np.nan)) and row[col] < ess_min:
                out.append(f"{name}: {col} {row[col]:.0f} < {ess_min}")
    return out


def _above(value: float, limit: float) -> str:
    """``value`` with 3 decimals, or as many more (up to 8) as it takes to print above ``limit``: r_hat 1.01047
    read 'r_hat 1.010 > 1.01'."""
    if not value < 1e4:  # inf, or a stuck chain's 6e15: three figures, not 16 digits and 3 decimals
        return f"{value:.3g}"
    digits = 3
    while float(f"{value:.{digits}f}") <= limit and digits < 8:
        digits += 1
    return f"{value:.{digits}f}"


def shown_warnings(lines: list[str], limit: int = 12, where: str = "in the summary table") -> list[str]:
    """At most ``limit`` warning lines, then one line counting the rest (a short chain of a 40-vector gives 80)."""
    if len(lines) <= limit:
        return list(lines)
    return [*lines[:limit], f"... and {len(lines) - limit} more like these ({where})"]


MARKOV_ENGINES = ("nuts", "hmc", "gibbs")


def is_markov_engine(tag: str) -> bool:
    """Whether the engine label a run records (``idata.attrs["inference"]``, ``metrics.json``'s ``inference``:
    ``nuts``, ``gibbs``, ``svi-meanfield`` ...) names a Markov-chain engine (:data:`MARKOV_ENGINES`)."""
    return str(tag).split("-")[0] in MARKOV_ENGINES


def judged_ess_min(chains: int, draws: int) -> int:
    """The ESS below which ``pyrozoo run`` and ``pyrozoo diagnose`` flag a Markov chain's component:
    :func:`ess_threshold` with at least :data:`ESS_PER_CHAIN` draws per chain, else 0 (too few draws to reach it:
    one line says so instead of a warning per component)."""
    return ess_threshold(chains) if draws >= ESS_PER_CHAIN else 0


def is_markov_chain(idata: az.InferenceData) -> bool:
    """Whether the draws come from a Markov chain (NUTS, HMC, Gibbs), so that r_hat and ESS measure convergence.
    Draws from a fitted approximation or a closed form (SVI guide, SWAG, type-II GP, exact BLR) are independent by
    construction. Read from the engine tag the run stores in ``idata.attrs["inference"]`` (``nuts``,
    ``svi-meanfield`` ...); without one, a ``sample_stats`` group stands for a chain."""
    tag = getattr(idata, "attrs", {}).get("inference")
    if tag is None:
        return getattr(idata, "sample_stats", None) is not None
    return is_markov_engine(tag)


def check_lines(idata: az.InferenceData, table: pd.DataFrame, *, convergence: bool = True,
                where: str = "in the summary table") -> tuple[list[str], list[str]]:
    """The notes and warnings printed under a summary table by ``pyrozoo run`` and ``pyrozoo diagnose``: components
    that never move (a note), NaN or inf draws, divergences and stuck chains, and with ``convergence`` r_hat and ESS
    at :func:`ess_threshold`; at most :func:`shown_warnings` warning lines, the last one saying ``where`` the rest
    are."""
    chains = idata.posterior.sizes.get("chain", 1)
    dtypes = posterior_dtypes(idata)  # what is rounding depends on the precision the draws were stored in
    spreads = component_spreads(idata)  # and is judged by the draws' own range (0 when all are equal)
    lines = sampler_warnings(idata)
    if convergence:
        draws = idata.posterior.sizes.get("draw", 1)
        if draws < MIN_DRAWS:  # ArviZ leaves r_hat, ESS and MCSE NaN below 4 draws per chain
            lines.append(f"only {draws} draws per chain: r_hat, ESS and MCSE need at least {MIN_DRAWS} (left NaN in "
                         f"the table); raise --num-samples to at least {ESS_PER_CHAIN}")
        elif draws < ESS_PER_CHAIN:  # every component would be flagged: say it once, keep the r_hat checks
            lines.append(f"only {draws} draws per chain: too few to reach an ESS of {ESS_PER_CHAIN} per chain; "
                         f"raise --num-samples to at least {ESS_PER_CHAIN} before reading ESS")
        lines += convergence_warnings(table, ess_min=judged_ess_min(chains, draws), dtypes=dtypes, spreads=spreads)
    else:  # independent draws: no r_hat or ESS to judge, but a NaN or inf draw is still wrong
        lines += nonfinite_warnings(table)
    fixed = constant_components(table, dtypes, spreads)
    notes = [f"the same in every draw (fixed by the engine, or settled), so no ESS or r_hat: {listed(fixed)}"]
    return (notes if fixed else []), shown_warnings(lines, where=where)


def convergence_judged(idata: az.InferenceData) -> bool:
    """Whether r_hat and ESS are judged, by ``pyrozoo run`` and ``pyrozoo diagnose`` alike: draws of a Markov chain
    (:func:`is_markov_chain`) with at least 2 draws per chain, whatever the number of chains (ESS is within-chain;
    r_hat, NaN with one chain, is judged where it is finite)."""
    return idata.posterior.sizes.get("draw", 1) >= 2 and is_markov_chain(idata)


def _split_chains(a: np.ndarray) -> np.ndarray:
    """(K, C, D) -> (K, 2C, D // 2): each chain's first and last halves as two chains (ArviZ's split chains)."""
    half = a.shape[2] // 2
    return np.concatenate([a[:, :, :half], a[:, :, a.shape[2] - half:]], axis=1)


def _z_scale(a: np.ndarray) -> np.ndarray:
    """Rank normalization of each component over all its values: z = Phi^-1((r - 3/8) / (N + 1/4)), r the average
    rank (Blom's scores, as ArviZ's ``_z_scale``)."""
    from scipy import special, stats

    flat = a.reshape(a.shape[0], -1)
    rank = stats.rankdata(flat, method="average", axis=1)
    return special.ndtri((rank - 3 / 8) / (flat.shape[1] - 2 * 3 / 8 + 1)).reshape(a.shape)


def _split_rhat(a: np.ndarray) -> np.ndarray:
    """R-hat of each component of (K, M, n): sqrt((B / W + n - 1) / n), B = n var(chain means), W = mean chain
    variance (both ddof 1)."""
    n = a.shape[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((n * np.var(a.mean(2), axis=1, ddof=1) / np.var(a, axis=2, ddof=1).mean(1) + n - 1) / n)


def _geyer_ess(a: np.ndarray) -> np.ndarray:
    """ESS of each component of (K, M, n) as ArviZ's ``_ess`` computes it: M n / tau, tau = -1 + 2 sum rho_t over
    Geyer's initial positive (pairs rho_2j + rho_2j+1 up to the first <= 0) and monotone (running minimum of the
    pairs) sequences, rho_t = 1 - (W - mean autocovariance_t) / var+, at least 1 / log10(M n); M n for a component
    whose values span less than float64's resolution."""
    k, m, n = a.shape
    size = m * n
    fft_len = int(2 ** np.ceil(np.log2(2 * n)))  # any length >= 2n gives the same autocovariances
    f = np.fft.rfft(a - a.mean(2, keepdims=True), n=fft_len, axis=2)
    acov = np.fft.irfft(f * np.conjugate(f), n=fft_len, axis=2)[:, :, :n] / n
    mean_var = acov[:, :, 0].mean(1) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n + (np.var(a.mean(2), axis=1, ddof=1) if m > 1 else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var[:, None] - acov.mean(1)) / var_plus[:, None]
    rho[:, 0] = 1.0
    npairs = (n - 1) // 2
    pairs = rho[:, 0:2 * npairs:2] + rho[:, 1:2 * npairs:2]
    steps = len([j for j in range(1, n) if 2 * j - 1 < n - 3])  # the positive sequence's most pairs after the first
    if steps:
        nonpos = pairs[:, :steps] <= 0
        taken = np.where(nonpos.any(1), nonpos.argmax(1), steps)
    else:
        taken = np.zeros(k, dtype=int)
    tau = np.empty(k)
    for i, j in enumerate(taken):
        if j:
            last = rho[i, 2 * j] if rho[i, 2 * j] + rho[i, 2 * j + 1] >= 0 or rho[i, 2 * j] > 0 else 0.0
            tau[i] = -1.0 + 2.0 * np.minimum.accumulate(pairs[i, :j]).sum() + last
        else:
            tau[i] = 0.0
    ess = size / np.maximum(tau, 1 / np.log10(size))
    ess[np.isnan(var_plus) | np.isnan(rho[:, 1])] = np.nan
    flat = a.reshape(k, -1)
    ess[(flat.max(1) - flat.min(1)) < np.finfo(float).resolution] = size
    return ess


def _rank_diagnostics(a: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bulk ESS, tail ESS and rank-normalized split r_hat of each component of ``a`` (K, chains, draws; finite,
    at least :data:`MIN_DRAWS` draws), the numbers ``az.ess(method="bulk")``, ``az.ess(method="tail")`` and
    ``az.rhat`` give (Vehtari et al. 2021), computed for all components at once rather than one by one (ArviZ's
    ~1 ms a component and statistic was as long as a Gibbs fit of 600 components). r_hat is NaN with one chain.
    ``chunk`` components at a time bound the memory."""
    out = np.full((3, a.shape[0]), np.nan)
    for lo in range(0, a.shape[0], chunk):
        x = np.asarray(a[lo:lo + chunk], dtype=float)
        split = _split_chains(x)
        z = _z_scale(split)
        out[0, lo:lo + len(x)] = _geyer_ess(z)
        flat = x.reshape(len(x), -1)
        n = flat.shape[1]
        tails = []
        for prob in (0.05, 0.95):  # ESS of the indicator draw <= quantile, the smaller of the two
            # R's type 7 quantile in the arithmetic of scipy's mquantiles (alphap = betap = 1), which ArviZ uses: a
            # draw equal to the quantile must compare alike
            aleph = n * prob + (1.0 + prob * (1.0 - 1.0 - 1.0))  # n p + m, m = alphap + p (1 - alphap - betap)
            k = int(np.floor(np.clip(aleph, 1, n - 1)))
            gamma = float(np.clip(aleph - k, 0.0, 1.0))
            part = np.partition(flat, [k - 1, k], axis=1)
            q = ((1.0 - gamma) * part[:, k - 1] + gamma * part[:, k]).reshape(-1, 1, 1)
            tails.append(_geyer_ess(_split_chains((x <= q).astype(float))))
        out[1, lo:lo + len(x)] = np.minimum(*tails)
        if x.shape[1] > 1:  # the larger of the bulk and the folded (tail) r_hat; a NaN bulk one stays NaN
            median = np.median(split.reshape(len(x), -1), axis=1)[:, None, None]
            bulk, tail = _split_rhat(z), _split_rhat(_z_scale(np.abs(split - median)))
            out[2, lo:lo + len(x)] = np.where(np.isnan(bulk) | np.isnan(tail), bulk, np.maximum(bulk, tail))
    return out[0], out[1], out[2]


# metrics.json's key of convergence_figures (run_model writes it, report reads it; registry.RESERVED_METRICS keeps
# entries' metrics off it)
CONVERGENCE_KEY = "convergence"


def convergence_figures(idata: az.InferenceData, table: pd.DataFrame | None = None) -> dict[str, Any]:
    """The sampler and convergence figures of a Markov chain's draws (:func:`is_markov_chain`; ``{}`` for
    independent draws, where r_hat and ESS measure nothing), judged by the rules and thresholds of the warnings
    that ``pyrozoo run`` and ``pyrozoo diagnose`` print (:func:`check_lines`), so that a run directory's
    ``metrics.json`` says what they said:

    * ``chains``, ``draws``: per chain;
    * ``divergent`` of ``transitions`` (where the engine records ``sample_stats.diverging``: NUTS, HMC);
    * ``max_r_hat``: the largest finite r_hat over the components that move (:func:`constant_components` and NaN or
      inf draws left out), with at least 2 chains and :data:`MIN_DRAWS` draws per chain; ``None`` where no
      component has one;
    * ``min_ess_bulk``, ``min_ess_tail``: the smallest bulk and tail ESS over the same components (:data:`MIN_DRAWS`
      draws per chain or more; ``None`` where no component has one);
    * ``nonfinite``: how many components have NaN or inf draws;
    * ``ess_threshold``: the ESS below which a component is flagged (:func:`judged_ess_min`); ``None`` with fewer
      than :data:`ESS_PER_CHAIN` draws per chain, where ESS is not judged;
    * ``sampler_warnings``, ``convergence_warnings``: how many lines :func:`sampler_warnings` (divergences, stuck
      chains, E-BFMI, tree depth) and :func:`convergence_warnings` (r_hat > :data:`RHAT_MAX`, bulk or tail ESS below
      the threshold, NaN or inf draws) give, before any cut;
    * ``converged``: no such warning; ``None`` (not judged) where neither r_hat nor ESS could be judged and nothing
      was flagged: too few draws (one chain with fewer than :data:`ESS_PER_CHAIN` draws, or fewer than
      :data:`MIN_DRAWS` draws per chain), or no component that moves (every one fixed by the engine: ``max_r_hat``
      or, with one chain, ``min_ess_bulk`` is then there but ``None``).

    ``table``: :func:`check_table` of every component with ``convergence=``:func:`convergence_judged`; without
    it, r_hat and ESS are computed here for the components judged only, all at once (:func:`_rank_diagnostics`:
    ArviZ's numbers at a fraction of its time, which a fit of a few thousand components would otherwise spend
    again)."""
    if not is_markov_chain(idata):
        return {}
    chains, draws = int(idata.posterior.sizes.get("chain", 1)), int(idata.posterior.sizes.get("draw", 1))
    judged = convergence_judged(idata)
    dtypes, spreads = posterior_dtypes(idata), component_spreads(idata)
    out: dict[str, Any] = {"chains": chains, "draws": draws}
    if table is None:
        table = check_table(idata, convergence=False)  # mean and sd; r_hat and ESS below, where judged
        if judged:
            table = table.assign(ess_bulk=np.nan, ess_tail=np.nan, r_hat=np.nan)
            rows = _moving_rows(table, dtypes, spreads) & ~_nonfinite_rows(table)
            if draws >= MIN_DRAWS and rows.any():  # ArviZ's numbers for the rows it judges, computed at once
                post = idata.posterior[selected_variables(idata)]
                values = np.concatenate([np.asarray(post[v].values, dtype=float).reshape(chains, draws, -1)
                                         for v in post.data_vars], axis=2)
                found = _rank_diagnostics(np.moveaxis(values[:, :, rows], 2, 0))
                for column, got in zip(("ess_bulk", "ess_tail", "r_hat"), found, strict=True):
                    table.loc[rows, column] = got
    stats = getattr(idata, "sample_stats", None)
    if stats is not None and "diverging" in stats:
        div = np.asarray(stats["diverging"].values, dtype=bool)
        out.update(divergent=int(div.sum()), transitions=int(div.size))
    ess_min = judged_ess_min(chains, draws)
    # the components convergence_warnings judges: those that move and have finite draws
    rows = _moving_rows(table, dtypes, spreads) & ~_nonfinite_rows(table)

    def extreme(column: str, pick: Any) -> float | None:
        values = table[column].to_numpy(dtype=float)[rows] if column in table.columns else np.array([])
        values = values[~np.isnan(values)]  # an inf r_hat is the largest (metrics.json writes it as null)
        return float(pick(values)) if values.size else None

    rhat_judged = judged and chains >= 2 and draws >= MIN_DRAWS
    ess_judged = judged and draws >= MIN_DRAWS
    if rhat_judged:
        out["max_r_hat"] = extreme("r_hat", np.max)
    if ess_judged:
        out["min_ess_bulk"] = extreme("ess_bulk", np.min)
        out["min_ess_tail"] = extreme("ess_tail", np.min)
    out["nonfinite"] = int(_nonfinite_rows(table).sum())
    out["ess_threshold"] = ess_min or None
    out["sampler_warnings"] = len(sampler_warnings(idata))
    # the lines convergence_warnings gives, counted for all rows at once (a Python loop over 1,500 rows took 0.2 s):
    # one per row with NaN or inf draws, and per row judged r_hat > RHAT_MAX, bulk ESS and tail ESS < ess_min
    count = out["nonfinite"]
    if judged:
        with np.errstate(invalid="ignore"):
            for column, bad in (("r_hat", lambda v: v > RHAT_MAX), ("ess_bulk", lambda v: v < ess_min),
                                ("ess_tail", lambda v: v < ess_min)):
                if column in table.columns:
                    values = table[column].to_numpy(dtype=float)
                    count += int((rows & ~np.isnan(values) & bad(values)).sum())
    out["convergence_warnings"] = count
    flagged = out["sampler_warnings"] + out["convergence_warnings"] > 0
    # judged: some moving component had an r_hat, or a bulk ESS held to a threshold (every component fixed by the
    # engine, or too few draws for either, leaves nothing judged: not "converged")
    judged_any = out.get("max_r_hat") is not None or (bool(ess_min) and out.get("min_ess_bulk") is not None)
    out["converged"] = False if flagged else (True if judged_any else None)
    return out


def convergence_record(idata: az.InferenceData) -> dict[str, Any]:
    """``{"convergence": figures}`` (:data:`CONVERGENCE_KEY`, :func:`convergence_figures`), what
    :func:`~pyrozoo.runner.run_model` adds to a run's ``metrics.json``; ``{}`` for independent draws."""
    figures = convergence_figures(idata)
    return {CONVERGENCE_KEY: figures} if figures else {}


def _plural(n: Any, word: str) -> str:
    """``1 chain``, ``2 chains``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def convergence_note(figures: Mapping[str, Any]) -> str:
    """:func:`convergence_figures` (as ``metrics.json`` stores them) in words, for ``pyrozoo report``: ``ok`` (or
    ``ok (r_hat only: ...)``, ``ok (ESS only: ...)`` where one of them was not judged), ``not converged: 51 of 60
    transitions divergent, max r_hat 3.4e+15, 6 warnings`` (each reason the figures record named) or ``not judged
    (...)``, saying why: too few draws, or no component that moves. Figures of an older pyrozoo without
    ``min_ess_tail`` or ``nonfinite`` read as before."""
    converged = figures.get("converged")
    rhat_judged = "max_r_hat" in figures  # 2 or more chains and enough draws
    if converged is True:
        if not figures.get("ess_threshold"):
            return "ok (r_hat only: too few draws per chain to judge ESS)"
        return "ok" if rhat_judged else "ok (ESS only: one chain, no r_hat)"
    draws, chains = figures.get("draws"), figures.get("chains")
    if converged is not False:
        shape = f"{_plural(chains, 'chain')} of {_plural(draws, 'draw')}"
        fixed = (rhat_judged and figures.get("max_r_hat") is None) or (
            bool(figures.get("ess_threshold")) and "min_ess_bulk" in figures and figures["min_ess_bulk"] is None)
        if fixed:
            return f"not judged ({shape}: no component moves, every one is fixed by the engine)"
        if "min_ess_bulk" in figures:  # one chain with draws enough for an ESS, too few to hold it to the threshold
            return f"not judged ({shape}: one chain has no r_hat, and too few draws to judge ESS)"
        return f"not judged ({shape}: too few for r_hat or ESS)"
    parts = []
    if figures.get("divergent"):
        parts.append(f"{figures['divergent']} of {figures.get('transitions')} transitions divergent")
    rhat = figures.get("max_r_hat")
    if isinstance(rhat, (int, float)) and rhat > RHAT_MAX:
        parts.append(f"max r_hat {_above(rhat, RHAT_MAX) if rhat < 1e4 else f'{rhat:.2g}'}")
    ess, limit = figures.get("min_ess_bulk"), figures.get("ess_threshold")
    if isinstance(ess, (int, float)) and isinstance(limit, (int, float)) and ess < limit:
        parts.append(f"min ess_bulk {ess:.0f} < {limit:.0f}")
    tail = figures.get("min_ess_tail")
    if isinstance(tail, (int, float)) and isinstance(limit, (int, float)) and tail < limit:
        parts.append(f"min ess_tail {tail:.0f} < {limit:.0f}")
    if figures.get("nonfinite"):
        parts.append(f"{_plural(figures['nonfinite'], 'component')} with NaN or inf draws")
    other = int(figures.get("sampler_warnings") or 0) - (1 if figures.get("divergent") else 0)
    if other > 0:
        parts.append(f"{_plural(other, 'sampler warning')} (stuck chain, E-BFMI or tree depth)")
    count = sum(int(figures.get(k) or 0) for k in ("sampler_warnings", "convergence_warnings"))
    parts.append(f"{count} warning{'s' if count != 1 else ''}")
    return "not converged: " + ", ".join(parts)


def report_lines(idata: az.InferenceData, table: pd.DataFrame, *, where: str = "in the summary table",
                 independent_notes: bool = True) -> tuple[list[str], list[str]]:
    """The notes and warnings that ``pyrozoo run`` and ``pyrozoo diagnose`` both print under a summary table, by
    one rule. Fewer than 2 draws per chain: a note (a sampler short of draws, or a point estimate) and only the
    NaN or inf warnings. Else independent draws (not :func:`is_markov_chain`: exact, SVI, SWAG ... posteriors): a
    note and :func:`check_lines` without r_hat and ESS. Else a Markov chain: :func:`check_lines` with ESS at
    :func:`ess_threshold`, whatever the number of chains (ESS is within-chain), and r_hat where there are several
    chains (with one it is NaN, not judged; a note says so). ``independent_notes=False`` leaves out the two notes on
    independent draws (``pyrozoo run``, which would print one after every SVI or point-estimate fit). ``table``:
    :func:`summary`, or :func:`check_table` with ``convergence=``:func:`convergence_judged`."""
    chains, draws = idata.posterior.sizes.get("chain", 1), idata.posterior.sizes.get("draw", 1)
    markov = is_markov_chain(idata)
    context: list[str] = []
    if draws < 2:  # one draw per chain: no trace, no within-chain spread, whatever the number of chains
        each = f" per chain ({chains} chains)" if chains > 1 else ""
        if markov:  # a sampler asked for one draw, not a point-estimate engine
            sd = "sd, " if chains < 2 else ""
            context.append(f"only one draw{each}: {sd}r_hat, ESS, MCSE, az.loo/az.waic and trace, density or energy "
                           f"plots need more; rerun with a larger --num-samples")
        elif independent_notes:
            context.append("one draw (a point estimate, or --num-samples 1): sd, r_hat, ESS, az.loo and trace or "
                           "density plots do not apply (az.waic returns the in-sample fit, not an out-of-sample "
                           "elpd)")
        return context, shown_warnings(nonfinite_warnings(table), where=where)
    if not markov and independent_notes:
        context.append("independent draws from the fitted posterior (no Markov chain), so r_hat and ESS do not "
                       "measure convergence; an optimizer's loss trace, where the engine has one, is in the "
                       "fit_stats group")
    elif markov and chains < 2:
        context.append("one chain only (r_hat needs several); ESS is within-chain")
    notes, lines = check_lines(idata, table, convergence=convergence_judged(idata), where=where)
    return context + notes, lines


NOTE_NAMES = 10  # names a note lists before it counts the rest


def listed(names: list[str], limit: int = NOTE_NAMES) -> str:
    """``names`` joined by commas, at most ``limit`` of them, then "... and N more": a spike-slab run with p = 3,000
    named every one of its 3,000 fixed gamma components on one 40,881-character line."""
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])}, ... and {len(names) - limit:,} more ({len(names):,} in all)"


def sampler_warnings(idata: az.InferenceData, *, accept_min: float = ACCEPT_MIN,
                     bfmi_min: float = BFMI_MIN, treedepth_share_max: float = TREEDEPTH_SHARE_MAX) -> list[str]:
    """What the summary table cannot show: divergent transitions (``sample_stats.diverging``), chains whose mean
    acceptance rate is below ``accept_min`` (a stuck chain repeats one draw, and ArviZ still reports a full ESS),
    chains whose energy Bayesian fraction of missing information, E-BFMI = sum (E_n - E_{n-1})^2 /
    sum (E_n - mean E)^2 (``az.bfmi`` on ``sample_stats.energy``), is below ``bfmi_min``, and NUTS runs in which
    more than ``treedepth_share_max`` of the transitions stopped at the maximum tree depth
    (``sample_stats.reached_max_treedepth``)."""
    stats = getattr(idata, "sample_stats", None)
    if stats is None:
        return []
    out = []
    if "diverging" in stats:
        div = np.asarray(stats["diverging"].values, dtype=bool)
        if div.any():
            per_chain = ", ".join(f"chain {c}: {int(n)}" for c, n in enumerate(div.reshape(div.shape[0], -1).sum(1)))
            out.append(f"{int(div.sum())} of {div.size} transitions divergent ({per_chain}); raise --warmup-steps "
                       f"or reparameterize")
    if "reached_max_treedepth" in stats:
        hit = np.asarray(stats["reached_max_treedepth"].values, dtype=bool)
        if hit.size and hit.mean() > treedepth_share_max:
            per_chain = ", ".join(f"chain {c}: {int(n)}" for c, n in enumerate(hit.reshape(hit.shape[0], -1).sum(1)))
            depth = (f" ({int(np.asarray(stats['tree_depth'].values)[hit].max())})" if "tree_depth" in stats
                     else "")
            out.append(f"{int(hit.sum())} of {hit.size} transitions stopped at the maximum tree depth{depth} "
                       f"({per_chain}): NUTS trajectories were cut short, so it explores slowly; raise the maximum "
                       f"tree depth or reparameterize")
    if "acceptance_rate" in stats:
        acc = np.asarray(stats["acceptance_rate"].values, dtype=float)
        acc = acc.reshape(acc.shape[0], -1).mean(1)
        for c, a in enumerate(acc):
            if np.isfinite(a) and a < accept_min:
                out.append(f"chain {c}: mean acceptance rate {a:.3g} < {accept_min}: the chain is stuck, its draws "
                           f"repeat one value")
    if "energy" in stats and stats["energy"].sizes.get("draw", 0) > 2:
        energy = np.asarray(stats["energy"].values, dtype=float)
        energy = energy.reshape(energy.shape[0], -1)
        for c, e in enumerate(energy):  # chain by chain: one chain's NaN energy must not silence the others
            bad = int((~np.isfinite(e)).sum())
            if bad:  # inference/mcmc.py records NaN where the kernel kept no starting Hamiltonian
                out.append(f"chain {c}: {bad} of {e.size} energies are NaN or inf, so its E-BFMI is not checked")
            elif e.std() > 0:
                b = float(az.bfmi(e[None])[0])
                if b < bfmi_min:
                    out.append(f"chain {c}: E-BFMI {b:.3g} < {bfmi_min}: the sampler explores the energy poorly "
                               f"(heavy tails or a funnel); reparameterize")
    return out


def min_ess(idata: az.InferenceData, var_names: str | list[str] | None = None) -> float:
    """The smallest bulk ESS over all scalar components of the posterior variables :func:`selected_variables`
    picks, ignoring components whose ESS is NaN (NaN or inf draws, or draws too few); a variable with no entries has
    none; NaN when no component has one."""
    names = [v for v in selected_variables(idata, var_names) if idata.posterior[v].size > 0]
    if not names:
        return float("nan")
    with _quiet_arviz(idata, names):  # "Array contains NaN-value": the NaN components are the ones skipped here
        ess = az.ess(idata, var_names=names, method="bulk")
    # ArviZ gives a component with inf draws a finite ESS (ranks keep it): skipped here as the docstring says
    finite = [np.isfinite(np.asarray(idata.posterior[v].values, dtype=float)).all(axis=(0, 1)).reshape(-1)
              for v in ess.data_vars]
    values = np.concatenate([np.asarray(ess[v].values, dtype=float).reshape(-1) for v in ess.data_vars])
    values = values[np.concatenate(finite) & ~np.isnan(values)]  # np.nanmin of all NaN would warn "All-NaN slice"
    return float(values.min()) if values.size else float("nan")


def save_plots(idata: az.InferenceData, out_dir: str | Path, var_names: str | list[str] | None = None,
               max_vars: int = 8, max_entries: int = 8) -> tuple[list[Path], list[str]]:
    """Trace and posterior plots as PNG under ``out_dir`` (made only when a plot is written): the variables
    :func:`selected_variables` picks (``~name`` excludes), without ``var_names`` the first ``max_vars``, and of a
    vector or matrix variable its first ``max_entries`` entries (ArviZ would draw one panel per entry: 824 for a
    GP's f). Entries that never move or have NaN or inf draws, variables with no entries or no real values are
    left out; true/false draws are plotted as 0/1. Fewer than 2 draws per chain give no plots. Returns the paths
    and one note per variable cut or left out (one note naming the variables beyond the first ``max_vars``)."""
    names = selected_variables(idata, var_names)
    beyond: list[str] = []
    if not var_names:
        names, beyond = names[:max_vars], names[max_vars:]
    draws = idata.posterior.sizes.get("draw", 1)
    if draws < 2:  # a trace of one point per chain, a density of one value, an E-BFMI of nothing
        return [], [f"only {draws} draw per chain: no trace, posterior or energy plots (they need at least 2)"]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    post, notes = _plottable(idata.posterior[names])
    if beyond:
        notes.insert(0, f"plots show the first {len(names)} of the {len(names) + len(beyond)} variables; not plotted: "
                        f"{listed(beyond)} (--var NAME plots them)")
    post, cut = _first_entries(post, max_entries)
    notes += cut
    # ArviZ's density estimate fails on a range of ~1e-15 ("Too many bins", OverflowError) and on NaN: leave such
    # entries out
    post, still, nonfinite = _drop_constant_entries(post)
    if nonfinite:
        notes.append(f"not plotted, NaN or inf among the draws: {', '.join(nonfinite)}")
    if still:
        notes.append(f"not plotted, the same in every draw up to rounding: {', '.join(still)}")
    plots: list[tuple[str, Any]] = []
    if post.data_vars:
        plots += [("trace", lambda: az.plot_trace(post, compact=True)), ("posterior", lambda: az.plot_posterior(post))]
    stats = getattr(idata, "sample_stats", None)
    if stats is not None and "energy" in stats:  # NUTS/HMC: marginal energy vs energy transitions (E-BFMI)
        if not _has_nonfinite(stats["energy"].values):
            plots.append(("energy", lambda: az.plot_energy(idata)))
        else:
            notes.append("no energy plot: some energies are NaN or inf (see the warnings)")
    paths = []
    for kind, draw in plots:
        try:
            with warnings.catch_warnings():  # a stuck chain (already warned about) is one value per chain
                warnings.filterwarnings("ignore", message="Your data appears to have a single value")
                axes = draw()
        except (ValueError, OverflowError, KeyError) as exc:  # a plot is a convenience: say why, go on
            plt.close("all")
            notes.append(f"ArviZ could not draw the {kind} plot ({type(exc).__name__}: {exc})")
            continue
        fig = np.asarray(axes).ravel()[0].figure
        with warnings.catch_warnings():  # titles off the tick labels of the row above; a tight fit may not exist
            warnings.simplefilter("ignore", UserWarning)
            fig.tight_layout()
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)  # here, not up front: a run that plots nothing leaves no folder
        path = out / f"{kind}.png"
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths, notes


def _plottable(post: Any) -> tuple[Any, list[str]]:
    """``post`` with true/false draws as 0/1 (ArviZ's density estimate subtracts them) and without the variables
    ArviZ cannot plot: no entries (shape ``(chain, draw, 0)``) or values that are not real numbers."""
    notes = []
    for name in list(post.data_vars):
        v = post[name]
        if v.dtype == bool:
            post[name] = v.astype(np.int8)
        elif not (np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating)):
            post = post.drop_vars(name)
            notes.append(f"not plotted, not real numbers (dtype {v.dtype}): {name}")
        elif v.size == 0:
            post = post.drop_vars(name)
            notes.append(f"not plotted, no entries (shape {tuple(v.shape[2:])}): {name}")
    return post, notes


def _drop_constant_entries(post: Any) -> tuple[Any, list[str], list[str]]:
    """``post`` without the entries that have a NaN or inf draw or whose draws span a :func:`_negligible` range (in
    the precision of the variable's stored dtype), and the names of both kinds as az.summary names them: a variable
    goes whole when all its entries go; else it keeps the others, a vector on its axis renamed ``AXIS_moving_NAME``,
    a matrix or array flattened to its moving entries on an axis ``NAME_moving`` labelled with their coordinates
    (``0, 2``); each variable on an axis of its own, so that other variables keep theirs in full."""
    const_names, bad_names = [], []
    order = list(post.data_vars)
    for name in order:
        dtype = post[name].dtype
        v = np.asarray(post[name].values, dtype=float)
        v = v.reshape(-1, *v.shape[2:])  # (draws, entries...)
        bad = ~np.isfinite(v).all(0)
        const = _negligible(v.max(0) - v.min(0), np.abs(v).max(0), dtype, RANGE_STEPS) & ~bad
        drop = bad | const
        if not np.any(drop):
            continue
        if np.all(drop):
            post = post.drop_vars(name)
            (bad_names if np.any(bad) else const_names).append(str(name))
            continue
        labels = component_labels(post[name])  # W[0, 2], gamma[x1]: the entries in C order, with their coordinates
        bad, const, drop = bad.reshape(-1), const.reshape(-1), drop.reshape(-1)
        axes = [d for d in post[name].dims if d not in ("chain", "draw")]
        if len(axes) == 1:  # keep the axis's coordinate (feature names, say), as az.summary names the entries
            post[name] = post[name].isel({axes[0]: np.flatnonzero(~drop)}).rename(
                {axes[0]: f"{axes[0]}_moving_{name}"})
        else:  # one flat axis of the moving entries, labelled as the summary's rows are
            keep = np.flatnonzero(~drop)
            flat = post[name].values.reshape(*post[name].shape[:2], -1)[..., keep]
            coords = {d: post[name][d].values for d in ("chain", "draw")}
            coords[f"{name}_moving"] = [labels[i][len(str(name)) + 1:-1] for i in keep]  # "0, 2" of W[0, 2]
            post = post.drop_vars(name)
            post[name] = xr.DataArray(flat, dims=("chain", "draw", f"{name}_moving"), coords=coords)
        bad_names += [labels[i] for i in np.flatnonzero(bad)]
        const_names += [labels[i] for i in np.flatnonzero(const)]
    return post[[n for n in order if n in post.data_vars]], const_names, bad_names  # a flattened one in its place


def _first_entries(post: Any, max_entries: int) -> tuple[Any, list[str]]:
    """``post`` (an xarray Dataset) cut to at most ``max_entries`` entries per variable, each on its own: its first
    dim beyond (chain, draw) keeps up to ``max_entries`` values, the next ones what is left of the budget (at least
    one). A dim that variables share keeps its full length where a variable fits; a variable cut shorter on it gets
    the dim renamed ``DIM_firstK``, so that a vector that fits is not cut to suit a matrix beside it."""
    keep: dict[str, dict[str, int]] = {}
    for name in post.data_vars:
        budget, keep[name] = max_entries, {}
        for dim in [d for d in post[name].dims if d not in ("chain", "draw")]:
            k = max(1, min(post.sizes[dim], budget))
            keep[name][dim] = k
            budget = max(1, budget // k)
    longest = {}  # per shared dim, the longest cut of any variable: the length that dim keeps in the dataset
    for cuts in keep.values():
        for dim, k in cuts.items():
            longest[dim] = max(longest.get(dim, 0), k)
    cut = xr.Dataset({name: post[name].isel({d: slice(0, k) for d, k in keep[name].items()})
                      .rename({d: f"{d}_first{k}" for d, k in keep[name].items() if k < longest[d]})
                      for name in post.data_vars}, attrs=post.attrs)
    notes = []
    for name in post.data_vars:
        full, shown = int(np.prod(post[name].shape[2:])), int(np.prod(cut[name].shape[2:]))
        if shown < full:
            notes.append(f"plots show the first {shown} of the {full} entries of {name}")
    return cut, notes
