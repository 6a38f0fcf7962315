"""Spike-and-slab regression through Pyro's generic engines, gamma summed out by enumeration.

* SVI: ``TraceEnum_ELBO`` with the structured guide :func:`pyrozoo.guides.spike_slab.make_spike_slab_guide`,
  started at the EMVS fixed point with the conditional posteriors there (:func:`guide_init`), or at another model's
  conditional start where its ELBO is higher (:func:`choose_start`); a warning when one Gaussian q(w) cannot hold
  the posterior's modes (:func:`check_inclusion`).
* NUTS: Pyro's NUTS on (w, sigma^2, theta) with gamma enumerated in the potential energy.

Both report Rao-Blackwellized inclusion probabilities E[P(gamma_d = 1 | w_d, sigma^2, theta)] over the draws, and
draws of gamma from that conditional, Bernoulli(P(gamma_d = 1 | w_d, sigma^2, theta)) per draw (seeded).
Both fit :func:`~pyrozoo.models.spike_slab.spike_slab_model` with ``centred=data.centred``: on centred y the
intercept's factor gives sigma^2 n - 1 degrees of freedom, the posterior Gibbs and the exact enumeration target.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.distributions import constraints

from pyrozoo.guides.spike_slab import make_spike_slab_guide
from pyrozoo.inference.mcmc import dispersed_starts, run_mcmc
from pyrozoo.inference.result import Result
from pyrozoo.inference.svi import run_svi
from pyrozoo.models.spike_slab import _finish, pointwise_loglik, spike_slab_kwargs, spike_slab_model
from pyrozoo.models.spike_slab_em import _model_start, fit_emvs, ridge_inverse, ridge_solve
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
    return _conditional_start(data, prior, fit.w, fit.d_star, fit.inclusion, fit.sigma2)


def _conditional_start(data: StandardizedData, prior: SpikeSlabPrior, w: torch.Tensor, d_star: torch.Tensor,
                       inclusion: torch.Tensor, sigma2: float) -> dict[str, Any]:
    """The guide's start at (w, D*, p*) with the conditional posteriors there (:func:`guide_init`)."""
    resid = data.y - data.X @ w
    if prior.conjugate:
        cov = ridge_inverse(data, d_star)
        S = float(resid @ resid + (d_star * w**2).sum())
    else:
        cov = ridge_inverse(data, d_star, scale=sigma2)
        S = float(resid @ resid + ((data.X @ cov) * data.X).sum())
    cov = 0.5 * (cov + cov.T) + 1e-10 * torch.eye(data.p, dtype=cov.dtype, device=cov.device)
    alpha = torch.tensor(0.5 * (data.dof + prior.nu), dtype=torch.float64)
    beta = 0.5 * (prior.nu * prior.lam + S)
    included = float(inclusion.sum())
    return {"w": w, "scale_tril": torch.linalg.cholesky(cov),
            "sigma2_loc": math.log(beta) - float(torch.digamma(alpha)),
            "sigma2_scale": float(torch.polygamma(1, alpha)) ** 0.5,
            "theta_a": prior.a0 + included, "theta_b": prior.b0 + data.p - included}


def model_start(data: StandardizedData, prior: SpikeSlabPrior, model: torch.Tensor) -> dict[str, Any]:
    """The guide's start inside one inclusion pattern ``model`` (p booleans): gamma fixed there, D = diag(1 / v_gamma),
    w = (X^T X + D)^{-1} X^T y (independent prior: at the pattern's residual variance) and the conditional
    posteriors of :func:`guide_init` given it."""
    gamma = model.to(dtype=data.X.dtype, device=data.X.device)
    penalty = gamma / prior.slab_var + (1.0 - gamma) / prior.spike_var
    sigma2 = 1.0
    if not prior.conjugate:
        sigma2 = _model_start(model.bool(), data, prior)["sigma2"]
    w = ridge_solve(data, penalty, scale=1.0 if prior.conjugate else sigma2)
    return _conditional_start(data, prior, w, penalty, gamma, sigma2)


