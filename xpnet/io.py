"""The model file format: one ``.npz`` file of host arrays plus a JSON header, and nothing that can run code.

File layout (a plain, uncompressed NumPy ``.npz``, i.e. a zip of ``.npy`` files)::

    __xpnet__.npy     uint8 bytes of a UTF-8 JSON header:
                        {"magic": "xpnet", "format": 1, "xpnet_version": "0.1.0", "dtype": "float32",
                         "architecture": {"layers": [{"class": "Dense", "config": {...}}, ...]},
                         "parameters": {"0.W": {"shape": [784, 200], "dtype": "float32"}, ...}}
    0.W.npy, 0.b.npy  one array per entry of ``model.state_dict()``, in the model's dtype: parameters and
                      buffers (``1.running_mean.npy``) alike; the header's table lists them all

This module knows the file, not the model: :func:`write` writes a header and named arrays, :func:`read`
gives them back validated. :mod:`xpnet.saving` maps a model to a header and back, and
:meth:`xpnet.Sequential.save` / :func:`xpnet.load` build on both.

:func:`read` reads the arrays with ``allow_pickle=False`` and never evaluates anything, so a file can
describe a network but cannot make Python do anything else. Every way a file can be wrong (not a zip,
truncated, garbled header, wrong magic, a newer format, an object array, a missing or misshaped array)
raises :class:`ModelFormatError`; a missing file raises ``FileNotFoundError``.

:func:`write` writes a temporary file next to the target, flushes and fsyncs it, then renames it over the
target (``os.replace``, atomic on POSIX and Windows) and fsyncs the folder: a crash or a kill at any
moment leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import json
import math
import os
import zipfile

import numpy as np

from ._version import __version__
from .arguments import is_count, is_number
from .atomicfile import check_writable, write_atomically  # noqa: F401  (xpnet.io.check_writable stays)

FORMAT = 1
"""The file format this xpnet writes; it reads every format up to this one."""
MAGIC = "xpnet"
HEADER = "__xpnet__"
_MAX_HEADER = 1 << 20  # bytes: a real header is a few kB; this bounds what a hostile file makes us parse
_DTYPES = ("float32", "float64")


class ModelFormatError(ValueError):
    """A file is not an xpnet model this version can read (the message says what is wrong with it)."""


# -- write --------------------------------------------------------------------------------------
def write(path, header: dict, arrays: dict) -> None:
    """Write ``header`` and the named host ``arrays`` to ``path`` as one ``.npz`` file, atomically.

    ``header`` is a JSON-serializable dict; the magic, the format, the version and the table of the
    arrays' shapes are added to it. The file name is used as given (no ``.npz`` is appended). Raises
    ``ValueError`` for a header that is not JSON-serializable and ``OSError`` (naming ``path``) when the
    file cannot be written; the previous file, if any, is left untouched.
    """
    header = {**header, "magic": MAGIC, "format": FORMAT, "xpnet_version": __version__,
              "parameters": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}}
    try:
        raw = json.dumps(header, allow_nan=False, sort_keys=True).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"save: the model's configuration is not JSON-serializable: {exc}") from None
    members = {HEADER: np.frombuffer(raw, dtype=np.uint8)}
    members.update({k: np.ascontiguousarray(v) for k, v in arrays.items()})
    write_atomically(path, lambda f: np.savez(f, allow_pickle=False, **members))


# -- read ---------------------------------------------------------------------------------------
def read(path) -> tuple[dict, dict]:
    """The validated JSON header and the host arrays ``{name: np.ndarray}`` of a model file.

    For tools that want the weights without building a model. Raises ``FileNotFoundError`` if ``path``
    does not exist and :class:`ModelFormatError` if it is not a model file this version of xpnet can read.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such model file: {path}")
    if os.path.isdir(path):
        raise ModelFormatError(f"{path} is a folder, not an xpnet model file")
    try:
        with open(path, "rb") as f:
            return _parse(path, f, os.fstat(f.fileno()).st_size)
    except (ModelFormatError, PermissionError):
        raise
    except Exception as exc:  # any other failure on malformed bytes (zipfile, struct, zlib, NumPy...)
        raise ModelFormatError(f"{path}: not a readable xpnet model file ({type(exc).__name__}: {exc})") from None


def _parse(path, f, size):
    start = f.read(4)
    if start[:2] != b"PK":
        what = "an empty file" if not start else f"it starts with {start!r}"
        raise ModelFormatError(f"{path}: not an xpnet model file (not a zip/.npz archive: {what})")
    f.seek(0)
    try:
        archive = zipfile.ZipFile(f)
    except zipfile.BadZipFile as exc:
        raise ModelFormatError(f"{path}: not an xpnet model file, or truncated (bad zip archive: {exc})") from None
    with archive:
        members = {}
        for info in archive.infolist():
            if not info.filename.endswith(".npy") or info.is_dir() or info.filename[:-4] in members:
                raise ModelFormatError(f"{path}: unexpected member {info.filename!r} in the archive")
            members[info.filename[:-4]] = info
        if HEADER not in members:
            raise ModelFormatError(f"{path}: no xpnet header ({HEADER}.npy is missing): not a model "
                                   f"saved by xpnet.save")
        header = _read_header(path, _read_member(path, archive, members.pop(HEADER), _MAX_HEADER))
        arrays = {}
        for name, info in members.items():
            arrays[name] = _read_member(path, archive, info, size)
    _check_arrays(path, header, arrays)
    return header, arrays


