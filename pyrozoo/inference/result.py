"""The one result type every engine returns, and its conversion to ``arviz.InferenceData``."""

from __future__ import annotations

import copy
import pickle
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import arviz as az
import numpy as np
import pyro
import torch

import pyrozoo
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.arviz_compat import fewer_draws_than_chains_ok  # (also: ArviZ's numba path off, numpy >= 2.4)
from pyrozoo.inference.device import keeps_caller_state


def environment_versions() -> dict[str, str]:
    """The versions behind a run's numbers besides pyro's and pyrozoo's: ``torch_version``, ``numpy_version`` and
    ``python_version`` (bit-identical reruns and exact resume hold for one torch build only)."""
    import platform

    return {"torch_version": str(torch.__version__), "numpy_version": np.__version__,
            "python_version": platform.python_version()}


def library_attrs() -> dict[str, str]:
    """The attributes ``az.from_pyro`` puts on every group (``inference_library``, ``inference_library_version``),
    the ``pyrozoo_version`` that made the run, and :func:`environment_versions` (torch, numpy, Python)."""
    import pyro

    return {"inference_library": "pyro", "inference_library_version": pyro.__version__,
            "pyrozoo_version": pyrozoo.__version__, **environment_versions()}


def predictive_seed(seed: int) -> int:
    """The seed of a run's posterior-predictive draws: ``SeedSequence([seed, 1])``'s first 32-bit word, a stream
    apart from the fit's, which starts at ``seed`` (BLR's exact draws come from a generator seeded with ``seed``: the
    predictive noise drawn from that same stream would repeat the numbers behind w)."""
    return int(np.random.SeedSequence([int(seed), 1]).generate_state(1)[0])


@keeps_caller_state
def _seeded_draws(fn: Callable[[Result], Mapping[str, Any]], result: Result, seed: int) -> Mapping[str, Any]:
    """``fn(result)`` with Python, NumPy and torch seeded by ``seed`` (the param store is left as it is: a
    predictive function may read the fit's params there); the caller's RNG states are put back afterwards."""
    pyro.set_rng_seed(seed)
    return fn(result)


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


