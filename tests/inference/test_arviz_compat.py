"""ArviZ's summary and MCSE must work on zoo results whether or not numba is installed."""

from __future__ import annotations

import arviz as az
import numpy as np

from pyrozoo.inference.arviz_compat import disable_broken_arviz_numba


def test_mcse_sd_works_after_import_and_matches_numpy_formula():
    disable_broken_arviz_numba()
    x = np.random.default_rng(0).normal(size=(2, 400))
    value = float(az.mcse(x, method="sd"))
    # iid draws: mcse(sd) ~ sd / sqrt(2 n) within a loose factor
    assert 0.5 * x.std() / np.sqrt(2 * x.size) < value < 2 * x.std() / np.sqrt(2 * x.size)
    assert np.isfinite(az.summary(az.from_dict(posterior={"a": x}))["mcse_sd"]).all()
