"""Partially linear causal effects (PLCE) with machine-learned controls (Ratkovic 2023; Chernozhukov et al. 2018).

Model:  y_i = theta t_i + f(x_i) + e_i,   t_i = g(x_i) + v_i.

With m(x) = E[y | x] = theta g(x) + f(x), the cross-fitted residuals ry_i = y_i - m_hat(x_i) and
rt_i = t_i - g_hat(x_i) (see :mod:`pyrozoo.causal.crossfit`) give the residual-on-residual ("partialling out")
estimate and its HC3 sandwich variance, per split r:

    theta_r = sum_i w_i rt_i ry_i / sum_i w_i rt_i^2,
    V_r = sum_i w_i^2 rt_i^2 u_i^2 / (1 - h_i)^2 / (sum_i w_i rt_i^2)^2,  u_i = ry_i - theta_r rt_i,
    h_i = w_i rt_i^2 / sum_j w_j rt_j^2,

with w_i = 1 (homoskedastic treatment model) or w_i = 1 / Var(t | x_i) (heteroskedastic treatment model, which
targets the average effect E[theta(x)] when effects are heterogeneous). Splits are aggregated by the median rule of
Chernozhukov et al. (2018, sec. 3.4), with V_r on theta's scale: theta = median_r theta_r,
se^2 = median_r (V_r + (theta_r - theta)^2). Neither DoubleML version does exactly this: older releases divided the
spread term by n, se^2 = median_r (V_r + (theta_r - theta)^2 / n) (never larger); DoubleML 0.11.4 takes
se = (median_r (theta_r + 1.96 se_r) - theta) / 1.96 (usually smaller, at most ~12% larger). With one split all
three agree. The "feasible model" of the talk regresses
y on [1, t, m_hat(x), g_hat(x)] by (weighted) least squares, with the HC3 sandwich, aggregated the same way.

Nuisances are fitted on a spline + interaction basis of x (:mod:`pyrozoo.causal.basis`) with the spike-and-slab
regression (EM) by default; any object with fit/predict may be injected.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, RegressorMixin

from pyrozoo.causal.basis import (
    SplineInteractionBasis,
    cross_fit_min_product_support,
    interaction_kind,
    warn_sparse_columns,
)
from pyrozoo.causal.crossfit import (
    CrossFitPredictions,
    check_learner,
    clip_to_range,
    constant_columns,
    crossfit_predict,
    make_folds,
)
from pyrozoo.causal.diagnostics import positivity_kurtosis, positivity_summary, sensitivity
from pyrozoo.causal.extensions import (
    RandomInterceptLearner,
    default_bandwidths,
    interference_features,
    select_bandwidth,
    sparse_pairs,
    treatment_variance,
    white_features,
)
from pyrozoo.causal.inputs import (
    check_enough_rows,
    check_no_constant_columns,
    check_no_duplicate_columns,
    check_treatment_identified,
    check_varies,
    covariate_matrix,
    numeric_vector,
    standardized_columns,
)
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.device import keeps_caller_state, resolve_device
from pyrozoo.validation import (
    check_bool,
    check_choice,
    check_figure_path,
    check_finite,
    check_int,
    check_positive,
    check_probability,
    check_same_index,
    check_seed,
)

TREATMENT_MODELS = ("homoskedastic", "heteroskedastic")
SE_TYPES = ("hc3", "cluster")
REFITS = ("union", "union_ols", "none")
FINAL_STAGES = ("wls", "orthogonal")
MAX_REFIT_FRACTION = 0.25  # PLCE's default; another value is refused where no refit happens
# Below this many clusters the cluster-robust SE warns: CR1 with normal critical values over-rejects with few clusters
# (Cameron & Miller 2015, "A practitioner's guide to cluster-robust inference", sec. VI: noticeably below ~20-50)
MIN_RELIABLE_CLUSTERS = 30


class SpikeSlabLearner(RegressorMixin, BaseEstimator):
    """The default nuisance learner: :class:`pyrozoo.models.spike_slab.SpikeSlabRegression` fitted by EM on a
    centred and scaled outcome (predictions are mapped back), so one prior suits outcomes on any scale."""

    def __init__(self, seed: int = 0, device: str = "cpu", prior_options: dict | None = None) -> None:
        self.seed = seed
        self.device = device
        self.prior_options = prior_options

    @keeps_caller_state
    def fit(self, X: np.ndarray, y: np.ndarray) -> SpikeSlabLearner:
        """EMVS with its model selection over the spike-variance ladder, then the posterior mean of w given the
        selected model: the numbers of ``SpikeSlabRegression(inference="em").fit(X, y).coef_`` (the test checks
        that), computed without assembling its ``Result`` (Pyro trace, posterior draws, InferenceData), which a
        nuisance fit never uses and which cost ~15% of a PLCE fit. Rows are paired by position: pandas ``X`` and ``y``
        must share one index (:func:`~pyrozoo.validation.check_same_index`)."""
        from pyrozoo.models.spike_slab import selected_model_posterior
        from pyrozoo.models.spike_slab_em import fit_emvs
        from pyrozoo.models.spike_slab_prior import as_prior, standardize

        check_same_index(X=X, y=y)
        y = np.asarray(y, dtype=np.float64)
        self.y_loc_, sd = float(y.mean()), float(y.std())
        self.y_scale_ = sd if sd > 0 else 1.0
        opts = dict(self.prior_options or {})
        lam = opts.pop("lam", None)
        # a nuisance fit's y may be constant (a fold's treatment): y_scale_ above already allows for it
        data = standardize(np.asarray(X, dtype=np.float64), (y - self.y_loc_) / self.y_scale_,
                           device=resolve_device(self.device), constant_y=True)
        lam = float(lam) if lam is not None else max(float(data.yty) / max(data.n - 1, 1), 1e-8)
        prior = as_prior(opts, lam=lam)
        fit = fit_emvs(data, prior, select=prior.conjugate)
        if prior.conjugate:
            w_std = selected_model_posterior(data, prior, fit.inclusion > 0.5)[0]
        else:
            w_std = fit.w
        coef = w_std / data.x_scale
        self.coef_ = coef.cpu().numpy()
        self.intercept_ = float(data.y_mean - float(data.x_mean @ coef))
        self.inclusion_probabilities_ = fit.inclusion.cpu().numpy().astype(float)
        return self

    @property
    def selected_(self) -> np.ndarray:
        """(p,) boolean mask of the columns with posterior inclusion probability > 0.5."""
        return self.inclusion_probabilities_ > 0.5

    def predict(self, X: np.ndarray) -> np.ndarray:
        pred = self.intercept_ + np.asarray(X, dtype=np.float64) @ self.coef_
        return self.y_loc_ + self.y_scale_ * pred.reshape(-1)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """scikit-learn's R^2 (``RegressorMixin.score``), with rows paired by position as in :meth:`fit`: pandas
        ``X``, ``y`` (and ``sample_weight``) must share one index (:func:`~pyrozoo.validation.check_same_index`)."""
        check_same_index(X=X, y=y, sample_weight=sample_weight)
        return super().score(X, y, sample_weight=sample_weight)


@dataclass
class WeightModel:
    """A final-stage weight w_i = 1 / s2_i estimated by least squares, s2 = Z gamma (``Z`` with its intercept
    column), so its estimation noise can be carried into the sandwich (:func:`wls_hc3`): ``resid`` = v_hat^2 - Z
    gamma_hat (the variance regression's residuals), ``active`` = rows whose s2 is not at the floor (there dw/dgamma
    = 0)."""

    Z: np.ndarray
    resid: np.ndarray
    active: np.ndarray


def wls_hc3(X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, *,
            clusters: np.ndarray | None = None,
            weight_model: WeightModel | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares coefficients and their HC3 sandwich covariance (or the cluster-robust CR1 one when
    ``clusters`` is given). With Xw = sqrt(w) X, yw = sqrt(w) y, u = yw - Xw b, h = diag(Xw (Xw'Xw)^-1 Xw'):
    V = (Xw'Xw)^-1 Xw' diag(u^2 / (1 - h)^2) Xw (Xw'Xw)^-1. Written by hand (a few lines of linear algebra) so
    the estimator does not depend on statsmodels; the tests compare it with statsmodels.

    Computed on a reparametrized design, so the result is equivariant to the units and offsets of y and of each
    column: X = Xs T^-1 with Xs = sqrt(w) (X - 1 m') D^-1, where m holds the weighted column means when X has a
    constant (intercept) column (m = 0 otherwise, and y is centred the same way) and D the norms of the centred
    columns; then b = T bs with bs from the SVD Xs = U S V' (singular values below max(n, k) eps S_max dropped),
    h = rowwise |U|^2 and (Xw'Xw)^+ = T V S^-2 V' T'. Inverting Xw'Xw directly lost all precision once the columns'
    scales differed (y + 1e8 in the feasible model [1, t, m_hat, g_hat] gave 0). For a rank-deficient design the
    fitted values and the identified coefficients (estimable combinations) are those of least squares, but bs is
    the minimum-norm solution on the scaled design, so the unidentified coefficients are in general not those of
    ``np.linalg.pinv(Xw) @ yw`` (the minimum-norm solution in X's own units).

    ``weight_model`` (w = 1 / Z gamma_hat, gamma_hat by least squares; ``w`` must then be exactly 1 / s2, not
    rescaled): stacked estimating equations (Newey & McFadden 1994, sec. 6) add the first-order effect of
    gamma_hat to each row's influence,
        phi_i = (X'WX)^-1 w_i x_i r_i / (1 - h_i) + C z_i e_i,
        C = db/dgamma (Z'Z)^-1,  db/dgamma = -(X'WX)^-1 sum_i a_i w_i^2 r_i x_i z_i',
    with r = y - X b, e the variance regression's residuals, a_i = 1 unless s2_i is floored; V = sum_i phi_i
    phi_i' (summed within clusters first when ``clusters`` is given). Under heterogeneous effects the weighted
    coefficient moves with the weights at first order, so treating them as known understates the variance."""
    if clusters is not None:
        check_cluster_count("clusters", clusters)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    y = np.asarray(y, dtype=np.float64)
    n, k = X.shape
    w_arr = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    sw = np.sqrt(w_arr)
    # T maps the coefficients bs of the centred, scaled design Xt = (X - 1 m') D^-1 back: X T = Xt, b = T bs
    const = [j for j in range(k) if X[0, j] != 0 and np.ptp(X[:, j]) == 0]
    m, y_loc = np.zeros(k), 0.0
    if const:
        m = w_arr @ X / w_arr.sum()
        m[const[0]] = 0.0
        y_loc = float(w_arr @ y / w_arr.sum())
    Xc = X - m
    d = np.sqrt((w_arr[:, None] * Xc**2).sum(axis=0))
    d[d == 0] = 1.0
    Xt = Xc / d
    T = np.diag(1.0 / d)
    if const:
        T[const[0]] -= m @ T / X[0, const[0]]
    Xs, yc = Xt * sw[:, None], y - y_loc
    U, S, Vt = np.linalg.svd(Xs, full_matrices=False)
    keep = S > S[0] * max(n, k) * np.finfo(np.float64).eps
    U, S, Vt = U[:, keep], S[keep], Vt[keep]
    bs = Vt.T @ ((U.T @ (yc * sw)) / S)
    b = T @ bs
    if const:
        b[const[0]] += y_loc / X[0, const[0]]
    u = yc * sw - Xs @ bs
    if clusters is None:
        h = (U**2).sum(axis=1)
        u = u / np.clip(1 - h, 1e-8, None)
    phi = ((U * u[:, None]) / S) @ Vt @ T.T  # (n, k) rows of the influence of b: w_i x_i r_i' (X'WX)^+ [/ (1 - h_i)]
    if weight_model is not None:
        Z = np.asarray(weight_model.Z, dtype=np.float64)
        r = yc - Xt @ bs  # y - X b, without the offsets' cancellation
        g = (np.asarray(weight_model.active, dtype=np.float64) * w_arr**2 * r)[:, None] * Xt
        db_dgamma = -T @ (Vt.T / S**2) @ Vt @ (g.T @ Z)
        C = db_dgamma @ np.linalg.pinv(Z.T @ Z)
        phi = phi + (Z * np.asarray(weight_model.resid, dtype=np.float64)[:, None]) @ C.T
    if clusters is None:
        return b, phi.T @ phi
    codes, inv = np.unique(clusters, return_inverse=True)
    G = len(codes)
    sums = np.zeros((G, k))
    np.add.at(sums, inv, phi)
    return b, sums.T @ sums * (G / max(G - 1, 1)) * ((n - 1) / max(n - k, 1))


