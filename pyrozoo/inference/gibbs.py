"""A Gibbs sampler for conditionally conjugate models, many chains at once.

The user supplies the full conditionals; the kernel sweeps them in order. All ``C`` chains live in one leading batch
dimension of every state tensor, so a sweep is a handful of vectorized tensor operations on the device whatever
``C`` is (this is what makes many-chain Gibbs cheap next to NUTS, whose chains run one after another).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.assemble import LogLikelihoodFn, assemble_result
from pyrozoo.inference.device import keeps_caller_state, set_seed
from pyrozoo.inference.predictive import check_likelihood_sites, check_posterior_sites, trace_model
from pyrozoo.inference.progress import progress_bar
from pyrozoo.inference.result import Result
from pyrozoo.validation import check_int

State = dict[str, torch.Tensor]


@dataclass
class GibbsKernel:
    """Full conditionals of a model.

    ``init(num_chains, data)`` returns the starting state: a dict of tensors with leading dimension ``num_chains``.
    ``conditionals`` maps each block name to ``fn(state, data) -> tensor``, a draw from
    ``p(block | all other blocks, data)`` for every chain at once; they are applied in order, each seeing the
    blocks updated before it. ``log_joint(state, data) -> (C,)`` (optional) is recorded as the ``lp`` stat.
    ``record`` lists the blocks kept as posterior draws (default: all).
    """

    init: Callable[[int, Mapping[str, Any]], State]
    conditionals: Mapping[str, Callable[[State, Mapping[str, Any]], torch.Tensor]]
    log_joint: Callable[[State, Mapping[str, Any]], torch.Tensor] | None = None
    record: tuple[str, ...] | None = None

    def sweep(self, state: State, data: Mapping[str, Any]) -> State:
        """One systematic-scan Gibbs sweep over all blocks."""
        for name, draw in self.conditionals.items():
            state[name] = draw(state, data)
        return state


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
    progress: bool = True,
    log_likelihood_fn: LogLikelihoodFn | None = None,
    model_name: str = "",
    config: Mapping[str, Any] | None = None,
) -> Result:
    """Run ``num_chains`` Gibbs chains in lock-step; keep every ``thin``-th sweep after ``warmup_steps``.

    ``data`` is what the conditionals read (sufficient statistics, design matrices ...). With ``model`` and
    ``model_kwargs`` (the Pyro model the conditionals belong to) the result gets the pointwise log-likelihood and
    observed data like every other engine; without them the result holds the draws alone. With ``model``, its
    structure is checked as NUTS and SVI check it, and the recorded blocks must include every latent site of the
    model (enumerated sites excepted), all before the first sweep.
    """
    num_samples = check_int("num_samples", num_samples, minimum=1)
    warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
    num_chains = check_int("num_chains", num_chains, minimum=1)
    thin = check_int("thin", thin, minimum=1)
    proto = None
    if model is not None:  # traced before set_seed: the chains' draws stay those of the seed alone
        proto = trace_model(model, model_kwargs or {})
        check_likelihood_sites(proto, custom_log_likelihood=log_likelihood_fn is not None, warn=False)
    set_seed(seed)
    t0 = time.perf_counter()
    state = kernel.init(num_chains, data)
    names = kernel.record or tuple(state)
    missing = [n for n in names if n not in state]
    if missing:
        raise PyrozooError(f"record: block(s) {missing} are not in the kernel's state {list(state)}")
    if proto is not None:
        check_posterior_sites(proto, names, what="gibbs kernel (recorded blocks)")
    draws = {n: torch.empty((num_samples,) + tuple(state[n].shape), dtype=state[n].dtype,
                            device=state[n].device) for n in names}
    lp = None
    if kernel.log_joint is not None:
        first = next(iter(state.values()))
        lp = torch.empty((num_samples, num_chains), dtype=first.dtype, device=first.device)
    total = warmup_steps + num_samples * thin
    bar = progress_bar(total, f"gibbs[{num_chains} chains]", progress)
    kept = 0
    with torch.no_grad():
        for it in range(total):
            state = kernel.sweep(state, data)
            if it >= warmup_steps and (it - warmup_steps) % thin == thin - 1:
                for n in names:
                    draws[n][kept] = state[n]
                if lp is not None:
                    lp[kept] = kernel.log_joint(state, data)
                kept += 1
            if it % 100 == 0:
                bar.update(min(100, total - it))
    bar.close()
    wall = time.perf_counter() - t0
    posterior = {n: v.transpose(0, 1).contiguous() for n, v in draws.items()}  # (chain, draw, ...)
    stats = {"lp": lp.transpose(0, 1)} if lp is not None else {}
    if model is None:
        return Result(inference="gibbs", posterior=posterior, sample_stats=stats, seed=seed, wall_time=wall,
                      config=dict(config or {}), model=model_name)
    return assemble_result(
        "gibbs",
        model,
        model_kwargs or {},
        posterior,
        sample_stats=stats,
        log_likelihood_fn=log_likelihood_fn,
        seed=seed,
        wall_time=wall,
        config=config,
        model_name=model_name,
    )
