"""Diagnostics of a partially linear fit: positivity (kurtosis of treatment residuals across splits) and
sensitivity to an omitted confounder (Cinelli & Hazlett 2020).

Positivity. With v_hat_{i,s} the out-of-fold treatment residual of unit i in split s = 1..S,

    kappa_i = (1/S sum_s v_hat_{i,s}^4) / (1/S sum_s v_hat_{i,s}^2)^2,

which lies in [1, S]. A unit whose treatment is predictable (Var(t | x) near 0) has residuals that are near zero in
most splits and large only when its neighbourhood is thin in the training folds: a kurtosis near S.

Sensitivity. For the coefficient's classical (homoskedastic OLS) t statistic t_hat with df residual degrees of
freedom, the partial R^2 of the treatment with the outcome is R^2_{Y~D|X} = t_hat^2 / (t_hat^2 + df); the identity
holds for the classical t only (a heteroskedasticity-robust t gives another number, not the partial R^2), so
every formula below takes the classical t, as R's sensemakr does. The robustness value for reducing the effect
by 100 q % is RV_q = (sqrt(f_q^4 + 4 f_q^2) - f_q^2) / 2 with f_q = q |t_hat| / sqrt(df). The version that keeps
the (1 - alpha) interval from covering (1 - q) theta, with f* = t*_{alpha, df-1} / sqrt(df - 1), is

    RV_{q,alpha} = 0                                                  if f_q <= f*,
                   (sqrt(f^4 + 4 f^2) - f^2) / 2 with f = f_q - f*    if f* < f_q < 1 / f*,
                   (f_q^2 - f*^2) / (1 + f_q^2)                       if f_q >= 1 / f*.

The middle branch is the confounder with equal partial R^2 r with treatment and outcome; for a large t statistic
(f_q >= 1 / f*) a confounder with partial R^2 r with the treatment and a smaller one, r / (r + f*^2), with the
outcome inflates the adjusted standard error less and reaches the critical value at a smaller r (Cinelli &
Hazlett 2020, and R's sensemakr). A confounder explaining less than RV of the residual variance of both treatment
and outcome cannot move the estimate that far.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from pyrozoo.validation import (
    check_figure_path,
    check_int,
    check_positive,
    check_probability,
    check_real,
    real_array,
)


def positivity_kurtosis(t_resid: np.ndarray) -> np.ndarray:
    """(n,) kappa_i from the (S, n) treatment residuals of S splits (NaN for a unit with all residuals zero, and for
    every unit when S = 1: the kurtosis across one split is v^4 / (v^2)^2 = 1 whatever the unit, not a measurement)."""
    v = np.atleast_2d(np.asarray(t_resid, dtype=np.float64))
    if v.shape[0] < 2:
        return np.full(v.shape[1], np.nan)
    m2 = (v**2).mean(axis=0)
    m4 = (v**4).mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(m2 > 0, m4 / np.where(m2 > 0, m2, 1.0) ** 2, np.nan)


def positivity_summary(kappa: np.ndarray, n_splits: int, *, threshold: float | None = None) -> dict[str, float]:
    """Mean and max kurtosis, the threshold and the share of units above it (default threshold: halfway between the
    Gaussian expectation 3S/(S+2) and the maximum S) over the finite kappa (``kappa`` any array-like). The same
    four keys for every S; with S = 1 every value is NaN (there is no kurtosis across one split, so no reference to
    set a threshold from); when no unit has a finite kappa (all residuals zero) the mean, max and share are NaN and
    the threshold is still given."""
    k = real_array("kappa", kappa, want="an array of kurtosis values (numbers)").reshape(-1)
    S = check_int("n_splits", n_splits, minimum=1)
    if threshold is not None:
        threshold = check_real("threshold", threshold)
    if S < 2:
        return dict.fromkeys(("kurtosis_mean", "kurtosis_max", "kurtosis_threshold", "kurtosis_share_flagged"),
                             float("nan"))
    gauss = 3.0 * S / (S + 2.0)  # E[kappa] for i.i.d. Gaussian residuals
    thr = threshold if threshold is not None else gauss + 0.5 * (S - gauss)
    k = k[np.isfinite(k)]
    if not k.size:  # no unit measured (np.max of nothing raised "zero-size array to reduction operation")
        return {"kurtosis_mean": float("nan"), "kurtosis_max": float("nan"), "kurtosis_threshold": float(thr),
                "kurtosis_share_flagged": float("nan")}
    return {"kurtosis_mean": float(k.mean()), "kurtosis_max": float(k.max()), "kurtosis_threshold": float(thr),
            "kurtosis_share_flagged": float((k > thr).mean())}


def plot_positivity(kappa: np.ndarray, t_hat: np.ndarray, t: np.ndarray, path: str | Path, *,
                    n_splits: int | None = None) -> Path:
    """Scatter of kappa_i against the fitted treatment E[t | x_i], coloured by the observed treatment, with the
    Gaussian reference 3S/(S+2) and the maximum S; written to ``path`` (png when it has no extension; checked
    first, :func:`~pyrozoo.validation.check_figure_path`). Returns the path of the file written."""
    path = check_figure_path("path", path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    sc = ax.scatter(t_hat, kappa, c=t, s=8, cmap="viridis", alpha=0.7)
    fig.colorbar(sc, ax=ax, label="treatment t")
    if n_splits:
        ax.axhline(3.0 * n_splits / (n_splits + 2.0), ls="--", c="grey", lw=1, label="Gaussian reference")
        ax.axhline(n_splits, ls=":", c="red", lw=1, label=f"maximum (S = {n_splits})")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("fitted treatment E[t | x]")
    ax.set_ylabel("kurtosis of treatment residual across splits")
    ax.set_title("Positivity diagnostic")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def robustness_value(t_stat: float, df: int, *, q: float = 1.0, alpha: float | None = None) -> float:
    """Cinelli & Hazlett's RV_q (``alpha=None``) or RV_{q,alpha}: the partial R^2 a confounder needs with both the
    treatment and the outcome to reduce the estimate by 100 q % (or make it insignificant at level alpha).
    ``t_stat`` is the coefficient's classical (homoskedastic OLS) t statistic.

    With f_q = q |t_stat| / sqrt(df): RV_q = (sqrt(f_q^4 + 4 f_q^2) - f_q^2) / 2. With f* = t*_{alpha, df-1} /
    sqrt(df - 1): RV_{q,alpha} = 0 if f_q <= f*, the same expression in f = f_q - f* if f* < f_q < 1 / f*, and
    (f_q^2 - f*^2) / (1 + f_q^2) if f_q >= 1 / f* (see the module docstring)."""
    check_real("t_stat", t_stat)
    check_sensitivity_options(df, q, alpha)
    f_q = q * abs(t_stat) / np.sqrt(df)
    if alpha is None:
        return _rv_equal(f_q)
    f_crit = stats.t.ppf(1 - alpha / 2, df - 1) / np.sqrt(df - 1)
    if f_q <= f_crit:
        return 0.0
    if f_q * f_crit >= 1.0:  # f_q >= 1 / f*: the outcome's partial R^2 below the treatment's reaches t* first
        return float((f_q**2 - f_crit**2) / (1.0 + f_q**2))
    return _rv_equal(f_q - f_crit)


def _rv_equal(f: float) -> float:
    """The partial R^2 r with r / sqrt(1 - r) = f: (sqrt(f^4 + 4 f^2) - f^2) / 2."""
    return float(0.5 * (np.sqrt(f**4 + 4 * f**2) - f**2))


def check_sensitivity_options(df: Any, q: Any, alpha: Any) -> None:
    """Raise unless ``df`` is an integer >= 2, ``q`` a finite number > 0 and ``alpha`` None or a number in (0, 1)
    (the check :class:`~pyrozoo.causal.plce.PLCE` gives its own ``alpha``)."""
    check_int("df", df, minimum=2)
    check_positive("q", q, scalar=True)
    if alpha is not None:
        check_probability("alpha", alpha, open_interval=True)


def sensitivity(estimate: float, std_err: float, df: int, *, q: float = 1.0, alpha: float = 0.05) -> dict[str, Any]:
    """Partial R^2 of the treatment with the outcome, t_hat^2 / (t_hat^2 + df) with t_hat = estimate / std_err, and
    RV_q and RV_{q,alpha} (:func:`robustness_value`) for a linear-regression coefficient and its classical
    (homoskedastic) SE, sqrt(sigma_hat^2 [(X'X)^-1]_jj) with sigma_hat^2 = RSS / df: with a robust (HC) SE the
    results are not the partial R^2 and robustness values (see the module docstring)."""
    check_sensitivity_options(df, q, alpha)
    check_probability("alpha", alpha, open_interval=True)  # None too: this function always reports RV_{q,alpha}
    check_real("estimate", estimate)
    check_positive("std_err", std_err, scalar=True)
    t_stat = estimate / std_err
    return {"t_stat": float(t_stat), "df": int(df), "partial_r2_treatment": float(t_stat**2 / (t_stat**2 + df)),
            "rv_q": robustness_value(t_stat, df, q=q), "rv_q_alpha": robustness_value(t_stat, df, q=q, alpha=alpha),
            "q": q, "alpha": alpha}
