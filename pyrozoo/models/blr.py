"""Conjugate Bayesian linear regression (Normal–Gamma prior on weights and noise precision).

    tau ~ Gamma(a0, b0)                      (noise precision; fixed to 1 / noise^2 when ``noise > 0``)
    w | tau ~ N(0, prior_scale^2 / tau * I_D)
    y_i | w, tau ~ N(x_i^T w, 1 / tau)

The posterior is closed form (Normal–Gamma): with Lam = I / prior_scale^2 + X^T X,

    w | tau, y ~ N(mu, Lam^{-1} / tau),   mu = Lam^{-1} X^T y
    tau | y ~ Gamma(a0 + N / 2, b0 + (y^T y - mu^T Lam mu) / 2)

so the predictive of a new y at x is Student-t with 2 a_N degrees of freedom, location x^T mu and squared scale
(b_N / a_N) (1 + x^T Lam^{-1} x); with known noise it is N(x^T mu, noise^2 (1 + x^T Lam^{-1} x)).

The ``exact`` engine draws i.i.d. from this posterior; ``nuts`` runs Pyro's NUTS on the same model, as a check.
Real data (Boston, Concrete, ``--data``) are standardized (inputs and response, y_std = (y - m) / s) and get a
leading intercept column; the entry's ``noise`` option is then still read in y's own units (the model is given
noise / s), as on simulated data, whose y is not scaled. Functions that take y as given (:func:`make_dataset`,
:func:`blr_posterior`, :func:`blr_model`) read ``noise`` in the units of that y.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from pyrozoo.config import RunConfig
from pyrozoo.data.dataset import Dataset
from pyrozoo.data.regression_file import FILE_OPTIONS, read_regression_file
from pyrozoo.data.uci import load_uci
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.assemble import assemble_result
from pyrozoo.inference.device import keeps_caller_state, resolve_device, set_seed
from pyrozoo.inference.from_config import mcmc_from_config
from pyrozoo.inference.result import Result
from pyrozoo.registry import MCMC_SETTINGS, ZooModel, checked_config, register
from pyrozoo.validation import (
    GAMMA_SHAPE_MAX,
    RANDN_BOUND,
    check_float_dtype,
    check_int,
    check_keys,
    check_normal_draws,
    check_positive,
    check_prior_range,
    check_seed,
    check_unique,
    check_xy,
    real_array,
    usable_range,
)

PRIOR_DEFAULTS: dict[str, float] = {"prior_scale": 1.0, "a0": 2.0, "b0": 1.0, "noise": 0.0}
INTERCEPT = "intercept"  # the label of the design's leading column of ones (shipped data, --data, simulated)
PRIOR_RANGE = usable_range()  # (1e-150, 1e150): the float64 magnitudes check_prior accepts (a0 at most 1e12)
NOISE_PRIOR = ("a0", "b0")  # the Gamma(a0, b0) prior on tau: unused when noise > 0 fixes tau = 1 / noise^2


def noise_prior_error(given: dict[str, Any], noise: Any) -> PyrozooError:
    """``a0``/``b0`` given (``given``: name -> value) with a known noise sd ``noise > 0``: they would be ignored."""
    names = ", ".join(given)
    got = ", ".join(f"{k}={v!r}" for k, v in given.items())
    it, them = ("it", "it") if len(given) == 1 else ("they", "them")
    return PyrozooError(f"{names}: expected no prior on the noise precision with noise={float(noise):g} > 0, which "
                        f"fixes tau = 1 / noise^2 (a0, b0 are its Gamma prior, used only with noise=0), got {got}; "
                        f"{it} would have no effect (remove {them}, or drop noise to put the Gamma(a0, b0) prior on "
                        f"tau)")


def check_noise_prior(prior: dict[str, Any]) -> None:
    """Raise :func:`noise_prior_error` when ``prior`` (as given: ``None`` values are not given) sets ``a0`` or
    ``b0`` together with ``noise > 0``."""
    given = {k: prior[k] for k in NOISE_PRIOR if prior.get(k) is not None}
    noise = prior.get("noise")
    if given and noise is not None and float(noise) > 0:
        raise noise_prior_error(given, noise)


def blr_model(x: torch.Tensor, y: torch.Tensor | None = None, *, prior_scale: float = 1.0, a0: float = 2.0,
              b0: float = 1.0, noise: float = 0.0) -> torch.Tensor:
    """The Pyro model; ``x`` is the (N, D) design (intercept column included), ``y=None`` gives the prior predictive.
    ``noise > 0`` fixes the noise sd (no ``tau`` site); ``noise == 0`` puts a Gamma(a0, b0) prior on the precision.
    The prior is checked first (:func:`check_prior`: a negative ``noise`` is an error, not the unknown-noise model),
    by plain comparisons on the host for Python and NumPy numbers (this runs at every step); a tensor passes
    unchecked (reading a CUDA value would sync), though ``noise``'s value still picks the model's branch."""
    if not all(isinstance(v, torch.Tensor) or (_host_number(v) and ((k == "noise" and v == 0)
                                                                    or PRIOR_RANGE[0] <= v <= top))
               for k, v, top in (("prior_scale", prior_scale, PRIOR_RANGE[1]), ("a0", a0, GAMMA_SHAPE_MAX),
                                 ("b0", b0, PRIOR_RANGE[1]), ("noise", noise, PRIOR_RANGE[1]))):
        check_prior(prior_scale, a0, b0, noise)  # the slow path: raises naming the argument
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise PyrozooError(f"x: expected a 2-D (N, D) tensor (the design, intercept column included), got {got}")
    opts = {"dtype": x.dtype, "device": x.device}
    n, d = x.shape
    if noise > 0:
        tau = torch.tensor(1.0 / float(noise) / float(noise), **opts)
    else:
        tau = pyro.sample("tau", dist.Gamma(torch.as_tensor(a0, **opts), torch.as_tensor(b0, **opts)))
    with pyro.plate("feature", d):
        w = pyro.sample("w", dist.Normal(torch.zeros((), **opts), prior_scale * tau.rsqrt()))
    with pyro.plate("obs_id", n):
        return pyro.sample("y", dist.Normal((w.unsqueeze(-2) * x).sum(-1), tau.rsqrt()), obs=y)


def check_prior(prior_scale: float, a0: float, b0: float, noise: float, *,
                dtype: torch.dtype = torch.float64) -> None:
    """Raise unless ``prior_scale``, ``a0``, ``b0`` are > 0 and ``noise`` >= 0 (0: unknown noise), each (``noise``
    unless 0) within :func:`~pyrozoo.validation.usable_range` for float64 (1e-150 to 1e150; for float32 ``dtype`` also
    1e-30 to 1e30, and 1e-15 to 1e15 for ``noise``, squared in that dtype; the shape
    ``a0`` at most :data:`~pyrozoo.validation.GAMMA_SHAPE_MAX`, 1e12): prior_scale=1e155 overflowed 1 / prior_scale^2
    (after the whole NUTS fit), 1e-160 made the posterior precision's Cholesky fail."""
    check_positive("prior_scale", prior_scale)
    check_positive("a0", a0)
    check_positive("b0", b0)
    want = "a number >= 0 (0 = unknown, Gamma prior on the precision)"
    arr = real_array("noise", noise, want=want)  # a Python or NumPy number, or a 0-d tensor
    if arr.ndim != 0 or not math.isfinite(float(arr)) or float(arr) < 0:
        raise PyrozooError(f"noise: expected {want}, got {noise!r}")
    # the closed form (blr_posterior) and the metrics square prior_scale and b0 in float64: the float64 range always;
    # a float32 model (NUTS, the log-likelihood replay) only carries prior_scale, a0, b0 (Normal(0, prior_scale /
    # sqrt(tau)), Gamma(a0, b0)): representable there (1e-30 to 1e30; b0=1e-38 gave a zero rate), not squared, while
    # noise is squared in the data's dtype (tau = 1 / noise^2): the dtype's range
    for dt in dict.fromkeys((torch.float64, dtype)):  # float64 first, each once
        squared = dt == torch.float64
        check_prior_range("prior_scale", prior_scale, dtype=dt, squared=squared)
        check_prior_range("a0", a0, dtype=dt, high=GAMMA_SHAPE_MAX, squared=squared)
        check_prior_range("b0", b0, dtype=dt, squared=squared)
    check_prior_range("noise", noise, dtype=dtype, zero=True)


