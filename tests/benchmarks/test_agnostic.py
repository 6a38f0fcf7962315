"""benchmarks/agnostic.py: -o options, --merge files and --device are checked before any run, and --out is created
only after those checks."""

import sys

import pytest


@pytest.fixture
def agnostic(load_script, monkeypatch):
    mod = load_script("agnostic")
    monkeypatch.setattr(mod, "run_one", lambda *a, **k: pytest.fail("ran the grid before the checks"))
    return mod


@pytest.mark.parametrize(("argv", "message"), [
    (["-o", "foo=1"], "-o/--option: options for agnostic: unknown key(s) foo"),
    (["-o", "extractor_loss=x"], "-o/--option: extractor_loss: expected one of reversal"),
    (["--alphas", "0,2"], "--alphas: alpha: expected a number in [0, 1]"),
    (["--alphas", "0,x"], "--alphas: expected comma-separated numbers, got '0,x'"),
    (["--num-samples", "0"], "--num-samples: num_samples: expected an integer >= 1, got 0"),
    (["--device", "gpu"], "--device: expected one of auto, cpu, cuda, cuda:N; got 'gpu'"),
    (["--merge", "nothere.csv"], "--merge: expected existing files; no such file: nothere.csv"),
    (["--seeds", "0"], "--seeds: 0 only merges the runs CSVs given with --merge, and none were given"),
])
def test_bad_settings_are_refused_before_any_run(agnostic, monkeypatch, capsys, tmp_path, argv, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["agnostic.py", "--task", "cps1985", "--seeds", "1", *argv,
                                      "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit):
        agnostic.main()
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_existing_files_of_this_run_are_refused_before_any_run(agnostic, monkeypatch, capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "agnostic_cps1985_runs.csv").write_text("kept\n")
    monkeypatch.setattr(sys, "argv", ["agnostic.py", "--task", "cps1985", "--seeds", "1", "--out", str(out)])
    with pytest.raises(SystemExit):
        agnostic.main()
    assert f"--out: expected a new file, but {out / 'agnostic_cps1985_runs.csv'} already exist(s)" in \
        capsys.readouterr().err
    assert (out / "agnostic_cps1985_runs.csv").read_text() == "kept\n"
    monkeypatch.setattr(sys, "argv", ["agnostic.py", "--task", "cps1985", "--seeds", "1", "--out", str(out),
                                      "--overwrite"])
    with pytest.raises(pytest.fail.Exception, match="ran the grid before the checks"):
        agnostic.main()


def test_documented_one_seed_loop_shares_one_folder(load_script, monkeypatch, capsys, tmp_path):
    """RESULTS.md runs ``--seeds 1 --seed-start S`` for S = 0..9 into one folder: a run with S > 0 writes its own
    seed-suffixed alpha-grid figure (as its runs CSV), so it is not refused for S = 0's figure; --merge redraws the
    unsuffixed one."""
    mod = load_script("agnostic")
    cols = [k for k, _ in mod.COLUMNS["digits"]]
    monkeypatch.setattr(mod, "run_one", lambda task, a, seed, args: (
        {**{k: 0.5 for k in cols}, "seed": seed, "fit_s": 1.0}, None, None))
    out = tmp_path / "g"
    out.mkdir()
    (out / "agnostic_digits_alpha_grid.png").write_text("seed 0\n")
    (out / "agnostic_digits_runs.csv").write_text("seed 0\n")
    monkeypatch.setattr(sys, "argv", ["agnostic.py", "--seeds", "1", "--seed-start", "1", "--alphas", "0.5",
                                      "--steps", "400", "--out", str(out)])
    mod.main()
    assert (out / "agnostic_digits_alpha_grid_seeds1-1.png").stat().st_size > 0
    assert (out / "agnostic_digits_runs_seeds1-1.csv").exists()
    assert (out / "agnostic_digits_alpha_grid.png").read_text() == "seed 0\n"
    assert (out / "agnostic_digits_runs.csv").read_text() == "seed 0\n"
    capsys.readouterr()
    # the same range again is refused (its own figure and CSV are there now)
    with pytest.raises(SystemExit):
        mod.main()
    assert "agnostic_digits_alpha_grid_seeds1-1.png" in capsys.readouterr().err
    # the merge (--seeds 0) draws the unsuffixed figure and is refused for it without --overwrite
    monkeypatch.setattr(sys, "argv", ["agnostic.py", "--seeds", "0", "--alphas", "0.5", "--steps", "400",
                                      "--merge", str(out / "agnostic_digits_runs_seeds1-1.csv"), "--out", str(out)])
    with pytest.raises(SystemExit):
        mod.main()
    assert f"{out / 'agnostic_digits_alpha_grid.png'} already exist(s)" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", [*sys.argv, "--overwrite"])
    mod.main()
    assert (out / "agnostic_digits_alpha_grid.png").read_bytes().startswith(b"\x89PNG")
