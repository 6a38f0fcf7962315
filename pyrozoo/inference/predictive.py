"""Vectorized evaluation of a Pyro model at posterior draws.

Pyro's ``Predictive`` reshapes draws without looking at event dimensions and draws every site it is not given from
the prior, so the zoo computes the two things every result needs itself:

* the pointwise log-likelihood ``log p(obs_i | theta_s)`` of every observed site, shape ``(draws, *obs_batch)``
  (a row masked out by ``poutine.mask`` scores 0; ``poutine.scale`` is not applied: :func:`pointwise_log_prob`);
* posterior-predictive draws of the observed sites (``poutine.uncondition``, data only); enumerated discrete
  latents are drawn from their posterior given the data and each draw, ``z_s ~ p(z | y, theta_s)``
  (``infer_discrete``), then ``y_rep ~ p(y | z_s, theta_s)``;
* the values of ``pyro.deterministic`` sites at every draw (Pyro marks them observed; here they are posterior
  quantities, never data).

A model's ``pyro.param`` sites read a fit's own values (``params``, :func:`with_params`), not the global store.

Both trace the model once per chunk of draws, with the draws stacked along a plate to the left of the model's own
plates. Models with *enumerated* discrete latents must marginalize them instead: they pass their own
``log_likelihood_fn`` to the engines (see ``pyrozoo.models.regime_scm`` for an example).
"""

from __future__ import annotations

import inspect
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import infer_discrete
from pyro.poutine.messenger import Messenger
from pyro.poutine.uncondition_messenger import UnconditionMessenger
from pyro.poutine.util import site_is_subsample

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.device import same_rng_states

Model = Callable[..., Any]


def check_model_kwargs(model_kwargs: Any, name: str = "model_kwargs") -> dict[str, Any]:
    """``model_kwargs`` as a dict (``None``: empty), or a :class:`PyrozooError` naming ``name`` unless it is a
    mapping of argument names (str) to values: a tensor passed in its place failed in ``dict(...)`` with "Boolean
    value of Tensor with more than one value is ambiguous"."""
    if model_kwargs is None:
        return {}
    if not isinstance(model_kwargs, Mapping):
        shape = f" of shape {tuple(model_kwargs.shape)}" if hasattr(model_kwargs, "shape") else ""
        raise PyrozooError(f"{name}: expected a mapping of the model's argument names to values (e.g. dict(x=x, "
                           f"y=y)), got a {type(model_kwargs).__name__}{shape}")
    strangers = [k for k in model_kwargs if not isinstance(k, str)]
    if strangers:
        raise PyrozooError(f"{name}: expected argument names (str) as keys, got {strangers!r}")
    return dict(model_kwargs)


def describe_kwargs(model_kwargs: Mapping[str, Any]) -> str:
    """``x (20, 3) float64, y (19,) float64, n 20``: each argument with its shape and dtype (arrays), or its value
    (short plain values), or its type; for messages about a model that failed on them."""
    parts = []
    for k, v in model_kwargs.items():
        if isinstance(v, torch.Tensor):
            parts.append(f"{k} {tuple(v.shape)} {str(v.dtype).removeprefix('torch.')}"
                         + (f" on {v.device}" if v.device.type != "cpu" else ""))
        elif isinstance(v, np.ndarray):
            parts.append(f"{k} NumPy {tuple(v.shape)} {v.dtype}")
        elif v is None or isinstance(v, (bool, int, float, str)):
            text = repr(v)
            parts.append(f"{k} {text if len(text) <= 30 else text[:27] + '...'}")
        else:
            parts.append(f"{k} {type(v).__name__}")
    return ", ".join(parts) or "none"


class _LatentsRequireGrad(Messenger):
    """Hands the model each continuous latent value as a leaf that requires grad, as SVI's and HMC's steps do. A
    discrete latent (Bernoulli, Poisson: float values on a discrete support) never carries a gradient there: it is
    enumerated, or SVI scores it (REINFORCE), so it is left as drawn."""

    def _postprocess_message(self, msg: dict) -> None:
        value = msg["value"]
        if (msg["type"] == "sample" and not msg["is_observed"] and isinstance(value, torch.Tensor)
                and value.is_floating_point() and not msg["fn"].support.is_discrete):
            msg["value"] = value.detach().requires_grad_()


def describe_failure(exc: BaseException) -> str:
    """``NotImplementedError: (no message) at FILE:LINE, at sample site 'L' (LKJCholesky)``: an exception's type and
    the first line of its message (Pyro appends a table of trace shapes), or where it was raised when it has none
    (a bare ``assert``, a distribution without a ``mean``), and the ``pyro.sample`` site it came from if any."""
    first = (str(exc).strip().splitlines() or [""])[0]
    frames = traceback.extract_tb(exc.__traceback__)
    if (not first or first.startswith("Trace Shapes")) and frames:
        first = f"(no message) at {frames[-1].filename}:{frames[-1].lineno}"
    site = None
    tb = exc.__traceback__
    while tb is not None:  # the innermost pyro.sample call on the way to the error names its site
        if tb.tb_frame.f_code is pyro.primitives.sample.__code__:
            site = tb.tb_frame.f_locals.get("name"), type(tb.tb_frame.f_locals.get("fn")).__name__
        tb = tb.tb_next
    where = f", at sample site {site[0]!r} ({site[1]})" if site and isinstance(site[0], str) else ""
    return f"{type(exc).__name__}: {first}{where}"


def trace_model(model: Model, model_kwargs: Mapping[str, Any], *, wrap_errors: bool = False,
                gradient_probe: bool = False) -> poutine.Trace:
    """One trace of ``model(**model_kwargs)`` with log-probabilities filled in.

    ``wrap_errors`` (the engines' first trace, before any work): an exception the model raises (mismatched lengths,
    mixed float32/float64) becomes a :class:`PyrozooError` "model: tracing model(**model_kwargs) failed: <its
    message>; arguments: x (20, 3) float64, ...", the original chained; a ``PyrozooError`` the model raises itself
    passes unchanged; NumPy arrays among the arguments are named as the likely cause. Replays leave it off: their
    fallbacks catch torch's own errors.

    ``gradient_probe`` (with ``wrap_errors``; run_svi and run_mcmc, whose steps differentiate through the latents):
    where NumPy arrays are among the arguments, the model is traced once more with its latents requiring grad, on
    saved RNG states. ``w * x`` with ``x`` a NumPy array runs in a plain trace (torch hands the product back) but
    fails with "Can't call numpy() on Tensor that requires grad" at the first SVI step or NUTS warm-up; this finds
    it before any work. A model that converts its arguments itself (``torch.as_tensor(x)``) passes."""
    if not wrap_errors:
        return poutine.trace(model).get_trace(**model_kwargs)
    arrays = [k for k, v in model_kwargs.items() if isinstance(v, np.ndarray)]
    hint = (f"; {arrays} are NumPy arrays: pass torch tensors (torch.as_tensor on the model's device and dtype)"
            if arrays else "")
    try:
        trace = poutine.trace(model).get_trace(**model_kwargs)
    except PyrozooError:
        raise
    except Exception as exc:
        raise PyrozooError(f"model: tracing model(**model_kwargs) failed: {describe_failure(exc)}; arguments: "
                           f"{describe_kwargs(model_kwargs)}{hint}") from exc
    if gradient_probe and arrays:
        try:
            with same_rng_states():
                poutine.trace(_LatentsRequireGrad()(model)).get_trace(**model_kwargs)
        except PyrozooError:
            raise
        except Exception as exc:
            raise PyrozooError(f"model: model(**model_kwargs) runs once, but fails when its latents carry gradients, "
                               f"as in every SVI step and NUTS/HMC step: {describe_failure(exc)}; arguments: "
                               f"{describe_kwargs(model_kwargs)}{hint}") from exc
    return trace


