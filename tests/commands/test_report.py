"""``pyrozoo report`` (pyrozoo/commands/report.py): the console output over run folders."""

from __future__ import annotations

from pyrozoo.cli import main


def test_report_over_runs_without_a_markov_chain_prints_and_exits_cleanly(tmp_path, capsys):
    # no run of a Markov-chain engine: the table has no convergence column; the report crashed (KeyError) after
    # writing its files, before saying so
    runs = tmp_path / "runs"
    assert main(["run", "normal-gamma", "--inference", "svi", "--steps", "5", "--num-samples", "5", "-o", "n=10",
                 "--no-progress", "--device", "cpu", "--out", str(runs / "a")]) == 0
    capsys.readouterr()
    assert main(["report", str(runs), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 run: 1 ok\n")
    assert "not converged" not in out and "warning:" not in out
    assert out.count("wrote ") == 4
