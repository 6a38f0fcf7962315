"""assemble_result: the constant_data group holds the model's non-observed tensor inputs, aligned with the data;
the Result pickles."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import constraints

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
    # three plates of length 3 and two axes: X may lie along group rather than obs_id (as a group-level input would),
    # so neither axis is named; feature or group on the second axis: neither is taken
    assert result.dims["X"] == ["X_dim_0", "X_dim_1"]


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


# -------------------------------------------------------------------------- the fit's own pyro.param values
SIGMA_N = 50


def _param_model(y=None):
    sigma = pyro.param("sigma", torch.tensor(1.0), constraint=constraints.positive)
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("obs_id", SIGMA_N):
        return pyro.sample("y", dist.Normal(mu, sigma), obs=y)


def test_log_likelihood_and_predictive_use_the_fits_params_not_the_global_store():
    """The predictive was drawn from whatever Pyro's param store held when asked: another fit's sigma, or its
    initial value after pyro.clear_param_store()."""
    y = torch.randn(SIGMA_N)
    pyro.param("sigma", torch.tensor(0.3), constraint=constraints.positive)  # another fit's value
    seen = []

    def loglik(posterior, model_kwargs):
        seen.append(float(pyro.param("sigma")))  # a custom log-likelihood reads the fit's value too
        return {"y": dist.Normal(posterior["mu"][..., None], 3.0).log_prob(y).numpy()}

    posterior = {"mu": torch.zeros(1, 200)}
    result = assemble_result("test", _param_model, {"y": y}, posterior, params={"sigma": torch.tensor(3.0)})
    assert np.allclose(result.log_likelihood["y"], dist.Normal(0.0, 3.0).log_prob(y).numpy(), atol=1e-5)
    # sd of 200 x 50 normal draws: se = 3 / sqrt(2 * 10^4) = 0.021; 0.15 is 7 se (0.3 or 1.0 were the old answers)
    assert abs(result.to_inference_data(posterior_predictive=True).posterior_predictive["y"].std() - 3.0) < 0.15
    pyro.clear_param_store()
    result.posterior_predictive = {}
    assert abs(result.to_inference_data(posterior_predictive=True).posterior_predictive["y"].std() - 3.0) < 0.15
    assert "sigma" not in pyro.get_param_store()  # nor did the replay create the site's initial value there
    assemble_result("test", _param_model, {"y": y}, posterior, params={"sigma": torch.tensor(3.0)},
                    log_likelihood_fn=loglik)
    assert seen == [3.0]


def test_run_svi_results_keep_their_sigma_after_another_fit():
    from pyro.infer.autoguide import AutoNormal

    from pyrozoo.inference.svi import run_svi

    a, b = 3.0 * torch.randn(SIGMA_N), 0.3 * torch.randn(SIGMA_N)
    fit_a = run_svi(_param_model, AutoNormal(_param_model), {"y": a}, num_steps=60, lr=0.1, num_samples=100,
                    progress=False)
    run_svi(_param_model, AutoNormal(_param_model), {"y": b}, num_steps=60, lr=0.1, num_samples=10, progress=False)
    sigma_a = float(fit_a.params["sigma"])
    assert sigma_a > 1.5  # moved from 1 towards 3
    sd = float(fit_a.to_inference_data(posterior_predictive=True).posterior_predictive["y"].std())
    # 100 x 50 draws: se of the sd about sigma / 100, plus the spread of the mu draws (guide scale ~ 0.1 - 1)
    assert abs(sd - sigma_a) < 0.15 * sigma_a


# ------------------------------------------------------------------------- a log_likelihood_fn's output
def _mixture(y=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    with pyro.plate("obs_id", 6):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def _ll(mu, y):
    return dist.Normal(torch.as_tensor(mu)[..., None], 1.0).log_prob(y)


@pytest.mark.parametrize("fn,match", [
    (lambda p, kw: {"y": _ll(p["mu"], kw["y"]).reshape(6, 6).numpy()},
     r"for observed site 'y' has shape \(6, 6\); expected \(2, 3, 6\): \(chain, draw, \*obs batch shape\)"),
    (lambda p, kw: {"y": _ll(p["mu"], kw["y"]).sum(-1).numpy()},
     r"for observed site 'y' has shape \(2, 3\); expected \(2, 3, 6\)"),
    (lambda p, kw: {"obs": _ll(p["mu"], kw["y"]).numpy()},
     r"array named 'obs', which is no observed site of the model; expected arrays named after the observed "
     r"site\(s\) \['y'\]"),
], ids=["flat-draws", "summed", "wrong-name"])
def test_a_log_likelihood_fn_of_the_wrong_shape_or_name_is_an_error(fn, match):
    """They were taken as they came: misaligned log_likelihood groups and a wrong az.loo."""
    y = torch.randn(6)
    with pytest.raises(PyrozooError, match=rf"^log_likelihood_fn: .*{match}"):
        assemble_result("test", _mixture, {"y": y}, {"mu": torch.zeros(2, 3)}, log_likelihood_fn=fn)
    ok = assemble_result("test", _mixture, {"y": y}, {"mu": torch.zeros(2, 3)},
                         log_likelihood_fn=lambda p, kw: {"y": _ll(p["mu"], kw["y"]).numpy()})
    assert ok.log_likelihood["y"].shape == (2, 3, 6)
    assert assemble_result("test", _mixture, {"y": y}, {"mu": torch.zeros(2, 3)},
                           log_likelihood_fn=lambda p, kw: {}).log_likelihood == {}  # opting out stays allowed


def test_a_joint_log_likelihood_over_several_observed_sites_may_take_its_own_name():
    """regime-scm's: one value per row over the row's variables x1, x2, named x."""
    def model(x1=None, x2=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        with pyro.plate("obs_id", 4):
            pyro.sample("x1", dist.Normal(mu, 1.0), obs=x1)
            pyro.sample("x2", dist.Normal(mu, 1.0), obs=x2)

    kw = {"x1": torch.zeros(4), "x2": torch.zeros(4)}
    result = assemble_result("test", model, kw, {"mu": torch.zeros(1, 2)},
                             log_likelihood_fn=lambda p, k: {"x": np.zeros((1, 2, 4))})
    assert result.log_likelihood["x"].shape == (1, 2, 4)
    with pytest.raises(PyrozooError, match=r"'x' \(joint over \['x1', 'x2'\]\) has shape \(1, 2\)"):
        assemble_result("test", model, kw, {"mu": torch.zeros(1, 2)},
                        log_likelihood_fn=lambda p, k: {"x": np.zeros((1, 2))})


def test_a_deterministic_of_an_enumerated_site_without_draws_is_left_out_with_a_warning():
    """A replay would draw z from its prior: shift would be mu + 10 * z at a random z, shown as a posterior."""
    def model(y=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        z = pyro.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
        pyro.deterministic("shift", mu + 10 * z)
        with pyro.plate("obs_id", 4):
            pyro.sample("y", dist.Normal(mu + 10 * z, 1.0), obs=y)

    pyro.set_rng_seed(0)
    with pytest.warns(UserWarning, match=r"pyro.deterministic site\(s\) \['shift'\] are left out of the posterior: "
                                         r"they may depend on the enumerated site\(s\) \['z'\]"):
        result = assemble_result("test", model, {"y": torch.zeros(4)}, {"mu": torch.zeros(1, 3)},
                                 log_likelihood_fn=lambda p, kw: {"y": np.zeros((1, 3, 4))})
    assert set(result.posterior) == {"mu"}


def test_check_pointwise_size_names_the_settings_the_observations_and_the_size():
    """The reviewer's n = 2,000,000, 4 chains x 2000 draws: 1.6e10 pointwise values, OOM-killed after ten minutes."""
    from pyrozoo.inference import assemble

    # the bound keeps the measured peak (POINTWISE_BYTES_PER_VALUE) well under 8 GiB with the ~0.5 GB interpreter
    assert assemble.MAX_POINTWISE_VALUES * assemble.POINTWISE_BYTES_PER_VALUE + 0.5e9 < 7.5 * 2**30
    with pytest.raises(PyrozooError, match=r"^num_samples=2000, num_chains=4 with 2,000,000 observations: the "
                                           r"pointwise log-likelihood would hold 16,000,000,000 values .*"
                                           r"num_samples x num_chains at most 75.*--no-log-likelihood"):
        assemble.check_pointwise_size(4, 2000, 2_000_000)
    limit = assemble.MAX_POINTWISE_VALUES
    assemble.check_pointwise_size(1, limit, 1)  # at the limit: accepted
    assemble.check_pointwise_size(1, limit, 1, log_likelihood=False, posterior_predictive=True)
    with pytest.raises(PyrozooError, match=r"the pointwise log-likelihood and the posterior predictive would hold "
                                           r".*leave out --posterior-predictive"):
        assemble.check_pointwise_size(1, limit // 2 + 1, 1, posterior_predictive=True)  # two arrays count twice
    assemble.check_pointwise_size(4, 2000, 2_000_000, log_likelihood=False)  # nothing pointwise is built


def test_assemble_result_leaves_out_an_oversized_log_likelihood_with_a_warning(monkeypatch):
    """From Python (an engine called directly) the size is checked before any replay of the model, and an oversized
    log-likelihood, which the caller never asked for, is left out with a warning (it raised, after the fit, for
    SpikeSlabRegression's default 1000 draws at n = 160,000); inside without_log_likelihood() neither the check nor
    the log-likelihood runs, without a warning."""
    import warnings

    from pyrozoo.inference import assemble

    X = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    y = torch.randn(7, generator=torch.Generator().manual_seed(1))
    posterior = {"w": torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(2))}  # 2 x 5 x 7 = 70 values

    def never(*args, **kwargs):
        raise AssertionError("the pointwise log-likelihood was computed")

    monkeypatch.setattr(assemble, "pointwise_log_likelihood", never)
    monkeypatch.setattr(assemble, "MAX_POINTWISE_VALUES", 69)
    with pytest.warns(UserWarning, match=r"^the pointwise log-likelihood is left out of the result \(no log_likelihood "
                                         r"group: az.loo, az.waic and az.compare will not work on it\): num_samples=5, "
                                         r"num_chains=2 with 7 observations: .* 70 values .* over the limit of 69 "
                                         r"values.*at most 9\).*MAX_POINTWISE_VALUES.*without_log_likelihood"):
        result = assemble_result("test", regression, {"X": X, "y": y}, posterior, log_likelihood_fn=never)
    result.attrs["log_likelihood"] = "a note on the log-likelihood"
    idata = result.to_inference_data()
    assert result.log_likelihood == {} and "log_likelihood" not in idata.groups()
    assert "log_likelihood" not in idata.attrs  # no note on a group the result lacks
    assert result.observed_data["y"].shape == (7,) and result.posterior["w"].shape == (2, 5, 3)
    with assemble.without_log_likelihood(), warnings.catch_warnings():
        warnings.simplefilter("error")
        result = assemble_result("test", regression, {"X": X, "y": y}, posterior, log_likelihood_fn=never)
    assert not assemble.log_likelihood_skipped()  # reset on leaving the block
    assert result.log_likelihood == {}
    assert "log_likelihood" not in result.to_inference_data().groups()
    monkeypatch.setattr(assemble, "MAX_POINTWISE_VALUES", 70)
    with pytest.raises(AssertionError, match="was computed"):  # at the limit: checked, then computed
        assemble_result("test", regression, {"X": X, "y": y}, posterior)


