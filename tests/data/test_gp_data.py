"""The concrete split for the GP models: bad settings are clear errors before the data are loaded."""

from __future__ import annotations

import pytest
import torch

from pyrozoo.data.gp_data import load_concrete_split
from pyrozoo.errors import PyrozooError


@pytest.mark.parametrize("dtype", [torch.int64, "float64"])
def test_split_takes_a_floating_dtype_only(dtype):
    with pytest.raises(PyrozooError, match="dtype: expected a floating torch dtype"):
        load_concrete_split(0, dtype=dtype)
