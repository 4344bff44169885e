"""Tests for xpnet.datasets: real MNIST files (when $XPNET_DATA is set), downloads against a fake
fetch and a local HTTP server, corrupt inputs, the tutorial CSV and the synthetic sets. No network."""
import functools
import gzip
import hashlib
import http.server
import io
import logging
import os
import pathlib
import socket
import sys
import threading
import urllib.error

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xpnet import datasets as ds
from xpnet.datasets import files as ds_files

DATA = pathlib.Path(os.environ["XPNET_DATA"]) if os.environ.get("XPNET_DATA") else None
needs_data = pytest.mark.skipif(
    DATA is None or not (DATA / "mnist").is_dir(),
    reason="real data absent: set XPNET_DATA to the folder holding mnist/, fashion-mnist/, mnist-csv/")
MNIST_FILES = list(ds.SHA256["mnist"])


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Empty cache, no $XPNET_DATA, and the default (pooch) downloader may only reach 127.0.0.1."""
    monkeypatch.setenv("XPNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("XPNET_DATA", raising=False)
    real = ds_files.http_downloader

    def local_only():
        downloader = real()

        def download(url, *args, **kwargs):
            assert url.startswith("http://127.0.0.1:"), f"test tried the network: {url}"
            return downloader(url, *args, **kwargs)
        return download
    monkeypatch.setattr(ds_files, "http_downloader", local_only)
    monkeypatch.setattr(ds_files, "_VERIFIED", set())


@pytest.fixture(scope="module")
def mnist():
    """Full MNIST, raw uint8, loaded once for the module."""
    if DATA is None:
        pytest.skip("real data absent: set XPNET_DATA")
    return ds.load_mnist(data_dir=DATA, scale=None, download=False)


def idx_bytes(arr, magic):
    arr = np.asarray(arr, dtype=np.uint8)
    head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return head + arr.tobytes()


@pytest.fixture
def fake_mnist(monkeypatch):
    """Four tiny gzipped IDX files (5 train, 3 test images) with the module's sums patched to match."""
    rng = np.random.default_rng(0)
    files = {}
    for split, n in (("train", 5), ("t10k", 3)):
        files[f"{split}-images-idx3-ubyte.gz"] = gzip.compress(idx_bytes(rng.integers(0, 256, (n, 28, 28)), 0x803))
        files[f"{split}-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes(np.arange(n) % 10, 0x801))
    monkeypatch.setitem(ds.SHA256, "mnist", {k: hashlib.sha256(v).hexdigest() for k, v in files.items()})
    return files


def cache_listing(tmp_path):
    root = tmp_path / "cache"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


# ---- real data ---------------------------------------------------------------------------------

@needs_data
def test_mnist_shapes_dtypes_labels(mnist):
    (X, y), (Xt, yt) = mnist
    assert X.shape == (60000, 784) and Xt.shape == (10000, 784)
    assert X.dtype == np.uint8 and y.dtype == np.int64 and y.shape == (60000,) and yt.shape == (10000,)
    assert set(np.unique(y)) == set(range(10)) and set(np.unique(yt)) == set(range(10))
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert X.flags.writeable


@needs_data
@pytest.mark.parametrize("scale, lo, hi", [("unit", 0.0, 1.0), ("tutorial", 0.01, 1.0)])
def test_mnist_scales(mnist, scale, lo, hi):
    (X, y), (Xt, yt) = ds.load_mnist(data_dir=DATA, scale=scale, download=False, limit=2000)
    raw = mnist[0][0][:2000]
    assert X.dtype == np.float32 and X.shape == (2000, 784) and Xt.shape == (2000, 784)
    assert X.min() == np.float32(lo) and X.max() == np.float32(hi)
    expect = raw / 255 if scale == "unit" else raw / 255 * 0.99 + 0.01
    np.testing.assert_allclose(X, expect, rtol=1e-6)


@needs_data
def test_mnist_limit_keeps_the_first_rows(mnist):
    (X, y), (Xt, yt) = ds.load_mnist(data_dir=DATA, scale=None, download=False, limit=7)
    assert X.shape == (7, 784) and Xt.shape == (7, 784)
    np.testing.assert_array_equal(X, mnist[0][0][:7])
    np.testing.assert_array_equal(yt, mnist[1][1][:7])


@needs_data
def test_env_var_and_dataset_folder_as_data_dir(monkeypatch):
    monkeypatch.setenv("XPNET_DATA", str(DATA))
    (X, y), _ = ds.load_mnist(limit=3, download=False)
    (X2, y2), _ = ds.load_mnist(data_dir=DATA / "mnist", limit=3, download=False)  # the folder itself
    np.testing.assert_array_equal(X, X2)


@needs_data
def test_fashion_mnist():
    (X, y), (Xt, yt) = ds.load_mnist("fashion-mnist", data_dir=DATA, download=False)
    assert X.shape == (60000, 784) and Xt.shape == (10000, 784) and X.dtype == np.float32
    assert 0.0 <= X.min() and X.max() <= 1.0
    assert np.bincount(y).tolist() == [6000] * 10 and np.bincount(yt).tolist() == [1000] * 10


@needs_data
def test_tutorial_csv_equals_first_idx_rows(mnist):
    (X, y), (Xt, yt) = ds.load_tutorial_csv(DATA, scale=None, download=False)
    assert X.shape == (100, 784) and Xt.shape == (10, 784) and y.dtype == np.int64
    np.testing.assert_array_equal(X, mnist[0][0][:100])
    np.testing.assert_array_equal(y, mnist[0][1][:100])
    np.testing.assert_array_equal(Xt, mnist[1][0][:10])
    np.testing.assert_array_equal(yt, mnist[1][1][:10])
    (Xs, _), _ = ds.load("csv", data_dir=DATA, scale="tutorial", download=False)
    assert Xs.dtype == np.float32 and Xs.min() == np.float32(0.01) and Xs.max() == np.float32(1.0)


@needs_data
def test_verification_is_cached(monkeypatch):
    ds.load_mnist(data_dir=DATA, limit=1, download=False)
    monkeypatch.setattr(ds_files.pooch, "file_hash", lambda path, **kw: pytest.fail(f"hashed {path} again"))
    ds.load_mnist(data_dir=DATA, limit=1, download=False)


# ---- lookup and download -----------------------------------------------------------------------

def test_data_dirs_order(monkeypatch, tmp_path):
    monkeypatch.setenv("XPNET_DATA", os.pathsep.join(["/a", "/b"]))
    assert ds.data_dirs("/x") == [pathlib.Path(p) for p in ("/x", "/a", "/b", tmp_path / "cache")]
    monkeypatch.delenv("XPNET_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    per_user = {"linux": ".cache/xpnet", "darwin": "Library/Caches/xpnet"}.get(sys.platform)
    if per_user:
        assert ds.data_dirs()[-1] == pathlib.Path.home() / per_user


def test_download_with_fake_fetch(monkeypatch, tmp_path, fake_mnist):
    calls = []

    def fetch(url):
        calls.append(url)
        if url.startswith("https://first/"):
            raise urllib.error.URLError("unreachable")
        return io.BytesIO(fake_mnist[url.rsplit("/", 1)[1]])  # a stream, as urllib gives
    monkeypatch.setitem(ds.MIRRORS, "mnist", ("https://first/", "https://second/"))
    (X, y), (Xt, yt) = ds.load_mnist(fetch=fetch, scale=None)
    assert X.shape == (5, 784) and Xt.shape == (3, 784) and y.tolist() == [0, 1, 2, 3, 4]
    assert calls[:2] == ["https://first/" + MNIST_FILES[0], "https://second/" + MNIST_FILES[0]]
    assert cache_listing(tmp_path) == ["mnist"] + sorted(f"mnist/{f}" for f in MNIST_FILES)
    calls.clear()
    ds.load_mnist(fetch=fetch)  # now cached: no fetch
    assert calls == []


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_mirrors(monkeypatch, tmp_path, fake_mnist):
    """A real HTTP server on 127.0.0.1: /good/ serves the fake files, /bad/ wrong bytes, /none/ 404s."""
    root = tmp_path / "www"
    for sub, mangle in (("good", lambda b: b), ("bad", lambda b: b[:-1] + bytes([b[-1] ^ 1]))):
        (root / sub).mkdir(parents=True)
        for name, data in fake_mnist.items():
            (root / sub / name).write_bytes(mangle(data))
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_from_local_http_server(monkeypatch, tmp_path, http_mirrors, fake_mnist):
    monkeypatch.setitem(ds.MIRRORS, "mnist", (http_mirrors + "none/", http_mirrors + "good/"))
    (X, y), (Xt, yt) = ds.load_mnist(scale=None)
    assert X.shape == (5, 784) and yt.tolist() == [0, 1, 2]
    for name, data in fake_mnist.items():
        assert (tmp_path / "cache" / "mnist" / name).read_bytes() == data
    assert cache_listing(tmp_path) == ["mnist"] + sorted(f"mnist/{f}" for f in MNIST_FILES)  # no temp files


def test_quiet_downloads_show_no_bar_and_no_line(monkeypatch, tmp_path, http_mirrors, capfd):
    monkeypatch.setitem(ds.MIRRORS, "mnist", (http_mirrors + "good/",))
    import pooch

    level = pooch.get_logger().level
    with ds.quiet_downloads():
        assert pooch.get_logger().level == logging.WARNING  # its "Downloading data from ..." is INFO
        ds.load_mnist(limit=2)
    assert pooch.get_logger().level == level
    assert capfd.readouterr().err == ""
    for name in MNIST_FILES:  # again, not quiet: the bars, on stderr
        (tmp_path / "cache" / "mnist" / name).unlink()
    ds.load_mnist(limit=2)
    assert "100%" in capfd.readouterr().err


def test_mirror_with_wrong_bytes_is_rejected(monkeypatch, tmp_path, http_mirrors):
    monkeypatch.setitem(ds.MIRRORS, "mnist", (http_mirrors + "none/", http_mirrors + "bad/"))
    with pytest.raises(ds.DatasetNotFoundError) as err:
        ds.load_mnist()
    msg = str(err.value)
    assert "HTTP Error 404" in msg and "SHA-256 mismatch" in msg and http_mirrors + "bad/" in msg
    assert cache_listing(tmp_path) == ["mnist"]  # neither the bad file nor a temp file landed
    # a good mirror after the bad one still works
    monkeypatch.setitem(ds.MIRRORS, "mnist", (http_mirrors + "bad/", http_mirrors + "good/"))
    assert ds.load_mnist(limit=2)[0][0].shape == (2, 784)
    assert cache_listing(tmp_path) == ["mnist"] + sorted(f"mnist/{f}" for f in MNIST_FILES)


def test_offline_error_names_files_folders_and_fix(monkeypatch, tmp_path):
    def offline(url):
        raise urllib.error.URLError("no route to host")
    (tmp_path / "mine").mkdir()
    with pytest.raises(ds.DatasetNotFoundError) as err:
        ds.load_mnist(data_dir=tmp_path / "mine", fetch=offline)
    msg = str(err.value)
    for text in MNIST_FILES + [str(tmp_path / "mine" / "mnist"), str(tmp_path / "mine"),
                               str(tmp_path / "cache" / "mnist"), "XPNET_DATA", "--data-dir",
                               "no route to host"] + [m + MNIST_FILES[0] for m in ds.MIRRORS["mnist"]]:
        assert text in msg
    assert msg.count("no route to host") == len(ds.MIRRORS["mnist"])  # stops after the first file


def test_refused_connection_through_pooch_names_the_cause(monkeypatch, tmp_path, http_mirrors, capsys):
    """The real downloader (pooch, requests) against a closed port: the line says "Connection refused",
    not urllib3's "Max retries exceeded" wrapper; a good mirror after it still delivers, with a progress bar."""
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there now
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/"
    monkeypatch.setitem(ds.MIRRORS, "mnist", (closed,))
    with pytest.raises(ds.DatasetNotFoundError) as err:
        ds.load_mnist()
    line = next(t for t in str(err.value).splitlines() if closed in t)
    assert "Connection refused" in line and "Max retries" not in line, line
    assert "check your network" in str(err.value)
    monkeypatch.setitem(ds.MIRRORS, "mnist", (closed, http_mirrors + "good/"))
    capsys.readouterr()
    assert ds.load_mnist(limit=1)[0][0].shape == (1, 784)
    assert "100%" in capsys.readouterr().err  # tqdm's bar, through pooch


@pytest.fixture
def fake_csv(monkeypatch):
    """The two tutorial CSV files, 3 and 2 rows, with the module's sums patched to match."""
    files = {name: "".join(csv_row(i % 10, [i] * 784) + "\n" for i in range(n)).encode()
             for name, n in zip(ds.SHA256["mnist-csv"], (3, 2))}
    monkeypatch.setitem(ds.SHA256, "mnist-csv", {k: hashlib.sha256(v).hexdigest() for k, v in files.items()})
    return files


def _put(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


LOADERS = {  # every way to name a data_dir: (call, the dataset folder it reads)
    "load_mnist": (lambda d: ds.load_mnist(data_dir=d, fetch=lambda url: pytest.fail(f"fetched {url}")), "mnist"),
    "load_tutorial_csv": (lambda d: ds.load_tutorial_csv(d, fetch=lambda url: pytest.fail(f"fetched {url}")),
                          "mnist-csv"),
    "load-mnist": (lambda d: ds.load("mnist", data_dir=d, download=False), "mnist"),
    "load-csv": (lambda d: ds.load("csv", data_dir=d, download=False), "mnist-csv"),
}


@pytest.mark.parametrize("where", ["XPNET_DATA", "cache"])
@pytest.mark.parametrize("loader", LOADERS)
def test_a_data_dir_that_does_not_exist_is_an_error_not_a_fallback(monkeypatch, tmp_path, fake_mnist, fake_csv,
                                                                    loader, where):
    """The data is at hand elsewhere, but a mistyped data_dir must not quietly load that (or download)."""
    call, folder = LOADERS[loader]
    elsewhere = tmp_path / "env" if where == "XPNET_DATA" else tmp_path / "cache"
    _put(elsewhere / folder, fake_mnist if folder == "mnist" else fake_csv)
    monkeypatch.setenv("XPNET_DATA", str(tmp_path / "env"))
    assert call(None)[0][0].shape[1] == 784  # the fallback works when no data_dir is given
    missing = tmp_path / "typo"
    with pytest.raises(ds.DatasetNotFoundError, match=(
            rf"^data_dir {missing} does not exist: check the path, or leave data_dir \(--data-dir\) unset to "
            rf"use \$XPNET_DATA and the download cache {tmp_path / 'cache'}$")):
        call(missing)
    assert issubclass(ds.DatasetNotFoundError, ds.DatasetError)


def test_a_data_dir_that_is_a_file_or_under_home(monkeypatch, tmp_path, fake_mnist):
    _put(tmp_path / "cache" / "mnist", fake_mnist)
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ds.DatasetNotFoundError, match=rf"^data_dir {tmp_path / 'file'} is not a folder: check "):
        ds.load_mnist(data_dir=tmp_path / "file")
    monkeypatch.setenv("HOME", str(tmp_path))  # "~" is expanded, in the check and in the message
    with pytest.raises(ds.DatasetNotFoundError, match=rf"^data_dir {tmp_path / 'nope'} does not exist: "):
        ds.load_mnist(data_dir="~/nope")
    _put(tmp_path / "mine" / "mnist", fake_mnist)
    assert ds.load_mnist(data_dir="~/mine", download=False)[0][0].shape == (5, 784)


def test_a_missing_xpnet_data_folder_warns_and_is_skipped(monkeypatch, tmp_path, fake_mnist, caplog):
    """$XPNET_DATA is set once for many runs: a folder it names that is gone is logged, not fatal."""
    _put(tmp_path / "good" / "mnist", fake_mnist)
    monkeypatch.setenv("XPNET_DATA", os.pathsep.join([str(tmp_path / "gone"), str(tmp_path / "good")]))
    with caplog.at_level("WARNING", logger="xpnet"):
        assert ds.load_mnist(download=False)[0][0].shape == (5, 784)
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("xpnet", "WARNING", f"xpnet: $XPNET_DATA names {tmp_path / 'gone'}, which is not a folder: skipped "
                             f"(check the variable)")]
    caplog.clear()
    monkeypatch.setenv("XPNET_DATA", str(tmp_path / "good"))  # all there: nothing to say
    with caplog.at_level("DEBUG", logger="xpnet"):
        ds.load_mnist(download=False)
    assert caplog.records == []


def test_no_download_means_no_fetch(tmp_path):
    with pytest.raises(ds.DatasetNotFoundError, match="download=False") as err:
        ds.load_mnist("fashion-mnist", download=False, fetch=lambda url: pytest.fail("fetched"))
    assert "fashion-mnist" in str(err.value) and "XPNET_DATA" in str(err.value)


def test_no_download_error_says_what_is_missing_and_what_to_do(tmp_path, fake_mnist):
    """Not "mirrors tried: none: download=False": the files, the folders, that downloads are off, and both
    fixes (allow the download, or put the files, named, in a folder for --data-dir / $XPNET_DATA)."""
    _put(tmp_path / "mine" / "mnist", {k: v for k, v in fake_mnist.items() if k.startswith("t10k")})
    with pytest.raises(ds.DatasetNotFoundError) as err:
        ds.load_mnist(data_dir=tmp_path / "mine", download=False, fetch=lambda url: pytest.fail(f"fetched {url}"))
    cache, train = tmp_path / "cache" / "mnist", ", ".join(MNIST_FILES[:2])
    assert str(err.value) == (
        f"mnist data not found, and downloads are off (--no-download, or download=False): missing {train}\n"
        f"  looked in: {tmp_path / 'mine' / 'mnist'}, {tmp_path / 'mine'}, {cache}\n"
        f"  fix: drop --no-download (or pass download=True) to download them into {cache}, or put the files "
        f"({', '.join(MNIST_FILES)}) in <dir>/mnist/ and pass --data-dir <dir> or set XPNET_DATA=<dir>")


@pytest.mark.parametrize("name", ["mnist", "csv", "spirals"])
def test_a_split_is_the_same_rows_and_needs_only_its_files(tmp_path, fake_mnist, fake_csv, name):
    folder = "mnist-csv" if name == "csv" else "mnist"
    files = fake_csv if name == "csv" else fake_mnist
    _put(tmp_path / "all" / folder, files)
    flat = name == "spirals"  # the image sets as images: a split keeps the shape too
    both = ds.load(name, data_dir=tmp_path / "all", download=False, flat=flat)
    for split, (X, y) in zip(("train", "test"), both):
        got_X, got_y = ds.load(name, data_dir=tmp_path / "all", download=False, flat=flat, split=split)
        np.testing.assert_array_equal(got_X, X)
        np.testing.assert_array_equal(got_y, y)
    with pytest.raises(ValueError, match="split must be 'train', 'test' or None"):
        ds.load(name, data_dir=tmp_path / "all", split="val")
    if name == "spirals":
        return
    test_only = {k: v for k, v in files.items() if "t10k" in k or "test" in k}
    assert len(test_only) == len(files) // 2
    _put(tmp_path / "test-only" / folder, test_only)
    X, y = ds.load(name, data_dir=tmp_path / "test-only", download=False, split="test")
    assert X.shape == (len(both[1][1]), 784) and y.tolist() == both[1][1].tolist()
    for split in ("train", None):  # the train files are missing: named, and only they
        with pytest.raises(ds.DatasetNotFoundError) as err:
            ds.load(name, data_dir=tmp_path / "test-only", download=False, split=split)
        missing = str(err.value).split("missing ")[1].split("\n")[0]
        assert missing == ", ".join(k for k in files if k not in test_only)


def test_local_checksum_mismatch(tmp_path, fake_mnist):
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for name, data in fake_mnist.items():
        (folder / name).write_bytes(data)
    (folder / MNIST_FILES[1]).write_bytes(fake_mnist[MNIST_FILES[3]])  # a swapped file
    with pytest.raises(ds.DatasetCorruptError) as err:
        ds.load_mnist(data_dir=tmp_path / "data")
    msg = str(err.value)
    assert MNIST_FILES[1] in msg and "SHA-256 checksum mismatch" in msg
    assert ds.SHA256["mnist"][MNIST_FILES[1]] in msg and hashlib.sha256(fake_mnist[MNIST_FILES[3]]).hexdigest() in msg


# ---- corrupt files -----------------------------------------------------------------------------

def test_read_idx_roundtrip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(arr, 0x803)))
    np.testing.assert_array_equal(ds.read_idx(tmp_path / "a.gz"), arr)
    np.testing.assert_array_equal(ds.read_idx(idx_bytes([7, 8], 0x801)), [7, 8])


