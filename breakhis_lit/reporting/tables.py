"""Tables 5 (classification) and 6 (cost) over runs, beside the paper's numbers; Markdown and CSV."""

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from breakhis_lit.data.naming import LABELS, parse_magnification
from breakhis_lit.errors import BreakHisError
from breakhis_lit.reporting.options import BootstrapOptions
from breakhis_lit.reporting.runs import Run, group_runs, split_label

BINARY_METRICS: tuple[str, ...] = (
    "accuracy",
    "f1_benign",
    "f1_malignant",
    "iba",
    "gmean",
    "auroc",
    "patient_accuracy",
)
"""Table 5 metrics for the paper's benign/malignant task."""
MULTICLASS_METRICS: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "iba",
    "gmean",
    "auroc",
    "patient_accuracy",
)
"""Table 5 metrics for other tasks (subtypes): per-class F1 would not fit a row."""
PAPER5_METRICS: tuple[str, ...] = ("accuracy", "f1_benign", "f1_malignant", "iba", "gmean")
TABLE6_NUMBERS: tuple[str, ...] = ("fit_time_s", "time_to_best_s", "best_epoch", "epochs")

METRIC_HEADERS: dict[str, str] = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Bal. acc.",
    "f1_benign": "F1 benign",
    "f1_malignant": "F1 malignant",
    "f1_macro": "F1 macro",
    "iba": "IBA",
    "gmean": "GMean",
    "auroc": "AUROC",
    "patient_accuracy": "Patient acc.",
}

TABLE5_CAPTION = (
    "Test metrics per model and magnification: mean ± sample std (ddof=1) over the n runs "
    "(seeds or folds) of each row; *Split* is ours; *Test split* is the hash of the split the runs were scored on "
    '("3 splits" when the row averages runs over different test patients, e.g. split seeds). '
    "The *paper* columns are Liu & Achutha's Table 5, "
    "measured on a random 6:1:3 **image-level** split where images of one patient land in train and test, "
    "so they are optimistic and not directly comparable with patient-disjoint rows. "
    "Patient acc. is the accuracy of per-patient decisions (mean class probability over a patient's test images)."
)
INTERVALS_CAPTION = (
    " [low, high] is the row's {level:.0%} interval ({method}, {n} resamples of patients, i.e. of split groups with "
    "all their images); *CI over* says what it resamples. Runs on one test split (seeds): the groups are drawn once "
    "per replicate for all runs and the mean over the runs is taken, so it covers patient sampling and training "
    "noise. k folds with disjoint test sets: the folds' predictions pooled into one test set (the interval is that "
    "of the pooled metric, not of the mean). Runs on different test splits that share patients (split seeds): a "
    "replicate draws groups from the union of the test sets, each run is scored on the drawn groups it tested (a "
    "shared patient is drawn for all its runs) and the mean over runs is taken: patient sampling and run-to-run "
    "variation, split seeds included, but the few split seeds are not themselves resampled."
)
TABLE6_CAPTION = (
    "Cost per model and magnification: parameters of the networks actually built, wall-clock fit time and "
    "time until the best epoch (mean ± sample std over n runs), on our hardware and epoch budget. The paper's "
    'columns are its Table 6 ("convergence time" on an RTX A4000, 50 epochs, and its parameter counts, '
    "some of which describe other networks, e.g. its ResNet50 21,797,672 is torchvision's ResNet34): "
    "compare orders of magnitude, not values."
)

TABLE5_CAPTION_OTHER_TASK = (
    "Test metrics per model and magnification: mean ± sample std (ddof=1) over the n runs (seeds or folds) of "
    'each row; *Split* is ours; *Test split* is the hash of the split the runs were scored on ("3 splits" when '
    "they differ). The paper reports the benign/malignant task only, so there is nothing to compare "
    "with here. Patient acc. is the accuracy of per-patient decisions (mean class probability over a patient's "
    "test images)."
)


def table5_caption(task: str, intervals: BootstrapOptions | None = None) -> str:
    """The Markdown caption of Table 5 for a task (the paper's columns exist for ``binary`` only)."""
    caption = TABLE5_CAPTION if task == "binary" else TABLE5_CAPTION_OTHER_TASK
    if intervals is None:
        return caption
    return caption + INTERVALS_CAPTION.format(
        level=intervals.level, method=intervals.method_label, n=intervals.n_resamples
    )


