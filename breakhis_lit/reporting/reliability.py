"""Reliability diagram (calibration curves with their ECE, the diagonal, per-bin counts) of one or more runs."""

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from breakhis_lit.errors import BreakHisError
from breakhis_lit.reporting.figures import wrap_text
from breakhis_lit.stats.calibration import ReliabilityBins

DPI = 100
_AXIS_LABELS = {
    "positive": ("predicted probability of {}", "observed frequency of {}"),
    "top": ("confidence (top-class probability)", "accuracy"),
}


def plot_reliability(
    runs: Mapping[str, ReliabilityBins],
    title: str | None = None,
    out: str | Path | None = None,
    positive: str = "class 1",
) -> Figure:
    """A reliability diagram: one curve per run (its ECE in the legend), the diagonal, and the bin counts below.

    Each curve joins the (mean confidence, observed frequency) points of the run's non-empty bins; the lower
    panel shows how many images fall into each bin (log scale), one outline per run in the curve's colour.

    Args:
        runs: ``{run name: reliability_bins(...)}``; all of one kind (binary or multiclass).
        title: Figure title.
        out: When given, the PNG to write as well.
        positive: Name of class 1, the class whose probability a binary diagram shows.

    Returns:
        The matplotlib ``Figure`` (Agg canvas).

    Raises:
        BreakHisError: With no runs, or runs of both kinds.
    """
    if not runs:
        raise BreakHisError("plot_reliability: no runs; pass {name: reliability_bins(probs, labels)}")
    kinds = {bins.kind for bins in runs.values()}
    if len(kinds) != 1:
        raise BreakHisError("plot_reliability: runs mix binary and multiclass tasks; plot each task separately")
    x_label, y_label = (label.format(positive) for label in _AXIS_LABELS[kinds.pop()])
    figure = Figure(figsize=(5.2, 6.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    curve_ax, count_ax = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    curve_ax.plot([0, 1], [0, 1], linestyle="--", color="0.5", linewidth=1, label="perfect calibration")
    for index, (name, bins) in enumerate(runs.items()):
        color = f"C{index % 10}"
        points = [(c, a) for c, a in zip(bins.confidence, bins.accuracy, strict=True) if c is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            label = wrap_text(f"{name} (ECE {bins.ece:.3f})", 4.0, 8)
            curve_ax.plot(xs, ys, marker="o", markersize=4, color=color, label=label)
        counts = np.asarray(bins.count, dtype=float)
        counts[counts == 0] = np.nan  # empty bins leave a gap instead of a drop to log(0)
        count_ax.stairs(counts, bins.edges, color=color, linewidth=1.5, baseline=None)
    curve_ax.set_xlim(0, 1)
    curve_ax.set_ylim(0, 1)
    curve_ax.set_ylabel(y_label)
    curve_ax.grid(alpha=0.3)
    curve_ax.legend(loc="upper left", fontsize=8)
    if title:
        curve_ax.set_title(wrap_text(title, 5.0, 12))
    count_ax.set_yscale("log")
    count_ax.set_ylim(bottom=0.8)
    count_ax.set_xlabel(x_label)
    count_ax.set_ylabel("images per bin")
    count_ax.grid(alpha=0.3)
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=DPI)
    return figure
