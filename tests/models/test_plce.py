"""The PLCE zoo entry's final-stage dataset (the estimator itself is tested in tests/causal/)."""

from __future__ import annotations

import re

import pytest
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.models.plce import make_final_stage_dataset


@pytest.mark.parametrize("dtype", [torch.int64, "float64"])
def test_final_stage_dtype_must_be_floating(dtype):
    # checked before the estimator is touched: an integer dtype would have truncated the residuals
    with pytest.raises(PyrozooError, match="dtype: expected a floating torch dtype"):
        make_final_stage_dataset(None, dtype=dtype)


# 6 clusters: the few-clusters warning is expected here (it is tested in tests/causal/test_plce.py)
@pytest.mark.filterwarnings("ignore:groups. cluster-robust standard errors .* from 6 clusters:UserWarning")
def test_the_standard_error_is_named_by_its_type(tmp_path):
    """-o groups=grp -o se_type=cluster wrote the cluster-robust SE under se_hc3 (metrics.json and the printout)."""
    import numpy as np
    import pandas as pd

    from pyrozoo.commands.plce import _table
    from pyrozoo.config import RunConfig
    from pyrozoo.models.plce import frame_to_arrays, make_estimator
    from pyrozoo.runner import run_model

    rng = np.random.default_rng(0)
    x = rng.standard_normal(60)
    t = x + rng.standard_normal(60)
    pd.DataFrame({"y": t + x + rng.standard_normal(60), "t": t, "x": x, "grp": np.repeat(np.arange(6), 10)}).to_csv(
        tmp_path / "d.csv", index=False)
    fast = {"learner": "ridge", "n_folds": 2, "n_repeats": 1, "interactions": "linear", "n_knots": 3}
    runs = {}
    # HC3 reads no groups without random effects (refused there): that run leaves them out, controlling for x alone
    for se_type, grouped in (("hc3", {"controls": "x"}), ("cluster", {"groups": "grp", "random_effects": False})):
        cfg = RunConfig(model="plce", inference="svi", steps=20, num_samples=20, progress=False,
                        data=str(tmp_path / "d.csv"), options={**fast, **grouped, "se_type": se_type})
        runs[se_type] = run_model(cfg, save=False)
    hc3, cluster = runs["hc3"].metrics, runs["cluster"].metrics
    assert "se_cluster" not in hc3 and "se_hc3" not in cluster
    y, t, X, g = frame_to_arrays(pd.read_csv(tmp_path / "d.csv"), "y", "t", groups="grp")
    est = make_estimator(cfg.seed, **fast, se_type="cluster", random_effects=False).fit(y, t, X, groups=g)
    assert cluster["se_cluster"] == pytest.approx(est.se_, rel=1e-12)
    assert hc3["theta"] == pytest.approx(cluster["theta"]) and hc3["se_hc3"] != pytest.approx(cluster["se_cluster"])
    assert list(_table(runs["cluster"]).index[:2]) == ["PLCE (cluster)", "PLCE feasible (cluster)"]
    assert list(_table(runs["hc3"]).index[:2]) == ["PLCE (HC3)", "PLCE feasible (HC3)"]
    assert _table(runs["cluster"]).iloc[0]["std_err"] == cluster["se_cluster"]


@pytest.mark.parametrize("options", [{"learner": "ridge"}, {"learner": "lasso"}, {"refit": "none"}])
def test_linear_controls_false_without_a_selection_refit_is_refused(options):
    """linear_controls joins only the refit of the spike_slab learner's selections: false with ridge, lasso or
    refit='none' changed nothing (identical tables), so it is refused as the other no-op options are, by the entry
    (every sweep cell, before any data) and by make_estimator."""
    from pyrozoo.config import RunConfig
    from pyrozoo.models.plce import make_estimator
    from pyrozoo.registry import get

    match = r"^linear_controls: false applies only to the refit of the spike_slab learner's selections; .*no effect"
    with pytest.raises(PyrozooError, match=match):
        get("plce").check_config(RunConfig(model="plce", options={**options, "linear_controls": False}))
    with pytest.raises(PyrozooError, match=match):
        make_estimator(0, **options, linear_controls=False)
    make_estimator(0, **options)  # the default (true) is no setting of the user's: accepted
    make_estimator(0, linear_controls=False)


