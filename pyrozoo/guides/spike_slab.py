"""Structured guide for spike-and-slab regression with gamma enumerated in the model (``TraceEnum_ELBO``).

    q(sigma^2) = LogNormal(s_loc, s_scale),   q(theta) = Beta(t_a, t_b),
    q(w | sigma^2) = N(m, sigma^2 L L^T)     (conjugate prior; N(m, L L^T) for the independent prior)

m (and the independent prior's L) are parameters in units of s0 = sqrt(sigma^2 at the start), m = s0 m~: Adam's
steps (about lr per step whatever the gradient's size) are then relative to y's scale, and a fit of c y is c times
the fit of y. With m itself the parameter, lr = 0.02 dwarfed a w of 2e-4 (y in 1e-4 units) and moved the
inclusion probabilities by 0.2.

The conditional q(w | sigma^2) mirrors the conjugate posterior, where w's covariance scales with sigma^2; L is a
full lower-triangular factor so correlated designs keep their posterior correlations. w is drawn as one
auxiliary multivariate normal site and handed to the model's ``feature`` plate through a Delta site (the pattern
of Pyro's AutoContinuous guides), so the model's per-feature sum over gamma_d stays exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints


def make_spike_slab_guide(init: Mapping[str, Any], *, conjugate: bool = True):
    """Return ``guide(X, y=None, **prior)``. ``init`` holds tensors ``w`` (p,), ``scale_tril`` (p, p) and floats
    ``sigma2``, ``theta`` (e.g. from an EMVS fit); the guide's parameters start there."""
    s2 = float(init["sigma2"])
    s0 = s2**0.5  # y's scale: w's mean (and the independent prior's L) are parameters in its units
    w0 = init["w"].detach() / s0
    tril0 = init["scale_tril"].detach() / (1.0 if conjugate else s0)
    th = min(max(float(init["theta"]), 0.02), 0.98)

    def guide(X: torch.Tensor, y: torch.Tensor | None = None, **_: Any) -> None:
        opts = {"dtype": X.dtype, "device": X.device}
        s_loc = pyro.param("q_sigma2_loc", torch.tensor(float(torch.log(torch.tensor(s2))), **opts))
        s_scale = pyro.param("q_sigma2_scale", torch.tensor(0.1, **opts), constraint=constraints.positive)
        t_a = pyro.param("q_theta_a", torch.tensor(10.0 * th, **opts), constraint=constraints.positive)
        t_b = pyro.param("q_theta_b", torch.tensor(10.0 * (1 - th), **opts), constraint=constraints.positive)
        m = s0 * pyro.param("q_w_loc", w0.to(**opts))
        L = pyro.param("q_w_scale_tril", tril0.to(**opts), constraint=constraints.lower_cholesky)
        L = L if conjugate else s0 * L
        sigma2 = pyro.sample("sigma2", dist.LogNormal(s_loc, s_scale))
        pyro.sample("theta", dist.Beta(t_a, t_b))
        scale = L * sigma2.sqrt().unsqueeze(-1).unsqueeze(-1) if conjugate else L
        latent = pyro.sample("_w_latent", dist.MultivariateNormal(m, scale_tril=scale), infer={"is_auxiliary": True})
        # Outside the plate, batch shapes end in a size-1 placeholder for the feature plate: (..., 1, p) -> (..., p).
        w = latent.reshape(latent.shape[:-2] + latent.shape[-1:]) if latent.dim() > 1 else latent
        with pyro.plate("feature", X.shape[1], dim=-1):
            pyro.sample("w", dist.Delta(w))

    return guide
