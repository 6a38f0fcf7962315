"""Exact collapsed Bayesian model averaging over a linear block of weights (CIBER and its Gaussian variant).

Setting. Given sampled weights w_s, the network's mean output is linear in the collapsed weights w_c:
f(x) = c(x) + phi(x) . w_c, with phi(x) the collapsed weights' input features (hidden activations, 1 for a bias).

CIBER (Zeng & Van den Broeck): q(w_c | w_s) is uniform on the box mu_j +- a_j (a_j = sqrt(3) sd_j, so variances
match the Gaussian conditional) and the likelihood is triangular with half-width r sigma(x),
p(y | f) = 1 / (r sigma) - |y - f| / (r sigma)^2 on |y - f| <= r sigma, with r = :data:`TRIANGULAR_R` = 2.2970 the
half-width minimizing the L2 distance between N(0, 1) and a symmetric triangular density. Then

    y - c(x) - phi . mu = sum_j U_j + T,   U_j ~ U[-|phi_j| a_j, |phi_j| a_j],   T ~ Tri(r sigma) = V_1 + V_2,

with V_1, V_2 ~ U[-r sigma / 2, r sigma / 2]: the predictive is the density of a sum of m independent centred
uniforms with half-widths b_1..b_m (a one-dimensional box spline). By inclusion-exclusion, with w_j = 2 b_j,

    p(t) = 1 / ((m-1)! prod_j w_j) sum_{s in {-1,1}^m} prod_j s_j (t + s . b)_+^{m-1}.

Since (x)_+^k = (x^k + sgn(x)^{k+1} |x|^k) / 2 and the m-th order difference of the polynomial x^{m-1} vanishes, the
symmetric form p(t) = 1 / (2 (m-1)! prod w) sum_s prod(s) g(t + s.b), g(x) = sgn(x)^m |x|^{m-1}, is used: its terms are
bounded by (|t| + sum b)^{m-1} instead of (2 sum b)^{m-1}, gaining about 2^{m-1} in cancellation. Two components
of equal width (the triangle's V_1, V_2) merge: their four sign choices give the offsets (2, 0, -2) b with
coefficients (1, -2, 1), so CIBER needs 3 * 2^k terms, not 2^(k+2). All test points are evaluated at once: one
matrix product for the offsets, one integer power, one matrix-vector product per chunk. Each value comes
with a rounding-error bound (machine eps times the sum of absolute terms, plus the error of forming each offset
t + s.b); the bound must be within ``rel_tol`` (1e-4) of the value itself, not of the peak: a value that misses
it (the far tails, where the symmetric sum cancels) is recomputed with the one-sided form at -|t|, whose terms
(-|t| + s.b)_+^(m-1) are all of one sign within 2 min(b) of the support's edge (there a single term,
d^(m-1) / ((m-1)! prod w), d the distance to the edge), and, if that still cancels, exactly rounded with mpmath
at a precision grown to the cancellation. Components narrower than
``1e-9`` of the widest are dropped (a box of width w changes the density by O((w / W)^2) where it is smooth
and by O(w / W) of the peak next to a kink of the piecewise polynomial: < 1e-9 of the peak either way).
The predictive mean is exact and simple: E[y] = c + phi . mu (all components symmetric), and
Var[y] = sum_j b_j^2 / 3 + (r sigma)^2 / 6.

Triangle mixture (our variant, not in the paper): the triangle has no tails, so a residual beyond r sigma has
likelihood 0. ``tail_weight`` rho > 0 uses (1 - rho) Tri(r sigma) + rho Tri(3 r sigma) instead: a fixed scale
mixture of triangles, still piecewise linear, so the predictive is the rho-mixture of two exact densities of the
form above (same cost per component); its variance gains (r sigma)^2 / 6 * rho (3^2 - 1).

Gaussian variant: q(w_c | w_s) = N(mu, Sigma) and a Gaussian likelihood give p(y | x, w_s) =
N(c + phi . mu, phi^T Sigma phi + sigma^2) in closed form.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import torch

from pyrozoo.errors import PyrozooError

TRIANGULAR_R = 2.2970  # argmin_r || N(0,1) - Tri(0, r) ||_2, derived in tests/guides/test_collapsed.py
TAIL_WIDTH = 3.0  # our triangle-mixture variant: the tail triangle is 3x as wide (module docstring)
MAX_COLLAPSED = 12  # 3 * 2^12 inclusion-exclusion terms per value (the triangle adds 3 offsets)
_DROP_REL = 1e-9


def triangular_l2_distance(r: float) -> float:
    """Squared L2 distance between the N(0, 1) density and the symmetric triangular density of half-width ``r``:
    int phi^2 = 1 / (2 sqrt(pi)), int tri^2 = 2 / (3 r),
    int phi tri = (2 / r)(Phi(r) - 1/2) - (2 / r^2)(phi(0) - phi(r))."""
    phi0, phir = 1 / math.sqrt(2 * math.pi), math.exp(-r * r / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(r / math.sqrt(2)))
    cross = (2 / r) * (cdf - 0.5) - (2 / r**2) * (phi0 - phir)
    return 1 / (2 * math.sqrt(math.pi)) + 2 / (3 * r) - 2 * cross


@lru_cache(maxsize=64)
def _sign_table(m: int, pair: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Multipliers M (T, m) and coefficients c (T,) of the inclusion-exclusion sum sum_T c_T g(t + M_T . b).

    ``pair`` < 0: all 2^m sign vectors, c = prod(s). ``pair`` = j: components j and j + 1 have equal widths, so the
    four sign choices of the pair collapse to the offsets (+2, 0, -2) b_j with coefficients (1, -2, 1): 3 * 2^(m-2)
    terms instead of 2^m (a triangular likelihood is such a pair). Built once per (m, pair), on the CPU, float64."""
    rest = m if pair < 0 else m - 2
    signs = torch.tensor(list(itertools.product((1.0, -1.0), repeat=rest)), dtype=torch.float64)
    signs = signs.reshape(-1, rest) if rest > 0 else torch.ones(1, 0, dtype=torch.float64)
    parity = signs.prod(-1)
    if pair < 0:
        return signs, parity
    u = torch.tensor([2.0, 0.0, -2.0], dtype=torch.float64)
    cu = torch.tensor([1.0, -2.0, 1.0], dtype=torch.float64)
    T = signs.shape[0] * 3
    M = torch.zeros(T, m, dtype=torch.float64)
    others = [i for i in range(m) if i not in (pair, pair + 1)]
    M[:, others] = signs.repeat_interleave(3, 0)
    M[:, pair] = u.repeat(signs.shape[0])
    return M, parity.repeat_interleave(3) * cu.repeat(signs.shape[0])


