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
