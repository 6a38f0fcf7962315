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
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from scipy.special import ndtr

from pyrozoo.active.base import EmbeddingKernel, PoolKernel, check_inputs, check_posterior_finite
from pyrozoo.active.projections import gaussian_expected_log_likelihood
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.result import Result
from pyrozoo.models.blr import PRIOR_DEFAULTS, BLRPosterior, blr_posterior, check_noise_prior, check_prior
from pyrozoo.validation import (
    as_tensor,
    check_choice,
    check_int,
    check_keys,
    check_nonnegative,
    check_positive,
    check_same_index,
    check_unique,
    check_xy,
    feature_names,
)

LOG_2PI_E = math.log(2 * math.pi * math.e)


def check_fit_data(x, y, *, binary: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The labelled set every ``fit`` takes, checked before any work: ``x`` (N, D) with N, D >= 1 and ``y`` (N,),
    array-like (tensors, NumPy arrays, lists), finite; ``binary``: labels in {0, 1}. Returns both as float64 tensors
    (a tensor keeps its device; float64 is what every fit computes in, so valid tensors give identical results),
    detached: data are values, so a tensor that requires grad neither keeps its graph in the fitted posterior nor
    gets gradients from a fit's optimizer. A DataFrame's string column names are read by :func:`fit_names` (the
    posterior's ``feature_names_in_``)."""
    x, y = check_xy(x, y, x_name="x", detach=True)
    if binary:
        bad = y[(y != 0) & (y != 1)]
        if bad.numel():
            shown = ", ".join(f"{v:g}" for v in bad.unique()[:5].tolist())
            raise PyrozooError(f"y: expected class labels 0 or 1, got {bad.numel()} other value(s) ({shown})")
    return x, y


def fit_names(x: Any) -> np.ndarray | None:
    """The string column names of a DataFrame ``x`` given to a ``fit`` (its ``feature_names_in_``), else None."""
    return feature_names(x, "x")


def check_names(names: Sequence[str] | None, input_dim: int | None) -> np.ndarray | None:
    """Feature names given to an adapter: None, or distinct strings, one per input column where ``input_dim`` is
    known; returned as an object array (``feature_names_in_``)."""
    if names is None:
        return None
    if isinstance(names, (str, bytes)) or not all(isinstance(c, str) for c in names):
        raise PyrozooError(f"feature_names: expected a list of column names (strings) or None, got {names!r}")
    names = list(names)
    check_unique("feature_names", names, what="column", quote=True)
    if input_dim is not None and len(names) != input_dim:
        raise PyrozooError(f"feature_names: expected {input_dim} names (one per input column), got {len(names)}")
    return np.asarray(names, dtype=object)


def targets(y: Any, rows: int, like: torch.Tensor) -> torch.Tensor:
    """Responses ``y`` for ``log_predictive_density`` as a tensor of ``like``'s dtype, detached (values, not a graph;
    a tensor keeps its device, an array or Series goes to ``like``'s device); raises unless there is one per input
    row (``rows``)."""
    y = as_tensor("y", y, dtype=like.dtype, device=None if isinstance(y, torch.Tensor) else like.device, detach=True)
    if tuple(y.shape) != (rows,):
        raise PyrozooError(f"y: expected shape ({rows},) (one value per row of x), got {tuple(y.shape)}")
    return y


def named(post: RegressionPosterior, names: np.ndarray | None) -> RegressionPosterior:
    """``post`` with ``feature_names_in_`` set to ``names`` (the fit's DataFrame columns, or None)."""
    post.feature_names_in_ = names
    return post


class RegressionPosterior(ABC):
    """A fitted posterior over regression functions with Gaussian observation noise.

    ``input_dim``: the number of input features the posterior expects (acquisitions check the pool against it), or
    None where unknown; ``max_function_draws``: the most distinct posterior draws ``function_draws`` can give (None:
    unlimited); ``closed_forms``: the ACS-FW inner products (``"fisher"``, ``"euclidean"``) that
    ``closed_form_kernel`` answers exactly (the others need random projections); ``feature_names_in_``: the string
    column names of the DataFrame it was fitted on (scikit-learn's convention), or None. A DataFrame pool or test
    set with those names is put in the fit's column order, one with missing or other columns is refused
    (:func:`~pyrozoo.active.base.check_inputs`); arrays and tensors are matched by position. The built-in adapters
    take tensors, arrays or DataFrames at every method; a tensor is used as it is (after a check of its width)."""

    input_dim: int | None = None
    feature_names_in_: np.ndarray | None = None
    max_function_draws: int | None = None
    closed_forms: tuple[str, ...] = ()

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
        """log p(y | x, D) pointwise (M,). The built-in adapters refuse pandas ``x`` and ``y`` with different
        indexes (:func:`~pyrozoo.validation.check_same_index`: rows are paired by position), as every fit does."""

    def expected_log_likelihood(self, x: torch.Tensor, num_samples: int,
                                generator: torch.Generator | None = None) -> torch.Tensor:
        """E_{y_n ~ p(y | x_n, D)}[log p(y_n | x_n, theta_j)] at ``num_samples`` posterior draws, (M, J)."""
        f, noise_var = self.function_draws(x, num_samples, generator)
        mean, var, _ = self.predictive(x)
        return gaussian_expected_log_likelihood(f, noise_var, mean, var)

    def closed_form_embedding(self, x: torch.Tensor, inner_product: str) -> torch.Tensor | None:
        """Rows phi_n with <L_n, L_m> = phi_n . phi_m exactly, or ``None`` where no closed form exists."""
        return None

    def closed_form_kernel(self, x: torch.Tensor, inner_product: str) -> PoolKernel | None:
        """The closed-form inner products as a :class:`~pyrozoo.active.base.PoolKernel` (default: from the
        embedding), or ``None``."""
        phi = self.closed_form_embedding(x, inner_product)
        return None if phi is None else EmbeddingKernel(phi)


class BLRPoolPosterior(RegressionPosterior):
    """Conjugate Bayesian linear regression (:mod:`pyrozoo.models.blr`), everything in closed form.

    Closed-form inner products of L_n(theta) = E_{y_n}[log p(y_n | x_n, theta)] + H[y_n | x_n, D], theta = (w, tau),
    under the Normal–Gamma posterior tau ~ Gamma(a, b), w | tau ~ N(mu, Lam^{-1} / tau) (tau fixed for known noise),
    Lam^{-1} = C C^T, u_n = C^T x_n, a_n = |u_n|^2:

    * weighted Fisher (gradients in w): grad_w L_n = -tau x_n x_n^T (w - mu), so
      <L_n, L_m>_F = E[tau] (x_n^T x_m)(x_n^T Lam^{-1} x_m) = phi_n . phi_m with tau_hat = E[tau | D] = a / b and
      phi_n = sqrt(tau_hat) x_n (x) C^T x_n  (a Kronecker product; D (D + 1) / 2 features after symmetrizing);
    * weighted Euclidean <L_n, L_m>_2 = E_theta[L_n L_m]. With z_n = sqrt(tau) x_n^T (w - mu), Gaussian with
      Cov(z_n, z_m) = u_n . u_m and independent of tau, and the predictive's variance v_n and entropy H_n,
      L_n = beta_n(tau) + (a_n - z_n^2) / 2 with beta_n(tau) = log(tau) / 2 - v_n tau / 2 + H_n - log(2 pi) / 2
      - a_n / 2, hence
      <L_n, L_m>_2 = e_n e_m + g_n^T S g_m + (u_n . u_m)^2 / 2,
      e_n = E[beta_n] = (digamma(a) - log b) / 2 - v_n a / (2 b) + H_n - log(2 pi) / 2 - a_n / 2,
      g_n = [1/2, -v_n / 2], S = Cov([log tau, tau]) = [[trigamma(a), 1 / b], [1 / b, a / b^2]].
      This integrates tau out exactly (what J random projections estimate); with known noise the tau terms vanish
      and it is e_n = 1/2 log(1 + a_n) - a_n (Gaussian predictive, v_n = (1 + a_n) / tau). The feature map is
      phi_n = [e_n, R g_n, vec(u_n u_n^T) / sqrt 2] with R^T R = S (3 + D (D + 1) / 2 features after symmetrizing;
      1 + D (D + 1) / 2 with known noise).

    Both maps make Frank–Wolfe O(pool x D^2) in memory and time instead of O(pool^2) for a Gram matrix.
    """

    closed_forms = ("fisher", "euclidean")

    def __init__(self, post: BLRPosterior) -> None:
        self.post = post

    @property
    def input_dim(self) -> int:
        return int(self.post.mean.shape[0])

    @classmethod
    def fit(cls, x: torch.Tensor, y: torch.Tensor, **prior: float) -> BLRPoolPosterior:
        """Closed-form posterior of ``y`` on the design ``x`` (see :func:`pyrozoo.models.blr.blr_posterior`);
        ``prior``: ``prior_scale``, ``a0``, ``b0`` (> 0), ``noise`` (>= 0); None is the default (as in
        :func:`~pyrozoo.models.blr.make_dataset`); ``a0``, ``b0``, the prior on the noise precision, are refused
        with ``noise > 0``, which fixes it: they would have no effect. Checked before any work
        (:func:`check_fit_data`)."""
        check_keys("prior", prior, PRIOR_DEFAULTS)
        prior = {k: v for k, v in prior.items() if v is not None}  # None: the default, as make_dataset reads it
        check_prior(**{**PRIOR_DEFAULTS, **prior})
        check_noise_prior(prior)
        names = fit_names(x)
        x, y = check_fit_data(x, y)
        return named(cls(blr_posterior(x, y, **prior)), names)

    def _x(self, x: Any) -> torch.Tensor:
        return check_inputs(self, x).to(dtype=self.post.mean.dtype, device=self.post.mean.device)

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
        return torch.full((self._x(x).shape[0],), h, dtype=self.post.mean.dtype, device=self.post.mean.device)

    def function_draws(self, x: torch.Tensor, num_samples: int,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.post.sample(num_samples, generator=generator)
        return s["w"] @ self._x(x).T, 1.0 / s["tau"]

    def log_predictive_density(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_same_index(x=x, y=y)  # rows are paired by position
        x = self._x(x)
        return self.post.predictive(x).log_prob(targets(y, x.shape[0], self.post.mean))

    def closed_form_embedding(self, x: torch.Tensor, inner_product: str) -> torch.Tensor | None:
        if inner_product not in ("fisher", "euclidean"):
            return None
        x = self._x(x)
        # Rotate to the eigenbasis of Lam^{-1} = V diag(lam) V^T: with xt = V^T x both products are sums over
        # pairs (i, j) of symmetric terms xt_i xt_j, so only the D (D + 1) / 2 pairs i <= j need a feature.
        lam, vecs = torch.linalg.eigh(self.post.cov_unit)
        lam = lam.clamp(min=0)
        xt = x @ vecs
        i, j = torch.triu_indices(x.shape[1], x.shape[1], device=x.device)
        off = (i != j).to(x.dtype)
        if inner_product == "fisher":
            # tau_hat (x_n . x_m)(x_n^T Lam^{-1} x_m) = tau_hat sum_{i,j} lam_j P_n,ij P_m,ij,  P = xt xt^T
            weight = torch.where(i == j, lam[i], lam[i] + lam[j]).sqrt() * math.sqrt(self.post.tau_hat)
            return xt[:, i] * xt[:, j] * weight
        ut = xt * lam.sqrt()  # u_n in the rotated basis: u_n . u_m = x_n^T Lam^{-1} x_m
        a = (ut * ut).sum(-1)
        e, g = _euclidean_noise_terms(self.post, x, a)
        # (u_n . u_m)^2 / 2 = sum_{i,j} (u_ni u_nj)(u_mi u_mj) / 2: weight 1/sqrt(2) on i = j, 1 on i < j
        weight = off + (1 - off) / math.sqrt(2)
        parts = [e[:, None]] + ([] if g is None else [g @ torch.linalg.cholesky(_log_tau_tau_cov(self.post))])
        return torch.cat([*parts, ut[:, i] * ut[:, j] * weight], dim=1)


    def closed_form_kernel(self, x: torch.Tensor, inner_product: str) -> PoolKernel | None:
        if inner_product not in ("fisher", "euclidean"):
            return None
        return _BLRKernel(self._x(x), self.post, inner_product)


def _log_tau_tau_cov(post: BLRPosterior) -> torch.Tensor:
    """Cov([log tau, tau]) under tau ~ Gamma(a, b) (rate b): [[trigamma(a), 1 / b], [1 / b, a / b^2]] (2, 2);
    positive definite (its determinant (a trigamma(a) - 1) / b^2 > 0 for every a > 0), so it has a Cholesky factor
    L: g_n^T Cov g_m = (g_n L) . (g_m L)."""
    a, b = post.a, post.b
    trigamma = float(torch.special.polygamma(1, torch.tensor(a, dtype=torch.float64)))
    return torch.tensor([[trigamma, 1 / b], [1 / b, a / b**2]], dtype=post.mean.dtype, device=post.mean.device)


def _euclidean_noise_terms(post: BLRPosterior, x: torch.Tensor,
                           quad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """e_n (M,) of the weighted Euclidean product (:class:`BLRPoolPosterior`) at the rows of ``x`` with
    quad_n = x_n^T Lam^{-1} x_n, and for unknown noise g_n = [1/2, -v_n / 2] (M, 2) (None for known noise):
    E[L_n L_m] = e_n e_m + g_n^T Cov([log tau, tau]) g_m + (x_n^T Lam^{-1} x_m)^2 / 2."""
    if post.known_noise:
        return 0.5 * torch.log1p(quad) - quad, None
    if post.a <= 1:  # E_y[log p(y | theta)] under a Student-t predictive with 2a <= 2 degrees of freedom is -inf
        raise PyrozooError(f"a0: the weighted Euclidean inner product with unknown noise needs a finite predictive "
                           f"variance, a posterior Gamma shape a = a0 + N / 2 > 1; got a = {post.a:g} (a larger a0 "
                           f"or more labels; or the Fisher form, acs-fw)")
    pred = post.predictive(x)
    v, h = pred.variance, pred.entropy()
    digamma = float(torch.special.digamma(torch.tensor(post.a, dtype=torch.float64)))
    e = (0.5 * (digamma - math.log(post.b)) - 0.5 * v * (post.a / post.b) + h - 0.5 * math.log(2 * math.pi)
         - 0.5 * quad)
    return e, torch.stack([torch.full_like(v, 0.5), -0.5 * v], dim=1)


class _BLRKernel(PoolKernel):
    """The BLR inner products in O(M D^2) once and O(M D) per column (the embedding route costs O(M D^2) per
    column): with A = Lam^{-1}, S = X^T X over the pool and U = X C (A = C C^T),

    * Fisher: K_nm = tau_hat (x_n . x_m)(x_n^T A x_m); row sums tau_hat x_n^T S A x_n;
    * Euclidean: K_nm = e_n e_m + g_n^T Cov([log tau, tau]) g_m + (u_n . u_m)^2 / 2 (the g term only for unknown
      noise; :class:`BLRPoolPosterior`); row sums e_n sum(e) + g_n^T Cov sum(g) + u_n^T (U^T U) u_n / 2.
    """

    def __init__(self, x: torch.Tensor, post: BLRPosterior, kind: str) -> None:
        cov_unit = post.cov_unit
        self.x, self.kind, self.tau = x, kind, post.tau_hat
        self.xa = x @ cov_unit  # rows A x_n
        self.quad = (self.xa * x).sum(1)  # x_n^T A x_n
        if kind == "euclidean":
            self.u = x @ torch.linalg.cholesky(cov_unit)
            self.e, g = _euclidean_noise_terms(post, x, self.quad)
            self.g = None if g is None else g @ torch.linalg.cholesky(_log_tau_tau_cov(post))  # g_n L: dot = g^T Cov g

    def diag(self) -> torch.Tensor:
        if self.kind == "fisher":
            return self.tau * (self.x * self.x).sum(1) * self.quad
        out = self.e**2 + 0.5 * self.quad**2
        return out if self.g is None else out + (self.g * self.g).sum(1)

    def row_sums(self) -> torch.Tensor:
        if self.kind == "fisher":
            return self.tau * ((self.x @ (self.x.T @ self.x)) * self.xa).sum(1)
        out = self.e * self.e.sum() + 0.5 * ((self.u @ (self.u.T @ self.u)) * self.u).sum(1)
        return out if self.g is None else out + self.g @ self.g.sum(0)

    def column(self, f: int) -> torch.Tensor:
        if self.kind == "fisher":
            xf = self.x[f]
            return torch.mv(self.x, xf).mul_(torch.mv(self.xa, xf)).mul_(self.tau)
        out = self.e * self.e[f] + 0.5 * (self.u @ self.u[f]) ** 2
        return out if self.g is None else out + self.g @ self.g[f]


class SampledRegressionPosterior(RegressionPosterior):
    """A posterior known only through S stored draws. ``draw_fn(x)`` gives either f_s(x) (S, M), with ``noise_var``
    the noise variance of each draw ((S,) or a scalar), or a pair (f_s(x), noise variance (S, M)) for
    heteroscedastic models (e.g. a BNN with a variance head; ``noise_var`` then unused).

    The predictive is the S-component Gaussian mixture; its mean and variance are exact, its entropy has no closed
    form and is replaced by that of the moment-matched Gaussian (an upper bound; exact when the mixture is Gaussian).
    """

    def __init__(self, draw_fn: Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
                 noise_var: torch.Tensor | float | None, num_draws: int, *, input_dim: int | None = None,
                 feature_names: Sequence[str] | None = None) -> None:
        if not callable(draw_fn):
            raise PyrozooError(f"draw_fn: expected a function of x, got {type(draw_fn).__name__}")
        self.draw_fn = draw_fn
        self.num_draws = check_int("num_draws", num_draws, minimum=1)
        self.input_dim = None if input_dim is None else check_int("input_dim", input_dim, minimum=1)
        self.feature_names_in_ = check_names(feature_names, self.input_dim)
        self.noise_var = None
        if noise_var is not None:
            nv = torch.as_tensor(noise_var)
            nv = nv.expand(self.num_draws) if nv.dim() == 0 else nv
            if nv.shape != (self.num_draws,):
                raise PyrozooError(f"noise_var: expected a positive scalar or {self.num_draws} positive values "
                                   f"(one per draw), got shape {tuple(nv.shape)}")
            bad = ~(torch.isfinite(nv) & (nv > 0))
            if bool(bad.any()):
                raise PyrozooError(f"noise_var: expected finite values > 0 (noise variances), got "
                                   f"{int(bad.sum())} that are not (first: {float(nv[bad][0]):g})")
            self.noise_var = nv

    @property
    def max_function_draws(self) -> int:
        return self.num_draws

    def _draws(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f (S, M) and noise variances (S, M) or (S, 1); raises unless draw_fn gave num_draws finite draws at the M
        inputs (and, for heteroscedastic models, finite noise variances > 0)."""
        x = check_inputs(self, x)
        out = self.draw_fn(x)
        f, nv = out if isinstance(out, tuple) else (out, None)
        want = (self.num_draws, x.shape[0])
        if not isinstance(f, torch.Tensor) or tuple(f.shape) != want:
            got = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise PyrozooError(f"draw_fn: expected function values of shape {want} (num_draws = {self.num_draws} "
                               f"draws at {x.shape[0]} inputs), got {got}")
        check_posterior_finite("function values from draw_fn", f)
        if nv is not None:
            if not isinstance(nv, torch.Tensor) or tuple(nv.shape) not in (want, (self.num_draws, 1)):
                got = tuple(nv.shape) if isinstance(nv, torch.Tensor) else type(nv).__name__
                raise PyrozooError(f"draw_fn: expected noise variances of shape {want} (or ({self.num_draws}, 1)) "
                                   f"with the function values, got {got}")
            bad = ~(torch.isfinite(nv) & (nv > 0))
            if bool(bad.any()):
                raise PyrozooError(f"draw_fn: expected finite noise variances > 0 with the function values, got "
                                   f"{int(bad.sum())} that are not (first: {float(nv[bad][0]):g})")
            return f, nv
        if self.noise_var is None:
            raise PyrozooError("noise_var: draw_fn returned only function values; give noise_var")
        return f, self.noise_var.to(dtype=f.dtype, device=f.device)[:, None]

    def predictive(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f, nv = self._draws(x)
        mean = f.mean(0)
        var = nv.mean(0).expand_as(mean) + f.var(0, unbiased=False)
        return mean, var, 0.5 * (LOG_2PI_E + var.log())

    def expected_noise_entropy(self, x: torch.Tensor) -> torch.Tensor:
        f, nv = self._draws(x)
        return (0.5 * (LOG_2PI_E + nv.log())).mean(0).expand(f.shape[1]).clone()

    def function_draws(self, x: torch.Tensor, num_samples: int,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if num_samples > self.num_draws:
            raise PyrozooError(f"num_projections: expected at most the {self.num_draws} stored posterior draws, "
                               f"got {num_samples}")
        f, nv = self._draws(x)
        gdev = generator.device if generator is not None else "cpu"
        idx = torch.randperm(self.num_draws, generator=generator, device=gdev)[:num_samples].to(f.device)
        nv = nv[idx]
        return f[idx], nv[:, 0] if nv.shape[1] == 1 else nv

    def log_predictive_density(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_same_index(x=x, y=y)  # rows are paired by position
        f, nv = self._draws(x)
        comp = torch.distributions.Normal(f, nv.sqrt()).log_prob(targets(y, f.shape[1], f))
        return torch.logsumexp(comp, 0) - math.log(self.num_draws)


def from_per_draw_moments(posterior: object, input_dim: int | None = None) -> SampledRegressionPosterior:
    """Adapter for any fitted posterior with ``per_draw_moments(x) -> (mean (S, M), variance (S, M))`` and
    ``num_draws`` (the zoo BNN's SWAG/VI/MAP posteriors): per-draw Gaussian predictives, heteroscedastic noise.
    ``input_dim``: the number of input features, so that an acquisition checks ``x_pool``'s width before calling the
    posterior; None takes it from the posterior (the zoo BNN's network input width ``layout.in_dim``, else its
    ``input_dim``, else the number of its ``feature_names``), and stays unknown if it has none of them."""
    if not hasattr(posterior, "per_draw_moments") or not hasattr(posterior, "num_draws"):
        raise PyrozooError(f"posterior: expected an object with per_draw_moments and num_draws, "
                           f"got {type(posterior).__name__}")
    names = getattr(posterior, "feature_names", None)  # the zoo BNN's: a training DataFrame's column names
    if input_dim is None:
        layout = getattr(posterior, "layout", None)
        input_dim = getattr(layout, "in_dim", None) or getattr(posterior, "input_dim", None)
        if input_dim is None and names is not None:
            input_dim = len(names)

    def draw_fn(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m, v = posterior.per_draw_moments(x)
        return m.to(torch.float64), v.to(torch.float64)

    return SampledRegressionPosterior(draw_fn, None, int(posterior.num_draws), input_dim=input_dim,
                                      feature_names=names)


def blr_from_result(result: Result, noise: float | None = None) -> SampledRegressionPosterior:
    """Adapter for any fitted ``blr`` run (``exact`` or ``nuts``): its stored draws of w and of the noise precision
    tau, or, for a known-noise run (blr's option ``noise`` > 0: no tau site), the noise sd that the run records in
    ``result.config["options"]["noise"]``.

    ``noise``: None (default) takes the run's own noise model. A value means what blr's option means (0: unknown
    noise, the run has a tau site; > 0: the known sd, in y's own units) and must agree with the run: a conflicting
    value (a known sd for a run with tau draws, or one that differs from the sd the run records) is refused, not
    used. A known-noise run that records no sd (a ``Result`` built by hand) needs ``noise`` > 0. The adapter works
    in the units of the run's model, like its draws of w: where the run standardized y (``result.attrs``'
    ``response_scale`` s: shipped data, ``--data``) the noise sd it uses is noise / s. Checked before any work."""
    if noise is not None:
        check_nonnegative("noise", noise)
        noise = float(noise)
    if "tau" in result.posterior:
        if noise:
            raise PyrozooError(f"noise: expected None or 0 (this blr run has unknown noise: it has draws of the noise "
                               f"precision tau), got {noise!r}")
        noise_var = None
    else:
        recorded = ((result.config or {}).get("options") or {}).get("noise")
        recorded = float(recorded) if recorded is not None and float(recorded) > 0 else None
        if recorded is not None and noise is not None and not math.isclose(noise, recorded, rel_tol=1e-12):
            raise PyrozooError(f"noise: expected the run's own noise sd {recorded!r} (its config's noise option; or "
                               f"leave noise unset), got {noise!r}")
        sd = recorded if recorded is not None else noise
        if not sd:
            raise PyrozooError(f"noise: this blr run has no tau site (known noise) and records no noise sd in its "
                               f"config; expected its noise sd (> 0), got {noise!r}")
        # blr's noise option is in y's own units; the draws of w (and so this adapter) are in the model's
        scale = float(result.attrs.get("response_scale", 1.0))
        noise_var = torch.tensor((sd / scale) ** 2, dtype=torch.float64)
    w = torch.as_tensor(result.draws("w"), dtype=torch.float64)
    if noise_var is None:
        noise_var = 1.0 / torch.as_tensor(result.draws("tau"), dtype=torch.float64)

    def draw_fn(x: torch.Tensor) -> torch.Tensor:
        return w.to(x.device) @ x.to(torch.float64).T

    return SampledRegressionPosterior(draw_fn, noise_var, w.shape[0], input_dim=w.shape[1])


def bivariate_normal_cdf(h: torch.Tensor, k: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """P(Z1 <= h, Z2 <= k) for standard normals with correlation ``rho`` (|rho| <= 1; the limits +-1 give
    Phi(min(h, k)) and max(Phi(h) + Phi(k) - 1, 0); up to 4 ulps past +-1 count as +-1; a NaN or |rho| beyond that
    is a :class:`PyrozooError`, checked once per call on the host copy the evaluation makes anyway), elementwise, via
    Owen's T:

        Phi2(h, k; rho) = (Phi(h) + Phi(k)) / 2 - T(h, a_h) - T(k, a_k) - [1/2 if h k < 0 (or = 0 with h + k < 0)]
        a_h = (k - rho h) / (h sqrt(1 - rho^2)),  a_k = (h - rho k) / (k sqrt(1 - rho^2)).

    torch has no Owen's T, so this one evaluation goes through SciPy (float64, vectorized, on the host)."""
    from scipy.special import owens_t

    dev = h.device
    # a correlation computed as cov / sqrt(v1 v2) lands a rounding step past +-1: up to 4 ulps of rho's own dtype
    # count as +-1 (clipped); beyond that (rho = 1.5 returned 1.0) and NaN (returned NaN) are refused
    floating = isinstance(rho, torch.Tensor) and rho.is_floating_point()
    slack = 4 * torch.finfo(rho.dtype if floating else torch.float64).eps
    h, k, rho = (t.detach().cpu().double().numpy() for t in torch.broadcast_tensors(h, k, rho))
    bad = ~(np.abs(rho) <= 1 + slack)
    if bad.any():
        raise PyrozooError(f"rho: expected correlations in [-1, 1], got {float(rho[bad].flat[0])!r} "
                           f"({int(bad.sum())} of {rho.size} outside)")
    rho = np.clip(rho, -1.0, 1.0)
    tiny = 1e-12
    h = np.where(np.abs(h) < tiny, tiny, h)
    k = np.where(np.abs(k) < tiny, tiny, k)
    root = np.sqrt(np.clip(1 - rho**2, 1e-300, None))
    beta = np.where(h * k < 0, 0.5, 0.0)
    out = 0.5 * (ndtr(h) + ndtr(k)) - owens_t(h, (k - rho * h) / (h * root)) - owens_t(k, (h - rho * k) / (k * root))
    return torch.from_numpy(np.asarray(out - beta, dtype=np.float64)).to(dev)


def indicator_cov(h: torch.Tensor, k: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """Cov(1{Z1 <= h}, 1{Z2 <= k}) = Phi2(h, k; rho) - Phi(h) Phi(k) for standard normals with correlation
    ``rho``, elementwise, computed in the lower tail. Reflecting Z1 -> -Z1 (or Z2) flips the sign of the covariance
    and of rho, and Phi2(h, k; rho) - Phi(h) Phi(k) = Phi2(-h, -k; rho) - Phi(-h) Phi(-k) (both reflected), so with
    s = -1 where exactly one of h, k is > 0 (else 1)

        Cov = s [Phi2(-|h|, -|k|; s rho) - Phi(-|h|) Phi(-|k|)],

    a difference of two small numbers where the upper-tail form took that of two numbers near 1: at h = k = 7 it
    kept 4 digits (relative error 2.4e-4 against the exact Plackett integral, int_0^rho phi2(h, k; t) dt)."""
    h, k, rho = torch.broadcast_tensors(h, k, rho)
    sign = torch.where((h > 0) ^ (k > 0), -1.0, 1.0).to(rho.dtype)
    hl, kl = -h.abs(), -k.abs()
    return sign * (bivariate_normal_cdf(hl, kl, sign * rho).to(rho.dtype)
                   - torch.special.ndtr(hl) * torch.special.ndtr(kl))


_HERMITE_NODES, _HERMITE_WEIGHTS = np.polynomial.hermite_e.hermegauss(32)
_HERMITE_LOG_WEIGHTS = np.log(_HERMITE_WEIGHTS / _HERMITE_WEIGHTS.sum())


def probit_expected_entropy(m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """E_{z ~ N(m, s)} H(Phi(z)) elementwise, H(p) = -p log p - (1 - p) log(1 - p) the binary entropy (nats), for
    any mean m and variance s >= 0, in m's dtype and on its device.

    H(Phi(z)) is a bump about 2 wide at z = 0, while N(z; m, s) may be far wider (or narrower, or elsewhere), so
    quadrature in the standardized variable (z - m) / sqrt(s) fails once sqrt(s) >~ 4: its nodes straddle the bump.
    Instead factor out the bump's Gaussian tail. With g(z) = H(Phi(z)) / phi(z) and the product of Gaussians
    phi(z) N(z; m, s) = N(m; 0, 1 + s) N(z; c, tau^2),

        E[H] = N(m; 0, 1 + s) E_{z ~ N(c, tau^2)} g(z),   c = m / (1 + s),   tau^2 = s / (1 + s) < 1,

    exactly. g is smooth and slowly varying (g(0) = sqrt(2 pi) log 2, g(z) ~ |z| / 2 as |z| -> oo since
    H(Phi(z)) ~ phi(z) |z| / 2), analytic in the strip |Im z| < 2.8 (its nearest singularities are the complex zeros
    of Phi(z) and 1 - Phi(z), at z = +-1.92 +- 2.82i), and the Gaussian it is averaged over has sd tau < 1 whatever
    (m, s); so 32-node Gauss-Hermite in (z - c) / tau converges geometrically and uniformly in (m, s): relative error
    < 1e-12 against adaptive quadrature for m in {-5, 0, 1, 3, 10}, s from 1e-6 to 1e6 (the old rule, Gauss-Hermite
    in (z - m) / sqrt(s), was 3 % low at s = 16 and gave 0 instead of 0.036 at s = 400;
    ``benchmarks/probit_expected_entropy.py``). s = 0 gives H(Phi(m)) exactly.
    g is evaluated in logs via |z| (H(Phi(z)) is even): with lq = log Phi(-|z|), q = e^lq,

        log g = lq + log(-lq - (1 - q) log(1 - q) / q) + z^2 / 2 + log(2 pi) / 2,

    and the sum taken with logsumexp, so nothing under- or overflows where the answer is representable."""
    s = s.clamp(min=0.0)
    nodes = torch.as_tensor(_HERMITE_NODES, dtype=m.dtype, device=m.device)
    log_w = torch.as_tensor(_HERMITE_LOG_WEIGHTS, dtype=m.dtype, device=m.device)
    c, tau = m / (1 + s), (s / (1 + s)).sqrt()
    # a node beyond |z| = 1e3 has |c| > 1e3 - 11, where N(m; 0, 1 + s) <= exp(-c^2 / 2) underflows: the clamp only
    # keeps log_g finite there (log Phi(-|z|) + z^2 / 2 would cancel to garbage, or inf - inf, far out)
    z = (c[..., None] + tau[..., None] * nodes).abs().clamp(max=1e3)
    lq = torch.special.log_ndtr(-z)
    q = lq.exp()
    ratio = torch.where(q > 1e-8, -torch.log1p(-q) / q.clamp(min=1e-8), 1 + q / 2)  # -log(1 - q) / q
    log_g = lq + torch.log(-lq + (1 - q) * ratio) + 0.5 * z**2 + 0.5 * math.log(2 * math.pi)
    log_norm = -0.5 * m * c - 0.5 * torch.log(2 * math.pi * (1 + s))  # log N(m; 0, 1 + s)
    return (log_norm + torch.logsumexp(log_g + log_w, dim=-1)).exp()


class ProbitPoolPosterior(RegressionPosterior):
    """Bayesian probit classification p(y = 1 | x, w) = Phi(x^T w), w ~ N(0, prior_scale^2 I), with the Laplace
    (Gaussian) approximation N(mu, Sigma) of the posterior (Newton's method on the log posterior).

    Writing s_n = x_n^T Sigma x_n, zeta_n = x_n^T mu / sqrt(1 + s_n), the predictive is p_n = Phi(zeta_n) exactly
    under N(mu, Sigma). ``predictive`` returns (p_n, p_n (1 - p_n), Bernoulli entropy); BALD's E_w H[y | x, w] is
    E H(Phi(z)) over z = x^T w ~ N(x^T mu, s_n), by quadrature accurate for any s_n (:func:`probit_expected_entropy`).

    Closed-form weighted Fisher inner product: with the GLM score E_y[d/dw log p(y | x, w)] = (p_n - Phi(x_n^T w)) x_n
    (exact for canonical links; for the probit link it drops the weight phi / (Phi (1 - Phi))),

        <L_n, L_m>_F = (x_n . x_m) (E[Phi(z_n) Phi(z_m)] - p_n p_m)
                     = (x_n . x_m) (Phi2(zeta_n, zeta_m; rho_nm) - p_n p_m),
        rho_nm = x_n^T Sigma x_m / sqrt((1 + s_n)(1 + s_m)),

    since Phi(z) = P(e <= z) for an independent standard normal e. This needs all M^2 pairs for the row sums
    (O(M^2) time, O(M) memory per row block); use projections for large pools.
    """

    closed_forms = ("fisher",)

    likelihood = "bernoulli"

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor) -> None:
        self.mean, self.cov = mean, cov

    @property
    def input_dim(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def fit(cls, x: torch.Tensor, y: torch.Tensor, *, prior_scale: float = 1.0, iters: int = 50) -> ProbitPoolPosterior:
        """Laplace approximation at the MAP (Newton iterations with the exact Hessian, float64). ``y``: labels 0/1;
        ``prior_scale`` > 0; ``iters`` >= 1. Checked before any work (:func:`check_fit_data`)."""
        check_positive("prior_scale", prior_scale)
        iters = check_int("iters", iters, minimum=1)
        names = fit_names(x)
        x, y = check_fit_data(x, y, binary=True)
        x64, q = x, 2 * y - 1  # q = +-1
        d = x64.shape[1]
        w = torch.zeros(d, dtype=torch.float64, device=x.device)
        prec0 = torch.eye(d, dtype=torch.float64, device=x.device) / prior_scale**2
        for _ in range(iters):
            u = q * (x64 @ w)
            lam = torch.exp(-0.5 * u**2 - 0.5 * math.log(2 * math.pi) - torch.special.log_ndtr(u))  # phi / Phi
            grad = x64.T @ (q * lam) - prec0 @ w
            hess = (x64.T * (lam * (lam + u))) @ x64 + prec0
            step = torch.linalg.solve(hess, grad)
            w = w + step
            if float(step.abs().max()) < 1e-10:
                break
        u = q * (x64 @ w)
        lam = torch.exp(-0.5 * u**2 - 0.5 * math.log(2 * math.pi) - torch.special.log_ndtr(u))
        hess = (x64.T * (lam * (lam + u))) @ x64 + prec0
        cov = torch.linalg.inv(hess)
        return named(cls(w, 0.5 * (cov + cov.T)), names)

    def _x(self, x: Any) -> torch.Tensor:
        return check_inputs(self, x).to(self.mean.dtype)

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._x(x)
        return x @ self.mean, ((x @ self.cov) * x).sum(1)

    def predictive(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m, s = self._stats(x)
        zeta = m / (1 + s).sqrt()
        lp, lq = torch.special.log_ndtr(zeta), torch.special.log_ndtr(-zeta)
        p = lp.exp()
        return p, p * (1 - p), -(p * lp + (1 - p) * lq)

    def expected_noise_entropy(self, x: torch.Tensor) -> torch.Tensor:
        """E_w H[y | x_n, w] = E_{z ~ N(m_n, s_n)} H(Phi(z)) (M,), by :func:`probit_expected_entropy`."""
        return probit_expected_entropy(*self._stats(x))

    def function_draws(self, x: torch.Tensor, num_samples: int,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draws of the latent z = x^T w (J, M); the second output (a unit 'noise') is unused for probit."""
        chol = torch.linalg.cholesky(self.cov)
        gdev = generator.device if generator is not None else self.mean.device
        eps = torch.randn(num_samples, self.mean.shape[0], generator=generator, dtype=self.mean.dtype,
                          device=gdev).to(self.mean.device)
        w = self.mean + eps @ chol.T
        return w @ self._x(x).T, torch.ones(num_samples, dtype=self.mean.dtype, device=self.mean.device)

    def expected_log_likelihood(self, x: torch.Tensor, num_samples: int,
                                generator: torch.Generator | None = None) -> torch.Tensor:
        z = self.function_draws(x, num_samples, generator)[0].T  # (M, J)
        p = self.predictive(x)[0][:, None]
        return p * torch.special.log_ndtr(z) + (1 - p) * torch.special.log_ndtr(-z)

    def log_predictive_density(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_same_index(x=x, y=y)  # rows are paired by position
        m, s = self._stats(x)
        zeta = m / (1 + s).sqrt()
        return torch.special.log_ndtr((2 * targets(y, zeta.shape[0], zeta) - 1) * zeta)

    def closed_form_kernel(self, x: torch.Tensor, inner_product: str) -> PoolKernel | None:
        if inner_product != "fisher":
            return None
        return _ProbitFisherKernel(self._x(x), self)


class _ProbitFisherKernel(PoolKernel):
    """The probit closed form of :class:`ProbitPoolPosterior`; row sums in blocks of rows (O(M^2) pairs)."""

    BLOCK = 256

    def __init__(self, x: torch.Tensor, post: ProbitPoolPosterior) -> None:
        self.x = x
        m, s = post._stats(x)
        self.root = (1 + s).sqrt()
        self.zeta = m / self.root
        self.xs = x @ post.cov

    def _block(self, rows: slice | int) -> torch.Tensor:
        xr = self.x[rows].reshape(-1, self.x.shape[1])
        rho = (self.xs[rows].reshape(-1, self.x.shape[1]) @ self.x.T) / (self.root[rows].reshape(-1, 1) * self.root)
        rho = rho.clamp(-1 + 1e-12, 1 - 1e-12)
        cov_phi = indicator_cov(self.zeta[rows].reshape(-1, 1), self.zeta[None, :], rho)  # lower tail: no cancellation
        return (xr @ self.x.T) * cov_phi

    def diag(self) -> torch.Tensor:
        rho = (((self.xs * self.x).sum(1)) / self.root**2).clamp(-1 + 1e-12, 1 - 1e-12)
        return (self.x * self.x).sum(1) * indicator_cov(self.zeta, self.zeta, rho)

    def row_sums(self) -> torch.Tensor:
        m = self.x.shape[0]
        return torch.cat([self._block(slice(i, min(i + self.BLOCK, m))).sum(1) for i in range(0, m, self.BLOCK)])

    def column(self, f: int) -> torch.Tensor:
        return self._block(f)[0]


class GPPoolPosterior(RegressionPosterior):
    """Exact GP regression (:mod:`pyrozoo.models.gp`): hyperparameters by type-II maximum likelihood on the labelled
    set, then the closed-form posterior of f with Gaussian noise sigma^2.

    With C the posterior covariance of f over the pool and a_n = C_nn / sigma^2, L_n(f) = 1/2 log(1 + a_n) - a_n / 2
    - (f_n - m_n)^2 / (2 sigma^2), so the weighted Euclidean inner product is closed form,

        <L_n, L_m>_2 = e_n e_m + C_nm^2 / (2 sigma^4),   e_n = 1/2 log(1 + a_n) - a_n,

    a column costs O(M N) (N labelled points); the row sums need every C_nm (O(M^2 N) time, computed in row blocks,
    O(M x block) memory). The weighted Fisher product in function space is diagonal (each L_n depends on f_n only),
    so it is not offered. ``function_draws`` samples f jointly over the pool (O(M^2) memory; for projections on
    moderate pools only)."""

    closed_forms = ("euclidean",)

    BLOCK = 512
    joint_function_draws = True  # f is drawn jointly over the inputs: projections must not chunk the pool

    @property
    def input_dim(self) -> int:
        return int(self.x.shape[1])

    def __init__(self, x: torch.Tensor, y: torch.Tensor, hyper: dict[str, torch.Tensor], kernel: str) -> None:
        from pyrozoo.models.gp import exact_gp_factor

        self.x, self.y, self.hyper, self.kernel = x.to(torch.float64), y.to(torch.float64), hyper, kernel
        self.chol, self.alpha = exact_gp_factor(self.x, self.y, kernel=kernel, **hyper)
        self.noise_var = float(hyper["noise"])

    @classmethod
    def fit(cls, x: torch.Tensor, y: torch.Tensor, *, kernel: str = "rbf", steps: int = 150,
            lr: float = 0.05) -> GPPoolPosterior:
        """Type-II ML (Adam on the log marginal likelihood, :func:`pyrozoo.models.gp.fit_type2`) from unit
        lengthscale, signal variance 1 and noise variance 0.1 (inputs and response standardized). ``kernel``: one of
        :data:`pyrozoo.models.gp_linalg.KERNELS`; ``steps`` >= 0 Adam steps; ``lr`` > 0. Checked before any work
        (:func:`check_fit_data`)."""
        from pyrozoo.models.gp import fit_type2
        from pyrozoo.models.gp_linalg import KERNELS

        check_choice("kernel", kernel, KERNELS)
        names = fit_names(x)
        x64, y64 = check_fit_data(x, y)  # steps and lr: fit_type2 checks them before its first step
        fitted = fit_type2(x64, y64, kernel=kernel, lengthscale=1.0, variance=1.0, noise=0.1, steps=steps, lr=lr)
        # the noise the fitted marginal likelihood belongs to: the fitted noise plus any jitter K + noise I needed
        hyper = {"lengthscale": fitted["lengthscale"], "variance": fitted["variance"],
                 "noise": fitted["effective_noise"]}
        return named(cls(x64, y64, hyper, kernel), names)

    def _x(self, x: Any) -> torch.Tensor:
        return check_inputs(self, x).to(torch.float64)

    def _kern(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        from pyrozoo.models.gp_linalg import kernel_matrix

        return kernel_matrix(self.kernel, a, b, self.hyper["lengthscale"], self.hyper["variance"])

    def _solve(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean at x and V = L^{-1} K(X, x) (N, M)."""
        kfs = self._kern(self.x, x)
        return kfs.T @ self.alpha, torch.linalg.solve_triangular(self.chol, kfs, upper=False)

    def latent(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and variance of f at the rows of x."""
        x = self._x(x)
        mean, v = self._solve(x)
        var = (self.hyper["variance"] - (v * v).sum(0)).clamp(min=0.0)
        return mean, var

    def predictive(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, var = self.latent(x)
        var = var + self.noise_var
        return mean, var, 0.5 * (LOG_2PI_E + var.log())

    def expected_noise_entropy(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((self._x(x).shape[0],), 0.5 * (LOG_2PI_E + math.log(self.noise_var)), dtype=torch.float64,
                          device=self.x.device)

    def function_draws(self, x: torch.Tensor, num_samples: int,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        from pyrozoo.models.gp_linalg import jitter_cholesky

        x = self._x(x)
        mean, v = self._solve(x)
        cov = self._kern(x, x) - v.T @ v
        chol = jitter_cholesky(0.5 * (cov + cov.T), jitter=1e-10, max_tries=10, name="GP posterior over the pool")
        gdev = generator.device if generator is not None else x.device
        eps = torch.randn(num_samples, x.shape[0], generator=generator, dtype=torch.float64, device=gdev)
        f = mean + eps.to(x.device) @ chol.T
        return f, torch.full((num_samples,), self.noise_var, dtype=torch.float64, device=x.device)

    def log_predictive_density(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_same_index(x=x, y=y)  # rows are paired by position
        mean, var, _ = self.predictive(x)
        return torch.distributions.Normal(mean, var.sqrt()).log_prob(targets(y, mean.shape[0], mean))

    def closed_form_kernel(self, x: torch.Tensor, inner_product: str) -> PoolKernel | None:
        return _GPEuclideanKernel(self, self._x(x)) if inner_product == "euclidean" else None


class _GPEuclideanKernel(PoolKernel):
    def __init__(self, post: GPPoolPosterior, x: torch.Tensor) -> None:
        self.post, self.x = post, x
        _, self.v = post._solve(x)  # (N, M)
        a = (post.hyper["variance"] - (self.v * self.v).sum(0)).clamp(min=0.0) / post.noise_var
        self.a = a
        self.e = 0.5 * torch.log1p(a) - a
        self.scale = 0.5 / post.noise_var**2

    def _cov(self, rows: slice) -> torch.Tensor:
        return self.post._kern(self.x[rows], self.x) - self.v[:, rows].T @ self.v

    def diag(self) -> torch.Tensor:
        return self.e**2 + self.scale * (self.a * self.post.noise_var) ** 2

    def row_sums(self) -> torch.Tensor:
        m = self.x.shape[0]
        step = GPPoolPosterior.BLOCK
        quad = torch.cat([(self._cov(slice(i, min(i + step, m))) ** 2).sum(1) for i in range(0, m, step)])
        return self.e * self.e.sum() + self.scale * quad

    def column(self, f: int) -> torch.Tensor:
        return self.e * self.e[f] + self.scale * self._cov(slice(f, f + 1))[0] ** 2
