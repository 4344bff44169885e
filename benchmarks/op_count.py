#!/usr/bin/env python
"""Operations and host syncs per training step on the generic (CuPy's) path: issue 25's table.

Each figure is one training step (forward, loss, backward, optimizer.step, after one warm-up step on the
same batch) run on array-api-strict, which executes the generic Array API lines that CuPy executes, with
every namespace call and every array operator or indexing counted once (an operation's own inner calls
are not counted): to within what one call launches, the kernel launches of that step on a GPU. Host
syncs count the times an array reached the host (float(), bool(), DLPack, ...): on CUDA, each one waits
for the device. The counter is tests/opcount.py; tests/test_op_counts.py holds the same counts to
ceilings.

Networks: the MLP 784-256-10 (ReLU) at two batch sizes, and the ``xpnet train --model cnn`` network
(two 3x3 convolutions, max-pool, dropout, dense 128) at two batch sizes (any: the generic path no
longer cuts the batch into NumPy's cache-sized chunks, so the counts do not depend on it). Both with
SGD and AdamW at their defaults and softmax cross-entropy, on random MNIST-shaped rows (the counts do
not depend on the values).

    python benchmarks/op_count.py                    # the table (seconds)
    python benchmarks/op_count.py --cnn-batches 6,30 --by-op
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
import opcount  # noqa: E402  (the counter, shared with the test suite)


def _batches(text: str) -> list[int]:
    try:
        sizes = [int(b) for b in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or any(b < 1 for b in sizes):
        raise argparse.ArgumentTypeError(f"expected positive batch sizes separated by commas (32,256), got {text!r}")
    return sizes


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mlp-batches", type=_batches, default=[32, 256], metavar="B,B",
                   help="the MLP's batch sizes (default 32,256)")
    p.add_argument("--cnn-batches", type=_batches, default=[30, 168], metavar="B,B",
                   help="the CNN's batch sizes (default 30,168)")
    p.add_argument("--networks", default="mlp,cnn", help="which networks, comma-separated (default mlp,cnn)")
    p.add_argument("--by-op", action="store_true",
                   help="also print each step's operations by name and by phase (forward, loss, backward, step)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write every count as JSON")
    args = p.parse_args(argv)
    args.networks = [n.strip() for n in args.networks.split(",") if n.strip()]
    unknown = [n for n in args.networks if n not in opcount.NETWORKS]
    if unknown:
        p.error(f"--networks: unknown {', '.join(unknown)}; choose from {', '.join(opcount.NETWORKS)}")
    return args


def measure(args) -> list[dict]:
    rows = []
    for network in args.networks:
        batches = args.mlp_batches if network == "mlp" else args.cnn_batches
        for optimizer in opcount.OPTIMIZERS:
            for batch in batches:
                tally = opcount.count_network(network, optimizer, batch)
                rows.append({"network": network, "optimizer": optimizer, "batch": batch, "ops": tally.total,
                             "syncs": len(tally.syncs), "sync_doors": tally.syncs, "phases": tally.phases,
                             "by_op": dict(tally.ops.most_common())})
    return rows


def table(rows) -> list[str]:
    out = ["| network, optimizer | ops per step (batch: count) | host syncs per step |", "|---|---|---|"]
    keys = list(dict.fromkeys((r["network"], r["optimizer"]) for r in rows))
    for network, optimizer in keys:
        mine = [r for r in rows if (r["network"], r["optimizer"]) == (network, optimizer)]
        counts = ", ".join(f"{r['batch']}: {r['ops']}" for r in mine)
        syncs = ", ".join(str(r["syncs"]) for r in mine)
        out.append(f"| {opcount.NETWORKS[network][0]}, {opcount.OPTIMIZERS[optimizer]} | {counts} | {syncs} |")
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    rows = measure(args)
    print("\n".join(table(rows)))
    if args.by_op:
        for r in rows:
            phases = ", ".join(f"{k} {v}" for k, v in r["phases"].items())
            ops = ", ".join(f"{k} {v}" for k, v in r["by_op"].items())
            print(f"\n{r['network']} {r['optimizer']} batch {r['batch']}: {r['ops']} ({phases})\n  {ops}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
