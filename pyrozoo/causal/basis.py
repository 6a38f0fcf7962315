"""Basis expansion of the controls: a cubic B-spline basis per continuous covariate plus pairwise interactions.

For controls x_i in R^p the expansion is

    b(x_i) = [ s_1(x_i1), ..., s_p(x_ip),  z_ij * z_ik  (j < k) ]

where s_j is scikit-learn's ``SplineTransformer`` basis (quantile knots, the constant direction dropped so the
columns are not collinear with the intercept) and z_j the standardized covariate. With ``linear=True`` (or
``"raw"``) each spline block is preceded by z_j itself, s_j(x) -> [z_j, s_j(x)]; with ``linear="orthogonal"`` by
z_j and the block residualized on [1, z_j] in the training rows, s_j(x) -> [z_j, s_j(x) - a_j - z_j b_j]. The span
is unchanged either way (x lies in the span of the cubic B-splines and the intercept), but a linear effect of x_j
is then one column a sparse selector can keep whole, instead of a combination of ~6 correlated spline columns of
which it may keep only some; the orthogonal form also keeps the selector's shrinkage from sharing that effect
between z_j and the spline columns (on a linear design with spike-and-slab nuisances, only it helped: see
benchmarks/plce_linear_bias.py).

Covariates with few distinct values (binary indicators, small counts) are not splined: they enter as the
standardized column itself. Every output column is standardized with the training data's moments, so a single
prior scale suits all coefficients.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import SplineTransformer
from sklearn.utils.validation import check_is_fitted

from pyrozoo.errors import PyrozooError
from pyrozoo.validation import check_bool, check_finite, check_int


class SplineInteractionBasis(TransformerMixin, BaseEstimator):
    """``fit(X)`` learns knots and scaling on the training rows; ``transform(X)`` expands any rows.

    Parameters: ``n_knots`` (>= 2) and ``degree`` of the per-covariate splines; ``interactions``: ``"linear"`` (or
    True) adds the p(p-1)/2 pairwise products z_j z_k of standardized covariates, ``"quadratic"`` the products of
    {z_j, z_j^2} with {z_k, z_k^2} for j < k (so x1^2 x2 and the like are in the span), ``"none"`` (or False)
    none; ``min_unique`` is the number of distinct values below which a
    covariate enters linearly instead of through splines; ``squares`` adds z_j^2 for linear-only covariates
    with more than two values in the training rows (decided at fit, so ``transform`` gives the same columns for
    any rows); ``linear`` (default False; ``"none"``, ``True``/``"raw"``, ``"orthogonal"``) adds
    the standardized covariate z_j as a column just before each splined covariate's spline block, and with
    ``"orthogonal"`` replaces the block by its residuals on [1, z_j] (least-squares coefficients from the training
    rows, applied to any rows). One more column per splined covariate; the block's span is unchanged, so the
    columns are exactly collinear (raw: z_j with the intercept and the splines; orthogonal: the residualized splines
    among themselves): fine for the shrinkage and ridge fits that use the basis, not for unpenalized least squares
    on the whole block. The options are checked at ``fit`` (a :class:`PyrozooError` naming the bad one);
    ``transform`` before ``fit`` raises scikit-learn's ``NotFittedError``.
    """

    def __init__(self, n_knots: int = 5, degree: int = 3, interactions: bool | str = "quadratic", min_unique: int = 6,
                 squares: bool = False, linear: bool | str = False) -> None:
        self.n_knots = n_knots
        self.degree = degree
        self.interactions = interactions
        self.min_unique = min_unique
        self.squares = squares
        self.linear = linear

    def fit(self, X: Any, y: Any = None) -> SplineInteractionBasis:
        check_int("n_knots", self.n_knots, minimum=2)
        check_int("degree", self.degree, minimum=1)
        check_int("min_unique", self.min_unique)
        check_bool("squares", self.squares)
        linear, interactions = linear_kind(self.linear), interaction_kind(self.interactions)
        X = _as_matrix(X)
        self.linear_, self.interactions_ = linear, interactions
        n, p = X.shape
        self.n_features_in_ = p
        self.loc_ = X.mean(axis=0)
        scale = X.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        self._levels = [np.unique(X[:, j])[:3] for j in range(p)]
        n_unique = [len(np.unique(X[:, j])) for j in range(p)]
        self.spline_cols_ = [j for j in range(p) if n_unique[j] >= self.min_unique]
        # z_j^2 columns: chosen on the training rows (counting the distinct values of the rows being transformed
        # gave another number of columns, or other columns, for a subset of rows)
        self.square_cols_ = [j for j in range(p) if self.squares and j not in self.spline_cols_ and n_unique[j] > 2]
        self.splines_ = {}
        for j in self.spline_cols_:
            st = SplineTransformer(n_knots=self.n_knots, degree=self.degree, knots="quantile",
                                   extrapolation="linear", include_bias=False)
            self.splines_[j] = st.fit(X[:, [j]])
        self.spline_proj_ = {}
        if self.linear_ == "orthogonal":  # least-squares coefficients of each spline column on [1, z_j] (training rows)
            Z = (X - self.loc_) / self.scale_
            for j in self.spline_cols_:
                A = np.column_stack([np.ones(n), Z[:, j]])
                self.spline_proj_[j] = np.linalg.lstsq(A, self.splines_[j].transform(X[:, [j]]), rcond=None)[0]
        raw = self._raw(X)
        self.out_loc_ = raw.mean(axis=0)
        out_scale = raw.std(axis=0)
        self.keep_ = out_scale > 1e-12  # constant columns (e.g. an interaction of exclusive dummies) are dropped
        self.out_scale_ = np.where(self.keep_, out_scale, 1.0)
        return self

    def _raw(self, X: np.ndarray) -> np.ndarray:
        Z = (X - self.loc_) / self.scale_
        blocks = []
        for j in range(X.shape[1]):
            if j in self.splines_:
                S = self.splines_[j].transform(X[:, [j]])
                if self.linear_ != "none":
                    blocks.append(Z[:, [j]])
                if j in self.spline_proj_:
                    S = S - np.column_stack([np.ones(len(X)), Z[:, j]]) @ self.spline_proj_[j]
                blocks.append(S)
            else:
                blocks.append(Z[:, [j]])
                if j in self.square_cols_:
                    blocks.append(Z[:, [j]] ** 2)
        if self.interactions_ != "none" and X.shape[1] > 1:
            pairs = list(combinations(range(X.shape[1]), 2))
            blocks.append(np.stack([Z[:, a] * Z[:, b] for a, b in pairs], axis=1))
            if self.interactions_ == "quadratic":
                binary = [len(np.unique(self._levels[j])) <= 2 for j in range(X.shape[1])]
                sq = Z**2
                extra = []
                for a, b in pairs:
                    if not binary[a]:
                        extra.append(sq[:, a] * Z[:, b])
                    if not binary[b]:
                        extra.append(Z[:, a] * sq[:, b])
                    if not (binary[a] or binary[b]):
                        extra.append(sq[:, a] * sq[:, b])
                if extra:
                    blocks.append(np.stack(extra, axis=1))
        return np.concatenate(blocks, axis=1)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of :meth:`transform`'s columns, in its order (scikit-learn's transformer API): per covariate
        ``name``, the standardized covariate ``name`` (a linear covariate, or the column before a spline block),
        its spline columns ``name_sp_0``, ... (SplineTransformer's names) and ``name^2`` (``squares``); then the
        pairwise products ``a*b`` and, with quadratic interactions, ``a^2*b``, ``a*b^2``, ``a^2*b^2``; the constant
        columns ``transform`` drops are left out. ``input_features``: the covariates' names (default x0, x1, ...)."""
        check_is_fitted(self)
        p = self.n_features_in_
        if input_features is None:
            names = [f"x{j}" for j in range(p)]
        else:
            names = [str(v) for v in input_features]
            if len(names) != p:
                raise PyrozooError(f"input_features: expected {p} names (one per column, as in fit), got "
                                   f"{len(names)}")
        out: list[str] = []
        for j in range(p):
            if j in self.splines_:
                if self.linear_ != "none":
                    out.append(names[j])
                out.extend(str(v) for v in self.splines_[j].get_feature_names_out([names[j]]))
            else:
                out.append(names[j])
                if j in self.square_cols_:
                    out.append(f"{names[j]}^2")
        if self.interactions_ != "none" and p > 1:  # the order of _raw's blocks
            pairs = list(combinations(range(p), 2))
            out.extend(f"{names[a]}*{names[b]}" for a, b in pairs)
            if self.interactions_ == "quadratic":
                binary = [len(np.unique(self._levels[j])) <= 2 for j in range(p)]
                for a, b in pairs:
                    if not binary[a]:
                        out.append(f"{names[a]}^2*{names[b]}")
                    if not binary[b]:
                        out.append(f"{names[a]}*{names[b]}^2")
                    if not (binary[a] or binary[b]):
                        out.append(f"{names[a]}^2*{names[b]}^2")
        return np.asarray(out, dtype=object)[self.keep_]

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = _as_matrix(X)
        if X.shape[1] != self.n_features_in_:
            raise PyrozooError(f"X: expected {self.n_features_in_} columns (as in fit), got {X.shape[1]}")
        out = (self._raw(X) - self.out_loc_) / self.out_scale_
        return out[:, self.keep_]


def _switch(name: str, value: bool | str | None, choices: tuple[str, ...], on: str) -> str:
    """A switch given as a bool or one of ``choices``: False/None is "none", True is ``on``; raises otherwise."""
    if value is None:
        return "none"
    if isinstance(value, (bool, np.bool_)):
        return on if value else "none"
    if value not in choices:
        raise PyrozooError(f"{name}: expected {', '.join(choices[:-1])} or {choices[-1]} (or a bool), got {value!r}")
    return value


def interaction_kind(value: bool | str) -> str:
    """``interactions`` as one of none, linear, quadratic (True means linear, False/None none); raises otherwise."""
    return _switch("interactions", value, ("none", "linear", "quadratic"), "linear")


def linear_kind(value: bool | str) -> str:
    """``linear`` as one of none, raw, orthogonal (True means raw, False/None none); raises otherwise."""
    return _switch("linear", value, ("none", "raw", "orthogonal"), "raw")


def _as_matrix(X: Any) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise PyrozooError(f"X: expected a 2-D array (rows x covariates), got {X.ndim} dimensions")
    check_finite("X", X)
    return X
