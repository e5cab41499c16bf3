import pytest
import torch

from breakhis_lit.errors import BreakHisError
from breakhis_lit.stain.identity import IdentityNormalizer, IdentityTarget
from breakhis_lit.stain.macenko import MacenkoTarget


def test_returns_its_input():
    images = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    n = IdentityNormalizer()
    target = n.fit(images)
    assert target == IdentityTarget()
    assert target.to_json() == '{"method":"none","version":1}'
    assert n.normalize(images, target) is images


def test_other_targets_are_refused():
    other = MacenkoTarget(stain_vectors=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)), max_concentrations=(1.0, 1.0))
    with pytest.raises(BreakHisError, match="given to the 'none' normaliser"):
        IdentityNormalizer().normalize(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), other)
