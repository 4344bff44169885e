"""The ``xpnet`` parser as data: every command's options (flags, dest, default, choices, the argparse
details that shape ``--help``, and the help text), in ``--help``'s order, as they stood before the parser
became a table (issue 24). A change to any option's text, order or validation fails here; change the
snapshot with it when that change is meant.

Each row: (flags, dest, default, choices, {non-default metavar / type / action / nargs / const /
required}, help). Values that come from another package's registry (the backends, the datasets, the ONNX
opset) are read from it, so that the snapshot speaks for the command line only.
"""

from __future__ import annotations

import argparse

import pytest

from xpnet import backend, cli, datasets
from xpnet.cli import build_parser
from xpnet.onnx import DEFAULT_OPSET

FLAG = {"action": "_StoreTrueAction", "nargs": 0, "const": True}
HELP = (("-h", "--help"), "help", "==SUPPRESS==", None, {"action": "_HelpAction", "nargs": 0},
        "show this help message and exit")
DEVICE = [
    (("--device",), "device", None, None, {"type": "_device_arg"},
     "auto, cpu, cuda or cuda:N ('gpu' works too; default: $XPNET_DEVICE, else auto: a CUDA GPU when "
     "one can be used, else the CPU)"),
    (("--backend",), "backend", None, None, {"type": "_backend_arg"},
     f"array library: {', '.join(backend.BACKENDS)} (default: $XPNET_BACKEND, else numpy "
     "on the CPU, cupy on CUDA)"),
]
DEBUG = (("--debug",), "debug", False, None, FLAG, "show the full traceback of an error")
MODEL = (("model",), "model", None, None, {"metavar": "MODEL", "required": True},
         "a model file written by 'xpnet train --save' or xpnet.save")
LOSSES = ("mse", "softmax_cross_entropy", "binary_cross_entropy")


def _data(default, said, texts=False):
    return [
        (("--dataset",), "dataset", default, tuple(datasets.DATASETS) + (tuple(datasets.TEXTS) if texts else ()), {},
         f"{said} (default), or any of: mnist, fashion-mnist, csv (the tutorial's 100/10-row CSV), and the "
         "synthetic 2-D sets spirals and moons (no files needed)" + (", or the text shakespeare (--model gpt)"
                                                                     if texts else "")),
        (("--data-dir",), "data_dir", None, None, {"metavar": "DIR"},
         "folder holding mnist/, fashion-mnist/, mnist-csv/ (default: $XPNET_DATA, then the download cache)"),
        (("--limit",), "limit", None, None, {"metavar": "N", "type": "_positive_int"},
         "use only the first N train and test samples"),
        (("--no-download",), "no_download", False, None, FLAG, "fail instead of downloading missing data"),
    ]


