"""The shared input checks accept numpy scalars and name the argument when they reject a value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.validation import check_option_types, check_probability, check_single_names, parse_names


@pytest.mark.parametrize("value", [0.05, np.float32(0.1), np.float64(0.5), 0.999])
def test_probability_accepts_python_and_numpy_reals(value):
    check_probability("alpha", value, open_interval=True)


@pytest.mark.parametrize("value", [0.0, 1.0, -0.1, 1.5, float("nan"), True, "0.1", None])
def test_probability_outside_the_open_interval_is_a_clear_error(value):
    with pytest.raises(PyrozooError, match=r"alpha: expected a number in \(0, 1\)"):
        check_probability("alpha", value, open_interval=True)


def test_closed_interval_keeps_its_ends():
    check_probability("p", 0)
    check_probability("p", 1.0)
    with pytest.raises(PyrozooError, match=r"p: expected a number in \[0, 1\]"):
        check_probability("p", 1.01)


DEFAULTS = {"flag": False, "count": 3, "scale": 1.0, "kind": "rbf"}


@pytest.mark.parametrize("given", [{"flag": True}, {"count": 7}, {"scale": 2}, {"scale": 0.5}, {"scale": [1.0, 2]},
                                   {"kind": "matern"}, {"kind": 3}])
def test_option_types_accept_values_of_the_defaults_kind(given):
    # strings are left to the model's own choice check; lists only for the declared per-column options
    assert check_option_types("option", given, DEFAULTS, list_options=("scale",)) == given


def test_integral_floats_become_ints_and_lists_need_a_declaration():
    out = check_option_types("option", {"count": 30.0, "scale": 2.0}, DEFAULTS)
    assert out == {"count": 30, "scale": 2.0} and type(out["count"]) is int
    with pytest.raises(PyrozooError, match=r"scale: option expects a number \(default 1.0\), got \[1.0, 2\]"):
        check_option_types("option", {"scale": [1.0, 2]}, DEFAULTS)


@pytest.mark.parametrize(("given", "match"), [
    ({"flag": "maybe"}, "flag: option expects true or false"),
    ({"flag": 1}, "flag: option expects true or false"),
    ({"count": "abc"}, "count: option expects an integer"),
    ({"count": 1.5}, "count: option expects an integer"),
    ({"count": True}, "count: option expects an integer"),
    ({"scale": "abc"}, "scale: option expects a number"),
    ({"scale": False}, "scale: option expects a number"),
    ({"scale": []}, "scale: option expects a number"),
    ({"scale": [1.0, "x"]}, "scale: option expects a number"),
])
def test_option_of_the_wrong_kind_is_a_clear_error(given, match):
    with pytest.raises(PyrozooError, match=match):
        check_option_types("option", given, DEFAULTS, list_options=("scale",))


def test_bool_flags_take_python_and_numpy_bools_only():
    from pyrozoo.validation import check_bool

    for ok in (True, False, np.bool_(True)):
        check_bool("flag", ok)
    for bad in ("no", 1, 0.0, None):
        with pytest.raises(PyrozooError, match="flag: expected True or False"):
            check_bool("flag", bad)


@pytest.mark.parametrize("value", [0.01, 3, np.float32(0.5), np.int64(2), [1.0, 2], np.array([0.5, 1.5]),
                                   torch.tensor(2.0)])
def test_positive_accepts_numbers_numpy_scalars_and_arrays(value):
    from pyrozoo.validation import check_positive

    check_positive("lr", value)


@pytest.mark.parametrize("value", ["0.01", b"1", True, np.bool_(True), None, [1.0, "2"], ["1", "2"], [True, False],
                                   0.0, -1, float("nan"), float("inf"), [1.0, -2.0], 1 + 2j])
def test_positive_refuses_text_bools_and_non_positive_values(value):
    # numeric strings used to be converted by float() and passed, then failed inside torch (Adam's lr <= check)
    from pyrozoo.validation import check_positive

    with pytest.raises(PyrozooError, match=r"lr: expected a finite value > 0"):
        check_positive("lr", value)


def test_text_is_named_as_a_string():
    from pyrozoo.validation import check_positive

    with pytest.raises(PyrozooError, match=r"lr: expected a finite value > 0, got the string '0\.01'"):
        check_positive("lr", "0.01")


def test_real_is_one_finite_number():
    from pyrozoo.validation import check_real

    assert check_real("mu0", np.float32(1.5)) == 1.5 and check_real("mu0", torch.tensor(-2.0)) == -2.0
    assert check_real("mu0", 3) == 3.0
    for bad in ("1.0", True, None, float("nan"), [1.0], np.zeros(2)):
        with pytest.raises(PyrozooError, match="mu0: expected a finite number"):
            check_real("mu0", bad)


def test_float_dtype_refuses_integer_dtypes_and_strings():
    from pyrozoo.validation import as_tensor, check_float_dtype

    for ok in (torch.float32, torch.float64):
        assert check_float_dtype("dtype", ok) is ok
    for bad in (torch.int64, torch.bool, "float32", np.float64, None):
        with pytest.raises(PyrozooError, match="dtype: expected a floating torch dtype"):
            check_float_dtype("dtype", bad)
    with pytest.raises(PyrozooError, match="dtype: expected a floating torch dtype"):
        as_tensor("x", [0.5, 1.5], dtype=torch.int64)  # would have truncated to [0, 1]


def test_path_and_text_checks():
    from pathlib import Path

    from pyrozoo.validation import check_path, check_text

    check_path("data", "a.csv")
    check_path("data", Path("a.csv"))
    for bad in (3, None, "", "  ", ["a.csv"]):
        with pytest.raises(PyrozooError, match="data: expected a path"):
            check_path("data", bad)
    check_text("dataset", "boston")
    for bad in (1, "", None):
        with pytest.raises(PyrozooError, match="dataset: expected a name"):
            check_text("dataset", bad)


def test_dataset_check_names_the_missing_entries():
    from pyrozoo.data.dataset import Dataset
    from pyrozoo.validation import check_dataset

    ds = Dataset("blr-sim", inputs={"x": 1}, observed={"y": 2})
    check_dataset("dataset", ds, "blr", inputs=("x",), observed=("y",))
    with pytest.raises(PyrozooError, match=r"dataset: expected a gp dataset \(built by make_gp_dataset\); "
                                           r"'blr-sim' lacks X, kernel_name"):
        check_dataset("dataset", ds, "gp", inputs=("X", "kernel_name"), observed=("y",), made_by="make_gp_dataset")
    with pytest.raises(PyrozooError, match="dataset: expected a gp dataset, got dict"):
        check_dataset("dataset", {"X": 1}, "gp", inputs=("X",))


def test_check_positive_scalar_refuses_lists_and_keeps_numpy_scalars():
    from pyrozoo.config import RunConfig
    from pyrozoo.validation import check_positive

    for ok in (0.5, 2, np.float32(0.5), torch.tensor(0.5)):
        check_positive("v", ok, scalar=True)
    check_positive("v", [0.5, 1.0])  # arrays are fine where one value per column is meant
    for bad in ([0.5], [], "0.5"):
        with pytest.raises(PyrozooError, match="v: expected a finite value > 0"):
            check_positive("v", bad, scalar=True)
    with pytest.raises(PyrozooError, match=r"lr: expected a finite value > 0, got \[0.01\]"):
        RunConfig(model="normal-gamma", lr=[0.01]).validate()  # failed inside torch's optimizer before


def test_as_tensor_refuses_text_that_numpy_would_read_as_numbers():
    import pandas as pd

    from pyrozoo.validation import as_tensor

    for text in (["1", "2"], np.array(["1.5"]), pd.DataFrame({"a": ["1", "2"]}), [1.0, "2"]):
        with pytest.raises(PyrozooError, match="x: expected a numeric array, got text values"):
            as_tensor("x", text)
    assert as_tensor("x", pd.DataFrame({"a": [1, 2]})).shape == (2, 1)
    assert torch.isnan(as_tensor("x", np.array([1.0, None], dtype=object))[1])  # missing values stay for check_finite


def test_check_interval_takes_real_numbers_in_range_and_says_the_range():
    from pyrozoo.validation import check_interval

    assert check_interval("momentum", np.float32(0.5), 0.0, 1.0, high_open=True) == 0.5
    assert check_interval("clip_norm", 0, 0.0) == 0.0 and isinstance(check_interval("c", 3, 0.0), float)
    for value in (1.0, True, float("nan"), "0.5", None, -0.1):
        with pytest.raises(PyrozooError, match=r"^momentum: expected a number in \[0, 1\), got "):
            check_interval("momentum", value, 0.0, 1.0, high_open=True)
    with pytest.raises(PyrozooError, match=r"^clip_norm: expected a number >= 0 \(0: no clipping\), got -1$"):
        check_interval("clip_norm", -1, 0.0, hint=" (0: no clipping)")
    with pytest.raises(PyrozooError, match=r"^w: expected a number in \(0, 1\], got 0$"):
        check_interval("w", 0, 0.0, 1.0, low_open=True)


def test_regression_data_with_pandas_labels_in_another_order_is_an_error():
    """fit_sparse_gp / fit_bnn paired a DataFrame's rows with a Series' values by position even when their labels
    were in another order (a QA pass: log marginal -293.7 instead of -230.2); check_xy now refuses that, as the
    causal estimators do, and keeps equal indexes and NumPy next to pandas."""
    import pandas as pd

    from pyrozoo.models.sparse_gp import fit_sparse_gp
    from pyrozoo.validation import check_xy

    df = pd.DataFrame({"a": np.arange(6.0), "b": np.arange(6.0) ** 2}, index=range(100, 106))
    ys = pd.Series(np.arange(6.0), index=df.index)
    X, y = check_xy(df, ys)
    assert X.shape == (6, 2) and torch.equal(y, torch.arange(6.0, dtype=torch.float64))
    check_xy(df, ys.to_numpy())
    with pytest.raises(PyrozooError, match=r"^X, y: expected pandas inputs with the same index .* the same labels "
                                           r"in another order"):
        check_xy(df.iloc[::-1], ys)
    with pytest.raises(PyrozooError, match="same index"):
        fit_sparse_gp(df.iloc[::-1], ys, df.iloc[:3], steps=0)


def test_check_feature_names_refuses_other_or_reordered_columns_only():
    """The shared check of gp, sparse-gp, bnn and spike-slab: a DataFrame's string column names must be the recorded
    ones, in order; arrays, tensors, DataFrames without string names and unrecorded names pass (by position)."""
    import pandas as pd

    from pyrozoo.validation import check_feature_names

    df = pd.DataFrame(np.zeros((2, 2)), columns=["a", "b"])
    for ok, fitted in ((df, ["a", "b"]), (df, np.array(["a", "b"], dtype=object)), (df, None),
                       (df.to_numpy(), ["a", "b"]), (torch.zeros(2, 2), ["a", "b"]),
                       (pd.DataFrame(np.zeros((2, 2))), ["a", "b"])):
        check_feature_names(ok, fitted)
    with pytest.raises(PyrozooError, match=r"^Xnew: expected the columns seen in X, in that order, \['a', 'b'\]; got "
                                           r"\['b', 'a'\] \(the same names in another order\)$"):
        check_feature_names(df[["b", "a"]], ["a", "b"], name="Xnew", seen="in X")
    with pytest.raises(PyrozooError, match=r"^X: expected the columns seen in fit, .* \(missing \['b'\], unexpected "
                                           r"\['c'\]\)$"):
        check_feature_names(df.rename(columns={"b": "c"}), ["a", "b"])
    with pytest.raises(PyrozooError, match=r"missing \['c'\], unexpected \[\]"):
        check_feature_names(df, ["a", "b", "c"])


def test_feature_names_refuses_a_repeated_name():
    import pandas as pd

    from pyrozoo.validation import feature_names

    assert feature_names(pd.DataFrame(np.zeros((2, 2)), columns=[0, 0])) is None  # no string names: none kept
    with pytest.raises(PyrozooError, match="^X_test: 'a' given more than once; name each column once$"):
        feature_names(pd.DataFrame(np.zeros((2, 3)), columns=["a", "b", "a"]), "X_test")


def test_check_xy_refuses_categorical_columns_and_says_which_values_are_missing():
    """Integer categories passed as amounts in the regression families (gp, sparse-gp, bnn, active learning); a
    nullable column with pd.NA failed with "float() argument must be ... NAType". Bools are 0/1, as in the causal
    estimators' covariate_matrix."""
    import pandas as pd

    from pyrozoo.validation import check_xy

    df = pd.DataFrame({"a": np.arange(6.0), "b": np.arange(6.0) ** 2})
    y = np.arange(6.0)
    with pytest.raises(PyrozooError, match=r"^X: expected numbers, got categorical column\(s\) \['c'\] \(categories "
                                           r"are labels, not amounts\); encode categories, e.g. with pd.get_dummies"):
        check_xy(df.assign(c=pd.Categorical([1, 2] * 3)), y)
    with pytest.raises(PyrozooError, match=r"^y: expected numbers, got a pandas categorical .*\.astype\(float\)"):
        check_xy(df, pd.Series(pd.Categorical([1, 2] * 3)))
    with pytest.raises(PyrozooError, match=r"^X: expected numbers, got text values in column 'c'"):
        check_xy(df.assign(c=["u"] * 6), y)
    with pytest.raises(PyrozooError, match=r"^X: expected no missing values, found 1 \(pd.NA or NaN, the first at "
                                           r"row 5, column 'b'\); drop or impute them first$"):
        check_xy(df.astype("Float64").mask(df > 20), y)
    with pytest.raises(PyrozooError, match=r"^y: expected no missing values, found 2 .*the first at row 4\)"):
        check_xy(df, pd.Series(y).astype("Float64").mask(pd.Series(y) > 3.5))
    with pytest.raises(PyrozooError, match=r"^y: expected no missing values, found 2 .*the first at row 4\)"):
        check_xy(df, pd.Series(y).astype("Int64").mask(pd.Series(y) > 3.5))
    with pytest.raises(PyrozooError, match=r"^X: expected no missing values, found 1 .*row 2, column 'a'\)"):
        check_xy(df.mask(df == 2.0), y)  # NaN in a pandas object is a missing value too
    labelled = df.set_axis([f"r{i}" for i in range(6)])  # the row's label, not its position
    with pytest.raises(PyrozooError, match=r"^X: expected no missing values, found 1 .*row 'r2', column 'a'\)"):
        check_xy(labelled.mask(labelled == 2.0), pd.Series(y, index=labelled.index))
    X, _ = check_xy(df.assign(c=[True, False] * 3), y)
    assert X[:2, 2].tolist() == [1.0, 0.0]
    X, _ = check_xy(df.astype("Float64"), pd.Series(y, dtype="Float64"))  # nullable, nothing missing: fine
    assert X.dtype == torch.float64 and X.shape == (6, 2)