@pytest.mark.parametrize("refit", ["union_ols", "none"])
@pytest.mark.parametrize("learner", ["ridge", "lasso"])
def test_refit_without_a_selecting_learner_is_refused_before_any_data(tmp_path, capsys, learner, refit):
    """refit acts only on the spike_slab learner's column selections: `-o learner=ridge -o refit=none` gave the
    default table exactly. The entry refuses it (every sweep cell, before any data), `pyrozoo run` with -o or a TOML
    config says so in one line with exit 2 and leaves no run directory, and make_estimator refuses it too."""
    from pyrozoo.cli import main
    from pyrozoo.config import RunConfig
    from pyrozoo.models.plce import make_estimator
    from pyrozoo.registry import get

    match = rf"^refit: '{refit}' applies only with learner='spike_slab' .*learner='{learner}' selects no columns"
    with pytest.raises(PyrozooError, match=match):
        get("plce").check_config(RunConfig(model="plce", options={"learner": learner, "refit": refit}))
    with pytest.raises(PyrozooError, match=match):
        make_estimator(0, learner=learner, refit=refit)
    make_estimator(0, learner=learner)  # the default refit is no setting of the user's: accepted
    make_estimator(0, refit=refit)
    capsys.readouterr()
    out = tmp_path / "run"
    assert main(["run", "plce", "-o", f"learner={learner}", "-o", f"refit={refit}", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"pyrozoo: error: refit: '{refit}' applies only")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'model = "plce"\n[options]\nlearner = "{learner}"\nrefit = "{refit}"\n')
    assert main(["run", "--config", str(cfg), "--out", str(out)]) == 2
    assert "would have no effect" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [cfg]  # no run directory, not even a temporary one


@pytest.mark.parametrize("model", ["plce", "effect-curve"])
@pytest.mark.parametrize("value", [1.0, "same"], ids=["numeric", "text"])
def test_a_constant_control_in_a_data_file_is_refused_naming_the_file_and_option(tmp_path, model, value):
    """A constant numeric control failed as "X: column(s) ['c'] are constant; remove them" (no file, no option); a
    constant text control gave no dummy column yet was listed under the run's controls."""
    import numpy as np
    import pandas as pd

    from pyrozoo import registry

    rng = np.random.default_rng(0)
    path = tmp_path / "const.csv"
    pd.DataFrame({"y": rng.normal(size=40), "t": rng.normal(size=40), "x1": rng.normal(size=40), "c": value}).to_csv(
        path, index=False)
    for controls in ("", "x1,c"):
        with pytest.raises(PyrozooError, match=r"^data .*const\.csv: control column\(s\) 'c' are constant \(.*\); "
                                               r"leave them out of the controls \((--controls, or )?"
                                               r"-o controls=NAME,\.\.\."):
            registry.get(model).from_file(str(path), 0, controls=controls)


@pytest.mark.parametrize("model", ["plce", "effect-curve"])
@pytest.mark.parametrize("levels,values,read", [
    (4, ["1,200", "2,500", "900", "13,000"], "thousands=','"),  # 4 levels: silently one-hot coded
    (40, None, "thousands=','"),  # 40 levels: refused as "like an identifier or a date"
    (3, ["1,5", "2,25", "3,0"], "decimal=','"),
], ids=["few", "many", "decimal"])
def test_numbers_written_with_commas_in_a_text_control_are_refused_with_the_fix(tmp_path, model, levels, values, read):
    """Thousands separators made a numeric control text, which was dummy-coded as categories (or refused as an
    identifier); the other entries refuse such a column as not numeric."""
    import numpy as np
    import pandas as pd

    from pyrozoo import registry

    rng = np.random.default_rng(0)
    income = [f"{1000 + 37 * i:,}" for i in range(40)] if values is None else [values[i % levels] for i in range(40)]
    path = tmp_path / "sep.csv"
    pd.DataFrame({"y": rng.normal(size=40), "t": rng.normal(size=40), "x1": rng.normal(size=40),
                  "income": income}).to_csv(path, index=False)
    with pytest.raises(PyrozooError, match=rf"^data .*sep\.csv: control column 'income' holds numbers written as text "
                                           rf"\('{re.escape(income[0])}', .*pandas\.read_csv\(path, {read}\)"):
        registry.get(model).from_file(str(path), 0)


