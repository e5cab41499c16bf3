"""Paired comparisons of models on the same test patients: pairing runs, Holm over a report, comparisons.md/.csv."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from breakhis_lit.errors import BreakHisError
from breakhis_lit.evaluation.paired_runs import PairedResult, compare_pairs, shared_images
from breakhis_lit.reporting.options import ALPHA, DEFAULT_METRICS, DEFAULT_REFERENCE, BootstrapOptions
from breakhis_lit.reporting.runs import Run, magnification_order, model_order, split_label, task_order
from breakhis_lit.reporting.tables import SPLIT_HASH_CHARS, to_markdown, write_csv
from breakhis_lit.rundir import DEFAULT_EVAL
from breakhis_lit.stats.holm import holm

SAME_SPLIT = "same split"
SHARED_IMAGES = "shared images"

METRIC_NAMES: dict[str, str] = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "patient_accuracy": "patient accuracy",
    "auroc": "AUROC",
    "f1_macro": "macro F1",
}


@dataclass(frozen=True)
class Comparison:
    """Model a against model b at one magnification, on the same test images.

    Attributes:
        task: The task.
        magnification: The magnification (``"40"`` ... or ``"all"``).
        name_a: What a is (a model, or a model and its split).
        name_b: What b is.
        runs_a: a's run directories, in pair order.
        runs_b: b's, paired with them.
        pairing: ``same split`` (same split hash) or ``shared images`` (different splits, on the images both hold).
        result: The :class:`~breakhis_lit.evaluation.paired_runs.PairedResult` of ``a - b``.
        own: ``{"a"/"b": {metric: interval dict}}``: each side's intervals on its own whole test split, as its
            ``test`` recorded them (one run per side only; else empty).
    """

    task: str
    magnification: str
    name_a: str
    name_b: str
    runs_a: tuple[str, ...]
    runs_b: tuple[str, ...]
    pairing: str
    result: PairedResult
    own: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


def tested(runs: Sequence[Run]) -> list[Run]:
    """The runs' own ``test`` evaluations (cross-evaluations left out)."""
    return [run for run in runs if run.evaluation is not None and run.eval_name == DEFAULT_EVAL]


def _short(run: Run) -> str:
    return run.split_hash[:SPLIT_HASH_CHARS]


def pair_by_split(runs_a: Sequence[Run], runs_b: Sequence[Run]) -> list[tuple[Run, Run]]:
    """Pair runs of two models scored on the same test split (equal split hashes), in path order within a split.

    Raises:
        BreakHisError: Naming a run of one side and one of the other with their split hashes when a split is tested
            by one side only, or by a different number of runs on each side.
    """
    pairs: list[tuple[Run, Run]] = []
    hashes = sorted({run.split_hash for run in (*runs_a, *runs_b)})
    for split in hashes:
        a = [run for run in runs_a if run.split_hash == split]
        b = [run for run in runs_b if run.split_hash == split]
        if not a or not b:
            alone, other = (a[0], runs_b[0]) if a else (b[0], runs_a[0])
            raise BreakHisError(
                f"{alone.path} (test split {_short(alone)}) and {other.path} (test split {_short(other)}) were scored "
                "on different test patients; compare runs of the same split (same data seed and split options), or "
                "pass --shared-images to pair them on the test images both hold"
            )
        if len(a) != len(b):
            raise BreakHisError(
                f"{a[0].path} and {b[0].path}: {len(a)} and {len(b)} runs on test split {split[:SPLIT_HASH_CHARS]}; "
                "pair one run of each model per split (delete or move the extra runs)"
            )
        pairs += list(zip(a, b, strict=True))
    return pairs


def pair_by_seed(runs_a: Sequence[Run], runs_b: Sequence[Run]) -> list[tuple[Run, Run]]:
    """Pair runs of two different splits by their data seed (for comparisons on shared images).

    Raises:
        BreakHisError: Naming a run without a partner of the same seed.
    """
    pairs = []
    for run in runs_a:
        partners = [other for other in runs_b if other.seed == run.seed]
        if len(partners) != 1:
            raise BreakHisError(
                f"{run.path} (seed {run.seed}): {len(partners)} runs of seed {run.seed} on the other side; pair one "
                "run of each side per seed"
            )
        pairs.append((run, partners[0]))
    if len(pairs) != len(runs_b):
        extra = next(run for run in runs_b if run.seed not in {a.seed for a in runs_a})
        raise BreakHisError(f"{extra.path} (seed {extra.seed}): no run of that seed on the other side to pair with")
    return pairs


