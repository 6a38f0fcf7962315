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


def test_concrete_input_moments_undo_the_split_standardization():
    """X_std * sd + mean is concrete's inputs (age as log days) on the split's training and test rows: the GP
    loaders record these moments (meta x_mean, x_scale; attrs input_shift, input_scale), which they dropped."""
    import numpy as np

    from pyrozoo.data.gp_data import concrete_input_moments, concrete_split_rows
    from pyrozoo.data.uci import load_uci

    X_std, _, Xt_std, _ = load_concrete_split(3)
    mean, sd = concrete_input_moments(3)
    raw = load_uci("concrete")[0]
    raw[:, -1] = np.log(raw[:, -1])
    train, test = concrete_split_rows(3)
    np.testing.assert_allclose(X_std.numpy() * sd + mean, raw[train], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Xt_std.numpy() * sd + mean, raw[test], rtol=1e-12, atol=1e-12)
