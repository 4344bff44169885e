"""Layers: the ``Layer`` protocol and its registry (``base``), ``Dense`` and ``Flatten`` (``core``), and
the activation functions (``activations``). Every class registers itself where it is defined."""

from .activations import (ACTIVATIONS, Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Step, Tanh, log_softmax,
                          sigmoid, softmax)
from .base import LAYERS, Layer, register_layer
from .core import Dense, Flatten

__all__ = ["ACTIVATIONS", "Dense", "Flatten", "Identity", "LAYERS", "Layer", "LeakyReLU", "ReLU", "Sigmoid",
           "Softmax", "Step", "Tanh", "log_softmax", "register_layer", "sigmoid", "softmax"]
