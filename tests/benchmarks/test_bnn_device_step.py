"""benchmarks/bnn_device_step.py: --swa-epochs below train_bnn's minimum and devices not present here are refused
by the parser, before the data is loaded."""

import sys

import pytest
import torch


@pytest.mark.parametrize(("argv", "message"), [
    (["cpu", "--epochs", "2", "--swa-epochs", "1"], "argument --swa-epochs: expected an integer >= 2, got 1"),
    (["cpu", "cuda"], "devices: 'cuda' was asked for but CUDA is not available on this machine"),
    (["tpu"], "devices: expected one of auto, cpu, cuda, cuda:N; got 'tpu'"),
])
def test_bad_arguments_are_refused_before_loading_data(load_script, monkeypatch, capsys, argv, message):
    mod = load_script("bnn_device_step")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(mod, "uci_split", lambda *a, **k: pytest.fail("loaded data"))
    monkeypatch.setattr(sys, "argv", ["bnn_device_step.py", *argv])
    with pytest.raises(SystemExit):
        mod.main()
    assert message in capsys.readouterr().err