def test_as_tensor_and_check_xy_refuse_complex_numbers():
    """A complex array, tensor or list became float64 with only a ComplexWarning, its imaginary part dropped; every
    model converting through as_tensor (check_xy included) now refuses it, naming the argument and the dtype."""
    import pandas as pd

    from pyrozoo.validation import as_tensor, check_xy

    for value, dtype in ((np.ones((3, 2)) + 1j, "complex128"), (torch.ones(3, 2, dtype=torch.complex64), "complex64"),
                         ([[1 + 0j, 2.0], [3.0, 4.0]], "complex128"), (np.ones(3, dtype=np.complex64), "complex64"),
                         (pd.Series([1.0, 2.0]) + 0j, "complex128")):
        with pytest.raises(PyrozooError, match=rf"^X: expected real numbers, got {dtype}$"):
            as_tensor("X", value)
    X, y = np.ones((4, 2)), np.arange(4.0)
    with pytest.raises(PyrozooError, match=r"^y: expected real numbers, got complex128$"):
        check_xy(X, y + 0j)
    with pytest.raises(PyrozooError, match=r"^X: expected real numbers, got complex128 in column 'b'$"):
        check_xy(pd.DataFrame({"a": y, "b": y + 1j}), y)
    assert as_tensor("X", torch.ones(2, dtype=torch.float32)).dtype == torch.float32  # real input as before
    assert as_tensor("X", [1, 2]).tolist() == [1.0, 2.0]


