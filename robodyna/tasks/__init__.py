"""Tasks: observation layout, reward and termination as pure functions, precision metrics."""

from robodyna.tasks.reach import ReachFns, reach_obs_names, sample_target

TASKS = ("reach",)

__all__ = ["TASKS", "ReachFns", "reach_obs_names", "sample_target"]
