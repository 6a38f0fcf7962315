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

Sparse products: the *support* of a product column is the rows where each of its factors differs from that
covariate's most common value (for a dummy d with few 1s, z_a * d and z_a^2 * d are supported on d's 1s; a covariate
whose most common value is not repeated, e.g. a continuous one, has no mode and is off it on every row). With
standardized factors the product is nonzero almost everywhere, but beyond the main effects only those rows inform
its coefficient (z_a * d = (z_a d - z_a mean(d)) / sd(d)). Cross-fitted with K folds, a fold's training set holds
about s (K - 1) / K of them, and every product of d with the other covariates (2 (p - 1) columns with quadratic
interactions) is fitted to those same few rows: with 3 ones out of 200 the fits interpolated the 2-3 training rows
and predicted the held-out one with a treatment residual of -9 (sd 1), and PLCE's estimate moved from 0.95 to
-0.36. With ``min_product_support`` m, product columns with support below min(m, floor(n / 2)) are left out
(``sparse_columns_`` lists them, ``min_product_support_`` is the bound used: a product on half the rows or more is
as well informed as any column, so a tiny data set keeps its products; rounded down, so that a binary covariate's
minority, at most floor(n / 2) rows, always meets it). PLCE and EffectCurve use
:func:`cross_fit_min_product_support`: m = ceil(8 K / (K - 1)), so that a fold's training set holds on average at
least 8 of the rows (10 rows with the default 5 folds; at K = 5 with 3 covariates, 5, 6 and 8 ones still gave
residuals of 8 to 34 in 3 of 11 data sets, 10 to 16 ones none in 15). A
covariate's own columns (the standardized covariate, its square, its splines) are kept whatever their support:
a dummy's coefficient shifts only its own rows, so a poorly estimated one cannot spoil other rows' predictions
(the 3-row dummy without products: 0.95), and where all its rows are held out the cross-fit leaves it out of that
fold (:func:`~pyrozoo.causal.crossfit.crossfit_predict`). Leaving a product out costs little: it acts on fewer
than m rows.
"""

from __future__ import annotations

import warnings
from itertools import combinations
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import SplineTransformer
from sklearn.utils.validation import check_is_fitted

from pyrozoo.errors import PyrozooError
from pyrozoo.validation import check_bool, check_finite, check_int

# the least average number of a product column's support rows in a fold's training set (module docstring)
MIN_TRAINING_SUPPORT = 8


def cross_fit_min_product_support(n_folds: int) -> int:
    """The least support of a product column of a basis cross-fitted with ``n_folds`` folds K: ceil(8 K / (K - 1)),
    so that a fold's training set, which holds about s (K - 1) / K of its s support rows, holds
    :data:`MIN_TRAINING_SUPPORT` = 8 of them on average (10 rows at K = 5, 16 at K = 2)."""
    k = int(n_folds)
    return -(-MIN_TRAINING_SUPPORT * k // (k - 1))


def off_mode(X: np.ndarray) -> np.ndarray:
    """(n, p) booleans: the rows where each column of ``X`` differs from its most common value, the rows a product
    column's support counts (module docstring). A column whose most common value is not repeated (count 1: no two
    rows equal, as for a continuous covariate) has no mode, so every row is off it; were the smallest value taken
    as the mode, its row would leave every product's support by chance (a dummy's product with a continuous
    covariate lost a row, and fell below the bound, only when that covariate's minimum was on one of its 1s)."""
    X = np.asarray(X)
    off = np.ones(X.shape, dtype=bool)
    for j in range(X.shape[1]):
        values, counts = np.unique(X[:, j], return_counts=True)
        if counts.max() > 1:
            off[:, j] = X[:, j] != values[np.argmax(counts)]
    return off


