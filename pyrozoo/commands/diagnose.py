"""``pyrozoo diagnose RUN_DIR``: ArviZ summary, convergence warnings, trace and posterior plots."""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

from pyrozoo.errors import PyrozooError

MAX_ROWS = 60  # a per-observation latent (regime-scm's regime_probs) has a row per observation and component


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diagnose", help="summarize a saved run and plot its traces")
    p.add_argument("run_dir", help="a directory written by `pyrozoo run`")
    p.add_argument("--var", action="append", default=None, help="variables to include (repeatable)")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    p.add_argument("--max-rows", type=int, default=MAX_ROWS,
                   help=f"rows of the summary table to print (default {MAX_ROWS}; 0: all)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import pandas as pd

    from pyrozoo.evaluation.diagnostics import (
        BFMI_MIN,
        TREEDEPTH_SHARE_MAX,
        check_table,
        convergence_judged,
        ess_threshold,
        is_markov_chain,
        report_lines,
        summary,
    )
    from pyrozoo.inference.rundir import load_run
    from pyrozoo.validation import expand_home

    if args.max_rows < 0:
        raise PyrozooError(f"--max-rows: expected a number of rows >= 0 (0: all), got {args.max_rows}")
    args.run_dir = expand_home("run", args.run_dir, what="a run directory")  # the plots go there too
    run = load_run(args.run_dir)
    idata = run["idata"]
    if "posterior" not in idata.groups():  # an idata.nc that pyrozoo did not write, or one edited since
        have = ", ".join(idata.groups()) or "none"
        raise PyrozooError(f"run: {Path(args.run_dir) / 'idata.nc'} has no posterior group (it has: {have}); "
                           f"there is nothing to diagnose: rerun the run or restore the file")
    chains, draws = idata.posterior.sizes.get("chain", 1), idata.posterior.sizes.get("draw", 1)
    one_draw = draws < 2  # one draw per chain: no trace, no within-chain spread, whatever the number of chains
    if args.plots and not one_draw:  # before the table is printed, not a traceback after it
        _check_plots_folder(Path(args.run_dir) / "plots")
    with warnings.catch_warnings():
        if one_draw:  # numpy's "degrees of freedom <= 0" from sd/ESS of a single value; said in words below
            warnings.simplefilter("ignore", RuntimeWarning)
        if args.max_rows == 0:  # the whole table printed: the checks read it
            shown = table = summary(idata, var_names=args.var)
        else:  # az.summary, a loop over the components (78 s for a default-size regime-scm run's 220,251), of the
            # printed rows only; the checks read check_table's columns (mean, sd; ESS, r_hat where judged) of every row
            shown = summary(idata, var_names=args.var, max_rows=args.max_rows)
            table = check_table(idata, var_names=args.var, convergence=convergence_judged(idata))
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(shown.to_string(float_format=lambda v: f"{v:.4g}"))
    if len(shown) < len(table):
        print(f"note: the first {len(shown)} of {len(table):,} rows; --max-rows 0 prints all, --var NAME picks "
              f"variables (the warnings below cover every row)")
    where = ("in the summary table above" if len(shown) == len(table)
             else "in the whole table: --max-rows 0 prints it")
    notes, lines = report_lines(idata, table, where=where)
    for line in notes:
        print(f"note: {line}")
    for line in lines:
        print(f"warning: {line}")
    if one_draw:  # no trace to plot, no convergence to clear
        return 0
    independent = not is_markov_chain(idata)
    if not lines and not independent:
        stats = getattr(idata, "sample_stats", None)  # a Gibbs kernel without log_joint writes no sample_stats
        bfmi = f", E-BFMI >= {BFMI_MIN}" if stats is not None and "energy" in stats else ""
        depth = (f", at most {TREEDEPTH_SHARE_MAX:.0%} of transitions at the maximum tree depth"
                 if stats is not None and "reached_max_treedepth" in stats else "")
        rhat = ", r_hat <= 1.01" if chains > 1 else ""
        print(f"no convergence warnings (no divergences or stuck chains{bfmi}{depth}{rhat}, bulk and tail ESS >= "
              f"{ess_threshold(chains)}, i.e. 100 per chain)")
    return _plots(idata, args)


def _check_plots_folder(folder: Path) -> None:
    """Raise if the plots cannot be written into ``folder`` (``RUN/plots``): it is not a directory, or it (or, while
    it does not exist, the run directory that would hold it) is not writable, a read-only file system included."""
    hint = "; pass --no-plots to skip the plots"
    if folder.is_symlink() and not folder.exists():  # exists() follows the link: False for a dangling one or a loop
        raise PyrozooError(f"run: cannot write the plots: {folder} is a broken symbolic link (to "
                           f"{os.readlink(folder)!r}, which does not exist or leads back to itself){hint}")
    if folder.exists() and not folder.is_dir():
        raise PyrozooError(f"run: cannot write the plots: {folder} exists and is not a directory{hint}")
    writable = folder if folder.is_dir() else folder.parent
    if not os.access(writable, os.W_OK | os.X_OK):
        raise PyrozooError(f"run: cannot write the plots into {folder}: {writable} is not writable{hint}")


def _plots(idata, args: argparse.Namespace) -> int:
    from pyrozoo.evaluation.diagnostics import save_plots

    if args.plots:
        folder = Path(args.run_dir) / "plots"
        try:
            paths, notes = save_plots(idata, folder, var_names=args.var)
        except OSError as exc:  # checked up front; a disk that fills meanwhile is one line too
            raise PyrozooError(f"run: cannot write the plots into {folder} ({exc.strerror or exc}); pass "
                               f"--no-plots to skip the plots") from None
        for note in notes:
            print(f"note: {note}")
        for path in paths:
            print(f"plot: {path}")
    return 0