def test_an_explicit_outcome_y_is_not_taken_as_lalondes_re78(monkeypatch, capsys):
    """The placeholder default 'y' stood for re78 with --dataset lalonde, so an explicit -o outcome=y (or t) silently
    fitted re78 (treat), and `pyrozoo list plce` showed y / t as lalonde's defaults. The defaults are None now: y / t
    for a file, re78 / treat for lalonde; an explicit y is the column y, which lalonde lacks."""
    from pyrozoo import registry
    from pyrozoo.cli import main
    from pyrozoo.config import RunConfig
    from pyrozoo.models import plce

    fitted = []

    def no_fit(*args, **kw):  # record the columns read, stop before the cross-fitting
        fitted.append(kw["meta"])
        raise ZeroDivisionError

    monkeypatch.setattr(plce, "_fit_and_pack", no_fit)
    columns = "columns are treat, age, educ, race, married, nodegree, re74, re75, re78"
    entry = registry.get("plce")
    for option, name in (("outcome", "y"), ("treatment", "t")):
        config = entry.check_config(RunConfig(model="plce", dataset="lalonde", options={option: name}))
        with pytest.raises(PyrozooError, match=rf"^{option}: lalonde has no column\(s\) '{name}' .*; {columns}$"):
            entry.load_data(config)
    assert main(["plce", "--dataset", "lalonde", "--outcome", "y", "--no-progress"]) == 2
    assert "outcome: lalonde has no column(s) 'y'" in capsys.readouterr().err
    assert not fitted
    with pytest.raises(ZeroDivisionError):  # left out: re78 on treat, up to the fit
        entry.load_data(entry.check_config(RunConfig(model="plce", dataset="lalonde")))
    assert (fitted[0]["outcome"], fitted[0]["treatment"]) == ("re78", "treat")
    assert main(["list", "plce"]) == 0
    out = capsys.readouterr().out
    assert ("  outcome          None         (str; only with a data file (--data) or dataset 'lalonde'; when not "
            "given: 'y' with a data file (--data), 're78' with dataset 'lalonde')") in out
    assert "when not given: 't' with a data file (--data), 'treat' with dataset 'lalonde')" in out


def test_the_groups_column_must_not_be_the_outcome_or_treatment(tmp_path, capsys):
    """`pyrozoo plce --data bin.csv --groups t` (t the treatment) was accepted: random intercepts by the treatment
    itself gave PLCE -2.81 (SE 2.91) against about 1 without them. Refused as --controls x1,t is, before any fit, by
    `pyrozoo plce`, `pyrozoo run plce -o groups=...` and frame_to_arrays."""
    import numpy as np
    import pandas as pd

    from pyrozoo.cli import main
    from pyrozoo.models.plce import frame_to_arrays

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x1": rng.normal(size=40), "t": rng.integers(0, 2, 40), "y": rng.normal(size=40)})
    for column, role in (("t", "treatment"), ("y", "outcome")):
        with pytest.raises(PyrozooError, match=rf"^groups: '{column}' is the {role} column; groups must be another "
                                               rf"column$"):
            frame_to_arrays(df, "y", "t", groups=column)
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    fast = ["--learner", "ridge", "--n-repeats", "1", "--n-folds", "3", "--inference", "svi", "--steps", "5"]
    assert main(["plce", "--data", str(path), "--groups", "t", *fast]) == 2
    err = capsys.readouterr().err
    assert err == "pyrozoo: error: groups: 't' is the treatment column; groups must be another column\n"
    assert main(["run", "plce", "--data", str(path), "-o", "groups=y", "-o", "learner=ridge", "--no-progress"]) == 2
    assert "groups: 'y' is the outcome column" in capsys.readouterr().err


