"""PartialRidgeCV: ridge with unpenalized leading columns, checked against the closed-form normal equations."""

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import RidgeCV

from pyrozoo.causal.partial_ridge import DEFAULT_ALPHAS, PartialRidgeCV
from pyrozoo.errors import PyrozooError


def data(seed: int = 0, n: int = 150, p: int = 7):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) + rng.standard_normal(p)
    y = X @ rng.standard_normal(p) + 2.0 + rng.standard_normal(n)
    return X, y, rng.uniform(0.3, 3.0, n)


def normal_equations(X, y, w, n_free, alpha):
    """argmin sum_i w_i (y_i - [1, X_i] beta)^2 + alpha |beta_penalized|^2, solved directly."""
    Z = np.column_stack([np.ones(len(y)), X])
    pen = np.r_[np.zeros(1 + n_free), np.full(X.shape[1] - n_free, alpha)]
    return np.linalg.solve(Z.T @ (w[:, None] * Z) + np.diag(pen), Z.T @ (w * y))


@pytest.mark.parametrize("n_free", [0, 2, 7])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_the_normal_equations_at_the_chosen_penalty(n_free, weighted):
    X, y, w = data()
    w = w if weighted else np.ones(len(y))
    for alpha in (0.5, 30.0):
        est = PartialRidgeCV(n_free=n_free, alphas=(alpha,)).fit(X, y, sample_weight=w if weighted else None)
        beta = normal_equations(X, y, w, n_free, alpha)
        assert est.intercept_ == pytest.approx(beta[0], abs=1e-9)
        np.testing.assert_allclose(est.coef_, beta[1:], atol=1e-9)
        np.testing.assert_allclose(est.predict(X[:5]), beta[0] + X[:5] @ beta[1:], atol=1e-9)


def test_without_free_columns_it_is_ridgecv():
    """n_free = 0: the same penalty and predictions as scikit-learn's RidgeCV (intercept unpenalized)."""
    X, y, w = data(1)
    for sw in (None, w):
        ours = PartialRidgeCV().fit(X, y, sample_weight=sw)
        ref = RidgeCV(alphas=DEFAULT_ALPHAS).fit(X, y, sample_weight=sw)
        assert ours.alpha_ == ref.alpha_
        np.testing.assert_allclose(ours.predict(X), ref.predict(X), atol=1e-9)


def test_free_columns_are_not_shrunk():
    """Under a huge penalty the penalized coefficients vanish and the free ones are least squares on [1, F]."""
    X, y, _ = data(2)
    est = PartialRidgeCV(n_free=3, alphas=(1e12,)).fit(X, y)
    ols = np.linalg.lstsq(np.column_stack([np.ones(len(y)), X[:, :3]]), y, rcond=None)[0]
    np.testing.assert_allclose(est.free_coef_, ols[1:], atol=1e-8)
    assert np.abs(est.penalized_coef_).max() < 1e-8


def test_bad_input_is_refused_before_fitting():
    X, y, w = data()
    cases = [({"n_free": -1}, (X, y), {}, "n_free"), ({"n_free": 8}, (X, y), {}, "n_free: expected at most the 7"),
             ({"alphas": ()}, (X, y), {}, "alphas"), ({"alphas": (0.0,)}, (X, y), {}, "alphas"),
             ({}, (X[:, 0], y), {}, r"^X: expected a 2-D array \(samples, features\), got shape \(150,\)"),
             ({}, (X, y[:-1]), {}, r"^y: expected one value per row of X \(150\), got 149$"),
             ({}, (X, y), {"sample_weight": -w}, r"^sample_weight: expected weights >= 0, not all zero; got min -"),
             ({}, (X, y), {"sample_weight": 0 * w}, r"^sample_weight: expected weights >= 0, not all zero"),
             ({}, (X, y), {"sample_weight": w[:-1]}, r"^sample_weight: expected one weight per row of X \(150\)")]
    for kw, args, fit_kw, match in cases:
        with pytest.raises(PyrozooError, match=match):
            PartialRidgeCV(**kw).fit(*args, **fit_kw)
    est = PartialRidgeCV(n_free=2.0).fit(X, y)  # an integral float is an int
    assert est.free_coef_.shape == (2,)
    with pytest.raises(PyrozooError, match=r"^X has 3 features, but PartialRidgeCV is expecting 7 features as input"):
        est.predict(X[:, :3])


def _bad(kind: str, X: np.ndarray) -> np.ndarray | pd.DataFrame:
    if kind == "NaN":
        X = X.copy()
        X[3, 1] = np.nan
    elif kind == "inf":
        X = X.copy()
        X[3, 1] = -np.inf
    elif kind == "complex":
        X = X + 0j
    elif kind == "text":
        X = pd.DataFrame(X, columns=list("abcdefg")).astype({"c": str})
    elif kind == "categorical":
        X = pd.DataFrame(X, columns=list("abcdefg")).assign(c=pd.Categorical(np.arange(len(X)) % 3))
    return X


