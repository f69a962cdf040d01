"""Tasks: observation layout, reward and termination as pure functions, precision metrics."""

from robodyna.tasks.reach import ReachFns, reach_fns, reach_obs_names, sample_target
from robodyna.tasks.task import TASKS, RobotTask, make_task, robot_task

__all__ = ["TASKS", "ReachFns", "RobotTask", "make_task", "reach_fns", "reach_obs_names", "robot_task",
           "sample_target"]
