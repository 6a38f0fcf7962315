"""Spike-and-slab regression: the prior's hyperparameters and the standardized data every algorithm reads.

Prior (conjugate form, the default)::

    sigma^2 ~ InverseGamma(nu / 2, nu * lam / 2)
    theta   ~ Beta(a0, b0)
    gamma_d ~ Bernoulli(theta)                                 d = 1..p
    w_d | gamma_d, sigma^2 ~ N(0, sigma^2 * v_{gamma_d}),     v_0 = spike_var (small) < v_1 = slab_var (large)
    y_i | w, sigma^2 ~ N(x_i^T w, sigma^2)

The independent (non-conjugate) variant drops the sigma^2 factor from the prior of w: w_d ~ N(0, v_{gamma_d}).
All algorithms work on standardized columns of X (mean 0, sd 1) and centred y; the intercept is y's mean and
coefficients are mapped back to the original scale of X by the estimator.

Centring y is the intercept mu (flat prior, independent of sigma^2) integrated out: with the columns of X centred,
|y - mu 1 - X w|^2 = |y_c - X w|^2 + n (mean(y) - mu)^2, and the integral over mu leaves sigma^{-(n - 1)}
exp(-|y_c - X w|^2 / (2 sigma^2)): the centred y carry n - 1 degrees of freedom, not n
(:attr:`StandardizedData.dof`). Data whose y was not centred here (``centred=False``) keep n.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.device import resolve_device
from pyrozoo.validation import (
    as_tensor,
    check_bool,
    check_finite,
    check_float_dtype,
    check_pandas_numeric,
    check_positive,
    check_same_index,
    feature_names,
)


@dataclass(frozen=True)
class SpikeSlabPrior:
    """Hyperparameters: ``spike_var`` (v0) < ``slab_var`` (v1), Beta(``a0``, ``b0``) on theta, InverseGamma(nu/2,
    nu*lam/2) on sigma^2; ``conjugate`` (True or False, a NumPy bool too) scales the prior variance of w by sigma^2."""

    spike_var: float = 0.01
    slab_var: float = 10.0
    a0: float = 1.0
    b0: float = 1.0
    nu: float = 1.0
    lam: float = 1.0
    conjugate: bool = True

    def __post_init__(self) -> None:
        for name in ("spike_var", "slab_var", "a0", "b0", "nu", "lam"):
            check_positive(name, getattr(self, name))
        if not self.spike_var < self.slab_var:
            raise PyrozooError(
                f"spike_var: expected the spike variance to be smaller than the slab variance "
                f"(slab_var={self.slab_var!r}), got spike_var={self.spike_var!r}"
            )
        check_bool("conjugate", self.conjugate)  # a NumPy bool counts (a GridSearchCV grid of np.array([True, False]))
        object.__setattr__(self, "conjugate", bool(self.conjugate))  # stored as a Python bool (JSON, configs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def variances(self, gamma: torch.Tensor) -> torch.Tensor:
        """Prior variance factor v_{gamma_d} for 0/1 (or soft) ``gamma``: v0 + gamma (v1 - v0)."""
        return self.spike_var + gamma * (self.slab_var - self.spike_var)

    def log_odds_offset(self) -> float:
        """-0.5 log(v1 / v0): the Gaussian normalizers' part of log N(w; 0, s v1) - log N(w; 0, s v0)."""
        return -0.5 * math.log(self.slab_var / self.spike_var)


PRIOR_KEYS = tuple(f for f in SpikeSlabPrior.__dataclass_fields__)


@dataclass
class StandardizedData:
    """Standardized design ``X`` (n, p), centred ``y`` (n,), the column means/scales and y's mean, and the
    sufficient statistics ``XtX`` (when p <= n or small), ``Xty``, ``yty``. ``centred`` says whether y was centred
    here (:func:`standardize`), i.e. the intercept integrated out under a flat prior; it sets :attr:`dof`."""

    X: torch.Tensor
    y: torch.Tensor
    x_mean: torch.Tensor
    x_scale: torch.Tensor
    y_mean: float
    XtX: torch.Tensor
    Xty: torch.Tensor
    yty: torch.Tensor
    centred: bool = False

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    @property
    def dof(self) -> int:
        """The degrees of freedom y carries for sigma^2: n - 1 when y was centred (the flat-prior intercept
        integrated out), n when y is taken as given (no intercept). The exponent of sigma^2 in the likelihood."""
        return self.n - 1 if self.centred else self.n

    @property
    def p(self) -> int:
        return int(self.X.shape[1])


def _to_tensor(name: str, value: Any, dtype: torch.dtype, device: torch.device | None) -> torch.Tensor:
    t = as_tensor(name, value, dtype=dtype)
    check_finite(name, t)
    return t.to(device) if device is not None else t


# a column whose sd spans at most this many steps of its dtype's grid at its largest |x| (sd <= 100 eps max|x|,
# 2.2e-14 max|x| in float64) is constant up to rounding: standardizing it would divide rounding noise by its sd.
# Relative, so a column's units do not matter; 1e-10 max|x| (the earlier bound) also refused a millisecond
# timestamp 1.7e12 + 50 z, which float64 holds to 4e-6 of its spread
CONSTANT_STEPS = 100


