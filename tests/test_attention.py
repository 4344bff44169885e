"""MultiHeadAttention and Residual: float64 forward and gradients against PyTorch autograd (a reference written
here from torch.nn.functional ops with the same weights, and scaled_dot_product_attention for the forward) and
against central differences, on every CPU backend; dropout's masks; a Residual inside a model (keys, saving,
moving, checkpoints, callbacks); operation counts. The ONNX export is in tests/test_onnx.py.
"""

from __future__ import annotations

import copy
import math
import types

import numpy as np
import pytest

import xpnet
from xpnet import (Dense, Dropout, EarlyStopping, Flatten, MultiHeadAttention, Residual, Sequential, Tanh,
                   to_numpy)
from xpnet.backend import host_rng
from xpnet.distributed import DataParallel, rank_key

from numpy_reference import central_difference

REL = 1e-10  # float64: max |xpnet - torch| / max |torch|, for every array

# (B, T, dim, heads, causal): awkward sizes, one token, one head, the whole sequence seen
SHAPES = [(3, 5, 8, 2, True), (3, 5, 8, 2, False), (2, 1, 8, 2, True), (1, 7, 6, 3, True), (2, 4, 4, 1, True)]
IDS = ["B3-T5-d8-h2", "not-causal", "T1", "d6-h3", "one-head"]


def _attention(dev, dim, heads, causal=True, dropout=0.0, seed=0):
    """A float64 layer with every weight drawn at random (biases too: a zero bias hides its gradient's bugs)."""
    layer = MultiHeadAttention(dim, heads, causal=causal, dropout=dropout)
    layer.build(dev, host_rng(seed), "float64")
    rng = np.random.default_rng(seed + 100)
    for k, v in layer.params.items():
        layer.params[k] = dev.asarray(rng.normal(scale=0.5, size=v.shape), "float64")
    return layer


def _torch():
    return pytest.importorskip("torch", reason="PyTorch is the gradient oracle here: pip install torch")


