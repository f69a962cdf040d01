"""``robodyna`` command line: one entry point with verbs (``robodyna VERB --help``).

Errors are printed in one format, ``robodyna VERB: error: MESSAGE`` (exit 1; argparse's usage errors exit 2,
a diverged training run exits 3). Logging is quiet by default: warnings and errors (robodyna's; the ONNX
exporter's, torch's and tensorboard's errors only); ``-v`` shows INFO lines of robodyna and every library and
Python warnings, ``-vv`` debug output.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
import warnings

from robodyna import __version__
from robodyna.cli.args import CLIError, quiet_libraries
from robodyna.config import ConfigError
from robodyna.lifetime import exit_with_parent

# Modules that add verbs: each exposes ``register(subparsers)``; handlers are ``args.func(args) -> int``.
VERB_MODULES = ("robodyna.cli.sim", "robodyna.cli.learn", "robodyna.cli.data", "robodyna.cli.onboard",
                "robodyna.cli.transport", "robodyna.cli.loop")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robodyna", description="Sim-to-real model-based RL for robot arms.")
    parser.add_argument("--version", action="version", version=f"robodyna {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging: -v INFO lines (robodyna and libraries) and warnings, -vv debug")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in VERB_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register(sub)
    return parser


def configure_logging(verbose: int) -> None:
    """Default: WARNING, the noisy libraries ERROR and no Python warnings from them; -v INFO, -vv DEBUG."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("robodyna").setLevel(level)
    if not verbose:
        quiet_libraries()
        for category in (FutureWarning, DeprecationWarning, UserWarning):
            for module in ("torch", "onnx", "onnxscript", "copyreg", "tensorboard", "minari", "gymnasium"):
                warnings.filterwarnings("ignore", category=category, module=module)


def verb_of(args: argparse.Namespace) -> str:
    """``train``, ``dataset export``, ``model fit``, ``robots check``: how the user typed the command."""
    parts = [args.verb]
    for sub in ("dataset_cmd", "model_cmd", "robots_verb"):
        if getattr(args, sub, None):
            parts.append(getattr(args, sub))
    return " ".join(p for p in parts if p)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        exit_with_parent()  # a trainer or controller that `robodyna loop` started ends when the loop does
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"robodyna {verb_of(args)}: error: {exc}", file=sys.stderr)
        return exc.code
    except (ConfigError, ValueError, RuntimeError, FileNotFoundError, FileExistsError) as exc:
        logging.getLogger("robodyna").debug("error", exc_info=True)
        print(f"robodyna {verb_of(args)}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
