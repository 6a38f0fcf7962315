"""The command line: runs end to end, and every kind of bad input gives one line, exit 2, and no run directory."""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import pytest

from pyrozoo.cli import main
from pyrozoo.inference.rundir import load_run

TINY = ["--num-samples", "50", "--warmup-steps", "20", "--num-chains", "2", "--no-progress", "--device", "cpu"]


def test_run_then_diagnose(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "normal-gamma", "--out", str(out), "--posterior-predictive", *TINY]) == 0
    run = load_run(out)
    assert set(run["idata"].groups()) >= {"posterior", "sample_stats", "log_likelihood", "observed_data",
                                          "posterior_predictive"}
    assert run["idata"].log_likelihood["x"].shape == (2, 50, 100)
    assert run["config"]["model"] == "normal-gamma" and run["config"]["inference"] == "gibbs"
    assert "mu_mean" in run["metrics"]
    assert "warning: only 50 draws per chain" in capsys.readouterr().out  # Gibbs: a Markov chain, judged
    exact = tmp_path / "exact"
    assert main(["run", "blr", "--out", str(exact), *TINY]) == 0
    assert "warning" not in capsys.readouterr().out  # 2 x 50 independent exact draws are not judged by ESS
    assert main(["diagnose", str(out)]) == 0
    text = capsys.readouterr().out
    assert "r_hat" in text and "ess_bulk" in text
    assert (out / "plots" / "trace.png").stat().st_size > 1000
    assert (out / "plots" / "posterior.png").stat().st_size > 1000
    assert not (out / "plots" / "energy.png").exists()  # Gibbs has no Hamiltonian


def test_nuts_run_has_energy_and_diagnose_plots_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "normal-gamma", "--inference", "nuts", "--out", str(out), *TINY]) == 0
    stats = load_run(out)["idata"].sample_stats
    energy = stats["energy"]
    assert energy.shape == (2, 50) and np.isfinite(energy.values).all()
    # NUTS's tree depth survives idata.nc as an integer per draw, with its at-the-maximum flag as a bool
    assert stats["tree_depth"].shape == (2, 50) and stats["tree_depth"].dtype.kind == "i"
    assert stats["reached_max_treedepth"].dtype == bool and stats["n_steps"].dtype.kind == "i"
    capsys.readouterr()
    assert main(["diagnose", str(out)]) == 0
    assert "stopped at the maximum tree depth" not in capsys.readouterr().out  # an easy posterior
    assert (out / "plots" / "energy.png").stat().st_size > 1000


