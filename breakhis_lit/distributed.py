"""Gathering evaluation outputs across DDP processes whose shards differ in length."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.utilities.distributed import gather_all_tensors


def gather_uneven(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from every process along its first dimension (lengths may differ).

    Without an initialised process group it returns ``tensor`` itself.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return tensor
    return torch.cat(gather_all_tensors(tensor.contiguous()))
