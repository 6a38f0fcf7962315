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


def test_blr_pool_posterior_takes_a_flat_prior_on_fewer_rows_than_columns():
    """QA: BLRPoolPosterior.fit on 10 labelled rows x 14 columns at prior_scale=1e9 (the active loop's first fit on
    boston) failed with a raw torch _LinAlgError (Cholesky of X^T X + I / s^2). Now the kernel's products x_n^T
    Lam^{-1} x_m (columns, diagonal, row sums; Fisher and Euclidean) agree with Woodbury's N x N form written without
    cancellation, on labelled rows (O(1)) and new ones (O(s^2))."""
    from pyrozoo.active.posteriors import BLRPoolPosterior

    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(10, 14, dtype=torch.float64, generator=gen), torch.randn(10, dtype=torch.float64, generator=gen)
    scale = 1e9
    post = BLRPoolPosterior.fit(x, y, prior_scale=scale, noise=0.5)
    pool = torch.cat([x, torch.randn(3, 14, dtype=torch.float64, generator=gen)])
    gram = x @ x.T  # G; Lam^{-1} = s^2 (I - Q Q^T) + X^T G^{-1} (G + I / s^2)^{-1} X with X^T = Q R
    q = torch.linalg.qr(x.T).Q
    off_rows = pool - (pool @ q) @ q.T  # the part of each pool row off the labelled rows' span
    xp = x @ pool.T
    a = scale**2 * off_rows @ off_rows.T + xp.T @ torch.linalg.solve(
        gram, torch.linalg.solve(gram + torch.eye(10, dtype=torch.float64) / scale**2, xp))  # x_n^T Lam^{-1} x_m
    fisher = 4.0 * (pool @ pool.T) * a  # tau_hat = 1 / 0.5^2
    kern = post.closed_form_kernel(pool, "fisher")
    got = torch.stack([kern.column(f) for f in range(13)], 1)
    # a labelled row's part off the span is rounding, ~eps, so its products with new rows carry s^2 eps: only the
    # labelled block is O(1)-accurate; the rest to the matrix's own scale
    top = float(fisher.abs().max())
    torch.testing.assert_close(got[:10, :10], fisher[:10, :10], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(got, fisher, rtol=1e-6, atol=1e-12 * top)
    torch.testing.assert_close(kern.diag(), torch.diagonal(fisher), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(kern.row_sums(), fisher.sum(1), rtol=1e-6, atol=1e-12 * top)
    emb = post.closed_form_embedding(pool, "fisher")
    torch.testing.assert_close((emb @ emb.T)[:10, :10], fisher[:10, :10], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(emb @ emb.T, fisher, rtol=1e-6, atol=1e-12 * top)
    torch.testing.assert_close(post.post.quad(x), torch.diagonal(a)[:10], rtol=1e-6, atol=0)
    eucl = post.closed_form_kernel(x, "euclidean")
    emb = post.closed_form_embedding(x, "euclidean")
    torch.testing.assert_close(torch.stack([eucl.column(f) for f in range(10)], 1), emb @ emb.T, rtol=1e-9, atol=1e-12)
    mean, var, _ = post.predictive(pool)
    assert torch.isfinite(mean).all() and torch.isfinite(var).all() and (var[:10] < 1).all()
