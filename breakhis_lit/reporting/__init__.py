"""Reports over finished runs: Tables 5 and 6 beside the paper's numbers, curves, confusions, Grad-CAM."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "Run": "breakhis_lit.reporting.runs",
    "group_runs": "breakhis_lit.reporting.runs",
    "load_paper_table5": "breakhis_lit.reporting.tables",
    "load_paper_table6": "breakhis_lit.reporting.tables",
    "load_run": "breakhis_lit.reporting.runs",
    "load_runs": "breakhis_lit.reporting.runs",
    "paper_model_name": "breakhis_lit.reporting.runs",
    "plot_confusion": "breakhis_lit.reporting.figures",
    "plot_curves": "breakhis_lit.reporting.figures",
    "plot_gradcam_pairs": "breakhis_lit.reporting.figures",
    "table5": "breakhis_lit.reporting.tables",
    "table5_caption": "breakhis_lit.reporting.tables",
    "table5_columns": "breakhis_lit.reporting.tables",
    "table6": "breakhis_lit.reporting.tables",
    "table6_columns": "breakhis_lit.reporting.tables",
    "to_markdown": "breakhis_lit.reporting.tables",
    "write_csv": "breakhis_lit.reporting.tables",
    "write_report": "breakhis_lit.reporting.report",
}
"""Public name -> the module defining it (imported on first use: the command line's --help stays light)."""

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
