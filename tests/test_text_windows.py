"""Language-model data in fit: xpnet.TextWindows, random windows of a token sequence drawn each step from the
model's generator; fit by steps (steps_per_epoch), evaluation over fixed windows, checkpoints and exact resume,
Threads and MPI ranks; on a bigram model (tests/lm_tiny.py) over a small corpus."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import xpnet
from xpnet import to_numpy
from xpnet.train.sources import EVAL_BATCHES, TextWindows, Windows

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lm_tiny import Bigram, corpus  # noqa: E402

V, T, B = 7, 8, 5
IDS = corpus(V, 600)
TRAIN, VAL = IDS[:540], IDS[540:]


def bigram(dev=None, seed=0, dtype="float32", record=False):
    layer = Bigram(V)
    if record:
        layer.seen = []
    return xpnet.Sequential([layer], device=dev or "cpu", seed=seed, dtype=dtype)


def fit(model, source=None, **kwargs):
    settings = dict(loss="softmax_cross_entropy", optimizer=xpnet.Adam(0.05), batch_size=B, epochs=2,
                    steps_per_epoch=6, verbose=0, check_every=4)
    return model.fit(source or TextWindows(TRAIN, T), **{**settings, **kwargs})


def windows_at(ids, starts):
    return (np.stack([ids[s:s + T] for s in starts]).astype(np.int64),
            np.stack([ids[s + 1:s + T + 1] for s in starts]).astype(np.int64))


# -- the windows -------------------------------------------------------------------------------------------
def test_a_step_gathers_the_windows_at_the_starts_drawn_from_the_generator(dev):
    """On every backend: the epoch's plan is the host generator's draws, and a step's (X, Y) (a rank's share
    too) are ids[s:s+T] and ids[s+1:s+T+1] at those starts, int64 on the model's device."""
    data = Windows(TextWindows(TRAIN, T), dev, steps=3, batch_size=B)
    plan = data.epoch(np.random.default_rng(3))
    starts = np.random.default_rng(3).integers(0, len(TRAIN) - T, size=(3, B))
    np.testing.assert_array_equal(to_numpy(plan), starts)
    for step, (lo, hi) in [(0, (0, B)), (2, (1, 4))]:
        X, Y = data.batch(plan, step, lo, hi)
        want_X, want_Y = windows_at(TRAIN, starts[step, lo:hi])
        for got, want in ((X, want_X), (Y, want_Y)):
            assert xpnet.device_of(got) == dev and got.dtype == dev.dtype("int64")
            np.testing.assert_array_equal(to_numpy(got), want)


def test_starts_cover_every_window_and_never_run_past_the_end():
    """Starts are uniform over 0 .. len - T - 1 (nanoGPT's randint(len(data) - block_size)): the last window's
    target is the last id, and no window reads past it."""
    ids = np.arange(T + 3, dtype=np.uint16)  # 3 windows
    data = Windows(TextWindows(ids, T), xpnet.device("cpu"), steps=200, batch_size=4)
    plan = to_numpy(data.epoch(np.random.default_rng(0)))
    assert sorted(set(plan.ravel().tolist())) == [0, 1, 2]
    X, Y = data.batch(data.dev.asarray(np.array([[2]]), "int64"), 0, 0, 1)
    assert to_numpy(Y)[0, -1] == ids[-1] and to_numpy(X)[0, 0] == 2


def test_fit_draws_each_epochs_windows_from_the_models_generator():
    """The same seed gives the same windows; they are model.rng's draws after the weights' (so a checkpoint's
    generator state resumes them), one (steps, batch) block per epoch."""
    runs = []
    for seed in (0, 0, 1):
        model = bigram(seed=seed, record=True)
        fit(model)
        runs.append(np.stack(model.layers[0].seen))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    rng = np.random.default_rng(0)
    rng.normal(0.0, 0.5, (V, V))  # what build drew
    starts = np.concatenate([rng.integers(0, len(TRAIN) - T, size=(6, B)) for _ in range(2)])
    np.testing.assert_array_equal(runs[0], np.stack([windows_at(TRAIN, s)[0] for s in starts]))


