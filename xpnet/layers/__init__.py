"""Layers: the ``Layer`` protocol and its registry (``base``), ``Dense`` and ``Flatten`` (``core``), the
activation functions (``activations``), ``Dropout`` and ``BatchNorm1d`` (``regularization``).
Every class registers itself where it is defined."""

from .activations import (ACTIVATIONS, Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Step, Tanh, log_softmax,
                          sigmoid, softmax)
from .base import LAYERS, Layer, register_layer
from .core import Dense, Flatten
from .regularization import BatchNorm1d, Dropout

__all__ = ["ACTIVATIONS", "BatchNorm1d", "Dense", "Dropout", "Flatten", "Identity", "LAYERS", "Layer", "LeakyReLU",
           "ReLU", "Sigmoid", "Softmax", "Step", "Tanh", "log_softmax", "register_layer", "sigmoid", "softmax"]
