"""``ParameterDict``: a model's parameters (or gradients, or buffers) as one flat dict over its layers'."""

from __future__ import annotations

from collections.abc import MutableMapping


class ParameterDict(MutableMapping):
    """A flat ``"<layer index>.<name>" -> array`` view of a model's parameters (or gradients, or buffers).

    Reading and writing go straight to the layers' own dicts (``attr``), so an optimizer that stores a new
    array under a key (the path for immutable arrays) updates the layer itself. The key list is built
    once, from the layers' ``keys_from`` dicts (``params`` for the gradients too).
    """

    def __init__(self, layers, attr: str, keys_from: str | None = None):
        self._slots = {f"{i}.{k}": (layer, k) for i, layer in enumerate(layers)
                       for k in dict_of(layer, keys_from or attr)}
        self._attr = attr

    def __getitem__(self, key):
        layer, k = self._slots[key]
        return getattr(layer, self._attr)[k]

    def __setitem__(self, key, value):
        layer, k = self._slots[key]
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
        return [(key, getattr(layer, attr)[k]) for key, (layer, k) in self._slots.items()]


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