def product_support_bound(min_support: int, n: int) -> int:
    """The support bound used with ``min_support`` m on n rows: min(m, floor(n / 2)). A product on half the rows
    or more is as well informed as any column, so it is never sparse; rounded down so that a binary covariate's
    minority (at most floor(n / 2) rows) always meets it, also for odd n (ceil(n / 2) dropped the products of an
    alternating dummy: 9 ones in 19 rows against a bound of 10)."""
    return min(int(min_support), int(n) // 2)


def warn_sparse_columns(basis: SplineInteractionBasis | None, names: list[str] | None, who: str, stacklevel: int,
                        more: tuple[int, str] | None = None, bound: int | None = None) -> None:
    """One UserWarning naming the covariates whose product columns ``basis`` left out for a support below its
    ``min_product_support_`` (:meth:`SplineInteractionBasis.sparse_summary`), and ``more`` = (count, description) of
    other products left out by the same rule (EffectCurve's interactions of t with a sparse covariate, White's
    regressors); nothing when none were. Without a ``basis``, ``bound`` is the support bound used. ``who`` heads
    the message (the estimator); ``stacklevel`` as in :func:`warnings.warn`, counted from the caller."""
    k = len(basis.sparse_columns_) if basis is not None else 0
    parts = []
    if k:
        parts.append(f"of the control basis, {basis.sparse_summary(names)}")
    if more is not None:
        k += more[0]
        parts.append(more[1])
    if not parts:
        return
    if basis is not None:
        bound = basis.min_product_support_
    warnings.warn(f"{who}: {k} product column(s) left out: fewer than {bound} rows have every "
                  f"factor off its most common value (the rows that inform such a column's coefficient; "
                  f"ceil(8 K / (K - 1)) with K = n_folds, so that a fold's training set holds at least 8 of them on "
                  f"average, or half the rows, rounded down, if fewer), too few to fit it out of fold: "
                  f"{'; '.join(parts)}. The covariates' own columns stay; merge rare categories to keep their "
                  f"products (and silence this)",
                  UserWarning, stacklevel=stacklevel + 1)


class SplineInteractionBasis(TransformerMixin, BaseEstimator):
    """``fit(X)`` learns knots and scaling on the training rows; ``transform(X)`` expands any rows.

    Parameters: ``n_knots`` (>= 2) and ``degree`` of the per-covariate splines; ``interactions``: ``"linear"`` (or
    True) adds the p(p-1)/2 pairwise products z_j z_k of standardized covariates, ``"quadratic"`` the products of
    {z_j, z_j^2} with {z_k, z_k^2} for j < k (so x1^2 x2 and the like are in the span), ``"none"`` (or False)
    none; ``min_unique`` is the number of distinct values below which a
    covariate enters linearly instead of through splines; ``squares`` adds z_j^2 for linear-only covariates
    with more than two values in the training rows (decided at fit, so ``transform`` gives the same columns for
    any rows); ``min_product_support`` (default 0: only constant columns are left out): product columns whose
    support in the training rows (module docstring) is below it, and below half the rows, are left out as well
    (``sparse_columns_``: (name, source covariates, support) of those with support > 0, see
    :meth:`sparse_summary`; one with support 0 lies in the span of its factors' main effects); ``linear`` (default
    False; ``"none"``, ``True``/``"raw"``,
    ``"orthogonal"``) adds
    the standardized covariate z_j as a column just before each splined covariate's spline block, and with
    ``"orthogonal"`` replaces the block by its residuals on [1, z_j] (least-squares coefficients from the training
    rows, applied to any rows). One more column per splined covariate; the block's span is unchanged, so the
    columns are exactly collinear (raw: z_j with the intercept and the splines; orthogonal: the residualized splines
    among themselves): fine for the shrinkage and ridge fits that use the basis, not for unpenalized least squares
    on the whole block. The options are checked at ``fit`` (a :class:`PyrozooError` naming the bad one);
    ``transform`` before ``fit`` raises scikit-learn's ``NotFittedError``.
    """

    def __init__(self, n_knots: int = 5, degree: int = 3, interactions: bool | str = "quadratic", min_unique: int = 6,
                 squares: bool = False, linear: bool | str = False, min_product_support: int = 0) -> None:
        self.n_knots = n_knots
        self.degree = degree
        self.interactions = interactions
        self.min_unique = min_unique
        self.squares = squares
        self.linear = linear
        self.min_product_support = min_product_support

    def fit(self, X: Any, y: Any = None) -> SplineInteractionBasis:
        check_int("n_knots", self.n_knots, minimum=2)
        check_int("degree", self.degree, minimum=1)
        check_int("min_unique", self.min_unique)
        check_bool("squares", self.squares)
        min_support = check_int("min_product_support", self.min_product_support, minimum=0)
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
        support, product = self._support(X)
        # a product on at least half the rows is as well informed as the fit's other columns: never "sparse" (with
        # K = 2, m = 16 would otherwise drop every product of a 15-row data set)
        self.min_product_support_ = product_support_bound(min_support, n)
        varies = out_scale > 1e-12  # constant columns (e.g. an interaction of exclusive dummies) are dropped
        # and products too sparse to cross-fit (module docstring)
        self.keep_ = varies & (~product | (support >= self.min_product_support_))
        self.out_scale_ = np.where(self.keep_, out_scale, 1.0)
        # support 0 yet not constant: a product of covariates never both off their most common values (exclusive
        # dummies), in the span of their main effects; left out quietly, as constant columns are
        self._sparse_at = np.flatnonzero(varies & ~self.keep_ & product & (support > 0))
        columns = self._raw_columns([f"x{j}" for j in range(p)])
        self.sparse_columns_ = [(columns[j][0], columns[j][1], int(support[j])) for j in self._sparse_at]
        return self

    def _support(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per column of :meth:`_raw`, its support in the rows X (module docstring) and whether it is a product: for
        a product the rows where every factor differs from its most common value; for a covariate's own columns
        (never left out) n."""
        off = off_mode(X)
        self.covariate_support_ = off.sum(axis=0)
        sources = [c for _, c in self._raw_columns([f"x{j}" for j in range(X.shape[1])])]
        product = np.array([len(c) > 1 for c in sources], dtype=bool)
        support = np.array([off[:, list(c)].all(axis=1).sum() if len(c) > 1 else X.shape[0] for c in sources],
                           dtype=np.int64)
        return support, product

    def sparse_summary(self, input_features: Any = None) -> str:
        """The product columns left out for a support below ``min_product_support_``, grouped by the covariate that
        makes them sparse (its own support in rows), e.g. ``"rare (3 rows): a*rare, a^2*rare"``; a product sparse
        only as a combination of two covariates is listed under both, ``"d1 x d2 (3 rows): d1*d2"``. Empty when no
        column was left out. ``input_features``: the covariates' names (default x0, x1, ...)."""
        check_is_fitted(self)
        names = self._names(input_features)
        columns = self._raw_columns(names)
        groups: dict[tuple[int, ...], list[tuple[str, int]]] = {}
        for j, (_, sources, support) in zip(self._sparse_at, self.sparse_columns_, strict=True):
            sparse = tuple(i for i in sources if self.covariate_support_[i] < self.min_product_support_)
            groups.setdefault(sparse or sources, []).append((columns[j][0], support))
        parts = []
        for culprits, cols in groups.items():
            rows = (int(self.covariate_support_[culprits[0]]) if len(culprits) == 1
                    else max(s for _, s in cols))
            parts.append(f"{' x '.join(names[j] for j in culprits)} ({rows} row{'' if rows == 1 else 's'}): "
                         f"{', '.join(n for n, _ in cols)}")
        return "; ".join(parts)

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
        and sparse columns ``transform`` drops are left out. ``input_features``: the covariates' names (default x0,
        x1, ...)."""
        check_is_fitted(self)
        out = [name for name, _ in self._raw_columns(self._names(input_features))]
        return np.asarray(out, dtype=object)[self.keep_]

    def _names(self, input_features: Any) -> list[str]:
        p = self.n_features_in_
        if input_features is None:
            return [f"x{j}" for j in range(p)]
        names = [str(v) for v in input_features]
        if len(names) != p:
            raise PyrozooError(f"input_features: expected {p} names (one per column, as in fit), got {len(names)}")
        return names

    def _raw_columns(self, names: list[str]) -> list[tuple[str, tuple[int, ...]]]:
        """(name, source covariates) of every column of :meth:`_raw`, in its order."""
        p = self.n_features_in_
        out: list[tuple[str, tuple[int, ...]]] = []
        for j in range(p):
            if j in self.splines_:
                if self.linear_ != "none":
                    out.append((names[j], (j,)))
                out.extend((str(v), (j,)) for v in self.splines_[j].get_feature_names_out([names[j]]))
            else:
                out.append((names[j], (j,)))
                if j in self.square_cols_:
                    out.append((f"{names[j]}^2", (j,)))
        if self.interactions_ != "none" and p > 1:  # the order of _raw's blocks
            pairs = list(combinations(range(p), 2))
            out.extend((f"{names[a]}*{names[b]}", (a, b)) for a, b in pairs)
            if self.interactions_ == "quadratic":
                binary = [len(np.unique(self._levels[j])) <= 2 for j in range(p)]
                for a, b in pairs:
                    if not binary[a]:
                        out.append((f"{names[a]}^2*{names[b]}", (a, b)))
                    if not binary[b]:
                        out.append((f"{names[a]}*{names[b]}^2", (a, b)))
                    if not (binary[a] or binary[b]):
                        out.append((f"{names[a]}^2*{names[b]}^2", (a, b)))
        return out

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
