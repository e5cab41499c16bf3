"""The runs a report is made of: each fitted run's records and one of its evaluations, read through the contract."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from breakhis_lit.errors import BreakHisError
from breakhis_lit.rundir import (
    DEFAULT_EVAL,
    GRADCAM,
    EvalRecord,
    FitRecord,
    GradCAMEntry,
    PredictionRow,
    RunDir,
    RunRecord,
    find_runs,
    natural_key,
)
from breakhis_lit.stats.predictions import Predictions

# A run's model (our class name, or the timm model_name of a TimmClassifier) -> the paper's row name.
PAPER_MODEL_NAMES: dict[str, str] = {
    "DALAResNet50": "DALA-ResNet50 (proposed)",
    "resnet50": "ResNet50",
    "seresnet50": "SEResNet50",
    "densenet121": "DenseNet121",
    "vgg16": "VGG16",
    "VGG16Inception": "VGG16Inception",
    "vit_base_patch16_224": "ViT",
    "swin_base_patch4_window7_224": "Swin-Transformer",
    "vit_small_patch14_dinov2": "DINOv2-ViT-S/14",
    "vit_base_patch14_dinov2": "DINOv2-ViT-B/14",
}
_PAPER_NAMES_LOWER = {key.lower(): value for key, value in PAPER_MODEL_NAMES.items()}
# The paper's row order (Table 5); models without a paper row sort after these.
PAPER_MODEL_ORDER: tuple[str, ...] = (
    "DALA-ResNet50 (proposed)",
    "ResNet50",
    "SEResNet50",
    "DenseNet121",
    "VGG16",
    "VGG16Inception",
    "ViT",
    "Swin-Transformer",
    "DINOv2-ViT-S/14",
    "DINOv2-ViT-B/14",
)

GroupKey = tuple[str, str, str, str, str, str]
"""(task, model, magnification, split, group_by, evaluation): runs sharing it are repeats over seeds or folds."""


def paper_model_name(model: str) -> str | None:
    """Map a run's model name to the paper's row name.

    Args:
        model: our class name (``"DALAResNet50"``) or a timm model name, optionally with a hub
            prefix or a pretrained tag (``"timm/vit_small_patch14_dinov2.lvd142m"``).

    Returns:
        The paper's name (``"DALA-ResNet50 (proposed)"``), or None for models the paper lacks.
    """
    if model in PAPER_MODEL_NAMES:
        return PAPER_MODEL_NAMES[model]
    base = model.rsplit("/", 1)[-1].split(".", 1)[0]
    return PAPER_MODEL_NAMES.get(base) or _PAPER_NAMES_LOWER.get(base.lower())


def magnification_order(magnification: str) -> tuple[int, float, str]:
    """Sort key: numeric magnifications ascending, then the rest (``"all"``) alphabetically."""
    try:
        return (0, float(magnification), "")
    except ValueError:
        return (1, 0.0, magnification)


def model_order(model: str) -> tuple[int, str]:
    """Sort key: the paper's model order, then models it lacks alphabetically."""
    paper = paper_model_name(model)
    if paper in PAPER_MODEL_ORDER:
        return (PAPER_MODEL_ORDER.index(paper), model)
    return (len(PAPER_MODEL_ORDER), model.lower())


def task_order(task: str) -> tuple[int, str]:
    """Sort key: the paper's binary task first."""
    return (0 if task == "binary" else 1, task)