def torch_attention(x, w, heads, causal, D=None):
    """nanoGPT's causal self-attention from torch.nn.functional ops, with xpnet's (in, out) weight layout."""
    torch = _torch()
    F = torch.nn.functional
    B, T, d = x.shape
    qkv = F.linear(x, w["W_qkv"].T, w["b_qkv"])
    q, k, v = (t.reshape(B, T, heads, d // heads).transpose(1, 2) for t in qkv.split(d, dim=-1))
    S = q @ k.transpose(-2, -1) / math.sqrt(d // heads)
    if causal:
        S = S.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    P = F.softmax(S, dim=-1)
    O = (P if D is None else P * D) @ v
    return F.linear(O.transpose(1, 2).reshape(B, T, d), w["W_o"].T, w["b_o"])


def torch_sdpa(x, w, heads, causal):
    """The same through PyTorch's own attention kernel (no dropout)."""
    torch = _torch()
    F = torch.nn.functional
    B, T, d = x.shape
    qkv = F.linear(x, w["W_qkv"].T, w["b_qkv"])
    q, k, v = (t.reshape(B, T, heads, d // heads).transpose(1, 2) for t in qkv.split(d, dim=-1))
    O = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return F.linear(O.transpose(1, 2).reshape(B, T, d), w["W_o"].T, w["b_o"])


def _leaves(params: dict, x):
    torch = _torch()
    w = {k: torch.tensor(to_numpy(v), requires_grad=True) for k, v in params.items()}
    return w, torch.tensor(x, requires_grad=True)


def assert_rel(got, want, what):
    got, want = to_numpy(got), want.detach().numpy() if hasattr(want, "detach") else np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    err = float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))
    assert err <= REL, f"{what}: relative error {err:.2e} > {REL:.0e}"


def _xdy(shape, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape), rng.normal(size=shape)


# -- MultiHeadAttention against PyTorch ------------------------------------------------------------------
@pytest.mark.parametrize("B, T, d, H, causal", SHAPES, ids=IDS)
def test_forward_and_gradients_equal_pytorch_autograd(B, T, d, H, causal, dev):
    layer = _attention(dev, d, H, causal)
    x, dy = _xdy((B, T, d))
    y = layer.forward(dev.asarray(x, "float64"), training=True)
    dx = layer.backward(dev.asarray(dy, "float64"))
    w, tx = _leaves(layer.params, x)
    ty = torch_attention(tx, w, H, causal)
    ty.backward(_torch().tensor(dy))
    assert y.dtype == dev.dtype("float64") and xpnet.device_of(y) == dev
    assert_rel(y, ty, "y")
    assert_rel(y, torch_sdpa(tx, w, H, causal), "y (scaled_dot_product_attention)")
    assert_rel(dx, tx.grad, "dx")
    assert set(layer.grads) == set(w)
    for k in w:
        assert_rel(layer.grads[k], w[k].grad, f"grads[{k!r}]")


@pytest.mark.parametrize("B, T, d, H, causal", [SHAPES[0], SHAPES[2]], ids=[IDS[0], IDS[2]])
def test_gradients_equal_central_differences(B, T, d, H, causal, dev):
    layer = _attention(dev, d, H, causal)
    x, r = _xdy((B, T, d))
    params = {k: to_numpy(v).copy() for k, v in layer.params.items()}

    def objective():
        for k, v in params.items():
            layer.params[k] = dev.asarray(v, "float64")
        return float(np.sum(to_numpy(layer.forward(dev.asarray(x, "float64"))) * r))

    objective()
    dx = to_numpy(layer.backward(dev.asarray(r, "float64")))
    grads = {k: to_numpy(g) for k, g in layer.grads.items()}
    np.testing.assert_allclose(dx, central_difference(objective, x), rtol=1e-6, atol=1e-8)
    for k in params:
        np.testing.assert_allclose(grads[k], central_difference(objective, params[k]), rtol=1e-6, atol=1e-8,
                                   err_msg=k)


def test_each_token_sees_only_itself_and_the_tokens_before_it(dev):
    """Changing token 3 changes the outputs at 3 and after, never before (and without the mask, all of them)."""
    for causal, first_changed in ((True, 3), (False, 0)):
        layer = _attention(dev, 8, 2, causal)
        x, _ = _xdy((2, 6, 8))
        y = to_numpy(layer.forward(dev.asarray(x, "float64")))
        x[:, 3] += 1.0
        changed = np.abs(to_numpy(layer.forward(dev.asarray(x, "float64"))) - y).max(axis=(0, 2)) > 0
        assert changed.tolist() == [t >= first_changed for t in range(6)], causal


def test_the_heads_take_blocks_of_columns(dev):
    """Head h reads columns h*hd ... (h+1)*hd of q, k and v: zeroing head 1's v columns (and nothing else)
    zeroes exactly the output columns that head 1 writes before W_o."""
    layer = _attention(dev, 8, 2)
    d, hd = 8, 4
    w = {k: to_numpy(v).copy() for k, v in layer.params.items()}
    w["W_o"], w["b_o"] = np.eye(d), np.zeros(d)  # y is merge(O) itself
    w["W_qkv"][:, 2 * d + hd:], w["b_qkv"][2 * d + hd:] = 0.0, 0.0  # v of head 1
    for k, v in w.items():
        layer.params[k] = dev.asarray(v, "float64")
    y = to_numpy(layer.forward(dev.asarray(_xdy((2, 5, d))[0], "float64")))
    assert np.all(y[..., hd:] == 0.0) and np.all(np.abs(y[..., :hd]) > 0)


def test_bad_arguments_say_what_to_do():
    for kwargs, error, match in (
            ({"dim": 6, "heads": 4}, ValueError, r"dim \(6\) must be a multiple of heads \(4\), each head taking "
                                                 r"dim / heads values; e\.g\. heads=3"),
            ({"dim": 8, "heads": 0}, ValueError, r"heads must be a positive int, got 0"),
            ({"dim": 8, "heads": 2, "dropout": 1.0}, ValueError, r"dropout is the probability of zeroing"),
            ({"dim": 8, "heads": 2, "causal": 1}, TypeError, r"causal must be True or False, got 1"),
            ({"dim": 8, "heads": 2, "init": "nope"}, ValueError, r"unknown initializer 'nope'")):
        with pytest.raises(error, match=r"^(MultiHeadAttention: )?" + match):
            MultiHeadAttention(**kwargs)
    layer = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"^MultiHeadAttention\(dim=8\) expects input of shape \(batch, T, 8\) "
                                         r"with T >= 1, got \(2, 8\)"):
        layer.compute_output_shape((2, 8))
    with pytest.raises(RuntimeError, match=r"^MultiHeadAttention: the layer has no weights yet; build it first"):
        layer.forward(np.zeros((1, 2, 8)))


def test_init_draws_w_qkv_then_w_o_from_the_seed_and_out_init_draws_w_o():
    cpu = xpnet.device("cpu")
    rng = host_rng(0)
    want = [xpnet.init.glorot_uniform(shape, rng, cpu, "float64") for shape in ((8, 24), (8, 8))]
    layer = MultiHeadAttention(8, 2, init="glorot_uniform")
    layer.build(cpu, host_rng(0), "float64")
    np.testing.assert_array_equal(to_numpy(layer.params["W_qkv"]), to_numpy(want[0]))
    np.testing.assert_array_equal(to_numpy(layer.params["W_o"]), to_numpy(want[1]))
    assert not np.any(to_numpy(layer.params["b_qkv"])) and not np.any(to_numpy(layer.params["b_o"]))
    layer = MultiHeadAttention(8, 2, init="glorot_uniform", out_init="zeros")
    layer.build(cpu, host_rng(0), "float64")
    np.testing.assert_array_equal(to_numpy(layer.params["W_qkv"]), to_numpy(want[0]))
    assert not np.any(to_numpy(layer.params["W_o"])) and layer.get_config()["out_init"] == "zeros"


def test_one_seed_gives_the_same_weights_on_every_backend(dev):
    same = [MultiHeadAttention(8, 2) for _ in range(2)]
    for layer, device in zip(same, (xpnet.device("cpu"), dev)):
        layer.build(device, host_rng(5))
    for k in same[0].params:  # one seed, the same weights on every backend
        np.testing.assert_array_equal(to_numpy(same[0].params[k]), to_numpy(same[1].params[k]))


# -- dropout on the attention weights --------------------------------------------------------------------
def _dropout_mask(dev, state, shape, p):
    """The mask xpnet's Dropout layer draws from the stream ``state``: the one attention must use."""
    drop = Dropout(p)
    drop.set_rng_state(state)
    return to_numpy(drop.forward(dev.asarray(np.ones(shape), "float64"), training=True))


def test_dropout_draws_dropouts_masks_and_its_gradient_equals_pytorch(dev):
    B, T, d, H, p = 3, 5, 8, 2, 0.3
    layer = _attention(dev, d, H, dropout=p)
    state = layer.rng_state()
    x, dy = _xdy((B, T, d))
    y = layer.forward(dev.asarray(x, "float64"), training=True)
    dx = layer.backward(dev.asarray(dy, "float64"))
    assert layer.rng_state() == {"key": state["key"], "counter": state["counter"] + 1}
    D = _dropout_mask(dev, state, (B, H, T, T), p)
    assert 0 < np.mean(D == 0) < 1  # some weights dropped, not all
    w, tx = _leaves(layer.params, x)
    ty = torch_attention(tx, w, H, True, _torch().tensor(D))
    ty.backward(_torch().tensor(dy))
    assert_rel(y, ty, "y")
    assert_rel(dx, tx.grad, "dx")
    for k in w:
        assert_rel(layer.grads[k], w[k].grad, f"grads[{k!r}]")


def test_dropout_gradient_with_a_fixed_mask_equals_central_differences(dev):
    layer = _attention(dev, 4, 2, dropout=0.4)
    state = layer.rng_state()
    x, r = _xdy((2, 3, 4))

    def objective():  # every forward draws the same mask: the stream is put back first
        layer.set_rng_state(state)
        return float(np.sum(to_numpy(layer.forward(dev.asarray(x, "float64"), training=True)) * r))

    objective()
    dx = to_numpy(layer.backward(dev.asarray(r, "float64")))
    np.testing.assert_allclose(dx, central_difference(objective, x), rtol=1e-6, atol=1e-8)


def test_dropout_masks_repeat_with_the_seed_and_vanish_in_evaluation(dev):
    x = dev.asarray(_xdy((2, 6, 8))[0], "float64")
    a, b, c = (_attention(dev, 8, 2, dropout=0.5, seed=s) for s in (0, 0, 1))
    assert a.rng_state() == b.rng_state() != c.rng_state()
    c.set_rng_state(a.rng_state())
    for k in a.params:  # the same weights and stream: the same masks, call after call
        c.params[k] = a.params[k]
    for _ in range(2):
        ya, yb, yc = (to_numpy(m.forward(x, training=True)) for m in (a, b, c))
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(ya, yc)
    plain = _attention(dev, 8, 2, dropout=0.0)
    before = a.rng_state()
    np.testing.assert_array_equal(to_numpy(a.forward(x)), to_numpy(plain.forward(x)))
    assert a.rng_state() == before  # evaluation draws nothing
    assert not np.array_equal(to_numpy(a.forward(x, training=True)), to_numpy(plain.forward(x)))


def test_numpy_and_strict_draw_the_same_masks():
    pytest.importorskip("array_api_strict")
    x = _xdy((2, 6, 8))[0]
    outs = []
    for backend in ("numpy", "array-api-strict"):
        dev = xpnet.device("cpu", backend=backend)
        layer = _attention(dev, 8, 2, dropout=0.5)
        outs.append([to_numpy(layer.forward(dev.asarray(x, "float64"), training=True)) for _ in range(2)])
    # the same masks: equal to rounding (NumPy's softmax routine sums in another order than the generic lines;
    # a mask of its own would change whole entries by 1/(1-p))
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-13, atol=1e-15)
    assert not np.allclose(outs[0][0], outs[0][1])  # the stream moves on


# -- Residual -----------------------------------------------------------------------------------------------
def _randomize(model, seed=3):
    rng = np.random.default_rng(seed)
    model.load_state_dict({k: rng.normal(scale=0.5, size=v.shape) for k, v in model.state_dict().items()})
    return model


def test_residual_forward_and_backward_equal_pytorch(dev):
    """y = x + f(x) and dx = dy + f'(dy), f = [Tanh, MultiHeadAttention] (a Residual used alone: dx wanted)."""
    torch = _torch()
    block = Residual([Tanh(), MultiHeadAttention(8, 2)])
    block.build(dev, host_rng(0), "float64")
    rng = np.random.default_rng(4)
    for k, v in block.params.items():
        block.params[k] = dev.asarray(rng.normal(scale=0.5, size=v.shape), "float64")
    x, dy = _xdy((3, 5, 8))
    y = block.forward(dev.asarray(x, "float64"), training=True)
    dx = block.backward(dev.asarray(dy, "float64"))
    w, tx = _leaves(block.params, x)
    ty = tx + torch_attention(torch.tanh(tx), {k[2:]: v for k, v in w.items()}, 2, True)
    ty.backward(torch.tensor(dy))
    assert list(block.params) == ["1.W_qkv", "1.b_qkv", "1.W_o", "1.b_o"]
    assert_rel(y, ty, "y")
    assert_rel(dx, tx.grad, "dx")
    for k in w:
        assert_rel(block.grads[k], w[k].grad, f"grads[{k!r}]")


def test_a_residual_first_in_a_model_still_passes_gradients_between_its_layers(dev):
    """The model wants no dx from its first layer with weights; inside it, the second attention's dx is what
    the first one's gradients come from, and the Tanh before them needs no backward at all."""
    torch = _torch()
    first = Residual([Tanh(), MultiHeadAttention(8, 2), MultiHeadAttention(8, 4, causal=False)])
    model = _randomize(Sequential([first, Residual([MultiHeadAttention(8, 2)])], device=dev, dtype="float64"))
    assert (first.input_grad, [layer.input_grad for layer in first.layers]) == (False, [False, False, True])
    assert all(layer.input_grad for layer in model.layers[1].layers) and model.layers[1].input_grad
    x, dy = _xdy((2, 4, 8))
    y = model.forward(dev.asarray(x, "float64"), training=True)
    assert model.backward(dev.asarray(dy, "float64")) is None
    w = {k: torch.tensor(to_numpy(v), requires_grad=True) for k, v in model.parameters().items()}
    tx = torch.tensor(x)

    def sub(prefix):
        return {k[len(prefix):]: v for k, v in w.items() if k.startswith(prefix)}

    h = torch.tanh(tx)
    h = torch_attention(torch_attention(h, sub("0.1."), 2, True), sub("0.2."), 4, False)
    z = tx + h
    ty = z + torch_attention(z, sub("1.0."), 2, True)
    ty.backward(torch.tensor(dy))
    assert_rel(y, ty, "y")
    assert list(model.gradients()) == list(w)
    for k in w:
        assert_rel(model.gradients()[k], w[k].grad, f"gradients()[{k!r}]")


def test_residual_gradients_equal_central_differences(dev):
    block = Residual([MultiHeadAttention(4, 2), Tanh()])
    block.build(dev, host_rng(0), "float64")
    x, r = _xdy((2, 3, 4))

    def objective():
        return float(np.sum(to_numpy(block.forward(dev.asarray(x, "float64"))) * r))

    objective()
    dx = to_numpy(block.backward(dev.asarray(r, "float64")))
    np.testing.assert_allclose(dx, central_difference(objective, x), rtol=1e-6, atol=1e-8)


def _block_model(dev="cpu", seed=0, dropout=0.2, dtype="float32"):
    return Sequential([Residual([MultiHeadAttention(8, 2, dropout=dropout), Dropout(0.3)]), Residual([Tanh()]),
                       Flatten(), Dense(40, 3)], device=dev, seed=seed, dtype=dtype)


def _sequences(n=48, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5, 8)).astype(np.float32)
    return X, (X[:, -1, 0] + X[:, 0, 1] > 0).astype(np.int64) + (X[:, 2, 2] > 1).astype(np.int64)


