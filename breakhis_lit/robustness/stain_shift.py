"""Stain-shift robustness: a fitted run scored on its own test split under HED stain shifts of growing strength.

Level ``k`` shifts every test image with the HED jitter of :mod:`breakhis_lit.stain.hed_jitter` at ``k`` times the
training augmentation's "HED-light" strength (factors ``U(1 +- 0.05 k)``, shifts ``U(+-0.02 k)`` in OD units). The
draws come from one generator seeded with ``seed``, in the order of the test split, and are the same uniforms at
every level: each image keeps its direction of shift and only its size grows, and two runs with the same test split
see the same shifted images. Shifted images are rounded to uint8 (as a scanner would store them), then go through
what the run does to its images: Macenko or Reinhard normalisation to the run's saved target (a shift that the
normalisation undoes costs nothing), and the ImageNet normalisation. Level 0 is the plain test split, so its scores
are those of ``breakhis test``. Every level's metrics get patient-bootstrap 95% intervals
(:func:`breakhis_lit.stats.patient_bootstrap`, the split groups resampled).
"""

from __future__ import annotations

import csv
import inspect
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from breakhis_lit import rundir
from breakhis_lit.errors import BreakHisError
from breakhis_lit.files import atomic_write_text, read_json
from breakhis_lit.rundir import BEST, DEFAULT_EVAL, LAST, SCHEMA, STAIN_SHIFT, RunDir, utc_now
from breakhis_lit.stain import hed_jitter
from breakhis_lit.stain.base import StainTarget
from breakhis_lit.stain.registry import normalize_to
from breakhis_lit.stain.target_file import run_target

DEFAULT_LEVELS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
"""Multiples of the HED-light strength: none, half, the training augmentation's, and up to three times it."""
DEFAULT_SEED = 0
"""Seed of the shifts."""
CSV_METRICS = ("accuracy", "balanced_accuracy", "auroc", "f1_macro", "patient_accuracy")
"""Metrics of the ``.csv`` table (the ``.json`` record holds all of them)."""


@dataclass(frozen=True)
class ShiftScore:
    """A run's scores at one shift level.

    Attributes:
        level: Multiple of the HED-light strength.
        scale: Half-width of the concentration factors' range (``0.05 * level``).
        bias: Half-width of the concentration shifts' range (``0.02 * level``, OD units).
        mean_abs_change: Mean absolute change of the test images' pixels, in grey levels (0-255).
        metrics: Per metric, its estimate and patient-bootstrap interval (``Interval.to_dict()``).
    """

    level: float
    scale: float
    bias: float
    mean_abs_change: float
    metrics: dict[str, dict[str, Any]]

    def value(self, metric: str, which: str = "estimate") -> float | None:
        """``estimate``, ``low`` or ``high`` of a metric (``None`` where undefined or absent)."""
        return self.metrics.get(metric, {}).get(which)


@dataclass(frozen=True)
class StainShiftRecord:
    """What ``breakhis stain-shift`` found for one run (``test/stain_shift.json``).

    Attributes:
        run: The run directory.
        experiment: Its experiment name.
        version: N of ``version_N``.
        model: The network (as reports name it).
        checkpoint: The checkpoint scored.
        checkpoint_epoch: Its epoch, counted from 1.
        stain_norm: The run's stain normalisation (``none``, ``macenko``, ``reinhard``).
        hed_scale: The run's training HED jitter factor range.
        hed_bias: The run's training HED jitter shift range.
        classes: Class names in index order.
        split_hash: Hash of the run's split.
        n_images: Test images scored.
        n_patients: Their patients.
        n_groups: Their split groups (what the intervals resample).
        data_seed: The run's ``data.seed`` (of its split).
        seed: Seed of the shifts.
        n_resamples: Bootstrap replicates per interval.
        scores: One :class:`ShiftScore` per level, in the order given.
        created: When it ran (ISO 8601, UTC).
        schema: Layout version.
    """

    run: str
    experiment: str
    version: int
    model: str
    checkpoint: str
    checkpoint_epoch: int | None
    stain_norm: str
    hed_scale: float
    hed_bias: float
    classes: list[str]
    split_hash: str
    n_images: int
    n_patients: int
    n_groups: int
    data_seed: int
    seed: int
    n_resamples: int
    scores: list[ShiftScore]
    created: str = field(default_factory=utc_now)
    schema: int = SCHEMA

    @property
    def label(self) -> str:
        """``experiment/version_N``, the run's name in figures and tables."""
        return f"{self.experiment}/version_{self.version}"


