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
                             "10", "--num-samples", "100000", "--no-progress", "--device", "cpu", "--out",
                             str(tmp_path / "r4")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 300
        while not list(tmp_path.glob(".r4.*.tmp/idata.nc")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        # the signal must come during the write: on a GPU machine (before the plated guide draws) the fit took over
        # the 300 s, the interrupt came before any save, and the test passed without testing the write
        assert list(tmp_path.glob(".r4.*.tmp/idata.nc")), "the run never reached its netcdf write"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "pyrozoo: interrupted" in err and "saved to" not in out
    assert list(tmp_path.iterdir()) == []


def _killed_temporary(tmp_path, name):
    """A temporary of ``name`` that a save killed by SIGKILL left: its pid is a process of this host that is gone."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path = tmp_path / f".{name}.{gone.pid}-{host_id()}.abcdefgh.tmp"
    path.mkdir()
    (path / "config.toml").write_text('model = "normal-gamma"\n')
    return path


@pytest.mark.parametrize("refused, message", [
    (["blr", "-o", "outcome=zzz"], "has no column(s) 'zzz'"),  # the data, once loaded
    # too large for memory (check_run_size)
    (["normal-gamma", "--num-samples", "1000000000"], "pointwise log-likelihood would hold"),
])
def test_a_run_refused_for_its_input_leaves_a_killed_saves_temporary_alone(tmp_path, capsys, refused, message):
    """QA: `pyrozoo run` removed what a killed save of --out left before it read the data, then refused the run
    (`-o outcome=zzz`, no such column): the disk changed, and the "removed ..." note, printed only after a run,
    never came. Now a refused run leaves everything as it was; the tidy comes once every check has passed."""
    data = tmp_path / "bad.csv"
    data.write_text("a,b\n1,2\n3,4\n")
    killed = _killed_temporary(tmp_path, "r7")
    args = ["run", *refused[:1], "--out", str(tmp_path / "r7"), "--no-progress", "--device", "cpu", *refused[1:]]
    if refused[0] == "blr":
        args += ["--data", str(data)]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "removed" not in captured.out
    assert killed.is_dir() and (killed / "config.toml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([killed.name, "bad.csv"])


def test_the_note_of_a_removed_temporary_is_printed_when_the_fit_then_fails(tmp_path, capsys, monkeypatch):
    """The tidy happens right before the fit; a fit that fails after it still says what was removed (the CLI
    printed its notes only after a successful run)."""
    import dataclasses

    from pyrozoo import registry
    from pyrozoo.errors import PyrozooError

    registry.names()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    def failing_fit(dataset, config):
        raise PyrozooError("failing_fit: refused inside the fit")

    entry = dataclasses.replace(registry.get("normal-gamma"), name="failing-fit", fit=failing_fit)
    registry.register("failing-fit")(lambda: entry)
    killed = _killed_temporary(tmp_path, "r8")
    assert main(["run", "failing-fit", "--out", str(tmp_path / "r8"), *TINY]) == 2
    captured = capsys.readouterr()
    assert "pyrozoo: error: failing_fit: refused inside the fit" in captured.err
    assert f"note: removed 1 temporary directory that a run of {tmp_path / 'r8'} killed while saving left beside " \
           f"it: {killed.name}" in captured.out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("setting, expected", [
    ('num_samples = "10"', "num_samples: expected an integer >= 1, got '10'"),
    ("seed = -1", "seed: expected an integer seed in [0, 2**32 - 1]"),
    ("lr = -1", "lr: expected a finite value > 0, got -1"),
    ("num_chains = 0", "num_chains: expected an integer >= 1, got 0"),
    ('device = "gpu"', "device: expected one of auto, cpu, cuda, cuda:N; got 'gpu'"),
    ('inference = "foo"', "inference: normal-gamma supports"),
    ("options = 3", "options: expected a table of model options"),
    ('[options]\nn = "abc"', "n: option of normal-gamma expects an integer"),
    ("[options]\nn = -5", "n: expected an integer >= 1, got -5"),  # the simulator's check, at load time
    ("[options]\nzzz = 1", "options for normal-gamma: unknown key(s) zzz"),
])
def test_a_bad_value_in_the_config_file_names_the_file(tmp_path, capsys, setting, expected):
    """QA: `pyrozoo run --config bad.toml` with num_samples = "10" in it said "num_samples: expected an integer >= 1,
    got '10'" without the file, while an unknown key in the same file said "bad.toml: unknown key(s) ...". An error
    about a value that came from the file now names the file before the key; nothing is written."""
    config = tmp_path / "bad.toml"
    config.write_text(f'model = "normal-gamma"\n{setting}\n')
    out = tmp_path / "run"
    assert main(["run", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pyrozoo: error: {config}: {expected}"), err
    assert "\n" not in err and not out.exists()


def test_an_unknown_model_in_the_config_file_names_the_file(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text('model = "no-such-model"\n')
    for extra in ([], ["-o", "n=20"]):  # -o reads the model's text options first: the same error
        assert main(["run", "--config", str(config), "--out", str(tmp_path / "run"), *extra]) == 2
        assert capsys.readouterr().err.startswith(f"pyrozoo: error: {config}: model: unknown model 'no-such-model'")


def test_a_bad_value_given_by_a_flag_over_the_config_file_does_not_blame_the_file(tmp_path, capsys):
    """The flag's value replaces the file's: its error is the flag's, as without --config."""
    config = tmp_path / "ok.toml"
    config.write_text('model = "normal-gamma"\nnum_samples = 10\nseed = 3\n[options]\nn = -5\nmu_true = 1.0\n')
    out = tmp_path / "run"
    for flags, expected in ((["--num-samples", "0"], "num_samples: expected an integer >= 1, got 0"),
                            (["-o", "n=-3"], "n: expected an integer >= 1, got -3"),
                            (["-o", "n=20", "--seed", "-1"], "seed: expected an integer seed in [0, 2**32 - 1]"),
                            (["-o", "n=20", "-o", "zzz=1"], "options for normal-gamma: unknown key(s) zzz")):
        assert main(["run", "--config", str(config), "--out", str(out), *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"pyrozoo: error: {expected}"), (flags, err)
    # the file's own bad value, with an unrelated flag beside it, is still the file's
    assert main(["run", "--config", str(config), "--out", str(out), "--seed", "1"]) == 2
    assert capsys.readouterr().err.startswith(f"pyrozoo: error: {config}: n: expected an integer >= 1, got -5")
    assert not out.exists()


def test_a_one_draw_point_estimate_run_says_az_loo_does_not_apply(tmp_path, capsys):
    """bnn map stores one draw: az.loo of its idata.nc stopped with ArviZ's bare "IndexError: index -2 is out of
    bounds", and `pyrozoo run` said nothing about it (only the docs did). The run now notes that az.loo needs several
    draws, and the idata's attrs say so for map; a run with several draws gets no such note."""
    import arviz as az

    out = tmp_path / "map"
    assert main(["run", "bnn", "--inference", "map", "--steps", "3", "-o", "hidden=4", "-o", "swa_epochs=2",
                 "-o", "n=40", "--no-progress", "--device", "cpu", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "note: one draw (a point estimate, or --num-samples 1): az.loo needs several draws" in text
    idata = az.from_netcdf(out / "idata.nc")
    assert "log_likelihood" in idata.groups()  # kept: the in-sample pointwise fit at the point estimate
    assert idata.attrs["log_likelihood"].startswith("map: one draw") and "az.loo needs several draws" in \
        idata.attrs["log_likelihood"]
    assert main(["run", "bnn", "--inference", "swag-diag", "--steps", "3", "--num-samples", "4", "-o", "hidden=4",
                 "-o", "swa_epochs=2", "-o", "n=40", "--no-progress", "--device", "cpu",
                 "--out", str(tmp_path / "swag")]) == 0
    assert "az.loo needs several draws" not in capsys.readouterr().out
    assert "log_likelihood" not in az.from_netcdf(tmp_path / "swag" / "idata.nc").attrs


def test_a_config_file_that_is_not_utf8_is_one_line_exit_2_and_no_run_dir(tmp_path, capsys, monkeypatch):
    """It was a UnicodeDecodeError traceback."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "latin1.toml").write_bytes(b'model = "normal-gamma"\n# caf\xe9\n')
    assert main(["run", "--config", "latin1.toml", "--out", "o1"]) == 2
    assert capsys.readouterr().err == ("pyrozoo: error: config: latin1.toml is not UTF-8 text (byte 0xe9 at position "
                                       "28); TOML files must be UTF-8\n")
    assert not (tmp_path / "o1").exists()


@pytest.mark.parametrize("text", ["=5", " =5"])
def test_an_option_with_an_empty_key_is_refused_by_name(tmp_path, capsys, text):
    """-o =5 said 'options for normal-gamma: unknown key(s) ; allowed: ...' (an empty key listed as unknown)."""
    out = tmp_path / "o1"
    assert main(["run", "normal-gamma", "-o", text, "--out", str(out), "--no-progress"]) == 2
    expected = f"pyrozoo: error: --option: expected KEY=VALUE with a non-empty KEY, got {text!r}\n"
    assert capsys.readouterr().err == expected
    assert not out.exists()


def test_a_data_source_flag_replaces_the_config_files_data_source_either_way(tmp_path, monkeypatch):
    """--dataset over a file's data (and --data over a file's dataset) was 'give either a data file or a shipped
    dataset name, not both', though a flag overrides the file; now the flag's source replaces the file's."""
    from pyrozoo import registry
    from pyrozoo.cli import build_parser
    from pyrozoo.commands.run import config_from_args
    from pyrozoo.config import read_toml
    from pyrozoo.errors import PyrozooError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.csv").write_text("x\n1\n2\n3\n")
    (tmp_path / "cd.toml").write_text('model = "normal-gamma"\ndata = "gone.csv"\nseed = 4\n')  # not read at all
    (tmp_path / "cs.toml").write_text('model = "normal-gamma"\ndataset = "boston-medv"\nseed = 4\n')

    def config(*argv):
        args = build_parser().parse_args(["run", *argv])
        return config_from_args(args, read_toml(args.config)).validate()

    got = config("--config", "cd.toml", "--dataset", "boston-medv")
    assert (got.dataset, got.data, got.seed) == ("boston-medv", None, 4)
    got = config("--config", "cs.toml", "--data", "d.csv")
    assert (got.dataset, got.data, got.seed) == (None, str(tmp_path / "d.csv"), 4)
    both = config("--config", "cs.toml", "--data", "d.csv", "--dataset", "boston-medv")
    with pytest.raises(PyrozooError, match="not both"):  # both flags together are still refused, by the entry
        registry.get("normal-gamma").check_config(both)


def test_an_error_about_options_names_the_file_per_option_also_with_an_option_flag(tmp_path, capsys):
    """QA: with any -o given, 'options: n applies only to the simulated data; ...' lost the file's name though n
    came from the file (file_keys dropped `options` as a whole once -o was given). The file is named per option:
    before the message where every option it names came from the file, after it for those that did where some
    came from -o, and not at all where all came from -o."""
    config = tmp_path / "c.toml"
    config.write_text('model = "normal-gamma"\ndataset = "boston-medv"\nprogress = false\n[options]\nn = 20\n')
    out = tmp_path / "o"
    for extra, expected in (
            (["-o", "mu0=1"], f"{config}: options: n applies only to the simulated data; with dataset "
                              f"'boston-medv' it would have no effect (remove it)"),
            (["-o", "mu0=1", "-o", "mu_true=3"], "options: n, mu_true apply only to the simulated data; with dataset "
                                                 f"'boston-medv' they would have no effect (remove them) (n from "
                                                 f"{config})"),
            (["-o", "n=5"], "options: n applies only to the simulated data; with dataset 'boston-medv' it would "
                            "have no effect (remove it)")):
        assert main(["run", "--config", str(config), "--out", str(out), *extra]) == 2
        assert capsys.readouterr().err == f"pyrozoo: error: {expected}\n", extra
    config.write_text('model = "normal-gamma"\nprogress = false\n[options]\nzzz = 1\n')
    assert main(["run", "--config", str(config), "--out", str(out), "-o", "mu0=1"]) == 2
    assert capsys.readouterr().err.startswith(f"pyrozoo: error: {config}: options for normal-gamma: unknown key(s) "
                                              f"zzz;")
    assert not out.exists()


def test_a_data_source_flag_drops_the_file_options_only_the_replaced_source_reads(tmp_path, capsys):
    """QA: `run --config c.toml --dataset boston-medv`, c.toml a simulated-data config with [options] n = 20, was
    refused ('n applies only to the simulated data ... remove it'), though the flag replaces the file's data source
    (README: the flags win). The file's options that only the replaced source reads now go with it, named in a
    note; the file's other options stay, and the same option given with -o is still refused."""
    from pyrozoo.config import read_toml

    config = tmp_path / "c.toml"
    config.write_text('model = "normal-gamma"\nnum_samples = 30\nwarmup_steps = 10\nnum_chains = 2\n'
                      'progress = false\ndevice = "cpu"\n[options]\nn = 20\nmu0 = 1.0\n')
    out = tmp_path / "o"
    assert main(["run", "--config", str(config), "--dataset", "boston-medv", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"note: {config}: --dataset replaced the file's data source (the simulated data), so "
                              f"its option(s) n, which dataset 'boston-medv' does not read, are dropped\n"), printed
    recorded = read_toml(out / "config.toml")
    assert recorded["dataset"] == "boston-medv" and recorded["options"] == {"mu0": 1.0}
    assert main(["run", "--config", str(config), "--dataset", "boston-medv", "-o", "n=5",
                 "--out", str(tmp_path / "o2")]) == 2
    captured = capsys.readouterr()
    assert "dropped" not in captured.out
    assert captured.err == ("pyrozoo: error: options: n applies only to the simulated data; with dataset "
                            "'boston-medv' it would have no effect (remove it)\n")
    assert not (tmp_path / "o2").exists()
    # without a data-source flag the file's own source is kept, and so is the refusal of its options
    config.write_text('model = "normal-gamma"\ndataset = "boston-medv"\nprogress = false\n[options]\nn = 20\n')
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "o3")]) == 2
    assert capsys.readouterr().err.startswith(f"pyrozoo: error: {config}: options: n applies only to the simulated")


def test_the_dropped_options_note_names_the_replacing_source_and_waits_for_a_known_one(tmp_path, capsys):
    """A review: the note said agnostic's train_corr and noise were 'read only by the simulated data', which the
    digits dataset reads too; it now says the replacing source does not read them. A --dataset the model does not
    have printed the note, then the refusal; now only the refusal."""
    config = tmp_path / "ag.toml"
    config.write_text('model = "agnostic"\nnum_samples = 5\n[options]\ntrain_corr = 0.9\nnoise = 0.2\n')
    assert main(["run", "--config", str(config), "--dataset", "nosuch", "--out", str(tmp_path / "o")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "dataset: agnostic knows" in captured.err
    from pyrozoo.cli import build_parser
    from pyrozoo.commands.run import config_from_args

    notes = []
    args = build_parser().parse_args(["run", "--config", str(config), "--dataset", "cps1985"])
    config_from_args(args, {"model": "agnostic", "options": {"train_corr": 0.9, "noise": 0.2}}, note=notes.append)
    assert notes == [f"{config}: --dataset replaced the file's data source (the simulated data), so its option(s) "
                     f"train_corr, noise, which dataset 'cps1985' does not read, are dropped"]


def test_a_config_read_from_a_pipe_takes_relative_data_paths_from_the_current_directory(tmp_path, monkeypatch):
    """A review: `run --config <(...)` with data = "d.csv" looked for /dev/fd/d.csv; a pipe has no directory of its
    own, so its relative paths are taken from the current directory (a regular file's, from its own)."""
    import os

    from pyrozoo.commands.run import resolve_file_data
    from pyrozoo.errors import PyrozooError

    (tmp_path / "d.csv").write_text("x\n1\n2\n")
    monkeypatch.chdir(tmp_path)
    fifo = tmp_path / "cfg.fifo"
    os.mkfifo(fifo)
    assert resolve_file_data("d.csv", fifo) == str(tmp_path / "d.csv")
    with pytest.raises(PyrozooError, match=r"'zz.csv', taken relative to the current directory \(the config was read "
                                           r"from a pipe\), but .*zz.csv does not exist"):
        resolve_file_data("zz.csv", fifo)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.toml").write_text("")
    with pytest.raises(PyrozooError, match=r"relative to the config file's directory .*sub, but .*sub/d.csv does not"):
        resolve_file_data("d.csv", tmp_path / "sub" / "c.toml")


def test_run_data_path_starting_with_a_tilde_is_read_from_the_home_directory(tmp_path, monkeypatch, capsys):
    """QA: ``run blr --data=~/csv/ok.csv`` (a ``~`` the shell does not expand) was refused as "data: file
    ~/csv/ok.csv does not exist": absolute_data_path returned the unexpanded path. It is expanded now, and
    config.toml records the expanded path."""
    import numpy as np

    from pyrozoo.config import read_toml

    home = tmp_path / "home"
    (home / "csv").mkdir(parents=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 2))
    np.savetxt(home / "csv" / "ok.csv", np.c_[x @ [1.0, -1.0] + rng.normal(size=30), x], delimiter=",",
               header="y,x1,x2", comments="")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert main(["run", "blr", "--data=~/csv/ok.csv", "-o", "outcome=y", "--out", "r", "--no-progress"]) == 0
    assert read_toml(tmp_path / "r" / "config.toml")["data"] == str(home / "csv" / "ok.csv")
    capsys.readouterr()
