"""Model files: where save puts its temporary file, the mode of a new file, and hand-written files that
are valid but unusual (a layer without a config, a Dense without ``init``, ``.npy`` format 2.0, a header
of exactly the size limit) or wrong in ways the messages must spell out.

Each hand-written file is a plain ``np.savez`` of a JSON header and arrays, built here from the format
described in ``xpnet/io.py``, not by ``xpnet.save``.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import re
import sys
import tempfile
import zipfile

import numpy as np
import pytest

import xpnet
from xpnet import (MSE, BinaryCrossEntropy, CrossEntropy, Dense, Layer, ModelFormatError, ReLU, Sequential,
                   SoftmaxCrossEntropy)
from xpnet import io as xio
from xpnet import saving
from xpnet.layers import LAYERS, register_layer
from xpnet.backend import host_rng


def _header(layers, parameters, dtype="float32", **extra):
    header = {"magic": "xpnet", "format": 1, "xpnet_version": "0.1.0", "dtype": dtype,
              "architecture": {"layers": layers},
              "parameters": {k: {"shape": list(s), "dtype": dtype} for k, s in parameters.items()}}
    header.update(extra)
    return header


def _write(path, header, arrays, header_array=None):
    raw = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    np.savez(path, __xpnet__=raw if header_array is None else header_array, **arrays)
    return path


def _dense(i, o, **config):
    return {"class": "Dense", "config": {"in_features": i, "out_features": o, **config}}


def _weights(i, o, bias=True):
    rng = np.random.default_rng(0)
    out = {"0.W": rng.normal(size=(i, o)).astype(np.float32)}
    if bias:
        out["0.b"] = np.arange(o, dtype=np.float32)
    return out


# -- save ----------------------------------------------------------------------------------------
def test_save_writes_a_hidden_temporary_file_beside_the_target(tmp_path, monkeypatch):
    """The rename is atomic only within one file system, hence the same folder."""
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renames.append((src, dst)), real_replace(src, dst))[1])
    target = tmp_path / "model.npz"
    xpnet.save(Sequential([Dense(2, 2)], device="cpu", seed=0), target)
    (src, dst), = renames
    assert os.path.dirname(src) == str(tmp_path) and os.fspath(dst) == str(target)
    name = os.path.basename(src)
    assert name.startswith(".model.npz.") and name.endswith(".tmp"), name
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_a_new_file_gets_the_mode_open_would_give(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        xpnet.save(Sequential([Dense(2, 2)], device="cpu", seed=0), tmp_path / "m.npz")
        assert os.umask(umask) == umask  # save put the umask back
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "m.npz").st_mode & 0o777 == mode


def test_metadata_must_be_a_json_dict_without_nan(tmp_path):
    model = Sequential([Dense(2, 2)], device="cpu", seed=0)
    with pytest.raises(TypeError, match=r"^save: metadata must be a dict, got list$"):
        xpnet.save(model, tmp_path / "m.npz", metadata=[1, 2])
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"^save: the model's configuration is not JSON-serializable: "):
            xpnet.save(model, tmp_path / "m.npz", metadata={"x": bad})
    assert not os.listdir(tmp_path)


class Doubler(Layer):
    def forward(self, x, training=False):
        return 2 * x

    def backward(self, dy):
        return 2 * dy


def test_register_layer(tmp_path, monkeypatch):
    monkeypatch.setitem(LAYERS, "Doubler", None)  # undone after the test: Doubler leaves the registry again
    del LAYERS["Doubler"]
    model = Sequential([Dense(2, 2), Doubler()], device="cpu", seed=0)
    with pytest.raises(TypeError, match=rf"^save: layer 1 is a {__name__}\.Doubler, which load\(\) cannot rebuild; "
                                        r"register it first with xpnet\.layers\.register_layer\(Doubler\)$"):
        xpnet.save(model, tmp_path / "m.npz")
    for bad in (int, Sequential, "Doubler", Doubler()):
        with pytest.raises(TypeError, match=r"^register_layer: .* is not a subclass of xpnet\.Layer$"):
            register_layer(bad)
    assert register_layer(Doubler) is Doubler and LAYERS["Doubler"] is Doubler
    xpnet.save(model, tmp_path / "m.npz")
    loaded = xpnet.load(tmp_path / "m.npz", device="cpu")
    assert type(loaded.layers[1]) is Doubler
    x = np.ones((1, 2), np.float32)
    np.testing.assert_array_equal(xpnet.to_numpy(loaded.predict(x)), xpnet.to_numpy(model.predict(x)))


# -- load: unusual but valid files -----------------------------------------------------------------------
def test_a_layer_without_config_and_a_dense_without_init(tmp_path):
    path = _write(tmp_path / "m.npz", _header([_dense(3, 2), {"class": "ReLU"}], {"0.W": (3, 2), "0.b": (2,)}),
                  _weights(3, 2))
    model = xpnet.load(path, device="cpu")
    assert isinstance(model.layers[1], ReLU)
    layer = model.layers[0]
    assert layer.get_config()["init"] == "lecun_normal"  # Dense's default
    np.testing.assert_array_equal(layer.params["W"], _weights(3, 2)["0.W"])
    # built with zeros to load, but it keeps the saved initializer for a later build
    big = xpnet.load(_write(tmp_path / "big.npz", _header([_dense(2000, 50)], {"0.W": (2000, 50), "0.b": (50,)}),
                            _weights(2000, 50)), device="cpu").layers[0]
    big.build(xpnet.device("cpu"), host_rng(0), "float64")
    assert big.params["W"].std() == pytest.approx(1 / math.sqrt(2000), rel=0.03)


def _he(shape, rng, device, dtype="float32"):
    return xpnet.init.he_normal(shape, rng, device, dtype)


def test_the_saved_initializer_is_kept_by_name(tmp_path):
    """A built-in initializer is restored for later builds; a custom one keeps its name only."""
    model = Sequential([Dense(1000, 40, init="he_normal"), ReLU(), Dense(40, 2, init=_he)], device="cpu", seed=0)
    model.save(tmp_path / "m.npz")
    loaded = xpnet.load(tmp_path / "m.npz", device="cpu")
    assert [loaded.layers[i].get_config()["init"] for i in (0, 2)] == ["he_normal", "_he"]
    for i in (0, 2):
        np.testing.assert_array_equal(loaded.layers[i].params["W"], model.layers[i].params["W"])
    first = loaded.layers[0]
    first.build(xpnet.device("cpu"), host_rng(1), "float64")
    assert first.params["W"].std() == pytest.approx(math.sqrt(2 / 1000), rel=0.03)


def test_npy_format_2_members_load(tmp_path):
    """NumPy writes format 2.0 for headers over 64 KiB; a reader of 1.0 only would refuse such files."""
    header = _header([_dense(3, 2)], {"0.W": (3, 2), "0.b": (2,)})
    arrays = _weights(3, 2)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, a in [("__xpnet__", np.frombuffer(json.dumps(header).encode(), np.uint8)), *arrays.items()]:
            member = io.BytesIO()
            np.lib.format.write_array(member, a, version=(2, 0))
            z.writestr(name + ".npy", member.getvalue())
    (tmp_path / "v2.npz").write_bytes(buf.getvalue())
    model = xpnet.load(tmp_path / "v2.npz", device="cpu")
    np.testing.assert_array_equal(model.state_dict()["0.b"], arrays["0.b"])


def _header_of_member_size(size):
    """A header whose .npy member (128-byte .npy header + JSON) is exactly ``size`` bytes."""
    header = _header([_dense(3, 2)], {"0.W": (3, 2), "0.b": (2,)}, metadata={"pad": ""})
    base = len(json.dumps(header).encode())
    header["metadata"]["pad"] = "x" * (size - 128 - base)
    raw = np.frombuffer(json.dumps(header).encode(), np.uint8)
    member = io.BytesIO()
    np.lib.format.write_array(member, raw)
    assert len(member.getvalue()) == size
    return header, raw


def test_a_header_of_exactly_the_limit_loads_and_one_byte_more_does_not(tmp_path):
    header, raw = _header_of_member_size(1 << 20)
    model = xpnet.load(_write(tmp_path / "ok.npz", header, _weights(3, 2), raw), device="cpu")
    assert len(model.metadata["pad"]) > 1_000_000
    header, raw = _header_of_member_size((1 << 20) + 1)
    path = _write(tmp_path / "big.npz", header, _weights(3, 2), raw)
    with pytest.raises(ModelFormatError, match=rf"^{path}: member '__xpnet__.npy' claims 1048577 bytes, more than "
                                               r"a header may hold$"):
        xpnet.load(path)


def test_a_compressed_member_bigger_than_the_file_is_refused(tmp_path):
    """np.savez never compresses; a deflated member claiming more bytes than the whole file is a zip bomb."""
    header = _header([_dense(3, 2)], {"0.W": (3, 2), "0.b": (2,)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, a in [("__xpnet__", np.frombuffer(json.dumps(header).encode(), np.uint8)),
                        ("0.W", np.zeros((3, 2), np.float32)), ("0.b", np.zeros(1_000_000, np.float32))]:
            member = io.BytesIO()
            np.lib.format.write_array(member, a)
            z.writestr(name + ".npy", member.getvalue())
    path = tmp_path / "bomb.npz"
    path.write_bytes(buf.getvalue())
    with pytest.raises(ModelFormatError, match=rf"^{path}: member '0.b.npy' claims \d+ bytes, more than the file "
                                               r"holds$"):
        xpnet.load(path)


# -- load: what the messages say -------------------------------------------------------------------------
@pytest.mark.parametrize("header_array, what", [
    (np.arange(5, dtype=np.int32), r"a int32 array of shape \(5,\)"),
    (np.zeros((1, 4), np.uint8), r"a uint8 array of shape \(1, 4\)"),
])
def test_a_header_that_is_not_bytes(tmp_path, header_array, what):
    path = _write(tmp_path / "h.npz", {}, _weights(3, 2), header_array)
    with pytest.raises(ModelFormatError, match=rf"^{path}: garbled xpnet header \({what}, expected uint8 bytes\)$"):
        xpnet.load(path)


def test_newer_format_without_a_version(tmp_path):
    header = _header([_dense(3, 2)], {"0.W": (3, 2), "0.b": (2,)}, format=2)
    del header["xpnet_version"]
    path = _write(tmp_path / "n.npz", header, _weights(3, 2))
    with pytest.raises(ModelFormatError, match=rf"^{path} was written by xpnet an unknown version with format 2; "):
        xpnet.load(path)


def test_unknown_dtype_is_named(tmp_path):
    path = _write(tmp_path / "d.npz", _header([_dense(3, 2)], {"0.W": (3, 2), "0.b": (2,)}, dtype="float16"),
                  _weights(3, 2))
    with pytest.raises(ModelFormatError, match=rf"^{path}: garbled xpnet header \(dtype 'float16', expected one of "
                                               r"float32, float64\)$"):
        xpnet.load(path)


def test_unknown_layer_lists_the_known_ones(tmp_path):
    path = _write(tmp_path / "u.npz", _header([{"class": "Conv3D", "config": {}}], {}), {})
    known = ", ".join(sorted(LAYERS))
    ours = ", ".join(name for name in sorted(LAYERS) if LAYERS[name].__module__.startswith("xpnet."))
    assert ours.startswith("AvgPool2D, BatchNorm1d, BatchNorm2d, Conv2D, Dense, Dropout, Embedding, Flatten, GELU, "
                           "GlobalAvgPool2D")
    with pytest.raises(ModelFormatError, match=rf"^{path}: layer 0 has unknown class 'Conv3D'; known: {known} "
                                               r"\(register custom layers"):
        xpnet.load(path)


def test_dense_without_weights(tmp_path):
    path = _write(tmp_path / "w.npz", _header([_dense(3, 2)], {}), {})
    with pytest.raises(ModelFormatError, match=rf"^{path}: layer 0 is Dense\(3, 2\) but its weights are missing$"):
        xpnet.load(path)


def test_missing_and_extra_arrays_are_all_listed(tmp_path):
    path = _write(tmp_path / "m.npz", _header([_dense(3, 2)], {"0.W": (3, 2), "0.b": (2,)}), {})
    with pytest.raises(ModelFormatError, match=rf"^{path}: parameter arrays missing from the file: 0.W, 0.b$"):
        xpnet.load(path)
    extra = {**_weights(3, 2), "a": np.zeros(1, np.float32), "b": np.zeros(1, np.float32)}
    path = _write(tmp_path / "e.npz", _header([_dense(3, 2)], {"0.W": (3, 2), "0.b": (2,)}), extra)
    with pytest.raises(ModelFormatError, match=rf"^{path}: arrays not listed in the header: a, b$"):
        xpnet.load(path)


def test_arrays_that_do_not_fit_the_architecture(tmp_path):
    # a bias for a layer built without one
    path = _write(tmp_path / "b.npz", _header([_dense(3, 2, bias=False)], {"0.W": (3, 2), "0.b": (2,)}),
                  _weights(3, 2))
    with pytest.raises(ModelFormatError, match=rf"^{path}: the architecture has parameters \['0.W'\] but the file "
                                               r"holds arrays \['0.W', '0.b'\]$"):
        xpnet.load(path)
    # a bias of the wrong length (the header's table agrees with the array, the layer does not)
    arrays = {**_weights(3, 2), "0.b": np.zeros(5, np.float32)}
    path = _write(tmp_path / "s.npz", _header([_dense(3, 2)], {"0.W": (3, 2), "0.b": (5,)}), arrays)
    with pytest.raises(ModelFormatError, match=rf"^{path}: array '0.b' has shape \(5,\), but the layer it belongs "
                                               r"to needs \(2,\)$"):
        xpnet.load(path)


def test_an_array_that_changes_while_it_is_read(tmp_path, monkeypatch):
    """The sizes are checked from the .npy header first; what np.load then returns must match it."""
    path = _write(tmp_path / "c.npz", _header([_dense(3, 2)], {"0.W": (3, 2), "0.b": (2,)}), _weights(3, 2))
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda f, **kw: real_load(f, **kw).astype(np.float64))
    with pytest.raises(ModelFormatError, match=rf"^{path}: member '(__xpnet__|0\.W|0\.b)\.npy' changed while it "
                                               r"was read$"):
        xpnet.load(path)



def _npy(a):
    out = io.BytesIO()
    np.lib.format.write_array(out, a)
    return out.getvalue()


def test_a_negative_dimension_is_named(tmp_path):
    header = _header([_dense(3, 2)], {"0.W": (3, 2), "0.b": (2,)})
    bad = io.BytesIO()
    np.lib.format.write_array_header_1_0(bad, {"descr": "<f4", "fortran_order": False, "shape": (-3, 2)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("__xpnet__.npy", _npy(np.frombuffer(json.dumps(header).encode(), np.uint8)))
        z.writestr("0.W.npy", bad.getvalue() + bytes(24))
        z.writestr("0.b.npy", _npy(np.zeros(2, np.float32)))
    path = tmp_path / "neg.npz"
    path.write_bytes(buf.getvalue())
    with pytest.raises(ModelFormatError, match=rf"^{path}: member '0.W.npy' has a negative dimension in its shape "
                                               r"\(-3, 2\)$"):
        xpnet.load(path)


def _exactly(message):
    return f"^{re.escape(message)}$"


def _valid(path, **extra):
    """A hand-written valid model file with ``extra`` header fields (loss, input_range)."""
    return _write(path, _header([_dense(3, 2)], {"0.W": (3, 2), "0.b": (2,)}, **extra), _weights(3, 2))


# -- the loss and the input range travel with the model -----------------------------------------------
LOSS_CLASSES = [MSE, SoftmaxCrossEntropy, CrossEntropy, BinaryCrossEntropy]


def test_every_xpnet_loss_is_known_to_load():
    assert saving.LOSSES == {cls.__name__: cls for cls in LOSS_CLASSES}
    assert set(saving.LOSSES.values()) == set(xpnet.losses.LOSSES.values())


@pytest.mark.parametrize("cls", LOSS_CLASSES, ids=lambda c: c.__name__)
def test_the_loss_round_trips(tmp_path, cls):
    model = Sequential([Dense(2, 2)], device="cpu", seed=0)
    model.loss = cls()
    xpnet.save(model, tmp_path / "m.npz")
    assert xio.read(tmp_path / "m.npz")[0]["loss"] == {"class": cls.__name__, "config": {}}
    loaded = xpnet.load(tmp_path / "m.npz", device="cpu")
    assert type(loaded.loss) is cls and loaded.loss.get_config() == model.loss.get_config()


def test_no_loss_is_saved_as_null_and_loads_as_none(tmp_path):
    model = Sequential([Dense(2, 2)], device="cpu", seed=0)
    model.loss, model.input_range = None, None
    xpnet.save(model, tmp_path / "m.npz")
    header, _ = xio.read(tmp_path / "m.npz")
    assert "loss" in header and header["loss"] is None
    assert "input_range" in header and header["input_range"] is None
    loaded = xpnet.load(tmp_path / "m.npz", device="cpu")
    assert loaded.loss is None and loaded.input_range is None
    vars(model).pop("loss"), vars(model).pop("input_range")  # a model object that never had them
    xpnet.save(model, tmp_path / "old.npz")
    header, _ = xio.read(tmp_path / "old.npz")
    assert header["loss"] is None and header["input_range"] is None


class _HalfMSE(MSE):
    """A user's own loss: load() has no way to rebuild it."""


