"""Bayesian probit classification: Laplace fit, bivariate normal CDF, the closed-form inner product, BALD, loop."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import multivariate_normal

from pyrozoo.active.acs_fw import ACSFW
from pyrozoo.active.loop import load_problem, make_acquisition, run_active_learning
from pyrozoo.active.posteriors import ProbitPoolPosterior, bivariate_normal_cdf
from pyrozoo.active.projections import projected_embedding
from pyrozoo.errors import PyrozooError


@pytest.fixture
def fitted():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.ones(60, 1), torch.randn(60, 2, generator=g)], 1).double()
    y = (x @ torch.tensor([0.3, 1.5, -1.0]).double() + torch.randn(60, generator=g).double() > 0).double()
    pool = torch.cat([torch.ones(6, 1), 1.5 * torch.randn(6, 2, generator=g)], 1).double()
    return x, y, ProbitPoolPosterior.fit(x, y, prior_scale=2.0), pool


def test_bivariate_normal_cdf_matches_scipy():
    cases = [(0.3, -0.5, 0.4), (-1.2, -0.7, -0.6), (0.0, 0.8, 0.9), (2.0, 1.5, 0.0), (0.5, 0.5, 0.95)]
    h, k, r = (torch.tensor(c, dtype=torch.float64) for c in zip(*cases, strict=True))
    got = bivariate_normal_cdf(h, k, r)
    for i, (a, b, rho) in enumerate(cases):
        ref = multivariate_normal(mean=[0, 0], cov=[[1, rho], [rho, 1]]).cdf([a, b])
        assert float(got[i]) == pytest.approx(ref, abs=1e-6)


def test_laplace_fit_is_the_mode_with_the_inverse_hessian(fitted):
    x, y, post, _ = fitted

    def log_post(w):
        z = x @ w
        return (y * torch.special.log_ndtr(z) + (1 - y) * torch.special.log_ndtr(-z)).sum() - (w @ w) / 8.0

    w = post.mean.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(log_post(w), w)
    assert float(grad.abs().max()) < 1e-8
    hess = torch.autograd.functional.hessian(log_post, post.mean)
    torch.testing.assert_close(post.cov, torch.linalg.inv(-hess))


def test_closed_form_inner_product_matches_monte_carlo(fitted):
    _, _, post, pool = fitted
    kern = post.closed_form_kernel(pool, "fisher")
    gram = torch.stack([kern.column(f) for f in range(pool.shape[0])], 1)
    torch.testing.assert_close(gram, gram.T)
    torch.testing.assert_close(torch.diag(gram), kern.diag())
    torch.testing.assert_close(kern.row_sums(), gram.sum(1))
    # E_w[(p_n - Phi(x_n^T w))(p_m - Phi(x_m^T w))] (x_n . x_m) by sampling w ~ N(mu, Sigma)
    n = 100000
    z = post.function_draws(pool, n, generator=torch.Generator().manual_seed(1))[0]  # (n, M)
    p = post.predictive(pool)[0]
    r = p - torch.special.ndtr(z)
    prods = (r[:, :, None] * r[:, None, :]) * (pool @ pool.T)
    mc, se = prods.mean(0), prods.std(0) / math.sqrt(n)
    assert ((mc - gram).abs() <= 5 * se + 1e-12).all()
    # the predictive p_n = Phi(zeta_n) is E_w[Phi(x_n^T w)]
    ez = torch.special.ndtr(z)
    assert ((ez.mean(0) - p).abs() <= 5 * ez.std(0) / math.sqrt(n)).all()


def test_bald_expectation_and_projections(fitted):
    _, _, post, pool = fitted
    z = post.function_draws(pool, 100000, generator=torch.Generator().manual_seed(2))[0]
    q = torch.special.ndtr(z).clamp(1e-300, 1 - 1e-16)
    h = -(q * q.log() + (1 - q) * (1 - q).log())
    assert ((post.expected_noise_entropy(pool) - h.mean(0)).abs() <= 5 * h.std(0) / math.sqrt(1e5)).all()
    proj = projected_embedding(post, pool, 64, generator=torch.Generator().manual_seed(3))
    assert proj.shape == (6, 64) and torch.isfinite(proj).all()
    assert ACSFW("projection", 64).select(post, pool, 3).num_selected <= 3
    with pytest.raises(PyrozooError, match="no closed-form 'euclidean'"):
        ACSFW("euclidean").select(post, pool, 3)


def test_loop_on_breast_cancer_reports_accuracy():
    problem = load_problem("breast-cancer", 0)
    assert problem.task == "classification"
    df = run_active_learning(problem, make_acquisition("acs-fw"), model="probit", init_size=20, batch_size=10,
                             budget=20, progress=False)
    assert "accuracy" in df.columns and df["accuracy"].between(0, 1).all()
    assert df["num_labelled"].iloc[-1] == 40
    with pytest.raises(PyrozooError, match="classification model"):
        run_active_learning(load_problem("boston", 0), make_acquisition("random"), model="probit", progress=False)