def test_keys_are_nested_and_write_through():
    model = _block_model()
    assert list(model.parameters()) == ["0.0.W_qkv", "0.0.b_qkv", "0.0.W_o", "0.0.b_o", "3.W", "3.b"]
    assert list(model.state_dict()) == list(model.parameters())
    block = model.layers[0]
    new = model.device.asarray(np.ones((8, 8)))
    model.parameters()["0.0.W_o"] = new  # written into the parameter, a view of the model's flat buffer
    held = model.parameters()["0.0.W_o"]
    assert block.layers[0].params["W_o"] is held and block.params["0.W_o"] is held
    np.testing.assert_array_equal(xpnet.to_numpy(held), np.ones((8, 8), np.float32))
    X, y = _sequences(4)
    model.forward(model.device.asarray(X), training=True)
    model.backward(model.device.asarray(np.ones((4, 3), np.float32)))
    assert model.gradients()["0.0.W_o"] is block.layers[0].grads["W_o"]
    with pytest.raises(TypeError, match="grads cannot be deleted"):
        del block.grads["0.W_o"]
    block.grads.clear()  # what Sequential.to does: empties the layers' own
    assert block.layers[0].grads == {}


def test_model_to_another_backend_and_load_state_dict(dev):
    model = _block_model(dtype="float64")
    X, y = _sequences(6)
    model.fit(X, y, loss="softmax_cross_entropy", optimizer="adam", epochs=1, batch_size=3, verbose=0)
    want = to_numpy(model.predict(X))
    model.to(dev)
    assert all(xpnet.device_of(v) == dev for v in model.parameters().values())
    assert model.layers[0].layers[0].grads == {}
    np.testing.assert_allclose(to_numpy(model.predict(X)), want, rtol=1e-12)
    other = _block_model(dev, seed=7, dtype="float64")
    other.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(to_numpy(other.predict(X)), to_numpy(model.predict(X)))
    with pytest.raises(ValueError, match=r"load_state_dict: missing keys \['0.0.b_o'\]"):
        other.load_state_dict({k: v for k, v in model.state_dict().items() if k != "0.0.b_o"})


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
def test_every_optimizer_trains_the_nested_parameters(optimizer):
    model = _block_model()
    before = model.state_dict()
    X, y = _sequences()
    model.fit(X, y, loss="softmax_cross_entropy", optimizer=optimizer, epochs=1, batch_size=16, verbose=0)
    after = model.state_dict()
    assert all(np.all(np.isfinite(v)) for v in after.values())
    assert [k for k in before if np.array_equal(before[k], after[k])] == []