def check_levels(levels: Sequence[float]) -> list[float]:
    """The levels as floats, refusing negative, repeated or too strong ones (factors must stay positive).

    Raises:
        BreakHisError: Naming ``--levels`` and the fix.
    """
    values = [float(v) for v in levels]
    top = 1.0 / hed_jitter.DEFAULT_SCALE
    if not values or any(not (0 <= v < top) for v in values) or len(set(values)) != len(values):
        raise BreakHisError(
            f"--levels {' '.join(map(str, levels))}: distinct multiples of the HED-light strength in [0, {top:g}), "
            f"e.g. --levels {' '.join(f'{v:g}' for v in DEFAULT_LEVELS)}"
        )
    return values


def shift_images(images: Tensor, level: float, seed: int = DEFAULT_SEED) -> Tensor:
    """Shift uint8 ``[N, 3, H, W]`` images at ``level`` times the HED-light strength; uint8 out.

    The uniforms are those of ``seed`` whatever the level (see the module docstring); level 0 returns the images.
    """
    if level == 0:
        return images
    params = hed_jitter.draw(
        images.shape[0],
        torch.Generator().manual_seed(int(seed)),
        scale=hed_jitter.DEFAULT_SCALE * level,
        bias=hed_jitter.DEFAULT_BIAS * level,
    )
    out = torch.empty_like(images)
    for start in range(0, images.shape[0], 64):
        chunk = images[start : start + 64].float().div_(255)
        shifted = hed_jitter.apply(chunk, params[start : start + 64].to(images.device))
        out[start : start + 64] = shifted.mul_(255).round_().to(torch.uint8)
    return out


def data_module(run: RunDir, config: dict[str, Any], root: str | None, cache_dir: str | None) -> Any:
    """The run's data module, bound to its split, with raw (not normalised) images."""
    from breakhis_lit.data.datamodule import BreakHisDataModule

    accepted = set(inspect.signature(BreakHisDataModule).parameters)
    options = {k: v for k, v in (config.get("data") or {}).items() if k in accepted}
    options.update(
        split_file=str(run.splits),
        trained_on=None,
        predict_root=None,
        stain_norm="none",
        stain_target=None,
        demo=False,
        device_cache=False,
        num_workers=0,
    )
    if root is not None:
        options["root"] = root
    if cache_dir is not None:
        options["cache_dir"] = cache_dir
    return BreakHisDataModule(**options)


def _predict(model: Any, images: Tensor, target: StainTarget, device: torch.device, batch_size: int) -> Tensor:
    """Class probabilities ``[N, C]`` (float64, CPU) of uint8 images, normalised as the run normalises them."""
    from breakhis_lit.data.transforms import normalize

    out = []
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size]
            if target.method != "none":
                batch = normalize_to(batch, target)
            logits = model(normalize(batch.to(device)))
            out.append(logits.float().softmax(dim=-1).double().cpu())
    return torch.cat(out)