@pytest.mark.parametrize("data, fragment", [
    (gzip.compress(idx_bytes(np.arange(7840).reshape(10, 28, 28) % 251, 0x803))[:-9], "bad gzip"),
    (b"\x00\x00\x08\x02" + bytes(12), "bad IDX magic 00000802"),
    (b"\x00\x00\x0d\x03" + bytes(12), "bad IDX magic"),
    (b"<html>", "bad IDX magic"),
    (b"", "empty file"),
    (b"\x00\x00\x08\x03\x00\x00", "header truncated"),
    (b"\x00\x00\x08\x03" + b"\xff" * 12 + bytes(10), "need 79228162458924105385300197375 payload bytes"),
    (idx_bytes(np.zeros((3, 28, 28)), 0x803)[:-1], "(truncated)"),
    (idx_bytes(np.zeros(5), 0x801) + b"x", "(trailing bytes)"),
], ids=["truncated-gzip", "magic-ndim", "magic-dtype", "html", "empty", "short-header", "huge-dims",
        "truncated", "trailing"])
def test_read_idx_rejects(data, fragment):
    with pytest.raises(ds.DatasetCorruptError) as err:
        ds.read_idx(data, name="x.idx")
    assert "x.idx" in str(err.value) and fragment in str(err.value)


def test_read_idx_gz_path_that_is_not_gzip(tmp_path):
    (tmp_path / "t.gz").write_bytes(b"<html>404</html>")
    with pytest.raises(ds.DatasetCorruptError, match="not gzip data"):
        ds.read_idx(tmp_path / "t.gz")
    with pytest.raises(ds.DatasetNotFoundError, match="cannot read"):
        ds.read_idx(tmp_path / "missing.gz")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=64),
                 st.binary(max_size=40).map(lambda b: b"\x00\x00\x08" + b),
                 st.binary(max_size=40).map(gzip.compress),
                 st.binary(max_size=40).map(lambda b: gzip.compress(b)[:len(b)])))
