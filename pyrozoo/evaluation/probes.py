"""Leakage of a protected concept from learned features, measured by *fresh* probes, and group-fairness metrics.

An adversary trained jointly with the representation can look beaten while the information is still there (it
only shows that *that* adversary, at *that* point of the min-max game, fails). A fresh probe is trained after the
fact on frozen features of a split the representation never saw, and scored on another held-out split:

    leakage = accuracy of probe(features) -> protected label,   compared with chance = majority-class rate.

Two probes: a logistic regression (linear leakage) and a small MLP (non-linear leakage), both scikit-learn on
standardized features.

The fairness metrics, for predictions ``yhat``, true labels ``Y`` and a group label ``g``, with the classes ``c``
and ``y`` running over the labels that occur (any coding: {0, 1}, {1, 2}, text):

    demographic parity difference = max_c [max_g P(yhat = c | g) - min_g P(yhat = c | g)]
    equalized odds difference     = max_{y, c} [max_g P(yhat = c | Y = y, g) - min_g P(yhat = c | Y = y, g)]

For two classes they are fairlearn's (reimplemented here in a few lines rather than adding a dependency for two
formulas), whichever class is called positive (``P(yhat = neg | .) = 1 - P(yhat = pos | .)`` has the same gap):
the gap in positive rates, and the larger of the true-positive-rate and false-positive-rate gaps. For more classes
the equalized odds difference runs over (true class, predicted class) pairs: it is 0 exactly when ``yhat`` is
independent of ``g`` given ``Y`` (Hardt et al.'s equalized odds, for any number of classes). It is not the
one-vs-rest convention (per class ``c``, the gaps in ``P(yhat = c | Y = c, g)`` and ``P(yhat = c | Y != c, g)``),
whose false-positive rate averages the true classes ``y != c`` with each group's own mix of them, so it can be
non-zero when equalized odds hold exactly, and can be larger or smaller than the pairs' gap.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pyrozoo.errors import PyrozooError
from pyrozoo.validation import check_finite, check_int, check_seed


def _check_labels(name: str, labels: np.ndarray) -> None:
    """Refuse a missing label (NaN, None): NaN != NaN, so it would be a class of its own, one row each."""
    missing = np.asarray(pd.isna(labels)).reshape(-1)
    if missing.any():
        raise PyrozooError(f"{name}: expected a class for every row, got {int(missing.sum())} missing (NaN or None), "
                           f"the first at row {int(np.flatnonzero(missing)[0])}")


def _check_pair(name: str, features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    if f.ndim != 2:
        raise PyrozooError(f"{name} features: expected a 2-D array (rows, features), got shape {f.shape}")
    if f.shape[0] == 0:
        raise PyrozooError(f"{name} features: expected at least one row, got shape {f.shape}")
    if f.shape[1] == 0:  # scikit-learn's scaler refuses it with a raw "Found array with 0 feature(s)"
        raise PyrozooError(f"{name} features: expected at least one feature column, got shape {f.shape}")
    if f.shape[0] != y.shape[0]:
        raise PyrozooError(f"{name} labels: expected {f.shape[0]} labels (one per row), got {y.shape[0]}")
    check_finite(f"{name} features", f)
    _check_labels(f"{name} labels", y)
    return f, y


def make_probes(seed: int = 0, mlp_hidden: int = 32) -> dict[str, object]:
    """The two fresh probes (unfitted): ``logreg`` and ``mlp`` (one hidden layer of ``mlp_hidden`` units, an integer
    >= 1), each behind a StandardScaler."""
    seed = check_seed("seed", seed)  # scikit-learn's random_state range, refused at fit with a raw ValueError
    mlp_hidden = check_int("mlp_hidden", mlp_hidden, minimum=1)  # 0: sklearn's ValueError at fit; 2.5: a TypeError
    return {
        "logreg": make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)),
        "mlp": make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(mlp_hidden,), alpha=1e-3,
                                                             max_iter=1000, random_state=seed)),
    }


def probe_leakage(train_features: np.ndarray, train_labels: np.ndarray, eval_features: np.ndarray,
                  eval_labels: np.ndarray, *, seed: int = 0, mlp_hidden: int = 32) -> dict[str, float]:
    """Fit fresh probes on ``(train_features, train_labels)``, score them on the evaluation split.

    Returns ``logreg_acc``, ``mlp_acc``, ``chance`` (majority-class rate of the evaluation labels) and
    ``max_excess`` = max probe accuracy - chance (0 means no detectable leakage). ``mlp_hidden``: the MLP probe's
    hidden units, an integer >= 1, checked before any probe is fitted."""
    seed = check_seed("seed", seed)
    mlp_hidden = check_int("mlp_hidden", mlp_hidden, minimum=1)
    ftr, ytr = _check_pair("train", train_features, train_labels)
    fev, yev = _check_pair("eval", eval_features, eval_labels)
    if ftr.shape[1] != fev.shape[1]:
        raise PyrozooError(f"eval features: expected {ftr.shape[1]} columns like the training features, "
                           f"got {fev.shape[1]}")
    if np.unique(ytr).size < 2:
        raise PyrozooError("train labels: a probe needs at least 2 protected classes in its training split")
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name, probe in make_probes(seed, mlp_hidden).items():
            probe.fit(ftr, ytr)
            out[f"{name}_acc"] = float((probe.predict(fev) == yev).mean())
    _, counts = np.unique(yev, return_counts=True)
    out["chance"] = float(counts.max() / counts.sum())
    out["max_excess"] = max(out["logreg_acc"], out["mlp_acc"]) - out["chance"]
    return out


def _check_groups(y_pred: np.ndarray, group: np.ndarray, y_true: np.ndarray | None = None) -> None:
    if y_pred.shape != group.shape or (y_true is not None and y_true.shape != y_pred.shape):
        got = f"y_true {y_true.size}, " if y_true is not None else ""
        raise PyrozooError(f"fairness: expected predictions, true labels and groups of the same length, got "
                           f"{got}y_pred {y_pred.size}, group {group.size}")
    for name, arr in (("y_true", y_true), ("y_pred", y_pred), ("group", group)):
        if arr is not None:
            _check_labels(name, arr)
    if np.unique(group).size < 2:
        raise PyrozooError(f"group: expected at least 2 groups to compare, got {np.unique(group).size}")


def demographic_parity_difference(y_pred: np.ndarray, group: np.ndarray) -> float:
    """``max_c [max_g P(yhat = c | g) - min_g P(yhat = c | g)]`` over the predicted classes ``c`` (0 = parity);
    for two classes the gap in positive rates, whatever the coding."""
    y_pred, group = np.asarray(y_pred).reshape(-1), np.asarray(group).reshape(-1)
    _check_groups(y_pred, group)
    gaps = []
    for c in np.unique(y_pred):
        rates = [np.mean(y_pred[group == g] == c) for g in np.unique(group)]
        gaps.append(max(rates) - min(rates))
    return float(max(gaps))


def equalized_odds_difference(y_true: np.ndarray, y_pred: np.ndarray, group: np.ndarray) -> float:
    """``max_{y, c} [max_g P(yhat = c | Y = y, g) - min_g P(yhat = c | Y = y, g)]`` over the true classes ``y`` and
    the predicted classes ``c`` that occur (0 = equalized odds, yhat independent of the group given Y): for two
    classes the larger of the between-group gaps in true-positive and false-positive rate, whatever the coding
    ({0, 1}, {1, 2}, text); for more classes not the one-vs-rest gaps (module docstring). A (true class, group)
    cell with no rows is left out of that class's gap; when no true class occurs in two groups nothing is compared,
    and the result is NaN with a UserWarning (not 0, which would read as equalized odds holding)."""
    y_true, y_pred = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    group = np.asarray(group).reshape(-1)
    _check_groups(y_pred, group, y_true)
    gaps = []
    for label in np.unique(y_true):
        cells = [(group == g) & (y_true == label) for g in np.unique(group)]
        cells = [cell for cell in cells if cell.any()]
        if len(cells) < 2:
            continue
        for c in np.unique(y_pred):
            rates = [np.mean(y_pred[cell] == c) for cell in cells]
            gaps.append(max(rates) - min(rates))
    if not gaps:
        warnings.warn(f"equalized_odds_difference: no true class occurs in two groups (true classes "
                      f"{np.unique(y_true).tolist()} across {np.unique(group).size} groups), so no rates could be "
                      f"compared; returning NaN", UserWarning, stacklevel=2)
        return float("nan")
    return float(max(gaps))
