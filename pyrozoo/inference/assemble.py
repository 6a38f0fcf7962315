"""Turn posterior draws from any engine into a :class:`~pyrozoo.inference.result.Result`."""

from __future__ import annotations

import contextvars
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyro.poutine as poutine
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.predictive import (
    FixedParams,
    Model,
    check_draw_shapes,
    check_has_latents,
    check_likelihood_sites,
    check_posterior_sites,
    deterministic_sites,
    deterministic_values,
    enumerated_sites,
    observed_sites,
    param_values,
    pointwise_log_likelihood,
    posterior_predictive,
    replay_device,
    site_dims,
    trace_model,
    with_params,
)
from pyrozoo.inference.result import Result

LogLikelihoodFn = Callable[[Mapping[str, torch.Tensor], Mapping[str, Any]], Mapping[str, np.ndarray]]

# Memory of the pointwise arrays (log-likelihood, posterior predictive): chain x draw x observation values, built as
# float64 in torch, copied to NumPy, into ArviZ's InferenceData and out to idata.nc. Measured with `pyrozoo run
# normal-gamma --warmup-steps 50` (Gibbs: the fit itself reads only n, xbar, ss), peak RSS from /usr/bin/time -v on
# the 2-core box: n = 100,000 x 2 chains x 100 draws (2e7 values) 1.23 GB, x 200 draws (4e7) 2.01 GB, n = 50,000 x
# 2 x 200 (2e7) 1.23 GB: about 40 bytes per value over a ~0.45 GB interpreter; idata.nc took 7.6 bytes per value
# (152 MB for 2e7). --posterior-predictive's array of the same size, drawn after, raised the 4e7 run's peak to
# 2.33 GB; it is counted like the log-likelihood's, conservatively. The reviewer's n = 2,000,000 x
# 4 x 2000 draws (1.6e10 values) would need ~640 GB and was OOM-killed at 22.9 GB after ten silent minutes.
POINTWISE_BYTES_PER_VALUE = 40
# at most 1.5e8 values (~6 GB at 40 bytes each; idata.nc ~1.1 GB), so the peak stays well under 8 GB; the largest
# documented zoo run (a 4 x 20,000-draw normal-gamma Gibbs benchmark, n = 100) holds 8e6
MAX_POINTWISE_VALUES = 150_000_000

_SKIP_LOG_LIKELIHOOD: contextvars.ContextVar[bool] = contextvars.ContextVar("pyrozoo_skip_log_likelihood",
                                                                            default=False)


@contextmanager
def without_log_likelihood(skip: bool = True) -> Iterator[None]:
    """Within the block (``skip=True``), :func:`assemble_result` leaves the pointwise log-likelihood out: neither
    the generic one nor a ``log_likelihood_fn`` is computed, and the result has no ``log_likelihood`` group
    (``az.loo``/``az.waic`` do not work on it). ``pyrozoo run --no-log-likelihood`` fits inside it."""
    token = _SKIP_LOG_LIKELIHOOD.set(bool(skip))
    try:
        yield
    finally:
        _SKIP_LOG_LIKELIHOOD.reset(token)


def log_likelihood_skipped() -> bool:
    """Whether :func:`without_log_likelihood` is in force here."""
    return _SKIP_LOG_LIKELIHOOD.get()


_SIZE_CHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar("pyrozoo_pointwise_size_checked", default=False)


@contextmanager
def pointwise_size_checked() -> Iterator[None]:
    """Within the block, the caller has checked the pointwise arrays' size before the fit and the user chose to
    keep the log-likelihood (``run_model``: ``pyrozoo run`` and sweeps), so :func:`assemble_result` refuses an
    oversized log-likelihood (a :class:`PyrozooError`) rather than leaving it out with a warning."""
    token = _SIZE_CHECKED.set(True)
    try:
        yield
    finally:
        _SIZE_CHECKED.reset(token)


