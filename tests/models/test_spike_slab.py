"""Spike-and-slab regression: exactness against the 2^p enumeration, EM fixed points, estimator API, bad input.

Tolerances: MCMC inclusion probabilities are Rao-Blackwellized averages; their Monte Carlo standard error is taken
from ArviZ (``mcse`` of the per-draw conditional probabilities, which accounts for autocorrelation) and the test
allows 4 MCSE plus 0.01 (discretization of the finite chains / round-off). SVI is an approximation: its inclusion
probabilities must agree within 0.16 (a Gaussian q(w) cannot hold a weak coefficient's spike/slab bimodality), a
tolerance stated by the method, not Monte Carlo.
"""

from __future__ import annotations

import dataclasses
import math

import arviz as az
import numpy as np
import pytest
import torch
from scipy import optimize, stats

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
    log_g,
    ridge_inverse,
    ridge_inverse_diag,
    ridge_solve,
)
from pyrozoo.models.spike_slab_exact import all_patterns, exact_posterior
from pyrozoo.models.spike_slab_gibbs import gibbs_data
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
@pytest.mark.parametrize("centred", [True, False])
def test_exact_matches_brute_force_marginal_likelihood(small, centred):
    """The closed-form marginal likelihood equals log N(y; 0, sigma^2 (I + X D X^T)) integrated over sigma^2 by
    quadrature (independent reference: no Woodbury or determinant lemma) for a few patterns. Centred y (as
    standardize records it) is the intercept integrated out: the reference is then the density of Q^T y, Q an
    orthonormal basis of the complement of the constant vector (n - 1 coordinates, X replaced by Q^T X); y taken
    as given (centred=False) uses all n coordinates."""
    data, _ = small
    data = data if centred else dataclasses.replace(data, centred=False)
    ex = exact_posterior(data, PRIOR)
    X, y, n = data.X, data.y, data.n
    if centred:
        Q = torch.linalg.qr(torch.cat([torch.ones(n, 1, dtype=X.dtype), torch.eye(n, dtype=X.dtype)], 1))[0][:, 1:n]
        X, y, n = Q.T @ X, Q.T @ y, n - 1
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


@pytest.mark.parametrize("conjugate", [True, False])
def test_gibbs_lp_is_the_models_log_joint_at_each_draw(small, conjugate):
    """The ``lp`` sample stat (as normal-gamma's Gibbs writes it) equals the Pyro model's log density at the
    recorded draws: every site (sigma2, theta, gamma, w, y, and for centred y the intercept's factor) scored by a
    Pyro trace with the draw substituted."""
    import pyro
    from pyro import poutine

    data, _ = small
    prior = as_prior(PRIOR, conjugate=conjugate)
    res = gibbs_result(data, prior, num_samples=5, warmup_steps=5, num_chains=2, seed=1)
    lp = res.sample_stats["lp"]
    assert lp.shape == (2, 5) and np.isfinite(lp).all()
    kwargs = {k: getattr(prior, k) for k in ("spike_var", "slab_var", "a0", "b0", "nu", "lam", "conjugate")}
    kwargs["centred"] = data.centred  # standardize centred y: the model with the intercept integrated out
    for c, s in ((0, 0), (1, 4)):
        values = {k: torch.as_tensor(res.posterior[k][c, s], dtype=torch.float64) for k in ("sigma2", "theta", "w")}
        values["gamma"] = torch.as_tensor(res.posterior["gamma"][c, s], dtype=torch.float64)
        with pyro.poutine.block():
            trace = poutine.trace(poutine.condition(spike_slab_model, data=values)).get_trace(data.X, data.y, **kwargs)
        assert lp[c, s] == pytest.approx(float(trace.log_prob_sum()), rel=1e-10, abs=1e-8)


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


# M-steps against a numerical maximization of the objective they claim to maximize (tiny problem, n = 20, p = 3).
# Prior with a0, b0 != 1 and nu, lam != 1 so that every hyperparameter enters the updates.
M_PRIOR = as_prior(spike_var=0.05, slab_var=5.0, a0=2.0, b0=3.0, nu=3.0, lam=0.5)


def _tiny_standardized():
    rng = np.random.default_rng(11)
    X = rng.normal(size=(20, 3))
    y = X @ np.array([1.0, 0.05, 0.4]) + 0.7 * rng.normal(size=20)
    return standardize(X, y)


def _maximize(objective, x0):
    """argmax of a torch objective by BFGS with autograd gradients (float64, tight gradient tolerance)."""
    def neg(u):
        ut = torch.tensor(u, dtype=torch.float64, requires_grad=True)
        val = -objective(ut)
        (g,) = torch.autograd.grad(val, ut)
        return float(val.detach()), g.numpy()

    res = optimize.minimize(neg, np.asarray(x0, dtype=float), jac=True, method="BFGS", options={"gtol": 1e-11})
    assert np.abs(res.jac).max() < 1e-7, res
    return res.x


@pytest.mark.parametrize("conjugate", [True, False])
def test_emvs_m_step_maximizes_the_expected_complete_data_log_posterior(conjugate):
    """Q(w, s, theta) = log N(y; X w, s I) + sum_d E_{p*}[log N(w_d; 0, c v_gamma_d)] + log IG(s; nu/2, nu lam/2)
    + sum_d E_{p*}[log Bern(gamma_d; theta)] + log Beta(theta; a0 + 1, b0 + 1), with c = s (conjugate) or 1
    (independent), written here with torch.distributions and maximized with scipy BFGS; p* from an E-step computed
    here with Normal densities. Conjugate: the joint maximizer; independent (ECM): w at s = sigma^2_old, then s at
    that w. The M-step's w, sigma^2 and theta must equal the numerical optimum at rtol 1e-5. theta's prior in the
    M-step is Beta(a0 + 1, b0 + 1), so that its maximizer is E[theta | gamma = p*] under Beta(a0, b0), which stays
    off 0 and 1 (under Beta(1, 1) the maximizer mean(p*) went to 1, then 0, and EMVS compared only the full and the
    empty model)."""
    data = _tiny_standardized()
    prior = as_prior(M_PRIOR, conjugate=conjugate)
    X, y = data.X, data.y

    def f64(value):
        return torch.tensor(value, dtype=torch.float64)

    v0, v1 = f64(prior.spike_var), f64(prior.slab_var)
    w_old, s_old, theta_old = f64([0.8, 0.03, 0.2]), 0.6, 0.4
    c_old = f64(s_old if conjugate else 1.0)
    Nrm = torch.distributions.Normal
    slab = theta_old * Nrm(f64(0.0), (c_old * v1).sqrt()).log_prob(w_old).exp()
    spike = (1 - theta_old) * Nrm(f64(0.0), (c_old * v0).sqrt()).log_prob(w_old).exp()
    pstar = slab / (slab + spike)
    assert 0.01 < float(pstar.min()) and float(pstar.max()) < 0.9999  # a genuinely soft E-step
    d_star = pstar / v1 + (1 - pstar) / v0

    def Q(w, s, theta):
        c = s if conjugate else torch.ones_like(s)
        prior_w = (pstar * Nrm(f64(0.0), (c * v1).sqrt()).log_prob(w)
                   + (1 - pstar) * Nrm(f64(0.0), (c * v0).sqrt()).log_prob(w))
        return (Nrm(X @ w, s.sqrt()).log_prob(y).sum() + prior_w.sum()
                + torch.distributions.InverseGamma(f64(prior.nu / 2), f64(prior.nu * prior.lam / 2)).log_prob(s)
                + (pstar * theta.log() + (1 - pstar) * torch.log1p(-theta)).sum()
                + torch.distributions.Beta(f64(prior.a0 + 1), f64(prior.b0 + 1)).log_prob(theta))

    def unpack(u):
        return u[:3], u[3].exp(), torch.sigmoid(u[4])

    if conjugate:
        opt = _maximize(lambda u: Q(*unpack(u)), [0.0] * 5)
        w_opt, s_opt, theta_opt = opt[:3], math.exp(opt[3]), 1 / (1 + math.exp(-opt[4]))
    else:
        w_opt = _maximize(lambda u: Q(u, f64(s_old), f64(0.5)), [0.0] * 3)
        s_opt = math.exp(_maximize(lambda u: Q(f64(w_opt), u[0].exp(), f64(0.5)), [0.0])[0])
        theta_opt = 1 / (1 + math.exp(-_maximize(lambda u: Q(f64(w_opt), f64(s_opt), torch.sigmoid(u[0])), [0.0])[0]))
    w, sigma2, theta = emvs_m_step(pstar, d_star, s_old, data, prior)
    np.testing.assert_allclose(w.numpy(), w_opt, rtol=1e-5)
    assert sigma2 == pytest.approx(s_opt, rel=1e-5)
    assert theta == pytest.approx(theta_opt, rel=1e-5)


def test_hard_m_step_maximizes_the_expected_complete_data_log_posterior():
    """The hard-gamma ECM step. E-step computed here with numpy: w | gamma_old, s_old ~ N(mu, S), S = s_old A^{-1},
    A = X^T X + K^{-1}. Q(s, gamma, theta) = E_w[log N(y; X w, s I)] + sum_d E_w[log N(w_d; 0, s v_gamma_d)]
    + log IG(s; nu/2, nu lam/2) + sum_d log Bern(gamma_d; theta) + log Beta(theta; a0, b0), the expectations from
    the full S (E|y - X w|^2 = |y - X mu|^2 + tr(X S X^T), E[w_d^2] = mu_d^2 + S_dd). In the M-step's order:
    sigma^2 maximizes Q at (gamma_old, theta_old) (scipy bounded scalar search on log s), gamma at (sigma^2_new,
    theta_old) (all 2^3 patterns enumerated), theta at gamma_new (scipy scalar search). sigma^2 and theta must
    match at rtol 1e-5, gamma exactly; the E-step's mean and E[w_d^2] must match the numpy ones at rtol 1e-10."""
    data = _tiny_standardized()
    prior = M_PRIOR
    X, y = data.X.numpy(), data.y.numpy()
    n, p = X.shape
    v = np.array([prior.spike_var, prior.slab_var])
    gamma_old, s_old, theta_old = np.array([1.0, 0.0, 1.0]), 0.6, 0.4
    K = v[gamma_old.astype(int)]
    A = X.T @ X + np.diag(1.0 / K)
    mu = np.linalg.solve(A, X.T @ y)
    S = s_old * np.linalg.inv(A)
    e_rss = ((y - X @ mu) ** 2).sum() + np.trace(X @ S @ X.T)
    ew2 = mu**2 + np.diag(S)

    def Q(s, gamma, theta):
        vg = v[np.asarray(gamma).astype(int)]
        return (-0.5 * n * np.log(2 * np.pi * s) - e_rss / (2 * s)
                + (-0.5 * np.log(2 * np.pi * s * vg) - ew2 / (2 * s * vg)).sum()
                + stats.invgamma.logpdf(s, prior.nu / 2, scale=prior.nu * prior.lam / 2)
                + stats.bernoulli.logpmf(gamma, theta).sum() + stats.beta.logpdf(theta, prior.a0, prior.b0))

    def argmax_scalar(f, lo, hi):
        return optimize.minimize_scalar(lambda u: -f(u), bounds=(lo, hi), method="bounded",
                                        options={"xatol": 1e-12}).x

    s_opt = math.exp(argmax_scalar(lambda u: Q(math.exp(u), gamma_old, theta_old), -10.0, 5.0))
    patterns = [np.array([(c >> d) & 1 for d in range(p)], dtype=float) for c in range(2**p)]
    gamma_opt = max(patterns, key=lambda g: Q(s_opt, g, theta_old))
    theta_opt = 1 / (1 + math.exp(-argmax_scalar(lambda u: Q(s_opt, gamma_opt, 1 / (1 + math.exp(-u))), -20, 20)))

    ex = hard_e_step(torch.tensor(gamma_old), s_old, data, prior)
    np.testing.assert_allclose(ex["mu"].numpy(), mu, rtol=1e-10)
    np.testing.assert_allclose(ex["ew2"].numpy(), ew2, rtol=1e-10)
    new = hard_m_step(ex, data, prior, theta_old)
    assert new["sigma2"] == pytest.approx(s_opt, rel=1e-5)
    np.testing.assert_array_equal(new["gamma"].numpy(), gamma_opt)
    assert not np.array_equal(gamma_opt, gamma_old)  # the gamma step is not a no-op here
    assert new["theta"] == pytest.approx(theta_opt, rel=1e-5)


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


