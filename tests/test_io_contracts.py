"""Model files: where save puts its temporary file, the mode of a new file, and hand-written files that
are valid but unusual (a layer without a config, a Dense without ``init``, ``.npy`` format 2.0, a header
of exactly the size limit) or wrong in ways the messages must spell out.

Each hand-written file is a plain ``np.savez`` of a JSON header and arrays, built here from the format
described in ``xpnet/io.py``, not by ``xpnet.save``.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile

import numpy as np
import pytest

import xpnet
from xpnet import Dense, Layer, ModelFormatError, ReLU, Sequential
from xpnet import io as xio
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
    monkeypatch.setattr(xio, "LAYERS", dict(xio.LAYERS))
    model = Sequential([Dense(2, 2), Doubler()], device="cpu", seed=0)
    with pytest.raises(TypeError, match=rf"^save: layer 1 is a {__name__}\.Doubler, which load\(\) cannot rebuild; "
                                        r"register it first with xpnet\.io\.register_layer\(Doubler\)$"):
        xpnet.save(model, tmp_path / "m.npz")
    for bad in (int, Sequential, "Doubler", Doubler()):
        with pytest.raises(TypeError, match=r"^register_layer: .* is not a subclass of xpnet\.Layer$"):
            xio.register_layer(bad)
    assert xio.register_layer(Doubler) is Doubler and xio.LAYERS["Doubler"] is Doubler
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
    path = _write(tmp_path / "u.npz", _header([{"class": "Conv2D", "config": {}}], {}), {})
    known = ", ".join(sorted(xio.LAYERS))
    assert known.startswith("Dense, Flatten, Identity, LeakyReLU")
    with pytest.raises(ModelFormatError, match=rf"^{path}: layer 0 has unknown class 'Conv2D'; known: {known} "
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
