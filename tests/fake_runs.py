"""Fabricated run directories written through the run-directory contract (for the report, table and figure tests).

The test set of a fake run (images, patients, labels) depends only on its task, magnification, seed and size, so
runs of different models with the same seed are scored on the same images and can be compared pairwise; each
model's predictions come from its own random stream, tuned to a target accuracy.
"""

import math
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from breakhis_lit.data.naming import SUBTYPE_CODES, SUBTYPE_LABELS
from breakhis_lit.data.splits import SplitRow, data_fingerprint, split_hash, write_split_csv
from breakhis_lit.rundir import (
    CONFIG,
    EVAL_RECORD,
    FIT_RECORD,
    GRADCAM,
    HISTORY,
    PREDICTIONS,
    RUN_RECORD,
    DataSpec,
    EvalRecord,
    FitRecord,
    GradCAMEntry,
    PredictionRow,
    RunDir,
    RunRecord,
    write_gradcam_manifest,
    write_history,
    write_predictions,
    write_record,
)

BINARY_CLASSES = ["benign", "malignant"]
SUBTYPE_CLASSES = list(SUBTYPE_CODES)
PARAMS = {
    "DALAResNet50": 25_611_842,
    "resnet50": 23_512_130,
    "seresnet50": 26_043_482,
    "densenet121": 6_955_906,
    "vgg16": 134_268_738,
    "VGG16Inception": 38_139_938,
    "vit_base_patch16_224": 85_800_194,
    "swin_base_patch4_window7_224": 86_745_274,
    "vit_small_patch14_dinov2": 22_057_346,
    "vit_base_patch14_dinov2": 86_582_018,
}
OUR_CLASSES = {"DALAResNet50", "VGG16Inception"}


def _rng(*parts: Any) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("/".join(map(str, parts)).encode()))