def test_read_idx_fuzz(data):
    try:
        ds.read_idx(data)
    except ds.DatasetError:
        pass


# ---- CSV ---------------------------------------------------------------------------------------

def csv_row(label, pixels):
    return ",".join(map(str, [label, *pixels]))


def test_csv_crlf_and_trailing_newlines(tmp_path):
    rows = [csv_row(3, [0] * 783 + ["000255"]), csv_row("07", [1] * 784)]
    (tmp_path / "a.csv").write_bytes(("\r\n".join(rows) + "\r\n\n").encode())
    X, y = ds.load_csv(tmp_path / "a.csv")
    assert X.shape == (2, 784) and X.dtype == np.float32 and y.tolist() == [3, 7] and y.dtype == np.int64
    assert X[0, -1] == 1.0 and X[1, 0] == np.float32(1 / 255)
    assert ds.load_csv(tmp_path / "a.csv", limit=1)[0].shape == (1, 784)
    assert ds.load_csv(tmp_path / "a.csv", scale="tutorial")[0].min() == np.float32(0.01)


@pytest.mark.parametrize("bad, fragment", [
    (csv_row(1, [0] * 783), "expected 785 comma-separated values"),
    (csv_row(1, [0] * 783 + ["x"]), "pixel 783 b'x' is not a non-negative integer"),
    (csv_row(1, [0] * 10 + [256] + [0] * 773), "pixel 10 is 256, outside 0..255"),
    (csv_row(1, [0] * 10 + [1000] + [0] * 773), "pixel 10 is 1000, outside 0..255"),
    (csv_row(1, [0] * 10 + ["0000256"] + [0] * 773), "pixel 10 is 256, outside 0..255"),
    (csv_row("12345678901", [0] * 784), "label b'12345678901' is too large"),
    (csv_row("3.5", [0] * 784), "label b'3.5' is not a non-negative integer"),
    (csv_row(-1, [0] * 784), "label b'-1'"),
    ("", "empty line"),
])
def test_csv_bad_row(tmp_path, bad, fragment):
    good = csv_row(5, [0] * 784)
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([good, bad, good]) + "\n")
    with pytest.raises(ds.DatasetCorruptError) as err:
        ds.load_csv(path)
    assert f"{path}, line 2" in str(err.value) and fragment in str(err.value)


