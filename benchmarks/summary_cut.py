"""The printed summary of `pyrozoo run` on a wide posterior (spike-slab EM, n = 100, p columns): the whole
az.summary table with the checks read off it (what the run printed before session 17) against the printed rows
only plus check_table over every component (now). Same notes and warnings either way (tests/evaluation).

    python benchmarks/summary_cut.py --p 3000 --repeats 3
"""

import argparse
import os
import statistics
import tempfile
import time

import _peers
import numpy as np
import pandas as pd
import torch

from pyrozoo.config import RunConfig
from pyrozoo.evaluation.diagnostics import check_lines, check_table, summary
from pyrozoo.runner import run_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--p", type=_peers.int_at_least(1), default=3000, help="columns of X")
    parser.add_argument("--rows", type=_peers.int_at_least(20), default=20, help="rows printed (the run's 20)")
    parser.add_argument("--repeats", type=_peers.int_at_least(1), default=3, help="timed calls; the median is shown")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, args.p))
    y = X[:, 0] + rng.standard_normal(100)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "wide.csv")
        pd.DataFrame(X, columns=[f"x{j}" for j in range(args.p)]).assign(y=y).to_csv(path, index=False)
        cfg = RunConfig(model="spike-slab", inference="em", data=path, options={"outcome": "y"}, progress=False)
        idata = run_model(cfg, save=False).result.to_inference_data()

    def whole() -> None:
        check_lines(idata, summary(idata), convergence=False)

    def cut() -> None:
        summary(idata, max_rows=args.rows)
        check_lines(idata, check_table(idata, convergence=False), convergence=False)

    print(f"| printed summary, p = {args.p} (about {3 * args.p} components) | median s | of |")
    print("|---|---|---|")
    for name, f in (("whole az.summary (before)", whole), (f"{args.rows} rows + check_table (now)", cut)):
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        print(f"| {name} | {statistics.median(times):.2f} | {[round(t, 2) for t in times]} |")


if __name__ == "__main__":
    main()
