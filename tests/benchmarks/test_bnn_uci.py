"""benchmarks/bnn_uci.py --validation-only: its table has the markdown separator row; --merge files and
--val-fraction are checked before any work."""

import argparse
import sys

import pytest


def test_validation_pilot_table_has_a_separator_row(load_script, capsys):
    mod = load_script("bnn_uci")
    mod.validation_pilot(argparse.Namespace(datasets=["boston"], first_split=0, splits=0))
    header, sep = capsys.readouterr().out.splitlines()[:2]
    assert header.startswith("| dataset | split | fit s | map val RMSE |")
    assert sep == "|---" * (header.count("|") - 1) + "|"


@pytest.mark.parametrize(("argv", "message"), [
    (["--merge", "nothere.jsonl"], "--merge: expected existing files; no such file: nothere.jsonl"),
    (["--val-fraction", "1"], "--val-fraction: expected a number in [0, 1), got 1.0"),
    (["--validation-only", "--val-fraction", "0"], "--val-fraction: --validation-only scores"),
])
def test_bad_arguments_are_refused_before_any_work(load_script, monkeypatch, capsys, tmp_path, argv, message):
    mod = load_script("bnn_uci")
    monkeypatch.chdir(tmp_path)
    for name in ("uci_table", "validation_pilot", "speed"):
        monkeypatch.setattr(mod, name, lambda args: pytest.fail("ran"))
    monkeypatch.setattr(sys, "argv", ["bnn_uci.py", *argv])
    with pytest.raises(SystemExit):
        mod.main()
    assert message in capsys.readouterr().err


def test_zero_splits_is_refused_before_any_work(load_script, monkeypatch, refuses_args):
    """--splits 0 used to print only the published rows and exit 0."""
    mod = load_script("bnn_uci")
    for name in ("uci_table", "validation_pilot", "speed"):
        monkeypatch.setattr(mod, name, lambda args: pytest.fail("ran"))
    refuses_args(mod.main, ["bnn_uci.py", "--splits", "0"], "--splits: expected an integer >= 1, got 0")