def test_csv_empty_file(tmp_path):
    (tmp_path / "e.csv").write_bytes(b"\n")
    with pytest.raises(ds.DatasetCorruptError, match="no rows"):
        ds.load_csv(tmp_path / "e.csv")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=200),
                 st.lists(st.sampled_from([b"0", b"255", b"256", b"9" * 30, b",", b"\n", b"\r", b" ", b"\xff", b"-"]),
                          max_size=60).map(b"".join),
                 st.binary(max_size=20).map(lambda b: (csv_row(1, [0] * 784) + "\n").encode() + b)))
def test_load_csv_fuzz(tmp_path, data):
    (tmp_path / "f.csv").write_bytes(data)
    try:
        ds.load_csv(tmp_path / "f.csv")
    except ds.DatasetError:
        pass


# ---- synthetic sets and dispatch ---------------------------------------------------------------

@pytest.mark.parametrize("make, kwargs, n, classes", [
    (ds.make_spirals, {}, 300, 3), (ds.make_spirals, {"n_samples": 100, "n_classes": 4}, 100, 4),
    (ds.make_moons, {}, 200, 2), (ds.make_moons, {"n_samples": 51}, 51, 2),
])
def test_synthetic(make, kwargs, n, classes):
    X, y = make(**kwargs)
    assert X.shape == (n, 2) and X.dtype == np.float32 and y.shape == (n,) and y.dtype == np.int64
    assert sorted(set(y.tolist())) == list(range(classes)) and np.bincount(y).max() - np.bincount(y).min() <= 1
    np.testing.assert_array_equal(make(**kwargs)[0], X)  # same seed, same data
    assert not np.array_equal(make(**kwargs, seed=1)[0], X)


