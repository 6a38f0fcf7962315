"""Ridge regression with some columns left unpenalized, the penalty chosen by efficient leave-one-out error.

With X = [F, P] (F: the first ``n_free`` columns, unpenalized, plus an intercept; P: penalized), the estimate

    min_{a, b}  sum_i w_i (y_i - [1, F_i] a - P_i b)^2 + alpha |b|^2

is, by Frisch-Waugh-Lovell, ridge of the (weighted) residual of y on [1, F] on the residual of P on [1, F], then
a = weighted least squares of y - P b on [1, F]. scikit-learn's ``RidgeCV`` penalizes every column (apart from the
intercept), so the partialling out is done here and ``RidgeCV`` does the penalized part. The leave-one-out choice of
alpha is made on the residualized problem, which ignores the leverage of the few free columns.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.linear_model import RidgeCV
from sklearn.utils.validation import check_is_fitted, validate_data

from pyrozoo.causal.inputs import numeric_vector
from pyrozoo.errors import PyrozooError
from pyrozoo.validation import (
    check_feature_names,
    check_finite,
    check_int,
    check_numeric_columns,
    feature_names,
    real_array,
)

DEFAULT_ALPHAS = tuple(np.logspace(-2, 4, 13))


def _matrix(X: Any) -> np.ndarray:
    """``X`` as a finite float64 (n, p) array with n, p >= 1; sparse matrices, text (even numbers stored as text),
    pandas categoricals and complex numbers are refused (:func:`~pyrozoo.validation.check_numeric_columns`)."""
    if sp.issparse(X):
        raise PyrozooError(f"X: expected a dense array, got a sparse {type(X).__name__}; pass X.toarray()")
    check_numeric_columns("X", X)
    try:
        X = np.asarray(X, dtype=np.float64)  # the memory layout is kept: PLCE's refits pass column-major slices
    except (TypeError, ValueError) as exc:
        raise PyrozooError(f"X: expected numbers, got {type(X).__name__} ({exc})") from None
    if X.ndim != 2:
        raise PyrozooError(f"X: expected a 2-D array (samples, features), got shape {X.shape}; Reshape your data "
                           "with X.reshape(-1, 1) for one feature or X.reshape(1, -1) for one sample")
    if 0 in X.shape:
        raise PyrozooError(f"X: expected at least one sample and one feature, got shape {X.shape}")
    check_finite("X", X)
    return X


class PartialRidgeCV(RegressorMixin, BaseEstimator):
    """Ridge regression whose first ``n_free`` columns (and the intercept) are not penalized; penalty from
    ``alphas`` (finite, > 0) by efficient leave-one-out error. Accepts ``sample_weight`` (precision weights).

    A scikit-learn regressor: ``fit`` sets ``n_features_in_`` (and ``feature_names_in_`` for a DataFrame with string
    column names); ``predict`` raises scikit-learn's ``NotFittedError`` before ``fit`` and refuses another number of
    columns, or other names or the same ones in another order. Non-finite, text, categorical, complex or sparse data
    are refused before any work with a :class:`~pyrozoo.errors.PyrozooError` (a ``ValueError``) naming the
    argument."""

    def __init__(self, n_free: int = 0, alphas: tuple[float, ...] = DEFAULT_ALPHAS) -> None:
        self.n_free = n_free
        self.alphas = alphas

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> PartialRidgeCV:
        n_free = check_int("n_free", self.n_free, minimum=0)
        alphas = real_array("alphas", self.alphas, want="one or more finite penalties > 0").reshape(-1)
        if not alphas.size or not np.all(np.isfinite(alphas) & (alphas > 0)):  # min() <= 0 let NaN through
            raise PyrozooError(f"alphas: expected one or more finite penalties > 0, got {self.alphas!r}")
        if y is None:
            raise PyrozooError(f"y: {type(self).__name__} requires y to be passed, but the target y is None")
        feature_names(X)  # a repeated name, or string and other names mixed, is an error (as in scikit-learn)
        X_in, X, y_in, y = X, _matrix(X), y, numeric_vector("y", y)
        if np.asarray(y_in).shape[1:] == (1,):  # (n, 1): used flattened, with scikit-learn's warning
            warnings.warn("A column-vector y was passed when a 1d array was expected. Please change the shape of y "
                          "to (n_samples, ), for example using ravel().", DataConversionWarning, stacklevel=2)
        if len(y) != X.shape[0]:
            raise PyrozooError(f"y: expected one value per row of X ({X.shape[0]}), got {len(y)}")
        if n_free > X.shape[1]:
            raise PyrozooError(f"n_free: expected at most the {X.shape[1]} columns of X, got {n_free}")
        w = np.ones(len(y)) if sample_weight is None else numeric_vector("sample_weight", sample_weight)
        if len(w) != len(y):
            raise PyrozooError(f"sample_weight: expected one weight per row of X ({len(y)}), got {len(w)}")
        if np.any(w < 0) or not np.any(w > 0):
            raise PyrozooError(f"sample_weight: expected weights >= 0, not all zero; got min {float(w.min())!r}, "
                               f"max {float(w.max())!r}")
        validate_data(self, X_in, skip_check_array=True)  # sets n_features_in_ (and feature_names_in_)
        root = np.sqrt(w)[:, None]
        A = np.column_stack([np.ones(len(y)), X[:, :n_free]])
        P = X[:, n_free:]

        def residual(M: np.ndarray) -> np.ndarray:  # weighted least-squares residual of M on A
            return M - A @ np.linalg.lstsq(root * A, root * M, rcond=None)[0]

        if P.shape[1]:
            ridge = RidgeCV(alphas=alphas, fit_intercept=False)
            ridge.fit(residual(P), residual(y[:, None]).reshape(-1), sample_weight=w)
            self.penalized_coef_, self.alpha_ = np.asarray(ridge.coef_, dtype=np.float64).reshape(-1), ridge.alpha_
        else:
            self.penalized_coef_, self.alpha_ = np.zeros(0), None
        a = np.linalg.lstsq(root * A, root[:, 0] * (y - P @ self.penalized_coef_), rcond=None)[0]
        self.intercept_, self.free_coef_ = float(a[0]), a[1:]
        self.coef_ = np.concatenate([self.free_coef_, self.penalized_coef_])
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        check_feature_names(X, getattr(self, "feature_names_in_", None))  # same names, same order
        X_in, X = X, _matrix(X)
        if X.shape[1] != self.n_features_in_:  # scikit-learn's wording
            raise PyrozooError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                               f"{self.n_features_in_} features as input")
        validate_data(self, X_in, reset=False, skip_check_array=True)  # scikit-learn's warning when names come or go
        return self.intercept_ + X @ self.coef_
