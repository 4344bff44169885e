"""An optimizer's step over a model's flat parameter buffers (:class:`~xpnet.parameters.FlatParameters`), where
they are stepped at once (``FlatParameters.at_once``: on a GPU, and on array-api-strict, which runs the same
lines; a CPU steps each parameter's view on its own). The per-element arithmetic is that of the step
array by array, so are the bits.

Each dtype's buffer is stepped at once: its gradient is the layers' gradients concatenated (one
operation), and its state is one 2-D array with a row per slot (Adam's ``exp_avg`` and
``exp_avg_sq``), so that every term of an update is one operation (one GPU kernel launch) for the
whole model. ``optimizer.state[name][slot]`` holds views of those rows: ``state_dict``, checkpoints
and users see the per-parameter arrays they always saw. The rows are made again from the
per-parameter arrays whenever those were replaced (``load_state_dict``, a copy of the optimizer) or
the model's buffers were (``model.to``).
"""

from __future__ import annotations

from array_api_compat import array_namespace, device

from .clipping import clip_grad_norm


def step(opt, flat, params, grads) -> None:
    """``opt.step(params, grads)`` once per dtype buffer of ``flat`` (``params.flat``): the global norm
    clipped over the flat gradients, the weight decay, then ``opt._update`` on the flat arrays."""
    arrays = flat.arrays(params)
    gradients = flat.gradients(grads)
    if opt.clip_norm is not None:
        clipped = dict(enumerate(gradients))
        clip_grad_norm(clipped, opt.clip_norm)
        gradients = list(clipped.values())
    state = opt._flat
    if state is None or not state.fits(opt, flat):
        state = opt._flat = FlatState(opt, flat)
    for p, g, rows in zip(arrays, gradients, state.groups):
        if opt.weight_decay and rows.mask is not False:
            p, g = opt._decay(p, g, rows.mask)
        opt._update(p, g, rows.slots, rows)
        rows.settle(opt)


class FlatState:
    """``opt``'s state over the buffers of ``flat``: one :class:`StateRows` per dtype, made from the
    per-parameter state ``opt.state`` holds now (none yet: made by the first step)."""

    def __init__(self, opt, flat):
        self.layout, self.decay_on = flat, opt.weight_decay_on
        self.groups = [StateRows(opt, group) for group in flat.groups]

    def fits(self, opt, flat) -> bool:
        """Whether this is still ``opt``'s state for ``flat``: the same buffers and decay rule, and
        ``opt.state`` still holds this state's views (a loaded state holds arrays of its own)."""
        return (self.layout is flat and self.decay_on == opt.weight_decay_on
                and all(rows.intact(opt.state) for rows in self.groups))


class StateRows:
    """The state of one dtype's buffer: ``rows`` (``(slots, size)``; ``None`` until there is state),
    ``slots`` (slot name -> its row, what ``_update`` steps), and ``mask``, where the weight decay acts
    (``None``: everywhere; ``False``: nowhere; else a :class:`DecayMask`)."""

    def __init__(self, opt, group):
        self.group, self.names = group, opt.slots()
        self.mask = decay_mask(opt.weight_decay_on, group)
        self.rows, self.slots, self.views = None, {}, []
        self._columns: tuple = ((), ())
        held = [opt.state.get(name) or {} for name in group.names]
        # a loaded (or copied) state: its values, the missing ones zeros; Adam's starts at zeros anyway
        if self.names and (any(held) or opt.zero_state):
            xp, data = array_namespace(group.data), group.data
            rows = [xp.concat([h[slot] if slot in h else xp.zeros(shape, dtype=data.dtype, device=device(data))
                               for h, shape in zip(held, group.shapes)], axis=None) for slot in self.names]
            self._adopt(opt, xp.stack(rows))

    def settle(self, opt) -> None:
        """After a step: the state the first step made (new arrays) stacked into rows, viewed per parameter."""
        if self.rows is None and self.slots:
            self._adopt(opt, array_namespace(self.group.data).stack([self.slots[s] for s in self.names]))

    def _adopt(self, opt, rows) -> None:
        self.rows = rows
        self.slots = {slot: rows[i, ...] for i, slot in enumerate(self.names)}
        self.views = []
        for slot, row in self.slots.items():
            for name, view in zip(self.group.names, self.group.slices(row)):
                opt.state.setdefault(name, {})[slot] = view
                self.views.append((name, slot, view))

    def intact(self, state: dict) -> bool:
        if self.rows is None:  # nothing made yet: still so, unless state came from elsewhere
            return not any(state.get(name) for name in self.group.names)
        return all(state.get(name, {}).get(slot) is view for name, slot, view in self.views)

    def columns(self, *values: tuple) -> tuple:
        """Each tuple of host floats in ``values`` as a ``(len, 1)`` array of the rows' dtype and device, to
        scale each row by its own factor in one operation (made once, kept while the values stay)."""
        if self._columns[0] != values:
            xp, rows = array_namespace(self.rows), self.rows
            self._columns = (values, tuple(xp.asarray([[v] for v in column], dtype=rows.dtype, device=device(rows))
                                           for column in values))
        return self._columns[1]


class DecayMask:
    """Which elements of a buffer decay (``on``, booleans), for the parameters that ``weight_decay_on``
    picks; ``ones`` (1.0 everywhere) fills the others in ``where(on, factor, ones)``."""

    def __init__(self, on, ones):
        self.on, self.ones = on, ones


def decay_mask(decay_on: str, group):
    """Where ``decay_on`` (``"all"`` or ``"matrices"``: 2 or more axes) puts weight decay in ``group``'s buffer:
    ``None`` everywhere, ``False`` nowhere, else a :class:`DecayMask`."""
    on = [decay_on == "all" or len(shape) >= 2 for shape in group.shapes]
    if all(on):
        return None
    if not any(on):
        return False
    xp, data = array_namespace(group.data), group.data
    flags = xp.concat([xp.full((hi - lo,), flag, dtype=xp.bool, device=device(data))
                       for flag, lo, hi in zip(on, group.offsets, group.offsets[1:])])
    return DecayMask(flags, xp.ones(data.shape, dtype=data.dtype, device=device(data)))
