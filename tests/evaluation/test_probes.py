"""Fresh-probe leakage and group-fairness metrics against hand computations and known cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pyrozoo.errors import PyrozooError
from pyrozoo.evaluation.probes import demographic_parity_difference, equalized_odds_difference, probe_leakage


def test_demographic_parity_by_hand():
    y_pred = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    group = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    # P(yhat=1 | g=0) = 2/4, P(yhat=1 | g=1) = 1/4
    assert demographic_parity_difference(y_pred, group) == pytest.approx(0.25)
    assert demographic_parity_difference(np.ones(8), group) == 0.0


def test_equalized_odds_by_hand():
    y_true = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    y_pred = np.array([1, 0, 1, 0, 1, 1, 0, 0])
    group = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    # TPR: g0 1/2, g1 2/2 -> gap 0.5; FPR: g0 1/2, g1 0/2 -> gap 0.5
    assert equalized_odds_difference(y_true, y_pred, group) == pytest.approx(0.5)
    y_pred2 = np.array([1, 1, 0, 0, 1, 1, 1, 0])  # TPR gap 0, FPR gap 0.5
    assert equalized_odds_difference(y_true, y_pred2, group) == pytest.approx(0.5)
    assert equalized_odds_difference(y_true, y_true, group) == 0.0  # perfect predictions satisfy equalized odds


def test_fairness_bad_input():
    with pytest.raises(PyrozooError, match="at least 2 groups"):
        demographic_parity_difference(np.ones(4), np.zeros(4))
    with pytest.raises(PyrozooError, match="same length"):
        equalized_odds_difference(np.ones(3), np.ones(4), np.array([0, 1, 0, 1]))


def test_probe_on_independent_features_is_near_chance():
    """Features independent of the label: both probes' accuracy is a Binomial(n, 1/2) / n draw; allow 4 sd."""
    rng = np.random.default_rng(0)
    n = 600
    f_tr, f_ev = rng.standard_normal((n, 8)), rng.standard_normal((n, 8))
    p_tr, p_ev = rng.integers(0, 2, n), rng.integers(0, 2, n)
    out = probe_leakage(f_tr, p_tr, f_ev, p_ev, seed=0)
    tol = 4 * math.sqrt(0.25 / n)
    assert abs(out["logreg_acc"] - 0.5) < tol and abs(out["mlp_acc"] - 0.5) < tol
    assert out["chance"] == pytest.approx(np.bincount(p_ev).max() / n)


def test_probe_detects_linear_and_nonlinear_leakage():
    rng = np.random.default_rng(1)
    n = 600
    p_tr, p_ev = rng.integers(0, 2, n), rng.integers(0, 2, n)

    def linear(p):
        return np.c_[p + 0.3 * rng.standard_normal(p.size), rng.standard_normal((p.size, 3))]

    out = probe_leakage(linear(p_tr), p_tr, linear(p_ev), p_ev, seed=0)
    assert out["logreg_acc"] > 0.9 and out["mlp_acc"] > 0.9

    def xor(p):  # XOR of two signs: a half-plane gets at most 3 of the 4 clusters right (75%), the MLP all
        a = rng.choice([-1.0, 1.0], p.size)
        b = a * np.where(p == 1, 1.0, -1.0)
        return np.c_[a, b] + 0.1 * rng.standard_normal((p.size, 2))

    out = probe_leakage(xor(p_tr), p_tr, xor(p_ev), p_ev, seed=0)
    assert out["logreg_acc"] < 0.75 + 4 * math.sqrt(0.75 * 0.25 / n)
    assert out["mlp_acc"] > 0.95 and out["mlp_acc"] > out["logreg_acc"] + 0.15


def test_probe_bad_input():
    f = np.zeros((10, 2))
    with pytest.raises(PyrozooError, match="at least 2 protected classes"):
        probe_leakage(f, np.zeros(10), f, np.zeros(10))
    with pytest.raises(PyrozooError, match="expected 10 labels"):
        probe_leakage(f, np.zeros(9), f, np.zeros(10))
    with pytest.raises(PyrozooError, match="eval features: expected finite values, found 1 non-finite"):
        probe_leakage(f, np.r_[np.zeros(5), np.ones(5)], np.r_[f[:9], [[np.nan, 0.0]]], np.zeros(10))
    with pytest.raises(PyrozooError, match="expected 2 columns"):
        probe_leakage(f, np.r_[np.zeros(5), np.ones(5)], np.zeros((10, 3)), np.zeros(10))


