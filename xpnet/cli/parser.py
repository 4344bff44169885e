"""The ``xpnet`` command line: each command's options as a table of (flags, keywords),
``build_parser`` (a loop over the tables) and ``add_device_options`` for scripts."""

from __future__ import annotations

import argparse
import os

from .. import backend, datasets
from .._version import __version__
from ..onnx import DEFAULT_OPSET
from .argtypes import (_backend_arg, _backends_arg, _device_arg, _layers_arg, _non_negative_float, _non_negative_int,
                       _positive_float, _positive_int, _probability, _shape_arg)
from .bench import cmd_bench
from .commands import cmd_evaluate, cmd_info, cmd_predict
from .export import cmd_export
from .gpt import GPT, cmd_generate
from .presets import HIDDEN, LOSSES, OPTIMIZERS, PRESETS, SCHEDULES
from .train import cmd_train


# -- the environment ----------------------------------------------------------------------------
def check_environment(parser: argparse.ArgumentParser) -> None:
    # A bad $XPNET_DEVICE / $XPNET_BACKEND is a usage error like a bad flag: exit 2, naming the variable.
    try:
        if os.environ.get("XPNET_DEVICE"):
            backend.parse_device(os.environ["XPNET_DEVICE"], "$XPNET_DEVICE")
        if os.environ.get("XPNET_BACKEND"):
            backend.parse_backend(os.environ["XPNET_BACKEND"], "$XPNET_BACKEND")
    except ValueError as exc:
        parser.error(str(exc))


# -- the options: (flags, add_argument's keywords) in --help's order ------------------------------
DEVICE_OPTIONS = [
    (("--device",), dict(type=_device_arg, default=None,
                         help="auto, cpu, cuda or cuda:N ('gpu' works too; default: $XPNET_DEVICE, else auto: "
                              "a CUDA GPU when one can be used, else the CPU)")),
    (("--backend",), dict(type=_backend_arg, default=None,
                          help=f"array library: {', '.join(backend.BACKENDS)} (default: $XPNET_BACKEND, else "
                               f"numpy on the CPU, cupy on CUDA)")),
]
DEBUG = [(("--debug",), dict(action="store_true", help="show the full traceback of an error"))]
COMMON = DEVICE_OPTIONS + DEBUG  # what every command but export takes
MODEL_FILE = [(("model",), dict(metavar="MODEL", help="a model file written by 'xpnet train --save' or xpnet.save"))]


def data_options(said, texts: bool = False) -> list:
    """The dataset options of train (``said`` "mnist", the texts too) and evaluate (None: the model's own)."""
    return [
        (("--dataset",), dict(choices=datasets.DATASETS + (datasets.TEXTS if texts else ()), default=None,
                              help=f"{said or 'the one the model was trained on'} (default), or any of: mnist, "
                                   f"fashion-mnist, csv (the tutorial's 100/10-row CSV), and the synthetic 2-D sets "
                                   f"spirals and moons (no files needed)"
                                   + (", or the text shakespeare (--model gpt)" if texts else ""))),
        (("--data-dir",), dict(metavar="DIR", help="folder holding mnist/, fashion-mnist/, mnist-csv/ (default: "
                                                   "$XPNET_DATA, then the download cache)")),
        (("--limit",), dict(type=_positive_int, metavar="N", help="use only the first N train and test samples")),
        (("--no-download",), dict(action="store_true", help="fail instead of downloading missing data")),
    ]


