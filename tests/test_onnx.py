"""ONNX export: ONNX Runtime, not xpnet, runs every exported file, and its outputs must equal
``model.predict`` within 1e-5 (relative to the output's size); every file passes ``onnx.checker``.

Skipped without the ``onnx`` and ``onnxruntime`` packages (``pip install "xpnet[onnx]" onnxruntime``).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import xpnet
from xpnet import cli, layers
from xpnet.layers import (GELU, AvgPool2D, BatchNorm2d, Conv2D, Dense, Embedding, Flatten, GlobalAvgPool2D, Identity,
                          LayerNorm, LeakyReLU, MaxPool2D, MultiHeadAttention, PositionalEmbedding, ReLU, Reshape,
                          Residual, Sigmoid, Softmax, Step, Tanh)
from xpnet.onnx import EXPORTERS, export_onnx

onnx = pytest.importorskip("onnx", reason="the onnx package is not installed: pip install 'xpnet[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install onnxruntime")

RTOL = 1e-5


def run(path, X):
    """The exported file's output for ``X``, computed by ONNX Runtime."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": X})[0]


def assert_close(got, want):
    """Within RTOL of each value, and of the largest one near zero (where a sum's rounding order shows)."""
    want = np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * float(np.abs(want).max()))


def randomized(model, seed=1):
    """Every parameter (and buffer) of ``model`` drawn at random, so a zero bias or a unit gamma hides nothing."""
    rng = np.random.default_rng(seed)
    state = {k: rng.normal(0.0, 1.0, size=v.shape) for k, v in model.state_dict().items()}
    for k in state:
        if k.endswith("running_var"):
            state[k] = np.abs(state[k]) + 0.5  # a variance
    model.load_state_dict(state)
    return model


def _optional(name, *args):
    """A layer that lands with another change (Dropout, BatchNorm1d): the test skips until it is there."""
    cls = getattr(layers, name, None)
    if cls is None:
        pytest.skip(f"xpnet.layers has no {name} yet")
    return cls(*args)


