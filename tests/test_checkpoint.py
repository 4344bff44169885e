"""Checkpoints resume exactly: a run stopped after epoch k and resumed ends with the weights, optimizer
state and history of the run that never stopped, bit for bit, on every backend here (NumPy,
array-api-strict on two devices, PyTorch and JAX on the CPU: the same operations in the same order, on
the same bits). Also: the optimizers' state round trip, the policy when fit's optimizer or loss differs
from the checkpoint's, the errors for missing or damaged files, and a training process killed with
SIGKILL mid-epoch and resumed in another process.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import xpnet
from xpnet import (SGD, Adam, AdamW, BatchNorm1d, CSVLogger, Dense, EarlyStopping, Layer, ModelCheckpoint,
                   ModelFormatError, ReLU, RMSprop, Sequential, Tanh, to_numpy)
from xpnet import checkpoint as ckpt
from xpnet import schedules
from xpnet import io as xio
from xpnet.callbacks import Callback
from xpnet.layers import LAYERS
from xpnet.train import stretch
from xpnet.callbacks.state import callback_states, restore_states
from xpnet.train.resume import Resume

OPTIMIZERS = {
    "momentum": lambda: SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda: Adam(0.01, weight_decay=1e-3),
    "adamw": lambda: AdamW(0.01),
    "rmsprop": lambda: RMSprop(0.005, momentum=0.5),
}
LOSS = "softmax_cross_entropy"


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype("float32")
    return X, (X[:, 0] - X[:, 1] + 0.3 * X[:, 2] > 0).astype("int64")


def _model(dev="cpu", seed=0, extra=()):
    return Sequential([Dense(6, 8), Tanh(), *extra, Dense(8, 2)], device=dev, seed=seed)


def _fit(model, epochs, **kwargs):
    X, y = _data()
    kwargs.setdefault("batch_size", 16)  # 13 steps an epoch, the last one partial
    return model.fit(X, y, epochs=epochs, verbose=0, **kwargs)


def _stop_after(k):
    """A user's callback that stops the run after epoch ``k`` (1-based)."""
    return lambda epoch, logs: epoch + 1 == k


def _assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _optimizer_arrays(opt) -> dict:
    return opt.state_dict()["state"]


# -- exact resume, on every backend -----------------------------------------------------------------
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_run_stopped_after_epoch_k_and_resumed_equals_the_run_that_never_stopped(dev, name, tmp_path):
    whole, whole_opt = _model(dev), OPTIMIZERS[name]()
    expected = _fit(whole, 5, loss=LOSS, optimizer=whole_opt, checkpoint_dir=tmp_path / "whole")

    # Stopped by a user's callback after epoch 2: its checkpoint is still written.
    first = _model(dev)
    _fit(first, 5, loss=LOSS, optimizer=OPTIMIZERS[name](), checkpoint_dir=tmp_path / "run",
         callbacks=[_stop_after(2)])
    path = tmp_path / "run" / "last.npz"
    entry, _, _ = ckpt.read_checkpoint(path)
    assert (entry["epoch"], entry["step"]) == (2, 2 * 13)

    # Another seed: the weights and the shuffling can only come from the checkpoint.
    resumed = _model(dev, seed=99)
    history = _fit(resumed, 5, resume_from=path, checkpoint_dir=tmp_path / "run")
    assert xpnet.device_of(resumed.parameters()["0.W"]) == dev
    _assert_same_state(resumed.state_dict(), whole.state_dict())
    assert history.history["loss"] == expected.history["loss"]  # the 2 epochs before, and the 3 after
    assert history.history["accuracy"] == expected.history["accuracy"]
    # the last checkpoints agree too, the optimizer's state and counters included
    done, _, arrays = ckpt.read_checkpoint(path)
    want, _, want_arrays = ckpt.read_checkpoint(tmp_path / "whole" / "last.npz")
    assert (done["epoch"], done["step"], done["optimizer"], done["rng"]) == \
           (want["epoch"], want["step"], want["optimizer"], want["rng"])
    _assert_same_state(arrays, want_arrays)


def test_resume_with_a_model_built_on_another_backend_from_a_numpy_checkpoint(dev, tmp_path):
    """A checkpoint is host arrays: made on NumPy, it loads onto any backend's device."""
    _fit(_model(), 2, loss=LOSS, optimizer=Adam(0.01), checkpoint_dir=tmp_path)
    model = _model(dev)
    ckpt.load_checkpoint(tmp_path / "last.npz", model)
    assert xpnet.device_of(model.parameters()["0.W"]) == dev
    _assert_same_state(model.state_dict(), xpnet.load(tmp_path / "last.npz").state_dict())


# -- the optimizers' state ----------------------------------------------------------------------
def _problem(dev, seed=0):
    rng = np.random.default_rng(seed)
    params = {"0.W": rng.normal(size=(3, 2)), "0.b": rng.normal(size=2)}
    grads = [{k: rng.normal(size=v.shape) for k, v in params.items()} for _ in range(6)]
    mine = {k: dev.asarray(v, "float32") for k, v in params.items()}
    return mine, [{k: dev.asarray(v, "float32") for k, v in g.items()} for g in grads]


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_state_round_trips(dev, name):
    """Three steps, ``state_dict``, a new optimizer loads it: both then take the same three steps bit for bit."""
    params, grads = _problem(dev)
    opt = OPTIMIZERS[name]()
    for g in grads[:3]:
        opt.step(params, g)
    saved = opt.state_dict()
    assert saved["class"] == type(opt).__name__ and saved["config"] == opt.get_config()
    assert saved["counters"] == ({"t": 3} if isinstance(opt, Adam) else {})
    assert all(type(a) is np.ndarray and a.dtype == np.float32 for a in saved["state"].values())
    json.dumps({k: v for k, v in saved.items() if k != "state"})  # everything else is JSON
    twin_params = {k: dev.asarray(to_numpy(v).copy(), "float32") for k, v in params.items()}
    twin = type(opt)(lr=0.5)  # the state's config wins, as torch.optim's load_state_dict
    twin.load_state_dict(saved, twin_params)
    assert twin.get_config() == opt.get_config()
    for v in (slot for slots in twin.state.values() for slot in slots.values()):
        assert xpnet.device_of(v) == dev and v.dtype == dev.dtype("float32")
    for arr in saved["state"].values():
        arr[...] = 7.0  # the state dict holds copies: neither optimizer sees this
    for g in grads[3:]:
        opt.step(params, g)
        twin.step(twin_params, g)
    _assert_same_state({k: to_numpy(v) for k, v in twin_params.items()}, {k: to_numpy(v) for k, v in params.items()})
    _assert_same_state(_optimizer_arrays(twin), _optimizer_arrays(opt))


def test_optimizer_state_keys_are_slot_slash_parameter():
    params, grads = _problem(xpnet.device("cpu"))
    names = {"momentum": {"momentum_buffer"}, "adam": {"exp_avg", "exp_avg_sq"}, "adamw": {"exp_avg", "exp_avg_sq"},
             "rmsprop": {"square_avg", "momentum_buffer"}}
    for name, slots in names.items():
        opt = OPTIMIZERS[name]()
        opt.step(dict(params), grads[0])
        assert set(_optimizer_arrays(opt)) == {f"{s}/{p}" for s in slots for p in params}, name
    plain = SGD(0.1)
    plain.step(dict(params), grads[0])
    assert plain.state_dict()["state"] == {}


