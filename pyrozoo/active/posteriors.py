"""Posterior adapters: what the acquisitions need from any fitted regression posterior with a Gaussian likelihood.

An adapter answers, at pool inputs ``x`` (M, D):

* ``predictive(x)``: predictive mean and variance of y, and its entropy H[y | x, D];
* ``expected_noise_entropy(x)``: E_theta H[y | x, theta] (for BALD = H[y | x, D] - E_theta H[y | x, theta]);
* ``function_draws(x, J)``: J posterior draws of the regression function f_j(x) (J, M) and noise variances (J,);
* ``log_predictive_density(x, y)``: for test NLL;
* optionally ``closed_form_embedding(x, inner_product)``: an exact finite feature map of the weighted Fisher or
  weighted Euclidean inner product (see :class:`BLRPoolPosterior`), or ``None``.

:class:`BLRPoolPosterior` is closed form; :class:`SampledRegressionPosterior` works from stored posterior draws of
any model (a zoo ``Result`` from NUTS/SVI, a BNN or SWAG ensemble, a GP's function samples).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.result import Result
from pyrozoo.models.blr import BLRPosterior, blr_posterior
from pyrozoo.validation import check_int

LOG_2PI_E = math.log(2 * math.pi * math.e)


class RegressionPosterior(ABC):
    """A fitted posterior over regression functions with Gaussian observation noise."""

    @abstractmethod
    def predictive(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predictive mean (M,), variance (M,) and entropy (M,) of y at the rows of ``x``."""

    @abstractmethod
    def expected_noise_entropy(self, x: torch.Tensor) -> torch.Tensor:
        """E_theta H[y | x, theta] (M,)."""

    @abstractmethod
    def function_draws(self, x: torch.Tensor, num_samples: int,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``num_samples`` posterior draws: f_j(x) (J, M) and the noise variance of each draw (J,)."""

    @abstractmethod
    def log_predictive_density(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p(y | x, D) pointwise (M,)."""

    def closed_form_embedding(self, x: torch.Tensor, inner_product: str) -> torch.Tensor | None:
        """Rows phi_n with <L_n, L_m> = phi_n . phi_m exactly, or ``None`` where no closed form exists."""
        return None


class BLRPoolPosterior(RegressionPosterior):
    """Conjugate Bayesian linear regression (:mod:`pyrozoo.models.blr`), everything in closed form.

    Closed-form inner products of L_n(theta) = E_{y_n}[log p(y_n | x_n, theta)] + H[y_n | x_n, D] with the posterior
    of w at the plug-in precision tau_hat = E[tau | D] (exact when the noise is known), Lam^{-1} = C C^T:

    * weighted Fisher: <L_n, L_m>_F = tau_hat (x_n^T x_m)(x_n^T Lam^{-1} x_m) = phi_n . phi_m with
      phi_n = sqrt(tau_hat) x_n (x) C^T x_n  (Kronecker product, D^2 features);
    * weighted Euclidean: with u_n = C^T x_n, a_n = |u_n|^2, L_n = 1/2 log(1 + a_n) - a_n / 2 - z_n^2 / 2 where
      z = sqrt(tau_hat) x^T (w - mu) is Gaussian with Cov(z_n, z_m) = u_n . u_m, so
      <L_n, L_m>_2 = e_n e_m + (u_n . u_m)^2 / 2,  e_n = 1/2 log(1 + a_n) - a_n, i.e.
      phi_n = [e_n, vec(u_n u_n^T) / sqrt 2]  (1 + D^2 features).

    Both maps make Frank–Wolfe O(pool x D^2) in memory instead of O(pool^2) for a Gram matrix.
    """

    def __init__(self, post: BLRPosterior) -> None:
        self.post = post

    @classmethod
    def fit(cls, x: torch.Tensor, y: torch.Tensor, **prior: float) -> BLRPoolPosterior:
        """Closed-form posterior of ``y`` on the design ``x`` (see :func:`pyrozoo.models.blr.blr_posterior`)."""
        return cls(blr_posterior(x, y, **prior))

    def _x(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(dtype=self.post.mean.dtype, device=self.post.mean.device)

    def predictive(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d = self.post.predictive(self._x(x))
        return d.mean, d.variance, d.entropy()

    def expected_noise_entropy(self, x: torch.Tensor) -> torch.Tensor:
        if self.post.known_noise:
            h = 0.5 * LOG_2PI_E + math.log(self.post.noise)
        else:  # E[-1/2 log tau] with tau ~ Gamma(a, b): -(digamma(a) - log b) / 2
            h = 0.5 * LOG_2PI_E - 0.5 * (float(torch.special.digamma(torch.tensor(self.post.a,
                                                                                  dtype=torch.float64)))
                                         - math.log(self.post.b))
        return torch.full((x.shape[0],), h, dtype=self.post.mean.dtype, device=self.post.mean.device)

    def function_draws(self, x: torch.Tensor, num_samples: int,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.post.sample(num_samples, generator=generator)
        return s["w"] @ self._x(x).T, 1.0 / s["tau"]

    def log_predictive_density(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.post.predictive(self._x(x)).log_prob(y.to(self.post.mean.dtype))

    def closed_form_embedding(self, x: torch.Tensor, inner_product: str) -> torch.Tensor | None:
        x = self._x(x)
        chol = torch.linalg.cholesky(self.post.cov_unit)
        u = x @ chol  # rows u_n = C^T x_n
        m = x.shape[0]
        if inner_product == "fisher":
            return math.sqrt(self.post.tau_hat) * (x[:, :, None] * u[:, None, :]).reshape(m, -1)
        if inner_product == "euclidean":
            a = (u * u).sum(-1)
            e = 0.5 * torch.log1p(a) - a
            return torch.cat([e[:, None], (u[:, :, None] * u[:, None, :]).reshape(m, -1) / math.sqrt(2)], dim=1)
        return None


class SampledRegressionPosterior(RegressionPosterior):
    """A posterior known only through S stored draws: ``draw_fn(x)`` gives f_s(x) (S, M) at every draw and
    ``noise_var`` (S,) (or a scalar) the noise variance of each draw.

    The predictive is the S-component Gaussian mixture; its mean and variance are exact, its entropy has no closed
    form and is replaced by that of the moment-matched Gaussian (an upper bound; exact when the mixture is Gaussian).
    """

    def __init__(self, draw_fn: Callable[[torch.Tensor], torch.Tensor], noise_var: torch.Tensor | float,
                 num_draws: int) -> None:
        self.draw_fn = draw_fn
        self.num_draws = check_int("num_draws", num_draws, minimum=1)
        self.noise_var = torch.as_tensor(noise_var)
        if self.noise_var.dim() == 0:
            self.noise_var = self.noise_var.expand(self.num_draws)
        if self.noise_var.shape != (self.num_draws,) or not bool((self.noise_var > 0).all()):
            raise PyrozooError(f"noise_var: expected a positive scalar or {self.num_draws} positive values, "
                               f"got shape {tuple(self.noise_var.shape)}")

    def _draws(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.draw_fn(x)
        return f, self.noise_var.to(dtype=f.dtype, device=f.device)

    def predictive(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f, nv = self._draws(x)
        mean = f.mean(0)
        var = nv.mean() + f.var(0, unbiased=False)
        return mean, var, 0.5 * (LOG_2PI_E + var.log())

    def expected_noise_entropy(self, x: torch.Tensor) -> torch.Tensor:
        f, nv = self._draws(x[:1])
        h = 0.5 * (LOG_2PI_E + nv.log()).mean()
        return h.expand(x.shape[0]).clone()

    def function_draws(self, x: torch.Tensor, num_samples: int,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if num_samples > self.num_draws:
            raise PyrozooError(f"num_projections: expected at most the {self.num_draws} stored posterior draws, "
                               f"got {num_samples}")
        f, nv = self._draws(x)
        idx = torch.randperm(self.num_draws, generator=generator, device="cpu")[:num_samples].to(f.device)
        return f[idx], nv[idx]

    def log_predictive_density(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        f, nv = self._draws(x)
        comp = torch.distributions.Normal(f, nv.sqrt()[:, None]).log_prob(y.to(f.dtype))
        return torch.logsumexp(comp, 0) - math.log(self.num_draws)


def blr_from_result(result: Result, noise: float = 0.0) -> SampledRegressionPosterior:
    """Adapter for any fitted ``blr`` run (``exact`` or ``nuts``): its stored draws of w and tau (or, for a
    known-noise run, which has no tau site, the known ``noise`` sd)."""
    w = torch.as_tensor(result.draws("w"), dtype=torch.float64)
    if "tau" in result.posterior:
        noise_var = 1.0 / torch.as_tensor(result.draws("tau"), dtype=torch.float64)
    elif noise > 0:
        noise_var = torch.tensor(float(noise) ** 2, dtype=torch.float64)
    else:
        raise PyrozooError("noise: this blr run has no tau site (known noise); pass its noise sd, got 0")

    def draw_fn(x: torch.Tensor) -> torch.Tensor:
        return w.to(x.device) @ x.to(torch.float64).T

    return SampledRegressionPosterior(draw_fn, noise_var, w.shape[0])
