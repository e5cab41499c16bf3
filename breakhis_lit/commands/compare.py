"""``breakhis compare``: two models (or splits) on the same test patients, with paired intervals and p-values."""

import argparse
import sys
from pathlib import Path

from breakhis_lit.errors import BreakHisError
from breakhis_lit.reporting.comparisons import (
    COMPARISONS_CAPTION,
    SHARED_IMAGES,
    SPLITS_CAPTION,
    TABLE_COLUMNS,
    cell_rows,
    compare_sides,
    comparison_rows,
    headline,
    tested,
)
from breakhis_lit.reporting.options import add_bootstrap_arguments, bootstrap_options, check_metrics
from breakhis_lit.reporting.runs import load_runs
from breakhis_lit.reporting.tables import to_markdown, write_csv


def build_parser() -> argparse.ArgumentParser:
    """The ``breakhis compare`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="breakhis compare",
        description=(
            "Compare the test evaluations of two sets of runs on the same test patients: per magnification, the "
            "difference a - b of each metric with a paired patient-bootstrap interval and p-value, Holm's adjustment "
            "over all comparisons, exact McNemar on patient and image decisions, and DeLong for AUROC. Runs are "
            "paired by split hash (one pair per seed); runs on different test patients are refused unless "
            "--shared-images pairs them on the test images both hold."
        ),
    )
    parser.add_argument("runs_a", metavar="RUNS_A", help="model a: a run directory (version_N) or a folder above runs")
    parser.add_argument("runs_b", metavar="RUNS_B", help="model b: a run directory or a folder above runs")
    parser.add_argument(
        "--metric",
        action="append",
        default=None,
        metavar="NAME",
        help="metric to compare (repeat for several; default accuracy), e.g. --metric accuracy --metric auroc",
    )
    parser.add_argument("--out", default=None, metavar="DIR", help="also write comparisons.md and comparisons.csv here")
    parser.add_argument(
        "--shared-images",
        action="store_true",
        help="pair runs of different splits by seed, on the test images both test sets hold (e.g. image vs patient)",
    )
    add_bootstrap_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap replicates")
    parser.add_argument("--alpha", type=float, default=0.05, help="family-wise error rate of Holm's correction")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``breakhis compare``.

    Args:
        argv: arguments after ``compare``; None reads ``sys.argv``.

    Returns:
        0 on success.

    Raises:
        BreakHisError: For runs that cannot be compared (different test patients, tasks or magnifications, no
            predictions, a class with fewer than two test patients) or bad options, in one line.
    """
    args = build_parser().parse_args(argv)
    options = bootstrap_options(args)
    if not 0 < args.alpha < 1:
        raise BreakHisError(f"--alpha {args.alpha}: must be in (0, 1), e.g. 0.05")
    runs_a, runs_b = tested(load_runs(args.runs_a)), tested(load_runs(args.runs_b))
    metrics = args.metric or ["accuracy"]
    if runs_a:
        check_metrics(metrics, runs_a[0].classes)
    comparisons = compare_sides(runs_a, runs_b, shared=args.shared_images, metrics=metrics, options=options)
    rows = comparison_rows(comparisons, alpha=args.alpha)
    name_a, name_b = comparisons[0].name_a, comparisons[0].name_b
    caption = COMPARISONS_CAPTION.format(method=options.method_label, n=options.n_resamples, k=len(rows))
    if args.alpha != 0.05:
        caption = caption.replace("0.05", f"{args.alpha:g}")
    parts = [f"# {name_a} against {name_b}\n", headline(rows, name_a, name_b) + "\n", caption + "\n"]
    if comparisons[0].pairing == SHARED_IMAGES:
        parts.append(SPLITS_CAPTION + "\n")
    parts.append(to_markdown(cell_rows(rows), TABLE_COLUMNS))
    markdown = "\n".join(parts)
    print(markdown)
    if args.out is not None:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise BreakHisError(f"--out {out}: exists and is not a directory; pass a folder")
        out.mkdir(parents=True, exist_ok=True)
        (out / "comparisons.md").write_text(markdown)
        write_csv(rows, out / "comparisons.csv")
        print(f"wrote {out / 'comparisons.md'} and {out / 'comparisons.csv'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BreakHisError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