def test_max_excess_counts_the_mlp_probe_on_xor_leakage():
    """The protected label is the XOR of the signs of two features: no linear probe beats chance, a small MLP does.
    ``max_excess`` must equal max(logreg_acc, mlp_acc) - chance from the same result (atol 1e-12) and so the MLP's
    excess; seeded data (600 train / 400 eval rows) and probes."""
    rng = np.random.default_rng(3)
    F = rng.normal(size=(1000, 3))
    g = ((F[:, 0] > 0) ^ (F[:, 1] > 0)).astype(int)
    out = probe_leakage(F[:600], g[:600], F[600:], g[600:], seed=0, mlp_hidden=16)
    assert out["mlp_acc"] > out["logreg_acc"] + 0.2
    assert out["max_excess"] == pytest.approx(max(out["logreg_acc"], out["mlp_acc"]) - out["chance"], abs=1e-12)
    assert out["max_excess"] == pytest.approx(out["mlp_acc"] - out["chance"], abs=1e-12)


def test_fairness_metrics_do_not_depend_on_the_label_coding():
    """equalized_odds_difference looped over the true labels (0, 1) and the rates of yhat == 1: with labels {1, 2}
    it saw only the negatives and dropped the true-positive gap (0 here instead of 0.5); with text labels both
    metrics were 0."""
    y_true = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    y_pred = np.array([1, 0, 0, 0, 1, 1, 0, 0])  # TPR: g0 1/2, g1 2/2 -> 0.5; FPR 0 in both groups
    group = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert equalized_odds_difference(y_true, y_pred, group) == pytest.approx(0.5)
    assert demographic_parity_difference(y_pred, group) == pytest.approx(0.25)
    names = np.array(["no", "yes"])
    for recode in (lambda v: v + 1, lambda v: 1 - v, lambda v: names[v]):
        assert equalized_odds_difference(recode(y_true), recode(y_pred), group * 5) == pytest.approx(0.5)
        assert demographic_parity_difference(recode(y_pred), names[group]) == pytest.approx(0.25)


def test_fairness_metrics_with_three_classes_by_hand():
    y_true = np.array([0, 1, 2, 0, 1, 2])
    y_pred = np.array([0, 1, 1, 0, 1, 2])
    group = np.array([0, 0, 0, 1, 1, 1])
    # true class 2: g0 predicts 1, g1 predicts 2 -> P(yhat = 2 | Y = 2, g) is 0 vs 1 (the old loop over the true
    # classes 0 and 1 said 0)
    assert equalized_odds_difference(y_true, y_pred, group) == pytest.approx(1.0)
    # P(yhat = 1 | g): 2/3 vs 1/3; P(yhat = 2 | g): 0 vs 1/3; P(yhat = 0 | g): 1/3 vs 1/3
    assert demographic_parity_difference(y_pred, group) == pytest.approx(1 / 3)


