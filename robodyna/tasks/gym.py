"""Known reward/termination functions for plain Gymnasium ids (pure, vectorised numpy).

MBPO uses the true reward and termination functions of the task when they are known (Janner et al. 2019,
App. C); for ids not listed here the ensemble's learned reward is used and episodes never terminate in the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from robodyna.tasks.coords import ModelCoordinates


class TaskFns(Protocol):
    """``reward(obs, action, next_obs) -> float32[N]``, ``terminated(obs, action, next_obs) -> bool[N]``."""

    def reward(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray: ...

    def terminated(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray: ...


ArrFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def task_declares(task_fns: Any, methods: tuple[str, ...], flag: str) -> bool:
    """True when ``task_fns`` has every one of ``methods`` and its ``flag`` property (if it has one) is true:
    whether a task provides an optional capability such as goals or a symmetry."""
    return all(callable(getattr(task_fns, m, None)) for m in methods) and bool(getattr(task_fns, flag, True))


@dataclass(frozen=True)
class SimpleTaskFns:
    """Task functions from two callables; ``reward=None`` means 'use the learned reward'."""

    reward_fn: ArrFn | None
    terminated_fn: ArrFn | None = None
    # Goal-conditioned tasks: goal distribution and obs rewrite, for goal relabelling (robodyna.learn.relabel).
    sample_goals_fn: Callable[[int, np.random.Generator], np.ndarray] | None = None
    with_goal_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    achieved_goal_fn: Callable[[np.ndarray], np.ndarray] | None = None
    # Known state constraints (joint limits, kinematics from the robot's model): (obs, next_obs) -> next_obs.
    constrain_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    # The observation columns the dynamics depend on (the robot's state); the others are the goal or follow from
    # the state through constrain_fn. None: all columns (what the ensemble reads with model_inputs: state).
    dynamics_columns: tuple[int, ...] | None = None
    # A symmetry of the task (robodyna.learn.symmetry): transform(obs [N, O], g [N, ...]) -> obs, under which
    # dynamics and reward are invariant for the same action, and sample(n, rng) -> g.
    symmetry_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    sample_symmetry_fn: Callable[[int, np.random.Generator], np.ndarray] | None = None
    # The task's generalised coordinates for the dynamics model (model_inputs: coordinates; robodyna.learn.coords).
    model_coordinates: ModelCoordinates | None = None

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
    def has_symmetry(self) -> bool:
        return self.symmetry_fn is not None and self.sample_symmetry_fn is not None

    def sample_symmetry(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.sample_symmetry_fn is None:
            raise NotImplementedError("this task declares no symmetry")
        return self.sample_symmetry_fn(n, rng)

    def apply_symmetry(self, obs: np.ndarray, g: np.ndarray) -> np.ndarray:
        if self.symmetry_fn is None:
            raise NotImplementedError("this task declares no symmetry")
        return self.symmetry_fn(obs, g)

    def constrain(self, obs: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """Project predicted next observations onto the states the robot can reach (identity if none known)."""
        return next_obs if self.constrain_fn is None else self.constrain_fn(obs, next_obs)

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


# Reacher-v5's MJCF: link lengths 0.1 (body0 -> body1) and 0.11 (body1 -> fingertip); joint1 limited to ±3 rad,
# joint0 unlimited, the target does not move within an episode.
_REACHER_L0, _REACHER_L1, _REACHER_Q1_LIMIT = 0.1, 0.11, 3.0


def _reacher_constrain(obs: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    """Reacher-v5's known structure applied to a predicted next observation.

    obs = [cos q0, cos q1, sin q0, sin q1, target xy, q̇0, q̇1, (fingertip − target) xy]. The elbow angle is
    unwrapped from the previous one (cos/sin put the two elbow limits, +3 and −3 rad, 0.28 rad apart on the
    circle, so a learned model lets the arm pass through the limit to the other side), clamped to ±3 rad with
    the outward velocity zeroed at the limit; the target stays put; the fingertip follows from the angles.
    """
    out = np.array(next_obs, dtype=np.float32, copy=True)
    q0 = np.arctan2(next_obs[:, 2], next_obs[:, 0])
    q1_prev = np.arctan2(obs[:, 3], obs[:, 1])
    dq1 = np.arctan2(next_obs[:, 3], next_obs[:, 1]) - q1_prev
    q1 = q1_prev + (dq1 + np.pi) % (2 * np.pi) - np.pi
    over = np.abs(q1) > _REACHER_Q1_LIMIT
    q1 = np.clip(q1, -_REACHER_Q1_LIMIT, _REACHER_Q1_LIMIT)
    out[:, 7] = np.where(over & (np.sign(out[:, 7]) == np.sign(q1)), 0.0, out[:, 7])
    out[:, 0], out[:, 2], out[:, 1], out[:, 3] = np.cos(q0), np.sin(q0), np.cos(q1), np.sin(q1)
    out[:, 4:6] = obs[:, 4:6]
    tip_x = _REACHER_L0 * np.cos(q0) + _REACHER_L1 * np.cos(q0 + q1)
    tip_y = _REACHER_L0 * np.sin(q0) + _REACHER_L1 * np.sin(q0 + q1)
    out[:, 8] = tip_x - obs[:, 4]
    out[:, 9] = tip_y - obs[:, 5]
    return out


def _reacher_rotate(obs: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Reacher-v5 turned about its base by ``phi [N]``: the shoulder angle q0 → q0 + φ, the target and the
    fingertip − target vector rotate with it; the elbow angle and both joint velocities do not change. The arm is
    planar, without gravity in its plane, its shoulder unlimited and nothing within its reach, so its dynamics
    and the reward (distance, torque) are the same in every such frame for the same joint torques."""
    c, s = np.cos(phi).astype(np.float32), np.sin(phi).astype(np.float32)
    out = np.array(obs, dtype=np.float32, copy=True)
    for x, y in ((0, 2), (4, 5), (8, 9)):  # (cos q0, sin q0), target xy, (fingertip − target) xy
        out[:, x] = c * obs[:, x] - s * obs[:, y]
        out[:, y] = s * obs[:, x] + c * obs[:, y]
    return out


