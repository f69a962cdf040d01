"""robodyna: sim-to-real model-based RL for robot arms.

The top level imports no torch: the onboard side (robots, controller, transport, data) runs without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    import gymnasium as gym


def make_env(robot: str, task: str = "reach", reality: Any = None, seed: int | None = None,
             overrides: list[str] | None = None, engine: str | None = None) -> gym.Env:
    """A Gymnasium env for a robodyna robot + task, or for a registered Gymnasium id (see tasks.env)."""
    from robodyna.tasks.env import make_env as _make_env

    return _make_env(robot, task, reality, seed, overrides, engine)


__all__ = ["__version__", "make_env"]
