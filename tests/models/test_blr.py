"""Conjugate Bayesian linear regression: closed form against independent algebra and Monte Carlo; NUTS (slow)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pyrozoo import registry
from pyrozoo.config import RunConfig
from pyrozoo.errors import PyrozooError
from pyrozoo.models.blr import blr_posterior, load_boston, make_dataset, simulate_blr


def _data(seed=0, n=40, d=3):
    ds = simulate_blr(seed, n=n, d=d, noise_true=0.7)
    return ds.inputs["x"], ds.observed["y"]


def test_known_noise_posterior_equals_gaussian_conditioning():
    """Independent algebra: condition the joint Gaussian of (w, y) on y."""
    x, y = _data()
    s0, noise = 1.3, 0.7
    post = blr_posterior(x, y, prior_scale=s0, noise=noise)
    prior_cov = (s0 * noise) ** 2 * torch.eye(x.shape[1], dtype=torch.float64)  # w | tau ~ N(0, s0^2 / tau)
    cov_yy = x @ prior_cov @ x.T + noise**2 * torch.eye(x.shape[0], dtype=torch.float64)
    gain = prior_cov @ x.T @ torch.linalg.inv(cov_yy)
    torch.testing.assert_close(post.mean, gain @ y)
    torch.testing.assert_close(post.cov, prior_cov - gain @ x @ prior_cov)


def test_unknown_noise_gamma_posterior():
    """b_N written the other way: b0 + |y - X mu|^2 / 2 + mu^T Lam0 mu / 2."""
    x, y = _data(1)
    post = blr_posterior(x, y, prior_scale=2.0, a0=2.0, b0=1.5)
    resid = y - x @ post.mean
    b_alt = 1.5 + 0.5 * float(resid @ resid) + 0.5 * float(post.mean @ post.mean) / 4.0
    assert post.a == 2.0 + x.shape[0] / 2
    assert post.b == pytest.approx(b_alt, rel=1e-10)


def test_gamma_rate_keeps_its_digits_for_responses_far_from_zero():
    """b = b0 + (y'y - m' Lam m) / 2 subtracted two ~1e17 numbers for y near 1e8 (b 9 instead of 4.57); the
    residual form keeps the digits: an offset the (weakly penalized) intercept absorbs leaves b as it was, up to
    the prior term (1e8 / prior_scale)^2 / 2 = 5e-3."""
    rng = np.random.default_rng(7)
    x = torch.tensor(np.hstack([np.ones((10, 1)), rng.normal(size=(10, 1))]))
    y = torch.tensor(rng.normal(size=10))
    near, far = (blr_posterior(x, y + off, prior_scale=1e9) for off in (0.0, 1e8))
    assert far.b == pytest.approx(near.b, abs=1e-2)
    assert far.b > near.b  # the intercept's prior term


def test_exact_draws_and_student_t_predictive_by_monte_carlo():
    x, y = _data(2)
    post = blr_posterior(x, y)
    s = post.sample(40000, generator=torch.Generator().manual_seed(0))
    w, tau = s["w"], s["tau"]
    se_w = w.std(0) / math.sqrt(40000)
    assert ((w.mean(0) - post.mean).abs() <= 5 * se_w).all()
    assert abs(float(tau.mean()) - post.a / post.b) <= 5 * float(tau.std()) / math.sqrt(40000)
    # Var(w) = b / (a - 1) Lam^{-1} for the Student-t marginal
    torch.testing.assert_close(w.var(0), torch.diag(post.cov_unit) * post.b / (post.a - 1), rtol=0.05, atol=0)
    # log predictive density at new points = log E[N(y | x w, 1/tau)]
    xn = x[:4] + 0.3
    yn = torch.tensor([0.1, -1.0, 2.0, 0.5], dtype=torch.float64)
    comp = torch.distributions.Normal(w @ xn.T, tau.rsqrt()[:, None]).log_prob(yn)
    mc = torch.logsumexp(comp, 0) - math.log(40000)
    torch.testing.assert_close(post.predictive(xn).log_prob(yn), mc, atol=0.02, rtol=0)


def test_registry_fit_exact_and_metrics():
    entry = registry.get("blr")
    cfg = entry.check_config(RunConfig(model="blr", num_samples=500, num_chains=2, progress=False, device="cpu"))
    data = entry.load_data(cfg)
    result = entry.fit(data, cfg)
    assert result.posterior["w"].shape == (2, 500, 6) and result.posterior["tau"].shape == (2, 500)
    m = entry.metrics(result, data)
    # posterior-mean errors in posterior sds: Monte Carlo sd of a 1000-draw mean is 1 / sqrt(1000)
    assert m["w_max_z_vs_exact"] * math.sqrt(1000) < 5
    assert abs(m["tau_z_vs_exact"]) * math.sqrt(1000) < 5
    idata = result.to_inference_data()
    assert idata.log_likelihood["y"].shape == (2, 500, 200)


def test_boston_loader_standardizes():
    ds = load_boston(0)
    x, y = ds.inputs["x"], ds.observed["y"]
    assert x.shape == (506, 14) and torch.all(x[:, 0] == 1)
    assert abs(float(y.mean())) < 1e-10 and abs(float(y.std(unbiased=False)) - 1) < 1e-10


def test_bad_input():
    x, y = _data()
    with pytest.raises(PyrozooError, match="x: expected finite"):
        make_dataset(torch.where(x > 1, torch.nan, x), y)
    with pytest.raises(PyrozooError, match="y: expected shape"):
        make_dataset(x, y[:-1])
    with pytest.raises(PyrozooError, match="prior_scale"):
        make_dataset(x, y, prior_scale=0.0)
    with pytest.raises(PyrozooError, match="noise"):
        make_dataset(x, y, noise=-1.0)
    with pytest.raises(PyrozooError, match="n: expected"):
        simulate_blr(0, n=1)
    # an integer dtype truncated the data; a string one raised torch's TypeError; a misspelt prior key a TypeError
    for dtype in (torch.int64, "float32"):
        with pytest.raises(PyrozooError, match="dtype: expected a floating torch dtype"):
            make_dataset(x, y, dtype=dtype)
    with pytest.raises(PyrozooError, match=r"prior: unknown key\(s\) prior_sd"):
        make_dataset(x, y, prior_sd=2.0)
    with pytest.raises(PyrozooError, match="prior_scale: expected a finite value > 0, got the string '2'"):
        make_dataset(x, y, prior_scale="2")
    assert make_dataset(x, y, dtype=torch.float32).inputs["x"].dtype == torch.float32


def test_a_text_column_of_a_dataframe_is_named():
    """make_dataset(X.assign(s='t'), y) said "got text values (e.g. 't')", naming no column."""
    import pandas as pd

    x, y = _data()
    frame = pd.DataFrame(x.numpy(), columns=[f"x{j}" for j in range(x.shape[1])]).assign(s="t")
    with pytest.raises(PyrozooError, match=r"^x: expected numbers, got text values in column 's'"):
        make_dataset(frame, y)


@pytest.mark.slow
def test_nuts_agrees_with_exact_posterior():
    """NUTS on the Pyro model against the closed form, at n = 10 so that the prior matters (Lam = I / s0^2 + X^T X
    has a prior term of 1 against ~10 from the data; a0 = 2 against n / 2 = 5). Exact marginals: w is multivariate
    Student-t (2 a_N dof, location mu, scale^2 b_N / a_N Lam^{-1}), so sd_j = sqrt(b_N / (a_N - 1) (Lam^{-1})_jj);
    tau ~ Gamma(a_N, rate b_N), mean a_N / b_N, sd sqrt(a_N) / b_N. Means and sds of every coordinate within 4
    Monte Carlo standard errors (ArviZ's, from the measured ESS)."""
    import arviz as az

    entry = registry.get("blr")
    cfg = entry.check_config(RunConfig(model="blr", inference="nuts", num_samples=1000, warmup_steps=400,
                                       num_chains=2, progress=False, device="cpu", seed=1,
                                       options={"n": 10, "d": 2}))
    data = entry.load_data(cfg)
    result = entry.fit(data, cfg)
    post = blr_posterior(data.inputs["x"], data.observed["y"])
    assert post.a == 2.0 + 5  # n = 10: the prior's a0 = 2 is a fair part of it
    exact = {"w": (post.mean.numpy(), np.sqrt(np.diag(post.cov_unit.numpy()) * post.b / (post.a - 1))),
             "tau": (post.a / post.b, math.sqrt(post.a) / post.b)}
    idata = result.to_inference_data()
    for name, (mean, sd) in exact.items():
        mcse_mean = az.mcse(idata, var_names=[name], method="mean")[name].values
        mcse_sd = az.mcse(idata, var_names=[name], method="sd")[name].values
        draws = idata.posterior[name].values.reshape(-1, *np.shape(mean))
        assert np.all(np.abs(draws.mean(0) - mean) < 4 * mcse_mean), (name, draws.mean(0), mean, mcse_mean)
        assert np.all(np.abs(draws.std(0) - sd) < 4 * mcse_sd), (name, draws.std(0), sd, mcse_sd)
    assert float(az.rhat(idata, var_names=["tau"])["tau"]) < 1.02


def test_plug_in_noise_variance_is_the_inverse_gamma_mean():
    """tau | D ~ Gamma(a, rate b), so E[sigma^2 | D] = E[1 / tau] = b / (a - 1): the mean of scipy's inverse gamma
    with shape a and scale b (independent reference, float64 round-off only)."""
    from scipy import stats

    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = x @ torch.tensor([1.0, -0.5, 0.2], dtype=torch.float64) + 0.3 * torch.randn(
        30, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    post = blr_posterior(x, y)
    assert post.noise_var_hat == pytest.approx(stats.invgamma(post.a, scale=post.b).mean(), rel=1e-10)
    assert blr_posterior(x, y, noise=0.3).noise_var_hat == pytest.approx(0.09, rel=1e-12)


# A user's data file: pyrozoo run blr --data my.csv -o outcome=y
def test_a_data_file_runs_from_the_cli_and_matches_the_closed_form_on_its_data(tmp_path):
    import arviz as az
    import pandas as pd

    from pyrozoo.cli import main

    rng = np.random.default_rng(2)
    n = 50
    X = rng.standard_normal((n, 3)) * [1.0, 3.0, 0.5] + [0.0, 10.0, -2.0]
    df = pd.DataFrame(X, columns=["x1", "x2", "x3"]).assign(price=X @ [1.0, -0.5, 2.0] + rng.standard_normal(n))
    path = tmp_path / "houses.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "run"
    S = 4000
    assert main(["run", "blr", "--data", str(path), "-o", "outcome=price", "--num-samples", str(S), "--num-chains",
                 "1", "--seed", "5", "--out", str(out)]) == 0
    idata = az.from_netcdf(out / "idata.nc")
    assert idata.observed_data["y"].sizes["obs_id"] == n
    assert list(idata.posterior["w"].coords["feature"].values) == ["intercept", "x1", "x2", "x3"]
    # the closed form on the file's standardized data (population sds, an intercept column), as for boston
    x = np.hstack([np.ones((n, 1)), (X - X.mean(0)) / X.std(0)])
    y = (df["price"].to_numpy() - df["price"].mean()) / df["price"].std(ddof=0)
    post = blr_posterior(torch.as_tensor(x), torch.as_tensor(y))
    draws = idata.posterior["w"].values.reshape(S, -1)
    sd = draws.std(0)  # Monte Carlo error of the mean of S i.i.d. draws: sd / sqrt(S)
    np.testing.assert_array_less(np.abs(draws.mean(0) - post.mean.numpy()), 4 * sd / math.sqrt(S))


def test_the_model_refuses_a_negative_noise():
    """QA: blr_model(X, noise=-0.5) silently gave the unknown-noise model (a tau site), as noise 0 does; the model
    now checks the prior first (check_prior's errors); a 1-D design names x."""
    import pyro.poutine as poutine

    from pyrozoo.models.blr import blr_model

    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.raises(PyrozooError, match=r"^noise: expected a number >= 0 .* got -0\.5"):
        blr_model(x, noise=-0.5)
    with pytest.raises(PyrozooError, match=r"^prior_scale: expected a finite value > 0"):
        blr_model(x, prior_scale=0.0)
    with pytest.raises(PyrozooError, match=r"^x: expected a 2-D \(N, D\) tensor .* got shape \(5,\)"):
        blr_model(x[:, 0])
    assert "tau" in poutine.trace(blr_model).get_trace(x).nodes  # noise 0: unknown noise
    assert "tau" not in poutine.trace(blr_model).get_trace(x, noise=0.5).nodes


@pytest.mark.parametrize("noise", [torch.tensor(0.5), torch.tensor(0.5, dtype=torch.float64), np.float32(0.5),
                                   np.float64(0.5), np.int64(1), 1])
def test_the_model_takes_a_tensor_or_numpy_noise(noise):
    """Review: the model's prior check took only int/float and refused noise=torch.tensor(0.5), np.float32(0.5) and
    np.int64(1) (all worked before the check); they give the known-noise model again."""
    import pyro.poutine as poutine

    from pyrozoo.models.blr import blr_model

    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    trace = poutine.trace(blr_model).get_trace(x, noise=noise)
    assert "tau" not in trace.nodes and trace.nodes["y"]["value"].shape == (6,)


@pytest.mark.parametrize("noise", [np.float32(-0.5), np.int64(-1), "0.5", True, float("nan")])
def test_the_model_refuses_a_negative_numpy_noise(noise):
    """NumPy scalars are checked on the host like Python numbers: a negative one, text, a bool or NaN is refused."""
    from pyrozoo.models.blr import blr_model

    with pytest.raises(PyrozooError, match=r"^noise: expected a number >= 0"):
        blr_model(torch.randn(6, 2), noise=noise)


def test_the_model_does_not_read_tensor_hyperparameters():
    """A tensor prior_scale / a0 / b0 passes the check unread (a CUDA one would sync): a meta tensor, whose value
    cannot be read, gets through the check to the model's sites (distribution validation off: it reads values).
    tau is conditioned on: torch 2.11 has no meta kernel for drawing a Gamma (2.13 has one)."""
    import pyro
    import pyro.poutine as poutine

    from pyrozoo.models.blr import blr_model

    meta = torch.tensor(1.0, device="meta")
    x = torch.randn(6, 2, device="meta")
    with pyro.validation_enabled(False):
        trace = poutine.trace(poutine.condition(blr_model, data={"tau": meta})).get_trace(
            x, prior_scale=meta, a0=meta, b0=meta)
    assert trace.nodes["y"]["value"].device.type == "meta"
    assert {trace.nodes["tau"]["fn"].concentration.device.type, trace.nodes["tau"]["fn"].rate.device.type} == {"meta"}


@pytest.mark.parametrize("scale", [1e-4, 1e4])
def test_in_sample_rmse_is_in_the_units_of_y(scale, tmp_path):
    """--data standardizes y; rmse_in_sample is mapped back with meta["y_scale"], so scaling y by c scales it by c
    and it equals the RMSE of the posterior-mean fit in y's units (it was 0.2344 for y, 1e4 y and 1e-4 y)."""
    import pandas as pd

    entry = registry.get("blr")
    rng = np.random.default_rng(3)
    n = 40
    X = rng.standard_normal((n, 2))
    y = 1.0 + X @ [2.0, -1.0] + 0.5 * rng.standard_normal(n)
    metrics = []
    for name, yk in (("base", y), ("scaled", y * scale)):
        path = tmp_path / f"{name}.csv"
        pd.DataFrame(X, columns=["a", "b"]).assign(y=yk).to_csv(path, index=False)
        cfg = entry.check_config(RunConfig(model="blr", data=str(path), options={"outcome": "y"}, num_samples=200,
                                           num_chains=1, seed=0, progress=False, device="cpu"))
        data = entry.load_data(cfg)
        result = entry.fit(data, cfg)
        w = result.draws("w").mean(0)
        fitted = data.inputs["x"].numpy() @ w * data.meta["y_scale"] + data.meta["y_mean"]  # in y's units
        m = entry.metrics(result, data)["rmse_in_sample"]
        assert m == pytest.approx(float(np.sqrt(np.mean((fitted - yk) ** 2))), rel=1e-9)
        metrics.append(m)
    assert metrics[1] == pytest.approx(metrics[0] * scale, rel=1e-9)


@pytest.mark.parametrize(("prior", "w", "tau"), [
    ({"prior_scale": 1.0, "a0": 2.0, "b0": 1.0}, [0.3, -1.2, 0.8], 2.5),
    ({"prior_scale": 0.4, "a0": 3.5, "b0": 0.7}, [1.1, 0.2, -0.5], 0.6),
    ({"prior_scale": 2.5, "a0": 0.8, "b0": 2.0}, [-0.7, 0.9, 1.6], 1.3),
])
def test_log_joint_matches_the_normal_gamma_density(prior, w, tau):
    """The Pyro model's log joint, log p(y, w, tau), equals the Normal-Gamma density written out by hand:
    a0 log b0 - lgamma(a0) + (a0 - 1) log tau - b0 tau                        (tau ~ Gamma(a0, rate b0))
    + sum_j [-1/2 log(2 pi s0^2 / tau) - tau w_j^2 / (2 s0^2)]                (w | tau ~ N(0, s0^2 / tau I))
    + sum_i [-1/2 log(2 pi / tau) - tau (y_i - x_i^T w)^2 / 2]                (y | w, tau).
    A model with another prior scale or Gamma shape than blr_posterior assumes gives another value."""
    import pyro.poutine as poutine

    from pyrozoo.models.blr import blr_model

    x, y = _data(4, n=7, d=2)
    wt, tt = torch.tensor(w, dtype=torch.float64), torch.tensor(tau, dtype=torch.float64)
    cond = poutine.condition(blr_model, {"w": wt, "tau": tt})
    lp = float(poutine.trace(cond).get_trace(x, y, **prior).log_prob_sum())

    s0, a0, b0 = prior["prior_scale"], prior["a0"], prior["b0"]
    xn, yn, wn = x.numpy(), y.numpy(), np.asarray(w)
    want = a0 * math.log(b0) - math.lgamma(a0) + (a0 - 1) * math.log(tau) - b0 * tau
    want += np.sum(-0.5 * np.log(2 * math.pi * s0**2 / tau) - tau * wn**2 / (2 * s0**2))
    want += np.sum(-0.5 * np.log(2 * math.pi / tau) - tau * (yn - xn @ wn) ** 2 / 2)
    assert lp == pytest.approx(float(want), rel=1e-12, abs=1e-10)
    # known noise: no tau site, tau fixed at noise^-2 and no Gamma term
    cond = poutine.condition(blr_model, {"w": wt})
    lp_known = float(poutine.trace(cond).get_trace(x, y, **prior, noise=tau**-0.5).log_prob_sum())
    gamma_term = a0 * math.log(b0) - math.lgamma(a0) + (a0 - 1) * math.log(tau) - b0 * tau
    assert lp_known == pytest.approx(float(want) - gamma_term, rel=1e-12, abs=1e-10)


def _large_scale_csv(path, n=40, seed=1):
    """A CSV whose outcome is about 1000 +- 300: standardizing y divides by s ~ 260."""
    import pandas as pd

    r = np.random.default_rng(seed)
    X = r.standard_normal((n, 2))
    y = 1000 + 300 * (X[:, 0] - 0.5 * X[:, 1]) + 100 * r.standard_normal(n)
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "y": y}).to_csv(path, index=False)
    return X, y


