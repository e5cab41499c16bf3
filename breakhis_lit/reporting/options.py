"""How a report's bootstrap intervals and paired comparisons are computed."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from breakhis_lit.errors import BreakHisError

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


def add_bootstrap_arguments(parser: argparse.ArgumentParser) -> None:
    """``--method`` and ``--n-resamples``: the :class:`BootstrapOptions` a command's user picks."""
    parser.add_argument("--method", default="bca", choices=("bca", "expanded", "percentile"), help="interval method")
    parser.add_argument("--n-resamples", type=int, default=2000, help="bootstrap replicates (default 2000)")


def bootstrap_options(args: argparse.Namespace) -> BootstrapOptions:
    """The options of :func:`add_bootstrap_arguments` (and ``--seed`` where a command has one), checked."""
    if args.n_resamples < 100:
        raise BreakHisError(f"--n-resamples {args.n_resamples}: use at least 100 (2000 is the default)")
    return BootstrapOptions(method=args.method, n_resamples=args.n_resamples, seed=getattr(args, "seed", 0))


def check_metrics(metrics: Sequence[str], classes: Sequence[str]) -> None:
    """Refuse a ``--metric`` that is not a metric of a task with these classes."""
    from breakhis_lit.stats.replicates import metric_names  # torch: not for --help

    known = metric_names(classes)
    unknown = [name for name in metrics if name not in known]
    if unknown:
        raise BreakHisError(f"--metric {unknown[0]}: unknown; choose from {', '.join(known)}")