def test_a_custom_loss_is_saved_as_none_so_the_file_still_loads(tmp_path):
    model = Sequential([Dense(2, 2)], device="cpu", seed=0)
    model.loss = _HalfMSE()
    xpnet.save(model, tmp_path / "m.npz")
    assert xio.read(tmp_path / "m.npz")[0]["loss"] is None
    assert xpnet.load(tmp_path / "m.npz", device="cpu").loss is None


def test_the_input_range_round_trips_as_python_floats(tmp_path):
    """fit may record NumPy scalars (not JSON-serializable) or ints; the file holds floats, load gives a tuple."""
    model = Sequential([Dense(2, 2)], device="cpu", seed=0)
    model.input_range = (np.float32(0.01), np.float32(1.0))
    xpnet.save(model, tmp_path / "m.npz")
    span = xio.read(tmp_path / "m.npz")[0]["input_range"]
    assert span == [float(np.float32(0.01)), 1.0] and all(type(v) is float for v in span)
    loaded = xpnet.load(tmp_path / "m.npz", device="cpu")
    assert loaded.input_range == (float(np.float32(0.01)), 1.0) and type(loaded.input_range) is tuple
    model.input_range = (0, 255)
    xpnet.save(model, tmp_path / "m.npz")
    assert [type(v) for v in xio.read(tmp_path / "m.npz")[0]["input_range"]] == [float, float]


