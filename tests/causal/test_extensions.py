"""Tests of pyrozoo.causal.extensions."""

from __future__ import annotations

import numpy as np

from pyrozoo.causal.extensions import sparse_pairs, white_features


def test_sparse_pairs_give_a_continuous_covariate_no_mode():
    """White's regressors drop the products the control basis would: a continuous covariate (no repeated value) is
    off its mode on every row, so its product with a dummy of 10 ones has support 10 wherever its minimum falls
    (before, on a row of the dummy's 1s, 9, and the pair was dropped at the bound 10)."""
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.standard_normal(200), np.zeros(200)])
    X[:10, 1] = 1.0
    X[0, 0] = X[:, 0].min() - 1.0
    assert sparse_pairs(X, 10) == []
    np.testing.assert_array_equal(white_features(X, 10), white_features(X))
    X[9, 1] = 0.0
    assert sparse_pairs(X, 10) == [(0, 1, 9)]


def _dense_rho(x: np.ndarray, nu: float) -> np.ndarray:
    """rho_ii' = exp(-(x_i - x_i')^2 / nu) / sum_{i'' != i} exp(-(x_i - x_i'')^2 / nu), rho_ii = 0, by the formula."""
    w = np.exp(-((x[:, None] - x[None, :]) ** 2) / nu)
    np.fill_diagonal(w, 0.0)
    return w / w.sum(axis=1, keepdims=True)


def test_kernel_smooth_matches_the_dense_kernel_block_by_block(monkeypatch):
    """kernel_smooth forms rho v a few rows at a time: with 7-row blocks of a 50-unit kernel (and with the element
    budget forcing 3-row blocks) it agrees with the dense formula, for a vector and a matrix of values, and no block
    it builds exceeds the budget (the dense rho took 6.7 GiB at n = 30000)."""
    import pyrozoo.causal.extensions as ext

    rng = np.random.default_rng(0)
    x, v, V = rng.standard_normal(50), rng.standard_normal(50), rng.standard_normal((50, 4))
    rho = _dense_rho(x, 0.7)
    np.testing.assert_allclose(ext.kernel_smooth(x, 0.7, v, chunk=7), rho @ v, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(ext.kernel_smooth(x, 0.7, V, chunk=7), rho @ V, rtol=1e-13, atol=1e-14)
    # one block: bit for bit the dense product of kernel_weights (the simulator's draws at n <= 2048 are unchanged)
    np.testing.assert_array_equal(ext.kernel_smooth(x, 0.7, V), ext.kernel_weights(x, 0.7) @ V)
    shapes = []
    rows = ext._kernel_rows

    def spy(*args):
        out = rows(*args)
        shapes.append(out.shape)
        return out

    monkeypatch.setattr(ext, "_kernel_rows", spy)
    monkeypatch.setattr(ext, "KERNEL_BLOCK_ELEMENTS", 150)
    np.testing.assert_allclose(ext.kernel_smooth(x, 0.7, V), rho @ V, rtol=1e-13, atol=1e-14)
    assert shapes and max(r * c for r, c in shapes) <= 150 and sum(r for r, _ in shapes) == 50


def test_interference_simulation_and_features_use_no_dense_kernel(monkeypatch):
    """The simulator's interference terms t += rho x1^2, y += rho t and the estimator's features rho W equal the
    dense formula, without calling kernel_weights (the n x n matrix) at all."""
    import pyrozoo.causal.extensions as ext
    from pyrozoo.causal.simulate import simulate_plce

    monkeypatch.setattr(ext, "KERNEL_BLOCK_ELEMENTS", 120 * 16)  # 16-row blocks

    def refuse(*args, **kwargs):
        raise AssertionError("the dense n x n kernel was built")

    monkeypatch.setattr(ext, "kernel_weights", refuse)
    d = simulate_plce(4, "combined", n=120)
    # the design by hand from the simulator's draws (simulate.py's docstring), with the dense rho
    rng = np.random.default_rng(4)
    x = rng.standard_normal((120, 5))
    x1 = x[:, 0]
    u, e = rng.standard_normal(120), rng.standard_normal(120)
    a = rng.standard_normal(6)[np.arange(120) // 20]
    rho = _dense_rho(x1, 1.0)
    t = x1 + np.sqrt((x1**2 + 1) / 2) * u + a + rho @ x1**2
    y = t * x1**2 + a + e + rho @ t
    np.testing.assert_array_equal(d.latent, x)
    np.testing.assert_allclose(d.t, t, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(d.y, y, rtol=1e-13, atol=1e-13)
    W = white_features(d.X)
    F = _dense_rho(d.X[:, 0], 0.3) @ W
    sd = F.std(0)
    np.testing.assert_allclose(ext.interference_features(d.X, 0.3), (F - F.mean(0)) / sd, rtol=1e-10, atol=1e-11)
