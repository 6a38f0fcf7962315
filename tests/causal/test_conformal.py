"""calibrate_band's checks of what the user's ``refit`` returns (the calibration itself is tested with the effect
curve, tests/causal/test_effect_curve.py)."""

from __future__ import annotations

import numpy as np
import pytest

from pyrozoo.causal.conformal import calibrate_band
from pyrozoo.errors import PyrozooError


@pytest.mark.parametrize(("refit", "got"), [
    (lambda ys: (ys[:3], np.ones(3)), "got 3 and 3 values"),  # was a raw broadcast ValueError (3,) vs (5,)
    (lambda ys: (ys, np.ones(4)), "got 5 and 4 values"),
    (lambda ys: ys, r"got an ndarray of shape \(5,\)"),
    (lambda ys: (ys, np.ones(5), 0), "got tuple of length 3"),
    (lambda ys: (ys, ["a"] * 5), "got non-numeric values"),
])
def test_refit_must_return_tau_and_variance_per_observation(refit, got):
    with pytest.raises(PyrozooError, match=r"^refit: expected a pair \(tau\*, V\*\) with tau\* one value per "
                                           r"observation \(5\) and V\* as many, or one number for all of them, "
                                           rf"{got}$"):
        calibrate_band(refit, np.zeros(5), np.ones(5), np.zeros(5), n_pseudo=2)


def test_refit_returning_lists_or_columns_of_n_values_is_read():
    """(tau*, V*) as lists or (n, 1) columns are n values each: the scores equal those of flat arrays."""
    flat = calibrate_band(lambda ys: (ys, np.full(5, 4.0)), np.zeros(5), np.ones(5), np.zeros(5), n_pseudo=3).scores
    as_lists = calibrate_band(lambda ys: (list(ys), [4.0] * 5), np.zeros(5), np.ones(5), np.zeros(5), n_pseudo=3)
    columns = calibrate_band(lambda ys: (ys[:, None], np.full((5, 1), 4.0)), np.zeros(5), np.ones(5), np.zeros(5),
                             n_pseudo=3)
    np.testing.assert_array_equal(as_lists.scores, flat)
    np.testing.assert_array_equal(columns.scores, flat)
    np.testing.assert_array_equal(np.abs(flat), 0.5 * np.ones((3, 5)))  # |+-1 - 0| / sqrt(4)


def test_refit_returning_two_rows_or_one_variance_is_read_as_before_the_check():
    """Before the check a (2, n) array unpacked as (tau*, V*) and a scalar V* broadcast; both still work and give
    the scores of the flat pair."""
    flat = calibrate_band(lambda ys: (ys, np.full(5, 0.25)), np.zeros(5), np.ones(5), np.zeros(5), n_pseudo=3).scores
    rows = calibrate_band(lambda ys: np.stack([ys, np.full(5, 0.25)]), np.zeros(5), np.ones(5), np.zeros(5),
                          n_pseudo=3).scores
    scalar = calibrate_band(lambda ys: (ys, 0.25), np.zeros(5), np.ones(5), np.zeros(5), n_pseudo=3).scores
    np.testing.assert_array_equal(rows, flat)
    np.testing.assert_array_equal(scalar, flat)
    np.testing.assert_array_equal(flat, 2.0 * np.ones((3, 5)))  # |+-1 - 0| / sqrt(0.25)


def test_refit_returning_a_tensor_of_two_rows_is_read_like_an_array():
    """A torch (2, n) tensor unpacked as (tau*, V*) before the check; after it only a NumPy one did."""
    import torch

    flat = calibrate_band(lambda ys: (ys, np.full(5, 0.25)), np.zeros(5), np.ones(5), np.zeros(5), n_pseudo=3).scores
    rows = calibrate_band(lambda ys: torch.stack([torch.as_tensor(ys), torch.full((5,), 0.25, dtype=torch.float64)]),
                          np.zeros(5), np.ones(5), np.zeros(5), n_pseudo=3).scores
    np.testing.assert_array_equal(rows, flat)
    one = calibrate_band(lambda ys: np.array([ys[0], 0.25]), np.zeros(1), np.ones(1), np.zeros(1), n_pseudo=2).scores
    np.testing.assert_array_equal(one, 2.0 * np.ones((2, 1)))  # n = 1: a (2,) array is the pair, as before


def test_refit_returning_tensors_that_require_grad_in_a_tuple_or_list_is_read():
    """Only the stacked (2, n) tensor was detached: a tuple or list of tensors that require grad (a refit by
    autograd) was a raw "Can't call numpy() on Tensor that requires grad". They give the scores of the arrays."""
    import torch

    flat = calibrate_band(lambda ys: (ys, np.full(5, 4.0)), np.zeros(5), np.ones(5), np.zeros(5), n_pseudo=3).scores
    for pack in (tuple, list):
        out = calibrate_band(lambda ys, pack=pack: pack((torch.as_tensor(ys).requires_grad_(),
                                                         torch.full((5,), 4.0, dtype=torch.float64,
                                                                    requires_grad=True))),
                             np.zeros(5), np.ones(5), np.zeros(5), n_pseudo=3)
        np.testing.assert_array_equal(out.scores, flat)


@pytest.mark.parametrize(("refit", "got"), [
    (lambda ys: (ys[:3], 1.0), "got 3 values and one number"),  # said "got 3 and 5 values": V* counted broadcast
    (lambda ys: (ys[:1], np.float64(2.0)), "got 1 value and one number"),
    (lambda ys: (1.0, np.ones(5)), "got one number and 5 values"),
])
def test_a_length_mismatch_says_a_scalar_variance_was_one_number(refit, got):
    with pytest.raises(PyrozooError, match=rf"^refit: expected a pair .*or one number for all of them, {got}$"):
        calibrate_band(refit, np.zeros(5), np.ones(5), np.zeros(5), n_pseudo=2)