def max_plate_nesting(trace: poutine.Trace) -> int:
    """Number of batch dimensions the model's vectorized plates use (0 if none)."""
    dims = [
        -frame.dim
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized and frame.dim is not None
    ]
    return max(dims, default=0)


def is_deterministic_site(site: dict) -> bool:
    """Whether a sample site is a ``pyro.deterministic`` one: Pyro records it as an observed ``Delta`` site marked
    ``infer["_deterministic"]``, but it is a function of the latents, not data."""
    return bool(site["infer"].get("_deterministic"))


def deterministic_sites(trace: poutine.Trace) -> list[str]:
    """Names of the ``pyro.deterministic`` sites: they go to the posterior (recomputed at every draw), not to the
    observed data, the log-likelihood or the posterior predictive."""
    return [name for name, site in trace.nodes.items() if site["type"] == "sample" and is_deterministic_site(site)]


def drawn_sites(trace: poutine.Trace) -> list[str]:
    """Names of the non-observed sample sites an engine may draw: not marked for enumeration (those are summed out,
    never drawn), not a subsample site. ``pyro.deterministic`` sites (observed to Pyro) are not among them: no engine
    or guide draws them. ``_``-prefixed auxiliary sites are (NUTS draws them too)."""
    return [name for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"] and not site["infer"].get("enumerate")
            and not site_is_subsample(site)]


def latent_sites(trace: poutine.Trace) -> list[str]:
    """Names of the latent sites whose draws a posterior holds: :func:`drawn_sites` without the ``_``-prefixed
    auxiliary ones."""
    return [name for name in drawn_sites(trace) if not name.startswith("_")]


def enumerated_sites(trace: poutine.Trace) -> list[str]:
    """Names of the latent sample sites marked for enumeration (summed out by ``TraceEnum_ELBO``, never drawn)."""
    return [name for name, site in trace.nodes.items()
            if site["type"] == "sample" and site["infer"].get("enumerate") and not site["is_observed"]]


def check_has_latents(trace: poutine.Trace, *, engine: str, drawn_only: bool = False) -> None:
    """Raise unless the model traced in ``trace`` has a latent sample site to infer: a model whose sites are all
    observed (or ``pyro.param``/``pyro.factor``/``pyro.deterministic``) has no posterior, and its result would hold
    no draws to evaluate the log-likelihood at. Enumerated discrete sites count (``TraceEnum_ELBO`` sums them out
    with the model's ``pyro.param`` sites fitted; where they are the only latents, ``run_svi`` draws them from their
    posterior, :func:`enumerated_posterior_draws`) unless ``drawn_only`` (NUTS/HMC, which draw only the continuous
    ones). ``_``-prefixed (auxiliary) sites count for NUTS/HMC, which draw them into the posterior like any other,
    but not for SVI, whose posterior draws leave them out (:func:`latent_sites`): a model whose only latents are
    ``_``-prefixed would fit and then hold no draws. ``engine`` names the engine in the message."""
    enumerated = enumerated_sites(trace)
    auxiliary = [n for n in drawn_sites(trace) if n.startswith("_")]
    if latent_sites(trace) or (auxiliary and drawn_only) or (enumerated and not drawn_only):
        return
    found = (f"only the enumerated site(s) {enumerated}, which are summed out, not drawn" if enumerated
             else f"only the _-prefixed site(s) {auxiliary}, which its posterior leaves out as auxiliary "
                  f"(rename them without the _)" if auxiliary else "none")
    hint = ("; for a point estimate of pyro.param values make them pyro.sample sites with a prior and fit an "
            "AutoDelta guide (MAP)" if not drawn_only else "")
    raise PyrozooError(f"model: {engine} needs a latent sample site to infer (pyro.sample without obs=); the model "
                       f"has {found}, so there is nothing to infer{hint}")


def check_continuous_latents(trace: poutine.Trace, *, engine: str) -> None:
    """Raise unless every site NUTS/HMC would draw (:func:`drawn_sites`) has a continuous support. Pyro's HMC
    kernels sum a discrete site that is not marked for enumeration out by themselves and leave it out of the
    draws, so the chains ran to the end and the result then lacked its draws ("no draws of the model's latent
    site(s) ['z']"); pyrozoo sums such sites out only when the model says so, and then the pointwise
    log-likelihood needs a ``log_likelihood_fn`` that marginalizes them. ``engine`` names the engine."""
    discrete = [(n, trace.nodes[n]["fn"].support) for n in drawn_sites(trace)
                if trace.nodes[n]["fn"].support.is_discrete]
    if discrete:
        names = [n for n, _ in discrete]
        supports = ", ".join(f"{n!r}: {s}" for n, s in discrete)
        raise PyrozooError(f"model: {engine} draws only continuous sites, but site(s) {names} are discrete "
                           f"({supports}) and not marked for enumeration; mark them "
                           f"infer={{'enumerate': 'parallel'}} to sum them out and pass a log_likelihood_fn that "
                           f"marginalizes them (see pyrozoo.models.regime_scm), or use a Gibbs kernel that draws "
                           f"them")


def check_posterior_sites(trace: poutine.Trace, names: Iterable[str], *, what: str = "posterior",
                          excused: Iterable[str] = ()) -> None:
    """Raise unless ``names`` (the sites an engine draws) include every :func:`latent_sites` of ``trace``: a latent
    without draws would be drawn from its prior whenever the model is replayed at the draws, silently biasing the
    pointwise log-likelihood and the posterior predictive. ``what`` names the source of ``names`` in the message;
    ``excused``: sites without draws that are not missing (observations the caller left out), not listed as got."""
    names, excused = list(names), set(excused)
    latent = latent_sites(trace)
    missing = [n for n in latent if n not in names and n not in excused]
    if not missing:
        return
    strangers = [n for n in names if n not in trace.nodes]
    hint = f"; {strangers} are not sites of the model (renamed?)" if strangers else ""
    raise PyrozooError(f"{what}: no draws of the model's latent site(s) {missing}; expected every latent site "
                       f"{latent}, got {names}{hint}")


