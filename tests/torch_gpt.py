"""A PyTorch GPT of the shape ``xpnet.models.gpt`` builds, and the training rule of nanoGPT's baby Shakespeare run,
written here from ``torch.nn`` modules and functional ops (nanoGPT's architecture and configuration are the
facts we match; its code is not copied). The oracle of tests/test_gpt.py (gradients, the first steps' losses)
and the baseline of benchmarks/bench_gpt.py.

The network, pre-norm, GPT-2's layout (biases in every Linear but the head, LayerNorm with gamma and beta)::

    x = wte[ids] + wpe[:T];  x = drop(x)
    n_layer x:  x = x + drop(proj(attention(ln_1(x))))            attention: causal, n_head heads, [q | k | v]
                x = x + drop(mlp_proj(gelu_tanh(fc(ln_2(x)))))    fc: d -> 4d, mlp_proj: 4d -> d
    logits = ln_f(x) @ wte^T   (tie=True; else a Linear(d, vocab, bias=False))

The training rule: AdamW (betas (0.9, 0.99), eps 1e-8), weight decay 0.1 on the parameters with 2 or more
axes only (nanoGPT's two parameter groups), the gradients' global norm clipped to 1.0, and the learning rate
of :func:`lr_at` (``warmup`` linear steps, then a cosine from ``lr`` to ``min_lr`` at ``total``).

    >>> net = from_xpnet(xpnet_model)                    # the same weights, torch's layouts
    >>> opt = optimizer(net)
    >>> loss = train_step(net, opt, x, y, lr_at(0))      # x, y: (B, T) int64 tensors

Weights and names: :func:`names` lists, for an xpnet GPT of ``n_layer`` blocks, each xpnet state-dict key with
its torch parameter name and whether the array is transposed between them (xpnet's Dense ``W`` is
``(in, out)``, torch's Linear ``weight`` ``(out, in)``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

BABY = {"block_size": 64, "batch_size": 12, "n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0,
        "lr": 1e-3, "min_lr": 1e-4, "warmup": 100, "steps": 2000, "betas": (0.9, 0.99), "eps": 1e-8,
        "weight_decay": 0.1, "clip": 1.0}
"""nanoGPT's CPU command for tiny Shakespeare (its README), as numbers: the xpnet CLI's defaults for --model gpt."""


class Block(nn.Module):
    """One transformer block: attention, then the MLP, each as ``x + f(layer_norm(x))``."""

    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = nn.Linear(n_embd, 3 * n_embd)  # [q | k | v], each split into n_head heads
        self.proj = nn.Linear(n_embd, n_embd)
        self.drop_1 = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.fc = nn.Linear(n_embd, 4 * n_embd)
        self.mlp_proj = nn.Linear(4 * n_embd, n_embd)
        self.drop_2 = nn.Dropout(dropout)

    def attention(self, x):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.attn(x).split(C, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))

    def forward(self, x):
        x = x + self.drop_1(self.attention(self.ln_1(x)))
        return x + self.drop_2(self.mlp_proj(F.gelu(self.fc(self.ln_2(x)), approximate="tanh")))


class TorchGPT(nn.Module):
    """The GPT: ``forward(ids) -> logits`` ``(B, T, vocab)``, :meth:`loss` the mean cross-entropy over B*T."""

    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int,
                 dropout: float = 0.0, tie: bool = True):
        super().__init__()
        self.vocab_size, self.block_size, self.n_layer, self.tie = vocab_size, block_size, n_layer, tie
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList([Block(n_embd, n_head, dropout) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = None if tie else nn.Linear(n_embd, vocab_size, bias=False)

    def forward(self, ids):
        T = ids.shape[1]
        x = self.drop(self.wte(ids) + self.wpe.weight[:T])
        for block in self.h:
            x = block(x)
        x = self.ln_f(x)
        return x @ self.wte.weight.T if self.tie else self.lm_head(x)

    def loss(self, ids, targets):
        logits = self(ids)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def names(n_layer: int, tie: bool = True) -> list:
    """``(xpnet key, torch parameter name, transposed)`` for every parameter of an xpnet GPT of ``n_layer`` blocks:
    layer 0 the Embedding, 1 the PositionalEmbedding, 2 Dropout, then per block ``a = 3 + 2 l`` (Residual of
    LayerNorm, MultiHeadAttention, Dropout) and ``m = a + 1`` (Residual of LayerNorm, Dense, GELU, Dense,
    Dropout), then the last LayerNorm and the head (no parameter of its own when tied)."""
    out = [("0.W", "wte.weight", False), ("1.W", "wpe.weight", False)]
    for l in range(n_layer):
        a, m, t = 3 + 2 * l, 4 + 2 * l, f"h.{l}."
        out += [(f"{a}.0.gamma", t + "ln_1.weight", False), (f"{a}.0.beta", t + "ln_1.bias", False),
                (f"{a}.1.W_qkv", t + "attn.weight", True), (f"{a}.1.b_qkv", t + "attn.bias", False),
                (f"{a}.1.W_o", t + "proj.weight", True), (f"{a}.1.b_o", t + "proj.bias", False),
                (f"{m}.0.gamma", t + "ln_2.weight", False), (f"{m}.0.beta", t + "ln_2.bias", False),
                (f"{m}.1.W", t + "fc.weight", True), (f"{m}.1.b", t + "fc.bias", False),
                (f"{m}.3.W", t + "mlp_proj.weight", True), (f"{m}.3.b", t + "mlp_proj.bias", False)]
    last = 3 + 2 * n_layer
    out += [(f"{last}.gamma", "ln_f.weight", False), (f"{last}.beta", "ln_f.bias", False)]
    if not tie:
        out.append((f"{last + 1}.W", "lm_head.weight", True))
    return out


def config_of(model) -> dict:
    """The ``TorchGPT`` arguments of an xpnet GPT (``xpnet.models.gpt``), read from its layers."""
    emb, pos, attn = model.layers[0], model.layers[1], model.layers[3].layers[1]
    n_layer = (len(model.layers) - 5) // 2
    head = model.layers[-1]
    return {"vocab_size": emb.num_embeddings, "block_size": pos.max_len, "n_layer": n_layer, "n_head": attn.heads,
            "n_embd": emb.dim, "dropout": model.layers[2].p, "tie": not head.params}


def copy_weights(model, net: TorchGPT) -> None:
    """Put the xpnet GPT ``model``'s weights into ``net`` (in ``net``'s dtype)."""
    state = model.state_dict()
    params = dict(net.named_parameters())
    with torch.no_grad():
        for key, name, transposed in names(net.n_layer, net.tie):
            w = torch.from_numpy(np.ascontiguousarray(state[key].T if transposed else state[key]))
            params[name].copy_(w.to(params[name].dtype))


def from_xpnet(model, dtype=None) -> TorchGPT:
    """A ``TorchGPT`` of ``model``'s shape with its weights, in ``dtype`` (default: the model's)."""
    net = TorchGPT(**config_of(model))
    net.to(dtype or {"float32": torch.float32, "float64": torch.float64}[model.dtype])
    copy_weights(model, net)
    return net


def as_xpnet(net: TorchGPT, grads: bool = False) -> dict:
    """``net``'s parameters (or, with ``grads``, their gradients) as host arrays under xpnet's keys and layouts."""
    params = dict(net.named_parameters())
    out = {}
    for key, name, transposed in names(net.n_layer, net.tie):
        t = params[name].grad if grads else params[name]
        a = t.detach().numpy()
        out[key] = np.ascontiguousarray(a.T if transposed else a)
    return out


def optimizer(net: TorchGPT, lr: float = BABY["lr"], betas=BABY["betas"], weight_decay: float = BABY["weight_decay"],
              eps: float = BABY["eps"]) -> torch.optim.AdamW:
    """AdamW with two parameter groups: weight decay on the parameters of 2 or more axes (the matrices and the
    embeddings), none on the biases and LayerNorm's gamma and beta. A tied ``wte`` is one parameter, once."""
    params = list(net.parameters())
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=False)


def lr_at(step: int, lr: float = BABY["lr"], min_lr: float = BABY["min_lr"], warmup: int = BABY["warmup"],
          total: int = BABY["steps"]) -> float:
    """The learning rate of step ``step`` (from 0): ``lr (step + 1) / (warmup + 1)`` while warming up, then
    ``min_lr + (lr - min_lr) (1 + cos(pi (step - warmup) / (total - warmup))) / 2``, and ``min_lr`` past ``total``."""
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    if step > total:
        return min_lr
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def train_step(net: TorchGPT, opt, x, y, lr: float, clip: float | None = BABY["clip"]) -> float:
    """One step on windows ``x`` and targets ``y`` (``(B, T)`` int64): the learning rate ``lr``, the loss's
    gradients, the global norm clipped to ``clip``, AdamW. Returns the loss before the step (a float)."""
    for group in opt.param_groups:
        group["lr"] = lr
    net.train()
    opt.zero_grad(set_to_none=True)
    loss = net.loss(x, y)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
    opt.step()
    return float(loss.detach())
