import json
import os
import shutil
import time
from pathlib import Path

import pytest
from unprivileged import error_lines, run_python

from breakhis_lit.data.index import find_breast_dir, scan
from breakhis_lit.errors import BreakHisError


def test_summary_reproduces_official_counts(breakhis_tree, official_summary):
    expected = official_summary
    start = time.perf_counter()
    index = scan(breakhis_tree)
    assert time.perf_counter() - start < 5
    s = index.summary()
    assert s["images"] == expected["images"] == 7909
    assert (s["benign"], s["malignant"]) == (expected["benign"], expected["malignant"])
    for mag, counts in expected["per_magnification"].items():
        assert s["per_magnification"][mag]["benign"] == counts["benign"]
        assert s["per_magnification"][mag]["malignant"] == counts["malignant"]
    for code, sub in expected["subtypes"].items():
        assert s["subtypes"][code]["images"] == sub["images"]
        assert s["subtypes"][code]["patients"] == sub["patients"]
        assert s["subtypes"][code]["per_magnification"] == sub["per_mag"]
    assert (s["patient_folders"], s["patient_ids"], s["accession_groups"]) == (82, 81, 70)
    assert (s["missing"], s["unexpected"], s["missing_files"], s["unexpected_files"]) == (0, 0, [], [])


@pytest.fixture
def small_tree(breakhis_tree, tmp_path):
    """A copy of the 40X folders of two patients (plus the rest only as missing files)."""
    src = breakhis_tree / "BreaKHis_v1/histology_slides/breast"
    keep = ["benign/SOB/adenosis/SOB_B_A_14-22549AB", "malignant/SOB/ductal_carcinoma/SOB_M_DC_14-2523"]
    for rel in keep:
        shutil.copytree(src / rel / "40X", tmp_path / "BreaKHis_v1/histology_slides/breast" / rel / "40X")
    return tmp_path


def test_missing_and_unexpected(small_tree):
    index = scan(small_tree)
    n = len(index.images)
    assert len(index.missing) == 7909 - n
    folder = small_tree / "BreaKHis_v1/histology_slides/breast/benign/SOB/adenosis/SOB_B_A_14-22549AB/40X"
    removed = folder / "SOB_B_A-14-22549AB-40-001.png"
    removed.unlink()
    shutil.copy(folder / "SOB_B_A-14-22549AB-40-002.png", folder / "SOB_B_A-14-22549AB-40-999.png")
    (folder / "notes.txt").write_text("x")
    index = scan(small_tree)
    assert (
        "BreaKHis_v1/histology_slides/breast/benign/SOB/adenosis/SOB_B_A_14-22549AB/40X/"
        "SOB_B_A-14-22549AB-40-001.png" in index.missing
    )
    assert index.unexpected == [
        "BreaKHis_v1/histology_slides/breast/benign/SOB/adenosis/SOB_B_A_14-22549AB/40X/SOB_B_A-14-22549AB-40-999.png"
    ]
    assert index.ignored == ["benign/SOB/adenosis/SOB_B_A_14-22549AB/40X/notes.txt"]
    s = index.summary()
    assert s["unexpected"] == 1
    assert s["ignored"] == 1


def test_missing_file_in_full_tree(breakhis_tree, tmp_path):
    # Remove one file from a symlinked copy would touch the shared fixture; use a hard-link farm instead.
    copy = tmp_path / "copy"
    shutil.copytree(breakhis_tree, copy, copy_function=os.link)
    victim = next((copy / "BreaKHis_v1/histology_slides/breast/malignant").rglob("*.png"))
    victim.unlink()
    index = scan(copy)
    assert len(index.images) == 7908
    assert index.missing == [victim.relative_to(copy).as_posix()]
    assert index.unexpected == []


@pytest.mark.parametrize(
    "inner",
    ["", "BreaKHis_v1", "BreaKHis_v1/histology_slides", "BreaKHis_v1/histology_slides/breast"],
)
def test_roots_inside_and_kaggle_nesting(small_tree, tmp_path_factory, inner):
    expected = [im.path for im in scan(small_tree).images]
    assert [im.path for im in scan(small_tree / inner).images] == expected
    kaggle = tmp_path_factory.mktemp("kaggle")
    shutil.copytree(small_tree / "BreaKHis_v1", kaggle / "BreaKHis_v1" / "BreaKHis_v1")
    assert [im.path for im in scan(kaggle / "BreaKHis_v1" / inner).images] == expected
    if inner in ("", "BreaKHis_v1"):  # the folder holding the outer BreaKHis_v1, and the outer one itself
        assert [im.path for im in scan(kaggle / inner).images] == expected


def test_abspath_and_select(small_tree):
    index = scan(small_tree / "BreaKHis_v1")
    im = index.images[0]
    assert index.abspath(im).is_file()
    assert index.select("40X") == index.images
    assert index.select(100) == []


def test_missing_root(tmp_path):
    with pytest.raises(BreakHisError, match="does not exist"):
        scan(tmp_path / "nope")


def test_root_without_layout(tmp_path):
    (tmp_path / "something").mkdir()
    with pytest.raises(BreakHisError, match="no BreakHis layout"):
        find_breast_dir(tmp_path)


