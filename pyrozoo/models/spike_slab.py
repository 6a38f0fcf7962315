"""Spike-and-slab linear regression: one Pyro model, four inferences (EM, Gibbs/SSVS, enumerated SVI, NUTS).

Model (conjugate form by default; see :mod:`pyrozoo.models.spike_slab_prior` for the hyperparameters)::

    sigma^2 ~ InverseGamma(nu / 2, nu lam / 2),   theta ~ Beta(a0, b0)
    gamma_d ~ Bernoulli(theta),   w_d | gamma_d, sigma^2 ~ N(0, sigma^2 v_{gamma_d})   (v0 = spike_var < v1 = slab_var)
    y_i ~ N(x_i^T w, sigma^2)

``gamma`` is marked for parallel enumeration: SVI (``TraceEnum_ELBO``) and NUTS sum it out exactly, and inclusion
probabilities are Rao-Blackwellized, P(gamma_d = 1 | y) = E[P(gamma_d = 1 | w_d, sigma^2, theta)] over the draws.
The model works on standardized X and centred y (:func:`make_dataset`); :class:`SpikeSlabRegression` is the
scikit-learn-style estimator that does this for the user and maps coefficients back to the original scale.
Centred y is the flat-prior intercept integrated out: ``centred=True`` (every public path) adds its factor
sqrt(2 pi sigma^2 / n), n - 1 degrees of freedom for sigma^2 as in Gibbs and the exact posterior (EM keeps n).
"""

from __future__ import annotations

import inspect
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import NotFittedError

from pyrozoo.config import RunConfig
from pyrozoo.data.dataset import Dataset
from pyrozoo.data.regression_file import FILE_OPTIONS, read_regression_file
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.assemble import (
    assemble_result,
    keep_pointwise_log_likelihood,
    log_likelihood_skipped,
    without_log_likelihood,
)
from pyrozoo.inference.device import keeps_caller_state, one_thread_if_small, resolve_device, set_seed
from pyrozoo.inference.gibbs import run_gibbs
from pyrozoo.inference.result import Result, response_in_data_units, response_map
from pyrozoo.models.spike_slab_em import check_ladder, fit_emvs, fit_hard_em, ridge_inverse
from pyrozoo.models.spike_slab_gibbs import gibbs_data, inclusion_log_odds, ssvs_kernel
from pyrozoo.models.spike_slab_prior import (
    PRIOR_KEYS,
    SpikeSlabPrior,
    StandardizedData,
    as_prior,
    standardize,
)
from pyrozoo.registry import GIBBS_SETTINGS, MCMC_SETTINGS, SVI_SETTINGS, ZooModel, checked_config, register
from pyrozoo.validation import (
    as_tensor,
    check_bool,
    check_choice,
    check_feature_names,
    check_finite,
    check_int,
    check_pandas_numeric,
    check_positive,
    check_same_index,
    check_seed,
    feature_names,
)

INFERENCES = ("em", "gibbs", "svi", "nuts")
EM_VARIANTS = ("emvs", "hard")


# ------------------------------------------------------------------------------------------------------- model
def spike_slab_model(
    X: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    spike_var: float = 0.01,
    slab_var: float = 10.0,
    a0: float = 1.0,
    b0: float = 1.0,
    nu: float = 1.0,
    lam: float = 1.0,
    conjugate: bool = True,
    centred: bool = False,
) -> torch.Tensor:
    """Pyro model on standardized ``X`` (n, p) and centred ``y`` (n,); ``y=None`` draws from the prior predictive.

    Plates: ``feature`` (p) for gamma and w, ``obs_id`` (n) for y. gamma is enumerated in parallel by SVI/NUTS.

    ``centred=True`` says that ``y`` is y - mean(y) (and X's columns have mean 0), the intercept mu under a flat
    prior, independent of sigma^2, integrated out: then |y - mu 1 - X w|^2 = |y_c - X w|^2 + n (mean(y) - mu)^2 and

        int prod_i N(y_i; mu + x_i^T w, sigma^2) dmu = prod_i N(y_c,i; x_i^T w, sigma^2) * sqrt(2 pi sigma^2 / n),

    i.e. sigma^{-(n - 1)} exp(-|y_c - X w|^2 / (2 sigma^2)): n - 1 degrees of freedom for sigma^2, the posterior
    Gibbs and the exact enumeration use (:attr:`~pyrozoo.models.spike_slab_prior.StandardizedData.dof`). The
    second factor is the site ``pyro.factor("intercept", 0.5 log(2 pi sigma^2 / n))``, added only when ``y`` is
    observed (not per observation: the ``y`` site and the pointwise log-likelihood stay log N(y_i; x_i^T w,
    sigma^2)). ``centred=False`` (the default) takes y as given, without an intercept: n degrees of freedom.
    """
    check_bool("centred", centred)
    opts = {"dtype": X.dtype, "device": X.device}
    n, p = X.shape
    half_nu = torch.tensor(0.5 * nu, **opts)
    sigma2 = pyro.sample("sigma2", dist.InverseGamma(half_nu, half_nu * lam))
    theta = pyro.sample("theta", dist.Beta(torch.tensor(a0, **opts), torch.tensor(b0, **opts)))
    with pyro.plate("feature", p, dim=-1):
        gamma = pyro.sample("gamma", dist.Bernoulli(theta), infer={"enumerate": "parallel"})
        var = spike_var + gamma * (slab_var - spike_var)
        if conjugate:
            var = var * sigma2
        w = pyro.sample("w", dist.Normal(torch.zeros((), **opts), var.sqrt()))
    mean = (X @ w.unsqueeze(-1)).squeeze(-1)  # w may carry extra batch dims on the left of its feature dim
    with pyro.plate("obs_id", n, dim=-1):
        # sigma2 is a scalar, or (..., 1) under vectorized particles (the trailing 1 stands for this plate)
        obs = pyro.sample("y", dist.Normal(mean, sigma2.sqrt()), obs=y)
    if centred and y is not None:
        # outside every plate: one term per draw; sigma2's shape (scalar, or (..., 1) under vectorized particles)
        # is a batch shape that broadcasts with the particle plate and leaves the feature / obs_id dim at size 1
        pyro.factor("intercept", 0.5 * (2 * math.pi * sigma2 / n).log())
    return obs


def pointwise_loglik(posterior: dict[str, torch.Tensor], model_kwargs: dict[str, Any]) -> dict[str, np.ndarray]:
    """log N(y_i; x_i^T w, sigma^2) at every draw, shape (chain, draw, n). y does not depend on gamma given w, so
    this is already the log-likelihood marginal over the enumerated gamma. The intercept's factor of centred y
    (``centred=True``) is one term per draw, not per observation, and is not part of it."""
    X, y = model_kwargs["X"], model_kwargs["y"]
    w = torch.as_tensor(posterior["w"], dtype=X.dtype, device=X.device)
    s2 = torch.as_tensor(posterior["sigma2"], dtype=X.dtype, device=X.device)
    mean = w @ X.T  # (C, S, n)
    ll = dist.Normal(mean, s2.sqrt().unsqueeze(-1)).log_prob(y)
    return {"y": ll.detach().cpu().numpy()}


