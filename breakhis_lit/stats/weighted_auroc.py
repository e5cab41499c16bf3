"""Exact binary AUROC under many weightings of the images at once: a weighted Mann–Whitney over once-sorted scores."""

import numpy as np

_PAIR_TABLE_LIMIT = 4_000_000  # entries of the [units, tie blocks] count tables of the pairwise path


class WeightedAUROC:
    r"""Exact AUROC of fixed scores under a batch of weightings of the resampling units (groups or images).

    Image ``i`` belongs to unit ``u(i)`` and gets the weight ``w_u(i)`` of its unit (e.g. how often a bootstrap
    replicate drew it). The AUROC of a weighting is the weighted Mann–Whitney statistic

    .. math:: \text{AUC}(w) = \frac{\sum_{i \in +} \sum_{j \in -} w_{u(i)} w_{u(j)}\,
        \big([s_i > s_j] + \tfrac12 [s_i = s_j]\big)}
        {\big(\sum_{i \in +} w_{u(i)}\big)\big(\sum_{j \in -} w_{u(j)}\big)},

    which for integer weights equals ``roc_auc_score`` of the sample with every image repeated ``w`` times, and NaN
    when the weighted sample lacks positives or negatives. The scores are sorted once; written here because no
    library evaluates an AUROC for thousands of weightings without repeating the sort. With few units the
    numerator is the quadratic form ``w^T K w`` of the unit-by-unit Mann–Whitney counts ``K`` (``O(U^2)`` per
    weighting); with many (image-level resampling) it is a cumulative sum over the tie blocks (``O(N)``).

    Args:
        scores: Scores ``[N]`` (higher means more likely positive).
        positive: Boolean ``[N]``: whether image ``i`` is a positive.
        units: Unit index of every image ``[N]``, in ``[0, n_units)``.
        n_units: Number of units ``U``.
    """

    def __init__(self, scores: np.ndarray, positive: np.ndarray, units: np.ndarray, n_units: int) -> None:
        order = np.argsort(scores, kind="stable")
        sorted_scores = scores[order]
        new_block = np.empty(len(order), dtype=bool)
        new_block[:1] = True
        new_block[1:] = sorted_scores[1:] != sorted_scores[:-1]
        self.n_units = int(n_units)
        self._starts = np.flatnonzero(new_block)
        n_blocks = len(self._starts)
        block = np.cumsum(new_block) - 1
        pos = positive[order].astype(bool)
        unit = units[order]
        self.n_positive = np.bincount(unit[pos], minlength=n_units).astype(np.float64)
        self.n_negative = np.bincount(unit[~pos], minlength=n_units).astype(np.float64)
        self._pairwise = n_units * n_blocks <= _PAIR_TABLE_LIMIT and n_units * n_units <= 8 * len(order)
        if self._pairwise:
            pos_table = np.zeros((n_units, n_blocks))
            neg_table = np.zeros((n_units, n_blocks))
            np.add.at(pos_table, (unit[pos], block[pos]), 1.0)
            np.add.at(neg_table, (unit[~pos], block[~pos]), 1.0)
            # Negatives of unit h below block k, ties counting one half.
            below = np.cumsum(neg_table, axis=1) - 0.5 * neg_table
            self._pairs = pos_table @ below.T  # [U, U]: Mann-Whitney count of unit g's positives over h's negatives
        else:
            self._unit = unit
            self._pos = pos.astype(np.float64)
            self._neg = (~pos).astype(np.float64)

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        """AUROC of every weighting.

        Args:
            weights: Non-negative unit weights ``[B, U]``.

        Returns:
            ``[B]`` float64 AUROCs, NaN where a weighting leaves no positive or no negative.
        """
        w = np.asarray(weights, dtype=np.float64)
        n_pos = w @ self.n_positive
        n_neg = w @ self.n_negative
        if self._pairwise:
            numerator = np.einsum("bg,bg->b", w @ self._pairs, w)
        else:
            image_weights = w[:, self._unit]
            pos = np.add.reduceat(image_weights * self._pos, self._starts, axis=1)
            neg = np.add.reduceat(image_weights * self._neg, self._starts, axis=1)
            below = np.cumsum(neg, axis=1) - 0.5 * neg
            numerator = np.einsum("bk,bk->b", pos, below)
        denominator = n_pos * n_neg
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)