# (layers, one sample's input shape for export_onnx or None for the default)
CASES = {
    "Dense": (lambda: [Dense(5, 4)], None),
    "Dense-no-bias": (lambda: [Dense(5, 4, bias=False)], None),
    "Sigmoid": (lambda: [Dense(5, 4), Sigmoid()], None),
    "Tanh": (lambda: [Dense(5, 4), Tanh()], None),
    "ReLU": (lambda: [Dense(5, 4), ReLU()], None),
    "LeakyReLU": (lambda: [Dense(5, 4), LeakyReLU(0.2)], None),
    "Softmax": (lambda: [Dense(5, 4), Softmax()], None),
    "Step": (lambda: [Dense(5, 4), Step()], None),
    "Identity": (lambda: [Dense(5, 4), Identity()], None),
    "Flatten": (lambda: [Flatten(), Dense(12, 4), Tanh()], (3, 4)),
    "Dropout": (lambda: [Dense(5, 4), _optional("Dropout", 0.5), ReLU()], None),
    "BatchNorm1d": (lambda: [Dense(5, 4), _optional("BatchNorm1d", 4), Sigmoid()], None),
    "Conv2D": (lambda: [Conv2D(2, 3, (3, 2), stride=(1, 2), padding=(1, 0)), Tanh()], (2, 7, 8)),
    "Conv2D-no-bias": (lambda: [Conv2D(2, 3, 3, padding=2, bias=False)], (2, 5, 5)),
    "MaxPool2D": (lambda: [Conv2D(2, 3, 3), MaxPool2D(2)], (2, 7, 8)),
    "MaxPool2D-overlapping": (lambda: [MaxPool2D((3, 2), stride=(1, 2))], (2, 7, 8)),
    "AvgPool2D": (lambda: [AvgPool2D(3, stride=2)], (2, 7, 8)),
    "GlobalAvgPool2D": (lambda: [GlobalAvgPool2D(), Dense(2, 3)], (2, 6, 6)),
    "Reshape": (lambda: [Reshape((2, 3, 4)), Conv2D(2, 3, 2), Flatten(), Dense(18, 2)], (24,)),
    "BatchNorm2d": (lambda: [Conv2D(2, 3, 3), BatchNorm2d(3), ReLU()], (2, 6, 6)),
    "cnn": (lambda: [Reshape((1, 8, 8)), Conv2D(1, 4, 3, padding=1), BatchNorm2d(4), ReLU(), Conv2D(4, 6, 3), ReLU(),
                     MaxPool2D(2), _optional("Dropout", 0.25), Flatten(), Dense(54, 8), ReLU(), Dense(8, 3),
                     Softmax()], (64,)),
    "Step-alone": (lambda: [Step()], None),  # its input holds exact zeros: Step(0) = 1
    "activations-only": (lambda: [Tanh(), Softmax()], None),
    "all-in-one": (lambda: [Dense(5, 8), Sigmoid(), Dense(8, 8), LeakyReLU(0.1), Dense(8, 6, bias=False), ReLU(),
                            Dense(6, 6), Tanh(), Dense(6, 3), Identity(), Softmax()], None),
    # (B, T, dim) sequences; dropout is the identity at inference
    "MultiHeadAttention": (lambda: [MultiHeadAttention(8, 2, dropout=0.1)], (5, 8)),
    "MultiHeadAttention-not-causal": (lambda: [MultiHeadAttention(6, 3, causal=False), Tanh()], (4, 6)),
    "Residual": (lambda: [Residual([MultiHeadAttention(8, 4), Tanh()]), Residual([Residual([Tanh()])]),
                          Flatten(), Dense(40, 3)], (5, 8)),
    # the sequence layers: int64 ids (batch, T) in, T symbolic unless given
    "Embedding": (lambda: [Embedding(11, 4)], None),
    "Embedding-Flatten": (lambda: [Embedding(11, 4), Flatten(), Dense(20, 3)], (5,)),
    "PositionalEmbedding": (lambda: [Embedding(11, 4), PositionalEmbedding(7, 4)], None),
    "Dense-3d": (lambda: [Embedding(11, 4), Dense(4, 6), Dense(6, 3, bias=False)], None),
    "LayerNorm": (lambda: [Dense(5, 6), LayerNorm(6, eps=0.1)], None),
    "GELU": (lambda: [Dense(5, 4), GELU()], None),
    "sequence": (lambda: [Embedding(11, 8), PositionalEmbedding(7, 8), LayerNorm(8), Dense(8, 16), GELU(),
                          Dense(16, 8), LayerNorm(8, eps=0.5), Dense(8, 11, bias=False)], None),
    # the head that multiplies by the Embedding's own W (a GPT's tied embeddings)
    "TiedDense": (lambda: (lambda wte: [wte, LayerNorm(4), layers.TiedDense(wte)])(Embedding(11, 4)), None),
}


def _export_and_compare(case, device, dtype, tmp_path, opset=xpnet.onnx.DEFAULT_OPSET):
    make, input_shape = CASES[case]
    model = randomized(xpnet.Sequential(make(), device=device, dtype=dtype, seed=0))
    path = tmp_path / f"{case}.onnx"
    export_onnx(model, path, opset=opset, input_shape=input_shape)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    shape = input_shape or (5,)
    if isinstance(model.layers[0], Embedding):  # token ids, repeated ones among them
        X = np.random.default_rng(2).integers(0, model.layers[0].num_embeddings, size=(7, *shape))
        batches = (X, X[:1], X[:, :3]) if input_shape is None else (X, X[:1])  # T is not fixed either
    else:
        X = (2.0 * np.random.default_rng(2).normal(size=(7, *shape))).astype(dtype)
        X[:, 0] = 0.0  # where a threshold's side shows
        batches = (X, X[:1])  # the batch size is not fixed in the file
    for rows in batches:
        assert_close(run(path, rows), xpnet.to_numpy(model.predict(rows)))
    return model, path


@pytest.mark.parametrize("case", CASES)
def test_each_layer_matches_predict_in_float32(case, dev, tmp_path):
    _export_and_compare(case, dev, "float32", tmp_path)


