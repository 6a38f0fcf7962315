"""The effect-curve zoo entry (pyrozoo/models/effect_curve.py): its metrics against ArviZ's summary."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

from pyrozoo.config import RunConfig
from pyrozoo.runner import run_model


def test_the_mean_posterior_sd_of_tau_in_metrics_is_the_summary_table_s():
    """effect_curve_metrics' posterior_tau_sd_mean averaged the draws' sds with ddof 0, az.summary's sds are ddof 1
    (a factor sqrt((S - 1) / S): 0.89 at S = 5 draws). Both ddof 1 now: the mean of the table's sds of tau."""
    opts = {"design": "heterogeneous", "n": 120, "n_folds": 2, "n_pseudo": 2, "n_knots": 4, "n_knots_x": 3,
            "heterogeneity": "linear", "learner": "ridge"}
    out = run_model(RunConfig(model="effect-curve", inference="em", num_samples=5, progress=False,
                              options=opts), save=False)
    table = az.summary(out.result.to_inference_data(), var_names=["tau"], kind="stats", round_to="none")
    assert out.metrics["posterior_tau_sd_mean"] == pytest.approx(float(np.mean(table["sd"])), rel=1e-12)
