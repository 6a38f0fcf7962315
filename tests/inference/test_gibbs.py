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


# ------------------------------------------------- the kernel's contract: blocks, shapes, dtypes, finite draws
def _counter_init(c, d):
    return {"k": torch.zeros(c, dtype=torch.float64)}


def _count(state, d):
    return state["k"] + 1


def test_a_recorded_block_without_a_conditional_fails_before_the_first_sweep():
    """It kept its initial value in every draw (y = 5 randn forever) and the run looked converged."""
    kernel = GibbsKernel(init=_init, conditionals={"x": _no_sweep})
    with pytest.raises(PyrozooError, match=r"record: block\(s\) \['y'\] have no conditional.*got conditionals for "
                                           r"\['x'\]"):
        run_gibbs(kernel, DATA, num_samples=10, progress=False)


def test_a_conditional_naming_no_block_of_the_state_fails_before_the_first_sweep():
    """A misspelt block ('xx' for 'x'): x stayed at its start and 'xx' was drawn but never recorded."""
    kernel = GibbsKernel(init=_init, conditionals={"xx": _no_sweep, "y": _no_sweep})
    with pytest.raises(PyrozooError, match=r"conditionals: block\(s\) \['xx'\] are not in init's state \['x', 'y'\]"):
        run_gibbs(kernel, DATA, num_samples=10, progress=False)


def test_an_unrecorded_block_without_a_conditional_is_a_fixed_helper():
    def init(c, d):
        return {**_init(c, d), "scale": torch.full((c,), 2.0, dtype=torch.float64)}

    kernel = GibbsKernel(init=init, conditionals={"x": _x, "y": _y}, record=("x", "y"))
    res = run_gibbs(kernel, DATA, num_samples=5, warmup_steps=0, num_chains=2, seed=0, progress=False)
    assert set(res.posterior) == {"x", "y"}


def test_lp_is_floating_whatever_block_comes_first():
    """lp took the dtype of the first state block: an int64 counter first truncated lp to integers."""
    def init(c, d):
        return {"it": torch.zeros(c, dtype=torch.long), **_init(c, d)}

    with_int = GibbsKernel(init=init, conditionals={"it": lambda s, d: s["it"] + 1, "x": _x, "y": _y},
                           log_joint=KERNEL.log_joint, record=("x", "y"))
    a = run_gibbs(with_int, DATA, num_samples=20, warmup_steps=2, num_chains=3, seed=5, progress=False)
    b = run_gibbs(KERNEL, DATA, num_samples=20, warmup_steps=2, num_chains=3, seed=5, progress=False)
    assert np.asarray(a.sample_stats["lp"]).dtype == np.float64
    assert np.array_equal(np.asarray(a.sample_stats["lp"]), np.asarray(b.sample_stats["lp"]))


def test_an_integer_log_joint_is_an_error():
    kernel = GibbsKernel(init=_init, conditionals={"x": _x, "y": _y},
                         log_joint=lambda s, d: torch.zeros(s["x"].shape[0], dtype=torch.long))
    with pytest.raises(PyrozooError, match=r"log_joint \(sweep 1\): expected a floating tensor, got torch.int64"):
        run_gibbs(kernel, DATA, num_samples=3, warmup_steps=0, num_chains=2, progress=False)


def test_draws_are_recorded_in_the_dtype_the_conditionals_draw_in():
    """A float32 init with float64 conditionals recorded float32 draws of float64 chains."""
    kernel = GibbsKernel(init=lambda c, d: {k: v.float() for k, v in _init(c, d).items()},
                         conditionals={"x": lambda s, d: _x(s, d).double(), "y": lambda s, d: _y(s, d).double()})
    res = run_gibbs(kernel, DATA, num_samples=5, warmup_steps=0, num_chains=2, seed=0, progress=False)
    assert np.asarray(res.posterior["x"]).dtype == np.float64


def test_a_conditional_that_changes_its_dtype_is_an_error():
    kernel = GibbsKernel(init=_counter_init, conditionals={"k": lambda s, d: (s["k"] + 1).to(
        torch.float32 if s["k"][0] >= 1 else torch.float64)})
    with pytest.raises(PyrozooError, match=r"conditional 'k' \(sweep 2\): returned torch.float32; expected "
                                           r"torch.float64"):
        run_gibbs(kernel, {}, num_samples=5, warmup_steps=0, num_chains=2, progress=False)


