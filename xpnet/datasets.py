"""Datasets as host NumPy arrays: MNIST, Fashion-MNIST, the tutorial CSV and small synthetic sets.

Every loader returns ``(X_train, y_train), (X_test, y_test)`` with ``X`` float32 of shape
``(n, features)`` and ``y`` int64 of shape ``(n,)``, on the host; send them to the model's
device yourself. Files are looked up in :func:`data_dirs`, checked against the SHA-256 sums below
and, if missing, downloaded into the cache. Every data problem raises :class:`DatasetError`.
"""
import contextlib
import gzip
import hashlib
import io
import logging
import math
import os
import pathlib
import re
import sys
import tempfile
import urllib.request
import zlib

import numpy as np

DATASETS = ("mnist", "fashion-mnist", "csv", "spirals", "moons")

# Folder name -> {file: SHA-256} of the original distributions (the files match the official MD5s).
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
    "mnist-csv": {
        "mnist_train_100.csv": "fdd8d89d0c19e0a78ee8f60a7770fa708895ed1c649b9f49a0fa63a9d517cfe2",
        "mnist_test_10.csv": "36872cba8ad8788b41d8dc391e84e33871ba1bb9d73a5a4c95c0429fd63e96e5",
    },
}
# Tried in order; every mirror serves the files under their original names.
MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    "mnist-csv": (
        "https://raw.githubusercontent.com/makeyourownneuralnetwork/makeyourownneuralnetwork"
        "/HEAD/mnist_dataset/",
    ),
}
_LUT = {  # pixel byte -> float32; one table lookup instead of float temporaries over 47M pixels
    "unit": (np.arange(256) / 255).astype(np.float32),
    "tutorial": (np.arange(256) / 255 * 0.99 + 0.01).astype(np.float32),  # the book's input scaling
}
_VERIFIED = set()  # (path, mtime_ns, size, sha256) already hashed in this process
log = logging.getLogger("xpnet")


class DatasetError(RuntimeError):
    """A dataset is missing, unreadable, corrupt or malformed."""


class DatasetNotFoundError(DatasetError):
    """The files are in none of the data folders and could not be downloaded."""


class DatasetCorruptError(DatasetError):
    """A file is there but wrong: checksum mismatch, bad gzip, bad IDX header, bad CSV row."""


def data_dirs(data_dir=None):
    """Folders searched for data, in order: ``data_dir``, ``$XPNET_DATA``, the cache.

    ``$XPNET_DATA`` may hold several folders joined by ``os.pathsep``. The cache is
    ``$XPNET_CACHE`` or ``~/.cache/xpnet``; downloads go there. Returns a list of ``pathlib.Path``.

    >>> data_dirs("/data")[0]
    PosixPath('/data')
    """
    dirs = [data_dir] if data_dir is not None else []
    dirs += _env_dirs()
    dirs.append(_cache_dir())
    return list(dict.fromkeys(pathlib.Path(d).expanduser() for d in dirs))  # dedupe, keep order


def _env_dirs():
    return [p for p in os.environ.get("XPNET_DATA", "").split(os.pathsep) if p]


def _check_data_dirs(data_dir):
    """An explicit ``data_dir`` must be a folder; a ``$XPNET_DATA`` folder that is not one is logged.

    A mistyped ``data_dir`` must not fall through to other data or to a download: it raises. A missing
    ``$XPNET_DATA`` folder only warns, since the variable is set once for many runs (and may list folders
    that exist on some machines only); the warning still says why a download starts.
    """
    if data_dir is not None:
        folder = pathlib.Path(data_dir).expanduser()
        if not folder.is_dir():
            raise DatasetNotFoundError(
                f"data_dir {folder} {'is not a folder' if folder.exists() else 'does not exist'}: check the "
                f"path, or leave data_dir (--data-dir) unset to use $XPNET_DATA and the download cache "
                f"{_cache_dir()}")
    for d in _env_dirs():
        if not pathlib.Path(d).expanduser().is_dir():
            log.warning("xpnet: $XPNET_DATA names %s, which is not a folder: skipped (check the variable)", d)


def _cache_dir():
    return pathlib.Path(os.environ.get("XPNET_CACHE") or "~/.cache/xpnet").expanduser()


def _urlopen(url):
    """Default ``fetch``: a streaming HTTP response (some mirrors refuse urllib's user agent)."""
    request = urllib.request.Request(url, headers={"User-Agent": "xpnet"})
    return urllib.request.urlopen(request, timeout=30)