def test_every_backend_trains_on_the_same_windows_to_the_same_losses(dev):
    ref, model = bigram(record=True), bigram(dev, record=True)
    want, got = fit(ref).history, fit(model).history
    np.testing.assert_array_equal(np.stack(model.layers[0].seen), np.stack(ref.layers[0].seen))
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
    np.testing.assert_allclose(to_numpy(model.parameters()["0.W"]), to_numpy(ref.parameters()["0.W"]), atol=1e-5)
    assert got["loss"][-1] < 0.8 * np.log(V)  # it learns the chain


def test_an_epoch_is_steps_per_epoch_steps_and_the_schedule_runs_per_step():
    model = bigram()
    lrs = []
    cb = xpnet.LambdaCallback(lambda epoch, logs: lrs.append(logs["lr"]))
    h = fit(model, epochs=3, steps_per_epoch=4, schedule=xpnet.schedules.CosineDecay(per="step"), callbacks=[cb])
    assert len(h.history["loss"]) == 3
    want = [xpnet.schedules.CosineDecay(per="step").bind(lr=0.05, total=12)(4 * e + 3) for e in range(3)]
    np.testing.assert_allclose(lrs, want)


# -- evaluation ----------------------------------------------------------------------------------------------
def test_validation_windows_are_fixed_and_leave_the_training_windows_alone():
    """validation_data=TextWindows(...) is evaluated on the same validation_steps x batch_size windows at every
    epoch (drawn from its own seed): the last val_loss is model.evaluate's on them; and a fit with validation
    trains on exactly the windows of one without (the evaluation draws nothing from the model's generator)."""
    plain, checked = bigram(), bigram()
    fit(plain)
    h = fit(checked, validation_data=TextWindows(VAL, T), validation_steps=3)
    np.testing.assert_array_equal(to_numpy(checked.parameters()["0.W"]), to_numpy(plain.parameters()["0.W"]))
    again = checked.evaluate(TextWindows(VAL, T), batch_size=B, steps=3)
    assert again == checked.evaluate(TextWindows(VAL, T), batch_size=B, steps=3)
    assert h.history["val_loss"][-1] == pytest.approx(again["loss"], rel=1e-6)
    # the windows are the seed's, and the loss is the mean over their positions
    X, Y = windows_at(VAL, np.random.default_rng(0).integers(0, len(VAL) - T, size=3 * B))
    logits = to_numpy(checked.forward(checked.device.asarray(X, "int64")))
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = -np.take_along_axis(logp, Y[..., None], -1).mean()
    assert again["loss"] == pytest.approx(want, rel=1e-5)
    other_seed = checked.evaluate(TextWindows(VAL, T, seed=1), batch_size=B, steps=3)
    assert other_seed["loss"] != again["loss"]


def test_evaluate_train_reports_the_training_windows_and_the_default_is_20_batches():
    model = bigram()
    h = fit(model, validation_data=TextWindows(VAL, T), evaluate_train=True, metrics=["accuracy"])
    assert {"loss", "accuracy", "train_loss", "train_accuracy", "val_loss", "val_accuracy"} <= set(h.history)
    assert "accuracy" not in fit(bigram()).history  # no metric unless asked, for a source
    train = model.evaluate(TextWindows(TRAIN, T), batch_size=B, metrics=["accuracy"])
    assert h.history["train_loss"][-1] == pytest.approx(train["loss"], rel=1e-6)
    assert h.history["train_accuracy"][-1] == pytest.approx(train["accuracy"])
    assert EVAL_BATCHES == 20
    assert train == model.evaluate(TextWindows(TRAIN, T), batch_size=B, steps=20, metrics=["accuracy"])
    assert train != model.evaluate(TextWindows(TRAIN, T), batch_size=B, steps=19, metrics=["accuracy"])


