"""Common interface of every backbone: logits, weight loading and Grad-CAM hooks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from breakhis_lit.errors import BreakHisError
from breakhis_lit.models.weights import LoadReport, load_checked, read_state_dict


class Backbone(nn.Module, ABC):
    """A network mapping a normalised image batch ``[B, 3, H, W]`` to logits ``[B, num_classes]``.

    Subclasses build their layers in ``__init__`` with random initialisation only; weights are
    loaded later by :meth:`load_pretrained`, which the LightningModule calls once at the start of
    ``fit`` (never when a checkpoint is restored).

    Attributes:
        num_classes: Number of output logits.
        channels_last: Whether the network prefers the channels-last memory format (conv nets).
        pretrained: Load ImageNet weights in :meth:`load_pretrained`.
        weights: Local weights file loaded by :meth:`load_pretrained` instead of downloading.
        load_report: What the last :meth:`load_pretrained` call did (``None`` before).
    """

    channels_last: bool = True

    def __init__(self, num_classes: int, pretrained: bool = False, weights: str | Path | None = None) -> None:
        super().__init__()
        if int(num_classes) < 1:
            raise BreakHisError(f"num_classes={num_classes}: must be at least 1; pass the number of classes")
        self.num_classes = int(num_classes)
        self.pretrained = bool(pretrained)
        self.weights = None if weights is None or str(weights) == "" else str(weights)
        self.load_report: LoadReport | None = None

    @property
    def display_name(self) -> str:
        """Short human-readable name used in messages."""
        return type(self).__name__

    @property
    def report_name(self) -> str:
        """The network as run records and reports name it (the paper's tables map it to their rows)."""
        return type(self).__name__

    def load_pretrained(self) -> None:
        """Load the weights asked for at construction; a no-op when none were.

        ``weights`` (a local ``.pth``/``.pt``/``.safetensors`` file) wins over ``pretrained``, so an
        offline machine can pass the file it downloaded elsewhere while keeping ``pretrained=True``.
        The classification head is skipped (and reported) when its shape differs; any other mismatch
        raises :class:`~breakhis_lit.errors.BreakHisError`.

        Raises:
            BreakHisError: Missing/unreadable file, mismatched tensors or a failed download.
        """
        if self.weights is not None:
            path = Path(self.weights).expanduser()
            report = self._load_state_dict(read_state_dict(path), source=str(path))
        elif self.pretrained:
            state_dict, source = self._imagenet_state_dict()
            report = self._load_state_dict(state_dict, source=source)
        else:
            return
        self.load_report = report
        rank_zero_info(f"{self.display_name}: {report.summary()}")

    @abstractmethod
    def _imagenet_state_dict(self) -> tuple[Mapping[str, torch.Tensor], str]:
        """Fetch (download or read from the local hub cache) the ImageNet weights.

        Returns:
            The state dict and a description of where it came from.
        """

    #: The ``head``, ``optional`` and ``ignore`` tensor patterns of :func:`load_checked` for this network.
    load_patterns: ClassVar[dict[str, tuple[str, ...]]] = {}

    def _load_state_dict(self, state_dict: Mapping[str, torch.Tensor], source: str) -> LoadReport:
        """Check ``state_dict`` (read or downloaded, prefixes not yet stripped) against this network and copy it in.

        Returns:
            What was loaded, skipped and left initialised.
        """
        return load_checked(self, state_dict, source=source, model_name=self.display_name, **self.load_patterns)

    @abstractmethod
    def gradcam_target_layers(self) -> list[nn.Module]:
        """Layers whose activations and gradients Grad-CAM combines (pytorch-grad-cam convention)."""

    def gradcam_reshape_transform(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Turn a target layer's output into ``[B, C, h, w]``; ``None`` when it already is."""
        return None


class TokensToGrid:
    """Grad-CAM reshape for ViT-style token sequences: ``[B, prefix + h*w, C]`` -> ``[B, C, h, w]``.

    Args:
        num_prefix_tokens: Class/register tokens at the start of the sequence, dropped.
        grid_size: Patch grid ``(h, w)``.
    """

    def __init__(self, num_prefix_tokens: int, grid_size: tuple[int, int]) -> None:
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.grid_size = (int(grid_size[0]), int(grid_size[1]))

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        """Drop the prefix tokens and fold the rest into the patch grid."""
        h, w = self.grid_size
        patches = tokens[:, self.num_prefix_tokens :, :]
        if patches.shape[1] != h * w:
            raise ValueError(
                f"expected {h}x{w}={h * w} patch tokens after {self.num_prefix_tokens} prefix tokens, "
                f"got {patches.shape[1]}"
            )
        return patches.reshape(patches.shape[0], h, w, patches.shape[2]).permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return f"TokensToGrid(num_prefix_tokens={self.num_prefix_tokens}, grid_size={self.grid_size})"


class ChannelsLastToFirst:
    """Grad-CAM reshape for maps laid out ``[B, H, W, C]`` (timm Swin) -> ``[B, C, H, W]``."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Move the channel axis to position 1."""
        return x.permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return "ChannelsLastToFirst()"
