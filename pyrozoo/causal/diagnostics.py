"""Diagnostics of a partially linear fit: positivity (kurtosis of treatment residuals across splits) and
sensitivity to an omitted confounder (Cinelli & Hazlett 2020).

Positivity. With v_hat_{i,s} the out-of-fold treatment residual of unit i in split s = 1..S,

    kappa_i = (1/S sum_s v_hat_{i,s}^4) / (1/S sum_s v_hat_{i,s}^2)^2,

which lies in [1, S]. A unit whose treatment is predictable (Var(t | x) near 0) has residuals that are near zero in
most splits and large only when its neighbourhood is thin in the training folds: a kurtosis near S.

Sensitivity. For the coefficient's t statistic t_hat with df residual degrees of freedom, the partial R^2 of the
treatment with the outcome is R^2_{Y~D|X} = t_hat^2 / (t_hat^2 + df); the robustness value for reducing the effect
by 100 q % is RV_q = (sqrt(f_q^4 + 4 f_q^2) - f_q^2) / 2 with f_q = q |t_hat| / sqrt(df); the version that keeps
the (1 - alpha) interval from covering (1 - q) theta uses f_q - t*_{alpha, df-1} / sqrt(df - 1) in place of f_q
(zero if negative). A confounder explaining less than RV of the residual variance of both treatment and outcome
cannot move the estimate that far.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from pyrozoo.errors import PyrozooError


def positivity_kurtosis(t_resid: np.ndarray) -> np.ndarray:
    """(n,) kappa_i from the (S, n) treatment residuals of S splits (NaN for a unit with all residuals zero)."""
    v = np.atleast_2d(np.asarray(t_resid, dtype=np.float64))
    m2 = (v**2).mean(axis=0)
    m4 = (v**4).mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(m2 > 0, m4 / np.where(m2 > 0, m2, 1.0) ** 2, np.nan)


def positivity_summary(kappa: np.ndarray, n_splits: int, *, threshold: float | None = None) -> dict[str, float]:
    """Mean and max kurtosis and the share of units above ``threshold`` (default: halfway between the Gaussian
    expectation 3(S)/(S+2) (approx.) and the maximum S)."""
    S = int(n_splits)
    if S < 2:
        return {"kurtosis_mean": float("nan"), "kurtosis_max": float("nan"), "kurtosis_share_flagged": float("nan")}
    gauss = 3.0 * S / (S + 2.0)  # E[kappa] for i.i.d. Gaussian residuals, to first order
    thr = threshold if threshold is not None else gauss + 0.5 * (S - gauss)
    k = kappa[np.isfinite(kappa)]
    return {"kurtosis_mean": float(k.mean()), "kurtosis_max": float(k.max()), "kurtosis_threshold": float(thr),
            "kurtosis_share_flagged": float((k > thr).mean())}


def plot_positivity(kappa: np.ndarray, t_hat: np.ndarray, t: np.ndarray, path: str | Path, *,
                    n_splits: int | None = None) -> Path:
    """Scatter of kappa_i against the fitted treatment E[t | x_i], coloured by the observed treatment, with the
    Gaussian reference 3S/(S+2) and the maximum S; written to ``path`` (png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
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
    treatment and the outcome to reduce the estimate by 100 q % (or make it insignificant at level alpha)."""
    if df < 2:
        raise PyrozooError(f"df: expected at least 2 residual degrees of freedom, got {df}")
    if not q > 0:
        raise PyrozooError(f"q: expected a fraction > 0, got {q!r}")
    f = q * abs(t_stat) / np.sqrt(df)
    if alpha is not None:
        f = f - stats.t.ppf(1 - alpha / 2, df - 1) / np.sqrt(df - 1)
        if f <= 0:
            return 0.0
    return float(0.5 * (np.sqrt(f**4 + 4 * f**2) - f**2))


def sensitivity(estimate: float, std_err: float, df: int, *, q: float = 1.0, alpha: float = 0.05) -> dict[str, Any]:
    """Partial R^2 of the treatment with the outcome, RV_q and RV_{q,alpha} for a coefficient and its SE."""
    t_stat = estimate / std_err
    return {"t_stat": float(t_stat), "df": int(df), "partial_r2_treatment": float(t_stat**2 / (t_stat**2 + df)),
            "rv_q": robustness_value(t_stat, df, q=q), "rv_q_alpha": robustness_value(t_stat, df, q=q, alpha=alpha),
            "q": q, "alpha": alpha}