# (none of the image layers: ONNX Runtime's CPU provider has no float64 Conv, AveragePool or GlobalAveragePool
# kernel, "NOT_IMPLEMENTED")
@pytest.mark.parametrize("case", ["all-in-one", "Flatten", "Step", "BatchNorm1d", "Residual", "sequence"])
def test_float64_models_export_as_float64(case, tmp_path):
    model, path = _export_and_compare(case, "cpu", "float64", tmp_path)
    graph = onnx.load(str(path)).graph
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert graph.input[0].type.tensor_type.elem_type == (onnx.TensorProto.INT64 if case == "sequence"  # ids
                                                         else onnx.TensorProto.DOUBLE)


@pytest.mark.parametrize("opset", [13, 15, 18])
def test_other_opsets(opset, tmp_path):
    _export_and_compare("all-in-one", "cpu", "float32", tmp_path, opset=opset)
    assert onnx.load(str(tmp_path / "all-in-one.onnx")).opset_import[0].version == opset


@pytest.mark.parametrize("opset, ops", [
    (13, {"ReduceMean", "Sqrt", "Tanh"}), (16, {"ReduceMean", "Sqrt", "Tanh"}), (17, {"LayerNormalization", "Tanh"}),
    (20, {"LayerNormalization", "Gelu"})])
def test_sequence_layers_in_every_opset(opset, ops, tmp_path):
    """LayerNormalization from opset 17 and Gelu from 20; the formulas before them give the same outputs."""
    _, path = _export_and_compare("sequence", "cpu", "float32", tmp_path, opset=opset)
    proto = onnx.load(str(path))
    used = {n.op_type for n in proto.graph.node}
    assert ops <= used and not ({"LayerNormalization", "Gelu"} - ops) & used
    (inp,) = proto.graph.input
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", "sequence"]


def test_dense_is_gemm_on_matrices_and_matmul_add_on_sequences(tmp_path):
    nodes = lambda layers, **kw: [n.op_type for n in export_onnx(  # noqa: E731
        xpnet.Sequential(layers, seed=0), tmp_path / "m.onnx", **kw).graph.node]
    assert nodes([Dense(5, 4), Dense(4, 3)]) == ["Gemm", "Gemm"]
    assert nodes([Embedding(11, 4), Dense(4, 3)]) == ["Gather", "MatMul", "Add"]
    assert nodes([Flatten(), Dense(6, 3)], input_shape=(2, 3)) == ["Flatten", "Gemm"]
    assert nodes([Embedding(11, 4), Flatten(), Dense(20, 3)], input_shape=(5,)) == ["Gather", "Flatten", "Gemm"]


def test_every_xpnet_layer_has_an_exporter_and_a_case():
    """A layer added to xpnet.layers without an ONNX entry (or without a case here) fails this test."""
    ours = {name for name, cls in layers.LAYERS.items() if cls.__module__.startswith("xpnet.layers")}
    assert ours >= {"Dense", "Flatten", "Sigmoid", "Tanh", "ReLU", "LeakyReLU", "Softmax", "Step", "Identity"}
    assert {layers.LAYERS[name] for name in ours} <= set(EXPORTERS), ours - {c.__name__ for c in EXPORTERS}
    assert ours <= set(CASES)


@pytest.mark.parametrize("layers, shape", [
    (lambda: [Dense(5, 4), layers.BatchNorm1d(4, eps=0.1)], (5,)),
    (lambda: [Conv2D(2, 3, 3), BatchNorm2d(3, eps=0.1)], (2, 6, 6)),
], ids=["BatchNorm1d", "BatchNorm2d"])
def test_batch_norm_exports_its_own_epsilon(layers, shape, tmp_path):
    """ONNX's default epsilon is PyTorch's 1e-5, the layer's default too: only another eps shows whether the
    node carries it. Small running variances make eps count: a node without it is 240 off here."""
    model = randomized(xpnet.Sequential(layers(), device="cpu", seed=0))
    state = model.state_dict()
    state["1.running_var"] = np.linspace(0.001, 0.01, state["1.running_var"].size)
    model.load_state_dict(state)
    proto = export_onnx(model, tmp_path / "bn.onnx", input_shape=shape)
    (node,) = [n for n in proto.graph.node if n.op_type == "BatchNormalization"]
    assert {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute} == {"epsilon": pytest.approx(0.1)}
    X = np.random.default_rng(2).normal(size=(7, *shape)).astype("float32")
    assert_close(run(tmp_path / "bn.onnx", X), xpnet.to_numpy(model.predict(X)))


