"""A data source that fit takes instead of arrays: :class:`TextWindows`, random windows of a token sequence
for a next-token model (nanoGPT's ``get_batch``), and :class:`Windows`, the same bound to a model's device.

A module of its own beside ``data.py`` (which holds the arrays' batches): windows are a second kind of
data, with their own epoch (a plan of window starts), their own fixed evaluation set and their own
fingerprint, and ``data.py`` would pass 300 lines with them.

The ids go to the device once per ``fit``, as int64; each epoch's window starts are drawn on the host
from ``model.rng`` and go to the device in one transfer (as the arrays' permutation does); each step
gathers its ``(B, T + 1)`` ids there with one ``xp.take``. So a step moves nothing between host and
device and its operations do not depend on ``B`` or ``T``. (Gathering on the host and sending each batch
would be one transfer a step: from pageable memory a synchronous copy on CUDA, which waits for the queue.)
"""

from __future__ import annotations

from ..arguments import check_count
from .. import backend
from ..layers import model_output_shapes
from .resume import fingerprint

EVAL_BATCHES = 20
"""Batches of fixed windows a source is evaluated on when ``validation_steps``/``steps`` is not given: the
``--eval_iters=20`` of the nanoGPT command the issue measures."""


class TextWindows:
    """Windows of ``block_size`` consecutive ids of a 1-D token sequence, for a next-token model: the window
    at ``s`` is ``X = ids[s : s+T]`` with targets ``Y = ids[s+1 : s+T+1]`` (``T = block_size``), as nanoGPT's
    ``get_batch``.

    ``fit(TextWindows(train_ids, 64), epochs=8, steps_per_epoch=250, batch_size=12, ...)``: each step
    trains on ``batch_size`` windows whose starts are drawn uniformly from ``0 .. len(ids) - T - 1`` by the
    model's host generator (``model.rng``, the one that shuffles arrays): the same seed gives the same
    windows on every backend, and a checkpoint keeps the generator, so a resumed run draws the windows the
    uninterrupted one would have. The source never ends, so ``steps_per_epoch`` says how long an epoch
    (one round of callbacks, evaluation and checkpoint) is. Data parallel, every rank draws the same
    global batch and takes its share of the windows, as of an array batch's rows.

    As ``validation_data`` (or ``model.evaluate(TextWindows(...), steps=20)``) it is evaluated on a fixed
    set of ``validation_steps x batch_size`` windows drawn once from ``seed``: the same windows at every
    evaluation, so the curve's changes are the model's alone (nanoGPT draws new windows each time, which
    adds sampling noise to its curve; a fixed set's sampling error is the same at every point instead).

    ``ids``: integer ids on the host (``load_text``'s ``uint16``) or any backend's 1-D integer array.
    """

    def __init__(self, ids, block_size: int, *, seed: int = 0):
        self.block_size = check_count("TextWindows: block_size", block_size)
        self.seed = check_count("TextWindows: seed", seed, 0)
        try:
            host = backend.to_numpy(ids)  # (a list, or any backend's array)
        except (TypeError, AttributeError, BufferError):
            host = None
        if host is None or host.ndim != 1 or host.dtype.kind not in "iu":
            raise ValueError(f"TextWindows: ids must be a 1-D array of integer token ids (load_text gives them), "
                             f"got {type(ids).__name__ if host is None else f'shape {host.shape} of {host.dtype}'}")
        if host.shape[0] <= block_size:
            raise ValueError(f"TextWindows: block_size {block_size} needs at least {block_size + 1} ids (a window "
                             f"and the id after it), got {host.shape[0]}: use a smaller block_size or more text")
        low, high = int(host.min()), int(host.max())
        if low < 0:
            raise ValueError(f"TextWindows: token ids must not be negative, got {low}")
        self.ids, self.max_id = host, high

    @property
    def windows(self) -> int:
        """How many windows there are to draw from: ``len(ids) - block_size``."""
        return self.ids.shape[0] - self.block_size

    def __repr__(self):
        return f"TextWindows({self.ids.shape[0]} ids, block_size={self.block_size}, seed={self.seed})"