def test_groups_without_random_effects_or_a_cluster_se_are_refused_before_any_data(tmp_path, capsys):
    """-o groups=g -o random_effects=false with the HC3 SE reads the column nowhere (the run gave the numbers of no
    groups exactly): refused by the entry (every sweep cell, before any data) and by make_estimator's options, as
    the other no-op options are; random effects (auto, true) or se_type=cluster read it."""
    from pyrozoo.cli import main
    from pyrozoo.config import RunConfig
    from pyrozoo.models.plce import check_option_effects
    from pyrozoo.registry import get

    match = (r"^groups: 'g' applies only with random effects \(random_effects auto, the default, or true\) or "
             r"se_type=cluster; with random_effects=false and se_type=hc3 it would have no effect \(remove it\)$")
    data = tmp_path / "d.csv"  # checked before it is read: it need not even hold the columns
    data.write_text("y,t,x\n1,0,2\n")
    entry, data = get("plce"), str(data)
    with pytest.raises(PyrozooError, match=match):
        entry.check_config(RunConfig(model="plce", data=data, options={"groups": "g", "random_effects": False}))
    with pytest.raises(PyrozooError, match=match):
        check_option_effects({"groups": "g", "random_effects": False})
    for ok in ({"random_effects": True}, {"random_effects": "auto"}, {"random_effects": False, "se_type": "cluster"}):
        entry.check_config(RunConfig(model="plce", data=data, options={"groups": "g", **ok}))
    entry.check_config(RunConfig(model="plce", data=data, options={"random_effects": False}))  # no groups: fine
    capsys.readouterr()
    out = tmp_path / "run"
    assert main(["run", "plce", "--data", data, "-o", "groups=g", "-o", "random_effects=false", "--out",
                 str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pyrozoo: error: groups: 'g' applies only with random effects")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["d.csv"]



def _exact_final_stage_posterior(x, y, w, y_scale, scale, sig):
    """The final stage's exact posterior of theta (weighted y = theta x + e, e ~ N(0, sigma^2 y_scale^2 / w),
    theta ~ N(0, scale^2), sigma ~ HalfNormal(2)): p(sigma | y) on the grid ``sig`` (in units of y_scale) with theta
    integrated out, then the mixture of the Gaussian theta | sigma. Returns (mean, sd, p on the grid)."""
    import math

    import numpy as np
    from scipy import stats

    sxx, sxy, syy, n = (w * x * x).sum(), (w * x * y).sum(), (w * y * y).sum(), len(x)
    s2 = (sig * y_scale) ** 2
    prec = sxx / s2 + 1 / scale**2
    mean_given = sxy / s2 / prec
    logp = (stats.halfnorm.logpdf(sig, scale=2.0) - 0.5 * n * np.log(s2) - 0.5 * np.log(prec * scale**2)
            - 0.5 * (syy / s2 - prec * mean_given**2))
    p = np.exp(logp - logp.max())
    p /= p.sum()
    mean = float(p @ mean_given)
    return mean, math.sqrt(float(p @ (1 / prec + mean_given**2)) - mean**2), p


@pytest.mark.parametrize("theta_scale", [0.01, 0.001])
def test_svi_reaches_the_posterior_under_an_informative_prior(theta_scale):
    """With an informative theta_scale the SVI guide was started at, and preconditioned by, the flat-prior WLS
    reference (theta 1.96, sd 0.062 on the QA's file) and 2000 steps ended at 0.298 (sd 0.021) where NUTS and the
    exact posterior give 0.060 (0.024). It now starts at the reference with theta's N(0, s^2) prior
    (final_stage_reference(..., prior=True)).

    Checked against the exact posterior of the final-stage model (theta | sigma conjugate, sigma and its
    HalfNormal(2) prior by quadrature on a fine grid) on n = 200 synthetic residuals (ry = 2 rt + e): here the
    posterior is shrunk to ~0.02 x (theta_hat = 2), 80 (theta_scale 0.01) and 870 (0.001) posterior sds from the
    flat-prior start. Tolerances from the Monte Carlo error: over SVI seeds 0-7 the learned q(theta) (500 steps)
    scattered by sd 0.05 posterior sds in the mean and 4.3% in the sd around the exact values (mean offsets 0.000
    and 0.001: the mean-field guide adds no visible bias), and the 1000 draws add 1 / sqrt(1000) = 0.032 sd and
    1 / sqrt(2000) = 2.2%: 4 x the combined sds (0.06, 0.048) gives 0.25 sd and 20%."""

    import numpy as np

    from pyrozoo.config import RunConfig
    from pyrozoo.data.dataset import Dataset
    from pyrozoo.models.plce import final_stage_reference, fit_final_stage

    g = torch.Generator().manual_seed(0)
    rt = torch.randn(200, generator=g, dtype=torch.float64)
    ry = 2.0 * rt + torch.randn(200, generator=g, dtype=torch.float64)
    sd_ry, sd_rt = float(ry.std(unbiased=False)), float(rt.std(unbiased=False))
    scale = theta_scale * sd_ry / sd_rt  # as make_final_stage_dataset sets it
    data = Dataset("plce", inputs={"t_resid": rt, "weights": torch.ones(200, dtype=torch.float64),
                                   "theta_scale": torch.tensor(scale, dtype=torch.float64),
                                   "y_scale": torch.tensor(sd_ry, dtype=torch.float64)}, observed={"y_resid": ry})
    # exact posterior: p(sigma | ry) on a grid (theta integrated out), then the mixture of theta | sigma
    exact_mean, exact_sd, _ = _exact_final_stage_posterior(rt.numpy(), ry.numpy(), np.ones(200), sd_ry, scale,
                                                           np.linspace(1e-3, 4.0, 40001))
    cfg = RunConfig(model="plce", inference="svi", steps=500, num_samples=1000, progress=False, seed=0).validate()
    draws = fit_final_stage(data, cfg).draws("theta")
    assert abs(draws.mean() - exact_mean) < 0.25 * exact_sd, (draws.mean(), exact_mean, exact_sd)
    assert draws.std() == pytest.approx(exact_sd, rel=0.2)
    flat = final_stage_reference(data)
    assert abs(flat["theta_mean"] - exact_mean) > 50 * exact_sd  # the old start: far off
    ref = final_stage_reference(data, prior=True)  # the new start: the conjugate posterior at sigma's EM estimate
    assert abs(ref["theta_mean"] - exact_mean) < 0.05 * exact_sd
    assert ref["theta_sd"] == pytest.approx(exact_sd, rel=0.05)


def test_the_prior_reference_is_the_flat_one_under_the_default_prior():
    """final_stage_reference(prior=True) with the default theta_scale (10 sd(ry) / sd(rt)) moves the SVI start by a
    relative ~1e-5 (QA file: theta 1.9610502 -> 1.9610351, 2.4e-4 posterior sd; SVI's default-prior posterior moved
    by 3e-10) and is exactly the flat reference without a prior (theta_scale = inf: the EM fixed point for sigma is
    the WLS variance)."""
    from pyrozoo.data.dataset import Dataset
    from pyrozoo.models.plce import final_stage_reference

    g = torch.Generator().manual_seed(1)
    rt = torch.randn(300, generator=g, dtype=torch.float64)
    ry = 2.0 * rt + torch.randn(300, generator=g, dtype=torch.float64)
    sd_ry, sd_rt = float(ry.std(unbiased=False)), float(rt.std(unbiased=False))

    def data(scale):
        return Dataset("plce", inputs={"t_resid": rt, "weights": torch.ones(300, dtype=torch.float64),
                                       "theta_scale": torch.tensor(scale, dtype=torch.float64),
                                       "y_scale": torch.tensor(sd_ry, dtype=torch.float64)}, observed={"y_resid": ry})

    flat = final_stage_reference(data(1.0))
    assert final_stage_reference(data(float("inf")), prior=True) == pytest.approx(flat, rel=1e-12)
    default = final_stage_reference(data(10.0 * sd_ry / sd_rt), prior=True)
    assert abs(default["theta_mean"] - flat["theta_mean"]) < 1e-3 * flat["theta_sd"]
    assert default["theta_sd"] == pytest.approx(flat["theta_sd"], rel=1e-4)


def test_simulated_data_with_a_cluster_se_pass_the_simulators_groups():
    """`pyrozoo run plce -o random_effects=false -o se_type=cluster` stopped with "se_type: 'cluster' needs groups":
    the simulated design has group ids (groups of 20 units; 30 here) but they were passed only with random effects. With
    se_type=cluster they are the clusters, whatever the scenario; the SE equals a direct fit's on those groups."""
    from pyrozoo.causal.simulate import simulate_plce
    from pyrozoo.config import RunConfig
    from pyrozoo.models.plce import make_estimator
    from pyrozoo.runner import run_model

    fast = {"learner": "ridge", "n_folds": 2, "n_repeats": 1, "interactions": "linear", "n_knots": 3, "n": 600}
    cfg = RunConfig(model="plce", inference="svi", steps=20, num_samples=20, progress=False,
                    options={**fast, "random_effects": False, "se_type": "cluster"})
    metrics = run_model(cfg, save=False).metrics
    sim = simulate_plce(cfg.seed, "baseline", n=600)
    est = make_estimator(cfg.seed, **{k: v for k, v in fast.items() if k != "n"}, se_type="cluster",
                         random_effects=False).fit(sim.y, sim.t, sim.X, groups=sim.groups)
    assert metrics["se_cluster"] == pytest.approx(est.se_, rel=1e-12)


def test_cluster_se_on_a_simulated_scenario_without_random_effects_keeps_them_off():
    """random_effects="auto" on the simulated design means the scenario's own: passing its group ids for cluster
    SEs must not turn random effects on (the estimator's auto turns them on whenever groups are given), so theta is
    the HC3 run's and only the SE differs."""
    from pyrozoo.config import RunConfig
    from pyrozoo.runner import run_model

    fast = {"learner": "ridge", "n_folds": 2, "n_repeats": 1, "interactions": "linear", "n_knots": 3, "n": 600}
    runs = {se: run_model(RunConfig(model="plce", inference="svi", steps=20, num_samples=20, progress=False,
                                    options={**fast, "se_type": se}), save=False).metrics for se in ("hc3", "cluster")}
    assert runs["cluster"]["theta"] == pytest.approx(runs["hc3"]["theta"], rel=1e-12)
    assert runs["cluster"]["se_cluster"] != pytest.approx(runs["hc3"]["se_hc3"])


def test_the_posterior_sd_in_metrics_is_the_summary_table_s():
    """plce_metrics' posterior_sd was the draws' sd with ddof 0, az.summary's sd of theta ddof 1 (a factor
    sqrt((S - 1) / S): 0.89 at S = 5 draws). Both ddof 1 now, equal to rounding."""
    import arviz as az

    from pyrozoo.config import RunConfig
    from pyrozoo.runner import run_model

    fast = {"learner": "ridge", "n_folds": 2, "n_repeats": 1, "interactions": "linear", "n_knots": 3, "n": 150}
    out = run_model(RunConfig(model="plce", inference="svi", steps=20, num_samples=5, progress=False,
                              options=fast), save=False)
    table = az.summary(out.result.to_inference_data(), var_names=["theta"], kind="stats", round_to="none")
    assert out.metrics["posterior_sd"] == pytest.approx(float(table["sd"].iloc[0]), rel=1e-12)


@pytest.mark.parametrize("model", ["plce", "effect-curve"])
@pytest.mark.parametrize("values,expected", [
    # '0,001' and '-0,274' cannot be digit grouping: thousands=',' would have turned 0,001 into 1
    (["0,001", "-0,274", "1,234", "2,500"], r"\('0,001', a decimal comma\).*pandas\.read_csv\(path, decimal=','\)"),
    (["1234,567", "2,250", "3,000"], r"\('1234,567', a decimal comma\).*decimal=','"),  # 4 digits before the comma
    (["1,234", "-2,500", "13,000"], r"\('1,234', an ambiguous comma: .*'1,234' = 1234 with pandas\.read_csv\(path, "
                                    r"thousands=','\), and as a decimal comma, '1,234' = 1\.234 with "
                                    r"pandas\.read_csv\(path, decimal=','\)\)"),
    (["1,234.5", "2,000", "12"], r"\('1,234\.5', a thousands separator\).*thousands=','"),
], ids=["leading-zero", "long-integer-part", "ambiguous", "grouped-with-point"])
def test_decimal_commas_are_not_called_thousands_separators(tmp_path, model, values, expected):
    """A column written with 3 decimals and a decimal comma ('0,001', '-0,274') was called a thousands separator and
    the suggested pandas.read_csv(path, thousands=',') turned 0,001 into 1. A value that cannot be digit grouping
    (leading group 0, more than 3 digits before the comma) makes the column a decimal-comma one; a column whose every
    value reads both ways is called ambiguous, with both readings."""
    import numpy as np
    import pandas as pd

    from pyrozoo import registry

    rng = np.random.default_rng(0)
    path = tmp_path / "sep.csv"
    pd.DataFrame({"y": rng.normal(size=40), "t": rng.normal(size=40), "x2": rng.normal(size=40),
                  "x1": [values[i % len(values)] for i in range(40)]}).to_csv(path, index=False)
    with pytest.raises(PyrozooError, match=r"^data .*sep\.csv: control column 'x1' holds numbers written as text "
                                           + expected):
        registry.get(model).from_file(str(path), 0)


@pytest.mark.parametrize("model", ["plce", "effect-curve"])
def test_a_trailing_comma_on_every_line_is_named_as_such(tmp_path, model):
    """'y,t,x1,x2,' on every line (header included) gives an empty, unnamed last column; the error blamed an index
    written by DataFrame.to_csv, which would be column 1. It now says the lines end in a trailing comma; a blank
    header elsewhere than column 1 no longer suggests an index either."""
    import numpy as np

    from pyrozoo import registry

    rng = np.random.default_rng(0)
    rows = rng.normal(size=(40, 4))
    trail = tmp_path / "trail.csv"
    trail.write_text("y,t,x1,x2,\n" + "".join(",".join(map(str, r)) + ",\n" for r in rows))
    with pytest.raises(PyrozooError, match=r"^data .*trail\.csv: its lines end in a trailing comma \(column 5, the "
                                           r"last, has no name in its header and no value in any row\): remove the "
                                           r"trailing commas or name the controls with "):
        registry.get(model).from_file(str(trail), 0)
    middle = tmp_path / "middle.csv"
    middle.write_text("y,t,,x2\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    with pytest.raises(PyrozooError, match=r"^data .*middle\.csv: column 3 has no name in its header: name it in the "
                                           r"header row or name the controls with ") as caught:
        registry.get(model).from_file(str(middle), 0)
    assert "index" not in str(caught.value)


def test_a_column_whose_name_holds_a_comma_is_listed_unambiguously_and_explained(tmp_path):
    """--controls a,b on a file with a column 'a,b' said "has no column(s) 'a', 'b' ...; columns are y, t, a,b, x2",
    a list that reads as five names. The columns are quoted now, and the error says why such a column cannot be
    named in the comma-separated controls, and how to use it (a list, or the default controls)."""
    import numpy as np
    import pandas as pd

    from pyrozoo.models.plce import frame_to_arrays

    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(40, 4)), columns=["y", "t", "a,b", "x2"])
    with pytest.raises(PyrozooError, match=r"^controls: data has no column\(s\) 'a', 'b' \(given by --controls, .*\); "
                                           r"columns are 'y', 't', 'a,b', 'x2'; the controls given as text are split "
                                           r"at commas, so column 'a,b' cannot be named there: leave the controls "
                                           r"out \(every other column\), give them as a list"):
        frame_to_arrays(df, "y", "t", "a,b")
    assert frame_to_arrays(df, "y", "t", ["a,b", "x2"])[2].attrs["controls"] == ["a,b", "x2"]
    assert frame_to_arrays(df, "y", "t")[2].attrs["controls"] == ["a,b", "x2"]
    with pytest.raises(PyrozooError, match=r"^outcome: data has no column\(s\) 'zz'.*; columns are 'y', 't', 'a,b', "
                                           r"'x2'$"):
        frame_to_arrays(df, "zz", "t")