def test_the_graph_names_batch_inputs_and_weights(tmp_path):
    model = xpnet.Sequential([Dense(784, 20), ReLU(), Dense(20, 10)], seed=0)
    proto = export_onnx(model, tmp_path / "m.onnx")
    (inp,), (out,) = proto.graph.input, proto.graph.output
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert (inp.name, dims(inp), out.name, dims(out)) == ("input", ["batch", 784], "output", ["batch", 10])
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    assert set(weights) == {"0.W", "0.b", "2.W", "2.b"}  # the state dict's names
    np.testing.assert_array_equal(weights["0.W"], model.state_dict()["0.W"])  # (in, out), as Gemm takes it
    assert [n.op_type for n in proto.graph.node] == ["Gemm", "Relu", "Gemm"]
    assert proto.producer_name == "xpnet" and proto.producer_version == xpnet.__version__


def test_input_scaling_is_recorded_in_the_metadata(tmp_path):
    model = xpnet.Sequential([Dense(4, 3), Sigmoid()], seed=0)
    X, y = np.random.default_rng(0).uniform(0.01, 1.0, (16, 4)).astype("float32"), np.arange(16) % 3
    model.fit(X, np.eye(3, dtype="float32")[y], loss="mse", epochs=1, verbose=False)
    model.metadata = {"dataset": "mnist", "scale": "tutorial"}
    props = {p.key: p.value for p in export_onnx(model, tmp_path / "m.onnx").metadata_props}
    assert props["scale"] == "tutorial" and props["input_scaling"].startswith("x / 255 * 0.99 + 0.01")
    assert json.loads(props["input_range"]) == pytest.approx(list(model.input_range))
    assert json.loads(props["xpnet_metadata"]) == model.metadata
    assert props["loss"] == "MSE" and props["xpnet_version"] == xpnet.__version__
    saved = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert saved == props


class Doubler(xpnet.Layer):  # not registered: the registry is the set of xpnet's own layers (test_layer_contracts)
    def forward(self, x, training=False):
        return 2.0 * x

    def backward(self, dy):
        return 2.0 * dy


def test_a_layer_without_an_exporter_is_named(tmp_path, monkeypatch):
    model = xpnet.Sequential([Dense(3, 2), Doubler()], seed=0)
    with pytest.raises(TypeError) as err:
        export_onnx(model, tmp_path / "m.onnx")
    msg = str(err.value)
    assert "layer 1, Doubler()" in msg and "test_onnx.Doubler" in msg and "has no ONNX exporter" in msg
    assert "Dense" in msg and "EXPORTERS[Doubler]" in msg
    assert not (tmp_path / "m.onnx").exists()
    # the table is the way in: one entry makes it exportable
    monkeypatch.setitem(EXPORTERS, Doubler, lambda layer, x, g: g.node("Add", [x, x]))
    export_onnx(model, tmp_path / "m.onnx")
    X = np.ones((2, 3), "float32")
    assert_close(run(tmp_path / "m.onnx", X), xpnet.to_numpy(model.predict(X)))


def test_a_subclass_is_not_exported_as_its_parent(tmp_path):
    class Halved(ReLU):  # computes something else than ReLU: ReLU's exporter would be wrong
        def forward(self, x, training=False):
            return 0.5 * super().forward(x)

    with pytest.raises(TypeError, match="layer 0, Halved"):
        export_onnx(xpnet.Sequential([Halved()], seed=0), tmp_path / "m.onnx")


