"""Linear algebra shared by the exact and the sparse Gaussian-process models.

* Stationary kernels k(x, z) = s^2 g(r), r = |(x - z) / l| (RBF, Matern 3/2, Matern 5/2) as plain functions of
  tensors. They compute the same values as ``pyro.contrib.gp.kernels`` (checked in the tests), but take their
  hyperparameters as arguments: the contrib kernels are PyroModules whose parameters go through the global param
  store while they run, which clashes with evaluating them at many posterior draws or at values that the caller
  owns (SVI params, NUTS draws, a peer library's parameters in the benchmark). Both inputs are centred at one
  shared point before the squared distances are expanded (:func:`_centred_scaled`), so inputs far from the origin
  lose no accuracy.
* :func:`jitter_cholesky`: Cholesky with a bounded number of jitter retries, then a clear :class:`PyrozooError`
  (:func:`jitter_cholesky_ex` also returns the jitter used). The jitter scales with the mean diagonal, which is
  not detached: values and gradients belong to the same jittered matrix.
* :func:`sparse_gp_stats`: the O(N M^2) statistics of the FITC and VFE marginal likelihoods, accumulated over
  chunks of the inputs so that K_uf is never held whole (memory O(chunk M + M^2) with ``checkpoint=True``,
  else O(N M) for the autograd graph); no N x N matrix is ever formed.

Notation: K_uu = L L^T, Q_ff = K_fu K_uu^-1 K_uf, Lambda = diag(lambda_i). FITC has lambda_i = k_ii - q_ii + sigma^2;
VFE has lambda_i = sigma^2 plus the trace term -(1 / 2 sigma^2) sum_i (k_ii - q_ii). With
Bt = K_uf Lambda^-1 K_fu, r = K_uf Lambda^-1 y and K_uu + Bt = L_A L_A^T (matrix determinant lemma and Woodbury):

    log N(y | 0, Q_ff + Lambda) = -1/2 [N log 2 pi + sum log lambda_i + 2 sum log diag L_A - 2 sum log diag L
                                        + y^T Lambda^-1 y - |L_A^-1 r|^2]

Everything is formed from K_uu + Bt and K_uu separately, never from K_uu^-1 Bt K_uu^-1 (which would multiply the
rounding error by cond(K_uu)^2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch.utils.checkpoint import checkpoint as _checkpoint

from pyrozoo.errors import PyrozooError
from pyrozoo.validation import check_bool, check_int

KERNELS = ("rbf", "matern32", "matern52")
METHODS = ("fitc", "vfe")


def _centred_scaled(X: torch.Tensor, Z: torch.Tensor, lengthscale: torch.Tensor) -> tuple:
    """((X - c) / l, (Z - c) / l) for ONE centre c shared by both inputs: the mean of X's rows, detached.

    Distances are translation-invariant, so any c gives the same kernel in exact arithmetic; the expansion
    |x|^2 - 2 x.z + |z|^2 below, however, loses about eps |x / l|^2 to cancellation, which for inputs far from 0
    (1-D x = 1e6 + U(0, 10), l = 1: K off by 1e-4, 1e7: an indefinite "K") is more than the kernel itself. After
    centring the loss is eps |(x - c) / l|^2, set by the spread of the inputs, not their offset. Detaching c is
    exact too: the kernel does not depend on c, so its gradient with respect to X, Z and l is the one with c held
    fixed (and the backward pass skips the mean). Every chunk of the sparse path passes the same first argument
    (Z, or the training X), so all blocks of one matrix share c. A non-finite mean (NaN or inf among the rows, or
    rows so large that the sum overflows) falls back to c = 0, so that a bad row spoils only its own entries, as it
    did without centring. Cost: O((n + m) d) on top of the O(n m d) product."""
    c = torch.nan_to_num(X.detach().mean(0), nan=0.0, posinf=0.0, neginf=0.0)
    ls = lengthscale.unsqueeze(-2) if lengthscale.dim() > 1 else lengthscale  # (..., d) -> (..., 1, d): rows
    return (X - c) / ls, (Z - c) / ls


def _scaled_sqdist(X: torch.Tensor, Z: torch.Tensor, lengthscale: torch.Tensor) -> torch.Tensor:
    """|(x - z) / l|^2 for all pairs as ONE matmul of augmented inputs [-2x, |x|^2, 1] . [z, 1, |z|^2] (clamped at 0),
    on inputs centred by :func:`_centred_scaled`.

    Written this way because on CPU the kernel matrix is memory-bound: one (n, d+2) x (d+2, m) product writes the
    n x m matrix once, where the textbook |x|^2 - 2 x.z + |z|^2 makes four n x m passes (forward and backward)."""
    Xs, Zs = _centred_scaled(X, Z, lengthscale)
    one_x, one_z = torch.ones_like(Xs[..., :1]), torch.ones_like(Zs[..., :1])
    Xa = torch.cat([-2.0 * Xs, (Xs * Xs).sum(-1, keepdim=True), one_x], -1)
    Za = torch.cat([Zs, one_z, (Zs * Zs).sum(-1, keepdim=True)], -1)
    return (Xa @ Za.transpose(-1, -2)).clamp(min=0.0)


def kernel_matrix(kind: str, X: torch.Tensor, Z: torch.Tensor, lengthscale: torch.Tensor,
                  variance: torch.Tensor) -> torch.Tensor:
    """K[i, j] = k(X_i, Z_j) for X (n, d), Z (m, d); ``lengthscale`` a scalar or (d,) (ARD).

    Batched hyperparameters (e.g. vectorized posterior draws or ELBO particles): ``lengthscale`` (..., d) or
    (..., 1) with a leading batch shape B, ``variance`` () or B + (1, 1), so that it broadcasts against the
    (n, m) kernel; K is then (B..., n, m), entry b equal to the kernel at draw b. Unbatched inputs (a scalar or
    1-D lengthscale) take exactly the old path.

    rbf: s^2 exp(-r^2/2); matern32: s^2 (1 + sqrt3 r) exp(-sqrt3 r); matern52: s^2 (1 + sqrt5 r + 5r^2/3) exp(-sqrt5 r).
    Both inputs are first centred at the mean of X's rows (:func:`_centred_scaled`), so the accuracy depends on
    the spread of the inputs relative to the lengthscale, not on how far they are from the origin.
    """
    if X.shape[-1] != Z.shape[-1]:  # shapes only (no host sync): this runs at every objective evaluation
        raise PyrozooError(f"X, Z: expected the same number of input dimensions (columns), got X with {X.shape[-1]} "
                           f"(shape {tuple(X.shape)}) and Z with {Z.shape[-1]} (shape {tuple(Z.shape)})")
    if kind == "rbf":
        # log s^2 - r^2 / 2 from one augmented matmul, then a single exp pass
        Xs, Zs = _centred_scaled(X, Z, lengthscale)
        one_x = torch.ones_like(Xs[..., :1])
        Xa = torch.cat([Xs, -0.5 * (Xs * Xs).sum(-1, keepdim=True), one_x], -1)
        log_var = variance.log()
        if log_var.dim() > 2:  # a batched variance: Z's rows take its batch shape too (cat does not broadcast)
            Zs = Zs.expand(*torch.broadcast_shapes(Zs.shape[:-2], log_var.shape[:-2]), *Zs.shape[-2:])
        one_z = torch.ones_like(Zs[..., :1])
        Za = torch.cat([Zs, one_z, -0.5 * (Zs * Zs).sum(-1, keepdim=True) + log_var], -1)
        # no clamp at log s^2: rounding can put K_ij above s^2 by ~1e-16 relative, which is harmless (FITC clamps
        # k_ii - q_ii at 0) and saves two n x m passes
        return torch.exp(Xa @ Za.transpose(-1, -2))
    d2 = _scaled_sqdist(X, Z, lengthscale)
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


class JitteredCholesky(NamedTuple):
    """What :func:`jitter_cholesky_ex` factored: ``L`` with L L^T = A + added * I, ``added`` = ``rel`` * mean(diag A)
    (per matrix for a batch; it depends on A through the mean diagonal, so gradients see it), and whether the first
    attempt failed and a larger jitter than the one asked for was needed (``retried``)."""

    L: torch.Tensor
    rel: Any  # relative jitter actually used: a float for one matrix, a tensor (..., 1, 1) for a batch
    added: Any  # absolute jitter on the diagonal, rel * mean(diag A): a tensor, or 0.0 when nothing was added
    retried: bool

    def record_retry(self, record: dict | None) -> None:
        """Fill ``record`` (when given) with ``jitter`` (the absolute jitter added) and ``rel`` (relative to the mean
        diagonal) if a retry added jitter; leave it untouched otherwise. For one matrix, not a batch."""
        if record is not None and self.retried:
            record.update(jitter=float(self.added), rel=float(self.rel))


def jitter_cholesky(A: torch.Tensor, *, jitter: float = 0.0, max_tries: int = 6, growth: float = 10.0,
                    name: str = "kernel matrix") -> torch.Tensor:
    """Lower Cholesky factor of the symmetric matrix ``A`` (batched allowed) with bounded jitter.

    Factors ``A + jitter * mean(diag A) * I`` (``jitter=0``: ``A`` itself); if that is not positive definite, retries
    with the relative jitter jitter * growth^k (``jitter=0``: 1e-10 * growth^(k-1)), k = 1..max_tries, and then
    raises :class:`PyrozooError` naming ``name`` and the largest jitter tried. The jitter is a function of ``A``
    (through its mean diagonal, not detached), so the gradient of anything computed from ``L`` is that of the
    value computed, jitter included. :func:`jitter_cholesky_ex` also says which jitter was used.

    A batch (..., n, n) is factored matrix by matrix: each has its own mean diagonal and takes the jitter of its
    own first success, so entry b equals the factor of ``A[b]`` alone (a vectorized draw that needs jitter does not
    move the others).
    """
    return jitter_cholesky_ex(A, jitter=jitter, max_tries=max_tries, growth=growth, name=name).L


def jitter_cholesky_ex(A: torch.Tensor, *, jitter: float = 0.0, max_tries: int = 6, growth: float = 10.0,
                       name: str = "kernel matrix") -> JitteredCholesky:
    """:func:`jitter_cholesky`, returning the factor with the jitter it used (:class:`JitteredCholesky`), so that a
    caller can say when a retry added jitter that was not asked for (the exact GP reports it as part of the noise)."""
    if not (math.isfinite(jitter) and jitter >= 0):
        raise PyrozooError(f"jitter: expected a finite number >= 0 (relative to the mean diagonal), got {jitter!r}")
    diag = A.diagonal(dim1=-2, dim2=-1)
    # per matrix; NOT detached: A + jitter * mean(diag A) I is the matrix whose factor is used, so its gradient
    # includes d(jitter * mean diag)/dA (detached, d/dvariance of the sparse bound was off by 2e-5 at jitter 1e-6)
    scale = diag.mean(-1).abs().clamp(min=torch.finfo(A.dtype).tiny)[..., None, None]
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    L, info = torch.linalg.cholesky_ex(A + (jitter * scale) * eye if jitter > 0 else A)
    bad = info != 0
    if not bool(bad.any()):
        return JitteredCholesky(L, jitter, (jitter * scale)[..., 0, 0] if jitter > 0 else 0.0, False)
    eps = jitter * growth if jitter > 0 else 1e-10  # the first retry must differ from the failed attempt
    rel = None if A.dim() == 2 else torch.full_like(scale, jitter)  # a batch: each matrix's own relative jitter
    for _ in range(max_tries):
        if rel is None:
            L, info = torch.linalg.cholesky_ex(A + (eps * scale) * eye)
        else:  # only the matrices that failed so far move on to the larger jitter
            rel = torch.where(bad[..., None, None], eps, rel)
            L, info = torch.linalg.cholesky_ex(A + (rel * scale) * eye)
        bad = info != 0
        if not bool(bad.any()):
            used = eps if rel is None else rel.detach()
            return JitteredCholesky(L, used, (used * scale)[..., 0, 0], True)
        eps *= growth
    raise PyrozooError(_not_pd_message(A, name, eps / growth, max_tries))


def _not_pd_message(A: torch.Tensor, name: str, jitter: float, tries: int) -> str:
    """Why the jittered Cholesky failed: non-finite entries, or diagonal entries <= 0 (no covariance has them: a
    negative or zero variance, never duplicate inputs), before the generic near-singular case."""
    head = f"{name}: not positive definite even with jitter {jitter:.1e} x mean diagonal after {tries} retries"
    diag = A.detach().diagonal(dim1=-2, dim2=-1)
    if not bool(torch.isfinite(A.detach()).all()):
        return (f"{name}: not positive definite: it holds NaN or inf (size {A.shape[-1]}); check the inputs and the "
                f"hyperparameters for non-finite values")
    if bool((diag <= 0).any()):
        return (f"{head}: {int((diag <= 0).sum())} of its diagonal entries are <= 0 (smallest "
                f"{float(diag.min()):.3g}), which no covariance has; check that the signal variance and the noise "
                f"are > 0")
    return (f"{head} (size {A.shape[-1]}); check for duplicate inputs, a tiny noise or lengthscale, or use "
            f"float64")


class _Gram(torch.autograd.Function):
    """(K K^T, K y) with the backward dK = (G + G^T) K + g_r y^T in ONE matmul (autograd's matmul backward would
    compute G K and G^T K as two M x M x n products)."""

    @staticmethod
    def forward(ctx, K, y):
        ctx.save_for_backward(K, y)
        return K @ K.T, K @ y

    @staticmethod
    def backward(ctx, gA, gr):
        K, y = ctx.saved_tensors
        dK = torch.addr((gA + gA.T) @ K, gr, y)
        dy = K.T @ gr if ctx.needs_input_grad[1] else None
        return dK, dy


class _GaussianLogDensity(torch.autograd.Function):
    """log N(y | 0, A_j) for a symmetric positive definite A (n x n), A_j = A + r mean(diag A) I the matrix that
    :func:`jitter_cholesky_ex` factors (r = 0 when the first attempt succeeds without jitter), with a
    hand-written backward:

        d/dA = G + (r / n) tr(G) I,   G = (alpha alpha^T - A_j^-1) / 2,   d/dy = -alpha,   alpha = A_j^-1 y

    (the second term is the jitter's own dependence on A, through its mean diagonal). Autograd through cholesky and
    cholesky_solve spends several n^3 passes in its backward; this one spends one cholesky_inverse (2.9x faster
    per value and gradient at n = 824, the exact GP on concrete, 2 CPU cores)."""

    @staticmethod
    def forward(ctx, A, y, jitter, name, record):
        fac = jitter_cholesky_ex(A.detach(), jitter=jitter, name=name)
        fac.record_retry(record)  # the caller says so (once per call or fit, not per step)
        L = fac.L
        alpha = torch.cholesky_solve(y.unsqueeze(-1), L).squeeze(-1)
        ctx.save_for_backward(L, alpha)
        ctx.rel = float(fac.rel)
        return -0.5 * (y * alpha).sum() - L.diagonal().log().sum() - 0.5 * y.shape[0] * math.log(2 * math.pi)

    @staticmethod
    def backward(ctx, g):
        L, alpha = ctx.saved_tensors
        dA = dy = None
        if ctx.needs_input_grad[0]:
            dA = 0.5 * g * (torch.outer(alpha, alpha) - torch.cholesky_inverse(L))
            if ctx.rel:  # A_j's diagonal grew by r mean(diag A): each diagonal entry of A moves it by r / n
                dA.diagonal().add_(ctx.rel / L.shape[0] * dA.diagonal().sum())
        if ctx.needs_input_grad[1]:
            dy = -g * alpha
        return dA, dy, None, None, None


def gaussian_log_density(A: torch.Tensor, y: torch.Tensor, *, jitter: float = 0.0, name: str = "covariance matrix",
                         record: dict | None = None) -> torch.Tensor:
    """log N(y | 0, A), differentiable in A and y (see :class:`_GaussianLogDensity`); A is factored by
    :func:`jitter_cholesky` (``jitter``, ``name`` as there; the gradient includes the jitter's dependence on A's
    mean diagonal, as autograd through :func:`jitter_cholesky` would). ``record``: a dict that gets ``jitter``
    (the absolute jitter added to the diagonal) and ``rel`` (it relative to the mean diagonal) when the first
    Cholesky failed and a retry added jitter; untouched otherwise."""
    return _GaussianLogDensity.apply(A, y, jitter, name, record)


class _FITCChunk(torch.autograd.Function):
    """FITC statistics of one chunk, unwhitened, with P = K_uu^-1 and K = K_uf (M x c):

        a_i = P k_i, lambda_i = kdiag_i - k_i^T a_i + sigma^2 (the t_i part clamped at 0),
        Bt = K Lambda^-1 K^T, r = K Lambda^-1 y, sum log lambda_i, y^T Lambda^-1 y.

    Hand-written backward (4 M^2 c products in all, none of the n x m temporaries autograd keeps): with
    G = dl/dBt, g = dl/dr and dl/dlambda_i = -k_i^T G k_i / l_i^2 - (g.k_i) y_i / l_i^2 + g_ld / l_i - g_qd y_i^2/l_i^2,
        dK = (G + G^T) K Lambda^-1 + g (y / lambda)^T - 2 A diag(dl/dlambda),   dP = -K diag(dl/dlambda) K^T.
    """

    @staticmethod
    def forward(ctx, K, P, y, kdiag, noise):
        A = P @ K
        t = kdiag - (K * A).sum(0)
        pos = t > 0
        lam = torch.where(pos, t, torch.zeros_like(t)) + noise
        Kl = K / lam
        ctx.save_for_backward(K, A, y, lam, pos)
        return Kl @ K.T, Kl @ y, lam.log().sum(), (y * y / lam).sum()

    @staticmethod
    def backward(ctx, gB, gr, gld, gqd):
        K, A, y, lam, pos = ctx.saved_tensors
        GK = (gB + gB.T) @ K
        kGk = 0.5 * (K * GK).sum(0)
        yl = y / lam
        gk = gr @ K
        dlam = (-kGk / lam - gk * yl + gld - gqd * y * yl) / lam
        dt = torch.where(pos, dlam, torch.zeros_like(dlam))
        dK = torch.addr(GK / lam, gr, yl) - 2.0 * A * dt
        dP = -(K * dt) @ K.T if ctx.needs_input_grad[1] else None
        dy = (gk + 2.0 * gqd * y) / lam if ctx.needs_input_grad[2] else None
        dkdiag = dt if ctx.needs_input_grad[3] else None
        dnoise = dlam.sum() if ctx.needs_input_grad[4] else None
        return dK, dP, dy, dkdiag, dnoise


@dataclass
class SparseStats:
    """Sufficient statistics of the sparse marginal likelihood (see module docstring)."""

    L: torch.Tensor  # chol(K_uu), M x M
    LA: torch.Tensor  # chol(K_uu + K_uf Lambda^-1 K_fu), M x M
    r: torch.Tensor  # K_uf Lambda^-1 y, M
    logdet_lambda: torch.Tensor  # sum log lambda_i
    quad_lambda: torch.Tensor  # y^T Lambda^-1 y
    trace: torch.Tensor  # sum_i (k_ii - q_ii) (VFE trace term; 0 for FITC)
    n: int

    def log_marginal(self, method: str, noise: torch.Tensor) -> torch.Tensor:
        """FITC: log N(y | 0, Q_ff + Lambda); VFE: log N(y | 0, Q_ff + sigma^2 I) - trace / (2 sigma^2)."""
        c = torch.linalg.solve_triangular(self.LA, self.r.unsqueeze(-1), upper=False).squeeze(-1)
        logdet = self.logdet_lambda + 2.0 * (self.LA.diagonal().log().sum() - self.L.diagonal().log().sum())
        out = -0.5 * (self.n * math.log(2 * math.pi) + logdet + self.quad_lambda - (c * c).sum())
        if method == "vfe":
            out = out - 0.5 * self.trace / noise
        return out


def _chunk_fitc(Xc, yc, Z, P, lengthscale, variance, noise, kind):
    Kuf = kernel_matrix(kind, Z, Xc, lengthscale, variance)
    return _FITCChunk.apply(Kuf, P, yc, variance.expand(Xc.shape[0]), noise)


def _chunk_vfe(Xc, yc, Z, lengthscale, variance, kind):
    return _Gram.apply(kernel_matrix(kind, Z, Xc, lengthscale, variance), yc)


def _factor_posterior(Kuu: torch.Tensor, Bt: torch.Tensor) -> torch.Tensor:
    """chol(K_uu + Bt), symmetrized first (a bounded jitter only if rounding made it indefinite)."""
    A = Kuu + 0.5 * (Bt + Bt.T)
    return jitter_cholesky(A, name="K_uu + K_uf Lambda^-1 K_fu")


CPU_CHUNK_ROWS = 16384


def default_chunk_size(n: int, m: int, device: torch.device) -> int:
    """Rows of X per chunk when the caller names none.

    CPU: 16384 rows (a 16384 x 256 float64 block is 32 MiB). CUDA: every chunk is a handful of kernel launches,
    so fewer, larger chunks are faster: as many rows as keep about eight c x M float64 blocks (K_uf, P K_uf, the
    kernel's intermediates and their gradients) within a quarter of the device's free memory, never fewer than
    the CPU figure. On an H100 that is one chunk for N = 200,000 at M = 512, 2.0-3.0x faster per Adam step than
    16384-row chunks (benchmarks/RESULTS.md, sparse GP on CUDA).
    """
    if device.type != "cuda":
        return CPU_CHUNK_ROWS
    free, _ = torch.cuda.mem_get_info(device)
    rows = int(free // 4 // (8 * 8 * max(m, 1)))
    return max(CPU_CHUNK_ROWS, min(rows, n))


def sparse_gp_stats(X: torch.Tensor, y: torch.Tensor, Z: torch.Tensor, *, kind: str, lengthscale: torch.Tensor,
                    variance: torch.Tensor, noise: torch.Tensor, method: str, chunk_size: int | None = None,
                    checkpoint: bool | None = None, jitter: float = 1e-6) -> SparseStats:
    """Accumulate :class:`SparseStats` over chunks of ``chunk_size`` rows of ``X`` (``None``:
    :func:`default_chunk_size`); cost O(N M^2), memory O(chunk M + M^2) with ``checkpoint=True`` (each chunk's
    K_uf is recomputed in the backward pass instead of stored; default: on when N > 4 chunks), else O(N M).

    Both methods accumulate M x M sums per chunk (matrix products, which run faster on CPU than the per-chunk
    triangular solves of a whitened form); the marginal likelihood then needs only chol(K_uu) and
    chol(K_uu + Bt). FITC uses P = K_uu^-1 for q_ii = k_i^T P k_i; VFE needs only Bt = K_uf K_fu / sigma^2 and
    tr(K_uu^-1 K_uf K_fu) for its trace term.
    ``jitter`` (relative to the mean of diag K_uu) is always added to K_uu, as in pyro.contrib.gp and GPyTorch.
    """
    n = X.shape[0]
    if method not in METHODS:
        raise PyrozooError(f"method: expected one of {', '.join(METHODS)}; got {method!r}")
    # a negative chunk_size made range() skip every chunk (a silently wrong bound); 0 or 2.5 a bare range() error
    chunk_size = default_chunk_size(n, Z.shape[0], X.device) if chunk_size is None else check_int(
        "chunk_size", chunk_size, minimum=1)
    if checkpoint is None:
        checkpoint = n > 4 * chunk_size
    else:
        check_bool("checkpoint", checkpoint)
    Kuu = kernel_matrix(kind, Z, Z, lengthscale, variance)
    L = jitter_cholesky(Kuu, jitter=jitter, name="K_uu (pseudo-inputs)")
    Kuu = L @ L.T  # the jittered matrix that L factors
    M = Z.shape[0]
    zero = torch.zeros((), dtype=X.dtype, device=X.device)
    Bt = torch.zeros(M, M, dtype=X.dtype, device=X.device)
    r = torch.zeros(M, dtype=X.dtype, device=X.device)
    use_ckpt = checkpoint and torch.is_grad_enabled()
    if method == "fitc":
        P = torch.cholesky_inverse(L)
        P = 0.5 * (P + P.T)
        logdet, quad = zero, zero
        for s in range(0, n, chunk_size):
            args = (X[s:s + chunk_size], y[s:s + chunk_size], Z, P, lengthscale, variance, noise, kind)
            out = _checkpoint(_chunk_fitc, *args, use_reentrant=False) if use_ckpt else _chunk_fitc(*args)
            Bt, r, logdet, quad = Bt + out[0], r + out[1], logdet + out[2], quad + out[3]
        return SparseStats(L, _factor_posterior(Kuu, Bt), r, logdet, quad, zero, n)
    for s in range(0, n, chunk_size):
        args = (X[s:s + chunk_size], y[s:s + chunk_size], Z, lengthscale, variance, kind)
        out = _checkpoint(_chunk_vfe, *args, use_reentrant=False) if use_ckpt else _chunk_vfe(*args)
        Bt, r = Bt + out[0], r + out[1]
    # tr(K_uu^-1 K_uf K_fu) by one cholesky_solve (M^3)
    trace = (n * variance - torch.cholesky_solve(Bt, L).diagonal().sum()).clamp(min=0.0)
    return SparseStats(L, _factor_posterior(Kuu, Bt / noise), r / noise, n * noise.log(), (y * y).sum() / noise,
                       trace, n)