@pytest.mark.parametrize("value, names", [("", []), (None, []), ("  ", []), (" c, a", ["c", "a"]),
                                          (["b", " c "], ["b", "c"]), ([1, 2], ["1", "2"])])
def test_parse_names_reads_text_or_a_list_and_empty_names_none(value, names):
    assert parse_names("features", value) == names


@pytest.mark.parametrize("value, match", [
    (",", r"^features: expected a column name between each pair of commas, got ','$"),
    ("a,,b", r"^features: expected a column name between each pair of commas, got 'a,,b'$"),
    (["a", ""], r"^features: expected a column name between each pair of commas"),
    ("a, b, a", r"^features: 'a' given more than once; name each column once$"),
    (3, r"^features: expected column names, comma-separated \(-o features=a,b\) or a list, got 3$"),
    ([True], r"^features: expected column names"),
])
def test_parse_names_refuses_empty_items_repeats_and_other_types(value, match):
    with pytest.raises(PyrozooError, match=match):
        parse_names("features", value)


def _frame():
    import pandas as pd

    rng = np.random.default_rng(0)
    return pd.DataFrame({"x1": rng.normal(size=6), "x2": rng.normal(size=6)}, index=[f"r{i}" for i in range(6)])


def test_text_in_a_dataframe_is_named_by_its_column():
    """make_agnostic_data and blr's make_dataset said "got text values (e.g. 't')", naming no column."""
    from pyrozoo.validation import as_tensor

    with pytest.raises(PyrozooError, match=r"^x: expected a numeric array, got text values in column 's' \(e\.g\. "
                                           r"'t'\)"):
        as_tensor("x", _frame().assign(s="t"))
    with pytest.raises(PyrozooError, match=r"^x: expected a numeric array, got text values \(e\.g\. 't'\)"):
        as_tensor("x", np.array([["t", "1"]]))  # no columns to name


def test_check_finite_names_pandas_labels_when_given():
    """PLCE and EffectCurve gave "NaN at index (3, 0)" where the other estimators named row and column."""
    from pyrozoo.validation import check_finite

    X = _frame()
    X.iloc[3, 1] = np.inf
    with pytest.raises(PyrozooError, match=r"\(inf at row 'r3', column 'x2'\)$"):
        check_finite("X", X.to_numpy(), labels=X)
    with pytest.raises(PyrozooError, match=r"\(inf at row 'r3'\)$"):
        check_finite("y", X["x2"].to_numpy(), labels=X["x2"])
    with pytest.raises(PyrozooError, match=r"\(inf at index \(3, 1\)\)$"):
        check_finite("X", X.to_numpy())


def test_a_list_option_given_as_comma_text_says_how_to_write_a_list():
    """``-o lengthscale=1,2`` reaches the check as the text '1,2' (not TOML); the error showed neither that nor the
    working form ``[1,2]``. Options that take no list keep the plain message."""
    with pytest.raises(PyrozooError, match=r"^scale: option expects a number or a list of numbers, written in "
                                           r"brackets as \[1,2\] \(default 1.0\), got '1,2'$"):
        check_option_types("option", {"scale": "1,2"}, DEFAULTS, list_options=("scale",))
    with pytest.raises(PyrozooError, match=r"^scale: option expects a number \(default 1.0\), got '1,2'$"):
        check_option_types("option", {"scale": "1,2"}, DEFAULTS)


