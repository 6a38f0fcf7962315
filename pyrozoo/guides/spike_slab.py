"""Structured guide for spike-and-slab regression with gamma enumerated in the model (``TraceEnum_ELBO``).

    q(sigma^2) = LogNormal(s_loc, s_scale),   q(theta) = Beta(t_a, t_b),
    q(w | sigma^2) = N(m, sigma^2 L L^T)     (conjugate prior; N(m, L L^T) for the independent prior)

The parameters of q(w) are whitened by the start (w0, L0), the EMVS fixed point and the Cholesky factor of its
conditional covariance (:func:`pyrozoo.models.spike_slab_pyro.guide_init`): m = w0 + s0 L0 z and L = L0 T, with
z = 0 and T = I at the start (s0 = the start's median of sigma, 1 for the independent prior, whose L0 is absolute).
Adam moves every parameter by about lr per step whatever its gradient, so its steps must be in coordinates where
lr is small. They were not: with L itself the parameter, the first step moved each of L's off-diagonal entries by
0.02 where the start's are about 0.0016 (equicorrelated design, n = 200, p = 50), all in the direction of the
gradient's sign: the draws' summed log-likelihood fell from about -277 (EM's) to a median of -430 and a worst of
-2200 after one step, -3575 after 30, and it took hundreds of steps to recover. In whitened coordinates a step of
lr changes q's covariance by about lr relative to the posterior's own, and a fit of c y is still c times the fit of
y (z and T are unit-free; w0 and s0 carry y's units).

The conditional q(w | sigma^2) mirrors the conjugate posterior, where w's covariance scales with sigma^2; T is a
full lower-triangular factor so correlated designs keep their posterior correlations. w is drawn as one auxiliary
multivariate normal site, v ~ N(s0 z, sigma^2 T T^T) pushed through w = w0 + L0 v (O(p^2) per draw, no p x p
product), and handed to the model's ``feature`` plate through a Delta site (the pattern of Pyro's AutoContinuous
guides), so the model's per-feature sum over gamma_d stays exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.distributions.transforms import LowerCholeskyAffine


def make_spike_slab_guide(init: Mapping[str, Any], *, conjugate: bool = True):
    """Return ``guide(X, y=None, **prior)``. ``init`` (e.g. :func:`~pyrozoo.models.spike_slab_pyro.guide_init`)
    holds tensors ``w`` (p,) and ``scale_tril`` (p, p), L0 with w's covariance sigma^2 L0 L0^T (conjugate prior) or
    L0 L0^T (independent prior), and floats ``sigma2_loc``, ``sigma2_scale`` (q(sigma^2) = LogNormal at the start)
    and ``theta_a``, ``theta_b`` (q(theta) = Beta at the start). The guide's parameters start there: z = 0, T = I."""
    w0 = init["w"].detach()
    L0 = init["scale_tril"].detach()
    s_loc0, s_scale0 = float(init["sigma2_loc"]), float(init["sigma2_scale"])
    t_a0, t_b0 = float(init["theta_a"]), float(init["theta_b"])
    s0 = math.exp(0.5 * s_loc0) if conjugate else 1.0  # the mean's offset in units of sigma (conjugate prior)
    p = int(w0.shape[-1])

    def guide(X: torch.Tensor, y: torch.Tensor | None = None, **_: Any) -> None:
        opts = {"dtype": X.dtype, "device": X.device}
        s_loc = pyro.param("q_sigma2_loc", torch.tensor(s_loc0, **opts))
        s_scale = pyro.param("q_sigma2_scale", torch.tensor(s_scale0, **opts), constraint=constraints.positive)
        t_a = pyro.param("q_theta_a", torch.tensor(t_a0, **opts), constraint=constraints.positive)
        t_b = pyro.param("q_theta_b", torch.tensor(t_b0, **opts), constraint=constraints.positive)
        z = pyro.param("q_w_white_loc", torch.zeros(p, **opts))
        T = pyro.param("q_w_white_tril", torch.eye(p, **opts), constraint=constraints.lower_cholesky)
        sigma2 = pyro.sample("sigma2", dist.LogNormal(s_loc, s_scale))
        pyro.sample("theta", dist.Beta(t_a, t_b))
        scale = T * sigma2.sqrt().unsqueeze(-1).unsqueeze(-1) if conjugate else T
        white = dist.MultivariateNormal(s0 * z, scale_tril=scale)
        q_w = dist.TransformedDistribution(white, [LowerCholeskyAffine(w0.to(**opts), L0.to(**opts), cache_size=1)])
        latent = pyro.sample("_w_latent", q_w, infer={"is_auxiliary": True})
        # Outside the plate, batch shapes end in a size-1 placeholder for the feature plate: (..., 1, p) -> (..., p).
        w = latent.reshape(latent.shape[:-2] + latent.shape[-1:]) if latent.dim() > 1 else latent
        with pyro.plate("feature", X.shape[1], dim=-1):
            pyro.sample("w", dist.Delta(w))

    return guide
