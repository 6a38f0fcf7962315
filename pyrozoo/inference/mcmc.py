"""MCMC with Pyro's NUTS/HMC: several chains run one after another, per-draw sample stats recorded."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from pyro.infer import HMC, MCMC, NUTS
from pyro.infer.autoguide import init_to_value
from torch.distributions import biject_to

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.assemble import LogLikelihoodFn, assemble_result
from pyrozoo.inference.device import checked_device, keeps_caller_state, set_seed
from pyrozoo.inference.predictive import (
    check_continuous_latents,
    check_has_latents,
    check_likelihood_sites,
    check_model_kwargs,
    max_plate_nesting,
    trace_model,
)
from pyrozoo.inference.result import Result
from pyrozoo.validation import check_choice, check_finite_kwargs, check_int, check_probability


class _RecordsEnergy:
    """Keeps the Hamiltonian at the start of each transition, H_n = U(q_{n-1}) + K(r_n) with r_n the freshly drawn
    momentum, for ArviZ's ``energy`` (``az.bfmi``, ``az.plot_energy``).

    Pyro computes H_n inside ``sample`` but does not keep it, so this mixin wraps the kernel's kinetic energy: the
    first evaluation in each ``sample`` call is that of r_n (Pyro 1.9's NUTS and HMC compute H_n before any
    leapfrog step), and the start point's potential energy is cached on the kernel by then."""

    def sample(self, params):
        self._energy_start = None
        self._energy_pending = True
        return super().sample(params)

    def _kinetic_energy(self, r_unscaled):
        kinetic = super()._kinetic_energy(r_unscaled)
        if getattr(self, "_energy_pending", False):
            self._energy_pending = False
            if self._potential_energy_last is not None:
                self._energy_start = kinetic + self._potential_energy_last
        return kinetic


class _RecordsTreeDepth:
    """Keeps each NUTS transition's tree depth (``_tree_depth``: the number of trajectory doublings kept, Stan's and
    ArviZ's ``tree_depth``) and its number of leapfrog steps (``_n_steps``, ArviZ's ``n_steps``).

    Pyro 1.9's ``NUTS.sample`` keeps the depth in a local variable and returns only the draw. Of the ways to recover
    it this one leans least on Pyro's internals: it wraps the two tree builders, whose roles are those of the NUTS
    algorithm itself. ``sample`` calls ``_build_tree`` once per doubling it tries (the recursion inside it is told
    apart by nesting), and keeps the doubling unless the new subtree turns or diverges, as in Stan; every leapfrog
    step is one ``_build_basetree`` call. Counting potential-energy calls instead would break under ``jit_compile``
    and count the start point's re-evaluation; replaying the loop from the returned draw is not possible."""

    def sample(self, params):
        self._tree_depth, self._n_steps, self._tree_nesting = 0, 0, 0
        return super().sample(params)

    def _build_tree(self, *args, **kwargs):
        self._tree_nesting += 1
        try:
            tree = super()._build_tree(*args, **kwargs)
        finally:
            self._tree_nesting -= 1
        if self._tree_nesting == 0:  # one doubling of the trajectory, not the recursion inside it
            self._tree_depth += 0 if (tree.turning or tree.diverging) else 1
        return tree

    def _build_basetree(self, *args, **kwargs):
        self._n_steps += 1
        return super()._build_basetree(*args, **kwargs)


class EnergyNUTS(_RecordsTreeDepth, _RecordsEnergy, NUTS):
    """Pyro's NUTS, keeping each transition's starting Hamiltonian as ``_energy_start``, its tree depth as
    ``_tree_depth`` and its number of leapfrog steps as ``_n_steps``."""


class EnergyHMC(_RecordsEnergy, HMC):
    """Pyro's HMC, keeping each transition's starting Hamiltonian as ``_energy_start``."""


KERNELS = {"nuts": EnergyNUTS, "hmc": EnergyHMC}


def _log_abs_det_jacobian(transforms: Mapping[str, Any], unconstrained: Mapping[str, torch.Tensor]) -> float:
    """Sum over sites of log|det J| of the transform from the constrained value to ``unconstrained`` (Pyro's
    ``transforms`` map constrained to unconstrained values): the potential energy subtracts it from the log
    joint."""
    total = 0.0
    with torch.no_grad():
        for name, t in transforms.items():
            z = unconstrained[name]
            total += float(t.log_abs_det_jacobian(t.inv(z), z).sum())
    return total


