"""EM for spike-and-slab regression, two forms, both through the shared :func:`pyrozoo.inference.run_em`.

**Hard-gamma EM** (the seed homework): w is the missing data, Theta = (gamma, sigma^2, theta) are estimated.
With K = diag(v_{gamma_d}) and A = X^T X + K^{-1}:

    E-step:  w | Theta, y ~ N(mu, sigma^2 A^{-1}),   mu = A^{-1} X^T y
    M-step:  sigma^2 = (|y - X mu|^2 + mu^T K^{-1} mu + p sigma^2_old + nu lam) / (n + p + nu + 2)
             gamma_d = argmax_{g in {0,1}}  g log theta + (1-g) log(1-theta) - E[w_d^2] / (2 sigma^2 v_g) - log(v_g)/2
             theta   = (sum_d gamma_d + a0 - 1) / (p + a0 + b0 - 2)

(``p sigma^2_old`` is tr((X^T X + K^{-1}) E[w w^T]) minus its mean part: tr((X^T X + K^{-1}) sigma^2 A^{-1}) = p
sigma^2.) The M-step is a conditional maximization in the order sigma^2, gamma, theta (an ECM step).

**EMVS** (Rockova & George 2014): gamma is the missing data, (w, sigma^2, theta) are estimated.

    E-step:  p*_d = theta N(w_d; 0, s v1) / (theta N(w_d; 0, s v1) + (1 - theta) N(w_d; 0, s v0)),  s = sigma^2
             d*_d = E[1 / v_{gamma_d}] = p*_d / v1 + (1 - p*_d) / v0
    M-step:  w = (X^T X + D*)^{-1} X^T y,   sigma^2 = (|y - X w|^2 + w^T D* w + nu lam) / (n + p + nu + 2),
             theta = (sum p* + a0) / (p + a0 + b0)

(for the independent prior s = 1 in the E-step, w = (X^T X / sigma^2 + D*)^{-1} X^T y / sigma^2 and
sigma^2 = (|y - X w|^2 + nu lam) / (n + nu + 2)). theta's step is E[theta | gamma] under the Beta(a0, b0) prior
with gamma replaced by p* (equivalently the mode under Beta(a0 + 1, b0 + 1)), not the mode under Beta(a0, b0),
(sum p* + a0 - 1) / (p + a0 + b0 - 2): with the default a0 = b0 = 1 that mode is mean(p*), which reaches 0 or 1
as soon as every p* does, and then log(theta / (1 - theta)) = -+inf in the next E-step holds every feature where
it is (the hard EM's trap, docs/spike-slab.md): from the all-slab start at a small spike variance every p* was 1,
theta went to 1 and every feature stayed in; a few rungs up the ladder theta went to 0 and every feature left, so
the model selection only ever compared the full and the empty model. The posterior mean stays in
[a0 / (p + a0 + b0), (p + a0) / (p + a0 + b0)], so the prior log-odds stay within about log(p + 1).

The spike variance is walked up a ladder v0_1 < ... < v0 with each fit warm-started at the previous one. With
model selection (:func:`fit_emvs`, ``select=True``) every model the ladder visits is scored by EMVS's log g, and
the single-feature neighbours of the best one are scored too (:func:`neighbour_log_g`, O(k^2 p) for all of them).
When p > n the linear solves use the Woodbury identity, (X^T X + D)^{-1} X^T y = D^{-1} X^T (I_n + X D^{-1}
X^T)^{-1} y, costing O(n^2 p) instead of O(p^3).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.device import one_thread_if_small
from pyrozoo.inference.em import run_em
from pyrozoo.models.spike_slab_prior import SpikeSlabPrior, StandardizedData
from pyrozoo.validation import check_int, check_positive, real_array


def _woodbury_factor(data: StandardizedData, penalty: torch.Tensor,
                     scale: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For p > n, with E = diag(1 / penalty): e = 1 / penalty, X E and the Cholesky factor of scale I + X E X^T
    (n x n), the pieces every Woodbury solve below needs."""
    e = 1.0 / penalty
    XE = data.X * e
    M = XE @ data.X.T
    M.diagonal().add_(scale)
    return e, XE, torch.linalg.cholesky(M)