def test_the_size_refusal_offers_only_ways_out_that_get_under_the_limit():
    """With the log-likelihood and the posterior predictive each over the limit on its own, the message offered
    dropping either one, and each alone was refused again; it now says both are needed. When each alone fits,
    either one is offered."""
    from pyrozoo.errors import PyrozooError
    from pyrozoo.inference.assemble import check_pointwise_size

    with pytest.raises(PyrozooError) as both:
        check_pointwise_size(2, 1000, 100, posterior_predictive=True, limit=150_000)
    assert "; or leave out --posterior-predictive and pass --no-log-likelihood" in str(both.value)
    assert "; or pass --no-log-likelihood" not in str(both.value)
    with pytest.raises(PyrozooError) as either:
        check_pointwise_size(2, 500, 100, posterior_predictive=True, limit=150_000)
    assert "; or leave out --posterior-predictive; or pass --no-log-likelihood" in str(either.value)


def test_an_oversized_log_likelihood_is_refused_where_the_run_checked_its_size_before_the_fit(monkeypatch):
    """Inside pointwise_size_checked() (run_model, whose check before the fit let the run through with the
    log-likelihood asked for), a log-likelihood larger than that estimate is refused, not dropped with a warning."""
    from pyrozoo.inference import assemble

    X = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    y = torch.randn(7, generator=torch.Generator().manual_seed(1))
    posterior = {"w": torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(2))}
    monkeypatch.setattr(assemble, "MAX_POINTWISE_VALUES", 69)
    with assemble.pointwise_size_checked(), pytest.raises(PyrozooError, match=r"^num_samples=5, num_chains=2 with 7 "
                                                                                r"observations: .*--no-log-likelihood"):
        assemble_result("test", regression, {"X": X, "y": y}, posterior)
    with pytest.warns(UserWarning, match="left out"):  # reset on leaving the block
        assemble_result("test", regression, {"X": X, "y": y}, posterior)


