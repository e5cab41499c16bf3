"""The shipped official list: byte-reproducible from its source format, pinned content, the published fold sizes."""

import csv
import gzip
import hashlib
from pathlib import Path

from breakhis_lit.data.naming import parse_path
from breakhis_lit.data.official import OFFICIAL_FILES_RESOURCE, build_official_files, load_official_files

RESOURCE = Path(__file__).resolve().parents[2] / "breakhis_lit" / "resources" / OFFICIAL_FILES_RESOURCE
CONTENT_SHA256 = "2f329232b8f621dbb1c6338a92c976bb47549a923e860bd7dd001193829a982b"
"""sha256 of the decompressed list, as generated from the official Folds.csv (see :mod:`breakhis_lit.data.official`)."""


def test_shipped_list_is_the_generated_one():
    assert hashlib.sha256(gzip.decompress(RESOURCE.read_bytes())).hexdigest() == CONTENT_SHA256


def test_shipped_list_is_reproducible(tmp_path):
    """Written back as an official Folds.csv (CRLF, fold by fold) and converted again: the same bytes."""
    folds_csv = tmp_path / "Folds.csv"
    with folds_csv.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(["fold", "mag", "grp", "filename"])
        for k in range(1, 6):
            for path, folds in reversed(load_official_files().items()):
                writer.writerow([k, parse_path(path).magnification, folds[k - 1], path])
    assert build_official_files(folds_csv, tmp_path / "out.csv.gz").read_bytes() == RESOURCE.read_bytes()


def test_shipped_list_has_every_image_and_the_published_folds(official_summary):
    official = load_official_files()
    assert len(official) == official_summary["images"] == 7909
    assert all(parse_path(path).filename for path in official)  # every path has the BreakHis layout
    for k, size in official_summary["fold_test_images"].items():
        assert sum(folds[k - 1] == "test" for folds in official.values()) == size
    assert {value for folds in official.values() for value in folds} == {"train", "test"}