def test_log_likelihood_is_in_the_data_units_of_a_standardized_csv(tmp_path):
    """blr standardizes y (y_std = (y - m) / s) but its log_likelihood group is the density of y as given:
    log p(y_i | w, tau) = log N(y_i | m + s x_i^T w, s^2 / tau) per draw (exact), and the lppd
    sum_i log mean_s p(y_i | theta_s) is the closed-form Student-t predictive scaled by s (df 2 a_N, location
    m + s x_i^T mu, scale s sqrt(b_N / a_N (1 + x_i^T Lam^-1 x_i))), within 4 Monte Carlo sds. The attrs record m
    and s and survive a netCDF round trip. The old group was the standardized density: n log s ~ 220 nats off."""
    import arviz as az
    from scipy import stats

    from pyrozoo.runner import run_model

    X, y = _large_scale_csv(tmp_path / "big.csv")
    n = len(y)
    out = run_model(RunConfig(model="blr", inference="exact", data=str(tmp_path / "big.csv"), num_samples=2000,
                              num_chains=1, options={"outcome": "y"}, progress=False), save=False)
    idata = out.result.to_inference_data()
    m, s = float(np.mean(y)), float(np.std(y))
    assert idata.attrs["response_shift"] == pytest.approx(m, rel=1e-12)
    assert idata.attrs["response_scale"] == pytest.approx(s, rel=1e-12)
    ll = idata.log_likelihood["y"].values  # (1, S, n)
    D = np.hstack([np.ones((n, 1)), (X - X.mean(0)) / X.std(0)])
    w, tau = idata.posterior["w"].values[0], idata.posterior["tau"].values[0]
    by_hand = stats.norm.logpdf(y[None, :], m + s * (w @ D.T), s / np.sqrt(tau)[:, None])
    np.testing.assert_allclose(ll[0], by_hand, rtol=1e-10, atol=1e-10)
    # the closed-form predictive in original units against the lppd of the group
    z = (y - m) / s
    from pyrozoo.models.blr import PRIOR_DEFAULTS

    a0, b0, s0 = PRIOR_DEFAULTS["a0"], PRIOR_DEFAULTS["b0"], PRIOR_DEFAULTS["prior_scale"]
    lam = np.eye(D.shape[1]) / s0**2 + D.T @ D
    mu = np.linalg.solve(lam, D.T @ z)
    aN, bN = a0 + n / 2, b0 + (z @ z - mu @ lam @ mu) / 2
    quad = np.einsum("ij,ij->i", D @ np.linalg.inv(lam), D)
    want = stats.t.logpdf(y, 2 * aN, m + s * (D @ mu), s * np.sqrt(bN / aN * (1 + quad))).sum()
    p = np.exp(ll[0])
    lppd = np.log(p.mean(0)).sum()
    mc_sd = np.sum(p.std(0) / (np.sqrt(p.shape[0]) * p.mean(0)))  # delta method, summed (draws shared by all i)
    assert abs(lppd - want) < 4 * mc_sd + 1e-9, (lppd, want, mc_sd)
    assert abs(lppd - want) < 0.01 * n * math.log(s)  # the old group was n log s away
    idata.to_netcdf(str(tmp_path / "idata.nc"))
    back = az.from_netcdf(str(tmp_path / "idata.nc"))
    assert back.attrs["response_shift"] == pytest.approx(m) and back.attrs["response_scale"] == pytest.approx(s)


