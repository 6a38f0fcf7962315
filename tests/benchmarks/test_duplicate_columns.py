"""benchmarks/duplicate_columns.py: --rows, --cols and --repeats below 1 are refused by the parser, before any work."""

import sys

import pytest


@pytest.mark.parametrize(("argv", "message"), [
    (["--repeats", "0"], "argument --repeats: expected an integer >= 1, got 0"),
    (["--rows", "100", "0"], "argument --rows: expected an integer >= 1, got 0"),
    (["--cols", "0"], "argument --cols: expected an integer >= 1, got 0"),
])
def test_counts_below_one_are_refused(load_script, monkeypatch, capsys, argv, message):
    mod = load_script("duplicate_columns")
    monkeypatch.setattr(mod, "pairwise_scan", lambda X: pytest.fail("ran the agreement check"))
    monkeypatch.setattr(sys, "argv", ["duplicate_columns.py", *argv])
    with pytest.raises(SystemExit):
        mod.main()
    assert message in capsys.readouterr().err