@pytest.mark.parametrize("draw,got", [(lambda s, d: s["k"][0] + 1, r"\(\)"),
                                      (lambda s, d: s["k"][:, None] + 1, r"\(3, 1\)"),
                                      (lambda s, d: 1.0, "float")])
def test_a_draw_of_the_wrong_shape_is_an_error(draw, got):
    """A chain-less draw was broadcast to every chain (identical chains, r_hat 1.00)."""
    kernel = GibbsKernel(init=_counter_init, conditionals={"k": draw})
    with pytest.raises(PyrozooError, match=rf"conditional 'k' \(sweep 1\): expected .*shape \(3,\).*got {got}"):
        run_gibbs(kernel, {}, num_samples=5, warmup_steps=0, num_chains=3, progress=False)


@pytest.mark.parametrize("init,got", [(lambda c, d: {"k": torch.zeros(c + 1)}, r"\(4,\)"),
                                      (lambda c, d: {"k": torch.tensor(0.0)}, r"\(\)")])
def test_init_must_give_the_chains_first_before_the_first_sweep(init, got):
    """C + 1 chains in init gave 4 chains where 3 were asked."""
    kernel = GibbsKernel(init=init, conditionals={"k": _no_sweep})
    with pytest.raises(PyrozooError, match=rf"init: block 'k': expected shape \(num_chains=3, \.\.\.\).*got {got}"):
        run_gibbs(kernel, {}, num_samples=5, num_chains=3, progress=False)


@pytest.mark.parametrize("log_joint,got", [(lambda s, d: s["k"][:, None], r"\(2, 1\)"),
                                           (lambda s, d: s["k"].sum(), r"\(\)")])
def test_log_joint_must_give_one_value_per_chain(log_joint, got):
    kernel = GibbsKernel(init=_counter_init, conditionals={"k": _count}, log_joint=log_joint)
    with pytest.raises(PyrozooError, match=rf"log_joint \(sweep 3\): expected one value per chain, shape \(2,\), "
                                           rf"got {got}"):
        run_gibbs(kernel, {}, num_samples=5, warmup_steps=2, num_chains=2, progress=False)


def _gamma_poisson(counts=None, *, groups=4):
    beta = pyro.sample("beta", dist.Gamma(1.0, 1.0))
    with pyro.plate("group", groups):
        lam = pyro.sample("lam", dist.Gamma(2.0, beta))
        pyro.sample("counts", dist.Poisson(lam), obs=counts)


def test_recorded_blocks_must_have_the_model_sites_shapes_before_the_first_sweep():
    """Kernel data for 5 groups and a model with 4 gave a posterior with group: 5."""
    kwargs = {"counts": torch.tensor([1.0, 3.0, 0.0, 2.0]), "groups": 4}
    kernel = GibbsKernel(init=lambda c, d: {"lam": torch.ones(c, 5), "beta": torch.ones(c)},
                         conditionals={"lam": _no_sweep, "beta": _no_sweep})
    with pytest.raises(PyrozooError, match=r"block 'lam' holds \(5,\) per chain \(init gives \(2, 5\), chains "
                                           r"first\); expected the model site's shape \(4,\)"):
        run_gibbs(kernel, {}, model=_gamma_poisson, model_kwargs=kwargs, num_chains=2, num_samples=10**6,
                  progress=False)


def _nan_kernel(at_sweep, calls):
    """Counts sweeps in k; chain 1 of block v turns NaN at sweep ``at_sweep`` and stays so."""
    def draw_v(s, d):
        calls.append(1)
        v = s["k"].clone()
        v[1] = torch.where(s["k"][1] >= at_sweep, torch.nan, v[1])
        return v

    return GibbsKernel(init=lambda c, d: {"k": torch.zeros(c, dtype=torch.float64),
                                          "v": torch.zeros(c, dtype=torch.float64)},
                       conditionals={"k": _count, "v": draw_v})


