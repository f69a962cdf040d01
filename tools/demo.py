"""`make demo`: the main job on the default robot (reacher2).

1. checks every robot folder (load, compile, step 1 s in each engine);
2. runs the default robot with a random policy in simulation and under each reality profile;
3. trains MBPO on reacher2 and compares it with a random policy and SAC (tools/demo_train.py).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from robodyna.cli.main import main as cli  # noqa: E402
from robodyna.robots import list_realities  # noqa: E402


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print("== 1. robot folders")
    if cli(["robots", "check"]) != 0:
        return 1
    print("\n== 2. reacher2, random policy, nominal sim and each reality profile")
    for reality in list_realities():
        if cli(["sim", "--robot", "reacher2", "--reality", reality, "--steps", "2000"]) != 0:
            return 1
    if importlib.util.find_spec("demo_train") is not None:
        print("\n== 3. MBPO on reacher2 vs random and SAC")
        import demo_train

        return int(demo_train.main([]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
