"""A stain target as a file: the JSON a run saves (``stain_target.json``) and every later verb reads back."""

from __future__ import annotations

import json
from pathlib import Path

from breakhis_lit.errors import BreakHisError
from breakhis_lit.files import atomic_write_text, read_json
from breakhis_lit.stain.base import StainTarget
from breakhis_lit.stain.identity import IdentityTarget
from breakhis_lit.stain.registry import target_from_dict


def save_target(path: str | Path, target: StainTarget) -> Path:
    """Write ``target`` as indented JSON (:meth:`StainTarget.to_dict`), atomically."""
    return atomic_write_text(path, json.dumps(target.to_dict(), indent=2, sort_keys=True) + "\n")


def load_target(path: str | Path) -> StainTarget:
    """Read a target written by :func:`save_target` (or any :meth:`StainTarget.to_dict` JSON).

    Raises:
        BreakHisError: When the file is missing, not JSON, or not a stain target of this version.
    """
    path = Path(path)
    data = read_json(path, "`breakhis fit`")
    if not isinstance(data, dict):
        raise BreakHisError(f"{path}: not a stain target (a JSON object); fit the run again")
    try:
        return target_from_dict(data)
    except BreakHisError as err:
        raise BreakHisError(f"{path}: {err}") from None


def run_target(path: str | Path, stain_norm: str) -> StainTarget:
    """The stain target a run saved at ``path``, checked against the run's ``stain_norm``.

    A run without the file and with ``stain_norm`` ``none`` was fitted before targets were saved, without
    normalisation: its target is :class:`IdentityTarget`.

    Raises:
        BreakHisError: When the run normalises its images but the file is missing or unreadable, or the file's
            method is not ``stain_norm``.
    """
    path = Path(path)
    if not path.is_file() and stain_norm == "none":
        return IdentityTarget()
    if not path.is_file():
        raise BreakHisError(
            f"{path}: no such file, but the run normalises its images (--data.stain_norm {stain_norm}); a run "
            "fitted without normalisation has none: pass --data.stain_norm none, or fit the run again"
        )
    target = load_target(path)
    if target.method != stain_norm:
        raise BreakHisError(
            f"--data.stain_norm {stain_norm}: the run's stain target {path} is {target.method!r}; pass "
            f"--data.stain_norm {target.method}"
        )
    return target
