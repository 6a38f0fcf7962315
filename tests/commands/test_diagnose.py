"""``pyrozoo diagnose`` on run directories holding crafted posteriors (NaN draws, true/false or entry-less
variables, one draw per chain): a warning or a note in words, never a traceback or an empty plots folder."""

from __future__ import annotations

import json
import warnings

import arviz as az
import numpy as np
import torch

from pyrozoo.cli import main


def _run_dir(path, posterior, sample_stats=None, inference="nuts"):
    """A run directory as ``pyrozoo run`` writes it, with ``posterior`` in its idata.nc."""
    path.mkdir()
    (path / "config.toml").write_text(f'model = "normal-gamma"\ninference = "{inference}"\n')
    (path / "metrics.json").write_text(json.dumps({}))
    torch.save({}, path / "params.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # ArviZ: "more chains than draws" for the one-draw runs
        idata = az.from_dict(posterior=posterior, sample_stats=sample_stats)
    idata.attrs["inference"] = inference
    idata.to_netcdf(str(path / "idata.nc"), engine="h5netcdf")
    return path


def test_nan_draws_are_a_warning_not_an_all_clear(tmp_path, capsys):
    rng = np.random.default_rng(0)
    b = rng.normal(size=(2, 400))
    b[0, 7] = np.nan
    run = _run_dir(tmp_path / "run", {"a": rng.normal(size=(2, 400)), "b": b})
    assert main(["diagnose", str(run)]) == 0
    out = capsys.readouterr().out
    assert "warning: b: NaN or inf among the draws" in out and "no convergence warnings" not in out
    assert "note: not plotted, NaN or inf among the draws: b" in out and "could not draw" not in out


def test_exclusions_bool_and_entry_less_variables_plot_without_a_traceback(tmp_path, capsys):
    """``--var ~mu`` raised KeyError in the plots, a bool variable TypeError in ArviZ's KDE, a (2, 50, 0) one
    ValueError; each left an empty plots folder."""
    rng = np.random.default_rng(1)
    run = _run_dir(tmp_path / "run", {"mu": rng.normal(size=(2, 50)), "flag": rng.random((2, 50)) > 0.5,
                                      "e": np.zeros((2, 50, 0))})
    assert main(["diagnose", str(run), "--var", "~mu"]) == 0
    out = capsys.readouterr().out
    assert "note: not plotted, no entries (shape (0,)): e" in out
    assert sorted(p.name for p in (run / "plots").iterdir()) == ["posterior.png", "trace.png"]


def test_a_failed_diagnose_leaves_no_plots_folder(tmp_path, capsys):
    run = _run_dir(tmp_path / "run", {"mu": np.random.default_rng(2).normal(size=(2, 50))})
    assert main(["diagnose", str(run), "--var", "~mu"]) == 2
    assert "var: ~mu excludes every posterior variable" in capsys.readouterr().err
    assert not (run / "plots").exists()


def test_one_draw_per_chain_is_said_once_with_no_plots_or_numpy_warnings(tmp_path, capsys):
    """Two chains of one draw each (``--num-chains 2 --num-samples 1``) were treated as a full run: an empty trace,
    E-BFMI nan in energy.png and numpy warnings. Now like one draw in all: a note, no plots folder."""
    rng = np.random.default_rng(3)
    run = _run_dir(tmp_path / "run", {"mu": rng.normal(size=(2, 1)), "beta": rng.gamma(2.0, size=(2, 1))},
                   sample_stats={"energy": rng.normal(size=(2, 1)), "diverging": np.zeros((2, 1), bool)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["diagnose", str(run)]) == 0
    out = capsys.readouterr().out
    assert "note: only one draw per chain (2 chains)" in out and "--num-samples" in out
    assert "warning:" not in out and not (run / "plots").exists()


def test_a_clean_nuts_run_names_each_check_it_passed(tmp_path, capsys):
    """The all-clear line names the tree-depth check when the run records reached_max_treedepth, beside E-BFMI
    and r_hat; only the negative ("stopped at the maximum tree depth" absent) was checked."""
    rng = np.random.default_rng(4)
    run = _run_dir(tmp_path / "run", {"mu": rng.normal(size=(2, 400))},
                   sample_stats={"energy": rng.normal(size=(2, 400)), "diverging": np.zeros((2, 400), bool),
                                 "reached_max_treedepth": np.zeros((2, 400), bool)})
    assert main(["diagnose", str(run), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert ("no convergence warnings (no divergences or stuck chains, E-BFMI >= 0.3, at most 5% of transitions at "
            "the maximum tree depth, r_hat <= 1.01, bulk and tail ESS >= 200, i.e. 100 per chain)") in out


def test_a_changepoint_at_a_large_offset_is_warned_about_and_plotted(tmp_path, capsys):
    """A changepoint at 1e10 whose two chains sit 3 apart (r_hat 1.77 in the table) was called "the same in every
    draw": no warning, "no convergence warnings", and left out of the plots (1e-9 x its magnitude was "rounding")."""
    rng = np.random.default_rng(0)
    run = _run_dir(tmp_path / "run", {"t": 1e10 + rng.normal(size=(2, 200)) + [[0], [3]]})
    assert main(["diagnose", str(run)]) == 0
    out = capsys.readouterr().out
    assert "warning: t: r_hat 1.7" in out and "no convergence warnings" not in out
    assert "the same in every draw" not in out
    assert sorted(p.name for p in (run / "plots").iterdir()) == ["posterior.png", "trace.png"]


def test_one_fixed_entry_of_a_matrix_is_named_and_the_others_plotted(tmp_path, capsys):
    """W[0, 0] fixed at 1: the plot note named all of W and no plots were written; now only W[0, 0]."""
    rng = np.random.default_rng(0)
    W = rng.normal(size=(2, 200, 2, 3))
    W[..., 0, 0] = 1.0
    run = _run_dir(tmp_path / "run", {"W": W})
    assert main(["diagnose", str(run)]) == 0
    out = capsys.readouterr().out
    assert "note: not plotted, the same in every draw up to rounding: W[0, 0]\n" in out
    assert sorted(p.name for p in (run / "plots").iterdir()) == ["posterior.png", "trace.png"]


def test_a_plots_folder_that_cannot_be_written_is_one_line_before_the_table(tmp_path, capsys, monkeypatch):
    """A file named plots in the run gave the table, then a FileExistsError traceback; a run directory that is not
    writable likewise. Now one line naming the folder, before anything is printed; --no-plots still diagnoses."""
    import os

    from pyrozoo.commands import diagnose

    run = _run_dir(tmp_path / "run", {"mu": np.random.default_rng(3).normal(size=(2, 50))})
    (run / "plots").write_text("x")
    assert main(["diagnose", str(run)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"pyrozoo: error: run: cannot write the plots: {run / 'plots'} exists and is not a "
                            f"directory; pass --no-plots to skip the plots\n")
    assert main(["diagnose", str(run), "--no-plots"]) == 0 and "mu" in capsys.readouterr().out
    (run / "plots").unlink()
    real = os.access  # a read-only run directory (chmod does not stop root, who runs some test machines)
    monkeypatch.setattr(diagnose.os, "access", lambda p, mode: False if str(p) == str(run) else real(p, mode))
    assert main(["diagnose", str(run)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == (f"pyrozoo: error: run: cannot write the plots into {run / 'plots'}: "
                                                   f"{run} is not writable; pass --no-plots to skip the plots\n")
    assert not (run / "plots").exists()


def test_a_broken_symbolic_link_for_plots_is_one_line_before_the_table(tmp_path, capsys):
    """RUN/plots a dangling link (`ln -s /nonexistent/dir RUN/plots`) passed the up-front check (exists() is False
    for it), the table printed, then 'cannot write the plots into RUN/plots (File exists)'. Now one line saying it
    is a broken symbolic link, before anything is printed; a loop of links likewise; --no-plots still diagnoses."""
    run = _run_dir(tmp_path / "run", {"mu": np.random.default_rng(3).normal(size=(2, 50))})
    for target in (str(tmp_path / "nonexistent" / "dir"), "plots"):  # dangling; a link to itself
        (run / "plots").symlink_to(target)
        assert main(["diagnose", str(run)]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err == (f"pyrozoo: error: run: cannot write the plots: {run / 'plots'} is a broken symbolic "
                                f"link (to {target!r}, which does not exist or leads back to itself); pass --no-plots "
                                f"to skip the plots\n")
        assert main(["diagnose", str(run), "--no-plots"]) == 0 and "mu" in capsys.readouterr().out
        (run / "plots").unlink()
    assert not (tmp_path / "nonexistent").exists()


def test_a_cut_table_summarizes_only_the_printed_rows_and_still_warns_about_every_row(tmp_path, capsys,
                                                                                     monkeypatch):
    """QA: diagnose ran az.summary (~1 ms a component) over every component and printed --max-rows of them: 62 s
    for regime-scm's 10,000-row regime_probs and encoder_probs (220k rows) to print 2. az.summary now sees only the
    printed rows; the warnings and notes, from check_table's columns of every row, are the ones the whole table
    (--max-rows 0) gives: a component deep in a long vector that does not mix, or never moves, is still named."""
    import pyrozoo.evaluation.diagnostics as diagnostics

    rng = np.random.default_rng(1)
    z = rng.normal(size=(2, 1000, 300))
    z[0, :, 250] += 5.0  # the chains disagree: r_hat far above 1.01
    z[:, :, 270] = 0.25  # the same in every draw
    run = _run_dir(tmp_path / "run", {"a": rng.normal(size=(2, 1000)), "z": z})
    summarized = []
    real = diagnostics.az.summary

    def counting(data, *args, **kwargs):
        out = real(data, *args, **kwargs)
        summarized.append(len(out))
        return out

    monkeypatch.setattr(diagnostics.az, "summary", counting)
    assert main(["diagnose", str(run), "--max-rows", "3", "--no-plots"]) == 0
    cut = capsys.readouterr().out
    assert sum(summarized) <= 3, summarized  # not the 301 components
    assert "note: the first 3 of 301 rows" in cut
    assert main(["diagnose", str(run), "--max-rows", "0", "--no-plots"]) == 0
    whole = capsys.readouterr().out
    assert sum(summarized) >= 301
    checks = [line for line in cut.splitlines() if line.startswith(("warning:", "note: the same"))]
    assert any("z[250]" in line and "r_hat" in line for line in checks), cut
    assert any("z[270]" in line for line in checks), cut
    assert checks == [line.replace("in the summary table above", "in the whole table: --max-rows 0 prints it")
                      for line in whole.splitlines() if line.startswith(("warning:", "note: the same"))]
