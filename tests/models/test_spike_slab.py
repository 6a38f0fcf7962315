"""Spike-and-slab regression: exactness against the 2^p enumeration, EM fixed points, estimator API, bad input.

Tolerances: MCMC inclusion probabilities are Rao-Blackwellized averages; their Monte Carlo standard error is taken
from ArviZ (``mcse`` of the per-draw conditional probabilities, which accounts for autocorrelation) and the test
allows 4 MCSE plus 0.01 (discretization of the finite chains / round-off). SVI is an approximation: its inclusion
probabilities must agree within 0.15 (a Gaussian q(w) cannot hold a weak coefficient's spike/slab bimodality), a
tolerance stated by the method, not Monte Carlo.
"""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pytest
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.models.spike_slab import (
    SpikeSlabRegression,
    gibbs_result,
    selection_metrics,
    simulate_emvs_design,
    simulate_equicorrelated_design,
    spike_slab_model,
)
from pyrozoo.models.spike_slab_em import (
    emvs_e_step,
    emvs_m_step,
    fit_emvs,
    fit_hard_em,
    hard_e_step,
    hard_m_step,
    ridge_inverse,
    ridge_inverse_diag,
    ridge_solve,
)
from pyrozoo.models.spike_slab_exact import all_patterns, exact_posterior
from pyrozoo.models.spike_slab_prior import SpikeSlabPrior, as_prior, standardize

PRIOR = as_prior(spike_var=0.01, slab_var=10.0, a0=1.0, b0=1.0, nu=1.0, lam=1.0)


@pytest.fixture(scope="module")
def small():
    """n = 60, p = 6, equicorrelated (rho = 0.5), signals 0.5, 0.75, 1 on the first three features."""
    X, y, w = simulate_equicorrelated_design(1, n=60, p=6, num_signals=3)
    return standardize(X, y), w


def _mcse_tolerance(draws: np.ndarray) -> np.ndarray:
    """4 x ArviZ MCSE of the mean per feature (draws shaped (chain, draw, p)) + 0.01."""
    ds = az.convert_to_dataset({"q": draws})
    return 4 * az.mcse(ds)["q"].values + 0.01


# ----------------------------------------------------------------------------------------------- exact posterior
def test_exact_matches_brute_force_marginal_likelihood(small):
    """The closed-form marginal likelihood equals log N(y; 0, sigma^2 (I + X D X^T)) integrated over sigma^2 by
    quadrature (independent reference: no Woodbury or determinant lemma) for a few patterns."""
    data, _ = small
    ex = exact_posterior(data, PRIOR)
    X, y, n = data.X, data.y, data.n
    log_s2 = torch.linspace(-8, 6, 20001, dtype=torch.float64)
    for code in (0, 5, 63):
        g = ex["patterns"][code]
        C = torch.eye(n, dtype=torch.float64) + (X * PRIOR.variances(g)) @ X.T
        Lc = torch.linalg.cholesky(C)
        quad = (y @ torch.cholesky_solve(y[:, None], Lc)[:, 0])
        logdet = 2 * Lc.diagonal().log().sum()
        s2 = log_s2.exp()
        ig = torch.distributions.InverseGamma(torch.tensor(0.5), torch.tensor(0.5))
        integrand = (-0.5 * n * torch.log(2 * math.pi * s2) - 0.5 * logdet - 0.5 * quad / s2
                     + ig.log_prob(s2).double() + log_s2)  # + log-Jacobian of s2 = exp(log s2)
        ref = torch.logsumexp(integrand, 0) + math.log(float(log_s2[1] - log_s2[0]))
        assert float(ex["log_marginal"][code]) == pytest.approx(float(ref), abs=1e-4)


def test_exact_posterior_is_normalized_and_finds_signals(small):
    data, w = small
    ex = exact_posterior(data, PRIOR)
    assert float(ex["post"].sum()) == pytest.approx(1.0, abs=1e-12)
    assert all_patterns(3).tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1],
                                        [0, 1, 1], [1, 1, 1]]
    assert (ex["inclusion"][w != 0] > 0.5).all() and (ex["inclusion"][w == 0] < 0.5).all()


# ------------------------------------------------------------------------------------------------------- Gibbs
def test_gibbs_matches_exact_inclusion_and_moments(small):
    data, _ = small
    ex = exact_posterior(data, PRIOR)
    res = gibbs_result(data, PRIOR, num_samples=1000, warmup_steps=100, num_chains=8, seed=3)
    q = res.posterior["inclusion_prob"]
    est = q.reshape(-1, data.p).mean(0)
    tol = _mcse_tolerance(q)
    assert np.all(np.abs(est - ex["inclusion"].numpy()) < tol), (est, ex["inclusion"], tol)
    w = res.posterior["w"]
    assert np.all(np.abs(w.reshape(-1, data.p).mean(0) - ex["w_mean"].numpy()) < _mcse_tolerance(w))
    s2 = res.posterior["sigma2"][..., None]
    assert abs(s2.mean() - float(ex["sigma2_mean"])) < _mcse_tolerance(s2)[0]
    # the recorded 0/1 gamma draws agree with the Rao-Blackwellized estimate too
    g = res.posterior["gamma"]
    assert np.all(np.abs(g.reshape(-1, data.p).mean(0) - ex["inclusion"].numpy()) < _mcse_tolerance(g))


