"""Stochastic variational inference: ELBO choice, optimizer and schedule, early stop, checkpoint and resume."""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import math
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyro
import pyro.distributions as dist
import pyro.optim
import pyro.poutine as poutine
import torch
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO
from pyro.poutine.util import site_is_subsample
from torch.distributions import constraints

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.assemble import LogLikelihoodFn, assemble_result
from pyrozoo.inference.checkpoint import (
    changed_data,
    changed_params,
    changed_settings,
    check_checkpoint_path,
    data_fingerprint,
    load_checkpoint,
    restore_checkpoint,
    save_checkpoint,
    uses_scheduler,
)
from pyrozoo.inference.device import checked_device, keeps_caller_state, same_rng_states, set_seed
from pyrozoo.inference.guide_draws import draw_from_guide, guide_sites
from pyrozoo.inference.predictive import (
    FixedParams,
    check_has_latents,
    check_likelihood_sites,
    check_model_kwargs,
    check_posterior_sites,
    describe_failure,
    describe_kwargs,
    device_of,
    drawn_sites,
    enumerated_posterior_draws,
    enumerated_sites,
    latent_sites,
    max_plate_nesting,
    trace_model,
)
from pyrozoo.inference.progress import progress_bar
from pyrozoo.inference.result import Result
from pyrozoo.validation import (
    check_accepts,
    check_bool,
    check_choice,
    check_finite_kwargs,
    check_int,
    check_positive,
)

ELBOS = {"trace": Trace_ELBO, "meanfield": TraceMeanField_ELBO, "enum": TraceEnum_ELBO}
OPTIMIZERS = ("adam", "clipped_adam")


def make_optimizer(name: str, lr: float, *, lr_decay: float = 1.0, num_steps: int = 1,
                   clip_norm: float = 10.0) -> pyro.optim.PyroOptim:
    """Adam or ClippedAdam; the learning rate decays geometrically to ``lr * lr_decay`` over ``num_steps``.

    ``lr_decay=1`` keeps it constant. The schedule is ``lr_t = lr * lr_decay ** (t / num_steps)``.
    """
    check_choice("optimizer", name, OPTIMIZERS)
    check_positive("lr", lr)
    check_positive("lr_decay", lr_decay)
    gamma = lr_decay ** (1.0 / max(num_steps, 1))
    if name == "clipped_adam":
        return pyro.optim.ClippedAdam({"lr": lr, "lrd": gamma, "clip_norm": clip_norm})
    if lr_decay == 1.0:
        return pyro.optim.Adam({"lr": lr})
    return pyro.optim.ExponentialLR({"optimizer": torch.optim.Adam, "optim_args": {"lr": lr}, "gamma": gamma})


def loss_plateau(losses: list[float], window: int, rel_tol: float, *, settled: bool = False) -> bool:
    """True when the mean loss of the last ``window`` steps improved on the window before by < ``rel_tol``
    (relative). ``settled``: for deterministic objectives, true only when the two window means differ by less than
    that in either direction, so that an optimizer still oscillating upwards is not stopped."""
    if len(losses) < 2 * window:
        return False
    prev = sum(losses[-2 * window : -window]) / window
    cur = sum(losses[-window:]) / window
    change = abs(prev - cur) if settled else prev - cur
    return change < rel_tol * max(abs(prev), 1e-12 if not settled else 1.0)


_INVALID_PARAMETER = re.compile(
    r"Expected parameter (\w+) .*?of distribution (\w+).*?to satisfy the constraint (.+?), but found", re.S)


def diverged_error(error: ValueError, when: str, fix: str = "lower lr", *,
                   params_finite: bool = False) -> PyrozooError | None:
    """A distribution's argument check that failed during training (``Expected parameter scale ... to satisfy the
    constraint GreaterThan(lower_bound=0.0), but found invalid values`` and a dump of the tensor) as a one-line
    :class:`PyrozooError`, like a non-finite loss: a step with huge or non-finite gradients left a parameter
    outside its range (a NaN loc, a scale that underflowed to 0) and the next distribution built on it fails. The
    message says ``when`` (``at step 12``) and the ``fix``; ``None`` for any other ``ValueError``.
    ``params_finite``: every parameter is still finite, so the cause may as well be the data (with minibatches a
    bad row is met only in its batch, at any step): the message names both."""
    found = _INVALID_PARAMETER.search(str(error))
    if found is None:
        return None
    name, family, constraint = found.groups()
    if params_finite:
        return PyrozooError(f"svi: the {name} of a {family} got invalid values {when} (constraint {constraint}): "
                            f"{fix} if the fit diverged, or check the data (a minibatch meets a bad row only in its "
                            f"batch)")
    return PyrozooError(f"svi: training diverged {when}: the {name} of a {family} became invalid (constraint "
                        f"{constraint}); {fix}")


