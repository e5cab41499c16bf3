import dataclasses
import json

import pytest

from breakhis_lit.errors import BreakHisError
from breakhis_lit.stain.base import StainTarget


@dataclasses.dataclass(frozen=True)
class _Target(StainTarget):
    method = "test"

    vectors: tuple[tuple[float, float], tuple[float, float]]
    gain: float = 1.0


def test_json_round_trip_is_exact_and_canonical():
    t = _Target(vectors=((0.1, 1 / 3), (2.0, -5e-17)), gain=7.0)
    text = t.to_json()
    assert json.loads(text) == {"method": "test", "version": 1, "vectors": [[0.1, 1 / 3], [2.0, -5e-17]], "gain": 7.0}
    assert " " not in text
    assert list(json.loads(text)) == sorted(json.loads(text))
    back = _Target.from_dict(json.loads(text))
    assert back == t
    assert back.to_json() == text
    assert _Target.from_dict({**t.to_dict(), "gain": 7}).gain == 7.0  # ints from hand-written JSON become floats


@pytest.mark.parametrize(
    "change", [{"method": "other"}, {"version": 2}, {"extra": 1.0}, {"gain": None, "vectors": None}]
)
def test_from_dict_refuses_other_targets(change):
    data = {**_Target(vectors=((0.0, 0.0), (0.0, 0.0))).to_dict(), **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(BreakHisError, match="fit the stain normaliser again"):
        _Target.from_dict(data)
