"""Whether a floating dtype can hold data: a column whose spread is tiny against its offset is rounded to a coarse grid.

Shared by the models that store user data in a chosen dtype (regime-SCM, Normal-Gamma), so both refuse such data by
one criterion with one wording; each caller adds the fix that fits its path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

# fewer than this many steps of the dtype's spacing (at a column's largest |value|) per standard deviation of the
# column: the values are rounded to a coarse grid (1e8 + 3 N(0, 1) in float32, spacing 8, kept 3 distinct values)
MIN_STEPS_PER_SD = 100


def coarse_columns(values: np.ndarray, dtype: torch.dtype, columns: Sequence[Any]) -> str:
    """The columns of ``values`` ((n, len(columns)) float64, finite) whose sd is under :data:`MIN_STEPS_PER_SD`
    steps of ``dtype``'s spacing at their largest |value| (sd < ~1e-5 max|x| in float32), as a message's
    ``expected ..., got ...`` (without the fix, which is the caller's path's); empty when none is. A constant
    column (sd 0) is not coarse: it is the caller's to allow or refuse."""
    info = torch.finfo(dtype)
    eps, tiniest = info.eps, info.smallest_normal * info.eps  # below smallest_normal the step stays at the subnormal
    name = str(dtype).removeprefix("torch.")
    parts = []
    for j, c in enumerate(columns):
        v = values[:, j]
        big, sd = float(np.abs(v).max()), float(v.std())
        step = max(eps * 2.0 ** math.floor(math.log2(big)), tiniest) if big > 0 else 0.0
        if 0 < sd < MIN_STEPS_PER_SD * step:
            kept = np.unique(torch.as_tensor(v, dtype=dtype).numpy()).size
            parts.append(f"column {c!r} has sd {sd:.3g} around values as large as {big:.3g}, where {name} steps by "
                         f"{step:.3g} ({kept} distinct values of {np.unique(v).size} kept; mean {np.mean(v):.7g})")
    if not parts:
        return ""
    return (f"expected each column's sd to span at least {MIN_STEPS_PER_SD} steps of {name} at its largest |value| "
            f"(else storing it in {name} rounds away most of its digits), got: {'; '.join(parts)}")
