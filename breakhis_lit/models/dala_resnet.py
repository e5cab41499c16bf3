"""DALA-ResNet: a torchvision ResNet with a lightweight channel-attention gate (Liu & Achutha, 2023)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from typing_extensions import override

from breakhis_lit.errors import BreakHisError
from breakhis_lit.models.base import Backbone
from breakhis_lit.models.weights import torchvision_imagenet_state_dict

Arch = Literal["resnet18", "resnet34", "resnet50"]
GateActivation = Literal["leaky_relu", "relu", "gelu", "silu", "tanh"]
GateOutput = Literal["sigmoid", "relu"]
GatePosition = Literal["after_layer4", "each_block"]
HeadKind = Literal["linear", "two_layer"]

_IMAGENET_WEIGHTS = {
    "resnet18": "ResNet18_Weights.IMAGENET1K_V1",
    "resnet34": "ResNet34_Weights.IMAGENET1K_V1",
    "resnet50": "ResNet50_Weights.IMAGENET1K_V1",
}
_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "leaky_relu": nn.LeakyReLU,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise BreakHisError(f"activation {name!r}: unknown; use one of {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


class LightweightAttentionGate(nn.Module):
    """Squeeze-and-excitation style channel gate: ``x * g(mean_hw(x))``.

    ``g`` is ``Linear(C, C // reduction) -> activation -> Linear(C // reduction, C) -> output`` with biases,
    i.e. ``2 * C * C // reduction + C // reduction + C`` parameters (2,099,712 for C=2048, reduction 4).

    Args:
        channels: Channels ``C`` of the gated feature map.
        reduction: Bottleneck ratio of the two linear layers.
        activation: Non-linearity between them (LeakyReLU in DALA-ResNet50).
        output: ``"sigmoid"`` gives weights in (0, 1) (squeeze-excitation); ``"relu"`` gives unbounded
            non-negative weights (a literal reading of the paper's "LeakyReLU and ReLU" pair).
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 4,
        activation: GateActivation = "leaky_relu",
        output: GateOutput = "sigmoid",
    ) -> None:
        super().__init__()
        if reduction < 1 or channels % reduction:
            raise BreakHisError(
                f"reduction={reduction}: must be a positive divisor of the gated channels ({channels}); "
                "use e.g. 2, 4, 8 or 16"
            )
        if output not in ("sigmoid", "relu"):
            raise BreakHisError(f"gate_output={output!r}: unknown; use 'sigmoid' or 'relu'")
        hidden = channels // reduction
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(channels, hidden)
        self.act = _activation(activation)
        self.fc2 = nn.Linear(hidden, channels)
        self.gate = _activation(output)

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale each channel of ``x`` ``[B, C, H, W]`` by its learned weight."""
        w = self.gate(self.fc2(self.act(self.fc1(self.pool(x).flatten(1)))))
        return x * w[:, :, None, None]


class GatedResidualBlock(nn.Module):
    """A torchvision ResNet block with a channel gate on its residual branch (squeeze-excitation placement).

    The block's layers are adopted under their original names (``conv1``, ``bn1``, ..., ``downsample``),
    so ImageNet ResNet checkpoints still load; the gate adds ``gate.*`` tensors.

    Args:
        block: A torchvision ``BasicBlock`` or ``Bottleneck`` (its layers are reused, not copied).
        gate: Gate applied to the residual branch before the identity is added.
    """

    def __init__(self, block: BasicBlock | Bottleneck, gate: nn.Module) -> None:
        super().__init__()
        for name, child in block.named_children():
            self.add_module(name, child)
        self.downsample: nn.Module | None = block.downsample
        self.gate = gate
        self.bottleneck = isinstance(block, Bottleneck)

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block forward with the gated residual branch."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.bottleneck:
            out = self.bn3(self.conv3(self.relu(out)))
        out = self.gate(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ClassifierHead(nn.Module):
    """Pooled features -> logits: the DALA-ResNet head.

    ``"linear"``: ``Dropout -> Linear(in, num_classes)``.

    ``"two_layer"`` (the paper's "two fully connected layers with LeakyReLU and ReLU" read as a head):
    ``Dropout -> Linear(in, hidden) -> LeakyReLU -> Dropout -> Linear(hidden, num_classes) -> ReLU``. The
    final ReLU acts on the logits themselves: they become non-negative, so a class can only be preferred
    by raising its own logit, and when every pre-activation of a sample is negative all logits are 0, the
    softmax is uniform and no gradient flows back (a "dead" sample). Set ``logit_relu=False`` to drop it.

    Args:
        in_features: Pooled feature size.
        num_classes: Number of logits.
        kind: ``"linear"`` or ``"two_layer"``.
        dropout: Dropout probability before each linear layer.
        hidden: Width of the first layer of the two-layer head.
        logit_relu: Apply the ReLU to the two-layer head's logits.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        kind: HeadKind = "linear",
        dropout: float = 0.25,
        hidden: int = 512,
        logit_relu: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise BreakHisError(f"dropout={dropout}: must be in [0, 1)")
        self.kind = kind
        self.drop = nn.Dropout(dropout)
        if kind == "linear":
            self.fc = nn.Linear(in_features, num_classes)
        elif kind == "two_layer":
            self.fc1 = nn.Linear(in_features, hidden)
            self.act1 = nn.LeakyReLU()
            self.drop2 = nn.Dropout(dropout)
            self.fc2 = nn.Linear(hidden, num_classes)
            self.act2 = nn.ReLU() if logit_relu else nn.Identity()
        else:
            raise BreakHisError(f"head={kind!r}: unknown; use 'linear' or 'two_layer'")

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``[B, in_features]`` to logits ``[B, num_classes]``."""
        if self.kind == "linear":
            return self.fc(self.drop(x))
        return self.act2(self.fc2(self.drop2(self.act1(self.fc1(self.drop(x))))))


class DALAResNet(Backbone):
    """DALA-ResNet: ImageNet ResNet trunk + lightweight channel attention + dropout + classifier.

    The paper (Liu & Achutha, arXiv 2308.13150, "dual-activated lightweight attention ResNet50") embeds
    "an attention module in layer 4 of ResNet50 and adds two fully connected layers" using "LeakyReLU
    and ReLU". Its text can be read several ways; its parameter count, 25,611,842 for two classes, is met
    *exactly* by the default built here::

        torchvision ResNet50 without fc          23,508,032
        gate on layer4's output (2048 channels):  2,099,712
            AdaptiveAvgPool -> Linear(2048, 512) -> LeakyReLU -> Linear(512, 2048) -> sigmoid,
            multiplied channel-wise into the feature map
        global average pool, Dropout(0.25), Linear(2048, 2)   4,098
                                                  ----------
                                                 25,611,842

    So the "two fully connected layers" are the gate's, LeakyReLU is its hidden activation and the
    classifier is a single linear layer. The alternatives are options: ``gate_position="each_block"``
    (a gate on the residual branch of every block, as in SE-ResNet), ``head="two_layer"`` (a literal
    FC+LeakyReLU, FC+ReLU head; see :class:`ClassifierHead` for what a ReLU on the logits means),
    ``gate_output="relu"`` (the ReLU read as the gate's output), and the reduction ratio and gate
    activation. Smaller trunks (``arch="resnet18"``/``"resnet34"``) give the same family for fast CPU demos.

    The trunk keeps torchvision's tensor names (``conv1``, ``bn1``, ``layer1`` ... ``layer4``), so an
    ImageNet ResNet checkpoint loads into it directly; the gate and head are then left initialised.

    Args:
        arch: torchvision ResNet trunk.
        num_classes: Number of logits.
        pretrained: Load torchvision's ImageNet weights (``IMAGENET1K_V1``) into the trunk in
            :meth:`load_pretrained`.
        weights: Local weights file loaded by :meth:`load_pretrained` instead (a DALA-ResNet state dict,
            or a torchvision ResNet ImageNet checkpoint of the same ``arch``).
        reduction: Gate bottleneck ratio (channels -> channels // reduction -> channels).
        gate_activation: Gate hidden activation.
        gate_output: Gate output function (``"sigmoid"``, or ``"relu"`` for the literal reading).
        gate_position: ``"after_layer4"`` (one gate on layer4's output) or ``"each_block"``.
        head: ``"linear"`` (default) or ``"two_layer"``.
        head_hidden: Width of the two-layer head's first layer.
        head_logit_relu: Keep the ReLU on the two-layer head's logits.
        dropout: Dropout probability before the classifier.
    """

    channels_last = True
    load_patterns = {
        "head": ("fc.*", "head.*"),
        "optional": ("attention.*", "layer*.gate.*"),
    }

    def __init__(
        self,
        arch: Arch = "resnet50",
        num_classes: int = 2,
        pretrained: bool = False,
        weights: str | Path | None = None,
        reduction: int = 4,
        gate_activation: GateActivation = "leaky_relu",
        gate_output: GateOutput = "sigmoid",
        gate_position: GatePosition = "after_layer4",
        head: HeadKind = "linear",
        head_hidden: int = 512,
        head_logit_relu: bool = True,
        dropout: float = 0.25,
    ) -> None:
        super().__init__(num_classes=num_classes, pretrained=pretrained, weights=weights)
        if arch not in _IMAGENET_WEIGHTS:
            raise BreakHisError(f"arch={arch!r}: unknown; use one of {', '.join(_IMAGENET_WEIGHTS)}")
        if gate_position not in ("after_layer4", "each_block"):
            raise BreakHisError(f"gate_position={gate_position!r}: unknown; use 'after_layer4' or 'each_block'")
        self.arch = arch
        self.gate_position = gate_position
        trunk = getattr(torchvision.models, arch)(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool
        for name in ("layer1", "layer2", "layer3", "layer4"):
            layer: nn.Sequential = getattr(trunk, name)
            if gate_position == "each_block":
                layer = nn.Sequential(
                    *(
                        GatedResidualBlock(
                            block,
                            LightweightAttentionGate(_block_channels(block), reduction, gate_activation, gate_output),
                        )
                        for block in layer
                    )
                )
            setattr(self, name, layer)
        self.num_features = trunk.fc.in_features
        self.attention: nn.Module = (
            LightweightAttentionGate(self.num_features, reduction, gate_activation, gate_output)
            if gate_position == "after_layer4"
            else nn.Identity()
        )
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head = ClassifierHead(self.num_features, self.num_classes, head, dropout, head_hidden, head_logit_relu)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch -> gated feature map ``[B, num_features, H/32, W/32]``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attention(x)

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch ``[B, 3, H, W]`` -> logits ``[B, num_classes]``."""
        return self.head(self.global_pool(self.forward_features(x)).flatten(1))

    @override
    @property
    def report_name(self) -> str:
        """``DALAResNet50`` for the paper's model, else the trunk too (``DALAResNet[resnet18]``)."""
        return type(self).__name__ if type(self) is not DALAResNet else f"DALAResNet[{self.arch}]"

    def _imagenet_state_dict(self) -> tuple[Mapping[str, torch.Tensor], str]:
        weights = torchvision.models.get_weight(_IMAGENET_WEIGHTS[self.arch])
        return torchvision_imagenet_state_dict(weights, self.arch)

    @override
    def gradcam_target_layers(self) -> list[nn.Module]:
        """The module whose output is the gated layer4 map (the gate, or the last gated block)."""
        if self.gate_position == "after_layer4":
            return [self.attention]
        return [self.layer4[-1]]


def _block_channels(block: nn.Module) -> int:
    last_bn = block.bn3 if isinstance(block, Bottleneck) else block.bn2
    return int(last_bn.num_features)


class DALAResNet50(DALAResNet):
    """DALA-ResNet50 as reconstructed from the paper (25,611,842 parameters with two classes).

    :class:`DALAResNet` with ``arch="resnet50"``; see there for the reading of the paper and the options (every
    one but ``arch``).
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(arch="resnet50", **options)
