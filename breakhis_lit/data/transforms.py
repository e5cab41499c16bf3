"""Batched image transforms on the model's device: ImageNet normalisation and training augmentation.

Pure tensor operations over a whole ``[B, 3, H, W]`` batch (no per-image Python work). Every random draw is
per sample and comes from one ``torch.Generator`` (CPU), so results are reproducible on any device; the draws
reach the GPU through pinned memory (:func:`to_device`), so no step waits for the GPU.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor
from torchvision.ops import roi_align

from breakhis_lit.data.device import to_device

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def to_float(images: Tensor) -> Tensor:
    """Convert a uint8 batch to float32 in [0, 1] (float input is returned as float32 unchanged)."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


@functools.cache
def _channel_constant(values: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> Tensor:
    """``values`` as a ``[1, C, 1, 1]`` tensor on ``device``, made once per device (not once per batch)."""
    with torch.inference_mode(False):  # a normal tensor, usable in autograd even if first made in validation
        return to_device(torch.tensor(values, dtype=dtype).view(1, -1, 1, 1), device)


def normalize(images: Tensor) -> Tensor:
    """ImageNet-normalise a batch: uint8 (or float in [0, 1]) ``[B, 3, H, W]`` -> float32 on the same device."""
    x = to_float(images)
    mean = _channel_constant(IMAGENET_MEAN, x.device, x.dtype)
    std = _channel_constant(IMAGENET_STD, x.device, x.dtype)
    return (x - mean) / std


def denormalize(images: Tensor) -> Tensor:
    """Invert :func:`normalize` (float in [0, 1], clamped)."""
    mean = _channel_constant(IMAGENET_MEAN, images.device, images.dtype)
    std = _channel_constant(IMAGENET_STD, images.device, images.dtype)
    return (images * std + mean).clamp_(0, 1)


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator) * (high - low) + low


def _select(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Per sample: ``a`` where ``mask`` else ``b``."""
    return torch.where(mask.view(-1, 1, 1, 1), a, b)


def random_resized_crop(
    x: Tensor,
    scale: tuple[float, float] = (0.5, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Crop a random box per sample (area fraction ``scale``, aspect ``ratio``) and resize it back to H x W.

    One :func:`torchvision.ops.roi_align` call for the whole batch (bilinear, one sample per output pixel:
    crops are never larger than the image, so this only upsamples).
    """
    b, _, h, w = x.shape
    area = _uniform(b, *scale, generator)
    log_r = _uniform(b, math.log(ratio[0]), math.log(ratio[1]), generator)
    aspect = torch.exp(log_r)
    cw = (torch.sqrt(area * aspect) * w).clamp(max=w)
    ch = (torch.sqrt(area / aspect) * h).clamp(max=h)
    x0 = torch.rand(b, generator=generator) * (w - cw)
    y0 = torch.rand(b, generator=generator) * (h - ch)
    boxes = torch.stack([torch.arange(b, dtype=torch.float32), x0, y0, x0 + cw, y0 + ch], dim=1)
    boxes = to_device(boxes, x.device).to(x.dtype)
    return roi_align(x, boxes, output_size=(h, w), sampling_ratio=1, aligned=True)


def random_dihedral(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Random horizontal/vertical flips and (for square images) 90-degree rotations, per sample."""
    b, _, h, w = x.shape
    draws = [torch.rand(b, generator=generator) < 0.5 for _ in range(3)]
    hflip, vflip, rot = to_device(torch.stack(draws), x.device).unbind(0)
    x = _select(hflip, x.flip(-1), x)
    x = _select(vflip, x.flip(-2), x)
    if h == w:  # with both flips, one optional transpose covers all 8 symmetries of the square
        x = _select(rot, x.transpose(-1, -2), x)
    return x.contiguous()  # mixing transposed views leaves a permuted layout that slows every later op


def color_jitter(
    x: Tensor,
    brightness: float = 0.1,
    contrast: float = 0.1,
    saturation: float = 0.1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Mild per-sample brightness, contrast and saturation jitter on float images in [0, 1].

    Brightness scales by ``fb``; contrast blends with the mean grey level by ``fc``; saturation blends with
    each pixel's grey value by ``fs``. All three are linear, so they are applied at once as
    ``fs*fc*fb * x + (1-fs)*fc*fb * gray(x) + (1-fc)*fb * mean(gray(x))`` (two passes over the batch instead
    of one per step), then clamped to [0, 1].
    """
    b = x.shape[0]
    draws = [_uniform(b, 1 - f, 1 + f, generator) for f in (brightness, contrast, saturation)]
    fb, fc, fs = to_device(torch.stack(draws), x.device).to(x.dtype).view(3, -1, 1, 1, 1).unbind(0)
    weights = _channel_constant(_GRAY_WEIGHTS, x.device, x.dtype)
    gray = (x * weights).sum(1, keepdim=True)
    offset = gray * ((1 - fs) * fc * fb) + gray.mean((2, 3), keepdim=True) * ((1 - fc) * fb)
    return torch.addcmul(offset, x, fs * fc * fb).clamp_(0, 1)


class BatchAugmentation(torch.nn.Module):
    """Training augmentation for a uint8 batch: random resized crop, flips/rotations, colour jitter.

    Args:
        crop_scale: Area fraction range of the random resized crop (``(1, 1)`` disables it).
        crop_ratio: Aspect ratio range of the crop.
        flips: Random flips and 90-degree rotations.
        brightness: Brightness jitter (multiplicative, +-).
        contrast: Contrast jitter.
        saturation: Saturation jitter.
    """

    def __init__(
        self,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flips: bool = True,
        brightness: float = 0.1,
        contrast: float = 0.1,
        saturation: float = 0.1,
    ) -> None:
        super().__init__()
        self.crop_scale = crop_scale
        self.crop_ratio = crop_ratio
        self.flips = flips
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment a batch.

        Args:
            images: uint8 (or float in [0, 1]) ``[B, 3, H, W]`` on any device.
            generator: CPU generator for the random draws (default: torch's global RNG).

        Returns:
            Float32 images in [0, 1] on the input's device (not normalised).
        """
        x = to_float(images)
        if x.shape[0] == 0:
            return x
        if self.crop_scale != (1.0, 1.0):
            x = random_resized_crop(x, self.crop_scale, self.crop_ratio, generator)
        if self.flips:
            x = random_dihedral(x, generator)
        if self.brightness or self.contrast or self.saturation:
            x = color_jitter(x, self.brightness, self.contrast, self.saturation, generator)
        return x