def test_a_dataframe_s_constant_or_infinite_column_is_named():
    """SpikeSlabRegression().fit(X.assign(c=1.0), y) said "column(s) [2] are constant", PLCE "['c']"."""
    import pandas as pd

    rng = np.random.default_rng(0)
    X, y = pd.DataFrame({"a": rng.normal(size=10), "b": rng.normal(size=10)}), np.arange(10.0)
    with pytest.raises(PyrozooError, match=r"^X: column\(s\) \['c'\] are constant"):
        SpikeSlabRegression().fit(X.assign(c=1.0), y)
    with pytest.raises(PyrozooError, match=r"^X: expected finite values, found 1 non-finite \(inf at row 4, "
                                           r"column 'b'\)"):
        SpikeSlabRegression().fit(X.assign(b=np.where(np.arange(10) == 4, np.inf, X["b"])), y)


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
    # NUTS samples the Pyro model with centred=data.centred (the intercept's factor: n - 1 degrees of freedom, as
    # the exact posterior of centred data, docs/spike-slab.md)
    assert data.centred
    ex = exact_posterior(data, PRIOR)
    res = nuts_result(data, PRIOR, num_samples=300, warmup_steps=150, num_chains=1, seed=1)
    q = res.posterior["inclusion_prob"]
    pi = ex["inclusion"].numpy()
    # q_j = P(gamma_j = 1 | w, sigma^2, y) is a Rao-Blackwellization of gamma_j ~ Bernoulli(pi_j), so its posterior
    # variance is at most pi_j (1 - pi_j). A chain that visits a rare mode (gamma_2 = 0, pi_2 = 0.95) only once or
    # twice in 300 draws underestimates the sample variance, and ArviZ's MCSE with it (0.006 where the run on
    # another CPU missed by 0.043); the bound keeps the tolerance honest for such features.
    ess = az.ess(az.convert_to_dataset({"q": q}))["q"].values
    tol = np.maximum(_mcse_tolerance(q), 4 * np.sqrt(pi * (1 - pi) / ess) + 0.01)
    assert np.all(np.abs(q.reshape(-1, data.p).mean(0) - pi) < tol)
    w = res.posterior["w"]
    assert np.all(np.abs(w.reshape(-1, data.p).mean(0) - ex["w_mean"].numpy()) < _mcse_tolerance(w))


@pytest.mark.slow
def test_svi_enumerated_close_to_exact_inclusion(small):
    """Gaussian q(w) cannot hold the spike/slab bimodality of a weak coefficient: stated tolerance 0.16. SVI
    over-states the weak x0's inclusion: against the exact n - 1 posterior, by 0.150, 0.123, 0.131, 0.145 at seeds
    0-3 (before SVI fitted centred y with the intercept's factor, by 0.145 at seed 0 against the n-factor exact
    posterior, under the 0.15 used then)."""
    from pyrozoo.models.spike_slab_pyro import svi_result

    data, _ = small
    ex = exact_posterior(data, PRIOR)  # SVI fits the Pyro model with centred=True (n - 1, as NUTS and the exact)
    res = svi_result(data, PRIOR, steps=600, num_samples=400, seed=0)
    probs = res.draws("inclusion_prob").mean(0)
    assert np.abs(probs - ex["inclusion"].numpy()).max() < 0.16
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


@pytest.mark.parametrize("conjugate", [True, False])
def test_sigma2_conditional_matches_its_inverse_gamma(conjugate):
    """The sigma^2 draw of one Gibbs sweep, on a fixed state (gamma, w) repeated over 10^6 vectorized chains, against
    the module docstring's conditional computed here: conjugate InvGamma((m + nu) / 2, (nu lam + y^T y - b^T A^-1 b)
    / 2), A = X^T X + diag(1 / v_gamma); independent InvGamma((m + nu) / 2, (nu lam + |y - X w|^2) / 2), m = n - 1
    since standardize centred y (the intercept integrated out). Reference: scipy.stats.invgamma mean and variance;
    rtol 1e-2 (n = 20, shape 11: MC sd of the mean ~3e-4 relative, of the variance ~2.5e-3 relative; shape
    (n + nu) / 2, the sampler before the fix, moves the mean by 5%)."""
    from pyrozoo.models.spike_slab_gibbs import _draw_chol, _draw_sigma2_collapsed, _draw_sigma2_given_w

    data = _tiny_standardized()
    prior = as_prior(spike_var=0.05, slab_var=5.0, a0=2.0, b0=3.0, nu=3.0, lam=0.5, conjugate=conjugate)
    d = gibbs_data(data, prior)
    X, y = data.X.numpy(), data.y.numpy()
    gamma = np.array([1.0, 0.0, 1.0])
    w = np.array([0.9, 0.02, 0.3])
    sigma2_old = 0.6
    C = 1_000_000
    torch.manual_seed(0)
    f64 = {"dtype": torch.float64}
    state = {"gamma": torch.tensor(gamma).expand(C, -1), "w": torch.tensor(w).expand(C, -1),
             "sigma2": torch.full((C,), sigma2_old, **f64), "theta": torch.full((C,), 0.4, **f64)}
    state["_chol"] = _draw_chol(state, d)
    draw = _draw_sigma2_collapsed if conjugate else _draw_sigma2_given_w
    s2 = draw(state, d).numpy()
    assert data.centred
    m = X.shape[0] - 1  # y centred: n - 1 degrees of freedom
    v = prior.spike_var + gamma * (prior.slab_var - prior.spike_var)
    if conjugate:
        b = X.T @ y
        S = y @ y - b @ np.linalg.solve(X.T @ X + np.diag(1.0 / v), b)
    else:
        S = np.sum((y - X @ w) ** 2)
    ref = stats.invgamma(0.5 * (m + prior.nu), scale=0.5 * (prior.nu * prior.lam + S))
    assert s2.mean() == pytest.approx(ref.mean(), rel=1e-2)
    assert s2.var() == pytest.approx(ref.var(), rel=1e-2)


def test_constructor_and_design_settings_are_checked_before_any_fit():
    """num_samples=100.0 passed the check but reached torch as a float after the EM fit; em_select="no" became True;
    rho outside the design's correlation range failed in math.sqrt."""
    from pyrozoo.models.spike_slab import SpikeSlabRegression, simulate_spike_slab

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    reg = SpikeSlabRegression(num_samples=30.0).fit(X, X[:, 0] + 0.1 * rng.normal(size=40))
    assert reg.num_samples == 30 and type(reg.num_samples) is int
    for kw, message in (({"em_select": "no"}, "em_select: expected True or False"),
                        ({"progress": 1}, "progress: expected True or False")):
        with pytest.raises(PyrozooError, match=message):
            SpikeSlabRegression(**kw)
    for design, rho in (("equicorrelated", 1.5), ("equicorrelated", -0.2), ("emvs", 1.0), ("emvs", -1)):
        with pytest.raises(PyrozooError, match=f"rho: expected a correlation in .* for the {design} design"):
            simulate_spike_slab(0, design=design, rho=rho, n=20, p=5)
    assert simulate_spike_slab(0, design="emvs", rho=-0.5, n=20, p=5).inputs["X"].shape == (20, 5)