def test_missing_group_ids_in_a_file_are_named_by_column_and_data_row(tmp_path):
    """A --groups column with an empty cell gave "groups: expected a group id for every row, found missing values",
    naming neither the column nor the row as every other column error does."""
    import numpy as np
    import pandas as pd

    from pyrozoo import registry

    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(40, 3)), columns=["y", "t", "x1"])
    df["site"] = np.repeat([1.0, 2.0], 20)
    df.loc[[3, 7], "site"] = np.nan
    path = tmp_path / "g.csv"
    df.to_csv(path, index=False)
    with pytest.raises(PyrozooError, match=r"^data .*g\.csv: group column 'site' has 2 missing value\(s\) \(first at "
                                           r"data row 3 \(0-based, \.iloc\[3\]\)\); every row needs a group id"):
        registry.get("plce").from_file(str(path), 0, groups="site")


@pytest.mark.parametrize("options,expected", [
    ({"n_folds": 1}, r"^n_folds: expected an integer >= 2, got 1$"),
    ({"n_knots": 1}, r"^n_knots: expected an integer >= 2, got 1$"),
    ({"interactions": "cubic"}, r"^interactions: expected none, linear or quadratic"),
    ({"random_effects": True}, r"^random_effects: true needs a group id per row; name the group column"),
    ({"se_type": "cluster"}, r"^se_type: 'cluster' needs groups to cluster on; name the group column"),
])
def test_options_are_refused_before_the_data_are_read(tmp_path, options, expected):
    """docs/plce.md says the options are refused before any data are read, but n_folds=1, random_effects=true
    without groups and the like were checked by the estimator, after the file was read: a bad file's error won.
    The entry's option check now runs the estimator's data-free checks first (the file here has a text outcome,
    which would be refused once read)."""
    from pyrozoo.config import RunConfig
    from pyrozoo.runner import run_model

    path = tmp_path / "bad.csv"
    path.write_text("y,t,x1\na,1,2\nb,2,3\nc,3,5\n")
    config = RunConfig(model="plce", inference="svi", data=str(path), options=options)
    with pytest.raises(PyrozooError, match=expected):
        run_model(config, save=False)
    if "n_folds" not in options and "se_type" not in options and "random_effects" not in options:
        return
    # the simulated design supplies its own groups: cluster SEs and random effects are fine there
    sim = RunConfig(model="plce", inference="svi", options={k: v for k, v in options.items() if k != "n_folds"})
    from pyrozoo import registry
    registry.get("plce").check_config(sim)


