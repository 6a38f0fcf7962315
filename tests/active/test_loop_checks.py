"""What the loop checks besides the problem: every batch an acquisition returns (a user-defined one may return too
many, no, repeated or out-of-range positions), ``model_options`` keys before the first fit, and the metric that
``summarize`` / ``plot_learning_curves`` default to. Small NumPy problems and blr, so every test is quick."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pyrozoo.active import loop
from pyrozoo.active.acs_fw import ACSFW
from pyrozoo.active.base import Acquisition, Batch, check_batch
from pyrozoo.active.loop import (
    ACTIVE_MODELS,
    ActiveProblem,
    plot_learning_curves,
    run_active_learning,
    run_experiment,
    summarize,
)
from pyrozoo.active.posteriors import BLRPoolPosterior
from pyrozoo.errors import PyrozooError

RUN = {"init_size": 10, "batch_size": 5, "budget": 10, "seed": 0, "progress": False}


def _problem(task: str = "regression") -> ActiveProblem:
    rng = np.random.default_rng(0)
    x = np.c_[np.ones(60), rng.standard_normal((60, 3))]
    y = x.sum(1) + 0.1 * rng.standard_normal(60)
    if task == "classification":
        y = (y > 1).astype(float)
    return ActiveProblem("t", x[:50], y[:50], x[50:], y[50:], task)


class Custom(Acquisition):
    """Returns ``make(pool_size, b)``; fails the test (instead of hanging) after 20 calls."""

    name = "mine"

    def __init__(self, make) -> None:
        self.make, self.calls = make, 0

    def _select(self, post, x, b, g):
        self.calls += 1
        assert self.calls <= 20, "the loop did not advance"
        return self.make(x.shape[0], b)


@pytest.fixture
def no_fit(monkeypatch):
    """Every model's fit fails the test: bad settings must be refused before any work."""

    def never(*args, **kwargs):
        raise AssertionError("no fit may start")

    for name, entry in ACTIVE_MODELS.items():
        monkeypatch.setitem(ACTIVE_MODELS, name, entry._replace(fit=never))
    monkeypatch.setattr(loop, "load_problem", never)


# ------------------------------------------------------------------------------------------------ batches


@pytest.mark.parametrize("make, match", [
    # more than b: was labelled silently, 10 -> 18 -> 23 on a budget of 10
    (lambda m, b: Batch(torch.arange(b + 3), b, "mine"), r"at most 5 pool positions \(the batch size\), got 8"),
    # none: the loop never advanced
    (lambda m, b: Batch(torch.arange(0), b, "mine"), r"1 to 5 pool positions, got an empty batch"),
    (lambda m, b: Batch([], b, "mine"), r"1 to 5 pool positions, got an empty batch"),
    (lambda m, b: Batch(torch.tensor([0, m]), b, "mine"), r"pool positions in 0\.\.39 .*, got 40"),
    # negative positions used to count from the end of the pool, silently
    (lambda m, b: Batch(torch.tensor([-1, 0]), b, "mine"), r"pool positions in 0\.\.39 .*, got -1"),
    (lambda m, b: Batch(torch.tensor([0.0, 1.0]), b, "mine"), r"integer pool positions, got .*float32"),
    (lambda m, b: Batch([0.0, 1.5], b, "mine"), r"the batch's indices as a 1-D integer tensor .*float64"),
    (lambda m, b: Batch(torch.arange(m) < 2, b, "mine"), r"integer pool positions, got .*torch\.bool \(a mask\?"),
    (lambda m, b: Batch(torch.tensor([[0, 1]]), b, "mine"), r"a 1-D tensor of pool positions, got shape"),
    (lambda m, b: Batch(torch.tensor([3, 1, 3]), b, "mine"), r"distinct pool positions, got 3 more than once"),
    (lambda m, b: Batch(torch.tensor([0, 1]), 2, "mine"), r"Batch\.requested = 5 .*, got 2"),
    (lambda m, b: [0, 1], r"a Batch, got list"),
])
def test_a_bad_batch_is_refused_naming_the_acquisition(make, match):
    with pytest.raises(PyrozooError, match=r"^acquisition 'mine': expected " + match):
        run_active_learning(_problem(), Custom(make), **RUN)


