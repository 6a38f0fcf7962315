"""The run path behind `pyrozoo run`: seeding before the data are simulated."""

from __future__ import annotations

import dataclasses
import re
import sys

import numpy as np
import pytest
import torch

from pyrozoo import registry
from pyrozoo.config import RunConfig
from pyrozoo.errors import PyrozooError
from pyrozoo.runner import run_model


def test_a_simulator_on_the_global_rng_is_reproducible(monkeypatch):
    """A user's simulator that draws from torch's global RNG (no seeded generator) gives the same data for the same
    seed, whatever the global state was before the run, and other data for another seed."""
    base = registry.get("normal-gamma")

    def simulate(seed, **opts):
        ds = base.simulate(seed, **opts)
        ds.observed["x"] = torch.randn_like(ds.observed["x"])  # the global RNG, on purpose
        return ds

    monkeypatch.setitem(registry._REGISTRY, "global-rng", lambda: dataclasses.replace(base, simulate=simulate))
    data = []
    for state, seed in ((0, 3), (99, 3), (0, 4)):
        torch.manual_seed(state)
        out = run_model(RunConfig(model="global-rng", inference="gibbs", num_samples=5, num_chains=1, seed=seed,
                                  progress=False), save=False)
        data.append(np.asarray(out.result.observed_data["x"]))
    assert np.array_equal(data[0], data[1]) and not np.array_equal(data[0], data[2])


def test_options_a_data_source_would_ignore_are_an_error_before_any_work(tmp_path):
    """A simulator size with a shipped dataset, or a data-file column with the simulator, would be silently ignored:
    each is an error that names the option and the data source, and nothing is written."""
    cases = [
        (RunConfig(model="blr", dataset="boston", options={"n": 30}), "n applies only to the simulated data"),
        (RunConfig(model="normal-gamma", options={"column": "x"}), "column applies only to a data file (--data)"),
        (RunConfig(model="agnostic", dataset="cps1985", options={"train_corr": 0.9}),
         "train_corr applies only to the simulated data or dataset 'digits'"),
    ]
    for config, message in cases:
        with pytest.raises(PyrozooError, match=re.escape(message)):
            run_model(config, out=tmp_path / "run")
        assert not (tmp_path / "run").exists()
    # the same options where they apply pass the check
    registry.get("agnostic").check_config(RunConfig(model="agnostic", dataset="digits", options={"train_corr": 0.9}))
    registry.get("plce").check_config(RunConfig(model="plce", dataset="lalonde", options={"outcome": "re78"}))


def test_every_data_option_names_a_known_option_and_source():
    for name in registry.names():
        entry = registry.get(name)
        sources = {"simulator", *entry.datasets, *(("file",) if entry.from_file is not None else ())}
        for key, readers in entry.data_options.items():
            assert key in entry.options, (name, key)
            assert readers and set(readers) <= sources, (name, key, readers)


def test_a_second_entry_under_a_taken_name_names_both_modules(monkeypatch):
    registry.names()  # loads every entry
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    def blr_copy():  # a copied module that kept the original's name
        raise AssertionError("never built")

    with pytest.raises(registry.NameClash, match=r"model name 'blr' is registered twice: by pyrozoo\.models\.blr "
                                                 r"\(.*blr\.py, line \d+\) and by (tests\.)?test_runner \(.*test_runner"
                                                 r"\.py, line \d+\); give one of them its own name in @register"):
        registry.register("blr")(blr_copy)