def test_missing_labels_and_empty_splits_are_refused_before_fitting():
    """A NaN train label or an empty split reached scikit-learn ("Input y contains NaN", "Found array with 0
    sample(s)"); a NaN eval label was silently its own class in ``chance`` (NaN != NaN). Each is a PyrozooError
    naming the argument, before any probe is fitted."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] > 0).astype(float)
    nan_y = y.copy()
    nan_y[3] = np.nan
    text_y = np.where(y > 0, "a", None)
    cases = [((x, nan_y, x, y), "train labels: expected a class for every row, got 1 missing (NaN or None), the "
                                "first at row 3"),
             ((x, y, x, nan_y), "eval labels: expected a class for every row, got 1 missing"),
             ((x, y, x, text_y), "eval labels: expected a class for every row"),
             ((x[:0], y[:0], x, y), "train features: expected at least one row, got shape (0, 3)"),
             ((x, y, x[:0], y[:0]), "eval features: expected at least one row, got shape (0, 3)")]
    for args, says in cases:
        with pytest.raises(PyrozooError) as err:
            probe_leakage(*args)
        assert str(err.value).startswith(says), err.value


def test_fairness_errors_give_the_lengths_and_refuse_missing_groups():
    group = np.array([0, 0, 1, 1])
    with pytest.raises(PyrozooError, match=r"same length, got y_true 3, y_pred 4, group 4$"):
        equalized_odds_difference(np.ones(3), np.ones(4), group)
    with pytest.raises(PyrozooError, match=r"same length, got y_pred 5, group 4$"):
        demographic_parity_difference(np.ones(5), group)
    with pytest.raises(PyrozooError, match="^group: expected a class for every row, got 1 missing"):
        demographic_parity_difference(np.ones(4), np.array([0, 0, 1, np.nan]))
    with pytest.raises(PyrozooError, match="^group: expected at least 2 groups to compare, got 0"):
        demographic_parity_difference(np.ones(0), np.ones(0))


def test_equalized_odds_with_three_classes_by_hand():
    """docs/agnostic.md described the multiclass EO difference as per-class one-vs-rest TPR/FPR gaps; the function
    computes max over (true class y, predicted class c) of the between-group gap in P(yhat = c | Y = y, g), which is
    0 exactly when yhat is independent of g given Y. The two differ for 3 classes; this pins the pairs form."""
    group = np.r_[[0] * 8, [1] * 8]
    y_true = np.r_[0, 0, 1, 1, 2, 2, 2, 2, 0, 0, 1, 1, 2, 2, 2, 2]
    y_pred = np.r_[0, 0, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1, 2, 2, 1, 1]
    # P(yhat = c | Y = 2, g): g0 (1/2, 0, 1/2), g1 (0, 1/2, 1/2); Y = 0, 1 predicted right in both groups.
    # Gaps: (2, 0) 1/2, (2, 1) 1/2, (2, 2) 0, all others 0. One-vs-rest would give 1/3 (FPR of class 0: 2/6 vs 0/6),
    # and the true-positive (diagonal) gaps alone 0.
    assert equalized_odds_difference(y_true, y_pred, group) == pytest.approx(0.5)
    # Equalized odds hold exactly (the same P(yhat | Y) in both groups: Y = 1 predicted 1 or 2 half the time) with
    # different class mixes: 0, while a one-vs-rest FPR gap of class 2 would be 2/6 - 1/4 = 1/12.
    group = np.r_[[0] * 6, [1] * 8]
    y_true = np.r_[0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 1, 1, 2, 2]
    y_pred = np.r_[0, 0, 1, 2, 2, 2, 0, 0, 1, 1, 2, 2, 2, 2]
    assert equalized_odds_difference(y_true, y_pred, group) == 0.0
    # the same by brute force over the (true class, predicted class) pairs, in any coding
    rng = np.random.default_rng(0)
    y_true, y_pred, group = rng.integers(0, 3, 60), rng.integers(0, 3, 60), rng.integers(0, 2, 60)
    want = max(abs(np.mean(y_pred[(group == 0) & (y_true == y)] == c) - np.mean(y_pred[(group == 1) & (y_true == y)]
                                                                                   == c))
               for y in range(3) for c in range(3))
    labels = np.array(["a", "b", "c"])
    assert equalized_odds_difference(labels[y_true], labels[y_pred], group) == pytest.approx(want)


def test_mlp_hidden_is_checked_before_any_probe_is_fitted(monkeypatch):
    """mlp_hidden=0 reached scikit-learn's ValueError after the logistic probe was fitted, 2.5 a TypeError; each is
    now a PyrozooError naming mlp_hidden, raised before fitting (make_probes likewise)."""
    from sklearn.pipeline import Pipeline

    from pyrozoo.evaluation.probes import make_probes

    def no_fit(*args, **kwargs):
        raise AssertionError("a probe was fitted")

    monkeypatch.setattr(Pipeline, "fit", no_fit)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 2)), np.r_[np.zeros(10), np.ones(10)]
    for bad, got in ((0, "0"), (2.5, "2.5"), (-3, "-3"), ("8", "'8'"), (True, "True")):
        with pytest.raises(PyrozooError, match=rf"^mlp_hidden: expected an integer >= 1, got {got}$"):
            probe_leakage(x, y, x, y, mlp_hidden=bad)
        with pytest.raises(PyrozooError, match=r"^mlp_hidden: expected an integer >= 1"):
            make_probes(mlp_hidden=bad)
    assert make_probes(mlp_hidden=4.0)["mlp"][-1].hidden_layer_sizes == (4,)


def test_equalized_odds_with_no_class_in_two_groups_is_nan_with_a_warning():
    """Each true class occurs in one group only, so every class was skipped and the `else 0.0` fallback read as
    "equalized odds hold"; nothing was compared, so the answer is NaN, and a warning says why."""
    with pytest.warns(UserWarning, match="no true class occurs in two groups"):
        assert math.isnan(equalized_odds_difference([0, 0, 1, 1], [1, 1, 0, 0], [0, 0, 1, 1]))
    # one class shared by two groups is enough to compare: that class's gaps, no warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert equalized_odds_difference([0, 0, 1, 1, 1], [1, 1, 0, 0, 1], [0, 0, 1, 1, 0]) == pytest.approx(1.0)


def test_features_with_no_columns_are_refused_naming_the_split():
    """QA t4.py: probe_leakage(F[:, :0], y, E[:, :0], ye) gave scikit-learn's raw "Found array with 0 feature(s)";
    zero columns are refused by the pair check, as zero rows are, before any probe is fitted."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 3)), np.r_[np.zeros(10), np.ones(10)]
    with pytest.raises(PyrozooError, match=r"^train features: expected at least one feature column, got shape "
                                           r"\(20, 0\)$"):
        probe_leakage(x[:, :0], y, x[:, :0], y)
    with pytest.raises(PyrozooError, match=r"^eval features: expected at least one feature column, got shape "
                                           r"\(20, 0\)$"):
        probe_leakage(x, y, x[:, :0], y)
