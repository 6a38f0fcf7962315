"""Guides over the inducing values u = f(Z) of the sparse GP (``pyrozoo.models.sparse_gp``).

* :func:`optimal_qu`: the optimal q(u) in closed form. With the statistics of
  :func:`~pyrozoo.models.gp_linalg.sparse_gp_stats` (Bt = K_uf Lambda^-1 K_fu, r = K_uf Lambda^-1 y) and
  S = (K_uu + Bt)^-1 = (L_A L_A^T)^-1:

      q(u) = N(K_uu S r, K_uu S K_uu).

  For FITC this is the exact posterior p(u | y) of the FITC model; for VFE (Lambda = sigma^2 I) it is Titsias'
  optimal q(u) = N(sigma^-2 K_uu S K_uf y, K_uu S K_uu), at which the ELBO equals the collapsed bound.
* :func:`make_fixed_qu_guide`: a guide drawing u from a given Gaussian (used to draw from the optimal q(u)).
* :func:`make_free_qu_guide`: a free Gaussian q(u) = N(m, S S^T) with ``pyro.param`` m and lower-triangular S,
  fitted by (minibatch) SVI jointly with the model's pseudo-inputs and hyperparameters (Hensman et al. 2013).
* :func:`make_whitened_qu_guide`: the same family in the whitened parametrization (Hensman et al. 2015; GPflow's
  ``whiten=True``): u = L v with L = chol(K_uu) at the current Z and hyperparameters, q(v) = N(m, S S^T), so
  q(u) = N(L m, L S S^T L^T) and KL(q(u) || p(u)) = KL(q(v) || N(0, I)). The sparse GP's ``svi`` uses it: in u's
  own coordinates K_uu of nearby pseudo-inputs is ill-conditioned, and Adam's equal-size steps on m and S
  wreck a tight q(u) (the bound fell from -24.3 to -29.8 in 100 steps at lr 0.01 from the optimal q(u)); in v's
  coordinates the prior is N(0, I) and a step of lr moves q(u) by lr in units of its prior sd.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from pyrozoo.models.gp_linalg import SparseStats, jitter_cholesky


def optimal_qu(stats: SparseStats) -> tuple[torch.Tensor, torch.Tensor]:
    """(loc, scale_tril) of the optimal q(u) (see module docstring); cost O(M^3)."""
    Kuu = stats.L @ stats.L.T
    R = torch.linalg.solve_triangular(stats.LA, Kuu, upper=False)  # L_A^-1 K_uu
    c = torch.linalg.solve_triangular(stats.LA, stats.r.unsqueeze(-1), upper=False)
    loc = (R.T @ c).squeeze(-1)
    cov = R.T @ R
    return loc, jitter_cholesky(0.5 * (cov + cov.T), jitter=1e-12, max_tries=10, name="q(u) covariance")

def make_fixed_qu_guide(loc: torch.Tensor, scale_tril: torch.Tensor) -> Callable[..., torch.Tensor]:
    """A guide whose only site is u ~ N(loc, scale_tril scale_tril^T) (no parameters)."""

    def fixed_qu_guide(*args: Any, **kwargs: Any) -> torch.Tensor:
        return pyro.sample("u", dist.MultivariateNormal(loc, scale_tril=scale_tril))

    return fixed_qu_guide


def make_free_qu_guide(init_loc: torch.Tensor, init_scale_tril: torch.Tensor) -> Callable[..., torch.Tensor]:
    """Free Gaussian q(u) = N(qu_loc, qu_scale_tril qu_scale_tril^T), both ``pyro.param``; start e.g. at the prior
    (zero mean, chol K_uu) or at the optimal q(u) of the initial pseudo-inputs."""

    def free_qu_guide(*args: Any, **kwargs: Any) -> torch.Tensor:
        loc = pyro.param("qu_loc", init_loc.detach().clone())
        tril = pyro.param("qu_scale_tril", init_scale_tril.detach().clone(), constraint=constraints.lower_cholesky)
        return pyro.sample("u", dist.MultivariateNormal(loc, scale_tril=tril))

    return free_qu_guide


def whiten_qu(L: torch.Tensor, loc: torch.Tensor, scale_tril: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q(u) = N(loc, scale_tril scale_tril^T) as q(v) for u = L v: (L^-1 loc, L^-1 scale_tril), lower triangular
    with the same positive diagonal signs (L^-1 is lower triangular with a positive diagonal)."""
    m = torch.linalg.solve_triangular(L, loc.unsqueeze(-1), upper=False).squeeze(-1)
    S = torch.linalg.solve_triangular(L, scale_tril, upper=False)
    return m, S.tril()


def make_whitened_qu_guide(init_loc: torch.Tensor, init_scale_tril: torch.Tensor,
                           whitening: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Free Gaussian q(v) = N(qv_loc, qv_scale_tril qv_scale_tril^T), both ``pyro.param`` (started at ``init_loc``,
    ``init_scale_tril``: e.g. :func:`whiten_qu` of the optimal q(u)), drawing u = L v, i.e.
    u ~ N(L qv_loc, (L qv_scale_tril)(L qv_scale_tril)^T). ``whitening(*args, **kwargs)`` returns L = chol(K_uu)
    from the model's own arguments (the guide's), at the current pseudo-inputs and hyperparameters, so that
    gradients reach them through the guide as well."""

    def whitened_qu_guide(*args: Any, **kwargs: Any) -> torch.Tensor:
        L = whitening(*args, **kwargs)
        loc = pyro.param("qv_loc", init_loc.detach().clone())
        tril = pyro.param("qv_scale_tril", init_scale_tril.detach().clone(), constraint=constraints.lower_cholesky)
        return pyro.sample("u", dist.MultivariateNormal(L @ loc, scale_tril=L @ tril))

    return whitened_qu_guide
