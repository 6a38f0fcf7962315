"""Neural-linear posterior: BLR on learned MLP features.

Checks: the training objective against an independent closed form (the multivariate Student-t evidence); the
closed-form weighted Euclidean and Fisher inner products on the learned features against random projections / the
paper's formula; a fixed seed gives the same network and the same batch; the features beat a linear model on a
nonlinear function; bad input; one loop run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pyro.distributions import MultivariateStudentT

from pyrozoo.active.acs_fw import ACSFW
from pyrozoo.active.loop import load_problem, make_acquisition, run_active_learning
from pyrozoo.active.neural_linear import (
    NeuralLinearPosterior,
    _reference_batch_size,
    blr_log_marginal,
    blr_predictive_log_likelihood,
)
from pyrozoo.active.posteriors import BLRPoolPosterior
from pyrozoo.active.projections import projected_embedding
from pyrozoo.errors import PyrozooError

SMALL = {"hidden": (8,), "steps": 60}


def _data(n: int = 40, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.rand(n, 2, generator=g, dtype=torch.float64) - 1
    y = torch.sin(3 * x[:, 0]) + x[:, 1] ** 2 + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    return x, y


def test_log_marginal_is_the_student_t_evidence():
    """y ~ St_{2 a0}(0, (b0 / a0)(I + s^2 Phi Phi^T)) under the Normal-Gamma prior."""
    g = torch.Generator().manual_seed(1)
    phi = torch.randn(12, 4, generator=g, dtype=torch.float64)
    y = torch.randn(12, generator=g, dtype=torch.float64)
    s, a0, b0 = 1.7, 2.5, 0.8
    cov = (b0 / a0) * (torch.eye(12, dtype=torch.float64) + s**2 * phi @ phi.T)
    ref = MultivariateStudentT(torch.tensor(2 * a0, dtype=torch.float64), torch.zeros(12, dtype=torch.float64),
                               torch.linalg.cholesky(cov)).log_prob(y)
    torch.testing.assert_close(blr_log_marginal(phi, y, prior_scale=s, a0=a0, b0=b0), ref)


def _with_intercept(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.ones(x.shape[0], 1, dtype=torch.float64), x], 1)


def _test_rmse(post, x, y, xt, yt) -> float:
    return float((post.predictive(xt)[0] - yt).pow(2).mean().sqrt())


def _linear_test_rmse(x, y, xt, yt) -> float:
    """Test RMSE of the conjugate BLR on the raw inputs plus an intercept (the baseline learned features must beat)."""
    lin = BLRPoolPosterior.fit(_with_intercept(x), y)
    return float((lin.predictive(_with_intercept(xt))[0] - yt).pow(2).mean().sqrt())


@pytest.mark.parametrize(("objective", "standardize"), [
    ("mse", True), ("marginal", False), pytest.param("marginal", True, marks=pytest.mark.slow)])
def test_learned_features_beat_a_linear_model(objective, standardize):
    x, y = _data(80)
    xt, yt = _data(400, seed=1)
    nl = NeuralLinearPosterior.fit(x, y, hidden=(16,), steps=250, lr=0.02, objective=objective, standardize=standardize,
                                   seed=0)
    assert _test_rmse(nl, x, y, xt, yt) < 0.6 * _linear_test_rmse(x, y, xt, yt)
    # the last layer is exactly the conjugate BLR on the learned features
    ref = BLRPoolPosterior.fit(nl.features(x), y)
    torch.testing.assert_close(nl.blr.post.mean, ref.post.mean)
    phi = nl.features(x)
    assert phi.shape == (80, 17) and bool((phi[:, 0] == 1).all())
    if standardize:  # unit mean 0 and sd 1 over the labelled rows (or a constant unit left at 0)
        assert float(phi[:, 1:].mean(0).abs().max()) < 1e-6
        sd = phi[:, 1:].std(0, unbiased=False)
        assert bool(((sd - 1).abs() < 1e-6).logical_or(sd < 1e-6).all())


def test_closed_forms_on_learned_features_match_projections():
    """Known noise: the J-projection estimate of the weighted Euclidean product converges to the closed form on
    phi(x) (errors within 5 Monte Carlo se, shrinking with J); the Fisher embedding is the paper's formula."""
    x, y = _data()
    post = NeuralLinearPosterior.fit(x, y, noise=0.3, seed=2, **SMALL)
    pool = _data(6, seed=3)[0]
    exact = post.closed_form_embedding(pool, "euclidean")
    k_exact = exact @ exact.T
    errors = {}
    for j in (100, 20000):
        proj = projected_embedding(post, pool, j, generator=torch.Generator().manual_seed(4))
        ln = proj * math.sqrt(j)
        se = (ln[:, None, :] * ln[None, :, :]).std(-1) / math.sqrt(j)
        k_hat = proj @ proj.T
        assert ((k_hat - k_exact).abs() <= 5 * se + 1e-12).all()
        errors[j] = float(((k_hat - k_exact).abs() / k_exact.abs().max()).max())
    assert errors[20000] < errors[100] and errors[20000] < 0.05
    phi = post.features(pool)
    fisher = post.closed_form_embedding(pool, "fisher")
    direct = (phi @ phi.T) * (phi @ post.blr.post.cov @ phi.T) / 0.3**4
    torch.testing.assert_close(fisher @ fisher.T, direct)
    # the kernel oracle Frank-Wolfe uses agrees with the embedding
    kern = post.closed_form_kernel(pool, "euclidean")
    torch.testing.assert_close(kern.row_sums(), k_exact.sum(1))
    torch.testing.assert_close(kern.column(2), k_exact[:, 2])