def check_draw_shapes(trace: poutine.Trace, posterior: Mapping[str, Any], *, what: str = "posterior") -> None:
    """Raise unless the draws in ``posterior`` of every latent site of ``trace`` (:func:`drawn_sites` and
    :func:`enumerated_sites`; one trace of the model on its data) are shaped ``(chain, draw, *site_shape)``,
    ``site_shape`` the site's value shape there, with the same ``(chain, draw)`` for all of them. Draws of another
    shape would broadcast against the model's plates (a scalar site's ``(C, S, N)`` draws give each observation its
    own value) or fail deep in the replay. ``pyro.deterministic`` sites given in ``posterior`` are checked the same
    way, and every checked draw must be a torch tensor (a NumPy array failed deep in the replay: "'numpy.float64'
    object has no attribute 'dim'").

    Entries that are no such site (an engine's extra quantities, e.g. regime-scm's ``regime_probs``) are kept as
    they are, but they too must be arrays (torch or NumPy) with the same leading ``(chain, draw)``: the draws are
    flattened and indexed per chain and draw together, so a ``(2, 4)`` entry beside ``(2, 3)`` draws, or one without
    the two axes, failed there with a raw torch error. An entry named after an observed site is refused: the replay
    took its values for the data, so the log-likelihood and the posterior predictive were silently those of the
    entry. And there must be at least one chain and one draw."""
    lead: tuple[tuple[int, ...], str] | None = None
    sites = drawn_sites(trace) + enumerated_sites(trace) + deterministic_sites(trace)
    for name in sites:
        if name not in posterior:
            continue
        if not isinstance(posterior[name], torch.Tensor):
            raise PyrozooError(f"{what}: the draws of site {name!r} are a {type(posterior[name]).__name__}; expected "
                               f"a torch tensor (torch.as_tensor(...) on the model's device and dtype)")
        want = tuple(trace.nodes[name]["value"].shape)
        got = tuple(posterior[name].shape)
        expected = "(chain, draw" + "".join(f", {n}" for n in want) + ")"
        if len(got) != len(want) + 2 or got[2:] != want:
            raise PyrozooError(f"{what}: the draws of site {name!r} have shape {got}; expected {expected}, i.e. "
                               f"(chain, draw, *site_shape) with the site's shape {want} in the model")
        if lead is None:
            lead = (got[:2], name)
        elif got[:2] != lead[0]:
            raise PyrozooError(f"{what}: the draws of site {name!r} have shape {got}; expected (chain, draw) = "
                               f"{lead[0]} first, as the draws of {lead[1]!r} have")
    observed = set(observed_sites(trace))
    for name, value in posterior.items():  # entries that are no latent or deterministic site of the model
        if name in sites:
            continue
        if name in observed:  # the replay would score and replicate these values instead of the data
            raise PyrozooError(f"{what}: the entry {name!r} is an observed site of the model; expected draws of its "
                               f"latent sites only (pyro.infer.Predictive's output also holds the observed sites' "
                               f"replicates: leave them out)")
        if not isinstance(value, (torch.Tensor, np.ndarray)):
            raise PyrozooError(f"{what}: the entry {name!r} (no latent site of the model) is a "
                               f"{type(value).__name__}; expected a torch tensor (or NumPy array) of values per draw, "
                               f"shaped (chain, draw, ...)")
        got = tuple(value.shape)
        if len(got) < 2 or (lead is not None and got[:2] != lead[0]):
            first = f" = {lead[0]} first, as the draws of {lead[1]!r} have" if lead is not None else ""
            raise PyrozooError(f"{what}: the entry {name!r} (no latent site of the model) has shape {got}; expected "
                               f"(chain, draw, ...){first}: every posterior entry holds one value per chain and "
                               f"draw")
        if lead is None:
            lead = (got[:2], name)
    if lead is not None and 0 in lead[0]:
        raise PyrozooError(f"{what}: the draws of {lead[1]!r} have shape {tuple(posterior[lead[1]].shape)}, "
                           f"{lead[0][0]} chain(s) of {lead[0][1]} draw(s); expected (chain, draw, ...) with at "
                           f"least one chain and one draw")


def is_factor_site(site: dict) -> bool:
    """Whether a sample site is a ``pyro.factor`` term (an observed ``Unit`` distribution): a log-density added to
    the joint, not data."""
    fn = site["fn"]
    while hasattr(fn, "base_dist"):  # masked, independent or expanded wrappers
        fn = fn.base_dist
    return isinstance(fn, dist.Unit)


def observed_sites(trace: poutine.Trace) -> list[str]:
    """Names of the observed sample sites (``pyro.factor`` terms and ``pyro.deterministic`` sites are not data and
    are left out)."""
    return [
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and site["is_observed"] and not site_is_subsample(site)
        and not is_factor_site(site) and not is_deterministic_site(site)
    ]