def test_the_log_likelihood_note_is_kept_with_the_group():
    """attrs["log_likelihood"] (an EM fit's "conditional on point estimates") describes the log_likelihood group:
    kept where the group is, left out of the InferenceData where it is not (--no-log-likelihood)."""
    from pyrozoo.inference import assemble

    X = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    y = torch.randn(7, generator=torch.Generator().manual_seed(1))
    posterior = {"w": torch.randn(1, 5, 3, generator=torch.Generator().manual_seed(2))}
    result = assemble_result("test", regression, {"X": X, "y": y}, posterior)
    result.attrs.update(log_likelihood="a note on the log-likelihood", other="kept")
    idata = result.to_inference_data()
    assert "log_likelihood" in idata.groups() and idata.attrs["log_likelihood"] == "a note on the log-likelihood"
    with assemble.without_log_likelihood():
        result = assemble_result("test", regression, {"X": X, "y": y}, posterior)
    result.attrs.update(log_likelihood="a note on the log-likelihood", other="kept")
    idata = result.to_inference_data()
    assert "log_likelihood" not in idata.groups() and "log_likelihood" not in idata.attrs
    assert idata.attrs["other"] == "kept" and result.attrs["log_likelihood"] == "a note on the log-likelihood"


def test_check_pointwise_size_counts_a_joint_log_likelihood_and_names_only_the_settings_read():
    """A log-likelihood joint over a row's values (regime-scm: n rows) and a posterior predictive of every observed
    value (n x variables) are sized apart, and a way out is offered only if it gets under the limit; an inference
    that reads neither num_samples nor num_chains (regime-scm's em) is not told to lower them."""
    from pyrozoo.inference.assemble import check_pointwise_size

    check_pointwise_size(1, 1, 300, posterior_predictive=True, predictive_values=1500, limit=1800)
    with pytest.raises(PyrozooError, match=r"^300 observations \(1,500 observed values\): the pointwise "
                                           r"log-likelihood \(300\) and the posterior predictive \(1,500\) would hold "
                                           r"1,800 values .*over the limit of 1,499 values .*use fewer observations; "
                                           r"or leave out --posterior-predictive$"):  # without it, 1,500 still over
        check_pointwise_size(1, 1, 300, posterior_predictive=True, predictive_values=1500, limit=1499, settings=())
    with pytest.raises(PyrozooError, match=r"^num_samples=30 with 40 observations: .*fewer draws \(num_samples at "
                                           r"most 29\)"):
        check_pointwise_size(1, 30, 40, limit=1199, settings=("num_samples",))
    with pytest.raises(PyrozooError, match=r"^1,500 observed values: the posterior predictive would hold 1,500"):
        check_pointwise_size(1, 1, 300, log_likelihood=False, posterior_predictive=True, predictive_values=1500,
                             limit=1000, settings=())


