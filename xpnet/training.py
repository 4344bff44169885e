"""The old home of the training loop, kept importable: it lives in :mod:`xpnet.train` now."""

from __future__ import annotations

from .callbacks import History, TrainingDiverged, format_epoch
from .train import evaluate, fit, on_model_device, predict, predict_classes, predict_proba, release

__all__ = ["History", "TrainingDiverged", "evaluate", "fit", "format_epoch", "on_model_device", "predict",
           "predict_classes", "predict_proba", "release"]
