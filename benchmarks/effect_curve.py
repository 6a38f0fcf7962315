"""Partial effect curves on the talk's designs: EffectCurve against CausalForestDML and a kernel ridge baseline.

Designs (:mod:`pyrozoo.causal.effect_curve_sim`), n = 1000 by default:

* ``talk``: y = t^2 / 2 + e, t, e ~ N(0, 1), true tau = t (no covariates);
* ``heterogeneous``: five covariates, confounded treatment, true tau = t + x1.

Per replication every method estimates tau_i = d theta / d t at each observation with 90% and 95% bands; the table
reports average coverage of the TRUE curve (fraction of observations whose band contains tau(t_i, x_i)), mean band
width, RMSE of tau_hat, wall time, with Monte Carlo standard errors over replications. EffectCurve is reported twice:
with the conformally calibrated C and with the uncalibrated C = z_{1-alpha/2} (same fit).

Peers, measured in the same run on the same data:

* econml CausalForestDML (continuous treatment; random-forest nuisances, 200 trees, honest forest, its own
  intervals). It models a treatment effect that is linear in t given x, so its tau(x) cannot follow t; in the
  ``talk`` design (no covariates) it gets one pure-noise covariate to split on (it needs at least one).
* Kernel ridge (KRLS-style; Hainmueller & Hazlett 2014): Gaussian kernel on standardized (t, x) with bandwidth
  sigma^2 = dimension, penalty by exact leave-one-out over a log grid, pointwise derivatives in t and their variance
  sigma^2 G (K + lam I)^-2 G^T. Written by hand on scikit-learn's ``rbf_kernel``: ``KernelRidge`` has no
  derivatives, LOO or variances.

Full protocol (hours on 2 shared cores):  python benchmarks/effect_curve.py --reps 200

Rows are appended to ``--out`` as they finish, with n (and, on EffectCurve's rows, n_pseudo); a rerun resumes,
skipping the (design, rep, method) fits already there, and refuses a file written with another --n, --n-pseudo or
EffectCurve spline. The committed CSVs from before n and n_pseudo were recorded are read with the values RESULTS.md
documents for them (n = 1000, n_pseudo = 20); other such files are refused. The table covers this run's reps, designs
and methods only.

econml comes with the bench extra (``pip install -e ".[bench]"``); without it ``causal_forest`` is left out of
``--methods`` and a note says so.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import _peers
import numpy as np
import pandas as pd
import torch
from scipy import stats
from threadpoolctl import threadpool_limits

from pyrozoo.causal.effect_curve import EffectCurve
from pyrozoo.causal.effect_curve_sim import DESIGNS, EffectCurveData, simulate_effect_curve

warnings.filterwarnings("ignore")
LEVELS = (0.10, 0.05)
KRLS_LAMBDAS = np.logspace(-3, 2, 21)


def coverage_row(tau: np.ndarray, est: np.ndarray, bands: dict[float, tuple[np.ndarray, np.ndarray]]) -> dict:
    row = {"rmse": float(np.sqrt(np.mean((est - tau) ** 2)))}
    for a, (lo, hi) in bands.items():
        pct = int(round(100 * (1 - a)))
        row[f"cov{pct}"] = float(np.mean((lo <= tau) & (tau <= hi)))
        row[f"width{pct}"] = float(np.mean(hi - lo))
    return row


def effect_curve_tag(spline: str = "natural", n_knots: int = 6) -> str:
    return "EffectCurve" if (spline, n_knots) == ("natural", 6) else f"EffectCurve[{spline},{n_knots}]"


def run_effect_curve(d: EffectCurveData, seed: int, n_pseudo: int, spline: str = "natural",
                     n_knots: int = 6) -> list[dict]:
    t0 = time.perf_counter()
    est = EffectCurve(n_pseudo=n_pseudo, seed=seed, spline=spline, n_knots=n_knots).fit(d.y, d.t, d.X)
    wall = time.perf_counter() - t0
    cal = coverage_row(d.tau, est.tau_, {a: est.band(a) for a in LEVELS})
    wald = coverage_row(d.tau, est.tau_, {a: est.band(a, calibrated=False) for a in LEVELS})
    cal.update(C90=est.critical_value(0.10), C95=est.critical_value(0.05))
    tag = effect_curve_tag(spline, n_knots)
    return [{"method": f"{tag} (conformal C)", "wall": wall, **cal},
            {"method": f"{tag} (C = z)", "wall": wall, **wald}]


def run_causal_forest(d: EffectCurveData, seed: int) -> list[dict]:
    from econml.dml import CausalForestDML
    from sklearn.ensemble import RandomForestRegressor

    X = d.X if d.X is not None else np.random.default_rng(seed + 7).standard_normal((len(d.y), 1))
    t0 = time.perf_counter()
    cf = CausalForestDML(model_y=RandomForestRegressor(n_estimators=100, min_samples_leaf=10, random_state=seed),
                         model_t=RandomForestRegressor(n_estimators=100, min_samples_leaf=10, random_state=seed),
                         n_estimators=200, cv=5, random_state=seed)
    cf.fit(d.y, d.t, X=X)
    tau = cf.effect(X).reshape(-1)
    bands = {}
    for a in LEVELS:
        lo, hi = cf.effect_interval(X, alpha=a)
        bands[a] = (lo.reshape(-1), hi.reshape(-1))
    wall = time.perf_counter() - t0
    return [{"method": "CausalForestDML", "wall": wall, **coverage_row(d.tau, tau, bands)}]


def krls_derivatives(t: np.ndarray, X: np.ndarray | None, y: np.ndarray,
                     lambdas: np.ndarray = KRLS_LAMBDAS) -> tuple[np.ndarray, np.ndarray]:
    """KRLS: k(a, b) = exp(-|a - b|^2 / d) on standardized columns, c = (K + lam I)^-1 (y - ybar) with lam by exact
    LOO; d yhat / d t_i = sum_j c_j k_ij (-2 (u_i - u_j) / d) / sd(t); Var = sigma^2 G (K + lam I)^-2 G^T."""
    from sklearn.metrics.pairwise import rbf_kernel

    Z = t[:, None] if X is None else np.column_stack([t, X])
    Z = (Z - Z.mean(0)) / Z.std(0)
    dim = Z.shape[1]
    K = rbf_kernel(Z, gamma=1.0 / dim)
    lam_, Q = np.linalg.eigh(K)
    yc = y - y.mean()
    Qy = Q.T @ yc
    best = (np.inf, None)
    for lam in lambdas:
        H_diag = np.einsum("im,m,im->i", Q, lam_ / (lam_ + lam), Q)
        resid = yc - Q @ (lam_ / (lam_ + lam) * Qy)
        loo = np.mean((resid / (1 - H_diag)) ** 2)
        if loo < best[0]:
            best = (loo, lam)
    lam = best[1]
    c = Q @ (Qy / (lam_ + lam))
    diff = Z[:, 0][:, None] - Z[:, 0][None, :]
    Gk = K * (-2.0 * diff / dim) / t.std()
    deriv = Gk @ c
    fitted = K @ c
    dof = float(np.sum(lam_ / (lam_ + lam)))
    sigma2 = float(np.sum((yc - fitted) ** 2) / max(len(y) - dof, 1.0))
    GQ = Gk @ Q / (lam_ + lam)
    var = sigma2 * np.sum(GQ**2, axis=1)
    return deriv, var


def run_krls(d: EffectCurveData, seed: int) -> list[dict]:
    t0 = time.perf_counter()
    tau, var = krls_derivatives(d.t, d.X, d.y)
    wall = time.perf_counter() - t0
    se = np.sqrt(var)
    bands = {a: (tau - stats.norm.ppf(1 - a / 2) * se, tau + stats.norm.ppf(1 - a / 2) * se) for a in LEVELS}
    return [{"method": "kernel ridge (KRLS)", "wall": wall, **coverage_row(d.tau, tau, bands)}]


METHODS = {"effect_curve": run_effect_curve, "causal_forest": run_causal_forest, "krls": run_krls}
# the --out columns: n on every row, n_pseudo on EffectCurve's rows (the only method that reads it; empty otherwise)
COLUMNS = ["design", "rep", "key", "n", "n_pseudo", "method", "wall", "rmse", "cov90", "width90", "cov95", "width95",
           "C90", "C95"]
# CSVs written before n and n_pseudo were recorded, committed beside this script, with the settings RESULTS.md
# documents for them ("Partial effect curves": n = 1000, B = 20, and the session-13 EMVS runs with the defaults)
LEGACY = {name: (1000, 20) for name in ("effect_curve_run1.csv", "effect_curve_cubic4.csv",
                                        "effect_curve_s13_talk_before.csv", "effect_curve_s13_talk_after.csv")}
# methods that need an optional package (the bench extra; benchmarks/_peers.py)
PEERS = {"causal_forest": ("econml",)}


def recorded_settings(prev: pd.DataFrame, out: Path) -> pd.DataFrame:
    """The rows of an existing --out with their n and n_pseudo: as recorded, or for a committed CSV written before
    they were recorded, the values RESULTS.md documents (``LEGACY``); otherwise SystemExit naming --out."""
    if {"n", "n_pseudo"} <= set(prev.columns):
        return prev
    here = Path(__file__).resolve().parent
    if out.parent != here or out.name not in LEGACY:
        raise SystemExit(f"--out {out}: its rows do not record n and n_pseudo (written before they were) and "
                         "RESULTS.md documents no settings for this file, so a resume cannot be checked against "
                         "--n and --n-pseudo; use another --out")
    n, n_pseudo = LEGACY[out.name]
    return prev.assign(n=n, n_pseudo=np.where(prev.key == "effect_curve", n_pseudo, np.nan))


def check_resume(prev: pd.DataFrame, out: Path, n: int, n_pseudo: int, methods: list[str]) -> None:
    """Refuse to resume ``out`` with another --n (any row) or --n-pseudo (EffectCurve's rows, when it runs): fits are
    skipped by (design, rep, method) alone, so the file's rows would be reported as this run's."""
    other_n = sorted(set(prev["n"].dropna().astype(int)) - {n})
    if other_n:
        raise SystemExit(f"--out {out}: holds rows with n = {', '.join(map(str, other_n))}, not --n {n}; use "
                         "another --out")
    ec = prev.loc[prev.key == "effect_curve", "n_pseudo"].dropna().astype(int)
    other_b = sorted(set(ec) - {n_pseudo})
    if "effect_curve" in methods and other_b:
        raise SystemExit(f"--out {out}: holds EffectCurve rows with n_pseudo = {', '.join(map(str, other_b))}, not "
                         f"--n-pseudo {n_pseudo}; use another --out")


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (design, method), g in df.groupby(["design", "method"], sort=False):
        r = {"design": design, "method": method, "reps": len(g)}
        for col in ("cov90", "cov95"):
            r[col] = g[col].mean()
            r[f"{col}_mcse"] = g[col].std(ddof=1) / np.sqrt(len(g)) if len(g) > 1 else np.nan
        for col in ("width90", "width95", "rmse"):
            r[col] = g[col].mean()
        r["rmse_mcse"] = g["rmse"].std(ddof=1) / np.sqrt(len(g)) if len(g) > 1 else np.nan
        r["median_wall_s"] = g["wall"].median()
        for col in ("C90", "C95"):
            if col in g and g[col].notna().any():
                r[col] = g[col].mean()
        rows.append(r)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=_peers.int_at_least(1), default=200)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--designs", default="talk,heterogeneous")
    ap.add_argument("--methods", default="effect_curve,causal_forest,krls")
    ap.add_argument("--n-pseudo", type=int, default=20)
    ap.add_argument("--spline", default="natural", choices=("natural", "cubic"), help="EffectCurve's t-spline")
    ap.add_argument("--n-knots", type=int, default=6, help="EffectCurve's knots in t (boundary included)")
    ap.add_argument("--seed", type=int, default=0, help="first replication seed")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "effect_curve_results.csv"),
                    help="per-replication rows with their n and n_pseudo (appended as they finish; existing (design, "
                         "rep, method) are skipped, and a file of another --n, --n-pseudo or EffectCurve spline is "
                         "refused); the table reports the requested reps, designs and methods; the folder must exist "
                         "(default: effect_curve_results.csv beside this script)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    designs = [s.strip() for s in args.designs.split(",") if s.strip()]
    methods = [s.strip() for s in args.methods.split(",") if s.strip()]
    for dname in designs:
        if dname not in DESIGNS:
            raise SystemExit(f"--designs: unknown design {dname!r}; known: {', '.join(DESIGNS)}")
    for m in methods:
        if m not in METHODS:
            raise SystemExit(f"--methods: unknown method {m!r}; known: {', '.join(METHODS)}")
    methods, notes = _peers.split_available(methods, PEERS)
    for note in notes:
        print(note, flush=True)
    if not methods:
        raise SystemExit(f"--methods: nothing left to run ({args.methods!r} needs packages that are not installed)")
    out = _peers.check_out_file("--out", args.out, ap.error)  # before any fit: rows are appended after each fit
    done = set()
    columns = COLUMNS
    if out.exists():
        raw = pd.read_csv(out)
        columns = list(raw.columns)  # appended rows follow the file's header
        prev = recorded_settings(raw, out)
        check_resume(prev, out, args.n, args.n_pseudo, methods)
        done = {(r.design, int(r.rep), r.key) for r in prev.itertuples()}
        # rows are skipped by (design, rep, key) alone: refuse to mix EffectCurve settings in one file, which would
        # skip every fit and summarize the other setting's rows
        tag = effect_curve_tag(args.spline, args.n_knots)
        other = {m.split(" (")[0] for m in prev.loc[prev.key == "effect_curve", "method"]} - {tag}
        if "effect_curve" in methods and other:
            raise SystemExit(f"--out {out}: holds {', '.join(sorted(other))} rows, not {tag}; use another --out")
    with threadpool_limits(1):
        for rep in range(args.seed, args.seed + args.reps):
            for dname in designs:
                d = simulate_effect_curve(rep, dname, n=args.n)
                for m in methods:
                    if (dname, rep, m) in done:
                        continue
                    rows = (run_effect_curve(d, rep, args.n_pseudo, args.spline, args.n_knots) if m == "effect_curve"
                            else METHODS[m](d, rep))
                    frame = pd.DataFrame([{"design": dname, "rep": rep, "key": m, "n": args.n,
                                           "n_pseudo": args.n_pseudo if m == "effect_curve" else np.nan, **r}
                                          for r in rows]).reindex(columns=columns)
                    frame.to_csv(out, mode="a", header=not out.exists(), index=False)
                    for r in rows:
                        print(f"{dname:13s} rep {rep:3d} {r['method']:27s} rmse {r['rmse']:.3f} "
                              f"cov90 {r['cov90']:.3f} cov95 {r['cov95']:.3f} wall {r['wall']:.1f}s", flush=True)
    df = pd.read_csv(out)  # this run's table: the requested reps, designs and methods, not every row of the file
    reps = range(args.seed, args.seed + args.reps)
    df = df[df.design.isin(designs) & df.key.isin(methods) & df.rep.isin(reps)]
    table = summarize(df)
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))
    try:
        print(table.to_markdown(index=False, floatfmt=".3f"))
    except ImportError:
        pass
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
