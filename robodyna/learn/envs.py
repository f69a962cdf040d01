"""Environment plumbing for the learner: make an env, its RobotSpec, obs names and task functions.

Robodyna robots come from :func:`robodyna.make_env` (their ``unwrapped`` carries ``robot_spec`` and ``task_fns``);
plain Gymnasium ids get a synthesised spec (engine ``"gymnasium"``) and the functions in
:mod:`robodyna.tasks.gym`.
"""

from __future__ import annotations

from typing import Any, cast

import gymnasium as gym
import numpy as np

from robodyna.spec import RobotSpec
from robodyna.tasks.gym import task_fns_for


def make_env(name: str, reality: str | None = None, seed: int | None = None, task: str = "reach") -> gym.Env:
    """A robodyna robot or a registered Gymnasium id: :func:`robodyna.make_env` handles both."""
    import robodyna

    return robodyna.make_env(name, task=task, reality=reality, seed=seed)


def env_name(env: gym.Env) -> str:
    spec = getattr(env.unwrapped, "robot_spec", None)
    if spec is not None:
        return str(spec.name)
    return env.spec.id if env.spec is not None else type(env.unwrapped).__name__


def spec_for_env(env: gym.Env) -> RobotSpec:
    """The env's :class:`RobotSpec`, or one synthesised from a Gymnasium env's Box action space."""
    spec = getattr(env.unwrapped, "robot_spec", None)
    if spec is not None:
        return spec
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        raise TypeError(f"{env_name(env)}: only Box action spaces are supported, got {space}")
    low = np.asarray(space.low, dtype=np.float64).reshape(-1)
    high = np.asarray(space.high, dtype=np.float64).reshape(-1)
    dt = float(getattr(env.unwrapped, "dt", 0.0) or 0.0)
    control_hz = 1.0 / dt if dt > 0 else float(env.metadata.get("render_fps", 50) or 50)
    frame_skip = int(getattr(env.unwrapped, "frame_skip", 1) or 1)
    n = len(low)
    return RobotSpec(
        name=env_name(env),
        engine="gymnasium",
        joint_names=(),
        action_mode="gym",
        action_names=tuple(f"action{i}" for i in range(n)),
        action_units=tuple("" for _ in range(n)),
        action_low=tuple(float(v) for v in low),
        action_high=tuple(float(v) for v in high),
        joint_low_rad=(),
        joint_high_rad=(),
        joint_velocity_limit_rad_s=(),
        control_hz=control_hz,
        physics_hz=control_hz * frame_skip,
    )


def obs_names_for_env(env: gym.Env) -> list[str]:
    """Observation names from the env (``obs_names`` attribute) or ``obs0..obsN``."""
    names = getattr(env.unwrapped, "obs_names", None)
    dim = int(np.prod(cast(tuple[int, ...], env.observation_space.shape)))
    if names is not None and len(names) == dim:
        return [str(n) for n in names]
    return [f"obs{i}" for i in range(dim)]


def episode_steps_for_env(env: gym.Env) -> int:
    """Transitions per episode: the robot task's ``episode_steps`` or the Gymnasium id's time limit (else 1000)."""
    task_cfg = getattr(env.unwrapped, "task_cfg", None)
    if task_cfg is not None:
        return int(task_cfg.episode_steps)
    limit = env.spec.max_episode_steps if env.spec is not None else None
    return int(limit) if limit else 1000


def task_fns_for_env(env: gym.Env) -> Any:
    """Vectorised ``reward``/``terminated`` functions; ``has_reward`` False means use the learned reward."""
    fns = getattr(env.unwrapped, "task_fns", None)
    if fns is not None:
        return fns
    return task_fns_for(env.spec.id if env.spec is not None else "")


def has_reward_fn(fns: Any) -> bool:
    """False when the task has no known reward function (the ensemble's learned reward is used)."""
    return bool(getattr(fns, "has_reward", True))