@pytest.mark.parametrize("state, match", [
    ({"class": "Adam"}, "not a SGD"),
    ({"class": "SGD", "config": {"lr": -1.0}}, "bad config"),
    ({"class": "SGD", "config": {}, "counters": {"t": 1}}, "counters"),
    ({"class": "SGD", "config": {"momentum": 0.9}, "state": {"exp_avg/0.W": np.zeros((3, 2), np.float32)}},
     "slot"),
    ({"class": "SGD", "config": {}, "state": {"momentum_buffer/0.W": np.zeros((3, 2), np.float32)}}, "slot"),
    ({"class": "SGD", "config": {"momentum": 0.9}, "state": {"momentum_buffer/9.W": np.zeros((3, 2), np.float32)}},
     "parameter"),
    ({"class": "SGD", "config": {"momentum": 0.9}, "state": {"momentum_buffer/0.W": np.zeros((2, 3), np.float32)}},
     "shape"),
    ({"class": "SGD", "config": {"momentum": 0.9}, "state": {"momentum_buffer/0.W": np.zeros((3, 2), np.float64)}},
     "float64"),
])
def test_optimizer_load_state_dict_refuses_what_does_not_fit(state, match):
    params, _ = _problem(xpnet.device("cpu"))
    opt = SGD(0.1, momentum=0.9)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(state, params)
    assert opt.state == {} and opt.lr == 0.1


# -- resuming: the finished run, the policy on the arguments ------------------------------------
def test_a_checkpoint_of_a_finished_run_resumes_to_a_no_op(tmp_path):
    model = _model()
    done = _fit(model, 3, loss=LOSS, optimizer=Adam(0.01), checkpoint_dir=tmp_path)
    before = os.stat(tmp_path / "last.npz").st_mtime_ns
    again = _model(seed=5)
    history = _fit(again, 3, resume_from=tmp_path / "last.npz", checkpoint_dir=tmp_path)
    _assert_same_state(again.state_dict(), model.state_dict())
    assert history.history["loss"] == done.history["loss"] and len(history.history["loss"]) == 3
    assert os.stat(tmp_path / "last.npz").st_mtime_ns == before  # no epoch ran, nothing was written
    with pytest.warns(UserWarning, match=r"nothing to do: .* already has 3 epochs, more than epochs=2 .*epochs=4 or more"):
        _fit(_model(), 2, resume_from=tmp_path / "last.npz")


def test_an_optimizer_of_another_class_is_refused_naming_both(tmp_path):
    _fit(_model(), 1, loss=LOSS, optimizer=Adam(0.01), checkpoint_dir=tmp_path)
    model = _model(seed=3)
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"trained with Adam\(lr=0\.01, .*SGD\(lr=0\.1, .*optimizer=None"):
        _fit(model, 2, optimizer=SGD(0.1), resume_from=tmp_path / "last.npz")
    with pytest.raises(ValueError, match=r"trained with Adam.*RMSprop"):
        _fit(model, 2, optimizer="rmsprop", resume_from=tmp_path / "last.npz")
    _assert_same_state(model.state_dict(), before)  # refused before anything changed


def test_the_same_optimizer_class_takes_the_checkpoints_config_with_a_warning(tmp_path):
    whole = _model()
    _fit(whole, 3, loss=LOSS, optimizer=Adam(0.01))
    _fit(_model(), 3, loss=LOSS, optimizer=Adam(0.01), checkpoint_dir=tmp_path, callbacks=[_stop_after(1)])
    mine = Adam(0.5, beta2=0.9)
    resumed = _model()
    with pytest.warns(UserWarning, match=r"configuration wins.*lr=0\.01 \(given 0\.5\).*beta2=0\.999 \(given 0\.9\)"):
        _fit(resumed, 3, optimizer=mine, resume_from=tmp_path / "last.npz")
    assert mine.lr == 0.01 and mine.t == 3 * 13  # the instance given is the one that trained on
    _assert_same_state(resumed.state_dict(), whole.state_dict())


def test_the_same_optimizer_resumes_silently(tmp_path, recwarn):
    _fit(_model(), 1, loss=LOSS, optimizer=RMSprop(0.005), checkpoint_dir=tmp_path)
    _fit(_model(), 2, loss=LOSS, optimizer=RMSprop(0.005), resume_from=tmp_path / "last.npz")
    assert not [w for w in recwarn if "resume" in str(w.message)]


def test_another_loss_is_refused_and_none_takes_the_checkpoints(tmp_path):
    _fit(_model(), 1, loss=LOSS, optimizer=Adam(0.01), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"loss SoftmaxCrossEntropy.*MSE\(\) was given"):
        _fit(_model(), 2, loss="mse", resume_from=tmp_path / "last.npz")
    model = _model()
    _fit(model, 2, resume_from=tmp_path / "last.npz")
    assert type(model.loss).__name__ == "SoftmaxCrossEntropy"


def test_lr_without_an_optimizer_is_ignored_with_a_warning(tmp_path):
    _fit(_model(), 1, loss=LOSS, optimizer=Adam(0.01), checkpoint_dir=tmp_path)
    with pytest.warns(UserWarning, match="lr=0.3 is ignored"):
        _fit(_model(), 2, lr=0.3, resume_from=tmp_path / "last.npz")


def test_another_architecture_or_dtype_is_refused_naming_both(tmp_path):
    _fit(_model(), 1, loss=LOSS, optimizer=Adam(0.01), checkpoint_dir=tmp_path)
    other = Sequential([Dense(6, 8), ReLU(), Dense(8, 2)], seed=0)
    with pytest.raises(ValueError, match=r"layers \[Dense, ReLU, Dense\] are not the checkpoint's "
                                         r"\[Dense, Tanh, Dense\]; layer 1 is ReLU\(\) in the model, Tanh\(\)"):
        _fit(other, 2, resume_from=tmp_path / "last.npz")
    wide = Sequential([Dense(6, 8), Tanh(), Dense(8, 3)], seed=0)
    with pytest.raises(ValueError, match=r"layer 2 is Dense\(in_features=8, out_features=3.*out_features=2"):
        _fit(wide, 2, resume_from=tmp_path / "last.npz")
    double = Sequential([Dense(6, 8), Tanh(), Dense(8, 2)], seed=0, dtype="float64")
    with pytest.raises(ValueError, match="checkpoint is float32 but the model is float64"):
        _fit(double, 2, resume_from=tmp_path / "last.npz")


# -- the random state -----------------------------------------------------------------------------
class Jitter(Layer):
    """A test layer that draws from a generator of its own while training (as Dropout does)."""

    def __init__(self, seed=0):
        super().__init__()
        self.seed, self.rng = seed, np.random.default_rng(seed)

    def build(self, device, rng, dtype="float32", init=True):
        self.device, self.dtype = device, dtype

    def forward(self, x, training=False):
        if not training:
            return x
        return x + self.device.asarray(0.1 * self.rng.standard_normal(tuple(x.shape)), self.dtype)

    def backward(self, dy):
        return dy

    def get_config(self):
        return {"seed": self.seed}

    def rng_state(self):
        return self.rng.bit_generator.state

    def set_rng_state(self, state):
        self.rng.bit_generator.state = state


@pytest.fixture
def jitter(monkeypatch):
    monkeypatch.setitem(LAYERS, "Jitter", Jitter)  # registered for save/load, for this test only


def test_a_random_layers_state_is_saved_and_restored(jitter, tmp_path):
    whole = _model(extra=[Jitter()])
    _fit(whole, 3, loss=LOSS, optimizer=SGD(0.05, momentum=0.9))
    _fit(_model(extra=[Jitter()]), 3, loss=LOSS, optimizer=SGD(0.05, momentum=0.9), checkpoint_dir=tmp_path,
         callbacks=[_stop_after(1)])
    entry, _, _ = ckpt.read_checkpoint(tmp_path / "last.npz")
    assert set(entry["rng"]["layers"]) == {"2"}
    resumed = _model(extra=[Jitter()])  # its generator at the start: it must be moved on to the checkpoint's
    _fit(resumed, 3, resume_from=tmp_path / "last.npz")
    _assert_same_state(resumed.state_dict(), whole.state_dict())
    with pytest.raises(ValueError, match=r"layer 2 is Jitter\(seed=7\) in the model, Jitter\(seed=0\) in the"):
        _fit(_model(extra=[Jitter(seed=7)]), 3, resume_from=tmp_path / "last.npz")


