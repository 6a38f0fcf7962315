"""Diagnostics of a partially linear fit (pyrozoo/causal/diagnostics.py): the Cinelli-Hazlett robustness values
against a root-finding reference, the checks of their options, and the positivity summary with one split."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import optimize, stats

from pyrozoo.causal.diagnostics import positivity_kurtosis, positivity_summary, robustness_value, sensitivity
from pyrozoo.errors import PyrozooError


def _rv_by_root_finding(t_stat: float, df: int, q: float, alpha: float | None) -> float:
    """The smallest r such that some confounder with partial R^2 d <= r with the treatment and s <= r with the
    outcome brings the bias-adjusted estimate's (1 - alpha) bound to (1 - q) theta, from Cinelli & Hazlett's bias and
    SE formulas (se = 1, theta = t_stat):

        bias = sqrt(df) sqrt(s d / (1 - d)),   se_adj = sqrt(df / (df - 1)) sqrt((1 - s) / (1 - d)),

    i.e. the root in r of min_{s <= r} q |t| - bias(s, r) - t* se_adj(s, r) (d = r is worst: both terms grow in d;
    the minimum over s is convex, found by bounded Brent plus the two ends). No closed form is used."""
    t_crit = 0.0 if alpha is None else stats.t.ppf(1 - alpha / 2, df - 1)

    def margin(s: float, r: float) -> float:
        bias = np.sqrt(df) * np.sqrt(s * r / (1 - r))
        se_adj = np.sqrt(df / (df - 1)) * np.sqrt((1 - s) / (1 - r))
        return q * abs(t_stat) - bias - t_crit * se_adj

    def worst(r: float) -> float:
        inner = optimize.minimize_scalar(lambda s: margin(s, r), bounds=(0.0, r), method="bounded",
                                         options={"xatol": 1e-14})
        return min(inner.fun, margin(0.0, r), margin(r, r))

    if worst(0.0) <= 0:
        return 0.0
    return optimize.brentq(worst, 0.0, 1 - 1e-15, xtol=1e-14, rtol=1e-13)


@pytest.mark.parametrize("t_stat,df,q,alpha", [
    (70.39209926435012, 59, 1.0, 0.05),  # the QA reproducer: f_q = 9.16 >= 1 / f* = 3.81 (the large-t branch)
    (4.18, 783, 1.0, 0.05),  # Darfur: f* < f_q < 1 / f* (equal partial R^2)
    (-12.0, 20, 0.5, 0.10),  # negative t, q < 1: f* = 0.40 < f_q = 1.34 < 1 / f* = 2.52
    (30.0, 20, 0.5, 0.10),  # f_q = 3.35 >= 1 / f* = 2.52
    (9.0, 8, 1.0, 0.01),  # f* = 1.32 > 1: every f_q > f* is past 1 / f* = 0.76 (f_q = 3.18)
    (2.5, 8, 1.0, 0.01),  # f_q = 0.88 < f*: 0
    (30.0, 200, 1.0, 0.05),  # f* = 0.14 < f_q = 2.12 < 1 / f* = 7.15
    (70.39209926435012, 59, 1.0, None),  # RV_q: f* = 0, always the equal-R^2 expression
    (1.5, 100, 1.0, 0.05),  # not significant: 0
])
def test_robustness_value_matches_root_finding_of_the_adjusted_bound(t_stat, df, q, alpha):
    """RV_{q,alpha} was (sqrt(f^4 + 4 f^2) - f^2) / 2 with f = f_q - f* for every f_q > f*: 0.98769 instead of
    0.98742 for the reproducer (t = 70.39, df = 59), where a confounder with a smaller partial R^2 with the outcome
    than with the treatment reaches the critical value first. Deterministic: to 1e-9."""
    expected = _rv_by_root_finding(t_stat, df, q, alpha)
    assert robustness_value(t_stat, df, q=q, alpha=alpha) == pytest.approx(expected, abs=1e-9)


def test_robustness_value_reproducer_value_and_branch_switch_is_continuous():
    """The QA numbers (0.98742, not 0.98769), and the two formulas agree where f_q = 1 / f* (no jump)."""
    assert robustness_value(70.39209926435012, 59, alpha=0.05) == pytest.approx(0.98742, abs=5e-6)
    df, alpha = 59, 0.05
    f_crit = stats.t.ppf(1 - alpha / 2, df - 1) / np.sqrt(df - 1)
    t_switch = np.sqrt(df) / f_crit
    below, above = robustness_value(t_switch * (1 - 1e-12), df, alpha=alpha), robustness_value(t_switch, df,
                                                                                               alpha=alpha)
    assert below == pytest.approx(above, abs=1e-9)


@pytest.mark.parametrize("kwargs,message", [
    ({"alpha": 2}, "alpha: expected a number in (0, 1), got 2"),
    ({"alpha": -0.5}, "alpha: expected a number in (0, 1), got -0.5"),
    ({"alpha": 0}, "alpha: expected a number in (0, 1), got 0"),
    ({"alpha": 1.0}, "alpha: expected a number in (0, 1), got 1.0"),
    ({"alpha": float("nan")}, "alpha: expected a number in (0, 1), got nan"),
    ({"alpha": "0.05"}, "alpha: expected a number in (0, 1), got '0.05'"),
    ({"q": 0}, "q: expected a finite value > 0, got 0"),
    ({"q": float("inf")}, "q: expected a finite value > 0, got inf"),
    ({"q": "1"}, "q: expected a finite value > 0"),
])
def test_sensitivity_options_are_checked(kwargs, message):
    """alpha=2 or -0.5 gave NaN with a NumPy warning and alpha=0 a silent 0.0, where PLCE(alpha=1.5) is refused."""
    with pytest.raises(PyrozooError, match="^" + re.escape(message)):
        sensitivity(0.5, 0.1, 50, **kwargs)
    with pytest.raises(PyrozooError, match="^" + re.escape(message)):
        robustness_value(5.0, 50, **kwargs)


@pytest.mark.parametrize("call,message", [
    (lambda: robustness_value(5.0, 1), "df: expected an integer >= 2, got 1"),
    (lambda: robustness_value(5.0, 10.5), "df: expected an integer >= 2, got 10.5"),
    (lambda: robustness_value(float("nan"), 10), "t_stat: expected a finite number"),
    (lambda: sensitivity(0.5, 0.0, 50), "std_err: expected a finite value > 0, got 0.0"),
    (lambda: sensitivity(0.5, 0.1, 50, alpha=None), "alpha: expected a number in (0, 1), got None"),
])
def test_sensitivity_arguments_are_checked(call, message):
    with pytest.raises(PyrozooError, match="^" + re.escape(message)):
        call()


def test_plce_sensitivity_checks_alpha_and_q_like_the_constructor():
    """PLCE.sensitivity(alpha=2) returned rv_q_alpha NaN (alpha=0: 0.0); now the constructor's message, and the
    default (None) still uses the estimator's alpha."""
    from sklearn.linear_model import RidgeCV

    from pyrozoo.causal.plce import PLCE

    rng = np.random.default_rng(3)
    X = rng.standard_normal((60, 3))
    t = X[:, 0] + rng.standard_normal(60)
    y = 3 * t + X[:, 1] + 0.3 * rng.standard_normal(60)
    est = PLCE(RidgeCV(), basis="linear", n_folds=2, n_repeats=1, alpha=0.1).fit(y, t, X)
    for bad in (2, -0.5, 0):
        with pytest.raises(PyrozooError, match=re.escape(f"alpha: expected a number in (0, 1), got {bad}")):
            est.sensitivity(alpha=bad)
    with pytest.raises(PyrozooError, match=re.escape("q: expected a finite value > 0, got -1")):
        est.sensitivity(q=-1)
    with pytest.raises(PyrozooError, match=re.escape("alpha: expected a number in (0, 1), got 1.5")):
        PLCE(alpha=1.5).fit(y, t, X)
    assert est.sensitivity()["alpha"] == 0.1
    ry, rt = est.y_resid_[0], est.t_resid_[0]  # the classical t of ry ~ rt (the one split), as sensemakr's
    b = rt @ ry / (rt @ rt)
    t_classical = b / np.sqrt(((ry - b * rt) ** 2).sum() / (est.n_ - 1) / (rt @ rt))
    assert est.sensitivity(alpha=0.05)["rv_q_alpha"] == pytest.approx(
        _rv_by_root_finding(t_classical, est.n_ - 1, 1.0, 0.05), abs=1e-9)


