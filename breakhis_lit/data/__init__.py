"""BreakHis data layer: index, splits, the ``BreakHis`` domain object, decode-once cache, demo data, data module."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from breakhis_lit.data.breakhis import BreakHis, SampleRecord
    from breakhis_lit.data.datamodule import BreakHisDataModule
    from breakhis_lit.data.naming import BreakHisImage

__all__ = ["BreakHis", "BreakHisDataModule", "BreakHisImage", "SampleRecord"]

_LAZY = {
    "BreakHisDataModule": "breakhis_lit.data.datamodule",
    "BreakHis": "breakhis_lit.data.breakhis",
    "SampleRecord": "breakhis_lit.data.breakhis",
    "BreakHisImage": "breakhis_lit.data.naming",
}


def __getattr__(name: str) -> Any:
    # Lazy: the command line's data commands must not import Lightning.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'breakhis_lit.data' has no attribute {name!r}")