def test_stored_draws_suit_arviz_plots(small):
    """An active feature's sigmoid(log-odds) sits a few ulps below 1 in some draws and at 1 in others; ArviZ's density
    plots fail on such a spread ("Too many bins"), so values within 1e-12 of 1 are stored as 1, and the 0/1 indicators
    as integers (plotted as discrete)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data, w = small
    res = gibbs_result(data, PRIOR, num_samples=60, warmup_steps=20, num_chains=2, seed=0)
    q = res.posterior["inclusion_prob"]
    assert not np.any((q > 1 - 1e-12) & (q < 1)) and np.any(q == 1.0)
    assert res.posterior["gamma"].dtype == np.int64 and set(np.unique(res.posterior["gamma"])) <= {0, 1}
    idata = res.to_inference_data()
    az.plot_trace(idata, var_names=["inclusion_prob", "gamma"])
    plt.close("all")


# ------------------------------------------------------------------------------ QA design: unequal column scales
def _scaled_design(signal: float = 1.0, seed: int = 0):
    """n = 100, p = 6, w = signal * (2, -1.5, 0, 0, 1, 0), column scales (1, 3, .5, 1, 2, 1), unit noise."""
    rng = np.random.default_rng(seed)
    w = signal * np.array([2.0, -1.5, 0.0, 0.0, 1.0, 0.0])
    X = rng.standard_normal((100, 6)) * np.array([1.0, 3.0, 0.5, 1.0, 2.0, 1.0])
    return X, X @ w + rng.standard_normal(100), w


def _estimator_prior(X, y):
    """The standardized data and the prior SpikeSlabRegression uses by default (lam = the sample variance of y)."""
    data = standardize(X, y)
    return data, as_prior(PRIOR, lam=float(data.yty) / (data.n - 1))


def test_hard_em_start_is_the_all_slab_residual_variance():
    """p < n: sigma^2_0 = |y - X mu_1|^2 / (n - tr H), H = X (X^T X + I / v1)^{-1} X^T, computed here with numpy."""
    from pyrozoo.models.spike_slab_em import hard_em_start

    X, y, _ = _scaled_design()
    data, prior = _estimator_prior(X, y)
    Xs, yc = data.X.numpy(), data.y.numpy()
    H = Xs @ np.linalg.solve(Xs.T @ Xs + np.eye(6) / prior.slab_var, Xs.T)
    start = hard_em_start(data, prior)
    assert start["sigma2"] == pytest.approx(float(((yc - H @ yc) ** 2).sum()) / (100 - np.trace(H)), rel=1e-10)
    assert start["theta"] == 0.5 and torch.equal(start["gamma"], torch.ones(6, dtype=torch.float64))


def test_hard_em_selects_the_exact_median_model():
    """Started at sigma^2 = var(y), the hard EM kept all six features (E[w_d^2] of the nulls inflated, then theta = 1
    made log(1 - theta) keep them); exact inclusion of the nulls is 0.08 to 0.19."""
    X, y, w = _scaled_design()
    data, prior = _estimator_prior(X, y)
    median = (exact_posterior(data, prior)["inclusion"] > 0.5).numpy()
    assert np.array_equal(median, w != 0)  # the design is easy: the exact posterior finds the support
    est = SpikeSlabRegression(inference="em", em_variant="hard", num_samples=50).fit(X, y)
    np.testing.assert_array_equal(est.selected_, median)
    assert est.em_fit_.converged and 0 < est.em_fit_.theta < 1


def test_emvs_inclusion_probabilities_are_decisive_like_the_exact_posterior():
    """Signal x 4: every rung of the default ladder selects the true model, so all score the same log g; the tie went
    to the largest spike variance (v1 / 10), whose p* put 0.46 on each null (exact: 0.07) and 0.95 on a signal.
    EMVS's p* are P(gamma_d = 1 | the mode) under a continuous spike, not the exact marginals, so they are not held
    to the exact values; they must give the same median model and sit at least half-way from 0.5 to the exact side
    (nulls < 0.25, signals > 0.75)."""
    X, y, w = _scaled_design(signal=4.0)
    data, prior = _estimator_prior(X, y)
    exact = exact_posterior(data, prior)["inclusion"].numpy()
    assert np.all(exact[w == 0] < 0.1) and np.all(exact[w != 0] > 0.999)
    est = SpikeSlabRegression(inference="em", num_samples=50).fit(X, y)
    probs = est.inclusion_probabilities_
    np.testing.assert_array_equal(est.selected_, exact > 0.5)
    assert np.all(probs[w == 0] < 0.25) and np.all(probs[w != 0] > 0.75), probs
    # the chosen rung: the best score, and among the rungs tied with it the smallest spike variance
    path = est.em_fit_.path
    top = max(r["log_g"] for r in path)
    tied = [r["spike_var"] for r in path if r["log_g"] >= top - 1e-9 * abs(top)]
    assert len(tied) > 1 and est.em_fit_.spike_var == min(tied)


def test_select_rung_takes_the_best_score_then_the_smallest_tied_spike_variance():
    from pyrozoo.models.spike_slab_em import select_rung

    def rung(v0, score):
        return {"spike_var": v0, "log_g": score, "inclusion": torch.tensor([0.5])}

    assert select_rung([rung(0.1, -3.0), rung(0.01, -3.0), rung(1.0, -3.0)]) == 1  # not the ladder's order
    assert select_rung([rung(0.001, -5.0), rung(0.01, -3.0), rung(0.1, -3.0 + 1e-12)]) == 1
    assert select_rung([rung(0.001, -5.0), rung(0.01, -3.0), rung(0.1, -2.0)]) == 2  # a better score wins


def test_default_selection_ladder_stays_below_the_slab_variance():
    """slab_var <= 100 spike_var: the default ladder's top rungs (up to spike_var * 100) reached the slab variance and
    fit failed with 'ladder: every spike variance must be below slab_var' for a ladder the user never gave."""
    X, y, w = _scaled_design()
    est = SpikeSlabRegression(inference="em", slab_var=1.0, num_samples=20).fit(X, y)
    ladder = [r["spike_var"] for r in est.em_fit_.path if r["start"] == "ladder"]  # not the refit at the model
    assert max(ladder) < 1.0 and len(ladder) == 9  # the rung at spike_var * 100 = 1.0 is left out
    np.testing.assert_array_equal(est.selected_, w != 0)


@pytest.mark.parametrize("inference", ["em", "svi"])
def test_fitted_estimator_pickles_and_predicts_the_same(inference):
    """pickle.dumps(est) failed on the Result's predictive closure. SVI's structured guide is a closure too: it is
    left out of the pickle (the Result says so), and everything the estimator predicts with is kept."""
    import pickle

    X, y, _ = _scaled_design()
    est = SpikeSlabRegression(inference=inference, num_samples=40, steps=20, seed=1).fit(X, y)
    copy = pickle.loads(pickle.dumps(est))
    X_new = np.random.default_rng(5).standard_normal((7, 6))
    np.testing.assert_array_equal(copy.predict(X_new), est.predict(X_new))
    np.testing.assert_array_equal(copy.inclusion_probabilities_, est.inclusion_probabilities_)
    np.testing.assert_array_equal(copy.sample_coef(30), est.sample_coef(30))
    np.testing.assert_array_equal(copy.result_.to_inference_data().posterior["w"].values,
                                  est.result_.to_inference_data().posterior["w"].values)
    assert copy.result_.predictive_fn is not None


# ------------------------------------------------------------------------------------------------ scikit-learn
def test_estimator_is_a_scikit_learn_regressor():
    """is_regressor, check_is_fitted, get_params / set_params / clone failed with AttributeError __sklearn_tags__."""
    from sklearn.base import clone, is_regressor
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    est = SpikeSlabRegression("em", seed=3, num_samples=50, ladder=[1e-4, 1e-3], slab_var=5.0, lam=2.0)
    assert is_regressor(est)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    with pytest.raises(NotFittedError, match="call fit"):  # also a PyrozooError (test_bad_prior_raises_before_...)
        est.predict(np.zeros((2, 6)))
    params = est.get_params()
    defaults = SpikeSlabPrior().to_dict()
    assert {k: params[k] for k in defaults} == {**defaults, "slab_var": 5.0, "lam": 2.0}  # every prior option
    assert params["seed"] == 3 and params["ladder"] == [1e-4, 1e-3] and params["inference"] == "em"
    assert clone(est).get_params() == params
    assert SpikeSlabRegression(**params).get_params() == params
    with pytest.raises(ValueError, match="set_params: expected parameters of SpikeSlabRegression"):
        est.set_params(unknown=1)
    with pytest.raises(PyrozooError, match="spike_var"):  # set_params runs the constructor's checks
        est.set_params(spike_var=10.0)
    assert est.set_params(num_samples=30.0, a0=2.0).num_samples == 30 and type(est.num_samples) is int
    assert est.get_params()["a0"] == 2.0 and est.prior_options["a0"] == 2.0
    X, y, _ = _scaled_design()
    check_is_fitted(est.fit(X, y))


def test_cross_val_score_and_grid_search_in_a_pipeline():
    """cross_val_score on a StandardScaler pipeline equals R^2 on the same KFold splits computed by hand; GridSearchCV
    over a prior option (slab_var) scores each value as that hand computation does and refits the best."""
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, _ = _scaled_design()

    def by_hand(**prior):
        out = []
        for train, test in KFold(3).split(X):
            scaler = StandardScaler().fit(X[train])
            reg = SpikeSlabRegression("em", num_samples=20, **prior).fit(scaler.transform(X[train]), y[train])
            out.append(r2_score(y[test], reg.predict(scaler.transform(X[test]))))
        return np.array(out)

    scores = cross_val_score(make_pipeline(StandardScaler(), SpikeSlabRegression("em", num_samples=20)), X, y, cv=3)
    np.testing.assert_allclose(scores, by_hand(), rtol=1e-10)
    assert np.all(scores > 0.8)
    grid = GridSearchCV(SpikeSlabRegression("em", num_samples=20), {"slab_var": [1.0, 10.0]}, cv=KFold(3),
                        error_score="raise").fit(X, y)
    for i, v in enumerate([1.0, 10.0]):
        assert grid.cv_results_["mean_test_score"][i] == pytest.approx(by_hand(slab_var=v).mean(), rel=1e-10)
    assert grid.best_estimator_.slab_var == grid.best_params_["slab_var"]
    assert grid.best_estimator_.coef_.shape == (6,)


def test_score_with_sample_weight_is_scikit_learns_r2():
    from sklearn.base import RegressorMixin
    from sklearn.metrics import r2_score

    X, y, _ = _scaled_design()
    est = SpikeSlabRegression("em", num_samples=20).fit(X, y)
    wts = np.random.default_rng(2).uniform(0.1, 2.0, size=100)
    ref = r2_score(y, est.intercept_ + X @ est.coef_, sample_weight=wts)
    assert est.score(X, y, sample_weight=wts) == pytest.approx(ref, rel=1e-12)
    assert est.score(X, y, wts) == pytest.approx(RegressorMixin.score(est, X, y, sample_weight=wts), rel=1e-12)
    assert est.score(X, y) == pytest.approx(r2_score(y, est.predict(X)), rel=1e-12)
    with pytest.raises(PyrozooError, match="sample_weight: expected 100 values like the rows of X, got 3"):
        est.score(X, y, sample_weight=[1.0, 2.0, 3.0])


def test_dataframe_feature_names():
    """fit records feature_names_in_ and n_features_in_ and names the result's feature coordinate; predict refuses a
    DataFrame whose columns are reordered or renamed (scikit-learn raises too) and warns on a bare array."""
    import warnings

    pd = pytest.importorskip("pandas")
    X, y, _ = _scaled_design()
    cols = ["age", "dose", "bmi", "sex", "site", "year"]
    df = pd.DataFrame(X, columns=cols)
    est = SpikeSlabRegression("em", num_samples=20).fit(df, y)
    assert est.n_features_in_ == 6 and est.feature_names_in_.tolist() == cols
    idata = est.result_.to_inference_data()
    for var in ("w", "inclusion_prob", "gamma"):
        assert idata.posterior[var].coords["feature"].values.tolist() == cols
    assert idata.constant_data["X"].coords["feature"].values.tolist() == cols
    assert float(idata.posterior["inclusion_prob"].sel(feature="dose").mean()) == pytest.approx(
        est.inclusion_probabilities_[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pred = est.predict(df)
    with pytest.warns(UserWarning, match="X has no feature names"):
        np.testing.assert_allclose(est.predict(X), pred)
    np.testing.assert_allclose(pred, est.intercept_ + X @ est.coef_)
    with pytest.raises(PyrozooError, match="in another order"):
        est.predict(df[cols[::-1]])
    with pytest.raises(PyrozooError, match=r"missing \['year'\], unexpected \['yr'\]"):
        est.predict(df.rename(columns={"year": "yr"}))
    with pytest.raises(PyrozooError, match="column names that are all strings"):
        SpikeSlabRegression("em").fit(pd.DataFrame(X, columns=cols[:5] + [6]), y)
    # a repeated name labelled two entries of the feature axis alike: az.summary and `pyrozoo diagnose` then failed
    with pytest.raises(PyrozooError, match="X: 'age' given more than once; name each column once"):
        SpikeSlabRegression("em").fit(pd.DataFrame(X, columns=["age", *cols[:5]]), y)
    # an integer categorical column was read as amounts (gp, bnn and active learning refused it already)
    with pytest.raises(PyrozooError, match=r"X: expected numbers, got categorical column\(s\) \['age'\]"):
        SpikeSlabRegression("em").fit(df.assign(age=pd.Categorical(np.arange(len(df)) % 3)), y)
    est.fit(X, y)  # an array: the names of the earlier fit are dropped
    assert not hasattr(est, "feature_names_in_") and est.n_features_in_ == 6
    assert "feature" not in est.result_.coords


# ------------------------------------------------------------------------------------- refits and new-X checks
def test_refit_keeps_no_fitted_attribute_of_the_earlier_fit(monkeypatch):
    """An EM fit on 4 columns, then set_params to Gibbs and a fit on 6: em_fit_ still held the 4-column EM fit. A
    refit now has the attributes of a fresh fit, no more; a fit that raises leaves the earlier fit whole."""
    import pyrozoo.models.spike_slab as ss

    X, y, _ = _scaled_design()
    gibbs = {"inference": "gibbs", "num_samples": 40, "warmup_steps": 20, "num_chains": 2}
    est = SpikeSlabRegression("em", num_samples=20).fit(X[:, :4], y)
    assert est.em_fit_ is not None and est._draws_std is None
    est.set_params(**gibbs).fit(X, y)
    fresh = SpikeSlabRegression(**gibbs).fit(X, y)
    assert not hasattr(est, "em_fit_") and set(vars(est)) == set(vars(fresh))
    assert est.n_features_in_ == 6 and est.coef_.shape == (6,) and est._draws_std.shape[1] == 6
    np.testing.assert_allclose(est.coef_, fresh.coef_)
    est.set_params(inference="em").fit(X[:, :4], y)  # and back: EM sets em_fit_ again and drops the draws
    assert est.em_fit_.w.shape == (4,) and est._draws_std is None
    assert set(vars(est)) == set(vars(SpikeSlabRegression("em", **{k: v for k, v in gibbs.items()
                                                                    if k != "inference"}).fit(X[:, :4], y)))
    before = est.coef_.copy()

    def fail(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(ss, "em_result", fail)
    with pytest.raises(RuntimeError, match="interrupted"):
        est.fit(X, y)
    assert est.n_features_in_ == 4 and est.em_fit_.w.shape == (4,)  # not a mix of the two fits
    np.testing.assert_array_equal(est.coef_, before)
    assert est.predict(X[:, :4]).shape == (100,)


def test_predict_and_score_check_new_X_as_fit_does():
    """predict read a categorical column of integers, or numbers cast to strings, as amounts (fit refuses both); a
    complex X or y lost its imaginary part with a ComplexWarning."""
    import warnings

    pd = pytest.importorskip("pandas")
    X, y, _ = _scaled_design()
    df = pd.DataFrame(X[:, :3], columns=["a", "b", "c"])
    est = SpikeSlabRegression("em", num_samples=20).fit(df, y)
    for bad, match in (
        (df.assign(c=pd.Categorical(np.arange(100) % 3)), r"^X: expected numbers, got categorical column\(s\) \['c'\] "
                                                          r"\(categories are labels, not amounts\)"),
        (df.assign(c=df["c"].astype(str)), r"^X: expected numbers, got text values in column 'c'"),
        (df.assign(c=df["c"] + 1j), r"^X: expected real numbers, got complex128 in column 'c'$"),
    ):
        for method in (est.predict, lambda Z: est.score(Z, y)):
            with pytest.raises(PyrozooError, match=match):
                method(bad)
    arr = SpikeSlabRegression("em", num_samples=20).fit(X[:, :3], y)
    for bad, match in ((X[:, :3] + 1j, r"^X: expected real numbers, got complex128$"),
                       (torch.tensor(X[:, :3], dtype=torch.complex128), r"^X: expected real numbers, got complex128$"),
                       (X[:, :3].astype(str), "^X: expected a numeric array, got text values"),
                       (np.r_[X[:1, :3] * np.nan, X[1:, :3]], r"^X: expected finite values, found 3 non-finite"),
                       (X[:, :2], r"^X: expected shape \(any, 3\), got \(100, 2\)")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a ComplexWarning is not the answer
            with pytest.raises(PyrozooError, match=match):
                arr.predict(bad)
    for bad_y, match in ((y + 1j, r"^y: expected real numbers, got complex128$"),
                         (pd.Series(pd.Categorical(np.arange(100) % 3)), "^y: expected numbers, got a pandas categ"),
                         (np.r_[np.nan, y[1:]], "^y: expected finite values")):
        with pytest.raises(PyrozooError, match=match):
            arr.score(X[:, :3], bad_y)
    np.testing.assert_allclose(est.predict(df.astype("float32")), est.predict(df), rtol=1e-6)  # numbers still pass
    assert arr.score(torch.tensor(X[:, :3]), y) == pytest.approx(arr.score(X[:, :3], y))


@pytest.mark.parametrize("where", ["X numpy", "X torch", "X column", "y list", "y torch"])
def test_fit_refuses_complex_input(where):
    """Complex X or y triggered only numpy's ComplexWarning and the fit ran on the real part (PLCE refuses it)."""
    import warnings

    pd = pytest.importorskip("pandas")
    X, y, _ = _scaled_design()
    name, dtype, where_text = where[0], "complex128", ""
    if where == "X numpy":
        X = X + 1j
    elif where == "X torch":
        X = torch.tensor(X, dtype=torch.complex64)
        dtype = "complex64"
    elif where == "X column":
        X = pd.DataFrame(X, columns=list("abcdef")).assign(d=X[:, 3] + 0j)
        where_text = " in column 'd'"
    elif where == "y list":
        y = list(y + 0j)
    else:
        y = torch.tensor(y + 0.5j)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PyrozooError, match=rf"^{name}: expected real numbers, got {dtype}{where_text}$"):
            SpikeSlabRegression("em", num_samples=20).fit(X, y)


