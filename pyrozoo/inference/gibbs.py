"""A Gibbs sampler for conditionally conjugate models, many chains at once.

The user supplies the full conditionals; the kernel sweeps them in order. All ``C`` chains live in one leading batch
dimension of every state tensor, so a sweep is a handful of vectorized tensor operations on the device whatever
``C`` is (this is what makes many-chain Gibbs cheap next to NUTS, whose chains run one after another).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.assemble import LogLikelihoodFn, assemble_result
from pyrozoo.inference.device import checked_device, keeps_caller_state, set_seed
from pyrozoo.inference.predictive import (
    check_likelihood_sites,
    check_model_kwargs,
    check_posterior_sites,
    latent_sites,
    trace_model,
)
from pyrozoo.inference.progress import progress_bar
from pyrozoo.inference.result import Result
from pyrozoo.validation import check_finite_kwargs, check_int

State = dict[str, torch.Tensor]

_CHECK_EVERY = 100  # sweeps between the finiteness checks of the recorded draws (one host sync each)


@dataclass
class GibbsKernel:
    """Full conditionals of a model.

    ``init(num_chains, data)`` returns the starting state: a dict of tensors with leading dimension ``num_chains``;
    it fixes every block's shape. ``conditionals`` maps each block name (a block of init's state) to
    ``fn(state, data) -> tensor``, a draw from ``p(block | all other blocks, data)`` for every chain at once, of the
    block's shape; they are applied in order, each seeing the blocks updated before it. ``log_joint(state, data) ->
    (C,)`` (optional, floating) is recorded as the ``lp`` stat. ``record`` lists the blocks kept as posterior draws
    (default: all; one name may be given as a string); each must have a conditional. The fields are checked here,
    the state and the draws by :func:`run_gibbs`.
    """

    init: Callable[[int, Mapping[str, Any]], State]
    conditionals: Mapping[str, Callable[[State, Mapping[str, Any]], torch.Tensor]]
    log_joint: Callable[[State, Mapping[str, Any]], torch.Tensor] | None = None
    record: tuple[str, ...] | str | None = None

    def __post_init__(self) -> None:
        if not callable(self.init):
            raise PyrozooError(f"GibbsKernel: init: expected a callable init(num_chains, data) -> {{block: tensor}}, "
                               f"got {type(self.init).__name__}")
        if not isinstance(self.conditionals, Mapping) or not self.conditionals:
            raise PyrozooError("GibbsKernel: conditionals: expected a non-empty mapping {block name: "
                               f"draw(state, data) -> tensor}}, got {_describe(self.conditionals)}")
        bad = {k: type(v).__name__ for k, v in self.conditionals.items() if not isinstance(k, str) or not callable(v)}
        if bad:
            raise PyrozooError(f"GibbsKernel: conditionals: expected block names (str) mapped to callables "
                               f"draw(state, data) -> tensor, got {bad}")
        if self.log_joint is not None and not callable(self.log_joint):
            raise PyrozooError(f"GibbsKernel: log_joint: expected None or a callable log_joint(state, data) -> (C,), "
                               f"got {type(self.log_joint).__name__}")
        if self.record is not None:
            record = (self.record,) if isinstance(self.record, str) else self.record
            ok = isinstance(record, Iterable) and not isinstance(record, Mapping)
            record = tuple(record) if ok else ()
            if not record or not all(isinstance(n, str) for n in record):
                raise PyrozooError(f"GibbsKernel: record: expected a block name or a non-empty sequence of block "
                                   f"names, got {_describe(self.record)}")
            twice = sorted({n for n in record if record.count(n) > 1})
            if twice:
                raise PyrozooError(f"GibbsKernel: record: block(s) {twice} are named more than once in {list(record)}")
            self.record = record

    def sweep(self, state: State, data: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]] | None = None,
              dtypes: dict[str, torch.dtype] | None = None, *, sweep_no: int = 0) -> State:
        """One systematic-scan Gibbs sweep over all blocks. With ``shapes`` (the blocks' shapes, fixed by init), each
        draw is checked to be a tensor of its block's shape and of the dtype in ``dtypes`` (a block missing there
        takes the dtype of its first draw); ``sweep_no`` (1-based) goes in the message."""
        for name, draw in self.conditionals.items():
            value = draw(state, data)
            if shapes is not None:
                _check_draw(name, value, shapes[name], dtypes, sweep_no)
            state[name] = value
        return state


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _check_draw(name: str, value: Any, shape: tuple[int, ...], dtypes: dict[str, torch.dtype] | None,
                sweep_no: int) -> None:
    """Raise unless a conditional's draw is a tensor of its block's shape and keeps the block's dtype."""
    where = f"conditional '{name}' (sweep {sweep_no})"
    if not isinstance(value, torch.Tensor):
        raise PyrozooError(f"{where}: expected a tensor of shape {shape}, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise PyrozooError(f"{where}: expected a draw of shape {shape} (num_chains first, the block's shape as init "
                           f"gives it), got {tuple(value.shape)}")
    if dtypes is not None:
        if dtypes.setdefault(name, value.dtype) != value.dtype:
            raise PyrozooError(f"{where}: returned {value.dtype}; expected {dtypes[name]}, the dtype of its earlier "
                               "draws: a block keeps one dtype")


def _check_state(state: Any, num_chains: int) -> State:
    """Raise unless init's state is a mapping of tensors with the chains as their first dimension."""
    if not isinstance(state, Mapping) or not state:
        raise PyrozooError(f"init: expected a non-empty mapping {{block name: torch.Tensor}}, got {_describe(state)}")
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise PyrozooError(f"init: block '{name}': expected a torch.Tensor, got {type(value).__name__}")
        if value.dim() == 0 or value.shape[0] != num_chains:
            raise PyrozooError(f"init: block '{name}': expected shape (num_chains={num_chains}, ...), the chains "
                               f"first, got {tuple(value.shape)}")
    return dict(state)


def _check_blocks(kernel: GibbsKernel, state: State, names: tuple[str, ...]) -> None:
    """Raise unless every conditional updates a block of init's state and every recorded block has a conditional
    (a block without one keeps its initial value: fixed helpers may, posterior draws may not)."""
    strangers = [n for n in kernel.conditionals if n not in state]
    if strangers:
        raise PyrozooError(f"conditionals: block(s) {strangers} are not in init's state {list(state)} (misspelt? "
                           "init must give every block, helpers too)")
    fixed = [n for n in names if n not in kernel.conditionals]
    if fixed:
        default = ("" if kernel.record else f" (record was not given, so every block of init's state is recorded; "
                   f"for fixed helper blocks pass record={tuple(n for n in names if n not in fixed)!r})")
        raise PyrozooError(f"record: block(s) {fixed} have no conditional, so every draw would be their initial "
                           f"value; expected a conditional for every recorded block, got conditionals for "
                           f"{list(kernel.conditionals)}{default}")


def _check_site_shapes(proto: Any, state: State, names: tuple[str, ...]) -> None:
    """Raise unless each recorded block that is a latent site of the traced model holds the site's shape per chain."""
    for name in latent_sites(proto):
        if name in names:
            want, got = tuple(proto.nodes[name]["value"].shape), tuple(state[name].shape[1:])
            if got != want:
                raise PyrozooError(f"gibbs kernel: block '{name}' holds {got} per chain (init gives "
                                   f"{tuple(state[name].shape)}, chains first); expected the model site's shape "
                                   f"{want}")


def _check_log_joint(value: Any, num_chains: int, dtype: torch.dtype | None, sweep_no: int) -> None:
    """Raise unless ``log_joint`` returned a floating (num_chains,) tensor (of ``dtype`` once that is known)."""
    where = f"log_joint (sweep {sweep_no})"
    if not isinstance(value, torch.Tensor):
        raise PyrozooError(f"{where}: expected a tensor of shape ({num_chains},), got {type(value).__name__}")
    if tuple(value.shape) != (num_chains,):
        raise PyrozooError(f"{where}: expected one value per chain, shape ({num_chains},), got {tuple(value.shape)}")
    if not value.dtype.is_floating_point or (dtype is not None and value.dtype != dtype):
        raise PyrozooError(f"{where}: expected a floating tensor{f' of {dtype}' if dtype else ''}, got {value.dtype}")


def _first_nonfinite(draws: State, start: int, stop: int) -> tuple[str, int, int] | None:
    """(block, draw, chain) of the earliest non-finite value among ``draws[:, start:stop]``, or None; one host sync
    when all are finite."""
    if stop <= start:
        return None
    flags = [torch.isfinite(v[start:stop]).all() for v in draws.values()]
    if bool(torch.stack([f.to(flags[0].device) for f in flags]).all()):
        return None
    worst = None
    for name, v in draws.items():
        bad = ~torch.isfinite(v[start:stop]).reshape(stop - start, v.shape[1], -1).all(-1)  # (draw, chain)
        if bool(bad.any()):
            k, c = (int(i) for i in bad.nonzero()[0])
            if worst is None or start + k < worst[1]:
                worst = (name, start + k, c)
    return worst


def _check_finite(draws: State, start: int, stop: int, warmup_steps: int, thin: int) -> None:
    found = _first_nonfinite(draws, start, stop)
    if found is not None:
        name, k, c = found
        raise PyrozooError(f"block '{name}': non-finite value (NaN or inf) in chain {c} at draw {k} (sweep "
                           f"{warmup_steps + (k + 1) * thin}); its conditional (or one it reads) produced it")


def _check_finite_state(state: State, names: tuple[str, ...], first: int, sweep_no: int) -> None:
    """During warmup: raise if a recorded block of the state is non-finite after sweep ``sweep_no`` (the state was
    last checked, and finite, before sweep ``first``)."""
    found = _first_nonfinite({n: state[n].unsqueeze(0) for n in names}, 0, 1)
    if found is not None:
        name, _, c = found
        span = f"sweep {sweep_no}" if first == sweep_no else f"sweeps {first} to {sweep_no}"
        raise PyrozooError(f"block '{name}': non-finite value (NaN or inf) in chain {c}, first seen after warmup "
                           f"{span}; its conditional (or one it reads) "
                           "produced it")


@keeps_caller_state
def run_gibbs(
    kernel: GibbsKernel,
    data: Mapping[str, Any],
    *,
    model: Callable | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    num_samples: int = 1000,
    warmup_steps: int = 500,
    num_chains: int = 4,
    thin: int = 1,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    log_likelihood_fn: LogLikelihoodFn | None = None,
    model_name: str = "",
    config: Mapping[str, Any] | None = None,
    allow_nonfinite: Iterable[str] = (),
) -> Result:
    """Run ``num_chains`` Gibbs chains in lock-step; keep every ``thin``-th sweep after ``warmup_steps``.

    ``data`` is what the conditionals read (sufficient statistics, design matrices ...). With ``model`` and
    ``model_kwargs`` (the Pyro model the conditionals belong to) the result gets the pointwise log-likelihood and
    observed data like every other engine; without them the result holds the draws alone. With ``model``, its
    structure is checked as NUTS and SVI check it, and the recorded blocks must include every latent site of the
    model (enumerated sites excepted) with the sites' shapes, all before the first sweep. The kernel's contract
    (see :class:`GibbsKernel`) is checked too: init's state and blocks before the first sweep, each draw's shape
    and dtype at every sweep, ``log_joint``'s at every recorded draw, and the recorded blocks' finiteness every
    ``_CHECK_EVERY`` sweeps and at the end (one host sync each), naming the block, chain and draw. Before any of
    it, every floating-point tensor in ``data`` (a mapping) and ``model_kwargs`` must be finite (a NaN or inf is a
    :class:`PyrozooError` naming the entry), except those named in ``allow_nonfinite``.
    ``device`` (``"auto" | "cpu" | "cuda" | "cuda:N"``; ``None``: wherever the data are): run_gibbs does not move
    data, the chains run where the kernel puts them; a device other than that of the tensors in ``data`` (a
    mapping) or ``model_kwargs`` is a :class:`PyrozooError` before any work, as in ``run_svi``.
    """
    model_kwargs = check_model_kwargs(model_kwargs)
    num_samples = check_int("num_samples", num_samples, minimum=1)
    warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
    num_chains = check_int("num_chains", num_chains, minimum=1)
    thin = check_int("thin", thin, minimum=1)
    if device is not None:
        if isinstance(data, Mapping):
            checked_device(device, data, engine="run_gibbs", what="data")
        checked_device(device, model_kwargs, engine="run_gibbs")
    if isinstance(data, Mapping):  # a kernel may read another kind of object: not looked into
        check_finite_kwargs(data, allow=allow_nonfinite, what="data")
    check_finite_kwargs(model_kwargs, allow=allow_nonfinite)
    proto = None
    if model is not None:  # traced before set_seed: the chains' draws stay those of the seed alone
        proto = trace_model(model, model_kwargs, wrap_errors=True)
        check_likelihood_sites(proto, custom_log_likelihood=log_likelihood_fn is not None, warn=False,
                               model_kwargs=model_kwargs)
    set_seed(seed)
    t0 = time.perf_counter()
    state = _check_state(kernel.init(num_chains, data), num_chains)
    names = kernel.record or tuple(state)
    missing = [n for n in names if n not in state]
    if missing:
        raise PyrozooError(f"record: block(s) {missing} are not in the kernel's state {list(state)}")
    _check_blocks(kernel, state, names)
    if proto is not None:
        check_posterior_sites(proto, names, what="gibbs kernel (recorded blocks)")
        _check_site_shapes(proto, state, names)
    shapes = {n: tuple(v.shape) for n, v in state.items()}
    dtypes: dict[str, torch.dtype] = {}  # each block's dtype: that of its conditional's first draw
    draws: State = {}
    lp = None
    total = warmup_steps + num_samples * thin
    bar = progress_bar(total, f"gibbs[{num_chains} chains]", progress)
    kept = checked = state_checked = 0  # state_checked: the last warmup sweep whose state was checked
    with torch.no_grad():
        for it in range(total):
            state = kernel.sweep(state, data, shapes, dtypes, sweep_no=it + 1)
            if it == 0:  # recorded in the dtype the conditionals draw in (init's where a block has none)
                draws = {n: torch.empty((num_samples,) + shapes[n], dtype=state[n].dtype, device=state[n].device)
                         for n in names}
            if it >= warmup_steps and (it - warmup_steps) % thin == thin - 1:
                for n in names:
                    draws[n][kept] = state[n]
                if kernel.log_joint is not None:
                    value = kernel.log_joint(state, data)
                    _check_log_joint(value, num_chains, None if lp is None else lp.dtype, it + 1)
                    if lp is None:
                        lp = torch.empty((num_samples, num_chains), dtype=value.dtype, device=value.device)
                    lp[kept] = value
                kept += 1
            if it % _CHECK_EVERY == 0:
                bar.update(min(_CHECK_EVERY, total - it))
            if it < warmup_steps and (it % _CHECK_EVERY == 0 or it == warmup_steps - 1):  # and at warmup's end
                _check_finite_state(state, names, state_checked + 1, it + 1)
                state_checked = it + 1
            elif it >= warmup_steps and it % _CHECK_EVERY == 0:
                _check_finite(draws, checked, kept, warmup_steps, thin)
                checked = kept
    bar.close()
    _check_finite(draws, checked, kept, warmup_steps, thin)
    wall = time.perf_counter() - t0
    posterior = {n: v.transpose(0, 1).contiguous() for n, v in draws.items()}  # (chain, draw, ...)
    stats = {"lp": lp.transpose(0, 1)} if lp is not None else {}
    if model is None:
        return Result(inference="gibbs", posterior=posterior, sample_stats=stats, seed=seed, wall_time=wall,
                      config=dict(config or {}), model=model_name)
    return assemble_result(
        "gibbs",
        model,
        model_kwargs,
        posterior,
        sample_stats=stats,
        log_likelihood_fn=log_likelihood_fn,
        seed=seed,
        wall_time=wall,
        config=config,
        model_name=model_name,
    )
