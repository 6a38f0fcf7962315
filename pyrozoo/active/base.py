"""The acquisition interface: a fitted posterior and an unlabelled pool in, a batch of pool positions out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.validation import align_feature_names, as_tensor, check_finite, check_int


@dataclass
class Batch:
    """A selected batch. ``indices`` are positions in the pool handed to :meth:`Acquisition.select` (a 1-D integer
    tensor of 1 to ``requested`` distinct positions, in selection order; :func:`check_batch`); ``requested`` the
    batch size asked for. Sparse acquisitions (ACS-FW) may return fewer distinct points than requested:
    ``num_selected < requested`` and ``note`` says so."""

    indices: torch.Tensor
    requested: int
    acquisition: str
    scores: torch.Tensor | None = None  # per-pool-point score where the acquisition ranks points
    weights: torch.Tensor | None = None  # Frank–Wolfe weights on the pool (ACS-FW)
    objective: torch.Tensor | None = None  # ||L - L(w)||^2 after each Frank–Wolfe step, starting at w = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_selected(self) -> int:
        return int(self.indices.numel())

    @property
    def note(self) -> str:
        """Why the batch is not what was asked for, or how a default was adapted (``info["note"]``); else ""."""
        notes = []
        if self.num_selected < self.requested:
            why = " (Frank-Wolfe revisited points already in the support)" if self.weights is not None else ""
            notes.append(f"{self.acquisition}: {self.num_selected} distinct points for a requested batch of "
                         f"{self.requested}{why}")
        if self.info.get("note"):
            notes.append(str(self.info["note"]))
        return "; ".join(notes)


def check_posterior_finite(what: str, value: torch.Tensor) -> None:
    """Raise unless ``value``, a quantity a posterior computed (``what``), is finite: NaN or inf there (a diverged
    fit, a faulty adapter) would otherwise give a wrong batch without an error."""
    if not bool(torch.isfinite(value).all()):  # on the value's device; the message is built only on failure
        check_finite(f"posterior {what}", value)


def _posterior_device(posterior: Any) -> torch.device | None:
    """The device of a tensor the posterior holds (an attribute, or an attribute's attribute), else None."""
    for value in vars(posterior).values() if hasattr(posterior, "__dict__") else ():
        for v in (value, *(vars(value).values() if hasattr(value, "__dict__") else ())):
            if isinstance(v, torch.Tensor):
                return v.device
    return None


def fitted_feature_names(posterior: Any) -> Any:
    """The column names a posterior was fitted on (its ``feature_names_in_``), or None where it recorded none."""
    return getattr(posterior, "feature_names_in_", None)


def check_inputs(posterior: Any, x: Any, name: str = "x") -> torch.Tensor:
    """Inputs at which ``posterior`` is asked something (a pool, a test set), checked before any work: a DataFrame
    with the string column names the posterior was fitted on (``feature_names_in_``) is put in that order, and one
    with missing or other columns is an error naming them (:func:`~pyrozoo.validation.align_feature_names`); an
    array, a tensor, or any input to a posterior fitted without names is matched by position. A tensor is returned
    as its values (detached from any autograd graph, otherwise as it is: predictions are values, not a graph
    through the inputs); anything else is converted to float64 on the device of a tensor the posterior holds (else
    the CPU). Raises unless the result is 2-D with the posterior's ``input_dim`` columns (where the posterior knows
    it)."""
    x = align_feature_names(x, fitted_feature_names(posterior), name=name)
    if isinstance(x, torch.Tensor):
        x = x.detach()
    else:
        device = _posterior_device(posterior) if posterior is not None else None
        x = as_tensor(name, x, dtype=torch.float64, device=device)
    if x.dim() != 2:
        raise PyrozooError(f"{name}: expected a 2-D array (rows, features), got shape {tuple(x.shape)}")
    check_input_dim(posterior, x, name)
    return x


def check_input_dim(posterior: Any, x: torch.Tensor, name: str) -> None:
    """Raise unless the 2-D ``x`` has the posterior's ``input_dim`` columns (where the posterior knows it)."""
    dim = getattr(posterior, "input_dim", None)
    if dim is not None and x.shape[1] != dim:
        raise PyrozooError(f"{name}: expected {dim} features per row (the posterior's input dimension), got "
                           f"{x.shape[1]} ({name} shape {tuple(x.shape)})")


def check_pool(x_pool: Any, batch_size: int, posterior: Any = None) -> tuple[torch.Tensor, int]:
    """Raise unless the pool is a non-empty 2-D array and ``1 <= batch_size <= len(pool)``; return the pool as a
    tensor and batch_size. A tensor is returned as it is; a NumPy array, pandas DataFrame or nested list is
    converted (:func:`~pyrozoo.validation.as_tensor`) to float64 (what the adapters compute in) on the device of a
    tensor the posterior holds, else the CPU. A DataFrame pool is matched to a posterior fitted on a DataFrame by
    column name (``feature_names_in_``: reordered to the fit's order; missing or other columns are an error naming
    them); otherwise columns are matched by position, as a tensor's are."""
    x_pool = align_feature_names(x_pool, fitted_feature_names(posterior), name="x_pool")
    if not isinstance(x_pool, torch.Tensor):
        device = _posterior_device(posterior) if posterior is not None else None
        x_pool = as_tensor("x_pool", x_pool, dtype=torch.float64, device=device)
    if x_pool.dim() != 2:
        raise PyrozooError(f"x_pool: expected a 2-D array (pool size, features), got shape {tuple(x_pool.shape)}")
    if x_pool.shape[0] == 0:
        raise PyrozooError("x_pool: the unlabelled pool is empty; nothing left to acquire")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if batch_size > x_pool.shape[0]:
        raise PyrozooError(f"batch_size: expected at most the pool size {x_pool.shape[0]}, got {batch_size}")
    return x_pool, batch_size


def check_select_args(posterior: Any, x_pool: Any, batch_size: int,
                      generator: torch.Generator | None) -> tuple[torch.Tensor, int]:
    """Everything :meth:`Acquisition.select` checks before any work: the pool and batch size (:func:`check_pool`,
    which converts a NumPy or pandas pool and matches a DataFrame's columns to the fit's by name), finite pool
    values, the pool's number of features against the posterior's ``input_dim`` (where the posterior knows it) and
    the generator; returns the pool as a tensor and batch_size."""
    x_pool, batch_size = check_pool(x_pool, batch_size, posterior)
    if not bool(torch.isfinite(x_pool).all()):  # on the pool's device; the message is built only on failure
        check_finite("x_pool", x_pool)
    check_input_dim(posterior, x_pool, "x_pool")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise PyrozooError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
    return x_pool, batch_size


def check_batch(batch: Any, pool_size: int, batch_size: int, acquisition: str) -> Batch:
    """What an acquisition returned for a pool of ``pool_size`` points and a batch of ``batch_size``, checked before
    anything is labelled: a :class:`Batch` with ``requested == batch_size`` whose ``indices`` are a 1-D integer
    tensor (a list or NumPy array of integers is converted to a long tensor) of 1 to ``batch_size`` distinct
    positions in ``0 .. pool_size - 1`` (negative positions are refused, not counted from the end). Returns the
    batch, with its indices as a long tensor; raises a :class:`PyrozooError` naming ``acquisition`` otherwise (more
    positions than the batch size would overspend the budget, none would never spend it)."""
    who = f"acquisition {acquisition!r}"
    if not isinstance(batch, Batch):
        raise PyrozooError(f"{who}: expected a Batch, got {type(batch).__name__}")
    idx = batch.indices
    if not isinstance(idx, torch.Tensor):
        try:
            arr = np.asarray(idx)
        except (TypeError, ValueError):  # ragged nested lists
            arr = np.asarray(None)
        if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and arr.size == 0):  # [] reads as float
            raise PyrozooError(f"{who}: expected the batch's indices as a 1-D integer tensor (or a list / NumPy "
                               f"array of integers), got {type(idx).__name__} of dtype {arr.dtype}")
        idx = torch.from_numpy(arr.astype(np.int64))
    if idx.dtype == torch.bool or idx.is_floating_point() or idx.is_complex():
        hint = " (a mask? pass torch.nonzero(mask).squeeze(1))" if idx.dtype == torch.bool else ""
        raise PyrozooError(f"{who}: expected integer pool positions, got indices of dtype {idx.dtype}{hint}")
    if idx.dim() != 1:
        raise PyrozooError(f"{who}: expected a 1-D tensor of pool positions, got shape {tuple(idx.shape)}")
    n = idx.numel()
    if n == 0:
        raise PyrozooError(f"{who}: expected 1 to {batch_size} pool positions, got an empty batch (nothing would "
                           f"ever be labelled)")
    if n > batch_size:
        raise PyrozooError(f"{who}: expected at most {batch_size} pool positions (the batch size), got {n}")
    idx = idx.long()
    low, high = int(idx.min()), int(idx.max())
    if low < 0 or high >= pool_size:
        bad = low if low < 0 else high
        raise PyrozooError(f"{who}: expected pool positions in 0..{pool_size - 1} (the {pool_size} points it was "
                           f"given), got {bad}")
    uniq, counts = torch.unique(idx, return_counts=True)
    if uniq.numel() != n:
        repeated = uniq[counts > 1].tolist()
        raise PyrozooError(f"{who}: expected distinct pool positions, got {', '.join(map(str, repeated[:5]))} "
                           f"more than once")
    if batch.requested != batch_size:
        raise PyrozooError(f"{who}: expected Batch.requested = {batch_size} (the batch size asked for), got "
                           f"{batch.requested!r}")
    return batch if idx is batch.indices else replace(batch, indices=idx)


