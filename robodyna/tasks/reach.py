"""The ``reach`` task: move the end effector to a random target inside a workspace box.

Observation: ``[qpos (n) rad, qvel (n) rad/s, ee_pos (3) m, target (3) m]``, then (``action_history: N`` in
``robot.yaml``) the last N actions sent to the robot, newest first (zeros after a reset: the hold action).
Reward: ``-d - action_cost * ||a / a_max||^2 + precision_bonus * exp(-d / precision_scale_m)`` with
``d = ||ee - target||``, computed from ``next_obs`` and ``action`` only, so a learned dynamics model can score its
own rollouts (MBPO, Janner et al. 2019, §4: known reward). The optional precision term (``precision_bonus > 0``)
is steep only near the target: ``-d`` alone separates a policy that stops 1.5 cm off from one that stops 0.5 cm
off by 0.01 per step, below a critic's noise; with a 1 cm scale the exponential adds ``0.38 * precision_bonus``.
Precision is reported separately: ``info["final_distance_m"]`` and ``info["is_success"]`` (distance below
``tolerance_m``) at the end of every episode, because return hides precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from robodyna.spec import ACTION_UNITS, ReachTaskConfig, RobotConfig, RobotSpec, SafetyConfig, StateLayout


def reach_obs_names(spec: RobotSpec, action_history: int = 0) -> list[str]:
    """Names (with units) of each observation column; ``action_history`` previous actions last (newest first)."""
    names = [f"{j}.pos_rad" for j in spec.joint_names] + [f"{j}.vel_rad_s" for j in spec.joint_names]
    names += [f"ee.{a}_m" for a in "xyz"] + [f"target.{a}_m" for a in "xyz"]
    unit = ACTION_UNITS[spec.action_mode].replace("*", "").replace("/", "_")
    for k in range(1, action_history + 1):
        names += [f"{name}_t-{k}_{unit}" for name in spec.action_names]
    return names


@dataclass(frozen=True)
class ReachLayout(StateLayout):
    """Where each part of the reach observation sits, for an arm of ``n_joints`` joints (the module docstring's
    layout): the robot's state vector (:class:`~robodyna.spec.StateLayout`), then the target and the action
    history."""

    @property
    def target(self) -> slice:
        return slice(self.size, self.size + 3)

    @property
    def history_start(self) -> int:
        """First column of the action history (the observation's last columns, newest action first)."""
        return self.size + 3


def shift_in(history: np.ndarray, action: np.ndarray) -> None:
    """Push ``action`` into a 1-D action history in place: newest first, the oldest dropped (the env and the onboard
    controller keep the observation's ``action_history`` columns with it; :meth:`ReachFns.push_action` is the
    batched form for model rollouts)."""
    m = len(action)
    if history.size:
        history[m:] = history[:-m].copy()
        history[:m] = action


@dataclass(frozen=True)
class ReachFns:
    """Pure, vectorised reward / termination / distance functions of the reach task."""

    n_joints: int
    action_high: tuple[float, ...]
    action_cost: float
    tolerance_m: float
    # The goal (target) distribution, for goal relabelling (robodyna.learn.relabel); None: not relabelled.
    goal_low_m: tuple[float, float, float] | None = None
    goal_high_m: tuple[float, float, float] | None = None
    reach_radius_m: float = 0.0
    base_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # Joint limits from robot.yaml, for projecting model predictions (None: not known, no projection).
    joint_low_rad: tuple[float, ...] | None = None
    joint_high_rad: tuple[float, ...] | None = None
    # precision term of the reward (see the module docstring); 0: off
    precision_bonus: float = 0.0
    precision_scale_m: float = 0.01
    # previous actions in the observation (columns 2n+6 on, newest first); 0: none
    action_history: int = 0
    # the task's symmetry: turning the scene about the first joint's (vertical) axis through the base
    yaw_symmetric: bool = False
    # turned rows keep the first joint this far inside its limits (a row at a limit would claim a stop elsewhere)
    symmetry_margin_rad: float = 0.05
    # the robot's onboard safety filter settings (robot.yaml ``safety:``), for learners that put the filter into
    # the policy (``policy_filter``); None: unknown
    safety: SafetyConfig | None = None

    @cached_property
    def layout(self) -> ReachLayout:
        return ReachLayout(self.n_joints)

    def push_action(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """``next_obs`` with its action-history columns set exactly: ``action`` newest, then ``obs``'s history
        shifted by one (bookkeeping, not a prediction: a model rollout must not guess which actions it sent)."""
        h = self.action_history
        if not h:
            return next_obs
        i, m = self.layout.history_start, np.shape(action)[-1]
        out = np.array(next_obs, dtype=np.float32, copy=True)
        out[..., i : i + m] = action
        out[..., i + m : i + h * m] = np.asarray(obs)[..., i : i + (h - 1) * m]
        return out

    def constrain(self, obs: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """Predicted next observations projected onto the robot's known constraints (for model rollouts).

        Joint positions are clamped to their limits, with the velocity pointing out of a limit zeroed there;
        the target does not move within an episode.
        """
        lay, out = self.layout, np.array(next_obs, dtype=np.float32, copy=True)
        if self.joint_low_rad is not None and self.joint_high_rad is not None:
            lo, hi = np.asarray(self.joint_low_rad, np.float32), np.asarray(self.joint_high_rad, np.float32)
            q, v = out[:, lay.qpos], out[:, lay.qvel]
            v[((q > hi) & (v > 0)) | ((q < lo) & (v < 0))] = 0.0
            np.clip(q, lo, hi, out=q)
        out[:, lay.target] = np.asarray(obs)[:, lay.target]
        return out

    @property
    def dynamics_columns(self) -> tuple[int, ...]:
        """The columns the arm's dynamics depend on: joint positions and velocities and the action history
        (actions still in flight; the end effector follows from the positions, the target is the goal)."""
        lay = self.layout
        return tuple(range(lay.qvel.stop)) + tuple(range(lay.history_start, self.obs_dim))

    @property
    def has_goals(self) -> bool:
        return self.goal_low_m is not None and self.goal_high_m is not None

    def sample_goals(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` targets from the task's target distribution (same as :func:`sample_target`), ``[n, 3]``."""
        if self.goal_low_m is None or self.goal_high_m is None:
            raise ValueError("reach: this ReachFns carries no target distribution")
        lo, hi = np.asarray(self.goal_low_m), np.asarray(self.goal_high_m)
        out = np.empty((0, 3))
        for _ in range(1000):
            t = rng.uniform(lo, hi, size=(2 * n, 3))
            if self.reach_radius_m > 0:
                t = t[np.linalg.norm((t - np.asarray(self.base_m))[:, :2], axis=1) <= self.reach_radius_m]
            out = np.concatenate([out, t])
            if len(out) >= n:
                return out[:n]
        raise ValueError("reach: workspace box and reach_radius_m leave no room for a target")

    def achieved_goal(self, obs: np.ndarray) -> np.ndarray:
        """The end-effector position of each row: the target that row has reached, ``[N, 3]``."""
        return np.array(obs[:, self.layout.ee], dtype=np.float64)

    def with_goal(self, obs: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """``obs`` with its target columns replaced by ``goals``."""
        out = np.array(obs, copy=True)
        out[:, self.layout.target] = goals
        return out

    @property
    def obs_dim(self) -> int:
        return self.layout.history_start + self.action_history * len(self.action_high)

    def distance(self, obs: np.ndarray) -> np.ndarray:
        """End-effector-to-target distance [m] of each row of ``obs`` ([N, O] or [O])."""
        o, lay = np.asarray(obs), self.layout
        d = o[..., lay.ee] - o[..., lay.target]
        return np.sqrt(np.sum(d * d, axis=-1))

    def reward(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        a = np.asarray(action) / np.asarray(self.action_high)
        d = self.distance(next_obs)
        return np.asarray(-d - self.action_cost * np.sum(a * a, axis=-1) + self.precision(d)).astype(np.float32)

    def precision(self, d: np.ndarray) -> np.ndarray:
        """The reward's precision term at distance ``d`` [m] (0 when ``precision_bonus`` is 0)."""
        if not self.precision_bonus:
            return np.zeros_like(np.asarray(d, np.float64))
        return self.precision_bonus * np.exp(-np.asarray(d) / self.precision_scale_m)

    def terminated(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        return np.zeros(np.asarray(next_obs).shape[:-1], dtype=bool)

    def step_values(self, action: np.ndarray, next_obs: np.ndarray) -> tuple[float, bool, float]:
        """(reward, terminated, distance) of one transition with scalar math, for env.step.

        Same values as :meth:`reward` and :meth:`terminated` (reach never terminates early), without the
        per-call numpy overhead of the vectorised versions.
        """
        i = self.layout.ee.start  # the target follows the end effector's 3 columns
        o = next_obs.tolist()
        dx, dy, dz = o[i] - o[i + 3], o[i + 1] - o[i + 4], o[i + 2] - o[i + 5]
        d = math.sqrt(dx * dx + dy * dy + dz * dz)
        cost = 0.0
        for a, h in zip(action.tolist(), self.action_high):
            a /= h
            cost += a * a
        r = -d - self.action_cost * cost
        if self.precision_bonus:
            r += self.precision_bonus * math.exp(-d / self.precision_scale_m)
        return float(np.float32(r)), False, d

    def success(self, obs: np.ndarray) -> np.ndarray:
        return self.distance(obs) < self.tolerance_m

    # ----------------------------------------------------------------------------------- symmetry (yaw_symmetric)
    @property
    def has_symmetry(self) -> bool:
        return self.yaw_symmetric

    def sample_symmetry(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` turns about the base's vertical axis [rad], uniform on the circle."""
        return rng.uniform(-np.pi, np.pi, size=n)

    def apply_symmetry(self, obs: np.ndarray, phi: np.ndarray) -> np.ndarray:
        """``obs [N, O]`` turned by ``phi [N]`` rad about the base's vertical axis: the first joint's angle + phi
        (read back in [-pi, pi), as the joint reports that pose), the end effector and the target rotated about the
        base; the other joints, every velocity and the action history do not change."""
        if not self.yaw_symmetric:
            raise NotImplementedError("reach: this robot's task declares no symmetry (yaw_symmetric)")
        i, j = self.layout.ee.start, self.layout.target.start
        out = np.array(obs, dtype=np.float32, copy=True)
        o = np.asarray(obs, dtype=np.float64)
        phi = np.asarray(phi, dtype=np.float64)
        out[:, 0] = np.mod(o[:, 0] + phi + np.pi, 2 * np.pi) - np.pi
        c, s = np.cos(phi), np.sin(phi)
        bx, by = self.base_m[0], self.base_m[1]
        for k in (i, j):
            x, y = o[:, k] - bx, o[:, k + 1] - by
            out[:, k] = bx + c * x - s * y
            out[:, k + 1] = by + s * x + c * y
        return out

    def symmetry_valid(self, obs: np.ndarray) -> np.ndarray:
        """Rows whose first joint is ``symmetry_margin_rad`` inside its limits (all rows when none are known):
        only such rows, before and after a turn, are moved (:func:`robodyna.learn.symmetry.augment_symmetry`)."""
        q = np.asarray(obs)[:, 0]
        if self.joint_low_rad is None or self.joint_high_rad is None:
            return np.ones(q.shape, dtype=bool)
        m = self.symmetry_margin_rad
        return (q >= self.joint_low_rad[0] + m) & (q <= self.joint_high_rad[0] - m)


def reach_fns(cfg: RobotConfig, spec: RobotSpec) -> ReachFns:
    """The reach task's functions for a robot, from its ``robot.yaml`` and spec alone (no engine, no env): what a
    trainer on another machine that knows only the robot's identity builds, identical to the env's."""
    tc = cfg.tasks.reach
    return ReachFns(
        spec.n_joints, spec.action_high, tc.action_cost, tc.tolerance_m, goal_low_m=tc.workspace_low_m,
        goal_high_m=tc.workspace_high_m, reach_radius_m=tc.reach_radius_m, base_m=base_position(cfg, spec.engine),
        joint_low_rad=spec.joint_low_rad, joint_high_rad=spec.joint_high_rad,
        precision_bonus=tc.precision_bonus, precision_scale_m=tc.precision_scale_m, action_history=tc.action_history,
        yaw_symmetric=tc.yaw_symmetric, safety=cfg.safety,
    )


def base_position(cfg: RobotConfig, engine: str) -> tuple[float, float, float]:
    """The arm's base in the world frame of ``engine`` (the robot.yaml default engine's for other engines)."""
    models = cfg.engines
    model = models.get(engine) or models.get(cfg.engine)
    return model.base_position_m if model is not None else (0.0, 0.0, 0.0)


def sample_target(cfg: ReachTaskConfig, rng: np.random.Generator, base_m: np.ndarray) -> np.ndarray:
    """A target uniformly inside the workspace box (and within ``reach_radius_m`` of the base, if set)."""
    lo, hi = np.asarray(cfg.workspace_low_m), np.asarray(cfg.workspace_high_m)
    for _ in range(1000):
        t = rng.uniform(lo, hi)
        if cfg.reach_radius_m <= 0 or np.linalg.norm((t - base_m)[:2]) <= cfg.reach_radius_m:
            return t
    raise ValueError("reach: workspace box and reach_radius_m leave no room for a target")