def _normal_mean(x=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 3.0))
    with pyro.plate("obs_id", 30):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


@pytest.mark.parametrize("shape", [(2, 100, 30), (2, 100, 1), (100,), ()])
def test_draws_of_a_scalar_site_in_another_shape_are_refused_naming_it(shape):
    """(2, 100, 30) draws of a scalar mu were accepted (a spurious mu_dim_0, one mu per observation), (100,) gave a
    bare IndexError."""
    x = torch.randn(30, generator=torch.Generator().manual_seed(0))
    got = str(shape).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(PyrozooError, match=rf"^posterior: the draws of site 'mu' have shape {got}; expected \(chain, "
                                           rf"draw\), i.e. \(chain, draw, \*site_shape\) with the site's shape \(\) "
                                           rf"in the model$"):
        assemble_result("exact", _normal_mean, {"x": x}, {"mu": torch.randn(shape)})


@pytest.mark.parametrize("shape", [(100, 3), (2, 100, 4), (2, 100, 3, 1)])
def test_draws_of_a_vector_site_in_another_shape_are_refused_naming_it(shape):
    """These raised torch's matmul RuntimeError from inside the replay."""
    X = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    y = torch.randn(7, generator=torch.Generator().manual_seed(1))
    got = str(shape).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(PyrozooError, match=rf"site 'w' have shape {got}; expected \(chain, draw, 3\)"):
        assemble_result("exact", regression, {"X": X, "y": y}, {"w": torch.randn(shape)})


