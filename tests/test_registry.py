"""registry: an entry author's slips (a fit or loader returning the wrong type, a reserved dataset name, a loader
keyword the options never give, a config naming another model) are one-line errors naming the entry and the fix."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

from pyrozoo import registry
from pyrozoo.config import RunConfig
from pyrozoo.errors import PyrozooError
from pyrozoo.models.normal_gamma import fit_normal_gamma
from pyrozoo.registry import checked_config


def _entry(**fields):
    base = registry.get("normal-gamma")
    return type(base)(**{**base.__dict__, **fields})


def _config(**kw):
    return RunConfig(model="normal-gamma", inference="gibbs", num_samples=5, warmup_steps=5, num_chains=1,
                     progress=False, **kw)


def dict_fit(dataset, config):
    return {"mu": [1.0]}


def none_fit(dataset, config):
    return None


def idata_fit(dataset, config):
    return az.from_dict(posterior={"mu": [[1.0, 2.0]]})


@pytest.mark.parametrize("fit, returned", [(dict_fit, "a dict"), (none_fit, "None"),
                                           (idata_fit, "an arviz.data.inference_data.InferenceData")])
def test_a_fit_returning_something_else_than_a_result_names_the_entry_and_the_function(fit, returned):
    entry = _entry(fit=fit)
    data = entry.load_data(entry.check_config(_config()))
    with pytest.raises(PyrozooError, match=rf"^normal-gamma: fit tests\.test_registry\.{fit.__name__} returned "
                                           rf"{returned}; expected a pyrozoo Result") as info:
        entry.fit(data, _config())
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("where, what", [("simulate", "the simulator"), ("from_file", "from_file"),
                                         ("datasets", "the loader of 'boston-medv'")])
def test_a_loader_returning_something_else_than_a_dataset_names_the_entry_and_the_function(where, what, tmp_path):
    def loader(*args, **options):
        return {"y": [1.0, 2.0]}

    fields = {where: {"boston-medv": loader} if where == "datasets" else loader}
    entry = _entry(**fields)
    path = tmp_path / "y.csv"
    path.write_text("y\n1.0\n2.0\n")
    source = {"simulate": {}, "from_file": {"data": str(path)}, "datasets": {"dataset": "boston-medv"}}[where]
    with pytest.raises(PyrozooError, match=rf"^normal-gamma: {what} \(tests\.test_registry\..*loader\) returned a "
                                           rf"dict; expected a pyrozoo Dataset"):
        entry.load_data(entry.check_config(_config(**source)))


@pytest.mark.parametrize("name", ["simulator", "file"])
def test_a_shipped_dataset_under_a_reserved_source_name_is_refused(name):
    with pytest.raises(PyrozooError, match=rf"datasets of normal-gamma: '{name}' is a reserved data-source name "
                                           r"\('simulator' and 'file' name the simulator and --data files in "
                                           r"data_options\); give the dataset another name"):
        _entry(datasets={name: registry.get("normal-gamma").simulate})


def test_a_loader_keyword_the_options_never_give_is_named_as_undeclared():
    """It does accept **options: the message used to say it must."""
    base = registry.get("normal-gamma")

    def simulate(seed, *, scale, **options):
        return base.simulate(seed, **options)

    entry = _entry(simulate=simulate)
    with pytest.raises(PyrozooError, match=r"^normal-gamma: the simulator requires keyword 'scale', not declared in "
                                           r"the entry's options for its data source \(given: .*mu_true.*\); "
                                           r"declare it in options \(with its default\) or give it a default in "
                                           r"tests\.test_registry\..*simulate$") as info:
        entry.load_data(entry.check_config(_config()))
    assert "**options" not in str(info.value)


def test_a_config_naming_another_model_is_refused_by_the_fit():
    data = registry.get("normal-gamma").simulate(0, n=10)
    config = RunConfig(model="blr", inference="gibbs", num_samples=5, warmup_steps=5, num_chains=1, progress=False)
    with pytest.raises(PyrozooError, match=r"^model: pyrozoo\.models\.normal_gamma\.fit_normal_gamma checks its "
                                           r"config against entry 'normal-gamma' \(checked_config\('normal-gamma', "
                                           r"config\)\), but the config names model 'blr'"):
        registry.get("normal-gamma").fit(data, config)


def test_a_copied_fit_that_kept_the_originals_checked_config_names_both(monkeypatch):
    """The worked example copied as the doc says, with @register renamed but not checked_config: the copy's options
    were refused as unknown for normal-gamma."""
    registry.names()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    def copied_fit(dataset, config):
        config = checked_config("normal-gamma", config)
        return fit_normal_gamma(dataset, config)

    copy = _entry(name="my-copy", fit=copied_fit, options={**registry.get("normal-gamma").options, "extra": 1})
    registry.register("my-copy")(lambda: copy)
    config = RunConfig(model="my-copy", inference="gibbs", num_samples=5, options={"extra": 2})
    with pytest.raises(PyrozooError, match=r"config names model 'my-copy'; .*rename the checked_config call to the "
                                           r"copy's own name"):
        copy.fit(copy.simulate(0, n=10), config)


def test_a_variant_registered_over_a_shared_fit_is_checked_against_its_own_entry(monkeypatch):
    registry.names()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    base = registry.get("normal-gamma")
    variant = _entry(name="normal-gamma-svi", inferences=("svi",), settings={"svi": registry.SVI_SETTINGS})
    registry.register("normal-gamma-svi")(lambda: variant)
    config = RunConfig(model="normal-gamma-svi", steps=5, num_samples=5, progress=False)
    assert checked_config("normal-gamma", config).inference == "svi"  # the variant's default, not gibbs
    result = base.fit(base.simulate(0, n=10), RunConfig(model="normal-gamma-svi", steps=5, num_samples=5,
                                                          progress=False))
    assert result.inference.startswith("svi")


def test_a_config_naming_another_model_is_refused_naming_the_calling_function(monkeypatch):
    """The message named the entry's fit (pyrozoo.models.normal_gamma.fit_normal_gamma), not the user's copy that
    called checked_config with the original's name: the code to edit."""
    data = registry.get("normal-gamma").simulate(0, n=10)

    def my_fit_normal_gamma(dataset, config):
        return checked_config("normal-gamma", config)

    config = RunConfig(model="blr", inference="gibbs", num_samples=5, warmup_steps=5, num_chains=1, progress=False)
    with pytest.raises(PyrozooError, match=r"^model: tests\.test_registry\.(\S+\.)?my_fit_normal_gamma checks its "
                                           r"config against entry 'normal-gamma'") as info:
        my_fit_normal_gamma(data, config)
    assert "pyrozoo.models.normal_gamma" not in str(info.value)


