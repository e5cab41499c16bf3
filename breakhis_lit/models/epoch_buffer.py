"""``EpochBuffer``: one epoch's per-sample tensors, appended in place into preallocated device tensors."""

from __future__ import annotations

import torch
from torch import Tensor


class EpochBuffer:
    """Collects rows of a few tensors (e.g. probabilities and labels) over an epoch without reading the device.

    Each :meth:`append` is one slice copy per tensor into storage allocated once, at the first append, on the rows'
    device; the fill level is kept on the host. Storage that is too small doubles (a copy of what is filled), so a
    wrong ``capacity`` costs time, never rows. :meth:`clear` keeps the storage for the next epoch.

    Args:
        capacity: Rows to allocate at the first append (at least that append's rows).
    """

    def __init__(self, capacity: int = 0) -> None:
        self.capacity = int(capacity)
        self.size = 0
        self._storage: tuple[Tensor, ...] = ()

    def __len__(self) -> int:
        return self.size

    def append(self, *rows: Tensor) -> None:
        """Append the rows of each tensor (same first dimension; the same count, shapes and dtypes every call)."""
        n = rows[0].shape[0]
        if not self._storage or len(self._storage) != len(rows):
            self._storage = tuple(self._allocate(r, max(self.capacity, n)) for r in rows)
        elif self.size + n > self._storage[0].shape[0]:
            self._grow(max(2 * self._storage[0].shape[0], self.size + n))
        for storage, r in zip(self._storage, rows, strict=True):
            storage[self.size : self.size + n].copy_(r)
        self.size += n

    def tensors(self) -> tuple[Tensor, ...]:
        """Views of the rows appended since the last :meth:`clear` (empty tuple before any append)."""
        return tuple(storage[: self.size] for storage in self._storage)

    def clear(self) -> None:
        """Forget the rows (the storage stays allocated)."""
        self.size = 0

    @staticmethod
    def _allocate(like: Tensor, rows: int) -> Tensor:
        return torch.empty((rows, *like.shape[1:]), dtype=like.dtype, device=like.device)

    def _grow(self, rows: int) -> None:
        grown = []
        for storage in self._storage:
            new = self._allocate(storage, rows)
            new[: self.size].copy_(storage[: self.size])
            grown.append(new)
        self._storage = tuple(grown)
