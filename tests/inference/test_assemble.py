"""assemble_result: the constant_data group holds the model's non-observed tensor inputs, aligned with the data."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from pyrozoo.inference.assemble import assemble_result


def regression(X, y=None, prior_scale=2.0, label="x"):
    with pyro.plate("feature", X.shape[1]):
        w = pyro.sample("w", dist.Normal(torch.zeros(X.shape[1]), prior_scale))
    with pyro.plate("obs_id", X.shape[0]):
        pyro.sample("y", dist.Normal(X @ w, 1.0), obs=y)


def test_constant_data_holds_the_inputs_along_the_observations_plate():
    X = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    y = torch.randn(7, generator=torch.Generator().manual_seed(1))
    posterior = {"w": torch.randn(1, 5, 3, generator=torch.Generator().manual_seed(2))}
    idata = assemble_result("test", regression, {"X": X, "y": y, "prior_scale": torch.tensor(2.0), "label": "x"},
                            posterior).to_inference_data()
    cd = idata.constant_data
    assert set(cd.data_vars) == {"X", "prior_scale"}  # not the observations, not the string
    # the axes the data and the coefficients already use: x . w sums over `feature` in xarray
    assert cd["X"].dims == ("obs_id", "feature") and idata.posterior["w"].dims == ("chain", "draw", "feature")
    assert idata.observed_data["y"].dims == ("obs_id",)
    np.testing.assert_array_equal(cd["X"].values, X.numpy())
    assert cd["prior_scale"].dims == () and float(cd["prior_scale"]) == 2.0  # a 0-d setting stays 0-d
    eta = (cd["X"] * idata.posterior["w"]).sum("feature")
    assert eta.dims == ("obs_id", "chain", "draw")


def test_fitted_values_are_not_constant_data():
    """Type-II hyperparameters are passed to the model like inputs but were fitted: they live in params."""
    X, y = torch.ones(4, 2), torch.zeros(4)
    result = assemble_result("test", regression, {"X": X, "y": y, "prior_scale": torch.tensor(0.5)},
                             {"w": torch.zeros(1, 2, 2)}, params={"prior_scale": torch.tensor(0.5)})
    assert set(result.to_inference_data().constant_data.data_vars) == {"X"}


def test_observations_under_another_keyword_are_not_constant_data():
    def model(X, target=None):
        regression(X, target)

    X, y = torch.ones(4, 2), torch.zeros(4)
    idata = assemble_result("test", model, {"X": X, "target": y}, {"w": torch.zeros(1, 2, 2)}).to_inference_data()
    assert set(idata.constant_data.data_vars) == {"X"}
