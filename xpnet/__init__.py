"""xpnet: neural networks from scratch, written once against the Python Array API.

The same layer math trains on NumPy (CPU), CuPy (CUDA GPUs), PyTorch and array-api-strict.
"""

from ._version import __version__
from .backend import (BACKENDS, Device, DeviceOutOfMemoryError, DeviceUnavailableError, available_backends, device,
                      device_of, synchronize, to_numpy)
from . import metrics, schedules
from .callbacks import (Callback, CSVLogger, EarlyStopping, LambdaCallback, LearningRateScheduler,
                        ModelCheckpoint)
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .io import ModelFormatError
from .layers import (GELU, AvgPool2D, BatchNorm1d, BatchNorm2d, Conv2D, Dense, Dropout, Embedding, Flatten,
                     GlobalAvgPool2D, Identity, Layer, LayerNorm, LeakyReLU, MaxPool2D, MultiHeadAttention,
                     PositionalEmbedding, ReLU, Reshape, Residual, Sigmoid, Softmax, Step, Tanh, TiedDense)
from .losses import MSE, BinaryCrossEntropy, CrossEntropy, Loss, SoftmaxCrossEntropy
from .metrics import TopKAccuracy
from .model import Sequential, load
from . import models
from .onnx import export_onnx
from .optim import SGD, Adam, AdamW, Optimizer, RMSprop, clip_grad_norm
from .saving import save
from .train.sources import TextWindows
from .callbacks import History, TrainingDiverged
from .tutorial import NeuralNetwork
from .validation import UnscaledInputWarning

__all__ = [
    "Adam", "AdamW", "AvgPool2D", "BACKENDS", "BatchNorm1d", "BatchNorm2d", "BinaryCrossEntropy", "Callback",
    "Checkpoint", "Conv2D", "CrossEntropy", "CSVLogger", "Dense", "Device", "DeviceOutOfMemoryError",
    "DeviceUnavailableError", "Dropout", "EarlyStopping", "Embedding", "Flatten", "GELU", "GlobalAvgPool2D",
    "History", "Identity", "LambdaCallback", "Layer", "LayerNorm", "LeakyReLU", "LearningRateScheduler", "Loss",
    "MaxPool2D", "ModelCheckpoint", "ModelFormatError", "MSE", "MultiHeadAttention", "NeuralNetwork", "Optimizer",
    "PositionalEmbedding", "ReLU", "Reshape", "Residual", "RMSprop", "Sequential", "SGD", "Sigmoid", "Softmax",
    "SoftmaxCrossEntropy", "Step", "Tanh", "TextWindows", "TiedDense", "TopKAccuracy", "TrainingDiverged",
    "UnscaledInputWarning", "available_backends", "clip_grad_norm", "device", "device_of", "export_onnx", "load",
    "load_checkpoint", "metrics", "models", "save", "save_checkpoint", "schedules", "synchronize", "to_numpy",
    "__version__",
]
