"""Resuming, the second hour (issue 23): a run resumed with more epochs stretches its schedule and says so,
other data or another batch size is named, a finished run says there is nothing to do and still reports
its test figures, Ctrl-C prints the checkpoint and the exact command that goes on, and a checkpoint folder
that cannot be written is named with its cause before any training."""

from __future__ import annotations

import errno
import re
import shlex
import tempfile

import numpy as np
import pytest

import xpnet
from xpnet import Adam, Dense, Sequential, Tanh, schedules
from xpnet import checkpoint as ckpt
from xpnet import io as xio
from xpnet.cli.resume import resume_command
from conftest import run_main
from xpnet.train import resume as resume_mod

LOSS = "softmax_cross_entropy"
SPIRALS = ("train", "--dataset", "spirals", "--device", "cpu", "--layers", "2,16,3", "--batch-size", "64")
pytestmark = pytest.mark.usefixtures("cli_environment")


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype("float32")
    return X, (X[:, 0] - X[:, 1] + 0.3 * X[:, 2] > 0).astype("int64")


def _model(dev="cpu", seed=0):
    return Sequential([Dense(6, 8), Tanh(), Dense(8, 2)], device=dev, seed=seed)


def _fit(model, epochs, data=None, **kwargs):
    X, y = _data() if data is None else data
    kwargs.setdefault("batch_size", 16)  # 13 steps an epoch
    return model.fit(X, y, epochs=epochs, verbose=0, **kwargs)


def _cosine_run(tmp_path, epochs=4, **kwargs):
    """A per-step cosine run (its total filled in by fit: epochs * 13 steps), checkpointed every epoch."""
    return _fit(_model(), epochs, loss=LOSS, optimizer=Adam(0.01), schedule=schedules.CosineDecay(per="step"),
                checkpoint_dir=tmp_path, **kwargs)


def _without_run(tmp_path):
    """``tmp_path/last.npz`` as an older xpnet wrote it: no "run" entry."""
    header, arrays = xio.read(tmp_path / "last.npz")
    del header["checkpoint"]["run"]
    header = {k: v for k, v in header.items() if k not in ("magic", "format", "xpnet_version", "parameters")}
    xio.write(tmp_path / "old.npz", header, arrays)
    return tmp_path / "old.npz"


def _messages(record, text):
    return [str(w.message) for w in record if text in str(w.message)]


# -- item 3: more epochs stretch the schedule, in words -------------------------------------------------
def test_a_cosine_run_resumed_with_more_epochs_is_stretched_and_says_so(tmp_path):
    _cosine_run(tmp_path)
    assert ckpt.read_checkpoint(tmp_path / "last.npz")[0]["schedule"]["total"] == 52
    with pytest.warns(UserWarning) as record:
        history = _fit(_model(), 5, resume_from=tmp_path / "last.npz", checkpoint_dir=tmp_path)
    said = _messages(record, "schedule now spans")
    assert len(said) == 1, said
    stretched = schedules.CosineDecay(0.01, total=65, per="step")
    assert said[0] == (f"resume: the cosine schedule now spans 5 epochs (65 steps) instead of 4 (52 steps); the "
                       f"learning rate at step 52 becomes {stretched(52):.3g} (was 0)")
    assert history["lr"][4] == stretched(64) > 0  # the 5th epoch's last step: not the old schedule's 0
    assert ckpt.read_checkpoint(tmp_path / "last.npz")[0]["schedule"]["total"] == 65


def test_a_resume_that_changes_nothing_is_silent_and_exact(tmp_path, recwarn):
    whole = _model()
    expected = _fit(whole, 4, loss=LOSS, optimizer=Adam(0.01), schedule=schedules.CosineDecay(per="step"))
    _cosine_run(tmp_path, callbacks=[lambda epoch, logs: epoch == 1])  # stopped after 2 of 4
    resumed = _model(seed=7)
    history = _fit(resumed, 4, resume_from=tmp_path / "last.npz")
    assert not _messages(recwarn, "resume")
    assert history["lr"] == expected["lr"]
    for k, v in whole.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v, err_msg=k)


