"""``pyrozoo report RUNS_DIR``: one table of config + metrics across runs, grouped means and SEs, plots."""

from __future__ import annotations

import argparse


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="tabulate and plot the runs below a directory (e.g. a sweep's output)")
    p.add_argument("runs_dir", help="directory holding run directories (searched recursively)")
    p.add_argument("--out", default=None, help="where to write the report (default RUNS_DIR/report)")
    p.add_argument("--by", action="append", default=None, metavar="COLUMN",
                   help="group by this column (repeatable; default: model, label and every varying setting)")
    p.add_argument("--metric", action="append", default=None, help="only this metric (repeatable)")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="tables only")
    p.set_defaults(handler=handle)


SHOWN = 12  # runs listed by name as not converged; runs.csv has them all


def _metric_of(column: str) -> str:
    """The metric a summary column is about (``mu_mean_se`` -> ``mu_mean``; one suffix only)."""
    return next((column.removesuffix(s) for s in ("_mean", "_se", "_n") if column.endswith(s)), column)


def handle(args: argparse.Namespace) -> int:
    from pyrozoo.sweep.report import FLAG_COLUMNS, UNKNOWN, build_report, convergence_flags, to_markdown

    report = build_report(args.runs_dir, out=args.out, by=args.by, metrics=args.metric, plots=args.plots)
    runs = report.runs
    counts = runs["status"].value_counts().to_dict()
    # finished runs whose chains `pyrozoo run`/`diagnose` warned about: still ok (finished), flagged, kept in the means
    not_converged, not_judged = convergence_flags(runs)
    live = runs["status"] == "ok"
    flagged = runs[live & not_converged]
    unjudged = int((live & not_judged).sum())
    extra = [f"{len(flagged)} not converged"] if len(flagged) else []
    extra += [f"{unjudged} not judged for convergence"] if unjudged else []
    print(f"{len(runs)} run{'s' if len(runs) != 1 else ''}: " + ", ".join(
        f"{n} {s}" + (f" ({', '.join(extra)})" if s == "ok" and extra else "") for s, n in sorted(counts.items())))
    if not report.summary.empty:  # per model, its own first metrics (models of one sweep report different ones)
        summary = report.summary
        cols = list(summary.columns)
        after = cols.index("n") + 1 + sum(c in cols for c in FLAG_COLUMNS)  # n's flag counts stay beside it
        keys, metrics = cols[:after], cols[after:]
        parts = summary.groupby("model", sort=False) if "model" in summary.columns else [(None, summary)]
        for model, part in parts:
            own = [m for m in metrics if part[m].notna().any()]
            # settings only other models have are blank in every row of this model's table: leave them out
            own_keys = [k for k in keys if k in ("model", "n") or part[k].notna().any()]
            print(to_markdown(part[own_keys + own[:8]]))
            rest = list(dict.fromkeys(_metric_of(c) for c in own[8:]))
            if rest:
                print(f"(more in summary.md{f' for {model}' if model else ''}: {', '.join(rest[:4])}"
                      f"{f' and {len(rest) - 4} more' if len(rest) > 4 else ''}; --metric NAME picks what is shown)")
    stale = int((report.runs["status"] == "stale").sum())
    if stale:
        print(f"note: {stale} run directories are not cells of the sweep any more (sweep.json); they are listed in "
              f"runs.csv as stale and left out of the summary")
    failed = report.runs[report.runs["status"].isin(["failed", "unreadable"])]
    for row in failed.itertuples(index=False):
        print(f"{row.status}: {row.run}: {getattr(row, 'error', '')}")
    for row in flagged.head(SHOWN).itertuples(index=False):  # none without a convergence column (no Markov runs)
        print(f"warning: {row.run}: {row.convergence}")
    if len(flagged) > SHOWN:
        print(f"warning: ... and {len(flagged) - SHOWN} more not converged (runs.csv's convergence column)")
    if len(flagged):
        print(f"note: {len(flagged)} finished run{'s' if len(flagged) > 1 else ''} did not converge by the checks "
              f"of `pyrozoo run` (`pyrozoo diagnose RUN_DIR` lists the warnings); they are kept in the summary's "
              f"means, and its not_converged column counts them per group")
    if unjudged:  # "unknown": no figures recorded; "not judged (...)": figures saying why there was nothing to judge
        unknown = int((live & (runs["convergence"] == UNKNOWN)).sum())
        short = unjudged - unknown
        if unknown:
            print(f"note: {unknown} Markov-chain run{'s' if unknown > 1 else ''} recorded no convergence figures "
                  f"(written by an older pyrozoo); `pyrozoo diagnose RUN_DIR` checks one")
        if short:
            print(f"note: {short} Markov-chain run{'s' if short > 1 else ''} had nothing to judge convergence on "
                  f"(too few draws, or every component fixed by the engine: runs.csv's convergence column says "
                  f"which)")
    for path in report.files:
        print(f"wrote {path}")
    return 0
