"""Partial effect curves as a zoo entry: the final stage of :class:`pyrozoo.causal.effect_curve.EffectCurve` as a
Pyro model, with the partial effect tau_i = G_i beta as a derived posterior quantity.

After cross-fitting the nuisances (when the data are loaded), the final stage is the spike-and-slab regression
(:func:`pyrozoo.models.spike_slab.spike_slab_model`) of the standardized outcome on the standardized design
D = [phi(t, x), b(x), m_hat(x), g_hat(x)] (plates ``feature`` and ``obs_id``). Either engine (``em``: EMVS, or
the estimator's ``em_variant``, and the Gaussian posterior around its mode, as the estimator uses; ``gibbs``: SSVS)
gives draws of w; each draw maps to the partial effects tau_i = sd(y) sum_k G_ik w_k / sd(D_k) (G = d phi / d t,
the basis's analytic Jacobian, tested against autograd), stored as posterior variable ``tau`` with dim ``obs_id``.
The calibrated band (conformal C) comes from the estimator.

Entry ``effect-curve``: ``pyrozoo run effect-curve`` (the talk's design y = t^2/2 + e), ``-o design=heterogeneous``
(five covariates, tau = t + x1), ``--dataset cps1985`` (log wage on years of experience, CPS 1985), ``--data
file.csv -o outcome=y -o treatment=t [-o controls=a,b]``. Artifacts: ``summary.csv`` (average partial effect and the
band's constants), ``curve.csv``, ``effects.csv`` and ``plots/effect_curve.png`` (curve, band and data).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pyrozoo.causal.basis import interaction_kind
from pyrozoo.causal.effect_curve import (
    COVARIATE_ONLY,
    FINAL_STAGE_EM_SETTINGS,
    HETEROGENEITY,
    SPLINES,
    EffectCurve,
    covariate_only_options,
)
from pyrozoo.causal.effect_curve_sim import DESIGNS, simulate_effect_curve
from pyrozoo.config import RunConfig
from pyrozoo.data.dataset import Dataset
from pyrozoo.data.shipped import load_rdataset, read_table
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.device import keeps_caller_state, resolve_device
from pyrozoo.inference.result import Result, draws_sd, response_map
from pyrozoo.models.plce import frame_to_arrays
from pyrozoo.models.spike_slab import (
    SpikeSlabRegression,
    dataset_to_standardized,
    em_log_likelihood_note,
    em_result,
    gibbs_result,
    make_dataset,
    spike_slab_model,
)
from pyrozoo.models.spike_slab_prior import SpikeSlabPrior
from pyrozoo.registry import GIBBS_SETTINGS, ZooModel, checked_config, register
from pyrozoo.validation import check_choice, check_seed, check_single_names

# how `pyrozoo run effect-curve` spells the column options, for the errors of frame_to_arrays (no command of its own)
COLUMN_FLAGS: dict[str, str] = {"outcome": "-o outcome=COLUMN", "treatment": "-o treatment=COLUMN",
                                "controls": "-o controls=NAME,..."}

OPTIONS: dict[str, Any] = {
    # simulator
    "design": "talk", "n": 1000, "slope": 1.0,
    # estimator
    "n_knots": 6, "heterogeneity": "spline", "spline": "natural", "n_knots_x": 5, "interactions": "linear",
    "learner": "spike_slab", "n_folds": 5, "n_repeats": 1, "n_pseudo": 20, "alpha": 0.05,
    # columns for --data / --dataset
    "outcome": "y", "treatment": "t", "controls": "",
}
LEARNERS = ("spike_slab", "ridge")
INFERENCES = ("em", "gibbs")  # the entry's engines on the final stage (em first: the default)
COLUMN_DEFAULTS: dict[str, str] = {k: OPTIONS[k] for k in ("outcome", "treatment")}
# the final stage's EM settings that final_stage_dataset carries (meta["em_settings"]) to fit_effect_curve's em, with
# SpikeSlabRegression's defaults where a Dataset has none; the final stage never selects a model (em_select=False)
EM_SETTINGS: dict[str, Any] = {k: inspect.signature(SpikeSlabRegression).parameters[k].default
                               for k in FINAL_STAGE_EM_SETTINGS}


def make_estimator(seed: int, device: Any = "cpu", *, progress: bool = False, **options: Any) -> EffectCurve:
    """An :class:`EffectCurve` from the entry's options; ``progress``: its progress bar (the run's flag)."""
    seed = check_seed("seed", seed)
    opts = {**OPTIONS, **options}
    check_choice("learner", opts["learner"], LEARNERS)
    learner = None
    if opts["learner"] == "ridge":
        from sklearn.linear_model import RidgeCV

        learner = RidgeCV(alphas=np.logspace(-3, 3, 13))
    return EffectCurve(n_knots=opts["n_knots"], heterogeneity=opts["heterogeneity"], spline=opts["spline"],
                       n_knots_x=opts["n_knots_x"],
                       interactions=opts["interactions"], learner=learner, n_folds=opts["n_folds"],
                       n_repeats=opts["n_repeats"], n_pseudo=opts["n_pseudo"], alpha=opts["alpha"], seed=seed,
                       device=str(resolve_device(device)), progress=progress)


def _spelled(key: str, value: Any) -> str:
    """``-o key=value`` as the command line writes it (TOML's true/false for booleans)."""
    return f"-o {key}={str(value).lower() if isinstance(value, bool) else value}"


def check_effect_curve_options(config: RunConfig) -> None:
    """The entry's ``check_options``, on the options as given (``pyrozoo run`` and every sweep cell, before any
    data): :meth:`EffectCurve.check_settings` (``alpha``, ``n_folds``, ``n_knots``, ...) and the fixed choices
    ``design`` (:data:`~pyrozoo.causal.effect_curve_sim.DESIGNS`), ``heterogeneity``, ``spline``, ``interactions``
    and ``learner`` (:data:`LEARNERS`). The simulator and the estimator refused a bad one only once the run had
    started, so it failed each sweep cell instead of stopping the sweep."""
    opts = config.options
    for name, choices in (("design", DESIGNS), ("heterogeneity", HETEROGENEITY), ("spline", SPLINES),
                          ("learner", LEARNERS)):
        if name in opts:
            check_choice(name, opts[name], choices)
    if "interactions" in opts:
        interaction_kind(opts["interactions"])
    # the estimator's settings that need no data (alpha in (0, 1), n_folds >= 2, ...): they too failed each sweep
    # cell once it ran
    make_estimator(config.seed, "cpu", **{k: v for k, v in opts.items() if k in OPTIONS}).check_settings()


def check_covariate_options(opts: Mapping[str, Any], source: str) -> None:
    """Raise for options that act only through the covariates (:data:`~pyrozoo.causal.effect_curve.COVARIATE_ONLY`)
    given away from their defaults when the data have none (``source``, e.g. ``"-o design=talk"``); called after the
    data are loaded, before the fit, so that nothing is fitted or written."""
    names = covariate_only_options(opts, OPTIONS)
    if names:
        it, them = ("it", "it") if len(names) == 1 else ("they", "them")
        raise PyrozooError(
            f"{', '.join(names)}: {source} has no covariates, so {it} would have no effect (remove {them}): "
            + "; ".join(f"{k} acts only on {COVARIATE_ONLY[k]} (expected the default {_spelled(k, OPTIONS[k])}, "
                        f"got {_spelled(k, opts[k])})" for k in names))


def final_stage_dataset(est: EffectCurve, *, name: str = "effect-curve", device: Any = "cpu",
                        meta: dict | None = None) -> Dataset:
    """Split 0's final-stage regression as a spike-slab :class:`Dataset` (standardized design, outcome scaled like
    the estimator's own fit, the estimator's final-stage prior, ``lam`` included, and in ``meta["em_settings"]`` its
    EM settings ``em_variant``, ``ladder``, ``max_iter``, so that ``em`` gives the draws of the estimator's own fit);
    ``meta`` carries the estimator, the design's column names (``feature_names``,
    :meth:`~pyrozoo.causal.effect_curve.EffectCurve.design_names`: the result's ``feature`` coordinate) and the
    Jacobian for the tau draws, and the map
    y = response_shift + response_scale * y_obs of the centred, scaled outcome y_obs the model sees, so that the
    result's log-likelihood is in the outcome's own units (:class:`~pyrozoo.data.dataset.Dataset`)."""
    reg = est.final_[0]
    y = (est._y - reg.y_loc_) / reg.y_sd_
    # the final stage's own prior (lam included: the estimator's default is the sample variance of its y), so that
    # the engine's em fits the regression the estimator fitted; make_dataset centres y again: shift meta["y_mean"]
    data = make_dataset(est.design_, y, name=name, device=device, **reg.prior_.to_dict())
    # and its own EM settings (prior_options may set them): em_result with the defaults fitted another mode
    em_settings = {k: getattr(reg, k) for k in EM_SETTINGS}
    if em_settings["ladder"] is not None:  # a copy: the caller's list may change after the fit
        em_settings["ladder"] = list(em_settings["ladder"])
    data.meta.update({"effect_curve": est, "feature_names": est.design_names(), "em_settings": em_settings,
                      **(meta or {}),
                      **response_map(reg.y_loc_ + reg.y_sd_ * data.meta["y_mean"], reg.y_sd_)})
    return data


def _fit_and_pack(name: str, y: Any, t: Any, X: Any, seed: int, device: Any, options: dict[str, Any],
                  meta: dict | None = None, *, source: str = "the data", progress: bool = False) -> Dataset:
    if X is None:
        check_covariate_options(options, source)
    est = make_estimator(seed, device, progress=progress, **options).fit(y, t, X)
    return final_stage_dataset(est, name=name, device=device, meta=meta)


def simulate_effect_curve_dataset(seed: int, *, device: Any = "cpu", progress: bool = False,
                                  **options: Any) -> Dataset:
    """A draw of ``design`` (talk, heterogeneous, linear), fitted; the truth is kept for the metrics and the plot."""
    opts = {**OPTIONS, **options}
    check_choice("design", opts["design"], DESIGNS)
    sim = simulate_effect_curve(seed, opts["design"], n=opts["n"], slope=opts["slope"])
    return _fit_and_pack(f"effect-curve-{opts['design']}", sim.y, sim.t, sim.X, seed, device, opts,
                         meta={"simulation": sim}, source=f"-o design={opts['design']}", progress=progress)


def _arrays_from_frame(df: pd.DataFrame, opts: dict[str, Any], source: str) -> tuple[Any, Any, Any]:
    """y, t and the controls (None when the table has only the outcome and treatment columns), read as PLCE's
    :func:`~pyrozoo.models.plce.frame_to_arrays` reads them (a blank-header index column is an error there)."""
    check_single_names(opts, ("outcome", "treatment"))
    used = {opts["outcome"], opts["treatment"]}
    if not opts["controls"] and not [c for c in df.columns if c not in used]:
        from pyrozoo.data.regression_file import check_columns_exist
        from pyrozoo.data.shipped import numeric_column

        check_columns_exist(source, list(df.columns), {"outcome": [opts["outcome"]], "treatment": [opts["treatment"]]},
                            hints=COLUMN_FLAGS, defaults=COLUMN_DEFAULTS)
        return (numeric_column(df, opts["outcome"], source=source), numeric_column(df, opts["treatment"],
                                                                                   source=source), None)
    y, t, X, _ = frame_to_arrays(df, opts["outcome"], opts["treatment"], opts["controls"], source=source,
                                 flags=COLUMN_FLAGS, defaults=COLUMN_DEFAULTS)
    return y, t, X


def effect_curve_from_file(path: str, seed: int, *, device: Any = "cpu", progress: bool = False,
                           **options: Any) -> Dataset:
    """A user's CSV: ``outcome``, ``treatment`` and ``controls`` (comma-separated; default all other columns, none
    when the file has only the two)."""
    check_seed("seed", seed)  # before the file is read (the estimator checks it again)
    opts = {**OPTIONS, **options}
    source = f"data {path}"
    y, t, X = _arrays_from_frame(read_table(path), opts, source)
    controls = [] if X is None else X.attrs["controls"]
    return _fit_and_pack(Path(path).stem, y, t, X, seed, device, opts, meta={"controls": controls},
                         source=f"{source} (only the outcome and treatment columns)", progress=progress)


CPS_CONTROLS = "education,ethnicity,region,gender,occupation,sector,union,married"


def load_cps1985(seed: int, *, device: Any = "cpu", progress: bool = False, **options: Any) -> Dataset:
    """AER/CPS1985 (534 workers): the partial effect of a year of experience on log hourly wage, controlling for
    education and the categorical covariates (age is left out: it is education + experience + 6)."""
    check_seed("seed", seed)  # before the data are read (the estimator checks it again)
    opts = {**OPTIONS, **options}
    df = load_rdataset("cps1985")
    df = df.assign(log_wage=np.log(df["wage"]))
    y, t, X, _ = frame_to_arrays(df, "log_wage", "experience", CPS_CONTROLS, source="cps1985")
    return _fit_and_pack("cps1985", y, t, X, seed, device, opts,
                         meta={"columns": list(X.columns), "controls": X.attrs["controls"]}, progress=progress)


def tau_draws(result: Result, dataset: Dataset) -> np.ndarray:
    """(chain, draw, n) partial effects from the Result's draws of the standardized coefficients w."""
    est: EffectCurve = dataset.meta["effect_curve"]
    reg = est.final_[0]
    G = est.jacobian_
    q = G.shape[1]
    w = np.asarray(result.posterior["w"])[..., :q] / np.asarray(dataset.meta["x_scale"])[:q]
    return reg.y_sd_ * w @ G.T


def em_settings(dataset: Dataset, prior: SpikeSlabPrior) -> dict[str, Any]:
    """The final stage's EM settings of ``dataset`` (``meta["em_settings"]``, :func:`final_stage_dataset`), the
    defaults (:data:`EM_SETTINGS`) for those it lacks, checked as SpikeSlabRegression checks them (a hand-built
    Dataset's bad value is named before the fit)."""
    given = dataset.meta.get("em_settings") or {}
    unknown = sorted(map(str, set(given) - set(EM_SETTINGS)))
    if unknown:
        raise PyrozooError(f"em_settings: expected the final stage's EM settings ({', '.join(EM_SETTINGS)}) in "
                           f"dataset.meta['em_settings'], got {', '.join(unknown)}")
    out = {**EM_SETTINGS, **given}
    SpikeSlabRegression(inference="em", em_select=False, num_samples=1, **out, **prior.to_dict())
    return out


@keeps_caller_state
def fit_effect_curve(dataset: Dataset, config: RunConfig) -> Result:
    """EM (the estimator's engine, with the dataset's EM settings, :func:`em_settings`) or Gibbs on the final stage;
    adds ``tau`` (dim ``obs_id``) to the posterior."""
    config = checked_config("effect-curve", config)  # a direct call gets run_model's checks
    data, prior = dataset_to_standardized(dataset)
    common = {"seed": config.seed, "model_kwargs": dataset.model_kwargs(), "model_name": config.model,
              "config": config.to_dict()}
    if config.inference == "em":
        em = em_settings(dataset, prior)
        result, _ = em_result(data, prior, variant=em["em_variant"], ladder=em["ladder"], max_iter=em["max_iter"],
                              select=False, num_samples=config.num_samples, **common)
        # em_result's note names spike-slab's gibbs and nuts; effect-curve's other inference is gibbs alone
        result.attrs["log_likelihood"] = em_log_likelihood_note(
            em["em_variant"], selected=False, compare_with=tuple(k for k in INFERENCES if k != "em"))
    else:
        result = gibbs_result(data, prior, num_samples=config.num_samples, warmup_steps=config.warmup_steps,
                              num_chains=config.num_chains, progress=config.progress, **common)
    result.posterior["tau"] = tau_draws(result, dataset)
    result.dims["tau"] = ["obs_id"]
    if dataset.meta.get("feature_names") is not None:  # the design's columns (EffectCurve.design_names)
        result.coords["feature"] = list(dataset.meta["feature_names"])
    return result


def effect_curve_metrics(result: Result, dataset: Dataset) -> dict[str, Any]:
    """APE and its SE, the band's constants and widths, the estimator's wall time, the engine's posterior mean of tau
    against the estimator, for simulated data RMSE and average coverage of the true curve (calibrated and Wald
    bands), and from a file or a dataset ``controls``, the columns adjusted for."""
    est: EffectCurve = dataset.meta["effect_curve"]
    # counts (n, n_pseudo, n_repeats) stay integers in metrics.json, as in summary().attrs
    out: dict[str, Any] = {"ape": est.ape_, "ape_se": est.ape_se_,
                           **{k: int(v) if isinstance(v, (int, np.integer)) else float(v)
                              for k, v in est.band_summary().items()}}
    # the estimator (nuisances, final stage, calibration) runs when the data are loaded, outside the engine's
    # wall_time, which covers only the final-stage posterior of the Result
    out["estimator_wall_time"] = float(est.wall_time_)
    post = result.draws("tau")
    out["posterior_tau_mean_abs_diff"] = float(np.mean(np.abs(post.mean(0) - est.taus_[0])))
    out["posterior_tau_sd_mean"] = float(draws_sd(post, axis=0).mean())
    sim = dataset.meta.get("simulation")
    if sim is not None:
        out["rmse_tau"] = float(np.sqrt(np.mean((est.tau_ - sim.tau) ** 2)))
        out["true_ape"] = float(sim.tau.mean())
        for key, cal in (("calibrated", True), ("wald", False)):
            lo, hi = est.band(calibrated=cal)
            out[f"coverage_{key}"] = float(np.mean((lo <= sim.tau) & (sim.tau <= hi)))
    if "controls" in dataset.meta:
        out["controls"] = list(dataset.meta["controls"])
    return out


def effect_curve_artifacts(result: Result, dataset: Dataset, out_dir: Path) -> None:
    """summary.csv, curve.csv, effects.csv and plots/effect_curve.png."""
    est: EffectCurve = dataset.meta["effect_curve"]
    out_dir = Path(out_dir)
    est.summary().to_csv(out_dir / "summary.csv")
    est.curve().to_csv(out_dir / "curve.csv", index=False)
    est.effects().to_csv(out_dir / "effects.csv", index=False)
    plots = out_dir / "plots"
    plots.mkdir(exist_ok=True)
    sim = dataset.meta.get("simulation")
    truth = (lambda g: sim.true_curve(g)) if sim is not None else None
    est.plot(str(plots / "effect_curve.png"), truth=truth)


@register("effect-curve")
def effect_curve_entry() -> ZooModel:
    return ZooModel(
        name="effect-curve",
        model=spike_slab_model,
        simulate=simulate_effect_curve_dataset,
        fit=fit_effect_curve,
        inferences=INFERENCES,
        settings={"em": ("num_samples",), "gibbs": GIBBS_SETTINGS},
        metrics=effect_curve_metrics,
        options=OPTIONS,
        datasets={"cps1985": load_cps1985},
        from_file=effect_curve_from_file,
        # cps1985 has fixed columns (log wage on experience)
        text_options=("outcome", "treatment", "controls"),
        data_options={**{k: ("simulator",) for k in ("design", "n", "slope")},
                      **{k: ("file",) for k in ("outcome", "treatment", "controls")}},
        check_options=check_effect_curve_options,
        canonical_options={"interactions": interaction_kind},  # true is "linear", false "none"
        tiny={"num_samples": 30, "warmup_steps": 20, "num_chains": 2, "steps": 20,
              "options": {"design": "heterogeneous", "n": 120, "n_folds": 2, "n_pseudo": 2, "n_knots": 4,
                          "n_knots_x": 3, "heterogeneity": "linear", "learner": "ridge"}},
        artifacts=effect_curve_artifacts,
        description="Partial effect curves d theta(t, x)/dt: spline basis x spike-slab, curvewise conformal bands",
    )


__all__ = ["effect_curve_entry", "em_settings", "final_stage_dataset", "make_estimator", "tau_draws"]
