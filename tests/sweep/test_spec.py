"""The sweep file: expansion into cells, and every kind of bad input rejected before anything runs."""

import dataclasses
import re
from pathlib import Path

import pytest

from pyrozoo.cli import main
from pyrozoo.errors import PyrozooError
from pyrozoo.sweep.spec import load_spec, parse_spec

VALID = {
    "sweep": {"name": "grid", "seeds": 3, "out": "somewhere"},
    "defaults": {"device": "cpu", "num_chains": 2},
    "grid": {"num_samples": [30, 40]},
    "models": [
        {"name": "normal-gamma", "label": "ng", "options": {"n": 60},
         "grid": {"inference": ["gibbs", "svi"], "options": {"sigma_true": [0.5, 2.0]}}},
    ],
}


def _with(**changes):
    data = {k: (dict(v) if isinstance(v, dict) else [dict(m) for m in v]) for k, v in VALID.items()}
    for path, value in changes.items():
        *heads, last = path.split("__")
        target = data
        for h in heads:
            target = target[int(h)] if h.isdigit() else target[h]
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value
    return data


def test_grid_expands_to_every_combination_with_readable_keys():
    spec = parse_spec(VALID)
    assert spec.name == "grid" and str(spec.out) == "somewhere"
    assert len(spec) == 2 * 2 * 2 * 3  # num_samples x inference x sigma_true x seeds
    keys = [c.key for c in spec.cells]
    assert len(set(keys)) == len(keys)
    assert "ng/gibbs_num_samples=30_sigma_true=0.5_seed0" in keys
    cell = next(c for c in spec.cells if c.key == "ng/svi_num_samples=40_sigma_true=2.0_seed2")
    assert cell.config["inference"] == "svi" and cell.config["num_samples"] == 40 and cell.config["seed"] == 2
    assert cell.config["options"] == {"n": 60, "sigma_true": 2.0}
    assert cell.config["num_chains"] == 2 and cell.config["device"] == "cpu" and cell.config["progress"] is False
    assert cell.axes == {"num_samples": 40, "inference": "svi", "options.sigma_true": 2.0}


def test_an_axis_the_inference_does_not_read_is_refused():
    """num_chains x svi would run the same SVI fit under two names (and report it as two settings)."""
    with pytest.raises(PyrozooError, match=r"normal-gamma's svi does not read num_chains, so the grid axis "
                                           r"num_chains = \[1, 2\] would repeat one run under 2 names"):
        parse_spec(_with(grid={"num_chains": [1, 2]}))
    # an axis every inference of the block reads is fine, with one value or several
    gibbs_only = {"models__0__grid": {"inference": ["gibbs"]}}
    one = parse_spec(_with(grid={"num_chains": [3]}, **gibbs_only))
    assert [c.key for c in one.cells] == [f"ng/gibbs_num_chains=3_seed{s}" for s in range(3)]
    assert len(parse_spec(_with(grid={"num_chains": [1, 2]}, **gibbs_only))) == 2 * 3


@pytest.mark.parametrize(("inference", "axis", "value"), [("gibbs", "lr", 0.1), ("svi", "num_chains", 3),
                                                          ("gibbs", "steps", 5)])
def test_a_one_value_axis_the_inference_does_not_read_is_refused(inference, axis, value):
    """One value repeats no run, but it named the run directory after a setting the run ignores (gibbs_lr=0.1 for
    a run whose config.toml has no lr): refused like a longer axis, pointing to a single value instead."""
    data = {"sweep": {"seeds": 1}, "defaults": {"device": "cpu"},
            "models": [{"name": "normal-gamma", "inference": inference, "grid": {axis: [value]}}]}
    with pytest.raises(PyrozooError, match=rf"models\[0\]: normal-gamma's {inference} does not read {axis}, so the "
                                           rf"grid axis {axis} = \[{value}\] would name {inference}'s run "
                                           rf"directories after a setting its runs ignore; set {axis} as a single "
                                           rf"value"):
        parse_spec(data)
    # the single value the error points to is accepted and names nothing
    del data["models"][0]["grid"]
    data["models"][0][axis] = value
    assert [c.key for c in parse_spec(data).cells] == [f"normal-gamma/{inference}_seed0"]
    # a [grid] axis of one value meets every block: refused where one block's inference does not read it
    with pytest.raises(PyrozooError, match=r"models\[1\]: normal-gamma's svi does not read num_chains"):
        parse_spec({"sweep": {"seeds": 1}, "grid": {"num_chains": [2]},
                    "models": [{"name": "normal-gamma", "label": "g", "inference": "gibbs"},
                               {"name": "normal-gamma", "label": "s", "inference": "svi"}]})


def test_cells_are_named_after_the_values_the_runs_use():
    """n = 30.0 is checked into the integer 30: the run directory says n=30 (it said n=30.0, so a later file
    writing 30 redid the same run), for option axes and run settings alike."""
    data = _with(**{"models__0__grid": {"inference": ["gibbs"], "options": {"n": [30.0, 40]}},
                    "grid": {"num_chains": [2.0]}})
    spec = parse_spec(data)
    keys = {c.key for c in spec.cells}
    assert "ng/gibbs_num_chains=2_n=30_seed0" in keys and "ng/gibbs_num_chains=2_n=40_seed0" in keys
    cell = next(c for c in spec.cells if c.key == "ng/gibbs_num_chains=2_n=30_seed0")
    assert cell.axes["options.n"] == 30 and type(cell.axes["options.n"]) is int and cell.config["options"]["n"] == 30


