"""Vectorized pointwise log-likelihood and posterior predictive against per-draw hand computation."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.predictive import (
    align_global_draws,
    latent_sites,
    max_plate_nesting,
    pointwise_log_likelihood,
    posterior_predictive,
    site_dims,
    trace_model,
)


def regression(X, y=None):
    w = pyro.sample("w", dist.Normal(torch.zeros(X.shape[1]), 1.0).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
    with pyro.plate("groups", 2, dim=-2):
        shift = pyro.sample("shift", dist.Normal(0.0, 1.0))
    # vectorizable form: under the draws plate w is (S, 1, 1, p), shift (S, 2, 1), sigma (S, 1, 1)
    mean = (X @ w.unsqueeze(-1)).squeeze(-1) + shift.sum(-2, keepdim=True)
    with pyro.plate("obs_id", X.shape[0], dim=-1):
        pyro.sample("y", dist.Normal(mean, sigma), obs=y)


def test_loglik_matches_per_draw_loop():
    torch.manual_seed(0)
    X, y = torch.randn(7, 3), torch.randn(7)
    post = {"w": torch.randn(2, 5, 3), "sigma": torch.rand(2, 5) + 0.5, "shift": torch.randn(2, 5, 2, 1)}
    ll = pointwise_log_likelihood(regression, post, {"X": X, "y": y}, chunk_size=3)
    assert ll["y"].shape == (2, 5, 7)
    for c in range(2):
        for d in range(5):
            mean = X @ post["w"][c, d] + post["shift"][c, d].sum()
            ref = dist.Normal(mean, post["sigma"][c, d]).log_prob(y)
            np.testing.assert_allclose(ll["y"][c, d], ref.numpy(), rtol=1e-5, atol=1e-6)


def test_posterior_predictive_uses_each_draw():
    X = torch.zeros(4, 3)
    post = {"w": torch.zeros(1, 3, 3), "sigma": torch.full((1, 3), 1e-4),
            "shift": torch.tensor([0.0, 10.0, -10.0]).reshape(1, 3, 1, 1).expand(1, 3, 2, 1)}
    pp = posterior_predictive(regression, post, {"X": X, "y": torch.zeros(4)})
    assert pp["y"].shape == (1, 3, 4)
    np.testing.assert_allclose(pp["y"][0, :, 0], [0.0, 20.0, -20.0], atol=1e-2)


def _line(X, y=None):
    w = pyro.sample("w", dist.Normal(0.0, 10.0))
    with pyro.plate("obs_id", X.shape[0]):
        pyro.sample("y", dist.Normal(w * X, 0.01), obs=y)


def test_vectorized_posterior_predictive_replays_the_draws(monkeypatch):
    """A model that vectorizes over draws (no loop fallback): the predictive is drawn at the posterior's w. The
    vectorized path wrapped condition in uncondition, which dropped the draws too, so w came from its prior (y
    spread like N(0, 10) * X)."""
    import pyrozoo.inference.predictive as predictive

    X = torch.linspace(0.0, 1.0, 20)
    post = {"w": torch.tensor([[3.0, 3.0, -1.0, 0.5]])}
    loops = []
    original = predictive._evaluate_loop
    monkeypatch.setattr(predictive, "_evaluate_loop", lambda *a, **k: loops.append(1) or original(*a, **k))
    pp = posterior_predictive(_line, post, {"X": X, "y": torch.zeros(20)})
    assert not loops  # the vectorized path ran
    assert pp["y"].shape == (1, 4, 20)
    expected = post["w"][0, :, None].numpy() * X.numpy()
    np.testing.assert_allclose(pp["y"][0], expected, atol=0.05)  # 5 noise sd


def test_site_helpers():
    X, y = torch.randn(7, 3), torch.randn(7)
    tr = trace_model(regression, {"X": X, "y": y})
    assert max_plate_nesting(tr) == 2
    assert latent_sites(tr) == ["w", "sigma", "shift"]
    assert site_dims(tr, "y") == ["obs_id"]
    assert site_dims(tr, "w") == ["w_dim_0"]
    assert site_dims(tr, "shift") == ["groups", "shift_dim_1"]


def first_element_model(y=None):
    """Not vectorizable in a way the shapes reveal: under the draws plate it uses draw 0's loc for every draw."""
    loc = pyro.sample("loc", dist.Normal(0.0, 1.0))
    with pyro.plate("obs_id", 3):
        pyro.sample("y", dist.Normal(loc.reshape(-1)[0], 1.0), obs=y)


def test_wrongly_vectorizing_model_falls_back_to_per_draw_traces():
    y = torch.tensor([0.5, -1.0, 2.0])
    post = {"loc": torch.tensor([[0.0, 1.0, -2.0, 3.0]])}
    ll = pointwise_log_likelihood(first_element_model, post, {"y": y})
    for d in range(4):
        np.testing.assert_allclose(ll["y"][0, d], dist.Normal(post["loc"][0, d], 1.0).log_prob(y).numpy(), rtol=1e-6)
    pp = posterior_predictive(first_element_model, post, {"y": y})
    assert pp["y"].shape == (1, 4, 3)
    assert abs(pp["y"][0, 3].mean() - pp["y"][0, 2].mean()) > 1.0  # draws 2 and 3 are 5 apart, noise sd 1/sqrt(3)


