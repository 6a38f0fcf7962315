"""Bayesian neural network for heteroscedastic regression, with SWAG, collapsed (CIBER), VI and MAP posteriors.

Model (inputs and target standardized): weights theta ~ N(0, prior_scale^2 I); an MLP with ``depth`` hidden ReLU
layers of ``hidden`` units and two outputs (mean f(x), log-variance g(x)); y_i ~ N(f(x_i), exp(g(x_i))).

Posteriors (``inference`` of the zoo entry, ``posterior`` of :func:`fit_bnn`):

* ``map``: SGD on the negative log posterior (one draw);
* ``swag-diag`` / ``swag``: SWAG on the SGD iterates (:mod:`pyrozoo.inference.swag`), S Monte Carlo draws;
  test likelihood moment-matched Gaussian as in Izmailov et al. (2020);
* ``ciber``: collapsed BMA (Zeng & Van den Broeck): k <= 12 mean-head weights w_c (those with the largest SWAG
  variance) are integrated out exactly under a uniform box conditional q(w_c | w_s) with the Gaussian conditional's
  mean and variance (+-sqrt(3) sd) and a triangular likelihood (:mod:`pyrozoo.guides.collapsed`); the rest w_s are
  SWAG draws;
* ``collapsed-gaussian``: the whole mean head integrated out under the SWAG Gaussian conditional with a Gaussian
  likelihood (closed form);
* ``vi``: mean-field Gaussian VI (Pyro ``AutoNormal``), started at the MAP weights.

:class:`BNNPosterior` is the fitted posterior: ``predictive_moments(X)``, ``sample_predictive(X, S)``,
``sample_per_draw(X)``, ``log_predictive_density(X, y)`` on new inputs, in the units the data came in. With
``val_fraction`` > 0 the noise scale tau (sigma(x) -> tau sigma(x)) and CIBER's defensive weight and box scale (and,
opt-in, the tail weight of our triangle-mixture likelihood) are chosen on held-out rows (:func:`calibrate_noise`).
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoNormal, init_to_value
from pyro.nn import PyroModule, PyroSample

from pyrozoo.config import RunConfig
from pyrozoo.data.dataset import Dataset
from pyrozoo.data.regression_file import FILE_OPTIONS, read_regression_file
from pyrozoo.data.uci import (
    TRAIN_ROWS,
    RegressionSplit,
    check_regression_data,
    check_varies,
    min_split_rows,
    n_test_rows,
    split_regression,
    uci_split,
)
from pyrozoo.errors import PyrozooError
from pyrozoo.guides.collapsed import (
    MAX_COLLAPSED,
    TAIL_WIDTH,
    ciber_density,
    ciber_moments,
    ciber_sample,
    conditional_gaussian,
    gaussian_collapsed_moments,
)
from pyrozoo.guides.swag import SWAGGuide, unflatten_sites
from pyrozoo.inference.assemble import assemble_result
from pyrozoo.inference.device import keeps_caller_state, resolve_device, set_seed
from pyrozoo.inference.predictive import align_global_draws
from pyrozoo.inference.result import Result, response_map
from pyrozoo.inference.svi import run_svi
from pyrozoo.inference.swag import SWAGPosterior, SWAGRun, run_swag
from pyrozoo.registry import SVI_SETTINGS, ZooModel, checked_config, no_effect_error, or_join, register
from pyrozoo.validation import (
    as_tensor,
    check_bool,
    check_choice,
    check_feature_names,
    check_finite,
    check_float_dtype,
    check_int,
    check_interval,
    check_keys,
    check_positive,
    check_prior_range,
    check_probability,
    check_same_index,
    check_seed,
    check_shape,
    feature_names,
    is_dataframe,
)

POSTERIORS = ("swag", "swag-diag", "ciber", "collapsed-gaussian", "vi", "map")
LOG_VAR_RANGE = (-12.0, 8.0)  # clamp of the log-variance head (standardized units), for numerical safety only

DEFAULT_OPTIONS: dict[str, Any] = {
    "hidden": 50, "depth": 1, "prior_scale": 1.0,  # architecture and prior
    "swa_epochs": 100, "batch_size": 32, "swa_lr": 0.005, "momentum": 0.9, "rank": 20, "scale": 0.5,  # SWAG
    "num_collapsed": 10, "defensive_weight": 1e-6,  # CIBER
    "val_fraction": 0.0,  # > 0: hold out rows to choose the noise scale (and CIBER's defensive weight)
    "split": 0, "test_fraction": 0.1, "n": 300,  # data: UCI (or data file) split number; simulator size
    **FILE_OPTIONS,  # a data file's outcome and feature columns (--data)
}


# the options only some posteriors read (the others: architecture, prior, SGD/SWA schedule, data and val_fraction,
# whose noise-scale calibration applies to every posterior, are read by all)
BNN_INFERENCE_OPTIONS = {
    "rank": ("swag", "ciber", "collapsed-gaussian"),  # the low-rank part of the SWAG Gaussian (not swag-diag's)
    "scale": ("swag", "swag-diag", "ciber", "collapsed-gaussian"),  # SWAG's covariance scale
    "num_collapsed": ("ciber",),  # collapsed-gaussian integrates the whole mean head out
    "defensive_weight": ("ciber",),  # the only non-Gaussian per-draw likelihood
}


# --------------------------------------------------------------------------------------------------- network
@dataclass(frozen=True)
class MLPLayout:
    """Weight sites of the MLP, in the order the flat parameter vector concatenates them."""

    in_dim: int
    hidden: int = 50
    depth: int = 1

    @property
    def sites(self) -> dict[str, tuple[int, ...]]:
        out, prev = {}, self.in_dim
        for i in range(self.depth):
            out[f"w{i}"], out[f"b{i}"] = (self.hidden, prev), (self.hidden,)
            prev = self.hidden
        out["w_out"], out["b_out"] = (2, prev), (2,)
        return out

    @property
    def num_params(self) -> int:
        return sum(math.prod(s) for s in self.sites.values())

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        return unflatten_sites(theta, self.sites)

    def flatten(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        batch = params["b_out"].shape[:-1]
        return torch.cat([params[n].reshape(*batch, -1) for n in self.sites], dim=-1)

    def mean_head_index(self) -> torch.Tensor:
        """Flat indices of the mean head's weights (w_out[0, :]) and bias (b_out[0]), in feature order."""
        start = self.num_params - 2 * self.hidden - 2 if self.depth > 0 else self.num_params - 2 * self.in_dim - 2
        width = self.hidden if self.depth > 0 else self.in_dim
        return torch.cat([torch.arange(start, start + width), torch.tensor([start + 2 * width])])


def mlp_features(params: dict[str, torch.Tensor], X: torch.Tensor, depth: int) -> torch.Tensor:
    """Last hidden layer activations, ``(..., n, H)`` for weights with leading batch dims ``...``."""
    h = X
    for i in range(depth):
        W, b = params[f"w{i}"], params[f"b{i}"]
        h = torch.relu(torch.einsum("...oi,...ni->...no", W, h) + b.unsqueeze(-2))
    if depth == 0:
        h = X.expand(*params["b_out"].shape[:-1], *X.shape)
    return h