def test_root_without_images(tmp_path):
    (tmp_path / "BreaKHis_v1/histology_slides/breast/benign").mkdir(parents=True)
    with pytest.raises(BreakHisError, match="no BreakHis images"):
        scan(tmp_path)


def test_unparseable_file_named(small_tree):
    folder = small_tree / "BreaKHis_v1/histology_slides/breast/benign/SOB/adenosis/SOB_B_A_14-22549AB/40X"
    (folder / "scan copy.png").write_bytes(b"")
    (folder / "SOB_B_A-14-22549AB-100-001.png").write_bytes(b"")
    with pytest.raises(BreakHisError, match="2 image file") as err:
        scan(small_tree)
    msg = str(err.value)
    assert "scan copy.png" in msg
    assert "magnification folder 40X" in msg
    assert "\n" not in msg


def _deny_listing(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make listing ``folder`` fail as for a mode-000 folder."""
    real = os.scandir

    def guarded(path="."):
        if Path(os.fsdecode(path)) == folder:
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", guarded)


def test_unreadable_folder_named(small_tree, monkeypatch):
    before = len(scan(small_tree).images)
    folder = small_tree / "BreaKHis_v1/histology_slides/breast/malignant/SOB/ductal_carcinoma/SOB_M_DC_14-2523/40X"
    _deny_listing(folder, monkeypatch)
    with pytest.raises(BreakHisError) as err:
        scan(small_tree)
    message = str(err.value)
    assert message.startswith(f"{folder}: cannot read this folder (Permission denied); fix its permissions")
    assert "\n" not in message
    monkeypatch.undo()
    assert len(scan(small_tree).images) == before  # nothing below it was touched


def test_unreadable_folder_for_real(small_tree):
    folder = small_tree / "BreaKHis_v1/histology_slides/breast/benign/SOB/adenosis/SOB_B_A_14-22549AB/40X"
    n_files = len(list(folder.iterdir()))
    folder.chmod(0o000)
    try:
        proc = run_python("-m", "breakhis_lit", "data", "summary", "--root", str(small_tree))
    finally:
        folder.chmod(0o755)
    assert proc.returncode == 2, proc.stderr
    assert error_lines(proc) == [
        f"error: {folder}: cannot read this folder (Permission denied); fix its permissions (e.g. chmod u+rx) or "
        f"move it out of {small_tree / 'BreaKHis_v1/histology_slides/breast'}"
    ]
    assert proc.stdout == ""  # no summary counting the other images only
    assert len(list(folder.iterdir())) == n_files


def test_link_loops_end_and_are_reported(small_tree):
    breast = small_tree / "BreaKHis_v1/histology_slides/breast"
    folder = breast / "benign/SOB/adenosis/SOB_B_A_14-22549AB/40X"
    (folder / "a").symlink_to(".")
    (folder / "b").symlink_to(".")
    (breast / "malignant" / "SOB" / "again").symlink_to("../../malignant", target_is_directory=True)
    start = time.perf_counter()
    proc = run_python("-m", "breakhis_lit", "data", "summary", "--root", str(small_tree), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - start < 60
    out = json.loads(proc.stdout)
    assert out["images"] == sum(1 for _ in breast.glob("*/SOB/*/*/40X/*.png"))
    assert out["skipped_links"] == 3
    rel = folder.relative_to(breast).as_posix()
    assert out["skipped_link_folders"] == [f"{rel}/a", f"{rel}/b", "malignant/SOB/again"]
    assert "3 linked folder(s) below" in proc.stderr
    assert "not entered again" in proc.stderr


def test_links_to_folders_elsewhere_are_followed(small_tree, tmp_path_factory):
    breast = small_tree / "BreaKHis_v1/histology_slides/breast"
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    patient = "benign/SOB/adenosis/SOB_B_A_14-22549AB"
    shutil.move(breast / patient, elsewhere / "moved")
    (breast / patient).symlink_to(elsewhere / "moved", target_is_directory=True)
    (breast / "benign/SOB/link-to-adenosis").symlink_to(breast / "benign/SOB/adenosis", target_is_directory=True)
    index = scan(small_tree)
    assert any(im.path.startswith(f"BreaKHis_v1/histology_slides/breast/{patient}/") for im in index.images)
    assert index.skipped_links == ["benign/SOB/link-to-adenosis"]  # the real folder is scanned, the link not
    assert len({im.path for im in index.images}) == len(index.images)


def test_original_and_kaggle_layouts_under_one_root_refused(small_tree):
    shutil.copytree(small_tree / "BreaKHis_v1", small_tree / "BreaKHis_v1" / "BreaKHis_v1")  # a second, nested copy
    plain = small_tree / "BreaKHis_v1/histology_slides/breast"
    kaggle = small_tree / "BreaKHis_v1/BreaKHis_v1/histology_slides/breast"
    for root in (small_tree, small_tree / "BreaKHis_v1"):
        with pytest.raises(BreakHisError) as err:
            scan(root)
        message = str(err.value)
        assert "\n" not in message
        assert message.startswith(f"{root}: 2 BreakHis layouts found ({kaggle} and {plain})")
        assert f"point --data.root at one of them: {kaggle.parent} or {plain.parent}" in message
    assert find_breast_dir(kaggle.parent) == kaggle  # each suggested root is unambiguous
    assert find_breast_dir(plain.parent) == plain
    assert len(scan(plain.parent).images) == len(scan(kaggle.parent).images)