# ---------------------------------------------------------------- positivity with one split
def test_positivity_with_one_split_is_nan_with_the_same_keys():
    """With S = 1 kappa = v^4 / (v^2)^2 = 1 for every unit (it came back as all 1.0) and the summary lacked
    kurtosis_threshold; now kappa is NaN and the summary has the four keys of S >= 2, all NaN."""
    v = np.random.default_rng(0).standard_normal((1, 8))
    kappa = positivity_kurtosis(v)
    assert kappa.shape == (8,) and np.isnan(kappa).all()
    assert np.isnan(positivity_kurtosis(v[0])).all()  # a 1-D vector is one split too
    one, five = positivity_summary(kappa, 1), positivity_summary(positivity_kurtosis(np.ones((5, 8))), 5)
    assert list(one) == list(five) == ["kurtosis_mean", "kurtosis_max", "kurtosis_threshold",
                                       "kurtosis_share_flagged"]
    assert all(np.isnan(val) for val in one.values())


def test_plce_positivity_and_plot_with_n_repeats_1(tmp_path):
    """PLCE(n_repeats=1).positivity() gives NaN kappa and the same summary keys as n_repeats=2; plot_positivity,
    which drew a flat line at kappa = 1, says it needs n_repeats >= 2 (and writes nothing)."""
    from sklearn.linear_model import RidgeCV

    from pyrozoo.causal.plce import PLCE

    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 2))
    t = X[:, 0] + rng.standard_normal(40)
    y = t + rng.standard_normal(40)
    one = PLCE(RidgeCV(), basis="linear", n_folds=2, n_repeats=1).fit(y, t, X)
    two = PLCE(RidgeCV(), basis="linear", n_folds=2, n_repeats=2).fit(y, t, X)
    kappa, summary = one.positivity()
    assert kappa.shape == (40,) and np.isnan(kappa).all()
    assert set(summary) == set(two.positivity()[1]) and all(np.isnan(v) for v in summary.values())
    assert np.isfinite(two.positivity()[0]).all()
    with pytest.raises(PyrozooError, match=r"^n_repeats: the positivity plot needs n_repeats >= 2 .*got 1$"):
        one.plot_positivity(str(tmp_path / "pos.png"))
    assert not (tmp_path / "pos.png").exists()


