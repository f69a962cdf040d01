"""PyBullet driver: loads a URDF (from the robot folder or from ``pybullet_data``) in its own DIRECT client.

Torque mode installs the torques once per tick (PyBullet keeps a TORQUE_CONTROL command across substeps);
the velocity and position-delta modes run the same PD law as the MuJoCo actuators
(``tau = clip(gain * (kp * (q* - q) - kd * qd), ±tau_max)``) each substep, plus gravity compensation from
``calculateInverseDynamics`` once per tick when ``gains.gravity_compensation`` is set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pybullet as p
from pybullet_utils.bullet_client import BulletClient

from robodyna.robots.base import RobotError, RobotState
from robodyna.robots.sim import DynamicsScale, SimRobot
from robodyna.robots.spec import RobotConfig


class PybulletRobot(SimRobot):
    """A robot simulated by PyBullet."""

    def __init__(self, cfg: RobotConfig, folder: Path) -> None:
        super().__init__(cfg, "pybullet")
        em = cfg.engines["pybullet"]
        self.client = BulletClient(connection_mode=p.DIRECT)
        c = self.client
        if em.model.startswith("pybullet_data:"):
            import pybullet_data

            c.setAdditionalSearchPath(pybullet_data.getDataPath())
            path = Path(pybullet_data.getDataPath()) / em.model.split(":", 1)[1]
        else:
            path = folder / em.model
        if not path.is_file():
            self.client.disconnect()
            raise RobotError(f"{cfg.name}: PyBullet model file not found: {path}")
        try:
            self.body = c.loadURDF(
                str(path),
                basePosition=list(em.base_position_m),
                useFixedBase=True,
                flags=p.URDF_USE_INERTIA_FROM_FILE,
            )
        except p.error as exc:
            self.client.disconnect()
            raise RobotError(f"{cfg.name}: cannot load URDF {path}: {exc}") from exc
        self.model_path = path
        c.setGravity(0, 0, -9.81)
        c.setTimeStep(1.0 / cfg.physics_hz)
        self._dt = 1.0 / cfg.physics_hz
        names: dict[str, int] = {}
        links: dict[str, int] = {}
        self._movable: list[int] = []
        for i in range(c.getNumJoints(self.body)):
            info = c.getJointInfo(self.body, i)
            names[info[1].decode()] = i
            links[info[12].decode()] = i
            if info[2] != p.JOINT_FIXED:
                self._movable.append(i)
        for j in cfg.joints:
            if j.name not in names:
                self.client.disconnect()
                raise RobotError(
                    f"{cfg.name}: joint {j.name!r} named in robot.yaml is not in {path.name} "
                    f"(model joints: {sorted(names)})"
                )
        self._idx = [names[j.name] for j in cfg.joints]
        self._passive = [i for i in self._movable if i not in self._idx]
        if em.end_effector not in links:
            self.client.disconnect()
            raise RobotError(f"{cfg.name}: end_effector link {em.end_effector!r} not in {path.name}")
        self._ee = links[em.end_effector]
        # Disable PyBullet's default velocity motors so joints are free; hold passive joints (e.g. fingers).
        c.setJointMotorControlArray(self.body, self._idx, p.VELOCITY_CONTROL, forces=[0.0] * len(self._idx))
        self._nominal_dyn = {}
        for i in [-1, *range(c.getNumJoints(self.body))]:
            d = c.getDynamicsInfo(self.body, i)
            self._nominal_dyn[i] = (d[0], d[2], d[8])  # mass, local inertia diagonal, joint damping
        self._gravity = np.zeros(len(self._idx))
        self._target = np.zeros(len(self._idx))
        self._cid = c._client  # hot paths call pybullet directly: BulletClient builds a partial on every call
        self.reset()

    # -- engine primitives --------------------------------------------------------------------------------
    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        states = p.getJointStates(self.body, self._idx, physicsClientId=self._cid)
        return np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def _set_command(self, mode: str, target: np.ndarray) -> None:
        self._target = np.asarray(target, dtype=np.float64)
        if self.cfg.gains.gravity_compensation:
            qs = [s[0] for s in self.client.getJointStates(self.body, self._movable)]
            zeros = [0.0] * len(qs)
            g = np.asarray(self.client.calculateInverseDynamics(self.body, qs, zeros, zeros))
            self._gravity = g[[self._movable.index(i) for i in self._idx]]

    def _pd(self) -> np.ndarray:
        q, qd = self._read()
        if self.spec.action_mode == "joint_velocity":
            u = self.kd * (self._target - qd)
        else:
            u = self.kp * (self._target - q) - self.kd * qd
        return np.clip(self.gain * u, -self.tau_max, self.tau_max)

    def _step_physics(self, n: int) -> None:
        cid, body, idx = self._cid, self.body, self._idx
        if self.spec.action_mode == "torque":
            tau = np.clip(self.gain * self._target, -self.tau_max, self.tau_max) + self._gravity
            p.setJointMotorControlArray(body, idx, p.TORQUE_CONTROL, forces=tau.tolist(), physicsClientId=cid)
            for _ in range(n):
                p.stepSimulation(physicsClientId=cid)
            return
        for _ in range(n):
            tau = self._pd() + self._gravity
            p.setJointMotorControlArray(body, idx, p.TORQUE_CONTROL, forces=tau.tolist(), physicsClientId=cid)
            p.stepSimulation(physicsClientId=cid)

    def perturb(self, scale: DynamicsScale) -> None:
        c = self.client
        for i, (mass, inertia, damping) in self._nominal_dyn.items():
            kwargs: dict[str, object] = {}
            if mass > 0:
                kwargs["mass"] = mass * scale.mass
                kwargs["localInertiaDiagonal"] = [v * scale.mass for v in inertia]
            if i >= 0:
                kwargs["jointDamping"] = damping * scale.damping + (scale.extra_damping if i in self._idx else 0.0)
            if kwargs:
                c.changeDynamics(self.body, i, **kwargs)
        self.gain = scale.actuator_gain

    def set_timestep_scale(self, scale: float) -> None:
        self.client.setTimeStep(self._dt * scale)
        self.timestep_scale = scale

    # -- Robot ----------------------------------------------------------------------------------------------
    def reset(
        self, qpos: np.ndarray | None = None, qvel: np.ndarray | None = None, seed: int | None = None
    ) -> RobotState:
        q = self.home if qpos is None else np.asarray(qpos, dtype=np.float64)
        qd = np.zeros_like(q) if qvel is None else np.asarray(qvel, dtype=np.float64)
        for k, i in enumerate(self._idx):
            self.client.resetJointState(self.body, i, float(q[k]), float(qd[k]))
        for i in self._passive:
            self.client.resetJointState(self.body, i, 0.0, 0.0)
            self.client.setJointMotorControl2(self.body, i, p.POSITION_CONTROL, targetPosition=0.0, force=20.0)
        self._time = 0.0
        self._target = q.copy() if self.spec.action_mode == "joint_position_delta" else np.zeros_like(q)
        self._gravity = np.zeros_like(q)
        return self.observe()

    def _apply(self, action: np.ndarray) -> None:
        super()._apply(action)
        self._time += self.decimation * self._dt * self.timestep_scale

    def observe(self) -> RobotState:
        q, qd = self._read()
        ee = p.getLinkState(self.body, self._ee, computeForwardKinematics=True, physicsClientId=self._cid)[4]
        return RobotState(q, qd, np.asarray(ee, dtype=np.float64), self._time)

    def warnings(self) -> list[str]:
        """PyBullet reports no numerical warnings; divergence shows up as non-finite state."""
        q, qd = self._read()
        return [] if np.all(np.isfinite(q)) and np.all(np.isfinite(qd)) else ["non-finite joint state"]

    def close(self) -> None:
        if getattr(self, "client", None) is not None:
            try:
                self.client.disconnect()
            except p.error:
                pass
            self.client = None  # type: ignore[assignment]
