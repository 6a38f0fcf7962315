"""Bad input to the active-learning posteriors and acquisitions is a clear PyrozooError before any work; array-like
input is converted; ACS-FW's default number of projections fits a posterior with few stored draws."""

import numpy as np
import pytest
import torch

from pyrozoo.active.acs_fw import ACSFW
from pyrozoo.active.loop import make_acquisition
from pyrozoo.active.posteriors import (
    BLRPoolPosterior,
    GPPoolPosterior,
    ProbitPoolPosterior,
    SampledRegressionPosterior,
    check_fit_data,
)
from pyrozoo.errors import PyrozooError


def _regression(n=30, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.ones(n, 1), torch.randn(n, d - 1, generator=g)], 1).double()
    y = x.sum(1) + 0.3 * torch.randn(n, generator=g).double()
    return x, y


def _classification(n=40, seed=0):
    x, f = _regression(n, 3, seed)
    return x, (f > f.median()).double()


def _with_nan(x):
    x = x.clone()
    x[2, 1] = float("nan")
    return x


# ---------------------------------------------------------------------------------------------------------- probit


@pytest.mark.parametrize("labels", [lambda y: 2 * y - 1, lambda y: 5 * y])
def test_probit_rejects_labels_outside_0_1(labels):
    x, y = _classification()
    with pytest.raises(PyrozooError, match=r"y: expected class labels 0 or 1"):
        ProbitPoolPosterior.fit(x, labels(y))


@pytest.mark.parametrize("change, match", [
    (lambda x, y: (_with_nan(x), y), r"x: expected finite values"),
    (lambda x, y: (x, y[:-1]), r"y: expected shape \(40,\)"),
    (lambda x, y: (x[:, 1], y), r"x: expected a 2-D array"),
    (lambda x, y: (x[:0], y[:0]), r"x: expected a 2-D array .* at least one row"),
])
def test_probit_bad_data(change, match):
    with pytest.raises(PyrozooError, match=match):
        ProbitPoolPosterior.fit(*change(*_classification()))


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan")])
def test_probit_prior_scale_must_be_positive(scale):
    with pytest.raises(PyrozooError, match="prior_scale"):
        ProbitPoolPosterior.fit(*_classification(), prior_scale=scale)


def test_probit_accepts_numpy_and_lists_with_the_same_result():
    x, y = _classification()
    ref = ProbitPoolPosterior.fit(x, y)
    for xx, yy in ((x.numpy(), y.numpy()), (x.tolist(), y.long().tolist()), (x, y.long())):
        post = ProbitPoolPosterior.fit(xx, yy)
        assert torch.equal(post.mean, ref.mean) and torch.equal(post.cov, ref.cov)


# ------------------------------------------------------------------------------------------------------------- BLR


@pytest.mark.parametrize("change, match", [
    (lambda x, y: (_with_nan(x), y), r"x: expected finite values"),
    (lambda x, y: (x, torch.where(torch.arange(30) == 4, torch.inf, y)), r"y: expected finite values"),
    (lambda x, y: (x, y[:-1]), r"y: expected shape \(30,\)"),
    (lambda x, y: (x[:, 1], y), r"x: expected a 2-D array"),
    (lambda x, y: (x[:0], y[:0]), r"x: expected a 2-D array .* at least one row"),
    (lambda x, y: ("abc", y), r"x: expected a numeric array"),
])
def test_blr_bad_data(change, match):
    with pytest.raises(PyrozooError, match=match):
        BLRPoolPosterior.fit(*change(*_regression()))


@pytest.mark.parametrize("prior, match", [
    ({"banana": 1.0}, r"prior: unknown key\(s\) banana; allowed: a0, b0, noise, prior_scale"),
    ({"prior_scale": 0.0}, "prior_scale"),
    ({"prior_scale": -1.0}, "prior_scale"),
    ({"a0": -1.0}, "a0"),
    ({"b0": 0.0}, "b0"),
    ({"noise": -1.0}, "noise"),
])
def test_blr_bad_prior(prior, match):
    with pytest.raises(PyrozooError, match=match):
        BLRPoolPosterior.fit(*_regression(), **prior)


