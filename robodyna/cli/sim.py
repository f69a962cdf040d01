"""Verbs ``robots list``, ``robots check`` and ``sim``."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from robodyna.cli.args import positive_int
from robodyna.config import save_config
from robodyna.onboard.record import make_policy
from robodyna.robots import RobotError, list_realities, list_robots, load_reality, load_robot, robot_folder
from robodyna.spec import load_robot_config

log = logging.getLogger(__name__)


def add_common(p: argparse.ArgumentParser) -> None:
    """Options shared by every verb that runs a robot."""
    p.add_argument("--robot", required=True, help="robot name (robots/NAME), folder path, or Gymnasium id")
    p.add_argument("--task", default="reach", help="task (default: reach)")
    p.add_argument("--reality", default=None, help=f"reality profile name or YAML path ({', '.join(list_realities())})")
    p.add_argument("--engine", default=None, choices=["mujoco", "pybullet"], help="override the physics engine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a robot.yaml value, e.g. --set control_hz=100 (repeatable)")


def check_robot(name: str, seconds: float = 1.0) -> list[str]:
    """Load, compile and step a robot folder in every engine it declares; return the problems found."""
    cfg, _ = load_robot_config(robot_folder(name))
    problems: list[str] = []
    for engine in cfg.engines:
        try:
            with load_robot(name, engine=engine) as robot:
                ticks = int(round(seconds * cfg.control_hz))
                for _ in range(ticks):
                    robot.send_action(np.zeros(robot.spec.act_dim))
                s = robot.observe()
                if not (np.all(np.isfinite(s.qpos)) and np.all(np.isfinite(s.qvel))):
                    problems.append(f"{cfg.name}/{engine}: non-finite state after {seconds} s")
                for w in robot.warnings():  # type: ignore[attr-defined]
                    problems.append(f"{cfg.name}/{engine}: engine warning {w}")
        except RobotError as exc:
            problems.append(str(exc))
    return problems


def cmd_robots_list(args: argparse.Namespace) -> int:
    for name in list_robots():
        cfg, _ = load_robot_config(robot_folder(name))
        print(f"{name:12s} {len(cfg.joints)} DoF  {cfg.action_mode:20s} {cfg.control_hz:g} Hz  "
              f"engines: {', '.join(cfg.engines) or cfg.driver}  {cfg.description}")
    return 0


def cmd_robots_check(args: argparse.Namespace) -> int:
    names = [args.name] if args.name else list_robots()
    failed = 0
    for name in names:
        problems = check_robot(name, args.seconds)
        print(f"{name}: {'OK' if not problems else 'FAILED'}")
        for p in problems:
            print(f"  - {p}")
        failed += bool(problems)
    return 1 if failed else 0


def cmd_sim(args: argparse.Namespace) -> int:
    from robodyna import make_env

    env = make_env(args.robot, args.task, args.reality, seed=args.seed, overrides=args.overrides, engine=args.engine)
    policy, _, _ = make_policy(args.policy, env, args.seed)
    obs, _ = env.reset(seed=args.seed)
    rewards, finals, successes = [], [], []
    episodes = 0  # every finished episode; finals/successes only where the env reports them (robodyna tasks)
    t0 = time.perf_counter()
    for _ in tqdm(range(args.steps), desc="sim", unit="step", disable=args.steps < 20000, leave=False):
        obs, r, term, trunc, info = env.step(policy(obs))
        rewards.append(float(r))
        if term or trunc:
            episodes += 1
            if "final_distance_m" in info:
                finals.append(info["final_distance_m"])
                successes.append(bool(info["is_success"]))
            obs, _ = env.reset()
    dt = time.perf_counter() - t0
    result = {"robot": args.robot, "reality": args.reality or "nominal", "steps": args.steps,
              "steps_per_s": args.steps / dt, "mean_reward": float(np.mean(rewards)),
              "episodes": episodes,
              "mean_final_distance_m": float(np.mean(finals)) if finals else None,
              "success_rate": float(np.mean(successes)) if successes else None}
    if args.run_dir:
        run = Path(args.run_dir)
        run.mkdir(parents=True, exist_ok=True)
        unwrapped = env.unwrapped
        if hasattr(unwrapped, "robot_cfg"):
            save_config(unwrapped.robot_cfg, run / "robot.yaml")
        if args.reality:
            save_config(load_reality(args.reality), run / "reality.yaml")
        (run / "sim.json").write_text(json.dumps(result, indent=2))
    print(f"{args.robot} [{result['reality']}] {args.steps} steps: {result['steps_per_s']:.0f} steps/s, "
          f"mean reward {result['mean_reward']:.4f}, {episodes} episode(s) finished"
          + (f", mean final distance {result['mean_final_distance_m'] * 100:.1f} cm, "
             f"success {result['success_rate'] * 100:.0f}%" if finals else ""))
    env.close()
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    robots = sub.add_parser("robots", help="list and check robot folders")
    rsub = robots.add_subparsers(dest="robots_verb", metavar="ACTION", required=True)
    p = rsub.add_parser("list", help="list robot folders")
    p.set_defaults(func=cmd_robots_list)
    p = rsub.add_parser("check", help="load, compile and step a robot folder (all if none given)")
    p.add_argument("name", nargs="?", help="robot name or folder path")
    p.add_argument("--seconds", type=_positive_float, default=1.0, help="simulated seconds to step (default 1)")
    p.set_defaults(func=cmd_robots_check)

    p = sub.add_parser("sim", help="run a policy on a simulated robot and print steps/s and reward")
    add_common(p)
    p.add_argument("--policy", default="random",
                   help="random | scripted | oracle (IK + joint control; reach) | PATH.onnx")
    p.add_argument("--steps", type=positive_int, default=1000)
    p.add_argument("--run-dir", default=None, help="save the resolved config and results here")
    p.set_defaults(func=cmd_sim)