def test_diagnose_prints_a_bounded_table_and_one_chain_claims_no_r_hat(tmp_path, capsys):
    """A per-observation latent gives a row per observation: the table is cut at --max-rows (0: all) and says so.
    With one chain r_hat is not computed, so the all-clear line does not claim it."""
    out = tmp_path / "run"
    assert main(["run", "normal-gamma", "--out", str(out), "--num-samples", "1000", "--warmup-steps", "100",
                 "--num-chains", "1", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["diagnose", str(out), "--no-plots", "--max-rows", "1"]) == 0
    text = capsys.readouterr().out
    assert "note: the first 1 of 2 rows; --max-rows 0 prints all" in text
    assert "no convergence warnings" in text and "r_hat" not in text.split("no convergence warnings")[1]
    assert main(["diagnose", str(out), "--no-plots", "--max-rows", "0"]) == 0
    assert "note: the first" not in capsys.readouterr().out
    assert main(["diagnose", str(out), "--max-rows", "-1"]) == 2
    assert "--max-rows: expected a number of rows >= 0" in capsys.readouterr().err


def test_diagnose_does_not_judge_independent_draws_by_ess(tmp_path, capsys):
    """50 SVI guide draws are independent: ESS below the 100-per-chain threshold says nothing about the fit, so
    diagnose says so instead of warning (a Gibbs chain without sample_stats is still judged: engine tag gibbs)."""
    from pyrozoo.evaluation.diagnostics import is_markov_chain

    out = tmp_path / "run"
    assert main(["run", "normal-gamma", "--inference", "svi", "--steps", "50", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    assert main(["diagnose", str(out), "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "independent draws from the fitted posterior" in text and "warning:" not in text
    import arviz as az

    post = {"mu": np.zeros((2, 10))}
    assert is_markov_chain(az.from_dict(posterior=post, attrs={"inference": "gibbs"}))
    assert not is_markov_chain(az.from_dict(posterior=post, attrs={"inference": "em-emvs"}))
    assert is_markov_chain(az.from_dict(posterior=post, sample_stats={"lp": np.zeros((2, 10))}))  # no tag


def test_diagnose_names_a_one_draw_point_estimate(tmp_path, capsys):
    """bnn's map stores one draw: diagnose prints its values and says sd, r_hat, ESS and loo do not apply, with no
    numpy warnings and no ESS 'convergence' lines."""
    out = tmp_path / "map"
    assert main(["run", "bnn", "--inference", "map", "--num-steps", "3", "-o", "hidden=4", "-o", "swa_epochs=2",
                 "-o", "n=40", "--no-progress", "--out", str(out)]) == 0
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert main(["diagnose", str(out)]) == 0
    text = capsys.readouterr().out
    assert "one draw (a point estimate" in text and "warning:" not in text
    assert not (out / "plots").exists()  # no empty plots folder and no notes about plots never drawn


def test_diagnose_tells_a_one_draw_chain_from_a_point_estimate(tmp_path, capsys):
    """NUTS asked for one draw is a sampler short of draws, not a point estimate: diagnose says to raise
    --num-samples. Given the idata.nc file instead of its folder, it names the folder to pass."""
    out = tmp_path / "nuts1"
    assert main(["run", "normal-gamma", "--inference", "nuts", "--num-samples", "1", "--warmup-steps", "5",
                 "--num-chains", "1", "--no-progress", "--device", "cpu", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["diagnose", str(out), "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "only one draw" in text and "--num-samples" in text and "point estimate" not in text
    assert main(["diagnose", str(out / "idata.nc")]) == 2
    err = capsys.readouterr().err
    assert "idata.nc is a file; expected the run directory" in err and f"pass {out}" in err


def test_config_file_and_options(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('model = "normal-gamma"\ninference = "gibbs"\nseed = 4\nnum_samples = 30\nnum_chains = 2\n'
                   'progress = false\n[options]\nn = 40\nmu_true = 3.0\n')
    out = tmp_path / "run"
    assert main(["run", "--config", str(cfg), "--out", str(out), "-o", "n=60"]) == 0
    run = load_run(out)
    assert run["config"]["seed"] == 4 and run["config"]["options"] == {"n": 60, "mu_true": 3.0}
    assert run["idata"].observed_data["x"].shape == (60,)


def test_pyro_example_flag_spellings(tmp_path):
    """``--num-steps`` and ``--learning-rate`` (as in Pyro's examples) set the same fields as ``--steps``/``--lr``."""
    out = tmp_path / "run"
    assert main(["run", "normal-gamma", "--inference", "svi", "--num-steps", "7", "--learning-rate", "0.02",
                 "--num-samples", "5", "--no-progress", "--out", str(out)]) == 0
    cfg = load_run(out)["config"]
    assert cfg["steps"] == 7 and cfg["lr"] == 0.02


def test_chains_that_do_not_apply_are_named(tmp_path, capsys):
    """SVI gives one set of draws: asking for 3 chains says so instead of passing in silence."""
    with warnings.catch_warnings(record=True) as caught:  # said once, as the note: not also as run_model's warning
        warnings.simplefilter("always")
        assert main(["run", "normal-gamma", "--inference", "svi", "--num-steps", "5", "--num-samples", "5",
                     "--num-chains", "3", "--no-progress", "--out", str(tmp_path / "run")]) == 0
    said = capsys.readouterr()
    assert said.out.count("note: normal-gamma's svi does not read num_chains, so it did not apply") == 1
    assert "did not apply" not in said.err and not [w for w in caught if "did not apply" in str(w.message)]
    assert "num_chains" not in load_run(tmp_path / "run")["config"]  # the record says what ran
    # not asked: the default of 4 chains is not worth a note
    assert main(["run", "normal-gamma", "--inference", "svi", "--num-steps", "5", "--num-samples", "5",
                 "--no-progress", "--out", str(tmp_path / "run2")]) == 0
    assert "did not apply" not in capsys.readouterr().out
    # Gibbs reads no optimizer settings: given in the file and as flags, they are named and left out of the record
    cfg = tmp_path / "g.toml"
    cfg.write_text('model = "normal-gamma"\nlr = 0.5\nsteps = 7\n')
    assert main(["run", "--config", str(cfg), "--jit", *TINY, "--out", str(tmp_path / "run3")]) == 0
    assert "note: normal-gamma's gibbs does not read steps, lr, jit, so they did not apply" in capsys.readouterr().out
    recorded = load_run(tmp_path / "run3")["config"]
    assert not {"steps", "lr", "jit"} & set(recorded) and recorded["num_chains"] == 2


def test_data_file_and_existing_out(tmp_path):
    data = tmp_path / "x.csv"
    data.write_text("x\n1.0\n2.5\n3.0\n0.2\n1.1\n")
    out = tmp_path / "run"
    assert main(["run", "normal-gamma", "--data", str(data), "--out", str(out), *TINY]) == 0
    assert json.loads((out / "metrics.json").read_text())["inference"] == "gibbs"
    assert main(["run", "normal-gamma", "--data", str(data), "--out", str(out), *TINY]) == 2  # exists
    assert main(["run", "normal-gamma", "--data", str(data), "--out", str(out), "--overwrite", *TINY]) == 0


def test_out_that_is_a_file_is_not_offered_overwrite(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    assert main(["run", "normal-gamma", "--out", str(target), *TINY]) == 2
    err = capsys.readouterr().err
    assert "exists and is not a directory" in err and "--overwrite" not in err
    assert target.read_text() == "mine"


def test_overwrite_replaces_only_run_directories(tmp_path, capsys):
    """--overwrite must not delete a directory that is not a run: its files stay, exit 2, one line."""
    keep = tmp_path / "precious"
    (keep / "sub").mkdir(parents=True)
    (keep / "notes.txt").write_text("mine")
    (keep / "sub" / "data.csv").write_text("x\n1\n")
    assert main(["run", "normal-gamma", "--out", str(keep), "--overwrite", *TINY]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert (keep / "notes.txt").read_text() == "mine" and (keep / "sub" / "data.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]  # no temporary sibling left
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["run", "normal-gamma", "--out", str(empty), "--overwrite", *TINY]) == 0
    assert (empty / "idata.nc").exists()


def test_overwrite_of_the_current_directory_given_as_dot(tmp_path, monkeypatch, capsys):
    """`--out . --overwrite` from inside a run directory: "." has no name, so the temporary sibling was made inside
    the run, which was emptied and never replaced (a traceback, the old run lost). The path is made absolute first."""
    run = tmp_path / "run"
    assert main(["run", "normal-gamma", "--out", str(run), *TINY]) == 0
    for out in (".", "./", "../run/."):
        monkeypatch.chdir(run)  # again: the replaced directory is a new one
        assert main(["run", "normal-gamma", "--out", out, "--overwrite", *TINY]) == 0, capsys.readouterr().err
        assert (run / "idata.nc").exists() and (run / "config.toml").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary sibling left


def test_a_relative_data_path_is_recorded_resolved_and_the_config_reruns(tmp_path, monkeypatch):
    """config.toml recorded --data as typed (my.csv), so feeding it back from another directory failed ('file my.csv
    does not exist'); it records the resolved path now."""
    import tomllib

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "my.csv").write_text("x\n1.0\n2.5\n0.5\n1.5\n")
    monkeypatch.chdir(tmp_path / "d")
    assert main(["run", "normal-gamma", "--data", "my.csv", "-o", "column=x", "--out", "../r1", *TINY]) == 0
    recorded = tomllib.loads((tmp_path / "r1" / "config.toml").read_text())["data"]
    assert recorded == str(tmp_path / "d" / "my.csv")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--config", "r1/config.toml", "--out", "r2", *TINY]) == 0
    import json

    first, again = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("r1", "r2"))
    first.pop("wall_time", None), again.pop("wall_time", None)
    assert first == again  # the same data, seed and settings


def test_a_config_files_relative_data_path_is_relative_to_the_config_file(tmp_path, monkeypatch, capsys):
    """`data = "sub/x.csv"` in a --config file was read from the current directory, so the file worked only when
    run from its own folder ("file .../elsewhere/sub/x.csv does not exist"); it is relative to the file's folder
    now, as a sweep file's is. --data on the command line stays relative to the current directory."""
    import tomllib

    proj, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    (proj / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    (proj / "sub" / "x.csv").write_text("x\n1.0\n2.5\n0.5\n1.5\n")
    (elsewhere / "sub").mkdir()
    (elsewhere / "sub" / "x.csv").write_text("x\n9.0\n9.5\n")  # the cwd's namesake must not be read
    (proj / "run.toml").write_text('model = "normal-gamma"\ndata = "sub/x.csv"\n')
    monkeypatch.chdir(elsewhere)
    assert main(["run", "--config", "../proj/run.toml", "--out", "r1", *TINY]) == 0
    assert tomllib.loads((elsewhere / "r1" / "config.toml").read_text())["data"] == str(proj / "sub" / "x.csv")
    # --data over the file's path: the current directory's file
    assert main(["run", "--config", "../proj/run.toml", "--data", "sub/x.csv", "--out", "r2", *TINY]) == 0
    assert tomllib.loads((elsewhere / "r2" / "config.toml").read_text())["data"] == str(elsewhere / "sub" / "x.csv")
    # an absolute path in the file is taken as it is
    (proj / "abs.toml").write_text(f'model = "normal-gamma"\ndata = "{elsewhere / "sub" / "x.csv"}"\n')
    assert main(["run", "--config", str(proj / "abs.toml"), "--out", "r3", *TINY]) == 0
    assert tomllib.loads((elsewhere / "r3" / "config.toml").read_text())["data"] == str(elsewhere / "sub" / "x.csv")
    # a missing file: the error names the config file, the path as written and as resolved, before any work
    (proj / "bad.toml").write_text('model = "normal-gamma"\ndata = "sub/y.csv"\n')
    capsys.readouterr()
    assert main(["run", "--config", "../proj/bad.toml", "--out", "r4", *TINY]) == 2
    err = capsys.readouterr().err
    assert (f"data: ../proj/bad.toml names the data file 'sub/y.csv', taken relative to the config file's directory "
            f"{proj}, but {proj / 'sub' / 'y.csv'} does not exist") in err
    assert not (elsewhere / "r4").exists()


def test_boolean_flags_override_the_config_file_both_ways(tmp_path):
    """jit / progress / posterior_predictive set in the file could not be turned off from the command line."""
    import argparse

    from pyrozoo.commands.run import add_command, config_from_args

    parser = argparse.ArgumentParser()
    add_command(parser.add_subparsers())
    file_data = {"model": "normal-gamma", "jit": True, "progress": False, "posterior_predictive": True}
    args = parser.parse_args(["run", "--no-jit", "--progress", "--no-posterior-predictive"])
    cfg = config_from_args(args, file_data)
    assert (cfg.jit, cfg.progress, cfg.posterior_predictive) == (False, True, False)
    kept = config_from_args(parser.parse_args(["run"]), file_data)  # no flag: the file's values
    assert (kept.jit, kept.progress, kept.posterior_predictive) == (True, False, True)


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


BAD = {
    "empty out": (lambda t: ["--out", ""], "out: expected a directory path, got ''"),
    "nan in data": (lambda t: ["--data", _write(t, "nan.csv", "x\n1\nnan\n2\n")],
                    "nan.csv: column 'x' has 1 missing or non-finite value(s) (first at data row 1 "
                    "(0-based, .iloc[1]): nan)"),
    "inf in data": (lambda t: ["--data", _write(t, "inf.csv", "x\n1\ninf\n2\n")],
                    "column 'x' has 1 missing or non-finite"),
    "wrong shape": (lambda t: ["--data", _write(t, "two.csv", "a,b\n1,2\n3,4\n")],
                    "two.csv has 2 columns (a, b); pick one with -o column=NAME"),
    "rows longer than the header": (lambda t: ["--data", _write(t, "dec.csv", "weight\n1,5\n2,25\n3,75\n2,5\n")],
                                    "dec.csv has rows of 2 fields but its header row names 1 column (a decimal comma"),
    "missing file": (lambda t: ["--data", str(t / "nope.csv")], "does not exist"),
    "data is a directory": (lambda t: ["--data", str(t)], "is a directory; expected a data file"),
    "unknown model": (lambda t: ["--model-is-positional"], None),
    "unknown inference": (lambda t: ["--inference", "vi"], "inference: normal-gamma supports"),
    "unknown option": (lambda t: ["-o", "mu_sclae=1"], "unknown key"),
    "bad config key": (lambda t: ["--config", _write(t, "c.toml", 'model = "normal-gamma"\nnum_sample = 3\n')],
                       "unknown key"),
    "malformed toml": (lambda t: ["--config", _write(t, "m.toml", "model = \n")], "not valid TOML"),
    "non-positive prior scale": (lambda t: ["-o", "mu_scale=0"], "mu_scale: expected a finite value > 0"),
    "negative gamma rate": (lambda t: ["-o", "b=-2"], "b: expected a finite value > 0"),
    "bad device": (lambda t: ["--device", "tpu"], "device"),
    "bad flag": (lambda t: ["--num-chain", "2"], "unrecognized arguments"),
    "negative samples": (lambda t: ["--num-samples", "0"], "num_samples"),
    "unknown dataset": (lambda t: ["--dataset", "iris"], "dataset: normal-gamma knows"),
    "non-numeric lr in config": (lambda t: ["--config", _write(t, "lr.toml", 'model = "normal-gamma"\nlr = "x"\n')],
                                 "lr: expected a finite value > 0"),
    "numeric lr quoted in config": (lambda t: ["--config", _write(t, "lq.toml", 'model = "normal-gamma"\n'
                                                                  'inference = "svi"\nlr = "0.01"\n')],
                                    "lr: expected a finite value > 0, got the string '0.01'"),
    "data not a path in config": (lambda t: ["--config", _write(t, "d.toml", 'model = "normal-gamma"\ndata = 3\n')],
                                  "data: expected a data file path, got 3"),
    "options not a table": (lambda t: ["--config", _write(t, "o.toml", 'model = "normal-gamma"\noptions = 3\n')],
                            "options: expected a table"),
    "text for a number option": (lambda t: ["-o", "mu_true=abc"], "mu_true: option of normal-gamma expects a number"),
    "float for an int option": (lambda t: ["-o", "n=1.5"], "n: option of normal-gamma expects an integer"),
    "list for a number option": (lambda t: ["-o", "mu_true=[1, 2]"],
                                 "mu_true: option of normal-gamma expects a number"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2_and_no_run_dir(case, tmp_path, capsys):
    make_args, match = BAD[case]
    out = tmp_path / "out"
    extra = make_args(tmp_path)
    if case == "unknown model":
        argv, match = ["run", "normal-gama", "--out", str(out), "--no-progress"], "unknown model 'normal-gama'"
    else:
        argv = ["run", "normal-gamma", "--out", str(out), "--no-progress", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pyrozoo: error: "), err
    assert match in err[0]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_out_under_a_file_fails_before_fitting(tmp_path, capsys, monkeypatch):
    from pyrozoo import registry

    entry = registry.get("normal-gamma")

    def never(dataset, config):
        raise AssertionError("fit must not start")

    monkeypatch.setattr(registry, "get", lambda name: type(entry)(**{**entry.__dict__, "fit": never}))
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", "normal-gamma", "--out", str(blocker / "sub" / "run"), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"out: {blocker} is not a directory" in err[0], err


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_out_on_a_pseudo_file_system_fails_before_fitting(tmp_path, capsys, monkeypatch):
    """Root passes os.access everywhere; /proc refuses the directory anyway. The probe finds it before the fit,
    and in a writable parent it leaves nothing behind."""
    from pyrozoo import registry
    from pyrozoo.inference.rundir import check_out_dir

    entry = registry.get("normal-gamma")

    def never(dataset, config):
        raise AssertionError("fit must not start")

    monkeypatch.setattr(registry, "get", lambda name: type(entry)(**{**entry.__dict__, "fit": never}))
    assert main(["run", "normal-gamma", "--out", "/proc/pyrozoo-no-such-dir/run", *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out: cannot create /proc/pyrozoo-no-such-dir/run under /proc" in err[0], err
    check_out_dir(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []


def test_failure_during_fit_leaves_nothing(tmp_path, monkeypatch):
    from pyrozoo import registry

    entry = registry.get("normal-gamma")

    def boom(dataset, config):
        raise RuntimeError("engine exploded")

    monkeypatch.setattr(registry, "get", lambda name: type(entry)(**{**entry.__dict__, "fit": boom}))
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        main(["run", "normal-gamma", "--out", str(out), *TINY])
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_list(capsys):
    assert main(["list"]) == 0
    assert "normal-gamma" in capsys.readouterr().out


def test_integral_float_settings_from_toml_become_ints(tmp_path):
    cfg = _write(tmp_path, "f.toml", 'model = "normal-gamma"\nseed = 2.0\nnum_samples = 20.0\nnum_chains = 2\n'
                 'warmup_steps = 10\nprogress = false\n')
    out = tmp_path / "run"
    assert main(["run", "--config", cfg, "--out", str(out)]) == 0
    run = load_run(out)
    assert run["config"]["seed"] == 2 and isinstance(run["config"]["seed"], int)
    assert run["idata"].posterior["mu"].shape == (2, 20)


def test_diagnose_unknown_var_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "normal-gamma", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    assert main(["diagnose", str(out), "--var", "nope", "--no-plots"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "var: no posterior variable(s) nope" in err[0], err
    assert main(["diagnose", str(out), "--var", "mu", "--no-plots"]) == 0


def test_diagnose_a_missing_path_says_so(tmp_path, capsys):
    assert main(["diagnose", str(tmp_path / "nope")]) == 2
    assert "nope does not exist" in capsys.readouterr().err


def test_damaged_run_files_and_a_report_over_a_file_are_one_line_errors(tmp_path, capsys):
    """A truncated idata.nc, a hand-broken config.toml or an empty metrics.json gave library tracebacks."""
    import shutil

    good = tmp_path / "good"
    assert main(["run", "normal-gamma", "--inference", "gibbs", "--out", str(good), *TINY]) == 0
    for name, text in (("idata.nc", "garbage"), ("config.toml", "model = "), ("metrics.json", "")):
        broken = tmp_path / f"broken-{name}"
        shutil.copytree(good, broken)
        (broken / name).write_text(text)
        capsys.readouterr()
        assert main(["diagnose", str(broken), "--no-plots"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"run: {broken / name} cannot be read" in err[0], err
    # the report lists the damaged runs and reports the rest
    assert main(["report", str(tmp_path), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "unreadable: broken-config.toml: config.toml: TOMLDecodeError" in out
    assert "unreadable: broken-metrics.json: metrics.json: JSONDecodeError" in out
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main(["report", str(tmp_path), "--out", str(afile)]) == 2
    assert "out: " in capsys.readouterr().err and afile.read_text() == ""


def test_list_with_a_name_shows_that_models_options(capsys):
    """The option names and defaults were only discoverable by passing a wrong key."""
    assert main(["list", "gp"]) == 0
    out = capsys.readouterr().out
    assert "inference: type2, nuts (default type2)" in out and "--dataset concrete" in out
    assert "  lengthscale  1.0" in out and "or a list (one per input column)" in out and "  ard " in out
    assert "  type2  num_samples, steps, lr\n  nuts   num_samples, warmup_steps, num_chains, jit\n" in out
    assert "  noise        0.1          (float; only with inference type2)" in out
    # a condition the inference table cannot say (regime-scm's enum reads pretrain_steps only with MLPs)
    assert main(["list", "regime-scm"]) == 0
    assert ("(int; only with inference enum or amortized; enum reads it only with mechanism='mlp')"
            in capsys.readouterr().out)
    assert main(["list", "nosuch"]) == 2
    assert "unknown model 'nosuch'" in capsys.readouterr().err


def test_text_options_take_the_text_as_typed(tmp_path):
    """-o column=true names the column "true": TOML would read it as a boolean, but the option is text."""
    path = tmp_path / "d.csv"
    path.write_text("true,2020\n" + "".join(f"{0.1 * i},{i}\n" for i in range(30)))
    for column in ("true", "2020"):
        out = tmp_path / column
        assert main(["run", "normal-gamma", "--data", str(path), "-o", f"column={column}", "--out", str(out),
                     *TINY]) == 0
        assert load_run(out)["config"]["options"]["column"] == column
    # only column names are kept as text: other options with a text default also take booleans or numbers
    from pyrozoo.cli import build_parser
    from pyrozoo.commands.run import config_from_args

    for model, option, value in (("plce", "random_effects=true", True), ("agnostic", "target_weight=0.5", 0.5),
                                 ("plce", 'controls=["a", "b"]', ["a", "b"]), ("plce", "outcome=2020", "2020")):
        args = build_parser().parse_args(["run", model, "-o", option])
        assert config_from_args(args, {}).options[option.split("=")[0]] == value, option


def event_over_data_model(x=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    pyro.sample("x", dist.Normal(mu, 1.0).expand([100]).to_event(1), obs=x)


def test_our_warnings_are_one_pyrozoo_line(tmp_path, capsys, monkeypatch):
    """A model warning (here: one log-likelihood number for all the data) is printed like the errors, as one
    `pyrozoo: warning:` line, not as Python's `file:line: UserWarning` pointing into pyrozoo's own code."""
    import dataclasses

    from pyrozoo import registry
    from pyrozoo.inference.from_config import mcmc_from_config

    base = registry.get("normal-gamma")

    def fit(dataset, config):
        return mcmc_from_config(event_over_data_model, {"x": dataset.observed["x"]}, config)

    monkeypatch.setitem(registry._REGISTRY, "event-model", lambda: dataclasses.replace(
        base, model=event_over_data_model, fit=fit, inferences=("nuts",), settings={}, metrics=None))
    # on the CPU: the model's constants are CPU tensors (a CUDA run of it is the next test's error)
    assert main(["run", "event-model", "--num-samples", "20", "--warmup-steps", "10", "--num-chains", "1",
                 "--device", "cpu", "--no-progress", "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "pyrozoo: warning: model: observed site 'x' holds 100 values" in err and "UserWarning" not in err


def test_diagnose_a_gibbs_run_without_sample_stats(tmp_path, capsys, monkeypatch):
    """A GibbsKernel without log_joint writes no sample_stats group (a model author's kernel may have none):
    diagnose failed on it with AttributeError; it now judges the chains and gives the all-clear without E-BFMI."""
    import dataclasses

    from pyrozoo.models import normal_gamma

    monkeypatch.setattr(normal_gamma, "GIBBS_KERNEL", dataclasses.replace(normal_gamma.GIBBS_KERNEL, log_joint=None))
    out = tmp_path / "run"
    assert main(["run", "normal-gamma", "--out", str(out), "--num-samples", "1000", "--warmup-steps", "100",
                 "--num-chains", "2", "--no-progress", "--device", "cpu"]) == 0
    assert "sample_stats" not in load_run(out)["idata"].groups()
    capsys.readouterr()
    assert main(["diagnose", str(out), "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "no convergence warnings" in text and "E-BFMI" not in text and "r_hat <= 1.01" in text


def test_run_says_how_many_metrics_it_left_out(tmp_path, capsys, monkeypatch):
    """The run line shows 12 metrics; the others are in metrics.json, and the line says how many (it stopped
    at 12 in silence)."""
    import dataclasses

    from pyrozoo import registry

    base = registry.get("normal-gamma")
    monkeypatch.setitem(registry._REGISTRY, "many-metrics", lambda: dataclasses.replace(
        base, metrics=lambda result, dataset: {f"m{i}": float(i) for i in range(15)}))
    out = tmp_path / "run"
    assert main(["run", "many-metrics", "--out", str(out), *TINY]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("metrics: ")][0]
    assert line.endswith("m11=11 (3 more in metrics.json)") and "m12" not in line
    assert {f"m{i}" for i in range(15)} <= set(load_run(out)["metrics"])


def test_sweep_terminated_by_sigterm_exits_143_and_ctrl_c_130(tmp_path, capsys, monkeypatch):
    """A sweep turns SIGTERM into an interrupt that carries the signal number: the CLI says so and exits 128 + 15
    (Ctrl-C stays 130)."""
    import signal

    import pyrozoo.sweep.runner as runner

    spec = tmp_path / "s.toml"
    spec.write_text('[sweep]\nname = "t"\ntiny = true\n[[models]]\nname = "normal-gamma"\n')
    cases = [(runner.Terminated(signal.SIGTERM), 143, "terminated (SIGTERM)"),
             (runner.Terminated(signal.SIGHUP), 129, "terminated (SIGHUP)"), (KeyboardInterrupt(), 130, "interrupted")]
    for exc, code, word in cases:
        def stop(*args, exc=exc, **kwargs):
            raise exc

        monkeypatch.setattr(runner, "run_sweep", stop)
        assert main(["sweep", str(spec), "--out", str(tmp_path / "out")]) == code
        assert capsys.readouterr().err.strip() == f"pyrozoo: {word}"


def test_a_diverging_svi_run_is_one_line_naming_the_step(tmp_path, capsys):
    """`pyrozoo run normal-gamma --inference svi --lr 1000` (a sweep's lr axis found it): Adam's first step breaks
    q(beta)'s rate, and the Gamma's argument check failed with a raw multi-line ValueError and a traceback."""
    out = tmp_path / "run"
    code = main(["run", "normal-gamma", "--inference", "svi", "--lr", "1000", "--steps", "20", "--num-samples", "10",
                 "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert err.startswith("pyrozoo: error: svi: training diverged at step ") and err.endswith("; lower lr")
    assert "\n" not in err


def test_diagnose_an_idata_without_a_posterior_group_is_one_line(tmp_path, capsys):
    """An idata.nc without a posterior (written by hand, or edited) crashed diagnose with an AttributeError."""
    import arviz as az

    out = tmp_path / "run"
    assert main(["run", "normal-gamma", "--inference", "gibbs", "--out", str(out), *TINY]) == 0
    idata = load_run(out)["idata"]
    rest = az.InferenceData(**{g: idata[g] for g in idata.groups() if g != "posterior"})
    (out / "idata.nc").unlink()
    rest.to_netcdf(str(out / "idata.nc"), engine="h5netcdf")
    capsys.readouterr()
    assert main(["diagnose", str(out), "--no-plots"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"pyrozoo: error: run: {out / 'idata.nc'} has no posterior group")


def test_python_dash_m_pyrozoo_runs_the_cli():
    """`python -m pyrozoo` is the console script's command line (for environments without the script on PATH)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "pyrozoo", "list"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "normal-gamma" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "pyrozoo", "run", "no-such-model"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "unknown model" in bad.stderr


def test_run_summarizes_only_the_rows_it_prints_and_caps_the_note(tmp_path, capsys, monkeypatch):
    """p = 60 spike-slab EM: 20 rows printed, az.summary run on those alone (it was run on all 182 components,
    32 s at p = 3,000), and the note on the fixed components names 10 of them and counts the rest."""
    import arviz as az
    import pandas as pd

    from pyrozoo.evaluation import diagnostics

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 60))
    df = pd.DataFrame(X, columns=[f"x{j}" for j in range(60)]).assign(y=X[:, 0] + rng.normal(size=40))
    df.to_csv(tmp_path / "wide.csv", index=False)
    rows = []
    real = az.summary
    monkeypatch.setattr(diagnostics.az, "summary", lambda *a, **k: rows.append(len(t := real(*a, **k))) or t)
    assert main(["run", "spike-slab", "--data", str(tmp_path / "wide.csv"), "-o", "outcome=y",
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert 20 <= sum(rows) < 40
    note = next(line for line in out.splitlines() if line.startswith("note: the same in every draw"))
    assert len(note) < 300 and re.search(r"\.\.\. and \d+ more \(\d+ in all\)$", note), note


@pytest.mark.parametrize("seed", ["4294967296", "99999999999999999999"])
def test_a_seed_beyond_numpys_range_is_one_line_and_exit_2(tmp_path, capsys, seed):
    """Was a NumPy ValueError (2**32) or a torch "Overflow when unpacking long long" traceback, exit 1."""
    out = tmp_path / "run"
    assert main(["run", "normal-gamma", "--seed", seed, "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"pyrozoo: error: seed: expected an integer seed in [0, 2**32 - 1] (at most 4294967295), got "
                   f"{seed}"]
    assert not out.exists()


def test_run_warns_about_one_chain_as_diagnose_does(tmp_path, capsys):
    """`pyrozoo run --num-chains 1` printed the ESS column but no warning (it judged ESS only with several chains)
    while `pyrozoo diagnose` warned ("beta: ess_bulk 40 < 100"); with one draw it said nothing while diagnose
    explained. Both now print the same notes and warnings (the `where` of a cut-off list aside)."""
    def said(text, kind):
        return [line for line in text.splitlines() if line.startswith(kind)]

    short = ["--inference", "hmc", "--warmup-steps", "20", "--num-chains", "1", "--no-progress", "--device", "cpu"]
    for n in ("200", "3", "1"):
        out = tmp_path / f"run{n}"
        assert main(["run", "normal-gamma", "--num-samples", n, "--out", str(out), *short]) == 0
        run_text = capsys.readouterr().out
        assert main(["diagnose", str(out), "--no-plots"]) == 0
        diagnose_text = capsys.readouterr().out
        assert said(run_text, "warning:") == said(diagnose_text, "warning:")
        assert said(run_text, "note:") == said(diagnose_text, "note:")
        if n == "200":  # hmc with 20 warmup steps: ESS well below 100 (40 and 51 at seed 0)
            assert any(": ess_bulk" in line for line in said(run_text, "warning:"))
            assert "note: one chain only (r_hat needs several)" in run_text
        elif n == "3":
            assert "warning: only 3 draws per chain" in run_text
        else:
            assert "note: only one draw: sd, r_hat, ESS" in run_text


def test_a_posterior_in_tiny_units_is_judged_not_called_the_same_in_every_draw(tmp_path, capsys):
    """Data around 1e6 with sd 0.01: normal-gamma's precision beta has mean ~1e-12 and sd ~3e-13 (30% spread), which
    ``run`` and ``diagnose`` called "the same in every draw" (an absolute 1e-12 floor) and left out of the plots."""
    rng = np.random.default_rng(0)
    np.savetxt(tmp_path / "off.csv", 1e6 + 0.01 * rng.standard_normal(20), header="x", comments="", fmt="%.17g")
    out = tmp_path / "run"
    assert main(["run", "normal-gamma", "--data", str(tmp_path / "off.csv"), "--num-samples", "200",
                 "--num-chains", "2", "--out", str(out), "--no-progress"]) == 0
    assert main(["diagnose", str(out)]) == 0
    text = capsys.readouterr().out
    assert "the same in every draw" not in text and "beta 1." in text and "e-12" in text


def test_no_log_likelihood_run_says_so_and_diagnose_and_report_still_work(tmp_path, capsys):
    out = tmp_path / "runs" / "nolog"
    assert main(["run", "normal-gamma", "--out", str(out), "--no-log-likelihood", *TINY]) == 0
    assert "note: --no-log-likelihood: the run has no log_likelihood group, so az.loo and az.waic will not work" in (
        capsys.readouterr().out)
    run = load_run(out)
    assert "log_likelihood" not in run["idata"].groups() and run["config"]["log_likelihood"] is False
    assert main(["diagnose", str(out)]) == 0
    assert "r_hat" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "runs")]) == 0
    assert "normal-gamma" in capsys.readouterr().out


def test_a_run_too_big_for_its_log_likelihood_is_one_line_exit_2_naming_the_way_out(tmp_path, capsys):
    """It ran silently until the kernel's OOM killer ended it (n = 2e6, 4 x 2000 draws); now refused at once."""
    out = tmp_path / "big"
    argv = ["run", "normal-gamma", "-o", "n=200000", "--num-samples", "200", "--num-chains", "4", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pyrozoo: error: num_samples=200, num_chains=4 with 200,000 "
                                               "observations") and "--no-log-likelihood" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_the_log_likelihood_flag_overrides_the_config_file_both_ways():
    import argparse

    from pyrozoo.commands.run import add_command, config_from_args
    from pyrozoo.errors import PyrozooError

    parser = argparse.ArgumentParser()
    add_command(parser.add_subparsers())
    off = {"model": "normal-gamma", "log_likelihood": False}
    assert config_from_args(parser.parse_args(["run", "--log-likelihood"]), off).log_likelihood is True
    assert config_from_args(parser.parse_args(["run"]), off).log_likelihood is False
    on = {"model": "normal-gamma"}
    assert config_from_args(parser.parse_args(["run", "--no-log-likelihood"]), on).log_likelihood is False
    with pytest.raises(PyrozooError, match=r"log_likelihood: expected true or false, got 'no'"):
        config_from_args(parser.parse_args(["run"]), {**on, "log_likelihood": "no"}).validate()


def test_list_shows_a_float_option_whose_default_is_none_as_float(capsys):
    """blr's a0/b0 and sparse-gp's noise default to None (their value depends on another option) but are floats
    (``float_options``): ``pyrozoo list`` called them "any"."""
    assert main(["list", "blr"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  a0 +2\.0 +\(float; ", out, flags=re.M), out  # the default its note gives
    assert main(["list", "sparse-gp"]) == 0
    assert re.search(r"^  noise +0\.1 +\(float; ", capsys.readouterr().out, flags=re.M)


@pytest.mark.parametrize("draws", ["1", "3"])
def test_run_with_fewer_draws_than_chains_prints_no_arviz_shape_warning(tmp_path, capsys, draws):
    """`pyrozoo run normal-gamma --num-samples 1` (4 chains) printed ArviZ's UserWarning "More chains (4) than
    draws (1). Passed array should have shape (chains, draws, *shape)" twice, with its site-packages path, after
    pyrozoo's own note; the shape is right, and the note says what so few draws cannot give."""
    out = tmp_path / "few"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["run", "normal-gamma", "--num-samples", draws, "--num-chains", "4", "--no-progress",
                     "--device", "cpu", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "More chains" not in captured.err and "More chains" not in captured.out
    assert not [str(w.message) for w in caught if "More chains" in str(w.message)]
    assert "raise --num-samples" in captured.out or "rerun with a larger --num-samples" in captured.out
    assert load_run(out)["idata"].posterior["mu"].shape == (4, int(draws))


class _ClosedPipe:
    """A stdout whose reader has gone (`| head -1`): every write and flush raises BrokenPipeError."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_stdout_does_not_stop_a_command_before_its_work_is_done(tmp_path, monkeypatch, capsys):
    """`pyrozoo diagnose RUN | head -1` used to stop at its first print (BrokenPipeError, reported as success)
    and write no plots; the output now goes to os.devnull once the reader is gone and the command runs to its end.
    `pyrozoo list | head` stays quiet and exits 0."""
    out = tmp_path / "run"
    assert main(["run", "normal-gamma", "--out", str(out), *TINY]) == 0
    monkeypatch.setattr("sys.stdout", _ClosedPipe())
    assert main(["diagnose", str(out)]) == 0
    assert (out / "plots" / "trace.png").stat().st_size > 1000
    assert main(["list"]) == 0
    assert main(["run", "normal-gamma", "--out", str(tmp_path / "second"), *TINY]) == 0
    assert load_run(tmp_path / "second")["metrics"]
    monkeypatch.undo()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("closed, argv, status", [(">&-", "list", 0), ("2>&-", "list nosuch", 2),
                                                  (">&- 2>&-", "list nosuch", 2)])
def test_a_stream_closed_before_the_start_keeps_the_commands_exit_status(closed, argv, status):
    """With stdout closed by the shell (`>&-`) the closing flush met sys.stdout = None (AttributeError, status 1),
    and with stderr closed the error's print failed with EBADF (status 1, no message). The command's own status
    comes back now."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    # The checkout first, then whatever the caller had on the path (a machine with packages in a --target folder).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(["bash", "-c", f"'{sys.executable}' -m pyrozoo {argv} {closed}"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == status and "Traceback" not in done.stdout + done.stderr


def test_an_integer_given_for_a_float_option_is_recorded_as_a_float(tmp_path):
    # -o mu0=2 ran with mu0 = 2.0; config.toml (and the InferenceData's config) said the int 2 before
    out = tmp_path / "run"
    assert main(["run", "normal-gamma", "--inference", "gibbs", "-o", "mu0=2", "-o", "n=20", "--num-samples", "10",
                 "--warmup-steps", "5", "--num-chains", "1", "--no-progress", "--out", str(out)]) == 0
    assert "mu0 = 2.0" in (out / "config.toml").read_text().splitlines()
    options = load_run(out)["config"]["options"]
    assert type(options["mu0"]) is float and type(options["n"]) is int
