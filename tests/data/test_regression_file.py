"""The shared reader of a user's regression table (``pyrozoo run MODEL --data my.csv -o outcome=y``)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from pyrozoo.data.regression_file import parse_features, read_regression_file, standardize_table
from pyrozoo.errors import PyrozooError

MODELS = ["spike-slab", "blr", "gp", "sparse-gp", "bnn"]


def _csv(tmp_path, name="reg.csv", n=30, **extra):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 3))
    df = pd.DataFrame(X, columns=["a", "b", "c"]).assign(y=X @ [1.5, 0.0, -2.0] + rng.standard_normal(n), **extra)
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path, df


def test_default_features_are_the_other_columns_in_file_order(tmp_path):
    path, df = _csv(tmp_path)
    X, y = read_regression_file(str(path), outcome="y")
    assert list(X.columns) == ["a", "b", "c"]
    np.testing.assert_allclose(X.to_numpy(), df[["a", "b", "c"]].to_numpy())
    np.testing.assert_allclose(y, df["y"].to_numpy())


def test_named_features_are_taken_in_the_order_given_and_text_columns_left_out_are_fine(tmp_path):
    path, _ = _csv(tmp_path, note=["u"] * 30)
    X, _ = read_regression_file(str(path), outcome="y", features=" c, a")
    assert list(X.columns) == ["c", "a"]
    assert parse_features(["b", " c "]) == ["b", "c"]


def test_standardize_table_uses_population_moments(tmp_path):
    path, _ = _csv(tmp_path)
    X, y = read_regression_file(str(path), outcome="y")
    Xs, ys, m = standardize_table(X, y)
    np.testing.assert_allclose(Xs.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Xs.std(axis=0, ddof=0), 1)
    assert np.std(ys) == pytest.approx(1) and m["y_mean"] == pytest.approx(np.mean(y))


@pytest.mark.parametrize("kwargs,extra,message", [
    ({}, {}, r"outcome: expected the name of the outcome column of .* \(-o outcome=COLUMN\), got ''"),
    ({"outcome": "zz"}, {}, r"outcome: data .* has no column\(s\) 'zz'; columns are a, b, c, y"),
    ({"outcome": "y", "features": "a,q"}, {}, r"features: data .* has no column\(s\) 'q'"),
    ({"outcome": "y", "features": "a,y"}, {}, r"features: 'y' is the outcome column"),
    ({"outcome": "y", "features": "a,a"}, {}, r"features: .*'a'"),
    ({"outcome": "y"}, {"note": ["u"] * 30}, r"column\(s\) 'note' are not numeric; .* -o features=a,b"),
    ({"outcome": "y", "features": "a,note"}, {"note": ["u"] * 30},
     r"column 'note' has non-numeric values \(first at data row 0 \(0-based, \.iloc\[0\]\): 'u'\)"),
    ({"outcome": "y"}, {"k": [1.0] * 30}, r"column\(s\) 'k' are constant"),
])
def test_bad_tables_and_options_are_named(kwargs, extra, message, tmp_path):
    path, _ = _csv(tmp_path, **extra)
    with pytest.raises(PyrozooError, match=message):
        read_regression_file(str(path), **kwargs)


def test_missing_values_are_named_by_column_and_data_row_and_few_rows_refused(tmp_path):
    path, df = _csv(tmp_path)
    df.loc[4, "b"] = np.nan
    df.to_csv(path, index=False)
    with pytest.raises(PyrozooError, match=r"column 'b' has 1 missing or non-finite value\(s\) \(first at data row 4 "
                                           r"\(0-based, \.iloc\[4\]\)"):
        read_regression_file(str(path), outcome="y")
    short, _ = _csv(tmp_path, "short.csv", n=2)
    with pytest.raises(PyrozooError, match="expected at least 3 data rows, got 2"):
        read_regression_file(str(short), outcome="y")


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("flags,message,extra", [
    ([], r"outcome: expected the name of the outcome column", {}),
    (["-o", "outcome=zz"], r"has no column\(s\) 'zz'", {}),
    (["-o", "outcome=y"], r"column 'b' has 1 missing or non-finite value\(s\) \(first at data row 2 "
                          r"\(0-based, \.iloc\[2\]\)", {"nan": True}),
    (["-o", "outcome=y"], r"column\(s\) 'note' are not numeric", {"note": ["u"] * 30}),
    (["-o", "outcome=y", "-o", "n=10"], r"options: n applies only to the simulated data; with a data file", {}),
])
def test_bad_input_from_the_cli_is_one_line_exit_2_and_no_run_directory(model, flags, message, extra, tmp_path,
                                                                        capsys):
    from pyrozoo.cli import main

    extra = dict(extra)  # parametrize shares the dict between the models
    nan = extra.pop("nan", False)
    path, df = _csv(tmp_path, **extra)
    if nan:
        df.loc[2, "b"] = np.nan
        df.to_csv(path, index=False)
    out = tmp_path / "run"
    assert main(["run", model, "--data", str(path), *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and not out.exists()
    assert re.search(message, err), err


@pytest.mark.parametrize("model", MODELS)
def test_file_options_without_a_data_file_are_refused(model, tmp_path, capsys):
    from pyrozoo.cli import main

    out = tmp_path / "run"
    assert main(["run", model, "-o", "outcome=y", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "options: outcome applies only to a data file (--data)" in err and not out.exists()


@pytest.mark.parametrize("features", [",", "a,,b", " , "])
def test_features_with_an_empty_name_are_refused_not_read_as_every_column(tmp_path, features):
    path, _ = _csv(tmp_path)
    with pytest.raises(PyrozooError, match="^features: expected a column name between each pair of commas"):
        read_regression_file(str(path), outcome="y", features=features)


@pytest.mark.parametrize("value", [3.0, 0.1])
def test_a_constant_outcome_is_nothing_to_fit_not_a_feature_to_leave_out(tmp_path, value):
    path, df = _csv(tmp_path)
    df.assign(y=value).to_csv(path, index=False)
    with pytest.raises(PyrozooError, match=rf"^outcome 'y': expected an outcome that varies, got a constant "
                                           rf"\({value!r}\) in data .*; nothing to fit$"):
        read_regression_file(str(path), outcome="y", features="a,b,c")


@pytest.mark.parametrize("model", MODELS)
def test_a_constant_outcome_from_the_cli_gets_no_feature_advice(model, tmp_path, capsys):
    from pyrozoo.cli import main

    path, df = _csv(tmp_path)
    df.assign(y=3.0).to_csv(path, index=False)
    out = tmp_path / "run"
    assert main(["run", model, "--data", str(path), "-o", "outcome=y", "-o", "features=a,b,c",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "outcome 'y': expected an outcome that varies, got a constant (3.0)" in err and not out.exists()
    assert "features" not in err


def test_the_columns_listed_in_a_missing_column_error_are_quoted_when_a_name_would_be_ambiguous():
    """"columns are y, t, a,b, x2" read as five names; a comma, a blank or an edge space in a name quotes them all."""
    from pyrozoo.data.regression_file import check_columns_exist, listed_columns

    assert listed_columns(["y", "t", "x1"]) == "y, t, x1"
    assert listed_columns(["y", "a,b", "x2"]) == "'y', 'a,b', 'x2'"
    assert listed_columns(["y", " x", "z"]) == "'y', ' x', 'z'"
    with pytest.raises(PyrozooError, match=r"^outcome: data has no column\(s\) 'q'; columns are 'y', 'a,b'$"):
        check_columns_exist("data", ["y", "a,b"], {"outcome": ["q"]})


def test_a_trailing_comma_or_an_index_column_gets_its_own_hint(tmp_path):
    """The blr/gp/spike-slab reader called any blank header 'a file written by DataFrame.to_csv with its index?',
    also the empty last column of lines ending in a comma; it now says which (the plce reader's rule, shared)."""
    path, df = _csv(tmp_path)
    trailing = tmp_path / "trailing.csv"
    trailing.write_text("".join(line + ",\n" for line in path.read_text().splitlines()))
    with pytest.raises(PyrozooError, match=r"its lines end in a trailing comma \(column 5, the last, has no name in "
                                           r"its header and no value in any row\): remove the trailing commas or "
                                           r"name the features with -o features=a,b$"):
        read_regression_file(str(trailing), outcome="y")
    indexed = tmp_path / "indexed.csv"
    df.to_csv(indexed)
    with pytest.raises(PyrozooError, match=r"column 1 has no name in its header \(a file written by "
                                           r"DataFrame.to_csv with its index\?\): write it with index=False or name"):
        read_regression_file(str(indexed), outcome="y")



def test_an_integer_beyond_int64_in_a_feature_column_is_read_as_a_number(tmp_path):
    """QA: a cell 99999999999999999999 (beyond int64) in a column of integers made pandas keep the column as text,
    and the default features were refused as "column(s) 'k' are not numeric"; a column whose cells are all numbers
    is read as floats now, while a column with a word in it is still refused."""
    path, df = _csv(tmp_path, k=np.arange(30))
    text = path.read_text().split("\n")
    text[4] = text[4].rsplit(",", 1)[0] + ",99999999999999999999"
    path.write_text("\n".join(text))
    X, _ = read_regression_file(str(path), outcome="y")
    assert list(X.columns) == ["a", "b", "c", "k"] and X["k"].iloc[3] == 1e20
    np.testing.assert_array_equal(X["k"].drop(index=3).to_numpy(), np.delete(np.arange(30.0), 3))
    text[5] = text[5].rsplit(",", 1)[0] + ",many"
    path.write_text("\n".join(text))
    with pytest.raises(PyrozooError, match=r"column\(s\) 'k' are not numeric"):
        read_regression_file(str(path), outcome="y")