def test_lr_ladder_and_numpy_bools_are_checked_like_the_other_settings():
    """lr="a" and lr=-1 constructed fine (an error only at an SVI fit); ladder=[] failed inside the fit with
    "max() arg is an empty sequence"; conjugate=np.False_ was refused while em_select=np.bool_(True) passed, so a
    GridSearchCV grid {"conjugate": np.array([True, False])} failed."""
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, KFold

    for kw, match in (
        ({"lr": "a"}, r"^lr: expected a finite value > 0, got the string 'a'$"),
        ({"lr": -1.0}, r"^lr: expected a finite value > 0, got -1.0$"),
        ({"lr": float("nan")}, r"^lr: expected a finite value > 0"),
        ({"lr": [0.01]}, r"^lr: expected a finite value > 0, got \[0.01\]$"),
        ({"ladder": []}, r"^ladder: expected a non-empty list of spike variances > 0 \(or None for the default "
                         r"ladder\), got \[\]$"),
        ({"ladder": 0.001}, r"^ladder: expected a non-empty list .*, got 0.001$"),
        ({"ladder": ["a"]}, r"^ladder: expected a non-empty list .*, got \['a'\]$"),
        ({"ladder": [1e-3, -1.0]}, r"^ladder: expected spike variances that are finite and > 0, got -1.0$"),
        ({"ladder": [1e-3, float("inf")]}, r"^ladder: expected spike variances that are finite and > 0, got inf$"),
        ({"ladder": [1e-3, 20.0]}, r"^ladder: expected spike variances below slab_var=10.0, got 20.0$"),
        ({"conjugate": "yes"}, r"^conjugate: expected True or False, got 'yes'$"),
        ({"conjugate": 1}, r"^conjugate: expected True or False, got 1$"),
    ):
        with pytest.raises(PyrozooError, match=match):
            SpikeSlabRegression(**kw)
        with pytest.raises(PyrozooError, match=match):  # set_params runs the same checks
            SpikeSlabRegression().set_params(**kw)
    X, y, _ = _scaled_design()
    with pytest.raises(PyrozooError, match="^ladder: expected a non-empty list"):  # direct calls too
        fit_emvs(standardize(X, y), PRIOR, ladder=[])
    assert SpikeSlabRegression(lr=np.float32(0.05), ladder=np.array([1e-4, 1e-3])).lr == np.float32(0.05)
    for name in ("conjugate", "em_select", "progress"):
        for flag in (np.True_, np.False_):
            est = SpikeSlabRegression(**{name: flag})
            assert getattr(est, name) is bool(flag)  # kept as a Python bool, so clone finds what it passed
            assert clone(est).get_params() == est.get_params()
    prior = SpikeSlabPrior(conjugate=np.False_)
    assert prior.conjugate is False and prior == SpikeSlabPrior(conjugate=False)
    for name in ("conjugate", "em_select"):
        grid = GridSearchCV(SpikeSlabRegression("em", num_samples=20), {name: np.array([True, False])}, cv=KFold(3),
                            error_score="raise").fit(X, y)
        assert grid.best_estimator_.coef_.shape == (6,)


def test_fit_refuses_pandas_x_and_y_with_different_indexes():
    """Rows are paired by position: a y in another row order than X was fitted against the wrong rows silently."""
    import pandas as pd

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.standard_normal((30, 3)), columns=["a", "b", "c"])
    y = pd.Series(rng.standard_normal(30))
    with pytest.raises(PyrozooError, match=r"^X, y: expected pandas inputs with the same index"):
        SpikeSlabRegression().fit(X, y.iloc[::-1])


# ------------------------------------------------------------- EMVS against exact enumeration (QA, session 13)
def _qa_design(seed: int, p: int = 6, scales=None):
    """The QA pass's design: n = 60, x ~ N(0, I_p) (times ``scales``), w = (1, 0, 0, .5, 0, ...), noise sd 2."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((60, p))
    if scales is not None:
        X = X * np.asarray(scales, dtype=float)
    w = np.zeros(p)
    w[[0, 3]] = [1.0, 0.5]
    return X, X @ w + 2 * rng.standard_normal(60)


def test_emvs_selection_agrees_with_exact_enumeration_over_all_models():
    """40 data sets of the QA design (p = 6: all 64 models enumerated). EMVS with model selection, the estimator's
    default (``fit_emvs(select=True)`` with its prior), must pick

    * the best of the 64 models by its own score log g (the posterior over models under the point-mass spike,
      theta integrated out): before the fix the ladder only compared the full and the empty model (theta's M-step
      went to 1, then 0) and missed it in 3 of 40 (seed 22: the empty model, log g -180.0 vs -174.8 for {x0});
    * a model within 2 nats of the exact highest-posterior model of the model itself (continuous spike at
      spike_var, what Gibbs and NUTS sample): the point-mass score and the continuous spike rank borderline models
      differently (max 1.57 over these seeds; 2.65 before);
    * on every feature whose exact inclusion is < 0.1 or > 0.9, the exact median model's choice, with p* within
      0.15 of the exact inclusion (max 0.095; seed 22 was 0.95 off). Features in between are borderline: EMVS's p*
      are conditional on the mode, P(gamma_d = 1 | w, sigma^2, theta), decisive there where the exact marginal is
      not, and are not held to it. The tolerances are the method's (it is deterministic), not Monte Carlo."""
    pats = all_patterns(6)
    for seed in range(40):
        X, y = _qa_design(seed)
        data, prior = _estimator_prior(X, y)
        fit = fit_emvs(data, prior, select=True)
        sel = fit.inclusion > 0.5
        code = int((sel.long() * 2 ** torch.arange(6)).sum())
        assert torch.equal(pats[code] > 0.5, sel)
        scores = torch.tensor([log_g(g, data, prior) for g in pats], dtype=torch.float64)
        assert int(scores.argmax()) == code, (seed, sel.tolist(), int(scores.argmax()))
        ex = exact_posterior(data, prior)
        assert float(ex["log_posterior"].max() - ex["log_posterior"][code]) < 2.0, seed
        incl = ex["inclusion"]
        clear = (incl < 0.1) | (incl > 0.9)
        assert torch.equal(sel[clear], incl[clear] > 0.5), seed
        assert float((fit.inclusion - incl)[clear].abs().max()) < 0.15, seed


def test_emvs_qa_reproducers_no_longer_empty_or_full():
    """The QA pass's reproducers. (1) seed 22, n = 60, p = 6: EMVS returned the empty model with inclusion exactly
    0 (exact: 0.95 on x0, <= 0.15 elsewhere). (2) seed 5, columns scaled by 1..5, p = 5: EMVS kept all five with
    p* = 1 (exact: 1 on x0 and x3, <= 0.1 elsewhere)."""
    for seed, p, scales, truth in ((22, 6, None, [0]), (5, 5, [1, 2, 3, 4, 5], [0, 3])):
        X, y = _qa_design(seed, p, scales)
        data, prior = _estimator_prior(X, y)
        exact = exact_posterior(data, prior)["inclusion"].numpy()
        est = SpikeSlabRegression("em", seed=0, num_samples=20).fit(X, y)
        expected = np.isin(np.arange(p), truth)
        np.testing.assert_array_equal(exact > 0.5, expected)
        np.testing.assert_array_equal(est.selected_, expected)
        probs = est.inclusion_probabilities_
        assert np.all(probs[expected] > 0.9) and np.all(probs[~expected] < 0.1), probs
        assert 0.0 < est.em_fit_.theta < 1.0


def test_cli_em_run_selects_the_exact_median_model():
    """``pyrozoo run spike-slab --inference em -o n=40 -o p=5 -o num_signals=2``: num_selected was 0 (exact
    inclusion ~(0.04, 0.95, 0.04, 0.04, 0.04)); the run's metrics now select x1 alone."""
    from pyrozoo import registry
    from pyrozoo.config import RunConfig
    from pyrozoo.models.spike_slab import dataset_to_standardized

    entry = registry.get("spike-slab")
    cfg = entry.check_config(RunConfig(model="spike-slab", inference="em", num_samples=100, progress=False,
                                       options={"n": 40, "p": 5, "num_signals": 2}))
    data = entry.load_data(cfg)
    std, prior = dataset_to_standardized(data)
    exact = exact_posterior(std, prior)["inclusion"].numpy()
    np.testing.assert_array_equal(exact > 0.5, [False, True, False, False, False])
    result = entry.fit(data, cfg)
    metrics = entry.metrics(result, data)
    assert metrics["num_selected"] == 1
    np.testing.assert_array_equal(result.draws("inclusion_prob").mean(0) > 0.5, exact > 0.5)


def test_emvs_theta_step_stays_inside_the_unit_interval():
    """All p* = 1 (or 0) gave theta = 1 - 1e-10 (or 1e-10) under the Beta(1, 1) mode, and then every feature kept
    its side for good; the step is E[theta | gamma = p*] = (sum p* + a0) / (p + a0 + b0)."""
    data = standardize(*_qa_design(0)[:2])
    for value, expected in ((1.0, 7 / 8), (0.0, 1 / 8)):
        pstar = torch.full((6,), value, dtype=torch.float64)
        d_star = pstar / PRIOR.slab_var + (1 - pstar) / PRIOR.spike_var
        assert emvs_m_step(pstar, d_star, 1.0, data, PRIOR)[2] == pytest.approx(expected)


def test_emvs_independent_prior_no_longer_keeps_every_feature():
    """conjugate=False (no model selection): em reported p* = 1 for all five features where Gibbs gives 0.04 on the
    nulls; the EMVS fixed point at spike_var now selects Gibbs's median model."""
    X, y, _ = simulate_equicorrelated_design(0, n=40, p=5, num_signals=2)
    em = SpikeSlabRegression("em", conjugate=False, num_samples=20).fit(X, y)
    gibbs = SpikeSlabRegression("gibbs", conjugate=False, num_samples=300, warmup_steps=100, seed=0).fit(X, y)
    np.testing.assert_array_equal(gibbs.selected_, [False, True, False, False, False])
    np.testing.assert_array_equal(em.selected_, gibbs.selected_)
    assert np.all(em.inclusion_probabilities_[~em.selected_] < 0.1)