TRAIN_OPTIONS = [
    (("--model",), dict(choices=(*PRESETS, "gpt"), default="mlp",
                        help="preset: mlp (default), cnn, tutorial or gpt (see above)")),
    (("--layers",), dict(type=_layers_arg, metavar="N,N,...",
                         help="layer sizes from input to output (default: the preset's hidden sizes between the "
                              "data's features and classes, e.g. 784,512,256,10); the first must equal the features")),
    (("--activation",), dict(choices=HIDDEN, help="hidden-layer activation (mlp: relu, tutorial: sigmoid)")),
    (("--loss",), dict(choices=LOSSES, help="mse (sigmoid output, targets 0.01/0.99; tutorial), softmax_cross_entropy "
                                            "(mlp) or binary_cross_entropy (both on a linear output: logits)")),
    (("--optimizer",), dict(choices=OPTIMIZERS, help="sgd (tutorial), momentum (0.9), adam, adamw (mlp) or rmsprop")),
    (("--lr",), dict(type=_positive_float,
                     help="learning rate (default: the preset's; for another --optimizer 0.1 for sgd, 0.01 for "
                          "momentum and rmsprop, 0.001 for adam and adamw)")),
    (("--weight-decay",), dict(type=_non_negative_float, metavar="WD",
                               help="weight decay: decoupled for adamw (default 0.01), L2 in the gradient for the "
                                    "others (default 0)")),
    (("--schedule",), dict(choices=SCHEDULES,
                           help="learning-rate schedule, per step: constant (tutorial), cosine (mlp: from lr down to "
                                "0 over the run), step (x0.1 every third of the run) or exponential (x0.01 over the "
                                "run)")),
    (("--warmup",), dict(type=_non_negative_float, metavar="EPOCHS",
                         help="linear warm-up from 0 to lr over this many epochs (fractions allowed) before the "
                              "schedule (default 0; --model gpt: steps, default 100)")),
    (("--dropout",), dict(type=_probability, metavar="P",
                          help="dropout after each hidden activation, with probability P (default 0: none; cnn: 0.25 "
                               "after the pooling and 0.5 after the dense layer, both P when given)")),
    (("--batchnorm",), dict(action="store_true",
                            help="BatchNorm1d after each hidden Dense layer (before its activation); cnn: BatchNorm2d "
                                 "after each convolution too")),
    (("--epochs",), dict(type=_positive_int, default=1, help="passes over the training set (default 1)")),
    (("--batch-size",), dict(type=_positive_int, help="samples per step (mlp: 128; tutorial: 1, the book's)")),
    (("--val-split",), dict(type=_probability, metavar="F",
                            help="hold out the last fraction F of the training set for validation (reported as val_*; "
                                 "early stopping watches its loss). The test set is reported either way")),
    (("--early-stopping",), dict(type=_positive_int, metavar="N",
                                 help="stop when the validation loss has not improved for N epochs, and keep the best "
                                      "weights")),
    (("--seed",), dict(type=int, default=0, help="seed for the initial weights and shuffling (default 0)")),
    (("--dtype",), dict(choices=("float32", "float64"), default="float32", help="default float32")),
    (("--scale",), dict(choices=("tutorial", "unit"),
                        help="pixel scaling: unit = 0..1 (mlp), tutorial = 0.01..1 (tutorial); image datasets only")),
    (("--save",), dict(metavar="PATH", help="save the trained model to PATH (.npz)")),
    (("--checkpoint-dir",), dict(metavar="DIR",
                                 help="write DIR/last.npz after every epoch: model, optimizer state, schedule, epoch "
                                      "and random state, so that --resume continues exactly")),
    (("--resume",), dict(metavar="PATH",
                         help="continue a run from its checkpoint (DIR/last.npz) up to --epochs in all; give the same "
                              "options as the interrupted run")),
    (("--plot",), dict(metavar="PNG", help="draw loss and accuracy curves to PNG (needs xpnet[plot])")),
    (("--quiet",), dict(action="store_true", help="print only the last epoch's line")),
    (("--distributed",), dict(action="store_true",
                              help="data-parallel over the processes of an MPI job: mpiexec -n N xpnet train "
                                   "--distributed ... (or srun). --batch-size is the global batch, split across the N "
                                   "ranks; rank 0 prints and writes the files; one GPU per rank on CUDA. Needs pip "
                                   "install 'xpnet[mpi]'")),
    (("--threads",), dict(type=_positive_int, metavar="N",
                          help="data-parallel over N threads of this process, on the CPU: each thread trains on its "
                               "shard of every batch with one BLAS thread, so that all of NumPy's work runs on N cores "
                               "(the weights match a one-thread run to rounding; Dropout masks differ per thread)")),
]
GPT_OPTIONS = [  # --model gpt only; the defaults (GPT) are nanoGPT's baby Shakespeare run
    (("--steps",), dict(type=_positive_int, metavar="N", help=f"training steps (default {GPT['steps']})")),
    (("--block-size",), dict(type=_positive_int, metavar="T",
                             help=f"context: characters a window holds (default {GPT['block_size']})")),
    (("--n-layer",), dict(type=_positive_int, metavar="N", help=f"transformer blocks (default {GPT['n_layer']})")),
    (("--n-head",), dict(type=_positive_int, metavar="N", help=f"attention heads (default {GPT['n_head']})")),
    (("--n-embd",), dict(type=_positive_int, metavar="D",
                         help=f"numbers per position, a multiple of --n-head (default {GPT['n_embd']})")),
    (("--eval-interval",), dict(type=_positive_int, metavar="N",
                                help=f"print train and val loss every N steps, a divisor of --steps (default "
                                     f"{GPT['eval_interval']}); checkpoints are written then too")),
    (("--eval-iters",), dict(type=_positive_int, metavar="N",
                             help=f"batches of fixed windows each loss is the mean over (default "
                                  f"{GPT['eval_iters']})")),
]
EVALUATE_OPTIONS = [
    (("--split",), dict(choices=("test", "train"), default="test", help="which split (default test)")),
    (("--loss",), dict(choices=LOSSES, help="the loss to report (default: the one saved with the model; files that do "
                                            "not record it need this option)")),
    (("--batch-size",), dict(type=_positive_int, default=1024, help="samples per forward pass (default 1024)")),
]
PREDICT_OPTIONS = [
    (("--input",), dict(required=True, metavar="FILE",
                        help="samples as rows: .npy (n, features) or (n, 28, 28), or .csv of comma-separated values "
                             "(a leading label column, as in the tutorial's CSV, is dropped)")),
    (("--scale",), dict(choices=("auto", "tutorial", "unit", "none"), default="auto",
                        help="auto (default): integers (uint8 pixels, a CSV of whole numbers) are scaled as the "
                             "model's training data was, floats are taken as already scaled; tutorial (x/255*0.99 "
                             "+ 0.01) or unit (x/255) scale any input; none feeds the values unchanged")),
    (("--raw",), dict(dest="scale", action="store_const", const="none", help="the same as --scale none")),
]
EXPORT_OPTIONS = [
    (("--onnx",), dict(required=True, metavar="OUT", help="the ONNX file to write, e.g. model.onnx")),
    (("--opset",), dict(type=int, default=DEFAULT_OPSET,
                        help=f"ONNX operator set (default {DEFAULT_OPSET}; 13 or later)")),
    (("--input-shape",), dict(type=_shape_arg, metavar="N[,N...]",
                              help="one sample's shape (default: the first Dense layer's inputs, or all of a leading "
                                   "Reshape's, as in --model cnn; needed when the model starts with Flatten or "
                                   "Conv2D), e.g. 28,28")),
]
BENCH_OPTIONS = [
    (("model_file",), dict(nargs="?", metavar="MODEL",
                           help="a model file written by 'xpnet train --save' or xpnet.save (default: --model)")),
    (("--model",), dict(dest="preset", choices=tuple(PRESETS),
                        help="the preset to time, as 'xpnet train --model' builds it for MNIST: mlp (default), "
                             "cnn or tutorial")),
    (("--batch-size",), dict(type=_positive_int, help="samples per step (default: the preset's, as in xpnet train: "
                                                      "mlp and cnn 128, tutorial 1; a model file's own, else 128)")),
    (("--steps",), dict(type=_positive_int,
                        help="timed steps on each backend (default 20, or fewer, down to 3, where they would "
                             "take over ~10 s)")),
    (("--warmup",), dict(type=_non_negative_int, default=3,
                         help="untimed steps before them (default 3: CUDA kernels compile, memory pools fill)")),
    (("--samples",), dict(type=_positive_int, default=60000,
                          help="synthetic training samples, moved to the device once (default 60000: MNIST's)")),
    (("--backends",), dict(type=_backends_arg, metavar="NAME,...",
                           help=f"only these backends, on every device each runs on (default: all but "
                                f"array-api-strict): {', '.join(backend.BACKENDS)}")),
    (("--input-shape",), dict(type=_shape_arg, metavar="N[,N...]",
                              help="one sample's shape, for a model file that starts with Flatten or Conv2D, "
                                   "e.g. 28,28")),
    (("--json",), dict(metavar="FILE", help="also write the table and the verdict as JSON")),
]
GENERATE_OPTIONS = [
    (("--prompt",), dict(default="\n", help="the text to go on from (default: a newline)")),
    (("--tokens",), dict(type=_positive_int, default=500, metavar="N", help="characters to add (default 500)")),
    (("--temperature",), dict(type=_positive_float, default=1.0,
                              help="divides the logits: below 1 surer, above 1 wilder (default 1)")),
    (("--top-k",), dict(type=_positive_int, metavar="K", help="draw from the K likeliest characters only")),
    (("--seed",), dict(type=int, default=0, help="seed of the draws: the same text on every backend (default 0)")),
]

