"""Seeded public functions leave the caller's random state and param store as they found them."""

from __future__ import annotations

import random

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrozoo.config import RunConfig
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.device import keeps_caller_state, resolve_device, set_seed


def _normal_model(x=None):
    loc = torch.tensor(0.0) if x is None else x.new_zeros(())  # on x's device, so the CUDA test can use it
    mu = pyro.sample("mu", dist.Normal(loc, 10.0))
    with pyro.plate("obs_id", 20):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def _x():
    return torch.linspace(-1.0, 1.0, 20)


def _mcmc():
    from pyrozoo.inference.mcmc import run_mcmc

    run_mcmc(_normal_model, {"x": _x()}, num_samples=5, warmup_steps=5, num_chains=1, seed=3, progress=False)


def _svi():
    from pyro.infer.autoguide import AutoNormal

    from pyrozoo.inference.svi import run_svi

    run_svi(_normal_model, AutoNormal(_normal_model), {"x": _x()}, num_steps=5, num_samples=5, seed=3,
            progress=False)


def _run_model():
    from pyrozoo.runner import run_model

    run_model(RunConfig(model="normal-gamma", inference="gibbs", num_samples=20, warmup_steps=5, num_chains=1,
                        progress=False), save=False)


def _spike_slab():
    from pyrozoo.models.spike_slab import SpikeSlabRegression

    X = np.linspace(-1, 1, 60).reshape(20, 3)
    SpikeSlabRegression("gibbs", num_samples=20, warmup_steps=5, num_chains=1, seed=3).fit(X, X[:, 0])


def _fit_bnn():
    from pyrozoo.models.bnn import fit_bnn

    X = torch.linspace(-1, 1, 30)[:, None]
    fit_bnn(X, X[:, 0], posterior="swag", hidden=4, epochs=2, swa_epochs=3, rank=2, num_samples=3, seed=3)


@pytest.mark.parametrize("call", [_mcmc, _svi, _run_model, _spike_slab, _fit_bnn])
def test_a_seeded_call_leaves_the_callers_rng_and_param_store(call):
    """A simulation loop `X = np.random.randn(...); fit(X)` drew the same X after every fit (each fit reseeded the
    global RNGs), and a fit emptied the user's `pyro.param` store. The next draws of Python, NumPy and torch are
    the ones the caller would have had without the call, and the caller's own param is still there."""
    set_seed(11)
    expected = (random.random(), np.random.rand(), torch.rand(()).item())
    set_seed(11)
    mine = pyro.param("my_loc", torch.tensor(2.5))
    call()
    assert (random.random(), np.random.rand(), torch.rand(()).item()) == expected
    assert pyro.get_param_store()["my_loc"] is mine


def test_seeded_results_are_unchanged_and_nested_calls_restore_once():
    """The same seed still gives the same draws whatever the caller's state; inside a kept call a nested kept call
    does not restore (what runs inside is as before), and an exception restores too."""

    @keeps_caller_state
    def draw(seed):
        set_seed(seed)
        return torch.rand(3)

    @keeps_caller_state
    def outer():
        set_seed(5)
        draw(1)
        return torch.rand(())  # continues after draw(1)'s draws: the nested call restored nothing

    set_seed(0)
    a = draw(1)
    torch.rand(7)
    assert torch.equal(draw(1), a)
    set_seed(5)
    torch.rand(3)
    ref = torch.rand(())
    set_seed(1)
    torch.rand(3)
    after_draw = torch.rand(())
    assert outer().item() == after_draw.item() and after_draw.item() != ref.item()

    @keeps_caller_state
    def broken():
        set_seed(9)
        raise ValueError("inside")

    set_seed(2)
    state = torch.get_rng_state()
    with pytest.raises(ValueError, match="inside"):
        broken()
    assert torch.equal(torch.get_rng_state(), state)


def test_one_thread_if_small_sets_one_intra_op_thread_only_for_small_work_and_restores():
    from pyrozoo.inference.device import one_thread_if_small

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with one_thread_if_small(30):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with one_thread_if_small(5000):
            assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="inside"):
            with one_thread_if_small(30):
                raise ValueError("inside")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_seeded_call_leaves_the_callers_cuda_rng():
    """The CUDA generator is put back too (run on the GPU machine; CI has none)."""
    from pyrozoo.inference.mcmc import run_mcmc

    torch.manual_seed(4)
    expected = torch.rand(3, device="cuda")
    torch.manual_seed(4)
    run_mcmc(_normal_model, {"x": _x().cuda()}, num_samples=5, warmup_steps=5, num_chains=1, seed=3, progress=False)
    assert torch.equal(torch.rand(3, device="cuda"), expected)