def check_design(x: Any, y: Any, *, x_name: str = "x", y_name: str = "y") -> None:
    """Raise unless ``x`` is a 2-D (N, D) tensor and ``y`` an (N,) tensor, the shapes the closed forms read: a column
    ``y`` (N, 1) failed inside ``cholesky_solve`` ("Incompatible matrix sizes"); the public fits refuse it too
    (:func:`~pyrozoo.validation.check_xy`). Shapes only, no values read: cheap enough for every optimizer step."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise PyrozooError(f"{x_name}: expected a 2-D (N, D) tensor, got {got}")
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != (x.shape[0],):
        got = f"shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise PyrozooError(f"{y_name}: expected shape ({x.shape[0]},) (one value per row of {x_name}), got {got}")


def _host_number(value: Any) -> bool:
    """Whether ``value`` is a Python or NumPy real number (not a bool), which can be checked without torch."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


@dataclass
class BLRPosterior:
    """The closed-form posterior. ``cov_unit`` is Lam^{-1} (the covariance of w is ``cov_unit / tau``); with known
    noise ``tau`` is fixed and ``a``, ``b`` are ``inf`` (their ratio is meaningless)."""

    mean: torch.Tensor  # (D,)
    cov_unit: torch.Tensor  # (D, D)
    a: float
    b: float
    noise: float  # > 0: known noise sd; 0: Gamma(a, b) posterior on tau

    @property
    def known_noise(self) -> bool:
        return self.noise > 0

    @property
    def tau_hat(self) -> float:
        """Posterior mean of the noise precision (the plug-in value for closed-form inner products)."""
        return self.noise**-2 if self.known_noise else self.a / self.b

    @property
    def noise_var_hat(self) -> float:
        """Plug-in noise variance: noise^2, or E[1/tau] = b / (a - 1) (b / a when a <= 1)."""
        if self.known_noise:
            return self.noise**2
        return self.b / (self.a - 1) if self.a > 1 else self.b / self.a

    @property
    def cov(self) -> torch.Tensor:
        """Posterior covariance of w at the plug-in precision: Lam^{-1} / tau_hat."""
        return self.cov_unit / self.tau_hat

    def predictive(self, x: torch.Tensor) -> torch.distributions.Distribution:
        """Predictive of y at the rows of ``x``: Student-t (unknown noise) or Normal (known noise)."""
        x = x.to(self.mean.dtype)
        loc = x @ self.mean
        quad = ((x @ self.cov_unit) * x).sum(-1)
        if self.known_noise:
            return torch.distributions.Normal(loc, self.noise * (1 + quad).sqrt())
        df = torch.full_like(loc, 2 * self.a)
        return torch.distributions.StudentT(df, loc, (self.b / self.a * (1 + quad)).sqrt())

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``num_samples`` i.i.d. draws ``{"w": (S, D), "tau": (S,)}`` from the posterior (on the mean's device)."""
        opts = {"dtype": self.mean.dtype, "device": self.mean.device}
        if self.known_noise:
            tau = torch.full((num_samples,), self.noise**-2, **opts)
        else:
            # torch's Gamma sampler takes no generator: seed NumPy's from the generator's stream instead
            seed = None if generator is None else int(torch.randint(2**62, (1,), generator=generator,
                                                                    device=generator.device))
            tau = torch.from_numpy(np.random.default_rng(seed).gamma(self.a, 1 / self.b, num_samples)).to(**opts)
        chol = torch.linalg.cholesky(self.cov_unit)
        # noise from the generator's device (a CPU generator may drive a CUDA posterior), then onto the mean's
        gdev = generator.device if generator is not None else self.mean.device
        z = torch.randn(num_samples, self.mean.shape[0], generator=generator, dtype=self.mean.dtype,
                        device=gdev).to(self.mean.device)
        w = self.mean + (z @ chol.T) * tau.rsqrt()[:, None]
        return {"w": w, "tau": tau}


class PrecisionNotPositiveDefinite(PyrozooError, torch.linalg.LinAlgError):
    """X^T X + I / prior_scale^2 failed its float64 Cholesky: a PyrozooError naming prior_scale for users, and still
    a LinAlgError for callers that read a failed Cholesky as diverged features (neural-linear)."""


def _precision_error(x64: torch.Tensor, prior_scale: float) -> PrecisionNotPositiveDefinite:
    """The refusal of a design whose precision X^T X + I / prior_scale^2 is not positive definite in float64: a
    flat prior (prior_scale ~1e8 and up) on collinear columns, or on fewer rows than columns, whose null directions
    the 1 / prior_scale^2 no longer lifts above rounding. (An exact SVD route was tried and reverted: its rank
    threshold is not invariant to column scales, and it zeroed well-determined directions of badly scaled designs.)"""
    n, d = x64.shape
    rank = int(torch.linalg.matrix_rank(x64))
    why = (f"rank {rank} < {d} columns ({n} rows: " + ("fewer rows than columns" if n < d else "collinear columns")
           + ")") if rank < d else f"{d} columns, {n} rows, nearly collinear"
    return PrecisionNotPositiveDefinite(
        f"prior_scale: the posterior precision X^T X + I / prior_scale^2 is not positive definite in float64 at "
        f"prior_scale={prior_scale:g} for this design ({why}): expected a smaller prior_scale (one that lifts the "
        f"design's null directions above rounding), or the redundant columns dropped")


def blr_posterior(x: torch.Tensor, y: torch.Tensor, *, prior_scale: float = 1.0, a0: float = 2.0, b0: float = 1.0,
                  noise: float = 0.0) -> BLRPosterior:
    """Closed-form posterior (float64, Cholesky solves). See the module docstring for the formulas. ``x`` (N, D) and
    ``y`` (N,) are tensors (shapes checked, :func:`check_design`; the values are the caller's to check)."""
    check_design(x, y)
    x64, y64 = x.to(torch.float64), y.to(torch.float64)
    d = x64.shape[1]
    prec0 = 1.0 / prior_scale / prior_scale  # not prior_scale**-2: a Python float power raises OverflowError
    lam = x64.T @ x64 + torch.eye(d, dtype=torch.float64, device=x.device) * prec0
    try:
        chol = torch.linalg.cholesky(lam)
    except torch.linalg.LinAlgError as exc:
        raise _precision_error(x64, prior_scale) from exc
    cov_unit = torch.cholesky_inverse(chol)
    cov_unit = 0.5 * (cov_unit + cov_unit.T)
    mean = torch.cholesky_solve((x64.T @ y64)[:, None], chol)[:, 0]
    if noise > 0:
        return BLRPosterior(mean, cov_unit, math.inf, math.inf, float(noise))
    # y'y - m' Lam m, written as the sum of two non-negative terms it equals: the difference of two ~|y|^2 numbers
    # lost every digit of a ~10 residual for responses offset by 1e8 (b 9 instead of 4.57)
    resid = float((y64 - x64 @ mean).square().sum() + mean.square().sum() * prec0)
    return BLRPosterior(mean, cov_unit, a0 + 0.5 * y64.shape[0], b0 + 0.5 * resid, 0.0)


def make_dataset(x: Any, y: Any, *, name: str = "blr", device: Any = "cpu", truth: dict | None = None,
                 meta: dict | None = None, dtype: torch.dtype = torch.float64, **prior: float) -> Dataset:
    """Validate a design ``x`` (N, D) and response ``y`` (N,) and pack them with the prior as a :class:`Dataset`
    (``dtype``: a floating torch dtype; ``prior``: keys ``prior_scale``, ``a0``, ``b0``, ``noise``; ``None`` is the
    default, :data:`PRIOR_DEFAULTS`; ``a0`` and ``b0``, the prior on the noise precision, are refused with
    ``noise > 0``, which fixes it, as they would have no effect). The data are
    checked as every regression entry checks them (:func:`~pyrozoo.validation.check_xy`): pandas ``x`` and ``y``
    with different indexes are refused (rows are paired by position), and so are categorical columns, even integer
    ones (labels, not amounts); a tensor that requires grad gives its values."""
    check_float_dtype("dtype", dtype)
    check_keys("prior", prior, PRIOR_DEFAULTS)
    given = {k: v for k, v in prior.items() if v is not None}
    prior = {**PRIOR_DEFAULTS, **given}
    check_prior(**prior, dtype=dtype)
    check_noise_prior(given)
    x, y = check_xy(x, y, x_name="x", y_name="y", dtype=dtype, detach=True)
    check_feature_labels((meta or {}).get("features"), x.shape[1])
    dev = resolve_device(device)
    inputs = {"x": x.to(dev), **{k: float(v) for k, v in prior.items()}}
    return Dataset(name, inputs=inputs, observed={"y": y.to(dev)}, truth=dict(truth or {}), meta=dict(meta or {}))


def check_feature_labels(labels: Any, d: int) -> None:
    """Raise unless ``labels`` (``meta["features"]``, the result's ``feature`` coordinate; ``None``: unlabelled) names
    the ``d`` design columns once each: a repeated label gave the saved InferenceData a ``feature`` axis that
    az.summary and ``pyrozoo diagnose`` failed on (pandas "setting an array element with a sequence")."""
    if labels is None:
        return
    labels = list(labels)
    if len(labels) != d:
        raise PyrozooError(f"meta: expected {d} feature labels (one per column of x), got {len(labels)}: {labels!r}")
    check_unique("meta", labels, what="feature label", quote=True)


def simulate_blr(seed: int, *, n: int = 200, d: int = 5, noise_true: float = 0.5, device: Any = "cpu",
                 **prior: float) -> Dataset:
    """``n`` rows: an intercept and ``d`` standard-normal features, w ~ N(0, I), y = X w + N(0, noise_true^2).
    ``meta["features"]`` names the columns ``intercept, x1, ..., xd`` (the result's ``feature`` coordinate)."""
    seed = check_seed("seed", seed)
    n = check_int("n", n, minimum=2)
    d = check_int("d", d, minimum=1)
    check_positive("noise_true", noise_true, scalar=True)
    # |x^T w| < (d + 1) 10^2: tau = 1 / noise_true^2 and y's sum of squares must be finite (a tiny noise_true failed
    # with a raw OverflowError)
    check_normal_draws(n, ("noise_true", noise_true), offset=(d + 1) * RANDN_BOUND**2)
    gen = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.ones(n, 1, dtype=torch.float64),
                   torch.randn(n, d, generator=gen, dtype=torch.float64)], dim=1)
    w = torch.randn(d + 1, generator=gen, dtype=torch.float64)
    y = x @ w + noise_true * torch.randn(n, generator=gen, dtype=torch.float64)
    truth = {"w": w.numpy(), "tau": 1.0 / (noise_true * noise_true)}
    meta = {"features": [INTERCEPT, *(f"x{j + 1}" for j in range(d))]}
    return make_dataset(x, y, name="blr-sim", device=device, truth=truth, meta=meta, **prior)