def ridge_solve(data: StandardizedData, penalty: torch.Tensor, scale: float | torch.Tensor = 1.0) -> torch.Tensor:
    """(X^T X / scale + diag(penalty))^{-1} X^T y / scale, by Cholesky (p <= n) or Woodbury (p > n)."""
    if data.p <= data.n:
        A = data.XtX / scale + torch.diag(penalty)
        L = torch.linalg.cholesky(A)
        return torch.cholesky_solve((data.Xty / scale).unsqueeze(-1), L).squeeze(-1)
    # Woodbury: with E = diag(1 / penalty), (X^T X / s + E^{-1})^{-1} X^T y / s = E X^T (s I + X E X^T)^{-1} y.
    e, _, L = _woodbury_factor(data, penalty, scale)
    alpha = torch.cholesky_solve(data.y.unsqueeze(-1), L).squeeze(-1)
    return e * (data.X.T @ alpha)


def ridge_inverse(data: StandardizedData, penalty: torch.Tensor, scale: float | torch.Tensor = 1.0) -> torch.Tensor:
    """(X^T X / scale + diag(penalty))^{-1} as a dense (p, p) matrix (Woodbury when p > n)."""
    if data.p <= data.n:
        A = data.XtX / scale + torch.diag(penalty)
        return torch.cholesky_inverse(torch.linalg.cholesky(A))
    e, XE, L = _woodbury_factor(data, penalty, scale)
    B = torch.cholesky_solve(XE, L)  # (n, p) = M^{-1} X E
    return torch.diag(e) - XE.T @ B


def ridge_inverse_diag(data: StandardizedData, penalty: torch.Tensor) -> torch.Tensor:
    """diag((X^T X + diag(penalty))^{-1}) without forming the p x p inverse when p > n."""
    if data.p <= data.n:
        return ridge_inverse(data, penalty).diagonal()
    e, XE, L = _woodbury_factor(data, penalty, 1.0)
    B = torch.cholesky_solve(XE, L)
    return e - (XE * B).sum(0)


# ---------------------------------------------------------------------------------------------------------- EMVS
@dataclass
class EMVSFit:
    """EMVS fixed point at the last spike variance of the ladder, and the path along the ladder."""

    w: torch.Tensor
    sigma2: float
    theta: float
    inclusion: torch.Tensor  # p*_d at the fixed point
    d_star: torch.Tensor
    spike_var: float
    converged: bool
    iterations: int
    wall_time: float
    path: list[dict] = field(default_factory=list)


def emvs_e_step(w: torch.Tensor, sigma2: float, theta: float, prior: SpikeSlabPrior,
                spike_var: float) -> tuple[torch.Tensor, torch.Tensor]:
    """p*_d = P(gamma_d = 1 | w_d, sigma^2, theta) and d*_d = E[1 / v_{gamma_d}]."""
    s = sigma2 if prior.conjugate else 1.0
    v0, v1 = spike_var, prior.slab_var
    log_odds = (math.log(theta) - math.log1p(-theta) - 0.5 * math.log(v1 / v0)
                - 0.5 * w**2 / s * (1.0 / v1 - 1.0 / v0))
    pstar = torch.sigmoid(log_odds)
    return pstar, pstar / v1 + (1.0 - pstar) / v0


def emvs_m_step(pstar: torch.Tensor, d_star: torch.Tensor, sigma2_old: float, data: StandardizedData,
                prior: SpikeSlabPrior) -> tuple[torch.Tensor, float, float]:
    """Closed-form maximizers of the expected complete-data log posterior: w, then sigma^2, then theta, the last
    with a Beta(a0 + 1, b0 + 1) prior, i.e. theta = E[theta | gamma = p*] = (sum p* + a0) / (p + a0 + b0), which
    stays inside (0, 1) (the module docstring says why not the mode under Beta(a0, b0))."""
    n, p = data.n, data.p
    if prior.conjugate:
        w = ridge_solve(data, d_star)
        rss = float(((data.y - data.X @ w) ** 2).sum())
        sigma2 = (rss + float((d_star * w**2).sum()) + prior.nu * prior.lam) / (n + p + prior.nu + 2)
    else:
        w = ridge_solve(data, d_star, scale=sigma2_old)
        rss = float(((data.y - data.X @ w) ** 2).sum())
        sigma2 = (rss + prior.nu * prior.lam) / (n + prior.nu + 2)
    theta = (float(pstar.sum()) + prior.a0) / (p + prior.a0 + prior.b0)
    return w, sigma2, theta


