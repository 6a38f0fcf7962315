"""A user's table for the agnostic classifier (``pyrozoo run agnostic --data my.csv -o target=y -o protected=g``).

The target-label column (option ``target``) and the protected-concept column (option ``protected``) are the
``y`` and ``p`` of :func:`~pyrozoo.data.agnostic_tasks.make_agnostic_data`: integers in any coding or text,
recoded to ``0..K-1`` (the classes kept in ``meta["y_classes"]`` / ``meta["p_classes"]``; a text cell without its
surrounding whitespace, so ``'M '`` is ``'M'``); an empty cell (or -1, also in a text column) is a missing label,
so a row may carry only one of the two (the paper's two-part training set). The features (option ``features``,
comma-separated; by default every other column) are read by the regression tables' checks
(:mod:`pyrozoo.data.regression_file`): numeric, finite, not constant, named by column and data row otherwise.

The rows are split seeded and stratified by the (target, protected) pair into training / probe / test by
``FRACTIONS`` (the shipped ``cps1985`` task's fractions; its split is a plain permutation, not stratified); the
features are standardized with the training rows' moments. Training rows with neither label carry no signal and are
left out (``meta["split_rows"]["train"]`` lists the rows kept; probe and test rows are kept as they are, each metric
using the rows that carry its labels). Fresh leakage probes train on the probe rows and are scored on the test rows.
The 0-based data rows of each part are ``meta["split_rows"]``, and the training rows label the result's
``target_id`` and ``protected_id`` axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pyrozoo.data.agnostic_tasks import _raw_labels, make_agnostic_data
from pyrozoo.data.dataset import Dataset
from pyrozoo.data.regression_file import check_columns_exist, feature_columns, parse_features, refuse_constant
from pyrozoo.data.shipped import numeric_column, read_table
from pyrozoo.errors import PyrozooError
from pyrozoo.validation import check_seed

# the options of the agnostic entry read only with --data (ZooModel.data_options), text
FILE_OPTIONS: dict[str, str] = {"target": "", "protected": "", "features": ""}
FRACTIONS = (0.6, 0.2, 0.2)  # training, probe, test (as cps1985_task)
MIN_ROWS = 10


def _column_option(option: str, value: Any, path: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PyrozooError(f"{option}: expected the name of the {what} column of {path} (-o {option}=COLUMN), got "
                           f"{value!r}")
    return value.strip()


def _classes(values: np.ndarray, present: np.ndarray) -> list[Any]:
    return sorted(set(values[present]))


def _stratified_split(keys: list[tuple[str, str]], rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices of training / probe / test: within each stratum (rows of one key) a random permutation cut by
    ``FRACTIONS`` (rounded; a stratum of one row goes to training), so every class of the file is in training."""
    parts: list[list[int]] = [[], [], []]
    cuts = np.cumsum(FRACTIONS)[:-1]
    by_key: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(keys):
        by_key.setdefault(key, []).append(i)
    for key in sorted(by_key):
        idx = rng.permutation(np.asarray(by_key[key]))
        for k, piece in enumerate(np.split(idx, np.round(cuts * idx.size).astype(int))):
            parts[k].extend(piece.tolist())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def read_agnostic_file(path: str, seed: int, *, target: Any = "", protected: Any = "",
                       features: Any = "") -> Dataset:
    """A user's CSV as an agnostic-classifier :class:`Dataset` (see the module docstring): training rows, with
    ``splits`` ``probe`` and ``test`` and ``leakage_split="test"``. Raises a :class:`PyrozooError` before any fit
    for: a missing option, the same column as target and protected, an unknown column (listing the file's), a
    feature that is also the target or protected column, a non-numeric, missing, non-finite or constant feature,
    fewer than ``MIN_ROWS`` rows, labels that are neither integers nor text (or inf), a target or protected column
    with fewer than 2 classes, or too few protected labels to train and score the leakage probes."""
    seed = check_seed("seed", seed)
    source = f"data {path}"
    target = _column_option("target", target, path, "target-label")
    protected = _column_option("protected", protected, path, "protected-concept")
    if protected == target:
        raise PyrozooError(f"protected: column {protected!r} is also the target column; the protected concept must "
                           f"be another column")
    named = parse_features(features)
    df = read_table(path)
    df.columns = [str(c) for c in df.columns]
    check_columns_exist(source, list(df.columns), {"target": [target], "protected": [protected], "features": named})
    cols = feature_columns(df, source, named=named, others={target: "target", protected: "protected"})
    n = len(df)
    if n < MIN_ROWS:
        raise PyrozooError(f"{source}: expected at least {MIN_ROWS} data rows (split into training, probe and test "
                           f"rows), got {n}")
    x = np.stack([numeric_column(df, c, source=source) for c in cols], axis=1)
    refuse_constant(source, {c: x[:, j] for j, c in enumerate(cols)})
    labels = {}
    for option, column in (("target", target), ("protected", protected)):
        values, present = _raw_labels(f"{option}: column {column!r} of {source}", df[column].to_numpy(), n)
        classes = _classes(values, present)
        if len(classes) < 2:
            got = "no labelled rows" if not classes else f"only class {classes[0]!r}"
            raise PyrozooError(f"{option}: column {column!r} of {source} has {got}; expected at least 2 classes "
                               f"(an empty cell or -1 is a missing label)")
        labels[option] = (values, present)
    (y, y_has), (p, p_has) = labels["target"], labels["protected"]
    keys = [(repr(y[i]) if y_has[i] else "", repr(p[i]) if p_has[i] else "") for i in range(n)]
    train, probe, test = _stratified_split(keys, np.random.default_rng(seed))
    # a training row with neither label carries no signal: left out (of x, the moments and split_rows["train"])
    train = train[y_has[train] | p_has[train]]
    # the probes train on the probe rows and are scored against the test rows' protected labels: both need 2
    # classes (make_agnostic_data refuses a one-class leakage split, naming an internal split the user never made)
    p_probe, p_test = _classes(p[probe], p_has[probe]), _classes(p[test], p_has[test])
    if len(p_probe) < 2 or len(p_test) < 2:
        raise PyrozooError(f"protected: column {protected!r} of {source} has too few labelled rows per class to hold "
                           f"out a probe split and a test split with 2 classes each (got probe classes "
                           f"{p_probe or 'none'}, test classes {p_test or 'none'}); fresh leakage probes "
                           f"train on {FRACTIONS[1]:.0%} and are scored on {FRACTIONS[2]:.0%} of each class's rows: "
                           f"give more rows")
    mean, sd = x[train].mean(axis=0), x[train].std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)  # constant on the training rows only: centred, not scaled
    xs = ((x - mean) / sd).astype(np.float32)

    def part(idx: np.ndarray) -> dict[str, Any]:
        return {"x": xs[idx], "y": y[idx], "p": p[idx]}

    meta = {"target_name": target, "protected_name": protected, "feature_names": cols, "source": str(path),
            "x_mean": mean, "x_scale": sd, "split_rows": {"train": train, "probe": probe, "test": test}}
    return make_agnostic_data(xs[train], y[train], p[train], name="agnostic-file",
                              splits={"probe": part(probe), "test": part(test)}, leakage_split="test", meta=meta,
                              rows=train)

