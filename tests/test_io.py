"""xpnet.save / xpnet.load: bit-exact round trips on every backend and across them, atomic saves (also
under SIGKILL), and a ModelFormatError for every way a file can be wrong."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

import xpnet
from xpnet import Dense, Flatten, LeakyReLU, ModelFormatError, ReLU, Sequential, Softmax, Tanh
from xpnet import io as xio

from conftest import backend_params


def make_model(device="cpu", dtype="float32", seed=0):
    return Sequential([Flatten(), Dense(12, 8), LeakyReLU(0.2), Dense(8, 6, bias=False), Tanh(),
                       Dense(6, 3, init="glorot_uniform"), Softmax()], device=device, seed=seed, dtype=dtype)


def states_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def write_npz(path, header, arrays, allow_pickle=False):
    """A model file made by hand: the header dict (or raw bytes) plus arrays."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    members = {} if header is None else {xio.HEADER: np.frombuffer(raw, dtype=np.uint8)}
    members.update(arrays)
    with open(path, "wb") as f:
        np.savez(f, allow_pickle=allow_pickle, **members)


@pytest.fixture
def saved(tmp_path):
    """A saved float32 model: (path, header dict, arrays)."""
    path = tmp_path / "model.npz"
    model = make_model()
    xpnet.save(model, path)
    header, arrays = xio.read(path)
    return path, header, arrays


# -- round trips ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_bit_exact(dev, dtype, tmp_path):
    model = make_model(dev, dtype)
    x = dev.asarray(np.random.default_rng(1).random((5, 3, 4)), dtype)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = xpnet.load(path, device=dev)
    assert loaded.device == dev and loaded.dtype == dtype
    assert loaded.get_config() == model.get_config()
    states_equal(loaded.state_dict(), model.state_dict())
    for p in loaded.parameters().values():
        assert xpnet.device_of(p) == dev
    np.testing.assert_array_equal(xpnet.to_numpy(loaded.predict(x)), xpnet.to_numpy(model.predict(x)))


@pytest.mark.parametrize("target", backend_params())
def test_save_on_one_backend_load_on_another(dev, target, tmp_path):
    other = target()
    model = make_model(dev, "float64", seed=3)
    path = tmp_path / "m.npz"
    xpnet.save(model, path)
    loaded = xpnet.load(path, device=other)
    assert loaded.device == other
    states_equal(loaded.state_dict(), model.state_dict())
    # and back again, through a second file
    xpnet.save(loaded, tmp_path / "again.npz")
    states_equal(xpnet.load(tmp_path / "again.npz", device="cpu").state_dict(), model.state_dict())


def test_load_takes_device_and_backend_strings(tmp_path):
    xpnet.save(make_model(), tmp_path / "m.npz")
    loaded = xpnet.load(tmp_path / "m.npz", device="cpu", backend="array-api-strict")
    assert loaded.device.backend == "array-api-strict"


def test_trained_model_round_trip_keeps_training(tmp_path):
    """A loaded model is the trained one: same outputs, and the same next epoch, step for step."""
    rng = np.random.default_rng(0)
    X, y = rng.random((64, 12)).astype(np.float32), rng.integers(0, 3, 64)
    model = Sequential([Dense(12, 16), ReLU(), Dense(16, 3)], device="cpu", seed=0)
    model.fit(X, y, loss="softmax_cross_entropy", optimizer="adam", epochs=2, batch_size=8, verbose=0)
    trained = model.state_dict()
    xpnet.save(model, tmp_path / "m.npz")
    loaded = xpnet.load(tmp_path / "m.npz", device="cpu")
    loss = "softmax_cross_entropy"
    assert loaded.evaluate(X, y, loss=loss) == model.evaluate(X, y, loss=loss)
    np.testing.assert_array_equal(xpnet.to_numpy(loaded.predict(X)), xpnet.to_numpy(model.predict(X)))
    kwargs = dict(loss=loss, epochs=1, batch_size=8, shuffle=False, verbose=0)
    h1 = model.fit(X, y, optimizer=xpnet.SGD(0.1, momentum=0.9), **kwargs)
    h2 = loaded.fit(X, y, optimizer=xpnet.SGD(0.1, momentum=0.9), **kwargs)
    assert h2["loss"] == h1["loss"] and h2["accuracy"] == h1["accuracy"]
    states_equal(loaded.state_dict(), model.state_dict())
    assert np.abs(loaded.state_dict()["0.W"] - trained["0.W"]).max() > 1e-4  # it did train further