@dataclass
class Result:
    """Posterior draws and everything needed to diagnose and reproduce a run.

    Array conventions (all NumPy, on the host):

    * ``posterior[name]``: ``(chain, draw, *site_shape)``;
    * ``sample_stats[name]``: ``(chain, draw)`` (``diverging``, ``step_size``, ``acceptance_rate``, ``lp``,
      ``energy``, NUTS's ``tree_depth`` ...);
    * ``log_likelihood[obs]``: ``(chain, draw, *obs_batch)``: pointwise, marginal over any enumerated latents;
    * ``posterior_predictive[obs]``: ``(chain, draw, *obs_shape)``, filled on request;
    * ``fit_stats[name]``: 1-D traces of the fitting procedure (``loss`` per SVI step, EM objective ...);
    * ``constant_data[name]``: the model's non-observed tensor inputs (covariates X, fixed hyperparameters).

    ``params`` holds point estimates / learned parameters (saved as ``params.pt``); ``guide`` a callable that can
    draw more posterior samples where the engine has one (not saved; ``run_svi``'s reads the fit's own
    parameters, :class:`~pyrozoo.inference.svi.FittedGuide`, not the global param store); ``attrs`` notes (text,
    or numbers such as :func:`response_in_data_units`' ``response_shift`` and ``response_scale``) added to the
    InferenceData's attributes, e.g. what its log-likelihood conditions on when that is not the posterior group;
    ``coords`` the ArviZ coordinates by dim name (e.g. ``{"feature": column names}``), applied to every group.

    A ``Result`` pickles. ``guide`` and ``predictive_fn`` are kept when the standard pickle can store them (the
    :class:`~pyrozoo.inference.assemble.PosteriorPredictive` of a module-level model can); one that it cannot (a
    closure, a lambda, a locally defined model) is left out, and on the unpickled copy it is ``None``:
    :meth:`add_posterior_predictive` then says so. Every array, dim, coord, param and setting is kept.
    """

    inference: str
    posterior: dict[str, np.ndarray]
    sample_stats: dict[str, np.ndarray] = field(default_factory=dict)
    log_likelihood: dict[str, np.ndarray] = field(default_factory=dict)
    observed_data: dict[str, np.ndarray] = field(default_factory=dict)
    posterior_predictive: dict[str, np.ndarray] = field(default_factory=dict)
    fit_stats: dict[str, np.ndarray] = field(default_factory=dict)
    constant_data: dict[str, np.ndarray] = field(default_factory=dict)
    dims: dict[str, list[str]] = field(default_factory=dict)
    coords: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    wall_time: float = float("nan")
    model: str = ""
    guide: Any = None
    predictive_fn: Callable[[Result], dict[str, np.ndarray]] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)  # notes for the InferenceData's attributes

    def __post_init__(self) -> None:
        for group in ("posterior", "sample_stats", "log_likelihood", "observed_data", "posterior_predictive",
                      "constant_data"):
            setattr(self, group, {k: _to_numpy(v) for k, v in getattr(self, group).items()})
        self.fit_stats = {k: _to_numpy(v) for k, v in self.fit_stats.items()}

    def __getstate__(self) -> dict[str, Any]:
        """Pickle state: the guide or predictive function that the standard pickle cannot store is left out."""
        state = dict(self.__dict__)
        dropped = list(state.get("_dropped_on_pickle", []))
        for name in ("guide", "predictive_fn"):
            value = state.get(name)
            if value is None:
                continue
            try:
                pickle.dumps(value)
            except Exception:  # a probe: whatever stops the standard pickle (AttributeError for a local object)
                state[name] = None
                dropped.append(name)
        if dropped:
            state["_dropped_on_pickle"] = sorted(set(dropped))
        return state

    def __copy__(self) -> Result:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self, memo: dict) -> Result:
        """A deep copy keeps the guide and predictive function (copy would otherwise go through __getstate__)."""
        new = object.__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new

    @property
    def num_chains(self) -> int:
        return next(iter(self.posterior.values())).shape[0] if self.posterior else 0

    @property
    def num_draws(self) -> int:
        return next(iter(self.posterior.values())).shape[1] if self.posterior else 0

    def draws(self, name: str, *, flat: bool = True) -> np.ndarray:
        """Draws of one latent, flattened over (chain, draw) unless ``flat=False``."""
        if name not in self.posterior:
            raise PyrozooError(f"name: no posterior site {name!r}; sites are {', '.join(self.posterior)}")
        v = self.posterior[name]
        return v.reshape((-1,) + v.shape[2:]) if flat else v

    def add_posterior_predictive(self) -> None:
        """Fill ``posterior_predictive`` with the engine's predictive function (no-op if already filled).

        The draws are seeded by :func:`predictive_seed` of ``seed``, so they are the same on every call and the same
        as the saved run's ``idata.nc`` (``run_model`` / ``pyrozoo run --posterior-predictive`` fill it this way
        too), whatever the caller's RNG state, which is left as it was. A result without a seed (``None``) draws
        from the caller's global RNG."""
        if self.posterior_predictive:
            return
        if self.predictive_fn is None:
            why = (" (it could not be pickled and was left out when this Result was)"
                   if "predictive_fn" in getattr(self, "_dropped_on_pickle", ()) else "")
            raise PyrozooError(f"posterior_predictive: this result has no predictive function to draw from{why}")
        if self.seed is None:
            draws = self.predictive_fn(self)
        else:
            draws = _seeded_draws(self.predictive_fn, self, predictive_seed(self.seed))
        self.posterior_predictive = {k: _to_numpy(v) for k, v in draws.items()}

    def requested_inference(self) -> dict[str, str]:
        """``{"inference_requested": name}``: the inference asked for, as ``config`` records it (``svi``, where
        ``inference`` is the engine label of what ran, ``svi-meanfield``); ``{}`` when ``config`` names none."""
        name = (self.config or {}).get("inference")
        return {"inference_requested": name} if isinstance(name, str) else {}

    def to_inference_data(self, posterior_predictive: bool = False) -> az.InferenceData:
        """``arviz.InferenceData`` with groups posterior, sample_stats, log_likelihood, observed_data,
        constant_data (and posterior_predictive when asked), named dims and coords; ``fit_stats`` become a
        ``fit_stats`` group. Its attributes: inference, model, seed, wall_time, the ``device`` of ``config`` (the
        one the fit ran on, where it came through a zoo entry's fit or ``run_model``), ``attrs``,
        :func:`library_attrs`, which every group's attributes hold too, as ``az.from_pyro`` writes them, and
        ``inference_requested`` where ``config`` names the inference (:meth:`requested_inference`), as a saved
        run's ``idata.nc`` holds it. An
        ``attrs["log_likelihood"]`` note (e.g. an EM fit's "conditional on point estimates") is left out when there
        is no log-likelihood group for it to describe (``--no-log-likelihood``, or one too large to compute)."""
        if posterior_predictive:
            self.add_posterior_predictive()
        dims = {k: v for k, v in self.dims.items()}
        with fewer_draws_than_chains_ok():  # (chain, draw, ...) by construction, whatever their numbers
            idata = az.from_dict(
                posterior=self.posterior or None,
                sample_stats=self.sample_stats or None,
                log_likelihood=self.log_likelihood or None,
                observed_data=self.observed_data or None,
                posterior_predictive=(self.posterior_predictive or None) if posterior_predictive else None,
                dims=dims,
                coords=self.coords or None,
                attrs={"inference": self.inference, "model": self.model, "seed": -1 if self.seed is None else self.seed,
                       "wall_time": float(self.wall_time),
                       **({"device": str(self.config["device"])} if "device" in (self.config or {}) else {}),
                       **{k: v for k, v in self.attrs.items() if k != "log_likelihood" or self.log_likelihood},
                       **library_attrs(), **self.requested_inference()},
            )
        if self.constant_data:
            import xarray as xr

            # built here, not by az.from_dict, which makes a 0-d setting a length-1 array with a made-up axis
            variables = {k: (dims.get(k, [f"{k}_dim_{i}" for i in range(np.ndim(v))])[:np.ndim(v)], v)
                         for k, v in self.constant_data.items()}
            used = {d for names, _ in variables.values() for d in names}
            ds = xr.Dataset(variables, coords={d: c for d, c in (self.coords or {}).items() if d in used})
            idata.add_groups({"constant_data": ds})
        if self.fit_stats:
            import xarray as xr

            ds = xr.Dataset({k: (f"{k}_step", v) for k, v in self.fit_stats.items()})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # non-standard group name
                idata.add_groups({"fit_stats": ds})
        for group in idata.groups():
            idata[group].attrs.update(library_attrs())
        return idata