def test_a_failed_write_leaves_the_older_file_whole(tmp_path, monkeypatch):
    model = xpnet.Sequential([Dense(3, 2)], seed=0)
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(xpnet.io.os, "fsync", disk_full)
    with pytest.raises(OSError, match=f"cannot save to {path}"):
        export_onnx(xpnet.Sequential([Dense(3, 4)], seed=1), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary file left behind
    with pytest.raises(FileNotFoundError, match="the folder .* does not exist"):
        export_onnx(model, tmp_path / "gone" / "m.onnx")


def test_bad_arguments(tmp_path):
    model = xpnet.Sequential([Flatten(), Dense(12, 2)], seed=0)
    with pytest.raises(ValueError, match=r"starts with Flatten.*input_shape=\(28, 28\)"):
        export_onnx(model, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="does not fit together"):
        export_onnx(model, tmp_path / "m.onnx", input_shape=(3, 5))  # 15 features, not 12
    for first in (Conv2D(1, 2, 3), MaxPool2D(2), BatchNorm2d(1)):
        with pytest.raises(ValueError, match=rf"starts with {type(first).__name__}.*input_shape=\(1, 28, 28\)"):
            export_onnx(xpnet.Sequential([first], seed=0), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"starts with Reshape.*input_shape=\(784,\)"):
        export_onnx(xpnet.Sequential([Reshape((-1, 28))], seed=0), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="input_shape is one sample's shape"):
        export_onnx(model, tmp_path / "m.onnx", input_shape=(3, 0))
    for opset in (12, 10_000, "17", True):
        with pytest.raises(ValueError, match="opset must be an int from 13"):
            export_onnx(model, tmp_path / "m.onnx", opset=opset, input_shape=(3, 4))
    assert not (tmp_path / "m.onnx").exists()


def test_the_input_shape_is_what_the_layers_tell(tmp_path):
    """As summary() and ``xpnet export``: a leading Reshape to a fixed shape takes flat rows of its size."""
    proto = export_onnx(xpnet.Sequential([Reshape((1, 4, 4)), Conv2D(1, 2, 3)], seed=0), tmp_path / "m.onnx")
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 16]
    dims = export_onnx(xpnet.Sequential([ReLU(), xpnet.BatchNorm1d(3)], seed=0), tmp_path / "m.onnx").graph.input[0]
    assert [d.dim_param or d.dim_value for d in dims.type.tensor_type.shape.dim] == ["batch", 3]


def test_attention_takes_sequences_of_any_length_where_the_axis_is_named(tmp_path):
    """("T", 8): the file's length axis is symbolic, and the causal mask is made from the input's length."""
    model = randomized(xpnet.Sequential([Residual([MultiHeadAttention(8, 2)]), MultiHeadAttention(8, 4)], seed=0))
    proto = export_onnx(model, tmp_path / "m.onnx", input_shape=("T", 8))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", "T", 8]
    names = {t.name for t in proto.graph.initializer}
    assert set(model.state_dict()) <= names and "0.0.W_qkv" in names  # nested: the state dict's names
    for T in (1, 2, 9):
        X = np.random.default_rng(T).normal(size=(3, T, 8)).astype("float32")
        assert_close(run(tmp_path / "m.onnx", X), xpnet.to_numpy(model.predict(X)))
    with pytest.raises(ValueError, match=r"starts with Residual, so the shape of its input is not known: pass "
                                         r"input_shape"):
        export_onnx(model, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"or names for axes of any length such as \('T', 64\)"):
        export_onnx(model, tmp_path / "m.onnx", input_shape=("", 8))


