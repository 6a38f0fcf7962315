"""Reading a user's CSV file (``--data``): problems in the file are one clear error before any model work."""

import re

import pytest

from pyrozoo import registry
from pyrozoo.data.shipped import read_table
from pyrozoo.errors import PyrozooError

ROWS = "".join(f"{i % 5},{i % 3},{i % 7},{i % 2}\n" for i in range(20))


@pytest.mark.parametrize("header,name,columns", [
    ("y,t,x1,y", "y", "1, 4"),
    ("y,t,x1,t", "t", "2, 4"),
    ("y,t,x1,x1", "x1", "3, 4"),
    ("y, t, x1, y", "y", "1, 4"),  # skipinitialspace: ' y' is the same name
])
def test_a_repeated_header_name_is_rejected_naming_it(tmp_path, header, name, columns):
    """pandas renames a repeated name (y -> y.1) and the copy became a control: with header y,t,x1,y PLCE gave
    theta ~ 0 and exit 0."""
    path = tmp_path / "dup.csv"
    path.write_text(header + "\n" + ROWS)
    with pytest.raises(PyrozooError, match=rf"^data: .*dup\.csv has repeated column name\(s\) in its header row: "
                                           rf"'{name}' \(columns {columns}\)"):
        read_table(str(path))


def test_distinct_names_that_look_like_pandas_copies_are_kept(tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text("y,y.1,t,\n" + ROWS)
    assert list(read_table(str(path)).columns) == ["y", "y.1", "t", "Unnamed: 3"]


@pytest.mark.parametrize("model", ["plce", "effect-curve", "normal-gamma", "regime-scm"])
def test_every_data_file_reader_rejects_a_repeated_header(tmp_path, model):
    """The --data readers of plce, effect-curve, normal-gamma and regime-scm share read_table, so they share the
    check."""
    path = tmp_path / "dup.csv"
    path.write_text("y,t,x1,y\n" + ROWS)
    options = {"normal-gamma": {"column": "x1"}, "regime-scm": {"graph": "x1->t->y"}}.get(model, {})
    with pytest.raises(PyrozooError, match=r"repeated column name\(s\) in its header row: 'y'"):
        registry.get(model).from_file(str(path), 0, **options)


@pytest.mark.parametrize("header,rows,fields,names", ids=["decimal-comma", "two-extra", "trailing-comma"], argvalues=[
    ("weight", "1,5\n2,25\n3,75\n2,5\n", 2, "1 column"),  # decimal commas: 1,5 read as the 5s, exit 0
    ("y,x", "1,5,2,1\n2,25,3,4\n3,75,1,9\n2,5,4,2\n", 4, "2 columns"),  # y was read from the third field
    ("y,t,x1,x2", ROWS.replace("\n", ",\n"), 5, "4 columns"),  # a trailing comma on the data rows, not the header
])
def test_rows_with_more_fields_than_the_header_are_rejected(tmp_path, header, rows, fields, names):
    """pandas takes the extra leading fields as the row index and reads every column shifted by one or more places,
    without a trace (read_table never looked at the index)."""
    path = tmp_path / "shift.csv"
    path.write_text(header + "\n" + rows)
    with pytest.raises(PyrozooError, match=rf"^data: .*shift\.csv has rows of {fields} fields but its header row names "
                                           rf"{names} \(a decimal comma, or a trailing delimiter\?\)"):
        read_table(str(path))


def test_a_trailing_delimiter_on_the_header_too_is_a_blank_column_not_a_shift(tmp_path):
    path = tmp_path / "trail.csv"
    path.write_text("y,x,\n1,5,\n2,25,\n")
    df = read_table(str(path))
    assert list(df.columns) == ["y", "x", "Unnamed: 2"] and df["y"].tolist() == [1, 2]


@pytest.mark.parametrize("model,options", [
    ("normal-gamma", {"column": "y"}),
    ("spike-slab", {"outcome": "y"}),
    ("bnn", {"outcome": "y"}),
    ("plce", {}),
    ("effect-curve", {}),
    ("regime-scm", {"graph": "x1->t->y"}),
    ("agnostic", {"target": "g", "protected": "x1"}),
])
def test_every_data_file_reader_rejects_rows_longer_than_the_header(tmp_path, model, options):
    """Every --data reader goes through read_table; a trailing comma on each data row made plce fit theta 0.68
    instead of 1.62 and normal-gamma fit column t for -o column=y."""
    path = tmp_path / "trailing.csv"
    path.write_text("y,t,x1,g\n" + ROWS.replace("\n", ",\n"))
    with pytest.raises(PyrozooError, match=r"has rows of 5 fields but its header row names 4 columns"):
        registry.get(model).from_file(str(path), 0, **options)


@pytest.mark.parametrize("sep,kind,shown", [(";", "semicolon", "';'"), ("\t", "tab", "'\\t'")])
def test_a_one_column_file_gets_the_delimiter_it_holds_as_the_hint(tmp_path, sep, kind, shown):
    """The hint said sep=';' for a tab-separated file too."""
    path = tmp_path / "other.csv"
    path.write_text(f"y{sep}t\n1{sep}2\n3{sep}4\n")
    with pytest.raises(PyrozooError, match=rf"looks {kind}-separated \(convert it, e\.g\. pandas\.read_csv\(path, "
                                           rf"sep={re.escape(shown)}\)"):
        read_table(str(path))


def test_na_spellings_are_labels_in_text_columns_and_missing_in_numeric_ones(tmp_path):
    """pandas' default NA strings made a label "NA" (North America) a missing value with no message. Now only an
    empty cell is missing in a text column; in a column of numbers NA, nan, null ... are still missing numbers, and
    numeric_column names them as missing, as before."""
    from pyrozoo.data.shipped import numeric_column

    path = tmp_path / "na.csv"
    path.write_text("y,x,region,who\n1,2,NA,None\nNA,3,EU,null\n2, nan,,n/a\n3,4,AS,x\n")
    df = read_table(str(path))
    assert df["region"].tolist()[:2] == ["NA", "EU"] and df["region"].isna().tolist() == [False, False, True, False]
    assert df["who"].tolist() == ["None", "null", "n/a", "x"]
    assert str(df["y"].dtype) == "float64" and df["y"].isna().tolist() == [False, True, False, False]
    for column, row in (("y", 1), ("x", 2)):
        with pytest.raises(PyrozooError, match=rf"^data: column '{column}' has 1 missing or non-finite value\(s\) "
                                               rf"\(first at data row {row} \(0-based, \.iloc\[{row}\]\): nan\); "
                                               rf"drop or fill them"):
            numeric_column(df, column)
    with pytest.raises(PyrozooError, match=r"^data: column 'region' has non-numeric values \(first at data row 0 "
                                           r"\(0-based, \.iloc\[0\]\): "
                                           r"'NA'\)"):
        numeric_column(df, "region")


def test_a_text_column_with_some_numbers_keeps_its_na_spelling_as_a_label(tmp_path):
    """A column is read as numbers only when every cell that is not an NA spelling is a number: one number among
    the labels (7) does not make NA missing, nor the labels unreadable."""
    path = tmp_path / "mixed.csv"
    path.write_text("y,t,region\n1,0,NA\n2,1,EU\n3,0,7\n")
    df = read_table(str(path))
    assert df["region"].tolist() == ["NA", "EU", "7"]
    assert df["y"].tolist() == [1, 2, 3]


@pytest.mark.parametrize("text,message", [
    ("x\n1\n2\n\n4\n", r"column 'x' has 1 missing or non-finite value\(s\) \(first at data row 2 "
                       r"\(0-based, \.iloc\[2\]\): nan\)"),
    ("x\n1\n  \n2\n", r"column 'x' has 1 missing or non-finite value\(s\) \(first at data row 1 "
                      r"\(0-based, \.iloc\[1\]\): nan\)"),
    ("x\n1\n\n2\nabc\n", r"column 'x' has non-numeric values \(first at data row 3 \(0-based, \.iloc\[3\]\): 'abc'\)"),
])
def test_a_blank_line_in_a_one_column_file_is_a_missing_value_at_its_own_row(tmp_path, text, message):
    """pandas skips blank lines by default: the blank cell was dropped (3 observations fitted of 4) and the rows
    after it were numbered one too low ("first at data row 3: 'abc'", which is data row 4)."""
    from pyrozoo.data.shipped import numeric_column

    path = tmp_path / "e.csv"
    path.write_text(text)
    with pytest.raises(PyrozooError, match=message):
        numeric_column(read_table(str(path)), "x", source=str(path))


@pytest.mark.parametrize("text", ["x,y\n1,2\n3,4\n", "x,y\n1,2\n3,4", "x,y\n1,2\n3,4\n\n\n",
                                  "x,y\r\n1,2\r\n3,4\r\n\r\n", "x,y\n1,2\n3,4\n,\n", "\n  \nx,y\n1,2\n3,4\n"])
def test_a_final_newline_and_blank_lines_at_either_end_add_no_rows(tmp_path, text):
    # blank lines after the last data row (and empty rows there) are what editors leave, not missing rows; the
    # integer columns stay integers
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode())
    df = read_table(str(path))
    assert list(df.columns) == ["x", "y"] and df.to_dict("list") == {"x": [1, 3], "y": [2, 4]}
    assert str(df["x"].dtype) == "int64"


