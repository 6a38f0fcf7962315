"""Local backend: runs, resume after a kill, failure records, config conflicts."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from pyrozoo.cli import main
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.rundir import RUN_FILES
from pyrozoo.sweep.runner import cell_status, run_sweep
from pyrozoo.sweep.spec import load_spec


def _metrics(root, cell):
    return json.loads((root / cell.key / "metrics.json").read_text())


def test_sweep_runs_every_cell_and_a_rerun_skips_them(write_spec, sweep_text, tmp_path):
    spec = load_spec(write_spec(sweep_text()), out=tmp_path / "out")
    summary = run_sweep(spec, jobs=1)
    assert (summary.total, summary.skipped, summary.ok, summary.failed) == (4, 0, 4, 0)
    for cell in spec.cells:
        assert all((spec.out / cell.key / f).is_file() for f in RUN_FILES)
        m = _metrics(spec.out, cell)
        assert m["seed"] == cell.config["seed"] and m["inference"] == cell.config["inference"]
        # the run is a real fit: the posterior mean of mu is within 5 posterior sds of the exact one
        assert abs(m["mu_z_vs_exact"]) < 5
    manifest = json.loads((spec.out / "sweep.json").read_text())
    assert [c["key"] for c in manifest["cells"]] == [c.key for c in spec.cells]
    assert not (spec.out / ".sweep.lock").exists()
    stamps = {c.key: (spec.out / c.key / "idata.nc").stat().st_mtime_ns for c in spec.cells}
    again = run_sweep(spec, jobs=1)
    assert (again.skipped, again.ok, again.failed, again.outcomes) == (4, 0, 0, [])
    assert stamps == {c.key: (spec.out / c.key / "idata.nc").stat().st_mtime_ns for c in spec.cells}


def test_process_pool_gives_the_same_results_as_running_in_process(write_spec, sweep_text, tmp_path):
    path = write_spec(sweep_text())
    inline, pool = load_spec(path, out=tmp_path / "inline"), load_spec(path, out=tmp_path / "pool")
    assert run_sweep(inline, jobs=1).ok == 4
    summary = run_sweep(pool, jobs=2)
    assert (summary.ok, summary.failed) == (4, 0)
    for cell in inline.cells:
        a, b = _metrics(inline.out, cell), _metrics(pool.out, cell)
        a.pop("wall_time"), b.pop("wall_time")
        assert a == b


def test_failed_run_is_recorded_the_rest_finish_and_a_rerun_retries_only_it(write_spec, sweep_text, tmp_path):
    # sigma_true < 0 passes the grid's checks (option names and types) but the simulator rejects it at run time
    text = sweep_text(seeds="[0]", extra="""
        [models.grid.options]
        sigma_true = [-1.0, 2.0]
        """)
    spec = load_spec(write_spec(text), out=tmp_path / "out")
    summary = run_sweep(spec, jobs=1)
    assert (summary.ok, summary.failed) == (2, 1)
    (bad,) = [c for c in spec.cells if c.config["options"].get("sigma_true") == -1.0]
    marker = spec.out / (bad.key + ".failed")
    assert not (spec.out / bad.key).exists() and marker.is_dir()
    assert "sigma_true: expected a finite value > 0" in (marker / "error.txt").read_text()
    assert "Traceback" in (marker / "traceback.txt").read_text()
    assert (marker / "config.toml").is_file() and json.loads((marker / "failure.json").read_text())["key"] == bad.key
    assert cell_status(spec.out, bad) == "failed"
    again = run_sweep(spec, jobs=1)
    assert [o.key for o in again.outcomes] == [bad.key] and again.skipped == 2
    skipped = run_sweep(spec, jobs=1, retry_failed=False)
    assert skipped.outcomes == [] and skipped.failed_before == 1  # counted, so the CLI can say so and exit 1


def test_cli_counts_skipped_failures_and_limited_cells(write_spec, sweep_text, tmp_path, capsys):
    """--skip-failed must not look like a complete sweep (exit 1, named); --limit names what is left (exit 0)."""
    from pyrozoo.cli import main

    text = sweep_text(seeds="[0]", extra="""
        [models.grid.options]
        sigma_true = [-1.0, 2.0]
        """)
    path, out = write_spec(text), str(tmp_path / "out")
    assert main(["sweep", str(path), "--out", out, "--limit", "1", "-q"]) == 0
    assert "2 still pending (--limit)" in capsys.readouterr().out
    # what docs/sweeps.md tells a chunking script to test: --dry-run lists the cells still pending
    assert main(["sweep", str(path), "--out", out, "--dry-run"]) == 0
    assert sum(line.startswith("pending ") for line in capsys.readouterr().out.splitlines()) == 2
    assert main(["sweep", str(path), "--out", out, "-q"]) == 1  # the sigma_true = -1 cell fails
    capsys.readouterr()
    assert main(["sweep", str(path), "--out", out, "--skip-failed", "-q"]) == 1
    captured = capsys.readouterr()
    assert "1 failed earlier and skipped" in captured.out
    assert "skipped (failed earlier, --skip-failed): " in captured.err and "sigma_true=-1" in captured.err


def test_dry_run_refuses_what_a_run_would_refuse(write_spec, sweep_text, tmp_path, capsys):
    from pyrozoo.cli import main

    out = str(tmp_path / "out")
    assert main(["sweep", str(write_spec(sweep_text(seeds="[0]"))), "--out", out, "--limit", "1", "-q"]) == 0
    edited = sweep_text(seeds="[0]").replace('device = "cpu"', 'device = "cpu"\nnum_samples = 45')
    capsys.readouterr()
    assert main(["sweep", str(write_spec(edited, "edited.toml")), "--out", out, "--dry-run"]) == 2
    assert "holds runs made with other settings" in capsys.readouterr().err
    # the run's own arguments too: --address and --gpus-per-task need the ray backend, --jobs 0 is no pool
    for extra, message in ((["--address", "auto"], "address: only the ray backend"),
                           (["--gpus-per-task", "1"], "gpus_per_task: only the ray backend"),
                           (["--jobs", "0"], "jobs: "), (["--limit", "0"], "limit: ")):
        assert main(["sweep", str(write_spec(sweep_text(seeds="[0]"))), "--out", out, "--dry-run", *extra]) == 2
        assert message in capsys.readouterr().err, extra


def test_run_directories_follow_the_umask(write_spec, sweep_text, tmp_path):
    """mkdtemp's 0700 must not survive the rename: a run directory is as readable as mkdir would make it."""
    old = os.umask(0o022)
    try:
        spec = load_spec(write_spec(sweep_text(seeds="[0]")), out=tmp_path / "out")
        run_sweep(spec, jobs=1, limit=1)
    finally:
        os.umask(old)
    (run,) = [d for d in (spec.out).glob("*/*_seed0")]
    assert run.stat().st_mode & 0o777 == 0o755