def test_draws_whose_chains_and_draws_disagree_between_sites_are_refused():
    def model(x=None):
        a = pyro.sample("a", dist.Normal(0.0, 1.0))
        b = pyro.sample("b", dist.Normal(0.0, 1.0))
        with pyro.plate("obs_id", 4):
            pyro.sample("x", dist.Normal(a + b, 1.0), obs=x)

    with pytest.raises(PyrozooError, match=r"site 'b' have shape \(2, 50\); expected \(chain, draw\) = \(2, 40\) "
                                           r"first, as the draws of 'a' have"):
        assemble_result("exact", model, {"x": torch.zeros(4)}, {"a": torch.zeros(2, 40), "b": torch.zeros(2, 50)})


def test_an_empty_posterior_of_a_model_without_latent_sites_is_refused():
    def model(y=None):
        with pyro.plate("obs_id", 5):
            pyro.sample("y", dist.Poisson(2.0), obs=y)

    with pytest.raises(PyrozooError, match="model: assemble_result needs a latent sample site to infer"):
        assemble_result("exact", model, {"y": torch.ones(5)}, {})


def test_numpy_draws_and_misshaped_deterministic_draws_are_refused_naming_the_site():
    """NumPy draws passed the shape check and failed in the replay ("'numpy.float64' object has no attribute
    'dim'"); a pyro.deterministic site's draws were not checked (IndexError inside assemble_result)."""
    import numpy as np

    def model(x=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 3.0))
        pyro.deterministic("twice", 2 * mu)
        with pyro.plate("obs_id", 30):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    x = torch.randn(30, generator=torch.Generator().manual_seed(0))
    with pytest.raises(PyrozooError, match=r"^posterior: the draws of site 'mu' are a ndarray; expected a torch "
                                           r"tensor"):
        assemble_result("exact", model, {"x": x}, {"mu": np.zeros((2, 3))})
    with pytest.raises(PyrozooError, match=r"^posterior: the draws of site 'twice' have shape \(5,\); expected "
                                           r"\(chain, draw\)"):
        assemble_result("exact", model, {"x": x}, {"mu": torch.zeros(2, 3), "twice": torch.zeros(5)})
    res = assemble_result("exact", model, {"x": x}, {"mu": torch.zeros(2, 3), "twice": torch.zeros(2, 3)})
    assert res.log_likelihood["x"].shape == (2, 3, 30)


