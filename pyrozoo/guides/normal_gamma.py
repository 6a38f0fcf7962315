"""Mean-field guide for the Normal–Gamma model: q(mu, beta) = Normal(mu; m, s) x Gamma(beta; alpha, rate)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints


def make_normal_gamma_guide(init: Mapping[str, float] | None = None, *, dtype=torch.float64, device=None):
    """Return ``guide(**model_kwargs)`` with params ``q_mu_loc``, ``q_mu_scale``, ``q_beta_conc``, ``q_beta_rate``.

    The family contains the mean-field (CAVI) optimum of this model exactly: q(mu) Normal, q(beta) Gamma.
    ``init`` sets starting values (defaults: mu 0, scale 1, beta ~ Gamma(1, 1)).
    """
    init = dict(init or {})

    def guide(x: torch.Tensor | None = None, **_: Any) -> None:
        opts = {"dtype": x.dtype if x is not None else dtype, "device": x.device if x is not None else device}
        loc = pyro.param("q_mu_loc", torch.tensor(init.get("mu_loc", 0.0), **opts))
        scale = pyro.param("q_mu_scale", torch.tensor(init.get("mu_scale", 1.0), **opts),
                           constraint=constraints.positive)
        conc = pyro.param("q_beta_conc", torch.tensor(init.get("beta_conc", 1.0), **opts),
                          constraint=constraints.positive)
        rate = pyro.param("q_beta_rate", torch.tensor(init.get("beta_rate", 1.0), **opts),
                          constraint=constraints.positive)
        pyro.sample("mu", dist.Normal(loc, scale))
        pyro.sample("beta", dist.Gamma(conc, rate))

    return guide
