"""Reinhard et al. (2001) colour transfer as stain normalisation, batched in torch.

Each image's per-channel mean and standard deviation are matched to the target's in CIE L*a*b* (as in
torchstain and StainTools; the paper used Ruderman's l-alpha-beta space): ``(lab - mean) / std * std_t + mean_t``
over all pixels, then back to sRGB, clipped and rounded to the nearest grey level (torchstain truncates).
Images with less than ``min_tissue`` of their pixels tissue (the OD mask of :mod:`breakhis_lit.stain.tissue`)
or a flat channel are returned unchanged, so background-only images never give NaN.

Fitting on several images (the training split) averages the per-image means and standard deviations over the
images with tissue (like the Macenko fit); on one image it is the paper's fit.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from breakhis_lit.errors import BreakHisError
from breakhis_lit.stain.base import StainTarget
from breakhis_lit.stain.lab import lab_to_rgb, rgb_to_lab
from breakhis_lit.stain.tissue import (
    DEFAULT_BETA,
    DEFAULT_IO,
    DEFAULT_MIN_TISSUE,
    check_uint8_images,
    optical_density,
    tissue_mask,
)

#: A channel with a smaller standard deviation (L*a*b* units) is flat: the image is left unchanged.
_MIN_STD = 1e-3


@dataclasses.dataclass(frozen=True)
class ReinhardTarget(StainTarget):
    """A fitted Reinhard target.

    Attributes:
        means: Mean L*, a*, b*.
        stds: Standard deviations of L*, a*, b* (population, as ``numpy.std``).
        io: Transmitted light intensity of the OD of the tissue mask.
        beta: OD threshold of the tissue mask.
        min_tissue: Fraction of tissue pixels below which an image is left unchanged.
    """

    method = "reinhard"

    means: tuple[float, float, float]
    stds: tuple[float, float, float]
    io: float = DEFAULT_IO
    beta: float = DEFAULT_BETA
    min_tissue: float = DEFAULT_MIN_TISSUE


def _statistics(images: Tensor, io: float, beta: float, min_tissue: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """L*a*b* images, their per-channel means and standard deviations ``[B, 3]``, and which images are valid."""
    lab = rgb_to_lab(images.float().div_(255.0))
    mean = lab.mean((2, 3))
    std = lab.std((2, 3), correction=0)
    tissue = tissue_mask(optical_density(images, io), beta).float().mean(-1)
    valid = (tissue >= min_tissue) & (tissue > 0) & (std > _MIN_STD).all(-1)
    return lab, mean, std, valid


class ReinhardNormalizer:
    """Reinhard colour transfer in L*a*b* (see the module docstring).

    Args:
        io: Transmitted light intensity of the OD of the tissue mask.
        beta: OD threshold of the tissue mask.
        min_tissue: Images with a smaller fraction of tissue pixels are left unchanged.
        batch_size: Images processed at once by :meth:`fit` and :meth:`normalize`.
    """

    name = "reinhard"

    def __init__(
        self,
        io: float = DEFAULT_IO,
        beta: float = DEFAULT_BETA,
        min_tissue: float = DEFAULT_MIN_TISSUE,
        batch_size: int = 64,
    ) -> None:
        for option, value, ok, example in (
            ("io", io, io > 0, "240"),
            ("beta", beta, beta > 0, "0.15"),
            ("min_tissue", min_tissue, 0 <= min_tissue <= 1, "0.01"),
            ("batch_size", batch_size, batch_size >= 1, "64"),
        ):
            if not ok:
                raise BreakHisError(f"Reinhard {option}={value}: out of range; pass e.g. {option}={example}")
        self.io = io
        self.beta = beta
        self.min_tissue = min_tissue
        self.batch_size = batch_size

    def fit(self, images: Tensor) -> ReinhardTarget:
        """Fit a target to uint8 ``[N, 3, H, W]`` training images (on any device).

        Raises:
            BreakHisError: If no image has enough tissue.
        """
        check_uint8_images(images)
        means, stds, valid = [], [], []
        for chunk in images.split(self.batch_size):
            _, mean, std, ok = _statistics(chunk, self.io, self.beta, self.min_tissue)
            means.append(mean)
            stds.append(std)
            valid.append(ok)
        w = torch.cat(valid).to(torch.float64)
        n_valid = int(w.sum())
        if n_valid == 0:
            raise BreakHisError(
                f"Reinhard fit: none of the {images.shape[0]} images has {self.min_tissue:.0%} tissue pixels "
                f"(OD >= {self.beta}); fit on images with tissue, or lower min_tissue"
            )
        mean = (torch.cat(means).double() * w[:, None]).sum(0) / n_valid
        std = (torch.cat(stds).double() * w[:, None]).sum(0) / n_valid
        return ReinhardTarget(
            means=tuple(mean.tolist()),
            stds=tuple(std.tolist()),
            io=float(self.io),
            beta=float(self.beta),
            min_tissue=float(self.min_tissue),
        )

    def normalize(self, images: Tensor, target: StainTarget) -> Tensor:
        """Normalise uint8 ``[B, 3, H, W]`` images to ``target`` with the options stored in it.

        Returns:
            uint8 ``[B, 3, H, W]`` on the input's device; images without enough tissue are returned unchanged.
        """
        check_uint8_images(images)
        if not isinstance(target, ReinhardTarget):
            raise BreakHisError(
                f"stain target {target.method!r} given to the Reinhard normaliser; fit it with reinhard"
            )
        t_mean = torch.tensor(target.means, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
        t_std = torch.tensor(target.stds, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
        out = []
        for chunk in images.split(self.batch_size):
            lab, mean, std, valid = _statistics(chunk, target.io, target.beta, target.min_tissue)
            gain = t_std / std.clamp_min(_MIN_STD)[:, :, None, None]
            moved = (lab - mean[:, :, None, None]) * gain + t_mean
            rebuilt = lab_to_rgb(moved).mul_(255.0).round_().to(torch.uint8)
            out.append(torch.where(valid[:, None, None, None], rebuilt, chunk))
        return torch.cat(out) if out else images.clone()
