import dataclasses

import numpy as np
import pytest
import torch
from torchstain.numpy.normalizers import NumpyReinhardNormalizer
from torchstain.numpy.utils import lab2rgb, lab_merge, lab_split, rgb2lab

from breakhis_lit.errors import BreakHisError
from breakhis_lit.stain.identity import IdentityTarget
from breakhis_lit.stain.registry import target_from_json
from breakhis_lit.stain.reinhard import ReinhardNormalizer, ReinhardTarget

REFERENCE = 9  # SOB_M_DC-14-13412-100-026.png: the sample every other one is normalised to


def _chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].contiguous()


def _reference(sample_arrays):
    ref = NumpyReinhardNormalizer()
    ref.fit(sample_arrays[REFERENCE])
    return ref


def _reference_float(ref: NumpyReinhardNormalizer, image: np.ndarray) -> np.ndarray:
    """The Reinhard steps of torchstain, before its final truncation to uint8."""
    labs = lab_split(rgb2lab(image.astype("float32") / 255))
    moved = [(x - x.mean()) / x.std() * s + m for x, m, s in zip(labs, ref.target_means, ref.target_stds, strict=True)]
    return lab2rgb(lab_merge(*moved)) * 255


@pytest.fixture(scope="module")
def normalised(sample_arrays):
    r = ReinhardNormalizer(batch_size=32)
    target = r.fit(_chw(sample_arrays[REFERENCE]))
    same = [i for i, a in enumerate(sample_arrays) if a.shape == sample_arrays[0].shape]
    out: dict[int, np.ndarray] = {}
    batch = r.normalize(torch.cat([_chw(sample_arrays[i]) for i in same]), target)
    out.update({i: o.permute(1, 2, 0).numpy() for i, o in zip(same, batch, strict=True)})
    for i in set(range(len(sample_arrays))) - set(same):
        out[i] = r.normalize(_chw(sample_arrays[i]), target)[0].permute(1, 2, 0).numpy()
    return target, out


def test_fit_matches_reference(sample_arrays, normalised):
    ref = _reference(sample_arrays)
    target, _ = normalised
    np.testing.assert_allclose(target.means, ref.target_means, rtol=0, atol=1e-3)
    np.testing.assert_allclose(target.stds, ref.target_stds, rtol=1e-4)


def test_normalised_samples_match_reference(sample_arrays, normalised):
    """All 18 samples normalised to one: torchstain's NumPy Reinhard truncates to uint8, this rounds.

    Tolerance: against the reference's uint8 output, mean |diff| <= 0.6 and max 1 grey level, the difference 0
    or +1; against the reference's float output rounded, mean |diff| <= 0.005 and max 1. Measured at 700 x 460:
    mean |diff| 0.326-0.509 per image against the uint8 output (0.326: the reference sample itself), at most
    0.0001 against the rounded float output; max 1 for both.
    """
    ref = _reference(sample_arrays)
    for i, image in enumerate(sample_arrays):
        ours = normalised[1][i].astype(int)
        diff = ours - ref.normalize(image).astype(int)
        assert 0.2 <= np.abs(diff).mean() <= 0.6, (i, np.abs(diff).mean())
        assert diff.min() >= 0, i
        assert diff.max() <= 1, i
        rounded = np.abs(ours - np.round(_reference_float(ref, image)))
        assert rounded.mean() <= 0.005, (i, rounded.mean())
        assert rounded.max() <= 1, i


def test_normalised_statistics_are_the_targets(samples_224):
    r = ReinhardNormalizer()
    target = r.fit(samples_224[:1])
    out = r.normalize(samples_224[1:], target)
    ref = NumpyReinhardNormalizer()
    for img in out:  # the statistics of the output, measured by torchstain
        ref.fit(img.permute(1, 2, 0).numpy())
        np.testing.assert_allclose(ref.target_means, target.means, rtol=0, atol=1.5)
        np.testing.assert_allclose(ref.target_stds, target.stds, rtol=0.2)


def test_fit_on_several_images_averages_the_per_image_fits(samples_224):
    images = samples_224[:5]
    target = ReinhardNormalizer(batch_size=2).fit(images)
    fits = []
    for img in images:
        r = NumpyReinhardNormalizer()
        r.fit(img.permute(1, 2, 0).numpy())
        fits.append((r.target_means, r.target_stds))
    np.testing.assert_allclose(target.means, np.mean([f[0] for f in fits], axis=0), rtol=0, atol=1e-3)
    np.testing.assert_allclose(target.stds, np.mean([f[1] for f in fits], axis=0), rtol=1e-4)


def test_batched_equals_one_by_one_and_is_deterministic(samples_224):
    r = ReinhardNormalizer(batch_size=5)
    target = r.fit(samples_224[:1])
    batch = r.normalize(samples_224, target)
    assert batch.dtype == torch.uint8
    assert torch.equal(batch, r.normalize(samples_224, target))
    single = torch.cat([r.normalize(img[None], target) for img in samples_224])
    assert (batch.int() - single.int()).abs().max() <= 1
    assert (batch != single).float().mean() < 1e-4


def test_background_only_images_are_returned_unchanged(samples_224):
    white = torch.full((1, 3, 224, 224), 255, dtype=torch.uint8)
    black = torch.zeros(1, 3, 224, 224, dtype=torch.uint8)
    flat_pink = torch.tensor([200, 120, 180], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 224, 224)
    noisy_white = (255 - torch.randint(0, 6, (1, 3, 224, 224), generator=torch.Generator().manual_seed(0))).byte()
    odd = torch.cat([white, samples_224[:2], black, flat_pink, noisy_white])
    r = ReinhardNormalizer()
    target = r.fit(samples_224[:1])
    out = r.normalize(odd, target)
    for i in (0, 3, 4, 5):
        assert torch.equal(out[i], odd[i]), i
    assert torch.equal(out[1:3], r.normalize(samples_224[:2], target))


def test_fit_without_tissue_is_refused():
    with pytest.raises(BreakHisError, match="none of the 1 images"):
        ReinhardNormalizer().fit(torch.full((1, 3, 32, 32), 255, dtype=torch.uint8))


def test_target_json_round_trip_normalises_identically(samples_224):
    r = ReinhardNormalizer()
    target = r.fit(samples_224[:2])
    back = target_from_json(target.to_json())
    assert isinstance(back, ReinhardTarget)
    assert back == target
    assert torch.equal(r.normalize(samples_224[2:4], back), r.normalize(samples_224[2:4], target))


@pytest.mark.parametrize(("option", "value"), [("io", -1), ("beta", 0), ("min_tissue", -0.1), ("batch_size", 0)])
def test_bad_options(option, value):
    with pytest.raises(BreakHisError, match=f"Reinhard {option}="):
        ReinhardNormalizer(**{option: value})


def test_other_targets_are_refused(samples_224):
    with pytest.raises(BreakHisError, match="given to the Reinhard normaliser"):
        ReinhardNormalizer().normalize(samples_224[:1], IdentityTarget())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_the_cpu(samples_224):
    n = ReinhardNormalizer()
    target = n.fit(samples_224[:1])
    fitted = n.fit(samples_224[:1].cuda())
    for name, value in dataclasses.asdict(target).items():
        np.testing.assert_allclose(np.array(dataclasses.asdict(fitted)[name]), np.array(value), rtol=1e-4, atol=1e-4)
    cpu = n.normalize(samples_224, target)
    gpu = n.normalize(samples_224.cuda(), target)
    assert gpu.device.type == "cuda"
    assert (gpu.cpu().int() - cpu.int()).abs().max() <= 1
    assert (gpu.cpu() != cpu).float().mean() < 1e-3
