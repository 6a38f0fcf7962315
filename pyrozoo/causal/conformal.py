"""Curvewise conformal calibration of the band constant C for a partial effect curve.

The band is tau_hat_i +- C sqrt(V_hat_i) at every observation i. With C = z_{1-alpha/2} it is a pointwise Wald band
that ignores the bias of a penalized basis fit and the selection/shrinkage uncertainty that V_hat (a posterior
covariance given the hyperparameters) leaves out. The target here is *average coverage*: the band should contain the
true curve tau(t_i, x_i) at 100 (1 - alpha)% of the observations.

Calibration by a parametric-conformal bootstrap in which the fitted curve plays the truth:

1. Held-out residuals r_i = y_i - mu_hat^{(-k(i))}(t_i, x_i) from cross-fitting the final-stage regression over the
   nuisance folds (the "estimated residuals" of conformal inference: honest, out-of-fold).
2. For b = 1..B, pseudo-outcomes y*_b,i = mu_hat(t_i, x_i) + s_b,i r_i with Rademacher signs s_b,i (wild bootstrap:
   keeps each observation's residual scale, so heteroskedasticity carries over); the pseudo-truth is tau_hat.
3. Refit the final stage on y*_b (same design, all observations): tau*_b,i and V*_b,i; scores
   z_b,i = |tau*_b,i - tau_hat_i| / sqrt(V*_b,i).
4. Average coverage of the band with constant c in the pseudo-world is A(c) = (1 / (B n)) sum_b,i 1{z_b,i <= c}. The
   calibrated C_{1-alpha/2} is the ceil((N + 1)(1 - alpha))-th smallest of the N = B n scores (the split-conformal
   rank); it is at least the smallest c with A(c) >= 1 - alpha (the ceil(N (1 - alpha))-th score) and exceeds it by
   at most one rank. When that rank exceeds N (alpha < 1 / (N + 1)) the largest score is returned, where conformal
   inference would give an unbounded band. The scores of one pseudo-dataset share a refit, so they are not
   exchangeable and the rank carries no finite-sample guarantee here; coverage of the true curve is checked by
   simulation.

C depends on alpha only through the quantile, so one set of scores serves every level. Both C and the uncalibrated
z_{1-alpha/2} are reported; the benchmark checks coverage of the *true* curve by simulation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.validation import check_int, check_probability, check_seed

Refit = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # y* -> (tau*, V*) per observation


@dataclass
class ConformalCalibration:
    """Pooled pseudo-world scores |tau* - tau_hat| / sqrt(V*) (B, n) and the derived critical values."""

    scores: np.ndarray

    def critical_value(self, alpha: float) -> float:
        """The ceil((N + 1)(1 - alpha))-th smallest of the N pooled scores (capped at the largest): a C whose band
        covers the pseudo-truth at >= 100 (1 - alpha)% of the (b, i) pairs (module docstring, step 4)."""
        check_probability("alpha", alpha, open_interval=True)
        flat = np.sort(self.scores.reshape(-1))
        N = flat.size
        k = math.ceil((N + 1) * (1 - alpha))
        return float(flat[min(k, N) - 1])

    def pseudo_coverage(self, c: float) -> float:
        """A(c): the pseudo-world average coverage of the band with constant c."""
        return float(np.mean(self.scores <= c))


def calibrate_band(refit: Refit, mu_hat: np.ndarray, residuals: np.ndarray, tau_hat: np.ndarray, *,
                   n_pseudo: int = 20, seed: int = 0, var_floor: float = 1e-12,
                   after_refit: Callable[[], Any] | None = None) -> ConformalCalibration:
    """Run steps 2-3 of the module docstring: ``n_pseudo`` sign-flipped pseudo-datasets, one refit each.

    ``refit(y_star)`` must return (tau*, V*) at the observations; ``mu_hat`` are the fitted values, ``residuals`` the
    held-out residuals, ``tau_hat`` the fitted curve (the pseudo-truth). ``var_floor`` keeps a zero variance from
    making a score infinite (it then counts as a miss unless the estimate is exact). ``after_refit()`` is called
    after each refit (e.g. a progress bar's ``update``: the refits are most of a large fit's time).
    """
    n_pseudo = check_int("n_pseudo", n_pseudo, minimum=1)
    seed = check_seed("seed", seed)
    mu_hat, residuals, tau_hat = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (mu_hat, residuals, tau_hat))
    if not (mu_hat.shape == residuals.shape == tau_hat.shape):
        raise PyrozooError(f"calibrate_band: mu_hat, residuals and tau_hat must have one value per observation; "
                           f"got {mu_hat.shape}, {residuals.shape}, {tau_hat.shape}")
    rng = np.random.default_rng(seed)
    scores = np.empty((n_pseudo, tau_hat.size))
    for b in range(n_pseudo):
        signs = rng.choice((-1.0, 1.0), size=residuals.size)
        tau_b, var_b = _refit_values(refit(mu_hat + signs * residuals), tau_hat.size)
        scores[b] = np.abs(tau_b - tau_hat) / np.sqrt(np.maximum(var_b, var_floor))
        if after_refit is not None:
            after_refit()
    return ConformalCalibration(scores)


def _refit_values(out: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``refit``'s (tau*, V*) as two float arrays of ``n`` values, or a :class:`PyrozooError` saying what came (a
    shorter array was a raw broadcast error in the scores). A pair may be a tuple, a list or an array of two rows;
    V* may be one number, the same variance for every observation (it broadcast before the check, and still does)."""
    want = (f"a pair (tau*, V*) with tau* one value per observation ({n}) and V* as many, or one number for all "
            f"of them")
    if isinstance(out, (np.ndarray, torch.Tensor)):  # an array of two rows unpacks as a pair, as before the check
        if out.ndim < 1 or len(out) != 2:
            kind = "an ndarray" if isinstance(out, np.ndarray) else "a tensor"
            raise PyrozooError(f"refit: expected {want}, got {kind} of shape {tuple(out.shape)}")
    elif not isinstance(out, (tuple, list)) or len(out) != 2:
        raise PyrozooError(f"refit: expected {want}, got {type(out).__name__}"
                           + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""))
    # each of the pair detached and on the host, whatever holds it (a tuple's tensors that require grad were a raw
    # "Can't call numpy() on Tensor that requires grad"; only the stacked (2, n) tensor was detached)
    out = [a.detach().cpu() if isinstance(a, torch.Tensor) else a for a in out]
    try:
        tau_b, var_b = (np.asarray(a, dtype=np.float64).reshape(-1) for a in out)
    except (TypeError, ValueError):
        raise PyrozooError(f"refit: expected {want}, got non-numeric values") from None
    if tau_b.size != n or var_b.size not in (1, n):  # what was returned, before V*'s one number is broadcast
        if np.ndim(out[0]) and np.ndim(out[1]):
            said = f"{tau_b.size} and {var_b.size} values"
        else:  # a number is said as one, not counted as the n values it would broadcast to
            said = " and ".join("one number" if np.ndim(o) == 0 else f"{a.size} value{'s' if a.size != 1 else ''}"
                                for a, o in zip((tau_b, var_b), out, strict=True))
        raise PyrozooError(f"refit: expected {want}, got {said}")
    if var_b.size == 1:
        var_b = np.full(n, var_b[0])
    return tau_b, var_b
