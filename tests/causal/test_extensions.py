"""Tests of pyrozoo.causal.extensions."""

from __future__ import annotations

import numpy as np

from pyrozoo.causal.extensions import sparse_pairs, white_features


def test_sparse_pairs_give_a_continuous_covariate_no_mode():
    """White's regressors drop the products the control basis would: a continuous covariate (no repeated value) is
    off its mode on every row, so its product with a dummy of 10 ones has support 10 wherever its minimum falls
    (before, on a row of the dummy's 1s, 9, and the pair was dropped at the bound 10)."""
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.standard_normal(200), np.zeros(200)])
    X[:10, 1] = 1.0
    X[0, 0] = X[:, 0].min() - 1.0
    assert sparse_pairs(X, 10) == []
    np.testing.assert_array_equal(white_features(X, 10), white_features(X))
    X[9, 1] = 0.0
    assert sparse_pairs(X, 10) == [(0, 1, 9)]
