"""Convergence warnings and minimum ESS against hand-written expectations and ArviZ."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest

from pyrozoo.evaluation.diagnostics import ESS_MIN, RHAT_MAX, convergence_warnings, min_ess


def test_convergence_warnings_lists_exactly_the_failing_parameters():
    """Thresholds r_hat > 1.01 and ESS < 400 (module constants). Reference: the expected lines written out by hand
    for a table with r_hat 1.02 / 1.005 / exactly 1.01 and ESS 100 / 500 / exactly 400 (exact list equality)."""
    assert RHAT_MAX == 1.01 and ESS_MIN == 400
    table = pd.DataFrame(
        {"r_hat": [1.02, 1.005, 1.01, np.nan], "ess_bulk": [100.0, 500.0, 400.0, 50.0],
         "ess_tail": [500.0, 100.0, 400.0, 900.0]},
        index=["a", "b", "edge", "one_chain"])
    assert convergence_warnings(table) == [
        "a: r_hat 1.020 > 1.01",
        "a: ess_bulk 100 < 400",
        "b: ess_tail 100 < 400",
        "one_chain: ess_bulk 50 < 400",
    ]
    assert convergence_warnings(table, rhat_max=1.03, ess_min=50) == []
    # a value above the limit prints above it: 1.01047 read 'r_hat 1.010 > 1.01'
    assert convergence_warnings(pd.DataFrame({"r_hat": [1.01047]}, index=["f[10]"])) == ["f[10]: r_hat 1.0105 > 1.01"]
    assert convergence_warnings(table, rhat_max=1.0, ess_min=401) == [
        "a: r_hat 1.020 > 1.0", "a: ess_bulk 100 < 401",
        "b: r_hat 1.005 > 1.0", "b: ess_tail 100 < 401",
        "edge: r_hat 1.010 > 1.0", "edge: ess_bulk 400 < 401", "edge: ess_tail 400 < 401",
        "one_chain: ess_bulk 50 < 401",
    ]


def _ar1(rng, shape, phi):
    x = np.empty(shape)
    x[..., 0] = rng.normal(size=shape[:-1]) / np.sqrt(1 - phi**2)
    for t in range(1, shape[-1]):
        x[..., t] = phi * x[..., t - 1] + rng.normal(size=shape[:-1])
    return x


def test_min_ess_is_the_smallest_bulk_ess():
    """2 chains x 200 seeded AR(1) draws (phi 0.9 for a 3-vector ``w``, phi 0.3 and a heavy tail for ``s``).
    Reference: the minimum over components of ``az.ess(method="bulk")``, rtol 1e-12; the tail ESS minimum differs."""
    rng = np.random.default_rng(4)
    w = np.moveaxis(_ar1(rng, (2, 3, 200), 0.9), 1, -1)  # (chain, draw, 3)
    s = np.exp(_ar1(rng, (2, 200), 0.3)) ** 3
    idata = az.from_dict(posterior={"w": w, "s": s})
    bulk = az.ess(idata, method="bulk")
    want = min(float(bulk[v].values.min()) for v in bulk.data_vars)
    assert min_ess(idata) == pytest.approx(want, rel=1e-12)
    tail = az.ess(idata, method="tail")
    assert abs(min(float(tail[v].values.min()) for v in tail.data_vars) - want) > 1e-3 * want
    only_s = float(bulk["s"].values.min())
    assert min_ess(idata, var_names=["s"]) == pytest.approx(only_s, rel=1e-12)


def test_sampler_warnings_report_low_e_bfmi():
    """A chain whose energy is a slow random walk (E-BFMI ~ 0) is named; independent energies (E-BFMI ~ 2 for iid
    draws, since E (E_n - E_{n-1})^2 = 2 Var E) are not."""
    from pyrozoo.evaluation.diagnostics import sampler_warnings

    rng = np.random.default_rng(1)
    energy = np.stack([rng.normal(size=400), np.cumsum(rng.normal(size=400))])
    idata = az.from_dict(posterior={"mu": rng.normal(size=(2, 400))}, sample_stats={"energy": energy})
    (line,) = sampler_warnings(idata)
    assert line.startswith("chain 1: E-BFMI ") and "< 0.3" in line
    assert az.bfmi(energy)[0] == pytest.approx(2.0, rel=0.2)


def test_sampler_warnings_report_divergences_and_stuck_chains():
    """Divergences and a stuck chain (acceptance ~0, one repeated draw: ArviZ still reports a full ESS) are named;
    a healthy run gives none."""
    from pyrozoo.evaluation.diagnostics import sampler_warnings

    rng = np.random.default_rng(0)
    diverging = np.zeros((2, 30), dtype=bool)
    diverging[1, :29] = True
    acc = np.full((2, 30), 0.85)
    acc[1] = 1e-61
    post = {"mu": np.stack([rng.normal(size=30), np.full(30, 0.3)])}
    idata = az.from_dict(posterior=post, sample_stats={"diverging": diverging, "acceptance_rate": acc})
    lines = sampler_warnings(idata)
    assert lines[0].startswith("29 of 60 transitions divergent (chain 0: 0, chain 1: 29)")
    assert len(lines) == 2 and lines[1].startswith("chain 1: mean acceptance rate 1e-61")
    ok = az.from_dict(posterior=post, sample_stats={"diverging": np.zeros((2, 30), bool), "acceptance_rate": acc[:1]
                                                    .repeat(2, 0)})
    assert sampler_warnings(ok) == [] and sampler_warnings(az.from_dict(posterior=post)) == []


def test_sampler_warnings_report_transitions_at_the_maximum_tree_depth():
    """More than 5% of NUTS transitions stopped at the maximum tree depth is named, with the depth and the count per
    chain; 1 of 60 (under 5%) and a run without the stat (HMC, Gibbs) give none."""
    from pyrozoo.evaluation.diagnostics import sampler_warnings

    rng = np.random.default_rng(0)
    post = {"mu": rng.normal(size=(2, 30))}
    hit = np.zeros((2, 30), dtype=bool)
    hit[1, :6] = True
    depth = np.where(hit, 5, 3)
    idata = az.from_dict(posterior=post, sample_stats={"tree_depth": depth, "reached_max_treedepth": hit})
    (line,) = sampler_warnings(idata)
    assert line.startswith("6 of 60 transitions stopped at the maximum tree depth (5) (chain 0: 0, chain 1: 6)")
    hit[1, 1:] = False
    assert sampler_warnings(az.from_dict(posterior=post, sample_stats={"tree_depth": depth,
                                                                       "reached_max_treedepth": hit})) == []
    assert sampler_warnings(az.from_dict(posterior=post, sample_stats={"tree_depth": depth})) == []


def test_plots_cut_long_variables_to_their_first_entries(tmp_path):
    """A GP-sized vector would make ArviZ draw one panel per entry (and warn past 40): plots show the first 8
    entries of each variable and say so, scalars are untouched."""
    import warnings

    from pyrozoo.evaluation.diagnostics import save_plots

    rng = np.random.default_rng(0)
    idata = az.from_dict(posterior={"f": rng.normal(size=(2, 50, 824)), "W": rng.normal(size=(2, 50, 3, 5)),
                                    "s": rng.normal(size=(2, 50))})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        paths, notes = save_plots(idata, tmp_path)
    assert [p.name for p in paths] == ["trace.png", "posterior.png"] and all(p.stat().st_size > 0 for p in paths)
    assert notes == ["plots show the first 8 of the 824 entries of f", "plots show the first 6 of the 15 entries of W"]


def test_variables_that_never_move_are_named_not_warned_about_or_plotted(tmp_path):
    """EM fixes sigma2 at a point estimate, and an inclusion probability can sit at 1 up to rounding (a range of
    2e-15 made ArviZ's density estimate raise): both are named in notes; no ESS warning, no traceback."""
    import warnings

    from pyrozoo.evaluation.diagnostics import constant_components, ess_threshold, save_plots, summary

    rng = np.random.default_rng(1)
    near_one = 1.0 - rng.uniform(0, 2e-15, size=(2, 100, 1))
    idata = az.from_dict(posterior={"w": rng.normal(size=(2, 100, 2)), "sigma2": np.full((2, 100), 0.7),
                                    "incl": np.concatenate([rng.uniform(size=(2, 100, 2)), near_one], -1)})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        table = summary(idata)
    # sigma2 whole, and only the one entry of incl that sits at 1 (its other entries move and are judged)
    assert constant_components(table) == ["sigma2", "incl[2]"]
    lines = convergence_warnings(table, ess_min=ess_threshold(2))
    assert not [w for w in lines if w.startswith(("sigma2", "incl[2]"))]
    assert ess_threshold(4) == ESS_MIN and ess_threshold(1) == 100
    paths, notes = save_plots(idata, tmp_path)
    assert [p.name for p in paths] == ["trace.png", "posterior.png"]
    assert notes == ["not plotted, the same in every draw up to rounding: sigma2, incl[2]"]
    # EM's sigma2 is fixed up to rounding (sd 1e-16), not exactly: still named, not warned about
    wobble = az.from_dict(posterior={"sigma2": 0.7 + 1e-16 * rng.normal(size=(2, 100))})
    assert constant_components(summary(wobble)) == ["sigma2"]


def test_long_warning_lists_are_cut_with_a_count():
    from pyrozoo.evaluation.diagnostics import shown_warnings

    lines = [f"w[{i}]: r_hat 1.2 > 1.01" for i in range(30)]
    assert shown_warnings(lines[:12]) == lines[:12]
    out = shown_warnings(lines)
    assert out[:12] == lines[:12] and len(out) == 13 and out[-1].startswith("... and 18 more like these")


def test_short_chains_get_one_line_about_ess_not_one_per_component():
    """30 draws per chain can never show an ESS of 100 per chain: one line says so (and which flag to raise) while
    r_hat is still checked; 200 draws are judged component by component."""
    from pyrozoo.evaluation.diagnostics import check_lines, summary

    rng = np.random.default_rng(2)
    short = az.from_dict(posterior={"w": rng.normal(size=(2, 30, 5)), "drift": np.stack([rng.normal(size=30),
                                                                                        rng.normal(size=30) + 5])})
    _, lines = check_lines(short, summary(short))
    assert lines[0].startswith("only 30 draws per chain") and "--num-samples" in lines[0]
    assert not any("ess_" in line for line in lines) and any(line.startswith("drift: r_hat") for line in lines)
    long = az.from_dict(posterior={"w": np.cumsum(rng.normal(size=(2, 200)), axis=1)})  # a random walk: low ESS
    _, lines = check_lines(long, summary(long))
    assert any(line.startswith("w: ess_bulk") for line in lines) and not any("draws per chain" in x for x in lines)


def test_fewer_than_four_draws_per_chain_say_why_r_hat_is_nan(caplog):
    """Below 4 draws per chain ArviZ leaves r_hat, ESS and MCSE NaN: one line names the minimum, and ArviZ's raw
    shape-validation log line stays out of the output."""
    import logging

    from pyrozoo.evaluation.diagnostics import check_lines, summary

    tiny = az.from_dict(posterior={"mu": np.random.default_rng(0).normal(size=(2, 3))})
    with caplog.at_level(logging.WARNING):
        table = summary(tiny)
    assert table["r_hat"].isna().all() and not any("Shape validation" in r.getMessage() for r in caplog.records)
    _, lines = check_lines(tiny, table)
    assert lines == ["only 3 draws per chain: r_hat, ESS and MCSE need at least 4 (left NaN in the table); raise "
                     "--num-samples to at least 100"]


def test_the_plot_note_names_a_constant_entry_by_its_coordinate_as_the_summary_does(tmp_path):
    """A spike-slab run on a user's file names gamma's entries by feature: the note about entries left out of the
    plots uses the same names as the summary table (``gamma[x1]``), not positions (``gamma[0]``)."""
    from pyrozoo.evaluation.diagnostics import constant_components, save_plots, summary

    rng = np.random.default_rng(2)
    gamma = np.concatenate([np.ones((2, 50, 1)), rng.uniform(size=(2, 50, 1)), np.zeros((2, 50, 1))], -1)
    idata = az.from_dict(posterior={"gamma": gamma}, coords={"feature": ["x1", "x2", "x4"]},
                         dims={"gamma": ["feature"]})
    assert constant_components(summary(idata)) == ["gamma[x1]", "gamma[x4]"]
    _, notes = save_plots(idata, tmp_path)
    assert notes == ["not plotted, the same in every draw up to rounding: gamma[x1], gamma[x4]"]


def test_nan_or_inf_draws_are_warned_about_not_cleared_or_called_constant(tmp_path):
    """One NaN draw of ``b`` or one inf draw of ``c[1]`` among 2 x 400 well-mixed draws: the summary's r_hat and ESS
    are NaN (or computed on ranks), which the r_hat/ESS checks skipped, giving an all-clear. Each gets a warning
    naming the component; the inf one is not "the same in every draw" (inf - x <= 1e-9 * inf held); the plots
    leave both out with a note saying why."""
    from pyrozoo.evaluation.diagnostics import check_lines, save_plots, summary

    rng = np.random.default_rng(3)
    b = rng.normal(size=(2, 400))
    b[0, 7] = np.nan
    c = rng.normal(size=(2, 400, 2))
    c[1, 9, 1] = np.inf
    idata = az.from_dict(posterior={"a": rng.normal(size=(2, 400)), "b": b, "c": c}, attrs={"inference": "nuts"})
    table = summary(idata)
    notes, lines = check_lines(idata, table)
    assert [line.split(":")[0] for line in lines] == ["b", "c[1]"]
    assert all("NaN or inf among the draws" in line for line in lines)
    assert notes == []
    # independent draws (no convergence checks) still get the warning
    _, lines = check_lines(idata, table, convergence=False)
    assert [line.split(":")[0] for line in lines] == ["b", "c[1]"]
    _, notes = save_plots(idata, tmp_path)
    assert notes == ["not plotted, NaN or inf among the draws: b, c[1]"]


def test_one_chain_with_nan_energy_does_not_switch_off_e_bfmi_for_the_others():
    """Chain 0's energy has one NaN (inference/mcmc.py records NaN where the kernel kept no Hamiltonian); chain 1's
    is a random walk (E-BFMI ~ 0): chain 0 is named as not checked, chain 1 still gets its E-BFMI warning."""
    from pyrozoo.evaluation.diagnostics import sampler_warnings

    rng = np.random.default_rng(5)
    energy = np.stack([rng.normal(size=400), np.cumsum(rng.normal(size=400))])
    energy[0, 0] = np.nan
    idata = az.from_dict(posterior={"mu": rng.normal(size=(2, 400))}, sample_stats={"energy": energy})
    lines = sampler_warnings(idata)
    assert lines[0] == "chain 0: 1 of 400 energies are NaN or inf, so its E-BFMI is not checked"
    assert len(lines) == 2 and lines[1].startswith("chain 1: E-BFMI ") and "< 0.3" in lines[1]


def test_plots_honour_exclusions_like_the_summary(tmp_path):
    """``~mu`` (ArviZ's exclusion, accepted by summary) selects every variable but mu in the plots too; an unknown
    name, a mix of names and ~names, or excluding everything is a PyrozooError naming var, before any plot or
    folder is made. A single name may be a str."""
    from pyrozoo.errors import PyrozooError
    from pyrozoo.evaluation.diagnostics import save_plots, summary

    rng = np.random.default_rng(6)
    idata = az.from_dict(posterior={"mu": rng.normal(size=(2, 60)), "beta": rng.normal(size=(2, 60))})
    assert list(summary(idata, ["~mu"]).index) == ["beta"]
    assert list(summary(idata, "mu").index) == ["mu"]
    paths, notes = save_plots(idata, tmp_path / "plots", var_names=["~mu"])
    assert [p.name for p in paths] == ["trace.png", "posterior.png"] and notes == []
    for bad, says in [(["~nope"], "no posterior variable(s) ~nope"), (["~mu", "beta"], "got both"),
                      (["~mu", "~beta"], "excludes every posterior variable")]:
        with pytest.raises(PyrozooError, match="^var: ") as err:
            save_plots(idata, tmp_path / "bad", var_names=bad)
        assert says in str(err.value)
        with pytest.raises(PyrozooError, match="^var: "):
            summary(idata, bad)
    assert not (tmp_path / "bad").exists()


def test_bool_and_zero_size_variables_are_plotted_or_named_not_crashing(tmp_path):
    """A true/false variable made ArviZ's KDE raise TypeError (bool subtraction) and a (chain, draw, 0) variable
    made the constant-entry check raise ValueError, both leaving an empty plots folder: the first is plotted as
    0/1, the second named in a note; min_ess skips the entry-less variable."""
    from pyrozoo.evaluation.diagnostics import min_ess, save_plots

    rng = np.random.default_rng(7)
    idata = az.from_dict(posterior={"a": rng.normal(size=(2, 50)), "flag": rng.random((2, 50)) > 0.5,
                                    "e": np.zeros((2, 50, 0))})
    paths, notes = save_plots(idata, tmp_path / "plots")
    assert [p.name for p in paths] == ["trace.png", "posterior.png"]
    assert notes == ["not plotted, no entries (shape (0,)): e"]
    assert min_ess(idata) == pytest.approx(min(float(az.ess(idata, var_names=[v])[v]) for v in ("a", "flag")))


def test_one_draw_per_chain_gives_no_plots_and_no_folder(tmp_path):
    """Two chains of one draw each drew an empty trace and an energy plot with E-BFMI nan, with numpy warnings:
    below 2 draws per chain there are no plots (and no folder), one note says why."""
    import warnings

    from pyrozoo.evaluation.diagnostics import save_plots

    rng = np.random.default_rng(8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # ArviZ: "more chains than draws", which is the point here
        idata = az.from_dict(posterior={"mu": rng.normal(size=(2, 1))},
                             sample_stats={"energy": rng.normal(size=(2, 1))})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths, notes = save_plots(idata, tmp_path / "plots")
    assert paths == [] and notes == ["only 1 draw per chain: no trace, posterior or energy plots (they need at "
                                     "least 2)"]
    assert not (tmp_path / "plots").exists()


def test_a_vector_that_fits_is_not_cut_to_suit_a_matrix_sharing_its_dim(tmp_path):
    """b (8,) on ``unit`` fits in 8 entries; w (2, 8) on (out, unit) is cut to its first 2 x 4. The cut of one dim
    name was shared across variables, so b showed 4 of 8: now each variable is cut on its own."""
    from pyrozoo.evaluation.diagnostics import _first_entries, save_plots

    rng = np.random.default_rng(9)
    idata = az.from_dict(posterior={"b": rng.normal(size=(1, 20, 8)), "w": rng.normal(size=(1, 20, 2, 8))},
                         dims={"b": ["unit"], "w": ["out", "unit"]})
    cut, notes = _first_entries(idata.posterior, 8)
    assert cut["b"].shape == (1, 20, 8) and cut["w"].shape == (1, 20, 2, 4)
    np.testing.assert_array_equal(cut["w"].values, idata.posterior["w"].values[..., :4])
    assert list(cut.data_vars) == ["b", "w"]
    assert notes == ["plots show the first 8 of the 16 entries of w"]
    _, notes = save_plots(idata, tmp_path)
    assert notes == ["plots show the first 8 of the 16 entries of w"]


def test_min_ess_names_an_unknown_variable_like_summary():
    from pyrozoo.errors import PyrozooError

    idata = az.from_dict(posterior={"mu": np.random.default_rng(0).normal(size=(2, 50))})
    with pytest.raises(PyrozooError, match=r"^var: no posterior variable\(s\) nope; the posterior has mu"):
        min_ess(idata, ["nope"])
    assert min_ess(idata, "mu") == pytest.approx(float(az.ess(idata, method="bulk")["mu"]))


def test_a_repeated_exclusion_is_not_a_mix():
    """Review: var_names=["~a", "~a"] raised "got both" (the set of excluded names was counted against the list);
    a repeated ~name excludes it once, like a repeated name includes it once."""
    from pyrozoo.errors import PyrozooError
    from pyrozoo.evaluation.diagnostics import selected_variables

    rng = np.random.default_rng(8)
    idata = az.from_dict(posterior={"a": rng.normal(size=(2, 20)), "b": rng.normal(size=(2, 20))})
    assert selected_variables(idata, ["~a", "~a"]) == ["b"]
    assert selected_variables(idata, ["b", "b"]) == ["b"]
    with pytest.raises(PyrozooError, match="got both"):
        selected_variables(idata, ["~a", "~a", "b"])


def _mixed_idata(seed=0, chains=2, draws=60):
    """A scalar, a 3 x 2 matrix (integer labels), a labelled 4-vector with one entry fixed, and a 25-vector."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(chains, draws, 4))
    c[..., 2] = 0.5
    return az.from_dict(posterior={"a": rng.normal(size=(chains, draws)), "b": rng.normal(size=(chains, draws, 3, 2)),
                                   "c": c, "d": rng.normal(size=(chains, draws, 25))},
                        coords={"f": ["u", "v", "w", "z"]}, dims={"c": ["f"]})


@pytest.mark.parametrize("rows", [0, 1, 4, 7, 9, 12, 20, 100])
def test_summary_with_max_rows_is_the_head_of_the_whole_table(rows):
    """Cut inside the matrix (4: a, b[0, 0..1], b[1, 0]), at a variable's end (7), inside the labelled vector and
    inside the last one: the same rows, names and values as the whole table's head."""
    from pyrozoo.evaluation.diagnostics import summary

    idata = _mixed_idata()
    whole = summary(idata)
    pd.testing.assert_frame_equal(summary(idata, max_rows=rows), whole.head(rows))


def test_summary_with_max_rows_computes_only_the_rows_it_returns(monkeypatch):
    from pyrozoo.evaluation import diagnostics

    seen = []
    real = az.summary

    def counting(data, *args, **kwargs):
        table = real(data, *args, **kwargs)
        seen.append(len(table))
        return table

    monkeypatch.setattr(diagnostics.az, "summary", counting)
    diagnostics.summary(_mixed_idata(), max_rows=9)
    assert sum(seen) <= 9 + 3  # the last variable is cut to whole slices of its first axis


@pytest.mark.parametrize("convergence", [True, False])
def test_check_table_has_the_summary_columns_the_checks_read_for_every_row(convergence):
    from pyrozoo.evaluation.diagnostics import check_lines, check_table, summary

    idata = _mixed_idata()
    whole = summary(idata)
    table = check_table(idata, convergence=convergence)
    cols = ["mean", "sd", *(["ess_bulk", "ess_tail", "r_hat"] if convergence else [])]
    assert list(table.columns) == cols and list(table.index) == list(whole.index)
    np.testing.assert_allclose(table.to_numpy(), whole[cols].to_numpy(), rtol=1e-10)
    assert check_lines(idata, table, convergence=convergence) == check_lines(idata, whole, convergence=convergence)


def test_the_note_on_fixed_components_names_ten_and_counts_the_rest():
    """A spike-slab EM run with p = 3,000 printed every fixed gamma component on one 40,881-character line."""
    from pyrozoo.evaluation.diagnostics import check_lines, check_table

    rng = np.random.default_rng(1)
    gamma = np.ones((1, 50, 300))
    idata = az.from_dict(posterior={"w": rng.normal(size=(1, 50, 3)), "gamma": gamma})
    notes, _ = check_lines(idata, check_table(idata, convergence=False), convergence=False)
    assert notes == ["the same in every draw (fixed by the engine, or settled), so no ESS or r_hat: gamma"]
    gamma[..., 0] = rng.normal(size=(1, 50))  # gamma no longer fixed whole: its 299 fixed components are named
    notes, _ = check_lines(idata, check_table(idata, convergence=False), convergence=False)
    names = ", ".join(f"gamma[{j}]" for j in range(1, 11))
    assert notes == [f"the same in every draw (fixed by the engine, or settled), so no ESS or r_hat: {names}, "
                     f"... and 289 more (299 in all)"]


def test_check_table_of_draws_with_an_inf_raises_no_numpy_warning():
    """check_table computed mean and sd outside its warning filter: a run with one inf draw printed NumPy's raw
    "invalid value encountered in subtract" before pyrozoo's own line about non-finite draws."""
    import warnings

    from pyrozoo.evaluation.diagnostics import check_table

    mu = np.random.default_rng(0).normal(size=(2, 50))
    mu[0, 3] = np.inf
    idata = az.from_dict(posterior={"mu": mu})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        table = check_table(idata, convergence=False)
    assert np.isinf(table.loc["mu", "mean"]) and np.isnan(table.loc["mu", "sd"])


def test_report_lines_judge_the_ess_of_one_markov_chain_and_not_of_independent_draws():
    """One rule for `pyrozoo run` and `pyrozoo diagnose` (run skipped ESS with one chain): a single chain of a
    random walk (ESS far below 100) is warned about, with a note that r_hat needs several chains; the same draws
    tagged as independent (svi) get no ESS line, and run's ``independent_notes=False`` drops the note too. One draw
    of a chain is a note, not an "only 1 draws per chain" warning."""
    from pyrozoo.evaluation.diagnostics import check_table, convergence_judged, report_lines

    walk = {"w": np.cumsum(np.random.default_rng(5).normal(size=(1, 200)), axis=1)}
    chain = az.from_dict(posterior=walk, attrs={"inference": "nuts"})
    assert convergence_judged(chain)
    notes, lines = report_lines(chain, check_table(chain))
    assert notes == ["one chain only (r_hat needs several); ESS is within-chain"]
    assert any(line.startswith("w: ess_bulk") for line in lines) and not any("r_hat" in x for x in lines)
    svi = az.from_dict(posterior=walk, attrs={"inference": "svi-meanfield"})
    assert not convergence_judged(svi)
    notes, lines = report_lines(svi, check_table(svi, convergence=False))
    assert lines == [] and notes[0].startswith("independent draws from the fitted posterior")
    assert report_lines(svi, check_table(svi, convergence=False), independent_notes=False) == ([], [])
    one = az.from_dict(posterior={"w": np.zeros((1, 1))}, attrs={"inference": "hmc"})
    assert not convergence_judged(one)
    notes, lines = report_lines(one, check_table(one, convergence=False))
    assert lines == [] and notes[0].startswith("only one draw: sd, r_hat, ESS")


def _assert_judged_warned_and_plotted(idata: az.InferenceData, tmp_path, warned: str) -> None:
    """No component of ``idata`` is called constant, no note is made, a warning starts with ``warned``, and both
    plots are drawn with every variable."""
    from pyrozoo.evaluation.diagnostics import check_lines, constant_components, save_plots, summary

    table = summary(idata)
    assert constant_components(table) == []
    notes, lines = check_lines(idata, table)
    assert notes == [] and any(line.startswith(warned) for line in lines)
    paths, notes = save_plots(idata, tmp_path)
    assert notes == [] and [p.name for p in paths] == ["trace.png", "posterior.png"]


def test_a_quantity_in_tiny_units_that_varies_is_not_called_constant(tmp_path):
    """_negligible floored the magnitude at 1e-3, so any sd below 1e-12 was "rounding": normal-gamma's beta with
    data in units of 1e6 (mean 1.1e-12, sd 3.3e-13, 30% spread) was noted as "the same in every draw", left out of
    the ESS warnings and the plots. The rule is relative: spread against the draws' own magnitude."""
    from pyrozoo.evaluation.diagnostics import _negligible, constant_components, summary

    rng = np.random.default_rng(5)
    tiny = 1e-12 * (1.1 + 0.3 * rng.normal(size=(2, 100)))
    centred = 1e-13 * rng.normal(size=(2, 100))  # a coefficient at 0 in tiny units: varies (range ~ max|draw|)
    walk = 1e-13 * np.cumsum(rng.normal(size=(2, 200)), axis=1)  # tiny units and a low ESS: warned about
    idata = az.from_dict(posterior={"beta": tiny, "b0": centred, "walk": walk[:, :100]}, attrs={"inference": "nuts"})
    _assert_judged_warned_and_plotted(idata, tmp_path, "walk: ess_bulk")
    # what the rule is for still holds at every scale: EM's point estimates with rounding noise, exact constants
    for scale in (1e-12, 1.0, 1e12):
        wobble = scale * (0.7 + 1e-16 * rng.normal(size=(2, 100)))
        fixed = az.from_dict(posterior={"s": wobble, "z": np.zeros((2, 100)), "c": np.full((2, 100), -3 * scale)})
        assert constant_components(summary(fixed)) == ["s", "z", "c"]
    # direct calls: spread against the magnitude, no absolute floor; inf and NaN spreads are never rounding
    assert _negligible(3.3e-13, 1.1e-12) == np.False_ and _negligible(1e-13, 3e-13) == np.False_
    assert _negligible(0.0, 0.0) == np.True_ and _negligible(1e-16, 0.7) == np.True_
    # rounding is ROUNDING_STEPS float64 steps at the magnitude: 1e-28 at 1e-12 is (1e-24, 5,000 steps, is not)
    assert _negligible(1e-28, 1e-12) == np.True_ and _negligible(2e-15, 1.0) == np.True_
    assert not _negligible(np.inf, np.inf) and not _negligible(np.nan, 1.0)


def test_a_moving_quantity_at_a_large_offset_is_not_called_constant(tmp_path):
    """_negligible called a spread of up to 1e-9 x the magnitude rounding, though float64 holds 2.2e-16: a changepoint
    at 1e10 whose chains sit 3 apart (r_hat 1.77, ESS 3) was noted "the same in every draw", its warnings dropped
    and it was left out of the plots. Rounding is now ROUNDING_STEPS steps of the stored dtype's eps."""
    from pyrozoo.evaluation.diagnostics import ROUNDING_STEPS, constant_components, summary

    rng = np.random.default_rng(0)
    t = 1e10 + rng.normal(size=(2, 200)) + [[0], [3]]
    unix = 1.7e9 + rng.normal(size=(2, 200))  # a Unix-time changepoint known to a second
    idata = az.from_dict(posterior={"t": t, "unix": unix}, attrs={"inference": "nuts"})
    _assert_judged_warned_and_plotted(idata, tmp_path, "t: r_hat")
    # the bound in float64 steps: an sd of 1 step at 1e10 is rounding, one of 1.1 ROUNDING_STEPS steps is not
    step = np.finfo(np.float64).eps * 1e10
    assert ROUNDING_STEPS == 100
    for steps, fixed in ((1, ["c"]), (1.1 * ROUNDING_STEPS, [])):
        c = 1e10 + steps * step * rng.choice([-1.0, 1.0], size=(2, 200))
        assert constant_components(summary(az.from_dict(posterior={"c": c}))) == fixed


def test_rounding_is_judged_in_the_precision_the_draws_were_stored_in(tmp_path):
    """The same draws, a probability at 1 that wobbles by one or two float32 steps (1 - 6e-8, 1 - 1.2e-7) in long
    runs: stored as float32 that is rounding (named, not warned about, not plotted); stored as float64 it is 2e6
    float64 steps, a quantity that moves (and mixes badly). The dtype reaches the notes, the warnings and the plots."""
    from pyrozoo.evaluation.diagnostics import check_lines, posterior_dtypes, save_plots, summary

    rng = np.random.default_rng(3)
    blocks = (np.arange(200) // 50) % 3  # long runs: a sticky chain, low ESS and r_hat above 1.01 if it moved
    p = (1.0 - 6e-8 * np.stack([blocks, blocks[::-1]])).astype(np.float32)
    mu = rng.normal(size=(2, 200))
    for dtype, fixed in ((np.float32, True), (np.float64, False)):
        idata = az.from_dict(posterior={"mu": mu, "p": p.astype(dtype)}, attrs={"inference": "gibbs"})
        assert posterior_dtypes(idata)["p"] == dtype
        notes, lines = check_lines(idata, summary(idata))
        assert (notes == ["the same in every draw (fixed by the engine, or settled), so no ESS or r_hat: p"]) == fixed
        assert any(line.startswith("p: ") for line in lines) != fixed
        paths, plot_notes = save_plots(idata, tmp_path / str(np.dtype(dtype)))
        assert (plot_notes == ["not plotted, the same in every draw up to rounding: p"]) == fixed
        assert len(paths) == 2


def test_one_constant_entry_of_a_matrix_leaves_the_other_entries_plotted(tmp_path):
    """A matrix with one entry fixed went whole out of the plots ("other shapes go whole"), so nothing was plotted;
    now its moving entries are flattened onto one axis labelled as the summary names them. Two vectors on one axis
    with different entries fixed shared the renamed axis, so one was padded with NaN and the posterior plot failed."""
    from pyrozoo.evaluation.diagnostics import _drop_constant_entries, save_plots

    rng = np.random.default_rng(0)
    W = rng.normal(size=(2, 200, 2, 3))
    W[..., 0, 0] = 1.0
    idata = az.from_dict(posterior={"W": W, "a": rng.normal(size=(2, 200))})
    paths, notes = save_plots(idata, tmp_path / "m")
    assert notes == ["not plotted, the same in every draw up to rounding: W[0, 0]"]
    assert [p.name for p in paths] == ["trace.png", "posterior.png"]
    post, const, bad = _drop_constant_entries(idata.posterior)
    assert const == ["W[0, 0]"] and bad == [] and list(post.data_vars) == ["W", "a"]
    assert list(post["W"]["W_moving"].values) == ["0, 1", "0, 2", "1, 0", "1, 1", "1, 2"]
    np.testing.assert_array_equal(post["W"].values, W.reshape(2, 200, 6)[..., 1:])
    g, b = rng.normal(size=(2, 50, 3)), rng.normal(size=(2, 50, 3))
    g[..., 0], b[..., 1] = 1.0, 2.0
    vec = az.from_dict(posterior={"g": g, "b": b}, coords={"feature": ["x1", "x2", "x3"]},
                       dims={"g": ["feature"], "b": ["feature"]})
    paths, notes = save_plots(vec, tmp_path / "v")
    assert notes == ["not plotted, the same in every draw up to rounding: g[x1], b[x2]"] and len(paths) == 2
    post, _, _ = _drop_constant_entries(vec.posterior)
    assert not np.isnan(post["g"].values).any() and not np.isnan(post["b"].values).any()


def test_variables_beyond_max_vars_are_named_in_a_note(tmp_path):
    """save_plots left variables past the first max_vars out of the plots without a word."""
    from pyrozoo.evaluation.diagnostics import save_plots

    rng = np.random.default_rng(1)
    idata = az.from_dict(posterior={f"v{i}": rng.normal(size=(2, 20)) for i in range(5)})
    paths, notes = save_plots(idata, tmp_path / "a", max_vars=3)
    assert notes == ["plots show the first 3 of the 5 variables; not plotted: v3, v4 (--var NAME plots them)"]
    assert len(paths) == 2
    assert save_plots(idata, tmp_path / "b", var_names=["v0", "v1", "v2", "v3"], max_vars=3)[1] == []


def test_min_ess_skips_a_component_whose_ess_is_nan():
    """One NaN draw of ``a`` made min_ess NaN although ``b`` has an ESS; NaN only when no component has one."""
    import warnings

    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 100))
    a[0, 3] = np.nan
    idata = az.from_dict(posterior={"a": a, "b": rng.normal(size=(2, 100))})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "All-NaN slice" or ArviZ's NaN warning leaks out
        assert min_ess(idata) == pytest.approx(float(az.ess(idata, var_names=["b"])["b"]), rel=1e-12)
        assert np.isnan(min_ess(idata, var_names=["a"]))


def test_a_float32_posterior_that_moves_by_tens_of_steps_is_warned_about_and_exact_constants_stay_constant():
    """At 100 steps of the stored dtype, float32 draws of sd 0.0073 around 1000 (61 float32 steps, chains apart,
    r_hat 2.2) were noted "the same in every draw" and their r_hat warning dropped. check_lines now judges the draws'
    own range (RANGE_STEPS) rather than the summary's sd, which need not be 0 for identical draws (a spike-slab EM
    run's 1000 identical inclusion probabilities around 4e-4 had sds up to 8e-18, 86 float64 steps): constant."""
    from pyrozoo.evaluation.diagnostics import RANGE_STEPS, check_lines, summary

    assert RANGE_STEPS == 16
    rng = np.random.default_rng(0)
    mu = (1000 + 0.003 * rng.normal(size=(4, 200)) + 0.006 * np.arange(4)[:, None]).astype(np.float32)
    idata = az.from_dict(posterior={"mu": mu}, attrs={"inference": "nuts"})
    notes, lines = check_lines(idata, summary(idata))
    assert notes == [] and any(line.startswith("mu: r_hat") for line in lines)
    same = np.full((4, 250), 4.1386270371530720e-04)
    idata = az.from_dict(posterior={"p": same, "q": rng.normal(size=(4, 250))}, attrs={"inference": "nuts"})
    notes, lines = check_lines(idata, summary(idata))
    assert notes == ["the same in every draw (fixed by the engine, or settled), so no ESS or r_hat: p"]


def _chains(rng, chains, draws):
    """Components of many kinds, (K, chains, draws): white noise, random walks, AR(0.9), 0/1 indicators, chains
    stuck at one value but one draw, small integers; those with any spread."""
    white = rng.normal(size=(6, chains, draws))
    walk = np.cumsum(rng.normal(size=(4, chains, draws)), axis=2)
    ar = np.zeros((4, chains, draws))
    noise = rng.normal(size=ar.shape)
    for t in range(1, draws):
        ar[:, :, t] = 0.9 * ar[:, :, t - 1] + noise[:, :, t]
    binary = (rng.random(size=(4, chains, draws)) < rng.random(size=(4, 1, 1))).astype(float)
    stuck = np.repeat(rng.normal(size=(3, chains, 1)), draws, axis=2)
    stuck[:, 0, 0] += 1.0
    ints = rng.integers(0, 3, size=(4, chains, draws)).astype(float)
    x = np.concatenate([white, walk, ar, binary, stuck, ints])
    flat = x.reshape(len(x), -1)
    return x[flat.max(1) > flat.min(1)]


@pytest.mark.parametrize("chains", [1, 2, 4])
def test_rank_diagnostics_are_arvizs_numbers_for_all_components_at_once(chains):
    """convergence_figures computes bulk and tail ESS and r_hat of all components at once; they must be ArviZ's
    (what `pyrozoo run` and `diagnose` judge), stuck chains, ties and indicators included."""
    import warnings

    from pyrozoo.evaluation.diagnostics import _rank_diagnostics

    rng = np.random.default_rng(3)
    for draws in (4, 5, 7, 10, 33, 200):
        x = _chains(rng, chains, draws)
        post = az.convert_to_dataset({"v": np.moveaxis(x, 0, 2)})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = [az.ess(post, method="bulk")["v"].values, az.ess(post, method="tail")["v"].values,
                    az.rhat(post)["v"].values]
        for got, ref in zip(_rank_diagnostics(x, chunk=7), want, strict=True):
            np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9, equal_nan=True)


