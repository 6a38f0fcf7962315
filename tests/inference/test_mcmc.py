"""MCMC engine: sequential chains, per-draw sample stats, enumeration of discrete sites."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.mcmc import run_mcmc


def conjugate_model(x=None, n=10):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("obs_id", n):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def test_conjugate_normal_posterior_and_stats():
    x = torch.linspace(-0.5, 2.0, 10)
    res = run_mcmc(conjugate_model, {"x": x}, num_samples=300, warmup_steps=150, num_chains=2, seed=0,
                   progress=False)
    # exact: N(sum x / (n + 1), 1 / (n + 1))
    post_mean, post_sd = float(x.sum() / 11), (1 / 11) ** 0.5
    draws = res.draws("mu")
    assert res.posterior["mu"].shape == (2, 300)
    assert abs(draws.mean() - post_mean) < 4 * post_sd / np.sqrt(600 / 3)  # ESS >= N/3 for NUTS here
    assert draws.std() == pytest.approx(post_sd, rel=0.15)
    for key in ("diverging", "step_size", "acceptance_rate", "lp"):
        assert res.sample_stats[key].shape == (2, 300), key
    acc = res.sample_stats["acceptance_rate"]
    assert ((acc >= -1e-9) & (acc <= 1 + 1e-9)).all()
    assert res.log_likelihood["x"].shape == (2, 300, 10)


def mixture_model(x=None, n=6):
    loc = pyro.sample("loc", dist.Normal(0.0, 3.0))
    with pyro.plate("obs_id", n):
        z = pyro.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(torch.where(z.bool(), loc, -loc), 1.0), obs=x)


def test_enumerated_discrete_sites_are_summed_out():
    x = torch.tensor([2.0, 2.2, 1.8, -2.1, -1.9, 2.1])
    res = run_mcmc(mixture_model, {"x": x}, num_samples=100, warmup_steps=100, num_chains=1, seed=0,
                   progress=False, log_likelihood_fn=lambda post, kw: {"x": np.zeros((1, 100, 6))})
    assert set(res.posterior) == {"loc"}
    assert abs(abs(res.draws("loc").mean()) - 2.0) < 0.5


def test_bad_kernel():
    with pytest.raises(PyrozooError, match="kernel"):
        run_mcmc(conjugate_model, {"x": torch.zeros(10)}, kernel="gibbs", progress=False)


def test_seed_fixes_all_chains_and_chains_differ():
    x = torch.linspace(-0.5, 2.0, 10)
    kw = dict(num_samples=30, warmup_steps=20, num_chains=2, progress=False)
    a, b = run_mcmc(conjugate_model, {"x": x}, seed=5, **kw), run_mcmc(conjugate_model, {"x": x}, seed=5, **kw)
    c = run_mcmc(conjugate_model, {"x": x}, seed=6, **kw)
    assert np.array_equal(a.posterior["mu"], b.posterior["mu"])
    assert not np.array_equal(a.posterior["mu"], c.posterior["mu"])
    assert not np.allclose(a.posterior["mu"][0], a.posterior["mu"][1])  # each chain continues the stream
    # pointwise log-likelihood is log N(x_i | mu_draw, 1) at every draw
    mu = torch.as_tensor(a.posterior["mu"]).unsqueeze(-1)
    assert np.allclose(a.log_likelihood["x"], dist.Normal(mu, 1.0).log_prob(x).numpy(), atol=1e-5)


def standard_normal_model(x=None, d=10):
    """Prior N(0, 2 I) and one observation x ~ N(q, 2 I) at x = 0: the posterior of q is N(0, I)."""
    q = pyro.sample("q", dist.Normal(torch.zeros(d), 2**0.5).to_event(1))
    with pyro.plate("obs_id", d):
        pyro.sample("x", dist.Normal(q, 2**0.5), obs=x)


@pytest.mark.parametrize("kernel", ["nuts", "hmc"])
def test_energy_is_each_transitions_starting_hamiltonian(kernel):
    """energy_n = U(q_{n-1}) + K(r_n) with r_n ~ N(0, M) freshly drawn, so energy_n + lp_{n-1} = K(r_n) is
    chi^2_d / 2 whatever the mass matrix: mean d / 2, sd sqrt(d / 2), independent across n. Checked to 4 Monte Carlo
    standard errors; then ArviZ's BFMI (near 1 for this target) and energy plot work from the run's InferenceData."""
    import arviz as az

    d, n = 10, 800
    res = run_mcmc(standard_normal_model, {"x": torch.zeros(d), "d": d}, kernel=kernel, num_samples=n,
                   warmup_steps=200, num_chains=2, seed=1, progress=False)
    energy, lp = res.sample_stats["energy"], res.sample_stats["lp"]
    assert energy.shape == (2, n) and np.isfinite(energy).all()
    kinetic = (energy[:, 1:] + lp[:, :-1]).ravel()
    assert (kinetic > 0).all()
    assert abs(kinetic.mean() - d / 2) < 4 * np.sqrt(d / 2 / kinetic.size)
    # relative sd of a sample variance: sqrt((2 + excess kurtosis) / N), and chi^2_d has excess kurtosis 12 / d
    assert kinetic.var() == pytest.approx(d / 2, rel=4 * np.sqrt((2 + 12 / d) / kinetic.size))
    idata = res.to_inference_data()
    assert (az.bfmi(idata) > 0.6).all()
    import matplotlib

    matplotlib.use("Agg")
    az.plot_energy(idata)


def test_acceptance_rate_is_a_probability():
    """The per-draw acceptance probability is recovered from Pyro's running mean; rounding used to give
    1.0000000000000284 for a certain acceptance (a QA pass). It is clipped to [0, 1]."""
    x = torch.linspace(-0.5, 2.0, 10)
    res = run_mcmc(conjugate_model, {"x": x}, num_samples=200, warmup_steps=100, num_chains=1, seed=0,
                   max_tree_depth=1, progress=False)
    acc = res.sample_stats["acceptance_rate"]
    assert acc.max() <= 1.0 and acc.min() >= 0.0
    assert (acc == 1.0).any()


def constrained_model(x=None, n=8):
    """A positive scale (log transform) and a simplex (stick-breaking): both have a non-zero log|det J|."""
    scale = pyro.sample("scale", dist.Gamma(3.0, 2.0))
    w = pyro.sample("w", dist.Dirichlet(torch.tensor([2.0, 3.0, 4.0])))
    with pyro.plate("obs_id", n):
        pyro.sample("x", dist.Normal(w[0] - w[2], scale), obs=x)


@pytest.mark.parametrize("kernel", ["nuts", "hmc"])
def test_lp_is_the_log_joint_on_the_constrained_space(kernel):
    """``lp`` is the model's log joint at the draw, as Pyro's trace scores it (ArviZ's convention, and what the
    Gibbs engine records), not minus the potential energy, which adds the log-Jacobian of the unconstraining
    transforms."""
    from pyro import poutine

    x = torch.tensor([0.3, -1.2, 0.8, 2.0, -0.4, 0.1, 1.1, -0.7])
    res = run_mcmc(constrained_model, {"x": x}, kernel=kernel, num_samples=5, warmup_steps=30, num_chains=2,
                   seed=0, progress=False)
    lp = res.sample_stats["lp"]
    for c in range(2):
        for s in range(5):
            draw = {n: torch.as_tensor(res.posterior[n][c, s]) for n in ("scale", "w")}
            trace = poutine.trace(poutine.condition(constrained_model, draw)).get_trace(x=x)
            assert lp[c, s] == pytest.approx(float(trace.log_prob_sum()), rel=1e-5, abs=1e-5)


def test_nuts_tree_depth_reaches_a_tiny_maximum():
    """A 50-dimensional N(0, I) posterior at target_accept_prob 0.95 takes steps of ~0.2 sd, and in 50 dimensions a
    trajectory U-turns only after about half an oscillation, pi / 0.2 ~ 15 leapfrog steps. With max_tree_depth=2
    every transition is cut at the maximum: tree_depth 2 (int), 2^2 - 1 = 3 leapfrog steps, reached_max_treedepth
    true, in the (chain, draw) layout of the other stats, warmup left out."""
    d = 50
    res = run_mcmc(standard_normal_model, {"x": torch.zeros(d), "d": d}, num_samples=25, warmup_steps=50,
                   num_chains=2, seed=0, max_tree_depth=2, target_accept_prob=0.95, progress=False)
    depth, steps = res.sample_stats["tree_depth"], res.sample_stats["n_steps"]
    assert depth.shape == steps.shape == res.sample_stats["lp"].shape == (2, 25)
    assert np.issubdtype(depth.dtype, np.integer) and np.issubdtype(steps.dtype, np.integer)
    assert (depth == 2).all() and (steps == 3).all() and res.sample_stats["reached_max_treedepth"].all()
    stats = res.to_inference_data().sample_stats
    assert stats["tree_depth"].dims == ("chain", "draw") and stats["tree_depth"].dtype.kind == "i"


def test_nuts_tree_depth_is_mostly_below_the_maximum_on_an_easy_model_and_hmc_has_none():
    """On N(mu | x) (one dimension, adapted step size) trajectories U-turn after a few doublings: tree_depth stays
    well below the default maximum of 10, and the leapfrog steps of depth d number 2^d - 1 (then the next subtree
    turned at once) to 2^(d+1) - 1 (it turned or diverged late). HMC has no tree and records neither stat."""
    x = torch.linspace(-0.5, 2.0, 10)
    res = run_mcmc(conjugate_model, {"x": x}, num_samples=60, warmup_steps=40, num_chains=1, seed=0, progress=False)
    depth, steps = res.sample_stats["tree_depth"], res.sample_stats["n_steps"]
    assert depth.shape == (1, 60) and depth.min() >= 1 and depth.max() <= 4
    assert not res.sample_stats["reached_max_treedepth"].any()
    assert ((2**depth - 1 <= steps) & (steps <= 2 ** (depth + 1) - 1)).all()
    hmc = run_mcmc(conjugate_model, {"x": x}, kernel="hmc", num_samples=5, warmup_steps=5, num_chains=1, seed=0,
                   progress=False)
    assert not {"tree_depth", "n_steps", "reached_max_treedepth"} & set(hmc.sample_stats)


def test_nuts_tree_depth_is_the_depth_pyro_reached():
    """Against Pyro's own count: NUTS.sample draws a site ``rand_t=T_treedepth=D`` right after it keeps its D-th
    doubling, so the largest D drawn in a transition is the depth it ended at (0 when it drew none)."""
    from pyro.poutine.messenger import Messenger

    from pyrozoo.inference.mcmc import EnergyNUTS

    class SiteNames(Messenger):
        def __init__(self) -> None:
            super().__init__()
            self.names: list[str] = []

        def _pyro_sample(self, msg) -> None:
            self.names.append(msg["name"])

    x = torch.linspace(-0.5, 2.0, 10)
    kernel = EnergyNUTS(conjugate_model, max_tree_depth=3)
    kernel.setup(10, x=x)
    params, seen = kernel.initial_params, set()
    for _ in range(40):
        with SiteNames() as sites:
            params = kernel.sample(params)
        kept = [int(n.split("_treedepth=")[1]) for n in sites.names if n.startswith("rand_t=")]
        assert kernel._tree_depth == max(kept, default=0)
        seen.add(kernel._tree_depth)
    assert len(seen) >= 2  # the check saw transitions of different depths


def test_a_nan_in_the_data_is_named_before_any_work():
    """A user's model whose loader skips validation got Pyro's "Model specification seems incorrect - cannot find
    valid initial params", naming neither the argument nor the NaN; the model is not even traced now. Tensors
    named in allow_nonfinite (an inf truncation bound), integer tensors and None are not read."""
    calls = []

    def model(x=None, n=10, upper=None, idx=None):
        calls.append(1)
        conjugate_model(x, n)

    x = torch.linspace(-0.5, 2.0, 10)
    x[3] = float("nan")
    with pytest.raises(PyrozooError, match=r"^x: expected finite values, found 1 non-finite \(NaN at index \(3,\)\)$"):
        run_mcmc(model, {"x": x}, num_samples=5, warmup_steps=5, num_chains=1, progress=False)
    assert calls == []
    kwargs = {"x": torch.linspace(-0.5, 2.0, 10), "upper": torch.tensor(float("inf")), "idx": torch.arange(3)}
    with pytest.raises(PyrozooError, match=r"^upper: expected finite values, found 1 non-finite \(inf\)$"):
        run_mcmc(model, kwargs, num_samples=5, warmup_steps=5, num_chains=1, progress=False)
    res = run_mcmc(model, kwargs, num_samples=5, warmup_steps=5, num_chains=1, progress=False,
                   allow_nonfinite=["upper"])
    assert res.posterior["mu"].shape == (1, 5)


def _no_latent_model(y=None):
    with pyro.plate("obs_id", 5):
        pyro.sample("y", dist.Poisson(2.0), obs=y)


def _only_enumerated(x=None):
    with pyro.plate("obs_id", 6):
        z = pyro.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(2.0 * z - 1.0, 1.0), obs=x)


def test_a_model_without_latent_sites_is_refused_before_sampling(monkeypatch):
    """It sampled, then failed with an empty StopIteration when the log-likelihood looked for draws."""
    monkeypatch.setattr("pyrozoo.inference.mcmc.MCMC.run", lambda *a, **k: pytest.fail("sampled"))
    with pytest.raises(PyrozooError, match=r"^model: kernel='nuts' needs a latent sample site to infer .*the model "
                                           r"has none, so there is nothing to infer"):
        run_mcmc(_no_latent_model, {"y": torch.ones(5)}, num_samples=5, warmup_steps=5, num_chains=1,
                 progress=False)
    with pytest.raises(PyrozooError, match=r"only the enumerated site\(s\) \['z'\], which are summed out"):
        run_mcmc(_only_enumerated, {"x": torch.ones(6)}, num_samples=5, warmup_steps=5, num_chains=1,
                 progress=False, log_likelihood_fn=lambda p, k: {})


@pytest.mark.parametrize("depth", [0, -2, 2.5])
def test_max_tree_depth_below_one_is_refused_naming_it(depth, monkeypatch):
    """0 and -2 raised a bare ZeroDivisionError inside Pyro's NUTS after setup."""
    monkeypatch.setattr("pyrozoo.inference.mcmc.MCMC.run", lambda *a, **k: pytest.fail("sampled"))
    with pytest.raises(PyrozooError, match=rf"^max_tree_depth: expected an integer >= 1, got {depth}$"):
        run_mcmc(conjugate_model, {"x": torch.zeros(10)}, max_tree_depth=depth, progress=False)