def _check_same_task(runs_a: Sequence[Run], runs_b: Sequence[Run]) -> None:
    for a in runs_a:
        for b in runs_b:
            if a.classes != b.classes:
                raise BreakHisError(
                    f"{a.path} ({a.task}: {', '.join(a.classes)}) and {b.path} ({b.task}: {', '.join(b.classes)}) "
                    "are different tasks; compare runs of one task"
                )


def compare(
    name_a: str,
    runs_a: Sequence[Run],
    name_b: str,
    runs_b: Sequence[Run],
    *,
    shared: bool = False,
    metrics: Sequence[str] = DEFAULT_METRICS,
    options: BootstrapOptions = BootstrapOptions(),
) -> Comparison:
    """Compare the runs of a with those of b, all of one task and magnification.

    Args:
        name_a: What a is.
        runs_a: a's tested runs.
        name_b: What b is.
        runs_b: b's tested runs.
        shared: Pair runs of different splits by seed, on the test images both hold; else pair by split hash.
        metrics: Metrics of the paired bootstrap.
        options: Bootstrap options.

    Raises:
        BreakHisError: When the runs cannot be paired (see :func:`pair_by_split`), differ in task, lack
            predictions, or a class has fewer than two test patients.
    """
    _check_same_task(runs_a, runs_b)
    pairs = pair_by_seed(runs_a, runs_b) if shared else pair_by_split(runs_a, runs_b)
    predictions = []
    for a, b in pairs:
        pa, pb = a.stats_predictions(), b.stats_predictions()
        predictions.append(shared_images(pa, pb) if shared else (pa, pb))
    result = compare_pairs(
        predictions,
        metrics=list(metrics),
        method=options.method,
        n_resamples=options.n_resamples,
        seed=options.seed,
        level=options.level,
    )
    return Comparison(
        task=runs_a[0].task,
        magnification=runs_a[0].magnification,
        name_a=name_a,
        name_b=name_b,
        runs_a=tuple(str(a.path) for a, _ in pairs),
        runs_b=tuple(str(b.path) for _, b in pairs),
        pairing=SHARED_IMAGES if shared else SAME_SPLIT,
        result=result,
        own={} if len(pairs) != 1 else {"a": _own(pairs[0][0]), "b": _own(pairs[0][1])},
    )


def _own(run: Run) -> dict[str, dict[str, Any]]:
    """A run's recorded intervals on its own test split, with the number of groups they resampled."""
    evaluation = run.evaluation
    return {} if evaluation is None else {name: dict(i) for name, i in evaluation.intervals.items()}


def _by(runs: Sequence[Run], key: Callable[[Run], Any]) -> dict[Any, list[Run]]:
    found: dict[Any, list[Run]] = {}
    for run in runs:
        found.setdefault(key(run), []).append(run)
    return found


def compare_sides(
    runs_a: Sequence[Run],
    runs_b: Sequence[Run],
    *,
    shared: bool = False,
    metrics: Sequence[str] = DEFAULT_METRICS,
    options: BootstrapOptions = BootstrapOptions(),
) -> list[Comparison]:
    """``breakhis compare``: every magnification of side a against the same magnification of side b.

    Raises:
        BreakHisError: When a side has no tested run, a magnification of one side is missing on the other, or see
            :func:`compare`.
    """
    for side, runs in (("RUNS_A", runs_a), ("RUNS_B", runs_b)):
        if not runs:
            raise BreakHisError(f"{side}: no tested run (no test/metrics.json); run `breakhis test` for these runs")
    _check_same_task(runs_a[:1], runs_b[:1])
    a_by, b_by = (_by(runs, lambda r: (r.task, r.magnification)) for runs in (runs_a, runs_b))
    for key, runs in (*a_by.items(), *b_by.items()):
        if key not in a_by or key not in b_by:
            other = runs_b[0] if key in a_by else runs_a[0]
            raise BreakHisError(
                f"{runs[0].path} ({key[0]}, {key[1]}x) has no run of that task and magnification on the other side "
                f"(e.g. {other.path}: {other.task}, {other.magnification}x); pass runs of the same magnifications"
            )
    comparisons = []
    for key in sorted(a_by, key=lambda k: (task_order(k[0]), magnification_order(k[1]))):
        name_a, name_b = _side_names(a_by[key], b_by[key])
        found = compare(name_a, a_by[key], name_b, b_by[key], shared=shared, metrics=metrics, options=options)
        comparisons.append(found)
    return comparisons


