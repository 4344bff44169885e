"""A model's random generators as JSON, for a checkpoint: the host generator that shuffles the epochs
(``model.rng``) and each layer that draws (Dropout's ``rng_state()``). :meth:`xpnet.Sequential.get_rng_state`
and :meth:`~xpnet.Sequential.set_rng_state` are these."""

from __future__ import annotations

from . import backend as _backend


def rng_state(model) -> dict:
    """``{"shuffle": ..., "layers": ...}``: ``shuffle`` is the host generator's ``bit_generator.state``
    (``model.rng``: the epochs' permutations), ``layers`` maps a layer's index to its ``rng_state()``, for
    each layer that draws (Dropout)."""
    layers = {str(i): layer.rng_state() for i, layer in enumerate(model.layers)
              if callable(getattr(layer, "rng_state", None))}
    return {"shuffle": model.rng.bit_generator.state, "layers": layers}


def set_rng_state(model, state: dict) -> None:
    """Put back a :func:`rng_state` into ``model``; raises ``ValueError`` (nothing changed) if it does not fit
    the model's layers."""
    layers = state.get("layers", {})
    drawing = {str(i) for i, layer in enumerate(model.layers) if callable(getattr(layer, "set_rng_state", None))}
    if set(layers) != drawing:
        raise ValueError(f"set_rng_state: the state is for random layers {sorted(layers)}, this model's are "
                         f"{sorted(drawing)}")
    rng = _backend.host_rng()
    try:  # on a new generator first: the model's changes only if the state fits
        rng.bit_generator.state = state["shuffle"]
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"set_rng_state: not a state of the shuffling generator "
                         f"({type(rng.bit_generator).__name__}): {type(exc).__name__}: {exc}") from None
    model.rng.bit_generator.state = rng.bit_generator.state
    for i, s in layers.items():
        model.layers[int(i)].set_rng_state(s)