def test_tiny_settings_and_model_overrides():
    spec = parse_spec({"sweep": {"seeds": [4], "tiny": True},
                       "models": [{"name": "normal-gamma", "inference": "nuts", "num_samples": 7}]})
    (cell,) = spec.cells
    assert cell.key == "normal-gamma/nuts_seed4"
    assert cell.config["num_samples"] == 7 and cell.config["warmup_steps"] == 30  # model value beats tiny


def test_tiny_simulator_sizes_are_dropped_for_shipped_data():
    """blr's tiny settings shrink its simulator (n, d); a tiny sweep over a shipped dataset drops them rather than
    failing on options that dataset would ignore, while a user's own simulator option is still an error."""
    spec = parse_spec({"sweep": {"tiny": True},
                       "models": [{"name": "blr", "dataset": "boston"}, {"name": "blr", "label": "sim"}]})
    shipped, simulated = spec.cells
    assert "n" not in shipped.config["options"] and "d" not in shipped.config["options"]
    assert simulated.config["options"]["n"] == 50
    with pytest.raises(PyrozooError, match="n applies only to the simulated data; with dataset 'boston'"):
        parse_spec({"sweep": {"tiny": True}, "models": [{"name": "blr", "dataset": "boston", "options": {"n": 30}}]})


@pytest.mark.parametrize("changes,message", [
    ({"extra": 1}, "unknown key(s) extra"),
    ({"sweep__seed": [1]}, "sweep: unknown key(s) seed"),
    ({"sweep__seeds": [1, 1]}, "seeds repeat"),
    ({"sweep__seeds": [-1]}, "sweep.seeds: expected an integer seed in [0, 2**32 - 1]"),
    ({"sweep__seeds": 0}, "sweep.seeds: expected a list of integer seeds in [0, 2**32 - 1] or a count in [1, 2**32]"),
    ({"sweep__tiny": "yes"}, "sweep.tiny: expected true or false"),
    ({"defaults__num_sample": 3}, "defaults: unknown key(s) num_sample"),
    ({"defaults__num_chains": 0}, "num_chains: expected an integer >= 1"),
    ({"defaults__num_chains": "many"}, "num_chains: expected an integer"),
    ({"defaults__device": "tpu"}, "device: expected one of auto, cpu, cuda"),
    ({"defaults__inference": ["gibbs", "svi"]}, "defaults.inference: expected a single value, got a list"),
    ({"grid__num_chains": []}, "grid.num_chains: expected a non-empty list"),
    ({"grid__num_chains": 2}, "grid.num_chains: expected a non-empty list"),
    ({"grid__model": ["normal-gamma"]}, "grid: unknown key(s) model"),
    ({"models": []}, "models: expected one or more"),
    ({"models": None}, "no [[models]] block"),
    ({"models__0__name": "no-such-model"}, "models[0].name: unknown model 'no-such-model'"),
    ({"models__0__name": None}, "models[0]: missing key 'name'"),
    ({"models__0__grid": {"inference": ["gibbs", "laplace"]}}, "supports gibbs, nuts, hmc, svi; got 'laplace'"),
    ({"models__0__grid": {"options": {"alpha": [1, 2]}}}, "models[0].grid.options: unknown key(s) alpha"),
    ({"models__0__grid": {"options": {"sigma_true": [1, 1.0]}}}, "values repeat in [1, 1.0]"),
    ({"models__0__options": {"alpha": 1}}, "options for normal-gamma: unknown key(s) alpha"),
    ({"models__0__dataset": "iris"}, "dataset: normal-gamma knows boston-medv; got 'iris'"),
    ({"models__0__dataset": "boston-medv", "models__0__options": {"mu_true": 3.0}},
     "mu_true, sigma_true apply only to the simulated data; with dataset 'boston-medv' they would have no effect"),
    ({"models__0__grid": {"inference": ["svi"], "lr": [0.1, -1.0]}}, "lr: expected a finite value > 0"),
])
def test_bad_input_is_a_clear_error(changes, message):
    with pytest.raises(PyrozooError) as info:
        parse_spec(_with(**changes))
    assert message in str(info.value)


def test_duplicate_labels_are_rejected():
    block = {"name": "normal-gamma"}
    with pytest.raises(PyrozooError, match="label 'normal-gamma' is used twice"):
        parse_spec({"models": [block, dict(block)]})


def test_the_spec_and_its_errors_name_the_sweep_file_not_a_data_source(write_spec, tmp_path):
    """parse_spec reused its ``source`` argument for each cell's data source: the spec, sweep.json and the
    collision error named the last block's data ("simulator") instead of the sweep file."""
    import json

    from pyrozoo.sweep.runner import write_manifest

    path = write_spec('[sweep]\nseeds = 1\n[[models]]\nname = "normal-gamma"\ninference = "gibbs"\n')
    spec = load_spec(path)
    assert spec.source == str(path) and parse_spec({"models": [{"name": "normal-gamma"}]}).source == "sweep"
    write_manifest(spec, tmp_path)
    assert json.loads((tmp_path / "sweep.json").read_text())["source"] == str(path)
    clash = write_spec('[sweep]\nseeds = 1\n[[models]]\nname = "normal-gamma"\nlabel = "a/b"\n'
                       'inference = "gibbs"\n[[models]]\nname = "normal-gamma"\nlabel = "a-b"\n'
                       'inference = "gibbs"\n', name="clash.toml")
    with pytest.raises(PyrozooError) as err:
        load_spec(clash)
    assert str(err.value).startswith(f"{clash}: two cells map to the run directory 'a-b/gibbs_seed0'")


