"""Known reward/termination functions for plain Gymnasium ids (pure, vectorised numpy).

MBPO uses the true reward and termination functions of the task when they are known (Janner et al. 2019,
App. C); for ids not listed here the ensemble's learned reward is used and episodes never terminate in the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class TaskFns(Protocol):
    """``reward(obs, action, next_obs) -> float32[N]``, ``terminated(obs, action, next_obs) -> bool[N]``."""

    def reward(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray: ...

    def terminated(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray: ...


ArrFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SimpleTaskFns:
    """Task functions from two callables; ``reward=None`` means 'use the learned reward'."""

    reward_fn: ArrFn | None
    terminated_fn: ArrFn | None = None
    # Goal-conditioned tasks: goal distribution and obs rewrite, for goal relabelling (robodyna.learn.relabel).
    sample_goals_fn: Callable[[int, np.random.Generator], np.ndarray] | None = None
    with_goal_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    achieved_goal_fn: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def has_goals(self) -> bool:
        """All three goal functions are known (what goal relabelling needs)."""
        return None not in (self.sample_goals_fn, self.with_goal_fn, self.achieved_goal_fn)

    def sample_goals(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.sample_goals_fn is None:
            raise NotImplementedError("this task has no goal distribution")
        return self.sample_goals_fn(n, rng)

    def achieved_goal(self, obs: np.ndarray) -> np.ndarray:
        if self.achieved_goal_fn is None:
            raise NotImplementedError("this task has no achieved-goal function")
        return self.achieved_goal_fn(obs)

    def with_goal(self, obs: np.ndarray, goals: np.ndarray) -> np.ndarray:
        if self.with_goal_fn is None:
            raise NotImplementedError("this task has no goal columns")
        return self.with_goal_fn(obs, goals)

    @property
    def has_reward(self) -> bool:
        return self.reward_fn is not None

    def reward(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        if self.reward_fn is None:
            raise NotImplementedError("no known reward function for this task; use the learned reward")
        return np.asarray(self.reward_fn(obs, action, next_obs), dtype=np.float32)

    def terminated(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        if self.terminated_fn is None:
            return np.zeros(len(obs), dtype=np.bool_)
        return np.asarray(self.terminated_fn(obs, action, next_obs), dtype=np.bool_)


def _reacher_reward(obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    # Reacher-v5: obs[8:10] = (fingertip - target)[:2]; reward = -|vec| - Σ a² (both weights 1).
    return -np.linalg.norm(next_obs[:, 8:10], axis=1) - np.square(action).sum(axis=1)


def _reacher_goals(n: int, rng: np.random.Generator) -> np.ndarray:
    # Reacher-v5's reset: goal uniform in [-0.2, 0.2]^2, rejected until its norm is below 0.2.
    out = np.empty((0, 2))
    while len(out) < n:
        g = rng.uniform(-0.2, 0.2, size=(2 * n, 2))
        out = np.concatenate([out, g[np.linalg.norm(g, axis=1) < 0.2]])
    return out[:n]


def _reacher_with_goal(obs: np.ndarray, goals: np.ndarray) -> np.ndarray:
    # obs[4:6] = target xy, obs[8:10] = (fingertip - target) xy: keep the fingertip, move the target.
    out = np.array(obs, copy=True)
    fingertip = obs[:, 8:10] + obs[:, 4:6]
    out[:, 4:6] = goals
    out[:, 8:10] = fingertip - goals
    return out


def _reacher_achieved(obs: np.ndarray) -> np.ndarray:
    return np.asarray(obs[:, 8:10] + obs[:, 4:6], dtype=np.float64)  # the fingertip's xy


def _pendulum_reward(obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    # Pendulum-v1: obs = (cos θ, sin θ, θdot) *before* the step; cost on the pre-step state and torque.
    th = np.arctan2(obs[:, 1], obs[:, 0])
    u = np.clip(action[:, 0], -2.0, 2.0)
    return -(th**2 + 0.1 * obs[:, 2] ** 2 + 0.001 * u**2)


def _inverted_pendulum_reward(obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    return (~_inverted_pendulum_terminated(obs, action, next_obs)).astype(np.float32)


def _inverted_pendulum_terminated(obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    return ~(np.isfinite(next_obs).all(axis=1) & (np.abs(next_obs[:, 1]) <= 0.2))


GYM_TASK_FNS: dict[str, SimpleTaskFns] = {
    "Reacher-v5": SimpleTaskFns(_reacher_reward, None, _reacher_goals, _reacher_with_goal, _reacher_achieved),
    "Reacher-v4": SimpleTaskFns(_reacher_reward, None, _reacher_goals, _reacher_with_goal, _reacher_achieved),
    "Pendulum-v1": SimpleTaskFns(_pendulum_reward),
    "InvertedPendulum-v5": SimpleTaskFns(_inverted_pendulum_reward, _inverted_pendulum_terminated),
    "InvertedPendulum-v4": SimpleTaskFns(_inverted_pendulum_reward, _inverted_pendulum_terminated),
}


def task_fns_for(env_id: str) -> SimpleTaskFns:
    """Known functions for a gym id, else a learned-reward / never-terminate fallback."""
    return GYM_TASK_FNS.get(env_id, SimpleTaskFns(None, None))
