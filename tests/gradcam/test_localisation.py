"""Grad-CAM points at the lesion: a small DALA-style CNN trained on demo data heats the lesion masks."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from breakhis_lit.data.cache import decode_image
from breakhis_lit.data.demo import mask_path
from breakhis_lit.data.transforms import normalize
from breakhis_lit.gradcam import compute_cams
from breakhis_lit.models import LightweightAttentionGate

SIZE = 64


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.GroupNorm(4, cout), nn.ReLU(inplace=True))


class TinyDALA(nn.Module):
    """Conv trunk (stride 4: a 16x16 map at 64 px) -> lightweight attention gate -> pool -> dropout -> linear.

    The DALA-ResNet layout at a size that trains in seconds on a CPU; GroupNorm keeps evaluation stable.
    """

    num_classes = 2
    channels_last = True

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            _block(3, 8, 1), _block(8, 16, 2), _block(16, 16, 1), _block(16, 32, 2), _block(32, 32, 1)
        )
        self.attention = LightweightAttentionGate(32, reduction=4)
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(32, 2))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.attention(self.trunk(x)).mean((2, 3)))

    def gradcam_target_layers(self) -> list[nn.Module]:
        return [self.attention]

    def gradcam_reshape_transform(self) -> None:
        return None


def _balanced_accuracy(pred: Tensor, target: Tensor) -> float:
    return float(np.mean([(pred[target == c] == c).float().mean().item() for c in (0, 1)]))


@pytest.mark.slow
def test_heat_lies_on_the_lesion(demo_root: Path) -> None:
    root = demo_root  # the session's demo data (tests/conftest.py): default arguments, seed 0
    paths = sorted((root / "BreaKHis_v1").rglob("*.png"))
    images = torch.stack([torch.from_numpy(decode_image(p, SIZE)) for p in paths])
    labels = torch.tensor([int("/malignant/" in p.as_posix()) for p in paths])
    folders = [p.parent.parent.name for p in paths]  # SOB_<B|M>_<subtype>_<patient>
    by_subtype: dict[str, list[str]] = {}
    for folder in sorted(set(folders)):
        by_subtype.setdefault(folder.split("_")[2], []).append(folder)
    held_out = {names[-1] for names in by_subtype.values()}  # one unseen patient per subtype
    val = torch.tensor([f in held_out for f in folders])
    x_train, y_train, x_val, y_val = images[~val], labels[~val], images[val], labels[val]
    assert set(y_val.tolist()) == {0, 1}

    torch.manual_seed(0)
    model = TinyDALA()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(0)
    class_weight = torch.tensor([2.0, 1.0])  # the demo is 1:2 benign:malignant, like BreakHis
    for _ in range(5):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), 32):
            batch = order[start : start + 32]
            x = normalize(x_train[batch])
            flip = torch.rand(len(x), generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            loss = F.cross_entropy(model(x), y_train[batch], weight=class_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        pred = model(normalize(x_val)).argmax(1)
    balanced_accuracy = _balanced_accuracy(pred, y_val)
    assert balanced_accuracy >= 0.75, f"the model did not learn (balanced accuracy {balanced_accuracy:.2f})"

    malignant = (val & (labels == 1)).nonzero().ravel().tolist()
    cams, probs = compute_cams(model, normalize(images[malignant]), targets=[1] * len(malignant))
    inside, share = [], []
    for cam, index in zip(cams, malignant, strict=True):
        with Image.open(mask_path(root, paths[index])) as mask_file:
            mask = np.asarray(mask_file.convert("L").resize((SIZE, SIZE), Image.Resampling.BILINEAR)) >= 128
        inside.append(float((cam * mask).sum() / max(cam.sum(), 1e-8)))
        share.append(float(mask.mean()))
    mean_inside, mean_share = float(np.mean(inside)), float(np.mean(share))
    assert mean_inside >= 2 * mean_share, (
        f"Grad-CAM mass inside the lesions {mean_inside:.2f} < 2 x their share of the image {mean_share:.2f}"
    )
    assert probs[:, 1].mean() > 0.5
