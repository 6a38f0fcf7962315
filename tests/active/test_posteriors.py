"""Adapters in pyrozoo.active.posteriors: blr_from_result's noise."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from pyrozoo.active.posteriors import blr_from_result
from pyrozoo.config import RunConfig
from pyrozoo.errors import PyrozooError
from pyrozoo.runner import run_model


def _blr_run(**options):
    config = RunConfig(model="blr", inference="exact", num_samples=50, num_chains=2,
                       options={"n": 30, "d": 2, **options})
    return run_model(config, save=False).result


def test_blr_from_result_reads_a_known_noise_runs_sd_from_its_config():
    """QA: a known-noise run (no tau site) was refused ("pass its noise sd, got 0") although its config records
    noise=0.5; now the run's own sd is used, an explicit matching one is accepted, a conflicting one refused."""
    result = _blr_run(noise=0.5)
    assert "tau" not in result.posterior
    x = torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    post = blr_from_result(result)
    assert post.num_draws == 100 and post.input_dim == 3
    torch.testing.assert_close(post.function_draws(x, 100)[1], torch.full((100,), 0.25, dtype=torch.float64))
    expected = 0.5 * math.log(2 * math.pi * math.e * 0.25)
    torch.testing.assert_close(post.expected_noise_entropy(x), torch.full((7,), expected, dtype=torch.float64))
    torch.testing.assert_close(blr_from_result(result, noise=0.5).predictive(x)[1], post.predictive(x)[1])
    with pytest.raises(PyrozooError, match=r"noise: expected the run's own noise sd 0.5 .*got 0.4"):
        blr_from_result(result, noise=0.4)
    with pytest.raises(PyrozooError, match=r"noise: expected the run's own noise sd 0.5 .*got 0.0"):
        blr_from_result(result, noise=0)  # 0 is blr's unknown-noise model, which this run is not
    with pytest.raises(PyrozooError, match=r"noise: expected a finite number >= 0, got -1"):
        blr_from_result(result, noise=-1)
    # a Result that does not record its noise (built by hand): the sd must be given
    bare = copy.copy(result)
    bare.config = {}
    with pytest.raises(PyrozooError, match=r"no tau site \(known noise\) and records no noise sd.*got None"):
        blr_from_result(bare)
    torch.testing.assert_close(blr_from_result(bare, noise=0.5).predictive(x)[1], post.predictive(x)[1])


def test_blr_from_result_uses_an_unknown_noise_runs_tau_draws():
    result = _blr_run()
    post = blr_from_result(result)
    tau = torch.as_tensor(result.draws("tau"), dtype=torch.float64)
    torch.testing.assert_close(post.noise_var, 1.0 / tau)
    torch.testing.assert_close(blr_from_result(result, noise=0.0).noise_var, post.noise_var)
    with pytest.raises(PyrozooError, match=r"noise: expected None or 0 \(this blr run has unknown noise.*got 0.5"):
        blr_from_result(result, noise=0.5)


def test_blr_from_result_of_a_data_file_run_puts_its_noise_into_the_models_units(tmp_path):
    """blr's noise option is in y's own units, also for a --data run, whose model (and draws of w) see y / s: the
    adapter's noise variance is (noise / s)^2, the model's, and an explicit noise is compared in y's units."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.standard_normal(30)})
    df["y"] = 50.0 + 20.0 * df["a"] + 6.0 * rng.standard_normal(30)
    df.to_csv(tmp_path / "d.csv", index=False)
    result = run_model(RunConfig(model="blr", inference="exact", num_samples=20, num_chains=1, progress=False,
                                 data=str(tmp_path / "d.csv"), options={"outcome": "y", "noise": 6.0}),
                       save=False).result
    s = float(df["y"].std(ddof=0))
    assert result.attrs["response_scale"] == pytest.approx(s, rel=1e-12)
    post = blr_from_result(result)
    torch.testing.assert_close(post.noise_var, torch.full((20,), (6.0 / s) ** 2, dtype=torch.float64))
    torch.testing.assert_close(blr_from_result(result, noise=6.0).noise_var, post.noise_var)
    with pytest.raises(PyrozooError, match=r"noise: expected the run's own noise sd 6.0 .*got 0\."):
        blr_from_result(result, noise=6.0 / s)  # the standardized sd is not the option's unit
