"""label_observations: the original row labels on the obs_id axis of every InferenceData group that has it."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from pyrozoo import registry
from pyrozoo.data.dataset import Dataset
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.result import Result, label_observations, observation_count
from pyrozoo.registry import LabelledFit


def _result(n=5):
    rng = np.random.default_rng(0)
    return Result(inference="x", posterior={"w": rng.normal(size=(1, 4, 2)), "f": rng.normal(size=(1, 4, n))},
                  log_likelihood={"y": rng.normal(size=(1, 4, n))}, observed_data={"y": rng.normal(size=n)},
                  constant_data={"X": rng.normal(size=(n, 2))},
                  dims={"y": ["obs_id"], "f": ["obs_id"], "X": ["obs_id", "feature"], "w": ["feature"]})


def test_every_group_with_obs_id_carries_the_row_labels():
    rows = [17, 3, 42, 8, 0]
    idata = label_observations(_result(), rows).to_inference_data()
    for group, var in (("log_likelihood", "y"), ("observed_data", "y"), ("posterior", "f"), ("constant_data", "X")):
        assert idata[group][var]["obs_id"].values.tolist() == rows, group
    assert idata.posterior["w"].dims == ("chain", "draw", "feature")


def test_without_rows_obs_id_stays_the_positions():
    assert _result().to_inference_data().log_likelihood["obs_id"].values.tolist() == list(range(5))


@pytest.mark.parametrize("rows, match", [
    ([1, 2, 3], r"rows: expected 5 row labels \(one per observation along obs_id\), got 3"),
    ([1, 2, 2, 3, 4], r"rows: expected distinct row labels for the 5 observations along obs_id, got repeats"),
])
def test_bad_row_labels_are_refused(rows, match):
    with pytest.raises(PyrozooError, match=match):
        label_observations(_result(), rows)


def test_a_result_without_an_observation_axis_is_left_alone():
    result = Result(inference="x", posterior={"w": np.zeros((1, 3, 2))})
    assert observation_count(result) is None and label_observations(result, [1, 2]).coords == {}


def test_every_entry_s_fit_labels_the_rows_and_pickles():
    for name in registry.names():
        entry = registry.get(name)
        assert isinstance(entry.fit, LabelledFit) and entry.fit.__name__ == entry.fit.fit.__name__
    fit = pickle.loads(pickle.dumps(registry.get("bnn").fit))
    assert isinstance(fit, LabelledFit)


def test_labelled_fit_uses_the_dataset_s_rows():
    fit = LabelledFit(lambda dataset, config: _result())
    assert fit(Dataset("d", meta={"rows": list("abcde")}), None).coords["obs_id"] == list("abcde")
    assert "obs_id" not in fit(Dataset("d"), None).coords


@pytest.mark.parametrize("index, labels", [
    (pd.MultiIndex.from_product([range(2), range(3)]), ["(0, 0)", "(0, 1)", "(0, 2)", "(1, 0)", "(1, 1)", "(1, 2)"]),
    (pd.date_range("2024-01-01", periods=6, tz="UTC"), [str(d) for d in pd.date_range("2024-01-01", periods=6,
                                                                                      tz="UTC")]),
    (pd.period_range("2024-01", periods=6, freq="M"), [f"2024-0{m}" for m in range(1, 7)]),
    (pd.Index([3, 1, 4, 0, 5, 9]), [3, 1, 4, 0, 5, 9]),
    (pd.Index(list("abcdef")), list("abcdef")),
])
def test_a_dataframe_index_of_any_kind_labels_obs_id_in_a_form_netcdf_holds(tmp_path, index, labels):
    """Integer and text labels are kept; a MultiIndex, tz-aware dates or periods become text, so that the fit's
    InferenceData saves (the MultiIndex's tuples used to be flattened into twice as many labels)."""
    from pyrozoo.validation import row_labels

    X = pd.DataFrame(np.zeros((6, 2)), index=index)
    assert row_labels(X) == labels
    result = label_observations(_result(6), row_labels(X))
    result.to_inference_data().to_netcdf(tmp_path / "idata.nc")
    assert list(result.to_inference_data().log_likelihood["obs_id"].values) == labels


def test_rows_with_no_obs_id_axis_are_an_error_naming_the_plate_to_rename():
    """A model whose observation plate is pyro.plate("data", n) (as in Pyro's tutorials) had its meta["rows"]
    dropped silently, so az.loo's pareto_k named positions, not the user's rows."""
    rng = np.random.default_rng(0)
    result = Result(inference="x", posterior={"w": rng.normal(size=(1, 4))},
                    log_likelihood={"y": rng.normal(size=(1, 4, 5))}, observed_data={"y": rng.normal(size=5)},
                    dims={"y": ["data"]})
    fit = LabelledFit(lambda dataset, config: result, "my-model")
    assert "obs_id" not in fit(Dataset("d"), None).coords  # no rows: nothing to label, nothing to refuse
    with pytest.raises(PyrozooError, match=r"^my-model: fit tests\.inference\.test_result\..*<lambda>: the dataset's "
                                           r"meta\['rows'\] \(5 row labels\) need an 'obs_id' axis to label, and the "
                                           r"result has none \(observed sites and their axes: y \(data\)\); name the "
                                           r"model's observation plate obs_id \(pyro\.plate\(\"obs_id\", n\)\)$"):
        fit(Dataset("d", meta={"rows": list("abcde")}), None)


def test_labelled_fit_labels_each_axis_of_a_rows_mapping():
    """agnostic observes y along target_id and p along protected_id: meta["rows"] as {axis: labels} labels both
    (only obs_id could be labelled, so its az.loo named positions among the labelled rows); an axis the result
    lacks is named."""
    rng = np.random.default_rng(0)
    result = Result(inference="x", posterior={"w": rng.normal(size=(1, 4))},
                    log_likelihood={"y": rng.normal(size=(1, 4, 3)), "p": rng.normal(size=(1, 4, 2))},
                    observed_data={"y": rng.normal(size=3), "p": rng.normal(size=2)},
                    dims={"y": ["target_id"], "p": ["protected_id"]})
    fit = LabelledFit(lambda dataset, config: result, "my-model")
    labelled = fit(Dataset("d", meta={"rows": {"target_id": [4, 7, 9], "protected_id": [7, 11]}}), None)
    idata = labelled.to_inference_data()
    assert idata.log_likelihood["y"].target_id.values.tolist() == [4, 7, 9]
    assert idata.observed_data["p"].protected_id.values.tolist() == [7, 11]
    with pytest.raises(PyrozooError, match=r"meta\['rows'\]\['obs_id'\] \(3 row labels\) need an 'obs_id' axis"):
        fit(Dataset("d", meta={"rows": {"obs_id": [1, 2, 3]}}), None)


def test_every_group_records_the_inference_library_and_versions_through_netcdf(tmp_path):
    """As az.from_pyro does: inference_library "pyro" and its version on every group (constant_data and fit_stats
    too), with pyrozoo_version; also on the InferenceData itself, next to inference, model and seed, and all of
    it kept by idata.nc. The attrs set before (inference, model, seed, wall_time, notes) are unchanged."""
    import arviz as az
    import pyro

    import pyrozoo

    res = _result()
    res.sample_stats = {"lp": np.zeros((1, 4))}
    res.fit_stats = {"loss": np.arange(3.0)}
    res.attrs = {"note": "text"}
    res.seed = 3
    idata = res.to_inference_data()
    want = {"inference_library": "pyro", "inference_library_version": pyro.__version__,
            "pyrozoo_version": pyrozoo.__version__}
    path = tmp_path / "idata.nc"
    idata.to_netcdf(str(path), engine="h5netcdf")
    for data in (idata, az.from_netcdf(str(path), engine="h5netcdf")):
        assert set(data.groups()) == {"posterior", "sample_stats", "log_likelihood", "observed_data",
                                      "constant_data", "fit_stats"}
        for group in data.groups():
            attrs = data[group].attrs
            assert {k: attrs.get(k) for k in want} == want, group
        assert {k: data.attrs.get(k) for k in want} == want
        assert {k: data.attrs[k] for k in ("inference", "model", "seed", "note")} == {
            "inference": "x", "model": "", "seed": 3, "note": "text"}
        assert "created_at" in data.posterior.attrs and "arviz_version" in data.posterior.attrs


def test_response_in_data_units_subtracts_log_scale_and_records_the_map():
    """log p(y) = log p(y_std) - log s per draw and point (change of variables), keeping the dtype; the attrs hold
    (m, s); a second application, a bad scale or shift, or a log-likelihood of another site are refused."""
    from pyrozoo.inference.result import response_in_data_units

    res = _result()
    res.log_likelihood["y"] = res.log_likelihood["y"].astype(np.float32)
    before = res.log_likelihood["y"].copy()
    response_in_data_units(res, 100.0, 30.0)
    np.testing.assert_allclose(res.log_likelihood["y"], before - np.log(30.0), rtol=1e-6)
    assert res.log_likelihood["y"].dtype == np.float32
    assert res.to_inference_data().attrs["response_shift"] == 100.0
    assert res.to_inference_data().attrs["response_scale"] == 30.0
    with pytest.raises(PyrozooError, match=r"^result: its attrs already record response_shift=100.0"):
        response_in_data_units(res, 100.0, 30.0)
    for shift, scale, match in ((0.0, 0.0, r"^response_scale: expected a finite number > 0, got 0.0$"),
                                (0.0, -2.0, r"^response_scale: expected a finite number > 0, got -2.0$"),
                                (float("nan"), 1.0, r"^response_shift: expected a finite number, got nan$"),
                                ("a", 1.0, r"^response_shift: expected a finite number, got 'a'$")):
        fresh = _result()
        with pytest.raises(PyrozooError, match=match):
            response_in_data_units(fresh, shift, scale)
        assert fresh.attrs == {} and np.array_equal(fresh.log_likelihood["y"], _result().log_likelihood["y"])
    with pytest.raises(PyrozooError, match=r"^site: the result has no log-likelihood of the standardized response "
                                           r"'z' \(it has 'y'\)"):
        response_in_data_units(_result(), 0.0, 2.0, site="z")


def test_a_zoo_fit_applies_the_response_map_of_the_dataset_meta_and_refuses_half_of_one():
    """LabelledFit, the one place every entry's fit passes: meta response_shift/response_scale put the
    log-likelihood into y's units; only one of the two is a PyrozooError before the fit runs."""
    calls = []

    def fit(dataset, config):
        calls.append(1)
        return _result()

    wrapped = LabelledFit(fit, "demo")
    res = wrapped(Dataset("d", meta={"response_shift": 1.0, "response_scale": np.e}), None)
    np.testing.assert_allclose(res.log_likelihood["y"], _result().log_likelihood["y"] - 1.0)
    assert (res.attrs["response_shift"], res.attrs["response_scale"]) == (1.0, np.e)
    calls.clear()
    with pytest.raises(PyrozooError, match=r"^demo: the dataset's meta has 'response_scale' but not "
                                           r"'response_shift'; expected both"):
        wrapped(Dataset("d", meta={"response_scale": 2.0}), None)
    with pytest.raises(PyrozooError, match=r"^demo: the dataset.s meta: response_scale: expected a finite number > 0, "
                                           r"got 0"):
        wrapped(Dataset("d", meta={"response_shift": 0.0, "response_scale": 0}), None)
    assert calls == []  # refused before the fit


def test_posterior_predictive_is_seeded_by_the_result_as_in_the_saved_run(tmp_path):
    """``to_inference_data(posterior_predictive=True)`` draws from the run's seed, not the caller's RNG: two calls
    after different ``torch.manual_seed`` agree, and agree with the ``idata.nc`` that ``run_model(save=True)``
    (``pyrozoo run --posterior-predictive``) writes; the caller's RNG state is as it was before the call."""
    import arviz as az
    import torch

    from pyrozoo.config import RunConfig
    from pyrozoo.runner import run_model

    cfg = RunConfig(model="normal-gamma", inference="gibbs", num_chains=2, num_samples=20, warmup_steps=10, seed=3,
                    device="cpu", progress=False, posterior_predictive=True)
    groups = []
    for caller_seed in (0, 1):
        result = run_model(cfg, save=False).result
        torch.manual_seed(caller_seed)
        before = torch.get_rng_state()
        groups.append(result.to_inference_data(posterior_predictive=True).posterior_predictive)
        assert torch.equal(torch.get_rng_state(), before)
    saved = az.from_netcdf(str(run_model(cfg, out=tmp_path / "run").out / "idata.nc"), engine="h5netcdf")
    for other in (groups[1], saved.posterior_predictive):
        assert set(other.data_vars) == set(groups[0].data_vars) == {"x"}
        np.testing.assert_array_equal(other["x"].values, groups[0]["x"].values)


def test_draws_sd_is_az_summary_s_ddof_1_and_nan_for_one_draw():
    """The metrics' posterior sds (normal-gamma, plce, effect-curve) used ddof 0 while az.summary uses ddof 1."""
    import warnings

    import arviz as az

    from pyrozoo.inference.result import draws_sd

    x = np.random.default_rng(0).normal(size=(3, 4, 2))
    table = az.summary(az.from_dict(posterior={"v": x}), kind="stats", round_to="none")
    np.testing.assert_allclose(draws_sd(x.reshape(12, 2), axis=0), table["sd"].to_numpy(), rtol=1e-12)
    assert draws_sd([1.0, 2.0, 4.0]) == pytest.approx(np.sqrt(7 / 3), rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(draws_sd([1.5])) and np.isnan(draws_sd(np.ones((1, 3)), axis=0)).all()
        assert draws_sd(np.ones((1, 3)), axis=0).shape == (3,)


@pytest.mark.parametrize("draws", [1, 3])
def test_to_inference_data_with_fewer_draws_than_chains_has_no_arviz_shape_warning(draws):
    """ArviZ warned "More chains (4) than draws (1). Passed array should have shape (chains, draws, *shape)" (twice
    per `pyrozoo run --num-samples 1`), though a Result's arrays are (chain, draw, ...) by construction."""
    import warnings

    rng = np.random.default_rng(0)
    result = Result(inference="x", posterior={"w": rng.normal(size=(4, draws, 2))},
                    sample_stats={"lp": rng.normal(size=(4, draws))},
                    log_likelihood={"y": rng.normal(size=(4, draws, 5))}, observed_data={"y": rng.normal(size=5)},
                    dims={"y": ["obs_id"]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        idata = result.to_inference_data()
    assert not [str(w.message) for w in caught if "More chains" in str(w.message)]
    assert idata.posterior["w"].shape == (4, draws, 2) and idata.log_likelihood["y"].shape == (4, draws, 5)


def test_the_inference_data_records_the_requested_inference_as_the_saved_run_does(tmp_path):
    """A saved run's idata.nc held ``inference_requested`` (config.toml's name: svi beside the engine label
    svi-meanfield) and the InferenceData built in Python did not: save_run added it only when writing. Now
    to_inference_data adds it from ``config``, and the saved file's attributes equal the in-memory ones."""
    from pyrozoo.config import RunConfig
    from pyrozoo.inference.rundir import load_run
    from pyrozoo.runner import run_model

    result = _result()
    assert "inference_requested" not in result.to_inference_data().attrs  # no config: nothing to record
    result.config = {"model": "m", "inference": "svi", "seed": 0}
    result.inference = "svi-meanfield"
    attrs = result.to_inference_data().attrs
    assert (attrs["inference"], attrs["inference_requested"]) == ("svi-meanfield", "svi")
    out = run_model(RunConfig(model="normal-gamma", inference="gibbs", num_chains=2, num_samples=50,
                              warmup_steps=20, seed=0, progress=False, device="cpu", options={"n": 30}),
                    out=tmp_path / "run")
    memory = out.result.to_inference_data().attrs
    saved = load_run(out.out)["idata"].attrs
    assert memory["inference_requested"] == "gibbs"
    assert {k: v for k, v in memory.items() if k != "created_at"} == {k: v for k, v in saved.items()
                                                                      if k != "created_at"}


@pytest.mark.parametrize("scale", [1e-300, 1e-160, 1.0, 1e160, 1e300])
def test_draws_sd_neither_underflows_nor_overflows_at_extreme_scales(scale):
    # beta's draws for data of scale 1e150 are ~1e-300: their squares underflowed and the recorded sd was 0.0
    import warnings

    from pyrozoo.inference.result import draws_sd

    unit = 1.0 + 0.1 * np.random.default_rng(0).standard_normal((400, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow/underflow warnings either
        total, per_column = draws_sd(scale * unit), draws_sd(scale * unit, axis=0)
    assert total / scale == pytest.approx(unit.std(ddof=1), rel=1e-12)
    np.testing.assert_allclose(per_column / scale, unit.std(axis=0, ddof=1), rtol=1e-12)
    assert per_column.shape == (3,) and np.ndim(total) == 0
    assert draws_sd(np.zeros(4)) == 0.0


def test_draws_sd_of_draws_at_the_top_of_float_range():
    # at |x| >= 2^1023 the power of two above them is inf: the sd was NaN (0 * inf) with overflow warnings
    import warnings

    from pyrozoo.inference.result import draws_sd

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert draws_sd(np.array([1e308, 0.9e308])) == pytest.approx(np.sqrt(0.5) * 1e307, rel=1e-12)
        assert draws_sd(np.array([[1.7e308, 1.6e308], [1.0, 3.0]]), axis=1)[1] == pytest.approx(np.sqrt(2), rel=1e-12)


def test_idata_records_the_torch_numpy_and_python_versions_on_every_group(tmp_path):
    """QA: a run recorded pyro's and pyrozoo's versions but not torch's, numpy's or Python's, though bitwise
    reruns and exact resume hold for one torch build only. The InferenceData and every group now hold
    torch_version, numpy_version and python_version, and idata.nc keeps them."""
    import platform

    import arviz as az
    import torch

    res = _result()
    res.fit_stats = {"loss": np.arange(3.0)}
    want = {"torch_version": str(torch.__version__), "numpy_version": np.__version__,
            "python_version": platform.python_version()}
    path = tmp_path / "idata.nc"
    res.to_inference_data().to_netcdf(str(path), engine="h5netcdf")
    for data in (res.to_inference_data(), az.from_netcdf(str(path), engine="h5netcdf")):
        assert {k: data.attrs.get(k) for k in want} == want
        for group in data.groups():
            assert {k: data[group].attrs.get(k) for k in want} == want, group