def _params_finite() -> bool:
    """Whether every value in Pyro's param store is finite (constrained values, as the model and guide see them)."""
    return all(bool(torch.isfinite(v).all()) for _, v in pyro.get_param_store().items())


class FittedGuide:
    """A fitted guide that reads its fit's own parameters: ``guide(*args, **kwargs)`` run under
    :class:`~pyrozoo.inference.predictive.FixedParams` at ``params`` (the param store's values when the fit ended,
    on the fit's device), so its draws come from ``q(theta; phi_fit)`` whatever Pyro's global param store holds
    later (an AutoGuide, a ``PyroModule``, reads the store under its site names: a later fit's guide of the same
    class, or ``pyro.clear_param_store()``, changed the draws of this one). ``guide`` is a deep copy of the guide
    as the fit left it (the live object where it cannot be copied): a ``PyroModule`` guide called under another
    fit's store rebinds its attributes to that fit's tensors, which its methods read without a ``pyro.param``
    site (``AutoNormal.median``: another fit's values); the copy keeps its own."""

    def __init__(self, guide: Callable, params: Mapping[str, torch.Tensor]) -> None:
        try:
            guide = copy.deepcopy(guide)
        except Exception:  # a guide holding what cannot be copied (an open file, a lock): the live one
            pass
        self.guide = guide
        self.params = dict(params)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with FixedParams(self.params), self._own_parameters():
            return self.guide(*args, **kwargs)

    @contextlib.contextmanager
    def _own_parameters(self) -> Iterator[None]:
        """The guide's modules keep their own ``nn.Parameter`` objects: a ``PyroModule`` called while the global
        param store holds another tensor under one of its names rebinds that attribute to the store's tensor."""
        modules = list(self.guide.modules()) if isinstance(self.guide, torch.nn.Module) else []
        saved = [(m, dict(m._parameters)) for m in modules]
        try:
            yield
        finally:
            for module, own in saved:
                module._parameters.update(own)

    def __getattr__(self, name: str) -> Any:
        """The guide's attribute (of the copy :attr:`guide`); its methods (an AutoGuide's ``median``,
        ``quantiles``, ``get_posterior``) run under the fit's parameters too, so ``result.guide.median()`` is this
        fit's."""
        if name in ("guide", "params") or name.startswith("__"):  # not set yet (unpickling, copy): no recursion
            raise AttributeError(name)
        value = getattr(self.guide, name)
        if not (callable(value) and inspect.ismethod(value)):
            return value

        @functools.wraps(value)
        def under_fit(*args: Any, **kwargs: Any) -> Any:
            with FixedParams(self.params), self._own_parameters():
                return value(*args, **kwargs)

        return under_fit

    def __repr__(self) -> str:
        return f"FittedGuide({self.guide!r}, params={sorted(self.params)})"