def check_ladder(ladder: Any, slab_var: float) -> list[float]:
    """``ladder`` as a list of floats; raise unless it is a non-empty list of finite spike variances > 0, each below
    ``slab_var`` (an empty one failed inside the fit with "max() arg is an empty sequence")."""
    want = "a non-empty list of spike variances > 0 (or None for the default ladder)"
    arr = real_array("ladder", ladder, want=want)
    if arr.ndim != 1 or arr.size == 0:
        raise PyrozooError(f"ladder: expected {want}, got {ladder!r}")
    bad = arr[~(np.isfinite(arr) & (arr > 0))]
    if bad.size:
        raise PyrozooError(f"ladder: expected spike variances that are finite and > 0, got {float(bad[0])!r}")
    high = arr[arr >= slab_var]
    if high.size:
        raise PyrozooError(f"ladder: expected spike variances below slab_var={slab_var!r}, got {float(high[0])!r}")
    return arr.tolist()


def default_ladder(spike_var: float, steps: int = 8, span: float = 100.0, above: float = 1.0) -> list[float]:
    """Geometric ladder of ``steps`` spike variances from spike_var / span up to spike_var * above."""
    if steps <= 1:
        return [spike_var]
    lo, hi = math.log(spike_var / span), math.log(spike_var * above)
    return [math.exp(lo + (hi - lo) * k / (steps - 1)) for k in range(steps)]


def log_g(gamma: torch.Tensor, data: StandardizedData, prior: SpikeSlabPrior) -> float:
    """EMVS's model score log g(gamma) = log p(y | gamma) + log p(gamma) under the conjugate prior with a point-mass
    spike (v0 -> 0), the same criterion for every rung of the ladder:

        log p(y | gamma) = -1/2 log|I + v1 X_g X_g^T| - (n + nu)/2 log(nu lam + y^T (I + v1 X_g X_g^T)^{-1} y) + c
        log p(gamma)     = log B(a0 + k, b0 + p - k) - log B(a0, b0)

    computed on the n x n matrix (O(n^2 k)) when k > n, so it stays cheap when p is large; when k <= n on the
    k x k matrix A = X_g^T X_g + I / v1 (O(k^3), from the cached X^T X), by the determinant lemma
    |I_n + v1 X_g X_g^T| = v1^k |A| and the Woodbury identity y^T (.)^{-1} y = y^T y - b^T A^{-1} b, b = X_g^T y."""
    sel = gamma > 0.5
    n, k, p = data.n, int(sel.sum()), data.p
    if k <= n:
        idx = sel.nonzero().flatten()
        A = data.XtX[idx.unsqueeze(-1), idx]
        A.diagonal().add_(1.0 / prior.slab_var)
        L = torch.linalg.cholesky(A)
        b = data.Xty[idx]
        quad = float(data.yty - b @ torch.cholesky_solve(b.unsqueeze(-1), L).squeeze(-1))
        half_logdet = float(L.diagonal().log().sum()) + 0.5 * k * math.log(prior.slab_var)
    else:
        Xg = data.X[:, sel]
        M = prior.slab_var * (Xg @ Xg.T)
        M.diagonal().add_(1.0)
        L = torch.linalg.cholesky(M)
        quad = float(data.y @ torch.cholesky_solve(data.y.unsqueeze(-1), L).squeeze(-1))
        half_logdet = float(L.diagonal().log().sum())
    logml = -half_logdet - 0.5 * (n + prior.nu) * math.log(prior.nu * prior.lam + quad)
    return logml + _log_prior_size(k, p, prior)


def _log_prior_size(k: int | torch.Tensor, p: int, prior: SpikeSlabPrior) -> Any:
    """log B(a0 + k, b0 + p - k) up to a constant (theta integrated out), for an int or a tensor of model sizes."""
    a0, b0 = prior.a0, prior.b0
    if isinstance(k, torch.Tensor):
        return torch.lgamma(a0 + k) + torch.lgamma(b0 + p - k) - math.lgamma(a0 + b0 + p)
    return math.lgamma(a0 + k) + math.lgamma(b0 + p - k) - math.lgamma(a0 + b0 + p)