def test_select_itself_checks_the_batch():
    post = BLRPoolPosterior.fit(_problem().x_pool[:10], _problem().y_pool[:10])
    pool = torch.as_tensor(_problem().x_pool)
    with pytest.raises(PyrozooError, match=r"acquisition 'mine': expected at most 3 pool positions"):
        Custom(lambda m, b: Batch(torch.arange(b + 1), b, "mine")).select(post, pool, 3)
    batch = Custom(lambda m, b: Batch(np.array([4, 2], dtype=np.int32), b, "mine")).select(post, pool, 3)
    assert batch.indices.dtype == torch.long and batch.indices.tolist() == [4, 2]


def test_the_loop_checks_a_subclass_that_overrides_select():
    class Raw(Custom):
        def select(self, post, x, b, *, generator=None):
            return self._select(post, x, b, generator)

    with pytest.raises(PyrozooError, match=r"acquisition 'mine': expected distinct pool positions"):
        run_active_learning(_problem(), Raw(lambda m, b: Batch(torch.zeros(2, dtype=torch.long), b, "mine")), **RUN)


@pytest.mark.parametrize("convert", [lambda i: i.tolist(), lambda i: i.numpy(), lambda i: i.int()])
def test_lists_and_numpy_indices_give_the_tensor_result(convert):
    ref = run_active_learning(_problem(), Custom(lambda m, b: Batch(torch.arange(b) * 2, b, "mine")), **RUN)
    got = run_active_learning(_problem(), Custom(lambda m, b: Batch(convert(torch.arange(b) * 2), b, "mine")), **RUN)
    pd.testing.assert_frame_equal(got.drop(columns="select_seconds"), ref.drop(columns="select_seconds"))
    assert list(got["num_labelled"]) == [10, 15, 20]


def test_a_smaller_batch_is_allowed_and_noted():
    df = run_active_learning(_problem(), Custom(lambda m, b: Batch(torch.arange(min(b, 3)), b, "mine")), **RUN)
    assert list(df["num_labelled"]) == [10, 13, 16, 19, 20]  # the budget is spent exactly
    assert list(df["requested"]) == [0, 5, 5, 4, 1] and list(df["selected"]) == [0, 3, 3, 3, 1]
    assert df["note"].iloc[1] == "mine: 3 distinct points for a requested batch of 5"  # no Frank-Wolfe reason


def test_check_batch_keeps_a_good_tensor_batch():
    batch = Batch(torch.tensor([2, 0]), 3, "x")
    assert check_batch(batch, 5, 3, "x") is batch


# ------------------------------------------------------------------------------------------------ model_options


@pytest.mark.parametrize("model, allowed", [
    ("blr", "a0, b0, noise, prior_scale"),
    ("gp", "kernel, lr, steps"),
    ("neural-linear", "a0, activation, b0, epochs, hidden, .*, weight_decay"),
    ("bnn", "batch_size, depth, .*, num_samples, posterior, .*, vi_steps"),
    ("probit", "iters, prior_scale"),
])
def test_unknown_model_options_are_refused_before_any_fit(model, allowed, no_fit):
    """One message for every model (gp, probit and neural-linear were a TypeError at the first fit; bnn named
    train_options)."""
    task = "classification" if model == "probit" else "regression"
    match = rf"^model_options: unknown key\(s\) foo; allowed: {allowed}$"
    with pytest.raises(PyrozooError, match=match):
        run_active_learning(_problem(task), "random", model=model, model_options={"foo": 1}, **RUN)
    dataset = "breast-cancer" if model == "probit" else "synthetic"
    with pytest.raises(PyrozooError, match=match):
        run_experiment(dataset, ["random"], [0], model=model, model_options={"foo": 1}, progress=False)


