"""Fabricated run directories that follow the run-directory contract (for the report, table and figure tests)."""

import csv
import json
import math
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

BINARY_CLASSES = ["benign", "malignant"]
SUBTYPE_CLASSES = ["A", "F", "PT", "TA", "DC", "LC", "MC", "PC"]
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


def _confusion(rng: np.random.Generator, n_classes: int, n_images: int, accuracy: float) -> np.ndarray:
    support = rng.multinomial(n_images, np.linspace(1.0, 2.0, n_classes) / np.linspace(1.0, 2.0, n_classes).sum())
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    for true, count in enumerate(support):
        correct = int(np.rint(count * np.clip(accuracy + rng.normal(0, 0.02), 0, 1)))
        matrix[true, true] = correct
        wrong = rng.multinomial(count - correct, np.full(n_classes - 1, 1 / (n_classes - 1)))
        matrix[true, [c for c in range(n_classes) if c != true]] = wrong
    return matrix


def _metrics_from_confusion(matrix: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    total = matrix.sum()
    support, predicted, correct = matrix.sum(1), matrix.sum(0), np.diag(matrix)
    recall = correct / np.maximum(support, 1)
    precision = correct / np.maximum(predicted, 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    specificity = np.array(
        [(total - support[c] - predicted[c] + correct[c]) / max(total - support[c], 1) for c in range(len(classes))]
    )
    if len(classes) == 2:
        sensitivity, spec = recall[1], recall[0]
        gmean = math.sqrt(sensitivity * spec)
        iba = (1 + 0.1 * (sensitivity - spec)) * gmean**2
        precision_value, recall_value, specificity_value = precision[1], sensitivity, spec
    else:
        gmean = float(np.prod(recall) ** (1 / len(classes)))
        iba = gmean**2
        precision_value, recall_value, specificity_value = precision.mean(), recall.mean(), specificity.mean()
    metrics = {
        "accuracy": float(correct.sum() / total),
        "balanced_accuracy": float(recall.mean()),
        "precision": float(precision_value),
        "recall": float(recall_value),
        "specificity": float(specificity_value),
        **{f"f1_{name}": float(f1[i]) for i, name in enumerate(classes)},
        "f1_macro": float(f1.mean()),
        "gmean": float(gmean),
        "iba": float(iba),
    }
    return metrics


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
                "train/loss": round(0.7 * (1 - progress) + 0.1 + abs(rng.normal(0, 0.02)), 5),
                "train/accuracy": round(min(train_accuracy, 1.0), 5),
                "val/loss": round(0.7 * (1 - progress) + 0.18 + abs(rng.normal(0, 0.04)), 5),
                "val/accuracy": round(min(val_accuracy, 1.0), 5),
                "val/f1_macro": round(min(val_accuracy - 0.03, 1.0), 5),
                "lr": 1e-4,
                "elapsed_s": round(elapsed, 3),
            }
        )
    return rows


