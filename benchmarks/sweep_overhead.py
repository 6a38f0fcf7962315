"""Sweep wall time with 1 vs 2 local workers, and the Ray backend's overhead per task.

    python benchmarks/sweep_overhead.py                  # 16-run sweep, 3 repetitions, Ray overhead over 12 tasks
    python benchmarks/sweep_overhead.py --reps 1 --no-ray
    python benchmarks/sweep_overhead.py --backends "" --tasks 8       # only the Ray per-task overhead

Part 1 runs the same 16-cell sweep (normal-gamma by NUTS, 2 sequential chains of ``--num-samples`` draws after
half as many warmup steps, n in {20, 100} x 8 seeds: about 3 CPU-seconds a cell) into a fresh directory with
``--jobs 1`` (in process), ``--jobs 2`` (spawned pool) and, unless ``--no-ray``, the Ray backend on a local 2-CPU
instance started beforehand; it prints the median wall time of each, the speed-up and the CPU time used.

Part 2 measures what Ray adds to one cell: with a 1-CPU local instance and warm workers, each cell is submitted
alone and waited for; overhead = (submit -> files written by the driver) - (the cell's own run time inside the
task). Also the round trip of an empty task and ``ray.init`` itself. Medians over ``--tasks`` cells, and the 90th
percentile of the overhead (``numpy.percentile``, linear interpolation between order statistics).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import _peers
import numpy as np
import torch

from pyrozoo.sweep.runner import execute_cell, run_sweep, store_payload
from pyrozoo.sweep.spec import parse_spec


def sweep_spec(out: Path, inference: str, num_samples: int, seeds: int = 8):
    """normal-gamma, ``inference`` (2 chains of NUTS or 4 of Gibbs), n in {20, 100} x ``seeds`` seeds."""
    chains = 4 if inference == "gibbs" else 2
    return parse_spec({
        "sweep": {"name": "bench", "seeds": seeds},
        "defaults": {"device": "cpu", "num_chains": chains, "num_samples": num_samples,
                     "warmup_steps": num_samples // 2},
        "models": [{"name": "normal-gamma", "inference": inference, "grid": {"options": {"n": [20, 100]}}}],
    }, out=out)


def _cpu() -> float:
    """CPU seconds of this process and its finished children (pool workers; not Ray's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def time_sweep(backend: str, jobs: int, inference: str, num_samples: int, reps: int) -> tuple[list[float], list[float]]:
    times, cpus = [], []
    for _ in range(reps):
        tmp = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
        try:
            spec = sweep_spec(tmp / "runs", inference, num_samples)
            t0, c0 = time.perf_counter(), _cpu()
            summary = run_sweep(spec, backend=backend, jobs=jobs)
            times.append(time.perf_counter() - t0)
            cpus.append(_cpu() - c0)
            assert summary.ok == len(spec.cells) == 16, summary
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return times, cpus


def ray_overhead(num_samples: int, tasks: int) -> dict[str, float]:
    import ray

    from pyrozoo.sweep.ray_backend import _ray_cell

    t0 = time.perf_counter()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    init_s = time.perf_counter() - t0

    @ray.remote(num_cpus=1)
    def noop() -> None:
        return None

    remote = ray.remote(num_cpus=1, max_retries=0)(_ray_cell)
    tmp = Path(tempfile.mkdtemp(prefix="sweep-bench-ray-"))
    try:
        spec = sweep_spec(tmp / "runs", "gibbs", num_samples, seeds=max(1, (tasks + 1) // 2))
        cells = spec.cells[:tasks]
        t0 = time.perf_counter()
        ray.get(remote.remote(cells[0]))  # warm-up: the worker imports torch, pyro and pyrozoo once
        first_s = time.perf_counter() - t0
        noop_s = []
        for _ in range(20):
            t0 = time.perf_counter()
            ray.get(noop.remote())
            noop_s.append(time.perf_counter() - t0)
        overhead, inside, inline = [], [], []
        for cell in cells:
            t0 = time.perf_counter()
            payload = ray.get(remote.remote(cell))
            store_payload(spec.out, cell, payload)
            overhead.append(time.perf_counter() - t0 - payload["wall_time"])
            inside.append(payload["wall_time"])
            t0 = time.perf_counter()  # the same cell in this process, for scale
            execute_cell(cell, tmp / "inline")
            inline.append(time.perf_counter() - t0)
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    return overhead_stats(init_s, first_s, noop_s, overhead, inside, inline)


def overhead_stats(init_s: float, first_s: float, noop_s: list[float], overhead: list[float], inside: list[float],
                   inline: list[float]) -> dict[str, float]:
    """Part 2's table from its measurements (seconds): medians, and the overhead's 90th percentile by
    ``numpy.percentile`` (linear interpolation: q_0.9 = x_(k) + f (x_(k+1) - x_(k)), k + f = 0.9 (n - 1))."""
    return {"ray.init (s)": init_s, "first task incl. worker imports (s)": first_s,
            "empty task round trip (ms)": 1e3 * statistics.median(noop_s),
            "overhead per cell task (ms)": 1e3 * statistics.median(overhead),
            "overhead 90th percentile (ms)": 1e3 * float(np.percentile(overhead, 90)),
            "cell run time inside the task (ms)": 1e3 * statistics.median(inside),
            "same cell in process (ms)": 1e3 * statistics.median(inline)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=_peers.int_at_least(1), default=3,
                        help="repetitions of each 16-run sweep (median reported)")
    parser.add_argument("--inference", default="nuts", choices=("nuts", "gibbs"), help="engine of the 16-run sweep")
    parser.add_argument("--num-samples", type=int, default=200, help="draws per chain in the 16-run sweep's cells "
                        "(warmup: half as many)")
    parser.add_argument("--tasks", type=int, default=12, help="cells for the per-task Ray overhead")
    parser.add_argument("--task-samples", type=int, default=1000, help="Gibbs draws per chain in those cells")
    parser.add_argument("--no-ray", dest="ray", action="store_false", help="skip the Ray measurements")
    parser.add_argument("--backends", default="jobs1,jobs2,ray",
                        help="comma list of jobs1, jobs2, ray for part 1 (empty: skip part 1)")
    parser.add_argument("--no-overhead", dest="overhead", action="store_false", help="skip part 2")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# {platform.node()}: {torch.get_num_threads()} torch thread(s) in the driver, python "
          f"{platform.python_version()}, torch {torch.__version__}")
    load0 = f"{os.getloadavg()[0]:.1f}"
    backends = [b for b in args.backends.split(",") if b]
    if not args.ray:
        backends = [b for b in backends if b != "ray"]
    rows = []
    for b in backends:
        if b == "jobs1":
            rows.append(("local, --jobs 1 (in process)",
                         time_sweep("local", 1, args.inference, args.num_samples, args.reps)))
        elif b == "jobs2":
            rows.append(("local, --jobs 2 (process pool)",
                         time_sweep("local", 2, args.inference, args.num_samples, args.reps)))
        elif b == "ray":
            import ray

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
            try:  # the instance is started before timing; the sweep reuses it (startup is reported in part 2)
                times = time_sweep("ray", 1, args.inference, args.num_samples, args.reps)
                rows.append(("ray, local instance, 2 CPUs", times))
            finally:
                ray.shutdown()
        else:
            parser.error(f"--backends: unknown {b!r}")
    base = next((statistics.median(t) for name, (t, _) in rows if "--jobs 1" in name), float("nan"))
    if rows:
        chains = 4 if args.inference == "gibbs" else 2
        print(f"\n16-run sweep (normal-gamma {args.inference}, {chains} chains x ({args.num_samples} + "
              f"{args.num_samples // 2} warmup), n in 20/100 x 8 seeds), {args.reps} rep(s)")
        print(f"load average (1 min) before: {load0}, after: {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores")
        print("| backend | median wall (s) | all (s) | speed-up vs --jobs 1 | CPU s, driver + pool (median) |")
        print("|---|---|---|---|---|")
        for name, (times, cpus) in rows:
            med = statistics.median(times)
            cpu = "n/a (Ray's workers)" if name.startswith("ray") else f"{statistics.median(cpus):.1f}"
            print(f"| {name} | {med:.1f} | {', '.join(f'{t:.1f}' for t in times)} | {base / med:.2f}x | {cpu} |")
    if args.ray and args.overhead:
        stats = ray_overhead(args.task_samples, args.tasks)
        print(f"\nRay overhead per task (1-CPU local instance, warm worker, {args.tasks} Gibbs cells of 4 x "
              f"{args.task_samples} draws, one at a time)")
        print("| quantity | value |\n|---|---|")
        for k, v in stats.items():
            print(f"| {k} | {v:.1f} |" if v >= 10 else f"| {k} | {v:.2f} |")


if __name__ == "__main__":
    main()
