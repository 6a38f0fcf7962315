"""benchmarks/regime_scm.py: --table-only needs an existing --out with fits; a run with no seeds for either method
is refused before any work (both used to print an empty table and exit 0)."""

import json
import sys

import pytest


@pytest.fixture
def regime_scm(load_script, monkeypatch):
    mod = load_script("regime_scm")
    monkeypatch.setattr(mod, "run_one", lambda *a, **k: pytest.fail("fitted"))
    return mod


def _main(mod, monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", ["regime_scm.py", *argv])
    mod.main()


def test_table_only_with_a_missing_out_is_refused(regime_scm, monkeypatch, capsys, tmp_path):
    out = tmp_path / "bench" / "none.jsonl"
    with pytest.raises(SystemExit):
        _main(regime_scm, monkeypatch, "--table-only", "--out", str(out))
    captured = capsys.readouterr()
    assert f"--out: --table-only prints the fits of an existing JSONL file; no such file: {out}" in captured.err
    assert "| setting |" not in captured.out
    assert not out.parent.exists()  # nothing created on disk


def test_table_only_with_an_empty_out_is_refused(regime_scm, monkeypatch, capsys, tmp_path):
    out = tmp_path / "empty.jsonl"
    out.write_text("\n")
    with pytest.raises(SystemExit):
        _main(regime_scm, monkeypatch, "--table-only", "--out", str(out))
    assert f"--out: expected fits in {out}, got an empty file" in capsys.readouterr().err


def test_no_seeds_for_either_method_is_refused_before_any_work(regime_scm, monkeypatch, capsys, tmp_path):
    out = tmp_path / "bench" / "r.jsonl"
    with pytest.raises(SystemExit):
        _main(regime_scm, monkeypatch, "--settings", "shift5", "--seeds", "0", "--gumbel-seeds", "0",
              "--out", str(out))
    assert "--seeds/--gumbel-seeds: nothing to measure" in capsys.readouterr().err
    assert not out.parent.exists()


def test_negative_seeds_are_refused(regime_scm, monkeypatch, capsys, tmp_path):
    with pytest.raises(SystemExit):
        _main(regime_scm, monkeypatch, "--seeds", "-1", "--out", str(tmp_path / "r.jsonl"))
    assert "--seeds: expected an integer >= 0, got -1" in capsys.readouterr().err


def test_table_only_prints_the_fits_of_out(regime_scm, monkeypatch, capsys, tmp_path):
    out = tmp_path / "r.jsonl"
    row = {"setting": "shift5", "seed": 0, "method": "ours", "wall_s": 1.0, "cpu_s": 1.0, "ari": 0.9,
           "oracle_ari": 0.95, "exact_accuracy": 0.8, "observational_identified": True, "mse_ratio_mean": 1.01,
           "mse_ratio_max": 1.1, "loglik": -1.0}
    out.write_text(json.dumps(row) + "\n")
    _main(regime_scm, monkeypatch, "--table-only", "--out", str(out))
    assert "| shift5 | ours | 1 | 0.900 |" in capsys.readouterr().out