def _ipow_(a: torch.Tensor, k: int) -> torch.Tensor:
    """a^k for an integer k >= 0 by repeated squaring with in-place products (overwrites ``a``): about 6x faster
    than ``Tensor.pow``, which calls the general float power per element; relative rounding error <= 2 k eps."""
    if k == 0:
        return torch.ones_like(a)
    r = None
    while k:
        if k & 1:
            r = a.clone() if r is None else r.mul_(a)
        k >>= 1
        if k:
            a = a.mul_(a)
    return r


def _mp_density(t: float, b: list[float], cdf: bool) -> float:
    """p(t) (or F(t)) exactly rounded, with mpmath: the one-sided sum at -|t|,
    1 / (k! prod w) sum_s prod(s) (-|t| + s.b)_+^k (k = m - 1, or m for the CDF: F(-|t|), then 1 - F(-|t|) for t > 0),
    whose terms are all <= d^k, d = sum b - |t| the distance to the support's edge. Sign vectors are enumerated
    depth-first over the widths in decreasing order and a branch is cut as soon as no completion can reach x > 0,
    so in the tails only the few contributing offsets are visited. The working precision grows until it exceeds
    the sum's cancellation (log10 of the sum of |terms| over |value|) by 25 digits. ``t`` inside the support."""
    import mpmath

    m = len(b)
    k = m if cdf else m - 1
    order = sorted(range(m), key=lambda j: -b[j])
    dps = 30
    while True:
        with mpmath.workdps(dps):
            bb = [mpmath.mpf(b[j]) for j in order]
            rest = [mpmath.fsum(bb[i:]) for i in range(m + 1)]  # sum of the widths not yet signed
            acc, size = mpmath.mpf(0), mpmath.mpf(0)
            stack = [(0, -abs(mpmath.mpf(t)), 1)]  # (next width, partial x, partial sign product)
            while stack:
                i, x, sign = stack.pop()
                if x + rest[i] <= 0:  # every completion has x <= 0: no term
                    continue
                if i == m:
                    term = x**k if k > 0 else mpmath.mpf(1)
                    acc += sign * term
                    size += term
                    continue
                stack.append((i + 1, x + bb[i], sign))
                stack.append((i + 1, x - bb[i], -sign))
            if acc > 0 and (size == 0 or mpmath.log10(size / acc) + 25 <= dps):
                out = acc / (mpmath.factorial(k) * mpmath.fprod([2 * v for v in bb]))
                return float(1 - out if cdf and t > 0 else out)
            if acc <= 0 and dps > 2000:  # unreachable inside the support (the density is > 0 there)
                raise PyrozooError(f"t: no positive density at {t!r} for half-widths {b!r}")
            dps = 2 * dps if acc <= 0 else int(mpmath.log10(size / acc)) + 40