def check_likelihood_sites(trace: poutine.Trace, *, custom_log_likelihood: bool, warn: bool = True,
                           model_kwargs: Mapping[str, Any] | None = None) -> None:
    """Raise (or warn) on model structures whose pointwise log-likelihood would be missing or wrong, given one
    ``trace`` of the model on its data:

    * no observed site and no ``pyro.factor`` term: the data never enter the model (``obs=`` forgotten) -- error;
    * an observed site whose value is not a torch tensor (a NumPy array passed in ``model_kwargs``, which Pyro
      does not convert) -- error naming the argument it came from (looked up in ``model_kwargs`` where given);
    * sites marked for enumeration without a ``log_likelihood_fn``: the generic path would score the observations
      at one drawn value of the discrete latent instead of summing it out -- error;
    * an observed value whose shape does not broadcast to its site's batch shape (data of 30 rows in a plate of 29:
      Pyro finds it only when it scores the site) -- error;
    * a latent site with a batch dim of size > 1 that no ``pyro.plate`` declares (``Normal(zeros(d), 1)`` without
      ``.to_event(1)`` or a plate): Pyro's SVI fails on it deep inside the first step while NUTS runs on, and its
      ArviZ axis would be ``w_dim_0`` -- error. The same for an observed site (its batch shape broadcast with the
      data's): SVI fails on it with Pyro's "invalid log_prob shape", and its ArviZ axis would be ``y_dim_0``;
    * a plate that subsamples its rows under the model's own arguments (``subsample_size`` in ``model_kwargs``,
      not in run_svi's ``train_kwargs``): every replay of the model would score other random rows -- error, unless
      a ``log_likelihood_fn`` computes the log-likelihood;
    * an observed site of several values whose log-probability is one number (``.to_event`` over the data, no
      plate): ``az.loo`` would see a single observation -- warning (unless not ``warn``), as the model is valid.

    The engines call it before fitting (errors only) and :func:`~pyrozoo.inference.assemble.assemble_result` again
    (with the warning), which also covers fits that do not go through an engine."""
    sample = {n: s for n, s in trace.nodes.items()
              if s["type"] == "sample" and not site_is_subsample(s) and not is_deterministic_site(s)}
    obs = observed_sites(trace)
    for name in obs:
        value = sample[name]["value"]
        if not isinstance(value, torch.Tensor):
            source = next((f"model_kwargs[{k!r}]" for k, v in (model_kwargs or {}).items() if v is value),
                          f"observed site {name!r}")
            kind = f"NumPy array {tuple(value.shape)} {value.dtype}" if isinstance(value, np.ndarray) \
                else type(value).__name__
            raise PyrozooError(f"{source}: the value observed at site {name!r} must be a torch.Tensor (Pyro does not "
                               f"convert obs=), got a {kind}; pass torch.as_tensor(...) on the model's device and "
                               f"dtype")
    if not obs and not any(is_factor_site(s) for s in sample.values()):
        raise PyrozooError("model: no observed sample site, so the data never enter the model; pass the data as "
                           "pyro.sample(name, dist, obs=value) (with obs=None as the model's default)")
    for name, site in sample.items():
        if is_factor_site(site):
            continue
        plates = {frame.dim for frame in site["cond_indep_stack"] if frame.vectorized}
        shape = site["fn"].batch_shape
        kind = "latent"
        if site["is_observed"]:  # obs= under a scalar distribution broadcasts to the data's batch shape
            value = site["value"]
            try:
                shape = torch.broadcast_shapes(shape, value.shape[:max(value.dim() - site["fn"].event_dim, 0)])
            except RuntimeError:  # Pyro checks obs= against the batch shape only when it scores it
                given = f" (arguments: {describe_kwargs(model_kwargs)})" if model_kwargs else ""
                raise PyrozooError(
                    f"model: observed site {name!r} has batch shape {tuple(shape)} (its distribution's, in its "
                    f"plates), but its value has shape {tuple(value.shape)}, which does not broadcast to it; check "
                    f"that the data have the same length as the plate{given}") from None
            kind = "observed"
        loose = [(i - len(shape), n) for i, n in enumerate(shape) if n > 1 and i - len(shape) not in plates]
        if loose:
            dim, size = loose[-1]
            trailing = next((k for k in range(len(shape)) if -1 - k in plates), len(shape))  # dims .to_event can take
            event = f" or make the dims part of one event with .to_event({trailing})" if dim >= -trailing else ""
            what = ("independent values: named ArviZ axes" if kind == "latent"
                    else "one log-likelihood value per observation, as az.loo needs")
            raise PyrozooError(
                f"model: {kind} site {name!r} has batch shape {tuple(shape)}, but no pyro.plate declares its dim "
                f"{dim} (size {size}); put the site in a pyro.plate at that dim ({what}){event}")
    if custom_log_likelihood:
        return
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and site_is_subsample(site) and site["value"].numel() < site["fn"].size:
            raise PyrozooError(
                f"model: plate {name!r} subsamples {site['value'].numel()} of its {site['fn'].size} rows when the "
                f"model runs on model_kwargs (a subsample_size written in the model or passed in model_kwargs), so "
                f"the pointwise log-likelihood and the posterior predictive would score another random subset of "
                f"rows at every draw, misaligned with the observed data; make the subsample size an argument of the "
                f"model (None: every row), give model_kwargs the full data and pass the size through run_svi's "
                f"train_kwargs (used for the optimization steps only), e.g. train_kwargs={{'subsample_size': "
                f"{site['value'].numel()}}}")
    enumerated = enumerated_sites(trace)
    if enumerated:
        raise PyrozooError(f"model: site(s) {', '.join(enumerated)} are marked for enumeration, so the pointwise "
                           f"log-likelihood must sum them out; pass a log_likelihood_fn to the engine (see "
                           f"pyrozoo.models.regime_scm)")
    for name in obs if warn else ():
        site = sample[name]
        value, fn = site["value"], site["fn"]
        # obs=x under a scalar distribution broadcasts: its log-probability still has one value per observation
        batch = torch.broadcast_shapes(fn.batch_shape, value.shape[:max(value.dim() - fn.event_dim, 0)])
        if value.numel() > 1 and len(batch) == 0:
            warnings.warn(f"model: observed site {name!r} holds {site['value'].numel()} values but its "
                          f"log-probability is one number (an event over the data, e.g. .to_event or a "
                          f"multivariate likelihood); log_likelihood has one entry per draw and az.loo sees one "
                          f"observation. Put the observations in a pyro.plate for pointwise values", stacklevel=3)


def site_dims(trace: poutine.Trace, name: str) -> list[str]:
    """ArviZ dimension names of one site: the plate names of its batch dims, then ``{name}_dim_k`` for events.

    A ``pyro.deterministic`` site given an ``event_dim`` below its number of dims is read like any site. By default
    Pyro makes all its dims event dims (``event_dim=value.ndim``); then its dims take the names of the site's plates
    only when its shape is exactly theirs (``a + b * x`` in a plate of N rows: ``obs_id``), and are
    ``{name}_dim_k`` otherwise (a (2, 2) value in a plate of 2 could be either)."""
    site = trace.nodes[name]
    value = site["value"]
    event_dim = site["fn"].event_dim
    if is_deterministic_site(site) and event_dim == value.dim():
        frames = {f.dim: f for f in site["cond_indep_stack"] if f.vectorized}
        if all(i - value.dim() in frames and frames[i - value.dim()].size == value.shape[i]
               for i in range(value.dim())):
            return [frames[i - value.dim()].name for i in range(value.dim())]
        return [f"{name}_dim_{i}" for i in range(value.dim())]
    batch_ndim = value.dim() - event_dim
    plates = {frame.dim: frame.name for frame in site["cond_indep_stack"] if frame.vectorized}
    dims = [plates.get(i - batch_ndim, f"{name}_dim_{i}") for i in range(batch_ndim)]
    dims += [f"{name}_dim_{batch_ndim + j}" for j in range(event_dim)]
    return dims


def _reshape_for_plate(trace: poutine.Trace, draws: Mapping[str, torch.Tensor], nesting: int) -> dict:
    """Put the draw dimension of each latent left of the model's plates, at batch dim ``-(nesting + 1)``.

    Sites inside plates keep their batch dims aligned with those plates. Global sites follow Pyro's ``Predictive``
    convention, ``(S, 1, ..., *value_shape)`` padded to ``nesting`` dims *including* event dims, so that the usual
    vectorized code (``X @ w.unsqueeze(-1)``) lines the draws up with the plates.
    """
    out = {}
    for name, value in draws.items():
        if name not in trace.nodes:
            continue
        proto = trace.nodes[name]["value"]
        batch_ndim = proto.dim() - trace.nodes[name]["fn"].event_dim
        pad = nesting - batch_ndim if batch_ndim else max(0, nesting - proto.dim())
        out[name] = value.reshape((value.shape[0],) + (1,) * pad + tuple(proto.shape))
    return out


