"""Input checks shared by every model: each raises :class:`PyrozooError` naming the argument."""

from __future__ import annotations

import inspect
import math
import numbers
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyrozoo.errors import PyrozooError


def text_items(value: Any) -> list[Any]:
    """The strings among the entries of array-like ``value``; none for a tensor (it cannot hold text, and NumPy
    cannot read one that requires grad)."""
    if isinstance(value, torch.Tensor):
        return []
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):  # ragged: the conversion below says so
        return []
    if arr.dtype.kind in "US":
        return arr.reshape(-1).tolist()
    if arr.dtype.kind == "O":
        return [v for v in arr.reshape(-1) if isinstance(v, (str, bytes))]
    return []


def as_tensor(name: str, value: Any, *, dtype: torch.dtype | None = None, device: Any = None,
              detach: bool = False) -> torch.Tensor:
    """Convert array-like input to a float tensor, or say which argument could not be converted.

    A tensor keeps its autograd graph (the GP objectives are differentiated through their inputs) unless ``detach``:
    data given to a fit or a prediction are values, and a tensor that requires grad would otherwise fail in
    ``.numpy()`` or keep a graph alive across optimizer steps.

    Tensors keep their floating dtype unless ``dtype`` is given; other input gets ``dtype`` or torch's default.
    A ``dtype`` that is not a floating torch dtype is refused (an integer one would truncate the data), and so is
    text, even text NumPy would read as numbers (``["1", "2"]``: a column read as strings is a mistake upstream).
    A pandas Series or DataFrame with missing values (pd.NA, NaN) is refused saying so (pd.NA of a nullable column
    made NumPy fail with "float() argument must be ... NAType"); other NaN are left to :func:`check_finite`.
    Complex numbers are refused (:func:`check_real_dtype`): the conversion would drop their imaginary part with
    only a ComplexWarning.
    """
    if dtype is not None:
        _check_floating("dtype", dtype)
    text = [] if isinstance(value, torch.Tensor) else text_items(value)  # np.array(["1"], float) reads text
    if text:
        where = ""
        if _is_pandas(value) and value.ndim == 2:  # a DataFrame: name the first column holding text
            column = next(c for c, col in value.items() if text_items(col))
            where, text = f" in column {str(column)!r}", text_items(value[column])
        raise PyrozooError(f"{name}: expected a numeric array, got text values{where} (e.g. {text[0]!r}); convert the "
                           f"data to numbers first")
    check_pandas_missing(name, value)  # pd.NA in a nullable DataFrame column cannot even become a float
    check_real_dtype(name, _dtype_of(value))  # float64 conversion would keep only the real part
    try:
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.array(value, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise PyrozooError(f"{name}: expected a numeric array, got {type(value).__name__} ({exc})") from None
    if dtype is None:
        keep = isinstance(value, torch.Tensor) and t.is_floating_point()
        dtype = t.dtype if keep else torch.get_default_dtype()
    return (t.detach() if detach else t).to(dtype=dtype, device=device)


def _is_pandas(value: Any, kinds: tuple[str, ...] = ("Series", "DataFrame")) -> bool:
    """Whether ``value`` is a pandas Series or DataFrame (``kinds``: the pandas classes asked about), without
    importing pandas for the question."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, tuple(getattr(pd, k) for k in kinds))


def is_dataframe(value: Any) -> bool:
    """Whether ``value`` is a pandas DataFrame (without importing pandas for the question)."""
    return _is_pandas(value, ("DataFrame",))


def _pandas_missing(value: Any) -> tuple[int, str] | None:
    """How many missing entries (pd.NA, NaN, None) a pandas Series or DataFrame holds and where the first is, by its
    labels (``row 'r7', column 'x1'``), or None when there are none (or ``value`` is not pandas)."""
    if not _is_pandas(value):
        return None
    missing = np.asarray(value.isna())
    if not missing.any():
        return None
    first = np.argwhere(missing)[0]
    where = f"row {_plain_label(value.index[first[0]])!r}"
    if missing.ndim == 2:
        where += f", column {value.columns[first[1]]!r}"
    return int(missing.sum()), where


def check_pandas_missing(name: str, value: Any) -> None:
    """Raise if ``value`` is a pandas Series or DataFrame with missing entries (pd.NA, NaN, None), saying how many
    and where the first is, by its labels (``row 3, column 'x1'``); other input passes."""
    missing = _pandas_missing(value)
    if missing is not None:
        count, first = missing
        raise PyrozooError(f"{name}: expected no missing values, found {count} (pd.NA or NaN, the first at {first}); "
                           f"drop or impute them first")


def check_finite(name: str, value: torch.Tensor | np.ndarray, *, labels: Any = None) -> None:
    """Raise if ``value`` holds NaN or inf, saying how many and where the first one is: by index, or by row label
    and column name when ``labels`` is the pandas Series or DataFrame ``value`` was converted from."""
    arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if not np.issubdtype(arr.dtype, np.number):
        raise PyrozooError(f"{name}: expected numbers, got dtype {arr.dtype}")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        kind = "NaN" if np.isnan(arr[first]) else "inf"
        where = f"index {first}"
        if _is_pandas(labels) and len(labels) == arr.shape[0] and arr.ndim in (1, 2):
            where = f"row {_plain_label(labels.index[first[0]])!r}"
            if labels.ndim == 2 and arr.ndim == 2 and labels.shape[1] == arr.shape[1]:
                where += f", column {str(labels.columns[first[1]])!r}"
        at = f" at {where}" if arr.ndim else ""  # a scalar has no index to give
        raise PyrozooError(
            f"{name}: expected finite values, found {int(bad.sum())} non-finite ({kind}{at})"
        )


def check_finite_kwargs(kwargs: Mapping[str, Any], *, allow: Iterable[str] | str = (), what: str = "") -> None:
    """Raise :func:`check_finite`'s :class:`PyrozooError` for the first entry of ``kwargs`` that is a floating-point
    tensor or NumPy array holding NaN or inf, named by its key (``what['key']`` when ``what`` is given). The
    engines call it before any work: a model whose loader skipped validation otherwise fails inside Pyro or torch
    ("cannot find valid initial params"). Other entries (None, numbers, integer or bool tensors, modules) are not
    read (nor meta tensors, which hold no values), and the keys in ``allow`` (the engines' ``allow_nonfinite``)
    may hold NaN or inf: a mask, an inf truncation bound. One ``torch.isfinite(v).all()`` per tensor (one host
    sync each); only a tensor that fails is copied to the host, for the message."""
    allowed = (allow,) if isinstance(allow, str) else allow
    if not isinstance(allowed, Iterable) or isinstance(allowed, Mapping):
        raise PyrozooError(f"allow_nonfinite: expected names of model arguments, got {type(allow).__name__}")
    allowed = tuple(allowed)
    if not all(isinstance(n, str) for n in allowed):
        raise PyrozooError(f"allow_nonfinite: expected names of model arguments (str), got {list(allowed)!r}")
    for key, value in kwargs.items():
        if key in allowed:
            continue
        if isinstance(value, torch.Tensor):
            if not value.is_floating_point() or value.is_meta or bool(torch.isfinite(value).all()):
                continue
            value = value.detach().cpu().to(torch.float64)  # bfloat16 has no NumPy dtype; the message only
        elif not (isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)
                  and not np.isfinite(value).all()):
            continue
        check_finite(f"{what}[{key!r}]" if what else str(key), value)


def _plain_label(label: Any) -> Any:
    """A pandas label as a plain Python value (``3``, not ``np.int64(3)``, in messages)."""
    return label.item() if isinstance(label, np.generic) else label


def check_xy(X: Any, y: Any = None, *, x_name: str = "X", y_name: str = "y", dtype: torch.dtype = torch.float64,
             min_rows: int = 1, vector_is_column: bool = False, detach: bool = False) -> tuple[torch.Tensor, Any]:
    """Regression data checked before any work: ``X`` a finite (N, D) array with N >= ``min_rows`` and D >= 1 (a
    1-D ``X`` read as one column when ``vector_is_column``), ``y`` (if given) a finite (N,) array. Both come back
    as ``dtype`` tensors, y on X's device; every error names the argument, what was expected and what came. pandas
    categorical columns are refused, even integer ones (:func:`check_numeric_columns`: labels, not amounts). With
    ``detach`` the tensors come back cut from any autograd graph (:func:`as_tensor`): data for a fit."""
    check_same_index(**{x_name: X, y_name: y})  # rows are paired by position: pandas labels must agree
    check_pandas_numeric(X, y, x_name=x_name, y_name=y_name)
    X_in, y_in = X, y
    X = as_tensor(x_name, X, dtype=dtype, detach=detach)
    if vector_is_column and X.dim() == 1:
        X = X.unsqueeze(-1)
    if X.dim() != 2 or X.shape[0] < min_rows or X.shape[1] < 1:
        rows = "one row and " if min_rows == 1 else f"{min_rows} rows and " if min_rows > 1 else ""
        raise PyrozooError(f"{x_name}: expected a 2-D array (rows, features) with at least {rows}one column, "
                           f"got shape {tuple(X.shape)}")
    check_finite(x_name, X, labels=X_in)
    if y is not None:
        y = as_tensor(y_name, y, dtype=dtype, device=X.device, detach=detach)
        if y.shape != (X.shape[0],):
            raise PyrozooError(f"{y_name}: expected shape ({X.shape[0]},) (one value per row of {x_name}), got "
                               f"{tuple(y.shape)}")
        check_finite(y_name, y, labels=y_in)
    return X, y


def check_pandas_numeric(X: Any, y: Any = None, *, x_name: str = "X", y_name: str = "y") -> None:
    """Raise if pandas ``X`` or ``y`` hold categorical or text columns (:func:`check_numeric_columns`: categories
    are labels, not amounts, even integer ones), with the fix for each; other input passes."""
    if _is_pandas(X):
        check_numeric_columns(x_name, X, hint=f"; encode categories, e.g. with pd.get_dummies({x_name}, "
                                              "drop_first=True, dtype=float)")
    if _is_pandas(y):
        check_numeric_columns(y_name, y, categorical_hint=AMOUNTS_HINT)


def check_same_index(**inputs: Any) -> None:
    """Raise if two or more of ``inputs`` (name -> value) are pandas objects (Series, DataFrame) of the same length
    whose indexes differ, as sets of labels or in order, naming them. The estimators match rows by position, as
    scikit-learn does, so a DataFrame whose rows are in another order than the outcome's would be fitted row by row
    against the wrong outcome without a trace; an error is better than guessing an alignment. Equal indexes pass,
    and so do NumPy arrays next to pandas objects; lengths are left to the row-count checks."""
    if "pandas" not in sys.modules:  # no pandas object can exist; pandas is not imported for this check alone
        return
    import pandas as pd

    framed = [(name, v.index) for name, v in inputs.items() if isinstance(v, (pd.Series, pd.DataFrame))]
    if len(framed) < 2:
        return
    ref, ref_index = framed[0]
    differ = [(name, index) for name, index in framed[1:]
              if len(index) == len(ref_index) and not index.equals(ref_index)]
    if not differ:
        return
    name, index = differ[0]
    extra = index[~index.isin(ref_index)]
    if len(extra) == 0 and ref_index.isin(index).all():
        how = "the same labels in another order"
    else:
        label = extra[0] if len(extra) else ref_index[~ref_index.isin(index)][0]
        label = label.item() if isinstance(label, np.generic) else label  # 160, not np.int64(160)
        side = f"{name}'s index but not {ref}'s" if len(extra) else f"{ref}'s index but not {name}'s"
        how = f"other labels ({label!r} is in {side})"
    names = ", ".join([ref, *(n for n, _ in differ)])
    raise PyrozooError(f"{names}: expected pandas inputs with the same index (rows are matched by position, not by "
                       f"label), got {name} with {how}; align them first, e.g. {name} = {name}.loc[{ref}.index], or "
                       f"drop the labels of every input with .reset_index(drop=True)")


def feature_names(X: Any, name: str = "X") -> np.ndarray | None:
    """A DataFrame's column names as an object array when they are all strings (scikit-learn's rule: no names
    otherwise), for ``feature_names_in_`` and the ArviZ ``feature`` coordinate; mixed string and non-string names
    are an error, as in scikit-learn, and so is a name given to two columns."""
    columns = getattr(X, "columns", None)
    if columns is None or isinstance(X, (np.ndarray, torch.Tensor)):
        return None
    names = np.asarray(list(columns), dtype=object)
    is_str = [isinstance(c, str) for c in names]
    if names.size and all(is_str):
        # a repeated name would label two entries of the feature axis alike (ArviZ's summary then fails)
        check_unique(name, names.tolist(), what="column", quote=True)
        return names
    if any(is_str):
        kinds = sorted({type(c).__name__ for c in names})
        raise PyrozooError(f"{name}: expected column names that are all strings (or none), got names of types {kinds}; "
                           f"e.g. {name}.columns = {name}.columns.astype(str)")
    return None


def row_labels(X: Any) -> list[Any] | None:
    """A pandas DataFrame's or Series' index labels as a list (the user's row labels, for the ArviZ ``obs_id``
    coordinate), or None for arrays and tensors and for an index with repeated labels (which cannot label rows).
    Integer and text labels are kept; any other index (a MultiIndex's tuples, tz-aware dates, periods, intervals)
    is given as text, ``str(label)``, which ArviZ and netCDF can hold, or None when the texts repeat."""
    import pandas as pd

    if not _is_pandas(X) or not X.index.is_unique:
        return None
    index = X.index
    if not isinstance(index, pd.MultiIndex) and (index.dtype.kind in "iu" or all(isinstance(v, str) for v in index)):
        return [v.item() if isinstance(v, np.generic) else v for v in index]
    text = [str(v) for v in index]
    return text if len(set(text)) == len(text) else None


def _column_difference(names: Any, fitted: Any) -> tuple[list, list]:
    """The ``fitted`` names that ``names`` lacks (missing) and the ``names`` not among ``fitted`` (unexpected), each
    in its own order: what :func:`check_feature_names` and :func:`align_feature_names` report."""
    have, want = set(names), set(fitted)
    return [c for c in fitted if c not in have], [c for c in names if c not in want]


def check_feature_names(X: Any, fitted: Any, *, name: str = "X", seen: str = "in fit") -> None:
    """Raise if ``X`` is a DataFrame whose string column names (:func:`feature_names`) are not ``fitted``, the names
    recorded when the model was fitted or the dataset made, in that order: the models read columns by position, so
    the same columns in another order (or other columns) would be used as the wrong inputs without a trace. Arrays,
    tensors and DataFrames without string names pass (matched by position, as before), and so does anything when
    ``fitted`` is None (no names were recorded). ``seen`` says where the names came from (``"in X"``)."""
    names = feature_names(X, name)
    if names is None or fitted is None:
        return
    fitted = np.asarray(list(fitted), dtype=object)
    if np.array_equal(names, fitted):
        return
    missing, unexpected = _column_difference(names, fitted)
    detail = (f"missing {missing}, unexpected {unexpected}" if missing or unexpected
              else "the same names in another order")
    raise PyrozooError(f"{name}: expected the columns seen {seen}, in that order, {fitted.tolist()}; got "
                       f"{names.tolist()} ({detail})")


def align_feature_names(X: Any, fitted: Any, *, name: str = "X", seen: str = "in fit") -> Any:
    """``X`` with its columns put in the order of ``fitted`` (the names recorded at fit) when ``X`` is a DataFrame
    with string column names (:func:`feature_names`) that are the same set in another order; a DataFrame with
    missing or other columns is an error naming them. Arrays, tensors, DataFrames without string names, and anything
    when ``fitted`` is None pass unchanged (matched by position, as in scikit-learn). Unlike
    :func:`check_feature_names`, which refuses another order, this is for callers that select columns by name."""
    names = feature_names(X, name)
    if names is None or fitted is None:
        return X
    fitted = [str(c) for c in fitted]
    if names.tolist() == fitted:
        return X
    missing, unexpected = _column_difference(names, fitted)
    if missing or unexpected:
        raise PyrozooError(f"{name}: expected the columns seen {seen}, {fitted}; got {names.tolist()} (missing "
                           f"{missing}, unexpected {unexpected})")
    return X[fitted]


# For a variable read as one amount: an integer-coded categorical is refused, with the way to keep it as numbers.
AMOUNTS_HINT = "; .astype(float) if the categories are amounts"


def check_numeric_columns(name: str, value: Any, *, hint: str = "", categorical_hint: str | None = None) -> None:
    """Raise if ``value`` (a DataFrame, Series, array or tensor) holds a pandas categorical column, text, even numbers
    stored as text (``"1.5"``, which ``to_numpy(dtype=float)`` would read), or complex numbers, naming the column;
    ``hint`` follows the message (not the complex one's), ``categorical_hint`` (default ``hint``) the categorical
    one's. Categories are labels, not amounts: integer ones would otherwise pass as an ordered number while text
    ones failed."""
    items = list(value.items()) if hasattr(value, "items") and hasattr(value, "columns") else [(None, value)]
    categorical = [c for c, col in items if type(getattr(col, "dtype", None)).__name__ == "CategoricalDtype"]
    if categorical:
        what = ("a pandas categorical" if categorical == [None]
                else f"categorical column(s) {[str(c) for c in categorical]}")
        raise PyrozooError(f"{name}: expected numbers, got {what} (categories are labels, not amounts)"
                           f"{hint if categorical_hint is None else categorical_hint}")
    for c, col in items:
        where = "" if c is None else f" in column {str(c)!r}"
        text = text_items(col)
        if text:
            raise PyrozooError(f"{name}: expected numbers, got text values{where} (e.g. {text[0]!r}); convert numbers "
                               f"stored as text with pd.to_numeric{hint}")
        check_real_dtype(name, _dtype_of(col), where=where)


def check_no_datetimes(name: str, v: Any) -> None:
    """Raise if ``v`` (a DataFrame, Series or array) holds dates or durations (NumPy or pandas datetime64, with or
    without a time zone, or timedelta64), naming the column: a float64 conversion reads them silently as counts of
    their time unit (since 1970 for dates), a unit and origin that the estimators would then take as an amount.
    Encode them yourself, e.g. days since the first date. (Shared by the causal estimators and the regime SCM.)"""
    items = list(v.items()) if hasattr(v, "items") and hasattr(v, "columns") else [(None, v)]  # a DataFrame
    for c, col in items:
        dtype = getattr(col, "dtype", None)
        kind = getattr(dtype, "kind", None)
        if kind in ("M", "m"):  # datetime64 (tz-aware too) or timedelta64
            where = "" if c is None else f" in column {str(c)!r}"
            ref = name if c is None else f"{name}[{c!r}]"
            if hasattr(col, "dt"):  # pandas: the .dt accessor
                days, seconds = f"({ref} - {ref}.min()).dt.days", f"{ref}.dt.total_seconds()"
            else:  # a NumPy array has no .dt
                days, seconds = f"({ref} - {ref}.min()) / np.timedelta64(1, 'D')", f"{ref} / np.timedelta64(1, 's')"
            what, read, fix = (("dates", "counts of their time unit since 1970", f"days since the first date, {days}")
                               if kind == "M" else ("durations", "counts of their time unit", f"seconds, {seconds}"))
            raise PyrozooError(f"{name}: expected numbers, got {what}{where} ({dtype}), which would be read as {read}; "
                               f"encode them as numbers yourself, e.g. {fix}")


def check_real_dtype(name: str, dtype: Any, *, where: str = "") -> None:
    """Raise if ``dtype`` (NumPy or torch) is complex: a float64 conversion would drop the imaginary part with only a
    ComplexWarning. ``where`` follows the dtype in the message (`` in column 'b'``); other dtypes and None pass."""
    if bool(getattr(dtype, "is_complex", False)) or getattr(dtype, "kind", "") == "c":
        raise PyrozooError(f"{name}: expected real numbers, got {str(dtype).removeprefix('torch.')}{where}")


def _dtype_of(value: Any) -> Any:
    """The dtype of an array, tensor, Series or list (None for ragged input, left to the conversion's own error)."""
    if hasattr(value, "dtype"):
        return value.dtype
    try:
        return np.asarray(value).dtype
    except (TypeError, ValueError):
        return None


def check_squares_finite(name: str, value: torch.Tensor | np.ndarray) -> None:
    """Raise unless ``value`` is finite and its sum of squares is finite in its own dtype. Data as large as 1e200
    are finite, but their sufficient statistics (sum of squares, n * mean^2) overflow to inf and a fit would run on
    NaNs; the message says how large the data are and to rescale them."""
    check_finite(name, value)  # NaN/inf first: their sums say nothing about the scale
    arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    with np.errstate(over="ignore"):
        total = np.square(arr).sum(dtype=arr.dtype)
    if not np.isfinite(total):
        big = float(np.abs(arr).max())
        unit = 10.0 ** math.floor(math.log10(big))
        raise PyrozooError(f"{name}: the sum of squares overflows {arr.dtype} (largest |value| {big:.3g}), so the "
                           f"fit's statistics would be inf; rescale the data (e.g. divide by {unit:.0e}) and scale "
                           "the results back")


RANDN_BOUND = 10.0  # |z| of torch.randn's float64 draws stays below 8.6 (Box-Muller on 53-bit uniforms)


def check_normal_draws(n: int, scale: tuple[str, float], loc: tuple[str, float] | None = None, *,
                       offset: float = 0.0) -> None:
    """Raise, naming the parameter, unless ``n`` simulated values ``loc + offset + scale * z`` (``scale`` > 0 and
    ``loc`` finite, checked already; ``offset`` a bound on the rest of the mean) have a finite float64 sum of
    squares, n (|loc| + offset + 10 scale)^2 <= float64 max (|z| < 10), and the precision 1 / scale^2 is finite.
    Otherwise the data check named ``x`` or ``y``, a variable the caller never gave (mu_true=1e300 was "x: the sum
    of squares overflows ... rescale the data"), or the truth's 1 / sigma^2 failed with a raw ZeroDivisionError."""
    (s_name, s), (m_name, m) = scale, loc if loc is not None else ("", 0.0)
    s, m = float(s), float(m)
    if s * s == 0 or not math.isfinite(1.0 / (s * s)):
        raise PyrozooError(f"{s_name}: expected at least {1 / math.sqrt(np.finfo(np.float64).max):.3g}, so that the "
                           f"precision 1 / {s_name}^2 is finite in float64, got {s!r}")
    limit = math.sqrt(np.finfo(np.float64).max / n)
    if abs(m) + offset + RANDN_BOUND * s > limit:
        name = m_name if loc is not None and abs(m) >= RANDN_BOUND * s else s_name
        bound = f"|{m_name}| + {RANDN_BOUND:g} {s_name}" if loc is not None else f"{RANDN_BOUND:g} {s_name}"
        given = f"{m_name}={m!r}, {s_name}={s!r}" if loc is not None else f"{s!r}"
        raise PyrozooError(f"{name}: expected {bound} at most sqrt(float64 max / n) = {limit:.3g} with n = {n}, so "
                           f"that the simulated data's sum of squares is finite, got {given}")


FREE_DIMS = "nmkl"  # how shape_text spells the free lengths of a shape, in order


def shape_text(shape: Iterable[int | str | None]) -> str:
    """A wanted shape as a message says it, in Python's tuple spelling: ``a 1-D array of shape (40,)``, ``a 2-D array
    of shape (n, 3)`` (each ``None``, a free length, gets a letter; a string is a free length with that name, e.g.
    ``"M"`` for a count of pseudo-inputs), ``a 1-D array of any length``, ``a 2-D array`` (every length free)."""
    shape = tuple(shape)
    what = f"a {len(shape)}-D array"
    if all(s is None for s in shape):
        return what + (" of any length" if len(shape) == 1 else "")
    free = iter(FREE_DIMS)
    dims = [str(s) if s is not None else next(free, "_") for s in shape]
    return f"{what} of shape ({', '.join(dims)}{',' if len(dims) == 1 else ''})"


def check_shape(name: str, value: torch.Tensor | np.ndarray, shape: Iterable[int | str | None]) -> None:
    """Raise unless ``value.shape`` matches ``shape`` (``None``, or a string naming the length, matches any length);
    the message reads ``y: expected a 1-D array of shape (40,), got shape (40, 1)`` (:func:`shape_text`)."""
    shape = tuple(shape)
    got = tuple(value.shape)
    if len(got) != len(shape) or any(isinstance(s, int) and s != g for s, g in zip(shape, got, strict=True)):
        raise PyrozooError(f"{name}: expected {shape_text(shape)}, got shape {got}")


def _refuse(name: str, value: Any, want: str) -> PyrozooError:
    got = f"the string {value!r}" if isinstance(value, (str, bytes)) else repr(value)
    return PyrozooError(f"{name}: expected {want}, got {got}")


def real_array(name: str, value: Any, *, want: str = "a number or an array of numbers") -> np.ndarray:
    """``value`` (a number, NumPy scalar, or list/array/tensor of numbers) as a float64 array; raise naming ``name``
    and ``want`` for anything else. Strings, bools and None are refused even where ``float()`` would read them
    (``"0.01"`` from a quoted TOML value would otherwise pass a check and fail later inside torch)."""
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool or value.is_complex():
            raise _refuse(name, value, want)
        return value.detach().cpu().to(torch.float64).numpy()
    if value is None or isinstance(value, (str, bytes, bool, np.bool_)):
        raise _refuse(name, value, want)
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):  # ragged nested lists
        raise _refuse(name, value, want) from None
    if arr.dtype.kind == "O":  # mixed lists: only real numbers (0-d tensors included), no text or bools
        items = arr.reshape(-1)
        if not all((isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)))
                   or (isinstance(v, torch.Tensor) and v.numel() == 1 and v.dtype != torch.bool
                       and not v.is_complex()) for v in items):
            raise _refuse(name, value, want)
        arr = np.array([float(v) for v in items], dtype=np.float64).reshape(arr.shape)
    elif arr.dtype.kind not in "iuf":  # bool arrays, text, complex, datetimes
        raise _refuse(name, value, want)
    return arr.astype(np.float64)


def check_positive(name: str, value: Any, *, scalar: bool = False) -> None:
    """Raise unless every entry of ``value`` is a finite number > 0 (numbers, NumPy scalars, arrays and tensors of
    numbers; never strings or bools); with ``scalar``, unless it is one such number (a list is refused)."""
    arr = real_array(name, value, want="a finite value > 0")
    if (scalar and arr.ndim != 0) or not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        raise PyrozooError(f"{name}: expected a finite value > 0, got {value!r}")


def usable_range(dtype: torch.dtype = torch.float64, *, squared: bool = True) -> tuple[float, float]:
    """The magnitudes ``(low, high)`` a prior hyperparameter may take in ``dtype``: 1e-150 to 1e150 in float64, 1e-15
    to 1e15 in float32 (10^k with k four decades inside sqrt of the dtype's largest number), so that its square, its
    inverse square and their products with the data's moments stay finite and nonzero (mu_scale=1e-160 made
    mu_scale^-2 inf, a=1e308 an infinite lgamma(a), b=1e-320 an infinite prior draw of beta). ``squared=False``:
    for a value ``dtype`` only carries, never squares (its squares computed in float64): 10^k with k eight decades
    inside the largest number's decade, 1e-30 to 1e30 in float32."""
    top = torch.finfo(dtype).max
    k = math.floor(math.log10(math.sqrt(top))) - 4 if squared else math.floor(math.log10(top)) - 8
    return 10.0**-k, 10.0**k


# a Gamma shape's log density a log(beta) is rounded by ~a * 1e-16 in float64, while its posterior's log-beta sd is
# ~1/sqrt(a): past 1e12 the samplers' log densities (NUTS, HMC) cannot resolve it. (The cap was measured on
# normal-gamma's old 2-D grid reference: beta's sd 3e-6 off at a = 1e12, 44x at 1e20. Its 1-D quadrature, taken
# relative to the mode, now agrees with a 60-digit mpmath reference to 1e-8 posterior sd up to a = 1e20; the cap
# stays for the samplers.)
GAMMA_SHAPE_MAX = 1e12


def check_prior_range(name: str, value: Any, *, dtype: torch.dtype = torch.float64, zero: bool = False,
                      signed: bool = False, high: float | None = None, squared: bool = True) -> float:
    """Return ``value`` as a float, or raise naming ``name`` and the range unless it is one finite number whose
    magnitude lies in :func:`usable_range` for ``dtype`` (``high``: a lower top, e.g. :data:`GAMMA_SHAPE_MAX`);
    ``zero``: 0 is allowed too (e.g. noise 0 = unknown); ``signed``: a location, any sign, magnitude at most the
    range's top (0 included); ``squared``: as :func:`usable_range`'s."""
    low, top = usable_range(dtype, squared=squared)
    high = top if high is None else min(high, top)
    where = "" if dtype == torch.float64 else f" in {str(dtype).removeprefix('torch.')}"

    def fmt(v: float) -> str:
        return f"{v:g}".replace("e+", "e")

    if signed:
        want = f"a finite number with |{name}| <= {fmt(high)}{where}"
    else:
        want = f"a number between {fmt(low)} and {fmt(high)}{where}" + (" (or 0)" if zero else "")
    arr = real_array(name, value, want=want)
    v = float(arr) if arr.ndim == 0 else math.nan
    ok = (abs(v) <= high) if signed else ((low <= v <= high) or (zero and v == 0))
    if not ok:  # nan fails both comparisons
        raise PyrozooError(f"{name}: expected {want}, got {value!r}")
    return v


def check_real(name: str, value: Any) -> float:
    """Return ``value`` as a float, or raise unless it is one finite real number (a NumPy scalar or a 0-d tensor
    counts; a list, a string such as ``"1.0"``, a bool or NaN does not)."""
    arr = real_array(name, value, want="a finite number")
    if arr.ndim != 0 or not math.isfinite(float(arr)):
        raise _refuse(name, value, "a finite number")
    return float(arr)


def _check_floating(name: str, dtype: Any) -> torch.dtype:
    """Return ``dtype`` unless it is not a floating torch dtype (``torch.int64`` would truncate data to integers,
    the string ``"float32"`` is not a torch dtype). Any precision: :func:`as_tensor` converts to a reference
    tensor's dtype this way."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise PyrozooError(f"{name}: expected a floating torch dtype such as torch.float32 or torch.float64, "
                           f"got {dtype!r}")
    return dtype


# the dtypes a model's data may be asked for: half precision (float16, bfloat16) is refused up front, because torch
# lacks kernels the fits need for it ("gamma_cpu" not implemented for 'Half'; NumPy has no bfloat16) and its 3
# significant digits cannot hold the data's sums of squares
DATA_DTYPES = (torch.float32, torch.float64)


def check_float_dtype(name: str, dtype: Any) -> torch.dtype:
    """Return ``dtype`` if it is one of :data:`DATA_DTYPES` (torch.float32 or torch.float64); otherwise raise naming
    it: ``torch.int64`` would truncate data to integers, the string ``"float32"`` is not a torch dtype, and
    ``torch.float16`` or ``torch.bfloat16`` was accepted and then failed inside the fit (or fitted in float16)."""
    _check_floating(name, dtype)
    if dtype not in DATA_DTYPES:
        raise PyrozooError(f"{name}: expected a floating torch dtype of single or double precision, torch.float32 or "
                           f"torch.float64, got {dtype!r} (half precision is not supported)")
    return dtype


def check_text(name: str, value: Any) -> None:
    """Raise unless ``value`` is a non-empty string (a name, such as a shipped dataset's)."""
    if not isinstance(value, str) or not value.strip():
        raise PyrozooError(f"{name}: expected a name (text), got {value!r}")


def check_path(name: str, value: Any, *, what: str = "a path") -> None:
    """Raise unless ``value`` is a non-empty path: a string or an ``os.PathLike`` (not a number or a list)."""
    if not isinstance(value, (str, os.PathLike)) or not str(os.fspath(value)).strip():
        raise PyrozooError(f"{name}: expected {what}, got {value!r}")


def expand_home(name: str, value: str | os.PathLike, *, what: str = "a path",
                base: str | os.PathLike | None = None) -> Path:
    """``value`` as a path with a leading ``~`` or ``~user`` expanded to that home directory, as a shell would. A
    ``~user`` naming no user is kept as written when a file or directory of that literal name exists (relative to
    ``base``, default the working directory), as a shell leaves ``~nosuchuser`` as it is (``--data ~x.csv`` for a
    file named ``~x.csv``); otherwise it is a :class:`PyrozooError` naming ``name`` and saying both that no such
    user exists and that no such file does (``Path.expanduser`` raised a bare RuntimeError, and
    ``os.path.expanduser`` left it as it was, so a directory named ``~user`` was made in the working directory).
    ``value`` must be a path (:func:`check_path`: ``None``, a number or bytes are a :class:`PyrozooError` naming
    ``name``, not os.fspath's TypeError)."""
    check_path(name, value, what=what)
    text = os.fspath(value)
    if not text.startswith("~"):
        return Path(text)
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # "Could not determine home directory."
        path = None
    if path is None or str(path).startswith("~"):
        literal = Path(base if base is not None else ".") / text
        if os.path.lexists(literal):
            return Path(text)
        where = "the working directory" if base is None else str(base)
        raise PyrozooError(f"{name}: expected {what}, got {text!r}, whose {Path(text).parts[0]!r} names no home "
                           f"directory (no such user), and there is no file or directory {text!r} in {where} "
                           f"either")
    return path


def check_figure_path(name: str, value: Any, *, make_parents: bool = False) -> Path:
    """``value`` as the file a figure is to be written to, checked before anything is drawn: a non-empty path
    (:func:`check_path`; ``''`` wrote a hidden ``./.png``) that is not a directory, with an extension matplotlib can
    write (``c.xyz`` failed in ``savefig`` after the drawing), in a directory that exists (matplotlib's
    FileNotFoundError came after the drawing too). A path without an extension gets ``.png``, as ``savefig`` gives
    it (trailing dots dropped first, as ``savefig`` does: ``'plot.'`` is ``plot.png``), so the path returned is the
    file written (``'c'`` was returned as written while ``c.png`` was). A leading ``~`` is expanded (matplotlib
    would not: ``'~/p.png'`` was refused as "'~' does not exist"); ``~user`` of an unknown user is refused. A
    symbolic link is written through, so its target's directory must exist too (a dangling link into a missing
    directory failed in ``savefig`` after the drawing). ``make_parents``: a missing directory is created (after the
    other checks) instead of refused; a link's target directory is not."""
    check_path(name, value, what="a file path for the figure (e.g. 'plot.png')")
    text = os.fspath(value)
    path = expand_home(name, text, what="a file path for the figure (e.g. 'plot.png')")
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise PyrozooError(f"{name}: expected a file path for the figure (e.g. 'plot.png'), got the directory "
                           f"{text!r}")
    from matplotlib.backend_bases import FigureCanvasBase

    if not path.suffix:  # savefig: filename.rstrip('.') + '.' + its default format
        path = path.with_name(path.name.rstrip(".") + ".png")
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        raise PyrozooError(f"{name}: expected a file name ending in a format matplotlib writes "
                           f"({', '.join('.' + f for f in sorted(formats))}), got {text!r}")
    if make_parents and not path.parent.exists():
        try:
            path.parent.mkdir(parents=True)
        except OSError as err:
            raise PyrozooError(f"{name}: cannot create the directory {str(path.parent)!r} for the figure {text!r} "
                               f"({err.strerror or err})") from None
    if not path.parent.is_dir():
        why = "is not a directory" if path.parent.exists() else "does not exist; create it first"
        raise PyrozooError(f"{name}: expected a file in an existing directory, got {text!r} ({str(path.parent)!r} "
                           f"{why})")
    if path.is_symlink():  # savefig writes through the link: to its target
        try:
            target: Path | None = path.resolve()
        except (OSError, RuntimeError):  # a loop of links
            target = None
        if target is None or not target.parent.is_dir():
            where = ("a loop of links" if target is None else f"{str(target.parent)!r} "
                     f"{'is not a directory' if target.parent.exists() else 'does not exist'}")
            raise PyrozooError(f"{name}: expected a file in an existing directory, got {text!r}, a symbolic link to "
                               f"{os.readlink(path)!r} ({where})")
    return path


def check_bool(name: str, value: Any) -> None:
    """Raise unless ``value`` is True or False (a NumPy bool counts; ``"no"`` or 1 would pass a ``bool()`` cast)."""
    if not isinstance(value, (bool, np.bool_)):
        raise PyrozooError(f"{name}: expected True or False, got {value!r}")


def check_interval(name: str, value: Any, low: float, high: float = math.inf, *, low_open: bool = False,
                   high_open: bool = False, hint: str = "") -> float:
    """Return ``value`` as a float, or raise unless it is one real number (NumPy scalars too, not bool or NaN) in
    the interval from ``low`` to ``high`` (each end closed unless ``*_open``); ``hint`` follows the range."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)
    ok = ok and (low < value if low_open else low <= value) and (value < high if high_open else value <= high)
    if not ok:
        if math.isinf(high):
            span = f"{'>' if low_open else '>='} {low:g}"
        else:
            span = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise PyrozooError(f"{name}: expected a number {span}{hint}, got {value!r}")
    return float(value)


def check_nonnegative(name: str, value: Any) -> None:
    """Raise unless ``value`` is one finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
            math.isfinite(value) and value >= 0):
        raise PyrozooError(f"{name}: expected a finite number >= 0, got {value!r}")


def check_int(name: str, value: Any, *, minimum: int = 0) -> int:
    """Return ``value`` as an int, or raise unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise PyrozooError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise PyrozooError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


SEED_MAX = 2**32 - 1  # NumPy's legacy seeding (np.random.seed, which pyro.set_rng_seed calls) takes no more


def check_seed(name: str, value: Any) -> int:
    """Return ``value`` as an int, or raise unless it is an integer seed in [0, 2**32 - 1] (an integral float from
    TOML too): the range :func:`pyro.set_rng_seed` accepts, since it seeds NumPy's global RNG, which refuses
    2**32 with a raw ValueError (torch refuses 2**64 with "Overflow when unpacking long long")."""
    integral = isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral or not 0 <= value <= SEED_MAX:
        raise PyrozooError(f"{name}: expected an integer seed in [0, 2**32 - 1] (at most {SEED_MAX}), got {value!r}")
    return int(value)


def plate_size(name: str, n: Any, data: Any, data_name: str) -> int:
    """The size of a model's data plate: len(``data``) when it is given (``n`` may then only repeat it), else ``n``,
    an integer >= 1, required (nothing else says how many rows to draw). Plain Python on shapes: cheap enough for
    every model call, and nothing a jit trace or vectorized draws would change."""
    if data is not None:
        rows = int(data.shape[0]) if hasattr(data, "shape") and len(data.shape) else len(data)
        if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral) or int(n) != rows):
            raise PyrozooError(f"{name}: expected None or len({data_name}) = {rows} when {data_name} is given, "
                               f"got {n!r}")
        return rows
    if n is None:
        raise PyrozooError(f"{name}: expected the number of rows to draw (an integer >= 1) when {data_name} is "
                           f"None, got None")
    return check_int(name, n, minimum=1)


def plate_subsample(name: str, size: Any, rows: int) -> int | None:
    """The ``subsample_size`` of a plate over ``rows`` rows: ``size`` when 0 < size < rows, else ``None`` (every
    row; ``None`` and 0 mean full batch, and a size >= rows is clamped to it). Pyro's plate needs
    subsample_size <= size: a larger one failed with "subsample_size does not match len(subsample)", which blamed the
    guide. A model and its guide call this with the same arguments, so both plates agree."""
    if size is None:
        return None
    size = check_int(name, size, minimum=0)
    return size if 0 < size < rows else None


def check_accepts(name: str, fn: Any, *calls: Mapping[str, Any], caller: str = "run_svi",
                  what: str = "the model's arguments") -> None:
    """Raise before any work unless ``fn`` (a guide, say) can be called with the keyword arguments of each of
    ``calls`` (``fn(**kwargs)``, as ``caller`` calls it): a keyword its signature does not take, or a parameter
    without a default that none gives, is a :class:`PyrozooError` naming ``fn`` and them, not a ``TypeError`` from
    inside the first step. A ``torch.nn.Module`` (a PyroModule guide) that defines ``forward`` is checked by it; one
    that does not (Pyro's AutoMessenger guides define ``__call__``, their ``forward`` is Module's ``*input``
    placeholder) by its ``__call__``. ``*args`` / ``**kwargs`` signatures (Pyro's AutoGuides) accept anything, and a
    callable without an inspectable signature passes unchecked."""
    own_forward = isinstance(fn, torch.nn.Module) and type(fn).forward is not torch.nn.Module.forward
    target = fn.forward if own_forward else fn
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin or extension callable: the call will tell
        return
    params = signature.parameters
    by_keyword = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unexpected: list[str] = []
    missing: list[str] = []
    for kwargs in calls:
        for key in kwargs:
            p = params.get(key)
            if (not by_keyword and key not in unexpected
                    and (p is None or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))):
                unexpected.append(key)
        for p in params.values():
            if (p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.default is p.empty and p.name not in missing
                    and (p.name not in kwargs or p.kind is p.POSITIONAL_ONLY)):
                missing.append(p.name)
    if not unexpected and not missing:
        return
    label = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None) or type(fn).__module__
    problems = ([f"it does not accept {', '.join(map(repr, unexpected))}"] if unexpected else []) + (
        [f"it requires {', '.join(map(repr, missing))}, which {what} do not give"] if missing else [])
    given = sorted({k for kwargs in calls for k in kwargs})
    raise PyrozooError(f"{name}: {module}.{label} must accept {what}, as {caller} calls it with them as keywords "
                       f"({', '.join(given) or 'none'}); {' and '.join(problems)} (its signature: {signature}); give "
                       f"it the model's signature")


def check_dataset(name: str, dataset: Any, model: str, *, inputs: Iterable[str] = (), observed: Iterable[str] = (),
                  made_by: str = "") -> None:
    """Raise unless ``dataset`` is a :class:`~pyrozoo.data.dataset.Dataset` holding the ``inputs`` and ``observed``
    entries that ``model``'s fit reads (another family's dataset would otherwise fail with a KeyError deep inside
    the fit); ``made_by`` names the function that builds the right kind."""
    ins, obs = getattr(dataset, "inputs", None), getattr(dataset, "observed", None)
    want = f"a {model} dataset" + (f" (built by {made_by})" if made_by else "")
    if not isinstance(ins, Mapping) or not isinstance(obs, Mapping):
        raise PyrozooError(f"{name}: expected {want}, got {type(dataset).__name__}")
    missing = [k for k in inputs if k not in ins] + [k for k in observed if k not in obs]
    if missing:
        raise PyrozooError(f"{name}: expected {want}; {getattr(dataset, 'name', '?')!r} lacks "
                           f"{', '.join(missing)}")


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise unless ``value`` is one of ``choices``, listing them."""
    choices = list(choices)
    if value not in choices:
        raise PyrozooError(f"{name}: expected one of {', '.join(map(str, choices))}; got {value!r}")


def check_unique(name: str, values: Iterable[Any], *, what: str = "name", quote: bool = False) -> None:
    """Raise if a value of ``values`` comes more than once (a repeated column or acquisition is not a second one),
    naming the repeated ones (``repr``-quoted with ``quote``)."""
    values = list(values)
    repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
    if repeated:
        listed = ", ".join(map(repr if quote else str, repeated))
        raise PyrozooError(f"{name}: {listed} given more than once; name each {what} once")


def parse_names(name: str, value: Any, *, what: str = "column") -> list[str]:
    """The names an option lists: comma-separated text (``"a, b,c"``) or a list (a TOML array); empty text or
    None names none (``[]``, the caller's default). Raises for an empty item (``"a,,b"``, ``","``), a repeated
    name, or another type, naming the option ``name``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",")]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                  for v in value):
        names = [str(v).strip() for v in value]
    else:
        raise PyrozooError(f"{name}: expected {what} names, comma-separated (-o {name}=a,b) or a list, got {value!r}")
    if not all(names):
        raise PyrozooError(f"{name}: expected a {what} name between each pair of commas, got {value!r}")
    check_unique(name, names, what=what, quote=True)
    return names


def check_keys(name: str, given: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Raise if ``given`` has keys outside ``allowed`` (a misspelt option should never be ignored)."""
    allowed = set(allowed)
    unknown = sorted(set(given) - allowed)
    if unknown:
        error = PyrozooError(
            f"{name}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed)) or '(none)'}"
        )
        error.names = tuple(unknown)  # the keys it is about (`run --config` names the file for those from it)
        raise error


def check_option_types(name: str, given: Mapping[str, Any], defaults: Mapping[str, Any],
                       list_options: Iterable[str] = (), float_options: Iterable[str] = ()) -> dict[str, Any]:
    """Check each value in ``given`` against the kind of its default in ``defaults`` and return the options with
    integral floats made ints and ints made floats where the option is a float: a bool default takes only
    true/false, an int default integers (``30.0`` counts, as for the run's own integer settings), a float default
    numbers (``2`` is kept as ``2.0``, so config.toml and the InferenceData record a float as a float), and a list of
    numbers where the key is in ``list_options`` (per-column values such as ARD lengthscales). ``float_options``:
    options whose default is not a float (``None``) but whose values are floats; a number given is made a float.
    Other defaults (strings, None) are left to the model, which checks the choices itself
    (:func:`check_single_names` for an option that names one column). Run before any work, so a typo such as
    ``-o hidden=abc`` never reaches a model."""

    def is_number(v: Any) -> bool:
        return isinstance(v, numbers.Real) and not isinstance(v, bool)

    def as_float(key: str, v: Any) -> Any:
        try:
            if is_number(v):
                return float(v)
            if isinstance(v, (list, tuple)) and all(is_number(x) for x in v):
                return [float(x) for x in v]
        except OverflowError:  # an integer beyond float's range (1e309 written out in digits)
            raise PyrozooError(f"{key}: {name} expects a number within float range (about 1.8e308), got "
                               f"{str(v)[:40]}...") from None
        return v

    list_options, float_options = set(list_options), set(float_options)
    out = dict(given)
    for key, value in given.items():
        default = defaults.get(key)
        if key in float_options and not isinstance(default, numbers.Real):
            out[key] = as_float(key, value)  # refused by the model's own checks if not a number
            continue
        if isinstance(default, bool):
            ok, want = isinstance(value, bool), "true or false"
        elif isinstance(default, numbers.Integral):
            if isinstance(value, float) and value.is_integer():
                out[key] = value = int(value)
            ok, want = isinstance(value, numbers.Integral) and not isinstance(value, bool), "an integer"
        elif isinstance(default, numbers.Real):
            ok = is_number(value) or (key in list_options and isinstance(value, (list, tuple)) and len(value) > 0
                                      and all(is_number(v) for v in value))
            # "1,2" on the command line is one string, not a list: say how to write one (TOML, as in a config file)
            want = "a number or a list of numbers, written in brackets as [1,2]" if key in list_options else "a number"
            if ok:
                out[key] = as_float(key, value)
        else:
            continue
        if not ok:
            raise PyrozooError(f"{key}: {name} expects {want} (default {default!r}), got {value!r}")
    return out


def check_single_names(options: Mapping[str, Any], keys: Iterable[str]) -> None:
    """Raise unless each of ``keys`` present in ``options`` names one column (text or None), not a list."""
    for key in keys:
        value = options.get(key)
        if not (value is None or isinstance(value, str)):
            raise PyrozooError(f"{key}: expected one column name, got {value!r}")


def check_probability(name: str, value: float, *, open_interval: bool = False) -> None:
    """Raise unless ``value`` is in [0, 1] (or (0, 1) when ``open_interval``): :func:`check_interval`."""
    check_interval(name, value, 0.0, 1.0, low_open=open_interval, high_open=open_interval)
