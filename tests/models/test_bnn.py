"""BNN entry: model shapes, data loaders, bad input, and the fitted posterior's public methods."""

from __future__ import annotations

import math
from dataclasses import replace

import arviz as az
import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Predictive, Trace_ELBO

from pyrozoo import registry
from pyrozoo.config import RunConfig
from pyrozoo.data.uci import load_uci, uci_split
from pyrozoo.errors import PyrozooError
from pyrozoo.models.bnn import (
    BOX_SCALES,
    NOISE_SCALES,
    TAIL_WEIGHTS,
    MLPLayout,
    bnn_model,
    build_posterior,
    calibrate_noise,
    fit_bnn,
    mlp_forward,
    train_bnn,
)

FAST = {"hidden": 8, "epochs": 30, "swa_epochs": 15, "rank": 5, "batch_size": 16}
FAST_NO_RANK = {k: v for k, v in FAST.items() if k != "rank"}  # rank: only the posteriors with a low-rank part


def _toy(n: int = 80, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 4 - 2
    y = torch.sin(X[:, 0]) + 0.1 * X[:, 1] + 0.2 * torch.randn(n, generator=gen, dtype=torch.float64)
    return X, y


@pytest.fixture(scope="module")
def training():
    X, y = _toy()
    return X, y, train_bnn(X, y, seed=0, **FAST)


def test_model_prior_predictive_and_log_density():
    X = torch.randn(7, 3)
    tr = poutine.trace(bnn_model).get_trace(X, hidden=5, depth=2)
    assert tr.nodes["y"]["value"].shape == (7,)
    assert tr.nodes["w0"]["value"].shape == (5, 3) and tr.nodes["w1"]["value"].shape == (5, 5)
    tr = poutine.trace(bnn_model).get_trace(X, torch.zeros(7), hidden=5)
    assert math.isfinite(float(tr.log_prob_sum()))


def test_model_returns_y_as_the_other_models_do():
    """bnn_model returned the network mean f(X), while its docstring (and every other zoo model) gives y: the
    observed y, or the prior-predictive draw when y is None."""
    X = torch.randn(7, 3)
    tr = poutine.trace(bnn_model).get_trace(X, hidden=5)
    assert torch.equal(tr.nodes["_RETURN"]["value"], tr.nodes["y"]["value"])
    y = torch.arange(7.0)
    assert torch.equal(bnn_model(X, y, hidden=5), y)


@pytest.mark.parametrize("kind", ["swag", "swag-diag", "ciber"])
def test_swag_guides_under_pyro_vectorization(training, kind):
    """The SWAG guides failed under Predictive(parallel=True) and Trace_ELBO(vectorize_particles=True) (Delta event
    dims), and the model, given weights (S, 1, ...) from an outer plate, gave means (S, 1, n): Pyro broadcast y's
    log-density to (S, S, n), pairing every particle's weights with every other's. Now each draw is scored on its
    own: the vectorized log-density of y equals the per-draw one, exactly."""
    _, _, tr = training
    guide = build_posterior(tr, kind, num_samples=5, **({"num_collapsed": 3} if kind == "ciber" else {})).guide

    def model(X, y=None):
        return bnn_model(X, y, hidden=FAST["hidden"])

    n = tr.X.shape[0]
    out = Predictive(model, guide=guide, num_samples=4, parallel=True)(tr.X)
    seq = Predictive(model, guide=guide, num_samples=4)(tr.X)
    assert {k: v.shape for k, v in out.items()} == {k: v.shape for k, v in seq.items()}
    assert out["y"].shape == (4, n) and out["w0"].shape == (4, 1, FAST["hidden"], 2)
    with pyro.plate("particles", 4, dim=-2):
        g = poutine.trace(guide).get_trace(tr.X, tr.y)
        m = poutine.trace(poutine.replay(model, trace=g)).get_trace(tr.X, tr.y)
    m.compute_log_prob()
    assert m.nodes["y"]["log_prob"].shape == (4, n)
    for s in range(4):
        draw = {k: g.nodes[k]["value"][s, 0] for k in tr.layout.sites}
        one = poutine.trace(poutine.condition(model, draw)).get_trace(tr.X, tr.y)
        one.compute_log_prob()
        assert torch.allclose(m.nodes["y"]["log_prob"][s], one.nodes["y"]["log_prob"], rtol=1e-5, atol=1e-5)
    loss = Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1).loss(model, guide, tr.X, tr.y)
    assert math.isfinite(loss)


def test_mean_head_index_is_the_mean_output_layer():
    layout = MLPLayout(3, 4, 1)
    theta = torch.randn(layout.num_params)
    X = torch.randn(6, 3)
    idx = layout.mean_head_index()
    assert idx.numel() == 5
    for j in idx.tolist():  # moving a mean-head weight changes the mean only, linearly
        bumped = theta.clone()
        bumped[j] += 1.0
        m0, v0 = mlp_forward(layout.unflatten(theta), X, 1)
        m1, v1 = mlp_forward(layout.unflatten(bumped), X, 1)
        assert torch.equal(v0, v1) and not torch.equal(m0, m1)


def test_uci_loaders_and_splits():
    X, y, cols = load_uci("boston")
    assert X.shape == (506, 13) and y.shape == (506,) and "lstat" in cols
    s = uci_split("concrete", 3)
    assert s.X_train.shape == (927, 8) and s.X_test.shape == (103, 8)
    assert s.X_train.mean(0).abs().max() < 1e-5 and abs(float(s.y_train.std()) - 1) < 1e-5
    assert not torch.equal(uci_split("concrete", 4).y_test, s.y_test)


@pytest.mark.parametrize("kind", ["swag", "swag-diag", "ciber", "collapsed-gaussian", "map"])
def test_posterior_public_methods(training, kind):
    X, y, tr = training
    post = build_posterior(tr, kind, **({} if kind == "map" else {"num_samples": 12}),
                           **({"num_collapsed": 4} if kind == "ciber" else {}))
    Xn = X[:5]
    mean, var = post.predictive_moments(Xn)
    assert mean.shape == (5,) and (var > 0).all()
    # sample_predictive draws from the same predictive: mean and variance within 5 Monte Carlo sds
    n = 20000
    draws = post.sample_predictive(Xn, n, generator=torch.Generator().manual_seed(1))
    assert draws.shape == (n, 5)
    assert ((draws.mean(0) - mean).abs() < 5 * (var / n).sqrt()).all()
    assert ((draws.var(0) / var - 1).abs() < 5 * math.sqrt(2 / n) * 2).all()  # kurtosis allowance x2
    lpd = post.log_predictive_density(Xn, y[:5], defensive_weight=1e-6)
    assert lpd.shape == (5,) and torch.isfinite(lpd).all()


def test_ciber_predictive_integrates_to_one_in_data_units(training):
    X, y, tr = training
    post = build_posterior(tr, "ciber", num_samples=5, num_collapsed=4)
    mean, var = post.predictive_moments(X[:1])
    grid = torch.linspace(float(mean) - 8 * float(var.sqrt()), float(mean) + 8 * float(var.sqrt()), 4001,
                          dtype=torch.float64)
    dens = post.log_predictive_density(X[:1].expand(len(grid), -1), grid).exp()
    assert float(torch.trapezoid(dens, grid)) == pytest.approx(1.0, abs=1e-4)
    assert float(torch.trapezoid(dens * grid, grid)) == pytest.approx(float(mean), abs=1e-3 * float(var.sqrt()))


def test_validation_calibration_of_noise_scale_and_defensive_weight():
    """val_fraction holds out rows (disjoint from the fit); calibrate_noise maximizes the held-out log predictive
    density over its grid, and the chosen posterior reproduces the recorded score."""
    X, y = _toy(90, seed=3)
    tr = train_bnn(X, y, seed=1, val_fraction=0.2, **{**FAST, "epochs": 20, "swa_epochs": 10})
    assert tr.X_val.shape == (18, 2) and tr.X.shape == (72, 2)
    rows = {tuple(r) for r in X.tolist()}
    assert {tuple(r) for r in tr.X_val.tolist()} <= rows
    fit_rows = {tuple(r) for r in (tr.X.double() * tr.scaling["x_std"].double() + tr.scaling["x_mean"].double())
                .tolist()}
    assert len(fit_rows) == 72
    for kind in ("ciber", "swag"):
        post = build_posterior(tr, kind, num_samples=8, **({"num_collapsed": 4} if kind == "ciber" else {}))
        cal = post.extras["calibration"]
        assert (post.noise_scale, post.defensive_weight, post.box_scale, post.tail_weight) == max(
            cal["grid"], key=cal["grid"].get)
        lpd = post.log_predictive_density(tr.X_val, tr.y_val)
        assert float(lpd.mean()) == pytest.approx(cal["val_lpd"], rel=1e-9)
        assert cal["val_lpd"] >= cal["grid"][(1.0, post.defensive_weight, 1.0, 0.0)]  # tau = 1, box 1 candidates
        if kind == "swag":
            assert post.defensive_weight == 0.0 and len(cal["grid"]) == len(NOISE_SCALES)
        else:  # the paper's triangle unless the tail grid is asked for; every box scale tried
            assert post.tail_weight == 0.0 and {key[2] for key in cal["grid"]} == set(BOX_SCALES)
    # weight_draws: the stored w_c stretched to the chosen box (inside it, and wider than box 1 allows)
    base = build_posterior(tr, "ciber", num_samples=8, num_collapsed=4, calibrate=False)
    wide = replace(base, box_scale=3.0)
    half = math.sqrt(3.0) * base.cond_cov.diagonal().sqrt()
    dev = wide.weight_draws().double()[:, wide.collapsed] - wide.cond_mean
    assert (dev.abs() <= 3 * half * (1 + 1e-5)).all() and (dev.abs() > half * (1 + 1e-3)).any()
    assert torch.equal(base.weight_draws(), base.draws)
    # our triangle mixture: the tail weight joins the grid; the chosen posterior reproduces its score
    mix = calibrate_noise(base, tr.X_val, tr.y_val, box_scales=(1.0, 3.0), tail_weights=TAIL_WEIGHTS)
    cal = mix.extras["calibration"]
    assert {key[3] for key in cal["grid"]} == set(TAIL_WEIGHTS)
    assert float(mix.log_predictive_density(tr.X_val, tr.y_val).mean()) == pytest.approx(cal["val_lpd"], rel=1e-9)
    plain = max(v for key, v in cal["grid"].items() if key[3] == 0.0)
    assert cal["val_lpd"] >= plain
    # validation targets drawn from the same predictive with the noise 1.5x wider: the grid search finds tau = 1.5
    # (with 720 rows the scale's MLE has sd ~ 1.5 / sqrt(2 * 720) = 0.04; the neighbours 1.25, 1.75 are > 6 sd off)
    swag = build_posterior(tr, "swag", num_samples=8, calibrate=False)
    Xv = tr.X_val.repeat(40, 1)
    yv = replace(swag, noise_scale=1.5).sample_predictive(Xv, 1, generator=torch.Generator().manual_seed(4))[0]
    assert calibrate_noise(swag, Xv, yv).noise_scale == 1.5


