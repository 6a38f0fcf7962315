"""pyrozoo report: the runs table, grouped means and standard errors, Markdown/CSV files and plots."""

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from pyrozoo.cli import main
from pyrozoo.errors import PyrozooError
from pyrozoo.sweep.report import build_report, collect_runs, grouped_summary, to_markdown
from pyrozoo.sweep.runner import run_sweep
from pyrozoo.sweep.spec import load_spec

SWEEP = """
[sweep]
name = "report-test"
seeds = 3
tiny = true

[defaults]
device = "cpu"

[[models]]
name = "normal-gamma"
inference = "gibbs"
[models.grid.options]
n = [20, 80]
sigma_true = [-1.0, 2.0]
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """3 seeds x n in {20, 80} x sigma_true in {-1 (fails), 2}; one of the good cells left pending."""
    root = tmp_path_factory.mktemp("report")
    path = root / "sweep.toml"
    path.write_text(SWEEP)
    spec = load_spec(path, out=root / "runs")
    good = [c for c in spec.cells if c.config["options"]["sigma_true"] > 0]
    bad = [c for c in spec.cells if c.config["options"]["sigma_true"] < 0]
    spec.cells = bad[:1] + good[:-1] + bad[1:] + good[-1:]  # the last good cell is pending (limit below)
    run_sweep(spec, jobs=1, limit=len(spec.cells) - 1)
    spec.cells = bad + good
    return spec, good[-1]


def test_runs_table_has_every_run_with_status_config_and_metrics(swept):
    spec, pending = swept
    table = collect_runs(spec.out)
    assert len(table) == 12
    counts = table["status"].value_counts().to_dict()
    assert counts == {"ok": 5, "failed": 6, "pending": 1}
    assert table.loc[table["status"] == "pending", "run"].tolist() == [pending.key]
    assert {"model", "inference", "seed", "options.n", "options.sigma_true", "mu_mean", "wall_time"} <= set(table)
    failed = table[table["status"] == "failed"]
    assert failed["error"].str.contains("sigma_true").all() and failed["mu_mean"].isna().all()
    for row in table[table["status"] == "ok"].itertuples():
        stored = json.loads((spec.out / row.run / "metrics.json").read_text())
        assert row.mu_mean == stored["mu_mean"] and row.seed == stored["seed"]


def test_grouped_means_and_standard_errors(swept):
    spec, _ = swept
    table = collect_runs(spec.out)
    summary = grouped_summary(table)
    # failed and pending runs are not in the groups; sigma_true has only one completed value, so groups are by n
    assert summary["options.n"].tolist() == [20, 80] and summary["n"].tolist() == [3, 2]
    for n_obs, row in zip((20, 80), summary.itertuples(), strict=True):
        values = [json.loads((spec.out / r / "metrics.json").read_text())["mu_mean"]
                  for r in table.loc[(table["status"] == "ok") & (table["options.n"] == n_obs), "run"]]
        assert math.isclose(row.mu_mean_mean, np.mean(values), rel_tol=1e-12)
        assert math.isclose(row.mu_mean_se, np.std(values, ddof=1) / math.sqrt(len(values)), rel_tol=1e-12)
    by_seed = grouped_summary(table, by=["seed"], metrics=["mu_mean"])
    assert list(by_seed.columns) == ["seed", "n", "not_converged", "mu_mean_mean", "mu_mean_se"]  # gibbs runs
    with pytest.raises(PyrozooError, match="by: unknown column"):
        grouped_summary(table, by=["alpha"])


def test_a_metric_some_runs_of_a_group_lack_gets_its_own_count(swept, tmp_path, capsys):
    """n is the group size, but a metric's SE divides by the runs that recorded it: the summary showed n = 3 beside
    an SE over 2 runs. Such a metric gets METRIC_n (the count its mean and SE are over); the others do not."""
    import shutil

    spec, _ = swept
    root = tmp_path / "runs"
    shutil.copytree(spec.out, root)
    table = collect_runs(root)
    runs = table.loc[(table["status"] == "ok") & (table["options.n"] == 20), "run"].tolist()
    assert len(runs) == 3
    metrics = json.loads((root / runs[0] / "metrics.json").read_text())
    del metrics["mu_mean"]
    (root / runs[0] / "metrics.json").write_text(json.dumps(metrics))
    table = collect_runs(root)
    summary = grouped_summary(table)
    assert summary["n"].tolist() == [3, 2] and summary["mu_mean_n"].tolist() == [2, 2]
    assert "mu_sd_n" not in summary.columns  # every run has it: n says it
    cols = list(summary.columns)
    assert cols[cols.index("mu_mean_mean"):cols.index("mu_mean_mean") + 3] == ["mu_mean_mean", "mu_mean_se",
                                                                                 "mu_mean_n"]
    kept = [json.loads((root / r / "metrics.json").read_text())["mu_mean"] for r in runs[1:]]
    assert math.isclose(summary["mu_mean_se"].iloc[0], np.std(kept, ddof=1) / math.sqrt(2), rel_tol=1e-12)
    assert math.isclose(summary["mu_mean_mean"].iloc[0], np.mean(kept), rel_tol=1e-12)
    # written to summary.csv; the console's "more in summary.md" names metrics, not their columns
    assert main(["report", str(root), "--no-plots"]) == 0
    assert pd.read_csv(root / "report" / "summary.csv")["mu_mean_n"].tolist() == [2, 2]
    more = [line for line in capsys.readouterr().out.splitlines() if line.startswith("(more in summary.md")]
    assert more and "_n" not in more[0].replace("_z_vs_exact", "") and "mu_mean_n" not in more[0]


def test_report_files_and_plots(swept, tmp_path):
    spec, _ = swept
    report = build_report(spec.out, out=tmp_path / "rep")
    names = {p.relative_to(tmp_path / "rep").as_posix() for p in report.files}
    assert {"runs.csv", "runs.md", "summary.csv", "summary.md"} <= names
    assert {"plots/normal-gamma/metrics_vs_seed.png", "plots/normal-gamma/metrics_vs_n.png"} <= names
    for p in report.files:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    assert len(pd.read_csv(tmp_path / "rep" / "runs.csv")) == 12
    md = (tmp_path / "rep" / "summary.md").read_text().splitlines()
    assert md[0].startswith("| model | label | options.n | n | ") and md[1].startswith("|---|") and len(md) == 4
    with pytest.raises(PyrozooError, match="metric: unknown metric"):
        build_report(spec.out, out=tmp_path / "x", metrics=["nope"])


def test_report_cli(swept, tmp_path, capsys):
    spec, _ = swept
    assert main(["report", str(spec.out), "--out", str(tmp_path / "r"), "--no-plots", "--metric", "mu_mean"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"12 runs: 6 failed, 5 ok( \(\d not converged\))?, 1 pending", out)
    assert "| n | not_converged | mu_mean_mean | mu_mean_se |" in out
    assert "failed: normal-gamma/gibbs_n=20_sigma_true=-1.0_seed0: PyrozooError: sigma_true" in out
    assert not (tmp_path / "r" / "plots").exists()
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "runs_dir:" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no run directories" in capsys.readouterr().err


def test_markdown_table():
    """Blank cells (NaN, a nullable integer's <NA>, None) read "-" in the printed tables; integers stay integers."""
    df = pd.DataFrame({"a": ["x|y", None], "b": [1.23456789, float("nan")],
                       "c": pd.array([2, None], dtype="Int64")})
    assert to_markdown(df) == "| a | b | c |\n|---|---|---|\n| x\\|y | 1.235 | 2 |\n| - | - | - |\n"


def test_only_settings_get_a_plot_even_when_metrics_are_chosen(swept, tmp_path):
    spec, _ = swept
    report = build_report(spec.out, out=tmp_path / "rep", metrics=["mu_mean"])
    pngs = sorted(p.name for p in report.files if p.suffix == ".png")
    assert pngs == ["metrics_vs_n.png", "metrics_vs_seed.png"]


def test_runs_the_sweep_no_longer_lists_are_stale_not_counted(tmp_path, capsys):
    """Narrowing the n axis to [80] leaves the n = 20 directories beside the sweep's cells: they are shown as stale
    and left out of the summary (a removed axis would re-run a config under a new key, and count it twice)."""
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP.replace("sigma_true = [-1.0, 2.0]", "sigma_true = [2.0]").replace("seeds = 3", "seeds = 2"))
    run_sweep(load_spec(path, out=tmp_path / "runs"), jobs=1)
    path.write_text(SWEEP.replace("n = [20, 80]\nsigma_true = [-1.0, 2.0]", "n = [80]\nsigma_true = [2.0]")
                    .replace("seeds = 3", "seeds = 2"))
    run_sweep(load_spec(path, out=tmp_path / "runs"), jobs=1)
    table = collect_runs(tmp_path / "runs")
    assert table.loc[table["status"] == "stale", "run"].str.contains("n=20").tolist() == [True, True]
    assert (table["status"] == "ok").sum() == 2 and grouped_summary(table)["n"].tolist() == [2]
    assert main(["report", str(tmp_path / "runs"), "--no-plots"]) == 0
    assert "2 run directories are not cells of the sweep any more" in capsys.readouterr().out