def test_the_lines_off_a_terminal_show_steps_and_both_losses(capsys, monkeypatch):
    """The epoch line shows the training windows' loss beside the validation loss; off a terminal the progress
    line counts an epoch's steps and windows (its "samples")."""
    from xpnet.callbacks import progress

    monkeypatch.setattr(progress.ProgressBar, "interval", 0.0)
    h = fit(bigram(), verbose=1, validation_data=TextWindows(VAL, T), evaluate_train=True)
    out, err = capsys.readouterr()
    first = out.splitlines()[0]
    assert first.startswith(f"epoch 1/2  loss {h.history['loss'][0]:.4f}  train loss {h.history['train_loss'][0]:.4f}"
                            f"  val loss {h.history['val_loss'][0]:.4f}  ")
    assert "epoch 1/2  step 4/6  loss " in err and "samples/s" in err


def test_accuracy_is_the_fraction_of_positions_predicted_right():
    model = bigram()
    fit(model)
    got = model.evaluate(TextWindows(VAL, T), batch_size=B, steps=2, metrics=["accuracy", "top_2_accuracy"])
    X, Y = windows_at(VAL, np.random.default_rng(0).integers(0, len(VAL) - T, size=2 * B))
    logits = to_numpy(model.forward(model.device.asarray(X, "int64")))
    assert got["accuracy"] == pytest.approx((logits.argmax(-1) == Y).mean())
    above = (logits > np.take_along_axis(logits, Y[..., None], -1)).sum(-1)
    assert got["top_2_accuracy"] == pytest.approx((above < 2).mean())
    assert 0.0 < got["accuracy"] < got["top_2_accuracy"] < 1.0


# -- checkpoints and resume ----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "array-api-strict"])
def test_a_run_stopped_and_resumed_equals_an_uninterrupted_one_bit_for_bit(tmp_path, backend):
    """A run of 4 epochs stopped after 2 (its checkpoint written), resumed: the same windows, losses, evaluations,
    learning rates and weights as 4 at once."""
    pytest.importorskip(backend.replace("-", "_"))
    dev = xpnet.device("cpu", backend=backend)
    def kwargs():
        return dict(validation_data=TextWindows(VAL, T), evaluate_train=True,
                    schedule=xpnet.schedules.CosineDecay(warmup=3, per="step"))

    full = bigram(dev, record=True)
    want = fit(full, epochs=4, **kwargs()).history
    first = bigram(dev, record=True)
    stop = xpnet.LambdaCallback(lambda epoch, logs: epoch == 1)  # as if killed after epoch 2's checkpoint
    fit(first, epochs=4, checkpoint_dir=tmp_path, callbacks=[stop], **kwargs())
    resumed = bigram(dev, seed=7, record=True)
    got = fit(resumed, epochs=4, resume_from=tmp_path / "last.npz", optimizer=None, **kwargs()).history
    for key in ("loss", "train_loss", "val_loss", "lr"):
        assert got[key] == want[key], key
    np.testing.assert_array_equal(np.stack(first.layers[0].seen + resumed.layers[0].seen),
                                  np.stack(full.layers[0].seen))
    np.testing.assert_array_equal(to_numpy(resumed.parameters()["0.W"]), to_numpy(full.parameters()["0.W"]))


def test_the_checkpoint_keeps_the_texts_length_block_size_and_fingerprint(tmp_path, recwarn):
    fit(bigram(), checkpoint_dir=tmp_path)
    run = xpnet.load_checkpoint(tmp_path / "last.npz", bigram()).run
    assert (run["rows"], run["block_size"], run["steps_per_epoch"], run["batch_size"]) == (len(TRAIN), T, 6, B)
    other = TRAIN.copy()
    other[::7] = (other[::7] + 1) % V  # as long, other ids (at some of the 32 fingerprinted places)
    for source, said in [(TextWindows(other, T), f"the ids differ from the checkpoint's (as many, {len(TRAIN)}"),
                         (TextWindows(TRAIN, T + 1), f"block_size {T + 1}, the checkpoint's windows had {T}"),
                         (TextWindows(TRAIN[:-1], T), f"the data has {len(TRAIN) - 1} ids, the checkpoint was "
                                                      f"trained on {len(TRAIN)}")]:
        with pytest.warns(UserWarning, match="resume from") as seen:
            fit(bigram(), source, epochs=3, resume_from=tmp_path / "last.npz", optimizer=None)
        assert any(said in str(w.message) for w in seen), [str(w.message) for w in seen]
    fit(bigram(), epochs=3, resume_from=tmp_path / "last.npz", optimizer=None)  # the same text: nothing said
    assert not [w for w in recwarn if "resume from" in str(w.message)]