def test_xor():
    X, y = ds.make_xor()
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert X.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]] and y.tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize("name", ["spirals", "moons"])
def test_load_synthetic_split(name):
    (X, y), (Xt, yt) = ds.load(name, seed=3)
    n = len(y) + len(yt)
    assert len(yt) == n // 5 and X.dtype == np.float32 and y.dtype == np.int64
    make = ds.make_spirals if name == "spirals" else ds.make_moons
    assert sorted(np.concatenate([X, Xt]).tolist()) == sorted(make(seed=3)[0].tolist())  # a permutation
    np.testing.assert_array_equal(ds.load(name, seed=3)[1][0], Xt)
    assert ds.load(name, limit=10)[0][0].shape == (10, 2)


def test_load_dispatch_and_bad_arguments(monkeypatch, fake_mnist):
    monkeypatch.setitem(ds.MIRRORS, "mnist", ("https://only/",))
    (X, _), _ = ds.load_mnist(fetch=lambda url: fake_mnist[url.rsplit("/", 1)[1]], limit=2)  # plain bytes
    assert X.shape == (2, 784)
    assert ds.load("mnist", limit=2)[0][0].shape == (2, 784)  # now from the cache
    assert set(ds.DATASETS) == {"mnist", "fashion-mnist", "csv", "spirals", "moons"}
    with pytest.raises(ValueError, match="unknown dataset"):
        ds.load("cifar")
    with pytest.raises(ValueError, match="scale"):
        ds.load_mnist(scale="minmax")
    with pytest.raises(ValueError, match="limit"):
        ds.load("moons", limit=-1)
    with pytest.raises(ValueError, match="kind"):
        ds.load_mnist("kmnist")
    with pytest.raises(ValueError, match="flat must be True"):
        ds.load("mnist", flat="image")
    with pytest.raises(ValueError, match="flat=False: moons holds points, not images"):
        ds.load("moons", flat=False)