def test_the_command_lines_schedule_is_stretched_when_resumed_with_more_epochs(capsys, tmp_path):
    run = tmp_path / "run"
    code, _, err = run_main(capsys, *SPIRALS, "--epochs", "2", "--checkpoint-dir", str(run))
    assert code == 0, err
    code, _, err = run_main(capsys, *SPIRALS, "--epochs", "3", "--checkpoint-dir", str(run), "--resume",
                            str(run / "last.npz"))
    assert code == 0, err
    # the command prints warnings as its own lines
    assert "xpnet: warning: resume: the cosine schedule now spans 3 epochs (12 steps) instead of 2 (8 steps)" in err
    entry = ckpt.read_checkpoint(run / "last.npz")[0]
    assert entry["schedule"]["total"] == 12 and entry["history"]["lr"][2] > 0


def test_an_older_checkpoint_keeps_its_schedule_and_says_where_it_ends(tmp_path):
    _cosine_run(tmp_path, epochs=2)
    with pytest.warns(UserWarning, match=r"does not say how long its run was .* keeps its 26 steps, but this run has "
                                         r"39: from step 26 on the learning rate stays at min_lr 0"):
        history = _fit(_model(), 3, resume_from=_without_run(tmp_path))
    assert history["lr"][2] == 0.0


def test_a_checkpoint_whose_schedule_ended_at_lr_0_resumes(tmp_path):
    """Under a cosine that ended before the run (total=5 steps of 13), the optimizer's lr saved is 0, which no
    optimizer takes: the checkpoint is rebuilt with the schedule's base lr, which sets the rate anyway."""
    whole = _model()
    _fit(whole, 2, loss=LOSS, optimizer=Adam(0.01), schedule=schedules.CosineDecay(total=5, per="step"))
    _fit(_model(), 2, loss=LOSS, optimizer=Adam(0.01), schedule=schedules.CosineDecay(total=5, per="step"),
         checkpoint_dir=tmp_path, callbacks=[lambda epoch, logs: True])
    assert ckpt.read_checkpoint(tmp_path / "last.npz")[0]["optimizer"]["config"]["lr"] == 0.0
    resumed = _model()
    _fit(resumed, 2, resume_from=tmp_path / "last.npz")
    for k, v in whole.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v, err_msg=k)


# -- item 4: what the checkpoint was trained on ---------------------------------------------------------
def _first_epoch(tmp_path):
    _fit(_model(), 2, loss=LOSS, optimizer=Adam(0.01), checkpoint_dir=tmp_path, callbacks=[lambda e, logs: True])
    return tmp_path / "last.npz"


@pytest.mark.parametrize("data, batch_size, said", [
    (_data(100), 16, "the data has 100 rows, the checkpoint was trained on 200"),
    (_data(seed=1), 16, "the rows differ from the checkpoint's (as many, 200, but another fingerprint"),
    (tuple(a[::-1] for a in _data()), 16, "the rows differ from the checkpoint's"),  # the same rows, reversed
    (_data(), 32, "batch_size 32, the checkpoint used 16"),
    (_data(100), 32, "the data has 100 rows, the checkpoint was trained on 200; batch_size 32, the checkpoint "
                     "used 16. Training goes on from epoch 2"),
], ids=["fewer-rows", "other-rows", "another-order", "batch-size", "both"])
def test_a_resume_on_other_data_or_another_batch_size_names_what_changed(tmp_path, data, batch_size, said):
    path = _first_epoch(tmp_path)
    with pytest.warns(UserWarning) as record:
        _fit(_model(), 2, data=data, batch_size=batch_size, resume_from=path)
    found = _messages(record, f"resume from {path}: ")
    assert len(found) == 1 and said in found[0], found


def test_the_same_data_on_another_backend_has_the_same_fingerprint(dev, tmp_path, recwarn):
    path = _first_epoch(tmp_path)
    X, y = _data()
    _fit(_model(dev), 2, data=(dev.asarray(X), dev.asarray(y, "int64")), resume_from=path)
    assert not _messages(recwarn, "resume from")


def test_the_fingerprint_reads_back_a_few_rows_not_the_data(monkeypatch):
    seen = []
    to_numpy = xpnet.backend.to_numpy
    monkeypatch.setattr(xpnet.backend, "to_numpy", lambda a: seen.append(a.shape[0]) or to_numpy(a))
    dev = xpnet.device("cpu")
    X, y = _data(5000)
    before = resume_mod.fingerprint(dev, dev.asarray(X), dev.asarray(y, "int64"))
    assert seen and max(seen) <= resume_mod.FINGERPRINT_ROWS
    X[-1, 0] += 1.0  # the last row is always among those read
    assert resume_mod.fingerprint(dev, dev.asarray(X), dev.asarray(y, "int64")) != before


