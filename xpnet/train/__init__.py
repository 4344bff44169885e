"""Training: ``fit``'s short loop and its collaborators, one module a concern.

``trainer.py``: :func:`fit`, :func:`evaluate`, :func:`predict` (``_proba``, ``_classes``); ``prepare.py``:
what fit trains with, every argument checked; ``data.py``: the data's checks, the validation split, the
batches and the device's memory; ``checks.py``: what fit refuses before training; ``strategy.py``: one
process or data parallel; ``resume.py``: resuming from a checkpoint (``stretch.py``: its schedule);
``backup.py``: the per-epoch checkpoint, a callback; ``sources.py``: :class:`TextWindows`, a language model's
random windows, a data source fit takes instead of arrays.
"""

from __future__ import annotations

from .data import release
from .sources import TextWindows
from .trainer import evaluate, fit, on_model_device, predict, predict_classes, predict_proba

__all__ = ["TextWindows", "evaluate", "fit", "on_model_device", "predict", "predict_classes", "predict_proba",
           "release"]
