"""SWAGGuide under Pyro's vectorization: Delta sites with the site's own event dims, one SWAG draw per element of
an outer vectorized plate (``Predictive(parallel=True)``, ``Trace_ELBO(vectorize_particles=True)``)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer import Predictive

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