def _short(err):
    text = f"{type(err).__name__}: {err}"
    return text if len(text) <= 120 else text[:117] + "..."


def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path, expected, got=None):
    """Raise unless ``path`` hashes to ``expected``; pass ``got`` when the hash is already known."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, expected)
    if key in _VERIFIED:
        return
    got = got or _sha256_file(path)
    if got != expected:
        raise DatasetCorruptError(
            f"{path}: SHA-256 checksum mismatch (corrupt, truncated or a different file)\n"
            f"  expected {expected}\n  got      {got}\n"
            "  delete it (if it lived in the cache it is downloaded again)")
    _VERIFIED.add(key)


def _download(folder, name, fetch, dest, tried):
    """Try each mirror; the file lands in ``dest`` only whole and verified. Returns the path or None."""
    expected = SHA256[folder][name]
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        tried.append(f"cannot create {dest}: {_short(e)}")
        return None
    for base in MIRRORS[folder]:
        url, tmp = base + name, None
        try:
            print(f"xpnet: downloading {url}", file=sys.stderr)
            src = fetch(url)
            if isinstance(src, (bytes, bytearray, memoryview)):
                src = io.BytesIO(src)
            digest = hashlib.sha256()
            with contextlib.closing(src), tempfile.NamedTemporaryFile(
                    dir=dest, prefix=f".{name}.", suffix=".part", delete=False) as f:
                tmp = pathlib.Path(f.name)
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    f.write(chunk)
            got = digest.hexdigest()
            if got != expected:
                raise DatasetCorruptError(f"SHA-256 mismatch: expected {expected[:12]}.., got {got[:12]}..")
            os.replace(tmp, dest / name)  # atomic: readers never see a partial file
            tmp = None
            _verify(dest / name, expected, got)  # no second read of the file
            return dest / name
        except Exception as e:  # any mirror failure (HTTP, timeout, bad bytes) just moves on to the next
            tried.append(f"{url}: {_short(e)}")
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
    return None


def _find_files(folder, data_dir, download, fetch, title):
    """Locate (or download) every file of ``SHA256[folder]``, verified; returns {name: Path}."""
    _check_data_dirs(data_dir)
    names, found, looked, tried = list(SHA256[folder]), {}, [], []
    for i, d in enumerate(data_dirs(data_dir)):
        # users often pass the dataset folder itself as data_dir
        looked += [d / folder, d] if i == 0 and data_dir is not None else [d / folder]
    looked = list(dict.fromkeys(looked))
    for name in names:
        hit = next((s / name for s in looked if (s / name).is_file()), None)
        if hit is not None:
            _verify(hit, SHA256[folder][name])  # before any download: a bad local file fails fast
            found[name] = hit
    missing = [n for n in names if n not in found]
    if missing and download:
        for name in missing:
            path = _download(folder, name, fetch or _urlopen, _cache_dir() / folder, tried)
            if path is None:
                break  # every mirror failed: most likely offline, don't wait out the other files too
            found[name] = path
    missing = [n for n in names if n not in found]
    if missing:
        how = "".join(f"    {t}\n" for t in tried) if download else "    none: download=False\n"
        raise DatasetNotFoundError(
            f"{title} not found: missing {', '.join(missing)}\n"
            f"  needs the files: {', '.join(names)}\n"
            f"  looked in: {', '.join(map(str, looked))}\n  mirrors tried:\n{how}"
            f"  fix: put the files in <dir>/{folder}/ and set XPNET_DATA=<dir> or pass --data-dir <dir>"
            + (" (or check your network)" if download else ""))
    return found


def _read_bytes(path_or_bytes, name):
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data, name = bytes(path_or_bytes), name or "<bytes>"
    else:
        name = name or os.fspath(path_or_bytes)
        try:
            data = pathlib.Path(path_or_bytes).read_bytes()
        except OSError as e:
            raise DatasetNotFoundError(f"{name}: cannot read: {_short(e)}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error, ValueError) as e:
            raise DatasetCorruptError(f"{name}: bad gzip data (truncated?): {_short(e)}") from None
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


def _check_args(scale, limit):
    if scale is not None and scale not in _LUT:
        raise ValueError(f"scale must be 'unit', 'tutorial' or None, not {scale!r}")
    if limit is not None and not (isinstance(limit, (int, np.integer)) and limit >= 0):
        raise ValueError(f"limit must be a non-negative int or None, not {limit!r}")


def load_mnist(kind="mnist", *, data_dir=None, scale="unit", download=True, limit=None, fetch=None):
    """Load MNIST or Fashion-MNIST: ``(X_train, y_train), (X_test, y_test)``.

    ``X`` is float32 ``(n, 784)``: ``scale="unit"`` gives ``pixels / 255`` in [0, 1],
    ``"tutorial"`` the book's ``pixels / 255 * 0.99 + 0.01`` in [0.01, 1], ``None`` raw uint8.
    ``y`` is int64 ``(n,)`` in 0..9; n is 60000/10000, or at most ``limit`` each.
    Files are found under ``<dir>/<kind>/`` for each of :func:`data_dirs` (or directly in
    ``data_dir``), else downloaded to the cache; ``fetch(url) -> bytes | stream`` replaces urllib.
    A ``data_dir`` that is not a folder raises :class:`DatasetNotFoundError` (it never falls back).

    >>> (X, y), (Xt, yt) = load_mnist("fashion-mnist", limit=1000)
    >>> X.shape, y.dtype
    ((1000, 784), dtype('int64'))
    """
    if kind not in ("mnist", "fashion-mnist"):
        raise ValueError(f"kind must be 'mnist' or 'fashion-mnist', not {kind!r}")
    _check_args(scale, limit)
    paths = _find_files(kind, data_dir, download, fetch, f"{kind} data")
    out = []
    for split in ("train", "t10k"):
        images = _parse_idx(*_read_bytes(paths[f"{split}-images-idx3-ubyte.gz"], None))
        labels = _parse_idx(*_read_bytes(paths[f"{split}-labels-idx1-ubyte.gz"], None))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetCorruptError(f"{paths[f'{split}-images-idx3-ubyte.gz']}: images {images.shape} "
                                      f"do not match labels {labels.shape}")
        images, labels = images[:limit], labels[:limit]  # slice first: only convert what is kept
        out.append((_scale(images.reshape(len(images), -1), scale), labels.astype(np.int64)))
    return tuple(out)


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
    _check_args(scale, limit)
    try:
        lines = pathlib.Path(path).read_bytes().split(b"\n")
    except OSError as e:
        raise DatasetNotFoundError(f"{path}: cannot read: {_short(e)}") from None
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


def load_tutorial_csv(data_dir=None, *, scale="unit", limit=None, download=True, fetch=None):
    """Load the tutorial's ``mnist_train_100.csv`` / ``mnist_test_10.csv`` (found like MNIST,
    in ``<dir>/mnist-csv/``), checksum-verified: ``(X_train, y_train), (X_test, y_test)``
    with shapes ``(100, 784), (100,)`` and ``(10, 784), (10,)``. See :func:`load_csv`.

    >>> (X, y), (Xt, yt) = load_tutorial_csv(scale="tutorial")
    """
    _check_args(scale, limit)
    paths = _find_files("mnist-csv", data_dir, download, fetch, "tutorial MNIST CSV")
    return tuple(load_csv(paths[n], scale=scale, limit=limit) for n in SHA256["mnist-csv"])


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


def load(name, *, data_dir=None, scale="unit", limit=None, download=True, seed=0):
    """Load any of :data:`DATASETS` as ``(X_train, y_train), (X_test, y_test)``.

    ``"mnist"``/``"fashion-mnist"`` go to :func:`load_mnist`, ``"csv"`` to
    :func:`load_tutorial_csv`; ``"spirals"``/``"moons"`` are generated with ``seed`` and
    split 80/20 by a seeded shuffle (``scale`` does not apply). ``limit`` caps each split.

    >>> (X, y), (Xt, yt) = load("spirals")
    >>> X.shape, Xt.shape
    ((240, 2), (60, 2))
    """
    if name in ("mnist", "fashion-mnist"):
        return load_mnist(name, data_dir=data_dir, scale=scale, download=download, limit=limit)
    if name == "csv":
        return load_tutorial_csv(data_dir, scale=scale, limit=limit, download=download)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}, choose one of {', '.join(DATASETS)}")
    _check_args(scale, limit)
    X, y = make_spirals(seed=seed) if name == "spirals" else make_moons(seed=seed)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = len(y) // 5
    test, train = order[:n_test][:limit], order[n_test:][:limit]
    return (X[train], y[train]), (X[test], y[test])
