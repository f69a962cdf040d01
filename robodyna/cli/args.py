"""Argument types and the one error type shared by the CLI verbs.

Every refusal goes through :class:`CLIError` (or another error :func:`robodyna.cli.main.main` catches) and is
printed in one format, ``robodyna VERB: error: MESSAGE``, exit status 1; mistakes argparse catches itself (a
missing option, a count that is not a positive integer) print the usage line and the same prefix, exit 2.
"""

from __future__ import annotations

import argparse
import logging

# Libraries whose INFO lines and warnings are noise unless asked for (-v): the ONNX exporter's passes and its
# notes about optional packages (torchvision), tensorboard.
NOISY_LOGGERS = ("torch", "onnxscript", "onnx_ir", "onnx", "onnxruntime", "tensorboard", "matplotlib", "PIL")
_quiet = False


def quiet_libraries(again: bool = False) -> None:
    """Raise the noisy libraries' loggers to ERROR (the CLI's default, without ``-v``).

    ``again=True`` re-applies it if it was applied before: importing torch resets the levels of its loggers,
    so the verbs that import it call this after the import.
    """
    global _quiet
    if again and not _quiet:
        return
    _quiet = True
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in list(logging.root.manager.loggerDict):  # children torch gave their own level
        if name not in NOISY_LOGGERS and name.split(".", 1)[0] in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)


class CLIError(Exception):
    """A refusal of a command: ``str(exc)`` says what was wrong and what to do instead."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (counts of steps, episodes, horizons)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (>= 1), got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0 (indices)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def open_fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {value}")
    return value
