"""PLCE at small n with many covariates: the union refit's covariates joining penalized (session 23) against the
earlier refit that dropped them once they did not fit unpenalized.

Design (one linear confounder among p standard-normal covariates): x ~ N(0, I_p), t = x1 + v, y = t + x1 + e,
v, e ~ N(0, 1), true effect 1, n = 40, data seed 50 + s. ``PLCE(n_repeats=1, seed=s)`` with its defaults otherwise;
z = (estimate - 1) / SE. Reference: OLS of y on [1, t, x1] (the true control) and the naive slope of y on t.
Run once per code version (the commit before the change checked out with ``git worktree``), each writing a CSV;
``--from-csv`` prints the table of both. Recorded in benchmarks/RESULTS.md (session 23):

    git worktree add /tmp/plce_old 76dcdf4
    PYTHONPATH=/tmp/plce_old OMP_NUM_THREADS=1 python benchmarks/plce_small_n.py --label before --out /tmp/bn/before.csv
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/plce_small_n.py --label after --out /tmp/bn/after.csv
    PYTHONPATH=. python benchmarks/plce_small_n.py --from-csv /tmp/bn/before.csv,/tmp/bn/after.csv
"""

from __future__ import annotations

import argparse
import time
import warnings

import _peers
import numpy as np
import pandas as pd


def design(n: int, p: int, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = np.random.default_rng(50 + s)
    X = r.standard_normal((n, p))
    t = X[:, 0] + r.standard_normal(n)
    y = t + X[:, 0] + r.standard_normal(n)
    return y, t, X


def run(label: str, n: int, ps: list[int], seeds: int) -> pd.DataFrame:
    from pyrozoo.causal import PLCE

    rows = []
    for p in ps:
        for s in range(seeds):
            y, t, X = design(n, p, s)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est = PLCE(n_repeats=1, seed=s).fit(y, t, X)
            theta, se = float(est.theta_), float(est.se_)
            ols = np.linalg.lstsq(np.c_[np.ones(n), t, X[:, 0]], y, rcond=None)[0][1]
            rows.append({"label": label, "n": n, "p": p, "seed": s, "theta": theta, "se": se,
                         "z": (theta - 1) / se, "ols_true_control": ols, "naive_slope": np.polyfit(t, y, 1)[0],
                         "seconds": time.perf_counter() - start})
            print(f"{label} p={p} seed={s}: {theta:.3f} (SE {se:.3f}, z {(theta - 1) / se:+.2f})", flush=True)
    return pd.DataFrame(rows)


def table(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["p", "label"], sort=True)
    return pd.DataFrame({"seeds": g.size(), "mean_theta": g["theta"].mean(), "mean_z": g["z"].mean(),
                         "mean_abs_z": g["z"].apply(lambda z: z.abs().mean()),
                         "max_abs_z": g["z"].apply(lambda z: z.abs().max()),
                         "share_abs_z_gt_2": g["z"].apply(lambda z: (z.abs() > 2).mean()),
                         "mean_ols_true_control": g["ols_true_control"].mean(),
                         "median_seconds": g["seconds"].median()}).round(3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", default="this")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--p", default="3,10,30", help="comma-separated numbers of covariates")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--out", help="CSV of the fits, in an existing folder; an existing CSV is refused unless "
                    "--overwrite is given")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --out CSV")
    ap.add_argument("--from-csv", help="comma-separated CSVs to tabulate (no fitting)")
    args = ap.parse_args()
    if args.from_csv:
        files = _peers.check_files("--from-csv", args.from_csv.split(","), ap.error)
        df = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    else:
        if args.out:  # before any fit: the rows are written when all fits are done
            out = _peers.check_out_file("--out", args.out, ap.error)
            _peers.check_new_files("--out", [out], args.overwrite, ap.error)
        df = run(args.label, args.n, [int(v) for v in args.p.split(",")], args.seeds)
        if args.out:
            df.to_csv(args.out, index=False)
    from pyrozoo.sweep.report import to_markdown

    print(to_markdown(table(df).reset_index()))


if __name__ == "__main__":
    main()