def test_the_vocabulary_travels_with_the_saved_model_as_json(tmp_path):
    """What `xpnet generate` needs to decode: model.metadata["vocabulary"] survives save and load."""
    from xpnet.datasets import Vocabulary

    vocab = Vocabulary("abcdefg")
    model = bigram()
    fit(model)
    model.metadata["vocabulary"] = vocab.get_config()
    model.save(tmp_path / "lm.npz")
    loaded = xpnet.load(tmp_path / "lm.npz")
    assert Vocabulary.from_config(loaded.metadata["vocabulary"]) == vocab
    np.testing.assert_array_equal(to_numpy(loaded.parameters()["0.W"]), to_numpy(model.parameters()["0.W"]))


# -- data parallel -------------------------------------------------------------------------------------------
def test_threads_split_each_batch_of_windows_and_equal_one_process():
    """Every rank draws the same global batch of starts and takes its share (3 + 2 of 5 windows): the weights
    equal one process's to float64 rounding."""
    one, two = bigram(dtype="float64"), bigram(dtype="float64")
    want = fit(one, validation_data=TextWindows(VAL, T)).history
    got = fit(two, validation_data=TextWindows(VAL, T), distributed=xpnet.distributed.Threads(2)).history
    np.testing.assert_allclose(to_numpy(two.parameters()["0.W"]), to_numpy(one.parameters()["0.W"]), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-10)
    np.testing.assert_allclose(got["val_loss"], want["val_loss"], rtol=1e-10)


def test_two_mpi_ranks_equal_one_process(tmp_path):
    """Under mpiexec -n 2 (tests/mpi_worker.py "windows"; rank 1 starts from another seed and gets rank 0's
    weights and generator): the weights, the losses and the fixed-window validation of one process."""
    import test_distributed as mpi

    if mpi._why_no_mpi():
        pytest.skip(mpi._why_no_mpi())
    out = tmp_path / "windows.npz"
    mpi.run_mpi(mpi.WORKER, "windows", str(out), "float64")
    got, checks = mpi.load(out)
    model = bigram(dtype="float64")
    want = fit(model, validation_data=TextWindows(VAL, T)).history
    assert checks["windows"]["agree"]
    np.testing.assert_allclose(got["0.W"], to_numpy(model.parameters()["0.W"]), rtol=1e-10, atol=1e-12)
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(checks["windows"]["history"][key], want[key], rtol=1e-10)


# -- what fit refuses ----------------------------------------------------------------------------------------
MISUSE = {
    "y-given": (dict(y=np.zeros(3, np.int64)), "gives the targets itself (each position's next id); leave y out"),
    "shuffle-off": (dict(shuffle=False), "shuffle does not apply to a TextWindows source"),
    "validation-split": (dict(validation_split=0.1), "Pass validation_data=TextWindows(val_ids, block_size)"),
    "no-steps": (dict(steps_per_epoch=None), "say how many steps an epoch has: steps_per_epoch=250"),
    "bad-evaluate-train": (dict(evaluate_train="yes"), "evaluate_train must be True or False, got 'yes'"),
    "bad-validation-steps": (dict(validation_data=TextWindows(VAL, T), validation_steps=0),
                             "fit: validation_steps must be an int >= 1, got 0"),
    "bad-validation-steps-train": (dict(evaluate_train=True, validation_steps=-1),
                                   "fit: validation_steps must be an int >= 1, got -1"),
}


