"""Exact posterior of conjugate spike-and-slab regression by enumerating all 2^p inclusion patterns (p <= 16).

With D = diag(v_gamma), A = X^T X + D^{-1}, b = X^T y, S = y^T y - b^T A^{-1} b, integrating w and sigma^2 out:

    log p(y | gamma) = lgamma((m + nu)/2) - lgamma(nu/2) + (nu/2) log(nu lam) - (m/2) log(pi)
                       - (1/2) log|D| - (1/2) log|A| - ((m + nu)/2) log(nu lam + S)
    log p(gamma)     = log B(a0 + k, b0 + p - k) - log B(a0, b0),        k = sum gamma     (theta integrated out)

(|I + X D X^T| = |D| |A| and y^T (I + X D X^T)^{-1} y = S by the matrix determinant lemma and Woodbury.) Given
gamma: w | y ~ Student-t with mean A^{-1} b, E[sigma^2 | y] = (nu lam + S) / (m + nu - 2),
Var(w | gamma, y) = E[sigma^2 | gamma, y] A^{-1}, E[theta | gamma] = (a0 + k) / (a0 + b0 + p).

m = dof is y's degrees of freedom (:attr:`~pyrozoo.models.spike_slab_prior.StandardizedData.dof`): n for y taken as
given; n - 1 for centred y (:func:`~pyrozoo.models.spike_slab_prior.standardize`), the posterior of the model with
an intercept under a flat prior (independent of sigma^2) integrated out. Then log p(y | gamma) is the density of
y's projection onto the (n - 1)-dimensional complement of the constant vector (orthonormal coordinates): with X's
columns centred, X = Q Q^T X for that basis Q, so |D| |A| and S are unchanged and only m replaces n. This is the
posterior the Gibbs sampler draws from (:mod:`pyrozoo.models.spike_slab_gibbs`).
"""

from __future__ import annotations

import math

import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.models.spike_slab_prior import SpikeSlabPrior, StandardizedData

MAX_EXACT_P = 16


def all_patterns(p: int, *, dtype: torch.dtype = torch.float64, device: torch.device | None = None) -> torch.Tensor:
    """(2^p, p) 0/1 matrix of every inclusion pattern."""
    codes = torch.arange(2**p, device=device)
    bits = (codes.unsqueeze(-1) >> torch.arange(p, device=device)) & 1
    return bits.to(dtype)


def exact_posterior(data: StandardizedData, prior: SpikeSlabPrior, *, chunk: int = 4096) -> dict[str, torch.Tensor]:
    """Posterior over every pattern and the exact marginals: ``inclusion`` (p,), ``w_mean`` (p,), ``w_sd`` (p,),
    ``sigma2_mean``, ``theta_mean``, ``log_marginal`` (2^p,), ``post`` (2^p,), ``patterns`` (2^p, p)."""
    if not prior.conjugate:
        raise PyrozooError("conjugate: the exact posterior needs the conjugate prior (sigma^2 scales w's variance)")
    p, dof = data.p, data.dof  # y's degrees of freedom: n, or n - 1 for centred y
    if p > MAX_EXACT_P:
        raise PyrozooError(f"X: exact enumeration supports p <= {MAX_EXACT_P}, got p = {p}")
    XtX, b, yty = data.XtX.double(), data.Xty.double(), data.yty.double()
    pats = all_patterns(p, device=XtX.device)
    nu, lam = prior.nu, prior.lam
    const = (math.lgamma(0.5 * (dof + nu)) - math.lgamma(0.5 * nu) + 0.5 * nu * math.log(nu * lam)
             - 0.5 * dof * math.log(math.pi))
    logml, means, vars_, S_all = [], [], [], []
    for start in range(0, pats.shape[0], chunk):
        g = pats[start : start + chunk]
        v = prior.spike_var + g * (prior.slab_var - prior.spike_var)
        A = XtX.expand(g.shape[0], p, p).clone()
        A.diagonal(dim1=-2, dim2=-1).add_(1.0 / v)
        L, info = torch.linalg.cholesky_ex(A)  # A is positive definite by construction
        if bool((info != 0).any()):
            raise PyrozooError("X: X^T X + D^{-1} is not numerically positive definite; check the scaling of X")
        m = torch.cholesky_solve(b.expand(g.shape[0], p).unsqueeze(-1), L).squeeze(-1)
        S = yty - (b * m).sum(-1)
        logdetA = 2 * L.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        logml.append(const - 0.5 * v.log().sum(-1) - 0.5 * logdetA - 0.5 * (dof + nu) * torch.log(nu * lam + S))
        means.append(m)
        vars_.append(torch.cholesky_inverse(L).diagonal(dim1=-2, dim2=-1))
        S_all.append(S)
    logml, m, ainv_diag, S = torch.cat(logml), torch.cat(means), torch.cat(vars_), torch.cat(S_all)
    k = pats.sum(-1)
    a0, b0 = prior.a0, prior.b0
    log_prior = (torch.lgamma(a0 + k) + torch.lgamma(b0 + p - k) - math.lgamma(a0 + b0 + p)
                 - (math.lgamma(a0) + math.lgamma(b0) - math.lgamma(a0 + b0)))
    log_post = logml + log_prior
    post = torch.softmax(log_post, 0)
    if dof + nu <= 2:
        raise PyrozooError("n: the posterior mean of sigma^2 needs m + nu > 2 (m = n, or n - 1 for centred y)")
    s2_given = (nu * lam + S) / (dof + nu - 2)
    w_mean = post @ m
    w_var = post @ (s2_given.unsqueeze(-1) * ainv_diag + m**2) - w_mean**2
    return {
        "inclusion": post @ pats,
        "w_mean": w_mean,
        "w_sd": w_var.clamp(min=0).sqrt(),
        "sigma2_mean": post @ s2_given,
        "theta_mean": post @ ((a0 + k) / (a0 + b0 + p)),
        "log_marginal": logml,
        "log_posterior": log_post,
        "post": post,
        "patterns": pats,
    }


def median_probability_model(inclusion: torch.Tensor) -> torch.Tensor:
    """Barbieri & Berger's median-probability model: the features with inclusion probability > 1/2."""
    return inclusion > 0.5
