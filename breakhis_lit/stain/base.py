"""The stain normaliser interface: ``fit(images) -> target`` and ``normalize(images, target)``, targets as JSON.

Also the steps the tissue-masked normalisers (Macenko, Reinhard) share: option checks, a fit that averages
per-image statistics over the images with tissue, and a chunked normalisation that leaves invalid images unchanged.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

import torch
from torch import Tensor

from breakhis_lit.errors import BreakHisError
from breakhis_lit.stain.tissue import check_uint8_images

T = TypeVar("T", bound="StainTarget")


def _tuples(value: Any) -> Any:
    """JSON lists back to (nested) tuples of floats."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


@dataclasses.dataclass(frozen=True)
class StainTarget:
    """What a normaliser learnt from the training images, with the options it used.

    Its JSON (:meth:`to_json`) is complete: two targets with the same JSON normalise every image identically,
    so the JSON is what a run saves and what enters the image-cache key. Subclasses are frozen dataclasses of
    floats and tuples of floats, and set :attr:`method`.
    """

    method: ClassVar[str] = ""
    #: Bump when the meaning of a field or the normalisation itself changes.
    version: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dictionary: ``method``, ``version`` and every field."""
        return {"method": self.method, "version": self.version, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace): equal targets give equal text."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Rebuild a target from :meth:`to_dict` output.

        Raises:
            BreakHisError: If the method, version or fields do not match this class.
        """
        data = dict(data)
        method, version = data.pop("method", None), data.pop("version", None)
        names = {f.name for f in dataclasses.fields(cls)}
        if method != cls.method or version != cls.version or set(data) != names:
            raise BreakHisError(
                f"stain target {method!r} version {version} with fields {sorted(data)}: expected {cls.method!r} "
                f"version {cls.version} with {sorted(names)}; fit the stain normaliser again"
            )
        return cls(**{k: _tuples(v) for k, v in data.items()})


class StainNormalizer(Protocol):
    """A stain normalisation method (see :mod:`breakhis_lit.stain.registry` for the ones by name)."""

    name: str

    def fit(self, images: Tensor) -> StainTarget:
        """Learn a target from uint8 ``[N, 3, H, W]`` training images."""
        ...

    def normalize(self, images: Tensor, target: StainTarget) -> Tensor:
        """Normalise uint8 ``[B, 3, H, W]`` images to ``target``; uint8 ``[B, 3, H, W]`` on the same device."""
        ...


def check_options(method: str, checks: Sequence[tuple[str, float, bool, str]]) -> None:
    """Refuse the first ``(option, value, ok, example)`` that is not ``ok``, naming it and an example value."""
    for option, value, ok, example in checks:
        if not ok:
            raise BreakHisError(f"{method} {option}={value}: out of range; pass e.g. {option}={example}")


def fit_mean(
    normalizer: Any, images: Tensor, statistics: Callable[[Tensor], tuple[Tensor, Sequence[Tensor]]]
) -> list[Tensor]:
    """Each of ``statistics`` (per chunk: valid ``[B]``, values ``[B, ...]``) averaged over the valid images."""
    check_uint8_images(images)
    valid, stats = zip(*(statistics(chunk) for chunk in images.split(normalizer.batch_size)), strict=True)
    w = torch.cat(valid).to(torch.float64)
    n_valid = int(w.sum())
    if n_valid == 0:
        raise BreakHisError(
            f"{type(normalizer).__name__.removesuffix('Normalizer')} fit: none of the {images.shape[0]} images has "
            f"{normalizer.min_tissue:.0%} tissue pixels (OD >= {normalizer.beta}); fit on images with tissue, or "
            "lower min_tissue"
        )
    return [
        (torch.cat(s).double() * w.view(-1, *[1] * (s[0].dim() - 1))).sum(0) / n_valid for s in zip(*stats, strict=True)
    ]


def check_target(method: str, images: Tensor, target: StainTarget, target_type: type[StainTarget]) -> None:
    """Refuse images that are not uint8 ``[B, 3, H, W]`` and a target not of ``target_type`` (``method``'s)."""
    check_uint8_images(images)
    if not isinstance(target, target_type):
        raise BreakHisError(
            f"stain target {target.method!r} given to the {method} normaliser; fit it with {target_type.method}"
        )


def normalize_chunks(images: Tensor, batch_size: int, rebuild: Callable[[Tensor], tuple[Tensor, Tensor]]) -> Tensor:
    """``images`` rebuilt ``batch_size`` at a time by ``rebuild`` (uint8, and which are valid), invalid ones kept."""
    out = []
    for chunk in images.split(batch_size):
        rebuilt, valid = rebuild(chunk)
        out.append(torch.where(valid[:, None, None, None], rebuilt, chunk))
    return torch.cat(out) if out else images.clone()
