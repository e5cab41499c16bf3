"""Report figures (PNG): training curves, confusion matrices and Grad-CAM pairs per model x magnification."""

import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from breakhis_lit.data.naming import LABELS, SUBTYPE_LABELS
from breakhis_lit.reporting.runs import (
    GroupKey,
    Run,
    group_runs,
    magnification_order,
    model_order,
    split_label,
    task_order,
)
from breakhis_lit.rundir import DEFAULT_EVAL, GradCAMEntry

DPI = 100
STAGES: tuple[tuple[str, str, str], ...] = (("train", "train", "tab:blue"), ("val", "validation", "tab:orange"))
MAX_IMAGE_SIDE = 384

RowKey = tuple[str, str, str, str, str]
"""(task, model, split, group_by, evaluation): one row of panels; columns are magnifications."""


def row_key(key: GroupKey) -> RowKey:
    """The panel row of a group: its key without the magnification."""
    return (key[0], key[1], key[3], key[4], key[5])


def _layout(keys: Iterable[GroupKey]) -> tuple[list[RowKey], list[str]]:
    keys = list(keys)
    rows = sorted(
        {row_key(k) for k in keys},
        key=lambda r: (r[4] != "test", r[4], task_order(r[0]), model_order(r[1]), r[2], r[3]),
    )
    columns = sorted({k[2] for k in keys}, key=magnification_order)
    return rows, columns


def _row_labeller(rows: Sequence[RowKey]):
    several_tasks = len({r[0] for r in rows}) > 1
    several_splits = len({(r[2], r[3]) for r in rows}) > 1

    def label(row: RowKey) -> str:
        text = row[1]
        if several_tasks:
            text += f" [{row[0]}]"
        if several_splits:
            text += f" · {split_label(row[2], row[3])}"
        if row[4] != "test":
            text += f" · eval {row[4]}"
        return text

    return label


def mag_label(magnification: str) -> str:
    """``"40×"``; ``"all mag."`` for all magnifications."""
    return f"{magnification}×" if magnification[:1].isdigit() else f"{magnification} mag."


def plural(count: int, word: str) -> str:
    """``"1 run"``, ``"3 runs"``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def wrap_text(text: str, inches: float, fontsize: float) -> str:
    """``text`` with each line wrapped at spaces into even lines that fit ``inches`` at ``fontsize`` points.

    Matplotlib's own ``wrap=True`` wraps to the figure's edge, not to a panel, hence the estimate from the
    characters (DejaVu Sans averages about 0.55 em a character).
    """
    width = max(10, int(inches * 72 / (0.55 * fontsize)))
    return "\n".join(_even_lines(line, width) for line in text.split("\n"))


def _even_lines(line: str, width: int) -> str:
    count = len(textwrap.wrap(line, width, break_on_hyphens=False))
    if count < 2:
        return line
    for narrower in range(-(-len(line) // count), width):  # the narrowest width giving as few lines
        if len(lines := textwrap.wrap(line, narrower, break_on_hyphens=False)) == count:
            return "\n".join(lines)
    return textwrap.fill(line, width, break_on_hyphens=False)


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=DPI)
    return out


def history_series(run: Run, stage: str, metric: str) -> dict[float, float]:
    """One run's per-epoch values of ``<stage>/<metric>`` from its ``history.csv``, keyed by epoch (from 1)."""
    name = f"{stage}/{metric}"
    return {row["epoch"] + 1: row[name] for row in run.history if row.get(name) is not None}


