"""The whole GPT (xpnet.models.gpt): its layout and initialization, its gradients and first training steps against
the PyTorch reference of tests/torch_gpt.py, the tied embedding seen once by everything that handles parameters,
generate, and the rest of xpnet (save/load, checkpoints, data parallel, ONNX) on it; at tiny sizes."""

from __future__ import annotations

import copy
import math
import os
import sys

import numpy as np
import pytest

import xpnet
from xpnet import TextWindows, TiedDense, models, to_numpy
from xpnet.cli.gpt import gpt_optimizer, gpt_schedule

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lm_tiny import corpus  # noqa: E402

V, T, LAYERS, HEADS, D = 11, 8, 2, 2, 8
IDS = corpus(V, 900)
TRAIN, VAL = IDS[:800], IDS[800:]


def gpt(dev=None, seed=0, dtype="float32", tie=True, **kwargs):
    return models.gpt(V, T, LAYERS, HEADS, D, tie=tie, device=dev or "cpu", seed=seed, dtype=dtype, **kwargs)


def windows(n=3, seed=1, length=T):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, size=(n, length)), rng.integers(0, V, size=(n, length))


def fit(model, **kwargs):
    settings = dict(loss="softmax_cross_entropy", optimizer=gpt_optimizer(), schedule=gpt_schedule(1e-3, 12, 3),
                    batch_size=4, epochs=2, steps_per_epoch=6, verbose=0)
    return model.fit(TextWindows(TRAIN, T), **{**settings, **kwargs})


# -- the network --------------------------------------------------------------------------------------------
def test_the_layers_are_nanogpts_in_order():
    model = gpt()
    names = [type(layer).__name__ for layer in model.layers]
    assert names == ["Embedding", "PositionalEmbedding", "Dropout"] + ["Residual"] * 2 * LAYERS + ["LayerNorm",
                                                                                                  "TiedDense"]
    attention, mlp = model.layers[3].layers, model.layers[4].layers
    assert [type(layer).__name__ for layer in attention] == ["LayerNorm", "MultiHeadAttention", "Dropout"]
    assert [type(layer).__name__ for layer in mlp] == ["LayerNorm", "Dense", "GELU", "Dense", "Dropout"]
    assert (mlp[1].in_features, mlp[1].out_features, mlp[3].out_features) == (D, 4 * D, D)
    assert model.layers[-1].embedding is model.layers[0]
    untied = gpt(tie=False).layers[-1]
    assert isinstance(untied, xpnet.Dense) and not untied.bias and untied.params["W"].shape == (D, V)


def test_initialization_is_nanogpts():
    """N(0, 0.02) for every matrix, N(0, 0.02 / sqrt(2 n_layer)) for the residual outputs, zero biases,
    LayerNorm 1 and 0 (measured on a wide model, where the sample deviation is within 3 % of the rule's)."""
    n_layer = 3
    model = models.gpt(200, 64, n_layer, 4, 256, seed=0)
    state = model.state_dict()
    residual = 0.02 / math.sqrt(2 * n_layer)
    for key, w in state.items():
        name = key.rsplit(".", 1)[-1]
        if name in ("b", "b_qkv", "b_o", "beta"):
            assert not w.any(), key
        elif name == "gamma":
            assert (w == 1).all(), key
        else:
            want = residual if name == "W_o" or key.endswith(".3.W") else 0.02
            assert abs(w.mean()) < 0.1 * want and abs(w.std() / want - 1) < 0.03, (key, w.std(), want)


def test_one_seed_gives_the_same_weights_on_every_backend(dev):
    want = gpt(seed=3).state_dict()
    got = gpt(dev, seed=3).state_dict()
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_bad_arguments_say_what_to_do():
    with pytest.raises(ValueError, match="gpt: n_layer must be a positive int"):
        models.gpt(V, T, 0, HEADS, D)
    with pytest.raises(TypeError, match="tie must be True or False"):
        models.gpt(V, T, 1, HEADS, D, tie="yes")
    with pytest.raises(ValueError, match=r"dim \(8\) must be a multiple of heads \(3\)"):
        models.gpt(V, T, 1, 3, D)


