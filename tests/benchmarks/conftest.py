"""Load the benchmark scripts (benchmarks/*.py, not a package) as modules for unit tests of their helpers."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str, module_name: str):
    spec = importlib.util.spec_from_file_location(module_name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


# the scripts import their shared helper as a top-level module (their folder is on sys.path when they run)
if "_peers" not in sys.modules:
    _load("_peers", "_peers")


@pytest.fixture
def load_script():
    """load_script("plce_sim") -> the script as a fresh module (its import-time settings, and global settings its
    code changes, such as sparse_gp's pyro module_local_params, undone afterwards)."""
    import pyro

    dtype, threads, settings = torch.get_default_dtype(), torch.get_num_threads(), pyro.settings.get()
    yield lambda name: _load(name, f"benchmark_{name}")
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)
    pyro.settings.set(**settings)
    pyro.clear_param_store()


@pytest.fixture
def missing(monkeypatch):
    """missing("econml", ...): make the benchmarks' peer check see these packages as not installed."""
    peers = sys.modules["_peers"]

    def make_missing(*packages: str) -> None:
        real = peers.installed
        monkeypatch.setattr(peers, "installed", lambda p: p not in packages and real(p))

    return make_missing


@pytest.fixture
def refuses_args(monkeypatch, capsys):
    """refuses_args(main, argv, message): ``main()`` with ``sys.argv`` = ``argv`` exits (argparse's usage error) and
    its stderr holds ``message``; the test patches the script's first unit of work to fail, so the refusal comes
    before any work."""

    def check(main, argv: list[str], message: str) -> None:
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit):
            main()
        assert message in capsys.readouterr().err

    return check


@pytest.fixture
def refuses_existing_out(monkeypatch, refuses_args):
    """refuses_existing_out(main, argv, out, reached): ``main()`` with ``argv`` (whose ``--out`` is ``out``, a file
    that exists) exits naming the file and leaves it as it was; with ``--overwrite`` added it gets past the check to
    the first fit, which the test has patched to fail with the message ``reached``."""

    def check(main, argv: list[str], out: Path, reached: str) -> None:
        out.write_text("kept\n")
        refuses_args(main, argv, f"--out: expected a new file, but {out} already exist(s)")
        assert out.read_text() == "kept\n"
        monkeypatch.setattr(sys, "argv", [*argv, "--overwrite"])
        with pytest.raises(pytest.fail.Exception, match=reached):
            main()

    return check
