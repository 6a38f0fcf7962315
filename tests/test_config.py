"""RunConfig: the shared settings' checks."""

from __future__ import annotations

import pytest

from pyrozoo.config import RunConfig
from pyrozoo.errors import PyrozooError


def test_an_integral_float_seed_counts_as_the_integer_and_a_fraction_is_refused():
    """As the README says: seed = 1.0 (a TOML number written as a float) is seed 1, as num_samples = 20.0 is 20."""
    config = RunConfig(model="normal-gamma", seed=1.0, num_samples=20.0).validate()
    assert config.seed == 1 and type(config.seed) is int
    assert config.num_samples == 20 and type(config.num_samples) is int
    with pytest.raises(PyrozooError, match=r"^seed: expected an integer seed in \[0, 2\*\*32 - 1\].*got 1\.5$"):
        RunConfig(model="normal-gamma", seed=1.5).validate()
