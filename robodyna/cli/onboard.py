"""Verb ``controller``: the onboard control loop (:mod:`robodyna.onboard.controller`), optionally linked to a
trainer (``--trainer tcp://HOST:PORT --keys DIR --robot-id ID``): the robot link streams the controller's record
store to the trainer and relays signed policies (``offer_policy``: verified, swapped at the next episode) and
refresh requests (``request_episodes``). The link runs in its own process (:class:`RobotLinkProcess`), so the
control thread never waits on the network nor shares the GIL with it."""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)
ORPHAN_DRAIN_S = 5.0  # the drain wait once the process that started this controller is gone


def link_controller(c: Any, endpoint: str, keys_dir: str | None, robot_id: str, record: str,
                    trainer_name: str = "trainer", config: Any = None) -> Any:
    """Start a :class:`~robodyna.transport.robot.RobotLinkProcess` for controller ``c``: it streams ``record``
    (the controller's store) to ``endpoint``; a verified policy goes to ``c.offer_policy``, a refresh request of
    ``n`` steps or episodes to ``c.request_episodes`` (steps rounded up to whole episodes). Returns the link."""
    from robodyna.transport.robot import RobotLinkProcess

    def on_policy(version: int, data: bytes, sha: str, md: dict[str, str]) -> tuple[bool, str]:
        return c.offer_policy(data, sha, version, source=f"trainer {endpoint}")

    def on_refresh(n: int, unit: str) -> None:
        episodes = n if unit == "episodes" else math.ceil(n / c.episode_steps)
        log.info("trainer asks for %d %s: %d more episode(s)", n, unit, episodes)
        c.request_episodes(episodes)

    return RobotLinkProcess(endpoint, record, robot_id, keys_dir, on_policy, on_refresh, config=config,
                            key_name=robot_id, trainer_name=trainer_name).start()


def reality_change(text: str) -> tuple[int, str]:
    """``ROWS:PROFILE`` of ``--reality-change``."""
    rows, sep, profile = text.partition(":")
    if not sep or not rows.strip().isdigit() or not profile.strip():
        raise argparse.ArgumentTypeError(f"expected ROWS:PROFILE (e.g. 1000:laggy), got {text!r}")
    return int(rows), profile.strip()


def cmd_controller(args: argparse.Namespace) -> int:
    from robodyna.onboard.controller import Controller

    if args.trainer and not args.record:
        raise ValueError("--trainer needs --record DIR (the link streams the controller's record store)")
    if args.trainer and not args.keys and not args.insecure:
        raise ValueError("--trainer needs --keys DIR (robodyna keys generate); --insecure only for debugging")
    c = Controller(args.robot, args.policy, args.record, reality=args.reality, hz=args.hz, pace=not args.no_pace,
                   policy_dir=args.policy_dir, swap_at=args.swap_at, seed=args.seed, overrides=args.overrides,
                   engine=args.engine, episode_steps=args.episode_steps, stats_every_s=args.stats_every,
                   writer_process=args.writer == "process", rt_priority=args.rt_priority, warmup=args.warmup,
                   reality_change=args.reality_change)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        c.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    link = None
    if args.trainer:
        link = link_controller(c, args.trainer, None if args.insecure else args.keys, args.robot_id or "robot0",
                               args.record, trainer_name=args.trainer_name)
    try:
        status = c.run(episodes=args.episodes, steps=args.steps, idle_when_done=args.idle)
        if link is not None:  # everything recorded reaches the trainer before we leave (bounded wait)
            from robodyna.data.store import EpisodeStore
            from robodyna.lifetime import parent_gone

            rows = EpisodeStore(args.record).num_transitions
            # the loop that started us died: its trainer likely with it, and nobody restarts it (a remote one
            # that lives gets the rest on the next connection)
            drain_s = min(args.drain_timeout, ORPHAN_DRAIN_S) if parent_gone() else args.drain_timeout
            if not link.wait_acked(rows, drain_s):
                log.warning("not every recorded row was acknowledged within %.0f s (%s); the store keeps them and "
                            "the next connection resends them", drain_s, link.status())
            status["link"] = link.status()
    finally:
        if link is not None:
            link.stop()
    print(json.dumps(status, indent=2, default=str))
    return 1 if status["stops"] else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("controller", help="run an ONNX policy on a robot at a fixed rate, filtered and recorded")
    p.add_argument("--robot", required=True, help="robot name (robots/NAME) or folder path (sim or driver plugin)")
    p.add_argument("--reality", default=None, help="reality profile name or YAML path (simulated robots)")
    p.add_argument("--reality-change", default=None, type=reality_change, metavar="ROWS:PROFILE",
                   help="once the record store holds ROWS rows, the simulated robot becomes reality PROFILE at the "
                        "next episode start (a dynamics change at a real step count)")
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
    p.add_argument("--writer", default="process", choices=["process", "thread"],
                   help="the record store's segment writer: a child process (default: no GIL shared with the loop, "
                   "lands handed-over rows after a kill -9) or a thread")
    p.add_argument("--rt-priority", type=int, default=None, metavar="N",
                   help="run the control thread under SCHED_FIFO at priority N (1-99; Linux, root or CAP_SYS_NICE): "
                   "no late wake-ups on a busy machine")
    p.add_argument("--warmup", default="tick", choices=["tick", "calls", "none"],
                   help="before each deadline: a dry run of the tick (default), inference/filter/reward only, or "
                   "nothing (least CPU)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a robot.yaml value (repeatable)")
    g = p.add_argument_group("trainer link")
    g.add_argument("--trainer", default=None, metavar="tcp://HOST:PORT",
                   help="stream the record store to this trainer and take its signed policies and refresh requests")
    g.add_argument("--keys", default=None, metavar="DIR", help="keys directory (this robot's pair, the trainer's "
                   "public CURVE key and policy-verification key)")
    g.add_argument("--robot-id", default=None, help="this robot's id and key name (default robot0)")
    g.add_argument("--trainer-name", default="trainer", help="the trainer's key name in --keys")
    g.add_argument("--insecure", action="store_true", help="no CURVE, no signatures: every policy is refused")
    g.add_argument("--idle", action="store_true",
                   help="when the episodes are done, wait for the trainer's refresh requests instead of exiting")
    g.add_argument("--drain-timeout", type=float, default=30.0,
                   help="at exit, wait this long for the trainer to acknowledge every recorded row")
    p.set_defaults(func=cmd_controller)
