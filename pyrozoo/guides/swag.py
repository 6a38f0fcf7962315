"""A Pyro guide drawing every weight site from a SWAG posterior.

The guide samples the flat weight vector theta ~ q = N(mean, Sigma) (Sigma = diag(d) + L L^T, see
:class:`~pyrozoo.inference.swag.SWAGPosterior`) at one auxiliary site ``_swag_theta``: a
``LowRankMultivariateNormal(mean, L, d)``, or for SWAG-diagonal (no L) a diagonal ``Normal``. Each model site is
then set to its slice of theta through a ``Delta`` site with the site's own event dims (log density 0), so
log q of a draw is exactly log N(theta; mean, Sigma) and ``Trace_ELBO`` gives the true ELBO,
E_q[log p(y, theta) - log N(theta; mean, Sigma)] (the entropy of q is 0.5 (P log(2 pi e) + log det Sigma)). It
runs under ``poutine.trace``/``Predictive`` like any Pyro guide. Under an outer vectorized plate of size S
(``Predictive(parallel=True)``, ``Trace_ELBO(vectorize_particles=True)``) theta takes the plate's batch dims,
``(S, 1, P)`` for a plate at dim -2: S independent draws, each site ``(S, 1, *shape)`` with batch shape ``(S, 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pyro
import pyro.distributions as dist
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.swag import SWAGPosterior


def unflatten_sites(theta: torch.Tensor, site_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Split flat vectors ``(..., P)`` into ``{site: (..., *shape)}``, sites taken in ``site_shapes`` order."""
    out, start = {}, 0
    for name, shape in site_shapes.items():
        size = math.prod(shape)
        out[name] = theta[..., start:start + size].reshape(*theta.shape[:-1], *shape)
        start += size
    return out

class SWAGGuide:
    """``guide(*args, **kwargs)`` for a model whose latent sites are ``site_shapes`` (name -> shape, in the order
    the flat SWAG vector concatenates them)."""

    def __init__(self, posterior: SWAGPosterior, site_shapes: Mapping[str, tuple[int, ...]],
                 dtype: torch.dtype = torch.float32) -> None:
        total = sum(math.prod(s) for s in site_shapes.values())
        if total != posterior.num_params:
            raise PyrozooError(f"site_shapes: the sites hold {total} numbers but the SWAG posterior has "
                               f"{posterior.num_params}")
        self.posterior = posterior
        self.site_shapes = {k: tuple(v) for k, v in site_shapes.items()}
        self.dtype = dtype

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split ``(..., P)`` flat vectors into ``{site: (..., *shape)}``."""
        return unflatten_sites(theta, self.site_shapes)

    def distribution(self) -> dist.TorchDistribution:
        """q(theta) = N(mean, Sigma) over the flat weights, Sigma = diag(d) + L L^T (the SWAG posterior's
        :meth:`~pyrozoo.inference.swag.SWAGPosterior.factors`): low-rank plus diagonal, or diagonal without L."""
        d, L = self.posterior.factors()
        if L.shape[1] == 0:
            return dist.Normal(self.posterior.mean, d.sqrt()).to_event(1)
        return dist.LowRankMultivariateNormal(self.posterior.mean, L, d)

    def __call__(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        # the auxiliary site carries log q(theta) exactly; the Delta sites add 0, so Trace_ELBO's log q is right
        # (an auxiliary z ~ N(0, I_{P+K}) mapped to theta scored log N(z; 0, I) instead: 222 nats off for P = 42)
        theta = pyro.sample("_swag_theta", self.distribution(), infer={"is_auxiliary": True}).to(self.dtype)
        values = self.unflatten(theta)
        for name, value in values.items():
            pyro.sample(name, dist.Delta(value, event_dim=len(self.site_shapes[name])))
        return values