def test_malformed_toml_and_missing_file(write_spec, tmp_path):
    bad = write_spec('[sweep\nseeds = [0, 1]\n')
    with pytest.raises(PyrozooError, match="is not valid TOML"):
        load_spec(bad)
    with pytest.raises(PyrozooError, match="does not exist"):
        load_spec(tmp_path / "nope.toml")


def test_cli_reports_bad_input_in_one_line_and_writes_nothing(write_spec, tmp_path, capsys):
    spec = write_spec('[sweep]\nseeds = 2\n[[models]]\nname = "no-such-model"\n')
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pyrozoo: error: {spec}: models[0].name: unknown model 'no-such-model'")
    assert "\n" not in err and not out.exists()
    malformed = write_spec("[[models]]\nname = normal-gamma\n", name="bad.toml")
    assert main(["sweep", str(malformed), "--out", str(out)]) == 2
    assert "is not valid TOML" in capsys.readouterr().err and not out.exists()
    assert main(["sweep", str(spec), "--jobs", "0", "--out", str(out)]) == 2  # model checked first, still an error
    good = write_spec('[sweep]\nseeds = 1\n[[models]]\nname = "normal-gamma"\n', name="good.toml")
    assert main(["sweep", str(good), "--jobs", "0", "--out", str(out)]) == 2
    assert "jobs: expected an integer >= 1, got 0" in capsys.readouterr().err and not out.exists()
    assert main(["sweep", str(good), "--address", "localhost:1", "--out", str(out)]) == 2
    assert "only the ray backend" in capsys.readouterr().err and not out.exists()


def test_dry_run_lists_cells(write_spec, tmp_path, capsys):
    spec = write_spec('[sweep]\nseeds = 2\n[[models]]\nname = "normal-gamma"\n[models.grid]\n'
                      'inference = ["gibbs", "svi"]\n')
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[:2] == ["pending  normal-gamma/gibbs_seed0", "pending  normal-gamma/gibbs_seed1"]
    assert lines[-1].startswith("4 cells in")


def test_float_options_are_named_and_stored_as_floats_however_written():
    """mu_true's default is a float: 1 and 1.0 are one value, one config and one run directory (only integer
    options were normalised, so `mu_true = [1, 2]` then `[1.0, 2.0]` re-ran everything under new names)."""
    as_ints = parse_spec(_with(**{"models__0__grid": {"inference": ["gibbs"], "options": {"mu_true": [1, 2]}}}))
    as_floats = parse_spec(_with(**{"models__0__grid": {"inference": ["gibbs"], "options": {"mu_true": [1.0, 2]}}}))
    assert [c.key for c in as_ints.cells] == [c.key for c in as_floats.cells]
    assert "ng/gibbs_num_samples=30_mu_true=1.0_seed0" in {c.key for c in as_ints.cells}
    for a, b in zip(as_ints.cells, as_floats.cells, strict=True):
        assert a.config == b.config and type(a.config["options"]["mu_true"]) is float
        assert type(a.axes["options.mu_true"]) is float
    # the name an older version gave a cell written with an integer, so that its runs are found again
    cell = next(c for c in as_ints.cells if c.key == "ng/gibbs_num_samples=30_mu_true=1.0_seed0")
    assert cell.earlier_keys == ("ng/gibbs_num_samples=30_mu_true=1_seed0",)
    fixed = parse_spec(_with(**{"models__0__options": {"n": 60, "mu_true": 3}}))
    assert all(type(c.config["options"]["mu_true"]) is float for c in fixed.cells)
    # integer options stay integers, text options text
    assert type(fixed.cells[0].config["options"]["n"]) is int


def test_a_float_option_with_a_none_default_is_named_as_a_float():
    """Review: spike-slab's lam defaults to None (the sample variance of y with --data), so its type no longer came
    from the default and lam = 1 named `em_lam=1_seed0` beside `em_lam=1.0_seed0` for 1.0, two run directories for
    one value; the entry's float_options declares it a float."""
    def cells(lam):
        spec = parse_spec({"sweep": {"name": "g", "out": "o"},
                           "models": [{"name": "spike-slab", "grid": {"inference": ["em"], "options": {"lam": lam}}}]})
        return spec.cells

    as_ints, as_floats = cells([1, 2]), cells([1.0, 2.0])
    assert [c.key for c in as_ints] == [c.key for c in as_floats] == ["spike-slab/em_lam=1.0_seed0",
                                                                      "spike-slab/em_lam=2.0_seed0"]
    assert all(type(c.config["options"]["lam"]) is float for c in as_ints)
    assert as_ints[0].earlier_keys == ("spike-slab/em_lam=1_seed0",)  # the name it had: its runs are found again


def test_float_options_must_name_options():
    """An entry's float_options are checked like its text_options: a misspelt name is an error naming the field."""
    from pyrozoo import registry

    entry = registry.get("spike-slab")
    assert "lam" in entry.float_option_names() and "rho" in entry.float_option_names()
    assert "n" not in entry.float_option_names()
    with pytest.raises(PyrozooError, match=r"float_options of spike-slab: unknown option\(s\) 'lamb'"):
        dataclasses.replace(entry, float_options=("lamb",))


def _sweep_beside_its_data(tmp_path, monkeypatch, column: str, sweep_toml: str) -> tuple[Path, Path]:
    """A folder holding obs.csv (one column) and sweep.toml, and the current directory moved elsewhere (obs.csv is
    not in it); returns (folder, current directory)."""
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "obs.csv").write_text(f"{column}\n1.0\n2.5\n0.5\n")
    (folder / "sweep.toml").write_text(sweep_toml)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return folder, elsewhere