def test_a_non_finite_draw_names_the_block_chain_and_draw():
    """NaN draws came back silently (model=None) or failed in the log-likelihood replay naming none of these."""
    calls = []
    with pytest.raises(PyrozooError, match=r"block 'v': non-finite value \(NaN or inf\) in chain 1 at draw 3 "
                                           r"\(sweep 6\)"):
        run_gibbs(_nan_kernel(6, calls), {}, num_samples=1000, warmup_steps=2, num_chains=3, progress=False)
    assert len(calls) <= 101  # found at the next check (every 100 sweeps), not after all 1002 sweeps


def test_a_non_finite_state_in_warmup_is_an_error():
    with pytest.raises(PyrozooError, match=r"block 'v': non-finite value \(NaN or inf\) in chain 1, first seen "
                                           r"after warmup sweeps 2 to 101"):
        run_gibbs(_nan_kernel(50, []), {}, num_samples=10, warmup_steps=500, num_chains=2, progress=False)


def test_a_non_finite_draw_in_the_last_batch_is_caught_at_the_end():
    with pytest.raises(PyrozooError, match=r"chain 1 at draw 9 \(sweep 10\)"):
        run_gibbs(_nan_kernel(10, []), {}, num_samples=10, warmup_steps=0, num_chains=2, progress=False)


def test_record_may_be_one_name():
    kernel = GibbsKernel(init=_init, conditionals={"x": _x, "y": _y}, record="x")
    assert kernel.record == ("x",)
    res = run_gibbs(kernel, DATA, num_samples=3, warmup_steps=0, num_chains=2, progress=False)
    assert set(res.posterior) == {"x"}


@pytest.mark.parametrize("fields,match", [
    ({"record": []}, "record: expected a block name or a non-empty sequence"),
    ({"record": 3}, "record: expected a block name or a non-empty sequence of block names, got int"),
    ({"record": ("x", "x")}, r"record: block\(s\) \['x'\] are named more than once"),
    ({"conditionals": [("x", _x), ("y", _y)]}, "conditionals: expected a non-empty mapping.*got list"),
    ({"conditionals": {"x": 1.0}}, r"conditionals: expected block names \(str\) mapped to callables.*'x': 'float'"),
    ({"init": {"x": torch.zeros(2)}}, "init: expected a callable init.*got dict"),
    ({"log_joint": 0.0}, "log_joint: expected None or a callable"),
])
def test_kernel_fields_are_checked(fields, match):
    with pytest.raises(PyrozooError, match=match):
        GibbsKernel(**{"init": _init, "conditionals": {"x": _x, "y": _y}, **fields})


@pytest.mark.parametrize("init,match", [(lambda c, d: {"x": np.zeros(c)}, "init: block 'x': expected a torch.Tensor, "
                                                                         "got ndarray"),
                                        (lambda c, d: [torch.zeros(c)], "init: expected a non-empty mapping")])
def test_init_must_return_a_mapping_of_tensors(init, match):
    with pytest.raises(PyrozooError, match=match):
        run_gibbs(GibbsKernel(init=init, conditionals={"x": _no_sweep}), DATA, num_samples=3, progress=False)


def test_a_non_finite_state_late_in_warmup_is_named_in_warmup():
    """The warmup state was checked every 100 sweeps only: a NaN from sweep 150 with warmup 180 was reported at
    draw 0 (sweep 181). The state is checked at warmup's last sweep too."""
    with pytest.raises(PyrozooError, match=r"in chain 1, first seen after warmup sweeps 102 to 180"):
        run_gibbs(_nan_kernel(150, []), {}, num_samples=10, warmup_steps=180, num_chains=2, progress=False)


def test_a_fixed_helper_under_the_default_record_is_told_how_to_pass_record():
    kernel = GibbsKernel(init=lambda c, d: {"a": torch.zeros(c, dtype=torch.float64), "h": torch.ones(c)},
                         conditionals={"a": lambda s, d: s["a"] + 1})
    with pytest.raises(PyrozooError, match=r"record: block\(s\) \['h'\] have no conditional.*record was not given, "
                                           r"so every block of init's state is recorded; for fixed helper blocks "
                                           r"pass record=\('a',\)"):
        run_gibbs(kernel, {}, num_samples=3, warmup_steps=0, num_chains=2, progress=False)