def test_gp_cli_list_option_error_shows_the_bracket_form(tmp_path, capsys):
    """The reported command, ``pyrozoo run gp --data f.csv -o outcome=y -o lengthscale=1,2``, fails before any
    work with the bracket form in its message (and writes no run directory)."""
    from pyrozoo.cli import main

    data = tmp_path / "my2.csv"
    data.write_text("a,b,y\n0.1,0.2,0.3\n-0.1,1.1,0.6\n0.5,-0.3,0.1\n")
    out = tmp_path / "run"
    args = ["run", "gp", "--data", str(data), "-o", "outcome=y", "-o", "lengthscale=1,2", "--out", str(out)]
    assert main(args) == 2
    assert ("lengthscale: option of gp expects a number or a list of numbers, written in brackets as [1,2] "
            "(default 1.0), got '1,2'") in capsys.readouterr().err
    assert not out.exists()


def test_an_option_naming_one_column_takes_one_name():
    """``-o 'outcome=[1]'`` reached plce's reader as a list and failed with a raw 'unhashable type' TypeError."""
    with pytest.raises(PyrozooError, match=r"^outcome: expected one column name, got \[1\]$"):
        check_single_names({"outcome": [1], "treatment": "t"}, ("outcome", "treatment"))
    check_single_names({"outcome": "re78", "treatment": None, "controls": ["a", "b"]}, ("outcome", "treatment"))


def test_plce_cli_refuses_a_list_as_a_column_name(tmp_path, capsys):
    from pyrozoo.cli import main

    out = tmp_path / "run"
    assert main(["run", "plce", "--dataset", "lalonde", "-o", "outcome=[1]", "--out", str(out)]) == 2
    assert "outcome: expected one column name, got [1]" in capsys.readouterr().err and not out.exists()
    # a list of names where the option names one column: a raw 'unhashable type' TypeError before
    for model, flags in (("plce", ["--dataset", "lalonde", "-o", 'outcome=["x1", "re78"]']),
                         ("effect-curve", ["--data", str(_two_column_csv(tmp_path)), "-o", 'outcome=["x1"]', "-o",
                                           "treatment=x2"])):
        assert main(["run", model, *flags, "--out", str(out)]) == 2
        assert "outcome: expected one column name, got ['x1'" in capsys.readouterr().err and not out.exists()


def _two_column_csv(tmp_path):
    path = tmp_path / "xy.csv"
    rng = np.random.default_rng(0)
    pd.DataFrame({"x1": rng.standard_normal(40), "x2": rng.standard_normal(40)}).to_csv(path, index=False)
    return path


def test_a_tensor_that_requires_grad_passes_the_column_checks():
    """check_numeric_columns (reached from check_xy, PLCE and EffectCurve) called np.asarray on the tensor: torch's
    raw "Can't call numpy() on Tensor that requires grad". A tensor holds no text, so text_items is empty."""
    from pyrozoo.validation import as_tensor, check_numeric_columns, check_xy, text_items

    X = torch.tensor(np.random.default_rng(0).standard_normal((6, 2)), requires_grad=True)
    assert text_items(X) == []
    check_numeric_columns("X", X)
    Xt, yt = check_xy(X, X[:, 0], detach=True)
    assert not Xt.requires_grad and not yt.requires_grad and torch.equal(Xt, X.detach())
    # without detach the graph is kept: the GP objectives are differentiated through their inputs
    assert as_tensor("X", X).requires_grad and not as_tensor("X", X, detach=True).requires_grad


@pytest.mark.parametrize("got,want,message", [
    ((40, 1), (40,), "y: expected a 1-D array of shape (40,), got shape (40, 1)"),
    ((30, 1), (None,), "y: expected a 1-D array of any length, got shape (30, 1)"),
    ((5, 2), (None, 3), "y: expected a 2-D array of shape (n, 3), got shape (5, 2)"),
    ((5,), (None, None), "y: expected a 2-D array, got shape (5,)"),
    ((3, 1), ("M", 2), "y: expected a 2-D array of shape (M, 2), got shape (3, 1)"),
])
def test_check_shape_spells_shapes_as_python_tuples(got, want, message):
    """One-element shapes read "expected shape (40), got (40, 1)" and free lengths "(any)"."""
    from pyrozoo.validation import check_shape

    with pytest.raises(PyrozooError) as info:
        check_shape("y", np.zeros(got), want)
    assert str(info.value) == message
    check_shape("y", np.zeros((7, 3)), (None, 3))  # matching shapes pass
    check_shape("y", np.zeros((7, 3)), ("M", 3))  # a named free length matches any length


def test_check_seed_takes_the_seeds_numpy_takes_and_names_the_range():
    """Seeds reach np.random.seed (through pyro.set_rng_seed), which refuses 2**32 with a raw ValueError; torch
    refuses 2**64 with "Overflow when unpacking long long". check_int("seed") let both through."""
    from pyrozoo.validation import SEED_MAX, check_seed

    assert SEED_MAX == 2**32 - 1
    assert check_seed("seed", 0) == 0 and check_seed("seed", 2**32 - 1) == 2**32 - 1
    assert check_seed("seed", np.int64(7)) == 7 and type(check_seed("seed", 2.0)) is int  # 2.0: a TOML number
    for bad in (2**32, 10**20, 1e20, -1, 1.5, float("inf"), float("nan"), True, "3", None):
        with pytest.raises(PyrozooError, match=r"^seed: expected an integer seed in \[0, 2\*\*32 - 1\] \(at most "
                                               r"4294967295\), got "):
            check_seed("seed", bad)


