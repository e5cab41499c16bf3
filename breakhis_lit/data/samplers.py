"""Training samplers whose order is a function of (seed, epoch): shuffled, or class-balanced with imbalanced-learn.

Drawing each epoch's list from ``seed + epoch`` (rather than from a generator that advances) makes a run resumed
from a checkpoint see exactly the batches of an uninterrupted one, and every DDP rank draw the same list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from breakhis_lit.errors import BreakHisError

SAMPLERS = ("none", "oversample", "undersample")


class EpochShuffleSampler(Sampler[int]):
    """Yield a permutation of all samples drawn from ``seed + epoch``.

    The epoch comes from ``epoch_source`` when given (the DataModule passes the trainer's current epoch, which
    survives a resume), else from the last :meth:`set_epoch` call, else from the number of earlier ``__iter__``
    calls (Lightning does not forward ``set_epoch`` through its ``DistributedSamplerWrapper``).

    Args:
        labels: Class index of every sample.
        seed: Base seed.
        epoch_source: Returns the current epoch, or ``None`` when it is not known.
    """

    def __init__(
        self, labels: Sequence[int] | np.ndarray, seed: int = 0, epoch_source: Callable[[], int | None] | None = None
    ) -> None:
        self.labels = np.asarray(labels, dtype=np.int64)
        if self.labels.size == 0:
            raise BreakHisError("sampler: no training samples; check the split")
        self.seed = int(seed)
        self.epoch_source = epoch_source
        self._epoch: int | None = None
        self._iterations = 0
        self._length = len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        """Use the list of this epoch on the next iteration."""
        self._epoch = int(epoch)

    @property
    def epoch(self) -> int:
        """The epoch the next iteration draws."""
        epoch = self.epoch_source() if self.epoch_source is not None else None
        if epoch is not None:
            return int(epoch)
        return self._epoch if self._epoch is not None else self._iterations

    def indices(self, epoch: int) -> np.ndarray:
        """Return the shuffled index list of an epoch."""
        return np.random.default_rng(self.seed + epoch).permutation(len(self.labels))

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch
        self._iterations += 1
        return iter(self.indices(epoch).tolist())

    def __len__(self) -> int:
        return self._length


class BalancedSampler(EpochShuffleSampler):
    """Yield a class-balanced, shuffled index list, redrawn every epoch.

    The list of epoch ``e`` is drawn with imbalanced-learn's ``RandomOverSampler`` (``oversample``) or
    ``RandomUnderSampler`` (``undersample``) seeded by ``seed + e`` and shuffled with the same seed, so every
    DDP rank draws the identical list (Lightning's ``DistributedSamplerWrapper`` then shards it). The epoch is
    found as in :class:`EpochShuffleSampler`.

    Args:
        labels: Class index of every sample.
        mode: ``oversample`` or ``undersample``.
        seed: Base seed.
        epoch_source: Returns the current epoch, or ``None`` when it is not known.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        mode: str = "oversample",
        seed: int = 0,
        epoch_source: Callable[[], int | None] | None = None,
    ) -> None:
        if mode not in ("oversample", "undersample"):
            raise BreakHisError(f"sampler {mode!r}: unknown sampler; use one of {', '.join(SAMPLERS)}")
        super().__init__(labels, seed=seed, epoch_source=epoch_source)
        self.mode = mode
        counts = np.bincount(self.labels)
        counts = counts[counts > 0]
        per_class = counts.max() if mode == "oversample" else counts.min()
        self._length = int(per_class * len(counts))

    def indices(self, epoch: int) -> np.ndarray:
        """Return the balanced, shuffled index list of an epoch."""
        from imblearn.over_sampling import RandomOverSampler
        from imblearn.under_sampling import RandomUnderSampler

        seed = self.seed + epoch
        cls = RandomOverSampler if self.mode == "oversample" else RandomUnderSampler
        if len(np.unique(self.labels)) < 2:
            idx = np.arange(len(self.labels))
        else:
            idx, _ = cls(random_state=seed).fit_resample(np.arange(len(self.labels)).reshape(-1, 1), self.labels)
            idx = idx.ravel()
        return idx[np.random.default_rng(seed).permutation(len(idx))]
