import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from breakhis_lit.gradcam import caption, grid, overlay, save_figure, save_png, to_hwc_uint8


@pytest.fixture
def image() -> torch.Tensor:
    return torch.full((3, 20, 30), 128, dtype=torch.uint8)


def test_to_hwc_uint8_accepts_chw_hwc_and_float(image):
    hwc = to_hwc_uint8(image)
    assert hwc.shape == (20, 30, 3)
    assert hwc.dtype == np.uint8
    np.testing.assert_array_equal(to_hwc_uint8(hwc), hwc)
    np.testing.assert_array_equal(to_hwc_uint8(image.float() / 255), hwc)
    with pytest.raises(ValueError, match="RGB"):
        to_hwc_uint8(np.zeros((20, 30)))


def test_overlay_colours_hot_regions_red(image):
    cam = np.zeros((20, 30), np.float32)
    cam[:, 15:] = 1.0
    out = overlay(image, cam)
    assert out.shape == (20, 30, 3)
    assert out.dtype == np.uint8
    hot, cold = out[:, 20].astype(int), out[:, 5].astype(int)
    assert (hot[:, 0] > hot[:, 2]).all()  # jet: high = red
    assert (cold[:, 2] > cold[:, 0]).all()  # jet: low = blue


def test_overlay_resizes_a_smaller_map_and_accepts_tensors(image):
    out = overlay(image.permute(1, 2, 0).numpy(), torch.rand(5, 6))
    assert out.shape == (20, 30, 3)
    with pytest.raises(ValueError, match="heat map"):
        overlay(image, np.zeros((2, 20, 30)))


def test_caption():
    assert caption("malignant", 0.9712, "malignant") == "true: malignant / pred: malignant (0.97)"
    assert caption("benign", 0.5) == "pred: benign (0.50)"


def test_grid_is_a_labelled_figure(image, tmp_path):
    images = image.expand(3, -1, -1, -1)
    titles = [caption("benign", 0.8, "benign"), caption("malignant", 0.6, "benign"), caption("benign", 0.7)]
    fig = grid(images, np.random.rand(3, 20, 30), titles, pairs_per_row=2, suptitle="val Grad-CAM")
    assert isinstance(fig, Figure)
    texts = {sf._suptitle.get_text() for sf in fig.subfigs if sf._suptitle is not None}
    assert texts == set(titles)
    assert sum(len(sf.axes) for sf in fig.subfigs) == 6
    path = save_figure(fig, tmp_path / "sub" / "grid.png")
    with Image.open(path) as png:
        assert png.format == "PNG"
        assert png.width > png.height
    with pytest.raises(ValueError, match="titles"):
        grid(images, np.random.rand(3, 20, 30), titles[:2])


def test_save_png(image, tmp_path):
    path = save_png(overlay(image, np.random.rand(20, 30)), tmp_path / "a" / "x.png")
    with Image.open(path) as png:
        assert png.size == (30, 20)
        assert png.mode == "RGB"
