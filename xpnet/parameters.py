"""``ParameterDict``: a model's parameters (or gradients, or buffers) as one flat dict over its layers';
``FlatParameters``: the parameters as views of one flat buffer per dtype, which optimizers step at once."""

from __future__ import annotations

import math
from collections.abc import MutableMapping

from array_api_compat import array_namespace

from . import backend, inplace


class ParameterDict(MutableMapping):
    """A flat ``"<layer index>.<name>" -> array`` view of a model's parameters (or gradients, or buffers).

    Reading and writing go straight to the layers' own dicts (``attr``), so an optimizer that stores a new
    array under a key (the path for immutable arrays) updates the layer itself. The key list is built
    once, from the layers' ``keys_from`` dicts (``params`` for the gradients too). With ``flat`` the
    arrays become views of :class:`FlatParameters` (``.flat``; ``None`` where the library has no views),
    and storing an array under a key writes its values into the parameter's view instead of rebinding it.
    """

    flat = None  # (a ParameterDict pickled before there were flat buffers has no attribute of its own)

    def __init__(self, layers, attr: str, keys_from: str | None = None, *, flat: bool = False):
        self._slots = {f"{i}.{k}": (layer, k) for i, layer in enumerate(layers)
                       for k in dict_of(layer, keys_from or attr)}
        self._attr = attr
        self.flat: FlatParameters | None = None
        if flat:
            self.flat = FlatParameters.of(self)

    def __getitem__(self, key):
        layer, k = self._slots[key]
        try:
            return getattr(layer, self._attr)[k]
        except KeyError:
            raise self._missing(key) from None

    def __setitem__(self, key, value):
        layer, k = self._slots[key]
        if self.flat is not None:  # the optimizer steps the buffer: a parameter must stay its view
            value = self.flat.write(key, value)
        getattr(layer, self._attr)[k] = value

    def __delitem__(self, key):
        raise TypeError(f"{self._attr} cannot be deleted")

    def __iter__(self):
        return iter(self._slots)

    def __len__(self):
        return len(self._slots)

    def items(self):
        # The Mapping mixin's view would look every key up again, per step and per parameter.
        attr = self._attr
        try:
            return [(key, getattr(layer, attr)[k]) for key, (layer, k) in self._slots.items()]
        except KeyError:
            raise self._missing(next(key for key, (layer, k) in self._slots.items()
                                     if k not in getattr(layer, attr))) from None

    def _missing(self, key) -> KeyError:
        if self._attr != "grads":
            return KeyError(key)
        return KeyError(f"{key}: no gradient stored: backward has not run on this layer since it was built, or fit "
                        f"applied plain SGD's step inside backward (it stores no Dense gradients on the CPU); call "
                        f"model.forward(x, training=True) and model.backward(dy) for the gradients")


