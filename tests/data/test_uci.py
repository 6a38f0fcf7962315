"""The shared regression splits: bad settings are clear errors before any data are touched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pyrozoo.data.uci import split_regression
from pyrozoo.errors import PyrozooError


def test_split_takes_a_floating_dtype_only():
    X, y = np.random.default_rng(0).normal(size=(20, 2)), np.linspace(0.0, 1.0, 20)
    assert split_regression(X, y, dtype=torch.float64).X_train.dtype == torch.float64
    for dtype in (torch.int64, "float32"):  # int64 truncated the standardized data to integers
        with pytest.raises(PyrozooError, match="dtype: expected a floating torch dtype"):
            split_regression(X, y, dtype=dtype)


def test_the_split_records_each_row_s_original_label():
    import pandas as pd

    X, y = np.random.default_rng(0).normal(size=(20, 2)), np.linspace(0.0, 1.0, 20)
    split = split_regression(X, y, split=4, test_fraction=0.25, dtype=torch.float64)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(4)).tolist()
    assert split.test_rows == perm[:5] and split.train_rows == perm[5:]
    torch.testing.assert_close(split.y_train * split.y_std + split.y_mean, torch.tensor(y[perm[5:]]))
    labels = [f"r{i}" for i in range(20)]
    named = split_regression(pd.DataFrame(X, index=labels), y, split=4, test_fraction=0.25)
    assert named.train_rows == [labels[i] for i in perm[5:]]
    repeated = split_regression(pd.DataFrame(X, index=[0, 1] * 10), y, split=4, test_fraction=0.25)
    assert repeated.train_rows == perm[5:]  # repeated index labels cannot label rows: the row numbers do


def test_split_resolves_device_before_any_work():
    """``device`` went to torch at the end of the split: "auto" failed with torch's RuntimeError, "gpu" got torch's
    list of device types, and "cuda" without CUDA torch's "not compiled with CUDA" AssertionError."""
    from pyrozoo.data.uci import uci_split

    X, y = np.random.default_rng(0).normal(size=(20, 2)), np.arange(20.0)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert split_regression(X, y, device="auto").X_train.device.type == expected
    with pytest.raises(PyrozooError, match=r"^device: expected one of auto, cpu, cuda, cuda:N; got 'gpu'"):
        split_regression(X, y, device="gpu")
    with pytest.raises(PyrozooError, match=r"^device: expected one of auto, cpu, cuda, cuda:N; got 'gpu'"):
        uci_split("concrete", device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(PyrozooError, match=r"^device: 'cuda' was asked for but CUDA is not available"):
            split_regression(X, y, device="cuda")


@pytest.mark.parametrize("n,test_fraction,need", [(4, 0.1, 5), (7, 0.5, 8), (35, 0.9, 36)])
def test_a_split_leaving_too_few_training_rows_says_so(n, test_fraction, need):
    """4 rows split 90/10 left 3 to train on, and the fit then refused an X of shape (3, d) the caller never gave."""
    from pyrozoo.data.uci import min_split_rows

    X, y = np.random.default_rng(0).normal(size=(n, 2)), np.linspace(0.0, 1.0, n)
    assert min_split_rows(test_fraction) == need
    with pytest.raises(PyrozooError, match=rf"^X: expected at least {need} rows, so that 4 are left to train on after "
                                           rf"test_fraction={test_fraction} holds out \d+ for testing; got {n}$"):
        split_regression(X, y, test_fraction=test_fraction)
    X, y = np.random.default_rng(0).normal(size=(need, 2)), np.linspace(0.0, 1.0, need)
    assert split_regression(X, y, test_fraction=test_fraction).X_train.shape[0] == 4


def test_a_constant_outcome_is_refused_with_the_readers_wording():
    """A constant y was accepted and its sd of 0 quietly set to 1 (the --data reader refuses it as nothing to fit);
    a y that varies only on the test rows of the split likewise."""
    X = np.random.default_rng(0).normal(size=(50, 2))
    for value in (3.0, 0.1):
        with pytest.raises(PyrozooError, match=rf"^y: expected an outcome that varies, got a constant \({value}\); "
                                               rf"nothing to fit$"):
            split_regression(X, np.full(50, value))
    y = np.zeros(50)
    y[torch.randperm(50, generator=torch.Generator().manual_seed(0))[0]] = 1.0  # split 0's first test row
    with pytest.raises(PyrozooError, match=r"^y: expected an outcome that varies, got a constant \(0.0\) on the 45 "
                                           r"training rows of split 0 \(.*try another split\); nothing to fit$"):
        split_regression(X, y, split=0)
    assert split_regression(X, y, split=1).y_std > 0  # another split trains on the varying row