def test_fixed_seed_gives_the_same_network_and_batch():
    x, y = _data()
    pool = _data(300, seed=5)[0]
    a = NeuralLinearPosterior.fit(x, y, seed=7, **SMALL)
    b = NeuralLinearPosterior.fit(x, y, seed=7, **SMALL)
    c = NeuralLinearPosterior.fit(x, y, seed=8, **SMALL)
    assert all(torch.equal(p, q) for p, q in zip(a.layers, b.layers, strict=True))
    assert not torch.equal(a.layers[0], c.layers[0])
    for acq in (ACSFW("fisher"), ACSFW("euclidean"), ACSFW("projection", 50)):
        ba = acq.select(a, pool, 10, generator=torch.Generator().manual_seed(0))
        bb = acq.select(b, pool, 10, generator=torch.Generator().manual_seed(0))
        assert torch.equal(ba.indices, bb.indices) and 1 <= ba.num_selected <= 10
        assert bool((ba.objective[1:] <= ba.objective[:-1] * (1 + 1e-9) + 1e-9).all())


@pytest.mark.parametrize(("kw", "match"), [
    ({"hidden": ()}, "hidden"), ({"hidden": (0,)}, "hidden"), ({"objective": "elbo"}, "objective"),
    ({"activation": "gelu"}, "activation"), ({"steps": -1}, "steps"), ({"steps": 2.5}, "steps"), ({"lr": -1.0}, "lr"),
    ({"weight_decay": -0.1}, "weight_decay"), ({"weight_decay": True}, "weight_decay"),
    ({"standardize": "yes"}, "standardize"),
    ({"prior_scale": 0.0}, "prior_scale"), ({"noise": -1.0}, "noise"),
])
def test_bad_input(kw, match):
    x, y = _data(10)
    with pytest.raises(PyrozooError, match=match):
        NeuralLinearPosterior.fit(x, y, **kw)


def test_numpy_flags_and_numbers_are_accepted():
    x, y = _data(10)
    a = NeuralLinearPosterior.fit(x, y, steps=5, standardize=np.bool_(True), weight_decay=np.float64(0.5))
    b = NeuralLinearPosterior.fit(x, y, steps=5, standardize=True, weight_decay=0.5)
    assert torch.equal(a.predictive(x)[0], b.predictive(x)[0])