def test_max_tree_depth_with_hmc_is_refused_and_nuts_reads_it():
    """HMC has no tree: the argument was accepted and silently ignored."""
    with pytest.raises(PyrozooError, match=r"^max_tree_depth: applies only to kernel='nuts' .*expected None with "
                                           r"kernel='hmc', got 3$"):
        run_mcmc(conjugate_model, {"x": torch.zeros(10)}, kernel="hmc", max_tree_depth=3, progress=False)
    res = run_mcmc(conjugate_model, {"x": torch.zeros(10)}, kernel="hmc", num_samples=5, warmup_steps=5,
                   num_chains=1, progress=False)
    assert "tree_depth" not in res.sample_stats
    res = run_mcmc(conjugate_model, {"x": torch.zeros(10)}, num_samples=20, warmup_steps=10, num_chains=1,
                   max_tree_depth=1, progress=False)
    assert res.sample_stats["tree_depth"].max() <= 1 and res.sample_stats["reached_max_treedepth"].any()


def _unmarked_discrete(y=None):
    p = pyro.sample("p", dist.Beta(1.0, 1.0))
    with pyro.plate("obs_id", 10):
        z = pyro.sample("z", dist.Bernoulli(p))
        pyro.sample("y", dist.Normal(z * 2.0, 1.0), obs=y)


