"""The run path behind `pyrozoo run`: seeding before the data are simulated."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from pyrozoo import registry
from pyrozoo.config import RunConfig
from pyrozoo.runner import run_model


def test_a_simulator_on_the_global_rng_is_reproducible(monkeypatch):
    """A user's simulator that draws from torch's global RNG (no seeded generator) gives the same data for the same
    seed, whatever the global state was before the run, and other data for another seed."""
    base = registry.get("normal-gamma")

    def simulate(seed, **opts):
        ds = base.simulate(seed, **opts)
        ds.observed["x"] = torch.randn_like(ds.observed["x"])  # the global RNG, on purpose
        return ds

    monkeypatch.setitem(registry._REGISTRY, "global-rng", lambda: dataclasses.replace(base, simulate=simulate))
    data = []
    for state, seed in ((0, 3), (99, 3), (0, 4)):
        torch.manual_seed(state)
        out = run_model(RunConfig(model="global-rng", inference="gibbs", num_samples=5, num_chains=1, seed=seed,
                                  progress=False), save=False)
        data.append(np.asarray(out.result.observed_data["x"]))
    assert np.array_equal(data[0], data[1]) and not np.array_equal(data[0], data[2])