# -- the commands: what `xpnet --help` lists and what each one's --help opens with -----------------
TRAIN_DESCRIPTION = (
    "Train a network on a dataset; print loss and train/test accuracy after each epoch.\n\n"
    "--model picks a preset; every option below overrides it:\n"
    "  mlp (default)  784-512-256-10 ReLU, softmax cross-entropy, AdamW lr 0.003 with a cosine\n"
    "                 schedule over the run, batch 128, inputs 0..1: about 0.975 MNIST test\n"
    "                 accuracy after one epoch, in seconds on a laptop CPU (and a sensible\n"
    "                 batch on a GPU)\n"
    "  cnn            Reshape(1,28,28) - Conv 32 3x3 - ReLU - Conv 64 3x3 - ReLU - MaxPool 2 -\n"
    "                 Dropout 0.25 - Dense 128 - ReLU - Dropout 0.5 - Dense 10, AdamW lr 0.001,\n"
    "                 cosine, batch 128: >= 0.991 MNIST test accuracy in 5 epochs (minutes a\n"
    "                 CPU epoch)\n"
    "  tutorial       the book's 784-200-10 sigmoid network: the 1/2 squared error, SGD lr 0.1,\n"
    "                 one sample per step, inputs 0.01..1, targets 0.01/0.99 (about 0.945)\n"
    "  gpt            a character-level GPT on --dataset shakespeare, nanoGPT's baby run: 4 blocks\n"
    "                 of 4 heads, 128 wide, block 64, batch 12, AdamW lr 0.001 betas (0.9, 0.99),\n"
    "                 weight decay 0.1 on matrices, clip 1.0, 100 warm-up steps then a cosine to\n"
    "                 0.0001 over --steps 2000, train and val loss every 250 steps (val about 1.9);\n"
    "                 --save keeps the vocabulary for 'xpnet generate'")
