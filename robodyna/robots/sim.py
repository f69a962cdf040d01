"""Shared machinery of simulated robots: action modes, decimation, dynamics scaling hooks.

A :class:`SimRobot` implements the action mode (torque, joint velocity, joint-position delta) on top of
four engine primitives. Dynamics perturbations (reality profiles) are applied through
:meth:`SimRobot.perturb`, implemented per engine.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import numpy as np

from robodyna.robots.base import Robot, RobotState
from robodyna.spec import RobotConfig, RobotSpec


@dataclass(frozen=True)
class DynamicsScale:
    """Multipliers on the nominal model (1.0 = unchanged)."""

    mass: float = 1.0
    damping: float = 1.0
    friction: float = 1.0
    actuator_gain: float = 1.0
    extra_damping: float = 0.0  # N*m*s/rad added to every actuated joint (for models with none)


class SimRobot(Robot):
    """Base of the MuJoCo and PyBullet drivers."""

    def __init__(self, cfg: RobotConfig, engine: str) -> None:
        super().__init__(RobotSpec.from_config(cfg, engine))
        self.cfg = cfg
        n = len(cfg.joints)
        self.decimation = cfg.decimation
        self.home = np.array([j.home_rad for j in cfg.joints])
        self.q_low = np.array([j.lower_rad for j in cfg.joints])
        self.q_high = np.array([j.upper_rad for j in cfg.joints])
        self.tau_max = np.array([j.max_torque_nm for j in cfg.joints])
        self.kp = np.broadcast_to(np.asarray(cfg.gains.kp, dtype=np.float64), (n,)).copy()
        self.kd = np.broadcast_to(np.asarray(cfg.gains.kd, dtype=np.float64), (n,)).copy()
        self.gain = 1.0
        self.timestep_scale = 1.0
        self._mode = cfg.action_mode

    # -- engine primitives ------------------------------------------------------------------------------
    @abstractmethod
    def _set_command(self, mode: str, target: np.ndarray) -> None:
        """Install the per-tick command (torque, velocity target or position target) in the engine."""

    @abstractmethod
    def _step_physics(self, n: int) -> None:
        """Advance ``n`` physics substeps with the installed command."""

    @abstractmethod
    def perturb(self, scale: DynamicsScale) -> None:
        """Scale masses/inertias, damping, friction and actuator gain relative to the nominal model."""

    @abstractmethod
    def set_timestep_scale(self, scale: float) -> None:
        """Stretch the physics timestep (control-period jitter)."""

    # -- Robot ----------------------------------------------------------------------------------------------
    def _joint_positions(self) -> np.ndarray:
        """Current joint positions [rad] (drivers override with a cheaper read than :meth:`observe`)."""
        return self.observe().qpos

    def _apply(self, action: np.ndarray) -> None:
        mode = self._mode
        if mode == "joint_position_delta":
            q = self._joint_positions()
            target = np.clip(q + action, self.q_low, self.q_high)
        else:
            target = action
        self._set_command(mode, target)
        self._step_physics(self.decimation)

    def home_state(self, rng: np.random.Generator | None = None, noise_rad: float = 0.0) -> np.ndarray:
        q = self.home.copy()
        if rng is not None and noise_rad > 0:
            q = np.clip(q + rng.uniform(-noise_rad, noise_rad, size=q.shape), self.q_low, self.q_high)
        return q

    @abstractmethod
    def observe(self) -> RobotState: ...

    def peek_into(self, out: np.ndarray) -> bool:
        """Reading a simulator's state changes nothing: :meth:`observe_into`."""
        self.observe_into(out)
        return True

    # -- the engine's own model at a given configuration (for scripted controllers; never moves the robot) -------
    @abstractmethod
    def model_at(self, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(end-effector position [m], joint-space mass matrix [n, n], gravity torque [n]) of the engine's model at
        ``qpos`` with zero velocity, computed on a separate copy of the model: the simulated state is untouched."""