# ---------------------------------------------------------------- positivity summary: no finite kappa, array-likes
def test_positivity_summary_without_a_finite_kappa_is_nan_with_the_threshold():
    """All treatment residuals zero: every kappa is NaN and the summary used to fail inside np.max ("zero-size
    array to reduction operation"). Now mean, max and share are NaN, as with one split, and the threshold (it
    depends on S only: 3S/(S+2) halfway to S, 2.1 for S = 3) is given."""
    kappa = positivity_kurtosis(np.zeros((3, 4)))
    assert np.isnan(kappa).all()
    out = positivity_summary(kappa, 3)
    assert list(out) == ["kurtosis_mean", "kurtosis_max", "kurtosis_threshold", "kurtosis_share_flagged"]
    assert np.isnan([out["kurtosis_mean"], out["kurtosis_max"], out["kurtosis_share_flagged"]]).all()
    assert out["kurtosis_threshold"] == pytest.approx(1.8 + 0.5 * (3 - 1.8), rel=1e-12)


def test_positivity_summary_takes_array_likes_and_refuses_other_input():
    """kappa as a list (a TypeError from boolean indexing of a list) gives the array's summary; text, a bad
    n_splits or threshold are refused naming them."""
    kappa = [1.2, 2.9, 3.6, np.nan]
    assert positivity_summary(kappa, 5) == positivity_summary(np.array(kappa), 5)
    assert positivity_summary(kappa, 5)["kurtosis_max"] == 3.6
    with pytest.raises(PyrozooError, match="^kappa: expected an array of kurtosis values"):
        positivity_summary(["a", "b"], 5)
    with pytest.raises(PyrozooError, match="^n_splits: expected an integer >= 1, got 'x'"):
        positivity_summary(kappa, "x")
    with pytest.raises(PyrozooError, match="^threshold: expected a finite number, got the string 'high'"):
        positivity_summary(kappa, 5, threshold="high")


def test_plot_positivity_paths_are_checked_before_drawing_and_the_file_written_is_returned(tmp_path, monkeypatch):
    """plot_positivity('') wrote a hidden ./.png and returned PosixPath('.'); plot_positivity('c') returned 'c' while
    the file was c.png; 'c.xyz' and a missing directory failed in savefig with matplotlib's ValueError /
    FileNotFoundError after the drawing. The same for PLCE.plot_positivity, which passes its path on."""
    import matplotlib.pyplot as plt
    from sklearn.linear_model import RidgeCV

    from pyrozoo.causal.diagnostics import plot_positivity
    from pyrozoo.causal.plce import PLCE

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    kappa, t_hat, t = 1 + rng.random(30), rng.standard_normal(30), rng.standard_normal(30)
    open_before = plt.get_fignums()
    for bad, message in [("", r"^path: expected a file path for the figure \(e\.g\. 'plot\.png'\), got ''$"),
                         ("c.xyz", r"^path: expected a file name ending in a format matplotlib writes .*got 'c\.xyz'$"),
                         ("nodir/c.png", r"^path: expected a file in an existing directory, got 'nodir/c\.png'")]:
        with pytest.raises(PyrozooError, match=message):
            plot_positivity(kappa, t_hat, t, bad, n_splits=3)
    assert plt.get_fignums() == open_before and not list(tmp_path.iterdir())  # nothing drawn, nothing written
    path = plot_positivity(kappa, t_hat, t, "c", n_splits=3)
    assert path.name == "c.png" and path.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["c.png"]
    X = rng.standard_normal((40, 2))
    t = X[:, 0] + rng.standard_normal(40)
    est = PLCE(RidgeCV(), basis="linear", n_folds=2, n_repeats=2).fit(t + rng.standard_normal(40), t, X)
    with pytest.raises(PyrozooError, match=r"^path: expected a file path for the figure .*, got ''$"):
        est.plot_positivity("")
    assert not (tmp_path / ".png").exists()
    path = est.plot_positivity(tmp_path / "pos")
    assert path == tmp_path / "pos.png" and path.is_file()
