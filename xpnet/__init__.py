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
from .layers import (BatchNorm1d, Dense, Dropout, Flatten, Identity, Layer, LeakyReLU, ReLU, Sigmoid, Softmax, Step,
                     Tanh)
from .losses import MSE, BinaryCrossEntropy, CrossEntropy, Loss, SoftmaxCrossEntropy
from .metrics import TopKAccuracy
from .model import Sequential, load
from .onnx import export_onnx
from .optim import SGD, Adam, AdamW, Optimizer, RMSprop, clip_grad_norm
from .saving import save
from .training import History, TrainingDiverged
from .tutorial import NeuralNetwork

__all__ = [
    "Adam", "AdamW", "BACKENDS", "BatchNorm1d", "BinaryCrossEntropy", "CSVLogger", "Callback", "Checkpoint", "CrossEntropy",
    "Dense", "Device", "DeviceOutOfMemoryError", "DeviceUnavailableError", "Dropout", "EarlyStopping", "Flatten", "History", "Identity",
    "LambdaCallback", "Layer", "LearningRateScheduler", "LeakyReLU", "Loss", "MSE", "ModelCheckpoint",
    "ModelFormatError", "NeuralNetwork", "Optimizer", "RMSprop", "ReLU", "SGD", "Sequential", "Sigmoid",
    "Softmax", "SoftmaxCrossEntropy", "Step", "Tanh", "TopKAccuracy", "TrainingDiverged", "available_backends",
    "clip_grad_norm", "device", "device_of", "export_onnx", "load", "load_checkpoint", "metrics", "save",
    "save_checkpoint", "schedules", "synchronize", "to_numpy",
    "__version__",
]
