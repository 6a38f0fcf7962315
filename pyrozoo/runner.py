"""One run of one zoo model, start to finish: the code path behind ``pyrozoo run`` and every sweep cell."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyrozoo import registry
from pyrozoo.config import RunConfig
from pyrozoo.inference.device import resolve_device, set_seed
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
    result = entry.fit(dataset, config)
    result.config = entry.recorded_config(config)  # what ran: without the settings the inference does not read
    metrics = dict(entry.metrics(result, dataset)) if entry.metrics is not None else {}
    if save:
        artifacts = None
        if entry.artifacts is not None:
            def artifacts(tmp: Path) -> None:
                entry.artifacts(result, dataset, tmp)
        save_run(result, out_path, config=result.config, metrics=metrics,
                 posterior_predictive=config.posterior_predictive, overwrite=overwrite, artifacts=artifacts)
    return RunOutput(result, metrics, out_path)
