"""Datasets as host NumPy arrays: MNIST, Fashion-MNIST, the tutorial CSV and small synthetic sets; and text
for language models (:func:`load_text`: tiny shakespeare as character ids, with its :class:`Vocabulary`).

Every loader returns ``(X_train, y_train), (X_test, y_test)`` with ``X`` float32 of shape
``(n, features)`` and ``y`` int64 of shape ``(n,)``, on the host; send them to the model's
device yourself. Files are looked up in :func:`data_dirs`, checked against the SHA-256 sums below
and, if missing, downloaded into the cache. Every data problem raises :class:`DatasetError`.
"""

import numpy as np

from .files import (MIRRORS, SHA256, DatasetCorruptError, DatasetError, DatasetNotFoundError,  # noqa: F401
                    data_dirs, quiet_downloads)
from .parsers import check_args, load_csv, load_mnist, load_tutorial_csv, read_idx  # noqa: F401
from .synthetic import make_moons, make_spirals, make_xor  # noqa: F401
from .text import TEXTS, Vocabulary, load_text  # noqa: F401

DATASETS = ("mnist", "fashion-mnist", "csv", "spirals", "moons")


def load(name, *, data_dir=None, scale="unit", limit=None, download=True, seed=0, flat=True, split=None):
    """Load any of :data:`DATASETS` as ``(X_train, y_train), (X_test, y_test)``.

    ``"mnist"``/``"fashion-mnist"`` go to :func:`load_mnist`, ``"csv"`` to
    :func:`load_tutorial_csv`; ``"spirals"``/``"moons"`` are generated with ``seed`` and
    split 80/20 by a seeded shuffle (``scale`` does not apply). ``limit`` caps each split.
    ``flat=False`` gives the image sets as ``(n, 1, 28, 28)`` images (for ``Conv2D``) instead of rows.
    ``split="train"`` or ``"test"`` gives only that split's ``(X, y)``, and reads (or downloads) only its files.

    >>> (X, y), (Xt, yt) = load("spirals")
    >>> X.shape, Xt.shape
    ((240, 2), (60, 2))
    """
    if name in ("mnist", "fashion-mnist"):
        return load_mnist(name, data_dir=data_dir, scale=scale, download=download, limit=limit, flat=flat,
                          split=split)
    if name == "csv":
        check_args(scale, limit, flat, split)
        parts = load_tutorial_csv(data_dir, scale=scale, limit=limit, download=download, split=split)
        parts = (parts,) if split else parts
        if not flat:
            parts = tuple((X.reshape(len(X), 1, 28, 28), y) for X, y in parts)
        return parts[0] if split else parts
    if name in TEXTS:
        raise ValueError(f"{name!r} is a text, not rows of (X, y): use xpnet.datasets.load_text({name!r}), which "
                         f"gives the training ids, the validation ids and the vocabulary")
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}, choose one of {', '.join(DATASETS)}")
    check_args(scale, limit, flat, split)
    if not flat:
        raise ValueError(f"flat=False: {name} holds points, not images; only mnist, fashion-mnist and csv have "
                         f"an image shape")
    X, y = make_spirals(seed=seed) if name == "spirals" else make_moons(seed=seed)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = len(y) // 5
    test, train = order[:n_test][:limit], order[n_test:][:limit]
    if split:
        rows = train if split == "train" else test
        return X[rows], y[rows]
    return (X[train], y[train]), (X[test], y[test])