def test_changed_settings_under_existing_runs_are_an_error_before_running(write_spec, sweep_text, tmp_path):
    out = tmp_path / "out"
    spec = load_spec(write_spec(sweep_text(seeds="[0]")), out=out)
    run_sweep(spec, jobs=1, limit=1)
    assert len(list(out.glob("*/*_seed0"))) == 1
    edited = sweep_text(seeds="[0]").replace('device = "cpu"', 'device = "cpu"\nnum_samples = 45')
    changed = load_spec(write_spec(edited), out=out)
    with pytest.raises(PyrozooError, match=r"holds runs made with other settings: ng-gibbs/gibbs_seed0 \(differs in "
                                           r"num_samples \(\d+ -> 45\)\)"):
        run_sweep(changed, jobs=1)
    assert len(list(out.glob("*/*_seed0"))) == 1  # nothing else ran


def test_killed_sweep_resumes_with_only_the_missing_runs(write_spec, sweep_text, tmp_path):
    """SIGKILL a sweep (in its own process) after its first completed run; the re-run does exactly the rest."""
    path = write_spec(sweep_text(seeds="[0, 1]"))
    out = tmp_path / "out"
    spec = load_spec(path, out=out)
    proc = subprocess.Popen([sys.executable, "-m", "pyrozoo.cli", "sweep", str(path), "--out", str(out), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any(cell_status(out, c) == "done" for c in spec.cells):
                break
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = {c.key for c in spec.cells if cell_status(out, c) == "done"}
    assert 1 <= len(done_before) < len(spec.cells), "the sweep should have been killed midway"
    stamps = {k: (out / k / "idata.nc").stat().st_mtime_ns for k in done_before}
    summary = run_sweep(spec, jobs=1)  # the killed process's stale lock is taken over
    assert summary.skipped == len(done_before)
    assert {o.key for o in summary.outcomes} == {c.key for c in spec.cells} - done_before
    assert all(o.status == "ok" for o in summary.outcomes)
    assert all(cell_status(out, c) == "done" for c in spec.cells)
    assert stamps == {k: (out / k / "idata.nc").stat().st_mtime_ns for k in done_before}
    assert not list(out.rglob("*.tmp")) and not (out / ".sweep.lock").exists()


def test_a_live_sweep_holds_the_output_directory(write_spec, sweep_text, tmp_path):
    spec = load_spec(write_spec(sweep_text(seeds="[0]")), out=tmp_path / "out")
    spec.out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (spec.out / ".sweep.lock").write_text(f"{sleeper.pid} host\n")
        with pytest.raises(PyrozooError, match=f"another sweep \\(pid {sleeper.pid}\\) is writing"):
            run_sweep(spec, jobs=1)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_interrupt_keeps_finished_runs_and_releases_the_lock(write_spec, sweep_text, tmp_path, capsys):
    spec = load_spec(write_spec(sweep_text(seeds="[0]")), out=tmp_path / "out")

    def stop(outcome, done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, jobs=1, on_done=stop)
    assert "1 of 2 pending runs finished and are kept" in capsys.readouterr().out
    assert [cell_status(spec.out, c) for c in spec.cells] == ["done", "pending"]
    assert not (spec.out / ".sweep.lock").exists()


def test_out_under_a_file_is_a_clear_error(write_spec, sweep_text, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    spec = load_spec(write_spec(sweep_text(seeds="[0]")), out=blocker / "sweep")
    with pytest.raises(PyrozooError, match="is not a directory"):
        run_sweep(spec, jobs=1)
    spec = load_spec(write_spec(sweep_text(seeds="[0]")), out=blocker)
    with pytest.raises(PyrozooError, match="exists and is not a directory"):
        run_sweep(spec, jobs=1)


def test_a_folder_that_no_sweep_wrote_is_refused_and_left_alone(write_spec, sweep_text, tmp_path, capsys):
    """A sweep cleans temporaries under its root, so it must not adopt someone else's folder; and the cleanup only
    touches the temporaries its own cells' runs leave (named after the cell), not other hidden *.tmp folders."""
    from pyrozoo.sweep.runner import clean_stale_temporaries

    other = tmp_path / "project"
    (other / ".build.tmp").mkdir(parents=True)
    (other / ".build.tmp" / "data.txt").write_text("important")
    path = write_spec(sweep_text(seeds="[0]"))
    spec = load_spec(path, out=other)
    with pytest.raises(PyrozooError, match="is not a sweep's output directory"):
        run_sweep(spec, jobs=1)
    assert main(["sweep", str(path), "--out", str(other), "--dry-run"]) == 2
    assert (other / ".build.tmp" / "data.txt").read_text() == "important"
    assert sorted(p.name for p in other.iterdir()) == [".build.tmp"]

    out = tmp_path / "out"
    spec = load_spec(path, out=out)
    cell = spec.cells[0]
    parent = (out / cell.key).parent
    (parent / f".{(out / cell.key).name}.abc123.tmp").mkdir(parents=True)  # what a killed run leaves
    (parent / ".pyrozoo-probe.x1y2z3").mkdir()  # check_out_dir's probe, when the run was killed while probing
    (parent / ".pyrozoo-probe.full").mkdir()  # not a probe: it holds a file
    (parent / ".pyrozoo-probe.full" / "data.txt").write_text("important")
    (out / "unrelated" / ".keep.tmp").mkdir(parents=True)
    (out / "unrelated" / ".pyrozoo-probe.abc").mkdir()  # not next to a cell's run directory
    assert clean_stale_temporaries(out, spec.cells) == 2
    assert (out / "unrelated" / ".keep.tmp").is_dir() and (out / "unrelated" / ".pyrozoo-probe.abc").is_dir()
    assert sorted(p.name for p in parent.iterdir()) == [".pyrozoo-probe.full"]


def test_runs_named_by_an_older_version_are_resumed_not_redone(write_spec, sweep_text, tmp_path, capsys):
    """Before float options were normalised, `mu_true = [1]` named its runs mu_true=1; a sweep that now writes 1.0
    (or 1) finds them under that name instead of re-running them beside it."""
    text = sweep_text(seeds="[0]").split("[[models]]")[0] + (
        '[[models]]\nname = "normal-gamma"\ninference = "gibbs"\n[models.grid.options]\nmu_true = [1.0, 2.0]\n')
    out = tmp_path / "out"
    first = load_spec(write_spec(text), out=out)
    assert run_sweep(first, jobs=1, limit=1).ok == 1
    new = out / "normal-gamma" / "gibbs_mu_true=1.0_seed0"
    old = out / "normal-gamma" / "gibbs_mu_true=1_seed0"
    new.rename(old)  # what the older version wrote for mu_true = [1, 2]
    stamp = (old / "idata.nc").stat().st_mtime_ns
    as_ints = write_spec(text.replace("[1.0, 2.0]", "[1, 2]"), "ints.toml")
    assert main(["sweep", str(as_ints), "--out", str(out), "--dry-run"]) == 0
    assert "done     normal-gamma/gibbs_mu_true=1_seed0" in capsys.readouterr().out
    again = load_spec(as_ints, out=out)
    summary = run_sweep(again, jobs=1)
    assert (summary.skipped, summary.ok) == (1, 1) and not new.exists()
    assert (old / "idata.nc").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in old.parent.iterdir()) == ["gibbs_mu_true=1_seed0", "gibbs_mu_true=2.0_seed0"]
    keys = [c["key"] for c in json.loads((out / "sweep.json").read_text())["cells"]]
    assert keys == ["normal-gamma/gibbs_mu_true=1_seed0", "normal-gamma/gibbs_mu_true=2.0_seed0"]



def test_interrupt_with_a_pool_starts_no_more_cells_and_stops_the_workers(write_spec, sweep_text, tmp_path,
                                                                           capsys):
    """Ctrl-C with --jobs 2: queued cells used to start after the interrupt and workers went on writing after the
    lock was released and the count was printed."""
    import multiprocessing

    spec = load_spec(write_spec(sweep_text(seeds="[0, 1, 2]")), out=tmp_path / "out")

    def stop(outcome, done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, jobs=2, on_done=stop)
    assert multiprocessing.active_children() == []  # the workers are gone before run_sweep returns
    assert not (spec.out / ".sweep.lock").exists()
    done = [c.key for c in spec.cells if cell_status(spec.out, c) == "done"]
    assert f"sweep interrupted: {len(done)} of 6 pending runs finished and are kept" in capsys.readouterr().out
    assert 1 <= len(done) <= 2 and set(done) <= {spec.cells[0].key, spec.cells[1].key}  # only the first two began
    time.sleep(1.0)
    assert [c.key for c in spec.cells if cell_status(spec.out, c) == "done"] == done  # nothing finishes later
    assert not [p for p in spec.out.rglob(".*") if p.name != "sweep.json"]  # no temporaries left behind



@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sigterm_during_a_sweep_is_an_interrupt_and_the_old_handler_comes_back(write_spec, sweep_text, tmp_path,
                                                                                 capsys, signame):
    """In-process (fast) half of the SIGTERM check: the signal (or SIGHUP, a closed terminal) raises Terminated, a
    KeyboardInterrupt, so the Ctrl-C cleanup runs; the handler that was installed before the sweep is back
    afterwards."""
    from pyrozoo.sweep.runner import Terminated

    if not hasattr(signal, signame):
        pytest.skip(f"no {signame} on this platform")
    signum = getattr(signal, signame)
    spec = load_spec(write_spec(sweep_text(seeds="[0]")), out=tmp_path / "out")

    def terminate(outcome, done, total):
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises in the main thread before this returns

    previous = signal.signal(signum, signal.SIG_IGN)
    try:
        with pytest.raises(Terminated) as info:
            run_sweep(spec, jobs=1, on_done=terminate)
        assert signal.getsignal(signum) is signal.SIG_IGN
    finally:
        signal.signal(signum, previous)
    assert isinstance(info.value, KeyboardInterrupt) and info.value.signum == signum
    assert "sweep terminated: 1 of 2 pending runs finished and are kept" in capsys.readouterr().out
    assert [cell_status(spec.out, c) for c in spec.cells] == ["done", "pending"]
    assert not (spec.out / ".sweep.lock").exists()


@pytest.mark.slow  # two process start-ups (driver, spawned workers): about 30 s each on two busy cores
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads the process tree from /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_signalled_pool_sweep_leaves_no_worker_behind(write_spec, sweep_text, tmp_path, signum, proc_tree):
    """SIGTERM to `pyrozoo sweep --jobs 2` once a cell is done: the driver exits (128 + 15) after stopping its
    workers, removing their temporaries and releasing the lock, like Ctrl-C. It used to die at once, leaving the
    workers orphaned (blocked forever, or finishing cells into OUT after the lock was gone). After SIGKILL, which
    allows no cleanup, the workers notice that their driver is gone and exit; the lock and any temporary are left
    for the next start to take over and remove."""
    path = write_spec(sweep_text(seeds="[0, 1, 2]"))
    out = tmp_path / "out"
    spec = load_spec(path, out=out)
    log, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(log, "w") as stdout, open(err, "w") as stderr:  # not pipes: orphaned workers would hold them open
        proc = subprocess.Popen([sys.executable, "-m", "pyrozoo.cli", "sweep", str(path), "--out", str(out), "-q",
                                 "--jobs", "2"], stdout=stdout, stderr=stderr)
    workers = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if any(cell_status(out, c) == "done" for c in spec.cells):
                break
            time.sleep(0.05)
        workers = proc_tree.descendants(proc.pid)
        assert proc.poll() is None and workers, "the sweep should still be running its workers"
        os.kill(proc.pid, signum)
        proc.wait(timeout=60)
        if signum == signal.SIGTERM:
            assert proc.returncode == 128 + signal.SIGTERM, err.read_text()
            assert "pyrozoo: terminated" in err.read_text() and "sweep terminated: " in log.read_text()
        deadline = time.monotonic() + 10  # the resource tracker leaves once the driver has gone
        while time.monotonic() < deadline and any(proc_tree.alive(p) for p in workers):
            time.sleep(0.1)
        assert not [p for p in workers if proc_tree.alive(p)], "worker processes outlived the driver"
        done = [c.key for c in spec.cells if cell_status(out, c) == "done"]
        assert 1 <= len(done) < len(spec.cells)
        if signum == signal.SIGTERM:
            assert not (out / ".sweep.lock").exists()
            assert not [p for p in out.rglob(".*")]  # no temporaries left behind
        time.sleep(1.0)
        assert [c.key for c in spec.cells if cell_status(out, c) == "done"] == done  # nothing finishes later
    finally:
        for pid in [proc.pid, *workers]:
            if proc_tree.alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


def test_a_damaged_config_in_a_run_directory_is_a_clear_error(write_spec, sweep_text, tmp_path, capsys):
    path, out = write_spec(sweep_text(seeds="[0]")), tmp_path / "out"
    spec = load_spec(path, out=out)
    run_sweep(spec, jobs=1, limit=1)
    (out / spec.cells[0].key / "config.toml").write_text("model = [\n")
    for extra in (["--dry-run"], ["-q"]):
        assert main(["sweep", str(path), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("pyrozoo: error: out: ") and "\n" not in err
        assert f"{spec.cells[0].key} (its config.toml is unreadable" in err
    assert cell_status(out, spec.cells[1]) == "pending"  # nothing ran



def test_a_damaged_metrics_file_or_an_incomplete_run_directory_is_a_clear_error(write_spec, sweep_text, tmp_path,
                                                                                 capsys):
    """A damaged metrics.json counted as done (never run again) while report listed it as unreadable (never
    summarized); a run directory missing files was said to hold runs made with other settings."""
    import shutil

    path, out = write_spec(sweep_text(seeds="[0]")), tmp_path / "out"
    spec = load_spec(path, out=out)
    run_sweep(spec, jobs=1, limit=1)
    done, other = spec.cells
    (out / done.key / "metrics.json").write_text('{"mu_mean": \n')
    shutil.copytree(out / done.key, out / other.key)
    for name in ("metrics.json", "params.pt"):
        (out / other.key / name).unlink()
    for extra in (["--dry-run"], ["-q"]):
        assert main(["sweep", str(path), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"pyrozoo: error: out: {out} holds run directories that cannot be resumed: ")
        assert f"{done.key} (its metrics.json is unreadable: " in err and "\n" not in err
        assert f"{other.key} (incomplete: no metrics.json or params.pt)" in err and "other settings" not in err
        assert err.endswith("Delete them to have their cells run again")
    for cell in spec.cells:  # as the error says: deleted, they run again
        shutil.rmtree(out / cell.key)
    assert main(["sweep", str(path), "--out", str(out), "-q"]) == 0
    assert [cell_status(out, c) for c in spec.cells] == ["done", "done"] and _metrics(out, done)["seed"] == 0


def test_gpus_per_task_is_for_the_ray_backend_only(write_spec, sweep_text, tmp_path, capsys):
    path, out = write_spec(sweep_text(seeds="[0]")), tmp_path / "out"
    with pytest.raises(PyrozooError, match="gpus_per_task: only the ray backend"):
        run_sweep(load_spec(path, out=out), jobs=1, gpus_per_task=0.5)
    assert main(["sweep", str(path), "--out", str(out), "--gpus-per-task", "1"]) == 2
    assert "drop --gpus-per-task or use --backend ray" in capsys.readouterr().err and not out.exists()


def test_a_failed_cells_line_shows_the_first_line_of_its_error(write_spec, sweep_text, tmp_path, capsys,
                                                               monkeypatch):
    """The per-cell line printed the whole error (a torch argument check dumps whole tensors); it shows the first
    line, and the cell's error.txt keeps the full text."""
    import pyrozoo.sweep.runner as runner

    def fail(cell, out):
        raise ValueError("first line\ntensor([[0., 0.],\n        [0., 0.]])")

    monkeypatch.setattr(runner, "_fit", fail)
    path, out = write_spec(sweep_text(seeds="[0]")), tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(")", 1)[1] for line in lines if " failed " in line] == ["  ValueError: first line"] * 2
    assert "tensor" not in "\n".join(lines)
    (marker,) = list(out.glob("ng-gibbs/*.failed"))
    assert (marker / "error.txt").read_text().strip().endswith("[0., 0.]])")


def test_workers_take_an_explicit_omp_num_threads_and_a_value_that_is_not_a_count_is_refused(monkeypatch):
    """Results are bitwise the same only for the same number of torch threads: a pool worker used cores // jobs
    even with OMP_NUM_THREADS set, while --jobs 1 and `pyrozoo run` (torch's default) follow the variable, so a gp
    cell differed between --jobs 1 and --jobs 2. Now a set OMP_NUM_THREADS is every worker's count; unset or
    empty, cores // jobs; a value that is not a positive integer is refused before anything runs."""
    from pyrozoo.sweep.local import threads_per_worker
    from pyrozoo.sweep.runner import check_run_options

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads_per_worker(2) == max(1, cores // 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    assert threads_per_worker(2) == max(1, cores // 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_per_worker(2) == threads_per_worker(8) == 3
    for bad in ("0", "two", "-1", "2,,1"):
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        assert check_run_options(backend="local", jobs=1) == (1, None)  # in this process torch reads it itself
        with pytest.raises(PyrozooError, match=rf"OMP_NUM_THREADS: expected a positive integer .*got '{bad}'"):
            check_run_options(backend="local", jobs=2)


def test_runs_written_by_another_pyrozoo_version_are_kept_with_a_warning(write_spec, sweep_text, tmp_path):
    """0.2.0 changed the units of standardized-response log-likelihoods: a sweep resumed over runs of an older
    version mixed the two silently. metrics.json now records the version; other versions' runs are kept (not
    redone) with a warning naming them, and runs of this version resume silently."""
    import warnings

    import pyrozoo

    spec = load_spec(write_spec(sweep_text()), out=tmp_path / "out")
    run_sweep(spec, jobs=1)
    first = spec.cells[0]
    assert _metrics(spec.out, first)["pyrozoo_version"] == pyrozoo.__version__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run_sweep(spec, jobs=1).skipped == len(spec.cells)
    m = _metrics(spec.out, first)
    del m["pyrozoo_version"]  # as written before 0.2.0
    (spec.out / first.key / "metrics.json").write_text(json.dumps(m))
    with pytest.warns(UserWarning, match=rf"holds runs written by another pyrozoo version than this one "
                                         rf"\({pyrozoo.__version__}\): {first.key} \(before 0\.2\.0\); they are kept"):
        again = run_sweep(spec, jobs=1)
    assert again.skipped == len(spec.cells)


def test_openmp_list_form_of_omp_num_threads_gives_its_first_entry(monkeypatch):
    """OMP_NUM_THREADS="2,1" (OpenMP's threads per nesting level; torch takes the first) was refused as not a
    positive integer, so `pyrozoo sweep --jobs 2` failed where `pyrozoo run` used 2 threads. The first entry is now
    each worker's count; lists with an empty, zero or non-numeric entry are still refused."""
    from pyrozoo.sweep.local import explicit_threads, threads_per_worker
    from pyrozoo.sweep.runner import check_run_options

    for text, count in (("2,1", 2), (" 3 , 1 ", 3), ("1,2,2", 1), ("4", 4)):
        monkeypatch.setenv("OMP_NUM_THREADS", text)
        assert explicit_threads() == threads_per_worker(2) == count
        check_run_options(backend="local", jobs=2)
    for bad in ("2,0", "1,2,", ",2", "2;1", "1,x", "\u00b2"):  # "²" is a digit to str.isdigit, not to int()
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        with pytest.raises(PyrozooError, match=r"OMP_NUM_THREADS: expected a positive integer or a comma-separated "
                                               rf"list of them .*got '{bad}'"):
            check_run_options(backend="local", jobs=2)


@pytest.mark.slow
def test_torch_reads_the_openmp_list_form_as_its_first_entry():
    """What explicit_threads assumes: OpenMP's own parsing, in a fresh process (a torch import: slow-marked)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1,2"}
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                         capture_output=True, text=True, check=True, timeout=120)
    assert int(out.stdout) == 1


def test_another_sweeps_output_directory_is_refused_before_anything_runs(write_spec, tmp_path, capsys):
    """A second, different sweep ran into an earlier sweep's --out: its sweep.json replaced the earlier one's and a
    report then listed every earlier run as stale. Another name is refused by the run and the dry run alike, naming
    the way out; the same sweep grown by a seed still resumes; the same name with no cell in common (an edited
    sweep, or two files called sweep.toml sharing the default name) warns and runs."""
    def sweep(name, seeds, file):
        return write_spec(f'[sweep]\nname = "{name}"\nseeds = {seeds}\ntiny = true\n[defaults]\ndevice = "cpu"\n'
                          f'[[models]]\nname = "normal-gamma"\ninference = "gibbs"\n', file)

    out = tmp_path / "out"
    first = load_spec(sweep("qa", "[0]", "s.toml"), out=out)
    assert run_sweep(first, jobs=1).ok == 1
    manifest = (out / "sweep.json").read_text()
    for path, message in [
        (sweep("other", "[0, 5]", "f.toml"), r"holds sweep 'qa' \(from .*s.toml; 1 cell, 1 of them run or failed\), "
                                             r"and this is sweep 'other'; running this sweep there would replace its "
                                             r"sweep.json\. Use another --out "
                                             r"\(or \[sweep\].out\), or name this sweep 'qa' if it is that sweep "
                                             r"renamed"),
    ]:
        with pytest.raises(PyrozooError, match=message):
            run_sweep(load_spec(path, out=out), jobs=1)
        assert main(["sweep", str(path), "--out", str(out), "--dry-run"]) == 2
        assert capsys.readouterr().err.startswith(f"pyrozoo: error: out: {out} holds sweep 'qa'")
        assert (out / "sweep.json").read_text() == manifest and not (out / "normal-gamma" / "gibbs_seed5").exists()
    grown = run_sweep(load_spec(sweep("qa", "[0, 1]", "h.toml"), out=out), jobs=1)
    assert (grown.skipped, grown.ok) == (1, 1)
    # the same name with every seed replaced (an edited sweep, or another file of that name): a warning, then it runs
    # (it was refused, though cutting seeds leaves runs stale just the same)
    replaced = sweep("qa", "[5]", "g.toml")
    assert main(["sweep", str(replaced), "--out", str(out), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"pyrozoo: warning: out: .* and none of its cells is a cell of .*g.toml; running .* leave 2 of "
                     r"its runs stale in reports\. If it is another sweep that shares the name", err)
    assert not (out / "normal-gamma" / "gibbs_seed5").exists()
    with pytest.warns(UserWarning, match="none of its cells"):
        assert run_sweep(load_spec(replaced, out=out), jobs=1).ok == 1


def test_runs_recorded_before_the_log_likelihood_setting_resume_as_done(write_spec, sweep_text, tmp_path):
    """A run directory written before `log_likelihood` existed has no such key in its config.toml; it reads as the
    default (true), so the sweep resumes (the rerun refused it: "differs in log_likelihood")."""
    out = tmp_path / "out"
    spec = load_spec(write_spec(sweep_text(seeds="[0]")), out=out)
    run_sweep(spec, jobs=1, limit=1)
    (run,) = list(out.glob("*/*_seed0"))
    config = run / "config.toml"
    text = config.read_text()
    assert "log_likelihood = true" in text
    config.write_text("".join(line for line in text.splitlines(keepends=True)
                              if not line.startswith("log_likelihood")))
    before = (run / "metrics.json").stat().st_mtime_ns
    run_sweep(load_spec(write_spec(sweep_text(seeds="[0]")), out=out), jobs=1)  # raised before the fix
    assert (run / "metrics.json").stat().st_mtime_ns == before  # counted as done, not rerun


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_the_netcdf_writer_swallows_stops_the_sweep_before_its_next_cell(write_spec, sweep_text, tmp_path,
                                                                                 monkeypatch, capsys, signame):
    """QA: Ctrl-C or SIGTERM landing while a cell's idata.nc was written was dropped by h5py (the KeyboardInterrupt,
    or the sweep handler's Terminated, raised in one of its weakref callbacks is "ignored"): `pyrozoo sweep --jobs 1`
    finished that cell, started the next ones and exited 0. The writer here gets the signal mid-write and drops what
    the handler raises, as h5py does: the signal now comes after the write and before the rename, so no further cell
    starts, the cell is not saved, the exit status is 130 / 143 with the short message, and no temporary is left."""
    import arviz as az

    signum = getattr(signal, signame)
    real, writes = az.InferenceData.to_netcdf, []

    def write(self, *args, **kwargs):
        writes.append(args)
        try:
            signal.raise_signal(signum)
        except KeyboardInterrupt:  # dropped, as h5py does in a weakref callback
            pass
        return real(self, *args, **kwargs)

    monkeypatch.setattr(az.InferenceData, "to_netcdf", write)
    out = tmp_path / "out"
    spec = write_spec(sweep_text(seeds="[0]").replace('inference = "nuts"', 'inference = "gibbs"'))
    assert main(["sweep", str(spec), "--out", str(out), "--jobs", "1"]) == 128 + signum
    captured = capsys.readouterr()
    how = "interrupted" if signame == "SIGINT" else "terminated"
    assert f"sweep {how}: 0 of 2 pending runs finished" in captured.out and "[1/2]" not in captured.out
    assert len(writes) == 1  # the second cell never started
    assert [cell_status(out, c) for c in load_spec(spec, out=out).cells] == ["pending", "pending"]
    # no run, no temporary, no lock: the manifest and the label's folder (made as the cell began), empty
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["ng-gibbs", "sweep.json"]


def test_dry_run_refuses_an_out_that_a_run_could_not_create(write_spec, sweep_text, tmp_path, capsys):
    """QA: `pyrozoo sweep sw.toml --out /sys/x --dry-run` listed the cells "in /sys/x" and exited 0, while the
    sweep itself refused that --out ("out: cannot create /sys/x under /sys"). The dry run now checks the output
    root as the run does (here under a file, which needs no /sys), and creates nothing."""
    spec = str(write_spec(sweep_text(seeds="[0]")))
    blocker = tmp_path / "file"
    blocker.write_text("")
    for out in (blocker / "x", blocker):
        assert main(["sweep", spec, "--out", str(out), "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("pyrozoo: error: out: ") and "cells in" not in err, err
        assert main(["sweep", spec, "--out", str(out)]) == 2
        assert capsys.readouterr().err.startswith("pyrozoo: error: out: ")
    if os.path.isdir("/sys/kernel"):  # sysfs (Linux): root passes os.access there, the creation probe fails
        assert main(["sweep", spec, "--out", "/sys/pyrozoo-dry-run", "--dry-run"]) == 2
        assert "out: " in capsys.readouterr().err and not os.path.exists("/sys/pyrozoo-dry-run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "sweep.toml"]


def test_a_closed_stdout_neither_stops_the_sweep_nor_hides_its_failures(write_spec, sweep_text, tmp_path):
    """`pyrozoo sweep FILE | head -1`: the per-cell line after the reader has gone used to raise BrokenPipeError
    out of the sweep, which stopped it after one cell, and the CLI turned that into exit status 0. Now every cell
    runs (the rest of the output goes to os.devnull) and the exit status is the sweep's own: 1 for a failed cell."""
    extra = """
        [[models]]
        name = "normal-gamma"
        label = "ng-bad"
        inference = "gibbs"
        options = { sigma_true = -1.0 }
        """
    path = write_spec(sweep_text(seeds="[0, 1]", extra=extra))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "pyrozoo", "sweep", str(path), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout.readline().startswith(b"[1/6] ")
    proc.stdout.close()  # the reader goes away, as `head -1` does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err.decode()
    assert b"Traceback" not in err and b"BrokenPipeError" not in err
    spec = load_spec(path, out=out)
    assert [cell_status(out, c) for c in spec.cells] == ["done"] * 4 + ["failed"] * 2
    assert not (out / ".sweep.lock").exists()


def test_dry_run_refuses_cuda_on_a_machine_without_it_as_the_run_does(write_spec, sweep_text, tmp_path, capsys,
                                                                      monkeypatch):
    """The local backend's run refuses a CUDA cell on a machine without CUDA before anything runs; the dry run used
    to list its cells as pending and exit 0."""
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    path = write_spec(sweep_text(seeds="[0]").replace('device = "cpu"', 'device = "cuda"'))
    out = tmp_path / "out"
    for extra in (["--dry-run"], []):
        assert main(["sweep", str(path), "--out", str(out), "-q", *extra]) == 2
        assert "device: 'cuda' was asked for but CUDA is not available" in capsys.readouterr().err
        assert not out.exists()


_LOCK_RACE = '''
import multiprocessing, subprocess, sys
from pathlib import Path
from pyrozoo.errors import PyrozooError
from pyrozoo.sweep.runner import LOCK, acquire_lock

root, trials, workers = Path(sys.argv[1]), int(sys.argv[2]), 4
gone = subprocess.Popen([sys.executable, "-c", ""])
gone.wait()  # a pid no process has any more: a killed sweep's


def work(i, barrier, took):
    for _ in range(trials):
        barrier.wait()  # the lock file is laid out: all try at once
        try:
            lock = acquire_lock(root)
        except PyrozooError:
            lock = None
        took[i] = lock is not None
        barrier.wait()  # all have tried, the holder still holds it
        if lock is not None:
            lock.release()
        barrier.wait()


if __name__ == "__main__":
    ctx = multiprocessing.get_context("fork")
    barrier, took = ctx.Barrier(workers + 1, timeout=30), ctx.Array("b", workers)
    procs = [ctx.Process(target=work, args=(i, barrier, took)) for i in range(workers)]
    for p in procs:
        p.start()
    wrong = []
    for t in range(trials):
        lock = root / LOCK
        if t % 3 == 0:
            lock.unlink(missing_ok=True)  # no lock: two sweeps start at the same moment
        else:  # a killed sweep's lock, with its pid or (killed before it wrote it) empty
            lock.write_text(f"{gone.pid} host\\n" if t % 3 == 1 else "")
        barrier.wait()
        barrier.wait()
        if sum(took) != 1:
            wrong.append(f"trial {t}: {sum(took)} holders")
        barrier.wait()
        if lock.exists():
            wrong.append(f"trial {t}: the lock is left after its release")
    for p in procs:
        p.join()
    print(wrong)
'''


def test_of_sweeps_that_start_at_the_same_moment_exactly_one_takes_the_lock(tmp_path):
    """The lock was created empty and its pid written afterwards, so a second sweep reading it in between took it
    as stale, removed the winner's lock and made its own; two sweeps taking over one stale lock both removed it.
    Both then ran into one output directory. Four processes race for the lock from a barrier, with no lock file, a
    dead process's and an empty one: each time exactly one holds it, and its release removes it."""
    script = tmp_path / "race.py"
    script.write_text(_LOCK_RACE)
    root = tmp_path / "out"
    root.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(script), str(root), "150"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_cells_another_sweep_finished_while_this_one_waited_for_the_lock_are_not_run_again(write_spec, sweep_text,
                                                                                           tmp_path, monkeypatch):
    """The cells to run were worked out before the lock was taken (with the Ray backend, ray.init lies between):
    a cell that the sweep holding the lock finished meanwhile was run a second time. The statuses are read again
    once the lock is held."""
    from pyrozoo.sweep import runner

    spec = load_spec(write_spec(sweep_text(seeds="[0]")), out=tmp_path / "out")
    first = spec.cells[0]
    take = runner.acquire_lock

    def after_another_sweep(root):
        runner.execute_cell(first, root)  # the other sweep's last cell, done just before it let the lock go
        return take(root)

    monkeypatch.setattr(runner, "acquire_lock", after_another_sweep)
    summary = run_sweep(spec, jobs=1)
    assert [o.key for o in summary.outcomes] == [c.key for c in spec.cells[1:]]
    assert summary.skipped == 1 and summary.pending == 0
    assert all(cell_status(spec.out, c) == "done" for c in spec.cells)


def test_a_sweep_file_with_its_axes_in_another_order_finds_its_runs(write_spec, sweep_text, tmp_path, capsys):
    """The run directory's name lists the axes in declared order, so swapping two axis lines gave every cell a new
    name: the finished runs were redone beside the old ones (with a warning that none of the recorded cells was a
    cell of the file). A directory named with the same AXIS=VALUE parts in another order is now that cell's."""
    import warnings

    head = sweep_text(seeds="[0]").split("[[models]]")[0] + '[[models]]\nname = "normal-gamma"\ninference = "gibbs"\n'
    first = write_spec(head + "[models.grid.options]\nn = [20, 40]\nmu_true = [0.0, 1.0]\n")
    swapped = write_spec(head + "[models.grid.options]\nmu_true = [0, 1]\nn = [20, 40]\n", "swapped.toml")
    out = tmp_path / "out"
    assert run_sweep(load_spec(first, out=out), jobs=1, limit=3).ok == 3
    ran = sorted(p.name for p in (out / "normal-gamma").iterdir())
    assert ran[0] == "gibbs_n=20_mu_true=0.0_seed0"
    stamps = {name: (out / "normal-gamma" / name / "idata.nc").stat().st_mtime_ns for name in ran}
    capsys.readouterr()
    assert main(["sweep", str(swapped), "--out", str(out), "--dry-run"]) == 0
    listed = capsys.readouterr()
    assert sorted(line.split()[1] for line in listed.out.splitlines() if line.startswith("done")) == \
        [f"normal-gamma/{name}" for name in ran]
    assert listed.out.count("pending  ") == 1 and listed.err == ""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "none of its cells is a cell of" warning
        summary = run_sweep(load_spec(swapped, out=out), jobs=1)
    assert (summary.skipped, summary.ok) == (3, 1)
    assert [o.key for o in summary.outcomes] == ["normal-gamma/gibbs_mu_true=1.0_n=40_seed0"]
    assert {name: (out / "normal-gamma" / name / "idata.nc").stat().st_mtime_ns for name in ran} == stamps
    assert len(list((out / "normal-gamma").iterdir())) == 4
    # a reordered run made with other settings is refused as any changed run is, not reused or redone
    changed = write_spec(head.replace('device = "cpu"', 'device = "cpu"\nnum_samples = 45')
                         + "[models.grid.options]\nmu_true = [0, 1]\nn = [20, 40]\n", "changed.toml")
    with pytest.raises(PyrozooError, match="holds runs made with other settings: normal-gamma/gibbs_n=20_mu_true"):
        run_sweep(load_spec(changed, out=out), jobs=1)


def test_a_reordered_key_is_told_apart_by_its_parts_even_with_underscores_in_names_and_values():
    from pyrozoo.sweep.runner import _is_reordering, _split_key

    names = ["dataset", "mu_true", "n"]
    split = _split_key("lbl/nuts_dataset=my_file.csv_mu_true=1.0_n=20_seed7", names)
    assert split == ("nuts", ["dataset=my_file.csv", "mu_true=1.0", "n=20"], "seed7")
    assert _is_reordering("nuts_n=20_dataset=my_file.csv_mu_true=1.0_seed7", *split)
    assert _is_reordering("nuts_mu_true=1.0_n=20_dataset=my_file.csv_seed7", *split)
    assert not _is_reordering("nuts_n=20_dataset=my_file.csv_mu_true=1.0_seed70", *split)
    assert not _is_reordering("nuts_n=2_dataset=my_file.csv_mu_true=1.00_seed7", *split)  # same letters
    assert not _is_reordering("svi_n=20_dataset=my_file.csv_mu_true=1.0_seed7", *split)
    assert _split_key("lbl/nuts_n=20_dataset=x_mu_true=1.0_seed7", names) is None  # another order than the names


def test_a_reordered_sweep_that_finished_the_cells_while_this_one_waited_for_the_lock_is_not_rerun(
        write_spec, sweep_text, tmp_path, monkeypatch):
    """Runs under a reordering of a cell's name were looked for once, before the lock: a sweep of the same cells
    with its axes declared in another order, finishing while this one waited for the lock, had its runs redone
    beside its own (two run directories per cell). They are looked for again once the lock is held."""
    from pyrozoo.sweep import runner

    head = sweep_text(seeds="[0]").split("[[models]]")[0] + '[[models]]\nname = "normal-gamma"\ninference = "gibbs"\n'
    spec = load_spec(write_spec(head + "[models.grid.options]\nn = [20, 40]\nmu_true = [0.0]\n"),
                     out=tmp_path / "out")
    other = load_spec(write_spec(head + "[models.grid.options]\nmu_true = [0.0]\nn = [20, 40]\n", "other.toml"),
                      out=tmp_path / "out")
    take = runner.acquire_lock
    calls = []

    def after_the_reordered_sweep(root):
        if not calls:
            calls.append(root)
            assert run_sweep(other, jobs=1).ok == 2  # it held the lock until now
        return take(root)

    monkeypatch.setattr(runner, "acquire_lock", after_the_reordered_sweep)
    summary = run_sweep(spec, jobs=1)
    assert summary.outcomes == [] and summary.skipped == 2
    assert sorted(p.name for p in (tmp_path / "out" / "normal-gamma").iterdir()) == \
        ["gibbs_mu_true=0.0_n=20_seed0", "gibbs_mu_true=0.0_n=40_seed0"]


def test_changed_model_options_are_named_with_both_values_once_per_kind_of_change(write_spec, tmp_path):
    """A rerun with a changed fixed model option said only "differs in options" for each run: the options table
    counted as one setting. Now each option is named with the run's value and the cell's (one left out reads as the
    model's default), and the runs that differ the same way are said once, with their count; past five kinds of
    change the rest are counted."""
    def text(ns: list[int], extra: str = "") -> str:
        blocks = "".join(f'[[models]]\nname = "normal-gamma"\nlabel = "b{i}"\ninference = "gibbs"\n'
                         f"options = {{ n = {n}{extra} }}\n" for i, n in enumerate(ns))
        return f'[sweep]\nname = "opts"\nseeds = [0, 1]\ntiny = true\n[defaults]\ndevice = "cpu"\n{blocks}'

    out = tmp_path / "out"
    first = [40, 50, 60, 70, 80, 90, 100]
    assert run_sweep(load_spec(write_spec(text(first)), out=out), jobs=1).ok == 14
    with pytest.raises(PyrozooError) as info:
        run_sweep(load_spec(write_spec(text([41, *first[1:]]), "one.toml"), out=out), jobs=1)
    assert str(info.value) == (f"out: {out} holds runs made with other settings: b0/gibbs_seed0, b0/gibbs_seed1 "
                               f"(2 runs; differ in options.n (40 -> 41)). Use another --out or delete those run "
                               f"directories")
    with pytest.raises(PyrozooError) as info:
        run_sweep(load_spec(write_spec(text([n + 1 for n in first], ", mu0 = 0.5"), "all.toml"), out=out), jobs=1)
    message = str(info.value)
    assert "b0/gibbs_seed0, b0/gibbs_seed1 (2 runs; differ in options.mu0 (0.0 -> 0.5), options.n (40 -> 41)); "\
           "b1/gibbs_seed0, b1/gibbs_seed1 (2 runs; differ in options.mu0 (0.0 -> 0.5), options.n (50 -> 51)); " \
           in message
    assert "b4/gibbs_seed0" in message and "b5/" not in message
    assert message.endswith("(80 -> 81)); and 4 more runs that differ otherwise. Use another --out or delete those "
                            "run directories")
    assert len(list(out.glob("*/*_seed*"))) == 14  # nothing else ran


@pytest.mark.parametrize("model, inference, n, same, changed, differs", [
    # QA: a sweep file that wrote out options at their defaults (em_variant = "emvs", mu0 = 0.0) was refused as
    # "runs made with other settings ... options.mu0 (not set -> 0.0)" against runs that had left them out, though
    # the runs are the same (as run settings at their default, and run_svi's checkpoint rule, already had it)
    ("normal-gamma", "gibbs", 30, ", mu0 = 0.0, a = 1", ", mu0 = 0.5", r"options\.mu0 \(0\.0 -> 0\.5\)"),
    # A review: effect-curve's interactions = true (which the model reads as "linear", its default) was refused as
    # "options.interactions ('linear' -> True)"; options are now compared in the entry's canonical spelling
    # (ModelEntry.canonical_options)
    ("effect-curve", "em", 80, ", interactions = true", ", interactions = false",
     r"options\.interactions \('linear' -> 'none'\)"),
])
def test_an_option_at_its_default_or_in_another_spelling_resumes_the_runs_that_left_it_out(
        write_spec, tmp_path, model, inference, n, same, changed, differs):
    """Options written out at their default, or in another spelling of the same value, are the runs that left them
    out; another value still differs."""
    def text(extra: str = "") -> str:
        return ('[sweep]\nname = "defaults"\nseeds = [0]\ntiny = true\n[defaults]\ndevice = "cpu"\n'
                f'[[models]]\nname = "{model}"\ninference = "{inference}"\noptions = {{ n = {n}{extra} }}\n')

    out = tmp_path / "out"
    assert run_sweep(load_spec(write_spec(text()), out=out), jobs=1).ok == 1
    again = run_sweep(load_spec(write_spec(text(same), "written.toml"), out=out), jobs=1)
    assert again.outcomes == [] and again.skipped == 1
    with pytest.raises(PyrozooError, match=rf"differs in {differs}"):
        run_sweep(load_spec(write_spec(text(changed), "changed.toml"), out=out), jobs=1)


def test_a_run_config_with_a_byte_order_mark_resumes_as_done(write_spec, tmp_path):
    """A cell's config.toml saved again by an editor that writes a UTF-8 byte-order mark: `run --config` of it
    worked, but sweep resume read it with raw tomllib and refused the run as 'its config.toml is unreadable'. It
    is read as every TOML file is (pyrozoo.config.parse_toml_bytes) and counted as done."""
    import codecs

    text = ('[sweep]\nname = "bom"\nseeds = [0]\ntiny = true\n[defaults]\ndevice = "cpu"\n'
            '[[models]]\nname = "normal-gamma"\ninference = "gibbs"\n')
    out = tmp_path / "out"
    assert run_sweep(load_spec(write_spec(text), out=out), jobs=1).ok == 1
    (config,) = list(out.glob("*/*/config.toml"))
    config.write_bytes(codecs.BOM_UTF8 + config.read_bytes())
    before = (config.parent / "metrics.json").stat().st_mtime_ns
    again = run_sweep(load_spec(write_spec(text), out=out), jobs=1)
    assert again.outcomes == [] and again.skipped == 1
    assert (config.parent / "metrics.json").stat().st_mtime_ns == before


def test_versions_in_metrics_json_are_neither_metrics_nor_settings_and_old_runs_resume(write_spec, sweep_text,
                                                                                      tmp_path):
    """metrics.json records torch_version, numpy_version, python_version and pyro_version. A resumed sweep over
    runs written before (without them) keeps them silently, neither refused nor rerun; the report neither counts
    the versions as metrics nor splits groups by them, even where two runs' torch versions differ."""
    import warnings

    import torch

    from pyrozoo.sweep.report import collect_runs, group_columns, metric_columns, varying_settings

    keys = ("torch_version", "numpy_version", "python_version", "pyro_version")
    spec = load_spec(write_spec(sweep_text()), out=tmp_path / "out")
    run_sweep(spec, jobs=1)
    first, second = spec.cells[:2]
    assert _metrics(spec.out, first)["torch_version"] == str(torch.__version__)
    m = _metrics(spec.out, first)
    for key in keys:
        del m[key]  # as written before they were recorded
    (spec.out / first.key / "metrics.json").write_text(json.dumps(m))
    m = _metrics(spec.out, second)
    m["torch_version"] = "0.0.0+other"  # a run from another machine
    (spec.out / second.key / "metrics.json").write_text(json.dumps(m))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = run_sweep(spec, jobs=1)
    assert again.skipped == len(spec.cells) and again.ok == 0
    table = collect_runs(spec.out)
    assert not set(keys) & set(table.columns)
    assert not set(keys) & set(metric_columns(table))
    assert not set(keys) & set(varying_settings(table) + group_columns(table))


def test_a_sweep_resumed_over_runs_of_0_2_0_names_what_0_3_0_changed(write_spec, sweep_text, tmp_path):
    """0.3.0 changed recorded numbers (SWAG's covariance, plce scenario runs' treatment model, ...) without a version
    bump at first, so a sweep resumed over runs of the older code mixed the two estimators in one report row with no
    warning. The version is now 0.3.0, and the warning for older runs names what each version changed."""
    import pyrozoo

    assert pyrozoo.__version__ == "0.3.0" and set(pyrozoo.NUMBER_CHANGES) == {"0.2.0", "0.3.0"}
    spec = load_spec(write_spec(sweep_text()), out=tmp_path / "out")
    run_sweep(spec, jobs=1)
    first = spec.cells[0]
    m = _metrics(spec.out, first)
    m["pyrozoo_version"] = "0.2.0"
    (spec.out / first.key / "metrics.json").write_text(json.dumps(m))
    with pytest.warns(UserWarning, match=rf"{first.key} \(0\.2\.0\); they are kept, not rerun, and their numbers may "
                                         rf"differ from this version's \(0\.3\.0: SWAG's covariance") as caught:
        assert run_sweep(spec, jobs=1).skipped == len(spec.cells)
    # only the versions after the run's own: a 0.2.0 run already has 0.2.0's change
    assert not any("0.2.0: the log-likelihood" in str(w.message) for w in caught)
    del m["pyrozoo_version"]  # before 0.2.0: both versions' changes
    (spec.out / first.key / "metrics.json").write_text(json.dumps(m))
    with pytest.warns(UserWarning, match=r"\(0\.2\.0: the log-likelihood .*; 0\.3\.0: SWAG's covariance"):
        run_sweep(spec, jobs=1)
