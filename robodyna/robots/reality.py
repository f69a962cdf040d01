"""Reality profiles: make a simulated robot stand in for "the real one".

A profile (``configs/realities/<name>.yaml``) scales masses/inertias, joint damping and friction and actuator
gain; delays actions by whole control ticks; adds observation noise and bias; jitters the control period; and
may pick another physics engine than the robot's default (a cross-engine gap). All randomness comes from a
seeded generator, so a profile is reproducible.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from robodyna.config import ConfigError, load_config
from robodyna.paths import configs_root
from robodyna.robots.base import Robot, RobotState
from robodyna.robots.sim import DynamicsScale, SimRobot


@dataclass(frozen=True)
class RealityProfile:
    """The schema of ``configs/realities/*.yaml``. All fields default to "no change"."""

    name: str = field(metadata={"nonempty": True})
    description: str = ""
    engine: Literal["", "mujoco", "pybullet"] = ""
    mass_scale: float = field(default=1.0, metadata={"gt": 0})
    damping_scale: float = field(default=1.0, metadata={"ge": 0})
    extra_damping_nms_per_rad: float = field(default=0.0, metadata={"ge": 0})
    friction_scale: float = field(default=1.0, metadata={"ge": 0})
    actuator_gain_scale: float = field(default=1.0, metadata={"gt": 0})
    action_latency_ticks: int = field(default=0, metadata={"ge": 0, "le": 100})
    joint_pos_noise_rad: float = field(default=0.0, metadata={"ge": 0})
    joint_vel_noise_rad_s: float = field(default=0.0, metadata={"ge": 0})
    joint_pos_bias_rad: float = 0.0
    ee_pos_noise_m: float = field(default=0.0, metadata={"ge": 0})
    control_jitter_frac: float = field(default=0.0, metadata={"ge": 0, "lt": 1})
    seed: int = 0

    @property
    def dynamics(self) -> DynamicsScale:
        return DynamicsScale(
            mass=self.mass_scale,
            damping=self.damping_scale,
            friction=self.friction_scale,
            actuator_gain=self.actuator_gain_scale,
            extra_damping=self.extra_damping_nms_per_rad,
        )

    @property
    def is_nominal(self) -> bool:
        return self == RealityProfile(name=self.name, description=self.description, seed=self.seed)


def realities_dir() -> Path:
    return configs_root() / "realities"


def list_realities() -> list[str]:
    return sorted(p.stem for p in realities_dir().glob("*.yaml"))


def load_reality(name_or_path: str | Path, overrides: list[str] | None = None) -> RealityProfile:
    """Load a profile by name (``configs/realities/NAME.yaml``) or path."""
    p = Path(name_or_path)
    if not p.suffix:
        p = realities_dir() / f"{name_or_path}.yaml"
    if not p.is_file():
        raise ConfigError(str(p), "", str(name_or_path), f"unknown reality profile; known: {list_realities()}")
    return load_config(RealityProfile, p, overrides)


class RealityRobot(Robot):
    """Wraps a :class:`SimRobot` with a reality profile's latency, noise, bias and jitter."""

    def __init__(self, inner: SimRobot, profile: RealityProfile) -> None:
        super().__init__(inner.spec)
        self.inner = inner
        self.profile = profile
        self.rng = np.random.default_rng(profile.seed)
        inner.perturb(profile.dynamics)
        self._queue: collections.deque[np.ndarray] = collections.deque()

    def _hold_action(self) -> np.ndarray:
        # What the robot does while a delayed command has not arrived: zero torque/velocity, or hold position.
        return np.zeros(self.spec.act_dim)

    def reset(
        self, qpos: np.ndarray | None = None, qvel: np.ndarray | None = None, seed: int | None = None
    ) -> RobotState:
        if seed is not None:
            self.rng = np.random.default_rng([self.profile.seed, seed])
        self._queue.clear()
        for _ in range(self.profile.action_latency_ticks):
            self._queue.append(self._hold_action())
        self.inner.reset(qpos, qvel)
        return self.observe()

    def _apply(self, action: np.ndarray) -> None:
        self._queue.append(action)
        applied = self._queue.popleft()
        if self.profile.control_jitter_frac > 0:
            j = self.profile.control_jitter_frac
            self.inner.set_timestep_scale(1.0 + self.rng.uniform(-j, j))
        self.inner._apply(applied)

    def observe(self) -> RobotState:
        s = self.inner.observe()
        pr = self.profile
        n = s.qpos.shape[0]
        qpos = s.qpos + pr.joint_pos_bias_rad
        qvel = s.qvel
        ee = s.ee_pos_m
        if pr.joint_pos_noise_rad > 0:
            qpos = qpos + self.rng.normal(0.0, pr.joint_pos_noise_rad, n)
        if pr.joint_vel_noise_rad_s > 0:
            qvel = qvel + self.rng.normal(0.0, pr.joint_vel_noise_rad_s, n)
        if pr.ee_pos_noise_m > 0:
            ee = ee + self.rng.normal(0.0, pr.ee_pos_noise_m, 3)
        return RobotState(qpos, qvel, ee, s.time_s)

    def peek_into(self, out: np.ndarray) -> bool:
        """The engine's state (no bias, no noise drawn: the profile's random stream is left as it was)."""
        return self.inner.peek_into(out)

    def warnings(self) -> list[str]:
        return self.inner.warnings()  # type: ignore[attr-defined,no-any-return]

    def close(self) -> None:
        self.inner.close()
