"""Lightning callbacks: run records, history, checkpoints for resuming, reports, figures, throughput, Grad-CAM."""

from breakhis_lit.callbacks.cam_writer import GradCAMWriter
from breakhis_lit.callbacks.evaluation_report import EvaluationReport
from breakhis_lit.callbacks.figures import EvaluationFigures
from breakhis_lit.callbacks.gradcam import GradCAMCallback
from breakhis_lit.callbacks.history import RunHistory
from breakhis_lit.callbacks.interrupt import ResumableInterrupt
from breakhis_lit.callbacks.last_checkpoint import LastCheckpoint
from breakhis_lit.callbacks.prediction_writer import PredictionCSVWriter
from breakhis_lit.callbacks.run_record import RunRecorder
from breakhis_lit.callbacks.throughput import Throughput

__all__ = [
    "EvaluationFigures",
    "EvaluationReport",
    "GradCAMCallback",
    "GradCAMWriter",
    "LastCheckpoint",
    "PredictionCSVWriter",
    "ResumableInterrupt",
    "RunHistory",
    "RunRecorder",
    "Throughput",
]