@pytest.mark.parametrize("extra, loss, span", [
    ({}, None, None),  # a file from before the loss and the range were saved
    ({"loss": {"class": "MSE"}}, MSE, None),  # no config: the class's defaults
    ({"loss": {"class": "CrossEntropy", "config": {}}, "input_range": [0, 255]}, CrossEntropy, (0.0, 255.0)),
    ({"input_range": [0.5, 0.5]}, None, (0.5, 0.5)),  # constant inputs: low == high
    ({"input_range": [-1e300, 1e300]}, None, (-1e300, 1e300)),
])
def test_hand_written_loss_and_input_range_that_load(tmp_path, extra, loss, span):
    model = xpnet.load(_valid(tmp_path / "m.npz", **extra), device="cpu")
    assert (model.loss is None) if loss is None else (type(model.loss) is loss)
    assert model.input_range == span
    if span is not None:
        assert type(model.input_range) is tuple and all(type(v) is float for v in model.input_range)


@pytest.mark.parametrize("loss", [
    "MSE", ["MSE", {}], 0, {"config": {}}, {"class": 3, "config": {}}, {"class": None},
    {"class": "MSE", "config": []}, {"class": "MSE", "config": None}, {"class": "MSE", "config": "{}"},
])
def test_a_garbled_loss_is_refused(tmp_path, loss):
    path = _valid(tmp_path / "m.npz", loss=loss)
    with pytest.raises(ModelFormatError, match=_exactly(f"{path}: garbled xpnet header (loss is not "
                                                        f"{{'class', 'config'}})")):
        xpnet.load(path)


