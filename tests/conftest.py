"""Shared test fixtures: the official BreakHis list and counts, a full-size tiny-PNG BreakHis tree and demo data."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

SHARED_SAMPLES = Path(__file__).resolve().parents[1] / ".." / "shared" / "breakhis" / "samples"
"""The 18 real BreakHis PNGs beside the repository (the only test data not shipped with the package)."""

OFFICIAL_SUMMARY: dict[str, Any] = {
    "images": 7909,
    "benign": 2480,
    "malignant": 5429,
    "per_magnification": {
        "40X": {"benign": 625, "malignant": 1370},
        "100X": {"benign": 644, "malignant": 1437},
        "200X": {"benign": 623, "malignant": 1390},
        "400X": {"benign": 588, "malignant": 1232},
    },
    "subtypes": {
        "A": {"images": 444, "patients": 4, "per_mag": {"40X": 114, "100X": 113, "200X": 111, "400X": 106}},
        "F": {"images": 1014, "patients": 10, "per_mag": {"40X": 253, "100X": 260, "200X": 264, "400X": 237}},
        "PT": {"images": 453, "patients": 3, "per_mag": {"40X": 109, "100X": 121, "200X": 108, "400X": 115}},
        "TA": {"images": 569, "patients": 7, "per_mag": {"40X": 149, "100X": 150, "200X": 140, "400X": 130}},
        "DC": {"images": 3451, "patients": 38, "per_mag": {"40X": 864, "100X": 903, "200X": 896, "400X": 788}},
        "LC": {"images": 626, "patients": 5, "per_mag": {"40X": 156, "100X": 170, "200X": 163, "400X": 137}},
        "MC": {"images": 792, "patients": 9, "per_mag": {"40X": 205, "100X": 222, "200X": 196, "400X": 169}},
        "PC": {"images": 560, "patients": 6, "per_mag": {"40X": 145, "100X": 142, "200X": 135, "400X": 138}},
    },
    "fold_test_images": {1: 2904, 2: 2403, 3: 2577, 4: 2698, 5: 3083},
}
"""BreakHis's published counts (Spanhol et al. 2016, Table 1) and the official folds' test sizes."""


@pytest.fixture(autouse=True, scope="session")
def _isolated_image_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep the image cache of every test out of ``~/.cache`` (``$BREAKHIS_CACHE``)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BREAKHIS_CACHE", str(tmp_path_factory.mktemp("breakhis_cache")))
        yield


@pytest.fixture(scope="session")
def official_summary() -> dict[str, Any]:
    """The counts a full BreakHis tree must reproduce (:data:`OFFICIAL_SUMMARY`)."""
    return OFFICIAL_SUMMARY


@pytest.fixture(scope="session")
def breakhis_samples() -> list[Path]:
    """The 18 real BreakHis PNGs of ``../shared/breakhis/samples``, sorted; skips when they are absent."""
    paths = sorted(SHARED_SAMPLES.glob("*.png")) if SHARED_SAMPLES.is_dir() else []
    if len(paths) != 18:
        pytest.skip(f"{SHARED_SAMPLES}: the 18 real BreakHis PNGs are not beside this checkout")
    return paths


@pytest.fixture(scope="session")
def breakhis_files() -> list[dict[str, str]]:
    """One row per official image (7,909), from the package's own list: path, labels, patient, folds."""
    from breakhis_lit.data.naming import parse_path
    from breakhis_lit.data.official import NUM_OFFICIAL_FOLDS, load_official_files

    rows = []
    for path, folds in load_official_files().items():
        image = parse_path(path)
        rows.append(
            {
                "path": path,
                "filename": image.filename,
                "magnification": str(image.magnification),
                "label": image.label,
                "subtype_code": image.subtype_code,
                "patient_id": image.patient_id,
                **{f"fold{k}": folds[k - 1] for k in range(1, NUM_OFFICIAL_FOLDS + 1)},
            }
        )
    return rows


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
