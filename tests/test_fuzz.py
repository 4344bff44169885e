"""Fuzzing the file readers with mutations of valid files, and checking what each rejection says.

Random bytes stop at the first check (the 2-byte zip signature), so most of the examples here start
from a real model saved by ``xpnet.save`` and a real IDX file written below, and change one thing:
a header field, an ``.npy`` member's header or payload, the archive's member list, a byte anywhere, a
cut. Each test carries an oracle, written from the file format, that says what must happen: the model
loads unchanged, or a ``ModelFormatError`` / ``DatasetCorruptError`` whose message names the fault.
Hypothesis runs a bounded number of examples (a few seconds in all).
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import xpnet
from xpnet import Dense, Flatten, LeakyReLU, ModelFormatError, Sequential, Sigmoid, Tanh
from xpnet import datasets as ds
from xpnet import io as xio

FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# -- a real model file and ways to rebuild it ------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(file bytes, header dict, arrays, state) of a real saved model."""
    path = tmp_path_factory.mktemp("fuzz") / "model.npz"
    model = Sequential([Flatten(), Dense(12, 8), LeakyReLU(0.2), Dense(8, 6, bias=False), Tanh(),
                        Dense(6, 3, init="glorot_uniform"), Sigmoid()], device="cpu", seed=0)
    model.save(path)
    header, arrays = xio.read(path)
    return path.read_bytes(), header, arrays, model.state_dict()


def npy_bytes(array=None, *, descr=None, shape=None, fortran=False, payload=None, version=(1, 0)):
    """One ``.npy`` member, its header free to disagree with its payload."""
    array = np.asarray(array) if array is not None else None
    d = {"descr": descr or np.lib.format.dtype_to_descr(array.dtype),
         "fortran_order": fortran, "shape": tuple(array.shape) if shape is None else tuple(shape)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, d)
    raw = bytearray(buf.getvalue())
    raw[6:8] = bytes(version)
    return bytes(raw) + (array.tobytes() if payload is None else payload)


def pack(members: dict) -> bytes:
    """A zip (stored, like np.savez) of ``{member name: bytes}``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def members_of(header, arrays, **replace):
    raw = json.dumps(header).encode()
    out = {f"{xio.HEADER}.npy": npy_bytes(np.frombuffer(raw, np.uint8))}
    out.update({f"{k}.npy": npy_bytes(v) for k, v in arrays.items()})
    out.update(replace)
    return out


def outcome(tmp_path, data):
    """The loaded model, or the ModelFormatError's message (any other exception fails the test)."""
    path = tmp_path / "fuzzed.npz"
    path.write_bytes(data)
    try:
        return xpnet.load(path, device="cpu")
    except ModelFormatError as exc:
        message = str(exc)
        assert message.startswith(str(path)), message  # every message names the file
        return message


def assert_rejected(result, pattern):
    assert isinstance(result, str), f"loaded, but expected an error matching {pattern!r}"
    assert re.search(pattern, result), f"expected {pattern!r}, got {result!r}"


def assert_same_weights(result, state):
    assert not isinstance(result, str), f"refused a valid file: {result}"
    got = result.state_dict()
    assert got.keys() == state.keys()
    for k in state:
        np.testing.assert_array_equal(got[k], state[k], err_msg=k)


