"""One run's test predictions (probabilities, labels, split groups, patients), checked once for the statistics."""

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from breakhis_lit.errors import BreakHisError

_PROB_SUM_TOLERANCE = 1e-3  # predictions.csv keeps 6 decimals, so rows sum to 1 only up to rounding


def _object_array(values: Any) -> np.ndarray:
    """A 1-d object array of plain Python values (str, int, ...)."""
    items = _as_numpy(values).tolist() if isinstance(values, (np.ndarray, torch.Tensor)) else list(values)
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def _encode(values: np.ndarray, what: str, name: str) -> tuple[np.ndarray, list[Any]]:
    """Integer codes in order of first appearance, and the distinct values."""
    index: dict[Any, int] = {}
    codes = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values.tolist()):
        if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
            raise BreakHisError(f"{name}: {what} of image {i} is empty; give every image a {what[:-1]} id")
        codes[i] = index.setdefault(value, len(index))
    return codes, list(index)


def _varying(codes: np.ndarray, values: np.ndarray, n_codes: int) -> np.ndarray:
    """The codes whose entries hold more than one distinct (non-negative integer) value."""
    low, high = np.full(n_codes, np.iinfo(np.int64).max), np.full(n_codes, -1)
    np.minimum.at(low, codes, values)
    np.maximum.at(high, codes, values)
    return np.flatnonzero(low != high)


def _as_numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


