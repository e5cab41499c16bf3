"""Exact McNemar test of two models' correct/incorrect decisions on the same patients or images."""

from dataclasses import dataclass
from typing import Literal

import numpy as np
from statsmodels.stats.contingency_tables import mcnemar

from breakhis_lit.errors import BreakHisError
from breakhis_lit.stats.paired import check_comparable
from breakhis_lit.stats.predictions import Predictions

McNemarUnit = Literal["patient", "image"]


@dataclass(frozen=True)
class McNemar:
    """The 2x2 table of two models' correct decisions and the exact McNemar p-value.

    Attributes:
        unit: ``"patient"`` or ``"image"``.
        both_correct: Units both models got right.
        only_a: Units only model a got right.
        only_b: Units only model b got right.
        both_wrong: Units both models got wrong.
        p_value: Exact two-sided McNemar p-value (binomial test of ``only_a`` vs ``only_b``).
    """

    unit: str
    both_correct: int
    only_a: int
    only_b: int
    both_wrong: int
    p_value: float


def _correct(pred: Predictions, unit: McNemarUnit) -> np.ndarray:
    if unit == "image":
        return pred.preds == pred.labels
    labels, decisions = pred.patient_decisions()
    return decisions == labels


def mcnemar_test(a: Predictions, b: Predictions, unit: McNemarUnit = "patient") -> McNemar:
    """Exact McNemar test (``statsmodels ... mcnemar(exact=True)``) on patient-level or image-level decisions.

    Patient decisions are those of the patient accuracy (mean probability per patient, see
    :meth:`Predictions.patient_decisions`); image decisions those of the image accuracy. The image-level test
    treats images as independent: with a patient's images correlated it is too liberal, and the patient-level
    test (or :func:`~breakhis_lit.stats.paired.paired_bootstrap`) is the honest one.

    Args:
        a: Model a's test predictions.
        b: Model b's test predictions on the same images.
        unit: ``"patient"`` or ``"image"``.

    Returns:
        The :class:`McNemar` table and p-value (1 when the models never disagree).

    Raises:
        BreakHisError: On an unknown unit, or see :func:`~breakhis_lit.stats.paired.check_comparable`.
    """
    if unit not in ("patient", "image"):
        raise BreakHisError(f"unit: unknown {unit!r}; use 'patient' or 'image'")
    b = check_comparable(a, b)
    ca, cb = _correct(a, unit), _correct(b, unit)
    table = np.array([[np.sum(ca & cb), np.sum(ca & ~cb)], [np.sum(~ca & cb), np.sum(~ca & ~cb)]])
    result = mcnemar(table, exact=True)
    return McNemar(
        unit=unit,
        both_correct=int(table[0, 0]),
        only_a=int(table[0, 1]),
        only_b=int(table[1, 0]),
        both_wrong=int(table[1, 1]),
        p_value=float(result.pvalue),
    )
