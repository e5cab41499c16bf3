"""Scan a BreakHis root into an index of parsed images, checked against the official image list."""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from breakhis_lit.data.image_folder import is_image_name, skipped_links_message, walk_files
from breakhis_lit.data.naming import (
    LABELS,
    MAGNIFICATIONS,
    OFFICIAL_PREFIX,
    SUBTYPE_CODES,
    SUBTYPE_LABELS,
    SUBTYPE_NAMES,
    BreakHisImage,
    parse_magnification,
    parse_path,
)
from breakhis_lit.data.official import load_official_files
from breakhis_lit.errors import BreakHisError

log = logging.getLogger(__name__)

# Where the ``breast`` folder may sit below the root the user gives, most specific first:
# the Kaggle download (extra BreaKHis_v1 level), the original archive, and roots pointing inside.
_LAYOUTS = (
    ("BreaKHis_v1", "BreaKHis_v1", "histology_slides", "breast"),
    ("BreaKHis_v1", "histology_slides", "breast"),
    ("histology_slides", "breast"),
    ("breast",),
    (),
)


def find_breast_dir(root: str | os.PathLike) -> Path:
    """Find the folder that corresponds to ``BreaKHis_v1/histology_slides/breast`` below a root.

    Accepts the folder holding ``BreaKHis_v1`` (original or Kaggle layout), ``BreaKHis_v1`` itself, the
    Kaggle outer ``BreaKHis_v1``, ``histology_slides`` and ``breast``.

    Args:
        root: The root given by the user.

    Returns:
        The ``breast`` folder (holding ``benign`` and/or ``malignant``).

    Raises:
        BreakHisError: If the root does not exist, has no BreakHis layout, or has several (e.g. both the original
            and the Kaggle one): which one to use is the user's choice, never a silent pick.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise BreakHisError(
            f"{root}: dataset root does not exist; download BreakHis and pass the folder holding BreaKHis_v1 "
            f"(--data.root), or generate synthetic data with `breakhis demo-data DIR`"
        )
    if not root.is_dir():
        raise BreakHisError(f"{root}: dataset root is not a folder; pass the folder holding BreaKHis_v1")
    found: list[Path] = []
    for parts in _LAYOUTS:
        cand = root.joinpath(*parts)
        layout = cand.is_dir() and any((cand / label).is_dir() for label in LABELS)
        if layout and all(cand.resolve() != other.resolve() for other in found):
            found.append(cand)
    if len(found) > 1:
        raise BreakHisError(
            f"{root}: {len(found)} BreakHis layouts found ({' and '.join(str(c) for c in found)}), e.g. the original "
            f"and the Kaggle one (an extra BreaKHis_v1 level); point --data.root at one of them: "
            f"{' or '.join(str(c.parent) for c in found)}"
        )
    if found:
        return found[0]
    raise BreakHisError(
        f"{root}: no BreakHis layout found (looked for [BreaKHis_v1/[BreaKHis_v1/]]histology_slides/breast/"
        f"{{benign,malignant}}); pass the folder holding BreaKHis_v1, or one of its subfolders down to breast"
    )


@dataclass
class DatasetIndex:
    """Every BreakHis image found below a root, plus how the set differs from the official list.

    Attributes:
        root: The root as given.
        breast_dir: The folder matching the official prefix ``BreaKHis_v1/histology_slides/breast/``.
        images: Parsed images sorted by path (paths in the official form whatever the root).
        missing: Official paths not found, sorted.
        unexpected: Paths found that are not in the official list, sorted.
        ignored: Non-image files found below ``breast_dir`` (relative posix paths), not indexed.
        skipped_links: Linked folders below ``breast_dir`` not entered because the folder they lead to was
            already scanned (relative posix paths).
    """

    root: Path
    breast_dir: Path
    images: list[BreakHisImage]
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    skipped_links: list[str] = field(default_factory=list)

    def abspath(self, image: BreakHisImage | str) -> Path:
        """Return the file path of an image (or of an official-form path) on disk."""
        path = image.path if isinstance(image, BreakHisImage) else image
        return self.breast_dir / path[len(OFFICIAL_PREFIX) :]

    def select(self, magnification: int | str | None = None) -> list[BreakHisImage]:
        """Return the images at one magnification (40, 100, 200, 400, ``"40X"``...) or all (``None``/``"all"``)."""
        mag = parse_magnification(magnification)
        return [im for im in self.images if mag is None or im.magnification == mag]

    def summary(self, max_listed: int | None = 100) -> dict:
        """Count images, classes, subtypes and patients, and list missing/unexpected files.

        Args:
            max_listed: Longest list of missing/unexpected/ignored files and skipped links to include
                (``None``: all).

        Returns:
            A JSON-serialisable dict.
        """

        def listed(items: list[str]) -> list[str]:
            return items if max_listed is None else items[:max_listed]

        labels = Counter(im.label for im in self.images)
        per_mag = {
            f"{m}X": {lab: sum(1 for im in self.images if im.magnification == m and im.label == lab) for lab in LABELS}
            for m in MAGNIFICATIONS
        }
        for counts in per_mag.values():
            counts["total"] = sum(counts[label] for label in LABELS)
        subtypes = {}
        for code in SUBTYPE_CODES:
            ims = [im for im in self.images if im.subtype_code == code]
            subtypes[code] = {
                "name": SUBTYPE_NAMES[code],
                "label": SUBTYPE_LABELS[code],
                "images": len(ims),
                "patients": len({im.patient_folder for im in ims}),
                "per_magnification": {f"{m}X": sum(1 for im in ims if im.magnification == m) for m in MAGNIFICATIONS},
            }
        out = {
            "root": str(self.root),
            "breast_dir": str(self.breast_dir),
            "images": len(self.images),
            **{label: labels[label] for label in LABELS},
            "per_magnification": per_mag,
            "subtypes": subtypes,
            "patient_folders": len({im.patient_folder for im in self.images}),
            "patient_ids": len({im.patient_id for im in self.images}),
            "accession_groups": len({im.accession for im in self.images}),
            "official_files": len(load_official_files()),
            "missing": len(self.missing),
            "unexpected": len(self.unexpected),
            "ignored": len(self.ignored),
            "missing_files": listed(self.missing),
            "unexpected_files": listed(self.unexpected),
            "ignored_files": listed(self.ignored),
            "skipped_links": len(self.skipped_links),
            "skipped_link_folders": listed(self.skipped_links),
        }
        longest = max(len(self.missing), len(self.unexpected), len(self.ignored), len(self.skipped_links))
        if max_listed is not None and longest > max_listed:
            out["files_truncated_to"] = max_listed
        return out


def scan(root: str | os.PathLike) -> DatasetIndex:
    """Index a BreakHis root without decoding any image.

    Args:
        root: Folder holding ``BreaKHis_v1`` (original or Kaggle layout) or a folder inside it, down to
            ``breast``.

    Returns:
        The :class:`DatasetIndex`.

    Raises:
        BreakHisError: If the root is missing, has no BreakHis images, holds a folder that cannot be read, or
            holds image files whose names or folders do not follow the BreakHis scheme (all such files are named).
    """
    breast = find_breast_dir(root)
    images: list[BreakHisImage] = []
    bad: list[str] = []
    ignored: list[str] = []
    walked = walk_files(breast)
    if walked.skipped_links:
        log.warning(skipped_links_message(breast, walked.skipped_links))
    for rel in walked.files:
        name = rel.rsplit("/", 1)[-1]
        if not is_image_name(name):
            ignored.append(rel)
            continue
        try:
            images.append(parse_path(OFFICIAL_PREFIX + rel))
        except BreakHisError as err:
            bad.append(str(err)[len(OFFICIAL_PREFIX) :].rsplit("; ", 1)[0])
    if bad:
        more = f" | ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise BreakHisError(
            f"{len(bad)} image file(s) below {breast} do not follow the BreakHis naming: "
            f"{' | '.join(bad[:20])}{more}; rename, move or remove them"
        )
    if not images:
        raise BreakHisError(
            f"{root}: no BreakHis images found below {breast}; check --data.root points at the BreakHis download"
        )
    if ignored:
        log.warning("%d non-image file(s) below %s ignored (e.g. %s)", len(ignored), breast, ignored[0])
    images.sort(key=lambda im: im.path)
    official = load_official_files()
    found = {im.path for im in images}
    return DatasetIndex(
        root=Path(root),
        breast_dir=breast,
        images=images,
        missing=sorted(set(official) - found),
        unexpected=sorted(found - set(official)),
        ignored=ignored,
        skipped_links=walked.skipped_links,
    )
