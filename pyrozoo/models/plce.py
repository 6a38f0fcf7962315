"""PLCE final stage as a Pyro model: the treatment effect theta with a posterior next to its sandwich SE.

After cross-fitting (:mod:`pyrozoo.causal`), the residuals ry_i = y_i - m_hat(x_i), rt_i = t_i - g_hat(x_i)
(averaged over the R splits) and weights w_i (1, or 1 / Var(t | x_i) under the heteroskedastic treatment model)
enter the regression

    theta ~ N(0, theta_scale^2),  sigma ~ HalfNormal(2),
    ry_i | theta, sigma ~ N(theta rt_i, (sigma sd(ry))^2 / w_i)   for i in plate "obs_id"

(sigma in units of sd(ry), an O(1) scale whatever the outcome's units; theta keeps the outcome's units per unit of
treatment, which NUTS handles by adapting its mass matrix during warmup and the SVI guide by its preconditioning).

With the vague default prior the posterior of theta is close to N(theta_wls, sigma^2 / sum_i w_i rt_i^2): the
classical (model-based) WLS variance, which agrees with the HC3 sandwich when the errors are homoskedastic given
the weights; ``metrics`` reports both, so a gap flags heteroskedasticity the Gaussian likelihood ignores.

Entry ``plce``: ``pyrozoo run plce -o scenario=heterogeneity`` simulates the talk's design, ``--dataset lalonde``
uses MatchIt/lalonde, ``--data file.csv -o outcome=y -o treatment=t`` a user's table; the cross-fitting runs when the
data are loaded, the chosen engine (svi or nuts) on the final stage. ``treatment_model="auto"`` (the default) is the
benchmark's weighted estimator on a simulated scenario whose treatment is heteroskedastic (heterogeneity, combined),
whose target is the simulator's true average effect, and the homoskedastic one elsewhere
(:func:`resolve_treatment_model`).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import torch

from pyrozoo.causal.basis import interaction_kind
from pyrozoo.causal.plce import PLCE, TREATMENT_MODELS, reads_groups
from pyrozoo.causal.simulate import SCENARIOS, simulate_plce
from pyrozoo.config import RunConfig
from pyrozoo.data.dataset import Dataset
from pyrozoo.data.regression_file import blank_header_message, check_columns_exist
from pyrozoo.data.shipped import data_row, load_rdataset, numeric_column, read_table
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.device import keeps_caller_state, resolve_device
from pyrozoo.inference.from_config import mcmc_from_config, svi_from_config
from pyrozoo.inference.result import Result, draws_sd
from pyrozoo.registry import MCMC_SETTINGS, SVI_SETTINGS, ZooModel, checked_config, register
from pyrozoo.validation import (
    check_choice,
    check_float_dtype,
    check_positive,
    check_real,
    check_seed,
    check_single_names,
    check_unique,
)

OPTIONS: dict[str, Any] = {
    # simulator (the talk's design)
    "scenario": "baseline", "n": 1000,
    # estimator
    "learner": "spike_slab", "n_folds": 5, "n_repeats": 5, "n_knots": 5, "interactions": "quadratic",
    "treatment_model": "auto", "random_effects": "auto", "interference": False, "se_type": "hc3",
    "refit": "union", "linear_controls": True,
    # columns for --data / --dataset; outcome and treatment None: the source's default (FILE_COLUMNS, LALONDE_COLUMNS)
    "outcome": None, "treatment": None, "controls": "", "groups": "",
    # final-stage prior: sd of theta in units of sd(ry) / sd(rt)
    "theta_scale": 10.0,
}
LEARNERS = ("spike_slab", "ridge", "lasso")
# the outcome and treatment columns when the options are not given (an explicit -o outcome=y is the column y)
FILE_COLUMNS = {"outcome": "y", "treatment": "t"}
LALONDE_COLUMNS = {"outcome": "re78", "treatment": "treat"}


def plce_final_stage_model(t_resid: torch.Tensor, weights: torch.Tensor, theta_scale: torch.Tensor,
                           y_scale: torch.Tensor, y_resid: torch.Tensor | None = None) -> torch.Tensor:
    """ry_i ~ N(theta rt_i, (sigma y_scale)^2 / w_i), theta ~ N(0, theta_scale^2), sigma ~ HalfNormal(2).

    ``sigma`` is the residual sd in units of ``y_scale`` = sd(ry), so the sampler meets an O(1) noise scale whatever
    the outcome's units (dollars of earnings ...); theta keeps the outcome's units."""
    theta = pyro.sample("theta", dist.Normal(torch.zeros_like(theta_scale), theta_scale))
    sigma = pyro.sample("sigma", dist.HalfNormal(2.0 * torch.ones_like(y_scale)))
    with pyro.plate("obs_id", t_resid.shape[0]):
        return pyro.sample("y_resid", dist.Normal(theta * t_resid, sigma * y_scale * weights.rsqrt()), obs=y_resid)


def make_final_stage_guide(reference: dict[str, float], init: Mapping[str, float] | None = None) -> Any:
    """Gaussian guide for theta and log-normal for sigma, parametrized *relative to the closed-form reference*:
    theta = m + s (a + b z), sigma = sigma_hat exp(c + d z') with (a, b, c, d) learned from (0, 1, 0, 0.1). The affine
    preconditioning makes the optimization scale-free (raw-dollar outcomes otherwise need ~1e4 Adam steps).
    ``init`` (``theta_mean``, ``theta_sd``, in theta's units) starts q(theta) elsewhere than at the reference:
    a = (theta_mean - m) / s, b = theta_sd / s."""
    from torch.distributions import constraints

    m, sd, s_hat = reference["theta_mean"], reference["theta_sd"], reference["sigma_rel"]
    if init is not None and not isinstance(init, Mapping):
        raise PyrozooError(f"init: expected a mapping with theta_mean and/or theta_sd, got {init!r}")
    init = dict(init or {})
    unknown = sorted(set(init) - {"theta_mean", "theta_sd"})
    if unknown:
        raise PyrozooError(f"init: expected keys among theta_mean, theta_sd, got {', '.join(map(repr, unknown))}")
    a0 = (check_real("init['theta_mean']", init.get("theta_mean", m)) - m) / sd
    check_positive("init['theta_sd']", init.get("theta_sd", sd), scalar=True)
    b0 = float(init.get("theta_sd", sd)) / sd

    def guide(t_resid: torch.Tensor, weights: torch.Tensor, theta_scale: torch.Tensor, y_scale: torch.Tensor,
              y_resid: torch.Tensor | None = None) -> None:
        opts = {"dtype": t_resid.dtype, "device": t_resid.device}
        a = pyro.param("theta_shift", torch.tensor(a0, **opts))
        b = pyro.param("theta_rel_scale", torch.tensor(b0, **opts), constraint=constraints.positive)
        c = pyro.param("log_sigma_shift", torch.tensor(0.0, **opts))
        d = pyro.param("log_sigma_scale", torch.tensor(0.1, **opts), constraint=constraints.positive)
        pyro.sample("theta", dist.Normal(m + sd * a, sd * b))
        pyro.sample("sigma", dist.LogNormal(math.log(s_hat) + c, d))

    return guide


def final_stage_reference(dataset: Dataset, *, prior: bool = False) -> dict[str, float]:
    """Closed-form large-sample posterior of theta: WLS estimate and sd sigma_hat / sqrt(sum w rt^2) (sigma at its
    WLS estimate, prior ignored) — the reference the engines are checked against under the default vague prior.

    ``prior=True`` (the SVI guide's start and preconditioning): the same with theta's N(0, s^2) prior,
    s = ``theta_scale`` in the model's units. Given sigma (S2 = (sigma y_scale)^2, the residual variance at w = 1)
    the posterior of theta is conjugate,

        precision = sum w rt^2 / S2 + 1 / s^2,  mean = (sum w rt ry / S2) / precision,

    and S2 is taken at its EM fixed point with theta integrated out, S2 = (sum w (ry - mean rt)^2 + var sum w rt^2)
    / n (var = 1 / precision), iterated from the WLS S2 = RSS / (n - 1). Without the prior (s -> inf) that fixed
    point is the WLS S2 itself, so the reference is unchanged; with an informative prior theta is shrunk toward 0
    and sigma grows with the residuals left (sigma's weak HalfNormal(2) prior on an O(1) scale is left out)."""
    rt, w = dataset.inputs["t_resid"].double(), dataset.inputs["weights"].double()
    ry = dataset.observed["y_resid"].double()
    sxx, sxy = float((w * rt * rt).sum()), float((w * rt * ry).sum())
    theta = sxy / sxx
    n = rt.numel()
    s2 = float((w * (ry - theta * rt) ** 2).sum() / (n - 1))
    sd = math.sqrt(s2 / sxx)
    if prior:
        inv_prior = 1.0 / float(dataset.inputs["theta_scale"]) ** 2
        for _ in range(100):  # EM steps; each shrinks the distance to the fixed point (by ~1 / n with a vague prior)
            precision = sxx / s2 + inv_prior
            theta = sxy / s2 / precision
            new = float((w * (ry - theta * rt) ** 2).sum() + sxx / precision) / n
            converged = abs(new - s2) <= 1e-13 * s2
            s2 = new
            if converged:
                break
        precision = sxx / s2 + inv_prior
        theta, sd = sxy / s2 / precision, math.sqrt(1.0 / precision)
    return {"theta_mean": theta, "theta_sd": sd, "sigma": math.sqrt(s2),
            "sigma_rel": math.sqrt(s2) / float(dataset.inputs["y_scale"])}


def resolve_treatment_model(value: Any, scenario: str | None = None) -> str:
    """The estimator's treatment model for the entry's option ``value``: itself unless ``"auto"``, which is
    ``"heteroskedastic"`` on a simulated ``scenario`` whose treatment is heteroskedastic (heterogeneity, combined:
    benchmarks/plce_sim.py's configuration there) and ``"homoskedastic"`` otherwise (another scenario, or a data file
    or dataset, ``scenario=None``). On those scenarios the effect is heterogeneous too, and the unweighted
    coefficient targets the variance-weighted effect E[s^2(x) theta(x)] / E[s^2(x)] = 2 (s^2 = (x1^2 + 1) / 2,
    theta = x1^2), not the average effect 1 the simulator reports as the truth; the weights 1 / s^2 target 1."""
    check_choice("treatment_model", value, ("auto", *TREATMENT_MODELS))
    if value != "auto":
        return value
    hetero = scenario is not None and SCENARIOS[scenario].get("heteroskedastic", False)
    return "heteroskedastic" if hetero else "homoskedastic"


def _learner(name: str, seed: int, device: str) -> Any:
    check_choice("learner", name, LEARNERS)
    if name == "spike_slab":
        return None  # PLCE's default: spike-and-slab EM
    from sklearn.linear_model import LassoCV, RidgeCV

    if name == "ridge":
        return RidgeCV(alphas=np.logspace(-3, 3, 13))
    return LassoCV(cv=3, random_state=seed, max_iter=5000)


def check_option_effects(options: Mapping[str, Any]) -> None:
    """Raise for an option that would have no effect with the others: ``linear_controls=false`` joins only the
    refit of the spike_slab learner's selections (ridge and lasso select nothing; ``refit="none"`` skips it), and
    ``refit`` other than its default ("union") acts only on those selections (:class:`PLCE` refuses both too; here
    they are caught before any data are read). A ``groups`` column is read only by random effects (``random_effects``
    auto or true) or ``se_type="cluster"``; with ``random_effects=false`` and HC3 it is refused likewise."""
    learner, refit = options.get("learner", "spike_slab"), options.get("refit", "union")
    if refit in ("union_ols", "none") and learner in ("ridge", "lasso"):  # other values: refused by their checks
        raise PyrozooError(f"refit: {refit!r} applies only with learner='spike_slab' (the refit acts on its column "
                           f"selections); learner={learner!r} selects no columns, so it would have no effect "
                           f"(remove it)")
    if options.get("groups") and not reads_groups(options.get("random_effects", "auto"),
                                                  options.get("se_type", "hc3")):
        raise PyrozooError(f"groups: {options['groups']!r} applies only with random effects (random_effects auto, the "
                           f"default, or true) or se_type=cluster; with random_effects=false and "
                           f"se_type={options.get('se_type', 'hc3')} it would have no effect (remove it)")
    if options.get("linear_controls", True) is False and (learner != "spike_slab" or refit == "none"):
        why = f"refit={refit!r} keeps" if refit == "none" else f"learner={learner!r} (no selection to refit) keeps"
        raise PyrozooError(f"linear_controls: false applies only to the refit of the spike_slab learner's selections; "
                           f"{why} the learner's own predictions, so it would have no effect (remove it)")


def _check_run_options(config: RunConfig) -> None:
    """The entry's family check (every cell of a sweep, before any data): one column for each of outcome, treatment
    and groups (a list reached the readers), the simulator's ``scenario`` one of
    :data:`~pyrozoo.causal.simulate.SCENARIOS` (refused only by the simulator, a misspelt one failed each sweep cell
    instead of stopping the sweep), :func:`check_option_effects`, every estimator setting the data do not change
    (:meth:`PLCE.check_settings`: ``n_folds`` >= 2, ``n_knots``, the choices ...) and, for a file or a dataset, the
    group column that ``random_effects=true`` or ``se_type=cluster`` needs (the simulator has its own)."""
    check_single_names(config.options, ("outcome", "treatment", "groups"))
    if "scenario" in config.options:
        check_choice("scenario", config.options["scenario"], SCENARIOS)
    opts = {**OPTIONS, **config.options}
    check_option_effects(opts)
    simulated = config.data is None and config.dataset is None
    opts["treatment_model"] = resolve_treatment_model(opts["treatment_model"], opts["scenario"] if simulated else None)
    make_estimator(config.seed, "cpu", **opts).check_settings()  # the device is the runner's check
    if (config.data is not None or config.dataset is not None) and not opts["groups"]:
        if opts["random_effects"] is True:
            raise PyrozooError("random_effects: true needs a group id per row; name the group column (--groups, or "
                               "-o groups=COLUMN with pyrozoo run)")
        if opts["se_type"] == "cluster":
            raise PyrozooError("se_type: 'cluster' needs groups to cluster on; name the group column (--groups, or "
                               "-o groups=COLUMN with pyrozoo run)")


def make_estimator(seed: int, device: Any = "cpu", **options: Any) -> PLCE:
    """A :class:`PLCE` from the entry's options (validated here, before any work); ``treatment_model="auto"`` is
    homoskedastic here (:func:`resolve_treatment_model` without a scenario: the simulator resolves it first)."""
    seed = check_seed("seed", seed)
    re_opt = options.get("random_effects", "auto")
    if re_opt not in ("auto", True, False):
        raise PyrozooError(f"random_effects: expected auto, true or false, got {re_opt!r}")
    for flag in ("interference", "linear_controls"):
        if not isinstance(options.get(flag, False), bool):
            raise PyrozooError(f"{flag}: expected true or false, got {options[flag]!r}")
    check_positive("theta_scale", options.get("theta_scale", 10.0))
    check_option_effects(options)
    learner, refit = options.get("learner", "spike_slab"), options.get("refit", "union")
    dev = str(resolve_device(device))
    return PLCE(_learner(learner, seed, dev), n_folds=options.get("n_folds", 5),
                n_repeats=options.get("n_repeats", 5), n_knots=options.get("n_knots", 5),
                interactions=options.get("interactions", "quadratic"),
                treatment_model=resolve_treatment_model(options.get("treatment_model", "auto")),
                random_effects=None if re_opt == "auto" else re_opt, interference=options.get("interference", False),
                se_type=options.get("se_type", "hc3"), refit=refit,
                linear_controls=options.get("linear_controls", True), seed=seed, device=dev)


def make_final_stage_dataset(est: PLCE, *, name: str = "plce", device: Any = "cpu", theta_scale: float = 10.0,
                             truth: dict | None = None, meta: dict | None = None,
                             dtype: torch.dtype = torch.float64) -> Dataset:
    """Pack a fitted estimator's residuals as the final stage's :class:`Dataset` (float64: outcomes such as
    earnings in dollars make float32 sums of squares lose digits)."""
    check_float_dtype("dtype", dtype)
    data = est.final_stage_data()
    dev = resolve_device(device)

    def tt(v: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(v, dtype=np.float64), dtype=dtype, device=dev)

    sd_ry, sd_rt = float(np.std(data["y_resid"])), float(np.std(data["t_resid"]))
    inputs = {"t_resid": tt(data["t_resid"]), "weights": tt(data["weights"]),
              "theta_scale": tt(theta_scale * sd_ry / max(sd_rt, 1e-12)), "y_scale": tt(max(sd_ry, 1e-12))}
    return Dataset(name, inputs=inputs, observed={"y_resid": tt(data["y_resid"])}, truth=dict(truth or {}),
                   meta={"plce": est, **(meta or {})})


def _fit_and_pack(name: str, y: np.ndarray, t: np.ndarray, X: Any, groups: np.ndarray | None, seed: int,
                  device: Any, options: dict[str, Any], truth: dict | None = None,
                  meta: dict | None = None) -> Dataset:
    est = make_estimator(seed, device, **options)
    est.fit(y, t, X, groups=groups)
    return make_final_stage_dataset(est, name=name, device=device, theta_scale=options.get("theta_scale", 10.0),
                                    truth=truth, meta=meta)


def simulate_plce_dataset(seed: int, *, device: Any = "cpu", **options: Any) -> Dataset:
    """The talk's design (``scenario``, ``n``), cross-fitted: group ids (the simulator's groups of 20 units) are
    passed when the scenario has random effects (``random_effects="auto"``), always with ``random_effects=true``,
    and always with ``se_type="cluster"`` (the clusters of its standard errors; without them that run stopped with
    "needs groups"). ``random_effects="auto"`` is resolved to the scenario's flag first, so cluster SEs on a
    scenario without random effects do not turn them on.

    ``treatment_model="auto"`` (the default) is resolved to the scenario's too (:func:`resolve_treatment_model`):
    heteroskedastic on heterogeneity and combined, whose unweighted estimate targets the variance-weighted effect
    (about 2) instead of the true theta = 1 (the credible interval excluded the truth with no warning). An explicit
    ``treatment_model="homoskedastic"`` there is kept, with a warning before the cross-fitting that its estimand is
    not the reported truth."""
    opts = {**OPTIONS, **options}
    check_choice("scenario", opts["scenario"], SCENARIOS)
    scenario = opts["scenario"]
    opts["treatment_model"] = resolve_treatment_model(opts["treatment_model"], scenario)
    sim = simulate_plce(seed, scenario, n=opts["n"])
    if opts["random_effects"] == "auto":  # the scenario's own: group ids passed for cluster SEs alone turn none on
        opts["random_effects"] = bool(sim.flags["random_effects"])
    if opts["treatment_model"] == "homoskedastic" and sim.flags["heterogeneous"] and sim.flags["heteroskedastic"]:
        warnings.warn(f"treatment_model: 'homoskedastic' on scenario {scenario!r} (heterogeneous effect, "
                      f"heteroskedastic treatment) estimates the variance-weighted effect E[s^2(x) theta(x)] / "
                      f"E[s^2(x)], about 2 in this design, not the average effect theta = {sim.theta:g} reported as "
                      f"true_theta (error_vs_theta measures the difference); leave treatment_model unset (auto) or "
                      f"set it to heteroskedastic to estimate theta", UserWarning, stacklevel=2)
    use_groups = opts["random_effects"] is True or opts["se_type"] == "cluster"
    return _fit_and_pack(f"plce-{opts['scenario']}", sim.y, sim.t, sim.X, sim.groups if use_groups else None,
                         seed, device, opts, truth={"theta": sim.theta}, meta={"scenario": opts["scenario"]})


def _blank_header_columns(df: pd.DataFrame, columns: list[Any]) -> list[int]:
    """The 1-based positions of those of ``columns`` whose header was blank: pandas names such a column
    ``Unnamed: k`` (k its 0-based position), as in a file written by ``DataFrame.to_csv`` with its index."""
    return [i for i, c in enumerate(df.columns, start=1)
            if c in columns and isinstance(c, str) and re.fullmatch(r"Unnamed: \d+", c)]


# how `pyrozoo plce` and `pyrozoo run plce` spell each column option, for the errors of frame_to_arrays
COLUMN_FLAGS: dict[str, str] = {
    option: f"--{option}, or -o {option}={value} with pyrozoo run"
    for option, value in (("outcome", "COLUMN"), ("treatment", "COLUMN"), ("controls", "NAME,..."),
                          ("groups", "COLUMN"))}


def frame_to_arrays(df: pd.DataFrame, outcome: str, treatment: str, controls: str | list[str] = "",
                    groups: str = "", *, source: str = "data",
                    flags: Mapping[str, str] | None = None,
                    defaults: Mapping[str, str] | None = None) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, Any]:
    """Outcome, treatment, controls (all other columns when empty; text columns become dummies) and groups.

    The control columns used (before dummy coding) are in ``X.attrs["controls"]``. With the default controls, a
    column with a blank header (``Unnamed: 0``, the index column of a ``DataFrame.to_csv(path)`` file) is an error:
    taken as a control it adjusts for the row order; named controls leave it unused. A column the table lacks is an
    error naming the option and how the command spells it (``flags``, option -> spelling; default
    :data:`COLUMN_FLAGS`, the ``pyrozoo plce`` / ``pyrozoo run plce`` spellings; the hints about controls use the
    same spelling); ``defaults`` (option -> default column) says when a missing column was the default."""
    if outcome == treatment:
        raise PyrozooError(f"treatment: the column {treatment!r} is also the outcome; name two different columns")
    if groups and groups in (outcome, treatment):  # grouping by y or t itself: random intercepts that absorb them
        role = "outcome" if groups == outcome else "treatment"
        raise PyrozooError(f"groups: {groups!r} is the {role} column; groups must be another column")
    split = isinstance(controls, str)
    if split:
        controls = [c.strip() for c in controls.split(",") if c.strip()]
    flags = COLUMN_FLAGS if flags is None else flags
    try:
        wanted = {"outcome": [outcome], "treatment": [treatment], "controls": list(controls),
                  "groups": [groups] if groups else []}
        check_columns_exist(source, list(df.columns), wanted, hints=flags, defaults=defaults)
    except PyrozooError as error:
        comma = [c for c in df.columns if isinstance(c, str) and "," in c]
        if not (split and comma and str(error).startswith("controls:")):
            raise
        raise PyrozooError(f"{error}; the controls given as text are split at commas, so column {comma[0]!r} cannot "
                           f"be named there: leave the controls out (every other column), give them as a list "
                           f"(-o 'controls=[\"{comma[0]}\", ...]' with pyrozoo run, a list in Python) or rename "
                           f"the column") from None
    controls_flag = flags.get("controls", "-o controls=NAME,...")
    y = numeric_column(df, outcome, source=source)
    t = numeric_column(df, treatment, source=source)
    if groups and df[groups].isna().any():  # by column and data row, as for y, t and the controls
        missing = df[groups].isna().to_numpy()
        raise PyrozooError(f"{source}: group column {groups!r} has {int(missing.sum())} missing value(s) (first at "
                           f"{data_row(int(np.argmax(missing)))}); every row needs a group id: fill or drop those "
                           f"rows")
    check_unique("controls", controls, what="column", quote=True)  # a copy is collinear yet moves penalized fits
    used = {outcome, treatment, *([groups] if groups else [])}
    clash = [c for c in controls if c in used]
    if clash:  # the effect of t on y "adjusted for" y or t itself is no estimate at all
        raise PyrozooError(f"controls: {', '.join(map(repr, clash))} is the outcome, treatment or group column; "
                           f"controls must be other columns")
    cols = controls or [c for c in df.columns if c not in used]
    blank = [] if controls else _blank_header_columns(df, cols)
    if blank:
        raise PyrozooError(blank_header_message(df, blank, source, f"name the controls with {controls_flag}"))
    if not cols:
        raise PyrozooError(f"{source}: no control columns left besides outcome and treatment")
    for c in cols:  # a text column that is mostly numbers is a typo, not categories: do not expand it into dummies
        col = df[c]
        if not pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            _refuse_separated_numbers(source, c, col)
            parsed = pd.to_numeric(col, errors="coerce")
            bad = parsed.isna() & col.notna()
            if bad.any() and parsed.notna().sum() > col.notna().sum() / 2:
                row = int(np.argmax(bad.to_numpy()))
                raise PyrozooError(f"{source}: control column {c!r} is mostly numeric but has non-numeric values "
                                   f"(first at {data_row(row)}: {col.iloc[row]!r}); fix them, or make every "
                                   f"value text to use the column as categories")
            levels = col.nunique()
            if levels > 10 and levels > col.notna().sum() / 2:  # one dummy per level: an id or a date, not a category
                raise PyrozooError(f"{source}: control column {c!r} is text with {levels} distinct values in "
                                   f"{int(col.notna().sum())} rows, which would become {levels - 1} dummy columns; "
                                   f"it looks like an identifier or a date: leave it out ({controls_flag}) or "
                                   f"recode it")
    # before the dummies: get_dummies turns a missing category into the reference level without a trace
    missing_cols = [c for c in cols if df[c].isna().any()]
    if missing_cols:
        c = missing_cols[0]
        row = int(np.flatnonzero(df[c].isna().to_numpy())[0])
        raise PyrozooError(f"{source}: control column(s) {', '.join(map(repr, missing_cols))} have missing values "
                           f"(first: {c!r} at {data_row(row)}); fill or drop those rows")
    for c in cols:  # an inf, by column and data row as for y and t (not as an index into the dummy-coded matrix)
        if pd.api.types.is_numeric_dtype(df[c]):
            numeric_column(df, c, source=source)
    # text too: its one level gave no dummy, yet was listed; one row is left to the estimator's too-few-rows error
    constant = [c for c in cols if df[c].nunique() < 2] if len(df) > 1 else []
    if constant:
        raise PyrozooError(f"{source}: control column(s) {', '.join(map(repr, constant))} are constant (the fit has "
                           f"its own intercept: nothing to adjust for); leave them out of the controls "
                           f"({controls_flag})")
    X = pd.get_dummies(df[cols], drop_first=True, dtype=float)
    g = None
    if groups:
        g = df[groups].to_numpy()
    X = X.astype(float)
    X.attrs["controls"] = list(cols)  # what was adjusted for, as the file names it (the runs record it)
    return y, t, X, g


def _refuse_separated_numbers(source: str, name: str, col: pd.Series) -> None:
    """Raise if the text column ``col`` holds numbers written with thousands separators (``"1,200"``) or decimal
    commas (``"0,5"``): every value parses as a number once the commas are dropped. Such a column was dummy-coded as
    categories (or, with many levels, refused as an identifier), never read as the amounts it holds.

    A value is digit grouping only if its leading group is 1-3 digits not starting with 0 and every later group has
    3 digits (``"0,001"``, ``"-0,274"``, ``"1234,5"`` cannot be); a decimal comma only if it has one comma and no
    point. The message names the reading the column allows; when every value allows both (``"1,234"``: 1234 or
    1.234) it says so and gives both, since converting with the wrong one corrupts the numbers."""
    text = col.dropna().astype(str).str.strip()
    commas = text.str.contains(",", regex=False)
    if not commas.any() or pd.to_numeric(text.str.replace(",", "", regex=False), errors="coerce").isna().any():
        return
    with_comma, plain = text[commas], text[~commas]
    grouped = with_comma.str.fullmatch(r"[+-]?[1-9]\d{0,2}(,\d{3})+(\.\d*)?").all()
    decimal = (with_comma.str.fullmatch(r"[+-]?(\d+,\d*|,\d+)").all()
               and not plain.str.contains(".", regex=False).any())
    first = with_comma.iloc[0]
    if grouped and decimal:  # e.g. only '1,234': 1234 or 1.234, and converting with the wrong one corrupts it
        as_grouped, as_decimal = int(first.replace(",", "")), float(first.replace(",", "."))
        raise PyrozooError(f"{source}: control column {name!r} holds numbers written as text ({first!r}, an "
                           f"ambiguous comma: every value reads both as a thousands separator, {first!r} = "
                           f"{as_grouped} with pandas.read_csv(path, thousands=','), and as a decimal comma, "
                           f"{first!r} = {as_decimal!r} with pandas.read_csv(path, decimal=',')), which would be "
                           f"taken as categories; convert it with the reading the file was written in, then "
                           f".to_csv(new_path, index=False)")
    if grouped or decimal:
        what, read = ("a thousands separator", "thousands=','") if grouped else ("a decimal comma", "decimal=','")
        raise PyrozooError(f"{source}: control column {name!r} holds numbers written as text ({first!r}, {what}), "
                           f"which would be taken as categories; convert it, e.g. pandas.read_csv(path, "
                           f"{read}).to_csv(new_path, index=False)")
    odd = with_comma[~with_comma.str.fullmatch(r"[+-]?(\d+,\d*|,\d+)")]
    example = odd.iloc[0] if len(odd) else first
    raise PyrozooError(f"{source}: control column {name!r} holds numbers written as text with commas that are "
                       f"neither thousands separators nor decimal commas throughout (e.g. {example!r}), which "
                       f"would be taken as categories; write the column as plain numbers")


def _columns(opts: Mapping[str, Any], defaults: Mapping[str, str]) -> tuple[str, str, dict[str, str]]:
    """The outcome and treatment columns (``defaults`` for an option left at None) and the defaults that were used
    (for the message that a missing column was the default)."""
    used = {k: v for k, v in defaults.items() if opts.get(k) is None}
    return (used.get("outcome", opts.get("outcome")), used.get("treatment", opts.get("treatment")), used)


def plce_from_file(path: str, seed: int, *, device: Any = "cpu", outcome: str | None = FILE_COLUMNS["outcome"],
                   treatment: str | None = FILE_COLUMNS["treatment"], **options: Any) -> Dataset:
    """A user's CSV: ``outcome`` (default y), ``treatment`` (default t), ``controls`` (comma-separated; default all
    other columns) and an optional ``groups`` column."""
    check_seed("seed", seed)  # before the file is read (the estimator checks it again)
    opts = {**OPTIONS, **options}
    outcome, treatment, defaults = _columns({"outcome": outcome, "treatment": treatment}, FILE_COLUMNS)
    y, t, X, g = frame_to_arrays(read_table(path), outcome, treatment, opts["controls"],
                                 opts["groups"], source=f"data {path}", defaults=defaults)
    return _fit_and_pack(Path(path).stem, y, t, X, g, seed, device, opts,
                         meta={"columns": list(X.columns), "controls": X.attrs["controls"]})


LALONDE_CONTROLS = "age,educ,race,married,nodegree,re74,re75"
EXPERIMENTAL_BENCHMARK = 1794.0  # NSW treated vs NSW controls (LaLonde 1986; Dehejia & Wahba 1999)


def load_lalonde(seed: int, *, device: Any = "cpu", outcome: str | None = LALONDE_COLUMNS["outcome"],
                 treatment: str | None = LALONDE_COLUMNS["treatment"], **options: Any) -> Dataset:
    """MatchIt/lalonde (185 NSW treated, 429 PSID controls): effect of training (``treat``) on 1978 earnings
    (``re78``) with the usual controls; the experimental benchmark is $1,794.

    ``outcome``, ``treatment``, ``controls`` and ``groups`` are honoured when set (left at None / None / empty /
    empty they are re78 / treat / the usual controls / no groups; an explicit ``outcome="y"`` is the column y, which
    lalonde lacks); the experimental benchmark is attached only to the re78-on-treat effect."""
    check_seed("seed", seed)  # before the data are read (the estimator checks it again)
    opts = {**OPTIONS, **options}
    outcome, treatment, _ = _columns({"outcome": outcome, "treatment": treatment}, LALONDE_COLUMNS)
    groups = opts["groups"] or ""
    controls = opts["controls"] or ",".join(c for c in LALONDE_CONTROLS.split(",")
                                            if c not in {outcome, treatment, groups})
    y, t, X, g = frame_to_arrays(load_rdataset("lalonde"), outcome, treatment, controls, groups, source="lalonde")
    truth = {"experimental_benchmark": EXPERIMENTAL_BENCHMARK} if (outcome, treatment) == ("re78", "treat") else {}
    return _fit_and_pack("lalonde", y, t, X, g, seed, device, opts, truth=truth,
                         meta={"columns": list(X.columns), "controls": X.attrs["controls"], "outcome": outcome,
                               "treatment": treatment})


@keeps_caller_state
def fit_final_stage(dataset: Dataset, config: RunConfig) -> Result:
    """NUTS or SVI (the reference-preconditioned Gaussian guide) on the final-stage model.

    SVI: Adam from lr 0.15 (or the config's), decaying geometrically to 0.3% of it over the run (lr_t = lr 0.003^(t /
    steps)), with 32 vectorized particles per step. The guide starts at the closed form, which is (to O(1/n)) the
    optimum, so near it the steps add only gradient noise: Adam's iterate jitters with sd ~ sqrt(lr sigma_g / 2) in
    the guide's units (theta's posterior sd), sigma_g ~ 1 / sqrt(particles) the per-step noise, and the decay keeps
    the iterate tracking the optimum until lr is too small to move it (~0.001 at 1000 steps). With 4 particles and a
    decay to 10% of 0.05 the last iterate was off the exact posterior by up to 0.09 sd in the mean and 7% in the sd
    (baseline design, n = 300, 1000 steps, seeds 0-5); now by <= 0.021 sd and <= 0.8% (seeds 0-7). The larger
    first steps keep the distance a start away from the closed form (``make_final_stage_guide(init=...)``) can
    travel: 3000 steps bring theta ~ N(0, 1) back from 20 posterior sds (the old schedule needed the same)."""
    config = checked_config("plce", config)  # a direct call gets run_model's checks
    kwargs = dataset.model_kwargs()
    if config.inference == "nuts":
        return mcmc_from_config(plce_final_stage_model, kwargs, config)
    guide = make_final_stage_guide(final_stage_reference(dataset, prior=True))
    return svi_from_config(plce_final_stage_model, guide, kwargs, config, default_lr=0.15, lr_decay=0.003,
                           num_particles=32)


def plce_metrics(result: Result, dataset: Dataset) -> dict[str, Any]:
    """Sandwich estimate and SE (partialling out and feasible model; the SE under ``se_hc3`` or, with
    ``se_type="cluster"``, ``se_cluster``, and the feasible model's of the same type under ``se_feasible``),
    posterior mean/sd and 95% interval of theta, the closed-form reference, diagnostics (the sensitivity figures
    ``partial_r2``, ``rv_q``, ``rv_q_alpha`` from the classical t ``sensitivity_t_stat`` of the final-stage
    regression, from the split of median |t|: :meth:`PLCE.sensitivity`), the error against the truth
    when simulated, ``treatment_model_heteroskedastic`` (whether the final stage was weighted by 1 / Var(t | x): the
    treatment model that ran, since ``treatment_model="auto"`` depends on the data) and (from a file or a dataset)
    ``controls``, the columns adjusted for."""
    est: PLCE = dataset.meta["plce"]
    lo, hi = est.ci_
    draws = result.draws("theta")
    ref = final_stage_reference(dataset)
    _, pos = est.positivity()
    sens = est.sensitivity()
    # the SE is named by its type (se_hc3 or se_cluster): a cluster-robust SE was reported as se_hc3
    out = {"theta": est.theta_, f"se_{est.se_type}": est.se_, "ci_low": lo, "ci_high": hi,
           "theta_feasible": est.theta_feasible_, "se_feasible": est.se_feasible_,
           "posterior_mean": float(draws.mean()), "posterior_sd": float(draws_sd(draws)),
           "posterior_q2.5": float(np.quantile(draws, 0.025)), "posterior_q97.5": float(np.quantile(draws, 0.975)),
           "reference_mean": ref["theta_mean"], "reference_sd": ref["theta_sd"], "n": est.n_,
           "rv_q": sens["rv_q"], "rv_q_alpha": sens["rv_q_alpha"], "partial_r2": sens["partial_r2_treatment"],
           "sensitivity_t_stat": sens["t_stat"],
           # the treatment model that ran (treatment_model="auto" resolves by the data: resolve_treatment_model)
           "treatment_model_heteroskedastic": est.treatment_model == "heteroskedastic",
           **{k: v for k, v in pos.items()}}
    if est.bandwidth_ is not None:
        out["bandwidth"] = est.bandwidth_
    if "controls" in dataset.meta:  # --data / --dataset: the columns adjusted for, so a run says what it controlled
        out["controls"] = list(dataset.meta["controls"])
    for key, val in dataset.truth.items():
        out[f"true_{key}"] = float(val)
        out[f"error_vs_{key}"] = est.theta_ - float(val)
    return out


def plce_artifacts(result: Result, dataset: Dataset, out_dir: Path) -> None:
    """``summary.csv`` (the estimator's table) and ``positivity.png`` (the kurtosis diagnostic)."""
    est: PLCE = dataset.meta["plce"]
    est.summary().to_csv(out_dir / "summary.csv")
    if est.n_repeats > 1:
        est.plot_positivity(str(out_dir / "positivity.png"))


@register("plce")
def plce_entry() -> ZooModel:
    return ZooModel(
        name="plce",
        model=plce_final_stage_model,
        simulate=simulate_plce_dataset,
        fit=fit_final_stage,
        inferences=("nuts", "svi"),
        settings={"nuts": MCMC_SETTINGS, "svi": SVI_SETTINGS},
        metrics=plce_metrics,
        options=OPTIONS,
        datasets={"lalonde": load_lalonde},
        from_file=plce_from_file,
        text_options=("outcome", "treatment", "controls", "groups"),
        data_options={**{k: ("simulator",) for k in ("scenario", "n")},
                      **{k: ("file", "lalonde") for k in ("outcome", "treatment", "controls", "groups")}},
        tiny={"num_samples": 50, "warmup_steps": 50, "num_chains": 1, "steps": 50,
              "options": {"n": 150, "n_folds": 2, "n_repeats": 2, "interactions": "linear", "n_knots": 3,
                          "learner": "ridge"}},
        artifacts=plce_artifacts,
        check_options=_check_run_options,
        canonical_options={"interactions": interaction_kind},  # true is "linear", false "none"
        option_notes={"treatment_model": "auto: heteroskedastic on a simulated scenario with a heteroskedastic "
                                         "treatment (heterogeneity, combined), else homoskedastic"},
        description="Partially linear causal effect: cross-fitted spike-slab nuisances, HC3 + Bayesian final stage",
    )
