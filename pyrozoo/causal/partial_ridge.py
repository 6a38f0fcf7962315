"""Ridge regression with some columns left unpenalized, the penalty chosen by efficient leave-one-out error.

With X = [F, P] (F: the first ``n_free`` columns, unpenalized, plus an intercept; P: penalized), the estimate

    min_{a, b}  sum_i w_i (y_i - [1, F_i] a - P_i b)^2 + alpha |b|^2

is, by Frisch-Waugh-Lovell, ridge of the (weighted) residual of y on [1, F] on the residual of P on [1, F], then
a = weighted least squares of y - P b on [1, F]. scikit-learn's ``RidgeCV`` penalizes every column (apart from the
intercept), so the partialling out is done here and ``RidgeCV`` does the penalized part. The leave-one-out choice of
alpha is made on the residualized problem, which ignores the leverage of the few free columns.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import RidgeCV

from pyrozoo.errors import PyrozooError
from pyrozoo.validation import check_int, check_shape

DEFAULT_ALPHAS = tuple(np.logspace(-2, 4, 13))


class PartialRidgeCV(RegressorMixin, BaseEstimator):
    """Ridge regression whose first ``n_free`` columns (and the intercept) are not penalized; penalty from
    ``alphas`` by efficient leave-one-out error. Accepts ``sample_weight`` (precision weights)."""

    def __init__(self, n_free: int = 0, alphas: tuple[float, ...] = DEFAULT_ALPHAS) -> None:
        self.n_free = n_free
        self.alphas = alphas

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> PartialRidgeCV:
        n_free = check_int("n_free", self.n_free, minimum=0)
        X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64).reshape(-1)
        check_shape("X", X, (len(y), None))
        if n_free > X.shape[1]:
            raise PyrozooError(f"n_free: expected at most the {X.shape[1]} columns of X, got {n_free}")
        if not len(self.alphas) or min(self.alphas) <= 0:
            raise PyrozooError(f"alphas: expected one or more penalties > 0, got {self.alphas!r}")
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        check_shape("sample_weight", w, (len(y),))
        if not np.all(np.isfinite(w) & (w >= 0)):
            raise PyrozooError("sample_weight: expected finite weights >= 0")
        root = np.sqrt(w)[:, None]
        A = np.column_stack([np.ones(len(y)), X[:, :n_free]])
        P = X[:, n_free:]

        def residual(M: np.ndarray) -> np.ndarray:  # weighted least-squares residual of M on A
            return M - A @ np.linalg.lstsq(root * A, root * M, rcond=None)[0]

        if P.shape[1]:
            ridge = RidgeCV(alphas=np.asarray(self.alphas, dtype=np.float64), fit_intercept=False)
            ridge.fit(residual(P), residual(y[:, None]).reshape(-1), sample_weight=w)
            self.penalized_coef_, self.alpha_ = np.asarray(ridge.coef_, dtype=np.float64).reshape(-1), ridge.alpha_
        else:
            self.penalized_coef_, self.alpha_ = np.zeros(0), None
        a = np.linalg.lstsq(root * A, root[:, 0] * (y - P @ self.penalized_coef_), rcond=None)[0]
        self.intercept_, self.free_coef_ = float(a[0]), a[1:]
        self.coef_ = np.concatenate([self.free_coef_, self.penalized_coef_])
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        check_shape("X", X, (None, len(self.coef_)))
        return self.intercept_ + X @ self.coef_