Column = str | tuple[str, str]
"""A table column: a row key, or (row key, header). Keys with ``<key>_mean``/``<key>_std`` render as mean ± std."""


RESOURCES = Path(__file__).resolve().parents[1] / "resources"
"""The package's data folder (paper_table5.csv, paper_table6.csv)."""


def _read_csv(path: str | Path, required: Sequence[str]) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise BreakHisError(f"{path}: no such file; pass the paper table CSV shipped in breakhis_lit/resources")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in required if name not in (reader.fieldnames or [])]
        if missing:
            raise BreakHisError(f"{path}: missing column(s) {', '.join(missing)}; use the layout of {path.name}")
        return list(reader)


def _float(text: str | None) -> float | None:
    try:
        number = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def load_paper_table5(path: str | Path | None = None) -> dict[tuple[str, str], dict[str, float | None]]:
    """Read the paper's Table 5.

    Args:
        path: a CSV with columns model, magnification and any of accuracy, f1_benign, f1_malignant,
            iba, gmean; None reads the copy shipped with the package.

    Returns:
        ``{(paper model name, magnification): {metric: value}}``.
    """
    path = path or RESOURCES / "paper_table5.csv"
    table = {}
    for row in _read_csv(path, ("model", "magnification")):
        try:
            magnification = str(parse_magnification(row["magnification"]) or "all")
        except BreakHisError as err:
            raise BreakHisError(f"{path}: {err}") from None
        table[row["model"], magnification] = {m: _float(row.get(m)) for m in PAPER5_METRICS}
    return table


