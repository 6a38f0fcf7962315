"""Device selection and seeding, in one place for every engine."""

from __future__ import annotations

import pyro
import torch

from pyrozoo.errors import PyrozooError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Map ``"auto" | "cpu" | "cuda" | "cuda:N"`` (or a ``torch.device``) to a ``torch.device``.

    ``auto`` picks CUDA when it is present and the CPU otherwise; asking for CUDA on a machine without it is an error.
    """
    if isinstance(device, torch.device):
        dev = device
    else:
        name = "auto" if device is None else str(device)
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if name != "cpu" and not name.startswith("cuda"):
            raise PyrozooError(f"device: expected one of auto, cpu, cuda, cuda:N; got {device!r}")
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise PyrozooError(f"device: expected one of auto, cpu, cuda, cuda:N; got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PyrozooError(f"device: {device!r} was asked for but CUDA is not available on this machine")
    return dev


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) through Pyro, and clear the param store."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise PyrozooError(f"seed: expected an integer >= 0, got {seed!r}")
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