def test_defensive_mixture_keeps_the_predictive_moments(training):
    from dataclasses import replace

    X, y, tr = training
    post = build_posterior(tr, "ciber", num_samples=6, num_collapsed=4)
    mixed = replace(post, defensive_weight=0.3)
    m0, v0 = post.predictive_moments(X[:4])
    m1, v1 = mixed.predictive_moments(X[:4])
    assert torch.equal(m0, m1) and torch.equal(v0, v1)
    n = 20000
    draws = mixed.sample_predictive(X[:4], n, generator=torch.Generator().manual_seed(2))
    assert ((draws.mean(0) - m1).abs() < 5 * (v1 / n).sqrt()).all()
    assert ((draws.var(0) / v1 - 1).abs() < 5 * math.sqrt(2 / n) * 2).all()
    # the log density is the log of the mixture (1 - lam) ciber + lam gauss, per draw
    far = y[:4] + 50.0  # far outside the triangular support: only the Gaussian part is left
    ll = mixed.pointwise_log_likelihood(X[:4], far)
    md, vd = mixed.per_draw_moments(X[:4])
    gauss = torch.distributions.Normal(md, vd.sqrt()).log_prob(far.double()) + math.log(0.3)
    assert torch.allclose(ll, gauss, rtol=1e-9)


def test_network_dtype_must_be_floating():
    from pyrozoo.models.bnn import HeteroscedasticMLP

    for dtype in (torch.int64, "float32"):
        with pytest.raises(PyrozooError, match="dtype: expected a floating torch dtype"):
            HeteroscedasticMLP(2, hidden=3, dtype=dtype)


def test_bad_input_is_rejected_before_fitting():
    X, y = _toy(20)
    bad = X.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(PyrozooError, match=r"X: expected finite values.*NaN at index \(3, 1\)"):
        fit_bnn(bad, y, **FAST)
    with pytest.raises(PyrozooError, match=r"y: expected shape \(20,\) \(one value per row of X\), got \(19,\)"):
        fit_bnn(X, y[:-1], **FAST)
    with pytest.raises(PyrozooError, match="num_collapsed: ciber integrates at most 12"):
        fit_bnn(X, y, posterior="ciber", num_collapsed=13, **FAST)
    # caught before the SGD/SWA trajectory, not after it (hidden=3: a mean head of 4 weights)
    import pyrozoo.models.bnn as bnn_module

    def no_training(*args, **kwargs):
        raise AssertionError("train_bnn ran before the arguments were validated")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bnn_module, "train_bnn", no_training)
        with pytest.raises(PyrozooError, match=r"num_collapsed: .* at most the 4 mean-head weights \(hidden \+ 1\)"):
            fit_bnn(X, y, posterior="ciber", num_collapsed=5, **{**FAST, "hidden": 3})
        with pytest.raises(PyrozooError, match="scale: expected"):
            fit_bnn(X, y, scale=-1.0, **FAST)
        with pytest.raises(PyrozooError, match="num_samples: expected"):
            fit_bnn(X, y, num_samples=0, **FAST)
        with pytest.raises(PyrozooError, match="vi_steps: expected an integer >= 1"):
            fit_bnn(X, y, posterior="vi", vi_steps=-1, **FAST_NO_RANK)
        with pytest.raises(PyrozooError, match="rank: expected an integer"):
            fit_bnn(X, y, **{**FAST, "rank": "abc"})
        with pytest.raises(PyrozooError, match="train_options: unknown key"):
            fit_bnn(X, y, banana=1, **FAST)
    # the SGD settings and the device are checked before the data move (they were raw torch errors)
    with pytest.raises(PyrozooError, match=r"momentum: expected a number in \[0, 1\)"):
        train_bnn(X, y, **{**FAST, "momentum": -1.0})
    with pytest.raises(PyrozooError, match="device: expected one of auto"):
        fit_bnn(X, y, device="banana", **FAST)
    if not torch.cuda.is_available():
        with pytest.raises(PyrozooError, match="CUDA is not available"):
            fit_bnn(X, y, device="cuda", **FAST)
    with pytest.raises(PyrozooError, match="posterior: expected one of"):
        fit_bnn(X, y, posterior="laplace", **FAST)
    with pytest.raises(PyrozooError, match=r"val_fraction: expected a number in \(0, 1\)"):
        fit_bnn(X, y, val_fraction=1.5, **FAST)
    with pytest.raises(PyrozooError, match="calibrate: needs validation rows"):
        build_posterior(train_bnn(X, y, **{**FAST, "epochs": 2, "swa_epochs": 2}), "swag", calibrate=True)


def test_flags_take_true_or_false_only(training):
    """standardize="no" was read as True (the data were standardized); calibrate="no" was read as True and reported
    as missing validation rows."""
    X, y, tr = training
    for flag in ("standardize", "progress"):
        with pytest.raises(PyrozooError, match=f"{flag}: expected True or False, got 'no'"):
            train_bnn(X, y, **{**FAST, flag: "no"})
    with pytest.raises(PyrozooError, match="calibrate: expected True or False, got 'no'"):
        build_posterior(tr, "swag", calibrate="no")
    assert build_posterior(tr, "swag", num_samples=2, calibrate=False).noise_scale == 1.0
    with pytest.raises(PyrozooError, match="dataset: expected one of boston, concrete"):
        uci_split("iris")
    entry = registry.get("bnn")
    with pytest.raises(PyrozooError, match="dataset: bnn knows boston, concrete"):
        entry.check_config(RunConfig(model="bnn", dataset="yacht"))


def test_cli_runs_on_boston(tmp_path):
    from pyrozoo.cli import main

    args = ["run", "bnn", "--dataset", "boston", "--inference", "ciber", "--out", str(tmp_path / "r"),
            "--no-progress", "--device", "cpu", "--steps", "5", "--num-samples", "4", "-o", "swa_epochs=3",
            "-o", "hidden=8", "-o", "rank=3", "-o", "num_collapsed=3"]
    assert main(args) == 0
    import json

    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert math.isfinite(metrics["test_rmse"]) and metrics["test_rmse"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["swag", "ciber", "collapsed-gaussian"])
