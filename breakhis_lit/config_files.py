"""The configs shipped with the package (``breakhis_lit/configs/*.yaml``), and ``--config NAME`` resolution.

A checkout's top-level ``configs/`` is a link to this folder, so ``--config configs/attn.yaml`` reads the same
file in a clone, and after ``pip install`` anywhere (see :func:`resolve_config`).
"""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
"""The folder of the shipped configs."""


def shipped_configs() -> list[str]:
    """Names of the shipped configs (``attn``, ``resnet50``, ...), sorted."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))


def resolve_config(value: str | Path) -> str:
    """The file a ``--config`` value names.

    An existing file is itself. Otherwise ``NAME``, ``NAME.yaml`` and ``configs/NAME.yaml`` (the README's form,
    from any folder) name the shipped config ``NAME`` when there is one. Anything else is returned unchanged (a
    YAML string, or a missing file that the parser then reports).

    Args:
        value: The option's value.

    Returns:
        The path of the config file, or ``value``.
    """
    text = str(value)
    path = Path(text)
    if path.is_file() or path.parent not in (Path("."), Path("configs")) or path.suffix not in ("", ".yaml"):
        return text
    shipped = CONFIG_DIR / f"{path.stem}.yaml"
    return str(shipped) if shipped.is_file() else text
