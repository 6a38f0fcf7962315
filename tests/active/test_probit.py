"""Bayesian probit classification: Laplace fit, bivariate normal CDF, the closed-form inner product, BALD, loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.special import log_ndtr
from scipy.stats import multivariate_normal

from pyrozoo.active.acs_fw import ACSFW
from pyrozoo.active.baselines import BALD
from pyrozoo.active.loop import load_problem, make_acquisition, run_active_learning
from pyrozoo.active.posteriors import ProbitPoolPosterior, bivariate_normal_cdf, probit_expected_entropy
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


def _binary_entropy_of_probit(f: float) -> float:
    lp, lq = log_ndtr(f), log_ndtr(-f)
    return -(math.exp(lp) * lp + math.exp(lq) * lq)


def _expected_entropy_by_quad(m: float, s: float) -> float:
    """E_{z ~ N(m, s)} H(Phi(z)) by adaptive quadrature over the window where both the Gaussian (14 sd) and the
    bump H(Phi(z)) (|z| <= 40; H(Phi(40)) ~ 1e-347) live."""
    sd = math.sqrt(s)
    a, b = max(m - 14 * sd, -40.0), min(m + 14 * sd, 40.0)
    if a >= b:
        return 0.0
    c = -0.5 * math.log(2 * math.pi * s)
    breaks = [p for p in (0.0, m) if a < p < b] or None
    return quad(lambda f: _binary_entropy_of_probit(f) * math.exp(c - 0.5 * (f - m) ** 2 / s), a, b, points=breaks,
                limit=500, epsabs=0.0, epsrel=1e-12)[0]


def test_expected_noise_entropy_is_accurate_for_any_latent_variance():
    """E_w H(Phi(x^T w)) against adaptive quadrature from a tiny to a huge latent variance s (a fixed Gauss-Hermite
    rule in the standardized variable straddled the bump once sqrt(s) >~ 4: 0.169 instead of 0.174 at s = 16, 0
    instead of 0.036 at s = 400)."""
    ms, ss = (-5.0, 0.0, 1.0, 3.0, 10.0), (1e-6, 0.01, 1.0, 16.0, 100.0, 400.0, 1e4, 1e6)
    grid = [(m, s) for m in ms for s in ss]
    m = torch.tensor([g[0] for g in grid], dtype=torch.float64)
    s = torch.tensor([g[1] for g in grid], dtype=torch.float64)
    ref = torch.tensor([_expected_entropy_by_quad(*g) for g in grid], dtype=torch.float64)
    got = probit_expected_entropy(m, s)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=0.0)
    # through the posterior: w ~ N(m, s) in one dimension and x = 1, so z = w
    for mi, si, ri in zip(m.tolist(), s.tolist(), ref.tolist(), strict=True):
        post = ProbitPoolPosterior(torch.tensor([mi], dtype=torch.float64), torch.tensor([[si]], dtype=torch.float64))
        assert float(post.expected_noise_entropy(torch.ones(1, 1, dtype=torch.float64))[0]) == pytest.approx(ri,
                                                                                                             rel=1e-10)
    # s = 0: no averaging, H(Phi(m)); float32 in, float32 out
    point = probit_expected_entropy(m[::8], torch.zeros(5, dtype=torch.float64))
    torch.testing.assert_close(point, torch.tensor([_binary_entropy_of_probit(v) for v in ms], dtype=torch.float64),
                               rtol=1e-12, atol=0.0)
    single = probit_expected_entropy(m.float(), s.float())
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.double(), ref, rtol=1e-4, atol=1e-6)


def test_bald_ranking_on_breast_cancer_agrees_with_adaptive_quadrature():
    """After 10 labels (prior_scale 1) pool latent variances reach s ~ 300; the BALD top 10 is the one that exact
    E_w H gives (it differed in 3 of 10 points with the old fixed rule)."""
    problem = load_problem("breast-cancer", 0)
    labelled = torch.as_tensor(np.random.default_rng(0).choice(len(problem.y_pool), 10, replace=False))
    post = ProbitPoolPosterior.fit(problem.x_pool[labelled], problem.y_pool[labelled])
    m, s = problem.x_pool @ post.mean, ((problem.x_pool @ post.cov) * problem.x_pool).sum(1)  # z_n = x_n^T w
    assert float(s.max()) > 200  # the regime the old rule got wrong
    ref = torch.tensor([_expected_entropy_by_quad(a, b) for a, b in zip(m.tolist(), s.tolist(), strict=True)],
                       dtype=torch.float64)
    torch.testing.assert_close(post.expected_noise_entropy(problem.x_pool), ref, rtol=1e-10, atol=0.0)
    bald = post.predictive(problem.x_pool)[2] - ref
    expected = torch.sort(bald, descending=True, stable=True).indices[:10]
    assert BALD().select(post, problem.x_pool, 10).indices.tolist() == expected.tolist()


def _plackett(h, k, rho):
    """Cov(1{Z1 <= h}, 1{Z2 <= k}) = int_0^rho phi2(h, k; t) dt (Plackett), by adaptive quadrature."""
    def f(t):
        return math.exp(-(h * h - 2 * t * h * k + k * k) / (2 * (1 - t * t))) / (2 * math.pi * math.sqrt(1 - t * t))
    return quad(f, 0, rho, epsabs=0, epsrel=1e-13, limit=200)[0]


def test_probit_kernel_keeps_its_digits_for_confident_points():
    """QA: Phi2(z, z; rho) - Phi(z)^2 was taken in the upper tail, the difference of two numbers near 1: relative
    error 4.9e-9 at zeta 5, 1.1e-6 at 6, 2.4e-4 at 7 (0.84 at 8, and 3e7 for zeta 7 against -7) against the exact
    Plackett integral. indicator_cov reflects to the lower tail (a sign flip of rho and of the covariance where the
    signs differ); the kernel's diagonal and columns use it."""
    from pyrozoo.active.posteriors import indicator_cov

    cases = [(5, 5, 0.5), (6, 6, 0.8), (7, 7, 0.9), (8, 8, 0.95), (-7, -7, 0.9), (7, -7, 0.9), (7, -7, -0.9),
             (6, 5.5, -0.5), (5, -2, 0.6), (0.5, -0.3, 0.2), (0.0, 4.0, 0.7)]
    h, k, r = (torch.tensor(c, dtype=torch.float64) for c in zip(*cases, strict=True))
    got = indicator_cov(h, k, r)
    for i, (a, b, rho) in enumerate(cases):
        assert float(got[i]) == pytest.approx(_plackett(a, b, rho), rel=1e-5, abs=0), (a, b, rho)
    # the kernel at confident points: m = (0, 6, -6, 7) / sqrt(1 + s) with s = 0.25 on every row
    mean = torch.tensor([1.0, 0.0], dtype=torch.float64)
    cov = torch.diag(torch.tensor([0.0, 0.25], dtype=torch.float64))
    post = ProbitPoolPosterior(mean, cov)
    zeta = torch.tensor([0.3, 6.0, -6.0, 7.0], dtype=torch.float64)
    pool = torch.stack([zeta * math.sqrt(1.25), torch.ones(4, dtype=torch.float64)], 1)
    kern = post.closed_form_kernel(pool, "fisher")
    rho = 0.25 / 1.25  # x_n^T Sigma x_m / sqrt((1 + s_n)(1 + s_m)) for every pair (s = 0.25, distinct rows too)
    ref = torch.tensor([[_plackett(float(a), float(b), rho) for b in zeta] for a in zeta],
                       dtype=torch.float64) * (pool @ pool.T)
    gram = torch.stack([kern.column(f) for f in range(4)], 1)
    torch.testing.assert_close(kern.diag(), torch.diagonal(ref), rtol=1e-5, atol=0)
    # pairs of confident points of one sign to 1e-5 relative (the upper-tail form: 1e-6 to 1); every pair to 1e-5
    # relative or 1e-15 absolute per unit x_n . x_m: Phi2's Owen's T terms round at ~eps Phi(-min(|h|, |k|)), which
    # is the whole covariance where it is tiny (zeta -6 against 7: ~1e-21), so such a pair has no relative digits
    same = ((zeta[:, None] > 0) == (zeta[None, :] > 0)) & (zeta.abs()[:, None] >= 5) & (zeta.abs()[None, :] >= 5)
    torch.testing.assert_close(gram[same], ref[same], rtol=1e-5, atol=0)
    assert ((gram - ref).abs() <= 1e-5 * ref.abs() + 1e-15 * (pool @ pool.T).abs()).all()