def test_metadata_round_trip(tmp_path):
    model = make_model()
    xpnet.save(model, tmp_path / "m.npz", metadata={"dataset": "mnist", "scale": "tutorial", "n": [1, 2]})
    loaded = xpnet.load(tmp_path / "m.npz", device="cpu")
    assert loaded.metadata == {"dataset": "mnist", "scale": "tutorial", "n": [1, 2]}
    xpnet.save(loaded, tmp_path / "again.npz")  # model.metadata is kept by default
    assert xpnet.load(tmp_path / "again.npz", device="cpu").metadata == loaded.metadata
    with pytest.raises(ValueError, match="JSON"):
        xpnet.save(model, tmp_path / "bad.npz", metadata={"x": object()})


def test_file_layout(saved):
    path, header, arrays = saved
    assert header["magic"] == "xpnet" and header["format"] == xio.FORMAT
    assert header["xpnet_version"] == xpnet.__version__ and header["dtype"] == "float32"
    assert [spec["class"] for spec in header["architecture"]["layers"]] == [
        "Flatten", "Dense", "LeakyReLU", "Dense", "Tanh", "Dense", "Softmax"]
    assert header["parameters"]["1.W"] == {"shape": [12, 8], "dtype": "float32"}
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == sorted(["__xpnet__.npy", "1.W.npy", "1.b.npy", "3.W.npy",
                                               "5.W.npy", "5.b.npy"])
    with np.load(path, allow_pickle=False) as npz:  # a plain .npz any NumPy can read
        np.testing.assert_array_equal(npz["1.W"], arrays["1.W"])


def test_custom_layer_needs_registering(tmp_path, monkeypatch):
    class Scale(xpnet.Layer):
        def __init__(self, factor=2.0):
            super().__init__()
            self.factor = factor

        def forward(self, x, training=False):
            return x * self.factor

        def backward(self, dy):
            return dy * self.factor

        def get_config(self):
            return {"factor": self.factor}

    model = Sequential([Dense(2, 2), Scale(3.0)], device="cpu", seed=0)
    with pytest.raises(TypeError, match="register_layer"):
        xpnet.save(model, tmp_path / "m.npz")
    assert not os.listdir(tmp_path)
    monkeypatch.setitem(xpnet.layers.LAYERS, "Scale", Scale)
    xpnet.save(model, tmp_path / "m.npz")
    assert xpnet.load(tmp_path / "m.npz", device="cpu").layers[1].factor == 3.0