def test_fit_on_cuda_with_cpu_generators(kind):
    """Data on the GPU (as `pyrozoo run --device cuda` moves it), unstandardized as the zoo entry fits it: the CPU
    generators that seed the draws must not clash with CUDA tensors."""
    X, y = _toy(40)
    collapsed = {"num_collapsed": 3} if kind == "ciber" else {}  # fit_bnn refuses it with the other posteriors
    post = fit_bnn(X.cuda(), y.cuda(), posterior=kind, num_samples=6, standardize=False,
                   **{**FAST, "epochs": 4, "swa_epochs": 4, "rank": 3, **collapsed})
    assert post.draws.device.type == "cuda"
    draws = post.sample_predictive(X[:3].cuda(), 50, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (50, 3) and torch.isfinite(draws).all()
    assert torch.isfinite(post.log_predictive_density(X[:3].cuda(), y[:3].cuda(), defensive_weight=1e-6)).all()


def test_predictions_reject_non_finite_inputs():
    X, y = _toy(20)
    post = fit_bnn(X, y, **{**FAST, "epochs": 2, "swa_epochs": 2})
    bad = X[:3].clone()
    bad[1, 0] = float("nan")
    with pytest.raises(PyrozooError, match="X: expected finite values"):
        post.predictive_moments(bad)


def test_predictions_for_inputs_far_from_zero_keep_their_precision():
    """A covariate shifted by 1e6 trains the same network (standardization), so the predictions at the shifted
    inputs must equal the unshifted ones within float32 rounding. New inputs were cast to float32 before x_mean
    (float32 too) was subtracted: steps of 0.06 near 1e6, predictions 0.05 off (1.7 at 1e8)."""
    X, y = _toy(40)
    kw = {**FAST, "epochs": 6, "swa_epochs": 3, "num_samples": 5, "seed": 0}
    shift = torch.tensor([1e6, 0.0], dtype=torch.float64)
    p0, p1 = fit_bnn(X, y, **kw), fit_bnn(X + shift, y, **kw)
    assert torch.equal(p0.draws, p1.draws)  # the same training
    (m0, v0), (m1, v1) = p0.predictive_moments(X), p1.predictive_moments(X + shift)
    torch.testing.assert_close(m1, m0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(v1, v0, rtol=1e-5, atol=1e-6)


def test_weight_axes_are_named_for_arviz():
    """w0 is (unit0, feature) like X's (obs_id, feature) columns; the two heads are labelled mean and log_var."""
    from pyrozoo.runner import run_model

    out = run_model(RunConfig(model="bnn", inference="swag-diag", device="cpu", progress=False, num_samples=4,
                              steps=4, options={"n": 30, "hidden": 5, "swa_epochs": 3, "batch_size": 16}), save=False)
    idata = out.result.to_inference_data()
    assert idata.posterior["w0"].dims == ("chain", "draw", "unit0", "feature")
    assert idata.posterior["w_out"].dims == ("chain", "draw", "output", "unit0")
    assert list(idata.posterior["output"].values) == ["mean", "log_var"]
    assert idata.constant_data["X"].dims == ("obs_id", "feature")


@pytest.mark.parametrize("kind", ["ciber", "swag"])
def test_a_collapsed_log_likelihood_says_so_in_the_attributes(kind, tmp_path):
    """ciber's stored log-likelihood integrates the collapsed weights out, so it is not the density at the posterior
    group's w_out draws; the InferenceData's attributes say so (and survive netCDF), an uncollapsed one says nothing."""
    from pyrozoo.runner import run_model

    collapsed = {"num_collapsed": 3} if kind == "ciber" else {}  # an option swag would ignore is refused
    out = run_model(RunConfig(model="bnn", inference=kind, device="cpu", progress=False, num_samples=4, steps=4,
                              options={"n": 30, "hidden": 5, "swa_epochs": 3, "batch_size": 16, **collapsed}),
                    save=False)
    out.result.to_inference_data().to_netcdf(str(tmp_path / "idata.nc"))
    note = az.from_netcdf(str(tmp_path / "idata.nc")).attrs.get("log_likelihood")
    if kind == "swag":
        assert note is None
    else:
        assert note.startswith("collapsed: log p(y | x, w_s) with 3 mean-head weights"), note


def test_posterior_methods_check_y_and_take_dataframes():
    """A column y (n, 1) used to broadcast to an (n, n) NLL, a single value to every row, NaN to a torch error; a
    DataFrame X worked for fitting but not for prediction; a defensive weight of 1 failed with a math domain error."""
    import numpy as np
    import pandas as pd

    from pyrozoo.models.bnn import fit_bnn

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X[:, 0] + 0.1 * rng.normal(size=40)
    post = fit_bnn(X, y, posterior="ciber", hidden=5, epochs=5, swa_epochs=3, num_samples=4, num_collapsed=3)
    assert torch.allclose(post.predictive_moments(pd.DataFrame(X[:3]))[0], post.predictive_moments(X[:3])[0])
    for bad, message in ((y[:5, None], r"y: expected a 1-D array of shape \(5,\), got shape \(5, 1\)"),
                         (y[:1], r"got shape \(1,\)"), (np.r_[y[:4], np.nan], "y: expected finite values")):
        for method in (post.moment_matched_nll, post.log_predictive_density):
            with pytest.raises(PyrozooError, match=message):
                method(X[:5], bad)
    for weight in (1.0, -0.5, True):
        with pytest.raises(PyrozooError, match=r"defensive_weight: expected a number in \[0, 1\)"):
            post.log_predictive_density(X[:5], y[:5], defensive_weight=weight)


def test_fit_bnn_refuses_what_would_fail_after_training_before_it():
    """swa_epochs=1 (one collected iterate) and, without a hidden layer, more collapsed weights than input columns
    + 1 were errors only after the whole SGD run (the second one citing the cost limit instead of the real one)."""
    import time

    X, y = torch.randn(40, 3, dtype=torch.float64), torch.randn(40, dtype=torch.float64)
    t0 = time.perf_counter()
    with pytest.raises(PyrozooError, match=r"^swa_epochs: expected an integer >= 2"):
        fit_bnn(X, y, epochs=10_000, swa_epochs=1)
    with pytest.raises(PyrozooError, match=r"^num_collapsed: ciber integrates at most the 4 mean-head weights "
                                           r"\(input columns \+ 1\), got 5"):
        fit_bnn(X, y, posterior="ciber", depth=0, num_collapsed=5, epochs=10_000)
    assert time.perf_counter() - t0 < 5  # no training ran


@pytest.mark.parametrize("depth", [1, 0])
def test_dataframe_column_names_are_the_feature_coordinate(depth):
    """A DataFrame X's string column names travel through split_regression and make_bnn_dataset to the ``feature``
    axis of the input-layer weights (w0, or w_out without hidden layers) and of X; arrays keep 0, 1, ..."""
    pd = pytest.importorskip("pandas")
    from pyrozoo.data.uci import split_regression
    from pyrozoo.models.bnn import fit_bnn_entry, make_bnn_dataset

    X, y = _toy(40)
    df, ys = pd.DataFrame(X.numpy(), columns=["age", "dose"]), pd.Series(y.numpy(), name="target")
    cfg = RunConfig(model="bnn", inference="swag-diag", device="cpu", progress=False, num_samples=3, steps=3,
                    options={"depth": depth, "swa_epochs": 3, "batch_size": 16, **({"hidden": 4} if depth else {})})
    first = "w0" if depth else "w_out"
    split = split_regression(df, ys)
    assert split.feature_names == ["age", "dose"]
    idata = fit_bnn_entry(make_bnn_dataset(split, name="toy", hidden=4, depth=depth), cfg).to_inference_data()
    assert idata.posterior[first].dims[-1] == "feature"
    assert idata.posterior[first].coords["feature"].values.tolist() == ["age", "dose"]
    assert idata.constant_data["X"].coords["feature"].values.tolist() == ["age", "dose"]
    split = split_regression(X, y)
    assert split.feature_names is None
    idata = fit_bnn_entry(make_bnn_dataset(split, name="toy", hidden=4, depth=depth), cfg).to_inference_data()
    assert idata.posterior[first].coords["feature"].values.tolist() == [0, 1]
    assert "feature" not in idata.constant_data["X"].coords


def test_a_dataframe_with_other_columns_than_the_fit_is_refused():
    """fit_bnn keeps a DataFrame X's string column names; every posterior method reads columns by position, so a
    DataFrame with those names in another order (QA: predictions moved silently) or with other names is refused.
    Arrays and tensors pass by position; a zoo run's posterior (result.guide) has the dataset's names."""
    import pandas as pd

    X, y = _toy(30)
    df = pd.DataFrame(X.numpy(), columns=["age", "dose"])
    post = fit_bnn(df, y, **{**FAST, "epochs": 2, "swa_epochs": 3})
    assert post.feature_names == ["age", "dose"]
    swapped = r"^X: expected the columns seen in fit, in that order, \['age', 'dose'\]; got \['dose', 'age'\]"
    for method in (post.predictive_moments, lambda x: post.sample_predictive(x, 2),
                   lambda x: post.log_predictive_density(x, y[:5])):
        with pytest.raises(PyrozooError, match=swapped):
            method(df[["dose", "age"]].iloc[:5])
    with pytest.raises(PyrozooError, match=r"missing \['dose'\], unexpected \['d'\]"):
        post.predictive_moments(df.rename(columns={"dose": "d"}))
    assert torch.equal(post.predictive_moments(df.iloc[:5])[0], post.predictive_moments(X[:5])[0])
    assert fit_bnn(X, y, **{**FAST, "epochs": 2, "swa_epochs": 3}).feature_names is None

    from pyrozoo.data.uci import split_regression
    from pyrozoo.models.bnn import fit_bnn_entry, make_bnn_dataset

    cfg = RunConfig(model="bnn", inference="map", device="cpu", progress=False, steps=2,
                    options={"hidden": 4, "swa_epochs": 2, "batch_size": 16})
    ds = make_bnn_dataset(split_regression(df, y), name="toy", hidden=4)
    guide = fit_bnn_entry(ds, cfg).guide
    assert guide.feature_names == ["age", "dose"]
    with pytest.raises(PyrozooError, match=swapped):
        guide.predictive_moments(df[["dose", "age"]])


def test_repeated_column_names_and_categorical_columns_are_refused():
    """Two columns named alike were kept as the feature coordinate, and az.summary / `pyrozoo diagnose` then failed;
    an integer categorical column was read as amounts."""
    import pandas as pd

    from pyrozoo.data.uci import split_regression

    X, y = _toy(30)
    with pytest.raises(PyrozooError, match="X: 'x' given more than once; name each column once"):
        split_regression(pd.DataFrame(X.numpy(), columns=["x", "x"]), y)
    df = pd.DataFrame(X.numpy(), columns=["a", "b"]).assign(c=pd.Categorical([1, 2, 3] * 10))
    with pytest.raises(PyrozooError, match=r"X: expected numbers, got categorical column\(s\) \['c'\]"):
        fit_bnn(df, y, **FAST)


@pytest.mark.parametrize("name", ["boston", "concrete"])
def test_uci_splits_carry_the_column_names(name):
    """--dataset boston|concrete labelled the feature axis 0, 1, ... although load_uci returns the columns."""
    _, _, cols = load_uci(name)
    assert uci_split(name, 0).feature_names == cols
    ds = registry.get("bnn").datasets[name](0)
    assert ds.meta["feature_names"] == cols and len(cols) == ds.inputs["X"].shape[1]


@pytest.mark.parametrize("inference,options,match", [
    ("swag", {"num_collapsed": 12}, r"num_collapsed applies only to bnn's ciber; with swag it would have no effect"),
    ("collapsed-gaussian", {"num_collapsed": 3}, "num_collapsed applies only to bnn's ciber"),
    ("swag-diag", {"rank": 5}, "rank applies only to bnn's swag, ciber or collapsed-gaussian"),
    ("map", {"scale": 0.3}, "scale applies only to bnn's swag, swag-diag, ciber or collapsed-gaussian"),
    ("vi", {"defensive_weight": 1e-3}, "defensive_weight applies only to bnn's ciber"),
    ("ciber", {"defensive_weight": 1e-3, "val_fraction": 0.1}, "defensive_weight has no effect with val_fraction > 0"),
    ("swag", {"hidden": 8, "depth": 0}, r"options: hidden has no effect with depth 0 \(no hidden layers"),
    ("map", {"hidden": 8, "depth": 0.0}, "hidden has no effect with depth 0"),
])
def test_options_another_posterior_reads_are_refused(inference, options, match):
    """bnn declared no inference_options, so an option only some posteriors read (docs/bnn.md's own example set
    num_collapsed for swag) passed silently; checked before any data are loaded."""
    entry = registry.get("bnn")
    with pytest.raises(PyrozooError, match=match):
        entry.check_config(RunConfig(model="bnn", dataset="concrete", inference=inference, options=options))


def test_options_their_posteriors_read_are_accepted():
    entry = registry.get("bnn")
    for inference, options in (("ciber", {"split": 3, "num_collapsed": 12, "rank": 5, "scale": 0.3,  # docs/bnn.md
                                          "defensive_weight": 1e-3}),
                               ("ciber", {"val_fraction": 0.1}), ("swag-diag", {"scale": 0.3}),
                               ("collapsed-gaussian", {"rank": 3}), ("map", {"val_fraction": 0.1, "hidden": 4}),
                               ("swag", {"depth": 0}), ("swag", {"depth": 2, "hidden": 4})):
        entry.check_config(RunConfig(model="bnn", dataset="concrete", inference=inference, options=options))


@pytest.mark.parametrize("kind", ["swag", "ciber"])
def test_posterior_predictive_group_draws_from_the_fitted_predictive(kind):
    """With val_fraction > 0 the posterior_predictive group ignored the calibrated noise scale tau and the collapsed
    likelihood (bnn_model at the stored weights); it now draws one y per posterior draw from the posterior's own
    predictive, so its spread matches predictive_moments (and not the tau = 1 one), and the Result still pickles."""
    import pickle

    from pyrozoo.runner import run_model

    collapsed = {"num_collapsed": 3} if kind == "ciber" else {}
    out = run_model(RunConfig(model="bnn", inference=kind, dataset="boston", device="cpu", progress=False,
                              num_samples=40, steps=60,
                              options={"hidden": 9, "swa_epochs": 10, "val_fraction": 0.2, **collapsed}), save=False)
    result, post = out.result, out.result.guide
    assert post.noise_scale > 1.0  # 1.25 on this split
    restored = pickle.loads(pickle.dumps(result))  # before drawing: the predictive function must survive pickling
    idata = restored.to_inference_data(posterior_predictive=True)
    pp = idata.posterior_predictive["y"]
    assert pp.dims == ("chain", "draw", "obs_id") and pp.shape == (1, 40, 455)
    X = torch.as_tensor(result.constant_data["X"])
    var = float(pp.var(("chain", "draw"), ddof=1).mean())
    exact = float(post.predictive_moments(X)[1].mean())
    # what the group drew before: bnn_model's Gaussian at the posterior group's weights (tau 1, nothing collapsed)
    mean, log_var = mlp_forward({k: torch.as_tensor(v[0]) for k, v in result.posterior.items()}, X.float(),
                                post.layout.depth)
    plain = float((log_var.exp().mean(0) + mean.var(0, unbiased=False)).mean())
    # and what tau = 1 would give: the calibrated noise scale must reach the group
    untuned = float(replace(post, noise_scale=1.0).predictive_moments(X)[1].mean())
    assert var == pytest.approx(exact, rel=0.05) and untuned < 0.9 * exact, (var, exact, untuned)
    if kind == "swag":  # for ciber plain's spread is within 5% of exact at this size (SWAG's paper covariance)
        assert plain < 0.9 * exact, (var, exact, plain)
    assert torch.equal(torch.as_tensor(pp.values), torch.as_tensor(result.predictive_fn(result)["y"]))  # seeded


@pytest.mark.parametrize("kind", ["swag", "ciber"])
@pytest.mark.parametrize("change,match", [
    # one y broadcast over the rows
    ({"y_val": "one"}, r"y_val: expected a 1-D array of shape \(6,\), got shape \(1,\)"),
    ({"y_val": "column"}, r"y_val: expected a 1-D array of shape \(6,\), got shape \(6, 1\)"),
    ({"y_val": "short"}, r"y_val: expected a 1-D array of shape \(6,\), got shape \(5,\)"),
    ({"y_val": "inf"}, r"y_val: expected finite values, found 1 non-finite \(inf"),  # tau 0.8 with val_lpd -inf
    ({"y_val": "nan"}, r"y_val: expected finite values, found 1 non-finite \(NaN"),
    ({"X_val": "nan"}, r"X_val: expected finite values"),
    ({"X_val": "wide"}, r"X_val: expected shape \(n, 2\), got \(6, 3\)"),
    ({"noise_scales": (-1.0, 1.0)}, r"noise_scales: expected a finite value > 0, got -1.0"),  # was chosen
    ({"noise_scales": (1.0, math.inf)}, r"noise_scales: expected a finite value > 0, got inf"),
    ({"noise_scales": ()}, r"noise_scales: expected a non-empty sequence of numbers, got \(\)"),
    ({"noise_scales": 1.5}, r"noise_scales: expected a non-empty sequence of numbers, got 1.5"),
    ({"defensive_weights": (1.0,)}, r"defensive_weights: expected a number in \[0, 1\), got 1.0"),  # swag too
    ({"defensive_weights": []}, r"defensive_weights: expected a non-empty sequence"),
    ({"box_scales": (0.0,)}, r"box_scales: expected a finite value > 0, got 0.0"),
    ({"tail_weights": (1.0,)}, r"tail_weights: expected a number in \[0, 1\), got 1.0"),
])
def test_calibrate_noise_checks_its_inputs_before_any_work(training, kind, change, match, monkeypatch):
    """calibrate_noise broadcast one y over the rows, chose tau 0.8 at val_lpd -inf for an inf target, returned a
    negative tau from its grid and failed with raw errors (math domain error, max() of an empty sequence)."""
    import pyrozoo.models.bnn as bnn

    X, y, tr = training
    post = build_posterior(tr, kind, num_samples=4, calibrate=False,
                           **({"num_collapsed": 3} if kind == "ciber" else {}))
    Xv, yv = X[:6].clone(), y[:6].clone()
    bad_y = {"one": yv[:1], "column": yv[:, None], "short": yv[:5],
             "inf": yv.index_fill(0, torch.tensor([2]), math.inf), "nan": yv.index_fill(0, torch.tensor([0]), math.nan)}
    bad_x = {"nan": Xv.index_put((torch.tensor([1]), torch.tensor([0])), torch.tensor(math.nan, dtype=Xv.dtype)),
             "wide": torch.cat([Xv, Xv[:, :1]], 1)}
    kwargs = {k: v for k, v in change.items() if k not in ("X_val", "y_val")}
    Xv = bad_x[change["X_val"]] if "X_val" in change else Xv
    yv = bad_y[change["y_val"]] if "y_val" in change else yv
    monkeypatch.setattr(bnn.BNNPosterior, "_per_draw", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(PyrozooError, match=match):
        calibrate_noise(post, Xv, yv, **kwargs)


# A user's data file: pyrozoo run bnn --data my.csv -o outcome=y
def test_a_data_file_runs_from_the_cli_like_the_python_path(tmp_path, curve_csv):
    import numpy as np

    from pyrozoo.cli import main
    from pyrozoo.data.uci import split_regression
    from pyrozoo.models.bnn import fit_bnn_entry, make_bnn_dataset

    df, path = curve_csv(40, 5)
    out = tmp_path / "run"
    opts = {"hidden": 9, "swa_epochs": 4, "batch_size": 16}
    flags = [a for k, v in opts.items() for a in ("-o", f"{k}={v}")]
    assert main(["run", "bnn", "--data", str(path), "-o", "outcome=z", *flags, "--inference", "swag-diag",
                 "--steps", "8", "--num-samples", "6", "--seed", "2", "--out", str(out)]) == 0
    idata = az.from_netcdf(out / "idata.nc")
    assert idata.observed_data["y"].sizes["obs_id"] == 36  # the training part of the default 90/10 split
    assert list(idata.posterior["w0"].coords["feature"].values) == ["u", "v"]
    ref = fit_bnn_entry(make_bnn_dataset(split_regression(df[["u", "v"]], df["z"].to_numpy()), name="curve",
                                         hidden=9),
                        RunConfig(model="bnn", inference="swag-diag", steps=8, num_samples=6, seed=2, options=opts))
    np.testing.assert_allclose(idata.posterior["w0"].values, np.asarray(ref.posterior["w0"]), rtol=1e-5, atol=1e-6)


def test_the_idata_observations_carry_the_data_file_s_row_numbers(tmp_path):
    """obs_id was 0 .. n-1 over the shuffled training rows, so az.loo's pareto_k could not be traced back to the
    file's rows; now its coordinate is the 0-based data-row number of each training row."""
    import warnings

    import numpy as np
    import pandas as pd

    from pyrozoo.runner import run_model

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40)})
    df["y"] = df["a"] + rng.normal(size=40)
    path = tmp_path / "data.csv"
    df.to_csv(path, index=False)
    out = run_model(RunConfig(model="bnn", inference="swag-diag", data=str(path), device="cpu", progress=False,
                              num_samples=6, steps=4, options={"outcome": "y", "hidden": 4, "swa_epochs": 4}),
                    save=False)
    idata = out.result.to_inference_data(posterior_predictive=True)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(0))  # split 0 of 40 rows: 4 test rows first
    train = perm[4:].tolist()
    for group in ("log_likelihood", "observed_data", "posterior_predictive", "constant_data"):
        assert idata[group]["obs_id"].values.tolist() == train, group
    assert out.result.to_inference_data().observed_data["obs_id"].values.tolist() == train
    y = df["y"].to_numpy()
    expected = (y[train] - y[train].mean()) / y[train].std(ddof=1)  # the training part's standardization
    observed = idata.observed_data["y"]
    np.testing.assert_allclose(observed.values, expected, rtol=1e-5)  # row obs_id = r holds the file's row r
    row = train[7]
    np.testing.assert_allclose(observed.sel(obs_id=row).values, (y[row] - y[train].mean()) / y[train].std(ddof=1),
                               rtol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns about high Pareto k on 36 rows and 6 draws
        pareto_k = az.loo(idata, pointwise=True).pareto_k
    assert pareto_k["obs_id"].values.tolist() == train


def test_a_shipped_dataset_s_split_labels_the_rows_of_the_full_table():
    entry = registry.get("bnn")
    data = entry.datasets["boston"](0, split=2)
    perm = torch.randperm(506, generator=torch.Generator().manual_seed(2))
    n_test = round(0.1 * 506)
    assert data.meta["rows"] == perm[n_test:].tolist() and data.meta["test_rows"] == perm[:n_test].tolist()
    X = load_uci("boston")[0]
    torch.testing.assert_close(data.inputs["X"][:3].double(),
                               torch.as_tensor((X[data.meta["rows"][:3]] - X[perm[n_test:]].mean(0))
                                               / X[perm[n_test:]].std(0, ddof=1)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows,test_fraction,need,held", [(4, 0.1, 5, 1), (7, 0.5, 8, 4)])
def test_a_data_file_too_short_for_the_split_names_the_file_and_the_split(tmp_path, rows, test_fraction, need, held):
    """A 4-row file passed the reader's minimum of 4, then the test row came out of it and training failed with
    "X: expected ... at least 4 rows ..., got shape (3, 5)", naming neither the file nor the split."""
    import numpy as np
    import pandas as pd

    from pyrozoo import registry

    rng = np.random.default_rng(0)
    path = tmp_path / "short.csv"
    pd.DataFrame({"y": rng.normal(size=rows), "a": rng.normal(size=rows)}).to_csv(path, index=False)
    with pytest.raises(PyrozooError, match=rf"^data .*short\.csv: expected at least {need} data rows \(4 to train on "
                                           rf"and {held} to test, test_fraction={test_fraction}\), got {rows}$"):
        registry.get("bnn").from_file(str(path), 0, outcome="y", test_fraction=test_fraction)
    path.write_text(path.read_text() + "0.5,0.25\n")  # one row more is enough
    assert registry.get("bnn").from_file(str(path), 0, outcome="y", test_fraction=test_fraction).inputs["X"].shape[0] \
        == 4


@pytest.mark.parametrize("num", [1, 2])
def test_bnn_model_keeps_the_draw_axis_of_stacked_draws(num):
    """bnn_model conditioned on stacked weight draws (S, *shape) returns y (S, N) for S = 1 too (it gave (N,))."""
    from pyrozoo.models.bnn import MLPLayout, bnn_model

    X = torch.randn(5, 3)
    draws = {k: torch.randn(num, *shape) for k, shape in MLPLayout(3, 4, 1).sites.items()}
    assert poutine.condition(bnn_model, draws)(X, hidden=4).shape == (num, 5)


def test_steps_with_vi_set_the_sgd_epochs_of_its_start_and_the_svi_steps():
    """vi starts from the last SGD iterate, so --steps sets both the SGD epochs before the SWA phase and the SVI
    steps (docs/bnn.md said SVI steps only); every other posterior reads no SVI steps."""
    from pyrozoo.runner import run_model

    opts = {"n": 30, "hidden": 4, "swa_epochs": 3, "batch_size": 16}
    for kind, svi in (("vi", 7), ("swag-diag", None)):
        out = run_model(RunConfig(model="bnn", inference=kind, device="cpu", progress=False, num_samples=3, steps=7,
                                  options=opts), save=False)
        extras = out.result.guide.extras
        assert len(extras["losses"]) == 7 + 3  # SGD epochs, then the SWA phase's
        assert len(extras.get("losses_vi", ())) == (svi or 0)


@pytest.mark.parametrize("kwargs,match", [
    ({"posterior": "swag", "num_collapsed": 7}, r"num_collapsed applies only to bnn's ciber; with swag it would have "
                                                r"no effect \(remove it\)"),
    ({"posterior": "map", "rank": 7}, "rank applies only to bnn's swag, ciber or collapsed-gaussian; with map"),
    ({"posterior": "swag", "vi_steps": 5}, "vi_steps applies only to bnn's vi; with swag"),
    ({"posterior": "ciber", "vi_lr": 0.1, "vi_steps": 5}, r"vi_steps, vi_lr apply only to bnn's vi; with ciber they"),
    ({"posterior": "vi", "scale": 0.3}, "scale applies only to bnn's swag, swag-diag, ciber or collapsed-gaussian"),
])
def test_fit_bnn_refuses_options_its_posterior_ignores(kwargs, match):
    """fit_bnn took num_collapsed with swag, rank with map, vi_steps with swag and returned as if they applied; it
    now refuses them as `pyrozoo run` refuses the -o options, before any training."""
    import pyrozoo.models.bnn as bnn_module

    X, y = _toy(20)

    def no_training(*args, **kw):
        raise AssertionError("train_bnn ran before the arguments were validated")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bnn_module, "train_bnn", no_training)
        with pytest.raises(PyrozooError, match=match):
            fit_bnn(X, y, **{**FAST_NO_RANK, **kwargs})
    # the options a posterior reads still pass (the defaults are applied when they are not given)
    post = fit_bnn(X, y, posterior="vi", vi_steps=3, vi_lr=0.02, num_samples=2, **{**FAST_NO_RANK, "epochs": 2})
    assert len(post.extras["losses_vi"]) == 3


def test_a_diverged_training_run_warns():
    """60 rows of y = 2x + N(0, 1) (54 to train on) with 10 epochs left the log-variance head at its clamp 8 for 25
    rows and the last loss 12 nats above the best epoch's (test RMSE 384), in silence; now a UserWarning names the
    likely fix. A normal fit (the FAST toy) says nothing."""
    import warnings

    gen = torch.Generator().manual_seed(0)
    X = torch.randn(54, 1, generator=gen, dtype=torch.float64)
    y = 2 * X[:, 0] + torch.randn(54, generator=gen, dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"bnn training has likely diverged: the log-variance head sits at its "
                                         r"clamp .* for \d+ of 54 training rows.*train for more epochs .* lower "
                                         r"learning rate"):
        train_bnn(X, y, epochs=10, swa_epochs=4, seed=0)
    Xt, yt = _toy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_bnn(Xt, yt, seed=0, **FAST)


def test_a_bnn_dataset_records_the_response_map_of_its_split():
    """make_bnn_dataset: the split standardized y on its training rows; meta's response_shift and response_scale
    (the zoo fit's Jacobian, and the attrs) map y_train back to the data."""
    from pyrozoo.data.uci import split_regression
    from pyrozoo.models.bnn import make_bnn_dataset

    gen = torch.Generator().manual_seed(0)
    X = torch.randn(40, 2, generator=gen, dtype=torch.float64)
    y = 500 + 80 * torch.randn(40, generator=gen, dtype=torch.float64)
    split = split_regression(X, y)
    ds = make_bnn_dataset(split, name="toy")
    back = ds.meta["response_shift"] + ds.meta["response_scale"] * ds.observed["y"].double()
    torch.testing.assert_close(back, y[split.train_rows], rtol=1e-6, atol=1e-3)  # y_train is float32
    assert (ds.meta["response_shift"], ds.meta["response_scale"]) == (split.y_mean, split.y_std)


@pytest.mark.parametrize("posterior", ["swag-diag", "ciber"])
def test_fit_bnn_reads_tensors_that_require_grad_as_their_values(posterior):
    """A y (or X) with requires_grad=True carried its graph into the standardized data: the second SGD step failed
    with torch's "Trying to backward through the graph a second time". The fit is that of the plain tensors."""
    import numpy as np

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)), rng.standard_normal(40)
    kw = {"posterior": posterior, "num_samples": 4, **FAST_NO_RANK, "epochs": 10, "swa_epochs": 4}
    if posterior == "ciber":
        kw["num_collapsed"] = 5  # at most hidden + 1
    grad = fit_bnn(torch.tensor(X, requires_grad=True), torch.tensor(y, requires_grad=True), **kw)
    plain = fit_bnn(torch.tensor(X), torch.tensor(y), **kw)
    assert torch.equal(grad.draws, plain.draws)