def test_two_sweeps_in_one_folder_one_with_pending_cells(tmp_path, capsys):
    """A folder holding two sweeps, the second stopped by --limit: one report with every cell (the pending rows
    used to be left out of the owners that the stale check walks beside the rows, and the report crashed)."""
    path = tmp_path / "sweep.toml"
    path.write_text('[sweep]\nname = "a"\nseeds = 2\ntiny = true\n[defaults]\ndevice = "cpu"\n'
                    '[[models]]\nname = "normal-gamma"\ninference = "gibbs"\n')
    run_sweep(load_spec(path, out=tmp_path / "R" / "a"), jobs=1)
    run_sweep(load_spec(path, out=tmp_path / "R" / "b"), jobs=1, limit=1)
    table = collect_runs(tmp_path / "R")
    assert table["status"].value_counts().to_dict() == {"ok": 3, "pending": 1}
    assert table.loc[table["status"] == "pending", "run"].str.startswith("b/").all()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "R"), "--no-plots"]) == 0
    assert re.search(r"4 runs: 3 ok( \(\d not converged\))?, 1 pending", capsys.readouterr().out)


def test_console_table_shows_each_models_own_metrics(tmp_path, capsys):
    """Two models with different metrics: each gets a table with its own columns (the first model's columns used
    to be shown for every row, empty for the second model)."""
    path = tmp_path / "sweep.toml"
    path.write_text('[sweep]\nname = "mm"\nseeds = 2\ntiny = true\n[defaults]\ndevice = "cpu"\n'
                    '[[models]]\nname = "normal-gamma"\ninference = "gibbs"\n'
                    '[[models]]\nname = "blr"\ninference = "exact"\n')
    run_sweep(load_spec(path, out=tmp_path / "runs"), jobs=1)
    capsys.readouterr()
    assert main(["report", str(tmp_path / "runs"), "--no-plots"]) == 0
    lines = capsys.readouterr().out.splitlines()
    heads = [i for i, line in enumerate(lines) if line.startswith("| model")]
    assert len(heads) == 2
    by_model = {lines[i + 2].split("|")[1].strip(): (lines[i], lines[i + 2]) for i in heads}
    assert "beta_mean_mean" in by_model["normal-gamma"][0] and "rmse_in_sample_mean" in by_model["blr"][0]
    assert not any("nan" in row.lower() for _, row in by_model.values())
    # blr's simulator options (options.d, options.n ...) are settings normal-gamma lacks: not in its table as "-"
    assert "options.d" in by_model["blr"][0] and "options.d" not in by_model["normal-gamma"][0]
    assert "| - |" not in by_model["normal-gamma"][1]
    # normal-gamma has more metrics than the console shows: the rest are named, not dropped in silence
    assert any(line.startswith("(more in summary.md for normal-gamma: ") for line in lines)


def _plain_run(out, seed, inference="gibbs"):
    """What `pyrozoo run normal-gamma --seed S` writes (tiny settings)."""
    from pyrozoo.config import RunConfig
    from pyrozoo.runner import run_model

    config = RunConfig(model="normal-gamma", inference=inference, seed=seed, device="cpu", num_samples=50,
                       warmup_steps=30, num_chains=2, progress=False)
    run_model(config, out=out, save=True)



