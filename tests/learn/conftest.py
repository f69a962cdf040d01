"""Shared fixtures: a tiny, fast Gymnasium task (1-D point reaching a target) registered as a gym id."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

POINT_ID = "RobodynaTestPoint-v0"


class PointEnv(gym.Env):
    """obs = [pos, target], action = velocity in [-1, 1] (x0.2 per step), reward = -|pos - target|."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.pos = 0.0
        self.target = 0.0

    def _obs(self) -> np.ndarray:
        return np.array([self.pos, self.target], np.float32)

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.pos = float(self.np_random.uniform(-1, 1))
        self.target = float(self.np_random.uniform(-1, 1))
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        a = float(np.clip(np.asarray(action).reshape(-1)[0], -1, 1))
        self.pos = float(np.clip(self.pos + 0.2 * a, -2, 2))
        dist = abs(self.pos - self.target)
        return self._obs(), -dist, False, False, {"final_distance_m": dist, "is_success": dist < 0.05}


if POINT_ID not in gym.registry:
    gym.register(POINT_ID, entry_point=PointEnv, max_episode_steps=20)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def tiny_overrides(steps_start: int = 100) -> list[str]:
    """Config overrides that make any preset run in seconds on the point task."""
    return [
        f"start_steps={steps_start}",
        "model_train_every=100",
        "epoch_length=100",
        "rollout_batch=400",
        "updates_per_step=2",
        "eval_every=100",
        "eval_episodes=2",
        "log_every=50",
        "checkpoint_every=100",
        "min_real_for_model=50",
        "ensemble.hidden=32",
        "ensemble.layers=2",
        "ensemble.max_epochs=5",
        "sac.hidden=32",
        "sac.batch_size=32",
        "sac.num_threads=1",
    ]