def test_neighbour_log_g_equals_log_g_of_each_flip():
    """The O(k^2 p) rank-one scores of every single-feature neighbour against log_g, p < n and p > n, empty and
    non-empty models, a0, b0, nu, lam != 1."""
    from pyrozoo.models.spike_slab_em import neighbour_log_g

    rng = np.random.default_rng(3)
    prior = as_prior(spike_var=0.01, slab_var=5.0, a0=2.0, b0=3.0, nu=3.0, lam=0.7)
    for n, p in ((60, 6), (20, 40)):
        X = rng.standard_normal((n, p))
        data = standardize(X, X[:, 0] - X[:, 1] + rng.standard_normal(n))
        for gamma in (torch.zeros(p, dtype=torch.bool), torch.arange(p) < 3, torch.arange(p) % 2 == 0):
            flips = []
            for d in range(p):
                g = gamma.clone()
                g[d] = ~g[d]
                flips.append(log_g(g, data, prior))
            torch.testing.assert_close(neighbour_log_g(gamma, data, prior),
                                       torch.tensor(flips, dtype=torch.float64), rtol=0, atol=1e-9)


def test_emvs_neighbour_search_finds_the_model_the_ladder_skips():
    """Equicorrelated design, seed 27, n = 60, p = 8 (256 models): the ladder's best visited model is
    {x0, x1, x2, x5} (log g -144.45); its neighbour {x0, x1, x2} is the best of all 256 (-143.40). With the search
    the selection is that model, as an EMVS fixed point (a path entry started at the model)."""
    X, y, _ = simulate_equicorrelated_design(27, n=60, p=8, num_signals=3)
    data, prior = _estimator_prior(X, y)
    best = max(log_g(g, data, prior) for g in all_patterns(8))
    ladder_only = fit_emvs(data, prior, select=True, neighbours=False)
    assert log_g(ladder_only.inclusion, data, prior) < best - 1.0
    fit = fit_emvs(data, prior, select=True)
    assert log_g(fit.inclusion, data, prior) == pytest.approx(best, abs=1e-9)
    np.testing.assert_array_equal((fit.inclusion > 0.5).numpy(), [1, 1, 1, 0, 0, 0, 0, 0])
    chosen = [r for r in fit.path if r["start"] == "model"]
    assert len(chosen) == 1 and torch.equal(chosen[0]["inclusion"], fit.inclusion) and chosen[0]["converged"]


# ------------------------------------------------------------------------- options that would be ignored (QA)
@pytest.mark.parametrize("inference,options,match", [
    ("gibbs", {"em_variant": "hard"}, r"em_variant applies only to spike-slab's em; with gibbs it would have no "
                                      r"effect"),
    ("svi", {"em_variant": "hard"}, "em_variant applies only to spike-slab's em; with svi"),
    ("nuts", {"em_variant": "emvs"}, "em_variant applies only to spike-slab's em; with nuts"),
    ("em", {"nuts_max_tree_depth": 3}, "nuts_max_tree_depth applies only to spike-slab's nuts; with em"),
    ("gibbs", {"nuts_max_tree_depth": 3}, "nuts_max_tree_depth applies only to spike-slab's nuts; with gibbs"),
    ("em", {"design": "emvs", "num_signals": 2}, r"num_signals applies only to design 'equicorrelated'; with "
                                                  r"design 'emvs' it would have no effect"),
    ("em", {"em_variant": "hard", "conjugate": False}, r"^em_variant: the hard-gamma EM is derived for the "
                                                        r"conjugate prior"),
    ("gibbs", {"design": "emvs", "rho": 1.0}, r"^rho: expected a correlation in \(-1, 1\) for the emvs design"),
    ("gibbs", {"rho": -0.2}, r"^rho: expected a correlation in \[0, 1\) for the equicorrelated design"),
])
def test_options_the_run_would_ignore_are_refused_before_any_data(inference, options, match):
    """-o em_variant=hard with gibbs/svi/nuts, -o nuts_max_tree_depth=3 with em and -o num_signals=2 with the emvs
    design (which fixes its 3 signals) ran and ignored the option; em_variant=hard with conjugate=false failed only
    inside the fit. Each is refused by the entry's checks (run, sweep cells, direct fit_spike_slab calls)."""
    from pyrozoo import registry
    from pyrozoo.config import RunConfig
    from pyrozoo.models.spike_slab import fit_spike_slab

    entry = registry.get("spike-slab")
    with pytest.raises(PyrozooError, match=match):
        entry.check_config(RunConfig(model="spike-slab", inference=inference, options=dict(options)))
    with pytest.raises(PyrozooError, match=match):  # the fit function checks a config it is handed directly
        fit_spike_slab(None, RunConfig(model="spike-slab", inference=inference, options=dict(options)))


def test_options_each_inference_and_design_reads_are_accepted(capsys, tmp_path):
    from pyrozoo import registry
    from pyrozoo.cli import main
    from pyrozoo.config import RunConfig

    entry = registry.get("spike-slab")
    for inference, options in (("nuts", {"nuts_max_tree_depth": 3}), ("em", {"em_variant": "hard"}),
                               ("em", {"design": "emvs", "rho": -0.5}), ("gibbs", {"num_signals": 2}),
                               ("em", {"conjugate": False}), ("gibbs", {"conjugate": False})):
        entry.check_config(RunConfig(model="spike-slab", inference=inference, options=dict(options)))
    code = main(["run", "spike-slab", "--inference", "em", "-o", "nuts_max_tree_depth=3", "--out",
                 str(tmp_path / "r")])
    assert code == 2 and "nuts_max_tree_depth applies only to spike-slab's nuts" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_estimator_refuses_settings_the_prior_rules_out():
    """em_variant="hard" with conjugate=False was accepted and failed only at fit; em_select=True with
    conjugate=False was silently treated as False. em_select=None (the default) selects with the conjugate prior
    only."""
    for kw, match in (({"em_variant": "hard", "conjugate": False},
                       r"^em_variant: the hard-gamma EM is derived for the conjugate prior, got em_variant='hard' "
                       r"with conjugate=False"),
                      ({"em_select": True, "conjugate": False},
                       r"^em_select: EMVS's model selection scores models by log g, which needs the conjugate "
                       r"prior; got em_select=True with conjugate=False")):
        with pytest.raises(PyrozooError, match=match):
            SpikeSlabRegression(**kw)
        with pytest.raises(PyrozooError, match=match):
            SpikeSlabRegression().set_params(**kw)
    with pytest.raises(PyrozooError, match="^em_select: expected True or False, got 'yes'"):
        SpikeSlabRegression(em_select="yes")
    X, y, _ = _scaled_design()
    assert SpikeSlabRegression().em_select is None
    selecting = SpikeSlabRegression("em", num_samples=10).fit(X, y)
    assert all(math.isfinite(r["log_g"]) for r in selecting.em_fit_.path)
    independent = SpikeSlabRegression("em", conjugate=False, num_samples=10).fit(X, y)
    assert all(math.isnan(r["log_g"]) for r in independent.em_fit_.path)
    assert SpikeSlabRegression(conjugate=False, em_select=False).em_select is False


# A user's data file: pyrozoo run spike-slab --data my.csv -o outcome=y
def _regression_csv(tmp_path, n=40):
    import pandas as pd

    rng = np.random.default_rng(1)
    X = rng.standard_normal((n, 4))
    df = pd.DataFrame(X, columns=["age", "dose", "bmi", "noise"])
    df.insert(0, "y", X @ [2.0, 0.0, -1.5, 0.0] + rng.standard_normal(n))
    path = tmp_path / "trial.csv"
    df.to_csv(path, index=False)
    return path, df


@pytest.mark.parametrize("inference", ["em", "gibbs"])
def test_a_data_file_runs_from_the_cli_like_the_python_path(inference, tmp_path):
    import json

    from pyrozoo.cli import main
    from pyrozoo.config import RunConfig
    from pyrozoo.models.spike_slab import fit_spike_slab, make_dataset

    path, df = _regression_csv(tmp_path)
    out = tmp_path / "run"
    assert main(["run", "spike-slab", "--data", str(path), "-o", "outcome=y", "-o", "features=age, dose, bmi",
                 "--inference", inference, "--num-samples", "30", "--warmup-steps", "10", "--num-chains", "1",
                 "--seed", "3", "--no-progress", "--device", "cpu", "--out", str(out)]) == 0
    idata = az.from_netcdf(out / "idata.nc")
    assert idata.observed_data["y"].sizes["obs_id"] == 40
    assert list(idata.posterior["w"].coords["feature"].values) == ["age", "dose", "bmi"]
    ref = fit_spike_slab(make_dataset(df[["age", "dose", "bmi"]].to_numpy(), df["y"].to_numpy(), lam=None),
                         RunConfig(model="spike-slab", inference=inference, num_samples=30, warmup_steps=10,
                                   num_chains=1, seed=3, progress=False))
    np.testing.assert_allclose(idata.posterior["w"].values, np.asarray(ref.posterior["w"]), rtol=1e-10, atol=1e-12)
    metrics = json.loads((out / "metrics.json").read_text())
    assert "f1" not in metrics and "coef_rmse" not in metrics  # no truth for a file


@pytest.mark.parametrize("inference", ["em", "gibbs", "svi"])
def test_a_data_file_fit_does_not_depend_on_the_units_of_y(inference, tmp_path):
    """--data kept the model's lam = 1, an absolute scale of the noise variance, where the estimator sets lam to the
    sample variance of y: with y in 1e-4 units EMVS selected nothing (every inclusion probability 0.0008, sigma^2
    0.017 for a truth of 3e-9), nor did Gibbs. Now y -> c y gives the same inclusion probabilities, w -> c w and
    sigma^2 -> c^2 sigma^2 (same seed: the conjugate model is equivariant), and the estimator's fit. SVI also
    needed its guide's w mean in units of y's scale (Adam's lr 0.02 dwarfed a w of 2e-4: inclusion 0.2 off)."""
    import pandas as pd

    from pyrozoo.config import RunConfig
    from pyrozoo.runner import run_model

    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    y = 1.0 + X @ [2.0, 0.0, -1.0] + 0.5 * rng.standard_normal(60)
    fits = {}
    for c in (1.0, 1e-4, 1e4):
        path = tmp_path / f"y{c:g}.csv"
        pd.DataFrame(X, columns=["a", "b", "c"]).assign(y=y * c).to_csv(path, index=False)
        cfg = RunConfig(model="spike-slab", inference=inference, data=str(path), options={"outcome": "y"},
                        num_samples=200, warmup_steps=100, num_chains=2, steps=200, seed=0, progress=False,
                        device="cpu")
        r = run_model(cfg, save=False).result
        fits[c] = (r.draws("inclusion_prob").mean(0), r.draws("w").mean(0) / c, r.draws("sigma2").mean() / c**2)
    probs, w, sigma2 = fits[1.0]
    assert list(probs > 0.5) == [True, False, True]
    for c in (1e-4, 1e4):
        np.testing.assert_allclose(fits[c][0], probs, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(fits[c][1], w, rtol=1e-6, atol=1e-9 * np.abs(w).max())
        assert fits[c][2] == pytest.approx(sigma2, rel=1e-6)
    if inference == "em":  # deterministic: the estimator's answer on the same data, y in 1e-4 units
        est = SpikeSlabRegression("em", num_samples=200, seed=0).fit(X, y * 1e-4)
        np.testing.assert_allclose(est.inclusion_probabilities_, probs, rtol=1e-6)
        np.testing.assert_allclose(est.result_.draws("w").mean(0) * 1e4, w, rtol=1e-6, atol=1e-12)  # per sd of X
        assert est.sigma2_ * 1e8 == pytest.approx(sigma2, rel=1e-6)


@pytest.mark.parametrize("conjugate", [True, False])
def test_w_conditional_matches_its_gaussian(conjugate):
    """The w draw of one Gibbs sweep, on a fixed state (gamma, sigma^2) repeated over 2 x 10^5 vectorized chains,
    against the module docstring's Gaussian computed here with numpy: conjugate N(A^-1 X^T y, sigma^2 A^-1),
    A = X^T X + diag(1 / v_gamma); independent N(A^-1 X^T y / sigma^2, A^-1), A = X^T X / sigma^2 + diag(1 / v_gamma).
    Tolerance 5 Monte Carlo standard errors per entry: sqrt(S_ii / C) for the mean, sqrt((S_ii S_jj + S_ij^2) / C)
    for the covariance (Gaussian fourth moments). A draw whose sd is off by 1.7x misses the variance by 190%."""
    from pyrozoo.models.spike_slab_gibbs import _draw_chol, _draw_w

    data = _tiny_standardized()
    prior = as_prior(spike_var=0.05, slab_var=5.0, a0=2.0, b0=3.0, nu=3.0, lam=0.5, conjugate=conjugate)
    d = gibbs_data(data, prior)
    X, y = data.X.numpy(), data.y.numpy()
    gamma = np.array([1.0, 0.0, 1.0])
    sigma2 = 0.6
    C = 200_000
    torch.manual_seed(0)
    f64 = {"dtype": torch.float64}
    state = {"gamma": torch.tensor(gamma).expand(C, -1), "w": torch.zeros((C, 3), **f64),
             "sigma2": torch.full((C,), sigma2, **f64), "theta": torch.full((C,), 0.4, **f64)}
    state["_chol"] = _draw_chol(state, d)
    w = _draw_w(state, d).numpy()
    v = prior.spike_var + gamma * (prior.slab_var - prior.spike_var)
    if conjugate:
        A = X.T @ X + np.diag(1.0 / v)
        mean, cov = np.linalg.solve(A, X.T @ y), sigma2 * np.linalg.inv(A)
    else:
        A = X.T @ X / sigma2 + np.diag(1.0 / v)
        mean, cov = np.linalg.solve(A, X.T @ y / sigma2), np.linalg.inv(A)
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(w.mean(0) - mean) < 5 * sd / np.sqrt(C)), (w.mean(0), mean)
    cov_se = np.sqrt((np.outer(sd**2, sd**2) + cov**2) / C)
    assert np.all(np.abs(np.cov(w, rowvar=False) - cov) < 5 * cov_se), (np.cov(w, rowvar=False), cov)


