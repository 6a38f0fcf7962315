"""The shared test every registered model must pass (design.md, tier 3).

For each entry: the prior predictive runs, the log density at a prior draw is finite, every listed inference runs
with the entry's ``tiny`` settings and yields InferenceData with a pointwise log_likelihood group of shape
(chain, draw, ...), and the CLI runs the model end to end into a complete run directory.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pyro.poutine as poutine
import pytest
import tomli_w
import torch

from pyrozoo import registry
from pyrozoo.cli import main
from pyrozoo.config import RunConfig
from pyrozoo.inference.device import resolve_device, set_seed
from pyrozoo.inference.predictive import check_likelihood_sites
from pyrozoo.inference.rundir import RUN_FILES

ENTRIES = registry.names()
# Every contract check runs on the CPU, and again on CUDA where a GPU is present (CI has none; a GPU machine runs
# the same file unchanged).
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
CASES = [(name, inf) for name in ENTRIES for inf in registry.get(name).inferences]


def tiny_config(name: str, inference: str | None = None, device: str = "cpu") -> RunConfig:
    """The entry's tiny config for ``inference``, without the tiny options that inference does not read (as a tiny
    sweep leaves them out)."""
    entry = registry.get(name)
    tiny = dict(entry.tiny)
    options = tiny.pop("options", {})
    unread = entry.unread_options(options, inference or entry.inferences[0])
    options = {k: v for k, v in options.items() if k not in unread}
    cfg = RunConfig(model=name, inference=inference, device=device, progress=False, options=options, **tiny)
    return entry.check_config(cfg)


@pytest.mark.parametrize("name", ENTRIES)
def test_prior_predictive_and_log_density(name):
    entry = registry.get(name)
    cfg = tiny_config(name)
    data = entry.load_data(cfg)
    prior_trace = poutine.trace(entry.model).get_trace(**data.model_kwargs(observed=False))
    assert any(s["type"] == "sample" for s in prior_trace.nodes.values())
    tr = poutine.trace(entry.model).get_trace(**data.model_kwargs())
    assert math.isfinite(float(tr.log_prob_sum().detach()))


DATASET_CASES = [(name, ds) for name in ENTRIES for ds in registry.get(name).datasets]


@pytest.mark.parametrize("name,dataset", DATASET_CASES)
def test_every_shipped_dataset_loads_into_a_valid_model(name, dataset):
    """The tiny runs use the simulator: here each shipped dataset is loaded (with the tiny options it reads) and the
    model traced on it passes the engines' structure checks with a finite log density."""
    entry = registry.get(name)
    tiny = dict(entry.tiny)
    options = tiny.pop("options", {})
    unused = [*entry.unused_options(options, dataset), *entry.unread_options(options, entry.inferences[0])]
    options = {k: v for k, v in options.items() if k not in unused}
    cfg = entry.check_config(RunConfig(model=name, dataset=dataset, progress=False, options=options, **tiny))
    data = entry.load_data(cfg)
    tr = poutine.trace(entry.model).get_trace(**data.model_kwargs())
    check_likelihood_sites(tr, custom_log_likelihood=True, warn=False)
    assert math.isfinite(float(tr.log_prob_sum().detach()))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,inference", CASES)
def test_every_inference_runs_and_has_log_likelihood(name, inference, device):
    entry = registry.get(name)
    cfg = tiny_config(name, inference, device)
    data = entry.load_data(cfg).to(resolve_device(device))  # as run_model moves it
    result = entry.fit(data, cfg)
    idata = result.to_inference_data()
    assert "posterior" in idata.groups() and "log_likelihood" in idata.groups()
    for var in idata.log_likelihood.data_vars:
        ll = idata.log_likelihood[var]
        assert ll.dims[:2] == ("chain", "draw")
        assert torch.isfinite(torch.as_tensor(ll.values)).all()
    if entry.metrics is not None:
        metrics = entry.metrics(result, data)
        assert isinstance(metrics, dict)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ENTRIES)
