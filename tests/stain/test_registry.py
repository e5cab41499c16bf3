import pytest
import torch

from breakhis_lit.errors import BreakHisError
from breakhis_lit.stain.identity import IdentityNormalizer, IdentityTarget
from breakhis_lit.stain.macenko import MacenkoNormalizer, MacenkoTarget
from breakhis_lit.stain.registry import NORMALIZERS, get_normalizer, normalize_to, target_from_dict, target_from_json
from breakhis_lit.stain.reinhard import ReinhardNormalizer, ReinhardTarget


def test_names():
    assert set(NORMALIZERS) == {"macenko", "reinhard", "none"}
    assert isinstance(get_normalizer("macenko", beta=0.2), MacenkoNormalizer)
    assert get_normalizer("macenko", beta=0.2).beta == 0.2
    assert isinstance(get_normalizer("reinhard"), ReinhardNormalizer)
    assert isinstance(get_normalizer("none"), IdentityNormalizer)
    for name, cls in NORMALIZERS.items():
        assert cls.name == name


def test_unknown_name_and_option():
    with pytest.raises(BreakHisError, match="'vahadane': unknown; pass one of macenko, reinhard, none"):
        get_normalizer("vahadane")
    with pytest.raises(BreakHisError, match=r"unknown option\(s\) gamma; use batch_size, beta, io, min_tissue"):
        get_normalizer("reinhard", gamma=1.0)


@pytest.mark.parametrize("name", ["macenko", "reinhard", "none"])
def test_targets_from_json_and_normalize_to(samples_224, name):
    n = get_normalizer(name)
    target = n.fit(samples_224[:1])
    back = target_from_json(target.to_json())
    assert type(back) is {"macenko": MacenkoTarget, "reinhard": ReinhardTarget, "none": IdentityTarget}[name]
    assert back == target
    assert target_from_dict(target.to_dict()) == target
    assert torch.equal(normalize_to(samples_224[1:3], back), n.normalize(samples_224[1:3], target))


@pytest.mark.parametrize("text", ["{", "[1, 2]", '{"method": "vahadane"}', '{"method": "macenko", "version": 1}'])
def test_bad_json(text):
    with pytest.raises(BreakHisError):
        target_from_json(text)
