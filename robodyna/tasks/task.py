"""A robot's task from its identity alone: reward, termination, goal, constraint functions and observation layout.

The env (:mod:`robodyna.tasks.env`), the onboard controller and the off-board trainer all build a robot's task
with :func:`make_task` from its ``robot.yaml`` and :class:`~robodyna.spec.RobotSpec` — no engine, no env — so a
trainer on another machine that knows only the robot's identity scores model rollouts with exactly the functions
the robot's env uses. Gymnasium ids keep their declarations beside them (:mod:`robodyna.tasks.gym`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from robodyna.robots.registry import robot_folder
from robodyna.spec import RobotConfig, RobotSpec, load_robot_config
from robodyna.tasks.reach import ReachFns, reach_fns, reach_obs_names

TASKS = ("reach",)


@dataclass(frozen=True)
class RobotTask:
    """A task as a robot runs it: its functions, observation names (with units) and episode length."""

    name: str
    fns: ReachFns
    obs_names: list[str]
    episode_steps: int
    spec: RobotSpec


def make_task(cfg: RobotConfig, spec: RobotSpec, task: str = "reach") -> RobotTask:
    """The task ``task`` of the robot described by ``cfg`` and ``spec``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; available: {list(TASKS)}")
    tc = cfg.tasks.reach
    return RobotTask(task, reach_fns(cfg, spec), reach_obs_names(spec, tc.action_history), int(tc.episode_steps), spec)


def robot_task(robot: str | Path, task: str = "reach", engine: str | None = None,
               overrides: list[str] | None = None) -> RobotTask:
    """The task of a robot folder (name or path) from its ``robot.yaml`` alone (``engine``: the default one)."""
    cfg, _ = load_robot_config(robot_folder(robot), overrides)
    return make_task(cfg, RobotSpec.from_config(cfg, engine or cfg.engine), task)