def _side_name(runs: Sequence[Run]) -> str:
    models = sorted({run.model for run in runs}, key=model_order)
    splits = sorted({split_label(run.split, run.group_by) for run in runs})
    return f"{' + '.join(models)} · {' + '.join(splits)}" if len(splits) == 1 else " + ".join(models)


def _side_names(runs_a: Sequence[Run], runs_b: Sequence[Run]) -> tuple[str, str]:
    """Each side's model and split; equal ones followed by where the side lies (``demo/version_0``)."""
    name_a, name_b = _side_name(runs_a), _side_name(runs_b)
    where = [Path(os.path.commonpath([run.path.resolve() for run in runs])) for runs in (runs_a, runs_b)]
    if name_a != name_b or where[0] == where[1]:
        return name_a, name_b
    base = Path(os.path.commonpath(where)).parent
    return f"{name_a} · {where[0].relative_to(base)}", f"{name_b} · {where[1].relative_to(base)}"


def report_comparisons(
    runs: Sequence[Run],
    reference: str = DEFAULT_REFERENCE,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    options: BootstrapOptions = BootstrapOptions(),
    note: Callable[[str], None] = lambda message: None,
) -> tuple[list[Comparison], list[Comparison]]:
    """The comparisons of a report: every model against the reference, and image splits against patient splits.

    Model comparisons pair runs of one split strategy by split hash at each magnification. Split comparisons take
    the runs of one model scored with the ``image`` split and with a patient-aware split, and pair them by seed on
    the test images both test sets hold. A comparison that cannot be made is said through ``note`` (one line naming
    the runs) and left out; the rest of the report goes on.

    Returns:
        ``(model comparisons, split comparisons)``.
    """
    runs = tested(runs)
    models: list[Comparison] = []
    groups = _by(runs, lambda r: (r.task, r.magnification, r.split, r.group_by))
    have_reference = any(run.model == reference for run in runs)
    if len({run.model for run in runs}) > 1 and not have_reference:
        note(f"no run of the reference model {reference} among the tested runs; no model comparisons (--reference)")
    for key in sorted(groups, key=lambda k: (task_order(k[0]), magnification_order(k[1]), k[2], k[3])):
        by_model = _by(groups[key], lambda r: r.model)
        if reference not in by_model:
            if have_reference and len(by_model) > 1:
                note(f"{key[0]} {key[1]}x {split_label(key[2], key[3])}: no {reference} run to compare with")
            continue
        for model in sorted(by_model, key=model_order):
            if model == reference:
                continue
            try:
                models.append(
                    compare(reference, by_model[reference], model, by_model[model], metrics=metrics, options=options)
                )
            except BreakHisError as err:
                note(f"{model} vs {reference} at {key[1]}x not compared: {err}")
    splits: list[Comparison] = []
    by_model_mag = _by(runs, lambda r: (r.task, r.model, r.magnification))
    for key in sorted(by_model_mag, key=lambda k: (task_order(k[0]), magnification_order(k[2]), model_order(k[1]))):
        by_split = _by(by_model_mag[key], lambda r: (r.split, r.group_by))
        image = [runs for (split, _), runs in by_split.items() if split == "image"]
        for (split, group_by), other in sorted(by_split.items()):
            if split == "image" or not image:
                continue
            name_a, name_b = f"{key[1]} · image split", f"{key[1]} · {split_label(split, group_by)} split"
            try:
                splits.append(compare(name_a, image[0], name_b, other, shared=True, metrics=metrics, options=options))
            except BreakHisError as err:
                note(f"{name_a} vs {name_b} at {key[2]}x not compared: {err}")
    return models, splits