def load_regression_frame(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Raw features, response and feature names of a shipped regression dataset (``boston`` or ``concrete``);
    the shared loader :func:`pyrozoo.data.uci.load_uci`."""
    return load_uci(name)


def standardized_design(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(x - mean) / scale with a leading intercept column of ones."""
    return np.hstack([np.ones((x.shape[0], 1)), (x - mean) / scale])


def _load_shipped(name: str, seed: int, device: Any, prior: dict[str, float]) -> Dataset:
    check_seed("seed", seed)  # not used (no random draws), but a seed out of range is refused as everywhere
    x, y, feats = load_regression_frame(name)
    return _standardized_dataset(name, x, y, feats, device, prior)


def _standardized_dataset(name: str, x: np.ndarray, y: np.ndarray, feats: list[str], device: Any,
                          prior: dict[str, float]) -> Dataset:
    """Inputs and response standardized (population sds), a leading intercept column; ``meta["features"]`` names
    the design's columns (the result's ``feature`` coordinate); ``response_shift`` and ``response_scale`` put the
    fit's log-likelihood into y's own units (:class:`~pyrozoo.data.dataset.Dataset`). ``prior["noise"]``, a known
    noise sd, is in y's own units, as the user knows it: the model input is noise / s (s = sd(y)), so that the
    stored log-likelihood is log N(y | m + s x^T w, noise^2), whatever the scaling."""
    xm, xs = x.mean(0), x.std(0)
    ym, ys = y.mean(), y.std()
    meta = {"features": [INTERCEPT, *feats], "y_mean": float(ym), "y_scale": float(ys),
            "response_shift": float(ym), "response_scale": float(ys)}
    given = {k: v for k, v in prior.items() if v is not None}
    if "noise" in given:  # a known noise sd is given in y's own units: the model sees y / s, so its sd is noise / s
        check_prior(**{**PRIOR_DEFAULTS, **given})  # a bad value is refused by name before it is scaled
        prior = {**prior, "noise": float(given["noise"]) / float(ys)}
    return make_dataset(standardized_design(x, xm, xs), (y - ym) / ys, name=name, device=device, meta=meta, **prior)


def load_boston(seed: int, *, device: Any = "cpu", **options: Any) -> Dataset:
    """Boston housing (506 x 13, ``MASS/Boston``): median value on the standardized features."""
    return _load_shipped("boston", seed, device, {k: options[k] for k in PRIOR_DEFAULTS if k in options})


def load_concrete(seed: int, *, device: Any = "cpu", **options: Any) -> Dataset:
    """Concrete compressive strength (1030 x 8, ``modeldata/concrete``) on the standardized features."""
    return _load_shipped("concrete", seed, device, {k: options[k] for k in PRIOR_DEFAULTS if k in options})


def blr_from_file(path: str, seed: int, *, outcome: str = "", features: str = "", device: Any = "cpu",
                  **options: Any) -> Dataset:
    """A user's CSV (``--data``): y is column ``outcome``, the inputs the ``features`` (default every other column,
    all numeric; read by :func:`~pyrozoo.data.regression_file.read_regression_file`), standardized with an
    intercept as for boston and concrete. A feature column named ``intercept`` is refused: it would repeat the
    added intercept's label on the ``feature`` axis."""
    check_seed("seed", seed)  # not used (no random draws), but a seed out of range is refused as everywhere
    x, y = read_regression_file(path, outcome=outcome, features=features)
    if INTERCEPT in x.columns:  # before any work: w's feature axis would label two entries alike
        raise PyrozooError(f"features: column {INTERCEPT!r} of data {path} clashes with the intercept column blr adds "
                           f"to the design (both would be labelled {INTERCEPT!r} on w's feature axis); rename that "
                           f"column, or leave it out with -o features=...")
    return _standardized_dataset(Path(path).stem, x.to_numpy(), y, list(x.columns), device,
                                 {k: options[k] for k in PRIOR_DEFAULTS if k in options})


def _prior_of(dataset: Dataset) -> dict[str, float]:
    return {k: float(dataset.inputs[k]) for k in PRIOR_DEFAULTS}


@keeps_caller_state
def fit_exact(dataset: Dataset, config: RunConfig) -> Result:
    """``num_chains`` x ``num_samples`` i.i.d. draws from the closed-form posterior, wrapped in a Result."""
    set_seed(config.seed)
    start = time.perf_counter()
    x, y = dataset.inputs["x"], dataset.observed["y"]
    post = blr_posterior(x, y, **_prior_of(dataset))
    gen = torch.Generator(device=x.device).manual_seed(config.seed)
    s = post.sample(config.num_chains * config.num_samples, generator=gen)
    shape = (config.num_chains, config.num_samples)
    posterior = {"w": s["w"].to(x.dtype).reshape(*shape, -1)}
    if not post.known_noise:
        posterior["tau"] = s["tau"].to(x.dtype).reshape(shape)
    wall = time.perf_counter() - start
    params = {"mean": post.mean.cpu(), "cov_unit": post.cov_unit.cpu(), "a": post.a, "b": post.b}
    return assemble_result("exact", blr_model, dataset.model_kwargs(), posterior, params=params, seed=config.seed,
                           wall_time=wall, config=config.to_dict(), model_name=config.model)


@keeps_caller_state
def fit_blr(dataset: Dataset, config: RunConfig) -> Result:
    """Run ``config.inference``: ``exact`` (closed-form draws) or ``nuts``."""
    config = checked_config("blr", config)  # a direct call gets run_model's checks
    if config.inference != "exact":
        check_sampler_prior(dataset)
        # the metrics' closed form would refuse a design whose precision is not positive definite after the run
        blr_posterior(dataset.inputs["x"], dataset.observed["y"], **_prior_of(dataset))
    if config.inference == "exact":
        result = fit_exact(dataset, config)
    else:
        result = mcmc_from_config(blr_model, dataset.model_kwargs(), config)
    if dataset.meta.get("features") is not None:  # the loader's column names (intercept first) label w's axis
        result.dims["w"] = ["feature"]
        result.coords["feature"] = list(dataset.meta["features"])
    return result


def check_sampler_prior(dataset: Dataset) -> None:
    """Raise before NUTS runs unless ``prior_scale`` is at least the bottom of the data dtype's (squared) usable range
    (1e-15 in float32): the potential energy holds w^2 / prior_scale^2, and in float32 prior_scale = 1e-16 (to 1e-30)
    left NUTS no valid initial point ("Model specification seems incorrect"); larger values (to 1e30) fit."""
    dtype = dataset.inputs["x"].dtype
    low = usable_range(dtype)[0]
    scale = float(dataset.inputs["prior_scale"])
    if scale < low:
        raise PyrozooError(f"prior_scale: expected at least {low:g} for --inference nuts on "
                           f"{str(dtype).removeprefix('torch.')} data (its potential energy holds w^2 / prior_scale^2),"
                           f" got {scale:g}; use --inference exact, or float64 data")


def blr_metrics(result: Result, dataset: Dataset) -> dict[str, float]:
    """Largest |posterior mean - exact mean| of w in exact posterior sds, the same for tau, and the in-sample RMSE
    of x^T E[w] in y's own units: sqrt(mean((x^T E[w] - y)^2)) * ``meta["y_scale"]`` where the loader standardized
    y (shipped data, ``--data``), as bnn's test_rmse (it was in standardized units, the same for y and 1e4 y)."""
    x, y = dataset.inputs["x"], dataset.observed["y"]
    post = blr_posterior(x, y, **_prior_of(dataset))
    w = result.draws("w")
    sd = np.sqrt(np.diag(post.cov_unit.cpu().numpy()) * post.noise_var_hat)  # marginal posterior sd of w
    out = {"w_max_z_vs_exact": float(np.max(np.abs(w.mean(0) - post.mean.cpu().numpy()) / sd))}
    if not post.known_noise:
        tau = result.draws("tau")
        out["tau_mean"] = float(tau.mean())
        out["tau_z_vs_exact"] = float((tau.mean() - post.a / post.b) / (math.sqrt(post.a) / post.b))
    pred = x.cpu().numpy() @ w.mean(0)
    out["rmse_in_sample"] = float(np.sqrt(np.mean((pred - y.cpu().numpy()) ** 2))) * float(
        dataset.meta.get("y_scale", 1.0))
    return out


def check_blr_options(config: RunConfig) -> None:
    """The entry's ``check_options``, on the options as given (before any data, for every cell of a sweep): ``a0``
    or ``b0`` with ``noise > 0`` would have no effect (:func:`check_noise_prior`)."""
    noise = config.options.get("noise")
    if isinstance(noise, numbers.Real) and not isinstance(noise, bool):  # the type checks name anything else
        check_noise_prior(config.options)


@register("blr")
def blr_entry() -> ZooModel:
    return ZooModel(
        name="blr",
        model=blr_model,
        simulate=simulate_blr,
        fit=fit_blr,
        inferences=("exact", "nuts"),
        settings={"exact": ("num_samples", "num_chains"), "nuts": MCMC_SETTINGS},
        metrics=blr_metrics,
        # a0, b0 default None (PRIOR_DEFAULTS' 2 and 1): given with noise > 0 they are refused, which a default
        # value could not tell from a given one
        options={"n": 200, "d": 5, "noise_true": 0.5, **PRIOR_DEFAULTS, "a0": None, "b0": None, **FILE_OPTIONS},
        float_options=NOISE_PRIOR,
        check_options=check_blr_options,
        option_notes={"a0": "default 2.0; only with noise=0", "b0": "default 1.0; only with noise=0",
                      "noise": "known noise sd in y's own units (also where the data are standardized); 0: unknown, "
                               "Gamma(a0, b0) prior on tau"},
        datasets={"boston": load_boston, "concrete": load_concrete},
        from_file=blr_from_file,
        text_options=tuple(FILE_OPTIONS),
        data_options={**{k: ("simulator",) for k in ("n", "d", "noise_true")}, **{k: ("file",) for k in FILE_OPTIONS}},
        tiny={"num_samples": 40, "warmup_steps": 40, "num_chains": 2, "options": {"n": 50, "d": 3}},
        description="Conjugate Bayesian linear regression (Normal-Gamma; exact draws or NUTS); base of active learning",
    )