def score_run(
    run: RunDir,
    levels: Sequence[float] = DEFAULT_LEVELS,
    *,
    seed: int = DEFAULT_SEED,
    checkpoint: str = BEST,
    n_resamples: int = 2000,
    device: str | torch.device = "cpu",
    batch_size: int = 128,
    root: str | None = None,
    cache_dir: str | None = None,
) -> StainShiftRecord:
    """Score a fitted run's best checkpoint on its test split at every shift level.

    Args:
        run: The run directory.
        levels: Multiples of the HED-light strength.
        seed: Seed of the shifts.
        checkpoint: The checkpoint's stem: ``best`` (as ``breakhis test``) or ``last``.
        n_resamples: Patient-bootstrap replicates per interval.
        device: Where the model runs.
        batch_size: Images per forward pass.
        root: The data root (default: the run config's ``data.root``).
        cache_dir: The image cache folder (default: the run config's, else the default cache).

    Returns:
        The :class:`StainShiftRecord`.

    Raises:
        BreakHisError: For a folder that is not a fitted run, a run being fitted, a missing checkpoint, or data
            that are not the run's.
    """
    from breakhis_lit.callbacks.evaluation_report import model_name
    from breakhis_lit.checkpoints import load_classifier
    from breakhis_lit.stats import patient_bootstrap

    run.check_not_fitting()
    levels = check_levels(levels)
    if not run.exists() or not run.splits.is_file() or not run.config.is_file():
        raise BreakHisError(f"{run.path}: not a run made by `breakhis fit` (run.json, splits.csv, config.yaml)")
    if checkpoint not in (BEST, LAST):
        raise BreakHisError(f"--checkpoint {checkpoint}: use {BEST} or {LAST}")
    checkpoint_path = run.checkpoint(checkpoint)
    if not checkpoint_path.is_file():
        raise BreakHisError(f"{checkpoint_path}: missing; score a run whose fit saved it, or pass --checkpoint")
    record = run.record()
    config = yaml.safe_load(run.config.read_text(encoding="utf-8")) or {}
    data = config.get("data") or {}
    stain_norm = str(data.get("stain_norm", "none"))
    target = run_target(run.stain_target, stain_norm)
    dm = data_module(run, config, root, cache_dir)
    dm.setup("test")
    if dm.split_hash() != record.split_hash:
        raise BreakHisError(f"{run.path}: the data under --root do not give the run's split; pass the run's --root")
    ds = dm.dataset("test")
    images = ds.images[ds.rows.to(ds.images.device)].cpu()
    records = dm.records("test")
    labels = [r.label for r in records]
    groups = [r.group for r in records]
    patients = [r.patient_id for r in records]
    device = torch.device(device)
    model = load_classifier(checkpoint_path, map_location=device).eval()
    scores = []
    for level in levels:
        shifted = shift_images(images, level, seed)
        probs = _predict(model, shifted, target, device, batch_size)
        intervals = patient_bootstrap(
            probs.numpy(), labels, groups, patients, class_names=dm.classes, n_resamples=n_resamples, seed=0
        )
        change = (shifted.float() - images.float()).abs().mean().item()
        scores.append(
            ShiftScore(
                level=level,
                scale=hed_jitter.DEFAULT_SCALE * level,
                bias=hed_jitter.DEFAULT_BIAS * level,
                mean_abs_change=round(change, 3),
                metrics={name: interval.to_dict() for name, interval in intervals.items()},
            )
        )
    return StainShiftRecord(
        run=str(run.path),
        experiment=run.path.parent.name,
        version=run.version,
        model=model_name(model.backbone),
        checkpoint=str(checkpoint_path),
        checkpoint_epoch=model.checkpoint_epoch,
        stain_norm=target.method,
        hed_scale=float(data.get("hed_scale", 0.0) or 0.0),
        hed_bias=float(data.get("hed_bias", 0.0) or 0.0),
        classes=list(dm.classes),
        split_hash=record.split_hash,
        n_images=len(records),
        n_patients=len(set(patients)),
        n_groups=len(set(groups)),
        data_seed=int(record.data.seed),
        seed=int(seed),
        n_resamples=int(n_resamples),
        scores=scores,
    )


# ------------------------------------------------------------------------------------------------- files
def record_paths(run: RunDir, checkpoint: str = BEST) -> tuple[Path, Path]:
    """Where a run's stain-shift results go: ``test/stain_shift.{json,csv}`` (``stain_shift_last.*`` for ``last``)."""
    folder = run.evaluation(DEFAULT_EVAL).path
    stem = STAIN_SHIFT if checkpoint == BEST else f"{STAIN_SHIFT}_{checkpoint}"
    return folder / f"{stem}.json", folder / f"{stem}.csv"


def write_record(run: RunDir, record: StainShiftRecord) -> tuple[Path, Path]:
    """Write the record (JSON) and its table (CSV: one row per level) into the run's ``test/`` folder, atomically."""
    json_path, csv_path = record_paths(run, Path(record.checkpoint).stem)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    rundir.write_record(json_path, record)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = [f"{m}{suffix}" for m in CSV_METRICS for suffix in ("", "_low", "_high")]
    writer.writerow(["level", "scale", "bias", "mean_abs_change", *columns])
    for s in record.scores:
        values = [s.value(m, which) for m in CSV_METRICS for which in ("estimate", "low", "high")]
        writer.writerow(
            [f"{s.level:g}", f"{s.scale:g}", f"{s.bias:g}", f"{s.mean_abs_change:.3f}"]
            + ["" if v is None else f"{v:.6f}" for v in values]
        )
    atomic_write_text(csv_path, buffer.getvalue())
    return json_path, csv_path


def read_record(path: str | Path) -> StainShiftRecord:
    """Read a record written by :func:`write_record`.

    Raises:
        BreakHisError: When the file is missing or not such a record.
    """
    path = Path(path)
    data = read_json(path, "`breakhis stain-shift`")
    try:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"schema {data.get('schema')}")
        data["scores"] = [ShiftScore(**s) for s in data["scores"]]
        return StainShiftRecord(**data)
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise BreakHisError(f"{path}: not a stain-shift record ({err}); run `breakhis stain-shift` again") from None
