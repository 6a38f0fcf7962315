"""Run the shared engines from a :class:`~pyrozoo.config.RunConfig`, so entries do not repeat the mapping."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pyrozoo.config import RunConfig
from pyrozoo.inference.gibbs import GibbsKernel, run_gibbs
from pyrozoo.inference.mcmc import run_mcmc
from pyrozoo.inference.result import Result
from pyrozoo.inference.svi import run_svi


def mcmc_from_config(model: Callable, model_kwargs: Mapping[str, Any], config: RunConfig, **kwargs: Any) -> Result:
    """NUTS/HMC (``config.inference``) with the config's samples, warmup, chains, jit, seed and progress."""
    return run_mcmc(
        model,
        model_kwargs,
        kernel=kwargs.pop("kernel", config.inference if config.inference in ("nuts", "hmc") else "nuts"),
        num_samples=config.num_samples,
        warmup_steps=config.warmup_steps,
        num_chains=config.num_chains,
        jit_compile=config.jit,
        seed=config.seed,
        progress=config.progress,
        model_name=config.model,
        config=config.to_dict(),
        **kwargs,
    )


def svi_from_config(model: Callable, guide: Callable, model_kwargs: Mapping[str, Any], config: RunConfig,
                    *, default_lr: float = 0.01, **kwargs: Any) -> Result:
    """SVI with the config's steps, lr (``default_lr`` when unset), seed and progress; ``num_samples`` draws from
    the fitted guide. Extra keyword arguments go to :func:`~pyrozoo.inference.svi.run_svi`."""
    return run_svi(
        model,
        guide,
        model_kwargs,
        num_steps=config.steps,
        lr=config.lr if config.lr is not None else default_lr,
        num_samples=config.num_samples,
        seed=config.seed,
        progress=config.progress,
        model_name=config.model,
        config=config.to_dict(),
        **kwargs,
    )


def gibbs_from_config(kernel: GibbsKernel, data: Mapping[str, Any], config: RunConfig, **kwargs: Any) -> Result:
    """Gibbs with the config's samples, warmup, chains, seed and progress."""
    return run_gibbs(
        kernel,
        data,
        num_samples=config.num_samples,
        warmup_steps=config.warmup_steps,
        num_chains=config.num_chains,
        seed=config.seed,
        progress=config.progress,
        model_name=config.model,
        config=config.to_dict(),
        **kwargs,
    )