def test_compare_with_spike_slab_on_the_same_csv_is_on_one_scale(tmp_path):
    """az.compare of blr (standardizes y) and spike-slab (only centres y) ranks densities of the same numbers:
    their elpd_loo differ by a few nats, not by n log s (~220 here, as before the Jacobian)."""
    import arviz as az

    from pyrozoo.runner import run_model

    _, y = _large_scale_csv(tmp_path / "big.csv")
    fits = {}
    for model, inference, warmup in (("blr", "exact", {}), ("spike-slab", "gibbs", {"warmup_steps": 100})):
        out = run_model(RunConfig(model=model, inference=inference, data=str(tmp_path / "big.csv"), num_samples=500,
                                  num_chains=1, options={"outcome": "y"}, progress=False, **warmup), save=False)
        fits[model] = out.result.to_inference_data()
    assert fits["spike-slab"].attrs["response_scale"] == 1.0  # centred only: no Jacobian
    table = az.compare(fits)
    gap = abs(table.loc["blr", "elpd_loo"] - table.loc["spike-slab", "elpd_loo"])
    assert gap < 0.1 * len(y) * math.log(np.std(y)), table


def test_make_dataset_refuses_pandas_inputs_paired_by_position_against_their_labels():
    """A y Series in another row order than the DataFrame x was paired by position (the posterior of w came from
    reversed pairs, without an error), and an integer categorical column was read as amounts; both are refused as
    every other regression entry refuses them (check_xy)."""
    import pandas as pd

    x, _ = _data()
    frame = pd.DataFrame(x.numpy(), columns=[f"x{j}" for j in range(x.shape[1])],
                         index=[f"r{i}" for i in range(x.shape[0])])
    y = pd.Series(x[:, 0].numpy(), index=frame.index)
    with pytest.raises(PyrozooError, match=r"^x, y: expected pandas inputs with the same index .* got y with the "
                                           r"same labels in another order"):
        make_dataset(frame, y.iloc[::-1])
    codes = pd.Series(pd.Categorical(np.arange(x.shape[0]) % 3), index=frame.index)
    with pytest.raises(PyrozooError, match=r"^x: expected numbers, got categorical column\(s\) \['c'\] "
                                           r"\(categories are labels, not amounts\)"):
        make_dataset(frame.assign(c=codes), y)
    assert torch.equal(make_dataset(frame, y).observed["y"], make_dataset(x, x[:, 0]).observed["y"])