def _read_member(path, archive, info, limit):
    """One ``.npy`` member as a NumPy array, refusing object arrays and sizes the file cannot hold.

    The ``.npy`` header is read first, with the functions ``np.load`` itself uses, so that a header
    claiming a huge shape is refused before anything is allocated for it."""
    name = info.filename
    if info.file_size > limit:
        raise ModelFormatError(f"{path}: member {name!r} claims {info.file_size} bytes, more than "
                               f"{'a header may hold' if limit == _MAX_HEADER else 'the file holds'}")
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ModelFormatError(f"{path}: member {name!r} has .npy format version {version}, "
                                   f"which xpnet does not write")
        if dtype.hasobject:
            raise ModelFormatError(f"{path}: member {name!r} holds Python objects (a pickle); xpnet model "
                                   f"files hold only numbers and are never unpickled")
        if any(d < 0 for d in shape):
            raise ModelFormatError(f"{path}: member {name!r} has a negative dimension in its shape {shape}")
        count = 1
        for d in shape:
            count *= d
        if count * dtype.itemsize > info.file_size:
            raise ModelFormatError(f"{path}: member {name!r} is truncated (its header says {shape} "
                                   f"{dtype}, more than its {info.file_size} bytes)")
    # The header is sound and the sizes fit: now the ordinary reader, which never unpickles.
    with archive.open(info) as f:
        array = np.load(f, allow_pickle=False)
        if f.read(1):  # (reading through to the end is also what makes zipfile check the CRC)
            raise ModelFormatError(f"{path}: member {name!r} has trailing bytes after its array")
    if array.shape != tuple(shape) or array.dtype != dtype:
        raise ModelFormatError(f"{path}: member {name!r} changed while it was read")
    return array


def _read_header(path, array) -> dict:
    if array.dtype != np.uint8 or array.ndim != 1:
        raise ModelFormatError(f"{path}: garbled xpnet header (a {array.dtype} array of shape {array.shape}, "
                               f"expected uint8 bytes)")
    try:
        header = json.loads(array.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelFormatError(f"{path}: garbled xpnet header (not JSON: {exc})") from None
    if not isinstance(header, dict) or header.get("magic") != MAGIC:
        raise ModelFormatError(f"{path}: not an xpnet model file (wrong magic in the header)")
    fmt, version = header.get("format"), header.get("xpnet_version", "an unknown version")
    if not is_count(fmt, 1):
        raise ModelFormatError(f"{path}: garbled xpnet header (format {fmt!r} is not a positive int)")
    if fmt > FORMAT:
        raise ModelFormatError(f"{path} was written by xpnet {version} with format {fmt}; this xpnet "
                               f"({__version__}) reads format <= {FORMAT}: upgrade xpnet to load it")
    if header.get("dtype") not in _DTYPES:
        raise ModelFormatError(f"{path}: garbled xpnet header (dtype {header.get('dtype')!r}, "
                               f"expected one of {', '.join(_DTYPES)})")
    arch = header.get("architecture")
    if not isinstance(arch, dict) or not isinstance(arch.get("layers"), list):
        raise ModelFormatError(f"{path}: garbled xpnet header (no architecture.layers list)")
    for i, spec in enumerate(arch["layers"]):
        if not (isinstance(spec, dict) and isinstance(spec.get("class"), str)
                and isinstance(spec.get("config", {}), dict)):
            raise ModelFormatError(f"{path}: garbled xpnet header (layer {i} is not {{'class', 'config'}})")
    if not isinstance(header.get("metadata", {}), dict):
        raise ModelFormatError(f"{path}: garbled xpnet header (metadata is not a dict)")
    loss = header.get("loss")
    if loss is not None and not (isinstance(loss, dict) and isinstance(loss.get("class"), str)
                                 and isinstance(loss.get("config", {}), dict)):
        raise ModelFormatError(f"{path}: garbled xpnet header (loss is not {{'class', 'config'}})")
    span = header.get("input_range")
    if span is not None and not (isinstance(span, list) and len(span) == 2
                                 and all(is_number(v) and math.isfinite(v) for v in span)
                                 and span[0] <= span[1]):
        raise ModelFormatError(f"{path}: garbled xpnet header (input_range is not [low, high])")
    params = header.get("parameters")
    if not isinstance(params, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("shape"), list)
            and all(is_count(d) for d in v["shape"])
            for v in params.values()):
        raise ModelFormatError(f"{path}: garbled xpnet header (bad parameters table)")
    return header


def _check_arrays(path, header, arrays) -> None:
    table = header["parameters"]
    missing = sorted(set(table) - set(arrays))
    if missing:
        raise ModelFormatError(f"{path}: parameter arrays missing from the file: {', '.join(missing)}")
    extra = sorted(set(arrays) - set(table))
    if extra:
        raise ModelFormatError(f"{path}: arrays not listed in the header: {', '.join(extra)}")
    for name, a in arrays.items():
        shape = tuple(table[name]["shape"])
        if a.shape != shape:
            raise ModelFormatError(f"{path}: parameter {name!r} has shape {a.shape}, the header says {shape}")
        if str(a.dtype) != header["dtype"]:
            raise ModelFormatError(f"{path}: parameter {name!r} is {a.dtype}, the model is {header['dtype']}")