def test_every_public_seed_argument_is_checked_against_the_seed_range():
    """README: any seed= in Python is an integer in [0, 2**32 - 1], a larger one a PyrozooError before any work.
    NeuralLinearPosterior.fit took 2**40 and crashed on 2**64 with torch's raw "Overflow when unpacking long long";
    make_folds, simulate_plce, load_problem and the concrete GP split took any size."""
    import torch

    from pyrozoo.active.loop import load_problem
    from pyrozoo.active.neural_linear import NeuralLinearPosterior
    from pyrozoo.causal.crossfit import make_folds
    from pyrozoo.causal.simulate import simulate_plce
    from pyrozoo.data.gp_data import concrete_split_rows, load_concrete_split

    x, y = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    calls = [lambda s: NeuralLinearPosterior.fit(x, y, steps=1, seed=s), lambda s: make_folds(20, 2, seed=s),
             lambda s: simulate_plce(s), lambda s: load_problem("boston", s), lambda s: concrete_split_rows(s),
             lambda s: load_concrete_split(s)]
    for call in calls:
        for bad in (2**32, 2**64):
            with pytest.raises(PyrozooError, match=r"^seed: expected an integer seed in \[0, 2\*\*32 - 1\]"):
                call(bad)
    assert make_folds(20, 2, seed=2**32 - 1).shape == (1, 20)  # the top of the range is a seed


def test_check_finite_kwargs_reads_floating_arrays_only_and_copies_none_that_pass(monkeypatch):
    """The engines' up-front data check: floating tensors (bfloat16 too, which has no NumPy dtype) and NumPy arrays
    are checked with one isfinite().all() each; integer and bool tensors, numbers and None are not read; names in
    ``allow`` are exempt; only a failing tensor reaches check_finite (its host copy)."""
    from pyrozoo import validation
    from pyrozoo.validation import check_finite_kwargs

    bad = torch.ones(3, dtype=torch.bfloat16)
    bad[1] = float("inf")
    with pytest.raises(PyrozooError, match=r"^w: expected finite values, found 1 non-finite \(inf at index \(1,\)\)$"):
        check_finite_kwargs({"n": 3, "mask": torch.tensor([True]), "w": bad})
    with pytest.raises(PyrozooError, match=r"^data\['z'\]: expected finite values, found 1 non-finite \(NaN\)$"):
        check_finite_kwargs({"z": np.full((), np.nan)}, what="data")
    check_finite_kwargs({"w": bad, "n": float("nan"), "none": None}, allow="w")  # a Python number is not read
    for allow in (3, {"w": 1}, [1]):
        with pytest.raises(PyrozooError, match="allow_nonfinite: expected names of model arguments"):
            check_finite_kwargs({"w": bad}, allow=allow)

    def copied(name, value, **kwargs):
        raise AssertionError(f"{name} was copied to the host")

    monkeypatch.setattr(validation, "check_finite", copied)
    check_finite_kwargs({"x": torch.randn(1000), "y": np.zeros(5), "k": torch.arange(4)})


def _seed_calls() -> dict[str, tuple]:
    """name -> (call taking the seed, argument the error names, whether 2**32 - 1 is cheap enough to run): every
    public function of the package, outside the GP and regime-scm files, that takes a seed (or bnn's split, which
    seeds the split's permutation). A file reader gets a missing path: the seed is refused before the file is read."""
    import torch

    from pyrozoo.active.loop import simulate_clustered
    from pyrozoo.causal.conformal import calibrate_band
    from pyrozoo.causal.effect_curve_sim import simulate_effect_curve
    from pyrozoo.data.agnostic_file import read_agnostic_file
    from pyrozoo.data.agnostic_tasks import cps1985_task, digits_task
    from pyrozoo.data.uci import split_regression, uci_split
    from pyrozoo.evaluation.probes import make_probes, probe_leakage
    from pyrozoo.models import blr, bnn, effect_curve, normal_gamma, plce, spike_slab

    x, y = torch.randn(12, 2, dtype=torch.float64), torch.randn(12, dtype=torch.float64)
    f, lab = np.random.default_rng(0).normal(size=(8, 2)), np.array([0, 1] * 4)
    missing = "no-such-file.csv"
    return {
        "simulate_effect_curve": (lambda s: simulate_effect_curve(s, n=10), "seed", True),
        "simulate_blr": (lambda s: blr.simulate_blr(s, n=2, d=1), "seed", True),
        "load_boston": (lambda s: blr.load_boston(s), "seed", False),
        "load_concrete": (lambda s: blr.load_concrete(s), "seed", False),
        "blr_from_file": (lambda s: blr.blr_from_file(missing, s), "seed", False),
        "simulate_normal_gamma": (lambda s: normal_gamma.simulate_normal_gamma(s, n=2), "seed", True),
        "load_boston_medv": (lambda s: normal_gamma.load_boston_medv(s), "seed", False),
        "read_normal_gamma_file": (lambda s: normal_gamma.read_normal_gamma_file(missing, s), "seed", False),
        "simulate_bnn_data": (lambda s: bnn.simulate_bnn_data(s, n=10), "seed", True),
        "simulate_bnn_data split": (lambda s: bnn.simulate_bnn_data(0, n=10, split=s), "split", True),
        "bnn boston": (lambda s: bnn.bnn_entry().datasets["boston"](s), "seed", False),
        "bnn_from_file": (lambda s: bnn.bnn_from_file(missing, s), "seed", False),
        "bnn_from_file split": (lambda s: bnn.bnn_from_file(missing, 0, split=s), "split", False),
        "split_regression": (lambda s: split_regression(x, y, split=s), "split", True),
        "uci_split": (lambda s: uci_split("boston", s), "split", False),
        "cps1985_task": (lambda s: cps1985_task(s), "seed", True),
        "digits_task": (lambda s: digits_task(s), "seed", False),
        "read_agnostic_file": (lambda s: read_agnostic_file(missing, s, target="y", protected="p"), "seed", False),
        "simulate_clustered": (lambda s: simulate_clustered(s, n=20), "seed", True),
        "simulate_emvs_design": (lambda s: spike_slab.simulate_emvs_design(s, n=2, p=3), "seed", True),
        "simulate_equicorrelated_design": (lambda s: spike_slab.simulate_equicorrelated_design(s, n=2, p=1,
                                                                                              num_signals=1),
                                           "seed", True),
        "simulate_spike_slab": (lambda s: spike_slab.simulate_spike_slab(s, n=4, p=2, num_signals=1), "seed", True),
        "spike_slab_from_file": (lambda s: spike_slab.spike_slab_from_file(missing, s), "seed", False),
        "SpikeSlabRegression": (lambda s: spike_slab.SpikeSlabRegression(seed=s), "seed", True),
        "plce make_estimator": (lambda s: plce.make_estimator(s), "seed", True),
        "plce_from_file": (lambda s: plce.plce_from_file(missing, s), "seed", False),
        "load_lalonde": (lambda s: plce.load_lalonde(s), "seed", False),
        "effect_curve make_estimator": (lambda s: effect_curve.make_estimator(s), "seed", True),
        "effect_curve_from_file": (lambda s: effect_curve.effect_curve_from_file(missing, s), "seed", False),
        "load_cps1985": (lambda s: effect_curve.load_cps1985(s), "seed", False),
        "make_probes": (lambda s: make_probes(s), "seed", True),
        "probe_leakage": (lambda s: probe_leakage(f, lab, f, lab, seed=s), "seed", False),
        "calibrate_band": (lambda s: calibrate_band(lambda y: (y, np.ones_like(y)), np.zeros(3), np.ones(3),
                                                    np.zeros(3), n_pseudo=1, seed=s), "seed", True),
    }