# ----------------------------------------------------------------- model structures the log-likelihood cannot use
def forgot_obs(x=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("obs_id", 5):
        pyro.sample("x", dist.Normal(mu, 1.0))  # obs= forgotten: x is a latent and the data are ignored


def mixture(x=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("obs_id", 5):
        z = pyro.sample("z", dist.Bernoulli(0.1), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(mu, 1.0 + 9.0 * z), obs=x)


def event_over_data(x=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    pyro.sample("x", dist.Normal(mu, 1.0).expand([5]).to_event(1), obs=x)


def with_factor(x=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("obs_id", 5):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
    pyro.factor("penalty", -(mu**2))


def test_forgotten_obs_fails_before_sampling():
    import pytest

    from pyrozoo.errors import PyrozooError
    from pyrozoo.inference.mcmc import run_mcmc
    from pyrozoo.inference.svi import run_svi

    kwargs = {"x": torch.zeros(5)}
    with pytest.raises(PyrozooError, match="no observed sample site"):
        run_mcmc(forgot_obs, kwargs, num_samples=10**6, warmup_steps=10**6)  # would take hours if it sampled
    with pytest.raises(PyrozooError, match="no observed sample site"):
        run_svi(forgot_obs, pyro.infer.autoguide.AutoNormal(forgot_obs), kwargs, num_steps=10**6)


def undeclared_batch_latent(x=None):
    w = pyro.sample("w", dist.Normal(torch.zeros(3), 1.0))  # neither a plate nor .to_event(1)
    with pyro.plate("obs_id", 5):
        pyro.sample("x", dist.Normal(w.sum(), 1.0), obs=x)


def undeclared_batch_latent_in_a_plate(x=None):
    with pyro.plate("obs_id", 5):
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([3, 5]))  # dim -2 (size 3) has no plate
        pyro.sample("x", dist.Normal(z.sum(0), 1.0), obs=x)


def plateless_data(x=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    pyro.sample("x", dist.Normal(mu, 1.0), obs=x)  # a scalar distribution broadcast over 5 observations


def test_a_batch_dim_without_a_plate_fails_the_same_way_in_both_engines_before_any_work():
    """Pyro's SVI fails on such a latent site inside its first step with a shape error while NUTS runs on (and
    ArviZ would name the axis w_dim_0): both engines raise the same one-line error, saying which fix applies."""
    import pytest

    from pyrozoo.errors import PyrozooError
    from pyrozoo.inference.mcmc import run_mcmc
    from pyrozoo.inference.svi import run_svi

    for model, x, message in (
            (undeclared_batch_latent, torch.zeros(5), r"site 'w' has batch shape \(3,\).*dim -1.*\.to_event\(1\)"),
            (undeclared_batch_latent_in_a_plate, torch.zeros(5),
             r"site 'z' has batch shape \(3, 5\).*dim -2 \(size 3\)")):
        with pytest.raises(PyrozooError, match=message) as info:
            run_mcmc(model, {"x": x}, num_samples=10**6, warmup_steps=10**6)
        assert model is undeclared_batch_latent or "to_event" not in str(info.value)  # dim -2 cannot be an event
        with pytest.raises(PyrozooError, match=message):
            run_svi(model, pyro.infer.autoguide.AutoNormal(model), {"x": x}, num_steps=10**6)
    # data without a plate: SVI failed on it with Pyro's "invalid log_prob shape" once a latent sat in a plate,
    # and its ArviZ axis was x_dim_0; both engines now name it before any work, broadcast obs= included
    message = r"observed site 'x' has batch shape \(5,\), but no pyro.plate declares its dim -1"
    with pytest.raises(PyrozooError, match=message):
        run_mcmc(plateless_data, {"x": torch.zeros(5)}, num_samples=10**6, warmup_steps=10**6)
    with pytest.raises(PyrozooError, match=message):
        run_svi(plateless_data, pyro.infer.autoguide.AutoNormal(plateless_data), {"x": torch.zeros(5)},
                num_steps=10**6)


def test_enumerated_latent_needs_a_log_likelihood_fn():
    """The generic path would score x at one drawn z instead of summing z out: an error, before any sampling, and
    in assemble_result for fits that bypass the engines. With a log_likelihood_fn the run goes through."""
    import pytest

    from pyrozoo.errors import PyrozooError
    from pyrozoo.inference.assemble import assemble_result
    from pyrozoo.inference.mcmc import run_mcmc

    x = torch.tensor([0.1, -0.3, 8.0, 0.2, 0.0])
    with pytest.raises(PyrozooError, match="z are marked for enumeration"):
        run_mcmc(mixture, {"x": x}, num_samples=10**6, warmup_steps=10**6)
    with pytest.raises(PyrozooError, match="log_likelihood_fn"):
        assemble_result("em", mixture, {"x": x}, {"mu": torch.zeros(1, 2)})

    def marginal(post, kw):
        mu = post["mu"].unsqueeze(-1)
        comp = torch.stack([dist.Normal(mu, 1.0).log_prob(kw["x"]) + np.log(0.9),
                            dist.Normal(mu, 10.0).log_prob(kw["x"]) + np.log(0.1)])
        return {"x": torch.logsumexp(comp, 0).numpy()}

    res = assemble_result("em", mixture, {"x": x}, {"mu": torch.zeros(1, 2)}, log_likelihood_fn=marginal)
    assert res.log_likelihood["x"].shape == (1, 2, 5)


def test_event_over_the_data_warns_and_factor_terms_are_not_data():
    import pytest

    from pyrozoo.inference.assemble import assemble_result
    from pyrozoo.inference.predictive import observed_sites

    x = torch.randn(5)
    with pytest.warns(UserWarning, match="log-probability is one number"):
        res = assemble_result("nuts", event_over_data, {"x": x}, {"mu": torch.zeros(1, 3)})
    assert res.log_likelihood["x"].shape == (1, 3)  # one value per draw: what the warning says
    tr = trace_model(with_factor, {"x": x})
    assert tr.nodes["penalty"]["is_observed"] and observed_sites(tr) == ["x"]
    res = assemble_result("nuts", with_factor, {"x": x}, {"mu": torch.zeros(1, 3)})
    assert set(res.observed_data) == {"x"} and set(res.log_likelihood) == {"x"}


def test_align_global_draws_drops_only_the_data_plates_singleton():
    """(S, 1, *event) (Pyro's plate-aligned draws) and (S, *event) (Predictive(parallel=True)'s) both give
    (S, *event); a draw without batch dims, or with a non-singleton dim at the data plate, is left alone."""
    w = torch.randn(4, 2, 3)
    assert torch.equal(align_global_draws(w.unsqueeze(1), 2), w)
    assert align_global_draws(w, 2) is w
    one = w[0]
    assert align_global_draws(one, 2) is one
    assert align_global_draws(torch.randn(2, 1, 3), 1).shape == (2, 3)  # event (3,): the 1 is the plate's


def test_align_global_draws_keeps_a_single_draw_and_refuses_scalar_sites():
    """Review: one draw in the (S, *event) layout, (1, *event), lost its draw axis (the 1 was taken for the data
    plate's), and a scalar site's (S, 1) became (S,), which pairs draw s with row s when S == N. Only a singleton
    with a draw dim to its left is dropped now; event_ndim 0 is refused."""
    w = torch.randn(1, 2, 3)
    assert align_global_draws(w, 2) is w
    assert align_global_draws(w.unsqueeze(1), 2).shape == (1, 2, 3)  # (S=1, 1, *event): the plate's 1 goes
    with pytest.raises(PyrozooError, match=r"^event_ndim: expected >= 1"):
        align_global_draws(torch.randn(4, 1), 0)


# ------------------------------------------------------------------------------ pyro.deterministic is not data
N_DET = 12


def _det_model(y=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    pyro.deterministic("mu2", mu * 2)
    pyro.deterministic("pair", torch.stack([mu, -mu], -1))  # a vector outside any plate: no "holds N values" warning
    with pyro.plate("obs_id", N_DET):
        mean = pyro.deterministic("mean", mu * torch.ones(N_DET))
        return pyro.sample("y", dist.Normal(mean, 2.0), obs=y)


def _det_fit(engine, y):
    from pyro.infer.autoguide import AutoNormal

    from pyrozoo.inference.gibbs import GibbsKernel, run_gibbs
    from pyrozoo.inference.mcmc import run_mcmc
    from pyrozoo.inference.svi import run_svi

    kw = {"y": y}
    if engine == "nuts":
        return run_mcmc(_det_model, kw, num_samples=20, warmup_steps=20, num_chains=1, seed=0, progress=False)
    if engine == "svi":  # the guide draws mu alone: deterministic sites are no latents it must cover
        return run_svi(_det_model, AutoNormal(_det_model), kw, num_steps=20, lr=0.05, num_samples=20, seed=0,
                       progress=False)
    prec = 1 / 25 + N_DET / 4  # conjugate: mu | y ~ N(sum(y) / 4 / prec, 1 / prec)
    kernel = GibbsKernel(init=lambda c, d: {"mu": torch.zeros(c)},
                         conditionals={"mu": lambda s, d: d["sum"] / 4 / prec
                                       + prec ** -0.5 * torch.randn_like(s["mu"])})
    return run_gibbs(kernel, {"sum": y.sum()}, model=_det_model, model_kwargs=kw, num_samples=20, warmup_steps=5,
                     num_chains=2, seed=0, progress=False)


@pytest.mark.parametrize("engine", ["nuts", "svi", "gibbs"])
def test_deterministic_sites_are_posterior_quantities_not_observed_data(engine):
    """Pyro marks pyro.deterministic sites observed: they were taken for data (an all-zero log_likelihood.mu2, the
    first draw's value as observed_data.mu2, az.loo refusing two log-likelihood arrays) and left out of the
    posterior."""
    import warnings

    import arviz as az

    y = 1.5 + 2.0 * torch.randn(N_DET)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the misleading "observed site holds N values" warning
        result = _det_fit(engine, y)
    mu = result.posterior["mu"]
    assert np.allclose(result.posterior["mu2"], 2 * mu, rtol=1e-6)  # draw by draw
    assert np.allclose(result.posterior["pair"], np.stack([mu, -mu], -1), rtol=1e-6)
    assert result.posterior["mean"].shape == mu.shape + (N_DET,)
    assert np.allclose(result.posterior["mean"], mu[..., None], rtol=1e-6)
    assert result.dims["mean"] == ["obs_id"] and result.dims["pair"] == ["pair_dim_0"]
    assert set(result.log_likelihood) == set(result.observed_data) == {"y"}
    idata = result.to_inference_data(posterior_predictive=True)
    assert set(idata.posterior_predictive.data_vars) == {"y"}
    assert dict(idata.posterior["mean"].sizes)["obs_id"] == N_DET
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pareto k of 20 draws
        assert az.loo(idata).n_data_points == N_DET


def test_deterministic_values_replay_the_draws_and_a_given_value_is_kept():
    from pyrozoo.inference.predictive import deterministic_values

    mu = torch.randn(2, 3)
    values = deterministic_values(_det_model, {"mu": mu}, {"y": torch.zeros(N_DET)})
    assert set(values) == {"mu2", "pair", "mean"}
    assert np.allclose(values["mu2"], 2 * mu.numpy()) and values["mean"].shape == (2, 3, N_DET)
    assert "mu2" not in deterministic_values(_det_model, {"mu": mu, "mu2": 2 * mu}, {"y": torch.zeros(N_DET)})


def test_a_plate_subsampled_through_model_kwargs_is_refused_before_training():
    """The log-likelihood was taken on other random rows at every draw, misaligned with observed_data."""
    from pyro.infer.autoguide import AutoNormal

    from pyrozoo.inference.svi import run_svi

    def model(y=None, n=40, subsample_size=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        with pyro.plate("obs_id", n, subsample_size=subsample_size) as idx:
            return pyro.sample("y", dist.Normal(mu, 2.0), obs=y[idx])

    y = torch.randn(40)
    steps = []
    with pytest.raises(PyrozooError, match=r"^model: plate 'obs_id' subsamples 10 of its 40 rows when the model runs "
                                           r"on model_kwargs.*train_kwargs=\{'subsample_size': 10\}"):
        run_svi(model, AutoNormal(model), {"y": y, "subsample_size": 10}, num_steps=5, num_samples=2,
                progress=False, callback=lambda step, loss: steps.append(step))
    assert steps == []
    result = run_svi(model, AutoNormal(model), {"y": y}, train_kwargs={"subsample_size": 10}, num_steps=5,
                     num_samples=3, progress=False)
    assert result.log_likelihood["y"].shape == (1, 3, 40)


def test_a_subsample_size_written_in_the_model_says_to_make_it_an_argument():
    """The message blamed model_kwargs, and its fix (train_kwargs) could not reach a size written in the model."""
    from pyro.infer.autoguide import AutoNormal

    from pyrozoo.inference.svi import run_svi

    def model(y=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        with pyro.plate("obs_id", 40, subsample_size=10) as idx:
            return pyro.sample("y", dist.Normal(mu, 2.0), obs=y[idx])

    with pytest.raises(PyrozooError, match=r"a subsample_size written in the model or passed in model_kwargs.*make "
                                           r"the subsample size an argument of the model \(None: every row\)"):
        run_svi(model, AutoNormal(model), {"y": torch.randn(40)}, num_steps=5, num_samples=2, progress=False)


def test_deterministic_dims_follow_a_given_event_dim_and_guess_only_an_exact_plate_shape():
    """A given event_dim was ignored, and the guess by position put the plate's name on the wrong axis of a
    (2, 2) value in a plate of 2."""
    def model(x):
        a = pyro.sample("a", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.deterministic("z", torch.stack([a * x, 2 * a * x], -1), event_dim=1)
            pyro.deterministic("zz", torch.stack([a * x, 2 * a * x], -1))
            pyro.deterministic("m", a * x)
            pyro.sample("y", dist.Normal(a * x, 1.0), obs=x)

    for n in (5, 2):
        trace = poutine.trace(model).get_trace(torch.randn(n))
        assert site_dims(trace, "z") == ["data", "z_dim_1"]
        assert site_dims(trace, "zz") == ["zz_dim_0", "zz_dim_1"]
        assert site_dims(trace, "m") == ["data"]


def test_a_replay_without_posterior_tensors_runs_where_the_data_are():
    """A posterior with no tensor (every latent enumerated: regime-scm's enum) left the fit's params on the CPU,
    where run_svi returns them, while the data were on the GPU. The meta device stands in for CUDA here."""
    from pyrozoo.inference.predictive import param_values, replay_device

    data = {"x": torch.empty(3, device="meta"), "n": 3}
    assert replay_device({}, data) == torch.device("meta")
    assert replay_device({"mu": torch.zeros(1, 2)}, data) == torch.device("cpu")
    assert replay_device({}, {"n": 3}) is None
    assert param_values({"w": torch.ones(2), "note": "x"}, replay_device({}, data))["w"].device.type == "meta"


def _indexing_det_model(y=None):
    w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    pyro.deterministic("d", w[0] * w)  # indexes the latent: under the draws plate w[0] is the first draw
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    with pyro.plate("obs_id", 4):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)  # does not use w: the log-likelihood check cannot see it


def test_a_deterministic_that_indexes_a_latent_is_evaluated_per_draw():
    """The vectorized deterministic values are checked against per-draw traces, not only the log-likelihood;
    without that check every draw got the first draw's w[0] times its own w."""
    from pyrozoo.inference.predictive import deterministic_values

    gen = torch.Generator().manual_seed(0)
    W, mu = torch.randn(1, 5, 3, generator=gen), torch.randn(1, 5, generator=gen)
    values = deterministic_values(_indexing_det_model, {"w": W, "mu": mu}, {"y": torch.zeros(4)})
    np.testing.assert_allclose(values["d"], (W[..., 0:1] * W).numpy(), rtol=1e-6)


def _replayed_det_model(x, y=None):
    a = pyro.sample("a", dist.Normal(0.0, 1.0))
    with pyro.plate("obs_id", len(x)):
        m = pyro.deterministic("m", a * x)
        pyro.sample("y", dist.Normal(m, 1.0), obs=y)


def test_a_deterministic_value_in_the_posterior_is_recomputed_not_replayed():
    """The log-likelihood replays the latents only: a stale "m" in the posterior (here 100) is not fed back."""
    gen = torch.Generator().manual_seed(0)
    x, y, A = torch.randn(6, generator=gen), torch.randn(6, generator=gen), torch.randn(2, 3, generator=gen)
    kw = {"x": x, "y": y}
    with_m = pointwise_log_likelihood(_replayed_det_model, {"a": A, "m": torch.full((2, 3, 6), 100.0)}, kw)
    without = pointwise_log_likelihood(_replayed_det_model, {"a": A}, kw)
    np.testing.assert_array_equal(with_m["y"], without["y"])
    ref = dist.Normal(A[..., None] * x, 1.0).log_prob(y)
    np.testing.assert_allclose(without["y"], ref.numpy(), rtol=1e-5, atol=1e-6)


def test_a_deterministic_whose_dims_fit_the_plate_positions_but_not_sizes_is_not_named_after_them():
    """A shape-(1,) value inside a plate of 5 sits at the plate's position but is not along it."""
    def model(x):
        a = pyro.sample("a", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.deterministic("s", a.reshape(1) * 2)
            pyro.sample("y", dist.Normal(a * x, 1.0), obs=x)

    trace = poutine.trace(model).get_trace(torch.randn(5))
    assert site_dims(trace, "s") == ["s_dim_0"]


def _masked_by_poutine(y=None, m=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 3.0))
    with pyro.plate("obs_id", len(m)), poutine.mask(mask=m):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def _masked_distribution(y=None, m=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 3.0))
    with pyro.plate("obs_id", len(m)):
        pyro.sample("y", dist.Normal(mu, 1.0).mask(m), obs=y)


def test_poutine_mask_rows_score_zero_in_the_pointwise_log_likelihood():
    """A row masked out by poutine.mask contributes 0, as with dist.mask(m) and in Pyro's own log_prob_sum; it
    used to be scored at its zero-filled value (about -1.4 per row here)."""
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(8, generator=gen) + 1.0
    y[5:] = 0.0
    m = torch.arange(8) < 5
    mu = torch.randn(2, 4, generator=gen)
    kw = {"y": y, "m": m}
    ll = pointwise_log_likelihood(_masked_by_poutine, {"mu": mu}, kw)["y"]
    np.testing.assert_array_equal(ll[..., 5:], 0.0)
    ref = dist.Normal(mu[..., None], 1.0).log_prob(y[:5]).numpy()
    np.testing.assert_allclose(ll[..., :5], ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ll, pointwise_log_likelihood(_masked_distribution, {"mu": mu}, kw)["y"])
    # the sum over rows is Pyro's own masked log-likelihood at each draw
    tr = poutine.trace(poutine.condition(_masked_by_poutine, {"mu": mu[1, 2]})).get_trace(**kw)
    tr.compute_log_prob()
    assert float(ll[1, 2].sum()) == pytest.approx(float(tr.nodes["y"]["log_prob"].sum()), rel=1e-5)


def test_a_site_masked_out_entirely_scores_zero():
    def model(y=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("obs_id", 3):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)
            with poutine.mask(mask=False):
                pyro.sample("y2", dist.Normal(mu, 1.0), obs=y)

    ll = pointwise_log_likelihood(model, {"mu": torch.zeros(1, 2)}, {"y": torch.ones(3)})
    np.testing.assert_array_equal(ll["y2"], 0.0)
    assert (ll["y"] < 0).all()


def test_poutine_scale_is_not_applied_to_the_pointwise_log_likelihood():
    """A likelihood weight or minibatch scale N / B changes the joint, not the density of each observation."""
    def model(y=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("obs_id", 3), poutine.scale(scale=4.0):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    y, mu = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([[0.0, 1.0]])
    ll = pointwise_log_likelihood(model, {"mu": mu}, {"y": y})["y"]
    np.testing.assert_allclose(ll, dist.Normal(mu[..., None], 1.0).log_prob(y).numpy(), rtol=1e-6)


def _two_component_mixture(y=None):
    loc = pyro.sample("loc", dist.Normal(0.0, 3.0))
    with pyro.plate("obs_id", len(y)):
        z = pyro.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
        pyro.sample("y", dist.Normal(torch.where(z.bool(), loc, -loc), 1.0), obs=y)


def _mixture_not_vectorized(y=None):
    loc = pyro.sample("loc", dist.Normal(0.0, 3.0))
    loc = torch.tensor(float(loc))  # one draw at a time only: the replays fall back to one trace per draw
    with pyro.plate("obs_id", len(y)):
        z = pyro.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
        pyro.sample("y", dist.Normal(torch.where(z.bool(), loc, -loc), 1.0), obs=y)


@pytest.mark.parametrize("model,num", [(_two_component_mixture, 4000), (_mixture_not_vectorized, 300)])
def test_posterior_predictive_draws_enumerated_sites_from_their_posterior(model, num):
    """Components at -+2 (sd 1): a replicate of y_i is > 0 with probability p_i Phi(2) + (1 - p_i) Phi(-2), p_i =
    P(z_i = 1 | y_i) = sigmoid(2 * 2 * y_i). Drawing z from its prior, as before, gave 1/2 for every row."""
    y = torch.tensor([2.4, 0.3, -0.2, -2.5])
    pp = posterior_predictive(model, {"loc": torch.full((1, num), 2.0)}, {"y": y})["y"]
    assert pp.shape == (1, num, 4)
    p = torch.sigmoid(4.0 * y)
    phi = dist.Normal(0.0, 1.0).cdf(torch.tensor(2.0))
    expected = (p * phi + (1 - p) * (1 - phi)).numpy()
    tol = 4 * np.sqrt(expected * (1 - expected) / num)  # binomial Monte Carlo error, 4 sd
    np.testing.assert_array_less(np.abs((pp[0] > 0).mean(0) - expected), tol)


def _sign_mixture(y=None, how="parallel", n=30):
    mu = pyro.sample("mu", dist.Normal(0.0, 20.0))
    with pyro.plate("obs_id", n):
        z = pyro.sample("z", dist.Bernoulli(0.5), infer={"enumerate": how})
        pyro.sample("y", dist.Normal(mu * (2 * z - 1), 1.0), obs=y)


def test_sequentially_enumerated_sites_are_drawn_from_their_prior_with_a_warning():
    """infer_discrete handles parallel enumeration only: a sequential site was silently drawn from its prior (the
    replicates' mean 0 for data at +10); it still is, but a warning names it. Parallel: replicates near +10."""
    import warnings

    y = torch.full((30,), 10.0)
    post = {"mu": torch.full((2, 20), 10.0)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        par = posterior_predictive(_sign_mixture, post, {"y": y, "how": "parallel"})["y"]
    assert abs(float(par.mean()) - 10.0) < 0.2  # 1200 replicates of sd 1: MCSE 0.03
    with pytest.warns(UserWarning, match=r"\['z'\] are marked for sequential enumeration.* from their prior"):
        seq = posterior_predictive(_sign_mixture, post, {"y": y, "how": "sequential"})["y"]
    assert abs(float(seq.mean())) < 1.5  # prior draws of z: a 50/50 mix of -10 and +10 (MCSE ~0.3)


def test_a_model_whose_only_latent_is_underscore_prefixed_still_runs():
    """check_has_latents used latent_sites, which leaves out _-prefixed (auxiliary) sites, so a model whose one
    latent was _mu was refused as having nothing to infer; it ran before that check and runs again."""
    from pyrozoo.inference.mcmc import run_mcmc

    def model(y=None):
        mu = pyro.sample("_mu", dist.Normal(0.0, 1.0))
        with pyro.plate("obs_id", 5):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    res = run_mcmc(model, {"y": torch.zeros(5)}, num_samples=5, warmup_steps=5, num_chains=1, progress=False)
    assert "_mu" in res.posterior


def test_underscore_prefixed_latents_are_refused_by_svi_before_any_step_and_shape_checked():
    """After _-prefixed latents were allowed for NUTS, run_svi on such a model ran every step and then failed ("holds
    no draws": its posterior leaves _ sites out); it is refused before any step again, naming them. Their draws given
    to assemble_result are shape-checked like any latent's (a (2, 3, 5) draw of a scalar _mu was accepted)."""
    from pyro.infer.autoguide import AutoNormal

    from pyrozoo.inference.assemble import assemble_result
    from pyrozoo.inference.svi import run_svi

    def model(y=None):
        mu = pyro.sample("_mu", dist.Normal(0.0, 1.0))
        with pyro.plate("obs_id", 5):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    with pytest.raises(PyrozooError, match=r"^model: run_svi needs a latent sample site .* only the _-prefixed "
                                           r"site\(s\) \['_mu'\]"):
        run_svi(model, AutoNormal(model), {"y": torch.ones(5)}, num_steps=200, num_samples=4, progress=False)
    with pytest.raises(PyrozooError, match=r"site '_mu' have shape \(2, 3, 5\); expected \(chain, draw\)"):
        assemble_result("exact", model, {"y": torch.zeros(5)}, {"_mu": torch.zeros(2, 3, 5)})


class _ModuleRegression(pyro.nn.PyroModule):
    """A PyroModule linear regression: the weight a latent, the bias a plain nn.Parameter (a pyro.param site)."""

    def __init__(self):
        super().__init__()
        self.lin = pyro.nn.PyroModule[torch.nn.Linear](2, 1)
        self.lin.weight = pyro.nn.PyroSample(dist.Normal(0.0, 1.0).expand([1, 2]).to_event(2))

    def forward(self, x, y=None):
        mu = self.lin(x).squeeze(-1)
        with pyro.plate("obs_id", x.shape[0]):
            return pyro.sample("y", dist.Normal(mu, 0.3), obs=y)


def test_a_pyromodule_parameter_reads_the_fits_value_in_a_later_posterior_predictive():
    """A PyroModule reads its nn.Parameters itself, discarding the value a param handler sets: the posterior
    predictive used whatever the module held by then (a second fit's bias, or one put in by hand), not
    Result.params. The fit's values are now what it reads, and the module gets its own back afterwards."""
    from pyro.infer.autoguide import AutoNormal

    from pyrozoo.inference import run_svi

    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 2, generator=g)
    Y = X @ torch.tensor([1.0, -1.0]) + 5.0 + 0.3 * torch.randn(40, generator=g)
    m = _ModuleRegression()
    r1 = run_svi(m, AutoNormal(m), {"x": X, "y": Y}, num_steps=400, lr=0.05, num_samples=50, seed=0,
                 progress=False)
    r2 = run_svi(m, AutoNormal(m), {"x": X, "y": Y + 50}, num_steps=400, lr=0.05, num_samples=50, seed=0,
                 progress=False)
    assert float(r2.params["lin.bias"]) > float(r1.params["lin.bias"]) + 10  # the module now holds the 2nd fit's
    pp1 = r1.to_inference_data(posterior_predictive=True).posterior_predictive["y"].values
    assert abs(pp1.mean() - float(Y.mean())) < 1.0
    m.lin.bias = torch.nn.Parameter(torch.tensor([-100.0]))
    pp1 = r1.to_inference_data(posterior_predictive=True).posterior_predictive["y"].values
    assert abs(pp1.mean() - float(Y.mean())) < 1.0
    ll = pointwise_log_likelihood(m, {k: torch.as_tensor(v) for k, v in r1.posterior.items()}, {"x": X, "y": Y},
                                  params=r1.params)
    np.testing.assert_allclose(ll["y"], r1.log_likelihood["y"], rtol=1e-5, atol=1e-5)
    assert torch.equal(m.lin.bias.detach(), torch.tensor([-100.0]))  # the module's own value is back


def test_a_swapped_module_parameter_is_restored_when_the_model_fails():
    from pyrozoo.inference.predictive import with_params

    lin = pyro.nn.PyroModule[torch.nn.Linear](1, 1)
    seen = []

    def failing(x):
        seen.append(float(lin(x).detach()))
        raise RuntimeError("boom")

    with torch.no_grad():
        lin.weight.fill_(0.0)
        lin.bias.fill_(1.0)
    with pytest.raises(RuntimeError, match="boom"):
        with_params(failing, {"bias": torch.tensor([7.0])})(torch.ones(1, 1))
    assert seen == [7.0]
    assert float(lin.bias) == 1.0


def _gamma_poisson(t, y=None, a=2.0, b=1.0):
    """lam ~ Gamma(a, b), y_i ~ Poisson(lam t_i): the posterior is Gamma(a + sum y, b + sum t)."""
    lam = pyro.sample("lam", dist.Gamma(torch.tensor(a, dtype=t.dtype), torch.tensor(b, dtype=t.dtype)))
    pyro.deterministic("log_lam", lam.log())
    with pyro.plate("obs_id", t.shape[0]):
        return pyro.sample("y", dist.Poisson(lam * t), obs=y)


def test_a_posterior_predictive_without_the_observations_draws_what_the_fit_observed():
    """The out-of-sample idiom (y left out, new inputs) drew nothing ({}, silently): the observed sites are now the
    sample sites the posterior has no draws of, as for pyro.infer.Predictive; their mean is lambda-bar * t."""
    g = torch.Generator().manual_seed(0)
    t = 0.5 + torch.rand(30, generator=g, dtype=torch.float64)
    y = torch.poisson(3.0 * t, generator=g)
    lam = torch.distributions.Gamma(2.0 + y.sum(), 1.0 + t.sum()).sample((2, 2000)).to(torch.float64)
    post = {"lam": lam, "log_lam": lam.log()}
    t_new = torch.tensor([0.5, 2.0, 10.0], dtype=torch.float64)
    pp = posterior_predictive(_gamma_poisson, post, {"t": t_new})
    assert set(pp) == {"y"} and pp["y"].shape == (2, 2000, 3)
    expected = float(lam.mean()) * t_new.numpy()
    np.testing.assert_allclose(pp["y"].mean((0, 1)), expected, rtol=0.05)
    # each replicate follows its own draw: the draw-wise mean of y / t tracks lam
    assert np.corrcoef((pp["y"] / t_new.numpy()).mean(-1).ravel(), lam.numpy().ravel())[0, 1] > 0.3
    # with the data given, the same posterior's replicates are of the observed site as before
    assert posterior_predictive(_gamma_poisson, post, {"t": t, "y": y})["y"].shape == (2, 2000, 30)


def test_a_results_numpy_posterior_given_back_replays_like_its_tensors():
    """Result.posterior (NumPy arrays) given back to posterior_predictive / pointwise_log_likelihood failed inside
    the model ('numpy.float64' object has no attribute ...): the arrays are made tensors on the data's device, a
    float64 array float64, a float32 one at the data's dtype."""
    g = torch.Generator().manual_seed(1)
    t = 0.5 + torch.rand(6, generator=g, dtype=torch.float64)
    y = torch.poisson(3.0 * t, generator=g)
    lam = torch.distributions.Gamma(2.0 + y.sum(), 1.0 + t.sum()).sample((2, 5)).to(torch.float64)
    kw = {"t": t, "y": y}
    want = pointwise_log_likelihood(_gamma_poisson, {"lam": lam}, kw)["y"]
    for arrays in ({"lam": lam.numpy(), "log_lam": lam.log().numpy()}, {"lam": lam.float().numpy()}):
        ll = pointwise_log_likelihood(_gamma_poisson, arrays, kw)["y"]
        assert ll.dtype == np.float64
        np.testing.assert_allclose(ll, want, rtol=1e-6)
        pp = posterior_predictive(_gamma_poisson, arrays, kw)
        assert pp["y"].shape == (2, 5, 6)
    from pyrozoo.inference.predictive import replay_draws

    back = replay_draws({"lam": lam.float().numpy(), "k": np.zeros((2, 5), dtype=np.int64)},
                        {"t": t.float(), "y": y.float()})
    assert back["lam"].dtype == torch.float32 and back["k"].dtype == torch.int64


def test_replay_under_params_keeps_a_pyro_module_s_parameters_in_place():
    """QA (I1): pyro.module(..., update_module_params=True) replayed under a fit's params put the params' tensor into
    the module in place of its nn.Parameter (requires_grad False), so a later fit no longer trained the network."""
    from torch import nn

    from pyrozoo.inference.svi import run_svi

    pyro.set_rng_seed(0)
    x = torch.linspace(-1, 1, 5).unsqueeze(-1)
    lin = nn.Linear(1, 1)

    def model(x, y=None):
        net = pyro.module("net", lin, update_module_params=True)
        s = pyro.sample("s", dist.HalfNormal(1.0))
        with pyro.plate("n", x.shape[0]):
            pyro.sample("y", dist.Normal(net(x).squeeze(-1), s), obs=y)

    weight, own = lin.weight, lin.weight.detach().clone()
    params = {"net$$$weight": torch.tensor([[2.0]]), "net$$$bias": torch.tensor([5.0])}
    pp = posterior_predictive(model, {"s": torch.full((1, 3), 0.01)}, {"x": x, "y": torch.zeros(5)}, params=params)
    np.testing.assert_allclose(pp["y"].mean(axis=(0, 1)), (2 * x.squeeze(-1) + 5).numpy(), atol=0.05)
    assert lin.weight is weight and isinstance(lin.weight, nn.Parameter) and lin.weight.requires_grad
    assert torch.equal(lin.weight.detach(), own)
    pyro.clear_param_store()
    run_svi(model, pyro.infer.autoguide.AutoNormal(model), {"x": x, "y": 2 * x.squeeze(-1) + 5}, num_steps=3,
            num_samples=2, progress=False)
    assert lin.weight is weight and lin.weight.requires_grad
    assert "net$$$weight" in pyro.get_param_store()


def test_replay_under_params_gives_the_module_a_copy_of_the_caller_s_params():
    """QA (I6): during a replay a PyroModule's parameter shared storage with the caller's params, so a forward that
    clamps its weight in place wrote into Result.params."""
    from pyro.nn import PyroModule
    from torch import nn

    class Net(PyroModule):
        def __init__(self):
            super().__init__()
            self.lin = PyroModule[nn.Linear](1, 1)

        def forward(self, x, y=None):
            with torch.no_grad():
                self.lin.weight.clamp_(-1.0, 1.0)
            s = pyro.sample("s", dist.HalfNormal(1.0))
            with pyro.plate("n", x.shape[0]):
                pyro.sample("y", dist.Normal(self.lin(x).squeeze(-1), s), obs=y)

    params = {"lin.weight": torch.tensor([[3.0]]), "lin.bias": torch.tensor([0.0])}
    posterior_predictive(Net(), {"s": torch.ones(1, 2)}, {"x": torch.ones(2, 1), "y": torch.zeros(2)}, params=params)
    assert params["lin.weight"].tolist() == [[3.0]]


def _two_sites(x=None, y=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("n", 4):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        pyro.sample("y", dist.Normal(mu + 100, 1.0), obs=y)


def _two_latents(y=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    sig = pyro.sample("sig", dist.HalfNormal(1.0))
    with pyro.plate("n", 3):
        pyro.sample("y", dist.Normal(mu, sig), obs=y)


def test_posterior_predictive_draws_the_observations_left_out_beside_given_ones():
    """QA (I3): with x given and y=None the left-out y was not drawn (only x came back)."""
    post = {"mu": torch.full((1, 3), 3.0)}
    pp = posterior_predictive(_two_sites, post, {"x": torch.zeros(4), "y": None})
    assert sorted(pp) == ["x", "y"] and pp["y"].shape == (1, 3, 4) and pp["y"].mean() > 90
    pp = posterior_predictive(_two_sites, post, {"x": torch.zeros(4)})  # y left to its None default
    assert sorted(pp) == ["x", "y"]


def test_a_latent_missing_from_the_posterior_is_refused_not_drawn_from_its_prior():
    """QA (I4): a latent without draws was drawn from its prior at every replay (two log-likelihood calls differed).
    With every observation left out (y=None) nothing tells it from data: drawn, as pyro.infer.Predictive does."""
    post = {"mu": torch.zeros(1, 2)}
    for fn in (pointwise_log_likelihood, posterior_predictive):
        with pytest.raises(PyrozooError, match=r"posterior: no draws of the model's latent site\(s\) \['sig'\]"):
            fn(_two_latents, post, {"y": torch.zeros(3)})
    assert sorted(posterior_predictive(_two_latents, post, {"y": None})) == ["sig", "y"]
    pp = posterior_predictive(_two_latents, {**post, "sig": torch.ones(1, 2)}, {"y": None})
    assert list(pp) == ["y"]


def test_float64_numpy_draws_take_the_float32_model_s_dtype():
    """QA (I5): float64 NumPy draws with float32 data crashed inside the model (addmv dtypes); float64 data keep
    float64."""
    w = np.random.default_rng(0).normal(size=(1, 4, 2))

    def lin(X, y=None):
        w = pyro.sample("w", dist.Normal(torch.zeros(2, dtype=X.dtype), 1.0).to_event(1))
        with pyro.plate("n", X.shape[0]):
            pyro.sample("y", dist.Normal(X @ w, 1.0), obs=y)

    X = torch.randn(6, 2)
    for dtype in (torch.float32, torch.float64):
        kw = {"X": X.to(dtype), "y": torch.zeros(6, dtype=dtype)}
        ll = pointwise_log_likelihood(lin, {"w": w}, kw)["y"]
        want = pointwise_log_likelihood(lin, {"w": torch.as_tensor(w, dtype=dtype)}, kw)["y"]
        assert ll.dtype == want.dtype == (np.float32 if dtype == torch.float32 else np.float64)
        np.testing.assert_allclose(ll, want)
        assert posterior_predictive(lin, {"w": w}, kw)["y"].shape == (1, 4, 6)


def test_arviz_posteriors_are_read_and_malformed_draws_refused_clearly():
    """QA (I7): idata.posterior or a DataArray value gave AttributeError; draws without (chain, draw) a ValueError
    from unpacking; a list an AttributeError."""
    import arviz as az

    def m(y=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("n", 3):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    kw = {"y": torch.zeros(3)}
    draws = np.zeros((1, 2))
    want = pointwise_log_likelihood(m, {"mu": draws}, kw)["y"]
    idata = az.from_dict(posterior={"mu": draws})
    np.testing.assert_allclose(pointwise_log_likelihood(m, idata.posterior, kw)["y"], want)
    np.testing.assert_allclose(pointwise_log_likelihood(m, {"mu": idata.posterior["mu"]}, kw)["y"], want)
    for bad, match in ((torch.zeros(4), r"'mu' have shape \(4,\); expected \(chain, draw"),
                       (np.float64(0.0), r"'mu' have shape \(\); expected \(chain, draw"),
                       ([[0.0, 1.0]], "'mu' are a list; expected a torch tensor or a numeric NumPy array")):
        with pytest.raises(PyrozooError, match=match):
            pointwise_log_likelihood(m, {"mu": bad}, kw)


def test_every_observation_left_out_however_the_model_takes_them_is_drawn():
    """QA12: after the probe rule (an argument left None must observe the site), a PyroModule's forward(x, y=None)
    called without y, a **kwargs model, and one argument observing two sites were refused as missing latents.
    Where the model observes nothing, every site without draws is drawn, as pyro.infer.Predictive does."""
    from pyro.nn import PyroModule, PyroSample

    class Reg(PyroModule):
        def __init__(self):
            super().__init__()
            self.w = PyroSample(dist.Normal(0.0, 1.0))

        def forward(self, x, y=None):
            with pyro.plate("n", x.shape[0]):
                return pyro.sample("obs", dist.Normal(self.w * x, 1.0), obs=y)

    def by_kwargs(**kw):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("n", 3):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=kw.get("y"))

    def one_arg_two_sites(y=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("n", 3):
            pyro.sample("y1", dist.Normal(mu, 1.0), obs=None if y is None else y[0])
            pyro.sample("y2", dist.Normal(mu, 1.0), obs=None if y is None else y[1])

    assert posterior_predictive(Reg(), {"w": torch.randn(1, 4)}, {"x": torch.randn(3)})["obs"].shape == (1, 4, 3)
    assert posterior_predictive(by_kwargs, {"mu": torch.randn(1, 5)}, {})["y"].shape == (1, 5, 3)
    pp = posterior_predictive(one_arg_two_sites, {"mu": torch.full((1, 5), 40.0)}, {})
    assert sorted(pp) == ["y1", "y2"] and pp["y2"].mean() > 30


def test_a_transposed_arviz_posterior_is_read_by_dim_name():
    # QA12: DataArray values were read by position, so ("draw", "chain") swapped chains and draws silently
    import arviz as az

    rng = np.random.default_rng(0)
    idata = az.from_dict(posterior={"mu": rng.normal(size=(2, 3)), "sig": rng.uniform(0.5, 2, size=(2, 3))})
    kw = {"y": torch.zeros(3, dtype=torch.float64)}
    want = pointwise_log_likelihood(_two_latents, idata.posterior, kw)["y"]
    post = {"mu": idata.posterior["mu"].transpose("draw", "chain"), "sig": idata.posterior["sig"]}
    got = pointwise_log_likelihood(_two_latents, post, kw)["y"]
    assert got.shape == (2, 3, 3)
    np.testing.assert_allclose(got, want)


def test_a_missing_latent_refusal_lists_only_the_draws_given():
    # QA13: "got" also listed the left-out observation (['w', 'y'] for a posterior holding only w)
    def model(x=None, y=None):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        s = pyro.sample("s", dist.HalfNormal(1.0))
        with pyro.plate("n", 4):
            pyro.sample("x", dist.Normal(w, s), obs=x)
            pyro.sample("y", dist.Normal(w, s), obs=y)

    with pytest.raises(PyrozooError, match=r"no draws of the model's latent site\(s\) \['s'\]; expected every latent "
                                           r"site \['w', 's'\], got \['w'\]$"):
        posterior_predictive(model, {"w": torch.zeros(1, 2)}, {"x": torch.ones(4), "y": None})


def test_a_model_that_broadcasts_draws_against_each_other_is_replayed_one_draw_at_a_time():
    """``sigma.unsqueeze(-1)`` of a scalar drawn as (S, 1) under the draws plate made the likelihood's batch shape
    (S, S, n): at S = 1000 infer_discrete built gigabytes of tensors for minutes. A two-draw probe now sends such a
    model to the per-draw loop before the vectorized work, with the same values."""
    scales: list[tuple[int, ...]] = []

    def model(y=None):
        sigma = pyro.sample("sigma", dist.HalfNormal(2.0))
        with pyro.plate("feature", 3):
            gamma = pyro.sample("gamma", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
            w = pyro.sample("w", dist.Normal(0.0, 0.1 + gamma))
        scale = sigma.unsqueeze(-1) if sigma.dim() else sigma  # the user's broadcasting, wrong for (S, 1) draws
        scales.append(tuple(scale.shape))
        with pyro.plate("obs_id", 4):
            pyro.sample("y", dist.Normal(w.sum(-1, keepdim=True), scale), obs=y)

    num, y = 40, torch.tensor([0.5, -1.0, 2.0, 0.0])
    posterior = {"sigma": torch.linspace(0.5, 2.0, num).reshape(1, num), "w": torch.randn(1, num, 3)}
    ll = pointwise_log_likelihood(model, posterior, {"y": y}, params={})["y"]
    expected = dist.Normal(posterior["w"].sum(-1, keepdim=True), posterior["sigma"][..., None]).log_prob(y)
    np.testing.assert_allclose(ll, expected.numpy(), rtol=1e-5)
    pp = posterior_predictive(model, posterior, {"y": y})["y"]
    assert pp.shape == (1, num, 4)
    assert max((s[0] for s in scales if len(s) == 3), default=0) <= 2  # no (S, 1, 1) scale beyond the probe's