def test_plain_runs_are_grouped_by_their_settings_at_any_directory_level(tmp_path):
    """`pyrozoo run` twice (seeds 0 and 1): reported from runs/ or from runs/normal-gamma/, the two runs form one
    group of n = 2 (the directory names used to become labels when RUNS_DIR held the runs directly)."""
    runs = tmp_path / "runs"
    _plain_run(runs / "normal-gamma" / "20250101-000000-gibbs-seed0", 0)
    _plain_run(runs / "normal-gamma" / "20250101-000100-gibbs-seed1", 1)
    for root in (runs, runs / "normal-gamma"):
        table = collect_runs(root)
        assert table["label"].isna().all() and (table["status"] == "ok").all()
        summary = grouped_summary(table, metrics=["mu_mean"])
        assert list(summary.columns) == ["model", "n", "not_converged", "mu_mean_mean", "mu_mean_se"]
        assert summary["n"].tolist() == [2] and summary["mu_mean_se"].notna().all()



def test_a_sweep_reported_from_any_level_keeps_its_labels_and_cells(swept, tmp_path):
    spec, pending = swept
    whole = collect_runs(spec.out)
    above = collect_runs(spec.out.parent)  # the folder that holds the sweep
    assert (above["label"] == "normal-gamma").all()
    assert above["status"].value_counts().to_dict() == whole["status"].value_counts().to_dict()
    one_label = collect_runs(spec.out / "normal-gamma")  # a label folder: its sweep.json is above it
    assert (one_label["label"] == "normal-gamma").all() and len(one_label) == 12
    assert one_label.loc[one_label["status"] == "pending", "run"].tolist() == [pending.key.split("/", 1)[1]]



