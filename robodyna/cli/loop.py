"""Verb ``loop``: the sim-to-real loop (:mod:`robodyna.loop.run`)."""

from __future__ import annotations

import argparse
import json
import signal
import time
from types import FrameType

from robodyna.cli.args import quiet_libraries


def _loop(a: argparse.Namespace) -> int:
    from robodyna.learn.mbpo import format_eval
    from robodyna.loop.config import load_loop_config
    from robodyna.loop.run import LoopRun

    quiet_libraries(again=True)  # importing torch reset its loggers' levels (the sim policy's export logged)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:  # as Ctrl-C: stop both sides cleanly, then exit
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    t0 = time.monotonic()
    if a.resume:
        run = LoopRun.resume(a.resume)
    else:
        if not a.run_dir:
            raise ValueError("--run-dir DIR is required (or --resume RUN_DIR)")
        run = LoopRun.create(load_loop_config(a.config, a.overrides), a.run_dir)
    res = run.run()
    ev, s = res["eval"], res["summary"]
    print(f"loop {run.cfg.name}: {s['real_steps']} real steps, {s['rounds']} rounds, policy "
          f"v{s['sim_policy_version']} -> v{s['policy_version']} ({time.monotonic() - t0:.0f} s)")
    print(f"on the \"real\" robot ({ev['reality']}, {ev['episodes']} episodes, every action through its safety "
          "filter):")
    print(f"  sim-only: {format_eval(ev['sim_only'])}")
    print(f"  adapted:  {format_eval(ev['adapted'])}")
    print(f"report: {run.run_dir / 'report.md'}")
    if a.json:
        print(json.dumps(ev))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("loop", help="sim training, then trainer + controller on the link until a real-step budget, "
                                    "then sim-only vs adapted and a report")
    p.add_argument("--config", default="reacher2", help="configs/loops/NAME.yaml or a path (default reacher2)")
    p.add_argument("--run-dir", default=None)
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a loop run that stopped")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="loop config override, e.g. --set trainer.real_step_budget=500")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_loop)