def test_cuda_index_beyond_the_devices_present_is_a_clear_error(monkeypatch):
    """cuda:7 on a one-GPU machine passed and failed later with torch's "invalid device ordinal"; simulated on the
    CPU (torch.device("cuda:N") touches no GPU)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(PyrozooError, match=r"^device: 'cuda:7' asked for, but 1 CUDA device\(s\) present \(cuda:0\)$"):
        resolve_device("cuda:7")
    with pytest.raises(PyrozooError, match=r"^device: 'cuda:1' asked for, but 1 CUDA device"):
        resolve_device(torch.device("cuda", 1))
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    assert resolve_device("cuda") == torch.device("cuda")  # no index: the current device
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert resolve_device("cuda:3") == torch.device("cuda:3")
    with pytest.raises(PyrozooError, match=r"4 CUDA device\(s\) present \(cuda:0 to cuda:3\)$"):
        resolve_device("cuda:4")


def test_a_torch_device_in_run_config_is_recorded_by_name(tmp_path):
    """torch.device("cpu") was refused by RunConfig although resolve_device takes it, and torch.device("cuda:0")
    passed but reached config.toml as an object: tomli_w failed after the fit, and no run directory was written."""
    import tomllib

    from pyrozoo.runner import run_model

    out = tmp_path / "run"
    config = RunConfig(model="normal-gamma", inference="gibbs", num_samples=5, warmup_steps=2, num_chains=1,
                       progress=False, device=torch.device("cpu"))
    assert config.validate().device == "cpu"
    run_model(config, out=out)
    assert tomllib.loads((out / "config.toml").read_text())["device"] == "cpu"
    assert RunConfig(model="normal-gamma", device=torch.device("cuda", 0)).validate().device == "cuda:0"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_cgroup_memory_limit_caps_the_available_memory(tmp_path, version):
    """In a container /proc/meminfo shows the host: a 2 GiB cgroup limit read as 23 GB let the exact GP start an
    allocation that got it killed. The limit left (limit - usage + inactive file cache) is read from the process's
    own cgroup directory, or the hierarchy's root in a namespaced view; 'max' and v1's huge value mean none."""
    from pyrozoo.inference.device import _cgroup_memory_left

    proc = tmp_path / "cgroup"
    if version == "v2":
        proc.write_text("0::/job/42\n")
        own = tmp_path / "fs" / "job" / "42"
        files = {"memory.max": "2147483648\n", "memory.current": "1073741824\n",
                 "memory.stat": "anon 1\ninactive_file 1000\n"}
    else:
        proc.write_text("4:memory:/job/42\n3:cpuset:/\n")
        own = tmp_path / "fs" / "memory" / "job" / "42"
        files = {"memory.limit_in_bytes": "2147483648\n", "memory.usage_in_bytes": "1073741824\n",
                 "memory.stat": "cache 5\ntotal_inactive_file 1000\n"}
    own.mkdir(parents=True)
    for name, text in files.items():
        (own / name).write_text(text)
    assert _cgroup_memory_left(str(proc), str(tmp_path / "fs")) == 2147483648 - 1073741824 + 1000
    limit = "memory.max" if version == "v2" else "memory.limit_in_bytes"
    (own / limit).write_text("max\n" if version == "v2" else "9223372036854771712\n")  # no limit
    assert _cgroup_memory_left(str(proc), str(tmp_path / "fs")) is None
    assert _cgroup_memory_left(str(tmp_path / "none"), str(tmp_path / "fs")) is None  # no /proc/self/cgroup


@pytest.mark.parametrize("seed", [2**32, 10**20])
def test_a_seed_beyond_numpys_range_is_a_clear_error_in_set_seed_and_run_config(seed):
    """set_seed and RunConfig checked only seed >= 0: 2**32 was NumPy's raw "Seed must be between 0 and 2**32 - 1",
    10**20 torch's "Overflow when unpacking long long"."""
    set_seed(2**32 - 1)  # the largest seed works
    with pytest.raises(PyrozooError, match=rf"^seed: expected an integer seed in \[0, 2\*\*32 - 1\] .*got {seed}$"):
        set_seed(seed)
    with pytest.raises(PyrozooError, match=r"^seed: expected an integer seed in \[0, 2\*\*32 - 1\]"):
        RunConfig(model="normal-gamma", seed=seed).validate()


