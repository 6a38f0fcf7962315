r"""Agnostic classifier over the alpha grid (the analogue of Fig. 3 and Fig. 4 of Jia et al. 2018).

For every alpha and seed: render the digits task with that seed, train the agnostic classifier, and measure target
accuracy on the correlated / decorrelated / reversed test renderings, the adversary's own protected accuracy, and
leakage by fresh probes (logistic regression, small MLP) trained on frozen features of the disjoint probe split.
The peer is the alpha = 0 model (a plain Bayesian classifier), measured in the same run.

    python benchmarks/agnostic.py                        # full protocol: alpha 0, 0.1, ..., 1 x 10 seeds
    python benchmarks/agnostic.py --seeds 3 --steps 300  # reduced (see benchmarks/RESULTS.md)
    python benchmarks/agnostic.py --task cps1985 --alphas 0,0.3,0.5,0.7 --seeds 5
    python benchmarks/agnostic.py --seeds 3 -o target_weight=one_minus_alpha -o adversary_weight=alpha \
        -o extractor_loss=confusion -o context_copies=1          # the previous (eq. 1, confusion) scheme

Prints a table (mean +- sd over seeds) and writes ``agnostic_<task>_runs.csv`` and the figures (PNG) to ``--out``
(files already there are refused before any run unless ``--overwrite`` is given). A run with ``--seed-start S > 0``
names its runs CSV and figures with the suffix ``_seedsS-E``, so one-seed invocations can share one folder; a
``--merge`` run draws the unsuffixed ``agnostic_<task>_alpha_grid.png`` of all the merged rows.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import _peers
import numpy as np
import torch

from pyrozoo.config import RunConfig
from pyrozoo.errors import PyrozooError
from pyrozoo.models.agnostic import agnostic_entry, fitted_network

COLUMNS = {
    "digits": [("test_correlated_target_acc", "target corr"), ("test_decorrelated_target_acc", "target decorr"),
               ("test_reversed_target_acc", "target rev"), ("test_decorrelated_adversary_acc", "adversary p"),
               ("probe_logreg_acc", "probe LR p"), ("probe_mlp_acc", "probe MLP p"), ("probe_chance", "chance")],
    "cps1985": [("test_target_acc", "target acc"), ("test_dp_diff", "DP diff"), ("test_eo_diff", "EO diff"),
                ("test_adversary_acc", "adversary p"), ("probe_logreg_acc", "probe LR p"),
                ("probe_mlp_acc", "probe MLP p"), ("probe_chance", "chance")],
}


# the flag behind each setting a run's config check may name (anything else is an entry option, given with -o)
FLAGS = {"alpha": "--alphas", "steps": "--steps", "num_samples": "--num-samples", "device": "--device",
         "seed": "--seed-start", "dataset": "--task"}


def run_config(task: str, alpha: float, seed: int, args: argparse.Namespace) -> RunConfig:
    return RunConfig(model="agnostic", device=args.device, progress=False, steps=args.steps, seed=seed,
                     num_samples=args.num_samples, dataset=task, options={**args.option, "alpha": alpha})


def run_one(task: str, alpha: float, seed: int, args: argparse.Namespace):
    entry = agnostic_entry()
    cfg = run_config(task, alpha, seed, args)
    entry.check_config(cfg)
    data = entry.load_data(cfg)
    t0 = time.perf_counter()
    result = entry.fit(data, cfg)
    fit_s = time.perf_counter() - t0
    metrics = entry.metrics(result, data)
    metrics.update(seed=seed, fit_s=fit_s)
    return metrics, data, fitted_network(result, data)  # the fit trains a copy; data's network stays untrained


def summarize(rows: list[dict], task: str, alphas: list[float]) -> dict[float, dict[str, tuple[float, float]]]:
    cols = COLUMNS[task]
    out = {}
    header = "| alpha | " + " | ".join(name for _, name in cols) + " | fit s |"
    print(header)
    print("|" + "---|" * (len(cols) + 2))
    for a in alphas:
        sel = [r for r in rows if r["alpha"] == a]
        stats = {k: (float(np.mean([r[k] for r in sel])), float(np.std([r[k] for r in sel], ddof=1))
                     if len(sel) > 1 else 0.0) for k, _ in cols + [("fit_s", "")]}
        out[a] = stats
        cells = [f"{stats[k][0]:.3f} ± {stats[k][1]:.3f}" for k, _ in cols]
        print(f"| {a:.1f} | " + " | ".join(cells) + f" | {np.median([r['fit_s'] for r in sel]):.1f} |")
    return out


def verdict(stats: dict[float, dict[str, tuple[float, float]]], task: str) -> float | None:
    """The issue's targets: at the best alpha, fresh-probe protected accuracy within 3 points of chance while the
    decorrelated target accuracy beats the alpha = 0 model's. Best alpha: among alpha > 0 whose decorrelated target
    accuracy beats alpha = 0, the one with the least probe leakage (max of the two probes minus chance)."""
    if task != "digits" or 0.0 not in stats:
        return None
    base = stats[0.0]["test_decorrelated_target_acc"][0]

    def excess(a):
        s = stats[a]
        return max(s["probe_logreg_acc"][0], s["probe_mlp_acc"][0]) - s["probe_chance"][0]

    better = [a for a in stats if a > 0 and stats[a]["test_decorrelated_target_acc"][0] > base]
    pool = better or [a for a in stats if a > 0]
    if not pool:
        return None
    best = min(pool, key=excess)
    s = stats[best]
    print(f"\nbest alpha = {best:.1f}: decorrelated target acc {s['test_decorrelated_target_acc'][0]:.3f} "
          f"(alpha = 0: {base:.3f}; {'beats' if best in better else 'does NOT beat'} it); "
          f"fresh-probe protected acc LR {s['probe_logreg_acc'][0]:.3f}, MLP {s['probe_mlp_acc'][0]:.3f}, "
          f"chance {s['probe_chance'][0]:.3f} -> excess {100 * excess(best):.1f} points "
          f"({'within' if excess(best) <= 0.03 else 'NOT within'} 3 points of chance)")
    return best


def plot_grid(stats, task: str, out: Path, title: str, suffix: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alphas = sorted(stats)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=80)
    tgt = [c for c in COLUMNS[task] if "target" in c[0]]
    prot = [c for c in COLUMNS[task] if c[0].endswith(("adversary_acc", "logreg_acc", "mlp_acc"))]
    for ax, cols, ttl in ((axes[0], tgt, "target concept"), (axes[1], prot, "protected concept")):
        for key, name in cols:
            m = np.array([stats[a][key][0] for a in alphas])
            s = np.array([stats[a][key][1] for a in alphas])
            ax.errorbar(alphas, m, yerr=s, marker="o", ms=3, capsize=2, label=name)
        ax.set_xlabel("alpha")
        ax.set_ylabel("accuracy")
        ax.set_title(ttl)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[1].plot(alphas, [stats[a]["probe_chance"][0] for a in alphas], "k--", lw=1, label="chance")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = out / f"agnostic_{task}_alpha_grid{suffix}.png"  # a seed-range run's suffix, as for the runs CSV
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_saliency(data_lo, net_lo, net_hi, alpha_hi: float, out: Path, k: int = 4, suffix: str = "") -> Path:
    """Fig. 4 analogue: decorrelated test images, the most-informative-pixel map of the network fitted at alpha = 0
    (``net_lo``) and at alpha_hi (``net_hi``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pyrozoo.evaluation.saliency import background_share, feature_saliency, least_correlated

    part = data_lo.meta["splits"]["test_decorrelated"]
    x = part["x"]
    maps_lo = feature_saliency(net_lo.extractor, x)
    maps_hi = feature_saliency(net_hi.extractor, x)
    ink = x.numpy().min(1)  # both channels carry the ink; the background sits in one of them
    idx = least_correlated(maps_lo, maps_hi, k)
    fig, axes = plt.subplots(3, k, figsize=(1.6 * k, 5), dpi=80)
    for j, i in enumerate(idx):
        rgb = np.zeros((8, 8, 3))
        rgb[..., 0], rgb[..., 2] = x[i, 0].numpy(), x[i, 1].numpy()
        axes[0, j].imshow(np.clip(rgb, 0, 1))
        axes[0, j].set_title(f"y={int(part['y'][i])} p={int(part['p'][i])}", fontsize=7)
        axes[1, j].imshow(maps_lo[i], cmap="hot")
        axes[2, j].imshow(maps_hi[i], cmap="hot")
    axes[1, 0].set_ylabel("alpha = 0", fontsize=8)
    axes[2, 0].set_ylabel(f"alpha = {alpha_hi:.1f}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    share_lo = float(background_share(maps_lo, ink).mean())
    share_hi = float(background_share(maps_hi, ink).mean())
    fig.suptitle(f"saliency mass on background: {share_lo:.2f} (alpha 0) vs {share_hi:.2f} (alpha {alpha_hi:.1f})",
                 fontsize=7)
    fig.tight_layout()
    path = out / f"agnostic_digits_saliency{suffix}.png"  # the suffix keeps seed-range runs from overwriting it
    fig.savefig(path)
    plt.close(fig)
    print(f"saliency mass on background pixels (all decorrelated test images): alpha 0 {share_lo:.3f}, "
          f"alpha {alpha_hi:.1f} {share_hi:.3f}")
    return path


def parse_option(text: str) -> tuple[str, object]:
    """``key=value`` with the value read as int, float, true/false or text."""
    key, _, value = text.partition("=")
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, {"true": True, "false": False}.get(value.lower(), value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="digits", choices=("digits", "cps1985"))
    ap.add_argument("--alphas", default=",".join(f"{a / 10:.1f}" for a in range(11)))
    ap.add_argument("--seeds", type=_peers.int_at_least(0), default=10)
    ap.add_argument("--seed-start", type=int, default=0, help="first seed (seeds seed_start .. seed_start+seeds-1)")
    ap.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                    help="an entry option for every run, e.g. -o extractor_loss=reversal -o adv_steps=0")
    ap.add_argument("--merge", default=None, help="comma-separated runs CSVs of earlier invocations (e.g. other "
                    "seed ranges) to summarize together with this one; --seeds 0 only merges")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--num-samples", type=int, default=50)
    ap.add_argument("--saliency-alpha", type=float, default=None, help="alpha compared with alpha = 0 in the "
                    "saliency figure (default: the best alpha of the grid, see verdict)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "figures"),
                    help="folder for the runs CSV and the figures, created if missing; a runs CSV or figure of this "
                         "run that is already there is refused unless --overwrite is given (default: figures/ beside "
                         "this script)")
    ap.add_argument("--overwrite", action="store_true", help="replace this run's runs CSV and figures in --out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.option = dict(parse_option(o) for o in args.option)
    try:
        alphas = [round(float(a), 3) for a in args.alphas.split(",")]
    except ValueError:
        ap.error(f"--alphas: expected comma-separated numbers, got {args.alphas!r}")
    merge = _peers.check_files("--merge", args.merge.split(","), ap.error) if args.merge else []
    if not args.seeds and not merge:
        ap.error("--seeds: 0 only merges the runs CSVs given with --merge, and none were given")
    _peers.check_device("--device", args.device, ap.error)
    for a in alphas:  # every run's options and settings, before any run and before --out is created
        try:
            agnostic_entry().check_config(run_config(args.task, a, args.seed_start, args))
        except PyrozooError as exc:
            ap.error(f"{FLAGS.get(str(exc).split(':')[0], '-o/--option')}: {exc}")
    out = Path(args.out)
    suffix = f"_seeds{args.seed_start}-{args.seed_start + args.seeds - 1}" if args.seed_start or args.merge else ""
    # a seed-range run (--seed-start > 0) draws its own figure beside its own runs CSV, so the documented one-seed
    # loop into one folder overwrites nothing; a --merge run draws the unsuffixed figure of the merged rows
    grid_suffix = "" if args.merge else suffix
    writes = [out / f"agnostic_{args.task}_alpha_grid{grid_suffix}.png"]
    if args.seeds:
        writes.append(out / f"agnostic_{args.task}_runs{suffix}.csv")
    if args.seeds and args.task == "digits" and 0.0 in alphas and len(alphas) > 1:  # the saliency figure
        writes.append(out / f"agnostic_digits_saliency{suffix}.png")
    _peers.check_new_files("--out", writes, args.overwrite, ap.error)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        ap.error(f"--out: expected a folder that exists or can be created; {out}: {exc.strerror}")
    rows, keep = [], {}
    t0 = time.perf_counter()
    for seed in range(args.seed_start, args.seed_start + args.seeds):
        for a in alphas:
            metrics, data, net = run_one(args.task, a, seed, args)
            metrics["alpha"] = a
            rows.append(metrics)
            if seed == args.seed_start:
                keep[a] = (data, net)
            print(f"# alpha {a:.1f} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()
                                                                if k.endswith(("target_acc", "logreg_acc", "mlp_acc"))),
                  flush=True)
    print(f"\n{args.task}: {len(alphas)} alphas x {args.seeds} seeds, {args.steps} steps each, "
          f"{time.perf_counter() - t0:.0f} s total\n")
    if rows:
        with (out / f"agnostic_{args.task}_runs{suffix}.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=sorted({k for r in rows for k in r}))
            writer.writeheader()
            writer.writerows(rows)
    for path in merge:
        with path.open(newline="") as fh:
            rows += [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(fh)]
    seeds = sorted({int(r["seed"]) for r in rows})
    print(f"summary over {len(seeds)} seeds: {seeds}")
    stats = summarize(rows, args.task, alphas)
    best = verdict(stats, args.task)
    hi = args.saliency_alpha if args.saliency_alpha is not None else best
    title = f"agnostic classifier, {args.task}: mean ± sd over {len(seeds)} seeds ({args.steps} steps)"
    print(f"figure: {plot_grid(stats, args.task, out, title, grid_suffix)}")
    if args.task == "digits" and hi is not None and 0.0 in keep and hi in keep and hi != 0.0:
        print(f"figure: {plot_saliency(keep[0.0][0], keep[0.0][1], keep[hi][1], hi, out, suffix=suffix)}")


if __name__ == "__main__":
    main()