def align_global_draws(value: torch.Tensor, event_ndim: int) -> torch.Tensor:
    """Line up the draws of a global site (outside the model's data plate, which is at dim -1) so that a per-row
    output computed from them has batch shape ``(*B', N)``: returns ``(*B', *event)``, ``event`` the last
    ``event_ndim`` dims of ``value``.

    Two layouts reach a model. Pyro's plate-aligned one (``vectorize_particles``, a user's outer
    ``pyro.plate(..., dim=-2)``): batch ``(S, 1)``, the 1 standing for the data plate; it is dropped. The one of
    ``Predictive(parallel=True)`` (and :func:`_reshape_for_plate`), which pads draws to ``max_plate_nesting`` dims
    *counting event dims*, so a site with at least as many event dims as the model has plates comes as
    ``(S, *event)``: kept as is. Either way ``B' = (S,)``; no batch dims: unchanged. Only a singleton with a batch
    dim to its left is the data plate's: one draw in the second layout, ``(1, *event)``, keeps its draw axis.

    ``event_ndim`` must be >= 1: a scalar site's draws ``(S, 1)`` cannot be told from ``(S,)`` draws lined up with
    the data plate, and already broadcast against it as they are (use them unchanged)."""
    if event_ndim < 1:
        raise PyrozooError(f"event_ndim: expected >= 1 (a global site with event dims), got {event_ndim}; a scalar "
                           f"site's draws (S, 1) already broadcast against the data plate")
    lead = value.dim() - event_ndim - 1  # the data plate's dim, when value has a draw dim left of it
    return value.squeeze(lead) if lead >= 1 and value.shape[lead] == 1 else value


class _UnconditionData(UnconditionMessenger):
    """``poutine.uncondition`` for the data only: ``pyro.deterministic`` sites keep their computed value (resampled,
    a ``Delta`` with every dim an event dim would be broadcast against its plates: shape (n, n) for an (n,) value)."""

    def _pyro_sample(self, msg: dict) -> None:
        if not is_deterministic_site(msg):
            super()._pyro_sample(msg)


def uncondition_data(model: Model) -> Model:
    """``model`` with its observed sites drawn instead of fixed at the data, its deterministic sites left alone."""
    return _UnconditionData()(model)


def _vectorized_trace(
    model: Model,
    draws: Mapping[str, torch.Tensor],
    model_kwargs: Mapping[str, Any],
    proto: poutine.Trace,
    nesting: int,
    uncondition: bool,
) -> poutine.Trace:
    # uncondition inside condition, as the loop does: the other way round, uncondition also dropped the posterior
    # draws that condition had just set, and every latent came from its prior
    vectorized = _at_draws(uncondition_data(model) if uncondition else model, draws, proto, nesting)
    return poutine.trace(vectorized).get_trace(**model_kwargs)


def _at_draws(model: Model, draws: Mapping[str, torch.Tensor], proto: poutine.Trace, nesting: int,
              num: int | None = None) -> Model:
    """``model`` conditioned on ``draws`` (``(S, *site_shape)`` per site) all at once: run inside a ``_draws`` plate
    of size S left of the model's ``nesting`` plates, the draws reshaped to line up with it. ``num``: S where
    ``draws`` is empty (every latent enumerated)."""
    num = next(iter(draws.values())).shape[0] if num is None else num
    conditioned = poutine.condition(model, _reshape_for_plate(proto, draws, nesting))

    def vectorized(**kwargs):
        with pyro.plate("_draws", num, dim=-(nesting + 1)):
            return conditioned(**kwargs)

    return vectorized


def _probe_vectorized(model: Model, flat: Mapping[str, torch.Tensor], model_kwargs: Mapping[str, Any],
                      proto: poutine.Trace, nesting: int, total: int) -> None:
    """Raise ``ValueError`` (callers then trace one draw at a time) if, under the vectorized layout at two draws,
    a sample site's batch shape has grown beyond the ``_draws`` plate and the model's own dims: a model that
    broadcasts a draw against another one (``sigma.unsqueeze(-1)`` of a scalar drawn as ``(S, 1)``) gives a site
    of batch shape ``(S, S, n)``, an S x S tensor that at S = 1000 took gigabytes and, under ``infer_discrete``,
    minutes before the per-draw check could refuse the layout."""
    num = min(2, total)
    chunk = {k: v[:num] for k, v in flat.items()}
    tr = poutine.trace(_at_draws(model, chunk, proto, nesting, num)).get_trace(**model_kwargs)
    for name, site in tr.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site) or name not in proto.nodes:
            continue
        shape = tuple(site["fn"].batch_shape)
        allowed = max(len(proto.nodes[name]["fn"].batch_shape), nesting + 1)
        if len(shape) > allowed or (len(shape) > nesting and shape[-(nesting + 1)] not in (1, num)):
            own = tuple(proto.nodes[name]["fn"].batch_shape)
            raise ValueError(f"site {name!r} has batch shape {shape} under {num} vectorized draws; expected at most "
                             f"the draws plate left of its own batch shape {own}")


