"""``BreakHis``: the dataset as an experiment sees it: classes, the checked split, records and groups per stage.

The domain facts live here and in the modules this one composes (:mod:`~breakhis_lit.data.naming`: labels, subtype
codes, patient ids and accessions; :mod:`~breakhis_lit.data.index`: the folder layout and the official list;
:mod:`~breakhis_lit.data.splits`: the strategies, ``splits.csv`` and the leak checks). Nothing here imports torch:
:class:`~breakhis_lit.data.datamodule.BreakHisDataModule` decodes, caches and loads what this object selects.

Label choice for the subtype task: patient ``14-13412`` is filed under both ductal (DC) and lobular (LC) carcinoma
with (nearly) the same images. Both folders are kept, each image labelled with its folder's subtype. With
``group_by`` ``accession`` (default) or ``patient_id`` the two folders always share a split; with
``group_by=folder`` they can straddle one, and a split that puts byte-identical copies on two sides is refused
(:meth:`BreakHis.check_decoded`, from the content digests the image cache takes while decoding).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from breakhis_lit.data.index import DatasetIndex, scan
from breakhis_lit.data.naming import LABELS, SUBTYPE_CODES, parse_magnification, patient_folder, try_parse_filename
from breakhis_lit.data.splits import (
    SKIPPED,
    SPLIT_NAMES,
    SplitRow,
    check_duplicates,
    check_split,
    check_split_options,
    data_fingerprint,
    make_split,
    mark_skipped,
    read_split_csv,
    split_hash,
    with_sizes,
)
from breakhis_lit.errors import BreakHisError

log = logging.getLogger(__name__)

TASKS = ("binary", "subtype")


@dataclass(frozen=True)
class SampleRecord:
    """What is known about one sample of a stage; batch field ``index`` indexes a list of these.

    Attributes:
        path: Official-form relative path (train/val/test) or absolute file path (predict).
        label: Class index, ``-1`` when unknown.
        patient_id: Patient id, ``""`` when unknown.
        group: Grouping key (accession, patient id or folder), ``""`` when unknown.
        magnification: 40, 100, 200, 400, or ``None`` when unknown.
    """

    path: str
    label: int
    patient_id: str
    group: str
    magnification: int | None


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    """Refuse an option value outside ``choices``, naming the ``--data.<name>`` option."""
    if value not in choices:
        raise BreakHisError(f"{name} {value!r}: unknown value; use one of {', '.join(choices)} (--data.{name})")


def classes_of(task: str) -> list[str]:
    """The class names of a task, in class-index order: ``benign malignant`` or the 8 subtype codes."""
    check_choice("task", task, TASKS)
    return list(LABELS) if task == "binary" else list(SUBTYPE_CODES)


def example_indices(records: Sequence[SampleRecord], num_classes: int, per_class: int = 1) -> list[int]:
    """Deterministic examples of each class, e.g. for Grad-CAM grids (indexes of ``records``, class by class).

    Each class's ``per_class`` examples (fewer when it has fewer) are evenly spaced in path order.
    """
    picks: list[int] = []
    for c in range(num_classes):
        idx = sorted((i for i, r in enumerate(records) if r.label == c), key=lambda i: records[i].path)
        if idx and per_class > 0:
            take = np.unique(np.linspace(0, len(idx) - 1, min(per_class, len(idx))).round().astype(int))
            picks.extend(idx[t] for t in take)
    return picks


class BreakHis:
    """A BreakHis root at one magnification, for one task, split one way.

    Args:
        root: The folder holding ``BreaKHis_v1`` (original or Kaggle layout) or a folder inside it.
        magnification: 40, 100, 200, 400 (``"40X"`` too) or ``"all"``.
        task: ``binary`` or ``subtype``.
        split: ``patient``, ``official``, ``kfold`` or ``image`` (see :mod:`breakhis_lit.data.splits`).
        group_by: ``accession``, ``patient_id`` or ``folder``.
        ratios: Train/val/test fractions of the images.
        fold: Official fold (1-5) or k-fold index used as test.
        num_folds: Number of folds of ``kfold``.
        seed: Seed of the split (and of generated demo data).
        split_file: Read the split from this ``splits.csv`` and refuse a root whose files differ from it.
        trained_on: The ``splits.csv`` of a fitted run: refuse test images of patients it trained or validated on.
        demo: Generate synthetic demo data at ``root`` when it is absent (:meth:`prepare`).

    Raises:
        BreakHisError: For an option out of range, naming the ``--data.*`` option.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        magnification: int | str | None = 40,
        task: str = "binary",
        split: str = "patient",
        group_by: str = "accession",
        ratios: Sequence[float] = (0.6, 0.1, 0.3),
        fold: int = 1,
        num_folds: int = 5,
        seed: int = 0,
        *,
        split_file: str | os.PathLike | None = None,
        trained_on: str | os.PathLike | None = None,
        demo: bool = False,
    ) -> None:
        self.magnification = parse_magnification(magnification)
        """40, 100, 200, 400, or ``None`` for all magnifications."""
        self.classes = classes_of(task)
        self.ratios = check_split_options(split, group_by, ratios, fold, num_folds)
        self.root, self.task, self.split, self.group_by = root, task, split, group_by
        self.fold, self.num_folds, self.seed = fold, num_folds, seed
        self.split_file, self.trained_on, self.demo = split_file, trained_on, demo
        self._magnification_option = magnification
        self.index: DatasetIndex | None = None
        """The scanned root, after :meth:`resolve`."""
        self.rows: list[SplitRow] = []
        """The split table (``splits.csv``): every image, with its side and file size, after :meth:`resolve`."""

    @property
    def num_classes(self) -> int:
        """Number of classes of the task."""
        return len(self.classes)

    def label_index(self, label: str, subtype_code: str) -> int:
        """The class index of an image with this label and subtype code."""
        return LABELS.index(label) if self.task == "binary" else SUBTYPE_CODES.index(subtype_code)

    def prepare(self) -> None:
        """Generate the demo data at ``root`` (once, atomically) when ``demo`` is set and ``root`` is absent."""
        if self.demo:
            from breakhis_lit.data.demo import ensure_demo

            ensure_demo(Path(self.root).expanduser(), seed=self.seed)

    def resolve(self) -> list[SplitRow]:
        """Scan the root and fix the split, with every check, before any image is decoded; idempotent.

        The split is computed from the options, or read back from ``split_file`` (its files checked against the
        root); with ``trained_on``, test patients the fitted run trained on are refused.

        Returns:
            The split's rows (every image, with its side and file size).
        """
        if self.index is not None:
            return self.rows
        self.prepare()
        index = scan(self.root)
        if self.split_file is not None:
            rows = self._bound_rows(index)
        else:
            rows = make_split(
                index.images,
                self.split,
                magnification=self.magnification,
                group_by=self.group_by,
                ratios=self.ratios,
                fold=self.fold,
                num_folds=self.num_folds,
                seed=self.seed,
            )
            rows = with_sizes(rows, index.abspath)
        if self.trained_on is not None:
            _check_unseen(rows, self.trained_on)
        self.index, self.rows = index, rows
        return rows

    def files(self) -> list[tuple[str, Path]]:
        """``(official path, file)`` of every image of the split not skipped, for the image cache to decode."""
        index = self._resolved()
        return [(r.path, index.abspath(r.path)) for r in self.rows if r.split != SKIPPED]

    def check_decoded(self, bad: Sequence[tuple[str, str]], digests: Mapping[str, str]) -> None:
        """Take the decoder's findings: unreadable images become ``skipped`` rows, copies are checked.

        Args:
            bad: ``(path, reason)`` of every unreadable image.
            digests: Path -> content digest of every decoded image.

        Raises:
            BreakHisError: When a split read from ``split_file`` scores an unreadable image, when skipping leaves a
                split without a class, or when byte-identical copies leak (see
                :func:`~breakhis_lit.data.splits.check_duplicates`).
        """
        self._resolved()
        rows = self.rows
        if bad and self.split_file is not None:
            path, reason = bad[0]
            raise BreakHisError(
                f"{path}: unreadable now ({reason}) but scored by the run's split {self.split_file}; restore the "
                "file, or start a new run"
            )
        if bad:
            rows = mark_skipped(rows, [p for p, _ in bad])
            check_split(rows, self.split, self.group_by)
        check_duplicates(rows, digests, self.split, self.group_by)
        self.rows = rows
        for stage in SPLIT_NAMES if self.task == "subtype" else ():
            present = {self.label_index(r.label, r.subtype) for r in rows if r.split == stage}
            absent = [c for i, c in enumerate(self.classes) if i not in present]
            if absent:
                log.warning("subtype task: the %s split has no image of %s", stage, ", ".join(absent))
        counts = Counter(r.split for r in rows)
        log.info(
            "BreakHis %s split (group_by=%s, magnification=%s): %s",
            self.split,
            self.group_by,
            self._magnification_option,
            ", ".join(f"{k} {counts[k]}" for k in (*SPLIT_NAMES, SKIPPED) if counts[k]),
        )

    @property
    def groups(self) -> list[str]:
        """The groups (``group_by`` keys) of the split's images, sorted: batch field ``group`` indexes these."""
        return sorted({r.group for r in self.rows})

    def records(self, stage: str) -> list[SampleRecord]:
        """The records of the ``train``, ``val`` or ``test`` images (path order), after :meth:`resolve`."""
        check_choice("stage", stage, SPLIT_NAMES)
        self._resolved()
        return [
            SampleRecord(r.path, self.label_index(r.label, r.subtype), r.patient_id, r.group, r.magnification)
            for r in self.rows
            if r.split == stage
        ]

    def file_record(self, path: str | os.PathLike) -> SampleRecord:
        """The record of an image file anywhere (``--data.predict_root``): what its BreakHis name tells, if any."""
        info = try_parse_filename(Path(path).name)
        if info is None:
            return SampleRecord(str(path), -1, "", "", None)
        pid, code = str(info["patient_id"]), str(info["subtype_code"])
        groups = {"accession": str(info["accession"]), "patient_id": pid, "folder": patient_folder(code, pid)}
        label = self.label_index(str(info["label"]), code)
        return SampleRecord(str(path), label, pid, groups[self.group_by], int(info["magnification"]))

    def split_hash(self) -> str:
        """Hash of the split (see :func:`breakhis_lit.data.splits.split_hash`), after :meth:`resolve`."""
        if not self.rows:
            raise BreakHisError("split_hash(): the split is not set up; call setup() first")
        return split_hash(self.rows)

    def fingerprint(self) -> str:
        """Hash of the split's files: relative path and size of each (see :func:`~.splits.data_fingerprint`)."""
        self._resolved()
        return data_fingerprint(self.rows)

    def _resolved(self) -> DatasetIndex:
        if self.index is None:
            raise BreakHisError("the BreakHis split is not resolved; call resolve() (or setup()) first")
        return self.index

    def _bound_rows(self, index: DatasetIndex) -> list[SplitRow]:
        """The rows of ``split_file``, checked against the files under ``root``."""
        rows = read_split_csv(self.split_file)
        known = {image.path for image in index.images}
        missing = [r.path for r in rows if r.path not in known]
        changed = [
            r.path
            for r in rows
            if r.path in known and r.split != SKIPPED and r.size >= 0 and _size(index.abspath(r.path)) != r.size
        ]
        if missing or changed:
            example = (missing or changed)[0]
            raise BreakHisError(
                f"--data.root {self.root}: {len(missing)} file(s) of the run's split are missing and {len(changed)} "
                f"differ in size (e.g. {example}); point --data.root at the data the run was fitted on "
                f"({self.split_file})"
            )
        mags = {r.magnification for r in rows}
        if self.magnification is not None and mags != {self.magnification}:
            raise BreakHisError(
                f"--data.magnification {self._magnification_option}: the run's split {self.split_file} holds "
                f"{'/'.join(map(str, sorted(mags)))}X images; pass the run's magnification"
            )
        return rows


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def _check_unseen(rows: Sequence[SplitRow], trained_on: str | os.PathLike) -> None:
    """Refuse test rows of patients the fitted run trained or validated on (beyond those it tested on itself)."""
    fitted = read_split_csv(trained_on)
    tested = {r.patient_id for r in fitted if r.split == "test"} | {r.group for r in fitted if r.split == "test"}
    seen = {r.patient_id for r in fitted if r.split in ("train", "val")} | {
        r.group for r in fitted if r.split in ("train", "val")
    }
    seen -= tested
    test = [r for r in rows if r.split == "test"]
    leaked = [r for r in test if r.patient_id in seen or r.group in seen]
    if leaked:
        raise BreakHisError(
            f"{len(leaked)} of {len(test)} test images belong to patients the run trained or validated on (e.g. "
            f"{leaked[0].path}, per {trained_on}); a cross-evaluation scores unseen patients only: keep the run's "
            "--data.split, --data.seed, --data.group_by, ratios and folds"
        )
