"""The command line's argument types: each turns one flag's text into a value or raises
``argparse.ArgumentTypeError`` with what was wrong and an example of what is right."""

from __future__ import annotations

import argparse

from .. import backend
from ..arguments import check_count


def _device_arg(text: str) -> str:
    try:
        backend.parse_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _backend_arg(text: str) -> str:
    try:
        return backend.parse_backend(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _layers_arg(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        sizes = []
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"invalid layer sizes {text!r}: give two or more positive ints "
                                         f"separated by commas, e.g. 784,200,10")
    return sizes


def _positive_int(text: str) -> int:
    try:
        return check_count("value", int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None


def _non_negative_int(text: str) -> int:
    try:
        return check_count("value", int(text), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None


def _float_in(text: str, low: float, high: float, closed_low: bool, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")  # fails every comparison below
    if not ((low <= value if closed_low else low < value) and value < high):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    return _float_in(text, 0.0, float("inf"), False, "a positive number")


def _non_negative_float(text: str) -> float:
    return _float_in(text, 0.0, float("inf"), True, "a number >= 0")


def _probability(text: str) -> float:
    return _float_in(text, 0.0, 1.0, True, "a number in [0, 1)")


def _shape_arg(text: str) -> tuple:
    try:
        shape = tuple(int(s) for s in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"invalid shape {text!r}: one sample's shape as positive ints "
                                         f"separated by commas, e.g. 784 or 28,28")
    return shape


def _backends_arg(text: str) -> tuple:
    try:
        return tuple(dict.fromkeys(backend.parse_backend(name) for name in text.split(",")))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
