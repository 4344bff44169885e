"""Checkpoints resume exactly: a run stopped after epoch k and resumed ends with the weights, optimizer
state and history of the run that never stopped, bit for bit, on every backend here (NumPy,
array-api-strict on two devices, PyTorch and JAX on the CPU: the same operations in the same order, on
the same bits). Also: the optimizers' state round trip, the policy when fit's optimizer or loss differs
from the checkpoint's, the errors for missing or damaged files, and a training process killed with
SIGKILL mid-epoch and resumed in another process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import xpnet
from xpnet import SGD, Adam, AdamW, Dense, Layer, ModelFormatError, ReLU, RMSprop, Sequential, Tanh, to_numpy
from xpnet import checkpoint as ckpt
from xpnet import schedules
from xpnet import io as xio
from xpnet.layers import LAYERS

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
    with pytest.warns(UserWarning, match="has done 3 epochs, more than epochs=2"):
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
    assert ckpt.resumed_schedule(found, mine) is mine  # the one given to the resumed fit goes on


def test_a_resumed_run_keeps_the_checkpoints_schedule(tmp_path):
    """After a resume the optimizer's lr is the schedule's last value, not its base: the checkpoint's schedule
    (base lr filled in) is the one to go on with; a given one that says otherwise loses, with a warning."""
    saved = schedules.ExponentialDecay(0.2, gamma=0.5, per="step")
    ckpt.save_checkpoint(tmp_path / "c.npz", _model(), SGD(0.1), epoch=1, step=0, schedule=saved)
    found = ckpt.load_checkpoint(tmp_path / "c.npz", _model())
    assert ckpt.resumed_schedule(found, None) is found.schedule
    unset = schedules.ExponentialDecay(gamma=0.5, per="step")  # lr=None: "the optimizer's", not compared
    assert ckpt.resumed_schedule(found, unset) is found.schedule
    with pytest.warns(UserWarning, match=r"checkpoint's learning-rate schedule.*lr=0\.2 \(given 0\.5\)"):
        assert ckpt.resumed_schedule(found, schedules.ExponentialDecay(0.5, gamma=0.5, per="step")) is found.schedule
    with pytest.warns(UserWarning, match=r"per='step' \(given 'epoch'\)"):
        ckpt.resumed_schedule(found, "exponential")  # a name goes through xpnet.schedules.get
    found.schedule = None  # a checkpoint without one: the given schedule starts now
    mine = schedules.Constant(0.3)
    assert ckpt.resumed_schedule(found, mine) is mine


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
    from xpnet import BatchNorm1d, Dropout, schedules

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