@pytest.mark.parametrize("span", [
    "0,1", {"low": 0, "high": 1}, 1.0,  # not a list
    [], [0.0], [0.0, 1.0, 2.0],  # not two values
    [0, "1"], ["0", 1], [0, None], [[0], 1],  # not numbers
    [False, 1], [0, True],  # bools are ints to Python, not numbers to a user
    [1.0, 0.0], [0.5, 0.4999],  # low > high
    [float("nan"), 1.0], [0.0, float("nan")], [0.0, float("inf")], [float("-inf"), 0.0],  # not finite
])
def test_a_garbled_input_range_is_refused(tmp_path, span):
    path = _valid(tmp_path / "m.npz", input_range=span)
    with pytest.raises(ModelFormatError, match=_exactly(f"{path}: garbled xpnet header (input_range is not "
                                                        f"[low, high])")):
        xpnet.load(path)


@pytest.mark.parametrize("name", ["Loss", "Dense", "one_hot", "os.system", "__class__", "mse", "L1Loss"])
def test_an_unknown_loss_is_named_with_the_known_ones(tmp_path, name):
    """Only xpnet's own losses are rebuilt: never the Loss base class, nor any other name in the module."""
    path = _valid(tmp_path / "m.npz", loss={"class": name, "config": {}})
    with pytest.raises(ModelFormatError, match=_exactly(
            f"{path}: unknown loss {name!r} in the header; known: BinaryCrossEntropy, CrossEntropy, MSE, "
            f"SoftmaxCrossEntropy")):
        xpnet.load(path)


