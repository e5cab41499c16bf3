"""Write a whole report (tables, figures, report.md) for a set of runs into one folder."""

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from breakhis_lit.errors import BreakHisError
from breakhis_lit.reporting.calibration import (
    CALIBRATION_CAPTION,
    calibration_columns,
    calibration_table,
    plot_report_reliability,
)
from breakhis_lit.reporting.comparisons import write_comparisons
from breakhis_lit.reporting.figures import plot_confusion, plot_curves, plot_gradcam_pairs
from breakhis_lit.reporting.options import DEFAULT_METRICS, DEFAULT_REFERENCE, FORMATS, BootstrapOptions
from breakhis_lit.reporting.runs import Run, group_runs, split_label, task_order
from breakhis_lit.reporting.tables import (
    SPLIT_HASH_CHARS,
    TABLE6_CAPTION,
    table5,
    table5_caption,
    table5_columns,
    table6,
    table6_columns,
    to_markdown,
    untested_runs,
    write_csv,
)

OWNED_PATTERNS = (
    "table5*.md",
    "table5*.csv",
    "table6*.md",
    "table6*.csv",
    "curves_*.png",
    "confusion.png",
    "gradcam_pairs.png",
    "calibration*.md",
    "calibration*.csv",
    "reliability*.png",
    "comparisons.md",
    "comparisons.csv",
    "report.md",
)
"""Files in the output folder that a report writes (and may overwrite); nothing else there is touched."""
LEAKAGE_ACCURACY = 0.97
"""Patient-disjoint image accuracy above this is a red flag for leakage (see the paper README)."""


def table_name(table: str, task: str, extension: str) -> str:
    """File name of a table: ``table5.md`` for the paper's binary task, ``table5_<task>.md`` otherwise."""
    suffix = "" if task == "binary" else f"_{task}"
    return f"{table}{suffix}.{extension}"


