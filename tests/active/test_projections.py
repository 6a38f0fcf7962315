"""Random projections and closed-form inner products for Bayesian linear regression.

With known noise the weighted Euclidean inner product E_theta[L_n L_m] has an exact feature map; the J-projection
estimate must converge to it (errors within 5 Monte Carlo standard errors, shrinking as J grows). The closed-form
weighted Fisher product is checked against autograd gradients of L_n at posterior draws."""

from __future__ import annotations

import math

import pytest
import torch

from pyrozoo.active.posteriors import BLRPoolPosterior, SampledRegressionPosterior
from pyrozoo.active.projections import projected_embedding
from pyrozoo.errors import PyrozooError


def _problem(noise: float = 0.7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.ones(25, 1), torch.randn(25, 2, generator=g)], 1).double()
    y = x @ torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64) + noise * torch.randn(25, generator=g).double()
    pool = torch.cat([torch.ones(6, 1), 2 * torch.randn(6, 2, generator=g)], 1).double()
    return BLRPoolPosterior.fit(x, y, prior_scale=1.5, noise=noise), pool


def _ln_at_draws(post: BLRPoolPosterior, pool: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """L_n(theta_j) (J, M) for draws w (J, D), written out from the definition (known noise)."""
    s2 = post.post.noise**2
    mean, var, ent = post.predictive(pool)
    f = w @ pool.T
    return -0.5 * math.log(2 * math.pi * s2) - (var + (mean - f) ** 2) / (2 * s2) + ent


def test_projection_inner_products_converge_to_closed_form():
    post, pool = _problem()
    exact = post.closed_form_embedding(pool, "euclidean")
    k_exact = exact @ exact.T
    errors = {}
    for j in (100, 20000):
        gen = torch.Generator().manual_seed(1)
        proj = projected_embedding(post, pool, j, generator=gen)
        assert proj.shape == (6, j)
        k_hat = proj @ proj.T
        # Monte Carlo standard error of each entry from the per-draw products
        ln = proj * math.sqrt(j)
        prods = ln[:, None, :] * ln[None, :, :]
        se = prods.std(-1) / math.sqrt(j)
        assert ((k_hat - k_exact).abs() <= 5 * se + 1e-12).all()
        errors[j] = float(((k_hat - k_exact).abs() / k_exact.abs().max()).max())
    assert errors[20000] < errors[100]
    assert errors[20000] < 0.05


def test_euclidean_closed_form_matches_definition_by_monte_carlo():
    """The same check without going through projected_embedding: L_n written out at exact draws."""
    post, pool = _problem(noise=0.3, seed=2)
    gen = torch.Generator().manual_seed(3)
    w = post.post.sample(40000, generator=gen)["w"]
    ln = _ln_at_draws(post, pool, w)
    prods = ln[:, :, None] * ln[:, None, :]
    k_mc, se = prods.mean(0), prods.std(0) / math.sqrt(w.shape[0])
    phi = post.closed_form_embedding(pool, "euclidean")
    assert ((k_mc - phi @ phi.T).abs() <= 5 * se).all()


def test_fisher_closed_form_matches_autograd_monte_carlo():
    post, pool = _problem(noise=0.5, seed=4)
    gen = torch.Generator().manual_seed(5)
    w = post.post.sample(20000, generator=gen)["w"].requires_grad_(True)
    ln = _ln_at_draws(post, pool, w)
    grads = torch.stack([torch.autograd.grad(ln[:, n].sum(), w, retain_graph=True)[0] for n in range(pool.shape[0])])
    prods = torch.einsum("njd,mjd->jnm", grads, grads)
    k_mc, se = prods.mean(0), prods.std(0) / math.sqrt(w.shape[0])
    phi = post.closed_form_embedding(pool, "fisher")
    assert ((k_mc - phi @ phi.T).abs() <= 5 * se + 1e-12).all()
    # and the paper's formula directly: (x_n . x_m)(x_n^T Sigma x_m) / s^4
    sigma = post.post.cov
    direct = (pool @ pool.T) * (pool @ sigma @ pool.T) / post.post.noise**4
    torch.testing.assert_close(phi @ phi.T, direct)


def test_sampled_posterior_projections_and_moments():
    """A posterior known only by stored draws (e.g. from NUTS) gives the same predictive moments."""
    post, pool = _problem(seed=6)
    gen = torch.Generator().manual_seed(7)
    w = post.post.sample(50000, generator=gen)["w"]
    sampled = SampledRegressionPosterior(lambda x: w @ x.T, post.post.noise**2, w.shape[0])
    m_s, v_s, h_s = sampled.predictive(pool)
    m, v, h = post.predictive(pool)
    f = w @ pool.T
    assert ((m_s - m).abs() <= 5 * f.std(0) / math.sqrt(w.shape[0])).all()
    torch.testing.assert_close(v_s, v, rtol=0.03, atol=0)
    proj = projected_embedding(sampled, pool, 500, generator=torch.Generator().manual_seed(8))
    assert proj.shape == (6, 500) and torch.isfinite(proj).all()
    with pytest.raises(PyrozooError, match="num_projections"):
        projected_embedding(sampled, pool, 60000)


@pytest.mark.parametrize("j", [0, -3, 2.5])
def test_num_projections_below_one_is_an_error(j):
    post, pool = _problem()
    with pytest.raises(PyrozooError, match="num_projections"):
        projected_embedding(post, pool, j)


def test_heteroscedastic_draws_follow_the_definition():
    """Per-draw, per-point noise (a BNN with a variance head): L^_n written out by hand."""
    from pyrozoo.active.posteriors import from_per_draw_moments

    g = torch.Generator().manual_seed(9)
    pool = torch.randn(7, 2, generator=g, dtype=torch.float64)
    a = torch.randn(50, 2, generator=g, dtype=torch.float64)

    class Stub:
        num_draws = 50

        def per_draw_moments(self, x):
            return a @ x.T, 0.1 + (x**2).sum(1) * torch.linspace(0.5, 2, 50, dtype=torch.float64)[:, None]

    post = from_per_draw_moments(Stub())
    proj = projected_embedding(post, pool, 50, generator=torch.Generator().manual_seed(0))
    f, nv = Stub().per_draw_moments(pool)
    idx = torch.randperm(50, generator=torch.Generator().manual_seed(
        int(torch.randint(2**62, (1,), generator=torch.Generator().manual_seed(0)))))
    f, nv = f[idx], nv[idx]
    mean, var, ent = post.predictive(pool)
    ell = -0.5 * torch.log(2 * math.pi * nv) - (var + (mean - f) ** 2) / (2 * nv) + ent
    torch.testing.assert_close(proj, ell.T / math.sqrt(50))
    torch.testing.assert_close(var, nv.mean(0) + f.var(0, unbiased=False))
    with pytest.raises(PyrozooError, match="per_draw_moments"):
        from_per_draw_moments(object())


def test_a_j_too_large_for_memory_is_refused_before_any_draw():
    """--num-projections 1e9 on blr failed with NumPy's _ArrayMemoryError deep inside the posterior's draws (or was
    OOM-killed); J x (pool points + columns) values at PROJECTION_BYTES_PER_VALUE bytes must fit the memory budget
    (the pointwise arrays' ~6 GB), checked before any draw."""
    from pyrozoo.active import projections
    from pyrozoo.inference.assemble import MAX_POINTWISE_VALUES, POINTWISE_BYTES_PER_VALUE

    budget = projections.projection_memory_budget()
    assert budget == MAX_POINTWISE_VALUES * POINTWISE_BYTES_PER_VALUE
    most = projections.max_num_projections(400, 14)
    assert most == budget // (projections.PROJECTION_BYTES_PER_VALUE * 414) and most * 414 * 32 <= budget
    projections.check_projection_memory(most, 400, 14)  # the largest J that fits is accepted
    with pytest.raises(PyrozooError, match=rf"^num_projections: expected at most {most:,} random projections \(J, "
                                           rf"--num-projections\) for 400 pool points with 14 columns: .* got "
                                           rf"{most + 1:,} \(about "):
        projections.check_projection_memory(most + 1, 400, 14)
    with pytest.raises(PyrozooError, match=r"^num_projections: the pool of 300,000,000 points with 2 columns is too "
                                           r"large for even one random projection"):
        projections.check_projection_memory(1, 300_000_000, 2)

    class NoDraws(SampledRegressionPosterior):
        def expected_log_likelihood(self, *args, **kwargs):
            raise AssertionError("no draw may start")

    post = NoDraws(lambda x: x.sum(1)[None], 1.0, 1)
    x = torch.zeros(400, 14, dtype=torch.float64)
    with pytest.raises(PyrozooError, match=r"^num_projections: expected at most [\d,]+ random projections .* got "
                                           r"1,000,000,000 \(about 13,248 GB\)$"):
        projected_embedding(post, x, 10**9)


def test_unknown_noise_euclidean_closed_form_integrates_tau_out():
    """With unknown noise (Normal-Gamma posterior) the closed form plugged in tau_hat and a Gaussian entropy, while
    the projections average over tau with the Student-t predictive: 8-20% apart, another acquisition. The closed form
    is now E_(w, tau)[L_n L_m] exactly: J projections and L_n written out at (w, tau) draws converge to it (within
    5 Monte Carlo se), and the plug-in form is far outside that."""
    g = torch.Generator().manual_seed(6)
    x = torch.cat([torch.ones(25, 1), torch.randn(25, 2, generator=g)], 1).double()
    y = x @ torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64) + 0.7 * torch.randn(25, generator=g).double()
    pool = torch.cat([torch.ones(6, 1), 2 * torch.randn(6, 2, generator=g)], 1).double()
    post = BLRPoolPosterior.fit(x, y)
    phi = post.closed_form_embedding(pool, "euclidean")
    k_exact = phi @ phi.T
    kern = post.closed_form_kernel(pool, "euclidean")  # the O(M D) oracle Frank-Wolfe uses agrees with the map
    torch.testing.assert_close(torch.stack([kern.column(n) for n in range(6)], 1), k_exact)
    torch.testing.assert_close(kern.diag(), k_exact.diag())
    torch.testing.assert_close(kern.row_sums(), k_exact.sum(1))
    # L_n(w, tau) from the definition at exact posterior draws
    draws = post.post.sample(200000, generator=torch.Generator().manual_seed(7))
    mean, var, ent = post.predictive(pool)
    tau = draws["tau"][:, None]
    ln = 0.5 * torch.log(tau / (2 * math.pi)) - 0.5 * tau * (var + (mean - draws["w"] @ pool.T) ** 2) + ent
    prods = ln[:, :, None] * ln[:, None, :]
    k_mc, se = prods.mean(0), prods.std(0) / math.sqrt(ln.shape[0])
    assert ((k_mc - k_exact).abs() <= 5 * se).all()
    q = ((pool @ post.post.cov_unit) * pool).sum(1)
    e = 0.5 * torch.log1p(q) - q
    plug_in = e[:, None] * e[None, :] + 0.5 * (pool @ post.post.cov_unit @ pool.T) ** 2
    assert ((k_mc - plug_in).abs() > 5 * se).any()
    assert float(((plug_in - k_exact).abs() / k_exact.abs().max()).max()) > 0.05
    # and through projected_embedding, as acs-fw-projection computes it
    errors = {}
    for j in (100, 20000):
        proj = projected_embedding(post, pool, j, generator=torch.Generator().manual_seed(8))
        k_hat, per = proj @ proj.T, proj * math.sqrt(j)
        se = (per[:, None, :] * per[None, :, :]).std(-1) / math.sqrt(j)
        assert ((k_hat - k_exact).abs() <= 5 * se + 1e-12).all()
        errors[j] = float(((k_hat - k_exact).abs() / k_exact.abs().max()).max())
    assert errors[20000] < errors[100] and errors[20000] < 0.05


def test_unknown_noise_euclidean_form_needs_a_finite_predictive_variance():
    """With a posterior Gamma shape a <= 1 the Student-t predictive has no variance and E[L_n L_m] is infinite: the
    closed form says so by name (the plug-in gave a batch of a finite, different quantity)."""
    post = BLRPoolPosterior.fit(torch.tensor([[1.0, 0.3]]), torch.tensor([0.5]), a0=0.3)
    with pytest.raises(PyrozooError, match=r"^a0: the weighted Euclidean inner product with unknown noise needs a "
                                           r"finite predictive variance, .*got a = 0.8"):
        post.closed_form_kernel(torch.randn(5, 2, dtype=torch.float64), "euclidean")
    assert post.closed_form_kernel(torch.randn(5, 2, dtype=torch.float64), "fisher") is not None
