"""Find and load finished run directories (``metrics.json`` present) for tables and figures."""

import csv
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from breakhis_lit.errors import BreakHisError

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
PREDICTIONS_FILE = "predictions.csv"
CONFIG_FILES = ("config.yaml", "hparams.yaml")
GRADCAM_DIR = "gradcam"

# metrics.json "model" (our class name, or the timm model_name of a TimmClassifier) -> the paper's row name.
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
# Wrapper classes whose metrics.json "model" does not say which network was built.
_WRAPPER_MODELS = {"TimmClassifier", "DALAResNet"}

GroupKey = tuple[str, str, str, str, str]
"""(task, model, magnification, split, group_by): runs sharing it are repeats over seeds or folds."""


def paper_model_name(model: str) -> str | None:
    """Map a metrics.json model name to the paper's row name.

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


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key ordering embedded numbers numerically (``version_2`` before ``version_10``)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def normalize_magnification(value: Any) -> str:
    """Return a magnification as a plain string (``40``, ``"40X"`` -> ``"40"``; None -> ``"all"``)."""
    if value is None:
        return "all"
    if isinstance(value, list | tuple):
        return "+".join(normalize_magnification(item) for item in value)
    text = str(value).strip()
    if text[-1:] in ("x", "X"):
        text = text[:-1]
    if text.lower() in ("", "none", "null", "all"):
        return "all"
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


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
    """One finished run directory.

    Attributes:
        path: the run directory (``lightning_logs/<experiment>/version_N``).
        metrics: the parsed ``metrics.json``.
        history: ``history.csv`` as one dict per epoch (floats; None where empty), sorted by epoch.
        config: the parsed ``config.yaml`` (or ``hparams.yaml``); empty when neither exists.
    """

    path: Path
    metrics: dict[str, Any]
    history: list[dict[str, float | None]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> str:
        """The network: our class name or the timm model name."""
        model = str(self.metrics.get("model") or "?")
        if model in _WRAPPER_MODELS:
            inner = _find_key(self.config, "model_name") or _find_key(self.config, "arch")
            if isinstance(inner, str) and inner:
                return inner if model == "TimmClassifier" else f"{model}[{inner}]"
        return model

    @property
    def paper_model(self) -> str | None:
        """The paper's name for this model, or None."""
        return paper_model_name(self.model)

    @property
    def task(self) -> str:
        """``"binary"`` or ``"subtype"`` (as written by the run)."""
        task = self.metrics.get("task")
        if task:
            return str(task)
        return "binary" if len(self.classes) == 2 else "subtype"

    @property
    def classes(self) -> list[str]:
        """Class names in index order."""
        classes = self.metrics.get("classes")
        if isinstance(classes, list) and classes:
            return [str(name) for name in classes]
        if self.metrics.get("task", "binary") == "binary":
            return ["benign", "malignant"]
        return []

    @property
    def magnification(self) -> str:
        """The magnification as a string (``"40"``) or ``"all"``."""
        return normalize_magnification(self.metrics.get("magnification"))

    @property
    def split(self) -> str:
        """The split strategy (``"patient"``, ``"image"``, ...)."""
        return str(self.metrics.get("split") or "?")

    @property
    def group_by(self) -> str:
        """What patient-aware splits group by (``"accession"``...), empty when unknown."""
        return str(self.metrics.get("group_by") or "")

    @property
    def seed(self) -> Any:
        """The run's seed (None when not recorded)."""
        return self.metrics.get("seed")

    @property
    def fold(self) -> Any:
        """The cross-validation fold (None for a single split)."""
        return self.metrics.get("fold")

    @property
    def experiment(self) -> str:
        """The experiment name (falls back to the parent folder's name)."""
        return str(self.metrics.get("experiment") or self.path.parent.name)

    @property
    def test(self) -> dict[str, Any]:
        """The ``test`` section of metrics.json (empty before ``breakhis test`` ran)."""
        test = self.metrics.get("test")
        return test if isinstance(test, dict) else {}

    @property
    def key(self) -> GroupKey:
        """The grouping key: runs that differ only in seed or fold share it."""
        return (self.task, self.model, self.magnification, self.split, self.group_by)

    def number(self, name: str) -> float | None:
        """A finite top-level number from metrics.json (``"fit_time_s"``...), else None."""
        return as_number(self.metrics.get(name))

    def test_number(self, name: str) -> float | None:
        """A finite number from the ``test`` section (``"accuracy"``...), else None."""
        return as_number(self.test.get(name))

    def gradcam_images(self) -> list[Path]:
        """Every PNG under the run's ``gradcam/`` folder, in natural order."""
        folder = self.path / GRADCAM_DIR
        if not folder.is_dir():
            return []
        return sorted(folder.rglob("*.png"), key=lambda p: natural_key(p.relative_to(folder).as_posix()))

    def predictions(self) -> list[dict[str, str]]:
        """Rows of ``predictions.csv`` (empty when the file is missing)."""
        path = self.path / PREDICTIONS_FILE
        if not path.is_file():
            return []
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))

    def confusion_matrix(self) -> np.ndarray | None:
        """The test confusion matrix (rows true, columns predicted).

        Taken from metrics.json, else counted from predictions.csv; None when neither has it.
        """
        matrix = self.test.get("confusion_matrix")
        if matrix is not None:
            array = np.asarray(matrix, dtype=np.int64)
            if array.ndim == 2 and array.shape[0] == array.shape[1]:
                return array
            raise BreakHisError(
                f"{self.path / METRICS_FILE}: test.confusion_matrix is not a square matrix; "
                "rerun `breakhis test` for this run"
            )
        classes = self.classes
        rows = [row for row in self.predictions() if row.get("label") not in (None, "", "-1")]
        if not rows or not classes:
            return None
        counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
        for row in rows:
            counts[
                _class_index(row["label"], classes, self.path), _class_index(row["prediction"], classes, self.path)
            ] += 1
        return counts


