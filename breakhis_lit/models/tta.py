"""Test-time augmentation over the dihedral group D4: the 8 rotations and reflections of a square image."""

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

TTA = Literal["none", "d4"]
"""The test-time augmentations of :class:`~breakhis_lit.models.BreakHisClassifier`."""
D4_SIZE = 8
_TINY = torch.finfo(torch.float32).tiny


def dihedral(images: Tensor, k: int) -> Tensor:
    """The ``k``-th element of D4 applied to a batch ``[B, C, H, W]``.

    Rotation by ``k % 4`` quarter turns, then a horizontal flip when ``k >= 4``.
    """
    out = torch.rot90(images, k % 4, dims=(-2, -1))
    return out.flip(-1) if k >= 4 else out


def d4_views(images: Tensor) -> Tensor:
    """All 8 D4 views of a batch, stacked view-major: ``[8 * B, C, H, W]`` (rows ``v * B ... v * B + B - 1``)."""
    return torch.cat([dihedral(images, k) for k in range(D4_SIZE)])


def d4_probs(forward: Callable[[Tensor], Tensor], images: Tensor, batched: bool = False) -> Tensor:
    """Class probabilities averaged over the 8 D4 views of each image.

    Args:
        forward: Normalised images ``[N, C, H, W]`` -> logits ``[N, K]``.
        images: A square batch ``[B, C, H, W]`` on the model's device.
        batched: One forward of the ``8 * B`` views instead of 8 forwards of ``B`` (same values up to float
            rounding). On the 2-core development CPU (shared, load 5-7; min of 3) neither won: the demo network at
            96 px, batch 256, took 28.2 s as 8 forwards and 30.0 s as one; at 224 px, batch 32, 28.9 s and 25.1 s.
            8 forwards are the default: they need an eighth of the activation memory (an evaluation batch of 256
            stays within what training already used on a GPU).

    Returns:
        float32 probabilities ``[B, K]``.
    """
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"d4 test-time augmentation needs square images, got {tuple(images.shape[-2:])}")
    n = images.shape[0]
    if batched:
        probs = forward(d4_views(images)).float().softmax(dim=-1)
        return probs.view(D4_SIZE, n, -1).mean(dim=0)
    total = None
    for k in range(D4_SIZE):
        probs = forward(dihedral(images, k)).float().softmax(dim=-1)
        total = probs if total is None else total + probs
    return total / D4_SIZE


def d4_log_probs(forward: Callable[[Tensor], Tensor], images: Tensor, batched: bool = False) -> Tensor:
    """``log`` of :func:`d4_probs`, clipped at float32's smallest normal number.

    These are logits whose softmax gives the averaged probabilities back, so a step's loss and metrics need no
    other change.
    """
    return d4_probs(forward, images, batched).clamp_min(_TINY).log()
