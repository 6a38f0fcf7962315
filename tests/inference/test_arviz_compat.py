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


def test_fewer_draws_than_chains_ok_hides_that_warning_and_no_other():
    """az.from_dict warns "More chains (4) than draws (1)" on a (chain, draw) array with 4 chains of one draw, whose
    shape is right; the helper hides exactly that warning."""
    import warnings

    from pyrozoo.inference.arviz_compat import fewer_draws_than_chains_ok

    x = np.zeros((4, 1, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        az.from_dict(posterior={"a": x})
    assert any("More chains (4) than draws (1)" in str(w.message) for w in caught)  # ArviZ still says it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with fewer_draws_than_chains_ok():
            idata = az.from_dict(posterior={"a": x})
            warnings.warn("another UserWarning", UserWarning, stacklevel=1)
            warnings.warn("More chains than you think", RuntimeWarning, stacklevel=1)
    assert idata.posterior["a"].shape == (4, 1, 2)
    assert [str(w.message) for w in caught] == ["another UserWarning", "More chains than you think"]