def fake_test_set(task: str, magnification: Any, seed: int, n_images: int) -> tuple[list[str], list[str], np.ndarray]:
    """Paths, patient ids and labels of a fake run's test images (the same for every model)."""
    rng = _rng("test-set", task, magnification, seed, n_images)
    classes = BINARY_CLASSES if task == "binary" else SUBTYPE_CLASSES
    n_patients = max(4, n_images // 20)
    patient_class = np.arange(n_patients) % len(classes)
    rng.shuffle(patient_class)
    patient_of = np.sort(rng.integers(0, n_patients, n_images))
    patient_of[:n_patients] = np.arange(n_patients)  # every patient has an image
    patient_of.sort()
    labels = patient_class[patient_of]
    patients = [f"14-{10000 + p}" for p in patient_of]
    paths = [f"BreaKHis_v1/fake/{classes[labels[i]]}/{patients[i]}/img-{i:04d}.png" for i in range(n_images)]
    return paths, patients, labels


def _probabilities(rng: np.random.Generator, labels: np.ndarray, n_classes: int, quality: float) -> np.ndarray:
    probs = rng.dirichlet(np.ones(n_classes), size=len(labels))
    correct = rng.random(len(labels)) < quality
    wrong = (labels + rng.integers(1, n_classes, len(labels))) % n_classes
    predicted = np.where(correct, labels, wrong)
    probs[np.arange(len(labels)), predicted] += probs.max(axis=1) + 0.05
    return probs / probs.sum(axis=1, keepdims=True)


def _metrics(labels: np.ndarray, probs: np.ndarray, patients: Sequence[str], classes: Sequence[str]) -> dict:
    from sklearn.metrics import roc_auc_score

    predicted = probs.argmax(axis=1)
    n = len(classes)
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    total = matrix.sum()
    support, predicted_count, correct = matrix.sum(1), matrix.sum(0), np.diag(matrix)
    recall = correct / np.maximum(support, 1)
    precision = correct / np.maximum(predicted_count, 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    specificity = np.array(
        [(total - support[c] - predicted_count[c] + correct[c]) / max(total - support[c], 1) for c in range(n)]
    )
    if n == 2:
        sensitivity, spec = recall[1], recall[0]
        gmean = math.sqrt(sensitivity * spec)
        iba = (1 + 0.1 * (sensitivity - spec)) * gmean**2
        precision_value, recall_value, specificity_value = precision[1], sensitivity, spec
        auroc = roc_auc_score(labels, probs[:, 1])
    else:
        gmean = float(np.prod(recall) ** (1 / n))
        iba = gmean**2
        precision_value, recall_value, specificity_value = precision.mean(), recall.mean(), specificity.mean()
        auroc = roc_auc_score(labels, probs, multi_class="ovr", labels=list(range(n)))
    ids = np.asarray(patients)
    patient_right, patient_scores = [], []
    for patient in sorted(set(patients)):
        mask = ids == patient
        patient_right.append(probs[mask].mean(axis=0).argmax() == labels[mask][0])
        patient_scores.append(float((predicted[mask] == labels[mask]).mean()))
    return {
        "loss": float(-np.log(probs[np.arange(len(labels)), labels]).mean()),
        "accuracy": float(correct.sum() / total),
        "balanced_accuracy": float(recall.mean()),
        "precision": float(precision_value),
        "recall": float(recall_value),
        "specificity": float(specificity_value),
        **{f"f1_{name}": float(f1[i]) for i, name in enumerate(classes)},
        "f1_macro": float(f1.mean()),
        "gmean": float(gmean),
        "iba": float(iba),
        "auroc": float(auroc),
        "patient_accuracy": float(np.mean(patient_right)),
        "patient_recognition_rate": float(np.mean(patient_scores)),
        "_confusion": matrix,
    }


def _history(rng: np.random.Generator, epochs: int, quality: float) -> list[dict[str, float]]:
    rows, elapsed = [], 0.0
    for epoch in range(epochs):
        progress = 1 - math.exp(-(epoch + 1) / max(epochs / 3, 1))
        elapsed += float(rng.uniform(20, 40))
        train_accuracy = 0.55 + (quality + 0.05 - 0.55) * progress + rng.normal(0, 0.01)
        val_accuracy = 0.55 + (quality - 0.55) * progress + rng.normal(0, 0.02)
        rows.append(
            {
                "epoch": epoch,
                "elapsed_s": round(elapsed, 3),
                "train/loss": round(0.7 * (1 - progress) + 0.1 + abs(rng.normal(0, 0.02)), 5),
                "train/accuracy": round(min(train_accuracy, 1.0), 5),
                "val/loss": round(0.7 * (1 - progress) + 0.18 + abs(rng.normal(0, 0.04)), 5),
                "val/accuracy": round(min(val_accuracy, 1.0), 5),
                "val/balanced_accuracy": round(min(val_accuracy - 0.01, 1.0), 5),
                "val/f1_macro": round(min(val_accuracy - 0.03, 1.0), 5),
            }
        )
    return rows


def _gradcam_png(path: Path, rng: np.random.Generator, malignant: bool, size: int = 96, heat: bool = True) -> None:
    y, x = np.mgrid[0:size, 0:size] / size
    tissue = np.stack([0.85 - 0.2 * y, 0.55 + 0.1 * np.sin(12 * x), 0.75 + 0.1 * np.cos(9 * y)], axis=-1)
    image = tissue
    if heat:
        cy, cx = rng.uniform(0.3, 0.7, size=2)
        cam = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (0.02 if malignant else 0.06))
        image = 0.55 * tissue + 0.45 * np.stack([cam, 0.3 * cam, 1 - cam], axis=-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)


def write_fake_run(
    run_dir: str | Path,
    *,
    model: str = "DALAResNet50",
    magnification: str | int | None = "40",
    seed: int = 0,
    fold: int | None = None,
    task: str = "binary",
    split: str = "patient",
    group_by: str = "accession",
    experiment: str | None = None,
    epochs: int = 6,
    quality: float | None = None,
    test: dict[str, Any] | None = None,
    gradcam: bool = True,
    n_images: int = 120,
    evaluate: bool = True,
) -> Path:
    """Write one plausible run: run.json, splits.csv, config.yaml, history.csv, fit.json and its test evaluation.

    Values are random but deterministic in (model, magnification, seed, fold, task) and mutually
    consistent (the metrics follow from predictions.csv).

    Args:
        run_dir: the ``version_N`` directory to create.
        model: the run's model (class name or timm model name).
        magnification: 40/100/200/400, or None for all magnifications.
        seed: the run's seed (also of its split).
        fold: the official or k-fold test fold (with ``split`` official/kfold).
        task: ``"binary"`` or ``"subtype"``.
        split: the split strategy recorded.
        group_by: what the split groups by.
        experiment: the experiment name (default: the parent folder's name).
        epochs: rows of history.csv.
        quality: the target accuracy (default: random in 0.82-0.92).
        test: metrics that override the computed ones (e.g. ``{"accuracy": 0.8}``).
        gradcam: whether to write a benign and a malignant Grad-CAM overlay with their manifest.
        n_images: test images.
        evaluate: whether to write the ``test/`` evaluation.

    Returns:
        ``run_dir``.
    """
    run = RunDir(Path(run_dir))
    run.path.mkdir(parents=True, exist_ok=True)
    rng = _rng(model, magnification, seed, fold, task)
    classes = BINARY_CLASSES if task == "binary" else SUBTYPE_CLASSES
    quality = float(rng.uniform(0.82, 0.92)) if quality is None else quality
    paths, patients, labels = fake_test_set(task, magnification, seed, n_images)
    mags = [int(magnification)] * n_images if magnification not in (None, "all") else [40] * n_images
    rows = [
        SplitRow(
            path,
            patient,
            patient,
            SUBTYPE_LABELS.get(classes[label], classes[label]),
            classes[label] if task == "subtype" else ("F" if label == 0 else "DC"),
            mag,
            "test",
            1000 + i,
        )
        for i, (path, patient, label, mag) in enumerate(zip(paths, patients, labels, mags, strict=True))
    ]
    write_split_csv(rows, run.splits)
    data = DataSpec(
        magnification="all" if magnification in (None, "all") else int(magnification),
        task=task,
        split=split,
        group_by=group_by,
        train_ratio=0.6,
        val_ratio=0.1,
        test_ratio=0.3,
        fold=1 if fold is None else fold,
        num_folds=5,
        seed=seed,
        on_bad_image="error",
        image_size=224,
    )
    name = experiment or run.path.parent.name
    write_record(
        run.path / RUN_RECORD,
        RunRecord(
            experiment=name,
            version=max(run.version, 0),
            model=model,
            backbone=f"breakhis_lit.models.{model if model in OUR_CLASSES else 'TimmClassifier'}",
            root="data/BreaKHis_v1",
            data=data,
            classes=classes,
            split_hash=split_hash(rows),
            data_fingerprint=data_fingerprint(rows),
            n_images={"train": 0, "val": 0, "test": n_images, "skipped": 0},
            max_epochs=epochs,
            package_version="0.1.0",
            git_commit=None,
        ),
    )
    config = {
        "seed_everything": seed,
        "trainer": {"max_epochs": epochs},
        "model": {"lr": 1e-4},
        "data": {"task": task, "split": split},
    }
    (run.path / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    history = _history(rng, epochs, quality)
    write_history(run.path / HISTORY, history)
    best = max(range(epochs), key=lambda e: history[e]["val/balanced_accuracy"])
    write_record(
        run.path / FIT_RECORD,
        FitRecord(
            fit_time_s=round(history[-1]["elapsed_s"] + float(rng.uniform(1, 5)), 3),
            epochs=epochs,
            max_epochs=epochs,
            monitor="val/balanced_accuracy",
            mode="max",
            best_epoch=best + 1,
            time_to_best_s=history[best]["elapsed_s"],
            best_score=history[best]["val/balanced_accuracy"],
        ),
    )
    if not evaluate:
        return run.path
    folder = run.evaluation().path
    probs = _probabilities(rng, labels, len(classes), quality)
    metrics = _metrics(labels, probs, patients, classes)
    matrix = metrics.pop("_confusion")
    metrics.update(test or {})
    predicted = probs.argmax(axis=1)
    write_predictions(
        folder / PREDICTIONS,
        [
            PredictionRow(
                paths[i], patients[i], patients[i], classes[labels[i]], tuple(probs[i]), classes[predicted[i]]
            )
            for i in range(n_images)
        ],
        classes,
    )
    params = PARAMS.get(model, 11_177_538)
    write_record(
        folder / EVAL_RECORD,
        EvalRecord(
            name="test",
            model=model,
            data=data,
            differs=[],
            classes=classes,
            split_hash=split_hash(rows),
            checkpoint=str(run.checkpoint("best")),
            checkpoint_epoch=best + 1,
            n_images=n_images,
            n_patients=len(set(patients)),
            n_groups=len(set(patients)),
            metrics=metrics,
            confusion_matrix=matrix.tolist(),
            params_total=params,
            params_trainable=params,
        ),
    )
    if gradcam:
        entries = []
        for kind in ("benign", "malignant"):
            index = next(
                i for i in range(n_images) if SUBTYPE_LABELS.get(classes[labels[i]], classes[labels[i]]) == kind
            )
            file, image = f"test_{kind}_0.png", f"test_{kind}_0_image.png"
            _gradcam_png(folder / GRADCAM / file, rng, malignant=kind == "malignant")
            _gradcam_png(folder / GRADCAM / image, rng, malignant=kind == "malignant", heat=False)
            entries.append(
                GradCAMEntry(
                    file,
                    image,
                    paths[index],
                    classes[labels[index]],
                    classes[predicted[index]],
                    float(probs[index].max()),
                )
            )
        write_gradcam_manifest(folder / GRADCAM, entries)
    return run.path


def write_fake_runs(
    root: str | Path,
    models: Sequence[str] = ("DALAResNet50", "resnet50", "vit_small_patch14_dinov2"),
    magnifications: Sequence[str | int | None] = ("40", "100"),
    seeds: Sequence[int] = (0, 1),
    **kwargs: Any,
) -> list[Path]:
    """Write a grid of fake runs as ``root/<model>_<mag>x/version_<i>`` (one version per seed).

    Args:
        root: the ``lightning_logs``-like folder.
        models: model names.
        magnifications: one experiment folder per model and magnification.
        seeds: one run per seed.
        **kwargs: passed to :func:`write_fake_run`.

    Returns:
        The run directories.
    """
    root = Path(root)
    runs = []
    for model in models:
        for magnification in magnifications:
            slug = model.replace("/", "_").lower()
            experiment = f"{slug}_{magnification if magnification is not None else 'all'}x"
            for version, seed in enumerate(seeds):
                runs.append(
                    write_fake_run(
                        root / experiment / f"version_{version}",
                        model=model,
                        magnification=magnification,
                        seed=seed,
                        **kwargs,
                    )
                )
    return runs
