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


BENCHMARKS = __import__("pathlib").Path(__file__).resolve().parents[2] / "benchmarks"


def _run(mod, monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", ["effect_curve.py", *argv])
    mod.main()


@pytest.fixture
def fake_effect_curve(load_script, monkeypatch):
    """The script with fake methods (counting their fits) and the summary's input captured."""
    mod = load_script("effect_curve")
    fits, tables = [], []

    def fake(name):
        def run(d, seed, *args):
            fits.append((name, seed, *args))
            return _fake(name)(d, seed)
        return run

    monkeypatch.setattr(mod, "run_effect_curve", fake("EffectCurve (conformal C)"))
    monkeypatch.setitem(mod.METHODS, "krls", fake("kernel ridge (KRLS)"))
    summarize = mod.summarize
    monkeypatch.setattr(mod, "summarize", lambda df: tables.append(df) or summarize(df))
    mod.fits, mod.tables = fits, tables
    return mod


def test_resume_with_another_n_or_n_pseudo_is_refused(fake_effect_curve, monkeypatch, tmp_path):
    """An existing --out used to skip every fit and print the file's table (its n, n_pseudo) as this run's."""
    mod, out = fake_effect_curve, tmp_path / "ec.csv"
    _run(mod, monkeypatch, "--reps", "1", "--n", "50", "--n-pseudo", "2", "--designs", "talk",
         "--methods", "effect_curve,krls", "--out", str(out))
    rows = pd.read_csv(out)
    assert list(rows.n) == [50, 50] and list(rows.n_pseudo.isna()) == [False, True]  # effect_curve, krls
    before, n_fits = out.read_text(), len(mod.fits)
    with pytest.raises(SystemExit, match=r"--out .*ec\.csv: holds rows with n = 50, not --n 60; use another --out"):
        _run(mod, monkeypatch, "--reps", "1", "--n", "60", "--n-pseudo", "2", "--designs", "talk",
             "--methods", "krls", "--out", str(out))
    with pytest.raises(SystemExit, match="holds EffectCurve rows with n_pseudo = 2, not --n-pseudo 3"):
        _run(mod, monkeypatch, "--reps", "1", "--n", "50", "--n-pseudo", "3", "--designs", "talk",
             "--out", str(out), "--methods", "effect_curve")
    assert out.read_text() == before and len(mod.fits) == n_fits
    # n_pseudo is EffectCurve's setting: the kernel ridge rows resume under any --n-pseudo
    _run(mod, monkeypatch, "--reps", "2", "--n", "50", "--n-pseudo", "3", "--designs", "talk", "--methods", "krls",
         "--out", str(out))
    assert mod.fits[n_fits:] == [("kernel ridge (KRLS)", 1)]


def test_old_file_without_the_settings_is_refused(fake_effect_curve, monkeypatch, tmp_path):
    mod, out = fake_effect_curve, tmp_path / "ec.csv"
    pd.read_csv(BENCHMARKS / "effect_curve_run1.csv").head(8).to_csv(out, index=False)
    before = out.read_text()
    with pytest.raises(SystemExit, match=r"--out .*ec\.csv: its rows do not record n and n_pseudo .*RESULTS\.md "
                                         r"documents no settings for this file"):
        _run(mod, monkeypatch, "--reps", "1", "--n", "150", "--n-pseudo", "2", "--designs", "talk",
             "--out", str(out))
    assert out.read_text() == before and not mod.fits


def test_committed_file_is_read_with_its_documented_settings(fake_effect_curve, monkeypatch, capsys):
    """effect_curve_run1.csv (RESULTS.md: n = 1000, B = 20): a resume with other values is refused; one with those
    values runs nothing and reports only the requested reps, not the file's 200."""
    mod, out = fake_effect_curve, BENCHMARKS / "effect_curve_run1.csv"
    before = out.read_bytes()
    monkeypatch.setattr(mod, "simulate_effect_curve", lambda *a, **k: None)  # every requested fit is in the file
    with pytest.raises(SystemExit, match="holds rows with n = 1000, not --n 150"):
        _run(mod, monkeypatch, "--reps", "1", "--n", "150", "--n-pseudo", "2", "--designs", "talk",
             "--out", str(out))
    with pytest.raises(SystemExit, match="holds EffectCurve rows with n_pseudo = 20, not --n-pseudo 2"):
        _run(mod, monkeypatch, "--reps", "1", "--n-pseudo", "2", "--designs", "talk", "--out", str(out))
    _run(mod, monkeypatch, "--reps", "3", "--designs", "talk", "--methods", "effect_curve,krls", "--out", str(out))
    assert out.read_bytes() == before and not mod.fits
    rows = mod.tables[-1]
    assert sorted(set(rows.rep)) == [0, 1, 2] and set(rows.design) == {"talk"}
    assert set(rows.key) == {"effect_curve", "krls"}
    assert list(mod.summarize(rows).reps) == [3, 3, 3]  # the file's conformal C, C = z, kernel ridge rows