def neighbour_log_g(gamma: torch.Tensor, data: StandardizedData, prior: SpikeSlabPrior) -> torch.Tensor:
    """(p,) log g of every single-feature neighbour of the model ``gamma`` (entry d: gamma with gamma_d flipped),
    all in O(k^2 p) from one Cholesky factor of A = X_g^T X_g + I / v1 (k x k), b = X_g^T y, m = A^{-1} b,
    S = y^T y - b^T m. Adding d (c = X_g^T x_d, the Schur complement delta = x_d^T x_d + 1/v1 - c^T A^{-1} c):

        S' = S - (x_d^T y - c^T m)^2 / delta,   log|A'| = log|A| + log delta,   k' = k + 1;

    dropping d (H = A^{-1}): S' = S + m_d^2 / H_dd, log|A'| = log|A| + log H_dd, k' = k - 1 (the partitioned
    inverse). :func:`log_g` of each neighbour gives the same numbers at O(k^3) apiece."""
    sel = gamma > 0.5
    n, p, v1, nu_lam = data.n, data.p, prior.slab_var, prior.nu * prior.lam
    idx = sel.nonzero().flatten()
    k = int(idx.numel())
    opts = {"dtype": data.XtX.dtype, "device": data.XtX.device}
    if k:
        A = data.XtX[idx.unsqueeze(-1), idx]
        A.diagonal().add_(1.0 / v1)
        L = torch.linalg.cholesky(A)
        b = data.Xty[idx]
        m = torch.cholesky_solve(b.unsqueeze(-1), L).squeeze(-1)
        S = float(data.yty - b @ m)
        half_logdet = float(L.diagonal().log().sum()) + 0.5 * k * math.log(v1)
        G = torch.cholesky_solve(data.XtX[idx], L)  # (k, p) = A^{-1} X_g^T X
        delta = data.XtX.diagonal() + 1.0 / v1 - (data.XtX[idx] * G).sum(0)
        e = data.Xty - G.T @ b
        H_diag = torch.cholesky_inverse(L).diagonal()
    else:
        S, half_logdet = float(data.yty), 0.0
        delta, e = data.XtX.diagonal() + 1.0 / v1, data.Xty.clone()
    S_new = S - e**2 / delta.clamp(min=1e-300)
    half_new = half_logdet + 0.5 * torch.log(delta.clamp(min=1e-300)) + 0.5 * math.log(v1)
    k_new = torch.full((p,), float(k + 1), **opts)
    if k:
        S_new[idx] = S + m**2 / H_diag
        half_new[idx] = half_logdet + 0.5 * torch.log(H_diag) - 0.5 * math.log(v1)
        k_new[idx] = float(k - 1)
    logml = -half_new - 0.5 * (n + prior.nu) * torch.log(nu_lam + S_new.clamp(min=0.0))
    return logml + _log_prior_size(k_new, p, prior)


def neighbour_search(gamma: torch.Tensor, data: StandardizedData, prior: SpikeSlabPrior, *,
                     max_moves: int | None = None, rtol: float = 1e-9) -> tuple[torch.Tensor, float]:
    """Greedy ascent of :func:`log_g` from the model ``gamma`` by single-feature flips: move to the best neighbour
    (:func:`neighbour_log_g`) while it beats the current model by more than ``rtol`` (relative; each move is
    confirmed with :func:`log_g`). Returns the local maximum as a bool mask and its log g. Every move raises the
    score, so no model is visited twice; ``max_moves`` (default p) caps the walk."""
    sel = gamma > 0.5
    score = log_g(sel, data, prior)
    for _ in range(data.p if max_moves is None else max_moves):
        d = int(neighbour_log_g(sel, data, prior).argmax())
        cand = sel.clone()
        cand[d] = ~cand[d]
        cand_score = log_g(cand, data, prior)
        if cand_score <= score + rtol * max(1.0, abs(score)):
            break
        sel, score = cand, cand_score
    return sel, score


def select_rung(path: Sequence[dict], rtol: float = 1e-9) -> int:
    """Index of EMVS's chosen fit in ``path``: the highest ``log_g``; among fits within ``rtol`` (relative) of it,
    the one with the smallest ``spike_var``.

    log g scores the median-probability model under a point-mass spike (v0 -> 0), so fits that select the same
    model tie, and a stretch of the ladder usually does. Those fits are equally sparse as models; what differs is
    their p*: a larger v0 moves every p*_d towards 1/2 (the spike N(0, s v0) is less separated from the slab
    N(0, s v1)), for the nulls and the signals alike, and the smallest tied v0 is the one closest to the point mass
    the score assumes. Taking the largest tied v0 (v0 = v1 / 10 at the top of the default ladder) reported p* = 0.46
    on nulls whose exact inclusion is 0.07, and 0.57 on a signal whose exact inclusion is 1."""
    scores = [float(r["log_g"]) for r in path]
    top = max(scores)
    tied = [i for i, sc in enumerate(scores) if sc >= top - rtol * max(1.0, abs(top))]
    return min(tied, key=lambda i: float(path[i]["spike_var"]))


