"""A posterior that gives NaN or inf (function draws, noise variances, inner products, scores) is a PyrozooError
naming the quantity, never a silently wrong batch."""

import pytest
import torch

from pyrozoo.active.acs_fw import ACSFW, frank_wolfe
from pyrozoo.active.base import EmbeddingKernel
from pyrozoo.active.baselines import BALD, MaxEntropy
from pyrozoo.active.posteriors import SampledRegressionPosterior
from pyrozoo.errors import PyrozooError


def _pool(n=40, d=3, seed=1):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _nan_draws(value=float("nan")):
    w = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    w[3] = value
    return SampledRegressionPosterior(lambda x: w @ x.T, 0.25, 20)


@pytest.mark.parametrize("acq", [ACSFW("projection", 20), ACSFW(), BALD(), MaxEntropy()], ids=lambda a: a.name)
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_draws_are_an_error(acq, value):
    with pytest.raises(PyrozooError, match=r"posterior function values from draw_fn: expected finite values, found"):
        acq.select(_nan_draws(value), _pool(), 5, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("nv", [-0.1, 0.0, float("nan"), float("inf")])
@pytest.mark.parametrize("acq", [ACSFW("projection", 10), BALD(), MaxEntropy()], ids=lambda a: a.name)
def test_heteroscedastic_noise_variances_must_be_finite_and_positive(acq, nv):
    def draw_fn(x):
        v = torch.full((10, x.shape[0]), 0.5, dtype=torch.float64)
        v[2, 7] = nv
        return torch.randn(10, x.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0)), v

    post = SampledRegressionPosterior(draw_fn, None, 10)
    with pytest.raises(PyrozooError, match=rf"draw_fn: expected finite noise variances > 0 .* got 1 that are not "
                                           rf"\(first: {nv:g}\)"):
        acq.select(post, _pool(), 5, generator=torch.Generator().manual_seed(0))


def test_positive_heteroscedastic_noise_still_works():
    def draw_fn(x):
        f = x.sum(1).expand(4, -1) * torch.arange(1, 5.0, dtype=torch.float64)[:, None]
        return f, 0.1 + x.abs()[:, :1].T.expand(4, -1)

    batch = BALD().select(SampledRegressionPosterior(draw_fn, None, 4), _pool(), 3)
    assert batch.num_selected == 3 and bool(torch.isfinite(batch.scores).all())


class _NaNKernel(EmbeddingKernel):
    def __init__(self, phi, where):
        super().__init__(phi)
        self.where = where

    def diag(self):
        d = super().diag()
        return d.index_fill(0, torch.tensor([1]), float("nan")) if self.where == "diag" else d

    def row_sums(self):
        r = super().row_sums()
        return r.index_fill(0, torch.tensor([1]), float("inf")) if self.where == "row_sums" else r

    def column(self, f):
        c = super().column(f)
        return c.index_fill(0, torch.tensor([0]), float("nan")) if self.where == "column" else c


@pytest.mark.parametrize("where", ["diag", "row_sums", "column"])
def test_frank_wolfe_refuses_non_finite_inner_products(where):
    with pytest.raises(PyrozooError, match=rf"posterior .*{where}.*: expected finite values, found 1 non-finite"):
        frank_wolfe(_NaNKernel(_pool(10, 4), where), 3)


class _NaNScores(SampledRegressionPosterior):
    def expected_noise_entropy(self, x):
        out = super().expected_noise_entropy(x)
        out[4] = float("nan")
        return out


def test_top_b_refuses_non_finite_scores():
    post = _NaNScores(lambda x: x.sum(1).expand(3, -1) * torch.arange(3.0, dtype=torch.float64)[:, None], 0.5, 3)
    with pytest.raises(PyrozooError, match=r"posterior bald scores: expected finite values, found 1 non-finite "
                                           r"\(NaN at index \(4,\)\)"):
        BALD().select(post, _pool(), 5)