def test_a_loss_config_the_class_cannot_take(tmp_path, monkeypatch):
    path = _valid(tmp_path / "m.npz", loss={"class": "MSE", "config": {"reduction": "sum"}})
    with pytest.raises(TypeError) as why:
        MSE(reduction="sum")
    with pytest.raises(ModelFormatError, match=_exactly(f"{path}: the loss MSE cannot be rebuilt: {why.value}")):
        xpnet.load(path)

    class Picky(MSE):  # a loss whose constructor checks its values
        def __init__(self, **config):
            raise ValueError(f"bad config {config}")

    monkeypatch.setitem(saving.LOSSES, "MSE", Picky)
    with pytest.raises(ModelFormatError, match=_exactly(f"{path}: the loss MSE cannot be rebuilt: bad config "
                                                        f"{{'reduction': 'sum'}}")):
        xpnet.load(path)


# -- check_writable, and what save's errors say --------------------------------------------------------
def test_check_writable_returns_the_folder_and_leaves_nothing(tmp_path, monkeypatch):
    made = []
    real_mkstemp = tempfile.mkstemp

    def mkstemp(**kwargs):
        made.append(real_mkstemp(**kwargs))
        return made[-1]

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.chdir(tmp_path)
    assert xio.check_writable("m.npz") == str(tmp_path)  # a relative path: its absolute folder
    assert xio.check_writable(tmp_path / "sub.npz") == str(tmp_path)
    assert os.listdir(tmp_path) == []  # the probes are gone
    for fd, probe in made:  # made where save makes its temporary file, named like it
        assert os.path.dirname(probe) == str(tmp_path)
        assert re.fullmatch(r"\.(m|sub)\.npz\.[^.]{8}\.tmp", os.path.basename(probe)), probe
        with pytest.raises(OSError):  # and closed
            os.fstat(fd)
    assert len(made) == 2


