"""run_svi's options beyond the ELBO and optimizer: vectorized particles and the device argument, checked before
any work."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoNormal
from pyro.poutine.replay_messenger import ReplayMessenger
from pyro.poutine.runtime import _PYRO_STACK

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.svi import run_svi


def _matmul_model(x=None, y=None):
    w = pyro.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    mean = x @ w  # a particle plate makes w (P, 1, 2): x @ w no longer lines up
    with pyro.plate("obs_id", x.shape[0]):
        return pyro.sample("y", dist.Normal(mean, 0.5), obs=y)


def _data():
    x = torch.randn(20, 2)
    return {"x": x, "y": x @ torch.tensor([1.0, -1.0]) + 0.5 * torch.randn(20)}


def test_a_model_that_does_not_vectorize_over_particles_says_so_and_runs_unvectorized():
    """num_particles > 1 always vectorized: a raw RuntimeError from deep inside the model."""
    kw = _data()
    with pytest.raises(PyrozooError, match=r"^num_particles: the model fails under 3 vectorized particles .*pass "
                                           r"vectorize_particles=False"):
        run_svi(_matmul_model, AutoNormal(_matmul_model), kw, num_steps=5, num_particles=3, num_samples=2,
                progress=False)
    result = run_svi(_matmul_model, AutoNormal(_matmul_model), kw, num_steps=5, num_particles=3, num_samples=2,
                     vectorize_particles=False, progress=False)
    assert len(result.fit_stats["loss"]) == 5 and result.posterior["w"].shape == (1, 2, 2)


def test_a_model_error_that_is_not_the_particle_plates_is_not_blamed_on_it():
    def broken(x=None, y=None):
        w = pyro.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        # fails in every ELBO evaluation (the model replayed at the guide's draws), not in the set-up traces
        if any(isinstance(m, ReplayMessenger) for m in _PYRO_STACK):
            raise RuntimeError("the model's own bug")
        with pyro.plate("obs_id", x.shape[0]):
            return pyro.sample("y", dist.Normal(x @ w, 0.5), obs=y)

    guide = AutoNormal(broken)
    with pytest.raises(RuntimeError, match="the model's own bug"):
        run_svi(broken, guide, _data(), num_steps=2, num_particles=2, num_samples=2, progress=False)


def test_vectorize_particles_must_be_a_bool():
    with pytest.raises(PyrozooError, match=r"^vectorize_particles: expected True or False, got 'no'"):
        run_svi(_matmul_model, AutoNormal(_matmul_model), _data(), num_steps=1, vectorize_particles="no",
                progress=False)


@pytest.mark.parametrize("device,match", [
    ("nonsense", r"^device: expected one of auto, cpu, cuda, cuda:N; got 'nonsense'"),
    ("gpu", r"^device: expected one of auto, cpu, cuda, cuda:N; got 'gpu'"),
    pytest.param("cuda", r"^device: 'cuda' was asked for but CUDA is not available",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")),
    pytest.param("cuda", r"^device: 'cuda' \(cuda\) asked for, but the tensors in model_kwargs are on cpu",
                 marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
])
def test_a_bad_device_is_refused_before_any_step(device, match):
    """It was accepted and ignored ("nonsense", "cuda" without CUDA)."""
    steps = []
    with pytest.raises(PyrozooError, match=match):
        run_svi(_matmul_model, AutoNormal(_matmul_model), _data(), num_steps=3, num_samples=2, device=device,
                progress=False, callback=lambda step, loss: steps.append(step))
    assert steps == []


def test_the_datas_device_is_accepted():
    result = run_svi(_matmul_model, AutoNormal(_matmul_model), _data(), num_steps=2, num_samples=2, device="cpu",
                     progress=False)
    assert len(result.fit_stats["loss"]) == 2


def test_auto_device_is_where_the_data_are():
    """'auto' resolved to CUDA on a GPU machine and was then refused for CPU data; run_svi does not move data, so
    auto means their device (the meta device stands in for a device other than auto's pick)."""
    from pyrozoo.inference.device import checked_device as _checked_device
    from pyrozoo.inference.device import resolve_device

    assert _checked_device("auto", {"x": torch.empty(3, device="meta")}) == torch.device("meta")
    assert _checked_device("auto", {"n": 3}) == resolve_device("auto")


def test_a_device_other_than_the_datas_is_refused_before_any_step():
    """The CPU counterpart of the CUDA-only case above: the meta device stands in for a GPU holding the data."""
    steps = []
    kw = {"x": torch.empty(20, 2, device="meta"), "y": torch.empty(20, device="meta")}
    with pytest.raises(PyrozooError, match=r"^device: 'cpu' \(cpu\) asked for, but the tensors in model_kwargs are "
                                           r"on meta; run_svi fits where its data are"):
        run_svi(_matmul_model, AutoNormal(_matmul_model), kw, num_steps=3, num_samples=2, device="cpu",
                progress=False, callback=lambda step, loss: steps.append(step))
    assert steps == []