def test_gibbs_independent_prior_runs_and_selects(small):
    data, w = small
    prior = as_prior(PRIOR, conjugate=False)
    res = gibbs_result(data, prior, num_samples=200, warmup_steps=50, num_chains=4, seed=0)
    probs = res.draws("inclusion_prob").mean(0)
    assert selection_metrics(probs > 0.5, w != 0)["f1"] == 1.0


# ---------------------------------------------------------------------------------------------------------- EM
def test_emvs_fixed_point_satisfies_its_updates(small):
    data, _ = small
    fit = fit_emvs(data, PRIOR, tol=1e-12, max_iter=5000)
    assert fit.converged
    pstar, d_star = emvs_e_step(fit.w, fit.sigma2, fit.theta, PRIOR, fit.spike_var)
    w, s2, th = emvs_m_step(pstar, d_star, fit.sigma2, data, PRIOR)
    assert torch.allclose(w, fit.w, atol=1e-8)
    assert s2 == pytest.approx(fit.sigma2, rel=1e-8) and th == pytest.approx(fit.theta, rel=1e-8)
    # stationarity of the M-step objective in w: X^T (y - X w) = D* w
    assert torch.allclose(data.X.T @ (data.y - data.X @ fit.w), d_star * fit.w, atol=1e-7)


def test_hard_em_fixed_point_satisfies_its_updates(small):
    data, w_true = small
    fit = fit_hard_em(data, PRIOR)
    assert fit.converged
    ex = hard_e_step(fit.gamma, fit.sigma2, data, PRIOR)
    new = hard_m_step(ex, data, PRIOR, fit.theta)
    assert torch.equal(new["gamma"], fit.gamma)
    assert new["sigma2"] == pytest.approx(fit.sigma2, rel=1e-6) and new["theta"] == pytest.approx(fit.theta)
    assert fit.gamma[w_true != 0].bool().all()  # the homework's EM keeps every signal (it may keep a null too)


def test_woodbury_matches_direct_solves():
    """p > n: the Woodbury path equals the dense p x p computation."""
    X, y, _ = simulate_emvs_design(0, n=30, p=80)
    data = standardize(X, y)
    pen = torch.rand(80, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 10 + 0.1
    A = data.XtX + torch.diag(pen)
    direct = torch.linalg.solve(A, data.Xty)
    assert torch.allclose(ridge_solve(data, pen), direct, atol=1e-8)
    assert torch.allclose(ridge_inverse(data, pen), torch.linalg.inv(A), atol=1e-8)
    assert torch.allclose(ridge_inverse_diag(data, pen), torch.linalg.inv(A).diagonal(), atol=1e-8)
    A2 = data.XtX / 2.0 + torch.diag(pen)
    assert torch.allclose(ridge_solve(data, pen, scale=2.0), torch.linalg.solve(A2, data.Xty / 2.0), atol=1e-8)


def test_emvs_recovers_support_on_emvs_design():
    X, y, w = simulate_emvs_design(0, n=100, p=300)
    est = SpikeSlabRegression(inference="em").fit(X, y)
    assert selection_metrics(est.selected_, w != 0)["f1"] == 1.0
    assert np.abs(est.coef_[:3] - w[:3]).max() < 0.5


# -------------------------------------------------------------------------------------------- estimator / API
@pytest.mark.parametrize("inference", ["em", "gibbs"])
def test_estimator_api(inference):
    X, y, w = simulate_equicorrelated_design(2, n=120, p=12)
    Xs = X * np.arange(1, 13) + 3.0  # original scale differs from the standardized one
    est = SpikeSlabRegression(inference=inference, seed=0, num_samples=200, warmup_steps=50).fit(Xs, y)
    p = 12
    assert est.coef_.shape == (p,) and est.inclusion_probabilities_.shape == (p,)
    assert est.coef_cov_.shape == (p, p) and np.allclose(est.coef_cov_, est.coef_cov_.T)
    assert isinstance(est.intercept_, float) and est.sigma2_ > 0
    assert est.predict(Xs[:5]).shape == (5,)
    np.testing.assert_allclose(est.predict(Xs), est.intercept_ + Xs @ est.coef_)
    assert np.abs(est.coef_ * np.arange(1, 13) - w).max() < 0.4
    draws = est.sample_coef(150)
    assert draws.shape == (150, p)
    # the draws' mean is within 5 posterior sds / sqrt(150) of coef_ (MCMC draws are a subsample of the chains)
    assert np.all(np.abs(draws.mean(0) - est.coef_) < 5 * np.sqrt(np.diag(est.coef_cov_)) / np.sqrt(150) + 1e-6)
    idata = est.result_.to_inference_data()
    assert idata.log_likelihood["y"].shape[-1] == 120
    assert est.score(Xs, y) > 0.5
    # torch input gives the same fit
    est2 = SpikeSlabRegression(inference=inference, seed=0, num_samples=200, warmup_steps=50).fit(
        torch.as_tensor(Xs), torch.as_tensor(y))
    np.testing.assert_allclose(est2.coef_, est.coef_, rtol=1e-6, atol=1e-8)


def test_em_result_log_likelihood_and_plot(tmp_path):
    from pyrozoo.models.spike_slab import plot_inclusion_probabilities

    X, y, w = simulate_equicorrelated_design(0, n=80, p=10)
    est = SpikeSlabRegression(inference="em", num_samples=50).fit(X, y)
    idata = est.result_.to_inference_data()
    assert idata.log_likelihood["y"].shape == (1, 50, 80)
    assert "inclusion_prob" in idata.posterior
    ax = plot_inclusion_probabilities(est.inclusion_probabilities_, truth=w != 0)
    ax.figure.savefig(tmp_path / "incl.png")
    assert (tmp_path / "incl.png").stat().st_size > 0


def test_model_prior_predictive_shapes():
    import pyro.poutine as poutine

    X = torch.randn(7, 3, dtype=torch.float64)
    tr = poutine.trace(spike_slab_model).get_trace(X)
    assert tr.nodes["y"]["value"].shape == (7,) and tr.nodes["w"]["value"].shape == (3,)


# ------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "X, y, match",
    [
        (np.c_[np.ones(10), np.arange(10.0)], np.arange(10.0), "constant"),
        (np.c_[np.r_[np.nan, np.arange(9.0)], np.arange(10.0)], np.arange(10.0), "NaN"),
        (np.empty((10, 0)), np.arange(10.0), "p = 0"),
        (np.random.default_rng(0).normal(size=(10, 2)), np.arange(9.0), "length n = 10"),
        (np.random.default_rng(0).normal(size=(10, 2)), np.r_[np.inf, np.arange(9.0)], "y: expected finite"),
        (np.arange(10.0), np.arange(10.0), "2-D"),
    ],
)
def test_bad_data_raise_clear_errors(X, y, match):
    with pytest.raises(PyrozooError, match=match):
        SpikeSlabRegression().fit(X, y)