def test_treatment_model_auto_resolves_by_the_data_source():
    """treatment_model="auto" (the entry default) is heteroskedastic on the scenarios whose treatment is (heterogeneity,
    combined) and homoskedastic on the others and on files/datasets (no scenario); a bad value names "auto" too."""
    from pyrozoo.models.plce import OPTIONS, resolve_treatment_model

    assert OPTIONS["treatment_model"] == "auto"
    assert {sc: resolve_treatment_model("auto", sc) for sc in ("baseline", "heterogeneity", "random_effects",
                                                                "interference", "combined")} == {
        "baseline": "homoskedastic", "heterogeneity": "heteroskedastic", "random_effects": "homoskedastic",
        "interference": "homoskedastic", "combined": "heteroskedastic"}
    assert resolve_treatment_model("auto") == "homoskedastic"
    assert resolve_treatment_model("homoskedastic", "combined") == "homoskedastic"
    with pytest.raises(PyrozooError, match=r"^treatment_model: expected one of auto, homoskedastic, "
                                           r"heteroskedastic; got 'weighted'$"):
        resolve_treatment_model("weighted", "baseline")


def test_a_heterogeneity_scenario_run_estimates_the_simulators_truth(recwarn):
    """`pyrozoo run plce -o scenario=heterogeneity` kept treatment_model="homoskedastic", whose unweighted
    coefficient targets E[s^2 theta] / E[s^2] = 2, while the run reported true_theta = 1 (seed 0: theta 1.738, CI
    1.47-2.00, no warning). The scenario run now uses the benchmark's weighted estimator (the same theta as a direct
    heteroskedastic fit), records it in metrics and its error shrinks from 0.74 to 0.15; no warning is due."""
    from pyrozoo.causal.simulate import simulate_plce
    from pyrozoo.config import RunConfig
    from pyrozoo.models.plce import make_estimator
    from pyrozoo.runner import run_model

    opts = {"scenario": "heterogeneity", "n_repeats": 1}
    metrics = run_model(RunConfig(model="plce", inference="svi", steps=20, num_samples=20, progress=False,
                                  options=opts), save=False).metrics
    assert metrics["treatment_model_heteroskedastic"] is True
    sim = simulate_plce(0, "heterogeneity")
    direct = make_estimator(0, n_repeats=1, treatment_model="heteroskedastic").fit(sim.y, sim.t, sim.X)
    assert metrics["theta"] == pytest.approx(direct.theta_, rel=1e-12)
    assert metrics["true_theta"] == 1.0 and abs(metrics["error_vs_theta"]) < 0.3
    unweighted = make_estimator(0, n_repeats=1, treatment_model="homoskedastic").fit(sim.y, sim.t, sim.X)
    assert unweighted.theta_ - 1.0 > 0.5  # what the run used to report
    assert not [w for w in recwarn if "variance-weighted" in str(w.message)]
    base = run_model(RunConfig(model="plce", inference="svi", steps=20, num_samples=20, progress=False,
                               options={"n": 300, "learner": "ridge", "n_folds": 2, "n_repeats": 1}),
                     save=False).metrics
    assert base["treatment_model_heteroskedastic"] is False


