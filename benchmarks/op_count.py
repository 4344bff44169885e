#!/usr/bin/env python
"""Operations and host syncs per training step, on the generic (CuPy's) path or on a device's own backend.

Each figure is one training step (forward, loss, backward, optimizer.step, after one warm-up step on the
same batch) with every namespace call of the standard and every array operator or indexing counted once
(an operation's own inner calls are not counted): to within what one call launches, the kernel launches
of that step on a GPU. Host syncs count the times an array reached the host (float(), bool(), DLPack,
...): on CUDA, each one waits for the device. The counter is tests/opcount.py; tests/test_op_counts.py
holds the generic counts to ceilings.

By default the step runs on array-api-strict, which executes the generic Array API lines that CuPy
executes. ``--device cuda`` counts on the GPU itself (CuPy, or ``--backend torch``), and ``--device cpu
--backend numpy|torch`` on those CPU backends; the table then gives the generic count beside each. They
are equal where the backend runs the generic lines; where it has routines of its own (NumPy's strided
im2col and col2im, NumPy's and torch-CPU's cache-sized chunks of Conv2D's batch, their optimizers stepping
each parameter array rather than the flat buffer at once), its count is its own.

Networks: the MLP 784-256-10 (ReLU) at two batch sizes, and the ``xpnet train --model cnn`` network
(two 3x3 convolutions, max-pool, dropout, dense 128) at two batch sizes (any: the generic path does not
cut the batch into NumPy's cache-sized chunks, so its counts do not depend on it). Both with SGD and
AdamW at their defaults and softmax cross-entropy, on random MNIST-shaped rows (the counts do not depend
on the values). Exit status 1 when a step synced with the host (the target is none).

    python benchmarks/op_count.py                    # the table (seconds)
    python benchmarks/op_count.py --cnn-batches 6,30 --by-op
    python benchmarks/op_count.py --device cuda --json op-counts.json      # ci/gpu.sh's step
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
import opcount  # noqa: E402  (the counter, shared with the test suite)

GENERIC = "array-api-strict"
DEFAULT_BACKEND = {"cpu": GENERIC, "cuda": "cupy"}


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
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the step runs (default cpu)")
    p.add_argument("--backend", choices=opcount.BACKENDS, default=None,
                   help=f"the array library (default: {GENERIC} on the CPU, the generic path; cupy on CUDA)")
    p.add_argument("--by-op", action="store_true",
                   help="also print each step's operations by name and by phase (forward, loss, backward, step)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write every count as JSON")
    args = p.parse_args(argv)
    args.networks = [n.strip() for n in args.networks.split(",") if n.strip()]
    unknown = [n for n in args.networks if n not in opcount.NETWORKS]
    if unknown:
        p.error(f"--networks: unknown {', '.join(unknown)}; choose from {', '.join(opcount.NETWORKS)}")
    args.backend = args.backend or DEFAULT_BACKEND[args.device]
    from xpnet.backend import LIBRARIES

    kinds = LIBRARIES[args.backend].KINDS
    if args.device not in kinds:
        p.error(f"--backend {args.backend} runs on {' or '.join(kinds)}, not on --device {args.device}")
    return args


def measure(args) -> list[dict]:
    rows = []
    for network in args.networks:
        batches = args.mlp_batches if network == "mlp" else args.cnn_batches
        for optimizer in opcount.OPTIMIZERS:
            for batch in batches:
                tally = opcount.count_network(network, optimizer, batch, backend=args.backend, device=args.device)
                generic = None if args.backend == GENERIC else opcount.count_network(network, optimizer, batch).total
                rows.append({"network": network, "optimizer": optimizer, "batch": batch, "backend": args.backend,
                             "device": args.device, "ops": tally.total, "generic_ops": generic,
                             "syncs": len(tally.syncs), "sync_doors": tally.syncs, "phases": tally.phases,
                             "by_op": dict(tally.ops.most_common())})
    return rows


def table(rows, backend: str, device: str) -> list[str]:
    compared = backend != GENERIC
    out = [f"Operations per training step, {backend} on {device}" + (" (the generic path)" if not compared else ""),
           "", "| network, optimizer | ops per step (batch: count) |"
           + (f" generic path ({GENERIC}) |" if compared else "") + " host syncs per step |",
           "|---|---|" + ("---|" if compared else "") + "---|"]
    keys = list(dict.fromkeys((r["network"], r["optimizer"]) for r in rows))
    for network, optimizer in keys:
        mine = [r for r in rows if (r["network"], r["optimizer"]) == (network, optimizer)]
        counts = ", ".join(f"{r['batch']}: {r['ops']}" for r in mine)
        generic = f" {', '.join(str(r['generic_ops']) for r in mine)} |" if compared else ""
        syncs = ", ".join(str(r["syncs"]) for r in mine)
        out.append(f"| {opcount.NETWORKS[network][0]}, {opcount.OPTIMIZERS[optimizer]} | {counts} |{generic} {syncs} |")
    if compared:
        out += ["", _own_routines(backend, any(r["ops"] != r["generic_ops"] for r in rows))]
    return out


def _own_routines(backend: str, differs: bool) -> str:
    """Why the backend's counts may differ from the generic path's: the routines it defines itself."""
    from xpnet.backend import LIBRARIES, ROUTINES

    lib = LIBRARIES[backend]
    own = [n for n in ("asarray", "random_uniform", *ROUTINES) if n in vars(type(lib))]
    said = f"{backend} defines its own {', '.join(own)}" if own else f"{backend} defines no routines of its own"
    if not differs:
        return f"Every count equals the generic path's ({said})."
    return (f"Where a count differs from the generic path's, {backend}'s own routines ran instead of the generic "
            f"lines ({said}; im2col_chunk: Conv2D's batch in cache-sized chunks on the CPU, so the CNN's count "
            f"grows with the batch; step_at_once: the optimizer steps each parameter array on the CPU, not the "
            f"flat buffer at once; each other routine counts as one operation).")


def main(argv=None) -> int:
    args = parse_args(argv)
    rows = measure(args)
    print("\n".join(table(rows, args.backend, args.device)))
    if args.by_op:
        for r in rows:
            phases = ", ".join(f"{k} {v}" for k, v in r["phases"].items())
            ops = ", ".join(f"{k} {v}" for k, v in r["by_op"].items())
            print(f"\n{r['network']} {r['optimizer']} batch {r['batch']}: {r['ops']} ({phases})\n  {ops}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    synced = [r for r in rows if r["syncs"]]
    for r in synced:
        print(f"op_count: a {r['network']} step with {r['optimizer']} at batch {r['batch']} read arrays back to "
              f"the host {r['syncs']} time(s) ({', '.join(r['sync_doors'])}); on CUDA each waits for the device",
              file=sys.stderr)
    return 1 if synced else 0


if __name__ == "__main__":
    from xpnet.cli import run_script

    run_script(main)  # a device that cannot be had: one line "op_count.py: error: ...", exit 1
