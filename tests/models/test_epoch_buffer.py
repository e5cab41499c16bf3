"""EpochBuffer: rows appended in place, storage allocated once, grown when too small, kept across epochs."""

import torch

from breakhis_lit.models.epoch_buffer import EpochBuffer


def test_rows_in_order_and_storage_kept() -> None:
    buffer = EpochBuffer(capacity=10)
    assert buffer.tensors() == ()
    batches = [(torch.rand(4, 2), torch.randint(0, 2, (4,))) for _ in range(2)] + [(torch.rand(2, 2), torch.ones(2))]
    for probs, labels in batches[:2]:
        buffer.append(probs, labels)
    storage = buffer._storage[0]
    buffer.append(*batches[2])
    probs, labels = buffer.tensors()
    assert torch.equal(probs, torch.cat([b[0] for b in batches]))
    assert torch.equal(labels, torch.cat([b[1] for b in batches]).long())
    assert labels.dtype == torch.int64  # the first append's dtype
    assert buffer._storage[0] is storage  # no reallocation within capacity
    buffer.clear()
    assert len(buffer) == 0
    buffer.append(*batches[0])
    assert buffer._storage[0] is storage  # reused next epoch
    assert torch.equal(buffer.tensors()[0], batches[0][0])


def test_grows_when_capacity_is_too_small() -> None:
    buffer = EpochBuffer(capacity=3)
    rows = torch.arange(20.0).view(10, 2)
    for chunk in rows.split(4):
        buffer.append(chunk)
    assert len(buffer) == 10
    assert torch.equal(buffer.tensors()[0], rows)
    assert buffer._storage[0].shape[0] >= 10