class _StatsRecorder:
    """MCMC ``hook_fn`` recording per-draw divergence, step size, acceptance probability, log density and energy.

    Pyro keeps only running summaries on the kernel; the per-draw acceptance probability is recovered from the
    running mean: a_n = n * m_n - (n - 1) * m_{n-1}, clipped to [0, 1]. ``lp`` is the log joint density of the
    draw on the constrained space (ArviZ's convention, as the Gibbs engine records it): minus Pyro's potential
    energy, which is on the unconstrained space, plus the log|det J| of the transforms to it at the draw. For
    discrete sites summed out by enumeration it is the log joint with those sites marginalized. ``energy`` is the
    starting Hamiltonian of the transition that produced the draw (:class:`_RecordsEnergy`); NUTS adds its
    ``tree_depth`` and ``n_steps`` (:class:`_RecordsTreeDepth`).
    """

    def __init__(self) -> None:
        self.stats: dict[str, list[float]] = {"diverging": [], "step_size": [], "acceptance_rate": [], "lp": [],
                                              "energy": []}
        self._prev_mean = 0.0
        self._prev_div = 0

    def __call__(self, kernel, params, stage, i) -> None:
        if stage != "Sample":
            return
        n = i + 1
        mean = float(kernel._mean_accept_prob)
        # Pyro does not expose the per-draw value; recovering it from the running mean costs a few ulps of rounding
        # (it gave 1 + 1.4e-14 for a certain acceptance), so clip to the range of a probability.
        self.stats["acceptance_rate"].append(min(max(n * mean - (n - 1) * self._prev_mean, 0.0), 1.0))
        self._prev_mean = mean
        ndiv = len(kernel._divergences)
        self.stats["diverging"].append(float(ndiv > self._prev_div))
        self._prev_div = ndiv
        self.stats["step_size"].append(float(kernel.step_size))
        pe = kernel._potential_energy_last
        self.stats["lp"].append(float(-pe) + _log_abs_det_jacobian(kernel.transforms, params)
                                if pe is not None else float("nan"))
        energy = getattr(kernel, "_energy_start", None)
        self.stats["energy"].append(float(energy) if energy is not None else float("nan"))
        if hasattr(kernel, "_tree_depth"):  # NUTS only: HMC's trajectory has a fixed number of steps, no tree
            self.stats.setdefault("tree_depth", []).append(kernel._tree_depth)
            self.stats.setdefault("n_steps", []).append(kernel._n_steps)


START_SPREAD = 3.0  # chains 1.. start this many posterior-sd estimates (unconstrained scale) from the good start


def dispersed_starts(start: Mapping[str, torch.Tensor], scale: Mapping[str, Any], supports: Mapping[str, Any],
                     num_chains: int, seed: int, *, spread: float = START_SPREAD) -> list[Callable]:
    """One ``init_to_value`` strategy per chain for :func:`run_mcmc`: chain 0 starts at ``start``; chain c > 0 at

        theta_c = T(T^{-1}(start) + spread * scale * z_c),   z_c ~ N(0, I),

    with T = ``biject_to(supports[name])`` (Pyro's map from the unconstrained scale) and ``scale`` a posterior-sd
    estimate on the unconstrained scale (a number or a tensor broadcasting to the site), so the starts are
    overdispersed relative to the posterior and R-hat can see a mode that one shared start would hide. The z_c come
    from a CPU generator seeded by ``seed`` (the same starts on every device)."""
    num_chains = check_int("num_chains", num_chains, minimum=1)
    gen = torch.Generator().manual_seed(int(seed))
    out = [init_to_value(values=dict(start))]
    for _ in range(1, num_chains):
        values = {}
        for name, value in start.items():
            t = biject_to(supports[name])
            u = t.inv(value)
            z = torch.randn(u.shape, generator=gen, dtype=torch.float64).to(dtype=u.dtype, device=u.device)
            values[name] = t(u + spread * torch.as_tensor(scale[name], dtype=u.dtype, device=u.device) * z)
        out.append(init_to_value(values=values))
    return out