@pytest.mark.parametrize("scale", ["unit", None])
def test_images_are_the_rows_reshaped(monkeypatch, fake_mnist, scale):
    """flat=False: (n, 1, 28, 28) in the same dtype, each image row-major, as Conv2D takes it."""
    monkeypatch.setitem(ds.MIRRORS, "mnist", ("https://only/",))
    fetch = lambda url: fake_mnist[url.rsplit("/", 1)[1]]  # noqa: E731
    rows = ds.load_mnist(fetch=fetch, scale=scale)
    images = ds.load_mnist(fetch=fetch, scale=scale, flat=False, limit=4)
    for (X, y), (I, yi) in zip(rows, images):
        assert I.shape == (min(4, len(X)), 1, 28, 28) and I.dtype == X.dtype
        np.testing.assert_array_equal(I.reshape(len(I), 784), X[:4])
        np.testing.assert_array_equal(yi, y[:4])
    raw = gzip.decompress(fake_mnist["train-images-idx3-ubyte.gz"])[16:16 + 784]
    first = np.frombuffer(raw, np.uint8).reshape(28, 28)  # the file's first image, rows first
    np.testing.assert_array_equal(images[0][0][0, 0], first if scale is None else (first / 255).astype(np.float32))
    (I, _), _ = ds.load("mnist", flat=False, limit=2)
    assert I.shape == (2, 1, 28, 28)
    assert issubclass(ds.DatasetNotFoundError, ds.DatasetError) and issubclass(ds.DatasetError, RuntimeError)