def test_cli_runs_with_tiny_settings(name, device, tmp_path):
    entry = registry.get(name)
    cfg = tiny_config(name, device=device)
    args = ["run", name, "--out", str(tmp_path / "run"), "--no-progress", "--device", device, "--seed", "1"]
    for key, flag in (("num_samples", "--num-samples"), ("warmup_steps", "--warmup-steps"),
                      ("num_chains", "--num-chains"), ("steps", "--steps")):
        args += [flag, str(getattr(cfg, key))]
    for key, value in cfg.options.items():
        args += ["-o", f"{key}={tomli_w.dumps({'v': value})[4:].strip()}"]
    assert main(args) == 0
    assert {p.name for p in (tmp_path / "run").iterdir()} >= set(RUN_FILES)
    assert entry.name == name


@pytest.mark.parametrize("field,value,match", [
    ("settings", {"nut": ("num_samples",)}, "settings of normal-gamma: unknown inference\\(s\\) 'nut'; expected one "
                                            "of gibbs, nuts, hmc, svi$"),
    ("settings", {"nuts": ("warmup",)}, "settings of normal-gamma: 'nuts': unknown setting\\(s\\) 'warmup'; expected "
                                        "one of num_samples, warmup_steps"),
    ("settings", {"nuts": "num_samples"}, "settings of normal-gamma: 'nuts': expected a tuple of setting names, got "
                                          "'num_samples'"),
    # a str where a tuple belongs (the parentheses of ("nuts") make no tuple) was read as its characters
    ("inferences", "nuts", "inferences of normal-gamma: expected a non-empty tuple of inference names, got 'nuts'"),
    ("inferences", (), "inferences of normal-gamma: expected a non-empty tuple of inference names, got \\(\\)"),
    ("inferences", ("nuts", ""), "inferences of normal-gamma: expected a non-empty tuple of inference names"),
    ("text_options", "column", "text_options of normal-gamma: expected a tuple of option names, got 'column'"),
    ("text_options", ("colum",), "text_options of normal-gamma: unknown option\\(s\\) 'colum'; expected one of n, "),
    ("list_options", "mu0", "list_options of normal-gamma: expected a tuple of option names, got 'mu0'"),
    ("list_options", ["mu0", 1], "list_options of normal-gamma: expected a tuple of option names, got \\['mu0', 1\\]"),
    # a misspelt key restricted nothing: the option it meant applied to every data source
    ("data_options", {"nn": ("simulator",)}, "data_options of normal-gamma: unknown option\\(s\\) 'nn'; expected "
                                             "one of n, mu_true"),
    ("data_options", {"n": "simulator"}, "data_options of normal-gamma: 'n': expected a non-empty tuple of data "
                                         "source names, got 'simulator'"),
    ("data_options", {"n": ()}, "data_options of normal-gamma: 'n': expected a non-empty tuple of data source names"),
    ("data_options", {"n": ("simulater",)}, "data_options of normal-gamma: 'n': unknown data source\\(s\\) "
                                            "'simulater'; expected one of simulator, file, boston-medv$"),
    ("data_options", ("n",), "data_options of normal-gamma: expected a dict of option -> data source names"),
    ("inference_options", {"n": ("laplace",)}, "inference_options of normal-gamma: 'n': unknown inference\\(s\\) "
                                               "'laplace'; expected one of gibbs, nuts, hmc, svi$"),
    ("inference_options", {"nn": ("svi",)}, "inference_options of normal-gamma: unknown option\\(s\\) 'nn'"),
    ("inference_options", {"n": "svi"}, "inference_options of normal-gamma: 'n': expected a non-empty tuple of "
                                        "inference names, got 'svi'"),
])
def test_an_authors_slip_in_the_entry_is_named_when_the_entry_is_built(field, value, match):
    from pyrozoo.errors import PyrozooError

    base = registry.get("normal-gamma")
    with pytest.raises(PyrozooError, match=match) as info:
        type(base)(**{**base.__dict__, field: value})
    assert "\n" not in str(info.value)


