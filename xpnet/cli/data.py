"""The data of ``xpnet train`` and ``xpnet evaluate``: a dataset loaded as the command line asks, and its
labels as the targets a loss trains on."""

from __future__ import annotations

import numpy as np

from .. import datasets

IMAGES = ("mnist", "fashion-mnist", "csv")  # datasets of 0..255 pixels, where --scale applies
TARGETS = {"mse": (0.01, 0.99), "binary_cross_entropy": (0.0, 1.0)}  # one-hot (off, on) per loss


def load_data(args, scale, split=None):
    scale = scale if args.dataset in IMAGES else None
    return datasets.load(args.dataset, data_dir=args.data_dir, scale=scale or "unit", limit=args.limit,
                          download=not args.no_download, seed=getattr(args, "seed", 0), split=split)


def as_targets(y, loss: str, width: int, dtype: str):
    """Labels as what ``loss`` trains on: int labels (softmax), 0/1 columns, or one-hot rows (off, on)."""
    if loss == "softmax_cross_entropy":
        return y
    off, on = TARGETS[loss]
    if width == 1:
        return np.where(y.reshape(-1, 1) > 0, on, off).astype(dtype)
    t = np.full((y.shape[0], width), off, dtype=dtype)
    t[np.arange(y.shape[0]), y] = on
    return t