BAD_X = [("NaN", r"^X: expected finite values, found 1 non-finite \(NaN at index \(3, 1\)\)$"),
         ("inf", r"^X: expected finite values, found 1 non-finite \(inf at index \(3, 1\)\)$"),
         ("complex", r"^X: expected real numbers, got complex128$"),
         ("text", r"^X: expected numbers, got text values in column 'c'"),
         ("categorical", r"^X: expected numbers, got categorical column\(s\) \['c'\]")]


@pytest.mark.parametrize(("kind", "match"), BAD_X)
def test_non_finite_text_complex_and_categorical_data_are_refused_in_fit_and_predict(kind, match):
    """NaN/inf in X printed LAPACK's "DLASCL illegal value" and raised LinAlgError (NaN in predict returned NaN);
    complex X lost its imaginary part and text X was read as numbers."""
    X, y, w = data()
    with pytest.raises(PyrozooError, match=match):
        PartialRidgeCV(n_free=1).fit(_bad(kind, X), y)
    est = PartialRidgeCV(n_free=1).fit(X, y)
    with pytest.raises(PyrozooError, match=match):
        est.predict(_bad(kind, X))
    for name, bad_y, bad_w in (("y", np.r_[np.nan, y[1:]], None), ("sample_weight", y, np.r_[w[:-1], np.inf])):
        with pytest.raises(PyrozooError, match=rf"^{name}: expected finite values, found 1 non-finite"):
            PartialRidgeCV().fit(X, bad_y, sample_weight=bad_w)


@pytest.mark.parametrize("alphas", [(np.nan,), (1.0, np.inf), (1.0, np.nan), ("1.0",), (True,)])
def test_alphas_must_be_finite_and_positive(alphas):
    """``min(alphas) <= 0`` is False for NaN: alphas=(nan,) gave all-NaN coefficients without a word."""
    X, y, _ = data()
    with pytest.raises(PyrozooError, match=r"^alphas: expected one or more finite penalties > 0, got "):
        PartialRidgeCV(alphas=alphas).fit(X, y)


def test_predict_checks_the_fitted_columns_like_scikit_learn():
    """A DataFrame with the columns in another order gave other predictions silently; predict before fit raised
    AttributeError. Now n_features_in_ / feature_names_in_ are set in fit and checked in predict, and predict before
    fit raises scikit-learn's NotFittedError."""
    X, y, _ = data()
    df = pd.DataFrame(X, columns=[f"x{j}" for j in range(7)])
    with pytest.raises(NotFittedError):
        PartialRidgeCV().predict(X)
    est = PartialRidgeCV(n_free=2).fit(df, y)
    assert est.n_features_in_ == 7 and est.feature_names_in_.tolist() == list(df.columns)
    np.testing.assert_allclose(est.predict(df), PartialRidgeCV(n_free=2).fit(X, y).predict(X), rtol=1e-12)
    with pytest.raises(PyrozooError, match=r"^X: expected the columns seen in fit, in that order, .*\(the same names "
                                           r"in another order\)$"):
        est.predict(df[df.columns[::-1]])
    with pytest.raises(PyrozooError, match=r"^X: expected the columns seen in fit, .*\(missing \['x6'\], unexpected "
                                           r"\['z'\]\)$"):
        est.predict(df.rename(columns={"x6": "z"}))
    with pytest.warns(UserWarning, match="X does not have valid feature names"):  # scikit-learn's warning
        est.predict(X)
    with pytest.raises(PyrozooError, match=r"'x1' given more than once"):
        PartialRidgeCV().fit(df.rename(columns={"x2": "x1"}), y)
    refit = PartialRidgeCV().fit(X, y)  # a refit without names forgets them
    assert refit.n_features_in_ == 7 and not hasattr(refit, "feature_names_in_")
    with pytest.raises(PyrozooError, match=r"^X: expected a 2-D array \(samples, features\), got shape \(7,\); "
                                           r"Reshape your data"):
        refit.predict(X[0])


@pytest.mark.filterwarnings("ignore:Skipping check check_array_api_input")  # needs SCIPY_ARRAY_API set
def test_scikit_learn_estimator_checks():
    """scikit-learn's own estimator checks pass, apart from three about the wording or type of an error: pyrozoo's
    messages name the argument, what was expected and what came (and are ValueErrors, never TypeErrors)."""
    from sklearn.utils.estimator_checks import check_estimator

    wording = "pyrozoo's error message (a PyrozooError naming the argument), not scikit-learn's wording"
    expected = {"check_complex_data": wording, "check_estimators_empty_data_messages": wording,
                "check_dtype_object": "a dict in an object array is a PyrozooError (a ValueError), not a TypeError"}
    for est in (PartialRidgeCV(), PartialRidgeCV(n_free=1)):
        check_estimator(est, expected_failed_checks=expected)
