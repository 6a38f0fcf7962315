"""PLCE's regularization bias under linear confounding, and the basis's ``linear`` option as a fix.

Two parts, each over the same data seeds for every basis variant (paired):

* ``linear``: t = .7 x1 - .4 x2 + v, y = t + 1.5 x1 + .5 x2 - x3 + e, x ~ N(0, I_5), v, e ~ N(0, 1), n = 600;
  ``PLCE()`` with its defaults (5 folds, 5 splits, homoskedastic, spline + quadratic-interaction basis) against
  OLS of y on [1, t, x1, x2, x3] (the true controls, HC3). Reports PLCE - OLS and PLCE - 1 with Monte Carlo SEs.
* ``sim``: the talk's designs (``simulate_plce``; n = 1000; data seed = offset + 1000 rep + scenario index, as
  ``benchmarks/plce_sim.py`` draws them) with the benchmark's PLCE configuration (``PLCE(n_repeats=1,
  treatment_model="heteroskedastic", interference=True, seed=seed).fit(y, t, X, groups)``): bias, RMSE, coverage
  of the 95% interval, mean SE.

Basis variants (``SplineInteractionBasis`` with PLCE's default n_knots=5, degree=3, interactions="quadratic"):
``default`` (PLCE's ``basis="spline"``), ``raw`` (``linear=True``: z_j next to each spline block), ``orthogonal``
(``linear="orthogonal"``: z_j plus the spline block residualized on [1, z_j]); reference ``x_only`` (PLCE's
``basis="linear"``, the five standardized covariates; right for the linear design only); ``default+greedy`` and
``orthogonal+greedy``: those bases with a diagnostic learner (:func:`greedy_learner`: the spike-and-slab selection
improved by a greedy search on EMVS's own model score), to separate the basis's share of the bias from the
learner's; ``no_linear_controls``: the default basis with ``PLCE(linear_controls=False)``, PLCE's default before
session 11. Wall times are per fit on a shared 2-core machine (load 4-8), comparable only within one run.

The runs recorded on branch res-basis (one thread per process, ``OMP_NUM_THREADS=1``):

    PYTHONPATH=. python benchmarks/plce_linear_bias.py --part linear --seeds 40 --variants default,raw,orthogonal,x_only --jobs 2
    PYTHONPATH=. python benchmarks/plce_linear_bias.py --part linear --seeds 40 --variants default+greedy,orthogonal+greedy --out benchmarks/plce_linear_bias_linear_greedy.csv
    PYTHONPATH=. python benchmarks/plce_linear_bias.py --part linear --seeds 40 --n-repeats 1 --variants default,raw,orthogonal,x_only,orthogonal+greedy --out benchmarks/plce_linear_bias_linear_r1.csv
    PYTHONPATH=. python benchmarks/plce_linear_bias.py --part sim --seeds 20 --seed-offset 250 --jobs 2
    PYTHONPATH=. python benchmarks/plce_linear_bias.py --part sim --seeds 40 --seed-offset 20250 --variants orthogonal --default-from benchmarks/plce_sim_run13_s250.csv --jobs 2 --out benchmarks/plce_linear_bias_sim_b.csv
    PYTHONPATH=. python benchmarks/plce_linear_bias.py --part sim --seeds 20 --seed-offset 250 --variants orthogonal+greedy --default-from benchmarks/plce_sim_run13_s250.csv --jobs 2 --out benchmarks/plce_linear_bias_sim_greedy.csv
    # session 11: PLCE's default now forces the covariates into the refit (linear_controls=True); the CSVs above
    # were written before that, so their "default" rows are today's variant no_linear_controls (in the two
    # --default-from runs they are run 13's PLCE rows, also before session 11); the script now refuses
    # --default-from with such CSVs
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/plce_linear_bias.py --part linear --seeds 40 --variants default,no_linear_controls --jobs 2 --out benchmarks/plce_linear_bias_linear_s11.csv
    # tables from the CSVs the runs above write (committed beside this script), no fitting:
    PYTHONPATH=. python benchmarks/plce_linear_bias.py --from-csv benchmarks/plce_linear_bias_linear.csv,benchmarks/plce_linear_bias_linear_greedy.csv
    PYTHONPATH=. python benchmarks/plce_linear_bias.py --from-csv benchmarks/plce_linear_bias_sim.csv,benchmarks/plce_linear_bias_sim_b.csv,benchmarks/plce_linear_bias_sim_greedy.csv
"""  # noqa: E501