def test_damaged_sweep_files_are_one_line_errors_or_listed(swept, tmp_path, capsys):
    import shutil

    spec, _ = swept
    root = tmp_path / "runs"
    shutil.copytree(spec.out, root)
    failed = next(root.rglob("*.failed"))
    (failed / "config.toml").write_text("options = {\n")
    (failed / "error.txt").write_text("")
    table = collect_runs(root)
    row = table[table["run"] == failed.relative_to(root).as_posix().removesuffix(".failed")].iloc[0]
    assert row["status"] == "failed" and "config.toml is unreadable" in row["error"]
    assert row["options.sigma_true"] == -1.0  # from the sweep's own record of the cell
    ok_run = root / table.loc[table["status"] == "ok", "run"].iloc[0]
    (ok_run / "metrics.json").write_text("[1, 2]")
    assert (collect_runs(root)["status"] == "unreadable").sum() == 1
    (root / "sweep.json").write_text('{"cells": [')
    assert main(["report", str(root), "--no-plots"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pyrozoo: error: runs_dir: {root / 'sweep.json'} is damaged") and "\n" not in err
    assert not (root / "report").exists()



def test_repeated_metric_and_by_count_once_and_bad_ones_write_nothing(swept, tmp_path, capsys):
    spec, _ = swept
    out = tmp_path / "rep"
    assert main(["report", str(spec.out), "--out", str(out), "--no-plots", "--metric", "mu_mean",
                 "--metric", "mu_mean", "--by", "label", "--by", "label"]) == 0
    assert "| label | n | not_converged | mu_mean_mean | mu_mean_se |" in capsys.readouterr().out
    assert list(pd.read_csv(out / "summary.csv").columns) == ["label", "n", "not_converged", "mu_mean_mean",
                                                                   "mu_mean_se"]
    fresh = tmp_path / "fresh"
    assert main(["report", str(spec.out), "--out", str(fresh), "--by", "mu_mean", "--metric", "mu_mean"]) == 2
    assert "metric: mu_mean is also a --by column" in capsys.readouterr().err and not fresh.exists()



def test_a_new_report_replaces_the_files_of_the_last_one_and_only_those(swept, tmp_path):
    import shutil

    spec, _ = swept
    root = tmp_path / "runs"
    shutil.copytree(spec.out, root)
    out = root / "report"
    first = build_report(root)
    assert (out / "summary.csv").is_file() and (out / "plots" / "normal-gamma" / "metrics_vs_n.png").is_file()
    (out / "notes.txt").write_text("mine")
    (out / "plots" / "normal-gamma" / "annotated.png").write_bytes(b"mine")
    build_report(root, plots=False)  # the plots of the first report go, files the report did not write stay
    assert (out / "notes.txt").read_text() == "mine" and (out / "plots" / "normal-gamma" / "annotated.png").exists()
    assert not list(out.glob("plots/*/metrics_vs_*.png")) and (out / "summary.csv").is_file()
    for p in first.files:
        if p.suffix == ".png":
            assert not p.exists()
    for run in list(root.glob("*/*")):
        if run.is_dir() and not run.name.endswith(".failed") and run.parent.name != "report":
            shutil.rmtree(run)  # no completed run left
    report = build_report(root)
    assert (report.runs["status"] == "ok").sum() == 0
    assert sorted(p.name for p in out.iterdir()) == [".pyrozoo-report.json", "notes.txt", "plots", "runs.csv",
                                                    "runs.md"]
    assert not [p for p in out.iterdir() if p.name.startswith(".report-")]  # no temporaries left



def test_a_report_written_before_the_index_is_replaced_too(swept, tmp_path):
    spec, _ = swept
    out = tmp_path / "old"
    build_report(spec.out, out=out)
    (out / ".pyrozoo-report.json").unlink()  # as an older version left it
    stale_plot = out / "plots" / "normal-gamma" / "metrics_vs_gone.png"
    stale_plot.write_bytes(b"old")
    build_report(spec.out, out=out, plots=False)
    assert not stale_plot.exists() and not (out / "plots").exists() and (out / "summary.md").is_file()



def test_a_single_run_directory(tmp_path, capsys):
    run = tmp_path / "runs" / "normal-gamma" / "20250101-000000-gibbs-seed0"
    _plain_run(run, 0)
    assert main(["report", str(run)]) == 2
    assert "is itself a run directory" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["config.toml", "idata.nc", "metrics.json", "params.pt"]
    report = build_report(run, out=tmp_path / "one", plots=False)
    assert report.runs["run"].tolist() == [run.name] and report.summary["n"].tolist() == [1]


def test_runs_recorded_in_an_older_spelling_join_the_same_group(tmp_path):
    """config.toml files from before 2026-11-26 hold the settings svi does not read (num_chains, warmup_steps, jit),
    integers for float options and relative data paths: one run recorded that way and one recorded now are the
    same setting, for the report and for a sweep's resume check."""
    import tomli_w

    from pyrozoo.config import tomllib
    from pyrozoo.sweep.runner import _comparable

    runs = tmp_path / "runs"
    old, new = runs / "normal-gamma" / "old-seed0", runs / "normal-gamma" / "new-seed1"
    _plain_run(old, 0, inference="svi")
    _plain_run(new, 1, inference="svi")
    cfg = tomllib.loads((old / "config.toml").read_text())
    assert "num_chains" not in cfg  # what is recorded now
    cfg.update(num_chains=2, warmup_steps=30, jit=False)
    cfg.setdefault("options", {})["mu0"] = 0  # a float option written as an integer
    (old / "config.toml").write_text(tomli_w.dumps(cfg))
    now = tomllib.loads((new / "config.toml").read_text())
    now.setdefault("options", {})["mu0"] = 0.0  # the same value written as a float
    (new / "config.toml").write_text(tomli_w.dumps(now))
    summary = grouped_summary(collect_runs(runs), metrics=["mu_mean"])
    assert summary["n"].tolist() == [2], summary
    assert _comparable(cfg) == _comparable({**now, "seed": 0})
    data = tmp_path / "x.csv"
    data.write_text("x\n1\n2\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)  # a relative data path (as older sweeps stored it) is the same file as the absolute one
        assert _comparable({**cfg, "data": "x.csv"}) == _comparable({**cfg, "data": str(data)})


def test_a_setting_one_inference_does_not_read_is_not_a_varying_setting(tmp_path):
    """gibbs and svi runs: svi's record leaves out warmup_steps, num_chains and jit and gibbs's leaves out steps
    and lr; those blanks are no values of their own, so only the inference varies (they made four one-point
    plots and four summary columns)."""
    from pyrozoo.sweep.report import varying_settings

    runs = tmp_path / "runs"
    for seed, inference in ((0, "gibbs"), (1, "gibbs"), (0, "svi"), (1, "svi")):
        _plain_run(runs / f"{inference}-{seed}", seed, inference=inference)
    table = collect_runs(runs)
    assert varying_settings(table) == ["inference"]
    assert grouped_summary(table, metrics=["mu_mean"])["n"].tolist() == [2, 2]
    # but svi with its default lr (left blank) and svi with lr = 0.05 are two settings
    from pyrozoo.config import RunConfig
    from pyrozoo.runner import run_model

    run_model(RunConfig(model="normal-gamma", inference="svi", seed=0, device="cpu", num_samples=50, lr=0.05,
                        progress=False), out=runs / "svi-lr", save=True)
    assert varying_settings(collect_runs(runs)) == ["inference", "lr"]


def test_the_dataset_axis_shows_the_simulator_beside_the_shipped_data(tmp_path):
    """examples/sweep.toml's shape (simulated runs on an n axis, and Boston): metrics_vs_dataset showed Boston
    alone, since the simulated runs (no dataset) were dropped like runs without a setting; they are 'simulator'
    there. On the n axis Boston (no n) is still left out."""
    from pyrozoo.sweep.report import _on_axis

    path = tmp_path / "sweep.toml"
    path.write_text('[sweep]\nname = "ds"\nseeds = 2\ntiny = true\n[defaults]\ndevice = "cpu"\n'
                    '[[models]]\nname = "normal-gamma"\nlabel = "simulated"\ninference = "gibbs"\n'
                    '[models.grid.options]\nn = [20, 40]\n'
                    '[[models]]\nname = "normal-gamma"\nlabel = "boston"\ndataset = "boston-medv"\n'
                    'inference = "gibbs"\n')
    run_sweep(load_spec(path, out=tmp_path / "runs"), jobs=1)
    table = collect_runs(tmp_path / "runs")
    assert (table["status"] == "ok").all() and len(table) == 6
    on_dataset = _on_axis(table, "dataset")
    assert on_dataset["dataset"].value_counts().to_dict() == {"simulator": 4, "boston-medv": 2}
    assert _on_axis(table, "options.n")["label"].eq("simulated").all() and len(_on_axis(table, "options.n")) == 4
    report = build_report(tmp_path / "runs", out=tmp_path / "rep")
    names = {p.name for p in report.files}
    assert {"metrics_vs_dataset.png", "metrics_vs_n.png"} <= names
    # a run from a data file has no dataset either: it is not the simulator
    table.loc[table["label"] == "boston", ["dataset", "data"]] = [float("nan"), "medv.csv"]
    assert _on_axis(table, "dataset")["dataset"].value_counts().to_dict() == {"simulator": 4, "data file": 2}


ENGINES = """
[sweep]
name = "engines"
seeds = 2
tiny = true

[defaults]
device = "cpu"

[[models]]
name = "normal-gamma"
label = "simulated"
[models.grid]
inference = ["gibbs", "svi"]
[models.grid.options]
n = [20, 40]

[[models]]
name = "normal-gamma"
label = "boston"
dataset = "boston-medv"
inference = "gibbs"
"""


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """examples/sweep.toml's shape, small: simulated runs by gibbs and svi on an n axis, and gibbs on Boston; the
    report written with plots."""
    root = tmp_path_factory.mktemp("engines")
    (root / "sweep.toml").write_text(ENGINES)
    run_sweep(load_spec(root / "sweep.toml", out=root / "runs"), jobs=1)
    return root / "runs", build_report(root / "runs", out=root / "rep")


def _legends(table):
    """The legend labels of each plot of the model, as plot_report builds them."""
    from pyrozoo.sweep.report import _on_axis, _series, varying_settings

    ok = table[table["status"] == "ok"]
    settings = [c for c in varying_settings(ok) if c != "model"]
    out = {"seed": [label for label, _ in _series(ok, settings)]}
    for axis in settings:
        out[axis] = [label for label, _ in _series(_on_axis(ok, axis), [c for c in settings if c != axis])]
    return out


def test_legends_say_what_a_blank_setting_stands_for(engines):
    """Boston runs have no n (it applies to the simulated data only): their series said `n=default` on the dataset
    plot; the simulated runs' blank dataset said `dataset=default` on the n plot, where the dataset axis and these
    docs say `simulator`."""
    runs, report = engines
    legends = _legends(report.runs)
    assert legends["dataset"] == ["inference=gibbs, n=20", "inference=gibbs, n=40", "inference=gibbs",
                                  "inference=svi, n=20", "inference=svi, n=40"]
    assert legends["options.n"] == ["inference=gibbs, dataset=simulator", "inference=svi, dataset=simulator"]
    assert legends["inference"] == ["dataset=boston-medv", "dataset=simulator, n=20", "dataset=simulator, n=40"]
    assert "inference=gibbs, dataset=boston-medv" in legends["seed"]
    assert not any("default" in label for labels in legends.values() for label in labels)
    assert {"metrics_vs_dataset.png", "metrics_vs_n.png", "metrics_vs_seed.png"} <= {p.name for p in report.files}


def test_a_blank_setting_that_applies_reads_default_one_that_does_not_is_left_out(engines):
    from pyrozoo.sweep.report import _series_label

    _, report = engines
    ok = report.runs[report.runs["status"] == "ok"]
    svi = ok[ok["inference"] == "svi"]
    nan = float("nan")
    # svi reads lr (blank: the entry's default) but not num_chains (blank: not applicable)
    assert _series_label(["inference", "lr", "num_chains"], ("svi", nan, pd.NA), svi) == "inference=svi, lr=default"
    # a simulated run with n left out ran with the default n; a Boston run has none
    simulated = ok[ok["label"] == "simulated"]
    assert _series_label(["options.n"], (nan,), simulated) == "n=default"
    boston = ok[ok["label"] == "boston"]
    assert _series_label(["options.n"], (pd.NA,), boston) == "n=n/a"  # nothing else to name the series by
    assert _series_label(["dataset", "options.n"], (nan, 20), simulated) == "dataset=simulator, n=20"
    from_file = simulated.assign(data="/tmp/x.csv")
    assert _series_label(["dataset", "data"], (nan, "/tmp/x.csv"), from_file) == "dataset=data file, data=/tmp/x.csv"


def test_integer_settings_stay_integers_and_blanks_are_empty_in_both_csvs(engines):
    """options.n (blank for Boston) was written 20.0, and num_chains/warmup_steps (blank for svi) 2.0 and 30.0, by
    NaN promotion; summary.csv wrote blanks as "-", runs.csv as empty cells."""
    _, report = engines
    out = report.files[0].parent
    table = report.runs
    for col in ("options.n", "num_chains", "warmup_steps", "steps"):
        assert table[col].dtype == "Int64", col
    runs_csv = pd.read_csv(out / "runs.csv", dtype=str, keep_default_na=False)
    boston_gibbs = runs_csv[runs_csv["label"] == "boston"].iloc[0]
    svi = runs_csv[runs_csv["inference"] == "svi"].iloc[0]
    assert boston_gibbs["options.n"] == "" and boston_gibbs["num_chains"] == "2"
    assert boston_gibbs["warmup_steps"] == "30" and boston_gibbs["steps"] == ""
    assert svi["options.n"] in ("20", "40") and svi["num_chains"] == "" and svi["steps"] == "30"
    summary_csv = pd.read_csv(out / "summary.csv", dtype=str, keep_default_na=False)
    assert summary_csv["options.n"].tolist() == ["", "20", "40", "20", "40"]
    assert summary_csv["dataset"].tolist() == ["boston-medv", "", "", "", ""]
    assert not (summary_csv == "-").any().any() and not (runs_csv == "-").any().any()
    # both read back with plain read_csv: a blank is NaN in each
    summary = pd.read_csv(out / "summary.csv")
    assert summary["options.n"].isna().tolist() == [True, False, False, False, False]
    assert pd.read_csv(out / "runs.csv")["num_chains"].isna().sum() == 4  # the svi runs
    # the printed tables: integers, and "-" for a blank
    md = (out / "summary.md").read_text().splitlines()
    assert md[2].startswith("| normal-gamma | boston | gibbs | boston-medv | - | 2 |")
    assert md[3].startswith("| normal-gamma | simulated | gibbs | - | 20 | 2 |")
    assert "20.0" not in "\n".join(md) and "| 2.0 |" not in (out / "runs.md").read_text()


def test_report_console_prints_integers_and_blanks_as_dashes(engines, tmp_path, capsys):
    runs, _ = engines
    assert main(["report", str(runs), "--out", str(tmp_path / "r"), "--no-plots", "--metric", "mu_mean"]) == 0
    out = capsys.readouterr().out
    assert "| model | label | inference | dataset | options.n | n | not_converged | mu_mean_mean | mu_mean_se |" in out
    assert "| normal-gamma | boston | gibbs | boston-medv | - | 2 |" in out
    assert "| normal-gamma | simulated | svi | - | 40 | 2 |" in out


def test_runs_that_leave_a_setting_at_its_default_are_on_its_plot_at_the_default(tmp_path):
    """A block with an n axis beside a block that leaves n unset (normal-gamma's default n = 100): the unset runs
    were left off metrics_vs_n, as if n did not apply to them. They are at n = 100, and the axis says so; Boston
    runs (n does not apply to a shipped dataset) are still left off."""
    from pyrozoo.sweep.report import DEFAULTED, _axis_label, _on_axis

    (tmp_path / "sweep.toml").write_text(
        '[sweep]\nname = "dflt"\nseeds = 1\ntiny = true\n[defaults]\ndevice = "cpu"\ninference = "gibbs"\n'
        '[[models]]\nname = "normal-gamma"\nlabel = "grid"\n[models.grid.options]\nn = [20, 40]\n'
        '[[models]]\nname = "normal-gamma"\nlabel = "plain"\n'
        '[[models]]\nname = "normal-gamma"\nlabel = "boston"\ndataset = "boston-medv"\n')
    run_sweep(load_spec(tmp_path / "sweep.toml", out=tmp_path / "runs"), jobs=1)
    report = build_report(tmp_path / "runs", out=tmp_path / "rep")
    ok = report.runs[report.runs["status"] == "ok"]
    assert ok["options.n"].isna().sum() == 2  # the table keeps what the configs recorded
    on_n = _on_axis(ok, "options.n")
    assert dict(zip(on_n["run"], on_n["options.n"], strict=True)) == {
        "grid/gibbs_n=20_seed0": 20, "grid/gibbs_n=40_seed0": 40, "plain/gibbs_seed0": 100}
    assert pd.api.types.is_integer_dtype(on_n["options.n"])  # still a numeric axis
    assert on_n.loc[on_n[DEFAULTED], "run"].tolist() == ["plain/gibbs_seed0"]
    assert _axis_label(_on_axis(ok, "options.n"), "options.n") == "n (default 100 where unset)"
    assert "metrics_vs_n.png" in {p.name for p in report.files}


def test_a_default_the_registry_does_not_know_is_left_off_and_counted(engines):
    """lr: each fit picks its own default, so svi runs that leave lr unset cannot be placed on the lr axis; the
    label says how many were left off. A categorical default is marked on its tick (tested through the label)."""
    from pyrozoo.sweep.report import DEFAULTED, _axis_label, _on_axis

    _, report = engines
    ok = report.runs[report.runs["status"] == "ok"]
    svi = ok["inference"] == "svi"
    table = ok.assign(lr=np.where(svi & (ok["options.n"] == 20), 0.05, np.nan))
    on_lr = _on_axis(table, "lr")
    assert len(on_lr) == 2 and on_lr["lr"].tolist() == [0.05, 0.05] and not on_lr[DEFAULTED].any()
    assert _axis_label(on_lr, "lr") == "lr (2 runs at their model's default lr not shown)"  # gibbs does not read lr
    on_inference = _on_axis(ok, "inference")
    assert len(on_inference) == len(ok) and _axis_label(on_inference, "inference") == "inference"


@pytest.fixture(scope="module")
def convergence_runs(tmp_path_factory):
    """The reproducer: a NUTS run with 51 of 60 transitions divergent and both chains stuck, beside a Gibbs run,
    an SVI run and a copy of the NUTS run whose metrics.json predates the convergence figures."""
    import shutil

    from pyrozoo.config import RunConfig
    from pyrozoo.runner import run_model

    root = tmp_path_factory.mktemp("convergence") / "rep"
    common = {"model": "normal-gamma", "options": {"n": 30}, "device": "cpu", "progress": False}
    run_model(RunConfig(inference="nuts", num_samples=30, warmup_steps=20, num_chains=2, **common),
              out=root / "ng-nuts")
    run_model(RunConfig(inference="gibbs", num_samples=300, num_chains=2, **common), out=root / "ng-gibbs")
    run_model(RunConfig(inference="svi", steps=200, **common), out=root / "ng-svi")
    shutil.copytree(root / "ng-nuts", root / "old" / "ng-nuts")
    metrics = json.loads((root / "old" / "ng-nuts" / "metrics.json").read_text())
    del metrics["convergence"]
    (root / "old" / "ng-nuts" / "metrics.json").write_text(json.dumps(metrics))
    return root


def test_report_flags_a_run_that_did_not_converge_and_keeps_it_in_the_means(convergence_runs, tmp_path, capsys):
    """`pyrozoo report` called the stuck NUTS run "ok" and averaged its mu_sd 0.172 (exact 0.409) without a word.
    metrics.json now records the figures; the runs table says "not converged: ..." in its convergence column, the
    summary counts such runs per group beside n (blank for SVI, whose draws are independent), the console names
    them, and an older run without the figures is unknown, not a failure. The figures are no metrics: nothing
    averages them. Flagged runs stay in the means (a group's mean is over its n finished runs)."""
    root = convergence_runs
    figures = json.loads((root / "ng-nuts" / "metrics.json").read_text())["convergence"]
    assert figures["divergent"] > 0 and figures["converged"] is False and figures["max_r_hat"] > 1.01
    assert "convergence" not in json.loads((root / "ng-svi" / "metrics.json").read_text())
    table = collect_runs(root)
    verdict = dict(zip(table["run"], table["convergence"], strict=True))
    assert verdict["ng-nuts"].startswith(f"not converged: {figures['divergent']} of 60 transitions divergent, "
                                         f"max r_hat ")
    assert verdict["old/ng-nuts"] == "unknown" and pd.isna(verdict["ng-svi"])
    assert (table["status"] == "ok").all()  # status: the run finished
    assert not {"divergent", "max_r_hat", "min_ess_bulk", "converged", "convergence"} & set(table.attrs["metrics"])
    summary = grouped_summary(table).set_index("inference")
    assert summary.loc["nuts", "n"] == 2 and summary.loc["nuts", "not_converged"] == 1
    assert summary.loc["nuts", "convergence_unknown"] == 1 and summary.loc["gibbs", "convergence_unknown"] == 0
    assert pd.isna(summary.loc["svi", "not_converged"]) and pd.isna(summary.loc["svi", "convergence_unknown"])
    nuts = json.loads((root / "ng-nuts" / "metrics.json").read_text())["mu_sd"]
    assert summary.loc["nuts", "mu_sd_mean"] == pytest.approx(nuts, rel=1e-12)  # both copies, kept in the mean
    assert not any(c.startswith(("divergent", "max_r_hat", "convergence_")) and c != "convergence_unknown"
                   for c in summary.columns)
    gibbs_flagged = int(summary.loc["gibbs", "not_converged"])
    assert main(["report", str(root), "--out", str(tmp_path / "r"), "--no-plots", "--metric", "mu_sd"]) == 0
    out = capsys.readouterr().out
    assert f"4 runs: 4 ok ({1 + gibbs_flagged} not converged, 1 not judged for convergence)" in out
    assert "| n | not_converged | convergence_unknown | mu_sd_mean | mu_sd_se |" in out
    assert f"warning: ng-nuts: {verdict['ng-nuts']}" in out and "kept in the summary's means" in out
    assert "recorded no convergence figures" in out
    runs_csv = pd.read_csv(tmp_path / "r" / "runs.csv")
    assert runs_csv.set_index("run").loc["old/ng-nuts", "convergence"] == "unknown"


def test_a_leading_tilde_in_reports_and_diagnoses_paths_is_the_home_directory(tmp_path, monkeypatch, capsys):
    """`report --out '~/rep'` made a directory named '~' in the working directory while pandas wrote under home
    (an error, and the '~' folder left behind); `report '~/r'` and `diagnose '~/r'` said the run did not exist.
    run and sweep expand '~' in their paths: report and diagnose now do too."""
    from pyrozoo.cli import main

    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    tiny = ["-o", "n=10", "--num-samples", "5", "--warmup-steps", "5", "--num-chains", "1", "--no-progress"]
    assert main(["run", "normal-gamma", *tiny, "--out", "~/runs/r"]) == 0
    assert main(["report", "~/runs", "--out", "~/rep", "--no-plots"]) == 0
    assert (home / "rep" / "runs.csv").exists()
    assert main(["diagnose", "~/runs/r"]) == 0
    assert list(cwd.iterdir()) == []


def test_an_older_runs_numeric_convergence_metric_is_kept_beside_the_verdict(tmp_path, capsys):
    """Before run_model reserved metrics.json's 'convergence' for its figures, an entry could write a metric of
    that name (an SVI run kept it): report put the number into the verdict column too, and crashed on the two
    'convergence' columns (AttributeError: 'DataFrame' object has no attribute 'str'). It is now the metric
    'convergence_metric'."""
    import json

    from pyrozoo.cli import main

    tiny = ["-o", "n=10", "--num-samples", "5", "--no-progress"]
    assert main(["run", "normal-gamma", "--inference", "svi", "--steps", "5", *tiny,
                 "--out", str(tmp_path / "r" / "a")]) == 0
    assert main(["run", "normal-gamma", "--warmup-steps", "5", *tiny, "--out", str(tmp_path / "r" / "b")]) == 0
    path = tmp_path / "r" / "a" / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "convergence": 0.5}))
    capsys.readouterr()
    assert main(["report", str(tmp_path / "r"), "--no-plots", "--out", str(tmp_path / "rep")]) == 0
    runs = pd.read_csv(tmp_path / "rep" / "runs.csv")
    row = runs[runs["run"].astype(str).str.endswith("a")].iloc[0]
    assert row["convergence_metric"] == 0.5 and pd.isna(row["convergence"])