def test_model_options_must_be_a_mapping_of_names(no_fit):
    with pytest.raises(PyrozooError, match=r"model_options: expected a dict of 'gp' fit options or None, got list"):
        run_active_learning(_problem(), "random", model="gp", model_options=["steps"], **RUN)
    with pytest.raises(PyrozooError, match=r"model_options: expected option names \(text\) as keys, got 1"):
        run_active_learning(_problem(), "random", model_options={1: 2}, **RUN)


def test_known_model_options_reach_the_fit():
    a = run_active_learning(_problem(), "random", model_options={"noise": 0.5}, **RUN)
    b = run_active_learning(_problem(), "random", **RUN)
    assert not np.allclose(a["nll"], b["nll"])


# ------------------------------------------------------------------------------------------------ metric


def test_summary_and_plot_default_to_the_task_metric(tmp_path):
    cls = run_active_learning(_problem("classification"), "random", model="probit", **RUN)
    reg = run_active_learning(_problem(), "random", **RUN)
    assert "accuracy" in summarize(cls).columns and "rmse" in summarize(reg).columns  # was KeyError 'rmse'
    pd.testing.assert_frame_equal(summarize(cls), summarize(cls, "accuracy"))
    assert plot_learning_curves(cls, tmp_path / "c.png").stat().st_size > 0
    assert plot_learning_curves(reg, tmp_path / "r.png").stat().st_size > 0
    for fn in (lambda m: summarize(cls, m), lambda m: plot_learning_curves(cls, tmp_path / "x.png", m)):
        with pytest.raises(PyrozooError, match=r"metric: expected one of the results' metrics accuracy, nll; "
                                               r"got 'rmse'"):
            fn("rmse")
    both = pd.concat([cls, reg], ignore_index=True)
    with pytest.raises(PyrozooError, match=r"metric: expected a metric named .* holds rmse and accuracy"):
        summarize(both)
    assert not (tmp_path / "x.png").exists()


# ------------------------------------------------------------------- an ACS-FW's explicit J, before any fit


@pytest.mark.parametrize("model, acq, match", [
    ("bnn", lambda: ACSFW(num_projections=50), r"num_projections: expected at most the 30 posterior draws the 'bnn' "
                                                r"model stores, got 50"),
    ("blr", lambda: ACSFW(num_projections=7), r"num_projections: none of acs-fw takes random projections on the "
                                               r"'blr' posterior"),
    ("blr", lambda: ACSFW("fisher", 7), r"num_projections: none of acs-fw-fisher takes random projections"),
])
def test_run_active_learning_checks_an_explicit_num_projections_before_any_fit(no_fit, model, acq, match):
    with pytest.raises(PyrozooError, match=match):
        run_active_learning(_problem(), acq(), model=model, **RUN)


def test_an_explicit_num_projections_that_is_used_still_runs():
    out = run_active_learning(_problem(), ACSFW("projection", 7), model="blr", **RUN)
    assert out["num_labelled"].iloc[-1] == 20


def test_run_experiment_passes_j_only_to_the_acquisitions_that_use_it(monkeypatch):
    monkeypatch.setattr(loop, "load_problem", lambda name, seed, **kw: _problem())
    out = run_experiment("boston", ["acs-fw-projection", "acs-fw"], [0], model="blr", num_projections=7,
                         init_size=10, batch_size=5, budget=10, progress=False)
    assert sorted(out["acquisition"].unique()) == ["acs-fw", "acs-fw-projection"]


# ------------------------------------------------------------------------------ run_experiment's argument types


@pytest.mark.parametrize("acquisitions, seeds, match", [
    (5, [0], r"acquisitions: expected an acquisition name or a list of names, got int"),
    ({"random": 1}, [0], r"acquisitions: expected an acquisition name or a list of names, got dict"),
    (["random"], 3, r"seeds: expected a sequence of integer seeds \(e.g. \[0, 1\] or range\(10\)\), got int 3"),
    (["random"], "01", r"seeds: expected a sequence of integer seeds .* got str '01'"),
    (["random"], None, r"seeds: expected a sequence of integer seeds .* got NoneType None"),
])
def test_run_experiment_argument_types(no_fit, acquisitions, seeds, match):
    with pytest.raises(PyrozooError, match=match):
        run_experiment("boston", acquisitions, seeds, progress=False)


