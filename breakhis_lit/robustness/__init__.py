"""Robustness of fitted runs: scores under stain shifts of growing strength, their figures and tables."""

from breakhis_lit.robustness.stain_shift import (
    DEFAULT_LEVELS,
    ShiftScore,
    StainShiftRecord,
    read_record,
    score_run,
    shift_images,
    write_record,
)

__all__ = [
    "DEFAULT_LEVELS",
    "ShiftScore",
    "StainShiftRecord",
    "read_record",
    "score_run",
    "shift_images",
    "write_record",
]
