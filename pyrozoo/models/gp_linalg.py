"""Linear algebra shared by the exact and the sparse Gaussian-process models.

* Stationary kernels k(x, z) = s^2 g(r), r = |(x - z) / l| (RBF, Matern 3/2, Matern 5/2) as plain functions of
  tensors. They compute the same values as ``pyro.contrib.gp.kernels`` (checked in the tests), but take their
  hyperparameters as arguments: the contrib kernels are PyroModules whose parameters go through the global param
  store while they run, which clashes with evaluating them at many posterior draws or at values that the caller
  owns (SVI params, NUTS draws, a peer library's parameters in the benchmark).
* :func:`jitter_cholesky`: Cholesky with a bounded number of jitter retries, then a clear :class:`PyrozooError`.
* :func:`sparse_gp_stats`: the O(N M^2) statistics of the FITC and VFE marginal likelihoods, accumulated over
  chunks of the inputs so that K_uf is never held whole (memory O(chunk M + M^2) with ``checkpoint=True``,
  else O(N M) for the autograd graph); no N x N matrix is ever formed.

Notation (whitened): K_uu = L L^T, V = L^-1 K_uf (M x N), Q_ff = V^T V, Lambda = diag(lambda_i). FITC has
lambda_i = k_ii - q_ii + sigma^2; VFE has lambda_i = sigma^2 plus the trace term
-(1 / 2 sigma^2) sum_i (k_ii - q_ii). With B = V Lambda^-1 V^T, L_B = chol(I + B), c = L_B^-1 V Lambda^-1 y:

    log N(y | 0, Q_ff + Lambda) = -1/2 [N log 2 pi + sum log lambda_i + 2 sum log diag L_B + y^T Lambda^-1 y - c^T c]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint as _checkpoint

from pyrozoo.errors import PyrozooError

KERNELS = ("rbf", "matern32", "matern52")
METHODS = ("fitc", "vfe")


def _scaled_sqdist(X: torch.Tensor, Z: torch.Tensor, lengthscale: torch.Tensor) -> torch.Tensor:
    """|(x - z) / l|^2 for all pairs, via |x|^2 + |z|^2 - 2 x.z (one matmul; clamped at 0)."""
    Xs, Zs = X / lengthscale, Z / lengthscale
    d2 = (Xs * Xs).sum(-1, keepdim=True) - 2.0 * Xs @ Zs.T + (Zs * Zs).sum(-1)
    return d2.clamp(min=0.0)


def kernel_matrix(kind: str, X: torch.Tensor, Z: torch.Tensor, lengthscale: torch.Tensor,
                  variance: torch.Tensor) -> torch.Tensor:
    """K[i, j] = k(X_i, Z_j) for X (n, d), Z (m, d); ``lengthscale`` a scalar or (d,) (ARD).

    rbf: s^2 exp(-r^2/2); matern32: s^2 (1 + sqrt3 r) exp(-sqrt3 r); matern52: s^2 (1 + sqrt5 r + 5r^2/3) exp(-sqrt5 r).
    """
    d2 = _scaled_sqdist(X, Z, lengthscale)
    if kind == "rbf":
        return variance * torch.exp(-0.5 * d2)
    # clamp below: d sqrt(r2)/dr2 is infinite at 0, the clamp makes the (analytically zero) gradient exactly 0
    r = d2.clamp(min=1e-36).sqrt()
    if kind == "matern32":
        sr = math.sqrt(3.0) * r
        return variance * (1.0 + sr) * torch.exp(-sr)
    if kind == "matern52":
        sr = math.sqrt(5.0) * r
        return variance * (1.0 + sr + sr * sr / 3.0) * torch.exp(-sr)
    raise PyrozooError(f"kernel: expected one of {', '.join(KERNELS)}; got {kind!r}")


def kernel_diag(X: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """k(x_i, x_i) = s^2 for every stationary kernel here."""
    return variance.expand(X.shape[:-1]) if variance.dim() == 0 else variance * torch.ones_like(X[..., 0])


def jitter_cholesky(A: torch.Tensor, *, jitter: float = 1e-10, max_tries: int = 6, growth: float = 10.0,
                    name: str = "kernel matrix") -> torch.Tensor:
    """Lower Cholesky factor of the symmetric matrix ``A`` (batched allowed).

    Tries ``A`` itself, then ``A + eps I`` with eps = jitter * mean(diag A) * growth^k for k = 0..max_tries-1; raises
    :class:`PyrozooError` naming ``name`` and the largest jitter tried if none is positive definite.
    """
    L, info = torch.linalg.cholesky_ex(A)
    if not bool((info != 0).any()):
        return L
    scale = A.diagonal(dim1=-2, dim2=-1).mean().detach().abs().clamp(min=torch.finfo(A.dtype).tiny)
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    eps = jitter
    for _ in range(max_tries):
        L, info = torch.linalg.cholesky_ex(A + (eps * scale) * eye)
        if not bool((info != 0).any()):
            return L
        eps *= growth
    raise PyrozooError(
        f"{name}: not positive definite even with jitter {eps / growth:.1e} x mean diagonal after {max_tries} "
        f"retries (size {A.shape[-1]}); check for duplicate inputs, a tiny noise or lengthscale, or use float64"
    )


@dataclass
class SparseStats:
    """Whitened sufficient statistics of the sparse marginal likelihood (see module docstring)."""

    L: torch.Tensor  # chol(K_uu), M x M
    B: torch.Tensor  # V Lambda^-1 V^T, M x M
    b: torch.Tensor  # V Lambda^-1 y, M
    logdet_lambda: torch.Tensor  # sum log lambda_i
    quad_lambda: torch.Tensor  # y^T Lambda^-1 y
    trace: torch.Tensor  # sum_i (k_ii - q_ii) (VFE trace term; 0 for FITC)
    n: int

    def log_marginal(self, method: str, noise: torch.Tensor) -> torch.Tensor:
        """FITC: log N(y | 0, Q_ff + Lambda); VFE: log N(y | 0, Q_ff + sigma^2 I) - trace / (2 sigma^2)."""
        M = self.B.shape[-1]
        eye = torch.eye(M, dtype=self.B.dtype, device=self.B.device)
        LB = jitter_cholesky(eye + self.B, name="I + V Lambda^-1 V^T")
        c = torch.linalg.solve_triangular(LB, self.b.unsqueeze(-1), upper=False).squeeze(-1)
        logdet = self.logdet_lambda + 2.0 * LB.diagonal().log().sum()
        out = -0.5 * (self.n * math.log(2 * math.pi) + logdet + self.quad_lambda - (c * c).sum())
        if method == "vfe":
            out = out - 0.5 * self.trace / noise
        return out


def _chunk_fitc(Xc, yc, Z, L, lengthscale, variance, noise, kind):
    Kuf = kernel_matrix(kind, Z, Xc, lengthscale, variance)
    V = torch.linalg.solve_triangular(L, Kuf, upper=False)
    lam = (variance - (V * V).sum(0)).clamp(min=0.0) + noise
    W = V * lam.rsqrt()
    return W @ W.T, V @ (yc / lam), lam.log().sum(), (yc * yc / lam).sum()


def _chunk_vfe(Xc, yc, Z, lengthscale, variance, kind):
    Kuf = kernel_matrix(kind, Z, Xc, lengthscale, variance)
    return Kuf @ Kuf.T, Kuf @ yc


def sparse_gp_stats(X: torch.Tensor, y: torch.Tensor, Z: torch.Tensor, *, kind: str, lengthscale: torch.Tensor,
                    variance: torch.Tensor, noise: torch.Tensor, method: str, chunk_size: int = 16384,
                    checkpoint: bool | None = None, jitter: float = 1e-10, noise_floor: float = 0.0) -> SparseStats:
    """Accumulate :class:`SparseStats` over chunks of ``chunk_size`` rows of ``X``; cost O(N M^2), memory
    O(chunk M + M^2) (``checkpoint=True``: each chunk is recomputed in the backward pass instead of storing its
    K_uf; default: on when N > 4 chunks).

    VFE accumulates the unwhitened A = K_uf K_fu and r = K_uf y (one matmul per chunk) and whitens at the end:
    B = L^-1 A L^-T / sigma^2, trace = N s^2 - tr(L^-1 A L^-T). FITC needs q_ii per point, so it whitens per chunk.
    ``noise_floor`` is added to lambda (the noiseless FITC of the homework uses a tiny floor instead of sigma^2).
    """
    n = X.shape[0]
    if checkpoint is None:
        checkpoint = n > 4 * chunk_size
    Kuu = kernel_matrix(kind, Z, Z, lengthscale, variance)
    L = jitter_cholesky(Kuu, jitter=jitter, name="K_uu (pseudo-inputs)")
    M = Z.shape[0]
    zero = torch.zeros((), dtype=X.dtype, device=X.device)
    if method == "fitc":
        B = torch.zeros(M, M, dtype=X.dtype, device=X.device)
        b = torch.zeros(M, dtype=X.dtype, device=X.device)
        logdet, quad = zero, zero
        eff_noise = noise + noise_floor
        for s in range(0, n, chunk_size):
            args = (X[s:s + chunk_size], y[s:s + chunk_size], Z, L, lengthscale, variance, eff_noise, kind)
            if checkpoint and torch.is_grad_enabled():
                out = _checkpoint(_chunk_fitc, *args, use_reentrant=False)
            else:
                out = _chunk_fitc(*args)
            B, b, logdet, quad = B + out[0], b + out[1], logdet + out[2], quad + out[3]
        return SparseStats(L, B, b, logdet, quad, zero, n)
    if method != "vfe":
        raise PyrozooError(f"method: expected one of {', '.join(METHODS)}; got {method!r}")
    A = torch.zeros(M, M, dtype=X.dtype, device=X.device)
    r = torch.zeros(M, dtype=X.dtype, device=X.device)
    for s in range(0, n, chunk_size):
        args = (X[s:s + chunk_size], y[s:s + chunk_size], Z, lengthscale, variance, kind)
        if checkpoint and torch.is_grad_enabled():
            out = _checkpoint(_chunk_vfe, *args, use_reentrant=False)
        else:
            out = _chunk_vfe(*args)
        A, r = A + out[0], r + out[1]
    LiA = torch.linalg.solve_triangular(L, A, upper=False)
    Aw = torch.linalg.solve_triangular(L, LiA.T, upper=False)  # L^-1 A L^-T (symmetric)
    Aw = 0.5 * (Aw + Aw.T)
    bw = torch.linalg.solve_triangular(L, r.unsqueeze(-1), upper=False).squeeze(-1)
    yy = (y * y).sum()
    trace = (n * variance - Aw.diagonal().sum()).clamp(min=0.0)
    return SparseStats(L, Aw / noise, bw / noise, n * noise.log(), yy / noise, trace, n)