def test_get_and_set_rng_state(jitter):
    model = _model(extra=[Jitter()])
    state = json.loads(json.dumps(model.get_rng_state()))  # JSON, as a checkpoint holds it
    a = (model.rng.permutation(10), model.layers[2].rng.random())
    model.set_rng_state(state)
    assert np.array_equal(model.rng.permutation(10), a[0]) and model.layers[2].rng.random() == a[1]
    with pytest.raises(ValueError, match=r"random layers \[\], this model's are \['2'\]"):
        model.set_rng_state({**state, "layers": {}})
    plain = _model()
    with pytest.raises(ValueError):
        plain.set_rng_state({"shuffle": {"bit_generator": "MT19937", "state": {}}, "layers": {}})
    assert plain.rng.bit_generator.state == _model().rng.bit_generator.state  # unchanged when refused


# -- the file -----------------------------------------------------------------------------------
def test_a_checkpoint_loads_as_a_plain_model(tmp_path):
    model = _model()
    _fit(model, 2, loss=LOSS, optimizer=Adam(0.01), checkpoint_dir=tmp_path)
    loaded = xpnet.load(tmp_path / "last.npz")
    _assert_same_state(loaded.state_dict(), model.state_dict())
    assert type(loaded.loss).__name__ == "SoftmaxCrossEntropy"
    header, arrays = xio.read(tmp_path / "last.npz")
    assert header["checkpoint"]["optimizer"]["counters"] == {"t": 26}
    assert {"optimizer/exp_avg/0.W", "optimizer/exp_avg_sq/2.b", "0.W"} <= set(arrays)


def test_save_and_load_checkpoint_directly(tmp_path):
    model, opt = _model(), Adam(0.01)
    history = _fit(model, 2, loss=LOSS, optimizer=opt)
    path = tmp_path / "mine.npz"
    ckpt.save_checkpoint(path, model, opt, epoch=2, step=26, history=history.history, extra={"note": "hi"})
    back = _model(seed=1)
    found = ckpt.load_checkpoint(path, back)
    assert (found.epoch, found.step, found.extra, found.schedule) == (2, 26, {"note": "hi"}, None)
    assert found.history["loss"] == history.history["loss"]
    assert type(found.optimizer) is Adam and found.optimizer.t == 26
    _assert_same_state(_optimizer_arrays(found.optimizer), _optimizer_arrays(opt))
    _assert_same_state(back.state_dict(), model.state_dict())
    assert back.rng.bit_generator.state == model.rng.bit_generator.state


def test_non_finite_history_values_round_trip(tmp_path):
    model, opt = _model(), SGD(0.1)
    history = {"loss": [0.5, 0.25], "samples_per_s": [float("inf"), 3.0]}
    ckpt.save_checkpoint(tmp_path / "c.npz", model, opt, epoch=2, step=0, history=history)
    assert ckpt.load_checkpoint(tmp_path / "c.npz", _model()).history == history
    with pytest.raises(ValueError, match="not JSON-serializable"):
        ckpt.save_checkpoint(tmp_path / "c.npz", model, opt, epoch=2, step=0, extra={"x": object()})
    with pytest.raises(ValueError, match="epoch must be a non-negative int"):
        ckpt.save_checkpoint(tmp_path / "c.npz", model, opt, epoch=-1, step=0)


class Halving:
    """A schedule as xpnet.schedules has them: a callable with a ``name`` and ``get_config()``."""

    name = "halving"

    def __init__(self, lr=0.1, per="epoch"):
        self.lr, self.per = lr, per

    def __call__(self, t):
        return self.lr * 0.5 ** t

    def get_config(self):
        return {"lr": self.lr, "per": self.per}


def test_the_schedule_is_saved_as_its_config(tmp_path):
    ckpt.save_checkpoint(tmp_path / "c.npz", _model(), SGD(0.1), epoch=0, step=0, schedule=Halving(0.2, "step"))
    assert ckpt.read_checkpoint(tmp_path / "c.npz")[0]["schedule"] == {"name": "halving", "lr": 0.2, "per": "step"}
    with pytest.warns(UserWarning, match="no get_config"):
        ckpt.save_checkpoint(tmp_path / "c.npz", _model(), SGD(0.1), epoch=0, step=0, schedule=lambda step: 0.1)
    assert ckpt.read_checkpoint(tmp_path / "c.npz")[0]["schedule"] is None


def test_the_schedule_is_rebuilt_by_xpnet_schedules(tmp_path):
    cosine = schedules.CosineDecay(0.2, total=10, warmup=2, per="step")
    ckpt.save_checkpoint(tmp_path / "c.npz", _model(), SGD(0.1), epoch=0, step=0, schedule=cosine)
    found = ckpt.load_checkpoint(tmp_path / "c.npz", _model())
    assert isinstance(found.schedule, schedules.CosineDecay)
    assert found.schedule.get_config() == cosine.get_config()
    assert [found.schedule(t) for t in range(12)] == [cosine(t) for t in range(12)]


def test_a_schedule_of_the_users_own_is_not_rebuilt_and_says_so(tmp_path):
    ckpt.save_checkpoint(tmp_path / "c.npz", _model(), SGD(0.1), epoch=0, step=0, schedule=Halving(0.2, "step"))
    with pytest.warns(UserWarning, match=r"schedule 'halving' is not one of xpnet's.*fit\(schedule=\.\.\.\)"):
        found = ckpt.load_checkpoint(tmp_path / "c.npz", _model())
    assert found.schedule is None
    mine = Halving(0.2, "step")
    assert stretch.resumed_schedule(found, mine) is mine  # the one given to the resumed fit goes on


def test_a_resumed_run_keeps_the_checkpoints_schedule(tmp_path):
    """After a resume the optimizer's lr is the schedule's last value, not its base: the checkpoint's schedule
    (base lr filled in) is the one to go on with; a given one that says otherwise loses, with a warning."""
    saved = schedules.ExponentialDecay(0.2, gamma=0.5, per="step")
    ckpt.save_checkpoint(tmp_path / "c.npz", _model(), SGD(0.1), epoch=1, step=0, schedule=saved)
    found = ckpt.load_checkpoint(tmp_path / "c.npz", _model())
    assert stretch.resumed_schedule(found, None) is found.schedule
    unset = schedules.ExponentialDecay(gamma=0.5, per="step")  # lr=None: "the optimizer's", not compared
    assert stretch.resumed_schedule(found, unset) is found.schedule
    with pytest.warns(UserWarning, match=r"checkpoint's learning-rate schedule.*lr=0\.2 \(given 0\.5\)"):
        assert stretch.resumed_schedule(found, schedules.ExponentialDecay(0.5, gamma=0.5, per="step")) is found.schedule
    with pytest.warns(UserWarning, match=r"per='step' \(given 'epoch'\)"):
        stretch.resumed_schedule(found, "exponential")  # a name goes through xpnet.schedules.get
    found.schedule = None  # a checkpoint without one: the given schedule starts now
    mine = schedules.Constant(0.3)
    assert stretch.resumed_schedule(found, mine) is mine


def test_a_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no checkpoint file .*nowhere\.npz .*checkpoint_dir"):
        _fit(_model(), 2, resume_from=tmp_path / "nowhere.npz")


def test_a_model_file_is_not_a_checkpoint(tmp_path):
    xpnet.save(_model(), tmp_path / "model.npz")
    with pytest.raises(ModelFormatError, match="is a model file .*not a checkpoint.*xpnet.load"):
        _fit(_model(), 2, resume_from=tmp_path / "model.npz")