def test_every_entry_declares_what_its_checks_accept():
    """The checks above refuse none of the zoo's own entries; a list where a tuple is written is fine."""
    for name in ENTRIES:
        entry = registry.get(name)
        type(entry)(**{**entry.__dict__, "inferences": list(entry.inferences),
                       "text_options": list(entry.text_options)})
    base = registry.get("normal-gamma")
    type(base)(**{**base.__dict__, "settings": {"gibbs": ()}})  # an inference that reads no setting


def test_a_simulator_without_options_is_named_not_a_type_error():
    from pyrozoo.errors import PyrozooError

    base = registry.get("normal-gamma")

    def simulate(seed, n=10):  # forgot **options
        return base.simulate(seed, n=n)

    entry = type(base)(**{**base.__dict__, "simulate": simulate})
    with pytest.raises(PyrozooError, match="normal-gamma: the simulator does not take the entry's options .*mu_true"
                                           ".*must accept \\*\\*options"):
        entry.load_data(entry.check_config(RunConfig(model="normal-gamma")))


def test_an_option_one_inference_does_not_read_is_an_error_before_any_work():
    from pyrozoo.errors import PyrozooError

    entry = registry.get("gp")
    with pytest.raises(PyrozooError, match="options: lengthscale, noise apply only to gp's type2; with nuts they "
                                           "would have no effect"):
        entry.check_config(RunConfig(model="gp", inference="nuts", options={"lengthscale": 2.0, "noise": 0.5}))
    entry.check_config(RunConfig(model="gp", inference="type2", options={"lengthscale": 2.0, "noise": 0.5}))


OPTION_CHANGES = {"lengthscale": 3.0, "variance": 4.0, "noise": 0.7, "batch_size": 7,
                  "rank": 2, "scale": 0.8, "num_collapsed": 2, "defensive_weight": 0.01,  # bnn
                  "restarts": 2, "em_iters": 7, "learn_weights": False, "subsample_size": 50,  # regime-scm
                  "pretrain_steps": 7, "hidden": 5, "temperature": 0.7, "kl_cycles": 2, "kl_ratio": 0.3,
                  "em_variant": "hard", "nuts_max_tree_depth": 4}  # spike-slab
# A key (entry, option) gives one entry's own test value where an option name means other things in other entries.


def option_change(entry: registry.ZooModel, option: str, current: Any, reader: str) -> Any:
    """A valid value of ``option`` other than ``current`` for the check below: ``OPTION_CHANGES[(entry, option)]`` or
    ``OPTION_CHANGES[option]`` where given, else one derived from the value's type (a bool flipped, an integer + 1, a
    float halved, 1.0 for 0.0) and accepted by the entry's checks (:meth:`~pyrozoo.registry.ZooModel.check_config`,
    ``check_options`` included) under ``reader``, an inference that reads it. Text, ``None`` and lists have no
    derivable other value: the test then fails saying what to add to OPTION_CHANGES."""
    from pyrozoo.errors import PyrozooError

    for key in ((entry.name, option), option):
        if key in OPTION_CHANGES:
            return OPTION_CHANGES[key]
    hint = (f"add a test value for option {option!r} of {entry.name} to OPTION_CHANGES in "
            f"tests/test_registry_contract.py: OPTION_CHANGES[({entry.name!r}, {option!r})] = a valid value other "
            f"than {current!r}")
    if isinstance(current, bool):
        value = not current
    elif isinstance(current, int):
        value = current + 1
    elif isinstance(current, float):
        value = current / 2 if current else 1.0
    else:
        pytest.fail(f"no other value of option {option!r} of {entry.name} can be derived from {current!r}; {hint}")
    cfg = tiny_config(entry.name, reader)
    try:
        entry.check_config(dataclasses.replace(cfg, options={**cfg.options, option: value}))
    except PyrozooError as exc:
        pytest.fail(f"the derived test value {value!r} of option {option!r} of {entry.name} is refused under {reader} "
                    f"({exc}); {hint}")
    return value


