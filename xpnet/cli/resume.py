"""``xpnet train``'s side of resuming: where a run stood when Ctrl-C stopped it, and the command that goes on."""

from __future__ import annotations

import os
import shlex
import sys

from .. import checkpoint
from ..callbacks import Callback


class EpochTracker(Callback):
    """The epochs this process began: ``first`` and ``epoch`` (the last), from 0; ``None`` before any."""

    first = epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.first = epoch if self.first is None else self.first
        self.epoch = epoch


def resume_command(argv, path) -> str:
    """``xpnet ARGV``, its ``--resume`` (in any spelling argparse takes) replaced by ``--resume PATH``."""
    kept, value_next = [], False
    for token in argv:
        if value_next:
            value_next = False
            continue
        name, eq, _ = token.partition("=")
        if name.startswith("--re") and "--resume".startswith(name):
            value_next = not eq
            continue
        kept.append(token)
    return shlex.join(["xpnet", *kept, "--resume", os.fspath(path)])


def _lost(n: int, since=None) -> str:
    if since is None:
        what = "the finished epoch" if n == 1 else f"the {n} finished epochs"
    else:
        what = ("the epoch" if n == 1 else f"the {n} epochs") + f" finished since {since}"
    return f"{what} {'is' if n == 1 else 'are'} lost"


def _epoch_of(path):
    try:
        return checkpoint.read_checkpoint(path)[0]["epoch"]
    except (OSError, ValueError):
        return None


def interrupted(args, tracker: EpochTracker) -> str:
    """What Ctrl-C in epoch ``tracker.epoch`` leaves: the checkpoint to go on from and the exact command,
    or what is lost and the option that would have kept it."""
    head = f"xpnet: interrupted in epoch {tracker.epoch + 1} of {args.epochs}"
    done = tracker.epoch - tracker.first  # the epochs this process finished
    written = os.path.join(args.checkpoint_dir, checkpoint.LAST) if args.checkpoint_dir else None
    path = next((p for p in (written, args.resume) if p and os.path.isfile(p)), None)
    if path is None and written:
        return f"{head}, before the first checkpoint was written to {written}: nothing to resume from"
    if path is None:
        lost = _lost(done) if done else "no epoch had finished"
        return f"{head}; {lost}: pass --checkpoint-dir DIR to be able to resume"
    lost = ""
    if written is None and done:
        lost = f"{_lost(done, since=path)} (no --checkpoint-dir); "
    epoch = _epoch_of(path)
    at = "" if epoch is None else f" (epoch {epoch} of {args.epochs})"
    argv = getattr(args, "argv", None)
    return (f"{head}; {lost}the last checkpoint{at} is {path}; go on with: "
            f"{resume_command(sys.argv[1:] if argv is None else argv, path)}")


def on_interrupt(exc: KeyboardInterrupt, args, tracker: EpochTracker, root: bool, mpi: bool) -> int:
    """Ctrl-C during ``fit``: print :func:`interrupted`'s line and return 130 (the shell's status for it).

    ``exc`` goes on where something else handles it: before the first epoch and on the other ranks
    (``main``'s "xpnet: interrupted"), under MPI (its guard stops every rank) and with ``--debug``.
    """
    if not root or tracker.epoch is None:
        raise exc
    print(interrupted(args, tracker), file=sys.stderr, flush=True)
    if mpi or args.debug:
        raise exc
    return 130
