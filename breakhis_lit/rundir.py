"""The run directory: the name of every file a run writes, the typed records stored there, and their readers.

A run is evidence: ``fit`` fixes its split, config and checkpoints, and no later verb rewrites them. Every writer
(the callbacks) and every reader (``breakhis report``, ``breakhis compare``, the tests' fake runs) goes through
this module, so the layout below is the whole contract::

    <log_root>/<experiment>/version_N/      one run, allocated with an atomic mkdir
        run.json                            RunRecord: what was run (written when fit starts)
        config.yaml                         the fit's resolved config
        splits.csv                          the split (every image, its group, side and file size)
        history.csv                         one row per epoch
        fit.json                            FitRecord: what happened (fit time, best epoch)
        .fitting.lock                       held while a fit writes the run
        stain_target.json                   the stain normalisation target, fitted on the training split
        checkpoints/best.ckpt, last.ckpt
        events.out.tfevents.*               TensorBoard (the fit)
        test/                               the evaluation on the run's own test split
            config.yaml                     the test's resolved config
            metrics.json                    EvalRecord: metrics, what was scored, which checkpoint
            predictions.csv                 one row per test image
            gradcam/manifest.csv, *.png     Grad-CAM overlays and what each shows
            stain_shift.json, .csv          scores under HED stain shifts of increasing strength
            events.out.tfevents.*           TensorBoard (the test)
        evals/<name>/                       a cross-evaluation (``--eval_name``): the files of test/
        validate/, predict/                 config and outputs of those verbs
        gradcam/<folder>/                   Grad-CAM overlays and gradcam.csv of ``breakhis gradcam``
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from breakhis_lit.errors import BreakHisError
from breakhis_lit.files import atomic_write_text, read_json

RUN_RECORD = "run.json"
"""What was run: a :class:`RunRecord`."""
CONFIG = "config.yaml"
"""A verb's resolved config (the fit's in the run directory, each evaluation's in its folder)."""
SPLITS = "splits.csv"
"""The run's split (format: :mod:`breakhis_lit.data.splits`)."""
HISTORY = "history.csv"
"""Per-epoch metrics of the fit."""
FIT_RECORD = "fit.json"
"""What happened in fit: a :class:`FitRecord`."""
FITTING_LOCK = ".fitting.lock"
"""Held by a fit while it writes the run (:meth:`RunDir.fitting`)."""
STAIN_TARGET = "stain_target.json"
"""The stain normalisation target of the run (:mod:`breakhis_lit.stain.target_file`), fitted on its training split."""
STAIN_SHIFT = "stain_shift"
"""File stem of an evaluation's stain-shift robustness scores (``.json`` record, ``.csv`` table)."""
CHECKPOINTS = "checkpoints"
"""Folder of the checkpoints."""
BEST = "best"
"""File stem of the best checkpoint (by the validation monitor)."""
LAST = "last"
"""File stem of the checkpoint to resume from."""
EVAL_RECORD = "metrics.json"
"""An evaluation's results: an :class:`EvalRecord`."""
PREDICTIONS = "predictions.csv"
"""One row per scored image (format: :func:`write_predictions`)."""
GRADCAM = "gradcam"
"""Folder of an evaluation's Grad-CAM overlays."""
GRADCAM_MANIFEST = "manifest.csv"
"""What each Grad-CAM overlay shows (format: :class:`GradCAMEntry`)."""
DEFAULT_EVAL = "test"
"""Folder of the evaluation on the run's own test split."""
EVALS = "evals"
"""Folder of the cross-evaluations, one sub-folder per ``--eval_name``."""
VERB_DIRS: dict[str, str] = {"test": DEFAULT_EVAL, "validate": "validate", "predict": "predict", "gradcam": "gradcam"}
"""Folder of each verb's outputs inside the run directory (without ``--eval_name``)."""
SCHEMA = 1
"""Version of the records' layout; readers refuse another."""