def keep_pointwise_log_likelihood(num_chains: int, num_draws: int, num_observations: int) -> bool:
    """Whether :func:`assemble_result` computes a C x S x N pointwise log-likelihood: ``False``, with a
    :class:`UserWarning` saying so and how to keep it, when it would hold more than :data:`MAX_POINTWISE_VALUES`
    values (:func:`check_pointwise_size`) and the fit was called from Python; inside
    :func:`pointwise_size_checked` (``run_model``, whose check before the fit let the run through) an oversized one
    is refused instead, so a group the user asked for is never dropped silently."""
    if _SIZE_CHECKED.get():
        check_pointwise_size(num_chains, num_draws, num_observations)
        return True
    try:
        check_pointwise_size(num_chains, num_draws, num_observations,
                             opt_out="a higher pyrozoo.inference.assemble.MAX_POINTWISE_VALUES where memory allows "
                                     f"(about {POINTWISE_BYTES_PER_VALUE} bytes per value)")
    except PyrozooError as error:
        warnings.warn(f"the pointwise log-likelihood is left out of the result (no log_likelihood group: az.loo, "
                      f"az.waic and az.compare will not work on it): {error}. A fit inside "
                      f"pyrozoo.inference.assemble.without_log_likelihood() leaves it out without this warning",
                      UserWarning, stacklevel=4)
        return False
    return True


