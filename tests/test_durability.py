"""What makes files safe, observed directly: the folder is fsynced after the rename in ``save`` (so the
rename survives a power cut), and the dataset checksum cache notices a file that changed."""

from __future__ import annotations

import hashlib
import os
import stat

import numpy as np
import pytest

import xpnet
from xpnet import Dense, ReLU, Sequential
from xpnet.datasets import files as ds  # the checksum cache lives there


@pytest.mark.skipif(os.name == "nt", reason="Windows cannot open a folder to fsync it")
def test_save_fsyncs_the_file_then_renames_then_fsyncs_the_folder(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync-dir" if stat.S_ISDIR(st.st_mode) else "fsync-file", st.st_ino))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.stat(src).st_ino))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    model = Sequential([Dense(3, 4), ReLU(), Dense(4, 2)], device="cpu", seed=0)
    target = tmp_path / "model.npz"
    xpnet.save(model, target)
    file_ino, dir_ino = os.stat(target).st_ino, os.stat(tmp_path).st_ino
    assert events == [("fsync-file", file_ino), ("replace", file_ino), ("fsync-dir", dir_ino)], events
    np.testing.assert_array_equal(xpnet.load(target, device="cpu").state_dict()["0.W"], model.state_dict()["0.W"])


@pytest.fixture
def verified_file(tmp_path, monkeypatch):
    """A file, its SHA-256 already verified (and so cached) once."""
    monkeypatch.setattr(ds, "_VERIFIED", set())
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(b"0123456789" * 10)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    ds.verify_file(path, expected)
    ds.verify_file(path, expected)  # a cache hit: still fine
    return path, expected


def test_checksum_cache_notices_a_new_mtime(verified_file):
    path, expected = verified_file
    st = path.stat()
    path.write_bytes(b"9876543210" * 10)  # same size, different bytes
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(ds.DatasetCorruptError, match="SHA-256 checksum mismatch"):
        ds.verify_file(path, expected)


def test_checksum_cache_notices_a_new_size(verified_file):
    path, expected = verified_file
    st = path.stat()
    path.write_bytes(b"0123456789" * 9)  # truncated, with the old mtime put back
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(ds.DatasetCorruptError, match="SHA-256 checksum mismatch"):
        ds.verify_file(path, expected)


def test_checksum_cache_is_per_file(verified_file, tmp_path):
    path, expected = verified_file
    other = tmp_path / "copy.gz"
    other.write_bytes(b"x" * 100)
    os.utime(other, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))  # same mtime and size
    with pytest.raises(ds.DatasetCorruptError, match="SHA-256 checksum mismatch"):
        ds.verify_file(other, expected)
