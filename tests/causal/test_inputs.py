"""Input conversion shared by the causal estimators (pyrozoo/causal/inputs.py): complex numbers are refused, and
pandas covariates are matched to the fitted names."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

from pyrozoo.causal.inputs import aligned_covariates, covariate_matrix, numeric_vector
from pyrozoo.errors import PyrozooError


@pytest.mark.parametrize("value", [np.ones(4) + 0j, [1j, 2.0, 3.0], pd.Series(np.arange(4) + 1j),
                                   torch.ones(4, dtype=torch.complex128)])
def test_numeric_vector_refuses_complex_numbers(value):
    """NumPy's float64 conversion dropped the imaginary part with only a ComplexWarning; even a zero imaginary part
    is refused (the dtype says the data are not real numbers)."""
    with pytest.raises(PyrozooError, match=r"^y: expected real numbers, got complex128$"):
        numeric_vector("y", value)


def test_covariate_matrix_refuses_complex_numbers_naming_the_column():
    with pytest.raises(PyrozooError, match=r"^X: expected real numbers, got complex128$"):
        covariate_matrix(np.ones((5, 2)) + 0j)
    X = pd.DataFrame({"a": np.arange(5.0), "b": np.arange(5) + 0j})
    with pytest.raises(PyrozooError, match=r"^X: expected real numbers, got complex128 in column 'b'$"):
        covariate_matrix(X)
    np.testing.assert_array_equal(covariate_matrix(X[["a"]]), np.arange(5.0)[:, None])  # real input unchanged


def test_plce_refuses_complex_input_before_any_fit():
    from pyrozoo.causal.plce import PLCE

    rng = np.random.default_rng(0)
    y, t, X = rng.standard_normal(40), rng.standard_normal(40), rng.standard_normal((40, 2))
    with pytest.raises(PyrozooError, match=r"^t: expected real numbers, got complex128"):
        PLCE().fit(y, t + 0j, X)


def test_aligned_covariates_matches_names_and_leaves_positional_input_alone():
    names = ["x1", "x2", "x3"]
    s = aligned_covariates("x", pd.Series({"x3": 3.0, "x1": 1.0, "x2": 2.0}), names)
    assert list(s.index) == names and s.tolist() == [1.0, 2.0, 3.0]
    df = aligned_covariates("x", pd.DataFrame({"x2": [2.0], "x3": [3.0], "x1": [1.0]}), names)
    assert list(df.columns) == names and df.to_numpy().tolist() == [[1.0, 2.0, 3.0]]
    for positional in ([3.0, 1.0, 2.0], np.array([3.0, 1.0, 2.0])):
        assert aligned_covariates("x", positional, names) is positional
    unnamed = pd.Series([3.0, 1.0, 2.0])
    assert aligned_covariates("x", unnamed, None) is unnamed  # the fit saw no names: by position


@pytest.mark.parametrize(("x", "detail"), [
    (pd.Series({"x1": 0.0, "x2": 0.0}), r"\(missing \['x3'\]\)"),
    (pd.Series({"x1": 0.0, "x2": 0.0, "x3": 0.0, "x9": 1.0}), r"\(unknown \['x9'\]\)"),
    (pd.Series([0.0, 0.0, 0.0]), r"\[0, 1, 2\] \(missing \['x1', 'x2', 'x3'\], unknown \[0, 1, 2\]\)"),
    (pd.DataFrame([[0.0, 0.0, 0.0]], columns=["x1", "x1", "x2"]), r"\(missing \['x3'\], repeated \['x1'\]\)"),
])
def test_aligned_covariates_names_missing_unknown_and_repeated_labels(x, detail):
    what = "index labels" if isinstance(x, pd.Series) else "columns"
    with pytest.raises(PyrozooError, match=rf"^x: expected the covariates seen in fit, \['x1', 'x2', 'x3'\], as its "
                                           rf"{what} \(in any order\); got .*{detail}; pass x.to_numpy\(\) to match"):
        aligned_covariates("x", x, ["x1", "x2", "x3"])


def test_check_varies_refuses_a_constant_exactly():
    """np.var(np.full(50, 0.1)) is 7.7e-34, not 0 (the mean rounds off 0.1): the peak-to-peak test catches it."""
    from pyrozoo.causal.inputs import check_varies

    for value in (5.0, 0.1, -3e-9):
        with pytest.raises(PyrozooError, match=rf"^y: expected an outcome that varies, got a constant \({value!r}\); "
                                               r"nothing to estimate$"):
            check_varies("y", np.full(50, value), "an outcome")
    check_varies("y", np.r_[np.full(49, 0.1), 0.1 + 1e-15], "an outcome")  # any variation passes


@pytest.mark.parametrize(("columns", "listed"), [(["a", "b", "a"], "'a'"), ([0, 1, 0, 1], "0, 1")])
def test_covariate_matrix_refuses_repeated_column_names(columns, listed):
    """A DataFrame giving one name to two columns was accepted by PLCE and EffectCurve; a later x matched by name
    (EffectCurve.curve) then failed. Refused in fit, naming the repeated names (string or not)."""
    X = pd.DataFrame(np.arange(3.0 * len(columns)).reshape(3, -1), columns=columns)
    with pytest.raises(PyrozooError, match=rf"^X: {listed} given more than once; name each column once$"):
        covariate_matrix(X)
    X.columns = list(range(len(columns)))
    assert covariate_matrix(X).shape == (3, len(columns))  # unique names pass


@pytest.mark.parametrize("bad,where", [(np.nan, "the first at row 3, column 'x1'"), (np.inf, "at row 3, column 'x1'")])
def test_a_dataframe_s_nan_or_inf_is_named_by_row_and_column(bad, where):
    """PLCE().fit and EffectCurve().fit said "NaN at index (3, 0)", a position in the converted matrix."""
    from pyrozoo.causal import PLCE, EffectCurve

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x1": rng.normal(size=40), "x2": rng.normal(size=40)})
    X.iloc[3, 0] = bad
    with pytest.raises(PyrozooError, match=re.escape(where)):
        covariate_matrix(X)
    y, t = pd.Series(rng.normal(size=40)), pd.Series(rng.normal(size=40))
    for est in (PLCE(n_folds=2, n_repeats=1), EffectCurve()):
        with pytest.raises(PyrozooError, match=re.escape(where)):
            est.fit(y, t, X)
    with pytest.raises(PyrozooError, match=r"^y: expected finite values, found 1 non-finite \(\w+ at row 3\)$"):
        numeric_vector("y", X["x1"])
