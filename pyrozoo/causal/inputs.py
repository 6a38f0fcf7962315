"""Input conversion shared by the causal estimators (PLCE, effect curves): numeric vectors and covariate matrices
with clear errors naming the argument (the check that pandas inputs share one index is validation.check_same_index)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.validation import (
    AMOUNTS_HINT,
    check_finite,
    check_no_datetimes,
    check_numeric_columns,
    check_pandas_missing,
    check_unique,
)


def numeric_vector(name: str, v: Any) -> np.ndarray:
    """``v`` as a finite float64 vector; an (n, 1) or (1, n) array is flattened, anything else not 1-D is an error.

    Text is refused even where NumPy would read it as numbers (``["1.5", "2"]``), as
    :func:`pyrozoo.validation.as_tensor` does, and so is a pandas categorical (its categories are labels, not
    amounts: an integer-labelled one would otherwise pass and a text-labelled one fail), and so are complex numbers
    (float64 conversion would drop their imaginary part) and dates or durations (:func:`check_no_datetimes`). A tensor
    gives its values, even one that requires grad."""
    v = detached(v)
    check_numeric_columns(name, v, categorical_hint=AMOUNTS_HINT)
    check_no_datetimes(name, v)
    try:
        arr = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PyrozooError(f"{name}: expected a numeric vector, got {type(v).__name__} ({exc})") from None
    arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
    if arr.ndim != 1:
        raise PyrozooError(f"{name}: expected a 1-D vector, got shape {arr.shape}")
    check_finite(name, arr, labels=v)  # a pandas v: the first NaN or inf by its row label
    return arr


def covariate_matrix(X: Any) -> np.ndarray:
    """``X`` (array or numeric DataFrame) as a finite float64 (n, p) matrix with p >= 1; a vector is one column.

    Numbers and bools only: a text column is refused, even one of numbers stored as text (``"1.5"``, as
    :func:`pyrozoo.validation.as_tensor` refuses it), and so is every pandas categorical column, whatever its
    categories (integer labels would otherwise become an ordered numeric covariate while text labels were refused):
    encode categories yourself, e.g. ``pd.get_dummies(X, columns=[...], drop_first=True, dtype=float)``, which is
    what the CLI's ``--data`` reader does with text columns. Complex numbers are refused, and so are dates and
    durations (:func:`check_no_datetimes`), and so is a DataFrame that gives one name to two columns (a later ``x``
    matched by name could not tell them apart). A tensor gives its values, even one that requires grad."""
    X = detached(X)
    check_numeric_columns("X", X, hint="; encode categories, e.g. with pd.get_dummies(X, drop_first=True, dtype=float)")
    check_no_datetimes("X", X)
    if isinstance(X, pd.DataFrame) and not X.columns.is_unique:
        check_unique("X", _plain(X.columns), what="column", quote=True)
    check_pandas_missing("X", X)  # by row label and column name, not by position in the converted matrix
    frame = X
    try:
        X = np.asarray(X.to_numpy(dtype=float) if isinstance(X, pd.DataFrame) else X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PyrozooError(f"X: expected numeric covariates (encode text columns, e.g. with pd.get_dummies), "
                           f"got {exc}") from None
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] == 0:
        raise PyrozooError(f"X: expected a 2-D array with at least one covariate column, got shape {X.shape}")
    check_finite("X", X, labels=frame)
    return X


def detached(v: Any) -> Any:
    """A tensor as a CPU tensor cut from its autograd graph (data, not a graph to differentiate through: NumPy cannot
    read a tensor that requires grad); anything else as it is."""
    return v.detach().cpu() if isinstance(v, torch.Tensor) else v


def _plain(labels: Any) -> list:
    """Labels as a list of Python values (``0``, not ``np.int64(0)``, in messages)."""
    return [v.item() if isinstance(v, np.generic) else v for v in labels]


def aligned_covariates(name: str, x: Any, names: list | None) -> Any:
    """``x`` with its covariates in the fitted order ``names``: a Series is matched by its index labels, a DataFrame by
    its columns (in any order); missing, unknown or repeated names are an error naming them. Arrays, lists, and
    anything when the fit saw no names (``names`` None), are returned as they are (matched by position)."""
    if names is None or not isinstance(x, (pd.Series, pd.DataFrame)):
        return x
    series = isinstance(x, pd.Series)
    labels = _plain(x.index if series else x.columns)
    names = _plain(names)
    known, given = set(names), set(labels)
    missing = [c for c in names if c not in given]
    unexpected = [c for c in labels if c not in known]
    repeated = sorted({c for c in labels if labels.count(c) > 1}, key=labels.index)
    if missing or unexpected or repeated:
        detail = ", ".join(f"{k} {v}" for k, v in (("missing", missing), ("unknown", unexpected),
                                                   ("repeated", repeated)) if v)
        what = "index labels" if series else "columns"
        raise PyrozooError(f"{name}: expected the covariates seen in fit, {names}, as its {what} (in any order); "
                           f"got {labels} ({detail}); pass {name}.to_numpy() to match by position")
    return x.reindex(names) if series else x[names]


def check_enough_rows(n: int, n_folds: int) -> None:
    """Raise unless the ``n`` rows give every one of the ``n_folds`` cross-fitting folds at least 2 rows."""
    if n < 2 * n_folds:
        raise PyrozooError(f"y: too few rows: cross-fitting with n_folds={n_folds} needs at least {2 * n_folds} rows "
                           f"(2 per fold), got {n}; use fewer folds or more data")


def check_varies(name: str, v: np.ndarray, what: str) -> None:
    """Raise if the vector ``v`` is constant (``what``: "an outcome", "a treatment"): the residuals are then zero up to
    rounding, and an estimate from them would report that rounding noise as inference. Exact (peak to peak), so a
    constant whose mean rounds off its value (0.1 repeated) is caught too."""
    if v.size and np.ptp(v) == 0:
        raise PyrozooError(f"{name}: expected {what} that varies, got a constant ({float(v[0])!r}); "
                           "nothing to estimate")


# RSS / TSS at or below this is "t lies in the span of [1, X]" (see check_treatment_identified for the derivation)
TREATMENT_SPAN_RTOL = 1e-10


def check_treatment_identified(t: np.ndarray, X: np.ndarray, names: list[str] | None = None) -> None:
    """Raise if the treatment ``t`` (n,) is a linear function of the covariates ``X`` (n, p): least squares of t on
    [1, X] leaves RSS <= :data:`TREATMENT_SPAN_RTOL` x TSS (TSS = sum (t - mean t)^2). Then no variation in t is left
    once x is adjusted for and the effect is not identified, yet the estimators reported one (a copy of x1 as t gave
    PLCE 5.41, SE 1.17), fitted to rounding noise and the nuisance learners' errors. Call after the checks that t
    varies and that X has no constant columns.

    Computed on X centred (the intercept) with unit-norm columns, projecting t - mean t on the left singular vectors
    of its numerical rank (singular values above max(n, p) eps S_max, as ``numpy.linalg.matrix_rank``). When that
    rank is n - 1, [1, X] spans every n-vector (p >= n - 1, high-dimensional controls): the check then says nothing
    and identification rests on the nuisance learner's regularization, as before.

    Tolerance: float64 stores each t_i to a relative error of eps / 2 (eps = 2^-52 ~ 2.2e-16), so an exact copy
    t = a + X b formed in float64 is off the span only by rounding: rho = sqrt(RSS / TSS) <~ c eps max|t_i| / sd(t),
    c a small multiple (the sum a + X b, the projection's backward error); measured 3e-16 for t = x1 or 2 x1 + 1 and
    3e-11 for t = 1e6 + x1. The cut rho = 1e-5 (RSS / TSS = 1e-10) is that bound for max|t| / sd(t) up to ~1e10 /
    c, i.e. until float64 keeps fewer than ~6 digits of t's own spread, and it also covers a copy formed in single
    precision (rounding 2^-24 ~ 6e-8: measured 3e-8). A treatment with variation of its own above 1e-5 of its spread
    is left to the estimator: this is an exact-collinearity check, not a weak-identification threshold."""
    tc = t - t.mean()
    tss = float(tc @ tc)
    n = X.shape[0]
    if tss == 0 or n < 3:
        return
    Xc = X - X.mean(axis=0)
    Xc = Xc / np.linalg.norm(Xc, axis=0)
    U, S, Vt = np.linalg.svd(Xc, full_matrices=False)
    rank = int((S > S[0] * max(Xc.shape) * np.finfo(np.float64).eps).sum())
    if rank >= n - 1:
        return
    coef = U[:, :rank].T @ tc
    resid = tc - U[:, :rank] @ coef
    ratio = float(resid @ resid) / tss
    if ratio > TREATMENT_SPAN_RTOL:
        return
    b = np.abs(Vt[:rank].T @ (coef / S[:rank]))  # on the unit-norm columns: comparable across columns
    cols = np.flatnonzero(b > np.sqrt(TREATMENT_SPAN_RTOL) * b.max()).tolist()
    which = [names[j] for j in cols] if names else cols
    raise PyrozooError(f"t: the treatment is a linear function of the covariates (column(s) {which}): least squares "
                       f"of t on an intercept and X leaves {ratio:.2g} of its centred sum of squares (at most "
                       f"{TREATMENT_SPAN_RTOL:g} counts as none), so no variation in t is left once X is adjusted for "
                       f"and its effect is not identified; remove the column(s) that determine t from X, or study "
                       f"another treatment")


def check_no_constant_columns(X: np.ndarray, names: list[str] | None = None) -> None:
    """Raise if a column of ``X`` (n, p) is constant, naming it (by ``names`` when given, else by position): the
    estimators fit their own intercept, and a constant covariate only makes their bases singular."""
    const = np.flatnonzero(np.ptp(X, axis=0) == 0) if X.shape[0] > 0 else np.array([], dtype=int)
    if const.size:
        cols = [names[j] for j in const] if names else const.tolist()
        raise PyrozooError(f"X: column(s) {cols} are constant; remove them (an intercept is fitted separately)")


def check_no_duplicate_columns(X: np.ndarray, names: list[str] | None = None) -> None:
    """Raise if a column of ``X`` (n, p) repeats another exactly, or is an exact multiple c of it (c != 0, up to
    rounding: |x_j - c x_k| <= 64 eps max |x_j|), naming both (by ``names`` when given, else by position). Such a
    column adds nothing the other does not carry, but the nuisance learner may select either in different folds
    (a duplicate moved a 60-row PLCE estimate from 0.92 to 2.33). Call after :func:`check_no_constant_columns`.
    An affine copy (x + 1, or a dummy and its complement) is not refused: only repeats and multiples.

    Only columns with the same zero and relative sign pattern are compared, and within such a group only those whose
    projections s_j = r . u_j, u_j = x_j / x_j[f] (f the first nonzero row, r a fixed random vector), lie within a
    proven rounding bound of each other (x_j = c x_k iff u_j = u_k, with c = x_j[f] / x_k[f]), found in s sorted: the
    same pairs as comparing every same-pattern pair, at a cost O(n p + p log p) in the usual case of no near-candidates,
    all-positive columns (one pattern) included; O(n p^2) only for many columns that are multiples up to ~n^2 eps."""
    n, p = X.shape
    if n == 0 or p < 2:
        return
    nonzero = X != 0
    first = nonzero.argmax(axis=0)  # the first nonzero row of each column (non-constant columns have one)
    cols = np.arange(p)
    # zero, or the sign relative to that row's: x and c x share it for any c != 0 (one contiguous row per column)
    negative = X < 0
    flip = negative[first, cols]
    pattern = np.ascontiguousarray((nonzero.view(np.int8) + (nonzero & (negative ^ flip)).view(np.int8)).T)
    del nonzero, negative
    ids: dict[bytes, int] = {}
    group = np.array([ids.setdefault(pattern[j].tobytes(), len(ids)) for j in cols])
    s, width = _projections(X, first)
    order = np.lexsort((s, group))  # by group, then by s; a non-finite s (overflow) sorts last within its group
    s_sorted, g_sorted = s[order], group[order]
    bounds = np.searchsorted(g_sorted, np.arange(len(ids) + 1))  # group g is order[bounds[g]:bounds[g + 1]]
    wild = ~np.isfinite(s)  # such a column is a candidate for every later column of its group
    wild_in = [order[a:b][wild[order[a:b]]] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    kept = np.zeros(p, dtype=bool)  # the first column of each set of repeats; a later repeat is reported against it
    pairs = []
    for j in range(p):
        a, b = bounds[group[j]], bounds[group[j] + 1]
        if wild[j] or not np.isfinite(width[j]):
            cand = order[a:b]
        else:
            lo = a + np.searchsorted(s_sorted[a:b], s[j] - width[j], "left")
            hi = a + np.searchsorted(s_sorted[a:b], s[j] + width[j], "right")
            cand = np.concatenate([order[lo:hi], wild_in[group[j]]])
        for k in np.sort(cand[(cand < j) & kept[cand]]).tolist():  # in column order, as a full scan would meet them
            c = X[first[j], j] / X[first[k], k]
            if _is_multiple(X, j, k, c):
                pairs.append((j, k, c))
                break
        else:
            kept[j] = True
    if pairs:
        label = (lambda j: f"column {names[j]!r}") if names else (lambda j: f"column {j}")
        what = "; ".join(f"{label(j)} is {label(k)}" if c == 1 else f"{label(j)} is {c:.10g} x {label(k)}"
                         for j, k, c in pairs)
        raise PyrozooError(f"X: expected distinct covariate columns, got exact repeats or multiples ({what}); "
                           "remove one column of each pair")


def _is_multiple(X: np.ndarray, j: int, k: int, c: float) -> bool:
    """The full-column test of :func:`check_no_duplicate_columns`: |x_j - c x_k| <= 64 eps max |x_j| in every row."""
    return bool(np.abs(X[:, j] - c * X[:, k]).max() <= 64 * np.finfo(np.float64).eps * np.abs(X[:, j]).max())


def _projections(X: np.ndarray, first: np.ndarray, block: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """s_j = r . u_j with u_j = x_j / x_j[f_j] and r ~ U(-1, 1)^n fixed, and a width w_j such that every k that
    :func:`_is_multiple` accepts for j (same f) has |s_j - s_k| <= w_j in floating point.

    Derivation (eps = 2u, tiny the smallest normal; gamma_n = n u / (1 - n u) <= n eps): with M_j = max|x_j| /
    |x_j[f]|, an accepted pair has |x_j - c x_k| <= 64 eps max|x_j| computed, so <= 66 eps max|x_j| + 4 tiny exactly
    (c, the product and the difference each round), i.e. |u_j,i - u_k,i| <= t_j = (66 eps max|x_j| + 4 tiny) / |x_j[f]|
    and M_k <= M_j + t_j. Rounding u (relative u, absolute tiny) and the dot product (gamma_n sum|u_i r_i|, plus
    underflow) add at most n ((n + 1) eps (2 M_j + t_j) + 6 tiny), so |s_j - s_k| <= n (t_j + (n + 1) eps (2 M_j + t_j)
    + 6 tiny); w_j is twice that (covering the rounding of w_j itself). Columns are scaled in blocks to bound memory."""
    n, p = X.shape
    eps, tiny = np.finfo(np.float64).eps, np.finfo(np.float64).tiny
    r = np.random.default_rng(0).uniform(-1.0, 1.0, n)
    lead = np.abs(X[first, np.arange(p)])
    top = np.abs(X).max(axis=0)
    s = np.empty(p)
    step = max(1, block // max(n, 1))
    with np.errstate(over="ignore", invalid="ignore", under="ignore", divide="ignore"):
        for a in range(0, p, step):
            b = min(p, a + step)
            s[a:b] = r @ (X[:, a:b] / X[first[a:b], np.arange(a, b)])
        t = (66 * eps * top + 4 * tiny) / lead
        width = 2 * n * (t + (n + 1) * eps * (2 * top / lead + t) + 6 * tiny)
    return s, width


def standardized_columns(X: np.ndarray) -> np.ndarray:
    """(X - mean) / sd per column, a constant column left centred (sd taken as 1)."""
    X = np.asarray(X, dtype=np.float64)
    sd = X.std(0)
    return (X - X.mean(0)) / np.where(sd > 0, sd, 1.0)
