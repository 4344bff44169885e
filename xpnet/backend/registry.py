"""The backends: one :class:`~.protocol.Backend` per library, collected from their files (the rest of the
package reaches them through here)."""

from __future__ import annotations

from types import MappingProxyType

from ._cupy import BACKEND as CUPY
from ._jax import BACKEND as JAX
from ._numpy import BACKEND as NUMPY
from ._strict import BACKEND as STRICT
from ._torch import BACKEND as TORCH
from .protocol import Backend

# In the order `xpnet info` lists them. Read-only: a test that swaps one hook sets it on the Backend object.
LIBRARIES: "MappingProxyType[str, Backend]" = MappingProxyType(
    {lib.NAME: lib for lib in (NUMPY, CUPY, TORCH, STRICT, JAX)})
BACKENDS = tuple(LIBRARIES)


def owner(xp) -> Backend | None:
    """The backend whose namespace ``xp`` is, or ``None`` for a library xpnet does not know."""
    return next((lib for lib in LIBRARIES.values() if lib.owns(xp)), None)