FILES: tuple[tuple[str, str], ...] = (
    (
        RUN_RECORD,
        "what was run: model, task, magnification, split options, classes, split hash, data fingerprint, "
        "package version and commit, resumes (written once when `fit` starts)",
    ),
    (CONFIG, "the fit's resolved config"),
    (SPLITS, "every image of the run with its group, patient, label, side (train/val/test/skipped) and file size"),
    (HISTORY, "one row per epoch: every train/val metric and the elapsed time"),
    (FIT_RECORD, "what happened: fit time, epochs, best epoch (1-based) and the time to reach it"),
    (
        FITTING_LOCK,
        "held by `fit` while it runs (released even when it is killed): other verbs refuse the run until then",
    ),
    (
        STAIN_TARGET,
        "the stain normalisation target (`--data.stain_norm`), fitted on the training split only; method `none` "
        "without normalisation; every later verb reads it back",
    ),
    (
        f"{CHECKPOINTS}/{BEST}.ckpt, {CHECKPOINTS}/{LAST}.ckpt",
        "the best checkpoint (validation monitor) and the one to resume from",
    ),
    ("hparams.yaml", "the data module's hyper-parameters, as Lightning's TensorBoard logger writes them"),
    (
        "events.out.tfevents.*",
        "TensorBoard: losses, metrics, learning rate, images/s, confusion matrices, PR curves, Grad-CAM grids",
    ),
    (
        f"{DEFAULT_EVAL}/{EVAL_RECORD}",
        "every test metric, what was scored (split hash, images, patients) and the checkpoint",
    ),
    (
        f"{DEFAULT_EVAL}/{PREDICTIONS}",
        "one row per test image: path, patient, group, label, class probabilities, prediction",
    ),
    (
        f"{DEFAULT_EVAL}/{GRADCAM}/",
        f"Grad-CAM overlays and `{GRADCAM_MANIFEST}` (image, true class, predicted class, probability)",
    ),
    (
        f"{DEFAULT_EVAL}/{STAIN_SHIFT}.json, {DEFAULT_EVAL}/{STAIN_SHIFT}.csv",
        "`breakhis stain-shift`: accuracy, AUROC … with patient-bootstrap intervals under HED stain shifts of "
        "increasing strength",
    ),
    (
        f"{EVALS}/<name>/",
        "a cross-evaluation (`--eval_name NAME`): the files of `test/` plus the `splits.csv` it scored",
    ),
    (
        f"{DEFAULT_EVAL}/{CONFIG}, {DEFAULT_EVAL}/hparams.yaml, {DEFAULT_EVAL}/events.out.tfevents.*",
        "the test's resolved config, and its TensorBoard log (test metrics, confusion matrix, Grad-CAM grid)",
    ),
    (
        "validate/, predict/",
        "the config, TensorBoard log and outputs of `validate` and `predict` (`predictions-<folder>.csv`)",
    ),
    (
        "gradcam/<folder>/",
        "`breakhis gradcam`: a captioned `<stem>_gradcam.png` overlay per image and `gradcam.csv` (path, true class, "
        "prediction, class probabilities, explained class), with the verb's config and TensorBoard log; "
        "`gradcam/test/` without `--data.predict_root`",
    ),
)
"""Every file of a run directory and what it holds (the README's "What a run writes" is generated from it)."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def files_markdown() -> str:
    """The Markdown table of :data:`FILES` (the README embeds exactly this)."""
    lines = ["| file | what it holds |", "| --- | --- |"]
    lines += [f"| `{name}` | {text} |" for name, text in FILES]
    return "\n".join(lines) + "\n"


def utc_now() -> str:
    """The time now, ISO 8601 in UTC, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _finite(value: float | None) -> float | None:
    """JSON has no NaN: undefined values are written as null."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class DataSpec:
    """The data options of a run that decide which images it sees and how (all but the root's path).

    Attributes:
        magnification: 40, 100, 200, 400, or ``"all"``.
        task: ``binary`` or ``subtype``.
        split: ``patient``, ``official``, ``kfold`` or ``image``.
        group_by: ``accession``, ``patient_id`` or ``folder``.
        train_ratio: Fraction of images in train.
        val_ratio: Fraction in validation.
        test_ratio: Fraction in test.
        fold: Official or k-fold index used as test.
        num_folds: Folds of ``kfold``.
        seed: Seed of the split.
        on_bad_image: ``error`` or ``skip``.
        image_size: Side of the images the model sees.
    """

    magnification: int | str
    task: str
    split: str
    group_by: str
    train_ratio: float
    val_ratio: float
    test_ratio: float
    fold: int
    num_folds: int
    seed: int
    on_bad_image: str
    image_size: int

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> DataSpec:
        """Build from the data module's options (a config's ``data`` section or its hyper-parameters)."""
        from breakhis_lit.data.naming import parse_magnification

        mag = parse_magnification(options["magnification"])
        return cls(
            magnification="all" if mag is None else mag,
            **{f.name: _coerce(f.type, options[f.name]) for f in dataclasses.fields(cls) if f.name != "magnification"},
        )

    def differences(self, other: DataSpec) -> list[tuple[str, Any, Any]]:
        """``(option, self's value, other's value)`` for every option that differs."""
        return [
            (f.name, getattr(self, f.name), getattr(other, f.name))
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]


def _coerce(kind: Any, value: Any) -> Any:
    if kind in ("float", float):
        return float(value)
    if kind in ("int", int):
        return int(value)
    return str(value)


@dataclass(frozen=True)
class Resume:
    """One resumed ``fit`` of a run.

    Attributes:
        at: When it started (ISO 8601, UTC).
        from_epoch: The epoch training went on from (0-based, as Lightning counts).
        max_epochs: The epoch budget of the resumed fit (it may extend the fit's).
    """

    at: str
    from_epoch: int
    max_epochs: int | None


@dataclass(frozen=True)
class RunRecord:
    """What was run: written once by ``fit`` when it starts, amended only by resumes (``run.json``).

    Attributes:
        experiment: The experiment name.
        version: N of ``version_N``.
        model: The network as reports name it (our class name, or the timm model name).
        backbone: The backbone's class path.
        root: The data root as given (its files are fingerprinted in ``data_fingerprint``).
        data: The data options.
        classes: Class names in index order.
        split_hash: Hash of the split (which image on which side, grouped how): runs with equal hashes were
            tested on the same images.
        data_fingerprint: Hash of the run's files (relative path and size of each).
        n_images: Images per side (``train``, ``val``, ``test``, ``skipped``).
        max_epochs: The fit's epoch budget.
        package_version: ``breakhis_lit.__version__``.
        git_commit: The package's git commit when it runs from a checkout, else ``None``.
        created: When the fit started (ISO 8601, UTC).
        resumes: Every resumed fit, in order.
        schema: Layout version (:data:`SCHEMA`).
    """

    experiment: str
    version: int
    model: str
    backbone: str
    root: str
    data: DataSpec
    classes: list[str]
    split_hash: str
    data_fingerprint: str
    n_images: dict[str, int]
    max_epochs: int | None
    package_version: str
    git_commit: str | None
    created: str = field(default_factory=utc_now)
    resumes: list[Resume] = field(default_factory=list)
    schema: int = SCHEMA


@dataclass(frozen=True)
class FitRecord:
    """What happened in ``fit`` (``fit.json``, written when a fit ends).

    Attributes:
        fit_time_s: Wall time of the fit, resumes included (the time lost to a kill is not counted).
        epochs: Epochs trained.
        max_epochs: The epoch budget of the last fit.
        monitor: The validation metric that picks ``best.ckpt``.
        mode: ``max`` or ``min``.
        best_epoch: The epoch of ``best.ckpt``, counted from 1 (``None`` without a finite monitor value).
        time_to_best_s: Wall time until the end of that epoch (the paper's "convergence time").
        best_score: The monitor's value at that epoch.
        schema: Layout version.
    """

    fit_time_s: float
    epochs: int
    max_epochs: int | None
    monitor: str | None
    mode: str
    best_epoch: int | None
    time_to_best_s: float | None
    best_score: float | None
    schema: int = SCHEMA


@dataclass(frozen=True)
class Difference:
    """A data option a cross-evaluation changed.

    Attributes:
        option: The option (``magnification``, ``root``, ...).
        fit: The fitted run's value.
        eval: The evaluation's value.
    """

    option: str
    fit: Any
    eval: Any


@dataclass(frozen=True)
class ValidationChoice:
    """What ``fit`` chose on the validation predictions of one epoch (saved in that epoch's checkpoints).

    Attributes:
        epoch: The epoch, counted from 1, whose validation predictions were used (the checkpoint's epoch).
        n_images: Validation images.
        threshold: Binary tasks: the threshold on the probability of class 1 maximising validation balanced
            accuracy (:func:`~breakhis_lit.stats.choose_threshold`); ``None`` for other tasks or a validation
            split of one class.
        val_balanced_accuracy: The validation balanced accuracy at ``threshold``.
        temperature: The temperature minimising the validation negative log-likelihood
            (:func:`~breakhis_lit.stats.fit_temperature`), or ``None``.
    """

    epoch: int
    n_images: int
    threshold: float | None
    val_balanced_accuracy: float | None
    temperature: float | None


@dataclass(frozen=True)
class BootstrapSpec:
    """How an evaluation's intervals were computed.

    Attributes:
        method: ``percentile``, ``expanded`` or ``bca``.
        level: Confidence level.
        n_resamples: Bootstrap replicates.
        seed: Seed of the replicates.
        unit: What the intervals resample (``group``: the split groups, each with all its images).
        n_groups: The groups resampled.
        seconds: Wall time the intervals added to the evaluation.
    """

    method: str
    level: float
    n_resamples: int
    seed: int
    unit: str
    n_groups: int
    seconds: float


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation of a run (``test/metrics.json`` or ``evals/<name>/metrics.json``).

    Attributes:
        name: ``test``, or the cross-evaluation's name.
        model: As in :class:`RunRecord`.
        data: The data options of what was scored.
        differs: What a cross-evaluation changed against the fit (empty for ``test``).
        classes: Class names in index order.
        split_hash: Hash of the split that was scored (equals the run's unless cross-evaluated).
        checkpoint: The checkpoint file.
        checkpoint_epoch: Its epoch, counted from 1.
        n_images: Scored images.
        n_patients: Their patients.
        n_groups: Their split groups (what the intervals resample).
        metrics: Every scalar test metric (``None`` where undefined).
        confusion_matrix: Rows true class, columns predicted.
        intervals: Per metric, a 95% interval from the patient bootstrap (``{"low", "high", ...}``, the fields of
            :class:`~breakhis_lit.stats.Interval`).
        tta: Test-time augmentation of the predictions (``none`` or ``d4``).
        bootstrap: How ``intervals`` were computed (``None`` in records without intervals).
        image_intervals: The image-level bootstrap interval of accuracy (images resampled as if independent), for
            contrast with the patient interval: too narrow when a patient's images are correlated.
        validation: The threshold and temperature chosen on the validation predictions of the checkpoint's epoch.
        metrics_at_val_threshold: The threshold-dependent metrics with decisions at ``validation.threshold``
            (binary tasks; ``metrics`` decide at 0.5).
        intervals_at_val_threshold: Their patient-bootstrap intervals.
        params_total: Parameters of the network.
        params_trainable: Trainable parameters.
        created: When it ran (ISO 8601, UTC).
        schema: Layout version.
    """

    name: str
    model: str
    data: DataSpec
    differs: list[Difference]
    classes: list[str]
    split_hash: str
    checkpoint: str | None
    checkpoint_epoch: int | None
    n_images: int
    n_patients: int
    n_groups: int
    metrics: dict[str, float | None]
    confusion_matrix: list[list[int]]
    params_total: int
    params_trainable: int
    intervals: dict[str, dict[str, Any]] = field(default_factory=dict)
    tta: str = "none"
    bootstrap: BootstrapSpec | None = None
    image_intervals: dict[str, dict[str, Any]] = field(default_factory=dict)
    validation: ValidationChoice | None = None
    metrics_at_val_threshold: dict[str, float | None] = field(default_factory=dict)
    intervals_at_val_threshold: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: str = field(default_factory=utc_now)
    schema: int = SCHEMA

    @property
    def cross(self) -> bool:
        """Whether this is a cross-evaluation (its data differ from the fit's)."""
        return self.name != DEFAULT_EVAL


_NESTED: dict[tuple[type, str], type] = {
    (RunRecord, "data"): DataSpec,
    (EvalRecord, "data"): DataSpec,
    (EvalRecord, "bootstrap"): BootstrapSpec,
    (EvalRecord, "validation"): ValidationChoice,
}
_LISTS: dict[tuple[type, str], type] = {
    (RunRecord, "resumes"): Resume,
    (EvalRecord, "differs"): Difference,
}


def _to_json(record: Any) -> str:
    def clean(value: Any) -> Any:
        if isinstance(value, float):
            return _finite(value)
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(dataclasses.asdict(record)), indent=2) + "\n"


def _from_dict(cls: type, data: Any, path: Path) -> Any:
    if not isinstance(data, dict):
        raise BreakHisError(f"{path}: not a {cls.__name__} (a JSON object); rerun the verb that writes it")
    names = {f.name for f in dataclasses.fields(cls)}
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing, unknown = sorted(required - set(data)), sorted(set(data) - names)
    if missing or unknown or data.get("schema", SCHEMA) != SCHEMA:
        what = f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(unknown)}" if unknown else "schema"
        raise BreakHisError(
            f"{path}: not a {cls.__name__} of this breakhis_lit version ({what}); rerun the verb that writes it"
        )
    values = dict(data)
    for (owner, name), kind in _NESTED.items():
        if owner is cls and values.get(name) is not None:
            values[name] = _from_dict(kind, values[name], path)
    for (owner, name), kind in _LISTS.items():
        if owner is cls and name in values:
            values[name] = [_from_dict(kind, item, path) for item in values[name]]
    return cls(**values)


def write_record(path: str | Path, record: Any) -> Path:
    """Write a record as JSON, atomically."""
    return atomic_write_text(path, _to_json(record))


def read_record(path: str | Path, cls: type) -> Any:
    """Read a record written by :func:`write_record`.

    Raises:
        BreakHisError: When the file is missing, not JSON, or not such a record.
    """
    path = Path(path)
    return _from_dict(cls, read_json(path, "`breakhis fit`/`breakhis test`"), path)


# ------------------------------------------------------------------------------------------- predictions, CAMs
@dataclass(frozen=True)
class PredictionRow:
    """One scored image.

    Attributes:
        path: The image (official relative path for BreakHis images, else the file).
        patient_id: Its patient (``""`` when unknown).
        group: Its split group (``""`` when unknown).
        label: Its true class name (``""`` when unknown).
        probs: Class probabilities, in class order.
        prediction: The predicted class name.
    """

    path: str
    patient_id: str
    group: str
    label: str
    probs: tuple[float, ...]
    prediction: str


def write_predictions(path: str | Path, rows: Sequence[PredictionRow], classes: Sequence[str]) -> Path:
    """Write ``predictions.csv`` (``path, patient_id, group, label, prob_<class>..., prediction``), atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "patient_id", "group", "label", *[f"prob_{c}" for c in classes], "prediction"])
    for row in rows:
        writer.writerow(
            [row.path, row.patient_id, row.group, row.label, *[f"{p:.6f}" for p in row.probs], row.prediction]
        )
    return atomic_write_text(path, buffer.getvalue())


def read_predictions(path: str | Path, classes: Sequence[str]) -> list[PredictionRow]:
    """Read a file written by :func:`write_predictions` for these classes.

    Raises:
        BreakHisError: When the file is missing or its columns are not those of ``classes``.
    """
    path = Path(path)
    if not path.is_file():
        raise BreakHisError(f"{path}: no such file; run `breakhis test` for this run first")
    expected = ["path", "patient_id", "group", "label", *[f"prob_{c}" for c in classes], "prediction"]
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        if header != expected:
            raise BreakHisError(f"{path}: columns {header} are not {expected}; rerun `breakhis test` for this run")
        rows = []
        for line in reader:
            try:
                probs = tuple(float(v) for v in line[4:-1])
            except ValueError:
                raise BreakHisError(f"{path}: a probability is not a number; rerun `breakhis test`") from None
            rows.append(PredictionRow(line[0], line[1], line[2], line[3], probs, line[-1]))
    return rows


@dataclass(frozen=True)
class GradCAMEntry:
    """One Grad-CAM overlay of an evaluation.

    Attributes:
        file: The overlay PNG, relative to the ``gradcam/`` folder.
        input_file: The image as the model saw it (PNG, relative to ``gradcam/``).
        image: The image it explains (its path in the data).
        label: Its true class name (``""`` when unknown).
        prediction: The predicted class name (the class explained).
        probability: The predicted class's probability.
    """

    file: str
    input_file: str
    image: str
    label: str
    prediction: str
    probability: float


def write_gradcam_manifest(folder: str | Path, entries: Sequence[GradCAMEntry]) -> Path:
    """Write ``gradcam/manifest.csv``, atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([f.name for f in dataclasses.fields(GradCAMEntry)])
    for e in entries:
        writer.writerow([e.file, e.input_file, e.image, e.label, e.prediction, f"{e.probability:.6f}"])
    return atomic_write_text(Path(folder) / GRADCAM_MANIFEST, buffer.getvalue())


def read_gradcam_manifest(folder: str | Path) -> list[GradCAMEntry]:
    """The entries of ``gradcam/manifest.csv`` (empty when the folder has none)."""
    path = Path(folder) / GRADCAM_MANIFEST
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        try:
            return [
                GradCAMEntry(
                    r["file"], r["input_file"], r["image"], r["label"], r["prediction"], float(r["probability"])
                )
                for r in csv.DictReader(handle)
            ]
        except (KeyError, TypeError, ValueError):
            raise BreakHisError(f"{path}: not a Grad-CAM manifest; rerun `breakhis test`") from None


# ------------------------------------------------------------------------------------------------- history
def write_history(path: str | Path, rows: Sequence[Mapping[str, float | None]]) -> Path:
    """Write ``history.csv`` (``epoch, elapsed_s`` then every metric, sorted), atomically."""
    keys = ["epoch", "elapsed_s", *sorted({k for r in rows for k in r} - {"epoch", "elapsed_s"})]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def read_history(path: str | Path) -> list[dict[str, float | None]]:
    """Rows of ``history.csv`` as floats (``None`` where a cell is empty), sorted by epoch; ``[]`` when missing."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, float | None] = {}
            for name, value in raw.items():
                try:
                    row[name] = float(value) if value not in (None, "") else None
                except ValueError:
                    raise BreakHisError(f"{path}: {name}={value!r} is not a number; it is written by fit") from None
            rows.append(row)
    return sorted(rows, key=lambda r: r.get("epoch") or 0.0)


# ---------------------------------------------------------------------------------------------- directories
@dataclass(frozen=True)
class EvalDir:
    """One evaluation folder of a run (``test/`` or ``evals/<name>/``)."""

    path: Path
    name: str

    @property
    def record_path(self) -> Path:
        """Its ``metrics.json``."""
        return self.path / EVAL_RECORD

    def exists(self) -> bool:
        """Whether it holds results."""
        return self.record_path.is_file()

    def record(self) -> EvalRecord:
        """The :class:`EvalRecord`."""
        return read_record(self.record_path, EvalRecord)

    def predictions(self, classes: Sequence[str]) -> list[PredictionRow]:
        """The rows of its ``predictions.csv``."""
        return read_predictions(self.path / PREDICTIONS, classes)

    def gradcam(self) -> list[GradCAMEntry]:
        """Its Grad-CAM overlays (paths in ``file`` are relative to ``gradcam/``)."""
        return read_gradcam_manifest(self.path / GRADCAM)


@dataclass(frozen=True)
class RunDir:
    """One run directory (``<log_root>/<experiment>/version_N``)."""

    path: Path

    @property
    def version(self) -> int:
        """N of ``version_N``."""
        return version_of(self.path)

    def exists(self) -> bool:
        """Whether it holds a run record (was made by ``breakhis fit``)."""
        return (self.path / RUN_RECORD).is_file()

    def record(self) -> RunRecord:
        """The :class:`RunRecord`."""
        return read_record(self.path / RUN_RECORD, RunRecord)

    def fit(self) -> FitRecord | None:
        """The :class:`FitRecord`, or ``None`` while the fit has not ended."""
        path = self.path / FIT_RECORD
        return read_record(path, FitRecord) if path.is_file() else None

    def history(self) -> list[dict[str, float | None]]:
        """The rows of ``history.csv``."""
        return read_history(self.path / HISTORY)

    @property
    def splits(self) -> Path:
        """Its ``splits.csv``."""
        return self.path / SPLITS

    @property
    def stain_target(self) -> Path:
        """The fit's ``stain_target.json``."""
        return self.path / STAIN_TARGET

    @property
    def config(self) -> Path:
        """The fit's ``config.yaml``."""
        return self.path / CONFIG

    def checkpoint(self, stem: str) -> Path:
        """``checkpoints/<stem>.ckpt``."""
        return self.path / CHECKPOINTS / f"{stem}.ckpt"

    @contextlib.contextmanager
    def fitting(self) -> Iterator[None]:
        """Hold the run's fitting lock while a fit writes it (released by the OS even when the process is killed).

        Raises:
            BreakHisError: When another process is fitting the run.
        """
        lock = FileLock(str(self.path / FITTING_LOCK))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise BreakHisError(self._busy()) from None
        try:
            yield
        finally:
            lock.release()

    def check_not_fitting(self) -> None:
        """Refuse a run that a fit is writing now (its lock held), without creating the lock file.

        Raises:
            BreakHisError: Naming the run.
        """
        path = self.path / FITTING_LOCK
        if not path.is_file():
            return
        lock = FileLock(str(path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise BreakHisError(self._busy()) from None
        lock.release()

    def _busy(self) -> str:
        return (
            f"{self.path}: a fit of this run is still going (another process holds its {FITTING_LOCK}); wait for "
            "it to end, or pass --ckpt_path with a checkpoint of a finished run"
        )

    def has_checkpoints(self) -> bool:
        """Whether any checkpoint was written."""
        folder = self.path / CHECKPOINTS
        return folder.is_dir() and any(folder.glob("*.ckpt"))

    def output_dir(self, verb: str, eval_name: str | None = None) -> Path:
        """Where ``verb`` writes: ``test/``, ``validate/``, ``predict/``, or ``evals/<eval_name>/``."""
        if eval_name is not None:
            return self.path / EVALS / eval_name
        return self.path / VERB_DIRS[verb]

    def evaluation(self, name: str = DEFAULT_EVAL) -> EvalDir:
        """The evaluation folder ``name`` (``test`` or a cross-evaluation)."""
        return EvalDir(self.path / (DEFAULT_EVAL if name == DEFAULT_EVAL else f"{EVALS}/{name}"), name)

    def evaluations(self) -> list[EvalDir]:
        """Every evaluation holding results: ``test`` first, then the cross-evaluations by name."""
        found = [self.evaluation()] if self.evaluation().exists() else []
        folder = self.path / EVALS
        if folder.is_dir():
            found += [EvalDir(p, p.name) for p in sorted(folder.iterdir()) if (p / EVAL_RECORD).is_file()]
        return found


def check_eval_name(name: str) -> str:
    """Validate ``--eval_name``.

    Raises:
        BreakHisError: For a name that is not a plain folder name, or one of the verbs' own folders.
    """
    if not _NAME_RE.fullmatch(name) or name in VERB_DIRS.values():
        raise BreakHisError(
            f"--eval_name {name!r}: use letters, digits, '_', '-' and '.' (not {', '.join(VERB_DIRS.values())}), "
            "e.g. --eval_name x40_on_x100"
        )
    return name


def version_of(path: Path) -> int:
    """N of a ``version_N`` folder (``-1`` for other names)."""
    match = re.fullmatch(r"version_(\d+)", path.name)
    return int(match.group(1)) if match else -1


def versions(experiment_dir: str | Path) -> list[RunDir]:
    """The ``version_N`` folders of an experiment, newest (largest N) first."""
    folder = Path(experiment_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if version_of(p) >= 0 and p.is_dir()]
    return [RunDir(p) for p in sorted(found, key=version_of, reverse=True)]


def allocate_run(experiment_dir: str | Path) -> RunDir:
    """Create the next ``version_N`` folder with an atomic ``mkdir``: two fits started together get two folders."""
    folder = Path(experiment_dir)
    folder.mkdir(parents=True, exist_ok=True)
    existing = versions(folder)
    n = existing[0].version + 1 if existing else 0
    while True:
        try:
            (folder / f"version_{n}").mkdir()
        except FileExistsError:
            n += 1
            continue
        return RunDir(folder / f"version_{n}")


def run_of_checkpoint(path: str | Path) -> RunDir | None:
    """The run directory holding ``checkpoints/<file>``, or ``None`` when the file lies elsewhere."""
    path = Path(path).resolve()
    if path.parent.name != CHECKPOINTS:
        return None
    run = RunDir(path.parent.parent)
    return run if run.exists() else None


def find_runs(path: str | Path) -> list[RunDir]:
    """Run directories (holding ``run.json``) at or below ``path``, in natural order; hidden folders skipped.

    Raises:
        BreakHisError: When ``path`` is not an existing folder.
    """
    root = Path(path)
    if not root.is_dir():
        raise BreakHisError(f"{root}: no such folder; pass a run directory (version_N) or a folder above runs")
    found: list[Path] = []
    for current, dirs, files in os.walk(root):
        if RUN_RECORD in files:
            found.append(Path(current))
            dirs[:] = []
        else:
            dirs[:] = [name for name in dirs if not name.startswith(".")]
    return [RunDir(p) for p in sorted(found, key=lambda p: natural_key(p.as_posix()))]


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key ordering embedded numbers numerically (``version_2`` before ``version_10``)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def git_commit() -> str | None:
    """The git commit of the package's checkout (``None`` for an installed package or without git)."""
    here = Path(__file__).resolve().parent
    if not (here.parent / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(here.parent), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or not re.fullmatch(r"[0-9a-f]{40}", commit):
        return None
    dirty = subprocess.run(
        ["git", "-C", str(here.parent), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
    )
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