def draws_sd(draws: Any, axis: int | None = None) -> Any:
    """The sd of posterior draws as ``az.summary`` reports it: ddof 1, sqrt(sum_s (x_s - xbar)^2 / (S - 1)), over
    ``axis`` (all draws when ``None``); NaN for a single draw, without numpy's warning. The draws are scaled by the
    power of two at their largest |value| first (exact) and the sd scaled back: the squares of draws near 1e-300
    underflowed to an sd of 0 (beta's draws for data of scale 1e150), those of draws near 1e300 overflowed to inf."""
    draws = np.asarray(draws, dtype=float)
    count = draws.size if axis is None else draws.shape[axis]
    if count < 2:
        return np.full(np.delete(draws.shape, axis) if axis is not None else (), np.nan)[()]
    with np.errstate(invalid="ignore"):  # an all-NaN slice: its max is NaN, and so is its sd
        big = np.max(np.abs(draws), axis=axis, keepdims=True)
    # 2^e with big = m 2^e, 0.5 <= m < 1 (so every scaled |draw| is < 1; e capped at 1023, as 2^1024 is inf, which
    # leaves the scaled draws < 2); 1 for all-zero or non-finite slices
    scale = np.where((big > 0) & np.isfinite(big), np.ldexp(1.0, np.minimum(np.frexp(big)[1], 1023)), 1.0)
    sd = (draws / scale).std(axis=axis, ddof=1, keepdims=True) * scale
    return sd.reshape(())[()] if axis is None else np.squeeze(sd, axis=axis)