def test_make_dataset_names_a_column_y_by_its_shape():
    x, y = _data()
    with pytest.raises(PyrozooError, match=rf"^y: expected shape \({x.shape[0]},\) \(one value per row of x\), got "
                                           rf"\({x.shape[0]}, 1\)$"):
        make_dataset(x, y[:, None])
    grad = make_dataset(x.clone().requires_grad_(), y.clone().requires_grad_())
    assert not grad.inputs["x"].requires_grad and not grad.observed["y"].requires_grad


@pytest.mark.parametrize(("noise_true", "message"), [
    (1e-200, r"^noise_true: expected at least 7\.46e-155, so that the precision 1 / noise_true\^2 is finite in "
             r"float64, got 1e-200$"),
    (1e300, r"^noise_true: expected 10 noise_true at most sqrt\(float64 max / n\) = 9\.48e\+152 with n = 200, so "
            r"that the simulated data's sum of squares is finite, got 1e\+300$"),
    (float("nan"), r"^noise_true: expected a finite value > 0, got nan$"),
])
def test_a_noise_scale_that_breaks_the_simulated_data_is_named(noise_true, message):
    """noise_true = 1e-200 failed with a raw OverflowError in the truth's tau = noise_true^-2; 1e300 was taken and
    gave responses whose sum of squares is inf."""
    with pytest.raises(PyrozooError, match=message):
        simulate_blr(0, noise_true=noise_true)
    ds = simulate_blr(0, n=4, d=1, noise_true=1e-154)  # just inside: tau is finite
    assert np.isfinite(ds.truth["tau"])


