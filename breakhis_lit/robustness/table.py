"""Markdown tables of stain-shift robustness: every run side by side, and each experiment's mean over its runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from breakhis_lit.robustness.figure import METRIC_TITLES, experiments
from breakhis_lit.robustness.stain_shift import StainShiftRecord


def _cell(estimate: float | None, low: float | None, high: float | None) -> str:
    if estimate is None:
        return "–"
    if low is None or high is None:
        return f"{estimate:.3f}"
    return f"{estimate:.3f} [{low:.2f}, {high:.2f}]"


def runs_table(records: Sequence[StainShiftRecord], metric: str) -> str:
    """One row per run, one column per level: the metric with its patient-bootstrap 95% interval."""
    levels = [s.level for s in records[0].scores] if records else []
    lines = [
        "| run | stain handling | " + " | ".join(f"k = {v:g}" for v in levels) + " |",
        "| --- | --- |" + " --- |" * len(levels),
    ]
    for r in records:
        cells = {s.level: _cell(s.value(metric), s.value(metric, "low"), s.value(metric, "high")) for s in r.scores}
        lines.append(f"| {r.label} | {handling(r)} | " + " | ".join(cells.get(v, "–") for v in levels) + " |")
    return "\n".join(lines) + "\n"


def handling(record: StainShiftRecord) -> str:
    """The run's stain handling in words: ``HED 0.05/0.02``, ``macenko``, both, or ``none``."""
    parts = []
    if record.hed_scale or record.hed_bias:
        parts.append(f"HED {record.hed_scale:g}/{record.hed_bias:g}")
    if record.stain_norm != "none":
        parts.append(record.stain_norm)
    return " + ".join(parts) or "none"


def experiments_table(records: Sequence[StainShiftRecord], metric: str) -> str:
    """One row per experiment, one column per level: mean ± std of the metric over the experiment's runs."""
    levels = [s.level for s in records[0].scores] if records else []
    lines = [
        "| experiment | runs | " + " | ".join(f"k = {v:g}" for v in levels) + " |",
        "| --- | --- |" + " --- |" * len(levels),
    ]
    for name in experiments(records):
        runs = [r for r in records if r.experiment == name]
        cells = []
        for level in levels:
            values = [s.value(metric) for r in runs for s in r.scores if s.level == level]
            values = np.array([v for v in values if v is not None], dtype=float)
            if values.size == 0:
                cells.append("–")
            elif values.size == 1:
                cells.append(f"{values[0]:.3f}")
            else:
                cells.append(f"{values.mean():.3f} ± {values.std(ddof=1):.3f}")
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def level_table(
    records: Sequence[StainShiftRecord],
    level: float = 0.0,
    metrics: Sequence[str] = ("accuracy", "balanced_accuracy", "auroc", "patient_accuracy"),
) -> str:
    """Several metrics at one level: each experiment's mean ± std over its runs, and every run with its intervals.

    Level 0 is the test split as ``breakhis test`` scores it.
    """
    head = " | ".join(METRIC_TITLES.get(m, m.replace("_", " ")) for m in metrics)
    lines = [f"| experiment / run | stain handling | {head} |", "| --- | --- |" + " --- |" * len(metrics)]
    for name in experiments(records):
        runs = [r for r in records if r.experiment == name]
        at = [next((s for s in r.scores if s.level == level), None) for r in runs]
        cells = []
        for metric in metrics:
            values = np.array([s.value(metric) for s in at if s is not None and s.value(metric) is not None], float)
            std = f" ± {values.std(ddof=1):.3f}" if values.size > 1 else ""
            cells.append(f"**{values.mean():.3f}{std}**" if values.size else "–")
        lines.append(f"| **{name}** (n={len(runs)}) | {handling(runs[0])} | " + " | ".join(cells) + " |")
        for r, score in zip(runs, at, strict=True):
            if score is None:
                continue
            values = [_cell(score.value(m), score.value(m, "low"), score.value(m, "high")) for m in metrics]
            lines.append(f"| {r.label} (seed {r.data_seed}) | | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def stain_shift_markdown(records: Sequence[StainShiftRecord], metrics: Sequence[str] = ("accuracy", "auroc")) -> str:
    """The whole report: per metric, the experiments' means and every run with its intervals."""
    if not records:
        return "# Stain-shift robustness\n\nNo runs.\n"
    first = records[0]
    parts = [
        "# Stain-shift robustness\n\n",
        f"Each run's {Path(first.checkpoint).stem} checkpoint on its own test split, every image shifted by HED "
        f"jitter at k × (scale 0.05, shift 0.02 in OD), draws seeded with {first.seed} and the same at every k; "
        "images are then normalised as the run normalises them. Intervals: patient bootstrap (split groups resampled, "
        f"{first.n_resamples} replicates, 95% percentile). Mean absolute pixel change (grey levels) of "
        f"{first.label}'s test images: "
        + ", ".join(f"k = {s.level:g}: {s.mean_abs_change:.1f}" for s in first.scores)
        + ".\n",
    ]
    parts += ["\n## The test split (k = 0): mean ± std over runs, and each run with its 95% interval\n\n"]
    parts += [level_table(records)]
    for metric in metrics:
        title = METRIC_TITLES.get(metric, metric)
        parts += [
            f"\n## {title}: mean ± std over runs\n\n",
            experiments_table(records, metric),
            f"\n## {title} per run (95% patient-bootstrap interval)\n\n",
            runs_table(records, metric),
        ]
    return "".join(parts)
