"""Repeated K-fold cross-fitting: out-of-fold predictions of nuisance functions for any number of targets.

For repeat r = 1..R the rows are split at random into K folds I_1..I_K; for each fold k a fresh copy of the
learner is fitted on the other folds and predicts the rows of I_k:

    m_hat_r(x_i) = learner fitted on {j not in I_k(i)} evaluated at x_i.

Every row thus gets R out-of-fold predictions, one per split, which the final stage (partialling out, DoubleML's
"dml2" pooled regression) and the diagnostics (kurtosis of the treatment residual across splits) consume. The module
knows nothing about causal models: :func:`crossfit_predict` serves any target (outcome, treatment, squared
residuals, effect curves ...).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import KFold

from pyrozoo.errors import PyrozooError
from pyrozoo.models.spike_slab_prior import CONSTANT_STEPS
from pyrozoo.validation import check_int, check_seed

Learner = Any  # an object with fit(X, y, **row_kwargs) -> self and predict(X, **row_kwargs) -> (n,)


@dataclass
class CrossFitPredictions:
    """``predictions[target]``: (R, n) out-of-fold predictions; ``folds``: (R, n) fold id of each row per repeat."""

    predictions: dict[str, np.ndarray]
    folds: np.ndarray
    learners: dict[str, list[list[Learner]]] = field(default_factory=dict)

    @property
    def n_repeats(self) -> int:
        return int(self.folds.shape[0])

    @property
    def n_folds(self) -> int:
        return int(self.folds.max()) + 1


def make_folds(n: int, n_folds: int = 5, n_repeats: int = 1, seed: int = 0) -> np.ndarray:
    """(R, n) integer array: the fold of each row in each of ``n_repeats`` independent random K-fold splits."""
    n_folds = check_int("n_folds", n_folds, minimum=2)
    n_repeats = check_int("n_repeats", n_repeats, minimum=1)
    seed = check_seed("seed", seed)  # NumPy's generators reject 2.0 and negative seeds with raw errors
    if n < n_folds:
        raise PyrozooError(f"n_folds: expected at most as many folds as rows ({n}), got {n_folds}")
    rng = np.random.default_rng(seed)
    folds = np.empty((n_repeats, n), dtype=np.int64)
    for r in range(n_repeats):
        kf = KFold(n_splits=n_folds, shuffle=True, random_state=int(rng.integers(2**31 - 1)))
        for k, (_, test) in enumerate(kf.split(np.zeros(n))):
            folds[r, test] = k
    return folds


def fresh_learner(learner: Learner | Callable[[], Learner]) -> Learner:
    """An unfitted copy: ``learner()`` for a factory, scikit-learn's ``clone`` for estimators, else a deep copy."""
    if isinstance(learner, type) or (callable(learner) and not hasattr(learner, "fit")):
        return learner()
    try:
        from sklearn.base import clone

        return clone(learner)
    except TypeError:
        return copy.deepcopy(learner)


def check_learner(name: str, learner: Any) -> None:
    """Raise unless ``learner`` is an estimator with ``fit`` and ``predict`` or a factory (class or zero-argument
    callable) of one; checked before any fitting."""
    is_estimator = callable(getattr(learner, "fit", None)) and callable(getattr(learner, "predict", None))
    if not (is_estimator or isinstance(learner, type) or (callable(learner) and not hasattr(learner, "fit"))):
        raise PyrozooError(f"{name}: expected an estimator with fit(X, y) and predict(X) (e.g. scikit-learn's "
                           f"RidgeCV()) or a factory of one, got {learner!r}")