def _exact_independent_prior(data, prior, grid: int = 2001) -> dict[str, torch.Tensor]:
    """Posterior inclusion probabilities and E[sigma^2 | y] under the independent prior (w_d ~ N(0, v_gamma_d)), by
    brute force: every one of the 2^p patterns, theta integrated in closed form (p(gamma) = B(a0 + k, b0 + p - k) /
    B(a0, b0)), w integrated in closed form (y ~ N(0, sigma^2 I + X D_gamma X^T), through the p x p matrix
    M = D^-1 + X^T X / sigma^2: log|sigma^2 I + X D X^T| = n log sigma^2 + log|D| + log|M|, quadratic form
    y^T y / sigma^2 - b^T M^-1 b with b = X^T y / sigma^2), and sigma^2 ~ InvGamma(nu / 2, nu lam / 2) summed on a
    log grid over [e^-8, e^6] (16001 points instead of 2001 change the answers by < 1e-13). For centred y (the
    intercept integrated out) the density is that of y's n - 1 coordinates orthogonal to the constant vector: the
    same quadratic form and log|M| (X's columns are centred), n - 1 in place of n in the log-determinant."""
    X, y, n, p = data.X.double(), data.y.double(), data.dof, data.p
    G = all_patterns(p).double()
    v = prior.variances(G)  # (2^p, p)
    log_s2 = torch.linspace(-8, 6, grid, dtype=torch.float64)
    s2 = log_s2.exp()
    M = torch.diag_embed(1 / v)[:, None] + (X.T @ X) / s2[None, :, None, None]  # (2^p, S, p, p)
    L = torch.linalg.cholesky(M)
    b = ((X.T @ y) / s2[:, None]).expand(len(G), -1, -1)
    half = torch.linalg.solve_triangular(L, b.unsqueeze(-1), upper=False).squeeze(-1)
    quad = (y @ y) / s2 - (half**2).sum(-1)
    logdet = n * log_s2 + v.log().sum(-1)[:, None] + 2 * L.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    f64 = {"dtype": torch.float64}
    ig = torch.distributions.InverseGamma(torch.tensor(0.5 * prior.nu, **f64),
                                          torch.tensor(0.5 * prior.nu * prior.lam, **f64))
    k = G.sum(-1)
    log_prior_gamma = (torch.lgamma(prior.a0 + k) + torch.lgamma(prior.b0 + p - k)
                       - math.lgamma(prior.a0 + prior.b0 + p))  # up to a constant
    log_joint = -0.5 * logdet - 0.5 * quad + ig.log_prob(s2) + log_s2 + log_prior_gamma[:, None]  # d log sigma^2
    weights = torch.softmax(log_joint.flatten(), 0).reshape(log_joint.shape)
    return {"inclusion": weights.sum(1) @ G, "sigma2_mean": (weights.sum(0) * s2).sum()}


def test_gibbs_independent_prior_matches_brute_force_enumeration(small):
    """End-to-end reference for the non-conjugate kernel (p = 6: 64 patterns x a sigma^2 grid), tolerances as in
    the conjugate test (4 ArviZ MCSE + 0.01). A w draw with 1.7x its sd moves the noise features' inclusion from
    0.10 to 0.32 (30 MCSE)."""
    data, _ = small
    prior = as_prior(PRIOR, conjugate=False)
    ex = _exact_independent_prior(data, prior)
    res = gibbs_result(data, prior, num_samples=1000, warmup_steps=100, num_chains=8, seed=3)
    q = res.posterior["inclusion_prob"]
    est = q.reshape(-1, data.p).mean(0)
    assert np.all(np.abs(est - ex["inclusion"].numpy()) < _mcse_tolerance(q)), (est, ex["inclusion"])
    s2 = res.posterior["sigma2"][..., None]
    assert abs(s2.mean() - float(ex["sigma2_mean"])) < _mcse_tolerance(s2)[0]


@pytest.mark.parametrize("variant", ["emvs", "hard"])
def test_em_inference_data_says_its_log_likelihood_is_conditional_on_the_point_estimates(variant, tmp_path):
    """EM's draws vary w only (sigma2, theta, inclusion_prob fixed at EM's estimates, under one selected model), so
    az.loo / az.compare are optimistic: idata.attrs["log_likelihood"] says so (as bnn's collapsed fits note theirs),
    also after a netCDF round trip; gibbs, whose draws carry that uncertainty, has no such note."""
    from pyrozoo.config import RunConfig
    from pyrozoo.runner import run_model

    notes = {}
    for inference in ("em", "gibbs"):
        em = inference == "em"
        out = run_model(RunConfig(model="spike-slab", inference=inference, num_samples=50, progress=False,
                                  **({} if em else {"warmup_steps": 20, "num_chains": 1}),
                                  options={"n": 40, "p": 5, "num_signals": 2,
                                           **({"em_variant": variant} if em else {})}), save=False)
        idata = out.result.to_inference_data()
        idata.to_netcdf(str(tmp_path / f"{inference}.nc"))
        notes[inference] = az.from_netcdf(str(tmp_path / f"{inference}.nc")).attrs.get("log_likelihood")
        if inference == "em":
            assert np.ptp(idata.posterior["sigma2"].values) == 0.0  # what the note is about
    assert notes["em"].startswith("conditional on EM point estimates")
    assert "az.compare" in notes["em"] and "gibbs or nuts" in notes["em"]
    assert ("selected" in notes["em"]) == (variant == "emvs")
    assert notes["gibbs"] is None


def test_tensors_that_require_grad_are_fitted_and_predicted_as_their_values():
    """fit and predict of tensors with requires_grad=True failed in .numpy() (torch's raw RuntimeError); the data
    are values: the same coefficients and predictions as from plain tensors."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = X[:, 0] + rng.standard_normal(60)
    plain = SpikeSlabRegression("em").fit(torch.tensor(X), torch.tensor(y))
    grad = SpikeSlabRegression("em").fit(torch.tensor(X, requires_grad=True), torch.tensor(y, requires_grad=True))
    np.testing.assert_array_equal(grad.coef_, plain.coef_)
    np.testing.assert_array_equal(grad.inclusion_probabilities_, plain.inclusion_probabilities_)
    np.testing.assert_array_equal(plain.predict(torch.tensor(X, requires_grad=True)), plain.predict(X))
    assert plain.score(X, torch.tensor(y, requires_grad=True)) == plain.score(X, y)


def test_em_note_names_the_inferences_to_compare_with():
    """The EM note names the inferences the calling model offers: spike-slab's zoo em run names gibbs and nuts
    (both in its entry), and ``compare_with`` gives another model's (effect-curve: gibbs only, which got spike-slab's
    "gibbs or nuts" before)."""
    from pyrozoo import registry
    from pyrozoo.config import RunConfig
    from pyrozoo.models.spike_slab import em_log_likelihood_note
    from pyrozoo.runner import run_model

    def named(note):
        return note.rsplit("compare models with the ", 1)[1].removesuffix(" inference").split(" or ")

    out = run_model(RunConfig(model="spike-slab", inference="em", num_samples=20, progress=False, device="cpu",
                              options={"n": 30, "p": 4, "num_signals": 2}), save=False)
    spike = named(out.result.to_inference_data().attrs["log_likelihood"])
    assert spike == ["gibbs", "nuts"] and set(spike) <= set(registry.get("spike-slab").inferences)
    note = em_log_likelihood_note("emvs", selected=False, compare_with=("gibbs",))
    assert note.endswith("compare models with the gibbs inference") and named(note) == ["gibbs"]
    assert em_log_likelihood_note("hard", selected=False) == em_log_likelihood_note(
        "hard", selected=False, compare_with=("gibbs", "nuts"))


@pytest.mark.parametrize(("design", "options", "message"), [
    ("emvs", {"rho": 2.0}, r"^rho: expected a correlation in \(-1, 1\) for the emvs design, got 2\.0$"),
    ("emvs", {"noise_sd": float("nan")}, r"^noise_sd: expected a finite value > 0, got nan$"),
    ("equicorrelated", {"rho": -0.5, "num_signals": 1},
     r"^rho: expected a correlation in \[0, 1\) for the equicorrelated design"),
    ("equicorrelated", {"noise_sd": float("inf"), "num_signals": 1},
     r"^noise_sd: expected a finite value > 0, got inf$"),
])
def test_the_design_simulators_check_rho_and_noise_sd_themselves(design, options, message):
    """simulate_spike_slab checked them, the public design functions did not: rho = 2 failed with a raw "math domain
    error", noise_sd nan was drawn into y."""
    from pyrozoo.models.spike_slab import simulate_emvs_design, simulate_equicorrelated_design

    simulate = simulate_emvs_design if design == "emvs" else simulate_equicorrelated_design
    with pytest.raises(PyrozooError, match=message):
        simulate(0, n=4, p=3, **options)


# ------------------------------------------------------------------------------------ SVI start and convergence
def _default_design_fit(seed: int):
    """The `pyrozoo run spike-slab` default design (equicorrelated, n = 200, p = 50) as the CLI fits it."""
    from pyrozoo.models.spike_slab import dataset_to_standardized, simulate_spike_slab

    ds = simulate_spike_slab(seed)
    data, prior = dataset_to_standardized(ds)
    return data, prior, {**ds.model_kwargs(), "centred": data.centred}


