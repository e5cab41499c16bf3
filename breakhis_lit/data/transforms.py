"""Batched image transforms on the model's device: ImageNet normalisation and training augmentation.

Pure tensor operations over a whole ``[B, 3, H, W]`` batch (no per-image Python work). The augmentation is split
into *drawing* and *applying*: :meth:`BatchAugmentation.draw` turns one CPU draw of uniforms into per-sample
parameter rows (any number of samples at once: the DataModule draws a whole epoch's at its start, from its own
``torch.Generator``, and copies them to the device once); :meth:`BatchAugmentation.forward` applies a batch's rows
with a few device ops and no host work:

1. :class:`CropDihedral`: random resized crop, flips and 90-degree turns as one affine resampling
   (``grid_sample``; the flips and turns are folded into the crop's affine map);
2. :class:`HEDStain`: HED stain jitter (Tellez et al. 2018, :mod:`breakhis_lit.stain.hed_jitter`) as one affine
   map of the log-RGB per sample (``log``, ``baddbmm``, ``exp``), its matrices made on the CPU with the draw;
3. :class:`ColourNormalise`: brightness, contrast and saturation jitter, the clamp to [0, 1] and the ImageNet
   normalisation as one affine colour map per sample (``baddbmm``).

Each step draws its own block of uniforms and owns its block of parameter columns, so one more step is one more
block and one more device op. Between steps images are float32 on the 0-255 scale.
Written here because torchvision's transforms draw one set of parameters per call (the same for a whole batch);
a training step's augmentation is about 14 dispatched ops, against about 70 when each transform was applied in
turn (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import functools
import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from breakhis_lit.data.device import to_device
from breakhis_lit.stain import hed_jitter
from breakhis_lit.stain.hed import RGB_FLOOR

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


class AugmentationStep(Protocol):
    """One step of :class:`BatchAugmentation`: per-sample parameters drawn on the CPU, applied on the device."""

    #: Uniforms in [0, 1) drawn per sample.
    uniforms: int
    #: Parameter columns per sample.
    width: int

    def parameters(self, u: Tensor, height: int, width: int) -> Tensor:
        """Parameters ``[N, width]`` (float32, CPU) from uniforms ``[N, uniforms]`` for ``height`` x ``width``."""
        ...

    def apply(self, x: Tensor, params: Tensor, start: int = 0) -> Tensor:
        """Transform float32 images ``[B, 3, H, W]`` (0-255 scale) with columns ``start:start + width`` of ``params``.

        The step slices its own columns (no slice of the whole block first: one dispatched op fewer per step).
        """
        ...


class CropDihedral:
    """Random resized crop, then random flips and (square images) 90-degree turns, as one affine resampling.

    The crop has area fraction ``U(scale)`` and aspect ratio ``exp(U(log ratio))`` (each side clipped to the
    image), at a uniform position; the crop is resized back to ``H x W`` bilinearly, sampling every output pixel at
    the same point as ``torchvision.ops.roi_align(aligned=True, sampling_ratio=1)`` would (edge pixels clamped).
    Then a horizontal flip, a vertical flip and, for square images, a transpose, each with probability 1/2 (with
    both flips the transpose covers all 8 symmetries of the square). Flips and transpose only permute the
    sampling points, so they are folded into the affine map: one ``affine_grid`` + ``grid_sample`` per batch.

    Args:
        scale: Area fraction range of the crop (``(1, 1)``: no crop, whatever ``ratio``).
        ratio: Aspect ratio (width / height) range of the crop.
        flips: Random flips and 90-degree turns.
    """

    uniforms = 7
    width = 6

    def __init__(
        self, scale: tuple[float, float] = (0.5, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3), flips: bool = True
    ) -> None:
        self.scale = scale
        self.ratio = ratio
        self.flips = flips

    def parameters(self, u: Tensor, height: int, width: int) -> Tensor:
        """The rows of the affine maps ``[N, 6]`` from output to input in ``affine_grid``'s normalised coordinates."""
        if tuple(self.scale) == (1.0, 1.0):  # no crop: the whole image
            cw, ch = torch.full_like(u[:, 0], width), torch.full_like(u[:, 0], height)
        else:
            area = u[:, 0] * (self.scale[1] - self.scale[0]) + self.scale[0]
            log_low, log_high = math.log(self.ratio[0]), math.log(self.ratio[1])
            aspect = torch.exp(u[:, 1] * (log_high - log_low) + log_low)
            cw = (torch.sqrt(area * aspect) * width).clamp(max=width)
            ch = (torch.sqrt(area / aspect) * height).clamp(max=height)
        x0, y0 = u[:, 2] * (width - cw), u[:, 3] * (height - ch)
        sx, sy = cw / width, ch / height  # half-extents of the crop, normalised
        tx, ty = (2 * x0 + cw) / width - 1, (2 * y0 + ch) / height - 1  # its centre
        one = torch.ones_like(sx)
        fh = torch.where(u[:, 4] < 0.5, -one, one) if self.flips else one
        fv = torch.where(u[:, 5] < 0.5, -one, one) if self.flips else one
        turn = (u[:, 6] < 0.5) & (height == width) & self.flips
        zero = torch.zeros_like(sx)
        # theta = diag(sx, sy) @ diag(fh, fv) @ (swap of x and y if turned): the crop's output is flipped first,
        # then transposed, as in x.flip(-1).flip(-2).transpose(-1, -2) after the crop.
        row0 = torch.where(turn, zero, sx * fh), torch.where(turn, sx * fh, zero), tx
        row1 = torch.where(turn, sy * fv, zero), torch.where(turn, zero, sy * fv), ty
        return torch.stack([*row0, *row1], dim=1).float()

    def apply(self, x: Tensor, params: Tensor, start: int = 0) -> Tensor:
        """Resample the batch through its affine maps (bilinear, edges clamped)."""
        grid = F.affine_grid(params[:, start : start + 6].view(-1, 2, 3), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class HEDStain:
    """HED stain jitter: per sample and stain, concentrations ``c -> alpha * c + beta`` in scikit-image's HED space.

    ``alpha ~ U(1 - scale, 1 + scale)`` and ``beta ~ U(-bias, bias)`` for haematoxylin, eosin and DAB, as
    :func:`breakhis_lit.stain.hed_jitter.draw` draws them; the images are those of
    :func:`breakhis_lit.stain.hed_jitter.apply` on ``x / 255``, times 255. Conversion, jitter and conversion back
    are affine in the log of the image, so the parameters of a sample are that map (:func:`~breakhis_lit.stain.
    hed_jitter.log_affine`, with the 0-255 scale folded into its offset), made on the CPU when they are drawn:
    on the device a batch costs one ``log``, one ``baddbmm``, one ``exp`` and the clamp to 255.

    Args:
        scale: Half-width of the range of the concentration factors around 1.
        bias: Half-width of the range of the concentration shifts around 0 (OD units of
            :func:`~breakhis_lit.stain.hed.rgb_to_hed`; see :mod:`breakhis_lit.stain.hed_jitter` for why 0.02).
    """

    uniforms = 6
    width = 12

    def __init__(self, scale: float = hed_jitter.DEFAULT_SCALE, bias: float = hed_jitter.DEFAULT_BIAS) -> None:
        hed_jitter.check_strength(scale, bias)
        self.scale = scale
        self.bias = bias

    def parameters(self, u: Tensor, height: int, width: int) -> Tensor:
        """The log-RGB maps ``[N, 12]``: ``M`` (3 x 3, row-major, acting on column vectors) then the offset."""
        v = u.double().mul(2).sub(1).view(-1, 2, 3)  # [:, 0] factors, [:, 1] shifts, as hed_jitter.draw
        params = v * torch.tensor([self.scale, self.bias], dtype=v.dtype).view(1, 2, 1)
        params[:, 0] += 1
        mix, offset = hed_jitter.log_affine(params)
        m = mix.transpose(1, 2)
        # On the 0-255 scale: log(x / 255) = log x - ln 255, and x' / 255 = exp(...).
        offset = offset + math.log(255.0) * (1 - m.sum(-1))
        return torch.cat([m.flatten(1), offset], dim=1).float()

    def apply(self, x: Tensor, params: Tensor, start: int = 0) -> Tensor:
        """Jitter every pixel's stains through its sample's log-RGB map (0-255 in, 0-255 out)."""
        b, c, h, w = x.shape
        m, offset = params[:, start : start + 9].view(b, 3, 3), params[:, start + 9 : start + 12].view(b, 3, 1)
        log_x = x.clamp_min(255.0 * RGB_FLOOR).log_().reshape(b, c, h * w)
        return torch.baddbmm(offset, m, log_x).exp_().clamp_(max=255.0).view(b, c, h, w)


class ColourNormalise:
    """Brightness, contrast and saturation jitter, clamped to [0, 1], then ImageNet-normalised: one affine map.

    With factors ``fb``, ``fc``, ``fs`` drawn from ``U(1 - f, 1 + f)``, on ``x`` in [0, 1]: brightness scales by
    ``fb``; contrast blends with the image's mean grey level by ``fc``; saturation blends with each pixel's grey
    value by ``fs``; the result is clamped to [0, 1] and normalised by the ImageNet mean and std. All of it is
    affine in the pixel's colour vector: ``y = M x + Q mean(x) + beta``, clamped per channel to the normalised
    images of 0 and 1, with per-sample 3 x 3 matrices ``M`` (jitter, grey weights, 1/255, 1/std) and ``Q``
    (contrast's mean grey level), so a batch costs one mean and two ``baddbmm``.

    Args:
        brightness: Brightness jitter ``f`` (multiplicative, +-).
        contrast: Contrast jitter.
        saturation: Saturation jitter.
    """

    uniforms = 3
    width = 18

    def __init__(self, brightness: float = 0.1, contrast: float = 0.1, saturation: float = 0.1) -> None:
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation

    def parameters(self, u: Tensor, height: int, width: int) -> Tensor:
        """``M`` and ``Q`` of every sample, flattened: ``[N, 18]``."""
        fb, fc, fs = (u[:, i] * (2 * f) + (1 - f) for i, f in enumerate(self.factors()))
        gray = torch.tensor(_GRAY_WEIGHTS, dtype=u.dtype)
        scale = 1 / (255 * torch.tensor(IMAGENET_STD, dtype=u.dtype))  # 0-255 in, normalised out
        a, b, c = fs * fc * fb, (1 - fs) * fc * fb, (1 - fc) * fb  # x, its grey value, the mean grey level
        eye = torch.eye(3, dtype=u.dtype)
        m = (a.view(-1, 1, 1) * eye + b.view(-1, 1, 1) * gray.view(1, 1, 3)) * scale.view(1, 3, 1)
        q = c.view(-1, 1, 1) * gray.view(1, 1, 3) * scale.view(1, 3, 1)
        return torch.cat([m.flatten(1), q.flatten(1)], dim=1).float()

    def factors(self) -> tuple[float, float, float]:
        """The jitter amplitudes (brightness, contrast, saturation)."""
        return self.brightness, self.contrast, self.saturation

    def apply(self, x: Tensor, params: Tensor, start: int = 0) -> Tensor:
        """Map every pixel's colour through its sample's affine map, then clamp: normalised float32."""
        b, c, h, w = x.shape
        flat = x.reshape(b, c, h * w)
        m, q = params[:, start : start + 9].view(b, 3, 3), params[:, start + 9 : start + 18].view(b, 3, 3)
        offset = torch.baddbmm(_beta(x.device), q, flat.mean(2, keepdim=True))
        low, high = _bounds(x.device)
        return torch.baddbmm(offset, m, flat).clamp_(low, high).view(b, c, h, w)


@functools.cache
def _beta(device: torch.device) -> Tensor:
    """``-mean / std`` per channel, ``[1, 3, 1]``: the normalised image of black before the jitter's offsets."""
    return _channel_constant(tuple(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)), device,
                             torch.float32).view(1, 3, 1)  # fmt: skip


