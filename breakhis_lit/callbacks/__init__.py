"""Lightning callbacks: run history, last checkpoint, test reports, figures, throughput, predictions and Grad-CAM."""

from breakhis_lit.callbacks.figures import EvaluationFigures
from breakhis_lit.callbacks.gradcam import GradCAMCallback
from breakhis_lit.callbacks.history import RunHistory
from breakhis_lit.callbacks.last_checkpoint import LastCheckpoint
from breakhis_lit.callbacks.prediction_writer import PredictionCSVWriter
from breakhis_lit.callbacks.test_report import TestReport
from breakhis_lit.callbacks.throughput import Throughput

__all__ = [
    "EvaluationFigures",
    "GradCAMCallback",
    "LastCheckpoint",
    "PredictionCSVWriter",
    "RunHistory",
    "TestReport",
    "Throughput",
]