def mlp_forward(params: dict[str, torch.Tensor], X: torch.Tensor, depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, log_variance), each ``(..., n)``."""
    h = mlp_features(params, X, depth)
    out = torch.einsum("...oi,...ni->...no", params["w_out"], h) + params["b_out"].unsqueeze(-2)
    return out[..., 0], out[..., 1].clamp(*LOG_VAR_RANGE)


class HeteroscedasticMLP(PyroModule):
    """The Pyro model as a ``PyroModule``: every weight a ``PyroSample`` with a N(0, prior_scale^2) prior."""

    def __init__(self, in_dim: int, hidden: int = 50, depth: int = 1, prior_scale: float = 1.0,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        check_float_dtype("dtype", dtype)
        device = resolve_device(device)  # "auto" and "gpu" reached torch; "cuda" without CUDA got torch's error
        self.layout = MLPLayout(in_dim, hidden, depth)
        for name, shape in self.layout.sites.items():
            zero = torch.zeros(shape, device=device, dtype=dtype)
            setattr(self, name, PyroSample(dist.Normal(zero, prior_scale).to_event(len(shape))))

    def forward(self, X: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """y ~ N(f(X), exp(g(X))) in the plate ``obs_id``; returns y (the observed ``y``, else a draw). Weight draws
        with batch dims (an outer vectorized plate, ``Predictive(parallel=True)``) give y of shape ``(S, n)``."""
        params = {name: align_global_draws(getattr(self, name), len(shape))
                  for name, shape in self.layout.sites.items()}
        mean, log_var = mlp_forward(params, X, self.layout.depth)
        with pyro.plate("obs_id", X.shape[-2], dim=-1):
            return pyro.sample("y", dist.Normal(mean, (0.5 * log_var).exp()), obs=y)


@lru_cache(maxsize=32)
def _network(in_dim: int, hidden: int, depth: int, prior_scale: float, device: str,
             dtype: torch.dtype) -> HeteroscedasticMLP:
    return HeteroscedasticMLP(in_dim, hidden, depth, prior_scale, device=device, dtype=dtype)


def bnn_model(X: torch.Tensor, y: torch.Tensor | None = None, *, hidden: int = 50, depth: int = 1,
              prior_scale: float = 1.0) -> torch.Tensor:
    """y ~ N(f(X), exp(g(X))) with Gaussian priors on the MLP weights; returns y: the observed ``y``, or with
    ``y=None`` a draw from the prior predictive (or, under a guide, the posterior predictive)."""
    net = _network(X.shape[-1], int(hidden), int(depth), float(prior_scale), str(X.device), X.dtype)
    return net(X, y)


# --------------------------------------------------------------------------------------------------- posterior
@dataclass
class BNNPosterior:
    """A fitted BNN posterior: ``draws`` (S, P) of the flat weights (model units) and, for the collapsed kinds, the
    conditional over the collapsed mean-head weights. Inputs/outputs of the public methods are in the data's units
    (``x_mean``/``x_std``/``y_mean``/``y_std`` undo the standardization done by :func:`fit_bnn`)."""

    kind: str
    layout: MLPLayout
    draws: torch.Tensor
    swag: SWAGPosterior | None = None
    collapsed: torch.Tensor | None = None  # flat indices of w_c
    cond_mean: torch.Tensor | None = None  # (S, k)
    cond_cov: torch.Tensor | None = None  # (k, k)
    x_mean: torch.Tensor | float = 0.0
    x_std: torch.Tensor | float = 1.0
    y_mean: float = 0.0
    y_std: float = 1.0
    guide: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
    noise_scale: float = 1.0  # tau: sigma(x) -> tau sigma(x) in every likelihood (chosen on validation data)
    defensive_weight: float = 0.0  # lambda: ciber's per-draw density mixed with lambda of its moment-matched Gaussian
    box_scale: float = 1.0  # ciber: box half-widths box_scale * sqrt(3) sd (1: the conditional's variances)
    tail_weight: float = 0.0  # ciber: rho of the wide triangle (our triangle-mixture variant; 0: the paper's triangle)
    feature_names: list[str] | None = None  # a training DataFrame's string column names: new DataFrames must match
    # a zoo run's posterior (result.guide) works in model units, the dataset's standardized X and y; these are the
    # training part's moments that standardized them (x_mean, x_std: float64 tensors; y_mean, y_std), which
    # in_data_units applies. Set, a DataFrame X (the file's raw rows by name) is refused: it would be read as
    # standardized values
    data_scaling: dict[str, Any] | None = None

    @property
    def num_draws(self) -> int:
        return self.draws.shape[0]

    def weight_draws(self) -> torch.Tensor:
        """``(S, P)`` draws of all weights from the posterior the predictive uses. ``draws`` holds w_c drawn from the
        box at ``box_scale`` 1 (the predictive itself only uses the conditional's mean and box); for ``ciber`` they
        are stretched here to the box at ``box_scale``."""
        if self.kind != "ciber" or self.box_scale == 1.0:
            return self.draws
        draws = self.draws.clone()
        mu = self.cond_mean.to(draws.dtype)
        draws[:, self.collapsed] = mu + (draws[:, self.collapsed] - mu) * self.box_scale
        return draws

    def in_data_units(self) -> BNNPosterior:
        """This posterior reading inputs and giving outputs in the data's own units: for a zoo run's posterior
        (model units, :attr:`data_scaling` set) a copy (sharing the draws) that standardizes a new X with the
        training part's moments, x_s = (x - x_mean) / x_std (in float64), and maps y back, y = y_mean + y_std y_s,
        as :func:`fit_bnn`'s own posterior does; so ``in_data_units().predictive_moments(df[features])`` predicts the
        file's raw rows in y's units. A posterior already in the data's units (:func:`fit_bnn`'s) is returned as
        it is."""
        if self.data_scaling is None:
            return self
        moments = self.data_scaling
        return replace(self, x_mean=moments["x_mean"], x_std=moments["x_std"], y_mean=float(moments["y_mean"]),
                       y_std=float(moments["y_std"]), data_scaling=None)

    def _prep(self, X: Any, name: str = "X") -> torch.Tensor:
        check_feature_names(X, self.feature_names, name=name)  # a DataFrame's columns in another order: misread
        if self.data_scaling is not None and is_dataframe(X):
            raise PyrozooError(
                f"{name}: expected inputs in model units (standardized with the training part's moments, "
                f"(x - x_mean) / x_std) for a zoo run's posterior, got a DataFrame, which would be read as "
                f"standardized values; for the file's raw rows by column name use result.guide.in_data_units() "
                f"(it standardizes them and predicts in y's units), or pass the standardized values as an array "
                f"(x_mean, x_std: dataset.meta['x_mean'], ['x_std'], or idata.attrs['input_shift'], "
                f"['input_scale'])")
        # (X - x_mean) / x_std in float64, then cast: in float32 an input near 1e6 keeps steps of 0.06 only
        # tensors, arrays, DataFrames; detached: predictions are values, not a graph through the inputs
        X = as_tensor(name, X, dtype=torch.float64, device=self.draws.device, detach=True)
        if X.dim() != 2 or X.shape[1] != self.layout.in_dim:
            raise PyrozooError(f"{name}: expected shape (n, {self.layout.in_dim}), got {tuple(X.shape)}")
        check_finite(name, X)
        return ((X - self.x_mean) / self.x_std).to(self.draws.dtype)

    def _per_draw(self, Xs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-draw pieces in model units: mean/var (S, n); for collapsed kinds centre, phi, box half-widths."""
        params = self.layout.unflatten(self.draws)
        h = mlp_features(params, Xs, self.layout.depth)
        mean = (torch.einsum("...i,...ni->...n", params["w_out"][..., 0, :], h) + params["b_out"][..., 0:1])
        log_var = (torch.einsum("...i,...ni->...n", params["w_out"][..., 1, :], h)
                   + params["b_out"][..., 1:2]).clamp(*LOG_VAR_RANGE)
        sigma = self.noise_scale * (0.5 * log_var).exp().double()
        out = {"mean": mean.double(), "var": sigma**2, "sigma": sigma}
        if self.collapsed is None:
            return out
        # features of the mean head: hidden units then the bias' constant 1
        feats = torch.cat([h, torch.ones_like(h[..., :1])], dim=-1).double()
        head = self.layout.mean_head_index().to(self.collapsed.device)
        pos = torch.stack([(head == c).nonzero().squeeze() for c in self.collapsed])
        phi = feats[..., pos]  # (S, n, k)
        w_c = self.draws.double()[:, self.collapsed]  # the sampled values, replaced by the conditional
        center = out["mean"] - (phi * w_c[:, None, :]).sum(-1) + (phi * self.cond_mean[:, None, :]).sum(-1)
        out.update(center=center, phi=phi)
        if self.kind == "ciber":
            half = self.box_scale * math.sqrt(3.0) * self.cond_cov.diagonal().clamp_min(0).sqrt()
            out["box"] = phi.abs() * half
            out["mean"], out["var"] = ciber_moments(center, out["box"], sigma, tail_weight=self.tail_weight)
        else:
            out["mean"], out["var"] = gaussian_collapsed_moments(center, phi, self.cond_cov, sigma)
        return out

    def per_draw_moments(self, X: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictive mean and variance given each posterior draw, ``(S, n)`` each, in data units."""
        pd = self._per_draw(self._prep(X))
        return pd["mean"] * self.y_std + self.y_mean, pd["var"] * self.y_std**2

    def predictive_moments(self, X: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of the posterior predictive p(y | x, D) at each row of ``X`` (n,), exact for the
        mixture over the S draws: E = avg m_s, Var = avg(v_s + m_s^2) - E^2."""
        m, v = self.per_draw_moments(X)
        mean = m.mean(0)
        return mean, (v + (m - mean) ** 2).mean(0)

    def pointwise_log_likelihood(self, X: Any, y: Any, *, defensive_weight: float | None = None) -> torch.Tensor:
        """log p(y_i | x_i, draw s), ``(S, n)`` (data units). For ``ciber`` the exact collapsed density with a
        triangular likelihood (zero outside its support); ``defensive_weight`` > 0 (default: the posterior's own,
        see :func:`calibrate_noise`) mixes in that weight of the draw's moment-matched Gaussian, which keeps the
        draw's mean and variance and makes the log finite (the paper's evaluation adds a small constant density
        epsilon over the range of y for the same purpose)."""
        if defensive_weight is None:
            defensive_weight = self.defensive_weight
        check_defensive_weight(defensive_weight)
        Xs, y = self._prep_xy(X, y)
        ys = (y - self.y_mean) / self.y_std
        pd = self._per_draw(Xs)
        gauss = dist.Normal(pd["mean"], pd["var"].sqrt()).log_prob(ys)
        if self.kind == "ciber":
            ll = ciber_density(ys, pd["center"], pd["box"], pd["sigma"], tail_weight=self.tail_weight).log()
            if defensive_weight > 0:  # in log space: the Gaussian part may underflow far out
                ll = torch.logaddexp(ll + math.log1p(-defensive_weight), gauss + math.log(defensive_weight))
        else:
            ll = gauss
        return ll - math.log(self.y_std)

    def log_predictive_density(self, X: Any, y: Any, *, defensive_weight: float | None = None) -> torch.Tensor:
        """log p(y_i | x_i, D) = log mean_s p(y_i | x_i, draw s), ``(n,)``."""
        ll = self.pointwise_log_likelihood(X, y, defensive_weight=defensive_weight)
        return torch.logsumexp(ll, 0) - math.log(ll.shape[0])

    def moment_matched_nll(self, X: Any, y: Any) -> torch.Tensor:
        """-log N(y; E, Var) with the predictive's exact mean and variance (Izmailov et al.'s SWAG test NLL), (n,)."""
        check_same_index(X=X, y=y)  # rows are paired by position
        mean, var = self.predictive_moments(X)
        return -dist.Normal(mean, var.sqrt()).log_prob(self._targets(y, mean.shape[0]).to(mean.dtype))

    def _prep_xy(self, X: Any, y: Any, x_name: str = "X", y_name: str = "y") -> tuple[torch.Tensor, torch.Tensor]:
        """``X`` standardized (:meth:`_prep`) and ``y`` (:meth:`_targets`), checked as a pair first: pandas ``X`` and
        ``y`` with different indexes are refused (:func:`~pyrozoo.validation.check_same_index`; rows are paired by
        position), as every fit refuses them."""
        check_same_index(**{x_name: X, y_name: y})
        Xs = self._prep(X, x_name)
        return Xs, self._targets(y, Xs.shape[0], y_name)

    def _targets(self, y: Any, n: int, name: str = "y") -> torch.Tensor:
        """``y`` as a finite ``(n,)`` float64 tensor (detached): a column (n, 1) or a single value would broadcast
        silently."""
        y = as_tensor(name, y, dtype=torch.float64, device=self.draws.device, detach=True)
        check_shape(name, y, (n,))
        check_finite(name, y)
        return y

    def sample_predictive(self, X: Any, num_samples: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(num_samples, n)`` draws of y from the posterior predictive (a draw index, then the per-draw
        predictive: Gaussian, or uniform box plus triangular noise for ``ciber``)."""
        num_samples = check_int("num_samples", num_samples, minimum=1)
        pd = self._per_draw(self._prep(X))
        idx = torch.randint(self.num_draws, (num_samples,), generator=generator).to(self.draws.device)
        return self._sample_y(pd, idx, self.defensive_weight, generator)

    def sample_per_draw(self, X: Any, *, generator: torch.Generator | None = None,
                        defensive_weight: float | None = None) -> torch.Tensor:
        """``(S, n)``: one draw of y given each posterior draw s, in draw order (the per-draw predictive of
        :meth:`sample_predictive`; ``defensive_weight`` as in :meth:`pointwise_log_likelihood`)."""
        weight = check_defensive_weight(self.defensive_weight if defensive_weight is None else defensive_weight)
        pd = self._per_draw(self._prep(X))
        return self._sample_y(pd, torch.arange(self.num_draws, device=self.draws.device), weight, generator)

    def _sample_y(self, pd: dict[str, torch.Tensor], idx: torch.Tensor, defensive_weight: float,
                  generator: torch.Generator | None) -> torch.Tensor:
        """One y per entry of ``idx`` (draw indices) from that draw's predictive, ``(len(idx), n)``, data units."""
        num_samples = idx.numel()
        if self.kind == "ciber":
            y = torch.stack([ciber_sample(pd["center"][i], pd["box"][i], pd["sigma"][i], 1,
                                          tail_weight=self.tail_weight, generator=generator)[0] for i in idx.tolist()])
            if defensive_weight > 0:  # the mixture's Gaussian part (same mean and variance per draw)
                z = torch.randn(num_samples, y.shape[-1], generator=generator, dtype=torch.float64).to(y.device)
                u = torch.rand(num_samples, 1, generator=generator, dtype=torch.float64).to(y.device)
                y = torch.where(u < defensive_weight, pd["mean"][idx] + pd["var"][idx].sqrt() * z, y)
        else:
            z = torch.randn(num_samples, pd["mean"].shape[-1], generator=generator, dtype=torch.float64)
            y = pd["mean"][idx] + pd["var"][idx].sqrt() * z.to(self.draws.device)
        return y * self.y_std + self.y_mean


# --------------------------------------------------------------------------------------------------- fitting
def _neg_log_posterior(layout: MLPLayout, X: torch.Tensor, y: torch.Tensor, prior_scale: float):
    """``loss(theta, idx)``: the negative log posterior per row up to additive constants,
    mean_{i in idx} 0.5 (g_i + (y_i - f_i)^2 e^{-g_i}) + |theta|^2 / (2 s^2 n) (s = ``prior_scale``, n rows). The
    exact -log p(y, theta) / n (full batch) adds 0.5 log(2 pi) + P log(2 pi s^2) / (2 n), P the number of weights
    (with s = 1: 0.5 log(2 pi) (1 + P / n))."""
    n = X.shape[0]

    def loss(theta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        mean, log_var = mlp_forward(layout.unflatten(theta), X[idx], layout.depth)
        nll = 0.5 * (log_var + (y[idx] - mean) ** 2 / log_var.exp()).mean()
        return nll + 0.5 * (theta**2).sum() / (prior_scale**2 * n)

    return loss


def _init_theta(layout: MLPLayout, seed: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """He-style initialization (the prior's scale would saturate the log-variance head)."""
    gen = torch.Generator().manual_seed(int(seed))
    parts = []
    for name, shape in layout.sites.items():
        fan_in = shape[1] if len(shape) == 2 else 1
        std = math.sqrt(2.0 / fan_in) if len(shape) == 2 else 0.0
        if name == "w_out":
            std = math.sqrt(1.0 / fan_in)
        parts.append((torch.randn(shape, generator=gen) * std).reshape(-1))
    return torch.cat(parts).to(device=device, dtype=dtype)


@dataclass
class BNNTraining:
    """One SGD + SWA trajectory (shared by every posterior built from it) and the data it was fit to."""

    layout: MLPLayout
    run: SWAGRun
    X: torch.Tensor  # standardized, float32
    y: torch.Tensor
    scaling: dict[str, Any]
    options: dict[str, Any]
    X_val: torch.Tensor | None = None  # held-out rows in the units the data came in (None: no validation part)
    y_val: torch.Tensor | None = None
    feature_names: list[str] | None = None  # a DataFrame X's string column names (the posteriors check new inputs)


def held_out_rows(n: int, val_fraction: float) -> int:
    """How many of ``n`` rows :func:`train_bnn` holds out for calibration: max(1, round(val_fraction * n)) for
    ``val_fraction`` in (0, 1) (checked), 0 when it is 0."""
    if not val_fraction:
        return 0
    check_probability("val_fraction", val_fraction, open_interval=True)
    return max(1, int(round(val_fraction * n)))


def rank_capped_message(rank: int, swa_epochs: int) -> str:
    """The warning for a given ``rank`` above ``swa_epochs``: SWAG collects one iterate per SWA epoch, so its
    deviation matrix D has K = min(rank, swa_epochs) columns (the option applies only in part)."""
    return (f"rank: SWAG collects one iterate per SWA epoch, so with swa_epochs={swa_epochs} its deviation matrix D "
            f"will have only {swa_epochs} columns, not rank={rank} (K = min(rank, swa_epochs)); raise swa_epochs to "
            f"{rank} for a rank-{rank} D, or give rank={swa_epochs}")


def hidden_depth_error(hidden: Any) -> PyrozooError:
    """The error for a given ``hidden`` with ``depth`` 0, from ``pyrozoo run`` (:func:`check_bnn_options`) and from
    :func:`train_bnn` / :func:`fit_bnn` alike."""
    return PyrozooError(f"options: hidden has no effect with depth 0 (no hidden layers: the outputs read the inputs), "
                        f"got hidden={hidden!r}; remove one of them")


def check_hidden(hidden: Any, depth: int) -> int:
    """The hidden-layer width for a checked ``depth``: None (not given) is the usual width,
    ``DEFAULT_OPTIONS["hidden"]``; a given width with ``depth`` 0 is refused (it would have no effect)."""
    if hidden is None:
        return DEFAULT_OPTIONS["hidden"]
    if depth == 0:
        raise hidden_depth_error(hidden)
    return check_int("hidden", hidden, minimum=1)


@keeps_caller_state
def train_bnn(
    X: Any,
    y: Any,
    *,
    hidden: int | None = None,
    depth: int = 1,
    prior_scale: float = 1.0,
    epochs: int = 400,
    swa_epochs: int = 100,
    batch_size: int = 32,
    lr: float = 0.01,
    swa_lr: float = 0.005,
    momentum: float = 0.9,
    rank: int | None = None,
    standardize: bool = True,
    val_fraction: float = 0.0,
    seed: int = 0,
    progress: bool = False,
    device: Any = None,
    progress_label: str = "swag",
) -> BNNTraining:
    """SGD on the negative log posterior with the SWA schedule, collecting SWAG moments (validates first).

    ``val_fraction`` > 0 holds out that seeded random fraction of the rows (the reference implementation's 8:1
    train/validation split is 1/9): the network is fit to the rest, and :func:`build_posterior` chooses the noise
    scale (and CIBER's defensive weight) on the held-out rows (:func:`calibrate_noise`). A DataFrame X's string
    column names are kept (``feature_names``): the posteriors refuse a DataFrame with other columns or another order.
    ``hidden`` None is the usual width (50 units); a given ``hidden`` with ``depth`` 0 is refused
    (:func:`check_hidden`). One iterate, so one column of SWAG's deviation matrix D, is collected per SWA epoch, and
    D keeps the last ``rank`` of them: K = min(rank, swa_epochs) columns. ``rank`` None is the usual 20; a given
    ``rank`` above ``swa_epochs`` gives a :class:`UserWarning` before training (:func:`rank_capped_message`).
    ``progress_label`` names the progress bar (:func:`fit_bnn` passes the posterior it fits)."""
    names = feature_names(X)
    check_bool("standardize", standardize)  # "no" was read as True
    # a constant y only where y is standardized by its sd: the active-learning loop scales y itself
    # (standardize=False) and its initial labels may all be equal (a zero-inflated response)
    X, y = check_regression_data(X, y, varies=standardize)
    check_bool("progress", progress)
    n_val = held_out_rows(X.shape[0], val_fraction)
    depth = check_int("depth", depth, minimum=0)
    hidden = check_hidden(hidden, depth)
    rank_given = rank is not None
    rank = check_int("rank", DEFAULT_OPTIONS["rank"] if rank is None else rank, minimum=0)
    # one iterate is collected per SWA epoch, and SWAG's moments need two (checked here, not after the SGD run)
    swa_epochs = check_int("swa_epochs", swa_epochs, minimum=2)
    check_positive("prior_scale", prior_scale)
    seed = check_seed("seed", seed)  # set_seed takes [0, 2**32 - 1]; checked before the split draws
    layout = MLPLayout(X.shape[1], hidden, depth)
    device = resolve_device(device) if device is not None else X.device
    X_val = y_val = None
    if n_val:
        if X.shape[0] - n_val < 2:
            raise PyrozooError(f"val_fraction: leaves {X.shape[0] - n_val} training rows of {X.shape[0]}, need >= 2")
        perm = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(int(seed) + 7919)).to(X.device)
        X_val, y_val, X, y = X[perm[:n_val]], y[perm[:n_val]], X[perm[n_val:]], y[perm[n_val:]]
        # y varies, but the rows left to train on may not (their sd of 0 was quietly set to 1)
        if standardize:
            check_varies(y, f"the {X.shape[0]} rows left to train on after val_fraction={val_fraction:g} holds out "
                            f"{n_val} (the varying values are all held out)")
    x_mean, x_std, y_mean, y_std = torch.zeros_like(X[0]), torch.ones_like(X[0]), 0.0, 1.0  # on X's device
    if standardize:
        x_mean, x_std = X.mean(0), X.std(0).where(X.std(0) > 0, torch.ones_like(X[0]))
        y_mean, y_std = float(y.mean()), float(y.std())
    Xs = ((X - x_mean) / x_std).to(device=device, dtype=torch.float32)
    ys = ((y - y_mean) / y_std).to(device=device, dtype=torch.float32)
    # float64, as X: the posteriors standardize new inputs in float64 (BNNPosterior._prep)
    scaling = {"x_mean": x_mean.to(device, torch.float64), "x_std": x_std.to(device, torch.float64),
               "y_mean": y_mean, "y_std": y_std}
    if rank_given and rank > swa_epochs:  # the usual 20, not asked for, is capped without a word
        warnings.warn(rank_capped_message(rank, swa_epochs), UserWarning, stacklevel=3)  # past keeps_caller_state
    set_seed(seed)
    loss = _neg_log_posterior(layout, Xs, ys, prior_scale)
    run = run_swag(loss, _init_theta(layout, seed, device, torch.float32), Xs.shape[0], epochs=epochs,
                   swa_epochs=swa_epochs, batch_size=batch_size, lr=lr, swa_lr=swa_lr, momentum=momentum,
                   rank=rank, seed=seed, progress=progress, progress_label=progress_label)
    warn_if_diverged(layout, run, Xs, ys)
    options = {"hidden": hidden, "depth": depth, "prior_scale": float(prior_scale), "seed": seed,
               "progress": progress, "val_fraction": float(val_fraction)}
    return BNNTraining(layout, run, Xs, ys, scaling, options, X_val, y_val,
                       None if names is None else names.tolist())


SATURATED_SHARE = 0.1  # warn when the log-variance head sits at its clamp for more than this share of the rows
LOSS_RISE = 1.0  # ... or when the last epoch's loss (nats per row) is this far above the best epoch's


def warn_if_diverged(layout: MLPLayout, run: SWAGRun, X: torch.Tensor, y: torch.Tensor | None = None) -> str | None:
    """A ``UserWarning`` (returned as text; None when all is well) when the SGD run has likely blown up, cheaply
    seen after training on the final iterate's log-variance head g(x) (before its clamp ``LOG_VAR_RANGE``) at the
    training rows ``X`` (standardized; ``y`` their standardized responses, for the message):

    * g(x) at or beyond either clamp for more than ``SATURATED_SHARE`` of the rows (60 rows, 10 epochs: g(x) = 8
      on half of them, test RMSE 384 for noise sd 1);
    * any row at or above the upper clamp g = 8 (said also with the first, with the count and the distance of
      those rows' fitted means from y): a predictive sd of e^4 ~ 55 sds of y, which no row of
      standardized data needs (a row's own best log-variance is log r_i^2, r_i its residual in sds of y), and out of
      which the row cannot come back: the clamp passes no gradient to g, and the mean's gradient,
      (f(x_i) - y_i) e^-g, is divided by e^8 (60 rows, 200 epochs at lr 0.003: 1 to 3 rows there, fitted means
      12 to 31 sds from y, test RMSE 226 where predicting the mean scores 61);
    * the last epoch's loss more than ``LOSS_RISE`` above the best epoch's.

    All come with too few epochs or a learning rate that suits neither the data nor the schedule."""
    notes = []
    with torch.no_grad():
        params = layout.unflatten(run.final)
        h = mlp_features(params, X, layout.depth)
        g = torch.einsum("i,ni->n", params["w_out"][1], h) + params["b_out"][1]  # before the clamp
        upper = g >= LOG_VAR_RANGE[1]
        at = int(((g <= LOG_VAR_RANGE[0]) | upper).sum())
        stuck = int(upper.sum())
        miss = None
        if stuck and y is not None:
            mean = torch.einsum("i,ni->n", params["w_out"][0], h) + params["b_out"][0]
            miss = float((mean - y.to(mean)).abs()[upper].max())
    if at > SATURATED_SHARE * X.shape[0]:
        notes.append(f"the log-variance head sits at its clamp {LOG_VAR_RANGE} for {at} of {X.shape[0]} training "
                     f"rows" + (f" ({stuck} at the upper clamp)" if stuck and stuck < at else ""))
    if stuck:  # said whatever the share: the more rows stuck, the more the user needs to know where and how far
        sd = math.exp(LOG_VAR_RANGE[1] / 2)
        notes.append(f"{stuck} of {X.shape[0]} training rows {'sits' if stuck == 1 else 'sit'} at the log-variance "
                     f"head's upper clamp {LOG_VAR_RANGE[1]:g} (a predictive sd of {sd:.3g} sds of y), stuck there: "
                     f"the clamp passes no gradient, and their means' gradients are divided by e^{LOG_VAR_RANGE[1]:g}"
                     + ("" if miss is None else f" (fitted means up to {miss:.3g} sds of y from y)"))
    best, last = min(run.losses), run.losses[-1]
    if last > best + LOSS_RISE:
        notes.append(f"the last epoch's loss {last:.3g} is {last - best:.3g} above the best epoch's ({best:.3g})")
    if not notes:
        return None
    message = (f"bnn training has likely diverged: {'; '.join(notes)}; train for more epochs (epochs, --steps; "
               f"swa_epochs) or with a lower learning rate (lr, --lr; swa_lr)"
               + (", or from another seed (seed, --seed)" if stuck else ""))
    warnings.warn(message, UserWarning, stacklevel=2)
    return message


# the keyword arguments fit_bnn passes on to train_bnn (the progress bar's label is fit_bnn's posterior)
TRAIN_OPTIONS = tuple(k for k in inspect.signature(train_bnn).parameters if k not in ("X", "y", "progress_label"))

NOISE_SCALES = (0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
DEFENSIVE_WEIGHTS = (1e-6, 1e-4, 1e-3, 1e-2, 0.05, 0.1)


def check_defensive_weight(weight: Any, name: str = "defensive_weight") -> float:
    """The weight of CIBER's defensive Gaussian component, in [0, 1) (1 would leave no collapsed density)."""
    return check_interval(name, weight, 0.0, 1.0, high_open=True)


def _check_grid(name: str, values: Any, check: Callable[[str, Any], Any]) -> tuple[float, ...]:
    """A calibration grid as floats: a non-empty sequence of numbers, each passing ``check(name, value)``."""
    try:  # a str, a number or a 0-d array is not a grid
        grid = () if isinstance(values, (str, bytes)) or not isinstance(values, Iterable) else tuple(values)
    except TypeError:
        grid = ()
    if not grid:
        raise PyrozooError(f"{name}: expected a non-empty sequence of numbers, got {values!r}")
    for value in grid:
        check(name, value)
    return tuple(float(v) for v in grid)


def _check_scale(name: str, value: Any) -> None:
    """A noise or box scale of a calibration grid: a finite number > 0 whose square stays a normal float64 (1e-150 to
    1e150, :func:`~pyrozoo.validation.usable_range`): tau = 1e-200 made the noise variance 0 and torch's Normal
    failed; a box scale of 1e200 gave NaN densities."""
    check_positive(name, value, scalar=True)
    check_prior_range(name, value)


# ciber's box half-width multipliers: 1 matches the conditional's variances; the reference code's boxes (min/max of
# the last 40 raw SGD iterates) are, for independent N(0, s^2) iterates (100 collected, rank 20), +-2.16 s = about
# +-1.53 sd at SWAG scale 1 (sd = 1.41 s), 1.25x wider than +-sqrt(3) sd at scale 0.5 (sd = s); docs/bnn.md
BOX_SCALES = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
TAIL_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3)  # rho grid of our triangle-mixture variant (opt-in: tail_weights=...)


def calibrate_noise(post: BNNPosterior, X_val: Any, y_val: Any, *, noise_scales: tuple[float, ...] = NOISE_SCALES,
                    defensive_weights: tuple[float, ...] = DEFENSIVE_WEIGHTS,
                    box_scales: tuple[float, ...] = BOX_SCALES,
                    tail_weights: tuple[float, ...] = (0.0,)) -> BNNPosterior:
    """The posterior with the noise scale tau (sigma(x) -> tau sigma(x)) and, for ``ciber``, the defensive weight
    lambda, the box scale and the tail weight rho (our triangle mixture; default grid (0,): the paper's triangle)
    that maximize the mean log predictive density of held-out rows (a grid search; other kinds use tau only).
    The network and its draws are unchanged. The choice and the grid's scores go to ``extras["calibration"]``
    (grid keys: (tau, lambda, box_scale, rho)). The inputs (at least one row) and every grid (also those the kind
    does not use) are checked before any work: tau and the box scale within :func:`~pyrozoo.validation.usable_range`
    in float64 (1e-150 to 1e150; the noise sd and the box half-widths are squared in float64). A grid point whose
    score is NaN, or a grid with no finite score, is an error, not a choice."""
    Xs, ys = post._prep_xy(X_val, y_val, "X_val", "y_val")
    if Xs.shape[0] == 0:  # every score was the NaN mean of no rows, and max kept the grid's first point
        raise PyrozooError("X_val, y_val: expected at least 1 row, got 0")
    ys = (ys - post.y_mean) / post.y_std
    noise_scales = _check_grid("noise_scales", noise_scales, _check_scale)
    defensive_weights = _check_grid("defensive_weights", defensive_weights, lambda n, v: check_defensive_weight(v, n))
    box_scales = _check_grid("box_scales", box_scales, _check_scale)
    tail_weights = _check_grid("tail_weights", tail_weights,
                               lambda n, v: check_interval(n, v, 0.0, 1.0, high_open=True))
    ciber = post.kind == "ciber"
    weights = defensive_weights if ciber else (post.defensive_weight,)
    boxes = box_scales if ciber else (post.box_scale,)
    rhos = tail_weights if ciber else (post.tail_weight,)
    scores: dict[tuple[float, float, float, float], float] = {}
    for tau in noise_scales:
        for box in boxes:
            cand = replace(post, noise_scale=float(tau), defensive_weight=0.0, box_scale=float(box), tail_weight=0.0)
            pd = cand._per_draw(Xs)  # X_val standardized once: replace keeps x_mean and x_std
            if ciber:  # one density evaluation per (tau, box, component); rho and lambda only mix them
                narrow = ciber_density(ys, pd["center"], pd["box"], pd["sigma"])
                wide = (ciber_density(ys, pd["center"], pd["box"], TAIL_WIDTH * pd["sigma"])
                        if any(r > 0 for r in rhos) else narrow)
            for rho in rhos:
                if ciber:
                    _, var = ciber_moments(pd["center"], pd["box"], pd["sigma"], tail_weight=rho)
                    gauss = dist.Normal(pd["center"], var.sqrt()).log_prob(ys)
                    exact = ((1 - rho) * narrow + rho * wide).log()
                else:
                    exact = dist.Normal(pd["mean"], pd["var"].sqrt()).log_prob(ys)
                for lam in weights:
                    ll = exact if not ciber or lam <= 0 else torch.logaddexp(
                        exact + math.log1p(-lam), gauss + math.log(lam))
                    lpd = torch.logsumexp(ll, 0) - math.log(ll.shape[0]) - math.log(cand.y_std)  # data units
                    scores[(float(tau), float(lam), float(box), float(rho))] = float(lpd.mean())
    bad = [key for key, score in scores.items() if math.isnan(score)]
    if bad:  # max over NaN keeps whichever key came first
        raise PyrozooError(f"calibration: the held-out mean log predictive density is NaN at {len(bad)} of "
                           f"{len(scores)} grid points (tau, lambda, box_scale, rho), first {bad[0]}; the posterior's "
                           f"draws or the held-out rows give no density there")
    if not any(math.isfinite(score) for score in scores.values()):
        raise PyrozooError("calibration: every grid point scores -inf (a held-out row has density 0 under every "
                           "draw, outside ciber's support): include a defensive weight > 0 in defensive_weights")
    best = max(scores, key=lambda key: scores[key])
    extras = {**post.extras, "calibration": {"noise_scale": best[0], "defensive_weight": best[1], "box_scale": best[2],
                                             "tail_weight": best[3], "val_lpd": scores[best], "grid": scores}}
    return replace(post, noise_scale=best[0], defensive_weight=best[1], box_scale=best[2], tail_weight=best[3],
                   extras=extras)


@keeps_caller_state
def build_posterior(
    training: BNNTraining,
    posterior: str = "swag",
    *,
    scale: float | None = None,
    num_collapsed: int | None = None,
    num_samples: int | None = None,
    vi_steps: int | None = None,
    vi_lr: float | None = None,
    calibrate: bool | None = None,
    tail_weights: tuple[float, ...] | None = None,
) -> BNNPosterior:
    """The ``posterior`` of the module docstring from one SGD/SWA trajectory (VI starts from its last iterate).

    ``scale`` (0.5), ``num_collapsed`` (10), ``num_samples`` (30), ``vi_steps`` (2000), ``vi_lr`` (0.01) and
    ``tail_weights`` ((0,)) apply to some posteriors only (:data:`FIT_INFERENCE_OPTIONS`; None: not given, the
    default): given with another, they are an error, as in :func:`fit_bnn`. ``calibrate`` (default: when the
    training run held out validation rows) picks the noise scale and CIBER's defensive weight, box scale (and, with
    ``tail_weights`` other than (0,), the tail weight rho of our triangle mixture) on the validation rows
    (:func:`calibrate_noise`); ``tail_weights`` without calibration is an error (rho would stay 0). Every argument
    is checked before any work."""
    check_choice("posterior", posterior, POSTERIORS)
    own = {"scale": scale, "num_collapsed": num_collapsed, "num_samples": num_samples, "vi_steps": vi_steps,
           "vi_lr": vi_lr, "tail_weights": tail_weights}
    check_posterior_options(posterior, [k for k, v in own.items() if v is not None])
    if calibrate is None:
        calibrate = training.X_val is not None
    else:  # "no" used to be read as True and reported as a missing validation set
        check_bool("calibrate", calibrate)
    if calibrate and training.X_val is None:
        raise PyrozooError("calibrate: needs validation rows, train with val_fraction > 0")
    if tail_weights is not None:  # ciber's rho is chosen on the validation rows, or not at all
        if not calibrate:
            why = ("calibrate=False" if training.X_val is not None
                   else "the training run holds no validation rows (train with val_fraction > 0)")
            raise PyrozooError(f"tail_weights: the tail weight is chosen on the validation rows, but this call does "
                               f"not calibrate: {why}; remove tail_weights, or calibrate")
        tail_weights = _check_grid("tail_weights", tail_weights,
                                   lambda n, v: check_interval(n, v, 0.0, 1.0, high_open=True))
    scale, num_collapsed, num_samples, vi_steps, vi_lr = (
        FIT_OPTION_DEFAULTS[k] if own[k] is None else own[k]
        for k in ("scale", "num_collapsed", "num_samples", "vi_steps", "vi_lr"))
    if posterior == "vi":  # before the VI run (vi_steps=-3 was accepted with swag, unread)
        check_int("vi_steps", vi_steps, minimum=1)
        check_positive("vi_lr", vi_lr)
    post = _build_posterior(training, posterior, scale=scale, num_collapsed=num_collapsed, num_samples=num_samples,
                            vi_steps=vi_steps, vi_lr=vi_lr)
    post.feature_names = training.feature_names
    if calibrate:
        t0 = time.perf_counter()
        post = calibrate_noise(post, training.X_val, training.y_val,
                               tail_weights=(0.0,) if tail_weights is None else tail_weights)
        post.extras["fit_time"] += time.perf_counter() - t0
    return post


def _build_posterior(training: BNNTraining, posterior: str, *, scale: float, num_collapsed: int, num_samples: int,
                     vi_steps: int, vi_lr: float) -> BNNPosterior:
    check_choice("posterior", posterior, POSTERIORS)
    num_samples = check_int("num_samples", num_samples, minimum=1)
    num_collapsed = check_int("num_collapsed", num_collapsed, minimum=1)
    check_positive("scale", scale)
    layout, run, scaling = training.layout, training.run, training.scaling
    seed = int(training.options["seed"])
    head = layout.mean_head_index().numel()
    if posterior == "ciber" and num_collapsed > min(MAX_COLLAPSED, head):
        raise PyrozooError(f"num_collapsed: ciber integrates at most {min(MAX_COLLAPSED, head)} mean-head weights "
                           f"exactly (3 * 2^k terms per value), got {num_collapsed}")
    if posterior in ("swag", "ciber", "collapsed-gaussian") and run.collector.rank < 2:
        raise PyrozooError(f"rank: SWAG's low-rank part needs rank >= 2, got {run.collector.rank}")
    t0 = time.perf_counter()
    extras: dict[str, Any] = {"losses": run.losses, "swag_time": run.wall_time}
    device = run.final.device
    if posterior == "map":
        extras["fit_time"] = run.wall_time
        return BNNPosterior("map", layout, run.final[None].float(), extras=extras, **scaling)
    if posterior == "vi":
        opts = training.options
        model_kwargs = {"X": training.X, "y": training.y, "hidden": opts["hidden"], "depth": opts["depth"],
                        "prior_scale": opts["prior_scale"]}
        init = {k: v.detach() for k, v in layout.unflatten(run.final).items()}
        guide = AutoNormal(bnn_model, init_loc_fn=init_to_value(values=init), init_scale=0.01)
        pyro.clear_param_store()
        res = run_svi(bnn_model, guide, model_kwargs, num_steps=vi_steps, elbo="meanfield", lr=vi_lr,
                      num_samples=num_samples, seed=seed, progress=bool(opts["progress"]))
        draws = layout.flatten({k: torch.as_tensor(res.posterior[k][0]) for k in layout.sites}).to(device)
        extras.update(losses_vi=res.fit_stats["loss"], vi_params=dict(res.params),  # the guide's, on the CPU
                      fit_time=run.wall_time + time.perf_counter() - t0)
        return BNNPosterior("vi", layout, draws.float(), guide=guide, extras=extras, **scaling)
    swag = run.collector.posterior(diagonal=posterior == "swag-diag", scale=scale)
    gen = torch.Generator().manual_seed(seed + 1)
    draws = swag.sample(num_samples, generator=gen)
    guide = SWAGGuide(swag, layout.sites)
    if posterior in ("swag", "swag-diag"):
        extras["fit_time"] = run.wall_time + time.perf_counter() - t0
        return BNNPosterior(posterior, layout, draws.float(), swag=swag, guide=guide, extras=extras, **scaling)
    head_idx = layout.mean_head_index().to(device)
    if posterior == "ciber":  # the k mean-head weights with the largest SWAG variance
        order = swag.var[head_idx].argsort(descending=True)
        collapsed = head_idx[order[:num_collapsed]].sort().values
    else:
        collapsed = head_idx
    d, L = swag.factors()
    cond_mean, cond_cov = conditional_gaussian(swag.mean, d, L, collapsed, draws)
    # the stored draws carry a draw of w_c from its conditional, so they are draws of the joint q(w_s) q(w_c | w_s)
    if posterior == "ciber":
        half = math.sqrt(3.0) * cond_cov.diagonal().clamp_min(0).sqrt()
        u = torch.rand(cond_mean.shape, generator=gen, dtype=cond_mean.dtype).to(device)  # gen is a CPU generator
        w_c = cond_mean + (2 * u - 1) * half
    else:
        chol = torch.linalg.cholesky(cond_cov + 1e-12 * torch.eye(len(collapsed), dtype=cond_cov.dtype, device=device))
        w_c = cond_mean + torch.randn(cond_mean.shape, generator=gen, dtype=cond_mean.dtype).to(device) @ chol.T
    draws = draws.clone()
    draws[:, collapsed] = w_c
    extras["fit_time"] = run.wall_time + time.perf_counter() - t0
    return BNNPosterior(posterior, layout, draws.float(), swag=swag, collapsed=collapsed, cond_mean=cond_mean,
                        cond_cov=cond_cov, guide=guide, extras=extras, **scaling)


# fit_bnn's and build_posterior's own keywords that only some posteriors read, with their defaults (None in the
# signature: not given); num_samples: map keeps one draw, the trained network itself; tail_weights: ciber's rho grid
FIT_OPTION_DEFAULTS = {"scale": 0.5, "num_collapsed": 10, "num_samples": 30, "vi_steps": 2000, "vi_lr": 0.01}
FIT_INFERENCE_OPTIONS = {**BNN_INFERENCE_OPTIONS, "vi_steps": ("vi",), "vi_lr": ("vi",),
                         "num_samples": tuple(p for p in POSTERIORS if p != "map"), "tail_weights": ("ciber",)}


def check_posterior_options(posterior: str, given: Iterable[str]) -> None:
    """Refuse the ``given`` options that ``posterior`` would ignore, as ``pyrozoo run`` refuses ``-o`` options another
    inference reads (the same table, :data:`BNN_INFERENCE_OPTIONS`, and message)."""
    unread = [k for k in given if posterior not in FIT_INFERENCE_OPTIONS.get(k, POSTERIORS)]
    if unread:
        raise no_effect_error(unread, FIT_INFERENCE_OPTIONS, lambda readers: f"bnn's {or_join(readers)}", posterior)


@keeps_caller_state
def fit_bnn(X: Any, y: Any, *, posterior: str = "swag", scale: float | None = None, num_collapsed: int | None = None,
            num_samples: int | None = None, vi_steps: int | None = None, vi_lr: float | None = None,
            **train_options: Any) -> BNNPosterior:
    """Fit a heteroscedastic BNN to ``X`` (n, d), ``y`` (n,) and return its ``posterior`` (module docstring).

    ``train_options`` go to :func:`train_bnn` (architecture, prior, SGD/SWA schedule, ``standardize``, ``seed``).
    ``scale`` (0.5), ``num_collapsed`` (10), ``num_samples`` (30; ``map`` keeps one draw), ``vi_steps`` (2000),
    ``vi_lr`` (0.01) and ``rank`` (20; None too) apply to some posteriors only (:data:`FIT_INFERENCE_OPTIONS`;
    None: not given): given with another, they are an error, as with ``pyrozoo run``; so is ``hidden`` given with
    ``depth`` 0 (left out, it is the usual 50 units). All arguments are validated before any fitting starts."""
    check_choice("posterior", posterior, POSTERIORS)
    check_keys("train_options", train_options, TRAIN_OPTIONS)
    if "rank" in train_options and train_options["rank"] is None:  # None is the usual rank, as in train_bnn
        train_options = {k: v for k, v in train_options.items() if k != "rank"}
    own = {"scale": scale, "num_collapsed": num_collapsed, "num_samples": num_samples, "vi_steps": vi_steps,
           "vi_lr": vi_lr}
    given = {k: v for k, v in own.items() if v is not None}  # passed on to build_posterior, which checks them again
    check_posterior_options(posterior, list(given) + (["rank"] if "rank" in train_options else []))
    scale, num_collapsed, num_samples, vi_steps, vi_lr = (FIT_OPTION_DEFAULTS[k] if v is None else v
                                                          for k, v in own.items())
    check_int("num_collapsed", num_collapsed, minimum=1)
    check_int("num_samples", num_samples, minimum=1)
    check_positive("scale", scale)
    if posterior == "vi":
        check_int("vi_steps", vi_steps, minimum=1)
        check_positive("vi_lr", vi_lr)
    rank = check_int("rank", train_options.get("rank", DEFAULT_OPTIONS["rank"]))
    # the mean head holds hidden + 1 weights (in_dim + 1 without hidden layers): checked here, not after training
    if posterior == "ciber" and num_collapsed > MAX_COLLAPSED:
        raise PyrozooError(f"num_collapsed: ciber integrates at most {MAX_COLLAPSED} mean-head weights exactly "
                           f"(3 * 2^k terms per value), got {num_collapsed}")
    # a given hidden with depth 0 is refused here, as pyrozoo run refuses it, not after training
    depth = check_int("depth", train_options.get("depth", DEFAULT_OPTIONS["depth"]), minimum=0)
    hidden = check_hidden(train_options.get("hidden"), depth)
    if posterior == "ciber":
        if depth > 0:
            head, what = hidden + 1, "hidden + 1"
        else:  # no hidden layer: the mean head reads the inputs
            head, what = check_regression_data(X, y, varies=False)[0].shape[1] + 1, "input columns + 1"
        if num_collapsed > head:
            raise PyrozooError(f"num_collapsed: ciber integrates at most the {head} mean-head weights ({what}), "
                               f"got {num_collapsed}")
    if posterior in ("swag", "ciber", "collapsed-gaussian") and rank < 2:
        raise PyrozooError(f"rank: SWAG's low-rank part needs rank >= 2, got {rank}")
    # the SGD/SWA trajectory's progress bar names the posterior fitted from it (vi: the trajectory is its start)
    label = "vi: SGD start" if posterior == "vi" else posterior
    training = train_bnn(X, y, progress_label=label, **train_options)
    return build_posterior(training, posterior, **given)


# --------------------------------------------------------------------------------------------------- zoo entry
def make_bnn_dataset(split: RegressionSplit, *, name: str, hidden: int = 50, depth: int = 1,
                     prior_scale: float = 1.0) -> Dataset:
    """Training part as model inputs/observed; test part, the target's scaling (also as ``response_shift`` and
    ``response_scale``: the result's log-likelihood is in y's own units), the inputs' scaling ``x_mean`` and
    ``x_std`` (float64 arrays, one per column: X_std = (X - x_mean) / x_std) and the split's ``feature_names``
    (when it has them: the result's ``feature`` coordinate) in ``meta``; the split's original row labels as
    ``meta["rows"]`` (training rows: the result's ``obs_id`` coordinate) and ``meta["test_rows"]``."""
    meta = {"X_test": split.X_test, "y_test": split.y_test, "y_mean": split.y_mean, "y_std": split.y_std,
            **{k: getattr(split, k).detach().cpu().double().numpy() for k in ("x_mean", "x_std")},
            **response_map(split.y_mean, split.y_std)}  # the fit's log-likelihood in y's own units (Dataset)
    if split.train_rows is not None:
        meta["rows"], meta["test_rows"] = list(split.train_rows), list(split.test_rows)
    if split.feature_names is not None:
        meta["feature_names"] = list(split.feature_names)
    return Dataset(
        name,
        inputs={"X": split.X_train, "hidden": int(hidden), "depth": int(depth), "prior_scale": float(prior_scale)},
        observed={"y": split.y_train},
        meta=meta,
    )


def simulate_bnn_data(seed: int, *, n: int = 300, split: int = 0, test_fraction: float = 0.1,
                      hidden: int = 50, depth: int = 1, prior_scale: float = 1.0, **_: Any) -> Dataset:
    """A 1-D heteroscedastic toy: x ~ U(-3, 3), y = sin(2x) + x / 2 + (0.1 + 0.2 |x|) eps."""
    seed = check_seed("seed", seed)
    check_seed("split", split)  # split_regression's check, before the draws
    n = check_int("n", n, minimum=10)
    gen = torch.Generator().manual_seed(seed)
    x = 6 * torch.rand(n, 1, generator=gen, dtype=torch.float64) - 3
    y = torch.sin(2 * x[:, 0]) + x[:, 0] / 2 + (0.1 + 0.2 * x[:, 0].abs()) * torch.randn(n, generator=gen,
                                                                                        dtype=torch.float64)
    ds = make_bnn_dataset(split_regression(x, y, split=split, test_fraction=test_fraction), name="bnn-toy",
                          hidden=hidden, depth=depth, prior_scale=prior_scale)
    return ds


def _uci_loader(name: str):
    def load(seed: int, *, split: int = 0, test_fraction: float = 0.1, hidden: int = 50, depth: int = 1,
             prior_scale: float = 1.0, **_: Any) -> Dataset:
        """Split ``split`` (not the run's seed) of the shipped dataset, standardized on its training part."""
        check_seed("seed", seed)  # not used here, but a seed out of range is refused as everywhere
        return make_bnn_dataset(uci_split(name, split, test_fraction=test_fraction), name=name, hidden=hidden,
                                depth=depth, prior_scale=prior_scale)

    return load


def bnn_from_file(path: str, seed: int, *, outcome: str = "", features: str = "", split: int = 0,
                  test_fraction: float = 0.1, hidden: int = 50, depth: int = 1, prior_scale: float = 1.0,
                  **_: Any) -> Dataset:
    """A user's CSV (``--data``): y is column ``outcome``, X the ``features`` (default every other column, all
    numeric; :func:`~pyrozoo.data.regression_file.read_regression_file`), split and standardized as boston and
    concrete are (split number ``split``, not the run's seed); the columns label the ``feature`` axis."""
    check_seed("seed", seed)  # not used here, but a seed out of range is refused as everywhere
    check_seed("split", split)  # split_regression's check, before the file is read
    need = min_split_rows(test_fraction)  # the test rows come out of the file's rows: a model needs 4 besides
    why = f"{TRAIN_ROWS} to train on and {n_test_rows(need, test_fraction)} to test, test_fraction={test_fraction:g}"
    X, y = read_regression_file(path, outcome=outcome, features=features, min_rows=need, rows_why=why)
    return make_bnn_dataset(split_regression(X, y, split=split, test_fraction=test_fraction), name=Path(path).stem,
                            hidden=hidden, depth=depth, prior_scale=prior_scale)


@keeps_caller_state
def fit_bnn_entry(dataset: Dataset, config: RunConfig) -> Result:
    """Fit ``config.inference`` on the dataset's training part; ``config.steps`` = SGD epochs before the SWA phase,
    for every posterior (``vi`` starts from that trajectory's last iterate), and for ``vi`` also its SVI steps;
    ``config.num_samples`` = posterior draws S. The result's ``guide`` is the posterior in model units (the
    dataset's standardized X and y) carrying the training moments of ``dataset.meta`` as ``data_scaling``
    (:meth:`BNNPosterior.in_data_units`), which ``attrs`` records too (``input_shift``, ``input_scale``)."""
    config = checked_config("bnn", config)  # a direct call gets run_model's checks
    opts = {**DEFAULT_OPTIONS, **config.options}
    check_defensive_weight(opts["defensive_weight"])  # before training, not after it
    X, y = dataset.inputs["X"], dataset.observed["y"]
    # the options this posterior reads (fit_bnn refuses the others, as checked_config did for the given ones)
    # rank only when given: left out, train_bnn's usual 20 is capped at swa_epochs without the warning a given one gets
    only = {k: opts[k] for k in ("rank", "scale", "num_collapsed")
            if config.inference in BNN_INFERENCE_OPTIONS[k] and (k != "rank" or k in config.options)}
    if config.inference == "vi":
        only["vi_steps"] = config.steps
    if config.inference != "map":  # map keeps one draw (the runner notes a given --num-samples as not applied)
        only["num_samples"] = config.num_samples
    post = fit_bnn(
        # hidden only when given (None: the usual width): with depth 0 fit_bnn refuses a given one
        X, y, posterior=config.inference, hidden=config.options.get("hidden"), depth=opts["depth"],
        prior_scale=opts["prior_scale"], epochs=config.steps, swa_epochs=opts["swa_epochs"],
        batch_size=opts["batch_size"], lr=config.lr if config.lr is not None else 0.01, swa_lr=opts["swa_lr"],
        momentum=opts["momentum"], standardize=False, seed=config.seed,
        progress=config.progress, val_fraction=opts["val_fraction"], **only,
    )
    post.feature_names = dataset.meta.get("feature_names")  # result.guide checks a DataFrame's columns against them
    scaling = data_scaling(dataset.meta, post.draws.device)
    post.data_scaling = scaling  # model units: a DataFrame of raw rows is refused; in_data_units() applies these
    # ciber's lambda (chosen on the held-out rows, else the option); the other kinds' likelihood is a plain Gaussian:
    # 0, also in params.pt (it recorded the unused 1e-6)
    weight = ((post.defensive_weight if post.defensive_weight > 0 else check_defensive_weight(opts["defensive_weight"]))
              if post.kind == "ciber" else 0.0)

    def loglik(posterior: dict[str, torch.Tensor], model_kwargs: dict[str, Any]) -> dict[str, np.ndarray]:
        ll = post.pointwise_log_likelihood(X, y, defensive_weight=weight)
        return {"y": ll.reshape(1, *ll.shape).cpu().numpy()}

    sites = post.layout.unflatten(post.weight_draws())
    draws = {k: v.unsqueeze(0).to(X.dtype) for k, v in sites.items()}
    result = assemble_result(config.inference, bnn_model, dataset.model_kwargs(), draws,
                             fit_stats=bnn_fit_stats(post), params=bnn_params(post, weight),
                             log_likelihood_fn=loglik, guide=post,
                             seed=config.seed, wall_time=post.extras["fit_time"], config=config.to_dict(),
                             model_name=config.model)
    # the posterior's own predictive (tau, collapsed and defensive likelihood), not bnn_model at the weight draws
    result.predictive_fn = BNNPredictive(post, X, weight, config.seed, y.dtype)
    if scaling is not None:  # X_std = (X - input_shift) / input_scale, as response_shift / response_scale for y
        result.attrs["input_shift"] = scaling["x_mean"].cpu().tolist()
        result.attrs["input_scale"] = scaling["x_std"].cpu().tolist()
    if post.kind == "map":  # az.loo of one draw stops with ArviZ's bare "IndexError: index -2 is out of bounds"
        result.attrs["log_likelihood"] = (
            "map: one draw, the point estimate: log p(y | x, MAP weights) of the training rows, an in-sample fit; "
            "az.loo needs several draws and fails on it, and az.waic gives the in-sample fit, not an out-of-sample "
            "elpd (p_waic 0): for az.loo and az.compare use swag, swag-diag, ciber, collapsed-gaussian or vi")
    if post.collapsed is not None:
        # PSIS-LOO on these values is Rao-Blackwellized over w_c; recomputing the likelihood from the posterior
        # group's w_out (which keeps the SWAG draws of w_c) gives the uncollapsed value instead
        result.attrs["log_likelihood"] = (
            f"collapsed: log p(y | x, w_s) with {post.collapsed.numel()} mean-head weights w_c integrated out exactly "
            f"under their conditional ({'uniform box, triangular likelihood' if post.kind == 'ciber' else 'Gaussian'})"
            f"; w_out in the posterior group holds their SWAG draws, which this log-likelihood does not use")
    return _name_weight_axes(result, post.layout, dataset.meta.get("feature_names"))


def bnn_fit_stats(post: BNNPosterior) -> dict[str, Any]:
    """The result's ``fit_stats``: ``loss``, the trace of the optimizer that fitted the posterior: the negative ELBO
    per SVI step for ``vi``, otherwise the SGD/SWA trajectory's mean loss per epoch (negative log posterior per row,
    standardized units, up to the constants 0.5 log(2 pi) + P log(2 pi prior_scale^2) / (2 n) that
    :func:`_neg_log_posterior` leaves out). For ``vi`` that trajectory, its starting point, is kept apart as
    ``pretrain_loss``."""
    if post.kind == "vi":
        return {"loss": post.extras["losses_vi"], "pretrain_loss": post.extras["losses"]}
    return {"loss": post.extras["losses"]}


def bnn_params(post: BNNPosterior, defensive_weight: float) -> dict[str, torch.Tensor]:
    """The result's ``params`` (``params.pt``), on the CPU: what the log-likelihood and predictive read besides the
    posterior group's weight draws. Always the likelihood's ``noise_scale`` tau, ``defensive_weight`` lambda (the
    one ciber's log-likelihood mixes in; 0 for the other kinds, whose likelihood is Gaussian), ``box_scale`` and
    ``tail_weight`` (0-d float64). ``map``: the point estimate
    per weight site (``w0``, ``b0``, ..., ``w_out``, ``b_out``). SWAG kinds: the moments ``swag_mean`` (P,),
    ``swag_var`` (P,), ``swag_deviations`` D (P, K) and ``swag_scale``; ``ciber`` and ``collapsed-gaussian`` also
    the flat indices ``collapsed`` of w_c and their conditional ``cond_mean`` (S, k), ``cond_cov`` (k, k). ``vi``:
    the guide's parameters under Pyro's names (``AutoNormal.locs.w0``, ``AutoNormal.scales.w0``, ...)."""
    def cpu(value: torch.Tensor) -> torch.Tensor:
        return value.detach().cpu()

    out = {k: torch.tensor(float(getattr(post, k)), dtype=torch.float64)
           for k in ("noise_scale", "box_scale", "tail_weight")}
    out["defensive_weight"] = torch.tensor(float(defensive_weight), dtype=torch.float64)
    if post.kind == "map":
        out.update({k: cpu(v[0]) for k, v in post.layout.unflatten(post.draws).items()})
    if post.kind == "vi":
        out.update({k: cpu(torch.as_tensor(v)) for k, v in post.extras.get("vi_params", {}).items()})
    if post.swag is not None:
        out.update(swag_mean=cpu(post.swag.mean), swag_var=cpu(post.swag.var),
                   swag_deviations=cpu(post.swag.deviations),
                   swag_scale=torch.tensor(float(post.swag.scale), dtype=torch.float64))
    if post.collapsed is not None:
        out.update(collapsed=cpu(post.collapsed), cond_mean=cpu(post.cond_mean), cond_cov=cpu(post.cond_cov))
    return out


def data_scaling(meta: dict[str, Any], device: torch.device) -> dict[str, Any] | None:
    """The training part's moments a bnn dataset's ``meta`` records (:func:`make_bnn_dataset`: ``x_mean``,
    ``x_std``, ``y_mean``, ``y_std``) for :attr:`BNNPosterior.data_scaling`, the inputs' as float64 tensors on
    ``device``; None when the dataset records none of the inputs' (one built by hand)."""
    if "x_mean" not in meta or "x_std" not in meta:
        return None
    return {"x_mean": torch.as_tensor(np.asarray(meta["x_mean"], dtype=np.float64), device=device),
            "x_std": torch.as_tensor(np.asarray(meta["x_std"], dtype=np.float64), device=device),
            "y_mean": float(meta["y_mean"]), "y_std": float(meta["y_std"])}


class BNNPredictive:
    """The zoo Result's ``predictive_fn``: one y per posterior draw from the fitted posterior's own predictive
    (:meth:`BNNPosterior.sample_per_draw`: the noise scale, the collapsed and defensive likelihood the
    log-likelihood uses), ``(1, S, n)`` under ``y``. A module-level class, so that the Result pickles."""

    def __init__(self, post: BNNPosterior, X: torch.Tensor, defensive_weight: float, seed: int,
                 dtype: torch.dtype) -> None:
        self.post, self.X, self.defensive_weight, self.seed, self.dtype = post, X, defensive_weight, seed, dtype

    def __call__(self, result: Result | None = None) -> dict[str, np.ndarray]:
        gen = torch.Generator().manual_seed(int(self.seed))  # the same draws on every call
        y = self.post.sample_per_draw(self.X, generator=gen, defensive_weight=self.defensive_weight)
        return {"y": y.to(self.dtype).reshape(1, *y.shape).cpu().numpy()}


def _name_weight_axes(result: Result, layout: MLPLayout, feature_names: list[str] | None = None) -> Result:
    """ArviZ axes of the weights: ``unit{i}`` for layer i's hidden units, ``feature`` for the inputs (as X's
    columns in constant_data; labelled with ``feature_names`` when given), ``output`` (mean, log_var) for the two
    heads; instead of ``w0_dim_0`` and so on."""
    prev = "feature"
    for i in range(layout.depth):
        result.dims[f"w{i}"], result.dims[f"b{i}"] = [f"unit{i}", prev], [f"unit{i}"]
        prev = f"unit{i}"
    result.dims["w_out"], result.dims["b_out"] = ["output", prev], ["output"]
    result.coords = {**result.coords, "output": ["mean", "log_var"]}
    if feature_names is not None:
        result.coords["feature"] = list(feature_names)
    if "X" in result.constant_data:
        result.dims["X"] = ["obs_id", "feature"]
    return result


def bnn_metrics(result: Result, dataset: Dataset) -> dict[str, float]:
    """Test RMSE and NLL in original units (NLL: moment-matched Gaussian, and the exact predictive density)."""
    post: BNNPosterior = result.guide
    Xt, yt = dataset.meta["X_test"], dataset.meta["y_test"]
    y_std = float(dataset.meta["y_std"])
    mean, _ = post.predictive_moments(Xt)
    yt = yt.to(mean)  # meta stays on the CPU when `run --device cuda` moves the training data
    out = {"test_rmse": float(((mean - yt) ** 2).mean().sqrt()) * y_std,
           "test_nll": float(post.moment_matched_nll(Xt, yt).mean()) + math.log(y_std),
           "fit_time": float(post.extras["fit_time"])}
    lpd = post.log_predictive_density(Xt, yt)
    out["test_nll_exact"] = float(-lpd.mean()) + math.log(y_std)
    out["test_outside_support"] = float((~torch.isfinite(lpd)).sum())
    return out


def _given_number(value: Any) -> bool:
    """A number (not a bool): the options' own type and range checks come later, these only refuse combinations."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_bnn_options(config: RunConfig) -> None:
    """Combinations where a given option is unused: ``hidden`` without hidden layers (``depth`` 0); ciber's
    defensive weight, chosen on the held-out rows when ``val_fraction`` > 0."""
    opts = config.options
    depth = opts.get("depth", DEFAULT_OPTIONS["depth"])
    if "hidden" in opts and _given_number(depth) and depth == 0:
        raise hidden_depth_error(opts["hidden"])
    vf = opts.get("val_fraction", DEFAULT_OPTIONS["val_fraction"])  # its own check (a number in [0, 1)) comes later
    if "defensive_weight" in opts and _given_number(vf) and vf > 0:
        raise PyrozooError("options: defensive_weight has no effect with val_fraction > 0 (ciber then chooses the "
                           "defensive weight on the held-out rows, from DEFENSIVE_WEIGHTS); remove one of them")


@register("bnn")
def bnn_entry() -> ZooModel:
    return ZooModel(
        name="bnn",
        model=bnn_model,
        simulate=simulate_bnn_data,
        fit=fit_bnn_entry,
        inferences=POSTERIORS,
        settings={**{k: SVI_SETTINGS for k in POSTERIORS}, "map": ("steps", "lr")},
        metrics=bnn_metrics,
        options=dict(DEFAULT_OPTIONS),
        datasets={"boston": _uci_loader("boston"), "concrete": _uci_loader("concrete")},
        from_file=bnn_from_file,
        text_options=tuple(FILE_OPTIONS),
        data_options={"n": ("simulator",), **{k: ("file",) for k in FILE_OPTIONS}},
        inference_options=BNN_INFERENCE_OPTIONS,
        check_options=check_bnn_options,
        # valid for every inference (the collapsed-only options are left at their defaults): hidden 9 gives ciber's
        # default num_collapsed = 10 its 10 mean-head weights
        tiny={"num_samples": 6, "steps": 8, "options": {"n": 40, "hidden": 9, "swa_epochs": 4, "batch_size": 16}},
        description="Heteroscedastic Bayesian MLP: SWAG, SWAG-diag, collapsed CIBER and Gaussian, VI, MAP (UCI data)",
    )