def test_convergence_figures_say_what_run_warns_about_a_stuck_nuts_run():
    """The reproducer's run (51 of 60 transitions divergent, both chains stuck, r_hat 3e15) was recorded as
    nothing; the figures count run's warning lines, give the divergences, max r_hat and min bulk ESS over the
    moving components, and match those computed from ArviZ's own table."""
    from pyrozoo.evaluation.diagnostics import (
        check_table,
        convergence_figures,
        convergence_note,
        convergence_record,
        convergence_warnings,
        sampler_warnings,
    )

    rng = np.random.default_rng(0)
    mu = np.stack([np.full(30, 0.4), np.full(30, 0.7)]) + 1e-3 * rng.normal(size=(2, 30))  # chains far apart
    diverging = np.zeros((2, 30), dtype=bool)
    diverging[:, 5:] = True
    post = {"mu": mu, "fixed": np.full((2, 30), 2.0), "b": rng.normal(size=(2, 30))}
    stats = {"diverging": diverging, "acceptance_rate": np.full((2, 30), 1e-9)}
    idata = az.from_dict(posterior=post, sample_stats=stats, attrs={"inference": "nuts"})
    figures = convergence_figures(idata)
    table = check_table(idata)
    assert figures == pytest.approx(convergence_figures(idata, table), rel=1e-9)  # ArviZ's numbers
    assert figures["divergent"] == 50 and figures["transitions"] == 60 and figures["chains"] == 2
    assert figures["max_r_hat"] == pytest.approx(float(np.nanmax(table.loc[["mu", "b"], "r_hat"])), rel=1e-9)
    assert figures["max_r_hat"] > 1.5 and figures["ess_threshold"] is None  # 30 draws: ESS not judged
    assert figures["min_ess_bulk"] == pytest.approx(float(table.loc[["mu", "b"], "ess_bulk"].min()), rel=1e-9)
    assert figures["sampler_warnings"] == len(sampler_warnings(idata)) == 3
    assert figures["convergence_warnings"] == len(convergence_warnings(table, ess_min=0)) >= 1
    assert figures["converged"] is False
    note = convergence_note(figures)
    assert note.startswith("not converged: 50 of 60 transitions divergent, max r_hat ") and "warnings" in note
    # healthy chains with enough draws: converged; independent draws: nothing recorded; too short to judge: None
    good = az.from_dict(posterior={"b": rng.normal(size=(2, 300))}, attrs={"inference": "gibbs"})
    assert convergence_figures(good)["converged"] is True and convergence_note(convergence_figures(good)) == "ok"
    assert convergence_record(az.from_dict(posterior={"b": rng.normal(size=(2, 300))},
                                           attrs={"inference": "svi-meanfield"})) == {}
    many = az.from_dict(posterior={"x": np.moveaxis(_chains(rng, 2, 150), 0, 2)}, attrs={"inference": "gibbs"})
    table = check_table(many)
    assert convergence_figures(many)["convergence_warnings"] == len(convergence_warnings(table, ess_min=200)) > 0
    short = convergence_figures(az.from_dict(posterior={"b": rng.normal(size=(1, 50))}, attrs={"inference": "nuts"}))
    assert short["converged"] is None and "max_r_hat" not in short
    assert convergence_note(short).startswith("not judged")


