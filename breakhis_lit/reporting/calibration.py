"""The calibration table (ECE, Brier, temperature, the validation threshold) and reliability diagrams of a report."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from breakhis_lit.errors import BreakHisError
from breakhis_lit.reporting.figures import mag_label
from breakhis_lit.reporting.reliability import plot_reliability
from breakhis_lit.reporting.runs import Run, group_runs, split_label
from breakhis_lit.reporting.tables import Column, mean_std, row_identity
from breakhis_lit.stats.calibration import ReliabilityBins, reliability_bins

CALIBRATION_METRICS: tuple[str, ...] = ("ece", "brier", "ece_calibrated", "brier_calibrated")
"""Calibration metrics of an evaluation (the last two after temperature scaling fitted on validation)."""
THRESHOLD_METRICS: tuple[str, ...] = ("balanced_accuracy", "accuracy", "recall", "specificity")
"""Metrics shown at 0.5 and at the threshold chosen on validation."""

CALIBRATION_CAPTION = (
    "Calibration and the decision threshold per model and magnification (mean ± sample std over the n runs; "
    "[low, high] is the run's patient-bootstrap interval when the row has one run). ECE: expected calibration error "
    "(torchmetrics, 15 equal-width bins; binary tasks bin the probability of malignant); Brier: mean squared error "
    "of the probabilities. *T-scaled*: after temperature scaling with the temperature fitted on the validation "
    "predictions of the checkpoint's epoch. *Val. threshold*: the probability of malignant above which an image is "
    "called malignant, chosen on those validation predictions to maximise balanced accuracy; the metrics are shown "
    "at 0.5 and at that threshold. *TTA*: test-time augmentation of the evaluation."
)


def _validation(run: Run, name: str) -> float | None:
    choice = run.evaluation.validation if run.evaluation is not None else None
    value = getattr(choice, name, None) if choice is not None else None
    return None if value is None else float(value)


def calibration_table(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One row per Table 5 group: calibration metrics, temperature, validation threshold, metrics at both thresholds.

    Args:
        runs: loaded runs (those without an evaluation are left out).

    Returns:
        Rows with the identity keys of Table 5, ``<metric>_mean``/``_std`` (and ``_low``/``_high`` for one run)
        for the calibration metrics, ``temperature``, ``threshold``, ``<metric>_at_05`` and ``<metric>_at_val``.
    """
    rows = []
    for key, group in group_runs(run for run in runs if run.test).items():
        row = row_identity(key, group)
        row["tta"] = ",".join(sorted({run.evaluation.tta for run in group}))
        for metric in CALIBRATION_METRICS:
            row[f"{metric}_mean"], row[f"{metric}_std"], _ = mean_std(run.test_number(metric) for run in group)
            interval = group[0].interval(metric) if len(group) == 1 else None
            if interval is not None:
                row[f"{metric}_low"], row[f"{metric}_high"] = interval
        for name in ("temperature", "threshold"):
            row[f"{name}_mean"], row[f"{name}_std"], _ = mean_std(_validation(run, name) for run in group)
        for metric in THRESHOLD_METRICS:
            at_val = [run.evaluation.metrics_at_val_threshold.get(metric) for run in group]
            row[f"{metric}_at_05_mean"], row[f"{metric}_at_05_std"], _ = mean_std(
                run.test_number(metric) for run in group
            )
            row[f"{metric}_at_val_mean"], row[f"{metric}_at_val_std"], _ = mean_std(at_val)
        rows.append(row)
    return rows


def calibration_columns(rows: Sequence[dict[str, Any]]) -> list[Column]:
    """Markdown columns of the calibration table."""
    columns: list[Column] = [("model", "Model")]
    if len({row["task"] for row in rows}) > 1:
        columns.append(("task", "Task"))
    columns += [("magnification", "Mag."), ("split_label", "Split"), ("n", "n"), ("tta", "TTA")]
    columns += [("ece", "ECE"), ("brier", "Brier"), ("ece_calibrated", "ECE T-scaled")]
    columns += [("brier_calibrated", "Brier T-scaled"), ("temperature", "Temperature"), ("threshold", "Val. threshold")]
    for metric, header in (("balanced_accuracy", "Bal. acc."), ("recall", "Sensitivity"), ("specificity", "Spec.")):
        columns += [(f"{metric}_at_05", f"{header} @0.5"), (f"{metric}_at_val", f"{header} @val")]
    return columns


def _label(key: tuple[str, ...], several_splits: bool) -> str:
    text = f"{key[1]} {mag_label(key[2])}"
    return f"{text} · {split_label(key[3], key[4])}" if several_splits else text


def reliability_curves(runs: Sequence[Run]) -> dict[str, dict[str, ReliabilityBins]]:
    """Per task, ``{row label: reliability bins}`` of each Table 5 group (its runs' test predictions pooled).

    Runs whose predictions cannot be read are left out.
    """
    groups = group_runs(run for run in runs if run.test and run.eval_name == "test")
    several_splits = len({(key[3], key[4]) for key in groups}) > 1
    curves: dict[str, dict[str, ReliabilityBins]] = {}
    for key, group in groups.items():
        try:
            predictions = [run.stats_predictions() for run in group]
        except BreakHisError:
            continue
        probs = np.concatenate([p.probs for p in predictions])
        labels = np.concatenate([p.labels for p in predictions])
        curves.setdefault(key[0], {})[_label(key, several_splits)] = reliability_bins(probs, labels)
    return curves


def plot_report_reliability(runs: Sequence[Run], out_dir: str | Path) -> list[Path]:
    """Write ``reliability.png`` (``reliability_<task>.png`` for tasks other than binary): one curve per group.

    Returns:
        The files written (none when no run has readable predictions).
    """
    written = []
    for task, curves in reliability_curves(runs).items():
        path = Path(out_dir) / ("reliability.png" if task == "binary" else f"reliability_{task}.png")
        classes = next((run.classes for run in runs if run.task == task and len(run.classes) == 2), ["", "class 1"])
        plot_reliability(curves, title=f"Reliability of the test predictions ({task})", out=path, positive=classes[1])
        written.append(path)
    return written
