"""The acquisition interface: a fitted posterior and an unlabelled pool in, a batch of pool positions out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.validation import check_finite, check_int


@dataclass
class Batch:
    """A selected batch. ``indices`` are positions in the pool handed to :meth:`Acquisition.select` (distinct,
    in selection order); ``requested`` the batch size asked for. Sparse acquisitions (ACS-FW) may return fewer
    distinct points than requested: ``num_selected < requested`` and ``note`` says so."""

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
            notes.append(f"{self.acquisition}: {self.num_selected} distinct points for a requested batch of "
                         f"{self.requested} (Frank-Wolfe revisited points already in the support)")
        if self.info.get("note"):
            notes.append(str(self.info["note"]))
        return "; ".join(notes)


def check_pool(x_pool: torch.Tensor, batch_size: int) -> int:
    """Raise unless the pool is a non-empty 2-D tensor and ``1 <= batch_size <= len(pool)``; return batch_size."""
    if not isinstance(x_pool, torch.Tensor) or x_pool.dim() != 2:
        shape = tuple(x_pool.shape) if isinstance(x_pool, torch.Tensor) else type(x_pool).__name__
        raise PyrozooError(f"x_pool: expected a 2-D tensor (pool size, features), got {shape}")
    if x_pool.shape[0] == 0:
        raise PyrozooError("x_pool: the unlabelled pool is empty; nothing left to acquire")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if batch_size > x_pool.shape[0]:
        raise PyrozooError(f"batch_size: expected at most the pool size {x_pool.shape[0]}, got {batch_size}")
    return batch_size


def check_select_args(posterior: Any, x_pool: torch.Tensor, batch_size: int,
                      generator: torch.Generator | None) -> int:
    """Everything :meth:`Acquisition.select` checks before any work: the pool and batch size (:func:`check_pool`),
    finite pool values, the pool's number of features against the posterior's ``input_dim`` (where the posterior
    knows it) and the generator; returns batch_size."""
    batch_size = check_pool(x_pool, batch_size)
    if not bool(torch.isfinite(x_pool).all()):  # on the pool's device; the message is built only on failure
        check_finite("x_pool", x_pool)
    dim = getattr(posterior, "input_dim", None)
    if dim is not None and x_pool.shape[1] != dim:
        raise PyrozooError(f"x_pool: expected {dim} features per row (the posterior's input dimension), got "
                           f"{x_pool.shape[1]} (pool shape {tuple(x_pool.shape)})")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise PyrozooError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
    return batch_size


class Acquisition(ABC):
    """Chooses a batch from an unlabelled pool given a fitted posterior (see :mod:`pyrozoo.active.posteriors`)."""

    name: str = "acquisition"

    def select(self, posterior: Any, x_pool: torch.Tensor, batch_size: int, *,
               generator: torch.Generator | None = None) -> Batch:
        """Validate the arguments (:func:`check_select_args`), then pick at most ``batch_size`` distinct pool
        positions."""
        batch_size = check_select_args(posterior, x_pool, batch_size, generator)
        return self._select(posterior, x_pool, batch_size, generator)

    @abstractmethod
    def _select(self, posterior: Any, x_pool: torch.Tensor, batch_size: int,
                generator: torch.Generator | None) -> Batch:
        """The acquisition proper; inputs are already validated."""


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
