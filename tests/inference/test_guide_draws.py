"""Draws from a fitted guide: one plated run where the guide vectorizes, one run per draw where it does not; the
draws follow the guide's distribution either way (checked against its closed-form moments)."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoDelta, AutoMultivariateNormal, AutoNormal

import pyrozoo.inference.guide_draws as guide_draws
from pyrozoo.inference.guide_draws import draw_from_guide

S = 20_000


def model(x=None, y=None):
    w = pyro.sample("w", dist.Normal(torch.zeros(3), 1.0).to_event(1))
    s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(x @ w + z, s), obs=y)


X, Y = torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), torch.linspace(-1, 1, 6)


@pytest.fixture
def runs(monkeypatch):
    """The number of draws each one-run-per-draw call made (empty: every chunk was drawn in one plated run)."""
    calls = []
    sequential = guide_draws._sequential

    def counted(guide, kwargs, names, num):
        calls.append(num)
        return sequential(guide, kwargs, names, num)

    monkeypatch.setattr(guide_draws, "_sequential", counted)
    return calls


def _fitted_mvn():
    """An AutoMultivariateNormal with a non-trivial (correlated) q, set by hand."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = AutoMultivariateNormal(model)
    guide(x=X, y=Y)
    dim = guide.loc.shape[0]
    with torch.no_grad():
        guide.loc.copy_(torch.linspace(-1.0, 1.0, dim))
        tril = torch.eye(dim) * 0.5 + torch.tril(torch.full((dim, dim), 0.2), -1)
        guide.scale.copy_(tril.diagonal())
        guide.scale_tril.copy_(tril / tril.diagonal().unsqueeze(-1))
    return guide


def _unconstrained(draws):
    """The draws of w, log s, z as the latent vector AutoMultivariateNormal's q is over."""
    return torch.cat([draws["w"][0], draws["s"][0].log().unsqueeze(-1), draws["z"][0]], dim=-1)


@pytest.mark.parametrize("chunk_elements", [2**22, 5000])
def test_a_correlated_guide_is_drawn_in_plated_runs_with_its_mean_and_covariance(runs, monkeypatch, chunk_elements):
    """The plated draws of AutoMultivariateNormal have q's mean and covariance (Monte Carlo error 5 standard errors),
    in one chunk and in several (5000 elements: 178 draws of 28 numbers a chunk)."""
    monkeypatch.setattr(guide_draws, "CHUNK_ELEMENTS", chunk_elements)
    guide = _fitted_mvn()
    pyro.set_rng_seed(1)
    draws = draw_from_guide(guide, {"x": X, "y": Y}, ["w", "s", "z"], S)
    assert runs == [] and {k: tuple(v.shape) for k, v in draws.items()} == {"w": (1, S, 3), "s": (1, S),
                                                                            "z": (1, S, 6)}
    q = guide.get_posterior()
    u = _unconstrained(draws).double()
    sd = q.covariance_matrix.diagonal().sqrt().double()
    assert ((u.mean(0) - q.loc.double()).abs() <= 5 * sd / S**0.5).all()
    cov = torch.cov(u.T)
    # Var of a sample covariance of a Gaussian pair: (s_ij^2 + s_ii s_jj) / S
    se = ((q.covariance_matrix.double() ** 2 + torch.outer(sd**2, sd**2)) / S).sqrt()
    assert ((cov - q.covariance_matrix.double()).abs() <= 5 * se).all()


@pytest.mark.parametrize("make", [AutoNormal, AutoDelta])
def test_autoguides_with_plates_and_deltas_are_drawn_in_one_run(runs, make):
    pyro.clear_param_store()
    guide = make(model)
    guide(x=X, y=Y)
    draws = draw_from_guide(guide, {"x": X, "y": Y}, ["w", "s", "z"], 500)
    assert runs == [] and draws["z"].shape == (1, 500, 6)
    if make is AutoDelta:  # a point mass: every draw is the point
        assert torch.equal(draws["w"][0], guide.median()["w"].expand(500, 3))


def mixing_guide():
    """A guide that is wrong under a plate: b's mean sums a over every dim, so the plated run mixes the draws."""
    a = pyro.sample("a", dist.Normal(0.0, 1.0))
    pyro.sample("b", dist.Normal(a.sum(), 1.0))


def item_guide():
    """A guide that raises under a plate (``.item()`` of S draws)."""
    a = pyro.sample("a", dist.Normal(0.0, 1.0))
    pyro.sample("b", dist.Normal(a.item(), 1.0))


@pytest.mark.parametrize("guide", [mixing_guide, item_guide])
def test_a_guide_that_does_not_vectorize_is_drawn_one_run_per_draw(runs, guide):
    """b | a ~ N(a, 1), a ~ N(0, 1): Var b = 2, Cov(a, b) = 1. The mixing guide passes the shape check under the
    plate; the replay check catches it (its plated b has variance about 1 + S)."""
    pyro.set_rng_seed(2)
    draws = draw_from_guide(guide, {}, ["a", "b"], 4000)
    assert runs == [4000]
    ab = torch.stack([draws["a"][0], draws["b"][0]]).double()
    cov = torch.cov(ab)
    # standard errors of the sample covariances (Gaussian): sqrt((s_ij^2 + s_ii s_jj) / S)
    assert abs(cov[1, 1] - 2.0) < 5 * (8 / 4000) ** 0.5 and abs(cov[0, 1] - 1.0) < 5 * (3 / 4000) ** 0.5


