"""Reports over finished runs: Tables 5 and 6 beside the paper's numbers, curves, confusions, Grad-CAM."""

from breakhis_lit.reporting.figures import plot_confusion, plot_curves, plot_gradcam_pairs
from breakhis_lit.reporting.report import write_report
from breakhis_lit.reporting.runs import Run, group_runs, load_run, load_runs, paper_model_name
from breakhis_lit.reporting.tables import (
    load_paper_table5,
    load_paper_table6,
    table5,
    table5_caption,
    table5_columns,
    table6,
    table6_columns,
    to_markdown,
    write_csv,
)

__all__ = [
    "Run",
    "group_runs",
    "load_paper_table5",
    "load_paper_table6",
    "load_run",
    "load_runs",
    "paper_model_name",
    "plot_confusion",
    "plot_curves",
    "plot_gradcam_pairs",
    "table5",
    "table5_caption",
    "table5_columns",
    "table6",
    "table6_columns",
    "to_markdown",
    "write_csv",
    "write_report",
]