# -- one header field changed ------------------------------------------------------------------------
JSON = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 2**40), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8), st.lists(st.integers(-2, 20), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.sampled_from(["xpnet", "float32", "float64", "Dense", "Conv2D", 0, 1, 2, 0.5, 0.99, 1.0, 12, 12.0, 8,
                     [12, 8], [8, 12], [8], [], {}]),
)
FIELDS = [("magic",), ("format",), ("dtype",), ("xpnet_version",), ("metadata",), ("architecture",),
          ("architecture", "layers"), ("parameters",),
          *[("architecture", "layers", i, "class") for i in range(7)],
          ("architecture", "layers", 1, "config", "in_features"),
          ("architecture", "layers", 3, "config", "out_features"),
          ("architecture", "layers", 2, "config", "alpha"),
          ("architecture", "layers", 1, "config", "units"),
          *[("parameters", k, "shape") for k in ("1.W", "1.b", "3.W", "5.W", "5.b")]]


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def expected_for_header(field, value, header, arrays):
    """None if the file must load, else a regex its error must match (from the format, one check each)."""
    top = field[0]
    if top == "magic":
        return None if value == "xpnet" else r"not an xpnet model file \(wrong magic in the header\)$"
    if top == "format":
        if not _is_int(value) or value < 1:
            return r"garbled xpnet header \(format .* is not a positive int\)$"
        return None if value == 1 else rf"with format {value}; this xpnet \(.*\) reads format <= 1: upgrade xpnet"
    if top == "dtype":
        if value == "float32":
            return None
        if value == "float64":
            return r"parameter '[\d.]+\w' is float32, the model is float64$"
        return r"garbled xpnet header \(dtype .*, expected one of float32, float64\)$"
    if top == "xpnet_version":
        return None
    if top == "metadata":
        return None if isinstance(value, dict) else r"garbled xpnet header \(metadata is not a dict\)$"
    if field in (("architecture",), ("architecture", "layers")):
        layers = value.get("layers") if field == ("architecture",) and isinstance(value, dict) else value
        assume(not isinstance(layers, list))
        return r"garbled xpnet header \(no architecture.layers list\)$"
    if field == ("parameters",):
        assume(not (isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values())))
        if value == {}:
            return r"arrays not listed in the header: 1\.W, 1\.b, 3\.W, 5\.W, 5\.b$"
        return r"garbled xpnet header \(bad parameters table\)$"
    if top == "architecture" and field[3] == "class":
        i = field[2]
        if not isinstance(value, str):
            return rf"garbled xpnet header \(layer {i} is not \{{'class', 'config'\}}\)$"
        original = header["architecture"]["layers"][i]["class"]
        assume(value == original or value not in xpnet.layers.LAYERS)  # another known class: a different model
        return None if value == original else rf"layer {i} has unknown class {re.escape(repr(value))}; known: .*register_layer"
    if top == "architecture":
        i, key = field[2], field[4]
        if key == "alpha":
            ok = isinstance(value, (int, float)) and 0 <= value < 1
            return None if ok else r"layer 2 \(LeakyReLU\) cannot be rebuilt from its config .*alpha"
        if key == "units":
            return r"layer 1 \(Dense\) cannot be rebuilt from its config .*unexpected keyword argument 'units'"
        original = header["architecture"]["layers"][i]["config"][key]
        if not (_is_int(value) and value >= 1):  # Dense refuses it before its weights are looked at
            return rf"layer {i} \(Dense\) cannot be rebuilt from its config"
        if value == original:
            return None
        w = arrays[f"{i}.W"].shape
        return rf"layer {i} is Dense\(.*\) but its weights have shape \({w[0]}, {w[1]}\)$"
    # a parameter's shape in the table
    name = field[1]
    if not (isinstance(value, list) and all(_is_int(d) and d >= 0 for d in value)):
        return r"garbled xpnet header \(bad parameters table\)$"
    if tuple(value) == arrays[name].shape:
        return None
    return rf"parameter '{re.escape(name)}' has shape {re.escape(str(arrays[name].shape))}, the header says"


@FUZZ
@given(field=st.sampled_from(FIELDS), value=JSON)
def test_one_header_field_changed(saved, tmp_path, field, value):
    _, original, arrays, state = saved
    expected = expected_for_header(field, value, original, arrays)
    header = json.loads(json.dumps(original))
    node = header
    for key in field[:-1]:
        node = node[key]
    node[field[-1]] = value
    result = outcome(tmp_path, pack(members_of(header, arrays)))
    if expected is None:
        assert_same_weights(result, state)
        if field == ("metadata",):
            assert result.metadata == value
        if field[-1] == "alpha":
            assert result.layers[2].alpha == float(value)
    else:
        assert_rejected(result, expected)


# -- one .npy member's header or payload changed -------------------------------------------------------
@FUZZ
@given(name=st.sampled_from(["1.W", "1.b", "3.W", "5.W", "5.b"]), data=st.data(),
       kind=st.sampled_from(["descr", "shape", "cut", "append", "version"]))
def test_one_array_member_changed(saved, tmp_path, name, kind, data):
    _, header, arrays, state = saved
    a = arrays[name]
    member = f"{name}.npy"
    header_len = len(npy_bytes(a)) - a.nbytes
    if kind == "descr":
        descr = data.draw(st.sampled_from(["<f8", "<i4", "<f2", "|u1", "<i8", "|O"]))
        if descr == "|O":
            raw, pattern = npy_bytes(a, descr="|O"), rf"member '{re.escape(member)}' holds Python objects \(a pickle\)"
        else:
            raw = npy_bytes(a.astype(np.dtype(descr)))
            pattern = rf"parameter '{re.escape(name)}' is {np.dtype(descr)}, the model is float32$"
    elif kind == "shape":
        shape = tuple(data.draw(st.lists(st.integers(0, 40), min_size=1, max_size=3)))
        need, size = math.prod(shape) * 4, header_len + a.nbytes
        raw = npy_bytes(a, shape=shape)
        if need > size:
            pattern = rf"member '{re.escape(member)}' is truncated \(its header says"
        elif need < a.nbytes:
            pattern = rf"member '{re.escape(member)}' has trailing bytes after its array$"
        elif need > a.nbytes:
            pattern = r"not a readable xpnet model file \(.*\)$"  # the payload ends inside the array
        elif shape != a.shape:
            pattern = rf"parameter '{re.escape(name)}' has shape {re.escape(str(shape))}, the header says"
        else:
            pattern = None
    elif kind == "cut":
        k = data.draw(st.integers(1, a.nbytes))
        raw = npy_bytes(a)[:-k]
        pattern = (rf"member '{re.escape(member)}' is truncated \(its header says" if k > header_len
                   else r"not a readable xpnet model file \(.*\)$")
    elif kind == "append":
        raw = npy_bytes(a) + data.draw(st.binary(min_size=1, max_size=16))
        pattern = rf"member '{re.escape(member)}' has trailing bytes after its array$"
    else:
        version = data.draw(st.tuples(st.integers(0, 255), st.integers(0, 255)))
        assume(version not in ((1, 0), (2, 0)))
        raw = npy_bytes(a, version=version)
        pattern = rf"member '{re.escape(member)}' has .npy format version \({version[0]}, {version[1]}\), which xpnet"
    result = outcome(tmp_path, pack(members_of(header, arrays, **{member: raw})))
    if pattern is None:
        assert_same_weights(result, state)
    else:
        assert_rejected(result, pattern)


