"""benchmarks/bnn_uci.py --validation-only: its table has the markdown separator row."""

import argparse


def test_validation_pilot_table_has_a_separator_row(load_script, capsys):
    mod = load_script("bnn_uci")
    mod.validation_pilot(argparse.Namespace(datasets=["boston"], first_split=0, splits=0))
    header, sep = capsys.readouterr().out.splitlines()[:2]
    assert header.startswith("| dataset | split | fit s | map val RMSE |")
    assert sep == "|---" * (header.count("|") - 1) + "|"