@pytest.mark.slow
@pytest.mark.parametrize("name,inference,option", [
    (name, inf, opt) for name in ENTRIES for opt, readers in registry.get(name).inference_options.items()
    for inf in registry.get(name).inferences if inf not in readers])
def test_an_option_declared_for_other_inferences_leaves_this_ones_draws_unchanged(name, inference, option,
                                                                                 monkeypatch):
    """What keeps ``inference_options`` honest: the option, let through (the entry's declaration lifted), does
    not change the draws (its changed value: :func:`option_change`)."""
    reader = registry.get(name).inference_options[option][0]
    entry = dataclasses.replace(registry.get(name), inference_options={})
    monkeypatch.setitem(registry._REGISTRY, name, lambda: entry)  # the fit's own checked_config reads the registry
    cfg = tiny_config(name, inference)
    value = option_change(entry, option, cfg.options.get(option, entry.options[option]), reader)
    set_seed(cfg.seed)  # as run_model does before the data
    base = entry.fit(entry.load_data(cfg), cfg)
    cfg = tiny_config(name, inference)
    cfg.options = {**cfg.options, option: value}
    set_seed(cfg.seed)
    other = entry.fit(entry.load_data(cfg), cfg)
    for key in base.posterior:
        assert (base.posterior[key] == other.posterior[key]).all(), f"{option} changed {key} under {inference}"


CHANGED = {"num_samples": 7, "warmup_steps": 13, "num_chains": 3, "steps": 9, "lr": 0.0123, "jit": True}


@pytest.mark.slow
@pytest.mark.parametrize("name,inference", [c for c in CASES if registry.get(c[0]).unread_settings(c[1])])
def test_settings_an_inference_does_not_read_leave_its_result_unchanged(name, inference):
    """``ZooModel.settings`` is what keeps unread settings out of config.toml and sweep grids: changing every
    setting declared unread must give the same draws."""
    entry = registry.get(name)
    cfg = tiny_config(name, inference)
    set_seed(cfg.seed)  # as run_model does: a simulator may draw from the global RNG (docs/adding-a-model.md)
    base = entry.fit(entry.load_data(cfg), cfg)
    for setting in entry.unread_settings(inference):  # one at a time, so a failure names the setting
        cfg = tiny_config(name, inference)
        setattr(cfg, setting, CHANGED[setting])
        set_seed(cfg.seed)
        other = entry.fit(entry.load_data(cfg), cfg)
        assert set(base.posterior) == set(other.posterior), setting
        for key in base.posterior:
            a, b = base.posterior[key], other.posterior[key]
            assert a.shape == b.shape and (a == b).all(), f"{setting} changed {key}: declared unread but it is read"


def _fit_from(name: str, inference: str, caller_seed: int):
    """Fit entry ``name`` directly (entry.fit, as a Python user calls fit_gp(ds, cfg)) after the caller seeded
    its own RNGs with ``caller_seed``; returns the draws, whether the caller's streams came back, and whether the
    caller's param survived."""
    import random

    import numpy as np
    import pyro

    entry = registry.get(name)
    cfg = tiny_config(name, inference)
    set_seed(cfg.seed)
    data = entry.load_data(cfg)
    set_seed(caller_seed)
    expected = (random.random(), np.random.rand(), torch.rand(()).item())
    set_seed(caller_seed)
    mine = pyro.param("callers_own_param", torch.tensor(1.5))
    result = entry.fit(data, cfg)
    kept = (random.random(), np.random.rand(), torch.rand(()).item()) == expected
    store = pyro.get_param_store()
    return result.posterior, kept, "callers_own_param" in store and store["callers_own_param"] is mine