def test_a_truncated_checkpoint_is_refused_and_the_model_is_untouched(tmp_path):
    _fit(_model(), 1, loss=LOSS, optimizer=Adam(0.01), checkpoint_dir=tmp_path)
    raw = (tmp_path / "last.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    model = _model(seed=4)
    before = model.state_dict()
    with pytest.raises(ModelFormatError, match="cut.npz"):
        _fit(model, 2, resume_from=tmp_path / "cut.npz")
    _assert_same_state(model.state_dict(), before)


def _rewrite(tmp_path, edit=None, arrays_edit=None):
    """The checkpoint of one epoch, rewritten with its header's checkpoint entry or its arrays changed."""
    _fit(_model(), 1, loss=LOSS, optimizer=Adam(0.01), checkpoint_dir=tmp_path)
    return _edited(tmp_path, edit, arrays_edit)


def _edited(tmp_path, edit=None, arrays_edit=None):
    """``tmp_path/last.npz`` written again as ``bad.npz``, with ``edit(checkpoint entry)`` and
    ``arrays_edit(arrays)`` applied."""
    header, arrays = xio.read(tmp_path / "last.npz")
    if edit:
        edit(header["checkpoint"])
    if arrays_edit:
        arrays_edit(arrays)
    header = {k: v for k, v in header.items() if k not in ("magic", "format", "xpnet_version", "parameters")}
    xio.write(tmp_path / "bad.npz", header, arrays)
    return tmp_path / "bad.npz"


@pytest.mark.parametrize("edit, match", [
    (lambda e: e.update(epoch=-1), r"epoch -1 is not a non-negative int"),
    (lambda e: e.update(step="3"), r"step '3' is not"),
    (lambda e: e["optimizer"].update({"class": "Lion"}), r"unknown optimizer 'Lion'.*SGD, Adam, AdamW, RMSprop"),
    (lambda e: e["optimizer"].update(config=[]), r"optimizer is not"),
    (lambda e: e["optimizer"].update(config={"lr": -2.0}), r"optimizer Adam cannot be rebuilt"),
    (lambda e: e["optimizer"].update(counters={"t": -4}), r"counters"),
    (lambda e: e.update(rng=None), r"rng is not"),
    (lambda e: e["rng"].update(shuffle={"bit_generator": "PCG64", "state": "x"}), r"random state cannot be restored"),
    (lambda e: e["rng"]["shuffle"]["state"].update(state=10 ** 100), r"random state cannot be restored"),
    (lambda e: e["rng"].update(layers={"1": {}}), r"random state cannot be restored.*random layers \['1'\]"),
    (lambda e: e.update(history={"loss": 3}), r"history is not a dict of lists"),
    (lambda e: e.update(schedule=[1]), r"schedule is not"),
    (lambda e: e.update(schedule={"lr": 0.1}), r"schedule is not"),
    (lambda e: e.update(extra=[]), r"extra is not a dict"),
])
def test_a_garbled_checkpoint_entry_is_named(tmp_path, edit, match):
    bad = _rewrite(tmp_path, edit)
    model = _model(seed=4)
    before = model.state_dict()
    with pytest.raises(ModelFormatError, match=match):
        _fit(model, 2, resume_from=bad)
    _assert_same_state(model.state_dict(), before)


@pytest.mark.parametrize("arrays_edit, match", [
    (lambda a: a.pop("optimizer/exp_avg/0.W"), r"state of 0.W has \['exp_avg_sq'\], but every parameter"),
    (lambda a: a.update({"optimizer/exp_avg/0.W": np.zeros((2, 2), np.float32)}), r"shape \(2, 2\)"),
    (lambda a: a.update({"optimizer/nope/0.W": np.zeros((6, 8), np.float32)}), r"'nope/0.W' is not"),
])
def test_optimizer_arrays_that_do_not_fit_are_named(tmp_path, arrays_edit, match):
    bad = _rewrite(tmp_path, arrays_edit=arrays_edit)
    with pytest.raises(ModelFormatError, match=match):
        ckpt.load_checkpoint(bad, _model())


def test_checkpoint_dir_is_made_and_a_file_there_is_refused_before_training(tmp_path):
    _fit(_model(), 1, loss=LOSS, optimizer=SGD(0.1), checkpoint_dir=tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b" / "last.npz").is_file()
    (tmp_path / "file").write_text("x")
    model = _model()
    before = model.state_dict()
    with pytest.raises(NotADirectoryError, match="is a file"):
        _fit(model, 1, loss=LOSS, optimizer=SGD(0.1), checkpoint_dir=tmp_path / "file")
    _assert_same_state(model.state_dict(), before)


# -- killed with SIGKILL mid-epoch, resumed in another process ---------------------------------------
_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import xpnet
    from xpnet import Adam, Dense, ReLU, Sequential

    mode, folder, out = sys.argv[1:]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 20)).astype("float32")
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype("int64")
    model = Sequential([Dense(20, 32), ReLU(), Dense(32, 2)], seed=1 if mode == "resume" else 0)
    # 1500 steps an epoch: long enough to be killed in the middle of one
    kwargs = dict(epochs=5, batch_size=2, verbose=0)
    if mode == "resume":
        model.fit(X, y, resume_from=folder + "/last.npz", checkpoint_dir=folder, **kwargs)
    else:
        model.fit(X, y, loss="softmax_cross_entropy", optimizer=Adam(1e-3),
                  checkpoint_dir=folder if mode == "run" else None, **kwargs)
    xpnet.save(model, out)
""")


def _child(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(xpnet.__file__)),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", _CHILD, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_run_killed_mid_epoch_and_resumed_ends_with_the_uninterrupted_weights(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    killed = _child("run", run, tmp_path / "never.npz")
    deadline = time.monotonic() + 60
    while not (run / "last.npz").exists():
        assert killed.poll() is None, f"the training process ended early:\n{killed.communicate()[1]}"
        assert time.monotonic() < deadline, "no checkpoint within 60 s"
        time.sleep(0.005)
    time.sleep(0.05)  # into the next epoch
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "never.npz").exists()
    entry, _, _ = ckpt.read_checkpoint(run / "last.npz")
    assert 1 <= entry["epoch"] < 5  # killed mid-run: the resume has epochs to do

    resumed = _child("resume", run, tmp_path / "resumed.npz")
    whole = _child("whole", tmp_path / "unused", tmp_path / "whole.npz")
    for p in (resumed, whole):
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
    (_, got), (_, want) = xio.read(tmp_path / "resumed.npz"), xio.read(tmp_path / "whole.npz")
    _assert_same_state(got, want)
    assert ckpt.read_checkpoint(run / "last.npz")[0]["epoch"] == 5


def test_dropout_batchnorm_and_a_step_schedule_resume_exactly(dev, tmp_path):
    """Dropout's device stream, BatchNorm's running statistics (buffers) and a per-step cosine schedule
    (whose base lr the checkpoint keeps: after the resume the optimizer's lr is the schedule's last)."""
    from xpnet import Dropout, schedules

    def make(seed=0):
        return Sequential([Dense(6, 8), BatchNorm1d(8), Tanh(), Dropout(0.3), Dense(8, 2)], device=dev, seed=seed)

    def cosine():
        return schedules.CosineDecay(warmup=5, per="step")

    whole = make()
    expected = _fit(whole, 4, loss=LOSS, optimizer=AdamW(0.02), schedule=cosine())
    _fit(make(), 4, loss=LOSS, optimizer=AdamW(0.02), schedule=cosine(), checkpoint_dir=tmp_path,
         callbacks=[_stop_after(2)])
    resumed = make(seed=5)
    history = _fit(resumed, 4, resume_from=tmp_path / "last.npz")
    _assert_same_state(resumed.state_dict(), whole.state_dict())
    assert history.history["lr"] == expected.history["lr"] and history.history["loss"] == expected.history["loss"]


# -- the callbacks' state: EarlyStopping, ModelCheckpoint, CSVLogger go on as if never stopped --------

TIMING = ("seconds", "samples_per_s")  # the only figures two runs of the same training do not share


class Scripted(Callback):
    """Puts a scripted ``val_loss`` into each epoch's logs, for the callbacks after it: the epochs where
    a monitor improves are then known in advance, while the weights are those of real training."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]


class Crash(RuntimeError):
    pass