@pytest.mark.parametrize("posterior, match", [
    ({"mu": torch.zeros(2, 3), "junk": torch.zeros(2, 4)},
     r"^posterior: the entry 'junk' \(no latent site of the model\) has shape \(2, 4\); expected \(chain, draw, "
     r"\.\.\.\) = \(2, 3\) first, as the draws of 'mu' have"),
    ({"mu": torch.zeros(2, 3), "junk": torch.zeros(4)},
     r"^posterior: the entry 'junk' \(no latent site of the model\) has shape \(4,\); expected \(chain, draw, "
     r"\.\.\.\) = \(2, 3\) first"),
    ({"mu": torch.zeros(2, 3), "junk": [0.0] * 6},
     r"^posterior: the entry 'junk' \(no latent site of the model\) is a list; expected a torch tensor"),
    ({"mu": torch.zeros(2, 0)},
     r"^posterior: the draws of 'mu' have shape \(2, 0\), 2 chain\(s\) of 0 draw\(s\); expected \(chain, draw, "
     r"\.\.\.\) with at least one chain and one draw$"),
    ({"mu": torch.zeros(0, 3)}, r"^posterior: the draws of 'mu' have shape \(0, 3\), 0 chain\(s\) of 3 draw\(s\)"),
])
def test_posterior_entries_that_are_no_site_or_hold_no_draws_are_refused_naming_them(posterior, match):
    """Entries that are no model site were not checked ('junk' of shape (2, 4) beside (2, 3) draws: torch's "shape
    '[6]' is invalid for input of size 8"; of shape (4,): IndexError), nor were zero chains or draws (IndexError)."""
    x = torch.randn(30, generator=torch.Generator().manual_seed(0))
    with pytest.raises(PyrozooError, match=match):
        assemble_result("exact", _normal_mean, {"x": x}, posterior)


def test_extra_posterior_entries_with_the_draws_chains_and_draws_are_kept():
    x = torch.randn(30, generator=torch.Generator().manual_seed(0))
    res = assemble_result("exact", _normal_mean, {"x": x},
                          {"mu": torch.zeros(2, 3), "probs": torch.ones(2, 3, 4), "stat": np.ones((2, 3))})
    assert set(res.posterior) == {"mu", "probs", "stat"}
    assert res.log_likelihood["x"].shape == (2, 3, 30)