class FlatParameters:
    """A model's parameters as views of one flat 1-D array per dtype: an optimizer steps each dtype's
    array with one operation per term of its update (not one per parameter: on a GPU, one kernel
    launch each), and the data-parallel all-reduce sums the flat gradient as it is.

    Built from the model's ``name -> array`` mapping (write-through): each parameter's values are copied
    once into its dtype's buffer, in the mapping's order, and the mapping then holds the view
    ``reshape(data[lo:hi], shape)``; everything is keyed by parameter name. Only where the library makes
    views and writes in place (NumPy, CuPy, PyTorch, array-api-strict): :meth:`of` gives ``None`` for
    JAX, whose optimizers then go parameter by parameter. ``at_once`` says whether optimizers step the
    buffers at once (:func:`step_at_once`: on a GPU, where each operation is a kernel launch) or each
    parameter's view (on a CPU, where whole-model temporaries cost more than the operations they save).
    """

    def __init__(self, params):
        self.groups: list[FlatGroup] = []
        for name, array in params.items():
            group = next((g for g in self.groups if g.dtype == array.dtype), None)
            if group is None:
                group = FlatGroup(array.dtype)
                self.groups.append(group)
            group.index[name] = len(group.names)
            group.names.append(name)
            group.shapes.append(tuple(array.shape))
            group.offsets.append(group.offsets[-1] + math.prod(array.shape))
        for group in self.groups:
            group.data = array_namespace(params[group.names[0]]).concat([params[k] for k in group.names], axis=None)
            group.views = group.slices(group.data)
            for name, view in zip(group.names, group.views):
                params[name] = view
        self._given: tuple | None = None  # the gradients set_gradients gave (arrays, views per group)
        self.at_once = all(step_at_once(group.data) for group in self.groups)

    @classmethod
    def of(cls, params) -> "FlatParameters | None":
        """The flat buffers for ``params``, or ``None`` where there are no parameters or no views (JAX)."""
        if not len(params) or not all(inplace.is_writeable_array(a) for a in params.values()):
            return None
        return cls(params)

    def write(self, name: str, value):
        """Put ``value`` into ``name``'s view (the buffer keeps the parameter's memory); returns the view."""
        group, i = self._find(name)
        view = group.views[i]
        if value is not view:
            if tuple(value.shape) != group.shapes[i] or value.dtype != group.dtype:
                raise ValueError(f"parameters()[{name!r}] = an array of shape {tuple(value.shape)} and dtype "
                                 f"{value.dtype}: the parameter is {group.shapes[i]} {group.dtype}; give an "
                                 f"array of that shape and dtype (its values are written into the parameter)")
            view[...] = value
        return view

    def arrays(self, params) -> list:
        """The flat parameter arrays, one per dtype, after writing back any parameter that a layer or a user
        rebound away from its view (a new array stored in a layer's dict directly)."""
        for group in self.groups:
            for name, view in zip(group.names, group.views):
                held = params[name]
                if held is not view:
                    params[name] = held  # ParameterDict writes it into the view and puts the view back
        return [group.data for group in self.groups]

    def gradients(self, grads) -> list:
        """The gradients as flat arrays, one per dtype: those :meth:`set_gradients` gave while ``grads`` still
        holds their views (the all-reduced sum), else one ``concat`` of ``grads`` per dtype, a new array."""
        if self._given is not None:
            arrays, views = self._given
            if all(grads[k] is v for group, vs in zip(self.groups, views) for k, v in zip(group.names, vs)):
                return arrays
        self._given = None
        return [array_namespace(grads[g.names[0]]).concat([grads[k] for k in g.names], axis=None)
                for g in self.groups]

    def weighted_gradients(self, grads, weight: float) -> list:
        """``weight`` times the gradients, as new flat arrays (one per dtype): a data-parallel rank's part of
        the sum. Zeros for ``weight`` 0 (an empty shard, whose gradients are last step's or missing)."""
        if weight == 0.0:
            return [array_namespace(g.data).zeros_like(g.data) for g in self.groups]
        self._given = None  # a new concat, never last step's sum
        return [inplace.mul_(g, weight) for g in self.gradients(grads)]

    def set_gradients(self, grads, arrays) -> None:
        """Make ``grads`` views of ``arrays`` (one flat gradient per dtype), which :meth:`gradients` then gives."""
        views = [group.slices(a) for group, a in zip(self.groups, arrays)]
        for group, vs in zip(self.groups, views):
            for name, v in zip(group.names, vs):
                grads[name] = v
        self._given = (list(arrays), views)

    def _find(self, name: str):
        for group in self.groups:
            if name in group.index:
                return group, group.index[name]
        raise KeyError(name)


class FlatGroup:
    """The parameters of one dtype: ``names`` in buffer order, their ``shapes``, where each starts
    (``offsets``, one more than names: the last is the size), the buffer ``data`` and the ``views``."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.names: list[str] = []
        self.shapes: list[tuple] = []
        self.offsets = [0]
        self.data = None
        self.views: list = []
        self.index: dict[str, int] = {}  # name -> its place in names

    @property
    def size(self) -> int:
        return self.offsets[-1]

    def slices(self, flat) -> list:
        """Each parameter's part of ``flat`` (a buffer of this group's layout), as an array of its shape."""
        xp = array_namespace(flat)
        return [xp.reshape(flat[lo:hi], shape)
                for lo, hi, shape in zip(self.offsets, self.offsets[1:], self.shapes)]


def step_at_once(flat) -> bool:
    """Whether optimizers step the flat buffer ``flat`` at once: the generic rule, yes (one operation per term of
    an update, one GPU launch each), unless the backend's own rule says otherwise (NumPy and torch on the
    CPU: array by array, see ``xpnet/backend/_numpy.py``)."""
    fast = backend.routine(array_namespace(flat), "step_at_once")
    answer = fast(flat) if fast is not None else None
    return True if answer is None else answer


def dict_of(layer, attr: str) -> dict:
    # A user's layer that skipped Layer.__init__ (or predates buffers) has none.
    return getattr(layer, attr, None) or {}


def check_names_and_shapes(expected: dict, given: dict, names_error, shape_error) -> None:
    """The one check that ``given`` arrays fit ``expected`` ones (a model's state): the same names, each of the
    same shape. Raises ``names_error(missing, extra)`` (sorted lists of names) when the names differ, else
    ``shape_error(name, its shape as given, the expected shape as a tuple)`` for the first array of ``given``
    that does not fit; each caller words its own message (a file, a checkpoint, ``load_state_dict``)."""
    missing, extra = set(expected) - set(given), set(given) - set(expected)
    if missing or extra:
        raise names_error(sorted(missing), sorted(extra))
    for name, v in given.items():
        if tuple(v.shape) != tuple(expected[name].shape):
            raise shape_error(name, v.shape, tuple(expected[name].shape))
