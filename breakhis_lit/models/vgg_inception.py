"""VGG16Inception: VGG16 up to block 4 followed by a naive inception block (Saini & Susan, 2022)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.vgg import make_layers
from typing_extensions import override

from breakhis_lit.errors import BreakHisError
from breakhis_lit.models.base import Backbone
from breakhis_lit.models.weights import torchvision_imagenet_state_dict

#: VGG16 ("D") convolution plan up to block 4's max-pool: torchvision's ``vgg16().features[:24]``.
VGG16_BLOCK4 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M"]


def _conv_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2), nn.ReLU(inplace=True)
    )


class NaiveInceptionBlock(nn.Module):
    """Inception block without 1x1 reductions (Szegedy et al. 2015, Fig. 2a).

    Four parallel branches over the same input, concatenated along channels: 1x1, 3x3 and 5x5
    convolutions (each followed by ReLU) and a 3x3 stride-1 max-pool, which passes its ``in_channels``
    through unchanged unless ``pool_projection`` adds a 1x1 convolution (+ReLU) to that many channels.

    Args:
        in_channels: Input channels.
        c1: Output channels of the 1x1 branch.
        c3: Output channels of the 3x3 branch.
        c5: Output channels of the 5x5 branch.
        pool_projection: Output channels of a 1x1 convolution after the pool, or ``None`` for none.
    """

    def __init__(
        self, in_channels: int, c1: int = 64, c3: int = 128, c5: int = 32, pool_projection: int | None = None
    ) -> None:
        super().__init__()
        self.branch1x1 = _conv_relu(in_channels, c1, 1)
        self.branch3x3 = _conv_relu(in_channels, c3, 3)
        self.branch5x5 = _conv_relu(in_channels, c5, 5)
        pool: list[nn.Module] = [nn.MaxPool2d(3, stride=1, padding=1)]
        if pool_projection is not None:
            pool += list(_conv_relu(in_channels, pool_projection, 1))
        self.branch_pool = nn.Sequential(*pool)
        self.out_channels = c1 + c3 + c5 + (in_channels if pool_projection is None else pool_projection)

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the four branches: ``[B, in, H, W]`` -> ``[B, out_channels, H, W]``."""
        return torch.cat([self.branch1x1(x), self.branch3x3(x), self.branch5x5(x), self.branch_pool(x)], dim=1)


class VGG16Inception(Backbone):
    """VGG16 convolutions up to block 4, a naive inception block, batch norm and a linear classifier.

    After Saini & Susan (2022, "VGGIN-Net"), one of the paper's baselines; no library provides it. Layout:
    torchvision VGG16 ``features[:24]`` (13 -> 10 convolutions, ending with block 4's max-pool: 512 channels
    at 1/16 resolution) -> :class:`NaiveInceptionBlock` (1x1: 64, 3x3: 128, 5x5: 32, 3x3 max-pool passing
    the 512 input channels through; 736 channels) -> BatchNorm -> global average pool -> dropout ->
    Linear(736, num_classes). Dropout sits after pooling (as in the DALA head) rather than on the map.

    Parameters with two classes: 8,670,626 (VGG16 block 1-4 convolutions 7,635,264; inception
    1,032,416; batch norm 1,472; classifier 1,474). This does **not** match the 38,139,938 the DALA paper
    lists for its VGG16Inception; that number needs large dense layers on flattened features, which the
    paper does not describe (no plausible flatten/dense combination reproduced it exactly), so the
    global-pooling design of the original VGGIN-Net description is kept. ``pool_projection`` adds a 1x1
    convolution on the pool branch.

    The convolutions keep torchvision's names (``features.0`` ... ``features.21``), so a torchvision
    VGG16 ImageNet checkpoint loads into them (its block 5 and classifier are ignored).

    Args:
        num_classes: Number of logits.
        pretrained: Load torchvision's ``VGG16_Weights.IMAGENET1K_V1`` into the convolutions.
        weights: Local weights file loaded instead (a VGG16Inception state dict or a torchvision VGG16
            checkpoint).
        dropout: Dropout probability before the classifier.
        pool_projection: Channels of an optional 1x1 convolution on the inception pool branch.
    """

    channels_last = True
    load_patterns = {
        "head": ("classifier.*", "head.*"),
        "optional": ("inception.*", "norm.*"),
        "ignore": ("features.2[4-9].*", "features.3[0-9].*"),
    }

    def __init__(
        self,
        num_classes: int = 2,
        pretrained: bool = False,
        weights: str | Path | None = None,
        dropout: float = 0.25,
        pool_projection: int | None = None,
    ) -> None:
        super().__init__(num_classes=num_classes, pretrained=pretrained, weights=weights)
        if not 0.0 <= dropout < 1.0:
            raise BreakHisError(f"dropout={dropout}: must be in [0, 1)")
        self.features = make_layers(VGG16_BLOCK4, batch_norm=False)
        for m in self.features.modules():  # torchvision's VGG initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.inception = NaiveInceptionBlock(512, pool_projection=pool_projection)
        self.num_features = self.inception.out_channels
        self.norm = nn.BatchNorm2d(self.num_features)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.num_features, self.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch -> normalised inception map ``[B, num_features, H/16, W/16]``."""
        return self.norm(self.inception(self.features(x)))

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch ``[B, 3, H, W]`` -> logits ``[B, num_classes]``."""
        return self.head(self.dropout(self.global_pool(self.forward_features(x)).flatten(1)))

    @override
    def _imagenet_state_dict(self) -> tuple[Mapping[str, torch.Tensor], str]:
        return torchvision_imagenet_state_dict(torchvision.models.VGG16_Weights.IMAGENET1K_V1, "vgg16")

    @override
    def gradcam_target_layers(self) -> list[nn.Module]:
        """The batch-normalised inception output."""
        return [self.norm]
