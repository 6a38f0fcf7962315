"""``pyrozoo active``: batch active learning with a zoo posterior, one or more acquisitions, several seeds.

    pyrozoo active --model blr --dataset boston --acquisition acs-fw --batch-size 10 --budget 100 --seeds 10

Writes ``config.toml`` (the settings), ``results.csv`` (one row per round), ``selections.csv`` (the dataset rows
labelled: one per point, round 0 the initial set), ``summary.csv`` (final RMSE or accuracy,
and NLL, with standard errors, in the order the acquisitions were named) and ``learning_curves.png`` into ``--out``
(default ``runs/active/MODEL-DATASET-TIMESTAMP``), all at once when the run is complete, and prints the summary.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pyrozoo.errors import PyrozooError

MAX_SEEDS = 100_000  # as a sweep's cells (pyrozoo/sweep/spec.py MAX_CELLS): split larger experiments


class _DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Shows real defaults only: no "(default: None)" for optional values, no "(default: True)" for a --no-* flag."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def add_command(sub: argparse._SubParsersAction) -> None:
    from pyrozoo.active.loop import ACQUISITIONS, ACTIVE_MODELS, DATASETS

    p = sub.add_parser("active", help="batch active learning (ACS-FW, BALD, MaxEnt, random) over a zoo posterior",
                       formatter_class=_DefaultsShown)
    p.add_argument("--model", default="blr", help=f"posterior model: {', '.join(ACTIVE_MODELS)}")
    p.add_argument("--dataset", default="boston", help=f"pool and test data: {', '.join(DATASETS)}")
    p.add_argument("--acquisition", default="acs-fw",
                   help=f"comma-separated, or 'all' (those the model supports): {', '.join(ACQUISITIONS)}")
    p.add_argument("--batch-size", type=int, default=10, help="points acquired per round (b)")
    p.add_argument("--budget", type=int, default=100, help="labels acquired after the initial set")
    p.add_argument("--init-size", type=int, default=20, help="initial labelled points")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (split and initial set), 0..N-1")
    p.add_argument("--num-projections", type=int, default=None,
                   help="J for acs-fw-projection (default 100, capped at a sample-based posterior's stored draws; "
                        "at most what fits the memory budget, see docs/active-learning.md)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="held-out share of the data")
    # default cpu, not auto: pools of a few hundred rows are launch-bound on a GPU; on an H100 every model ran
    # slower than on 2 CPU cores (benchmarks/RESULTS.md, "On an NVIDIA H100")
    p.add_argument("--device", default="cpu", help="cpu (faster at these pool sizes) | auto | cuda | cuda:N")
    p.add_argument("--out", help="output directory (default runs/active/MODEL-DATASET-TIMESTAMP)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from pyrozoo.active.loop import applicable_acquisitions, plot_learning_curves, run_experiment, summarize
    from pyrozoo.validation import check_int

    # 'all': every acquisition this model's posterior supports (no closed-form ACS-FW variant it lacks)
    acqs = (list(applicable_acquisitions(args.model)) if args.acquisition == "all"
            else [a.strip() for a in args.acquisition.split(",")])
    seeds = check_int("seeds", args.seeds, minimum=1)
    if seeds > MAX_SEEDS:  # each seed is a whole experiment; a huge N would first build its list of seeds for ever
        raise PyrozooError(f"seeds: expected a number of seeds in [1, {MAX_SEEDS:,}] (seeds 0..N-1), got {seeds}")
    out = _check_out(args)
    results, selections = run_experiment(args.dataset, acqs, range(seeds), model=args.model,
                                         init_size=args.init_size, batch_size=args.batch_size, budget=args.budget,
                                         num_projections=args.num_projections, test_fraction=args.test_fraction,
                                         device=args.device, progress=args.progress, return_selections=True)
    metric = "accuracy" if "accuracy" in results.columns else "rmse"
    table = summarize(results, metric).merge(summarize(results, "nll")[["acquisition", "nll", "se"]],
                                             on="acquisition", suffixes=(f"_{metric}", "_nll"))
    table = table.set_index("acquisition").loc[acqs].reset_index()  # in the order asked for
    settings = {"model": args.model, "dataset": args.dataset, "acquisitions": acqs, "seeds": seeds,
                "init_size": args.init_size, "batch_size": args.batch_size, "budget": args.budget,
                "test_fraction": args.test_fraction, "device": args.device,
                **({"num_projections": args.num_projections} if args.num_projections is not None else {})}

    def write(tmp: Path) -> None:
        import tomli_w

        (tmp / "config.toml").write_text(tomli_w.dumps(settings))
        results.to_csv(tmp / "results.csv", index=False)
        selections.to_csv(tmp / "selections.csv", index=False)
        table.to_csv(tmp / "summary.csv", index=False)
        plot_learning_curves(results, tmp / "learning_curves.png", metric)

    out = _publish(out, write, numbered=args.out is None)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for note in sorted(set(results["note"]) - {""}):
        print(f"note: {note}")
    print(f"saved to {out}")
    return 0


def _check_out(args: argparse.Namespace) -> Path:
    """``--out`` checked before any fit (an empty directory may be reused, also ``.`` or a link to one); the default
    is ``runs/active/MODEL-DATASET-TIMESTAMP``."""
    from pyrozoo.inference.rundir import check_out_dir

    if args.out is None:
        return check_out_dir(Path("runs/active") / f"{args.model}-{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}",
                             resume=True)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise PyrozooError(f"out: expected a directory, got the file {out}; choose another --out")
    if out.exists() and any(out.iterdir()):
        raise PyrozooError(f"out: {out} exists and is not empty; choose another --out")
    if out.exists():  # `.`, a link or a mount point cannot be renamed onto: files go into the real directory
        out = out.resolve()
    return check_out_dir(out, resume=out.is_dir())


def _publish(out: Path, write, *, numbered: bool) -> Path:
    """Write the files into a hidden sibling, then publish them only when all are there, so an interrupted run
    leaves nothing half-written: a new ``out`` is the sibling renamed; an existing empty directory receives the
    files. A default name already taken (another run in the same second) gets ``-2``, ``-3`` ... instead of being
    written over. Once the files are complete they are never deleted: if publishing fails, the error says where
    they are."""
    import os
    import shutil

    from pyrozoo.inference.rundir import temp_sibling

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out)
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    base = out.name
    try:
        for k in range(2, 1000):
            if out.is_dir() and not any(out.iterdir()):  # an empty directory: move the files in
                for f in sorted(tmp.iterdir(), key=lambda f: f.name == "summary.csv"):  # the summary last
                    os.replace(f, out / f.name)
                tmp.rmdir()
                return out
            if not out.exists():
                os.rename(tmp, out)
                return out
            if not numbered:
                raise FileExistsError(f"{out} was filled by something else during the run")
            out = out.with_name(f"{base}-{k}")
        raise FileExistsError(f"no free name like {base}-N")
    except OSError as exc:
        raise PyrozooError(f"out: cannot publish the results as {out} ({exc.strerror or exc}); they are complete in "
                           f"{tmp}") from None