def test_python_api_refuses_a_given_hidden_with_depth_0_as_the_cli_does():
    """fit_bnn and train_bnn ran depth 0 with hidden 10 and silently ignored hidden (weights of the 0-hidden-layer
    net), while `pyrozoo run -o depth=0 -o hidden=10` refused it and docs/bnn.md said fit_bnn refuses the same
    combinations. Both now refuse it with the CLI's message, before any training; hidden left out (None, the usual
    50 units) still runs with depth 0, and is bitwise the fit with hidden=50 given."""
    import time

    X, y = _toy(30)
    cli = registry.get("bnn")
    with pytest.raises(PyrozooError) as from_cli:
        cli.check_config(RunConfig(model="bnn", dataset="concrete", options={"depth": 0, "hidden": 10}))
    t0 = time.perf_counter()
    for fit in (fit_bnn, train_bnn):
        with pytest.raises(PyrozooError, match=r"^options: hidden has no effect with depth 0 .*got hidden=10; "
                                               r"remove one of them$") as err:
            fit(X, y, depth=0, hidden=10, epochs=10_000, swa_epochs=3)
        assert str(err.value) == str(from_cli.value)
    with pytest.raises(PyrozooError, match="hidden has no effect with depth 0"):  # 50 given is given too
        fit_bnn(X, y, posterior="ciber", depth=0, hidden=50, num_collapsed=2, epochs=10_000, swa_epochs=3)
    assert time.perf_counter() - t0 < 5  # no training ran
    kw = {"epochs": 2, "swa_epochs": 2, "num_samples": 3}
    assert fit_bnn(X, y, depth=0, **kw).weight_draws().shape == (3, 2 * 2 + 2)  # w_out (2, 2), b_out (2,)
    torch.testing.assert_close(fit_bnn(X, y, **kw).draws, fit_bnn(X, y, hidden=50, **kw).draws, rtol=0, atol=0)
    with pytest.raises(PyrozooError, match=r"^hidden: expected an integer >= 1"):
        train_bnn(X, y, hidden=0, epochs=10_000)