@keeps_caller_state
def run_mcmc(
    model: Callable,
    model_kwargs: Mapping[str, Any] | None = None,
    *,
    kernel: str = "nuts",
    num_samples: int = 1000,
    warmup_steps: int = 500,
    num_chains: int = 4,
    jit_compile: bool = False,
    target_accept_prob: float = 0.8,
    max_tree_depth: int | None = None,
    init_strategy: Callable | Sequence[Callable] | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    log_likelihood_fn: LogLikelihoodFn | None = None,
    model_name: str = "",
    config: Mapping[str, Any] | None = None,
    allow_nonfinite: Iterable[str] = (),
) -> Result:
    """Run ``num_chains`` chains of NUTS (or HMC) on ``model(**model_kwargs)``, one after another.

    Chains run sequentially in this process (Pyro's multiprocess chains hang in notebooks and on some platforms);
    each continues the seeded RNG stream, so a seed fixes all chains. Discrete sites marked for enumeration are
    summed out (``max_plate_nesting`` is read off the model). ``jit_compile`` traces the potential energy once.
    ``init_strategy`` (e.g. ``pyro.infer.autoguide.init_to_value(values=...)``) replaces Pyro's default start; a
    sequence of ``num_chains`` of them gives each chain its own (:func:`dispersed_starts`).
    ``max_tree_depth`` (NUTS only, an integer >= 1; ``None``: 10) caps the trajectory at 2**max_tree_depth leapfrog
    steps; HMC has no tree, so a value with ``kernel="hmc"`` is a :class:`PyrozooError`. The model must have a
    latent site NUTS/HMC can draw (enumerated discrete sites are summed out, not drawn).
    Every floating-point tensor in ``model_kwargs`` must be finite (a NaN or inf is a :class:`PyrozooError` naming
    the argument, before any work), except those named in ``allow_nonfinite`` (a mask, an inf bound).
    ``device`` (``"auto" | "cpu" | "cuda" | "cuda:N"``; ``None``: wherever the data are): run_mcmc does not move
    data, the chains run where ``model_kwargs``' tensors are; a device other than theirs (or CUDA on a machine
    without it, an unknown name) is a :class:`PyrozooError` before any work, as in ``run_svi``.
    """
    model_kwargs = check_model_kwargs(model_kwargs)
    check_choice("kernel", kernel, KERNELS)
    num_samples = check_int("num_samples", num_samples, minimum=1)
    warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
    num_chains = check_int("num_chains", num_chains, minimum=1)
    check_probability("target_accept_prob", target_accept_prob, open_interval=True)
    if max_tree_depth is not None and kernel != "nuts":
        raise PyrozooError(f"max_tree_depth: applies only to kernel='nuts' (HMC takes a fixed number of leapfrog "
                           f"steps, no tree); expected None with kernel={kernel!r}, got {max_tree_depth!r}")
    max_tree_depth = check_int("max_tree_depth", 10 if max_tree_depth is None else max_tree_depth, minimum=1)
    inits = _chain_inits(init_strategy, num_chains)
    if device is not None:
        checked_device(device, model_kwargs, engine="run_mcmc")
    check_finite_kwargs(model_kwargs, allow=allow_nonfinite)
    set_seed(seed)
    proto = trace_model(model, model_kwargs, wrap_errors=True, gradient_probe=True)
    check_likelihood_sites(proto, custom_log_likelihood=log_likelihood_fn is not None, warn=False,
                           model_kwargs=model_kwargs)
    check_has_latents(proto, engine=f"kernel={kernel!r}", drawn_only=True)
    check_continuous_latents(proto, engine=f"kernel={kernel!r}")
    nesting = max_plate_nesting(proto)

    t0 = time.perf_counter()
    per_chain, stats = [], []
    for chain in range(num_chains):
        opts: dict[str, Any] = {"jit_compile": jit_compile, "ignore_jit_warnings": True,
                                "target_accept_prob": target_accept_prob, "max_plate_nesting": nesting}
        if kernel == "nuts":
            opts["max_tree_depth"] = max_tree_depth
        if inits[chain] is not None:
            opts["init_strategy"] = inits[chain]
        k = KERNELS[kernel](model, **opts)
        recorder = _StatsRecorder()
        mcmc = MCMC(k, num_samples=num_samples, warmup_steps=warmup_steps, num_chains=1,
                    disable_progbar=not progress, hook_fn=recorder)
        mcmc.run(**model_kwargs)
        per_chain.append({n: v.detach() for n, v in mcmc.get_samples().items()})
        stats.append(recorder.stats)
    wall = time.perf_counter() - t0

    posterior = {n: torch.stack([c[n] for c in per_chain]) for n in per_chain[0]}
    sample_stats = {k: np.array([s[k] for s in stats]) for k in stats[0]}
    sample_stats["diverging"] = sample_stats["diverging"].astype(bool)
    if "tree_depth" in sample_stats:
        sample_stats["tree_depth"] = sample_stats["tree_depth"].astype(np.int64)
        sample_stats["n_steps"] = sample_stats["n_steps"].astype(np.int64)
        # PyMC's name; Stan counts a transition at the maximum as having hit it, whether or not it turned there
        sample_stats["reached_max_treedepth"] = sample_stats["tree_depth"] >= max_tree_depth
    if np.isnan(sample_stats["energy"]).any():  # a model with no latent sites (nothing to integrate)
        del sample_stats["energy"]
    return assemble_result(
        kernel,
        model,
        model_kwargs,
        posterior,
        sample_stats=sample_stats,
        log_likelihood_fn=log_likelihood_fn,
        seed=seed,
        wall_time=wall,
        config=config,
        model_name=model_name,
    )


def _chain_inits(init_strategy: Any, num_chains: int) -> list[Callable | None]:
    """``init_strategy`` per chain: ``None`` or one callable for every chain, or a sequence of ``num_chains``."""
    if init_strategy is None or callable(init_strategy):
        return [init_strategy] * num_chains
    if isinstance(init_strategy, Sequence) and not isinstance(init_strategy, str):
        inits = list(init_strategy)
        if len(inits) == num_chains and all(callable(f) for f in inits):
            return inits
        got = f"a sequence of {len(inits)}" + ("" if all(callable(f) for f in inits) else " (not all callable)")
    else:
        got = type(init_strategy).__name__
    raise PyrozooError(f"init_strategy: expected None, an init strategy (a callable), or one per chain "
                       f"({num_chains} callables), got {got}")