def test_bad_shapes():
    x, y = _data(10)
    with pytest.raises(PyrozooError, match="y: expected shape"):
        NeuralLinearPosterior.fit(x, y[:5])
    with pytest.raises(PyrozooError, match="x: expected a 2-D array"):
        NeuralLinearPosterior.fit(x[:, 0], y)


@pytest.mark.parametrize(("change", "match"), [
    (lambda x, y: (torch.where(torch.arange(20).reshape(10, 2) == 3, torch.nan, x), y),
     r"x: expected finite values, found 1 non-finite \(NaN at index \(1, 1\)\)"),
    (lambda x, y: (x, torch.where(torch.arange(10) == 4, torch.inf, y)),
     r"y: expected finite values, found 1 non-finite \(inf at index \(4,\)\)"),
    (lambda x, y: (x[:0], y[:0]), "x: expected a 2-D array .* at least one row"),
    (lambda x, y: ("abc", y), "x: expected a numeric array"),
])
def test_bad_data_is_refused_before_training(change, match, monkeypatch):
    """The shared check_fit_data, before any training (was: NaN/inf found only in the learned features)."""
    from pyrozoo.active import neural_linear

    def never(*args, **kwargs):
        raise AssertionError("no training may start")

    monkeypatch.setattr(neural_linear, "_train_mlp", never)
    with pytest.raises(PyrozooError, match=match):
        NeuralLinearPosterior.fit(*change(*_data(10)))


def test_numpy_and_lists_give_the_tensor_result():
    x, y = _data(10)
    ref = NeuralLinearPosterior.fit(x, y, hidden=(4,), steps=3).predictive(x)[0]
    for xx, yy in ((x.numpy(), y.numpy()), (x.tolist(), y.tolist())):
        assert torch.equal(NeuralLinearPosterior.fit(xx, yy, hidden=(4,), steps=3).predictive(x)[0], ref)


@pytest.mark.parametrize("kw", [{"steps": 0}, {"recipe": "reference", "epochs": 0, "hidden": (4, 4)}])
def test_zero_training_steps_keep_the_random_features(kw):
    """steps=0 (epochs=0): the BLR on the seeded initial network's features, a random-feature model."""
    x, y = _data(10)
    post = NeuralLinearPosterior.fit(x, y, **{"hidden": (4,), **kw})
    again = NeuralLinearPosterior.fit(x, y, **{"hidden": (4,), **kw})
    trained = NeuralLinearPosterior.fit(x, y, **{"hidden": (4,), **kw, **({"epochs": 1} if "epochs" in kw
                                                                          else {"steps": 3})})
    assert torch.equal(post.layers[0], again.layers[0]) and not torch.equal(post.layers[0], trained.layers[0])
    assert bool(torch.isfinite(post.predictive(x)[0]).all())


def test_loop_with_neural_linear_is_reproducible():
    problem = load_problem("synthetic", 0)
    opts = {"hidden": (8,), "steps": 40}
    runs = [run_active_learning(problem, make_acquisition("acs-fw-euclidean"), model="neural-linear",
                                model_options=opts, init_size=20, batch_size=10, budget=20, seed=3, progress=False)
            for _ in range(2)]
    assert runs[0]["rmse"].tolist() == runs[1]["rmse"].tolist()
    assert runs[0]["num_labelled"].iloc[-1] <= 40 and runs[0][["rmse", "nll"]].notna().all().all()


# --- the reference recipe (batch norm, BLR predictive likelihood, minibatches, cosine schedule) ---

REF_SMALL = {"recipe": "reference", "hidden": (8, 8), "epochs": 15}


