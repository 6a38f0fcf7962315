"""pyrozoo.data.precision: the shared 'too coarse for its dtype' criterion (regime-SCM, Normal-Gamma)."""

from __future__ import annotations

import numpy as np
import torch

from pyrozoo.data.precision import MIN_STEPS_PER_SD, coarse_columns


def test_a_column_whose_sd_spans_fewer_than_min_steps_is_named_with_its_numbers():
    rng = np.random.default_rng(0)
    fine, coarse = rng.standard_normal(200), 1e7 + 0.3 * rng.standard_normal(200)  # float32 steps by 1 at 1e7
    message = coarse_columns(np.column_stack([fine, coarse]), torch.float32, ["ok", "offset"])
    assert message.startswith(f"expected each column's sd to span at least {MIN_STEPS_PER_SD} steps of float32 ")
    assert "column 'offset' has sd 0.3" in message and "float32 steps by 1 (3 distinct values of 200 kept" in message
    assert "'ok'" not in message
    assert coarse_columns(np.column_stack([fine, coarse]), torch.float64, ["ok", "offset"]) == ""


def test_the_boundary_is_min_steps_of_the_spacing_at_the_largest_value_and_constants_pass():
    step = torch.finfo(torch.float32).eps * 2.0**13  # float32's spacing in [8192, 16384)
    base = 1e4 + np.array([-1.0, 1.0])  # sd 1 (numpy's ddof 0)
    assert coarse_columns(((MIN_STEPS_PER_SD * 1.01 * step) * (base - 1e4) + 1e4)[:, None], torch.float32, ["x"]) == ""
    assert coarse_columns(((MIN_STEPS_PER_SD * 0.99 * step) * (base - 1e4) + 1e4)[:, None], torch.float32, ["x"])
    assert coarse_columns(np.full((5, 1), 1e7), torch.float32, ["x"]) == ""  # sd 0: the caller's to judge
    assert coarse_columns(np.zeros((5, 1)), torch.float32, ["x"]) == ""


def test_subnormal_values_step_by_the_smallest_subnormal():
    # below float32's smallest normal (1.2e-38) the spacing stays 1.4e-45; eps * 2^floor(log2 x) went on shrinking,
    # so 1e-43 + N(0, 2e-45) (7 distinct float32 values of 200) passed
    v = (1e-43 + np.random.default_rng(0).normal(0, 2e-45, 200)).reshape(-1, 1)
    assert "column 'x'" in coarse_columns(v, torch.float32, ["x"])
    assert coarse_columns(v, torch.float64, ["x"]) == ""  # float64's subnormal step (5e-324) holds them
