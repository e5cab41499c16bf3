"""``breakhis report``: Tables 5 and 6 beside the paper's, training curves, confusions and Grad-CAM for runs."""

import argparse
import sys

from breakhis_lit.errors import BreakHisError
from breakhis_lit.reporting.report import FORMATS, write_report
from breakhis_lit.reporting.runs import group_runs, load_runs


def build_parser() -> argparse.ArgumentParser:
    """The ``breakhis report`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="breakhis report",
        description=(
            "Summarise fitted runs (directories made by breakhis fit) and their evaluations as the paper's "
            "Tables 5 and 6, "
            "training curves, confusion matrices and Grad-CAM pairs, beside the paper's own numbers. "
            "Runs that differ only in seed or fold are averaged (mean ± std, with n)."
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
    formats = parse_formats(args.format)
    runs = load_runs(args.run_dirs)
    print(f"report: {len(runs)} evaluation(s) in {len(group_runs(runs))} model × magnification group(s)")
    written = write_report(
        runs,
        args.out,
        formats=formats,
        paper_table5=args.paper_table5,
        paper_table6=args.paper_table6,
        log=lambda message: print(f"note: {message}"),
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
