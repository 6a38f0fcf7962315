"""benchmarks/summary_cut.py: a tiny run prints both rows of its table; a p below 1 is refused by the parser."""

import sys

import pytest


def test_a_tiny_run_prints_both_timings(load_script, monkeypatch, capsys):
    mod = load_script("summary_cut")
    monkeypatch.setattr(sys, "argv", ["summary_cut.py", "--p", "5", "--repeats", "1"])
    mod.main()
    out = capsys.readouterr().out
    assert "| whole az.summary (before) |" in out and "| 20 rows + check_table (now) |" in out


def test_p_below_one_is_refused(load_script, monkeypatch, refuses_args):
    mod = load_script("summary_cut")
    monkeypatch.setattr(mod, "run_model", lambda *a, **k: pytest.fail("fitted"))
    refuses_args(mod.main, ["summary_cut.py", "--p", "0"], "argument --p: expected an integer >= 1, got 0")
