"""PLCE on the talk's simulation designs against OLS and DoubleML's PLR (lasso and random-forest learners).

For each scenario (baseline, heterogeneity, random_effects, interference, combined; true effect 1) and replication,
every method estimates theta with a 95% interval on the same data; the table reports bias, RMSE, coverage and mean
SE per scenario and method, with Monte Carlo standard errors of bias and coverage. Full protocol:

    python benchmarks/plce_sim.py --reps 200

PLCE runs with one configuration in every scenario (the method does not know the design): spike-and-slab nuisances
on the spline + quadratic-interaction basis, heteroskedastic treatment model, random intercepts by the simulator's
group ids, learned interference. Peers: OLS of y on t and the five covariates (HC3); DoubleML PLR with LassoCV on
the same basis as PLCE (3-fold CV over 30 penalties), and with random forests (100 trees, leaves >= 5, 3 features
per split) on the raw covariates. Every method uses 5 folds and ``--n-repeats`` random splits per estimate (default
1); with R > 1 the PLCE rows are the median aggregate of Chernozhukov et al. (2018), se^2 = median(V_r + (theta_r -
theta)^2), and "PLCE, split 1" rows its first split alone; DoubleML (0.11.4) aggregates its own SE otherwise, as
(median(theta_r + 1.96 se_r) - theta) / 1.96, so at R > 1 the two SEs come from different aggregations.
DoubleML comes with the bench extra (``pip install -e ".[bench]"``); without it the DoubleML methods are left out
of ``--methods`` and a note says so.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import _peers
import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from pyrozoo.causal.basis import SplineInteractionBasis
from pyrozoo.causal.plce import PLCE, wls_hc3
from pyrozoo.causal.simulate import SCENARIOS, simulate_plce

warnings.filterwarnings("ignore")


def ols(d) -> tuple[float, float]:
    Z = np.column_stack([np.ones(len(d.y)), d.t, d.X])
    b, V = wls_hc3(Z, d.y)
    return float(b[1]), float(np.sqrt(V[1, 1]))


# PLCE's configuration in this benchmark (the same in every scenario)
BENCHMARK_CONFIG = {"treatment_model": "heteroskedastic", "interference": True}


def plce_fit(d, seed: int, n_repeats: int, *, groups: bool = True, **options) -> PLCE:
    """PLCE with ``options`` (R = ``n_repeats`` splits, the simulator's group ids unless ``groups=False``)."""
    return PLCE(n_repeats=n_repeats, seed=seed, **options).fit(d.y, d.t, d.X, groups=d.groups if groups else None)


def plce(d, seed: int, n_repeats: int) -> dict[str, tuple[float, float]]:
    """PLCE aggregated over the R splits; with R > 1 also its first split alone ("PLCE, split 1"), which is
    exactly the R = 1 estimate with the same seed (the splits are drawn in sequence), so one run gives both."""
    est = plce_fit(d, seed, n_repeats, **BENCHMARK_CONFIG)
    out = {"PLCE": (est.theta_, est.se_)}
    if n_repeats > 1:
        out["PLCE, split 1"] = (float(est.thetas_[0]), float(np.sqrt(est.variances_[0])))
    return out


def plce_variant(**options):
    """A method computing PLCE with ``options`` instead of the benchmark configuration: (d, seed, R) -> (theta, se)."""
    def method(d, seed: int, n_repeats: int) -> tuple[float, float]:
        est = plce_fit(d, seed, n_repeats, **options)
        return est.theta_, est.se_
    return method


def doubleml(d, seed: int, learner: str, n_repeats: int) -> tuple[float, float]:
    import doubleml as dml
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LassoCV

    if learner == "lasso":
        X = SplineInteractionBasis().fit_transform(d.X)
        ml_l, ml_m = LassoCV(cv=3, alphas=30, max_iter=5000), LassoCV(cv=3, alphas=30, max_iter=5000)
    else:
        X = d.X
        ml_l = RandomForestRegressor(n_estimators=100, min_samples_leaf=5, max_features=3, random_state=seed)
        ml_m = RandomForestRegressor(n_estimators=100, min_samples_leaf=5, max_features=3, random_state=seed)
    data = dml.DoubleMLData.from_arrays(X, d.y, d.t)
    np.random.seed(seed)  # DoubleML draws its folds from numpy's global generator
    fit = dml.DoubleMLPLR(data, ml_l, ml_m, n_folds=5, n_rep=n_repeats, score="partialling out").fit()
    return float(fit.coef[0]), float(fit.se[0])


METHODS = {
    "PLCE": plce,
    # the pass-4 options: weighted second-pass nuisance refit and the orthogonal final stage (docs/plce.md)
    "PLCE (weighted+orthogonal)": plce_variant(**BENCHMARK_CONFIG, weighted_nuisances=True, final_stage="orthogonal"),
    # spike-and-slab + union refit only, no groups
    "PLCE (no extensions)": plce_variant(groups=False),
    # without the heteroskedastic treatment model: what the estimated weights cost where the truth is homoskedastic
    "PLCE (unweighted)": plce_variant(interference=True),
    # refit="none": each nuisance keeps its own fit instead of the ridge refit on the union of both selections
    "PLCE (no refit)": plce_variant(**BENCHMARK_CONFIG, refit="none"),
    # the union refit without the standardized covariates forced in (the default before session 11)
    "PLCE (no linear controls)": plce_variant(**BENCHMARK_CONFIG, linear_controls=False),
    "OLS": lambda d, s, r: ols(d),
    "DoubleML lasso": lambda d, s, r: doubleml(d, s, "lasso", r),
    "DoubleML RF": lambda d, s, r: doubleml(d, s, "rf", r),
}
# methods that need an optional package (the bench extra; benchmarks/_peers.py)
PEERS = {"DoubleML lasso": ("doubleml",), "DoubleML RF": ("doubleml",)}


def parse_pair(text: str, known) -> tuple[str, str]:
    """--paired 'A,B': two different method names of ``known`` (a name may itself hold a comma, as "PLCE, split 1")."""
    parts = text.split(",")
    for i in range(1, len(parts)):
        a, b = ",".join(parts[:i]).strip(), ",".join(parts[i:]).strip()
        if a in known and b in known and a != b:
            return a, b
    raise SystemExit(f"--paired: expected 'A,B' with two different methods of the CSVs ({'; '.join(known)}); "
                     f"got {text!r}")


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    def agg(g: pd.DataFrame) -> pd.Series:
        err = g["estimate"] - g["truth"]
        cover = (g["ci_low"] <= g["truth"]) & (g["truth"] <= g["ci_high"])
        n = len(g)
        return pd.Series({"reps": n, "bias": err.mean(), "bias_mcse": err.std(ddof=1) / np.sqrt(n),
                          "rmse": np.sqrt((err**2).mean()), "coverage": cover.mean(),
                          "coverage_mcse": np.sqrt(cover.mean() * (1 - cover.mean()) / n),
                          "mean_se": g["se"].mean(), "sd_estimate": g["estimate"].std(ddof=1),
                          "median_seconds": g["seconds"].median()})

    return df.groupby(["scenario", "method"], sort=False)[list(df.columns)].apply(agg)


def _with_data_seed(path: str) -> pd.DataFrame:
    """A result CSV with the data seed of each row (seed offset from the run's .json + 1000 rep + scenario index;
    NaN when the .json is missing), so runs with different --seed offsets can be matched data set by data set."""
    df = pd.read_csv(path)
    meta = Path(path).with_suffix(".json")
    offset = json.loads(meta.read_text())["args"]["seed"] if meta.is_file() else np.nan
    df["data_seed"] = offset + 1000 * df["rep"] + df["scenario"].map({s: i for i, s in enumerate(SCENARIOS)})
    return df


def paired_rmse(df: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """RMSE of methods a and b per scenario on the data sets both estimated (first row per data seed and method),
    with the mean difference of squared errors a - b and its Monte Carlo standard error."""
    df = df.dropna(subset=["data_seed"]).drop_duplicates(["scenario", "method", "data_seed"])
    out = {}
    for sc, g in df.groupby("scenario", sort=False):
        wide = g.pivot(index="data_seed", columns="method", values="estimate")
        if a not in wide or b not in wide:
            continue
        both = wide[[a, b]].dropna()
        ea, eb = both[a] - 1.0, both[b] - 1.0  # every scenario's true effect is 1
        d = ea**2 - eb**2
        out[sc] = {"data_sets": len(both), f"rmse {a}": np.sqrt((ea**2).mean()), f"rmse {b}": np.sqrt((eb**2).mean()),
                   "mse diff": d.mean(), "mse diff mcse": d.std(ddof=1) / np.sqrt(len(d))}
    return pd.DataFrame.from_dict(out, orient="index")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--n-repeats", type=int, default=1, help="random splits R per estimate (all methods)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="stop after the replication that crosses this wall-time budget and summarize what ran")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "plce_sim_results.csv"),
                    help="CSV of the per-fit rows (rewritten after each replication) and, beside it, the run's .json; "
                         "the folder must exist, and an existing CSV or .json is refused unless --overwrite is given "
                         "(default: plce_sim_results.csv beside this script)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --out CSV and its .json")
    ap.add_argument("--paired", default=None,
                    help="with --from-csv: 'A,B' compares the RMSE of methods A and B on the data sets both ran "
                         "(matched by data seed, which needs each CSV's .json)")
    ap.add_argument("--from-csv", default=None,
                    help="comma-separated result CSVs of earlier runs (disjoint --seed offsets): pool and summarize "
                         "them, run nothing")
    args = ap.parse_args()
    if args.paired and not args.from_csv:
        ap.error("--paired compares the methods of earlier runs: give their CSVs with --from-csv")
    if args.from_csv:
        files = args.from_csv.split(",")
        _peers.check_files("--from-csv", files, ap.error)
        pooled = pd.concat([_with_data_seed(f) for f in files], ignore_index=True)
        pair = parse_pair(args.paired, list(pooled["method"].unique())) if args.paired else None
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(summarize(pooled).round(3).to_string())
            if pair:
                table = paired_rmse(pooled, *pair)
                if table.empty:
                    raise SystemExit(f"--paired: no data set holds both {pair[0]!r} and {pair[1]!r} (rows are matched "
                                     "by data seed, which needs each CSV's .json beside it)")
                print(table.round(4).to_string())
        return
    for flag, value in (("--reps", args.reps), ("--n-repeats", args.n_repeats)):
        if value < 1:
            ap.error(f"{flag}: expected at least 1, got {value}")
    out = _peers.check_out_file("--out", args.out, ap.error)  # before any fit: rows are written after each replication
    _peers.check_new_files("--out", [out, out.with_suffix(".json")], args.overwrite, ap.error)
    scenarios = _peers.parse_names("--scenarios", args.scenarios, list(SCENARIOS))
    methods, notes = _peers.split_available(_peers.parse_names("--methods", args.methods, list(METHODS)), PEERS)
    for note in notes:
        print(note, flush=True)
    if not methods:
        ap.error(f"--methods: nothing left to run ({args.methods!r} needs packages that are not installed)")
    torch.set_num_threads(1)
    rows = []
    t_start = time.time()
    with threadpool_limits(1):
        for rep in range(args.reps):
            for sc in scenarios:
                seed = args.seed + 1000 * rep + list(SCENARIOS).index(sc)
                d = simulate_plce(seed, sc, n=args.n)
                for m in methods:
                    t0 = time.perf_counter()
                    res = METHODS[m](d, seed, args.n_repeats)
                    seconds = time.perf_counter() - t0
                    for name, (est, se) in (res.items() if isinstance(res, dict) else [(m, res)]):
                        rows.append({"scenario": sc, "method": name, "rep": rep, "estimate": est, "se": se,
                                     "ci_low": est - 1.959964 * se, "ci_high": est + 1.959964 * se,
                                     "truth": d.theta, "seconds": seconds})
            pd.DataFrame(rows).to_csv(args.out, index=False)
            print(f"rep {rep + 1}/{args.reps} done, {time.time() - t_start:.0f} s", flush=True)
            if args.max_minutes is not None and time.time() - t_start > 60 * args.max_minutes:
                print(f"stopped after {rep + 1} replications: --max-minutes {args.max_minutes} reached", flush=True)
                break
    table = summarize(pd.DataFrame(rows))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string())
    for note in notes:
        print(note)
    Path(args.out).with_suffix(".json").write_text(json.dumps({"args": vars(args), "methods_run": methods,
                                                               "wall_s": time.time() - t_start}))


if __name__ == "__main__":
    main()