def test_a_subsampling_plate_in_the_guide_is_drawn_one_run_per_draw(runs):
    """Each run of a subsampling plate draws its own rows: a plated run would give all draws one subsample."""
    def guide():
        with pyro.plate("rows", 10, subsample_size=3) as idx:
            pyro.sample("r", dist.Normal(idx.double(), 1.0))

    draws = draw_from_guide(guide, {}, ["r"], 5)
    assert runs == [5] and draws["r"].shape == (1, 5, 3)


def test_the_normal_gamma_guide_vectorizes(runs):
    from pyrozoo.guides.normal_gamma import make_normal_gamma_guide

    pyro.clear_param_store()
    guide = make_normal_gamma_guide({"mu_loc": 1.0, "mu_scale": 0.5, "beta_conc": 4.0, "beta_mean": 2.0})
    x = torch.zeros(3, dtype=torch.float64)
    draws = draw_from_guide(guide, {"x": x}, ["mu", "beta"], S)
    assert runs == [] and draws["mu"].dtype == torch.float64
    assert abs(draws["mu"].mean() - 1.0) < 5 * 0.5 / S**0.5
    assert abs(draws["beta"].mean() - 2.0) < 5 * (2.0 / 4.0**0.5) / S**0.5  # Gamma sd = mean / sqrt(conc)


def test_a_latent_the_guide_sets_with_pyro_deterministic_is_drawn_one_run_per_draw(runs):
    """A guide may give a model latent as a ``pyro.deterministic`` site (an observed Delta), which the plated run
    does not count among its random sites: drawn one run per draw, as before, rather than a KeyError."""
    def guide():
        a = pyro.sample("a", dist.Normal(0.0, 1.0))
        pyro.deterministic("b", 2 * a)

    draws = draw_from_guide(guide, {}, ["a", "b"], 50)
    assert runs == [50] and torch.equal(draws["b"], 2 * draws["a"])


def scalar_model(y=None):
    """A model whose code broadcasts over a draw plate (a messenger guide runs it under the plate)."""
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    sigma = pyro.sample("sigma", dist.LogNormal(0.0, 1.0))
    with pyro.plate("obs_id", 40):
        pyro.sample("y", dist.Normal(mu, sigma), obs=y)


def test_a_messenger_guide_passes_the_check_and_chunks_count_the_model_it_runs(runs, monkeypatch):
    """QA: the replay gave each site an empty infer dict, wiping the prior AutoNormalMessenger keeps there, so the
    check always failed (KeyError) and messenger guides were drawn one run per draw (440x slower). A messenger guide
    runs the model, likelihood included: a chunk counts the observed site's 40 values too (42 per draw, at 4200
    elements a chunk: 100 draws)."""
    from pyro.infer.autoguide import AutoNormalMessenger

    pyro.clear_param_store()
    guide = AutoNormalMessenger(scalar_model)
    y = torch.linspace(-1.0, 3.0, 40)
    guide(y=y)
    with torch.no_grad():
        guide.locs.mu.fill_(1.0)
    sd = float(guide.scales.mu)  # q(mu) = N(1, sd)
    sizes = []
    vectorized = guide_draws._vectorized
    monkeypatch.setattr(guide_draws, "_vectorized", lambda *a: sizes.append(a[4]) or vectorized(*a))
    monkeypatch.setattr(guide_draws, "CHUNK_ELEMENTS", 4200)
    pyro.set_rng_seed(3)
    draws = draw_from_guide(guide, {"y": y}, ["mu", "sigma"], 2000)
    assert runs == [] and sizes == [100] * 20 and draws["mu"].shape == (1, 2000)
    mu = draws["mu"][0].double()
    assert abs(mu.mean() - 1.0) < 5 * sd / 2000**0.5 and abs(mu.std() / sd - 1) < 5 / (2 * 2000) ** 0.5


def test_pyros_autoguides_skip_the_replay_check(monkeypatch):
    """AutoIAFNormal's replay inverts its autoregressive flow (one network pass per dimension): at 1000 latents the
    check cost more than the draws it saved (QA: 82 s against 15 s one run per draw). Pyro's AutoGuides draw from
    their parameters alone and vectorize by construction (Pyro trains them under such a plate), so they are not
    replayed; a hand-written guide still is."""
    from pyro.infer.autoguide import AutoIAFNormal

    from pyrozoo.inference.svi import FittedGuide

    replays = []
    monkeypatch.setattr(guide_draws, "_replays_alone", lambda *a: replays.append(a[-1]) or True)
    pyro.clear_param_store()
    guide = AutoIAFNormal(model, num_transforms=1)
    guide(x=X, y=Y)
    fitted = FittedGuide(guide, dict(pyro.get_param_store().items()))
    draws = draw_from_guide(fitted, {"x": X, "y": Y}, ["w", "s", "z"], 300)
    assert replays == [] and draws["z"].shape == (1, 300, 6)
    draw_from_guide(mixing_guide, {}, ["a", "b"], 300)
    assert replays == [0, 150, 299]
