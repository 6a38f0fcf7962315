"""Baseline acquisitions in the same interface: BALD top-b, max-entropy top-b, uniform random.

* MaxEnt scores a pool point by the predictive entropy H[y | x, D];
* BALD by the mutual information between y and the parameters, H[y | x, D] - E_theta H[y | x, theta];
both take the b highest scores (ties broken by pool position), so they ignore correlations within the batch.
For homoscedastic regression with a closed-form Gaussian or Student-t predictive (BLR with known or unknown noise,
GP) the two rank identically: E_theta H[y | x, theta] is the same for every pool point and the predictive entropy
grows with its scale. They differ for sample-based and heteroscedastic posteriors and for classification.
"""

from __future__ import annotations

import torch

from pyrozoo.active.base import Acquisition, Batch, check_posterior_finite


def _top(scores: torch.Tensor, batch_size: int, name: str) -> Batch:
    """The ``batch_size`` highest scores, equal scores in pool order (a stable descending sort: ``torch.topk`` leaves
    ties in no defined order); raises if the posterior gave NaN or inf scores (the sort would rank them)."""
    check_posterior_finite(f"{name} scores", scores)
    idx = torch.sort(scores, descending=True, stable=True).indices[:batch_size]
    return Batch(indices=idx, requested=batch_size, acquisition=name, scores=scores)


class MaxEntropy(Acquisition):
    """Top-b predictive entropy."""

    name = "maxent"

    def _select(self, posterior, x_pool, batch_size, generator) -> Batch:
        return _top(posterior.predictive(x_pool)[2], batch_size, self.name)


class BALD(Acquisition):
    """Top-b mutual information I(y; theta | x, D)."""

    name = "bald"

    def _select(self, posterior, x_pool, batch_size, generator) -> Batch:
        scores = posterior.predictive(x_pool)[2] - posterior.expected_noise_entropy(x_pool)
        return _top(scores, batch_size, self.name)


class RandomAcquisition(Acquisition):
    """b points uniformly at random without replacement (seeded by the caller's generator)."""

    name = "random"

    def _select(self, posterior, x_pool, batch_size, generator) -> Batch:
        dev = generator.device if generator is not None else "cpu"
        idx = torch.randperm(x_pool.shape[0], generator=generator, device=dev)[:batch_size].to(x_pool.device)
        return Batch(indices=idx, requested=batch_size, acquisition=self.name)