@pytest.mark.parametrize("progress", [True, False])
def test_a_loader_that_names_progress_gets_the_runs_flag_and_others_do_not(progress):
    """effect-curve fits its estimator while loading: the run's --progress/--no-progress must reach it; a loader
    with only **options is not handed a keyword it never asked for."""
    import dataclasses

    base = registry.get("normal-gamma")
    seen = {}

    def named(seed, *, progress=None, **options):
        seen["named"] = progress
        return base.simulate(seed, **options)

    def other(seed, **options):
        seen["other"] = "progress" in options
        return base.simulate(seed, **options)

    for loader in (named, other):
        entry = _entry(simulate=loader)
        entry.load_data(dataclasses.replace(entry.check_config(_config()), progress=progress))
    assert seen == {"named": progress, "other": False}


def test_log_likelihood_size_must_be_a_function_giving_a_count():
    """The entry's log_likelihood_size (pointwise values per draw, regime-scm's n rows) is checked as a function
    when the entry is built, and what it returns when the run's size is estimated."""
    import torch

    from pyrozoo.data.dataset import Dataset
    from pyrozoo.registry import ZooModel

    def fields(**kw):
        return dict(name="m", model=lambda: None, simulate=lambda seed: None, fit=lambda d, c: None,
                    inferences=("svi",), **kw)

    with pytest.raises(PyrozooError, match=r"^log_likelihood_size of m: expected a function of the dataset"):
        ZooModel(**fields(log_likelihood_size=5))
    data = Dataset("d", observed={"x": torch.zeros(7, 3)})
    assert ZooModel(**fields()).pointwise_sizes(data) == (21, 21)
    assert ZooModel(**fields(log_likelihood_size=lambda d: d.observed["x"].shape[0])).pointwise_sizes(data) == (7, 21)
    with pytest.raises(PyrozooError, match=r"^log_likelihood_size of m: expected an integer >= 0 .*got 7.0"):
        ZooModel(**fields(log_likelihood_size=lambda d: 7.0)).pointwise_sizes(data)


@pytest.mark.parametrize("returned, message", [
    ([("rmse", 0.5)], r"returned a list; expected a dict of metric name -> number$"),
    (None, r"returned None; expected a dict of metric name -> number$"),
    ({1: 0.5}, r"returned the key 1 \(an int\); expected metric names that are strings$"),
    ({"z": 1 + 2j}, r"returned a complex \(\(1\+2j\)\) for 'z'; expected a number"),
    ({"z": b"abc"}, r"returned a bytes \(b'abc'\) for 'z'; expected a number"),
])
def test_metrics_returning_something_else_than_numbers_names_the_entry_and_the_function(returned, message):
    """compute_metrics checks what an entry's metrics function returned, as the fit's and the loaders' returns are
    checked; the shipped entries' values (numbers, lists of column names) pass (tests/test_runner.py)."""
    def metrics(result, dataset):
        return returned

    entry = _entry(metrics=metrics)
    with pytest.raises(PyrozooError, match=rf"^normal-gamma: metrics tests\.test_registry\..*metrics {message}"):
        entry.compute_metrics(None, None)
    assert _entry(metrics=None).compute_metrics(None, None) == {}


