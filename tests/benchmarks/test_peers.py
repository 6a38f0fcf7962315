"""benchmarks/_peers.py: one rule for optional peers (skip with a note naming the package and the bench extra), and
the checks of command-line values (counts, output paths, input files, devices) that name the flag."""

import argparse
from pathlib import Path

import pytest
import torch


def test_split_available_names_the_missing_package_and_the_bench_extra(load_script):
    peers = load_script("_peers")
    keep, notes = peers.split_available(["ours", "theirs"], {"theirs": ("pyrozoo_no_such_package",)})
    assert keep == ["ours"]
    assert notes == ['note: theirs skipped: package(s) pyrozoo_no_such_package not installed (in the bench extra: '
                     'pip install -e ".[bench]")']


def test_installed_sees_pyrozoo_dependencies(load_script):
    peers = load_script("_peers")
    assert peers.missing_packages(["numpy", "torch", "pyrozoo_no_such_package"]) == ["pyrozoo_no_such_package"]


def test_int_at_least_names_the_bound_and_the_value(load_script):
    peers = load_script("_peers")
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=peers.int_at_least(1))
    assert parser.parse_args(["--reps", "3"]).reps == 3
    for value, shown in (("0", "0"), ("-2", "-2"), ("1.5", "'1.5'")):
        with pytest.raises(argparse.ArgumentTypeError, match=rf"expected an integer >= 1, got {shown}$"):
            peers.int_at_least(1)(value)


def test_check_out_file_and_check_files(load_script, monkeypatch, tmp_path):
    peers = load_script("_peers")
    monkeypatch.chdir(tmp_path)
    assert peers.check_out_file("--out", "r.csv") == tmp_path / "r.csv"  # relative to the current directory
    with pytest.raises(SystemExit, match=r"--out: expected a path in an existing, writable folder; .*no is not"):
        peers.check_out_file("--out", tmp_path / "no" / "r.csv")
    with pytest.raises(SystemExit, match="--out: expected a file path, got the folder"):
        peers.check_out_file("--out", tmp_path)
    (tmp_path / "a.csv").write_text("x\n")
    assert peers.check_files("--merge", ["a.csv"]) == [Path("a.csv")]
    with pytest.raises(SystemExit, match="--merge: expected existing files; no such file: b.csv, c.csv"):
        peers.check_files("--merge", ["a.csv", "b.csv", "c.csv"])


def test_check_device_names_the_flag(load_script, monkeypatch):
    peers = load_script("_peers")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert str(peers.check_device("--device", "cpu")) == "cpu"
    assert str(peers.check_device("--device", "auto")) == "cpu"
    with pytest.raises(SystemExit, match="--device: 'cuda' was asked for but CUDA is not available on this machine"):
        peers.check_device("--device", "cuda")
    with pytest.raises(SystemExit, match="--device: expected one of auto, cpu, cuda, cuda:N; got 'gpu'"):
        peers.check_device("--device", "gpu")


def test_check_new_files_refuses_existing_files_unless_overwrite(load_script, tmp_path):
    peers = load_script("_peers")
    (tmp_path / "r.csv").write_text("x\n")
    peers.check_new_files("--out", [tmp_path / "new.csv"], False)
    with pytest.raises(SystemExit, match=r"--out: expected a new file, but .*r\.csv already exist\(s\); .*--overwrite"):
        peers.check_new_files("--out", [tmp_path / "new.csv", tmp_path / "r.csv"], False)
    peers.check_new_files("--out", [tmp_path / "r.csv"], True)
