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
