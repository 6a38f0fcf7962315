"""``pyrozoo plce``'s run directory: what its config.toml records."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pyrozoo.cli import main
from pyrozoo.config import read_toml


def test_saved_config_records_an_absolute_data_path_and_reruns_from_another_directory(tmp_path, monkeypatch,
                                                                                      capsys):
    """``plce --data pl.csv --out DIR`` (a path relative to the current directory) records it absolute in
    DIR/config.toml, as ``pyrozoo run --data`` does, so ``run --config DIR/config.toml`` works from elsewhere."""
    rng = np.random.default_rng(0)
    n = 120
    a, b = rng.normal(size=n), rng.normal(size=n)
    t = 0.5 * a + rng.normal(size=n)
    y = t + a - b + rng.normal(size=n)
    data_dir, other = tmp_path / "data", tmp_path / "other"
    data_dir.mkdir()
    other.mkdir()
    np.savetxt(data_dir / "pl.csv", np.c_[y, t, a, b], delimiter=",", header="y,t,a,b", comments="")
    monkeypatch.chdir(data_dir)
    tiny = ["--learner", "ridge", "--n-folds", "2", "--n-repeats", "2", "--inference", "svi", "--steps", "50",
            "--num-samples", "50"]
    assert main(["plce", "--data", "pl.csv", "--out", "run", *tiny]) == 0
    recorded = read_toml(data_dir / "run" / "config.toml")["data"]
    assert Path(recorded).is_absolute() and os.path.samefile(recorded, data_dir / "pl.csv")
    monkeypatch.chdir(other)
    assert main(["run", "--config", str(data_dir / "run" / "config.toml"), "--out", "P3", "--no-progress"]) == 0
    assert (other / "P3" / "idata.nc").is_file()
    capsys.readouterr()


def test_an_empty_column_flag_is_refused_before_the_data_are_read(tmp_path, capsys):
    """``--treatment ""`` estimated the default column t (exit 0), and ``--groups ""``, ``--controls ""`` and
    ``--interactions ""`` were dropped the same way: an empty value is how the options spell the default. Now each
    is a one-line error naming the flag, before the file is read (a missing file is not the error)."""
    missing = str(tmp_path / "absent.csv")
    for flag, value, expected in (("--treatment", "", "a column"), ("--outcome", " ", "a column"),
                                  ("--groups", "", "a column"), ("--controls", "", "a comma-separated list"),
                                  ("--controls", " , ", "a comma-separated list"),
                                  ("--interactions", "", "quadratic, linear or none")):
        assert main(["plce", "--data", missing, flag, value]) == 2
        err = capsys.readouterr().err.strip()
        option = flag[2:]
        assert err.startswith(f"pyrozoo: error: {option}: {flag} was given {value!r}; expected {expected}"), err
        assert "\n" not in err and "absent.csv" not in err
    assert not list(tmp_path.iterdir())


def _small_file(path: Path) -> Path:
    rng = np.random.default_rng(1)
    n = 120
    a, b = rng.normal(size=n), rng.normal(size=n)
    t = 0.5 * a + rng.normal(size=n)
    y = t + a - b + rng.normal(size=n)
    np.savetxt(path, np.c_[y, t, a, b], delimiter=",", header="y,t,a,b", comments="")
    return path


FAST = ["--learner", "ridge", "--n-folds", "2", "--n-repeats", "1", "--interactions", "linear"]


def test_nuts_warns_as_pyrozoo_run_does_and_warms_up_as_run_does(tmp_path, capsys):
    """The posterior row was printed with no convergence check (10 draws: no word), and the warm-up was silently
    min(500, --num-samples), 10 steps there. Now the command prints the notes and warnings of `pyrozoo run` (one
    chain: ESS judged, r_hat not) and warms up 500 steps, `pyrozoo run`'s default, or --warmup-steps."""
    path = _small_file(tmp_path / "pl.csv")
    assert main(["plce", "--data", str(path), *FAST, "--num-samples", "10", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "note: one chain only (r_hat needs several); ESS is within-chain" in out
    assert "warning: only 10 draws per chain" in out
    assert read_toml(tmp_path / "a" / "config.toml")["warmup_steps"] == 500
    assert main(["plce", "--data", str(path), *FAST, "--num-samples", "10", "--warmup-steps", "30",
                 "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    recorded = read_toml(tmp_path / "b" / "config.toml")
    assert recorded["warmup_steps"] == 30 and recorded["num_chains"] == 1


def test_settings_the_engine_does_not_read_get_run_s_note(tmp_path, capsys):
    """--steps with NUTS was ignored without a word (`pyrozoo run plce` notes it); so is --warmup-steps with SVI.
    Left at their defaults, nothing is noted."""
    path = _small_file(tmp_path / "pl.csv")
    assert main(["plce", "--data", str(path), *FAST, "--num-samples", "20", "--steps", "5"]) == 0
    assert "note: plce's nuts does not read steps, so it did not apply" in capsys.readouterr().out
    svi = [*FAST, "--inference", "svi", "--steps", "20", "--num-samples", "20"]
    assert main(["plce", "--data", str(path), *svi, "--warmup-steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "note: plce's svi does not read warmup_steps, so it did not apply" in out
    assert "warning:" not in out  # SVI's independent draws: no ESS or r_hat judged
    assert main(["plce", "--data", str(path), *svi]) == 0
    assert "does not read" not in capsys.readouterr().out


def test_help_states_the_single_chain_and_the_warmup(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["plce", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "nuts (one chain)" in text and "default 500, as pyrozoo run" in text


def test_a_data_path_starting_with_a_tilde_is_read_from_the_home_directory(tmp_path, monkeypatch, capsys):
    """QA: ``plce --data=~/csv/pl.csv`` (a ``~`` the shell does not expand) was refused as "data: file
    ~/csv/pl.csv does not exist": the home directory is expanded now, and the run records the expanded path."""
    home = tmp_path / "home"
    (home / "csv").mkdir(parents=True)
    _small_file(home / "csv" / "pl.csv")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert main(["plce", "--data=~/csv/pl.csv", "--out", "run", "--inference", "svi", "--steps", "50",
                 "--num-samples", "50", *FAST]) == 0
    assert read_toml(tmp_path / "run" / "config.toml")["data"] == str(home / "csv" / "pl.csv")
    capsys.readouterr()


def test_plce_scenario_without_treatment_model_uses_the_scenarios(monkeypatch, capsys):
    """``pyrozoo plce --scenario heterogeneity`` passed --treatment-model's default "homoskedastic" explicitly, so
    the run estimated the variance-weighted effect (about 2) against the true theta 1. Without the flag the entry's
    "auto" now decides (heteroskedastic there); the flag, when given, is passed as given."""
    import pyrozoo.runner

    seen = []

    def fake_run_model(config, **kwargs):
        seen.append(dict(config.options))
        raise SystemExit(0)

    monkeypatch.setattr(pyrozoo.runner, "run_model", fake_run_model)
    for extra in ([], ["--treatment-model", "homoskedastic"]):
        try:
            main(["plce", "--scenario", "heterogeneity", *extra])
        except SystemExit:
            pass
    assert "treatment_model" not in seen[0] and seen[1]["treatment_model"] == "homoskedastic"
    capsys.readouterr()


def test_plce_treatment_model_auto_is_a_choice(monkeypatch, capsys):
    """docs/plce.md names `--treatment-model` among the ways to set the entry's treatment model, whose default is
    `auto`, but the command refused `--treatment-model auto` (argparse choices). It is passed as given now."""
    import pyrozoo.runner

    seen = []

    def fake_run_model(config, **kwargs):
        seen.append(dict(config.options))
        raise SystemExit(0)

    monkeypatch.setattr(pyrozoo.runner, "run_model", fake_run_model)
    try:
        main(["plce", "--scenario", "heterogeneity", "--treatment-model", "auto"])
    except SystemExit:
        pass
    assert seen and seen[0]["treatment_model"] == "auto"
    capsys.readouterr()