def crossfit_predict(
    learner: Learner | Callable[[], Learner] | Mapping[str, Any],
    features: np.ndarray | Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    *,
    n_folds: int = 5,
    n_repeats: int = 1,
    seed: int = 0,
    folds: np.ndarray | None = None,
    row_kwargs: Mapping[str, np.ndarray] | None = None,
    keep_learners: bool = False,
    clip_to_train: bool = False,
    after_fit: Callable[[], Any] | None = None,
) -> CrossFitPredictions:
    """Out-of-fold predictions of every target in ``targets`` (name -> (n,) or (R, n) array).

    ``learner`` (or a mapping target -> learner) is copied fresh for each fit; ``features`` is one (n, d) design or
    a mapping target -> design. A target given as (R, n) uses row r in repeat r (e.g. squared residuals that differ
    by split). ``row_kwargs`` are per-row arrays (e.g. ``groups``) sliced and passed to ``fit`` and ``predict``.
    ``folds`` (R, n) reuses a split (so several targets, or several calls, share it); otherwise it is drawn from
    ``seed``.
    ``clip_to_train=True`` clips each held-out design column to the range it has in the training folds before
    predicting (:func:`clip_to_range`), so a fit on polynomial or interaction columns does not extrapolate.
    ``after_fit()`` is called after each of the targets x R x K fits (e.g. a progress bar's ``update``).
    A design column constant on a fold's training rows (:func:`constant_columns`; a rare category's dummy whose
    rows all fall in the held-out fold) is left out of that fold's fit and prediction (:class:`ColumnSubset`): its
    coefficient is not identified there, and the spike-and-slab learner refuses constant columns.
    """
    for key, base in (learner.items() if isinstance(learner, Mapping) else [("learner", learner)]):
        check_learner("learner" if key == "learner" else f"learner[{key!r}]", base)
    targets = {k: np.asarray(v, dtype=np.float64) for k, v in targets.items()}
    if not targets:
        raise PyrozooError("targets: expected at least one target to predict")
    design = features if isinstance(features, Mapping) else {k: features for k in targets}
    n = next(iter(targets.values())).shape[-1]
    for k, v in targets.items():
        if k not in design:
            raise PyrozooError(f"features: no design matrix given for target {k!r}")
        if v.shape[-1] != n or design[k].shape[0] != n:
            raise PyrozooError(f"targets: {k!r} has {v.shape[-1]} rows and its design {design[k].shape[0]}; "
                               f"expected {n}")
    if folds is None:
        folds = make_folds(n, n_folds, n_repeats, seed)
    folds = np.asarray(folds)
    if folds.ndim != 2 or folds.shape[1] != n:
        raise PyrozooError(f"folds: expected shape (repeats, {n}), got {folds.shape}")
    R, K = folds.shape[0], int(folds.max()) + 1
    row_kwargs = {k: np.asarray(v) for k, v in (row_kwargs or {}).items()}
    preds = {k: np.empty((R, n)) for k in targets}
    fitted: dict[str, list[list[Learner]]] = {k: [] for k in targets}
    for name, target in targets.items():
        base = learner[name] if isinstance(learner, Mapping) else learner
        X = design[name]
        for r in range(R):
            yr = target[r] if target.ndim == 2 else target
            kept = []
            for k in range(K):
                test = folds[r] == k
                train = ~test
                est = fresh_learner(base)
                # a column constant on the training rows (a rare category whose rows are all held out) carries
                # nothing for this fit and has no identified coefficient: fit and predict without it
                varies = ~constant_columns(X[train])
                if not varies.all() and varies.any():
                    est = ColumnSubset(est, varies)
                try:
                    est.fit(X[train], yr[train], **{a: v[train] for a, v in row_kwargs.items()})
                except PyrozooError as err:  # say where: the learner sees the design (basis), not the user's X
                    raise PyrozooError(f"cross-fit of {name!r}, repeat {r}, fold {k} ({int(train.sum())} training rows "
                                       f"x {X.shape[1]} design columns): {err}; with few rows, use fewer folds or "
                                       f"a smaller basis") from None
                X_test = clip_to_range(X[test], X[train]) if clip_to_train else X[test]
                preds[name][r, test] = np.asarray(
                    est.predict(X_test, **{a: v[test] for a, v in row_kwargs.items()}), dtype=np.float64
                ).reshape(-1)
                if keep_learners:
                    kept.append(est)
                if after_fit is not None:
                    after_fit()
            fitted[name].append(kept)
    return CrossFitPredictions(preds, folds, fitted if keep_learners else {})


def constant_columns(X: np.ndarray) -> np.ndarray:
    """(d,) boolean mask of the columns of ``X`` (n, d) that are constant up to rounding: sd <= 100 eps max|x|,
    the rule of the spike-and-slab learner's check (:data:`pyrozoo.models.spike_slab_prior.CONSTANT_STEPS`)."""
    X = np.asarray(X, dtype=np.float64)
    if X.shape[0] == 0:
        return np.zeros(X.shape[1], dtype=bool)
    return X.std(axis=0) <= CONSTANT_STEPS * np.finfo(np.float64).eps * np.abs(X).max(axis=0)


class ColumnSubset:
    """A learner fitted and predicting on the columns ``columns`` (boolean mask) of the design it is given;
    ``selected_`` (when the learner, or the learner it wraps as ``learner_``, has one) is mapped back to all the
    design's columns, the others unselected, so a union refit reads it as it reads the learner's own."""

    def __init__(self, learner: Learner, columns: np.ndarray) -> None:
        self.learner = learner
        self.columns = np.asarray(columns, dtype=bool)

    def fit(self, X: np.ndarray, y: np.ndarray, **kwargs: Any) -> ColumnSubset:
        self.learner.fit(np.asarray(X)[:, self.columns], y, **kwargs)
        return self

    def predict(self, X: np.ndarray, **kwargs: Any) -> np.ndarray:
        return self.learner.predict(np.asarray(X)[:, self.columns], **kwargs)

    @property
    def selected_(self) -> np.ndarray:
        inner = getattr(self.learner, "learner_", self.learner)
        sel = getattr(inner, "selected_", None)
        if sel is None:
            raise AttributeError("selected_")  # getattr(..., None) then reads it as "no selection"
        full = np.zeros(self.columns.shape[0], dtype=bool)
        full[self.columns] = np.asarray(sel, dtype=bool)
        return full


def clip_to_range(X_new: np.ndarray, X_train: np.ndarray) -> np.ndarray:
    """X_new with every column clipped to [min, max] of that column in X_train.

    Why: the spline + quadratic-interaction basis has columns such as z1^2 z2^2; a held-out unit that is extreme in
    two covariates can lie far outside the training folds' range of such a column, and a linear fit then predicts
    absurdly (one n = 1000 data set of the talk's heterogeneity design had a treatment residual of -31 with
    sd(t | x) <= 3, which moved the estimate by 0.5)."""
    return np.clip(X_new, X_train.min(axis=0), X_train.max(axis=0))
