"""A user's table for the agnostic classifier (``pyrozoo run agnostic --data my.csv -o target=y -o protected=g``)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

from pyrozoo.config import RunConfig
from pyrozoo.data.agnostic_file import FRACTIONS, MIN_ROWS, read_agnostic_file
from pyrozoo.errors import PyrozooError

TINY = ["--steps", "3", "--num-samples", "4", "--no-progress", "--device", "cpu"]


def _table(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """Target ``income`` (text), protected ``sex`` (text); ``b`` carries the group, ``a`` the target."""
    rng = np.random.default_rng(seed)
    y, g = rng.integers(0, 2, n), rng.choice(["f", "m"], n)
    return pd.DataFrame({"a": y + 0.5 * rng.standard_normal(n), "b": (g == "f") + 0.3 * rng.standard_normal(n),
                         "income": np.where(y == 1, "high", "low"), "sex": g})


def _csv(tmp_path, df=None, name="people.csv"):
    df = _table() if df is None else df
    path = tmp_path / name
    df.to_csv(path, index=False)
    return str(path), df


def test_reads_recodes_splits_and_standardizes(tmp_path):
    df = _table()
    df.loc[:5, "income"] = None  # rows with only the protected label teach the adversary
    path, _ = _csv(tmp_path, df)
    data = read_agnostic_file(path, 0, target="income", protected="sex")
    meta = data.meta
    assert meta["y_classes"] == ["high", "low"] and meta["p_classes"] == ["f", "m"]
    assert meta["feature_names"] == ["a", "b"] and meta["leakage_split"] == "test"
    rows = meta["split_rows"]
    together = np.concatenate([rows["train"], rows["probe"], rows["test"]])
    assert sorted(together.tolist()) == list(range(len(df)))  # a partition of the file's rows
    assert len(rows["train"]) == pytest.approx(FRACTIONS[0] * len(df), abs=4)
    x_train = df[["a", "b"]].to_numpy()[rows["train"]]
    np.testing.assert_allclose(data.inputs["x"].numpy(), (x_train - x_train.mean(0)) / x_train.std(0), atol=1e-5)
    # labels recoded as make_agnostic_data does; missing target labels left out of the target plate
    y_train = df["income"].to_numpy()[rows["train"]]
    has_y = pd.notna(y_train)
    np.testing.assert_array_equal(data.inputs["target_idx"].numpy(), np.flatnonzero(has_y))
    np.testing.assert_array_equal(data.observed["y"].numpy(), (y_train[has_y] == "low").astype(int))
    assert len(data.observed["p"]) == len(rows["train"])
    test_p = data.meta["splits"]["test"]["p"].numpy()
    np.testing.assert_array_equal(test_p, (df["sex"].to_numpy()[rows["test"]] == "m").astype(int))


def test_the_split_is_seeded_and_stratified_and_features_are_taken_as_named(tmp_path):
    path, df = _csv(tmp_path)
    a, b = (read_agnostic_file(path, s, target="income", protected="sex", features="b") for s in (0, 0))
    np.testing.assert_array_equal(a.meta["split_rows"]["test"], b.meta["split_rows"]["test"])
    other = read_agnostic_file(path, 1, target="income", protected="sex", features="b")
    assert not np.array_equal(a.meta["split_rows"]["test"], other.meta["split_rows"]["test"])
    assert a.meta["feature_names"] == ["b"] and a.inputs["x"].shape[1] == 1
    for split in ("probe", "test"):  # every (target, protected) pair of 15 rows or so is in each part
        got = df.iloc[a.meta["split_rows"][split]]
        assert got.groupby(["income", "sex"]).size().size == df.groupby(["income", "sex"]).size().size


def test_integer_labels_in_any_coding(tmp_path):
    df = _table()
    df["income"] = np.where(df["income"] == "high", 5, 2)
    df["sex"] = np.where(df["sex"] == "f", 1, 2)
    path, _ = _csv(tmp_path, df)
    data = read_agnostic_file(path, 0, target="income", protected="sex")
    assert data.meta["y_classes"] == [2, 5] and data.meta["p_classes"] == [1, 2]


def _with(**changes):
    def make():
        df = _table()
        for k, v in changes.items():
            if callable(v):
                v(df)
            else:
                df[k] = v
        return df
    return make


def _set(column, row, value):
    def change(df):
        df[column] = df[column].astype(object)
        df.loc[row, column] = value
    return change


BAD = {
    "no target": ({"protected": "sex"}, _with(),
                  r"target: expected the name of the target-label column of .* \(-o target=COLUMN\), got ''"),
    "no protected": ({"target": "income"}, _with(),
                     r"protected: expected the name of the protected-concept column .*got ''"),
    "same column": ({"target": "sex", "protected": "sex"}, _with(),
                    r"protected: column 'sex' is also the target column"),
    "unknown target": ({"target": "wage", "protected": "sex"}, _with(),
                       r"target: data .* has no column\(s\) 'wage'; columns are a, b, income, sex"),
    "unknown protected": ({"target": "income", "protected": "gender"}, _with(),
                          r"protected: data .* has no column\(s\) 'gender'; columns are a, b, income, sex"),
    "unknown feature": ({"target": "income", "protected": "sex", "features": "a,q"}, _with(),
                        r"features: data .* has no column\(s\) 'q'; columns are a, b, income, sex"),
    "feature is the target": ({"target": "income", "protected": "sex", "features": "a,income"}, _with(),
                              r"features: 'income' is the target column; features must be other columns"),
    "feature is protected": ({"target": "income", "protected": "sex", "features": "sex,b"}, _with(),
                             r"features: 'sex' is the protected column"),
    "feature twice": ({"target": "income", "protected": "sex", "features": "a,a"}, _with(), r"features: .*'a'"),
    "text feature": ({"target": "income", "protected": "sex"}, _with(city="x"),
                     r"column\(s\) 'city' are not numeric; .*-o features=a,b"),
    "named text feature": ({"target": "income", "protected": "sex", "features": "a,city"}, _with(city="x"),
                           r"column 'city' has non-numeric values \(first at data row 0 "
                           r"\(0-based, \.iloc\[0\]\): 'x'\)"),
    "nan feature": ({"target": "income", "protected": "sex"}, _with(b=_set("b", 3, np.nan)),
                    r"column 'b' has 1 missing or non-finite value\(s\) \(first at data row 3 "
                    r"\(0-based, \.iloc\[3\]\)"),
    "inf feature": ({"target": "income", "protected": "sex"}, _with(a=_set("a", 0, np.inf)),
                    r"column 'a' has 1 missing or non-finite value\(s\) \(first at data row 0 "
                    r"\(0-based, \.iloc\[0\]\)"),
    "constant feature": ({"target": "income", "protected": "sex"}, _with(k=1.0), r"column\(s\) 'k' are constant"),
    "one target class": ({"target": "income", "protected": "sex"}, _with(income="high"),
                         r"target: column 'income' of data .* has only class 'high'; expected at least 2 classes"),
    "one protected class": ({"target": "income", "protected": "sex"}, _with(sex="f"),
                            r"protected: column 'sex' of data .* has only class 'f'; expected at least 2 classes"),
    "no protected labels": ({"target": "income", "protected": "sex"}, _with(sex=np.nan),
                            r"protected: column 'sex' of data .* has no labelled rows"),
    "inf label": ({"target": "k", "protected": "sex", "features": "a,b"}, _with(k=np.r_[np.inf, np.arange(59) % 2]),
                  r"target: column 'k' of data .*: expected integer class labels or NaN for missing, found inf"),
    "non-integer label": ({"target": "income", "protected": "k", "features": "a,b"},
                          _with(k=np.r_[0.5, np.arange(59) % 2]),
                          r"protected: column 'k' of data .*: expected integer class labels, got non-integers such "
                          r"as 0.5"),
    "few rows": ({"target": "income", "protected": "sex"}, lambda: _table(MIN_ROWS - 1),
                 rf"expected at least {MIN_ROWS} data rows .*, got {MIN_ROWS - 1}"),
    "protected class too rare": ({"target": "income", "protected": "sex"},
                                 _with(sex=np.r_[["m"], ["f"] * 59]),
                                 r"protected: column 'sex' .* too few labelled rows per class to hold out a probe"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_clear_error(case, tmp_path):
    options, make, message = BAD[case]
    path, _ = _csv(tmp_path, make())
    with pytest.raises(PyrozooError, match=message):
        read_agnostic_file(path, 0, **options)


def test_entry_loads_a_file_with_its_network_and_refuses_other_sources_options(tmp_path):
    from pyrozoo.models.agnostic import agnostic_entry

    path, _ = _csv(tmp_path)
    entry = agnostic_entry()
    cfg = entry.check_config(RunConfig(model="agnostic", data=path, steps=3, num_samples=4, progress=False,
                                       device="cpu", options={"target": "income", "protected": "sex",
                                                              "feature_dim": 4, "hidden": 8}))
    data = entry.load_data(cfg)
    assert data.inputs["net"].feature_dim == 4 and data.inputs["x"].shape[1] == 2
    result = entry.fit(data, cfg)
    metrics = entry.metrics(result, data)
    assert {"test_target_acc", "probe_logreg_acc", "test_dp_diff"} <= set(metrics)
    idata = result.to_inference_data()
    assert {"posterior", "log_likelihood", "observed_data"} <= set(idata.groups())
    with pytest.raises(PyrozooError, match=r"options: train_corr applies only to the simulated data or dataset "
                                           r"'digits'; with a data file \(--data\)"):
        entry.check_config(RunConfig(model="agnostic", data=path, options={"target": "income", "protected": "sex",
                                                                           "train_corr": 0.9}))
    with pytest.raises(PyrozooError, match=r"options: target applies only to a data file \(--data\)"):
        entry.check_config(RunConfig(model="agnostic", dataset="cps1985", options={"target": "income"}))


def test_cli_run_end_to_end_then_diagnose_and_rerun_from_its_config(tmp_path, capsys):
    from pyrozoo.cli import main

    path, _ = _csv(tmp_path)
    out = tmp_path / "run"
    assert main(["run", "agnostic", "--data", path, "-o", "target=income", "-o", "protected=sex",
                 "-o", "features=a,b", "-o", "alpha=0.5", "--out", str(out), *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["alpha"] == 0.5 and "probe_mlp_acc" in metrics and "test_eo_diff" in metrics
    assert {p.name for p in out.iterdir()} >= {"config.toml", "idata.nc", "metrics.json", "params.pt"}
    assert main(["diagnose", str(out), "--no-plots", "--max-rows", "2"]) == 0
    again = tmp_path / "again"
    assert main(["run", "agnostic", "--config", str(out / "config.toml"), "--out", str(again)]) == 0
    assert json.loads((again / "metrics.json").read_text())["test_target_acc"] == metrics["test_target_acc"]


def test_a_toml_config_with_features_as_a_list(tmp_path):
    from pyrozoo.cli import main

    path, _ = _csv(tmp_path)
    config = tmp_path / "run.toml"
    config.write_text(f'model = "agnostic"\ndata = "{path}"\nsteps = 3\nnum_samples = 4\nprogress = false\n'
                      f'device = "cpu"\n[options]\ntarget = "income"\nprotected = "sex"\nfeatures = ["b"]\n')
    out = tmp_path / "run"
    assert main(["run", "agnostic", "--config", str(config), "--out", str(out)]) == 0
    params = torch.load(out / "params.pt")
    first = next(v for k, v in params.items() if k.endswith("extractor.body.0.weight"))
    assert first.shape[1] == 1  # one feature column read


def test_a_sweep_over_alpha_on_a_data_file(tmp_path):
    from pyrozoo.cli import main

    path, _ = _csv(tmp_path)
    spec = tmp_path / "sweep.toml"
    spec.write_text(f'[sweep]\nname = "agn"\nseeds = [0]\n[defaults]\ndevice = "cpu"\nsteps = 3\nnum_samples = 4\n'
                    f'data = "{path}"\n[[models]]\nname = "agnostic"\n'
                    f'options = {{ target = "income", protected = "sex" }}\n'
                    f'[models.grid.options]\nalpha = [0.0, 0.5]\n')
    out = tmp_path / "sweep"
    assert main(["sweep", str(spec), "--out", str(out), "-q"]) == 0
    assert len(list(out.rglob("metrics.json"))) == 2


@pytest.mark.parametrize("flags,message", [
    ([], r"target: expected the name of the target-label column"),
    (["-o", "target=income", "-o", "protected=gender"], r"protected: data .* has no column\(s\) 'gender'; columns "
                                                       r"are a, b, income, sex"),
    (["-o", "target=income", "-o", "protected=sex", "-o", "features=income"], r"features: 'income' is the target"),
    (["-o", "target=income", "-o", "protected=sex", "-o", "noise=0.2"],
     r"options: noise applies only to the simulated data or dataset 'digits'; with a data file"),
])
def test_bad_input_from_the_cli_is_one_line_exit_2_and_no_run_directory(flags, message, tmp_path, capsys):
    from pyrozoo.cli import main

    path, _ = _csv(tmp_path)
    out = tmp_path / "run"
    assert main(["run", "agnostic", "--data", path, *flags, "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and not out.exists()
    assert re.search(message, err), err


def test_missing_file_and_file_options_without_a_file_are_refused(tmp_path, capsys):
    from pyrozoo.cli import main

    out = tmp_path / "run"
    assert main(["run", "agnostic", "--data", str(tmp_path / "nope.csv"), "-o", "target=y", "-o", "protected=p",
                 "--out", str(out)]) == 2
    assert "data: file" in capsys.readouterr().err and not out.exists()
    assert main(["run", "agnostic", "-o", "target=y", "--out", str(out)]) == 2
    assert "options: target applies only to a data file (--data)" in capsys.readouterr().err and not out.exists()


def test_the_docs_toml_config_runs(tmp_path, monkeypatch):
    """docs/agnostic.md's TOML block for a data file, as written but with 3 steps instead of 600."""
    from pathlib import Path

    from pyrozoo.cli import main

    text = (Path(__file__).parents[2] / "docs" / "agnostic.md").read_text()
    section = text.split("## Your own data (command line)")[1].split("## Your own data (Python)")[0]
    block = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    assert "steps = 600" in block
    df = _table().rename(columns={"a": "age", "b": "hours"}).assign(other=1.0)  # "other" is left out by features
    monkeypatch.chdir(tmp_path)
    df.to_csv("people.csv", index=False)
    (tmp_path / "run.toml").write_text(block.replace("steps = 600", "steps = 3\nnum_samples = 4\nprogress = false"))
    assert main(["run", "agnostic", "--config", "run.toml", "--device", "cpu", "--out", "run"]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["alpha"] == 0.5


def test_loo_names_the_files_rows_on_both_observation_axes(tmp_path):
    """target_id and protected_id held positions among the training rows (0, 1, 2 ...), not the file's data rows
    (meta["split_rows"]["train"]), so az.loo's pareto_k could not be traced back to the table."""
    import arviz as az

    from pyrozoo.runner import run_model

    df = _table(80, seed=1)
    df.loc[[3, 10, 17, 40], "income"] = None  # rows without a target label: target_id skips them
    path, _ = _csv(tmp_path, df)
    out = run_model(RunConfig(model="agnostic", data=path, steps=3, num_samples=20, progress=False, device="cpu",
                              options={"target": "income", "protected": "sex", "features": "a,b"}), save=False)
    train = read_agnostic_file(path, 0, target="income", protected="sex").meta["split_rows"]["train"]
    idata = out.result.to_inference_data()
    k = az.loo(idata, var_name="y", pointwise=True).pareto_k
    has_y = df["income"].notna().to_numpy()
    assert k.target_id.values.tolist() == [r for r in train.tolist() if has_y[r]]
    assert idata.log_likelihood["p"].protected_id.values.tolist() == train.tolist()
    assert idata.observed_data["y"].target_id.values.tolist() == k.target_id.values.tolist()


def test_a_label_spelled_na_is_a_class_not_a_missing_label(tmp_path):
    """A protected column NA/EU/AS (North America, ...) lost its class NA to pandas' default NA strings without a
    message; an empty cell is still a missing label."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.standard_normal(60), "b": rng.standard_normal(60), "t": rng.integers(0, 2, 60),
                       "region": rng.choice(["NA", "EU", "AS"], 60)})
    df.loc[:2, "region"] = None  # written as empty cells
    path, _ = _csv(tmp_path, df, "na.csv")
    data = read_agnostic_file(path, 0, target="t", protected="region")
    assert data.meta["p_classes"] == ["AS", "EU", "NA"]
    from pyrozoo.data.shipped import read_table

    assert read_table(path)["region"].isna().tolist() == [True] * 3 + [False] * 57


def test_a_test_split_with_one_protected_class_is_the_readers_own_error(tmp_path):
    """4 rows of class B, stratified with the target into strata of 2: one training and one probe row each, no test
    row. The check asked only for a labelled test row, so make_agnostic_data refused instead, naming
    "splits[test].p", an internal split the --data user never made."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"f1": rng.normal(size=40), "f2": rng.normal(size=40), "y": [0, 1] * 18 + [0, 0, 1, 1],
                       "p": ["A"] * 36 + ["B"] * 4})
    path, _ = _csv(tmp_path, df, "ag.csv")
    with pytest.raises(PyrozooError, match=r"^protected: column 'p' of data .*ag\.csv has too few labelled rows per "
                                           r"class to hold out a probe split and a test split with 2 classes each "
                                           r"\(got probe classes \['A', 'B'\], test classes \['A'\]\); .*give more "
                                           r"rows$"):
        read_agnostic_file(path, 0, target="y", protected="p")


