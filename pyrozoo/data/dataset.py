"""The dataset type every zoo entry consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Dataset:
    """Data for one zoo model.

    The model is called as ``model(**inputs, **observed)`` (:meth:`model_kwargs`); leaving ``observed`` out gives
    the prior predictive (the ``obs=None`` convention). Options are not passed to the model: they reach it only
    through the dataset the simulator or loader builds (one the model needs goes into ``inputs``). ``truth`` holds
    the generating parameters when the data are simulated; ``meta`` anything else (column names, scaling,
    train/test split ...).

    ``meta["rows"]``, where a loader sets it, holds the original row label of each observation in the order the
    model sees them (the data file's 0-based data-row number, a DataFrame's index label) when the rows were
    shuffled or subset (a train/test split); a zoo entry's fit labels the results' ``obs_id`` axis with them
    (:func:`~pyrozoo.inference.result.label_observations`). Without it ``obs_id`` is 0 .. n - 1. A model whose
    observations lie along other axes sets a mapping ``{axis: labels}`` instead (agnostic: ``target_id`` and
    ``protected_id``), and each axis is labelled alike.

    ``meta["response_shift"]`` and ``meta["response_scale"]``, where a loader sets them, say that it standardized
    the observed response, y_std = (y - response_shift) / response_scale (``meta["response_site"]`` names the
    observed site when it is not ``y``): a zoo entry's fit then gives the log-likelihood of y in its own units and
    records the two in the InferenceData's attrs
    (:func:`~pyrozoo.inference.result.response_in_data_units`).
    """

    name: str
    inputs: dict[str, Any] = field(default_factory=dict)
    observed: dict[str, torch.Tensor] = field(default_factory=dict)
    truth: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def model_kwargs(self, observed: bool = True) -> dict[str, Any]:
        """Keyword arguments for the model: inputs, plus the observed sites unless ``observed=False``."""
        return {**self.inputs, **(self.observed if observed else {})}

    def to(self, device: torch.device | str) -> Dataset:
        """A copy with every tensor in ``inputs`` and ``observed`` moved to ``device``."""

        def move(d: dict[str, Any]) -> dict[str, Any]:
            return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in d.items()}

        return Dataset(self.name, move(self.inputs), move(self.observed), dict(self.truth), dict(self.meta))