def test_compare_with_blr_needs_bnns_training_rows_and_the_documented_recipe_gives_them(tmp_path):
    """docs said az.compare against blr on the same --data table works; bnn keeps only its training rows (90/10),
    so ArviZ refuses the pair. The recipe in docs/bnn.md (write the rows obs_id names, in that order, and run blr
    on them) pairs each bnn point with the same y in blr's fit, and the comparison runs."""
    import numpy as np
    import pandas as pd

    from pyrozoo.runner import run_model

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 2))
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "y": X @ [1.0, -0.5] + 0.3 * rng.standard_normal(40)}).to_csv(
        tmp_path / "d.csv", index=False)

    def fit(model, path, **kw):
        cfg = RunConfig(model=model, data=str(path), device="cpu", progress=False, num_chains=1, **kw)
        return run_model(replace(cfg, options={"outcome": "y", **cfg.options}), save=False).result.to_inference_data()

    bnn = fit("bnn", tmp_path / "d.csv", inference="swag-diag", steps=4, num_samples=20,
              options={"hidden": 4, "swa_epochs": 3, "batch_size": 16})
    rows = bnn.log_likelihood.obs_id.values
    assert len(rows) == 36 and len(set(rows)) == 36  # the training rows of the file, shuffled
    whole = fit("blr", tmp_path / "d.csv", num_samples=100)
    with pytest.raises(ValueError, match="number of observations should be the same"):
        az.compare({"bnn": bnn, "blr": whole})
    pd.read_csv(tmp_path / "d.csv").iloc[rows].to_csv(tmp_path / "rows.csv", index=False)
    blr = fit("blr", tmp_path / "rows.csv", num_samples=100)
    in_units = [fit_.observed_data["y"].values * fit_.attrs["response_scale"] + fit_.attrs["response_shift"]
                for fit_ in (bnn, blr)]
    np.testing.assert_allclose(*in_units, rtol=0, atol=1e-5)  # bnn's observed y is float32
    table = az.compare({"bnn": bnn, "blr": blr})
    assert np.isfinite(table["elpd_loo"]).all()


def test_a_seed_beyond_numpys_range_is_refused_before_training(monkeypatch):
    """train_bnn checked no seed itself: 2**32 reached set_seed's np.random.seed (raw ValueError), 10**20 the
    validation split's torch generator first ("Overflow when unpacking long long")."""
    import pyrozoo.models.bnn as bnn_module

    def no_training(*args, **kwargs):
        raise AssertionError("SGD started before the seed was checked")

    monkeypatch.setattr(bnn_module, "run_swag", no_training)
    X, y = _toy(20)
    for seed in (2**32, 10**20):
        with pytest.raises(PyrozooError, match=rf"^seed: expected an integer seed in \[0, 2\*\*32 - 1\] .*got {seed}"):
            train_bnn(X, y, seed=seed, val_fraction=0.2, **FAST)