from __future__ import annotations

import argparse
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import _peers
import numpy as np
import pandas as pd

# name -> SplineInteractionBasis(linear=...) option; "x_only" is PLCE's basis="linear" (standardized x, no splines)
VARIANTS = {"default": None, "raw": True, "orthogonal": "orthogonal", "x_only": "x_only",
            # diagnostics of the learner, not basis options: the spike-and-slab selection followed by a greedy
            # add/drop search on EMVS's own model score log g (GreedySpikeSlabLearner below)
            "default+greedy": None, "orthogonal+greedy": "orthogonal",
            # PLCE's default before session 11: the union refit without the covariates forced in
            "no_linear_controls": None}
SCENARIO_NAMES = ("baseline", "heterogeneity", "random_effects", "interference", "combined")


def linear_design(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5))
    t = 0.7 * X[:, 0] - 0.4 * X[:, 1] + rng.standard_normal(n)
    y = t + 1.5 * X[:, 0] + 0.5 * X[:, 1] - X[:, 2] + rng.standard_normal(n)
    return y, t, X


def _basis(variant: str):
    from pyrozoo.causal.basis import SplineInteractionBasis

    lin = VARIANTS[variant]
    if lin == "x_only":
        return "linear"
    return "spline" if lin is None else SplineInteractionBasis(linear=lin)


def greedy_learner():
    """A SpikeSlabLearner whose selected model is improved by a greedy search on EMVS's model score log g(gamma)
    (one column added or dropped per step, best improvement first, at most 30 steps), then the same posterior mean
    given the selected model. A diagnostic: EMVS scores only the models its ladder of spike variances visits, and
    on the linear design that ladder jumps from a large model to {z1}, past {z1, z2}, whose log g is higher."""
    import torch

    from pyrozoo.causal.plce import SpikeSlabLearner
    from pyrozoo.models.spike_slab import selected_model_posterior
    from pyrozoo.models.spike_slab_em import log_g
    from pyrozoo.models.spike_slab_prior import as_prior, standardize

    class GreedySpikeSlabLearner(SpikeSlabLearner):
        def fit(self, X, y):
            super().fit(X, y)
            y = np.asarray(y, dtype=np.float64)
            data = standardize(np.asarray(X, dtype=np.float64), (y - self.y_loc_) / self.y_scale_)
            prior = as_prior({}, lam=max(float(data.yty) / max(data.n - 1, 1), 1e-8))
            gamma = torch.as_tensor(self.inclusion_probabilities_ > 0.5, dtype=data.X.dtype)
            best = log_g(gamma, data, prior)
            for _ in range(30):
                cand = []
                for j in range(data.p):
                    g = gamma.clone()
                    g[j] = 1.0 - g[j]
                    if 0 < g.sum() < data.n:
                        cand.append((log_g(g, data, prior), j))
                score, j = max(cand)
                if score <= best + 1e-9:
                    break
                best, gamma[j] = score, 1.0 - gamma[j]
            sel = gamma > 0.5
            w_std = selected_model_posterior(data, prior, sel)[0]
            coef = w_std / data.x_scale
            self.coef_ = coef.cpu().numpy()
            self.intercept_ = float(data.y_mean - float(data.x_mean @ coef))
            self.inclusion_probabilities_ = sel.cpu().numpy().astype(float)
            return self

    return GreedySpikeSlabLearner()


