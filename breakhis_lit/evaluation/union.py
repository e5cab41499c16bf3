"""The mean of several runs' metrics for bootstrap weights over the union of their test sets' split groups."""

from collections.abc import Sequence

import numpy as np

from breakhis_lit.stats.bootstrap import Evaluate
from breakhis_lit.stats.replicates import finite_mean


class UnionMean:
    """The mean over runs of each run's metrics, for weights over the union of the runs' split groups.

    Runs scored on different test splits (split seeds) share some patients: a replicate draws groups with
    replacement from the union of all test groups, a group tested by several runs weighs in each of them, and every
    run's metric is computed from its own predictions on the drawn groups it tested. A run none of whose groups a
    replicate draws is left out of that replicate's mean (an undefined metric likewise).

    Args:
        parts: ``(evaluate, group names)`` per run: its evaluator (weights over its own groups in code order) and
            the names of its groups in code order.
    """

    def __init__(self, parts: Sequence[tuple[Evaluate, Sequence[object]]]) -> None:
        index: dict[object, int] = {}
        self._parts = [
            (evaluate, np.array([index.setdefault(group, len(index)) for group in groups], dtype=np.int64))
            for evaluate, groups in parts
        ]
        self.n_units = len(index)

    def __call__(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """``{name: [B]}``: the mean over the runs of their metrics under the same weights."""
        weights = np.asarray(weights)
        values: dict[str, list[np.ndarray]] = {}
        for evaluate, columns in self._parts:
            w = weights[:, columns]
            drawn = w.sum(axis=1) > 0
            for name, value in evaluate(w).items():
                values.setdefault(name, []).append(np.where(drawn, value, np.nan))
        return {name: finite_mean(np.stack(found)) for name, found in values.items()}

    def estimate(self) -> dict[str, float]:
        """The mean over the runs of each run's metric on its full test set."""
        return {name: float(value[0]) for name, value in self(np.ones((1, self.n_units), dtype=np.int64)).items()}
