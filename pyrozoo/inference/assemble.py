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
    check_posterior_sites,
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
    enumerated discrete latents must pass one that marginalizes them. ``posterior`` must hold every latent site of
    the model (:func:`~pyrozoo.inference.predictive.check_posterior_sites`; enumerated sites excepted) and may hold
    other quantities too.
    """
    first = {k: v[0, 0] for k, v in posterior.items()}
    model_trace = trace_model(model, model_kwargs)
    check_likelihood_sites(model_trace, custom_log_likelihood=log_likelihood_fn is not None)
    check_posterior_sites(model_trace, posterior)
    obs = observed_sites(model_trace)  # before conditioning marks latents observed
    proto = trace_model(poutine.condition(model, first), model_kwargs)
    observed = {n: proto.nodes[n]["value"] for n in obs}
    dims = {n: site_dims(proto, n) for n in list(posterior) + obs if n in proto.nodes}
    if log_likelihood_fn is not None:
        loglik = dict(log_likelihood_fn(posterior, model_kwargs))
    else:
        loglik = pointwise_log_likelihood(model, posterior, model_kwargs, chunk_size=chunk_size)
    constant, constant_dims = constant_data(model_kwargs, posterior, observed, dims, fitted=set(params or {}))
    predictive_fn = PosteriorPredictive(model, dict(posterior), dict(model_kwargs), chunk_size)
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


class PosteriorPredictive:
    """A :class:`Result`'s ``predictive_fn``: draws of the observed sites at every posterior draw,
    ``posterior_predictive(model, posterior, model_kwargs)``. A module-level class holding its state, not a closure,
    so that a ``Result`` pickles (it does when ``model`` is a module-level function and the tensors are on the
    host or a device the unpickling process has)."""

    def __init__(self, model: Model, posterior: Mapping[str, torch.Tensor], model_kwargs: Mapping[str, Any],
                 chunk_size: int = 1000) -> None:
        self.model, self.posterior, self.model_kwargs, self.chunk_size = model, posterior, model_kwargs, chunk_size

    def __call__(self, result: Result | None = None) -> dict[str, np.ndarray]:
        return posterior_predictive(self.model, self.posterior, self.model_kwargs, chunk_size=self.chunk_size)


def constant_data(model_kwargs: Mapping[str, Any], posterior: Mapping[str, torch.Tensor],
                  observed: Mapping[str, torch.Tensor], dims: Mapping[str, list[str]], *,
                  fitted: set[str] = frozenset()) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """The model's tensor inputs for ArviZ's ``constant_data`` group, with dims: not the observations, and not the
    values an engine fitted (``fitted``: its ``params``, e.g. type-II hyperparameters).

    Axes take the names the posterior and the data already use, so that xarray lines them up: the leading axis as
    long as an observed site's plate takes that plate's name (``obs_id``), and any axis as long as exactly one other
    named axis (a plate such as ``feature``) takes that name, leaving out names the tensor's earlier axes took (the
    observations' plate at n == d); the rest are ``{name}_dim_k``. ``posterior`` draws are ``(chain, draw, ...)``,
    so their per-draw shapes drop the first two axes."""
    sizes = {n: tuple(v.shape[2:]) for n, v in posterior.items()} | {n: tuple(v.shape) for n, v in observed.items()}
    obs_plates, named = {}, {}
    for site, names_of_site in dims.items():
        shape = sizes.get(site, ())
        for k, dim in enumerate(names_of_site[:len(shape)]):
            if dim.startswith(f"{site}_dim_"):
                continue
            if site in observed and k == 0:
                obs_plates.setdefault(shape[0], dim)
            named.setdefault(shape[k], set()).add(dim)
    out, out_dims = {}, {}
    for key, value in model_kwargs.items():
        if not isinstance(value, torch.Tensor) or key in observed or key in dims or key in fitted:
            continue
        if any(value is v or (value.shape == v.shape and torch.equal(value, v)) for v in observed.values()):
            continue  # the observations under another keyword name
        names = [f"{key}_dim_{i}" for i in range(value.dim())]
        for k, n in enumerate(value.shape):
            if k == 0 and n in obs_plates:
                names[0] = obs_plates[n]
                continue
            others = named.get(n, set()) - set(names)  # a plate named already (obs_id at n == d) is no candidate
            if len(others) == 1:
                names[k] = next(iter(others))
        out[key], out_dims[key] = value, names
    return out, out_dims