# ---- text: load_text and Vocabulary ------------------------------------------------------------------

SHAKESPEARE = DATA / "shakespeare" / "input.txt" if DATA is not None else None


@pytest.fixture
def fake_text(monkeypatch):
    """A small text as the shakespeare file, with the module's sum patched to match."""
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 3
    data = text.encode()
    monkeypatch.setitem(ds.SHA256, "shakespeare", {"input.txt": hashlib.sha256(data).hexdigest()})
    return text


@pytest.mark.skipif(SHAKESPEARE is None or not SHAKESPEARE.is_file(), reason="set XPNET_DATA to a folder "
                    "holding shakespeare/input.txt")
def test_tiny_shakespeare_splits_as_nanogpt():
    """nanoGPT's prepare.py: 1,115,394 characters, 65 symbols, 1,003,854 train and 111,540 validation ids."""
    train, val, vocab = ds.load_text("shakespeare", data_dir=DATA, download=False)
    assert (len(train), len(val), vocab.size) == (1003854, 111540, 65)
    assert train.dtype == val.dtype == np.uint16
    assert vocab.chars == "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    text = SHAKESPEARE.read_text()
    assert vocab.decode(np.concatenate([train, val])) == text
    assert vocab.decode(train[:14]) == "First Citizen:"


def test_load_text_downloads_once_into_the_cache_with_the_checksum(monkeypatch, tmp_path, fake_text):
    calls = []

    def fetch(url):
        calls.append(url)
        return fake_text.encode()
    train, val, vocab = ds.load_text("shakespeare", fetch=fetch)
    assert calls == [ds.MIRRORS["shakespeare"][0] + "input.txt"]
    assert cache_listing(tmp_path) == ["shakespeare", "shakespeare/input.txt"]
    split = int(len(fake_text) * 0.9)
    assert (len(train), len(val)) == (split, len(fake_text) - split)
    assert vocab == ds.Vocabulary.from_text(fake_text) and vocab.decode(train) == fake_text[:split]
    calls.clear()
    ds.load_text("shakespeare", fetch=fetch)
    assert calls == []
    monkeypatch.setenv("XPNET_CACHE", str(tmp_path / "other-cache"))
    with pytest.raises(ds.DatasetNotFoundError) as err:  # wrong bytes from the mirror: refused, not kept
        ds.load_text("shakespeare", fetch=lambda url: b"other text")
    assert "SHA-256 mismatch" in str(err.value)
    assert not (tmp_path / "other-cache" / "shakespeare" / "input.txt").exists()