def test_bivariate_normal_cdf_refuses_an_invalid_correlation():
    """QA: rho=1.5 returned 1.0 and rho=nan returned nan, silently; now a PyrozooError naming rho (checked once per
    call on the whole tensor). The limits rho = +-1 stay valid: Phi(min(h, k)) and max(Phi(h) + Phi(k) - 1, 0)."""
    h, k = torch.tensor([0.3, 1.0], dtype=torch.float64), torch.tensor([-0.5, 2.0], dtype=torch.float64)
    for rho, shown in ((1.5, "1.5"), (float("nan"), "nan"), (-1.0000001, "-1.0000001")):
        with pytest.raises(PyrozooError, match=rf"rho: expected correlations in \[-1, 1\], got {shown} \(1 of 2"):
            bivariate_normal_cdf(h, k, torch.tensor([0.2, rho], dtype=torch.float64))
    norm = torch.distributions.Normal(0.0, 1.0)
    torch.testing.assert_close(bivariate_normal_cdf(h, k, torch.tensor(1.0, dtype=torch.float64)),
                               norm.cdf(torch.minimum(h, k)))
    torch.testing.assert_close(bivariate_normal_cdf(h, k, torch.tensor(-1.0, dtype=torch.float64)),
                               (norm.cdf(h) + norm.cdf(k) - 1).clamp(min=0))


def test_a_correlation_a_rounding_step_past_one_counts_as_one():
    """rho computed as cov / sqrt(v1 v2) lands an ulp past +-1 (1 + 2.2e-16 in float64, 1 + 1.2e-7 in float32):
    the check refused it. Up to 4 ulps of rho's dtype now count as +-1 (the limits' values); 1.5 and NaN are still
    refused."""
    h, k = torch.tensor([0.3, -0.2], dtype=torch.float64), torch.tensor([0.1, 0.4], dtype=torch.float64)
    for dtype in (torch.float64, torch.float32):
        ulp = torch.finfo(dtype).eps
        for one in (1.0, -1.0):
            past = torch.tensor(one * (1 + ulp), dtype=dtype)
            torch.testing.assert_close(bivariate_normal_cdf(h, k, past),
                                       bivariate_normal_cdf(h, k, torch.tensor(one, dtype=torch.float64)))
    for bad in (1.5, float("nan"), 1 + 1e-6):
        with pytest.raises(PyrozooError, match=r"^rho: expected correlations in \[-1, 1\]"):
            bivariate_normal_cdf(h, k, torch.tensor(bad, dtype=torch.float64))