def test_relative_data_path_is_read_from_the_sweep_files_directory(tmp_path, monkeypatch):
    folder, _ = _sweep_beside_its_data(tmp_path, monkeypatch, "y", '[sweep]\nname = "d"\n[[models]]\nname = '
                                       '"normal-gamma"\noptions = { column = "y" }\n[models.grid]\n'
                                       'data = ["obs.csv"]\n')
    (cell,) = load_spec(folder / "sweep.toml").cells
    assert cell.config["data"] == str(folder / "obs.csv")
    assert cell.key == "normal-gamma/gibbs_data=obs.csv_seed0"  # named as written, not by the absolute path
    monkeypatch.chdir(folder)
    assert load_spec("sweep.toml").cells[0].config["data"] == str(folder / "obs.csv")


def test_empty_out_on_the_command_line_names_out(write_spec, tmp_path, capsys):
    good = write_spec('[sweep]\nseeds = 1\n[[models]]\nname = "normal-gamma"\n')
    assert main(["sweep", str(good), "--out", ""]) == 2
    assert capsys.readouterr().err.startswith("pyrozoo: error: out: expected a directory path (--out), got ''")
    with pytest.raises(PyrozooError, match="sweep.out: expected a directory path"):
        parse_spec({"sweep": {"out": " "}, "models": [{"name": "normal-gamma"}]})


def _agnostic(**block):
    return {"sweep": {"name": "ag", "seeds": 2, "tiny": True}, "models": [{"name": "agnostic", **block}]}


def test_combinations_the_model_refuses_are_counted_and_the_grid_is_told_to_split():
    """agnostic's family check refuses momentum with optimizer='adam'. A grid crossing optimizer and momentum was
    refused as a whole on its first such cell with '(remove it)', which no grid axis can do; the error now says how
    many cells are refused and to split the grid into blocks."""
    grid = {"grid": {"options": {"optimizer": ["sgd", "adam"], "momentum": [0.0, 0.9]}}}
    with pytest.raises(PyrozooError) as info:
        parse_spec(_agnostic(**grid))
    message = str(info.value)
    assert message.startswith("models[0] (agnostic): 4 of 8 cells are refused, and a sweep runs only when every cell "
                              "is accepted")
    assert "(first: seed 0, options.optimizer='adam', options.momentum=0.0: momentum: applies only to " in message
    # adam is refused beside either momentum: said as a value to drop or give its own block
    assert message.endswith("options.optimizer='adam' is refused in every cell of this block that has it: remove it "
                            "from the grid, or give it a [[models]] block of its own (with its own label) without the "
                            "values it conflicts with")
    # one cell of four
    one = {"grid": {"steps": [8, 100], "options": {"adversary_warmup": [0, 50]}}}
    with pytest.raises(PyrozooError, match=r"^models\[0\] \(agnostic\): 2 of 8 cells are refused.*first: seed 0, "
                                           r"steps=8, options.adversary_warmup=50: adversary_warmup: "):
        parse_spec(_agnostic(**one))
    with pytest.raises(PyrozooError) as info:
        parse_spec(_agnostic(**one))
    assert str(info.value).endswith("; a grid axis cannot leave a value out of some combinations, so split the grid "
                                    "into separate [[models]] blocks (each with its own label) that hold only "
                                    "combinations agnostic accepts")  # no value is refused in all its cells
    # every cell refused: the block's own values conflict, said as before
    with pytest.raises(PyrozooError, match=r"^models\[0\] \(agnostic, seed 0, options.momentum=0.0\): momentum: "
                                           r"applies only to optimizer='sgd'.*\(remove it\)$"):
        parse_spec(_agnostic(options={"optimizer": "adam"}, grid={"options": {"momentum": [0.0, 0.9]}}))
    # split as advised, it runs
    split = _agnostic(label="sgd", options={"optimizer": "sgd"}, grid={"options": {"momentum": [0.0, 0.9]}})
    split["models"].append({"name": "agnostic", "label": "adam", "options": {"optimizer": "adam"}})
    assert len(parse_spec(split)) == 2 * 2 + 2


def _regime(**block):
    return {"sweep": {"name": "b12", "tiny": True}, "models": [{"name": "regime-scm", **block}]}


