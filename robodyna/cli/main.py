"""``robodyna`` command line: one entry point with verbs (``robodyna VERB --help``)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys

from robodyna import __version__
from robodyna.config import ConfigError

# Modules that add verbs: each exposes ``register(subparsers)``; handlers are ``args.func(args) -> int``.
VERB_MODULES = ("robodyna.cli.sim", "robodyna.cli.learn", "robodyna.cli.data", "robodyna.cli.transport")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robodyna", description="Sim-to-real model-based RL for robot arms.")
    parser.add_argument("--version", action="version", version=f"robodyna {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in VERB_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose + 1, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ConfigError, ValueError, RuntimeError, FileNotFoundError) as exc:
        logging.getLogger("robodyna").debug("error", exc_info=True)
        print(f"robodyna {args.verb}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