def rao_blackwell_inclusion(w: torch.Tensor, sigma2: torch.Tensor, theta: torch.Tensor,
                            prior: SpikeSlabPrior) -> torch.Tensor:
    """P(gamma_d = 1 | w_d, sigma^2, theta) at every draw (same leading shape as ``w``)."""
    return torch.sigmoid(inclusion_log_odds(w, sigma2, theta, prior))


# ------------------------------------------------------------------------------------------------- simulators
def ar1_design(n: int, p: int, rho: float, gen: torch.Generator) -> torch.Tensor:
    """Rows N(0, Sigma) with Sigma_ij = rho^|i-j| (rho = 0: independent columns)."""
    Z = torch.randn(n, p, generator=gen, dtype=torch.float64)
    if rho == 0:
        return Z
    X = torch.empty_like(Z)
    X[:, 0] = Z[:, 0]
    c = math.sqrt(1 - rho**2)
    for j in range(1, p):
        X[:, j] = rho * X[:, j - 1] + c * Z[:, j]
    return X


def equicorrelated_design(n: int, p: int, rho: float, gen: torch.Generator) -> torch.Tensor:
    """Rows N(0, (1 - rho) I + rho 1 1^T): x_ij = sqrt(rho) z_i + sqrt(1 - rho) e_ij."""
    common = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    return math.sqrt(rho) * common + math.sqrt(1 - rho) * torch.randn(n, p, generator=gen, dtype=torch.float64)


