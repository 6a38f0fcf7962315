"""Spike-and-slab regression benchmark: selection F1, coefficient RMSE, time; peers in the same run.

Design (a), EMVS: n = 100, p = 1000, w = (1.5, 2, 2.5, 0, ...), AR(1) columns (rho 0.6), unit noise, 20 seeds.
  Methods: EMVS (pyrozoo), scikit-learn LassoCV and ARDRegression.
Design (b): n = 200, p = 50, equicorrelated columns (rho 0.5), 5 signals (0.5, 0.75, 1, 1.5, 2), unit noise.
  Methods: EMVS, SSVS Gibbs (pyrozoo, vectorized chains), Pyro NUTS with gamma enumerated, LassoCV, ARDRegression;
  Gibbs vs NUTS: min effective sample size over (w, sigma^2) per second of sampling, and the largest difference of
  their inclusion probabilities.

    python benchmarks/spike_slab.py                        # both designs, default (reduced) protocol
    python benchmarks/spike_slab.py --design a --seeds 20
    python benchmarks/spike_slab.py --design b --seeds 3 --nuts-samples 500 --nuts-warmup 300

Selection: pyrozoo methods select the median-probability model (inclusion probability > 0.5), LassoCV the non-zero
coefficients, ARD the coefficients it does not prune (|w| > 1e-8 after its lambda threshold). RMSE is over all p
coefficients on the original scale.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import _peers
import arviz as az
import numpy as np
import torch

from pyrozoo.models.spike_slab import (
    SpikeSlabRegression,
    selection_metrics,
    simulate_emvs_design,
    simulate_equicorrelated_design,
)

PRIOR: dict = {}  # prior options for the pyrozoo estimators (set from the command line)


def _sklearn_fit(name: str, X: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    from sklearn.linear_model import ARDRegression, LassoCV

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "LassoCV":
            m = LassoCV(cv=5, random_state=seed, n_jobs=1).fit(X, y)
        else:
            m = ARDRegression().fit(X, y)
    wall = time.perf_counter() - t0
    return m.coef_, np.abs(m.coef_) > 1e-8, wall


def _row(method: str, coef: np.ndarray, selected: np.ndarray, w: np.ndarray, wall: float) -> dict:
    out = {"method": method, "time": wall, "rmse": float(np.sqrt(np.mean((coef - w) ** 2)))}
    out.update(selection_metrics(selected, w != 0))
    return out


def min_ess_per_second(result, wall: float) -> tuple[float, float]:
    """min bulk ESS over every w_d and sigma^2 (ArviZ), and that divided by the sampler's wall time."""
    ds = az.convert_to_dataset({"w": result.posterior["w"], "sigma2": result.posterior["sigma2"]})
    ess = az.ess(ds, method="bulk")
    m = float(min(float(ess["w"].min()), float(ess["sigma2"])))
    return m, m / wall


def design_a(seeds: list[int], verbose: bool, ard_seeds: int) -> list[dict]:
    rows = []
    for seed in seeds:
        X, y, w = simulate_emvs_design(seed)
        t0 = time.perf_counter()
        est = SpikeSlabRegression(inference="em", seed=seed, num_samples=10, **PRIOR).fit(X, y)
        em_wall = est.em_fit_.wall_time  # the EM itself (ladder of fixed points), without the posterior draws
        total = time.perf_counter() - t0
        r = _row("EMVS (pyrozoo)", est.coef_, est.selected_, w, em_wall)
        r["fit_total"] = total
        rows.append({**r, "seed": seed})
        peers = ("LassoCV", "ARDRegression") if seed < seeds[0] + ard_seeds else ("LassoCV",)
        for peer in peers:
            coef, sel, wall = _sklearn_fit(peer, X, y, seed)
            rows.append({**_row(peer, coef, sel, w, wall), "seed": seed})
        if verbose:
            print(f"  seed {seed}: " + ", ".join(f"{x['method']} F1={x['f1']:.2f} t={x['time']:.2f}s"
                                                 for x in rows[-1 - len(peers):]), flush=True)
    return rows


