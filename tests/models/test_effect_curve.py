"""The effect-curve zoo entry (pyrozoo/models/effect_curve.py): its metrics against ArviZ's summary."""

from __future__ import annotations

import re

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


@pytest.mark.parametrize("option, value, message", [
    ("alpha", 1.5, r"alpha: expected a number in \(0, 1\), got 1\.5"),
    ("n_folds", 1, r"n_folds: expected an integer >= 2, got 1"),
    ("n_knots", 1, r"n_knots: expected an integer >= 2, got 1"),
])
def test_estimator_settings_out_of_range_stop_a_sweep_before_any_cell(tmp_path, capsys, option, value, message):
    """QA (left by the choice-option fix): effect-curve's number ranges were checked only once the run started, so a
    sweep cell with alpha = 1.5 failed after the dry run had listed it as pending. The entry's check_options now
    runs EffectCurve.check_settings on the options as given."""
    from pyrozoo.cli import main

    sweep = tmp_path / "s.toml"
    sweep.write_text(f'[sweep]\nname = "ec"\nout = "{tmp_path / "out"}"\ntiny = true\n'
                     f'[[models]]\nname = "effect-curve"\noptions = {{ {option} = {value} }}\n')
    assert main(["sweep", str(sweep), "--dry-run"]) == 2
    assert re.search(message, capsys.readouterr().err) and not (tmp_path / "out").exists()
