"""``xpnet train --model gpt`` (a character-level GPT, nanoGPT's baby Shakespeare run by default) and
``xpnet generate`` (text from such a model). :func:`train_gpt` reads as the run's steps, as ``train.py``'s."""

from __future__ import annotations

import contextlib
import math
import sys

from .. import datasets, models, optim, schedules
from ..callbacks import EpochLine
from ..datasets import Vocabulary
from ..distributed.threads import Threads
from ..model import load
from ..train.sources import TextWindows
from .resume import EpochTracker, on_interrupt

GPT = {"steps": 2000, "block_size": 64, "n_layer": 4, "n_head": 4, "n_embd": 128, "eval_interval": 250,
       "eval_iters": 20, "batch_size": 12, "lr": 1e-3, "weight_decay": 0.1, "warmup": 100, "dropout": 0.0}
"""nanoGPT's CPU command for tiny Shakespeare (its README's): the defaults of ``--model gpt``."""
BETAS, CLIP, MIN_LR = (0.9, 0.99), 1.0, 0.1  # beta2 0.99 for few tokens a step; the cosine ends at lr / 10
# the options of the other presets, which a GPT does not take (each is refused by name)
NOT_FOR_GPT = ("layers", "activation", "loss", "optimizer", "schedule", "batchnorm", "val_split", "early_stopping",
               "scale", "plot", "limit")


def train_gpt(args, comm, prepare, device, save) -> int:
    """Train the GPT ``args`` describe. ``prepare``, ``device`` and ``save`` are ``xpnet train``'s own steps
    (``cli/train.py``), given by it so that the two modules do not import each other."""
    _apply_defaults(args)
    root = comm is None or comm.is_root
    prepare(args, root)
    dev = device(args, comm)
    with contextlib.nullcontext() if comm is None else comm.root_first():  # one rank downloads
        train, val, vocab = datasets.load_text(args.dataset, data_dir=args.data_dir, download=not args.no_download)
    model = models.gpt(vocab.size, args.block_size, args.n_layer, args.n_head, args.n_embd, dropout=args.dropout,
                       device=dev, seed=args.seed, dtype=args.dtype)
    optimizer, schedule = gpt_optimizer(args.lr, args.weight_decay), gpt_schedule(args.lr, args.steps, args.warmup)
    if not args.quiet:
        print(_headline(args, model, vocab, train, val, dev, comm), flush=True)
    tracker = EpochTracker()
    try:
        history = model.fit(TextWindows(train, args.block_size), loss="softmax_cross_entropy", optimizer=optimizer,
                  epochs=args.epochs, steps_per_epoch=args.eval_interval, batch_size=args.batch_size,
                  schedule=schedule, validation_data=TextWindows(val, args.block_size),
                  validation_steps=args.eval_iters, evaluate_train=True, callbacks=[tracker, StepLine()],
                  checkpoint_dir=args.checkpoint_dir, resume_from=args.resume, verbose=0 if args.quiet else 1,
                  distributed=comm if comm is not None else Threads(args.threads) if args.threads else None)
    except KeyboardInterrupt as exc:
        return on_interrupt(exc, args, tracker, root, mpi=comm is not None)
    if not root:
        return 0
    if args.quiet and "val_loss" in history:  # the last report only
        last = {k: v[-1] for k, v in history.history.items()}
        print(step_line(len(history["loss"]), args.epochs, args.eval_interval, last), flush=True)
    if args.save:
        model.metadata.update(dataset=args.dataset, model="gpt", vocabulary=vocab.get_config(), seed=args.seed,
                              **{k: getattr(args, k) for k in GPT})
        save(model, args.save, model.metadata)
        if not args.quiet:
            print(f"xpnet: saved the model and its vocabulary to {args.save}")
    return 0


def gpt_optimizer(lr: float = GPT["lr"], weight_decay: float = GPT["weight_decay"]):
    """nanoGPT's optimizer: AdamW, betas (0.9, 0.99), decay on the matrices only, the gradients clipped to norm 1."""
    return optim.AdamW(lr, beta1=BETAS[0], beta2=BETAS[1], weight_decay=weight_decay, clip_norm=CLIP,
                       weight_decay_on="matrices")


def gpt_schedule(lr: float = GPT["lr"], steps: int = GPT["steps"], warmup: int = GPT["warmup"]):
    """nanoGPT's ``get_lr``: step ``t`` of the warm-up at ``lr (t + 1) / (warmup + 1)`` (``start_factor``
    ``1 / (warmup + 1)``), then a cosine down to ``lr / 10`` at ``steps``."""
    return schedules.CosineDecay(lr, total=steps, warmup=warmup, min_lr=lr * MIN_LR, start_factor=1.0 / (warmup + 1),
                                 per="step")