TRAIN = [
    HELP, *DEVICE, DEBUG, *_data(None, "mnist (--model gpt: shakespeare)", texts=True),
    (("--model",), "model", "mlp", ("mlp", "cnn", "tutorial", "gpt"), {},
     "preset: mlp (default), cnn, tutorial or gpt (see above)"),
    (("--layers",), "layers", None, None, {"metavar": "N,N,...", "type": "_layers_arg"},
     "layer sizes from input to output (default: the preset's hidden sizes between the data's "
     "features and classes, e.g. 784,512,256,10); the first must equal the features"),
    (("--activation",), "activation", None, ("sigmoid", "relu", "tanh", "leaky_relu"), {},
     "hidden-layer activation (mlp: relu, tutorial: sigmoid)"),
    (("--loss",), "loss", None, LOSSES, {},
     "mse (sigmoid output, targets 0.01/0.99; tutorial), softmax_cross_entropy (mlp) or "
     "binary_cross_entropy (both on a linear output: logits)"),
    (("--optimizer",), "optimizer", None, ("sgd", "momentum", "adam", "adamw", "rmsprop"), {},
     "sgd (tutorial), momentum (0.9), adam, adamw (mlp) or rmsprop"),
    (("--lr",), "lr", None, None, {"type": "_positive_float"},
     "learning rate (default: the preset's; for another --optimizer 0.1 for sgd, 0.01 for momentum "
     "and rmsprop, 0.001 for adam and adamw)"),
    (("--weight-decay",), "weight_decay", None, None, {"metavar": "WD", "type": "_non_negative_float"},
     "weight decay: decoupled for adamw (default 0.01), L2 in the gradient for the others (default 0)"),
    (("--schedule",), "schedule", None, ("constant", "cosine", "step", "exponential"), {},
     "learning-rate schedule, per step: constant (tutorial), cosine (mlp: from lr down to 0 over the "
     "run), step (x0.1 every third of the run) or exponential (x0.01 over the run)"),
    (("--warmup",), "warmup", None, None, {"metavar": "EPOCHS", "type": "_non_negative_float"},
     "linear warm-up from 0 to lr over this many epochs (fractions allowed) before the schedule (default 0; "
     "--model gpt: steps, default 100)"),
    (("--dropout",), "dropout", None, None, {"metavar": "P", "type": "_probability"},
     "dropout after each hidden activation, with probability P (default 0: none; cnn: 0.25 after the "
     "pooling and 0.5 after the dense layer, both P when given)"),
    (("--batchnorm",), "batchnorm", False, None, FLAG,
     "BatchNorm1d after each hidden Dense layer (before its activation); cnn: BatchNorm2d after each "
     "convolution too"),
    (("--epochs",), "epochs", 1, None, {"type": "_positive_int"}, "passes over the training set (default 1)"),
    (("--batch-size",), "batch_size", None, None, {"type": "_positive_int"},
     "samples per step (mlp: 128; tutorial: 1, the book's)"),
    (("--val-split",), "val_split", None, None, {"metavar": "F", "type": "_probability"},
     "hold out the last fraction F of the training set for validation (reported as val_*; early "
     "stopping watches its loss). The test set is reported either way"),
    (("--early-stopping",), "early_stopping", None, None, {"metavar": "N", "type": "_positive_int"},
     "stop when the validation loss has not improved for N epochs, and keep the best weights"),
    (("--seed",), "seed", 0, None, {"type": "int"}, "seed for the initial weights and shuffling (default 0)"),
    (("--dtype",), "dtype", "float32", ("float32", "float64"), {}, "default float32"),
    (("--scale",), "scale", None, ("tutorial", "unit"), {},
     "pixel scaling: unit = 0..1 (mlp), tutorial = 0.01..1 (tutorial); image datasets only"),
    (("--save",), "save", None, None, {"metavar": "PATH"}, "save the trained model to PATH (.npz)"),
    (("--checkpoint-dir",), "checkpoint_dir", None, None, {"metavar": "DIR"},
     "write DIR/last.npz after every epoch: model, optimizer state, schedule, epoch and random state,"
     " so that --resume continues exactly"),
    (("--resume",), "resume", None, None, {"metavar": "PATH"},
     "continue a run from its checkpoint (DIR/last.npz) up to --epochs in all; give the same options "
     "as the interrupted run"),
    (("--plot",), "plot", None, None, {"metavar": "PNG"}, "draw loss and accuracy curves to PNG (needs xpnet[plot])"),
    (("--quiet",), "quiet", False, None, FLAG, "print only the last epoch's line"),
    (("--distributed",), "distributed", False, None, FLAG,
     "data-parallel over the processes of an MPI job: mpiexec -n N xpnet train --distributed ... (or "
     "srun). --batch-size is the global batch, split across the N ranks; rank 0 prints and writes the"
     " files; one GPU per rank on CUDA. Needs pip install 'xpnet[mpi]'"),
    (("--threads",), "threads", None, None, {"metavar": "N", "type": "_positive_int"},
     "data-parallel over N threads of this process, on the CPU: each thread trains on its shard of "
     "every batch with one BLAS thread, so that all of NumPy's work runs on N cores (the weights "
     "match a one-thread run to rounding; Dropout masks differ per thread)"),
    # --model gpt's own
    (("--steps",), "steps", None, None, {"metavar": "N", "type": "_positive_int"}, "training steps (default 2000)"),
    (("--block-size",), "block_size", None, None, {"metavar": "T", "type": "_positive_int"},
     "context: characters a window holds (default 64)"),
    (("--n-layer",), "n_layer", None, None, {"metavar": "N", "type": "_positive_int"}, "transformer blocks (default 4)"),
    (("--n-head",), "n_head", None, None, {"metavar": "N", "type": "_positive_int"}, "attention heads (default 4)"),
    (("--n-embd",), "n_embd", None, None, {"metavar": "D", "type": "_positive_int"},
     "numbers per position, a multiple of --n-head (default 128)"),
    (("--eval-interval",), "eval_interval", None, None, {"metavar": "N", "type": "_positive_int"},
     "print train and val loss every N steps, a divisor of --steps (default 250); checkpoints are written then too"),
    (("--eval-iters",), "eval_iters", None, None, {"metavar": "N", "type": "_positive_int"},
     "batches of fixed windows each loss is the mean over (default 20)"),
]
EVALUATE = [
    HELP, *DEVICE, DEBUG, *_data(None, "the one the model was trained on"), MODEL,
    (("--split",), "split", "test", ("test", "train"), {}, "which split (default test)"),
    (("--loss",), "loss", None, LOSSES, {},
     "the loss to report (default: the one saved with the model; files that do not record it need this option)"),
    (("--batch-size",), "batch_size", 1024, None, {"type": "_positive_int"}, "samples per forward pass (default 1024)"),
]
PREDICT = [
    HELP, *DEVICE, DEBUG, MODEL,
    (("--input",), "input", None, None, {"metavar": "FILE", "required": True},
     "samples as rows: .npy (n, features) or (n, 28, 28), or .csv of comma-separated values (a "
     "leading label column, as in the tutorial's CSV, is dropped)"),
    (("--scale",), "scale", "auto", ("auto", "tutorial", "unit", "none"), {},
     "auto (default): integers (uint8 pixels, a CSV of whole numbers) are scaled as the model's "
     "training data was, floats are taken as already scaled; tutorial (x/255*0.99 + 0.01) or unit "
     "(x/255) scale any input; none feeds the values unchanged"),
    (("--raw",), "scale", None, None, {"action": "_StoreConstAction", "nargs": 0, "const": "none"},
     "the same as --scale none"),
]
EXPORT = [
    HELP, MODEL,
    (("--onnx",), "onnx", None, None, {"metavar": "OUT", "required": True}, "the ONNX file to write, e.g. model.onnx"),
    (("--opset",), "opset", DEFAULT_OPSET, None, {"type": "int"},
     f"ONNX operator set (default {DEFAULT_OPSET}; 13 or later)"),
    (("--input-shape",), "input_shape", None, None, {"metavar": "N[,N...]", "type": "_shape_arg"},
     "one sample's shape (default: the first Dense layer's inputs, or all of a leading Reshape's, as "
     "in --model cnn; needed when the model starts with Flatten or Conv2D), e.g. 28,28"),
    DEBUG,
]

