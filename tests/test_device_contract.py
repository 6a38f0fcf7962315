"""Every registered entry's fit resolves ``config.device`` before any work (design.md: every model and inference
takes ``device``; ``auto`` picks CUDA when present; bad input is an error before any work starts).

Called from Python (``registry.get(NAME).fit(dataset, config)``), most fits ran where their data were and recorded
the device as asked: ``device="cuda"`` on a machine without CUDA ran on the CPU and recorded ``"cuda"``. The fit
is replaced by a tripwire here, so each refusal case takes milliseconds and shows that no work started.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pyrozoo import registry
from pyrozoo.config import RunConfig
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.result import Result

CASES = [(name, inf) for name in registry.names() for inf in registry.get(name).inferences]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def _config(name: str, inference: str, device: str) -> RunConfig:
    entry = registry.get(name)
    tiny = dict(entry.tiny)
    options = tiny.pop("options", {})
    options = {k: v for k, v in options.items() if k not in entry.unread_options(options, inference)}
    return entry.check_config(RunConfig(model=name, inference=inference, device=device, progress=False,
                                        options=options, **tiny))


def _tripwire_entry(name: str, seen: list) -> registry.ZooModel:
    """The entry with its fit (inside the LabelledFit wrapper) replaced by one that records its inputs."""
    entry = registry.get(name)

    def fit(dataset, config):
        seen.append((config.device, {v.device.type for v in dataset.model_kwargs().values()
                                     if isinstance(v, torch.Tensor)}))
        return Result(inference=config.inference, posterior={}, config=config.to_dict())

    entry.fit.fit = fit
    return entry


def _data(entry: registry.ZooModel, name: str, inference: str):
    """The entry's tiny data on the CPU, without row labels (the tripwire's result has no obs_id axis for them)."""
    data = entry.load_data(_config(name, inference, "cpu"))
    data.meta.pop("rows", None)
    return data


@no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
@pytest.mark.parametrize("name,inference", CASES)
def test_cuda_without_cuda_is_refused_before_the_fit(name, inference, device):
    cfg = _config(name, inference, device)
    seen: list = []
    entry = _tripwire_entry(name, seen)
    data = _data(entry, name, inference)
    with pytest.raises(PyrozooError, match=rf"^device: '{device}' was asked for but CUDA is not available"):
        entry.fit(data, cfg)
    assert seen == []  # refused before the fit started


@pytest.mark.parametrize("name,inference", CASES)
def test_auto_is_resolved_and_the_data_moved_before_the_fit(name, inference):
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    seen: list = []
    entry = _tripwire_entry(name, seen)
    data = _data(entry, name, inference)
    result = entry.fit(data, _config(name, inference, "auto"))
    assert seen == [(expected, {expected})]
    assert result.config["device"] == expected


@pytest.mark.parametrize("device", ["gpu", "CPU", "cuda0", ""])
@pytest.mark.parametrize("name,inference", CASES)
def test_an_unknown_device_name_lists_the_allowed_ones_before_the_fit(name, inference, device):
    """A config built in Python and not validated (RunConfig checks only in ``validate``) reached the fit."""
    cfg = dataclasses.replace(_config(name, inference, "cpu"), device=device)
    seen: list = []
    entry = _tripwire_entry(name, seen)
    data = _data(entry, name, inference)
    with pytest.raises(PyrozooError, match=r"^device: expected one of auto, cpu, cuda, cuda:N; got"):
        entry.fit(data, cfg)
    assert seen == []


def _helpers():
    """Public helpers that take ``device`` (a name or a torch.device), each as a call that builds something small."""
    import numpy as np

    from pyrozoo.guides.regime_scm import init_encoder
    from pyrozoo.inference.swag import SWAGCollector
    from pyrozoo.models.spike_slab_prior import standardize

    X = np.random.default_rng(0).normal(size=(10, 2))
    return {
        "SWAGCollector": lambda d: SWAGCollector(3, device=d).mean.device,
        "HeteroscedasticMLP": _mlp_output_device,
        "standardize": lambda d: standardize(X, X[:, 0], device=d).X.device,
        "init_encoder": lambda d: next(iter(init_encoder(3, 4, device=d).values())).device,
    }


def _mlp_output_device(device):
    """HeteroscedasticMLP's weights are Pyro samples (drawn on access): the device of one prior draw."""
    from pyrozoo.models.bnn import HeteroscedasticMLP

    net = HeteroscedasticMLP(2, 3, device=device)
    return net(torch.zeros(1, 2, device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))).device


HELPERS = ["SWAGCollector", "HeteroscedasticMLP", "standardize", "init_encoder"]


@pytest.mark.parametrize("helper", HELPERS)
def test_helpers_resolve_device(helper):
    """They passed ``device`` to torch as it came: "auto" and "gpu" got torch's list of device types, "cuda" without
    CUDA torch's "not compiled with CUDA" AssertionError."""
    call = _helpers()[helper]
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert call("auto").type == expected
    with pytest.raises(PyrozooError, match=r"^device: expected one of auto, cpu, cuda, cuda:N; got 'gpu'"):
        call("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(PyrozooError, match=r"^device: 'cuda' was asked for but CUDA is not available"):
            call("cuda")
