"""EM engine: argument checks before the first step."""

from __future__ import annotations

import pytest
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.em import run_em


def _e_step(params, data):
    return {"mean": data["x"].mean()}


def _m_step(expectations, data):
    return {"mu": expectations["mean"]}


def _no_step(params, data):
    raise AssertionError("a step ran before the arguments were checked")


def test_fixed_point_of_a_one_step_problem():
    fit = run_em(_e_step, _m_step, {"mu": torch.tensor(0.0)}, {"x": torch.arange(4.0)})
    assert fit.converged and float(fit.params["mu"]) == pytest.approx(1.5)


def test_device_is_checked_against_the_data_before_the_first_step():
    """run_em took no device, unlike run_svi; the meta device stands in for a GPU holding the data."""
    with pytest.raises(PyrozooError, match=r"^device: 'cpu' \(cpu\) asked for, but the tensors in data are on meta; "
                                           r"run_em fits where its data are"):
        run_em(_no_step, _no_step, {"mu": torch.tensor(0.0)}, {"x": torch.empty(4, device="meta")}, device="cpu")
    with pytest.raises(PyrozooError, match=r"^device: 'cpu' \(cpu\) asked for, but the tensors in init are on meta"):
        run_em(_no_step, _no_step, {"mu": torch.empty((), device="meta")}, {"n": 4}, device="cpu")
    with pytest.raises(PyrozooError, match=r"^device: expected one of auto, cpu, cuda, cuda:N; got 'gpu'$"):
        run_em(_no_step, _no_step, {"mu": torch.tensor(0.0)}, {"x": torch.arange(4.0)}, device="gpu")
    fit = run_em(_e_step, _m_step, {"mu": torch.tensor(0.0)}, {"x": torch.arange(4.0)}, device="cpu")
    assert fit.converged


def test_init_that_is_not_a_mapping_is_refused():
    """A tensor for init failed inside dict(init) with "iteration over a 0-d tensor"."""
    with pytest.raises(PyrozooError, match=r"^init: expected a mapping of parameter names to starting values, got a "
                                           r"Tensor$"):
        run_em(_no_step, _no_step, torch.tensor(0.0), {"x": torch.arange(4.0)})
