"""Normal-Gamma Gibbs in float32 against float64 on data far from zero: n = 200,000 of 1e4 + N(0, 1), where mu's
posterior sd (2.2e-3) is about two steps of float32's grid at 1e4. Prints, per seed, how far the float32 run's
posterior mean of mu lies from the float64 run's, in float64 posterior sds, and the median over seeds.

Run it in the checkout to measure (the API it calls, ``make_dataset`` and the registry entry, is the same since
session 20), e.g. before and after a change:

    python benchmarks/normal_gamma_float32.py
    git worktree add /tmp/old 76dcdf4 && PYTHONPATH=/tmp/old python benchmarks/normal_gamma_float32.py
"""

from __future__ import annotations

import argparse
import statistics

import _peers
import numpy as np
import pandas as pd
import torch

from pyrozoo import registry
from pyrozoo.config import RunConfig
from pyrozoo.inference.assemble import without_log_likelihood
from pyrozoo.models.normal_gamma import make_dataset
from pyrozoo.sweep.report import to_markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=_peers.int_at_least(2), default=200_000, help="observations (default 200,000)")
    parser.add_argument("--offset", type=float, default=1e4, help="the data's mean (default 1e4)")
    parser.add_argument("--seeds", type=_peers.int_at_least(1), default=5,
                        help="datasets, each with its own seed (default 5)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    entry = registry.get("normal-gamma")
    rows = []
    for seed in range(args.seeds):
        x = args.offset + np.random.default_rng(seed).standard_normal(args.n)
        metrics = {}
        for dtype in (torch.float64, torch.float32):
            ds = make_dataset(x, dtype=dtype, mu_scale=10 * args.offset)
            config = entry.check_config(RunConfig(model="normal-gamma", inference="gibbs", progress=False,
                                                  num_chains=2, num_samples=1000, warmup_steps=50, seed=seed))
            with without_log_likelihood():  # 2,000 draws x n observations
                metrics[dtype] = entry.metrics(entry.fit(ds, config), ds)
        m64, m32 = metrics[torch.float64], metrics[torch.float32]
        rows.append({"seed": seed, "mu sd (float64)": m64["mu_sd"],
                     "float32 - float64 mean of mu, in sds": (m32["mu_mean"] - m64["mu_mean"]) / m64["mu_sd"],
                     "float32 z vs exact": m32["mu_z_vs_exact"]})
    print(to_markdown(pd.DataFrame(rows)))
    print(f"\nmedian |float32 - float64| of mu's mean: "
          f"{statistics.median(abs(r['float32 - float64 mean of mu, in sds']) for r in rows):.3f} sd")


if __name__ == "__main__":
    main()
