"""Posteriors fitted on a DataFrame record its column names (``feature_names_in_``, scikit-learn's convention): a
DataFrame pool or test set with the same names in another order is put in the fit's order for every acquisition
and prediction; missing or other columns are a PyrozooError naming them; NumPy pools are matched by position.
Before, the columns were matched by position only, so a reordered pool gave another batch without a trace."""

import numpy as np
import pandas as pd
import pytest
import torch

from pyrozoo.active.base import check_inputs
from pyrozoo.active.loop import make_acquisition
from pyrozoo.active.neural_linear import NeuralLinearPosterior
from pyrozoo.active.posteriors import (
    BLRPoolPosterior,
    GPPoolPosterior,
    ProbitPoolPosterior,
    SampledRegressionPosterior,
    from_per_draw_moments,
)
from pyrozoo.errors import PyrozooError

COLUMNS = ["a", "b", "c"]
SCALE = np.array([1.0, 3.0, 0.3])  # columns of unequal spread: read in another order they give other predictions
NAMES = ("acs-fw", "acs-fw-projection", "bald", "maxent", "random")


def _frame(n, seed):
    return pd.DataFrame(np.random.default_rng(seed).normal(size=(n, 3)) * SCALE, columns=COLUMNS)


def _fit(kind):
    x = _frame(30, 0)
    y = x["a"] - 0.5 * x["b"] + 2 * x["c"] + 0.3 * np.random.default_rng(1).normal(size=30)
    if kind == "blr":
        return BLRPoolPosterior.fit(x, y)
    if kind == "probit":
        return ProbitPoolPosterior.fit(x, (y > y.median()).astype(float))
    if kind == "gp":
        return GPPoolPosterior.fit(x, y, steps=2)
    if kind == "neural-linear":
        return NeuralLinearPosterior.fit(x, y, hidden=(8,), steps=5)
    if kind == "bnn":
        from pyrozoo.models.bnn import fit_bnn

        post = fit_bnn(x, y, posterior="swag-diag", hidden=4, epochs=3, swa_epochs=3, num_samples=12, seed=0)
        return from_per_draw_moments(post)
    w = torch.tensor(np.random.default_rng(2).normal(size=(20, 3)))
    return SampledRegressionPosterior(lambda xx: w @ xx.T.double(), 0.25, 20, input_dim=3, feature_names=COLUMNS)


KINDS = ("blr", "probit", "gp", "neural-linear", "bnn", "sampled")


@pytest.fixture(scope="module")
def posteriors():
    return {kind: _fit(kind) for kind in KINDS}


def _select(name, post, pool):
    num_projections = 10 if name.startswith("acs-fw") else None
    return make_acquisition(name, num_projections).select(post, pool, 4, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kind", KINDS)
def test_the_fit_records_the_dataframe_s_column_names(posteriors, kind):
    assert list(posteriors[kind].feature_names_in_) == COLUMNS


def test_an_array_fit_records_no_names():
    x = _frame(30, 0)
    assert BLRPoolPosterior.fit(x.to_numpy(), x["a"]).feature_names_in_ is None


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", KINDS)
def test_a_reordered_dataframe_pool_gives_the_same_batch(posteriors, kind, name):
    post, pool = posteriors[kind], _frame(40, 3)
    ref = _select(name, post, pool)
    got = _select(name, post, pool[["c", "a", "b"]])
    assert torch.equal(got.indices, ref.indices)
    if name != "random":  # read by position (the old behaviour) the reordered pool gives another batch
        positional = _select(name, post, pool[["c", "a", "b"]].to_numpy())
        scores_differ = ref.scores is not None and not torch.allclose(positional.scores, ref.scores)
        assert scores_differ or not torch.equal(positional.indices, ref.indices)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", KINDS)
def test_a_numpy_pool_after_a_dataframe_fit_is_matched_by_position(posteriors, kind, name):
    post, pool = posteriors[kind], _frame(40, 3)
    assert torch.equal(_select(name, post, pool.to_numpy()).indices, _select(name, post, pool).indices)


@pytest.mark.parametrize("change, match", [
    (lambda p: p.rename(columns={"c": "z"}), r"x_pool: expected the columns seen in fit, \['a', 'b', 'c'\]; got "
                                             r"\['a', 'b', 'z'\] \(missing \['c'\], unexpected \['z'\]\)"),
    (lambda p: p[["a", "b"]], r"x_pool: .*\(missing \['c'\], unexpected \[\]\)"),
    (lambda p: p.assign(d=1.0), r"x_pool: .*\(missing \[\], unexpected \['d'\]\)"),
])
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["blr", "sampled"])
def test_missing_or_other_pool_columns_are_refused_naming_them(posteriors, kind, name, change, match):
    with pytest.raises(PyrozooError, match=match):
        _select(name, posteriors[kind], change(_frame(40, 3)))


@pytest.mark.parametrize("kind", KINDS)
def test_prediction_on_a_reordered_dataframe_matches_the_tensor_in_fit_order(posteriors, kind):
    post, test = posteriors[kind], _frame(15, 4)
    y = pd.Series(np.random.default_rng(5).integers(0, 2, size=15).astype(float))
    reordered = test[["b", "c", "a"]]
    tensor = torch.tensor(test.to_numpy())
    for got, ref in zip(post.predictive(reordered), post.predictive(tensor), strict=True):
        torch.testing.assert_close(got, ref)
    torch.testing.assert_close(post.log_predictive_density(reordered, y),
                               post.log_predictive_density(tensor, torch.tensor(y.to_numpy())))
    torch.testing.assert_close(post.expected_noise_entropy(reordered), post.expected_noise_entropy(tensor))
    with pytest.raises(PyrozooError, match=r"x: expected the columns seen in fit.*unexpected \['z'\]"):
        post.predictive(test.rename(columns={"a": "z"}))


@pytest.mark.parametrize("kind", ["blr", "probit", "gp", "neural-linear", "sampled"])
def test_a_prediction_with_the_wrong_width_names_the_argument(posteriors, kind):
    with pytest.raises(PyrozooError, match=r"x: expected 3 features per row \(the posterior's input dimension\), "
                                           r"got 4"):
        posteriors[kind].predictive(torch.zeros(5, 4, dtype=torch.float64))
    with pytest.raises(PyrozooError, match=r"y: expected shape \(5,\) \(one value per row of x\), got \(4,\)"):
        posteriors[kind].log_predictive_density(np.zeros((5, 3)), np.zeros(4))


def test_check_inputs_converts_and_reorders():
    post = _fit("blr")
    test = _frame(6, 7)
    x = check_inputs(post, test[["c", "b", "a"]], "x_test")
    assert x.dtype == torch.float64 and torch.equal(x, torch.tensor(test.to_numpy()))
    with pytest.raises(PyrozooError, match=r"x_test: expected a 2-D array \(rows, features\), got shape \(3,\)"):
        check_inputs(post, np.zeros(3), "x_test")


@pytest.mark.parametrize("names, match", [
    (["a", "b"], r"feature_names: expected 3 names \(one per input column\), got 2"),
    (["a", "a", "b"], r"feature_names: 'a' given more than once"),
    ("abc", r"feature_names: expected a list of column names"),
])
def test_sampled_posterior_feature_names_are_checked(names, match):
    with pytest.raises(PyrozooError, match=match):
        SampledRegressionPosterior(lambda xx: xx.T, 0.25, 3, input_dim=3, feature_names=names)
