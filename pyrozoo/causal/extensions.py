"""The talk's extensions of the partially linear model, each a building block the estimator switches on:

* random intercepts by group (``RandomInterceptLearner``): E[y | x, j] = f(x) + a_j, a_j ~ N(0, tau^2), fitted by
  backfitting f and the shrunken group means (BLUPs) with tau^2 and sigma^2 by the method of moments;
* interference (``kernel_weights``, ``kernel_smooth``, ``interference_features``, ``select_bandwidth``): other
  units' covariates (and through them their expected treatments) averaged with kernel weights
  rho_ii'(nu) = exp(-(x_i1 - x_i'1)^2 / nu) / sum_{i'' != i} exp(-(x_i1 - x_i''1)^2 / nu),
  the bandwidth nu chosen by leave-one-out prediction error;
* heteroskedastic treatment (``treatment_variance``): t = g(x) + g2(x) v~ + v, i.e. Var(t | x) = s^2(x) is modelled
  (continuous: a cross-fitted regression of squared treatment residuals; binary: g(x)(1 - g(x))) and
  the final stage weights unit i by 1 / s^2(x_i), which turns the variance-weighted regression coefficient
  E[s^2(x) theta(x)] / E[s^2(x)] into the average effect E[theta(x)].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pyrozoo.causal.basis import off_mode, product_support_bound
from pyrozoo.causal.crossfit import Learner, crossfit_predict, fresh_learner
from pyrozoo.causal.inputs import standardized_columns
from pyrozoo.errors import PyrozooError
from pyrozoo.validation import check_choice, check_int


class RandomInterceptLearner:
    """Wraps a learner of f(x) with random intercepts a_j by group: y = f(x) + a_{j[i]} + e.

    Backfitting (``n_iter`` rounds): fit f on y - a, then a_j = sum_{i in j} r_i / (n_j + sigma^2 / tau^2) with
    r = y - f(x); sigma^2 is the pooled within-group variance of r and tau^2 = max(0, var of group means -
    sigma^2 / mean n_j) (one-way ANOVA moments). Groups unseen in ``fit`` predict a = 0 (the prior mean). Written
    by hand because no installed package fits a random intercept around an arbitrary learner.
    """

    def __init__(self, base: Learner, n_iter: int = 3) -> None:
        self.base = base
        self.n_iter = n_iter

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None,
            sample_weight: np.ndarray | None = None) -> RandomInterceptLearner:
        """Backfit f and the BLUPs; ``sample_weight`` (precision weights, row i has noise variance sigma^2 / w_i) is
        passed to the base learner's ``fit`` and weights the group sums (a_j = sum w r / (sum w + sigma^2 / tau^2))."""
        if groups is None:
            raise PyrozooError("groups: RandomInterceptLearner needs a group id per row")
        codes, inv = np.unique(np.asarray(groups), return_inverse=True)
        a = np.zeros(len(codes))
        est = None
        kw = {} if sample_weight is None else {"sample_weight": sample_weight}
        for _ in range(check_int("n_iter", self.n_iter, minimum=1)):
            est = fresh_learner(self.base)
            est.fit(X, y - a[inv], **kw)
            r = y - np.asarray(est.predict(X), dtype=np.float64).reshape(-1)
            a, self.tau2_, self.sigma2_ = _blup(r, inv, len(codes), sample_weight)
        self.learner_ = est
        self.effects_ = dict(zip(codes.tolist(), a.tolist(), strict=True))
        return self

    def predict(self, X: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
        f = np.asarray(self.learner_.predict(X), dtype=np.float64).reshape(-1)
        if groups is None:
            return f
        return f + np.array([self.effects_.get(g, 0.0) for g in np.asarray(groups).tolist()])


def _blup(r: np.ndarray, inv: np.ndarray, m: int,
          w: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:
    n_j = np.bincount(inv, minlength=m).astype(float)
    w_j = n_j if w is None else np.bincount(inv, weights=w, minlength=m)
    sums = np.bincount(inv, weights=r if w is None else w * r, minlength=m)
    means = sums / np.maximum(w_j, 1e-12)
    within = ((r - means[inv]) ** 2 if w is None else w * (r - means[inv]) ** 2).sum() / max(len(r) - m, 1)
    tau2 = max(0.0, float(np.var(means[n_j > 0], ddof=1)) - within / float(w_j[n_j > 0].mean())) if m > 1 else 0.0
    if tau2 <= 0:
        return np.zeros(m), 0.0, within
    return sums / (w_j + within / tau2), tau2, within


# elements of one block of kernel rows (32 MiB of float64): kernel_smooth's memory is O(n * block rows), not n x n
KERNEL_BLOCK_ELEMENTS = 2**22


def _checked_kernel_input(x: np.ndarray, nu: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if not nu > 0:
        raise PyrozooError(f"nu: expected a bandwidth > 0, got {nu!r}")
    if x.shape[0] < 2:
        raise PyrozooError(f"x: interference needs at least 2 units, got {x.shape[0]}")
    return x


def _kernel_rows(x: np.ndarray, nu: float, s: int, e: int) -> np.ndarray:
    """Rows s..e-1 of rho (see :func:`kernel_weights`), normalized in log space with the diagonal masked."""
    logits = -((x[s:e, None] - x[None, :]) ** 2) / nu
    idx = np.arange(s, e)
    logits[idx - s, idx] = -np.inf
    logits -= logits.max(axis=1, keepdims=True)
    w = np.exp(logits)
    return w / w.sum(axis=1, keepdims=True)


def kernel_weights(x: np.ndarray, nu: float, *, chunk: int = 2048) -> np.ndarray:
    """(n, n) rho with rho_ii' = exp(-(x_i - x_i')^2 / nu) / sum_{i'' != i} exp(-(x_i - x_i'')^2 / nu), rho_ii = 0.

    Rows are normalized in log space (a softmax with the diagonal masked), so small bandwidths do not underflow.
    The whole matrix takes 8 n^2 bytes (6.7 GiB at n = 30000); the simulator and the estimator only need products
    rho v, which :func:`kernel_smooth` forms block by block."""
    x = _checked_kernel_input(x, nu)
    n = x.shape[0]
    out = np.empty((n, n))
    for s in range(0, n, chunk):
        out[s:s + chunk] = _kernel_rows(x, nu, s, min(s + chunk, n))
    return out


def kernel_smooth(x: np.ndarray, nu: float, values: np.ndarray, *, chunk: int = 2048) -> np.ndarray:
    """rho v, the kernel-weighted averages sum_{i' != i} rho_ii' v_i' of ``values`` (n,) or (n, k) with rho as in
    :func:`kernel_weights`, computed ``chunk`` rows at a time (fewer when a block of rows would exceed
    :data:`KERNEL_BLOCK_ELEMENTS`), so memory is O(n * rows per block) instead of the dense n x n matrix. Each block
    of rows is exactly the dense matrix's; with a single block (n <= 2048) the result is bit-identical to
    ``kernel_weights(x, nu) @ values``."""
    x = _checked_kernel_input(x, nu)
    n = x.shape[0]
    values = np.asarray(values, dtype=np.float64)
    if values.shape[0] != n:
        raise PyrozooError(f"values: expected {n} rows (one per unit of x), got shape {values.shape}")
    rows = max(1, min(chunk, KERNEL_BLOCK_ELEMENTS // n))
    out = np.empty(values.shape)
    for s in range(0, n, rows):
        e = min(s + rows, n)
        out[s:e] = _kernel_rows(x, nu, s, e) @ values
    return out


def interference_features(X: np.ndarray, nu: float, *, column: int = 0) -> np.ndarray:
    """Kernel-weighted averages of the other units' covariates, rho [z_j, z_j^2, z_j z_k] (j < k), standardized,
    with z the standardized covariates and rho = kernel_weights(x_column, nu).

    Other units' *treatments* enter through their expectation: E[sum_i' rho_ii' t_i' | X] = rho g(X) lies in this
    span when g does, and the remainder rho v (others' treatment noise) is independent of unit i's treatment. The
    raw average rho t is deliberately not a feature: in a finite sample it is S/(n-1) - t_i/(n-1) for a flat
    kernel (S the total), so a learner fitted across units recovers t_i from it and partialling out breaks.
    """
    X = np.asarray(X, dtype=np.float64)
    F = kernel_smooth(X[:, column], nu, white_features(X))  # block by block: no n x n matrix
    sd = F.std(0)
    keep = sd > 1e-10
    return ((F - F.mean(0)) / np.where(keep, sd, 1.0))[:, keep]


def default_bandwidths(x: np.ndarray) -> tuple[float, ...]:
    """A log grid of bandwidths relative to the variance of the kernel's covariate."""
    v = float(np.var(x)) or 1.0
    return tuple(v * s for s in (0.05, 0.2, 0.8, 3.2))


def select_bandwidth(
    basis: np.ndarray,
    X: np.ndarray,
    t: np.ndarray,
    y: np.ndarray,
    bandwidths: Sequence[float],
    *,
    column: int = 0,
) -> tuple[float, dict[float, float]]:
    """The bandwidth minimizing the leave-one-out error of both nuisances, each relative to its variance:
    score(nu) = LOO-MSE_y(nu) / Var(y) + LOO-MSE_t(nu) / Var(t), for ridge regressions on [basis, features(nu)].

    The ridge fit is a cheap proxy for the nuisance learner: scikit-learn's ``RidgeCV`` gives the exact
    leave-one-out error in closed form, so a grid of bandwidths costs a few SVDs instead of K x |grid| fits."""
    from sklearn.linear_model import RidgeCV

    scores = {}
    for nu in bandwidths:
        F = np.concatenate([basis, interference_features(X, nu, column=column)], axis=1)
        score = 0.0
        for target in (y, t):
            fit = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(F, target)  # LOO mean squared error
            score += -float(fit.best_score_) / float(np.var(target))
        scores[float(nu)] = score
    best = min(scores, key=scores.get)
    return best, scores


def sparse_pairs(X: np.ndarray, min_support: int) -> list[tuple[int, int, int]]:
    """The pairs (j, k, s), j < k, of columns of ``X`` off their most common values together on only s rows,
    0 < s < min(min_support, floor(n / 2)): the products z_j z_k that :mod:`pyrozoo.causal.basis` calls too sparse to
    cross-fit (its module docstring)."""
    X = np.asarray(X, dtype=np.float64)
    n, p = X.shape
    bound = product_support_bound(min_support, n)
    off = off_mode(X)
    pairs = []
    for j in range(p):
        for k in range(j + 1, p):
            s = int((off[:, j] & off[:, k]).sum())
            if 0 < s < bound:
                pairs.append((j, k, s))
    return pairs


def white_features(X: np.ndarray, min_product_support: int = 0) -> np.ndarray:
    """[z_j, z_j^2, z_j z_k (j < k)] of the standardized covariates: the regressors of White's (1980) auxiliary
    regression for heteroskedasticity, the default design of the treatment-variance model. With
    ``min_product_support`` m the products of :func:`sparse_pairs` (support below min(m, floor(n / 2))) are left out, as
    from the control basis: the cross-fitted least-squares variance model fitted them to a rare dummy's 2-3
    training rows, and PLCE's stacked SE rose from 0.084 to 0.42."""
    Z = standardized_columns(X)
    p = Z.shape[1]
    sparse = {(j, k) for j, k, _ in sparse_pairs(X, min_product_support)} if min_product_support else set()
    cols = [Z, Z**2] + [Z[:, [j]] * Z[:, [k]] for j in range(p) for k in range(j + 1, p) if (j, k) not in sparse]
    F = np.concatenate(cols, axis=1)
    return F[:, F.std(0) > 1e-12]


def treatment_variance(
    t_resid: np.ndarray,
    features: np.ndarray,
    learner: Learner,
    folds: np.ndarray,
    *,
    binary: bool = False,
    t_hat: np.ndarray | None = None,
    trim: float = 0.01,
    floor: float = 0.25,
    row_kwargs: dict[str, Any] | None = None,
    target: str = "squared",
    return_raw: bool = False,
    clip_to_train: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    """(R, n) conditional treatment variance s^2(x_i) per split.

    Binary treatment: s^2 = p(1 - p) with p = t_hat clipped to [trim, 1 - trim]. Continuous, ``target="squared"``
    (default): a cross-fitted regression of v_hat^2 on ``features`` on the same folds (unbiased for s^2 when s^2 is
    in the span); ``target="absolute"``: a regression of |v_hat|, s^2 = (pi / 2) fit^2 (E|v| = s sqrt(2 / pi) for
    Gaussian v; less heavy-tailed, but biased under non-Gaussian v). Floored at ``floor`` times the mean of v_hat^2
    (a linear fit can cross zero). ``return_raw=True`` returns (s2, the unfloored cross-fitted fit of v_hat^2) for
    the squared target (None otherwise), so the caller can carry the variance model's noise into the SE."""
    t_resid = np.atleast_2d(t_resid)
    if binary:
        if t_hat is None:
            raise PyrozooError("t_hat: the binary treatment variance needs the fitted propensities")
        p = np.clip(np.atleast_2d(t_hat), trim, 1 - trim)
        return (p * (1 - p), None) if return_raw else p * (1 - p)
    check_choice("target", target, ("squared", "absolute"))
    raw = None
    if target == "squared":
        cf = crossfit_predict(learner, features, {"v2": t_resid**2}, folds=folds, row_kwargs=row_kwargs,
                              clip_to_train=clip_to_train)
        s2 = raw = cf.predictions["v2"]
    else:
        cf = crossfit_predict(learner, features, {"abs_v": np.abs(t_resid)}, folds=folds, row_kwargs=row_kwargs,
                              clip_to_train=clip_to_train)
        s2 = 0.5 * np.pi * np.clip(cf.predictions["abs_v"], 0.0, None) ** 2
    lo = floor * (t_resid**2).mean(axis=1, keepdims=True)
    s2 = np.maximum(s2, lo)
    return (s2, raw) if return_raw else s2