class Acquisition(ABC):
    """Chooses a batch from an unlabelled pool given a fitted posterior (see :mod:`pyrozoo.active.posteriors`)."""

    name: str = "acquisition"

    def select(self, posterior: Any, x_pool: Any, batch_size: int, *,
               generator: torch.Generator | None = None) -> Batch:
        """Validate the arguments (:func:`check_select_args`; ``x_pool`` a tensor, NumPy array or DataFrame), then
        pick 1 to ``batch_size`` distinct pool positions with :meth:`_select`, whose batch is checked
        (:func:`check_batch`) before it is returned."""
        x_pool, batch_size = check_select_args(posterior, x_pool, batch_size, generator)
        return check_batch(self._select(posterior, x_pool, batch_size, generator), x_pool.shape[0], batch_size,
                           self.name)

    @abstractmethod
    def _select(self, posterior: Any, x_pool: torch.Tensor, batch_size: int,
                generator: torch.Generator | None) -> Batch:
        """The acquisition proper; inputs are already validated. Return a :class:`Batch` of 1 to ``batch_size``
        distinct positions in ``x_pool`` with ``requested=batch_size``."""


class PoolKernel(ABC):
    """The inner products <L_n, L_m> over a pool, as Frank–Wolfe needs them: the diagonal (sigma_n^2), the row
    sums <L_n, L> with L = sum_m L_m, and single columns <L_n, L_f> on demand. Never an M x M matrix."""

    @abstractmethod
    def diag(self) -> torch.Tensor:
        """(M,) squared norms sigma_n^2."""

    @abstractmethod
    def row_sums(self) -> torch.Tensor:
        """(M,) <L_n, L>."""

    @abstractmethod
    def column(self, f: int) -> torch.Tensor:
        """(M,) <L_n, L_f>."""


class EmbeddingKernel(PoolKernel):
    """Inner products of the rows of an embedding Phi (M, K) (random projections, or any explicit feature map)."""

    def __init__(self, phi: torch.Tensor) -> None:
        self.phi = phi.to(torch.float64)

    def diag(self) -> torch.Tensor:
        return (self.phi * self.phi).sum(1)

    def row_sums(self) -> torch.Tensor:
        return self.phi @ self.phi.sum(0)

    def column(self, f: int) -> torch.Tensor:
        return self.phi @ self.phi[f]