@pytest.mark.parametrize("n, value", [(1, "6ec0cf90d5e2ac7d"), (20, "f9c0d47259628df7"), (45, "9268647ae3ba3fb2"),
                                      (1000, "48f080a6dba0309b")])
def test_the_fingerprint_keeps_its_value(dev, n, value):
    """The values xpnet wrote into checkpoints before (rows picked by NumPy's linspace): a change to the rows
    read or to the bytes hashed would make every earlier checkpoint's data look different."""
    X = np.arange(n * 3, dtype="float32").reshape(n, 3)
    assert resume_mod.fingerprint(dev, dev.asarray(X), dev.asarray(np.arange(n) % 7, "int64")) == value


def test_an_older_checkpoint_without_the_runs_data_resumes_silently(tmp_path, recwarn):
    _first_epoch(tmp_path)
    _fit(_model(), 2, data=_data(100), batch_size=32, resume_from=_without_run(tmp_path))
    assert not _messages(recwarn, "resume")


# -- item 5: a finished run has nothing to do, and says so -----------------------------------------------
def test_a_finished_run_resumed_says_nothing_to_do(tmp_path, capsys):
    _fit(_model(), 2, loss=LOSS, optimizer=Adam(0.01), checkpoint_dir=tmp_path)
    capsys.readouterr()
    _fit(_model(), 2, resume_from=tmp_path / "last.npz")  # verbose=0: silent
    assert capsys.readouterr().out == ""
    _model().fit(*_data(), epochs=2, batch_size=16, resume_from=tmp_path / "last.npz", verbose=1)
    assert capsys.readouterr().out == (f"nothing to do: the checkpoint {tmp_path / 'last.npz'} already has 2 of 2 "
                                       f"epochs (epochs counts them all: pass epochs=3 or more to train on)\n")


def test_the_command_line_resuming_a_finished_run_still_reports_the_test_set(capsys, tmp_path):
    run = tmp_path / "run"
    code, first, err = run_main(capsys, *SPIRALS, "--epochs", "2", "--checkpoint-dir", str(run))
    assert code == 0, err
    code, out, err = run_main(capsys, *SPIRALS, "--epochs", "2", "--resume", str(run / "last.npz"))
    assert code == 0, err
    assert f"nothing to do: the checkpoint {run / 'last.npz'} already has 2 of 2 epochs" in out
    loss, acc = re.search(r"epoch 2/2 .* test loss ([\d.]+)  test acc ([\d.]+)", first).groups()
    assert f"\ntest loss {loss}  accuracy {acc}\n" in out
    assert not re.search(r"^epoch \d", out, re.M)


# -- Ctrl-C: where the checkpoint is and the exact command that goes on ----------------------------------
@pytest.fixture
def interrupt_in_epoch(monkeypatch):
    """Ctrl-C at the end of epoch ``k`` (1-based), before its checkpoint is written (``monkeypatch.undo()``
    disarms it)."""
    line = xpnet.callbacks.EpochLine.on_epoch_end

    def arm(k):
        def interrupted(self, epoch, logs=None):
            line(self, epoch, logs)
            if epoch + 1 == k:
                raise KeyboardInterrupt
        monkeypatch.setattr(xpnet.callbacks.EpochLine, "on_epoch_end", interrupted)
    return arm


def test_ctrl_c_prints_the_checkpoint_and_the_command_that_resumes(capsys, tmp_path, interrupt_in_epoch, monkeypatch):
    code, _, err = run_main(capsys, *SPIRALS, "--epochs", "4", "--save", str(tmp_path / "whole.npz"))
    assert code == 0, err
    run = tmp_path / "run"
    interrupt_in_epoch(3)
    code, _, err = run_main(capsys, *SPIRALS, "--epochs", "4", "--checkpoint-dir", str(run), "--save",
                            str(tmp_path / "resumed.npz"))
    assert code == 130
    found = re.fullmatch(r"xpnet: interrupted in epoch 3 of 4; the last checkpoint \(epoch 2 of 4\) is (\S+); "
                         r"go on with: (.*)\n", err)
    assert found and found[1] == str(run / "last.npz"), err
    command = shlex.split(found[2])
    assert command[0] == "xpnet" and command[-2:] == ["--resume", str(run / "last.npz")]
    monkeypatch.undo()
    code, out, err = run_main(capsys, *command[1:])
    assert code == 0, err
    assert "epoch 3/4" in out and "epoch 1/4" not in out
    whole, resumed = xpnet.load(tmp_path / "whole.npz", "cpu"), xpnet.load(tmp_path / "resumed.npz", "cpu")
    for k, v in whole.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v, err_msg=k)


