"""Exact-GP adapter: the closed-form weighted Euclidean inner product against projections with many draws."""

from __future__ import annotations

import math

import pytest
import torch

from pyrozoo.active.acs_fw import ACSFW
from pyrozoo.active.posteriors import GPPoolPosterior
from pyrozoo.active.projections import projected_embedding
from pyrozoo.models.gp import exact_posterior


def _fitted():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(25, 2, generator=g, dtype=torch.float64) * 4 - 2
    y = torch.sin(x[:, 0]) + 0.5 * x[:, 1] + 0.2 * torch.randn(25, generator=g, dtype=torch.float64)
    pool = torch.rand(8, 2, generator=g, dtype=torch.float64) * 5 - 2.5
    # fixed hyperparameters keep the test free of the type-II optimisation (checked separately below)
    hyper = {k: torch.tensor(v, dtype=torch.float64) for k, v in (("lengthscale", 0.9), ("variance", 1.2),
                                                                     ("noise", 0.05))}
    return GPPoolPosterior(x, y, hyper, "rbf"), pool


def test_predictive_and_closed_form_euclidean_kernel():
    post, pool = _fitted()
    mean, var, _ = post.predictive(pool)
    ref_mean, ref_var = exact_posterior(post.x, post.y, pool, kernel="rbf", include_noise=True, **post.hyper)
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(var, ref_var)
    kern = post.closed_form_kernel(pool, "euclidean")
    gram = torch.stack([kern.column(f) for f in range(8)], 1)
    torch.testing.assert_close(gram, gram.T)
    torch.testing.assert_close(kern.diag(), torch.diag(gram))
    torch.testing.assert_close(kern.row_sums(), gram.sum(1))
    j = 20000
    proj = projected_embedding(post, pool, j, generator=torch.Generator().manual_seed(1))
    ln = proj * math.sqrt(j)
    prods = ln[:, None, :] * ln[None, :, :]
    se = prods.std(-1) / math.sqrt(j)
    assert ((proj @ proj.T - gram).abs() <= 5 * se + 1e-12).all()
    assert post.closed_form_kernel(pool, "fisher") is None
    batch = ACSFW("euclidean").select(post, pool, 3)
    assert 1 <= batch.num_selected <= 3


@pytest.mark.slow
def test_type2_fit_runs_and_improves_the_marginal_likelihood():
    from pyrozoo.models.gp import exact_log_marginal

    post, _ = _fitted()
    fitted = GPPoolPosterior.fit(post.x, post.y, steps=15, lr=0.1)
    start = {k: torch.tensor(v, dtype=torch.float64) for k, v in (("lengthscale", 1.0), ("variance", 1.0),
                                                                     ("noise", 0.1))}
    assert exact_log_marginal(post.x, post.y, kernel="rbf", **fitted.hyper) > exact_log_marginal(
        post.x, post.y, kernel="rbf", **start)


def test_projections_do_not_split_a_gp_pool_into_independent_chunks(monkeypatch):
    """A GP draws f jointly over the inputs, so chunking the pool (as done for parametric posteriors) would break
    the cross-chunk covariance: with a tiny chunk size the embedding must still reproduce the closed form."""
    import pyrozoo.active.projections as projections

    post, pool = _fitted()
    gram = (lambda k: torch.stack([k.column(f) for f in range(8)], 1))(post.closed_form_kernel(pool, "euclidean"))
    monkeypatch.setattr(projections, "CHUNK", 3)
    j = 20000
    proj = projected_embedding(post, pool, j, generator=torch.Generator().manual_seed(1))
    ln = proj * math.sqrt(j)
    se = (ln[:, None, :] * ln[None, :, :]).std(-1) / math.sqrt(j)
    assert ((proj @ proj.T - gram).abs() <= 5 * se + 1e-12).all()