def test_a_copied_module_that_kept_the_name_names_both_modules_not_the_one_imported_second(monkeypatch, tmp_path,
                                                                                          capsys):
    """A copy of a zoo module that sorts first used to make the original's import fail ("model module ... failed to
    import ... fix it, or move it out"), blaming the zoo's own module; the error now names both files."""
    import pyrozoo.models as models
    from pyrozoo.cli import main

    source = "from pyrozoo.registry import register\n\n\n@register('twin')\ndef {0}_entry():\n    pass\n"
    for stem in ("a_copy", "z_original"):  # the copy is imported first
        (tmp_path / f"{stem}.py").write_text(source.format(stem))
    monkeypatch.setattr(models, "__path__", [*models.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "_REGISTRY", {})
    for _ in range(2):  # a second command in the same process: the same error
        monkeypatch.setattr(registry, "_LOADED", False)
        for stem in ("a_copy", "z_original"):
            monkeypatch.delitem(sys.modules, f"pyrozoo.models.{stem}", raising=False)
        assert main(["list"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "failed to import" not in err, err
        assert err.endswith(f"model name 'twin' is registered twice: by pyrozoo.models.a_copy "
                            f"({tmp_path / 'a_copy.py'}, line 4) and by pyrozoo.models.z_original "
                            f"({tmp_path / 'z_original.py'}, line 4); give one of them its own name in "
                            f"@register(...)"), err


def test_an_unparsable_csv_is_a_one_line_error(tmp_path):
    from pyrozoo.data.shipped import read_table

    path = tmp_path / "bad.csv"
    path.write_text("x\n1\n2\n3,4\n")
    with pytest.raises(PyrozooError) as info:
        read_table(str(path))
    assert "\n" not in str(info.value) and "could not read" in str(info.value)


def test_a_broken_model_module_is_a_one_line_error_naming_the_file(monkeypatch, tmp_path, capsys):
    import pyrozoo.models as models
    from pyrozoo.cli import main

    # it registers an entry, then fails inside pandas: the line named is the module's own, and a second command in
    # the same process gives the same error (not "registered twice" for the re-imported module)
    (tmp_path / "broken_copy.py").write_text(
        "import pandas as pd\nfrom pyrozoo.registry import register\n\n\n@register('broken-copy')\n"
        "def entry():\n    pass\n\n\npd.DataFrame({'a': [1]})['b']\n")
    monkeypatch.setattr(models, "__path__", [*models.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "_REGISTRY", {})
    for _ in range(2):
        monkeypatch.setattr(registry, "_LOADED", False)
        monkeypatch.delitem(sys.modules, "pyrozoo.models.broken_copy", raising=False)
        assert main(["run", "normal-gamma"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "pyrozoo.models.broken_copy failed to import (KeyError" in err, err
        assert f"{tmp_path / 'broken_copy.py'}, line 10" in err, err


def test_a_family_fit_called_directly_gets_run_models_checks():
    """fit_gp(ds, RunConfig(model="gp", inference="mcmc")) used to fall through to NUTS (and a misspelt option was
    dropped): each entry's fit now checks the config first, before it touches the data."""
    for name in registry.names():
        entry = registry.get(name)
        with pytest.raises(PyrozooError, match="inference: "):
            entry.fit(None, RunConfig(model=name, inference="no-such-engine"))
        with pytest.raises(PyrozooError, match="unknown key"):
            entry.fit(None, RunConfig(model=name, options={"no_such_option": 1}))


def test_regime_scm_fit_takes_the_configs_options_and_refuses_misspelt_keywords():
    from pyrozoo.models.regime_scm import fit_regime_scm

    entry = registry.get("regime-scm")
    config = entry.check_config(RunConfig(model="regime-scm", inference="em", progress=False,
                                          options={"n_vars": 3, "n_samples": 300, "restarts": 1, "em_iters": 2}))
    data = entry.load_data(config)
    result = fit_regime_scm(data, config)
    assert len(result.fit_stats["em_loglik"]) == 2  # em_iters from the config (the default runs 4 here)
    with pytest.raises(PyrozooError, match="unknown key.*restart"):
        fit_regime_scm(data, config, restart=1)


@pytest.mark.parametrize(("config", "kwargs", "message"), [
    (RunConfig(model="blr", lr="0.1"), {}, "lr: expected a finite value > 0, got the string '0.1'"),
    (RunConfig(model="normal-gamma", data=3), {}, "data: expected a data file path, got 3"),
    (RunConfig(model="blr", dataset=1), {}, "dataset: expected a name (text), got 1"),
    (RunConfig(model="blr"), {"out": 3}, "out: expected a directory path, got 3"),
])
def test_wrong_types_in_the_run_settings_are_clear_errors(config, kwargs, message):
    """A number as text, a number as the data path or the output directory: one clear error, not a TypeError from
    torch's Adam or pathlib."""
    with pytest.raises(PyrozooError, match=re.escape(message)):
        run_model(config, **kwargs) if kwargs else run_model(config, save=False)


def test_a_model_with_tensors_on_two_devices_is_told_what_to_change(monkeypatch, tmp_path):
    """A copied model that builds a constant with torch.tensor(...) on the CPU while `--device cuda` moved its data
    failed with torch's bare "Expected all tensors to be on the same device" (seen on an H100): now one PyrozooError
    that says to create tensors on the inputs' device or to run on the CPU, and no run directory. Other runtime
    errors pass through unchanged. (The GPU check runs the real thing; here the fit raises torch's message.)"""
    base = registry.get("normal-gamma")
    message = "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!"

    def fit(dataset, config):
        raise RuntimeError(message)

    monkeypatch.setitem(registry._REGISTRY, "two-devices", lambda: dataclasses.replace(base, fit=fit))
    out = tmp_path / "run"
    with pytest.raises(PyrozooError, match=r"model 'two-devices': its tensors are on two devices \(Expected all "
                                           r".*device=x.device.*--device cpu") as info:
        run_model(RunConfig(model="two-devices", inference="gibbs", device="cpu"), out=out)
    assert isinstance(info.value.__cause__, RuntimeError) and not out.exists()

    def other(dataset, config):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setitem(registry._REGISTRY, "two-devices", lambda: dataclasses.replace(base, fit=other))
    with pytest.raises(RuntimeError, match="^CUDA out of memory$"):
        run_model(RunConfig(model="two-devices", inference="gibbs", device="cpu"), out=out)


@pytest.mark.parametrize("returned, message", [({"mu": 1.0}, "a dict"), (None, "None")])
def test_a_fit_that_returns_no_result_is_a_one_line_error_not_a_crash_in_the_runner(monkeypatch, tmp_path, returned,
                                                                                    message):
    """It was ``AttributeError: 'dict' object has no attribute 'config'`` at the runner's own line."""
    registry.names()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    base = registry.get("normal-gamma")

    def fit_returning_something_else(dataset, config):
        return returned

    entry = dataclasses.replace(base, name="wrong-fit", fit=fit_returning_something_else)
    registry.register("wrong-fit")(lambda: entry)
    with pytest.raises(PyrozooError, match=rf"^wrong-fit: fit tests\.test_runner\..*fit_returning_something_else "
                                           rf"returned {message}; expected a pyrozoo Result"):
        run_model(RunConfig(model="wrong-fit", inference="gibbs", num_samples=5, warmup_steps=5, num_chains=1,
                            progress=False), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _tiny(name: str, **changes) -> RunConfig:
    """Entry ``name``'s tiny config for its first inference, without the tiny settings and options it does not
    read (so that the run names nothing as unapplied)."""
    entry = registry.get(name)
    tiny = dict(entry.tiny)
    options = tiny.pop("options", {})
    inference = entry.inferences[0]
    unread = entry.unread_options(options, inference)
    tiny = {k: v for k, v in tiny.items() if k not in entry.unread_settings(inference)}
    return RunConfig(model=name, progress=False, options={k: v for k, v in options.items() if k not in unread},
                     **{**tiny, **changes})


@pytest.mark.parametrize("name", registry.names())
def test_the_result_records_the_device_used_and_config_toml_the_one_asked(name, tmp_path):
    """run_model replaced the config LabelledFit resolved with the one asked, so result.config["device"] read
    "auto". Now the result (and idata.nc's attributes) record the device used; config.toml, the rerun recipe,
    keeps "auto", so that a rerun picks its device again on its own machine."""
    import warnings

    from pyrozoo.inference.device import resolve_device
    from pyrozoo.inference.rundir import load_run

    used = str(resolve_device("auto"))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*did not apply")  # the tiny config asks nothing unread
        out = run_model(_tiny(name, device="auto"), out=tmp_path / "run")
    assert out.result.config["device"] == used
    assert out.result.to_inference_data().attrs["device"] == used
    saved = load_run(tmp_path / "run")
    assert saved["idata"].attrs["device"] == used
    assert saved["config"]["device"] == "auto"


def test_settings_the_inference_does_not_read_are_a_warning_from_python():
    """The CLI said "note: gp's type2 does not read ..." while run_model from Python ignored them in silence. The
    runner names them, as a UserWarning, when set to other than RunConfig's defaults (the caller's request)."""
    options = {"n": 20, "n_test": 5}
    with pytest.warns(UserWarning, match=r"^gp's type2 does not read warmup_steps, jit, so they did not apply"):
        run_model(RunConfig(model="gp", inference="type2", jit=True, warmup_steps=7, num_chains=4, steps=10,
                            num_samples=4, progress=False, options=options), save=False)
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*did not apply")
        run_model(RunConfig(model="gp", inference="type2", steps=10, num_samples=4, progress=False, options=options),
                  save=False)  # defaults only: nothing asked, nothing to name
        # given names what the caller asked for (the CLI's flags and --config keys); unread ones go to note
        said: list[str] = []
        run_model(RunConfig(model="gp", inference="type2", num_chains=4, steps=10, num_samples=4, progress=False,
                            options=options), save=False, given=["num_chains", "steps"], note=said.append)
    assert len(said) == 1 and said[0].startswith("gp's type2 does not read num_chains, so it did not apply")


@pytest.mark.filterwarnings("ignore:svi. the fitted q:UserWarning")  # 5 steps: not at the optimum, as meant
def test_a_runs_files_name_the_requested_inference_and_the_engine_label_and_report_reads_both_kinds(tmp_path):
    """normal-gamma's svi runs as svi-meanfield: config.toml said svi, metrics.json and idata.attrs svi-meanfield,
    with no key for the other name. Now metrics.json and idata.attrs hold inference_requested (config.toml's
    name) beside inference (the engine label); pyrozoo report reads such runs and older ones without the key
    alike (a string, not a metric)."""
    import json

    from pyrozoo.inference.rundir import load_run
    from pyrozoo.sweep.report import collect_runs

    out = tmp_path / "runs" / "new"
    run_model(RunConfig(model="normal-gamma", inference="svi", steps=5, num_samples=10, device="cpu",
                        progress=False), out=out)
    run = load_run(out)
    assert run["config"]["inference"] == run["metrics"]["inference_requested"] == "svi"
    assert run["idata"].attrs["inference_requested"] == "svi"
    assert run["metrics"]["inference"] == run["idata"].attrs["inference"] == "svi-meanfield"
    old = tmp_path / "runs" / "old"  # as written before: no inference_requested in metrics.json
    old.mkdir()
    for name in ("config.toml", "idata.nc", "params.pt"):
        (old / name).write_bytes((out / name).read_bytes())
    (old / "metrics.json").write_text(json.dumps({k: v for k, v in run["metrics"].items()
                                                  if k != "inference_requested"}))
    table = collect_runs(tmp_path / "runs")
    assert sorted(table["status"]) == ["ok", "ok"] and set(table["inference"]) == {"svi"}
    assert "inference_requested" not in table.columns


def _no_fit(monkeypatch):
    """Make normal-gamma's Gibbs fit fail loudly, to show a refusal came before it."""
    import pyrozoo.inference.from_config as from_config

    def never(*args, **kwargs):
        raise AssertionError("the fit ran")

    monkeypatch.setattr(from_config, "run_gibbs", never)


def test_a_run_whose_pointwise_log_likelihood_would_not_fit_in_memory_is_refused_before_the_fit(monkeypatch,
                                                                                                 tmp_path):
    """`pyrozoo run normal-gamma -o n=2000000 --num-samples 2000 --num-chains 4` fitted in seconds, then built a
    4 x 2000 x 2e6 log-likelihood until the kernel killed it (22.9 GB, ten minutes, nothing said or written). Here
    4 x 200 x 200,000 = 1.6e8 values, over MAX_POINTWISE_VALUES: refused after the data, before the fit."""
    _no_fit(monkeypatch)
    out = tmp_path / "big"
    config = RunConfig(model="normal-gamma", num_samples=200, num_chains=4, progress=False, options={"n": 200_000})
    with pytest.raises(PyrozooError, match=r"^num_samples=200, num_chains=4 with 200,000 observations: the pointwise "
                                           r"log-likelihood would hold 160,000,000 values .*--no-log-likelihood"):
        run_model(config, out=out)
    assert list(tmp_path.iterdir()) == []  # no run directory, no temporary sibling
    # 4 x 100 x 200,000 = 8e7 fits, but not twice over with the posterior predictive a saved run is asked for
    config = dataclasses.replace(config, num_samples=100, posterior_predictive=True)
    with pytest.raises(PyrozooError, match=r"log-likelihood and the posterior predictive would hold 160,000,000"):
        run_model(config, out=out)
    assert list(tmp_path.iterdir()) == []


def test_log_likelihood_false_leaves_the_group_out_of_the_fit_and_the_run(tmp_path):
    """The opt-out the refusal points to: the same 1.6e8-value run then fits (Gibbs reads only n, xbar, ss) and is
    saved without a log_likelihood group; config.toml records the setting."""
    from pyrozoo.inference.rundir import load_run

    config = RunConfig(model="normal-gamma", num_samples=200, num_chains=4, warmup_steps=20, progress=False,
                       log_likelihood=False, options={"n": 200_000})
    output = run_model(config, out=tmp_path / "run")
    assert output.result.log_likelihood == {} and output.result.posterior["mu"].shape == (4, 200)
    run = load_run(tmp_path / "run")
    assert "log_likelihood" not in run["idata"].groups() and "posterior" in run["idata"].groups()
    assert run["config"]["log_likelihood"] is False
    assert abs(run["metrics"]["mu_z_vs_exact"]) < 5  # the fit itself is unchanged


@pytest.mark.slow  # loads every model's default data and every shipped dataset (~20 s)
def test_every_zoo_models_default_run_fits_under_the_pointwise_bound():
    """The default settings (4 chains x 1000 draws), each model's default options and every shipped dataset, with
    the posterior predictive too: all well under MAX_POINTWISE_VALUES (the largest, blr on concrete, 8.2e6)."""
    from pyrozoo.inference.assemble import MAX_POINTWISE_VALUES
    from pyrozoo.registry import SETTINGS
    from pyrozoo.runner import check_run_size

    for name in registry.names():
        entry = registry.get(name)
        for source in (None, *entry.datasets):
            data = entry.load_data(entry.check_config(RunConfig(model=name, dataset=source, progress=False)))
            for inference in entry.inferences:
                config = entry.check_config(RunConfig(model=name, inference=inference, dataset=source,
                                                      posterior_predictive=True, progress=False))
                check_run_size(config, data)
                reads = entry.settings.get(inference, SETTINGS)
                size = ((4 if "num_chains" in reads else 1) * (1000 if "num_samples" in reads else 1)
                        * sum(int(v.numel()) for v in data.observed.values()))
                assert 2 * size < MAX_POINTWISE_VALUES / 10, (name, source, inference, size)


def test_regime_scm_metrics_without_the_log_likelihood_group():
    """regime_metrics read result.log_likelihood["x"]: a run with log_likelihood=False failed with KeyError 'x'."""
    config = RunConfig(model="regime-scm", inference="em", progress=False, log_likelihood=False,
                       options={"n_vars": 3, "n_samples": 300})
    output = run_model(config, save=False)
    assert output.result.log_likelihood == {}
    assert np.isnan(output.metrics["loglik"]) and 0 <= output.metrics["ari"] <= 1


def test_a_log_likelihood_larger_than_the_runs_estimate_is_refused_not_left_out(monkeypatch, tmp_path):
    """A Python caller's oversized log-likelihood is left out with a warning; a run asked for one, and its check
    before the fit let it through, so should that estimate fall short, the run is refused (nothing written) rather
    than saved without the group."""
    from pyrozoo import runner
    from pyrozoo.inference import assemble

    monkeypatch.setattr(runner, "check_run_size", lambda *args, **kwargs: None)  # an estimate that falls short
    monkeypatch.setattr(assemble, "MAX_POINTWISE_VALUES", 2 * 10 * 50 - 1)
    config = RunConfig(model="normal-gamma", num_samples=10, num_chains=2, warmup_steps=5, progress=False,
                       options={"n": 50})
    with pytest.raises(PyrozooError, match=r"^num_samples=10, num_chains=2 with 50 observations: .*"
                                           r"--no-log-likelihood"):
        run_model(config, out=tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("model, inference, settings, options, named", [
    ("regime-scm", "em", {}, {"n_vars": 5, "n_samples": 300}, ""),
    ("spike-slab", "em", {"num_samples": 30}, {"n": 40, "p": 4, "num_signals": 2}, "num_samples=30 with "),
    ("spike-slab", "gibbs", {"num_samples": 30, "num_chains": 2, "warmup_steps": 20},
     {"n": 40, "p": 4, "num_signals": 2}, "num_samples=30, num_chains=2 with "),
    ("spike-slab", "svi", {"num_samples": 30, "steps": 30}, {"n": 40, "p": 4, "num_signals": 2},
     "num_samples=30 with "),
])
def test_the_size_check_counts_the_pointwise_arrays_the_fit_builds(monkeypatch, model, inference, settings, options,
                                                                   named):
    """check_run_size counted every observed value: regime-scm's log-likelihood is one value per row (joint over its
    n_vars variables), so n = 300 x 5 variables was refused at a limit of 1,000 as "1,500 values", naming
    num_samples and num_chains, which em does not read. The estimate is now the fitted arrays' size exactly (at
    the limit: accepted; one below: refused), for the log-likelihood alone and with the posterior predictive, and
    the refusal names only the settings the inference reads."""
    from pyrozoo.inference import assemble
    from pyrozoo.runner import check_run_size

    entry = registry.get(model)
    config = entry.check_config(RunConfig(model=model, inference=inference, progress=False, options=options,
                                          **settings))
    data = entry.load_data(config)
    result = entry.fit(data, config)
    ll = sum(int(np.size(v)) for v in result.log_likelihood.values())
    pp = sum(int(np.size(v)) for v in result.predictive_fn(result).values())
    assert ll > 0 and pp > 0
    with_pp = dataclasses.replace(config, posterior_predictive=True)
    for cfg, save, size in ((config, False, ll), (with_pp, True, ll + pp)):
        monkeypatch.setattr(assemble, "MAX_POINTWISE_VALUES", size)
        check_run_size(cfg, data, save=save)  # at the limit: accepted
        monkeypatch.setattr(assemble, "MAX_POINTWISE_VALUES", size - 1)
        with pytest.raises(PyrozooError, match=f"^{re.escape(named)}[0-9,]+ observations.*would hold {size:,} "
                                               f"values"):
            check_run_size(cfg, data, save=save)
    if model == "regime-scm":  # the reviewer's run: 300 values, which the fit's own check also counts
        monkeypatch.setattr(assemble, "MAX_POINTWISE_VALUES", 300)
        for cfg in (config, dataclasses.replace(config, inference="enum", steps=2)):
            output = run_model(cfg, save=False)
            assert output.result.log_likelihood["x"].shape == (1, 1, 300)


@pytest.mark.parametrize("metrics, key, returned", [
    ({"arr": np.array([1.0, 2.0])}, "arr", r"a numpy\.ndarray of shape \(2,\) \(array\(\[1\., 2\.\]\)\)"),
    ({"rmse": 0.5, "x": "abc"}, "x", r"a str \('abc'\)"),
    ({"y": [1, 2]}, "y", r"a list \(\[1, 2\]\)"),
    ({"t": torch.ones(3)}, "t", r"a torch\.Tensor of shape \(3,\) \(tensor\(\[1\., 1\., 1\.\]\)\)"),
    ({"d": {"a": 1.0}}, "d", r"a dict \(\{'a': 1\.0\}\)"),
])
def test_metrics_that_metrics_json_cannot_hold_are_refused_before_anything_is_written(monkeypatch, tmp_path, capsys,
                                                                                       metrics, key, returned):
    """QA: an entry's metrics returning an array ended a CLI run, after the whole fit, in "TypeError: Object of type
    ndarray is not JSON serializable" from save_run, the run lost; a string or a list of numbers was written into
    metrics.json in silence and the CLI printed an empty "metrics:  (2 more in metrics.json)". Now each is a
    one-line error naming the entry, the function, the key and what came, and nothing is written."""
    registry.names()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    def odd_metrics(result, dataset):
        return metrics

    entry = dataclasses.replace(registry.get("normal-gamma"), name="odd-metrics", metrics=odd_metrics)
    registry.register("odd-metrics")(lambda: entry)
    message = (rf"^odd-metrics: metrics tests\.test_runner\..*odd_metrics returned {returned} for '{key}'; "
               rf"expected a number \(a Python or NumPy int, float or bool, a 0-d array or tensor\) or a list of "
               rf"strings")
    config = RunConfig(model="odd-metrics", inference="gibbs", num_samples=5, warmup_steps=5, num_chains=1,
                       progress=False)
    with pytest.raises(PyrozooError, match=message):
        run_model(config, out=tmp_path / "run")
    assert list(tmp_path.iterdir()) == []
    from pyrozoo.cli import main

    assert main(["run", "odd-metrics", "--num-samples", "5", "--warmup-steps", "5", "--num-chains", "1",
                 "--no-progress", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert re.search(message.replace("^", "^pyrozoo: error: "), err) and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_metrics_of_numbers_and_names_are_saved_as_plain_values(monkeypatch, tmp_path, capsys):
    """What the shipped entries return (floats, ints, NaN, lists of column names) and the other forms of one number
    (a NumPy scalar, a 0-d array or tensor, a bool) are accepted, kept as plain Python values in the output and
    metrics.json (NaN as null), and the CLI shows every number, the NumPy and torch ones too."""
    import json
    import math

    from pyrozoo.cli import main

    registry.names()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    given = {"f": 0.25, "i": 3, "nan": float("nan"), "f32": np.float32(1.5), "i64": np.int64(7),
             "arr0": np.array(2.5), "t0": torch.tensor(4.5), "flag": True, "controls": ["age", "educ"]}
    entry = dataclasses.replace(registry.get("normal-gamma"), name="plain-metrics",
                                metrics=lambda result, dataset: given)
    registry.register("plain-metrics")(lambda: entry)
    config = RunConfig(model="plain-metrics", inference="gibbs", num_samples=5, warmup_steps=5, num_chains=1,
                       progress=False)
    output = run_model(config, out=tmp_path / "run")
    expected = {"f": 0.25, "i": 3, "f32": 1.5, "i64": 7, "arr0": 2.5, "t0": 4.5, "flag": True,
                "controls": ["age", "educ"]}
    assert {k: v for k, v in output.metrics.items() if k != "nan"} == expected and math.isnan(output.metrics["nan"])
    assert all(type(output.metrics[k]) is type(v) for k, v in expected.items())
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {k: saved[k] for k in given} == {**expected, "nan": None}
    assert main(["run", "plain-metrics", "--num-samples", "5", "--warmup-steps", "5", "--num-chains", "1",
                 "--no-progress", "--out", str(tmp_path / "cli")]) == 0
    line = next(t for t in capsys.readouterr().out.splitlines() if t.startswith("metrics: "))
    assert line == ("metrics: f=0.25, i=3, nan=nan, f32=1.5, i64=7, arr0=2.5, t0=4.5, flag=1 (1 more in "
                    "metrics.json)")


def test_a_saved_markov_chain_run_records_its_convergence_figures_and_an_svi_run_none(tmp_path):
    """metrics.json recorded no divergence or r_hat figures, so `pyrozoo report` could not tell a stuck sampler
    from a good one. run_model (behind `pyrozoo run` and every sweep cell) now writes convergence_figures of the
    run's draws under "convergence"; the returned metrics stay the model's."""
    import json

    from pyrozoo.evaluation.diagnostics import convergence_figures

    common = {"model": "normal-gamma", "options": {"n": 30}, "device": "cpu", "progress": False}
    out = run_model(RunConfig(inference="nuts", num_samples=30, warmup_steps=20, num_chains=2, **common),
                    out=tmp_path / "nuts")
    stored = json.loads((tmp_path / "nuts" / "metrics.json").read_text())
    want = convergence_figures(out.result.to_inference_data())
    assert stored["convergence"] == pytest.approx(want, rel=1e-12) and "divergent" in stored["convergence"]
    assert "convergence" not in out.metrics
    run_model(RunConfig(inference="svi", steps=50, **common), out=tmp_path / "svi")
    assert "convergence" not in json.loads((tmp_path / "svi" / "metrics.json").read_text())


def test_an_entrys_check_data_refuses_before_the_pointwise_size_check(monkeypatch, tmp_path):
    """``ZooModel.check_data`` (a model's own refusal of data it cannot fit, whatever the flags) runs once the data
    are loaded and before check_run_size, with the loaded dataset and the checked config; a function is required."""
    from pyrozoo import runner

    calls = []

    def refuse(dataset, config):
        calls.append((dataset.observed["x"].shape[0], config.inference))
        raise PyrozooError("X: expected fewer rows, got too many")

    def size_check(*args, **kwargs):
        raise AssertionError("check_run_size ran before the entry's check_data")

    entry = dataclasses.replace(registry.get("normal-gamma"), check_data=refuse)
    monkeypatch.setattr(registry, "get", lambda name: entry)
    monkeypatch.setattr(runner, "check_run_size", size_check)
    config = RunConfig(model="normal-gamma", num_samples=4, warmup_steps=2, num_chains=1, progress=False,
                       options={"n": 30})
    with pytest.raises(PyrozooError, match="^X: expected fewer rows"):
        run_model(config, out=tmp_path / "run")
    assert calls == [(30, entry.inferences[0])] and list(tmp_path.iterdir()) == []
    with pytest.raises(PyrozooError, match="check_data of normal-gamma: expected a function"):
        dataclasses.replace(registry.get("normal-gamma"), check_data=3)
