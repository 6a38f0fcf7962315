"""One run of one zoo model, start to finish: the code path behind ``pyrozoo run`` and every sweep cell."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pyrozoo import registry
from pyrozoo.config import RunConfig
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.device import keeps_caller_state, resolve_device, set_seed
from pyrozoo.inference.result import Result
from pyrozoo.inference.rundir import check_out_dir, save_run


@dataclass
class RunOutput:
    result: Result
    metrics: dict[str, Any]
    out: Path | None


def default_out_dir(config: RunConfig, root: str | Path = "runs") -> Path:
    """``runs/MODEL/YYYYmmdd-HHMMSS-INFERENCE-seedN`` (a new name each time, so repeated runs never collide)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / config.model / f"{stamp}-{config.inference}-seed{config.seed}"
    k = 1
    while path.exists():
        path = path.with_name(f"{stamp}-{config.inference}-seed{config.seed}-{k}")
        k += 1
    return path


def _device_hint(error: RuntimeError, model: str, device: torch.device) -> Exception:
    """torch's "Expected all tensors to be on the same device" from a model that makes tensors on the CPU (a
    ``torch.tensor(0.0)`` or ``torch.zeros(3)`` without ``device=``) while the runner moved its data to ``device``,
    said as what to change; any other error unchanged."""
    if "same device" not in str(error):
        return error
    return PyrozooError(
        f"model {model!r}: its tensors are on two devices ({str(error).strip().splitlines()[0]}); the data were moved "
        f"to {device}, so the model must create its tensors on its inputs' device (torch.zeros(3, device=x.device), "
        f"x.new_tensor(0.0)), or run with --device cpu")


@keeps_caller_state
def run_model(config: RunConfig, *, out: str | Path | None = None, save: bool = True,
              overwrite: bool = False) -> RunOutput:
    """Validate ``config``, load or simulate the data, fit, score and (if ``save``) write the run directory.

    All validation (model, inference, options, device, output directory, data) happens before fitting starts, and
    the run directory appears only when complete.
    """
    entry = registry.get(config.model)
    entry.check_config(config)
    device = resolve_device(config.device)
    out_path = None
    if save:
        out_path = check_out_dir(out if out is not None else default_out_dir(config), overwrite=overwrite)
    set_seed(config.seed)  # a simulator that draws from the global RNG (not a seeded generator) is reproducible too
    dataset = entry.load_data(config).to(device)
    try:
        result = entry.fit(dataset, config)
        metrics = dict(entry.metrics(result, dataset)) if entry.metrics is not None else {}
    except RuntimeError as error:
        raise _device_hint(error, config.model, device) from error
    result.config = entry.recorded_config(config)  # what ran: without the settings the inference does not read
    if save:
        artifacts = None
        if entry.artifacts is not None:
            def artifacts(tmp: Path) -> None:
                entry.artifacts(result, dataset, tmp)
        save_run(result, out_path, config=result.config, metrics=metrics,
                 posterior_predictive=config.posterior_predictive, overwrite=overwrite, artifacts=artifacts)
    return RunOutput(result, metrics, out_path)