def test_blr_accepts_numpy_and_lists_with_the_same_result():
    x, y = _regression()
    ref = BLRPoolPosterior.fit(x, y, noise=0.5).post
    for xx, yy in ((x.numpy(), y.numpy()), (x.tolist(), y.tolist())):
        post = BLRPoolPosterior.fit(xx, yy, noise=0.5).post
        assert torch.equal(post.mean, ref.mean) and torch.equal(post.cov_unit, ref.cov_unit)


# -------------------------------------------------------------------------------------------------------------- GP


@pytest.mark.parametrize("change, match", [
    (lambda x, y: (_with_nan(x), y), r"x: expected finite values"),
    (lambda x, y: (x, y[:-1]), r"y: expected shape \(30,\)"),
    (lambda x, y: (x[:, 1], y), r"x: expected a 2-D array"),
])
def test_gp_bad_data(change, match):
    with pytest.raises(PyrozooError, match=match):
        GPPoolPosterior.fit(*change(*_regression()), steps=2)


@pytest.mark.parametrize("opts, match", [
    ({"lr": -1.0}, "lr"), ({"lr": 0.0}, "lr"), ({"steps": -1}, "steps"), ({"steps": 2.5}, "steps"),
    ({"kernel": "cosine"}, "kernel"),
])
def test_gp_bad_options(opts, match):
    with pytest.raises(PyrozooError, match=match):
        GPPoolPosterior.fit(*_regression(), **{"steps": 2, **opts})


def test_gp_accepts_numpy_with_the_same_result():
    x, y = _regression()
    ref = GPPoolPosterior.fit(x, y, steps=5)
    post = GPPoolPosterior.fit(x.numpy(), y.numpy(), steps=5)
    assert torch.equal(post.alpha, ref.alpha) and post.input_dim == 3


# ---------------------------------------------------------------------------------------------------- acquisitions


def _posteriors():
    x, y = _regression()
    w = BLRPoolPosterior.fit(x, y).post.sample(50, generator=torch.Generator().manual_seed(1))["w"]
    return {
        "blr": BLRPoolPosterior.fit(x, y),
        "probit": ProbitPoolPosterior.fit(*_classification()),
        "gp": GPPoolPosterior.fit(x, y, steps=2),
        "sampled": SampledRegressionPosterior(lambda xx: w @ xx.T.double(), 0.25, 50, input_dim=3),
    }


NAMES = ("acs-fw", "acs-fw-projection", "bald", "maxent", "random")


def _nan_pool():
    pool = _regression(20, 3, seed=3)[0]
    pool[5, 2] = float("nan")
    return pool


