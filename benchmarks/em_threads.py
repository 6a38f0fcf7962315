"""Estimator seconds of the effect-curve fit on cps1985 (many small EM solves) with N torch intra-op threads:
`one_thread_if_small` against torch's default on a busy machine (benchmarks/RESULTS.md, "EM with one intra-op
thread"). Run once per thread count, each in its own process:

    python benchmarks/em_threads.py --threads 2
    python benchmarks/em_threads.py --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch

from pyrozoo.config import RunConfig
from pyrozoo.runner import run_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    out = run_model(RunConfig(model="effect-curve", dataset="cps1985", progress=False), save=False)
    print(f"threads {torch.get_num_threads()}: estimator {out.metrics['estimator_wall_time']:.1f} s, "
          f"whole run {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