def test_a_discrete_site_not_marked_for_enumeration_is_refused_before_sampling(monkeypatch):
    """Pyro's NUTS summed z out by itself: every chain ran, then the result failed for lack of z's draws."""
    monkeypatch.setattr("pyrozoo.inference.mcmc.MCMC.run", lambda *a, **k: pytest.fail("sampled"))
    with pytest.raises(PyrozooError, match=r"^model: kernel='nuts' draws only continuous sites, but site\(s\) "
                                           r"\['z'\] are discrete .*infer=\{'enumerate': 'parallel'\}.*"
                                           r"log_likelihood_fn"):
        run_mcmc(_unmarked_discrete, {"y": torch.randn(10)}, num_samples=5, warmup_steps=5, num_chains=1,
                 progress=False)


def _regression(x, y=None):
    w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    with pyro.plate("obs_id", x.shape[0]):
        pyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)


def test_bad_model_kwargs_are_refused_before_sampling(monkeypatch):
    """A NumPy obs failed with "'numpy.ndarray' object has no attribute 'dim'", a tensor for model_kwargs with
    "Boolean value of Tensor ... is ambiguous", a model failing on its data with a raw torch error."""
    monkeypatch.setattr("pyrozoo.inference.mcmc.MCMC.run", lambda *a, **k: pytest.fail("sampled"))
    x, y = torch.randn(20, 3), torch.randn(20)
    with pytest.raises(PyrozooError, match=r"^model_kwargs\['y'\]: the value observed at site 'y' must be a "
                                           r"torch.Tensor .*got a NumPy array \(20,\) float32; pass torch.as_tensor"):
        run_mcmc(_regression, {"x": x, "y": y.numpy()}, progress=False)
    with pytest.raises(PyrozooError, match=r"^model_kwargs: expected a mapping .*got a Tensor of shape \(20,\)$"):
        run_mcmc(_regression, y, progress=False)
    with pytest.raises(PyrozooError, match=r"^model: tracing model\(\*\*model_kwargs\) failed: RuntimeError: .*; "
                                           r"arguments: x \(20, 3\) float64, y \(19,\) float64$") as info:
        run_mcmc(_regression, {"x": x.double(), "y": y[:19].double()}, progress=False)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_device_is_checked_against_the_data_before_sampling(monkeypatch):
    """run_mcmc took no device, unlike run_svi; the meta device stands in for a GPU holding the data."""
    monkeypatch.setattr("pyrozoo.inference.mcmc.MCMC.run", lambda *a, **k: pytest.fail("sampled"))
    with pytest.raises(PyrozooError, match=r"^device: 'cpu' \(cpu\) asked for, but the tensors in model_kwargs are "
                                           r"on meta; run_mcmc fits where its data are"):
        run_mcmc(conjugate_model, {"x": torch.empty(10, device="meta")}, device="cpu", progress=False)
    with pytest.raises(PyrozooError, match=r"^device: expected one of auto, cpu, cuda, cuda:N; got 'gpu'$"):
        run_mcmc(conjugate_model, {"x": torch.zeros(10)}, device="gpu", progress=False)
    monkeypatch.undo()
    res = run_mcmc(conjugate_model, {"x": torch.zeros(10)}, device="cpu", num_samples=5, warmup_steps=5,
                   num_chains=1, progress=False)
    assert res.posterior["mu"].shape == (1, 5)