@pytest.mark.parametrize("name", list(_seed_calls()))
def test_each_public_seed_is_refused_outside_the_seed_range_before_any_work(name):
    """README: any seed= in Python is an integer in [0, 2**32 - 1], a larger or negative one a PyrozooError naming
    it before any work. These took -1 and 2**32 (NumPy's generators refused -1 with a raw ValueError, torch's 2**64
    with "Overflow when unpacking long long"), or refused them only after reading or drawing the data."""
    call, arg, cheap = _seed_calls()[name]
    for bad in (-1, 2**32):
        with pytest.raises(PyrozooError, match=rf"^{arg}: expected an integer seed in \[0, 2\*\*32 - 1\] \(at "
                                               rf"most 4294967295\), got {bad}$"):
            call(bad)
    if cheap:
        call(2**32 - 1)  # the top of the range is a seed


def test_check_no_datetimes_gives_a_fix_that_works_for_a_numpy_array_and_for_pandas():
    """A NumPy datetime64/timedelta64 array has no .dt accessor: its suggested encoding must be NumPy's, and that
    suggestion must run; a pandas column keeps the .dt form."""
    import numpy as np
    import pandas as pd

    from pyrozoo.errors import PyrozooError
    from pyrozoo.validation import check_no_datetimes

    x = np.array(["2020-01-01", "2020-01-03"], dtype="datetime64[D]")
    with pytest.raises(PyrozooError, match=r"x: expected numbers, got dates .*np\.timedelta64\(1, 'D'\)") as info:
        check_no_datetimes("x", x)
    assert ".dt" not in str(info.value)
    np.testing.assert_array_equal(eval("(x - x.min()) / np.timedelta64(1, 'D')"), [0.0, 2.0])  # the fix runs
    d = x - x.min()
    with pytest.raises(PyrozooError, match=r"got durations .*np\.timedelta64\(1, 's'\)"):
        check_no_datetimes("d", d)
    with pytest.raises(PyrozooError, match=r"in column 'when'.*\.dt\.days"):
        check_no_datetimes("X", pd.DataFrame({"when": pd.to_datetime(x)}))


def test_check_figure_path_refuses_before_drawing_and_returns_the_file_written(tmp_path, monkeypatch):
    """The shared check of the save-a-plot functions. '' was handed to savefig, which wrote a hidden './.png'; 'c'
    was returned as given while matplotlib wrote c.png; 'c.xyz' and a missing directory failed inside savefig (raw
    ValueError / FileNotFoundError) after the drawing."""
    from pathlib import Path

    from pyrozoo.validation import check_figure_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "afile").write_text("")
    assert check_figure_path("path", "c") == Path("c.png")  # savefig's own default, now explicit
    assert check_figure_path("path", "sub/c") == Path("sub/c.png")
    assert check_figure_path("path", Path("c.PDF")) == Path("c.PDF")  # matplotlib reads the extension in any case
    assert check_figure_path("path", str(tmp_path / "c.svg")) == tmp_path / "c.svg"
    for bad, message in [
        ("", r"^path: expected a file path for the figure \(e\.g\. 'plot\.png'\), got ''$"),
        (None, r"^path: expected a file path for the figure \(e\.g\. 'plot\.png'\), got None$"),
        (".", r"^path: expected a file path for the figure \(e\.g\. 'plot\.png'\), got the directory '\.'$"),
        ("sub/", r"^path: expected a file path .*, got the directory 'sub/'$"),
        ("c.xyz", r"^path: expected a file name ending in a format matplotlib writes \(.*\.pdf, .*\.png, .*\), "
                  r"got 'c\.xyz'$"),
        ("nodir/c.png", r"^path: expected a file in an existing directory, got 'nodir/c\.png' \('nodir' does not "
                        r"exist; create it first\)$"),
        ("afile/c.png", r"^path: expected a file in an existing directory, got 'afile/c\.png' \('afile' is not a "
                        r"directory\)$"),
    ]:
        with pytest.raises(PyrozooError, match=message):
            check_figure_path("path", bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "sub"]  # nothing written


def test_check_accepts_names_what_a_callable_does_not_take():
    """run_svi's up-front check of a guide's signature (a wrong one was a raw TypeError from inside the first step)."""
    import functools

    from pyro.infer.autoguide import AutoNormal

    from pyrozoo.validation import check_accepts

    def model(x, y=None, *, a):
        pass

    class Guide(torch.nn.Module):
        def forward(self, x, y=None):
            pass

    kwargs = {"x": 1, "y": 2, "a": 3}
    for fn in (model, lambda **kw: None, lambda x, *args, **kw: None, AutoNormal(model), functools.partial(model, a=0),
               max):  # max: a builtin without an inspectable signature passes
        check_accepts("guide", fn, kwargs)
    with pytest.raises(PyrozooError, match=r"^guide: .*Guide must accept the model's arguments, as run_svi calls it "
                                           r"with them as keywords \(a, x, y\); it does not accept 'a' \(its "
                                           r"signature: \(x, y=None\)\)"):
        check_accepts("guide", Guide(), kwargs)  # a PyroModule guide: its forward
    with pytest.raises(PyrozooError, match=r"it requires 'n', which the model's arguments do not give"):
        check_accepts("guide", lambda x, y=None, *, a, n: None, kwargs)
    with pytest.raises(PyrozooError, match=r"it does not accept 'subsample_size'"):  # train_kwargs come at the steps
        check_accepts("guide", model, kwargs, {**kwargs, "subsample_size": 5})
    with pytest.raises(PyrozooError, match=r"it requires 'x', which"):  # positional-only: never filled by keyword
        check_accepts("guide", lambda x, /, y=None, **kw: None, kwargs)


