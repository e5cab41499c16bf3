import hashlib
import time

import numpy as np
import pytest
from PIL import Image

from breakhis_lit.data.demo import demo_image_count, generate_demo, mask_path
from breakhis_lit.data.index import scan
from breakhis_lit.errors import BreakHisError


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_deterministic_bytes(tmp_path):
    kwargs = {"patients_per_subtype": 1, "images_per_magnification": 2, "size": (48, 32)}
    generate_demo(tmp_path / "a", seed=3, **kwargs)
    generate_demo(tmp_path / "b", seed=3, **kwargs)
    generate_demo(tmp_path / "c", seed=4, **kwargs)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_layout_and_counts(demo_root):
    index = scan(demo_root)
    assert len(index.images) == demo_image_count(3, 8) == 576
    s = index.summary()
    assert s["patient_folders"] == 24
    assert s["accession_groups"] == 23
    assert (s["benign"], s["malignant"]) == (192, 384)
    assert all(s["per_magnification"][f"{m}X"]["total"] == 144 for m in (40, 100, 200, 400))
    assert s["unexpected"] == 576  # synthetic names are not in the official list
    assert Image.open(index.abspath(index.images[0])).size == (160, 105)


def test_masks_for_malignant_images(demo_root):
    index = scan(demo_root)
    darker = []
    for im in index.images:
        mpath = mask_path(demo_root, im.path)
        assert mpath == mask_path(demo_root / "BreaKHis_v1", index.abspath(im))
        if im.label == "benign":
            assert not mpath.exists()
            continue
        mask = np.asarray(Image.open(mpath))
        assert mask.shape == (105, 160)
        assert set(np.unique(mask)) <= {0, 255}
        assert 0 < (mask > 0).mean() < 0.6
        gray = np.asarray(Image.open(index.abspath(im)).convert("L"), dtype=float)
        darker.append(gray[mask > 0].mean() < gray[mask == 0].mean())
    assert np.mean(darker) > 0.9


def test_generation_is_quick(tmp_path):
    start = time.perf_counter()
    generate_demo(tmp_path, seed=1)
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("kwargs", [{"patients_per_subtype": 0}, {"images_per_magnification": 0}, {"size": (8, 8)}])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(BreakHisError):
        generate_demo(tmp_path, **kwargs)


def test_mask_path_rejects_foreign_path(tmp_path):
    with pytest.raises(BreakHisError, match="not a BreakHis image path"):
        mask_path(tmp_path, tmp_path / "x.png")