def test_check_writable_refuses_a_folder(tmp_path):
    with pytest.raises(IsADirectoryError, match=_exactly(
            f"cannot save to {tmp_path}: it is a folder; give a file name such as {tmp_path / 'model.npz'}")):
        xio.check_writable(tmp_path)
    with pytest.raises(IsADirectoryError, match=_exactly(
            f"cannot save to {tmp_path}: it is a folder; give a file name such as {tmp_path / 'model.npz'}")):
        xpnet.save(Sequential([Dense(2, 2)], device="cpu", seed=0), tmp_path)
    assert os.listdir(tmp_path) == []


def test_check_writable_refuses_a_missing_folder(tmp_path, monkeypatch):
    """The folder, and the fix (create it, or save elsewhere); no "[Errno 2]" for the CLI's line."""
    folder = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=_exactly(
            f"cannot save to {folder / 'm.npz'}: the folder {folder} does not exist; create it first "
            f"(mkdir -p {folder}) or save elsewhere")) as why:
        xio.check_writable(folder / "m.npz")
    assert why.value.errno == errno.ENOENT
    monkeypatch.chdir(tmp_path)  # a relative path is named as given, its folder in full
    with pytest.raises(FileNotFoundError, match=_exactly(
            f"cannot save to {os.path.join('nope', 'm.npz')}: the folder {folder} does not exist; create it "
            f"first (mkdir -p {folder}) or save elsewhere")):
        xio.check_writable(os.path.join("nope", "m.npz"))


@pytest.mark.parametrize("under", [(), ("a", "b")])
def test_check_writable_names_a_file_where_a_folder_should_be(tmp_path, under):
    """A file in the path is not "a folder that does not exist": the message names that file, whoever runs it."""
    (tmp_path / "m.npz").write_bytes(b"a model")
    target = tmp_path.joinpath("m.npz", *under, "new.npz")
    model = Sequential([Dense(2, 2)], device="cpu", seed=0)
    for attempt in (xio.check_writable, lambda p: xpnet.save(model, p)):
        with pytest.raises(NotADirectoryError, match=_exactly(
                f"cannot save to {target}: {tmp_path / 'm.npz'} is a file, not a folder; choose another path")) as why:
            attempt(target)
        assert why.value.errno == errno.ENOTDIR
    assert (tmp_path / "m.npz").read_bytes() == b"a model"


