"""How a report's bootstrap intervals and paired comparisons are computed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the statistics import torch: not for `breakhis report --help`
    from breakhis_lit.stats.interval import Method

DEFAULT_REFERENCE = "DALAResNet50"
"""The model every other model is compared with: the paper's."""
DEFAULT_METRICS: tuple[str, ...] = ("accuracy",)
"""Metrics compared by default (each is one test of the Holm family)."""
ALPHA = 0.05
"""Family-wise error rate of the Holm correction."""
FORMATS = ("md", "csv")
"""Table formats a report writes."""


@dataclass(frozen=True)
class BootstrapOptions:
    """Options of every bootstrap of a report (row intervals and paired comparisons).

    Attributes:
        method: Interval method (``bca``, ``expanded`` or ``percentile``).
        n_resamples: Replicates.
        seed: Seed of the replicates.
        level: Confidence level.
    """

    method: Method = "bca"
    n_resamples: int = 2000
    seed: int = 0
    level: float = 0.95

    @property
    def method_label(self) -> str:
        """The method as captions print it (``BCa``)."""
        return {"bca": "BCa"}.get(self.method, self.method)