def _emvs_run(v0: float, params: dict, data: StandardizedData, prior: SpikeSlabPrior, max_iter: int,
              tol: float) -> Any:
    """EMVS fixed point at spike variance ``v0`` from ``params`` (w, sigma2, theta), through :func:`run_em`."""
    def e_step(par, _d):
        pstar, d_star = emvs_e_step(par["w"], par["sigma2"], par["theta"], prior, v0)
        return {"pstar": pstar, "d_star": d_star, "sigma2_old": par["sigma2"]}

    def m_step(ex, d):
        w, s2, th = emvs_m_step(ex["pstar"], ex["d_star"], ex["sigma2_old"], d, prior)
        return {"w": w, "sigma2": s2, "theta": th}

    return run_em(e_step, m_step, params, data, max_iter=max_iter, tol=tol)


def _model_start(sel: torch.Tensor, data: StandardizedData, prior: SpikeSlabPrior) -> dict:
    """An EMVS start at the model ``sel``: w the slab ridge fit on its columns (0 elsewhere), sigma^2 its residual
    variance (with the prior's nu lam), theta = (k + a0) / (p + a0 + b0)."""
    w = torch.zeros(data.p, dtype=data.X.dtype, device=data.X.device)
    idx = sel.nonzero().flatten()
    if idx.numel():
        A = data.XtX[idx.unsqueeze(-1), idx]
        A.diagonal().add_(1.0 / prior.slab_var)
        w[idx] = torch.linalg.solve(A, data.Xty[idx])
    rss = float(((data.y - data.X @ w) ** 2).sum())
    sigma2 = max((rss + prior.nu * prior.lam) / (data.n + prior.nu + 2), 1e-12)
    theta = (idx.numel() + prior.a0) / (data.p + prior.a0 + prior.b0)
    return {"w": w, "sigma2": sigma2, "theta": theta}