BAD_POOLS = {
    "nan": (_nan_pool, r"x_pool: expected finite values.*NaN at index \(5, 2\)"),
    "five features": (lambda: _regression(20, 5, seed=3)[0], r"x_pool: expected 3 features .* got 5"),
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", sorted(BAD_POOLS))
def test_a_bad_pool_is_an_error_for_every_posterior(name, case):
    make_pool, match = BAD_POOLS[case]
    pool = make_pool()
    for post in _posteriors().values():
        with pytest.raises(PyrozooError, match=match):
            make_acquisition(name, 10).select(post, pool, 3)


@pytest.mark.parametrize("name", NAMES)
def test_generator_must_be_a_torch_generator(name):
    pool = _regression(20, 3, seed=3)[0]
    with pytest.raises(PyrozooError, match="generator: expected a torch.Generator or None, got int"):
        make_acquisition(name).select(_posteriors()["blr"], pool, 3, generator=5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["numpy", "dataframe", "list"])
def test_numpy_and_pandas_pools_give_the_tensor_pool_s_batch(name, kind):
    import pandas as pd

    pool = _regression(25, 3, seed=5)[0]
    as_kind = {"numpy": lambda t: t.numpy(), "dataframe": lambda t: pd.DataFrame(t.numpy(), columns=["c", "a", "b"]),
               "list": lambda t: t.tolist()}[kind]
    for post_name, post in _posteriors().items():
        ref = make_acquisition(name, 10).select(post, pool, 4, generator=torch.Generator().manual_seed(0))
        got = make_acquisition(name, 10).select(post, as_kind(pool), 4, generator=torch.Generator().manual_seed(0))
        assert torch.equal(got.indices, ref.indices), post_name


@pytest.mark.parametrize("pool, match", [
    (np.zeros(5), r"x_pool: expected a 2-D array \(pool size, features\), got shape \(5,\)"),
    (np.array([["a", "b", "c"]] * 4), r"x_pool: expected a numeric array, got text values"),
    (np.full((4, 3), np.nan), r"x_pool: expected finite values"),
])
def test_a_bad_array_pool_is_an_error(pool, match):
    with pytest.raises(PyrozooError, match=match):
        make_acquisition("bald").select(_posteriors()["blr"], pool, 2)


# ------------------------------------------------------------------------- ACS-FW defaults with few stored draws


def _few_draws(num_draws=5):
    x, y = _regression()
    w = BLRPoolPosterior.fit(x, y).post.sample(num_draws, generator=torch.Generator().manual_seed(2))["w"]
    return SampledRegressionPosterior(lambda xx: w @ xx.T.double(), 0.25, num_draws)


@pytest.mark.parametrize("make", [lambda: make_acquisition("acs-fw"), lambda: make_acquisition("acs-fw-projection"),
                                  lambda: ACSFW(), lambda: ACSFW("projection")])
def test_default_num_projections_is_capped_at_the_stored_draws(make):
    pool = _regression(40, 3, seed=4)[0]
    batch = make().select(_few_draws(5), pool, 4, generator=torch.Generator().manual_seed(0))
    assert batch.info["inner_product"] == "projection" and batch.info["num_projections"] == 5
    assert "num_projections 5 (the posterior's stored draws) instead of the default 100" in batch.note
    assert 1 <= batch.num_selected <= 4


def test_default_acs_fw_on_a_bnn_with_five_draws():
    """The QA's case: the zoo BNN's SWAG posterior with 5 stored draws through from_per_draw_moments."""
    from pyrozoo.active.posteriors import from_per_draw_moments
    from pyrozoo.models.bnn import fit_bnn

    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 2, generator=g).double()
    post = fit_bnn(x, x.sum(1), posterior="swag-diag", hidden=4, epochs=5, swa_epochs=5, num_samples=5)
    batch = make_acquisition("acs-fw").select(from_per_draw_moments(post), torch.randn(50, 2, generator=g).double(),
                                              3, generator=g)
    assert batch.info["num_projections"] == 5 and "stored draws" in batch.note


def test_capped_default_equals_explicit_j():
    pool = _regression(40, 3, seed=4)[0]
    post = _few_draws(5)
    a = ACSFW().select(post, pool, 4, generator=torch.Generator().manual_seed(0))
    b = ACSFW(num_projections=5).select(post, pool, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.indices, b.indices) and torch.equal(a.weights, b.weights)
    assert "stored draws" not in b.note and "note" not in b.info


def test_explicit_num_projections_above_the_stored_draws_is_an_error():
    pool = _regression(40, 3, seed=4)[0]
    with pytest.raises(PyrozooError, match="num_projections: expected at most the 5 stored posterior draws, got 6"):
        make_acquisition("acs-fw", 6).select(_few_draws(5), pool, 4)
    with pytest.raises(PyrozooError, match="got 100"):
        ACSFW("projection", 100).select(_few_draws(5), pool, 4)


def test_default_num_projections_unchanged_where_draws_are_unlimited():
    pool = _regression(40, 3, seed=4)[0]
    post = _posteriors()["blr"]
    batch = ACSFW("projection").select(post, pool, 4, generator=torch.Generator().manual_seed(0))
    assert batch.info["num_projections"] == 100 and "stored draws" not in batch.note


# ------------------------------------------------------------------------------------------ SampledRegressionPosterior


@pytest.mark.parametrize("noise_var", [-1.0, 0.0, [0.1, -0.2, 0.3], float("nan")])
def test_sampled_noise_var_sign(noise_var):
    with pytest.raises(PyrozooError, match=r"noise_var: expected finite values > 0"):
        SampledRegressionPosterior(lambda xx: torch.zeros(3, xx.shape[0]), noise_var, 3)


