"""Fuzzing the model loader (the IDX/CSV readers are fuzzed in test_datasets.py).

Hypothesis feeds ``xpnet.load`` truncated, bit-flipped, spliced and random files, a bounded number of
examples per run. Only ``ModelFormatError`` may come out, or a model identical to the one saved: never
another exception, a hang, or code run from the file.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xpnet
from xpnet import Dense, ReLU, Sequential, Sigmoid

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "model.npz"
    model = Sequential([Dense(3, 4), ReLU(), Dense(4, 2), Sigmoid()], device="cpu", seed=0)
    model.save(path)
    return path.read_bytes(), model.state_dict()


def _load_bytes(data, tmp_path, original):
    path = tmp_path / "fuzzed.npz"
    path.write_bytes(data)
    try:
        model = xpnet.load(path, device="cpu")
    except xpnet.ModelFormatError as exc:
        assert str(exc)  # says something
        return
    state = model.state_dict()
    assert state.keys() == original.keys()
    for k in state:
        np.testing.assert_array_equal(state[k], original[k])


@FUZZ
@given(cut=st.integers(0, 10**6))
def test_truncated_files(saved, tmp_path, cut):
    data, state = saved
    _load_bytes(data[:cut % len(data)], tmp_path, state)


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=8))
def test_bit_flipped_files(saved, tmp_path, flips):
    data, state = saved
    buf = bytearray(data)
    for pos, mask in flips:
        buf[pos % len(buf)] ^= mask
    _load_bytes(bytes(buf), tmp_path, state)


@FUZZ
@given(pos=st.integers(0, 10**6), junk=st.binary(min_size=1, max_size=64), replace=st.booleans())
def test_spliced_files(saved, tmp_path, pos, junk, replace):
    data, state = saved
    pos %= len(data)
    end = pos + len(junk) if replace else pos
    _load_bytes(data[:pos] + junk + data[end:], tmp_path, state)


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes(tmp_path, data):
    _load_bytes(data, tmp_path, {})