def validate_xy(X: Any, y: Any, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None,
                constant_y: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Check X (n, p) with p >= 1, n >= 2, finite and no constant column (sd_j <= :data:`CONSTANT_STEPS` eps max_i
    |x_ij|, eps the dtype's machine epsilon, whatever the column's units), and y (n,) finite and, unless
    ``constant_y``, not constant (by the same criterion: there is nothing to fit, and sigma^2 came out at the floor
    the prior's lam sets, 5e-10); return tensors. pandas categorical and text columns are refused
    (:func:`~pyrozoo.validation.check_pandas_numeric`), and so are pandas X and y whose indexes differ
    (:func:`~pyrozoo.validation.check_same_index`: rows are paired by position). ``dtype``: torch.float32 or
    torch.float64."""
    check_float_dtype("dtype", dtype)
    if device is not None:  # "auto" and "gpu" reached torch; "cuda" without CUDA got torch's error
        device = resolve_device(device)
    check_pandas_numeric(X, y)
    check_same_index(X=X, y=y)
    names = feature_names(X)  # a DataFrame's columns name the constant ones below
    Xt = as_tensor("X", X, dtype=dtype, detach=True)  # data: a tensor that requires grad gives its values
    if Xt.dim() != 2:
        raise PyrozooError(f"X: expected a 2-D array (n, p), got shape {tuple(Xt.shape)}")
    n, p = Xt.shape
    if p == 0:
        raise PyrozooError("X: expected at least one column (p >= 1), got p = 0")
    if n < 2:
        raise PyrozooError(f"X: expected at least 2 rows, got {n}")
    check_finite("X", Xt, labels=X)
    yt = as_tensor("y", y, dtype=dtype, detach=True)
    if yt.dim() == 2 and yt.shape[1] == 1:
        yt = yt[:, 0]
    if yt.dim() != 1:
        raise PyrozooError(f"y: expected a 1-D array of length n = {n}, got shape {tuple(yt.shape)}")
    if yt.shape[0] != n:
        raise PyrozooError(f"y: expected length n = {n} (rows of X), got length {yt.shape[0]}")
    check_finite("y", yt, labels=y)
    # relative to the column's own magnitude, so a column in tiny units (1e-11 x) is not "constant"; an all-zero or
    # exactly constant column has sd 0, and one offset by 1e12 with spread 1e-3 is lost to rounding
    rtol = CONSTANT_STEPS * torch.finfo(Xt.dtype).eps
    if not constant_y and float(yt.std()) <= rtol * float(yt.abs().max()):
        exact = bool((yt == yt[0]).all())
        raise PyrozooError(f"y: expected an outcome that varies, got a constant ({float(yt[0])!r})"
                           f"{'' if exact else ' up to rounding'}; nothing to fit")
    sd = Xt.std(dim=0)
    top = Xt.abs().amax(dim=0)
    const_at = (sd <= rtol * top).nonzero().flatten().tolist()
    if const_at:
        ratio = [float(sd[j] / top[j]) if top[j] > 0 else 0.0 for j in const_at]
        const = const_at if names is None else [str(names[j]) for j in const_at]
        more = " ..." if len(const) > 10 else ""
        dname = str(Xt.dtype).removeprefix("torch.")
        raise PyrozooError(
            f"X: column(s) {const[:10]}{more} are constant (sd / max|x| of the column "
            f"{', '.join(f'{r:.1e}' for r in ratio[:10])}{more}, at most {rtol:.1e} = {CONSTANT_STEPS} {dname} steps: "
            "constant up to rounding); remove them (the intercept is fitted separately)"
        )
    dev = torch.device(device) if device is not None else Xt.device
    return Xt.to(dev), yt.to(dev)


def standardize(X: Any, y: Any, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None,
                constant_y: bool = False) -> StandardizedData:
    """Validate (:func:`validate_xy`: a constant y is refused unless ``constant_y``), then centre and scale the
    columns of X (population sd) and centre y (``centred=True``: the samplers and the exact posterior then use
    n - 1 degrees of freedom for sigma^2, :attr:`StandardizedData.dof`)."""
    Xt, yt = validate_xy(X, y, dtype=dtype, device=device, constant_y=constant_y)
    x_mean = Xt.mean(dim=0)
    x_scale = Xt.std(dim=0, unbiased=False)
    Xs = (Xt - x_mean) / x_scale
    y_mean = float(yt.mean())
    yc = yt - y_mean
    return StandardizedData(Xs, yc, x_mean, x_scale, y_mean, Xs.T @ Xs, Xs.T @ yc, yc @ yc, centred=True)


def as_prior(prior: SpikeSlabPrior | dict[str, Any] | None = None, **overrides: Any) -> SpikeSlabPrior:
    """A :class:`SpikeSlabPrior` from an instance, a dict of hyperparameters, or keyword overrides."""
    if isinstance(prior, SpikeSlabPrior):
        base = prior.to_dict()
    else:
        base = dict(prior or {})
    base.update(overrides)
    unknown = sorted(set(base) - set(PRIOR_KEYS))
    if unknown:
        raise PyrozooError(f"prior: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(PRIOR_KEYS)}")
    return SpikeSlabPrior(**base)


def numpy_out(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()