@pytest.mark.parametrize("split", ["-1", "4294967296", "18446744073709551616"])
def test_a_split_beyond_the_seed_range_is_one_line_naming_split(tmp_path, capsys, split):
    """split seeds the split's permutation: 2**64 ended in torch's raw "Overflow when unpacking long long" (split
    had no upper bound), 2**32 was taken; now it is bounded like a seed, before any data are drawn."""
    from pyrozoo.cli import main

    out = tmp_path / "run"
    assert main(["run", "bnn", "-o", f"split={split}", "--inference", "map", "--steps", "2", "--num-samples", "2",
                 "--no-progress", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"pyrozoo: error: split: expected an integer seed in [0, 2**32 - 1] (at most 4294967295), got {split}"]
    assert not out.exists()


def test_a_constant_outcome_is_refused_before_training(monkeypatch):
    """fit_bnn / train_bnn fitted a constant y (sd quietly set to 1): 'likely diverged', predictive mean 5.6 for
    y = 3. Refused now before any SGD, with the --data reader's wording; so are rows left to train on after
    val_fraction holds out the only varying ones."""
    import pyrozoo.models.bnn as bnn_module

    def no_training(*args, **kwargs):
        raise AssertionError("SGD started before y was checked")

    monkeypatch.setattr(bnn_module, "run_swag", no_training)
    X = _toy(50)[0]
    want = r"^y: expected an outcome that varies, got a constant \(3.0\); nothing to fit$"
    with pytest.raises(PyrozooError, match=want):
        fit_bnn(X, torch.full((50,), 3.0), num_samples=4, **FAST)
    with pytest.raises(PyrozooError, match=want):
        train_bnn(X, torch.full((50,), 3.0), **FAST)
    y = torch.zeros(50)
    y[torch.randperm(50, generator=torch.Generator().manual_seed(7919))[0]] = 1.0  # train_bnn's held-out row
    with pytest.raises(PyrozooError, match=r"^y: expected an outcome that varies, got a constant \(0.0\) on the 49 "
                                           r"rows left to train on after val_fraction=0.02 holds out 1"):
        train_bnn(X, y, val_fraction=0.02, **FAST)


def test_a_rank_above_swa_epochs_is_warned_before_training_and_d_has_swa_epochs_columns(monkeypatch, tmp_path,
                                                                                        capsys):
    """One iterate is collected per SWA epoch, so D has K = min(rank, swa_epochs) columns: rank=30 with
    swa_epochs=3 was accepted without a word and gave K = 3. A given rank above swa_epochs now warns, naming both,
    before any SGD (fit_bnn, train_bnn, pyrozoo run); the usual rank, not asked for, is capped quietly."""
    import warnings

    import pyrozoo.models.bnn as bnn_module
    from pyrozoo.cli import main

    X, y = _toy(20)
    tiny = {"hidden": 4, "epochs": 4, "swa_epochs": 3, "batch_size": 10}
    want = (r"^rank: SWAG collects one iterate per SWA epoch, so with swa_epochs=3 its deviation matrix D will have "
            r"only 3 columns, not rank=8 \(K = min\(rank, swa_epochs\)\); raise swa_epochs to 8")

    def no_training(*args, **kwargs):
        raise RuntimeError("SGD started")

    with monkeypatch.context() as m:
        m.setattr(bnn_module, "run_swag", no_training)
        for fit in (lambda: train_bnn(X, y, rank=8, **tiny), lambda: fit_bnn(X, y, rank=8, num_samples=2, **tiny)):
            with pytest.warns(UserWarning, match=want), pytest.raises(RuntimeError, match="SGD started"):
                fit()
    with pytest.warns(UserWarning, match=want):
        post = fit_bnn(X, y, rank=8, num_samples=2, **tiny)
    assert post.swag.deviations.shape == (post.swag.num_params, 3)
    for kwargs in ({}, {"rank": 3}):  # the usual rank (20) and a rank <= swa_epochs: no rank warning
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            post = fit_bnn(X, y, num_samples=2, **kwargs, **tiny)
        assert not [w for w in caught if str(w.message).startswith("rank:")]
        assert post.swag.deviations.shape[1] == 3
    out = tmp_path / "run"
    assert main(["run", "bnn", "--inference", "swag", "-o", "rank=30", "-o", "swa_epochs=3", "-o", "n=40", "-o",
                 "hidden=4", "--steps", "2", "--num-samples", "2", "--no-progress", "--out", str(out)]) == 0
    assert ("pyrozoo: warning: rank: SWAG collects one iterate per SWA epoch, so with swa_epochs=3 its deviation "
            "matrix D will have only 3 columns, not rank=30") in capsys.readouterr().err


def test_train_bnn_without_standardizing_accepts_a_constant_outcome():
    """The constant-y refusal guards y's standardization by its sd: standardize=False (the caller scales y, as the
    active-learning loop does) fits a constant y, and the default refuses it."""
    import numpy as np

    from pyrozoo.models.bnn import train_bnn

    X = np.random.default_rng(0).normal(size=(20, 2))
    y = np.zeros(20)
    train_bnn(X, y, epochs=2, swa_epochs=2, rank=2, standardize=False)
    with pytest.raises(PyrozooError, match="expected an outcome that varies"):
        train_bnn(X, y, epochs=2, swa_epochs=2, rank=2)


def test_fit_bnn_reads_rank_none_as_the_usual_rank_like_train_bnn():
    """train_bnn's rank default is None (the usual 20); fit_bnn refused rank=None ("expected an integer >= 0") and
    now reads it the same way, for swag-diag too (no rank given)."""
    import numpy as np

    from pyrozoo.models.bnn import fit_bnn

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 2))
    y = X[:, 0] + 0.1 * rng.normal(size=20)
    post = fit_bnn(X, y, posterior="swag", rank=None, epochs=2, swa_epochs=3, num_samples=2)
    assert post.swag.deviations.shape[1] == 3  # K = min(20, swa_epochs)
    fit_bnn(X, y, posterior="swag-diag", rank=None, epochs=2, swa_epochs=3, num_samples=2)


def test_predictions_read_inputs_that_require_grad_as_values(training):
    """predictive_moments, per_draw_moments, sample_predictive, sample_per_draw and log_predictive_density kept the
    graph of an X (or y) that required grad (_prep and _targets did not detach); predictions are values now: no
    graph, the numbers of the detached inputs."""
    X, y, tr = training
    post = build_posterior(tr, "swag", num_samples=4)
    Xg, yg = X[:6].clone().requires_grad_(), y[:6].clone().requires_grad_()
    outs = [*post.predictive_moments(Xg), *post.per_draw_moments(Xg), post.log_predictive_density(Xg, yg),
            post.moment_matched_nll(Xg, yg), post.sample_predictive(Xg, 3, generator=torch.Generator().manual_seed(0)),
            post.sample_per_draw(Xg, generator=torch.Generator().manual_seed(0))]
    assert not any(o.requires_grad for o in outs)
    torch.testing.assert_close(outs[4], post.log_predictive_density(X[:6], y[:6]), rtol=0, atol=0)
    torch.testing.assert_close(outs[6], post.sample_predictive(X[:6], 3, generator=torch.Generator().manual_seed(0)),
                               rtol=0, atol=0)


def test_evaluation_refuses_misaligned_pandas_rows(training):
    """log_predictive_density, pointwise_log_likelihood, moment_matched_nll and calibrate_noise paired a DataFrame X
    and a Series y in another row order by position (a lower, wrong density, no error); they now raise the index
    error every fit raises (check_same_index), and aligned pandas input gives the arrays' numbers."""
    import pandas as pd

    from pyrozoo.models.bnn import calibrate_noise

    X, y, tr = training
    post = build_posterior(tr, "swag", num_samples=4)
    Xv, yv = pd.DataFrame(X[:20].numpy(), columns=["a", "b"]), pd.Series(y[:20].numpy())
    shuffled = yv.sample(frac=1, random_state=0)
    same = r"expected pandas inputs with the same index .* same labels in another order"
    for call in (post.log_predictive_density, post.pointwise_log_likelihood, post.moment_matched_nll):
        with pytest.raises(PyrozooError, match="^X, y: " + same):
            call(Xv, shuffled)
    with pytest.raises(PyrozooError, match="^X_val, y_val: " + same):
        calibrate_noise(post, Xv, shuffled)
    torch.testing.assert_close(post.log_predictive_density(Xv, yv), post.log_predictive_density(X[:20], y[:20]))
    torch.testing.assert_close(post.moment_matched_nll(Xv, yv), post.moment_matched_nll(X[:20], y[:20]))
    assert calibrate_noise(post, Xv, yv).noise_scale == calibrate_noise(post, X[:20], y[:20]).noise_scale