def test_svi_draws_fit_the_data_as_well_as_em_from_the_first_steps():
    """The guide's parameters are whitened by its start (the EMVS fixed point and its conditional covariance).
    With L itself the parameter, Adam's first step (about lr = 0.02 on every entry) moved each off-diagonal entry
    of L, about 0.0016 at the start, by 0.02: the draws' summed log-likelihood fell from about EM's (-278 on seed 1)
    to a median of -479 and a worst of -3141 after 1 step (-706 / -5277 after 30; az.loo -3033 against EM's -281).
    Now the median stays within a nat of EM's (-275.2 .. -276.4 for 0-30 steps). Tolerances: a posterior draw's
    summed log-likelihood is the fit's minus about half a chi-square with the number of effective parameters as
    degrees of freedom (sd about 4 here, worst of 200 draws 12 below EM's median): 5 nats on the median of 200
    draws, 30 on the worst."""
    import warnings

    from pyrozoo.models.spike_slab import em_result
    from pyrozoo.models.spike_slab_pyro import svi_result

    data, prior, kw = _default_design_fit(1)
    em, _ = em_result(data, prior, num_samples=50, seed=1, model_kwargs=kw)
    em_ll = np.median(em.log_likelihood["y"].sum(-1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = svi_result(data, prior, steps=5, num_samples=200, seed=1, model_kwargs=kw)
    ll = res.log_likelihood["y"].sum(-1).ravel()
    assert np.median(ll) > em_ll - 5.0
    assert ll.min() > em_ll - 30.0
    # q(sigma^2) starts at sigma^2's conditional posterior (n - 1 dof), not at EMVS's joint mode (n + p + nu + 2)
    assert np.median(res.draws("sigma2")) > 0.8  # 0.86 (the converged fit's mean); EMVS's sigma^2 is 0.67


def test_check_svi_settled_warns_on_a_loss_that_ended_above_its_start_or_still_moves():
    """The check on synthetic loss traces: settled noise (sd 0.5, the default design's) passes; a trace that ends
    3 nats above its start, or one still falling by 3 nats over its last 10%, warns."""
    import warnings

    from pyrozoo.models.spike_slab_pyro import SETTLE_TOL, check_svi_settled

    rng = np.random.default_rng(0)
    settled = 323.0 + 0.5 * rng.standard_normal(2000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_svi_settled(settled)
        check_svi_settled([])
        check_svi_settled([400.0])
    with pytest.warns(UserWarning, match=r"svi: the fitted q.*not at the ELBO optimum after 2000 steps.*above the "
                                         r"start's.*raise --steps"):
        check_svi_settled(np.concatenate([[323.0], settled[1:] + 1.5 + SETTLE_TOL]))
    falling = settled - np.linspace(0.0, 30.0, 2000)  # 3 nats per 10% of the steps
    with pytest.warns(UserWarning, match=r"over the 200 before"):
        check_svi_settled(falling)


def test_svi_warns_when_its_elbo_has_not_settled():
    """lr 0.3 for 10 steps leaves q far from the start and the optimum (loss +120 above the start on seed 1, the
    draws' median log-likelihood -327 against -275): the fit says so, as it did not before (no warning, F1 = 1)."""
    from pyrozoo.models.spike_slab_pyro import svi_result

    data, prior, kw = _default_design_fit(1)
    with pytest.warns(UserWarning, match=r"svi: the fitted q.*not at the ELBO optimum after 10 steps"):
        svi_result(data, prior, steps=10, lr=0.3, num_samples=20, seed=1, model_kwargs=kw)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_svi_at_the_default_steps_does_not_warn(seed):
    """At the defaults (2000 steps, lr 0.02) on the default design the loss settles: its last 10% within 0.5 nats of
    the start and 0.2 of the 10% before (seeds 1-3), under the 2-nat tolerance. ~1 min each on a loaded box."""
    import warnings

    from pyrozoo.models.spike_slab_pyro import svi_result

    data, prior, kw = _default_design_fit(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        svi_result(data, prior, num_samples=20, seed=seed, model_kwargs=kw)


def test_a_column_in_tiny_units_is_standardized_not_refused_as_constant():
    """validate_xy clamped the column's magnitude at 1 (sd <= 1e-10 * max(max|x|, 1)), so a varying column scaled
    by 1e-11 was "constant" while one scaled by 1e-9 fitted. The test is relative to the column's own max|x|: the
    fit is the same at any scale (X is standardized), and what is constant in float64 is still refused, saying what
    was measured."""
    from pyrozoo.models.spike_slab_prior import validate_xy

    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3))
    y = X[:, 0] + rng.standard_normal(30)
    base = SpikeSlabRegression("em").fit(X, y)
    for scale in (1e-11, 1e-100):
        tiny = X * np.array([1.0, scale, 1.0])
        fit = SpikeSlabRegression("em").fit(tiny, y)
        np.testing.assert_allclose(fit.inclusion_probabilities_, base.inclusion_probabilities_, rtol=1e-8)
        np.testing.assert_allclose(fit.coef_ * np.array([1.0, scale, 1.0]), base.coef_, rtol=1e-8, atol=1e-12)
    # exactly constant (0.1 repeated: its mean rounds off 0.1), all zeros, tiny and constant, and an offset of 1e12
    # with a spread of 1e-3 (relative sd 1e-15: rounding) are constant in float64 relative to their own magnitude
    for col in (np.full(30, 0.1), np.zeros(30), np.full(30, 3e-20), 1e12 + 1e-3 * X[:, 1]):
        with pytest.raises(PyrozooError, match=r"^X: column\(s\) \[1\] are constant \(sd / max\|x\| of the column "
                                               r"\d\.\de[+-]\d+, at most 2\.2e-14 = 100 float64 steps: constant up to "
                                               r"rounding\)"):
            validate_xy(np.c_[X[:, 0], col, X[:, 2]], y)
    validate_xy(np.c_[X[:, 0], 1e6 + 1e-3 * X[:, 1], X[:, 2]], y)  # relative sd 1e-9: kept


def test_a_timestamp_column_with_a_large_offset_is_not_refused_as_constant():
    """The constant-column bound was 1e-10 of max|x|, which refused a millisecond timestamp 1.7e12 + 50 z (relative
    sd 3e-11) that float64 holds to 4e-6 of its spread; the bound is now 100 float64 steps at max|x| (2.2e-14)."""
    from pyrozoo.models.spike_slab_prior import validate_xy

    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3))
    y = X[:, 0] + rng.standard_normal(30)
    X[:, 1] = 1.7e12 + 50 * X[:, 1]
    Xt, _ = validate_xy(X, y)
    assert Xt.shape == (30, 3)


def test_an_em_run_without_its_log_likelihood_has_no_note_about_one(tmp_path):
    """`pyrozoo run spike-slab --inference em --no-log-likelihood` saved attrs["log_likelihood"] ("conditional on EM
    point estimates ... az.loo, az.waic and az.compare ignore ...") beside no log_likelihood group."""
    from pyrozoo.config import RunConfig
    from pyrozoo.runner import run_model

    run_model(RunConfig(model="spike-slab", inference="em", num_samples=20, progress=False, device="cpu",
                        log_likelihood=False, options={"n": 30, "p": 4, "num_signals": 2}), out=tmp_path / "run")
    idata = az.from_netcdf(str(tmp_path / "run" / "idata.nc"))
    assert "log_likelihood" not in idata.groups() and "posterior" in idata.groups()
    assert "log_likelihood" not in idata.attrs


@pytest.mark.parametrize("inference", ["em", "gibbs"])
def test_the_estimator_leaves_an_oversized_log_likelihood_out_with_a_warning_before_the_fit(inference, monkeypatch):
    """SpikeSlabRegression().fit(X, y) at n = 160,000 (1000 draws: 1.6e8 values) ran EM, then raised for a
    log-likelihood nobody asked for; gibbs's 4 x 1000 draws did so from n = 40,000. Now the estimator warns before
    the fit (n, num_samples and num_chains are known), fits without the log-likelihood and keeps its estimates;
    the InferenceData has neither the group nor the EM note about it. Here with the limit lowered."""
    from pyrozoo.inference import assemble
    from pyrozoo.models import spike_slab

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    y = X @ np.array([1.0, 0.5, 0.0]) + rng.standard_normal(40)
    settings = {"num_samples": 30, **({"num_chains": 2, "warmup_steps": 10} if inference == "gibbs" else {})}
    monkeypatch.setattr(assemble, "MAX_POINTWISE_VALUES", settings.get("num_chains", 1) * 30 * 40 - 1)
    fitted_without = []
    engine = f"{inference}_result"
    real = getattr(spike_slab, engine)

    def spy(*args, **kwargs):
        fitted_without.append(assemble.log_likelihood_skipped())
        return real(*args, **kwargs)

    monkeypatch.setattr(spike_slab, engine, spy)
    with pytest.warns(UserWarning, match=r"^the pointwise log-likelihood is left out of the result .*az.loo.*"
                                         rf"num_samples=30, num_chains={settings.get('num_chains', 1)} with 40 "
                                         r"observations: .*MAX_POINTWISE_VALUES"):
        est = SpikeSlabRegression(inference, **settings).fit(X, y)
    assert fitted_without == [True]  # decided before the fit
    idata = est.result_.to_inference_data()
    assert "log_likelihood" not in idata.groups() and "log_likelihood" not in idata.attrs
    assert est.selected_[0] and np.isfinite(est.coef_).all()


def test_spike_slab_prior_docstrings_refer_to_names_that_exist():
    """validate_xy's docstring gave the constant-column rule as sd <= :data:`CONSTANT_RTOL` max|x|, a name the module
    never had; the constant is CONSTANT_STEPS (sd <= CONSTANT_STEPS * eps * max|x|)."""
    import inspect
    import re

    import pyrozoo.models.spike_slab_prior as prior

    for name, obj in vars(prior).items():
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == prior.__name__:
            for ref in re.findall(r":(?:data|func|class):`~?([A-Za-z_][A-Za-z0-9_]*)`", obj.__doc__ or ""):
                assert hasattr(prior, ref), (name, ref)
    assert "CONSTANT_STEPS" in prior.validate_xy.__doc__


def test_score_refuses_pandas_rows_in_another_order():
    """score pairs X and y by position, as fit does: a y (or sample_weight) Series holding X's labels in another
    order scored the wrong pairs (R^2 0.998 -> -1.07 here) without a word; it is refused as fit refuses it, and
    aligned pandas inputs score as their arrays do."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.standard_normal((40, 3)), columns=["a", "b", "c"])
    y = pd.Series(2 * X["a"] + 0.1 * rng.standard_normal(40))
    est = SpikeSlabRegression(inference="em", seed=0).fit(X, y)
    assert est.score(X, y) == pytest.approx(est.score(X, y.to_numpy()))
    shuffled = y.sample(frac=1, random_state=0)
    with pytest.raises(PyrozooError, match=r"^X, y: expected pandas inputs with the same index .* another order"):
        est.score(X, shuffled)
    weights = pd.Series(np.ones(40), index=shuffled.index)
    with pytest.raises(PyrozooError, match=r"^X, sample_weight: expected pandas inputs with the same index"):
        est.score(X, y, sample_weight=weights)


def test_the_estimators_result_records_the_centring_as_the_cli_run_does(tmp_path):
    """SpikeSlabRegression centres y, but result_'s attrs lacked response_shift (and response_scale), which the
    `pyrozoo run spike-slab --data` run of the same table records: observed_data could not be mapped back. They are
    now recorded by the same rule (shift = mean(y), scale = 1), and the log-likelihood and observed data agree with
    the run's."""
    pd = pytest.importorskip("pandas")
    from pyrozoo.config import RunConfig
    from pyrozoo.runner import run_model

    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.standard_normal((50, 3)) * [1.0, 10.0, 100.0] + 50.0, columns=["a", "b", "c"])
    y = 100.0 + 1.5 * X["a"] + 3.0 * rng.standard_normal(50)
    X.assign(y=y).to_csv(tmp_path / "d.csv", index=False)
    run = run_model(RunConfig(model="spike-slab", inference="em", num_samples=20, seed=2, device="cpu",
                              progress=False, data=str(tmp_path / "d.csv"), options={"outcome": "y"}), save=False)
    est = SpikeSlabRegression(inference="em", seed=2, num_samples=20).fit(X, y)
    py, cli = est.result_.to_inference_data(), run.result.to_inference_data()
    assert py.attrs["response_shift"] == pytest.approx(y.mean(), rel=1e-12) and py.attrs["response_scale"] == 1.0
    assert py.attrs["response_shift"] == pytest.approx(cli.attrs["response_shift"], rel=1e-12)
    assert cli.attrs["response_scale"] == 1.0
    np.testing.assert_allclose(py.attrs["response_shift"] + py.observed_data["y"].values, y.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(py.log_likelihood["y"].values, cli.log_likelihood["y"].values, rtol=1e-8)
    for inference in ("gibbs", "svi"):  # every engine's result_ records it
        other = SpikeSlabRegression(inference=inference, seed=2, num_samples=10, num_chains=1, warmup_steps=10,
                                    steps=10).fit(X, y)
        assert other.result_.to_inference_data().attrs["response_shift"] == pytest.approx(y.mean(), rel=1e-12)


@pytest.mark.parametrize("inference", ["em", "gibbs"])
def test_constant_y_is_refused_before_any_work(inference):
    """SpikeSlabRegression.fit(X, np.full(20, 3.0)) was fitted (sigma2_ 5.45e-10, the floor lam sets; EM likewise)
    while the CLI refused a constant outcome: fit and make_dataset now refuse it with the CLI's wording, before any
    work (an earlier fit is kept), and so is a y constant up to rounding (1e12 + 1e-3 z)."""
    from pyrozoo.models.spike_slab import make_dataset

    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 3))
    est = SpikeSlabRegression(inference, num_samples=50, warmup_steps=20).fit(X, X[:, 0] + rng.standard_normal(20))
    before = est.coef_.copy()
    near = 1e12 + 1e-3 * rng.standard_normal(20)  # about 10 float64 steps of spread at 1e12
    for y, said in ((np.full(20, 3.0), r"\(3\.0\); nothing"), (near, "up to rounding")):
        with pytest.raises(PyrozooError, match=rf"y: expected an outcome that varies, got a constant .*{said}"):
            est.fit(X, y)
        with pytest.raises(PyrozooError, match="y: expected an outcome that varies"):
            make_dataset(X, y)
    np.testing.assert_array_equal(est.coef_, before)


