"""Small synthetic data sets made on the host from a seed: spirals, moons and XOR."""

from __future__ import annotations

import numpy as np


def make_spirals(n_samples=300, n_classes=3, noise=0.2, seed=0):
    """The cs231n spiral: ``n_classes`` interleaved arms in 2-D, not linearly separable.

    Arm ``k`` has radius ``r`` in [0, 1] and angle ``4k + 4r + noise * N(0, 1)``. Returns
    X float32 ``(n_samples, 2)`` and y int64 ``(n_samples,)``, ordered by class.

    >>> X, y = make_spirals(300, 3)
    """
    rng = np.random.default_rng(seed)
    X, y = [], []
    for k in range(n_classes):
        n = n_samples // n_classes + (k < n_samples % n_classes)
        r = np.linspace(0.0, 1.0, n)
        t = np.linspace(4.0 * k, 4.0 * (k + 1), n) + rng.standard_normal(n) * noise
        X.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        y.append(np.full(n, k))
    return np.concatenate(X).astype(np.float32), np.concatenate(y).astype(np.int64)


def make_moons(n_samples=200, noise=0.1, seed=0):
    """Two interleaving half circles (as scikit-learn's ``make_moons``), Gaussian ``noise`` added.

    Returns X float32 ``(n_samples, 2)`` and y int64 ``(n_samples,)`` in {0, 1}, ordered by class.

    >>> X, y = make_moons(200, noise=0.1)
    """
    rng = np.random.default_rng(seed)
    n_out = n_samples // 2
    a, b = np.linspace(0.0, np.pi, n_out), np.linspace(0.0, np.pi, n_samples - n_out)
    outer, inner = np.stack([np.cos(a), np.sin(a)], 1), np.stack([1 - np.cos(b), 0.5 - np.sin(b)], 1)
    X = np.concatenate([outer, inner])
    X += rng.standard_normal(X.shape) * noise
    return X.astype(np.float32), np.repeat(np.array([0, 1], dtype=np.int64), [n_out, n_samples - n_out])


def make_xor():
    """The XOR truth table: X float32 ``(4, 2)``, y int64 ``(4,)`` = ``[0, 1, 1, 0]``.

    >>> make_xor()[1].tolist()
    [0, 1, 1, 0]
    """
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    return X, np.array([0, 1, 1, 0], dtype=np.int64)
