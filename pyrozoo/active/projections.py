"""Random projections of L_n for any posterior with a tractable (Gaussian) likelihood (Pinsler et al. 2019, sec. 4).

L_n(theta) = E_{y_n ~ p(y_n | x_n, D)}[log p(y_n | x_n, theta)] + H[y_n | x_n, D]. With J posterior draws
theta_j ~ p(theta | D), the J-vector

    L^_n = J^{-1/2} [L_n(theta_1), ..., L_n(theta_J)]

gives an unbiased estimate L^_n . L^_m of the weighted Euclidean inner product E_theta[L_n(theta) L_m(theta)].
The adapter gives the expectation over y (``expected_log_likelihood``); for y | theta ~ N(f_theta(x), s_theta(x)^2)
it is exact given the predictive mean m_n and variance v_n:

    E_{y_n}[log N(y_n | f, s^2)] = -1/2 log(2 pi s^2) - (v_n + (m_n - f)^2) / (2 s^2).

For probit classification it is the two-term sum p_n log Phi(z) + (1 - p_n) log Phi(-z), z = x^T theta.
Memory is O(pool x J); the pool is processed in chunks so peak work memory stays bounded too. J over M pool points
with D columns is refused before any draw when its J x (M + D) values would need more than the memory budget
(:func:`check_projection_memory`).
"""

from __future__ import annotations

import math

import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.validation import check_int

CHUNK = 16384
# Peak memory of projected_embedding per value of J x (M + D) (the draws f_j(x) (J, M), the embedding (M, J) and the
# parameter draws (J, D), float64, with their temporaries): measured as the peak RSS over the fitted posterior on the
# 2-core box, J = 1e5-2e5 on the shipped pools (385-435 rows): blr and neural-linear 15.5 bytes (f and the
# embedding), the GP 23 (its standard normals (J, M) too), probit 29.3 (log Phi(z) and log Phi(-z) and their
# products). The largest, rounded up, is counted for every posterior.
PROJECTION_BYTES_PER_VALUE = 32


def projection_memory_budget() -> int:
    """The bytes the projections may take: the same budget as a run's pointwise arrays
    (:data:`~pyrozoo.inference.assemble.MAX_POINTWISE_VALUES` x
    :data:`~pyrozoo.inference.assemble.POINTWISE_BYTES_PER_VALUE`, about 6 GB, so that the peak stays under 8 GB)."""
    from pyrozoo.inference.assemble import MAX_POINTWISE_VALUES, POINTWISE_BYTES_PER_VALUE

    return MAX_POINTWISE_VALUES * POINTWISE_BYTES_PER_VALUE


def max_num_projections(rows: int, columns: int) -> int:
    """The largest J whose J x (rows + columns) values fit :func:`projection_memory_budget` at
    :data:`PROJECTION_BYTES_PER_VALUE` bytes each (0 when not even one does)."""
    return projection_memory_budget() // (PROJECTION_BYTES_PER_VALUE * max(int(rows) + int(columns), 1))


def check_projection_memory(num_projections: int, rows: int, columns: int) -> None:
    """Raise, before any draw, if J = ``num_projections`` random projections over ``rows`` pool points with
    ``columns`` input columns would need more memory than :func:`projection_memory_budget`: J x (M + D) values at
    :data:`PROJECTION_BYTES_PER_VALUE` bytes (J posterior draws at the M pool points and of the D parameters)."""
    most = max_num_projections(rows, columns)
    if num_projections <= most:
        return
    need = int(num_projections) * (int(rows) + int(columns)) * PROJECTION_BYTES_PER_VALUE
    budget = projection_memory_budget()
    over = (f"expected at most {most:,} random projections (J, --num-projections) for {rows:,} pool points with "
            f"{columns} columns" if most else f"the pool of {rows:,} points with {columns} columns is too large for "
            f"even one random projection")
    gb = f"{need / 1e9:.3g}" if need < 1e12 else f"{need / 1e9:,.0f}"  # 13,248 GB, not 1.32e+04
    raise PyrozooError(f"num_projections: {over}: J x (pool points + columns) values take about "
                       f"{PROJECTION_BYTES_PER_VALUE} bytes each, within a memory budget of {budget / 1e9:.3g} GB; got "
                       f"{num_projections:,} (about {gb} GB)")


def check_num_projections(num_projections: int) -> int:
    """J must be an integer >= 1."""
    return check_int("num_projections", num_projections, minimum=1)


def projected_embedding(posterior, x: torch.Tensor, num_projections: int,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """The (M, J) matrix with rows L^_n for the pool ``x`` under ``posterior`` (a
    :class:`~pyrozoo.active.posteriors.RegressionPosterior`). The same J draws are used for every row: for
    parametric posteriors the chunks re-draw the same theta_j from one seed; a posterior whose draws are joint
    over the inputs (``joint_function_draws = True``, a GP) is drawn over the whole pool at once. A J too large for
    memory is refused first (:func:`check_projection_memory`)."""
    num_projections = check_num_projections(num_projections)
    check_projection_memory(num_projections, x.shape[0], x.shape[1] if len(x.shape) > 1 else 1)  # before any draw
    rows = []
    # one set of theta_j for the whole pool: draw a seed for the chunks from the caller's generator
    dev = generator.device if generator is not None else "cpu"
    seed = int(torch.randint(2**62, (1,), generator=generator, device=dev))
    scale = 1.0 / math.sqrt(num_projections)
    chunk = max(x.shape[0], 1) if getattr(posterior, "joint_function_draws", False) else CHUNK
    for start in range(0, x.shape[0], chunk):
        xc = x[start:start + chunk]
        g = torch.Generator(device=dev).manual_seed(seed)
        ell = posterior.expected_log_likelihood(xc, num_projections, generator=g)  # (m, J)
        entropy = posterior.predictive(xc)[2]
        rows.append(ell.add_(entropy[:, None].to(ell.dtype)).mul_(scale))
    return rows[0] if len(rows) == 1 else torch.cat(rows, dim=0)


def gaussian_expected_log_likelihood(f: torch.Tensor, noise_var: torch.Tensor, mean: torch.Tensor,
                                     var: torch.Tensor) -> torch.Tensor:
    """E_{y ~ predictive}[log N(y | f_j(x_n), s_j^2)] as an (M, J) matrix, from draws f (J, M), noise variances
    (J,) or (J, M), and the predictive mean and variance (M,)."""
    noise_var = noise_var.to(mean.dtype)
    if noise_var.dim() == 2:  # heteroscedastic: (J, m) -> (m, J)
        noise_var = noise_var.T
    c = -0.5 * torch.log(2 * math.pi * noise_var)
    k = 0.5 / noise_var
    return f.to(mean.dtype).T.neg().add_(mean[:, None]).square_().add_(var[:, None]).mul_(-k).add_(c)
