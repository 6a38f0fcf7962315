"""Cross-fitting (pyrozoo.causal.crossfit): a design column constant on a fold's training rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from pyrozoo.causal.crossfit import ColumnSubset, constant_columns, crossfit_predict, make_folds
from pyrozoo.causal.plce import SpikeSlabLearner


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield


def test_a_column_constant_on_a_folds_training_rows_is_left_out_of_that_fold():
    """A rare category's dummy whose rows all fall in one held-out fold is constant on that fold's training rows;
    the spike-and-slab learner refused it ('X: column(s) [2] are constant ...; remove them', an index into the
    design, mid-fit). That fold now fits and predicts without it, the other folds are untouched, and the kept
    learner's selection covers every design column (the dropped one unselected) for the union refit."""
    rng = np.random.default_rng(0)
    n = 90
    folds = make_folds(n, 3, 1, seed=0)
    X = rng.standard_normal((n, 3))
    X[:, 2] = 0.0
    X[np.flatnonzero(folds[0] == 1)[:2], 2] = 1.0  # two rows, both in fold 1
    y = X[:, 0] + rng.standard_normal(n)
    assert constant_columns(X[folds[0] != 1]).tolist() == [False, False, True]
    cf = crossfit_predict(SpikeSlabLearner(), X, {"y": y}, folds=folds, keep_learners=True)
    for k in range(3):
        train, test = folds[0] != k, folds[0] == k
        cols = [0, 1] if k == 1 else [0, 1, 2]
        want = SpikeSlabLearner().fit(X[train][:, cols], y[train]).predict(X[test][:, cols])
        np.testing.assert_allclose(cf.predictions["y"][0, test], want, rtol=1e-12, atol=1e-12)
    learner = cf.learners["y"][0][1]
    assert isinstance(learner, ColumnSubset) and learner.selected_.shape == (3,) and not learner.selected_[2]
    assert not isinstance(cf.learners["y"][0][0], ColumnSubset)


def test_constant_columns_uses_the_learners_rounding_rule():
    X = np.column_stack([np.full(5, 3.0), 1e12 + np.arange(5) * 1e-4, np.arange(5.0), np.zeros(5)])
    assert constant_columns(X).tolist() == [True, True, False, True]
    assert constant_columns(X[:0]).tolist() == [False] * 4
