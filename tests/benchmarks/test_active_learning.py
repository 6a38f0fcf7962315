"""benchmarks/active_learning.py: without ``random`` the paired columns are NaN instead of a KeyError; names and
model/dataset/acquisition combinations are checked before any fit."""

import argparse
import sys

import numpy as np
import pytest

from pyrozoo.errors import PyrozooError


def test_report_without_random(load_script, capsys):
    mod = load_script("active_learning")
    results = mod.run_experiment("synthetic", ["acs-fw", "bald"], range(2), model="blr", init_size=10, batch_size=5,
                                 budget=5, progress=False)
    out = mod.report(results.assign(model="blr"), argparse.Namespace(out=None))
    assert list(out.acquisition) == ["acs-fw", "bald"]
    assert np.isnan(out.vs_random).all()
    assert "below random: n/a" in capsys.readouterr().out


def test_report_with_random_is_paired(load_script):
    mod = load_script("active_learning")
    results = mod.run_experiment("synthetic", ["bald", "random"], range(2), model="blr", init_size=10, batch_size=5,
                                 budget=5, progress=False)
    out = mod.report(results.assign(model="blr"), argparse.Namespace(out=None)).set_index("acquisition")
    assert out.loc["random", "vs_random"] == 0.0 and np.isfinite(out.loc["bald", "vs_random"])


@pytest.mark.parametrize(("argv", "message"), [
    (["--acquisitions", "acs-fw,bogus"],
     "--acquisitions: expected comma-separated names from: acs-fw, .*; got 'bogus'"),
    (["--models", "blr,probit"], "--models/--datasets: probit cannot run on boston"),
    (["--models", "bnn", "--acquisitions", "acs-fw-fisher"], "--acquisitions/--models: acquisition: 'acs-fw-fisher'"),
    (["--datasets", "boston,mnist"], "--datasets: expected comma-separated names from: boston, .*; got 'mnist'"),
    # only the reference recipe reads epochs (this ended in the recipe check's PyrozooError traceback)
    (["--models", "neural-linear", "--nl-epochs", "2"], "--nl-epochs: applies only to --nl-recipe reference"),
])
def test_bad_names_are_refused_before_any_fit(load_script, monkeypatch, capsys, argv, message):
    mod = load_script("active_learning")
    monkeypatch.setattr(mod, "run_experiment", lambda *a, **k: pytest.fail("ran an experiment"))
    monkeypatch.setattr(sys, "argv", ["active_learning.py", "--skip-timing", *argv])
    with pytest.raises(SystemExit):
        mod.main()
    err = capsys.readouterr().err
    assert __import__("re").search(message, err), err


def test_check_args_raises_pyrozoo_error(load_script):
    mod = load_script("active_learning")
    args = argparse.Namespace(skip_accuracy=False, from_csv=None, acquisitions="random,random", datasets="boston",
                              models="blr")
    with pytest.raises(PyrozooError, match="--acquisitions: expected each name once"):
        mod.check_args(args)


def test_models_help_lists_every_model(load_script, monkeypatch, capsys):
    mod = load_script("active_learning")
    monkeypatch.setattr(sys, "argv", ["active_learning.py", "--help"])
    with pytest.raises(SystemExit):
        mod.main()
    text = " ".join(capsys.readouterr().out.split())
    for model in ("blr", "neural-linear", "bnn", "gp", "probit"):
        assert f"{model} (" in text


def test_existing_files_in_out_are_refused_before_any_fit(load_script, monkeypatch, capsys, tmp_path):
    mod = load_script("active_learning")
    monkeypatch.setattr(mod, "run_experiment", lambda *a, **k: pytest.fail("ran an experiment"))
    (tmp_path / "active_learning_rmse_neural-linear-reference.png").write_text("kept")
    argv = ["active_learning.py", "--skip-timing", "--datasets", "boston", "--models", "blr,neural-linear",
            "--nl-recipe", "reference", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit, match=r"--out: expected a new file, but .*active_learning_rmse_neural-linear-"
                                         r"reference\.png already exist"):
        mod.main()
    monkeypatch.setattr(sys, "argv", [*argv, "--overwrite"])
    with pytest.raises(pytest.fail.Exception, match="ran an experiment"):
        mod.main()


def test_from_csv_matching_no_file_is_refused_before_any_work(load_script, monkeypatch, capsys, tmp_path):
    """A shell glob matching nothing reaches the script as its own text; this was a pandas FileNotFoundError."""
    mod = load_script("active_learning")
    monkeypatch.setattr(mod, "report", lambda *a, **k: pytest.fail("summarized"))
    pattern = str(tmp_path / "rounds_*.csv")
    monkeypatch.setattr(sys, "argv", ["active_learning.py", "--skip-timing", "--from-csv", pattern])
    with pytest.raises(SystemExit):
        mod.main()
    assert f"--from-csv: expected existing files; no such file: {pattern}" in capsys.readouterr().err