def fit_emvs(data: StandardizedData, prior: SpikeSlabPrior, *, ladder: Sequence[float] | None = None,
             select: bool = False, neighbours: bool = True, max_iter: int = 500, tol: float = 1e-6,
             init: dict | None = None) -> EMVSFit:
    """EMVS along a ladder of spike variances (default :func:`default_ladder`), each warm-started at the previous
    fixed point. The first fit starts from the ridge estimate under the slab, theta = 0.5, sigma^2 = var(y); from
    there the small spike variances at the bottom of the ladder keep every feature, and as the spike widens the
    features leave one by one, so the ladder visits a path of models from the full one towards the empty one.

    ``select=False``: the fixed point at the last spike variance of the ladder. ``select=True`` (EMVS's model
    selection, conjugate prior only): every fit's median-probability model is scored by :func:`log_g`; the default
    ladder then has those of the 10 rungs from spike_var / 100 to spike_var * 100 that are below slab_var. With
    ``neighbours`` the single-feature neighbours of the best model are scored too (:func:`neighbour_search`, a
    greedy ascent of log g). EMVS is then rerun at each rung from the smallest up, started at the best model
    (:func:`_model_start`), and the first fixed point whose median model it is joins the path (entry
    ``"start": "model"``): so a better neighbour the ladder did not visit gets its fixed point (a model that no
    rung holds as one is not reported), and a visited model that the ladder reached only at a wide spike, where
    its p* are blurred towards 1/2, gets its fixed point at the smallest spike variance that holds it. The chosen
    fit is the best score, ties (within 1e-9 relative: fits that select the same model) going to the smallest
    spike variance, whose p* are the most decisive (:func:`select_rung`). Its p* are EMVS's inclusion
    probabilities, P(gamma_d = 1 | w, sigma^2, theta) at that fixed point."""
    max_iter = check_int("max_iter", max_iter, minimum=1)
    check_positive("tol", tol)
    if ladder is None:
        if select:  # the rungs of spike_var / 100 .. spike_var * 100 below the slab variance
            ladder = [v0 for v0 in default_ladder(prior.spike_var, steps=10, above=100.0) if v0 < prior.slab_var]
        else:
            ladder = default_ladder(prior.spike_var)
    ladder = check_ladder(ladder, prior.slab_var)
    select = bool(select and prior.conjugate)
    with one_thread_if_small(min(data.n, data.p)):  # many small solves (one_thread_if_small says why)
        t0 = time.perf_counter()
        dev, dt = data.X.device, data.X.dtype
        if init is None:
            sigma2 = max(float(data.yty) / data.n, 1e-8)
            pen = torch.full((data.p,), 1.0 / prior.slab_var, device=dev, dtype=dt)
            w = ridge_solve(data, pen, scale=1.0 if prior.conjugate else sigma2)
            params = {"w": w, "sigma2": sigma2, "theta": 0.5}
        else:
            params = {"w": init["w"].to(device=dev, dtype=dt), "sigma2": float(init["sigma2"]),
                      "theta": float(init["theta"])}
        path: list[dict] = []
        iterations = 0

        def record(v0: float, fit: Any, start: str) -> dict:
            pstar = fit.expectations["pstar"]
            entry = {"spike_var": v0, "w": fit.params["w"].clone(), "inclusion": pstar.clone(),
                     "sigma2": fit.params["sigma2"], "theta": fit.params["theta"], "iterations": fit.iterations,
                     "converged": fit.converged, "start": start,
                     "log_g": log_g(pstar, data, prior) if select else float("nan")}
            path.append(entry)
            return entry

        for v0 in ladder:
            fit = _emvs_run(v0, params, data, prior, max_iter, tol)
            params, iterations = fit.params, iterations + fit.iterations
            record(v0, fit, "ladder")
        best = select_rung(path) if select else len(path) - 1
        if select:
            model, above = path[best]["inclusion"] > 0.5, float(path[best]["spike_var"])
            if neighbours:
                found, score = neighbour_search(model, data, prior)
                top = float(path[best]["log_g"])
                if score > top + 1e-9 * max(1.0, abs(top)):
                    model, above = found, math.inf
            # the model's fixed point at the smallest spike variance that holds it, started at the model: a
            # neighbour the ladder did not visit, or a visited model whose only fit was at a wide spike, blurred
            for v0 in sorted(set(ladder)):
                if v0 >= above:
                    break
                fit = _emvs_run(v0, _model_start(model, data, prior), data, prior, max_iter, tol)
                iterations += fit.iterations
                if torch.equal(fit.expectations["pstar"] > 0.5, model):
                    record(v0, fit, "model")
                    break
            best = select_rung(path)
        chosen = path[best]
        pstar, d_star = emvs_e_step(chosen["w"], chosen["sigma2"], chosen["theta"], prior, chosen["spike_var"])
        return EMVSFit(chosen["w"], chosen["sigma2"], chosen["theta"], pstar, d_star, chosen["spike_var"],
                       chosen["converged"], iterations, time.perf_counter() - t0, path)


# ------------------------------------------------------------------------------------------------- hard-gamma EM
@dataclass
class HardEMFit:
    """Fixed point of the homework's EM: 0/1 gamma, sigma^2, theta, and the Gaussian posterior of w given them."""

    gamma: torch.Tensor
    sigma2: float
    theta: float
    w_mean: torch.Tensor
    w_second_moment: torch.Tensor  # E[w_d^2] under the E-step posterior
    converged: bool
    iterations: int
    wall_time: float


def hard_e_step(gamma: torch.Tensor, sigma2: float, data: StandardizedData,
                prior: SpikeSlabPrior) -> dict[str, torch.Tensor | float]:
    """Posterior mean of w and E[w_d^2] given (gamma, sigma^2) under the conjugate prior."""
    kinv = 1.0 / prior.variances(gamma)
    mu = ridge_solve(data, kinv)
    diag = ridge_inverse_diag(data, kinv)
    return {"mu": mu, "ew2": mu**2 + sigma2 * diag, "kinv": kinv, "sigma2_old": sigma2}