def test_sampled_noise_var_shape():
    with pytest.raises(PyrozooError, match=r"noise_var: expected .* 3 positive values .* got shape \(2,\)"):
        SampledRegressionPosterior(lambda xx: torch.zeros(3, xx.shape[0]), [0.1, 0.2], 3)


def test_sampled_draw_fn_must_give_num_draws_draws():
    pool = torch.randn(10, 2)
    post = SampledRegressionPosterior(lambda xx: torch.randn(5, xx.shape[0]), 0.5, 3)
    with pytest.raises(PyrozooError, match=r"draw_fn: expected function values of shape \(3, 10\).*got \(5, 10\)"):
        post.predictive(pool)
    het = SampledRegressionPosterior(lambda xx: (torch.randn(3, xx.shape[0]), torch.ones(4, xx.shape[0])), None, 3)
    with pytest.raises(PyrozooError, match=r"draw_fn: expected noise variances of shape \(3, 10\)"):
        het.predictive(pool)


def test_check_fit_data_converts_and_keeps_tensors():
    x, y = _regression()
    xx, yy = check_fit_data(x, y)
    # float64 tensors pass through uncopied (as detached views of the same memory: data are values)
    assert xx.data_ptr() == x.data_ptr() and yy.data_ptr() == y.data_ptr() and torch.equal(xx, x)
    xx, yy = check_fit_data(np.asarray(x.float()), y.float().tolist())
    assert xx.dtype == torch.float64 and torch.equal(xx, x.float().double())


def test_bnn_adapter_checks_the_pool_width_first():
    """A wrong-width pool on from_per_draw_moments is the documented x_pool error, not the BNN's internal ``X``."""
    import pandas as pd

    from pyrozoo.active.baselines import BALD
    from pyrozoo.active.posteriors import from_per_draw_moments
    from pyrozoo.models.bnn import fit_bnn

    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, generator=g).double()
    post = fit_bnn(x, x.sum(1), posterior="map", hidden=4, epochs=2, swa_epochs=2)
    for adapter in (from_per_draw_moments(post), from_per_draw_moments(post, input_dim=3)):
        assert adapter.input_dim == 3
        with pytest.raises(PyrozooError, match=r"^x_pool: expected 3 features per row"):
            BALD().select(adapter, np.ones((10, 2)), 3)
    named = fit_bnn(pd.DataFrame(x.numpy(), columns=list("abc")), x.sum(1).numpy(), posterior="map", hidden=4,
                    epochs=2, swa_epochs=2)
    with pytest.raises(PyrozooError, match=r"^x_pool: expected 3 features per row"):
        BALD().select(from_per_draw_moments(named), np.ones((10, 2)), 3)
    with pytest.raises(PyrozooError, match=r"^input_dim: "):
        from_per_draw_moments(post, input_dim=0)


# ------------------------------------------------------------------ data are values: graphs and pandas row pairing
def _adapters():
    """(name, fit(x, y) -> posterior, response maker): one cheap fit of each built-in adapter."""
    from pyrozoo.active.neural_linear import NeuralLinearPosterior

    return {
        "blr": (BLRPoolPosterior.fit, lambda f: f),
        "gp": (lambda x, y: GPPoolPosterior.fit(x, y, steps=3), lambda f: f),
        "probit": (ProbitPoolPosterior.fit, lambda f: (f > f.median()).double()),
        "neural-linear": (lambda x, y: NeuralLinearPosterior.fit(x, y, hidden=(4,), steps=3), lambda f: f),
    }


@pytest.mark.parametrize("name", ["blr", "gp", "probit", "neural-linear"])
def test_fits_read_tensors_that_require_grad_as_values(name):
    """check_fit_data kept the autograd graph of x and y: every fitted posterior's predictions required grad (the
    neural-linear fit also wrote x.grad), and BLR warned "Converting a tensor with requires_grad=True to a scalar".
    Now the data are read as values: the same posterior as from the detached data, no graph, no gradient."""
    import warnings

    fit, response = _adapters()[name]
    x, f = _regression()
    y = response(f)
    xg, yg = x.clone().requires_grad_(), y.clone().requires_grad_()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = fit(xg, yg)
    assert not [w for w in caught if "requires_grad" in str(w.message)]
    assert xg.grad is None and yg.grad is None
    mean, var, ent = post.predictive(x[:4])
    assert not (mean.requires_grad or var.requires_grad or ent.requires_grad)
    torch.testing.assert_close(mean, fit(x, y).predictive(x[:4])[0], rtol=0, atol=0)


