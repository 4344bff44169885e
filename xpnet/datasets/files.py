"""Where dataset files come from: the data folders, then a download through pooch into the cache.

:func:`find_files` looks a dataset's files up in :func:`data_dirs` and verifies each against
:data:`SHA256`; what is missing it fetches with :func:`pooch.retrieve`, which streams into a temporary
file beside the target, checks the hash and only then moves it in place (with a progress bar).
:data:`MIRRORS` are tried in order. Every problem raises a :class:`DatasetError`.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import os
import pathlib
import re
import shutil

import pooch

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
    "shakespeare": {  # tiny shakespeare (karpathy/char-rnn), the corpus of nanoGPT's shakespeare_char
        "input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    },
}
# Tried in order; every mirror serves the files under their original names. (A pooch registry holds
# one URL per file, so the fallback from one mirror to the next is ours.)
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
    "shakespeare": ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/",),
}
# Inside quiet_downloads(): no progress bar and no "Downloading data from ..." line (xpnet train --quiet)
_QUIET = contextvars.ContextVar("xpnet_quiet_downloads", default=False)
# (path, mtime_ns, size, sha256) already hashed in this process: a second load does not read 55 MB again
_VERIFIED = set()
log = logging.getLogger("xpnet")


class DatasetError(RuntimeError):
    """A dataset is missing, unreadable, corrupt or malformed."""


class DatasetNotFoundError(DatasetError):
    """The files are in none of the data folders and could not be downloaded."""


class DatasetCorruptError(DatasetError):
    """A file is there but wrong: checksum mismatch, bad gzip, bad IDX header, bad CSV row."""


def data_dirs(data_dir=None):
    """Folders searched for data, in order: ``data_dir``, ``$XPNET_DATA``, the cache.

    ``$XPNET_DATA`` may hold several folders joined by ``os.pathsep``. The cache is ``$XPNET_CACHE``
    or the per-user cache folder (``pooch.os_cache("xpnet")``: ``~/.cache/xpnet`` on Linux,
    ``~/Library/Caches/xpnet`` on macOS); downloads go there. Returns a list of ``pathlib.Path``.

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
    return pathlib.Path(os.environ.get("XPNET_CACHE") or pooch.os_cache("xpnet")).expanduser()


def one_line_error(err):
    """One line for an error: an HTTP status as ``HTTP Error 404: Not Found``, pooch's hash mismatch
    as ``SHA-256 mismatch: expected .., got ..``, anything else as ``Type: message`` up to 120 chars."""
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status is not None:
        return f"HTTP Error {status}: {err.response.reason}"
    mismatch = re.search(r"expected (?:sha256:)?(\w+) but got (\w+)", str(err))
    if mismatch:
        return f"SHA-256 mismatch: expected {mismatch[1][:12]}.., got {mismatch[2][:12]}.."
    reason = getattr(err.args[0], "reason", None) if err.args else None
    if reason is not None:  # requests' ConnectionError wraps urllib3's "Max retries exceeded": say its cause
        err = reason
    message = re.sub(r"^\w+\(host=[^)]*\): ", "", str(err))  # urllib3 starts with the host: the URL says it
    text = f"{type(err).__name__}: {message}"
    return text if len(text) <= 120 else text[:117] + "..."


def _stat_key(path, expected):
    st = path.stat()
    return str(path.resolve()), st.st_mtime_ns, st.st_size, expected


def verify_file(path, expected):
    """Raise unless ``path`` hashes to ``expected`` (read once per process while it is unchanged)."""
    key = _stat_key(path, expected)
    if key in _VERIFIED:
        return
    got = pooch.file_hash(str(path), alg="sha256")
    if got != expected:
        raise DatasetCorruptError(
            f"{path}: SHA-256 checksum mismatch (corrupt, truncated or a different file)\n"
            f"  expected {expected}\n  got      {got}\n"
            "  delete it (if it lived in the cache it is downloaded again)")
    _VERIFIED.add(key)