def test_regime_scm_values_its_fit_refuses_are_counted_before_any_cell_runs(write_spec, tmp_path, capsys):
    """regime-scm had no check_options: em x mechanism='mlp', mechanism='quadratic' and restarts=0 passed the
    sweep's checks, and their cells failed at run time (.failed/ markers, exit 1) after the others ran."""
    crossed = {"grid": {"inference": ["em", "enum"], "options": {"mechanism": ["linear", "mlp", "quadratic"]}}}
    with pytest.raises(PyrozooError) as info:
        parse_spec(_regime(**crossed))
    message = str(info.value)
    assert message.startswith("models[0] (regime-scm): 3 of 6 cells are refused, and a sweep runs only when every "
                              "cell is accepted")
    # quadratic is no mechanism at all; em x mlp is a combination, which only a split grid can leave out
    assert ("options.mechanism='quadratic' is refused in every cell of this block that has it: remove it from the "
            "grid") in message
    assert message.endswith("; for the other refused cells, a grid axis cannot leave a value out of some "
                            "combinations, so split the grid into separate [[models]] blocks (each with its own "
                            "label) that hold only combinations regime-scm accepts")
    assert ("(first: seed 0, inference='em', options.mechanism='mlp': inference: em has closed-form M-steps only "
            "for mechanism='linear', got mechanism='mlp'") in message
    with pytest.raises(PyrozooError, match=r"^models\[0\] \(regime-scm\): 2 of 4 cells are refused.*first: seed 0, "
                                           r"inference='em', options.restarts=0: restarts: expected an integer >= 1, "
                                           r"got 0\)"):
        parse_spec(_regime(grid={"inference": ["em", "enum"], "options": {"restarts": [0, 2]}}))
    with pytest.raises(PyrozooError, match=r"^models\[0\] \(regime-scm, seed 0, options.mechanism='quadratic'\): "
                                           r"mechanism: expected one of linear, mlp; got 'quadratic'$"):
        parse_spec(_regime(grid={"options": {"mechanism": ["quadratic"]}}))
    # the CLI: one line, exit 2, nothing run or written
    spec = write_spec('[sweep]\nname = "b12"\ntiny = true\n[[models]]\nname = "regime-scm"\n[models.grid]\n'
                      'inference = ["em", "enum"]\n[models.grid.options]\nmechanism = ["linear", "mlp", "quadratic"]\n')
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pyrozoo: error: {spec}: models[0] (regime-scm): 3 of 6 cells are refused")
    assert "\n" not in err and not out.exists()
    # split into blocks the model accepts, it is a sweep
    split = _regime(label="em", grid={"inference": ["em"], "options": {"restarts": [1, 2]}})
    split["models"].append({"name": "regime-scm", "label": "enum",
                            "grid": {"inference": ["enum"], "options": {"mechanism": ["linear", "mlp"]}}})
    assert len(parse_spec(split)) == 2 + 2


def test_a_tiny_size_the_user_made_a_no_op_yields_to_the_users_options():
    """bnn's tiny options set hidden = 9; with the user's depth = 0 the family check refused hidden as a no-op that
    the user never gave. The tiny option is dropped instead; the user's own hidden with depth 0 is still refused."""
    spec = parse_spec({"sweep": {"name": "b", "seeds": 1, "tiny": True},
                       "models": [{"name": "bnn", "options": {"depth": 0}}]})
    (cell,) = spec.cells
    assert cell.config["options"]["depth"] == 0 and "hidden" not in cell.config["options"]
    assert cell.config["options"]["n"] == 40  # the other tiny sizes stay
    with pytest.raises(PyrozooError, match=r"hidden has no effect with depth 0"):
        parse_spec({"sweep": {"name": "b", "seeds": 1, "tiny": True},
                    "models": [{"name": "bnn", "options": {"depth": 0, "hidden": 5}}]})


def test_tiny_options_an_inference_or_design_does_not_read_are_dropped():
    """spike-slab's tiny NUTS tree depth is NUTS's own option (refused with any other inference) and its tiny
    num_signals is the equicorrelated design's: a tiny sweep drops each where the cell would refuse it, while a
    user's own such option is still an error."""
    spec = parse_spec({"sweep": {"tiny": True}, "models": [
        {"name": "spike-slab", "grid": {"inference": ["em", "nuts"]}},
        {"name": "spike-slab", "label": "emvs", "inference": "gibbs", "options": {"design": "emvs"}}]})
    cells = {c.key.split("_seed")[0]: c for c in spec.cells}
    assert "nuts_max_tree_depth" not in cells["spike-slab/em"].config["options"]
    assert cells["spike-slab/nuts"].config["options"]["nuts_max_tree_depth"] == 3
    assert "num_signals" not in cells["emvs/gibbs"].config["options"]
    assert cells["spike-slab/em"].config["options"]["num_signals"] == 2
    with pytest.raises(PyrozooError, match="nuts_max_tree_depth applies only to spike-slab's nuts; with em"):
        parse_spec({"sweep": {"tiny": True}, "models": [
            {"name": "spike-slab", "inference": "em", "options": {"nuts_max_tree_depth": 4}}]})
    with pytest.raises(PyrozooError, match="num_signals applies only to design 'equicorrelated'"):
        parse_spec({"sweep": {"tiny": True}, "models": [
            {"name": "spike-slab", "options": {"design": "emvs", "num_signals": 3}}]})


@pytest.mark.parametrize("seeds,message", [
    (1e20, "sweep.seeds: expected a list of integer seeds in [0, 2**32 - 1] or a count in [1, 2**32] "
           "(seeds 0..count-1), got 1e+20"),  # was an OverflowError traceback from range()
    (2**32 + 1, "or a count in [1, 2**32] (seeds 0..count-1), got 4294967297"),  # seed 2**32 is out of range
    (2.5, "or a count in [1, 2**32] (seeds 0..count-1), got 2.5"),
    ([0, 2**32], "sweep.seeds: expected an integer seed in [0, 2**32 - 1] (at most 4294967295), got 4294967296"),
])
def test_seeds_are_in_numpys_range_and_a_count_stays_within_it(seeds, message):
    with pytest.raises(PyrozooError) as info:
        parse_spec(_with(sweep__seeds=seeds))
    assert message in str(info.value)
    assert [c.config["seed"] for c in parse_spec(_with(sweep__seeds=[2**32 - 1])).cells][-1] == 2**32 - 1


