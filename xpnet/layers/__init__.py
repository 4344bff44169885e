"""Layers: the ``Layer`` protocol, its registry and a model's shapes as its layers tell them (``base``);
``Dense``, ``Flatten`` and ``Reshape`` (``core``); the activation functions (``activations``); ``Dropout``,
``BatchNorm1d`` and ``BatchNorm2d`` (``regularization``); ``Conv2D`` (``conv``) and the poolings (``pooling``),
on the windows of ``windows``; ``MultiHeadAttention`` (``attention``), ``Residual`` (``residual``),
``Embedding``, ``PositionalEmbedding`` and ``LayerNorm`` (``sequence``), ``TiedDense`` (``tied``). Every
class registers itself where it is defined."""

from .activations import (ACTIVATIONS, GELU, Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Step, Tanh, log_softmax,
                          sigmoid, softmax)
from .attention import MultiHeadAttention
from .base import (LAYERS, Layer, input_layer, model_input_dtype, model_input_shape, model_output_shapes,
                   register_layer)
from .conv import Conv2D
from .core import Dense, Flatten, Reshape
from .pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .regularization import BatchNorm1d, BatchNorm2d, Dropout
from .residual import Residual
from .sequence import Embedding, LayerNorm, PositionalEmbedding
from .tied import TiedDense

__all__ = ["ACTIVATIONS", "AvgPool2D", "BatchNorm1d", "BatchNorm2d", "Conv2D", "Dense", "Dropout", "Embedding",
           "Flatten", "GELU", "GlobalAvgPool2D", "Identity", "LAYERS", "Layer", "LayerNorm", "LeakyReLU", "MaxPool2D",
           "MultiHeadAttention", "PositionalEmbedding", "ReLU", "Reshape", "Residual", "Sigmoid", "Softmax", "Step",
           "Tanh", "TiedDense", "input_layer", "log_softmax", "model_input_dtype", "model_input_shape",
           "model_output_shapes", "register_layer", "sigmoid", "softmax"]
