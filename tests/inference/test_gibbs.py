"""Gibbs engine on a bivariate Gaussian target whose full conditionals and moments are known exactly."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.gibbs import GibbsKernel, run_gibbs

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