def test_save_and_load_round_trip(tmp_path):
    model = _block_model()
    X, y = _sequences()
    model.fit(X, y, loss="softmax_cross_entropy", optimizer="adam", epochs=1, batch_size=16, verbose=0)
    xpnet.save(model, tmp_path / "m.npz")
    loaded = xpnet.load(tmp_path / "m.npz")
    assert loaded.get_config() == model.get_config() and repr(loaded) == repr(model)
    assert loaded.get_rng_state()["layers"] == model.get_rng_state()["layers"]
    np.testing.assert_array_equal(to_numpy(loaded.predict(X)), to_numpy(model.predict(X)))
    # the next masks too: training goes on as if never saved
    a, b = (to_numpy(m.forward(m.device.asarray(X), training=True)) for m in (model, loaded))
    np.testing.assert_array_equal(a, b)


def test_save_refuses_an_unregistered_layer_inside_a_residual(tmp_path):
    class Halve(xpnet.Layer):
        keeps_shape = True

        def forward(self, x, training=False):
            return x / 2

    model = Sequential([Residual([Tanh(), Halve()]), Flatten(), Dense(40, 2)])
    with pytest.raises(TypeError, match=r"^save: layer 0\.1 is a .*Halve, which load\(\) cannot rebuild; register it "
                                        r"first with xpnet\.layers\.register_layer\(Halve\)"):
        xpnet.save(model, tmp_path / "m.npz")