def test_load_text_offline_names_the_file_the_folders_and_the_fix(tmp_path, fake_text, monkeypatch):
    def offline(url):
        raise urllib.error.URLError("no route to host")
    (tmp_path / "mine").mkdir()
    monkeypatch.setenv("XPNET_DATA", str(tmp_path / "mine"))
    with pytest.raises(ds.DatasetNotFoundError) as err:
        ds.load_text("shakespeare", fetch=offline)
    msg = str(err.value)
    assert msg.startswith("shakespeare text not found: missing input.txt")
    for text in [str(tmp_path / "mine" / "shakespeare"), str(tmp_path / "cache" / "shakespeare"), "XPNET_DATA",
                 "--data-dir", ds.MIRRORS["shakespeare"][0] + "input.txt: URLError: <urlopen error no route to host>"]:
        assert text in msg
    with pytest.raises(ds.DatasetNotFoundError, match="downloads are off"):
        ds.load_text("shakespeare", download=False, fetch=lambda url: pytest.fail("fetched"))


def test_a_local_text_that_fails_its_checksum_says_both_sums(tmp_path, fake_text):
    _put(tmp_path / "data" / "shakespeare", {"input.txt": fake_text.encode()[:-1]})  # one byte short
    with pytest.raises(ds.DatasetCorruptError) as err:
        ds.load_text("shakespeare", data_dir=tmp_path / "data")
    msg = str(err.value)
    assert "input.txt: SHA-256 checksum mismatch (corrupt, truncated or a different file)" in msg
    assert ds.SHA256["shakespeare"]["input.txt"] in msg
    assert hashlib.sha256(fake_text.encode()[:-1]).hexdigest() in msg


def test_load_text_and_load_point_to_each_other():
    with pytest.raises(ValueError, match="unknown text 'tinystories', choose one of shakespeare"):
        ds.load_text("tinystories")
    with pytest.raises(ValueError, match=r"'shakespeare' is a text, not rows of \(X, y\): use "
                                         r"xpnet.datasets.load_text\('shakespeare'\)"):
        ds.load("shakespeare")


def test_vocabulary_round_trip_json_and_errors():
    import json

    import xpnet

    vocab = ds.Vocabulary.from_text("hello, wörld")
    assert vocab.chars == " ,dehlorw\u00f6" and vocab.size == len(vocab) == 10
    ids = vocab.encode("world, hello")
    assert ids.dtype == np.uint16 and vocab.decode(ids) == "world, hello"
    assert vocab.decode(ids.tolist()) == vocab.decode(xpnet.device("cpu").asarray(ids, "int64")) == "world, hello"
    assert vocab.decode(3) == "e" and vocab.decode([]) == ""
    again = ds.Vocabulary.from_config(json.loads(json.dumps(vocab.get_config())))
    assert again == vocab and again.encode("wörld").tolist() == vocab.encode("wörld").tolist()
    with pytest.raises(ValueError, match=r"'x' \(U\+0078, position 1\) is not one of the 10 characters"):
        vocab.encode("ox")
    with pytest.raises(ValueError, match="'\u20ac' \\(U\\+20AC, position 0\\) is not one of"):
        vocab.encode("\u20ac")  # beyond every code point it knows
    with pytest.raises(ValueError, match="id 10 at position 1 is outside 0..9"):
        vocab.decode([0, 10])
    with pytest.raises(ValueError, match=r"ids must be one sequence of integers \(1-D\), got shape \(2, 2\)"):
        vocab.decode(np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match=r"chars holds \['l'\] more than once"):
        ds.Vocabulary("hello")
    with pytest.raises(ValueError, match=r"expected \{'chars': str\}"):
        ds.Vocabulary.from_config({"itos": {}})