def _gradcam_png(path: Path, rng: np.random.Generator, malignant: bool, size: int = 96) -> None:
    y, x = np.mgrid[0:size, 0:size] / size
    tissue = np.stack([0.85 - 0.2 * y, 0.55 + 0.1 * np.sin(12 * x), 0.75 + 0.1 * np.cos(9 * y)], axis=-1)
    cy, cx = rng.uniform(0.3, 0.7, size=2)
    heat = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (0.02 if malignant else 0.06))
    overlay = 0.55 * tissue + 0.45 * np.stack([heat, 0.3 * heat, 1 - heat], axis=-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(overlay, 0, 1) * 255).astype(np.uint8)).save(path)


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
) -> Path:
    """Write one plausible finished run: metrics.json, history.csv, predictions.csv, config.yaml, gradcam/.

    Values are random but deterministic in (model, magnification, seed, fold, task) and mutually
    consistent (the metrics follow from the confusion matrix, which follows from predictions.csv).

    Args:
        run_dir: the ``version_N`` directory to create.
        model: metrics.json ``model`` (class name or timm model name).
        magnification: 40/100/200/400, or None for all magnifications.
        seed: the run's seed.
        fold: the cross-validation fold, or None.
        task: ``"binary"`` or ``"subtype"``.
        split: the split strategy recorded.
        group_by: what the split groups by.
        experiment: the experiment name (default: the parent folder's name).
        epochs: rows of history.csv.
        quality: the target accuracy (default: random in 0.82-0.92).
        test: entries that override the computed test metrics (e.g. ``{"accuracy": 0.8}``).
        gradcam: whether to write ``gradcam/test_benign_0.png`` and ``gradcam/test_malignant_0.png``.
        n_images: test images.

    Returns:
        ``run_dir``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = _rng(model, magnification, seed, fold, task)
    classes = BINARY_CLASSES if task == "binary" else SUBTYPE_CLASSES
    quality = float(rng.uniform(0.82, 0.92)) if quality is None else quality
    matrix = _confusion(rng, len(classes), n_images, quality)
    test_metrics: dict[str, Any] = {"loss": round(float(rng.uniform(0.25, 0.45)), 5)}
    test_metrics.update(_metrics_from_confusion(matrix, classes))
    n_patients = max(4, n_images // 20)
    test_metrics.update(
        {
            "auroc": float(min(1.0, test_metrics["accuracy"] + rng.uniform(0.02, 0.06))),
            "patient_accuracy": float(
                round(n_patients * min(1.0, test_metrics["accuracy"] + rng.normal(0, 0.04))) / n_patients
            ),
            "patient_recognition_rate": float(min(1.0, test_metrics["accuracy"] + rng.normal(0, 0.02))),
            "n_images": int(matrix.sum()),
            "n_patients": n_patients,
            "confusion_matrix": matrix.tolist(),
        }
    )
    test_metrics.update(test or {})

    history = _history(rng, epochs, quality)
    best = min(range(epochs), key=lambda e: history[e]["val/loss"])
    name = experiment or run_dir.parent.name
    params = PARAMS.get(model, 11_177_538)
    metrics = {
        "experiment": name,
        "model": model,
        "task": task,
        "magnification": None if magnification is None else str(magnification),
        "split": split,
        "group_by": group_by,
        "seed": seed,
        "fold": fold,
        "classes": classes,
        "params_total": params,
        "params_trainable": params,
        "fit_time_s": round(history[-1]["elapsed_s"] + float(rng.uniform(1, 5)), 3),
        "time_to_best_s": history[best]["elapsed_s"],
        "best_epoch": best,
        "epochs": epochs,
        "checkpoint": str(run_dir / "checkpoints" / "best.ckpt"),
        "test": test_metrics,
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))

    with (run_dir / "history.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)

    with (run_dir / "predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "patient_id", "group", "label", *(f"prob_{c}" for c in classes), "prediction"])
        index = 0
        for (true, predicted), count in np.ndenumerate(matrix):
            for _ in range(count):
                probs = rng.dirichlet(np.ones(len(classes)))
                probs[predicted] += probs.max() + 0.05
                probs /= probs.sum()
                patient = f"14-{10000 + index % n_patients}"
                path = f"BreaKHis_v1/fake/{classes[true]}/{patient}/img-{index:04d}.png"
                writer.writerow(
                    [path, patient, patient, classes[true], *(f"{p:.5f}" for p in probs), classes[predicted]]
                )
                index += 1

    backbone: dict[str, Any] = (
        {"class_path": f"breakhis_lit.models.{model}", "init_args": {"num_classes": len(classes)}}
        if model in OUR_CLASSES
        else {
            "class_path": "breakhis_lit.models.TimmClassifier",
            "init_args": {"model_name": model, "num_classes": len(classes)},
        }
    )
    config = {
        "seed_everything": seed,
        "trainer": {"max_epochs": epochs},
        "model": {"backbone": backbone, "lr": 1e-4},
        "data": {"task": task, "magnification": magnification, "split": split, "group_by": group_by, "fold": fold},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if gradcam:
        _gradcam_png(run_dir / "gradcam" / "test_benign_0.png", rng, malignant=False)
        _gradcam_png(run_dir / "gradcam" / "test_malignant_0.png", rng, malignant=True)
    return run_dir


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
        models: metrics.json model names.
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