@functools.cache
def _bounds(device: torch.device) -> tuple[Tensor, Tensor]:
    """The normalised images of 0 and 1 per channel, ``[1, 3, 1]`` each: the clamp to [0, 1] after normalising."""
    low = tuple(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
    high = tuple((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
    return (_channel_constant(low, device, torch.float32).view(1, 3, 1),
            _channel_constant(high, device, torch.float32).view(1, 3, 1))  # fmt: skip


class BatchAugmentation(torch.nn.Module):
    """Training augmentation for a uint8 batch: crop, flips/turns, HED stain jitter, colour jitter, normalisation.

    Args:
        crop_scale: Area fraction range of the random resized crop (``(1, 1)`` disables it).
        crop_ratio: Aspect ratio range of the crop.
        flips: Random flips and 90-degree rotations.
        brightness: Brightness jitter (multiplicative, +-).
        contrast: Contrast jitter.
        saturation: Saturation jitter.
        hed_scale: HED jitter of the stain concentrations' factors (+-, :class:`HEDStain`).
        hed_bias: HED jitter of the stain concentrations' shifts (+-, in OD units). With ``hed_scale`` 0 too the
            step is left out (no uniforms, no device op).
    """

    def __init__(
        self,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flips: bool = True,
        brightness: float = 0.1,
        contrast: float = 0.1,
        saturation: float = 0.1,
        hed_scale: float = hed_jitter.DEFAULT_SCALE,
        hed_bias: float = hed_jitter.DEFAULT_BIAS,
    ) -> None:
        super().__init__()
        self.steps: list[AugmentationStep] = []
        if tuple(crop_scale) != (1.0, 1.0) or flips:
            self.steps.append(CropDihedral(crop_scale, crop_ratio, flips))
        if hed_scale or hed_bias:
            self.steps.append(HEDStain(hed_scale, hed_bias))
        self.steps.append(ColourNormalise(brightness, contrast, saturation))  # last: it also normalises

    @property
    def width(self) -> int:
        """Parameter columns per sample."""
        return sum(step.width for step in self.steps)

    def draw(self, n: int, height: int, width: int, generator: torch.Generator | None = None) -> Tensor:
        """Parameters of ``n`` samples of ``height`` x ``width`` images, ``[n, width]`` on the CPU, in one draw.

        Args:
            n: Samples.
            height: Image height.
            width: Image width.
            generator: CPU generator (default: torch's global RNG).
        """
        u = torch.rand(n, sum(step.uniforms for step in self.steps), generator=generator)
        return self.parameters(u, height, width)

    def parameters(self, u: Tensor, height: int, width: int) -> Tensor:
        """Parameters ``[N, width]`` from the uniforms ``[N, sum of the steps' uniforms]``, block by block."""
        blocks, start = [], 0
        for step in self.steps:
            blocks.append(step.parameters(u[:, start : start + step.uniforms], height, width))
            start += step.uniforms
        return torch.cat(blocks, dim=1)

    def forward(self, images: Tensor, params: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Augment and normalise a batch.

        Args:
            images: uint8 (or float in [0, 1]) ``[B, 3, H, W]`` on any device.
            params: The batch's rows of :meth:`draw`, on the images' device; drawn here when ``None``.
            generator: CPU generator for drawing ``params`` here (default: torch's global RNG).

        Returns:
            ImageNet-normalised float32 images on the input's device.
        """
        b, _, h, w = images.shape
        x = images.float() if images.dtype == torch.uint8 else images.float() * 255
        if b == 0:
            return normalize(x / 255)
        if params is None:
            params = to_device(self.draw(b, h, w, generator), x.device)
        start = 0
        for step in self.steps:
            x = step.apply(x, params, start)
            start += step.width
        return x
