import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from breakhis_lit.stain import hed_jitter
from breakhis_lit.stain.figure import stain_figure
from breakhis_lit.stain.hed_jitter import HEDJitter
from breakhis_lit.stain.macenko import MacenkoNormalizer
from breakhis_lit.stain.reinhard import ReinhardNormalizer


def test_panels_show_the_normalised_and_jittered_images(samples_224, tmp_path):
    images, reference = samples_224[[0, 5, 12]], samples_224[9:10]
    fig = stain_figure(images, reference, n_jitter=2, seed=3, labels=["a", "b", "c"])
    assert isinstance(fig, Figure)
    axes = np.array(fig.axes).reshape(3, 5)
    assert [ax.get_title() for ax in axes[0]] == ["original", "Macenko", "Reinhard", "HED jitter 1", "HED jitter 2"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["a", "b", "c"]
    shown = [[np.asarray(ax.images[0].get_array()) for ax in row] for row in axes]
    macenko = MacenkoNormalizer().normalize(images, MacenkoNormalizer().fit(reference))
    reinhard = ReinhardNormalizer().normalize(images, ReinhardNormalizer().fit(reference))
    g = torch.Generator().manual_seed(3)
    draws = [hed_jitter.apply(images.float() / 255, HEDJitter().draw(3, g)) for _ in range(2)]
    for r in range(3):
        np.testing.assert_allclose(shown[r][0], images[r].permute(1, 2, 0).numpy() / 255, atol=1e-6)
        np.testing.assert_allclose(shown[r][1], macenko[r].permute(1, 2, 0).numpy() / 255, atol=1e-6)
        np.testing.assert_allclose(shown[r][2], reinhard[r].permute(1, 2, 0).numpy() / 255, atol=1e-6)
        for k in range(2):
            np.testing.assert_allclose(shown[r][3 + k], draws[k][r].permute(1, 2, 0).numpy(), atol=1e-6)
    path = tmp_path / "stain.png"
    fig.savefig(path, dpi=50)
    with Image.open(path) as png:
        assert png.size == (round(5 * 1.8 * 50), round((3 * 1.8 + 0.4) * 50))


def test_synthetic_images_without_samples():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(60, 200, (2, 3, 32, 32), dtype=torch.uint8, generator=g)
    fig = stain_figure(images, n_jitter=1)
    assert len(fig.axes) == 2 * 4
    assert fig.axes[0].get_ylabel() == "0"
