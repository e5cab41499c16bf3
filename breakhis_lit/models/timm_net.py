"""TimmClassifier: any timm image model as a backbone (the paper's CNN and transformer baselines)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models.densenet import DenseNet
from timm.models.resnet import ResNet
from timm.models.swin_transformer import SwinTransformer
from timm.models.vgg import VGG
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from typing_extensions import override

from breakhis_lit.errors import BreakHisError
from breakhis_lit.models.base import Backbone, ChannelsLastToFirst, TokensToGrid
from breakhis_lit.models.weights import LoadReport, download_error, load_checked, strip_prefixes


def check_timm_model_name(model_name: str) -> None:
    """Raise a one-line error listing close matches when timm does not know ``model_name``.

    Args:
        model_name: timm architecture, optionally with a pretrained tag (``resnet50.a1_in1k``).

    Raises:
        BreakHisError: Unknown name.
    """
    if timm.is_model(model_name):
        return
    close = difflib.get_close_matches(model_name, timm.list_models(), n=5, cutoff=0.6)
    raise BreakHisError(
        f"model_name={model_name!r}: not a timm model; close matches: {', '.join(close) or 'none'} "
        "(all names: python -c 'import timm; print(timm.list_models())')"
    )


def _accepts_img_size(model_name: str) -> bool:
    """Whether the architecture has a fixed input size set by ``img_size`` (ViT, DINOv2, Swin, ...)."""
    cfg = timm.models.get_pretrained_cfg(model_name, allow_unregistered=True)
    return bool(cfg is not None and cfg.fixed_input_size)


class TimmClassifier(Backbone):
    """A timm model created with random weights and ``num_classes`` logits.

    Baselines of the paper and their timm names: ResNet50 ``resnet50``, SEResNet50 ``seresnet50``,
    DenseNet121 ``densenet121``, VGG16 ``vgg16``, ViT-B/16 ``vit_base_patch16_224``, Swin-B/4 w7
    ``swin_base_patch4_window7_224``, DINOv2 ViT-S/14 ``vit_small_patch14_dinov2`` and ViT-B/14
    ``vit_base_patch14_dinov2``. DINOv2 models default to 518-pixel inputs; pass ``img_size=224`` for
    224-pixel images (a 16x16 patch grid; ImageNet position embeddings are resampled on load).

    Args:
        model_name: timm architecture (optionally ``name.tag`` to choose the pretrained weights).
        num_classes: Number of logits.
        pretrained: Load timm's ImageNet weights in :meth:`load_pretrained` (from the Hugging Face
            cache, else by download); the classifier is skipped when its shape differs.
        weights: Local weights file loaded instead: a state dict saved from this class, or the
            original timm/torchvision/Meta/Microsoft checkpoint (converted by timm's filter).
        img_size: Input size for fixed-size architectures (ViT, DINOv2, Swin); ignored by conv nets.
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth rate (architectures supporting it); ``None`` keeps timm's default.
        model_kwargs: Further keyword arguments for ``timm.create_model``.
    """

    def __init__(
        self,
        model_name: str,
        num_classes: int = 2,
        pretrained: bool = False,
        weights: str | Path | None = None,
        img_size: int | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(num_classes=num_classes, pretrained=pretrained, weights=weights)
        check_timm_model_name(model_name)
        self.model_name = model_name
        kwargs: dict[str, Any] = {"drop_rate": drop_rate}
        if img_size is not None and _accepts_img_size(model_name):
            kwargs["img_size"] = int(img_size)
        if drop_path_rate is not None:
            kwargs["drop_path_rate"] = drop_path_rate
        kwargs.update(model_kwargs or {})
        self._create_kwargs = kwargs
        try:
            self.model = timm.create_model(model_name, pretrained=False, num_classes=self.num_classes, **kwargs)
        except TypeError as exc:
            raise BreakHisError(
                f"model_name={model_name!r}: timm rejected the options {sorted(kwargs)} ({exc}); remove the "
                "unsupported ones"
            ) from exc
        self.channels_last = not hasattr(self.model, "patch_embed")

    @property
    @override
    def display_name(self) -> str:
        return f"{type(self).__name__}({self.model_name})"

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch ``[B, 3, H, W]`` -> logits ``[B, num_classes]``."""
        return self.model(x)

    def _head_patterns(self) -> tuple[str, ...]:
        classifier = self.model.pretrained_cfg.get("classifier") or "head"
        names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
        return tuple(f"{n}.*" for n in names)

    @override
    @property
    def report_name(self) -> str:
        """The timm model name (``vit_small_patch14_dinov2``), as the paper's baselines are named."""
        return self.model_name

    def _timm_pretrained(self, overlay: dict[str, Any] | None = None) -> nn.Module:
        """The timm model with its pretrained weights, or ``overlay``'s (``pretrained_cfg_overlay``), loaded by timm.

        timm converts original layouts (torchvision, Microsoft, Meta) with the architecture's own filter and
        resamples position embeddings to ``img_size``; the load is strict, so every tensor comes from the source.
        """
        return timm.create_model(
            self.model_name,
            pretrained=True,
            pretrained_cfg_overlay=overlay,
            pretrained_strict=True,
            **self._create_kwargs,
        )

    def _imagenet_state_dict(self) -> tuple[Mapping[str, torch.Tensor], str]:
        cfg = self.model.pretrained_cfg
        hub = cfg.get("hf_hub_id")
        where = f"https://huggingface.co/{hub} (model.safetensors)" if hub else cfg.get("url")
        try:
            reference = self._timm_pretrained()
        except Exception as exc:  # hub, network and cache errors all leave the user the same remedy
            raise download_error(self.model_name, exc, where, ".safetensors" if hub else ".pth") from exc
        return reference.state_dict(), f"timm ImageNet weights ({where or self.model_name})"

    @override
    def _load_state_dict(self, state_dict: Mapping[str, torch.Tensor], source: str) -> LoadReport:
        head = self._head_patterns()
        own = self.model.state_dict()
        sd, dropped = strip_prefixes(state_dict, own.keys())
        if not _same_layout(sd, own, head):
            sd = self._convert_original_layout(sd)
        report = load_checked(self.model, sd, source=source, model_name=self.display_name, head=head)
        report.ignored = dropped + report.ignored
        return report

    def _convert_original_layout(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The tensors as timm loads them as pretrained weights (e.g. torchvision VGG, Meta DINOv2 checkpoints).

        When timm cannot load them, they are returned unchanged and the strict check in :func:`load_checked`
        names what does not fit.
        """
        try:
            return dict(self._timm_pretrained({"state_dict": dict(state_dict)}).state_dict())
        except Exception:  # not convertible: fall through to the precise mismatch message
            return state_dict

    @override
    def gradcam_target_layers(self) -> list[nn.Module]:
        """The last spatial feature layer of the architecture.

        ``layer4[-1]`` (ResNet, SE-ResNet), ``features.norm5`` (DenseNet), the last ReLU of ``features``
        (VGG; ``pre_logits`` is a 7x7-conv MLP, not a feature map), ``blocks[-1].norm1`` (ViT, DINOv2),
        ``layers[-1].blocks[-1].norm1`` (Swin).
        """
        m = self.model
        if isinstance(m, ResNet):
            return [m.layer4[-1]]
        if isinstance(m, DenseNet):
            return [m.features.norm5]
        if isinstance(m, VGG):
            relus = [layer for layer in m.features if isinstance(layer, nn.ReLU)]
            return [relus[-1]]
        if isinstance(m, VisionTransformer):
            return [m.blocks[-1].norm1]
        if isinstance(m, SwinTransformer):
            return [m.layers[-1].blocks[-1].norm1]
        raise BreakHisError(
            f"model_name={self.model_name!r}: no Grad-CAM target layer is defined for timm's "
            f"{type(m).__name__}; Grad-CAM supports ResNet, DenseNet, VGG, ViT/DINOv2 and Swin models"
        )

    @override
    def gradcam_reshape_transform(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Token sequence -> patch grid (ViT, DINOv2); NHWC -> NCHW (Swin); ``None`` for conv nets."""
        m = self.model
        if isinstance(m, VisionTransformer):
            return TokensToGrid(m.num_prefix_tokens, tuple(m.patch_embed.grid_size))
        if isinstance(m, SwinTransformer):
            return ChannelsLastToFirst()
        return None


def _same_layout(sd: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], head: tuple[str, ...]) -> bool:
    """Whether ``sd`` already has every non-head tensor of ``own`` with the same shape and nothing else."""

    def is_head(key: str) -> bool:
        return any(fnmatchcase(key, p) for p in head)

    for key, tensor in own.items():
        if is_head(key) or key.endswith("num_batches_tracked"):
            continue
        if key not in sd or sd[key].shape != tensor.shape:
            return False
    return all(key in own or is_head(key) for key in sd)
