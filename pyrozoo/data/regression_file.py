"""A user's regression table (``pyrozoo run MODEL --data my.csv -o outcome=y``), shared by the regression entries.

One reader, so spike-slab, blr, gp and sparse-gp refuse the same bad files with the same one-line errors: the
outcome column (option ``outcome``, required) is y; the features (option ``features``, comma-separated) are X,
by default every other column. Every feature must be numeric: a text column is an error naming it (not skipped,
which would drop a covariate without a trace); name the numeric ones with ``-o features=a,b``. Missing or
non-finite values are named by column and (0-based) data row, a constant feature (which standardization would
divide by a zero sd) is named too, and a constant outcome is refused as nothing to fit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pyrozoo.data.shipped import numeric_column, read_table
from pyrozoo.errors import PyrozooError
from pyrozoo.validation import parse_names

# the options every entry with this reader declares: text, read only with --data (ZooModel.data_options)
FILE_OPTIONS: dict[str, str] = {"outcome": "", "features": ""}
MIN_ROWS = 3


def parse_features(features: Any) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; a list of names is taken as it is; empty: none named (every column)."""
    return parse_names("features", features)


def check_columns_exist(source: str, columns: list[str], wanted: Mapping[str, list[str]], *,
                        hints: Mapping[str, str] | None = None, defaults: Mapping[str, str] | None = None) -> None:
    """Raise naming the option (a key of ``wanted``: option -> the column names it gives) whose column(s) the table
    lacks, and listing the columns it has; ``hints`` (option -> how a command spells it, e.g. ``"--outcome"``) adds
    that spelling to the message. ``defaults`` (option -> its default column): a missing default is said to be the
    default, not "given by" an option the user may never have written."""
    for option, names in wanted.items():
        unknown = [c for c in names if c not in columns]
        if unknown:
            spelled = hints.get(option) if hints else None
            default = defaults is not None and option in defaults and list(names) == [defaults[option]]
            if default:
                hint = f" (the default; give another with {spelled})" if spelled else " (the default)"
            else:
                hint = f" (given by {spelled})" if spelled else ""
            raise PyrozooError(f"{option}: {source} has no column(s) {', '.join(map(repr, unknown))}{hint}; columns "
                               f"are {listed_columns(columns)}")


def listed_columns(columns: list[Any]) -> str:
    """``a, b, c``; each name quoted (``'y', 'a,b', ' x'``) when one would make the plain list ambiguous: a comma in
    a name, a blank one, or one with leading or trailing spaces ("columns are y, a,b, x2" read as four columns)."""
    names = [str(c) for c in columns]
    ambiguous = any("," in c or c != c.strip() or not c for c in names)
    return ", ".join(map(repr, names) if ambiguous else names)


def blank_header_message(df: pd.DataFrame, blank: list[int], source: str, fix: str) -> str:
    """The error for columns at the 1-based positions ``blank`` whose header is blank (pandas' ``Unnamed: k``):
    a last column empty in every row is a trailing comma on every line; a first one, likely the index
    ``DataFrame.to_csv`` wrote; ``fix``: the option that names the columns instead."""
    if blank == [len(df.columns)] and df[df.columns[-1]].isna().all():  # "y,t,x1," on every line
        return (f"{source}: its lines end in a trailing comma (column {blank[0]}, the last, has no name in its "
                f"header and no value in any row): remove the trailing commas or {fix}")
    which = f"column {blank[0]} has" if len(blank) == 1 else f"columns {', '.join(map(str, blank))} have"
    why = " (a file written by DataFrame.to_csv with its index?)" if blank[0] == 1 else ""
    first = "write it with index=False" if blank[0] == 1 else "name it in the header row"
    return f"{source}: {which} no name in its header{why}: {first} or {fix}"


def _all_numbers(column: pd.Series) -> bool:
    """Whether every non-missing cell of ``column`` is a number: a numeric column, or text that ``pd.to_numeric``
    reads (pandas keeps an integer beyond int64 as a Python int in an object column)."""
    if pd.api.types.is_numeric_dtype(column) or column.isna().all():
        return True
    return not (pd.to_numeric(column, errors="coerce").isna() & column.notna()).any()