# -- against PyTorch ------------------------------------------------------------------------------------------
def _torch_gradients(model, X, Y):
    torch = pytest.importorskip("torch")
    import torch_gpt

    net = torch_gpt.from_xpnet(model)
    loss = net.loss(torch.from_numpy(X), torch.from_numpy(Y))
    loss.backward()
    return float(loss.detach()), net, torch_gpt.as_xpnet(net, grads=True)


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_float64_gradients_of_a_2_block_gpt_equal_pytorch_autograd(tie, dev):
    model = gpt(dev, dtype="float64", tie=tie)
    X, Y = windows()
    loss = xpnet.SoftmaxCrossEntropy()
    value = loss.forward(model.forward(dev.asarray(X, "int64"), training=True), dev.asarray(Y, "int64"))
    model.backward(loss.backward())
    want_loss, net, want = _torch_gradients(model, X, Y)
    assert abs(float(value) - want_loss) <= 1e-12 * want_loss
    grads = model.gradients()
    assert set(grads) == set(want)  # one array for the tied embedding: no head weight on either side
    for k, g in want.items():
        got = to_numpy(grads[k])
        assert got.dtype == np.float64
        rel = np.abs(got - g).max() / np.abs(g).max()
        assert rel <= 1e-10, f"{k}: relative error {rel:.2e}"


def test_the_head_adds_its_share_to_the_embeddings_gradient():
    """With the tie, dE is the scatter-add of the input side plus dy^T x of the head (PyTorch sums both)."""
    model = gpt(dtype="float64")
    X, Y = windows()
    loss = xpnet.SoftmaxCrossEntropy()
    loss.forward(model.forward(X, training=True), Y)
    model.backward(loss.backward())
    head_x = model.layers[-1]._x
    dlogits = np.reshape(loss.backward(), (-1, V))
    _, _, want = _torch_gradients(model, X, Y)
    # the input side alone differs from the whole by the head's share, which is not small
    share = dlogits.T @ head_x
    np.testing.assert_allclose(model.gradients()["0.W"], want["0.W"], rtol=1e-10, atol=1e-14)
    assert np.abs(share).max() > 0.1 * np.abs(want["0.W"]).max()