def check_cluster_count(name: str, clusters: Any, *, warn_few: bool = False, stacklevel: int = 2) -> int:
    """Raise unless ``clusters`` has at least 2 distinct ids: the cluster-robust (CR1) variance sums the scores
    within each cluster, and with a single cluster that sum is zero by the normal equations (SE ~1e-17, a zero-width
    interval), while its small-sample factor G / (G - 1) is undefined. With ``warn_few``, also warn (UserWarning)
    when there are fewer than :data:`MIN_RELIABLE_CLUSTERS` clusters. Returns the number of clusters G."""
    n_clusters = len(pd.unique(np.asarray(clusters).reshape(-1)))
    if n_clusters < 2:
        raise PyrozooError(f"{name}: cluster-robust standard errors (se_type='cluster') need at least 2 clusters; got "
                           f"{n_clusters} distinct group id(s)")
    if warn_few and n_clusters < MIN_RELIABLE_CLUSTERS:
        warnings.warn(f"{name}: cluster-robust standard errors (se_type='cluster') from {n_clusters} clusters are "
                      f"unreliable: CR1 with normal quantiles is accurate only with many clusters (about "
                      f"{MIN_RELIABLE_CLUSTERS} or more) and is typically too small with few, so the interval "
                      f"undercovers; cluster on a grouping with more levels or read the interval with caution",
                      UserWarning, stacklevel=stacklevel)
    return n_clusters


def learner_selects(learner: Any) -> bool | None:
    """Whether a nuisance ``learner`` (instance or factory, as passed to :class:`PLCE`) exposes the column selection
    ``selected_`` that the union refit needs, known before any fit: True for the default (``None``, spike-and-slab)
    and for a class declaring ``selected_`` (:class:`SpikeSlabLearner`); False for a scikit-learn estimator (none
    exposes one: RidgeCV, LassoCV, random forests, pipelines, searches); None (not known until fitted) otherwise."""
    if learner is None:
        return True
    cls = learner if isinstance(learner, type) else type(learner)
    if hasattr(cls, "selected_"):
        return True
    if cls.__module__.split(".")[0] == "sklearn":
        return False
    return None


def _selection(learner: Any) -> np.ndarray | None:
    """The boolean column selection of a fitted learner (unwrapping the random-intercept wrapper), or None."""
    inner = getattr(learner, "learner_", learner)
    sel = getattr(inner, "selected_", None)
    return None if sel is None else np.asarray(sel, dtype=bool)