def test_a_bare_assert_in_the_model_says_where_it_failed():
    """QA: a model's `assert` with no message read "AssertionError: AssertionError"; the error now names the file
    and line of the failed assertion."""
    def asserting(y=None):
        if y.shape[0] != 5:  # a bare `assert` as a model outside pytest has it (pytest rewrites this file's asserts)
            raise AssertionError
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("n", y.shape[0]):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    with pytest.raises(PyrozooError, match=r"failed: AssertionError: \(no message\) at .*test_mcmc\.py:\d+; "
                                           r"arguments: y \(4,\) float32"):
        run_mcmc(asserting, {"y": torch.randn(4)}, num_samples=5, warmup_steps=5, progress=False)


def test_a_numpy_argument_that_fails_only_under_gradients_is_refused_before_sampling(monkeypatch):
    """``w * x`` with ``x`` a NumPy array runs in a plain trace but failed in the first warm-up step with torch's
    "Can't call numpy() on Tensor that requires grad"."""
    monkeypatch.setattr("pyrozoo.inference.mcmc.MCMC.run", lambda *a, **k: pytest.fail("sampled"))

    def scaled(x, y=None):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("obs_id", len(x)):
            pyro.sample("y", dist.Normal(w * x, 1.0), obs=y)

    x = np.linspace(-1, 1, 20).astype(np.float32)
    with pytest.raises(PyrozooError, match=r"^model: model\(\*\*model_kwargs\) runs once, but fails when its latents "
                                           r"carry gradients.*\['x'\] are NumPy arrays: pass torch tensors"):
        run_mcmc(scaled, {"x": x, "y": torch.zeros(20)}, progress=False)


