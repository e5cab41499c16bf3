"""Folders of image files: the one folder walk and the one list of image suffixes.

Used by the BreakHis scan (:func:`breakhis_lit.data.index.scan`) and ``--data.predict_root`` (predict, gradcam).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from breakhis_lit.errors import BreakHisError

#: Extensions (lower case) of the files taken as images everywhere: the BreakHis scan and ``--data.predict_root``
#: folders. All are formats Pillow decodes; BreakHis itself only has PNGs.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")


def is_image_name(name: str) -> bool:
    """Whether a file name is taken as an image: one of :data:`IMAGE_EXTENSIONS` (any case), not hidden."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def skipped_files_message(folder: str | os.PathLike, skipped: list[str]) -> str:
    """One line saying how many files below a folder were not taken as images, with an example."""
    return (
        f"{len(skipped)} file(s) below {folder} skipped: not an image of a supported type "
        f"({' '.join(IMAGE_EXTENSIONS)}) or hidden, e.g. {skipped[0]}"
    )


def skipped_links_message(folder: str | os.PathLike, links: list[str]) -> str:
    """One line saying how many linked folders below a folder were not entered again, with an example."""
    return (
        f"{len(links)} linked folder(s) below {folder} lead to folders already listed and were not entered again "
        f"(e.g. {links[0]})"
    )


@dataclass
class WalkResult:
    """Output of :func:`walk_files`.

    Attributes:
        files: Every file below the top folder, as posix paths relative to it.
        skipped_links: Linked folders (relative paths) not entered because the folder they lead to was already
            walked (``a -> .``, or two links to one folder): each folder's files are listed once.
    """

    files: list[str]
    skipped_links: list[str] = field(default_factory=list)


def walk_files(top: Path) -> WalkResult:
    """List every file below ``top``, following symlinks but entering each folder only once.

    The walk is sorted and top-down: a folder's files (sorted) come before its subfolders' (sorted). A folder
    reached a second time (by device and inode, e.g. through a link ``a -> .``) is not entered again, so link
    loops end; real folders are claimed before links to them.

    Raises:
        BreakHisError: If a folder below ``top`` (or ``top`` itself) cannot be read, naming it: a scan that
            skipped it would silently lose its images.
    """

    def fail(err: OSError) -> NoReturn:
        folder = err.filename if err.filename is not None else top
        raise BreakHisError(
            f"{folder}: cannot read this folder ({err.strerror or err}); fix its permissions (e.g. chmod u+rx) "
            f"or move it out of {top}"
        )

    found: list[str] = []
    skipped: list[str] = []
    top_s = str(top)
    n = len(top_s) + 1
    try:
        st = os.stat(top_s)
    except OSError as err:
        fail(err)
    visited = {(st.st_dev, st.st_ino)}
    for dirpath, dirnames, filenames in os.walk(top_s, onerror=fail, followlinks=True):
        rel_dir = dirpath[n:].replace(os.sep, "/")
        prefix = f"{rel_dir}/" if rel_dir else ""
        found.extend(prefix + name for name in sorted(filenames))
        entered = []
        for name in sorted(dirnames, key=lambda d: (os.path.islink(os.path.join(dirpath, d)), d)):
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError as err:
                fail(err)
            if (st.st_dev, st.st_ino) in visited:
                skipped.append(prefix + name)
                continue
            visited.add((st.st_dev, st.st_ino))
            entered.append(name)
        dirnames[:] = sorted(entered)
    return WalkResult(found, sorted(skipped))


@dataclass(frozen=True)
class ImageFolder:
    """The files below a folder, as posix paths relative to it, in walk order (see :func:`walk_files`).

    Attributes:
        root: The folder.
        images: Files with an extension of :data:`IMAGE_EXTENSIONS` (not hidden).
        others: Every other file.
        skipped_links: Linked folders not entered again.
    """

    root: Path
    images: list[str]
    others: list[str]
    skipped_links: list[str]

    @classmethod
    def read(cls, root: str | os.PathLike) -> ImageFolder:
        """Walk ``root`` recursively.

        Raises:
            BreakHisError: If a folder cannot be read (see :func:`walk_files`).
        """
        root = Path(root)
        walked = walk_files(root)
        images: list[str] = []
        others: list[str] = []
        for rel in walked.files:
            (images if is_image_name(rel.rsplit("/", 1)[-1]) else others).append(rel)
        return cls(root, images, others, walked.skipped_links)

    def paths(self) -> list[Path]:
        """The image files, below :attr:`root`, in walk order."""
        return [self.root / rel for rel in self.images]

    def warnings(self) -> list[str]:
        """One line for the files not taken as images and one for the links not entered again (when any)."""
        lines = [skipped_files_message(self.root, self.others)] if self.others else []
        if self.skipped_links:
            lines.append(skipped_links_message(self.root, self.skipped_links))
        return lines


def no_images_message(where: str | os.PathLike, hint: str) -> str:
    """The error when a folder holds no image file."""
    return f"{where}: no images found ({' '.join(IMAGE_EXTENSIONS)}); {hint}"
