"""`pyrozoo run`: an interrupt during the save, and what a run killed while saving left beside --out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from pyrozoo.cli import main
from pyrozoo.inference.rundir import host_id, load_run

TINY = ["--num-samples", "50", "--warmup-steps", "20", "--num-chains", "2", "--no-progress", "--device", "cpu"]


def test_a_ctrl_c_that_the_netcdf_writer_swallows_is_an_interrupt_and_saves_nothing(tmp_path, monkeypatch,
                                                                                   capsys):
    """QA: a Ctrl-C landing while idata.nc was written was dropped by h5py ("Exception ignored in ...
    WeakValueDictionary ... KeyboardInterrupt"), and `pyrozoo run` printed "saved to ..." and exited 0. The writer
    here gets SIGINT mid-write and drops the KeyboardInterrupt as h5py does: exit 130, "pyrozoo: interrupted", no
    run directory and no temporary."""
    import arviz as az

    real = az.InferenceData.to_netcdf

    def write(self, *args, **kwargs):
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:  # dropped, as h5py does in a weakref callback
            pass
        return real(self, *args, **kwargs)

    monkeypatch.setattr(az.InferenceData, "to_netcdf", write)
    out = tmp_path / "r4"
    assert main(["run", "normal-gamma", "--out", str(out), *TINY]) == 128 + signal.SIGINT
    captured = capsys.readouterr()
    assert "pyrozoo: interrupted" in captured.err and "saved to" not in captured.out
    assert list(tmp_path.iterdir()) == []


def test_a_run_removes_what_a_run_killed_while_saving_left_and_leaves_a_live_ones(tmp_path, capsys):
    """QA: `pyrozoo run` SIGKILLed while saving left `.r6.XXXX.tmp` (config.toml, a truncated idata.nc) beside
    --out, never removed or mentioned. The next run of that --out removes those whose writer (pid and host in the
    name) is gone, with a note; one of a live process is kept; one it cannot judge (an older name) gets a
    warning and is kept."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    killed = tmp_path / f".r6.{gone.pid}-{host_id()}.abcd1234.tmp"
    live = tmp_path / f".r6.{os.getppid()}-{host_id()}.abcd1234.tmp"
    older = tmp_path / ".r6.abcd1234.tmp"
    for path in (killed, live, older):
        path.mkdir()
        (path / "config.toml").write_text('model = "normal-gamma"\n')
    (killed / "idata.nc").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    out = tmp_path / "r6"
    assert main(["run", "normal-gamma", "--out", str(out), *TINY]) == 0
    captured = capsys.readouterr()
    assert f"note: removed 1 temporary directory that a run of {out} killed while saving left beside it: " \
           f"{killed.name}" in captured.out
    assert f"pyrozoo: warning: out: {older.name} beside {out} may be the temporary of a run" in captured.err
    assert not killed.exists() and live.is_dir() and older.is_dir()
    assert load_run(out)["config"]["model"] == "normal-gamma"


@pytest.mark.slow
def test_a_real_ctrl_c_during_the_netcdf_write_exits_130_and_leaves_nothing(tmp_path):
    """The QA reproducer end to end (about a minute on a loaded 2-core machine): SIGINT to `pyrozoo run` once its
    temporary holds a growing idata.nc (80 MB of log-likelihood, seconds to write)."""
    import time

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "pyrozoo", "run", "normal-gamma", "--inference", "svi", "--steps",
                             "10", "--num-samples", "100000", "--no-progress", "--out", str(tmp_path / "r4")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 300
        while not list(tmp_path.glob(".r4.*.tmp/idata.nc")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "pyrozoo: interrupted" in err and "saved to" not in out
    assert list(tmp_path.iterdir()) == []
