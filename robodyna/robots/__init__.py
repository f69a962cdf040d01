"""Robots and drivers: robot folders (data), the Robot interface, MuJoCo/PyBullet drivers, reality profiles."""

from robodyna.robots.base import Robot, RobotError, RobotState
from robodyna.robots.reality import RealityProfile, list_realities, load_reality
from robodyna.robots.registry import list_robots, load_robot, robot_folder, robots_root
from robodyna.spec import RobotConfig, RobotSpec, load_robot_config

__all__ = [
    "RealityProfile", "Robot", "RobotConfig", "RobotError", "RobotSpec", "RobotState", "list_realities",
    "list_robots", "load_reality", "load_robot", "load_robot_config", "robot_folder", "robots_root",
]
