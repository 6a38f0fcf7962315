"""SWAGGuide under Pyro's vectorization: Delta sites with the site's own event dims, one SWAG draw per element of
an outer vectorized plate (``Predictive(parallel=True)``, ``Trace_ELBO(vectorize_particles=True)``)."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Predictive, Trace_ELBO

from pyrozoo.guides.swag import SWAGGuide
from pyrozoo.inference.predictive import align_global_draws
from pyrozoo.inference.swag import SWAGPosterior

SITES = {"a": (2,), "b": (2, 3)}


def _posterior() -> SWAGPosterior:
    gen = torch.Generator().manual_seed(3)
    P = 8
    return SWAGPosterior(torch.linspace(-2.0, 2.0, P, dtype=torch.float64),
                         torch.linspace(0.5, 2.0, P, dtype=torch.float64),
                         torch.randn(P, 3, generator=gen, dtype=torch.float64), scale=0.5)


def _model(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """A global vector ``a``, a global matrix ``b`` and a data plate at dim -1."""
    a = pyro.sample("a", dist.Normal(torch.zeros(2, dtype=x.dtype), 1.0).to_event(1))
    b = pyro.sample("b", dist.Normal(torch.zeros(2, 3, dtype=x.dtype), 1.0).to_event(2))
    a, b = align_global_draws(a, 1), align_global_draws(b, 2)
    mean = (a.unsqueeze(-2) * x).sum(-1) + b.sum((-2, -1)).unsqueeze(-1)
    with pyro.plate("obs_id", x.shape[0], dim=-1):
        return pyro.sample("y", dist.Normal(mean, 1.0), obs=y)


def _flat(samples: dict[str, torch.Tensor]) -> torch.Tensor:
    n = samples["a"].shape[0]
    return torch.cat([samples["a"].reshape(n, -1), samples["b"].reshape(n, -1)], dim=-1)


def test_sites_keep_their_event_dims_under_a_vectorized_plate():
    """The Delta sites had event_dim = value.dim(), counting the plate's dims as event dims: under an outer plate
    Pyro expanded them to (4, 1, 4, 1, 2) (Predictive's reshape failed) and the ELBO saw event dims 3 against the
    model's 1. Now: batch shape (4, 1) on the plate, event dims those of the site, four independent draws."""
    guide = SWAGGuide(_posterior(), SITES, dtype=torch.float64)
    with pyro.plate("particles", 4, dim=-2):
        tr = poutine.trace(guide).get_trace()
    for name, shape in SITES.items():
        site = tr.nodes[name]
        assert site["value"].shape == (4, 1, *shape)
        assert site["fn"].event_dim == len(shape) and site["fn"].batch_shape == (4, 1)
    flat = _flat({k: tr.nodes[k]["value"] for k in SITES})
    assert torch.cdist(flat, flat).add(torch.eye(4, dtype=flat.dtype)).min() > 0  # no two draws alike
    single = poutine.trace(guide).get_trace()
    assert single.nodes["b"]["value"].shape == (2, 3) and single.nodes["b"]["fn"].event_dim == 2


def test_parallel_predictive_draws_have_the_swag_moments_and_match_the_sequential_path():
    """Predictive(parallel=True) crashed. Its draws now have the SWAG mean and covariance, and the sequential
    path's the same per-coordinate mean and variance. Tolerances, 5 Monte Carlo sds: sqrt(S_ii / n) for a mean,
    sqrt((S_ii S_jj + S_ij^2) / n) for a covariance entry; two-sample: sqrt(v (1/n1 + 1/n2)) for a difference of
    means and v sqrt(2/n1 + 2/n2) for a difference of variances (Gaussian draws)."""
    post = _posterior()
    guide = SWAGGuide(post, SITES, dtype=torch.float64)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    n1, n2 = 20_000, 1_000
    par = Predictive(_model, guide=guide, num_samples=n1, parallel=True)(x)
    seq = Predictive(_model, guide=guide, num_samples=n2)(x)
    for name in ("a", "b", "y"):
        assert par[name].shape[1:] == seq[name].shape[1:]
    assert par["y"].shape == (n1, 5)
    cov = post.covariance()
    v = cov.diagonal()
    d1, d2 = _flat(par), _flat(seq)
    assert ((d1.mean(0) - post.mean).abs() < 5 * (v / n1).sqrt()).all()
    tol = 5 * ((v[:, None] * v[None] + cov**2) / n1).sqrt()
    assert ((torch.cov(d1.T) - cov).abs() < tol).all()
    assert ((d1.mean(0) - d2.mean(0)).abs() < 5 * (v * (1 / n1 + 1 / n2)).sqrt()).all()
    assert ((d1.var(0) - d2.var(0)).abs() < 5 * v * (2 / n1 + 2 / n2) ** 0.5).all()


@pytest.mark.parametrize("diagonal", [False, True])
def test_trace_elbo_with_the_guide_is_the_elbo_of_the_swag_gaussian(diagonal):
    """QA (D2): the guide scored an auxiliary z ~ N(0, I_{P+K}) and Delta sites of log density 0, so Trace_ELBO took
    q's entropy as 0.5 (P + K) log(2 pi e), not that of q(theta) = N(mean, Sigma), 0.5 (P log(2 pi e) + log det Sigma)
    (222 nats off for a P = 42 network). Now theta itself is the auxiliary draw and Trace_ELBO's loss is -ELBO =
    -E_q[log p(y, theta)] - H[q]. Checked against the exact value (the model is linear-Gaussian in theta = (a, b):
    E_q log N(y_i; A_i theta, 1) = -0.5 log(2 pi) - 0.5 ((y_i - A_i mean)^2 + A_i Sigma A_i^T)) and against an
    independent Monte Carlo estimate, log p(y, theta) - log N(theta; mean, Sigma) at draws of SWAGPosterior.sample.
    Tolerance: 5 Monte Carlo sds of the per-draw value."""
    base = _posterior()
    post = SWAGPosterior(base.mean, base.var, base.deviations[:, :0] if diagonal else base.deviations,
                         diagonal=diagonal, scale=0.05)  # a narrow q: log det Sigma far from 0
    guide = SWAGGuide(post, SITES, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 2, generator=gen, dtype=torch.float64)
    mean, cov = post.mean, post.covariance()
    A = torch.cat([x, torch.ones(6, 6, dtype=torch.float64)], dim=1)  # y_i's mean is A_i theta
    y = A @ mean + torch.randn(6, generator=gen, dtype=torch.float64)  # near q's fit: a small Monte Carlo spread
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    P = mean.shape[0]
    exp_loglik = (-half_log_2pi - 0.5 * ((y - A @ mean) ** 2 + ((A @ cov) * A).sum(1))).sum()
    exp_prior = (-half_log_2pi - 0.5 * (mean**2 + cov.diagonal())).sum()
    entropy = 0.5 * (P * math.log(2 * math.pi * math.e) + torch.logdet(cov))
    exact = float(-(exp_loglik + exp_prior) - entropy)

    n = 20_000
    theta = post.sample(n, generator=torch.Generator().manual_seed(2))
    log_p = (dist.Normal(A @ theta.T, 1.0).log_prob(y[:, None]).sum(0)
             + dist.Normal(0.0, 1.0).log_prob(theta).sum(-1))
    log_q = dist.MultivariateNormal(mean, cov).log_prob(theta)
    own = -(log_p - log_q)
    tol = 5 * float(own.std()) / math.sqrt(n)
    assert abs(float(own.mean()) - exact) < tol

    pyro.set_rng_seed(3)
    loss = Trace_ELBO(num_particles=n, vectorize_particles=True, max_plate_nesting=1).loss(_model, guide, x, y)
    assert abs(loss - exact) < tol
    assert abs(loss - float(own.mean())) < tol * math.sqrt(2)
    # the old entropy term's error, 0.5 (P + K) log(2 pi e) - H[q], is far beyond the tolerance
    K = post.deviations.shape[1]
    assert abs(0.5 * (P + K) * math.log(2 * math.pi * math.e) - float(entropy)) > 10 * tol