def _task(args: tuple) -> list[dict]:
    part, seed, scenario, variants, n_repeats = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.filterwarnings("ignore")
    import torch
    from threadpoolctl import threadpool_limits

    from pyrozoo.causal.plce import PLCE, wls_hc3
    from pyrozoo.causal.simulate import simulate_plce

    torch.set_num_threads(1)
    rows = []
    with threadpool_limits(1):
        if part == "linear":
            y, t, X = linear_design(seed)
            b, V = wls_hc3(np.column_stack([np.ones(len(y)), t, X[:, :3]]), y)
            ols, ols_se = float(b[1]), float(np.sqrt(V[1, 1]))
            data, kw, theta = (y, t, X), {}, 1.0
            fit_kw = {}
        else:
            d = simulate_plce(seed, scenario, n=1000)
            data, theta = (d.y, d.t, d.X), d.theta
            kw = {"treatment_model": "heteroskedastic", "interference": True}
            fit_kw = {"groups": d.groups}
            ols = ols_se = np.nan
        for v in variants:
            t0 = time.perf_counter()
            reps = {} if n_repeats is None else {"n_repeats": n_repeats}
            learner = greedy_learner() if v.endswith("+greedy") else None
            extra = {"linear_controls": False} if v == "no_linear_controls" else {}
            est = PLCE(learner, basis=_basis(v), seed=seed, **reps, **kw, **extra).fit(*data, **fit_kw)
            rows.append({"part": part, "scenario": scenario, "seed": seed, "variant": v, "estimate": est.theta_,
                         "se": est.se_, "truth": theta, "ols": ols, "ols_se": ols_se,
                         "n_basis": est.n_features_basis_, "seconds": time.perf_counter() - t0})
    return rows


def _mean_mcse(x: pd.Series) -> str:
    return f"{x.mean():+.4f} ({x.std(ddof=1) / np.sqrt(len(x)):.4f})"


def summarize_linear(df: pd.DataFrame) -> pd.DataFrame:
    base = df[df.variant == "default"].set_index("seed")["estimate"]
    out = {}
    for v, g in df.groupby("variant", sort=False):
        g = g.set_index("seed")
        cover = ((g.estimate - 1.959964 * g.se <= 1) & (1 <= g.estimate + 1.959964 * g.se))
        out[v] = {"seeds": len(g), "PLCE - OLS (MCSE)": _mean_mcse(g.estimate - g.ols),
                  "share PLCE < OLS": f"{(g.estimate < g.ols).mean():.2f}",
                  "PLCE - 1 (MCSE)": _mean_mcse(g.estimate - 1),
                  "RMSE": f"{np.sqrt(((g.estimate - 1) ** 2).mean()):.4f}",
                  "coverage": f"{cover.mean():.2f}", "mean SE": f"{g.se.mean():.4f}",
                  "sd est": f"{g.estimate.std(ddof=1):.4f}",
                  "vs default (MCSE)": (_mean_mcse(g.estimate - base.loc[g.index]) if g.index.isin(base.index).all()
                                        else ""),
                  "median s": f"{g.seconds.median():.2f}"}
    g = df[df.variant == df.variant.iloc[0]]
    out["OLS (true controls)"] = {"seeds": len(g), "PLCE - 1 (MCSE)": _mean_mcse(g.ols - 1),
                                  "RMSE": f"{np.sqrt(((g.ols - 1) ** 2).mean()):.4f}",
                                  "mean SE": f"{g.ols_se.mean():.4f}", "sd est": f"{g.ols.std(ddof=1):.4f}"}
    return pd.DataFrame.from_dict(out, orient="index").fillna("")