# ------------------------------------------------------------------------------------------------------ tables
def comparison_rows(comparisons: Sequence[Comparison], alpha: float = ALPHA) -> list[dict[str, Any]]:
    """One row per comparison and metric, with Holm's adjustment over all of them (one family).

    The family is every row given (all comparisons of a report, or of one ``breakhis compare``): the adjusted
    p-values control the probability of any false "significant" among them at ``alpha``.
    """
    rows: list[dict[str, Any]] = []
    for comparison in comparisons:
        result = comparison.result
        for metric, found in result.differences.items():
            difference = found.difference
            delong = result.delong if metric == "auroc" else None
            rows.append(
                {
                    "task": comparison.task,
                    "magnification": comparison.magnification,
                    "a": comparison.name_a,
                    "b": comparison.name_b,
                    "pairing": comparison.pairing,
                    "metric": metric,
                    "estimate_a": found.estimate_a,
                    "estimate_b": found.estimate_b,
                    "difference": difference.estimate,
                    "low": difference.low,
                    "high": difference.high,
                    "method": difference.method,
                    "level": difference.level,
                    "p_value": found.p_value,
                    "p_adjusted": None,
                    "significant": None,
                    "mcnemar_patient_p": result.mcnemar_patient.p_value,
                    "patients_only_a": result.mcnemar_patient.only_a,
                    "patients_only_b": result.mcnemar_patient.only_b,
                    "mcnemar_image_p": result.mcnemar_image.p_value,
                    "images_only_a": result.mcnemar_image.only_a,
                    "images_only_b": result.mcnemar_image.only_b,
                    "delong_difference": None if delong is None else delong.difference,
                    "delong_p": None if delong is None else delong.p_value,
                    "n_pairs": result.n_pairs,
                    "n_groups": result.n_groups,
                    "n_images": result.n_images,
                    "runs_a": " ".join(comparison.runs_a),
                    "runs_b": " ".join(comparison.runs_b),
                    **{
                        f"own_{side}_{field_name}": comparison.own.get(side, {}).get(metric, {}).get(field_name)
                        for side in ("a", "b")
                        for field_name in ("estimate", "low", "high", "n_groups")
                    },
                }
            )
    if rows:
        adjusted = holm([row["p_value"] for row in rows], alpha=alpha)
        for row, p, reject in zip(rows, adjusted.adjusted, adjusted.reject, strict=True):
            row["p_adjusted"], row["significant"] = p, reject
    return rows


def _signed(value: float | None) -> str:
    return "" if value is None else f"{value:+.3f}"


def _p(value: float | None) -> str:
    return "" if value is None else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def difference_text(row: dict[str, Any]) -> str:
    """``+0.031 [+0.012, +0.050]``: a row's difference with its interval."""
    if row["difference"] is None:
        return "undefined"
    if row["low"] is None:
        return _signed(row["difference"])
    return f"{_signed(row['difference'])} [{_signed(row['low'])}, {_signed(row['high'])}]"


def _mag(magnification: str) -> str:
    return f"{magnification}×" if magnification[:1].isdigit() else "all magnifications"


def _verdict(row: dict[str, Any]) -> str:
    if row["significant"] is None:
        return "undefined"
    if not row["significant"]:
        return "no"
    return "yes, a better" if row["difference"] > 0 else "yes, b better"


def _mcnemar(row: dict[str, Any], key: str, unit: str) -> str:
    return f"{_p(row[key])} ({row[f'{unit}_only_a']}/{row[f'{unit}_only_b']})"


def cell_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of :func:`comparison_rows` as the Markdown table's text cells (columns: :data:`TABLE_COLUMNS`)."""
    out = []
    for row in rows:
        out.append(
            {
                "mag": _mag(row["magnification"]),
                "comparison": f"{row['a']} − {row['b']}",
                "metric": METRIC_NAMES.get(row["metric"], row["metric"]),
                "a": "" if row["estimate_a"] is None else f"{row['estimate_a']:.3f}",
                "b": "" if row["estimate_b"] is None else f"{row['estimate_b']:.3f}",
                "delta": difference_text(row),
                "p": _p(row["p_value"]),
                "p_adj": _p(row["p_adjusted"]),
                "significant": _verdict(row),
                "mcnemar_patients": _mcnemar(row, "mcnemar_patient_p", "patients"),
                "mcnemar_images": _mcnemar(row, "mcnemar_image_p", "images"),
                "delong": _p(row["delong_p"]),
                "pairs": str(row["n_pairs"]),
                "groups": str(row["n_groups"]),
                "images": str(row["n_images"]),
            }
        )
    return out


TABLE_COLUMNS = [
    ("mag", "Mag."),
    ("comparison", "Δ = a − b"),
    ("metric", "Metric"),
    ("a", "a"),
    ("b", "b"),
    ("delta", "Δ [95% CI]"),
    ("p", "p"),
    ("p_adj", "adj. p (Holm)"),
    ("significant", "significant at 0.05"),
    ("mcnemar_patients", "McNemar p, patients (only a/only b right)"),
    ("mcnemar_images", "McNemar p, images"),
    ("delong", "DeLong p (AUROC)"),
    ("pairs", "run pairs"),
    ("groups", "patients (groups)"),
    ("images", "images"),
]