def test_blr_posterior_refuses_a_column_y_naming_its_shape():
    """blr_posterior(x, y[:, None]) failed inside torch ("Incompatible matrix sizes for cholesky_solve"); the public
    fits (make_dataset, BLRPoolPosterior.fit: check_xy) refuse a column y, and so does blr_posterior now, naming
    y's shape, as it does a 1-D design."""
    x = torch.randn(30, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = x.sum(1)
    with pytest.raises(PyrozooError, match=r"^y: expected shape \(30,\) \(one value per row of x\), got shape "
                                           r"\(30, 1\)$"):
        blr_posterior(x, y[:, None])
    with pytest.raises(PyrozooError, match=r"^y: expected shape \(30,\) .* got shape \(29,\)$"):
        blr_posterior(x, y[:29])
    with pytest.raises(PyrozooError, match=r"^x: expected a 2-D \(N, D\) tensor, got shape \(30,\)$"):
        blr_posterior(y, y)
    from pyrozoo.models.blr import check_design

    with pytest.raises(PyrozooError, match=r"^y: expected shape \(30,\) .* got ndarray$"):
        check_design(x, y.numpy())
    with pytest.raises(PyrozooError, match=r"^y: expected shape \(30,\)"):
        make_dataset(x, y[:, None])


NOISE_PRIOR_REFUSED = (r"expected no prior on the noise precision with noise=0.5 > 0, which fixes tau = 1 / noise\^2 "
                       r".* would have no effect \(remove")


def test_a0_b0_with_a_known_noise_are_refused_not_ignored():
    """QA: a0, b0 (the Gamma prior on tau) with noise > 0 were accepted and ignored: make_dataset(x, y, noise=0.5)
    and make_dataset(x, y, noise=0.5, a0=50., b0=0.01) gave identical draws. Given explicitly with noise > 0 they are
    refused, naming them; left out (or None, the CLI's default) the run works as before, and with noise=0 they are
    the prior they always were."""
    x = torch.randn(15, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = x[:, 0]
    with pytest.raises(PyrozooError, match=r"^a0, b0: .* got a0=50.0, b0=0.01; they would have no effect "
                                           r"\(remove them"):
        make_dataset(x, y, noise=0.5, a0=50.0, b0=0.01)
    with pytest.raises(PyrozooError, match=r"^b0: " + NOISE_PRIOR_REFUSED + " it"):
        make_dataset(x, y, noise=0.5, b0=3.0)
    with pytest.raises(PyrozooError, match=r"^a0: " + NOISE_PRIOR_REFUSED):
        simulate_blr(0, n=10, d=1, noise=0.5, a0=5.0)
    ds = make_dataset(x, y, noise=0.5, a0=None, b0=None)  # None: not given
    assert (ds.inputs["a0"], ds.inputs["b0"], ds.inputs["noise"]) == (2.0, 1.0, 0.5)
    ds = make_dataset(x, y, a0=5.0, b0=3.0)  # unknown noise: the prior on tau, as given
    assert (ds.inputs["a0"], ds.inputs["b0"]) == (5.0, 3.0)
    ds = make_dataset(x, y, noise=0.0, a0=5.0)
    assert ds.inputs["a0"] == 5.0


def test_the_cli_refuses_a0_b0_with_a_known_noise_before_any_data(tmp_path, capsys):
    """pyrozoo run blr -o noise=0.5 -o a0=5 -o b0=3 gave the draws of the run without a0, b0, and config.toml recorded
    them; the entry's option checks refuse them (every sweep cell too); noise alone and a0, b0 alone still run."""
    from pyrozoo.cli import main

    entry = registry.get("blr")
    with pytest.raises(PyrozooError, match=r"^a0, b0: " + NOISE_PRIOR_REFUSED):
        entry.check_config(RunConfig(model="blr", options={"noise": 0.5, "a0": 5, "b0": 3}))
    entry.check_config(RunConfig(model="blr", options={"noise": 0.0, "a0": 5, "b0": 3}))
    out = tmp_path / "r"
    assert main(["run", "blr", "--num-samples", "5", "-o", "n=15", "-o", "noise=0.5", "-o", "a0=5", "--out",
                 str(out), "--no-progress"]) == 2
    assert "a0: expected no prior on the noise precision with noise=0.5 > 0" in capsys.readouterr().err
    assert not out.exists()
    for opts in (["-o", "noise=0.5"], ["-o", "a0=5", "-o", "b0=3"]):
        assert main(["run", "blr", "--num-samples", "5", "-o", "n=15", *opts, "--out", str(out / opts[1]),
                     "--no-progress"]) == 0


def test_simulated_data_name_the_feature_axis_as_a_data_file_does(tmp_path):
    """QA: on simulated data w's feature axis read 0..d with the intercept unnamed at 0, while a --data run names it
    ['intercept', <columns>]; the simulator now names its columns intercept, x1, ..., xd (exact and NUTS)."""
    import arviz as az

    from pyrozoo.cli import main
    from pyrozoo.runner import run_model

    assert simulate_blr(0, n=10, d=3).meta["features"] == ["intercept", "x1", "x2", "x3"]
    out = tmp_path / "r"
    assert main(["run", "blr", "--inference", "exact", "--num-samples", "50", "--num-chains", "2", "-o", "n=30", "-o",
                 "d=3", "--out", str(out), "--no-progress"]) == 0
    idata = az.from_netcdf(out / "idata.nc")
    assert idata.posterior["w"].dims == ("chain", "draw", "feature")
    assert idata.posterior["feature"].values.tolist() == ["intercept", "x1", "x2", "x3"]
    nuts = run_model(RunConfig(model="blr", inference="nuts", num_samples=20, warmup_steps=20, num_chains=1,
                               progress=False, options={"n": 30, "d": 2}), save=False).result
    assert nuts.dims["w"] == ["feature"] and nuts.coords["feature"] == ["intercept", "x1", "x2"]


def test_a_known_noise_is_read_in_the_responses_own_units_on_standardized_data(tmp_path, capsys):
    """QA: blr's -o noise= was the noise sd of the *standardized* y on --data and shipped data (the stored
    log-likelihood was N(y_std | x w, noise^2) - log s), while `pyrozoo list blr` and the docs gave no unit: a known
    sd in y's units (8 for y ~ 154 +- 17) fitted another model silently. noise is now in y's own units there too:
    the model gets noise / s, the log-likelihood is log N(y | m + s x w, noise^2), and y in other units with the
    noise in those units is the same fit (log-likelihood shifted by log c per row)."""
    import arviz as az
    import pandas as pd
    from scipy import stats

    from pyrozoo.runner import run_model

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.standard_normal(40), "b": rng.standard_normal(40)})
    df["y"] = 150.0 + 10.0 * df["a"] + 8.0 * rng.standard_normal(40)
    runs = {}
    for c in (1.0, 1000.0):
        path = tmp_path / f"d{c:g}.csv"
        df.assign(y=df["y"] * c).to_csv(path, index=False)
        cfg = RunConfig(model="blr", inference="exact", num_samples=30, num_chains=1, device="cpu", progress=False,
                        data=str(path), options={"outcome": "y", "noise": 8.0 * c})
        data = registry.get("blr").load_data(registry.get("blr").check_config(cfg))
        s = float(df["y"].std(ddof=0) * c)
        assert data.inputs["noise"] == pytest.approx(8.0 * c / s, rel=1e-12)
        runs[c] = run_model(cfg, save=False).result.to_inference_data()
    idata = runs[1.0]
    m, s = idata.attrs["response_shift"], idata.attrs["response_scale"]
    x = idata.constant_data["x"].values
    w = idata.posterior["w"].values[0]  # (draw, feature)
    expected = stats.norm.logpdf(df["y"].to_numpy()[None, :], m + s * (w @ x.T), 8.0)
    np.testing.assert_allclose(idata.log_likelihood["y"].values[0], expected, rtol=1e-10)
    np.testing.assert_allclose(runs[1000.0].posterior["w"].values, idata.posterior["w"].values, rtol=1e-8)
    np.testing.assert_allclose(runs[1000.0].log_likelihood["y"].values,
                               idata.log_likelihood["y"].values - math.log(1000.0), rtol=1e-10)
    assert az.loo(runs[1000.0]).elpd_loo == pytest.approx(az.loo(idata).elpd_loo - 40 * math.log(1000.0), rel=1e-8)
    # a bad value is refused by name, before it is scaled
    bad = RunConfig(model="blr", data=str(tmp_path / "d1.csv"), options={"outcome": "y", "noise": -1.0})
    with pytest.raises(PyrozooError, match=r"^noise: expected a number >= 0"):
        registry.get("blr").load_data(registry.get("blr").check_config(bad))
    from pyrozoo.cli import main

    assert main(["list", "blr"]) == 0
    assert "known noise sd in y's own units" in capsys.readouterr().out