def test_a_numpy_metric_of_any_width_is_a_plain_python_number():
    """metric_number returned value.item(), which for a np.longdouble is still a longdouble: the metrics check let
    it through and json failed on it in save_run, after the fit. Each NumPy kind now becomes bool, int or float."""
    import json

    from pyrozoo.registry import metric_number

    for value, kind in ((np.longdouble(1.5), float), (np.float16(0.5), float), (np.uint64(3), int),
                        (np.array(np.longdouble(2.0)), float), (np.bool_(False), bool)):
        got = metric_number(value)
        assert type(got) is kind and got == value
        json.dumps(got)


def test_a_metric_named_like_run_models_convergence_block_is_refused():
    """run_model writes a saved Markov-chain run's convergence figures into metrics.json under 'convergence',
    which silently replaced an entry's metric of that name. Such a metric is refused, naming it."""
    from pyrozoo.evaluation.diagnostics import CONVERGENCE_KEY

    entry = _entry(metrics=lambda result, dataset: {CONVERGENCE_KEY: 1.0})
    with pytest.raises(PyrozooError, match=r"returned the metric 'convergence', a name metrics\.json keeps for the "
                                           r"sampler's convergence figures .*; rename it$"):
        entry.compute_metrics(None, None)


@pytest.mark.parametrize("key", ["inference", "inference_requested", "seed", "pyrozoo_version"])
def test_a_metric_named_like_save_runs_bookkeeping_is_refused(key):
    """save_run put an entry's metrics after its own keys, so a metric 'inference' or 'seed' silently replaced the
    run's engine label or seed in metrics.json (QA: inference 1.0, seed 99). Every key save_run writes itself is
    refused like 'convergence' (wall_time excepted: spike-slab and regime-scm report the same value as a metric)."""
    entry = _entry(metrics=lambda result, dataset: {"ok": 1.0, key: 1.0})
    with pytest.raises(PyrozooError, match=rf"returned the metric '{key}', a name metrics\.json keeps for .*; "
                                           rf"rename it$"):
        entry.compute_metrics(None, None)


def test_a_wall_time_metric_other_than_the_runs_is_refused_by_compute_metrics():
    # save_run refused it only when saving, after the fit and the metrics; restating the run's own value is kept
    from types import SimpleNamespace

    result = SimpleNamespace(wall_time=0.25)
    entry = _entry(metrics=lambda result, dataset: {"wall_time": result.wall_time + 0.1})
    with pytest.raises(PyrozooError, match=r"returned the metric 'wall_time' = 0\.35, but metrics\.json keeps the "
                                           r"run's own wall_time there \(0\.25\); give the metric another name"):
        entry.compute_metrics(result, None)
    assert _entry(metrics=lambda result, dataset: {"wall_time": result.wall_time}).compute_metrics(result, None) == {
        "wall_time": 0.25}


def test_canonical_options_name_known_options_and_spell_values_once():
    """An entry's canonical_options map an option's spellings to one value (sweep resume compares through it);
    a slip in the table (an unknown option, a value that is not a function) is refused when the entry is built,
    and a value the function refuses is kept for the model's own checks to name."""
    from pyrozoo.causal.basis import interaction_kind

    with pytest.raises(PyrozooError, match=r"canonical_options of normal-gamma: unknown option\(s\) 'mu1'"):
        _entry(canonical_options={"mu1": float})
    with pytest.raises(PyrozooError, match=r"canonical_options of normal-gamma: expected a dict of option -> "):
        _entry(canonical_options={"mu0": 0.0})
    entry = registry.get("effect-curve")
    assert entry.canonical({"interactions": True, "n": 80}) == {"interactions": "linear", "n": 80}
    assert entry.canonical({"interactions": "cubic"}) == {"interactions": "cubic"}
    assert registry.get("plce").canonical({"interactions": False}) == {"interactions": "none"}
    assert entry.canonical_options["interactions"] is interaction_kind


@pytest.mark.parametrize("key", ["pyro_version", "torch_version", "numpy_version", "python_version"])
def test_a_metric_named_like_a_recorded_version_is_refused(key):
    """save_run now records these versions in metrics.json; an entry's metric of such a name is refused before the
    run is saved, as the other bookkeeping names are."""
    entry = _entry(metrics=lambda result, dataset: {"ok": 1.0, key: 1.0})
    with pytest.raises(PyrozooError, match=rf"returned the metric '{key}', a name metrics\.json keeps for the "
                                           rf".* version the run was made with; rename it$"):
        entry.compute_metrics(None, None)
