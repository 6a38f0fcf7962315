"""Gibbs engine on a bivariate Gaussian target whose full conditionals and moments are known exactly."""

from __future__ import annotations

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.gibbs import GibbsKernel, run_gibbs
from pyrozoo.models import normal_gamma as ng

RHO = 0.9


def _x(state, d):
    return d["rho"] * state["y"] + torch.randn_like(state["y"]) * (1 - d["rho"] ** 2) ** 0.5


def _y(state, d):
    return d["rho"] * state["x"] + torch.randn_like(state["x"]) * (1 - d["rho"] ** 2) ** 0.5


def _init(c, d):
    return {"x": 5 * torch.randn(c, dtype=torch.float64), "y": 5 * torch.randn(c, dtype=torch.float64)}


KERNEL = GibbsKernel(init=_init, conditionals={"x": _x, "y": _y},
                     log_joint=lambda s, d: -(s["x"] ** 2 - 2 * d["rho"] * s["x"] * s["y"] + s["y"] ** 2)
                     / (2 * (1 - d["rho"] ** 2)))
DATA = {"rho": torch.tensor(RHO, dtype=torch.float64)}


def test_many_chains_recover_the_target_moments():
    res = run_gibbs(KERNEL, DATA, num_samples=2000, warmup_steps=100, num_chains=64, seed=1, progress=False)
    assert res.posterior["x"].shape == (64, 2000)
    assert res.sample_stats["lp"].shape == (64, 2000)
    idata = res.to_inference_data()
    x, y = res.draws("x"), res.draws("y")
    se_mean = float(az.mcse(idata, var_names=["x"])["x"])
    assert abs(x.mean()) < 4 * se_mean
    se_sd = float(az.mcse(idata, var_names=["x"], method="sd")["x"])
    assert abs(x.std() - 1.0) < 4 * se_sd
    # correlation: its MC error ~ (1 - rho^2) / sqrt(ESS)
    ess = float(az.ess(idata, var_names=["x"])["x"])
    assert abs(np.corrcoef(x, y)[0, 1] - RHO) < 4 * (1 - RHO**2) / np.sqrt(ess)
    assert float(az.rhat(idata)["x"]) < 1.01


def test_chains_are_independent_and_seeded():
    a = run_gibbs(KERNEL, DATA, num_samples=50, warmup_steps=0, num_chains=3, seed=7, progress=False)
    b = run_gibbs(KERNEL, DATA, num_samples=50, warmup_steps=0, num_chains=3, seed=7, progress=False)
    assert np.array_equal(a.posterior["x"], b.posterior["x"])
    assert not np.allclose(a.posterior["x"][0], a.posterior["x"][1])


def test_thinning_keeps_every_kth_sweep():
    res = run_gibbs(KERNEL, DATA, num_samples=10, warmup_steps=5, num_chains=2, thin=3, seed=0, progress=False)
    assert res.posterior["x"].shape == (2, 10)
    # a kernel that counts its sweeps: the kept draws are sweeps warmup + thin, warmup + 2 thin, ...
    counter = GibbsKernel(init=lambda c, d: {"k": torch.zeros(c)}, conditionals={"k": lambda s, d: s["k"] + 1})
    res = run_gibbs(counter, {}, num_samples=4, warmup_steps=5, num_chains=2, thin=3, seed=0, progress=False)
    assert np.array_equal(res.posterior["k"], np.tile([8.0, 11.0, 14.0, 17.0], (2, 1)))


@pytest.mark.parametrize("kwargs,match", [({"num_chains": 0}, "num_chains"), ({"thin": 0}, "thin"),
                                          ({"num_samples": 0}, "num_samples")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(PyrozooError, match=match):
        run_gibbs(KERNEL, DATA, progress=False, **kwargs)


def test_record_must_name_state_blocks():
    kernel = GibbsKernel(init=_init, conditionals={"x": _x, "y": _y}, record=("z",))
    with pytest.raises(PyrozooError, match="record"):
        run_gibbs(kernel, DATA, num_samples=2, progress=False)


# ------------------------------------------------------------------- the model's structure, before the first sweep
def _no_sweep(state, d):
    raise AssertionError("a sweep ran before the model was checked")


def _normal_gamma_case():
    ds = ng.simulate_normal_gamma(0, n=30)
    return ds, ng.sufficient_stats(ds), ds.model_kwargs()


def test_a_model_without_observed_site_fails_before_the_first_sweep():
    _, data, kwargs = _normal_gamma_case()

    def forgot_obs(x=None, *, n=None, mu0=0.0, mu_scale=10.0, a=1.0, b=1.0):
        mu = pyro.sample("mu", dist.Normal(mu0, mu_scale))
        beta = pyro.sample("beta", dist.Gamma(a, b))
        with pyro.plate("obs_id", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, beta.rsqrt()))  # obs=x forgotten

    kernel = GibbsKernel(init=ng._init, conditionals={"mu": _no_sweep, "beta": _no_sweep})
    with pytest.raises(PyrozooError, match="no observed sample site"):
        run_gibbs(kernel, data, model=forgot_obs, model_kwargs=kwargs, num_samples=10**6, progress=False)


def test_blocks_renamed_away_from_the_models_latents_fail_before_the_first_sweep():
    """A kernel whose block ``prec`` is the model's ``beta``: replaying the model would draw beta from its prior."""
    _, data, kwargs = _normal_gamma_case()
    kernel = GibbsKernel(init=lambda c, d: {"mu": torch.zeros(c, dtype=torch.float64),
                                            "prec": torch.ones(c, dtype=torch.float64)},
                         conditionals={"mu": _no_sweep, "prec": _no_sweep})
    with pytest.raises(PyrozooError, match=r"latent site\(s\) \['beta'\].*\['prec'\] are not sites of the model"):
        run_gibbs(kernel, data, model=ng.normal_gamma_model, model_kwargs=kwargs, num_samples=10, progress=False)


def test_a_record_leaving_out_a_model_latent_is_an_error():
    _, data, kwargs = _normal_gamma_case()
    kernel = GibbsKernel(init=ng._init, conditionals={"mu": _no_sweep, "beta": _no_sweep}, record=("mu",))
    with pytest.raises(PyrozooError, match=r"gibbs kernel.*latent site\(s\) \['beta'\].*got \['mu'\]"):
        run_gibbs(kernel, data, model=ng.normal_gamma_model, model_kwargs=kwargs, num_samples=10, progress=False)


def test_the_model_check_leaves_the_seeded_draws_and_the_callers_state_alone():
    _, data, kwargs = _normal_gamma_case()
    bare = run_gibbs(ng.GIBBS_KERNEL, data, num_samples=20, warmup_steps=5, num_chains=2, seed=3, progress=False)
    torch.manual_seed(11)
    before = torch.get_rng_state()
    full = run_gibbs(ng.GIBBS_KERNEL, data, model=ng.normal_gamma_model, model_kwargs=kwargs, num_samples=20,
                     warmup_steps=5, num_chains=2, seed=3, progress=False)
    assert torch.equal(torch.get_rng_state(), before)
    for name in ("mu", "beta"):
        assert np.array_equal(np.asarray(bare.posterior[name]), np.asarray(full.posterior[name]))
    assert full.log_likelihood["x"].shape == (2, 20, 30)