def simulate_emvs_design(seed: int, *, n: int = 100, p: int = 1000, rho: float = 0.6,
                         noise_sd: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EMVS design: w = (1.5, 2, 2.5, 0, ..., 0), AR(1) correlated columns (rho), unit noise. Returns X, y, w."""
    seed = check_seed("seed", seed)
    n, p = check_int("n", n, minimum=2), check_int("p", p, minimum=3)
    check_rho("emvs", rho)  # rho = 2 failed with a raw "math domain error"
    check_positive("noise_sd", noise_sd)  # nan was drawn into y
    gen = torch.Generator().manual_seed(seed)
    X = ar1_design(n, p, rho, gen)
    w = torch.zeros(p, dtype=torch.float64)
    w[:3] = torch.tensor([1.5, 2.0, 2.5], dtype=torch.float64)
    y = X @ w + noise_sd * torch.randn(n, generator=gen, dtype=torch.float64)
    return X.numpy(), y.numpy(), w.numpy()


EQUICORR_SIGNALS = (0.5, 0.75, 1.0, 1.5, 2.0)


def simulate_equicorrelated_design(seed: int, *, n: int = 200, p: int = 50, rho: float = 0.5, noise_sd: float = 1.0,
                                   num_signals: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equicorrelated columns (rho), the first ``num_signals`` coefficients non-zero (cycling through 0.5, 0.75,
    1, 1.5, 2), unit noise. Returns X, y, w."""
    seed = check_seed("seed", seed)
    n, p = check_int("n", n, minimum=2), check_int("p", p, minimum=1)
    num_signals = check_int("num_signals", num_signals, minimum=0)
    if num_signals > p:
        raise PyrozooError(f"num_signals: expected at most p = {p}, got {num_signals}")
    check_rho("equicorrelated", rho)
    check_positive("noise_sd", noise_sd)
    gen = torch.Generator().manual_seed(seed)
    X = equicorrelated_design(n, p, rho, gen)
    w = torch.zeros(p, dtype=torch.float64)
    for j in range(num_signals):
        w[j] = EQUICORR_SIGNALS[j % len(EQUICORR_SIGNALS)]
    y = X @ w + noise_sd * torch.randn(n, generator=gen, dtype=torch.float64)
    return X.numpy(), y.numpy(), w.numpy()


DESIGNS = {"equicorrelated": simulate_equicorrelated_design, "emvs": simulate_emvs_design}


def default_lam(data: StandardizedData) -> float:
    """The data's default ``lam`` (the estimator's and ``--data``'s): the sample variance of y, y^T y / (n - 1) of the
    centred y (at least 1e-8), so that the prior on sigma^2 is in y's units and a fit does not depend on them."""
    return max(float(data.yty) / max(data.n - 1, 1), 1e-8)


def make_dataset(X: Any, y: Any, *, name: str = "spike-slab", device: Any = "cpu", w_true: Any = None,
                 **prior: Any) -> Dataset:
    """Validate and standardize (X, y), attach the prior (``lam=None``: :func:`default_lam` of the data);
    ``truth['w']`` is on the standardized scale. y is only centred: ``response_shift`` is its mean and
    ``response_scale`` 1 (the log-likelihood needs no Jacobian; the attrs map observed_data back).
    ``meta['y_centred']`` True records the centring (the intercept integrated out: n - 1 degrees of freedom for
    sigma^2, :attr:`~pyrozoo.models.spike_slab_prior.StandardizedData.dof`, in every inference but EM), and the
    model input ``centred=True`` gives :func:`spike_slab_model` the intercept's factor (SVI and NUTS)."""
    lam = prior.pop("lam", 1.0)
    prior_obj = as_prior(prior, lam=1.0 if lam is None else lam)  # checks the prior before any data work
    dev = resolve_device(device)
    data = standardize(X, y, device=dev)
    if lam is None:
        prior_obj = as_prior(prior_obj, lam=default_lam(data))
    truth = {}
    if w_true is not None:
        w_t = torch.as_tensor(np.asarray(w_true, dtype=np.float64), device=dev)
        truth = {"w": (w_t * data.x_scale).cpu().numpy(), "gamma": (w_t != 0).cpu().numpy().astype(float)}
    inputs = {"X": data.X, **prior_obj.to_dict(), "centred": data.centred}  # the model's intercept factor
    return Dataset(name, inputs=inputs, observed={"y": data.y}, truth=truth,
                   meta={"x_mean": data.x_mean.cpu().numpy(), "x_scale": data.x_scale.cpu().numpy(),
                         "y_mean": data.y_mean, "y_centred": True, **response_map(data.y_mean, 1.0)})


def spike_slab_from_file(path: str, seed: int, *, outcome: str = "", features: str = "", device: Any = "cpu",
                         **options: Any) -> Dataset:
    """A user's CSV (``--data``): y is column ``outcome``, X the ``features`` (default every other column, all
    numeric), read by :func:`~pyrozoo.data.regression_file.read_regression_file` and standardized as
    :func:`make_dataset` does for the simulator; the feature names become the result's ``feature`` coordinate.
    ``lam`` None (the entry's default) is the sample variance of y (:func:`default_lam`), as in
    :class:`SpikeSlabRegression`: with the simulator's lam = 1 the fit depended on y's units (y in 1e-4 units
    selected nothing). No truth: the metrics leave out selection F1 and coefficient RMSE."""
    check_seed("seed", seed)  # not used (no random draws), but a seed out of range is refused as everywhere
    X, y = read_regression_file(path, outcome=outcome, features=features)
    prior = {k: options[k] for k in PRIOR_KEYS if k in options}
    prior.setdefault("lam", None)
    dataset = make_dataset(X.to_numpy(), y, name=Path(path).stem, device=device, **prior)
    dataset.meta["feature_names"] = list(X.columns)
    return dataset


def check_rho(design: str, rho: Any) -> None:
    """Raise unless ``rho`` is a correlation the ``design`` can have: the AR(1) correlation rho^|i-j| (emvs) needs
    |rho| < 1; an equicorrelation matrix is positive semi-definite for rho in [0, 1)."""
    number = isinstance(rho, (int, float, np.integer, np.floating)) and not isinstance(rho, (bool, np.bool_))
    if not (number and ((-1 < rho < 1) if design == "emvs" else (0 <= rho < 1))):
        rng = "(-1, 1)" if design == "emvs" else "[0, 1)"
        raise PyrozooError(f"rho: expected a correlation in {rng} for the {design} design, got {rho!r}")


# options only one design of the simulator reads (the emvs design fixes its three signals, 1.5, 2 and 2.5)
DESIGN_OPTIONS = {"num_signals": ("equicorrelated",)}


def check_spike_slab_options(config: RunConfig) -> None:
    """The entry's ``check_options``, on the options as given (before any data are simulated, and for every cell of
    a sweep): ``design`` one of :data:`DESIGNS` and ``em_variant`` one of :data:`EM_VARIANTS` (a misspelt variant
    was refused only by the simulator, so it failed each sweep cell instead of stopping the sweep); an option the
    chosen ``design`` does not read (:data:`DESIGN_OPTIONS`) is refused, as the entry refuses an option the inference
    does not read; ``rho`` must suit the design; ``nuts_max_tree_depth`` an integer >= 1 (with ``--data`` it was
    refused only by run_mcmc, as "max_tree_depth"); ``em_variant='hard'`` needs the conjugate prior (it failed only
    once the data were simulated and the fit had started)."""
    opts = config.options
    design = opts.get("design", "equicorrelated")
    check_choice("design", design, DESIGNS)
    if "em_variant" in opts:
        check_choice("em_variant", opts["em_variant"], EM_VARIANTS)
    unread = [k for k, designs in DESIGN_OPTIONS.items() if k in opts and design not in designs]
    if unread:
        k = unread[0]
        raise PyrozooError(f"options: {k} applies only to design {' or '.join(map(repr, DESIGN_OPTIONS[k]))}; with "
                           f"design {design!r} it would have no effect (remove it; the emvs design has the 3 "
                           f"signals 1.5, 2, 2.5)")
    if "rho" in opts:
        check_rho(design, opts["rho"])
    if "nuts_max_tree_depth" in opts:  # here, under the name the user typed: run_mcmc calls it max_tree_depth
        check_int("nuts_max_tree_depth", opts["nuts_max_tree_depth"], minimum=1)
    if opts.get("lam") is not None:  # its default is None (data-dependent), so the entry's type check skips it
        check_positive("lam", opts["lam"], scalar=True)
    if config.inference == "em" and opts.get("em_variant", "emvs") == "hard" and opts.get("conjugate", True) is False:
        raise PyrozooError("em_variant: the hard-gamma EM is derived for the conjugate prior, got em_variant='hard' "
                           "with conjugate=false; use em_variant='emvs' or conjugate=true")


def simulate_spike_slab(seed: int, *, design: str = "equicorrelated", n: int = 200, p: int = 50, rho: float = 0.5,
                        noise_sd: float = 1.0, num_signals: int = 5, device: Any = "cpu", em_variant: str = "emvs",
                        nuts_max_tree_depth: int = 10, **prior: Any) -> Dataset:
    """A benchmark design as a :class:`Dataset` (``design``: equicorrelated or emvs); ``lam`` None (the entry's
    default) is the model's 1."""
    check_seed("seed", seed)
    if prior.get("lam", 1.0) is None:
        prior["lam"] = SpikeSlabPrior.lam
    check_choice("design", design, DESIGNS)
    check_choice("em_variant", em_variant, EM_VARIANTS)
    check_int("nuts_max_tree_depth", nuts_max_tree_depth, minimum=1)
    check_positive("noise_sd", noise_sd)
    check_rho(design, rho)
    if design == "emvs":
        X, y, w = simulate_emvs_design(seed, n=n, p=p, rho=rho, noise_sd=noise_sd)
    else:
        X, y, w = simulate_equicorrelated_design(seed, n=n, p=p, rho=rho, noise_sd=noise_sd,
                                                 num_signals=num_signals)
    return make_dataset(X, y, name=f"spike-slab-{design}", device=device, w_true=w, **prior)


def dataset_to_standardized(dataset: Dataset) -> tuple[StandardizedData, SpikeSlabPrior]:
    """The :class:`StandardizedData` and prior of a spike-slab :class:`Dataset`. y counts as centred (n - 1 degrees
    of freedom) only where ``meta['y_centred']`` says so (:func:`make_dataset`); a Dataset built by hand with its
    own y keeps n. A model input ``centred`` (:func:`spike_slab_model`'s) must say the same, or PyrozooError."""
    X, y = dataset.inputs["X"], dataset.observed["y"]
    prior = as_prior({k: dataset.inputs[k] for k in PRIOR_KEYS})
    meta = dataset.meta
    centred = bool(meta.get("y_centred", False))
    if "centred" in dataset.inputs:
        check_bool("centred", dataset.inputs["centred"])
        if bool(dataset.inputs["centred"]) != centred:
            raise PyrozooError(f"centred: expected the model input to match meta['y_centred'] ({centred}: y "
                               f"{'centred' if centred else 'taken as given'}), got centred="
                               f"{dataset.inputs['centred']!r}; set both, or leave the input out")
    data = StandardizedData(X, y, torch.as_tensor(meta.get("x_mean", np.zeros(X.shape[1])), device=X.device),
                            torch.as_tensor(meta.get("x_scale", np.ones(X.shape[1])), device=X.device),
                            float(meta.get("y_mean", 0.0)), X.T @ X, X.T @ y, y @ y,
                            centred=centred)
    return data, prior


def spike_slab_kwargs(data: StandardizedData, prior: SpikeSlabPrior,
                      model_kwargs: dict | None = None) -> dict[str, Any]:
    """The keyword arguments of :func:`spike_slab_model` for ``data``: ``model_kwargs`` when given (a Dataset's),
    else X, y, the prior and ``centred = data.centred``. Raises PyrozooError when ``model_kwargs``' ``centred``
    (False when absent) is not ``data.centred``: the Pyro model (SVI, NUTS) would fit y with other degrees of
    freedom than Gibbs and the exact posterior of the same data."""
    if model_kwargs is None:
        return {"X": data.X, "y": data.y, **prior.to_dict(), "centred": data.centred}
    given = model_kwargs.get("centred", False)
    if not isinstance(given, (bool, np.bool_)) or bool(given) != data.centred:
        raise PyrozooError(f"model_kwargs: expected centred={data.centred} as the data's y "
                           f"({'centred' if data.centred else 'taken as given'}), got centred={given!r}")
    return model_kwargs


# ------------------------------------------------------------------------------------------- fitting (Results)
def _stored_probabilities(probs: Any) -> np.ndarray:
    """Inclusion probabilities as stored in the posterior: within 1e-12 of 1 they are 1 (sigmoid rounding). ArviZ's
    density plots fail on an entry whose draws span a few ulps below 1 ("Too many bins for data range"), and an
    exactly constant entry is one they handle."""
    probs = torch.as_tensor(probs).detach().cpu().numpy().astype(float)
    return np.where(probs > 1.0 - 1e-12, 1.0, probs)


def _stored_indicators(gamma: Any) -> np.ndarray:
    """0/1 inclusion indicators as integers, so that ArviZ treats them as discrete (histograms, not densities)."""
    return np.rint(torch.as_tensor(gamma).detach().cpu().numpy()).astype(np.int64)


def _finish(result: Result, prior: SpikeSlabPrior, *, seed: int | None = None) -> Result:
    """Add the Rao-Blackwellized inclusion probabilities as posterior variable ``inclusion_prob``, and, where the
    inference summed gamma out (SVI, NUTS: no ``gamma`` draws) and ``seed`` is given, the indicators ``gamma`` drawn
    from their exact conditional given each draw's other latents, gamma_d | w_d, sigma^2, theta ~
    Bernoulli(inclusion_prob_d) (independent over d given them), with a generator of their own seeded by ``seed``
    (the fit's random stream is not touched). Every inference then has the same posterior variables."""
    w = torch.as_tensor(result.posterior["w"])
    s2 = torch.as_tensor(result.posterior["sigma2"])
    th = torch.as_tensor(result.posterior["theta"])
    probs = rao_blackwell_inclusion(w, s2, th, prior)
    if "gamma" not in result.posterior and seed is not None:
        gen = torch.Generator().manual_seed(int(seed))
        result.posterior["gamma"] = torch.bernoulli(probs.detach().cpu().double(), generator=gen)
    result.posterior["inclusion_prob"] = _stored_probabilities(probs)
    result.dims["inclusion_prob"] = ["feature"]
    for name in ("w", "gamma"):
        if name in result.posterior:
            result.dims[name] = ["feature"]
    if "gamma" in result.posterior:
        result.posterior["gamma"] = _stored_indicators(result.posterior["gamma"])
    result.dims["y"] = ["obs_id"]
    return result


@keeps_caller_state
def em_result(data: StandardizedData, prior: SpikeSlabPrior, *, variant: str = "emvs", num_samples: int = 1000,
              seed: int = 0, ladder: Any = None, select: bool = True, max_iter: int = 500,
              model_kwargs: dict | None = None,
              model_name: str = "spike-slab", config: dict | None = None) -> tuple[Result, dict[str, Any]]:
    """EM fixed point plus ``num_samples`` draws from the Gaussian posterior of w given it (one chain).

    EMVS: w ~ N(w_hat, sigma^2 (X^T X + D*)^{-1}) around the mode, gamma ~ Bernoulli(p*); with ``select`` (and
    the conjugate prior) the rung of the spike-variance ladder with the best EMVS score log g(gamma) is chosen and
    w, sigma^2 are the posterior given its median-probability model (:func:`selected_model_posterior`);
    hard EM: w ~ N(mu, sigma^2 (X^T X + K^{-1})^{-1}) given the 0/1 gamma. sigma^2, theta are held at the estimate.
    Hard EM warns when p >= n and it kept every feature (its all-slab start's trap), naming EMVS.
    """
    check_choice("em_variant", variant, EM_VARIANTS)
    kwargs = spike_slab_kwargs(data, prior, model_kwargs)  # the model's centred only labels the trace: EM uses n
    set_seed(seed)
    if variant == "emvs":
        fit = fit_emvs(data, prior, ladder=ladder, select=select and prior.conjugate, max_iter=max_iter)
        penalty, mean, probs = fit.d_star, fit.w, fit.inclusion
        sigma2, theta, wall, conv, iters = fit.sigma2, fit.theta, fit.wall_time, fit.converged, fit.iterations
    else:
        fit = fit_hard_em(data, prior, max_iter=max_iter)
        penalty, mean, probs = 1.0 / prior.variances(fit.gamma), fit.w_mean, fit.gamma
        if data.p >= data.n and bool((fit.gamma > 0.5).all()):
            # the gamma step is a local search from the all-slab start, which keeps every feature when p >= n
            warnings.warn(f"spike-slab hard EM (em_variant='hard') kept all {data.p} features: with p >= n "
                          f"({data.p} >= {data.n}) its all-slab start keeps every feature, so this selection says "
                          f"nothing about which matter; use em_variant='emvs' (the default) there", UserWarning,
                          stacklevel=2)
        sigma2, theta, wall, conv, iters = fit.sigma2, fit.theta, fit.wall_time, fit.converged, fit.iterations
    with one_thread_if_small(min(data.n, data.p)):
        if variant == "emvs" and select and prior.conjugate:
            mean, cov, sigma2 = selected_model_posterior(data, prior, probs > 0.5)
        else:
            scale = 1.0 if prior.conjugate else sigma2
            cov = ridge_inverse(data, penalty, scale=scale) * (sigma2 if prior.conjugate else 1.0)
        cov = 0.5 * (cov + cov.T)
        draws = _mvn_draws(mean, cov, num_samples)
    opts = {"dtype": data.X.dtype, "device": data.X.device}
    posterior = {
        "w": draws.unsqueeze(0),
        "sigma2": torch.full((1, num_samples), sigma2, **opts),
        "theta": torch.full((1, num_samples), theta, **opts),
        "gamma": torch.bernoulli(probs.expand(1, num_samples, -1).contiguous()),
    }
    result = assemble_result(f"em-{variant}", spike_slab_model, kwargs, posterior, log_likelihood_fn=pointwise_loglik,
                             seed=seed, wall_time=wall, config=config, model_name=model_name,
                             params={"w": mean.cpu(), "sigma2": sigma2, "theta": theta, "inclusion": probs.cpu()})
    result.posterior["inclusion_prob"] = _stored_probabilities(probs.expand(1, num_samples, -1))
    result.posterior["gamma"] = _stored_indicators(result.posterior["gamma"])
    result.dims.update({"inclusion_prob": ["feature"], "w": ["feature"], "gamma": ["feature"], "y": ["obs_id"]})
    result.sample_stats["em_converged"] = np.full((1, num_samples), conv)
    result.attrs["log_likelihood"] = em_log_likelihood_note(variant, selected=variant == "emvs" and select
                                                            and prior.conjugate)
    summary = {"w": mean, "cov": cov, "inclusion": probs, "sigma2": sigma2, "theta": theta, "iterations": iters,
               "converged": conv, "fit": fit}
    return result, summary


def em_log_likelihood_note(variant: str, *, selected: bool, compare_with: tuple[str, ...] = ("gibbs", "nuts")) -> str:
    """``idata.attrs["log_likelihood"]`` of an EM result (as bnn's collapsed fits note theirs): the draws, and so
    the log-likelihood, condition on EM's point estimates, which LOO / WAIC / ``az.compare`` cannot see.
    ``compare_with``: the calling model's inferences whose draws carry that uncertainty, named as the ones to
    compare models with (spike-slab's gibbs and nuts, the default; effect-curve has gibbs only)."""
    given = {"emvs": "the median-probability model EMVS selected" if selected else "EMVS's spike/slab weights",
             "hard": "hard EM's 0/1 inclusion indicators"}[variant]
    return (f"conditional on EM point estimates: draws of w only, given point estimates of sigma2 and theta and "
            f"{given} (sigma2, theta, inclusion_prob are the same in every draw; gamma is drawn from "
            f"inclusion_prob, apart from w); az.loo, az.waic and az.compare ignore the uncertainty in those and "
            f"are optimistic: compare models with the {' or '.join(compare_with)} inference")


def selected_model_posterior(data: StandardizedData, prior: SpikeSlabPrior,
                             selected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Posterior of w given the selected model under the point-mass spike that EMVS's score log g(gamma) uses:
    w_g | y ~ (Student-t with) mean A^{-1} X_g^T y, A = X_g^T X_g + I / v1, covariance E[sigma^2 | y] A^{-1},
    E[sigma^2 | y] = (nu lam + y^T y - y^T X_g A^{-1} X_g^T y) / (n + nu - 2); the other coefficients are 0."""
    p, n = data.p, data.n
    opts = {"dtype": data.X.dtype, "device": data.X.device}
    mean, cov = torch.zeros(p, **opts), torch.zeros(p, p, **opts)
    Xg = data.X[:, selected]
    A = Xg.T @ Xg
    A.diagonal().add_(1.0 / prior.slab_var)
    L = torch.linalg.cholesky(A)
    b = Xg.T @ data.y
    m = torch.cholesky_solve(b.unsqueeze(-1), L).squeeze(-1)
    sigma2 = (prior.nu * prior.lam + float(data.yty - b @ m)) / max(n + prior.nu - 2.0, 1.0)
    idx = selected.nonzero().flatten()
    mean[idx] = m
    cov[idx.unsqueeze(-1), idx] = sigma2 * torch.cholesky_inverse(L)
    return mean, cov, sigma2


def _mvn_draws(mean: torch.Tensor, cov: torch.Tensor, num: int) -> torch.Tensor:
    """Draws from N(mean, cov) via a jittered Cholesky (cov is PSD up to round-off)."""
    p = mean.shape[0]
    jitter = 1e-12 * float(cov.diagonal().mean().clamp(min=1e-30))
    eye = torch.eye(p, dtype=cov.dtype, device=cov.device)
    for _ in range(6):
        L, info = torch.linalg.cholesky_ex(cov + jitter * eye)
        if int(info) == 0:
            break
        jitter *= 100
    z = torch.randn(num, p, dtype=cov.dtype, device=cov.device)
    return mean + z @ L.T


@keeps_caller_state
def gibbs_result(data: StandardizedData, prior: SpikeSlabPrior, *, num_samples: int = 1000, warmup_steps: int = 500,
                 num_chains: int = 8, thin: int = 1, seed: int = 0, progress: bool = False,
                 model_kwargs: dict | None = None, model_name: str = "spike-slab",
                 config: dict | None = None) -> Result:
    """SSVS through the shared Gibbs engine, ``num_chains`` chains vectorized."""
    kwargs = spike_slab_kwargs(data, prior, model_kwargs)
    result = run_gibbs(ssvs_kernel(prior), gibbs_data(data, prior), model=spike_slab_model, model_kwargs=kwargs,
                       num_samples=num_samples, warmup_steps=warmup_steps, num_chains=num_chains, thin=thin,
                       seed=seed, progress=progress, log_likelihood_fn=pointwise_loglik, model_name=model_name,
                       config=config)
    return _finish(result, prior)


# ------------------------------------------------------------------------------------------ sklearn estimator
class SpikeSlabRegression(RegressorMixin, BaseEstimator):
    """Spike-and-slab linear regression, a scikit-learn regressor (``Pipeline``, ``clone``, ``cross_val_score``,
    ``GridSearchCV`` over any setting or prior option, ``check_is_fitted``, pickle).

    ``SpikeSlabRegression(inference="em" | "gibbs" | "svi" | "nuts", seed=0, device="cpu", spike_var=..., ...)``
    ``.fit(X, y)``

    X is standardized column-wise (mean 0, population sd 1) and y centred internally; the intercept is mean(y) and
    the fitted attributes are on the original scale of X:

    * ``coef_`` (p,): posterior mean of w (EMVS: E[w | y, selected model], or the EMVS mode of w with
      ``em_select=False``; hard EM: E[w | gamma_hat, sigma^2_hat]);
    * ``intercept_``; ``sigma2_`` (posterior mean or estimate of the noise variance);
    * ``inclusion_probabilities_`` (p,): P(gamma_d = 1 | y) (EMVS: p*_d at the fixed point; hard EM: 0/1 gamma);
    * ``coef_cov_`` (p, p): posterior covariance of w (EM: the Gaussian posterior of w given p* / gamma);
    * ``selected_`` (p,) bool: the median-probability model (inclusion probability > 0.5);
    * ``n_features_in_``; ``feature_names_in_`` (only when X was a DataFrame with string column names: they are
      also the ``feature`` coordinate of ``result_.to_inference_data()``, and ``predict`` then refuses a DataFrame
      whose columns differ from them, renamed or reordered, rather than guess);
    * ``result_``: the :class:`~pyrozoo.inference.result.Result` (``result_.to_inference_data()``; its attrs
      ``response_shift`` = mean(y) and ``response_scale`` = 1 map the centred ``observed_data`` back, as in a
      ``pyrozoo run spike-slab --data`` run).

    Prior options (see :class:`~pyrozoo.models.spike_slab_prior.SpikeSlabPrior`): ``spike_var`` (0.01),
    ``slab_var`` (10), ``a0``, ``b0`` (1, 1), ``nu`` (1), ``lam`` (None: the sample variance of y, so the
    InverseGamma prior is centred on the scale of y), ``conjugate`` (True). Sampler settings: ``num_samples``,
    ``warmup_steps``, ``num_chains``, ``steps`` and ``lr`` (SVI), ``em_variant`` ("emvs" or "hard", the latter
    for the conjugate prior only), ``ladder`` (EMVS spike variances: None or a non-empty list, each > 0 and below
    ``slab_var``), ``em_select`` (EMVS's model selection: None, the default, selects with the conjugate prior and
    not with the independent one, whose models have no closed-form score; True with ``conjugate=False`` is
    refused), ``max_iter``, ``progress``. Every one is a constructor parameter (``get_params`` lists them all);
    the constructor and :meth:`set_params` check them, also those the chosen inference does not read, and the
    combinations the prior rules out, and raise :class:`~pyrozoo.errors.PyrozooError` (a ``ValueError``) on a bad
    value or an unknown name. Bool settings take NumPy bools too and keep them as Python bools; integral floats
    become ints.
    """

    def __init__(self, inference: str = "em", *, seed: int = 0, device: str = "cpu", num_samples: int = 1000,
                 warmup_steps: int = 500, num_chains: int = 4, steps: int = 2000, lr: float = 0.02,
                 em_variant: str = "emvs", ladder: Any = None, em_select: bool | None = None, max_iter: int = 500,
                 progress: bool = False, spike_var: float = 0.01, slab_var: float = 10.0, a0: float = 1.0,
                 b0: float = 1.0, nu: float = 1.0, lam: float | None = None, conjugate: bool = True,
                 **unknown: Any) -> None:
        # **unknown only turns a misspelt option into the PyrozooError below; scikit-learn's get_params ignores it
        if unknown:  # the settings are the constructor's other parameters
            settings = [k for k in inspect.signature(type(self).__init__).parameters
                        if k not in (*PRIOR_KEYS, "self", "unknown")]
            raise PyrozooError(f"SpikeSlabRegression: expected prior options ({', '.join(PRIOR_KEYS)}) or settings "
                               f"({', '.join(settings)}), got unknown option(s) {', '.join(sorted(unknown))}")
        check_choice("inference", inference, INFERENCES)
        check_choice("em_variant", em_variant, EM_VARIANTS)
        # check_int returns integral floats (100.0) as ints: keep what it returns (an int comes back as itself, so
        # scikit-learn's clone finds the parameters it passed)
        num_samples, num_chains, max_iter = (check_int(name, val, minimum=1) for name, val in (
            ("num_samples", num_samples), ("num_chains", num_chains), ("max_iter", max_iter)))
        warmup_steps, steps = check_int("warmup_steps", warmup_steps), check_int("steps", steps)
        seed = check_seed("seed", seed)  # [0, 2**32 - 1], as fit's set_seed takes it (2**32 was refused only there)
        check_positive("lr", lr, scalar=True)  # only SVI reads it; a bad one failed only at an SVI fit
        # a NumPy bool counts (a GridSearchCV grid np.array([True, False])) and is kept as a Python bool: clone
        # finds again what it passes, as for the integers above
        for name, flag in (("em_select", em_select), ("progress", progress), ("conjugate", conjugate)):
            if not (name == "em_select" and flag is None):
                check_bool(name, flag)
        em_select = None if em_select is None else bool(em_select)
        progress, conjugate = bool(progress), bool(conjugate)
        # settings that the prior rules out: refused here, as a bad value is (they were accepted, and the hard EM
        # failed only at fit while em_select=True was silently dropped)
        if em_variant == "hard" and not conjugate:
            raise PyrozooError("em_variant: the hard-gamma EM is derived for the conjugate prior, got "
                               "em_variant='hard' with conjugate=False; use em_variant='emvs' or conjugate=True")
        if em_select and not conjugate:
            raise PyrozooError("em_select: EMVS's model selection scores models by log g, which needs the conjugate "
                               "prior; got em_select=True with conjugate=False (use em_select=None or False, or "
                               "conjugate=True)")
        resolve_device(device)
        prior = {"spike_var": spike_var, "slab_var": slab_var, "a0": a0, "b0": b0, "nu": nu, "conjugate": conjugate}
        as_prior(prior, lam=1.0 if lam is None else lam)  # validate now, before any data
        if ladder is not None:  # only EMVS reads it; an empty one failed inside the fit
            check_ladder(ladder, slab_var)
        self.inference, self.seed, self.device = inference, seed, device
        self.num_samples, self.warmup_steps, self.num_chains = num_samples, warmup_steps, num_chains
        self.steps, self.lr, self.em_variant, self.ladder = steps, lr, em_variant, ladder
        self.em_select = em_select
        self.max_iter, self.progress = max_iter, progress
        self.spike_var, self.slab_var, self.a0, self.b0, self.nu = spike_var, slab_var, a0, b0, nu
        self.lam, self.conjugate = lam, conjugate

    @property
    def prior_options(self) -> dict[str, Any]:
        """The prior options other than ``lam`` (which is fixed only at fit time when None)."""
        return {k: getattr(self, k) for k in PRIOR_KEYS if k != "lam"}

    def set_params(self, **params: Any) -> SpikeSlabRegression:
        """Set parameters by name (as scikit-learn's), then run the constructor's checks on the result; an unknown
        name raises :class:`~pyrozoo.errors.PyrozooError`, a ``ValueError`` as scikit-learn raises."""
        current = self.get_params(deep=False)
        unknown = sorted(set(params) - set(current))
        if unknown:
            raise PyrozooError(f"set_params: expected parameters of SpikeSlabRegression ({', '.join(current)}), "
                               f"got {', '.join(map(repr, unknown))}")
        self.__init__(**{**current, **params})
        return self

    # fitted attributes that do not end in "_" (the public ones all do, as in scikit-learn)
    _PRIVATE_FITTED = ("_draws_std", "_x_mean", "_x_scale", "_y_mean")

    @keeps_caller_state
    def fit(self, X: Any, y: Any) -> SpikeSlabRegression:
        """Validate (X, y), standardize, run the chosen inference; returns self. A DataFrame's string column names
        become ``feature_names_in_`` and the result's ``feature`` coordinate. The fitted attributes are replaced
        together once the inference has finished: those of an earlier fit that this one does not set (``em_fit_``
        after a refit by MCMC or SVI, ``feature_names_in_`` after a refit on an array) are removed, and a fit that
        raises leaves the earlier fit as it was."""
        names = feature_names(X)
        dev = resolve_device(self.device)
        data = standardize(X, y, device=dev)
        lam = float(self.lam) if self.lam is not None else default_lam(data)
        prior = as_prior(self.prior_options, lam=lam)
        fitted: dict[str, Any] = {"prior_": prior, "n_features_in_": data.p}
        if names is not None:
            fitted["feature_names_in_"] = names
        kwargs = spike_slab_kwargs(data, prior)  # centred=True: y is centred here (n - 1 degrees of freedom)
        # the pointwise log-likelihood's size, known before the fit: one too large is left out with a warning now
        chains = self.num_chains if self.inference in ("gibbs", "nuts") else 1
        leave_out = log_likelihood_skipped() or not keep_pointwise_log_likelihood(chains, self.num_samples, data.n)
        with without_log_likelihood(leave_out):
            if self.inference == "em":
                select = prior.conjugate if self.em_select is None else self.em_select
                result, summary = em_result(data, prior, variant=self.em_variant, num_samples=self.num_samples,
                                            seed=self.seed, ladder=self.ladder, select=select,
                                            max_iter=self.max_iter, model_kwargs=kwargs)
                w_std, cov_std = summary["w"], summary["cov"]
                probs, sigma2 = summary["inclusion"], summary["sigma2"]
                fitted.update(em_fit_=summary["fit"], _draws_std=None)
            else:
                if self.inference == "gibbs":
                    result = gibbs_result(data, prior, num_samples=self.num_samples, warmup_steps=self.warmup_steps,
                                          num_chains=self.num_chains, seed=self.seed, progress=self.progress,
                                          model_kwargs=kwargs)
                else:
                    from pyrozoo.models.spike_slab_pyro import nuts_result, svi_result

                    if self.inference == "svi":
                        result = svi_result(data, prior, steps=self.steps, lr=self.lr, num_samples=self.num_samples,
                                            seed=self.seed, progress=self.progress, model_kwargs=kwargs)
                    else:
                        result = nuts_result(data, prior, num_samples=self.num_samples, warmup_steps=self.warmup_steps,
                                             num_chains=self.num_chains, seed=self.seed, progress=self.progress,
                                             model_kwargs=kwargs)
                w_draws = torch.as_tensor(result.draws("w"), dtype=data.X.dtype, device=dev)
                w_std = w_draws.mean(0)
                cov_std = torch.cov(w_draws.T).reshape(data.p, data.p)
                probs = torch.as_tensor(result.draws("inclusion_prob")).mean(0)
                sigma2 = float(result.draws("sigma2").mean())
                fitted["_draws_std"] = w_draws
        scale = data.x_scale
        inclusion = torch.as_tensor(probs).cpu().numpy().astype(float)
        if names is not None:
            result.coords["feature"] = names.tolist()
        # y was centred here, as for `pyrozoo run spike-slab --data` (make_dataset): the same attrs map observed_data
        # back, y = response_shift + 1 * y_obs (scale 1: the log-likelihood is already in y's units)
        response_in_data_units(result, data.y_mean, 1.0)
        fitted.update(coef_=(w_std / scale).cpu().numpy(),
                      coef_cov_=(cov_std / scale[:, None] / scale[None, :]).cpu().numpy(),
                      intercept_=float(data.y_mean - float(data.x_mean @ (w_std / scale))),
                      inclusion_probabilities_=inclusion, selected_=inclusion > 0.5, sigma2_=float(sigma2),
                      result_=result, _x_mean=data.x_mean, _x_scale=scale, _y_mean=data.y_mean)
        self._clear_fit()
        for name, value in fitted.items():
            setattr(self, name, value)
        return self

    def _clear_fit(self) -> None:
        """Remove every fitted attribute: the public ones end in "_" (scikit-learn's rule, which ``check_is_fitted``
        reads), the private ones are :attr:`_PRIVATE_FITTED`."""
        for name in list(vars(self)):
            if (name.endswith("_") and not name.startswith("_")) or name in self._PRIVATE_FITTED:
                delattr(self, name)

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedSpikeSlabError(
                "SpikeSlabRegression: expected a fitted estimator, got one that is not fitted; call fit(X, y) first")

    def _check_feature_names(self, X: Any) -> None:
        """As scikit-learn: a DataFrame's columns must be the fit's, in the fit's order; a warning when only one of
        fit and predict had names."""
        names, fitted = feature_names(X), getattr(self, "feature_names_in_", None)
        if names is not None and fitted is not None:
            check_feature_names(X, fitted)
        elif fitted is not None:
            warnings.warn("X has no feature names, but SpikeSlabRegression was fitted with feature names",
                          UserWarning, stacklevel=3)
        elif names is not None:
            warnings.warn("X has feature names, but SpikeSlabRegression was fitted without feature names",
                          UserWarning, stacklevel=3)

    def _new_X(self, X: Any) -> np.ndarray:
        """New ``X`` as a float64 array, after fit's checks (pandas categorical or text columns, text, complex
        numbers, NaN and inf are refused) and with the fit's number of columns."""
        self._check_fitted()
        self._check_feature_names(X)
        check_pandas_numeric(X)  # categories are labels, not amounts: fit refuses them, and so does predict
        Xn = as_tensor("X", X, dtype=torch.float64, detach=True).cpu().numpy()
        if Xn.ndim != 2 or Xn.shape[1] != self.n_features_in_:
            raise PyrozooError(f"X: expected shape (any, {self.n_features_in_}), got {Xn.shape}")
        check_finite("X", Xn)
        return Xn

    def predict(self, X: Any) -> np.ndarray:
        """Posterior mean prediction intercept_ + X coef_ (original scale); ``X`` is checked as in :meth:`fit`."""
        Xn = self._new_X(X)  # first: it says when the estimator is not fitted
        return self.intercept_ + Xn @ self.coef_

    def sample_coef(self, num_samples: int) -> np.ndarray:
        """(num_samples, p) draws of w on the original scale: MCMC/SVI draws (resampled when more are asked for
        than were kept), EM: the Gaussian posterior N(coef_, coef_cov_)."""
        self._check_fitted()
        num_samples = check_int("num_samples", num_samples, minimum=1)
        gen = torch.Generator().manual_seed(self.seed + 1)
        if self._draws_std is None:
            mean = torch.as_tensor(self.coef_)
            cov = torch.as_tensor(self.coef_cov_)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed + 1)
                return _mvn_draws(mean, 0.5 * (cov + cov.T), num_samples).numpy()
        draws = self._draws_std.cpu()
        total = draws.shape[0]
        if num_samples <= total:
            idx = torch.randperm(total, generator=gen)[:num_samples]
        else:
            idx = torch.randint(total, (num_samples,), generator=gen)
        return (draws[idx] / self._x_scale.cpu()).numpy()

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """R^2 of the prediction, 1 - sum_i w_i (y_i - yhat_i)^2 / sum_i w_i (y_i - ybar_w)^2 (scikit-learn's
        regressor score, ``sample_weight`` w_i = 1 by default). Rows are paired by position, as in :meth:`fit`:
        pandas ``X``, ``y`` (and ``sample_weight``) must share one index
        (:func:`~pyrozoo.validation.check_same_index`; labels in another order scored the wrong pairs)."""
        from sklearn.metrics import r2_score

        check_same_index(X=X, y=y, sample_weight=sample_weight)
        pred = self.predict(X)
        check_pandas_numeric(None, y)  # y as fit checks it: no categorical, text or complex values, no NaN
        y = as_tensor("y", y, dtype=torch.float64, detach=True).cpu().numpy().ravel()
        if y.shape != pred.shape:
            raise PyrozooError(f"y: expected {pred.shape[0]} values like the rows of X, got {y.shape[0]}")
        check_finite("y", y)
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=float).ravel()
            if sample_weight.shape != pred.shape:
                raise PyrozooError(f"sample_weight: expected {pred.shape[0]} values like the rows of X, got "
                                   f"{sample_weight.shape[0]}")
            if not np.all(np.isfinite(sample_weight)) or np.any(sample_weight < 0):
                raise PyrozooError("sample_weight: expected finite values >= 0, got a negative or non-finite one")
        return float(r2_score(y, pred, sample_weight=sample_weight))