class CrashAt(Callback):
    """Kills the run in epoch ``epoch`` (from 0): mid-epoch (``where="batch"``: the checkpoint holds the
    epochs before it), or at its end after the callbacks before this one (``"epoch_end"``: before that
    epoch's checkpoint is written)."""

    def __init__(self, epoch, where="batch"):
        self.at, self.where, self.epoch = epoch, where, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, step, logs=None):
        if self.where == "batch" and self.epoch == self.at and step > 0:
            raise Crash(f"killed in epoch {self.epoch}")

    def on_epoch_end(self, epoch, logs=None):
        if self.where == "epoch_end" and epoch == self.at:
            raise Crash(f"killed at the end of epoch {epoch}")


def _stop_then_resume(tmp_path, epochs, k, make_callbacks, how="stopped", dev="cpu"):
    """Train ``epochs`` epochs in one go, and again stopped after ``k`` epochs (``how``: ``"stopped"``, a run
    of ``k`` epochs; ``"crashed"``, killed in epoch ``k``) then resumed; returns both (model, history,
    callbacks). Each run gets its own ``make_callbacks(run)`` (the resumed one new objects, as a new process)."""
    whole_cbs = make_callbacks("whole")
    whole = _model(dev, extra=(BatchNorm1d(8),))
    expected = _fit(whole, epochs, loss=LOSS, optimizer=Adam(0.01), callbacks=whole_cbs,
                    checkpoint_dir=tmp_path / "whole")
    first_cbs = make_callbacks("run")
    if how == "stopped":
        _fit(_model(dev, extra=(BatchNorm1d(8),)), k, loss=LOSS, optimizer=Adam(0.01), callbacks=first_cbs,
             checkpoint_dir=tmp_path / "run")
    else:
        with pytest.raises(Crash):
            _fit(_model(dev, extra=(BatchNorm1d(8),)), epochs, loss=LOSS, optimizer=Adam(0.01),
                 callbacks=[*first_cbs, CrashAt(k)], checkpoint_dir=tmp_path / "run")
    assert ckpt.read_checkpoint(tmp_path / "run" / "last.npz")[0]["epoch"] == k
    resumed_cbs = make_callbacks("run")
    resumed = _model(dev, seed=99, extra=(BatchNorm1d(8),))  # another seed: all of it must come from the checkpoint
    history = _fit(resumed, epochs, callbacks=resumed_cbs, resume_from=tmp_path / "run" / "last.npz",
                   checkpoint_dir=tmp_path / "run")
    return (whole, expected, whole_cbs), (resumed, history, resumed_cbs)


def _without_timing(history):
    return {k: v for k, v in history.history.items() if k not in TIMING}


@pytest.mark.parametrize("how", ["stopped", "crashed"])
def test_early_stopping_resumed_stops_where_and_with_the_weights_of_the_run_that_never_stopped(dev, tmp_path, how):
    # improves at epochs 0 and 1; with patience 3 the uninterrupted run stops at epoch 4. The run is cut
    # after 3 epochs (its wait is 1), so the patience count and the best weights (of epoch 1) must come
    # through the checkpoint.
    val_loss = [1.0, 0.6, 0.8, 0.7, 0.65, 0.9, 0.95, 0.97, 0.99, 1.0]

    def make(run):
        return [Scripted(val_loss), EarlyStopping(patience=3, restore_best_weights=True)]

    (whole, expected, (_, want)), (resumed, history, (_, got)) = _stop_then_resume(tmp_path, 10, 3, make, how, dev)
    assert (want.stopped_epoch, want.best_epoch, want.best) == (4, 1, 0.6)  # the script did what it says
    assert (got.stopped_epoch, got.best_epoch, got.best, got.wait) == (4, 1, 0.6, 3)
    _assert_same_state(resumed.state_dict(), whole.state_dict())  # epoch 1's weights and running statistics
    assert _without_timing(history) == _without_timing(expected) and len(history["loss"]) == 5
    # the best weights are the callback's arrays, not the model's: the file still loads as a plain model
    last = tmp_path / "run" / "last.npz"
    assert any(k.startswith("callbacks/EarlyStopping[0]/") for k in xio.read(last)[1])
    assert xpnet.load(last).state_dict().keys() == resumed.state_dict().keys()


def test_model_checkpoint_does_not_overwrite_its_best_file_with_a_worse_epoch_after_a_resume(tmp_path):
    val_loss = [1.0, 0.5, 0.7, 0.6, 0.4]

    def make(run):
        return [Scripted(val_loss), ModelCheckpoint(tmp_path / f"{run}-best.npz", save_best_only=True)]

    _, (resumed, _, (_, best)) = _stop_then_resume(tmp_path, 4, 2, make)
    # epochs 2 and 3 (0.7, 0.6) are worse than epoch 1 (0.5): the file keeps epoch 1's weights, as the
    # uninterrupted run's does
    assert best.best == 0.5
    _assert_same_state(xpnet.load(tmp_path / "run-best.npz").state_dict(),
                       xpnet.load(tmp_path / "whole-best.npz").state_dict())
    assert not np.array_equal(xpnet.load(tmp_path / "run-best.npz").state_dict()["0.W"], resumed.state_dict()["0.W"])


