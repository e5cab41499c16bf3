"""Deterministic, grouped train/val/test splits of a BreakHis index, and their leak check.

Strategies (all deterministic given ``seed``):

* ``patient`` (default): groups (``group_by``: ``accession`` 70, ``patient_id`` 81 or ``folder`` 82) are
  assigned to train/val/test so that each split gets close to its ratio of the images, separately for the
  benign and the malignant groups (stratified: every split holds both classes). Groups are assigned on the
  whole dataset and then filtered by magnification, so a patient is in the same split at every magnification.
* ``official``: train/test of the official fold ``fold`` (1-5, from the shipped official list); validation is
  carved from train by group. The official folds group by patient *folder*: the leak check runs at that level
  and groups of ``group_by`` that straddle train and test (e.g. ``14-13412`` in folds 1, 3, 5) are logged.
* ``kfold``: ``num_folds`` group-stratified folds; fold ``fold`` is test, validation is carved from the rest.
* ``image``: the paper's random image-level split (stratified by label and magnification). Patients leak;
  only on explicit request, with a logged warning, and the leak check is skipped.

Patient ``14-13412`` is filed under both ductal (DC) and lobular (LC) carcinoma with (nearly) the same
images. Both folders are kept with their folder's subtype label; grouped by ``accession`` or ``patient_id``
they always land in the same split, so the duplicated images never straddle a split.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from breakhis_lit.data.naming import LABELS, BreakHisImage, accession_of, parse_magnification
from breakhis_lit.data.official import NUM_OFFICIAL_FOLDS, load_official_files
from breakhis_lit.errors import BreakHisError
from breakhis_lit.files import atomic_write_text

log = logging.getLogger(__name__)

STRATEGIES = ("patient", "official", "kfold", "image")
GROUP_BY = ("accession", "patient_id", "folder")
SPLIT_NAMES = ("train", "val", "test")
SKIPPED = "skipped"
SPLIT_COLUMNS = ("path", "group", "patient_id", "label", "subtype", "magnification", "split", "size")
IMAGE_SPLIT_WARNING = (
    "split=image: random image-level split (as in the paper): images of one patient land in train, val and "
    "test, so patients leak and scores are optimistic; use split=patient for patient-aware results"
)
_TRIES = 64


@dataclass(frozen=True)
class SplitRow:
    """One line of ``splits.csv``.

    Attributes:
        path: Official-form relative path.
        group: Grouping key (accession, patient id or folder, per ``group_by``).
        patient_id: Patient id.
        label: ``"benign"`` or ``"malignant"``.
        subtype: Subtype code (``A F PT TA DC LC MC PC``).
        magnification: 40, 100, 200 or 400.
        split: ``train``, ``val``, ``test`` or ``skipped`` (unreadable image skipped).
        size: The file's size in bytes (``-1`` until :func:`with_sizes` looked it up).
    """

    path: str
    group: str
    patient_id: str
    label: str
    subtype: str
    magnification: int
    split: str
    size: int = -1


def group_key(image: BreakHisImage, group_by: str) -> str:
    """Return the grouping key of an image (``accession``, ``patient_id`` or ``folder``)."""
    if group_by == "accession":
        return image.accession
    if group_by == "patient_id":
        return image.patient_id
    if group_by == "folder":
        return image.patient_folder
    raise BreakHisError(f"group_by {group_by!r}: unknown grouping; use one of {', '.join(GROUP_BY)}")


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Validate train/val/test ratios (non-negative, sum to 1)."""
    if len(ratios) != 3 or any(not math.isfinite(r) or r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise BreakHisError(
            f"train_ratio/val_ratio/test_ratio {'/'.join(str(r) for r in ratios)}: must be non-negative and sum "
            f"to 1; pass e.g. --data.train_ratio 0.6 --data.val_ratio 0.1 --data.test_ratio 0.3"
        )
    return float(ratios[0]), float(ratios[1]), float(ratios[2])


def check_split_options(
    strategy: str, group_by: str, ratios: Sequence[float], fold: int, num_folds: int
) -> tuple[float, float, float]:
    """Refuse split options out of range, naming the ``--data.*`` option; the ratios, checked."""
    if strategy not in STRATEGIES:
        raise BreakHisError(f"split {strategy!r}: unknown split; use one of {', '.join(STRATEGIES)} (--data.split)")
    if group_by not in GROUP_BY:
        raise BreakHisError(
            f"group_by {group_by!r}: unknown grouping; use one of {', '.join(GROUP_BY)} (--data.group_by)"
        )
    if strategy == "official" and not 1 <= fold <= NUM_OFFICIAL_FOLDS:
        raise BreakHisError(f"fold {fold}: the official split has folds 1-{NUM_OFFICIAL_FOLDS}; pass --data.fold 1..5")
    if strategy == "kfold" and (num_folds < 2 or not 1 <= fold <= num_folds):
        raise BreakHisError(
            f"fold {fold} / num_folds {num_folds}: k-fold needs num_folds >= 2 and fold in 1..num_folds; "
            "pass e.g. --data.num_folds 5 --data.fold 1"
        )
    return check_ratios(ratios)


def _assign_bins(
    sizes: dict[str, int], labels: dict[str, str], fractions: Sequence[float], rng: np.random.Generator
) -> dict[str, int]:
    """Assign groups to bins so each bin gets close to its fraction of each label's images.

    For each label, groups are taken in ``_TRIES`` random orders; each group goes to the non-empty-fraction bin
    that has no group of this label yet (if any), else to the bin furthest below its target. The order with the
    smallest squared deviation from the targets wins.

    Args:
        sizes: Group -> number of images.
        labels: Group -> label used for stratification.
        fractions: Target fraction of each bin.
        rng: Random generator.

    Returns:
        Group -> bin index.
    """
    out: dict[str, int] = {}
    active = [b for b, f in enumerate(fractions) if f > 0]
    for label in sorted(set(labels.values())):
        groups = sorted(g for g in sizes if labels[g] == label)
        total = sum(sizes[g] for g in groups)
        targets = np.array([f * total for f in fractions])
        best: tuple[float, dict[str, int]] | None = None
        for _ in range(_TRIES):
            filled = np.zeros(len(fractions))
            count = np.zeros(len(fractions), dtype=int)
            assign = {}
            for i in rng.permutation(len(groups)):
                g = groups[i]
                empty = [b for b in active if count[b] == 0]
                cands = empty or active
                b = max(cands, key=lambda b: (targets[b] - filled[b], -b))
                assign[g] = b
                filled[b] += sizes[g]
                count[b] += 1
            score = float(((filled - targets) ** 2).sum())
            if best is None or score < best[0]:
                best = (score, assign)
        assert best is not None
        out.update(best[1])
    return out


def _group_stats(images: Iterable[BreakHisImage], group_by: str) -> tuple[dict[str, int], dict[str, str]]:
    sizes: dict[str, int] = defaultdict(int)
    votes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for im in images:
        g = group_key(im, group_by)
        sizes[g] += 1
        votes[g][im.label] += 1
    labels = {g: max(sorted(v), key=lambda lab: v[lab]) for g, v in votes.items()}
    return dict(sizes), labels


def _carve_val(
    images: Sequence[BreakHisImage], group_by: str, train_ratio: float, val_ratio: float, rng: np.random.Generator
) -> dict[str, str]:
    """Split the images of a training part into train and val by group."""
    sizes, labels = _group_stats(images, group_by)
    total = train_ratio + val_ratio
    bins = _assign_bins(sizes, labels, (train_ratio / total, val_ratio / total) if total else (1, 0), rng)
    return {im.path: ("train", "val")[bins[group_key(im, group_by)]] for im in images}


def assign_splits(
    images: Sequence[BreakHisImage],
    strategy: str = "patient",
    *,
    group_by: str = "accession",
    ratios: Sequence[float] = (0.6, 0.1, 0.3),
    fold: int = 1,
    num_folds: int = 5,
    seed: int = 0,
) -> dict[str, str]:
    """Assign every image of a dataset to ``train``, ``val`` or ``test``.

    Call it with the whole dataset (all magnifications) so that groups land in the same split at every
    magnification, then filter.

    Args:
        images: All images of the index.
        strategy: ``patient``, ``official``, ``kfold`` or ``image``.
        group_by: ``accession``, ``patient_id`` or ``folder``.
        ratios: Train/val/test fractions of the images (``official``/``kfold`` use train:val to carve val).
        fold: Official fold (1-5) or k-fold index (1..num_folds) used as test.
        num_folds: Number of folds for ``kfold``.
        seed: Random seed.

    Returns:
        Path -> split name.

    Raises:
        BreakHisError: For an unknown option, or ``official`` on files outside the official list.
    """
    train_r, val_r, test_r = check_split_options(strategy, group_by, ratios, fold, num_folds)
    if not images:
        raise BreakHisError("split: no images to split; check --data.root and --data.magnification")
    seed = int(seed)
    if strategy == "patient":
        sizes, labels = _group_stats(images, group_by)
        bins = _assign_bins(sizes, labels, (train_r, val_r, test_r), np.random.default_rng([seed, 0]))
        return {im.path: SPLIT_NAMES[bins[group_key(im, group_by)]] for im in images}
    if strategy == "image":
        rng = np.random.default_rng([seed, 3])
        strata: dict[tuple[str, int], list[str]] = defaultdict(list)
        for im in images:
            strata[(im.label, im.magnification)].append(im.path)
        out = {}
        for key in sorted(strata):
            paths = sorted(strata[key])
            order = rng.permutation(len(paths))
            n_train = round(train_r * len(paths))
            n_val = round(val_r * len(paths))
            for rank, i in enumerate(order):
                out[paths[i]] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
        return out
    if strategy == "official":
        official = load_official_files()
        outside = [im.path for im in images if im.path not in official]
        if outside:
            raise BreakHisError(
                f"split official: {len(outside)} of {len(images)} images are not in the official BreakHis list "
                f"(e.g. {outside[0]}); use --data.split patient for other data"
            )
        test = [im for im in images if official[im.path][fold - 1] == "test"]
        train = [im for im in images if official[im.path][fold - 1] == "train"]
        out = {im.path: "test" for im in test}
        out.update(_carve_val(train, group_by, train_r, val_r, np.random.default_rng([seed, 1, fold])))
        return out
    # kfold
    sizes, labels = _group_stats(images, group_by)
    bins = _assign_bins(sizes, labels, [1 / num_folds] * num_folds, np.random.default_rng([seed, 2]))
    test = [im for im in images if bins[group_key(im, group_by)] == fold - 1]
    train = [im for im in images if bins[group_key(im, group_by)] != fold - 1]
    out = {im.path: "test" for im in test}
    out.update(_carve_val(train, group_by, train_r, val_r, np.random.default_rng([seed, 2, fold])))
    return out


def kfold_groups(
    images: Sequence[BreakHisImage], *, group_by: str = "accession", num_folds: int = 5, seed: int = 0
) -> list[set[str]]:
    """Return the groups in each k-fold test fold (a partition of all groups), as ``kfold`` uses them."""
    folds: list[set[str]] = []
    for k in range(1, num_folds + 1):
        a = assign_splits(images, "kfold", group_by=group_by, fold=k, num_folds=num_folds, seed=seed)
        folds.append({group_key(im, group_by) for im in images if a[im.path] == "test"})
    return folds


def split_rows(
    images: Sequence[BreakHisImage],
    assignment: dict[str, str],
    group_by: str = "accession",
    magnification: int | str | None = None,
) -> list[SplitRow]:
    """Build the ``splits.csv`` rows of the images at one magnification (or all)."""
    mag = parse_magnification(magnification)
    return [
        SplitRow(
            path=im.path,
            group=group_key(im, group_by),
            patient_id=im.patient_id,
            label=im.label,
            subtype=im.subtype_code,
            magnification=im.magnification,
            split=assignment[im.path],
        )
        for im in images
        if mag is None or im.magnification == mag
    ]


def _folder_of(path: str) -> str:
    return path.split("/")[-3]


def check_split(rows: Sequence[SplitRow], strategy: str = "patient", group_by: str = "accession") -> None:
    """Refuse a split where a group is on two sides, or a split lacks a class.

    For ``image`` the group check is skipped (with the warning). For ``official`` the group check runs on patient
    folders (the official grouping) and groups of ``group_by`` that straddle splits are logged as a warning.

    Args:
        rows: The split rows (``skipped`` rows are ignored).
        strategy: Split strategy the rows come from.
        group_by: Grouping the rows were made with (used in messages).

    Raises:
        BreakHisError: If a group appears in two splits, the data holds no image of a class at all (or only
            skipped ones), or a split holds no image of a class.
    """
    live = [r for r in rows if r.split != SKIPPED]
    sides: dict[str, set[str]] = defaultdict(set)
    if strategy == "image":
        log.warning(IMAGE_SPLIT_WARNING)
    else:
        level = "folder" if strategy == "official" else group_by
        for r in live:
            sides[_folder_of(r.path) if strategy == "official" else r.group].add(r.split)
        leaks = sorted(g for g, s in sides.items() if len(s) > 1)
        if leaks:
            raise BreakHisError(
                f"split {strategy}: {len(leaks)} group(s) ({level}) on two sides, e.g. {leaks[0]} in "
                f"{'/'.join(sorted(sides[leaks[0]]))}; regenerate the split (do not edit splits.csv by hand)"
            )
        straddle: dict[str, set[str]] = defaultdict(set)
        for r in live:
            straddle[r.group].add(r.split)
        loose = sorted(g for g, s in straddle.items() if len(s) > 1)
        if loose:
            log.warning(
                "split %s: %d %s group(s) straddle splits (%s); the official folds group by patient folder, so "
                "slides of one patient leak; use split=patient for a leak-safe split",
                strategy,
                len(loose),
                group_by,
                ", ".join(loose),
            )
        accessions: dict[str, set[str]] = defaultdict(set)
        for r in live:
            accessions[accession_of(r.patient_id)].add(r.split)
        acc_loose = sorted(a for a, s in accessions.items() if len(s) > 1)
        if acc_loose and group_by != "accession" and strategy != "official":
            log.warning(
                "split %s (group_by=%s): accession number(s) %s span several splits (probably slides of one "
                "patient); use --data.group_by accession for a leak-safe split",
                strategy,
                group_by,
                ", ".join(acc_loose),
            )
    option = {
        "patient": "--data.{name}_ratio (or another --data.seed / --data.group_by)",
        "official": "--data.fold / --data.val_ratio",
        "kfold": "--data.num_folds / --data.val_ratio (or another --data.seed)",
        "image": "--data.{name}_ratio",
    }[strategy]
    mags = "/".join(map(str, sorted({r.magnification for r in rows})))
    for label in LABELS:
        n_label = sum(1 for r in rows if r.label == label)
        if not n_label:
            raise BreakHisError(
                f"split {strategy}: the data holds no {label} image at all ({len(rows)} images, magnification "
                f"{mags}); both classes are needed: point --data.root at the whole BreakHis tree (or choose another "
                f"--data.magnification)"
            )
        if not any(r.label == label for r in live):
            raise BreakHisError(
                f"split {strategy}: all {n_label} {label} image(s) (magnification {mags}) were skipped as unreadable; "
                f"fix or replace them (they are listed in the log and in splits.csv)"
            )
    for name in SPLIT_NAMES:
        present = {r.label for r in live if r.split == name}
        for label in LABELS:
            if label not in present:
                raise BreakHisError(
                    f"split {strategy}: the {name} split has no {label} image (magnification "
                    f"{mags}, {len(live)} images); change {option.format(name=name)}"
                )


def _pairs(sets: Sequence[Sequence[SplitRow]], describe: Callable[[SplitRow], str], limit: int = 3) -> str:
    shown = "; ".join(" = ".join(f"{r.path} ({describe(r)})" for r in rows) for rows in sets[:limit])
    return shown + (f"; and {len(sets) - limit} more" if len(sets) > limit else "")


def check_duplicates(
    rows: Sequence[SplitRow], digests: Mapping[str, str], strategy: str = "patient", group_by: str = "accession"
) -> None:
    """Refuse a split where byte-identical image files are filed under two patients or sit on two sides.

    Copies filed under different patients (accession numbers) are a data error whatever the strategy. Copies on
    two sides of a ``patient`` or ``kfold`` split (copies in different ``group_by`` groups, e.g. the DC and LC
    folders of patient ``14-13412`` with ``group_by=folder``) are a leak and refused too; the ``official`` folds
    and the ``image`` split place files without regard to their content, so there they are logged. Copies
    within one group always share a split (logged at info level).

    Args:
        rows: The split rows (``skipped`` rows are ignored).
        digests: Path -> content digest of its file (:func:`breakhis_lit.data.cache.content_digest`); paths
            without a digest are ignored.
        strategy: Split strategy the rows come from.
        group_by: Grouping the rows were made with.

    Raises:
        BreakHisError: Naming the copies, when copies are filed under two patients, or sit on two sides of a
            ``patient`` or ``kfold`` split.
    """
    by_digest: dict[str, list[SplitRow]] = defaultdict(list)
    for r in rows:
        if r.split != SKIPPED and r.path in digests:
            by_digest[digests[r.path]].append(r)
    copies = sorted(
        (sorted(c, key=lambda r: r.path) for c in by_digest.values() if len(c) > 1), key=lambda c: c[0].path
    )
    if not copies:
        return
    patients = [c for c in copies if len({accession_of(r.patient_id) for r in c}) > 1]
    if patients:
        raise BreakHisError(
            f"split {strategy}: {len(patients)} set(s) of byte-identical images filed under different patients: "
            f"{_pairs(patients, lambda r: r.patient_id)}; remove the misfiled copies (`breakhis data check` lists "
            f"every set)"
        )
    sides = [c for c in copies if len({r.split for r in c}) > 1]
    if sides and strategy in ("patient", "kfold"):
        raise BreakHisError(
            f"split {strategy}: {len(sides)} set(s) of byte-identical images on two sides (different {group_by} "
            f"groups): {_pairs(sides, lambda r: r.split)}; group copies together with --data.group_by accession "
            f"(or patient_id), or remove one copy"
        )
    if sides:
        log.warning(
            "split %s: %d set(s) of byte-identical images on two sides (%s); the %s split places files without "
            "regard to their content, so these copies leak",
            strategy,
            len(sides),
            _pairs(sides, lambda r: r.split),
            strategy,
        )
    same = len(copies) - len(sides)
    if same:
        log.info("split %s: %d set(s) of byte-identical images, each within one split", strategy, same)


def make_split(
    images: Sequence[BreakHisImage],
    strategy: str = "patient",
    *,
    magnification: int | str | None = None,
    group_by: str = "accession",
    **options: Any,
) -> list[SplitRow]:
    """Assign splits on the whole dataset, keep one magnification, and check the result.

    Args:
        images: All images of the index (every magnification).
        strategy: ``patient``, ``official``, ``kfold`` or ``image``.
        magnification: 40, 100, 200, 400 (``"40X"`` too) or ``"all"``/``None``.
        group_by: ``accession``, ``patient_id`` or ``folder``.
        **options: ``ratios``, ``fold``, ``num_folds`` and ``seed`` of :func:`assign_splits`.

    Returns:
        The checked rows, sorted by path.
    """
    assignment = assign_splits(images, strategy, group_by=group_by, **options)
    rows = split_rows(images, assignment, group_by, magnification)
    if not rows:
        raise BreakHisError(f"magnification {magnification}: no images at this magnification; check --data.root")
    check_split(rows, strategy, group_by)
    return rows


def mark_skipped(rows: Sequence[SplitRow], paths: Iterable[str]) -> list[SplitRow]:
    """Return the rows with the given paths' split set to ``skipped``."""
    skip = set(paths)
    return [replace(r, split=SKIPPED) if r.path in skip else r for r in rows]


def with_sizes(rows: Sequence[SplitRow], abspath: Callable[[str], Path]) -> list[SplitRow]:
    """Return the rows with each file's size (``abspath`` maps a row's path to the file)."""
    out = []
    for r in rows:
        try:
            size = os.stat(abspath(r.path)).st_size
        except OSError:
            size = -1  # unreadable: the decoder names it
        out.append(replace(r, size=size))
    return out


def _digest(lines: Iterable[str]) -> str:
    h = hashlib.sha256()
    for line in sorted(lines):
        h.update(line.encode("utf-8") + b"\n")
    return h.hexdigest()


def split_hash(rows: Sequence[SplitRow]) -> str:
    """Hash of which image is on which side, grouped how: equal for two runs scored on the same images."""
    return _digest(f"{r.path}\t{r.group}\t{r.split}" for r in rows)


def data_fingerprint(rows: Sequence[SplitRow]) -> str:
    """Hash of the files of a split: relative path and size of each."""
    return _digest(f"{r.path}\t{r.size}" for r in rows)


def write_split_csv(rows: Sequence[SplitRow], path: str | Path) -> Path:
    """Write ``splits.csv`` (columns :data:`SPLIT_COLUMNS`), atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SPLIT_COLUMNS)
    for r in rows:
        writer.writerow([r.path, r.group, r.patient_id, r.label, r.subtype, r.magnification, r.split, r.size])
    return atomic_write_text(path, buffer.getvalue())


def read_split_csv(path: str | Path) -> list[SplitRow]:
    """Read a ``splits.csv`` written by :func:`write_split_csv`.

    Raises:
        BreakHisError: When the file is missing or not such a table.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != SPLIT_COLUMNS:
                raise BreakHisError(
                    f"{path}: columns {reader.fieldnames} are not {list(SPLIT_COLUMNS)}; it is written by "
                    "`breakhis fit` and `breakhis data split`"
                )
            return [
                SplitRow(
                    path=r["path"],
                    group=r["group"],
                    patient_id=r["patient_id"],
                    label=r["label"],
                    subtype=r["subtype"],
                    magnification=int(r["magnification"]),
                    split=r["split"],
                    size=int(r["size"]),
                )
                for r in reader
            ]
    except FileNotFoundError:
        raise BreakHisError(f"{path}: no such split file; it is written by `breakhis fit`") from None
    except (UnicodeDecodeError, ValueError, TypeError) as err:
        raise BreakHisError(f"{path}: not a readable split table ({err}); do not edit splits.csv by hand") from None