def test_report_console_says_why_a_run_was_not_judged(convergence_runs, tmp_path, capsys):
    """The console note put every unjudged run down to 'no convergence figures (older pyrozoo) or too few draws',
    also a run whose every component the engine fixed; it now counts runs without figures and runs with nothing to
    judge apart, and the convergence column says which reason holds."""
    import shutil

    root = tmp_path / "rep"
    shutil.copytree(convergence_runs, root)
    metrics = json.loads((root / "ng-gibbs" / "metrics.json").read_text())
    metrics["convergence"] = {"chains": 2, "draws": 300, "max_r_hat": None, "min_ess_bulk": None,
                              "min_ess_tail": None, "nonfinite": 0, "ess_threshold": 200, "sampler_warnings": 0,
                              "convergence_warnings": 0, "converged": None}
    (root / "ng-gibbs" / "metrics.json").write_text(json.dumps(metrics))
    verdict = dict(zip(*collect_runs(root)[["run", "convergence"]].T.values, strict=True))
    assert verdict["ng-gibbs"] == "not judged (2 chains of 300 draws: no component moves, every one is fixed by " \
                                  "the engine)"
    assert main(["report", str(root), "--out", str(tmp_path / "r"), "--no-plots", "--metric", "mu_sd"]) == 0
    out = capsys.readouterr().out
    assert "2 not judged for convergence" in out
    assert "note: 1 Markov-chain run recorded no convergence figures (written by an older pyrozoo)" in out
    assert "note: 1 Markov-chain run had nothing to judge convergence on (too few draws, or every component fixed " \
           "by the engine" in out
    assert "or too few draws to judge" not in out