class NotFittedSpikeSlabError(PyrozooError, NotFittedError):
    """predict / score / sample_coef before fit: a PyrozooError and scikit-learn's NotFittedError."""


# ----------------------------------------------------------------------------------------------- zoo entry
@keeps_caller_state
def fit_spike_slab(dataset: Dataset, config: RunConfig) -> Result:
    """Run ``config.inference`` (em, gibbs, svi, nuts) on a standardized dataset."""
    config = checked_config("spike-slab", config)  # a direct call gets run_model's checks
    data, prior = dataset_to_standardized(dataset)
    # meta['y_centred'] decides (dataset_to_standardized checks that an input centred agrees): SVI and NUTS fit
    # the model with the intercept's factor exactly where Gibbs uses n - 1 degrees of freedom
    kwargs = {**dataset.model_kwargs(), "centred": data.centred}
    variant = config.options.get("em_variant", "emvs")
    common = {"seed": config.seed, "model_kwargs": kwargs, "model_name": config.model, "config": config.to_dict()}
    if config.inference == "em":
        result, _ = em_result(data, prior, variant=variant, num_samples=config.num_samples, **common)
        return _with_feature_names(result, dataset)
    if config.inference == "gibbs":
        return _with_feature_names(gibbs_result(data, prior, num_samples=config.num_samples,
                                                warmup_steps=config.warmup_steps, num_chains=config.num_chains,
                                                progress=config.progress, **common), dataset)
    from pyrozoo.models.spike_slab_pyro import nuts_result, svi_result

    if config.inference == "svi":
        result = svi_result(data, prior, steps=config.steps, lr=config.lr or 0.02, num_samples=config.num_samples,
                            progress=config.progress, **common)
    else:
        result = nuts_result(data, prior, num_samples=config.num_samples, warmup_steps=config.warmup_steps,
                             num_chains=config.num_chains, progress=config.progress, jit_compile=config.jit,
                             max_tree_depth=config.options.get("nuts_max_tree_depth", 10), **common)
    return _with_feature_names(result, dataset)