def test_text_labels_lose_surrounding_whitespace(tmp_path):
    """QA: a label cell 'm ' (trailing space) was a class of its own beside 'm', while ' m' was 'm' (pandas'
    skipinitialspace): surrounding whitespace is dropped from text labels now, in the target and protected columns."""
    df = _table()
    path = tmp_path / "people.csv"
    text = df.to_csv(index=False).replace(",m\n", ",m \n", 5).replace(",high,", ",high\t,", 3)
    path.write_text(text)
    assert "m \n" in path.read_text() and "high\t" in path.read_text()
    data = read_agnostic_file(str(path), 0, target="income", protected="sex")
    assert data.meta["y_classes"] == ["high", "low"] and data.meta["p_classes"] == ["f", "m"]
    rows = data.meta["split_rows"]["train"]
    np.testing.assert_array_equal(data.observed["p"].numpy(), (df["sex"].to_numpy()[rows] == "m").astype(int))


def test_a_minus_one_cell_in_a_text_label_column_is_a_missing_label(tmp_path):
    """QA: the docs and the loader's error say an empty cell (or -1) is a missing label, but in a text column a
    '-1' cell became a class '-1'; it is a missing label there too, as in an integer-coded column."""
    df = _table()
    df.loc[:7, "income"] = "-1"
    df.loc[8:11, "sex"] = " -1 "
    path, _ = _csv(tmp_path, df)
    data = read_agnostic_file(path, 0, target="income", protected="sex")
    assert data.meta["y_classes"] == ["high", "low"] and data.meta["p_classes"] == ["f", "m"]
    rows = data.meta["split_rows"]["train"]
    y_given = df["income"].to_numpy()[rows] != "-1"
    p_given = df["sex"].to_numpy()[rows] != " -1 "
    np.testing.assert_array_equal(data.inputs["target_idx"].numpy(), np.flatnonzero(y_given))
    np.testing.assert_array_equal(data.inputs["protected_idx"].numpy(), np.flatnonzero(p_given))
    only = df.assign(income=np.where(np.arange(len(df)) % 2, "-1", "high"))  # one class left: refused, naming -1
    path, _ = _csv(tmp_path, only, name="one.csv")
    with pytest.raises(PyrozooError, match=r"has only class 'high'; expected at least 2 classes \(an empty cell or "
                                           r"-1 is a missing label\)"):
        read_agnostic_file(path, 0, target="income", protected="sex")


