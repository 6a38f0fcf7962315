"""benchmarks/effect_curve.py: econml missing -> causal_forest is left out with a note before any fit; a run left
with no method is refused before any work."""

import sys

import pandas as pd
import pytest


def _fake(name):
    def run(d, seed, *args):
        return [{"method": name, "wall": 0.0, "rmse": 0.1, "cov90": 0.9, "width90": 1.0, "cov95": 0.95,
                 "width95": 1.2}]
    return run


def test_missing_econml_skips_causal_forest_with_a_note(load_script, missing, monkeypatch, capsys, tmp_path):
    mod = load_script("effect_curve")
    missing("econml")
    monkeypatch.setattr(mod, "run_effect_curve", _fake("EffectCurve (conformal C)"))
    monkeypatch.setitem(mod.METHODS, "krls", _fake("kernel ridge (KRLS)"))
    out_csv = tmp_path / "ec.csv"
    monkeypatch.setattr(sys, "argv", ["effect_curve.py", "--reps", "1", "--n", "50", "--designs", "talk",
                                      "--out", str(out_csv)])
    mod.main()  # default --methods: effect_curve, causal_forest, krls
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("note: causal_forest skipped: package(s) econml not installed")
    assert out[-1] == out[0]
    assert set(pd.read_csv(out_csv)["key"]) == {"effect_curve", "krls"}


def test_only_missing_methods_is_refused_before_any_work(load_script, missing, monkeypatch, tmp_path):
    mod = load_script("effect_curve")
    missing("econml")
    monkeypatch.setattr(mod, "simulate_effect_curve", lambda *a, **k: pytest.fail("simulated data"))
    out_csv = tmp_path / "ec.csv"
    monkeypatch.setattr(sys, "argv", ["effect_curve.py", "--methods", "causal_forest", "--out", str(out_csv)])
    with pytest.raises(SystemExit, match="--methods: nothing left to run"):
        mod.main()
    assert not out_csv.exists()


def test_out_in_a_missing_folder_is_refused_before_any_work(load_script, monkeypatch, capsys, tmp_path):
    mod = load_script("effect_curve")
    monkeypatch.setattr(mod, "simulate_effect_curve", lambda *a, **k: pytest.fail("simulated data"))
    monkeypatch.setattr(sys, "argv", ["effect_curve.py", "--methods", "krls", "--out", str(tmp_path / "no" / "e.csv")])
    with pytest.raises(SystemExit):
        mod.main()
    assert "--out: expected a path in an existing, writable folder" in capsys.readouterr().err