def _csv_rows(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


@pytest.mark.parametrize("how", ["stopped", "crashed", "crashed_after_its_row"])
def test_csv_logger_after_a_resume_holds_the_rows_of_the_run_that_never_stopped(tmp_path, how):
    def make(run):
        return [CSVLogger(tmp_path / f"{run}.csv")]  # append=False, the default: a resume still appends

    if how == "crashed_after_its_row":
        # killed after the CSVLogger wrote epoch 2's row but before epoch 2's checkpoint: the resumed run
        # trains epoch 2 again, and its row replaces the one the killed run left
        with pytest.raises(Crash):
            _fit(_model(extra=(BatchNorm1d(8),)), 5, loss=LOSS, optimizer=Adam(0.01),
                 callbacks=[*make("run"), CrashAt(2, "epoch_end")], checkpoint_dir=tmp_path / "run")
        assert len(_csv_rows(tmp_path / "run.csv")) == 3
        with pytest.warns(UserWarning, match=r"holds 1 row\(s\) written after the checkpoint"):
            _fit(_model(seed=99, extra=(BatchNorm1d(8),)), 5, callbacks=make("run"),
                 resume_from=tmp_path / "run" / "last.npz", checkpoint_dir=tmp_path / "run")
        _fit(_model(extra=(BatchNorm1d(8),)), 5, loss=LOSS, optimizer=Adam(0.01), callbacks=make("whole"))
    else:
        _stop_then_resume(tmp_path, 5, 2, make, how)
    text = (tmp_path / "run.csv").read_text()
    assert text.count("epoch,") == 1 and text.startswith("epoch,")  # one header, on the first line
    rows = _csv_rows(tmp_path / "run.csv")
    assert [r["epoch"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert rows == _csv_rows(tmp_path / "whole.csv")


def _with_early_stopping(tmp_path, epochs=2, **es):
    """A checkpoint of ``epochs`` epochs whose run had an EarlyStopping (on a scripted val_loss)."""
    _fit(_model(), epochs, loss=LOSS, optimizer=Adam(0.01), checkpoint_dir=tmp_path,
         callbacks=[Scripted([1.0, 0.5, 0.7, 0.6]), EarlyStopping(patience=3, **es)])
    return tmp_path / "last.npz"


def test_a_callback_state_no_callback_takes_or_a_callback_without_one_is_a_warning(tmp_path, recwarn):
    path = _with_early_stopping(tmp_path)
    with pytest.warns(UserWarning, match=r"holds the state of EarlyStopping\[0\], which no callback given to fit "
                                         r"takes; it is dropped"):
        _fit(_model(), 3, resume_from=path)
    first, second = EarlyStopping(patience=3), EarlyStopping(monitor="loss", patience=3)
    with pytest.warns(UserWarning, match=r"holds no state for EarlyStopping\[1\], so it starts afresh"):
        _fit(_model(), 3, resume_from=path, callbacks=[Scripted([1.0, 0.5, 0.7, 0.6]), first, second])
    assert (first.best, first.best_epoch, first.wait) == (0.5, 1, 1) and second.best_epoch == 2
    # the same class and place, but watching another key: its best is not comparable
    other = EarlyStopping(monitor="loss", patience=3)
    with pytest.warns(UserWarning, match=r"EarlyStopping: the checkpoint's watched 'val_loss' \(mode 'min'\), "
                                         r"this one 'loss'.*starts afresh"):
        _fit(_model(), 3, resume_from=path, callbacks=[other])
    assert other.best_epoch == 2
    recwarn.clear()
    _fit(_model(), 3, resume_from=path, callbacks=[Scripted([1.0, 0.5, 0.7, 0.6]), EarlyStopping(patience=3)])
    assert not [w for w in recwarn if "resume" in str(w.message) or "EarlyStopping" in str(w.message)]


def test_a_checkpoint_from_before_callback_states_still_resumes(tmp_path, recwarn):
    _fit(_model(), 1, loss=LOSS, optimizer=Adam(0.01), checkpoint_dir=tmp_path)
    old = _rewrite(tmp_path, lambda e: e.pop("callbacks"))
    _fit(_model(), 2, resume_from=old)  # no callbacks: nothing to say
    assert not [w for w in recwarn if "callback" in str(w.message)]
    stop = EarlyStopping(monitor="loss", patience=3)
    with pytest.warns(UserWarning, match=r"holds no callback states \(an older xpnet wrote it\), so "
                                         r"EarlyStopping\[0\] starts afresh"):
        history = _fit(_model(), 3, resume_from=old, callbacks=[stop])
    assert len(history["loss"]) == 3 and stop.best_epoch == 2


def test_non_finite_bests_round_trip_through_the_json_header(tmp_path):
    # ModelCheckpoint's best starts at inf, EarlyStopping's best can be nan (a first epoch of nan stands in)
    saver = ModelCheckpoint(tmp_path / "m.npz", monitor="loss")
    _fit(_model(), 1, loss=LOSS, optimizer=Adam(0.01), checkpoint_dir=tmp_path,
         callbacks=[Scripted([float("nan"), 1.0]), EarlyStopping(patience=3), saver])
    states = ckpt.read_checkpoint(tmp_path / "last.npz")[0]["callbacks"]
    assert states["ModelCheckpoint[0]"]["best"] == "inf" and states["EarlyStopping[0]"]["best"] == "nan"
    saver, stop = ModelCheckpoint(tmp_path / "m.npz", monitor="loss"), EarlyStopping(patience=3)
    _fit(_model(), 1, resume_from=tmp_path / "last.npz", callbacks=[Scripted([]), stop, saver])
    assert saver.best == float("inf") and np.isnan(stop.best)


@pytest.mark.parametrize("edit, arrays_edit, match", [
    (lambda e: e.update(callbacks=[]), None, r"callbacks is not \{key: state dict\}"),
    (lambda e: e["callbacks"]["EarlyStopping[0]"].update(arrays={}), None, r"callbacks is not"),
    (None, lambda a: a.update({"callbacks/Nope[0]/x": np.zeros(2, np.float32)}), r"'callbacks/Nope\[0\]/x' belongs "
                                                                                  r"to no callback state"),
    (lambda e: e["callbacks"]["EarlyStopping[0]"].update(wait="2"), None,
     r"state of EarlyStopping\[0\] cannot be restored: EarlyStopping: wait '2' in the checkpoint is not an int"),
    (lambda e: e["callbacks"]["EarlyStopping[0]"].update(best="low"), None, r"best 'low' .* is not a number"),
    (None, lambda a: a.pop("callbacks/EarlyStopping[0]/params/0.W"), r"EarlyStopping: the checkpoint's best "
                                                                     r"weights are \['params/0.b'"),
    (None, lambda a: a.update({"callbacks/EarlyStopping[0]/params/0.W": np.zeros((2, 2), np.float32)}),
     r"best weights' params/0.W has shape \(2, 2\), the model's \(6, 8\)"),
])
def test_a_garbled_callback_state_is_named(tmp_path, edit, arrays_edit, match):
    _with_early_stopping(tmp_path, restore_best_weights=True)
    bad = _edited(tmp_path, edit, arrays_edit)
    with pytest.raises(ModelFormatError, match=match):
        _fit(_model(), 3, resume_from=bad,
             callbacks=[Scripted([1.0, 0.5, 0.7, 0.6]), EarlyStopping(patience=3, restore_best_weights=True)])


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(X=np.zeros((20, 5), np.float32)), ValueError, r"X has shape \(20, 5\) but the first layer"),
    (dict(y=np.zeros(7, np.int64)), ValueError, r"\b7\b"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(metrics=["nope"]), ValueError, "nope"),
    (dict(validation_data=(np.zeros((3, 6), np.float32),)), TypeError, "validation_data must be a pair"),
    (dict(schedule="nope"), ValueError, "unknown schedule 'nope'"),
])
def test_bad_arguments_with_resume_from_are_refused_before_the_checkpoint_is_loaded(tmp_path, kwargs, error, match):
    path = _with_early_stopping(tmp_path, restore_best_weights=True)
    model, optimizer = _model(seed=4), Adam(0.5)
    before, stop = model.state_dict(), EarlyStopping(patience=3, restore_best_weights=True)
    X, y = _data()
    args = dict(X=X, y=y, epochs=3, batch_size=16, verbose=0, resume_from=path, optimizer=optimizer,
                callbacks=[Scripted([1.0, 0.5, 0.7, 0.6]), stop])
    args.update(kwargs)
    with pytest.raises(error, match=match):
        model.fit(args.pop("X"), args.pop("y"), **args)
    _assert_same_state(model.state_dict(), before)  # nothing was loaded into the model
    assert (model.loss, model.input_range) == (None, None)
    assert model.rng.bit_generator.state == _model(seed=4).rng.bit_generator.state
    assert (optimizer.lr, optimizer.t, stop.best) == (0.5, 0, None)


def test_a_csv_logger_writing_another_file_after_a_resume_starts_it_afresh_and_says_so(tmp_path):
    _fit(_model(), 2, loss=LOSS, optimizer=Adam(0.01), checkpoint_dir=tmp_path,
         callbacks=[CSVLogger(tmp_path / "a.csv")])
    (tmp_path / "b.csv").write_text("old rows\n")
    with pytest.warns(UserWarning, match=r"CSVLogger: the checkpoint's run wrote .*a\.csv, this one writes .*b\.csv: "
                                         r"that file is started as a new one"):
        _fit(_model(), 3, resume_from=tmp_path / "last.npz", callbacks=[CSVLogger(tmp_path / "b.csv")])
    assert [r["epoch"] for r in _csv_rows(tmp_path / "b.csv")] == ["2"]  # append=False: emptied, then its row
    assert [r["epoch"] for r in _csv_rows(tmp_path / "a.csv")] == ["0", "1"]


def test_a_resumed_schedule_compares_only_the_values_given_and_names_those_that_lose(tmp_path):
    import warnings

    saved = schedules.ExponentialDecay(0.2, gamma=0.5, per="step")
    ckpt.save_checkpoint(tmp_path / "c.npz", _model(), SGD(0.1), epoch=1, step=0, schedule=saved)
    found = ckpt.load_checkpoint(tmp_path / "c.npz", _model())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same values, or values left unset: nothing to say
        assert stretch.resumed_schedule(found, schedules.ExponentialDecay(gamma=0.5, per="step")) is found.schedule
        assert stretch.resumed_schedule(found, schedules.ExponentialDecay(0.2, gamma=0.5, per="step")) is found.schedule
    with pytest.warns(UserWarning) as seen:
        stretch.resumed_schedule(found, schedules.ExponentialDecay(0.5, gamma=0.25, per="step"))
    assert [str(w.message) for w in seen] == [
        "fit: resuming with the checkpoint's learning-rate schedule, not the one given: lr=0.2 (given 0.5), "
        "gamma=0.5 (given 0.25)"]
    # one of the user's own (a get_config, not a Schedule) is compared as it is, not looked up by its name
    with pytest.warns(UserWarning, match=r"name='exponential' \(given 'halving'\)"):
        assert stretch.resumed_schedule(found, Halving(0.2, "step")) is found.schedule