def _per_draw(t: torch.Tensor, num: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Bring a tensor shaped ``(num or 1, 1, ..., 1, *shape)`` to ``(num, *shape)``."""
    lead = t.dim() - len(shape)
    t = t.reshape((int(np.prod(t.shape[:lead], dtype=np.int64)),) + tuple(t.shape[lead:]))
    return t.expand((num,) + tuple(shape))


def _flatten_draws(posterior: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], tuple[int, int]]:
    first = next(iter(posterior.values()), None)
    if first is None:
        raise PyrozooError("posterior: holds no draws, so there is nothing to replay the model at; expected draws "
                           "(chain, draw, *site_shape) of the model's latent sites")
    chains, draws = first.shape[:2]
    flat = {k: v.reshape((chains * draws,) + tuple(v.shape[2:])) for k, v in posterior.items()}
    return flat, (chains, draws)


class FixedParams(Messenger):
    """Effect handler: the ``pyro.param`` sites named in ``values`` take those values (a fit's own parameters)
    instead of reading, or creating, entries of Pyro's global param store; other param sites are left alone.

    A ``PyroModule``'s ``nn.Parameter`` (and an ``nn.Module``'s under ``pyro.module``) is read by the module
    itself: its param site announces the live tensor and discards the value a handler sets. Such a tensor (the
    site's initial value, an ``nn.Parameter``) holds a copy of the fit's value while the handler is active (a model
    that writes into its parameter in place leaves the caller's ``values`` alone), and gets its own back when the
    handler exits, also on an error. The site's value is then the live ``nn.Parameter`` itself: given another
    tensor, ``pyro.module(..., update_module_params=True)`` would put that tensor into the module in place of its
    ``nn.Parameter`` for good (a plain tensor without gradient, which no later fit trains)."""

    def __init__(self, values: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.values = values
        self._swapped: dict[int, tuple[torch.nn.Parameter, torch.Tensor]] = {}

    def _pyro_param(self, msg: dict) -> None:
        value = self.values.get(msg["name"])
        if value is None or msg["value"] is not None:  # nested: the innermost handler's value stands
            return
        live = msg["args"][1] if len(msg["args"]) > 1 else msg["kwargs"].get("init_tensor")
        if not isinstance(live, torch.nn.Parameter):
            msg["value"] = value
            return
        if id(live) not in self._swapped:
            self._swapped[id(live)] = (live, live.data)
            live.data = value.detach().to(dtype=live.dtype, device=live.device, copy=True)
        msg["value"] = live

    def __exit__(self, *args: Any) -> Any:
        while self._swapped:
            live, own = self._swapped.popitem()[1]
            live.data = own
        return super().__exit__(*args)


def with_params(model: Model, params: Mapping[str, Any] | None, device: torch.device | None = None) -> Model:
    """``model`` with its ``pyro.param`` sites fixed at ``params`` (tensors; other entries are ignored), moved to
    ``device``: replays at the posterior draws then use the fit's parameters, not whatever Pyro's global param store
    holds by then (another fit's, or the initial values after ``pyro.clear_param_store()``)."""
    values = param_values(params, device)
    return FixedParams(values)(model) if values else model


def param_values(params: Mapping[str, Any] | None, device: torch.device | None) -> dict[str, torch.Tensor]:
    """The tensors of ``params``, detached and moved to ``device`` (kept where they are for ``None``)."""
    return {k: v.detach().to(device) if device is not None else v.detach()
            for k, v in (params or {}).items() if isinstance(v, torch.Tensor)}


def device_of(posterior: Mapping[str, Any]) -> torch.device | None:
    """The device of the first tensor in ``posterior`` (``None`` when it holds none)."""
    return next((v.device for v in posterior.values() if isinstance(v, torch.Tensor)), None)


def replay_device(posterior: Mapping[str, Any], model_kwargs: Mapping[str, Any]) -> torch.device | None:
    """Where a replay of the model runs: the posterior's device, or the data's when the posterior holds no tensor
    (every latent enumerated, or none); a fit's params are moved there (run_svi returns them on the CPU)."""
    return device_of(posterior) or device_of(model_kwargs)


@torch.no_grad()
def pointwise_log_likelihood(
    model: Model,
    posterior: Mapping[str, torch.Tensor],
    model_kwargs: Mapping[str, Any],
    *,
    chunk_size: int = 1000,
    params: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """``log p(y_i | theta_{c,d})`` for every observed site; arrays of shape ``(chain, draw, *obs_batch)``.

    ``posterior`` maps latent site names to tensors of shape ``(chain, draw, *site_shape)`` on the model's device,
    or to NumPy arrays (a ``Result.posterior`` given back), made tensors on the data's device (:func:`replay_draws`).
    ``params``: values of the model's ``pyro.param`` sites (a fit's ``Result.params``), used instead of Pyro's
    global param store (:func:`with_params`).
    """
    return _evaluate(model, posterior, model_kwargs, chunk_size, "log_likelihood", params)


@torch.no_grad()
def posterior_predictive(
    model: Model,
    posterior: Mapping[str, torch.Tensor],
    model_kwargs: Mapping[str, Any],
    *,
    chunk_size: int = 1000,
    params: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Draws of every observed site given each posterior draw; arrays of shape ``(chain, draw, *obs_shape)``.
    With the observations left out of ``model_kwargs`` (``y=None``, e.g. at new inputs) the observed sites are the
    model's sample sites that ``posterior`` has no draws of (:func:`unobserved_data_sites`), as for
    ``pyro.infer.Predictive``: ``y* ~ p(y* | theta_s)`` at every draw, any enumerated site from its prior.
    Sites marked for (parallel) enumeration that ``posterior`` lacks are first drawn from their posterior given the
    data and the draw, ``z_s ~ p(z | y, theta_s)`` (Pyro's ``infer_discrete``, temperature 1), not from their prior:
    a mixture's replicate of y_i comes from the component y_i belongs to. ``infer_discrete`` does not handle
    sequentially enumerated sites: those are drawn from their prior, with a warning. ``params`` as in
    :func:`pointwise_log_likelihood`."""
    return _evaluate(model, posterior, model_kwargs, chunk_size, "predictive", params)


@torch.no_grad()
def deterministic_values(
    model: Model,
    posterior: Mapping[str, torch.Tensor],
    model_kwargs: Mapping[str, Any],
    *,
    chunk_size: int = 1000,
    params: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """The value of every ``pyro.deterministic`` site not in ``posterior`` at each posterior draw, ``f(theta_{c,d})``;
    arrays of shape ``(chain, draw, *site_shape)``. ``params`` as in :func:`pointwise_log_likelihood`."""
    return _evaluate(model, posterior, model_kwargs, chunk_size, "deterministic", params)


def unobserved_data_sites(model: Model, trace: poutine.Trace, posterior: Mapping[str, Any],
                          model_kwargs: Mapping[str, Any]) -> list[str]:
    """The observations the caller left out (``y=None``, the out-of-sample idiom), as ``pyro.infer.Predictive``
    draws them, given a ``trace`` of the model on ``model_kwargs``, among the :func:`latent_sites` of ``trace``
    that ``posterior`` has no draws of:

    * where the model observes nothing (every observation left out, however the model takes them: ``y=None``,
      ``forward(self, x, y=None)`` called without y, ``data.get("y")``, ``**kwargs``), all of them, as
      ``pyro.infer.Predictive`` draws every site without draws (a latent left out of ``posterior`` is then drawn
      from its prior too, as there);
    * where it observes some sites, those that an argument left ``None`` observes: the model, traced again with one
      ``None`` argument (in ``model_kwargs``, or a default of the model's signature not passed) set to a candidate
      site's value, observes them. Any other latent without draws is a missing latent (refused:
      :func:`check_posterior_sites`), not data."""
    candidates = [n for n in latent_sites(trace) if n not in posterior]
    if not candidates or not observed_sites(trace):
        return candidates
    empty = [k for k, v in model_kwargs.items() if v is None]
    try:
        signature = inspect.signature(model)
        empty += [k for k, p in signature.parameters.items()
                  if p.default is None and k not in model_kwargs
                  and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    except (TypeError, ValueError):  # no signature to read
        pass
    found: set[str] = set()
    for key in empty:
        for name in candidates:
            if name in found:
                continue
            try:
                tr = poutine.trace(model).get_trace(**{**model_kwargs, key: trace.nodes[name]["value"]})
            except Exception:  # a probe: the argument takes no such value
                continue
            found.update(n for n in candidates if n in observed_sites(tr))  # one argument may observe several
    return [n for n in candidates if n in found]


def replay_draws(posterior: Mapping[str, Any], model_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``posterior`` with its NumPy arrays (a ``Result.posterior`` given back) made tensors on the replay device
    (the data's, when no draw is a tensor): a floating array takes the dtype of the model's floating data (the
    draws came from a fit of that model; float64 data keep float64 draws, float32 data make float64 draws float32;
    the default dtype without floating data), an integer or boolean one keeps its kind. An xarray ``Dataset``
    (``idata.posterior``) or ``DataArray`` values are read as their NumPy arrays. Every entry must be a tensor or
    array shaped ``(chain, draw, ...)``: anything else is a :class:`PyrozooError` naming it."""
    if hasattr(posterior, "data_vars"):  # an xarray Dataset, e.g. idata.posterior
        posterior = {str(k): v for k, v in posterior.data_vars.items()}
    posterior = {k: (_chain_draw_first(v).values if hasattr(v, "dims") and hasattr(v, "values")
                     and not isinstance(v, torch.Tensor) else v) for k, v in posterior.items()}
    for k, v in posterior.items():
        if not isinstance(v, (torch.Tensor, np.ndarray, np.generic)) or (
                isinstance(v, (np.ndarray, np.generic)) and np.asarray(v).dtype.kind not in "biuf"):
            what = type(v).__name__ if not isinstance(v, (np.ndarray, np.generic)) else f"{np.asarray(v).dtype} array"
            raise PyrozooError(f"posterior: the draws of {k!r} are a {what}; expected a torch tensor or a numeric "
                               f"NumPy array shaped (chain, draw, *site_shape)")
        if v.ndim < 2:
            raise PyrozooError(f"posterior: the draws of {k!r} have shape {tuple(v.shape)}; expected (chain, draw, "
                               f"*site_shape): one chain of S draws is (1, S, ...)")
    if not any(isinstance(v, (np.ndarray, np.generic)) for v in posterior.values()):
        return dict(posterior)
    device = replay_device(posterior, model_kwargs)
    floating = next((v.dtype for v in model_kwargs.values() if isinstance(v, torch.Tensor) and v.is_floating_point()),
                    torch.get_default_dtype())
    out = {}
    for k, v in posterior.items():
        if isinstance(v, (np.ndarray, np.generic)):
            kind = np.asarray(v).dtype
            dtype = floating if np.issubdtype(kind, np.floating) else None
            v = torch.as_tensor(np.asarray(v), dtype=dtype, device=device)
        out[k] = v
    return out


def _chain_draw_first(array: Any) -> Any:
    """An xarray ``DataArray`` with ``chain`` and ``draw`` (where it names them) as its first two dims, by name:
    a transposed one would otherwise be read with chains and draws swapped."""
    dims = tuple(array.dims)
    if "chain" in dims and "draw" in dims and dims[:2] != ("chain", "draw"):
        return array.transpose("chain", "draw", ...)
    return array


class _SignatureOf:
    """``model`` (wrapped in handlers) called as it is, with the signature of ``user_model`` (the caller's)."""

    def __init__(self, model: Model, user_model: Model) -> None:
        self.model, self.__signature__ = model, _signature(user_model)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)


def _signature(model: Model) -> inspect.Signature | None:
    try:
        return inspect.signature(model)
    except (TypeError, ValueError):
        return None


def _evaluate(model, posterior, model_kwargs, chunk_size, mode, params=None):
    """Vectorized over draws when the model allows it, else one trace per draw.

    The vectorized log-likelihood is checked against unvectorized traces at the first and the last draw, so a model
    whose draws line up wrongly under the draws plate falls back to the loop instead of giving wrong values.
    Predictive draws are random and cannot be compared; they use the same layout the log-likelihood check passed,
    and fall back to the loop whenever that check fails. Deterministic values are checked as the log-likelihood is.
    The model is replayed at the latent draws only (``pyro.deterministic`` values in ``posterior`` are recomputed).
    NumPy draws (``Result.posterior``) are made tensors first (:func:`replay_draws`).
    A posterior predictive of a model given without (some of) its observations draws the sites the fit observed
    (:func:`unobserved_data_sites`), validated under stand-in values of them as the log-likelihood is. Any other
    latent site without draws is refused (:func:`check_posterior_sites`): it would come from its prior."""
    posterior = replay_draws(posterior, model_kwargs)
    user_model = model
    model = with_params(model, params, replay_device(posterior, model_kwargs))
    trace = trace_model(model, model_kwargs)
    left_out = unobserved_data_sites(_SignatureOf(model, user_model), trace, posterior, model_kwargs)
    unseen = left_out if mode == "predictive" else []
    if unseen:  # the data left out (obs=None): stand-in values make them observed sites, which the replay draws
        model = poutine.condition(model, {n: trace.nodes[n]["value"] for n in unseen})
        trace = trace_model(model, model_kwargs)
    check_posterior_sites(trace, posterior, excused=left_out)  # a latent without draws would come from its prior
    deterministic = deterministic_sites(trace)
    computed = set(deterministic)
    if mode == "deterministic":
        names = [n for n in deterministic if n not in posterior]
        if not names:
            return {}
    else:
        names = observed_sites(trace)
    flat, (chains, draws) = _flatten_draws({k: v for k, v in posterior.items() if k not in computed})
    obs = observed_sites(trace)
    predictive, values = mode == "predictive", mode != "log_likelihood"
    first_draw = {k: v[0] for k, v in flat.items()}
    proto = trace_model(poutine.condition(model, first_draw), model_kwargs)
    nesting = max_plate_nesting(proto)
    # without data (unseen) there is nothing to condition the discrete latents on: they come from their prior
    enumerated = [] if unseen else [n for n in enumerated_sites(trace) if n not in posterior]
    sequential = [n for n in enumerated if trace.nodes[n]["infer"].get("enumerate") != "parallel"]
    if predictive and sequential:  # infer_discrete enumerates parallel sites only; it skips the others
        warnings.warn(f"posterior_predictive: the site(s) {sequential} are marked for sequential enumeration, which "
                      f"Pyro's infer_discrete does not handle, so the replicates draw them from their prior, not "
                      f"from p(z | y, theta); mark them infer={{'enumerate': 'parallel'}} to condition them on the "
                      f"data", UserWarning, stacklevel=3)
        enumerated = [n for n in enumerated if n not in sequential]
    if predictive and enumerated:  # replicates given the discrete latents' posterior, not their prior
        discrete, discrete_vectorized = _discrete_posterior_draws(model, flat, model_kwargs, proto, nesting,
                                                                  enumerated, chunk_size)
        flat = {**flat, **discrete}
        proto = trace_model(poutine.condition(model, {k: v[0] for k, v in flat.items()}), model_kwargs)
    try:
        _probe_vectorized(model, flat, model_kwargs, proto, nesting, next(iter(flat.values())).shape[0])
        if values:  # validate the vectorized layout on the log-likelihood first
            loglik = _evaluate_vectorized(model, flat, model_kwargs, proto, nesting, obs, chunk_size, False, False)
        pieces = _evaluate_vectorized(model, flat, model_kwargs, proto, nesting, names, chunk_size, predictive,
                                      values)
        check = loglik if values else pieces
        last = {k: v[-1] for k, v in flat.items()}
        last_proto = trace_model(poutine.condition(model, last), model_kwargs)
        if not (_draw_agrees(check, proto, obs, 0) and _draw_agrees(check, last_proto, obs, -1)):
            raise ValueError("vectorized log-likelihood disagrees with the per-draw trace")
        if mode == "deterministic" and not (_values_agree(pieces, proto, names, 0)
                                            and _values_agree(pieces, last_proto, names, -1)):
            raise ValueError("vectorized deterministic values disagree with the per-draw trace")
    except (RuntimeError, ValueError, IndexError):
        if predictive and enumerated and discrete_vectorized:
            # drawn under the vectorized layout the check refused: draw them again, one trace per draw
            flat.update(_discrete_posterior_draws(model, flat, model_kwargs, proto, nesting, enumerated,
                                                  chunk_size, vectorized=False)[0])
        pieces = _evaluate_loop(model, flat, model_kwargs, proto, names, predictive, values)
    return {n: np.concatenate(p).reshape((chains, draws) + p[0].shape[1:]) for n, p in pieces.items()}


def pointwise_log_prob(site: dict) -> torch.Tensor:
    """``log p(value | theta)`` of one observed site, one value per observation: ``fn.log_prob(value)`` with the
    site's ``poutine.mask`` applied as Pyro's own ``Trace.log_prob_sum`` applies it (a masked-out row scores 0,
    like a row of ``dist.mask(m)``), but *not* its ``poutine.scale`` (minibatch N / B, a likelihood weight or a
    tempering power): the pointwise log-likelihood az.loo/az.waic read is that of each observation itself."""
    return scale_and_mask(site["fn"].log_prob(site["value"]), 1.0, site.get("mask"))


def _discrete_posterior_draws(
    model: Model,
    flat: Mapping[str, torch.Tensor],
    model_kwargs: Mapping[str, Any],
    proto: poutine.Trace,
    nesting: int,
    names: list[str],
    chunk_size: int = 1000,
    *,
    vectorized: bool = True,
    total: int | None = None,
) -> tuple[dict[str, torch.Tensor], bool]:
    """One draw of the enumerated sites ``names`` at each posterior draw ``theta_s`` (``flat``: ``(S, *site_shape)``
    per latent) from their posterior given the data and ``theta_s``, ``z_s ~ p(z | y, theta_s)``, by Pyro's
    ``infer_discrete`` (forward-filter backward-sample at temperature 1); returns ``(S, *site_shape)`` per name.

    Vectorized over the draws as the replays are (a ``_draws`` plate left of the model's plates, enumeration left
    of it), one trace per draw where the model does not vectorize so, or not ``vectorized``; the flag returned
    says whether the draws were vectorized. ``flat`` may hold earlier draws of ``names``: they are left out of the
    conditioning. ``total``: the number of draws to make where ``flat`` is empty (a model whose latents are all
    enumerated: the draws are then of ``p(z | y)`` alone, under the model's ``pyro.param`` values)."""
    total = next(iter(flat.values())).shape[0] if total is None else total
    shapes = {n: tuple(proto.nodes[n]["value"].shape) for n in names}
    flat = {k: v for k, v in flat.items() if k not in names}
    try:
        if not vectorized:
            raise ValueError("one trace per draw")
        _probe_vectorized(model, flat, model_kwargs, proto, nesting, total)  # a blown-up layout, before the work
        out: dict[str, list[torch.Tensor]] = {n: [] for n in names}
        for start in range(0, total, chunk_size):
            chunk = {k: v[start : start + chunk_size] for k, v in flat.items()}
            num = min(chunk_size, total - start)
            sampler = infer_discrete(_at_draws(model, chunk, proto, nesting, num), first_available_dim=-(nesting + 2),
                                     temperature=1)
            tr = poutine.trace(sampler).get_trace(**model_kwargs)
            for n in names:
                out[n].append(_per_draw(tr.nodes[n]["value"], num, shapes[n]))
        return {n: torch.cat(v) for n, v in out.items()}, True
    except (RuntimeError, ValueError, IndexError):
        out = {n: [] for n in names}
        for i in range(total):
            sampler = infer_discrete(poutine.condition(model, {k: v[i] for k, v in flat.items()}),
                                     first_available_dim=-(nesting + 1), temperature=1)
            tr = poutine.trace(sampler).get_trace(**model_kwargs)
            for n in names:
                out[n].append(tr.nodes[n]["value"].reshape(shapes[n]))
        return {n: torch.stack(v) for n, v in out.items()}, False


@torch.no_grad()
def enumerated_posterior_draws(model: Model, model_kwargs: Mapping[str, Any], num_samples: int, *,
                               chunk_size: int = 1000) -> dict[str, torch.Tensor]:
    """Posterior draws of a model whose latents are all enumerated (its other unknowns ``pyro.param`` values, as
    Pyro's param store holds them): ``num_samples`` draws ``z_s ~ p(z | y)`` of every site marked for parallel
    enumeration, by Pyro's ``infer_discrete`` (forward-filter backward-sample at temperature 1), each shaped
    ``(1, num_samples, *site_shape)``: one chain, as ``run_svi``'s draws from a guide are."""
    trace = trace_model(model, model_kwargs)
    names = [n for n in enumerated_sites(trace) if trace.nodes[n]["infer"].get("enumerate") == "parallel"]
    if not names:
        return {}
    draws, _ = _discrete_posterior_draws(model, {}, model_kwargs, trace, max_plate_nesting(trace), names,
                                         chunk_size, total=num_samples)
    return {n: v.unsqueeze(0) for n, v in draws.items()}


def _site_output(site, proto_site, num, values):
    shape = tuple(proto_site["value"].shape)
    if values:
        return _per_draw(site["value"], num, shape)
    batch = shape[: len(shape) - proto_site["fn"].event_dim]
    return _per_draw(pointwise_log_prob(site), num, batch)


def _evaluate_vectorized(model, flat, model_kwargs, proto, nesting, names, chunk_size, predictive, values):
    total = next(iter(flat.values())).shape[0]
    pieces: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for start in range(0, total, chunk_size):
        chunk = {k: v[start : start + chunk_size] for k, v in flat.items()}
        num = next(iter(chunk.values())).shape[0]
        tr = _vectorized_trace(model, chunk, model_kwargs, proto, nesting, uncondition=predictive)
        if values:  # the draws must be the ones replayed (the check above sees only the log-likelihood)
            for k, v in chunk.items():
                if k in tr.nodes and k in proto.nodes and not torch.equal(
                        _per_draw(tr.nodes[k]["value"], num, tuple(proto.nodes[k]["value"].shape)), v):
                    raise ValueError(f"vectorized predictive did not replay the draws of {k!r}")
        for n in names:
            out = _site_output(tr.nodes[n], proto.nodes[n], num, values)
            pieces[n].append(out.detach().cpu().numpy())
    return pieces


def _values_agree(pieces, proto, names, index: int) -> bool:
    """Do the vectorized values of draw ``index`` (0 or -1) match those of ``proto``, a trace at that draw?"""
    return all(np.allclose(pieces[n][index][index], proto.nodes[n]["value"].detach().cpu().numpy(),
                           rtol=1e-4, atol=1e-5) for n in names)


def _draw_agrees(pieces, proto, names, index: int) -> bool:
    """Does the vectorized log-likelihood of draw ``index`` (0 or -1) match ``proto``, a trace at that draw?"""
    for n in names:
        site = proto.nodes[n]
        ref = pointwise_log_prob(site).detach().cpu().numpy()
        got = pieces[n][index][index]
        if ref.shape != got.shape and ref.size != 1:
            ref = np.broadcast_to(ref, got.shape)
        if not np.allclose(got, ref, rtol=1e-4, atol=1e-5):
            return False
    return True


def _evaluate_loop(model, flat, model_kwargs, proto, names, predictive, values):
    total = next(iter(flat.values())).shape[0]
    pieces: dict[str, list[np.ndarray]] = {n: [] for n in names}
    run = uncondition_data(model) if predictive else model
    for i in range(total):
        tr = trace_model(poutine.condition(run, {k: v[i] for k, v in flat.items()}), model_kwargs)
        for n in names:
            pieces[n].append(_site_output(tr.nodes[n], proto.nodes[n], 1, values).detach().cpu().numpy())
    return pieces
