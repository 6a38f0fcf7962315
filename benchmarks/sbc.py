"""Simulation-based calibration (Talts et al. 2018) of the zoo's cheap inferences.

For each replication: draw the parameters and a data set from the model's own prior (the registered Pyro model with
its default prior, so the prior drawn from is the one the fit uses), fit through the registry entry (4 chains), thin
the draws to L roughly independent ones (evenly within each chain: --num-samples at least ceil(L / 4)), and record
the rank of the true value among them. Over many replications the ranks of a calibrated posterior are uniform on
{0, ..., L}. The table gives, per scalar parameter, a chi-square test on 10 bins of the ranks (fewer when L < 9;
each bin expects its share of the L + 1 rank values) and a KS test of the (jittered) normalized ranks, both
against uniformity, and the coverage of the central 90% posterior interval (binomial s.e. beside it). With several
parameters tested, read the p-values against a Bonferroni threshold (0.05 / the number of rows of a case).

    python benchmarks/sbc.py --case spike-slab --reps 600 --seed 10000 --n 8 --p 2     # ~5 min on one core
    python benchmarks/sbc.py --case normal-gamma --reps 200 --n 10
    python benchmarks/sbc.py --case blr --reps 200 --n 15

``--case spike-slab`` fits through ``make_dataset``, which centres y (every public path does); ``--raw`` feeds the
model's own uncentred y instead (no intercept to integrate out: n degrees of freedom).
"""

from __future__ import annotations

import argparse
import time
import warnings

import _peers
import numpy as np
import pyro
import torch
from pyro import poutine
from scipy import stats

from pyrozoo import registry
from pyrozoo.config import RunConfig
from pyrozoo.data.dataset import Dataset
from pyrozoo.validation import SEED_MAX

CASES = ("normal-gamma", "blr", "spike-slab")
CHAINS = 4  # chains of every fit