@dataclass
class Run:
    """One evaluation of a fitted run, with the run's records (a fitted run without one has ``evaluation=None``).

    Attributes:
        path: The run directory (``lightning_logs/<experiment>/version_N``).
        record: Its :class:`~breakhis_lit.rundir.RunRecord`.
        fit: Its :class:`~breakhis_lit.rundir.FitRecord` (``None`` while the fit has not ended).
        evaluation: The evaluation's :class:`~breakhis_lit.rundir.EvalRecord`, or ``None`` before ``test``.
        eval_dir: The evaluation's folder (``test/`` or ``evals/<name>/``).
        history: ``history.csv`` as one dict per epoch.
    """

    path: Path
    record: RunRecord
    fit: FitRecord | None = None
    evaluation: EvalRecord | None = None
    eval_dir: Path | None = None
    history: list[dict[str, float | None]] = field(default_factory=list)
    _stats: Predictions | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def model(self) -> str:
        """The network: our class name or the timm model name."""
        return self.record.model

    @property
    def paper_model(self) -> str | None:
        """The paper's name for this model, or None."""
        return paper_model_name(self.model)

    @property
    def _data(self) -> Any:
        return self.evaluation.data if self.evaluation is not None else self.record.data

    @property
    def task(self) -> str:
        """``"binary"`` or ``"subtype"`` (of the evaluation)."""
        return self._data.task

    @property
    def classes(self) -> list[str]:
        """Class names in index order."""
        return list(self.evaluation.classes if self.evaluation is not None else self.record.classes)

    @property
    def magnification(self) -> str:
        """The evaluated magnification as a string (``"40"``) or ``"all"``."""
        return str(self._data.magnification)

    @property
    def split(self) -> str:
        """The split strategy (``"patient"``, ``"image"``, ...)."""
        return self._data.split

    @property
    def group_by(self) -> str:
        """What patient-aware splits group by (``"accession"``...)."""
        return self._data.group_by

    @property
    def seed(self) -> int:
        """The split's seed."""
        return self._data.seed

    @property
    def fold(self) -> int | None:
        """The official or k-fold test fold (``None`` for splits without folds)."""
        return self._data.fold if self.split in ("official", "kfold") else None

    @property
    def experiment(self) -> str:
        """The experiment name."""
        return self.record.experiment

    @property
    def eval_name(self) -> str:
        """``test``, or the cross-evaluation's name."""
        return self.evaluation.name if self.evaluation is not None else DEFAULT_EVAL

    @property
    def split_hash(self) -> str:
        """Hash of the split that was scored (which images on which side)."""
        return self.evaluation.split_hash if self.evaluation is not None else self.record.split_hash

    @property
    def test(self) -> dict[str, Any]:
        """The evaluation's metrics (empty before ``breakhis test`` ran)."""
        return dict(self.evaluation.metrics) if self.evaluation is not None else {}

    @property
    def key(self) -> GroupKey:
        """The grouping key: runs that differ only in seed or fold share it."""
        return (self.task, self.model, self.magnification, self.split, self.group_by, self.eval_name)

    def number(self, name: str) -> float | None:
        """A finite number of the fit or of the evaluation, else None.

        The fit's are ``fit_time_s``, ``time_to_best_s``, ``best_epoch`` and ``epochs``; the evaluation's
        ``params_total``, ``params_trainable``, ``n_images`` and ``n_patients``.
        """
        for source in (self.fit, self.evaluation):
            if source is not None and hasattr(source, name):
                return as_number(getattr(source, name))
        return None

    def test_number(self, name: str) -> float | None:
        """A finite metric of the evaluation (``"accuracy"``...), else None."""
        return as_number(self.test.get(name))

    def interval(self, name: str) -> tuple[float, float] | None:
        """The evaluation's patient-bootstrap interval of a metric, or None."""
        found = self.evaluation.intervals.get(name) if self.evaluation is not None else None
        if not found or as_number(found.get("low")) is None or as_number(found.get("high")) is None:
            return None
        return float(found["low"]), float(found["high"])

    def gradcam(self) -> list[tuple[GradCAMEntry, Path]]:
        """The evaluation's Grad-CAM overlays with their files, as its manifest lists them."""
        if self.eval_dir is None:
            return []
        folder = self.eval_dir / GRADCAM
        return [(entry, folder / entry.file) for entry in RunDir(self.path).evaluation(self.eval_name).gradcam()]

    def predictions(self) -> list[PredictionRow]:
        """The rows of the evaluation's ``predictions.csv``."""
        if self.evaluation is None:
            return []
        return RunDir(self.path).evaluation(self.eval_name).predictions(self.classes)

    def stats_predictions(self) -> Predictions:
        """The evaluation's ``predictions.csv`` as the statistics take it (read once), named by the run directory.

        Raises:
            BreakHisError: Before ``test`` ran, or when the file is missing or unreadable.
        """
        if self._stats is None:
            if self.evaluation is None:
                raise BreakHisError(f"{self.path}: not tested (no {DEFAULT_EVAL}/metrics.json); run `breakhis test`")
            from breakhis_lit.evaluation.rows import predictions_from_rows

            self._stats = predictions_from_rows(self.predictions(), self.classes, str(self.path))
        return self._stats

    def confusion_matrix(self) -> np.ndarray | None:
        """The evaluation's confusion matrix (rows true, columns predicted), or None before ``test``."""
        if self.evaluation is None or not self.evaluation.confusion_matrix:
            return None
        return np.asarray(self.evaluation.confusion_matrix, dtype=np.int64)


