"""Seed 000's appended-bias layer equals a Dense layer with a separate bias: same outputs, same gradients.

Seed 000 ("Implementation of a simple neural network") appends a constant 1 to each input,
``X -> [X, 1]``, and folds the bias into the weights as their last row, ``W_ext = [W; b]`` of shape
``(in + 1, out)``, so ``act([X, 1] @ W_ext) = act(X @ W + b)``. Its gradient ``[X, 1]^T dV`` is
``[X^T dV; sum(dV)] = [dW; db]``. Here both run as xpnet layers on the chosen device: a
``Dense(in + 1, out, bias=False)`` fed ``[X, 1]`` and a ``Dense(in, out)``, each followed by a Sigmoid
and the same loss, and the max absolute differences are printed.

    python examples/appended_bias.py [--device cpu] [--backend array-api-strict]
"""

import argparse


import xpnet
from xpnet import MSE, Dense, Sigmoid
from xpnet.cli import add_device_options, run_script


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_device_options(parser)
    parser.add_argument("--dtype", default="float64", help="float64 (default) or float32")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--inputs", type=int, default=5)
    parser.add_argument("--outputs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    dev = xpnet.device(args.device, backend=args.backend)
    xp = dev.xp
    rng = xpnet.backend.host_rng(args.seed)
    n, n_in, n_out = args.batch, args.inputs, args.outputs

    # Dense with a separate bias (xpnet's layout) and random weights, bias included.
    dense = Dense(n_in, n_out)
    dense.build(dev, rng, args.dtype)
    dense.params["b"] = dev.asarray(rng.normal(size=n_out), args.dtype)
    W, b = dense.params["W"], dense.params["b"]
    # Seed 000's layer: the bias is the last row of the weights, the input gets a constant 1 appended.
    appended = Dense(n_in + 1, n_out, bias=False)
    appended.build(dev, rng, args.dtype)
    appended.params["W"] = xp.concat([W, xp.reshape(b, (1, n_out))], axis=0)

    X = dev.asarray(rng.random((n, n_in)), args.dtype)
    target = dev.asarray(rng.random((n, n_out)), args.dtype)
    ones = xp.ones((n, 1), dtype=X.dtype, device=dev.native)
    X_ext = xp.concat([X, ones], axis=1)  # equation (1) of the seed: [x_0 ... x_n 1]

    results = {}
    for name, layer, inputs in (("dense", dense, X), ("appended", appended, X_ext)):
        act, loss = Sigmoid(), MSE()
        y = act.forward(layer.forward(inputs, training=True))
        value = loss.forward(y, target)
        dx = layer.backward(act.backward(loss.backward()))
        results[name] = (y, value, dx, dict(layer.grads))

    y1, l1, dx1, g1 = results["dense"]
    y2, l2, dx2, g2 = results["appended"]
    grad_ext = xp.concat([g1["W"], xp.reshape(g1["b"], (1, n_out))], axis=0)

    def diff(a, b):
        return float(xpnet.to_numpy(xp.max(xp.abs(a - b))))

    print(f"batch {n}, {n_in} inputs -> {n_out} sigmoid outputs, on {dev} ({args.dtype})")
    print(f"  outputs   act([X, 1] @ [W; b]) vs act(X @ W + b):   max |diff| = {diff(y2, y1):.3g}")
    loss_diff = abs(float(xpnet.to_numpy(l2 - l1)))
    print(f"  loss                                              |diff| = {loss_diff:.3g}")
    print(f"  gradient  d/dW_ext vs [dW; db]:                   max |diff| = {diff(g2['W'], grad_ext):.3g}")
    print(f"  input gradient (the appended 1's column dropped): max |diff| = {diff(dx2[:, :n_in], dx1):.3g}")
    worst = max(diff(y2, y1), diff(g2["W"], grad_ext), diff(dx2[:, :n_in], dx1))
    tol = 1e-12 if args.dtype == "float64" else 1e-5
    print("same outputs and gradients" if worst <= tol else f"DIFFERENT (max {worst:.3g} > {tol:g})")
    return 0 if worst <= tol else 1


if __name__ == "__main__":
    run_script(main)
