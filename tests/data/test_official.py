import gzip
from pathlib import Path

from breakhis_lit.data.official import OFFICIAL_FILES_RESOURCE, load_official_files, official_files_csv

RESOURCE = Path(__file__).resolve().parents[2] / "breakhis_lit" / "resources" / OFFICIAL_FILES_RESOURCE


def test_shipped_list_is_reproducible(shared_breakhis):
    assert gzip.decompress(RESOURCE.read_bytes()) == official_files_csv(shared_breakhis / "folds.csv")


def test_shipped_list_matches_files_csv(breakhis_files):
    official = load_official_files()
    assert len(official) == 7909
    for row in breakhis_files:
        assert official[row["path"]] == tuple(row[f"fold{k}"] for k in range(1, 6))
