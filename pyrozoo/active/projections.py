"""Random projections of L_n for any posterior with a tractable (Gaussian) likelihood (Pinsler et al. 2019, sec. 4).

L_n(theta) = E_{y_n ~ p(y_n | x_n, D)}[log p(y_n | x_n, theta)] + H[y_n | x_n, D]. With J posterior draws
theta_j ~ p(theta | D), the J-vector

    L^_n = J^{-1/2} [L_n(theta_1), ..., L_n(theta_J)]

gives an unbiased estimate L^_n . L^_m of the weighted Euclidean inner product E_theta[L_n(theta) L_m(theta)].
For y | theta ~ N(f_theta(x), s_theta(x)^2) the expectation over the predictive (mean m_n, variance v_n) is exact:

    E_{y_n}[log N(y_n | f, s^2)] = -1/2 log(2 pi s^2) - (v_n + (m_n - f)^2) / (2 s^2).

Memory is O(pool x J); the pool is processed in chunks so peak work memory stays bounded too.
"""

from __future__ import annotations

import math

import torch

from pyrozoo.validation import check_int

CHUNK = 16384


def check_num_projections(num_projections: int) -> int:
    """J must be an integer >= 1."""
    return check_int("num_projections", num_projections, minimum=1)


def projected_embedding(posterior, x: torch.Tensor, num_projections: int,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """The (M, J) matrix with rows L^_n for the pool ``x`` under ``posterior`` (a
    :class:`~pyrozoo.active.posteriors.RegressionPosterior`). The same J draws are used for every row."""
    num_projections = check_num_projections(num_projections)
    rows = []
    # one set of theta_j for the whole pool: draw a seed for the chunks from the caller's generator
    dev = generator.device if generator is not None else "cpu"
    seed = int(torch.randint(2**62, (1,), generator=generator, device=dev))
    scale = 1.0 / math.sqrt(num_projections)
    for start in range(0, x.shape[0], CHUNK):
        xc = x[start:start + CHUNK]
        g = torch.Generator(device=dev).manual_seed(seed)
        f, noise_var = posterior.function_draws(xc, num_projections, generator=g)  # (J, m), (J,)
        mean, var, entropy = posterior.predictive(xc)
        noise_var = noise_var.to(mean.dtype)
        if noise_var.dim() == 2:  # heteroscedastic: (J, m) -> (m, J)
            noise_var = noise_var.T
        # L_n(theta_j) = c_j - k_j (v_n + (m_n - f_jn)^2) + H_n, built in place on an (m, J) buffer
        c = -0.5 * torch.log(2 * math.pi * noise_var)
        k = 0.5 / noise_var
        out = f.to(mean.dtype).T.neg().add_(mean[:, None]).square_().add_(var[:, None]).mul_(-k)
        rows.append(out.add_(c).add_(entropy[:, None]).mul_(scale))
    return rows[0] if len(rows) == 1 else torch.cat(rows, dim=0)
