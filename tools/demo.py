"""`make demo`: the sim-to-real loop on the default robot (reacher2), budgeted in REAL steps.

1. checks every robot folder (load, compile, step 1 s in each engine);
2. ``robodyna loop --config reacher2`` (tools/demo_loop.py): the shipped simulation checkpoint adapted on the
   "real" robot (a reality profile) by the trainer service and the controller as two processes on a CURVE-secured
   loopback link, until the real-step budget is spent; prints sim-only vs adapted on the "real" robot (return,
   final distance, success rate) and writes ``runs/demo-loop/report.md``.

``tools/demo_train.py`` is the previous demo (MBPO vs SAC vs random in simulation, wall-time budget).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from robodyna.cli.main import main as cli  # noqa: E402


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print("== 1. robot folders")
    if cli(["robots", "check"]) != 0:
        return 1
    print("\n== 2. the sim-to-real loop: reacher2, sim-only vs adapted on the \"real\" robot", flush=True)
    import demo_loop

    return int(demo_loop.main([]))


if __name__ == "__main__":
    raise SystemExit(main())