def test_run_experiment_takes_one_acquisition_name_as_a_list(monkeypatch):
    monkeypatch.setattr(loop, "load_problem", lambda name, seed, **kw: _problem())
    out = run_experiment("boston", "random", range(1), init_size=10, batch_size=5, budget=10, progress=False)
    assert set(out["acquisition"]) == {"random"} and set(out["seed"]) == {0}


def test_a_seed_beyond_numpys_range_is_refused_before_any_fit(no_fit):
    """The loop's seed goes to bnn's fit (set_seed, NumPy's range [0, 2**32 - 1]); check_int("seed") let 2**32
    through to the first fit."""
    match = r"^seed: expected an integer seed in \[0, 2\*\*32 - 1\] .*got 4294967296"
    with pytest.raises(PyrozooError, match=match):
        run_active_learning(_problem(), "random", **{**RUN, "seed": 2**32})
    with pytest.raises(PyrozooError, match=match):
        run_experiment("boston", ["random"], [0, 2**32], progress=False)


# ------------------------------------------------------- a one-draw posterior (bnn's map), before any fit

MAP = {"posterior": "map", "epochs": 3, "swa_epochs": 2}


@pytest.mark.parametrize("options", [MAP, {"num_samples": 1}])
def test_a_one_draw_bnn_refuses_more_projections_before_any_fit(no_fit, options):
    # map stores one draw whatever num_samples says: J = 20 was refused only after the fit
    with pytest.raises(PyrozooError, match=r"num_projections: expected at most the 1 posterior draws the 'bnn'"):
        run_active_learning(_problem(), ACSFW(num_projections=20), model="bnn", model_options=options, **RUN)


@pytest.mark.parametrize("acq", ["bald", "acs-fw", "acs-fw-projection", None])
def test_acquisitions_needing_draws_are_refused_on_a_one_draw_bnn_before_any_fit(no_fit, acq):
    from pyrozoo.active.baselines import BALD

    acq = BALD() if acq is None else acq
    name = acq if isinstance(acq, str) else "bald"
    with pytest.raises(PyrozooError, match=rf"acquisition: '{name}' needs several posterior draws .* the 'bnn' model "
                                           r"with posterior='map' stores 1"):
        run_active_learning(_problem(), acq, model="bnn", model_options=MAP, **RUN)
    with pytest.raises(PyrozooError, match=rf"acquisition: '{name}' needs several posterior draws .* with "
                                           r"num_samples=1 stores 1"):
        run_experiment("concrete", [name], [0], model="bnn", model_options={"num_samples": 1}, progress=False)


def test_acquisitions_that_work_with_one_draw_still_run_on_a_map_bnn():
    run_active_learning(_problem(), "maxent", model="bnn", model_options=MAP, **RUN)
    with pytest.raises(PyrozooError, match=r"num_samples: expected an integer"):
        run_active_learning(_problem(), "bald", model="bnn", model_options={"num_samples": "many"}, **RUN)


def test_an_option_given_as_none_counts_as_not_given_in_the_loop_as_in_fit():
    """check_model_options refused {"recipe": "reference", "steps": None} while NeuralLinearPosterior.fit, where None
    means "not given", took it."""
    from pyrozoo.active.loop import check_model_options

    assert check_model_options("neural-linear", {"recipe": "reference", "steps": None})["steps"] is None
    with pytest.raises(PyrozooError, match="steps"):
        check_model_options("neural-linear", {"recipe": "reference", "steps": 3})


