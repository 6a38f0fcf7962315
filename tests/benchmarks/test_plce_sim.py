"""benchmarks/plce_sim.py: --methods, --scenarios, --paired and --out are checked before any work, naming the valid
names; DoubleML missing -> its methods are left out with a note."""

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

RUN20 = Path(__file__).resolve().parents[2] / "benchmarks" / "plce_sim_run20_s0.csv"


@pytest.fixture
def plce_sim(load_script, monkeypatch):
    mod = load_script("plce_sim")
    monkeypatch.setattr(mod, "simulate_plce", lambda *a, **k: pytest.fail("simulated data before the checks"))
    return mod


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--methods", "PLCE,bogus", "--methods: expected comma-separated names from: PLCE, .*DoubleML RF; got 'bogus'"),
    ("--methods", "PLCE,PLCE", "--methods: expected each name once, got 'PLCE' more than once"),
    ("--scenarios", "baseline,nope", "--scenarios: expected comma-separated names from: baseline, .*; got 'nope'"),
    ("--scenarios", ",", "--scenarios: expected comma-separated names from: .*; got none"),
])
def test_unknown_names_are_refused_before_any_work(plce_sim, monkeypatch, tmp_path, flag, value, message):
    monkeypatch.setattr(sys, "argv", ["plce_sim.py", "--reps", "1", flag, value, "--out", str(tmp_path / "r.csv")])
    with pytest.raises(SystemExit, match=message):
        plce_sim.main()
    assert not (tmp_path / "r.csv").exists()


def test_paired_needs_from_csv(plce_sim, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["plce_sim.py", "--reps", "1", "--paired", "PLCE,OLS",
                                      "--out", str(tmp_path / "r.csv")])
    with pytest.raises(SystemExit):
        plce_sim.main()
    assert not (tmp_path / "r.csv").exists()


def test_paired_names_must_be_methods_of_the_csvs(plce_sim, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["plce_sim.py", "--from-csv", str(RUN20), "--paired", "PLCE,OLS"])
    with pytest.raises(SystemExit, match=r"--paired: expected 'A,B' with two different methods of the CSVs "
                                         r"\(PLCE; PLCE \(no linear controls\); DoubleML lasso\); got 'PLCE,OLS'"):
        plce_sim.main()


def test_paired_table_from_the_csvs(plce_sim, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["plce_sim.py", "--from-csv", str(RUN20), "--paired",
                                      "PLCE,PLCE (no linear controls)"])
    plce_sim.main()
    assert "mse diff mcse" in capsys.readouterr().out


def test_parse_pair_takes_names_with_commas(plce_sim):
    known = ["PLCE", "PLCE, split 1", "OLS"]
    assert plce_sim.parse_pair("PLCE, split 1,PLCE", known) == ("PLCE, split 1", "PLCE")
    assert plce_sim.parse_pair("OLS, PLCE, split 1", known) == ("OLS", "PLCE, split 1")
    with pytest.raises(SystemExit):
        plce_sim.parse_pair("PLCE,PLCE", known)


def test_missing_doubleml_skips_its_methods_with_a_note(load_script, missing, monkeypatch, capsys, tmp_path):
    mod = load_script("plce_sim")
    missing("doubleml")
    monkeypatch.setitem(mod.METHODS, "PLCE", lambda d, s, r: (1.0, 0.1))
    monkeypatch.setitem(mod.METHODS, "DoubleML lasso", lambda d, s, r: pytest.fail("DoubleML ran"))
    out_csv = tmp_path / "r.csv"
    monkeypatch.setattr(sys, "argv", ["plce_sim.py", "--reps", "1", "--n", "100", "--scenarios", "baseline",
                                      "--methods", "PLCE,DoubleML lasso", "--out", str(out_csv)])
    mod.main()
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("note: DoubleML lasso skipped: package(s) doubleml not installed")
    assert out[-1] == out[0]
    assert list(pd.read_csv(out_csv)["method"]) == ["PLCE"]
    assert json.loads(out_csv.with_suffix(".json").read_text())["methods_run"] == ["PLCE"]


def test_out_in_a_missing_folder_is_refused_before_any_work(plce_sim, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", ["plce_sim.py", "--reps", "1", "--methods", "OLS",
                                      "--out", str(tmp_path / "no" / "r.csv")])
    with pytest.raises(SystemExit):
        plce_sim.main()
    assert "--out: expected a path in an existing, writable folder" in capsys.readouterr().err


def test_default_out_does_not_depend_on_the_current_folder(plce_sim, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no benchmarks/ folder here: the default is beside the script
    monkeypatch.setattr(sys, "argv", ["plce_sim.py", "--reps", "1", "--methods", "OLS"])
    with pytest.raises(pytest.fail.Exception, match="simulated data before the checks"):
        plce_sim.main()  # past the --out check, stopped at the first simulation


@pytest.mark.parametrize("existing", [".csv", ".json"])
def test_an_existing_out_is_refused_before_any_work(plce_sim, monkeypatch, capsys, tmp_path, existing):
    """Re-running a recorded command shrunk used to rewrite the committed CSV (and its .json) after one replication."""
    out = tmp_path / "run.csv"
    out.with_suffix(existing).write_text("kept\n")
    monkeypatch.setattr(sys, "argv", ["plce_sim.py", "--reps", "1", "--scenarios", "baseline", "--methods", "OLS",
                                      "--out", str(out)])
    with pytest.raises(SystemExit):
        plce_sim.main()
    assert f"--out: expected a new file, but {out.with_suffix(existing)} already exist(s)" in capsys.readouterr().err
    assert out.with_suffix(existing).read_text() == "kept\n"
    assert not out.with_suffix(".json" if existing == ".csv" else ".csv").exists()


def test_overwrite_replaces_an_existing_out(plce_sim, monkeypatch, tmp_path):
    out = tmp_path / "run.csv"
    out.write_text("kept\n")
    monkeypatch.setattr(sys, "argv", ["plce_sim.py", "--reps", "1", "--methods", "OLS", "--out", str(out),
                                      "--overwrite"])
    with pytest.raises(pytest.fail.Exception, match="simulated data before the checks"):
        plce_sim.main()  # past the --out checks, stopped at the first simulation
