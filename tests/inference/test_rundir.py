"""Atomic directory writes shared by run directories and a sweep's failure records."""

import pytest

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.rundir import replaced_atomically


def test_a_finished_block_replaces_the_old_directory(tmp_path):
    dest = tmp_path / "run"
    (dest / "old").mkdir(parents=True)
    with replaced_atomically(dest) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".run.") and not any(tmp.iterdir())
        (tmp / "new.txt").write_text("done")
    assert sorted(p.name for p in dest.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_failing_block_leaves_the_old_directory_and_no_sibling(tmp_path):
    dest = tmp_path / "run"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(KeyboardInterrupt), replaced_atomically(dest) as tmp:
        (tmp / "half.txt").write_text("half")
        raise KeyboardInterrupt
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_parent_that_cannot_hold_it_names_the_argument(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PyrozooError, match=r"^sweep out: cannot create .*file/x/run"), \
            replaced_atomically(blocker / "x" / "run", what="sweep out"):
        pass


def test_missing_run_files_is_the_one_completeness_check(tmp_path):
    """Review: the sweep runner's resume check, is_complete, the report and load_run each listed RUN_FILES' missing
    files themselves; missing_run_files is the one check they share, and they agree on it."""
    from pyrozoo.inference.rundir import RUN_FILES, load_run, missing_run_files
    from pyrozoo.sweep.runner import _broken, is_complete

    run = tmp_path / "run"
    run.mkdir()
    assert missing_run_files(run) == list(RUN_FILES) and missing_run_files(tmp_path / "absent") == list(RUN_FILES)
    for name in ("config.toml", "idata.nc"):
        (run / name).write_text("")
    assert missing_run_files(run) == ["metrics.json", "params.pt"]
    assert not is_complete(run) and _broken(run) == "incomplete: no metrics.json or params.pt"
    with pytest.raises(PyrozooError, match=r"not a complete run directory \(missing metrics.json, params.pt\)"):
        load_run(run)
    (run / "metrics.json").write_text("{}")
    (run / "params.pt").write_text("")
    assert missing_run_files(run) == [] and is_complete(run) and _broken(run) is None
    (tmp_path / "file").write_text("")
    assert missing_run_files(tmp_path / "file") == list(RUN_FILES) and not is_complete(tmp_path / "file")


def test_metrics_and_idata_record_the_requested_inference_beside_the_engine_label(tmp_path):
    """config.toml records the inference asked for (svi), while metrics.json's and idata.attrs' ``inference`` is
    the engine label of what ran (svi-meanfield): the requested name was in neither. Both now hold it as
    ``inference_requested``; a config that names no inference adds no key."""
    import json

    import numpy as np

    from pyrozoo.inference.result import Result
    from pyrozoo.inference.rundir import load_run, save_run

    rng = np.random.default_rng(0)
    result = Result(inference="svi-meanfield", posterior={"w": rng.normal(size=(1, 4))},
                    log_likelihood={"y": rng.normal(size=(1, 4, 3))}, observed_data={"y": rng.normal(size=3)},
                    dims={"y": ["obs_id"]}, seed=0)
    run = load_run(save_run(result, tmp_path / "run", config={"model": "m", "inference": "svi", "seed": 0},
                            metrics={"a": 1.0}))
    assert run["config"]["inference"] == "svi"
    assert (run["metrics"]["inference"], run["metrics"]["inference_requested"]) == ("svi-meanfield", "svi")
    assert (run["idata"].attrs["inference"], run["idata"].attrs["inference_requested"]) == ("svi-meanfield", "svi")
    bare = save_run(result, tmp_path / "bare", config={"model": "m", "seed": 0})
    assert "inference_requested" not in json.loads((bare / "metrics.json").read_text())
    assert "inference_requested" not in load_run(bare)["idata"].attrs


def _small_result():
    import numpy as np

    from pyrozoo.inference.result import Result

    rng = np.random.default_rng(0)
    return Result(inference="svi-meanfield", posterior={"w": rng.normal(size=(1, 4))},
                  log_likelihood={"y": rng.normal(size=(1, 4, 3))}, observed_data={"y": rng.normal(size=3)},
                  dims={"y": ["obs_id"]}, seed=0)


def _swallowing_writer(monkeypatch, signum):
    """Make idata.nc's writer receive ``signum`` mid-write and drop what its handler raises, as h5py/h5netcdf drop
    a KeyboardInterrupt raised in one of their weakref callbacks ("Exception ignored in: ... WeakValueDictionary")."""
    import signal

    import arviz as az

    real = az.InferenceData.to_netcdf

    def write(self, *args, **kwargs):
        try:
            signal.raise_signal(signum)  # runs a Python handler at once, here inside the write
        except BaseException:  # dropped, as h5py does
            pass
        return real(self, *args, **kwargs)

    monkeypatch.setattr(az.InferenceData, "to_netcdf", write)


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_that_the_netcdf_writer_swallows_still_stops_the_save_and_leaves_nothing(tmp_path, monkeypatch,
                                                                                        signame):
    """QA: a Ctrl-C that landed while idata.nc was written was lost (h5py drops the KeyboardInterrupt raised in its
    weakref callback), so `pyrozoo run` said "saved to ..." and exited 0, and a sweep's SIGTERM (its handler raises
    Terminated) was dropped the same way and the sweep went on to its next cells. The signal is now held back while
    the file is written and delivered through the handler that was there (Python's for SIGINT, a raising one as the
    sweep's for SIGTERM) before the rename: the save raises, no run directory and no temporary are left, and the
    handlers are as before."""
    import signal

    from pyrozoo.inference.rundir import save_run

    class Stopped(Exception):
        pass

    def stop(signum, frame):
        raise Stopped(signum)

    signum = getattr(signal, signame)
    expected = KeyboardInterrupt if signame == "SIGINT" else Stopped
    old = signal.signal(signum, stop) if signame == "SIGTERM" else signal.getsignal(signum)
    try:
        _swallowing_writer(monkeypatch, signum)
        with pytest.raises(expected):
            save_run(_small_result(), tmp_path / "run", config={"model": "m", "seed": 0})
        assert signal.getsignal(signum) is (stop if signame == "SIGTERM" else old)
    finally:
        signal.signal(signum, old)
    assert list(tmp_path.iterdir()) == []  # neither the run nor its temporary


def test_a_signal_at_its_default_action_removes_the_temporary_then_ends_the_process(tmp_path):
    """A SIGTERM (or SIGHUP) at its default action that comes during a deferred write: ``on_fatal`` runs (the save
    removes its temporary) and then the signal ends the process as it would have, after the write, not during it.
    In a forked child (the signal kills it), which touches only the file system."""
    import os
    import shutil
    import signal

    from pyrozoo.inference.rundir import signals_deferred

    work = tmp_path / ".run.tmp"
    work.mkdir()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            with signals_deferred(on_fatal=lambda: shutil.rmtree(work)):
                signal.raise_signal(signal.SIGTERM)
                (work / "idata.nc").write_text("the write goes on to its end")
                (tmp_path / "written").write_text("")
            os._exit(3)  # not reached: the signal ends the process at the block's end
        finally:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM, status
    assert (tmp_path / "written").exists() and not work.exists()


def test_a_killed_writers_temporaries_are_told_from_a_live_ones(tmp_path):
    """QA: `pyrozoo run` killed (SIGKILL) while saving left `.run.XXXX.tmp` beside --out for good. A temporary's
    name now records its writer (pid and host), so one whose process is gone on this host is stale and removed;
    one of a live process, of another host, or named before names recorded the writer is not provably stale."""
    import os
    import subprocess
    import sys

    from pyrozoo.inference.rundir import host_id, remove_stale_temporaries, stale_temporaries, temp_sibling

    out = tmp_path / "run"
    mine = temp_sibling(out)
    assert mine.name.startswith(f".run.{os.getpid()}-{host_id()}.") and mine.name.endswith(".tmp")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid names no process (a reuse within the test would only keep its folder)
    other_host = "00000000" if host_id() != "00000000" else "ffffffff"
    names = {"dead": f".run.{gone.pid}-{host_id()}.abc_1234.tmp", "live": f".run.{os.getppid()}-{host_id()}.x1.tmp",
             "host": f".run.{gone.pid}-{other_host}.abcd1234.tmp", "older": ".run.k2_9zzab.tmp",
             "other": f".run.x.{gone.pid}-{host_id()}.abcd1234.tmp"}  # the temporary of a run named run.x
    for name in names.values():
        (tmp_path / name).mkdir()
    (tmp_path / names["dead"] / "idata.nc").write_bytes(b"\x89HDF truncated")
    stale, unknown = stale_temporaries(out)
    assert stale == [tmp_path / names["dead"]]
    assert unknown == sorted([tmp_path / names["host"], tmp_path / names["older"]])
    assert remove_stale_temporaries(out) == (stale, unknown)
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {mine.name} | set(names.values()) - {names["dead"]}


def test_the_saved_inference_requested_follows_the_config_saved_with_the_run(tmp_path):
    """The InferenceData of a Result records ``inference_requested`` from ``result.config``; save_run's file still
    records the one of the config it saves (as metrics.json does), and none for a config that names no inference."""
    import json

    import numpy as np

    from pyrozoo.inference.result import Result
    from pyrozoo.inference.rundir import load_run, save_run

    rng = np.random.default_rng(0)
    result = Result(inference="svi-meanfield", posterior={"w": rng.normal(size=(1, 4))}, seed=0,
                    config={"model": "m", "inference": "svi", "seed": 0})
    assert result.to_inference_data().attrs["inference_requested"] == "svi"
    bare = save_run(result, tmp_path / "bare", config={"model": "m", "seed": 0})
    assert "inference_requested" not in json.loads((bare / "metrics.json").read_text())
    assert "inference_requested" not in load_run(bare)["idata"].attrs
    own = load_run(save_run(result, tmp_path / "own"))
    assert own["idata"].attrs["inference_requested"] == own["metrics"]["inference_requested"] == "svi"


def test_a_leading_tilde_in_out_is_the_home_directory(tmp_path, monkeypatch):
    """check_out_dir took '~/runs' as a relative path: a run (its config's out, or a quoted --out) made a directory
    named '~' in the working directory; a sweep's out expanded it. Now both are the home directory."""
    from pyrozoo.inference.rundir import check_out_dir

    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    assert check_out_dir("~/runs/a") == home / "runs" / "a"
    from pyrozoo.cli import main

    assert main(["run", "normal-gamma", "-o", "n=10", "--num-samples", "5", "--warmup-steps", "5", "--no-progress",
                 "--out", "~/runs/b"]) == 0
    assert (home / "runs" / "b" / "idata.nc").exists() and list(cwd.iterdir()) == []


def test_metrics_cannot_replace_what_save_run_records_of_the_run(tmp_path):
    """Called from Python, save_run let a metric 'inference' or 'seed' overwrite the run's own record in
    metrics.json. A metric of such a name with another value is refused before anything is written; one that
    restates the recorded value (spike-slab's wall_time) is kept."""
    import json

    from pyrozoo.inference.rundir import save_run

    result = _small_result()
    result.wall_time = 2.5
    for metrics in ({"inference": 1.0}, {"seed": 99, "mse": 0.5}, {"pyrozoo_version": "0"},
                    {"inference_requested": "nuts"}, {"wall_time": result.wall_time + 1.0}):
        key = next(iter(metrics))
        with pytest.raises(PyrozooError, match=rf"^metrics: '{key}' .* would replace what metrics\.json records of "
                                               rf"the run itself"):
            save_run(result, tmp_path / "run", config={"model": "m", "inference": "svi", "seed": 0},
                     metrics=metrics)
        assert not (tmp_path / "run").exists() and list(tmp_path.iterdir()) == []
    run = save_run(result, tmp_path / "run", config={"model": "m", "inference": "svi", "seed": 0},
                   metrics={"wall_time": float(result.wall_time), "mse": 0.5})
    stored = json.loads((run / "metrics.json").read_text())
    assert stored["inference"] == "svi-meanfield" and stored["seed"] == 0 and stored["mse"] == 0.5
    assert stored["inference_requested"] == "svi"


@pytest.mark.parametrize("value", [None, 5, b"/tmp/x"])
def test_load_run_of_what_is_not_a_path_names_the_argument(value):
    """load_run(None), load_run(5) and load_run(b"/tmp/x") raised os.fspath's raw TypeError."""
    from pyrozoo.inference.rundir import load_run

    with pytest.raises(PyrozooError, match=r"^run: expected a run directory, got "):
        load_run(value)


def test_load_run_reads_a_config_with_a_byte_order_mark(tmp_path, monkeypatch):
    """load_run read config.toml with Path.read_text() (the locale's encoding) and raw tomllib: a leading UTF-8
    byte-order mark made the run 'cannot be read' though `run --config` of the file worked. It is read as every
    TOML file is (UTF-8, the mark skipped)."""
    import codecs

    from pyrozoo.inference.rundir import load_run, save_run

    run = save_run(_small_result(), tmp_path / "run", config={"model": "m", "seed": 0, "note": "café"})
    config = run / "config.toml"
    config.write_bytes(codecs.BOM_UTF8 + config.read_bytes())
    assert load_run(run)["config"] == {"model": "m", "seed": 0, "note": "café"}


def test_an_out_under_a_link_that_leads_nowhere_is_refused_before_any_work(tmp_path):
    """A fixer's find: --out loopy/x with loopy a link to itself passed check_out_dir (exists() is False for a loop,
    so the nearest existing folder was taken to be the loop's parent) and the run failed only after the whole fit,
    "cannot create .../loopy/x: File exists". A dangling link as --out, or above it, likewise."""
    from pyrozoo.inference.rundir import check_out_dir

    (tmp_path / "loopy").symlink_to(tmp_path / "loopy")
    (tmp_path / "dang").symlink_to(tmp_path / "missing" / "target")
    for out, link in ((tmp_path / "loopy" / "x", "loopy"), (tmp_path / "dang", "dang"),
                      (tmp_path / "dang" / "x" / "y", "dang")):
        with pytest.raises(PyrozooError, match=rf"^out: {tmp_path / link} is a symbolic link that leads nowhere \(to "
                                               rf"a missing target, or round a loop\), so {out} cannot be created"):
            check_out_dir(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dang", "loopy"]


def test_overwrite_through_a_link_to_a_run_is_refused_before_any_work(tmp_path):
    """A review: `run --out LINK --overwrite`, LINK a link to a run (or to an empty directory), passed the checks
    and failed after the whole fit with "OSError: Cannot call rmtree on a symbolic link"; the fit was lost."""
    from pyrozoo.inference.rundir import check_out_dir

    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    with pytest.raises(PyrozooError, match=rf"^out: {tmp_path / 'link'} is a symbolic link \(to .*empty'\); "
                                           rf"--overwrite replaces a run directory itself, not through a link: pass "
                                           rf"the directory it leads to, --out {tmp_path / 'empty'}$"):
        check_out_dir(tmp_path / "link", overwrite=True)
    assert check_out_dir(tmp_path / "empty", overwrite=True) == tmp_path / "empty"
    assert check_out_dir(tmp_path / "link" / "new") == tmp_path / "link" / "new"  # a link as the parent is fine


def test_metrics_json_records_the_versions_the_run_was_made_with(tmp_path):
    """QA: metrics.json recorded only pyrozoo_version, so runs from two machines could not be told apart by their
    torch build. It now holds pyro_version, torch_version, numpy_version and python_version too, which a metric
    cannot replace (refused before anything is written)."""
    import json
    import platform

    import numpy as np
    import pyro
    import torch

    from pyrozoo.inference.rundir import save_run

    want = {"pyro_version": pyro.__version__, "torch_version": str(torch.__version__),
            "numpy_version": np.__version__, "python_version": platform.python_version()}
    config = {"model": "m", "inference": "svi", "seed": 0}
    run = save_run(_small_result(), tmp_path / "run", config=config, metrics={"mse": 0.5})
    stored = json.loads((run / "metrics.json").read_text())
    assert {k: stored.get(k) for k in want} == want and stored["mse"] == 0.5
    for key in want:
        with pytest.raises(PyrozooError, match=rf"^metrics: '{key}' .* would replace what metrics\.json records"):
            save_run(_small_result(), tmp_path / "other", config=config, metrics={key: "0"})
        assert not (tmp_path / "other").exists()