@pytest.mark.parametrize("value", [None, 5, b"runs"])
def test_build_report_of_what_is_not_a_path_names_the_argument(value):
    """build_report(None) raised os.fspath's raw TypeError."""
    with pytest.raises(PyrozooError, match=r"^runs_dir: expected a directory of runs, got "):
        build_report(value)


def test_an_out_that_is_or_lies_inside_a_run_directory_is_refused(tmp_path, capsys):
    """`report RUN --out RUN/rep` and `report runs --out runs/blr` wrote report files into the run directory, which
    plain `report RUN` refuses; now refused as it is, before anything is written."""
    runs = tmp_path / "runs"
    run = runs / "blr"
    _plain_run(run, 0)
    before = sorted(p.name for p in run.iterdir())
    assert main(["report", str(run), "--out", str(run / "rep"), "--no-plots"]) == 2
    assert capsys.readouterr().err == (f"pyrozoo: error: out: {run / 'rep'} lies inside the run directory {run} and "
                                       f"the report would be written inside it; pass another --out\n")
    assert main(["report", str(runs), "--out", str(run), "--no-plots"]) == 2
    assert capsys.readouterr().err == (f"pyrozoo: error: out: {run} is a run directory and the report would be "
                                       f"written inside it; pass another --out\n")
    (tmp_path / "link").symlink_to(run)  # a link to the run is a run directory too
    with pytest.raises(PyrozooError, match=f"lies inside the run directory {re.escape(str(tmp_path / 'link'))} "):
        build_report(runs, out=tmp_path / "link" / "deeper" / "rep", plots=False)
    assert sorted(p.name for p in run.iterdir()) == before
    assert main(["report", str(runs), "--out", str(tmp_path / "rep"), "--no-plots"]) == 0  # beside it: fine