def test_a_checkpointed_run_resumes_exactly(dev, tmp_path):
    """The attention's dropout and the Dropout inside the Residual draw after the resume what they would have."""
    X, y = _sequences()
    kwargs = dict(loss="softmax_cross_entropy", optimizer="adamw", batch_size=16, verbose=0)
    whole = _block_model(dev)
    expected = whole.fit(X, y, epochs=3, **kwargs)
    _block_model(dev).fit(X, y, epochs=3, checkpoint_dir=tmp_path, callbacks=[lambda epoch, logs: epoch == 0],
                          **kwargs)
    resumed = _block_model(dev, seed=5)
    history = resumed.fit(X, y, epochs=3, batch_size=16, resume_from=tmp_path / "last.npz", verbose=0)
    for k, v in whole.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v, err_msg=k)
    assert history.history["loss"] == expected.history["loss"]
    assert resumed.get_rng_state()["layers"] == whole.get_rng_state()["layers"]


def test_early_stopping_restores_the_nested_weights():
    X, y = _sequences()
    seen = []

    class Scripted(xpnet.Callback):  # epoch 2 (index 1) is the best, whatever the training does
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = [3.0, 1.0, 2.0, 2.5][epoch]
            seen.append(self.model.state_dict())

    model = _block_model()
    model.fit(X, y, loss="softmax_cross_entropy", epochs=4, batch_size=16, verbose=0, validation_data=(X, y),
              callbacks=[Scripted(), EarlyStopping(patience=5, restore_best_weights=True, verbose=0)])
    for k, v in seen[1].items():
        np.testing.assert_array_equal(model.state_dict()[k], v, err_msg=k)
    assert not np.array_equal(seen[1]["0.0.W_qkv"], seen[3]["0.0.W_qkv"])