def stack_chains(per_chain: list[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Stack a list of ``{name: (draw, ...)}`` dicts into ``{name: (chain, draw, ...)}``."""
    names = per_chain[0].keys()
    return {n: np.stack([_to_numpy(c[n]) for c in per_chain]) for n in names}


OBS_GROUPS_WITH_DRAWS = ("posterior", "log_likelihood", "posterior_predictive")  # (chain, draw, ...) arrays


def observation_count(result: Result, dim: str = "obs_id") -> int | None:
    """The length of the ``dim`` axis in ``result`` (read from every variable whose dims name it), or None when no
    variable has that axis; raises if two variables disagree."""
    sizes = {}
    for group in (*OBS_GROUPS_WITH_DRAWS, "observed_data", "constant_data"):
        offset = 2 if group in OBS_GROUPS_WITH_DRAWS else 0
        for name, value in getattr(result, group).items():
            names = result.dims.get(name) or []
            if dim in names and np.ndim(value) > offset + names.index(dim):
                sizes[f"{group}.{name}"] = int(np.shape(value)[offset + names.index(dim)])
    if len(set(sizes.values())) > 1:
        raise PyrozooError(f"{dim}: variables disagree on the number of observations: {sizes}")
    return next(iter(sizes.values())) if sizes else None


def label_observations(result: Result, rows: Any, dim: str = "obs_id") -> Result:
    """Label the observation axis ``dim`` of ``result`` with the original row labels ``rows`` (one per observation,
    in the order the model saw them, e.g. the data file's 0-based data-row numbers of a shuffled training split),
    as the ArviZ coordinate ``result.coords[dim]``: every InferenceData group with that axis (log_likelihood,
    observed_data, posterior_predictive, constant_data, a posterior variable along it) then carries them, and so do
    ``az.loo(idata, pointwise=True).pareto_k`` and ``loo_i``. Returns ``result``; a result without the axis is left
    as it is. Raises unless ``rows`` are distinct and as many as the observations."""
    n = observation_count(result, dim)
    if n is None:
        return result
    labels = np.asarray(rows).reshape(-1)
    if labels.shape[0] != n:
        raise PyrozooError(f"rows: expected {n} row labels (one per observation along {dim}), got {labels.shape[0]}")
    if len(set(labels.tolist())) != n:
        raise PyrozooError(f"rows: expected distinct row labels for the {n} observations along {dim}, got repeats")
    result.coords = {**result.coords, dim: labels.tolist()}
    return result


RESPONSE_ATTRS = ("response_shift", "response_scale")  # the meta keys of a loader and the InferenceData's attrs


def response_map(shift: Any, scale: Any) -> dict[str, float]:
    """``{"response_shift": m, "response_scale": s}`` as floats, for y = m + s * y_std; raises a
    :class:`PyrozooError` naming the one that is not a finite number (the scale: not > 0)."""
    values = {}
    for key, value in zip(RESPONSE_ATTRS, (shift, scale), strict=True):
        try:
            values[key] = float(value)
        except (TypeError, ValueError):
            values[key] = float("nan")
        if not np.isfinite(values[key]) or (key == "response_scale" and values[key] <= 0):
            what = "finite number > 0" if key == "response_scale" else "finite number"
            raise PyrozooError(f"{key}: expected a {what}, got {value!r}")
    return values


def response_in_data_units(result: Result, shift: Any, scale: Any, *, site: str = "y") -> Result:
    """Put the pointwise log-likelihood of a fit to a standardized response y_std = (y - shift) / scale into the
    units of the data as given, and record the map.

    By the change of variables, log p(y_i) = log p(y_std,i) - log(scale) for every draw and observation: a
    constant per point, so PSIS weights, ``az.loo_pit`` and comparisons within one family are unchanged, while
    ``az.compare`` across families (one standardizing y, one not) compares densities of the same numbers.
    ``result.log_likelihood[site]`` is shifted in place (a result without it, e.g. one opting out of the group, is
    left as it is, unless it holds other log-likelihood arrays, which would stay in standardized units: an error);
    ``result.attrs`` records ``response_shift`` and ``response_scale``, which map the observed data and the
    posterior predictive (still standardized) back: y = shift + scale * y_std. Raises a :class:`PyrozooError`
    for a shift that is not a finite number, a scale that is not a finite number > 0, or a result whose attrs
    record a response map already (applying it twice would subtract log(scale) twice). Returns ``result``."""
    values = response_map(shift, scale)
    done = [k for k in RESPONSE_ATTRS if k in result.attrs]
    if done:
        raise PyrozooError(f"result: its attrs already record {', '.join(f'{k}={result.attrs[k]!r}' for k in done)}: "
                           f"its log-likelihood is in the data's units already; expected a result of a fit to "
                           f"the standardized response")
    if site in result.log_likelihood:
        loglik = np.asarray(result.log_likelihood[site])
        result.log_likelihood[site] = (loglik - np.log(values["response_scale"])).astype(loglik.dtype, copy=False)
    elif result.log_likelihood:
        raise PyrozooError(f"site: the result has no log-likelihood of the standardized response {site!r} (it has "
                           f"{', '.join(map(repr, result.log_likelihood))}); expected the observed site that was "
                           f"standardized")
    result.attrs.update(values)
    return result