# -- the archive's member list changed ---------------------------------------------------------------
@FUZZ
@given(op=st.sampled_from(["drop", "extra-npy", "extra-other", "duplicate"]),
       name=st.sampled_from([xio.HEADER, "1.W", "1.b", "3.W", "5.W", "5.b"]),
       new=st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True))
def test_archive_members_changed(saved, tmp_path, op, name, new):
    _, header, arrays, _ = saved
    members = members_of(header, arrays)
    if op == "drop":
        del members[f"{name}.npy"]
        pattern = (r"no xpnet header \(__xpnet__.npy is missing\)" if name == xio.HEADER
                   else rf"parameter arrays missing from the file: {re.escape(name)}$")
        result = outcome(tmp_path, pack(members))
    elif op == "extra-npy":
        assume(f"{new}.npy" not in members)
        members[f"{new}.npy"] = npy_bytes(np.zeros(2, np.float32))
        pattern = rf"arrays not listed in the header: {new}$"
        result = outcome(tmp_path, pack(members))
    elif op == "extra-other":
        members[f"{new}.txt"] = b"hello"
        pattern = rf"unexpected member '{new}.txt' in the archive$"
        result = outcome(tmp_path, pack(members))
    else:
        buf = io.BytesIO()
        with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(buf, "w") as z:
            for k, v in members.items():
                z.writestr(k, v)
            z.writestr(f"{name}.npy", members[f"{name}.npy"])  # the same member twice
        data = buf.getvalue()
        pattern = rf"unexpected member '{re.escape(name)}.npy' in the archive$"
        result = outcome(tmp_path, data)
    assert_rejected(result, pattern)


# -- bytes of the real file changed --------------------------------------------------------------------
def _payloads(data):
    """``{member: (start, end)}`` of each array's payload bytes inside the file (after the .npy header)."""
    out = {}
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in z.infolist():
            n, e = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
            start = info.header_offset + 30 + n + e
            (hlen,) = struct.unpack("<H", data[start + 8:start + 10])
            out[info.filename] = (start + 10 + hlen, start + info.file_size)
    return out


@FUZZ
@given(cut=st.integers(0, 10**6))
def test_truncated_files(saved, tmp_path, cut):
    data = saved[0]
    cut %= len(data)
    if cut == 0:
        pattern = r"not a zip/.npz archive: an empty file\)$"
    elif cut < 2:
        pattern = r"not a zip/.npz archive: it starts with b'P'\)$"
    else:  # the end-of-archive record is the last thing in a zip: any cut loses it
        pattern = r"not an xpnet model file, or truncated \(bad zip archive: File is not a zip file\)$"
    assert_rejected(outcome(tmp_path, data[:cut]), pattern)


@FUZZ
@given(data=st.data(), mask=st.integers(1, 255))
def test_flipped_payload_byte_fails_the_crc(saved, tmp_path, data, mask):
    raw = saved[0]
    regions = {m: r for m, r in _payloads(raw).items() if r[1] > r[0]}
    member = data.draw(st.sampled_from(sorted(regions)))
    pos = data.draw(st.integers(*regions[member]).filter(lambda p: p < regions[member][1]))
    buf = bytearray(raw)
    buf[pos] ^= mask
    assert_rejected(outcome(tmp_path, bytes(buf)),
                    rf"not a readable xpnet model file \(BadZipFile: Bad CRC-32 for file '{re.escape(member)}'\)$")