def union_refit(cf: CrossFitPredictions, design: np.ndarray, y: np.ndarray, t: np.ndarray,
                groups: np.ndarray | None = None, *, max_fraction: float = 0.25,
                ridge: bool = False, clip: bool = False, sample_weight: np.ndarray | None = None,
                controls: np.ndarray | None = None) -> tuple[CrossFitPredictions, float, dict[str, int]]:
    """Post-double-selection refit of cross-fitted nuisances (Belloni, Chernozhukov & Hansen 2014).

    In repeat r and fold k, with S = S_y u S_t the columns selected by the learners of E[y | x] and E[t | x] on the
    training folds, both nuisances are refitted there by least squares on [1, design[:, S]] (with random
    intercepts by ``groups`` when given; with ``ridge=True`` by ridge regression, penalty by efficient
    leave-one-out over 10^-2..10^4) and predict the held-out fold. Using the same S for both makes the
    residual-on-residual estimate the OLS coefficient of t in y ~ t + design[:, S] (Frisch-Waugh-Lovell; exactly
    for least squares, approximately for the ridge refit), which
    is first-order insensitive to a column missed by one of the two selections. A fold whose learners expose no
    selection, or whose union exceeds ``max_fraction`` x (training rows), keeps the learner's predictions.
    ``clip``: held-out columns are clipped to their training range first (see :func:`clip_to_range`).
    ``sample_weight`` ((R, n) or (n,)): precision weights of the rows for both refits (weighted least squares /
    ridge, weighted BLUPs), renormalized to mean 1 on each training set (see ``PLCE(weighted_nuisances=...)``).
    ``controls`` ((n, c)): columns in every refit whatever the selections, unpenalized
    (:class:`~pyrozoo.causal.partial_ridge.PartialRidgeCV`) while |S| + c <= ``max_fraction`` x (training rows).
    In a fold where they would take the unpenalized columns past that bound (many covariates, few rows) they still
    join, penalized: the ridge refit penalizes [controls, design[:, S]] together (``RidgeCV``, one penalty by
    leave-one-out, well-posed for any number of columns); the least-squares refit keeps design[:, S] unpenalized
    and penalizes the controls (``PartialRidgeCV(n_free=|S|)``). Dropping them there left the refit on the few
    columns the selections kept (at n = 40, 10 covariates: one to three, often none, so the training mean) and
    the estimate near the unadjusted slope of y on t. Only without controls does a fold with nothing selected
    (and no ``groups``) predict the training mean.
    Returns the new predictions, the share of (repeat, fold) cells refitted and the counts of cells
    ``{"training_mean": ..., "penalized_controls": ..., "union_too_large": ...}`` (refitted to the training mean;
    refitted with the controls penalized; not refitted because the union alone exceeds ``max_fraction`` x
    (training rows), so neither the refit nor the controls apply there).
    Needs ``keep_learners=True``."""
    from sklearn.linear_model import LinearRegression, RidgeCV

    from pyrozoo.causal.extensions import RandomInterceptLearner
    from pyrozoo.causal.partial_ridge import DEFAULT_ALPHAS, PartialRidgeCV

    if not cf.learners:
        raise PyrozooError("union_refit: the cross-fit must keep its learners (keep_learners=True)")
    preds = {k: v.copy() for k, v in cf.predictions.items()}
    n_controls = 0 if controls is None else controls.shape[1]
    if n_controls:
        design = np.concatenate([controls, design], axis=1)
    done, n_mean, n_penalized, n_too_large = 0, 0, 0, 0
    R, K = cf.folds.shape[0], cf.n_folds
    sw_all = None if sample_weight is None else np.broadcast_to(np.asarray(sample_weight, dtype=np.float64),
                                                                 cf.folds.shape)
    for r in range(R):
        for k in range(K):
            sy, st = _selection(cf.learners["y"][r][k]), _selection(cf.learners["t"][r][k])
            test = cf.folds[r] == k
            train = ~test
            if sy is None or st is None:
                continue
            if (sy | st).sum() > max_fraction * train.sum():  # no refit (nor controls): the learner's predictions
                n_too_large += 1
                continue
            union = n_controls + np.flatnonzero(sy | st)
            ctrl = np.arange(n_controls)
            if len(union) + n_controls <= max_fraction * train.sum():  # the controls join unpenalized
                cols = np.concatenate([ctrl, union])
                n_free = n_controls if ridge else len(cols)
            else:  # too many unpenalized columns for the training rows: the controls join penalized
                n_penalized += 1
                cols = np.concatenate([ctrl, union]) if ridge else np.concatenate([union, ctrl])
                n_free = 0 if ridge else len(union)
            fit_kw = {} if sw_all is None else {"sample_weight": sw_all[r, train] / sw_all[r, train].mean()}
            for name, target in (("y", y), ("t", t)):
                if len(cols):
                    if not ridge and n_free == len(cols):
                        base = LinearRegression()
                    else:
                        base = PartialRidgeCV(n_free=n_free) if n_free else RidgeCV(alphas=DEFAULT_ALPHAS)
                    est = RandomInterceptLearner(base, n_iter=2) if groups is not None else base
                    kw_tr = {"groups": groups[train]} if groups is not None else {}
                    kw_te = {"groups": groups[test]} if groups is not None else {}
                    est.fit(design[train][:, cols], target[train], **kw_tr, **fit_kw)
                    X_test = design[test][:, cols]
                    if clip:
                        X_test = clip_to_range(X_test, design[train][:, cols])
                    preds[name][r, test] = est.predict(X_test, **kw_te)
                elif groups is None:
                    preds[name][r, test] = (target[train].mean() if sw_all is None
                                            else np.average(target[train], weights=sw_all[r, train]))
                else:
                    continue  # nothing selected: keep the learner's random-intercept fit
            n_mean += int(not len(cols) and groups is None)
            done += 1
    counts = {"training_mean": n_mean, "penalized_controls": n_penalized, "union_too_large": n_too_large}
    return CrossFitPredictions(preds, cf.folds, {}), done / (R * K), counts


def varying_effect(ry: np.ndarray, rt: np.ndarray, features: np.ndarray, folds: np.ndarray,
                   w: np.ndarray | None = None, *, clip: bool = True) -> np.ndarray:
    """Cross-fitted varying coefficient th(x) (the R-learner of Nie & Wager 2021): on the training folds, ridge
    regression (penalty by efficient leave-one-out error, no intercept) of ry on A = rt * [1, features] with weights
    ``w``, i.e. min_b sum_i w_i (ry_i - rt_i [1, f_i]'b)^2 + alpha |b|^2; th(x_i) = [1, f_i]'b on the held-out fold
    (its features clipped to the training range). One split: ``ry``, ``rt``, ``folds``, ``w`` are (n,).

    The penalty is unit-free: each column of A and ry are divided by their weighted root mean squares on the
    training folds, s_j and s_y (not centred: the regression has no intercept), before the fit, and b_j = s_y bs_j /
    s_j, so th scales as y / t. On raw columns the grid 10^-3..10^3 meant a different penalty in other units (theta
    2.11 at base units, 2.15 with y * 1e4, t * 1e-4)."""
    from sklearn.linear_model import RidgeCV

    D = np.column_stack([np.ones(len(ry)), np.asarray(features, dtype=np.float64)])
    w = np.ones(len(ry)) if w is None else np.asarray(w, dtype=np.float64)
    th = np.empty(len(ry))
    for k in range(int(folds.max()) + 1):
        test = folds == k
        train = ~test
        A, target, sw = rt[train, None] * D[train], ry[train], w[train] / w[train].mean()
        s = np.sqrt(sw @ A**2 / len(sw))
        s[s == 0] = 1.0
        s_y = float(np.sqrt(sw @ target**2 / len(sw))) or 1.0
        fit = RidgeCV(alphas=np.logspace(-3, 3, 13), fit_intercept=False).fit(A / s, target / s_y, sample_weight=sw)
        th[test] = (clip_to_range(D[test], D[train]) if clip else D[test]) @ (fit.coef_ * s_y / s)
    return th


