"""The PLCE zoo entry's final-stage dataset (the estimator itself is tested in tests/causal/)."""

from __future__ import annotations

import pytest
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.models.plce import make_final_stage_dataset


@pytest.mark.parametrize("dtype", [torch.int64, "float64"])
def test_final_stage_dtype_must_be_floating(dtype):
    # checked before the estimator is touched: an integer dtype would have truncated the residuals
    with pytest.raises(PyrozooError, match="dtype: expected a floating torch dtype"):
        make_final_stage_dataset(None, dtype=dtype)
