"""Small backbones with the Grad-CAM interface of the model contract, for fast tests."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn


class TinyNet(nn.Module):
    """A two-conv classifier: ``features[-2]`` is the Grad-CAM layer (8 x H/2 x W/2)."""

    num_classes = 2
    channels_last = True

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, stride=2),
            nn.ReLU(),
        )
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.drop(self.features(x).mean((2, 3))))

    def gradcam_target_layers(self) -> list[nn.Module]:
        return [self.features[-2]]

    def gradcam_reshape_transform(self) -> None:
        return None


@pytest.fixture
def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture
def images() -> Tensor:
    return torch.randn(5, 3, 32, 40, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def tiny_net_class() -> type[TinyNet]:
    return TinyNet