class _Kept(Callback):
    """A callback with a state: what load_state_dict was given."""

    def __init__(self):
        self.loaded = None

    def state_dict(self):
        return {"n": 1}

    def load_state_dict(self, state):
        self.loaded = state


def test_restore_callbacks_gives_the_active_ones_their_state_and_names_the_rest_in_one_sentence():
    a, b, c = _Kept(), _Kept(), _Kept()
    found = ckpt.Checkpoint(epoch=1, step=1, optimizer=SGD(0.1), loss=None,
                            callbacks={"_Kept[0]": {"n": 0}, "_Kept[1]": {"n": 1}, "EarlyStopping[0]": {},
                                       "EarlyStopping[1]": {}})
    with pytest.warns(UserWarning) as seen:
        restore_states(found.callbacks, [a, b, c, _Kept()], "run/last.npz", active=[a, c])
    assert (a.loaded, b.loaded, c.loaded) == ({"n": 0}, None, None)  # b is not run here; c has no state kept
    assert [str(w.message) for w in seen] == [
        "resume from run/last.npz: the checkpoint holds the state of EarlyStopping[0], EarlyStopping[1], which no "
        "callback given to fit takes; it is dropped (give fit the callbacks of the checkpoint's run, in the same "
        "order, to go on with them)",
        "resume from run/last.npz: the checkpoint holds no state for _Kept[2], _Kept[3], so they start afresh"]
    every = _Kept()
    restore_states(found.callbacks, [every], "run/last.npz")  # active left out: every callback runs here
    assert every.loaded == {"n": 0}
    found.callbacks = None  # a checkpoint from before callback states were kept
    with pytest.warns(UserWarning) as seen:
        restore_states(found.callbacks, [_Kept(), _Kept()], "old.npz")
    assert [str(w.message) for w in seen] == [
        "resume from old.npz: the checkpoint holds no callback states (an older xpnet wrote it), so _Kept[0], "
        "_Kept[1] start afresh"]


def test_an_optimizer_given_to_load_checkpoint_takes_the_saved_config_and_the_warning_names_each_value(tmp_path):
    import warnings

    path = os.fspath(tmp_path / "c.npz")
    ckpt.save_checkpoint(path, _model(), Adam(0.01), epoch=0, step=0)
    mine = Adam(0.5, beta2=0.9)
    with pytest.warns(UserWarning) as seen:
        found = ckpt.load_checkpoint(path, _model(), mine)
    assert found.optimizer is mine and (mine.lr, mine.beta2) == (0.01, 0.999)
    assert [str(w.message) for w in seen] == [
        f"resume from {path}: the checkpoint's Adam configuration wins over the one given: lr=0.01 (given 0.5), "
        f"beta2=0.999 (given 0.9)"]
    # with a schedule kept, the lr is the schedule's to set: a different one given is not worth a warning
    ckpt.save_checkpoint(path, _model(), Adam(0.01), epoch=0, step=0, schedule=schedules.Constant(0.01))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ckpt.load_checkpoint(path, _model(), Adam(0.5))


def test_a_model_with_fewer_or_more_layers_is_refused_naming_the_missing_one(tmp_path):
    path = os.fspath(tmp_path / "c.npz")
    ckpt.save_checkpoint(path, _model(), SGD(0.1), epoch=0, step=0)
    short = Sequential([Dense(6, 8), Tanh()], seed=0)
    with pytest.raises(ValueError) as info:
        ckpt.load_checkpoint(path, short)
    assert str(info.value) == (  # the checkpoint's layer as its header has it (JSON, keys sorted)
        f"resume from {path}: the model's layers [Dense, Tanh] are not the checkpoint's [Dense, Tanh, Dense]; "
        f"layer 2 is missing in the model, Dense(bias=True, in_features=8, init='lecun_normal', out_features=2) "
        f"in the checkpoint; build the same model (or xpnet.load({path!r}))")
    with pytest.raises(ValueError, match=r"layer 3 is Tanh\(\) in the model, missing in the checkpoint"):
        ckpt.load_checkpoint(path, Sequential([Dense(6, 8), Tanh(), Dense(8, 2), Tanh()], seed=0))


def test_resume_loads_with_the_loss_optimizer_and_lr_given(tmp_path):
    _fit(_model(), 1, loss=LOSS, optimizer=Adam(0.01), checkpoint_dir=tmp_path)
    path = tmp_path / "last.npz"
    mine = xpnet.losses.get(LOSS)
    model = _model(seed=5)
    with pytest.warns(UserWarning) as seen:
        found = Resume(model, path, mine, "adam", 0.5).restore()
    assert [str(w.message) for w in seen] == [f"resume from {path}: the checkpoint's Adam configuration wins over "
                                              f"the one given: lr=0.01 (given 0.5)"]
    assert found.loss is mine and model.loss is mine and (found.epoch, found.step) == (1, 13)
    assert type(found.optimizer) is Adam and found.optimizer.lr == 0.01 and found.extra == {}
    _assert_same_state(model.state_dict(), xpnet.load(path).state_dict())


def test_resume_gives_the_model_the_checkpoints_input_range_in_place_of_its_own(tmp_path):
    _fit(_model(), 1, loss=LOSS, checkpoint_dir=tmp_path)
    path = tmp_path / "last.npz"
    X, y = _data()
    model = _model(seed=5)
    model.fit(100 * X, y, loss=LOSS, epochs=1, verbose=0)  # a far wider range of its own
    mine = xpnet.losses.get(LOSS)
    Resume(model, path, mine).restore()
    assert model.input_range == xpnet.load(path).input_range and model.loss is mine


def test_save_checkpoint_refuses_what_it_cannot_keep_naming_it(tmp_path):
    model, path = _model(), tmp_path / "c.npz"
    cases = [
        (dict(optimizer=SGD(0.1), step=-1), ValueError, "save_checkpoint: step must be a non-negative int, got -1"),
        (dict(optimizer=SGD(0.1), extra=[1]), TypeError, "save_checkpoint: extra must be a dict, got list"),
    ]
    for kwargs, kind, message in cases:
        kwargs = {"epoch": 0, "step": 0, **kwargs}
        with pytest.raises(kind) as info:
            ckpt.save_checkpoint(path, model, **kwargs)
        assert str(info.value) == message
    with pytest.raises(TypeError, match=r"is not one of xpnet's optimizers \(SGD, Adam, AdamW, RMSprop\), which"):
        ckpt.save_checkpoint(path, model, object(), epoch=0, step=0)
    with pytest.raises(ValueError, match=r"not JSON-serializable \(Out of range float values"):
        ckpt.save_checkpoint(path, model, SGD(0.1), epoch=0, step=0, extra={"x": float("nan")})
    assert not path.exists()
    model.metadata = {"scale": "x / 255"}  # a checkpoint is also a model file: the metadata goes with it
    ckpt.save_checkpoint(path, model, SGD(0.1), epoch=0, step=0)
    assert xpnet.load(path).metadata == {"scale": "x / 255"}


def test_arrays_that_do_not_match_the_model_are_named_with_the_path(tmp_path):
    bad = os.fspath(_rewrite(tmp_path, arrays_edit=lambda a: a.pop("2.b")))
    with pytest.raises(xio.ModelFormatError) as info:
        ckpt.load_checkpoint(bad, _model())
    assert str(info.value) == f"{bad}: the model has arrays ['0.W', '0.b', '2.W', '2.b'] but the checkpoint holds " \
                              f"['0.W', '0.b', '2.W']"
    bad = os.fspath(_edited(tmp_path, arrays_edit=lambda a: a.update({"2.b": np.zeros(3, np.float32)})))
    with pytest.raises(xio.ModelFormatError) as info:
        ckpt.load_checkpoint(bad, _model())
    assert str(info.value) == f"{bad}: array '2.b' has shape (3,), the model's (2,)"


