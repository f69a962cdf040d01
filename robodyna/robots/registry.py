"""Finding and loading robots: robot folders are data (``robots/<name>/robot.yaml`` + model files).

``load_robot`` picks the driver from ``robot.yaml``: MuJoCo or PyBullet for simulated arms, or a hardware
plugin named ``driver: package.module:Class`` (constructed as ``Class(cfg: RobotConfig, folder: Path)`` and
expected to implement :class:`~robodyna.robots.base.Robot`).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from robodyna.paths import robots_root
from robodyna.robots.base import Robot, RobotError
from robodyna.robots.reality import RealityProfile, RealityRobot, load_reality
from robodyna.robots.sim import SimRobot
from robodyna.spec import RobotConfig, load_robot_config


def list_robots() -> list[str]:
    root = robots_root()
    return sorted(p.name for p in root.iterdir() if (p / "robot.yaml").is_file()) if root.is_dir() else []


def robot_folder(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.is_dir() or p.suffix in (".yaml", ".yml"):
        return p if p.is_dir() else p.parent
    cand = robots_root() / str(name_or_path)
    if not cand.is_dir():
        raise RobotError(f"unknown robot {str(name_or_path)!r}: not a folder, and not one of {list_robots()}")
    return cand


def _load_plugin(cfg: RobotConfig, folder: Path) -> Robot:
    mod_name, _, cls_name = cfg.driver.partition(":")
    if not cls_name:
        raise RobotError(f"{folder / 'robot.yaml'}: driver {cfg.driver!r} must look like package.module:Class")
    try:
        cls = getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise RobotError(f"{folder / 'robot.yaml'}: cannot import driver {cfg.driver!r}: {exc}") from exc
    robot = cls(cfg, folder)
    if not isinstance(robot, Robot):
        raise RobotError(f"{cfg.driver} does not implement robodyna.robots.Robot")
    return robot


def make_sim_robot(cfg: RobotConfig, folder: Path, engine: str) -> SimRobot:
    if engine not in cfg.engines:
        raise RobotError(
            f"robot {cfg.name!r} has no {engine} model (declared engines: {sorted(cfg.engines)}); "
            f"add engines.{engine} to {folder / 'robot.yaml'}"
        )
    if engine == "mujoco":
        from robodyna.robots.mujoco_driver import MujocoRobot

        return MujocoRobot(cfg, folder)
    from robodyna.robots.pybullet_driver import PybulletRobot

    return PybulletRobot(cfg, folder)


def load_robot(
    name_or_path: str | Path,
    engine: str | None = None,
    reality: str | Path | RealityProfile | None = None,
    overrides: list[str] | None = None,
) -> Robot:
    """Load a robot folder, pick its engine (argument > reality profile > ``default_engine``), apply a profile."""
    folder = robot_folder(name_or_path)
    cfg, folder = load_robot_config(folder, overrides)
    profile = load_reality(reality) if isinstance(reality, (str, Path)) else reality
    if cfg.driver and not cfg.engines:
        if profile is not None:
            raise RobotError(f"{cfg.name}: a reality profile applies to simulated robots only")
        return _load_plugin(cfg, folder)
    eng = engine or (profile.engine if profile is not None and profile.engine else "") or cfg.engine
    robot = make_sim_robot(cfg, folder, eng)
    if profile is not None and not profile.is_nominal:
        return RealityRobot(robot, profile)
    return robot