# Particles of the ELBO estimate that ranks the candidate starts (vectorized; its sd is well under a nat on the
# designs measured, n = 3 .. 200, p <= 50), fewer where the guide's per-particle p x p scale would not fit in
# START_BUDGET numbers (p = 1000: 10 particles).
START_PARTICLES = 256
START_BUDGET = 10_000_000
# Importance sampling check of the fitted inclusion probabilities (:func:`importance_inclusion`): draws per
# candidate start, the effective sample size below which the estimate says nothing, and the largest difference
# from SVI's inclusion probabilities that passes without a warning.
CHECK_DRAWS = 1000
CHECK_MIN_ESS = 100.0
CHECK_TOL = 0.1
# Above this many features the importance check is skipped (its cost is O(candidates x draws x p^2)).
CHECK_MAX_P = 200


def choose_start(data: StandardizedData, prior: SpikeSlabPrior, model_kwargs: dict, *,
                 seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """The SVI guide's start: the candidate with the highest ELBO among the EMVS fixed point (:func:`guide_init`)
    and the conditional starts (:func:`model_start`) of the other median-probability models EMVS visits along its
    ladder and its model-selection ladder (conjugate prior only), and of the empty model.

    A single Gaussian q(w) sits in one mode of the posterior of w, and the ELBO has a local optimum in each mode
    that Adam does not leave: at n = 6, p = 4 the EMVS fixed point keeps every feature (p* = 1, its sigma^2 0.16)
    and q stayed there, 1.9 nats of ELBO below the empty model's optimum, with inclusion probabilities 0.8-0.99
    against exact 0.15-0.42. Returns the start and ``info``: ``elbo`` per candidate (``"emvs"`` and the models
    as 0/1 strings, feature 0 first), ``chosen`` and ``starts`` (every candidate's start, for
    :func:`importance_inclusion`)."""
    emvs = fit_emvs(data, prior)
    candidates = {"emvs": _conditional_start(data, prior, emvs.w, emvs.d_star, emvs.inclusion, emvs.sigma2)}
    seen = {_label(emvs.inclusion > 0.5)}
    models = [torch.zeros(data.p, dtype=torch.bool, device=data.X.device)]
    models += [entry["inclusion"] > 0.5 for entry in emvs.path]  # the models of its own ladder
    if prior.conjugate:
        models += [entry["inclusion"] > 0.5 for entry in fit_emvs(data, prior, select=True).path]
    for model in models:
        label = _label(model)
        if label not in seen:
            seen.add(label)
            candidates[label] = model_start(data, prior, model)
    elbo = {name: _elbo(init, prior, model_kwargs, seed) for name, init in candidates.items()}
    chosen = max(elbo, key=lambda k: (elbo[k], k == "emvs"))
    return candidates[chosen], {"elbo": elbo, "chosen": chosen, "starts": candidates}


def _label(model: torch.Tensor) -> str:
    return "".join("1" if bool(g) else "0" for g in model.flatten().cpu())


def _elbo(init: dict[str, Any], prior: SpikeSlabPrior, model_kwargs: dict, seed: int) -> float:
    """ELBO of the guide at ``init`` (:data:`START_PARTICLES` vectorized particles, seeded; Pyro's param store and
    the RNG are left as they were)."""
    import pyro
    from pyro.infer import TraceEnum_ELBO

    guide = make_spike_slab_guide(init, conjugate=prior.conjugate)
    p = int(init["w"].shape[-1])
    particles = max(4, min(START_PARTICLES, START_BUDGET // (p * p)))
    elbo = TraceEnum_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
    devices = [model_kwargs["X"].device] if model_kwargs["X"].is_cuda else []
    with pyro.get_param_store().scope(), torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        value = -float(elbo.loss(spike_slab_model, guide, **model_kwargs))
    return value if math.isfinite(value) else -math.inf


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
    """Enumerated SVI (``TraceEnum_ELBO``, ``num_particles`` vectorized particles) with the structured guide, started
    at the best of several candidate starts by ELBO (:func:`choose_start`); warns when the ELBO has not settled
    (:func:`check_svi_settled`) and when its inclusion probabilities are off the importance-sampling estimate over
    the candidates' modes (:func:`check_inclusion`; p <= :data:`CHECK_MAX_P`). ``fit_stats["start_elbo"]``: the
    candidates' ELBOs, the EMVS fixed point's first."""
    kwargs = spike_slab_kwargs(data, prior, model_kwargs)  # centred y: the intercept's factor, n - 1 dof
    init, info = choose_start(data, prior, kwargs, seed=seed)
    guide = make_spike_slab_guide(init, conjugate=prior.conjugate)
    result = run_svi(spike_slab_model, guide, kwargs, num_steps=steps, elbo="enum", num_particles=num_particles,
                     lr=lr, lr_decay=0.1, num_samples=num_samples, seed=seed, progress=progress,
                     log_likelihood_fn=pointwise_loglik, model_name=model_name, config=config)
    result.fit_stats["start_elbo"] = np.asarray(list(info["elbo"].values()), dtype=float)
    check_svi_settled(result.fit_stats["loss"])
    result = _finish(result, prior, seed=seed)  # gamma | w, sigma^2, theta drawn
    if data.p <= CHECK_MAX_P:
        reference, ess = importance_inclusion(data, prior, info["starts"], seed=seed)
        check_inclusion(result.posterior["inclusion_prob"].reshape(-1, data.p).mean(0), reference, ess)
    return result


def importance_inclusion(data: StandardizedData, prior: SpikeSlabPrior, starts: dict[str, dict[str, Any]], *,
                         num_draws: int = CHECK_DRAWS, seed: int = 0) -> tuple[torch.Tensor, float]:
    """Self-normalized importance-sampling estimate of P(gamma_d = 1 | y) with the equal-weight mixture of the
    candidate starts' q (:func:`choose_start`; each at its start: sigma^2 ~ LogNormal, theta ~ Beta,
    w | sigma^2 ~ N(w0, sigma^2 L0 L0^T), or N(w0, L0 L0^T) for the independent prior) as the proposal r:

        weights  p(y, w, sigma^2, theta) / r(w, sigma^2, theta)   (gamma summed out, :func:`log_joint`)
        estimate sum_i weight_i P(gamma_d = 1 | w_i, sigma^2_i, theta_i) / sum_i weight_i

    The mixture covers every mode a candidate sits in, where SVI's single Gaussian q(w) holds one. Returns the
    estimate and the weights' effective sample size (sum w)^2 / sum w^2, out of ``num_draws`` per candidate."""
    from pyrozoo.models.spike_slab import rao_blackwell_inclusion

    opts = {"dtype": data.X.dtype, "device": data.X.device}
    dists = [_start_q(init, prior, opts) for init in starts.values()]
    gen_devices = [data.X.device] if data.X.is_cuda else []
    with torch.random.fork_rng(devices=gen_devices), torch.no_grad():
        torch.manual_seed(seed)
        draws = [_draw_q(q, num_draws) for q in dists]
        s2 = torch.cat([d[0] for d in draws])
        th = torch.cat([d[1] for d in draws]).clamp(1e-12, 1 - 1e-12)
        w = torch.cat([d[2] for d in draws])
        log_r = torch.logsumexp(torch.stack([_log_q(q, s2, th, w) for q in dists]), 0) - math.log(len(dists))
        log_wt = log_joint(data, prior, w, s2, th) - log_r
        log_wt = torch.where(torch.isnan(log_wt), torch.full_like(log_wt, -math.inf), log_wt)
        wt = torch.softmax(log_wt, 0)
        ess = float(1.0 / (wt**2).sum())
        incl = wt @ rao_blackwell_inclusion(w, s2, th, prior)
    return incl, ess


def log_joint(data: StandardizedData, prior: SpikeSlabPrior, w: torch.Tensor, sigma2: torch.Tensor,
              theta: torch.Tensor) -> torch.Tensor:
    """log p(y, w, sigma^2, theta) of :func:`~pyrozoo.models.spike_slab.spike_slab_model` at draws w (S, p),
    sigma^2 (S,), theta (S,), gamma summed out: sum_d log(theta N(w_d; 0, s v1) + (1 - theta) N(w_d; 0, s v0))
    (s = sigma^2, or 1 for the independent prior), the intercept's factor when y is centred."""
    import pyro.distributions as dist

    opts = {"dtype": w.dtype, "device": w.device}
    half_nu = torch.tensor(0.5 * prior.nu, **opts)
    lp = dist.InverseGamma(half_nu, half_nu * prior.lam).log_prob(sigma2)
    lp = lp + dist.Beta(torch.tensor(prior.a0, **opts), torch.tensor(prior.b0, **opts)).log_prob(theta)
    s = sigma2.unsqueeze(-1) if prior.conjugate else torch.ones_like(sigma2).unsqueeze(-1)
    slab = dist.Normal(0.0, (s * prior.slab_var).sqrt()).log_prob(w) + theta.log().unsqueeze(-1)
    spike = dist.Normal(0.0, (s * prior.spike_var).sqrt()).log_prob(w) + torch.log1p(-theta).unsqueeze(-1)
    lp = lp + torch.logaddexp(slab, spike).sum(-1)
    lp = lp + dist.Normal(w @ data.X.T, sigma2.sqrt().unsqueeze(-1)).log_prob(data.y).sum(-1)
    if data.centred:
        lp = lp + 0.5 * (2 * math.pi * sigma2 / data.n).log()
    return lp


def _start_q(init: dict[str, Any], prior: SpikeSlabPrior, opts: dict) -> dict[str, Any]:
    import pyro.distributions as dist

    return {"sigma2": dist.LogNormal(torch.tensor(float(init["sigma2_loc"]), **opts),
                                     torch.tensor(float(init["sigma2_scale"]), **opts)),
            "theta": dist.Beta(torch.tensor(float(init["theta_a"]), **opts),
                               torch.tensor(float(init["theta_b"]), **opts)),
            "w": init["w"].to(**opts), "L": init["scale_tril"].to(**opts), "conjugate": prior.conjugate}


def _w_scale(q: dict[str, Any], sigma2: torch.Tensor) -> torch.Tensor:
    """sigma per draw (conjugate prior: w | sigma^2 ~ N(w0, sigma^2 L0 L0^T)), or 1 (independent prior), shape
    (S, 1): one p x p factor for all draws instead of one per draw."""
    return sigma2.sqrt().unsqueeze(-1) if q["conjugate"] else torch.ones_like(sigma2).unsqueeze(-1)


def _draw_q(q: dict[str, Any], num: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    s2 = q["sigma2"].sample((num,))
    eps = torch.randn(num, q["w"].shape[-1], dtype=q["w"].dtype, device=q["w"].device)
    return s2, q["theta"].sample((num,)), q["w"] + _w_scale(q, s2) * (eps @ q["L"].T)


def _log_q(q: dict[str, Any], s2: torch.Tensor, th: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    import pyro.distributions as dist

    scale = _w_scale(q, s2)
    white = dist.MultivariateNormal(torch.zeros_like(q["w"]), scale_tril=q["L"]).log_prob((w - q["w"]) / scale)
    return q["sigma2"].log_prob(s2) + q["theta"].log_prob(th) + white - w.shape[-1] * scale.squeeze(-1).log()


def check_inclusion(fitted: Any, reference: torch.Tensor, ess: float) -> None:
    """Warn when SVI's inclusion probabilities ``fitted`` differ from the importance-sampling estimate
    ``reference`` (:func:`importance_inclusion`) by more than :data:`CHECK_TOL` on some feature, where that
    estimate has an effective sample size of at least :data:`CHECK_MIN_ESS` (below it the check says nothing).
    q(w) is one Gaussian and holds one mode of w's posterior; where the posterior has several of comparable mass
    (small n: at n = 6, p = 4 the exact inclusion probabilities are 0.15-0.42 and SVI's 0.02) the fit cannot
    represent them."""
    fitted = torch.as_tensor(np.asarray(fitted, dtype=float))
    reference = reference.detach().cpu().to(fitted.dtype)
    gap = (fitted - reference).abs()
    if ess >= CHECK_MIN_ESS and float(gap.max()) > CHECK_TOL:
        d = int(gap.argmax())
        warnings.warn(f"svi: the inclusion probabilities are off: the Gaussian q(w) holds one mode of w's posterior "
                      f"and the posterior has several; importance sampling over the candidate starts' modes gives "
                      f"{np.round(reference.numpy(), 3).tolist()} against SVI's {np.round(fitted.numpy(), 3).tolist()}"
                      f" (feature {d}: {float(gap[d]):.3f} apart, more than {CHECK_TOL:g}; effective sample size "
                      f"{ess:.0f}); use --inference gibbs (or nuts) for inclusion probabilities here",
                      UserWarning, stacklevel=3)


START_SUPPORTS = {"w": constraints.real, "sigma2": constraints.positive, "theta": constraints.unit_interval}


def start_scales(data: StandardizedData, prior: SpikeSlabPrior, fit: Any) -> dict[str, Any]:
    """Posterior-sd estimates at the EMVS fixed point ``fit`` on NUTS's unconstrained scale, for the chains'
    overdispersed starts: for w_d the sd of w_d given the rest under the slab, the data's resolution of a
    coefficient, sigma / sqrt(x_d^T x_d + 1 / v1) (conjugate; 1 / sqrt(x_d^T x_d / sigma^2 + 1 / v1) otherwise),
    also for a feature the fixed point leaves out (its spike sd would keep it there); for log sigma^2 sqrt(2 / dof) (the
    inverse-gamma posterior's); for logit theta sqrt(1 / (a0 + k) + 1 / (b0 + p - k)) with k = sum p*, the
    Beta(a0 + k, b0 + p - k) posterior's."""
    xx = (data.X * data.X).sum(0)
    if prior.conjugate:
        sd_w = (fit.sigma2 / (xx + 1.0 / prior.slab_var)).sqrt()
    else:
        sd_w = (xx / fit.sigma2 + 1.0 / prior.slab_var).rsqrt()
    k, p = float(fit.inclusion.sum()), data.X.shape[1]
    return {"w": sd_w, "sigma2": math.sqrt(2.0 / max(data.dof, 1)),
            "theta": math.sqrt(1.0 / (prior.a0 + k) + 1.0 / (prior.b0 + p - k))}


def nuts_result(data: StandardizedData, prior: SpikeSlabPrior, *, num_samples: int = 1000, warmup_steps: int = 500,
                num_chains: int = 4, seed: int = 0, progress: bool = False, jit_compile: bool = False,
                max_tree_depth: int = 10,
                model_kwargs: dict | None = None, model_name: str = "spike-slab",
                config: dict | None = None) -> Result:
    """NUTS with gamma enumerated; chains one after another (the shared MCMC engine).

    The chains start around the EMVS fixed point: from Pyro's default start (uniform in (-2, 2) on the
    unconstrained scale) the sharp spike makes the first trajectories hit the maximum tree depth for minutes. Chain 0
    starts at the fixed point itself, the others overdispersed around it (:func:`start_scales`,
    :func:`~pyrozoo.inference.mcmc.dispersed_starts`, seeded by ``seed``): one shared start let every chain miss
    the same mode of this multimodal posterior, and R-hat could not see it.
    """
    kwargs = spike_slab_kwargs(data, prior, model_kwargs)  # centred y: the intercept's factor, n - 1 dof
    fit = fit_emvs(data, prior)
    opts = {"dtype": data.X.dtype, "device": data.X.device}
    start = {"w": fit.w, "sigma2": torch.tensor(fit.sigma2, **opts),
             "theta": torch.tensor(min(max(fit.theta, 0.01), 0.99), **opts)}
    inits = dispersed_starts(start, start_scales(data, prior, fit), START_SUPPORTS, num_chains, seed)
    result = run_mcmc(spike_slab_model, kwargs, kernel="nuts", num_samples=num_samples, warmup_steps=warmup_steps,
                      num_chains=num_chains, seed=seed, progress=progress, jit_compile=jit_compile,
                      init_strategy=inits, max_tree_depth=max_tree_depth,
                      log_likelihood_fn=pointwise_loglik, model_name=model_name, config=config)
    return _finish(result, prior, seed=seed)  # gamma | w, sigma^2, theta drawn