def _apply_defaults(args) -> None:
    """Fill the GPT's options left unset with :data:`GPT`'s values; refuse those of the other presets."""
    given = [name for name in NOT_FOR_GPT if getattr(args, name) not in (None, False)]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ValueError(f"{flags} {'does' if len(given) == 1 else 'do'} not apply to --model gpt (a GPT trains with "
                         f"AdamW, a warm-up and a cosine, on the text's next characters); leave "
                         f"{'it' if len(given) == 1 else 'them'} out")
    if args.epochs != 1:
        raise ValueError("--epochs does not apply to --model gpt: say how long it trains with --steps (default "
                         f"{GPT['steps']}), and how often it reports with --eval-interval")
    args.dataset = args.dataset or "shakespeare"
    if args.dataset not in datasets.TEXTS:
        raise ValueError(f"--model gpt trains on a text, one of {', '.join(datasets.TEXTS)}; {args.dataset} holds "
                         f"rows of numbers: use --model mlp for it")
    for name, value in GPT.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    args.warmup = int(args.warmup)
    if args.steps % args.eval_interval:
        raise ValueError(f"--steps {args.steps} is not a multiple of --eval-interval {args.eval_interval} (the loss is "
                         f"reported every --eval-interval steps): use --steps "
                         f"{max(1, round(args.steps / args.eval_interval)) * args.eval_interval}")
    if args.warmup >= args.steps:
        raise ValueError(f"--warmup {args.warmup} steps leaves none of the {args.steps} --steps for the cosine: use a "
                         f"smaller --warmup or more --steps")
    if args.n_embd % args.n_head:
        raise ValueError(f"--n-embd {args.n_embd} must be a multiple of --n-head {args.n_head} (each head takes "
                         f"n_embd / n_head of each vector)")
    args.epochs = args.steps // args.eval_interval  # an epoch of fit: the steps between two reports


def _headline(args, model, vocab, train, val, dev, comm) -> str:
    size = sum(math.prod(p.shape) for p in model.parameters().values())
    ranks = (f", {comm.size} ranks" if comm else "") + (f", {args.threads} threads" if args.threads else "")
    return (f"xpnet: training a GPT of {args.n_layer} blocks, {args.n_head} heads, {args.n_embd} wide, block "
            f"{args.block_size}, dropout {args.dropout:g} ({size:,} parameters, tied embeddings) on "
            f"{args.dataset}: {train.shape[0]:,} train / {val.shape[0]:,} val characters, {vocab.size} symbols; AdamW "
            f"lr {args.lr:g} betas {BETAS} weight decay {args.weight_decay:g} on matrices, clip {CLIP:g}, "
            f"{args.warmup} warm-up steps then a cosine to {args.lr * MIN_LR:g} over {args.steps} steps, batch "
            f"{args.batch_size}; {dev}, {args.dtype}{ranks}")


class StepLine(EpochLine):
    """nanoGPT's report every ``--eval-interval`` steps (fit's epochs), in place of fit's epoch line:
    ``step 250/2000: train loss 1.9876, val loss 2.0712``, then the steps' mean loss and the time a step."""

    def __init__(self):
        super().__init__("val")

    def on_epoch_end(self, epoch, logs=None):
        if self.params["verbose"] >= 1:
            print(step_line(epoch + 1, self.params["epochs"], self.params["steps"], logs), flush=True)


def step_line(epoch: int, epochs: int, steps: int, logs: dict) -> str:
    """The report after ``epoch`` (from 1) of ``epochs`` fit epochs of ``steps`` steps each."""
    return (f"step {epoch * steps}/{epochs * steps}: train loss {logs['train_loss']:.4f}, val loss "
            f"{logs['val_loss']:.4f}  (mean loss of the steps {logs['loss']:.4f}, {1000 * logs['seconds'] / steps:.0f} "
            f"ms a step)")


def evaluate_gpt(args, model) -> int:
    """``xpnet evaluate`` of a model ``xpnet train --model gpt`` saved: its loss on the same fixed windows its
    training reported on (``--eval-iters`` batches of its batch size; ``--split test``: the validation text)."""
    meta = model.metadata
    if args.dataset not in (None, meta.get("dataset")):
        raise ValueError(f"{args.model} is a GPT trained on {meta.get('dataset')}; it evaluates on that text only "
                         f"(leave --dataset out)")
    train, val, _ = datasets.load_text(meta["dataset"], data_dir=args.data_dir, download=not args.no_download)
    ids, name = (train, "training") if args.split == "train" else (val, "validation")
    result = model.evaluate(TextWindows(ids, meta["block_size"]), loss="softmax_cross_entropy",
                            batch_size=meta["batch_size"], steps=meta["eval_iters"])
    print(f"{'train' if args.split == 'train' else 'val'} loss {result['loss']:.4f}  ({meta['eval_iters']} batches "
          f"of {meta['batch_size']} windows of {meta['block_size']} characters of {meta['dataset']}'s {name} text, "
          f"{model.device})")
    return 0


def cmd_generate(args) -> int:
    """``xpnet generate MODEL``: the prompt and the characters the model draws after it, on stdout."""
    model = load(args.model, device=args.device, backend=args.backend)
    config = (model.metadata or {}).get("vocabulary")
    if config is None:
        raise ValueError(f"{args.model} has no vocabulary in its metadata, so its ids cannot be read as text: train it "
                         f"with 'xpnet train --model gpt --save ...', or save it with model.metadata['vocabulary'] = "
                         f"vocab.get_config()")
    vocab = Vocabulary.from_config(config)
    ids = model.generate(vocab.encode(args.prompt), args.tokens, temperature=args.temperature, top_k=args.top_k,
                         seed=args.seed)
    sys.stdout.write(vocab.decode(ids) + "\n")
    return 0