def hard_m_step(ex: dict, data: StandardizedData, prior: SpikeSlabPrior,
                theta_old: float) -> dict[str, torch.Tensor | float]:
    """sigma^2, then gamma, then theta (see the module docstring)."""
    n, p = data.n, data.p
    mu, kinv = ex["mu"], ex["kinv"]
    rss = float(((data.y - data.X @ mu) ** 2).sum())
    sigma2 = (rss + float((kinv * mu**2).sum()) + p * ex["sigma2_old"] + prior.nu * prior.lam) / (
        n + p + prior.nu + 2)
    v0, v1 = prior.spike_var, prior.slab_var
    theta_c = min(max(theta_old, 1e-10), 1 - 1e-10)
    score1 = math.log(theta_c) - ex["ew2"] / (2 * sigma2 * v1) - 0.5 * math.log(v1)
    score0 = math.log1p(-theta_c) - ex["ew2"] / (2 * sigma2 * v0) - 0.5 * math.log(v0)
    gamma = (score1 > score0).to(mu.dtype)
    theta = (float(gamma.sum()) + prior.a0 - 1.0) / (p + prior.a0 + prior.b0 - 2.0)
    return {"gamma": gamma, "sigma2": sigma2, "theta": min(max(theta, 1e-10), 1 - 1e-10)}


def hard_em_start(data: StandardizedData, prior: SpikeSlabPrior) -> dict[str, torch.Tensor | float]:
    """The hard EM's starting point: gamma = 1 (all slab), theta = 0.5 and, when p < n, the residual variance of
    the all-slab fit mu_1 = (X^T X + I / v1)^{-1} X^T y,

        sigma^2_0 = |y - X mu_1|^2 / (n - df),   df = tr(X A_1^{-1} X^T) = p - tr(A_1^{-1}) / v1   (< p < n),

    else (p >= n, no residual degrees of freedom) var(y) = y^T y / n. Starting at var(y) when the signal is strong
    inflated E[w_d^2] = mu_d^2 + sigma^2 (A^{-1})_dd of every null in the first gamma step, all features stayed in,
    and theta's update went to 1, where log(1 - theta) keeps every feature in for good."""
    dev, dt = data.X.device, data.X.dtype
    var_y = max(float(data.yty) / data.n, 1e-8)
    sigma2 = var_y
    if data.p < data.n:
        pen = torch.full((data.p,), 1.0 / prior.slab_var, device=dev, dtype=dt)
        mu = ridge_solve(data, pen)
        df = data.p - float(ridge_inverse_diag(data, pen).sum()) / prior.slab_var
        sigma2 = max(float(((data.y - data.X @ mu) ** 2).sum()) / (data.n - df), 1e-8 * var_y)
    return {"gamma": torch.ones(data.p, device=dev, dtype=dt), "sigma2": sigma2, "theta": 0.5}


def fit_hard_em(data: StandardizedData, prior: SpikeSlabPrior, *, max_iter: int = 500, tol: float = 1e-8,
                init: dict | None = None) -> HardEMFit:
    """The homework's EM (conjugate prior), started from :func:`hard_em_start` (all slab, theta = 0.5, sigma^2 the
    all-slab fit's residual variance when p < n, var(y) otherwise) unless ``init`` is given.

    The gamma step compares E[w_d^2] under the current gamma's posterior, so a feature in the slab keeps its
    unshrunk mean: the EM is a local search from its start. When p >= n the all-slab posterior variance of w is
    dominated by the slab's prior, E[w_d^2] ~ sigma^2 v1, and every feature stays in; use EMVS there."""
    if not prior.conjugate:
        from pyrozoo.errors import PyrozooError

        raise PyrozooError("em_variant: the hard-gamma EM is derived for the conjugate prior; use 'emvs'")
    with one_thread_if_small(min(data.n, data.p)):  # many small solves (one_thread_if_small says why)
        t0 = time.perf_counter()
        params = init or hard_em_start(data, prior)

        def e_step(par, d):
            ex = hard_e_step(par["gamma"], par["sigma2"], d, prior)
            ex["theta_old"] = par["theta"]
            return ex

        def m_step(ex, d):
            return hard_m_step(ex, d, prior, ex["theta_old"])

        fit = run_em(e_step, m_step, params, data, max_iter=max_iter, tol=tol)
        par, ex = fit.params, fit.expectations
        return HardEMFit(par["gamma"], par["sigma2"], par["theta"], ex["mu"], ex["ew2"], fit.converged,
                         fit.iterations, time.perf_counter() - t0)
