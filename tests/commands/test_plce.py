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
