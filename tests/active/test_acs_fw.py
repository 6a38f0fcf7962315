"""Frank–Wolfe: monotone objective, polytope invariant, support semantics; agreement with a Gram-matrix FW."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pyrozoo.active.acs_fw import ACSFW, frank_wolfe
from pyrozoo.active.posteriors import BLRPoolPosterior, SampledRegressionPosterior
from pyrozoo.errors import PyrozooError


def _gram_frank_wolfe(k: torch.Tensor, steps: int) -> list[int]:
    """Independent reference: the paper's updates written with the M x M Gram matrix K only."""
    sig_n = k.diag().sqrt()
    sig = sig_n.sum()
    w = torch.zeros(k.shape[0], dtype=k.dtype)
    one = torch.ones_like(w)
    picks = []
    for _ in range(steps):
        f = int(torch.argmax(((one - w) @ k) / sig_n))
        picks.append(f)
        num = sig / sig_n[f] * ((one - w) @ k[f]) - (one - w) @ k @ w
        den = sig**2 - 2 * sig / sig_n[f] * (w @ k[f]) + w @ k @ w
        gamma = torch.clamp(num / den, 0, 1)
        w = (1 - gamma) * w
        w[f] += gamma * sig / sig_n[f]
    return picks


def test_objective_never_increases_and_weights_stay_on_the_polytope():
    g = torch.Generator().manual_seed(0)
    phi = torch.randn(300, 25, generator=g, dtype=torch.float64) + 0.3
    fw = frank_wolfe(phi, 40)
    obj = fw.objective
    assert obj.shape == (41,)
    assert (obj[1:] <= obj[:-1] + 1e-12 * obj[0]).all()
    assert obj[-1] < obj[0]
    sig_n = phi.norm(dim=1)
    assert (fw.weights >= 0).all()
    # w starts at 0 and moves towards vertices sigma / sigma_f 1_f: it stays in their convex hull with 0
    assert 0 < float(fw.weights @ sig_n) <= float(sig_n.sum()) * (1 + 1e-12)
    assert fw.support.numel() <= 40 and fw.support.unique().numel() == fw.support.numel()
    assert set(fw.support.tolist()) == set(torch.nonzero(fw.weights > 0).squeeze(1).tolist())
    # the objective trace is ||L - L(w)||^2 of the returned weights
    resid = phi.sum(0) - fw.weights @ phi
    torch.testing.assert_close(resid @ resid, obj[-1])


def test_matches_gram_matrix_formulation_on_blr():
    g = torch.Generator().manual_seed(1)
    x = torch.cat([torch.ones(30, 1), torch.randn(30, 3, generator=g)], 1).double()
    y = x @ torch.tensor([1.0, 0.5, -0.5, 2.0], dtype=torch.float64) + torch.randn(30, generator=g).double()
    post = BLRPoolPosterior.fit(x, y)
    pool = torch.cat([torch.ones(80, 1), torch.randn(80, 3, generator=g)], 1).double()
    for kind in ("fisher", "euclidean"):
        phi = post.closed_form_embedding(pool, kind)
        assert _gram_frank_wolfe(phi @ phi.T, 10) == frank_wolfe(phi, 10).vertices.tolist()


def test_first_step_by_hand():
    phi = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    fw = frank_wolfe(phi, 1)
    target = phi.sum(0)
    assert int(fw.vertices[0]) == int(torch.argmax(phi @ target / phi.norm(dim=1)))  # point 2: (1,1)
    f = int(fw.vertices[0])
    d = phi.norm(dim=1).sum() / phi[f].norm() * phi[f]
    gamma = (d @ target) / (d @ d)
    torch.testing.assert_close(fw.weights[f], gamma * phi.norm(dim=1).sum() / phi[f].norm())


def test_parallel_vectors_give_fewer_points_and_say_so():
    v = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    phi = torch.tensor([1.0, 2.0, 3.0, 0.5], dtype=torch.float64)[:, None] * v
    post = _Embedded(phi)
    batch = ACSFW("fisher").select(post, torch.zeros(4, 1), 3)
    assert batch.num_selected == 1 and batch.requested == 3
    assert "1 distinct points" in batch.note
    assert abs(float(batch.objective[-1])) <= 1e-12 * float(batch.objective[0])  # exact fit in one step


class _Embedded:
    """A posterior stub exposing a fixed closed-form embedding."""

    def __init__(self, phi):
        self.phi = phi

    def closed_form_embedding(self, x, kind):
        return self.phi


def test_acsfw_on_pool_returns_subset_and_projection_fallback():
    g = torch.Generator().manual_seed(2)
    x = torch.cat([torch.ones(40, 1), torch.randn(40, 2, generator=g)], 1).double()
    y = x.sum(1) + 0.5 * torch.randn(40, generator=g).double()
    post = BLRPoolPosterior.fit(x, y)
    pool = torch.cat([torch.ones(500, 1), torch.randn(500, 2, generator=g)], 1).double()
    for acq in (ACSFW(), ACSFW("euclidean"), ACSFW("projection", num_projections=50)):
        batch = acq.select(post, pool, 10, generator=torch.Generator().manual_seed(0))
        assert 1 <= batch.num_selected <= 10
        assert batch.indices.unique().numel() == batch.num_selected
        assert ((batch.indices >= 0) & (batch.indices < 500)).all()
    w = post.post.sample(200, generator=g)["w"]
    sampled = SampledRegressionPosterior(lambda xx: w @ xx.T, 0.25, 200)
    assert ACSFW().select(sampled, pool, 5, generator=g).info["inner_product"] == "projection"
    with pytest.raises(PyrozooError, match="no closed-form"):
        ACSFW("fisher").select(sampled, pool, 5)


def test_bad_input():
    pool = torch.randn(5, 2)
    with pytest.raises(PyrozooError, match="batch_size"):
        ACSFW().select(None, pool, 6)
    with pytest.raises(PyrozooError, match="empty"):
        ACSFW().select(None, torch.zeros(0, 2), 1)
    with pytest.raises(PyrozooError, match="num_projections"):
        ACSFW("projection", num_projections=0)
    with pytest.raises(PyrozooError, match="inner_product"):
        ACSFW("cosine")


def test_frank_wolfe_refuses_a_kernel_that_is_neither_a_pool_kernel_nor_an_embedding():
    """A 1-D tensor was an IndexError from EmbeddingKernel.diag(), a NumPy array an AttributeError ('diag')."""
    with pytest.raises(PyrozooError, match=r"^kernel: expected an embedding Phi of shape \(M, K\) .*got shape \(5,\)$"):
        frank_wolfe(torch.randn(5), 2)
    with pytest.raises(PyrozooError, match=r"^kernel: expected an embedding Phi .*got shape \(0, 3\)$"):
        frank_wolfe(torch.zeros(0, 3), 2)
    with pytest.raises(PyrozooError, match=r"^kernel: expected a PoolKernel or a torch\.Tensor embedding Phi \(M, K\), "
                                           r"got numpy\.ndarray \(convert an array with torch\.as_tensor\)$"):
        frank_wolfe(np.random.default_rng(0).random((5, 3)), 2)
    assert frank_wolfe(torch.ones(5, 3, dtype=torch.float64), 2).support.numel() >= 1