def as_number(value: Any) -> float | None:
    """Return ``value`` as a finite float, or None (strings, NaN, bools, missing)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def load_run(run_dir: str | Path) -> list[Run]:
    """Load a run directory: one :class:`Run` per evaluation (``test`` first), or one without when it has none.

    Raises:
        BreakHisError: When it is not a run directory (no ``run.json``) or a record is unreadable.
    """
    run = RunDir(Path(run_dir))
    record = run.record()
    fit, history = run.fit(), run.history()
    evaluations = run.evaluations()
    if not evaluations:
        return [Run(run.path, record, fit, history=history)]
    return [Run(run.path, record, fit, e.record(), e.path, history) for e in evaluations]


def load_runs(paths: str | Path | Iterable[str | Path]) -> list[Run]:
    """Load every fitted run at or below the given paths.

    Args:
        paths: run directories or folders above them (``lightning_logs``, ``lightning_logs/attn``);
            one path or several. Overlapping paths load each run once.

    Returns:
        One :class:`Run` per evaluation, in natural path order.

    Raises:
        BreakHisError: when no path is given, a path does not exist, or a path holds no fitted run.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise BreakHisError("no run directories given; pass lightning_logs or a version_N directory")
    seen: set[Path] = set()
    run_dirs: list[Path] = []
    for path in paths:
        found = find_runs(path)
        if not found:
            raise BreakHisError(
                f"{path}: no fitted runs below it (no run.json); run `breakhis fit` and `breakhis test` first, or "
                "pass the lightning_logs folder that holds them"
            )
        for run in found:
            resolved = run.path.resolve()
            if resolved not in seen:
                seen.add(resolved)
                run_dirs.append(run.path)
    run_dirs.sort(key=lambda p: natural_key(p.as_posix()))
    return [run for run_dir in run_dirs for run in load_run(run_dir)]


def group_runs(runs: Iterable[Run]) -> dict[GroupKey, list[Run]]:
    """Group runs that differ only in seed or fold, ordered by task, magnification and model.

    Args:
        runs: loaded runs.

    Returns:
        ``{(task, model, magnification, split, group_by, evaluation): [runs...]}`` in report order.
    """
    groups: dict[GroupKey, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.key, []).append(run)
    order = sorted(
        groups,
        key=lambda k: (
            k[5] != DEFAULT_EVAL,
            k[5],
            task_order(k[0]),
            magnification_order(k[2]),
            model_order(k[1]),
            k[3],
            k[4],
        ),
    )
    return {key: groups[key] for key in order}


def split_label(split: str, group_by: str) -> str:
    """Human label of a split: ``"patient (accession)"``; image-level splits as they are."""
    if group_by and split not in ("image", "random", "?"):
        return f"{split} ({group_by})"
    return split
