"""Holm's step-down correction of a family of p-values (statsmodels' ``multipletests(method="holm")``)."""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from statsmodels.stats.multitest import multipletests

from breakhis_lit.errors import BreakHisError


@dataclass(frozen=True)
class Holm:
    """Holm-adjusted p-values of a family and which hypotheses are rejected.

    Attributes:
        adjusted: Adjusted p-values in input order (None where the input was None or NaN).
        reject: Whether each hypothesis is rejected at ``alpha`` (None where the input was None or NaN).
        alpha: Family-wise error rate.
    """

    adjusted: list[float | None]
    reject: list[bool | None]
    alpha: float


def holm(p_values: Sequence[float | None], alpha: float = 0.05) -> Holm:
    """Holm correction of a family of p-values, controlling the family-wise error rate at ``alpha``.

    Undefined p-values (None or NaN, e.g. of a metric undefined on the test set) are not tests: they are left out
    of the family and stay None.

    Args:
        p_values: The family's p-values.
        alpha: Family-wise error rate.

    Returns:
        The :class:`Holm` result.

    Raises:
        BreakHisError: On a p-value outside [0, 1] or alpha outside (0, 1).
    """
    if not 0.0 < alpha < 1.0:
        raise BreakHisError(f"alpha: must be in (0, 1), e.g. 0.05; got {alpha}")
    values = [None if p is None or math.isnan(float(p)) else float(p) for p in p_values]
    defined = [i for i, p in enumerate(values) if p is not None]
    if any(not 0.0 <= values[i] <= 1.0 for i in defined):  # type: ignore[operator]
        raise BreakHisError(f"p_values: must lie in [0, 1], got {[values[i] for i in defined]}")
    adjusted: list[float | None] = [None] * len(values)
    reject: list[bool | None] = [None] * len(values)
    if defined:
        rejected, corrected, _, _ = multipletests(np.array([values[i] for i in defined]), alpha=alpha, method="holm")
        for i, r, p in zip(defined, rejected, corrected, strict=True):
            adjusted[i], reject[i] = float(p), bool(r)
    return Holm(adjusted=adjusted, reject=reject, alpha=float(alpha))
