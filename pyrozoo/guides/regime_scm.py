"""Guides for the regime SCM (:mod:`pyrozoo.models.regime_scm`).

* :func:`exact_enumeration_guide`: empty; z is enumerated in the model, so ``TraceEnum_ELBO`` equals the
  marginal log-likelihood log p(x) = log sum_k pi_k p(x | z = k) and the mechanisms are point estimates.
* :func:`make_amortized_guide`: q(z_n | x_n) = Categorical(softmax(MLP(x_n))); z is enumerated in the guide, so
  E_q[log p(x, z) - log q(z | x)] is computed exactly (no sampling of z, no score-function variance).
* :func:`make_gumbel_guide`: the seed report's relaxed q(z | x): RelaxedOneHotCategorical(T, logits = MLP(x))
  with reparameterized samples; its KL term is scaled by a cyclical annealing weight (Fu et al., 2019).

Encoders are functional MLPs over ``pyro.param`` tensors named ``enc_*`` (3 hidden ReLU layers, as in the report).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.device import resolve_device
from pyrozoo.validation import plate_subsample

ENC_LAYERS = ("enc_W1", "enc_b1", "enc_W2", "enc_b2", "enc_W3", "enc_b3", "enc_Wout", "enc_bout")


def exact_enumeration_guide(*args: Any, **kwargs: Any) -> None:
    """No latent sites: the regime z is summed out in the model (``infer={"enumerate": "parallel"}``)."""


def init_encoder(n_vars: int, hidden: int, *, dtype: torch.dtype = torch.float32, device: Any = None,
                 seed: int = 0) -> dict[str, torch.Tensor]:
    """Random encoder weights (He-style scaling), x in R^N -> logits in R^(N+1)."""
    device = resolve_device(device) if device is not None else None  # "auto"/"gpu" reached torch
    gen = torch.Generator().manual_seed(int(seed))
    sizes = [(n_vars, hidden), (hidden, hidden), (hidden, hidden), (hidden, n_vars + 1)]
    out = {}
    for (a, b), wn, bn in zip(sizes, ENC_LAYERS[::2], ENC_LAYERS[1::2], strict=True):
        out[wn] = (torch.randn(a, b, generator=gen, dtype=dtype) * math.sqrt(2.0 / a)).to(device)
        out[bn] = torch.zeros(b, dtype=dtype, device=device)
    return out


def encoder_logits(enc: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """logits of q(z | x), shape (..., n, N + 1)."""
    h = torch.relu(x @ enc["enc_W1"] + enc["enc_b1"])
    h = torch.relu(h @ enc["enc_W2"] + enc["enc_b2"])
    h = torch.relu(h @ enc["enc_W3"] + enc["enc_b3"])
    return h @ enc["enc_Wout"] + enc["enc_bout"]


def _encoder_params(x: torch.Tensor, hidden: int, init: Mapping[str, torch.Tensor] | None) -> dict:
    start = init_encoder(x.shape[-1], hidden, dtype=x.dtype, device=x.device)
    if init:
        start.update({k: v.to(x).detach().clone() for k, v in init.items() if k in start})
    return {k: pyro.param(k, v) for k, v in start.items()}


def distill_encoder(x: torch.Tensor, r: torch.Tensor, *, hidden: int = 32, steps: int = 300, lr: float = 0.01,
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """Fit the encoder to target responsibilities ``r`` (n, K) by cross-entropy (full-batch Adam): the amortized
    guide's warm start from EM, so joint SVI begins at a good regime assignment instead of a random one."""
    enc = {k: v.requires_grad_(True) for k, v in init_encoder(x.shape[-1], hidden, dtype=x.dtype, device=x.device,
                                                               seed=seed).items()}
    opt = torch.optim.Adam(list(enc.values()), lr=lr)
    r = r.to(x.dtype)
    for _ in range(steps):
        loss = -(r * torch.log_softmax(encoder_logits(enc, x), -1)).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach() for k, v in enc.items()}


def make_amortized_guide(hidden: int = 32) -> Callable[..., None]:
    """Guide with q(z_n | x_n) = Categorical(logits = MLP(x_n)), z enumerated in the guide (exact expectation).
    Its starting weights come from ``init`` (the model's keyword argument) when given."""

    def guide(x: torch.Tensor | None = None, *, n: int | None = None,
              init: Mapping[str, torch.Tensor] | None = None, subsample_size: int | None = None,
              **_: Any) -> None:
        if x is None:
            raise PyrozooError("x: the amortized guide q(z | x) needs the data, got None")
        enc = _encoder_params(x, hidden, init)
        subsample_size = plate_subsample("subsample_size", subsample_size, x.shape[0])  # as the model's plate
        with pyro.plate("obs_id", x.shape[0], subsample_size=subsample_size) as idx:
            xb = x[idx] if subsample_size is not None else x
            pyro.sample("z", dist.Categorical(logits=encoder_logits(enc, xb)), infer={"enumerate": "parallel"})

    return guide


def cyclical_kl_weight(step: int, total: int, cycles: int = 5, ratio: float = 0.5) -> float:
    """Fu et al. (2019): within each of ``cycles`` cycles the weight rises linearly from 0 to 1 over the first
    ``ratio`` of the cycle and stays at 1 for the rest."""
    period = max(total / cycles, 1.0)
    tau = (step % period) / period
    return min(tau / ratio, 1.0) if ratio > 0 else 1.0


def make_gumbel_guide(hidden: int = 32, temperature: float = 0.5) -> Callable[..., None]:
    """The report's guide: z ~ RelaxedOneHotCategorical(temperature, logits = MLP(x)) (Gumbel-softmax, reparameterized);
    the site is scaled by ``kl_scale`` (the model's z site too), which scales the ELBO's KL term."""

    def guide(x: torch.Tensor, *, kl_scale: float = 1.0, init: Mapping[str, torch.Tensor] | None = None,
              **_: Any) -> None:
        enc = _encoder_params(x, hidden, init)
        with pyro.plate("obs_id", x.shape[0]), poutine.scale(scale=kl_scale):
            temp = torch.tensor(temperature, dtype=x.dtype, device=x.device)
            pyro.sample("z", dist.RelaxedOneHotCategorical(temp, logits=encoder_logits(enc, x)))

    return guide