def _with_feature_names(result: Result, dataset: Dataset) -> Result:
    """Label the ``feature`` axis with the dataset's ``feature_names`` (a data file's columns) when it has them."""
    if dataset.meta.get("feature_names") is not None:
        result.coords["feature"] = list(dataset.meta["feature_names"])
    return result


def spike_slab_metrics(result: Result, dataset: Dataset) -> dict[str, float]:
    """Selection F1 of the median-probability model, coefficient RMSE (standardized scale), sigma^2, wall time."""
    probs = result.draws("inclusion_prob").mean(0)
    w = result.draws("w").mean(0)
    out = {"wall_time": float(result.wall_time), "sigma2_mean": float(result.draws("sigma2").mean()),
           "num_selected": float((probs > 0.5).sum())}
    if "w" in dataset.truth:
        out.update(selection_metrics(probs > 0.5, dataset.truth["w"] != 0))
        out["coef_rmse"] = float(np.sqrt(np.mean((w - dataset.truth["w"]) ** 2)))
    return out


def selection_metrics(selected: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of a selected set against the true support (F1 = 1 when both are empty)."""
    selected, true = np.asarray(selected, bool), np.asarray(true, bool)
    tp = float((selected & true).sum())
    fp, fn = float((selected & ~true).sum()), float((~selected & true).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 1.0
    return {"precision": precision, "recall": recall, "f1": f1}


def plot_inclusion_probabilities(probs: Any, *, truth: Any = None, names: Any = None, ax: Any = None,
                                 title: str = "Posterior inclusion probabilities"):
    """Stem plot of P(gamma_d = 1 | y) with the 0.5 line of the median-probability model; true signals (if given)
    are marked in a second colour. Returns the matplotlib Axes."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    probs = np.asarray(probs, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, min(0.12 * probs.size, 16.0)), 3.2))
    idx = np.arange(probs.size)
    ax.vlines(idx, 0, probs, color="tab:blue", lw=1.2)
    ax.plot(idx, probs, "o", color="tab:blue", ms=3, label="inclusion probability")
    if truth is not None:
        t = np.asarray(truth, dtype=bool)
        ax.plot(idx[t], probs[t], "o", color="tab:red", ms=5, label="true signal")
    ax.axhline(0.5, color="grey", ls="--", lw=0.8, label="median-probability threshold")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("feature")
    ax.set_ylabel("P(gamma_d = 1 | y)")
    if names is not None and probs.size <= 40:
        ax.set_xticks(idx, list(names), rotation=90)
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=7)
    return ax


