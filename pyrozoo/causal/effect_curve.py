"""Partial effect curves: heterogeneous, nonlinear effects of a continuous treatment with curvewise conformal bands
(Ratkovic 2023; Ratkovic & Tingley 2023, "Estimation and Inference on Nonlinear and Heterogeneous Effects").

Model:  y_i = theta(t_i, x_i) + f(x_i) + e_i,   t_i = g(x_i) + v_i;   target tau(t_i, x_i) = d theta(t_i, x_i) / d t_i.

Estimator (one split r of the R repeated K-fold splits of :mod:`pyrozoo.causal.crossfit`):

1. Nuisances, cross-fitted as in PLCE: m_hat(x) = E[y | x] and g_hat(x) = E[t | x], each a spike-and-slab (EM)
   regression on the spline + interaction basis b(x) of :mod:`pyrozoo.causal.basis` (skipped without covariates).
2. Treatment basis phi(t, x) = [N(t), N(t) z_1, ..., N(t) z_p] with N a natural cubic spline in the standardized
   treatment u = (t - mean) / sd (knots at quantiles of u, boundary knots at the extremes, linear beyond them;
   ``spline="cubic"``: the unrestricted cubic spline [u, u^2, u^3, (u - k_j)_+^3], linear beyond the data) and
   z_j the standardized covariates (``heterogeneity="spline"``; ``"linear"`` keeps only u z_j, ``"none"`` none):

       N_1(u) = u,  N_{k+2}(u) = d_k(u) - d_{K-1}(u),  d_k(u) = ((u - k_k)_+^3 - (u - k_K)_+^3) / (k_K - k_k).

3. Final stage: a spike-and-slab regression (EMVS, the Gaussian posterior of the coefficients around the EM mode) of
   y on D = [phi(t, x), b(x), m_hat(x), g_hat(x)]: beta_hat = posterior mean, Sigma = posterior covariance.
4. Partial effect by differentiating the fitted basis in t (:meth:`TreatmentBasis.jacobian`, checked against autograd):
   G_i = d phi(t_i, x_i) / d t_i,  tau_hat_i = G_i beta_hat,  V_hat_i = G_i Sigma G_i^T (Sigma's phi block).
5. Splits are aggregated as in PLCE: tau_hat_i = median_r tau_r,i, V_hat_i = median_r (V_r,i + (tau_r,i - tau_hat_i)^2).
6. Band tau_hat_i +- C sqrt(V_hat_i) with C calibrated by :mod:`pyrozoo.causal.conformal` on split 0 (held-out
   residuals, sign-flipped pseudo-outcomes around the fit, refits, the conformal rank of the pooled scores).

Average partial effect, per split r: APE_r = (1/n) sum_i tau_r,i with V_r = Gbar Sigma_r Gbar^T + s^2_tau,r / n
(Gbar the mean gradient, s^2_tau,r the sample variance of tau_r,i: the second term is the sampling variability of the
(t, x) population the APE averages over), aggregated over splits like theta in PLCE: APE = median_r APE_r,
se^2 = median_r (V_r + (APE_r - APE)^2). For R > 1 this is not the mean of the split-median tau_hat_i of step 5 (the
median of means is not the mean of medians); for R = 1 they coincide. Curves over a grid of t hold x at given
values or average over the observed x.
"""

from __future__ import annotations

import inspect
import os
import time
import warnings
from collections.abc import Mapping
from contextlib import closing
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from pyrozoo.causal.basis import (
    SplineInteractionBasis,
    cross_fit_min_product_support,
    interaction_kind,
    off_mode,
    product_support_bound,
    warn_sparse_columns,
)
from pyrozoo.causal.conformal import ConformalCalibration, calibrate_band
from pyrozoo.causal.crossfit import check_learner, crossfit_predict, make_folds
from pyrozoo.causal.inputs import (
    aligned_covariates,
    check_enough_rows,
    check_no_constant_columns,
    check_no_duplicate_columns,
    check_treatment_identified,
    check_varies,
    covariate_matrix,
    detached,
    numeric_vector,
)
from pyrozoo.causal.plce import SpikeSlabLearner, aggregate_split_arrays, aggregate_splits
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.device import keeps_caller_state, resolve_device
from pyrozoo.inference.progress import progress_bar
from pyrozoo.validation import (
    SEED_MAX,
    check_bool,
    check_choice,
    check_figure_path,
    check_finite,
    check_int,
    check_numeric_columns,
    check_probability,
    check_same_index,
    check_seed,
)

HETEROGENEITY = ("spline", "linear", "none")
# what ``prior_options`` may hold besides the prior (spike_var, slab_var, a0, b0, nu, lam, conjugate): the final
# stage's EM settings, which final_stage_dataset carries to result() and the entry's fit with the prior
FINAL_STAGE_EM_SETTINGS = ("em_variant", "ladder", "max_iter")
# SpikeSlabRegression's other parameters, refused in prior_options: why each has no place there
NOT_PRIOR_OPTIONS: dict[str, str] = {
    "inference": "the final stage is always EM",
    "em_select": "the final stage is always the posterior around the EM mode, without model selection",
    **{k: f"set EffectCurve({k}=...) instead" for k in ("seed", "device", "num_samples", "progress")},
    **{k: "the final stage's EM does not read it" for k in ("warmup_steps", "num_chains", "steps", "lr")},
}
MIN_DISTINCT_TREATMENT = 3
# the options that act only through the covariates, and on what; without covariates they would have no effect
COVARIATE_ONLY: dict[str, str] = {
    "heterogeneity": "the interactions of t with the covariates",
    "n_knots_x": "the control basis b(x)",
    "interactions": "the control basis b(x)",
    "learner": "the nuisances m(x), g(x)",
    "n_folds": "the nuisances' cross-fitting and, with n_pseudo > 0, the calibration's held-out residuals",
    "n_repeats": "the nuisances' repeated splits, which leave the final stage the same without them",
}


