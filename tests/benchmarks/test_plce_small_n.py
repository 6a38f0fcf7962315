"""benchmarks/plce_small_n.py: --out and --from-csv are checked before any fit, naming the flag."""

import sys

import pytest


@pytest.fixture
def small_n(load_script, monkeypatch):
    mod = load_script("plce_small_n")
    monkeypatch.setattr(mod, "run", lambda *a, **k: pytest.fail("fitted before the checks"))
    return mod


def test_an_existing_out_is_refused_before_any_fit(small_n, refuses_existing_out, tmp_path):
    out = tmp_path / "before.csv"
    refuses_existing_out(small_n.main, ["plce_small_n.py", "--seeds", "1", "--out", str(out)], out,
                         "fitted before the checks")


def test_out_in_a_missing_folder_is_refused_before_any_fit(small_n, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", ["plce_small_n.py", "--out", str(tmp_path / "no" / "r.csv")])
    with pytest.raises(SystemExit):
        small_n.main()
    assert "--out: expected a path in an existing, writable folder" in capsys.readouterr().err


def test_from_csv_missing_file_is_refused(small_n, monkeypatch, capsys, tmp_path):
    """This was a pandas FileNotFoundError traceback."""
    (tmp_path / "before.csv").write_text("label,n,p,seed,theta,se,z,ols_true_control,naive_slope,seconds\n")
    missing = tmp_path / "after.csv"
    monkeypatch.setattr(sys, "argv", ["plce_small_n.py", "--from-csv", f"{tmp_path / 'before.csv'},{missing}"])
    with pytest.raises(SystemExit):
        small_n.main()
    assert f"--from-csv: expected existing files; no such file: {missing}" in capsys.readouterr().err
