"""Spike-and-slab regression through Pyro's generic engines, gamma summed out by enumeration.

* SVI: ``TraceEnum_ELBO`` with the structured guide :func:`pyrozoo.guides.spike_slab.make_spike_slab_guide`,
  started at the EMVS fixed point with the conditional posteriors there (:func:`guide_init`).
* NUTS: Pyro's NUTS on (w, sigma^2, theta) with gamma enumerated in the potential energy.

Both report Rao-Blackwellized inclusion probabilities E[P(gamma_d = 1 | w_d, sigma^2, theta)] over the draws.
Both fit :func:`~pyrozoo.models.spike_slab.spike_slab_model` with ``centred=data.centred``: on centred y the
intercept's factor gives sigma^2 n - 1 degrees of freedom, the posterior Gibbs and the exact enumeration target.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from pyro.infer.autoguide import init_to_value

from pyrozoo.guides.spike_slab import make_spike_slab_guide
from pyrozoo.inference.mcmc import run_mcmc
from pyrozoo.inference.result import Result
from pyrozoo.inference.svi import run_svi
from pyrozoo.models.spike_slab import _finish, pointwise_loglik, spike_slab_kwargs, spike_slab_model
from pyrozoo.models.spike_slab_em import fit_emvs, ridge_inverse
from pyrozoo.models.spike_slab_prior import SpikeSlabPrior, StandardizedData


def guide_init(data: StandardizedData, prior: SpikeSlabPrior) -> dict[str, Any]:
    """Starting point of the SVI guide: the EMVS fixed point (w, p*, D* = p* / v1 + (1 - p*) / v0) and the
    conditional posteriors there, so that q starts at EMVS's means with the posterior's own spread:

    * w: the Cholesky factor L0 of (X^T X + D*)^{-1} (w's covariance is sigma^2 L0 L0^T; independent prior:
      (X^T X / sigma^2 + D*)^{-1} at EMVS's sigma^2);
    * sigma^2 | D*, y ~ InvGamma(alpha, beta), alpha = (dof + nu) / 2, beta = (nu lam + S) / 2 with
      S = |y - X w|^2 + w^T D* w (w integrated out; independent prior: S = |y - X w|^2 + tr(X Cov X^T)), matched in
      log space by LogNormal(log beta - digamma(alpha), trigamma(alpha)^(1/2)). EMVS's own sigma^2 is the joint
      mode with w, (S + nu lam) / (n + p + nu + 2): at n = 200, p = 50 about 20% below it;
    * theta | p* ~ Beta(a0 + sum p*, b0 + p - sum p*), whose mean is EMVS's theta."""
    fit = fit_emvs(data, prior)
    w, d_star = fit.w, fit.d_star
    resid = data.y - data.X @ w
    if prior.conjugate:
        cov = ridge_inverse(data, d_star)
        S = float(resid @ resid + (d_star * w**2).sum())
    else:
        cov = ridge_inverse(data, d_star, scale=fit.sigma2)
        S = float(resid @ resid + ((data.X @ cov) * data.X).sum())
    cov = 0.5 * (cov + cov.T) + 1e-10 * torch.eye(data.p, dtype=cov.dtype, device=cov.device)
    alpha = torch.tensor(0.5 * (data.dof + prior.nu), dtype=torch.float64)
    beta = 0.5 * (prior.nu * prior.lam + S)
    included = float(fit.inclusion.sum())
    return {"w": w, "scale_tril": torch.linalg.cholesky(cov),
            "sigma2_loc": math.log(beta) - float(torch.digamma(alpha)),
            "sigma2_scale": float(torch.polygamma(1, alpha)) ** 0.5,
            "theta_a": prior.a0 + included, "theta_b": prior.b0 + data.p - included}


# How far the enumerated ELBO may move and still count as settled, in nats. Measured on the default design
# (equicorrelated, n = 200, p = 50) at the default 2000 steps, lr 0.02, seeds 1-3: the mean loss of the last 10% of
# steps against the start's loss -0.41..+0.28 and against the 10% before +0.14..+0.18 (a step's loss has an sd of
# about 0.5 there). Short runs end above their start while Adam's early steps still jitter q: +2.4..+2.9 at 30 steps,
# +15..+23 at lr 0.1 and 10-30 steps, +66..+121 at lr 0.3; the guide before its whitening, +553 and +660 at 30 steps.
SETTLE_TOL = 2.0


def check_svi_settled(losses: Sequence[float]) -> None:
    """Warn when the ELBO of a spike-slab SVI fit has not settled: the mean loss (-ELBO) of the last 10% of the steps
    is above the first step's (the start's) by more than :data:`SETTLE_TOL` nats, or differs from the mean of the
    10% before by more than that. The start is the EMVS fixed point with its conditional posteriors
    (:func:`guide_init`), so a q that ends worse than it started is not at the optimum. Flat directions of the ELBO
    are not seen: on a borderline feature a short run can leave the inclusion probability far from the converged
    one while the ELBO is within a nat of it."""
    losses = [float(v) for v in losses]
    if len(losses) < 2:
        return
    window = max(len(losses) // 10, 1)
    last = sum(losses[-window:]) / window
    off = []
    if last - losses[0] > SETTLE_TOL:
        off.append(f"the mean loss of the last {window} steps is {last:.6g}, above the start's {losses[0]:.6g}")
    if len(losses) >= 2 * window:
        before = sum(losses[-2 * window:-window]) / window
        if abs(last - before) > SETTLE_TOL:
            off.append(f"the mean loss of the last {window} steps is {last:.6g} against {before:.6g} over the "
                       f"{window} before")
    if off:
        warnings.warn(f"svi: the fitted q(sigma^2) q(theta) q(w | sigma^2) is not at the ELBO optimum after "
                      f"{len(losses)} steps ({'; '.join(off)}: more than {SETTLE_TOL:g} nats); raise --steps "
                      f"(steps=), or lower lr", UserWarning, stacklevel=3)


def svi_result(data: StandardizedData, prior: SpikeSlabPrior, *, steps: int = 2000, lr: float = 0.02,
               num_samples: int = 1000, num_particles: int = 4, seed: int = 0, progress: bool = False,
               model_kwargs: dict | None = None, model_name: str = "spike-slab",
               config: dict | None = None) -> Result:
    """Enumerated SVI (``TraceEnum_ELBO``, ``num_particles`` vectorized particles) with the structured guide; warns
    when the ELBO has not settled (:func:`check_svi_settled`)."""
    kwargs = spike_slab_kwargs(data, prior, model_kwargs)  # centred y: the intercept's factor, n - 1 dof
    guide = make_spike_slab_guide(guide_init(data, prior), conjugate=prior.conjugate)
    result = run_svi(spike_slab_model, guide, kwargs, num_steps=steps, elbo="enum", num_particles=num_particles,
                     lr=lr, lr_decay=0.1, num_samples=num_samples, seed=seed, progress=progress,
                     log_likelihood_fn=pointwise_loglik, model_name=model_name, config=config)
    check_svi_settled(result.fit_stats["loss"])
    return _finish(result, prior)


def nuts_result(data: StandardizedData, prior: SpikeSlabPrior, *, num_samples: int = 1000, warmup_steps: int = 500,
                num_chains: int = 4, seed: int = 0, progress: bool = False, jit_compile: bool = False,
                max_tree_depth: int = 10,
                model_kwargs: dict | None = None, model_name: str = "spike-slab",
                config: dict | None = None) -> Result:
    """NUTS with gamma enumerated; chains one after another (the shared MCMC engine).

    Every chain starts at the EMVS fixed point: from Pyro's default start (uniform in (-2, 2) on the unconstrained
    scale) the sharp spike makes the first trajectories hit the maximum tree depth for minutes.
    """
    kwargs = spike_slab_kwargs(data, prior, model_kwargs)  # centred y: the intercept's factor, n - 1 dof
    fit = fit_emvs(data, prior)
    opts = {"dtype": data.X.dtype, "device": data.X.device}
    start = {"w": fit.w, "sigma2": torch.tensor(fit.sigma2, **opts),
             "theta": torch.tensor(min(max(fit.theta, 0.01), 0.99), **opts)}
    result = run_mcmc(spike_slab_model, kwargs, kernel="nuts", num_samples=num_samples, warmup_steps=warmup_steps,
                      num_chains=num_chains, seed=seed, progress=progress, jit_compile=jit_compile,
                      init_strategy=init_to_value(values=start), max_tree_depth=max_tree_depth,
                      log_likelihood_fn=pointwise_loglik, model_name=model_name, config=config)
    return _finish(result, prior)
