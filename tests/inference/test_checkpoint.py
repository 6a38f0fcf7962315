"""SVI checkpoints (pyrozoo.inference.checkpoint, and run_svi's checkpoint and resume): exact resume for every kind
of guide parameter, the checkpoint file and its path checked before any work."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import (
    AutoDiagonalNormal,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)
from pyro.nn import PyroModule

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.svi import run_svi


def model(x=None, n=20, prior_scale=5.0):
    loc = pyro.sample("loc", dist.Normal(0.0, prior_scale))
    scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
    with pyro.plate("obs_id", n):
        pyro.sample("x", dist.Normal(loc, scale), obs=x)


X = torch.linspace(-1.0, 3.0, 20)
FIT = dict(lr=0.05, seed=3, progress=False, num_samples=7, checkpoint_every=10)


class ModuleGuide:
    """A guide whose parameters are the weights of a plain nn.Module registered with ``pyro.module``."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.net = torch.nn.Linear(1, 2)

    def __call__(self, x=None, n=20, prior_scale=5.0):
        net = pyro.module("net", self.net)
        out = net(x.unsqueeze(-1)).mean(0)
        pyro.sample("loc", dist.Normal(out[0], 0.1))
        pyro.sample("scale", dist.LogNormal(out[1], 0.1))


class PyroModuleGuide(PyroModule):
    """A guide whose parameters are a PyroModule network's nn.Parameters."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = PyroModule[torch.nn.Linear](1, 2)

    def forward(self, x=None, n=20, prior_scale=5.0):
        out = self.net(x.unsqueeze(-1)).mean(0)
        pyro.sample("loc", dist.Normal(out[0], 0.1))
        pyro.sample("scale", dist.LogNormal(out[1], 0.1))


GUIDES = {
    "AutoNormal": lambda: AutoNormal(model),
    "AutoDiagonalNormal": lambda: AutoDiagonalNormal(model),
    "AutoMultivariateNormal": lambda: AutoMultivariateNormal(model),
    "AutoLowRankMultivariateNormal": lambda: AutoLowRankMultivariateNormal(model, rank=1),
    "pyro.module": ModuleGuide,
    "PyroModule": PyroModuleGuide,
}


def _assert_same_fit(a, b) -> None:
    assert list(a.fit_stats["loss"]) == list(b.fit_stats["loss"])
    assert sorted(a.params) == sorted(b.params)
    for name, value in a.params.items():
        assert torch.equal(b.params[name], value), name
    for name in ("loc", "scale"):
        assert torch.equal(torch.as_tensor(a.posterior[name]), torch.as_tensor(b.posterior[name])), name


# ------------------------------------------------------------------ exact resume (A1)
@pytest.mark.parametrize("guide", list(GUIDES))
def test_a_resumed_run_is_the_uninterrupted_run_for_every_kind_of_parameter(tmp_path, guide):
    """Resuming used to replace the param store's tensors (ParamStore.set_state) after the guide was set up: a
    module's own nn.Parameter (AutoDiagonalNormal's loc, a pyro.module or PyroModule network's weights) stayed at
    its initial value, the forward pass read it, and the optimizer stepped the store's new tensors, which got no
    gradient: an AutoDiagonalNormal resumed from step 20 of 600 ended at a posterior mean of 1.50 instead of 0.97.
    Now the checkpoint's values are copied into the live tensors: losses, parameters and draws are bit-identical."""
    full = run_svi(model, GUIDES[guide](), {"x": X}, num_steps=30, **FIT)
    ckpt = tmp_path / "svi.ckpt"
    run_svi(model, GUIDES[guide](), {"x": X}, num_steps=10, checkpoint=ckpt, **FIT)
    resumed = run_svi(model, GUIDES[guide](), {"x": X}, num_steps=30, checkpoint=ckpt, resume=True, **FIT)
    _assert_same_fit(full, resumed)