# What a flipped byte anywhere may lead to: each is a message of its own check, never a crash.
ANY_FLIP = re.compile("|".join([
    r"not an xpnet model file \(not a zip/.npz archive: it starts with",
    r"bad zip archive: ", r"not a readable xpnet model file \(\w+: ", r"unexpected member ",
    r"no xpnet header", r"garbled xpnet header", r"wrong magic", r"member '.*' (claims|is truncated|has|holds)",
    r"parameter arrays missing", r"arrays not listed", r"parameter '.*' (has shape|is )",
    r"layer \d+ ", r"the architecture has parameters", r"with format \d+", r"unknown loss",
]))


@FUZZ
@given(pos=st.integers(0, 10**6), mask=st.integers(1, 255))
def test_flipped_byte_anywhere(saved, tmp_path, pos, mask):
    raw, _, _, state = saved
    buf = bytearray(raw)
    buf[pos % len(buf)] ^= mask
    result = outcome(tmp_path, bytes(buf))
    if isinstance(result, str):
        assert ANY_FLIP.search(result), result
    else:  # a byte no reader checks (a timestamp, say): then the weights are the saved ones
        assert_same_weights(result, state)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=256))
def test_random_bytes(tmp_path, data):
    result = outcome(tmp_path, data)
    if not data:
        assert_rejected(result, r"an empty file\)$")
    elif data[:2] != b"PK":
        assert_rejected(result, re.escape(f"it starts with {data[:4]!r})") + "$")
    else:
        assert_rejected(result, r"bad zip archive")


# -- a real IDX file --------------------------------------------------------------------------------------
IMAGES = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)
LABELS = np.array([3, 1, 4, 1, 5], dtype=np.uint8)


def idx_bytes(array):
    return bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()


def expected_idx(data):
    """The IDX format (LeCun's MNIST page): 00 00 08 n, n big-endian uint32 dims, then prod(dims) bytes."""
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or data[3] not in (1, 3):
        return r"bad IDX magic (\w+|empty file), expected 00000801 \(uint8 labels\) or 00000803 \(uint8 images\)$"
    start = 4 + 4 * data[3]
    if len(data) < start:
        return rf"IDX header truncated \({len(data)} bytes\)$"
    dims = tuple(int.from_bytes(data[i:i + 4], "big") for i in range(4, start, 4))
    want, have = math.prod(dims), len(data) - start
    if want != have:
        what = "truncated" if have < want else "trailing bytes"
        return rf"IDX header dims {re.escape(str(dims))} need {want} payload bytes, file has {have} \({what}\)$"
    return np.frombuffer(data, np.uint8, offset=start).reshape(dims)


@FUZZ
@given(which=st.sampled_from(["images", "labels"]), gz=st.booleans(), data=st.data(),
       op=st.sampled_from(["set", "cut", "append"]))
def test_idx_mutations(which, gz, op, data):
    raw = bytearray(idx_bytes(IMAGES if which == "images" else LABELS))
    header_end = 4 + 4 * raw[3]
    if op == "set":  # mostly in the header, where the checks are
        pos = data.draw(st.one_of(st.integers(0, header_end - 1), st.integers(0, len(raw) - 1)))
        raw[pos] = data.draw(st.integers(0, 255))
    elif op == "cut":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    else:
        raw += data.draw(st.binary(min_size=1, max_size=8))
    raw = bytes(raw)
    expected = expected_idx(raw)
    name = f"t10k-{which}-idx.gz" if gz else f"t10k-{which}-idx"
    blob = gzip.compress(raw) if gz else raw
    if not gz and raw[:2] == b"\x1f\x8b":  # a plain file that happens to start like gzip
        expected = r"bad gzip data \(truncated\?\)"
    if isinstance(expected, str):
        with pytest.raises(ds.DatasetCorruptError) as info:
            ds.read_idx(blob, name=name)
        assert str(info.value).startswith(f"{name}: ") and re.search(expected, str(info.value)), str(info.value)
    else:
        np.testing.assert_array_equal(ds.read_idx(blob, name=name), expected)


@FUZZ
@given(cut=st.integers(1, 10**6), flip=st.booleans())
def test_damaged_gzip_idx(cut, flip):
    blob = bytearray(gzip.compress(idx_bytes(IMAGES)))
    if flip:  # the CRC-32 and length trailer of the gzip member
        blob[len(blob) - 1 - cut % 8] ^= 0xFF
    else:
        blob = blob[:cut % (len(blob) - 2) + 2]  # keep the 2-byte gzip signature
    with pytest.raises(ds.DatasetCorruptError, match=r"^images\.gz: bad gzip data \(truncated\?\): \w+"):
        ds.read_idx(bytes(blob), name="images.gz")


def test_gz_name_without_gzip_data():
    with pytest.raises(ds.DatasetCorruptError, match=r"^labels\.gz: not gzip data, starts with b'\\x00\\x00\\x08\\x01"):
        ds.read_idx(idx_bytes(LABELS), name="labels.gz")