GENERATE = [
    HELP, *DEVICE, DEBUG, MODEL,
    (("--prompt",), "prompt", "\n", None, {}, "the text to go on from (default: a newline)"),
    (("--tokens",), "tokens", 500, None, {"metavar": "N", "type": "_positive_int"}, "characters to add (default 500)"),
    (("--temperature",), "temperature", 1.0, None, {"type": "_positive_float"},
     "divides the logits: below 1 surer, above 1 wilder (default 1)"),
    (("--top-k",), "top_k", None, None, {"metavar": "K", "type": "_positive_int"},
     "draw from the K likeliest characters only"),
    (("--seed",), "seed", 0, None, {"type": "int"}, "seed of the draws: the same text on every backend (default 0)"),
]
BENCH = [
    HELP,
    (("model_file",), "model_file", None, None, {"metavar": "MODEL", "nargs": "?"},
     "a model file written by 'xpnet train --save' or xpnet.save (default: --model)"),
    (("--model",), "preset", None, ("mlp", "cnn", "tutorial"), {},
     "the preset to time, as 'xpnet train --model' builds it for MNIST: mlp (default), cnn or tutorial"),
    (("--batch-size",), "batch_size", None, None, {"type": "_positive_int"},
     "samples per step (default: the preset's, as in xpnet train: mlp and cnn 128, tutorial 1; a model file's "
     "own, else 128)"),
    (("--steps",), "steps", None, None, {"type": "_positive_int"},
     "timed steps on each backend (default 20, or fewer, down to 3, where they would take over ~10 s)"),
    (("--warmup",), "warmup", 3, None, {"type": "_non_negative_int"},
     "untimed steps before them (default 3: CUDA kernels compile, memory pools fill)"),
    (("--samples",), "samples", 60000, None, {"type": "_positive_int"},
     "synthetic training samples, moved to the device once (default 60000: MNIST's)"),
    (("--backends",), "backends", None, None, {"metavar": "NAME,...", "type": "_backends_arg"},
     f"only these backends, on every device each runs on (default: all but array-api-strict): "
     f"{', '.join(backend.BACKENDS)}"),
    (("--input-shape",), "input_shape", None, None, {"metavar": "N[,N...]", "type": "_shape_arg"},
     "one sample's shape, for a model file that starts with Flatten or Conv2D, e.g. 28,28"),
    (("--json",), "json", None, None, {"metavar": "FILE"}, "also write the table and the verdict as JSON"),
    DEBUG,
]