def test_a_grid_of_more_than_max_cells_is_refused_before_its_cells_are_built(monkeypatch):
    """seeds = 100000000 built a list of 10**8 seeds and then checked a RunConfig per cell (about 1 ms apiece: a day
    before the first run, or memory exhausted); now the count is checked per block from the axis lengths, before
    any of the block's cells is built, against MAX_CELLS (the blocks so far included)."""
    import pyrozoo.sweep.spec as spec_module

    with pytest.raises(PyrozooError, match=r"^sweep: the grid has more than the 100,000 cells a sweep may hold "
                                           r"\(100,000,000 up to models\[0\], normal-gamma: 1 grid point x "
                                           r"100,000,000 seeds\); use fewer seeds or axis values, or split it"):
        parse_spec({"sweep": {"seeds": 100_000_000}, "models": [{"name": "normal-gamma"}]})
    built, real = [], spec_module.Cell

    def counted(*args, **kwargs):
        built.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(spec_module, "Cell", counted)
    monkeypatch.setattr(spec_module, "MAX_CELLS", 12)
    two_blocks = {"sweep": {"seeds": 3}, "grid": {"num_samples": [10, 20]},
                  "models": [{"name": "normal-gamma"}, {"name": "normal-gamma", "label": "b"}]}
    assert len(parse_spec(two_blocks)) == 12 and len(built) == 12  # at the cap: a sweep
    built.clear()
    two_blocks["sweep"]["seeds"] = 4
    with pytest.raises(PyrozooError, match=r"more than the 12 cells .* \(16 up to models\[1\], normal-gamma: 2 grid "
                                           r"points x 4 seeds\)"):
        parse_spec(two_blocks)
    assert len(built) == 8  # the first block's cells, none of the second's


def test_a_leading_tilde_in_the_output_root_is_the_home_directory(tmp_path, monkeypatch):
    """`out = "~/x"` in [sweep] (or --out "~/x") used to make a literal `~` folder in the working directory,
    while a `data = "~/..."` path was expanded."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert parse_spec(_with(sweep__out="~/sweeps/x")).out == tmp_path / "home" / "sweeps" / "x"
    assert parse_spec(VALID, out="~/y").out == tmp_path / "home" / "y"


def test_an_error_about_the_sweep_files_contents_names_the_file(write_spec, tmp_path, capsys):
    """QA: a bad value in a sweep file gave its key path (sweep.seeds: ...; models[0] (...): n: ...) but not the
    file. load_spec (and so `pyrozoo sweep`) now puts the file before it; an error about --out does not."""
    cases = {
        "[sweep]\nseeds = [-1]\n[[models]]\nname = \"normal-gamma\"\n": "sweep.seeds: expected",
        "[[models]]\nname = \"normal-gamma\"\n[models.grid.options]\nn = [\"abc\"]\n":
            "models[0] (normal-gamma, seed 0, options.n='abc'): n: option of normal-gamma expects an integer",
        "[sweep]\nout = \"~no-such-user-pyrozoo/x\"\n[[models]]\nname = \"normal-gamma\"\n": "sweep.out: expected",
        "[[models]]\nnam = \"normal-gamma\"\n": "models[0]: unknown key(s) nam",
    }
    for text, expected in cases.items():
        path = write_spec(text)
        with pytest.raises(PyrozooError) as info:
            load_spec(path)
        assert str(info.value).startswith(f"{path}: {expected}"), str(info.value)
        out = tmp_path / "out"
        flags = [] if expected.startswith("sweep.out") else ["--out", str(out)]  # --out would replace the file's
        assert main(["sweep", str(path), *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"pyrozoo: error: {path}: {expected}") and "\n" not in err and not out.exists(), err
    # an error that already begins with the file is not named twice
    empty = write_spec("[sweep]\nseeds = 1\n")
    with pytest.raises(PyrozooError, match=rf"^{re.escape(str(empty))}: no \[\[models\]\] block"):
        load_spec(empty)
    # --out is the command line's, not the file's
    good = write_spec('[sweep]\nseeds = 1\n[[models]]\nname = "normal-gamma"\n')
    for out in ("", "~no-such-user-pyrozoo/y"):
        with pytest.raises(PyrozooError, match=r"^out: expected a directory path"):
            load_spec(good, out=out)


def test_a_relative_out_is_relative_to_the_current_directory_and_data_to_the_file(tmp_path, monkeypatch):
    """As docs/sweeps.md says: [sweep].out (like --out and the default) is taken from the current directory; a
    relative data path in the same file from the sweep file's directory."""
    folder, elsewhere = _sweep_beside_its_data(tmp_path, monkeypatch, "x", '[sweep]\nout = "results/x"\n[[models]]\n'
                                               'name = "normal-gamma"\ndata = "obs.csv"\noptions = { column = "x" }\n')
    spec = load_spec(folder / "sweep.toml")
    assert spec.out.resolve() == elsewhere.resolve() / "results" / "x"
    assert spec.cells[0].config["data"] == str(folder / "obs.csv")


def test_an_integral_float_seed_in_a_sweep_counts_as_the_integer():
    """As docs/sweeps.md says: seeds = [1.0] is seed 1 (one run directory with seeds = [1]), 1.5 is refused."""
    as_float = parse_spec({"sweep": {"seeds": [1.0]}, "models": [{"name": "normal-gamma"}]})
    as_int = parse_spec({"sweep": {"seeds": [1]}, "models": [{"name": "normal-gamma"}]})
    assert [c.key for c in as_float.cells] == [c.key for c in as_int.cells] == ["normal-gamma/gibbs_seed1"]
    assert as_float.cells[0].config["seed"] == 1 and type(as_float.cells[0].config["seed"]) is int
    with pytest.raises(PyrozooError, match=r"^sweep\.seeds: expected an integer seed .*got 1\.5$"):
        parse_spec({"sweep": {"seeds": [1.5]}, "models": [{"name": "normal-gamma"}]})