def _by_task(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    tasks: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        tasks.setdefault(row["task"], []).append(row)
    return {task: tasks[task] for task in sorted(tasks, key=task_order)}


def _table_markdown(title: str, caption: str, rows: Sequence[dict[str, Any]], columns: Sequence[Any]) -> str:
    return f"## {title}\n\n{caption}\n\n{to_markdown(rows, columns)}"


def base_experiment(name: str) -> str:
    """An experiment name without its seed, fold and magnification parts (``attn-40x-seed1`` -> ``attn``)."""
    name = re.sub(r"[-_.]?(seed|fold)[-_]?\d+", "", name, flags=re.IGNORECASE)
    return re.sub(r"[-_.](\d+|all)x(?![A-Za-z0-9])", "", name, flags=re.IGNORECASE) or name


def _notes(runs: Sequence[Run], rows5: Sequence[dict[str, Any]]) -> list[str]:
    notes = []
    untested = untested_runs(runs)
    if untested:
        names = ", ".join(str(run.path) for run in untested)
        notes.append(f"{len(untested)} run(s) without test metrics left out of Table 5: {names}")
    for key, group in group_runs(runs).items():
        bases = sorted({base_experiment(run.experiment) for run in group})
        if len(bases) > 1:
            notes.append(
                f"{key[1]} {key[2]}x: runs of experiments {', '.join(bases)} are averaged together; "
                "report them separately if their settings differ"
            )
        seen: dict[tuple[Any, Any], Run] = {}
        for run in group:
            ident = (run.seed, run.fold)
            if ident in seen:
                notes.append(
                    f"{key[1]} {key[2]}x: {seen[ident].path} and {run.path} share seed {run.seed} fold {run.fold}; "
                    "both are averaged (delete one if it is a rerun)"
                )
            else:
                seen[ident] = run
        hashes = {run.split_hash for run in group}
        if len(hashes) > 1 and len(group) > 1:
            notes.append(
                f"{key[1]} {key[2]}x: its {len(group)} runs were scored on {len(hashes)} different test splits "
                "(different patients); the row's mean ± std mixes patient sampling with training noise"
            )
    for row in rows5:
        accuracy = row.get("accuracy_mean")
        if row["split"] != "image" and accuracy is not None and accuracy > LEAKAGE_ACCURACY:
            notes.append(
                f"{row['model']} {row['magnification']}x: mean accuracy {accuracy:.3f} on a "
                f"{split_label(row['split'], row['group_by'])} split is above {LEAKAGE_ACCURACY}, a red flag for "
                "patient leakage; check splits.csv"
            )
    unmapped = sorted({run.model for run in runs if run.paper_model is None})
    if unmapped:
        notes.append(f"no paper counterpart for: {', '.join(unmapped)} (paper columns left empty)")
    return notes


def _runs_table(runs: Sequence[Run]) -> str:
    rows = [
        {
            "run": str(run.path),
            "evaluation": run.eval_name if run.evaluation is not None else "(not tested)",
            "test_split": run.split_hash[:SPLIT_HASH_CHARS],
            "model": run.model,
            "task": run.task,
            "magnification": run.magnification,
            "split_label": split_label(run.split, run.group_by),
            "seed": "" if run.seed is None else str(run.seed),
            "fold": "" if run.fold is None else str(run.fold),
            "accuracy": run.test_number("accuracy"),
            "patient_accuracy": run.test_number("patient_accuracy"),
            "fit_time_s": run.number("fit_time_s"),
        }
        for run in runs
    ]
    columns = [
        ("run", "Run"),
        ("evaluation", "Evaluation"),
        ("test_split", "Test split"),
        ("model", "Model"),
        ("task", "Task"),
        ("magnification", "Mag."),
        ("split_label", "Split"),
        ("seed", "Seed"),
        ("fold", "Fold"),
        ("accuracy", "Accuracy"),
        ("patient_accuracy", "Patient acc."),
        ("fit_time_s", "Fit time (s)"),
    ]
    return to_markdown(rows, columns)


def write_report(
    runs: Sequence[Run],
    out_dir: str | Path,
    *,
    formats: Iterable[str] = FORMATS,
    paper_table5: str | Path | None = None,
    paper_table6: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    reference: str = DEFAULT_REFERENCE,
    metrics: Sequence[str] = DEFAULT_METRICS,
    bootstrap: BootstrapOptions | None = BootstrapOptions(),
) -> list[Path]:
    """Write tables, figures and ``report.md`` for ``runs`` into ``out_dir``.

    Writes ``table5[_<task>].{md,csv}``, ``table6[_<task>].{md,csv}`` (one pair per task; the
    paper's binary task has no suffix), ``calibration[_<task>].{md,csv}``, ``comparisons.{md,csv}`` (every model
    against ``reference`` and image splits against patient splits, paired on the same test patients, Holm over all),
    ``curves_loss.png``, ``curves_accuracy.png``, ``confusion.png``, ``gradcam_pairs.png``,
    ``reliability[_<task>].png`` and ``report.md``, which opens with the answer to "does the reference beat each
    baseline here?". Only these files are (over)written; anything else in ``out_dir`` is left alone. A figure with
    nothing to draw is skipped with a note.

    Args:
        runs: loaded runs (:func:`breakhis_lit.reporting.load_runs`).
        out_dir: the output folder (created).
        formats: table formats, any of ``"md"`` and ``"csv"``; ``report.md`` is always written.
        paper_table5: the paper's Table 5 CSV; None uses the shipped copy.
        paper_table6: the paper's Table 6 CSV; None uses the shipped copy.
        log: called with each note (skipped figures, left-out runs, red flags) as it arises.
        reference: the model every other model is compared with.
        metrics: the metrics of the paired comparisons (each one test of the Holm family).
        bootstrap: options of the row intervals and the comparisons; None leaves both out (no predictions read).

    Returns:
        The files written, in order.

    Raises:
        BreakHisError: without runs, with an unknown format, or when ``out_dir`` is a file.
    """
    runs = list(runs)
    if not runs:
        raise BreakHisError("no runs to report; pass run directories made by breakhis fit")
    formats = list(dict.fromkeys(formats))
    unknown = [name for name in formats if name not in FORMATS]
    if unknown:
        raise BreakHisError(f"--format: unknown {', '.join(unknown)}; use md, csv or md,csv")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BreakHisError(f"{out}: exists and is not a directory; pass a folder for the report")
    out.mkdir(parents=True, exist_ok=True)
    before = {path for pattern in OWNED_PATTERNS for path in out.glob(pattern)}
    written: list[Path] = []
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        if log is not None:
            log(message)

    def write_text(name: str, text: str) -> Path:
        path = out / name
        path.write_text(text)
        written.append(path)
        return path

    rows5, rows6 = table5(runs, paper_table5, bootstrap), table6(runs, paper_table6)
    for message in _notes(runs, rows5):
        note(message)
    for row in rows5:
        if str(row.get("interval_over") or "").startswith("none: "):
            note(f"{row['model']} {row['magnification']}x: no interval ({row['interval_over'][6:]})")

    top: list[str] = []
    sections: list[str] = []
    if bootstrap is not None:
        found = write_comparisons(runs, out, formats, reference, metrics, bootstrap, note)
        written += found.files
        top += found.headlines
        if found.markdown:
            body = found.markdown.split("\n", 1)[1].lstrip("\n").replace("\n## ", "\n### ")
            links = " · ".join(f"[{p.suffix[1:].upper()}]({p.name})" for p in found.files)
            sections.append(f"## Paired comparisons\n\n{body}" + (f"\n{links}\n" if links else ""))

    def caption5(task: str) -> str:
        return table5_caption(task, bootstrap)

    for number, rows, caption_of, columns_of in (
        ("5", rows5, caption5, table5_columns),
        ("6", rows6, lambda task: TABLE6_CAPTION, table6_columns),
        ("calibration", calibration_table(runs), lambda task: CALIBRATION_CAPTION, calibration_columns),
    ):
        stem = "calibration" if number == "calibration" else f"table{number}"
        if not rows and number != "calibration":
            note(f"Table {number} is empty (no run has test metrics); {stem} files not written")
        for task, task_rows in _by_task(rows).items():
            kind = {"5": "Table 5: classification", "6": "Table 6: cost", "calibration": "Calibration"}[number]
            title = f"{kind} ({task})"
            markdown = _table_markdown(title, caption_of(task), task_rows, columns_of(task_rows))
            links = []
            if "md" in formats:
                links.append(f"[Markdown]({write_text(table_name(stem, task, 'md'), markdown).name})")
            if "csv" in formats:
                path = write_csv(task_rows, out / table_name(stem, task, "csv"))
                written.append(path)
                links.append(f"[CSV]({path.name})")
            sections.append(markdown + ("\n" + " · ".join(links) + "\n" if links else ""))

    figures = [
        ("Training curves: loss (the paper's Fig. 6)", "curves_loss.png", lambda p: plot_curves(runs, "loss", p)),
        ("Training curves: accuracy (Fig. 7)", "curves_accuracy.png", lambda p: plot_curves(runs, "accuracy", p)),
        ("Confusion matrices (test, summed over runs)", "confusion.png", lambda p: plot_confusion(runs, p)),
        (
            "Grad-CAM: benign and malignant examples (Fig. 8)",
            "gradcam_pairs.png",
            lambda p: plot_gradcam_pairs(runs, p),
        ),
    ]
    reasons = {
        "curves_loss.png": "no run has train/loss or val/loss in history.csv",
        "curves_accuracy.png": "no run has train/accuracy or val/accuracy in history.csv",
        "confusion.png": "no run has a confusion matrix in its metrics.json",
        "gradcam_pairs.png": "no run has a benign or malignant Grad-CAM overlay in gradcam/manifest.csv",
    }
    for title, name, draw in figures:
        path = draw(out / name)
        if path is None:
            note(f"skipped {name}: {reasons[name]}")
            sections.append(f"## {title}\n\nSkipped: {reasons[name]}.\n")
        else:
            written.append(path)
            sections.append(f"## {title}\n\n![{title}]({name})\n")
    if bootstrap is not None:
        for path in plot_report_reliability(runs, out):
            written.append(path)
            task = "" if path.stem == "reliability" else f" ({path.stem.removeprefix('reliability_')})"
            title = f"Reliability of the test predictions{task}"
            sections.append(f"## {title}\n\n![{title}]({path.name})\n")

    stale = sorted(before - set(written) - {out / "report.md"})
    if stale:
        note(f"left from an earlier report and not rewritten: {', '.join(str(p) for p in stale)}")

    tasks = sorted({run.task for run in runs}, key=task_order)
    split_names = sorted({split_label(run.split, run.group_by) for run in runs})
    header = (
        "# BreakHis report\n\n"
        + "".join(f"{sentence}\n\n" for sentence in top)
        + f"{len(runs)} evaluated run(s) in {len(group_runs(runs))} model × magnification group(s); "
        f"task(s): {', '.join(tasks)}; split(s): {', '.join(split_names)}.\n"
    )
    notes_md = "## Notes\n\n" + ("".join(f"- {message}\n" for message in notes) if notes else "None.\n")
    body = "\n".join([header, *sections, notes_md, "## Runs\n\n" + _runs_table(runs)])
    write_text("report.md", body)
    return written
