"""Tensor-backed dataset returning whole batches with one index operation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from breakhis_lit.data.breakhis import SampleRecord
from breakhis_lit.data.device import to_device

__all__ = ["CachedImageDataset", "SampleRecord", "passthrough_collate"]


class CachedImageDataset(Dataset):
    """Samples of one stage, as rows of a shared uint8 image tensor.

    ``__getitems__`` (called by the torch ``DataLoader`` with a whole batch's indexes) returns the batch dict
    ``{"image": uint8 [B,3,H,W], "label": int64 [B], "group": int64 [B], "index": int64 [B]}`` with one tensor
    index per field; use :func:`passthrough_collate` as the loader's ``collate_fn``.

    Args:
        images: uint8 ``[N, 3, H, W]`` tensor shared by all stages (CPU or GPU).
        rows: Row of ``images`` of each sample of this stage.
        labels: Class index of each sample.
        groups: Group id of each sample.
    """

    def __init__(
        self,
        images: Tensor,
        rows: Sequence[int] | Tensor,
        labels: Sequence[int] | Tensor,
        groups: Sequence[int] | Tensor,
    ) -> None:
        self.images = images
        device = images.device
        self.rows = torch.as_tensor(rows, dtype=torch.int64).to(device)
        self.labels = torch.as_tensor(labels, dtype=torch.int64).to(device)
        self.groups = torch.as_tensor(groups, dtype=torch.int64).to(device)
        if not len(self.rows) == len(self.labels) == len(self.groups):
            raise ValueError("rows, labels and groups must have the same length")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {
            "image": self.images[self.rows[index]],
            "label": self.labels[index],
            "group": self.groups[index],
            "index": torch.tensor(index, dtype=torch.int64, device=self.images.device),
        }

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Tensor]:
        idx = to_device(torch.as_tensor(indices, dtype=torch.int64), self.images.device)
        return {
            "image": self.images[self.rows[idx]],
            "label": self.labels[idx],
            "group": self.groups[idx],
            "index": idx,
        }


def passthrough_collate(batch: Any) -> Any:
    """Collate for :class:`CachedImageDataset`: a batch dict from ``__getitems__`` passes through unchanged."""
    if isinstance(batch, dict):
        return batch
    return default_collate(batch)
