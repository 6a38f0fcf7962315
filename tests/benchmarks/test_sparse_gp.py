"""benchmarks/sparse_gp.py: gpytorch missing -> the speed section leaves GPyTorch SGPR out, with a note; --device
(present here) and --chunk are checked before any work."""

import sys

import pytest
import torch


def test_missing_gpytorch_is_skipped_with_a_note(load_script, missing, monkeypatch, capsys):
    mod = load_script("sparse_gp")
    missing("gpytorch")
    monkeypatch.setattr(mod, "GPyTorchSGPR", lambda *a, **k: pytest.fail("GPyTorch SGPR built"))
    monkeypatch.setattr(sys, "argv", ["sparse_gp.py", "--sections", "speed", "--n", "64", "--n-test", "16", "--m", "4",
                                      "--steps", "2", "--dims", "1"])
    mod.main()
    out = capsys.readouterr().out.strip().splitlines()
    note = "note: GPyTorch SGPR skipped: package(s) gpytorch not installed"
    assert out[0].startswith(note)  # before the section runs
    assert out[-1].startswith(note)
    assert not any("gpytorch SGPR" in line for line in out)
    assert out.index("| device | d | impl | nlml_init | nlml_final | nlml_final_by_pyrozoo | test_nlpd | "
                     "sec_per_iter |") > 0


def test_unknown_section_is_refused(load_script, monkeypatch):
    mod = load_script("sparse_gp")
    monkeypatch.setattr(mod, "section_speed", lambda args: pytest.fail("speed section ran"))
    monkeypatch.setattr(sys, "argv", ["sparse_gp.py", "--sections", "speed,bigg"])
    with pytest.raises(SystemExit):
        mod.main()


@pytest.mark.parametrize(("argv", "message"), [
    (["--device", "cuda"], "--device: 'cuda' was asked for but CUDA is not available on this machine"),
    (["--chunk", "0"], "argument --chunk: expected an integer >= 1, got 0"),
])
def test_bad_device_or_chunk_is_refused_before_any_work(load_script, monkeypatch, capsys, argv, message):
    mod = load_script("sparse_gp")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(mod, "section_speed", lambda args: pytest.fail("speed section ran"))
    monkeypatch.setattr(sys, "argv", ["sparse_gp.py", "--sections", "speed", *argv])
    with pytest.raises(SystemExit):
        mod.main()
    assert message in capsys.readouterr().err