def test_check_writable_fails_where_save_would_on_a_long_name(tmp_path):
    """The probe is named like save's temporary file, so a name that leaves no room for it fails here."""
    model = Sequential([Dense(2, 2)], device="cpu", seed=0)
    ok = tmp_path / ("a" * 240)  # ".{name}.XXXXXXXX.tmp" is 254 bytes: fits the usual 255
    assert xio.check_writable(ok) == str(tmp_path)
    xpnet.save(model, ok)
    long = tmp_path / ("b" * 250)  # the name itself fits, save's temporary file does not
    for attempt in (xio.check_writable, lambda p: xpnet.save(model, p)):
        with pytest.raises(OSError) as why:
            attempt(long)
        assert why.value.errno == errno.ENAMETOOLONG
        assert str(why.value) == (f"cannot save to {long} (File name too long): the name is too long for the "
                                  f"file system once save adds the 14 characters of its temporary file "
                                  f"(.NAME.XXXXXXXX.tmp); choose a shorter name")
    assert os.listdir(tmp_path) == [ok.name]


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
def test_check_writable_refuses_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        try:
            (folder / "x").touch()
        except PermissionError:
            pass
        else:
            pytest.skip("this user may write into a read-only folder (root); "
                        "test_check_writable_names_the_path_the_cause_and_the_fix covers the message")
        with pytest.raises(PermissionError, match=_exactly(
                f"cannot save to {folder / 'm.npz'} (Permission denied): this user may not create files in "
                f"{folder}; save into a folder you can write, or change that folder's permissions")):
            xio.check_writable(folder / "m.npz")
    finally:
        folder.chmod(0o755)


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.path.isdir("/proc/self"),
                    reason="needs Linux's /proc")
def test_check_writable_refuses_proc_even_as_root():
    """/proc takes no new files, whoever asks: the error names the user's path (not the probe), the cause
    and the fix, on one line without "[Errno N]"."""
    with pytest.raises(OSError) as why:
        xio.check_writable("/proc/xpnet-test.npz")
    code = why.value.errno
    assert code is not None and type(why.value) is type(OSError(code, ""))
    message = str(why.value)
    assert message.startswith(f"cannot save to /proc/xpnet-test.npz ({os.strerror(code)}): "), message
    assert "save into" in message and "[Errno" not in message and ".tmp" not in message
    if code == errno.ENOENT:  # Linux's answer, which read "No such file or directory" for a folder that is there
        assert "/proc takes no new files: it is not a folder on disk" in message
    with pytest.raises(type(why.value)) as again:
        xpnet.save(Sequential([Dense(2, 2)], device="cpu", seed=0), "/proc/xpnet-test.npz")
    assert str(again.value) == message


@pytest.mark.parametrize("error, fix", [
    (PermissionError(errno.EACCES, "Permission denied", "/there/.m.npz.abcdefgh.tmp"),
     "this user may not create files in {folder}; save into a folder you can write, or change that folder's "
     "permissions"),
    (PermissionError(errno.EPERM, "Operation not permitted", "/there/.m.npz.abcdefgh.tmp"),
     "this user may not create files in {folder}; save into a folder you can write, or change that folder's "
     "permissions"),
    (OSError(errno.EROFS, "Read-only file system", "/there/.m.npz.abcdefgh.tmp"),
     "{folder} is on a read-only file system; save into a folder on a writable disk"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/there/.m.npz.abcdefgh.tmp"),
     "{folder} takes no new files: it is not a folder on disk (a virtual file system such as /proc or /sys); "
     "save into an ordinary folder, such as the current one"),
    (OSError(errno.ENOSPC, "No space left on device", "/there/.m.npz.abcdefgh.tmp"),
     "the disk holding {folder} is full; free some space, or save elsewhere"),
])
def test_check_writable_names_the_path_the_cause_and_the_fix(tmp_path, monkeypatch, error, fix):
    """Each errno the folder can give, simulated (root writes into a chmod 555 folder): the user's path,
    not the probe's, the system's words and what to do, in the same class of OSError."""
    def mkstemp(**kwargs):
        raise error

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    with pytest.raises(OSError) as why:
        xio.check_writable(tmp_path / "m.npz")
    assert type(why.value) is type(error) and why.value.errno == error.errno
    assert str(why.value) == f"cannot save to {tmp_path / 'm.npz'} ({error.strerror}): {fix.format(folder=tmp_path)}"
    assert why.value.__cause__ is None and why.value.__suppress_context__