def _check_fit_keeps_caller_state(name: str, inference: str) -> None:
    a, kept_a, param_a = _fit_from(name, inference, 1)
    b, kept_b, param_b = _fit_from(name, inference, 2)
    assert kept_a and kept_b, "the fit changed the caller's RNG streams"
    assert param_a and param_b, "the fit dropped the caller's pyro.param"
    for key in a:
        assert (a[key] == b[key]).all(), f"{key}: the same config.seed gave other draws after another caller state"


def test_gp_nuts_fit_keeps_the_callers_state_and_its_own_seed():
    """fit_gp's NUTS path drew f after run_mcmc had put the caller's RNG back, so the same config.seed gave other
    f draws depending on the caller's state (found by a QA pass); the entry fits now keep the caller's state as a
    whole."""
    _check_fit_keeps_caller_state("gp", "nuts")


@pytest.mark.slow
@pytest.mark.parametrize("name,inference", CASES)
def test_every_entry_fit_keeps_the_callers_state_and_its_own_seed(name, inference):
    _check_fit_keeps_caller_state(name, inference)


def _entry_with_svi_options(monkeypatch, options, check_options=None):
    """normal-gamma registered as ``c1-probe`` with extra ``options`` that only its svi reads."""
    base = registry.get("normal-gamma")
    entry = dataclasses.replace(base, name="c1-probe", options={**base.options, **options},
                                inference_options={k: ("svi",) for k in options}, check_options=check_options)
    monkeypatch.setitem(registry._REGISTRY, "c1-probe", lambda: entry)
    return entry


def test_a_new_entrys_inference_option_gets_a_derived_test_value_or_a_message_saying_what_to_add(monkeypatch):
    """A new entry's inference option that OPTION_CHANGES did not know was a bare KeyError in the slow check
    above: a changed value is now derived where the option's type allows, and else the failure says what to add."""
    from pyrozoo.errors import PyrozooError

    entry = _entry_with_svi_options(monkeypatch, {"flag": True, "k": 3, "w": 0.5, "z": 0.0, "guide": "auto"})
    assert option_change(entry, "flag", True, "svi") is False
    assert option_change(entry, "k", 3, "svi") == 4
    assert option_change(entry, "w", 0.5, "svi") == 0.25
    assert option_change(entry, "z", 0.0, "svi") == 1.0
    with pytest.raises(pytest.fail.Exception, match="no other value of option 'guide' of c1-probe can be derived from "
                                                    "'auto'; add a test value for option 'guide' of c1-probe to "
                                                    "OPTION_CHANGES in tests/test_registry_contract.py: "
                                                    "OPTION_CHANGES\\[\\('c1-probe', 'guide'\\)\\] = a valid value "
                                                    "other than 'auto'"):
        option_change(entry, "guide", "auto", "svi")
    monkeypatch.setitem(OPTION_CHANGES, ("c1-probe", "guide"), "manual")
    assert option_change(entry, "guide", "auto", "svi") == "manual"
    assert option_change(registry.get("gp"), "noise", 0.1, "type2") == OPTION_CHANGES["noise"]

    def at_most_three(config):
        if config.options.get("k", 3) > 3:
            raise PyrozooError(f"k: expected at most 3, got {config.options['k']}")

    entry = _entry_with_svi_options(monkeypatch, {"k": 3}, at_most_three)
    with pytest.raises(pytest.fail.Exception, match="the derived test value 4 of option 'k' of c1-probe is refused "
                                                    "under svi \\(k: expected at most 3, got 4\\); add a test value"):
        option_change(entry, "k", 3, "svi")