class Windows:
    """A :class:`TextWindows` on ``dev``, for one fit: each epoch a plan of ``steps x batch_size`` window
    starts (:meth:`epoch`), each step its batch gathered from the plan (:meth:`batch`)."""

    def __init__(self, source: TextWindows, dev, steps: int = 1, batch_size: int = 1):
        self.source, self.dev, self.steps, self.batch_size = source, dev, steps, batch_size
        self.ids = dev.asarray(source.ids, "int64")
        self.offsets = dev.asarray(list(range(source.block_size + 1)), "int64")
        self.rows = steps * batch_size  # the windows an epoch trains on: its "samples"

    def epoch(self, rng):
        """This epoch's window starts, ``(steps, batch_size)`` on the device, drawn from the host ``rng``."""
        return self.dev.asarray(rng.integers(0, self.source.windows, size=(self.steps, self.batch_size)), "int64")

    def batch(self, plan, step: int, lo: int, hi: int):
        """``(X, Y)``: the ids of windows ``lo .. hi`` of the plan's row ``step``, ``(hi - lo, T)`` int64 each."""
        xp = self.dev.xp
        starts = plan[step, lo:hi]
        ids = xp.take(self.ids, xp.reshape(starts[..., None] + self.offsets, (-1,)), axis=0)
        ids = xp.reshape(ids, (hi - lo, self.source.block_size + 1))
        return ids[:, :-1], ids[:, 1:]

    def fixed(self, steps: int):
        """``(X, Y)`` of ``steps x batch_size`` windows drawn from the source's ``seed`` (not the model's
        generator, which they leave as it was): the same windows every time."""
        n = steps * self.batch_size
        starts = backend.host_rng(self.source.seed).integers(0, self.source.windows, size=(1, n))
        return self.batch(self.dev.asarray(starts, "int64"), 0, 0, n)

    def describe(self) -> dict:
        """What a checkpoint's ``run`` entry keeps of the data: the ids' count, the block size and a
        fingerprint (:func:`xpnet.train.resume.fingerprint` of 32 ids at fixed places, and the block size)."""
        return {"rows": int(self.source.ids.shape[0]), "block_size": self.source.block_size,
                "fingerprint": fingerprint(self.dev, self.ids, tag=f"windows of {self.source.block_size}")}


def check_windows(model, source: TextWindows, y, *, shuffle, validation_split, steps_per_epoch) -> None:
    """What fit refuses for a source: a ``y`` (the source gives the targets), ``shuffle=False``,
    ``validation_split``, no ``steps_per_epoch``, and a model that does not take its windows or
    whose output has fewer classes than the ids."""
    if y is not None:
        raise ValueError("fit: a TextWindows source gives the targets itself (each position's next id); "
                         "leave y out: fit(TextWindows(ids, block_size), loss=..., ...)")
    if shuffle is not True:
        raise ValueError("fit: shuffle does not apply to a TextWindows source: its windows are drawn at random "
                         "every step (from the model's seed); leave shuffle out")
    if validation_split:
        raise ValueError("fit: validation_split holds out the last rows of arrays; a TextWindows source has no "
                         "rows to hold out. Pass validation_data=TextWindows(val_ids, block_size) (load_text gives "
                         "the validation ids)")
    if steps_per_epoch is None:
        raise ValueError("fit: a TextWindows source never ends, so say how many steps an epoch has: "
                         "steps_per_epoch=250 with epochs=8 trains 2000 steps, evaluating and checkpointing "
                         "every 250")
    check_count("steps_per_epoch", steps_per_epoch)
    check_model_takes(model, source, "fit")


def check_model_takes(model, source: TextWindows, where: str) -> None:
    """Refuse a model whose layers say they do not take ``(batch, T)`` ids, or give fewer classes per
    position than the ids need (where the layers tell their shapes)."""
    T = source.block_size
    try:
        shapes = model_output_shapes(model.layers, (None, T))
    except ValueError as exc:
        raise ValueError(f"{where}: the model does not take TextWindows' ids of shape (batch, {T}): {exc}") from None
    out = shapes[-1] if shapes else None
    if out is None:
        return
    if len(out) != 3:
        raise ValueError(f"{where}: a TextWindows source trains a next-id model, whose output is (batch, {T}, "
                         f"vocabulary size); this model's is {out}")
    if out[-1] <= source.max_id:
        raise ValueError(f"{where}: the ids go up to {source.max_id}, but the model gives {out[-1]} values per "
                         f"position: build it for the vocabulary, vocab_size={source.max_id + 1} or more "
                         f"(vocab.size from load_text)")


def eval_steps(steps, name: str) -> int:
    """The batches of fixed windows to evaluate on: ``steps``, or :data:`EVAL_BATCHES` for ``None``."""
    return EVAL_BATCHES if steps is None else check_count(name, steps)


def held_out(model, data: TextWindows, steps, batch_size: int, where: str, name: str):
    """A source's fixed evaluation set ``(X, Y, classify, eval batch size)`` on the model's device: ``steps``
    (the argument ``name``) batches of ``batch_size`` windows."""
    check_model_takes(model, data, where)
    steps = eval_steps(steps, name)
    return (*Windows(data, model.device, batch_size=batch_size).fixed(steps), True, batch_size)