def orthogonal_effect(ry: np.ndarray, rt: np.ndarray, w: np.ndarray, th: np.ndarray, *,
                      clusters: np.ndarray | None = None) -> tuple[float, float]:
    """Average effect from the orthogonal (doubly robust) score of the partially linear model with a varying
    effect theta(x) (one split):

        theta = mean_i th_i + sum_i w_i rt_i (ry_i - th_i rt_i) / sum_i w_i rt_i^2,

    with th = th(x_i) a cross-fitted fit of theta(x) (:func:`varying_effect`) and w_i = 1 / s2_hat(x_i). With true
    residuals E[w rt (ry - th rt) | x] = w s2 (theta(x) - th(x)), so the estimate targets E[theta(x)] whatever the
    weights, and its bias from weight errors is a product of two errors, E[(theta - th)(r - E r)] / E r with
    r = s2 / s2_hat, instead of first order as in the weighted residual-on-residual coefficient (which it equals
    when th is constant). Variance: the empirical variance of the influence
        psi_i = th_i - mean(th) + n w_i rt_i (ry_i - th_i rt_i - c rt_i) / sum_j w_j rt_j^2,  c = theta - mean(th),
    summed within ``clusters`` when given; returns (theta, variance)."""
    if clusters is not None:
        check_cluster_count("clusters", clusters)
    n = len(ry)
    den = float((w * rt**2).sum())
    c = float((w * rt * (ry - th * rt)).sum()) / den
    theta = float(th.mean()) + c
    psi = (th - th.mean()) + n * w * rt * (ry - th * rt - c * rt) / den
    if clusters is None:
        return theta, float((psi**2).sum()) / (n * (n - 1))
    _, inv = np.unique(clusters, return_inverse=True)
    sums = np.bincount(inv, weights=psi)
    G = len(sums)
    return theta, float((sums**2).sum()) / n**2 * G / max(G - 1, 1)


def reads_groups(random_effects: Any, se_type: str) -> bool:
    """Whether a fit with these settings reads group ids: its random effects (``random_effects`` True, or None /
    "auto", the default) or cluster-robust standard errors. With random effects off and HC3 they have no effect."""
    return random_effects is not False or se_type == "cluster"