def _fetcher(fetch):
    """A pooch downloader around ``fetch(url) -> bytes | stream`` (the loaders' ``fetch=`` argument)."""
    def download(url, output_file, pooch_, check_only=False):
        src = fetch(url)
        if isinstance(src, (bytes, bytearray, memoryview)):
            src = io.BytesIO(src)
        with contextlib.closing(src), open(output_file, "wb") as f:
            shutil.copyfileobj(src, f)
    return download


@contextlib.contextmanager
def quiet_downloads():
    """Downloads inside print nothing: no progress bar, and pooch's "Downloading data from ..." line held
    back (its warnings still show). ``xpnet train --quiet`` runs under it."""
    token = _QUIET.set(True)
    pooch_log = pooch.get_logger()
    level = pooch_log.level
    pooch_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        pooch_log.setLevel(level)
        _QUIET.reset(token)


def http_downloader():
    """pooch's HTTP downloader (requests), with a tqdm progress bar on stderr unless quiet_downloads()."""
    return pooch.HTTPDownloader(progressbar=not _QUIET.get(), timeout=30)


def _download(folder, name, downloader, dest, tried):
    """Try each mirror in turn; returns the path, or None (each failure appended to ``tried``)."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        tried.append(f"cannot create {dest}: {one_line_error(e)}")
        return None
    for base in MIRRORS[folder]:
        try:
            path = pathlib.Path(pooch.retrieve(base + name, known_hash=f"sha256:{SHA256[folder][name]}",
                                               fname=name, path=dest, downloader=downloader))
        except Exception as e:  # any mirror failure (HTTP, timeout, bad bytes) just moves on to the next
            tried.append(f"{base + name}: {one_line_error(e)}")
            continue
        _VERIFIED.add(_stat_key(path, SHA256[folder][name]))  # pooch hashed it: no second read
        return path
    return None


def find_files(folder, data_dir, download, fetch, title, names=None):
    """Locate (or download) the files ``names`` (default: all of ``SHA256[folder]``), verified; returns
    {name: Path}."""
    _check_data_dirs(data_dir)
    names, found, looked, tried = list(names or SHA256[folder]), {}, [], []
    for i, d in enumerate(data_dirs(data_dir)):
        # users often pass the dataset folder itself as data_dir
        looked += [d / folder, d] if i == 0 and data_dir is not None else [d / folder]
    looked = list(dict.fromkeys(looked))
    for name in names:
        hit = next((s / name for s in looked if (s / name).is_file()), None)
        if hit is not None:
            verify_file(hit, SHA256[folder][name])  # before any download: a bad local file fails fast
            found[name] = hit
    missing = [n for n in names if n not in found]
    if missing and download:
        downloader = _fetcher(fetch) if fetch is not None else http_downloader()
        for name in missing:
            path = _download(folder, name, downloader, _cache_dir() / folder, tried)
            if path is None:
                break  # every mirror failed: most likely offline, don't wait out the other files too
            found[name] = path
    missing = [n for n in names if n not in found]
    if missing:
        raise DatasetNotFoundError(_not_found(title, folder, names, missing, looked, tried if download else None))
    return found


def _not_found(title, folder, names, missing, looked, tried) -> str:
    """The error's text: what is missing, where it was looked for, why nothing was downloaded (``tried``:
    each mirror's failure, or None when downloads are off) and the fix, each line readable on its own
    (the CLI joins them with "; ")."""
    put = (f"put the files ({', '.join(names)}) in <dir>/{folder}/ and pass --data-dir <dir> or set "
           f"XPNET_DATA=<dir>")
    where = f"  looked in: {', '.join(map(str, looked))}\n"
    if tried is None:
        return (f"{title} not found, and downloads are off (--no-download, or download=False): missing "
                f"{', '.join(missing)}\n{where}"
                f"  fix: drop --no-download (or pass download=True) to download them into {_cache_dir() / folder}, "
                f"or {put}")
    how = "".join(f"    {t}\n" for t in tried)
    return (f"{title} not found: missing {', '.join(missing)}\n  needs the files: {', '.join(names)}\n{where}"
            f"  mirrors tried:\n{how}"
            f"  fix: put the files in <dir>/{folder}/ and set XPNET_DATA=<dir> or pass --data-dir <dir> "
            f"(or check your network)")