def _fitted_adapter(name: str):
    """(posterior, x, y) of one adapter fitted on :func:`_regression`'s data ("sampled": six fixed linear draws)."""
    x, f = _regression()
    if name == "sampled":
        w = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        return SampledRegressionPosterior(lambda z: w @ z.T, 0.25, 6), x, f
    fit, response = _adapters()[name]
    y = response(f)
    return fit(x, y), x, y


@pytest.mark.parametrize("name", ["blr", "gp", "probit", "neural-linear", "sampled"])
def test_predictions_read_inputs_that_require_grad_as_values(name):
    """A pool or test tensor that requires grad gave predictions carrying its graph (check_inputs returned it as it
    was); now every output is a value, equal to the one at the detached inputs."""
    post, x, y = _fitted_adapter(name)
    xg, yg = x[:5].clone().requires_grad_(), y[:5].clone().requires_grad_()
    gen = torch.Generator().manual_seed(0)
    outs = [*post.predictive(xg), post.expected_noise_entropy(xg), *post.function_draws(xg, 3, gen),
            post.log_predictive_density(xg, yg)]
    assert not any(t.requires_grad for t in outs)
    torch.testing.assert_close(outs[-1], post.log_predictive_density(x[:5], y[:5]), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["blr", "gp", "probit", "neural-linear", "sampled"])
def test_log_predictive_density_refuses_misaligned_pandas_rows(name):
    """log_predictive_density paired a DataFrame x and a Series y with another row order by position, silently (the
    test NLL of the wrong pairs); it now raises check_same_index's error, as every fit does, and aligned pandas input
    gives the density of the arrays."""
    import pandas as pd

    post, x, y = _fitted_adapter(name)
    xv = pd.DataFrame(x[:12].numpy())
    yv = pd.Series(y[:12].numpy())
    with pytest.raises(PyrozooError, match=r"^x, y: expected pandas inputs with the same index .* got y with the "
                                           r"same labels in another order"):
        post.log_predictive_density(xv, yv.sample(frac=1, random_state=0))
    torch.testing.assert_close(post.log_predictive_density(xv, yv), post.log_predictive_density(x[:12], y[:12]))


def test_blr_pool_fit_refuses_a_noise_prior_with_a_known_noise():
    """BLRPoolPosterior.fit(noise=0.5, a0=...) accepted a0/b0 and ignored them (a known noise fixes the precision),
    as the blr entry did; it is refused now. neural-linear still fits with a known noise (its BLR gets no noise prior
    then; a0/b0 go to training only, tests/active/test_neural_linear.py)."""
    from pyrozoo.active.neural_linear import NeuralLinearPosterior

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, dtype=torch.float64, generator=gen)
    y = torch.randn(30, dtype=torch.float64, generator=gen)
    with pytest.raises(PyrozooError, match=r"^a0, b0: expected no prior on the noise precision with noise=0.5"):
        BLRPoolPosterior.fit(x, y, noise=0.5, a0=3.0, b0=1.0)
    assert BLRPoolPosterior.fit(x, y, noise=0.5).post.known_noise
    assert not BLRPoolPosterior.fit(x, y, a0=3.0).post.known_noise
    assert NeuralLinearPosterior.fit(x, y, noise=0.5, steps=2, hidden=[4]).blr.post.known_noise


def test_blr_pool_fit_reads_none_as_the_default_prior():
    """make_dataset and simulate_blr read a0=None as the default; BLRPoolPosterior.fit refused it ("a0: expected a
    finite value > 0, got None")."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(20, 2, dtype=torch.float64, generator=gen)
    y = torch.randn(20, dtype=torch.float64, generator=gen)
    a = BLRPoolPosterior.fit(x, y, a0=None, b0=None, noise=None)
    b = BLRPoolPosterior.fit(x, y)
    torch.testing.assert_close(a.post.mean, b.post.mean, rtol=0, atol=0)
    assert BLRPoolPosterior.fit(x, y, a0=None, noise=0.5).post.known_noise
