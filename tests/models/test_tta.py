"""D4 test-time augmentation: the 8 views, their average, and that only test and predict use it."""

import itertools

import lightning as L
import pytest
import torch
from torch import nn

from breakhis_lit.errors import BreakHisError
from breakhis_lit.models import BreakHisClassifier
from breakhis_lit.models.tta import D4_SIZE, d4_log_probs, d4_probs, d4_views, dihedral


class TinyNet(nn.Module):
    """A convolution and a position-dependent head: not invariant to rotations or flips."""

    num_classes = 2

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).relu().flatten(1))


def test_the_eight_views_are_the_dihedral_group() -> None:
    image = torch.arange(16.0).view(1, 1, 4, 4)
    views = [dihedral(image, k) for k in range(D4_SIZE)]
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8
    for a, b in itertools.product(range(D4_SIZE), repeat=2):  # closed under composition
        composed = dihedral(dihedral(image, a), b)
        assert any(torch.equal(composed, v) for v in views)
    assert torch.equal(dihedral(image, 1), image.rot90(1, (-2, -1)))
    assert torch.equal(dihedral(image, 4), image.flip(-1))
    stacked = d4_views(torch.cat([image, image + 100]))
    assert stacked.shape == (16, 1, 4, 4)
    assert torch.equal(stacked[2], views[1][0])


def test_batched_equals_eight_forwards_and_log_probs_give_the_probs_back() -> None:
    net = TinyNet().eval()
    images = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        one = d4_probs(net, images, batched=True)
        eight = d4_probs(net, images, batched=False)
        expected = torch.stack([net(dihedral(images, k)).softmax(-1) for k in range(8)]).mean(0)
        logits = d4_log_probs(net, images)
    assert torch.allclose(one, eight, atol=1e-6)
    assert torch.allclose(eight, expected, atol=1e-6)
    assert torch.allclose(logits.softmax(-1), eight, atol=1e-6)
    with pytest.raises(ValueError, match="square"):
        d4_probs(net, torch.randn(1, 3, 8, 6))


def _loader() -> torch.utils.data.DataLoader:
    torch.manual_seed(1)
    images, labels = torch.randn(12, 3, 8, 8), torch.arange(12) % 2
    rows = [
        {"image": images[i : i + 4], "label": labels[i : i + 4], "index": torch.arange(i, i + 4)} for i in (0, 4, 8)
    ]
    return torch.utils.data.DataLoader(rows, batch_size=None)


def test_test_and_predict_average_the_views_validation_does_not() -> None:
    model = BreakHisClassifier(TinyNet(), channels_last=False, tta="d4")
    assert "tta" not in model.hparams  # chosen when a run is scored, never restored from a checkpoint
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    images = torch.cat([batch["image"] for batch in _loader()])
    with torch.no_grad():
        plain = model.backbone(images).softmax(-1)
        averaged = d4_probs(model.backbone, images)
    trainer.test(model, _loader(), verbose=False)
    assert torch.allclose(model.eval_outputs["test"]["probs"], averaged, atol=1e-6)
    predicted = torch.cat([p["probs"] for p in trainer.predict(model, _loader())])
    assert torch.allclose(predicted, averaged, atol=1e-6)
    trainer.validate(model, _loader(), verbose=False)
    assert torch.allclose(model.eval_outputs["val"]["probs"], plain, atol=1e-6)
    model.tta = "none"
    trainer.test(model, _loader(), verbose=False)
    assert torch.allclose(model.eval_outputs["test"]["probs"], plain, atol=1e-6)


def test_unknown_tta_is_refused() -> None:
    with pytest.raises(BreakHisError, match=r"--model\.tta 'd8'"):
        BreakHisClassifier(TinyNet(), tta="d8")