@pytest.mark.parametrize("case", list(MISUSE))
def test_misuse_of_a_source_says_what_and_the_fix(case):
    kwargs, message = MISUSE[case]
    model = bigram()
    before = to_numpy(model.parameters()["0.W"]).copy()
    with pytest.raises(ValueError) as err:
        fit(model, **kwargs)
    assert message in str(err.value)
    np.testing.assert_array_equal(to_numpy(model.parameters()["0.W"]), before)


def test_arrays_refuse_the_source_only_arguments():
    X, y = np.zeros((4, 3), np.float32), np.zeros(4, np.int64)
    model = xpnet.Sequential([xpnet.Dense(3, 2)], seed=0)
    with pytest.raises(ValueError, match="an epoch is one pass over the rows: leave steps_per_epoch out"):
        model.fit(X, y, loss="softmax_cross_entropy", steps_per_epoch=3, verbose=0)
    with pytest.raises(ValueError, match="array validation data is evaluated whole: leave validation_steps out"):
        model.fit(X, y, loss="softmax_cross_entropy", validation_data=(X, y), validation_steps=3, verbose=0)
    with pytest.raises(ValueError, match="arrays are evaluated whole: leave steps out"):
        model.evaluate(X, y, loss="softmax_cross_entropy", steps=2)


@pytest.mark.parametrize("ids, block_size, message", [
    (np.arange(8), 8, "block_size 8 needs at least 9 ids (a window and the id after it), got 8: use a smaller "
                      "block_size or more text"),
    (np.arange(8), 0, "TextWindows: block_size must be an int >= 1, got 0"),
    (np.zeros((4, 4), np.int64), 2, "ids must be a 1-D array of integer token ids"),
    (np.linspace(0, 1, 10), 2, "ids must be a 1-D array of integer token ids (load_text gives them), got shape "
                               "(10,) of float64"),
    (np.array([0, 1, -1, 2]), 2, "token ids must not be negative, got -1"),
])
def test_a_source_refuses_what_cannot_make_windows(ids, block_size, message):
    with pytest.raises(ValueError) as err:
        TextWindows(ids, block_size)
    assert message in str(err.value)


def test_a_model_too_small_for_the_ids_or_not_taking_windows_is_refused():
    with pytest.raises(ValueError, match=r"the ids go up to 6, but the model gives 5 values per position: build it "
                                         r"for the vocabulary, vocab_size=7 or more"):
        fit(xpnet.Sequential([Bigram(5)], seed=0))
    with pytest.raises(ValueError, match=r"does not take TextWindows' ids of shape \(batch, 8\): layer 0"):
        fit(xpnet.Sequential([xpnet.Dense(4, 7)], seed=0))
    with pytest.raises(ValueError, match=r"whose output is \(batch, 8, vocabulary size\); this model's is "
                                         r"\(None, 3\)"):
        fit(xpnet.Sequential([xpnet.Dense(8, 3)], seed=0))


# -- a step's cost ------------------------------------------------------------------------------------------
def test_a_steps_operations_do_not_grow_with_batch_or_block_and_nothing_is_read_back():
    """Gathering a batch, the bigram's forward, the loss and its backward: the same operations at (B, T) =
    (2, 4) and (16, 32), and no host read-back (the plan is on the device)."""
    pytest.importorskip("array_api_strict")
    import opcount

    dev = xpnet.device("cpu", backend="array-api-strict")
    counts = []
    for batch, block in [(2, 4), (16, 32)]:
        model = bigram(dev)
        data = Windows(TextWindows(TRAIN, block), dev, steps=2, batch_size=batch)
        plan, loss = data.epoch(np.random.default_rng(0)), xpnet.SoftmaxCrossEntropy()
        with opcount.counting() as tally:
            X, Y = data.batch(plan, 1, 0, batch)
            loss.forward(model.forward(X, training=True), Y)
            model.backward(loss.backward())
        assert tally.syncs == []
        counts.append(tally.ops)
    assert counts[0] == counts[1]
