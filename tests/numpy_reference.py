"""Independent float64 NumPy references, written from the published formulas and never calling xpnet.

Tests compare xpnet (on every backend, in float32) with these. Each function is the textbook equation,
kept plain on purpose: a bug has to be made twice, in two different ways, to slip through.
"""

from __future__ import annotations

import numpy as np


# -- optimizers (one step on a dict of float64 arrays; ``state`` is a dict the caller keeps) ----------
def central_difference(f, host, eps=1e-6):
    """d f() / d host by central differences, one entry of the NumPy array ``host`` at a time (``f`` reads it)."""
    grad = np.zeros_like(host)
    for i in np.ndindex(host.shape):
        old = host[i]
        host[i] = old + eps
        plus = f()
        host[i] = old - eps
        minus = f()
        host[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def clip(grads, max_norm):
    """torch.nn.utils.clip_grad_norm_: every gradient times min(1, max_norm / (global L2 norm + 1e-6))."""
    norm = np.sqrt(sum((g ** 2).sum() for g in grads.values()))
    return {k: g * min(1.0, max_norm / (norm + 1e-6)) for k, g in grads.items()}


def sgd_step(params, grads, state, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """torch.optim.SGD (dampening 0): ``g += wd p``; ``v = mu v + g`` (``v = g`` at the first step), then
    ``p -= lr v``, or ``p -= lr (g + mu v)`` with Nesterov. Plain SGD: ``p -= lr g``."""
    for k, g in grads.items():
        g = g + weight_decay * params[k]
        if momentum:
            v = state[k] = g.copy() if k not in state else momentum * state[k] + g
            g = g + momentum * v if nesterov else v
        params[k] = params[k] - lr * g


def adam_step(params, grads, state, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False):
    """Kingma & Ba 2015, Algorithm 1: bias-corrected moments, ``p -= lr m_hat / (sqrt(v_hat) + eps)``.
    ``weight_decay``: L2 added to the gradient (torch.optim.Adam), or with ``decoupled`` (AdamW, Loshchilov
    & Hutter 2019, as torch.optim.AdamW) ``p *= 1 - lr wd`` before the step."""
    t = state["t"] = state.get("t", 0) + 1
    for k, g in grads.items():
        if decoupled:
            params[k] = params[k] * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * params[k]
        m, v = state.get(k, (np.zeros_like(g), np.zeros_like(g)))
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        state[k] = (m, v)
        m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
        params[k] = params[k] - lr * m_hat / (np.sqrt(v_hat) + eps)


def rmsprop_step(params, grads, state, lr, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0):
    """torch.optim.RMSprop (not centered): ``s = alpha s + (1 - alpha) g^2``; ``d = g / (sqrt(s) + eps)``;
    with momentum ``b = mu b + d`` and ``p -= lr b``, else ``p -= lr d``."""
    for k, g in grads.items():
        g = g + weight_decay * params[k]
        s = state[k] = alpha * state.get(k, np.zeros_like(g)) + (1 - alpha) * g * g
        d = g / (np.sqrt(s) + eps)
        if momentum:
            d = state[("b", k)] = momentum * state.get(("b", k), np.zeros_like(g)) + d
        params[k] = params[k] - lr * d


# -- a multilayer perceptron: ("dense", W, b) / ("relu",) / ("tanh",) / ("sigmoid",) ------------------
def forward(layers, x):
    """Output and the per-layer inputs (what backward needs)."""
    inputs = []
    for spec in layers:
        inputs.append(x)
        if spec[0] == "dense":
            x = x @ spec[1] + spec[2]
        elif spec[0] == "relu":
            x = np.where(x > 0, x, 0.0)
        elif spec[0] == "tanh":
            x = np.tanh(x)
        elif spec[0] == "sigmoid":
            x = 1 / (1 + np.exp(-x))
        else:
            raise ValueError(spec[0])
    return x, inputs


def backward(layers, inputs, dy):
    """Gradients ``[(dW, db) or None per layer]`` from ``dL/doutput``."""
    grads = [None] * len(layers)
    for i in reversed(range(len(layers))):
        spec, x = layers[i], inputs[i]
        if spec[0] == "dense":
            grads[i] = (x.T @ dy, dy.sum(axis=0))
            dy = dy @ spec[1].T
        elif spec[0] == "relu":
            dy = dy * (x > 0)
        elif spec[0] == "tanh":
            dy = dy * (1 - np.tanh(x) ** 2)
        elif spec[0] == "sigmoid":
            s = 1 / (1 + np.exp(-x))
            dy = dy * s * (1 - s)
    return grads


# -- losses: per-sample values and dL/dz of the batch mean -------------------------------------------
def softmax_cross_entropy(z, labels):
    shifted = z - z.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    onehot = np.eye(z.shape[1])[labels]
    per_sample = -(onehot * log_p).sum(axis=1)
    return per_sample, (np.exp(log_p) - onehot) / z.shape[0]


def mse(out, target):
    """xpnet's MSE: ``1/2 sum_outputs (o - t)^2`` per sample (the seeds' squared error)."""
    per_sample = 0.5 * ((out - target) ** 2).sum(axis=1)
    return per_sample, (out - target) / out.shape[0]


def binary_cross_entropy(z, target):
    """BCE on logits, per sample averaged over the outputs: ``-t log s(z) - (1 - t) log(1 - s(z))``."""
    s = 1 / (1 + np.exp(-z))
    per_sample = (-(target * np.log(s) + (1 - target) * np.log(1 - s))).mean(axis=1)
    return per_sample, (s - target) / z.size


def train_steps(layers, X, y, loss, opt, steps, batch, **opt_kwargs):
    """``steps`` steps over consecutive (wrapping) batches; returns the per-step batch-mean losses.

    ``layers`` is updated in place (its ``("dense", W, b)`` entries replaced)."""
    step = {"sgd": sgd_step, "adam": adam_step}[opt]
    state, out = {}, []
    for s in range(steps):
        lo = (s * batch) % X.shape[0]
        xb, yb = X[lo:lo + batch], y[lo:lo + batch]
        z, inputs = forward(layers, xb)
        per_sample, dz = loss(z, yb)
        out.append(per_sample.mean())
        grads = backward(layers, inputs, dz)
        params = {f"{i}.{n}": layers[i][1 + j] for i in range(len(layers)) if layers[i][0] == "dense"
                  for j, n in enumerate("Wb")}
        flat = {f"{i}.{n}": grads[i][j] for i in range(len(layers)) if grads[i] is not None
                for j, n in enumerate("Wb")}
        step(params, flat, state, **opt_kwargs)
        for i in range(len(layers)):
            if layers[i][0] == "dense":
                layers[i] = ("dense", params[f"{i}.W"], params[f"{i}.b"])
    return np.array(out)
