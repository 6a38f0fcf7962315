"""BNN on UCI Boston and Concrete: MAP, SWAG-diag, SWAG, CIBER, collapsed-Gaussian, VI over random 90/10 splits,
and the speed of exact collapsed prediction against Monte Carlo of the same accuracy.

    python benchmarks/bnn_uci.py --splits 20                      # the full protocol
    python benchmarks/bnn_uci.py --splits 5 --first-split 5 --vi-steps 500 --no-speed --rows-out rows_5.jsonl
    python benchmarks/bnn_uci.py --splits 20 --no-speed --merge rows_0.jsonl rows_5.jsonl ...   # pieces (RESULTS.md)
    python benchmarks/bnn_uci.py --speed-only
    python benchmarks/bnn_uci.py --validation-only --datasets concrete --splits 3 --epochs 200   # recipe pilot

Per split: 1/9 of the training part is held out (``--val-fraction``, the reference code's 8:1 split) to choose the
noise scale tau of every method and CIBER's defensive weight lambda and box scale on it (rows "ciber, box 1": box
scale fixed at 1; "ciber + tail (ours)": our triangle-mixture likelihood, its tail weight rho chosen there too).
One SGD/SWA trajectory is shared by MAP (its last iterate), SWAG-diag, SWAG, CIBER and the collapsed Gaussian (the
fit time of each is the trajectory's time plus its own); VI (AutoNormal) starts from the MAP weights. Metrics in
original units: test RMSE of the predictive mean; test NLL with the moment-matched Gaussian predictive (Izmailov et
al.'s protocol for SWAG, used for every method) and with each method's own predictive density, both as trained
(tau = 1, lambda = 0, box 1: CIBER's bounded support can give an infinite NLL) and calibrated; for CIBER the number
of test points outside its support.
Mean +- standard error over splits.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import replace

import _peers
import numpy as np
import torch

from pyrozoo.data.uci import uci_split
from pyrozoo.guides.collapsed import TRIANGULAR_R, ciber_density
from pyrozoo.models.bnn import TAIL_WEIGHTS, build_posterior, train_bnn

METHODS = ("map", "swag-diag", "swag", "ciber", "collapsed-gaussian", "vi")
ANCHORS = {  # published test RMSE: CIBER (Zeng & Van den Broeck), subspace inference (Izmailov et al. 2020)
    "boston": {"ciber": 3.478, "subspace": 3.453},
    "concrete": {"ciber": 4.854, "subspace": 5.142},
}


# extra CIBER rows, each the same validation grid search restricted to a subset of (tau, lambda, box, rho):
CIBER_ROWS = {
    "ciber, box 1": lambda key: key[2] == 1.0 and key[3] == 0.0,  # boxes +-sqrt(3) sd only (the earlier default)
    "ciber + tail (ours)": lambda key: True,  # our triangle mixture: rho from TAIL_WEIGHTS as well
}


def posterior_kwargs(method: str, args: argparse.Namespace) -> dict[str, int]:
    """The --num-samples, --num-collapsed and --vi-steps that ``method`` reads (build_posterior refuses the others:
    map keeps one draw, num_collapsed is ciber's, vi_steps vi's)."""
    kw = {} if method == "map" else {"num_samples": args.num_samples}
    if method == "ciber":
        kw["num_collapsed"] = args.num_collapsed
    if method == "vi":
        kw["vi_steps"] = args.vi_steps
    return kw


def run_split(name: str, split: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    s = uci_split(name, split)
    opts = dict(standardize=False, epochs=args.epochs, swa_epochs=args.swa_epochs, batch_size=args.batch_size,
                lr=args.lr, swa_lr=args.swa_lr, rank=args.rank, seed=split, prior_scale=args.prior_scale)
    t0 = time.perf_counter()
    tr_val = train_bnn(s.X_train, s.y_train, val_fraction=args.val_fraction, **opts) if args.val_fraction else None
    # --refit: tau and lambda chosen on the held-out rows, then the network refit on the whole training part
    tr_full = train_bnn(s.X_train, s.y_train, **opts) if args.refit or tr_val is None else tr_val
    train_time = time.perf_counter() - t0
    out = {}
    yt = s.y_test.double()
    for method in METHODS:
        t1 = time.perf_counter()
        kw = posterior_kwargs(method, args)
        if tr_val is None:
            post = build_posterior(tr_full, method, calibrate=False, **kw)
            posts = {method: post}
        else:
            # tau (and for ciber lambda, box scale, tail weight) chosen on the held-out rows
            tails = {"tail_weights": TAIL_WEIGHTS} if method == "ciber" and args.tail_rows else {}
            chosen = build_posterior(tr_val, method, **tails, **kw)
            grid = chosen.extras["calibration"]["grid"]
            post = build_posterior(tr_full, method, calibrate=False, **kw) if tr_full is not tr_val else chosen
            subsets = {method: lambda key: key[3] == 0.0}  # the library default: the paper's triangle
            if method == "ciber" and args.tail_rows:
                subsets.update(CIBER_ROWS)
            posts = {}
            for label, keep in subsets.items():
                best = max((key for key in grid if keep(key)), key=grid.get)
                posts[label] = replace(post, noise_scale=best[0], defensive_weight=best[1], box_scale=best[2],
                                       tail_weight=best[3])
        elapsed = time.perf_counter() - t1
        raw = replace(post, noise_scale=1.0, defensive_weight=0.0, box_scale=1.0, tail_weight=0.0)  # as trained
        for label, cal_post in posts.items():
            mean, _ = raw.predictive_moments(s.X_test)  # tau and lambda do not move the mean
            lpd_raw = raw.log_predictive_density(s.X_test, s.y_test)
            lpd = cal_post.log_predictive_density(s.X_test, s.y_test)
            log_sd = math.log(s.y_std)
            out[label] = {
                "rmse": float(((mean - yt) ** 2).mean().sqrt()) * s.y_std,
                "nll": float(raw.moment_matched_nll(s.X_test, s.y_test).mean()) + log_sd,
                "nll_exact": float(-lpd_raw.mean()) + log_sd, "outside": float((~torch.isfinite(lpd_raw)).sum()),
                "nll_cal": float(cal_post.moment_matched_nll(s.X_test, s.y_test).mean()) + log_sd,
                "nll_exact_cal": float(-lpd.mean()) + log_sd, "tau": cal_post.noise_scale,
                "lam": cal_post.defensive_weight, "box": cal_post.box_scale, "rho": cal_post.tail_weight,
                "time": train_time + elapsed}
    return out


def validation_pilot(args: argparse.Namespace) -> None:
    """Training-recipe pilot scored on validation rows only (never on test): per split the network is fit to 8/9 of
    the training part and MAP, SWAG and CIBER (tau, lambda, box chosen on the held-out 1/9) are scored there by
    RMSE and by the calibrated mean log predictive density, in original units."""
    cols = ["dataset", "split", "fit s"] + [f"{m} val {q}" for m in ("map", "swag", "ciber") for q in ("RMSE", "lpd")]
    print("| " + " | ".join(cols) + " |\n" + "|---" * len(cols) + "|", flush=True)
    acc: dict[str, list[float]] = {}
    for name in args.datasets:
        for split in range(args.first_split, args.first_split + args.splits):
            s = uci_split(name, split)
            t0 = time.perf_counter()
            tr = train_bnn(s.X_train, s.y_train, val_fraction=args.val_fraction, standardize=False,
                           epochs=args.epochs, swa_epochs=args.swa_epochs, batch_size=args.batch_size, lr=args.lr,
                           swa_lr=args.swa_lr, rank=args.rank, seed=split, prior_scale=args.prior_scale)
            cells = [f"{time.perf_counter() - t0:.0f}"]
            for m in ("map", "swag", "ciber"):
                post = build_posterior(tr, m, **posterior_kwargs(m, args))
                mean, _ = post.predictive_moments(tr.X_val)
                rmse = float(((mean - tr.y_val.double()) ** 2).mean().sqrt()) * s.y_std
                lpd = post.extras["calibration"]["val_lpd"] - math.log(s.y_std)
                acc.setdefault(f"{name} {m} rmse", []).append(rmse)
                acc.setdefault(f"{name} {m} lpd", []).append(lpd)
                cells += [f"{rmse:.3f}", f"{lpd:.3f}"]
            print(f"| {name} | {split} | " + " | ".join(cells) + " |", flush=True)
    for key, vals in acc.items():
        print(f"{key}: mean {statistics.fmean(vals):.3f} over {len(vals)} splits", flush=True)


def summarize(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < len(values):
        return f"inf ({len(values) - len(finite)}/{len(values)} splits)"
    m = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return f"{m:.3f} +- {se:.3f}"


def uci_table(args: argparse.Namespace) -> None:
    stored: list[dict] = []
    for path in args.merge or []:  # per-split rows of earlier runs (--rows-out), e.g. splits 0-4 and 5-9
        with open(path) as f:
            stored += [json.loads(line) for line in f if line.strip()]
    for name in args.datasets:
        rows: dict[str, list[dict[str, float]]] = {}
        done = {}
        for rec in stored:
            if rec["dataset"] == name:
                done[rec["split"]] = rec["rows"]
        for split in sorted(done):
            for m, row in done[split].items():
                rows.setdefault(m, []).append(row)
        for split in range(args.first_split, args.first_split + args.splits):
            if split in done:
                continue
            res = run_split(name, split, args)
            if args.rows_out:
                with open(args.rows_out, "a") as f:
                    f.write(json.dumps({"dataset": name, "split": split, "rows": res}) + "\n")
            for m, row in res.items():
                rows.setdefault(m, []).append(row)
            print(f"# {name} split {split} (rmse/nll mm/nll exact/calibrated exact): " + ", ".join(
                f"{m} {res[m]['rmse']:.3f}/{res[m]['nll']:.3f}/{res[m]['nll_exact']:.3f}/{res[m]['nll_exact_cal']:.3f}"
                for m in res), flush=True)
        n_splits = len(next(iter(rows.values()))) if rows else 0
        print(f"\n{name}: {n_splits} splits (RMSE and NLL in original units, mean +- s.e.)")
        cal = args.val_fraction > 0
        print("| method | test RMSE | test NLL (moment-matched) | test NLL (exact predictive) |"
              + (" NLL mm, calibrated | NLL exact, calibrated | tau | lambda | box | rho |" if cal else "")
              + " s / split |")
        print("|---" * (11 if cal else 5) + "|")
        for m, r in rows.items():
            exact = summarize([x["nll_exact"] for x in r])
            if m.startswith("ciber"):
                exact += f"; {int(sum(x['outside'] for x in r))} test points off the support"
            extra = ""
            if cal:
                ciber = m.startswith("ciber")
                med = {key: statistics.median(x.get(key, d) for x in r)
                       for key, d in (("lam", 0.0), ("box", 1.0), ("rho", 0.0))}
                extra = (f" {summarize([x['nll_cal'] for x in r])} | {summarize([x['nll_exact_cal'] for x in r])} |"
                         f" {statistics.median(x['tau'] for x in r):.2f} |"
                         + (f" {med['lam']:.0e} | {med['box']:.1f} | {med['rho']:.2f} |" if ciber else " | | |"))
            print(f"| {m} | {summarize([x['rmse'] for x in r])} | {summarize([x['nll'] for x in r])} | {exact} |"
                  f"{extra} {statistics.median(x['time'] for x in r):.1f} |")
        a = ANCHORS[name]
        print(f"| published CIBER | {a['ciber']} | | | |\n| published subspace inference | {a['subspace']} | | | |",
              flush=True)


def speed(args: argparse.Namespace) -> None:
    """Exact CIBER density for one w_s at ``n`` test points against naive Monte Carlo over the collapsed box (the
    triangular likelihood evaluated at box draws): MC needs N = (sd / (mean * 1e-3))^2 draws per point to reach
    1e-3 relative sd; we time it with that N (measured from a pilot) and report the median of 21 (exact) and
    ``--speed-repeats`` (Monte Carlo) repeats."""
    gen = torch.Generator().manual_seed(0)
    n, k = args.speed_points, args.num_collapsed
    box = 0.05 + 0.3 * torch.rand(n, k, generator=gen, dtype=torch.float64)
    center = torch.zeros(n, dtype=torch.float64)
    sigma = 0.5 + 0.5 * torch.rand(n, generator=gen, dtype=torch.float64)
    y = 0.5 * torch.randn(n, generator=gen, dtype=torch.float64)
    a = TRIANGULAR_R * sigma

    def exact() -> torch.Tensor:
        return ciber_density(y, center, box, sigma)

    def mc(num: int, chunk: int = 20000) -> torch.Tensor:
        acc = torch.zeros(n, dtype=torch.float64)
        for lo in range(0, num, chunk):
            m = min(chunk, num - lo)
            f = ((2 * torch.rand(m, n, k, generator=gen, dtype=torch.float64) - 1) * box).sum(-1)
            acc += (1 / a - (y - f).abs() / a**2).clamp_min(0).sum(0)
        return acc / num

    pilot = 20000
    f = ((2 * torch.rand(pilot, n, k, generator=gen, dtype=torch.float64) - 1) * box).sum(-1)
    vals = (1 / a - (y - f).abs() / a**2).clamp_min(0)
    rel_sd = (vals.std(0) / vals.mean(0)).median().item()
    need = int(math.ceil((rel_sd / 1e-3) ** 2))
    te = statistics.median(_time(exact) for _ in range(21))
    tm = statistics.median(_time(lambda: mc(need)) for _ in range(args.speed_repeats))
    ref = exact()
    err = ((mc(need) - ref).abs() / ref).median().item()
    print(f"\nspeed: {n} test points, k = {k} collapsed weights (3 * 2^{k} terms), float64, 1 thread")
    print("| predictor | draws per point | median time (s) | median rel. error vs exact |")
    print("|---|---|---|---|")
    print(f"| exact (inclusion-exclusion) | - | {te:.4f} | 0 |")
    print(f"| Monte Carlo, 1e-3 rel. sd | {need} | {tm:.3f} | {err:.1e} |")
    print(f"speed-up at 1e-3 relative (measured): {tm / te:.0f}x", flush=True)
    # the exact values carry a rounding bound <= 1e-4 relative (uniform_sum_density's rel_tol); Monte Carlo cost grows
    # as 1 / tol^2, so matching that bound needs 100x the draws: extrapolated, not measured
    print(f"speed-up at 1e-4 relative (MC time extrapolated x100): {100 * tm / te:.0f}x", flush=True)


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["boston", "concrete"])
    p.add_argument("--splits", type=_peers.int_at_least(1), default=20,
                   help="splits to score; splits already in --merge files are taken from there, not rerun")
    p.add_argument("--first-split", type=int, default=0, help="run splits first-split .. first-split + splits - 1")
    p.add_argument("--rows-out", help="append each split's rows to this JSON-lines file")
    p.add_argument("--merge", nargs="*", help="JSON-lines files of earlier runs: their splits enter the table")
    p.add_argument("--epochs", type=int, default=400)
    p.add_argument("--swa-epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--swa-lr", type=float, default=0.005)
    p.add_argument("--rank", type=int, default=20)
    p.add_argument("--num-samples", type=int, default=30)
    p.add_argument("--num-collapsed", type=int, default=10)
    p.add_argument("--vi-steps", type=int, default=2000)
    p.add_argument("--prior-scale", type=float, default=3.0,
                   help="N(0, s^2) weight prior; 3 is close to the reference code's weight decay 1e-4 "
                        "(prior variance 1 / (wd n) with n ~ 400-800 fitting rows)")
    p.add_argument("--no-refit", dest="refit", action="store_false",
                   help="keep the network fit without the held-out rows (default: refit on the whole training part)")
    p.add_argument("--val-fraction", type=float, default=1 / 9,
                   help="held-out share of the training part for the noise scale tau and CIBER's lambda (0: none)")
    p.add_argument("--no-tail-rows", dest="tail_rows", action="store_false",
                   help="skip the extra CIBER rows (box 1 only; our triangle mixture with the tail weight grid)")
    p.add_argument("--speed-points", type=int, default=50)
    p.add_argument("--speed-repeats", type=int, default=3)
    p.add_argument("--speed-only", action="store_true")
    p.add_argument("--validation-only", action="store_true",
                   help="training-recipe pilot: fit to 8/9 of each training part, score MAP/SWAG/CIBER on the 1/9")
    p.add_argument("--no-speed", action="store_true")
    args = p.parse_args()
    if args.merge:
        _peers.check_files("--merge", args.merge, p.error)
    if not 0 <= args.val_fraction < 1:
        p.error(f"--val-fraction: expected a number in [0, 1), got {args.val_fraction}")
    if args.validation_only and not args.val_fraction:
        p.error("--val-fraction: --validation-only scores MAP/SWAG/CIBER on the held-out rows; expected > 0, got 0")
    torch.set_num_threads(1)
    np.random.seed(0)
    print(f"torch {torch.__version__}, args: {vars(args)}", flush=True)
    if args.validation_only:
        validation_pilot(args)
        return
    if not args.speed_only:
        uci_table(args)
    if not args.no_speed:
        speed(args)


if __name__ == "__main__":
    main()