def test_a_zoo_run_posterior_refuses_raw_rows_and_in_data_units_predicts_in_y_units(tmp_path):
    """QA: a zoo run's posterior (result.guide, model units: standardize=False on the standardized split) took a
    DataFrame of the file's raw rows by column name, passed the name check and read them as standardized values
    (predictions ~228 for y ~50), and the inputs' moments were recorded nowhere. Now the dataset's meta and the
    InferenceData's attrs record them, a DataFrame is refused naming the way out, and in_data_units() standardizes
    raw rows and predicts in y's units: the same numbers as the model-unit posterior on the split's tensors."""
    import pickle

    import numpy as np
    import pandas as pd

    from pyrozoo.models.bnn import bnn_from_file
    from pyrozoo.runner import run_model

    rng = np.random.default_rng(3)
    df = pd.DataFrame({"a": rng.normal(size=60), "b": 1000 + 10 * rng.normal(size=60)})
    df["y"] = 50 + df["a"] + 0.1 * (df["b"] - 1000) + 0.3 * rng.normal(size=60)
    path = tmp_path / "num.csv"
    df.to_csv(path, index=False)
    out = run_model(RunConfig(model="bnn", inference="swag", data=str(path), steps=20, num_samples=6, device="cpu",
                              progress=False, options={"outcome": "y", "swa_epochs": 4, "hidden": 8, "split": 2}),
                    save=False)
    result, guide = out.result, out.result.guide
    ds = bnn_from_file(str(path), 0, outcome="y", split=2)  # the run's dataset (the split is seeded by split)
    train, test = ds.meta["rows"], ds.meta["test_rows"]
    raw = df.iloc[train][["a", "b"]]
    np.testing.assert_allclose(ds.meta["x_mean"], raw.mean().to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(ds.meta["x_std"], raw.std().to_numpy(), rtol=1e-12)  # split_regression's sd
    assert ds.meta["x_mean"].dtype == np.float64
    idata = result.to_inference_data()
    assert list(idata.attrs["input_shift"]) == ds.meta["x_mean"].tolist()
    assert list(idata.attrs["input_scale"]) == ds.meta["x_std"].tolist()
    with pytest.raises(PyrozooError, match=r"^X: expected inputs in model units .* got a DataFrame.*in_data_units"):
        guide.predictive_moments(df[["a", "b"]])
    with pytest.raises(PyrozooError, match=r"^X: expected inputs in model units"):
        guide.log_predictive_density(df[["a", "b"]], df["y"])
    data = guide.in_data_units()
    assert torch.equal(torch.as_tensor(guide.x_std), torch.ones(2, dtype=torch.float64))  # guide kept as it was
    assert guide.y_mean == 0.0 and guide.y_std == 1.0 and guide.data_scaling is not None
    mean, var = data.predictive_moments(df.iloc[test][["a", "b"]])
    m_std, v_std = guide.predictive_moments(ds.meta["X_test"])  # model units, as bnn_metrics scores
    y_mean, y_std = ds.meta["y_mean"], ds.meta["y_std"]
    torch.testing.assert_close(mean, m_std * y_std + y_mean, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(var, v_std * y_std**2, rtol=1e-4, atol=1e-6)
    assert abs(float(mean.mean()) - float(df.y.iloc[test].mean())) < 5  # y's units (was ~228 for y ~50)
    # the log-likelihood group is in y's units: the raw training rows score the same
    ll = data.pointwise_log_likelihood(df.iloc[train][["a", "b"]], df.iloc[train]["y"])
    np.testing.assert_allclose(ll.numpy(), result.log_likelihood["y"][0], rtol=1e-4, atol=1e-4)
    with pytest.raises(PyrozooError, match=r"expected the columns seen in fit, in that order"):
        data.predictive_moments(df[["b", "a"]])
    restored = pickle.loads(pickle.dumps(guide))
    torch.testing.assert_close(restored.in_data_units().predictive_moments(df.iloc[test][["a", "b"]])[0], mean)
    assert data.in_data_units() is data  # already in the data's units (as fit_bnn's own posterior)


@pytest.mark.parametrize("posterior,label", [("map", "map"), ("ciber", "ciber"), ("vi", "vi: SGD start")])
def test_the_sgd_progress_bar_names_the_posterior_fitted(monkeypatch, posterior, label):
    """The SGD/SWA trajectory's progress bar read "swag" for map, vi and ciber fits too."""
    import pyrozoo.inference.swag as swag_module

    seen = []
    real = swag_module.progress_bar
    monkeypatch.setattr(swag_module, "progress_bar", lambda total, desc, enabled=True: seen.append(desc)
                        or real(total, desc, False))
    X, y = _toy(40)
    extra = {"vi_steps": 2} if posterior == "vi" else {"num_collapsed": 2} if posterior == "ciber" else {}
    rank = {"rank": 3} if posterior == "ciber" else {}
    draws = {} if posterior == "map" else {"num_samples": 3}  # map keeps one draw: num_samples is refused
    fit_bnn(X, y, posterior=posterior, progress=True, seed=0,
            **{**FAST_NO_RANK, "epochs": 2, "swa_epochs": 3}, **rank, **extra, **draws)
    assert seen == [label]


def test_a_vi_run_s_fit_stats_loss_is_the_elbo_trace_and_the_sgd_start_is_pretrain_loss():
    """fit_stats.loss held the SGD/SWA pre-training trace for vi (the same as map's); the ELBO trace was only in
    result.guide.extras["losses_vi"]."""
    from pyrozoo.runner import run_model

    cfg = dict(seed=3, device="cpu", progress=False, num_samples=4, steps=6,
               options={"n": 40, "hidden": 5, "swa_epochs": 3})
    vi = run_model(RunConfig(model="bnn", inference="vi", **cfg), save=False).result
    mp = run_model(RunConfig(model="bnn", inference="map", **cfg), save=False).result
    idata = vi.to_inference_data()
    assert set(idata.fit_stats.data_vars) == {"loss", "pretrain_loss"}
    assert idata.fit_stats.loss.values.tolist() == pytest.approx(list(vi.guide.extras["losses_vi"]))
    assert len(idata.fit_stats.loss) == 6  # --steps SVI steps
    assert len(idata.fit_stats.pretrain_loss) == 6 + 3  # SGD epochs + SWA epochs
    assert idata.fit_stats.pretrain_loss.values.tolist() == pytest.approx(mp.fit_stats["loss"].tolist())
    assert set(mp.to_inference_data().fit_stats.data_vars) == {"loss"}


def test_a_saved_run_s_params_pt_holds_what_its_log_likelihood_reads(tmp_path):
    """params.pt was empty for every bnn inference: no SWAG moments, no guide parameters, no calibrated tau or
    lambda. A ciber run's params and the saved weight draws now give back its pointwise log-likelihood."""
    import numpy as np

    from pyrozoo.models.bnn import BNNPosterior
    from pyrozoo.runner import run_model

    small = {"n": 60, "hidden": 5, "swa_epochs": 4, "rank": 3, "num_collapsed": 3, "val_fraction": 0.2}
    cfg = RunConfig(model="bnn", inference="ciber", seed=1, device="cpu", progress=False, num_samples=5, steps=6,
                    options=small)
    run_model(cfg, out=tmp_path / "ciber")
    params = torch.load(tmp_path / "ciber" / "params.pt")
    assert {"noise_scale", "defensive_weight", "box_scale", "tail_weight", "swag_mean", "swag_var",
            "swag_deviations", "swag_scale", "collapsed", "cond_mean", "cond_cov"} <= set(params)
    assert all(v.device.type == "cpu" for v in params.values())
    assert params["swag_deviations"].shape == (params["swag_mean"].shape[0], 3)
    idata = az.from_netcdf(tmp_path / "ciber" / "idata.nc")
    layout = MLPLayout(idata.constant_data["X"].shape[1], 5, 1)
    draws = layout.flatten({k: torch.as_tensor(idata.posterior[k].values[0]) for k in layout.sites})
    post = BNNPosterior("ciber", layout, draws.float(), collapsed=params["collapsed"], cond_mean=params["cond_mean"],
                        cond_cov=params["cond_cov"], **{k: float(params[k]) for k in
                                                         ("noise_scale", "box_scale", "tail_weight")})
    X, y = torch.as_tensor(idata.constant_data["X"].values), torch.as_tensor(idata.observed_data["y"].values)
    ll = post.pointwise_log_likelihood(X, y, defensive_weight=float(params["defensive_weight"]))
    ll = ll.numpy() - math.log(idata.attrs["response_scale"])  # the saved group is in y's own units
    np.testing.assert_allclose(ll, idata.log_likelihood["y"].values[0], rtol=1e-4, atol=1e-4)

    for kind, keys in (("map", {"w0", "b0", "w_out", "b_out"}), ("vi", {"AutoNormal.locs.w0", "AutoNormal.scales.w0"})):
        draws = {"num_samples": 3} if kind == "vi" else {}  # map reads no num_samples
        run_model(RunConfig(model="bnn", inference=kind, seed=1, device="cpu", progress=False, steps=4,
                            options={"n": 40, "hidden": 5, "swa_epochs": 3}, **draws), out=tmp_path / kind)
        saved = torch.load(tmp_path / kind / "params.pt")
        assert keys | {"noise_scale", "defensive_weight"} <= set(saved), (kind, sorted(saved))


def test_a_few_rows_stuck_at_the_upper_log_variance_clamp_warn():
    """The divergence warning needed more than 10% of the rows at the log-variance clamp: a fit that parked a few
    rows at the upper clamp g = 8 (no gradient to g through the clamp, the mean's divided by e^8), their fitted
    means 12 to 31 sds of y from y and a test RMSE 2.5x that of predicting the mean, passed in silence. Any row at
    the upper clamp now warns, with the count and how far those rows' means are from y; the lower clamp alone
    (a near-exact fit of a row) and rows just below the upper clamp do not."""
    import warnings

    from pyrozoo.inference.swag import SWAGCollector, SWAGRun
    from pyrozoo.models.bnn import LOG_VAR_RANGE, warn_if_diverged

    layout = MLPLayout(in_dim=1, depth=0)
    X = torch.linspace(-1, 1, 30).unsqueeze(-1)  # the top two rows: x = 1 and 0.93
    y = torch.zeros(30)
    y[-1] = -12.0  # the fitted mean is 0 everywhere: 12 sds from this row's y

    def run(slope: float, bias: float = 0.0) -> SWAGRun:  # g(x) = slope x + bias, the fitted mean 0
        theta = layout.flatten({"w_out": torch.tensor([[0.0], [slope]]), "b_out": torch.tensor([0.0, bias])})
        return SWAGRun(collector=SWAGCollector(theta.numel(), rank=2), final=theta, losses=[1.0, 0.9])

    with pytest.warns(UserWarning, match=r"bnn training has likely diverged: 2 of 30 training rows sit at the "
                                         r"log-variance head's upper clamp 8 .*stuck there.*fitted means up to 12 sds "
                                         r"of y from y.*train for more epochs.*another seed"):
        message = warn_if_diverged(layout, run(9.0), X, y)  # g = 9 and 8.4 on the top rows
    assert message is not None and "2 of 30" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_diverged(layout, run(LOG_VAR_RANGE[1] - 0.1), X, y) is None  # g < 8 on every row
        assert warn_if_diverged(layout, run(6.5, -6.0), X, y) is None  # the lower clamp on 2 rows: not stuck


def test_the_qa_schedule_that_stranded_a_row_at_the_upper_clamp_warns():
    """End to end: 54 rows of y = 1000 + 50 a - 20 b + N(0, 5^2) trained 200 epochs at lr 0.003 (swa_lr 0.001, 20
    SWA epochs) leave a row at the upper clamp, fewer than 10% of the rows, and no loss rise: it was silent."""
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(54, 2, generator=gen, dtype=torch.float64)
    y = 1000 + 50 * X[:, 0] - 20 * X[:, 1] + 5 * torch.randn(54, generator=gen, dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"training rows sits? at the log-variance head's upper clamp 8"):
        train_bnn(X, y, epochs=200, swa_epochs=20, lr=0.003, swa_lr=0.001, rank=5, seed=0)


def test_many_rows_at_the_upper_clamp_are_named_with_their_distance_and_the_seed_hint():
    """A review: past 10% of the rows at the clamp, the warning said only 'sits at its clamp (-12.0, 8.0) for 18 of
    54 training rows', without which clamp, how far those rows' means are from y, or the seed hint the few-rows
    case gives. Both parts now come together."""
    from pyrozoo.inference.swag import SWAGCollector, SWAGRun
    from pyrozoo.models.bnn import warn_if_diverged

    layout = MLPLayout(in_dim=1, depth=0)
    X = torch.linspace(-1, 1, 30).unsqueeze(-1)
    y = torch.zeros(30)
    y[-1] = -12.0
    theta = layout.flatten({"w_out": torch.tensor([[0.0], [20.0]]), "b_out": torch.tensor([0.0, 0.0])})
    run = SWAGRun(collector=SWAGCollector(theta.numel(), rank=2), final=theta, losses=[1.0, 0.9])
    with pytest.warns(UserWarning, match=r"sits at its clamp \(-12.0, 8.0\) for 15 of 30 training rows \(9 at the "
                                         r"upper clamp\); 9 of 30 training rows sit at the log-variance head's upper "
                                         r"clamp 8 .*fitted means up to 12 sds of y from y.*another seed"):
        warn_if_diverged(layout, run, X, y)  # g = 20 x: >= 8 on the top 9 rows, <= -12 on the bottom 6


@pytest.mark.parametrize("kind", ["swag", "swag-diag"])
def test_swag_guide_trace_elbo_is_the_elbo_of_the_swag_gaussian(training, kind):
    """QA (D2): Trace_ELBO with post.guide scored an auxiliary N(0, I_{P+K}) as log q (222 nats off for P = 42):
    q's entropy came out as 0.5 (P + K) log(2 pi e), not 0.5 (P log(2 pi e) + log det Sigma). Now its loss matches
    an independent Monte Carlo -ELBO of the SWAG Gaussian, -mean[log p(y, theta) - log N(theta; mean, Sigma)] at
    draws of SWAGPosterior.sample, log p written out here (N(0, 1) prior on every weight, the network's Gaussian
    likelihood). Tolerance: 5 Monte Carlo sds of the difference of the two estimates."""
    _, _, tr = training
    post = build_posterior(tr, kind, num_samples=5)
    n = 2000
    theta = post.swag.sample(n, generator=torch.Generator().manual_seed(5))
    mean, log_var = mlp_forward(tr.layout.unflatten(theta.float()), tr.X, 1)
    log_p = (torch.distributions.Normal(mean, (0.5 * log_var).exp()).log_prob(tr.y).sum(-1).double()
             + torch.distributions.Normal(0.0, 1.0).log_prob(theta).sum(-1))
    log_q = torch.distributions.MultivariateNormal(post.swag.mean, post.swag.covariance()).log_prob(theta)
    own = -(log_p - log_q)

    def model(X, y=None):
        return bnn_model(X, y, hidden=FAST["hidden"])

    pyro.set_rng_seed(6)
    loss = Trace_ELBO(num_particles=n, vectorize_particles=True, max_plate_nesting=1).loss(model, post.guide, tr.X,
                                                                                          tr.y)
    assert abs(loss - float(own.mean())) < 5 * float(own.std()) * math.sqrt(2 / n)
    P, K = post.swag.num_params, post.swag.deviations.shape[1]
    entropy = 0.5 * (P * math.log(2 * math.pi * math.e) + float(torch.logdet(post.swag.covariance())))
    assert abs(0.5 * (P + K) * math.log(2 * math.pi * math.e) - entropy) > 50 * float(own.std()) * math.sqrt(2 / n)


@pytest.mark.parametrize("kind", ["swag", "ciber"])
@pytest.mark.parametrize("change,match", [
    ({"rows": 0}, r"X_val, y_val: expected at least 1 row, got 0"),  # tau 0.8 with val_lpd nan
    ({"noise_scales": (1e-200, 1.0)}, r"noise_scales: expected a number between 1e-150 and 1e150, got 1e-200"),
    ({"noise_scales": (1.0, 1e200)}, r"noise_scales: expected a number between 1e-150 and 1e150, got 1e\+200"),
    ({"box_scales": (1e200,)}, r"box_scales: expected a number between 1e-150 and 1e150, got 1e\+200"),
    ({"box_scales": (1e-200,)}, r"box_scales: expected a number between 1e-150 and 1e150, got 1e-200"),
])
def test_calibrate_noise_refuses_an_empty_validation_set_and_unusable_scales_before_any_work(
        training, kind, change, match, monkeypatch):
    """QA (D1): an empty validation set gave every grid point the NaN mean of no rows, and max() kept the first,
    tau = 0.8 (ciber: lambda 1e-6, box 1.0) with val_lpd nan and no complaint; noise_scales=(1e-200, 1.0) failed in
    torch's Normal (the noise variance underflowed to 0 in float64) and a box scale of 1e200 scored NaN. Both are
    refused by name before any work."""
    import pyrozoo.models.bnn as bnn

    X, y, tr = training
    post = build_posterior(tr, kind, num_samples=4, calibrate=False,
                           **({"num_collapsed": 3} if kind == "ciber" else {}))
    rows = change.get("rows", 6)
    kwargs = {k: v for k, v in change.items() if k != "rows"}
    monkeypatch.setattr(bnn.BNNPosterior, "_per_draw", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(PyrozooError, match=match):
        calibrate_noise(post, X[:rows], y[:rows], **kwargs)


def test_calibrate_noise_refuses_nan_and_all_minus_inf_grid_scores(training):
    """QA (D1): max() over NaN scores keeps whichever grid point came first. A grid point scoring NaN (ciber's
    density at tau = box_scale = 1e150, each usable alone, overflows) is now an error naming it, and so is a grid
    where every point scores -inf (lambda 0 only, a held-out y far outside every draw's support), where max() also
    kept the first; usable points at the range's ends still calibrate."""
    X, y, tr = training
    post = build_posterior(tr, "ciber", num_samples=4, num_collapsed=3, calibrate=False)
    Xv, yv = X[:6], y[:6]
    with pytest.raises(PyrozooError, match=r"calibration: the held-out mean log predictive density is NaN at 1 of 1 "
                                           r"grid points \(tau, lambda, box_scale, rho\), first \(1e\+150, 1e-06, "
                                           r"1e\+150, 0.0\)"):
        calibrate_noise(post, Xv, yv, noise_scales=(1e150,), box_scales=(1e150,), defensive_weights=(1e-6,))
    with pytest.raises(PyrozooError, match="every grid point scores -inf .* include a defensive weight > 0"):
        calibrate_noise(post, Xv, yv + 1e3, noise_scales=(1.0,), defensive_weights=(0.0,))
    ok = calibrate_noise(post, Xv, yv, noise_scales=(1e-150, 1.0, 1e150), box_scales=(1e-150, 1.0))
    assert ok.noise_scale == 1.0 and math.isfinite(ok.extras["calibration"]["val_lpd"])


@pytest.mark.parametrize("kind,kwargs,match", [
    ("swag", {"tail_weights": (5.0,), "num_collapsed": 99, "vi_steps": -3},
     r"options: num_collapsed, tail_weights apply only to bnn's ciber; vi_steps applies only to bnn's vi; with swag "
     r"they would have no effect \(remove them\)"),
    ("map", {"scale": 3.0}, r"options: scale applies only to bnn's swag, swag-diag, ciber or collapsed-gaussian; "
                            r"with map it would have no effect"),
    ("map", {"num_samples": 50}, r"options: num_samples applies only to bnn's swag, swag-diag, ciber, "
                                 r"collapsed-gaussian or vi; with map it would have no effect"),
    ("collapsed-gaussian", {"num_collapsed": 3}, r"options: num_collapsed applies only to bnn's ciber"),
    ("vi", {"vi_steps": -3}, r"vi_steps: expected an integer >= 1, got -3"),
    ("vi", {"vi_lr": 0.0}, r"vi_lr: expected a finite value > 0, got 0.0"),
    ("ciber", {"num_collapsed": 3, "tail_weights": (0.1, 0.3)},
     r"tail_weights: the tail weight is chosen on the validation rows, but this call does not calibrate: the "
     r"training run holds no validation rows \(train with val_fraction > 0\)"),
])
def test_build_posterior_refuses_options_the_posterior_would_ignore_before_any_work(training, kind, kwargs, match,
                                                                                    monkeypatch):
    """QA (D3): build_posterior took every option with every posterior and ignored those it does not read: ciber's
    tail_weights on a training run without validation rows gave tail weight 0 with no message, swag accepted
    tail_weights=(5.0,), num_collapsed=99 and vi_steps=-3, map a scale and num_samples=50. Now it refuses them as
    fit_bnn does (the same table and message), and checks vi_steps and vi_lr, before any work."""
    import pyrozoo.models.bnn as bnn

    _, _, tr = training
    monkeypatch.setattr(bnn, "_build_posterior", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(PyrozooError, match=match):
        build_posterior(tr, kind, **kwargs)


def test_build_posterior_checks_tail_weights_against_its_calibration(training, monkeypatch):
    """QA (D3): tail_weights with calibrate=False was dropped (rho 0), and an invalid grid was only seen after the
    posterior was built. Both are refused before any work; with calibration the grid is searched (rho in its
    keys)."""
    import pyrozoo.models.bnn as bnn

    X, y, tr = training
    val = replace(tr, X_val=X[:10], y_val=y[:10])  # validation rows in the data's units, as train_bnn keeps them
    real = bnn._build_posterior
    monkeypatch.setattr(bnn, "_build_posterior", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(PyrozooError, match=r"tail_weights: the tail weight is chosen on the validation rows, but "
                                           r"this call does not calibrate: calibrate=False; remove tail_weights"):
        build_posterior(val, "ciber", num_collapsed=3, tail_weights=(0.0, 0.3), calibrate=False)
    with pytest.raises(PyrozooError, match=r"tail_weights: expected a number in \[0, 1\), got 5.0"):
        build_posterior(val, "ciber", num_collapsed=3, tail_weights=(5.0,))
    with pytest.raises(PyrozooError, match=r"tail_weights: expected a non-empty sequence of numbers, got \(\)"):
        build_posterior(val, "ciber", num_collapsed=3, tail_weights=())
    monkeypatch.setattr(bnn, "_build_posterior", real)
    post = build_posterior(val, "ciber", num_collapsed=3, num_samples=4, tail_weights=(0.0, 0.3))
    assert {key[3] for key in post.extras["calibration"]["grid"]} == {0.0, 0.3}


def test_fit_bnn_refuses_num_samples_with_map_before_training(monkeypatch):
    """QA (D4): fit_bnn(posterior="map", num_samples=50) gave one draw with no message, while scale, rank and the
    other options map does not read were refused. num_samples is now refused the same way, before training; left
    out, map runs (and pyrozoo run's map, whose config always has a num_samples, does not pass it on)."""
    import pyrozoo.models.bnn as bnn

    X, y = _toy(40)
    real = bnn.train_bnn
    monkeypatch.setattr(bnn, "train_bnn", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(PyrozooError, match=r"options: num_samples applies only to bnn's swag, swag-diag, ciber, "
                                           r"collapsed-gaussian or vi; with map it would have no effect"):
        fit_bnn(X, y, posterior="map", num_samples=50, **FAST_NO_RANK)
    monkeypatch.setattr(bnn, "train_bnn", real)
    assert fit_bnn(X, y, posterior="map", **{**FAST_NO_RANK, "epochs": 2, "swa_epochs": 2}).num_draws == 1
    assert fit_bnn(X, y, posterior="swag-diag", num_samples=3, **{**FAST_NO_RANK, "epochs": 2,
                                                                  "swa_epochs": 2}).num_draws == 3


def test_params_record_defensive_weight_zero_for_the_gaussian_kinds():
    """QA (D5): params.pt recorded defensive_weight 1e-6 (the option's default) for swag and every other non-ciber
    run, whose log-likelihood is a plain Gaussian and never mixes it in. It is now 0 there and ciber's lambda for
    ciber; the saved log-likelihood and predictive of a swag run still rebuild from the draws (Gaussian per draw)."""
    import numpy as np

    from pyrozoo.runner import run_model

    cfg = dict(seed=1, device="cpu", progress=False, num_samples=4, steps=4,
               options={"n": 40, "hidden": 5, "swa_epochs": 3})
    swag = run_model(RunConfig(model="bnn", inference="swag-diag", **cfg), save=False).result
    assert float(swag.params["defensive_weight"]) == 0.0
    post = swag.guide
    X, y = swag.constant_data["X"], swag.observed_data["y"]
    ll = post.pointwise_log_likelihood(X, y, defensive_weight=float(swag.params["defensive_weight"]))
    np.testing.assert_allclose(ll.numpy() - math.log(swag.attrs["response_scale"]), swag.log_likelihood["y"][0],
                               rtol=1e-5, atol=1e-5)
    ciber = run_model(RunConfig(model="bnn", inference="ciber", **{**cfg, "options": {**cfg["options"], "rank": 3,
                                                                                        "num_collapsed": 3}}),
                      save=False).result
    assert float(ciber.params["defensive_weight"]) == 1e-6


def test_the_sgd_loss_is_the_negative_log_posterior_per_row_up_to_the_stated_constants():
    """QA (D6): fit_stats.loss was documented as the negative log posterior per row, but the SGD loss leaves out the
    normalizing constants (it differed by 0.5 log(2 pi) (1 + P/n) exactly). The docs now say so; this pins the
    stated constants: loss + 0.5 log(2 pi) + P log(2 pi s^2) / (2n) = -log p(y, theta) / n of bnn_model (full
    batch), at a prior scale s other than 1."""
    from pyrozoo.models.bnn import _neg_log_posterior

    X, y = _toy(30)
    X, y = X.float(), y.float()
    layout, s = MLPLayout(2, 4, 1), 0.7
    theta = 0.5 * torch.randn(layout.num_params, generator=torch.Generator().manual_seed(0))
    n, P = X.shape[0], layout.num_params
    loss = float(_neg_log_posterior(layout, X, y, s)(theta, torch.arange(n)))
    trace = poutine.trace(poutine.condition(bnn_model, layout.unflatten(theta))).get_trace(X, y, hidden=4,
                                                                                          prior_scale=s)
    exact = -float(trace.log_prob_sum()) / n
    assert loss + 0.5 * math.log(2 * math.pi) + P * math.log(2 * math.pi * s**2) / (2 * n) == pytest.approx(
        exact, rel=1e-5)
    assert abs(loss - exact) > 1.0  # the constants are not negligible
