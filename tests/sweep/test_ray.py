"""Ray backend: same metrics as the local pool for the same seeds; clear errors for bad addresses and resources;
stop signals and interrupts with Ray: the sweep's own handler, cancelled tasks' temporaries removed."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pyrozoo.cli import main
from pyrozoo.errors import PyrozooError
from pyrozoo.sweep.ray_backend import RaySession, connect, probe_address
from pyrozoo.sweep.runner import (
    CELL_TEMP,
    Terminated,
    cell_status,
    cell_temp_prefix,
    remove_orphaned_temporaries,
    remove_session_temporaries,
    run_sweep,
)
from pyrozoo.sweep.spec import Cell, load_spec


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metrics_by_key(root, spec):
    out = {}
    for cell in spec.cells:
        m = json.loads((root / cell.key / "metrics.json").read_text())
        m.pop("wall_time")
        out[cell.key] = m
    return out


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_and_local_backends_give_the_same_metrics(local_ray, write_spec, sweep_text, tmp_path):
    """2 models x 2 seeds on a local Ray instance (2 CPUs) and on the local backend: identical results. (The local
    process pool is checked against the in-process path in test_local.py.)"""
    path = write_spec(sweep_text())
    on_ray = load_spec(path, out=tmp_path / "ray")
    on_pool = load_spec(path, out=tmp_path / "local")
    ray_summary = run_sweep(on_ray, backend="ray")
    pool_summary = run_sweep(on_pool, backend="local", jobs=1)
    assert (ray_summary.ok, ray_summary.failed) == (4, 0) and (pool_summary.ok, pool_summary.failed) == (4, 0)
    ray_metrics, pool_metrics = _metrics_by_key(on_ray.out, on_ray), _metrics_by_key(on_pool.out, on_pool)
    assert ray_metrics == pool_metrics
    seeds = {m["seed"] for m in ray_metrics.values()}
    assert seeds == {0, 1}
    # different seeds give different draws (the comparison above is not trivially true)
    assert ray_metrics["ng-gibbs/gibbs_seed0"]["mu_mean"] != ray_metrics["ng-gibbs/gibbs_seed1"]["mu_mean"]
    for cell in on_ray.cells:  # the driver wrote the same files as the pool's workers did
        assert sorted(p.name for p in (on_ray.out / cell.key).iterdir()) == sorted(
            p.name for p in (on_pool.out / cell.key).iterdir())
    # a failing cell on Ray is recorded like on the pool, and a re-run retries only it
    text = sweep_text(seeds="[0]", extra="[models.grid.options]\nsigma_true = [-1.0, 2.0]\n")
    spec = load_spec(write_spec(text, name="fail.toml"), out=tmp_path / "ray-fail")
    summary = run_sweep(spec, backend="ray")
    assert (summary.ok, summary.failed) == (2, 1)
    (failed,) = [o for o in summary.outcomes if o.status == "failed"]
    assert "sigma_true" in (spec.out / (failed.key + ".failed") / "error.txt").read_text()
    assert [o.key for o in run_sweep(spec, backend="ray").outcomes] == [failed.key]


def test_cuda_cells_on_a_cluster_without_gpus_are_rejected(local_ray, write_spec, sweep_text, tmp_path):
    spec = load_spec(write_spec(sweep_text(seeds="[0]").replace('device = "cpu"', 'device = "cuda"')),
                     out=tmp_path / "out")
    with pytest.raises(PyrozooError, match="ask for CUDA .* but the Ray cluster has no GPUs"):
        run_sweep(spec, backend="ray")
    assert not spec.out.exists()


def test_unreachable_address_is_a_clear_error_at_once(write_spec, sweep_text, tmp_path, capsys):
    port = _closed_port()
    with pytest.raises(PyrozooError, match=f"cannot reach a Ray cluster at '127.0.0.1:{port}'"):
        probe_address(f"127.0.0.1:{port}", timeout=2)
    with pytest.raises(PyrozooError, match="expected auto, HOST:PORT or ray://HOST:PORT"):
        connect("no-port-here")
    path = write_spec(sweep_text(seeds="[0]"))
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--backend", "ray", "--address", f"ray://127.0.0.1:{port}",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyrozoo: error: address: cannot reach a Ray cluster") and not out.exists()


def test_gpu_requests_follow_the_cell_device():
    session = RaySession(None, owned=False, cpus_per_task=1, gpus_per_task=0.5, cluster_gpus=2)
    cell = lambda device: Cell("k", {"model": "m", "device": device})  # noqa: E731
    assert session.task_options(cell("cuda")) == {"num_cpus": 1, "num_gpus": 0.5}
    assert session.task_options(cell("cuda:1")) == {"num_cpus": 1, "num_gpus": 0.5}
    assert session.task_options(cell("auto")) == {"num_cpus": 1, "num_gpus": 0.5}
    assert session.task_options(cell("cpu")) == {"num_cpus": 1, "num_gpus": 0}
    no_gpus = RaySession(None, owned=False, cpus_per_task=1, gpus_per_task=1, cluster_gpus=0)
    assert no_gpus.task_options(cell("auto")) == {"num_cpus": 1, "num_gpus": 0}


def test_a_held_lock_closes_the_ray_session_it_opened(write_spec, sweep_text, tmp_path, monkeypatch):
    """run_sweep connects to Ray before taking the output directory's lock: when the lock is held by another live
    sweep, the session (e.g. a local Ray instance it started) must be closed, not leaked."""
    import os

    import pyrozoo.sweep.ray_backend as ray_backend

    closed = []

    class FakeSession:
        def close(self):
            closed.append(True)

    monkeypatch.setattr(ray_backend, "connect", lambda *a, **k: FakeSession())
    spec = load_spec(write_spec(sweep_text(seeds="[0]")), out=tmp_path / "out")
    spec.out.mkdir()
    (spec.out / ".sweep.lock").write_text(f"{os.getppid()} host\n")  # a live process that is not this one
    with pytest.raises(PyrozooError, match="another sweep"):
        run_sweep(spec, backend="ray")
    assert closed == [True]


def test_jobs_is_refused_with_the_ray_backend(write_spec, sweep_text, tmp_path, capsys):
    """--jobs sized the local pool only and was silently ignored with --backend ray: now an error, like --address
    with the local backend (Ray runs as many tasks at once as the cluster has CPUs)."""
    path, out = write_spec(sweep_text(seeds="[0]")), tmp_path / "out"
    with pytest.raises(PyrozooError, match=r"jobs: the ray backend schedules by the cluster's resources .*got 4"):
        run_sweep(load_spec(path, out=out), backend="ray", jobs=4)
    for extra in ([], ["--dry-run"]):
        assert main(["sweep", str(path), "--out", str(out), "--backend", "ray", "--jobs", "4", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("pyrozoo: error: jobs: ") and err.endswith("drop --jobs or use --backend local")
    assert not out.exists()


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_stop_signal_after_ray_took_over_the_handler_still_stops_the_sweep(write_spec, sweep_text, tmp_path,
                                                                             capsys, monkeypatch, signame):
    """ray.init installs its own SIGTERM handler over the sweep's (Ray's aborted the driver: exit 134, lock and
    workers left): run_sweep installs its handler again once connected, turns the plain KeyboardInterrupt that
    ray.wait makes of the handler's exception back into Terminated (exit 128 + signal), closes the session and
    restores the handler from before the sweep, not Ray's."""
    import pyrozoo.sweep.ray_backend as ray_backend

    if not hasattr(signal, signame):
        pytest.skip(f"no {signame} on this platform")
    signum = getattr(signal, signame)
    events = []

    class FakeSession:
        def run(self, cells, root, on_done):
            try:
                os.kill(os.getpid(), signum)
                time.sleep(5)  # the handler raises in the main thread before this returns
            except KeyboardInterrupt:  # what ray.wait raises when a signal handler raised while it waited
                raise KeyboardInterrupt from None
            events.append("not interrupted")

        def close(self):
            events.append("closed")

    def fake_connect(*args, **kwargs):  # what ray.init does to the handler
        signal.signal(signum, lambda *a: events.append("ray's handler"))
        return FakeSession()

    monkeypatch.setattr(ray_backend, "connect", fake_connect)
    spec = load_spec(write_spec(sweep_text(seeds="[0]")), out=tmp_path / "out")
    previous = signal.signal(signum, signal.SIG_IGN)
    try:
        with pytest.raises(Terminated) as info:
            run_sweep(spec, backend="ray")
        assert signal.getsignal(signum) is signal.SIG_IGN
    finally:
        signal.signal(signum, previous)
    assert info.value.signum == signum and events == ["closed"]
    assert "sweep terminated: 0 of 2 pending runs finished and are kept" in capsys.readouterr().out
    assert not (spec.out / ".sweep.lock").exists()