@pytest.mark.parametrize("tiny,match", [
    # passed `pyrozoo list`; a tiny sweep then blamed the user's sweep file, the contract test a bare TypeError
    ({"num_sampels": 5}, "tiny of normal-gamma: unknown key\\(s\\) 'num_sampels'; expected one of num_samples, "
                         "warmup_steps, num_chains, steps, lr, jit, options$"),
    ({"options": {"nn": 3}}, "tiny of normal-gamma: 'options': unknown option\\(s\\) 'nn'; expected one of n, "),
    ({"options": {"n": "30"}}, "tiny of normal-gamma: n: option expects an integer \\(default 100\\), got '30'"),
    ({"options": 3}, "tiny of normal-gamma: 'options': expected a dict of option -> value, got 3"),
    ({"num_samples": 0}, "tiny of normal-gamma: num_samples: expected an integer >= 1, got 0"),
    ("fast", "tiny of normal-gamma: expected a dict of run settings and 'options', got 'fast'"),
])
def test_a_slip_in_the_entrys_tiny_is_named_when_the_entry_is_built(tiny, match):
    from pyrozoo.errors import PyrozooError

    base = registry.get("normal-gamma")
    with pytest.raises(PyrozooError, match=match) as info:
        type(base)(**{**base.__dict__, "tiny": tiny})
    assert "\n" not in str(info.value)


# every option whose value is a word the model picks from a fixed list (a str default that is not a column name)
CHOICE_OPTIONS = [(name, key) for name in ENTRIES for key, default in registry.get(name).options.items()
                  if isinstance(default, str) and key not in registry.get(name).text_options]


def test_the_choice_options_are_those_of_the_zoo():
    """The derived list holds the options that a misspelt value once let through to each sweep cell."""
    assert {("gp", "kernel"), ("sparse-gp", "kernel"), ("sparse-gp", "method"), ("spike-slab", "em_variant"),
            ("plce", "scenario"), ("effect-curve", "design"), ("effect-curve", "heterogeneity"),
            ("effect-curve", "spline"), ("effect-curve", "interactions"),
            ("effect-curve", "learner")} <= set(CHOICE_OPTIONS)


@pytest.mark.parametrize("name,key", CHOICE_OPTIONS)
def test_a_misspelt_choice_is_refused_before_a_sweep_or_run_starts(name, key, tmp_path, monkeypatch, capsys):
    """A value outside an option's fixed choices stops ``pyrozoo sweep --dry-run`` (exit 2, one line naming the
    sweep file, the block and the option, nothing created) and ``pyrozoo run`` before any data are loaded: it was
    refused only by the simulator or the fit, so each sweep cell failed (gp's kernel, sparse-gp's kernel and method,
    spike-slab's em_variant, plce's scenario, effect-curve's design, heterogeneity, spline, interactions, learner)."""
    entry = registry.get(name)
    assert "simulator" in entry.data_options.get(key, ("simulator",))
    inference = entry.inference_options.get(key, entry.inferences)[0]
    sweep = tmp_path / "bad.toml"
    out = tmp_path / "out"
    sweep.write_text(tomli_w.dumps({"sweep": {"name": "bad"}, "defaults": {"device": "cpu"},
                                    "models": [{"name": name, "inference": inference,
                                                "options": {key: "zzbogus"}}]}))
    assert main(["sweep", str(sweep), "--out", str(out), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pyrozoo: error: {sweep}: models[0] ({name}, ") and f"{key}: expected" in err, err
    assert "'zzbogus'" in err and "\n" not in err
    assert not out.exists()

    def no_data(self, config):
        raise AssertionError(f"{name}: data loaded for -o {key}=zzbogus")

    monkeypatch.setattr(registry.ZooModel, "load_data", no_data)
    run_out = tmp_path / "run"
    assert main(["run", name, "--inference", inference, "--device", "cpu", "-o", f"{key}=zzbogus",
                 "--out", str(run_out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pyrozoo: error: {key}: expected") and "'zzbogus'" in err, err
    assert not run_out.exists()
