"""A scripted reach oracle: inverse kinematics with the engine's own model, then joint-space control.

``robodyna sim --policy oracle`` runs it; it is the reference for what is reachable within an episode, which
a learned policy's final distance and success rate are compared against. Nothing is tuned per robot:

- **IK**: damped least squares on the engine's forward kinematics (:meth:`SimRobot.model_at`, a separate copy
  of the model, so the simulated state is untouched), with a finite-difference Jacobian, weighted by each joint's
  speed (a redundant arm then prefers the solution its slowest joint reaches soonest), joint limits kept by
  clipping, warm-started from the current configuration, then from home, then from seeded random configurations
  until the end effector is within a tenth of the task's tolerance. It is solved once per target.
- **Control**, in the robot's action mode (``robot.yaml: action_mode``):

  - ``joint_position_delta``: the remaining joint error, clipped to ``max_delta_per_tick`` (the joints' PD does
    the rest);
  - ``joint_velocity``: a proportional velocity command clipped to the action box;
  - ``torque``: computed-torque PD ``tau = M(q) (wn^2 e - 2 wn qd) + g(q)`` with the model's mass matrix and
    gravity torque, critically damped, ``wn = min(35 / episode seconds, 0.6 x control rate)`` (settling in
    about a sixth of the episode, as fast as a zero-order hold at the control rate stays well damped), clipped to
    the torque limits. Passive joint damping and friction are not compensated (the stiff loop overrides them).

It reads only the observation (``qpos``, ``qvel``, target), so it also runs under a reality profile (with the
nominal model). Torch-free, like the rest of the robot side.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from robodyna.tasks.reach import ReachLayout

log = logging.getLogger(__name__)


class ReachOracle:
    """``policy(obs) -> action`` for a robodyna ``RobotEnv`` running ``reach`` on a simulated robot."""

    def __init__(self, env: Any, seed: int = 0) -> None:
        u = env.unwrapped
        if not hasattr(u, "robot_spec") or getattr(u, "task", None) != "reach":
            raise ValueError("the oracle drives robodyna robots running the reach task (not Gymnasium ids)")
        sim = getattr(u.robot, "inner", u.robot)  # a RealityRobot wraps the simulated one
        if not hasattr(sim, "model_at"):
            raise ValueError(f"{u.robot_spec.name}: the oracle needs a simulated robot's kinematic model (its engine "
                             f"model); {type(sim).__name__} has none")
        self.sim = sim
        self.spec = u.robot_spec
        self.n = n = self.spec.n_joints
        self._layout = ReachLayout(n)
        self.mode = self.spec.action_mode
        self.low = np.asarray(self.spec.action_low, dtype=np.float64)
        self.high = np.asarray(self.spec.action_high, dtype=np.float64)
        self.q_low = np.asarray(self.spec.joint_low_rad, dtype=np.float64)
        self.q_high = np.asarray(self.spec.joint_high_rad, dtype=np.float64)
        self.home = np.asarray(sim.home, dtype=np.float64)
        tc = u.task_cfg
        self.tol = float(tc.tolerance_m)
        hz = float(self.spec.control_hz)
        episode_s = tc.episode_steps / hz
        self.wn = min(35.0 / episode_s, 0.6 * hz)
        speed = np.ones(n)
        if self.mode == "joint_position_delta":  # PD to q + a: a held action a moves a joint at ~ kp a / kd
            kp, kd = np.asarray(sim.kp, np.float64), np.asarray(sim.kd, np.float64)
            tau = np.minimum(kp * self.high, np.asarray(sim.tau_max, np.float64))
            speed = np.where(kd > 0, tau / np.maximum(kd, 1e-9), 1.0)
        self._w = (speed / np.max(speed)) ** 2
        self.rng = np.random.default_rng(seed)
        self._target = np.full(3, np.nan)
        self._q_goal = np.zeros(n)
        self._goal_q_ee = np.zeros(3)
        self.ik_error_m = 0.0

    # -- inverse kinematics -------------------------------------------------------------------------------------
    def _fk(self, q: np.ndarray) -> np.ndarray:
        return self.sim.model_at(q)[0]

    def _dls(self, q: np.ndarray, target: np.ndarray, iters: int = 100) -> tuple[np.ndarray, float]:
        q = np.clip(q, self.q_low, self.q_high)
        eps, lam = 1e-5, 1e-2
        x = self._fk(q)
        for _ in range(iters):
            err = target - x
            e = float(np.linalg.norm(err))
            if e < 0.05 * self.tol:
                break
            jac = np.empty((3, self.n))
            for i in range(self.n):
                dq = q.copy()
                dq[i] += eps
                jac[:, i] = (self._fk(dq) - x) / eps
            jw = jac * self._w
            step = jw.T @ np.linalg.solve(jw @ jac.T + (lam**2) * np.eye(3), err)
            step *= min(1.0, 0.5 / max(float(np.max(np.abs(step))), 1e-12))  # at most 0.5 rad per iteration
            q = np.clip(q + step, self.q_low, self.q_high)
            x = self._fk(q)
        return q, float(np.linalg.norm(target - x))

    def solve_ik(self, q_now: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
        """A joint configuration putting the end effector on ``target``, preferring one near ``q_now``."""
        best_q, best_e = q_now, np.inf
        starts = [q_now, self.home] + [self.rng.uniform(self.q_low, self.q_high) for _ in range(8)]
        for q0 in starts:
            q, e = self._dls(np.asarray(q0, dtype=np.float64), target)
            if e < best_e:
                best_q, best_e = q, e
            if best_e < 0.1 * self.tol:
                break
        return best_q, best_e

    # -- control ------------------------------------------------------------------------------------------------
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        o = np.asarray(obs, dtype=np.float64)
        lay = self._layout
        q, qd, target = o[lay.qpos], o[lay.qvel], o[lay.target]
        if not np.array_equal(target, self._target):  # a new episode (or target): solve once
            self._target = target.copy()
            self._q_goal, self.ik_error_m = self.solve_ik(q, target)
            if self.ik_error_m > self.tol:
                log.info("oracle: no IK solution within %.1f cm of target %s (best %.2f cm)", 100 * self.tol,
                         np.round(target, 3), 100 * self.ik_error_m)
        e = self._q_goal - q
        if self.mode == "joint_position_delta":
            a = e
        elif self.mode == "joint_velocity":
            a = self.wn * e
        else:
            _, mass, grav = self.sim.model_at(q)
            a = mass @ (self.wn**2 * e - 2.0 * self.wn * qd) + grav
        return np.clip(a, self.low, self.high)


def make_oracle(env: Any, seed: int = 0) -> ReachOracle:
    """The scripted reach oracle for ``env`` (see the module docstring)."""
    return ReachOracle(env, seed)
