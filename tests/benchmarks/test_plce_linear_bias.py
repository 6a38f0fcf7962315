"""benchmarks/plce_linear_bias.py --default-from: plce_sim CSVs stand in for variant ``default`` only if they hold
today's default (one replication per CSV refit before any other work); CSVs before session 11 are refused."""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _plce_sim_csv(tmp_path: Path, *, n: int = 1000, n_repeats: int = 1) -> str:
    """A plce_sim.py result with seed offset 250: baseline reps 0 and 1 (data seeds 250 and 1250)."""
    path = tmp_path / "plce_sim_fake.csv"
    pd.DataFrame({"scenario": ["baseline"] * 3, "method": ["PLCE", "OLS", "PLCE"], "rep": [0, 0, 1],
                  "estimate": [0.95, 0.9, 0.97], "se": [0.03, 0.05, 0.031], "ci_low": 0.0, "ci_high": 2.0,
                  "truth": 1.0, "seconds": 1.0}).to_csv(path, index=False)
    path.with_suffix(".json").write_text(json.dumps({"args": {"n": n, "n_repeats": n_repeats, "seed": 250}}))
    return str(path)


def _fit(results: dict, calls: list):
    def fit(seed, scenario, variant, n_repeats):
        calls.append((seed, scenario, variant, n_repeats))
        return results[variant]
    return fit


def test_rows_that_are_not_todays_default_are_refused(load_script, tmp_path):
    mod = load_script("plce_linear_bias")
    calls = []
    fit = _fit({"default": (0.9698, 0.0337), "no_linear_controls": (0.95, 0.03)}, calls)
    with pytest.raises(SystemExit, match="does not hold today's default PLCE: data seed 250 .*it matches variant "
                                         "no_linear_controls"):
        mod.recorded_default([_plce_sim_csv(tmp_path)], {250, 1250}, 1, fit=fit)
    assert calls[0] == (250, "baseline", "default", 1)


def test_rows_that_are_todays_default_are_used(load_script, tmp_path):
    mod = load_script("plce_linear_bias")
    calls = []
    rows = mod.recorded_default([_plce_sim_csv(tmp_path)], {250, 1250}, 1, fit=_fit({"default": (0.95, 0.03)}, calls))
    assert calls == [(250, "baseline", "default", 1)]  # one replication checked per CSV
    assert list(rows.seed) == [250, 1250] and set(rows.variant) == {"default"}
    np.testing.assert_array_equal(rows.estimate, [0.95, 0.97])


@pytest.mark.parametrize(("meta", "message"), [({"n": 500}, "was run with n = 500, n_repeats = 1"),
                                                ({"n_repeats": 5}, "was run with n = 1000, n_repeats = 5")])
def test_other_designs_are_refused(load_script, tmp_path, meta, message):
    mod = load_script("plce_linear_bias")
    with pytest.raises(SystemExit, match=message):
        mod.recorded_default([_plce_sim_csv(tmp_path, **meta)], {250}, 1, fit=_fit({}, []))


def test_missing_json_and_uncovered_seeds_are_refused(load_script, tmp_path):
    mod = load_script("plce_linear_bias")
    path = _plce_sim_csv(tmp_path)
    with pytest.raises(SystemExit, match="none of .* has PLCE rows for this run's data seeds"):
        mod.recorded_default([path], {251}, 1, fit=_fit({}, []))
    Path(path).with_suffix(".json").unlink()
    with pytest.raises(SystemExit, match="with its .json beside it"):
        mod.recorded_default([path], {250}, 1, fit=_fit({}, []))


@pytest.mark.parametrize("argv", [["--part", "linear", "--default-from", "x.csv"],
                                  ["--part", "sim", "--variants", "default,orthogonal", "--default-from", "x.csv"],
                                  ["--part", "sim", "--scenarios", "baseline,nope"]])
def test_inconsistent_flags_are_refused_before_any_fit(load_script, monkeypatch, argv):
    mod = load_script("plce_linear_bias")
    monkeypatch.setattr(mod, "_task", lambda task: pytest.fail("fitted"))
    monkeypatch.setattr(sys, "argv", ["plce_linear_bias.py", *argv])
    with pytest.raises(SystemExit):
        mod.main()


def test_summarize_sim_without_default_rows(load_script):
    mod = load_script("plce_linear_bias")
    df = pd.DataFrame({"part": "sim", "scenario": "baseline", "seed": [0, 1000], "variant": "orthogonal",
                       "estimate": [1.1, 0.9], "se": 0.1, "truth": 1.0, "ols": np.nan, "ols_se": np.nan,
                       "n_basis": 90, "seconds": 1.0})
    table = mod.summarize_sim(df)
    assert table.loc[("baseline", "orthogonal"), "est - default (MCSE)"] == ""


def test_run13_is_refused_as_no_linear_controls(load_script, monkeypatch, tmp_path):
    """The QA case: run 13 (before session 11) does not hold today's default (two real fits of one n = 1000 data
    set, a few seconds). Its rows were the session-11 no_linear_controls; since session 13's EMVS change (theta
    step, neighbour search) they match no variant of today's code."""
    mod = load_script("plce_linear_bias")
    monkeypatch.setattr(sys, "argv", ["plce_linear_bias.py", "--part", "sim", "--seeds", "1", "--seed-offset", "250",
                                      "--scenarios", "baseline", "--variants", "orthogonal", "--default-from",
                                      str(BENCHMARKS / "plce_sim_run13_s250.csv"), "--out", str(tmp_path / "o.csv")])
    with pytest.raises(SystemExit, match="does not hold today's default PLCE: data seed 250"):
        mod.main()
    assert not (tmp_path / "o.csv").exists()


def test_out_in_a_missing_folder_is_refused_before_any_fit(load_script, monkeypatch, capsys, tmp_path):
    mod = load_script("plce_linear_bias")
    monkeypatch.setattr(mod, "_task", lambda task: pytest.fail("fitted"))
    monkeypatch.setattr(sys, "argv", ["plce_linear_bias.py", "--seeds", "1", "--variants", "x_only",
                                      "--out", str(tmp_path / "no" / "r.csv")])
    with pytest.raises(SystemExit):
        mod.main()
    assert "--out: expected a path in an existing, writable folder" in capsys.readouterr().err


def test_an_existing_out_is_refused_before_any_fit(load_script, monkeypatch, refuses_existing_out, tmp_path):
    mod = load_script("plce_linear_bias")
    monkeypatch.setattr(mod, "_task", lambda *a: pytest.fail("fitted before the --out check"))
    out = tmp_path / "r.csv"
    refuses_existing_out(mod.main, ["plce_linear_bias.py", "--seeds", "1", "--out", str(out)], out,
                         "fitted before the --out check")