def test_bad_prior_raises_before_fitting():
    with pytest.raises(PyrozooError, match="spike_var"):
        SpikeSlabRegression(spike_var=1.0, slab_var=1.0)
    with pytest.raises(PyrozooError, match="spike_var"):
        SpikeSlabPrior(spike_var=5.0, slab_var=1.0)
    with pytest.raises(PyrozooError, match="slab_var"):
        SpikeSlabRegression(slab_var=-1.0)
    with pytest.raises(PyrozooError, match="inference"):
        SpikeSlabRegression(inference="vb")
    with pytest.raises(PyrozooError, match="unknown option"):
        SpikeSlabRegression(spike_variance=0.1)
    with pytest.raises(PyrozooError, match="fit"):
        SpikeSlabRegression().predict(np.zeros((2, 2)))


# ------------------------------------------------------------------------------------------ SVI and NUTS (slow)
@pytest.mark.slow
def test_nuts_enumerated_matches_exact_inclusion(small):
    from pyrozoo.models.spike_slab_pyro import nuts_result

    data, _ = small
    ex = exact_posterior(data, PRIOR)
    res = nuts_result(data, PRIOR, num_samples=300, warmup_steps=150, num_chains=1, seed=1)
    q = res.posterior["inclusion_prob"]
    tol = _mcse_tolerance(q)
    assert np.all(np.abs(q.reshape(-1, data.p).mean(0) - ex["inclusion"].numpy()) < tol)
    w = res.posterior["w"]
    assert np.all(np.abs(w.reshape(-1, data.p).mean(0) - ex["w_mean"].numpy()) < _mcse_tolerance(w))


@pytest.mark.slow
def test_svi_enumerated_close_to_exact_inclusion(small):
    """Gaussian q(w) cannot hold the spike/slab bimodality of a weak coefficient: stated tolerance 0.15."""
    from pyrozoo.models.spike_slab_pyro import svi_result

    data, _ = small
    ex = exact_posterior(data, PRIOR)
    res = svi_result(data, PRIOR, steps=600, num_samples=400, seed=0)
    probs = res.draws("inclusion_prob").mean(0)
    assert np.abs(probs - ex["inclusion"].numpy()).max() < 0.15
    assert np.abs(res.draws("w").mean(0) - ex["w_mean"].numpy()).max() < 0.1
    loss = res.fit_stats["loss"]
    assert np.mean(loss[-50:]) <= np.mean(loss[:50]) + 1.0


def test_score_rejects_y_of_the_wrong_length():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    y = X[:, 0] + 0.1 * rng.standard_normal(40)
    est = SpikeSlabRegression(inference="em", seed=0).fit(X, y)
    assert est.score(X, y) > 0.9
    with pytest.raises(PyrozooError, match="y: expected 40 values like the rows of X, got 5"):
        est.score(X, y[:5])
