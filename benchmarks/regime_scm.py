"""Regime SCM benchmark: EM-started exact enumeration vs the seed report's Gumbel-softmax VAE vs the oracle.

For each setting (linear shift 5, linear shift 10, nonlinear tanh-MLP shift 5) and seed: simulate the report's design
(10 variables, ER(0.3) DAG, 10,000 samples, 20% observational), fit

* ``ours``: ``regime-scm`` with ``inference=enum`` (EM warm start with restarts, then TraceEnum_ELBO; linear
  mechanisms on linear data, 3x32 ReLU MLP mechanisms on nonlinear data);
* ``gumbel``: the report's method (Gumbel-softmax relaxed z, T = 0.5, cyclical KL annealing with 5 cycles and
  ratio 0.5, Adam 1e-3, batch 64, 10 epochs, 3x32 ReLU MLP encoder and decoder);

and score ARI, exact regime-and-target accuracy, whether the observational regime is identified, per-variable MSE of
x against its fitted conditional mean over the oracle's (true mechanisms and regimes), wall and CPU time. The oracle
ARI classifies the same data with the true parameters. Every fit is appended to a JSONL file as it finishes (a
rerun appends again, it does not skip fits already there); the table is printed from that file (``--table-only``
reprints it, and refuses a file that does not exist or holds no fits). A run with no seeds for either method
(``--seeds 0 --gumbel-seeds 0``) has nothing to measure and is refused before any work.

    python benchmarks/regime_scm.py --settings shift5 shift10 nonlinear --seeds 10 --gumbel-seeds 10
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import _peers
import numpy as np
import torch

from pyrozoo.config import RunConfig
from pyrozoo.models.regime_scm import fit_regime_scm, regime_metrics, simulate_regime_data

SETTINGS = {
    "shift5": {"shift": 5.0, "nonlinear": False, "ours_mechanism": "linear"},
    "shift10": {"shift": 10.0, "nonlinear": False, "ours_mechanism": "linear"},
    "nonlinear": {"shift": 5.0, "nonlinear": True, "ours_mechanism": "mlp"},
}


def run_one(setting: str, seed: int, method: str, args: argparse.Namespace) -> dict:
    s = SETTINGS[setting]
    mechanism = s["ours_mechanism"] if method == "ours" else "mlp"
    ds = simulate_regime_data(seed, n_samples=args.n_samples, shift=s["shift"], nonlinear=s["nonlinear"],
                              mechanism=mechanism, hidden=32)
    if method == "ours":
        cfg = RunConfig(model="regime-scm", inference="enum", steps=args.steps, seed=seed, progress=False)
    else:
        steps = math.ceil(args.gumbel_epochs * args.n_samples / 64)
        cfg = RunConfig(model="regime-scm", inference="gumbel", steps=steps, lr=1e-3, seed=seed, progress=False)
    t0, c0 = time.perf_counter(), time.process_time()
    result = fit_regime_scm(ds, cfg)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    m = regime_metrics(result, ds)
    return {"setting": setting, "seed": seed, "method": method, "wall_s": wall, "cpu_s": cpu,
            **{k: m[k] for k in ("ari", "oracle_ari", "exact_accuracy", "observational_identified", "mse_ratio_mean",
                                 "mse_ratio_max", "loglik")}}


def table(rows: list[dict]) -> str:
    out = ["| setting | method | seeds | mean ARI | min ARI | oracle ARI | exact acc. | obs. identified | "
           "MSE/oracle mean (max) | wall s median | CPU s median |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for setting in SETTINGS:
        for method in ("ours", "gumbel"):
            r = [x for x in rows if x["setting"] == setting and x["method"] == method]
            if not r:
                continue
            def col(k, rr=r):
                return np.array([x[k] for x in rr])
            out.append(
                f"| {setting} | {method} | {len(r)} | {col('ari').mean():.3f} | {col('ari').min():.3f} | "
                f"{col('oracle_ari').mean():.3f} | {col('exact_accuracy').mean():.3f} | "
                f"{int(col('observational_identified').sum())}/{len(r)} | {col('mse_ratio_mean').mean():.3f} "
                f"({col('mse_ratio_max').max():.3f}) | {np.median(col('wall_s')):.1f} | {np.median(col('cpu_s')):.1f} |"
            )
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--seeds", type=_peers.int_at_least(0), default=10, help="seeds for ours (0..seeds-1)")
    p.add_argument("--gumbel-seeds", type=_peers.int_at_least(0), default=10,
                   help="seeds for the Gumbel baseline (0..k-1)")
    p.add_argument("--n-samples", type=int, default=10000)
    p.add_argument("--steps", type=int, default=300, help="SVI steps after the EM warm start (linear stops early)")
    p.add_argument("--gumbel-epochs", type=float, default=10.0)
    p.add_argument("--out", default="runs/bench/regime_scm.jsonl", help="JSONL file the fits are appended to")
    p.add_argument("--table-only", action="store_true", help="fit nothing: print the table of the fits in --out")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if out.is_dir():
        p.error(f"--out: expected a JSONL file, got the folder {out}")
    if args.table_only:
        if not out.is_file():
            p.error(f"--out: --table-only prints the fits of an existing JSONL file; no such file: {out}")
    elif not args.seeds and not args.gumbel_seeds:
        p.error("--seeds/--gumbel-seeds: nothing to measure: expected at least one seed for ours (--seeds) or the "
                "Gumbel baseline (--gumbel-seeds), got 0 and 0 (--table-only reprints the table of --out)")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        # ours on every setting first, then the (slower) baseline seed by seed across settings, so that a run cut
        # short still has complete rows for ours
        jobs = [(s, seed, "ours") for s in args.settings for seed in range(args.seeds)]
        jobs += [(s, seed, "gumbel") for seed in range(args.gumbel_seeds) for s in args.settings]
        for setting, seed, method in jobs:
            row = run_one(setting, seed, method, args)
            with out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    if not rows:
        p.error(f"--out: expected fits in {out}, got an empty file")
    print(table(rows))


if __name__ == "__main__":
    main()