def test_the_cpu_rng_path_is_unchanged_and_cuda_state_is_saved_only_when_cuda_is_in_use(tmp_path):
    """pyro's RNG state leaves out the CUDA generators; they are saved (and restored) only where CUDA is in use, so a
    CPU checkpoint holds the same RNG state as before: Python's, NumPy's and torch's CPU generator."""
    ckpt = tmp_path / "svi.ckpt"
    run_svi(model, AutoNormal(model), {"x": X}, num_steps=10, checkpoint=ckpt, **FIT)
    state = torch.load(ckpt, weights_only=False)
    assert set(state["rng"]) == {"torch", "random", "numpy"}
    assert ("cuda_rng" in state) == (torch.cuda.is_available() and torch.cuda.is_initialized())


def test_a_parameter_of_another_dtype_is_refused_not_cast():
    """The stored values are copied into the tensors set up now, which would cast them: a parameter of the same
    shape and another dtype is named like one of another shape."""
    from pyrozoo.inference.checkpoint import changed_params

    state = {"param_store": {"params": {"a": torch.zeros(2), "b": torch.zeros(3)}}}
    assert changed_params(state, {"a": torch.zeros(2, dtype=torch.float64), "b": torch.zeros(3)}) == [
        "a: float32 -> float64"]
    assert changed_params(state, {"a": torch.zeros(2), "b": torch.zeros(3)}) == []


# ------------------------------------------------------------------ a file that is no checkpoint (A2)
def _bad_checkpoints(tmp_path):
    good = tmp_path / "good.ckpt"
    run_svi(model, AutoNormal(model), {"x": X}, num_steps=10, checkpoint=good, **FIT)
    data = good.read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.ckpt").write_bytes(b"hello world, not a checkpoint")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    torch.save({"a": 1}, tmp_path / "dict.ckpt")
    torch.save(torch.zeros(3), tmp_path / "tensor.ckpt")
    state = torch.load(good, weights_only=False)
    state["param_store"] = [1, 2]
    torch.save(state, tmp_path / "store.ckpt")


@pytest.mark.parametrize("name,why", [
    ("truncated", r"it cannot be read as one \(OSError"),
    ("garbage", r"it cannot be read as one \(UnpicklingError"),
    ("empty", r"it cannot be read as one \(EOFError: Ran out of input\)"),
    ("dict", r"it lacks 'step', 'param_store', 'optimizer', 'rng', 'losses' \(its keys: \['a'\]\)"),
    ("tensor", r"it holds a Tensor, not the dict save_checkpoint writes"),
    ("store", r"its 'param_store' is not a param store's state"),
])
def test_a_file_that_is_no_checkpoint_is_one_error_naming_it_before_any_step(tmp_path, name, why):
    """A truncated, empty or garbage file, or a pickle of something else, used to end the resume in torch's or
    pickle's own error (OSError, UnpicklingError, EOFError, KeyError, AttributeError): now one PyrozooError naming
    `checkpoint`, the path and what is wrong, before any step, and the file is left as it was."""
    _bad_checkpoints(tmp_path)
    path = tmp_path / f"{name}.ckpt"
    before = path.read_bytes()
    steps = []
    with pytest.raises(PyrozooError, match=rf"^checkpoint: {path} is not a pyrozoo checkpoint: {why}"):
        run_svi(model, AutoNormal(model), {"x": X}, num_steps=20, checkpoint=path, resume=True,
                callback=lambda s, loss: steps.append(s), **FIT)
    assert steps == []
    assert path.read_bytes() == before


def test_resuming_from_a_directory_is_one_error_naming_checkpoint(tmp_path):
    (tmp_path / "dir.ckpt").mkdir()
    with pytest.raises(PyrozooError, match=r"^checkpoint: .*directory.*dir\.ckpt"):
        run_svi(model, AutoNormal(model), {"x": X}, num_steps=20, checkpoint=tmp_path / "dir.ckpt", resume=True,
                **FIT)


