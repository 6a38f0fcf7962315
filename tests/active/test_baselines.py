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
