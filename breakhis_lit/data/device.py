"""Host-to-device copies of small tensors that do not make the host wait for the GPU."""

from __future__ import annotations

import torch
from torch import Tensor


def to_device(t: Tensor, device: torch.device) -> Tensor:
    """Copy a small CPU tensor (random draws, constants) to ``device`` without making the host wait for the GPU.

    ``t.to("cuda")`` from ordinary (pageable) host memory is synchronous: PyTorch waits until the copy is done,
    and so until every kernel queued before it has run. From pinned memory with ``non_blocking`` the copy is
    queued like a kernel, and PyTorch's pinned-memory cache keeps the source alive until it has run.
    """
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)