def test_an_explicit_homoskedastic_model_on_a_heteroskedastic_scenario_warns_before_the_cross_fitting(monkeypatch):
    """-o treatment_model=homoskedastic on combined is the user's choice and is kept, but its estimand is the
    variance-weighted effect, not the reported true theta = 1: a warning says so before any nuisance is fitted."""
    from pyrozoo.causal.plce import PLCE
    from pyrozoo.config import RunConfig
    from pyrozoo.runner import run_model

    class Stop(Exception):
        pass

    def fit(self, *args, **kwargs):
        assert self.treatment_model == "homoskedastic"
        raise Stop

    monkeypatch.setattr(PLCE, "fit", fit)
    config = RunConfig(model="plce", inference="svi", progress=False,
                       options={"scenario": "combined", "treatment_model": "homoskedastic"})
    with pytest.warns(UserWarning, match=r"^treatment_model: 'homoskedastic' on scenario 'combined' \(heterogeneous "
                                         r"effect, heteroskedastic treatment\) estimates the variance-weighted "
                                         r"effect .* not the average effect theta = 1 reported as true_theta"), \
            pytest.raises(Stop):
        run_model(config, save=False)


def test_svi_final_stage_stays_at_the_exact_posterior():
    """The SVI guide starts at the closed form, (to O(1/n)) the ELBO's optimum, but the last Adam iterate drifted
    off it by gradient noise: 4 particles and lr 0.05 decaying to 0.005 ended (baseline design, n = 300, ridge
    nuisances, one split, 1000 steps: the CLI's default) up to 0.093 exact posterior sds off in the mean (seed 2) and
    3.4% off in the sd (seed 0). 32 particles and lr 0.15 decaying to 0.3% of it keep it there: over seeds 0-7 the
    learned q(theta) was within 0.021 sd (scatter sd 0.010) and 0.8% (0.4%) of the exact values.

    Exact posterior: theta | sigma conjugate, sigma and its HalfNormal(2) prior by quadrature on a fine grid.
    Tolerances: the 20000 draws add MC sds 1 / sqrt(20000) = 0.007 in the mean and 1 / sqrt(40000) = 0.5% in the sd;
    with the iterate's scatter, combined sds 0.012 and 0.65%: 0.03 sd and 3% are 2.5 and 4.6 of them, below the old
    schedule's 0.093 and 3.4%."""

    import numpy as np
    from sklearn.linear_model import RidgeCV

    from pyrozoo.causal import PLCE, simulate_plce
    from pyrozoo.config import RunConfig
    from pyrozoo.models.plce import fit_final_stage

    d = simulate_plce(1, "baseline", n=300)
    est = PLCE(RidgeCV(), n_repeats=1, n_folds=3, seed=2).fit(d.y, d.t, d.X)
    data = make_final_stage_dataset(est)
    exact_mean, exact_sd, p = _exact_final_stage_posterior(
        data.inputs["t_resid"].numpy(), data.observed["y_resid"].numpy(), data.inputs["weights"].numpy(),
        float(data.inputs["y_scale"]), float(data.inputs["theta_scale"]), np.linspace(0.3, 2.0, 40001))
    assert p[0] < 1e-30 and p[-1] < 1e-30  # the grid holds sigma's posterior
    for seed in range(3):
        cfg = RunConfig(model="plce", inference="svi", steps=1000, num_samples=20000, progress=False,
                        seed=seed).validate()
        draws = fit_final_stage(data, cfg).draws("theta")
        assert abs(draws.mean() - exact_mean) < 0.03 * exact_sd, (seed, draws.mean(), exact_mean, exact_sd)
        assert 0.97 < draws.std() / exact_sd < 1.03, (seed, draws.std(), exact_sd)