@pytest.mark.parametrize("k, extra, said", [
    (3, (), "interrupted in epoch 3 of 4; the 2 finished epochs are lost: pass --checkpoint-dir DIR to be able to "
            "resume"),
    (1, (), "interrupted in epoch 1 of 4; no epoch had finished: pass --checkpoint-dir DIR to be able to resume"),
    (1, ("--checkpoint-dir", "{tmp}/new"), "interrupted in epoch 1 of 4, before the first checkpoint was written to "
                                           "{tmp}/new/last.npz: nothing to resume from"),
], ids=["lost", "none-finished", "no-checkpoint-yet"])
def test_ctrl_c_without_a_checkpoint_says_what_is_lost(capsys, tmp_path, interrupt_in_epoch, k, extra, said):
    interrupt_in_epoch(k)
    code, _, err = run_main(capsys, *SPIRALS, "--epochs", "4", *(a.format(tmp=tmp_path) for a in extra))
    assert code == 130 and err == f"xpnet: {said.format(tmp=tmp_path)}\n", err


def test_ctrl_c_of_a_resumed_run_without_a_checkpoint_dir_names_both(capsys, tmp_path, interrupt_in_epoch):
    run = tmp_path / "run"
    code, _, err = run_main(capsys, *SPIRALS, "--epochs", "1", "--checkpoint-dir", str(run))
    assert code == 0, err
    interrupt_in_epoch(4)
    code, _, err = run_main(capsys, *SPIRALS, "--epochs", "4", "--resume", str(run / "last.npz"))
    assert code == 130
    assert "xpnet: warning: resume: the cosine schedule now spans 4 epochs" in err
    path = run / "last.npz"
    assert (f"interrupted in epoch 4 of 4; the 2 epochs finished since {path} are lost (no --checkpoint-dir); the "
            f"last checkpoint (epoch 1 of 4) is {path}; go on with: xpnet train") in err


@pytest.mark.parametrize("given", [["--resume", "old.npz"], ["--resume=old.npz"], ["--res", "old.npz"], []])
def test_the_resume_command_replaces_any_spelling_of_resume(given):
    argv = ["train", "--epochs", "5", *given, "--save", "m 1.npz"]
    assert resume_command(argv, "run/last.npz") == ("xpnet train --epochs 5 --save 'm 1.npz' --resume "
                                                    "run/last.npz")


# -- a checkpoint folder that cannot be written ----------------------------------------------------------
def _read_only(*args, **kwargs):
    raise OSError(errno.EROFS, "Read-only file system", "somewhere")


@pytest.mark.parametrize("where", ["makedirs", "probe"])
def test_a_read_only_checkpoint_dir_is_named_with_its_cause_before_training(tmp_path, monkeypatch, where):
    if where == "makedirs":  # the folder is to be made on a read-only disk
        monkeypatch.setattr(ckpt.os, "makedirs", _read_only)
    else:  # it exists, but its disk is read-only
        monkeypatch.setattr(tempfile, "mkstemp", _read_only)
    model = _model()
    before = model.state_dict()
    with pytest.raises(OSError) as caught:
        _fit(model, 1, loss=LOSS, optimizer=Adam(0.01), checkpoint_dir=tmp_path / "ro")
    assert caught.value.errno == errno.EROFS and "Errno" not in str(caught.value)
    assert str(caught.value) == (f"checkpoint_dir {str(tmp_path / 'ro')!r} cannot be written (it is on a read-only "
                                 f"file system), so fit could save no checkpoint; nothing was trained. Give a folder "
                                 f"you can write to (checkpoint_dir=..., --checkpoint-dir DIR on the command line)")
    for k, v in before.items():
        np.testing.assert_array_equal(model.state_dict()[k], v, err_msg=k)


def test_the_command_line_names_a_read_only_checkpoint_dir_in_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "mkstemp", _read_only)
    code, out, err = run_main(capsys, *SPIRALS, "--checkpoint-dir", str(tmp_path))
    assert code == 1 and "epoch " not in out
    assert err.startswith(f"xpnet: error: checkpoint_dir {str(tmp_path)!r} cannot be written (it is on a read-only "
                          f"file system)") and "Errno" not in err