def test_chains_stuck_at_different_values_are_not_converged():
    """Two chains each constant at another value have r_hat = inf (between-chain variance, none within): the
    warnings and the convergence figures kept only finite r_hat, so with too few draws for ESS to be judged such a
    run was 'converged' and `diagnose` said nothing about r_hat. inf now counts as above the limit."""
    from pyrozoo.evaluation.diagnostics import convergence_figures, report_lines, summary

    x = np.repeat(np.arange(2, dtype=float)[:, None], 40, axis=1)
    idata = az.from_dict(posterior={"a": x}, attrs={"inference": "gibbs"})
    figures = convergence_figures(idata)
    assert figures["max_r_hat"] == float("inf") and figures["converged"] is False
    assert figures["convergence_warnings"] == 1
    assert "a: r_hat inf > 1.01" in report_lines(idata, summary(idata))[1]


def test_a_note_not_judged_says_why_and_names_the_plural_right():
    """Every component fixed by the engine (2 chains of 200 draws of a constant) was 'not judged (2 chains of 200
    draws: too few for r_hat or ESS)', false for 200 draws; one draw per chain read '2 chains of 1 draws'. The note
    now tells the two apart: the figures of a run with nothing moving have max_r_hat (or, with one chain,
    min_ess_bulk) present but None."""
    from pyrozoo.evaluation.diagnostics import convergence_figures, convergence_note

    def note(values):
        return convergence_note(convergence_figures(az.from_dict(posterior={"x": values},
                                                                 attrs={"inference": "nuts"})))

    rng = np.random.default_rng(1)
    fixed = "no component moves, every one is fixed by the engine)"
    assert note(np.ones((2, 200))) == f"not judged (2 chains of 200 draws: {fixed}"
    assert note(np.ones((1, 200))) == f"not judged (1 chain of 200 draws: {fixed}"
    assert note(np.ones((2, 30))) == f"not judged (2 chains of 30 draws: {fixed}"
    assert note(rng.normal(size=(2, 1))) == "not judged (2 chains of 1 draw: too few for r_hat or ESS)"
    assert note(rng.normal(size=(1, 3))) == "not judged (1 chain of 3 draws: too few for r_hat or ESS)"
    assert note(rng.normal(size=(1, 50))) == ("not judged (1 chain of 50 draws: one chain has no r_hat, and too few "
                                              "draws to judge ESS)")


