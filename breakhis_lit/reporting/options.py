"""How a report's bootstrap intervals and paired comparisons are computed."""

from dataclasses import dataclass

from breakhis_lit.stats.interval import Method


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