def test_a_callback_without_a_state_this_epoch_does_not_hide_the_next_ones():
    class Nothing(_Kept):
        def state_dict(self):
            return None  # nothing to keep yet

    states, _ = callback_states(_model(), [Nothing(), _Kept()])
    assert states == {"_Kept[0]": {"n": 1}}


def test_a_checkpoint_that_cannot_be_restored_names_its_path_and_leaves_the_model_alone(tmp_path):
    bad = os.fspath(_rewrite(tmp_path, lambda e: e.update(rng={"shuffle": {"bit_generator": "nope"}})))
    model = _model()
    before = model.get_rng_state()
    with pytest.raises(xio.ModelFormatError, match=r"^" + re.escape(f"{bad}: garbled checkpoint (its random state")):
        ckpt.load_checkpoint(bad, model)
    assert model.get_rng_state() == before
    bad = os.fspath(_edited(tmp_path, lambda e: e.update(schedule={"name": "step", "lr": 0.1, "step_size": 0,
                                                                   "gamma": 0.5, "per": "epoch"})))
    with pytest.raises(xio.ModelFormatError) as info:
        ckpt.load_checkpoint(bad, _model())
    assert str(info.value) == (f"{bad}: the schedule 'step' cannot be rebuilt: StepDecay: step_size must be an "
                               f"integer >= 1, got 0")
    for edit, what in ((dict(history=[1.0]), "history is not a dict of lists"),
                       (dict(callbacks=[]), "callbacks is not {key: state dict}")):
        bad = os.fspath(_edited(tmp_path, lambda e: e.update(edit)))
        for read in (ckpt.read_checkpoint, lambda path: ckpt.load_checkpoint(path, _model())):
            with pytest.raises(xio.ModelFormatError) as info:
                read(bad)
            assert str(info.value) == f"{bad}: garbled checkpoint ({what})"
    found = ckpt.load_checkpoint(tmp_path / "last.npz", _model())
    assert type(found.loss).__name__ == "SoftmaxCrossEntropy"  # the loss the checkpoint's run trained with
    assert Resume(_model(), tmp_path / "last.npz").path == os.fspath(tmp_path / "last.npz")


def test_history_values_of_every_kind_come_back_as_they_were(tmp_path):
    history = {"loss": [np.float32(0.5), np.float64(-np.inf), float("nan"), 2], "note": ["x", "inf?", None, True],
               "lr": [float("inf")]}
    ckpt.save_checkpoint(tmp_path / "c.npz", _model(), SGD(0.1), epoch=1, step=1, history=history)
    found = ckpt.load_checkpoint(tmp_path / "c.npz", _model())
    assert found.history["note"] == ["x", "inf?", None, True] and found.history["lr"] == [float("inf")]
    loss = found.history["loss"]
    assert loss[:2] == [0.5, -np.inf] and math.isnan(loss[2]) and loss[3] == 2
    assert [type(v) for v in loss] == [float, float, float, int]  # NumPy scalars as Python numbers
    with pytest.raises(TypeError) as info:
        ckpt.save_checkpoint(tmp_path / "c.npz", _model(), SGD(0.1), epoch=1, step=1, history=[0.5])
    assert str(info.value) == "save_checkpoint: history must be a dict of lists (History.history), got list"


@pytest.mark.parametrize("state, kind, message", [
    ([1], TypeError, "save_checkpoint: _Kept[0].state_dict() gave a list, not a dict"),
    ({"arrays": [1]}, TypeError, "save_checkpoint: _Kept[0].state_dict()['arrays'] is a list, not a dict {name: array}"),
    ({"arrays": {"w": np.zeros(2)}}, ValueError, "save_checkpoint: _Kept[0]'s array 'w' is float64, not the model's "
                                                 "float32"),
])
def test_a_callback_state_a_checkpoint_cannot_keep_is_named(tmp_path, state, kind, message):
    class Odd(_Kept):
        def state_dict(self):
            return state

    Odd.__name__ = "_Kept"
    with pytest.raises(kind) as info:
        ckpt.save_checkpoint(tmp_path / "c.npz", _model(), SGD(0.1), epoch=0, step=0, callbacks=[Odd()])
    assert str(info.value) == message


def test_a_checkpoint_without_history_or_extra_resumes_with_empty_ones(tmp_path):
    """Both are optional in the file (read_checkpoint takes them as {}): a hand-made or trimmed checkpoint."""
    bad = _rewrite(tmp_path, lambda e: (e.pop("history"), e.pop("extra")))
    found = ckpt.load_checkpoint(bad, _model())
    assert (found.history, found.extra) == ({}, {})


def test_more_refusals_name_what_to_do(tmp_path):
    class MySGD(SGD):
        pass

    with pytest.raises(TypeError, match=r"MySGD.* is not one of xpnet's optimizers"):
        ckpt.save_checkpoint(tmp_path / "c.npz", _model(), MySGD(0.1), epoch=0, step=0)
    xpnet.save(_model(), tmp_path / "model.npz")
    with pytest.raises(xio.ModelFormatError) as info:
        ckpt.load_checkpoint(tmp_path / "model.npz", _model())
    assert str(info.value).startswith(f"{tmp_path / 'model.npz'} is a model file (xpnet.save), not a checkpoint")
    _fit(_model(), 1, loss=LOSS, optimizer=Adam(0.01), checkpoint_dir=tmp_path)
    header, arrays = xio.read(tmp_path / "last.npz")
    header = {k: v for k, v in header.items() if k not in ("magic", "format", "xpnet_version", "parameters")}
    xio.write(tmp_path / "no-loss.npz", {**header, "loss": None}, arrays)
    with pytest.raises(ValueError) as info:
        Resume(_model(), tmp_path / "no-loss.npz")
    assert str(info.value) == (f"resume from {tmp_path / 'no-loss.npz'}: the checkpoint names no loss xpnet can "
                               f"rebuild (a custom one?): pass loss=...")


def test_a_schedule_without_a_name_is_kept_under_its_class_name(tmp_path):
    class Plain:
        def __call__(self, t):
            return 0.1

        def get_config(self):
            return {"lr": 0.1}

    ckpt.save_checkpoint(tmp_path / "c.npz", _model(), SGD(0.1), epoch=0, step=0, schedule=Plain())
    assert ckpt.read_checkpoint(tmp_path / "c.npz")[0]["schedule"] == {"name": "Plain", "lr": 0.1}


def test_a_kept_schedule_leaves_the_lr_out_of_the_warning_about_the_rest(tmp_path):
    path = os.fspath(tmp_path / "c.npz")
    ckpt.save_checkpoint(path, _model(), Adam(0.01), epoch=0, step=0, schedule=schedules.Constant(0.01))
    with pytest.warns(UserWarning) as seen:
        ckpt.load_checkpoint(path, _model(), Adam(0.01, beta2=0.9))
    assert [str(w.message) for w in seen] == [f"resume from {path}: the checkpoint's Adam configuration wins over "
                                              f"the one given: beta2=0.999 (given 0.9)"]


def test_a_header_with_an_unknown_loss_or_a_garbled_entry_names_the_path(tmp_path):
    _fit(_model(), 1, loss=LOSS, optimizer=Adam(0.01), checkpoint_dir=tmp_path)
    header, arrays = xio.read(tmp_path / "last.npz")
    header = {k: v for k, v in header.items() if k not in ("magic", "format", "xpnet_version", "parameters")}
    bad = os.fspath(tmp_path / "bad.npz")
    xio.write(bad, {**header, "loss": {"class": "Nope", "config": {}}}, arrays)
    with pytest.raises(xio.ModelFormatError, match="^" + re.escape(f"{bad}: unknown loss 'Nope' in the header")):
        Resume(_model(), bad)
    xio.write(bad, {**header, "checkpoint": [1]}, arrays)
    with pytest.raises(xio.ModelFormatError) as info:
        ckpt.read_checkpoint(bad)
    assert str(info.value) == f"{bad}: garbled checkpoint (its entry is not a dict)"