# name: (the help in `xpnet --help`, the description atop `xpnet NAME --help`, its options)
COMMANDS = {
    "train": ("train a network on a dataset",
              "Train a network on a dataset; print loss and train/test accuracy after each epoch.\n"
              "\n"
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
              "                 --save keeps the vocabulary for 'xpnet generate'",
              TRAIN),
    "evaluate": ("loss and accuracy of a saved model",
                 "Report a saved model's loss and accuracy on a dataset's test (or train) split.\n"
                 "\n"
                 "The dataset defaults to the one the model was trained on; inputs are scaled and targets\n"
                 "made as they were in training (models saved by 'xpnet train' record both).",
                 EVALUATE),
    "predict": ("predict the class of each input row",
                "Print the predicted class of each sample in a .npy or .csv file, one per line.\n"
                "\n"
                "Integer input (uint8 pixels 0..255, a CSV of whole numbers) is scaled as the model's\n"
                "training data was; float input is taken as already scaled. Input far outside the range\n"
                "the model was trained on is an error, not a guess (see --scale).",
                PREDICT),
    "generate": ("text from a trained GPT",
                 "Print text from a model trained by 'xpnet train --model gpt': the prompt, then --tokens\n"
                 "characters drawn one at a time from the model (the context cut to its block size).",
                 GENERATE),
    "info": ("versions, backends and CUDA devices",
             "Show versions, usable backends and CUDA devices (or why there are none).\n"
             "\n"
             "Also the device that 'auto' (or --device/--backend) resolves to here, and the data folders.",
             [HELP, *DEVICE, DEBUG]),
    "export": ("write a saved model as an ONNX file",
               "Write a saved model as an ONNX file, with a dynamic batch size, for ONNX Runtime (C++, C#,\n"
               "Java, JavaScript, phones) and other ONNX runtimes. The input scaling the model was trained\n"
               "with is recorded in the file's metadata (the runtime does not apply it). Needs the onnx\n"
               "package: pip install 'xpnet[onnx]'.",
               EXPORT),
    "bench": ("time training steps on each device and backend",
              "Is the GPU worth it? Time a few training steps of a preset or a saved model on every\n"
              "device and backend this machine has (NumPy always; PyTorch and JAX on the CPU; CuPy,\n"
              "PyTorch and JAX on a CUDA GPU), on synthetic data of the model's input shape, and say\n"
              "which is fastest and by how much. A step is fit's: the batch gathered on the device, the\n"
              "losses read back every 50 steps; moving the data to the device once is shown apart.\n"
              "Each backend that cannot run here is listed with the reason.",
              BENCH),
}
PLAIN = {"metavar": None, "type": None, "action": "_StoreAction", "nargs": None, "const": None, "required": False}


def _row(action):
    details = {"metavar": action.metavar, "type": getattr(action.type, "__name__", action.type),
               "action": type(action).__name__, "nargs": action.nargs, "const": action.const,
               "required": action.required}
    choices = None if action.choices is None else tuple(action.choices)
    return (tuple(action.option_strings) or (action.dest,), action.dest, action.default, choices,
            {k: v for k, v in details.items() if PLAIN[k] != v}, action.help)


def _subcommands(parser):
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def test_the_top_level_parser_is_unchanged():
    parser = build_parser()
    sub = _subcommands(parser)
    assert (parser.prog, parser.description, parser.epilog, parser.formatter_class) == (
        "xpnet", "Train and run neural networks from scratch on NumPy, CuPy, PyTorch or array-api-strict.",
        "Run 'xpnet <command> --help' for a command's options. Exit status: 0 ok, 1 runtime error,\n2 usage error.",
        argparse.RawDescriptionHelpFormatter)
    assert [_row(a) for a in parser._actions if a is not sub] == [
        HELP, (("--version",), "version", "==SUPPRESS==", None, {"action": "_VersionAction", "nargs": 0},
               "show program's version number and exit")]
    assert (sub.dest, sub.metavar, sub.required) == ("command", "<command>", True)
    assert [(c.dest, c.help) for c in sub._choices_actions] == [(name, c[0]) for name, c in COMMANDS.items()]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_commands_options_are_unchanged(name):
    _, description, options = COMMANDS[name]
    parser = _subcommands(build_parser()).choices[name]
    assert (parser.prog, parser.description, parser.epilog, parser.usage, parser.formatter_class) == (
        f"xpnet {name}", description, None, None, argparse.RawDescriptionHelpFormatter)
    assert [_row(a) for a in parser._actions] == options
    # the sections of --help: positionals, then options, each in the table's order
    positional = [row[1] for row in options if not row[0][0].startswith("-")]
    assert [[a.dest for a in group._group_actions] for group in parser._action_groups] == [
        positional, [row[1] for row in options if row[0][0].startswith("-")]]


@pytest.mark.parametrize("argv", [["train"], ["evaluate", "m.npz"], ["predict", "m.npz", "--input", "x.npy"], ["info"],
                                  ["export", "m.npz", "--onnx", "m.onnx"], ["bench"], ["generate", "m.npz"]],
                         ids=lambda argv: argv[0])
def test_each_command_runs_its_own_function(argv):
    assert build_parser().parse_args(argv).func is getattr(cli, f"cmd_{argv[0]}")