def test_an_unreadable_run_names_its_damaged_file(tmp_path, capsys):
    """report listed 'unreadable: b: UnicodeDecodeError: ...' without saying which file was damaged."""
    import shutil

    runs = tmp_path / "runs"
    _plain_run(runs / "a", 0)
    shutil.copytree(runs / "a", runs / "b")
    shutil.copytree(runs / "a", runs / "c")
    (runs / "b" / "config.toml").write_bytes(b'model = "normal-gamma"\n# caf\xe9\n')
    (runs / "c" / "metrics.json").write_text("[1, 2]")
    table = collect_runs(runs).set_index("run")
    assert table.loc["b", "error"].startswith("config.toml: UnicodeDecodeError: ")
    assert table.loc["c", "error"] == "metrics.json: ValueError: expected a JSON object of metrics, got list"
    assert main(["report", str(runs), "--out", str(tmp_path / "rep"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "unreadable: b: config.toml: UnicodeDecodeError: 'utf-8' codec can't decode byte 0xe9" in out
    assert "unreadable: c: metrics.json: ValueError" in out


def test_an_out_through_a_loop_of_symbolic_links_is_one_clear_error(tmp_path, capsys):
    """`report runs --out loopy/rep`, loopy a link to itself, ended in a RuntimeError traceback ('Symlink loop from
    ...') from Path.resolve; it is the one-line error it was before, and nothing is written."""
    runs = tmp_path / "runs"
    _plain_run(runs / "a", 0)
    (tmp_path / "loopy").symlink_to("loopy")
    with pytest.raises(PyrozooError, match=r"^out: cannot create .*loopy/rep \(Too many levels of symbolic links\)$"):
        build_report(runs, out=tmp_path / "loopy" / "rep", plots=False)
    assert main(["report", str(runs), "--out", str(tmp_path / "loopy" / "rep"), "--no-plots"]) == 2
    assert capsys.readouterr().err == (f"pyrozoo: error: out: cannot create {tmp_path / 'loopy' / 'rep'} "
                                       f"(Too many levels of symbolic links)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loopy", "runs"]


def test_a_run_config_with_a_byte_order_mark_is_reported(tmp_path, capsys):
    """A run directory whose config.toml starts with a UTF-8 byte-order mark was 'unreadable' in report (raw
    tomllib), while `run --config` of the same file worked; report reads it as every TOML file is read."""
    import codecs
    import shutil

    runs = tmp_path / "runs"
    _plain_run(runs / "a", 0)
    shutil.copytree(runs / "a", runs / "b")
    (runs / "b" / "config.toml").write_bytes(codecs.BOM_UTF8 + (runs / "b" / "config.toml").read_bytes())
    table = collect_runs(runs).set_index("run")
    assert list(table["status"]) == ["ok", "ok"]
    assert main(["report", str(runs), "--out", str(tmp_path / "rep"), "--no-plots"]) == 0
    assert "unreadable" not in capsys.readouterr().out
    summary = (tmp_path / "rep" / "summary.csv").read_text()
    assert "normal-gamma" in summary


def test_an_out_at_or_under_a_dangling_link_is_named_as_one(tmp_path):
    """A review: `report ROOT --out dead` (dead a link to a missing target) said only 'cannot create dead (File
    exists)'; it now says the link leads nowhere, as `run --out` does, and nothing is written."""
    from pyrozoo.sweep.report import build_report

    root = tmp_path / "runs"
    _plain_run(root / "a", 0)
    (tmp_path / "dead").symlink_to(tmp_path / "nowhere")
    for out in (tmp_path / "dead", tmp_path / "dead" / "rep"):
        with pytest.raises(PyrozooError, match=rf"^out: {tmp_path / 'dead'} is a symbolic link that leads nowhere"):
            build_report(root, out=out, plots=False)
    assert not (tmp_path / "nowhere").exists()


PLCE_SWEEP = """
[sweep]
name = "plce-flags"
seeds = [0]
tiny = true
[[models]]
name = "plce"
inference = "svi"
options = { n = 200, n_repeats = 2 }
[models.grid.options]
scenario = ["baseline", "heterogeneity"]
treatment_model = ["auto", "heteroskedastic"]
"""


def test_a_bool_metric_is_reported_and_grouped_by(tmp_path, capsys):
    """QA8 H1: plce's treatment_model_heteroskedastic (which estimator ran: treatment_model="auto" resolves by the
    data) is a bool, and the report kept only numbers, so neither runs.csv nor summary.csv showed it. A bool metric
    is now a column of both; the summary groups by it, so runs of two estimators (or a run of an older pyrozoo
    that did not record it) are never averaged together; left out of --by, or named by --metric, it is the share
    of true."""
    import shutil

    from pyrozoo.sweep.report import bool_metric_columns, metric_columns

    path = tmp_path / "sweep.toml"
    path.write_text(PLCE_SWEEP)
    spec = load_spec(path, out=tmp_path / "runs")
    run_sweep(spec, jobs=1)
    assert main(["report", str(spec.out)]) == 0
    assert "treatment_model_heteroskedastic" in capsys.readouterr().out
    runs = pd.read_csv(spec.out / "report" / "runs.csv").sort_values(["options.scenario", "options.treatment_model"])
    expected = [False, True, True, True]  # auto is homoskedastic on baseline, heteroskedastic on heterogeneity
    assert runs["treatment_model_heteroskedastic"].tolist() == expected
    summary = pd.read_csv(spec.out / "report" / "summary.csv")
    keys = list(summary.columns[:list(summary.columns).index("n")])
    assert keys == ["model", "label", "options.scenario", "options.treatment_model",
                    "treatment_model_heteroskedastic"]
    assert summary["treatment_model_heteroskedastic"].tolist() == expected
    assert "treatment_model_heteroskedastic_mean" not in summary.columns
    table = collect_runs(spec.out)
    assert bool_metric_columns(table) == ["treatment_model_heteroskedastic"]
    assert "treatment_model_heteroskedastic" not in metric_columns(table) and "theta" in metric_columns(table)
    # left out of --by: the share of the group's runs that ran the weighted estimator
    by_scenario = grouped_summary(table, by=["options.scenario"])
    assert by_scenario["treatment_model_heteroskedastic_mean"].tolist() == [0.5, 1.0]
    named = grouped_summary(table, metrics=["treatment_model_heteroskedastic", "theta"])
    assert "treatment_model_heteroskedastic" not in named.columns
    assert named["treatment_model_heteroskedastic_mean"].tolist() == [0.0, 1.0, 1.0, 1.0]
    # a run of an older pyrozoo (no such metric) beside one of now, same settings: two groups, not one mean
    root = tmp_path / "mixed"
    cell = runs.loc[(runs["options.scenario"] == "heterogeneity") & (runs["options.treatment_model"] == "auto"),
                    "run"].iloc[0]
    for name in ("old", "new"):
        shutil.copytree(spec.out / cell, root / name)
    metrics = json.loads((root / "old" / "metrics.json").read_text())
    del metrics["treatment_model_heteroskedastic"]
    (root / "old" / "metrics.json").write_text(json.dumps(metrics))
    mixed = grouped_summary(collect_runs(root))
    assert mixed["n"].tolist() == [1, 1]
    assert mixed["treatment_model_heteroskedastic"].isna().sum() == 1
    assert mixed["treatment_model_heteroskedastic"].dropna().tolist() == [True]
    # a metric some runs recorded as a bool and others as a number is a number (true is 1)
    metrics["treatment_model_heteroskedastic"] = 0.5
    (root / "old" / "metrics.json").write_text(json.dumps(metrics))
    table = collect_runs(root)
    assert "treatment_model_heteroskedastic" in metric_columns(table) and not bool_metric_columns(table)
    assert sorted(table["treatment_model_heteroskedastic"].tolist()) == [0.5, 1.0]
