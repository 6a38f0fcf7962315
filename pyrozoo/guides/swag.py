"""A Pyro guide drawing every weight site from a SWAG posterior.

The guide samples one auxiliary standard-normal vector z (dimension P + K) and sets each model site to its slice of
theta = mean + sqrt(d) * z[:P] + L z[P:] (see :class:`~pyrozoo.inference.swag.SWAGPosterior`) through a
``Delta`` site with the site's own event dims, so it runs under ``poutine.trace``/``Predictive`` like any Pyro guide.
Under an outer vectorized plate of size S (``Predictive(parallel=True)``, ``Trace_ELBO(vectorize_particles=True)``)
z takes the plate's batch dims, ``(S, 1, P + K)`` for a plate at dim -2: S independent draws, each site ``(S, 1,
*shape)`` with batch shape ``(S, 1)``.
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

    def __call__(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        d, L = self.posterior.factors()
        loc = torch.zeros(d.shape[0] + L.shape[1], dtype=d.dtype, device=d.device)
        z = pyro.sample("_swag_z", dist.Normal(loc, 1.0).to_event(1), infer={"is_auxiliary": True})
        theta = self.posterior.transform(z).to(self.dtype)
        values = self.unflatten(theta)
        for name, value in values.items():
            pyro.sample(name, dist.Delta(value, event_dim=len(self.site_shapes[name])))
        return values