# ------------------------------------------------------------------ the checkpoint path, checked first (A3, A9)
def _path_cases(tmp_path):
    (tmp_path / "dir.ckpt").mkdir()
    (tmp_path / "file").write_text("x")
    return {
        "an existing directory": (tmp_path / "dir.ckpt", r"expected a file path for the checkpoint .*got the "
                                                         r"directory"),
        "a trailing slash": (f"{tmp_path}/new/", r"expected a file path .*, got the directory .*/new/'$"),
        "a parent that is a file": (tmp_path / "file" / "ck.pt", rf"cannot write .*: {tmp_path / 'file'} is not a "
                                                                 rf"directory"),
        "a number": (123, r"expected a file path for the checkpoint \(e\.g\. 'svi\.ckpt'\), got 123$"),
        "an empty path": ("", r"expected a file path for the checkpoint .*, got ''$"),
        "a read-only file system": ("/proc/pyrozoo-ck/ck.pt", r"cannot write .*no file can be created"),
    }


@pytest.mark.parametrize("case", ["an existing directory", "a trailing slash", "a parent that is a file", "a number",
                                  "an empty path", "a read-only file system"])
def test_a_bad_checkpoint_path_is_refused_before_any_step(tmp_path, case):
    """The path was first used at the first save, after checkpoint_every steps (or all of them): an existing
    directory, a parent that is a file, an unwritable place, checkpoint=123 (a TypeError after every step) or ''
    (a rename onto '.') failed there with a raw error and the work was lost. Now each is a PyrozooError naming
    `checkpoint` before step 0, and nothing is written."""
    import os

    if case == "a read-only file system" and not os.path.isdir("/proc/self"):
        pytest.skip("no /proc")
    path, match = _path_cases(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    steps = []
    with pytest.raises(PyrozooError, match=rf"^checkpoint: {match}"):
        run_svi(model, AutoNormal(model), {"x": X}, num_steps=20, checkpoint=path,
                callback=lambda s, loss: steps.append(s), **FIT)
    assert steps == []
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_missing_directory_of_the_checkpoint_is_created_at_the_first_save(tmp_path):
    ckpt = tmp_path / "a" / "b" / "svi.ckpt"
    run_svi(model, AutoNormal(model), {"x": X}, num_steps=10, checkpoint=ckpt, **FIT)
    assert ckpt.is_file()


def test_a_leading_tilde_is_the_home_directory(tmp_path, monkeypatch):
    """'~/ck.pt' made a directory named '~' in the working directory."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    run_svi(model, AutoNormal(model), {"x": X}, num_steps=10, checkpoint="~/svi.ckpt", **FIT)
    assert (home / "svi.ckpt").is_file()
    assert list(cwd.iterdir()) == []
    res = run_svi(model, AutoNormal(model), {"x": X}, num_steps=20, checkpoint="~/svi.ckpt", resume=True, **FIT)
    assert len(res.fit_stats["loss"]) == 20
    with pytest.raises(PyrozooError, match=r"^checkpoint: .*'~no-such-user-pyrozoo/svi\.ckpt'.* names no home"):
        run_svi(model, AutoNormal(model), {"x": X}, num_steps=20, checkpoint="~no-such-user-pyrozoo/svi.ckpt",
                **FIT)


@pytest.mark.parametrize("resume", ["false", None, 1, "yes"])
def test_resume_must_be_true_or_false(tmp_path, resume):
    """resume='false' resumed (a truthy string) and resume=None started over: now a PyrozooError naming `resume`."""
    ckpt = tmp_path / "svi.ckpt"
    run_svi(model, AutoNormal(model), {"x": X}, num_steps=10, checkpoint=ckpt, **FIT)
    before = ckpt.read_bytes()
    with pytest.raises(PyrozooError, match=rf"^resume: expected True or False, got {resume!r}$"):
        run_svi(model, AutoNormal(model), {"x": X}, num_steps=20, checkpoint=ckpt, resume=resume, **FIT)
    assert ckpt.read_bytes() == before


# ------------------------------------------------------------------ an existing checkpoint is not overwritten (A6)
def test_a_new_run_does_not_overwrite_an_existing_checkpoint(tmp_path):
    """A new run that forgot resume=True replaced a 200-step run's checkpoint with its own 10 steps. Now it is
    refused before any step, as --out refuses an existing folder without --overwrite, and the file is left as it
    was; overwrite_checkpoint=True starts the new run over it; both it and resume=True is a contradiction."""
    ckpt = tmp_path / "svi.ckpt"
    run_svi(model, AutoNormal(model), {"x": X}, num_steps=20, checkpoint=ckpt, **FIT)
    before = ckpt.read_bytes()
    steps = []
    with pytest.raises(PyrozooError, match=rf"^checkpoint: {ckpt} already exists; pass resume=True to continue the "
                                           rf"run it holds, overwrite_checkpoint=True to start a new run over it, or "
                                           rf"choose another path$"):
        run_svi(model, AutoNormal(model), {"x": X}, num_steps=10, checkpoint=ckpt,
                callback=lambda s, loss: steps.append(s), **FIT)
    assert steps == [] and ckpt.read_bytes() == before
    with pytest.raises(PyrozooError, match=r"^overwrite_checkpoint: .* got both$"):
        run_svi(model, AutoNormal(model), {"x": X}, num_steps=30, checkpoint=ckpt, resume=True,
                overwrite_checkpoint=True, **FIT)
    with pytest.raises(PyrozooError, match=r"^overwrite_checkpoint: expected True or False, got 'yes'$"):
        run_svi(model, AutoNormal(model), {"x": X}, num_steps=10, checkpoint=ckpt, overwrite_checkpoint="yes", **FIT)
    assert ckpt.read_bytes() == before
    run_svi(model, AutoNormal(model), {"x": X}, num_steps=10, checkpoint=ckpt, overwrite_checkpoint=True, **FIT)
    assert torch.load(ckpt, weights_only=False)["step"] == 10


# ------------------------------------------------------------------ an argument at its default (A5)
def test_a_model_argument_passed_at_its_default_resumes(tmp_path):
    """A resume that passed n=20 (the model's default) where the checkpoint's run left it out was refused as
    "model_kwargs['n']: absent -> 20", though the fit is the same. Now the model's signature defaults fill in an
    argument absent on one side: accepted both ways, and the resumed run is the uninterrupted one; a real change
    is still refused, naming the default it replaces."""
    full = run_svi(model, AutoNormal(model), {"x": X}, num_steps=30, **FIT)
    ckpt = tmp_path / "svi.ckpt"
    run_svi(model, AutoNormal(model), {"x": X}, num_steps=10, checkpoint=ckpt, **FIT)
    resumed = run_svi(model, AutoNormal(model), {"x": X, "n": 20, "prior_scale": 5.0}, num_steps=20,
                      checkpoint=ckpt, resume=True, **FIT)
    # the other way round: the checkpoint has the explicit values, the resume leaves them out
    resumed = run_svi(model, AutoNormal(model), {"x": X}, num_steps=30, checkpoint=ckpt, resume=True, **FIT)
    _assert_same_fit(full, resumed)
    steps = []
    with pytest.raises(PyrozooError, match=r"model_kwargs\['prior_scale'\]: 5\.0 \(default\) -> 2\.0; resume with"):
        run_svi(model, AutoNormal(model), {"x": X, "prior_scale": 2.0}, num_steps=40, checkpoint=ckpt, resume=True,
                callback=lambda s, loss: steps.append(s), **FIT)
    assert steps == []


# ------------------------------------------------------------------ train_kwargs' arrays compared (A4)
def test_a_resume_with_other_train_kwargs_arrays_is_refused(tmp_path):
    """Only the plain values of train_kwargs were stored: a checkpoint written with train_kwargs={"x": 2 X} resumed
    with {"x": X + 100} (which the steps see in place of model_kwargs' x) and the losses jumped. Now their arrays
    are fingerprinted too; one left out reads as model_kwargs' value, which the steps then see."""
    ckpt = tmp_path / "svi.ckpt"
    run_svi(model, AutoNormal(model), {"x": X}, num_steps=10, checkpoint=ckpt, train_kwargs={"x": X * 2}, **FIT)
    steps = []
    with pytest.raises(PyrozooError, match=r"other settings than these: train_kwargs\['x'\]: float32 \(20,\) "
                                           r"[0-9a-f]{16} -> float32 \(20,\) [0-9a-f]{16}; resume with"):
        run_svi(model, AutoNormal(model), {"x": X}, num_steps=20, checkpoint=ckpt, resume=True,
                train_kwargs={"x": X + 100}, callback=lambda s, loss: steps.append(s), **FIT)
    with pytest.raises(PyrozooError, match=r"train_kwargs\['x'\]: float32 \(20,\) [0-9a-f]{16} -> float32 \(20,\) "
                                           r"[0-9a-f]{16} \(model_kwargs\); resume with"):
        run_svi(model, AutoNormal(model), {"x": X}, num_steps=20, checkpoint=ckpt, resume=True,
                callback=lambda s, loss: steps.append(s), **FIT)
    assert steps == []
    full = run_svi(model, AutoNormal(model), {"x": X}, num_steps=20, train_kwargs={"x": X * 2}, **FIT)
    resumed = run_svi(model, AutoNormal(model), {"x": X}, num_steps=20, checkpoint=ckpt, resume=True,
                      train_kwargs={"x": (X * 2).clone()}, **FIT)
    _assert_same_fit(full, resumed)
    # the model_kwargs value passed again as a train_kwarg is what the steps saw: the same
    other = tmp_path / "other.ckpt"
    run_svi(model, AutoNormal(model), {"x": X}, num_steps=10, checkpoint=other, **FIT)
    res = run_svi(model, AutoNormal(model), {"x": X}, num_steps=20, checkpoint=other, resume=True,
                  train_kwargs={"x": X}, **FIT)
    assert len(res.fit_stats["loss"]) == 20


def test_a_checkpoint_without_a_train_kwargs_fingerprint_resumes_with_a_warning(tmp_path):
    ckpt = tmp_path / "svi.ckpt"
    run_svi(model, AutoNormal(model), {"x": X}, num_steps=10, checkpoint=ckpt, train_kwargs={"x": X * 2}, **FIT)
    state = torch.load(ckpt, weights_only=False)
    del state["extra"]["settings"]["train_data"]
    torch.save(state, ckpt)
    with pytest.warns(UserWarning, match=r"stores no fingerprint of the arrays in its train_kwargs .*\['x'\]"):
        res = run_svi(model, AutoNormal(model), {"x": X}, num_steps=20, checkpoint=ckpt, resume=True,
                      train_kwargs={"x": X * 2}, **FIT)
    assert len(res.fit_stats["loss"]) == 20


# ------------------------------------------------------------------ another model's checkpoint (A7)
def test_a_checkpoint_of_another_named_model_is_refused(tmp_path):
    """A checkpoint written for model 'm-a' resumed silently as model 'other' when both had the same latent names
    and shapes. model_name is now stored when given and compared where both runs gave one."""
    ckpt = tmp_path / "svi.ckpt"
    run_svi(model, AutoNormal(model), {"x": X}, num_steps=10, checkpoint=ckpt, model_name="m-a", **FIT)
    steps = []
    with pytest.raises(PyrozooError, match=r"other settings than these: model_name 'm-a' -> 'other'; resume with"):
        run_svi(model, AutoNormal(model), {"x": X}, num_steps=20, checkpoint=ckpt, resume=True, model_name="other",
                callback=lambda s, loss: steps.append(s), **FIT)
    assert steps == []
    assert torch.load(ckpt, weights_only=False)["extra"]["settings"]["model_name"] == "m-a"
    res = run_svi(model, AutoNormal(model), {"x": X}, num_steps=20, checkpoint=ckpt, resume=True, model_name="m-a",
                  **FIT)
    assert len(res.fit_stats["loss"]) == 20
    # a run that gave no name (a direct run_svi call) neither stores nor compares one
    res = run_svi(model, AutoNormal(model), {"x": X}, num_steps=30, checkpoint=ckpt, resume=True, **FIT)
    assert len(res.fit_stats["loss"]) == 30


# ------------------------------------------------------------------ the file written: mode and temporaries (A10, A11)
def test_the_checkpoint_honours_the_umask(tmp_path):
    """mkstemp creates its file 0600 and the rename kept that: a checkpoint was unreadable to the group whatever
    the umask said, unlike the run's other outputs."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        run_svi(model, AutoNormal(model), {"x": X}, num_steps=10, checkpoint=tmp_path / "a.ckpt", **FIT)
        os.umask(0o077)
        run_svi(model, AutoNormal(model), {"x": X}, num_steps=10, checkpoint=tmp_path / "b.ckpt", **FIT)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.ckpt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.ckpt").stat().st_mode) == 0o600


def test_a_temporary_left_by_a_killed_writer_is_removed_at_the_next_save(tmp_path):
    """A write killed mid-way (kill -9: no cleanup ran) left its .tmp beside the checkpoint for ever. The
    temporary now names its writer (.NAME.PID-HOST.XXXXXXXX.tmp): the next save of the same checkpoint removes
    those of a process of this host that is gone, and leaves a live process's, another host's, one named as before
    (no writer recorded) and another checkpoint's alone."""
    import os
    import subprocess
    import sys

    from pyrozoo.inference.rundir import host_id

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    me, other_host = host_id(), "0badc0de" if host_id() != "0badc0de" else "0badc0df"
    names = {
        "stale": f".svi.ckpt.{gone.pid}-{me}.abcd1234.tmp",
        "live": f".svi.ckpt.{os.getppid()}-{me}.abcd1234.tmp",
        "other host": f".svi.ckpt.{gone.pid}-{other_host}.abcd1234.tmp",
        "older name": ".svi.ckpt.abcd1234.tmp",
        "another checkpoint": f".svi.ckpt2.{gone.pid}-{me}.abcd1234.tmp",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"half a checkpoint")
    run_svi(model, AutoNormal(model), {"x": X}, num_steps=10, checkpoint=tmp_path / "svi.ckpt", **FIT)
    left = {p.name for p in tmp_path.iterdir()}
    assert names["stale"] not in left
    assert left == {"svi.ckpt"} | {n for k, n in names.items() if k != "stale"}


def test_a_checkpoint_given_as_a_symbolic_link_is_written_through_it(tmp_path):
    """The rename onto the link replaced it by a regular file, and the target kept its old step."""
    (tmp_path / "real").mkdir()
    target, link = tmp_path / "real" / "svi.ckpt", tmp_path / "link.ckpt"
    run_svi(model, AutoNormal(model), {"x": X}, num_steps=10, checkpoint=target, **FIT)
    link.symlink_to(target)
    run_svi(model, AutoNormal(model), {"x": X}, num_steps=20, checkpoint=link, resume=True, **FIT)
    assert link.is_symlink()
    assert torch.load(target, weights_only=False)["step"] == 20


def test_a_checkpoint_path_that_is_a_loop_of_symbolic_links_says_so(tmp_path):
    """QA: two links pointing at each other read "already exists; pass resume=True ...", and with
    overwrite_checkpoint=True the run trained and replaced the loop with a file."""
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    for extra in ({}, {"overwrite_checkpoint": True}, {"resume": True}):
        with pytest.raises(PyrozooError, match=r"^checkpoint: .*loop1.* is a loop of symbolic links"):
            run_svi(model, AutoNormal(model), {"x": X}, num_steps=10, checkpoint=tmp_path / "loop1", **FIT,
                    **extra)
    assert (tmp_path / "loop1").is_symlink() and (tmp_path / "loop2").is_symlink()


def test_a_resume_without_a_model_name_keeps_the_stored_one(tmp_path):
    """A resume that gave no model_name wrote its checkpoint without the stored one, so a later resume as another
    model passed the check. The stored name now carries on, into the checkpoint and the result's attrs."""
    ckpt = tmp_path / "svi.ckpt"
    run_svi(model, AutoNormal(model), {"x": X}, num_steps=10, checkpoint=ckpt, model_name="m-a", **FIT)
    res = run_svi(model, AutoNormal(model), {"x": X}, num_steps=20, checkpoint=ckpt, resume=True, **FIT)
    assert torch.load(ckpt, weights_only=False)["extra"]["settings"]["model_name"] == "m-a"
    assert res.to_inference_data().attrs["model"] == "m-a"
    with pytest.raises(PyrozooError, match=r"model_name 'm-a' -> 'other'"):
        run_svi(model, AutoNormal(model), {"x": X}, num_steps=30, checkpoint=ckpt, resume=True, model_name="other",
                **FIT)