def design_b(seeds: list[int], args: argparse.Namespace, verbose: bool) -> tuple[list[dict], list[dict]]:
    rows, mix = [], []
    for seed in seeds:
        X, y, w = simulate_equicorrelated_design(seed)
        est = SpikeSlabRegression(inference="em", seed=seed, num_samples=10, **PRIOR).fit(X, y)
        rows.append({**_row("EMVS (pyrozoo)", est.coef_, est.selected_, w, est.em_fit_.wall_time), "seed": seed})
        g = SpikeSlabRegression(inference="gibbs", seed=seed, num_chains=args.gibbs_chains,
                                num_samples=args.gibbs_samples, warmup_steps=args.gibbs_warmup, **PRIOR).fit(X, y)
        g_wall = g.result_.wall_time
        rows.append({**_row("SSVS Gibbs (pyrozoo)", g.coef_, g.selected_, w, g_wall), "seed": seed})
        nu = SpikeSlabRegression(inference="nuts", seed=seed, num_chains=args.nuts_chains,
                                 num_samples=args.nuts_samples, warmup_steps=args.nuts_warmup, **PRIOR).fit(X, y)
        n_wall = nu.result_.wall_time
        rows.append({**_row("Pyro NUTS, gamma enumerated", nu.coef_, nu.selected_, w, n_wall), "seed": seed})
        for peer in ("LassoCV", "ARDRegression"):
            coef, sel, wall = _sklearn_fit(peer, X, y, seed)
            rows.append({**_row(peer, coef, sel, w, wall), "seed": seed})
        g_ess, g_rate = min_ess_per_second(g.result_, g_wall)
        n_ess, n_rate = min_ess_per_second(nu.result_, n_wall)
        diff = float(np.abs(g.inclusion_probabilities_ - nu.inclusion_probabilities_).max())
        mix.append({"seed": seed, "gibbs_min_ess": g_ess, "gibbs_time": g_wall, "gibbs_ess_per_s": g_rate,
                    "nuts_min_ess": n_ess, "nuts_time": n_wall, "nuts_ess_per_s": n_rate,
                    "ratio": g_rate / n_rate, "max_incl_diff": diff})
        if verbose:
            m = mix[-1]
            print(f"  seed {seed}: Gibbs minESS {g_ess:.0f} in {g_wall:.1f}s, NUTS minESS {n_ess:.0f} in "
                  f"{n_wall:.1f}s, ratio {m['ratio']:.1f}x, max |incl diff| {diff:.3f}", flush=True)
    return rows, mix


def summarize(rows: list[dict], title: str) -> None:
    print(f"\n### {title}\n")
    print("| method | median F1 | seeds with F1 = 1 | median RMSE | median time (s) |")
    print("|---|---|---|---|---|")
    for method in dict.fromkeys(r["method"] for r in rows):
        sub = [r for r in rows if r["method"] == method]
        f1 = [r["f1"] for r in sub]
        print(f"| {method} | {statistics.median(f1):.3f} | {sum(x == 1.0 for x in f1)}/{len(sub)} | "
              f"{statistics.median(r['rmse'] for r in sub):.4f} | {statistics.median(r['time'] for r in sub):.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--design", choices=["a", "b", "both"], default="both")
    at_least = _peers.int_at_least
    ap.add_argument("--seeds", type=at_least(1), default=None, help="number of seeds (default: a 20, b 3)")
    ap.add_argument("--ard-seeds", type=at_least(0), default=5,
                    help="design (a): run ARDRegression (30-40 s per fit at p = 1000) on the first N seeds only (0: "
                         "none)")
    ap.add_argument("--gibbs-chains", type=at_least(1), default=8)
    ap.add_argument("--gibbs-samples", type=at_least(1), default=1000)
    ap.add_argument("--gibbs-warmup", type=at_least(0), default=300)
    ap.add_argument("--nuts-chains", type=at_least(1), default=2)
    ap.add_argument("--nuts-samples", type=at_least(1), default=300)
    ap.add_argument("--nuts-warmup", type=at_least(0), default=300)
    ap.add_argument("--spike-var", type=float, default=None, help="prior spike variance (default: the estimator's)")
    ap.add_argument("--slab-var", type=float, default=None, help="prior slab variance (default: the estimator's)")
    ap.add_argument("--threads", type=at_least(1), default=1)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    PRIOR.update({k: v for k, v in (("spike_var", args.spike_var), ("slab_var", args.slab_var)) if v is not None})
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, prior options {PRIOR or 'defaults'}")
    if args.design in ("a", "both"):
        rows = design_a(list(range(20 if args.seeds is None else args.seeds)), not args.quiet, args.ard_seeds)
        summarize(rows, "Design (a): EMVS design, n = 100, p = 1000")
        em = [r for r in rows if r["method"].startswith("EMVS")]
        print(f"\nEMVS: F1 = 1 in {sum(r['f1'] == 1.0 for r in em)}/{len(em)} seeds (target >= 18/20); "
              f"median EM time {statistics.median(r['time'] for r in em):.3f} s, max {max(r['time'] for r in em):.3f}"
              f" s (target < 1 s); median fit() total incl. posterior draws "
              f"{statistics.median(r['fit_total'] for r in em):.3f} s")
    if args.design in ("b", "both"):
        rows, mix = design_b(list(range(3 if args.seeds is None else args.seeds)), args, not args.quiet)
        summarize(rows, "Design (b): equicorrelated, n = 200, p = 50")
        print("\n| seed | Gibbs min-ESS | Gibbs time (s) | Gibbs ESS/s | NUTS min-ESS | NUTS time (s) | NUTS ESS/s | "
              "ratio | max abs incl. diff |")
        print("|---|---|---|---|---|---|---|---|---|")
        for m in mix:
            print(f"| {m['seed']} | {m['gibbs_min_ess']:.0f} | {m['gibbs_time']:.1f} | {m['gibbs_ess_per_s']:.1f} | "
                  f"{m['nuts_min_ess']:.0f} | {m['nuts_time']:.1f} | {m['nuts_ess_per_s']:.2f} | {m['ratio']:.1f}x | "
                  f"{m['max_incl_diff']:.3f} |")
        print(f"\nmedian Gibbs/NUTS min-ESS/s ratio: {statistics.median(m['ratio'] for m in mix):.1f}x (target >= 20x)")


if __name__ == "__main__":
    main()
