"""Normal–Gamma: every inference path against the exact posterior (1-D quadrature over mu) and the exact mean-field
optimum."""

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


# SVI's own error at the optimum (the last iterate of Adam on a 32-particle ELBO, lr decayed to 1e-3), measured over
# seeds 0-3 at n = 20, 50, 500, 5000, 10000, at 2000 steps and at 500 (40 fits): |m - m*| <= 0.08 sd, q_mu_scale and
# q_beta_conc within 2.2%, E_q[beta] within 1%, q(beta)'s sd within 1.7%. The tolerances are 2.5-3x that. Draws: the
# sd of S draws has a relative Monte Carlo sd of 1/sqrt(2S), 1.1% for S = 4000; 4 of those plus q's own 2.2% is 7%.
SVI_TOL = {"mu_loc": 0.2, "mu_scale": 0.06, "beta_conc": 0.06, "beta_mean": 0.03, "beta_sd": 0.05, "draw_sd": 0.07}


def assert_at_cavi_optimum(res, x, num_samples):
    """The fitted q parameters, q(beta)'s sd and the draws' sds against :func:`cavi_fixed_point` (``SVI_TOL``)."""
    cavi = cavi_fixed_point(x, **PRIOR)
    p = {k: float(v) for k, v in res.params.items()}
    cavi_mean = cavi["beta_conc"] / cavi["beta_rate"]
    cavi_sd = cavi["beta_conc"] ** 0.5 / cavi["beta_rate"]
    assert p["q_mu_loc"] == pytest.approx(cavi["mu_loc"], abs=SVI_TOL["mu_loc"] * cavi["mu_scale"])
    assert p["q_mu_scale"] == pytest.approx(cavi["mu_scale"], rel=SVI_TOL["mu_scale"])
    assert p["q_beta_conc"] == pytest.approx(cavi["beta_conc"], rel=SVI_TOL["beta_conc"])
    assert p["q_beta_mean"] == pytest.approx(cavi_mean, rel=SVI_TOL["beta_mean"])
    assert p["q_beta_mean"] / p["q_beta_conc"] ** 0.5 == pytest.approx(cavi_sd, rel=SVI_TOL["beta_sd"])
    assert num_samples == 4000  # draw_sd's tolerance is derived for S = 4000
    # the reported beta_sd and mu_sd (normal_gamma_metrics: the draws' sds)
    assert float(res.draws("beta").std(ddof=1)) == pytest.approx(cavi_sd, rel=SVI_TOL["draw_sd"])
    assert float(res.draws("mu").std(ddof=1)) == pytest.approx(cavi["mu_scale"], rel=SVI_TOL["draw_sd"])