def _reacher_encode(obs: np.ndarray) -> np.ndarray:
    # z = [q0, q1, q̇0, q̇1, cos q1, sin q1]: the angles, the velocities, and the elbow as the dynamics read it.
    q0, q1 = np.arctan2(obs[:, 2], obs[:, 0]), np.arctan2(obs[:, 3], obs[:, 1])
    return np.stack([q0, q1, obs[:, 6], obs[:, 7], obs[:, 1], obs[:, 3]], axis=1)


def _reacher_decode(obs: np.ndarray, z: np.ndarray) -> np.ndarray:
    nxt = np.array(obs, dtype=np.float32, copy=True)
    nxt[:, 0], nxt[:, 2], nxt[:, 1], nxt[:, 3] = np.cos(z[:, 0]), np.sin(z[:, 0]), np.cos(z[:, 1]), np.sin(z[:, 1])
    nxt[:, 6], nxt[:, 7] = z[:, 2], z[:, 3]
    return _reacher_constrain(obs, nxt)  # elbow limit, target kept, fingertip from the angles


# The arm's torques act on (q̇0, q̇1) through a mass matrix and Coriolis terms of the elbow angle only: the shoulder
# angle is not an input (Reacher-v5 is planar, without gravity in its plane, its shoulder unlimited).
_REACHER_COORDINATES = ModelCoordinates(dim=6, encode=_reacher_encode, decode=_reacher_decode,
                                        input_columns=(2, 3, 4, 5), angle_columns=(0, 1))


def _uniform_angle(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-np.pi, np.pi, size=n)


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
    "Reacher-v5": SimpleTaskFns(_reacher_reward, None, _reacher_goals, _reacher_with_goal, _reacher_achieved,
                                _reacher_constrain, dynamics_columns=(0, 1, 2, 3, 6, 7),  # cos, sin, q̇
                                symmetry_fn=_reacher_rotate, sample_symmetry_fn=_uniform_angle,
                                model_coordinates=_REACHER_COORDINATES),
    "Reacher-v4": SimpleTaskFns(_reacher_reward, None, _reacher_goals, _reacher_with_goal, _reacher_achieved),
    "Pendulum-v1": SimpleTaskFns(_pendulum_reward),
    "InvertedPendulum-v5": SimpleTaskFns(_inverted_pendulum_reward, _inverted_pendulum_terminated),
    "InvertedPendulum-v4": SimpleTaskFns(_inverted_pendulum_reward, _inverted_pendulum_terminated),
}


def task_fns_for(env_id: str) -> SimpleTaskFns:
    """Known functions for a gym id, else a learned-reward / never-terminate fallback."""
    return GYM_TASK_FNS.get(env_id, SimpleTaskFns(None, None))
