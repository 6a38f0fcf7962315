"""Simulation designs for partial effect curves (Ratkovic 2023, second half of the talk; Ratkovic & Tingley 2023).

Model: y_i = theta(t_i, x_i) + f(x_i) + e_i,  t_i = g(x_i) + v_i; target tau(t_i, x_i) = d theta(t_i, x_i) / d t_i.

* ``talk`` (the talk's design, no covariates):  y_i = t_i^2 / 2 + e_i,  t_i, e_i ~ N(0, 1),  so tau(t) = t.
* ``heterogeneous`` (five covariates, effect heterogeneous in x1, confounded treatment), x_i ~ N(0, I_5):

      t_i = 0.5 x_i1 + 0.25 (x_i2^2 - 1) + v_i,               v_i ~ N(0, 1)
      y_i = t_i^2 / 2 + t_i x_i1 + x_i1^2 / 2 + x_i2 + 0.5 x_i3 + e_i,   e_i ~ N(0, 1)

  so tau(t, x) = t + x1: the slope grows with the dose and with x1; f(x) = x1^2 / 2 + x2 + 0.5 x3 and
  g(x) = 0.5 x1 + 0.25 (x2^2 - 1) make the naive regression of y on t biased.
* ``linear`` (a check, not from the talk): y_i = slope t_i + x_i1 + e_i, t_i = 0.5 x_i1 + v_i: tau = slope, flat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pyrozoo.validation import check_choice, check_int, check_real, check_seed

DESIGNS = ("talk", "heterogeneous", "linear")


@dataclass
class EffectCurveData:
    """y, t (n,), X (n, p) or None, the true partial effect tau (n,) at the observed (t, x), the design name and
    the slope of the ``linear`` design."""

    y: np.ndarray
    t: np.ndarray
    X: np.ndarray | None
    tau: np.ndarray
    design: str
    slope: float = 1.0

    def true_curve(self, grid: Any, x: Any = None, slope: float | None = None) -> np.ndarray:
        """tau on a grid of t: at fixed covariates ``x`` (a (p,) vector), else averaged over the observed X.
        ``slope`` overrides the simulated slope of the ``linear`` design (default: the one it was drawn with)."""
        grid = np.asarray(grid, dtype=np.float64).reshape(-1)
        if self.design == "talk":
            return grid.copy()
        if self.design == "linear":
            return np.full_like(grid, self.slope if slope is None else slope)
        x1 = float(np.asarray(x, dtype=np.float64).reshape(-1)[0]) if x is not None else float(self.X[:, 0].mean())
        return grid + x1


def simulate_effect_curve(seed: int, design: str = "talk", *, n: int = 1000, slope: float = 1.0) -> EffectCurveData:
    """One seeded draw of a design (see the module docstring)."""
    seed = check_seed("seed", seed)
    check_choice("design", design, DESIGNS)
    n = check_int("n", n, minimum=10)
    slope = check_real("slope", slope)  # nan was drawn into y, and the fit blamed y
    rng = np.random.default_rng(seed)
    if design == "talk":
        t = rng.standard_normal(n)
        y = 0.5 * t**2 + rng.standard_normal(n)
        return EffectCurveData(y=y, t=t, X=None, tau=t.copy(), design=design)
    X = rng.standard_normal((n, 5))
    x1, x2, x3 = X[:, 0], X[:, 1], X[:, 2]
    if design == "linear":
        t = 0.5 * x1 + rng.standard_normal(n)
        y = slope * t + x1 + rng.standard_normal(n)
        return EffectCurveData(y=y, t=t, X=X, tau=np.full(n, float(slope)), design=design, slope=float(slope))
    t = 0.5 * x1 + 0.25 * (x2**2 - 1) + rng.standard_normal(n)
    y = 0.5 * t**2 + t * x1 + 0.5 * x1**2 + x2 + 0.5 * x3 + rng.standard_normal(n)
    return EffectCurveData(y=y, t=t, X=X, tau=t + x1, design=design)