def covariate_only_options(values: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[str]:
    """The options of :data:`COVARIATE_ONLY` whose ``values`` differ from ``defaults``: those a fit without
    covariates would ignore. ``n_folds`` also splits the calibration's held-out residuals, so it counts only with
    ``n_pseudo=0``; ``interactions`` is compared by its kind (True is "linear")."""
    names = []
    for name in COVARIATE_ONLY:
        if name == "n_folds" and values["n_pseudo"] != 0:
            continue
        value, default = values[name], defaults[name]
        if name == "interactions":
            value, default = interaction_kind(value), interaction_kind(default)
        if (value is not None) if default is None else value != default:
            names.append(name)
    return names


def check_prior_options(prior_options: Any) -> None:
    """Raise unless ``prior_options`` is None or a dict of the final stage's prior options and EM settings
    (:data:`FINAL_STAGE_EM_SETTINGS`) with values :class:`~pyrozoo.models.spike_slab.SpikeSlabRegression` accepts.
    Its other parameters (:data:`NOT_PRIOR_OPTIONS`) and unknown keys are refused, each named: the estimator sets
    ``inference``, ``em_select``, ``seed``, ``device``, ``num_samples`` itself (they failed with a raw TypeError) and
    the final stage's EM does not read the samplers' settings (they were accepted and ignored)."""
    if prior_options is None:
        return
    if not isinstance(prior_options, dict):
        raise PyrozooError(f"prior_options: expected a dict, got {type(prior_options).__name__}")
    from pyrozoo.models.spike_slab_prior import PRIOR_KEYS

    allowed = (*PRIOR_KEYS, *FINAL_STAGE_EM_SETTINGS)
    refused = [k for k in prior_options if k not in allowed]
    if refused:
        why = "; ".join(f"{k!r}: {NOT_PRIOR_OPTIONS.get(k, 'not an option of the final stage')}" for k in refused)
        raise PyrozooError(f"prior_options: expected the final stage's prior options ({', '.join(PRIOR_KEYS)}) or "
                           f"EM settings ({', '.join(FINAL_STAGE_EM_SETTINGS)}), got {', '.join(map(repr, refused))} "
                           f"({why})")
    from pyrozoo.models.spike_slab import SpikeSlabRegression

    SpikeSlabRegression(inference="em", em_select=False, num_samples=1, **prior_options)  # checks the values


# ------------------------------------------------------------------------------------------- treatment basis
def natural_spline_basis(u: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """Natural cubic spline basis without the constant, (n, K - 1): [u, N_3(u), ..., N_K(u)] (ESL eq. 5.4-5.5).

    A differentiable torch function of ``u`` (piecewise polynomial; ``relu`` has the right derivative off the knots
    and the cubic pieces join with continuous second derivatives, so autograd is exact everywhere)."""
    K = knots.shape[0]
    cols = [u]
    if K >= 3:
        last = knots[-1]

        def d(k: int) -> torch.Tensor:
            return (torch.relu(u - knots[k]) ** 3 - torch.relu(u - last) ** 3) / (last - knots[k])

        dK1 = d(K - 2)
        cols += [d(k) - dK1 for k in range(K - 2)]
    return torch.stack(cols, dim=-1)


def natural_spline_derivative(u: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """Analytic d/du of :func:`natural_spline_basis` (the tests check it against torch.autograd)."""
    K = knots.shape[0]
    cols = [torch.ones_like(u)]
    if K >= 3:
        last = knots[-1]

        def dd(k: int) -> torch.Tensor:
            return 3 * (torch.relu(u - knots[k]) ** 2 - torch.relu(u - last) ** 2) / (last - knots[k])

        dK1 = dd(K - 2)
        cols += [dd(k) - dK1 for k in range(K - 2)]
    return torch.stack(cols, dim=-1)


def cubic_spline_basis(u: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """Unrestricted cubic regression spline without the constant, (n, K + 1): [u, u^2, u^3, (u - k_j)_+^3] for the
    K - 2 interior knots, continued linearly outside [k_1, k_K] (f(c) + (u - c) f'(c), c = clamp(u)), so the slope
    is constant beyond the data. Unlike the natural spline it does not force f'' = 0 at the boundary knots, which
    biases the slope of a curved dose-response near the extremes of t. Differentiable in ``u`` (autograd-exact)."""
    lo, hi = knots[0], knots[-1]
    c = torch.minimum(torch.maximum(u, lo), hi)
    inner = knots[1:-1]
    F = torch.cat([torch.stack([c, c**2, c**3], dim=-1), torch.relu(c.unsqueeze(-1) - inner) ** 3], dim=-1)
    return F + (u - c).unsqueeze(-1) * cubic_spline_derivative(c, knots)


def cubic_spline_derivative(u: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """Analytic d/du of :func:`cubic_spline_basis` (the derivative at the clamped point beyond the boundary)."""
    c = torch.minimum(torch.maximum(u, knots[0]), knots[-1])
    inner = knots[1:-1]
    return torch.cat([torch.stack([torch.ones_like(c), 2 * c, 3 * c**2], dim=-1),
                      3 * torch.relu(c.unsqueeze(-1) - inner) ** 2], dim=-1)


SPLINES = {"natural": (natural_spline_basis, natural_spline_derivative),
           "cubic": (cubic_spline_basis, cubic_spline_derivative)}


class TreatmentBasis:
    """phi(t, x): the spline N(u) of the standardized treatment (natural or unrestricted cubic) and its interactions
    with the standardized covariates. ``fit(t, X)`` learns the scalings and knots; ``features`` / ``jacobian``
    evaluate on any device.

    ``knots_``: the knots used, the distinct values among the ``n_knots`` quantiles of u at equally spaced levels
    0..1. When t has ties (a few distinct doses, a mass at 0) some of those quantiles coincide; they are merged, so
    ``len(knots_)`` can be below ``n_knots``, and ``fit`` then warns (UserWarning) with both counts.

    ``min_support`` (default 0): a covariate off its most common value on fewer than min(min_support, floor(n / 2))
    rows gets no interactions with t (``interacting_`` lists the covariates that do, ``sparse_covariates_`` the others
    as (index, support)): tau's slope along it would rest on those few rows alone (a dummy with one 1 gave that
    row tau = -113 and an APE of 0.35 +- 1.6, against 0.93 +- 0.07 without it), as with the sparse products of
    :mod:`pyrozoo.causal.basis`."""

    def __init__(self, n_knots: int = 5, heterogeneity: str = "spline", spline: str = "natural",
                 min_support: int = 0) -> None:
        self.n_knots = n_knots
        self.heterogeneity = heterogeneity
        self.spline = spline
        self.min_support = min_support

    def fit(self, t: np.ndarray, X: np.ndarray | None = None, *, stacklevel: int = 2) -> TreatmentBasis:
        """Learn the scalings of t and X and the knots; ``stacklevel`` places the duplicate-knot warning (2: the
        caller of this method)."""
        check_int("n_knots", self.n_knots, minimum=2)
        check_choice("heterogeneity", self.heterogeneity, HETEROGENEITY)
        check_choice("spline", self.spline, SPLINES)
        min_support = check_int("min_support", self.min_support, minimum=0)
        t = np.asarray(t, dtype=np.float64)
        self.t_loc_, self.t_scale_ = float(t.mean()), float(t.std()) or 1.0
        u = (t - self.t_loc_) / self.t_scale_
        # boundary knots at the extremes (linear only outside the data), interior ones at equally spaced quantiles
        self.knots_ = np.unique(np.quantile(u, np.linspace(0.0, 1.0, self.n_knots)))
        if len(self.knots_) < self.n_knots:  # ties in t: several quantile levels give the same value
            warnings.warn(f"n_knots: the treatment spline uses {len(self.knots_)} knots, not {self.n_knots}: t has "
                          f"ties ({len(np.unique(t))} distinct values), so {self.n_knots - len(self.knots_)} of the "
                          f"{self.n_knots} quantile knots duplicated others and were merged (knots_ of the basis, "
                          f"EffectCurve.basis_, lists the knots used)", UserWarning, stacklevel=stacklevel)
        self.p_ = 0 if X is None else X.shape[1]
        self.interacting_, self.sparse_covariates_ = np.arange(self.p_), []
        if X is not None:
            self.x_loc_ = X.mean(axis=0)
            sd = X.std(axis=0)
            self.x_scale_ = np.where(sd > 0, sd, 1.0)
            support = off_mode(X).sum(axis=0)
            dense = support >= product_support_bound(min_support, len(X))
            self.interacting_ = np.flatnonzero(dense)
            if self.heterogeneity != "none":
                self.sparse_covariates_ = [(int(j), int(support[j])) for j in np.flatnonzero(~dense)]
        return self

    @property
    def n_spline(self) -> int:
        K = len(self.knots_)
        return K - 1 if self.spline == "natural" else 3 + max(K - 2, 0)

    @property
    def n_features(self) -> int:
        per = {"spline": self.n_spline, "linear": 1, "none": 0}[self.heterogeneity]
        return self.n_spline + per * len(self.interacting_)

    def feature_names(self, covariates: list[str] | None = None) -> list[str]:
        """Names of :meth:`features`' columns: the spline of the standardized treatment ``t_sp_0``, ...
        (``t_sp_0`` = u, the linear column), then its interactions with each covariate (``covariates``: their names,
        default x1, ..., xp): ``t*x`` (heterogeneity linear) or ``t_sp_k*x``, spline-major as :meth:`features`
        orders them (spline)."""
        spline = [f"t_sp_{k}" for k in range(self.n_spline)]
        if self.p_ == 0 or self.heterogeneity == "none":
            return spline
        names = [f"x{j + 1}" for j in range(self.p_)] if covariates is None else [str(c) for c in covariates]
        if len(names) != self.p_:
            raise PyrozooError(f"covariates: expected {self.p_} names, got {len(names)}")
        names = [names[j] for j in self.interacting_]
        if self.heterogeneity == "linear":
            return spline + [f"t*{c}" for c in names]
        return spline + [f"{b}*{c}" for b in spline for c in names]

    def _z(self, X: torch.Tensor | None, ref: torch.Tensor) -> torch.Tensor | None:
        if self.p_ == 0 or self.heterogeneity == "none":
            return None
        if X is None:
            raise PyrozooError(f"X: the basis was fitted with {self.p_} covariates; pass them")
        opts = {"dtype": ref.dtype, "device": ref.device}
        Z = (X.to(**opts) - torch.as_tensor(self.x_loc_, **opts)) / torch.as_tensor(self.x_scale_, **opts)
        if len(self.interacting_) == self.p_:
            return Z
        return Z[:, torch.as_tensor(self.interacting_, dtype=torch.long, device=ref.device)]

    def features(self, t: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
        """phi(t, x) for rows (t_i, x_i): (n, n_features), a differentiable function of t."""
        opts = {"dtype": t.dtype, "device": t.device}
        u = (t - self.t_loc_) / self.t_scale_
        N = SPLINES[self.spline][0](u, torch.as_tensor(self.knots_, **opts))
        Z = self._z(X, t)
        if Z is None:
            return N
        if self.heterogeneity == "linear":
            return torch.cat([N, u.unsqueeze(-1) * Z], dim=-1)
        return torch.cat([N, (N.unsqueeze(-1) * Z.unsqueeze(-2)).reshape(t.shape[0], -1)], dim=-1)

    def jacobian(self, t: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
        """G_i = d phi(t_i, x_i) / d t_i, (n, n_features): the analytic derivative of the spline (chain rule through
        u = (t - mean) / sd, product rule for the interactions). The tests check it against torch.autograd on
        :meth:`features`; autograd is not used here because forward-mode AD / ``torch.func`` import torch's
        compiler stack on first use (seconds), and reverse mode needs one backward pass per column."""
        opts = {"dtype": t.dtype, "device": t.device}
        u = (t - self.t_loc_) / self.t_scale_
        dN = SPLINES[self.spline][1](u, torch.as_tensor(self.knots_, **opts)) / self.t_scale_
        Z = self._z(X, t)
        if Z is None:
            return dN
        if self.heterogeneity == "linear":
            return torch.cat([dN, Z / self.t_scale_], dim=-1)
        return torch.cat([dN, (dN.unsqueeze(-1) * Z.unsqueeze(-2)).reshape(t.shape[0], -1)], dim=-1)


# ------------------------------------------------------------------------------------------------ estimator
class EffectCurve:
    """Partial effect curve estimator: ``EffectCurve(...).fit(y, t, X=None)``, ``.curve(grid)``, ``.summary()``.

    Parameters
    ----------
    n_knots: knots of the spline in t (boundary knots included); heterogeneity: ``"spline"`` (each covariate
        times the whole t-spline), ``"linear"`` (t times each covariate) or ``"none"``; a covariate off its most
        common value on too few rows (:class:`TreatmentBasis` ``min_support``, the bound of the control basis's
        sparse products) gets no interactions with t, with a warning.
    spline: ``"natural"`` (default: f'' = 0 at the extremes of t, so the slope flattens there) or ``"cubic"``
        (unrestricted cubic regression spline, linear only outside the data; less tail bias, more columns; prefer it
        when the response may be strongly curved across the range of t, see docs/effect-curve.md).
    n_knots_x, interactions: the control basis b(x) (:class:`~pyrozoo.causal.basis.SplineInteractionBasis`; its
        products supported on fewer than ceil(8 K / (K - 1)) rows are left out with a warning).
    learner: nuisance learner for m(x), g(x) (fit/predict object or factory); default spike-and-slab EM.
    n_folds, n_repeats: K folds and R random splits of the cross-fitting.
    n_pseudo: pseudo-datasets of the conformal calibration (0: no calibration, C = z_{1-alpha/2}).
    alpha: 1 - level of the band and of the APE interval.
    num_samples: Gaussian posterior draws of split 0's final-stage coefficients (``result()``,
        ``posterior_effects()``).
    prior_options: spike-and-slab prior of the final stage (``spike_var``, ``slab_var``, ``a0``, ``b0``, ``nu``,
        ``lam``, ``conjugate``) and its EM settings (``em_variant``, ``ladder``, ``max_iter``;
        :data:`FINAL_STAGE_EM_SETTINGS`), as :class:`~pyrozoo.models.spike_slab.SpikeSlabRegression` takes them; the
        same settings give :meth:`result`. Any other key (``num_samples``, ``seed``, ``inference``, ...;
        :data:`NOT_PRIOR_OPTIONS`) is refused here, at construction, with a PyrozooError naming it.
    device: ``"auto"`` (or None), ``"cpu"``, ``"cuda"``, ``"cuda:N"``; resolved once by ``fit`` (``device_``).
    progress: a progress bar on stderr over the fit's regressions (the nuisances' 2 R K cross-fits, the R final
        stages, the calibration's K held-out fits and n_pseudo refits; ``pyrozoo run`` turns it on unless
        ``--no-progress``): at n = 60 with 80 controls the conformal refits alone take minutes.
    """

    def __init__(self, *, n_knots: int = 6, heterogeneity: str = "spline", spline: str = "natural", n_knots_x: int = 5,
                 interactions: bool | str = "linear", learner: Any = None, n_folds: int = 5, n_repeats: int = 1,
                 n_pseudo: int = 20, alpha: float = 0.05, num_samples: int = 200, seed: int = 0,
                 device: str | torch.device | None = "cpu", prior_options: dict | None = None,
                 progress: bool = False) -> None:
        self.n_knots = n_knots
        self.heterogeneity = heterogeneity
        self.spline = spline
        self.n_knots_x = n_knots_x
        self.interactions = interactions
        self.learner = learner
        self.n_folds = n_folds
        self.n_repeats = n_repeats
        self.n_pseudo = n_pseudo
        self.alpha = alpha
        self.num_samples = num_samples
        self.seed = seed
        self.device = device
        self.prior_options = prior_options
        self.progress = progress
        check_prior_options(prior_options)  # at construction (and again by fit: the attribute can be reassigned)

    # ------------------------------------------------------------------ validation
    def check_settings(self) -> None:
        """Raise for a setting out of range or not among its choices (``alpha`` in (0, 1), ``n_folds`` >= 2, ...):
        the checks that need no data, which the zoo entry makes before a run or a sweep starts."""
        check_probability("alpha", self.alpha, open_interval=True)
        check_int("n_knots", self.n_knots, minimum=2)
        check_int("n_knots_x", self.n_knots_x, minimum=2)
        check_int("n_folds", self.n_folds, minimum=2)
        check_int("n_repeats", self.n_repeats, minimum=1)
        check_int("n_pseudo", self.n_pseudo, minimum=0)
        check_int("num_samples", self.num_samples, minimum=1)
        check_seed("seed", self.seed)  # the spike-slab fits seed through set_seed: [0, 2**32 - 1]
        check_bool("progress", self.progress)
        check_choice("heterogeneity", self.heterogeneity, HETEROGENEITY)
        check_choice("spline", self.spline, SPLINES)
        interaction_kind(self.interactions)  # checked with or without covariates (b(x) is only built with them)
        check_prior_options(self.prior_options)  # the final stage's prior now, not after the nuisance fits

    def _check(self, y: Any, t: Any, X: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        self.check_settings()
        self.device_ = resolve_device(self.device)  # the resolved device ("auto"/None -> cpu or cuda) for every fit
        check_same_index(y=y, t=t, X=X)  # rows are matched by position: labels must agree
        y, t = numeric_vector("y", y), numeric_vector("t", t)
        n = y.shape[0]
        if X is not None:
            X = covariate_matrix(X)
            if X.shape[0] != n:
                raise PyrozooError(f"X: expected {n} rows like y, got {X.shape[0]}")
        else:
            self._refuse_covariate_options()
        if t.shape[0] != n:
            raise PyrozooError(f"t: expected {n} values like y, got {t.shape[0]}")
        check_enough_rows(n, self.n_folds)  # before the checks a single row would fail (constant X, one t value)
        check_varies("y", y, "an outcome")  # was reported as a constant column of the final stage's own design
        if X is not None:
            check_no_constant_columns(X, getattr(self, "feature_names_", None))
            check_no_duplicate_columns(X, getattr(self, "feature_names_", None))
        distinct = np.unique(t)
        if distinct.size < MIN_DISTINCT_TREATMENT:
            raise PyrozooError(
                f"t: the partial effect curve needs a continuous treatment (at least {MIN_DISTINCT_TREATMENT} "
                f"distinct values); got {distinct.size} ({', '.join(f'{v:g}' for v in distinct)}). For a binary "
                "treatment use PLCE: pyrozoo.causal.PLCE or `pyrozoo run plce`")
        if X is not None:
            check_treatment_identified(t, X, getattr(self, "feature_names_", None))
        return y, t, X

    def _refuse_covariate_options(self) -> None:
        """Raise for options given without covariates that act only through them (:data:`COVARIATE_ONLY`)."""
        defaults = {k: v.default for k, v in inspect.signature(EffectCurve.__init__).parameters.items()}
        values = {k: getattr(self, k) for k in (*COVARIATE_ONLY, "n_pseudo")}
        names = covariate_only_options(values, defaults)
        if names:
            it, them = ("it", "it") if len(names) == 1 else ("they", "them")
            raise PyrozooError(
                f"{', '.join(names)}: fit got no covariates (X=None), so {it} would have no effect (remove {them}, "
                f"or pass X): " + "; ".join(f"{k} acts only on {COVARIATE_ONLY[k]} (expected the default "
                                            f"{defaults[k]!r}, got {values[k]!r})" for k in names))

    # ------------------------------------------------------------------ pieces
    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        # a copy: the inputs may be read-only arrays, which torch warns about
        return torch.as_tensor(np.array(a, dtype=np.float64), device=self.device_)

    def _final_fit(self, D: np.ndarray, y: np.ndarray, num_samples: int = 1) -> Any:
        """Spike-and-slab EM (posterior around the EMVS mode) of the centred, scaled y on D."""
        from pyrozoo.models.spike_slab import SpikeSlabRegression

        loc, sd = float(y.mean()), float(y.std()) or 1.0
        reg = SpikeSlabRegression(inference="em", em_select=False, seed=self.seed, device=str(self.device_),
                                  num_samples=num_samples, **(self.prior_options or {}))
        reg.fit(D, (y - loc) / sd)
        reg.y_loc_, reg.y_sd_ = loc, sd
        return reg

    def _effect(self, reg: Any, G: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """tau = G beta, V = diag(G Sigma G^T) on the outcome's scale; also (beta, Sigma) of the phi block."""
        q = G.shape[1]
        beta = reg.coef_[:q] * reg.y_sd_
        Sigma = reg.coef_cov_[:q, :q] * reg.y_sd_**2
        return G @ beta, np.einsum("ij,jk,ik->i", G, Sigma, G), beta, Sigma

    def _design(self, Phi: np.ndarray, r: int) -> np.ndarray:
        if self.Bx_ is None:
            return Phi
        return np.column_stack([Phi, self.Bx_, self.m_hat_[r], self.g_hat_[r]])

    def design_names(self) -> list[str]:
        """Names of the final stage's design columns (``design_``, the ``feature`` coordinate of :meth:`result` and
        of ``pyrozoo run effect-curve``): phi(t, x) (:meth:`TreatmentBasis.feature_names`), the control basis b(x)
        (:meth:`SplineInteractionBasis.get_feature_names_out`), ``m_hat(x)`` and ``g_hat(x)`` (the cross-fitted
        nuisances E[y | x] and E[t | x]); covariates are named by the DataFrame's columns, else x1, ..., xp. A name
        that would repeat an earlier one (a covariate called ``m_hat(x)``) gets ``#2``, ``#3``, ..."""
        self._fitted()
        covs = None
        if self._X is not None:
            covs = (list(map(str, self.feature_names_)) if self.feature_names_ is not None
                    else [f"x{j + 1}" for j in range(self._X.shape[1])])
        names = self.basis_.feature_names(covs)
        if self.Bx_ is not None:
            names += [str(v) for v in self.x_basis_.get_feature_names_out(covs)] + ["m_hat(x)", "g_hat(x)"]
        seen: dict[str, int] = {}
        out = []
        for name in names:
            seen[name] = seen.get(name, 0) + 1
            out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
        return out

    def _predict(self, reg: Any, D: np.ndarray) -> np.ndarray:
        return reg.y_loc_ + reg.y_sd_ * reg.predict(D)

    # ------------------------------------------------------------------ fit
    @keeps_caller_state
    def fit(self, y: Any, t: Any, X: Any = None) -> EffectCurve:
        """Cross-fit the nuisances, fit the final stage per split, differentiate, calibrate the band. Rows are matched
        by position: pandas inputs must share one index (:func:`~pyrozoo.validation.check_same_index`)."""
        if self.learner is not None:
            check_learner("learner", self.learner)
        start = time.perf_counter()
        self.feature_names_ = list(X.columns) if isinstance(X, pd.DataFrame) else None
        framed = [v.index for v in (y, t, X) if isinstance(v, (pd.Series, pd.DataFrame))]
        y, t, X = self._check(y, t, X)
        n = y.shape[0]
        # the rows' labels for effects(): check_same_index made the pandas inputs' indexes agree
        self.index_ = framed[0] if framed and len(framed[0]) == n else pd.RangeIndex(n)
        folds = make_folds(n, self.n_folds, self.n_repeats, self.seed)
        R, K = folds.shape[0], int(folds.max()) + 1
        # every regression of the fit: 2 targets x R x K cross-fits, R final stages (1 without covariates), the
        # calibration's K held-out fits and n_pseudo refits
        total = (2 * R * K + R if X is not None else 1) + (K + self.n_pseudo if self.n_pseudo > 0 else 0)
        with closing(progress_bar(total, "effect-curve: cross-fitting", self.progress)) as bar:
            self._fit_stages(y, t, X, folds, bar)
        self.C_ = self.critical_value(self.alpha)
        self.ape_, self.ape_se_ = self._ape()
        self.wall_time_ = time.perf_counter() - start
        return self

    def _fit_stages(self, y: np.ndarray, t: np.ndarray, X: np.ndarray | None, folds: np.ndarray, bar: Any) -> None:
        """The nuisances' cross-fits, the final stage per split and the calibration, advancing ``bar`` after each
        regression."""
        n = y.shape[0]
        if X is not None:
            self.x_basis_ = SplineInteractionBasis(n_knots=self.n_knots_x, interactions=self.interactions,
                                                   min_product_support=cross_fit_min_product_support(self.n_folds))
            self.Bx_ = self.x_basis_.fit_transform(X)
        # stacklevel: warn -> TreatmentBasis.fit -> _fit_stages -> fit -> keeps_caller_state -> fit's caller
        self.basis_ = TreatmentBasis(self.n_knots, self.heterogeneity, self.spline,
                                     min_support=cross_fit_min_product_support(self.n_folds)).fit(t, X, stacklevel=5)
        if X is not None:
            names = [str(v) for v in (self.feature_names_ or [f"x{j + 1}" for j in range(X.shape[1])])]
            more = None
            if self.basis_.sparse_covariates_:  # their interactions with t: left out as the basis's sparse products
                t_cols = ["t"] if self.heterogeneity == "linear" else [f"t_sp_{k}" for k in range(self.basis_.n_spline)]
                listing = "; ".join(f"{names[j]} ({s} row{'' if s == 1 else 's'}): "
                                    f"{', '.join(f'{b}*{names[j]}' for b in t_cols)}"
                                    for j, s in self.basis_.sparse_covariates_)
                more = (len(t_cols) * len(self.basis_.sparse_covariates_),
                        f"of the treatment interactions phi(t, x), {listing}")
            # warn -> warn_sparse_columns -> _fit_stages -> fit -> keeps_caller_state -> fit's caller
            warn_sparse_columns(self.x_basis_, names, "EffectCurve", stacklevel=4, more=more)
            learner = (self.learner if self.learner is not None
                       else SpikeSlabLearner(seed=self.seed, device=str(self.device_)))
            cf = crossfit_predict(learner, self.Bx_, {"y": y, "t": t}, folds=folds, after_fit=bar.update)
            self.m_hat_, self.g_hat_ = cf.predictions["y"], cf.predictions["t"]
        else:
            self.x_basis_, self.Bx_, self.m_hat_, self.g_hat_ = None, None, None, None
        tt = self._tensor(t)
        Xt = self._tensor(X) if X is not None else None
        Phi = self.basis_.features(tt, Xt).cpu().numpy()
        G = self.basis_.jacobian(tt, Xt).cpu().numpy()
        R = folds.shape[0]
        bar.set_description("effect-curve: final stage")
        taus, vars_, self.coefs_, self.covs_, self.final_ = np.empty((R, n)), np.empty((R, n)), [], [], []
        for r in range(R):
            if r > 0 and self.Bx_ is None:  # no covariates: the splits only differ in their (absent) nuisances
                reg = self.final_[0]
            else:
                reg = self._final_fit(self._design(Phi, r), y, num_samples=self.num_samples if r == 0 else 1)
                bar.update()
            taus[r], vars_[r], beta, Sigma = self._effect(reg, G)
            self.coefs_.append(beta)
            self.covs_.append(Sigma)
            self.final_.append(reg)
        self.taus_, self.variances_ = taus, vars_
        self.tau_, self.var_ = aggregate_split_arrays(taus, vars_)
        self.se_ = np.sqrt(self.var_)
        self.folds_, self.jacobian_, self.design_ = folds, G, self._design(Phi, 0)
        self._y, self._t, self._X, self.n_ = y, t, X, n
        self.calibration_ = self._calibrate(bar) if self.n_pseudo > 0 else None

    def _calibrate(self, bar: Any = None) -> ConformalCalibration:
        """Held-out residuals of the final stage on split 0's folds, then :func:`calibrate_band` (module docs);
        ``bar`` (a progress bar) advances after each fit."""
        D, y, G, fold = self.design_, self._y, self.jacobian_, self.folds_[0]
        step = bar.update if bar is not None else (lambda: None)
        if bar is not None:
            bar.set_description("effect-curve: conformal refits")
        resid = np.empty_like(y)
        for k in range(int(fold.max()) + 1):
            test = fold == k
            # a rare category's dummy can be constant on a fold's training rows (cps1985 with 2 folds): its
            # coefficient is not identified there, so that fit leaves the column out
            keep = np.ptp(D[~test], axis=0) > 0
            reg = self._final_fit(D[~test][:, keep], y[~test])
            resid[test] = y[test] - self._predict(reg, D[test][:, keep])
            step()
        mu = self._predict(self.final_[0], D)

        def refit(y_star: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            tau_b, var_b, _, _ = self._effect(self._final_fit(D, y_star), G)
            return tau_b, var_b

        self.heldout_residuals_ = resid
        # seed + 1, wrapped into the seed range (calibrate_band checks it): the top seed 2**32 - 1 gives 0
        return calibrate_band(refit, mu, resid, self.taus_[0], n_pseudo=self.n_pseudo,
                              seed=(self.seed + 1) % (SEED_MAX + 1), after_refit=step)

    def _ape(self) -> tuple[float, float]:
        """APE = median_r mean_i tau_r,i, se^2 = median_r (V_r + (APE_r - APE)^2), V_r = Gbar Sigma_r Gbar^T +
        s^2_tau,r / n: the median over splits of each split's APE, not the mean of the split-median tau_hat_i."""
        gbar = self.jacobian_.mean(axis=0)
        est = self.taus_.mean(axis=1)
        var = np.array([gbar @ S @ gbar for S in self.covs_]) + self.taus_.var(axis=1, ddof=1) / self.n_
        return aggregate_splits(est, var)

    # ------------------------------------------------------------------ reporting
    def _fitted(self) -> None:
        if not hasattr(self, "tau_"):
            raise PyrozooError("EffectCurve: call fit(y, t, X) first")

    def critical_value(self, alpha: float | None = None, *, calibrated: bool = True) -> float:
        """C_{1-alpha/2}: conformally calibrated (:mod:`pyrozoo.causal.conformal`), or z_{1-alpha/2}."""
        alpha = self.alpha if alpha is None else alpha
        check_probability("alpha", alpha, open_interval=True)
        if calibrated and getattr(self, "calibration_", None) is not None:
            return self.calibration_.critical_value(alpha)
        return float(stats.norm.ppf(1 - alpha / 2))

    def band(self, alpha: float | None = None, *, calibrated: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Per-observation band tau_hat_i -+ C sqrt(V_hat_i)."""
        self._fitted()
        c = self.critical_value(alpha, calibrated=calibrated)
        return self.tau_ - c * self.se_, self.tau_ + c * self.se_

    def effects(self) -> pd.DataFrame:
        """One row per observation: t, tau_hat, its posterior sd, the calibrated and the Wald band; indexed like the
        pandas inputs of ``fit`` (0..n-1 for arrays)."""
        self._fitted()
        lo, hi = self.band()
        wlo, whi = self.band(calibrated=False)
        return pd.DataFrame({"t": self._t, "estimate": self.tau_, "std_err": self.se_, "lower": lo, "upper": hi,
                             "lower_wald": wlo, "upper_wald": whi}, index=self.index_)

    def curve(self, grid: Any = None, x: Any = None, *, alpha: float | None = None, num: int = 50) -> pd.DataFrame:
        """The effect curve over a grid of t: tau(g, x) at covariates ``x`` ((p,) or rows (m, p) averaged over), or
        averaged over the observed covariates when ``x`` is None (a partial-dependence curve of the slope).
        After a fit on a DataFrame, a Series ``x`` is matched to the covariates by its index labels and a DataFrame
        by its columns (:func:`~pyrozoo.causal.inputs.aligned_covariates`); arrays and lists by position.
        ``grid`` defaults to ``num`` points between the 2.5% and 97.5% quantiles of t."""
        self._fitted()
        if grid is None:
            grid = np.linspace(*np.quantile(self._t, [0.025, 0.975]), check_int("num", num, minimum=1))
        grid = numeric_vector("grid", grid)
        if grid.size == 0:
            raise PyrozooError("grid: expected at least one treatment value")
        if self._X is None:
            if x is not None:
                raise PyrozooError("x: the model was fitted without covariates; leave x=None")
            rows = None
        else:
            x = aligned_covariates("x", detached(x), self.feature_names_)
            if x is not None:
                check_numeric_columns("x", x)
            try:
                rows = self._X if x is None else np.atleast_2d(np.asarray(x, dtype=np.float64))
            except (TypeError, ValueError) as exc:
                raise PyrozooError(f"x: expected numeric covariate values, got {exc}") from None
            if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] != self._X.shape[1]:
                raise PyrozooError(f"x: expected {self._X.shape[1]} covariate values per row (a vector or rows), got "
                                   f"shape {rows.shape}")
            check_finite("x", rows)
        m = 1 if rows is None else rows.shape[0]
        tt = self._tensor(np.repeat(grid, m))
        Xt = None if rows is None else self._tensor(np.tile(rows, (grid.size, 1)))
        Gbar = self.basis_.jacobian(tt, Xt).cpu().numpy().reshape(grid.size, m, -1).mean(axis=1)
        est = np.stack([Gbar @ b for b in self.coefs_])
        var = np.stack([np.einsum("ij,jk,ik->i", Gbar, S, Gbar) for S in self.covs_])
        mid = np.median(est, axis=0)
        se = np.sqrt(np.median(var + (est - mid) ** 2, axis=0))
        c, z = self.critical_value(alpha), self.critical_value(alpha, calibrated=False)
        return pd.DataFrame({"t": grid, "estimate": mid, "std_err": se, "lower": mid - c * se, "upper": mid + c * se,
                             "lower_wald": mid - z * se, "upper_wald": mid + z * se})

    def summary(self) -> pd.DataFrame:
        """The average partial effect (estimate, std. error, z, p-value, CI) with the band's constants in ``attrs``."""
        self._fitted()
        z = stats.norm.ppf(1 - self.alpha / 2)
        lo, hi = f"ci_{100 * self.alpha / 2:g}%", f"ci_{100 * (1 - self.alpha / 2):g}%"
        est, se = self.ape_, self.ape_se_
        out = pd.DataFrame.from_dict({"average partial effect": {
            "estimate": est, "std_err": se, "z": est / se, "p_value": 2 * stats.norm.sf(abs(est / se)),
            lo: est - z * se, hi: est + z * se}}, orient="index")
        out.attrs.update(self.band_summary())
        return out

    def band_summary(self) -> dict[str, float]:
        """The band's constants (calibrated C, z), mean width and the pseudo-world coverage of both."""
        self._fitted()
        c, z = self.critical_value(), self.critical_value(calibrated=False)
        out = {"alpha": self.alpha, "C": c, "z": z, "mean_band_width": float(2 * c * self.se_.mean()),
               "mean_wald_width": float(2 * z * self.se_.mean()), "n": self.n_, "n_pseudo": self.n_pseudo,
               "n_repeats": self.n_repeats}
        if self.calibration_ is not None:
            out["pseudo_coverage_calibrated"] = self.calibration_.pseudo_coverage(c)
            out["pseudo_coverage_wald"] = self.calibration_.pseudo_coverage(z)
        return out

    def posterior_effects(self) -> np.ndarray:
        """Posterior draws of tau at the observations, (num_samples, n), from split 0's coefficient draws."""
        self._fitted()
        reg = self.final_[0]
        q = self.jacobian_.shape[1]
        draws = reg.sample_coef(self.num_samples)[:, :q] * reg.y_sd_
        return draws @ self.jacobian_.T

    def result(self) -> Any:
        """Split 0's final stage as ``pyrozoo run effect-curve`` fits it (the same code path: the entry's dataset,
        :func:`~pyrozoo.models.effect_curve.final_stage_dataset`, and its ``fit`` with ``inference="em"``, this
        estimator's ``seed``, ``num_samples`` and device, and the final stage's own prior and EM settings
        ``em_variant``, ``ladder``, ``max_iter`` from ``prior_options``): a :class:`~pyrozoo.inference.result.Result`
        with ``num_samples`` Gaussian draws of the standardized coefficients around the EM mode (those of the
        estimator's own final-stage fit, ``final_[0].result_``) and the partial effects
        tau_i = sd(y) sum_k G_ik w_k / sd(D_k) as posterior variable ``tau`` (dim ``obs_id``).
        ``to_inference_data()`` has the pointwise log-likelihood in y's own units, log N(y_std,i | D_i w, sigma^2)
        - log sd(y) (attrs ``response_shift``, ``response_scale``), so that
        ``az.compare`` with other zoo models of the same y is right; attrs ``model`` is ``"effect-curve"``."""
        self._fitted()
        from pyrozoo import registry
        from pyrozoo.config import RunConfig
        from pyrozoo.models.effect_curve import final_stage_dataset

        entry = registry.get("effect-curve")
        config = RunConfig(model="effect-curve", inference="em", seed=self.seed, device=str(self.device_),
                           num_samples=self.num_samples, progress=False).validate()
        result = entry.fit(final_stage_dataset(self, device=self.device_), config)
        result.config = entry.recorded_config(config)  # as run_model records what ran
        return result

    def plot(self, path: str | os.PathLike | None = None, *, truth: Any = None, grid: Any = None,
             ax: Any = None) -> Any:
        """Curve with the calibrated band (shaded), the Wald band (dashed), the per-observation estimates (dots) and
        the data's t as a rug; ``truth``: optional callable grid -> true averaged curve. Written to ``path`` when
        given (png when it has no extension; an empty path, an extension matplotlib cannot write or a missing
        directory is refused before drawing, :func:`~pyrozoo.validation.check_figure_path`). Returns the Axes."""
        return plot_effect_curve(self, path, truth=truth, grid=grid, ax=ax)


def plot_effect_curve(est: EffectCurve, path: str | os.PathLike | None = None, *, truth: Any = None,
                      grid: Any = None, ax: Any = None) -> Any:
    """See :meth:`EffectCurve.plot`."""
    if path is not None:
        path = check_figure_path("path", path)
    if truth is not None and not callable(truth):
        raise PyrozooError(f"truth: expected a function grid -> true curve values (or None), got {truth!r}")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cur = est.curve(grid)
    true_curve = None
    if truth is not None:  # checked before a figure is opened
        values = truth(cur["t"].to_numpy())
        try:
            true_curve = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise PyrozooError(f"truth: expected truth(grid) to return numbers, got {values!r}") from None
        if true_curve.ndim == 0:
            true_curve = np.full(len(cur), float(true_curve))
        if true_curve.shape != (len(cur),):
            raise PyrozooError(f"truth: expected one value per grid point ({len(cur)},), got shape "
                               f"{true_curve.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(est._t, est.tau_, ".", color="0.6", ms=2.5, alpha=0.6, label="tau_hat at each observation")
    pct = 100 * (1 - est.alpha)
    ax.fill_between(cur["t"], cur["lower"], cur["upper"], color="tab:blue", alpha=0.25,
                    label=f"{pct:g}% calibrated band (C = {est.critical_value():.2f})")
    ax.plot(cur["t"], cur["lower_wald"], "--", color="tab:blue", lw=0.8,
            label=f"Wald band (z = {est.critical_value(calibrated=False):.2f})")
    ax.plot(cur["t"], cur["upper_wald"], "--", color="tab:blue", lw=0.8)
    ax.plot(cur["t"], cur["estimate"], color="tab:blue", lw=2, label="effect curve (averaged over x)")
    if true_curve is not None:
        ax.plot(cur["t"], true_curve, color="tab:red", lw=1.5, label="true curve")
    ax.plot(est._t, np.full_like(est._t, ax.get_ylim()[0]), "|", color="k", ms=4, alpha=0.3)
    ax.set_xlabel("treatment t")
    ax.set_ylabel("partial effect d theta / d t")
    ax.set_title(f"Partial effect curve (APE {est.ape_:.3f} +- {est.ape_se_:.3f})")
    ax.legend(fontsize=7, loc="best")
    if path is not None:
        ax.figure.tight_layout()
        ax.figure.savefig(path, dpi=100)
        plt.close(ax.figure)
    return ax


__all__ = ["COVARIATE_ONLY", "FINAL_STAGE_EM_SETTINGS", "NOT_PRIOR_OPTIONS", "EffectCurve", "TreatmentBasis",
           "check_prior_options", "covariate_only_options", "cubic_spline_basis", "cubic_spline_derivative",
           "natural_spline_basis", "natural_spline_derivative", "plot_effect_curve"]
