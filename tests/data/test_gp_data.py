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


def test_concrete_response_moments_undo_the_split_standardization():
    """y_std * sd + mean is concrete's strength on the split's training rows (the GP loaders' response map)."""
    import numpy as np

    from pyrozoo.data.gp_data import concrete_response_moments, concrete_split_rows
    from pyrozoo.data.uci import load_uci

    _, y_std, _, _ = load_concrete_split(3)
    mean, sd = concrete_response_moments(3)
    raw = load_uci("concrete")[1][concrete_split_rows(3)[0]]
    np.testing.assert_allclose(y_std.numpy() * sd + mean, raw, rtol=1e-12)
