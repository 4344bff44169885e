"""The exporters of the plain layers: each layer becomes the ONNX operators of its inference forward pass::

    Dense        Gemm(x, W, b) = x W + b      (W is (in, out): no transpose; MatMul without a bias; on input of
                 other than 2 axes, or of a rank not known, Add(MatMul(x, W), b): Gemm takes matrices only)
    Sigmoid, Tanh, Relu, LeakyRelu(alpha), Softmax(axis=-1), Identity, Flatten(axis=1)
    Step         Cast(GreaterOrEqual(x, 0))   (1 where x >= 0, else 0)
    Dropout      Identity                      (inverted dropout is the identity at inference)
    BatchNorm1d, BatchNorm2d   BatchNormalization(x, gamma, beta, running_mean, running_var, epsilon)
    Conv2D       Conv(x, W, b, kernel_shape, strides, pads)   (the same (out, in, kh, kw) layout)
    MaxPool2D, AvgPool2D       MaxPool / AveragePool(kernel_shape, strides)   (no padding: floor, as xpnet)
    GlobalAvgPool2D            Flatten(GlobalAveragePool(x))   ((N, C, 1, 1) in ONNX, (N, C) in xpnet)
    Reshape      Reshape(x, [0, *shape])       (0 keeps the batch size)
"""

from __future__ import annotations

from .graph import exporter


# -- the table --------------------------------------------------------------------------------------
@exporter("Dense")
def _dense(layer, x, g):
    if not layer.bias:
        return g.node("MatMul", [x, g.weight("W", layer.params["W"])])
    if g.input_rank == 2:
        return g.node("Gemm", [x, g.weight("W", layer.params["W"]), g.weight("b", layer.params["b"])])
    return g.node("Add", [g.node("MatMul", [x, g.weight("W", layer.params["W"])]), g.weight("b", layer.params["b"])])


@exporter("Sigmoid")
def _sigmoid(layer, x, g):
    # xpnet clamps x at -80 first (exp stays finite); that changes only outputs below 1.8e-35.
    return g.node("Sigmoid", [x])


@exporter("Tanh")
def _tanh(layer, x, g):
    return g.node("Tanh", [x])


@exporter("ReLU")
def _relu(layer, x, g):
    return g.node("Relu", [x])


@exporter("LeakyReLU")
def _leaky_relu(layer, x, g):
    return g.node("LeakyRelu", [x], alpha=layer.alpha)


@exporter("Softmax")
def _softmax(layer, x, g):
    return g.node("Softmax", [x], axis=-1)


@exporter("Step")
def _step(layer, x, g):
    return g.node("Cast", [g.node("GreaterOrEqual", [x, g.scalar("zero", 0.0)])], to=g.elem_type)


@exporter("Identity", "Dropout")
def _identity(layer, x, g):
    return g.node("Identity", [x])


@exporter("Flatten")
def _flatten(layer, x, g):
    return g.node("Flatten", [x], axis=1)


@exporter("Conv2D")
def _conv(layer, x, g):
    (ph, pw) = layer.padding
    inputs = [x, g.weight("W", layer.params["W"])] + ([g.weight("b", layer.params["b"])] if layer.bias else [])
    return g.node("Conv", inputs, kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                  pads=[ph, pw, ph, pw])


@exporter("MaxPool2D")
def _max_pool(layer, x, g):
    return g.node("MaxPool", [x], kernel_shape=list(layer.kernel_size), strides=list(layer.stride))


@exporter("AvgPool2D")
def _avg_pool(layer, x, g):
    return g.node("AveragePool", [x], kernel_shape=list(layer.kernel_size), strides=list(layer.stride))


@exporter("GlobalAvgPool2D")
def _global_avg_pool(layer, x, g):
    return g.node("Flatten", [g.node("GlobalAveragePool", [x])], axis=1)


@exporter("Reshape")
def _reshape(layer, x, g):
    return g.node("Reshape", [x, g.ints("shape", [0, *layer.shape])])


@exporter("BatchNorm1d", "BatchNorm2d")
def _batch_norm(layer, x, g):
    inputs = [g.weight("gamma", layer.params["gamma"]), g.weight("beta", layer.params["beta"]),
              g.weight("running_mean", layer.buffers["running_mean"]),
              g.weight("running_var", layer.buffers["running_var"])]
    return g.node("BatchNormalization", [x, *inputs], epsilon=layer.eps)
