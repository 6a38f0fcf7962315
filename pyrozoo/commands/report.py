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


def _metric_of(column: str) -> str:
    """The metric a summary column is about (``mu_mean_se`` -> ``mu_mean``; one suffix only)."""
    return next((column.removesuffix(s) for s in ("_mean", "_se", "_n") if column.endswith(s)), column)


def handle(args: argparse.Namespace) -> int:
    from pyrozoo.sweep.report import build_report, to_markdown

    report = build_report(args.runs_dir, out=args.out, by=args.by, metrics=args.metric, plots=args.plots)
    counts = report.runs["status"].value_counts().to_dict()
    print(f"{len(report.runs)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    if not report.summary.empty:  # per model, its own first metrics (models of one sweep report different ones)
        summary = report.summary
        cols = list(summary.columns)
        keys, metrics = cols[: cols.index("n") + 1], cols[cols.index("n") + 1:]
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
    for path in report.files:
        print(f"wrote {path}")
    return 0
