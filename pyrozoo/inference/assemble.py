"""Turn posterior draws from any engine into a :class:`~pyrozoo.inference.result.Result`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyro.poutine as poutine
import torch

from pyrozoo.inference.predictive import (
    Model,
    check_likelihood_sites,
    observed_sites,
    pointwise_log_likelihood,
    posterior_predictive,
    site_dims,
    trace_model,
)
from pyrozoo.inference.result import Result

LogLikelihoodFn = Callable[[Mapping[str, torch.Tensor], Mapping[str, Any]], Mapping[str, np.ndarray]]


def assemble_result(
    inference: str,
    model: Model,
    model_kwargs: Mapping[str, Any],
    posterior: Mapping[str, torch.Tensor],
    *,
    sample_stats: Mapping[str, Any] | None = None,
    fit_stats: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    log_likelihood_fn: LogLikelihoodFn | None = None,
    guide: Any = None,
    seed: int | None = None,
    wall_time: float = float("nan"),
    config: Mapping[str, Any] | None = None,
    model_name: str = "",
    chunk_size: int = 1000,
) -> Result:
    """Compute the pointwise log-likelihood, observed data and ArviZ dims for ``posterior``.

    ``posterior`` maps latent names to tensors shaped ``(chain, draw, *site_shape)`` on the model's device.
    ``log_likelihood_fn(posterior, model_kwargs)`` replaces the generic pointwise log-likelihood; models with
    enumerated discrete latents must pass one that marginalizes them.
    """
    first = {k: v[0, 0] for k, v in posterior.items()}
    model_trace = trace_model(model, model_kwargs)
    check_likelihood_sites(model_trace, custom_log_likelihood=log_likelihood_fn is not None)
    obs = observed_sites(model_trace)  # before conditioning marks latents observed
    proto = trace_model(poutine.condition(model, first), model_kwargs)
    observed = {n: proto.nodes[n]["value"] for n in obs}
    dims = {n: site_dims(proto, n) for n in list(posterior) + obs if n in proto.nodes}
    if log_likelihood_fn is not None:
        loglik = dict(log_likelihood_fn(posterior, model_kwargs))
    else:
        loglik = pointwise_log_likelihood(model, posterior, model_kwargs, chunk_size=chunk_size)
    post_tensors = dict(posterior)

    def predictive_fn(_: Result) -> dict[str, np.ndarray]:
        return posterior_predictive(model, post_tensors, model_kwargs, chunk_size=chunk_size)

    return Result(
        inference=inference,
        posterior=dict(posterior),
        sample_stats=dict(sample_stats or {}),
        log_likelihood=loglik,
        observed_data=observed,
        fit_stats=dict(fit_stats or {}),
        dims=dims,
        params=dict(params or {}),
        config=dict(config or {}),
        seed=seed,
        wall_time=wall_time,
        model=model_name,
        guide=guide,
        predictive_fn=predictive_fn,
    )
