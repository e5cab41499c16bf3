"""The official BreakHis image list with its five fold memberships, shipped as package data.

``breakhis_lit/resources/official_files.csv.gz`` was generated from the official ``Folds.csv`` of the
Kaggle copy of BreakHis (the repository's ``../shared/breakhis/folds.csv``, sha256
``d264b580079be2c4ade77d23d5bc25a1458a385d051de68b0e9ce9dd26b91c2f``) with::

    python -m breakhis_lit.data.official ../shared/breakhis/folds.csv breakhis_lit/resources/official_files.csv.gz

The output is byte-reproducible (sorted rows, LF line endings, gzip without timestamp or file name).
Columns: ``path,fold1,fold2,fold3,fold4,fold5`` with ``train``/``test`` values; one row per image (7,909).
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

from breakhis_lit.errors import BreakHisError

NUM_OFFICIAL_FOLDS = 5
OFFICIAL_FILES_RESOURCE = "official_files.csv.gz"


def official_files_csv(folds_csv: Path) -> bytes:
    """Convert the official ``Folds.csv`` (``fold,mag,grp,filename``) into the shipped CSV text.

    Args:
        folds_csv: Path of the official folds file.

    Returns:
        The uncompressed CSV bytes (``path,fold1..fold5``), sorted by path.

    Raises:
        BreakHisError: If the file is missing or does not list every image once per fold.
    """
    if not folds_csv.is_file():
        raise BreakHisError(f"{folds_csv}: folds file not found; pass the official Folds.csv")
    membership: dict[str, dict[int, str]] = defaultdict(dict)
    with folds_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            fold, path, grp = int(row["fold"]), row["filename"], row["grp"]
            if grp not in ("train", "test") or fold in membership[path]:
                raise BreakHisError(f"{folds_csv}: bad or duplicate row {row}; use the unmodified Folds.csv")
            membership[path][fold] = grp
    folds = range(1, NUM_OFFICIAL_FOLDS + 1)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", *(f"fold{k}" for k in folds)])
    for path in sorted(membership):
        if sorted(membership[path]) != list(folds):
            raise BreakHisError(f"{folds_csv}: {path} is not in every fold; use the unmodified Folds.csv")
        writer.writerow([path, *(membership[path][k] for k in folds)])
    return out.getvalue().encode()


def build_official_files(folds_csv: Path, out: Path) -> Path:
    """Write the compressed official list (reproducibly: gzip level 9, mtime 0, no file name).

    Args:
        folds_csv: Path of the official folds file.
        out: Destination ``.csv.gz`` path.

    Returns:
        ``out``.
    """
    data = official_files_csv(folds_csv)
    with out.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return out


@lru_cache(maxsize=1)
def load_official_files() -> dict[str, tuple[str, ...]]:
    """Load the shipped official list.

    Returns:
        Official path -> (fold1 .. fold5 membership, each ``"train"`` or ``"test"``).
    """
    blob = (Path(__file__).resolve().parents[1] / "resources" / OFFICIAL_FILES_RESOURCE).read_bytes()
    reader = csv.reader(io.StringIO(gzip.decompress(blob).decode()))
    next(reader)
    return {row[0]: tuple(row[1:]) for row in reader}


def main(argv: list[str] | None = None) -> int:
    """Regenerate the shipped list: ``python -m breakhis_lit.data.official FOLDS_CSV OUT``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m breakhis_lit.data.official FOLDS_CSV OUT.csv.gz", file=sys.stderr)
        return 2
    build_official_files(Path(args[0]), Path(args[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
