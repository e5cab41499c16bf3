from collections import Counter

import numpy as np
import pytest

from breakhis_lit.data.samplers import BalancedSampler
from breakhis_lit.errors import BreakHisError

LABELS = np.array([0] * 10 + [1] * 30)


def test_oversample_balanced_and_complete():
    sampler = BalancedSampler(LABELS, "oversample", seed=0)
    idx = list(sampler)
    assert len(idx) == len(sampler) == 60
    assert Counter(LABELS[idx].tolist()) == {0: 30, 1: 30}
    assert set(np.flatnonzero(LABELS == 1)) <= set(idx)


def test_undersample_balanced():
    sampler = BalancedSampler(LABELS, "undersample", seed=0)
    idx = list(sampler)
    assert len(idx) == len(sampler) == 20
    assert Counter(LABELS[idx].tolist()) == {0: 10, 1: 10}
    assert len(set(idx)) == 20


def test_same_seed_and_epoch_identical_across_instances():
    a, b = BalancedSampler(LABELS, seed=3), BalancedSampler(LABELS, seed=3)
    assert list(a) == list(b)  # epoch 0 on both ("ranks")
    assert list(a) == list(b)  # epoch 1 from the iteration counter
    a.set_epoch(5)
    b.set_epoch(5)
    assert list(a) == list(b)
    assert list(BalancedSampler(LABELS, seed=4)) != list(BalancedSampler(LABELS, seed=3))


def test_epoch_changes_the_list():
    s = BalancedSampler(LABELS, seed=0)
    first, second = list(s), list(s)
    assert first != second
    s.set_epoch(0)
    assert list(s) == first
    assert list(s) == first  # set_epoch wins over the counter until called again


def test_bad_mode():
    with pytest.raises(BreakHisError, match="sampler"):
        BalancedSampler(LABELS, "smote")


def test_epoch_source_fixes_the_order_across_instances():
    """A resumed run builds a new sampler: with the trainer's epoch as source it draws what the first run drew."""
    from breakhis_lit.data.samplers import EpochShuffleSampler

    labels = [0, 1] * 10
    first = EpochShuffleSampler(labels, seed=5)
    epochs = [list(first) for _ in range(3)]
    assert epochs[0] != epochs[1]
    resumed = EpochShuffleSampler(labels, seed=5, epoch_source=lambda: 2)
    assert list(resumed) == epochs[2]
    balanced = BalancedSampler(labels[:15], "oversample", seed=1, epoch_source=lambda: 4)
    assert list(balanced) == balanced.indices(4).tolist()
    assert sorted(list(EpochShuffleSampler(labels, seed=0, epoch_source=lambda: None))) == list(range(20))