def test_reference_loss_is_the_blr_predictive_log_likelihood():
    """The training loss's pointwise terms equal the Student-t predictive of :mod:`pyrozoo.models.blr` fitted on
    the same features (an independent code path: cholesky_inverse covariance, torch StudentT on its scale)."""
    g = torch.Generator().manual_seed(3)
    phi = torch.randn(15, 5, generator=g, dtype=torch.float64)
    y = torch.randn(15, generator=g, dtype=torch.float64)
    phi_e, y_e = phi[[2, 7, 11]], y[[2, 7, 11]]
    for s, a0, b0 in ((1.0, 1.0, 1.0), (0.7, 2.5, 0.4)):
        ours = blr_predictive_log_likelihood(phi, y, phi_e, y_e, prior_scale=s, a0=a0, b0=b0)
        ref = BLRPoolPosterior.fit(phi, y, prior_scale=s, a0=a0, b0=b0).log_predictive_density(phi_e, y_e)
        torch.testing.assert_close(ours, ref)
    # and it is differentiable in the features (the gradient flows through the posterior)
    phi_r = phi.clone().requires_grad_()
    blr_predictive_log_likelihood(phi_r, y, phi_r[:4], y[:4]).sum().backward()
    assert phi_r.grad is not None and bool(torch.isfinite(phi_r.grad).all()) and float(phi_r.grad.abs().sum()) > 0


def test_reference_batch_size_rule():
    # N / 2 for a power of two, else the largest power of two below N / 2; at least 2 (batch statistics)
    assert [_reference_batch_size(n) for n in (2, 3, 8, 20, 30, 32, 60, 120, 130)] == [2, 2, 4, 8, 8, 16, 16, 32, 64]


def test_reference_recipe_features_are_the_batch_normalized_network():
    """phi(x) on the labelled rows equals torch.nn's Linear -> BatchNorm1d (training mode) -> ReLU stack with the
    learned weights, and the head is the conjugate BLR on [1, phi] with the recipe's a0 = b0 = 1."""
    x, y = _data(40)
    post = NeuralLinearPosterior.fit(x, y, seed=1, **REF_SMALL)
    assert post.bn_stats is not None and len(post.layers) == 6
    mods = []
    for w, gam, bet in zip(post.layers[0::3], post.layers[1::3], post.layers[2::3], strict=True):
        lin = torch.nn.Linear(w.shape[0], w.shape[1], bias=False)
        bn = torch.nn.BatchNorm1d(w.shape[1], eps=1e-5)
        with torch.no_grad():
            lin.weight.copy_(w.T)
            bn.weight.copy_(gam)
            bn.bias.copy_(bet)
        mods += [lin, bn, torch.nn.ReLU()]
    net = torch.nn.Sequential(*mods).train()
    with torch.no_grad():
        h = net(x.float()).double()
    phi = post.features(x)
    torch.testing.assert_close(phi[:, 1:], h, atol=1e-5, rtol=1e-4)
    ref = BLRPoolPosterior.fit(phi, y, a0=1.0, b0=1.0)
    torch.testing.assert_close(post.blr.post.mean, ref.post.mean)
    assert post.blr.post.a == 1.0 + 0.5 * 40


def test_reference_recipe_learns_and_is_reproducible():
    x, y = _data(80)
    xt, yt = _data(400, seed=1)
    nl = NeuralLinearPosterior.fit(x, y, recipe="reference", hidden=(16, 16), epochs=80, seed=0)
    assert _test_rmse(nl, x, y, xt, yt) < 0.6 * _linear_test_rmse(x, y, xt, yt)
    pool = _data(300, seed=5)[0]
    a = NeuralLinearPosterior.fit(x[:40], y[:40], seed=7, **REF_SMALL)
    b = NeuralLinearPosterior.fit(x[:40], y[:40], seed=7, **REF_SMALL)
    c = NeuralLinearPosterior.fit(x[:40], y[:40], seed=8, **REF_SMALL)
    assert all(torch.equal(p, q) for p, q in zip(a.layers, b.layers, strict=True))
    assert not torch.equal(a.layers[0], c.layers[0])
    for acq in (ACSFW("euclidean"), ACSFW("projection", 10)):
        ba = acq.select(a, pool, 10, generator=torch.Generator().manual_seed(0))
        bb = acq.select(b, pool, 10, generator=torch.Generator().manual_seed(0))
        assert torch.equal(ba.indices, bb.indices) and 1 <= ba.num_selected <= 10