def test_a_nan_in_the_data_or_the_model_kwargs_is_named_before_the_first_sweep():
    """A NaN sufficient statistic reached the conditionals and came back as torch's "Expected parameter rate ...
    GreaterThan" from inside the kernel; now a PyrozooError naming the entry before init or the model runs."""
    calls = []

    def init(c, d):
        calls.append(1)
        return ng.GIBBS_KERNEL.init(c, d)

    kernel = GibbsKernel(init=init, conditionals=ng.GIBBS_KERNEL.conditionals, log_joint=ng.GIBBS_KERNEL.log_joint)
    ds = ng.make_dataset(np.random.default_rng(0).normal(1.0, 2.0, 20))
    stats = {**ng.sufficient_stats(ds), "ss": torch.tensor(float("nan"), dtype=torch.float64)}
    with pytest.raises(PyrozooError, match=r"^data\['ss'\]: expected finite values, found 1 non-finite \(NaN\)$"):
        run_gibbs(kernel, stats, num_samples=3, warmup_steps=0, num_chains=2, progress=False)
    kwargs = ds.model_kwargs()
    kwargs["x"] = kwargs["x"].clone()
    kwargs["x"][4] = float("nan")
    with pytest.raises(PyrozooError, match=r"^x: expected finite values, found 1 non-finite \(NaN at index \(4,\)\)"):
        run_gibbs(kernel, ng.sufficient_stats(ds), model=ng.normal_gamma_model, model_kwargs=kwargs, num_samples=3,
                  warmup_steps=0, num_chains=2, progress=False)
    assert calls == []


def test_bad_model_kwargs_fail_before_the_first_sweep():
    """A tensor for model_kwargs failed with "Boolean value of Tensor ... is ambiguous", a NumPy observation with
    "'numpy.ndarray' object has no attribute 'dim'", a model failing on its data with a raw torch error."""
    _, data, kwargs = _normal_gamma_case()
    kernel = GibbsKernel(init=ng._init, conditionals={"mu": _no_sweep, "beta": _no_sweep})
    with pytest.raises(PyrozooError, match=r"^model_kwargs: expected a mapping .*got a Tensor of shape \(30,\)$"):
        run_gibbs(kernel, data, model=ng.normal_gamma_model, model_kwargs=kwargs["x"], progress=False)
    with pytest.raises(PyrozooError, match=r"^model: tracing model\(\*\*model_kwargs\) failed: .* x NumPy \(30,\) "
                                           r"float64; \['x'\] are NumPy arrays: pass torch tensors"):
        run_gibbs(kernel, data, model=ng.normal_gamma_model, model_kwargs={**kwargs, "x": kwargs["x"].numpy()},
                  progress=False)

    def breaks(x=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        beta = pyro.sample("beta", dist.Gamma(1.0, 1.0))
        with pyro.plate("obs_id", 29):
            pyro.sample("x", dist.Normal(mu, beta.rsqrt()), obs=x)

    with pytest.raises(PyrozooError, match=r"^model: observed site 'x' has batch shape \(29,\) .*but its value has "
                                           r"shape \(30,\), which does not broadcast .*arguments: x \(30,\) "
                                           r"float64\)$"):
        run_gibbs(kernel, data, model=breaks, model_kwargs={"x": kwargs["x"]}, progress=False)


def test_device_is_checked_against_the_data_before_the_first_sweep():
    """run_gibbs took no device, unlike run_svi; the meta device stands in for a GPU holding the data."""
    _, data, kwargs = _normal_gamma_case()
    kernel = GibbsKernel(init=ng._init, conditionals={"mu": _no_sweep, "beta": _no_sweep})
    meta = {k: (v.to("meta") if isinstance(v, torch.Tensor) else v) for k, v in data.items()}
    with pytest.raises(PyrozooError, match=r"^device: 'cpu' \(cpu\) asked for, but the tensors in data are on meta; "
                                           r"run_gibbs fits where its data are"):
        run_gibbs(kernel, meta, device="cpu", progress=False)
    with pytest.raises(PyrozooError, match=r"^device: expected one of auto, cpu, cuda, cuda:N; got 'gpu'$"):
        run_gibbs(kernel, data, model=ng.normal_gamma_model, model_kwargs=kwargs, device="gpu", progress=False)
    res = run_gibbs(ng.GIBBS_KERNEL, data, model=ng.normal_gamma_model, model_kwargs=kwargs, device="cpu",
                    num_samples=5, warmup_steps=2, num_chains=2, progress=False)
    assert res.posterior["mu"].shape == (2, 5)