def test_check_figure_path_follows_savefig_on_trailing_dots_and_names_an_unknown_home(tmp_path):
    """'plot.' was returned as plot..png while savefig('plot.') writes plot.png; '~nosuchuser/p.png' was a raw
    RuntimeError from expanduser."""
    import matplotlib.pyplot as plt

    from pyrozoo.validation import check_figure_path

    for given in ("plot.", "plot..", "plot"):
        path = check_figure_path("path", str(tmp_path / given))
        assert path == tmp_path / "plot.png"
        fig = plt.figure()
        fig.savefig(str(tmp_path / given))  # what matplotlib writes for the same name
        plt.close(fig)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]
    with pytest.raises(PyrozooError, match=r"^path: expected a file path for the figure \(e.g. 'plot.png'\), got "
                                           r"'~nosuchuser_pyrozoo/p.png', whose '~nosuchuser_pyrozoo' names no home "
                                           r"directory"):
        check_figure_path("path", "~nosuchuser_pyrozoo/p.png")


def test_a_tilde_user_that_names_no_user_is_refused_by_every_path_argument(tmp_path, monkeypatch, capsys):
    """'~nosuchuser/...' was a raw RuntimeError in a sweep's out and in --data, and `run --out` made a directory
    named '~nosuchuser' in the working directory (os.path.expanduser leaves an unknown user as it is). Now each is a
    one-line error naming the argument, with nothing written; '~/' is still the home directory."""
    from pyrozoo.cli import main
    from pyrozoo.validation import expand_home

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert expand_home("out", "~/a") == tmp_path / "home" / "a" and expand_home("out", "a/~b") == Path("a/~b")
    with pytest.raises(PyrozooError, match=r"^out: expected a path, got '~nosuchuserq/a', whose '~nosuchuserq' "
                                           r"names no home directory \(no such user\), and there is no file or "
                                           r"directory '~nosuchuserq/a' in the working directory either$"):
        expand_home("out", "~nosuchuserq/a")
    spec = tmp_path / "sw.toml"
    spec.write_text('[sweep]\nname = "s"\nout = "~nosuchuserq/sw"\nseeds = 1\ntiny = true\n'
                    '[[models]]\nname = "normal-gamma"\n')
    for argv, name in ((["sweep", str(spec), "--dry-run"], f"{spec}: sweep.out"),  # the file's [sweep].out
                       (["run", "normal-gamma", "--out", "~nosuchuserq/r"], "out"),
                       (["run", "blr", "--data", "~nosuchuserq/d.csv"], "data")):
        assert main(argv + ["--no-progress"] * (argv[0] == "run")) == 2
        assert capsys.readouterr().err.startswith(f"pyrozoo: error: {name}: expected a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sw.toml"]


def test_ints_given_for_float_options_become_floats():
    # a float option keeps a float's type (config.toml records -o scale=2 as 2.0), per-column lists too; an option
    # declared float whose default is None is made a float when a number is given, and left alone otherwise
    out = check_option_types("option", {"scale": 2, "noise": 1, "count": 3}, {**DEFAULTS, "noise": None},
                             float_options=("noise",))
    assert out == {"scale": 2.0, "noise": 1.0, "count": 3}
    assert type(out["scale"]) is float and type(out["noise"]) is float and type(out["count"]) is int
    listed = check_option_types("option", {"scale": [1, 2]}, DEFAULTS, list_options=("scale",))["scale"]
    assert listed == [1.0, 2.0] and all(type(v) is float for v in listed)
    assert check_option_types("option", {"noise": "auto"}, {"noise": None}, float_options=("noise",)) == {
        "noise": "auto"}


def test_a_figure_path_that_is_a_dangling_link_into_a_missing_directory_is_refused_before_drawing(tmp_path):
    """check_figure_path checked the link's own directory, which exists, so savefig raised a bare
    FileNotFoundError after drawing. The link's target directory is checked too; a loop of links is refused."""
    from pyrozoo.validation import check_figure_path

    (tmp_path / "dang.png").symlink_to(tmp_path / "missing" / "f.png")
    with pytest.raises(PyrozooError, match=r"^plot: expected a file in an existing directory, got .*dang\.png', a "
                                           r"symbolic link to .*f\.png' \('.*missing' does not exist\)$"):
        check_figure_path("plot", str(tmp_path / "dang.png"), make_parents=True)
    assert not (tmp_path / "missing").exists()
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    with pytest.raises(PyrozooError, match=r"^plot: .*loop\.png', a symbolic link to .* \(a loop of links\)$"):
        check_figure_path("plot", tmp_path / "loop.png")
    (tmp_path / "live.png").symlink_to(tmp_path / "target.png")  # dangling into an existing directory: written
    assert check_figure_path("plot", tmp_path / "live.png") == tmp_path / "live.png"


@pytest.mark.parametrize("value", [None, 5, b"/tmp/x", b"~/x"])
def test_expand_home_refuses_what_is_not_a_path_naming_the_argument(value):
    """expand_home called os.fspath unchecked: None, 5 or bytes were a raw TypeError (load_run(None),
    build_report(None)); they get check_path's error naming the argument."""
    import re

    from pyrozoo.validation import expand_home

    with pytest.raises(PyrozooError, match=rf"^run: expected a run directory, got {re.escape(repr(value))}$"):
        expand_home("run", value, what="a run directory")


def test_check_xy_states_a_row_minimum_only_when_there_is_one():
    """With min_rows=0 (an ActiveProblem's pool) a 1-D x was refused as needing "at least 0 rows and one column";
    the message now states only the column minimum there, and the row minimum where it is 1 or more."""
    from pyrozoo.validation import check_xy

    with pytest.raises(PyrozooError, match=r"^x_pool: expected a 2-D array \(rows, features\) with at least one "
                                           r"column, got shape \(30,\)$"):
        check_xy(np.zeros(30), x_name="x_pool", min_rows=0)
    assert check_xy(np.zeros((0, 2)), min_rows=0)[0].shape == (0, 2)
    for min_rows, rows in ((1, "one row"), (3, "3 rows")):
        with pytest.raises(PyrozooError, match=rf"^X: expected a 2-D array \(rows, features\) with at least {rows} "
                                               rf"and one column, got shape \(2, 0\)$"):
            check_xy(np.zeros((2, 0)), min_rows=min_rows)
    from pyrozoo.active.loop import ActiveProblem, run_active_learning

    x = np.c_[np.ones(30), np.arange(30.0)]
    with pytest.raises(PyrozooError, match=r"^x_pool: expected a 2-D array \(rows, features\) with at least one "
                                           r"column, got shape \(30,\)$"):
        run_active_learning(ActiveProblem("m", x[:, 1], x[:, 1], x[:5], x[:5, 1]), "acs-fw")


