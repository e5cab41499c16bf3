"""Holm's correction against the step-down procedure worked by hand."""

import pytest

from breakhis_lit.errors import BreakHisError
from breakhis_lit.stats import holm


def test_step_down_by_hand() -> None:
    # Sorted 0.01, 0.03, 0.04 times 3, 2, 1: 0.03, 0.06, 0.04 -> running maximum 0.03, 0.06, 0.06.
    result = holm([0.04, 0.01, 0.03], alpha=0.05)
    assert result.adjusted == pytest.approx([0.06, 0.03, 0.06])
    assert result.reject == [False, True, False]


def test_undefined_p_values_stay_out_of_the_family() -> None:
    result = holm([0.02, None, float("nan"), 0.5])
    assert result.adjusted[1] is None
    assert result.adjusted[2] is None
    assert result.adjusted[0] == pytest.approx(0.04)  # a family of two
    assert result.adjusted[3] == pytest.approx(0.5)
    assert holm([]).adjusted == []


def test_refusals() -> None:
    with pytest.raises(BreakHisError, match="p_values"):
        holm([1.5])
    with pytest.raises(BreakHisError, match="alpha"):
        holm([0.5], alpha=5)