def test_a_posterior_entry_named_after_an_observed_site_is_refused():
    """An entry named like the observed site (pyro.infer.Predictive's output holds it) passed as 'no latent site':
    the replay scored and replicated its values instead of the data (posterior predictive sd 0, the log-likelihood
    at the zeros). Now it is refused, naming the site."""
    import pyro
    import pyro.distributions as dist

    def model(y=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("obs_id", 5):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    y = torch.randn(5, generator=torch.Generator().manual_seed(0))
    post = {"mu": torch.zeros(2, 10), "y": torch.zeros(2, 10, 5)}
    with pytest.raises(PyrozooError, match=r"^posterior: the entry 'y' is an observed site of the model"):
        assemble_result("x", model, {"y": y}, post)


def test_result_params_are_host_copies_of_the_tensors_given():
    """assemble_result keeps its own copy of each param tensor: changing the live tensor afterwards (as a later fit
    of a PyroModule's nn.Parameter or a reused guide does) leaves the Result's value alone; other entries pass."""
    from pyrozoo.inference.assemble import owned_params

    live = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    X = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    posterior = {"w": torch.randn(1, 5, 3, generator=torch.Generator().manual_seed(2))}
    res = assemble_result("test", regression, {"X": X, "y": torch.zeros(7)}, posterior,
                          params={"live": live, "n": 3})
    with torch.no_grad():
        live.add_(10.0)
    assert torch.equal(res.params["live"], torch.tensor([1.0, 2.0]))
    assert res.params["n"] == 3 and not res.params["live"].requires_grad
    assert res.params["live"].device.type == "cpu"
    assert owned_params(None) == {}


def test_constant_data_does_not_guess_between_two_observed_plates_of_equal_length():
    """Two observed plates of n rows each (e.g. rows with a target label and rows with a protected label, which
    differ): an input of length n could belong to either. The guess gave every such input the first observed plate,
    so the second plate's index sat on the first plate's axis and xarray lined it up with the other rows' labels;
    now the axis keeps its default name, and a plate used by one observed site alone is still found."""
    def model(x, idx_a, idx_b, w_b, a=None, b=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("a_id", idx_a.shape[0]):
            pyro.sample("a", dist.Normal(mu + x[idx_a], 1.0), obs=a)
        with pyro.plate("b_id", idx_b.shape[0]):
            with pyro.poutine.scale(scale=w_b):
                pyro.sample("b", dist.Normal(mu - x[idx_b], 1.0), obs=b)

    x = torch.arange(6.0)
    kwargs = {"x": x, "idx_a": torch.tensor([0, 1, 2, 3]), "idx_b": torch.tensor([1, 2, 3, 5]),
              "w_b": torch.full((4,), 0.5), "a": torch.zeros(4), "b": torch.ones(4)}
    result = assemble_result("test", model, kwargs, {"mu": torch.zeros(1, 3)})
    assert result.dims["a"] == ["a_id"] and result.dims["b"] == ["b_id"]
    for name in ("idx_a", "idx_b", "w_b"):
        assert result.dims[name] == [f"{name}_dim_0"], (name, result.dims[name])
    idata = result.to_inference_data()
    assert idata.constant_data["idx_b"].dims == ("idx_b_dim_0",)
    # one observed plate of that length: the guess stands
    kwargs.update(idx_b=torch.tensor([1, 2, 5]), w_b=torch.full((3,), 0.5), b=torch.ones(3))
    result = assemble_result("test", model, kwargs, {"mu": torch.zeros(1, 3)})
    assert result.dims["idx_a"] == ["a_id"] and result.dims["idx_b"] == ["b_id"] and result.dims["w_b"] == ["b_id"]


def test_constant_data_does_not_put_a_group_level_input_on_the_observations_plate():
    """A group-level input (one value per group) when there are as many groups as observations: its axis runs along
    ``group``, yet the leading axis was named after the observations' plate whenever it was as long, so the group
    values got obs_id and, once the rows were labelled, the data's row labels (``zg.sel(obs_id="row7")`` was group
    0's value). A length that obs_id and group share now names no axis; with G != n it is still ``group``, and a
    design matrix at n == d is still (obs_id, feature)."""
    from pyrozoo.inference.result import label_observations

    def model(g, zg, Zg, y=None):
        with pyro.plate("group", zg.shape[0]):
            theta = pyro.sample("theta", dist.Normal(zg + Zg.sum(-1), 1.0))
        with pyro.plate("feature", Zg.shape[1]):
            pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("obs_id", g.shape[0]):
            return pyro.sample("y", dist.Normal(theta[g], 1.0), obs=y)

    def fit(n_groups, n, d):
        g = torch.arange(n) % n_groups
        kwargs = {"g": g, "zg": 10.0 * torch.arange(float(n_groups)), "Zg": torch.ones(n_groups, d),
                  "y": torch.zeros(n)}
        return assemble_result("test", model, kwargs, {"theta": torch.zeros(1, 2, n_groups),
                                                       "w": torch.zeros(1, 2, d)})

    result = label_observations(fit(3, 3, 2), ["row7", "row3", "row5"])
    assert result.dims["theta"] == ["group"] and result.dims["y"] == ["obs_id"]
    assert result.dims["zg"] == ["zg_dim_0"] and result.dims["Zg"] == ["Zg_dim_0", "feature"]
    assert result.dims["g"] == ["g_dim_0"]  # obs_id or group: a coin toss, so no name
    idata = result.to_inference_data()
    assert idata.constant_data["zg"].dims == ("zg_dim_0",)
    np.testing.assert_array_equal(idata.constant_data["zg"].values, [0.0, 10.0, 20.0])
    assert list(idata.observed_data["y"].obs_id.values) == ["row7", "row3", "row5"]
    # G == n == d: a (group, feature) input of two axes, three plates of that length: still no obs_id
    assert fit(3, 3, 3).dims["Zg"] == ["Zg_dim_0", "Zg_dim_1"]
    # G != n: the plates are told apart by length
    result = fit(2, 3, 4)
    assert result.dims["zg"] == ["group"] and result.dims["Zg"] == ["group", "feature"]
    assert result.dims["g"] == ["obs_id"]
