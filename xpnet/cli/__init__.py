"""The ``xpnet`` command (also ``python -m xpnet``): train, evaluate, predict and info.

    xpnet train                                  # the tutorial's 784-200-10 sigmoid net, MNIST, 1 epoch
    xpnet train --dataset spirals --loss softmax_cross_entropy --optimizer adam --epochs 50 --batch-size 16
    xpnet train --epochs 5 --save mnist.npz && xpnet evaluate mnist.npz
    xpnet predict mnist.npz --input digits.csv   # one predicted class per line
    xpnet info                                   # versions, backends, CUDA devices (or why none)
    xpnet export mnist.npz --onnx mnist.onnx     # for ONNX Runtime and other ONNX runtimes
    xpnet bench --model cnn                      # is the GPU worth it? each device and backend, timed
    xpnet train --model gpt --save gpt.npz && xpnet generate gpt.npz --prompt "ROMEO:"   # nanoGPT's baby run

Exit status: 0 on success, 2 for usage errors (argparse's), 1 for runtime errors, which are printed as
one line ``xpnet: error: <message>`` on stderr; warnings print as ``xpnet: warning: <message>``, once each.
``--debug`` shows the traceback, and Python's own warnings, instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings

import numpy as np

from .. import backend, datasets, io
from .bench import cmd_bench
from .commands import cmd_evaluate, cmd_info, cmd_predict
from .export import cmd_export
from .gpt import cmd_generate
from .parser import add_device_options, build_parser, check_environment
from .train import cmd_train

__all__ = ["add_device_options", "build_parser", "cmd_bench", "cmd_evaluate", "cmd_export", "cmd_generate", "cmd_info",
           "cmd_predict", "cmd_train", "main", "run_script"]


def run_script(main, argv=None) -> None:
    """Run a script's ``main(argv)`` and exit as the ``xpnet`` command does.

    An expected error (no GPU, missing data, bad input) is printed as one line ``<script>: error: ...``
    and exits 1, instead of a traceback; ``XPNET_DEBUG=1`` shows the traceback.
    """
    prog = os.path.basename(sys.argv[0]) or "xpnet"
    if os.environ.get("XPNET_DEBUG"):
        sys.exit(main(argv))
    try:
        status = main(argv)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except _EXPECTED as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        sys.exit(1)
    sys.exit(status)


# -- entry point --------------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is at each message: pytest, notebooks and redirections swap it."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


@contextlib.contextmanager
def _warnings_as_lines(debug: bool):
    """Inside, a warning prints as the command's own line ``xpnet: warning: ...`` on stderr, once per text,
    not as Python's ``.../bin/xpnet:8: UserWarning: ...`` plus the source line ``sys.exit(main())``, which
    points at the launcher rather than at anything the user wrote. The filters stay the caller's (``-W
    error`` still raises); ``--debug`` keeps Python's own form. The Python API is untouched: only main()
    enters this."""
    if debug:
        yield
        return
    seen = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = _one_line(message) if isinstance(message, Warning) else " ".join(str(message).split())
        kind = "" if category is UserWarning else f"{category.__name__}: "  # xpnet's own warnings are all
        if (kind, text) not in seen:
            seen.add((kind, text))
            print(f"xpnet: warning: {kind}{text}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


_EXPECTED = (backend.DeviceUnavailableError, datasets.DatasetError, io.ModelFormatError, ValueError, OSError,
             FloatingPointError, TypeError, MemoryError, ImportError)


def main(argv=None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to print the command that resumes a run
    check_environment(parser)
    if args.command == "train" and args.warmup and args.schedule not in (None, "cosine"):
        parser.error("--warmup goes with --schedule cosine (a linear warm-up, then the cosine)")
    log = logging.getLogger("xpnet")
    quiet = getattr(args, "quiet", False)
    if not quiet and not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    # The notes (INFO: "device auto -> cpu, because ...", the ranks' transport) where they tell what a run
    # did: train and info. predict and export print results, evaluate names the device in its own line.
    log.setLevel(logging.INFO if args.command in ("train", "info") and not quiet else logging.WARNING)
    try:
        with datasets.quiet_downloads() if getattr(args, "quiet", False) else contextlib.nullcontext(), \
                _warnings_as_lines(args.debug):
            if args.debug:
                return args.func(args)
            # NumPy's overflow/invalid warnings would only repeat, less clearly, what the one-line error
            # (TrainingDiverged, say) reports; --debug shows them.
            with np.errstate(all="ignore"):
                return args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("xpnet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (xpnet predict ... | head): not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as exc:
        if args.debug:
            raise
        hint = "" if isinstance(exc, _EXPECTED) else f" ({type(exc).__name__}; run with --debug for the traceback)"
        print(f"xpnet: error: {_one_line(exc)}{hint}", file=sys.stderr)
        return 1
