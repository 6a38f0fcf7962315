"""BALD, MaxEnt and random: scores against closed forms and Monte Carlo; top-b semantics."""

from __future__ import annotations

import math

import pytest
import torch

from pyrozoo.active.baselines import BALD, MaxEntropy, RandomAcquisition
from pyrozoo.active.posteriors import BLRPoolPosterior
from pyrozoo.errors import PyrozooError


@pytest.fixture
def fitted():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.ones(30, 1), torch.randn(30, 2, generator=g)], 1).double()
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.8 * torch.randn(30, generator=g).double()
    pool = torch.cat([torch.ones(200, 1), 2 * torch.randn(200, 2, generator=g)], 1).double()
    return BLRPoolPosterior.fit(x, y), pool


def test_top_b_and_scores(fitted):
    post, pool = fitted
    quad = ((pool @ post.post.cov_unit) * pool).sum(1)
    top = set(torch.topk(quad, 7).indices.tolist())  # both rank by predictive variance here
    for acq in (BALD(), MaxEntropy()):
        batch = acq.select(post, pool, 7)
        assert set(batch.indices.tolist()) == top and batch.num_selected == 7 and batch.note == ""
    # MaxEnt score is the Student-t predictive entropy
    t = torch.distributions.StudentT(2 * post.post.a, 0.0, math.sqrt(post.post.b / post.post.a) * (1 + quad).sqrt())
    torch.testing.assert_close(MaxEntropy().select(post, pool, 1).scores, t.entropy())


def test_expected_noise_entropy_matches_monte_carlo(fitted):
    post, pool = fitted
    tau = post.post.sample(100000, generator=torch.Generator().manual_seed(1))["tau"]
    h = 0.5 * torch.log(2 * math.pi * math.e / tau)
    assert abs(float(post.expected_noise_entropy(pool[:1])[0] - h.mean())) < 5 * float(h.std()) / math.sqrt(1e5)


def test_random_is_seeded_and_distinct(fitted):
    post, pool = fitted
    a = RandomAcquisition().select(post, pool, 50, generator=torch.Generator().manual_seed(3)).indices
    b = RandomAcquisition().select(post, pool, 50, generator=torch.Generator().manual_seed(3)).indices
    assert torch.equal(a, b) and a.unique().numel() == 50


def test_bad_input(fitted):
    post, pool = fitted
    for acq in (BALD(), MaxEntropy(), RandomAcquisition()):
        with pytest.raises(PyrozooError, match="batch_size: expected at most the pool size 200"):
            acq.select(post, pool, 201)
        with pytest.raises(PyrozooError, match="empty"):
            acq.select(post, pool[:0], 1)
        with pytest.raises(PyrozooError, match="batch_size"):
            acq.select(post, pool, 0)


def test_bald_and_maxent_rank_differently_with_heteroscedastic_noise():
    """Per-point noise variance v_n and epistemic variance e_n of f (Gaussian across draws): the mutual information
    is I(y; f | x_n) = 1/2 log(1 + e_n / v_n) and the predictive entropy 1/2 log(2 pi e (v_n + e_n)), so BALD and
    MaxEnt order the pool differently. The expected orders come from these formulas, not from the adapter."""
    from pyrozoo.active.posteriors import SampledRegressionPosterior

    g = torch.Generator().manual_seed(11)
    m, s = 60, 400
    v = torch.exp(2 * torch.randn(m, generator=g, dtype=torch.float64))  # noise variance, spread over e^+-4
    e = torch.exp(2 * torch.randn(m, generator=g, dtype=torch.float64))  # epistemic variance of f
    z = torch.randn(s, m, generator=g, dtype=torch.float64)
    z = (z - z.mean(0)) / z.std(0, unbiased=False)  # exactly mean 0, variance 1 over the draws
    centre = torch.randn(m, generator=g, dtype=torch.float64)
    f = centre + e.sqrt() * z
    pool = torch.arange(m, dtype=torch.float64)[:, None]  # the adapter only indexes by row
    post = SampledRegressionPosterior(lambda x: (f[:, x[:, 0].long()], v[x[:, 0].long()].expand(s, -1)), None, s)
    mi = 0.5 * torch.log1p(e / v)
    entropy = 0.5 * torch.log(2 * math.pi * math.e * (v + e))
    b = 8
    bald, maxent = BALD().select(post, pool, b), MaxEntropy().select(post, pool, b)
    torch.testing.assert_close(bald.scores, mi)
    torch.testing.assert_close(maxent.scores, entropy)
    assert bald.indices.tolist() == torch.argsort(mi, descending=True)[:b].tolist()
    assert maxent.indices.tolist() == torch.argsort(entropy, descending=True)[:b].tolist()
    # the two acquisitions disagree here (the test would be vacuous otherwise) ...
    assert len(set(bald.indices.tolist()) & set(maxent.indices.tolist())) <= b // 2
    # ... and BALD prefers epistemic over aleatoric spread: of two points with the same predictive variance, the
    # one whose variance is mostly noise scores lower
    pair = SampledRegressionPosterior(
        lambda x: (torch.stack([f[:, 0] * 0 + torch.sqrt(torch.tensor(1.5, dtype=torch.float64)) * z[:, 0],
                                f[:, 0] * 0 + torch.sqrt(torch.tensor(0.5, dtype=torch.float64)) * z[:, 0]], 1),
                   torch.tensor([[0.5, 1.5]], dtype=torch.float64).expand(s, -1)), None, s)
    two = torch.zeros(2, 1, dtype=torch.float64)
    assert BALD().select(pair, two, 1).indices.tolist() == [0]
    torch.testing.assert_close(MaxEntropy().select(pair, two, 2).scores[0], MaxEntropy().select(pair, two, 2).scores[1])


def test_ties_broken_by_pool_position(fitted):
    # identical rows score exactly alike: the batch is the first b pool positions (topk left ties in no order)
    post, x = fitted
    pool = x[3].repeat(10, 1)
    for acq in (BALD(), MaxEntropy()):
        assert acq.select(post, pool, 5).indices.tolist() == [0, 1, 2, 3, 4]
    # a tie among lower scores: the higher-scoring distinct row first, then the tied rows in pool order
    far = x[3] * 10
    far[0] = 1.0
    pool = torch.cat([x[3].repeat(4, 1), far[None], x[3].repeat(5, 1)])
    assert BALD().select(post, pool, 4).indices.tolist() == [4, 0, 1, 2]