def test_config_round_trip_and_refusals():
    block = Residual([Residual([Tanh(), Dropout(0.1)]), MultiHeadAttention(8, 4, causal=False, dropout=0.1)])
    again = Residual.from_config(block.get_config())
    assert again.get_config() == block.get_config() and repr(again) == repr(block)
    assert [type(layer).__name__ for layer in again.layers] == ["Residual", "MultiHeadAttention"]
    with pytest.raises(ValueError, match=r"Residual: layer 0 has unknown class 'Nope'; known: .*Dense"):
        Residual.from_config({"layers": [{"class": "Nope", "config": {}}]})
    with pytest.raises(ValueError, match=r"Residual: layer 0 \(MultiHeadAttention\) cannot be rebuilt from its "
                                         r"config .*dim \(6\) must be a multiple of heads \(4\)"):
        Residual.from_config({"layers": [{"class": "MultiHeadAttention", "config": {"dim": 6, "heads": 4}}]})
    with pytest.raises(ValueError, match=r"Residual: layers is a non-empty list of xpnet Layers"):
        Residual([])
    with pytest.raises(TypeError, match=r"Residual: layer 1 is 3, not an xpnet Layer"):
        Residual([Tanh(), 3])


def test_f_must_keep_the_shape(dev):
    block = Residual([Flatten()])
    with pytest.raises(ValueError, match=r"Residual: its layers give output of shape \(None, 40\) for input of shape "
                                         r"\(None, 5, 8\); y = x \+ f\(x\) needs f to keep the shape"):
        block.compute_output_shape((None, 5, 8))
    with pytest.raises(ValueError, match=r"Residual: its layers give output of shape \(2, 40\) for input of shape "
                                         r"\(2, 5, 8\)"):
        block.forward(dev.asarray(np.zeros((2, 5, 8))))
    with pytest.raises(ValueError, match=r"Residual: layer 0, MultiHeadAttention\(dim=8.*does not take input of "
                                         r"shape \(None, 5, 6\)"):
        Residual([MultiHeadAttention(8, 2)]).compute_output_shape((None, 5, 6))
    assert Residual([Tanh()]).keeps_shape and not Residual([MultiHeadAttention(8, 2)]).keeps_shape


