"""Shared test fixtures: the real BreakHis metadata, a full-size tiny-PNG BreakHis tree and demo data."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from PIL import Image

SHARED_BREAKHIS = Path(__file__).resolve().parents[1] / ".." / "shared" / "breakhis"


@pytest.fixture(autouse=True, scope="session")
def _isolated_image_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep the image cache of every test out of ``~/.cache`` (``$BREAKHIS_CACHE``)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BREAKHIS_CACHE", str(tmp_path_factory.mktemp("breakhis_cache")))
        yield


@pytest.fixture(scope="session")
def shared_breakhis() -> Path:
    """The real BreakHis metadata folder (``../shared/breakhis``); skips when absent."""
    if not (SHARED_BREAKHIS / "files.csv").is_file():
        pytest.skip("../shared/breakhis not present: real BreakHis metadata (files.csv, folds.csv) unavailable")
    return SHARED_BREAKHIS.resolve()


@pytest.fixture(scope="session")
def breakhis_files(shared_breakhis: Path) -> list[dict[str, str]]:
    """Rows of ``files.csv`` (7,909 images with labels and official folds)."""
    with (shared_breakhis / "files.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def breakhis_tree(tmp_path_factory: pytest.TempPathFactory, breakhis_files: list[dict[str, str]]) -> Path:
    """A full BreakHis tree: all 7,909 official paths, as identical tiny 8x8 PNGs.

    Returns the folder holding ``BreaKHis_v1``. Session-scoped: do not modify it (copy what you need).
    """
    root = tmp_path_factory.mktemp("breakhis_full")
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 120, 180)).save(buf, format="PNG")
    data = buf.getvalue()
    made: set[Path] = set()
    for row in breakhis_files:
        path = root / row["path"]
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_bytes(data)
    return root


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic demo data (default arguments, seed 0); returns the demo folder (holding ``BreaKHis_v1``)."""
    from breakhis_lit.data.demo import generate_demo

    root = tmp_path_factory.mktemp("demo")
    generate_demo(root, seed=0)
    return root