def aggregate_split_arrays(thetas: np.ndarray, variances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The median aggregation over repeated splits of Chernozhukov et al. (2018, sec. 3.4) along axis 0 of (R, ...)
    arrays, element by element: the median estimate theta and the variance median_r(V_r + (theta_r - theta)^2).
    (Not DoubleML's: older releases divided the spread term by n, median_r(V_r + (theta_r - theta)^2 / n);
    DoubleML 0.11.4 takes the SE as (median_r(theta_r + 1.96 se_r) - theta) / 1.96.)"""
    thetas, variances = np.asarray(thetas, dtype=np.float64), np.asarray(variances, dtype=np.float64)
    theta = np.median(thetas, axis=0)
    return theta, np.median(variances + (thetas - theta) ** 2, axis=0)


def aggregate_splits(thetas: np.ndarray, variances: np.ndarray) -> tuple[float, float]:
    """:func:`aggregate_split_arrays` for one scalar estimate per split: (theta, se)."""
    theta, var = aggregate_split_arrays(thetas, variances)
    return float(theta), float(math.sqrt(var))


class PLCE(BaseEstimator):
    """Partially linear causal effect estimator, scikit-learn style: ``PLCE(...).fit(y, t, X, groups=None)``; a
    :class:`sklearn.base.BaseEstimator`, so ``get_params``, ``set_params`` and ``sklearn.base.clone`` work (every
    parameter below is kept unchanged under its own name and checked by ``fit``).

    Parameters
    ----------
    learner: nuisance learner (fit/predict object, scikit-learn estimator or factory); default spike-and-slab EM.
    basis: ``"spline"`` (splines per covariate + pairwise interactions; a product supported on fewer than
        ceil(8 K / (K - 1)) rows, e.g. of a rare dummy, is left out with a warning, see :mod:`pyrozoo.causal.basis`),
        ``"linear"`` (standardized x only), or a transformer with fit_transform (scikit-learn's TransformerMixin;
        its output's constant columns, such as PolynomialFeatures' bias column, are left out with a warning).
    n_knots, degree, interactions: settings of the spline basis.
    n_folds, n_repeats: K folds, R random splits.
    treatment_model: ``"homoskedastic"`` (plain partialling out) or ``"heteroskedastic"`` (model Var(t | x) and
        weight by its inverse; continuous or binary treatment: any two-valued treatment, coded a < b, gets
        Var(t | x) = (b - a)^2 p (1 - p) with p = (g_hat - a) / (b - a), and theta is per unit of t as given, so
        0/10 coding gives the 0/1 theta / 10). ``variance_learner``: learner of v_hat^2 on the
        nuisance design; default OLS on White's regressors (covariates, squares, cross products).
        ``weight_uncertainty`` (default True): with that default variance model and a continuous treatment, the SE
        carries the noise of the estimated weights (stacked estimating equations, see :func:`wls_hc3`); under
        heterogeneous effects the weighted estimate moves with the weights at first order, and treating them as
        known made the HC3 SE ~20% too small in the talk's heterogeneity design (sd of (estimate - 1) / SE 1.27;
        0.97 with the stacked SE, 395 replications, coverage 0.864 -> 0.954; see docs/plce.md). Caveat: in 1-4% of
        data sets one unit extreme in two covariates dominates the variance regression and the SE is >5x typical.
    clip_to_train (default True): every held-out design column is clipped to its range in the training folds
        before a nuisance predicts it, so fits on interaction columns (z1^2 z2^2 ...) do not extrapolate; without it
        one unit extreme in two covariates gave a treatment residual of -31 and moved theta by 0.5.
    random_effects: random intercepts by ``groups`` in both nuisances; ``None`` means on when groups are given.
        Groups with a single level are refused either way (the shared intercept would change nothing).
    interference: add kernel-weighted averages of other units' treatments and covariates to the nuisances.
    interference_column: covariate the kernel distance uses; bandwidth: fixed nu or ``None`` to learn it from
        ``bandwidths`` (default a log grid relative to that covariate's variance).
    se_type: ``"hc3"`` or ``"cluster"`` (cluster-robust CR1 by ``groups``; warns below
        :data:`MIN_RELIABLE_CLUSTERS` = 30 clusters, where it is too small); alpha: 1 - confidence level.
    refit: ``"union"`` (default) refits both nuisances in each training fold on the union of the columns the
        learner selected for y and for t (post-double-selection, Belloni, Chernozhukov & Hansen 2014) by ridge
        regression with the penalty chosen by leave-one-out error; ``"union_ols"`` refits by least squares;
        ``"none"`` keeps the learner's own predictions. The refit needs a learner exposing ``selected_`` (the
        spike-and-slab learner does) and a union of at most ``max_refit_fraction`` x (training rows) columns.
        Why: at n = 400 the spike-and-slab fits of g and f miss correlated parts of x1 and x1^2, and the product of
        the two errors biased theta by -0.06 (1.1 SE); the refit on the union removes that. Least squares on the
        union was unstable under heavy-tailed heteroskedastic noise (one estimate of 3.4 in 25 'combined'
        replications); the LOO ridge keeps the bias fix without that (see docs/plce.md).
    linear_controls (default True; with a refit): the standardized covariates enter every refit, unpenalized, whatever
        the learners selected (an "amelioration set" in Belloni, Chernozhukov & Hansen's sense). Why: a confounder
        that acts linearly is spread over several correlated spline columns, of which the selections keep some; on
        a linear design (n = 600, 40 data sets) that left the estimate 0.043 (MCSE 0.005) below OLS with the true
        controls and its coverage at 0.88; with the covariates forced in, the gap is within sampling error (see
        docs/plce.md and benchmarks/RESULTS.md). Where the covariates and the union would exceed
        ``max_refit_fraction`` x (training rows) unpenalized columns (many covariates, few rows), the covariates
        join that fold's refit penalized (see :func:`union_refit`), and ``fit`` warns; they used to be dropped, which
        at n = 40 with 10 covariates left the unadjusted slope of y on t (z up to 3.4 from the truth, 5.8 with 60).
        Fitted counts: ``refit_share_`` (share of fold fits refitted), ``refit_penalized_controls_folds_`` (fold
        fits with the covariates penalized) and ``refit_mean_folds_`` (fold fits whose refit is the training mean:
        nothing selected and ``linear_controls=False``; warns too) and ``refit_skipped_folds_`` (fold fits not
        refitted at all because the selected union alone exceeds ``max_refit_fraction`` x (training rows), so
        neither the refit nor the linear controls apply; warns too); ``summary().attrs`` repeats them.
    weighted_nuisances (default False; heteroskedastic model with a refit): refit both nuisances a second time on
        the union with the final stage's weights 1 / s2_hat (weighted ridge and BLUPs). Removes the positive bias
        from nuisance noise shared by the two fits under heterogeneous effects (combined design: +0.16 -> +0.03 with
        true final weights), but exposes the negative weight-error bias unless combined with the orthogonal stage.
    final_stage: ``"wls"`` (default; weighted residual-on-residual coefficient with HC3 / stacked SE) or
        ``"orthogonal"``: theta = mean th(x) + sum w rt (ry - th rt) / sum w rt^2 with a cross-fitted R-learner
        th(x) (:func:`varying_effect`, :func:`orthogonal_effect`), first-order insensitive to weight errors; SE from
        the score's empirical variance. Both options together: combined bias +0.064 -> +0.035 at 400 replications,
        but coverage 0.87-0.93 (SE too small) and 9-10% more RMSE in the homogeneous designs, hence off by default.

    An option set away from its default that the others make a no-op (``weighted_nuisances=True`` or a
    ``variance_learner`` without the heteroskedastic model, ``bandwidth`` without interference, ``refit="none"``
    with ``RidgeCV()``, ...) is refused by ``fit`` before any work (it used to be ignored); see docs/plce.md.
    """

    def __init__(self, learner: Any = None, *, basis: Any = "spline", n_knots: int = 5, degree: int = 3,
                 interactions: bool | str = "quadratic", n_folds: int = 5, n_repeats: int = 5,
                 treatment_model: str = "homoskedastic", random_effects: bool | None = None,
                 interference: bool = False, interference_column: int = 0, bandwidth: float | None = None,
                 bandwidths: Sequence[float] | None = None, se_type: str = "hc3", alpha: float = 0.05,
                 variance_learner: Any = None, weight_uncertainty: bool = True, refit: str = "union",
                 max_refit_fraction: float = MAX_REFIT_FRACTION, linear_controls: bool = True,
                 clip_to_train: bool = True, weighted_nuisances: bool = False, final_stage: str = "wls", seed: int = 0,
                 device: str = "cpu") -> None:
        self.learner = learner
        self.basis = basis
        self.n_knots = n_knots
        self.degree = degree
        self.interactions = interactions
        self.n_folds = n_folds
        self.n_repeats = n_repeats
        self.treatment_model = treatment_model
        self.random_effects = random_effects
        self.interference = interference
        self.interference_column = interference_column
        self.bandwidth = bandwidth
        self.bandwidths = bandwidths
        self.se_type = se_type
        self.alpha = alpha
        self.variance_learner = variance_learner
        self.weight_uncertainty = weight_uncertainty
        self.clip_to_train = clip_to_train
        self.weighted_nuisances = weighted_nuisances
        self.final_stage = final_stage
        self.refit = refit
        self.max_refit_fraction = max_refit_fraction
        self.linear_controls = linear_controls
        self.seed = seed
        self.device = device

    # ------------------------------------------------------------------ validation
    def check_settings(self) -> None:
        """Raise for a setting that is invalid whatever the data (fold and split counts, the basis, the choices and
        flags, an option the others make a no-op): what :meth:`fit` checks first, and the CLI before any data are
        read."""
        check_int("n_folds", self.n_folds, minimum=2)
        check_int("n_repeats", self.n_repeats, minimum=1)
        check_seed("seed", self.seed)  # the spike-slab learners seed through set_seed: [0, 2**32 - 1]
        resolve_device(self.device)  # was reported from inside the first nuisance fit, with a hint about few rows
        if isinstance(self.basis, str):  # the spline options are checked even where basis="linear" ignores them
            check_choice("basis", self.basis, ("spline", "linear"))
            check_int("n_knots", self.n_knots, minimum=2)
            check_int("degree", self.degree, minimum=1)
            interaction_kind(self.interactions)
        elif not callable(getattr(self.basis, "fit_transform", None)):
            raise PyrozooError(f"basis: expected 'spline', 'linear' or a transformer with fit_transform(X), "
                               f"got {self.basis!r}")
        check_choice("treatment_model", self.treatment_model, TREATMENT_MODELS)
        check_choice("se_type", self.se_type, SE_TYPES)
        check_probability("alpha", self.alpha, open_interval=True)
        check_choice("refit", self.refit, REFITS)
        check_bool("linear_controls", self.linear_controls)
        check_choice("final_stage", self.final_stage, FINAL_STAGES)
        check_probability("max_refit_fraction", self.max_refit_fraction, open_interval=True)
        for name in ("interference", "weight_uncertainty", "clip_to_train", "weighted_nuisances"):
            check_bool(name, getattr(self, name))
        self._check_option_effects()
        if self.random_effects is not None:  # None: on when groups are given
            check_bool("random_effects", self.random_effects)

    def _check(self, y: Any, t: Any, X: Any, groups: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
        self.check_settings()
        if groups is not None and not reads_groups(self.random_effects, self.se_type):
            # nothing reads them then: the fit gave the numbers of groups=None exactly
            raise PyrozooError(f"groups: group ids apply only with random effects (random_effects=True, or None, the "
                               f"default) or se_type='cluster'; with random_effects=False and "
                               f"se_type={self.se_type!r} they would have no effect (remove them)")
        check_same_index(y=y, t=t, X=X, groups=groups)  # rows are matched by position: labels must agree
        y = numeric_vector("y", y)
        t = numeric_vector("t", t)
        X = covariate_matrix(X)
        n = y.shape[0]
        if t.shape[0] != n or X.shape[0] != n:
            raise PyrozooError(f"y, t, X: expected the same number of rows, got {n}, {t.shape[0]} and {X.shape[0]}")
        check_enough_rows(n, self.n_folds)  # before the constant checks: one row makes everything constant
        check_varies("y", y, "an outcome")  # a constant y gave an estimate of 1e-16 with a p-value of rounding noise
        check_varies("t", t, "a treatment")
        check_no_constant_columns(X, self.feature_names_)
        check_no_duplicate_columns(X, self.feature_names_)
        check_treatment_identified(t, X, self.feature_names_)
        check_int("interference_column", self.interference_column)
        if not 0 <= self.interference_column < X.shape[1]:
            raise PyrozooError(f"interference_column: expected a column index in [0, {X.shape[1] - 1}], "
                               f"got {self.interference_column}")
        if self.bandwidth is not None:
            if isinstance(self.bandwidth, bool) or not isinstance(self.bandwidth, numbers.Real):  # NumPy scalars too
                raise PyrozooError(f"bandwidth: expected a number > 0 or None (learned), got {self.bandwidth!r}")
            check_positive("bandwidth", self.bandwidth)
        bw = self.bandwidths
        if bw is not None:
            listed = isinstance(bw, (Sequence, np.ndarray, pd.Series)) and not isinstance(bw, (str, bytes))
            if not listed or len(bw) == 0 or any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in bw):
                raise PyrozooError(f"bandwidths: expected a non-empty list of numbers > 0 (or None: a grid from the "
                                   f"data), got {bw!r}")
            check_positive("bandwidths", list(bw))
        use_re = self.random_effects if self.random_effects is not None else groups is not None
        if groups is not None:
            given = groups
            groups = np.asarray(groups)
            if groups.ndim != 1 or groups.shape[0] != n:
                raise PyrozooError(f"groups: expected one group id per row ({n}), got shape {groups.shape}")
            missing = pd.isna(pd.Series(groups)).to_numpy()
            if missing.any():  # where the first one is, as check_finite says it: by row label for pandas, else index
                first = int(np.argmax(missing))
                where = f"row {given.index[first]!r}" if isinstance(given, pd.Series) else f"index {first}"
                raise PyrozooError(f"groups: expected a group id for every row, found {int(missing.sum())} missing "
                                   f"(first at {where})")
            sizes = pd.Series(groups).value_counts()
            if use_re and len(sizes) < 2:
                # one random intercept shared by every row is the intercept itself: the fit was that of
                # groups=None while summary().attrs said random_effects=True
                how = ("random_effects=True needs" if self.random_effects
                       else "random effects (on by default when groups are given, random_effects=None) need")
                only = groups[0].item() if isinstance(groups[0], np.generic) else groups[0]
                raise PyrozooError(f"groups: {how} at least 2 distinct group ids; got a single group "
                                   f"({only!r}) for all {n} rows, where a random intercept is just the "
                                   f"intercept and would have no effect (pass groups with 2 or more levels, or "
                                   f"no groups)")
            if use_re and (sizes <= 1).all():
                raise PyrozooError(f"groups: every group has a single row ({len(sizes)} groups); random effects "
                                   "need groups with at least 2 rows")
        elif use_re:
            raise PyrozooError("groups: random_effects=True needs a group id per row")
        if self.se_type == "cluster" and groups is None:
            raise PyrozooError("se_type: 'cluster' needs groups to cluster on")
        if self.se_type == "cluster":
            check_cluster_count("groups", groups, warn_few=True, stacklevel=5)  # points at fit's caller
        return y, t, X, (groups if groups is not None else None)

    def _check_option_effects(self) -> None:
        """Raise for an option set away from its default that the other options make a no-op (it gave the default
        fit's numbers exactly), naming the option, the one it depends on and the value that option needs; the CLI
        refuses ``linear_controls=false`` with the ridge learner the same way."""
        def no_effect(option: str, value: Any, needs: str, given: str) -> PyrozooError:
            return PyrozooError(f"{option}: {value} applies only with {needs}; with {given} it would have no effect "
                                f"(remove it)")

        hetero = self.treatment_model == "heteroskedastic"
        tm = f"treatment_model={self.treatment_model!r}"
        if self.variance_learner is not None and not hetero:
            raise no_effect("variance_learner", "a variance learner", "treatment_model='heteroskedastic'", tm)
        if self.weight_uncertainty is False:
            if not hetero:
                raise no_effect("weight_uncertainty", "False", "treatment_model='heteroskedastic'", tm)
            if self.variance_learner is not None:
                raise no_effect("weight_uncertainty", "False", "the default variance model (variance_learner=None)",
                                "a variance_learner")
        if self.weighted_nuisances is True and not hetero:
            raise no_effect("weighted_nuisances", "True", "treatment_model='heteroskedastic'", tm)
        if not self.interference:
            ic = self.interference_column
            changed = {"bandwidth": self.bandwidth is not None, "bandwidths": self.bandwidths is not None,
                       "interference_column": isinstance(ic, bool) or not isinstance(ic, numbers.Real) or ic != 0}
            for option in (k for k, v in changed.items() if v):
                raise no_effect(option, repr(getattr(self, option)), "interference=True", "interference=False")
        elif self.bandwidth is not None and self.bandwidths is not None:
            raise no_effect("bandwidths", "a grid", "bandwidth=None (the bandwidth is then learned over that grid)",
                            f"bandwidth={self.bandwidth!r}")
        # the union refit acts only on a learner's column selections (selected_), and only with refit != 'none'
        selects = learner_selects(self.learner)
        if selects is False:
            cls = self.learner if isinstance(self.learner, type) else type(self.learner)
            given = f"learner={cls.__name__} (no column selection to refit)"
            needs = "a learner exposing a column selection (selected_, as the default spike-and-slab learner does)"
            if self.refit != "union":
                raise no_effect("refit", repr(self.refit), needs, given)
        else:
            given, needs = "refit='none'", "refit='union' or 'union_ols'"
        if selects is False or self.refit == "none":
            if self.linear_controls is False:
                raise no_effect("linear_controls", "False", needs, given)
            if self.max_refit_fraction != MAX_REFIT_FRACTION:
                raise no_effect("max_refit_fraction", repr(self.max_refit_fraction), needs, given)
            if self.weighted_nuisances is True:
                raise no_effect("weighted_nuisances", "True", needs, given)

    # ------------------------------------------------------------------ fit
    def _base_learner(self) -> Any:
        if self.learner is not None:
            return self.learner
        return SpikeSlabLearner(seed=self.seed, device=self.device)

    @keeps_caller_state
    def fit(self, y: Any, t: Any, X: Any, groups: Any = None) -> PLCE:
        """Cross-fit the nuisances, then estimate theta by partialling out and by the feasible model. Rows are matched
        by position: pandas inputs must share one index (:func:`~pyrozoo.validation.check_same_index`)."""
        if self.learner is not None:
            check_learner("learner", self.learner)
        if self.variance_learner is not None:
            check_learner("variance_learner", self.variance_learner)
        self.feature_names_ = list(X.columns) if isinstance(X, pd.DataFrame) else None
        y, t, X, groups = self._check(y, t, X, groups)
        n = y.shape[0]
        use_re = self.random_effects if self.random_effects is not None else groups is not None
        base = self._base_learner()
        if isinstance(self.basis, str):  # checked in _check
            if self.basis == "spline":
                tf = SplineInteractionBasis(n_knots=self.n_knots, degree=self.degree, interactions=self.interactions,
                                            min_product_support=cross_fit_min_product_support(self.n_folds))
            else:
                tf = None
        else:
            tf = self.basis
        Z = standardized_columns(X)  # basis="linear"'s design and the refit's linear controls
        B = tf.fit_transform(X) if tf is not None else Z
        # White's regressors: the default variance model's design and the orthogonal stage's; their sparse products
        # left out by the basis's rule (the same pairs as the basis's z_j z_k)
        m = cross_fit_min_product_support(self.n_folds)
        # the continuous treatment's variance model (a two-valued t's is p (1 - p), without them) and the orthogonal
        # stage's varying effect; the warning names only the uses that apply
        white_uses = [what for what, used in (
            ("treatment-variance model", self.treatment_model == "heteroskedastic" and self.variance_learner is None
             and np.unique(t).size != 2),
            ("varying effect", self.final_stage == "orthogonal")) if used]
        uses_white = bool(white_uses)
        names = [str(v) for v in (self.feature_names_ or [f"x{j}" for j in range(X.shape[1])])]
        more = None
        if uses_white and (pairs := sparse_pairs(X, m)):
            more = (len(pairs), f"of White's regressors ({', '.join(white_uses)}), "
                                + ", ".join(f"{names[j]}*{names[k]} ({s} row{'' if s == 1 else 's'})"
                                            for j, k, s in pairs))
        if isinstance(tf, SplineInteractionBasis):  # its columns too sparse to cross-fit, left out (basis module)
            warn_sparse_columns(tf, names, "PLCE", stacklevel=3, more=more)
        else:
            if tf is not None:
                B = self._checked_custom_basis(tf, B, n)
            warn_sparse_columns(None, names, "PLCE", stacklevel=3, more=more, bound=m)
        white = white_features(X, m) if uses_white else None
        self.basis_ = tf
        folds = make_folds(n, self.n_folds, self.n_repeats, self.seed)
        learner = RandomInterceptLearner(base, n_iter=2) if use_re else base
        row_kwargs = {"groups": groups} if use_re else None
        design = B
        self.bandwidth_, self.bandwidth_scores_ = None, {}
        if self.interference:
            xcol = X[:, self.interference_column]
            if self.bandwidth is None:
                grid = self.bandwidths if self.bandwidths is not None else default_bandwidths(xcol)
                self.bandwidth_, self.bandwidth_scores_ = select_bandwidth(B, X, t, y, grid,
                                                                           column=self.interference_column)
            else:
                self.bandwidth_ = float(self.bandwidth)
            design = np.concatenate(
                [B, interference_features(X, self.bandwidth_, column=self.interference_column)], axis=1)
        cf_learned = crossfit_predict(learner, design, {"y": y, "t": t}, folds=folds, row_kwargs=row_kwargs,
                                      keep_learners=self.refit != "none", clip_to_train=self.clip_to_train)
        cf, self.refit_share_ = cf_learned, 0.0
        refit_counts = {"training_mean": 0, "penalized_controls": 0, "union_too_large": 0}
        if self.refit != "none":
            refit_args = (cf_learned, design, y, t, groups if use_re else None)
            refit_kw = {"max_fraction": self.max_refit_fraction, "ridge": self.refit == "union",
                        "clip": self.clip_to_train,
                        "controls": Z if self.linear_controls else None}
            cf, self.refit_share_, refit_counts = union_refit(*refit_args, **refit_kw)
        self.refit_mean_folds_ = refit_counts["training_mean"]
        self.refit_penalized_controls_folds_ = refit_counts["penalized_controls"]
        self.refit_skipped_folds_ = refit_counts["union_too_large"]
        n_cells = folds.shape[0] * self.n_folds
        if self.refit_mean_folds_:
            warnings.warn(f"PLCE: in {self.refit_mean_folds_} of {n_cells} fold fits (n_folds x n_repeats) the "
                          f"learners selected no column for either E[y | x] or E[t | x] and no covariates enter the "
                          f"refit (linear_controls=False), so the refitted nuisances there are the training mean and "
                          f"those residuals are not adjusted for x: the estimate may be confounded (keep "
                          f"linear_controls=True, or use more rows)", UserWarning, stacklevel=3)
        if self.refit_penalized_controls_folds_:
            warnings.warn(f"PLCE: in {self.refit_penalized_controls_folds_} of {n_cells} fold fits (n_folds x "
                          f"n_repeats) the {X.shape[1]} covariates and the selected columns exceed "
                          f"max_refit_fraction ({self.max_refit_fraction:g}) x the training rows, so the covariates "
                          f"entered the refit penalized (ridge) instead of as unpenalized linear controls; their "
                          f"adjustment is shrunk and the estimate may keep some confounding (fewer covariates or more "
                          f"rows avoid this)", UserWarning, stacklevel=3)
        if self.refit_skipped_folds_:
            warnings.warn(f"PLCE: in {self.refit_skipped_folds_} of {n_cells} fold fits (n_folds x n_repeats) the "
                          f"columns the learners selected for E[y | x] and E[t | x] exceed max_refit_fraction "
                          f"({self.max_refit_fraction:g}) x the training rows, so those folds were not refitted and "
                          f"kept the learner's predictions, without the union refit"
                          + (" and without the linear controls" if self.linear_controls else "")
                          + "; the estimate there may keep the bias the refit removes (more rows, fewer covariates or "
                          "basis columns, or a larger max_refit_fraction)", UserWarning, stacklevel=3)
        m_hat, g_hat = cf.predictions["y"], cf.predictions["t"]
        ry, rt = y[None, :] - m_hat, t[None, :] - g_hat
        # any two-valued treatment is binary, whatever its coding (a, b): p = (g_hat - a) / (b - a) is the propensity
        # of b and Var(t | x) = (b - a)^2 p (1 - p); only 0/1 was recognised, so 1/2, 0/10 or -1/1 silently got the
        # continuous variance model and another estimate (2.014 instead of 2.086 per treated-vs-control contrast)
        levels = np.unique(t)
        self.binary_treatment_ = levels.size == 2
        t_lo, t_span = (float(levels[0]), float(levels[1] - levels[0])) if self.binary_treatment_ else (0.0, 1.0)
        weight_models: list[WeightModel] | None = None
        if self.treatment_model == "heteroskedastic":
            if self.variance_learner is None:
                # White's auxiliary regression: OLS of v_hat^2 on covariates, squares and cross products (unshrunk,
                # so the weights are not pulled toward equal weights, which would leave part of the bias)
                from sklearn.linear_model import LinearRegression

                v_learner, v_design = LinearRegression(), white
            else:
                v_learner, v_design = self.variance_learner, design
            s2, raw = treatment_variance(rt, v_design, v_learner, folds, binary=self.binary_treatment_,
                                         t_hat=(g_hat - t_lo) / t_span, return_raw=True,
                                         clip_to_train=self.clip_to_train)
            s2 = s2 * t_span**2  # in the treatment's own units (the binary p(1 - p) is for the 0/1 coding)
            w = 1.0 / s2
            w = w / w.mean(axis=1, keepdims=True)
            if self.weight_uncertainty and raw is not None and self.variance_learner is None:
                # the default variance model is least squares on [1, White's regressors]: carry its noise into the SE
                Zv = np.column_stack([np.ones(n), v_design])
                weight_models = [WeightModel(Zv, rt[r] ** 2 - raw[r], raw[r] >= s2[r]) for r in range(len(rt))]
            if self.weighted_nuisances and self.refit != "none":
                # second pass: refit both nuisances on the union with the same precision weights 1 / s2 as the final
                # stage (the cross-fitted analogue of one weighted regression y ~ theta t + basis, by
                # Frisch-Waugh-Lovell); see the class docstring for why
                # the same selections as the first pass, so the same cells are refitted (and counted) as above
                cf, self.refit_share_, _ = union_refit(*refit_args, **refit_kw, sample_weight=1.0 / s2)
                m_hat, g_hat = cf.predictions["y"], cf.predictions["t"]
                ry, rt = y[None, :] - m_hat, t[None, :] - g_hat
        else:
            s2, w = None, np.ones_like(rt)
        clusters = groups if self.se_type == "cluster" else None
        R = folds.shape[0]
        th, var, th_f, var_f = (np.empty(R) for _ in range(4))
        th_x = np.full((R, n), np.nan)
        for r in range(R):
            # with a weight model, wls_hc3 needs the weights 1 / s2 themselves (b is unchanged by their scale)
            w_r, wm = (1.0 / s2[r], weight_models[r]) if weight_models is not None else (w[r], None)
            if self.final_stage == "orthogonal":
                w_o = 1.0 / s2[r] if s2 is not None else np.ones(n)
                th_x[r] = varying_effect(ry[r], rt[r], white, folds[r], w_o, clip=self.clip_to_train)
                th[r], var[r] = orthogonal_effect(ry[r], rt[r], w_o, th_x[r], clusters=clusters)
            else:
                b, V = wls_hc3(rt[r], ry[r], w_r, clusters=clusters, weight_model=wm)
                th[r], var[r] = b[0], V[0, 0]
            Z = np.column_stack([np.ones(n), t, m_hat[r], g_hat[r]])
            b, V = wls_hc3(Z, y, w_r, clusters=clusters, weight_model=wm)
            th_f[r], var_f[r] = b[1], V[1, 1]
        self.crossfit_: CrossFitPredictions = cf
        self.y_resid_, self.t_resid_, self.weights_, self.treatment_variance_ = ry, rt, w, s2
        self.y_hat_, self.t_hat_ = m_hat, g_hat
        self.thetas_, self.variances_ = th, var
        self.effect_function_ = th_x if self.final_stage == "orthogonal" else None
        self.thetas_feasible_, self.variances_feasible_ = th_f, var_f
        self.theta_, self.se_ = aggregate_splits(th, var)
        self.theta_feasible_, self.se_feasible_ = aggregate_splits(th_f, var_f)
        self.n_, self.n_features_basis_ = n, design.shape[1]
        self.random_effects_ = use_re
        self.groups_ = groups
        self._y, self._t, self._X = y, t, X
        return self

    def _checked_custom_basis(self, tf: Any, B: Any, n: int) -> np.ndarray:
        """A custom basis's output ``B`` checked before any cross-fit: a finite (n, d) matrix; its constant columns
        (up to the learner's rounding rule, :func:`~pyrozoo.causal.crossfit.constant_columns`) are left out with a
        warning naming them, since every nuisance fits its own intercept (PolynomialFeatures' default bias column
        is one: refusing it would refuse the common spelling); a basis with no other column is refused."""
        try:
            B = np.asarray(B, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise PyrozooError(f"basis: expected {type(tf).__name__}.fit_transform(X) to return a numeric (n, d) "
                               f"matrix, got {type(B).__name__} ({exc})") from None
        if B.ndim != 2 or B.shape[0] != n or B.shape[1] == 0:
            raise PyrozooError(f"basis: expected {type(tf).__name__}.fit_transform(X) to return one row per "
                               f"observation and at least one column, ({n}, d >= 1), got shape {B.shape}")
        check_finite("basis", B)
        const = constant_columns(B)
        if const.any():
            try:
                out_names = [str(v) for v in tf.get_feature_names_out(self.feature_names_)]
            except Exception:  # a transformer without names (or that cannot take these): by position
                out_names = []
            at = np.flatnonzero(const)
            named = len(out_names) == B.shape[1]  # else by position, "#j"
            cols = [repr(out_names[j]) if named else f"#{j}" for j in at]
            where = "" if named else "; column numbers from 0"
            if const.all():
                raise PyrozooError(f"basis: every column of {type(tf).__name__}'s output is constant "
                                   f"({', '.join(cols)}): nothing for the nuisances to fit beyond their intercept")
            warnings.warn(f"PLCE: basis: {len(at)} constant column(s) of {type(tf).__name__}'s output left out "
                          f"({', '.join(cols)}{where}): the nuisances fit their own intercept "
                          f"(a bias column, e.g. PolynomialFeatures' include_bias=True, adds nothing; "
                          f"include_bias=False silences this)", UserWarning, stacklevel=4)
            B = B[:, ~const]
        return B

    # ------------------------------------------------------------------ reporting
    def _fitted(self) -> None:
        if not hasattr(self, "theta_"):
            raise PyrozooError("PLCE: call fit(y, t, X) first")

    @property
    def ci_(self) -> tuple[float, float]:
        self._fitted()
        z = stats.norm.ppf(1 - self.alpha / 2)
        return self.theta_ - z * self.se_, self.theta_ + z * self.se_

    def summary(self) -> pd.DataFrame:
        """One row per estimator (partialling out, feasible model): estimate, std. error, z, p-value, CI."""
        self._fitted()
        z = stats.norm.ppf(1 - self.alpha / 2)
        lo, hi = f"ci_{100 * self.alpha / 2:g}%", f"ci_{100 * (1 - self.alpha / 2):g}%"
        rows = {}
        for name, est, se in (("PLCE", self.theta_, self.se_), ("PLCE (feasible)", self.theta_feasible_,
                                                                self.se_feasible_)):
            rows[name] = {"estimate": est, "std_err": se, "z": est / se, "p_value": 2 * stats.norm.sf(abs(est / se)),
                          lo: est - z * se, hi: est + z * se}
        out = pd.DataFrame.from_dict(rows, orient="index")
        out.attrs.update(n=self.n_, n_folds=self.n_folds, n_repeats=self.n_repeats, se_type=self.se_type,
                         treatment_model=self.treatment_model, random_effects=self.random_effects_,
                         interference=self.interference, bandwidth=self.bandwidth_, refit_share=self.refit_share_,
                         refit_mean_folds=self.refit_mean_folds_,
                         refit_penalized_controls_folds=self.refit_penalized_controls_folds_,
                         refit_skipped_folds=self.refit_skipped_folds_)
        return out

    def positivity(self) -> tuple[np.ndarray, dict[str, float]]:
        """Per-unit kurtosis of the treatment residual across the R splits and its summary (the keys of
        :func:`~pyrozoo.causal.diagnostics.positivity_summary`). With ``n_repeats=1`` there is one split and no
        kurtosis across splits: every kappa and every summary value is NaN."""
        self._fitted()
        kappa = positivity_kurtosis(self.t_resid_)
        return kappa, positivity_summary(kappa, self.t_resid_.shape[0])

    def plot_positivity(self, path: str | os.PathLike) -> Path:
        """Write the positivity plot (kurtosis against fitted treatment) to ``path`` (png when it has no extension;
        an empty path, an extension matplotlib cannot write or a missing directory is refused first,
        :func:`~pyrozoo.validation.check_figure_path`); needs ``n_repeats`` >= 2. Returns the path written."""
        from pyrozoo.causal.diagnostics import plot_positivity

        path = check_figure_path("path", path)
        self._fitted()
        if self.t_resid_.shape[0] < 2:  # it drew a flat line of kappa = 1, the value of any one split
            raise PyrozooError(f"n_repeats: the positivity plot needs n_repeats >= 2 (the kurtosis is across "
                               f"splits), got {self.t_resid_.shape[0]}")
        kappa, _ = self.positivity()
        return plot_positivity(kappa, self.t_hat_.mean(0), self._t, path, n_splits=self.t_resid_.shape[0])

    def sensitivity(self, *, q: float = 1.0, alpha: float | None = None) -> dict[str, Any]:
        """Cinelli-Hazlett partial R^2 and robustness values of the final-stage regression; ``q`` > 0 is the fraction
        of the estimate to explain away, ``alpha`` in (0, 1) the level (None: the estimator's).

        In each split r, the (weighted) least-squares regression ry ~ rt without intercept (df = n - 1) gives
        b_r = sum w rt ry / sum w rt^2 and its classical t_r = b_r / sqrt(RSS_r / df / sum w rt^2), RSS_r =
        sum w (ry - b_r rt)^2; then partial R^2 = t_r^2 / (t_r^2 + df) = 1 - RSS_r / sum w ry^2 (exactly), and
        RV_q, RV_{q,alpha} (:func:`~pyrozoo.causal.diagnostics.robustness_value`) from t_r, all as sensemakr
        computes them from an ``lm`` fit. These identities hold for the classical t only: the HC3 (or cluster) t
        of ``summary()`` gave a partial R^2 of 0.04 where the regression's is 0.31. The figures reported are one
        split's, a consistent set: that of the split whose |t_r| is the median over the R splits (for even R the
        lower of the two middle ones, the more conservative; ``split`` is its index), since the four figures are
        monotone in |t_r| but t_r's sign is not, so that separate medians (t_r = 0.947, -0.676, 0.134 gave t_stat
        0.134 with the partial R^2 of |t| = 0.676) broke the identity above. With ``final_stage="orthogonal"`` the
        values are those of the same weighted residual regression (which the orthogonal estimate equals when th(x)
        is constant), the linear regression the bounds are about."""
        check_positive("q", q, scalar=True)  # as diagnostics.sensitivity checks them, but before the fitted check
        if alpha is not None:
            check_probability("alpha", alpha, open_interval=True)  # the constructor's check of its own alpha
        self._fitted()
        alpha = self.alpha if alpha is None else alpha
        df = self.n_ - 1
        splits = []
        for ry, rt, w in zip(self.y_resid_, self.t_resid_, self.weights_, strict=True):
            sxx = float(w @ rt**2)
            b = float(w @ (rt * ry)) / sxx
            rss = float(w @ (ry - b * rt) ** 2)
            splits.append(sensitivity(b, math.sqrt(rss / df / sxx), df, q=q, alpha=alpha))
        # the split of median |t| (the lower median for even R); a stable sort picks the first of tied splits
        order = np.argsort([abs(s["t_stat"]) for s in splits], kind="stable")
        r = int(order[(len(splits) - 1) // 2])
        keys = ("t_stat", "partial_r2_treatment", "rv_q", "rv_q_alpha")
        out: dict[str, Any] = {k: float(splits[r][k]) for k in keys}
        out.update(df=df, q=q, alpha=alpha, n_splits=len(splits), split=r)
        return out

    def final_stage_data(self) -> dict[str, np.ndarray]:
        """Residuals averaged over the R splits (and the mean weights) for the Bayesian final stage."""
        self._fitted()
        return {"t_resid": self.t_resid_.mean(0), "y_resid": self.y_resid_.mean(0), "weights": self.weights_.mean(0)}

    def posterior(self, *, inference: str = "nuts", num_samples: int = 1000, warmup_steps: int = 500,
                  num_chains: int = 2, steps: int = 2000, seed: int | None = None, progress: bool = False) -> Any:
        """Run the Pyro final stage (:mod:`pyrozoo.models.plce`) on the residuals; return a shared ``Result``."""
        from pyrozoo.config import RunConfig
        from pyrozoo.models.plce import fit_final_stage, make_final_stage_dataset

        data = make_final_stage_dataset(self, device=self.device)
        cfg = RunConfig(model="plce", inference=inference, num_samples=num_samples, warmup_steps=warmup_steps,
                        num_chains=num_chains, steps=steps, seed=self.seed if seed is None else seed,
                        progress=progress, device=self.device)
        return fit_final_stage(data, cfg.validate())