def test_summary_shows_a_residuals_layers_under_it():
    lines = []
    _block_model().summary(input_shape=(5, 8), print_fn=lines.append)
    rows = [line.split() for line in lines[5:-4]]
    assert [r[:2] for r in rows] == [["0", "Residual"], ["0.0", "MultiHeadAttention"], ["0.1", "Dropout"],
                                     ["1", "Residual"], ["1.0", "Tanh"], ["2", "Flatten"], ["3", "Dense"]]
    assert rows[0][2:] == ["(None,", "5,", "8)", "288"] and rows[1][2:6] == ["(None,", "5,", "8)", "288"]
    assert lines[-3] == "Total params: 411 (1.61 KiB)"


def test_rng_state_only_where_a_layer_of_f_draws():
    model = _block_model()
    assert getattr(model.layers[1], "rng_state", None) is None  # Residual([Tanh()]): nothing to save
    state = model.get_rng_state()["layers"]
    assert list(state) == ["0"] and list(state["0"]) == ["0", "1"]
    with pytest.raises(ValueError, match=r"Residual.set_rng_state: expected a dict with the random states of its "
                                         r"layers \['0', '1'\]"):
        model.layers[0].set_rng_state({"0": state["0"]["0"]})
    with pytest.raises(ValueError, match=r"Dropout.set_rng_state: counter must be an int >= 0"):
        model.layers[0].set_rng_state({**state["0"], "1": {"key": 1, "counter": -1}})


def test_data_parallel_ranks_key_the_streams_inside_a_residual():
    root = _block_model()
    state = root.get_rng_state()
    comm = types.SimpleNamespace(rank=1, size=2, is_root=False, bcast=lambda obj: copy.deepcopy(state))
    other = _block_model()
    DataParallel(comm).sync_random_state(other)
    for j in ("0", "1"):
        key = state["layers"]["0"][j]["key"]
        assert other.layers[0].layers[int(j)].rng_state()["key"] == rank_key(key, 1) != key


# -- operations per step --------------------------------------------------------------------------------
def test_forward_and_backward_operations_do_not_depend_on_batch_or_length():
    pytest.importorskip("array_api_strict")
    from opcount import counting

    dev = xpnet.device("cpu", backend="array-api-strict")
    tallies = []
    for B, T in ((2, 3), (5, 11)):
        model = Sequential([Residual([MultiHeadAttention(8, 2, dropout=0.1)])], device=dev)
        model.layers[0].input_grad = True  # dx too, as inside a model
        x, dy = (dev.asarray(a, "float32") for a in _xdy((B, T, 8)))
        for _ in range(2):  # the first step makes the mask of this length
            with counting() as tally:
                model.forward(x, training=True)
                model.backward(dy)
        tallies.append(tally)
    assert tallies[0].ops == tallies[1].ops and tallies[0].total > 0
    assert tallies[0].syncs == tallies[1].syncs == []