def test_a_note_ok_says_what_was_judged():
    """One chain of 200 draws said a plain 'ok' though r_hat was never judged (2 chains of 50 draws say 'ok (r_hat
    only: ...)'): it now says it judged ESS only."""
    from pyrozoo.evaluation.diagnostics import convergence_figures, convergence_note

    rng = np.random.default_rng(2)
    one = convergence_figures(az.from_dict(posterior={"b": rng.normal(size=(1, 300))}, attrs={"inference": "gibbs"}))
    assert one["converged"] is True and "max_r_hat" not in one
    assert convergence_note(one) == "ok (ESS only: one chain, no r_hat)"
    two = convergence_figures(az.from_dict(posterior={"b": rng.normal(size=(2, 300))}, attrs={"inference": "gibbs"}))
    assert convergence_note(two) == "ok"


def test_a_note_not_converged_names_tail_ess_nan_draws_and_other_sampler_warnings():
    """A run flagged only for tail ESS (diagnose: 'beta: ess_tail 149 < 200') was 'not converged: 1 warning', no
    reason; likewise NaN draws and stuck chains. The figures now record min_ess_tail (ArviZ's, over the moving
    components) and how many components have NaN or inf draws, and the note names each reason; figures of an older
    pyrozoo without them read as before."""
    from pyrozoo.evaluation.diagnostics import check_table, convergence_figures, convergence_note

    base = {"chains": 2, "draws": 200, "max_r_hat": 1.003, "min_ess_bulk": 310.0, "ess_threshold": 200,
            "sampler_warnings": 0, "convergence_warnings": 1, "converged": False}
    assert convergence_note({**base, "min_ess_tail": 149.2}) == "not converged: min ess_tail 149 < 200, 1 warning"
    older = convergence_note(base)  # no min_ess_tail recorded
    assert older == "not converged: 1 warning"
    assert convergence_note({**base, "min_ess_tail": 300.0, "nonfinite": 2, "convergence_warnings": 2}) == (
        "not converged: 2 components with NaN or inf draws, 2 warnings")
    assert convergence_note({**base, "min_ess_tail": 300.0, "convergence_warnings": 0, "sampler_warnings": 2,
                             "divergent": 3, "transitions": 400}) == (
        "not converged: 3 of 400 transitions divergent, 1 sampler warning (stuck chain, E-BFMI or tree depth), "
        "2 warnings")
    rng = np.random.default_rng(3)
    post = {"a": rng.normal(size=(2, 300)), "b": rng.standard_t(1.2, size=(2, 300)), "c": np.full((2, 300), 1.0)}
    post["a"][1, 7] = np.nan
    idata = az.from_dict(posterior=post, attrs={"inference": "gibbs"})
    figures = convergence_figures(idata)
    assert figures["nonfinite"] == 1 and figures["converged"] is False
    assert figures["min_ess_tail"] == pytest.approx(float(check_table(idata).loc["b", "ess_tail"]), rel=1e-9)
    assert "1 component with NaN or inf draws" in convergence_note(figures)


def test_min_ess_skips_a_component_with_inf_draws():
    # ArviZ ranks inf draws and gives the component a finite ESS (about 76 here, below b's): skipped, as NaN is
    rng = np.random.default_rng(1)
    a = rng.normal(size=(2, 100))
    a[1, 7] = np.inf
    idata = az.from_dict(posterior={"a": a, "b": rng.normal(size=(2, 100))})
    assert float(az.ess(idata, var_names=["a"])["a"]) < float(az.ess(idata, var_names=["b"])["b"])
    assert min_ess(idata) == pytest.approx(float(az.ess(idata, var_names=["b"])["b"]), rel=1e-12)
    assert np.isnan(min_ess(idata, var_names=["a"]))