# -- atomic saves ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fail_at", ["os.replace", "os.fsync", "np.savez"])
def test_failed_save_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch, fail_at):
    path = tmp_path / "model.npz"
    xpnet.save(make_model(seed=0), path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(f"simulated failure in {fail_at}")
    module, name = fail_at.split(".")
    monkeypatch.setattr(xio.os if module == "os" else xio.np, name, boom)
    with pytest.raises(OSError, match="simulated"):
        xpnet.save(make_model(seed=1), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]
    states_equal(xpnet.load(path, device="cpu").state_dict(), make_model(seed=0).state_dict())


def test_save_replaces_and_keeps_mode(tmp_path):
    path = tmp_path / "model.npz"
    xpnet.save(make_model(seed=0), path)
    os.chmod(path, 0o640)
    xpnet.save(make_model(seed=1), path)
    assert os.stat(path).st_mode & 0o777 == 0o640
    states_equal(xpnet.load(path, device="cpu").state_dict(), make_model(seed=1).state_dict())
    assert os.listdir(tmp_path) == ["model.npz"]


def test_save_into_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        xpnet.save(make_model(), tmp_path / "nope" / "m.npz")


KILL_CHILD = textwrap.dedent("""
    import sys
    import xpnet
    path = sys.argv[1]
    model = xpnet.Sequential([xpnet.Dense(4096, 4096, init="zeros")], device="cpu")  # 64 MiB of weights
    i = 0
    while True:
        i += 1
        for p in model.parameters().values():
            p[...] = float(i)
        model.save(path)
        print(i, flush=True)
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_during_save_leaves_a_loadable_file(tmp_path):
    """A process saving a 64 MiB model in a loop is SIGKILLed while a temp file is being written."""
    path = tmp_path / "big.npz"
    for round_ in range(3):
        child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(path)], stdout=subprocess.PIPE,
                                 text=True)
        try:
            first = child.stdout.readline()  # one whole save is done: the "existing good file"
            assert first.strip().isdigit(), first
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # wait until the next save is half-way through its temp file
                if any(_size(e) > (10 + 10 * round_) << 20 for e in os.scandir(tmp_path) if e.name.endswith(".tmp")):
                    break
                time.sleep(0.0005)
            else:
                pytest.fail("never saw the temp file of a save in progress")
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
        done = [int(line) for line in [first, *child.stdout.read().split()] if line.strip()]
        child.stdout.close()
        model = xpnet.load(path, device="cpu")
        values = {float(np.unique(v)[0]) for v in model.state_dict().values()}
        assert all(np.unique(v).size == 1 for v in model.state_dict().values()), "a mix of two saves"
        assert len(values) == 1 and values.pop() in {float(i) for i in range(1, max(done) + 2)}
        # The killed save's temp file is left behind (nothing can remove it), and nothing else is: no temp
        # file of an earlier save, no probe of check_writable.
        left = [e.path for e in os.scandir(tmp_path) if e.name.endswith(".tmp")]
        assert len(left) <= 1, left
        for name in left:
            os.unlink(name)


def _size(entry) -> int:
    """The size of a file the child may rename (its save finishing) or delete (check_writable's probe)."""
    try:
        return entry.stat().st_size
    except FileNotFoundError:
        return 0


# -- errors ---------------------------------------------------------------------------------------
def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        xpnet.load(tmp_path / "nope.npz")


def test_folder_is_not_a_model(tmp_path):
    with pytest.raises(ModelFormatError, match="folder"):
        xpnet.load(tmp_path)


@pytest.mark.parametrize("content, match", [
    (b"", "empty file"),
    (b"hello, I am not a model", "not a zip"),
    (b"PK\x03\x04" + bytes(range(256)) * 4, "not an xpnet model file|bad zip|not a readable"),
    (np.random.default_rng(0).bytes(5000), "not a zip"),
])
def test_garbage(tmp_path, content, match):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(ModelFormatError, match=match):
        xpnet.load(path)


def test_truncated_at_every_length_class(saved, tmp_path):
    path, _, _ = saved
    data = path.read_bytes()
    bad = tmp_path / "cut.npz"
    for cut in [0, 1, 2, 10, 100, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 1]:
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelFormatError):
            xpnet.load(bad)


def test_flipped_data_byte_fails_the_crc(saved, tmp_path):
    path, _, _ = saved
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("1.W.npy")
    data[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF  # inside the stored array bytes
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match="CRC"):
        xpnet.load(bad)


def test_header_missing(saved, tmp_path):
    _, _, arrays = saved
    write_npz(tmp_path / "h.npz", None, arrays)  # just np.savez(**model.state_dict())
    with pytest.raises(ModelFormatError, match="no xpnet header"):
        xpnet.load(tmp_path / "h.npz")


@pytest.mark.parametrize("raw, match", [
    (b"{not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "wrong magic"),
    (json.dumps({"magic": "xpnot", "format": 1}).encode(), "wrong magic"),
])
def test_garbled_header(saved, tmp_path, raw, match):
    _, _, arrays = saved
    write_npz(tmp_path / "g.npz", raw, arrays)
    with pytest.raises(ModelFormatError, match=match):
        xpnet.load(tmp_path / "g.npz")


@pytest.mark.parametrize("edit, match", [
    (lambda h: h.update(format="1"), "format"),
    (lambda h: h.update(dtype="float16"), "dtype"),
    (lambda h: h.pop("architecture"), "architecture"),
    (lambda h: h["architecture"]["layers"].append("Dense"), "layer 7"),
    (lambda h: h.update(parameters=[]), "parameters"),
    (lambda h: h.update(metadata=[1]), "metadata"),
    (lambda h: h["parameters"]["1.W"].update(shape=[-1, 8]), "parameters"),
])
def test_invalid_header_fields(saved, tmp_path, edit, match):
    _, header, arrays = saved
    edit(header)
    write_npz(tmp_path / "f.npz", header, arrays)
    with pytest.raises(ModelFormatError, match=match):
        xpnet.load(tmp_path / "f.npz")


def test_newer_format_says_upgrade(saved, tmp_path):
    _, header, arrays = saved
    header.update(format=xio.FORMAT + 1, xpnet_version="9.0.0")
    write_npz(tmp_path / "new.npz", header, arrays)
    with pytest.raises(ModelFormatError, match=rf"written by xpnet 9.0.0 with format {xio.FORMAT + 1}; "
                                               rf"this xpnet .* reads format <= {xio.FORMAT}: upgrade"):
        xpnet.load(tmp_path / "new.npz")


class Exploit:
    """Unpickling this would run code; the loader must refuse before that."""

    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_pickle_inside_is_refused_and_never_run(saved, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, header, arrays = saved
    arrays = dict(arrays, **{"1.W": np.array([Exploit()], dtype=object)})
    write_npz(tmp_path / "p.npz", header, arrays, allow_pickle=True)
    with pytest.raises(ModelFormatError, match="pickle"):
        xpnet.load(tmp_path / "p.npz")
    assert not (tmp_path / "pwned.txt").exists()


def test_unknown_layer_class_is_not_looked_up_anywhere(saved, tmp_path):
    _, header, arrays = saved
    for name in ("Conv3D", "os.system", "__import__", "Sequential", "eval"):
        header["architecture"]["layers"][2] = {"class": name, "config": {}}
        write_npz(tmp_path / "u.npz", header, arrays)
        with pytest.raises(ModelFormatError, match="unknown class"):
            xpnet.load(tmp_path / "u.npz")


def test_bad_layer_config(saved, tmp_path):
    _, header, arrays = saved
    header["architecture"]["layers"][2]["config"] = {"alpha": 7.0}  # LeakyReLU refuses alpha >= 1
    write_npz(tmp_path / "c.npz", header, arrays)
    with pytest.raises(ModelFormatError, match="cannot be rebuilt"):
        xpnet.load(tmp_path / "c.npz")
    header["architecture"]["layers"][2]["config"] = {"beta": 1}
    write_npz(tmp_path / "c.npz", header, arrays)
    with pytest.raises(ModelFormatError, match="cannot be rebuilt"):
        xpnet.load(tmp_path / "c.npz")


def test_missing_parameter_array(saved, tmp_path):
    _, header, arrays = saved
    del arrays["3.W"]
    write_npz(tmp_path / "m.npz", header, arrays)
    with pytest.raises(ModelFormatError, match="missing.*3.W"):
        xpnet.load(tmp_path / "m.npz")


def test_extra_array(saved, tmp_path):
    _, header, arrays = saved
    arrays["evil"] = np.zeros(3, np.float32)
    write_npz(tmp_path / "m.npz", header, arrays)
    with pytest.raises(ModelFormatError, match="not listed"):
        xpnet.load(tmp_path / "m.npz")


def test_array_shape_disagrees_with_header(saved, tmp_path):
    _, header, arrays = saved
    arrays["1.b"] = np.zeros(9, np.float32)
    write_npz(tmp_path / "s.npz", header, arrays)
    with pytest.raises(ModelFormatError, match=r"1.b.*shape \(9,\).*header says \(8,\)"):
        xpnet.load(tmp_path / "s.npz")


def test_weights_disagree_with_architecture(saved, tmp_path):
    path, header, arrays = saved
    header["architecture"]["layers"][1]["config"]["out_features"] = 9  # Dense(12, 9) but W is (12, 8)
    write_npz(tmp_path / "a.npz", header, arrays)
    with pytest.raises(ModelFormatError, match=r"Dense\(12, 9\).*\(12, 8\)"):
        xpnet.load(tmp_path / "a.npz")
    header2, _ = xio.read(path)
    header2["architecture"]["layers"][3]["config"]["bias"] = True  # a bias the file does not hold
    write_npz(tmp_path / "b.npz", header2, arrays)
    with pytest.raises(ModelFormatError):
        xpnet.load(tmp_path / "b.npz")


def test_wrong_array_dtype(saved, tmp_path):
    _, header, arrays = saved
    arrays["1.W"] = arrays["1.W"].astype(np.float64)
    header["parameters"]["1.W"]["dtype"] = "float64"
    write_npz(tmp_path / "d.npz", header, arrays)
    with pytest.raises(ModelFormatError, match="float64.*float32"):
        xpnet.load(tmp_path / "d.npz")


def test_member_claiming_a_huge_array_is_refused_without_allocating(saved, tmp_path):
    """A well-formed zip whose .npy header claims 4 PB: refused from the sizes, before any allocation."""
    path, _, _ = saved
    bad = tmp_path / "huge.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            if info.filename == "1.W.npy":
                import io as _io

                buf = _io.BytesIO()
                np.lib.format.write_array_header_1_0(
                    buf, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 10**6)})
                dst.writestr("1.W.npy", buf.getvalue() + bytes(64))
            else:
                dst.writestr(info, src.read(info))
    with pytest.raises(ModelFormatError, match="truncated"):
        xpnet.load(bad)


def test_mutated_files_raise_only_model_format_error(saved, tmp_path):
    """Random byte edits, cuts and splices: a ModelFormatError, or (edits outside the checked bytes)
    exactly the saved model; nothing else escapes. (tests/test_fuzz.py does more of this with hypothesis.)"""
    path, _, arrays = saved
    data = path.read_bytes()
    rng = np.random.default_rng(0)
    bad = tmp_path / "mutant.npz"
    for i in range(300):
        buf = bytearray(data)
        kind = i % 3
        if kind == 0:
            for pos in rng.integers(0, len(buf), rng.integers(1, 5)):
                buf[pos] = rng.integers(0, 256)
        elif kind == 1:
            lo = int(rng.integers(0, len(buf)))
            buf[lo:lo + int(rng.integers(1, 40))] = rng.bytes(int(rng.integers(0, 40)))
        else:
            buf = b"PK\x03\x04" + rng.bytes(int(rng.integers(0, 2000)))
        bad.write_bytes(bytes(buf))
        try:
            model = xpnet.load(bad, device="cpu")
        except ModelFormatError:
            continue
        states_equal(model.state_dict(), arrays)