def test_a_layer_inside_a_residual_without_an_exporter_is_named(tmp_path):
    model = xpnet.Sequential([Dense(3, 3), Residual([Tanh(), Doubler()])], seed=0)
    with pytest.raises(TypeError, match=r"export_onnx: layer 1\.1, Doubler\(\) .*has no ONNX exporter"):
        export_onnx(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_without_onnx_the_error_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # what a missing package looks like to import
    model = xpnet.Sequential([Dense(3, 2)], device="cpu", seed=0)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'xpnet\[onnx\]'"):
        export_onnx(model, tmp_path / "m.onnx")
    xpnet.save(model, tmp_path / "m.npz")
    assert cli.main(["export", str(tmp_path / "m.npz"), "--onnx", str(tmp_path / "m.onnx")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.splitlines()[-1] == ("xpnet: error: export_onnx needs the onnx package: pip install 'xpnet[onnx]' "
                                    "(or pip install onnx)")


# -- the command line ---------------------------------------------------------------------------------
@pytest.fixture
def no_env(monkeypatch, tmp_path):
    monkeypatch.setenv("XPNET_CACHE", str(tmp_path / "cache"))
    for var in ("XPNET_DEVICE", "XPNET_BACKEND"):
        monkeypatch.delenv(var, raising=False)


def _train_and_export(tmp_path, capsys, *train_args, opset=None):
    model_path, onnx_path = tmp_path / "model.npz", tmp_path / "model.onnx"
    assert cli.main(["train", "--device", "cpu", "--quiet", "--save", str(model_path), *train_args]) == 0
    capsys.readouterr()
    assert cli.main(["export", str(model_path), "--onnx", str(onnx_path),
                     *(["--opset", str(opset)] if opset else [])]) == 0
    out, err = capsys.readouterr()
    return xpnet.load(model_path, device="cpu"), onnx_path, out, err


def test_cli_round_trip_spirals(tmp_path, capsys, no_env):
    model, path, out, err = _train_and_export(
        tmp_path, capsys, "--dataset", "spirals", "--layers", "2,16,16,3", "--activation", "relu",
        "--loss", "softmax_cross_entropy", "--optimizer", "adam", "--epochs", "5", "--batch-size", "16",
        opset=15)
    assert out == (f"wrote {path}: ONNX opset 15, float32, input 'input' (batch, 2), output 'output' "
                   f"(batch, 3)\n") and err == ""
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    (X, _), (X_test, _) = xpnet.datasets.load("spirals")
    for rows in (X, X_test):
        assert_close(run(path, rows), xpnet.to_numpy(model.predict(rows)))


def test_cli_errors_are_one_line(tmp_path, capsys, no_env):
    model = xpnet.Sequential([Flatten(), Dense(4, 2)], seed=0)
    xpnet.save(model, tmp_path / "flat.npz")
    assert cli.main(["export", str(tmp_path / "flat.npz"), "--onnx", str(tmp_path / "x.onnx")]) == 1
    err = capsys.readouterr().err  # the command's option, not export_onnx's Python argument
    assert "pass it with --input-shape, e.g. --input-shape 28,28" in err and "input_shape=" not in err
    assert cli.main(["export", str(tmp_path / "flat.npz"), "--onnx", str(tmp_path / "x.onnx"),
                     "--input-shape", "2,2"]) == 0
    capsys.readouterr()
    assert cli.main(["export", str(tmp_path / "missing.npz"), "--onnx", str(tmp_path / "x.onnx")]) == 1
    assert capsys.readouterr().err.startswith("xpnet: error: ")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["export", str(tmp_path / "flat.npz"), "--onnx", "x.onnx", "--input-shape", "2,x"])
    assert exit_.value.code == 2


@pytest.mark.parametrize("train_args", [
    (),  # the tutorial's 784-200-10 sigmoid network, MSE, SGD, scale "tutorial"
    ("--layers", "784,64,10", "--activation", "relu", "--loss", "softmax_cross_entropy", "--optimizer", "adam",
     "--batch-size", "32", "--scale", "unit"),
], ids=["tutorial-sigmoid-mse", "relu-softmax-ce"])
def test_cli_round_trip_mnist(data_dir, train_args, tmp_path, capsys, no_env):
    model, path, out, _ = _train_and_export(tmp_path, capsys, "--dataset", "mnist", "--data-dir", data_dir,
                                            "--limit", "2000", *train_args)
    assert "input 'input' (batch, 784)" in out and "output 'output' (batch, 10)" in out
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    scale = model.metadata["scale"]
    assert {p.key: p.value for p in proto.metadata_props}["scale"] == scale
    _, (X_test, _) = xpnet.datasets.load_mnist(data_dir=data_dir, scale=scale, limit=2000, download=False)
    got, want = run(path, X_test), xpnet.to_numpy(model.predict(X_test))
    assert_close(got, want)
    np.testing.assert_array_equal(got.argmax(axis=1), want.argmax(axis=1))
