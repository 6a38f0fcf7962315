"""PartialRidgeCV: ridge with unpenalized leading columns, checked against the closed-form normal equations."""

import numpy as np
import pytest
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
             ({}, (X[:, 0], y), {}, "X: expected shape"), ({}, (X, y[:-1]), {}, "X: expected shape"),
             ({}, (X, y), {"sample_weight": -w}, "sample_weight"),
             ({}, (X, y), {"sample_weight": w[:-1]}, "sample_weight: expected shape")]
    for kw, args, fit_kw, match in cases:
        with pytest.raises(PyrozooError, match=match):
            PartialRidgeCV(**kw).fit(*args, **fit_kw)
    est = PartialRidgeCV(n_free=2.0).fit(X, y)  # an integral float is an int
    assert est.free_coef_.shape == (2,)
    with pytest.raises(PyrozooError, match="X: expected shape"):
        est.predict(X[:, :3])