def test_a_batch_size_of_one_with_the_default_standardizing_adversary_is_refused_before_any_cell_runs():
    """QA11: a grid batch_size = [2, 1] for agnostic ran the batch_size=2 cell and then failed the other in its
    loader ('batch_size: expected 0 ... got 1'): the entry's check refused 1 only with adv_standardize given, while
    the loaders build the network with its default True. The block is now refused up front, naming the value to
    drop; with adv_standardize = false the same grid is accepted."""
    with pytest.raises(PyrozooError) as info:
        parse_spec(_agnostic(grid={"options": {"batch_size": [2, 1]}}))
    message = str(info.value)
    assert message.startswith("models[0] (agnostic): 2 of 4 cells are refused")
    assert "options.batch_size=1: batch_size: expected 0 (full batch) or an integer >= 2 with adv_standardize=True" \
        in message
    assert message.endswith("options.batch_size=1 is refused in every cell of this block that has it: remove it "
                            "from the grid, or give it a [[models]] block of its own (with its own label) without the "
                            "values it conflicts with")
    plain = _agnostic(options={"adv_standardize": False}, grid={"options": {"batch_size": [2, 1]}})
    assert len(parse_spec(plain)) == 4


def test_a_sweep_file_that_is_not_utf8_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    """It was a UnicodeDecodeError traceback; read by the same reader as a --config file."""
    monkeypatch.chdir(tmp_path)
    Path("s.toml").write_bytes(b"# caf\xe9\n")
    assert main(["sweep", "s.toml", "--dry-run"]) == 2
    assert capsys.readouterr().err == ("pyrozoo: error: sweep: s.toml is not UTF-8 text (byte 0xe9 at position 5); "
                                       "TOML files must be UTF-8\n")


def test_a_sweep_file_that_is_a_directory_is_named_as_one(tmp_path, capsys, monkeypatch):
    """It said 'sweep: file . does not exist'."""
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", ".", "--dry-run"]) == 2
    assert capsys.readouterr().err == "pyrozoo: error: sweep: . is a directory; expected a TOML file\n"


@pytest.mark.parametrize("spelling", ["./d.csv", "sub/../d.csv", "link.csv", "{folder}/d.csv"])
def test_two_spellings_of_one_data_file_are_refused_as_one_run(tmp_path, spelling):
    """QA: data = ["d.csv", "sub/d.csv", "./d.csv"] made 3 cells, two of them the same run (same resolved path,
    identical results), which the report averaged as 2 seeds with SE 0. The axis check compared the values as
    written; the cells are now compared as the runs see them (the data file by its real path), before anything
    runs, and the error names the axis, both values and the file."""
    folder = tmp_path / "s"
    (folder / "sub").mkdir(parents=True)
    (folder / "d.csv").write_text("y\n1.0\n2.0\n1.5\n")
    (folder / "sub" / "d.csv").write_text("y\n3.0\n2.0\n4.5\n")  # another file of the same name: another run
    (folder / "link.csv").symlink_to(folder / "d.csv")
    spelling = spelling.format(folder=folder)
    head = ('[sweep]\nname = "dat"\n[defaults]\ndevice = "cpu"\noptions = { column = "y" }\n'
            '[[models]]\nname = "normal-gamma"\n[models.grid]\n')
    (folder / "sweep.toml").write_text(head + f'data = ["d.csv", "sub/d.csv", "{spelling}"]\n')
    with pytest.raises(PyrozooError) as info:
        load_spec(folder / "sweep.toml")
    assert str(info.value) == (
        f"{folder / 'sweep.toml'}: models[0].grid.data: the values 'd.csv' and {spelling!r} are one run (both name "
        f"the file {folder / 'd.csv'}), so the grid would repeat one run under two names and a report would count "
        f"it twice; keep one of them")
    (folder / "sweep.toml").write_text(head + 'data = ["d.csv", "sub/d.csv"]\n')
    spec = load_spec(folder / "sweep.toml")
    assert [c.config["data"] for c in spec.cells] == [str(folder / "d.csv"), str(folder / "sub" / "d.csv")]


def test_two_spellings_of_one_option_value_are_refused_as_one_run():
    """plce reads interactions = true as "linear" (its canonical_options): an axis holding both was two cells, one
    run; refused like the data spellings, naming the value both stand for."""
    data = {"sweep": {"seeds": 2}, "defaults": {"device": "cpu"},
            "models": [{"name": "plce", "grid": {"options": {"interactions": [True, "linear"]}}}]}
    with pytest.raises(PyrozooError, match=re.escape(
            "models[0].grid.options.interactions: the values True and 'linear' are one run (both are "
            "interactions = 'linear' to plce), so the grid would repeat one run under two names")):
        parse_spec(data)
    data["models"][0]["grid"]["options"]["interactions"] = [True, "none"]
    assert len(parse_spec(data)) == 4


@pytest.mark.parametrize("table", ["grid", "models__0__grid"])
@pytest.mark.parametrize("values", [[True, False], [True]])
def test_progress_is_refused_as_a_grid_axis(table, values):
    """QA: progress = [true, false] gave two identical runs per seed, which the report (blind to progress) grouped
    together as 2 seeds with SE 0; with one value it named the run directories after a progress bar. Refused up
    front, naming the key; a single progress value is fine."""
    grid = dict(VALID["grid"] if table == "grid" else VALID["models"][0]["grid"])
    key = "grid" if table == "grid" else "models[0].grid"
    with pytest.raises(PyrozooError, match=re.escape(
            f"{key}.progress: progress does not change a run (it only shows a progress bar), so it cannot be a "
            f"grid axis: its cells would repeat one run under several names; set progress as a single value")):
        parse_spec(_with(**{table: {**grid, "progress": values}}))
    spec = parse_spec(_with(defaults__progress=True))
    assert len(spec) == 24 and all(c.config["progress"] is True and "progress" not in c.key for c in spec.cells)


