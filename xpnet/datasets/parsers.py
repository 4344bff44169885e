"""Reading the dataset files: gzip and IDX (MNIST, Fashion-MNIST) and the tutorial's CSV, checked byte by byte.

The loaders here find their files through :mod:`xpnet.datasets.files` and return host NumPy arrays.
"""

from __future__ import annotations

import gzip
import math
import os
import pathlib
import re
import zlib

import numpy as np

from .files import SHA256, DatasetCorruptError, DatasetNotFoundError, find_files, one_line_error

_LUT = {  # pixel byte -> float32; one table lookup instead of float temporaries over 47M pixels
    "unit": (np.arange(256) / 255).astype(np.float32),
    "tutorial": (np.arange(256) / 255 * 0.99 + 0.01).astype(np.float32),  # the book's input scaling
}


def _read_bytes(path_or_bytes, name):
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data, name = bytes(path_or_bytes), name or "<bytes>"
    else:
        name = name or os.fspath(path_or_bytes)
        try:
            data = pathlib.Path(path_or_bytes).read_bytes()
        except OSError as e:
            raise DatasetNotFoundError(f"{name}: cannot read: {one_line_error(e)}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error, ValueError) as e:
            raise DatasetCorruptError(f"{name}: bad gzip data (truncated?): {one_line_error(e)}") from None
    elif str(name).endswith(".gz"):
        raise DatasetCorruptError(f"{name}: not gzip data, starts with {data[:16]!r}")
    return data, name


def _parse_idx(data, name):
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or data[3] not in (1, 3):
        raise DatasetCorruptError(
            f"{name}: bad IDX magic {data[:4].hex() or 'empty file'}, "
            "expected 00000801 (uint8 labels) or 00000803 (uint8 images)")
    start = 4 + 4 * data[3]
    if len(data) < start:
        raise DatasetCorruptError(f"{name}: IDX header truncated ({len(data)} bytes)")
    dims = tuple(int.from_bytes(data[i:i + 4], "big") for i in range(4, start, 4))
    # Python ints, compared before any allocation: a header claiming huge dims can't overflow or OOM
    want, have = math.prod(dims), len(data) - start
    if want != have:
        raise DatasetCorruptError(
            f"{name}: IDX header dims {dims} need {want} payload bytes, file has {have} "
            f"({'truncated' if have < want else 'trailing bytes'})")
    return np.frombuffer(data, np.uint8, count=want, offset=start).reshape(dims)


def read_idx(path_or_bytes, *, name=None):
    """Read a uint8 IDX file (gzipped or not) into a NumPy uint8 array of the header's dims.

    Accepts a path or the raw bytes. Validates the magic (``0x00000801`` labels,
    ``0x00000803`` images), the header and that the payload length equals the product of
    the dims; anything else raises :class:`DatasetCorruptError` (``name`` labels messages).

    >>> read_idx("mnist/t10k-labels-idx1-ubyte.gz").shape
    (10000,)
    """
    data, name = _read_bytes(path_or_bytes, name)
    return _parse_idx(data, name).copy()


def _scale(raw, scale):
    if scale is None:
        return np.array(raw, dtype=np.uint8)
    return np.take(_LUT[scale], raw)


def check_args(scale, limit, flat=True, split=None):
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be 'train', 'test' or None (both), not {split!r}")
    if not isinstance(flat, bool):
        raise ValueError(f"flat must be True (rows of 784 features) or False (images (n, 1, 28, 28)), not {flat!r}")
    if scale is not None and scale not in _LUT:
        raise ValueError(f"scale must be 'unit', 'tutorial' or None, not {scale!r}")
    if limit is not None and not (isinstance(limit, (int, np.integer)) and limit >= 0):
        raise ValueError(f"limit must be a non-negative int or None, not {limit!r}")


def load_mnist(kind="mnist", *, data_dir=None, scale="unit", download=True, limit=None, fetch=None, flat=True,
               split=None):
    """Load MNIST or Fashion-MNIST: ``(X_train, y_train), (X_test, y_test)``; with ``split="train"`` or
    ``"test"`` only that split's ``(X, y)``, which needs only its two files (``xpnet evaluate``: the test set).

    ``X`` is float32 ``(n, 784)``, or with ``flat=False`` images ``(n, 1, 28, 28)`` (NCHW, one channel:
    what ``Conv2D`` takes; the same numbers, reshaped): ``scale="unit"`` gives ``pixels / 255`` in [0, 1],
    ``"tutorial"`` the book's ``pixels / 255 * 0.99 + 0.01`` in [0.01, 1], ``None`` raw uint8.
    ``y`` is int64 ``(n,)`` in 0..9; n is 60000/10000, or at most ``limit`` each.
    Files are found under ``<dir>/<kind>/`` for each of :func:`data_dirs` (or directly in
    ``data_dir``), else downloaded to the cache; ``fetch(url) -> bytes | stream`` replaces pooch's
    HTTP download (the SHA-256 check still applies).
    A ``data_dir`` that is not a folder raises :class:`DatasetNotFoundError` (it never falls back).

    >>> (X, y), (Xt, yt) = load_mnist("fashion-mnist", limit=1000)
    >>> X.shape, y.dtype
    ((1000, 784), dtype('int64'))
    """
    if kind not in ("mnist", "fashion-mnist"):
        raise ValueError(f"kind must be 'mnist' or 'fashion-mnist', not {kind!r}")
    check_args(scale, limit, flat, split)
    prefixes = [{"train": "train", "test": "t10k"}[split]] if split else ["train", "t10k"]
    names = [f"{p}-{what}-idx{n}-ubyte.gz" for p in prefixes for what, n in (("images", 3), ("labels", 1))]
    paths = find_files(kind, data_dir, download, fetch, f"{kind} data", names)
    out = []
    for prefix in prefixes:
        images = _parse_idx(*_read_bytes(paths[f"{prefix}-images-idx3-ubyte.gz"], None))
        labels = _parse_idx(*_read_bytes(paths[f"{prefix}-labels-idx1-ubyte.gz"], None))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetCorruptError(f"{paths[f'{prefix}-images-idx3-ubyte.gz']}: images {images.shape} "
                                      f"do not match labels {labels.shape}")
        images, labels = images[:limit], labels[:limit]  # slice first: only convert what is kept
        shape = (len(images), -1) if flat else (len(images), 1, *images.shape[1:])
        out.append((_scale(images.reshape(shape), scale), labels.astype(np.int64)))
    return out[0] if split else tuple(out)


# label, then 784 pixels; bounded digit counts keep NumPy's int64 parse from overflowing
_CSV_ROW = re.compile(rb"0*\d{1,9}(?:,0*\d{1,3}){784}")


def _bad_csv_row(path, lineno, line):
    fields = line.split(b",")
    where = f"{path}, line {lineno}"
    if not line:
        return DatasetCorruptError(f"{where}: empty line")
    if len(fields) != 785:
        return DatasetCorruptError(
            f"{where}: expected 785 comma-separated values (label + 784 pixels), got {len(fields)}")
    for i, f in enumerate(fields):
        what = "label" if i == 0 else f"pixel {i - 1}"
        if not re.fullmatch(rb"\d+", f):
            return DatasetCorruptError(f"{where}: {what} {f[:20]!r} is not a non-negative integer")
        if i and int(f) > 255:
            return DatasetCorruptError(f"{where}: {what} is {int(f)}, outside 0..255")
    return DatasetCorruptError(f"{where}: label {fields[0][:20]!r} is too large")


def load_csv(path, *, scale="unit", limit=None):
    """Read the "Make Your Own Neural Network" CSV: each row a label, then 784 pixels 0..255.

    Returns ``(X, y)``: X float32 ``(n, 784)`` scaled like :func:`load_mnist` (``scale=None``
    keeps uint8), y int64 ``(n,)``; at most ``limit`` rows. No header; blank trailing lines
    and CRLF are fine; any bad row raises :class:`DatasetCorruptError` naming its line.

    >>> X, y = load_csv("mnist-csv/mnist_test_10.csv", scale="tutorial")
    >>> X.shape, int(y[0])
    ((10, 784), 7)
    """
    check_args(scale, limit)
    try:
        lines = pathlib.Path(path).read_bytes().split(b"\n")
    except OSError as e:
        raise DatasetNotFoundError(f"{path}: cannot read: {one_line_error(e)}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    rows = []
    for lineno, line in enumerate(lines[:limit], 1):
        line = line.strip()
        if not _CSV_ROW.fullmatch(line):
            raise _bad_csv_row(path, lineno, line)
        rows.append(line)
    if not rows:
        if limit != 0:
            raise DatasetCorruptError(f"{path}: no rows")
        return _scale(np.zeros((0, 784), np.uint8), scale), np.zeros(0, np.int64)
    # rows are validated digits and commas, so NumPy's C parser can take them all at once
    values = np.fromstring(b",".join(rows).decode("ascii"), dtype=np.int64, sep=",").reshape(-1, 785)
    too_big = np.flatnonzero((values[:, 1:] > 255).any(axis=1))
    if too_big.size:
        raise _bad_csv_row(path, int(too_big[0]) + 1, rows[too_big[0]])
    return _scale(values[:, 1:].astype(np.uint8), scale), values[:, 0].copy()


def load_tutorial_csv(data_dir=None, *, scale="unit", limit=None, download=True, fetch=None, split=None):
    """Load the tutorial's ``mnist_train_100.csv`` / ``mnist_test_10.csv`` (found like MNIST,
    in ``<dir>/mnist-csv/``), checksum-verified: ``(X_train, y_train), (X_test, y_test)``
    with shapes ``(100, 784), (100,)`` and ``(10, 784), (10,)``; with ``split="train"`` or ``"test"``
    only that file's ``(X, y)``. See :func:`load_csv`.

    >>> (X, y), (Xt, yt) = load_tutorial_csv(scale="tutorial")
    """
    check_args(scale, limit, split=split)
    train, test = SHA256["mnist-csv"]
    names = [{"train": train, "test": test}[split]] if split else [train, test]
    paths = find_files("mnist-csv", data_dir, download, fetch, "tutorial MNIST CSV", names)
    out = tuple(load_csv(paths[n], scale=scale, limit=limit) for n in names)
    return out[0] if split else out
