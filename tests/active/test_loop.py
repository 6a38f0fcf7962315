"""The active-learning loop, the experiment table, the plot and the `pyrozoo active` command."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from pyrozoo.active.acs_fw import ACSFW
from pyrozoo.active.loop import (
    applicable_acquisitions,
    load_problem,
    make_acquisition,
    plot_learning_curves,
    run_active_learning,
    run_experiment,
    summarize,
)
from pyrozoo.cli import main
from pyrozoo.config import tomllib
from pyrozoo.errors import PyrozooError


class _Spy(ACSFW):
    """Records every pool it is shown and the rows it picks."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.pool_sizes, self.picked = [], []

    def _select(self, posterior, x_pool, batch_size, generator):
        batch = super()._select(posterior, x_pool, batch_size, generator)
        self.pool_sizes.append(x_pool.shape[0])
        self.picked.append(x_pool[batch.indices])
        return batch


@pytest.mark.parametrize("kw", [{}, {"inner_product": "projection", "num_projections": 30}])
def test_batches_come_from_the_unlabelled_pool_only(kw):
    problem = load_problem("synthetic", 0)
    spy = _Spy(**kw)
    df = run_active_learning(problem, spy, init_size=15, batch_size=8, budget=40, seed=0, progress=False)
    n = problem.x_pool.shape[0]
    acquired = torch.tensor([0] + [p.shape[0] for p in spy.picked]).cumsum(0)
    # the pool shown each round is everything not yet labelled ...
    assert spy.pool_sizes == [n - 15 - int(a) for a in acquired[:-1]]
    # ... and rows picked are never picked again (rows of continuous data are distinct)
    rows = torch.cat(spy.picked)
    assert torch.unique(rows, dim=0).shape[0] == rows.shape[0] == 40
    assert set(df.columns) >= {"acquisition", "seed", "round", "num_labelled", "rmse", "nll", "selected"}
    assert df["num_labelled"].iloc[-1] == 55 and df["num_labelled"].is_monotonic_increasing
    assert (df["selected"].iloc[1:] <= 8).all()
    assert df[["rmse", "nll"]].notna().all().all()


def test_experiment_table_summary_and_plot(tmp_path):
    df = run_experiment("boston", ["acs-fw", "random"], [0, 1], init_size=20, batch_size=10, budget=30,
                        progress=False)
    assert set(df["acquisition"]) == {"acs-fw", "random"} and set(df["seed"]) == {0, 1}
    table = summarize(df)
    assert list(table["seeds"]) == [2, 2] and (table["num_labelled"] == 50).all()
    assert (table["rmse"] > 0).all() and (table["se"] >= 0).all()
    # selection time: the median over selecting rounds only (round 0 is the initial fit, recorded as 0 s)
    for acq, sec in zip(table["acquisition"], table["select_seconds"], strict=True):
        expected = df[(df["acquisition"] == acq) & (df["round"] > 0)]["select_seconds"].median()
        assert sec == expected and sec > 0
    assert plot_learning_curves(df, tmp_path / "lc.png").stat().st_size > 0
    # same seed: same split and initial set for every acquisition, so round 0 is shared
    first = df[df["round"] == 0].groupby("seed")["rmse"].nunique()
    assert (first == 1).all()


def test_bad_input():
    problem = load_problem("synthetic", 0)
    acq = make_acquisition("acs-fw")
    n = problem.x_pool.shape[0]
    with pytest.raises(PyrozooError, match="batch_size"):
        run_active_learning(problem, acq, init_size=20, batch_size=n, budget=n, progress=False)
    with pytest.raises(PyrozooError, match="budget: expected at least the batch size 10"):
        run_active_learning(problem, acq, batch_size=10, budget=5, progress=False)
    with pytest.raises(PyrozooError, match="budget"):
        run_active_learning(problem, acq, init_size=20, batch_size=10, budget=n, progress=False)
    empty = type(problem)("empty", problem.x_pool[:0], problem.y_pool[:0], problem.x_test, problem.y_test)
    with pytest.raises(PyrozooError, match="empty"):
        run_active_learning(empty, acq, progress=False)
    with pytest.raises(PyrozooError, match="num_projections"):
        make_acquisition("acs-fw-projection", num_projections=0)
    with pytest.raises(PyrozooError, match="acquisition"):
        make_acquisition("coreset")
    with pytest.raises(PyrozooError, match="dataset"):
        load_problem("iris", 0)


