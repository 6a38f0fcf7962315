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
    constant, constant_dims = constant_data(model_kwargs, observed, dims)
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
        constant_data=constant,
        dims={**constant_dims, **dims},
        params=dict(params or {}),
        config=dict(config or {}),
        seed=seed,
        wall_time=wall_time,
        model=model_name,
        guide=guide,
        predictive_fn=predictive_fn,
    )


def constant_data(model_kwargs: Mapping[str, Any], observed: Mapping[str, torch.Tensor],
                  dims: Mapping[str, list[str]]) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """The model's tensor inputs that are not observed values, for ArviZ's ``constant_data`` group, with dims.

    A leading axis as long as an observed site's first plate takes that plate's name (``obs_id``), so that x and y
    line up for ``az.plot_lm`` and friends; other axes are ``{name}_dim_k``."""
    plates = {}
    for name, value in observed.items():
        site_dims = dims.get(name, [])
        if value.dim() and site_dims and not site_dims[0].startswith(f"{name}_dim_"):
            plates.setdefault(int(value.shape[0]), site_dims[0])
    out, out_dims = {}, {}
    for key, value in model_kwargs.items():
        if not isinstance(value, torch.Tensor) or key in observed or key in dims:
            continue
        if any(value is v or (value.shape == v.shape and torch.equal(value, v)) for v in observed.values()):
            continue  # the observations under another keyword name
        out[key] = value
        names = [f"{key}_dim_{i}" for i in range(value.dim())]
        if value.dim() and int(value.shape[0]) in plates:
            names[0] = plates[int(value.shape[0])]
        out_dims[key] = names
    return out, out_dims
