"""``pyrozoo sweep SWEEP.toml``: run a grid of zoo runs on a local process pool or on Ray, resuming where it stopped."""

from __future__ import annotations

import argparse
import sys


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a TOML grid of runs (local pool or Ray); re-running resumes")
    p.add_argument("spec", help="sweep file (see docs/sweeps.md and examples/sweep.toml)")
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="local process pool or Ray")
    p.add_argument("--jobs", "-j", type=int, default=1,
                   help="local worker processes (default 1); with more, each uses cores // jobs torch threads, or "
                        "OMP_NUM_THREADS when set")
    p.add_argument("--address", default=None,
                   help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: start a local instance)")
    p.add_argument("--gpus-per-task", type=float, default=None,
                   help="GPUs per Ray task for CUDA cells (default 1; ray backend only)")
    p.add_argument("--out", default=None,
                   help="output root (default: [sweep].out or runs/sweeps/NAME; a relative one is relative to the "
                        "current directory)")
    p.add_argument("--limit", type=int, default=None, help="run at most this many missing cells, then stop")
    p.add_argument("--skip-failed", dest="retry_failed", action="store_false",
                   help="do not retry cells that failed before")
    p.add_argument("--dry-run", action="store_true", help="list the cells and their status; run nothing")
    p.add_argument("--quiet", "-q", action="store_true", help="no line per finished cell")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from pyrozoo.inference.rundir import check_out_dir
    from pyrozoo.sweep.runner import (
        adopt_earlier_keys,
        cell_status,
        check_devices,
        check_resumable,
        check_run_options,
        check_sweep_root,
        run_sweep,
    )
    from pyrozoo.sweep.spec import load_spec

    spec = load_spec(args.spec, out=args.out)
    if args.dry_run:  # what a real run would refuse, the dry run refuses too
        check_run_options(backend=args.backend, jobs=args.jobs, address=args.address,
                          gpus_per_task=args.gpus_per_task, limit=args.limit)
        check_out_dir(spec.out, resume=True)  # a directory, or creatable there (creates nothing)
        spec.cells = adopt_earlier_keys(spec.out, spec.cells)
        check_sweep_root(spec.out, spec)
        check_resumable(spec.out, spec.cells)
        check_devices(spec.cells, backend=args.backend)  # CUDA asked for on a machine without it
        for cell in spec.cells:
            print(f"{cell_status(spec.out, cell):8s} {cell.key}")
        print(f"{len(spec.cells)} cells in {spec.out}")
        return 0

    def on_done(outcome, done, total):
        if args.quiet:
            return
        # the first line only (a torch error can run to pages of tensor dump); the whole text is in KEY.failed/
        tail = f"  {(outcome.error.strip().splitlines() or [''])[0]}" if outcome.error else ""
        print(f"[{done}/{total}] {outcome.status:6s} {outcome.key} ({outcome.wall_time:.1f} s){tail}", flush=True)

    summary = run_sweep(spec, backend=args.backend, jobs=args.jobs, address=args.address,
                        gpus_per_task=args.gpus_per_task, retry_failed=args.retry_failed, limit=args.limit,
                        on_done=on_done)
    left = [f"{summary.failed_before} failed earlier and skipped"] if summary.failed_before else []
    left += [f"{summary.pending} still pending (--limit)"] if summary.pending else []
    print(f"sweep {spec.name}: {summary.total} cells, {summary.skipped} already done, {summary.ok} ran ok, "
          f"{summary.failed} failed{''.join(', ' + x for x in left)}, {summary.wall_time:.1f} s; runs in "
          f"{summary.out}")
    if summary.skipped_failures:
        print(f"skipped (failed earlier, --skip-failed): {', '.join(summary.skipped_failures)}", file=sys.stderr)
    if summary.failed or summary.failed_before:
        print(f"failed runs are recorded in {summary.out}/**/*.failed/ (error.txt, traceback.txt); "
              f"re-run the sweep to retry them", file=sys.stderr)
        return 1
    return 0
