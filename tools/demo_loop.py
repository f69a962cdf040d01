"""`make demo` (the sim-to-real loop): ``robodyna loop --config reacher2`` — the shipped reacher2 simulation
checkpoint (stage 1, see ``tools/loop_checkpoint.py`` for the command that made it) adapted on the "real" robot
(the ``laggy`` reality profile) by the trainer service and the controller as two processes on a CURVE-secured
loopback link, budgeted in REAL steps (``trainer.real_step_budget``), so the result does not depend on how busy
the machine is. Prints sim-only vs adapted on the "real" robot and where the report is.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from robodyna.cli.main import main as cli


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/demo-loop")
    ap.add_argument("--config", default="reacher2")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)
    rd = Path(a.run_dir)
    if rd.exists():
        shutil.rmtree(rd)  # the demo starts afresh every time
    args = ["loop", "--config", a.config, "--run-dir", str(rd)]
    for o in a.overrides:
        args += ["--set", o]
    return cli(args)


if __name__ == "__main__":
    sys.exit(main())