def summarize_sim(df: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (sc, v), g in df.groupby(["scenario", "variant"], sort=False):
        g = g.set_index("seed")
        base = df[(df.scenario == sc) & (df.variant == "default")].set_index("seed")["estimate"]
        err = g.estimate - g.truth
        cover = (g.estimate - 1.959964 * g.se <= g.truth) & (g.truth <= g.estimate + 1.959964 * g.se)
        n = len(g)
        paired = g.index.isin(base.index).all()  # blank "- default" columns where default did not run
        d_sq = err**2 - (base.loc[g.index] - g.truth) ** 2 if paired else None
        out.append({"scenario": sc, "variant": v, "reps": n, "bias (MCSE)": _mean_mcse(err),
                    "RMSE": f"{np.sqrt((err**2).mean()):.4f}",
                    "coverage (MCSE)": f"{cover.mean():.3f} ({np.sqrt(cover.mean() * (1 - cover.mean()) / n):.3f})",
                    "mean SE": f"{g.se.mean():.4f}", "sd est": f"{g.estimate.std(ddof=1):.4f}",
                    "est - default (MCSE)": _mean_mcse(g.estimate - base.loc[g.index]) if paired else "",
                    "MSE - default (MCSE)": _mean_mcse(d_sq) if paired else "",
                    "median s": f"{g.seconds.median():.2f}"})
    return pd.DataFrame(out).set_index(["scenario", "variant"])


def _fit_variant(seed: int, scenario: str, variant: str, n_repeats: int) -> tuple[float, float]:
    """(estimate, se) of one ``--part sim`` fit, as the run would compute it."""
    row = _task(("sim", seed, scenario, [variant], n_repeats))[0]
    return float(row["estimate"]), float(row["se"])


def recorded_default(files: list[str], seeds: set[int], n_repeats: int, *, fit=_fit_variant,
                     rtol: float = 1e-6) -> pd.DataFrame:
    """The PLCE rows of benchmarks/plce_sim.py result CSVs as this script's ``default`` rows, for the given data
    seeds, checked before use: each CSV's .json must record n = 1000 and ``n_repeats`` splits (this part's design),
    and the first of its rows must agree (relative ``rtol``) with a fresh fit of today's default. A CSV written
    before PLCE's default changed fails that check (before session 11, plce_sim's "PLCE" rows were today's
    ``no_linear_controls``) and is refused (SystemExit), as is anything else that cannot stand in for ``default``."""
    import json
    from pathlib import Path

    out = []
    for f in files:
        meta = Path(f).with_suffix(".json")
        if not Path(f).is_file() or not meta.is_file():
            raise SystemExit(f"--default-from: expected a plce_sim.py result CSV with its .json beside it; "
                             f"{f if not Path(f).is_file() else meta} does not exist")
        run = json.loads(meta.read_text())["args"]
        if run.get("n") != 1000 or run.get("n_repeats") != n_repeats:
            raise SystemExit(f"--default-from: {f} was run with n = {run.get('n')}, n_repeats = "
                             f"{run.get('n_repeats')}; this run's part 'sim' uses n = 1000, n_repeats = {n_repeats}")
        b = pd.read_csv(f)
        b = b[b.method == "PLCE"].copy()
        b["seed"] = run["seed"] + 1000 * b["rep"] + b["scenario"].map({s: i for i, s in enumerate(SCENARIO_NAMES)})
        b = b[b.seed.isin(seeds)].sort_values("seed")
        if b.empty:
            continue
        first = b.iloc[0]
        seed, scenario = int(first.seed), str(first.scenario)
        fresh = fit(seed, scenario, "default", n_repeats)
        if not np.allclose((first.estimate, first.se), fresh, rtol=rtol, atol=0):
            old = fit(seed, scenario, "no_linear_controls", n_repeats)
            what = ("it matches variant no_linear_controls, PLCE's default before session 11"
                    if np.allclose((first.estimate, first.se), old, rtol=rtol, atol=0)
                    else "it matches neither default nor no_linear_controls")
            raise SystemExit(
                f"--default-from: {f} does not hold today's default PLCE: data seed {seed} ({scenario}) has "
                f"estimate {first.estimate:.10g}, se {first.se:.10g}; a fresh default fit gives {fresh[0]:.10g}, "
                f"{fresh[1]:.10g} ({what}). Use a CSV written with today's default, or put the variant in --variants")
        out.append(pd.DataFrame({"part": "sim", "scenario": b.scenario, "seed": b.seed, "variant": "default",
                                 "estimate": b.estimate, "se": b.se, "truth": b.truth, "ols": np.nan,
                                 "ols_se": np.nan, "n_basis": np.nan, "seconds": b.seconds}))
    if not out:
        raise SystemExit(f"--default-from: none of {', '.join(files)} has PLCE rows for this run's data seeds")
    return pd.concat(out, ignore_index=True).drop_duplicates(["scenario", "seed"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("linear", "sim"), default="linear")
    ap.add_argument("--seeds", type=int, default=20, help="data sets (replications) per design/scenario")
    ap.add_argument("--seed-offset", type=int, default=0)
    ap.add_argument("--variants", default="default,raw,orthogonal")
    ap.add_argument("--scenarios", default=",".join(SCENARIO_NAMES))
    ap.add_argument("--n-repeats", type=int, default=None,
                    help="PLCE's n_repeats (default: PLCE's default in 'linear', 1 in 'sim' as plce_sim.py)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default=None,
                    help="CSV of the per-fit rows; the folder must exist, and an existing CSV is refused unless "
                         "--overwrite is given (default: plce_linear_bias_<part>.csv beside this script)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --out CSV")
    ap.add_argument("--from-csv", default=None, help="summarize earlier CSVs of this script (comma-separated; "
                    "pooled), run nothing")
    ap.add_argument("--default-from", default=None,
                    help="part 'sim': comma-separated result CSVs of benchmarks/plce_sim.py (with their .json); their "
                         "'PLCE' rows stand in for the 'default' variant on the data seeds this run covers, so "
                         "--variants omits default. Checked before any other fit: n = 1000 and the same n_repeats, "
                         "and the first used row of each CSV refit with today's default must agree (1e-6 relative); "
                         "CSVs written before session 11 (runs 1-19: their PLCE rows are today's no_linear_controls) "
                         "are refused")
    args = ap.parse_args()
    variants = args.variants.split(",")
    bad = sorted(set(variants) - set(VARIANTS))
    if bad:
        ap.error(f"--variants: unknown {bad}; known {list(VARIANTS)}")
    bad = sorted(set(args.scenarios.split(",")) - set(SCENARIO_NAMES))
    if bad and args.part == "sim":
        ap.error(f"--scenarios: unknown {bad}; known {list(SCENARIO_NAMES)}")
    if args.default_from and args.part != "sim":
        ap.error("--default-from: only with --part sim")
    if args.default_from and "default" in variants:
        ap.error("--default-from: stands in for variant default; leave default out of --variants")
    if args.from_csv:
        files = _peers.check_files("--from-csv", args.from_csv.split(","), ap.error)
        df = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
        df = df.drop_duplicates(["part", "scenario", "seed", "variant"])
    else:
        # checked before any fit: the rows are written when all fits are done
        default = Path(__file__).resolve().parent / f"plce_linear_bias_{args.part}.csv"
        out = _peers.check_out_file("--out", default if args.out is None else args.out, ap.error)
        _peers.check_new_files("--out", [out], args.overwrite, ap.error)
        if args.part == "linear":
            tasks = [("linear", args.seed_offset + s, "linear", variants, args.n_repeats) for s in range(args.seeds)]
        else:
            R = 1 if args.n_repeats is None else args.n_repeats
            scs = args.scenarios.split(",")
            tasks = [("sim", args.seed_offset + 1000 * r + SCENARIO_NAMES.index(sc), sc, variants, R)
                     for r in range(args.seeds) for sc in scs]
            recorded = (recorded_default(args.default_from.split(","), {t[1] for t in tasks}, R)
                        if args.default_from else None)
        t0 = time.time()
        rows = []
        if args.jobs > 1:
            with ProcessPoolExecutor(args.jobs) as pool:
                for res in pool.map(_task, tasks):
                    rows.extend(res)
        else:
            for task in tasks:
                rows.extend(_task(task))
        wall = time.time() - t0
        df = pd.DataFrame(rows)
        if args.default_from:
            df = pd.concat([df, recorded], ignore_index=True)
        df.to_csv(out, index=False)
        print(f"{len(tasks)} data sets x {len(variants)} variants, {args.jobs} process(es): wall {wall:.0f} s; "
              f"rows in {out}")
    summary = summarize_linear(df) if (df.part == "linear").all() else summarize_sim(df)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(summary.to_string())


if __name__ == "__main__":
    main()