def _cell_temps():
    return {p.name for p in Path(tempfile.gettempdir()).glob(CELL_TEMP + "*")}


def test_temporaries_of_killed_cells_are_removed(tmp_path, monkeypatch):
    """A Ray task cancelled with force=True (its worker killed) cannot remove its temporary folder: the driver
    removes its session's folders, and a task removes those of dead workers on its host (any session), never a
    live worker's, another host's or a folder that is not a cell's."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = cell_temp_prefix("abc")
    host = mine.split("-")[3]
    other_host = f"{(int(host, 16) + 1) % 2**32:08x}"
    names = {
        "session": mine + "x1",
        "dead": f"{CELL_TEMP}other-{host}-{dead.pid}-x2",
        "live": f"{CELL_TEMP}other-{host}-{os.getppid()}-x3",
        "elsewhere": f"{CELL_TEMP}other-{other_host}-{dead.pid}-x4",
        "old-style": f"{CELL_TEMP}k4l9s179",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "run").mkdir()
    (tmp_path / f"{CELL_TEMP}abc-{host}-{dead.pid}-file").write_text("not a folder")
    assert remove_orphaned_temporaries() == 1 and not (tmp_path / names["dead"]).exists()
    assert remove_session_temporaries("abc") == 1 and not (tmp_path / names["session"]).exists()
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {names["live"], names["elsewhere"], names["old-style"], f"{CELL_TEMP}abc-{host}-{dead.pid}-file"}
    with pytest.raises(PyrozooError, match="tag: expected lowercase letters and digits, got 'a-b'"):
        cell_temp_prefix("a-b")


def test_interrupt_on_ray_cancels_the_tasks_and_removes_their_temporaries(local_ray, write_spec, sweep_text,
                                                                          tmp_path, capsys):
    """Ctrl-C while Ray tasks run: the tasks in flight are cancelled (their workers killed, so their own cleanup never
    runs) and the driver removes their temporary folders (one per running task used to stay in /tmp)."""
    spec = load_spec(write_spec(sweep_text(seeds="[0, 1, 2]")), out=tmp_path / "out")
    before = _cell_temps()
    seen = []

    def stop(outcome, done, total):  # once another task is running (its temporary folder is there)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not seen:
            seen.extend(_cell_temps() - before)
            time.sleep(0.01)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, backend="ray", on_done=stop)
    assert seen, "no task was running when the sweep was interrupted"
    assert _cell_temps() - before == set()
    assert not (spec.out / ".sweep.lock").exists()
    done = sum(cell_status(spec.out, c) == "done" for c in spec.cells)
    assert f"sweep interrupted: {done} of 6 pending runs finished and are kept" in capsys.readouterr().out
    assert 1 <= done < 6


@pytest.mark.slow  # a Ray start-up in a subprocess: about 30 s on two busy cores
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads the process tree from /proc")
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_signalled_ray_sweep_cleans_up_and_exits_128_plus_the_signal(write_spec, sweep_text, tmp_path, signame,
                                                                      proc_tree):
    """`pyrozoo sweep --backend ray` signalled while its tasks run: it used to abort (exit 134, Ray's SIGTERM trace),
    leaving its lock, the cancelled tasks' temporaries and Ray's processes. Now: the Ctrl-C cleanup, exit 143/129."""
    pytest.importorskip("ray")
    signum = getattr(signal, signame)
    path, out, tmp = write_spec(sweep_text(seeds="[0, 1, 2]")), tmp_path / "out", tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "RAY_TMPDIR": "/tmp"}  # cells' temporaries here; Ray's where they were
    log, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(log, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "pyrozoo.cli", "sweep", str(path), "--out", str(out),
                                 "--backend", "ray"], stdout=stdout, stderr=stderr, env=env)
    ray_processes = set()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None and not list(tmp.glob(CELL_TEMP + "*")):
            time.sleep(0.01)
        ray_processes = proc_tree.descendants(proc.pid)
        assert proc.poll() is None, "the sweep should still be running its tasks"
        os.kill(proc.pid, signum)
        proc.wait(timeout=90)
        assert proc.returncode == 128 + signum, err.read_text()[-2000:]
        assert f"pyrozoo: terminated ({signame})" in err.read_text() and "sweep terminated: " in log.read_text()
        assert not (out / ".sweep.lock").exists()
        assert list(tmp.glob(CELL_TEMP + "*")) == []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(proc_tree.alive(p) for p in ray_processes):
            time.sleep(0.2)
        assert not [p for p in ray_processes if proc_tree.alive(p)], "Ray's processes outlived the driver"
    finally:
        for pid in [proc.pid, *ray_processes]:
            if proc_tree.alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
