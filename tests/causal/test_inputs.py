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


class _FitForbidden:
    """A learner factory whose fit fails the test: the input checks must refuse the data before any fit."""

    def fit(self, X, y):
        raise AssertionError("fit was called before the input checks refused X")

    def predict(self, X):
        raise AssertionError("predict was called before the input checks refused X")


def _design(n: int = 40, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    t = X[:, 0] + rng.standard_normal(n)
    return t + X[:, 1] + rng.standard_normal(n), t, X


@pytest.mark.parametrize(("extra", "names", "message"), [
    (lambda X: X[:, 0], None, "column 3 is column 0"),
    (lambda X: 2.0 * X[:, 1], None, "column 3 is 2 x column 1"),
    (lambda X: -0.1 * X[:, 2], None, "column 3 is -0.1 x column 2"),
    (lambda X: X[:, 0], ["age", "educ", "re74", "age_copy"], "column 'age_copy' is column 'age'"),
])
def test_check_no_duplicate_columns_names_both_columns(extra, names, message):
    """An exact repeat of a covariate, or an exact multiple of one (c != 0), is refused naming both columns."""
    from pyrozoo.causal.inputs import check_no_duplicate_columns

    _, _, X = _design()
    with pytest.raises(PyrozooError, match=rf"^X: expected distinct covariate columns, got exact repeats or "
                                           rf"multiples \({re.escape(message)}\); remove one column of each pair$"):
        check_no_duplicate_columns(np.c_[X, extra(X)], names)


def test_check_no_duplicate_columns_lists_each_repeat_once_and_passes_distinct_columns():
    from pyrozoo.causal.inputs import check_no_duplicate_columns

    _, _, X = _design()
    dummies = (X > 0).astype(float)  # 0/1 columns: zero patterns differ, so nothing to compare
    X[:5, 2] = 0.0  # zeros in a column do not stop a repeat being found
    with pytest.raises(PyrozooError, match=re.escape("(column 3 is 3 x column 2; column 4 is column 2)")):
        check_no_duplicate_columns(np.c_[X, 3 * X[:, 2], X[:, 2]])
    check_no_duplicate_columns(np.c_[X, dummies])
    check_no_duplicate_columns(np.c_[X, X[:, 0] + 1.0])  # an affine copy is not a repeat (documented)
    check_no_duplicate_columns(np.c_[X, X[:, 0] + 1e-9 * X[:, 1]])  # differs in the 9th digit: distinct
    check_no_duplicate_columns(X[:, :1])


def _counting_full_checks(monkeypatch) -> list[int]:
    """Count the full-column comparisons check_no_duplicate_columns makes (its ``_is_multiple`` calls)."""
    from pyrozoo.causal import inputs

    calls, full = [0], inputs._is_multiple

    def counted(*args):
        calls[0] += 1
        return full(*args)

    monkeypatch.setattr(inputs, "_is_multiple", counted)
    return calls


def test_check_no_duplicate_columns_positive_columns_compare_o_p_pairs(monkeypatch):
    """All-positive columns (ages, incomes, counts) share one zero/sign pattern; they were compared pair by pair over
    all n rows (O(n p^2): 2.7 s at n = 20k, p = 200). Only near-candidates by a random projection are compared now:
    200 distinct columns need no full comparison, and a multiple and a repeat hidden far from their originals (not
    adjacent in column order) are found and named as before. Counts comparisons, times nothing."""
    from pyrozoo.causal.inputs import check_no_duplicate_columns

    calls = _counting_full_checks(monkeypatch)
    X = np.random.default_rng(0).uniform(0.5, 80.0, (500, 200))
    check_no_duplicate_columns(X)
    assert calls[0] < 200  # O(p); a scan of every pair would make 19900
    X[:, 150] = 2.5 * X[:, 37]
    X[:, 90] = X[:, 10]
    calls[0] = 0
    with pytest.raises(PyrozooError, match=re.escape("(column 90 is column 10; column 150 is 2.5 x column 37)")):
        check_no_duplicate_columns(X)
    assert calls[0] < 200


def _duplicate_pairs_by_full_scan(X: np.ndarray) -> list[tuple[int, int]]:
    """The pairs check_no_duplicate_columns refuses, by comparing every pair with the same pattern (its old code)."""
    from pyrozoo.causal.inputs import _is_multiple

    first = (X != 0).argmax(axis=0)
    pattern = [tuple(np.sign(X[:, j]) * np.sign(X[first[j], j])) for j in range(X.shape[1])]
    kept: list[int] = []
    pairs = []
    for j in range(X.shape[1]):
        k = next((k for k in kept if pattern[k] == pattern[j]
                  and _is_multiple(X, j, k, X[first[j], j] / X[first[k], k])), None)
        if k is None:
            kept.append(j)
        else:
            pairs.append((j, k))
    return pairs


def test_check_no_duplicate_columns_refuses_the_pairs_a_full_scan_refuses():
    """Near the tolerance (multiples perturbed by up to 0, 20, 64 or 100 eps per row) the projection prefilter keeps
    every pair the full comparison accepts: the refused pairs are those of a scan over every same-pattern pair."""
    from pyrozoo.causal.inputs import check_no_duplicate_columns

    rng = np.random.default_rng(5)
    eps = np.finfo(np.float64).eps
    for _ in range(200):
        n, p = int(rng.integers(2, 200)), int(rng.integers(2, 12))
        X = rng.uniform(0.0, 1.0, (n, p)) ** 3 * rng.choice([-1.0, 1.0], (n, p)) ** rng.integers(0, 2)
        X[rng.random((n, p)) < 0.1] = 0.0
        for j, k in rng.integers(0, p, (int(rng.integers(1, 4)), 2)):
            noise = rng.uniform(-1.0, 1.0, n) * rng.choice([0, 20, 64, 100]) * eps
            X[:, j] = rng.choice([1.0, -2.0, 0.3, 1e-8]) * X[:, k] * (1 + noise)
        X = X[:, np.ptp(X, axis=0) > 0]  # the documented precondition: no constant columns
        expected = _duplicate_pairs_by_full_scan(X)
        try:
            check_no_duplicate_columns(X)
            got = []
        except PyrozooError as exc:
            got = [tuple(int(v) for v in re.findall(r"column (\d+)", part))
                   for part in re.search(r"\((.*)\)", str(exc)).group(1).split("; ")]
        assert got == expected


def test_plce_and_effect_curve_refuse_a_duplicated_covariate_before_any_fit():
    """A copy of X[:, 0] was accepted: with n = 60 and two folds it moved the estimate from 0.92 (SE 0.09) to 2.33
    (SE 0.86), one fold falling back past max_refit_fraction. Refused in the input checks, before any learner fit
    (the learner here fails the test if it is fitted), naming DataFrame columns by name."""
    from pyrozoo.causal import PLCE, EffectCurve

    y, t, X = _design()
    frame = pd.DataFrame(np.c_[X, X[:, 0]], columns=["x1", "x2", "x3", "x1_again"])
    for est in (PLCE(_FitForbidden, n_folds=2, n_repeats=1), EffectCurve()):
        with pytest.raises(PyrozooError, match=re.escape("got exact repeats or multiples (column 3 is column 0)")):
            est.fit(y, t, np.c_[X, X[:, 0]])
        with pytest.raises(PyrozooError, match=re.escape("(column 'x1_again' is column 'x1')")):
            est.fit(y, t, frame)


def test_check_no_duplicate_columns_refuses_a_multiple_of_a_column_whose_projection_overflowed():
    """A column's projection s_k may overflow in a partial sum of r . u_k (u_k = x_k / x_k[f] up to ~8e307: r has
    entries of both signs) and end non-finite, while its multiple's s_j, summed from values one rounding apart,
    stays finite and so does s_j +- w_j: the window around s_j cannot reach s_k = -inf, and only the list of
    non-finite projections makes k a candidate. Built on the BLAS that sums here: the largest u whose s is finite
    (bisection), then a multiple c x_k whose rounding lands on the finite side."""
    from pyrozoo.causal.inputs import _projections, check_no_duplicate_columns

    first = np.zeros(2, dtype=int)

    def column(big):  # r = (0.27, -0.46, -0.92, -0.97, 0.63): the partial sum reaches -2.35 big, the total -1.72 big
        return np.array([1.0, big, big, big, big])

    lo, hi = 1e307, 8e307
    while np.nextafter(lo, np.inf) < hi:
        mid = lo + (hi - lo) / 2
        if np.isfinite(_projections(column(mid)[:, None], first[:1])[0][0]):
            lo = mid
        else:
            hi = mid
    k = column(hi)  # the smallest whose projection overflows
    for c in np.round(np.arange(0.05, 2.0, 0.01), 2):
        X = np.c_[k, c * k]
        s, w = _projections(X, first)
        if not np.isfinite(s[0]) and np.isfinite(s[1]) and np.isfinite([s[1] - w[1], s[1] + w[1]]).all():
            break
    else:
        pytest.skip("no partial sum of r . u overflows on this BLAS before the total comes back in range")
    with pytest.raises(PyrozooError, match=re.escape(f"(column 1 is {c:.10g} x column 0)")):
        check_no_duplicate_columns(X)


def test_tensors_that_require_grad_are_read_as_their_values():
    """numeric_vector and covariate_matrix (the inputs of PLCE and EffectCurve) failed in NumPy on a tensor with
    requires_grad=True (torch's raw "Can't call numpy() on Tensor that requires grad")."""
    X = np.random.default_rng(0).standard_normal((8, 3))
    np.testing.assert_array_equal(covariate_matrix(torch.tensor(X, requires_grad=True)), X)
    np.testing.assert_array_equal(numeric_vector("t", torch.tensor(X[:, 0], requires_grad=True)), X[:, 0])


@pytest.mark.parametrize("kind", ["datetime", "datetime_tz", "timedelta"])
def test_dates_and_durations_are_refused_naming_the_column(kind):
    """A datetime64 column of X was read as nanoseconds since 1970 (PLCE 1.936 against 1.960 without it), although
    covariates are numbers or bools and the --data reader refuses date text; durations alike."""
    dates = pd.date_range("2020-01-01", periods=6)
    col = {"datetime": dates, "datetime_tz": dates.tz_localize("UTC"), "timedelta": dates - dates[0]}[kind]
    what = "durations" if kind == "timedelta" else "dates"
    X = pd.DataFrame({"a": np.arange(6.0), "when": col})
    with pytest.raises(PyrozooError, match=rf"^X: expected numbers, got {what} in column 'when' \(\w+64\[.*\]\), "
                                           rf"which would be read as counts of their time unit.*; encode them"):
        covariate_matrix(X)
    if kind != "datetime_tz":  # NumPy has no time zones: that array would hold Timestamp objects
        with pytest.raises(PyrozooError, match=rf"^X: expected numbers, got {what} \("):
            covariate_matrix(pd.Series(col).to_numpy())
    with pytest.raises(PyrozooError, match=rf"^t: expected numbers, got {what} \("):
        numeric_vector("t", pd.Series(col))
    np.testing.assert_array_equal(covariate_matrix(X[["a"]]), np.arange(6.0)[:, None])


def test_a_treatment_in_the_span_of_the_covariates_is_refused_naming_the_columns():
    """A treatment that is a linear function of the covariates is not identified, yet PLCE reported 5.41 (SE 1.17)
    for t = x1. Exact copies leave RSS / TSS at rounding level (1e-31 for t = x1; 1e-21 for 1e6 + x1 and ~1e-15 for
    a copy formed in float32, the cases the 1e-10 cut's derivation covers), all refused; a treatment with variation
    of its own at 1e-4 of its spread (RSS / TSS ~1e-8) is left to the estimator, and so is any t when [1, X] spans
    all n rows (p >= n - 1: high-dimensional controls, where only the learner's regularization identifies it)."""
    from pyrozoo.causal.inputs import check_treatment_identified

    rng = np.random.default_rng(2)
    X = rng.standard_normal((300, 3))
    X32 = X.astype(np.float32)
    names = ["x1", "x2", "x3"]
    copies = {"x1": (X[:, 0].copy(), X, "['x1']"), "2 x1 + 1": (2 * X[:, 0] + 1, X, "['x1']"),
              "X b + 5": (X @ [1.0, -2.0, 3.0] + 5, X, "['x1', 'x2', 'x3']"), "1e6 + x1": (1e6 + X[:, 0], X, "['x1']"),
              "float32": ((2 * X32[:, 1] + 1).astype(np.float64), X32.astype(np.float64), "['x2']")}
    for t, Xc, cols in copies.values():
        with pytest.raises(PyrozooError, match=rf"^t: the treatment is a linear function of the covariates "
                                               rf"\(column\(s\) {re.escape(cols)}\): least squares of t on an "
                                               rf"intercept and X leaves \S+ of its centred sum of squares \(at most "
                                               rf"\S+ counts as none\), so .* not identified; remove the column\(s\) "
                                               rf"that determine t"):
            check_treatment_identified(t, Xc, names)
    with pytest.raises(PyrozooError, match=r"\(column\(s\) \[0\]\)"):  # by position without names
        check_treatment_identified(X[:, 0] * 3, X)
    check_treatment_identified(X[:, 0] + 1e-4 * rng.standard_normal(300), X, names)  # RSS / TSS ~ 1e-8: identified
    check_treatment_identified(rng.standard_normal(300), X, names)
    Xh = rng.standard_normal((20, 19))  # [1, X] spans R^20: every t is "in the span", nothing to say
    check_treatment_identified(rng.standard_normal(20), Xh)
