"""Optical density as in Macenko et al. (2009) and the tissue mask derived from it.

OD is ``-ln((I + 1) / io)`` for uint8 intensities ``I`` and a transmitted light intensity ``io`` (240 in
Macenko's reference code), and a pixel is tissue when its OD is at least ``beta`` (0.15) in every channel.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Transmitted light intensity of Macenko's reference implementation.
DEFAULT_IO = 240.0
#: OD threshold of the tissue mask (Macenko et al. 2009).
DEFAULT_BETA = 0.15
#: Images with a smaller fraction of tissue pixels are returned unchanged by the normalisers.
DEFAULT_MIN_TISSUE = 0.01


def check_uint8_images(images: Tensor) -> None:
    """Raise ``ValueError`` unless ``images`` is a uint8 ``[B, 3, H, W]`` tensor."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images [B, 3, H, W], got {images.dtype} {tuple(images.shape)}")


def optical_density(images: Tensor, io: float = DEFAULT_IO) -> Tensor:
    """uint8 ``[B, 3, H, W]`` -> float32 OD ``[B, 3, H * W]``, ``-ln((I + 1) / io)``."""
    b, c, h, w = images.shape
    return images.reshape(b, c, h * w).float().add_(1.0).div_(io).log_().neg_()


def tissue_mask(od: Tensor, beta: float = DEFAULT_BETA) -> Tensor:
    """Boolean ``[B, N]``: pixels whose OD ``[B, 3, N]`` is at least ``beta`` in every channel."""
    return (od >= beta).all(dim=1)