@dataclass(frozen=True, eq=False)
class Predictions:
    """The test predictions of one run: what every statistic of :mod:`breakhis_lit.stats` starts from.

    Probabilities are kept twice, as the package's metrics see them: ``probs32`` (rounded to float32, as
    :class:`~breakhis_lit.metrics.ClassificationMetrics` accumulates them) for the image-level metrics and AUROC,
    ``probs`` (float64) for the patient-level ones (as :func:`~breakhis_lit.metrics.patient_level_metrics`).

    Args:
        probs: Class probabilities ``[N, C]`` (numpy or torch, any float dtype; rows sum to 1).
        labels: True class indices ``[N]``.
        groups: Split group of every image ``[N]`` (e.g. accession numbers; strings or ints): the unit that a
            patient bootstrap resamples. Each group must hold whole patients.
        patients: Patient id of every image ``[N]`` (strings or ints), for the patient-level metrics.
        class_names: Class names in index order; default ``"0"``, ``"1"``, ...
        threshold: Binary task only: an image is predicted class 1 when ``probs[:, 1] > threshold`` (a patient
            when its mean probability of class 1 is ``>= threshold``), as in :mod:`breakhis_lit.metrics`.
        images: Optional image ids ``[N]`` (e.g. the ``path`` column of ``predictions.csv``), used to align and
            compare runs.
        name: The run's name in error messages.

    Raises:
        BreakHisError: On wrong shapes, values that are not probabilities, labels outside the classes, empty ids,
            a patient with two labels, or a patient split across groups.
    """

    probs: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    patients: np.ndarray
    class_names: tuple[str, ...] = ()
    threshold: float = 0.5
    images: tuple[str, ...] | None = None
    name: str = "predictions"
    probs32: np.ndarray = field(init=False, repr=False)
    preds: np.ndarray = field(init=False, repr=False)
    group_codes: np.ndarray = field(init=False, repr=False)
    group_names: list[Any] = field(init=False, repr=False)
    patient_codes: np.ndarray = field(init=False, repr=False)
    patient_names: list[Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        name = self.name
        set_ = object.__setattr__
        probs = _as_numpy(self.probs)
        labels = _as_numpy(self.labels)
        if probs.ndim != 2 or probs.shape[1] < 2 or probs.shape[0] == 0 or not np.issubdtype(probs.dtype, np.floating):
            raise BreakHisError(f"{name}: probs must be a float array [N>0, C>=2], got {probs.shape} {probs.dtype}")
        n, c = probs.shape
        if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
            raise BreakHisError(f"{name}: labels must be integer class indices of shape [{n}], got {labels.shape}")
        if labels.min() < 0 or labels.max() >= c:
            raise BreakHisError(
                f"{name}: labels must be class indices in [0, {c - 1}], got [{labels.min()}, {labels.max()}]"
            )
        if not np.all((probs >= 0) & (probs <= 1)) or np.any(np.abs(probs.sum(axis=1) - 1) > _PROB_SUM_TOLERANCE):
            raise BreakHisError(
                f"{name}: probs must be class probabilities (in [0, 1], rows summing to 1): apply softmax"
            )
        groups, patients = _object_array(self.groups), _object_array(self.patients)
        for what, values in (("groups", groups), ("patients", patients)):
            if len(values) != n:
                raise BreakHisError(f"{name}: {what} must have one entry per image ({n}), got {len(values)}")
        names = tuple(str(x) for x in self.class_names) or tuple(str(k) for k in range(c))
        if len(names) != c or len(set(names)) != c:
            raise BreakHisError(f"{name}: class_names must be {c} unique names, got {list(names)}")
        if c == 2 and not 0.0 <= float(self.threshold) <= 1.0:
            raise BreakHisError(f"{name}: threshold must be in [0, 1], got {self.threshold}")
        images = None if self.images is None else tuple(str(x) for x in self.images)
        if images is not None and (len(images) != n or len(set(images)) != n):
            raise BreakHisError(f"{name}: images must be {n} unique image ids, got {len(set(images))} distinct")

        group_codes, group_names = _encode(groups, "groups", name)
        patient_codes, patient_names = _encode(patients, "patients", name)
        mixed = _varying(patient_codes, labels, len(patient_names))
        if mixed.size:
            raise BreakHisError(
                f"{name}: patient {patient_names[mixed[0]]!r} has images with different labels; give each patient "
                "one label, e.g. use the patient folder or '<id>/<label>' as patient id"
            )
        split = _varying(patient_codes, group_codes, len(patient_names))
        if split.size:
            raise BreakHisError(
                f"{name}: patient {patient_names[split[0]]!r} lies in several groups; groups must hold whole "
                "patients (use accession numbers or patient ids as groups)"
            )

        probs64 = probs.astype(np.float64)
        probs32 = probs.astype(np.float32)
        # The package's image decisions, with torch's float32 comparison and arg-max (first class on ties).
        t32 = torch.from_numpy(probs32)
        preds = (t32[:, 1] > float(self.threshold)) if c == 2 else t32.argmax(dim=1)
        set_(self, "probs", probs64)
        set_(self, "probs32", probs32.astype(np.float64))
        set_(self, "labels", labels.astype(np.int64))
        set_(self, "groups", groups)
        set_(self, "patients", patients)
        set_(self, "class_names", names)
        set_(self, "threshold", float(self.threshold))
        set_(self, "images", images)
        set_(self, "preds", preds.numpy().astype(np.int64))
        set_(self, "group_codes", group_codes)
        set_(self, "group_names", group_names)
        set_(self, "patient_codes", patient_codes)
        set_(self, "patient_names", patient_names)

    @property
    def n_images(self) -> int:
        """Number of images ``N``."""
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of classes ``C``."""
        return int(self.probs.shape[1])

    @property
    def binary(self) -> bool:
        """Whether the task has two classes."""
        return self.num_classes == 2

    @property
    def n_groups(self) -> int:
        """Number of distinct split groups."""
        return len(self.group_names)

    @property
    def n_patients(self) -> int:
        """Number of distinct patients."""
        return len(self.patient_names)

    def subset(self, order: np.ndarray) -> "Predictions":
        """The same run with its images taken in ``order`` (indices into the images)."""
        images = None if self.images is None else tuple(self.images[i] for i in order)
        return replace(self, probs=self.probs[order], labels=self.labels[order], groups=self.groups[order],
                       patients=self.patients[order], images=images)  # fmt: skip

    def patient_decisions(self) -> tuple[np.ndarray, np.ndarray]:
        """Every patient's label and prediction, as :func:`~breakhis_lit.metrics.patient_level_metrics` decides.

        A patient's prediction comes from the mean of its images' probabilities (float64): binary, class 1 when the
        mean probability of class 1 is ``>= threshold``; multiclass, the arg-max (first class on ties).

        Returns:
            ``(labels [P], predictions [P])`` in patient-code order.
        """
        images = np.bincount(self.patient_codes, minlength=self.n_patients).astype(np.float64)
        mean = np.zeros((self.n_patients, self.num_classes))
        np.add.at(mean, self.patient_codes, self.probs)
        mean /= images[:, None]
        decision = (mean[:, 1] >= self.threshold).astype(np.int64) if self.binary else mean.argmax(axis=1)
        first = np.unique(self.patient_codes, return_index=True)[1]
        return self.labels[first], decision

    def recognition_correct(self) -> np.ndarray:
        """Whether each image is classified correctly by the patient recognition rate's rule (float64 decisions)."""
        decision = self.probs[:, 1] > self.threshold if self.binary else self.probs.argmax(axis=1)
        return decision == self.labels

    def patients_per_class(self) -> np.ndarray:
        """Number of distinct patients of every class, shape ``[C]``."""
        first = np.unique(self.patient_codes, return_index=True)[1]
        return np.bincount(self.labels[first], minlength=self.num_classes)


def check_patients_per_class(pred: Predictions, minimum: int = 2) -> None:
    """Refuse a split with fewer than ``minimum`` patients in some class.

    Raises:
        BreakHisError: Naming the run, the class and the fix.
    """
    counts = pred.patients_per_class()
    low = np.flatnonzero(counts < minimum)
    if low.size:
        k = int(low[0])
        raise BreakHisError(
            f"{pred.name}: class {pred.class_names[k]!r} has {counts[k]} test patient(s), fewer than {minimum}; "
            "use a split with more patients per class (e.g. the binary task or pooled folds)"
        )


def aligned(a: Predictions, b: Predictions) -> Predictions:
    """``b`` with its images in the order of ``a``'s, after checking that both runs saw the same test set.

    Images are matched by their ids when both runs have them, else by position. Labels, groups and patients must
    then agree image by image.

    Raises:
        BreakHisError: On different classes or tasks, different images, or different labels, groups or patients.
    """
    if a.class_names != b.class_names:
        raise BreakHisError(
            f"{a.name} vs {b.name}: different classes {list(a.class_names)} and {list(b.class_names)}; "
            "compare runs of the same task"
        )
    if a.images is not None and b.images is not None:
        if set(a.images) != set(b.images):
            missing = sorted(set(a.images) ^ set(b.images))
            raise BreakHisError(
                f"{a.name} vs {b.name}: different test images ({len(missing)} not in both, first {missing[0]!r}); "
                "compare runs of the same split"
            )
        position = {image: i for i, image in enumerate(b.images)}
        order = np.array([position[image] for image in a.images])
        if not np.array_equal(order, np.arange(len(order))):
            b = b.subset(order)
    elif a.n_images != b.n_images:
        raise BreakHisError(
            f"{a.name} vs {b.name}: {a.n_images} and {b.n_images} test images; compare runs of the same split"
        )
    for what, x, y in (
        ("labels", a.labels, b.labels),
        ("groups", a.groups, b.groups),
        ("patients", a.patients, b.patients),
    ):
        if not np.array_equal(x, y):
            raise BreakHisError(
                f"{a.name} vs {b.name}: different {what} for the same images; compare runs of the same split"
            )
    return b