def as_number(value: Any) -> float | None:
    """Return ``value`` as a finite float, or None (strings, NaN, bools, missing)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _class_index(value: str, classes: Sequence[str], run_dir: Path) -> int:
    if value in classes:
        return classes.index(value)
    try:
        index = int(float(value))
    except ValueError:
        index = -1
    if not 0 <= index < len(classes):
        raise BreakHisError(
            f"{run_dir / PREDICTIONS_FILE}: label/prediction {value!r} is neither a class of {list(classes)} "
            "nor its index; rerun `breakhis test` for this run"
        )
    return index


def _find_key(tree: Any, name: str) -> Any:
    """Depth-first search of nested dicts/lists for the first value stored under ``name``."""
    if isinstance(tree, dict):
        if name in tree:
            return tree[name]
        children = tree.values()
    elif isinstance(tree, list):
        children = tree
    else:
        return None
    for child in children:
        found = _find_key(child, name)
        if found is not None:
            return found
    return None


def _to_float(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def read_history(path: Path) -> list[dict[str, float | None]]:
    """Read ``history.csv``: one dict per epoch, rows logging the same epoch merged, sorted by epoch.

    Args:
        path: the CSV file; a missing file gives an empty list.

    Returns:
        Dicts of floats (None where a cell is empty); ``"epoch"`` is the row index when absent.
    """
    if not path.is_file():
        return []
    merged: dict[float, dict[str, float | None]] = {}
    with path.open(newline="") as handle:
        for index, raw in enumerate(csv.DictReader(handle)):
            row = {name: _to_float(value) for name, value in raw.items() if name is not None}
            epoch = row.get("epoch")
            if epoch is None:
                epoch = float(index)
                row["epoch"] = epoch
            target = merged.setdefault(epoch, dict.fromkeys(row))
            target.update({name: value for name, value in row.items() if value is not None})
    return [merged[epoch] for epoch in sorted(merged)]


def _read_config(run_dir: Path) -> dict[str, Any]:
    for name in CONFIG_FILES:
        path = run_dir / name
        if path.is_file():
            try:
                loaded = yaml.safe_load(path.read_text())
            except yaml.YAMLError as error:
                first = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise BreakHisError(f"{path}: not valid YAML ({first}); fix or delete the file") from error
            return loaded if isinstance(loaded, dict) else {}
    return {}


def load_run(run_dir: str | Path) -> Run:
    """Load one run directory holding ``metrics.json``.

    Args:
        run_dir: the ``version_N`` directory.

    Returns:
        The Run with its metrics, history and config.

    Raises:
        BreakHisError: when metrics.json is missing, not JSON, or lacks ``"model"``.
    """
    run_dir = Path(run_dir)
    path = run_dir / METRICS_FILE
    if not path.is_file():
        raise BreakHisError(f"{run_dir}: no {METRICS_FILE}, so not a finished run; finish `breakhis fit`/`test` first")
    try:
        metrics = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BreakHisError(f"{path}: not valid JSON ({error}); rerun `breakhis test` or delete the run") from error
    if not isinstance(metrics, dict) or not metrics.get("model"):
        raise BreakHisError(f'{path}: expected a JSON object with a "model" entry; rerun `breakhis test`')
    return Run(
        path=run_dir, metrics=metrics, history=read_history(run_dir / HISTORY_FILE), config=_read_config(run_dir)
    )


def find_run_dirs(path: str | Path) -> list[Path]:
    """Finished run directories at or below ``path`` (directories holding ``metrics.json``).

    A directory holding metrics.json is a run and is not searched further; hidden folders are skipped.

    Args:
        path: a run directory or any folder above runs.

    Returns:
        Run directories in natural order (possibly empty).

    Raises:
        BreakHisError: when ``path`` does not exist or is a file other than a metrics.json.
    """
    root = Path(path)
    if root.is_file() and root.name == METRICS_FILE:
        return [root.parent]
    if not root.exists():
        raise BreakHisError(f"{root}: no such directory; pass a run directory (version_N) or a folder above runs")
    if not root.is_dir():
        raise BreakHisError(f"{root}: not a directory; pass a run directory (version_N) or a folder above runs")
    found: list[Path] = []
    for current, dirs, files in os.walk(root):
        if METRICS_FILE in files:
            found.append(Path(current))
            dirs[:] = []
        else:
            dirs[:] = [name for name in dirs if not name.startswith(".")]
    return sorted(found, key=lambda p: natural_key(p.as_posix()))


def load_runs(paths: str | Path | Iterable[str | Path]) -> list[Run]:
    """Load every finished run at or below the given paths.

    Args:
        paths: run directories or folders above them (``lightning_logs``, ``lightning_logs/attn``);
            one path or several. Overlapping paths load each run once.

    Returns:
        The runs, in natural path order.

    Raises:
        BreakHisError: when no path is given, a path does not exist, or a path holds no finished run.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise BreakHisError("no run directories given; pass lightning_logs or a version_N directory")
    seen: set[Path] = set()
    run_dirs: list[Path] = []
    for path in paths:
        found = find_run_dirs(path)
        if not found:
            raise BreakHisError(
                f"{path}: no finished runs below it (no {METRICS_FILE}); run `breakhis fit` and "
                "`breakhis test` first, or pass the lightning_logs folder that holds them"
            )
        for run_dir in found:
            resolved = run_dir.resolve()
            if resolved not in seen:
                seen.add(resolved)
                run_dirs.append(run_dir)
    run_dirs.sort(key=lambda p: natural_key(p.as_posix()))
    return [load_run(run_dir) for run_dir in run_dirs]


def group_runs(runs: Iterable[Run]) -> dict[GroupKey, list[Run]]:
    """Group runs that differ only in seed or fold, ordered by task, magnification and model.

    Args:
        runs: loaded runs.

    Returns:
        ``{(task, model, magnification, split, group_by): [runs...]}`` in report order.
    """
    groups: dict[GroupKey, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.key, []).append(run)
    order = sorted(
        groups,
        key=lambda k: (task_order(k[0]), magnification_order(k[2]), model_order(k[1]), k[3], k[4]),
    )
    return {key: groups[key] for key in order}


def split_label(split: str, group_by: str) -> str:
    """Human label of a split: ``"patient (accession)"``; image-level splits as they are."""
    if group_by and split not in ("image", "random", "?"):
        return f"{split} ({group_by})"
    return split
