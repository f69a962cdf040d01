"""Robot descriptions: the ``robot.yaml`` schema (:class:`RobotConfig`) and the runtime :class:`RobotSpec`.

A robot folder ``robots/<name>/`` holds model files and a ``robot.yaml`` parsed into :class:`RobotConfig`
(validated at load, see :mod:`robodyna.config`). Drivers turn it into a :class:`RobotSpec`: named, unit-carrying
observation and action spaces with limits and the control rate. The spec is plain data (no engine, no torch) so
that it travels in dataset metadata and in ONNX metadata, and the controller can compare them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from robodyna.config import ConfigError, load_config

ActionMode = Literal["torque", "joint_velocity", "joint_position_delta"]
ACTION_UNITS = {"torque": "N*m", "joint_velocity": "rad/s", "joint_position_delta": "rad"}


@dataclass(frozen=True)
class JointConfig:
    """One actuated joint, in the order the spec exposes it."""

    name: str = field(metadata={"nonempty": True})
    lower_rad: float = -math.pi
    upper_rad: float = math.pi
    max_velocity_rad_s: float = field(default=10.0, metadata={"gt": 0})
    max_torque_nm: float = field(default=1.0, metadata={"gt": 0})
    home_rad: float = 0.0

    def __post_init__(self) -> None:
        if self.lower_rad > self.upper_rad:
            raise ConfigError(
                "", f"joints[{self.name}].lower_rad", self.lower_rad, f"must be <= upper_rad ({self.upper_rad})"
            )
        if not self.lower_rad <= self.home_rad <= self.upper_rad:
            raise ConfigError("", f"joints[{self.name}].home_rad", self.home_rad, "must lie within the joint limits")


@dataclass(frozen=True)
class EngineModel:
    """Where an engine finds the model. ``model`` is relative to the robot folder, or ``pybullet_data:REL``."""

    model: str = field(metadata={"nonempty": True})
    end_effector: str = field(default="", metadata={"nonempty": True})
    base_position_m: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class ReachTaskConfig:
    """Defaults of the ``reach`` task for this robot."""

    workspace_low_m: tuple[float, float, float] = (-0.2, -0.2, 0.0)
    workspace_high_m: tuple[float, float, float] = (0.2, 0.2, 0.0)
    reach_radius_m: float = field(default=0.0, metadata={"ge": 0})  # 0: no limit; else targets within this
    tolerance_m: float = field(default=0.015, metadata={"gt": 0})
    action_cost: float = field(default=0.1, metadata={"ge": 0})
    # precision term: + precision_bonus * exp(-distance / precision_scale_m) per step (0: off)
    precision_bonus: float = field(default=0.0, metadata={"ge": 0})
    precision_scale_m: float = field(default=0.01, metadata={"gt": 0})
    episode_steps: int = field(default=50, metadata={"ge": 1})
    init_noise_rad: float = field(default=0.1, metadata={"ge": 0})
    # the last N actions sent to the robot, newest first, appended to the observation (0: none): with actuation
    # latency the actions still in flight are part of the state, and a policy or a dynamics model sees them
    action_history: int = field(default=0, metadata={"ge": 0, "le": 16})
    # the task is unchanged when the whole scene turns about the first joint's axis, which is vertical through the
    # base (a planar arm without gravity in its plane; an arm on a vertical base joint under vertical gravity), with
    # nothing else within reach: learners may train on turned copies of transitions (robodyna.learn.symmetry).
    # tests/tasks check it against the engines for every robot that declares it
    yaw_symmetric: bool = False

    def __post_init__(self) -> None:
        for i, (lo, hi) in enumerate(zip(self.workspace_low_m, self.workspace_high_m)):
            if lo > hi:
                raise ConfigError("", f"workspace_low_m[{i}]", lo, f"must be <= workspace_high_m[{i}] ({hi})")


@dataclass(frozen=True)
class TasksConfig:
    reach: ReachTaskConfig = field(default_factory=ReachTaskConfig)


@dataclass(frozen=True)
class GainsConfig:
    """PD gains used by the velocity and position-delta action modes (per joint or one for all)."""

    kp: tuple[float, ...] = (100.0,)
    kd: tuple[float, ...] = (10.0,)
    gravity_compensation: bool = False


@dataclass(frozen=True)
class SafetyConfig:
    """The onboard safety filter and watchdog of this robot (``safety:`` in robot.yaml; see robots/README.md).

    The filter (:mod:`robodyna.onboard.filter`) clips every policy action to the action limits, limits its change
    per tick to ``max_action_change_frac_per_tick`` of the action range, bends actions that would drive a joint
    past ``soft_limit_margin_rad`` inside its position limit back toward the safe range, and holds while the end
    effector is outside the optional ``workspace_*_m`` box. The watchdog holds when a tick runs later than
    ``watchdog_timeout_ms`` past its deadline (0: one control period) and stops the episode after
    ``max_consecutive_faults`` faults in a row.
    """

    max_action_change_frac_per_tick: float = field(default=0.25, metadata={"gt": 0, "le": 1})
    soft_limit_margin_rad: float = field(default=0.1, metadata={"ge": 0})
    workspace_low_m: tuple[float, float, float] | None = None
    workspace_high_m: tuple[float, float, float] | None = None
    watchdog_timeout_ms: float = field(default=0.0, metadata={"ge": 0})
    max_consecutive_faults: int = field(default=10, metadata={"ge": 1})
    home_speed_rad_s: float = field(default=0.5, metadata={"gt": 0})

    def __post_init__(self) -> None:
        if (self.workspace_low_m is None) != (self.workspace_high_m is None):
            raise ConfigError("", "safety.workspace_low_m", self.workspace_low_m,
                              "give both workspace_low_m and workspace_high_m, or neither")
        if self.workspace_low_m is not None and self.workspace_high_m is not None:
            for i, (lo, hi) in enumerate(zip(self.workspace_low_m, self.workspace_high_m)):
                if lo > hi:
                    raise ConfigError("", f"safety.workspace_low_m[{i}]", lo,
                                      f"must be <= workspace_high_m[{i}] ({hi})")


@dataclass(frozen=True)
class RobotConfig:
    """The schema of ``robot.yaml``. See ``robots/README.md`` for every field with units and defaults."""

    name: str = field(metadata={"nonempty": True})
    description: str = ""
    engines: dict[str, EngineModel] = field(default_factory=dict)
    default_engine: str = ""
    driver: str = ""
    driver_options: dict[str, str | int | float] = field(default_factory=dict)
    joints: tuple[JointConfig, ...] = ()
    action_mode: ActionMode = "torque"
    max_delta_per_tick: float = field(default=0.05, metadata={"gt": 0})
    control_hz: float = field(default=50.0, metadata={"gt": 0})
    physics_hz: float = field(default=500.0, metadata={"gt": 0})
    gains: GainsConfig = field(default_factory=GainsConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)

    def __post_init__(self) -> None:
        for eng in self.engines:
            if eng not in ("mujoco", "pybullet"):
                raise ConfigError("", f"engines.{eng}", eng, "engine must be mujoco or pybullet")
        if not self.engines and not self.driver:
            raise ConfigError("", "engines", {}, "declare at least one engine (mujoco/pybullet) or a hardware driver")
        if self.default_engine and self.default_engine not in self.engines:
            raise ConfigError("", "default_engine", self.default_engine, f"must be one of {sorted(self.engines)}")
        if not self.joints:
            raise ConfigError("", "joints", [], "list at least one actuated joint")
        names = [j.name for j in self.joints]
        if len(set(names)) != len(names):
            raise ConfigError("", "joints", names, "joint names must be unique")
        ratio = self.physics_hz / self.control_hz
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            raise ConfigError(
                "",
                "control_hz",
                self.control_hz,
                f"physics_hz ({self.physics_hz}) must be an integer multiple of control_hz",
            )
        for key in ("kp", "kd"):
            vals = getattr(self.gains, key)
            if len(vals) not in (1, len(self.joints)):
                raise ConfigError("", f"gains.{key}", list(vals), f"give 1 or {len(self.joints)} values")

    @property
    def decimation(self) -> int:
        """Physics substeps per control tick."""
        return int(round(self.physics_hz / self.control_hz))

    @property
    def engine(self) -> str:
        return self.default_engine or next(iter(self.engines), "hardware")


@dataclass(frozen=True)
class StateLayout:
    """The robot state vector ``[qpos (n) rad, qvel (n) rad/s, ee_pos (3) m]`` that every driver's ``observe_into``
    writes and every task observation starts with: the one place its column offsets are written down (tasks extend
    it, e.g. :class:`robodyna.tasks.reach.ReachLayout`)."""

    n_joints: int

    @property
    def qpos(self) -> slice:
        return slice(0, self.n_joints)

    @property
    def qvel(self) -> slice:
        return slice(self.n_joints, 2 * self.n_joints)

    @property
    def ee(self) -> slice:
        return slice(2 * self.n_joints, 2 * self.n_joints + 3)

    @property
    def size(self) -> int:
        """Columns of the state vector (the first columns of every task's observation)."""
        return 2 * self.n_joints + 3


@dataclass(frozen=True)
class RobotSpec:
    """Runtime description of a robot's interface: names, units, limits, rates. Plain data, JSON-serialisable."""

    name: str
    engine: str
    joint_names: tuple[str, ...]
    action_mode: str
    action_names: tuple[str, ...]
    action_units: tuple[str, ...]
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    joint_low_rad: tuple[float, ...]
    joint_high_rad: tuple[float, ...]
    joint_velocity_limit_rad_s: tuple[float, ...]
    control_hz: float
    physics_hz: float

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    @property
    def act_dim(self) -> int:
        return len(self.action_names)

    @property
    def action_low_array(self) -> np.ndarray:
        return np.asarray(self.action_low, dtype=np.float64)

    @property
    def action_high_array(self) -> np.ndarray:
        return np.asarray(self.action_high, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RobotSpec:
        fields: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**fields)

    @classmethod
    def from_config(cls, cfg: RobotConfig, engine: str) -> RobotSpec:
        mode = cfg.action_mode
        if mode == "torque":
            hi = [j.max_torque_nm for j in cfg.joints]
        elif mode == "joint_velocity":
            hi = [j.max_velocity_rad_s for j in cfg.joints]
        else:
            hi = [cfg.max_delta_per_tick for _ in cfg.joints]
        unit = ACTION_UNITS[mode]
        return cls(
            name=cfg.name,
            engine=engine,
            joint_names=tuple(j.name for j in cfg.joints),
            action_mode=mode,
            action_names=tuple(f"{j.name}.{mode}" for j in cfg.joints),
            action_units=tuple(unit for _ in cfg.joints),
            action_low=tuple(-h for h in hi),
            action_high=tuple(hi),
            joint_low_rad=tuple(j.lower_rad for j in cfg.joints),
            joint_high_rad=tuple(j.upper_rad for j in cfg.joints),
            joint_velocity_limit_rad_s=tuple(j.max_velocity_rad_s for j in cfg.joints),
            control_hz=cfg.control_hz,
            physics_hz=cfg.physics_hz,
        )


def load_robot_config(path: str | Path, overrides: list[str] | None = None) -> tuple[RobotConfig, Path]:
    """Load ``robot.yaml`` from a robot folder (or the yaml path itself). Returns the config and the folder."""
    p = Path(path)
    yml = p / "robot.yaml" if p.is_dir() else p
    if not yml.is_file():
        raise ConfigError(str(yml), "", None, "robot.yaml not found (a robot folder needs one)")
    cfg = load_config(RobotConfig, yml, overrides)
    return cfg, yml.parent


def rate_overrides(cfg_physics_hz: float, hz: float | None) -> list[str]:
    """``--set`` overrides that run the robot at ``hz`` (physics rate raised to a multiple when needed)."""
    if not hz:
        return []
    out = [f"control_hz={float(hz)}"]
    ratio = cfg_physics_hz / hz
    if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
        out.append(f"physics_hz={float(hz) * max(1, round(ratio))}")
    return out