def _first_losses(model, steps, check_every=5):
    """fit's per-step losses over ``steps`` steps of the CLI's rule (AdamW, clip, warm-up + cosine), and the
    window starts it drew (the model's generator, copied before fit)."""
    rng = copy.deepcopy(model.rng)
    record = Losses()
    model.fit(TextWindows(TRAIN, T), loss="softmax_cross_entropy", optimizer=gpt_optimizer(),
              schedule=gpt_schedule(1e-3, steps, 10), batch_size=4, epochs=2, steps_per_epoch=steps // 2, verbose=0,
              callbacks=[record], check_every=check_every)
    starts = np.concatenate([rng.integers(0, len(TRAIN) - T, size=(steps // 2, 4)) for _ in range(2)])
    return record.seen, starts


class Losses(xpnet.Callback):
    """Every step's loss, from the windows fit reads back."""

    def __init__(self):
        self.seen = []

    def on_batch_end(self, step, logs=None):
        self.seen.extend(logs["losses"].tolist())


def test_the_first_50_steps_losses_equal_the_pytorch_reference_in_float32():
    """The same initial weights, the same windows, the CLI's optimizer and schedule against torch_gpt's
    training rule (AdamW with two parameter groups, clip_grad_norm_, nanoGPT's get_lr): within 1e-4."""
    torch = pytest.importorskip("torch")
    import torch_gpt

    model = gpt(seed=4)
    net = torch_gpt.from_xpnet(model)
    opt = torch_gpt.optimizer(net)
    got, starts = _first_losses(model, 50)
    want = []
    for t, row in enumerate(starts):
        x = np.stack([TRAIN[s:s + T] for s in row]).astype(np.int64)
        y = np.stack([TRAIN[s + 1:s + T + 1] for s in row]).astype(np.int64)
        want.append(torch_gpt.train_step(net, opt, torch.from_numpy(x), torch.from_numpy(y),
                                         torch_gpt.lr_at(t, 1e-3, 1e-4, 10, 50)))
    assert len(got) == 50
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    assert want[-1] < want[0] - 0.1  # it learned something: the comparison is not of two flat curves
    weights = torch_gpt.as_xpnet(net)
    for k, w in model.state_dict().items():
        np.testing.assert_allclose(w, weights[k], rtol=0, atol=2e-4, err_msg=k)


def test_the_cli_schedule_is_nanogpts_get_lr():
    pytest.importorskip("torch", reason="the reference schedule is tests/torch_gpt.py's, which needs PyTorch")
    import torch_gpt

    schedule = gpt_schedule()
    assert max(abs(schedule(t) - torch_gpt.lr_at(t)) for t in range(2100)) < 1e-15


def test_weight_decay_on_matrices_leaves_biases_and_norms_alone():
    """AdamW(weight_decay_on='matrices') with zero gradients: the matrices shrink by 1 - lr wd, the rest stay."""
    model = gpt(dtype="float64")
    before = model.state_dict()
    opt = xpnet.AdamW(0.1, weight_decay=0.5, weight_decay_on="matrices")
    params = model.parameters()
    opt.step(params, {k: v * 0.0 for k, v in params.items()})
    for k, w in model.state_dict().items():
        factor = 1 - 0.1 * 0.5 if before[k].ndim >= 2 else 1.0
        np.testing.assert_allclose(w, before[k] * factor, rtol=1e-15, err_msg=k)
    with pytest.raises(ValueError, match="weight_decay_on must be 'all' or 'matrices'"):
        xpnet.SGD(weight_decay_on="biases")


# -- the tie: one array -----------------------------------------------------------------------------------------
def test_the_tied_embedding_is_one_parameter_everywhere(tmp_path):
    torch = pytest.importorskip("torch")
    import torch_gpt

    model = gpt()
    assert "0.W" in model.parameters() and len(model.layers[-1].params) == 0
    assert list(model.state_dict()) == [k for k, *_ in torch_gpt.names(LAYERS)]
    torch_count = sum(p.numel() for p in torch_gpt.from_xpnet(model).parameters())  # torch counts a tie once
    lines = []
    model.summary(input_shape=(T,), print_fn=lines.append)
    assert f"Total params: {torch_count:,d} " in "\n".join(lines)
    fit(model, checkpoint_dir=tmp_path)
    _, arrays = xpnet.io.read(tmp_path / "last.npz")
    assert sorted(k for k in arrays if k.endswith("0.W") and not k.endswith(".0.W")) == [
        "0.W", "optimizer/exp_avg/0.W", "optimizer/exp_avg_sq/0.W"]  # the file, and the optimizer: once each
    head = str(len(model.layers) - 1)
    assert not [k for k in arrays if k.split("/")[-1].startswith(head + ".")]
    del torch


def test_the_flat_buffer_holds_the_tie_once_and_the_step_at_once_trains_as_numpys():
    """On array-api-strict (the generic path, a GPU's) the optimizer steps one flat buffer at once: the tied
    matrix is in it once, and the weights after training are NumPy's (whose scatter-add sums in another order)."""
    pytest.importorskip("array_api_strict")
    model = gpt(xpnet.device("cpu", backend="array-api-strict"))
    flat = model.parameters().flat
    assert flat.at_once and [group.names.count("0.W") for group in flat.groups] == [1]
    assert sum(group.size for group in flat.groups) == sum(w.size for w in model.state_dict().values())
    reference = gpt()
    fit(reference)
    fit(model)
    for k, w in reference.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k], w, rtol=0, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("how", ["load", "checkpoint", "to-torch", "deepcopy"])
def test_the_tie_survives_a_load_a_move_and_a_copy(how, tmp_path):
    """After each, the head uses the Embedding's very array: an update to it changes the logits."""
    model = gpt()
    fit(model)
    if how == "load":
        model.save(tmp_path / "gpt.npz")
        other = xpnet.load(tmp_path / "gpt.npz")
    elif how == "checkpoint":
        fit(model, checkpoint_dir=tmp_path, epochs=3)
        other = xpnet.load(tmp_path / "last.npz")
    elif how == "to-torch":
        pytest.importorskip("torch")
        other = model.to("cpu", backend="torch")
    else:
        other = copy.deepcopy(model)
    head, emb = other.layers[-1], other.layers[0]
    assert head.embedding is emb and list(other.parameters()).count("0.W") == 1
    X, _ = windows()
    x = other.device.asarray(X, "int64")
    before = to_numpy(other.forward(x))
    params = other.parameters()
    params["0.W"] = params["0.W"] * 2.0
    after = to_numpy(other.forward(x))
    assert not np.allclose(after, before)
    np.testing.assert_allclose(to_numpy(head.forward(other.layers[-2].forward(other.layers[-3].forward(
        _trunk(other, x))))), after, rtol=1e-6)


def _trunk(model, x):
    for layer in model.layers[:-3]:
        x = layer.forward(x)
    return x


def test_a_tied_head_refuses_what_it_cannot_tie_to():
    emb = xpnet.Embedding(V, D)
    with pytest.raises(ValueError, match="must be a layer of the same Sequential, before the head"):
        xpnet.Sequential([xpnet.Embedding(V, D), TiedDense(emb)])
    with pytest.raises(ValueError, match=r"TiedDense\(embedding=1\): layer 1 of the model must be an Embedding"):
        xpnet.Sequential([xpnet.Embedding(V, D), xpnet.LayerNorm(D), TiedDense(1)])
    with pytest.raises(TypeError, match="embedding is the Embedding layer whose W the head uses"):
        TiedDense("0")
    with pytest.raises(RuntimeError, match="not tied to its Embedding yet"):
        TiedDense(0).forward(np.zeros((1, 2, D)))
    model = xpnet.Sequential([emb, TiedDense(emb)])
    assert model.layers[1].get_config() == {"embedding": 0}
    assert model.layers[1].compute_output_shape((None, 5, D)) == (None, 5, V)


def test_a_saved_multiheadattention_keeps_its_normal_initializers(tmp_path):
    """A loaded GPT's layers rebuild with their own initializers (their configs name normal(std=...))."""
    model = gpt()
    model.save(tmp_path / "gpt.npz")
    loaded = xpnet.load(tmp_path / "gpt.npz")
    again = xpnet.Sequential(loaded.layers, seed=0)  # the same layers drawn anew from the seed
    for k, w in gpt().state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[k], w, err_msg=k)


# -- training with the rest of xpnet ---------------------------------------------------------------------------
def test_a_checkpointed_run_resumes_exactly(tmp_path):
    whole = gpt(dropout=0.1)
    expected = fit(whole, epochs=3)
    fit(gpt(dropout=0.1), epochs=3, checkpoint_dir=tmp_path, callbacks=[lambda epoch, logs: epoch == 0])
    resumed = gpt(dropout=0.1, seed=9)
    history = resumed.fit(TextWindows(TRAIN, T), epochs=3, steps_per_epoch=6, batch_size=4, verbose=0,
                          resume_from=tmp_path / "last.npz")
    for k, v in whole.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v, err_msg=k)
    assert history.history["loss"] == expected.history["loss"]


def test_two_threads_equal_one_process():
    """Batches of 5 windows: shards of 3 and 2, whose gradients are weighted 3/5 and 2/5 (a plain mean is wrong)."""
    one, two = gpt(dtype="float64"), gpt(dtype="float64")
    want = fit(one, validation_data=TextWindows(VAL, T), batch_size=5).history
    got = fit(two, validation_data=TextWindows(VAL, T), batch_size=5, distributed=xpnet.distributed.Threads(2)).history
    for k, w in one.state_dict().items():
        np.testing.assert_allclose(two.state_dict()[k], w, rtol=1e-9, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(got["val_loss"], want["val_loss"], rtol=1e-10)


def test_two_mpi_ranks_equal_one_process(tmp_path):
    """tests/mpi_worker.py "gpt" under mpiexec -n 2 (batches of 5: shards of 3 and 2): the weights and losses of
    one process."""
    import test_distributed as mpi

    if mpi._why_no_mpi():
        pytest.skip(mpi._why_no_mpi())
    out = tmp_path / "gpt.npz"
    mpi.run_mpi(mpi.WORKER, "gpt", str(out), "float64")
    got, checks = mpi.load(out)
    model = gpt(dtype="float64")
    want = fit(model, validation_data=TextWindows(VAL, T), batch_size=5).history
    assert checks["gpt"]["agree"] and sorted(got) == sorted(model.state_dict())
    for k, w in model.state_dict().items():
        np.testing.assert_allclose(got[k], w, rtol=1e-9, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(checks["gpt"]["history"]["val_loss"], want["val_loss"], rtol=1e-10)


def test_early_stopping_and_the_schedule_run_on_it():
    model = gpt()
    stop = xpnet.EarlyStopping(patience=1, restore_best_weights=True)
    history = fit(model, epochs=4, validation_data=TextWindows(VAL, T), callbacks=[stop])
    assert history["lr"][0] == pytest.approx(gpt_schedule(1e-3, 12, 3)(5))
    assert len(history["val_loss"]) >= 2


def test_onnx_export_computes_predict(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = gpt()
    fit(model)
    proto = xpnet.export_onnx(model, tmp_path / "gpt.onnx")
    embeddings = [i.name for i in proto.graph.initializer if tuple(i.dims) == (V, D)]
    assert embeddings == ["0.W"]  # the tied matrix once
    assert any(node.op_type == "Transpose" and node.input[0] == "0.W" for node in proto.graph.node)
    session = ort.InferenceSession(str(tmp_path / "gpt.onnx"))
    for length in (T, 3):
        X, _ = windows(length=length)
        got = session.run(None, {"input": X.astype(np.int64)})[0]
        np.testing.assert_allclose(got, to_numpy(model.predict(X)), rtol=1e-4, atol=1e-5)
    del onnx


# -- generate -------------------------------------------------------------------------------------------------
def test_generate_is_reproducible_with_a_seed_and_the_same_on_every_backend(dev):
    model = gpt(dev, seed=2)
    want = gpt(seed=2).generate([1, 2, 3], 12, seed=5)
    got = model.generate(np.array([1, 2, 3]), 12, seed=5)
    assert got.dtype == np.int64 and got.shape == (15,) and list(got[:3]) == [1, 2, 3]
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(model.generate([1, 2, 3], 12, seed=6), want)  # another seed, other draws


def test_generate_crops_the_context_to_the_block():
    model = gpt(seed=1)
    fit(model)
    out = model.generate([[1, 2], [3, 4]], 2 * T, top_k=1)  # past the block: the context slides
    assert out.shape == (2, 2 + 2 * T)
    for row in out:  # top_k=1 is the argmax of the last position, over the last T ids at most
        for t in range(2, row.size):
            context = row[max(0, t - T):t][None, :]
            assert row[t] == int(np.argmax(to_numpy(model.predict(context))[0, -1])), t


def test_generate_draws_softmax_of_the_logits_over_temperature_among_the_top_k():
    """An untied GPT made to give the logits L = 0, 1, ..., V-1 at every position (the last LayerNorm's gain 0
    and its shift e_0, the head's row 0 L): the frequencies of many one-token draws are softmax(L / 2) over the
    3 largest, not softmax(L) (0.16 apart) nor anything outside the top 3."""
    model = gpt(tie=False)
    params, norm, L = model.parameters(), len(model.layers) - 2, np.arange(V, dtype=np.float32)
    params[f"{norm}.gamma"] = np.zeros(D, np.float32)
    params[f"{norm}.beta"] = np.eye(1, D, dtype=np.float32)[0]
    params[f"{norm + 1}.W"] = np.concatenate([L[None, :], np.zeros((D - 1, V), np.float32)])
    np.testing.assert_allclose(to_numpy(model.predict(np.array([[5, 6, 7]])))[0, -1], L)
    draws = model.generate(np.tile([5, 6, 7], (4000, 1)), 1, temperature=2.0, top_k=3, seed=0)[:, -1]
    top = L[-3:]
    p = np.exp(top / 2.0) / np.exp(top / 2.0).sum()
    assert set(np.unique(draws)) <= {V - 3, V - 2, V - 1}
    np.testing.assert_allclose([np.mean(draws == i) for i in (V - 3, V - 2, V - 1)], p, atol=0.03)


def test_generate_refuses_what_it_cannot_sample():
    model = gpt()
    for kwargs, said in [(dict(prompt_ids=[]), "prompt_ids are integer token ids"),
                         (dict(prompt_ids=[1.5]), "prompt_ids are integer token ids"),
                         (dict(prompt_ids=[V]), f"takes ids from 0 to {V - 1}"),
                         (dict(temperature=0.0), "temperature must be a positive number"),
                         (dict(top_k=0), "top_k is None or a positive int"),
                         (dict(max_new_tokens=-1), "max_new_tokens must be an int >= 0")]:
        args = {"prompt_ids": [1], "max_new_tokens": 2, **kwargs}
        with pytest.raises(ValueError, match=said):
            model.generate(**args)
    with pytest.raises(ValueError, match="does not take token ids"):
        xpnet.Sequential([xpnet.Dense(2, 3)]).generate([1], 2)


# -- the command line -------------------------------------------------------------------------------------------
TINY = ["--steps", "12", "--eval-interval", "6", "--eval-iters", "2", "--block-size", "8", "--n-layer", "1",
        "--n-head", "2", "--n-embd", "8", "--batch-size", "4", "--warmup", "3"]


@pytest.fixture
def tiny_text(monkeypatch):
    """load_text as the CLI calls it, on a small text (its own corpus; the real one is tested in test_datasets)."""
    from xpnet.cli import gpt as cli_gpt
    from xpnet.datasets import Vocabulary

    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20
    vocab = Vocabulary.from_text(text)
    ids = vocab.encode(text)
    calls = []

    def load_text(name, **kwargs):
        calls.append(name)
        return ids[:1000], ids[1000:], vocab

    monkeypatch.setattr(cli_gpt.datasets, "load_text", load_text)
    return calls


def test_xpnet_train_gpt_reports_saves_the_vocabulary_and_evaluate_generate_and_export_read_it(
        tiny_text, capsys, tmp_path, cli_environment):
    from conftest import run_main

    code, out, err = run_main(capsys, "train", "--model", "gpt", *TINY, "--device", "cpu", "--save",
                              str(tmp_path / "gpt.npz"))
    assert code == 0, err
    lines = out.splitlines()
    assert tiny_text == ["shakespeare"]
    assert lines[0].startswith("xpnet: training a GPT of 1 blocks, 2 heads, 8 wide, block 8, dropout 0 (")
    assert "tied embeddings) on shakespeare: 1,000 train / 220 val characters" in lines[0]
    assert "AdamW lr 0.001 betas (0.9, 0.99) weight decay 0.1 on matrices, clip 1, 3 warm-up steps then a cosine to " \
           "0.0001 over 12 steps, batch 4; cpu (numpy), float32" in lines[0]
    assert [line.split(":")[0] for line in lines[1:3]] == ["step 6/12", "step 12/12"]
    assert "train loss" in lines[2] and "val loss" in lines[2] and "ms a step" in lines[2]
    assert lines[3] == f"xpnet: saved the model and its vocabulary to {tmp_path / 'gpt.npz'}"
    model = xpnet.load(tmp_path / "gpt.npz")
    assert model.metadata["vocabulary"]["chars"] == "".join(sorted(set("First Citizen:\nBefore we proceed any "
                                                                          "further, hear me speak.\n")))
    assert model.metadata["steps"] == 12 and isinstance(model.layers[-1], TiedDense)
    assert f"({sum(w.size for w in model.state_dict().values()):,} parameters, tied embeddings)" in lines[0]
    # evaluate: the loss on the very windows the training reported on; export: any length of ids
    code, said, err = run_main(capsys, "evaluate", str(tmp_path / "gpt.npz"), "--device", "cpu")
    assert code == 0, err
    assert said.startswith(f"val loss {lines[2].split('val loss ')[1][:6]}  (2 batches of 4 windows of 8 characters")
    args = ["generate", str(tmp_path / "gpt.npz"), "--prompt", "First", "--tokens", "30", "--top-k", "5",
            "--temperature", "0.8", "--seed", "3"]
    code, out, err = run_main(capsys, *args)
    assert code == 0, err
    assert out.startswith("First") and len(out) == len("First") + 30 + 1  # and the newline
    assert run_main(capsys, *args)[1] == out  # the seed: the same text again
    assert run_main(capsys, *args[:-1], "4")[1] != out
    pytest.importorskip("onnx")
    code, said, err = run_main(capsys, "export", str(tmp_path / "gpt.npz"), "--onnx", str(tmp_path / "gpt.onnx"))
    assert code == 0 and "input 'input' (batch, sequence)" in said, err


def test_xpnet_train_gpt_quiet_prints_the_last_report_only(tiny_text, capsys, cli_environment):
    from conftest import run_main

    code, out, err = run_main(capsys, "train", "--model", "gpt", *TINY, "--device", "cpu", "--quiet")
    assert code == 0, err
    assert len(out.splitlines()) == 1 and out.startswith("step 12/12: train loss ")


@pytest.mark.parametrize("argv, said", [
    (["--model", "gpt", *TINY, "--layers", "3,4"], "--layers does not apply to --model gpt"),
    (["--model", "gpt", *TINY, "--epochs", "3"], "--epochs does not apply to --model gpt: say how long it trains "
                                                  "with --steps"),
    (["--model", "gpt", "--steps", "100"], "--steps 100 is not a multiple of --eval-interval 250"),
    (["--model", "gpt", "--n-embd", "10"], "--n-embd 10 must be a multiple of --n-head 4"),
    (["--model", "gpt", "--steps", "50", "--eval-interval", "50"], "--warmup 100 steps leaves none of the 50"),
    (["--model", "gpt", "--dataset", "spirals"], "--model gpt trains on a text"),
    (["--dataset", "shakespeare"], "shakespeare is a text: train a language model on it with --model gpt"),
    (["--steps", "100"], "--steps: for --model gpt only"),
], ids=["layers", "epochs", "steps-interval", "heads", "warmup", "rows", "text-for-mlp", "gpt-option-for-mlp"])
def test_xpnet_train_refuses_options_that_do_not_fit_the_model(argv, said, capsys, cli_environment, tiny_text):
    from conftest import run_main

    code, out, err = run_main(capsys, "train", *argv, "--device", "cpu")
    assert code == 1 and said in err, err


def test_xpnet_generate_needs_a_vocabulary(tmp_path, capsys, cli_environment):
    from conftest import run_main

    gpt().save(tmp_path / "bare.npz")
    code, out, err = run_main(capsys, "generate", str(tmp_path / "bare.npz"), "--device", "cpu")
    assert code == 1 and "has no vocabulary in its metadata" in err