EVALUATE_DESCRIPTION = (
    "Report a saved model's loss and accuracy on a dataset's test (or train) split.\n\n"
    "The dataset defaults to the one the model was trained on; inputs are scaled and targets\n"
    "made as they were in training (models saved by 'xpnet train' record both).")
PREDICT_DESCRIPTION = (
    "Print the predicted class of each sample in a .npy or .csv file, one per line.\n\n"
    "Integer input (uint8 pixels 0..255, a CSV of whole numbers) is scaled as the model's\n"
    "training data was; float input is taken as already scaled. Input far outside the range\n"
    "the model was trained on is an error, not a guess (see --scale).")
INFO_DESCRIPTION = (
    "Show versions, usable backends and CUDA devices (or why there are none).\n\n"
    "Also the device that 'auto' (or --device/--backend) resolves to here, and the data folders.")
BENCH_DESCRIPTION = (
    "Is the GPU worth it? Time a few training steps of a preset or a saved model on every\n"
    "device and backend this machine has (NumPy always; PyTorch and JAX on the CPU; CuPy,\n"
    "PyTorch and JAX on a CUDA GPU), on synthetic data of the model's input shape, and say\n"
    "which is fastest and by how much. A step is fit's: the batch gathered on the device, the\n"
    "losses read back every 50 steps; moving the data to the device once is shown apart.\n"
    "Each backend that cannot run here is listed with the reason.")
