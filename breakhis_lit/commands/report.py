"""``breakhis report``: Tables 5 and 6 with intervals, paired comparisons, calibration and figures for runs."""

import argparse
import sys

from breakhis_lit.errors import BreakHisError
from breakhis_lit.reporting.options import (
    DEFAULT_METRICS,
    DEFAULT_REFERENCE,
    FORMATS,
    add_bootstrap_arguments,
    bootstrap_options,
    check_metrics,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``breakhis report`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="breakhis report",
        description=(
            "Summarise fitted runs (directories made by breakhis fit) and their evaluations as the paper's "
            "Tables 5 and 6, "
            "training curves, confusion matrices and Grad-CAM pairs, beside the paper's own numbers. "
            "Runs that differ only in seed or fold are averaged (mean ± std, with n) and get a patient-bootstrap "
            "interval; every model is compared with --reference on the same test patients (comparisons.md)."
        ),
    )
    parser.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="a run directory (version_N) or any folder above runs, e.g. lightning_logs",
    )
    parser.add_argument(
        "--out", required=True, help="output folder (created); only the report's own files are overwritten"
    )
    parser.add_argument(
        "--paper-table5",
        default=None,
        metavar="CSV",
        help="the paper's Table 5 (default: the copy shipped in the package)",
    )
    parser.add_argument(
        "--paper-table6",
        default=None,
        metavar="CSV",
        help="the paper's Table 6 (default: the copy shipped in the package)",
    )
    parser.add_argument(
        "--format",
        default="md,csv",
        help="table formats, comma-separated: md, csv (default md,csv); report.md is always written",
    )
    parser.add_argument(
        "--reference",
        default=DEFAULT_REFERENCE,
        metavar="MODEL",
        help=f"the model every other model is compared with (default {DEFAULT_REFERENCE}, the paper's)",
    )
    parser.add_argument(
        "--metric",
        action="append",
        default=None,
        metavar="NAME",
        help="metric of the paired comparisons (repeat for several; default accuracy); each is one Holm test",
    )
    add_bootstrap_arguments(parser)
    parser.add_argument(
        "--no-intervals", action="store_true", help="leave out intervals and comparisons (reads no predictions.csv)"
    )
    return parser


def parse_formats(text: str) -> list[str]:
    """Parse ``--format`` (``"md,csv"``) into a list, rejecting unknown names."""
    formats = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in formats if name not in FORMATS]
    if not formats or unknown:
        raise BreakHisError(f"--format {text}: unknown or empty; use md, csv or md,csv")
    return formats


def main(argv: list[str] | None = None) -> int:
    """Run ``breakhis report``.

    Args:
        argv: arguments after ``report``; None reads ``sys.argv``.

    Returns:
        0 on success.

    Raises:
        BreakHisError: for a missing directory, folders without finished runs, or bad options
            (the ``breakhis`` entry point prints it as one ``error:`` line).
    """
    args = build_parser().parse_args(argv)
    from breakhis_lit.reporting.report import write_report  # torch and matplotlib: not for --help
    from breakhis_lit.reporting.runs import group_runs, load_runs

    formats = parse_formats(args.format)
    bootstrap = bootstrap_options(args)
    runs = load_runs(args.run_dirs)
    if args.metric:
        check_metrics(args.metric, runs[0].classes)
    print(f"report: {len(runs)} evaluation(s) in {len(group_runs(runs))} model × magnification group(s)")
    written = write_report(
        runs,
        args.out,
        formats=formats,
        paper_table5=args.paper_table5,
        paper_table6=args.paper_table6,
        log=lambda message: print(f"note: {message}"),
        reference=args.reference,
        metrics=args.metric or list(DEFAULT_METRICS),
        bootstrap=None if args.no_intervals else bootstrap,
    )
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BreakHisError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