def test_integer_axis_values_above_2_53_are_not_repeats():
    """QA: n = [2**53 + 1, 2**53] was refused as 'values repeat', as both were compared as floats (2**53 + 1 has no
    float of its own). Integers are now compared exactly; an integer and a float that are one value are still one
    (1 and 1.0), and a float option's 2**53 + 1 and 2.0**53, one value once the option makes them floats, are refused
    as one run."""
    big = 2**53
    data = {"sweep": {"seeds": 1}, "defaults": {"device": "cpu"},
            "models": [{"name": "normal-gamma", "grid": {"options": {"n": [big + 1, big]}}}]}
    assert [c.config["options"]["n"] for c in parse_spec(data).cells] == [big + 1, big]
    for values in ([big, float(big)], [1, 1.0]):
        data["models"][0]["grid"]["options"]["n"] = values
        with pytest.raises(PyrozooError, match=re.escape(f"models[0].grid.options.n: values repeat in {values!r}")):
            parse_spec(data)
    data["models"][0]["grid"] = {"options": {"mu_true": [big + 1, float(big)]}}
    with pytest.raises(PyrozooError, match=re.escape(
            f"models[0].grid.options.mu_true: the values {big + 1} and {float(big)!r} are one run (both are "
            f"mu_true = {float(big)!r} to normal-gamma)")):
        parse_spec(data)


@pytest.mark.parametrize(("label", "taken", "what"), [
    ("sweep.json", "sweep.json", "its list of cells"),
    ("report", "report", "the folder `pyrozoo report` writes the sweep's report into by default"),
    ("Report", "report", "the folder `pyrozoo report` writes the sweep's report into by default"),
])
def test_a_label_naming_an_entry_of_the_output_root_is_refused(write_spec, tmp_path, capsys, label, taken, what):
    """QA: label = "sweep.json" passed --dry-run, then the real run wrote sweep.json and failed with 'cannot create
    OUT/sweep.json/gibbs_seed0.failed: File exists'; label = "report" mixed the cells with the report command's
    default output folder. Such labels are refused at parse time (case-blind, as on macOS), naming the key, and
    nothing is created."""
    path = write_spec(f'[sweep]\nseeds = 1\nout = "{tmp_path / "out"}"\n[defaults]\ndevice = "cpu"\n'
                      f'[[models]]\nname = "normal-gamma"\nlabel = "{label}"\n')
    expected = (f"{path}: models[0].label: expected a label other than {taken!r}, got {label!r}: its run "
                f"directories would go into OUT/{label}, where the sweep's output root keeps {what} ({taken}); "
                f"choose another label")
    with pytest.raises(PyrozooError) as info:
        load_spec(path)
    assert str(info.value) == expected
    for args in (["--dry-run"], []):
        assert main(["sweep", str(path), *args]) == 2
        assert capsys.readouterr().err == f"pyrozoo: error: {expected}\n"
    assert not (tmp_path / "out").exists()


def test_a_label_cannot_name_the_hidden_lock():
    """The root's lock, .sweep.lock, is hidden; a label's folder never is (leading dots are dropped)."""
    spec = parse_spec({"sweep": {"seeds": 1}, "models": [{"name": "normal-gamma", "label": ".sweep.lock"}]})
    assert [c.key for c in spec.cells] == ["sweep.lock/gibbs_seed0"]


def test_distinct_data_values_that_slug_alike_get_distinct_stable_folders(tmp_path, monkeypatch):
    """data = ["a/d.csv", "a-d.csv"] (or "~/d.csv" and "-d.csv") both slug to ``data=a-d.csv`` and were refused with
    advice to give the block distinct labels; now each clashing value gets a stable hash suffix, and only those."""
    (tmp_path / "a").mkdir()
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for path in (tmp_path / "a" / "d.csv", tmp_path / "a-d.csv", home / "d.csv", tmp_path / "-d.csv",
                 tmp_path / "b.csv"):
        path.write_text("x\n1.0\n2.5\n0.5\n")

    def keys(data):
        spec = parse_spec({"sweep": {"seeds": 1}, "models": [{"name": "normal-gamma", "inference": "gibbs",
                                                               "options": {"column": "x"}, "grid": {"data": data}}]},
                          base_dir=tmp_path)
        return [c.key for c in spec.cells]

    for data in (["a/d.csv", "a-d.csv", "b.csv"], ["~/d.csv", "-d.csv"]):
        got = keys(data)
        assert len(set(got)) == len(got) == len(data)
        assert all(re.fullmatch(r"normal-gamma/gibbs_data=-?a?-?d\.csv\+[0-9a-f]{8}_seed0", k) for k in got[:2])
        assert got == keys(data)  # deterministic: a resumed sweep finds its folders again
    assert keys(["a/d.csv", "a-d.csv", "b.csv"])[2] == "normal-gamma/gibbs_data=b.csv_seed0"  # no clash: as before
    assert keys(["a/d.csv", "b.csv"]) == ["normal-gamma/gibbs_data=a-d.csv_seed0",
                                          "normal-gamma/gibbs_data=b.csv_seed0"]
    assert keys(["a/d.csv", "a-d.csv"])[0] == keys(["a-d.csv", "a/d.csv"])[1]  # the suffix is the value's own