def test_plot_learning_curves_checks_its_path_before_drawing_and_returns_the_file_written(tmp_path, monkeypatch):
    """plot_learning_curves skipped the shared figure-path check: 'lc' was returned while lc.png was written, and
    'lc.xyz' failed in savefig after the drawing. A missing directory is still created (the benchmark relies on it)
    and a leading ~ is expanded."""
    import matplotlib.pyplot as plt

    reg = run_active_learning(_problem(), "random", **RUN)
    out = plot_learning_curves(reg, tmp_path / "lc")
    assert out == tmp_path / "lc.png" and out.stat().st_size > 0
    assert plot_learning_curves(reg, tmp_path / "new" / "dir" / "lc.png").is_file()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert plot_learning_curves(reg, "~/home.png") == tmp_path / "home.png"
    monkeypatch.setattr(plt, "subplots", lambda *a, **k: pytest.fail("drew before checking the path"))
    with pytest.raises(PyrozooError, match=r"^path: expected a file name ending in a format matplotlib writes"):
        plot_learning_curves(reg, tmp_path / "lc.xyz")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(PyrozooError, match=r"^path: expected a file in an existing directory, got .*is not a dir"):
        plot_learning_curves(reg, tmp_path / "afile" / "lc.png")


def test_plot_learning_curves_refuses_a_table_it_cannot_plot_before_making_its_directory(tmp_path):
    """A table without the loop's columns gave KeyError 'dataset', an empty one matplotlib's "Number of columns must
    be a positive integer", and the missing directory had been created first."""
    cols = ["dataset", "acquisition", "seed", "round", "num_labelled", "requested", "rmse"]
    with pytest.raises(PyrozooError, match=r"^results: expected the table run_active_learning returns .* got no "
                                           r"column\(s\) dataset, acquisition"):
        plot_learning_curves(pd.DataFrame({"rmse": [1.0, 0.5]}), tmp_path / "new" / "lc")
    with pytest.raises(PyrozooError, match=r"^results: .* got no rows$"):
        plot_learning_curves(pd.DataFrame({c: [] for c in cols}), tmp_path / "e2" / "lc.png")
    assert not (tmp_path / "new").exists() and not (tmp_path / "e2").exists()


@pytest.mark.parametrize("seeds, repeated", [([0, 0], "0"), ([3, 1, 3, 1, 2], "1, 3"), ((5, 5.0), "5")])
def test_a_repeated_seed_is_refused_before_any_fit(no_fit, seeds, repeated):
    """run_experiment("boston", "random", [0, 0]) ran the same split and initial set twice (6 rows) and summarize
    then reported 1 seed with a NaN standard error; a repeated seed is refused like a repeated acquisition."""
    with pytest.raises(PyrozooError, match=rf"^seeds: {repeated} given more than once; name each seed once$"):
        run_experiment("boston", "random", seeds, budget=2, batch_size=1, init_size=3, progress=False)


@pytest.mark.parametrize("model", ["blr", "neural-linear", "gp"])
def test_a_j_too_large_for_memory_is_refused_before_any_fit(no_fit, model):
    """An explicit J whose draws over the unlabelled pool cannot fit in memory (projections.check_projection_memory)
    is refused before the first fit, from run_active_learning, run_experiment and the CLI (--num-projections 1e9
    failed with NumPy's _ArrayMemoryError after the initial fit)."""
    from pyrozoo.active.projections import max_num_projections

    most = max_num_projections(50 - RUN["init_size"], 4)  # _problem(): 50 pool rows, 4 columns
    match = rf"^num_projections: expected at most {most:,} random projections \(J, --num-projections\) for 40 pool"
    with pytest.raises(PyrozooError, match=match):
        run_active_learning(_problem(), ACSFW("projection", most + 1), model=model, **RUN)
    with pytest.raises(AssertionError, match="no fit may start"):  # the largest J that fits gets to the fit
        run_active_learning(_problem(), ACSFW("projection", most), model=model, **RUN)


