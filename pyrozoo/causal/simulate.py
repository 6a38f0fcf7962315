"""The talk's simulation designs (Ratkovic 2023, "Illustrative simulation" and "Details on simulations").

Latent covariates x_i ~ N(0, I_5); every method sees the rotated covariates
x* = (x1 - 0.5 x2, x2 - 0.5 x1, x3, x4, x5). With e, u ~ N(0, 1):

* treatment  t_i = x_i1 + u_i                   (homoskedastic)
             t_i = x_i1 + u_i sqrt((x_i1^2 + 1) / 2)   (heteroskedastic; E Var(t | x) = 1 still)
* outcome    y_i = t_i + x_i1^2 + e_i           (baseline)
             y_i = t_i x_i1^2 + e_i             (heterogeneous effect; E[x1^2] = 1, so the average effect is 1)
* random effects: + a_{j[i]} in both equations, a_j ~ N(0, 1), groups of ``group_size`` units;
* interference: t_i += psi_x,i = sum_{i' != i} rho_ii' x_i'1^2 and y_i += psi_t,i = sum_{i' != i} rho_ii' t_i',
  rho_ii' = exp(-(x_i1 - x_i'1)^2 / nu) / sum_{i'' != i} exp(-(x_i1 - x_i''1)^2 / nu), nu = 1.

Scenarios: ``baseline``; ``heterogeneity`` (heterogeneous effect with the heteroskedastic treatment, as the talk
pairs them); ``random_effects``; ``interference``; ``combined`` (all of them). The true average effect is 1 in all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pyrozoo.causal.extensions import kernel_smooth
from pyrozoo.errors import PyrozooError
from pyrozoo.validation import check_bool, check_choice, check_int, check_positive, check_seed

SCENARIOS: dict[str, dict[str, bool]] = {
    "baseline": {},
    "heterogeneity": {"heterogeneous": True, "heteroskedastic": True},
    "random_effects": {"random_effects": True},
    "interference": {"interference": True},
    "combined": {"heterogeneous": True, "heteroskedastic": True, "random_effects": True, "interference": True},
}


@dataclass
class SimulatedData:
    """y, t (n,), X (n, 5) as the methods see them, groups (n,), the true effect and the generating flags."""

    y: np.ndarray
    t: np.ndarray
    X: np.ndarray
    groups: np.ndarray
    theta: float
    scenario: str
    flags: dict[str, bool] = field(default_factory=dict)
    latent: np.ndarray | None = None

    def to_frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.X, columns=[f"x{j + 1}" for j in range(self.X.shape[1])])
        df.insert(0, "t", self.t)
        df.insert(0, "y", self.y)
        df["group"] = self.groups
        return df


def simulate_plce(seed: int, scenario: str = "baseline", *, n: int = 1000, group_size: int = 20,
                  nu: float = 1.0, **flags: Any) -> SimulatedData:
    """One draw of the talk's design; ``flags`` (heterogeneous, heteroskedastic, random_effects, interference; each
    True or False) override the scenario's. ``nu`` (a finite number > 0) is the interference kernel's bandwidth.
    Every argument is checked before anything is drawn: a flag given as ``"false"`` or ``None`` was cast with
    ``bool()`` (``"false"`` turned the flag on), and ``nu`` was checked only when interference was on."""
    seed = check_seed("seed", seed)
    check_choice("scenario", scenario, SCENARIOS)
    n = check_int("n", n, minimum=10)
    group_size = check_int("group_size", group_size, minimum=1)
    known = ("heterogeneous", "heteroskedastic", "random_effects", "interference")
    bad = sorted(set(flags) - set(known))
    if bad:
        raise PyrozooError(f"simulate_plce: unknown flag(s) {', '.join(bad)}; known: {', '.join(known)}")
    for k, v in flags.items():
        check_bool(k, v)
    check_positive("nu", nu, scalar=True)
    f = {k: False for k in known} | SCENARIOS[scenario] | {k: bool(v) for k, v in flags.items()}
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5))
    x1 = x[:, 0]
    u, e = rng.standard_normal(n), rng.standard_normal(n)
    groups = np.arange(n) // group_size
    a = rng.standard_normal(groups.max() + 1)[groups] if f["random_effects"] else np.zeros(n)
    noise_sd = np.sqrt((x1**2 + 1) / 2) if f["heteroskedastic"] else 1.0
    t = x1 + noise_sd * u + a
    if f["interference"]:  # rho v block by block (kernel_smooth): the dense n x n rho took 6.7 GiB at n = 30000
        t = t + kernel_smooth(x1, nu, x1**2)
    y = (t * x1**2 if f["heterogeneous"] else t + x1**2) + a + e
    if f["interference"]:
        y = y + kernel_smooth(x1, nu, t)
    X = x.copy()
    X[:, 0], X[:, 1] = x[:, 0] - 0.5 * x[:, 1], x[:, 1] - 0.5 * x[:, 0]
    return SimulatedData(y=y, t=t, X=X, groups=groups, theta=1.0, scenario=scenario, flags=f, latent=x)
