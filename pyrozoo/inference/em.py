"""Expectation-maximization for models with closed-form E and M steps."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.device import checked_device
from pyrozoo.inference.progress import progress_bar
from pyrozoo.validation import check_int, check_positive

Params = dict[str, Any]


@dataclass
class EMFit:
    """Fixed point reached by :func:`run_em`: parameters, expectations, objective trace and convergence flag."""

    params: Params
    expectations: Params
    objective: list[float] = field(default_factory=list)
    converged: bool = False
    iterations: int = 0
    wall_time: float = float("nan")


def run_em(
    e_step: Callable[[Params, Mapping[str, Any]], Params],
    m_step: Callable[[Params, Mapping[str, Any]], Params],
    init: Params,
    data: Mapping[str, Any],
    *,
    objective: Callable[[Params, Params, Mapping[str, Any]], float] | None = None,
    max_iter: int = 500,
    tol: float = 1e-6,
    progress: bool = False,
    device: str | torch.device | None = None,
) -> EMFit:
    """Alternate ``expectations = e_step(params, data)`` and ``params = m_step(expectations, data)``.

    Stops when the largest relative change of any parameter (or of ``objective`` when given) falls below ``tol``.
    ``objective(params, expectations, data)`` should be the quantity EM increases (log posterior or its lower
    bound); its trace is returned so callers can check monotonicity. ``init`` is a mapping of parameter names to
    values. ``device`` (``"auto" | "cpu" | "cuda" | "cuda:N"``; ``None``: wherever the data are): run_em does not
    move anything, the steps run where ``data``' (a mapping's) and ``init``'s tensors are; a device other than
    theirs is a :class:`PyrozooError` before the first step, as in ``run_svi``.
    """
    if not isinstance(init, Mapping):
        raise PyrozooError(f"init: expected a mapping of parameter names to starting values, got a "
                           f"{type(init).__name__}")
    if device is not None:
        if isinstance(data, Mapping):
            checked_device(device, data, engine="run_em", what="data")
        checked_device(device, init, engine="run_em", what="init")
    max_iter = check_int("max_iter", max_iter, minimum=1)
    check_positive("tol", tol)
    t0 = time.perf_counter()
    params = dict(init)
    trace: list[float] = []
    converged = False
    bar = progress_bar(max_iter, "em", progress)
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 (reported after the loop)
        expectations = e_step(params, data)
        new = m_step(expectations, data)
        if objective is not None:
            trace.append(float(objective(new, expectations, data)))
        change = _max_rel_change(params, new)
        params = new
        bar.update(1)
        if objective is not None and len(trace) > 1:
            converged = abs(trace[-1] - trace[-2]) <= tol * max(1.0, abs(trace[-2])) and change < math.sqrt(tol)
        else:
            converged = change < tol
        if converged:
            break
    bar.close()
    expectations = e_step(params, data)
    return EMFit(params, expectations, trace, converged, iterations, time.perf_counter() - t0)


def _max_rel_change(old: Params, new: Params) -> float:
    worst = 0.0
    for k, v in new.items():
        if k not in old:
            return math.inf
        a = torch.as_tensor(old[k], dtype=torch.float64)
        b = torch.as_tensor(v, dtype=torch.float64)
        if a.shape != b.shape:
            return math.inf
        if a.numel():
            worst = max(worst, float(((b - a).abs() / (a.abs() + 1e-12).clamp(min=1.0)).max()))
    return worst
