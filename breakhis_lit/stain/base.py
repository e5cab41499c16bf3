"""The stain normaliser interface: ``fit(images) -> target`` and ``normalize(images, target)``, targets as JSON."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar, Protocol, TypeVar

from torch import Tensor

from breakhis_lit.errors import BreakHisError

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