def spike_slab_artifacts(result: Result, dataset: Dataset, out_dir: Path) -> None:
    """plots/inclusion_probabilities.png in the run directory."""
    import matplotlib.pyplot as plt

    plots = Path(out_dir) / "plots"
    plots.mkdir(exist_ok=True)
    ax = plot_inclusion_probabilities(result.draws("inclusion_prob").mean(0),
                                      truth=dataset.truth.get("gamma"), title=f"{result.inference}: inclusion")
    ax.figure.tight_layout()
    ax.figure.savefig(plots / "inclusion_probabilities.png", dpi=100)
    plt.close(ax.figure)


@register("spike-slab")
def spike_slab_entry() -> ZooModel:
    return ZooModel(
        name="spike-slab",
        model=spike_slab_model,
        simulate=simulate_spike_slab,
        fit=fit_spike_slab,
        inferences=("em", "gibbs", "svi", "nuts"),
        settings={"em": ("num_samples",), "gibbs": GIBBS_SETTINGS, "svi": SVI_SETTINGS, "nuts": MCMC_SETTINGS},
        metrics=spike_slab_metrics,
        options={"design": "equicorrelated", "n": 200, "p": 50, "rho": 0.5, "noise_sd": 1.0, "num_signals": 5,
                 "em_variant": "emvs", "nuts_max_tree_depth": 10, **SpikeSlabPrior().to_dict(),
                 "lam": None, **FILE_OPTIONS},  # lam None: 1 for the simulator, the sample variance of y with --data
        inference_options={"em_variant": ("em",), "nuts_max_tree_depth": ("nuts",)},
        check_options=check_spike_slab_options,
        from_file=spike_slab_from_file,
        text_options=tuple(FILE_OPTIONS),
        float_options=("lam",),  # its default None is not a float: a sweep's lam = 1 is still lam = 1.0
        option_notes={"lam": "default 1.0; with the simulated data; with a data file (--data): the sample variance "
                             "of y, y^T y / (n - 1) of the centred y"},
        data_options={**{k: ("simulator",) for k in ("design", "n", "p", "rho", "noise_sd", "num_signals")},
                      **{k: ("file",) for k in FILE_OPTIONS}},
        # nuts_max_tree_depth is NUTS's own: the other inferences' tiny runs leave it out (ZooModel.tiny)
        tiny={"num_samples": 30, "warmup_steps": 20, "num_chains": 2, "steps": 30,
              "options": {"n": 40, "p": 4, "num_signals": 2, "nuts_max_tree_depth": 3}},
        description="Spike-and-slab linear regression: EMVS/EM, SSVS Gibbs, enumerated SVI and NUTS",
        artifacts=spike_slab_artifacts,
    )