@pytest.mark.parametrize("device", ["mps", "meta", "xpu"])
def test_a_torch_device_of_another_type_is_refused_like_its_name(device):
    """resolve_device took any torch.device unchecked: SpikeSlabRegression("em", device=torch.device("mps")) failed
    inside the fit ("PyTorch is not linked with support for mps devices"), torch.device("meta") at a .item() ("cannot
    be called on meta tensors"), while the string "mps" was refused up front. Both forms now get the same error."""
    from pyrozoo.models.spike_slab import SpikeSlabRegression

    with pytest.raises(PyrozooError, match=rf"^device: expected one of auto, cpu, cuda, cuda:N; got '{device}'$"):
        resolve_device(device)
    msg = rf"^device: expected one of auto, cpu, cuda, cuda:N; got device\(type='{device}'\)$"
    with pytest.raises(PyrozooError, match=msg):
        resolve_device(torch.device(device))
    X = np.random.default_rng(0).standard_normal((20, 3))
    with pytest.raises(PyrozooError, match=msg):
        SpikeSlabRegression("em", device=torch.device(device)).fit(X, X[:, 0])
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_the_engines_device_check_reads_every_tensor_not_only_the_first():
    """QA: checked_device looked at the first tensor only: {"y": cpu, "z": meta} passed with device="cpu" and the
    E-step failed on the meta tensor; with the keys the other way round it was refused as "on meta". Tensors on two
    devices are now refused whatever their order, naming each."""
    from pyrozoo.inference.em import run_em

    for data in ({"y": torch.randn(5), "z": torch.randn(5, device="meta")},
                 {"z": torch.randn(5, device="meta"), "y": torch.randn(5)}):
        with pytest.raises(PyrozooError, match=r"device: the tensors in data are on more than one device "
                                               r"\((y on cpu, z on meta|z on meta, y on cpu)\)"):
            run_em(lambda p, d: {"m": d["y"].mean()}, lambda x, d: {"mu": x["m"]}, {"mu": torch.tensor(0.0)}, data,
                   max_iter=3, device="cpu")


def test_an_rng_stream_neither_shifts_nor_follows_the_draws_outside_it():
    """RngStream (the agnostic adversary's own draws): inside ``with stream`` torch's global generator continues
    the stream, and on exit (also on an error) it is where the outside left it; a stream of the same (seed, key)
    repeats, another key gives other numbers, and a nested ``with`` of the same stream is the same stream."""
    from pyrozoo.inference.device import RngStream

    def run(extra_inside: int) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(5)
        stream = RngStream(3, "cpu", key=1)
        outside = [torch.rand(2)]
        with stream:
            inside = [torch.rand(extra_inside + 1)[:1]]  # how much the inside draws shifts nothing outside
            with stream:  # re-entrant
                inside.append(torch.rand(1))
        outside.append(torch.rand(2))
        with stream:
            inside.append(torch.rand(1))
        return torch.cat(outside), torch.cat(inside)

    out_a, in_a = run(0)
    out_b, in_b = run(50)
    torch.manual_seed(5)
    assert torch.equal(out_a, torch.rand(4)) and torch.equal(out_a, out_b)  # the outside never saw the stream
    assert in_a[0] == in_b[0] and in_a[1] != in_b[1] and in_a[2] != in_b[2]  # the stream follows its own draws
    with RngStream(3, "cpu", key=1):
        first = torch.rand(2)
    with RngStream(3, "cpu", key=2):
        other = torch.rand(2)
    assert torch.equal(first, in_a[:2]) and not torch.equal(first, other)  # in_a: rand(1) then rand(1)
    torch.manual_seed(7)
    with pytest.raises(RuntimeError), RngStream(3, "cpu"):
        torch.rand(3)
        raise RuntimeError("inside")
    torch_state = torch.get_rng_state()
    torch.manual_seed(7)
    assert torch.equal(torch_state, torch.get_rng_state())  # put back on the error
    with pytest.raises(PyrozooError, match="^seed: "):
        RngStream(-1)