GENERATE_DESCRIPTION = (
    "Print text from a model trained by 'xpnet train --model gpt': the prompt, then --tokens\n"
    "characters drawn one at a time from the model (the context cut to its block size).")
EXPORT_DESCRIPTION = (
    "Write a saved model as an ONNX file, with a dynamic batch size, for ONNX Runtime (C++, C#,\n"
    "Java, JavaScript, phones) and other ONNX runtimes. The input scaling the model was trained\n"
    "with is recorded in the file's metadata (the runtime does not apply it). Needs the onnx\n"
    "package: pip install 'xpnet[onnx]'.")


def subcommands() -> list:
    """Each command as (name, function, its line in ``xpnet --help``, its description, its options).

    A function, not a constant: it reads the ``cmd_*`` names of this module at each build_parser(), so that
    a test can replace a command with ``monkeypatch.setattr(parser, "cmd_info", ...)``."""
    return [
        ("train", cmd_train, "train a network on a dataset", TRAIN_DESCRIPTION,
         COMMON + data_options("mnist (--model gpt: shakespeare)", texts=True) + TRAIN_OPTIONS + GPT_OPTIONS),
        ("evaluate", cmd_evaluate, "loss and accuracy of a saved model", EVALUATE_DESCRIPTION,
         COMMON + data_options(None) + MODEL_FILE + EVALUATE_OPTIONS),
        ("predict", cmd_predict, "predict the class of each input row", PREDICT_DESCRIPTION,
         COMMON + MODEL_FILE + PREDICT_OPTIONS),
        ("generate", cmd_generate, "text from a trained GPT", GENERATE_DESCRIPTION,
         COMMON + MODEL_FILE + GENERATE_OPTIONS),
        ("info", cmd_info, "versions, backends and CUDA devices", INFO_DESCRIPTION, COMMON),
        ("export", cmd_export, "write a saved model as an ONNX file", EXPORT_DESCRIPTION,
         MODEL_FILE + EXPORT_OPTIONS + DEBUG),  # on the CPU in any case: no --device
        ("bench", cmd_bench, "time training steps on each device and backend", BENCH_DESCRIPTION,
         BENCH_OPTIONS + DEBUG),  # every device and backend in turn: no --device
    ]


def add_options(parser: argparse.ArgumentParser, options) -> None:
    for flags, keywords in options:
        parser.add_argument(*flags, **keywords)


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` and ``--backend`` as the ``xpnet`` command has them (for scripts and examples)."""
    add_options(parser, DEVICE_OPTIONS)


def build_parser() -> argparse.ArgumentParser:
    """The ``xpnet`` parser; each command's ``args.func`` is the function that runs it."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="xpnet", formatter_class=raw,
        description="Train and run neural networks from scratch on NumPy, CuPy, PyTorch or array-api-strict.",
        epilog="Run 'xpnet <command> --help' for a command's options. Exit status: 0 ok, 1 runtime error,\n"
               "2 usage error.")
    parser.add_argument("--version", action="version", version=f"xpnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    for name, func, summary, description, options in subcommands():
        command = sub.add_parser(name, help=summary, description=description, formatter_class=raw)
        add_options(command, options)
        command.set_defaults(func=func)
    return parser