def check_pointwise_size(num_chains: int, num_draws: int, num_observations: int, *, log_likelihood: bool = True,
                         posterior_predictive: bool = False, limit: int | None = None,
                         opt_out: str = "pass --no-log-likelihood (config key log_likelihood = false; "
                                        "az.loo/az.waic will not work on the run)",
                         predictive_values: int | None = None,
                         settings: Collection[str] = ("num_samples", "num_chains")) -> None:
    """Raise a :class:`PyrozooError` naming the ``settings`` among ``num_samples`` (draws per chain) and
    ``num_chains`` that the inference reads, the number of observations and the estimated size when the pointwise
    arrays would hold more than ``limit`` values (``None``: :data:`MAX_POINTWISE_VALUES`, chosen from the measured
    :data:`POINTWISE_BYTES_PER_VALUE`): C x S x N for the log-likelihood (if ``log_likelihood``; N =
    ``num_observations``, its values per draw) and C x S x M for the posterior predictive (if
    ``posterior_predictive``; M = ``predictive_values``, the observed values per draw, ``None``: N). They differ
    where the log-likelihood is joint over a row's several observed values (regime-scm: N = n rows, M = n x
    variables). ``opt_out`` says how to leave the log-likelihood out."""
    limit = MAX_POINTWISE_VALUES if limit is None else limit
    draws = int(num_chains) * int(num_draws)
    n_ll = int(num_observations)
    n_pp = n_ll if predictive_values is None else int(predictive_values)
    arrays = [("the pointwise log-likelihood", n_ll, opt_out)] * bool(log_likelihood) + [
        ("the posterior predictive", n_pp, "leave out --posterior-predictive")] * bool(posterior_predictive)
    values = draws * sum(n for _, n, _ in arrays)
    if values <= limit:
        return
    per_draw = sum(n for _, n, _ in arrays)
    reads = [k for k in ("num_samples", "num_chains") if k in settings]
    fit = max(limit // max(per_draw, 1), 0)  # chains x draws that fit
    product = " x ".join(reads)
    what = {("num_samples",): "draws", ("num_chains",): "chains"}.get(tuple(reads), "draws or chains")
    ways = [f"fewer {what} ({product} at most {fit:,})" if fit and reads else "fewer observations"]
    # leaving out one array is a way out only when the others then fit
    alone = [drop for _, n, drop in arrays if draws * (per_draw - n) <= limit]
    if len(arrays) == 2 and not alone:  # each array alone is over the limit: dropping one is not enough
        ways.append(f"{arrays[1][2]} and {arrays[0][2]}")
    else:  # leaving out either one that is enough (the posterior predictive first, as it is the optional one)
        ways.extend(reversed(alone))
    shown = {"num_samples": int(num_draws), "num_chains": int(num_chains)}
    prefix = ", ".join(f"{k}={shown[k]}" for k in reads)
    if n_pp != n_ll and not log_likelihood:
        observed = f"{n_pp:,} observed values"
    elif n_pp != n_ll and posterior_predictive:
        observed = f"{n_ll:,} observations ({n_pp:,} observed values)"
    else:
        observed = f"{n_ll:,} observations"
    if len(arrays) == 2 and n_pp != n_ll:
        holds = (f"{arrays[0][0]} ({draws * n_ll:,}) and {arrays[1][0]} ({draws * n_pp:,}) would hold {values:,} "
                 f"values (chains x draws x observations, and x observed values")
    else:
        holds = (f"{' and '.join(a[0] for a in arrays)} would hold {values:,} values (chains x draws x observations"
                 f"{', each' if len(arrays) > 1 else ''}")
    raise PyrozooError(
        f"{prefix + ' with ' if prefix else ''}{observed}: {holds}; {values * 8 / 1e9:.3g} GB as float64, about "
        f"{values * POINTWISE_BYTES_PER_VALUE / 1e9:.3g} GB of memory to build and save), over the limit of "
        f"{limit:,} values (about {limit * POINTWISE_BYTES_PER_VALUE / 1e9:.3g} GB); use {'; or '.join(ways)}")


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
    log_likelihood_size: int | None = None,
) -> Result:
    """Compute the pointwise log-likelihood, observed data and ArviZ dims for ``posterior``.

    ``posterior`` maps latent names to tensors shaped ``(chain, draw, *site_shape)`` on the model's device (checked
    against the model's sites before any work, :func:`~pyrozoo.inference.predictive.check_draw_shapes`).
    ``log_likelihood_fn(posterior, model_kwargs)`` replaces the generic pointwise log-likelihood; models with
    enumerated discrete latents must pass one that marginalizes them. ``posterior`` must hold every latent site of
    the model (:func:`~pyrozoo.inference.predictive.check_posterior_sites`; enumerated sites excepted) and may hold
    other quantities too. ``pyro.deterministic`` sites it lacks are recomputed at every draw and added (unless the
    model has enumerated sites without draws, which a replay would draw from their prior: then they are left out,
    with a warning). ``params`` (a fit's own values, e.g. of the model's ``pyro.param`` sites) are what the
    model's ``pyro.param`` sites read, here and in the posterior predictive, whatever Pyro's global param store
    holds. The result keeps host copies of them (:func:`owned_params`), so a later fit that goes on training the
    same tensors (a PyroModule's ``nn.Parameter``, a reused AutoGuide) leaves them as they were.

    Before any of it, the pointwise log-likelihood's size, chain x draw x N, is checked against
    :data:`MAX_POINTWISE_VALUES` (:func:`check_pointwise_size`): an oversized one is left out, with a
    :class:`UserWarning` (:func:`keep_pointwise_log_likelihood`; refused inside ``run_model``, which checked before
    the fit). Inside :func:`without_log_likelihood` it is neither checked nor computed. Either way the result has no
    log-likelihood. N is ``log_likelihood_size`` where a ``log_likelihood_fn`` returns a number of values per draw of
    its own (regime-scm's, joint over a row's variables: one per row), else one per element of each observed
    site's batch shape (:func:`pointwise_count`), which the generic log-likelihood gives.
    """
    device = replay_device(posterior, model_kwargs)
    fitted = with_params(model, params, device)  # the fit's pyro.param values, not the store's
    model_trace = trace_model(fitted, model_kwargs)
    check_likelihood_sites(model_trace, custom_log_likelihood=log_likelihood_fn is not None, model_kwargs=model_kwargs)
    check_posterior_sites(model_trace, posterior)
    check_draw_shapes(model_trace, posterior)
    if not posterior:  # no draws at all: nothing to evaluate the model at, unless its latents are all summed out
        check_has_latents(model_trace, engine="assemble_result")
    obs = observed_sites(model_trace)  # before conditioning marks latents observed
    skip = log_likelihood_skipped()
    first_value = next(iter(posterior.values()), None)
    if not skip and first_value is not None and np.ndim(first_value) >= 2:  # before any work on the draws
        num_obs = pointwise_count(model_trace, obs) if log_likelihood_size is None else int(log_likelihood_size)
        skip = not keep_pointwise_log_likelihood(*np.shape(first_value)[:2], num_obs)
    posterior = dict(posterior)
    computed = [n for n in deterministic_sites(model_trace) if n not in posterior]
    enumerated = [n for n in enumerated_sites(model_trace) if n not in posterior]
    if computed and enumerated:  # a replay would draw the enumerated sites from their prior
        warnings.warn(f"posterior: pyro.deterministic site(s) {computed} are left out of the posterior: they may "
                      f"depend on the enumerated site(s) {enumerated}, which have no posterior draws to replay; "
                      f"put their draws into the posterior to keep them", UserWarning, stacklevel=3)
    elif computed:
        posterior.update({n: torch.as_tensor(v, device=device) for n, v in deterministic_values(
            model, posterior, model_kwargs, chunk_size=chunk_size, params=params).items()})
    first = {k: v[0, 0] for k, v in posterior.items() if k not in computed}
    proto = trace_model(poutine.condition(fitted, first), model_kwargs)
    observed = {n: proto.nodes[n]["value"] for n in obs}
    dims = {n: site_dims(proto, n) for n in list(posterior) + obs if n in proto.nodes}
    if skip:
        loglik = {}
    elif log_likelihood_fn is not None:
        with FixedParams(param_values(params, device)):
            loglik = dict(log_likelihood_fn(posterior, model_kwargs))
        check_log_likelihood(loglik, proto, obs, posterior)
    else:
        loglik = pointwise_log_likelihood(model, posterior, model_kwargs, chunk_size=chunk_size, params=params)
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
        params=owned_params(params),
        config=dict(config or {}),
        seed=seed,
        wall_time=wall_time,
        model=model_name,
        guide=guide,
        predictive_fn=predictive_fn,
    )