def _listing(rows: Sequence[dict[str, Any]], limit: int = 6) -> str:
    items = [f"{row['b']} at {_mag(row['magnification'])} (Δ {difference_text(row)}, adj. p {_p(row['p_adjusted'])})"
             for row in rows[:limit]]  # fmt: skip
    return "; ".join(items) + (f"; and {len(rows) - limit} more" if len(rows) > limit else "")


def headline(rows: Sequence[dict[str, Any]], name_a: str, question_b: str = "each baseline") -> str:
    """The first sentences of a comparison file: whether a beats b (each baseline) after Holm, metric by metric."""
    question = f"**Does {name_a} beat {question_b} here?**"
    if not rows:
        return f"{question} Not answered: no comparison could be made (see the notes)."
    better = [row for row in rows if row["significant"] and row["difference"] > 0]
    verdict = "Yes" if len(better) == len(rows) else "No" if not better else "Only partly"
    metrics = dict.fromkeys(row["metric"] for row in rows)
    clauses = [_metric_clause([row for row in rows if row["metric"] == metric]) for metric in metrics]
    return " ".join([f"{question} {verdict}, after Holm's correction.", *clauses, _single_run_note(rows)]).strip()


def _metric_clause(rows: Sequence[dict[str, Any]]) -> str:
    """``On accuracy: significantly better in 2 of the 3 comparisons, against ...``: one metric's rows."""
    label, n = METRIC_NAMES.get(rows[0]["metric"], rows[0]["metric"]), len(rows)
    better = [row for row in rows if row["significant"] and row["difference"] > 0]
    worse = [row for row in rows if row["significant"] and row["difference"] < 0]
    neither = [row for row in rows if not row["significant"]]
    if len(better) == n:
        return f"On {label}: significantly better in {'the one comparison' if n == 1 else f'all {n} comparisons'}."
    head = f"significantly better in {len(better) or 'none'} of the {n} comparisons"
    parts = [head + (f", against {_listing(better)}" if better else "")] if n > 1 else []
    parts += [f"no significant difference from {_listing(neither)}"] if neither else []
    parts += [f"significantly worse than {_listing(worse)}"] if worse else []
    return f"On {label}: " + "; ".join(parts) + "."


def _single_run_note(rows: Sequence[dict[str, Any]]) -> str:
    """The sentence saying what intervals of single runs leave out (empty when every side has several seeds)."""
    single = sum(row["n_pairs"] == 1 for row in rows)
    if not single:
        return ""
    which = "Each side is" if single == len(rows) else f"In {single} of the {len(rows)} rows each side is"
    return (
        f"{which} a single run (one training seed), so the intervals cover the sampling of test patients only, "
        "not training-seed variation; run several seeds with `breakhis sweep` to include it."
    )


COMPARISONS_CAPTION = (
    "Δ = a − b on the same test patients: the same split (equal split hash) for model comparisons, the test images "
    "both splits hold for split comparisons. Intervals and p-values come from a paired patient bootstrap (the split "
    "groups resampled with all their images, both models scored on the same replicates; {method}, {n} resamples; p "
    "two-sided, by inverting the bootstrap distribution of Δ). *adj. p* is Holm's adjustment over all {k} "
    "comparisons of this file (every row is one test), and *significant at 0.05* means adj. p < 0.05. McNemar "
    "(exact) compares the correct decisions on patients (mean probability per patient) and on images (images "
    "treated as independent, so too liberal); DeLong compares the AUROCs (images treated as independent). With "
    "several seeds per model the runs are paired by split hash (seed) and Δ is the mean over the pairs; a replicate "
    "draws patients from the union of the pairs' test sets and every pair is scored on the drawn patients it "
    "tested; McNemar sums the pairs' tables and DeLong averages their differences as independent."
)


def comparisons_markdown(
    models: Sequence[dict[str, Any]],
    splits: Sequence[dict[str, Any]],
    reference: str,
    options: BootstrapOptions,
    notes: Sequence[str] = (),
) -> str:
    """The Markdown of ``comparisons.md``: the headline, the model comparisons, the split comparisons."""
    parts = ["# Paired comparisons\n"]
    if models or not splits:
        parts.append(headline(models, reference) + "\n")
    if splits:
        parts.append(split_headline(splits) + "\n")
    parts.append(
        COMPARISONS_CAPTION.format(
            method=options.method_label,
            n=options.n_resamples,
            k=len(models) + len(splits),
        )
        + "\n"
    )
    if models:
        parts.append(f"## Every model against {reference}\n\n" + to_markdown(cell_rows(models), TABLE_COLUMNS))
    if splits:
        parts.append(
            "## Image split against patient split (the leak)\n\n" + SPLITS_CAPTION + "\n\n"
            + to_markdown(cell_rows(splits), TABLE_COLUMNS)
        )  # fmt: skip
    if notes:
        parts.append("## Not compared\n\n" + "".join(f"- {message}\n" for message in notes))
    return "\n".join(parts)