def load_paper_table6(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Read the paper's Table 6.

    Args:
        path: a CSV with columns model, convergence_s_<magnification>..., total_parameters, average_s;
            None reads the copy shipped with the package.

    Returns:
        ``{paper model name: {column: value}}``.
    """
    rows = _read_csv(path or RESOURCES / "paper_table6.csv", ("model",))
    return {row["model"]: {name: _float(value) for name, value in row.items() if name != "model"} for row in rows}


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None, int]:
    """Mean and sample standard deviation (ddof=1) of the values that are numbers.

    Args:
        values: numbers; None entries are ignored.

    Returns:
        (mean, std, count); mean is None without values, std is None with fewer than two.
    """
    numbers = [float(v) for v in values if v is not None]
    if not numbers:
        return None, None, 0
    std = float(np.std(numbers, ddof=1)) if len(numbers) > 1 else None
    return float(np.mean(numbers)), std, len(numbers)


def _join(values: Iterable[Any]) -> str:
    unique = sorted({v for v in values if v is not None}, key=lambda v: (str(type(v)), v))
    return ",".join(str(v) for v in unique)


SPLIT_HASH_CHARS = 8
"""Characters of a split hash shown in tables."""


def test_splits_label(runs: Sequence[Run]) -> str:
    """The test split(s) a row's runs were scored on: the short split hash, or ``"<k> splits"`` when they differ."""
    hashes = sorted({run.split_hash for run in runs})
    return hashes[0][:SPLIT_HASH_CHARS] if len(hashes) == 1 else f"{len(hashes)} splits"


def row_identity(key: tuple[str, ...], runs: list[Run]) -> dict[str, Any]:
    """The identity keys of a table row for a group of runs (task, model, magnification, split, n, seeds...)."""
    task, model, magnification, split, group_by, eval_name = key
    return {
        "task": task,
        "model": model,
        "paper_model": runs[0].paper_model or "",
        "magnification": magnification,
        "split": split,
        "group_by": group_by,
        "split_label": split_label(split, group_by) + ("" if eval_name == "test" else f" · eval {eval_name}"),
        "evaluation": eval_name,
        "test_splits": test_splits_label(runs),
        "n": len(runs),
        "seeds": _join(run.seed for run in runs),
        "folds": _join(run.fold for run in runs),
        "experiments": _join(run.experiment for run in runs),
    }


def table5_metrics(classes: Sequence[str]) -> tuple[str, ...]:
    """The Table 5 metrics for a task with these classes."""
    return BINARY_METRICS if tuple(classes) == LABELS else MULTICLASS_METRICS


def _interval_label(design: str, n_splits: int, n_groups: int) -> str:
    if design == "seeds":
        return f"{n_groups} patients"
    if design == "folds":
        return f"{n_splits} folds pooled, {n_groups} patients"
    return f"{n_splits} splits, union of {n_groups} patients"


def _add_intervals(
    row: dict[str, Any], group: Sequence[Run], metrics: Sequence[str], options: BootstrapOptions
) -> None:
    """The row's intervals over its runs (:func:`~breakhis_lit.evaluation.row_intervals.row_intervals`)."""
    from breakhis_lit.evaluation.row_intervals import row_intervals

    row["interval_design"], row["interval_over"] = None, None
    try:
        found = row_intervals(
            [run.stats_predictions() for run in group],
            [run.split_hash for run in group],
            metrics=list(metrics),
            method=options.method,
            n_resamples=options.n_resamples,
            seed=options.seed,
            level=options.level,
        )
    except BreakHisError as err:
        row["interval_over"] = f"none: {err}"
        return
    row["interval_design"] = found.design
    row["interval_over"] = _interval_label(found.design, len({run.split_hash for run in group}), found.n_groups)
    for metric in metrics:
        interval = found.intervals[metric]
        row[f"{metric}_low"], row[f"{metric}_high"] = interval.low, interval.high


def table5(
    runs: Iterable[Run], paper_table: str | Path | None = None, intervals: BootstrapOptions | None = None
) -> list[dict[str, Any]]:
    """Table 5: test metrics per (task, model, magnification, split), mean ± std over seeds/folds.

    Runs without an evaluation are left out (see :func:`untested_runs`); cross-evaluations are rows of their own.

    Args:
        runs: loaded runs.
        paper_table: the paper's Table 5 CSV; None uses the shipped copy.
        intervals: when given, each row's patient-bootstrap interval of every metric over its runs (see
            :data:`INTERVALS_CAPTION`), from the runs' ``predictions.csv``.

    Returns:
        One dict per group: identity keys (task, model, paper_model, magnification, split, group_by,
        split_label, evaluation, test_splits, n, seeds, folds, experiments), ``<metric>_mean``/``<metric>_std``
        for each Table 5 metric, and ``paper_<metric>`` (None when the paper has no such row or the task is not binary);
        with ``intervals``, ``<metric>_low``/``<metric>_high``, ``interval_design`` and ``interval_over``.
    """
    paper = load_paper_table5(paper_table)
    rows = []
    for key, group in group_runs(run for run in runs if run.test).items():
        row = row_identity(key, group)
        metrics = table5_metrics(group[0].classes)
        for metric in metrics:
            mean, std, _ = mean_std(run.test_number(metric) for run in group)
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean, std
        if intervals is not None:
            _add_intervals(row, group, metrics, intervals)
        paper_row = paper.get((row["paper_model"], row["magnification"]), {}) if row["task"] == "binary" else {}
        for metric in PAPER5_METRICS:
            row[f"paper_{metric}"] = paper_row.get(metric)
        rows.append(row)
    return rows


def _unique_count(values: Iterable[float | None]) -> int | str | None:
    numbers = sorted({int(v) for v in values if v is not None})
    if not numbers:
        return None
    return numbers[0] if len(numbers) == 1 else f"{numbers[0]}-{numbers[-1]}"


def table6(runs: Iterable[Run], paper_table: str | Path | None = None) -> list[dict[str, Any]]:
    """Table 6: parameters and times per (task, model, magnification, split).

    Args:
        runs: loaded runs.
        paper_table: the paper's Table 6 CSV; None uses the shipped copy.

    Returns:
        One dict per group: identity keys as in :func:`table5`, ``params_total`` and
        ``params_trainable`` (an int, or ``"min-max"`` when runs differ), ``<x>_mean``/``<x>_std`` for
        fit_time_s, time_to_best_s, best_epoch and epochs, and ``paper_convergence_s`` (at this
        magnification), ``paper_total_parameters``, ``paper_average_s``.
    """
    paper = load_paper_table6(paper_table)
    rows = []
    for key, group in group_runs(run for run in runs if run.eval_name == "test" or run.evaluation is None).items():
        row = row_identity(key, group)
        row["params_total"] = _unique_count(run.number("params_total") for run in group)
        row["params_trainable"] = _unique_count(run.number("params_trainable") for run in group)
        for name in TABLE6_NUMBERS:
            mean, std, _ = mean_std(run.number(name) for run in group)
            row[f"{name}_mean"], row[f"{name}_std"] = mean, std
        paper_row = paper.get(row["paper_model"], {})
        row["paper_convergence_s"] = paper_row.get(f"convergence_s_{row['magnification']}")
        row["paper_total_parameters"] = paper_row.get("total_parameters")
        row["paper_average_s"] = paper_row.get("average_s")
        rows.append(row)
    return rows


def untested_runs(runs: Iterable[Run]) -> list[Run]:
    """Fitted runs without an evaluation (left out of Table 5)."""
    return [run for run in runs if not run.test]


def table5_columns(rows: Sequence[dict[str, Any]]) -> list[Column]:
    """Markdown columns for Table 5 rows: ours beside the paper's for each metric the paper reports."""
    order = ("accuracy", "balanced_accuracy", "f1_benign", "f1_malignant", "f1_macro", "iba", "gmean", "auroc")
    known = [*order, "patient_accuracy"]
    metrics = [m for m in known if any(f"{m}_mean" in row for row in rows)]
    tasks = {row["task"] for row in rows}
    columns: list[Column] = [("model", "Model"), ("paper_model", "Paper model")]
    if len(tasks) > 1:
        columns.append(("task", "Task"))
    columns += [("magnification", "Mag."), ("split_label", "Split"), ("test_splits", "Test split"), ("n", "n")]
    if any(row.get("interval_over") for row in rows):
        columns.append(("interval_over", "CI over"))
    for metric in metrics:
        columns.append((metric, METRIC_HEADERS.get(metric, metric)))
        if metric in PAPER5_METRICS and any(row.get(f"paper_{metric}") is not None for row in rows):
            columns.append((f"paper_{metric}", "paper"))
    return columns


def table6_columns(rows: Sequence[dict[str, Any]]) -> list[Column]:
    """Markdown columns for Table 6 rows."""
    columns: list[Column] = [("model", "Model"), ("paper_model", "Paper model")]
    if len({row["task"] for row in rows}) > 1:
        columns.append(("task", "Task"))
    return [
        *columns,
        ("magnification", "Mag."),
        ("split_label", "Split"),
        ("n", "n"),
        ("params_total", "Params"),
        ("params_trainable", "Trainable"),
        ("paper_total_parameters", "paper params"),
        ("fit_time_s", "Fit time (s)"),
        ("time_to_best_s", "To best epoch (s)"),
        ("paper_convergence_s", "paper convergence (s)"),
        ("best_epoch", "Best epoch"),
        ("epochs", "Epochs"),
    ]


def _digits(key: str) -> int:
    base = key.removeprefix("paper_")
    return 1 if base.endswith("_s") or base in ("best_epoch", "epochs") else 3


def format_number(key: str, value: Any) -> str:
    """Format one cell: parameter counts with thousands separators, seconds to 0.1, metrics to 0.001."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if "param" in key:
        return f"{int(value):,}"
    if key == "n" or (key.removeprefix("paper_") in ("best_epoch", "epochs") and float(value).is_integer()):
        return str(int(value))
    if key.startswith("paper_") and _digits(key) == 3:
        text = f"{value:.4f}"  # the paper prints up to four decimals (0.8736); keep them, else three
        return text[:-1] if text.endswith("0") else text
    return f"{value:.{_digits(key)}f}"


def format_cell(row: dict[str, Any], key: str) -> str:
    """Render ``row[key]``, or ``row[key + "_mean"] ± row[key + "_std"]`` when the row has those."""
    if key in row:
        return format_number(key, row[key])
    mean, std = row.get(f"{key}_mean"), row.get(f"{key}_std")
    if mean is None:
        return ""
    text = format_number(key, mean)
    text = f"{text} ± {format_number(key, std)}" if std is not None else text
    low, high = row.get(f"{key}_low"), row.get(f"{key}_high")
    if low is not None and high is not None:
        text += f" [{format_number(key, low)}, {format_number(key, high)}]"
    return text


def _column(column: Column) -> tuple[str, str]:
    return (column, column) if isinstance(column, str) else column


def to_markdown(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    """Render rows as a GitHub Markdown table.

    Args:
        rows: table rows (dicts).
        columns: keys or (key, header) pairs; a key with ``<key>_mean``/``<key>_std`` in the rows
            renders as ``mean ± std``.

    Returns:
        The table, one line per row, ending with a newline.
    """
    pairs = [_column(column) for column in columns]

    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"

    lines = [line(header for _, header in pairs), line("---" for _ in pairs)]
    lines += [line(format_cell(row, key) for key, _ in pairs) for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write rows to CSV with every key as a column (first-seen order); None becomes an empty cell."""
    path = Path(path)
    fieldnames = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if row.get(key) is None else row[key] for key in fieldnames})
    return path