def test_a_j_too_large_for_memory_is_refused_by_run_experiment_and_the_cli(monkeypatch, tmp_path, capsys):
    import re

    from pyrozoo.cli import main

    def never(*args, **kwargs):
        raise AssertionError("no fit may start")

    monkeypatch.setitem(ACTIVE_MODELS, "blr", ACTIVE_MODELS["blr"]._replace(fit=never))
    match = r"num_projections: expected at most [\d,]+ random projections \(J, --num-projections\) for 400 pool"
    with pytest.raises(PyrozooError, match="^" + match):
        run_experiment("boston", ["random", "acs-fw-projection"], [0], num_projections=10**9, init_size=5,
                       batch_size=1, budget=2, progress=False)
    out = tmp_path / "oj"
    assert main(["active", "--no-progress", "--acquisition", "acs-fw-projection", "--num-projections", "1000000000",
                 "--budget", "2", "--batch-size", "1", "--init-size", "5", "--out", str(out)]) == 2
    assert re.match("pyrozoo: error: " + match, capsys.readouterr().err)
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("acq", ["acs-fw-euclidean", "acs-fw-projection"])
@pytest.mark.parametrize(("model", "options"), [("blr", {"a0": 0.1, "b0": 1.0}), ("neural-linear", {"a0": 0.5}),
                                                ("neural-linear", {"recipe": "reference", "a0": 0.2})])
def test_a_gamma_shape_without_a_finite_predictive_variance_is_refused_before_any_fit(no_fit, acq, model, options):
    """The weighted Euclidean product and its projections need a = a0 + N / 2 > 1 with unknown noise (a Student-t
    predictive with a finite variance); a0 + init_size / 2 <= 1 is refused naming a0 and init_size before the first
    fit, by run_active_learning and run_experiment. Before, acs-fw-projection failed after the fit with 'posterior
    squared norms (the pool kernel's diag()): expected finite values, found 404 non-finite', and acs-fw-euclidean
    only at the first selection."""
    match = rf"^a0: {acq} with unknown noise needs a finite predictive variance, .* got a0 = {options['a0']:g} with " \
            r"init_size = 1 \(a = [\d.]+\): use an a0 above 0.5 or an init_size of at least 2"
    with pytest.raises(PyrozooError, match=match):
        run_active_learning(_problem(), acq, model=model, model_options=options, init_size=1, batch_size=2,
                            budget=4, progress=False)
    with pytest.raises(PyrozooError, match=match):
        run_experiment("boston", ["random", acq], [0], model=model, model_options=options, init_size=1, batch_size=2,
                       budget=4, progress=False)


def test_a_gamma_shape_above_one_or_acquisitions_that_need_no_variance_still_run():
    """a0 + init_size / 2 > 1 (a0 = 0.1 with 2 labels: a = 1.1) runs the Euclidean product; a0 = 0.1 with one label
    runs acs-fw (the Fisher form), BALD, MaxEnt and random, which take no predictive variance; a known noise sd
    needs no a0 (and refuses one)."""
    opts = {"a0": 0.1, "b0": 1.0}
    small = {"batch_size": 2, "budget": 2, "progress": False}
    out = run_active_learning(_problem(), "acs-fw-euclidean", model_options=opts, init_size=2, **small)
    assert out["num_labelled"].tolist() == [2, 4]
    for acq in ("acs-fw", "bald", "maxent", "random"):
        out = run_active_learning(_problem(), acq, model_options=opts, init_size=1, **small)
        assert out["num_labelled"].tolist() == [1, 3] and np.isfinite(out["nll"]).all()
    loop.check_finite_predictive_variance(["acs-fw-euclidean"], "blr", {"noise": 0.5}, 1)


def test_a_bnn_option_its_posterior_would_ignore_is_refused_before_any_fit(no_fit):
    """QA (D4): fit_bnn now refuses num_samples with posterior="map" (one draw, the trained network), as it refuses
    scale or vi_steps with a posterior that does not read them; the loop refuses them before any fit, with
    fit_bnn's message, and its own default num_samples is not passed to a map fit."""
    from pyrozoo.active.loop import check_model_options

    with pytest.raises(PyrozooError, match=r"options: num_samples applies only to bnn's swag, swag-diag, ciber, "
                                           r"collapsed-gaussian or vi; with map it would have no effect"):
        run_active_learning(_problem(), "maxent", model="bnn", model_options={**MAP, "num_samples": 5}, **RUN)
    with pytest.raises(PyrozooError, match=r"options: vi_steps applies only to bnn's vi; with swag-diag"):
        check_model_options("bnn", {"vi_steps": 5})
    assert check_model_options("bnn", {**MAP, "num_samples": None}) == {**MAP, "num_samples": None}