def test_a_blank_line_between_rows_of_a_wider_file_is_a_row_of_missing_values(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x,y\n1,2\n\n3,4\n")
    df = read_table(str(path))
    assert df.shape == (3, 2) and df.iloc[1].isna().all() and df["x"].iloc[2] == 3


@pytest.mark.parametrize("line", ["\t", " \t ", "\t\t", "  "])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_whitespace_only_line_at_the_end_adds_no_row_and_between_rows_is_missing(tmp_path, line, newline):
    """A line of only a tab was read as a text cell '\\t': a one-column file with a trailing tab line was refused
    ("non-numeric values (first at data row 4: '\\t')") and a tab line between rows was "non-numeric", not
    missing; skipinitialspace empties only a cell of spaces."""
    from pyrozoo.data.shipped import numeric_column

    path = tmp_path / "t.csv"
    path.write_bytes(newline.join(["x", "1.5", "2.5", "3.5", line, ""]).encode())
    assert numeric_column(read_table(str(path)), "x").tolist() == [1.5, 2.5, 3.5]
    path.write_bytes(newline.join(["y,x1", "1,2", "2,3", line, "3,5", line, ""]).encode())
    df = read_table(str(path))
    assert df.shape == (4, 2) and df.iloc[3].tolist() == [3, 5]
    with pytest.raises(PyrozooError, match=r"column 'y' has 1 missing or non-finite value\(s\) \(first at data row "
                                           r"2 \(0-based, \.iloc\[2\]\): nan\)"):
        numeric_column(df, "y")


@pytest.mark.parametrize("model,options", [("normal-gamma", {"column": "y"}), ("blr", {"outcome": "y"})])
def test_every_data_file_reader_takes_a_trailing_tab_line_as_blank(tmp_path, model, options):
    path = tmp_path / "t.csv"
    path.write_text("y,x1\n" + "".join(f"{i % 5 + 0.5},{i % 3}\n" for i in range(12)) + "\t\n")
    assert registry.get(model).from_file(str(path), 0, **options) is not None


def test_a_tab_only_cell_is_missing_like_a_cell_of_spaces(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x,y,g\n1,2,a\n3,\t,\t\n5,6,b\n")
    df = read_table(str(path))
    assert str(df["y"].dtype) == "float64" and df["y"].isna().tolist() == [False, True, False]
    assert df["g"].isna().tolist() == [False, True, False]


@pytest.mark.parametrize("text", ["x,y\n\n1,2\n3,4\n", "x,y\n \t\n\n1,2\n3,4\n", "x,y\r\n\t\r\n1,2\r\n3,4\r\n",
                                  "x,y\r\r1,2\r3,4\r", "\n\t\nx,y\n\n1,2\n3,4\n\n", "\ufeff\nx,y\n\n1,2\n3,4\n"])
def test_blank_lines_between_the_header_and_the_first_data_row_add_no_rows(tmp_path, text):
    """They became a leading row of missing values ("column 'x' has 1 missing ... (first at data row 1: nan)"),
    although blank lines at the start of the data are not data rows; the integer columns stay integers."""
    path = tmp_path / "h.csv"
    path.write_bytes(text.encode())
    df = read_table(str(path))
    assert df.to_dict("list") == {"x": [1, 3], "y": [2, 4]} and str(df["x"].dtype) == "int64"


def test_rows_after_leading_blank_lines_keep_their_data_row_numbers_and_checks(tmp_path):
    from pyrozoo.data.shipped import numeric_column

    path = tmp_path / "h.csv"
    path.write_text("x\n\n\t\n1\n\t\n2\nabc\n")
    with pytest.raises(PyrozooError, match=r"column 'x' has non-numeric values \(first at data row 3 "
                                           r"\(0-based, \.iloc\[3\]\): 'abc'\)"):
        numeric_column(read_table(str(path)), "x")
    path.write_text("weight\n\n1,5\n2,25\n")  # decimal commas: the shift check, not a tokenizer error
    with pytest.raises(PyrozooError, match=r"has rows of 2 fields but its header row names 1 column"):
        read_table(str(path))
    path.write_text("x,y\n\n\t\n")
    with pytest.raises(PyrozooError, match=r"has a header row but no data rows"):
        read_table(str(path))


@pytest.mark.parametrize("text", ["", "\n", "\n\n", " \t\r\n\r\n", "\r\r", "\ufeff\n"])
def test_a_file_of_only_blank_lines_has_no_header_row(tmp_path, text):
    """It said "could not read b.csv as CSV (Passed header=2 but only 2 lines in file)", a header never passed."""
    path = tmp_path / "b.csv"
    path.write_bytes(text.encode())
    with pytest.raises(PyrozooError, match=r"^data: .*b\.csv has no header row \(the file is empty or blank\)"):
        read_table(str(path))


@pytest.mark.parametrize("text,names", [
    ('y,width"in\n\n1,2\n3,4\n', ["y", 'width"in']),  # a quote inside an unquoted name is a character
    ('y,a"b"c\n\t\n1,2\n3,4\n', ["y", 'a"b"c']),
    ('"a\nb",x\n\n1,2\n3,4\n', ["a\nb", "x"]),  # a quoted name over two lines is one header row
    ('y, "b\r\nc"\r\n\r\n\r\n1,2\r\n3,4\r\n', ["y", "b\r\nc"]),
    ('\n"a\n\nb",x\n\n1,2\n3,4\n', ["a\n\nb", "x"]),  # a blank line inside the quoted name is not one after it
])
def test_blank_lines_after_a_header_with_quotes_add_no_rows(tmp_path, text, names):
    """An odd number of quotes on the header line was taken for a quoted name running onto the next line, so the
    blank lines after it were not skipped ("column 'y' has 1 missing ... (first at data row 1: nan)"), and after a
    quoted name that did span two lines they were not looked for: both read a leading row of missing values."""
    path = tmp_path / "q.csv"
    path.write_bytes(text.encode())
    df = read_table(str(path))
    assert list(df.columns) == names
    assert df.to_dict("list") == {names[0]: [1, 3], names[1]: [2, 4]} and str(df[names[0]].dtype) == "int64"


def test_data_rows_in_messages_are_0_based_as_obs_id_and_the_docs(tmp_path, capsys):
    """QA: "data row" in --data messages was 1-based (a NaN at .iloc[5] was "first at data row 6"), while docs/bnn.md,
    obs_id, meta["rows"] and agnostic's split_rows number data rows from 0. Every reader now names the 0-based row,
    for a feature, the outcome, the agnostic reader and the CLI alike, and that row of the file holds the value."""
    import numpy as np
    import pandas as pd

    from pyrozoo.cli import main
    from pyrozoo.data.agnostic_file import read_agnostic_file
    from pyrozoo.data.regression_file import read_regression_file

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=30), "b": rng.normal(size=30), "y": rng.normal(size=30),
                       "g": ["u", "v"] * 15})
    for column in ("a", "y"):
        bad = df.copy()
        bad.loc[5, column] = np.nan
        path = tmp_path / f"miss_{column}.csv"
        bad.drop(columns="g").to_csv(path, index=False)
        assert np.isnan(pd.read_csv(path).iloc[5][column])
        message = (rf"column '{column}' has 1 missing or non-finite value\(s\) \(first at data row 5 \(0-based, "
                   r"\.iloc\[5\]\): nan\)")
        with pytest.raises(PyrozooError, match=message):
            read_regression_file(str(path), outcome="y")
        assert main(["run", "bnn", "--data", str(path), "-o", "outcome=y", "--steps", "2", "-o", "swa_epochs=2",
                     "--device", "cpu", "--out", str(tmp_path / "r")]) == 2
        assert re.search(message, capsys.readouterr().err)
    text = df.assign(b=df["b"].astype(object))
    text.loc[7, "b"] = "abc"
    path = tmp_path / "text.csv"
    text.to_csv(path, index=False)
    with pytest.raises(PyrozooError, match=r"column 'b' has non-numeric values \(first at data row 7 \(0-based, "
                                           r"\.iloc\[7\]\): 'abc'\)"):
        read_agnostic_file(str(path), 0, target="g", protected="y", features="a,b")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_a_file_not_in_utf8_is_one_error_saying_to_save_it_as_utf8(tmp_path, encoding):
    """QA: a Latin-1 or UTF-16 file failed with only the codec's "'utf-8' codec can't decode byte 0xf6"; the error
    now says that pyrozoo reads CSV files as UTF-8 and how to convert the file."""
    path = tmp_path / "k.csv"
    path.write_bytes("y,x,city\n1,2,K\u00f6ln\n3,4,Wien\n".encode(encoding))
    with pytest.raises(PyrozooError) as err:
        read_table(str(path))
    message = str(err.value)
    assert message.startswith(f"data: could not read {path} as CSV ('utf-8' codec can't decode byte ")
    assert message.endswith("; pyrozoo reads CSV files as UTF-8: save it as UTF-8 (a spreadsheet's 'CSV UTF-8', or "
                            "pandas.read_csv(path, encoding=...).to_csv(new_path, index=False))")
    assert "\n" not in message
    path.write_bytes("y,x,city\n1,2,K\u00f6ln\n3,4,Wien\n".encode("utf-8-sig"))  # UTF-8 with a BOM is read
    assert read_table(str(path))["city"].tolist() == ["K\u00f6ln", "Wien"]
