"""assemble_result: the constant_data group holds the model's non-observed tensor inputs, aligned with the data;
the Result pickles."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrozoo.errors import PyrozooError
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


# ------------------------------------------------------------------------------------------------------ pickle
def _spike_slab_result():
    from pyrozoo.models.spike_slab import pointwise_loglik, spike_slab_model

    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(9, 3, generator=gen, dtype=torch.float64), torch.randn(9, generator=gen, dtype=torch.float64)
    posterior = {"w": torch.randn(2, 4, 3, generator=gen, dtype=torch.float64),
                 "sigma2": torch.rand(2, 4, generator=gen, dtype=torch.float64) + 0.5,
                 "theta": torch.full((2, 4), 0.3, dtype=torch.float64)}
    return assemble_result("test", spike_slab_model, {"X": X, "y": y, "spike_var": 0.01, "slab_var": 10.0},
                           posterior, log_likelihood_fn=pointwise_loglik, seed=3)


def test_result_pickles_with_its_predictive_function():
    """The predictive function was a closure ("Can't pickle local object 'assemble_result.<locals>.predictive_fn'");
    the unpickled copy has every array and draws the same posterior predictive under the same seed."""
    import pickle

    result = _spike_slab_result()
    copy = pickle.loads(pickle.dumps(result))
    for group in ("posterior", "log_likelihood", "observed_data", "constant_data"):
        assert getattr(copy, group).keys() == getattr(result, group).keys()
        for k, v in getattr(result, group).items():
            np.testing.assert_array_equal(getattr(copy, group)[k], v)
    assert copy.dims == result.dims and copy.seed == 3 and copy.inference == "test"
    pyro.set_rng_seed(7)
    result.add_posterior_predictive()
    pyro.set_rng_seed(7)
    copy.add_posterior_predictive()
    assert copy.posterior_predictive["y"].shape == (2, 4, 9)
    np.testing.assert_array_equal(copy.posterior_predictive["y"], result.posterior_predictive["y"])


def test_unpicklable_guide_and_predictive_are_left_out_and_said_so():
    """A closure (SVI's structured guide, a wrapped predictive function) cannot go through the standard pickle: the
    Result pickles without it, and add_posterior_predictive names the reason. A deep copy keeps both."""
    import copy
    import pickle

    from pyrozoo.errors import PyrozooError

    result = _spike_slab_result()
    inner = result.predictive_fn

    def wrapped(res):
        return inner(res)

    result.predictive_fn, result.guide = wrapped, lambda **kw: None
    clone = pickle.loads(pickle.dumps(result))
    assert clone.guide is None and clone.predictive_fn is None
    np.testing.assert_array_equal(clone.posterior["w"], result.posterior["w"])
    with pytest.raises(PyrozooError, match="could not be pickled"):
        clone.add_posterior_predictive()
    assert result.predictive_fn is wrapped  # pickling does not touch the original
    deep = copy.deepcopy(result)
    assert deep.predictive_fn is wrapped and deep.guide is result.guide


def test_constant_data_names_the_feature_axis_when_there_are_as_many_observations_as_features():
    """n == d: the first axis is the observations' plate, so the second can only be ``feature``."""
    for n, d in [(3, 3), (5, 3)]:
        X = torch.randn(n, d, generator=torch.Generator().manual_seed(n))
        result = assemble_result("test", regression, {"X": X, "y": torch.zeros(n)}, {"w": torch.zeros(1, 2, d)})
        assert result.dims["X"] == ["obs_id", "feature"]
        assert result.to_inference_data().constant_data["X"].dims == ("obs_id", "feature")


def test_constant_data_leaves_an_axis_unnamed_when_two_other_plates_fit():
    def model(X, G, y=None):
        with pyro.plate("feature", X.shape[1]):
            w = pyro.sample("w", dist.Normal(torch.zeros(X.shape[1]), 1.0))
        with pyro.plate("group", G.shape[1]):
            pyro.sample("g", dist.Normal(torch.zeros(G.shape[1]), 1.0))
        with pyro.plate("obs_id", X.shape[0]):
            pyro.sample("y", dist.Normal(X @ w, 1.0), obs=y)

    X, G = torch.ones(3, 3), torch.ones(3, 3)
    result = assemble_result("test", model, {"X": X, "G": G, "y": torch.zeros(3)},
                             {"w": torch.zeros(1, 2, 3), "g": torch.zeros(1, 2, 3)})
    assert result.dims["X"] == ["obs_id", "X_dim_1"]  # feature or group: neither is taken


# ------------------------------------------------------------------------------------- posterior vs model latents
def test_a_posterior_missing_a_model_latent_is_an_error():
    """A missing latent would be drawn from its prior at every replay of the model: a wrong log-likelihood."""
    def model(X, y=None):
        scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
        with pyro.plate("feature", X.shape[1]):
            w = pyro.sample("w", dist.Normal(torch.zeros(X.shape[1]), 1.0))
        with pyro.plate("obs_id", X.shape[0]):
            pyro.sample("y", dist.Normal(X @ w, scale), obs=y)

    X, y = torch.ones(4, 2), torch.zeros(4)
    with pytest.raises(PyrozooError, match=r"^posterior: .*latent site\(s\) \['scale'\]; expected every latent site "
                                           r"\['scale', 'w'\], got \['w', 'sigma'\]; \['sigma'\] are not sites"):
        assemble_result("test", model, {"X": X, "y": y}, {"w": torch.zeros(1, 2, 2), "sigma": torch.ones(1, 2)})


def test_a_posterior_may_hold_more_than_the_latents_and_needs_no_enumerated_site():
    def model(X, y=None):
        with pyro.plate("feature", X.shape[1]):
            w = pyro.sample("w", dist.Normal(torch.zeros(X.shape[1]), 1.0))
            pyro.deterministic("w2", w**2)
        with pyro.plate("obs_id", X.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
            pyro.sample("y", dist.Normal(X @ w + z, 1.0), obs=y)

    def loglik(posterior, model_kwargs):
        return {"y": np.zeros((1, 2, 4))}

    X, y = torch.ones(4, 2), torch.zeros(4)
    result = assemble_result("test", model, {"X": X, "y": y},
                             {"w": torch.zeros(1, 2, 2), "w2": torch.zeros(1, 2, 2), "probs": torch.ones(1, 2)},
                             log_likelihood_fn=loglik)
    assert set(result.posterior) == {"w", "w2", "probs"}