@pytest.mark.parametrize(("n", "steps"), [
    (20, 500), (50, 500), (500, 500), (5000, 500), (50, 2000), (500, 2000),
    pytest.param(5000, 2000, marks=pytest.mark.slow), pytest.param(10000, 2000, marks=pytest.mark.slow),
])
def test_svi_reaches_mean_field_optimum(n, steps):
    """The guide family contains the CAVI optimum, so SVI must land on it, at the default 2000 steps and at the
    example sweep's 500, for small and large n. q(beta) used to start at shape 2 with (shape, rate) params: at n = 500
    it reached shape 22 after 500 steps and 117 after 2000 (the optimum is 251), beta's sd 3.6x and 1.4x too large,
    and no warning."""
    import warnings

    ds = simulate_normal_gamma(0, n=n, mu_true=1.0, sigma_true=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # converged: warn_if_not_at_fixed_point stays quiet
        res = fit(ds, "svi", steps=steps, num_samples=4000)
    assert len(res.fit_stats["loss"]) == steps
    assert_at_cavi_optimum(res, ds.observed["x"].numpy(), 4000)


def test_svi_means_match_the_exact_posterior(data):
    """Mean-field is exact in the means to O(1/n) here: SVI's are within 0.15 posterior sd of the quadrature's."""
    ds, exact = data
    res = fit(ds, "svi", steps=500, num_samples=4000)
    for name in ("mu", "beta"):
        assert abs(res.draws(name).mean() - exact[name][0]) < 0.15 * exact[name][1]
    assert "fit_stats" in res.to_inference_data().groups()


def test_svi_travels_to_the_optimum_from_a_poor_start():
    """The fit is not the start copied out: from a q off by 2x in every scale parameter and 3 sds in m (both ways),
    the default optimizer reaches the optimum in 500 steps (with (shape, rate) params the shape stayed 33-56% off)."""
    from pyrozoo.guides.normal_gamma import make_normal_gamma_guide
    from pyrozoo.inference.from_config import svi_from_config
    from pyrozoo.models.normal_gamma import SVI_OPTIONS

    ds = simulate_normal_gamma(0, n=500, mu_true=1.0, sigma_true=2.0)
    x = ds.observed["x"].numpy()
    cavi = cavi_fixed_point(x, **PRIOR)
    mean = cavi["beta_conc"] / cavi["beta_rate"]
    config = RunConfig(model="normal-gamma", inference="svi", steps=500, num_samples=4000, progress=False)
    for k in (2.0, 0.5):
        init = {"mu_loc": cavi["mu_loc"] + 3 * np.sign(k - 1) * cavi["mu_scale"], "mu_scale": k * cavi["mu_scale"],
                "beta_conc": cavi["beta_conc"] / k, "beta_mean": mean * k}
        guide = make_normal_gamma_guide(init)
        res = svi_from_config(normal_gamma_model, guide, ds.model_kwargs(), config, **SVI_OPTIONS)
        assert_at_cavi_optimum(res, x, 4000)


def test_svi_is_reproducible_for_a_seed():
    ds = simulate_normal_gamma(1, n=40)
    one, two = (fit(ds, "svi", steps=100, num_samples=50, seed=5) for _ in range(2))
    other = fit(ds, "svi", steps=100, num_samples=50, seed=6)
    assert all(torch.equal(one.params[k], two.params[k]) for k in one.params)
    assert np.array_equal(one.draws("beta"), two.draws("beta"))
    assert not np.array_equal(one.draws("beta"), other.draws("beta"))


def test_cavi_residual_is_zero_only_at_the_optimum():
    """cavi_residual at the exact CAVI optimum is 0 (to rounding); at the old fit's q (n = 500, 500 steps: shape 22.5)
    it is large and the fit would warn."""
    from pyrozoo.models.normal_gamma import cavi_residual, warn_if_not_at_fixed_point

    ds = simulate_normal_gamma(0, n=500, mu_true=1.0, sigma_true=2.0)
    cavi = cavi_fixed_point(ds.observed["x"].numpy(), **PRIOR)
    at = {"q_mu_loc": cavi["mu_loc"], "q_mu_scale": cavi["mu_scale"], "q_beta_conc": cavi["beta_conc"],
          "q_beta_mean": cavi["beta_conc"] / cavi["beta_rate"]}
    assert max(abs(v) for v in cavi_residual(at, ds).values()) < 1e-9
    old = {**at, "q_beta_conc": 22.48, "q_beta_mean": 22.48 / 87.2}
    res = cavi_residual(old, ds)
    assert res["beta_conc"] == pytest.approx(22.48 / 251 - 1)
    with pytest.warns(UserWarning, match=r"svi: the fitted q\(mu\) q\(beta\) is not at the mean-field optimum \(fitted "
                                         r"vs one coordinate-ascent step from it: beta_conc -91%\); raise --steps$"):
        warn_if_not_at_fixed_point(old, ds)


def test_an_unconverged_svi_run_warns(monkeypatch, capsys, tmp_path):
    """A fit that stops short of the optimum is named, not passed in silence: the old start (shape 2) with 50 steps,
    through the CLI (its loss trace had looked settled: the last two 10% windows differed by less than their noise)."""
    from pyrozoo.cli import main
    from pyrozoo.guides.normal_gamma import make_normal_gamma_guide
    from pyrozoo.models import normal_gamma

    monkeypatch.setattr(normal_gamma, "make_normal_gamma_guide",
                        lambda init: make_normal_gamma_guide({**init, "beta_conc": 2.0}))
    assert main(["run", "normal-gamma", "--inference", "svi", "-o", "n=500", "--steps", "50", "--num-samples", "10",
                 "--no-progress", "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "pyrozoo: warning: svi: the fitted q(mu) q(beta) is not at the mean-field optimum" in err
    assert "step from it: beta_conc -9" in err


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
        ([[1.0, 2.0], [3.0, 4.0]], {}, r"x: expected a 1-D array of any length, got shape \(2, 2\)"),
        ([], {}, r"^x: expected at least 1 observation, got 0$"),
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
    with pytest.raises(PyrozooError, match=r"width: expected a number >= 8 \(the cut-off"):
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


def test_a_data_file_without_the_column_names_the_option(tmp_path):
    """-o column=x1 on a file without x1 said "FILE: no column 'x1'; columns are ...", naming no option."""
    path = tmp_path / "d.csv"
    path.write_text("y,t\n1,2\n3,4\n5,7\n")
    with pytest.raises(PyrozooError, match=r"^column: data .*d\.csv has no column\(s\) 'x1' \(given by -o "
                                           r"column=NAME\); columns are y, t$"):
        registry.get("normal-gamma").from_file(str(path), 0, column="x1")


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
    assert p["q_beta_mean"] == pytest.approx(cavi["beta_conc"] / cavi["beta_rate"], rel=0.1)


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


def test_the_model_needs_n_without_x_and_refuses_a_conflicting_n():
    """QA: normal_gamma_model() returned one scalar draw (no n, no x) and normal_gamma_model(x, n=3) silently
    ignored n; now n is required without x (a PyrozooError naming n) and may only repeat len(x) with it."""
    x = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(PyrozooError, match=r"^n: expected the number of rows to draw .* when x is None, got None"):
        normal_gamma_model()
    with pytest.raises(PyrozooError, match=r"^n: expected None or len\(x\) = 5 when x is given, got 3"):
        normal_gamma_model(x, n=3)
    with pytest.raises(PyrozooError, match=r"^n: expected an integer >= 1, got 0"):
        normal_gamma_model(n=0)
    assert normal_gamma_model(n=4).shape == (4,)
    assert normal_gamma_model(x, n=5).shape == (5,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_host_side_references_take_cuda_data():
    """posterior_moments_quadrature and cavi_fixed_point called .numpy() on the data, which fails for a CUDA
    tensor; the result must equal the CPU one."""
    from pyrozoo.models.normal_gamma import cavi_fixed_point, posterior_moments_quadrature

    x = torch.randn(50, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 2.0
    assert posterior_moments_quadrature(x.cuda()) == posterior_moments_quadrature(x)
    assert cavi_fixed_point(x.cuda()) == cavi_fixed_point(x)


@pytest.mark.parametrize(("options", "message"), [
    ({"mu_true": float("nan")}, r"^mu_true: expected a finite number, got nan$"),
    ({"mu_true": float("inf")}, r"^mu_true: expected a finite number, got inf$"),
    ({"mu_true": "1"}, r"^mu_true: expected a finite number, got the string '1'$"),
    ({"mu_true": 1e300}, r"^mu_true: expected \|mu_true\| \+ 10 sigma_true at most sqrt\(float64 max / n\) = "
                         r"1\.34e\+153 with n = 100, so that the simulated data's sum of squares is finite, got "
                         r"mu_true=1e\+300, sigma_true=2\.0$"),
    ({"sigma_true": 1e300}, r"^sigma_true: expected \|mu_true\| \+ 10 sigma_true at most .* sigma_true=1e\+300$"),
    ({"sigma_true": 1e-200}, r"^sigma_true: expected at least 7\.46e-155, so that the precision 1 / sigma_true\^2 "
                             r"is finite in float64, got 1e-200$"),
])
def test_simulator_parameters_that_break_the_data_are_named(options, message):
    """mu_true was not checked: nan, inf and 1e300 were reported as "x: expected finite values" or "x: the sum of
    squares overflows ... rescale the data", about data the caller never gave; sigma_true=1e300 and 1e-200 failed
    with a raw OverflowError / ZeroDivisionError."""
    with pytest.raises(PyrozooError, match=message):
        simulate_normal_gamma(0, **options)
    near = simulate_normal_gamma(0, n=4, mu_true=1e152, sigma_true=1e-154)  # inside both bounds: finite statistics
    assert torch.isfinite(near.observed["x"].square().sum()) and np.isfinite(near.truth["beta"])


def test_a_non_finite_mu_true_from_the_cli_is_one_line_naming_it(tmp_path, capsys):
    from pyrozoo.cli import main

    out = tmp_path / "run"
    assert main(["run", "normal-gamma", "-o", "mu_true=nan", "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["pyrozoo: error: mu_true: expected a finite number, got nan"]
    assert not out.exists()


@pytest.mark.filterwarnings("ignore:More chains:UserWarning")  # ArviZ, for 3 chains of one draw
@pytest.mark.parametrize("num_samples", [1, 20])
def test_metrics_sds_are_the_summary_table_s(num_samples):
    """metrics.json's mu_sd and beta_sd were the draws' sd with ddof 0, az.summary's with ddof 1: 0.1358 against
    0.1663 for 3 chains of one draw (ratio sqrt(2/3)). Both are ddof 1 now, equal to rounding."""
    from pyrozoo.runner import run_model

    out = run_model(RunConfig(model="normal-gamma", inference="gibbs", num_samples=num_samples, num_chains=3, seed=2,
                              options={"n": 10}, progress=False), save=False)
    table = az.summary(out.result.to_inference_data(), kind="stats", round_to="none")
    for name in ("mu", "beta"):
        assert out.metrics[f"{name}_sd"] == pytest.approx(float(table.loc[name, "sd"]), rel=1e-12)


def test_cavi_residual_judges_q_beta_s_mean_in_its_sds():
    """E_q[beta] was judged relatively (10%), which at n = 500 let q(beta)'s mean sit 1.6 of its sds off the CAVI
    update in silence (7 sds at n = 10,000), though the check is meant to name a mean 0.25 sd off. Now in sds: 0.5 sd
    off (3% at n = 500) is named, 0.1 sd is not."""
    import warnings

    from pyrozoo.models.normal_gamma import cavi_residual, warn_if_not_at_fixed_point

    ds = simulate_normal_gamma(0, n=500, mu_true=1.0, sigma_true=2.0)
    cavi = cavi_fixed_point(ds.observed["x"].numpy(), **PRIOR)
    at = {"q_mu_loc": cavi["mu_loc"], "q_mu_scale": cavi["mu_scale"], "q_beta_conc": cavi["beta_conc"],
          "q_beta_mean": cavi["beta_conc"] / cavi["beta_rate"]}
    sd = cavi["beta_conc"] ** 0.5 / cavi["beta_rate"]
    off = {**at, "q_beta_mean": at["q_beta_mean"] + 0.5 * sd}
    assert cavi_residual(off, ds)["beta_mean"] == pytest.approx(0.5, rel=1e-9)
    with pytest.warns(UserWarning, match=r"step from it: beta_mean 0\.5 sd\); raise --steps$"):
        warn_if_not_at_fixed_point(off, ds)
    near = {**at, "q_beta_mean": at["q_beta_mean"] - 0.1 * sd}
    assert cavi_residual(near, ds)["beta_mean"] == pytest.approx(-0.1, rel=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warn_if_not_at_fixed_point(near, ds)


def test_a_ten_step_svi_fit_with_q_beta_s_mean_off_warns():
    """n = 1000, 10 steps (seed 0): m is 0.22 sd and E_q[beta] 0.36 sd from the CAVI optimum (1.6% relative), and the
    run was silent; the beta_mean residual in sds names it. The numbers are the CPU's stream (device="cpu": `auto`
    picks CUDA on a GPU machine, whose draws differ)."""
    ds = simulate_normal_gamma(0, n=1000, mu_true=1.0, sigma_true=2.0)
    with pytest.warns(UserWarning, match=r"not at the mean-field optimum .*beta_mean -0\.3\d sd"):
        fit(ds, "svi", steps=10, num_samples=10, seed=0, device="cpu")


def test_float32_data_coarse_against_its_offset_are_refused_before_the_fit():
    """1e7 + 0.3 N(0, 1) in float32 keeps 3 distinct values: the Gibbs run gave mu's sd 2.5x too large, silently.
    The dataset is refused by regime-SCM's criterion (pyrozoo.data.precision), naming both fixes; float64 is kept."""
    x = 1e7 + 0.3 * np.random.default_rng(0).standard_normal(200)
    for given in (x, torch.as_tensor(x, dtype=torch.float32)):  # float64 values, or values already rounded
        with pytest.raises(PyrozooError, match=r"^x: expected each column's sd to span at least 100 steps of float32 "
                                               r".*where float32 steps by 1 \(3 distinct values.*Subtract a constant "
                                               r".*or pass x in float64 with dtype=torch.float64"):
            make_dataset(given, dtype=torch.float32, mu_scale=1e8)
    assert make_dataset(x, dtype=torch.float64, mu_scale=1e8).observed["x"].dtype == torch.float64
    # the same criterion in float64, where only an offset ~1e15 times the spread is too coarse
    with pytest.raises(PyrozooError, match=r"steps of float64 .*Subtract a constant"):
        make_dataset(1e20 + 1e5 * np.arange(5.0), mu_scale=1e21)


def test_float32_gibbs_keeps_mu_s_posterior_mean_to_the_float64_one():
    """n = 200,000 of 1e4 + N(0, 1) in float32 (fine grained enough to be accepted): xbar rounded to float32's grid
    (spacing ~1e-3, mu's posterior sd 2.2e-3) put the Gibbs posterior mean 0.2 sd off the float64 run's. The
    statistics are now accumulated and kept in float64 and the conditionals compute in float64."""
    x = 1e4 + np.random.default_rng(1).standard_normal(200_000)
    d32 = sufficient_stats(make_dataset(x, dtype=torch.float32, mu_scale=1e5))
    x32 = torch.as_tensor(x, dtype=torch.float32).double()
    assert float(d32["xbar"]) == pytest.approx(float(x32.mean()), rel=1e-15)
    assert float(d32["ss"]) == pytest.approx(float(((x32 - x32.mean()) ** 2).sum()), rel=1e-12)
    from pyrozoo.inference.assemble import without_log_likelihood

    metrics = {}
    for dtype in (torch.float64, torch.float32):
        ds = make_dataset(x, dtype=dtype, mu_scale=1e5)
        with without_log_likelihood():  # 2,000 draws x 200,000 observations
            result = fit(ds, "gibbs", num_chains=2, num_samples=1000, warmup_steps=50, seed=0)
        assert result.draws("mu").dtype == (np.float32 if dtype == torch.float32 else np.float64)
        metrics[dtype] = registry.get("normal-gamma").metrics(result, ds)
    m64, m32 = metrics[torch.float64], metrics[torch.float32]
    assert abs(m32["mu_mean"] - m64["mu_mean"]) < 0.05 * m64["mu_sd"]  # was 0.20 sd
    assert abs(m32["mu_z_vs_exact"]) < 0.15 and m32["mu_sd"] == pytest.approx(m64["mu_sd"], rel=0.05)
    assert m32["beta_mean"] == pytest.approx(m64["beta_mean"], rel=1e-4)


def test_a_single_observation_is_a_proper_posterior_for_every_path():
    """n = 1 was refused ("expected at least 2 observations") though both priors are proper: Gibbs's draws match the
    exact posterior, which the quadrature gives (checked here against the closed-form marginal of mu and the
    conditional mean of beta); NUTS and SVI run and the metrics are finite."""
    from scipy import integrate

    x, prior = 1.5, {"mu0": 0.5, "mu_scale": 2.0, "a": 2.0, "b": 1.5}
    ds = make_dataset([x], **prior)
    exact = posterior_moments_quadrature([x], **prior)
    # p(mu | x) ~ N(mu; mu0, s0^2) (b + (x - mu)^2 / 2)^-(a + 1/2) (beta integrated out);
    # E[beta | mu, x] = (a + 1/2) / rate

    def rate(m):
        return prior["b"] + 0.5 * (x - m) ** 2

    def dens(m):
        return np.exp(-0.5 * ((m - prior["mu0"]) / prior["mu_scale"]) ** 2) * rate(m) ** -(prior["a"] + 0.5)

    z = integrate.quad(dens, -np.inf, np.inf)[0]
    mean = integrate.quad(lambda m: m * dens(m), -np.inf, np.inf)[0] / z
    sd = np.sqrt(integrate.quad(lambda m: (m - mean) ** 2 * dens(m), -np.inf, np.inf)[0] / z)
    beta_mean = integrate.quad(lambda m: (prior["a"] + 0.5) / rate(m) * dens(m), -np.inf, np.inf)[0] / z
    assert exact["mu"][0] == pytest.approx(mean, rel=1e-6) and exact["mu"][1] == pytest.approx(sd, rel=1e-6)
    assert exact["beta"][0] == pytest.approx(beta_mean, rel=1e-6)
    assert_matches_exact(fit(ds, "gibbs", num_chains=4, num_samples=2000, warmup_steps=100, seed=0), exact)
    entry = registry.get("normal-gamma")
    for inference, settings in (("nuts", {"num_chains": 2, "num_samples": 200, "warmup_steps": 100}),
                                ("svi", {"steps": 300})):
        result = fit(ds, inference, seed=0, **settings)
        metrics = entry.metrics(result, ds)
        assert all(np.isfinite(v) for v in metrics.values()), metrics
        assert abs(metrics["mu_z_vs_exact"]) < 0.5 and abs(metrics["beta_z_vs_exact"]) < 0.5, metrics
        assert result.log_likelihood["x"].shape[-1] == 1
    assert simulate_normal_gamma(0, n=1).observed["x"].shape == (1,)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_half_precision_dtype_is_refused_up_front(half):
    """make_dataset(x, dtype=torch.float16) was accepted and every fit then failed ('"gamma_cpu" not implemented for
    Half'); bfloat16 gave a raw "TypeError: Got unsupported ScalarType BFloat16" from check_finite. Both are now one
    PyrozooError naming the dtype, from make_dataset and check_observations alike."""
    from pyrozoo.models.normal_gamma import check_observations, make_dataset

    x = np.random.default_rng(1).normal(1, 2, 30)
    for call in (lambda: make_dataset(x, dtype=half), lambda: check_observations(x, dtype=half)):
        with pytest.raises(PyrozooError, match=rf"dtype: expected .*torch.float32 or torch.float64, got {half}"):
            call()


def _one_d_reference(x: np.ndarray, *, mu0: float, mu_scale: float, a: float, b: float) -> dict[str, tuple]:
    """The exact posterior moments by a fine 1-D quadrature over mu alone, beta integrated out in closed form:
    p(mu | x) ~ N(mu; mu0, s0^2) rate(mu)^-alpha, beta | mu, x ~ Gamma(alpha, rate(mu)), alpha = a + n/2,
    rate(mu) = b + (ss + n (xbar - mu)^2) / 2; Var(beta) = E[alpha / rate^2] + Var(alpha / rate)."""
    n, xbar = x.size, x.mean()
    ss = ((x - xbar) ** 2).sum()
    alpha = a + n / 2
    q = cavi_fixed_point(x, mu0=mu0, mu_scale=mu_scale, a=a, b=b)
    mu = q["mu_loc"] + np.linspace(-60, 60, 400_001) * q["mu_scale"]
    rate = b + 0.5 * (ss + n * (xbar - mu) ** 2)
    lp = -0.5 * ((mu - mu0) / mu_scale) ** 2 - alpha * np.log(rate)
    w = np.exp(lp - lp.max())
    w /= w.sum()
    m = (w * mu).sum()
    e_beta = alpha / rate
    beta_mean = (w * e_beta).sum()
    beta_var = (w * alpha / rate**2).sum() + (w * (e_beta - beta_mean) ** 2).sum()
    return {"mu": (m, np.sqrt((w * (mu - m) ** 2).sum())), "beta": (beta_mean, np.sqrt(beta_var))}


@pytest.mark.parametrize("ab", [1.0, 1e3, 3e5, 1e6, 1e8])
def test_quadrature_resolves_a_strong_beta_prior(ab):
    """QA: the log-beta grid was sized by the data alone (sd sqrt(2/n)); a = b = 1e6 gave beta's exact sd 6.7e-5
    (true 1.0e-3), 1e8 gave 1.1e-16, as the posterior of log beta (sd ~ 1/sqrt(a + n/2)) fell on one row. It is sized
    from q(beta) now; checked against a 1-D quadrature with beta integrated out in closed form."""
    x = 1.0 + 2.0 * np.random.default_rng(0).standard_normal(100)
    prior = {"mu0": 0.0, "mu_scale": 10.0, "a": ab, "b": ab}
    got, ref = posterior_moments_quadrature(x, **prior), _one_d_reference(x, **prior)
    for name in ("mu", "beta"):
        assert got[name][0] == pytest.approx(ref[name][0], abs=1e-6 * ref[name][1])
        assert got[name][1] == pytest.approx(ref[name][1], rel=1e-6)


def test_quadrature_beta_marginal_is_the_gamma_closed_form_with_mu_pinned():
    """With mu_scale tiny, mu ~ mu0 and beta | x ~ Gamma(a + n/2, b + (ss + n (xbar - mu0)^2) / 2) exactly enough."""
    x = 1.0 + 2.0 * np.random.default_rng(1).standard_normal(50)
    n, xbar = x.size, x.mean()
    for ab in (1.0, 1e3, 1e6, 1e8):
        alpha, rate = ab + n / 2, ab + 0.5 * (((x - xbar) ** 2).sum() + n * (xbar - 1.0) ** 2)
        got = posterior_moments_quadrature(x, mu0=1.0, mu_scale=1e-9, a=ab, b=ab)
        assert got["beta"][0] == pytest.approx(alpha / rate, rel=1e-8)
        assert got["beta"][1] == pytest.approx(np.sqrt(alpha) / rate, rel=1e-6)
        assert got["mu"][0] == pytest.approx(1.0, abs=1e-8) and got["mu"][1] == pytest.approx(1e-9, rel=1e-6)


def test_quadrature_from_a_few_nodes_per_piece_refines_to_the_reference():
    """A strong beta prior (a = b = 1e6) started from very few Gauss-Legendre nodes per piece (``grid`` 3 or 21)
    is refined until two orders agree: mean and sd of both mu and beta match the independent 1-D reference."""
    x = 1.0 + 2.0 * np.random.default_rng(0).standard_normal(100)
    prior = {"mu0": 0.0, "mu_scale": 10.0, "a": 1e6, "b": 1e6}
    ref = _one_d_reference(x, **prior)
    for grid in (3, 21):
        got = posterior_moments_quadrature(x, grid=grid, **prior)
        for name in ("mu", "beta"):
            assert got[name][0] == pytest.approx(ref[name][0], abs=1e-6 * ref[name][1])
            assert got[name][1] == pytest.approx(ref[name][1], rel=1e-6)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("mu_scale", 1e-160, r"^mu_scale: expected a number between 1e-150 and 1e150, got 1e-160$"),
    ("mu_scale", 1e160, r"^mu_scale: expected a number between 1e-150 and 1e150, got 1e\+160$"),
    ("a", 1e308, r"^a: expected a number between 1e-150 and 1e12, got 1e\+308$"),
    ("a", 1e13, r"^a: expected a number between 1e-150 and 1e12, got 10000000000000.0$"),
    ("b", 1e-320, r"^b: expected a number between 1e-150 and 1e150, got 1e-320$"),
    ("mu0", 1e308, r"^mu0: expected a finite number with \|mu0\| <= 1e150, got 1e\+308$"),
    ("mu0", 1e150, r"^mu_scale: expected at least 100 steps of float64 at mu0=1e\+150"),
])
def test_extreme_priors_are_refused_by_name_before_any_work(tmp_path, capsys, option, value, message):
    """QA: mu_scale=1e-160 overflowed mu_scale^-2 (NaN Gibbs draws, a raw traceback), a=1e308 the same through
    lgamma(a), b=1e-320 failed tracing the model naming no option ("Normal scale 0.0"), mu0=1e150 with mu_scale=10
    (a prior one float wide) failed in the quadrature after the fit. Each is refused naming the option and the
    range, before a folder is made; the range's ends still run."""
    from pyrozoo.cli import main

    with pytest.raises(PyrozooError, match=message):
        make_dataset([1.0, 2.0, 3.0], **{option: value})
    out = tmp_path / "r"
    assert main(["run", "normal-gamma", "-o", f"{option}={value!r}", "--num-samples", "20", "--num-chains", "1",
                 "--out", str(out), "--no-progress"]) == 2
    assert f"{message.split(':')[0].lstrip('^')}: expected" in capsys.readouterr().err
    assert not out.exists()


def test_the_ends_of_the_prior_range_still_fit():
    x = 1.0 + 2.0 * np.random.default_rng(0).standard_normal(50)
    entry = registry.get("normal-gamma")
    for prior in ({"mu_scale": 1e-150}, {"mu_scale": 1e150}, {"a": 1e-150}, {"a": 1e12}, {"b": 1e-150},
                  {"b": 1e150}):
        ds = make_dataset(x, **prior)
        metrics = entry.metrics(fit(ds, "gibbs", num_samples=200, warmup_steps=50, num_chains=2), ds)
        assert all(np.isfinite(v) for v in metrics.values() if isinstance(v, float)), (prior, metrics)
        assert abs(metrics["mu_z_vs_exact"]) < 0.5 and abs(metrics["beta_z_vs_exact"]) < 0.5, (prior, metrics)


def test_the_prior_range_follows_the_dtype():
    """In float32 the hyperparameters are stored in float32 too: representable there, 1e-30 to 1e30 (Gibbs squares
    them in float64; NUTS/HMC and SVI, which square them in float32, ask 1e-15 to 1e15 when they run)."""
    with pytest.raises(PyrozooError, match=r"^mu_scale: expected a number between 1e-30 and 1e30 in float32"):
        make_dataset([1.0, 2.0], mu_scale=1e31, dtype=torch.float32)
    make_dataset([1.0, 2.0], mu_scale=1e31)


def _log_beta_reference(x: np.ndarray, *, mu0: float, mu_scale: float, a: float, b: float) -> dict[str, tuple]:
    """An independent reference: adaptive quadrature (scipy quad) over t = log beta, with mu integrated out in
    closed form: mu | beta, x is normal (mean (mu0/s0^2 + n beta xbar) / lam, variance 1/lam), and
    p(t | x) ~ beta^(a + n/2) exp(-b beta - beta ss / 2) N(xbar; mu0, s0^2 + 1/(n beta)) / sqrt(n beta)."""
    import math

    from scipy import integrate, optimize

    n, xbar = x.size, float(x.mean())
    ss, s02 = float(((x - xbar) ** 2).sum()), mu_scale**2

    def logf(t):
        beta = math.exp(t)
        v = s02 + 1.0 / (n * beta)
        return ((a + n / 2) * t - b * beta - 0.5 * beta * ss - 0.5 * math.log(n * beta) - 0.5 * math.log(v)
                - 0.5 * (xbar - mu0) ** 2 / v)

    t0 = optimize.minimize_scalar(lambda t: -logf(t), bounds=(-700, 700), method="bounded",
                                  options={"xatol": 1e-12}).x
    top, ends = logf(t0), []
    for sign in (-1, 1):  # out to where the log density fell by 60
        t, step = t0, 1e-6
        while top - logf(t) < 60:
            t, step = t + sign * step, step * 1.5
        ends.append(t)
    pts = np.linspace(ends[0], ends[1], 41)

    def mom(g):
        return sum(integrate.quad(lambda t: math.exp(logf(t) - top) * g(t), lo, hi, epsabs=0, epsrel=1e-12,
                                  limit=200)[0] for lo, hi in zip(pts[:-1], pts[1:], strict=True))

    def lam(t):
        return 1 / s02 + n * math.exp(t)

    z = mom(lambda t: 1.0)
    e_mu = mom(lambda t: (mu0 / s02 + n * math.exp(t) * xbar) / lam(t)) / z
    v_mu = mom(lambda t: 1 / lam(t) + ((mu0 / s02 + n * math.exp(t) * xbar) / lam(t) - e_mu) ** 2) / z
    e_b = mom(lambda t: math.exp(t)) / z
    v_b = mom(lambda t: (math.exp(t) - e_b) ** 2) / z
    return {"mu": (e_mu, math.sqrt(v_mu)), "beta": (e_b, math.sqrt(v_b))}


@pytest.mark.parametrize(("x", "prior"), [
    ([0.3, -1.2], {"mu_scale": 100.0}),  # 82 s, 22 GB, then "3.33e-12 of the mass lies on the grid border"
    ([0.3, -1.2], {"a": 1e-3, "b": 1e-3}),
    ([1e6 + 1.7, 1e6 - 2.2], {"mu_scale": 1e7}),  # data near 1e6 under a prior 10x wider
    ([1.3], {"mu_scale": 1e12, "a": 1e-3, "b": 1e-3}),  # one observation, a nearly flat mu prior
    ([0.12, -0.53, 1.48], {"mu_scale": 100.0}),  # 223 s on the grid, mu's sd 7.3e-6 off
], ids=["n2-wide-mu", "n2-weak-gamma", "n2-near-1e6", "n1-mu-scale-1e12", "n3-wide-mu"])
def test_quadrature_of_a_funnel_from_a_few_observations_is_exact_and_quick(x, prior):
    """QA: n = 1..3 under a weak prior make p(mu, log beta | x) a funnel; the 2-D grid sized from the mean-field
    q(mu) widened to 19201^2 (~22 GB, minutes) and failed ("mass on the grid border") or came out 7e-6 off. The
    1-D integral over mu (beta in closed form) agrees with quadrature over log beta (mu in closed form) to 1e-8."""
    import time

    x = np.asarray(x, dtype=np.float64)
    prior = {**PRIOR, **prior}
    start = time.perf_counter()
    got = posterior_moments_quadrature(x, **prior)
    assert time.perf_counter() - start < 2.0
    ref = _log_beta_reference(x, **prior)
    for name in ("mu", "beta"):
        assert got[name][0] == pytest.approx(ref[name][0], abs=1e-8 * ref[name][1])
        assert got[name][1] == pytest.approx(ref[name][1], rel=1e-8)


def test_quadrature_at_the_largest_gamma_shape_matches_a_40_digit_reference():
    """a = b = 1e12 (GAMMA_SHAPE_MAX), n = 10: log p(mu | x) is computed relative to its mode (log1p of R(mu) / R(m)),
    so alpha = 1e12 does not amplify rounding; checked against mpmath at 40 digits (the 2-D grid's beta sd was 3e-6
    relative off here)."""
    mp = pytest.importorskip("mpmath")
    x = 1.0 + 2.0 * np.random.default_rng(0).standard_normal(10)
    got = posterior_moments_quadrature(x, mu0=0.0, mu_scale=10.0, a=1e12, b=1e12)
    with mp.workdps(40):
        xs = [mp.mpf(float(v)) for v in x]
        n = len(xs)
        xbar = sum(xs) / n
        ss = sum((v - xbar) ** 2 for v in xs)
        alpha = mp.mpf(10) ** 12 + mp.mpf(n) / 2

        def rate(m):
            return mp.mpf(10) ** 12 + (ss + n * (xbar - m) ** 2) / 2

        centre, sd = mp.mpf(got["mu"][0]), mp.mpf(got["mu"][1])
        top = -centre**2 / 200 - alpha * mp.log(rate(centre))

        def integral(g):
            return mp.quad(lambda m: mp.exp(-m**2 / 200 - alpha * mp.log(rate(m)) - top) * g(m),
                           [centre + k * sd for k in range(-40, 41, 4)])

        z = integral(lambda m: 1)
        e_mu = integral(lambda m: m) / z
        sd_mu = mp.sqrt(integral(lambda m: (m - e_mu) ** 2) / z)
        e_b = integral(lambda m: alpha / rate(m)) / z
        sd_b = mp.sqrt(integral(lambda m: alpha / rate(m) ** 2 + (alpha / rate(m) - e_b) ** 2) / z)
    assert abs(got["mu"][0] - float(e_mu)) < 1e-8 * float(sd_mu)
    assert got["mu"][1] == pytest.approx(float(sd_mu), rel=1e-8)
    assert abs(got["beta"][0] - float(e_b)) < 1e-8 * float(sd_b)
    assert got["beta"][1] == pytest.approx(float(sd_b), rel=1e-8)


def test_a_two_row_file_under_a_wide_prior_runs_and_saves(tmp_path):
    """QA: `run normal-gamma --data two.csv -o mu_scale=100` failed in the metrics after the whole Gibbs fit
    (the quadrature's grid border), saving nothing."""
    from pyrozoo.cli import main

    path = tmp_path / "two.csv"
    path.write_text("x\n0.3\n-1.2\n")
    out = tmp_path / "r"
    assert main(["run", "normal-gamma", "--data", str(path), "-o", "mu_scale=100.0", "--num-samples", "200",
                 "--num-chains", "1", "--out", str(out), "--no-progress"]) == 0
    assert out.exists() and any(out.rglob("*"))


@pytest.mark.parametrize("prior", [{"mu_scale": 1e20}, {"b": 1e20}, {"b": 1e-25}, {"a": 1e-25},
                                   {"mu_scale": 1e29, "b": 1e29}], ids=str)
def test_gibbs_on_float32_data_takes_priors_beyond_the_squared_float32_range(prior):
    """QA (with blr's): float32 data refused mu_scale=1e20 etc. ("between 1e-15 and 1e15 in float32") though Gibbs's
    conditionals square them in float64; it fits them (the exact posterior's z within 0.5). NUTS and SVI, which square
    them in float32 (NUTS found no initial point at mu_scale=1e-20, SVI diverged at step 1 at 1e20), refuse them by
    name before running."""
    x = 1.0 + 2.0 * np.random.default_rng(0).standard_normal(50)
    ds = make_dataset(x, dtype=torch.float32, **prior)
    metrics = registry.get("normal-gamma").metrics(fit(ds, "gibbs", num_samples=300, warmup_steps=50, num_chains=2),
                                                   ds)
    assert abs(metrics["mu_z_vs_exact"]) < 0.5 and abs(metrics["beta_z_vs_exact"]) < 0.5, metrics
    for inference, settings in (("nuts", {"num_samples": 5, "warmup_steps": 5, "num_chains": 1}),
                                ("svi", {"steps": 5})):
        with pytest.raises(PyrozooError, match=rf"expected a number between 1e-15 and 1e1[25] in float32, got .* for "
                                               rf"--inference {inference} \(it squares"):
            fit(ds, inference, **settings)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"width": 3.0}, r"^width: expected a number >= 8 \(the cut-off, in posterior sds: less loses mass\), got 3.0$"),
    ({"width": 1e-3}, r"^width: expected a number >= 8"),
    ({"grid": 5000}, r"^grid: expected an integer in \[3, 768\] \(Gauss-Legendre nodes per piece to start from\), "
                     r"got 5000$"),
])
def test_quadrature_refuses_a_width_that_cuts_mass_and_a_grid_past_its_node_cap(kwargs, match):
    """Review: width=3 returned mu's sd 4.5% low and width=1e-3 65% low, with no error (the node doubling cannot see
    mass cut off beyond the range); grid=5000 took 14 s for a first order the doubling then dropped to 768. Both are
    refused by name; the smallest width allowed and the largest grid still agree with the default."""
    x = np.random.default_rng(0).normal(size=3)
    with pytest.raises(PyrozooError, match=match):
        posterior_moments_quadrature(x, **kwargs)
    ref = posterior_moments_quadrature(x)
    for got in (posterior_moments_quadrature(x, width=8.0), posterior_moments_quadrature(x, grid=768)):
        for name in ("mu", "beta"):
            assert got[name][0] == pytest.approx(ref[name][0], abs=1e-8 * ref[name][1])
            assert got[name][1] == pytest.approx(ref[name][1], rel=1e-8)


def _nuts_starts(monkeypatch, model, inference, seed, options):
    """The unconstrained starts each chain's kernel set up with (3 chains)."""
    from pyrozoo.inference import mcmc
    from pyrozoo.runner import run_model

    seen = []
    cls = mcmc.KERNELS[inference]
    orig = cls.setup

    def setup(self, *args, **kwargs):
        orig(self, *args, **kwargs)
        seen.append({n: v.detach().clone() for n, v in self.initial_params.items()})

    monkeypatch.setattr(cls, "setup", setup)
    config = RunConfig(model=model, inference=inference, num_samples=5, warmup_steps=5, num_chains=3, seed=seed,
                       options=options, progress=False)
    run_model(config, save=False)
    monkeypatch.setattr(cls, "setup", orig)
    return seen


@pytest.mark.parametrize("inference", ["nuts", "hmc"])
def test_nuts_and_hmc_chains_start_apart_seeded(monkeypatch, inference):
    """QA: every chain started at the data's moments (mu 0.550486, log beta -1.517783 for all three), so R-hat could
    not reveal a mode that all chains miss. Chain 0 still starts there; the others at seeded overdispersed points
    (3 posterior-sd estimates on the unconstrained scale): the same seed gives the same starts, another seed others."""
    starts = _nuts_starts(monkeypatch, "normal-gamma", inference, 0, {"n": 30})
    config = RunConfig(model="normal-gamma", inference=inference, num_chains=3, options={"n": 30})
    x = registry.get("normal-gamma").load_data(config).observed["x"]
    assert len(starts) == 3
    torch.testing.assert_close(starts[0]["mu"], x.mean())  # chain 0: the data's moments, as before
    keys = [(round(float(s["mu"]), 9), round(float(s["beta"]), 9)) for s in starts]
    assert len(set(keys)) == 3
    again = _nuts_starts(monkeypatch, "normal-gamma", inference, 0, {"n": 30})
    assert [(round(float(s["mu"]), 9), round(float(s["beta"]), 9)) for s in again] == keys
    other = _nuts_starts(monkeypatch, "normal-gamma", inference, 1, {"n": 30})  # other data too: compare offsets
    assert float(other[1]["mu"] - other[0]["mu"]) != pytest.approx(float(starts[1]["mu"] - starts[0]["mu"]))