def test_an_integer_beyond_float_range_for_a_float_option_is_a_clear_error():
    # making it a float raised a raw OverflowError
    huge = 10 ** 400
    for given in ({"scale": huge}, {"scale": [1, huge]}):
        with pytest.raises(PyrozooError, match=r"^scale: option expects a number within float range"):
            check_option_types("option", given, DEFAULTS, list_options=("scale",))
    with pytest.raises(PyrozooError, match=r"^noise: option expects a number within float range"):
        check_option_types("option", {"noise": huge}, {"noise": None}, float_options=("noise",))


def test_a_figure_link_whose_target_directory_is_a_file_says_so(tmp_path):
    # the link branch said "does not exist" where the target's parent is a file, unlike the non-link branch
    from pyrozoo.validation import check_figure_path

    (tmp_path / "afile").touch()
    (tmp_path / "l2.png").symlink_to(tmp_path / "afile" / "x.png")
    with pytest.raises(PyrozooError, match=r"a symbolic link to .*x\.png' \('.*afile' is not a directory\)$"):
        check_figure_path("plot", tmp_path / "l2.png")


def test_float_dtype_refuses_half_precision():
    """float16 and bfloat16 passed the floating check and failed later (normal-gamma: '"gamma_cpu" not implemented
    for Half', bfloat16 a raw TypeError from check_finite) or fitted in float16 (regime-scm): refused, naming the
    dtype. as_tensor still converts to a reference tensor's half dtype (its own check is only "floating")."""
    from pyrozoo.validation import as_tensor, check_float_dtype

    for bad in (torch.float16, torch.bfloat16):
        with pytest.raises(PyrozooError, match=r"dtype: expected .*float32 or torch.float64, got torch\.b?float16"):
            check_float_dtype("dtype", bad)
    assert as_tensor("x", [0.5], dtype=torch.float16).dtype == torch.float16


def test_prior_range_names_the_option_and_follows_the_dtype():
    """check_prior_range: magnitudes 1e-150 to 1e150 in float64 (1e-15 to 1e15 in float32), so that a square and an
    inverse square stay finite and nonzero; ``zero`` admits 0, ``signed`` any sign, ``high`` a lower top."""
    from pyrozoo.validation import check_prior_range, usable_range

    assert usable_range() == (1e-150, 1e150) and usable_range(torch.float32) == (1e-15, 1e15)
    assert check_prior_range("s", 1e150) == 1e150 and check_prior_range("s", 1e-150) == 1e-150
    assert check_prior_range("noise", 0.0, zero=True) == 0.0 and check_prior_range("m", -1e150, signed=True) == -1e150
    for value in (1e151, 1e-151, 0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(PyrozooError, match=r"^s: expected a number between 1e-150 and 1e150, got "):
            check_prior_range("s", value)
    with pytest.raises(PyrozooError, match=r"^s: expected a number between 1e-15 and 1e15 in float32, got 1e\+16$"):
        check_prior_range("s", 1e16, dtype=torch.float32)
    with pytest.raises(PyrozooError, match=r"^a: expected a number between 1e-150 and 1e12, got "):
        check_prior_range("a", 1e13, high=1e12)
    with pytest.raises(PyrozooError, match=r"^m: expected a finite number with \|m\| <= 1e150, got "):
        check_prior_range("m", float("-inf"), signed=True)


def test_a_tilde_name_that_is_no_user_but_an_existing_file_is_kept_as_written(tmp_path, monkeypatch, capsys):
    """A file named '~x.csv' could not be given as --data ~x.csv ("names no home directory"), though a shell leaves
    ~nosuchuser as it is. The literal path is now kept when it exists (in the working directory, or beside a
    --config file for its data); when it does not, the error says both that no such user and no such file exist."""
    from pyrozoo.cli import main
    from pyrozoo.validation import expand_home

    monkeypatch.chdir(tmp_path)
    (tmp_path / "~x.csv").write_text("x\n1.0\n2.5\n0.5\n")
    assert expand_home("data", "~x.csv") == Path("~x.csv")
    with pytest.raises(PyrozooError, match=r"^data: expected a path, got '~y.csv', whose '~y.csv' names no home "
                                           r"directory \(no such user\), and there is no file or directory '~y.csv' "
                                           r"in the working directory either$"):
        expand_home("data", "~y.csv")
    args = ["-o", "column=x", "--steps", "10", "--num-samples", "20", "--no-progress"]
    assert main(["run", "normal-gamma", "--data", "~x.csv", "--out", "r1", *args]) == 0
    assert (tmp_path / "r1" / "config.toml").read_text().count(str(tmp_path / "~x.csv")) == 1
    conf = tmp_path / "c"
    conf.mkdir()
    (conf / "~z.csv").write_text("x\n1.0\n2.5\n0.5\n")
    (conf / "run.toml").write_text('model = "normal-gamma"\ndata = "~z.csv"\n')
    assert main(["run", "--config", str(conf / "run.toml"), "--out", "r2", *args]) == 0
    (conf / "bad.toml").write_text('model = "normal-gamma"\ndata = "~w.csv"\n')
    capsys.readouterr()
    assert main(["run", "--config", str(conf / "bad.toml"), "--out", "r3", *args]) == 2
    assert f"'~w.csv' names no home directory (no such user), and there is no file or directory '~w.csv' in {conf}" \
        in capsys.readouterr().err
    assert not (tmp_path / "r3").exists()
    from pyrozoo.sweep.spec import parse_spec  # a sweep file's data "~z.csv" beside it (was a bare RuntimeError)

    spec = parse_spec({"sweep": {"seeds": 1}, "models": [{"name": "normal-gamma", "data": "~z.csv",
                                                           "options": {"column": "x"}}]}, base_dir=conf)
    assert spec.cells[0].config["data"] == str(conf / "~z.csv")


def test_usable_range_of_a_value_the_dtype_only_carries():
    """squared=False: a hyperparameter a float32 model holds but never squares (its squares taken in float64) may
    span 1e-30 to 1e30 there; squared (the default) keeps 1e-15 to 1e15."""
    from pyrozoo.validation import check_prior_range, usable_range

    assert usable_range(torch.float32, squared=False) == (1e-30, 1e30)
    assert usable_range(torch.float32) == (1e-15, 1e15) and usable_range(torch.float64) == (1e-150, 1e150)
    assert check_prior_range("s", 1e20, dtype=torch.float32, squared=False) == 1e20
    with pytest.raises(PyrozooError, match=r"^s: expected a number between 1e-30 and 1e30 in float32, got 1e\+31$"):
        check_prior_range("s", 1e31, dtype=torch.float32, squared=False)