def aggregate_series(series: Sequence[dict[float, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-epoch mean and sample std (0 with one run) over the runs that reached each epoch.

    Args:
        series: one ``{epoch: value}`` per run.

    Returns:
        (epochs, mean, std) arrays.
    """
    epochs = sorted({epoch for values in series for epoch in values})
    means, stds = [], []
    for epoch in epochs:
        values = [values[epoch] for values in series if epoch in values]
        means.append(float(np.mean(values)))
        stds.append(float(np.std(values, ddof=1)) if len(values) > 1 else 0.0)
    return np.asarray(epochs, dtype=float), np.asarray(means), np.asarray(stds)


def plot_curves(runs: Iterable[Run], metric: str, out: str | Path) -> Path | None:
    """Train and validation ``metric`` per epoch, mean ± std across runs, one panel per model x magnification.

    Args:
        runs: loaded runs (their ``history.csv``).
        metric: ``"loss"`` or ``"accuracy"`` (any metric logged as ``train/<metric>``, ``val/<metric>``).
        out: the PNG to write.

    Returns:
        ``out``, or None (nothing written) when no run logged the metric.

    Error bars of metrics bounded by [0, 1] (everything but losses) are cut at the bounds.
    """
    groups = group_runs(run for run in runs if run.eval_name == DEFAULT_EVAL)  # one history per fitted run
    data = {
        key: {stage: aggregate_series([history_series(run, stage, metric) for run in group]) for stage, _, _ in STAGES}
        for key, group in groups.items()
    }
    if not any(len(epochs) for stages in data.values() for epochs, _, _ in stages.values()):
        return None
    rows, columns = _layout(groups)
    label = _row_labeller(rows)
    width = 3.4 * len(columns) + 0.6
    figure = _new_figure(width, 2.6 * len(rows) + 0.6)
    axes = figure.subplots(len(rows), len(columns), squeeze=False, sharey=True)
    for ax in axes.flat:
        ax.set_visible(False)
    legend_drawn = False
    for key, stages in data.items():
        ax = axes[rows.index(row_key(key)), columns.index(key[2])]
        ax.set_visible(True)
        n_runs = len(groups[key])
        ax.set_title(wrap_text(f"{label(row_key(key))} · {mag_label(key[2])} (n={n_runs})", 3.4, 9), fontsize=9)
        drawn = False
        for stage, stage_label, color in STAGES:
            epochs, mean, std = stages[stage]
            if not len(epochs):
                continue
            drawn = True
            low, high = mean - std, mean + std
            if metric != "loss":
                low, high = np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)
            ax.errorbar(
                epochs,
                mean,
                yerr=np.stack([mean - low, high - mean]),
                color=color,
                label=stage_label,
                marker="o",
                markersize=2.5,
                linewidth=1.2,
                elinewidth=0.8,
                capsize=2,
                errorevery=max(1, len(epochs) // 15),
            )
        if not drawn:
            ax.text(0.5, 0.5, f"no {metric} in history.csv", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(metric, fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7, labelleft=True)
        ax.grid(alpha=0.3)
        if drawn and not legend_drawn:
            ax.legend(fontsize=7, loc="best")
            legend_drawn = True
    figure.suptitle(wrap_text(f"{metric.replace('_', ' ')} per epoch: mean ± std over runs", width, 11), fontsize=11)
    return _save(figure, out)


def summed_confusion(group: Sequence[Run]) -> tuple[np.ndarray | None, int]:
    """Sum the runs' test confusion matrices (runs whose shape differs from the first are skipped).

    Returns:
        (matrix or None, number of runs summed).
    """
    total, used = None, 0
    for run in group:
        matrix = run.confusion_matrix()
        if matrix is None or (total is not None and matrix.shape != total.shape):
            continue
        total = matrix.copy() if total is None else total + matrix
        used += 1
    return total, used


def plot_confusion(runs: Iterable[Run], out: str | Path) -> Path | None:
    """Test confusion matrices summed over each model x magnification group's runs.

    Cells show counts and row percentages (recall per true class); colour is the row fraction.

    Args:
        runs: loaded runs.
        out: the PNG to write.

    Returns:
        ``out``, or None (nothing written) when no run has a confusion matrix.
    """
    groups = group_runs(runs)
    matrices = {key: summed_confusion(group) for key, group in groups.items()}
    matrices = {key: value for key, value in matrices.items() if value[0] is not None}
    if not matrices:
        return None
    rows, columns = _layout(matrices)
    label = _row_labeller(rows)
    size = 3.0 if max(m.shape[0] for m, _ in matrices.values()) <= 3 else 3.8
    figure = _new_figure(size * len(columns) + 0.4, size * len(rows) + 0.6)
    axes = figure.subplots(len(rows), len(columns), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for key, (matrix, used) in matrices.items():
        ax = axes[rows.index(row_key(key)), columns.index(key[2])]
        ax.set_visible(True)
        classes = groups[key][0].classes or [str(i) for i in range(matrix.shape[0])]
        fractions = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
        small = matrix.shape[0] > 3
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(
                j,
                i,
                f"{count}" if small else f"{count}\n{fractions[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=6 if small else 8,
                color="white" if fractions[i, j] > 0.5 else "black",
            )
        ticks = range(len(classes))
        ax.set_xticks(ticks, classes, fontsize=7, rotation=45 if small else 0)
        ax.set_yticks(ticks, classes, fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        runs_text = plural(len(groups[key]), "run") if used == len(groups[key]) else f"{used}/{len(groups[key])} runs"
        ax.set_title(wrap_text(f"{label(row_key(key))} · {mag_label(key[2])}\n({runs_text})", size, 8), fontsize=8)
    figure.suptitle(wrap_text("test confusion matrices, summed over runs", size * len(columns) + 0.4, 11), fontsize=11)
    return _save(figure, out)


def gradcam_kind(entry: GradCAMEntry) -> str | None:
    """Whether a Grad-CAM overlay shows a benign or a malignant image (from its manifest's true class)."""
    if entry.label in LABELS:
        return entry.label
    return SUBTYPE_LABELS.get(entry.label)


def pick_gradcam(group: Sequence[Run], kind: str) -> tuple[Run, GradCAMEntry, Path] | None:
    """The first Grad-CAM overlay of a ``kind`` (benign/malignant) image among a group's runs, in manifest order."""
    for run in group:
        for entry, path in run.gradcam():
            if gradcam_kind(entry) == kind and path.is_file():
                return run, entry, path
    return None


def _load_image(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
        return np.asarray(image)


def plot_gradcam_pairs(runs: Iterable[Run], out: str | Path) -> Path | None:
    """One benign and one malignant test image with its Grad-CAM per model x magnification (the paper's Fig. 8).

    Each panel pair shows the image the model saw and the heat map of the predicted class over it, titled with
    the true class, the predicted class and its probability, with the heat map's colour bar. Images come from
    the evaluations' ``gradcam/manifest.csv``.

    Args:
        runs: loaded runs.
        out: the PNG to write.

    Returns:
        ``out``, or None (nothing written) when no run has a benign or malignant Grad-CAM overlay.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    groups = group_runs(runs)
    picks = {key: {kind: pick_gradcam(group, kind) for kind in LABELS} for key, group in groups.items()}
    picks = {key: kinds for key, kinds in picks.items() if any(kinds.values())}
    if not picks:
        return None
    rows, columns = _layout(picks)
    label = _row_labeller(rows)
    figure = _new_figure(2.2 * 4 * len(columns) + 1.2, 2.7 * len(rows) + 0.7)
    axes = figure.subplots(len(rows), 4 * len(columns), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for key, kinds in picks.items():
        for offset, kind in enumerate(LABELS):
            left = axes[rows.index(row_key(key)), 4 * columns.index(key[2]) + 2 * offset]
            right = axes[rows.index(row_key(key)), 4 * columns.index(key[2]) + 2 * offset + 1]
            pick = kinds[kind]
            where = wrap_text(f"{label(row_key(key))} · {mag_label(key[2])}", 2.2, 7)
            if pick is None:
                left.text(0.5, 0.5, f"no {kind}\nGrad-CAM", ha="center", va="center", fontsize=8,
                          transform=left.transAxes)  # fmt: skip
                left.set_title(f"{where}\n{kind}", fontsize=7)
                continue
            _, entry, path = pick
            image_path = path.parent / entry.input_file
            if image_path.is_file():
                left.imshow(_load_image(image_path))
                left.set_title(f"{where}\ntrue {entry.label}", fontsize=7)
            right.imshow(_load_image(path))
            right.set_title(f"Grad-CAM of {entry.prediction}\n(p = {entry.probability:.2f})", fontsize=7)
    figure.colorbar(
        ScalarMappable(Normalize(0, 1), colormaps["jet"]), ax=axes, shrink=0.6, label="Grad-CAM (normalised)"
    )
    title = "Grad-CAM: a benign and a malignant test image per model and magnification"
    figure.suptitle(wrap_text(title, 2.2 * 4 * len(columns), 11), fontsize=11)
    return _save(figure, out)