@pytest.mark.parametrize(("kw", "match"), [
    ({"recipe": "keras"}, "recipe"), ({"recipe": "reference", "epochs": -1}, "epochs"),
    ({"recipe": "reference", "hidden": 30}, "hidden"),
])
def test_reference_bad_input(kw, match):
    x, y = _data(10)
    with pytest.raises(PyrozooError, match=match):
        NeuralLinearPosterior.fit(x, y, **kw)
    with pytest.raises(PyrozooError, match="at least 2 labelled rows"):
        NeuralLinearPosterior.fit(x[:1], y[:1], recipe="reference")


def test_loop_with_the_reference_recipe_is_reproducible():
    problem = load_problem("synthetic", 0)
    opts = {"recipe": "reference", "hidden": (8, 8), "epochs": 5}
    runs = [run_active_learning(problem, make_acquisition("acs-fw-projection", 10), model="neural-linear",
                                model_options=opts, init_size=20, batch_size=10, budget=20, seed=3, progress=False)
            for _ in range(2)]
    assert runs[0]["rmse"].tolist() == runs[1]["rmse"].tolist()
    assert runs[0]["num_labelled"].iloc[-1] <= 40 and runs[0][["rmse", "nll"]].notna().all().all()


@pytest.mark.parametrize(("kw", "match"), [
    # the mlp recipe reads steps, not epochs: epochs=1 and epochs=500 gave bit-identical predictions
    ({"epochs": 500}, r"options: epochs applies only to recipe='reference'; with recipe='mlp' it would have no "
                      r"effect \(remove it\)"),
    # the reference recipe reads epochs only: steps, objective and standardize changed nothing
    ({"recipe": "reference", "steps": 10}, r"options: steps applies only to recipe='mlp'; with recipe='reference'"),
    ({"recipe": "reference", "objective": "marginal", "standardize": True},
     r"options: objective, standardize apply only to recipe='mlp'; with recipe='reference' they would"),
])
def test_options_the_recipe_does_not_read_are_refused(kw, match, monkeypatch):
    from pyrozoo.active import neural_linear

    def never(*args, **kwargs):
        raise AssertionError("no training may start")

    monkeypatch.setattr(neural_linear, "_train_mlp", never)
    monkeypatch.setattr(neural_linear, "_train_reference", never)
    x, y = _data(10)
    with pytest.raises(PyrozooError, match=match):
        NeuralLinearPosterior.fit(x, y, **kw)
    # and through the loop, before the first fit
    with pytest.raises(PyrozooError, match=match):
        run_active_learning(load_problem("synthetic", 0), "random", model="neural-linear", model_options=kw,
                            init_size=20, batch_size=10, budget=10, progress=False)


def test_the_recipe_defaults_still_apply():
    x, y = _data(10)
    a = NeuralLinearPosterior.fit(x, y, hidden=(4,))
    b = NeuralLinearPosterior.fit(x, y, hidden=(4,), objective="mse", steps=400, standardize=False)
    assert torch.equal(a.predictive(x)[0], b.predictive(x)[0])
    c = NeuralLinearPosterior.fit(x, y, recipe="reference", hidden=(4, 4), epochs=3)
    d = NeuralLinearPosterior.fit(x, y, recipe="reference", hidden=(4, 4), epochs=3, seed=0)
    assert torch.equal(c.predictive(x)[0], d.predictive(x)[0])