def feature_columns(df: pd.DataFrame, source: str, *, named: list[str], others: Mapping[str, str]) -> list[str]:
    """The feature columns: ``named`` (none of them among ``others``, column -> its role such as ``"outcome"``),
    or by default every column not in ``others``, in file order; then every one must be a named, numeric column
    (a text column is refused, not skipped, which would drop a covariate without a trace). A column pandas left as
    text whose every cell is a number anyway (an integer too large for int64, ``99999999999999999999``) is numeric:
    :func:`~pyrozoo.data.shipped.numeric_column` reads it as floats."""
    taken = [c for c in named if c in others]
    if taken:
        raise PyrozooError(f"features: {taken[0]!r} is the {others[taken[0]]} column; features must be other columns")
    columns = [str(c) for c in df.columns]
    cols = named or [c for c in columns if c not in others]
    if not named:
        blank = [i for i, c in enumerate(columns, start=1) if re.fullmatch(r"Unnamed: \d+", c)]
        if blank:
            raise PyrozooError(blank_header_message(df, blank, source, "name the features with -o features=a,b"))
        text = [c for c in cols if not _all_numbers(df[c])]
        if text:
            raise PyrozooError(f"{source}: column(s) {', '.join(map(repr, text))} are not numeric; every feature "
                               f"must be a number: name the numeric features with -o features=a,b (or recode them)")
    if not cols:
        besides = " and ".join(f"{role} {c!r}" for c, role in others.items())
        raise PyrozooError(f"{source}: no feature columns besides the {besides}")
    return cols


def refuse_constant(source: str, values: Mapping[str, np.ndarray], *,
                    why: str = "zero sd, which standardization divides by",
                    fix: str = "leave them out with -o features=... (the models add their own intercept)") -> None:
    """Raise naming the columns (name -> values) that are constant; ``why`` says what a zero sd breaks, ``fix``
    what to do (the defaults are the regression files')."""
    constant = [c for c, v in values.items() if np.ptp(np.asarray(v)) == 0]
    if constant:
        raise PyrozooError(f"{source}: column(s) {', '.join(map(repr, constant))} are constant ({why}); {fix}")


def read_regression_file(path: str, *, outcome: Any = "", features: Any = "",
                         min_rows: int = MIN_ROWS, rows_why: str = "") -> tuple[pd.DataFrame, np.ndarray]:
    """The features X (a float DataFrame whose columns are the feature names, in file order or as listed) and the
    outcome y (float array) of a user's CSV; raises a :class:`PyrozooError` naming the column (and data row) for
    an unknown column, text, a missing or non-finite value, a constant column, or fewer than ``min_rows`` rows
    (``rows_why`` says why that many, e.g. a test split taken from them)."""
    source = f"data {path}"
    if not isinstance(outcome, str) or not outcome.strip():
        raise PyrozooError(f"outcome: expected the name of the outcome column of {path} (-o outcome=COLUMN), got "
                           f"{outcome!r}")
    outcome = outcome.strip()
    named = parse_features(features)
    df = read_table(path)
    df.columns = [str(c) for c in df.columns]
    check_columns_exist(source, list(df.columns), {"outcome": [outcome], "features": named})
    cols = feature_columns(df, source, named=named, others={outcome: "outcome"})
    if len(df) < min_rows:
        why = f" ({rows_why})" if rows_why else ""
        raise PyrozooError(f"{source}: expected at least {min_rows} data rows{why}, got {len(df)}")
    y = numeric_column(df, outcome, source=source)
    X = pd.DataFrame({c: numeric_column(df, c, source=source) for c in cols})
    if np.ptp(y) == 0:  # not a feature to leave out: nothing to fit (exact, so 0.1 repeated is caught too)
        raise PyrozooError(f"outcome {outcome!r}: expected an outcome that varies, got a constant ({float(y[0])!r}) "
                           f"in {source}; nothing to fit")
    refuse_constant(source, {c: X[c].to_numpy() for c in cols})
    return X, y


def standardize_table(X: pd.DataFrame, y: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any]]:
    """(X - mean) / sd and (y - mean) / sd and the moments, to map predictions back to the file's units. The sds
    are population sds (ddof=0), as blr's shipped boston and concrete loaders and gp's concrete loader
    (:func:`~pyrozoo.data.gp_data.load_concrete_split`) use; bnn's shipped loaders
    (:func:`~pyrozoo.data.uci.split_regression`) use sample sds (ddof=1) instead."""
    xm, xs = X.mean(axis=0).to_numpy(), X.std(axis=0, ddof=0).to_numpy()
    ym, ys = float(np.mean(y)), float(np.std(y))
    moments = {"x_mean": xm, "x_scale": xs, "y_mean": ym, "y_scale": ys}
    return (X - xm) / xs, (y - ym) / ys, moments
