"""xpnet: neural networks from scratch, written once against the Python Array API.

The same layer math trains on NumPy (CPU), CuPy (CUDA GPUs), PyTorch and array-api-strict.
"""

from ._version import __version__
from .backend import (BACKENDS, Device, DeviceUnavailableError, available_backends, device, device_of,
                      synchronize, to_numpy)
from .callbacks import Callback
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .io import ModelFormatError
from .layers import Dense, Flatten, Identity, Layer, LeakyReLU, ReLU, Sigmoid, Softmax, Step, Tanh
from .losses import MSE, BinaryCrossEntropy, CrossEntropy, Loss, SoftmaxCrossEntropy
from .model import Sequential, load
from .optim import SGD, Adam, AdamW, Optimizer, RMSprop, clip_grad_norm
from .saving import save
from .training import History, TrainingDiverged
from .tutorial import NeuralNetwork

__all__ = [
    "Adam", "AdamW", "BACKENDS", "BinaryCrossEntropy", "Callback", "Checkpoint", "CrossEntropy", "Dense", "Device",
    "DeviceUnavailableError", "Flatten", "History", "Identity", "Layer", "LeakyReLU", "Loss", "MSE",
    "ModelFormatError", "NeuralNetwork", "Optimizer", "RMSprop", "ReLU", "SGD", "Sequential", "Sigmoid", "Softmax",
    "SoftmaxCrossEntropy", "Step", "Tanh", "TrainingDiverged", "available_backends", "clip_grad_norm", "device", "device_of", "load",
    "load_checkpoint", "save", "save_checkpoint", "synchronize", "to_numpy", "__version__",
]
