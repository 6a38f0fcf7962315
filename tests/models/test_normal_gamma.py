"""Normal–Gamma: every inference path against the exact posterior (2-D quadrature) and the exact mean-field optimum."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
import torch

from pyrozoo import registry
from pyrozoo.config import RunConfig
from pyrozoo.errors import PyrozooError
from pyrozoo.models.normal_gamma import (
    GIBBS_KERNEL,
    cavi_fixed_point,
    make_dataset,
    normal_gamma_model,
    posterior_moments_quadrature,
    simulate_normal_gamma,
    sufficient_stats,
)

PRIOR = {"mu0": 0.0, "mu_scale": 10.0, "a": 1.0, "b": 1.0}


@pytest.fixture(scope="module")
def data():
    ds = simulate_normal_gamma(3, n=100, mu_true=1.0, sigma_true=2.0)
    exact = posterior_moments_quadrature(ds.observed["x"].numpy(), **PRIOR)
    return ds, exact


def fit(ds, inference, **cfg):
    entry = registry.get("normal-gamma")
    config = entry.check_config(RunConfig(model="normal-gamma", inference=inference, progress=False, **cfg))
    return entry.fit(ds, config)


def assert_matches_exact(result, exact, k=4.0):
    """Posterior mean and sd of mu and beta within k Monte Carlo standard errors of the quadrature values."""
    idata = result.to_inference_data()
    for name in ("mu", "beta"):
        mean_mcse = float(az.mcse(idata, var_names=[name], method="mean")[name])
        sd_mcse = float(az.mcse(idata, var_names=[name], method="sd")[name])
        draws = result.draws(name)
        assert abs(draws.mean() - exact[name][0]) < k * mean_mcse, (name, draws.mean(), exact[name], mean_mcse)
        assert abs(draws.std() - exact[name][1]) < k * sd_mcse, (name, draws.std(), exact[name], sd_mcse)


def test_quadrature_matches_conjugate_limit():
    """With a flat-ish prior on mu and known-precision conditional, quadrature agrees with the Gibbs conditionals'
    fixed relation: E[mu] ~ xbar, and E[beta] ~ (a + n/2) / (b + ss/2 + ...) to O(1/n)."""
    x = np.random.default_rng(0).normal(3.0, 0.5, size=400)
    ex = posterior_moments_quadrature(x, **PRIOR)
    assert ex["mu"][0] == pytest.approx(x.mean(), abs=1e-3)
    ss = ((x - x.mean()) ** 2).sum()
    assert ex["beta"][0] == pytest.approx((1 + 200) / (1 + ss / 2), rel=0.01)
    assert ex["mu"][1] == pytest.approx(x.std() / np.sqrt(400), rel=0.02)


def test_gibbs_matches_exact_posterior(data):
    ds, exact = data
    res = fit(ds, "gibbs", num_samples=2000, warmup_steps=200, num_chains=4)
    assert res.posterior["mu"].shape == (4, 2000)
    assert_matches_exact(res, exact)
    rhat = az.rhat(res.to_inference_data())
    assert float(rhat["mu"]) < 1.01 and float(rhat["beta"]) < 1.01


def test_nuts_matches_exact_posterior(data):
    ds, exact = data
    res = fit(ds, "nuts", num_samples=400, warmup_steps=200, num_chains=4)
    assert_matches_exact(res, exact)
    rhat = az.rhat(res.to_inference_data())
    assert float(rhat["mu"]) < 1.01 and float(rhat["beta"]) < 1.01
    assert res.sample_stats["diverging"].shape == (4, 400)
    assert not res.sample_stats["diverging"].any()
    assert 0.5 < res.sample_stats["acceptance_rate"].mean() <= 1.0


def test_svi_reaches_mean_field_optimum(data):
    """The guide family contains the CAVI optimum, so SVI must land on it; its means are then within 0.1 posterior
    sd of the exact posterior means (mean-field is exact in the means to O(1/n) here)."""
    ds, exact = data
    res = fit(ds, "svi", steps=2000, num_samples=4000)
    cavi = cavi_fixed_point(ds.observed["x"].numpy(), **PRIOR)
    p = {k: float(v) for k, v in res.params.items()}
    assert p["q_mu_loc"] == pytest.approx(cavi["mu_loc"], abs=0.1 * cavi["mu_scale"])
    assert p["q_mu_scale"] == pytest.approx(cavi["mu_scale"], rel=0.1)
    assert p["q_beta_conc"] / p["q_beta_rate"] == pytest.approx(cavi["beta_conc"] / cavi["beta_rate"], rel=0.03)
    assert p["q_beta_conc"] == pytest.approx(cavi["beta_conc"], rel=0.25)
    for name in ("mu", "beta"):
        assert abs(res.draws(name).mean() - exact[name][0]) < 0.15 * exact[name][1]
    assert "fit_stats" in res.to_inference_data().groups()


def test_gibbs_conditionals_are_vectorized_over_chains(data):
    ds, _ = data
    d = sufficient_stats(ds)
    state = GIBBS_KERNEL.init(7, d)
    state = GIBBS_KERNEL.sweep(state, d)
    assert state["mu"].shape == (7,) and state["beta"].shape == (7,)
    assert (state["beta"] > 0).all()
    assert GIBBS_KERNEL.log_joint(state, d).shape == (7,)


def test_log_joint_matches_pyro_model(data):
    """The Gibbs kernel's log joint equals the Pyro model's log density at the same point."""
    import pyro.poutine as poutine

    ds, _ = data
    d = sufficient_stats(ds)
    state = {"mu": torch.tensor([0.7], dtype=torch.float64), "beta": torch.tensor([0.3], dtype=torch.float64)}
    cond = poutine.condition(normal_gamma_model, {"mu": state["mu"][0], "beta": state["beta"][0]})
    lp = poutine.trace(cond).get_trace(**ds.model_kwargs()).log_prob_sum()
    assert float(GIBBS_KERNEL.log_joint(state, d)[0]) == pytest.approx(float(lp), rel=1e-10)


@pytest.mark.parametrize(
    "x,prior,match",
    [
        ([1.0, float("nan"), 2.0], {}, "x: expected finite"),
        ([1.0, float("inf"), 2.0], {}, "x: expected finite"),
        ([[1.0, 2.0], [3.0, 4.0]], {}, "x: expected shape"),
        ([1.0], {}, "at least 2"),
        ([1.0, 2.0], {"mu_scale": 0.0}, "mu_scale"),
        ([1.0, 2.0], {"a": -1.0}, "a: expected"),
        ([1.0, 2.0], {"b": float("nan")}, "b: expected"),
        ([1.0, 2.0], {"mu0": "1"}, "mu0: expected a finite number, got the string '1'"),
        ([1.0, 2.0], {"mu_0": 1.0}, r"prior: unknown key\(s\) mu_0; allowed: a, b, mu0, mu_scale"),
        ([1.0, 2.0], {"dtype": torch.int64}, "dtype: expected a floating torch dtype"),
        ([1.0, 2.0], {"dtype": "float32"}, "dtype: expected a floating torch dtype"),
        # finite, but the sum of squares is inf: the fit used to run on it and the metrics took 81 s to report nan
        ([1e308, -1e308, 3.0], {}, r"x: the sum of squares overflows float64 .*rescale the data"),
        ([1e200, -1e200, 3.0], {}, "x: the sum of squares overflows float64"),
        ([1e30, -1e30, 3.0], {"dtype": torch.float32}, "x: the sum of squares overflows float32"),
    ],
)
def test_bad_input(x, prior, match):
    with pytest.raises(PyrozooError, match=match):
        make_dataset(x, **prior)


def test_a_float32_dtype_keeps_the_values():
    assert make_dataset([0.5, 1.5, 2.7], dtype=torch.float32).observed["x"].tolist() == pytest.approx([0.5, 1.5, 2.7])


@pytest.mark.parametrize("fn", [posterior_moments_quadrature, cavi_fixed_point])
@pytest.mark.parametrize(("x", "kwargs", "match"), [
    ([], {}, "x: expected at least 1 observation, got 0"),  # quadrature: ZeroDivisionError, cavi: NaN
    ([1.0, float("nan"), 2.0], {}, "x: expected finite values"),  # quadrature: hung > 60 s, cavi: NaN
    (["a", "b"], {}, "x: expected a numeric array"),
    ([1.0, 2.0, 3.0], {"a": -1.0}, "a: expected a finite value > 0"),  # was accepted
    ([1.0, 2.0, 3.0], {"mu_scale": "10"}, "mu_scale: expected a finite value > 0"),
    ([1.0, 2.0, 3.0], {"mu0": float("inf")}, "mu0: expected a finite number"),
    ([1e200, -1e200, 3.0], {}, "x: the sum of squares overflows"),
])
def test_reference_values_check_their_input_first(fn, x, kwargs, match):
    with pytest.raises(PyrozooError, match=match):
        fn(x, **kwargs)


def test_reference_values_check_their_own_settings():
    with pytest.raises(PyrozooError, match="grid: expected an integer >= 3"):
        posterior_moments_quadrature([1.0, 2.0], grid=1)
    with pytest.raises(PyrozooError, match="width: expected a finite value > 0"):
        posterior_moments_quadrature([1.0, 2.0], width=0.0)
    with pytest.raises(PyrozooError, match="iters: expected an integer >= 1"):
        cavi_fixed_point([1.0, 2.0], iters=0)


def test_quadrature_of_data_far_beyond_the_prior_scale_is_quick_and_finite():
    """Data near 1e150 with mu ~ N(0, 10^2): the prior dominates mu, so the posterior sits near mu0, far from the
    data's mean. The grid used to be centred on the mean and widened to 19201^2 (over a minute) before failing; it
    is centred on the mean-field optimum now."""
    ex = posterior_moments_quadrature([1e150, 1.1e150, 0.9e150], **PRIOR)
    assert ex["mu"][0] == pytest.approx(0.0, abs=0.1) and ex["mu"][1] == pytest.approx(10.0, rel=1e-3)
    assert 0 < ex["beta"][0] < 1e-290 and 0 < ex["beta"][1] < 1e-290  # the sd used to underflow to 0


def test_a_data_file_whose_squares_overflow_fails_before_the_fit(tmp_path):
    from pyrozoo.runner import run_model

    path = tmp_path / "huge.csv"
    path.write_text("x\n1e308\n-1e308\n3\n")
    with pytest.raises(PyrozooError, match="x: the sum of squares overflows float64"):
        run_model(RunConfig(model="normal-gamma", data=str(path), progress=False), save=False)


def test_constant_data_is_a_proper_posterior_for_every_engine():
    """Equal observations (SS = 0) still give a proper posterior, beta | x ~ ... with E[beta] ~ (a + n/2) / b for a
    diffuse mu prior. Quadrature and SVI used to divide by the sample variance (a NaN grid and a zero guide scale)."""
    x = np.full(6, 1.5)
    ex = posterior_moments_quadrature(x, **PRIOR)
    assert np.isfinite([*ex["mu"], *ex["beta"]]).all()
    assert ex["mu"][0] == pytest.approx(1.5, abs=1e-3)
    ds = make_dataset(x, **PRIOR)
    gibbs = fit(ds, "gibbs", num_samples=2000, warmup_steps=100, num_chains=2)
    assert_matches_exact(gibbs, ex)
    svi = fit(ds, "svi", steps=1500, num_samples=2000)
    cavi = cavi_fixed_point(x, **PRIOR)
    p = {k: float(v) for k, v in svi.params.items()}
    assert np.isfinite(list(p.values())).all()
    assert p["q_mu_loc"] == pytest.approx(cavi["mu_loc"], abs=0.2 * cavi["mu_scale"])
    assert p["q_beta_conc"] / p["q_beta_rate"] == pytest.approx(cavi["beta_conc"] / cavi["beta_rate"], rel=0.1)


def test_cavi_fixed_point_maximizes_the_closed_form_elbo():
    """The mean-field ELBO of q(mu) = N(m, 1/lam) q(beta) = Gamma(alpha, rate), written here in closed form
    (E[beta] = alpha/rate, E[log beta] = digamma(alpha) - log rate, Gaussian and Gamma entropies) and maximized by
    scipy (BFGS on m, log lam, log alpha, log rate), must be at the CAVI fixed point (rtol 1e-5; the prior a, b and
    mu0 are not the defaults so every term enters)."""
    from scipy import optimize, special

    x = simulate_normal_gamma(4, n=30, mu_true=1.0, sigma_true=2.0).observed["x"].numpy()
    prior = {"mu0": 0.5, "mu_scale": 3.0, "a": 2.0, "b": 1.5}
    n, xbar = x.size, x.mean()
    ss = ((x - xbar) ** 2).sum()
    s0sq = prior["mu_scale"] ** 2

    def neg_elbo(u):
        m, lam, alpha, rate = u[0], np.exp(u[1]), np.exp(u[2]), np.exp(u[3])
        e_beta, e_log_beta = alpha / rate, special.digamma(alpha) - np.log(rate)
        lik = 0.5 * n * (e_log_beta - np.log(2 * np.pi)) - 0.5 * e_beta * (ss + n * ((xbar - m) ** 2 + 1 / lam))
        p_mu = -0.5 * np.log(2 * np.pi * s0sq) - ((m - prior["mu0"]) ** 2 + 1 / lam) / (2 * s0sq)
        p_beta = (prior["a"] * np.log(prior["b"]) - special.gammaln(prior["a"]) + (prior["a"] - 1) * e_log_beta
                  - prior["b"] * e_beta)
        h_mu = 0.5 * np.log(2 * np.pi * np.e / lam)
        h_beta = alpha - np.log(rate) + special.gammaln(alpha) + (1 - alpha) * special.digamma(alpha)
        return -(lik + p_mu + p_beta + h_mu + h_beta)

    res = optimize.minimize(neg_elbo, np.array([xbar, 0.0, np.log(n / 2), np.log(ss / 2)]), method="BFGS",
                            options={"gtol": 1e-10})
    m, lam, alpha, rate = res.x[0], np.exp(res.x[1]), np.exp(res.x[2]), np.exp(res.x[3])
    cavi = cavi_fixed_point(x, **prior)
    assert cavi["mu_loc"] == pytest.approx(m, rel=1e-5)
    assert cavi["mu_scale"] == pytest.approx(lam**-0.5, rel=1e-5)
    assert cavi["beta_conc"] == pytest.approx(alpha, rel=1e-5)
    assert cavi["beta_rate"] == pytest.approx(rate, rel=1e-5)


def test_a_hand_built_dataset_with_nan_is_named_before_the_fit():
    """fit_normal_gamma checks a Dataset built without make_dataset: NaN is named as such (the overflow check
    used to fail on it with a raw ValueError from log10(nan))."""
    from pyrozoo.config import RunConfig
    from pyrozoo.models.normal_gamma import fit_normal_gamma

    ds = make_dataset([1.0, 2.0, 3.0])
    ds.observed["x"] = torch.tensor([1.0, float("nan"), 3.0], dtype=torch.float64)
    with pytest.raises(PyrozooError, match=r"x: expected finite values, found 1 non-finite \(NaN at index \(1,\)\)"):
        fit_normal_gamma(ds, RunConfig(model="normal-gamma", progress=False))


def test_nuts_on_data_far_from_zero_matches_the_exact_posterior():
    """Data offset by 1e8 (prior centred there): Pyro's default start put mu 1e7 prior sds away, the step size
    collapsed and NUTS reported beta 0.0015 against 1.2 (mu sd 5.7 against 0.21). It starts at the data's moments now.
    Tolerances: 0.5 posterior sd for the means, 30% for the sds (300 draws, ESS ~100 or more)."""
    from pyrozoo.models.normal_gamma import fit_normal_gamma, make_dataset, posterior_moments_quadrature

    x = 1e8 + np.random.default_rng(2).normal(0.0, 1.0, 20)
    ds = make_dataset(x, mu0=1e8, mu_scale=10.0)
    result = fit_normal_gamma(ds, RunConfig(model="normal-gamma", inference="nuts", num_samples=300, warmup_steps=200,
                                            num_chains=1, progress=False))
    exact = posterior_moments_quadrature(x, mu0=1e8, mu_scale=10.0, a=1.0, b=1.0)
    for name in ("mu", "beta"):
        draws = result.draws(name)
        mean, sd = exact[name]
        assert abs(float(draws.mean()) - mean) < 0.5 * sd, name
        assert 0.7 < float(draws.std()) / sd < 1.3, name