def owned_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``params`` with every tensor replaced by a detached copy on the host. ``.detach().cpu()`` alone is no copy
    for a tensor already on the CPU: the Result would share memory with the live parameter, and the next fit would
    change it in place (while on CUDA it would not, a copy being made there)."""
    return {k: v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else v
            for k, v in (params or {}).items()}


class PosteriorPredictive:
    """A :class:`Result`'s ``predictive_fn``: draws of the observed sites at every posterior draw,
    ``posterior_predictive(model, posterior, model_kwargs)``. A module-level class holding its state, not a closure,
    so that a ``Result`` pickles (it does when ``model`` is a module-level function and the tensors are on the
    host or a device the unpickling process has)."""

    def __init__(self, model: Model, posterior: Mapping[str, torch.Tensor], model_kwargs: Mapping[str, Any],
                 chunk_size: int = 1000) -> None:
        self.model, self.posterior, self.model_kwargs, self.chunk_size = model, posterior, model_kwargs, chunk_size

    def __call__(self, result: Result | None = None) -> dict[str, np.ndarray]:
        """Draws at the posterior; the model's ``pyro.param`` sites read ``result.params`` (the fit's own values)
        rather than Pyro's global param store, which by now may hold another fit's values or none."""
        params = result.params if result is not None else None
        return posterior_predictive(self.model, self.posterior, self.model_kwargs, chunk_size=self.chunk_size,
                                    params=params)


def observed_batch_shapes(trace: poutine.Trace, observed: list[str]) -> dict[str, tuple[int, ...]]:
    """Each observed site's batch shape in ``trace``: the shape of its pointwise log-likelihood per draw (the
    distribution's batch shape broadcast with the value's, its event dims left out)."""
    batches = {}
    for n in observed:
        fn, obs = trace.nodes[n]["fn"], trace.nodes[n]["value"]
        batches[n] = tuple(torch.broadcast_shapes(fn.batch_shape, obs.shape[:max(obs.dim() - fn.event_dim, 0)]))
    return batches


def pointwise_count(trace: poutine.Trace, observed: list[str]) -> int:
    """The generic pointwise log-likelihood's values per draw: the sum over the observed sites of the number of
    elements of their batch shapes (:func:`observed_batch_shapes`; a multivariate site counts once per row, not
    once per value)."""
    return sum(int(np.prod(shape)) for shape in observed_batch_shapes(trace, observed).values())


def check_log_likelihood(loglik: Mapping[str, Any], proto: poutine.Trace, observed: list[str],
                         posterior: Mapping[str, Any]) -> None:
    """Raise unless every array a ``log_likelihood_fn`` returned is shaped ``(chain, draw, *obs_batch)`` and named
    after an observed site of the model, ``obs_batch`` being the site's batch shape in ``proto`` (one trace of the
    model on its data). An array under another name is a log-likelihood joint over all the observed sites (e.g. one
    value per row over a row's several variables) and is accepted only when there are several and they share their
    batch shape. Returning no array at all opts out of the log-likelihood group."""
    if not loglik:
        return
    first = next(iter(posterior.values()), None)  # none: a model whose latents are all enumerated
    batches = observed_batch_shapes(proto, observed)
    joint = next(iter(batches.values())) if len(batches) > 1 and len(set(batches.values())) == 1 else None
    for name, value in loglik.items():
        if name not in observed and joint is None:
            raise PyrozooError(f"log_likelihood_fn: returned an array named {name!r}, which is no observed site of "
                               f"the model; expected arrays named after the observed site(s) {observed}")
        batch = batches.get(name, joint)
        shape = tuple(np.shape(value))
        expected = (*(first.shape[:2] if first is not None else shape[:2]), *batch)
        if shape != expected:
            what = f"observed site {name!r}" if name in observed else f"{name!r} (joint over {observed})"
            raise PyrozooError(f"log_likelihood_fn: the array for {what} has shape {shape}; expected {expected}: "
                               f"(chain, draw, *obs batch shape), one pointwise value per draw and observation "
                               f"(observed sites: {observed})")


def constant_data(model_kwargs: Mapping[str, Any], posterior: Mapping[str, torch.Tensor],
                  observed: Mapping[str, torch.Tensor], dims: Mapping[str, list[str]], *,
                  fitted: set[str] = frozenset()) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """The model's tensor inputs for ArviZ's ``constant_data`` group, with dims: not the observations, and not the
    values an engine fitted (``fitted``: its ``params``, e.g. type-II hyperparameters).

    Axes take the names the posterior and the data already use, so that xarray lines them up: the leading axis as
    long as an observed site's plate takes that plate's name (``obs_id``) when the tensor has an axis of that length
    for each plate of that length (rows first: ``X`` of shape (n, d) at n == d is (``obs_id``, ``feature``)), and
    any axis as long as exactly one other named axis (a plate such as ``feature``) takes that name, leaving out
    names the tensor's earlier axes took (the observations' plate at n == d); the rest are ``{name}_dim_k``. A
    length that two differently named axes share names no axis otherwise: two observed plates of n rows each, whose
    rows may differ, or a group-level input of G == n values, which runs along ``group``, not ``obs_id``. The guess
    would be a coin toss, and a wrong name lines the values up with another plate's coordinates (the data's row
    labels); a model names such axes itself (``result.dims``). ``posterior`` draws are ``(chain, draw, ...)``, so
    their per-draw shapes drop the first two axes."""
    sizes = {n: tuple(v.shape[2:]) for n, v in posterior.items()} | {n: tuple(v.shape) for n, v in observed.items()}
    obs_plates, named = {}, {}
    for site, names_of_site in dims.items():
        shape = sizes.get(site, ())
        for k, dim in enumerate(names_of_site[:len(shape)]):
            if dim.startswith(f"{site}_dim_"):
                continue
            if site in observed and k == 0:
                obs_plates.setdefault(shape[0], set()).add(dim)
            named.setdefault(shape[k], set()).add(dim)
    out, out_dims = {}, {}
    for key, value in model_kwargs.items():
        if not isinstance(value, torch.Tensor) or key in observed or key in dims or key in fitted:
            continue
        if any(value is v or (value.shape == v.shape and torch.equal(value, v)) for v in observed.values()):
            continue  # the observations under another keyword name
        names = [f"{key}_dim_{i}" for i in range(value.dim())]
        for k, n in enumerate(value.shape):
            # rows first: the leading axis is the observations' plate only if every other plate of its length can
            # take a later axis (X at n == d); a lone axis as long as the observations and a group plate (G == n)
            # may run along either, so it names none
            if k == 0 and len(obs_plates.get(n, ())) == 1 and value.shape.count(n) >= len(named[n]):
                names[0] = next(iter(obs_plates[n]))
                continue
            others = named.get(n, set()) - set(names)  # a plate named already (obs_id at n == d) is no candidate
            if len(others) == 1:
                names[k] = next(iter(others))
        out[key], out_dims[key] = value, names
    return out, out_dims
