import torch
from torch.utils.data import DataLoader

from breakhis_lit.data.dataset import CachedImageDataset, passthrough_collate


def _dataset():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 4, 4).contiguous()
    return CachedImageDataset(images, rows=[9, 7, 5, 3], labels=[0, 1, 0, 1], groups=[2, 2, 0, 1])


def test_getitems_returns_batch_dict():
    ds = _dataset()
    batch = ds.__getitems__([1, 3])
    assert batch["image"].shape == (2, 3, 4, 4)
    assert batch["image"].dtype == torch.uint8
    assert batch["image"][:, 0, 0, 0].tolist() == [7, 3]
    assert batch["label"].tolist() == [1, 1]
    assert batch["group"].tolist() == [2, 1]
    assert batch["index"].tolist() == [1, 3]
    single = ds[2]
    assert single["image"][0, 0, 0] == 5
    assert single["index"] == 2


def test_dataloader_uses_getitems():
    loader = DataLoader(_dataset(), batch_size=3, collate_fn=passthrough_collate)
    batches = list(loader)
    assert [b["index"].tolist() for b in batches] == [[0, 1, 2], [3]]
    assert all(b["label"].dtype == torch.int64 for b in batches)


def test_default_collate_fallback():
    ds = _dataset()
    batch = passthrough_collate([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, 4, 4)