def test_cli(tmp_path, capsys):
    out = tmp_path / "al"
    args = ["active", "--model", "blr", "--dataset", "concrete", "--acquisition", "acs-fw,random",
            "--batch-size", "10", "--budget", "20", "--seeds", "1", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    assert {p.name for p in out.iterdir()} == {"config.toml", "results.csv", "selections.csv", "summary.csv",
                                               "learning_curves.png"}
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["acquisition"]) == ["acs-fw", "random"]  # the order asked for
    assert tomllib.loads((out / "config.toml").read_text())["model"] == "blr"
    assert "acs-fw" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*.tmp"))  # the hidden temporary directory was renamed into place
    bad = ["active", "--out", str(tmp_path / "x"), "--no-progress"]
    for extra, message in ((["--batch-size", "100000"], "batch_size"), (["--budget", "5"], "budget"),
                           (["--acquisition", "acs-fw-projection", "--num-projections", "0"], "num_projections"),
                           (["--model", "nosuch"], "model"),
                           (["--acquisition", "random,bald,random"], "random given more than once"),
                           (["--acquisition", "bald", "--num-projections", "10"], "none of bald takes random"),
                           (["--model", "bnn", "--init-size", "2"], "needs at least 4 labelled points"),
                           (["--out", str(tmp_path / "afile" / "sub")], "is not a directory")):
        (tmp_path / "afile").write_text("")
        assert main([*bad, *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra
    assert not (tmp_path / "x").exists()
    assert main(["active", "--out", str(tmp_path / "afile"), "--no-progress"]) == 2
    assert main(["active", "--out", str(out), "--no-progress"]) == 2  # not empty
    assert "error" in capsys.readouterr().err


def test_cli_output_appears_at_once_and_default_names_never_collide(tmp_path, monkeypatch):
    """An interrupt while the files are written leaves no directory and no temporary; two runs that start in the same
    second under the default name get two directories."""
    from pyrozoo.active import loop
    from pyrozoo.commands import active

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(active.time, "strftime", lambda fmt: "20260101-000000")
    args = ["active", "--model", "blr", "--dataset", "concrete", "--acquisition", "random", "--batch-size", "5",
            "--budget", "5", "--no-progress"]

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(loop, "plot_learning_curves", interrupted)
        assert main(args) == 130
    root = tmp_path / "runs" / "active"
    assert not any(root.iterdir())
    assert main(args) == 0 and main(args) == 0
    names = sorted(p.name for p in root.iterdir())
    assert names == ["blr-concrete-20260101-000000", "blr-concrete-20260101-000000-2"]
    assert all((root / n / "summary.csv").is_file() for n in names)


def test_all_means_the_acquisitions_the_model_supports(tmp_path, capsys, monkeypatch):
    """A GP has the closed-form Euclidean product only: 'all' leaves out acs-fw-fisher, and naming it is an error
    before any fit (it used to fail at the first selection, after the initial fits)."""
    from pyrozoo.active import loop

    assert applicable_acquisitions("gp") == ("acs-fw", "acs-fw-euclidean", "acs-fw-projection", "bald", "maxent",
                                             "random")
    assert applicable_acquisitions("probit") == ("acs-fw", "acs-fw-fisher", "acs-fw-projection", "bald", "maxent",
                                                 "random")
    assert applicable_acquisitions("bnn") == ("acs-fw", "acs-fw-projection", "bald", "maxent", "random")
    assert applicable_acquisitions("blr") == loop.ACQUISITIONS
    for model in ("blr", "probit", "gp", "neural-linear"):  # the declared closed forms are the ones that answer
        forms = loop.ACTIVE_MODELS[model].posterior.closed_forms
        problem = load_problem("breast-cancer" if model == "probit" else "synthetic", 0)
        x, y = problem.x_pool[:30], problem.y_pool[:30]
        post = loop.ACTIVE_MODELS[model].fit(x, y, **({"steps": 5} if model == "gp" else {}))
        for kind in ("fisher", "euclidean"):
            assert (post.closed_form_kernel(problem.x_pool[30:60], kind) is not None) == (kind in forms), (model, kind)

    def never(*args, **kwargs):
        raise AssertionError("no fit may start")

    monkeypatch.setitem(loop.ACTIVE_MODELS, "gp", loop.ACTIVE_MODELS["gp"]._replace(fit=never))
    with pytest.raises(PyrozooError, match="'acs-fw-fisher' needs the closed-form fisher inner product, which the "
                                           "'gp' posterior does not have; usable with 'gp': acs-fw, acs-fw-euclidean"):
        loop.run_experiment("synthetic", ["random", "acs-fw-fisher"], [0], model="gp", progress=False)
    out = tmp_path / "al"
    args = ["active", "--model", "probit", "--dataset", "breast-cancer", "--acquisition", "all", "--batch-size", "5",
            "--budget", "5", "--seeds", "1", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    assert set(pd.read_csv(out / "summary.csv")["acquisition"]) == set(applicable_acquisitions("probit"))


@pytest.mark.slow
def test_bnn_posterior_through_projections():
    """The zoo BNN (SWAG-diagonal) as a sample-based adapter: tiny training, one ACS-FW batch, one loop round."""
    problem = load_problem("synthetic", 0)
    opts = {"hidden": 8, "epochs": 10, "swa_epochs": 10, "num_samples": 20}
    from pyrozoo.active.loop import fit_bnn_pool

    post = fit_bnn_pool(problem.x_pool[:40], problem.y_pool[:40], **opts)
    batch = ACSFW("auto", num_projections=20).select(post, problem.x_pool[40:200], 5)
    assert batch.info["inner_product"] == "projection" and 1 <= batch.num_selected <= 5
    df = run_active_learning(problem, make_acquisition("acs-fw", 20), model="bnn", model_options=opts,
                             init_size=20, batch_size=10, budget=10, progress=False)
    assert df["num_labelled"].iloc[-1] == 30 and df["rmse"].notna().all()


def test_bnn_adapter_is_stable_on_twenty_labels():
    """With 20 Boston labels the UCI recipe diverged (test RMSE 15-150 on seeds 0-3, response sd 9). The adapter's
    small-data defaults must beat predicting the labelled mean on average, and stay near the conjugate linear model
    fitted to the same rows, an independent reference (measured, seeds 0-3: 7.5 vs BLR 7.9 vs the mean 9.1)."""
    from pyrozoo.active.loop import fit_bnn_pool
    from pyrozoo.active.posteriors import BLRPoolPosterior

    def rmse(mean: torch.Tensor, y_test: torch.Tensor) -> float:
        return float(((mean - y_test) ** 2).mean().sqrt())

    bnn, blr, flat = [], [], []
    for seed in range(4):
        problem = load_problem("boston", seed)
        idx = torch.randperm(problem.x_pool.shape[0], generator=torch.Generator().manual_seed(seed))[:20]
        y = problem.y_pool[idx]
        z = (y - y.mean()) / y.std()
        for out, post in ((bnn, fit_bnn_pool(problem.x_pool[idx], z, seed=seed)),
                          (blr, BLRPoolPosterior.fit(problem.x_pool[idx], z))):
            out.append(rmse(post.predictive(problem.x_test)[0] * y.std() + y.mean(), problem.y_test))
        flat.append(rmse(y.mean(), problem.y_test))
    assert max(bnn) < 1.2 * max(flat)  # no blow-up on any seed
    assert sum(bnn) < 0.9 * sum(flat) and sum(bnn) < 1.2 * sum(blr)


def test_bnn_adapter_schedule_counts_steps_not_epochs(monkeypatch):
    """About 2000 SGD steps whatever the labelled-set size; explicit epochs win; a bad batch size fails first."""
    import pyrozoo.models.bnn as bnn_module
    from pyrozoo.active.loop import fit_bnn_pool

    seen = []

    def spy(x, y, **opts):  # fit_bnn is imported inside the adapter, so patch it where it lives
        seen.append(opts)
        raise StopIteration

    monkeypatch.setattr(bnn_module, "fit_bnn", spy)
    for n, extra in ((20, {}), (120, {}), (40, {"epochs": 7, "swa_epochs": 3})):
        with pytest.raises(StopIteration):
            fit_bnn_pool(torch.ones(n, 3).double(), torch.zeros(n).double(), **extra)
    with pytest.raises(PyrozooError, match="batch_size"):
        fit_bnn_pool(torch.ones(40, 3).double(), torch.zeros(40).double(), batch_size=0)
    # 20 rows: 2 held out, 18 in one batch -> 1 step per epoch; 120 rows: 13 held out, 107 -> 4 steps per epoch
    assert [(o["epochs"], o["swa_epochs"]) for o in seen] == [(1600, 400), (400, 100), (7, 3)]
    assert seen[0]["val_fraction"] == pytest.approx(1 / 9) and not seen[0]["standardize"]


def test_cli_default_acs_fw_on_the_bnn_uses_its_stored_draws(tmp_path, capsys):
    """The documented `pyrozoo active --model bnn --acquisition acs-fw`: the BNN stores 30 draws, so the default
    J = 100 projections is capped at 30 (with a note) instead of failing; an explicit J = 100 still fails, before
    any fit."""
    args = ["active", "--model", "bnn", "--dataset", "boston", "--acquisition", "acs-fw", "--batch-size", "5",
            "--budget", "5", "--seeds", "1", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert "num_projections 30" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "b"), "--num-projections", "100"]) == 2
    assert "at most the 30 posterior draws the 'bnn' model stores" in capsys.readouterr().err


def test_cli_out_may_be_dot_or_a_link_and_complete_results_are_never_deleted(tmp_path, monkeypatch, capsys):
    """`--out .` in an empty directory and a link to an empty directory used to fail after the fits (a directory
    in use cannot be renamed onto), deleting the results; the files now go into the directory. If publishing fails
    anyway (the directory was filled during the run), the error says where the complete results are."""
    from pyrozoo.commands import active

    args = ["active", "--model", "blr", "--dataset", "concrete", "--acquisition", "random", "--batch-size", "5",
            "--budget", "5", "--no-progress"]
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert main([*args, "--out", "."]) == 0
    assert (here / "summary.csv").is_file() and not list(tmp_path.glob(".*.tmp"))
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    assert main([*args, "--out", str(tmp_path / "link")]) == 0
    assert (tmp_path / "target" / "summary.csv").is_file()

    def filled_meanwhile(out, write, *, numbered):
        out.mkdir(parents=True, exist_ok=True)
        (out / "other.txt").write_text("")
        return publish(out, write, numbered=numbered)

    publish = active._publish
    monkeypatch.setattr(active, "_publish", filled_meanwhile)
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err
    kept = err.rsplit("they are complete in ", 1)[1].strip()
    assert (tmp_path / "new" / "other.txt").is_file() and (Path(kept) / "summary.csv").is_file()


def test_summary_counts_are_integers():
    """summary.csv said num_labelled 50.0 (a mean over seeds) where results.csv says 50; seeds ending with different
    counts still get the mean."""
    rows = [{"dataset": "d", "acquisition": acq, "seed": seed, "round": r, "num_labelled": 20 + 15 * r,
             "requested": 15 * (r > 0), "select_seconds": 0.1 * r, "rmse": 1.0 / (1 + r + seed)}
            for acq in ("random", "bald") for seed in (0, 1) for r in range(3)]
    df = pd.DataFrame(rows)
    table = summarize(df)
    assert pd.api.types.is_integer_dtype(table["num_labelled"]) and (table["num_labelled"] == 50).all()
    assert table.to_csv(index=False).splitlines()[1].split(",")[table.columns.get_loc("num_labelled")] == "50"
    uneven = df[~((df["seed"] == 1) & (df["round"] == 2))]  # seed 1 stops at 35 labels
    assert summarize(uneven)["num_labelled"].tolist() == [42.5, 42.5]


def test_bnn_adapter_drops_its_default_width_with_depth_0(monkeypatch):
    """fit_bnn refuses a given hidden with depth 0; the adapter's own 30 units are a default, so model_options
    depth = 0 must not pass them (it failed with "hidden has no effect with depth 0 ..., got hidden=30"). A user's
    hidden with depth 0 is still the user's error."""
    import pyrozoo.models.bnn as bnn_module
    from pyrozoo.active.loop import fit_bnn_pool

    seen = []

    def spy(x, y, **opts):
        seen.append(opts)
        raise StopIteration

    monkeypatch.setattr(bnn_module, "fit_bnn", spy)
    for extra in ({"depth": 0}, {}, {"depth": 2}):
        with pytest.raises(StopIteration):
            fit_bnn_pool(torch.ones(20, 3).double(), torch.zeros(20).double(), **extra)
    assert ["hidden" in o for o in seen] == [False, True, True] and seen[1]["hidden"] == 30
    monkeypatch.undo()
    x, y = torch.randn(20, 3, generator=torch.Generator().manual_seed(0)).double(), torch.zeros(20).double()
    with pytest.raises(PyrozooError, match=r"hidden has no effect with depth 0 .*got hidden=30"):
        fit_bnn_pool(x, y, depth=0, hidden=30, epochs=10_000)


def test_a_seed_count_beyond_the_seed_range_is_refused_before_any_work(tmp_path, capsys):
    """--seeds N runs seeds 0..N-1; a huge N built its list of seeds for ever (a MemoryError at 2**32) before any
    check could refuse it. At most 100,000 seeds, as a sweep's cells."""
    out = tmp_path / "x"
    for n in (2**40, 2**32, 100_001):  # 2**32 seeds are each valid, but building the list took hours
        assert main(["active", "--seeds", str(n), "--out", str(out), "--no-progress"]) == 2
        assert "seeds: expected a number of seeds in [1, 100,000]" in capsys.readouterr().err
        assert not out.exists()


# ------------------------------------------------- own problems: standardize_problem (the loop does not)


def _scaled_problem(scale, shift=0.0):
    """The own-data reproducer: y = sin(2 z1) + z2 + noise, inputs z * scale + shift with an intercept column."""
    import numpy as np

    from pyrozoo.active.loop import ActiveProblem

    rng = np.random.default_rng(0)
    z = rng.normal(size=(120, 2))
    y = np.sin(2 * z[:, 0]) + z[:, 1] + 0.1 * rng.normal(size=120)
    zt = rng.normal(size=(30, 2))
    yt = np.sin(2 * zt[:, 0]) + zt[:, 1] + 0.1 * rng.normal(size=30)
    return ActiveProblem("s", np.c_[np.ones(120), z * scale + shift], y, np.c_[np.ones(30), zt * scale + shift], yt)


def test_standardize_problem_makes_scaled_inputs_give_the_same_results():
    """Inputs x100 or x0.01 (unstandardized) gave the GP and the BLR no better RMSE than the test mean (1.37, 1.35
    vs 0.49, 0.57); after standardize_problem every scaling is the same problem up to float error."""
    import numpy as np

    from pyrozoo.active.loop import standardize_problem

    run = {"init_size": 10, "batch_size": 10, "budget": 20, "progress": False}
    base = standardize_problem(_scaled_problem(1.0))
    # each varying column has mean 0 and sd 1 over pool and test together; the intercept column stays ones
    allx = torch.cat([base.x_pool, base.x_test])
    torch.testing.assert_close(allx[:, 1:].mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(allx[:, 1:].std(0, correction=0), torch.ones(2, dtype=torch.float64))
    assert bool((allx[:, 0] == 1).all())
    ref = {m: run_active_learning(base, "random", model=m, **run)["rmse"].to_numpy() for m in ("blr", "gp")}
    assert ref["gp"][-1] < 0.6 and ref["blr"][-1] < 0.7  # well below sd(y_test) = 1.35
    for scale, shift in ((0.01, 0.0), (100.0, 5.0), ([3.0, 0.02], [-40.0, 7.0])):
        prob = standardize_problem(_scaled_problem(np.asarray(scale), np.asarray(shift)))
        torch.testing.assert_close(prob.x_pool, base.x_pool, atol=1e-12, rtol=0)
        blr = run_active_learning(prob, "random", model="blr", **run)["rmse"].to_numpy()
        np.testing.assert_allclose(blr, ref["blr"], rtol=1e-9)  # closed forms: float error only
        gp = run_active_learning(prob, "random", model="gp", **run)["rmse"].to_numpy()
        np.testing.assert_allclose(gp, ref["gp"], rtol=1e-8)  # type-II ML from inputs equal up to float error


def test_load_problem_is_standardize_problem_of_its_raw_arrays():
    import numpy as np

    from pyrozoo.active.loop import ActiveProblem, simulate_clustered, standardize_problem

    x, y = simulate_clustered(1)
    design = np.c_[np.ones(len(y)), x]
    perm = np.random.default_rng(1).permutation(len(y))
    test, pool = perm[:240], perm[240:]
    raw = ActiveProblem("synthetic", design[pool], y[pool], design[test], y[test])
    shipped = load_problem("synthetic", 1)
    # over all rows in the data's order (what load_problem passes): bitwise; over pool + test (default): float error
    exact = standardize_problem(raw, reference=design)
    for a, b in ((exact.x_pool, shipped.x_pool), (exact.x_test, shipped.x_test), (exact.y_pool, shipped.y_pool)):
        assert torch.equal(a, b)
    torch.testing.assert_close(standardize_problem(raw).x_pool, shipped.x_pool, atol=1e-12, rtol=0)
    assert torch.equal(torch.as_tensor(raw.x_pool), torch.as_tensor(design[pool]))  # the caller's problem is kept


@pytest.mark.parametrize("reference, match", [
    (lambda d: d[:, :2], r"reference: expected 3 columns \(as x_pool\), got 2"),
    (lambda d: d[:0], r"reference: expected a 2-D array"),
    (lambda d: d[:, 1], r"reference: expected a 2-D array"),
    (lambda d: d + float("inf"), r"^reference: "),
])
def test_standardize_problem_bad_reference(reference, match):
    from pyrozoo.active.loop import standardize_problem

    p = _scaled_problem(1.0)
    with pytest.raises(PyrozooError, match=match):
        standardize_problem(p, reference=reference(p.x_pool))


@pytest.mark.parametrize(("options", "message"), [
    ({"noise": float("nan")}, r"^noise: expected a finite number >= 0, got nan$"),
    ({"noise": -1.0}, r"^noise: expected a finite number >= 0, got -1\.0$"),
    ({"d": 0}, r"^d: expected an integer >= 1, got 0$"),
])
def test_simulate_clustered_names_a_bad_option(options, message):
    """noise nan (or -1) was drawn into y unchecked, d = 0 gave a design with no columns."""
    from pyrozoo.active.loop import simulate_clustered

    with pytest.raises(PyrozooError, match=message):
        simulate_clustered(0, n=20, **options)


def test_the_bnn_adapter_runs_when_the_initial_labels_are_all_equal():
    """The BNN's constant-y refusal is for fits that standardize y by its sd; the loop scales y itself
    (standardize=False), so initial labels that are all equal (a zero-inflated response) still run."""
    import numpy as np

    from pyrozoo.active.loop import ActiveProblem, run_active_learning

    rng = np.random.default_rng(0)
    n = 60
    x = np.c_[np.ones(n), rng.normal(size=(n, 2))]
    init = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:5].numpy()
    y = rng.normal(3, 1, size=n)
    y[init] = 0.0
    xt, yt = np.c_[np.ones(20), rng.normal(size=(20, 2))], rng.normal(size=20)
    prob = ActiveProblem("zi", *map(torch.tensor, (x, y, xt, yt)))
    out = run_active_learning(prob, "random", model="bnn", model_options=dict(epochs=2, swa_epochs=2, num_samples=5),
                              init_size=5, batch_size=5, budget=10, seed=0, progress=False)
    assert len(out) == 3 and np.isfinite(out["rmse"]).all() and np.isfinite(out["nll"]).all()


@pytest.mark.parametrize("model", ["blr", "neural-linear"])
def test_a_known_noise_is_given_in_the_responses_units(model):
    """The loop standardizes y on the initial labels and passed blr's (and neural-linear's) noise option to the fit
    as it came, so it was a sd of that standardized y, a scale the user cannot know. It is now read in y's own
    units (the fits get noise / sd): y x 100 with noise x 100 runs the same rounds, RMSE x 100, NLL + log 100."""
    import math

    from pyrozoo.active.loop import ActiveProblem, noise_in_fit_units

    assert noise_in_fit_units(model, {"noise": 2.0}, 4.0)["noise"] == 0.5
    assert noise_in_fit_units(model, {"noise": 0.0}, 4.0)["noise"] == 0.0
    assert noise_in_fit_units("gp", {"steps": 3}, 4.0) == {"steps": 3}
    with pytest.raises(PyrozooError, match=r"^noise: expected a number >= 0"):
        noise_in_fit_units(model, {"noise": -1.0}, 4.0)
    base = _scaled_problem(1.0)
    opts = {} if model == "blr" else {"steps": 5, "hidden": [4]}
    run = {"model": model, "init_size": 10, "batch_size": 5, "budget": 10, "progress": False}
    rows = {}
    for c in (1.0, 100.0):
        prob = ActiveProblem("s", base.x_pool, base.y_pool * c, base.x_test, base.y_test * c)
        rows[c] = run_active_learning(prob, "maxent", model_options={**opts, "noise": 0.2 * c}, **run)
    assert rows[100.0]["rmse"].to_numpy() == pytest.approx(100.0 * rows[1.0]["rmse"].to_numpy(), rel=1e-6)
    assert rows[100.0]["nll"].to_numpy() == pytest.approx(rows[1.0]["nll"].to_numpy() + math.log(100.0), rel=1e-6)


def test_selections_record_the_dataset_rows_each_run_labelled(tmp_path):
    """The loop threw the chosen pool positions away: results.csv only counted them. selections (returned with
    return_selections=True, written as selections.csv) name every labelled point by its row in the dataset as loaded,
    round 0 the initial set, with ACS-FW's batch weight; replaying a round's labelled set reproduces its RMSE."""
    import math

    import numpy as np

    from pyrozoo.active.posteriors import BLRPoolPosterior
    from pyrozoo.models.blr import load_regression_frame

    init, batch, budget = 10, 5, 15
    results, sel = run_experiment("boston", ["acs-fw", "random"], [0, 1], init_size=init, batch_size=batch,
                                  budget=budget, progress=False, return_selections=True)
    assert list(sel.columns) == ["dataset", "acquisition", "seed", "round", "row", "weight"]
    y_raw = load_regression_frame("boston")[1]
    for (acq, seed), run in sel.groupby(["acquisition", "seed"]):
        problem = load_problem("boston", seed)
        rows = run["row"].tolist()
        res = results[(results["acquisition"] == acq) & (results["seed"] == seed)]
        assert len(rows) == len(set(rows)) == init + int(res["selected"].sum()) == init + budget
        assert set(rows) <= set(problem.pool_rows) and not set(rows) & set(problem.test_rows)
        assert sorted(problem.pool_rows + problem.test_rows) == list(range(506))
        pos = [problem.pool_rows.index(r) for r in rows]
        assert np.allclose(problem.y_pool[pos].numpy(), y_raw[rows])  # the rows of the data as loaded
        assert (run["round"] == 0).sum() == init and run["weight"][run["round"] == 0].isna().all()
        later = run["weight"][run["round"] > 0]
        assert (later > 0).all() if acq == "acs-fw" else later.isna().all()
        for r in (0, res["round"].max()):  # replay: the labelled set of round r gives round r's RMSE
            mask = torch.zeros(problem.x_pool.shape[0], dtype=torch.bool)
            mask[[problem.pool_rows.index(v) for v in run["row"][run["round"] <= r]]] = True
            y0 = problem.y_pool[[problem.pool_rows.index(v) for v in run["row"][run["round"] == 0]]]
            m, s = float(y0.mean()), float(y0.std())
            post = BLRPoolPosterior.fit(problem.x_pool[mask], (problem.y_pool[mask] - m) / s)
            rmse = math.sqrt(float(((post.predictive(problem.x_test)[0] * s + m - problem.y_test) ** 2).mean()))
            assert rmse == pytest.approx(float(res["rmse"][res["round"] == r].iloc[0]), rel=1e-9)
    out = tmp_path / "al"
    assert main(["active", "--dataset", "boston", "--acquisition", "acs-fw,random", "--init-size", "10",
                 "--batch-size", "5", "--budget", "15", "--seeds", "2", "--out", str(out), "--no-progress"]) == 0
    written = pd.read_csv(out / "selections.csv")
    pd.testing.assert_frame_equal(written, sel, check_dtype=False)


def test_selections_name_rows_by_a_problems_own_labels():
    """A user's problem: rows are named by pool_rows, else a pandas x_pool's index labels, else 0-based positions;
    pool_rows that are not one distinct label per pool row are refused before any fit."""
    import numpy as np

    from pyrozoo.active.loop import ActiveProblem

    p = load_problem("boston", 0)
    xp = pd.DataFrame(p.x_pool[:40].numpy(), index=[f"house-{i}" for i in range(40)])
    run = {"init_size": 10, "batch_size": 5, "budget": 10, "progress": False, "return_selections": True}
    sel = run_active_learning(ActiveProblem("t", xp, p.y_pool[:40], p.x_test, p.y_test), "bald", **run)[1]
    assert sel["row"].str.startswith("house-").all() and sel["row"].is_unique and len(sel) == 20
    sel = run_active_learning(ActiveProblem("t", p.x_pool[:40], p.y_pool[:40], p.x_test, p.y_test), "bald", **run)[1]
    assert set(sel["row"]) <= set(range(40))
    ids = np.arange(1000, 1040)
    sel = run_active_learning(ActiveProblem("t", p.x_pool[:40], p.y_pool[:40], p.x_test, p.y_test, pool_rows=ids),
                              "bald", **run)[1]
    assert set(sel["row"]) <= set(ids.tolist())
    for rows, match in ((list(range(39)), r"^pool_rows: expected one label per x_pool row \(40\), got 39"),
                        ([0] * 40, r"^pool_rows: expected distinct row labels, got 0 more than once"),
                        ([0.5] * 40, r"^pool_rows: expected row labels that are integers or texts"),
                        (3, r"^pool_rows: expected one label per x_pool row")):
        with pytest.raises(PyrozooError, match=match):
            run_active_learning(ActiveProblem("t", p.x_pool[:40], p.y_pool[:40], p.x_test, p.y_test,
                                              pool_rows=rows), "bald", **run)
    with pytest.raises(PyrozooError, match=r"^test_rows: expected one label per x_test row"):
        run_active_learning(ActiveProblem("t", p.x_pool[:40], p.y_pool[:40], p.x_test, p.y_test, test_rows=[1]),
                            "bald", **run)
    assert isinstance(run_active_learning(ActiveProblem("t", p.x_pool[:40], p.y_pool[:40], p.x_test, p.y_test),
                                          "bald", **{**run, "return_selections": False}), pd.DataFrame)


@pytest.mark.parametrize("fraction, left", [(0.9999, "0 pool rows"), (0.999, "1 pool row of")])
def test_a_test_fraction_that_leaves_no_pool_is_refused_by_name(tmp_path, capsys, fraction, left):
    """--test-fraction 0.9999 said "x_pool: the pool is empty", 0.999 "init_size: expected fewer than the 1 pool
    points": neither named test_fraction. load_problem now refuses it, and run_experiment's pool-size errors say what
    the fraction left."""
    with pytest.raises(PyrozooError, match=rf"^test_fraction: expected a share that leaves at least 2 pool rows .*"
                                           rf"got {fraction:g}, .*leaves {left}"):
        load_problem("boston", 0, test_fraction=fraction)
    assert main(["active", "--test-fraction", str(fraction), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "test_fraction: expected" in capsys.readouterr().err and not (tmp_path / "o").exists()
    with pytest.raises(PyrozooError, match=r"^init_size: expected fewer than the 5 pool points, got 20 "
                                           r"\(test_fraction=0.99 leaves 5 pool rows of 506\)"):
        run_experiment("boston", "random", [0], test_fraction=0.99, progress=False)