def test_an_unexpected_errno_still_names_the_path(tmp_path, monkeypatch):
    def mkstemp(**kwargs):
        raise OSError(errno.EIO, "Input/output error", "/there/.m.npz.abcdefgh.tmp")

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    with pytest.raises(OSError, match=_exactly(f"cannot save to {tmp_path / 'm.npz'}: Input/output error")) as why:
        xio.check_writable(tmp_path / "m.npz")
    assert why.value.errno == errno.EIO


def _fail_in(monkeypatch, where, error):
    """Make save fail at ``where`` (its probe still succeeds)."""
    real = {"mkstemp": tempfile.mkstemp, "os.replace": os.replace, "os.chmod": os.chmod,
            "os.fsync": os.fsync}.get(where)
    calls = []

    def fail(*args, **kwargs):
        calls.append(args)
        if where == "mkstemp" and len(calls) == 1:  # the first mkstemp is check_writable's probe
            return real(*args, **kwargs)
        raise error

    if where == "np.savez":
        monkeypatch.setattr(np, "savez", fail)
    elif where == "mkstemp":
        monkeypatch.setattr(tempfile, "mkstemp", fail)
    else:
        monkeypatch.setattr(os, where.split(".")[1], fail)


@pytest.mark.parametrize("where", ["mkstemp", "np.savez", "os.fsync", "os.chmod", "os.replace"])
@pytest.mark.parametrize("error, fix", [
    (OSError(errno.ENOSPC, "No space left on device", "/x/.m.npz.abcdefgh.tmp"),
     "the disk holding {folder} is full; free some space, or save elsewhere"),
    (PermissionError(errno.EACCES, "Permission denied", "/x/.m.npz.abcdefgh.tmp", errno.EACCES, "/x/m.npz"),
     "this user may not create files in {folder}; save into a folder you can write, or change that folder's "
     "permissions"),
], ids=["ENOSPC", "EACCES"])
def test_save_errors_name_the_path_never_the_temporary_file(tmp_path, monkeypatch, where, error, fix):
    path = tmp_path / "m.npz"
    model = Sequential([Dense(2, 2)], device="cpu", seed=0)
    xpnet.save(model, path)
    before = path.read_bytes()
    _fail_in(monkeypatch, where, error)
    with pytest.raises(OSError) as why:
        xpnet.save(Sequential([Dense(2, 2)], device="cpu", seed=1), path)
    monkeypatch.undo()
    assert type(why.value) is type(error) and why.value.errno == error.errno
    assert str(why.value) == f"cannot save to {path} ({error.strerror}): {fix.format(folder=tmp_path)}"
    assert ".tmp" not in str(why.value) and why.value.filename is None
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.npz"]


@pytest.mark.parametrize("error", [OSError("the disk went away"), io.UnsupportedOperation("the disk went away")],
                         ids=["OSError", "UnsupportedOperation"])
def test_a_save_error_without_errno_reads_plainly(tmp_path, monkeypatch, error):
    """No "[Errno None]" in the message, and the same class (io.UnsupportedOperation is a ValueError too)."""
    _fail_in(monkeypatch, "os.replace", error)
    with pytest.raises(OSError) as why:
        xpnet.save(Sequential([Dense(2, 2)], device="cpu", seed=0), tmp_path / "m.npz")
    assert type(why.value) is type(error) and why.value.errno is None
    assert str(why.value) == f"cannot save to {tmp_path / 'm.npz'}: the disk went away"


@pytest.mark.parametrize("error", [ValueError("not an OSError"), KeyboardInterrupt()], ids=["ValueError", "Ctrl-C"])
def test_other_save_errors_pass_through_unchanged(tmp_path, monkeypatch, error):
    _fail_in(monkeypatch, "np.savez", error)
    with pytest.raises(type(error)) as why:
        xpnet.save(Sequential([Dense(2, 2)], device="cpu", seed=0), tmp_path / "m.npz")
    assert why.value is error
    assert os.listdir(tmp_path) == []  # the temporary file is removed all the same
