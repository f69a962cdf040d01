"""Gymnasium adapter: ``make_env(robot, task, reality)`` -> ``gymnasium.Env``.

A robodyna robot + task becomes a standard env (action space in physical units). The reverse also holds:
any registered Gymnasium id (``Reacher-v5``, ``Pusher-v5``...) is accepted wherever a robot is, so results
can be compared on environments nobody here wrote.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from robodyna.robots.base import Robot, RobotError
from robodyna.robots.reality import RealityProfile, RealityRobot
from robodyna.robots.registry import load_robot, robot_folder
from robodyna.spec import ReachTaskConfig, RobotConfig
from robodyna.tasks.reach import ReachLayout, sample_target, shift_in
from robodyna.tasks.task import make_task


class RobotEnv(gym.Env[np.ndarray, np.ndarray]):
    """A robodyna robot running the ``reach`` task."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, robot: Robot, cfg: RobotConfig, task: str = "reach", reality_name: str = "") -> None:
        rt = make_task(cfg, robot.spec, task)
        self.robot = robot
        self.robot_cfg = cfg
        self.robot_spec = robot.spec
        self.task = task
        self.task_cfg: ReachTaskConfig = cfg.tasks.reach
        self.reality_name = reality_name
        spec = robot.spec
        n = spec.n_joints
        base = rt.fns.base_m
        self.task_fns = rt.fns
        self.obs_names = rt.obs_names
        od = len(rt.obs_names)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(od,), dtype=np.float32)
        self.action_space = gym.spaces.Box(
            np.asarray(spec.action_low, dtype=np.float32), np.asarray(spec.action_high, dtype=np.float32)
        )
        inner = robot.inner if isinstance(robot, RealityRobot) else robot
        self._base = np.asarray(base)
        self._sim = inner
        self._n = n
        self._obs_dim = od
        lay = ReachLayout(n)
        self._target_at = lay.target.start
        # previous actions sent (newest first), the observation's last columns (task ``action_history``)
        self._history = np.zeros(od - lay.history_start, dtype=np.float32)
        self._episode_steps = self.task_cfg.episode_steps
        self._obs = np.zeros(od, dtype=np.float32)
        self._target = np.zeros(3)
        self._t = 0

    def _make_obs(self) -> np.ndarray:
        o = np.empty(self._obs_dim, dtype=np.float32)
        self.robot.observe_into(o)
        t = self._target_at
        o[t : t + 3] = self._target
        o[t + 3 :] = self._history
        return o

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        options = options or {}
        rng = self.np_random
        sim = self._sim
        q0 = options.get("qpos")
        if q0 is None:
            q0 = sim.home_state(rng, self.task_cfg.init_noise_rad) if hasattr(sim, "home_state") else None
        target = options.get("target_m")
        self._target = np.asarray(target, dtype=np.float64) if target is not None else sample_target(
            self.task_cfg, rng, self._base
        )
        self.robot.reset(qpos=q0, qvel=options.get("qvel"), seed=seed)
        self._t = 0
        self._history[:] = 0.0  # the hold action
        self._obs = self._make_obs()
        n = self.robot_spec.n_joints
        info = {
            "qpos": self._obs[:n].astype(np.float64) if q0 is None else np.asarray(q0, dtype=np.float64),
            "qvel": np.zeros(n) if options.get("qvel") is None else np.asarray(options["qvel"], dtype=np.float64),
            "target_m": self._target.copy(),
            "distance_m": float(self.task_fns.distance(self._obs)),
        }
        return self._obs.copy(), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        applied = self.robot.send_action(action)
        shift_in(self._history, applied)
        obs = self._make_obs()
        fns = self.task_fns
        reward, terminated, dist = fns.step_values(applied, obs)
        self._t += 1
        truncated = self._t >= self._episode_steps
        info: dict[str, Any] = {"applied_action": applied, "distance_m": dist}
        if terminated or truncated:
            info["final_distance_m"] = dist
            info["is_success"] = dist < fns.tolerance_m
        self._obs = obs  # a fresh array every step, never written again: no defensive copy needed
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        self.robot.close()


def is_gym_id(name: str) -> bool:
    return name in gym.registry


def make_env(
    robot: str,
    task: str = "reach",
    reality: str | RealityProfile | None = None,
    seed: int | None = None,
    overrides: list[str] | None = None,
    engine: str | None = None,
) -> gym.Env:
    """A Gymnasium env for ``robot`` (a robot folder name/path, or a registered Gymnasium id) and ``task``."""
    try:
        folder = robot_folder(robot)
    except RobotError:
        if is_gym_id(robot):
            if reality is not None:
                raise ValueError(f"reality profiles apply to robodyna robots, not to Gymnasium id {robot!r}") from None
            env = gym.make(robot)
            if seed is not None:
                env.reset(seed=seed)
            return env
        raise
    from robodyna.robots.reality import load_reality
    from robodyna.spec import load_robot_config

    profile = load_reality(reality) if isinstance(reality, str) else reality
    cfg, _ = load_robot_config(folder, overrides)
    rb = load_robot(folder, engine=engine, reality=profile, overrides=overrides)
    env = RobotEnv(rb, cfg, task, reality_name=profile.name if profile is not None else "")
    if seed is not None:
        env.reset(seed=seed)
    return env
