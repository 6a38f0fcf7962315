"""The convergence figures a saved Markov-chain run writes into metrics.json (``convergence_figures``: bulk and tail
ESS and rank-normalized split r_hat of every component, computed for all components at once) against ArviZ's
``az.ess`` (bulk, tail) and ``az.rhat``, which loop over the components one by one, on the same InferenceData:
AR(1) chains (phi 0.5), 2 chains x 1000 draws, K components. Prints the largest difference from ArviZ's numbers
and the times of three repeats (medians quoted in RESULTS.md).

    PYTHONPATH=. python benchmarks/convergence_figures.py --components 1500
"""

from __future__ import annotations

import argparse
import time

import arviz as az
import numpy as np

from pyrozoo.evaluation.diagnostics import _rank_diagnostics, convergence_figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--components", type=int, default=1500, help="number of posterior components K")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    chains, draws, k = 2, 1000, args.components
    e = rng.standard_normal((chains, draws, k))
    x = np.empty_like(e)
    x[:, 0] = e[:, 0]
    for t in range(1, draws):
        x[:, t] = 0.5 * x[:, t - 1] + e[:, t]
    idata = az.from_dict(posterior={"w": x}, attrs={"inference": "gibbs"})
    rows = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        convergence_figures(idata)
        ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        ess_bulk = az.ess(idata, method="bulk")["w"].values
        ess_tail = az.ess(idata, method="tail")["w"].values
        rhat = az.rhat(idata)["w"].values
        rows.append((ours, time.perf_counter() - t0))
    got = _rank_diagnostics(np.moveaxis(x, 2, 0))
    print(f"K = {k} components, {chains} chains x {draws} draws")
    print(f"max |difference| from ArviZ: ess_bulk {np.abs(got[0] - ess_bulk).max():.2e}, ess_tail "
          f"{np.abs(got[1] - ess_tail).max():.2e}, r_hat {np.abs(got[2] - rhat).max():.2e}")
    for ours, theirs in rows:
        print(f"convergence_figures {ours:.2f} s, ArviZ ess (bulk, tail) + rhat {theirs:.2f} s, ratio "
              f"{theirs / ours:.1f}")
    print(f"median ratio {np.median([t / o for o, t in rows]):.1f}")


if __name__ == "__main__":
    main()