def test_training_rows_with_neither_label_are_left_out(tmp_path):
    """QA: rows with both label cells blank were kept in x (72 rows with 60 labelled): they carry no signal, and the
    docs say x holds every training row with either label. They are left out of x, the training moments and
    split_rows["train"] now; the probe and test rows are as before."""
    df = pd.concat([_table(), _table(12, seed=1).assign(income=None, sex=None)], ignore_index=True)
    path, _ = _csv(tmp_path, df)
    data = read_agnostic_file(path, 0, target="income", protected="sex")
    rows = data.meta["split_rows"]
    assert (rows["train"] < 60).all() and data.inputs["x"].shape[0] == len(rows["train"])
    dropped = set(range(len(df))) - set(np.concatenate([rows["train"], rows["probe"], rows["test"]]).tolist())
    assert len(dropped) == 7 and min(dropped) >= 60  # the unlabelled stratum's 60% (7 of 12) that was training
    x_train = df[["a", "b"]].to_numpy()[rows["train"]]
    np.testing.assert_allclose(data.meta["x_mean"], x_train.mean(0))
    np.testing.assert_allclose(data.inputs["x"].numpy(), (x_train - x_train.mean(0)) / x_train.std(0), atol=1e-5)
    assert len(data.inputs["protected_idx"]) == len(rows["train"])  # every kept row has its protected label here