def test_dispersed_starts_put_chain_zero_at_the_start_and_the_others_seeded_around_it():
    """dispersed_starts: chain 0 at ``start``; chain c at T(T^{-1}(start) + spread * scale * z_c), z_c ~ N(0, I)
    from a CPU generator seeded by ``seed``: the same seed gives the same starts, another seed others."""
    from torch.distributions import biject_to, constraints

    from pyrozoo.inference.mcmc import START_SPREAD, dispersed_starts

    start = {"m": torch.tensor([0.5, -1.0]), "s": torch.tensor(2.0)}
    scale, supports = {"m": torch.tensor([0.1, 1.0]), "s": 0.2}, {"m": constraints.real, "s": constraints.positive}
    site = {"type": "sample", "is_observed": False, "fn": None}
    vals = [[f({**site, "name": n}) for n in ("m", "s")] for f in dispersed_starts(start, scale, supports, 3, 7)]
    again = [[f({**site, "name": n}) for n in ("m", "s")] for f in dispersed_starts(start, scale, supports, 3, 7)]
    other = [[f({**site, "name": n}) for n in ("m", "s")] for f in dispersed_starts(start, scale, supports, 3, 8)]
    assert torch.equal(vals[0][0], start["m"]) and torch.equal(vals[0][1], start["s"])
    gen = torch.Generator().manual_seed(7)
    for c in (1, 2):
        z_m = torch.randn(2, generator=gen, dtype=torch.float64)
        z_s = torch.randn((), generator=gen, dtype=torch.float64)
        torch.testing.assert_close(vals[c][0], start["m"] + START_SPREAD * scale["m"] * z_m.float())
        t = biject_to(constraints.positive)
        torch.testing.assert_close(vals[c][1], t(t.inv(start["s"]) + START_SPREAD * 0.2 * z_s.float()))
        assert all(torch.equal(a, b) for a, b in zip(vals[c], again[c], strict=True))
        assert not torch.equal(vals[c][0], other[c][0])
    assert not torch.equal(vals[1][0], vals[2][0])


