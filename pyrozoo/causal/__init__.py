"""Causal-effect estimation with machine-learned controls: the partially linear model (PLCE), its cross-fitting,
basis expansion, extensions (treatment variance, random effects, interference), diagnostics and simulators."""

from pyrozoo.causal.crossfit import CrossFitPredictions, crossfit_predict, make_folds
from pyrozoo.causal.effect_curve import EffectCurve
from pyrozoo.causal.plce import PLCE, aggregate_splits, wls_hc3
from pyrozoo.causal.simulate import SCENARIOS, simulate_plce

__all__ = ["PLCE", "SCENARIOS", "CrossFitPredictions", "EffectCurve", "aggregate_splits", "crossfit_predict",
           "make_folds", "simulate_plce", "wls_hc3"]