def draws_per_chain(L: int, chains: int) -> int:
    """The draws each chain must hold for :func:`thinned_rank` to take L among ``chains`` chains: ceil(L / C)."""
    return -(-L // chains)


def thinned_rank(truth: float, draws: np.ndarray, L: int) -> int:
    """Rank of ``truth`` among L draws of ``draws`` (chain, draw), taken evenly within each chain (ceil(L / C)
    per chain, the last ones of each stride) and cut to L: the number of them below ``truth``, in {0, ..., L}."""
    draws = np.asarray(draws, dtype=float)
    if draws.ndim == 1:
        draws = draws[None]
    chains, size = draws.shape[:2]
    per = draws_per_chain(L, chains)
    if size < per:
        raise ValueError(f"expected at least {per} draws per chain to thin to L = {L}, got {size}")
    step = size // per
    kept = draws[:, step - 1::step][:, :per].reshape(-1)[:L]
    return int((kept < truth).sum())


def uniformity(ranks: list[int], L: int, bins: int = 10, seed: int = 0) -> tuple[float, float, list[int]]:
    """(chi-square p, KS p, bin counts) of ``ranks`` against the uniform distribution on {0, ..., L}.

    The L + 1 rank values are split into min(bins, L + 1) runs of consecutive values, as even as they can be; a bin
    holding w of them expects a share w / (L + 1) of the ranks (bins of 2 and 3 values when L = 20: equal expected
    counts would reject uniform ranks)."""
    ranks = np.asarray(ranks)
    bins = min(bins, L + 1)
    edges = np.round(np.linspace(0, L + 1, bins + 1)).astype(int)  # bin k holds ranks edges[k], ..., edges[k+1] - 1
    counts, _ = np.histogram(ranks, edges - 0.5)
    expected = ranks.size * np.diff(edges) / (L + 1)
    u = (ranks + np.random.default_rng(seed).uniform(size=ranks.size)) / (L + 1)
    chi = stats.chisquare(counts, expected).pvalue
    return float(chi), float(stats.kstest(u, "uniform").pvalue), counts.tolist()


def replicate(case: str, r: int, seed: int, n: int, p: int, raw: bool, num_samples: int,
              warmup: int) -> dict[str, tuple[float, np.ndarray]]:
    """One replication: {parameter: (true value, draws (chain, draw))}."""
    pyro.set_rng_seed(seed + r)
    gen = torch.Generator().manual_seed(20_000 + seed + r)
    if case == "normal-gamma":
        from pyrozoo.models.normal_gamma import make_dataset, normal_gamma_model

        tr = poutine.trace(normal_gamma_model).get_trace(None, n=n)
        truth = {k: float(tr.nodes[k]["value"]) for k in ("mu", "beta")}
        ds = make_dataset(tr.nodes["x"]["value"].double().numpy())
        cfg = RunConfig(model=case, inference="gibbs", seed=seed + r, progress=False, device="cpu",
                        num_samples=num_samples, warmup_steps=warmup, num_chains=CHAINS)
    elif case == "blr":
        from pyrozoo.models.blr import blr_model, make_dataset

        X = torch.cat([torch.ones(n, 1, dtype=torch.float64),
                       torch.randn(n, p, generator=gen, dtype=torch.float64)], 1)
        tr = poutine.trace(blr_model).get_trace(X, None)
        w = tr.nodes["w"]["value"]
        truth = {**{f"w[{j}]": float(w[j]) for j in range(p + 1)}, "tau": float(tr.nodes["tau"]["value"])}
        ds = make_dataset(X, tr.nodes["y"]["value"])
        cfg = RunConfig(model=case, inference="exact", seed=seed + r, progress=False, device="cpu",
                        num_samples=num_samples, num_chains=CHAINS)
    else:
        from pyrozoo.models.spike_slab import make_dataset, spike_slab_model
        from pyrozoo.models.spike_slab_prior import SpikeSlabPrior

        X = torch.randn(n, p, generator=gen, dtype=torch.float64)
        X = (X - X.mean(0)) / X.std(0, unbiased=False)  # standardized, so make_dataset leaves X as it is
        tr = poutine.trace(spike_slab_model).get_trace(X, None)  # the model's default prior (lam = 1, ...)
        w, y = tr.nodes["w"]["value"], tr.nodes["y"]["value"]
        truth = {**{f"w[{j}]": float(w[j]) for j in range(p)},
                 **{k: float(tr.nodes[k]["value"]) for k in ("sigma2", "theta")}}
        if raw:
            ds = Dataset("sbc", inputs={"X": X, **SpikeSlabPrior().to_dict()}, observed={"y": y},
                         meta={"x_mean": np.zeros(p), "x_scale": np.ones(p), "y_mean": 0.0})
        else:
            ds = make_dataset(X.numpy(), y.numpy())
        cfg = RunConfig(model=case, inference="gibbs", seed=seed + r, progress=False, device="cpu",
                        num_samples=num_samples, warmup_steps=warmup, num_chains=CHAINS)
    res = registry.get(case).fit(ds, cfg)
    out = {}
    for name, value in truth.items():
        site, _, index = name.partition("[")
        draws = np.asarray(res.posterior[site], dtype=float)
        out[name] = (value, draws[..., int(index[:-1])] if index else draws)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    at_least_1, at_least_2 = _peers.int_at_least(1), _peers.int_at_least(2)
    parser.add_argument("--case", choices=CASES, required=True)
    parser.add_argument("--reps", type=at_least_2, default=200, help="replications")
    parser.add_argument("--seed", type=_peers.int_at_least(0), default=10_000, help="first replication's seed")
    parser.add_argument("--n", type=at_least_2, default=None, help="rows (default: 10, blr 15, spike-slab 8)")
    parser.add_argument("--p", type=at_least_1, default=2, help="covariates (blr: besides the intercept)")
    parser.add_argument("--L", type=at_least_1, default=99, help="draws each rank is taken among")
    parser.add_argument("--num-samples", type=at_least_1, default=300, help="draws per chain")
    parser.add_argument("--warmup", type=_peers.int_at_least(0), default=200, help="Gibbs warmup sweeps")
    parser.add_argument("--raw", action="store_true", help="spike-slab: the uncentred y, as the model draws it")
    args = parser.parse_args()
    if args.seed + args.reps - 1 > SEED_MAX:  # replication r runs with seed --seed + r (set_rng_seed's range)
        parser.error(f"--seed: replication r runs with seed --seed + r, an integer seed in [0, 2**32 - 1], so with "
                     f"--reps {args.reps} expected --seed <= {SEED_MAX - args.reps + 1}, got {args.seed}")
    if args.raw and args.case != "spike-slab":
        parser.error(f"--raw: only for --case spike-slab, got --case {args.case}")
    if args.num_samples < draws_per_chain(args.L, CHAINS):
        parser.error(f"--num-samples: expected at least {draws_per_chain(args.L, CHAINS)} draws per chain to thin "
                     f"{CHAINS} chains to --L {args.L}, got {args.num_samples}")
    n = args.n if args.n is not None else {"normal-gamma": 10, "blr": 15, "spike-slab": 8}[args.case]
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)  # per-fit convergence notes of tiny data sets
    ranks: dict[str, list[int]] = {}
    covered: dict[str, list[bool]] = {}
    t0 = time.perf_counter()
    for r in range(args.reps):
        for name, (value, draws) in replicate(args.case, r, args.seed, n, args.p, args.raw, args.num_samples,
                                              args.warmup).items():
            ranks.setdefault(name, []).append(thinned_rank(value, draws, args.L))
            lo, hi = np.quantile(draws, [0.05, 0.95])
            covered.setdefault(name, []).append(bool(lo <= value <= hi))
    wall = time.perf_counter() - t0
    mode = " (raw y)" if args.raw else ""
    print(f"SBC {args.case}{mode}: n = {n}, p = {args.p}, {args.reps} replications from seed {args.seed}, "
          f"L = {args.L}, {wall:.0f} s; Bonferroni threshold 0.05 / {len(ranks)} = {0.05 / len(ranks):.4f}\n")
    print(f"| parameter | chi2 p | KS p | 90% coverage (s.e.) | rank counts ({min(10, args.L + 1)} bins) |")
    print("|---|---|---|---|---|")
    se = (0.9 * 0.1 / args.reps) ** 0.5
    for name in ranks:
        chi, ks, counts = uniformity(ranks[name], args.L)
        print(f"| {name} | {chi:.3g} | {ks:.3g} | {np.mean(covered[name]):.3f} ({se:.3f}) | {counts} |")


if __name__ == "__main__":
    main()