def test_run_mcmc_gives_each_chain_its_own_init_strategy_and_refuses_a_wrong_count(monkeypatch):
    """A sequence of num_chains init strategies starts chain c at the c-th (NUTS and HMC); a sequence of another
    length is refused by name before any work."""
    from pyro.infer.autoguide import init_to_value

    from pyrozoo.inference import mcmc

    seen = []
    for cls in (mcmc.EnergyNUTS, mcmc.EnergyHMC):
        orig = cls.setup

        def setup(self, *args, _orig=orig, **kwargs):
            _orig(self, *args, **kwargs)
            seen.append(float(self.initial_params["mu"]))

        monkeypatch.setattr(cls, "setup", setup)
    x = torch.randn(10)
    inits = [init_to_value(values={"mu": torch.tensor(v)}) for v in (0.25, -1.5, 3.0)]
    for kernel in ("nuts", "hmc"):
        seen.clear()
        run_mcmc(conjugate_model, {"x": x}, kernel=kernel, num_samples=3, warmup_steps=2, num_chains=3,
                 init_strategy=inits, progress=False)
        assert seen == [0.25, -1.5, 3.0]
    seen.clear()
    with pytest.raises(PyrozooError, match=r"init_strategy: expected None, an init strategy .* \(3 callables\), "
                                           r"got a sequence of 2"):
        run_mcmc(conjugate_model, {"x": x}, num_samples=3, warmup_steps=2, num_chains=3, init_strategy=inits[:2],
                 progress=False)
    assert seen == []
