"""Argument types and the one error type shared by the CLI verbs.

Every refusal goes through :class:`CLIError` (or another error :func:`robodyna.cli.main.main` catches) and is
printed in one format, ``robodyna VERB: error: MESSAGE``, exit status 1; mistakes argparse catches itself (a
missing option, a count that is not a positive integer) print the usage line and the same prefix, exit 2.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

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


def _checked(conv: Callable[[str], Any], ok: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    """An argparse type: ``conv(text)`` that must satisfy ``ok``; the message says ``what`` was expected."""
    def parse(text: str) -> Any:
        try:
            value = conv(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value
    parse.__name__ = conv.__name__
    return parse


#: argparse type: an integer >= 1 (counts of steps, episodes, horizons)
positive_int = _checked(int, lambda v: v >= 1, "a positive integer (>= 1)")
#: argparse type: an integer >= 0 (indices)
nonnegative_int = _checked(int, lambda v: v >= 0, "an integer >= 0")
#: argparse type: a number strictly between 0 and 1
open_fraction = _checked(float, lambda v: 0.0 < v < 1.0, "a number between 0 and 1 (exclusive)")