def test_plce_nuisance_learner_still_takes_a_constant_outcome():
    """PLCE's nuisance learner scales y itself (sd 0 read as 1) and may meet a constant fold: it opts out."""
    from pyrozoo.causal.plce import SpikeSlabLearner

    X = np.random.default_rng(1).standard_normal((20, 3))
    np.testing.assert_allclose(SpikeSlabLearner().fit(X, np.full(20, 2.0)).predict(X), 2.0)


def test_hard_em_warns_when_it_keeps_every_feature_with_p_at_least_n():
    """Hard EM with p > n kept every feature silently (n = 12, p = 30: inclusion sum 30.0) although the docs say to
    use EMVS there: it now warns, naming em_variant='emvs'; EMVS itself and hard EM with p < n and a sparse fit
    do not."""
    import warnings

    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 30))
    y = 2 * X[:, 0] + rng.standard_normal(12)
    with pytest.warns(UserWarning, match=r"kept all 30 features: with p >= n \(30 >= 12\).*em_variant='emvs'"):
        est = SpikeSlabRegression("em", em_variant="hard").fit(X, y)
    assert est.inclusion_probabilities_.sum() == 30
    X2 = rng.standard_normal((60, 5))
    y2 = 2 * X2[:, 0] + rng.standard_normal(60)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="spike-slab hard EM")
        SpikeSlabRegression("em").fit(X, y)
        sparse = SpikeSlabRegression("em", em_variant="hard").fit(X2, y2)
    assert sparse.inclusion_probabilities_.sum() < 5


def test_nuts_max_tree_depth_out_of_range_is_named_as_typed_with_a_data_file(tmp_path, capsys):
    """With --data, -o nuts_max_tree_depth=0 passed the entry's checks and was refused only by run_mcmc, under its
    own name ("max_tree_depth: expected an integer >= 1, got 0"); now the option check names the option the user
    typed, before any data are read or any directory is made (the simulator's path already did)."""
    from pyrozoo.cli import main

    rng = np.random.default_rng(0)
    data = tmp_path / "d.csv"
    X = rng.standard_normal((20, 3))
    np.savetxt(data, np.column_stack([X, X[:, 0] + rng.standard_normal(20)]), delimiter=",",
               header="x0,x1,x2,y", comments="")
    for args in (["--data", str(data), "-o", "outcome=y"], []):
        code = main(["run", "spike-slab", "--inference", "nuts", *args, "-o", "nuts_max_tree_depth=0", "--out",
                     str(tmp_path / "r"), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and "nuts_max_tree_depth: expected an integer >= 1, got 0" in err, err
        assert "error: max_tree_depth" not in err
        assert not (tmp_path / "r").exists()


def _few_rows(n):
    """The QA's design (n = 30, p = 4: x1 correlated with x0, coefficients 1, 0.35, 0, 0, unit noise), its first n
    rows, as make_dataset reads a data file (lam the sample variance of y)."""
    from pyrozoo.models.spike_slab import dataset_to_standardized, make_dataset

    rng = np.random.default_rng(3)
    X = rng.standard_normal((30, 4))
    X[:, 1] += 0.5 * X[:, 0]
    y = 2.0 + X @ np.array([1.0, 0.35, 0.0, 0.0]) + rng.standard_normal(30)
    ds = make_dataset(X[:n], y[:n], lam=None)
    data, prior = dataset_to_standardized(ds)
    return data, prior


@pytest.mark.parametrize("n", [3, 6, 30])
def test_importance_sampling_over_the_candidate_starts_matches_exact_inclusion(n):
    """The check behind svi's multimodality warning: importance sampling with the mixture of the candidate starts'
    q as proposal (EMVS's fixed point, the models of EMVS's selection ladder, the empty model) against the exact
    2^p enumeration. Measured (seed 0): off by at most 0.027 (n = 3), 0.018 (n = 6), 0.003 (n = 30), effective
    sample size 399, 1155, 1430 of 3000-5000 draws; tolerance 0.06."""
    from pyrozoo.models.spike_slab import spike_slab_kwargs
    from pyrozoo.models.spike_slab_pyro import CHECK_MIN_ESS, choose_start, importance_inclusion

    data, prior = _few_rows(n)
    _, info = choose_start(data, prior, spike_slab_kwargs(data, prior))
    estimate, ess = importance_inclusion(data, prior, info["starts"])
    exact = exact_posterior(data, prior)["inclusion"]
    assert ess > CHECK_MIN_ESS
    assert float((estimate - exact).abs().max()) < 0.06


@pytest.mark.parametrize("n", [3, 6])
def test_svi_on_a_few_rows_starts_in_the_best_mode_and_warns_that_it_holds_one(n):
    """At n = 6 (and 3), p = 4 the posterior has several modes of comparable mass (exact inclusion 0.15-0.42 at
    n = 6, 0.16-0.26 at n = 3, the empty model the median one). SVI started at EMVS's fixed point, which keeps every
    feature (p* = 1, sigma^2 0.16), and q stayed there (the loss 13.78 -> 13.62 over 2000 steps): inclusion 0.83-0.99,
    E[sigma^2] 0.57 against exact 1.68, no warning. Now q starts at the candidate with the best ELBO (the empty
    model's, 1.9 nats above EMVS's at n = 6), E[sigma^2] is 2.0 (n = 6), and since one Gaussian q(w) cannot hold the
    other modes (its inclusion probabilities 0.02 there) the fit warns with the importance-sampling estimate."""
    from pyrozoo.models.spike_slab_pyro import svi_result

    data, prior = _few_rows(n)
    exact = exact_posterior(data, prior)
    with pytest.warns(UserWarning, match=r"svi: the inclusion probabilities are off: the Gaussian q\(w\) holds one "
                                         r"mode.*use --inference gibbs"):
        res = svi_result(data, prior, steps=100, num_samples=200, seed=0)
    start_elbo = res.fit_stats["start_elbo"]
    assert start_elbo.max() > start_elbo[0] + 1.0  # EMVS's start (the first) is not the best
    sigma2 = float(res.draws("sigma2").mean())
    assert abs(sigma2 / float(exact["sigma2_mean"]) - 1) < 0.3  # 0.18 (n = 6), -0.13 (n = 3); before -0.66, -0.53


def test_svi_with_enough_rows_keeps_the_emvs_start_and_does_not_warn():
    """At n = 30 of the same design the EMVS start is the best candidate and SVI's inclusion probabilities are
    within 0.06 of exact (0.055 against 0.106 on the weak x1 at 300 steps), so no multimodality warning."""
    import warnings

    from pyrozoo.models.spike_slab_pyro import svi_result

    data, prior = _few_rows(30)
    exact = exact_posterior(data, prior)["inclusion"].numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        res = svi_result(data, prior, steps=100, num_samples=200, seed=0)
    assert res.fit_stats["start_elbo"].argmax() == 0
    assert np.abs(res.draws("inclusion_prob").mean(0) - exact).max() < 0.06


def test_check_inclusion_warns_only_when_the_estimate_has_an_effective_sample_size():
    import warnings

    from pyrozoo.models.spike_slab_pyro import CHECK_MIN_ESS, check_inclusion

    reference = torch.tensor([0.15, 0.42])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_inclusion(np.array([0.2, 0.5]), reference, ess=1000.0)  # within 0.1
        check_inclusion(np.array([0.02, 0.03]), reference, ess=CHECK_MIN_ESS - 1)  # an estimate that says nothing
    with pytest.warns(UserWarning, match=r"feature 1: 0\.390 apart, more than 0\.1; effective sample size 1000"):
        check_inclusion(np.array([0.02, 0.03]), reference, ess=1000.0)


@pytest.mark.parametrize("inference", ["svi", "nuts"])
def test_svi_and_nuts_results_carry_gamma_drawn_from_its_conditional(inference):
    """Gibbs and EM results had gamma, SVI and NUTS (gamma summed out) did not, while docs list it. Now gamma_d is
    drawn per draw from Bernoulli(inclusion_prob_d), its exact conditional given w, sigma^2, theta, with a
    generator seeded by the fit's seed: same variables for every inference, reproducible, and its mean over draws
    agrees with inclusion_prob's (the Rao-Blackwellized estimate of the same probability) within 4 binomial sds."""
    import warnings

    from pyrozoo.models.spike_slab_pyro import nuts_result, svi_result

    X, y, _ = simulate_equicorrelated_design(1, n=40, p=4, num_signals=2)
    data = standardize(X, y)

    def fit(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if inference == "svi":
                return svi_result(data, PRIOR, steps=20, num_samples=300, seed=seed)
            return nuts_result(data, PRIOR, num_samples=60, warmup_steps=20, num_chains=1, seed=seed,
                               max_tree_depth=4)

    res = fit(0)
    gamma, probs = res.posterior["gamma"], res.posterior["inclusion_prob"]
    assert gamma.shape == probs.shape and gamma.dtype == np.int64 and set(np.unique(gamma)) <= {0, 1}
    assert res.dims["gamma"] == ["feature"]
    g, q = gamma.reshape(-1, data.p).mean(0), probs.reshape(-1, data.p).mean(0)
    sd = np.sqrt(np.clip(q * (1 - q), 0.0025, None) / gamma.reshape(-1, data.p).shape[0])
    assert np.all(np.abs(g - q) < 4 * sd)
    if inference == "svi":  # seeded (NUTS: a second fit would double the test's time)
        np.testing.assert_array_equal(fit(0).posterior["gamma"], gamma)
    summary = az.summary(res.to_inference_data(), var_names=["gamma"])
    assert len(summary) == data.p and np.allclose(summary["mean"].to_numpy(), g, atol=0.01)


def test_nuts_chains_start_apart_around_the_emvs_fixed_point(monkeypatch, small):
    """QA: nuts_result passed one init_to_value (the EMVS fixed point) to every chain, so on this multimodal
    posterior all chains could miss the same mode and R-hat said nothing. Chain 0 still starts at the fixed point;
    the others at seeded points 3 posterior-sd estimates away on the unconstrained scale (start_scales): the same seed
    gives the same starts, another seed others."""
    from torch.distributions import biject_to

    from pyrozoo.inference import mcmc
    from pyrozoo.models.spike_slab_pyro import START_SUPPORTS, nuts_result, start_scales

    data, _ = small
    seen = []
    orig = mcmc.EnergyNUTS.setup

    def setup(self, *args, **kwargs):
        orig(self, *args, **kwargs)
        seen.append({n: v.detach().clone() for n, v in self.initial_params.items()})

    monkeypatch.setattr(mcmc.EnergyNUTS, "setup", setup)
    runs = []
    for seed in (0, 0, 1):
        seen.clear()
        nuts_result(data, PRIOR, num_samples=2, warmup_steps=2, num_chains=3, seed=seed)
        runs.append(list(seen))
    fit = fit_emvs(data, PRIOR)
    assert len(runs[0]) == 3
    torch.testing.assert_close(runs[0][0]["w"], fit.w)  # chain 0 at the fixed point (w is unconstrained)
    torch.testing.assert_close(runs[0][0]["sigma2"], biject_to(START_SUPPORTS["sigma2"]).inv(
        torch.tensor(fit.sigma2, dtype=data.X.dtype)))
    scale = start_scales(data, PRIOR, fit)["w"]
    for c in (1, 2):
        z = (runs[0][c]["w"] - fit.w) / (mcmc.START_SPREAD * scale)
        assert 0.2 < float(z.std()) < 3 and float(z.abs().max()) < 6  # N(0, 1) draws at the slab's resolution
        assert all(torch.equal(runs[0][c][k], runs[1][c][k]) for k in runs[0][c])  # seeded
        assert not torch.equal(runs[0][c]["w"], runs[2][c]["w"])
    assert not torch.equal(runs[0][1]["w"], runs[0][2]["w"])
