"""Figures of stain-shift robustness: scores against shift strength per run, and the shifted images themselves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from breakhis_lit.reporting.figures import wrap_text
from breakhis_lit.robustness.stain_shift import StainShiftRecord, shift_images
from breakhis_lit.stain.base import StainTarget
from breakhis_lit.stain.registry import normalize_to

METRIC_TITLES = {"accuracy": "accuracy", "auroc": "AUROC", "balanced_accuracy": "balanced accuracy"}
_MARKERS = "osD^v<>p*h"
_STYLES = ("-", "--", ":", "-.")


def experiments(records: Sequence[StainShiftRecord]) -> list[str]:
    """The experiments of the records, in order of first appearance."""
    return list(dict.fromkeys(r.experiment for r in records))


def stain_shift_figure(
    records: Sequence[StainShiftRecord], metrics: Sequence[str] = ("accuracy", "auroc"), panel_inches: float = 4.2
) -> Figure:
    """Each metric against the shift level: one curve per run with its patient-bootstrap 95% intervals.

    Runs of one experiment share a colour (and differ by marker and line style); the bottom row, drawn when an
    experiment has several runs, shows each experiment's mean over its runs with their standard deviation.

    Args:
        records: The runs' stain-shift records.
        metrics: The metrics, one column each.
        panel_inches: Width of one panel.

    Returns:
        A matplotlib figure (not attached to pyplot; save it with ``fig.savefig(path)``).
    """
    names = experiments(records)
    colours = {name: f"C{i % 10}" for i, name in enumerate(names)}
    several = any(sum(r.experiment == name for r in records) > 1 for name in names)
    rows = 2 if several else 1
    width = panel_inches * len(metrics)
    fig = Figure(figsize=(width, 3.4 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, len(metrics), squeeze=False)
    spread = 0.03 * max((s.level for r in records for s in r.scores), default=1.0)
    for col, metric in enumerate(metrics):
        ax = axes[0][col]
        for i, record in enumerate(records):
            k = [r.experiment for r in records[:i]].count(record.experiment)
            x = np.array([s.level for s in record.scores]) + (i - (len(records) - 1) / 2) * spread / max(
                1, len(records)
            )
            y = np.array([_nan(s.value(metric)) for s in record.scores])
            low = np.array([_nan(s.value(metric, "low")) for s in record.scores])
            high = np.array([_nan(s.value(metric, "high")) for s in record.scores])
            ax.errorbar(
                x, y, yerr=np.stack([y - low, high - y]), color=colours[record.experiment],
                marker=_MARKERS[k % len(_MARKERS)], linestyle=_STYLES[k % len(_STYLES)], markersize=4, capsize=2,
                linewidth=1.2, elinewidth=0.8, alpha=0.9, label=record.label,
            )  # fmt: skip
        title = f"{METRIC_TITLES.get(metric, metric)} per run, 95% patient-bootstrap intervals"
        ax.set_title(wrap_text(title, panel_inches, 9), fontsize=9)
        _axis(ax, records, metric)
        if several:
            ax = axes[1][col]
            for name in names:
                runs = [r for r in records if r.experiment == name]
                x = np.array([s.level for s in runs[0].scores])
                values = np.array([[_nan(s.value(metric)) for s in r.scores] for r in runs if len(r.scores) == len(x)])
                mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0, ddof=1 if len(values) > 1 else 0)
                ax.plot(x, mean, color=colours[name], marker="o", markersize=4, label=f"{name} (n={len(values)})")
                ax.fill_between(x, mean - std, mean + std, color=colours[name], alpha=0.15, linewidth=0)
            title = f"{METRIC_TITLES.get(metric, metric)} per experiment, mean ± std over runs"
            ax.set_title(wrap_text(title, panel_inches, 9), fontsize=9)
            _axis(ax, records, metric)
    handles, labels = axes[0][-1].get_legend_handles_labels()
    axes[0][-1].legend(handles, labels, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7, title="run",
                       title_fontsize=8)  # fmt: skip
    if several:
        handles, labels = axes[1][-1].get_legend_handles_labels()
        axes[1][-1].legend(handles, labels, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7,
                           title="experiment", title_fontsize=8)  # fmt: skip
    title = (
        "Stain-shift robustness, each run on its own test split\n"
        "every image HED-jittered at k × the training augmentation (scale 0.05, shift 0.02 in OD)"
    )
    fig.suptitle(wrap_text(title, width, 9), fontsize=9)
    return fig


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _axis(ax, records: Sequence[StainShiftRecord], metric: str) -> None:
    first = {s.level: s.mean_abs_change for s in records[0].scores} if records else {}
    levels = sorted({s.level for r in records for s in r.scores})
    ax.set_xticks(levels)
    ax.set_xticklabels([f"{v:g}\n{first[v]:.0f}" if v in first else f"{v:g}" for v in levels], fontsize=8)
    ax.set_xlabel("shift strength k (mean absolute pixel change, grey levels)", fontsize=8)
    ax.set_ylabel(METRIC_TITLES.get(metric, metric))
    ax.axhline(0.5, color="0.6", linewidth=0.7, linestyle=":")  # chance for a balanced binary task
    ax.grid(alpha=0.3)


def shift_examples_figure(
    images: Tensor,
    levels: Sequence[float],
    targets: Mapping[str, StainTarget] | None = None,
    *,
    seed: int = 0,
    labels: Sequence[str] | None = None,
    panel_inches: float = 1.5,
) -> Figure:
    """Test images at every shift level: as shifted, and as each stain target's normaliser then gives them.

    Args:
        images: uint8 ``[N, 3, H, W]`` images (a few).
        levels: Shift levels, one column each.
        targets: Stain targets by name (e.g. a Macenko run's); one more row per image and target.
        seed: Seed of the shifts (as :func:`~breakhis_lit.robustness.stain_shift.shift_images`).
        labels: One label per image.
        panel_inches: Side of one panel.

    Returns:
        A matplotlib figure.
    """
    targets = dict(targets or {})
    shifted = [shift_images(images, level, seed) for level in levels]
    rows: list[tuple[str, list[Tensor]]] = []
    for i in range(images.shape[0]):
        name = labels[i] if labels is not None else f"image {i}"
        rows.append((f"{name}\nshifted", [s[i : i + 1] for s in shifted]))
        for method, target in targets.items():
            rows.append((f"{name}\nshifted, {method}", [normalize_to(s[i : i + 1], target) for s in shifted]))
    width = panel_inches * len(levels) + 1.2
    fig = Figure(figsize=(width, panel_inches * len(rows) + 0.5), layout="constrained")
    axes = fig.subplots(len(rows), len(levels), squeeze=False)
    for r, (title, panels) in enumerate(rows):
        for c, panel in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(panel[0].permute(1, 2, 0).cpu().numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"k = {levels[c]:g}", fontsize=9)
            if c == 0:
                ax.set_ylabel(wrap_text(title, panel_inches, 7), fontsize=7)
    title = "Stain shifts of the robustness test (same draw at every k)"
    fig.suptitle(wrap_text(title + (", and what normalisation makes of them" if targets else ""), width, 9), fontsize=9)
    return fig