SPLITS_CAPTION = (
    "The same model trained with the paper's random `image` split and with a patient-disjoint split, each tested on "
    "its own test split, compared on the test images both test sets hold (paired by seed). Those images' patients "
    "are unseen by the patient-split model; the image-split model trained on other images of the very same "
    "patients. A positive Δ is what the leak is worth."
)


def split_headline(rows: Sequence[dict[str, Any]]) -> str:
    """Whether the image split flatters a model (first metric, first comparison), with the single-run note."""
    row = rows[0]
    label = METRIC_NAMES.get(row["metric"], row["metric"])
    verdict = "yes" if row["significant"] and row["difference"] > 0 else "not significantly here"
    text = (
        f"**Does the image split flatter the model?** {verdict.capitalize()}: on the {row['n_images']} test images "
        f"both splits hold ({row['n_groups']} patients: unseen by the patient-split model, while the image-split "
        f"model trained on other images of them), {label} is {row['estimate_a']:.3f} for the image-split model and "
        f"{row['estimate_b']:.3f} for the patient-split one (Δ {difference_text(row)}, adj. p "
        f"{_p(row['p_adjusted'])}, {_mag(row['magnification'])})."
    )
    if all(row.get(f"own_{side}_low") is not None for side in ("a", "b")):
        width_a = row["own_a_high"] - row["own_a_low"]
        width_b = row["own_b_high"] - row["own_b_low"]
        text += (
            f" Each on its own test split, the image split scores {_own_text(row, 'a')} and the patient split "
            f"{_own_text(row, 'b')}"
        )
        if width_a < width_b:
            text += (
                f": the image split's interval is {width_b / max(width_a, 1e-12):.1f} times narrower only because its "
                "test set spreads over every patient it trained on; it says nothing about unseen patients."
            )
        else:
            text += "."
    return f"{text} {_single_run_note([row])}".strip()


def _own_text(row: dict[str, Any], side: str) -> str:
    return (
        f"{row[f'own_{side}_estimate']:.3f} [{row[f'own_{side}_low']:.3f}, {row[f'own_{side}_high']:.3f}] "
        f"({row[f'own_{side}_n_groups']} patients)"
    )


@dataclass(frozen=True)
class WrittenComparisons:
    """What :func:`write_comparisons` wrote.

    Attributes:
        files: ``comparisons.md`` and ``comparisons.csv`` (those of the formats asked for).
        headlines: The answers a reader sees first (the model question, then the split question).
        markdown: The text of ``comparisons.md`` (empty when nothing was compared or refused).
        rows: The table rows (Holm-adjusted over all of them).
    """

    files: list[Path]
    headlines: list[str]
    markdown: str
    rows: list[dict[str, Any]]


def write_comparisons(
    runs: Sequence[Run],
    out_dir: Path,
    formats: Sequence[str],
    reference: str,
    metrics: Sequence[str],
    options: BootstrapOptions,
    note: Callable[[str], None],
) -> WrittenComparisons:
    """The comparisons section of a report: :func:`report_comparisons`, Holm over all, ``comparisons.{md,csv}``."""
    refused: list[str] = []
    models, splits = report_comparisons(runs, reference, metrics=metrics, options=options, note=refused.append)
    for message in refused:
        note(message)
    rows = comparison_rows([*models, *splits])
    model_rows = [row for row in rows if row["pairing"] != SHARED_IMAGES]
    split_rows = [row for row in rows if row["pairing"] == SHARED_IMAGES]
    if not rows and not refused:
        return WrittenComparisons([], [], "", [])
    markdown = comparisons_markdown(model_rows, split_rows, reference, options, refused)
    files = []
    if "md" in formats:
        files.append(out_dir / "comparisons.md")
        files[-1].write_text(markdown)
    if "csv" in formats and rows:
        files.append(write_csv(rows, out_dir / "comparisons.csv"))
    headlines = [headline(model_rows, reference)] if model_rows or not split_rows else []
    if split_rows:
        headlines.append(split_headline(split_rows))
    return WrittenComparisons(files, headlines, markdown, rows)