@pytest.mark.parametrize("features", [None, "z,intercept"])
def test_a_data_column_named_intercept_is_refused_before_any_work(tmp_path, capsys, features):
    """QA: a --data column named 'intercept' ran, saved idata.nc with feature coords ['intercept', 'intercept', 'z'],
    then az.summary (and pyrozoo diagnose) failed on the repeated label, leaving a half-written folder; it is now
    refused naming the column before anything is written. A file without it still runs."""
    import pandas as pd

    from pyrozoo.cli import main

    rng = np.random.default_rng(0)
    path = tmp_path / "icpt.csv"
    pd.DataFrame({"y": rng.normal(size=20), "intercept": rng.normal(size=20), "z": rng.normal(size=20)}).to_csv(
        path, index=False)
    out = tmp_path / "x"
    opts = ["-o", f"features={features}"] if features else []
    assert main(["run", "blr", "--data", str(path), "-o", "outcome=y", *opts, "--num-chains", "2", "--num-samples",
                 "20", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "features: column 'intercept' of data" in err and "clashes with the intercept column" in err
    assert not out.exists()
    assert main(["run", "blr", "--data", str(path), "-o", "outcome=y", "-o", "features=z", "--num-chains", "2",
                 "--num-samples", "20", "--out", str(out), "--no-progress"]) == 0


def test_make_dataset_refuses_feature_labels_that_repeat_or_miscount():
    """The result's feature coordinate comes from meta["features"]: a repeated label (or one per column too few) is
    refused when the dataset is made, not after the fit when ArviZ reads the saved axis."""
    x, y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, dtype=torch.float64)
    with pytest.raises(PyrozooError, match=r"^meta: 'intercept' given more than once"):
        make_dataset(x, y, meta={"features": ["intercept", "intercept", "z"]})
    with pytest.raises(PyrozooError, match=r"^meta: expected 3 feature labels"):
        make_dataset(x, y, meta={"features": ["intercept", "z"]})
    assert make_dataset(x, y, meta={"features": ["intercept", "a", "z"]}).meta["features"] == ["intercept", "a", "z"]


@pytest.mark.parametrize(("option", "value", "message"), [
    ("prior_scale", 1e155, r"^prior_scale: expected a number between 1e-150 and 1e150, got 1e\+155$"),
    ("prior_scale", 1e-160, r"^prior_scale: expected a number between 1e-150 and 1e150, got 1e-160$"),
    ("a0", 1e308, r"^a0: expected a number between 1e-150 and 1e12, got 1e\+308$"),
    ("b0", 1e-320, r"^b0: expected a number between 1e-150 and 1e150, got 1e-320$"),
    ("noise", 1e-160, r"^noise: expected a number between 1e-150 and 1e150 \(or 0\), got 1e-160$"),
])
@pytest.mark.parametrize("inference", ["exact", "nuts"])
def test_extreme_priors_are_refused_by_name_before_any_work(tmp_path, capsys, option, value, message, inference):
    """QA: prior_scale=1e155 raised a raw OverflowError at 1 / prior_scale**2 (with NUTS only after the whole fit,
    in blr_metrics), 1e-160 a Cholesky failure; they and the other hyperparameters outside float64's usable range are
    refused naming the option and the range before a folder is made (and by the model itself)."""
    from pyrozoo.cli import main
    from pyrozoo.models.blr import blr_model

    x, y = torch.randn(10, 2, dtype=torch.float64), torch.randn(10, dtype=torch.float64)
    with pytest.raises(PyrozooError, match=message):
        make_dataset(x, y, **{option: value})
    with pytest.raises(PyrozooError, match=message):
        blr_model(x, y, **{option: value})
    out = tmp_path / "r"
    assert main(["run", "blr", "--inference", inference, "-o", f"{option}={value!r}", "-o", "n=20", "--num-samples",
                 "20", "--warmup-steps", "20", "--num-chains", "1", "--out", str(out), "--no-progress"]) == 2
    assert f"{option}: expected a number between" in capsys.readouterr().err
    assert not out.exists()


def test_the_ends_of_the_prior_scale_range_give_the_closed_form_without_overflow():
    """blr_posterior computes 1 / prior_scale^2 without a Python float power (which raised OverflowError past
    1e154); at the range's ends the posterior is finite and the exact fit's metrics too."""
    entry = registry.get("blr")
    for scale in (1e-150, 1e150):
        ds = simulate_blr(0, n=30, d=2, prior_scale=scale)
        result = entry.fit(ds, entry.check_config(RunConfig(model="blr", inference="exact", num_samples=200,
                                                            num_chains=2, progress=False)))
        metrics = entry.metrics(result, ds)
        assert all(np.isfinite(v) for v in metrics.values()), (scale, metrics)
        assert metrics["w_max_z_vs_exact"] < 0.5, (scale, metrics)
    post = blr_posterior(torch.randn(5, 2, dtype=torch.float64), torch.randn(5, dtype=torch.float64),
                         prior_scale=1e200)  # blr_posterior leaves the values to the caller: no OverflowError
    assert torch.isfinite(post.mean).all()


def _float32_data():
    g = np.random.default_rng(0)
    x = g.normal(size=(30, 3)).astype(np.float32)
    return x, (x.sum(1) + g.normal(size=30)).astype(np.float32)


@pytest.mark.parametrize("prior", [{"prior_scale": 1e20}, {"prior_scale": 1e16}, {"prior_scale": 1e-16},
                                   {"b0": 1e-16}, {"a0": 1e-16}], ids=str)
def test_float32_data_take_priors_beyond_the_squared_float32_range(prior):
    """QA: make_dataset(float32 x, y, prior_scale=1e20) (also 1e16, 1e-16, b0=1e-16, a0=1e-16) was refused
    ("expected a number between 1e-15 and 1e15 in float32"), though the closed form squares them in float64 and the
    float32 model only carries them; BLRPoolPosterior.fit took them. The exact fit matches the closed form."""
    from pyrozoo.models.blr import blr_metrics, fit_blr

    x, y = _float32_data()
    ds = make_dataset(x, y, dtype=torch.float32, **prior)
    metrics = blr_metrics(fit_blr(ds, RunConfig(model="blr", inference="exact", num_samples=500, num_chains=1)), ds)
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    assert metrics["w_max_z_vs_exact"] < 0.5 and abs(metrics["tau_z_vs_exact"]) < 0.5, metrics


@pytest.mark.parametrize(("prior", "message"), [
    ({"prior_scale": 1e31}, r"^prior_scale: expected a number between 1e-30 and 1e30 in float32, got 1e\+31$"),
    ({"b0": 1e-38}, r"^b0: expected a number between 1e-30 and 1e30 in float32, got 1e-38$"),  # a zero float32 rate
    ({"noise": 1e-16}, r"^noise: expected a number between 1e-15 and 1e15 in float32 \(or 0\)"),  # tau = 1/noise^2
    ({"prior_scale": 1e155}, r"^prior_scale: expected a number between 1e-150 and 1e150, got 1e\+155$"),
])
def test_float32_data_refuse_priors_the_float32_model_cannot_carry(prior, message):
    x, y = _float32_data()
    with pytest.raises(PyrozooError, match=message):
        make_dataset(x, y, dtype=torch.float32, **prior)


def test_nuts_on_float32_data_refuses_a_prior_scale_below_the_squared_range_before_sampling():
    """prior_scale=1e-16 in float32 left NUTS no valid initial point ("Model specification seems incorrect"): w^2 /
    prior_scale^2 in its potential energy. Refused by name before NUTS runs; the exact path fits it."""
    from pyrozoo.models.blr import fit_blr

    x, y = _float32_data()
    ds = make_dataset(x, y, dtype=torch.float32, prior_scale=1e-16)
    with pytest.raises(PyrozooError, match=r"^prior_scale: expected at least 1e-15 for --inference nuts on float32"):
        fit_blr(ds, RunConfig(model="blr", inference="nuts", num_samples=10, num_chains=1, warmup_steps=5))


def test_a_flat_prior_on_a_rank_deficient_design_is_one_error_naming_prior_scale(tmp_path, capsys):
    """prior_scale ~1e8 on collinear columns (or fewer rows than columns) failed with torch's raw _LinAlgError from
    the Cholesky of X^T X + I / prior_scale^2 (blr --data, BLRPoolPosterior.fit, the active loop). It is one
    PyrozooError naming prior_scale and the rank; for nuts before sampling, and the CLI writes nothing. It stays a
    LinAlgError too, which neural-linear reads as diverged features."""
    import pandas as pd

    from pyrozoo.cli import main
    from pyrozoo.models.blr import PrecisionNotPositiveDefinite, blr_posterior

    rng = np.random.default_rng(0)
    a, c = rng.normal(size=50), rng.normal(size=50)
    x = torch.tensor(np.c_[np.ones(50), a, 2 * a, c])
    y = torch.tensor(1 + a + c + 0.1 * rng.normal(size=50))
    blr_posterior(x, y, prior_scale=1e3)  # a proper prior lifts the null direction
    with pytest.raises(PyrozooError, match=r"^prior_scale: the posterior precision .* not positive definite in "
                                           r"float64 at prior_scale=1e\+08 for this design \(rank 3 < 4 columns "
                                           r"\(50 rows: collinear columns\)\)") as info:
        blr_posterior(x, y, prior_scale=1e8)
    assert isinstance(info.value, torch.linalg.LinAlgError) and isinstance(info.value, PrecisionNotPositiveDefinite)
    wide = torch.tensor(rng.normal(size=(8, 12)))
    with pytest.raises(PyrozooError, match=r"rank 8 < 12 columns \(8 rows: fewer rows than columns\)"):
        blr_posterior(wide, torch.tensor(rng.normal(size=8)), prior_scale=1e9)
    path = tmp_path / "collinear.csv"
    pd.DataFrame({"a": a, "b": 2 * a, "c": c, "y": y.numpy()}).to_csv(path, index=False)
    for inference, extra in (("exact", []), ("nuts", ["--warmup-steps", "5"])):
        out = tmp_path / f"o_{inference}"
        assert main(["run", "blr", "--data", str(path), "-o", "outcome=y", "-o", "prior_scale=1e8", "--inference",
                     inference, "--num-samples", "5", *extra, "--out", str(out), "--no-progress"]) != 0
        assert "pyrozoo: error: prior_scale: the posterior precision" in capsys.readouterr().err
        assert not out.exists() and list(tmp_path.glob(".o_*")) == []