def uniform_sum_density(t: torch.Tensor, half_widths: torch.Tensor, *, cdf: bool = False,
                        rel_tol: float = 1e-4, chunk: int = 2048) -> torch.Tensor:
    """Density (or CDF) at ``t`` (shape ``(R,)``) of a sum of independent centred uniforms with ``half_widths``
    (shape ``(R, m)``, zeros allowed), exactly, in float64. See the module docstring for the formula.

    Every value inside the support is returned with a rounding-error bound of at most ``rel_tol`` times the value
    (a relative bound, so far-tail values, tiny next to the peak, are as accurate as the peak): values whose float64
    bound is larger go to the one-sided form and then to mpmath (:func:`_mp_density`). Off the support the result is
    exactly 0 (1 for the CDF)."""
    if t.dim() != 1 or half_widths.dim() != 2 or half_widths.shape[0] != t.shape[0]:
        raise PyrozooError(f"half_widths: expected shape ({t.shape[0]}, m) for t of shape (R,), got "
                           f"{tuple(half_widths.shape)} and {tuple(t.shape)}")
    if not 0 < rel_tol < 1:
        raise PyrozooError(f"rel_tol: expected a number in (0, 1), got {rel_tol!r}")
    t64, b64 = t.to(torch.float64), half_widths.to(torch.float64).abs()
    out = torch.empty_like(t64)
    bmax = b64.max(-1, keepdim=True).values
    b64 = torch.where(b64 > _DROP_REL * bmax, b64, torch.zeros_like(b64))
    b64 = b64.sort(-1, descending=True).values
    active = (b64 > 0).sum(-1)
    eps = torch.finfo(torch.float64).eps
    # per row: the first adjacent pair of equal active widths (sorted, so equal widths are adjacent), or -1
    eq = (b64[:, :-1] == b64[:, 1:]) & (b64[:, 1:] > 0)
    pair = torch.full_like(active, -1)
    if eq.shape[-1] > 0:
        pair = torch.where(eq.any(-1), eq.to(torch.int8).argmax(-1), pair)
    key = active * (b64.shape[-1] + 1) + pair + 1
    for kv in key.unique().tolist():
        m, pj = divmod(kv, b64.shape[-1] + 1)
        rows = (key == kv).nonzero().squeeze(-1)
        if m == 0:  # a point mass at 0 (never happens with a likelihood component); density undefined
            raise PyrozooError("half_widths: every component has zero width, the density does not exist")
        bm = b64[rows, :m]
        M, coef = _sign_table(m, pj - 1)  # a pair of equal widths takes 3 offsets instead of 4 sign choices
        M, coef = M.to(t64.device), coef.to(t64.device)
        abs_coef = coef.abs()
        k = m if cdf else m - 1
        norm = 2 * math.factorial(k)
        step = max(1, min(chunk, (1 << 22) // M.shape[0]))  # bound the (rows, T) temporaries to ~32 MB
        for lo in range(0, rows.numel(), step):
            r = rows[lo:lo + step]
            b = bm[lo:lo + step]
            tr = t64[r]
            total = b.sum(-1)
            # rounding: each offset x = t + M_T . b is formed with an absolute error <= (m + 1) eps (|t| + sum b),
            # which moves |x|^k by k |x|^(k-1) times that; the power and the sum of the T terms add
            # <= (m + 2k + 2) eps |x|^k each
            xerr = eps * (m + 1) * k * (tr.abs() + total)
            x = torch.addmm(tr[:, None], b, M.T, beta=1)  # (rows, T): t + M_T . b
            scale = norm * (2 * b).prod(-1)
            p = _ipow_(x.abs(), k)  # g(x) = sgn(x)^(k+1) |x|^k: |x|^k for odd k, with the sign of x for even k
            val = ((p if k % 2 == 1 else p.copysign(x)) @ coef) / scale
            size = p @ abs_coef
            # Hoelder: sum |c| |x|^(k-1) <= (sum |c| |x|^k)^((k-1)/k) (sum |c|)^(1/k), no second pass over the terms
            err = eps * (m + 2 * k + 2) * size / scale
            if k > 0:
                err = err + xerr * size.pow((k - 1) / k) * float(abs_coef.sum()) ** (1 / k) / scale
            if cdf:
                val = val + 0.5
            outside = tr.abs() >= total  # exactly 0 (density) or 0/1 (CDF) off the support
            val = torch.where(outside, (tr > 0).to(val) if cdf else torch.zeros_like(val), val)
            out[r] = val
            # recompute where the rounding bound exceeds rel_tol of the value (inside the support the density and
            # the CDF are > 0, so a relative bound is always attainable)
            bad = (err > rel_tol * val.abs()) & ~outside
            if bool(bad.any()):
                # first the one-sided form at -|t| (p(t) = p(-t); F(t) = 1 - F(-t)): in the tails, where the
                # symmetric form cancels, only the few offsets beyond the lower edge contribute, all of one sign;
                # within 2 min(b) of the edge it is the single term d^k / (k! prod w), d = sum b - |t|
                rb = bad.nonzero().squeeze(-1)
                xb = torch.addmm(-tr[rb].abs()[:, None], b[rb], M.T, beta=1)
                pos = xb.clamp_min(0)
                # (x)_+^(k-1) (a step for k = 1)
                q1 = (_ipow_(pos.clone(), k - 1) if k > 1 else (xb > 0).to(xb)) if k > 0 else None
                q = q1 * pos if k > 0 else (xb > 0).to(xb)  # (x)_+^k
                half = scale[rb] / 2  # k! prod w
                v1 = (q @ coef) / half
                e1 = eps * (m + 2 * k + 2) * (q @ abs_coef) / half
                if k > 0:
                    e1 = e1 + xerr[rb] * (q1 @ abs_coef) / half
                ok = (e1 <= rel_tol * v1.abs()) & (v1 > 0)  # v1 = 0 inside the support: d below float resolution
                if cdf:
                    v1 = torch.where(tr[rb] > 0, 1 - v1, v1)
                out[r[rb[ok]]] = v1[ok]
                for i in r[rb[~ok]].tolist():  # still ill-conditioned: exactly rounded with mpmath
                    out[i] = _mp_density(float(t64[i]), b64[i, :m].tolist(), cdf)
    return out.clamp_min(0.0) if not cdf else out.clamp(0.0, 1.0)


def ciber_density(y: torch.Tensor, center: torch.Tensor, box_half_widths: torch.Tensor, sigma: torch.Tensor,
                  *, r: float = TRIANGULAR_R, tail_weight: float = 0.0, tail_width: float = TAIL_WIDTH) -> torch.Tensor:
    """p(y | x, w_s) exactly: ``y``, ``center`` = c(x) + phi . mu and ``sigma`` broadcast to a common shape
    ``batch``; ``box_half_widths`` = |phi_j| a_j has shape ``batch + (k,)``. Returns float64 densities.

    ``tail_weight`` rho > 0 (our variant, not the paper's): the likelihood is the scale mixture of triangles
    (1 - rho) Tri(r sigma) + rho Tri(tail_width r sigma), still piecewise linear, so the predictive is the same
    mixture of two exact box-spline densities."""
    rho = _check_tail(tail_weight, tail_width)
    out = _ciber_density(y, center, box_half_widths, sigma, r)
    if rho > 0:
        out = (1 - rho) * out + rho * _ciber_density(y, center, box_half_widths, tail_width * sigma, r)
    return out


def _check_tail(tail_weight: float, tail_width: float) -> float:
    rho = float(tail_weight)
    if not 0.0 <= rho < 1.0:
        raise PyrozooError(f"tail_weight: expected a number in [0, 1), got {tail_weight!r}")
    if not float(tail_width) >= 1.0:
        raise PyrozooError(f"tail_width: expected a number >= 1, got {tail_width!r}")
    return rho


def _ciber_density(y: torch.Tensor, center: torch.Tensor, box_half_widths: torch.Tensor, sigma: torch.Tensor,
                   r: float) -> torch.Tensor:
    batch = torch.broadcast_shapes(y.shape, center.shape, sigma.shape, box_half_widths.shape[:-1])
    k = box_half_widths.shape[-1]
    if k > MAX_COLLAPSED:
        raise PyrozooError(f"num_collapsed: at most {MAX_COLLAPSED} collapsed weights, got {k}")
    t = (y.to(torch.float64) - center.to(torch.float64)).expand(batch).reshape(-1)
    tri = (0.5 * r * sigma.to(torch.float64)).expand(batch).reshape(-1, 1)
    b = box_half_widths.to(torch.float64).expand(*batch, k).reshape(-1, k)
    widths = torch.cat([b, tri, tri], dim=-1)
    return uniform_sum_density(t, widths).reshape(batch)


def ciber_moments(center: torch.Tensor, box_half_widths: torch.Tensor, sigma: torch.Tensor,
                  *, r: float = TRIANGULAR_R, tail_weight: float = 0.0,
                  tail_width: float = TAIL_WIDTH) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and variance of the CIBER predictive for one w_s: (center, sum b^2 / 3 + (r sigma)^2 / 6 *
    (1 - rho + rho tail_width^2)) (rho = ``tail_weight``, 0 for the paper's single triangle)."""
    rho = _check_tail(tail_weight, tail_width)
    var = (box_half_widths**2).sum(-1) / 3 + (r * sigma) ** 2 / 6 * (1 - rho + rho * tail_width**2)
    return center, var


def ciber_sample(center: torch.Tensor, box_half_widths: torch.Tensor, sigma: torch.Tensor, num_samples: int,
                 *, r: float = TRIANGULAR_R, tail_weight: float = 0.0, tail_width: float = TAIL_WIDTH,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Monte Carlo draws from the same predictive (uniform box weights, triangular noise, the wide triangle with
    probability ``tail_weight``): ``(num_samples, *batch)``, ``batch`` the common shape of ``center``, ``sigma`` and
    ``box_half_widths.shape[:-1]`` (as in :func:`ciber_density`)."""
    rho = _check_tail(tail_weight, tail_width)
    # every point gets its own draws: noise shaped like sigma (a scalar) would broadcast along the batch, one value
    # per draw shared by all points (and fail for num_samples != batch size)
    batch = torch.broadcast_shapes(center.shape, sigma.shape, box_half_widths.shape[:-1])
    shape = (num_samples, *batch, box_half_widths.shape[-1])
    gdev = generator.device if generator is not None else box_half_widths.device  # a CPU generator may drive CUDA
    u = (2 * torch.rand(shape, generator=generator, dtype=box_half_widths.dtype, device=gdev) - 1)
    v = torch.rand((3 if rho > 0 else 2, num_samples, *batch), generator=generator, dtype=sigma.dtype, device=gdev)
    u, v = u.to(box_half_widths.device), v.to(sigma.device)
    scale = torch.where(v[2] < rho, tail_width, 1.0) if rho > 0 else 1.0
    # V1 + V2, each U(-r s/2, r s/2), s = sigma (or tail_width sigma for the tail component)
    return center + (u * box_half_widths).sum(-1) + r * scale * sigma * (v[0] + v[1] - 1)


def gaussian_collapsed_moments(center: torch.Tensor, phi: torch.Tensor, cov: torch.Tensor,
                               sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of N(c + phi . mu, phi^T Sigma phi + sigma^2); ``phi`` (..., k), ``cov`` (k, k)."""
    var = torch.einsum("...i,ij,...j->...", phi, cov, phi) + sigma**2
    return center, var


def conditional_gaussian(mean: torch.Tensor, diag: torch.Tensor, low_rank: torch.Tensor, collapsed: torch.Tensor,
                         w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Conditional of the collapsed coordinates given the rest under N(mean, diag(d) + L L^T).

    With s the sampled and c the collapsed coordinates, M = L_s^T D_s^{-1} L_s (K x K), Woodbury gives
    E[w_c | w_s] = m_c + L_c (I + M)^{-1} L_s^T D_s^{-1} (w_s - m_s) and Cov = D_c + L_c (I + M)^{-1} L_c^T.
    ``w``: (S, P) draws (their collapsed coordinates are ignored). Returns ((S, k) means, (k, k) covariance)."""
    P = mean.shape[0]
    keep = torch.ones(P, dtype=torch.bool, device=mean.device)
    keep[collapsed] = False
    d_s, L_s, L_c = diag[keep], low_rank[keep], low_rank[collapsed]
    cov = torch.diag(diag[collapsed])
    if low_rank.shape[1] == 0:
        return mean[collapsed].expand(w.shape[0], -1).clone(), cov
    LtDinv = (L_s / d_s[:, None]).T  # (K, P_s)
    inner = torch.eye(L_s.shape[1], dtype=mean.dtype, device=mean.device) + LtDinv @ L_s
    inner_inv = torch.linalg.inv(inner)
    cond_mean = mean[collapsed] + ((w[:, keep] - mean[keep]) @ LtDinv.T @ inner_inv.T) @ L_c.T
    return cond_mean, cov + L_c @ inner_inv @ L_c.T
