"""breakhis_lit: patient-aware BreakHis experiments with PyTorch Lightning."""

__version__ = "0.1.0"
