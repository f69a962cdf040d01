"""Verb ``controller``: the onboard control loop (:mod:`robodyna.onboard.controller`)."""

from __future__ import annotations

import argparse
import json
import signal
from types import FrameType


def cmd_controller(args: argparse.Namespace) -> int:
    from robodyna.onboard.controller import Controller

    c = Controller(args.robot, args.policy, args.record, reality=args.reality, hz=args.hz, pace=not args.no_pace,
                   policy_dir=args.policy_dir, swap_at=args.swap_at, seed=args.seed, overrides=args.overrides,
                   engine=args.engine, episode_steps=args.episode_steps, stats_every_s=args.stats_every)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        c.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    status = c.run(episodes=args.episodes, steps=args.steps)
    print(json.dumps(status, indent=2, default=str))
    return 1 if status["stops"] else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("controller", help="run an ONNX policy on a robot at a fixed rate, filtered and recorded")
    p.add_argument("--robot", required=True, help="robot name (robots/NAME) or folder path (sim or driver plugin)")
    p.add_argument("--reality", default=None, help="reality profile name or YAML path (simulated robots)")
    p.add_argument("--engine", default=None, choices=["mujoco", "pybullet"], help="override the physics engine")
    p.add_argument("--policy", required=True, help="ONNX policy made for this robot (robodyna export)")
    p.add_argument("--hz", type=float, default=None, help="control rate (default: the robot's control_hz)")
    p.add_argument("--record", default=None, metavar="DIR",
                   help="episode store to record into (continued if it exists)")
    p.add_argument("--no-pace", action="store_true", help="simulation: run as fast as possible (same loop, no wait)")
    p.add_argument("--episodes", type=int, default=None, help="stop after this many episodes (default: run until ^C)")
    p.add_argument("--steps", type=int, default=None, help="stop after this many ticks")
    p.add_argument("--episode-steps", type=int, default=None, help="ticks per episode (default: the task's)")
    p.add_argument("--policy-dir", default=None, metavar="DIR", help="watch DIR for new *.onnx versions (hot-swap)")
    p.add_argument("--swap-at", default="episode", choices=["episode", "tick"], help="when a verified policy swaps in")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stats-every", type=float, default=5.0, help="log loop statistics every N seconds")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a robot.yaml value (repeatable)")
    p.set_defaults(func=cmd_controller)