def test_blr_objectives_refuse_a_column_y_naming_its_shape():
    """blr_log_marginal(phi, y[:, None]) (and the reference recipe's predictive log-likelihood) failed inside torch
    ("Incompatible matrix sizes for cholesky_solve"); a column y is refused naming its shape, as the fits refuse it,
    and so are evaluation features with another width."""
    phi = torch.randn(12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = phi.sum(1)
    shape = r"expected shape \(12,\) \(one value per row of phi\), got shape \(12, 1\)$"
    with pytest.raises(PyrozooError, match="^y: " + shape):
        blr_log_marginal(phi, y[:, None])
    with pytest.raises(PyrozooError, match="^y: " + shape):
        blr_predictive_log_likelihood(phi, y[:, None], phi[:4], y[:4])
    with pytest.raises(PyrozooError, match=r"^y_eval: expected shape \(4,\) \(one value per row of phi_eval\)"):
        blr_predictive_log_likelihood(phi, y, phi[:4], y[:4, None])
    with pytest.raises(PyrozooError, match=r"^phi_eval: expected 3 columns \(as phi\), got shape \(4, 2\)$"):
        blr_predictive_log_likelihood(phi, y, phi[:4, :2], y[:4])
    with pytest.raises(PyrozooError, match="^y: expected shape"):
        NeuralLinearPosterior.fit(phi, y[:, None], hidden=(4,), steps=1)


@pytest.mark.parametrize("prior", [{"a0": 50.0}, {"b0": 0.01}, {"a0": 50.0, "b0": 0.01}])
@pytest.mark.parametrize("options", [{}, {"objective": "mse"}])
def test_a_noise_prior_the_mse_recipe_ignores_with_a_known_noise_is_refused(prior, options, monkeypatch):
    """With noise > 0 the BLR head fixes tau = 1 / noise^2 and the default mse training never reads a0/b0: a0=50,
    b0=0.01 gave bit-identical predictions and were accepted (BLRPoolPosterior.fit refuses them). They are refused
    before any training, by the fit and through the loop's model_options before the first fit."""
    from pyrozoo.active import neural_linear

    def never(*args, **kwargs):
        raise AssertionError("no training may start")

    monkeypatch.setattr(neural_linear, "_train_mlp", never)
    x, y = _data(10)
    names = ", ".join(prior)
    match = (rf"^{names}: expected no prior on the noise precision with noise=0.5 > 0 and recipe='mlp', "
             rf"objective='mse'.* would have no effect \(remove (it|them), drop noise")
    with pytest.raises(PyrozooError, match=match):
        NeuralLinearPosterior.fit(x, y, noise=0.5, **prior, **options)
    with pytest.raises(PyrozooError, match=match):
        run_active_learning(load_problem("synthetic", 0), "acs-fw", model="neural-linear",
                            model_options={"noise": 0.5, **prior, **options}, init_size=20, batch_size=10,
                            budget=10, progress=False)


def test_a_noise_prior_is_kept_where_something_reads_it():
    """a0/b0 still apply where they have an effect: with unknown noise (the head's Gamma prior), and with a known
    noise to the training of objective='marginal' and of the reference recipe."""
    x, y = _data(20)
    cases = [({"hidden": (4,), "steps": 20}, 1), ({"hidden": (4,), "steps": 20, "noise": 0.5, "objective": "marginal"},
                                                 0),
             ({"recipe": "reference", "hidden": (4, 4), "epochs": 3, "noise": 0.5}, 0)]
    for kw, out in cases:
        a = NeuralLinearPosterior.fit(x, y, **kw)
        b = NeuralLinearPosterior.fit(x, y, a0=50.0, b0=0.01, **kw)
        assert not torch.equal(a.predictive(x)[out], b.predictive(x)[out]), kw
    # a0/b0 left as None with a known noise are not "given"
    assert NeuralLinearPosterior.fit(x, y, noise=0.5, a0=None, b0=None, hidden=(4,), steps=2).blr.post.known_noise


@pytest.mark.parametrize("recipe", ["mlp", "reference"])
def test_the_network_trains_in_float32_whatever_the_default_dtype(recipe):
    """The network was built and trained in torch's default dtype, so torch.set_default_dtype(torch.float64) gave
    other weights and another fit (predictions 0.15 apart) although the docs say it trains in float32."""
    rng = np.random.default_rng(0)
    x = np.c_[np.ones(30), rng.normal(size=(30, 3))]
    y = x @ [1.0, 2.0, 3.0, 4.0] + rng.normal(size=30)
    opts = {"steps": 50} if recipe == "mlp" else {"epochs": 5}
    ref = NeuralLinearPosterior.fit(x, y, recipe=recipe, seed=1, **opts)
    old = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        got = NeuralLinearPosterior.fit(x, y, recipe=recipe, seed=1, **opts)
        mean64 = got.predictive(x[:5])[0]
    finally:
        torch.set_default_dtype(old)
    assert all(p.dtype == torch.float32 for p in (*ref.layers, *got.layers))
    assert all(torch.equal(a, b) for a, b in zip(ref.layers, got.layers, strict=True))
    assert torch.equal(mean64, ref.predictive(x[:5])[0])


@pytest.mark.parametrize("kw, what", [
    ({"lr": 100.0, "objective": "marginal", "steps": 50}, "posterior precision on the learned features is not "
                                                          "positive definite"),
    ({"lr": 1e7, "steps": 50}, "posterior precision on the learned features is not positive definite"),
    ({"lr": 1e20, "steps": 50}, "the learned features are not finite"),
    ({"recipe": "reference", "lr": 1e6, "epochs": 5}, "posterior precision"),
])
def test_diverged_feature_training_is_one_error_naming_lr(kw, what):
    """Training that diverged surfaced as torch._C._LinAlgError from a Cholesky (in the marginal objective, or in the
    BLR fit on the features). It is a PyrozooError naming lr and suggesting a smaller one, chained to torch's error."""
    import re

    rng = np.random.default_rng(0)
    x = np.c_[np.ones(30), rng.normal(size=(30, 3))]
    y = x @ [1.0, 2.0, 3.0, 4.0] + rng.normal(size=30)
    lr = re.escape(format(kw["lr"], "g"))
    with pytest.raises(PyrozooError, match=rf"^lr: the feature training diverged with lr={lr} .*{what}.*; try a "
                                           r"smaller lr") as info:
        NeuralLinearPosterior.fit(x, y, **kw)
    if "precision" in what:
        assert isinstance(info.value.__cause__, torch.linalg.LinAlgError)


def test_unknown_noise_closed_form_matches_projections_on_learned_features():
    """The default unknown noise: the closed-form weighted Euclidean product on phi(x) integrates the noise precision
    out (it plugged in tau_hat before, 12-20% off the projections); J projections converge to it."""
    x, y = _data()
    post = NeuralLinearPosterior.fit(x, y, seed=2, **SMALL)
    assert not post.blr.post.known_noise
    pool = _data(6, seed=3)[0]
    exact = post.closed_form_embedding(pool, "euclidean")
    k_exact = exact @ exact.T
    proj = projected_embedding(post, pool, 20000, generator=torch.Generator().manual_seed(4))
    ln = proj * math.sqrt(20000)
    se = (ln[:, None, :] * ln[None, :, :]).std(-1) / math.sqrt(20000)
    assert ((proj @ proj.T - k_exact).abs() <= 5 * se + 1e-12).all()
    assert float(((proj @ proj.T - k_exact).abs() / k_exact.abs().max()).max()) < 0.05
    kern = post.closed_form_kernel(pool, "euclidean")
    torch.testing.assert_close(kern.row_sums(), k_exact.sum(1))
    torch.testing.assert_close(kern.column(2), k_exact[:, 2])