def _scalar_kwargs(kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The plain values (numbers, strings, booleans, ``None``) of ``kwargs``; tensors and other objects left out."""
    return {k: v for k, v in dict(kwargs or {}).items() if v is None or isinstance(v, (bool, int, float, str))}


def signature_defaults(fn: Callable) -> dict[str, Any]:
    """The default values of ``fn``'s keyword-passable parameters (a ``torch.nn.Module``'s own ``forward``'s, as
    :func:`~pyrozoo.validation.check_accepts` reads it); ``{}`` for a signature that cannot be read."""
    own_forward = isinstance(fn, torch.nn.Module) and type(fn).forward is not torch.nn.Module.forward
    try:
        params = inspect.signature(fn.forward if own_forward else fn).parameters
    except (TypeError, ValueError):
        return {}
    return {n: p.default for n, p in params.items()
            if p.default is not p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def check_resume(path: str | Path, state: Mapping[str, Any], settings: Mapping[str, Any], *,
                 model_defaults: Mapping[str, Any] | None = None) -> None:
    """Refuse to resume from ``state`` (read from ``path``) with ``settings`` that would change the trajectory the
    checkpoint has taken, naming each changed setting with its old and new value.

    ``num_steps`` may grow (or shrink down to the steps already taken) when the learning rate is constant; with
    ``lr_decay != 1`` the decay per step, ``lr_decay ** (1 / num_steps)``, depends on it, so it must match. A
    checkpoint written before settings were stored is accepted with a warning, unless its optimizer state is of the
    other kind (with or without a schedule) than the one asked, which could not be loaded.

    ``settings["data"]`` (a :func:`~pyrozoo.inference.checkpoint.data_fingerprint` of ``model_kwargs``) must match
    too, and so must ``train_kwargs`` (their plain values, ``settings["train_kwargs"]``, and a fingerprint of the
    others, ``settings["train_data"]``; one left out is the ``model_kwargs`` value the steps see in its place): a
    resume on other data is refused, naming each argument that differs. An argument left out on one side and
    passed at the model's default (``model_defaults``, :func:`signature_defaults`) on the other is the same. A
    checkpoint written before data were fingerprinted is resumed with a warning. ``model_name`` is compared where
    both runs gave one (another zoo model with the same latent names and shapes is refused)."""
    stored = dict(state.get("extra", {})).get("settings")
    if stored is None:
        scheduled = settings["optimizer"] == "adam" and settings["lr_decay"] != 1.0
        found = uses_scheduler(state)
        if found is not None and found != scheduled:
            have, want = ("a", "no") if found else ("no", "a")
            raise PyrozooError(f"resume: checkpoint {path} holds the state of an optimizer with {have} learning-rate "
                               f"schedule, but optimizer={settings['optimizer']!r} lr_decay={settings['lr_decay']!r} "
                               f"asks for one with {want} schedule; resume with the lr_decay of the run that wrote "
                               f"it, or start a new run")
        warnings.warn(f"resume: checkpoint {path} stores no run settings (written by an older pyrozoo); resuming "
                      f"without checking that seed, elbo, lr and the other settings match the run that wrote it",
                      UserWarning, stacklevel=4)  # past run_svi and keeps_caller_state
        return
    # settings recorded only when not their default (so older checkpoints match) compare with the default filled in
    defaults = {"vectorize_particles": True}
    changes = changed_settings({**defaults, **stored}, {**defaults, **settings},
                               skip=("num_steps", "data", "train_kwargs", "train_data", "model_name"))
    old_name, new_name = stored.get("model_name"), settings.get("model_name")
    if old_name and new_name and old_name != new_name:  # a label: compared where both runs gave one
        changes.append(f"model_name {old_name!r} -> {new_name!r}")
    by_default = {n: (fp, "default") for n, fp in data_fingerprint(model_defaults or {}).items()}
    if "data" in stored:
        changes += changed_data(stored["data"], settings["data"], stored_absent=by_default, current_absent=by_default)
    else:
        warnings.warn(f"resume: checkpoint {path} stores no fingerprint of its data (written by an older pyrozoo); "
                      f"resuming without checking that model_kwargs are the data it was fitted to",
                      UserWarning, stacklevel=4)
    # train_kwargs (plain values, and a fingerprint of the others) as the steps see them: one left out is
    # model_kwargs' value there, else the model's default
    old_train = data_fingerprint(stored.get("train_kwargs") or {})
    new_train = data_fingerprint(settings.get("train_kwargs") or {})
    if "train_data" in stored:
        old_train.update(stored["train_data"])
        new_train.update(settings.get("train_data", {}))
    elif settings.get("train_data"):
        warnings.warn(f"resume: checkpoint {path} stores no fingerprint of the arrays in its train_kwargs (written "
                      f"by an older pyrozoo); resuming without checking that train_kwargs "
                      f"{sorted(settings['train_data'])} are those it was fitted with", UserWarning, stacklevel=4)
    changes += changed_data(
        old_train, new_train, what="train_kwargs",
        stored_absent={**by_default, **{n: (fp, "model_kwargs") for n, fp in stored.get("data", {}).items()}},
        current_absent={**by_default, **{n: (fp, "model_kwargs") for n, fp in settings.get("data", {}).items()}})
    done = int(state["step"])
    old_steps, new_steps = stored.get("num_steps"), settings["num_steps"]
    if settings["lr_decay"] != 1.0 and old_steps != new_steps:
        changes.append(f"num_steps {old_steps!r} -> {new_steps!r} (with lr_decay != 1 the learning rate decays by "
                       f"lr_decay ** (1 / num_steps) per step, so num_steps fixes the schedule)")
    elif new_steps < done:
        changes.append(f"num_steps {old_steps!r} -> {new_steps!r} (fewer than the {done} steps already taken)")
    if changes:
        raise PyrozooError(f"resume: checkpoint {path} was written with other settings than these: "
                           f"{'; '.join(changes)}; resume with the checkpoint's values or start a new run "
                           f"(resume=False)")


def _fails_only_vectorized(loss: Any, model: Callable, guide: Callable, kwargs: Mapping[str, Any]) -> bool:
    """Whether one unvectorized particle of ``loss`` evaluates (so the vectorized step's error is the particle
    plate's), without touching the parameters' gradients."""
    try:
        with poutine.block(), torch.no_grad():
            loss.loss(model, guide, **kwargs)
    except Exception:  # the model fails without the particle plate too: its own error is the one to show
        return False
    return True


def _exact_support(fn: Any) -> Any:
    """The support of a guide site's distribution where it is the set its draws lie in, else ``None``: a ``Delta``
    (an AutoGuide's site, a point value: its support is the real line whatever the value) and a generic
    ``TransformedDistribution`` (an AutoNormalMessenger's ``Normal`` through ``biject_to(support)``: torch reads its
    support off the last transform, the real line of an ``AffineTransform``) report a support wider than their
    draws'. ``Independent``/expanded/masked wrappers are looked through; a ``LogNormal``, which declares its own
    support, keeps it."""
    inner = fn
    while isinstance(inner, (torch.distributions.Independent, dist.ExpandedDistribution, dist.MaskedDistribution)):
        inner = inner.base_dist
    if isinstance(inner, dist.Delta):
        return None
    if isinstance(inner, torch.distributions.TransformedDistribution):
        declared = inspect.getattr_static(type(inner), "support", None)
        if not isinstance(declared, constraints.Constraint) or isinstance(declared, property):
            return None
    try:
        support = fn.support
    except (NotImplementedError, AttributeError):
        return None
    return support if isinstance(support, constraints.Constraint) else None


def _base_constraint(c: Any) -> Any:
    while isinstance(c, constraints.independent):
        c = c.base_constraint
    return c


def _bounds(c: Any) -> tuple[Any, Any] | None:
    """(lower, upper) of a continuous constraint on the real line (``Independent`` looked through), else ``None``."""
    c = _base_constraint(c)
    inf = math.inf
    if type(c) is type(constraints.real):
        return -inf, inf
    if isinstance(c, (constraints.greater_than, constraints.greater_than_eq)):
        return c.lower_bound, inf
    if isinstance(c, constraints.less_than):
        return -inf, c.upper_bound
    if isinstance(c, (constraints.interval, constraints.half_open_interval)):
        return c.lower_bound, c.upper_bound
    if type(c) is type(constraints.simplex):
        return 0.0, 1.0
    return None


def _support_contained(guide_support: Any, model_support: Any) -> bool:
    """False only for a clear mismatch: one discrete and the other continuous, the real line for a constrained
    site (positive, simplex, correlation Cholesky ...), or interval bounds outside the model's; unknown cases
    (dependent constraints, discrete ones of two kinds, bounds that do not compare) pass."""
    g, m = _base_constraint(guide_support), _base_constraint(model_support)
    if isinstance(g, constraints._Dependent) or isinstance(m, constraints._Dependent):
        return True
    if g.is_discrete != m.is_discrete:
        return False
    if g.is_discrete:
        return True
    if type(g) is type(constraints.real):
        return type(m) is type(constraints.real)
    outer, inner = _bounds(m), _bounds(g)
    if outer is None or inner is None:
        return True
    try:
        below = torch.as_tensor(inner[0], dtype=torch.float64) < torch.as_tensor(outer[0], dtype=torch.float64)
        above = torch.as_tensor(inner[1], dtype=torch.float64) > torch.as_tensor(outer[1], dtype=torch.float64)
        return not bool((below | above).any())
    except (RuntimeError, TypeError, ValueError):
        return True


def _model_at_guide(model: Callable, model_kwargs: Mapping[str, Any],
                    guide_trace: poutine.Trace) -> poutine.Trace | None:
    """The model traced at the guide's draws (``None`` if that fails), leaving every RNG as it was: a support that
    depends on another latent (``Uniform(0, tau)``) is the one the guide's ``tau`` gives, not a prior draw's."""
    try:
        with same_rng_states(), poutine.block(), torch.no_grad():
            return poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(**model_kwargs)
    except Exception:  # noqa: BLE001 -- the steps will raise their own error; the check is skipped
        return None


def check_guide_supports(proto: poutine.Trace, guide_trace: poutine.Trace) -> None:
    """Raise unless the guide draws each latent site of the model (``proto``, the model traced at the guide's draws:
    :func:`_model_at_guide`) within the model's support: a guide that draws a ``HalfNormal`` scale from a
    ``Normal`` fed negative values to the model, which failed steps later as "the scale of a StudentT got invalid
    values ... lower lr". Only clear mismatches are refused (:func:`_support_contained`); AutoGuides' ``Delta`` and
    transformed sites are left alone (:func:`_exact_support`)."""
    latent = set(drawn_sites(proto)) | set(enumerated_sites(proto))
    for name, site in guide_trace.nodes.items():
        if (site["type"] != "sample" or site["is_observed"] or name not in latent or site_is_subsample(site)
                or site["infer"].get("is_auxiliary")):
            continue
        support = _exact_support(site["fn"])
        model_fn = proto.nodes[name]["fn"]
        try:
            model_support = model_fn.support
        except (NotImplementedError, AttributeError):
            continue
        if support is None or not isinstance(model_support, constraints.Constraint):
            continue
        if not _support_contained(support, model_support):
            raise PyrozooError(f"guide: site {name!r} is drawn from a {type(site['fn']).__name__} with support "
                               f"{support}, which is not within the support {model_support} of the model's "
                               f"{type(model_fn).__name__}; expected a guide distribution on the model's support "
                               f"(e.g. a LogNormal for a positive site, or a TransformedDistribution through "
                               f"torch.distributions.biject_to(support))")


@keeps_caller_state
def run_svi(
    model: Callable,
    guide: Callable,
    model_kwargs: Mapping[str, Any] | None = None,
    *,
    num_steps: int = 2000,
    elbo: str = "trace",
    num_particles: int = 1,
    vectorize_particles: bool = True,
    optimizer: str = "adam",
    lr: float = 0.01,
    lr_decay: float = 1.0,
    clip_norm: float = 10.0,
    early_stop_window: int | None = None,
    early_stop_rel_tol: float = 1e-4,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 100,
    resume: bool = False,
    overwrite_checkpoint: bool = False,
    num_samples: int = 1000,
    seed: int = 0,
    device: torch.device | None = None,
    progress: bool = True,
    log_likelihood_fn: LogLikelihoodFn | None = None,
    callback: Callable[[int, float], None] | None = None,
    train_kwargs: Mapping[str, Any] | None = None,
    model_name: str = "",
    config: Mapping[str, Any] | None = None,
    allow_nonfinite: Iterable[str] = (),
) -> Result:
    """Fit ``guide`` to ``model(**model_kwargs)`` by maximizing the ELBO, then draw ``num_samples`` from it.

    ``elbo``: ``trace`` (Trace_ELBO), ``meanfield`` (TraceMeanField_ELBO, analytic KL where available) or ``enum``
    (TraceEnum_ELBO: discrete sites marked ``infer={"enumerate": "parallel"}`` are summed out exactly;
    ``max_plate_nesting`` is read off the model). Minibatching is the model's business: plates with
    ``subsample_size`` scale the likelihood by N / batch.

    ``checkpoint``: a file written every ``checkpoint_every`` steps (and at the end) holding param store, optimizer
    and RNG state, and the settings that decide the trajectory; ``resume=True`` continues from it, giving the same
    parameters as an uninterrupted run. A resume that would change the trajectory (another seed, elbo, lr, ...; see
    :func:`check_resume`), on other data, or with a model and guide whose parameters differ in name or shape from the
    checkpoint's, is refused before any step, naming what changed; ``num_steps`` may grow while
    ``lr_decay == 1``. A new run (``resume=False``) does not replace an existing checkpoint unless
    ``overwrite_checkpoint=True``: it is refused before any step, so that forgetting ``resume=True`` does not lose
    a long run's progress. The path is checked before any step too (a writable file path, ``~`` expanded). A run
    stopped early on a plateau (``early_stop_window`` steps against the window before, checked before each step)
    stays stopped when resumed.
    ``num_particles`` > 1 averages the ELBO over that many particles, vectorized (one pass with a particle plate)
    unless ``vectorize_particles=False``, which a model whose code does not broadcast over an extra leading batch
    dim (``x @ w`` with a vector ``w``) needs: it then runs one pass per particle.
    ``device`` (``"auto" | "cpu" | "cuda" | "cuda:N"``, as in :func:`~pyrozoo.inference.device.resolve_device`):
    run_svi does not move data: the fit runs where ``model_kwargs``' tensors are, and ``device`` only says where a
    resumed checkpoint's parameters and optimizer state go (by default, and for ``"auto"``, the device of those
    tensors). It is checked before any work: an unknown name, CUDA on a machine without it, or a device other than
    the tensors' is an error.
    ``callback(step, loss)`` is called after every step (raise from it to stop). ``train_kwargs`` are passed to
    model and guide during the optimization steps only, e.g. ``{"subsample_size": 256}`` for a model whose data
    plate reads it; draws and the log-likelihood afterwards use ``model_kwargs`` alone (the full data).
    Every floating-point tensor in ``model_kwargs`` and ``train_kwargs`` must be finite (a NaN or inf is a
    :class:`PyrozooError` naming the argument, before any work), except those named in ``allow_nonfinite``.
    A model without latent sample sites (enumerated ones count) has no posterior: an error before any step.
    Sites marked for enumeration that the guide does not draw are summed out only by ``elbo="enum"``; under
    ``trace``/``meanfield`` they would be drawn from their prior at every step, so that is an error before any step.
    A model whose latents are *all* enumerated (its other unknowns ``pyro.param`` values, fitted with them summed
    out: ``elbo="enum"``) has nothing for the guide to draw: its posterior holds ``num_samples`` draws of the
    enumerated sites from their posterior given the data under the fitted parameters, ``z_s ~ p(z | y)``
    (:func:`~pyrozoo.inference.predictive.enumerated_posterior_draws`; they must be marked for *parallel*
    enumeration, else an error before any step), so that the posterior predictive has draws to replay (the
    ``log_likelihood_fn`` still marginalizes them: one value per draw and observation, the same at every draw, so
    ``az.loo`` on it is the plug-in density and its Pareto-k warnings mean nothing).

    The result's ``guide`` is a :class:`FittedGuide`: the guide called as before, but reading this fit's parameters
    (``result.params``), not Pyro's global param store, which a later fit or ``pyro.clear_param_store()`` changes.
    """
    model_kwargs = check_model_kwargs(model_kwargs)
    if train_kwargs is not None:
        train_kwargs = check_model_kwargs(train_kwargs, "train_kwargs")
    check_choice("elbo", elbo, ELBOS)
    num_steps = check_int("num_steps", num_steps, minimum=0)
    num_samples = check_int("num_samples", num_samples, minimum=1)
    num_particles = check_int("num_particles", num_particles, minimum=1)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    if early_stop_window is not None:
        check_int("early_stop_window", early_stop_window, minimum=1)
    if not isinstance(vectorize_particles, bool):
        raise PyrozooError(f"vectorize_particles: expected True or False, got {vectorize_particles!r}")
    if device is not None:
        device = checked_device(device, model_kwargs, engine="run_svi")
    check_finite_kwargs(model_kwargs, allow=allow_nonfinite)
    check_finite_kwargs(train_kwargs or {}, allow=allow_nonfinite, what="train_kwargs")
    check_accepts("guide", guide, model_kwargs, {**model_kwargs, **dict(train_kwargs or {})})  # as it is called
    check_bool("resume", resume)  # resume="false" resumed
    check_bool("overwrite_checkpoint", overwrite_checkpoint)
    if resume and checkpoint is None:
        raise PyrozooError("resume: needs a checkpoint path")
    if resume and overwrite_checkpoint:
        raise PyrozooError("overwrite_checkpoint: True starts a new run over the checkpoint, which resume=True "
                           "continues; expected one of them, got both")
    if checkpoint is not None:  # written at the first save, after the work: its path is checked now
        checkpoint = check_checkpoint_path(checkpoint, resume=bool(resume), overwrite=bool(overwrite_checkpoint))
    # the settings that decide the trajectory, stored in every checkpoint and compared on resume
    settings: dict[str, Any] = {
        "seed": seed, "elbo": elbo, "num_particles": num_particles, "optimizer": optimizer, "lr": lr,
        "lr_decay": lr_decay, "clip_norm": clip_norm if optimizer == "clipped_adam" else None,
        "early_stop_window": early_stop_window,
        "early_stop_rel_tol": early_stop_rel_tol if early_stop_window else None,
        "train_kwargs": _scalar_kwargs(train_kwargs), "num_steps": num_steps,
    }
    if num_particles > 1 and not vectorize_particles:  # recorded only when not the default: older checkpoints match
        settings["vectorize_particles"] = False
    if model_name:  # the zoo model's name, when given (a checkpoint of another model with the same sites is refused)
        settings["model_name"] = model_name
    if checkpoint is not None:  # hashing the data costs one pass over them: only when they are stored
        settings["data"] = data_fingerprint(model_kwargs)
        settings["train_data"] = data_fingerprint({k: v for k, v in dict(train_kwargs or {}).items()
                                                   if k not in settings["train_kwargs"]})
    state: dict[str, Any] | None = None
    if resume:
        check_choice("optimizer", optimizer, OPTIMIZERS)
        state = load_checkpoint(checkpoint)
        check_resume(checkpoint, state, settings, model_defaults=signature_defaults(model))
        stored_name = dict(dict(state.get("extra", {})).get("settings") or {}).get("model_name")
        if not model_name and isinstance(stored_name, str) and stored_name:  # the run's label carries on
            model_name = settings["model_name"] = stored_name

    set_seed(seed)
    proto = trace_model(model, model_kwargs, wrap_errors=True, gradient_probe=True)
    check_likelihood_sites(proto, custom_log_likelihood=log_likelihood_fn is not None, warn=False,
                           model_kwargs=model_kwargs)
    check_has_latents(proto, engine="run_svi")
    names = latent_sites(proto)
    sequential = [n for n in enumerated_sites(proto) if proto.nodes[n]["infer"].get("enumerate") != "parallel"]
    if not names and sequential:
        raise PyrozooError(f"model: its only latent sites are enumerated, so run_svi's posterior holds draws of them "
                           f"from p(z | data) under the fitted pyro.params, made by Pyro's infer_discrete, which "
                           f"handles parallel enumeration only; the site(s) {sequential} are marked for sequential "
                           f"enumeration: mark them infer={{'enumerate': 'parallel'}}")
    nesting = max_plate_nesting(proto)
    elbo_kwargs: dict[str, Any] = {"num_particles": num_particles, "max_plate_nesting": nesting}
    vectorized = num_particles > 1 and vectorize_particles
    if vectorized:
        elbo_kwargs["vectorize_particles"] = True
    loss_fn = ELBOS[elbo](**elbo_kwargs)
    optim = make_optimizer(optimizer, lr, lr_decay=lr_decay, num_steps=num_steps, clip_norm=clip_norm)
    svi = SVI(model, guide, optim, loss_fn)

    # Set the guide up (it may draw initial values) before any RNG state is restored, and check that it draws every
    # latent site of the model (TraceEnum_ELBO sums enumerated ones out: latent_sites leaves them out).
    try:
        with poutine.block(), torch.no_grad():
            guide_trace = poutine.trace(guide).get_trace(**model_kwargs)
    except PyrozooError:
        raise
    except Exception as exc:  # e.g. AutoHierarchicalNormalMessenger reads prior.mean, which LKJCholesky lacks
        raise PyrozooError(f"guide: tracing guide(**model_kwargs) failed before any step: {describe_failure(exc)}; "
                           f"arguments: {describe_kwargs(model_kwargs)}") from exc
    check_posterior_sites(proto, guide_sites(guide_trace), what="guide")
    at_guide = _model_at_guide(model, model_kwargs, guide_trace)
    if at_guide is not None:
        check_guide_supports(at_guide, guide_trace)
    unguided = [n for n in enumerated_sites(proto) if n not in guide_trace.nodes]
    if elbo != "enum" and unguided:
        raise PyrozooError(f"elbo: the model's site(s) {unguided} are marked for enumeration and the guide does not "
                           f"draw them, so elbo={elbo!r} would draw them from their prior at every step (a fit that "
                           f"ignores them); a model with enumerated sites is fitted with them summed out: expected "
                           f"elbo='enum', got {elbo!r} (or have the guide draw them)")
    losses: list[float] = []
    start_step = 0
    if state is not None:
        # the param store now holds exactly what model and guide set up (set_seed cleared it)
        params_changed = changed_params(state, pyro.get_param_store().get_state()["params"])
        if params_changed:
            raise PyrozooError(f"resume: checkpoint {checkpoint} holds other parameters than this model and guide "
                               f"set up: {'; '.join(params_changed)}; resume with the model and guide that wrote "
                               f"it, or start a new run (resume=False)")
        start_step, losses = int(state["step"]), list(state["losses"])
        device = device or device_of(model_kwargs) or torch.device("cpu")
        restore_checkpoint(state, optim, device)

    step_kwargs = {**model_kwargs, **dict(train_kwargs or {})}
    t0 = time.perf_counter()
    bar = progress_bar(num_steps, f"svi[{elbo}]", progress)
    bar.update(start_step)
    step = start_step
    # the last step that updated the parameters (a resumed run's were updated before its checkpoint)
    last_step: int | None = start_step - 1 if start_step > 0 else None
    try:
        for step in range(start_step, num_steps):
            # checked before stepping, so that a run resumed from the checkpoint of a stopped run stops too
            if early_stop_window and loss_plateau(losses, early_stop_window, early_stop_rel_tol):
                break
            try:
                loss = svi.step(**step_kwargs)
            except (RuntimeError, ValueError) as exc:
                if vectorized and step == start_step and _fails_only_vectorized(
                        ELBOS[elbo](num_particles=1, max_plate_nesting=nesting), model, guide, step_kwargs):
                    raise PyrozooError(
                        f"num_particles: the model fails under {num_particles} vectorized particles (they add a "
                        f"batch dim left of its plates, which its code does not broadcast over: "
                        f"{str(exc).splitlines()[0][:200]}); "
                        f"pass vectorize_particles=False to evaluate the particles one at a time") from exc
                if not isinstance(exc, ValueError):
                    raise
                # the step before broke a parameter (the first one only meets the data)
                diverged = (diverged_error(exc, f"at step {step}", params_finite=_params_finite())
                            if last_step is not None else None)
                if diverged is None:
                    raise
                raise diverged from None
            last_step = step
            if not math.isfinite(loss):
                raise PyrozooError(f"svi: the loss became {loss} at step {step}; lower lr or check the data")
            losses.append(loss)
            if isinstance(optim, pyro.optim.lr_scheduler.PyroLRScheduler):
                optim.step()
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss:.4g}")
            if checkpoint is not None and (step + 1) % checkpoint_every == 0:
                save_checkpoint(checkpoint, step=step + 1, optimizer=optim, losses=losses,
                                extra={"settings": settings})
            if callback is not None:
                callback(step + 1, loss)
    finally:
        bar.close()
    if checkpoint is not None:
        save_checkpoint(checkpoint, step=len(losses), optimizer=optim, losses=losses, extra={"settings": settings})
    fit_time = time.perf_counter() - t0

    try:
        if names:
            posterior = draw_from_guide(guide, model_kwargs, names, num_samples)
        else:  # every latent enumerated (summed out in the fit): draws of them from their posterior given the data
            posterior = enumerated_posterior_draws(model, model_kwargs, num_samples)
        params = {k: v.detach().cpu() for k, v in pyro.get_param_store().items()}
        return assemble_result(
            f"svi-{elbo}",
            model,
            model_kwargs,
            posterior,
            fit_stats={"loss": losses},
            params=params,
            log_likelihood_fn=log_likelihood_fn,
            guide=FittedGuide(guide, {k: v.detach().clone() for k, v in pyro.get_param_store().items()}),
            seed=seed,
            wall_time=fit_time,
            config=config,
            model_name=model_name,
        )
    except ValueError as exc:  # the last step left a parameter outside its range
        diverged = (diverged_error(exc, f"after its last step ({last_step})", params_finite=_params_finite())
                    if last_step is not None else None)
        if diverged is None:
            raise
        raise diverged from None
