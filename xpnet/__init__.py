"""xpnet: neural networks from scratch, written once against the Python Array API.

The same layer math trains on NumPy (CPU), CuPy (CUDA GPUs), PyTorch and array-api-strict.
"""

from .activations import Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Step, Tanh
from .backend import (BACKENDS, Device, DeviceUnavailableError, available_backends, device, device_of,
                      synchronize, to_numpy)
from .callbacks import Callback
from .layers import Dense, Flatten, Layer
from .losses import MSE, BinaryCrossEntropy, CrossEntropy, Loss, SoftmaxCrossEntropy
from .model import Sequential
from .optim import SGD, Adam, Optimizer
from .training import History, TrainingDiverged

__version__ = "0.1.0"

__all__ = [
    "Adam", "BACKENDS", "BinaryCrossEntropy", "Callback", "CrossEntropy", "Dense", "Device", "DeviceUnavailableError",
    "Flatten", "History", "Identity", "Layer", "LeakyReLU", "Loss", "MSE", "Optimizer", "ReLU", "SGD",
    "Sequential", "Sigmoid", "Softmax", "SoftmaxCrossEntropy", "Step", "Tanh", "TrainingDiverged",
    "available_backends", "device", "device_of", "synchronize", "to_numpy", "__version__",
]

from .io import ModelFormatError, load, save  # noqa: E402  (appended after the original exports)
from .tutorial import NeuralNetwork  # noqa: E402

__all__ += ["ModelFormatError", "NeuralNetwork", "load", "save"]
